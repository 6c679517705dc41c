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
use super::ioevents::KvmNotifyBinder;
use super::irq::{GsiRouting, KvmIrq};
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
use crate::devices::virtio::notify::{spawn_queue_worker, QueueEvents};
use crate::devices::virtio::pci::{msix_vectors, VirtioPciDevice};
use crate::devices::{Bus, IrqLine, MachineControl};
use crate::storage::{self, BlockBackend, WithPolicy};

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
    /// Builds the machine for `config` and starts its vCPUs: the VM and
    /// its memory, then each part of the PC in turn (a `Wiring::attach_*`
    /// step per device or group of devices), the kernel for direct boot,
    /// and the vCPUs last.
    pub fn start(
        kvm: &Kvm,
        config: &VmConfig,
        bios: &[u8],
        console: &ConsoleIo,
        events: StopSender,
        start_paused: bool,
    ) -> Result<Self, VmmError> {
        let (vm, routing) = create_vm(kvm)?;
        let memory = GuestMemory::new(&vm, config.memory, bios)?;
        info!(
            low_ram = memory.low_ram,
            high_ram = memory.high_ram,
            "guest memory mapped"
        );

        let mut wiring = Wiring::new(&vm, &routing, &memory, &events);
        wiring.attach_chipset()?;
        let acpi_pm = wiring.attach_power_management()?;
        let framebuffer = wiring.attach_display(config, console)?;
        let kernel_entry = wiring.load_kernel(config, framebuffer.as_ref())?;
        wiring.attach_rtc(config)?;
        wiring.attach_fw_cfg(config)?;
        wiring.attach_serial(console)?;
        wiring.attach_legacy_ports(console)?;
        wiring.attach_i8042(console)?;
        wiring.attach_usb(config, console)?;
        let ide = wiring.attach_ide(config)?;
        wiring.attach_virtio_disks(config)?;
        wiring.attach_nics(config)?;

        let registers = RegisterSnapshots::default();
        let gate = Arc::new(VcpuGate::default());
        if start_paused {
            gate.close();
        }
        let context = VcpuContext {
            io_bus: wiring.io_bus.clone(),
            mmio_bus: wiring.mmio_bus.clone(),
            pci: wiring.pci.clone(),
            stop: wiring.stop.clone(),
            gate: gate.clone(),
            events,
            registers: registers.clone(),
        };
        let mut machine = Self {
            vcpus: Vec::new(),
            workers: wiring.workers,
            stop: wiring.stop,
            gate,
            acpi_pm,
            ide,
            registers,
            framebuffer,
            kernel_entry,
            _vm: vm.clone(),
            _memory: memory,
        };
        machine.start_vcpus(kvm, &vm, config.vcpus, context)?;
        Ok(machine)
    }

    /// Creates every vCPU, puts the first at the kernel's entry for direct
    /// boot, and starts their threads. All exist before any runs, so APs
    /// are there when the BSP sends INIT/SIPI.
    fn start_vcpus(
        &mut self,
        kvm: &Kvm,
        vm: &VmFd,
        count: u32,
        context: VcpuContext,
    ) -> Result<(), VmmError> {
        let supported = kvm
            .get_supported_cpuid(KVM_MAX_CPUID_ENTRIES)
            .map_err(VmmError::kvm("read the CPUID KVM supports"))?;
        vcpu::install_kick_handler();
        let mut fds = Vec::new();
        for id in 0..count {
            let fd = vm
                .create_vcpu(id as u64)
                .map_err(VmmError::kvm("create a vCPU"))?;
            fd.set_cpuid2(&super::cpuid::for_vcpu(supported.clone(), id, count))
                .map_err(VmmError::kvm("set CPUID"))?;
            super::msrs::set(&fd, &super::msrs::at_power_on(&supported))
                .map_err(VmmError::kvm("set the vCPU's model-specific registers"))?;
            fds.push(fd);
        }
        if let (Some(entry), Some(bsp)) = (&self.kernel_entry, fds.first()) {
            super::kernel_boot::enter(bsp, entry)
                .map_err(VmmError::kvm("put the vCPU at the kernel's entry point"))?;
        }
        for (id, fd) in fds.into_iter().enumerate() {
            let handle = vcpu::spawn(id as u32, fd, context.clone()).map_err(VmmError::Thread)?;
            self.vcpus.push(handle);
        }
        Ok(())
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

/// A VM with the in-kernel interrupt controllers (routed as a PC's, see
/// [`GsiRouting`]) and PIT, and the two pages of KVM's own below the BIOS.
fn create_vm(kvm: &Kvm) -> Result<(Arc<VmFd>, Arc<GsiRouting>), VmmError> {
    let vm = kvm.create_vm().map_err(VmmError::kvm("create the VM"))?;
    vm.set_identity_map_address(KVM_IDENTITY_MAP)
        .map_err(VmmError::kvm("set the identity map address"))?;
    vm.set_tss_address(KVM_TSS as usize)
        .map_err(VmmError::kvm("set the TSS address"))?;
    vm.create_irq_chip()
        .map_err(VmmError::kvm("create the in-kernel PIC and IOAPIC"))?;
    let vm = Arc::new(vm);
    let routing = GsiRouting::new(vm.clone())
        .map_err(VmmError::kvm("route interrupts to the PICs and the IOAPIC"))?;
    let pit = kvm_pit_config {
        flags: KVM_PIT_SPEAKER_DUMMY,
        ..Default::default()
    };
    vm.create_pit2(pit)
        .map_err(VmmError::kvm("create the in-kernel PIT"))?;
    Ok((vm, routing))
}

/// What the `attach_*` steps share while they build the PC: the buses
/// devices go on, the interrupt router, the device threads started so far.
struct Wiring<'a> {
    vm: &'a Arc<VmFd>,
    /// GSI routes, for PCI functions' MSI-X vectors.
    routing: &'a Arc<GsiRouting>,
    memory: &'a GuestMemory,
    io_bus: Arc<Bus>,
    mmio_bus: Arc<Bus>,
    pci: Arc<PciBus>,
    /// PCI INTx through the PIIX3's PIRQ routing onto ISA interrupts.
    intx: Arc<IntxRouter>,
    /// Reset and power-off requests from devices.
    control: Arc<dyn MachineControl>,
    /// Device threads watch this, as the vCPUs do.
    stop: Arc<AtomicBool>,
    workers: Vec<JoinHandle<()>>,
}

