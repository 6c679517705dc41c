//! The virtio PCI transport, modern interface only (VIRTIO 1.2 §4.1).
//!
//! A [`VirtioPciDevice`] wraps one [`VirtioDevice`] as a PCI function
//! 1af4:(1040 + device type), revision 1, with one 64-bit prefetchable
//! memory BAR (BAR 4, 16 KiB, where QEMU puts it) holding four structures,
//! each announced by a vendor-specific capability (§4.1.4):
//!
//! | BAR 4 offset | structure                                   | cfg_type |
//! |--------------|---------------------------------------------|----------|
//! | 0x0000       | common configuration (§4.1.4.3)             | 1        |
//! | 0x1000       | ISR status (§4.1.4.5)                       | 3        |
//! | 0x2000       | device-specific configuration (§4.1.4.6)    | 4        |
//! | 0x3000       | notifications, `notify_off_multiplier` 4 (§4.1.4.4) | 2 |
//!
//! plus the PCI configuration access capability (cfg_type 5, §4.1.4.9),
//! which SeaBIOS uses when the BAR sits above 4 GiB and its 32-bit code
//! cannot reach it.
//!
//! Interrupts are MSI-X when the driver enables it, INTx otherwise. MSI-X
//! has one vector per queue plus one for configuration changes, with the
//! table and PBA in BAR 1 (a 32-bit memory BAR of 4 KiB, QEMU's layout;
//! see [`crate::devices::pci::msix`]). The driver maps queues and
//! configuration changes to vectors with `queue_msix_vector` and
//! `config_msix_vector`, which read back what was written, or NO_VECTOR
//! (0xffff) for a vector the table does not have (§4.1.5.1.2); an event
//! mapped to NO_VECTOR sends nothing. The ISR keeps its bits in both modes
//! (bit 0 for used buffers, bit 1 for configuration changes); the INTx
//! line is high while any bit is set, MSI-X is off and the command
//! register does not disable INTx, and reading the ISR clears it and
//! lowers the line. Also not emulated: the legacy (0.9.5) I/O-port interface and
//! transitional device IDs, the PCI status register's interrupt-status bit,
//! `VIRTIO_F_NOTIFICATION_DATA`, `VIRTIO_F_RING_RESET` (`queue_reset`).
//!
//! Notifications: given a [`NotifyBinder`] (the VMM's KVM_IOEVENTFD), the
//! transport tells it each queue's notify address whenever BAR 4 moves,
//! and a worker thread runs the queue when its eventfd fires (see
//! [`super::notify`]); the vCPU never touches the queues. A write that
//! still arrives here (no binder, the configuration access window,
//! SeaBIOS before the BAR is bound) is handled synchronously inside the
//! guest's write, as it always was.

use std::sync::{Arc, Mutex};

use virtio_queue::{Queue, QueueT};
use vm_memory::{GuestAddress, GuestMemoryBackend};

use super::notify::NotifyBinder;
use super::{
    VirtioDevice, VirtioInterrupt, STATUS_DEVICE_NEEDS_RESET, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
    VIRTIO_F_VERSION_1, VIRTIO_ID_BLOCK, VIRTIO_ID_CONSOLE, VIRTIO_ID_INPUT, VIRTIO_ID_NET,
    VIRTIO_RING_F_INDIRECT_DESC,
};
use crate::devices::pci::msix::{
    MsiSink, Msix, MSIX_BAR_SIZE, MSIX_MESSAGE_CONTROL, PCI_CAP_ID_MSIX,
};
use crate::devices::pci::{BarKind, PciClass, PciConfig, PciDevice, PCI_ROM_BAR};
use crate::devices::{GuestRam, IrqLine};
use crate::guest_warn;

/// PCI vendor of every virtio device (§4.1.2).
pub const VIRTIO_PCI_VENDOR_ID: u16 = 0x1af4;
/// Modern device IDs are this plus the device type (§4.1.2).
pub const VIRTIO_PCI_DEVICE_ID_BASE: u16 = 0x1040;
/// Subsystem ID: QEMU's for all its PCI devices; §4.1.2.1 asks for ≥ 0x40.
const SUBSYSTEM_ID: u16 = 0x1100;
/// Revision 1: a non-transitional (modern-only) device (§4.1.2.1).
const REVISION_MODERN: u8 = 1;

/// The BAR holding every virtio structure.
pub const VIRTIO_BAR: usize = 4;
pub const VIRTIO_BAR_SIZE: u64 = 0x4000;
/// The BAR holding the MSI-X table and PBA (QEMU's choice too).
pub const MSIX_BAR: usize = 1;

const COMMON_CFG_OFFSET: u64 = 0x0000;
/// Length of `struct virtio_pci_common_cfg` up to `queue_device`.
const COMMON_CFG_LEN: u64 = 0x38;
const ISR_CFG_OFFSET: u64 = 0x1000;
const ISR_CFG_LEN: u64 = 1;
const DEVICE_CFG_OFFSET: u64 = 0x2000;
const DEVICE_CFG_LEN: u64 = 0x1000;
const NOTIFY_CFG_OFFSET: u64 = 0x3000;
const NOTIFY_CFG_LEN: u64 = 0x1000;
/// Queue `n` is notified at `NOTIFY_CFG_OFFSET + n * NOTIFY_OFF_MULTIPLIER`.
const NOTIFY_OFF_MULTIPLIER: u32 = 4;

/// Capability ID of a vendor-specific capability (PCI 3.0 appendix H).
const PCI_CAP_ID_VNDR: u8 = 0x09;
/// `cfg_type` values (§4.1.4).
pub const VIRTIO_PCI_CAP_COMMON_CFG: u8 = 1;
pub const VIRTIO_PCI_CAP_NOTIFY_CFG: u8 = 2;
pub const VIRTIO_PCI_CAP_ISR_CFG: u8 = 3;
pub const VIRTIO_PCI_CAP_DEVICE_CFG: u8 = 4;
pub const VIRTIO_PCI_CAP_PCI_CFG: u8 = 5;

/// Offsets inside `struct virtio_pci_cfg_cap` (§4.1.4.9).
const CFG_CAP_BAR: usize = 4;
const CFG_CAP_OFFSET: usize = 8;
const CFG_CAP_LENGTH: usize = 12;
const CFG_CAP_DATA: usize = 16;

/// Registers of `struct virtio_pci_common_cfg` (§4.1.4.3), by offset;
/// the host-side harness programs the same ones.
pub(super) const DEVICE_FEATURE_SELECT: u64 = 0x00;
pub(super) const DEVICE_FEATURE: u64 = 0x04;
pub(super) const DRIVER_FEATURE_SELECT: u64 = 0x08;
pub(super) const DRIVER_FEATURE: u64 = 0x0c;
pub(super) const CONFIG_MSIX_VECTOR: u64 = 0x10;
pub(super) const NUM_QUEUES: u64 = 0x12;
pub(super) const DEVICE_STATUS: u64 = 0x14;
pub(super) const CONFIG_GENERATION: u64 = 0x15;
pub(super) const QUEUE_SELECT: u64 = 0x16;
pub(super) const QUEUE_SIZE: u64 = 0x18;
pub(super) const QUEUE_MSIX_VECTOR: u64 = 0x1a;
pub(super) const QUEUE_ENABLE: u64 = 0x1c;
pub(super) const QUEUE_NOTIFY_OFF: u64 = 0x1e;
pub(super) const QUEUE_DESC: u64 = 0x20;
pub(super) const QUEUE_DRIVER: u64 = 0x28;
pub(super) const QUEUE_DEVICE: u64 = 0x30;

/// (offset, width) of every common configuration field.
const COMMON_FIELDS: [(u64, u64); 16] = [
    (DEVICE_FEATURE_SELECT, 4),
    (DEVICE_FEATURE, 4),
    (DRIVER_FEATURE_SELECT, 4),
    (DRIVER_FEATURE, 4),
    (CONFIG_MSIX_VECTOR, 2),
    (NUM_QUEUES, 2),
    (DEVICE_STATUS, 1),
    (CONFIG_GENERATION, 1),
    (QUEUE_SELECT, 2),
    (QUEUE_SIZE, 2),
    (QUEUE_MSIX_VECTOR, 2),
    (QUEUE_ENABLE, 2),
    (QUEUE_NOTIFY_OFF, 2),
    (QUEUE_DESC, 8),
    (QUEUE_DRIVER, 8),
    (QUEUE_DEVICE, 8),
];

/// MSI-X "no vector" (§4.1.4.3): an event that sends no message.
const VIRTIO_MSI_NO_VECTOR: u16 = 0xffff;

/// ISR status bits (§4.1.4.5).
const ISR_QUEUE: u8 = 1;
const ISR_CONFIG: u8 = 2;

/// Interrupt state shared between the transport and its device (which may
/// signal from another thread).
struct PciInterrupt {
    irq: Arc<dyn IrqLine>,
    state: Mutex<InterruptState>,
}

