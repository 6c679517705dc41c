//! The PIIX4 power-management function, 00:01.3 (8086:7113), as QEMU's
//! `pc` machine has it next to the PIIX3 ISA bridge.
//!
//! Reference: Intel 82371AB (PIIX4) datasheet §7.1 (PCI configuration of
//! function 3). SeaBIOS finds the function by its ID, writes PMBASE
//! (0x40) and sets PMIOSE (0x80 bit 0), then uses the PM timer at
//! PMBASE + 8; the registers themselves are [`crate::devices::acpi_pm`].
//!
//! Not emulated: relocating the PM I/O space. The VMM decodes it at the
//! fixed [`PM_BASE`] — where SeaBIOS puts it on this machine and where the
//! FADT points — and a guest that programs another base gets a warning.
//! The SMBus controller (SMBBA, 0x90) is absent. DEVACTB's APMC_EN bit
//! reads as set, which tells SeaBIOS that SMM is already set up (as QEMU
//! does without SMM), so it never waits for an SMI that cannot come.

use super::{PciClass, PciConfig, PciDevice};
use crate::devices::pci::host_bridge::{SUBSYSTEM_QEMU, SUBSYSTEM_VENDOR_QEMU, VENDOR_INTEL};
use crate::guest_warn;

pub const DEVICE_PIIX4_PM: u16 = 0x7113;
/// Where the PM I/O space is decoded.
pub const PM_BASE: u16 = 0x600;
/// Power management base address (bits 15:6; bit 0 reads 1 = I/O space).
const PMBASE: usize = 0x40;
/// Device activity B; bit 25 enables SMI on writes to the APM control port.
const DEVACTB: usize = 0x58;
const APMC_EN: u32 = 1 << 25;
/// Miscellaneous power management; bit 0 enables the PM I/O space.
const PMREGMISC: usize = 0x80;
/// SCI is wired to IRQ 9 on PIIX4 boards (datasheet §7.1.13).
pub const SCI_IRQ: u8 = 9;

pub struct Piix4Pm {
    config: PciConfig,
}

impl Piix4Pm {
    pub fn new() -> Self {
        let class = PciClass {
            base: 0x06,
            sub: 0x80,
            prog_if: 0,
        };
        let mut config = PciConfig::new(VENDOR_INTEL, DEVICE_PIIX4_PM, class, 0x03)
            .with_subsystem(SUBSYSTEM_VENDOR_QEMU, SUBSYSTEM_QEMU)
            .with_interrupt_pin(1);
        // Everything firmware writes beyond the header (PMBASE, DEVACT…,
        // PMREGMISC, SMBus registers): stored, mostly without effect.
        for offset in 0x40..0x100 {
            config = config.with_writable(offset, 0xff);
        }
        config.set_u32(PMBASE, 1);
        config.set_u32(DEVACTB, APMC_EN);
        config.set_u8(0x3c, SCI_IRQ);
        Self { config }
    }

    /// Checks the PM I/O decode after a write; the base is fixed here.
    fn check_base(&self) {
        let base = (self.config.u32(PMBASE) & 0xffc0) as u16;
        let enabled = self.config.u8(PMREGMISC) & 1 != 0;
        if enabled && base != PM_BASE {
            guest_warn!(
                base = format_args!("{base:#x}"),
                fixed = format_args!("{PM_BASE:#x}"),
                "PM I/O space cannot move; it stays at the fixed base"
            );
        }
    }
}

impl Default for Piix4Pm {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for Piix4Pm {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        // PMBASE bit 0 is hard-wired to 1 (I/O space); APMC_EN stays set.
        let base = self.config.u32(PMBASE);
        self.config.set_u32(PMBASE, base | 1);
        let devact = self.config.u32(DEVACTB);
        self.config.set_u32(DEVACTB, devact | APMC_EN);
        if (PMBASE..PMBASE + 4).contains(&offset) || offset == PMREGMISC {
            self.check_base();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_as_piix4_pm_and_takes_seabios_setup() {
        let mut pm = Piix4Pm::new();
        let mut id = [0; 4];
        pm.read_config(0, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x7113_8086);
        // What SeaBIOS's piix4_pm_config_setup writes.
        pm.write_config(PMBASE, &(0x601u32).to_le_bytes());
        pm.write_config(PMREGMISC, &[1]);
        pm.read_config(PMBASE, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x601);
        pm.read_config(DEVACTB, &mut id);
        assert_ne!(u32::from_le_bytes(id) & APMC_EN, 0, "SMM reads as set up");
        pm.write_config(DEVACTB, &[0; 4]);
        pm.read_config(DEVACTB, &mut id);
        assert_ne!(u32::from_le_bytes(id) & APMC_EN, 0);
    }
}