impl<'a> Wiring<'a> {
    fn new(
        vm: &'a Arc<VmFd>,
        routing: &'a Arc<GsiRouting>,
        memory: &'a GuestMemory,
        events: &StopSender,
    ) -> Self {
        let intx_vm = vm.clone();
        Self {
            vm,
            routing,
            memory,
            io_bus: Arc::new(Bus::new()),
            mmio_bus: Arc::new(Bus::new()),
            pci: Arc::new(PciBus::new()),
            intx: IntxRouter::new(move |irq, level| {
                super::irq::set_gsi(&intx_vm, irq as u32, level)
            }),
            control: Arc::new(MachineEvents {
                events: events.clone(),
            }),
            stop: Arc::new(AtomicBool::new(false)),
            workers: Vec::new(),
        }
    }

    fn irq(&self, line: u32) -> Arc<dyn IrqLine> {
        KvmIrq::new(self.vm.clone(), line)
    }

    /// The i440FX host bridge, the PIIX3 ISA bridge (PIRQ routing) and PCI
    /// configuration mechanism #1 (with the 0xCF9 reset register).
    fn attach_chipset(&mut self) -> Result<(), VmmError> {
        self.pci
            .add(0, 0, Arc::new(Mutex::new(I440fxHostBridge::new())))?;
        self.pci.add(
            1,
            0,
            Arc::new(Mutex::new(Piix3IsaBridge::new(self.intx.clone()))),
        )?;
        self.io_bus.insert(
            Arc::new(Mutex::new(PciConfigIo::new(
                self.pci.clone(),
                self.control.clone(),
            ))),
            PORT_PCI_CONFIG as u64,
            PCI_CONFIG_PORTS,
        )?;
        Ok(())
    }

    /// The PIIX4 power management function: the ACPI PM registers (the
    /// power button, S5) and the APM control port that switches ACPI on.
    fn attach_power_management(&mut self) -> Result<Arc<Mutex<AcpiPm>>, VmmError> {
        let acpi_pm = Arc::new(Mutex::new(AcpiPm::new(
            self.irq(IRQ_SCI),
            self.control.clone(),
        )));
        self.pci.add(1, 3, Arc::new(Mutex::new(Piix4Pm::new())))?;
        self.io_bus
            .insert(acpi_pm.clone(), PORT_ACPI_PM as u64, PM_IO_SIZE)?;
        self.io_bus.insert(
            Arc::new(Mutex::new(ApmPorts::new(acpi_pm.clone()))),
            PORT_APM_CONTROL as u64,
            APM_PORTS,
        )?;
        Ok(acpi_pm)
    }

    /// The VGA card; for direct boot, with the linear mode the kernel is
    /// told about already set.
    fn attach_display(
        &mut self,
        config: &VmConfig,
        console: &ConsoleIo,
    ) -> Result<Option<Framebuffer>, VmmError> {
        let Some(card) = super::display::attach(
            self.vm,
            &self.io_bus,
            &self.mmio_bus,
            &self.pci,
            &config.video,
            console.display.clone(),
            self.stop.clone(),
        )?
        else {
            return Ok(None);
        };
        let framebuffer = match &config.direct_boot {
            Some(_) => super::display::set_boot_mode(&self.pci, &card),
            None => None,
        };
        self.workers.push(card.refresh);
        Ok(framebuffer)
    }