struct InterruptState {
    isr: u8,
    /// Command register bit 10: the driver disabled INTx.
    intx_disabled: bool,
    needs_reset: bool,
    config_generation: u8,
    /// The MSI-X vector of configuration changes, and of each queue.
    config_vector: u16,
    queue_vectors: Vec<u16>,
    msix: Msix,
}

impl PciInterrupt {
    fn lock(&self) -> std::sync::MutexGuard<'_, InterruptState> {
        // A panic while holding this lock cannot leave the state torn.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Drives the line from the state; called with the lock held so that
    /// concurrent signals cannot reorder level changes. A function with
    /// MSI-X enabled must not use INTx (PCI 3.0 §6.8.2).
    fn update(&self, state: &InterruptState) {
        self.irq
            .set_level(state.isr != 0 && !state.intx_disabled && !state.msix.enabled());
    }

    /// Sets ISR `bits` and interrupts: `vector`'s message under MSI-X, the
    /// INTx line otherwise.
    fn raise(&self, bits: u8, vector: impl Fn(&InterruptState) -> u16, config: bool) {
        let mut state = self.lock();
        state.isr |= bits;
        if config {
            state.config_generation = state.config_generation.wrapping_add(1);
        }
        if state.msix.enabled() {
            let vector = vector(&state);
            if vector != VIRTIO_MSI_NO_VECTOR {
                state.msix.notify(vector);
            }
        }
        self.update(&state);
    }

    /// Reads and clears the ISR, lowering the line (§4.1.4.5.1).
    fn take_isr(&self) -> u8 {
        let mut state = self.lock();
        let isr = std::mem::take(&mut state.isr);
        self.update(&state);
        isr
    }

    fn set_intx_disabled(&self, disabled: bool) {
        let mut state = self.lock();
        if state.intx_disabled != disabled {
            state.intx_disabled = disabled;
            self.update(&state);
        }
    }

    /// The message control register changed (MSI-X enable, function mask).
    fn set_msix_control(&self, control: u16) {
        let mut state = self.lock();
        state.msix.set_control(control);
        self.update(&state);
    }

    /// A device reset (§2.4): the ISR and the vector mapping start over;
    /// the MSI-X table is the PCI function's and stays.
    fn reset(&self) {
        let mut state = self.lock();
        state.isr = 0;
        state.needs_reset = false;
        state.config_vector = VIRTIO_MSI_NO_VECTOR;
        state.queue_vectors.fill(VIRTIO_MSI_NO_VECTOR);
        self.update(&state);
    }
}

impl VirtioInterrupt for PciInterrupt {
    fn signal_used_queue(&self, queue: u16) {
        self.raise(
            ISR_QUEUE,
            |state| {
                state
                    .queue_vectors
                    .get(queue as usize)
                    .copied()
                    .unwrap_or(VIRTIO_MSI_NO_VECTOR)
            },
            false,
        );
    }

    fn signal_config_change(&self) {
        self.raise(ISR_CONFIG, |state| state.config_vector, true);
    }

    fn set_needs_reset(&self) {
        self.lock().needs_reset = true;
        self.raise(ISR_CONFIG, |state| state.config_vector, false);
    }
}

/// The driver-visible registers of one queue.
#[derive(Debug, Clone, Copy)]
struct QueueRegs {
    max_size: u16,
    size: u16,
    enabled: bool,
    desc: u64,
    driver: u64,
    device: u64,
}

impl QueueRegs {
    fn new(max_size: u16) -> Self {
        Self {
            max_size,
            size: max_size,
            enabled: false,
            desc: 0,
            driver: 0,
            device: 0,
        }
    }
}

/// A virtio device behind the modern PCI transport.
pub struct VirtioPciDevice {
    config: PciConfig,
    device: Box<dyn VirtioDevice>,
    mem: GuestRam,
    interrupt: Arc<PciInterrupt>,
    /// Offset of the PCI configuration access capability.
    cfg_cap: usize,
    /// Offset of the MSI-X capability.
    msix_cap: usize,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    queue_select: u16,
    queues: Vec<QueueRegs>,
    /// Whether [`VirtioDevice::activate`] succeeded since the last reset.
    active: bool,
    /// The expansion ROM image (a boot ROM such as iPXE's), if any.
    rom: Vec<u8>,
    /// Binds the notify addresses to eventfds, and where BAR 4 was when it
    /// last did.
    binder: Option<Arc<dyn NotifyBinder>>,
    bound_base: Option<u64>,
}

/// The PCI class a driver expects for each device type (QEMU's choices).
fn class_for(device_type: u32) -> PciClass {
    let (base, sub) = match device_type {
        VIRTIO_ID_NET => (0x02, 0x00),     // network, Ethernet
        VIRTIO_ID_BLOCK => (0x01, 0x80),   // mass storage, other
        VIRTIO_ID_CONSOLE => (0x07, 0x80), // communication, other
        VIRTIO_ID_INPUT => (0x09, 0x80),   // input, other
        _ => (0xff, 0x00),
    };
    PciClass {
        base,
        sub,
        prog_if: 0,
    }
}

/// How many MSI-X vectors the transport gives `device`: one per queue and
/// one for configuration changes (as QEMU does), so that a driver can give
/// each queue its own interrupt.
pub fn msix_vectors(device: &dyn VirtioDevice) -> u16 {
    (device.queue_max_sizes().len() + 1).min(crate::devices::pci::msix::MSIX_MAX_VECTORS as usize)
        as u16
}

/// The body (after ID and next pointer) of a `struct virtio_pci_cap`.
fn virtio_cap(cfg_type: u8, bar: u8, offset: u64, length: u64, extra: &[u8]) -> Vec<u8> {
    let cap_len = 16 + extra.len() as u8;
    let mut body = vec![cap_len, cfg_type, bar, 0, 0, 0];
    body.extend_from_slice(&(offset as u32).to_le_bytes());
    body.extend_from_slice(&(length as u32).to_le_bytes());
    body.extend_from_slice(extra);
    body
}

impl VirtioPciDevice {
    /// Wraps `device`; `irq` is the function's INTA# line (a `PciIntx`),
    /// `msi` where its [`msix_vectors`] MSI-X vectors go.
    ///
    /// # Panics
    ///
    /// If the device declares no queues or a queue size that is not a power
    /// of two up to 32768: a bug in the device model, not guest input.
    pub fn new(
        device: Box<dyn VirtioDevice>,
        mem: GuestRam,
        irq: Arc<dyn IrqLine>,
        msi: Arc<dyn MsiSink>,
    ) -> Self {
        let max_sizes = device.queue_max_sizes().to_vec();
        assert!(
            !max_sizes.is_empty() && max_sizes.iter().all(|&s| s.is_power_of_two() && s <= 32768),
            "virtio device declares bad queues {max_sizes:?}"
        );
        let device_type = device.device_type();
        let mut config = PciConfig::new(
            VIRTIO_PCI_VENDOR_ID,
            VIRTIO_PCI_DEVICE_ID_BASE + device_type as u16,
            class_for(device_type),
            REVISION_MODERN,
        )
        .with_subsystem(VIRTIO_PCI_VENDOR_ID, SUBSYSTEM_ID)
        .with_interrupt_pin(1)
        .with_bar(
            MSIX_BAR,
            BarKind::Memory32 {
                prefetchable: false,
            },
            MSIX_BAR_SIZE,
        )
        .with_bar(
            VIRTIO_BAR,
            BarKind::Memory64 { prefetchable: true },
            VIRTIO_BAR_SIZE,
        );

        let bar = VIRTIO_BAR as u8;
        let notify_len =
            (max_sizes.len() as u64 * NOTIFY_OFF_MULTIPLIER as u64).min(NOTIFY_CFG_LEN);
        let caps = [
            virtio_cap(
                VIRTIO_PCI_CAP_COMMON_CFG,
                bar,
                COMMON_CFG_OFFSET,
                COMMON_CFG_LEN,
                &[],
            ),
            virtio_cap(
                VIRTIO_PCI_CAP_ISR_CFG,
                bar,
                ISR_CFG_OFFSET,
                ISR_CFG_LEN,
                &[],
            ),
            virtio_cap(
                VIRTIO_PCI_CAP_DEVICE_CFG,
                bar,
                DEVICE_CFG_OFFSET,
                DEVICE_CFG_LEN,
                &[],
            ),
            virtio_cap(
                VIRTIO_PCI_CAP_NOTIFY_CFG,
                bar,
                NOTIFY_CFG_OFFSET,
                notify_len,
                &NOTIFY_OFF_MULTIPLIER.to_le_bytes(),
            ),
        ];
        for body in caps {
            config.add_capability(PCI_CAP_ID_VNDR, &body);
        }
        // The access window: bar, offset and length are the driver's to set,
        // and pci_cfg_data holds what passes through it.
        let cfg_cap = config.add_capability(
            PCI_CAP_ID_VNDR,
            &virtio_cap(VIRTIO_PCI_CAP_PCI_CFG, 0, 0, 0, &[0; 4]),
        );
        config = config.with_writable(cfg_cap + CFG_CAP_BAR, 0xff);
        for byte in CFG_CAP_OFFSET..CFG_CAP_DATA + 4 {
            config = config.with_writable(cfg_cap + byte, 0xff);
        }
        // MSI-X: the driver may set MSI-X enable and function mask (bits
        // 15 and 14 of message control, in its upper byte).
        let vectors = msix_vectors(device.as_ref());
        let msix_cap = config.add_capability(
            PCI_CAP_ID_MSIX,
            &Msix::capability_body(vectors, MSIX_BAR as u8),
        );
        config = config.with_writable(msix_cap + MSIX_MESSAGE_CONTROL + 1, 0xc0);

        let interrupt = Arc::new(PciInterrupt {
            irq,
            state: Mutex::new(InterruptState {
                isr: 0,
                intx_disabled: config.intx_disabled(),
                needs_reset: false,
                config_generation: 0,
                config_vector: VIRTIO_MSI_NO_VECTOR,
                queue_vectors: vec![VIRTIO_MSI_NO_VECTOR; max_sizes.len()],
                msix: Msix::new(vectors, msi),
            }),
        });
        Self {
            config,
            device,
            mem,
            interrupt,
            cfg_cap,
            msix_cap,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_select: 0,
            queues: max_sizes.into_iter().map(QueueRegs::new).collect(),
            active: false,
            rom: Vec::new(),
            binder: None,
            bound_base: None,
        }
    }

