//! ACPI fixed hardware of the PIIX4 power-management function: the PM1
//! event and control registers, the PM timer, and the APM control port
//! through which the OS turns ACPI mode on.
//!
//! References: ACPI 6.5 §4.8 (fixed hardware programming model: PM1_STS,
//! PM1_EN, PM1_CNT, PM_TMR) and §16.1 (sleep states); Intel 82371AB (PIIX4)
//! datasheet §7.2 (the power-management I/O space at PMBASE) and §7.1.8
//! (APM control/status, ports 0xB2/0xB3). The PCI side of the function
//! (00:01.3) is [`crate::devices::pci::piix4_pm`].
//!
//! I/O space layout from PMBASE (only what ACPI uses is live):
//!
//! | offset | register | here                                             |
//! |--------|----------|--------------------------------------------------|
//! | 0x00   | PM1_STS  | PWRBTN_STS, WAK_STS… write 1 to clear            |
//! | 0x02   | PM1_EN   | which status bits raise the SCI                  |
//! | 0x04   | PM1_CNT  | SCI_EN; SLP_TYP + SLP_EN enter a sleep state     |
//! | 0x08   | PM_TMR   | 24-bit counter at 3.579545 MHz                   |
//! | others | GPSTS…   | stored and read back, no effect                  |
//!
//! Not emulated: SMI (there is no SMM; the SMI_CMD port only switches ACPI
//! mode on and off as QEMU's PIIX4 does), the PM timer's overflow status
//! and interrupt (TMROF_STS stays clear; OSes read the counter instead),
//! sleep states other than S5 (soft off) — S1/S3/S4 requests are ignored
//! with a warning, and the DSDT offers only \_S5 — and general-purpose
//! events (the FADT declares no GPE block).

use std::sync::{Arc, Mutex};
use std::time::Instant;

use super::{BusDevice, IrqLine, MachineControl};
use crate::guest_warn;

/// Size of the PIIX4 power-management I/O space.
pub const PM_IO_SIZE: u64 = 0x40;

/// Register offsets within the PM I/O space.
pub const PM1_STS: u64 = 0x00;
pub const PM1_EN: u64 = 0x02;
pub const PM1_CNT: u64 = 0x04;
pub const PM_TMR: u64 = 0x08;

/// PM1_STS / PM1_EN bits (ACPI 6.5 tables 4.16, 4.17).
pub const TMR_STS: u16 = 1 << 0;
pub const GBL_STS: u16 = 1 << 5;
pub const PWRBTN_STS: u16 = 1 << 8;
pub const RTC_STS: u16 = 1 << 10;
pub const WAK_STS: u16 = 1 << 15;
/// The status bits that have an enable bit in PM1_EN at the same position.
const SCI_SOURCES: u16 = TMR_STS | GBL_STS | PWRBTN_STS | RTC_STS;
/// PM1_EN bits that exist.
const PM1_EN_MASK: u16 = SCI_SOURCES;

/// PM1_CNT bits (ACPI 6.5 table 4.13).
pub const SCI_EN: u16 = 1 << 0;
pub const SLP_TYP_SHIFT: u16 = 10;
pub const SLP_TYP_MASK: u16 = 0x7 << SLP_TYP_SHIFT;
pub const SLP_EN: u16 = 1 << 13;
/// The sleep type this machine's \_S5 object names (QEMU's PIIX4 value).
pub const SLP_TYP_S5: u16 = 0;

/// The PM timer's frequency (ACPI 6.5 §4.8.3.3).
pub const PM_TIMER_HZ: u128 = 3_579_545;

/// APM control port commands that switch ACPI mode, as the FADT's
/// ACPI_ENABLE / ACPI_DISABLE name them (QEMU's values).
pub const ACPI_ENABLE: u8 = 0xf1;
pub const ACPI_DISABLE: u8 = 0xf0;

/// Errors of the power-management hardware, for whoever presses its buttons.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AcpiPmError {
    #[error("the guest has not enabled ACPI, so it would not notice the power button; use `vireo destroy` to force the VM off")]
    AcpiNotEnabled,
}

/// The PM1 registers, PM timer and the SCI line.
pub struct AcpiPm {
    sts: u16,
    en: u16,
    cnt: u16,
    /// Registers beyond PM_TMR (GPSTS, GLBCTL…): stored only.
    other: [u8; PM_IO_SIZE as usize],
    sci: Arc<dyn IrqLine>,
    machine: Arc<dyn MachineControl>,
    clock: Box<dyn Fn() -> Instant + Send>,
    epoch: Instant,
}

impl AcpiPm {
    pub fn new(sci: Arc<dyn IrqLine>, machine: Arc<dyn MachineControl>) -> Self {
        Self::with_clock(sci, machine, Box::new(Instant::now))
    }

    /// With an injected clock, for tests of the PM timer.
    pub fn with_clock(
        sci: Arc<dyn IrqLine>,
        machine: Arc<dyn MachineControl>,
        clock: Box<dyn Fn() -> Instant + Send>,
    ) -> Self {
        let epoch = clock();
        Self {
            sts: 0,
            en: 0,
            cnt: 0,
            other: [0; PM_IO_SIZE as usize],
            sci,
            machine,
            clock,
            epoch,
        }
    }

