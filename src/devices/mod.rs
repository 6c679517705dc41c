//! Emulated devices: one file per chip, each a register machine behind
//! [`BusDevice`] (port I/O and MMIO) or [`pci::PciDevice`] (PCI functions).
//!
//! Devices never see KVM. Their interrupt lines ([`irq::IrqLine`]), clocks,
//! output sinks and guest memory are injected, so each is unit-tested alone.

pub mod absent;
pub mod acpi_pm;
pub mod bus;
pub mod cmos;
pub mod debugcon;
pub mod fw_cfg;
pub mod i8042;
pub mod ide;
pub mod irq;
pub mod pci;
pub mod serial;
pub mod system_control;
pub mod usb;
pub mod vga;
pub mod virtio;

pub use bus::{Bus, BusDevice, BusError};
pub use irq::IrqLine;

/// What a device can ask of the machine as a whole. The VMM implements it;
/// tests use [`FakeMachine`].
pub trait MachineControl: Send + Sync {
    /// A guest-initiated reset (keyboard controller, port 0x92, 0xCF9, ACPI).
    fn request_reset(&self);
    /// A guest-initiated power-off (ACPI S5).
    fn request_poweroff(&self);
}

/// A [`MachineControl`] for tests that counts requests.
#[derive(Default)]
pub struct FakeMachine {
    pub resets: std::sync::atomic::AtomicUsize,
    pub poweroffs: std::sync::atomic::AtomicUsize,
}

impl FakeMachine {
    pub fn resets(&self) -> usize {
        self.resets.load(std::sync::atomic::Ordering::SeqCst)
    }
    pub fn poweroffs(&self) -> usize {
        self.poweroffs.load(std::sync::atomic::Ordering::SeqCst)
    }
}

impl MachineControl for FakeMachine {
    fn request_reset(&self) {
        self.resets
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
    fn request_poweroff(&self) {
        self.poweroffs
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }
}

/// Guest physical memory as devices that do DMA see it. Every access goes
/// through `vm_memory`'s bounds-checked `Bytes` methods, so a guest-supplied
/// address can never reach host memory outside guest RAM.
pub type GuestRam = vm_memory::GuestMemoryMmap<()>;
