//! One incarnation of a VM: KVM, memory, devices and vCPU threads, from
//! power-on until something stops it (reset, power-off, crash, the user).
//! A reset builds a fresh machine, which is how a PC's reset line behaves:
//! every device and every CPU starts over, the firmware runs again.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use kvm_bindings::{kvm_pit_config, KVM_MAX_CPUID_ENTRIES, KVM_PIT_SPEAKER_DUMMY};
use kvm_ioctls::{Kvm, VmFd};
use tracing::{debug, info, warn};
use vmm_sys_util::signal::Killable;

use super::config::VmConfig;
use super::config::{DiskBus, DiskConfig, DiskKind};
use super::console::ConsoleIo;
use super::events::StopSender;
use super::irq::KvmIrq;
use super::kernel_boot::{Framebuffer, KernelEntry};
use super::layout::*;
use super::memory::GuestMemory;
use super::vcpu::{
    self, kick_signal, RegisterSnapshots, StopReason, VcpuContext, VcpuGate, VcpuRegisters,
};
use super::VmmError;
use crate::devices::absent::{AbsentIsaDevice, ABSENT_ISA_DEVICES};
use crate::devices::acpi_pm::{AcpiPm, AcpiPmError, ApmPorts, PM_IO_SIZE};
use crate::devices::cmos::CmosRtc;
use crate::devices::debugcon::{DebugCon, PostCode};
use crate::devices::fw_cfg::FwCfg;
use crate::devices::i8042::I8042;
use crate::devices::ide::{self, IdeController, IdeMedia};
use crate::devices::pci::host_bridge::I440fxHostBridge;
use crate::devices::pci::piix3::Piix3IsaBridge;
use crate::devices::pci::piix4_pm::Piix4Pm;
use crate::devices::pci::PciIntx;
use crate::devices::pci::{IntxRouter, PciBus, PciConfigIo};
use crate::devices::serial::Uart16550;
use crate::devices::system_control::SystemControlA;
use crate::devices::virtio::blk::VirtioBlock;
use crate::devices::virtio::pci::VirtioPciDevice;
use crate::devices::{Bus, MachineControl};
use crate::storage::{self, BlockBackend};

/// Turns device requests into stop reasons for the machine's main loop.
struct MachineEvents {
    events: StopSender,
}

impl MachineControl for MachineEvents {
    fn request_reset(&self) {
        self.events.send(StopReason::Reset);
    }
    fn request_poweroff(&self) {
        self.events.send(StopReason::PowerOff);
    }
}

pub struct Machine {
    // Field order is drop order: vCPU threads are joined in `Drop` before
    // the VM and its memory go away.
    vcpus: Vec<JoinHandle<()>>,
    /// Device timer threads; they watch `stop` too.
    workers: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    gate: Arc<VcpuGate>,
    /// The ACPI power-management registers, for the power button.
    acpi_pm: Arc<Mutex<AcpiPm>>,
    /// The IDE controller, for changing CD-ROM discs.
    ide: Arc<Mutex<IdeController>>,
    registers: RegisterSnapshots,
    /// The linear mode set for a directly booted kernel.
    framebuffer: Option<Framebuffer>,
    kernel_entry: Option<KernelEntry>,
    /// Kept alive while vCPUs and devices use them: KVM maps `_memory`
    /// into `_vm`, and the VM must go before the memory does.
    _vm: Arc<VmFd>,
    _memory: GuestMemory,
}