    /// How many queues the device has (each with its notify address).
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }

    /// Has `binder` bind each queue's notify address wherever the guest
    /// puts BAR 4.
    pub fn with_notify_binder(mut self, binder: Arc<dyn NotifyBinder>) -> Self {
        self.binder = Some(binder);
        self.rebind_notify();
        self
    }

    /// Re-binds the notify addresses if BAR 4 moved, appeared or vanished.
    fn rebind_notify(&mut self) {
        let Some(binder) = &self.binder else {
            return;
        };
        let base = self.config.bar_region(VIRTIO_BAR).map(|r| r.base);
        if base == self.bound_base {
            return;
        }
        self.bound_base = base;
        let addresses: Vec<u64> = match base {
            Some(base) => (0..self.queues.len() as u64)
                .map(|n| base + NOTIFY_CFG_OFFSET + n * NOTIFY_OFF_MULTIPLIER as u64)
                .collect(),
            None => Vec::new(),
        };
        binder.bind(&addresses);
    }

    /// Exposes `rom` through the expansion ROM BAR, where SeaBIOS finds a
    /// device's option ROM (iPXE for network boot).
    pub fn with_rom(mut self, rom: Vec<u8>) -> Self {
        if !rom.is_empty() {
            let size = (rom.len() as u64).next_power_of_two().max(2048);
            self.config = self.config.with_rom(size);
            self.rom = rom;
        }
        self
    }

    /// Every feature the driver may accept: the device's plus the reserved
    /// ones this transport implements.
    fn offered_features(&self) -> u64 {
        self.device.device_features() | 1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_RING_F_INDIRECT_DESC
    }

    /// The device status as the driver reads it.
    fn device_status(&self) -> u8 {
        let needs_reset = self.interrupt.lock().needs_reset;
        self.status
            | if needs_reset {
                STATUS_DEVICE_NEEDS_RESET
            } else {
                0
            }
    }

    fn selected_queue(&self) -> Option<&QueueRegs> {
        self.queues.get(self.queue_select as usize)
    }

    /// Device reset (§2.4): stops the device and clears the virtio
    /// registers, ISR and DEVICE_NEEDS_RESET, as a driver's write of 0 to
    /// `device_status` does. The VMM calls it on a machine reset; the PCI
    /// header (BARs, command register) is left to the caller.
    pub fn reset(&mut self) {
        if self.active {
            self.device.reset();
            self.active = false;
        }
        self.status = 0;
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.queue_select = 0;
        for queue in &mut self.queues {
            *queue = QueueRegs::new(queue.max_size);
        }
        self.interrupt.reset();
    }

    /// A write of `device_status` (§2.1, §3.1.1).
    fn write_status(&mut self, mut value: u8) {
        if value == 0 {
            self.reset();
            return;
        }
        let old = self.status;
        if old & !value != 0 {
            guest_warn!(
                old,
                value,
                "virtio driver cleared device status bits without a reset"
            );
            return;
        }
        let new = value & !old;
        if new & STATUS_FEATURES_OK != 0 {
            let unknown = self.driver_features & !self.offered_features();
            if unknown != 0 || self.driver_features & (1 << VIRTIO_F_VERSION_1) == 0 {
                // Leaving FEATURES_OK clear is how the device refuses (§3.1.1 step 6).
                guest_warn!(
                    features = self.driver_features,
                    unknown,
                    "virtio driver accepted features not offered, or not VERSION_1"
                );
                value &= !STATUS_FEATURES_OK;
            } else {
                self.device.ack_features(self.driver_features);
            }
        }
        if new & STATUS_DRIVER_OK != 0 {
            if value & STATUS_FEATURES_OK == 0 {
                guest_warn!(value, "virtio DRIVER_OK without FEATURES_OK");
                value &= !STATUS_DRIVER_OK;
            } else {
                self.activate();
            }
        }
        self.status = value;
    }

    /// Hands the enabled queues to the device; a queue that does not fit in
    /// guest RAM marks the device DEVICE_NEEDS_RESET instead.
    fn activate(&mut self) {
        let mut queues = Vec::with_capacity(self.queues.len());
        for (index, regs) in self.queues.iter().enumerate() {
            match Self::build_queue(&self.mem, regs) {
                Ok(queue) => queues.push(queue),
                Err(problem) => {
                    guest_warn!(queue = index, problem, "virtio queue set up badly");
                    self.interrupt.set_needs_reset();
                    return;
                }
            }
        }
        match self
            .device
            .activate(self.mem.clone(), queues, self.interrupt.clone())
        {
            Ok(()) => self.active = true,
            Err(error) => {
                tracing::error!(%error, "virtio device failed to start");
                self.interrupt.set_needs_reset();
            }
        }
    }

    fn build_queue(mem: &GuestRam, regs: &QueueRegs) -> Result<Queue, &'static str> {
        let mut queue = Queue::new(regs.max_size).map_err(|_| "bad maximum size")?;
        if !regs.enabled {
            return Ok(queue);
        }
        queue.try_set_size(regs.size).map_err(|_| "bad size")?;
        // Alignment (§2.7): descriptors 16, driver area 2, device area 4.
        queue
            .try_set_desc_table_address(GuestAddress(regs.desc))
            .map_err(|_| "misaligned descriptor table")?;
        queue
            .try_set_avail_ring_address(GuestAddress(regs.driver))
            .map_err(|_| "misaligned driver area")?;
        queue
            .try_set_used_ring_address(GuestAddress(regs.device))
            .map_err(|_| "misaligned device area")?;
        let size = regs.size as usize;
        for (addr, len, what) in [
            (regs.desc, 16 * size, "descriptor table outside RAM"),
            (regs.driver, 6 + 2 * size, "driver area outside RAM"),
            (regs.device, 6 + 8 * size, "device area outside RAM"),
        ] {
            if !GuestMemoryBackend::check_range(mem, GuestAddress(addr), len) {
                return Err(what);
            }
        }
        // virtio-queue treats a zero driver area as "not set up".
        if regs.driver == 0 {
            return Err("driver area at address 0");
        }
        queue.set_ready(true);
        Ok(queue)
    }

    /// The field of the common configuration holding `[offset, offset + len)`.
    fn common_field(offset: u64, len: usize) -> Option<(u64, u64)> {
        let len = len as u64;
        COMMON_FIELDS
            .iter()
            .copied()
            .find(|&(start, width)| offset >= start && offset + len <= start + width)
            .filter(|_| matches!(len, 1 | 2 | 4 | 8) && offset % len == 0)
    }

    fn common_register(&self, field: u64) -> u64 {
        let queue = self.selected_queue();
        match field {
            DEVICE_FEATURE_SELECT => self.device_feature_select as u64,
            DEVICE_FEATURE => match self.device_feature_select {
                0 => self.offered_features() & 0xffff_ffff,
                1 => self.offered_features() >> 32,
                _ => 0,
            },
            DRIVER_FEATURE_SELECT => self.driver_feature_select as u64,
            DRIVER_FEATURE => match self.driver_feature_select {
                0 => self.driver_features & 0xffff_ffff,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            CONFIG_MSIX_VECTOR => self.interrupt.lock().config_vector as u64,
            QUEUE_MSIX_VECTOR => self
                .interrupt
                .lock()
                .queue_vectors
                .get(self.queue_select as usize)
                .map_or(VIRTIO_MSI_NO_VECTOR, |&v| v) as u64,
            NUM_QUEUES => self.queues.len() as u64,
            DEVICE_STATUS => self.device_status() as u64,
            CONFIG_GENERATION => self.interrupt.lock().config_generation as u64,
            QUEUE_SELECT => self.queue_select as u64,
            QUEUE_SIZE => queue.map_or(0, |q| q.size as u64),
            QUEUE_ENABLE => queue.map_or(0, |q| q.enabled as u64),
            // Each queue has its own notification address.
            QUEUE_NOTIFY_OFF => queue.map_or(0, |_| self.queue_select as u64),
            QUEUE_DESC => queue.map_or(0, |q| q.desc),
            QUEUE_DRIVER => queue.map_or(0, |q| q.driver),
            QUEUE_DEVICE => queue.map_or(0, |q| q.device),
            _ => 0,
        }
    }

    fn set_common_register(&mut self, field: u64, value: u64) {
        match field {
            DEVICE_FEATURE_SELECT => self.device_feature_select = value as u32,
            DRIVER_FEATURE_SELECT => self.driver_feature_select = value as u32,
            DRIVER_FEATURE => {
                if self.status & STATUS_FEATURES_OK != 0 {
                    guest_warn!("virtio driver changed features after FEATURES_OK");
                    return;
                }
                match self.driver_feature_select {
                    0 => self.driver_features = (self.driver_features & !0xffff_ffff) | value,
                    1 => self.driver_features = (self.driver_features & 0xffff_ffff) | value << 32,
                    select => {
                        if value != 0 {
                            guest_warn!(
                                select,
                                value,
                                "virtio driver accepted features beyond bit 63"
                            );
                        }
                    }
                }
            }
            CONFIG_MSIX_VECTOR | QUEUE_MSIX_VECTOR => self.map_vector(field, value as u16),
            DEVICE_STATUS => self.write_status(value as u8),
            QUEUE_SELECT => self.queue_select = value as u16,
            QUEUE_SIZE | QUEUE_ENABLE | QUEUE_DESC | QUEUE_DRIVER | QUEUE_DEVICE => {
                self.write_queue_register(field, value)
            }
            _ => guest_warn!(
                field,
                value,
                "write to read-only virtio common configuration field"
            ),
        }
    }

    /// Maps configuration changes or the selected queue to MSI-X vector
    /// `vector`; one the table does not have reads back as NO_VECTOR,
    /// which is how the driver learns of the failure (§4.1.5.1.2).
    fn map_vector(&mut self, field: u64, vector: u16) {
        let mut state = self.interrupt.lock();
        let vector = if vector < state.msix.vectors() {
            vector
        } else {
            if vector != VIRTIO_MSI_NO_VECTOR {
                guest_warn!(
                    vector,
                    vectors = state.msix.vectors(),
                    "virtio driver mapped an MSI-X vector the table does not have"
                );
            }
            VIRTIO_MSI_NO_VECTOR
        };
        if field == CONFIG_MSIX_VECTOR {
            state.config_vector = vector;
        } else if let Some(slot) = state.queue_vectors.get_mut(self.queue_select as usize) {
            *slot = vector;
        } else {
            guest_warn!(
                select = self.queue_select,
                "virtio driver mapped a vector for a queue that does not exist"
            );
        }
    }

    fn write_queue_register(&mut self, field: u64, value: u64) {
        let locked = self.status & STATUS_DRIVER_OK != 0;
        let select = self.queue_select;
        let Some(queue) = self.queues.get_mut(select as usize) else {
            guest_warn!(
                select,
                "virtio driver configured a queue that does not exist"
            );
            return;
        };
        if queue.enabled || locked {
            guest_warn!(
                select,
                field,
                "virtio driver changed a queue after enabling it"
            );
            return;
        }
        match field {
            QUEUE_SIZE => {
                let size = value as u16;
                if size == 0 || !size.is_power_of_two() || size > queue.max_size {
                    guest_warn!(
                        select,
                        size,
                        max = queue.max_size,
                        "virtio queue size is not a power of two up to the maximum"
                    );
                } else {
                    queue.size = size;
                }
            }
            QUEUE_ENABLE => {
                if value == 1 {
                    queue.enabled = true;
                } else {
                    guest_warn!(
                        select,
                        value,
                        "virtio driver wrote queue_enable other than 1"
                    );
                }
            }
            QUEUE_DESC => queue.desc = value,
            QUEUE_DRIVER => queue.driver = value,
            QUEUE_DEVICE => queue.device = value,
            _ => {}
        }
    }

    fn read_common(&self, offset: u64, data: &mut [u8]) {
        match Self::common_field(offset, data.len()) {
            Some((field, _)) => {
                let bytes = self.common_register(field).to_le_bytes();
                let skip = (offset - field) as usize;
                data.copy_from_slice(&bytes[skip..skip + data.len()]);
            }
            None => {
                if offset < COMMON_CFG_LEN {
                    guest_warn!(
                        offset,
                        len = data.len(),
                        "odd read of virtio common configuration"
                    );
                }
                data.fill(0);
            }
        }
    }

    fn write_common(&mut self, offset: u64, data: &[u8]) {
        let Some((field, width)) = Self::common_field(offset, data.len()) else {
            guest_warn!(
                offset,
                len = data.len(),
                "odd write to virtio common configuration"
            );
            return;
        };
        // Merge partial writes (the two halves of a 64-bit address) into the
        // field's current value.
        let mut bytes = self.common_register(field).to_le_bytes();
        let skip = (offset - field) as usize;
        bytes[skip..skip + data.len()].copy_from_slice(data);
        let mask = if width == 8 {
            u64::MAX
        } else {
            (1 << (8 * width)) - 1
        };
        self.set_common_register(field, u64::from_le_bytes(bytes) & mask);
    }

    fn write_notify(&mut self, offset: u64, data: &[u8]) {
        let queue = offset / NOTIFY_OFF_MULTIPLIER as u64;
        if offset % NOTIFY_OFF_MULTIPLIER as u64 != 0 || queue >= self.queues.len() as u64 {
            guest_warn!(offset, len = data.len(), "virtio notification to no queue");
            return;
        }
        self.notify_queue(queue as u16);
    }

    /// The driver notified `queue` (through its notify address or its
    /// eventfd): the device runs it, if it is running and may do DMA.
    pub fn notify_queue(&mut self, queue: u16) {
        if queue as usize >= self.queues.len() {
            guest_warn!(queue, "virtio notification to no queue");
            return;
        }
        if !self.active || self.interrupt.lock().needs_reset {
            guest_warn!(queue, "virtio notification while the device is not running");
            return;
        }
        if !self.config.bus_master() {
            guest_warn!(queue, "virtio notification with bus mastering disabled");
            return;
        }
        self.device.queue_notify(queue);
    }

    /// Reads BAR 4, as the CPU or the configuration access window does.
    fn read_virtio_bar(&mut self, offset: u64, data: &mut [u8]) {
        if data.is_empty() || data.len() > 8 {
            data.fill(0xff);
            return;
        }
        match offset {
            COMMON_CFG_OFFSET..ISR_CFG_OFFSET => self.read_common(offset - COMMON_CFG_OFFSET, data),
            ISR_CFG_OFFSET..DEVICE_CFG_OFFSET => {
                data.fill(0);
                if offset == ISR_CFG_OFFSET {
                    data[0] = self.interrupt.take_isr();
                }
            }
            DEVICE_CFG_OFFSET..NOTIFY_CFG_OFFSET => {
                self.device.read_config(offset - DEVICE_CFG_OFFSET, data)
            }
            _ => data.fill(0),
        }
    }

    fn write_virtio_bar(&mut self, offset: u64, data: &[u8]) {
        if data.is_empty() || data.len() > 8 {
            return;
        }
        match offset {
            COMMON_CFG_OFFSET..ISR_CFG_OFFSET => {
                self.write_common(offset - COMMON_CFG_OFFSET, data)
            }
            DEVICE_CFG_OFFSET..NOTIFY_CFG_OFFSET => {
                self.device.write_config(offset - DEVICE_CFG_OFFSET, data)
            }
            NOTIFY_CFG_OFFSET..VIRTIO_BAR_SIZE => {
                self.write_notify(offset - NOTIFY_CFG_OFFSET, data)
            }
            _ => guest_warn!(offset, "write to read-only virtio ISR status"),
        }
    }

    /// The BAR window the configuration access capability selects:
    /// `(offset, length)` if it is a valid one (§4.1.4.9.1).
    fn cfg_window(&self) -> Option<(u64, usize)> {
        let bar = self.config.u8(self.cfg_cap + CFG_CAP_BAR) as usize;
        let offset = self.config.u32(self.cfg_cap + CFG_CAP_OFFSET) as u64;
        let length = self.config.u32(self.cfg_cap + CFG_CAP_LENGTH) as u64;
        let valid = bar == VIRTIO_BAR
            && matches!(length, 1 | 2 | 4)
            && offset % length == 0
            && offset + length <= VIRTIO_BAR_SIZE;
        if !valid {
            guest_warn!(
                bar,
                offset,
                length,
                "bad virtio PCI configuration access window"
            );
        }
        valid.then_some((offset, length as usize))
    }

    fn overlaps_cfg_data(&self, offset: usize, len: usize) -> bool {
        let data = self.cfg_cap + CFG_CAP_DATA;
        offset < data + 4 && offset + len > data
    }
}

