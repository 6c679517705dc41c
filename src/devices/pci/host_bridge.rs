//! The i440FX host bridge (PMC), function 00:00.0.
//!
//! Reference: Intel 82441FX PCI and Memory Controller datasheet §3.2. SeaBIOS
//! recognises a QEMU machine by the host bridge's subsystem ID 1af4:1100.
//!
//! Not emulated: the PAM and SMRAM registers are stored but have no effect;
//! the BIOS area 0xC0000..0x100000 is always RAM (the VMM preloads the BIOS
//! copy there), which is what firmware ends up with after shadowing anyway.

use super::{PciClass, PciConfig, PciDevice};

pub const VENDOR_INTEL: u16 = 0x8086;
pub const DEVICE_I440FX: u16 = 0x1237;
/// QEMU's PCI subsystem vendor and ID, which SeaBIOS checks.
pub const SUBSYSTEM_VENDOR_QEMU: u16 = 0x1af4;
pub const SUBSYSTEM_QEMU: u16 = 0x1100;

/// Programmable Attribute Map registers (datasheet §3.2.18).
const PAM0: usize = 0x59;
const PAM6: usize = 0x5f;
/// System management RAM control (§3.2.19).
const SMRAM: usize = 0x72;

pub struct I440fxHostBridge {
    config: PciConfig,
}

impl I440fxHostBridge {
    pub fn new() -> Self {
        let class = PciClass {
            base: 0x06,
            sub: 0x00,
            prog_if: 0,
        };
        let mut config = PciConfig::new(VENDOR_INTEL, DEVICE_I440FX, class, 0x02)
            .with_subsystem(SUBSYSTEM_VENDOR_QEMU, SUBSYSTEM_QEMU);
        for pam in PAM0..=PAM6 {
            config = config.with_writable(pam, 0xff);
        }
        config = config.with_writable(SMRAM, 0x78);
        // SMRAM register reset value (datasheet: 02h).
        config.set_u8(SMRAM, 0x02);
        Self { config }
    }
}

impl Default for I440fxHostBridge {
    fn default() -> Self {
        Self::new()
    }
}

impl PciDevice for I440fxHostBridge {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identifies_as_qemu_i440fx() {
        let bridge = I440fxHostBridge::new();
        let mut id = [0; 4];
        bridge.config().read(0, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x1237_8086);
        bridge.config().read(0x2c, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x1100_1af4);
    }

    #[test]
    fn pam_registers_read_back() {
        let mut bridge = I440fxHostBridge::new();
        bridge.write_config(PAM0, &[0x30, 0x33]);
        let mut pam = [0; 2];
        bridge.read_config(PAM0, &mut pam);
        assert_eq!(pam, [0x30, 0x33]);
    }
}