    /// Direct kernel boot: the VMM does the firmware's part. It routes
    /// PCI interrupts as SeaBIOS would (the ACPI tables say so), puts the
    /// ACPI tables in memory, and loads the kernel, its initrd and command
    /// line; the vCPU starts at the kernel's entry.
    fn load_kernel(
        &mut self,
        config: &VmConfig,
        framebuffer: Option<&Framebuffer>,
    ) -> Result<Option<KernelEntry>, VmmError> {
        let Some(boot) = &config.direct_boot else {
            return Ok(None);
        };
        for (pirq, gsi) in super::acpi::PIRQ_GSIS.into_iter().enumerate() {
            self.intx.set_route(pirq, gsi as u8);
        }
        let rsdp = super::acpi::write_for_direct_boot(
            &self.memory.ram,
            &super::acpi::AcpiConfig {
                vcpus: config.vcpus,
                low_ram_end: self.memory.low_ram,
            },
        )?;
        let entry = super::kernel_boot::load(
            &self.memory.ram,
            self.memory.low_ram,
            self.memory.high_ram,
            boot,
            framebuffer,
            Some(rsdp),
        )?;
        info!(kernel = %boot.kernel.display(), entry = format_args!("{:#x}", entry.rip), "direct kernel boot");
        Ok(Some(entry))
    }

    /// The MC146818 RTC/CMOS, with the memory size and CPU count SeaBIOS
    /// reads there, and the thread that drives its interrupts.
    fn attach_rtc(&mut self, config: &VmConfig) -> Result<(), VmmError> {
        let cmos = Arc::new(Mutex::new(CmosRtc::new(
            self.irq(IRQ_RTC),
            Box::new(std::time::SystemTime::now),
        )));
        {
            let mut cmos = cmos.lock().unwrap();
            cmos.set_memory_size(self.memory.low_ram, self.memory.high_ram);
            cmos.set_cpu_count(config.vcpus as usize);
        }
        self.io_bus
            .insert(cmos.clone(), PORT_CMOS as u64, CMOS_PORTS)?;
        self.workers.push(spawn_rtc_timer(cmos, self.stop.clone())?);
        Ok(())
    }

    /// fw_cfg, with what the firmware is told (CPUs, e820, ACPI tables,
    /// boot order).
    fn attach_fw_cfg(&mut self, config: &VmConfig) -> Result<(), VmmError> {
        let mut fw_cfg = FwCfg::new(self.memory.ram.clone());
        super::boot::fill_fw_cfg(&mut fw_cfg, config, self.memory)?;
        self.io_bus.insert(
            Arc::new(Mutex::new(fw_cfg)),
            PORT_FW_CFG as u64,
            FW_CFG_PORTS,
        )?;
        Ok(())
    }

    /// COM1, and the thread that feeds it console input.
    fn attach_serial(&mut self, console: &ConsoleIo) -> Result<(), VmmError> {
        let uart = Arc::new(Mutex::new(Uart16550::new(
            self.irq(IRQ_COM1),
            Box::new(console.serial.clone()),
        )));
        self.io_bus
            .insert(uart.clone(), PORT_COM1 as u64, UART_PORTS)?;
        if let Some(input) = &console.serial_input {
            self.workers
                .push(spawn_serial_input(uart, input.clone(), self.stop.clone())?);
        }
        Ok(())
    }

    /// The debug console (0x402), the POST code port, system control port
    /// A (fast A20 and reset), and the ISA devices this PC has not, which
    /// answer as absent.
    fn attach_legacy_ports(&mut self, console: &ConsoleIo) -> Result<(), VmmError> {
        self.io_bus.insert(
            Arc::new(Mutex::new(DebugCon::new(Box::new(
                console.debugcon.clone(),
            )))),
            PORT_DEBUGCON as u64,
            1,
        )?;
        self.io_bus.insert(
            Arc::new(Mutex::new(PostCode::default())),
            PORT_POST as u64,
            1,
        )?;
        self.io_bus.insert(
            Arc::new(Mutex::new(SystemControlA::new(self.control.clone()))),
            PORT_SYSTEM_CONTROL_A as u64,
            1,
        )?;
        for &(name, port, len) in ABSENT_ISA_DEVICES {
            self.io_bus.insert(
                Arc::new(Mutex::new(AbsentIsaDevice::new(name))),
                port as u64,
                len as u64,
            )?;
        }
        Ok(())
    }

