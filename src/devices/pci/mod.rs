//! PCI: the configuration-space model shared by every function, the bus with
//! configuration mechanism #1, and the chipset functions of an i440FX PC.
//!
//! Reference: PCI Local Bus Specification 3.0, chapter 6 (configuration
//! space); Intel 82441FX/82371SB datasheets for the chipset functions.

mod bus;
mod config;
pub mod host_bridge;
pub mod msix;
pub mod piix3;
pub mod piix4_pm;

pub use bus::{IntxRouter, PciBus, PciConfigIo, PciError, PciIntx, SharedPciDevice};
pub use config::{AddressSpace, BarKind, BarRegion, PciClass, PciConfig, PCI_ROM_BAR};
pub use msix::{MsiMessage, MsiSink, Msix};

/// A PCI function.
///
/// The common header lives in a [`PciConfig`]; a device overrides the
/// config hooks only for its own registers (beyond the header), and the BAR
/// hooks for what lives behind its BARs.
pub trait PciDevice: Send {
    fn config(&self) -> &PciConfig;
    fn config_mut(&mut self) -> &mut PciConfig;

    /// Reads configuration space at `offset` (0..256).
    fn read_config(&mut self, offset: usize, data: &mut [u8]) {
        self.config().read(offset, data);
    }

    /// Writes configuration space at `offset` (0..256).
    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config_mut().write(offset, data);
    }

    /// Reads from BAR `bar` (0..6, or [`PCI_ROM_BAR`]) at `offset`.
    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        let _ = (bar, offset);
        data.fill(0xff);
    }

    /// Writes to BAR `bar` at `offset`.
    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        let _ = (bar, offset, data);
    }
}
