//! ISA hardware a PC may or may not have, which this machine does not:
//! firmware and operating systems probe for it at fixed ports and expect
//! an empty, floating bus (reads of all ones, writes vanish). Claiming
//! those ports keeps such routine probes out of the warnings about
//! unexpected guest accesses; they are logged at debug level instead.

use super::BusDevice;

/// Legacy devices that are probed but absent, with their port ranges.
pub const ABSENT_ISA_DEVICES: &[(&str, u16, u16)] = &[
    ("8237 DMA controller 1", 0x00, 0x10),
    ("8237 DMA page registers", 0x81, 0x0f),
    ("8237 DMA controller 2", 0xc0, 0x20),
    ("parallel port LPT2", 0x278, 8),
    ("serial port COM4", 0x2e8, 8),
    ("serial port COM2", 0x2f8, 8),
    ("parallel port LPT1", 0x378, 8),
    ("parallel port LPT3", 0x3bc, 4),
    ("serial port COM3", 0x3e8, 8),
    ("floppy controller", 0x3f0, 6),
];

pub struct AbsentIsaDevice {
    name: &'static str,
}

impl AbsentIsaDevice {
    pub fn new(name: &'static str) -> Self {
        Self { name }
    }
}

impl BusDevice for AbsentIsaDevice {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        tracing::debug!(device = self.name, offset, "probe of absent device");
        data.fill(0xff);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        tracing::debug!(device = self.name, offset, ?data, "write to absent device");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::Bus;
    use std::sync::{Arc, Mutex};

    #[test]
    fn absent_devices_float_and_do_not_overlap() {
        let bus = Bus::new();
        for &(name, port, len) in ABSENT_ISA_DEVICES {
            bus.insert(
                Arc::new(Mutex::new(AbsentIsaDevice::new(name))),
                port as u64,
                len as u64,
            )
            .unwrap();
        }
        let mut data = [0u8; 1];
        assert!(bus.read(0x2f8, &mut data));
        assert_eq!(data, [0xff]);
    }
}
