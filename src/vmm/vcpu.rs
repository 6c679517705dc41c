//! vCPU threads: each runs `KVM_RUN` in a loop and routes port and MMIO
//! exits to the device buses.
//!
//! A vCPU stops when the machine's `stop` flag is set; the machine kicks it
//! out of `KVM_RUN` with a signal ([`KICK_SIGNAL`]) until it notices. Exits
//! that end the machine's run (triple fault, KVM failures) are reported to
//! the machine as a [`StopReason`].

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use kvm_bindings::{kvm_regs, kvm_sregs, KVM_EXIT_IO_IN, KVM_INTERNAL_ERROR_EMULATION};
use kvm_ioctls::{VcpuExit, VcpuFd};
use tracing::{error, trace};

use super::events::StopSender;
use crate::devices::pci::{AddressSpace, PciBus};
use crate::devices::Bus;
use crate::guest_warn;

/// Why a machine's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// The guest asked for a reset (keyboard controller, 0xCF9, port 0x92…).
    Reset,
    /// The VM's controller pressed the reset button.
    HostReset,
    /// The guest powered itself off (ACPI S5).
    PowerOff,
    /// A vCPU triple-faulted (KVM_EXIT_SHUTDOWN): the guest crashed.
    TripleFault { vcpu: u32, rip: u64 },
    /// KVM could not run the guest.
    KvmFailure(KvmFailure),
    /// The user stopped the VM (Ctrl+C, SIGTERM, `destroy`).
    Interrupted,
}

/// What KVM said when it could not go on, in words and raw facts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KvmFailure {
    pub vcpu: u32,
    /// A sentence for people.
    pub what: String,
    /// KVM exit reason number (`KVM_EXIT_*`).
    pub exit_reason: u32,
    /// For internal errors, `KVM_INTERNAL_ERROR_*`.
    pub suberror: Option<u32>,
    pub rip: Option<u64>,
    /// The code segment's base, so RIP can be placed in guest memory.
    pub cs_base: Option<u64>,
    /// Extra words KVM gave (internal-error data, hardware failure reason).
    pub data: Vec<u64>,
}

impl std::fmt::Display for KvmFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "vCPU {}: {} (KVM exit reason {}",
            self.vcpu, self.what, self.exit_reason
        )?;
        if let Some(sub) = self.suberror {
            write!(f, ", suberror {sub}")?;
        }
        if let Some(rip) = self.rip {
            write!(f, ", RIP {rip:#x}")?;
        }
        if let Some(base) = self.cs_base {
            write!(f, ", CS base {base:#x}")?;
        }
        if !self.data.is_empty() {
            let words: Vec<String> = self.data.iter().map(|d| format!("{d:#x}")).collect();
            write!(f, ", data [{}]", words.join(", "))?;
        }
        write!(f, ")")
    }
}

/// The signal that kicks a vCPU thread out of `KVM_RUN`.
pub fn kick_signal() -> libc::c_int {
    vmm_sys_util::signal::SIGRTMIN()
}

extern "C" fn ignore_signal(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {}

/// Installs the no-op handler for [`kick_signal`] (without SA_RESTART, so
/// `KVM_RUN` returns EINTR). Idempotent.
pub fn install_kick_handler() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Err(e) = vmm_sys_util::signal::register_signal_handler(kick_signal(), ignore_signal)
        {
            error!("cannot install the vCPU kick signal handler: {e}");
        }
    });
}

/// A vCPU's registers as it stood when it last parked at a pause (or
/// before its first instruction, when the machine started paused).
#[derive(Debug, Clone, Copy)]
pub struct VcpuRegisters {
    pub regs: kvm_regs,
    pub sregs: kvm_sregs,
}

/// Register snapshots by vCPU id.
pub type RegisterSnapshots = Arc<Mutex<std::collections::BTreeMap<u32, VcpuRegisters>>>;

/// What a vCPU thread shares with the machine.
#[derive(Clone)]
pub struct VcpuContext {
    pub io_bus: Arc<Bus>,
    pub mmio_bus: Arc<Bus>,
    pub pci: Arc<PciBus>,
    pub stop: Arc<AtomicBool>,
    pub gate: Arc<VcpuGate>,
    pub events: StopSender,
    pub registers: RegisterSnapshots,
}