impl Machine {
    /// Builds the machine for `config` and starts its vCPUs.
    pub fn start(
        kvm: &Kvm,
        config: &VmConfig,
        bios: &[u8],
        console: &ConsoleIo,
        events: StopSender,
        start_paused: bool,
    ) -> Result<Self, VmmError> {
        let vm = Arc::new(kvm.create_vm().map_err(VmmError::kvm("create the VM"))?);
        vm.set_identity_map_address(KVM_IDENTITY_MAP)
            .map_err(VmmError::kvm("set the identity map address"))?;
        vm.set_tss_address(KVM_TSS as usize)
            .map_err(VmmError::kvm("set the TSS address"))?;
        vm.create_irq_chip()
            .map_err(VmmError::kvm("create the in-kernel PIC and IOAPIC"))?;
        let pit = kvm_pit_config {
            flags: KVM_PIT_SPEAKER_DUMMY,
            ..Default::default()
        };
        vm.create_pit2(pit)
            .map_err(VmmError::kvm("create the in-kernel PIT"))?;

        let memory = GuestMemory::new(&vm, config.memory, bios)?;
        info!(
            low_ram = memory.low_ram,
            high_ram = memory.high_ram,
            "guest memory mapped"
        );

        let machine_control: Arc<dyn MachineControl> = Arc::new(MachineEvents {
            events: events.clone(),
        });

        let io_bus = Arc::new(Bus::new());
        let mmio_bus = Arc::new(Bus::new());
        let pci = Arc::new(PciBus::new());
        let intx_vm = vm.clone();
        let intx =
            IntxRouter::new(move |irq, level| super::irq::set_gsi(&intx_vm, irq as u32, level));

        pci.add(0, 0, Arc::new(Mutex::new(I440fxHostBridge::new())))?;
        pci.add(
            1,
            0,
            Arc::new(Mutex::new(Piix3IsaBridge::new(intx.clone()))),
        )?;
        io_bus.insert(
            Arc::new(Mutex::new(PciConfigIo::new(
                pci.clone(),
                machine_control.clone(),
            ))),
            PORT_PCI_CONFIG as u64,
            PCI_CONFIG_PORTS,
        )?;
        let acpi_pm = Arc::new(Mutex::new(AcpiPm::new(
            KvmIrq::new(vm.clone(), IRQ_SCI),
            machine_control.clone(),
        )));
        pci.add(1, 3, Arc::new(Mutex::new(Piix4Pm::new())))?;
        io_bus.insert(acpi_pm.clone(), PORT_ACPI_PM as u64, PM_IO_SIZE)?;
        io_bus.insert(
            Arc::new(Mutex::new(ApmPorts::new(acpi_pm.clone()))),
            PORT_APM_CONTROL as u64,
            APM_PORTS,
        )?;
        let mut workers = Vec::new();
        let stop = Arc::new(AtomicBool::new(false));

        let vga = super::display::attach(
            &vm,
            &io_bus,
            &mmio_bus,
            &pci,
            &config.video,
            console.display.clone(),
            stop.clone(),
        )?;
        // Direct kernel boot: the VMM does the firmware's part (a video
        // mode, the kernel in memory, the CPU at its 64-bit entry).
        let framebuffer = match (&config.direct_boot, &vga) {
            (Some(_), Some(card)) => super::display::set_boot_mode(&pci, card),
            _ => None,
        };
        if let Some(card) = vga {
            workers.push(card.refresh);
        }
        let kernel_entry = match &config.direct_boot {
            Some(boot) => {
                let entry = super::kernel_boot::load(
                    &memory.ram,
                    memory.low_ram,
                    memory.high_ram,
                    boot,
                    framebuffer.as_ref(),
                )?;
                info!(kernel = %boot.kernel.display(), entry = format_args!("{:#x}", entry.rip), "direct kernel boot");
                Some(entry)
            }
            None => None,
        };

        let cmos = Arc::new(Mutex::new(CmosRtc::new(
            KvmIrq::new(vm.clone(), IRQ_RTC),
            Box::new(std::time::SystemTime::now),
        )));
        {
            let mut cmos = cmos.lock().unwrap();
            cmos.set_memory_size(memory.low_ram, memory.high_ram);
            cmos.set_cpu_count(config.vcpus as usize);
        }
        io_bus.insert(cmos.clone(), PORT_CMOS as u64, CMOS_PORTS)?;
        workers.push(spawn_rtc_timer(cmos, stop.clone())?);

        let mut fw_cfg = FwCfg::new(memory.ram.clone());
        super::boot::fill_fw_cfg(&mut fw_cfg, config, &memory)?;
        io_bus.insert(
            Arc::new(Mutex::new(fw_cfg)),
            PORT_FW_CFG as u64,
            FW_CFG_PORTS,
        )?;

        let uart = Arc::new(Mutex::new(Uart16550::new(
            KvmIrq::new(vm.clone(), IRQ_COM1),
            Box::new(console.serial.clone()),
        )));
        io_bus.insert(uart.clone(), PORT_COM1 as u64, UART_PORTS)?;
        if let Some(input) = &console.serial_input {
            workers.push(spawn_serial_input(uart, input.clone(), stop.clone())?);
        }
        io_bus.insert(
            Arc::new(Mutex::new(DebugCon::new(Box::new(
                console.debugcon.clone(),
            )))),
            PORT_DEBUGCON as u64,
            1,
        )?;
        io_bus.insert(
            Arc::new(Mutex::new(PostCode::default())),
            PORT_POST as u64,
            1,
        )?;
        io_bus.insert(
            Arc::new(Mutex::new(SystemControlA::new(machine_control.clone()))),
            PORT_SYSTEM_CONTROL_A as u64,
            1,
        )?;

        for &(name, port, len) in ABSENT_ISA_DEVICES {
            io_bus.insert(
                Arc::new(Mutex::new(AbsentIsaDevice::new(name))),
                port as u64,
                len as u64,
            )?;
        }

        let i8042 = I8042::new(
            KvmIrq::new(vm.clone(), IRQ_KEYBOARD),
            KvmIrq::new(vm.clone(), IRQ_MOUSE),
            machine_control.clone(),
        );
        let i8042 = Arc::new(Mutex::new(i8042));
        io_bus.insert(i8042.clone(), PORT_I8042_DATA as u64, I8042_PORTS)?;
        console.input.attach(i8042, &console.display);
        if let Some(frames) = super::usb::attach(
            &pci,
            &intx,
            &memory.ram,
            config.usb_tablet,
            console,
            stop.clone(),
        )? {
            workers.push(frames);
        }

        let ide = IdeController::new(
            memory.ram.clone(),
            KvmIrq::new(vm.clone(), IRQ_IDE_PRIMARY),
            KvmIrq::new(vm.clone(), IRQ_IDE_SECONDARY),
        );
        for (port, len, device) in ide::legacy_ports(&ide) {
            io_bus.insert(device, port as u64, len)?;
        }
        pci.add(1, 1, ide.clone())?;

        for disk in &config.disks {
            match disk.bus {
                DiskBus::Virtio { slot } => {
                    let backend = open_disk(disk)?.ok_or_else(|| {
                        VmmError::Config(format!(
                            "disk {}: a virtio disk needs a source file",
                            disk.target
                        ))
                    })?;
                    let block = VirtioBlock::new(backend, disk.target.clone());
                    let irq = Arc::new(PciIntx::new(intx.clone(), slot, 1));
                    let device = VirtioPciDevice::new(Box::new(block), memory.ram.clone(), irq);
                    pci.add(slot, 0, Arc::new(Mutex::new(device)))?;
                }
                DiskBus::Ide { channel, unit } => {
                    let backend = open_disk(disk)?;
                    let media = match (disk.kind, backend) {
                        (DiskKind::Cdrom, backend) => IdeMedia::Cdrom(backend),
                        (DiskKind::Disk, Some(backend)) => IdeMedia::Disk(backend),
                        (DiskKind::Disk, None) => {
                            return Err(VmmError::Config(format!(
                                "disk {} needs a source file",
                                disk.target
                            )))
                        }
                    };
                    ide.lock()
                        .unwrap()
                        .attach(channel as usize, unit as usize, media);
                }
            }
        }

        for nic in &config.nics {
            let device = super::network::virtio_net(nic, memory.ram.clone(), &intx)?;
            pci.add(nic.slot, 0, Arc::new(Mutex::new(device)))?;
        }

        let registers = RegisterSnapshots::default();
        let gate = Arc::new(VcpuGate::default());
        if start_paused {
            gate.close();
        }
        let context = VcpuContext {
            io_bus: io_bus.clone(),
            mmio_bus: mmio_bus.clone(),
            pci: pci.clone(),
            stop: stop.clone(),
            gate: gate.clone(),
            events,
            registers: registers.clone(),
        };
        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(VmmError::kvm("read the CPUID KVM supports"))?;
        vcpu::install_kick_handler();
        let mut machine = Self {
            vcpus: Vec::new(),
            workers,
            stop,
            gate,
            acpi_pm,
            ide,
            registers,
            framebuffer,
            kernel_entry,
            _vm: vm.clone(),
            _memory: memory,
        };
        // Create every vCPU before starting any, so APs exist when the BSP
        // sends INIT/SIPI.
        let mut fds = Vec::new();
        for id in 0..config.vcpus {
            let fd = vm
                .create_vcpu(id as u64)
                .map_err(VmmError::kvm("create a vCPU"))?;
            fd.set_cpuid2(&super::cpuid::for_vcpu(supported.clone(), id, config.vcpus))
                .map_err(VmmError::kvm("set CPUID"))?;
            fds.push(fd);
        }
        if let (Some(entry), Some(bsp)) = (&kernel_entry, fds.first()) {
            super::kernel_boot::enter(bsp, entry)
                .map_err(VmmError::kvm("put the vCPU at the kernel's entry point"))?;
        }
        for (id, fd) in fds.into_iter().enumerate() {
            let handle = vcpu::spawn(id as u32, fd, context.clone()).map_err(VmmError::Thread)?;
            machine.vcpus.push(handle);
        }
        Ok(machine)
    }

