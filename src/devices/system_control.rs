//! System control port A (port 0x92), as on IBM PS/2 machines and every
//! PC chipset since: bit 0 is a fast reset, bit 1 the fast A20 gate.
//!
//! KVM always runs with A20 enabled, so bit 1 is stored and read back but
//! masks nothing; guests that turn A20 off to get the 8086 wrap-around are
//! not supported (none that matter today do).

use std::sync::Arc;

use super::{BusDevice, MachineControl};

const FAST_RESET: u8 = 0x01;
const A20_GATE: u8 = 0x02;

pub struct SystemControlA {
    machine: Arc<dyn MachineControl>,
    value: u8,
}

impl SystemControlA {
    pub fn new(machine: Arc<dyn MachineControl>) -> Self {
        // A20 on, as firmware leaves it.
        Self {
            machine,
            value: A20_GATE,
        }
    }
}

impl BusDevice for SystemControlA {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.value);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        let Some(&value) = data.first() else { return };
        // The reset fires on a 0 -> 1 transition of bit 0.
        if value & FAST_RESET != 0 && self.value & FAST_RESET == 0 {
            tracing::info!("guest reset through port 0x92");
            self.machine.request_reset();
        }
        self.value = value & (FAST_RESET | A20_GATE);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::FakeMachine;

    #[test]
    fn bit_0_resets_bit_1_reads_back() {
        let machine = Arc::new(FakeMachine::default());
        let mut port = SystemControlA::new(machine.clone());
        let mut value = [0];
        port.read(0, &mut value);
        assert_eq!(value, [A20_GATE]);
        port.write(0, &[0x00]);
        port.read(0, &mut value);
        assert_eq!(value, [0]);
        assert_eq!(machine.resets(), 0);
        port.write(0, &[0x03]);
        assert_eq!(machine.resets(), 1);
        port.write(0, &[0x03]);
        assert_eq!(machine.resets(), 1, "only the rising edge resets");
    }
}