/// Holds vCPUs still while the VM is paused. A vCPU checks the gate each
/// time it leaves `KVM_RUN`; pausing kicks every vCPU out and waits until
/// all of them are parked, so a paused guest really runs no instruction.
#[derive(Default)]
pub struct VcpuGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Default)]
struct GateState {
    closed: bool,
    parked: usize,
}

impl VcpuGate {
    pub fn close(&self) {
        self.state.lock().unwrap().closed = true;
    }

    pub fn open(&self) {
        self.state.lock().unwrap().closed = false;
        self.changed.notify_all();
    }

    pub fn parked(&self) -> usize {
        self.state.lock().unwrap().parked
    }

    /// Wakes parked vCPUs so they notice a stop.
    pub fn wake_all(&self) {
        self.changed.notify_all();
    }

    /// Called by a vCPU thread: waits while the gate is closed and the
    /// machine is not stopping.
    /// `on_park` runs before the vCPU counts as parked, so whoever waits
    /// for the pause sees what it did.
    fn pass(&self, stop: &AtomicBool, on_park: impl FnOnce()) {
        let mut state = self.state.lock().unwrap();
        if !state.closed {
            return;
        }
        on_park();
        state.parked += 1;
        self.changed.notify_all();
        while state.closed && !stop.load(Ordering::Acquire) {
            state = self.changed.wait(state).unwrap();
        }
        state.parked -= 1;
    }
}

/// Starts vCPU `id` on its own thread.
pub fn spawn(id: u32, vcpu: VcpuFd, context: VcpuContext) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("vcpu{id}"))
        .spawn(move || {
            crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Vcpu);
            let span = tracing::info_span!("vcpu", id);
            let _enter = span.enter();
            let mut runner = Vcpu {
                id,
                fd: vcpu,
                context,
            };
            if let Some(reason) = runner.run() {
                runner.context.events.send(reason);
            }
        })
}

struct Vcpu {
    id: u32,
    fd: VcpuFd,
    context: VcpuContext,
}

/// An exit that needs the vCPU's run structure after `run()`'s borrow ends.
enum Pending {
    None,
    PortIo,
    /// An exit this VMM does not expect, described for the report.
    Unexpected(String),
    Stop(StopReason),
}

impl Vcpu {
    /// Runs until the machine stops or this vCPU cannot go on.
    fn run(&mut self) -> Option<StopReason> {
        loop {
            self.context
                .gate
                .pass(&self.context.stop, || self.record_registers());
            if self.context.stop.load(Ordering::Acquire) {
                return None;
            }
            let pending = match self.fd.run() {
                Ok(VcpuExit::IoIn(..)) | Ok(VcpuExit::IoOut(..)) => Pending::PortIo,
                Ok(VcpuExit::MmioRead(addr, data)) => {
                    trace!(addr, len = data.len(), "mmio read");
                    if !self.context.mmio_bus.read(addr, data)
                        && !self.context.pci.read_bar(AddressSpace::Memory, addr, data)
                    {
                        guest_warn!(addr = format_args!("{addr:#x}"), len = data.len(), "read of unassigned memory");
                        data.fill(0xff);
                    }
                    Pending::None
                }
                Ok(VcpuExit::MmioWrite(addr, data)) => {
                    trace!(addr, len = data.len(), "mmio write");
                    if !self.context.mmio_bus.write(addr, data)
                        && !self.context.pci.write_bar(AddressSpace::Memory, addr, data)
                    {
                        guest_warn!(addr = format_args!("{addr:#x}"), len = data.len(), "write to unassigned memory");
                    }
                    Pending::None
                }
                Ok(VcpuExit::Hlt) | Ok(VcpuExit::Intr) | Ok(VcpuExit::IrqWindowOpen) => Pending::None,
                Ok(VcpuExit::Shutdown) => Pending::Stop(StopReason::TripleFault {
                    vcpu: self.id,
                    rip: self.rip().unwrap_or(0),
                }),
                Ok(VcpuExit::FailEntry(reason, cpu)) => Pending::Stop(self.failure(
                    format!("the processor refused to enter the guest (hardware entry failure on host CPU {cpu})"),
                    kvm_bindings::KVM_EXIT_FAIL_ENTRY,
                    None,
                    vec![reason],
                )),
                Ok(VcpuExit::InternalError) => Pending::Stop(self.internal_error()),
                Ok(other) => Pending::Unexpected(format!("{other:?}")),
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => Pending::None,
                Err(e) => Pending::Stop(self.failure(format!("KVM_RUN failed: {e}"), 0, None, Vec::new())),
            };
            match pending {
                Pending::None => {}
                Pending::PortIo => self.port_io(),
                Pending::Unexpected(exit) => {
                    let reason = self.fd.get_kvm_run().exit_reason;
                    let what = format!("unexpected exit from the guest ({exit})");
                    let stop = self.failure(what, reason, None, Vec::new());
                    error!("{stop:?}");
                    return Some(stop);
                }
                Pending::Stop(reason) => {
                    error!("{reason:?}");
                    return Some(reason);
                }
            }
        }
    }