impl PciDevice for VirtioPciDevice {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn read_config(&mut self, offset: usize, data: &mut [u8]) {
        if !self.overlaps_cfg_data(offset, data.len()) {
            self.config.read(offset, data);
            return;
        }
        data.fill(0);
        if offset != self.cfg_cap + CFG_CAP_DATA {
            guest_warn!(
                offset,
                len = data.len(),
                "misaligned access to virtio pci_cfg_data"
            );
            return;
        }
        if let Some((bar_offset, length)) = self.cfg_window() {
            let mut window = [0u8; 4];
            self.read_virtio_bar(bar_offset, &mut window[..length]);
            let n = data.len().min(4);
            data[..n].copy_from_slice(&window[..n]);
        }
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        self.interrupt
            .set_intx_disabled(self.config.intx_disabled());
        let control = self.msix_cap + MSIX_MESSAGE_CONTROL;
        if offset < control + 2 && offset + data.len() > control {
            self.interrupt.set_msix_control(self.config.u16(control));
        }
        self.rebind_notify();
        if !self.overlaps_cfg_data(offset, data.len()) {
            return;
        }
        if offset != self.cfg_cap + CFG_CAP_DATA {
            guest_warn!(
                offset,
                len = data.len(),
                "misaligned access to virtio pci_cfg_data"
            );
            return;
        }
        if let Some((bar_offset, length)) = self.cfg_window() {
            let mut window = [0u8; 4];
            self.config.read(self.cfg_cap + CFG_CAP_DATA, &mut window);
            self.write_virtio_bar(bar_offset, &window[..length]);
        }
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar == VIRTIO_BAR {
            self.read_virtio_bar(offset, data);
        } else if bar == MSIX_BAR {
            self.interrupt.lock().msix.read(offset, data);
        } else if bar == PCI_ROM_BAR {
            for (i, byte) in data.iter_mut().enumerate() {
                *byte = usize::try_from(offset)
                    .ok()
                    .and_then(|o| o.checked_add(i))
                    .and_then(|o| self.rom.get(o))
                    .copied()
                    .unwrap_or(0xff);
            }
        } else {
            data.fill(0xff);
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar == VIRTIO_BAR {
            self.write_virtio_bar(offset, data);
        } else if bar == MSIX_BAR {
            self.interrupt.lock().msix.write(offset, data);
        }
    }
}

/// A driver's view of a [`VirtioPciDevice`], for tests here and in the
/// device files: finds the structures through the capability list, then
/// talks to them through BAR 4 (or the configuration access window).
#[cfg(test)]
pub(crate) mod testing {
    use super::*;
    use crate::devices::virtio::testing::DriverQueue;
    use crate::devices::virtio::{STATUS_ACKNOWLEDGE, STATUS_DRIVER};