    /// Kicks every vCPU thread that is still running out of `KVM_RUN`
    /// until `done` holds; a kick can land just before a vCPU enters
    /// `KVM_RUN` and be lost, hence the repetition.
    fn kick_until(&self, done: impl Fn() -> bool) -> bool {
        for _ in 0..2000 {
            if done() {
                return true;
            }
            for handle in self.vcpus.iter().filter(|h| !h.is_finished()) {
                let _ = handle.kill(kick_signal());
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        done()
    }

    /// Stops every vCPU where it is, keeping the machine as it is.
    /// Returns once no vCPU runs guest code.
    pub fn pause(&self) {
        self.gate.close();
        let running = self.vcpus.iter().filter(|h| !h.is_finished()).count();
        if !self.kick_until(|| self.gate.parked() >= running) {
            warn!("a vCPU did not pause");
        }
    }

    /// The IDE controller (its CD-ROM drives take new discs while running).
    pub fn ide(&self) -> &Mutex<IdeController> {
        &self.ide
    }

    /// Presses the ACPI power button.
    pub fn power_button(&self) -> Result<(), AcpiPmError> {
        self.acpi_pm.lock().unwrap().press_power_button()
    }

    /// vCPU `id`'s registers as of the last pause (or power-on, when the
    /// machine started paused).
    pub fn registers(&self, id: u32) -> Option<VcpuRegisters> {
        self.registers.lock().unwrap().get(&id).copied()
    }

    /// Waits up to `timeout` for every vCPU to be parked (as after a start
    /// in the paused state).
    pub fn wait_parked(&self, timeout: Duration) -> bool {
        let until = std::time::Instant::now() + timeout;
        while self.gate.parked() < self.vcpus.len() {
            if std::time::Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    pub fn memory(&self) -> &GuestMemory {
        &self._memory
    }

    pub fn framebuffer(&self) -> Option<Framebuffer> {
        self.framebuffer
    }

    pub fn kernel_entry(&self) -> Option<KernelEntry> {
        self.kernel_entry
    }

    /// Lets paused vCPUs go on.
    pub fn resume(&self) {
        self.gate.open();
    }

    /// Stops every vCPU and waits for their threads.
    fn stop_vcpus(&mut self) {
        self.stop.store(true, Ordering::Release);
        self.gate.wake_all();
        self.kick_until(|| self.vcpus.iter().all(|h| h.is_finished()));
        for handle in std::mem::take(&mut self.vcpus) {
            if handle.is_finished() {
                let _ = handle.join();
            } else {
                warn!("a vCPU thread did not stop; leaving it behind");
            }
        }
        debug!("vCPUs stopped");
        for worker in std::mem::take(&mut self.workers) {
            let _ = worker.join();
        }
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        self.stop_vcpus();
    }
}

/// Opens a disk's image; `None` for an empty CD-ROM drive.
fn open_disk(disk: &DiskConfig) -> Result<Option<Box<dyn BlockBackend>>, VmmError> {
    let Some(path) = &disk.path else {
        return Ok(None);
    };
    storage::open_image(path, disk.format, disk.read_only)
        .map(Some)
        .map_err(|source| VmmError::Disk {
            target: disk.target.clone(),
            source,
        })
}

/// The longest a device timer sleeps before looking at `stop` again.
const TIMER_POLL: Duration = Duration::from_millis(50);

/// Drives the RTC's periodic, alarm and update interrupts at the times it asks for.
fn spawn_rtc_timer(
    cmos: Arc<Mutex<CmosRtc>>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, VmmError> {
    std::thread::Builder::new()
        .name("rtc".into())
        .spawn(move || {
            while !stop.load(Ordering::Acquire) {
                let next = cmos.lock().unwrap().next_event();
                let wait = next
                    .and_then(|at| at.duration_since(std::time::SystemTime::now()).ok())
                    .unwrap_or(if next.is_some() {
                        Duration::ZERO
                    } else {
                        TIMER_POLL
                    })
                    .min(TIMER_POLL);
                if !wait.is_zero() {
                    std::thread::sleep(wait);
                }
                cmos.lock().unwrap().advance();
            }
        })
        .map_err(VmmError::Thread)
}

/// Feeds console input to the UART as fast as its FIFO takes it; bytes
/// that do not fit wait (a real terminal would have lost them to overrun).
fn spawn_serial_input(
    uart: Arc<Mutex<Uart16550>>,
    input: Arc<Mutex<mpsc::Receiver<Vec<u8>>>>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, VmmError> {
    std::thread::Builder::new()
        .name("serial-in".into())
        .spawn(move || {
            let mut pending: Vec<u8> = Vec::new();
            while !stop.load(Ordering::Acquire) {
                if pending.is_empty() {
                    match input.lock().unwrap().recv_timeout(TIMER_POLL) {
                        Ok(bytes) => pending = bytes,
                        Err(mpsc::RecvTimeoutError::Timeout) => continue,
                        Err(mpsc::RecvTimeoutError::Disconnected) => return,
                    }
                }
                let taken = uart.lock().unwrap().receive(&pending);
                pending.drain(..taken);
                if !pending.is_empty() {
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        })
        .map_err(VmmError::Thread)
}
