//! The PIIX3 PCI-to-ISA bridge, function 00:01.0.
//!
//! Reference: Intel 82371FB/SB (PIIX/PIIX3) datasheet §2.2. What matters to a
//! VM is the PIRQ route control registers (0x60..0x63), which firmware
//! programs to steer PCI INTA#..INTD# onto ISA IRQs; they live in the shared
//! [`IntxRouter`]. The reset control register (port 0xCF9) is in
//! [`super::PciConfigIo`]; ELCR (ports 0x4D0/0x4D1) is handled by KVM's
//! in-kernel PIC.

use std::sync::Arc;

use super::{IntxRouter, PciClass, PciConfig, PciDevice};
use crate::devices::pci::host_bridge::{SUBSYSTEM_QEMU, SUBSYSTEM_VENDOR_QEMU, VENDOR_INTEL};

pub const DEVICE_PIIX3_ISA: u16 = 0x7000;
const PIRQ_ROUTE_CONTROL: usize = 0x60;

pub struct Piix3IsaBridge {
    config: PciConfig,
    router: Arc<IntxRouter>,
}

impl Piix3IsaBridge {
    pub fn new(router: Arc<IntxRouter>) -> Self {
        let class = PciClass {
            base: 0x06,
            sub: 0x01,
            prog_if: 0,
        };
        let mut config = PciConfig::new(VENDOR_INTEL, DEVICE_PIIX3_ISA, class, 0)
            .with_subsystem(SUBSYSTEM_VENDOR_QEMU, SUBSYSTEM_QEMU)
            .with_multifunction();
        // Miscellaneous registers firmware writes (top of memory, X-bus, APIC
        // base, deterministic latency…): stored, without effect.
        for offset in 0x40..0x100 {
            if !(PIRQ_ROUTE_CONTROL..PIRQ_ROUTE_CONTROL + 4).contains(&offset) {
                config = config.with_writable(offset, 0xff);
            }
        }
        Self { config, router }
    }
}

impl PciDevice for Piix3IsaBridge {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn read_config(&mut self, offset: usize, data: &mut [u8]) {
        self.config.read(offset, data);
        for (i, byte) in data.iter_mut().enumerate() {
            if let Some(pirq) = (offset + i)
                .checked_sub(PIRQ_ROUTE_CONTROL)
                .filter(|p| *p < 4)
            {
                *byte = self.router.route(pirq);
            }
        }
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        for (i, &byte) in data.iter().enumerate() {
            if let Some(pirq) = (offset + i)
                .checked_sub(PIRQ_ROUTE_CONTROL)
                .filter(|p| *p < 4)
            {
                // Bits 6:4 are reserved and read as zero.
                self.router.set_route(pirq, byte & 0x8f);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pirq_routes_are_firmware_programmable() {
        let router = IntxRouter::new(|_, _| {});
        let mut bridge = Piix3IsaBridge::new(router.clone());
        let mut routes = [0; 4];
        bridge.read_config(0x60, &mut routes);
        assert_eq!(routes, [0x80; 4], "disabled after reset");
        // SeaBIOS writes IRQs 10, 10, 11, 11 as one dword.
        bridge.write_config(0x60, &[10, 10, 11, 0xfb]);
        bridge.read_config(0x60, &mut routes);
        assert_eq!(routes, [10, 10, 11, 0x8b]);
        assert_eq!(router.route(2), 11);
        let mut header = [0; 1];
        bridge.read_config(0x0e, &mut header);
        assert_eq!(
            header[0] & 0x80,
            0x80,
            "function 0 of a multi-function device"
        );
    }
}