    /// Whether the OS has switched to ACPI mode (SCI_EN).
    pub fn acpi_enabled(&self) -> bool {
        self.cnt & SCI_EN != 0
    }

    /// Presses the power button: PWRBTN_STS is set and, if the OS enabled
    /// it, the SCI fires. Without ACPI mode nobody would see it, so the
    /// press is refused with a reason instead.
    pub fn press_power_button(&mut self) -> Result<(), AcpiPmError> {
        if !self.acpi_enabled() {
            return Err(AcpiPmError::AcpiNotEnabled);
        }
        self.sts |= PWRBTN_STS;
        self.update_sci();
        Ok(())
    }

    /// Called for the APM control port (SMI_CMD): ACPI_ENABLE/DISABLE
    /// flip SCI_EN, as the SMI handler of a real board would.
    pub fn smi_command(&mut self, command: u8) {
        match command {
            ACPI_ENABLE => self.cnt |= SCI_EN,
            ACPI_DISABLE => self.cnt &= !SCI_EN,
            _ => {}
        }
        self.update_sci();
    }

    /// The SCI is level-triggered: high while an enabled status bit is set
    /// and the OS runs in ACPI mode.
    fn update_sci(&self) {
        let pending = self.sts & self.en & SCI_SOURCES != 0;
        self.sci.set_level(pending && self.acpi_enabled());
    }

    fn timer(&self) -> u32 {
        let elapsed = (self.clock)().saturating_duration_since(self.epoch);
        let ticks = elapsed.as_nanos() * PM_TIMER_HZ / 1_000_000_000;
        (ticks & 0xff_ffff) as u32
    }

    fn write_cnt(&mut self, value: u16) {
        // SLP_EN is write-only: it triggers the transition and reads as 0.
        self.cnt = value & !SLP_EN;
        if value & SLP_EN != 0 {
            let typ = (value & SLP_TYP_MASK) >> SLP_TYP_SHIFT;
            if typ == SLP_TYP_S5 {
                tracing::info!("guest entered ACPI S5 (soft off)");
                self.machine.request_poweroff();
            } else {
                guest_warn!(
                    sleep_type = typ,
                    "sleep state not supported; the guest keeps running"
                );
            }
        }
    }

    /// The 16-bit register value at `reg` (a register's base offset).
    fn read16(&self, reg: u64) -> u16 {
        match reg {
            PM1_STS => self.sts,
            PM1_EN => self.en,
            PM1_CNT => self.cnt,
            _ => 0,
        }
    }
}

impl BusDevice for AcpiPm {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            *byte = match at {
                0..=5 => self.read16(at & !1).to_le_bytes()[(at & 1) as usize],
                6..=7 => 0,
                8..=11 => self.timer().to_le_bytes()[(at - PM_TMR) as usize],
                _ => self.other.get(at as usize).copied().unwrap_or(0xff),
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        // Byte by byte: every PM1 field lies within one byte (SLP_TYP and
        // SLP_EN share the high byte of PM1_CNT), so a word write acts
        // exactly as its two byte writes in order.
        for (i, &byte) in data.iter().enumerate() {
            let at = offset + i as u64;
            let shift = 8 * (at & 1);
            let mask = 0xffu16 << shift;
            let value = (byte as u16) << shift;
            match at {
                0..=1 => self.sts &= !value,
                2..=3 => self.en = ((self.en & !mask) | value) & PM1_EN_MASK,
                4..=5 => self.write_cnt((self.cnt & !mask) | value),
                // Reserved and the read-only timer.
                6..=11 => {}
                _ => {
                    if let Some(slot) = self.other.get_mut(at as usize) {
                        *slot = byte;
                    }
                }
            }
        }
        self.update_sci();
    }
}

/// The APM control (0xB2, SMI_CMD) and status (0xB3) ports. Writing the
/// control port would raise an SMI on a real PIIX4; here it goes straight
/// to what the SMI handler does for ACPI mode switches.
pub struct ApmPorts {
    pm: Arc<Mutex<AcpiPm>>,
    control: u8,
    status: u8,
}

impl ApmPorts {
    pub fn new(pm: Arc<Mutex<AcpiPm>>) -> Self {
        Self {
            pm,
            control: 0,
            status: 0,
        }
    }
}