    /// Where one structure lives: (bar, offset, length).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct Structure {
        pub bar: u8,
        pub offset: u64,
        pub length: u64,
    }

    pub struct Driver {
        pub dev: VirtioPciDevice,
        pub common: Structure,
        pub isr: Structure,
        pub device: Structure,
        pub notify: Structure,
        pub notify_multiplier: u32,
        pub cfg_cap: Option<usize>,
        /// The MSI-X capability's offset, if the function has one.
        pub msix_cap: Option<usize>,
    }

    pub fn cfg8(dev: &mut VirtioPciDevice, offset: usize) -> u8 {
        let mut b = [0; 1];
        dev.read_config(offset, &mut b);
        b[0]
    }

    pub fn cfg32(dev: &mut VirtioPciDevice, offset: usize) -> u32 {
        let mut b = [0; 4];
        dev.read_config(offset, &mut b);
        u32::from_le_bytes(b)
    }

    impl Driver {
        /// Walks the capability list as Linux's `virtio_pci_find_capability`
        /// and SeaBIOS's `vp_init_simple` do.
        pub fn probe(mut dev: VirtioPciDevice) -> Self {
            let mut found = [None; 6];
            let mut multiplier = 0;
            let mut msix_cap = None;
            let mut cap = cfg8(&mut dev, 0x34) as usize;
            let mut guard = 0;
            while cap != 0 {
                guard += 1;
                assert!(guard < 48, "capability list loops");
                if cfg8(&mut dev, cap) == PCI_CAP_ID_MSIX {
                    msix_cap = Some(cap);
                }
                if cfg8(&mut dev, cap) == PCI_CAP_ID_VNDR {
                    let cfg_type = cfg8(&mut dev, cap + 3);
                    let structure = Structure {
                        bar: cfg8(&mut dev, cap + 4),
                        offset: cfg32(&mut dev, cap + 8) as u64,
                        length: cfg32(&mut dev, cap + 12) as u64,
                    };
                    if cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG {
                        multiplier = cfg32(&mut dev, cap + 16);
                    }
                    let slot = if cfg_type == VIRTIO_PCI_CAP_PCI_CFG {
                        Some(cap)
                    } else {
                        None
                    };
                    found[cfg_type as usize] = Some((structure, slot));
                }
                cap = cfg8(&mut dev, cap + 1) as usize;
            }
            let get = |t: u8| found[t as usize].expect("structure missing").0;
            Driver {
                common: get(VIRTIO_PCI_CAP_COMMON_CFG),
                isr: get(VIRTIO_PCI_CAP_ISR_CFG),
                device: get(VIRTIO_PCI_CAP_DEVICE_CFG),
                notify: get(VIRTIO_PCI_CAP_NOTIFY_CFG),
                notify_multiplier: multiplier,
                cfg_cap: found[VIRTIO_PCI_CAP_PCI_CFG as usize].and_then(|(_, slot)| slot),
                msix_cap,
                dev,
            }
        }

        pub fn read(&mut self, s: Structure, offset: u64, len: usize) -> u64 {
            let mut buf = [0u8; 8];
            self.dev
                .read_bar(s.bar as usize, s.offset + offset, &mut buf[..len]);
            u64::from_le_bytes(buf)
        }

        pub fn write(&mut self, s: Structure, offset: u64, len: usize, value: u64) {
            self.dev.write_bar(
                s.bar as usize,
                s.offset + offset,
                &value.to_le_bytes()[..len],
            );
        }

        pub fn common_read(&mut self, offset: u64, len: usize) -> u64 {
            self.read(self.common, offset, len)
        }

        pub fn common_write(&mut self, offset: u64, len: usize, value: u64) {
            self.write(self.common, offset, len, value)
        }

        pub fn status(&mut self) -> u8 {
            self.common_read(DEVICE_STATUS, 1) as u8
        }

        pub fn set_status(&mut self, value: u8) {
            self.common_write(DEVICE_STATUS, 1, value as u64);
        }

        pub fn isr(&mut self) -> u8 {
            self.read(self.isr, 0, 1) as u8
        }

        pub fn device_features(&mut self) -> u64 {
            self.common_write(DEVICE_FEATURE_SELECT, 4, 0);
            let low = self.common_read(DEVICE_FEATURE, 4);
            self.common_write(DEVICE_FEATURE_SELECT, 4, 1);
            low | self.common_read(DEVICE_FEATURE, 4) << 32
        }

        pub fn set_driver_features(&mut self, features: u64) {
            self.common_write(DRIVER_FEATURE_SELECT, 4, 0);
            self.common_write(DRIVER_FEATURE, 4, features & 0xffff_ffff);
            self.common_write(DRIVER_FEATURE_SELECT, 4, 1);
            self.common_write(DRIVER_FEATURE, 4, features >> 32);
        }