    /// Handles a port exit element by element: `rep ins/outs` arrive as one
    /// exit with `count` accesses of `size` bytes each.
    fn port_io(&mut self) {
        let run = self.fd.get_kvm_run();
        // SAFETY: the last exit was KVM_EXIT_IO (we only get here then), so
        // `io` is the active member of the union.
        let io = unsafe { run.__bindgen_anon_1.io };
        let size = io.size as usize;
        let len = size * io.count as usize;
        let base = std::ptr::from_mut(run).cast::<u8>();
        // SAFETY: KVM places `count * size` bytes of data at `data_offset`
        // inside the mmapped kvm_run area, which lives as long as the vCPU fd;
        // nothing else aliases it while this thread handles the exit.
        let data =
            unsafe { std::slice::from_raw_parts_mut(base.add(io.data_offset as usize), len) };
        let port = io.port as u64;
        let input = io.direction as u32 == KVM_EXIT_IO_IN;
        for element in data.chunks_mut(size.max(1)) {
            if input {
                if !self.context.io_bus.read(port, element)
                    && !self.context.pci.read_bar(AddressSpace::Io, port, element)
                {
                    guest_warn!(
                        port = format_args!("{port:#x}"),
                        len = size,
                        "read of unassigned port"
                    );
                    element.fill(0xff);
                }
                trace!(port, ?element, "port read");
            } else {
                trace!(port, ?element, "port write");
                if !self.context.io_bus.write(port, element)
                    && !self.context.pci.write_bar(AddressSpace::Io, port, element)
                {
                    guest_warn!(port = format_args!("{port:#x}"), value = ?element, "write to unassigned port");
                }
            }
        }
    }

    /// Leaves this vCPU's registers where the machine can read them while
    /// it is paused.
    fn record_registers(&self) {
        if let (Ok(regs), Ok(sregs)) = (self.fd.get_regs(), self.fd.get_sregs()) {
            self.context
                .registers
                .lock()
                .unwrap()
                .insert(self.id, VcpuRegisters { regs, sregs });
        }
    }

    fn rip(&self) -> Option<u64> {
        self.fd.get_regs().ok().map(|regs| regs.rip)
    }

    fn failure(
        &self,
        what: String,
        exit_reason: u32,
        suberror: Option<u32>,
        data: Vec<u64>,
    ) -> StopReason {
        StopReason::KvmFailure(KvmFailure {
            vcpu: self.id,
            what,
            exit_reason,
            suberror,
            rip: self.rip(),
            cs_base: self.fd.get_sregs().ok().map(|sregs| sregs.cs.base),
            data,
        })
    }

    fn internal_error(&mut self) -> StopReason {
        let run = self.fd.get_kvm_run();
        // SAFETY: the exit was KVM_EXIT_INTERNAL_ERROR, whose union member is `internal`.
        let internal = unsafe { run.__bindgen_anon_1.internal };
        let words = (internal.ndata as usize).min(internal.data.len());
        let data = internal.data[..words].to_vec();
        let what = match internal.suberror {
            KVM_INTERNAL_ERROR_EMULATION => {
                "KVM could not emulate an instruction of the guest".to_string()
            }
            2 => "KVM hit a simultaneous exception while delivering an interrupt".to_string(),
            3 => "KVM hit an exception while delivering an event to the guest".to_string(),
            sub => format!("KVM reported internal error {sub}"),
        };
        self.failure(
            what,
            kvm_bindings::KVM_EXIT_INTERNAL_ERROR,
            Some(internal.suberror),
            data,
        )
    }
}