impl BusDevice for ApmPorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = match offset + i as u64 {
                0 => self.control,
                1 => self.status,
                _ => 0xff,
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            match offset + i as u64 {
                0 => {
                    self.control = byte;
                    self.pm.lock().unwrap().smi_command(byte);
                }
                1 => self.status = byte,
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::irq::FakeIrq;
    use crate::devices::FakeMachine;
    use std::time::Duration;

    fn pm() -> (AcpiPm, Arc<FakeIrq>, Arc<FakeMachine>) {
        let sci = FakeIrq::new();
        let machine = Arc::new(FakeMachine::default());
        (AcpiPm::new(sci.clone(), machine.clone()), sci, machine)
    }

    fn read16(pm: &mut AcpiPm, offset: u64) -> u16 {
        let mut data = [0; 2];
        pm.read(offset, &mut data);
        u16::from_le_bytes(data)
    }

    #[test]
    fn power_button_is_refused_until_the_os_enables_acpi() {
        let (mut pm, sci, _) = pm();
        assert_eq!(pm.press_power_button(), Err(AcpiPmError::AcpiNotEnabled));
        assert_eq!(read16(&mut pm, PM1_STS), 0);
        let message = AcpiPmError::AcpiNotEnabled.to_string();
        assert!(message.contains("vireo destroy"), "{message}");
        assert!(!sci.level());
    }

    #[test]
    fn power_button_raises_a_level_sci_until_the_status_is_cleared() {
        let (pm, sci, _) = pm();
        let pm = Arc::new(Mutex::new(pm));
        let mut apm = ApmPorts::new(pm.clone());
        apm.write(0, &[ACPI_ENABLE]);
        let mut pm = pm.lock().unwrap();
        assert_eq!(read16(&mut pm, PM1_CNT) & SCI_EN, SCI_EN);
        pm.write(PM1_EN, &PWRBTN_STS.to_le_bytes());
        pm.press_power_button().unwrap();
        assert_eq!(read16(&mut pm, PM1_STS) & PWRBTN_STS, PWRBTN_STS);
        assert!(sci.level());
        // Writing 0 leaves it; writing 1 clears it and drops the SCI.
        pm.write(PM1_STS, &[0, 0]);
        assert!(sci.level());
        pm.write(PM1_STS, &PWRBTN_STS.to_le_bytes());
        assert_eq!(read16(&mut pm, PM1_STS), 0);
        assert!(!sci.level());
    }

    #[test]
    fn a_pressed_button_without_its_enable_bit_raises_no_sci() {
        let (mut pm, sci, _) = pm();
        pm.smi_command(ACPI_ENABLE);
        pm.press_power_button().unwrap();
        assert!(!sci.level());
        pm.write(PM1_EN, &PWRBTN_STS.to_le_bytes());
        assert!(sci.level(), "enabling a pending event raises the SCI");
    }

    #[test]
    fn acpi_disable_clears_sci_en() {
        let (mut pm, _, _) = pm();
        pm.smi_command(ACPI_ENABLE);
        pm.smi_command(ACPI_DISABLE);
        assert!(!pm.acpi_enabled());
    }

    #[test]
    fn slp_en_with_s5_powers_off() {
        let (mut pm, _, machine) = pm();
        // SLP_TYP alone does nothing.
        pm.write(
            PM1_CNT,
            &(SCI_EN | (SLP_TYP_S5 << SLP_TYP_SHIFT)).to_le_bytes(),
        );
        assert_eq!(machine.poweroffs(), 0);
        pm.write(PM1_CNT, &(SCI_EN | SLP_EN).to_le_bytes());
        assert_eq!(machine.poweroffs(), 1);
        assert_eq!(read16(&mut pm, PM1_CNT) & SLP_EN, 0, "SLP_EN reads as 0");
    }

    #[test]
    fn other_sleep_types_are_ignored() {
        let (mut pm, _, machine) = pm();
        pm.write(PM1_CNT, &((1 << SLP_TYP_SHIFT) | SLP_EN).to_le_bytes());
        assert_eq!(machine.poweroffs(), 0);
        assert_eq!(machine.resets(), 0);
    }

    #[test]
    fn a_byte_write_to_the_high_half_of_pm1_cnt_sleeps() {
        let (mut pm, _, machine) = pm();
        pm.write(PM1_CNT + 1, &[(SLP_EN >> 8) as u8]);
        assert_eq!(machine.poweroffs(), 1);
    }

    #[test]
    fn pm_timer_counts_at_3_58_mhz_and_wraps_at_24_bits() {
        let now = Arc::new(Mutex::new(Instant::now()));
        let clock = now.clone();
        let mut pm = AcpiPm::with_clock(
            FakeIrq::new(),
            Arc::new(FakeMachine::default()),
            Box::new(move || *clock.lock().unwrap()),
        );
        let read = |pm: &mut AcpiPm| {
            let mut data = [0; 4];
            pm.read(PM_TMR, &mut data);
            u32::from_le_bytes(data)
        };
        assert_eq!(read(&mut pm), 0);
        *now.lock().unwrap() += Duration::from_millis(1);
        assert_eq!(read(&mut pm), 3579);
        *now.lock().unwrap() += Duration::from_secs(5);
        // 5.001 s = 17_901_304 ticks, modulo 2^24.
        assert_eq!(read(&mut pm), 17_901_304 % (1 << 24));
    }

    #[test]
    fn apm_status_port_is_a_scratch_register() {
        let (pm, _, _) = pm();
        let mut apm = ApmPorts::new(Arc::new(Mutex::new(pm)));
        apm.write(1, &[0x5a]);
        let mut data = [0; 1];
        apm.read(1, &mut data);
        assert_eq!(data, [0x5a]);
    }
}