        /// Reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK (§3.1.1 steps
        /// 1-6); returns whether the device kept FEATURES_OK.
        pub fn negotiate(&mut self, features: u64) -> bool {
            self.dev.write_config(0x04, &0x0006u16.to_le_bytes()); // memory + bus master
            self.set_status(0);
            self.set_status(STATUS_ACKNOWLEDGE);
            self.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER);
            self.set_driver_features(features);
            self.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK);
            self.status() & STATUS_FEATURES_OK != 0
        }

        /// Programs queue `index` from `queue` and enables it (§4.1.5.1.3).
        pub fn setup_queue(&mut self, index: u16, queue: &DriverQueue) {
            self.common_write(QUEUE_SELECT, 2, index as u64);
            self.common_write(QUEUE_SIZE, 2, queue.size as u64);
            for (field, addr) in [
                (QUEUE_DESC, queue.desc),
                (QUEUE_DRIVER, queue.avail),
                (QUEUE_DEVICE, queue.used),
            ] {
                self.common_write(field, 4, addr & 0xffff_ffff);
                self.common_write(field + 4, 4, addr >> 32);
            }
            self.common_write(QUEUE_ENABLE, 2, 1);
        }

        pub fn driver_ok(&mut self) {
            let status = self.status();
            self.set_status(status | STATUS_DRIVER_OK);
        }

        /// Writes MSI-X message control (enable, function mask).
        pub fn msix_control(&mut self, control: u16) {
            let cap = self.msix_cap.expect("no MSI-X capability");
            self.dev
                .write_config(cap + MSIX_MESSAGE_CONTROL, &control.to_le_bytes());
        }

        /// A dword of the MSI-X BAR (table or PBA).
        pub fn msix_read(&mut self, offset: u64) -> u32 {
            let mut data = [0; 4];
            self.dev.read_bar(MSIX_BAR, offset, &mut data);
            u32::from_le_bytes(data)
        }

        pub fn msix_write(&mut self, offset: u64, value: u32) {
            self.dev.write_bar(MSIX_BAR, offset, &value.to_le_bytes());
        }

        /// Programs table entry `vector` as Linux does: message, then unmask.
        pub fn program_vector(&mut self, vector: u16, address: u64, data: u32) {
            let at = 16 * vector as u64;
            self.msix_write(at, address as u32);
            self.msix_write(at + 4, (address >> 32) as u32);
            self.msix_write(at + 8, data);
            self.msix_write(at + 12, 0);
        }

        pub fn notify(&mut self, index: u16) {
            self.common_write(QUEUE_SELECT, 2, index as u64);
            let off = self.common_read(QUEUE_NOTIFY_OFF, 2);
            let notify = self.notify;
            self.write(notify, off * self.notify_multiplier as u64, 2, index as u64);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::testing::*;
    use super::*;
    use crate::devices::irq::FakeIrq;
    use crate::devices::pci::msix::{MsiMessage, RecordingMsi, MSIX_ENABLE, MSIX_FUNCTION_MASK};
    use crate::devices::virtio::testing::{ram, DriverQueue};
    use crate::devices::virtio::{VirtQueue, VirtioError, STATUS_ACKNOWLEDGE, STATUS_DRIVER};

    /// Counts what the transport asked of it; echoes each available chain
    /// back with length 0.
    #[derive(Default)]
    struct Probe {
        counters: Arc<Counters>,
        queues: Vec<VirtQueue>,
        running: Option<(GuestRam, Arc<dyn VirtioInterrupt>)>,
        config: [u8; 8],
    }

    #[derive(Default)]
    struct Counters {
        activations: AtomicUsize,
        resets: AtomicUsize,
        notifies: AtomicUsize,
        acked: AtomicUsize,
    }

    impl VirtioDevice for Probe {
        fn device_type(&self) -> u32 {
            VIRTIO_ID_BLOCK
        }
        fn device_features(&self) -> u64 {
            1 << 9
        }
        fn queue_max_sizes(&self) -> &[u16] {
            &[16, 8]
        }
        fn ack_features(&mut self, features: u64) {
            self.counters
                .acked
                .store(features as usize, Ordering::SeqCst);
        }
        fn read_config(&self, offset: u64, data: &mut [u8]) {
            for (i, byte) in data.iter_mut().enumerate() {
                *byte = self.config.get(offset as usize + i).copied().unwrap_or(0);
            }
        }
        fn activate(
            &mut self,
            mem: GuestRam,
            queues: Vec<Queue>,
            interrupt: Arc<dyn VirtioInterrupt>,
        ) -> Result<(), VirtioError> {
            self.counters.activations.fetch_add(1, Ordering::SeqCst);
            self.queues = queues
                .into_iter()
                .enumerate()
                .map(|(i, q)| VirtQueue::new(i as u16, q))
                .collect();
            self.running = Some((mem, interrupt));
            Ok(())
        }
        fn reset(&mut self) {
            self.counters.resets.fetch_add(1, Ordering::SeqCst);
            self.queues.clear();
            self.running = None;
        }
        fn queue_notify(&mut self, queue: u16) {
            self.counters.notifies.fetch_add(1, Ordering::SeqCst);
            if let (Some((mem, interrupt)), Some(q)) =
                (&self.running, self.queues.get_mut(queue as usize))
            {
                q.process(mem, interrupt.as_ref(), |_| 0);
            }
        }
    }

    fn probe_device() -> (Driver, Arc<Counters>, Arc<FakeIrq>, GuestRam) {
        let (d, counters, irq, mem, _) = probe_device_with_msi();
        (d, counters, irq, mem)
    }

    fn probe_device_with_msi() -> (
        Driver,
        Arc<Counters>,
        Arc<FakeIrq>,
        GuestRam,
        Arc<RecordingMsi>,
    ) {
        let msi = RecordingMsi::new();
        let mem = ram();
        let irq = FakeIrq::new();
        let probe = Probe {
            config: *b"ABCDEFGH",
            ..Default::default()
        };
        let counters = probe.counters.clone();
        let dev = VirtioPciDevice::new(Box::new(probe), mem.clone(), irq.clone(), msi.clone());
        (Driver::probe(dev), counters, irq, mem, msi)
    }

    const FEATURES: u64 = 1 << VIRTIO_F_VERSION_1 | 1 << 9;

    #[test]
    fn pci_identity_is_modern_virtio() {
        let (mut d, ..) = probe_device();
        assert_eq!(cfg32(&mut d.dev, 0x00), 0x1042_1af4);
        assert_eq!(
            cfg32(&mut d.dev, 0x08),
            0x0180_0001,
            "class 01.80, revision 1"
        );
        assert_eq!(cfg32(&mut d.dev, 0x2c), 0x1100_1af4);
        assert_eq!(cfg8(&mut d.dev, 0x3d), 1, "INTA#");
        // BAR 4 is 64-bit prefetchable memory of 16 KiB.
        d.dev.write_config(0x20, &u32::MAX.to_le_bytes());
        assert_eq!(cfg32(&mut d.dev, 0x20), 0xffff_c00c);
    }

    #[test]
    fn capabilities_describe_bar_4() {
        let (d, ..) = probe_device();
        assert_eq!(
            d.common,
            Structure {
                bar: 4,
                offset: 0,
                length: 0x38
            }
        );
        assert_eq!(
            d.isr,
            Structure {
                bar: 4,
                offset: 0x1000,
                length: 1
            }
        );
        assert_eq!(
            d.device,
            Structure {
                bar: 4,
                offset: 0x2000,
                length: 0x1000
            }
        );
        assert_eq!(
            d.notify,
            Structure {
                bar: 4,
                offset: 0x3000,
                length: 8
            }
        );
        assert_eq!(d.notify_multiplier, 4);
        assert!(d.cfg_cap.is_some());
    }

    #[test]
    fn feature_negotiation() {
        let (mut d, counters, ..) = probe_device();
        let offered = d.device_features();
        assert_eq!(offered, 1 << 32 | 1 << 28 | 1 << 9);
        // Without VERSION_1 the device refuses FEATURES_OK.
        assert!(!d.negotiate(1 << 9));
        // Nor does it accept features it never offered.
        assert!(!d.negotiate(FEATURES | 1 << 3));
        assert!(d.negotiate(FEATURES));
        assert_eq!(counters.acked.load(Ordering::SeqCst) as u64, FEATURES);
        // Features are frozen after FEATURES_OK.
        d.set_driver_features(1 << VIRTIO_F_VERSION_1);
        d.common_write(DRIVER_FEATURE_SELECT, 4, 0);
        assert_eq!(d.common_read(DRIVER_FEATURE, 4), 1 << 9);
        // Reading the MSI-X vectors says "none".
        assert_eq!(d.common_read(CONFIG_MSIX_VECTOR, 2), 0xffff);
        assert_eq!(d.common_read(QUEUE_MSIX_VECTOR, 2), 0xffff);
        assert_eq!(d.common_read(NUM_QUEUES, 2), 2);
    }

    #[test]
    fn status_machine_and_reset() {
        let (mut d, counters, ..) = probe_device();
        // DRIVER_OK without FEATURES_OK is refused.
        d.set_status(STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_DRIVER_OK);
        assert_eq!(d.status(), STATUS_ACKNOWLEDGE | STATUS_DRIVER);
        assert!(d.negotiate(FEATURES));
        let queue = DriverQueue::new(16, 0x10000);
        d.setup_queue(0, &queue);
        d.driver_ok();
        assert_eq!(counters.activations.load(Ordering::SeqCst), 1);
        assert_eq!(d.status() & STATUS_DRIVER_OK, STATUS_DRIVER_OK);
        // Clearing a bit without a reset is ignored.
        d.set_status(STATUS_ACKNOWLEDGE);
        assert_ne!(d.status() & STATUS_DRIVER_OK, 0);
        // Queue registers are frozen after DRIVER_OK.
        d.common_write(QUEUE_SELECT, 2, 1);
        d.common_write(QUEUE_SIZE, 2, 4);
        assert_eq!(d.common_read(QUEUE_SIZE, 2), 8);
        // Writing 0 resets everything.
        d.set_status(0);
        assert_eq!(d.status(), 0);
        assert_eq!(counters.resets.load(Ordering::SeqCst), 1);
        d.common_write(QUEUE_SELECT, 2, 0);
        assert_eq!(d.common_read(QUEUE_ENABLE, 2), 0);
        assert_eq!(d.common_read(QUEUE_SIZE, 2), 16);
    }

    #[test]
    fn queue_registers_read_back() {
        let (mut d, ..) = probe_device();
        d.common_write(QUEUE_SELECT, 2, 1);
        assert_eq!(d.common_read(QUEUE_SIZE, 2), 8);
        assert_eq!(d.common_read(QUEUE_NOTIFY_OFF, 2), 1);
        d.common_write(QUEUE_DESC, 4, 0x1234_5670);
        d.common_write(QUEUE_DESC + 4, 4, 0x9);
        assert_eq!(d.common_read(QUEUE_DESC, 8), 0x9_1234_5670);
        // Not a power of two, zero, above the maximum: all refused.
        for bad in [6, 0, 16] {
            d.common_write(QUEUE_SIZE, 2, bad);
            assert_eq!(d.common_read(QUEUE_SIZE, 2), 8, "size {bad}");
        }
        d.common_write(QUEUE_SIZE, 2, 4);
        assert_eq!(d.common_read(QUEUE_SIZE, 2), 4);
        // A queue that does not exist reads as size 0.
        d.common_write(QUEUE_SELECT, 2, 7);
        assert_eq!(d.common_read(QUEUE_SIZE, 2), 0);
        d.common_write(QUEUE_SIZE, 2, 4);
        // Misaligned and over-wide accesses change nothing and read 0.
        assert_eq!(d.common_read(QUEUE_SELECT + 1, 2), 0);
        d.common_write(QUEUE_SELECT + 1, 2, 0);
        assert_eq!(d.common_read(QUEUE_SELECT, 2), 7);
    }

    #[test]
    fn notify_uses_the_queue_and_raises_intx_until_isr_read() {
        let (mut d, counters, irq, mem) = probe_device();
        assert!(d.negotiate(FEATURES));
        let mut queue = DriverQueue::new(16, 0x10000);
        d.setup_queue(0, &queue);
        d.driver_ok();
        queue.set_desc(&mem, 0, 0x4000, 16, 0, 0);
        queue.make_available(&mem, 0);
        d.notify(0);
        assert_eq!(counters.notifies.load(Ordering::SeqCst), 1);
        assert_eq!(queue.used_idx(&mem), 1);
        assert!(irq.level());
        assert_eq!(d.isr(), ISR_QUEUE);
        assert!(!irq.level(), "reading the ISR lowers the line");
        assert_eq!(d.isr(), 0);
        // A notification to a queue that does not exist does nothing.
        let notify = d.notify;
        d.write(notify, 8 * 4, 2, 8);
        d.write(notify, 1, 2, 0);
        assert_eq!(counters.notifies.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn intx_disable_masks_the_line() {
        let (mut d, _, irq, mem) = probe_device();
        assert!(d.negotiate(FEATURES));
        let mut queue = DriverQueue::new(16, 0x10000);
        d.setup_queue(0, &queue);
        d.driver_ok();
        d.dev.write_config(0x04, &0x0406u16.to_le_bytes());
        queue.set_desc(&mem, 0, 0x4000, 16, 0, 0);
        queue.make_available(&mem, 0);
        d.notify(0);
        assert!(!irq.level());
        d.dev.write_config(0x04, &0x0006u16.to_le_bytes());
        assert!(irq.level(), "unmasking shows the pending interrupt");
        d.isr();
        assert!(!irq.level());
    }

    #[test]
    fn bus_mastering_off_means_no_dma() {
        let (mut d, counters, _, mem) = probe_device();
        assert!(d.negotiate(FEATURES));
        let mut queue = DriverQueue::new(16, 0x10000);
        d.setup_queue(0, &queue);
        d.driver_ok();
        d.dev.write_config(0x04, &0x0002u16.to_le_bytes());
        queue.set_desc(&mem, 0, 0x4000, 16, 0, 0);
        queue.make_available(&mem, 0);
        d.notify(0);
        assert_eq!(counters.notifies.load(Ordering::SeqCst), 0);
        assert_eq!(queue.used_idx(&mem), 0);
    }

    #[test]
    fn queue_outside_ram_needs_reset() {
        let (mut d, counters, irq, _) = probe_device();
        assert!(d.negotiate(FEATURES));
        let queue = DriverQueue::new(16, 0xff000); // used ring lands past 1 MiB
        d.setup_queue(0, &queue);
        d.driver_ok();
        assert_eq!(counters.activations.load(Ordering::SeqCst), 0);
        assert_ne!(d.status() & STATUS_DEVICE_NEEDS_RESET, 0);
        assert!(irq.level());
        assert_eq!(d.isr(), ISR_CONFIG);
        // Notifications are ignored until the reset.
        d.notify(0);
        assert_eq!(counters.notifies.load(Ordering::SeqCst), 0);
        d.set_status(0);
        assert_eq!(d.status(), 0);
    }

    #[test]
    fn corrupt_ring_needs_reset() {
        let (mut d, _, irq, mem) = probe_device();
        assert!(d.negotiate(FEATURES));
        let queue = DriverQueue::new(16, 0x10000);
        d.setup_queue(0, &queue);
        d.driver_ok();
        // The available index jumps by more than the queue size.
        vm_memory::Bytes::write_obj(&mem, 100u16, GuestAddress(queue.avail + 2)).unwrap();
        d.notify(0);
        assert_ne!(d.status() & STATUS_DEVICE_NEEDS_RESET, 0);
        assert_eq!(d.isr(), ISR_CONFIG);
        assert!(!irq.level());
    }

    #[test]
    fn device_config_and_generation() {
        let (mut d, ..) = probe_device();
        let device = d.device;
        assert_eq!(d.read(device, 2, 2), u16::from_le_bytes(*b"CD") as u64);
        assert_eq!(d.read(device, 0x100, 4), 0);
        let generation = d.common_read(CONFIG_GENERATION, 1);
        d.dev.interrupt.signal_config_change();
        assert_eq!(d.common_read(CONFIG_GENERATION, 1), generation + 1);
        assert_eq!(d.isr(), ISR_CONFIG);
    }

    /// SeaBIOS's path when the BAR is above 4 GiB: every access goes
    /// through the configuration access capability.
    #[test]
    fn pci_configuration_access_window() {
        let (mut d, counters, _, mem) = probe_device();
        let cap = d.cfg_cap.unwrap();
        let via_cfg_write = |d: &mut Driver, offset: u32, len: u32, value: u32| {
            d.dev.write_config(cap + CFG_CAP_BAR, &[4]);
            d.dev
                .write_config(cap + CFG_CAP_OFFSET, &offset.to_le_bytes());
            d.dev.write_config(cap + CFG_CAP_LENGTH, &len.to_le_bytes());
            d.dev
                .write_config(cap + CFG_CAP_DATA, &value.to_le_bytes()[..len as usize]);
        };
        let via_cfg_read = |d: &mut Driver, offset: u32, len: u32| {
            d.dev.write_config(cap + CFG_CAP_BAR, &[4]);
            d.dev
                .write_config(cap + CFG_CAP_OFFSET, &offset.to_le_bytes());
            d.dev.write_config(cap + CFG_CAP_LENGTH, &len.to_le_bytes());
            let mut buf = [0u8; 4];
            d.dev
                .read_config(cap + CFG_CAP_DATA, &mut buf[..len as usize]);
            u32::from_le_bytes(buf)
        };
        d.dev.write_config(0x04, &0x0006u16.to_le_bytes());
        via_cfg_write(&mut d, DEVICE_FEATURE_SELECT as u32, 4, 1);
        assert_eq!(via_cfg_read(&mut d, DEVICE_FEATURE as u32, 4), 1);
        assert_eq!(via_cfg_read(&mut d, QUEUE_SIZE as u32, 2), 16);
        assert_eq!(via_cfg_read(&mut d, 0x2000, 1), b'A' as u32);
        // A whole bring-up and one notification through the window.
        via_cfg_write(&mut d, DEVICE_STATUS as u32, 1, 3);
        via_cfg_write(&mut d, DRIVER_FEATURE_SELECT as u32, 4, 1);
        via_cfg_write(&mut d, DRIVER_FEATURE as u32, 4, 1);
        via_cfg_write(&mut d, DEVICE_STATUS as u32, 1, 0xb);
        assert_eq!(via_cfg_read(&mut d, DEVICE_STATUS as u32, 1), 0xb);
        let mut queue = DriverQueue::new(16, 0x10000);
        for (field, addr) in [
            (QUEUE_DESC, queue.desc),
            (QUEUE_DRIVER, queue.avail),
            (QUEUE_DEVICE, queue.used),
        ] {
            via_cfg_write(&mut d, field as u32, 4, addr as u32);
        }
        via_cfg_write(&mut d, QUEUE_ENABLE as u32, 2, 1);
        via_cfg_write(&mut d, DEVICE_STATUS as u32, 1, 0xf);
        queue.set_desc(&mem, 0, 0x4000, 16, 0, 0);
        queue.make_available(&mem, 0);
        via_cfg_write(&mut d, 0x3000, 2, 0);
        assert_eq!(counters.notifies.load(Ordering::SeqCst), 1);
        assert_eq!(queue.used_idx(&mem), 1);
        assert_eq!(via_cfg_read(&mut d, 0x1000, 1), ISR_QUEUE as u32);
        // A bad window (wrong BAR, odd length, past the BAR) reads zero.
        d.dev.write_config(cap + CFG_CAP_BAR, &[0]);
        let mut buf = [0xaa; 4];
        d.dev.read_config(cap + CFG_CAP_DATA, &mut buf);
        assert_eq!(buf, [0; 4]);
        assert_eq!(via_cfg_read(&mut d, 0x3fff, 4), 0);
        assert_eq!(via_cfg_read(&mut d, 0x10, 3), 0);
    }

    const MSG: MsiMessage = MsiMessage {
        address: 0xfee0_0000,
        data: 0x4021,
    };

    /// A running device with MSI-X on, entries 0..3 programmed (data
    /// 0x4020 + n), configuration changes on vector 0, queue 0 on vector 1.
    fn msix_device() -> (
        Driver,
        Arc<FakeIrq>,
        GuestRam,
        Arc<RecordingMsi>,
        DriverQueue,
    ) {
        let (mut d, _, irq, mem, msi) = probe_device_with_msi();
        d.msix_control(MSIX_ENABLE);
        for vector in 0..3 {
            d.program_vector(vector, 0xfee0_0000, 0x4020 + vector as u32);
        }
        assert!(d.negotiate(FEATURES));
        d.common_write(CONFIG_MSIX_VECTOR, 2, 0);
        d.common_write(QUEUE_SELECT, 2, 0);
        d.common_write(QUEUE_MSIX_VECTOR, 2, 1);
        let queue = DriverQueue::new(16, 0x10000);
        d.setup_queue(0, &queue);
        d.driver_ok();
        (d, irq, mem, msi, queue)
    }

    fn complete_one(d: &mut Driver, mem: &GuestRam, queue: &mut DriverQueue) {
        let head = queue.avail_idx % 16;
        queue.set_desc(mem, head, 0x4000, 16, 0, 0);
        queue.make_available(mem, head);
        d.notify(0);
    }

    /// Where Linux and SeaBIOS look for MSI-X: capability 0x11 naming BAR
    /// 1, one vector per queue plus one, and BAR 1 a 4 KiB memory BAR.
    #[test]
    fn msix_capability_points_into_bar_1() {
        let (mut d, ..) = probe_device();
        let cap = d.msix_cap.expect("MSI-X capability");
        let mut control = [0; 2];
        d.dev.read_config(cap + 2, &mut control);
        assert_eq!(u16::from_le_bytes(control), 2, "3 vectors (N - 1)");
        assert_eq!(cfg32(&mut d.dev, cap + 4), 1, "table at 0 in BAR 1");
        assert_eq!(cfg32(&mut d.dev, cap + 8), 0x801, "PBA at 0x800 in BAR 1");
        d.dev.write_config(0x14, &u32::MAX.to_le_bytes());
        assert_eq!(cfg32(&mut d.dev, 0x14), 0xffff_f000, "32-bit memory, 4 KiB");
        // The table size is read-only; enable and mask are writable.
        d.dev.write_config(cap + 2, &0xffffu16.to_le_bytes());
        d.dev.read_config(cap + 2, &mut control);
        assert_eq!(u16::from_le_bytes(control), 0xc002);
    }

    #[test]
    fn msix_vectors_read_back_or_no_vector() {
        let (mut d, ..) = probe_device();
        d.common_write(CONFIG_MSIX_VECTOR, 2, 2);
        assert_eq!(d.common_read(CONFIG_MSIX_VECTOR, 2), 2);
        d.common_write(CONFIG_MSIX_VECTOR, 2, 3);
        assert_eq!(d.common_read(CONFIG_MSIX_VECTOR, 2), 0xffff, "no vector 3");
        d.common_write(QUEUE_SELECT, 2, 1);
        d.common_write(QUEUE_MSIX_VECTOR, 2, 1);
        d.common_write(QUEUE_SELECT, 2, 0);
        d.common_write(QUEUE_MSIX_VECTOR, 2, 0x8000);
        assert_eq!(d.common_read(QUEUE_MSIX_VECTOR, 2), 0xffff);
        d.common_write(QUEUE_SELECT, 2, 1);
        assert_eq!(d.common_read(QUEUE_MSIX_VECTOR, 2), 1);
        // A queue that does not exist has no vector, and keeps none.
        d.common_write(QUEUE_SELECT, 2, 5);
        d.common_write(QUEUE_MSIX_VECTOR, 2, 1);
        assert_eq!(d.common_read(QUEUE_MSIX_VECTOR, 2), 0xffff);
        // A device reset unmaps every vector.
        d.set_status(0);
        d.common_write(QUEUE_SELECT, 2, 1);
        assert_eq!(d.common_read(QUEUE_MSIX_VECTOR, 2), 0xffff);
        assert_eq!(d.common_read(CONFIG_MSIX_VECTOR, 2), 0xffff);
    }

    #[test]
    fn msix_sends_the_queue_vector_and_leaves_intx_alone() {
        let (mut d, irq, mem, msi, mut queue) = msix_device();
        complete_one(&mut d, &mem, &mut queue);
        assert_eq!(queue.used_idx(&mem), 1);
        assert_eq!(msi.take(), [(1, MSG)]);
        assert!(!irq.level(), "no INTx while MSI-X is enabled");
        // A configuration change goes to vector 0.
        d.dev.interrupt.signal_config_change();
        assert_eq!(
            msi.take(),
            [(
                0,
                MsiMessage {
                    data: 0x4020,
                    ..MSG
                }
            )]
        );
        // Unmapped: the event sends nothing.
        d.common_write(QUEUE_SELECT, 2, 0);
        d.common_write(QUEUE_MSIX_VECTOR, 2, 0xffff);
        complete_one(&mut d, &mem, &mut queue);
        assert_eq!(queue.used_idx(&mem), 2);
        assert!(msi.take().is_empty());
        assert!(!irq.level());
    }

    #[test]
    fn msix_masked_vector_is_pending_until_unmasked() {
        let (mut d, _, mem, msi, mut queue) = msix_device();
        d.msix_write(16 + 12, 1); // mask vector 1
        complete_one(&mut d, &mem, &mut queue);
        complete_one(&mut d, &mem, &mut queue);
        assert!(msi.take().is_empty());
        assert_eq!(d.msix_read(0x800), 0b10, "vector 1 pending");
        d.msix_write(16 + 12, 0);
        assert_eq!(msi.take(), [(1, MSG)], "delivered once on unmask");
        assert_eq!(d.msix_read(0x800), 0);
        // The function mask holds every vector the same way.
        d.msix_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        complete_one(&mut d, &mem, &mut queue);
        assert!(msi.take().is_empty());
        assert_eq!(d.msix_read(0x800), 0b10);
        d.msix_control(MSIX_ENABLE);
        assert_eq!(msi.take(), [(1, MSG)]);
    }

    /// A driver that turns MSI-X off again gets INTx back, with the ISR.
    #[test]
    fn msix_off_falls_back_to_intx() {
        let (mut d, irq, mem, msi, mut queue) = msix_device();
        d.msix_control(0);
        complete_one(&mut d, &mem, &mut queue);
        assert!(msi.take().is_empty());
        assert!(irq.level());
        assert_eq!(d.isr(), ISR_QUEUE);
        assert!(!irq.level());
        // An ISR bit set under MSI-X does not raise the line until MSI-X
        // goes off.
        d.msix_control(MSIX_ENABLE);
        complete_one(&mut d, &mem, &mut queue);
        assert!(!irq.level());
        d.msix_control(0);
        assert!(irq.level());
    }
}