    /// The i8042 keyboard and mouse controller, fed by the console's input.
    fn attach_i8042(&mut self, console: &ConsoleIo) -> Result<(), VmmError> {
        let i8042 = Arc::new(Mutex::new(I8042::new(
            self.irq(IRQ_KEYBOARD),
            self.irq(IRQ_MOUSE),
            self.control.clone(),
        )));
        self.io_bus
            .insert(i8042.clone(), PORT_I8042_DATA as u64, I8042_PORTS)?;
        console.input.attach(i8042, &console.display);
        Ok(())
    }

    /// The UHCI controller with the USB tablet, when the domain has one.
    fn attach_usb(&mut self, config: &VmConfig, console: &ConsoleIo) -> Result<(), VmmError> {
        if let Some(frames) = super::usb::attach(
            &self.pci,
            &self.intx,
            &self.memory.ram,
            config.usb_tablet,
            console,
            self.stop.clone(),
        )? {
            self.workers.push(frames);
        }
        Ok(())
    }

    /// The PIIX IDE controller (legacy ports and PCI function 1.1) with
    /// the domain's IDE disks and CD-ROM drives.
    fn attach_ide(&mut self, config: &VmConfig) -> Result<Arc<Mutex<IdeController>>, VmmError> {
        let ide = IdeController::new(
            self.memory.ram.clone(),
            self.irq(IRQ_IDE_PRIMARY),
            self.irq(IRQ_IDE_SECONDARY),
        );
        for (port, len, device) in ide::legacy_ports(&ide) {
            self.io_bus.insert(device, port as u64, len)?;
        }
        self.pci.add(1, 1, ide.clone())?;
        for disk in &config.disks {
            let DiskBus::Ide { channel, unit } = disk.bus else {
                continue;
            };
            let media = match (disk.kind, open_disk(disk)?) {
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
        if config.direct_boot.is_some() {
            // No firmware runs to switch the channels on.
            ide.lock().unwrap().enable_channels_as_firmware_does();
        }
        Ok(ide)
    }

    /// A virtio-blk PCI function per virtio disk, in the slot it asks for.
    fn attach_virtio_disks(&mut self, config: &VmConfig) -> Result<(), VmmError> {
        for disk in &config.disks {
            let DiskBus::Virtio { slot } = disk.bus else {
                continue;
            };
            let backend = open_disk(disk)?.ok_or_else(|| {
                VmmError::Config(format!(
                    "disk {}: a virtio disk needs a source file",
                    disk.target
                ))
            })?;
            let block = VirtioBlock::new(backend, disk.target.clone());
            let irq = Arc::new(PciIntx::new(self.intx.clone(), slot, 1));
            let msi = self
                .routing
                .msi_vectors(msix_vectors(&block))
                .map_err(VmmError::kvm("set up MSI-X vectors"))?;
            let device = VirtioPciDevice::new(Box::new(block), self.memory.ram.clone(), irq, msi);
            self.plug_virtio(slot, device, format!("virtio-{}", disk.target))?;
        }
        Ok(())
    }

    /// Plugs a virtio function in at `slot` with its queue notifications
    /// bound to eventfds (KVM_IOEVENTFD) and a worker thread, `name`, that
    /// runs its queues.
    fn plug_virtio(
        &mut self,
        slot: u8,
        device: VirtioPciDevice,
        name: String,
    ) -> Result<(), VmmError> {
        let events = QueueEvents::new(device.queue_count()).map_err(VmmError::Thread)?;
        let binder = KvmNotifyBinder::new(self.vm.clone(), events.clone());
        let device = Arc::new(Mutex::new(device.with_notify_binder(binder)));
        self.pci.add(slot, 0, device.clone())?;
        let worker = spawn_queue_worker(name, device, events, self.stop.clone())
            .map_err(VmmError::Thread)?;
        self.workers.push(worker);
        Ok(())
    }

    /// A virtio-net PCI function per interface.
    fn attach_nics(&mut self, config: &VmConfig) -> Result<(), VmmError> {
        for nic in &config.nics {
            let device =
                super::network::virtio_net(nic, self.memory.ram.clone(), &self.intx, self.routing)?;
            self.plug_virtio(nic.slot, device, format!("virtio-net-{}", nic.slot))?;
        }
        Ok(())
    }
}

/// Opens a disk's image; `None` for an empty CD-ROM drive.
fn open_disk(disk: &DiskConfig) -> Result<Option<Box<dyn BlockBackend>>, VmmError> {
    let Some(path) = &disk.path else {
        return Ok(None);
    };
    // A disc a client passed is opened from its descriptor: this process
    // may not open it by name.
    let passed = disk.passed.as_ref().map(|p| &*p.0);
    storage::open_image_passed(path, passed, disk.format, disk.read_only)
        .map(|image| -> Box<dyn BlockBackend> {
            Box::new(WithPolicy::new(image, disk.cache, disk.discard))
        })
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
            crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Device);
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
            crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Device);
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
