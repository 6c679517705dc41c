//! Motorola MC146818A real-time clock with 128 bytes of CMOS RAM, at ports
//! 0x70 (index) and 0x71 (data), interrupting on ISA IRQ 8.
//!
//! Follows the MC146818A datasheet (Motorola, "MC146818A Real-Time Clock Plus
//! RAM"): time registers 0x00-0x09 in BCD or binary and 12- or 24-hour form
//! (register B bits DM and 24/12), the century byte at 0x32 where IBM PS/2
//! firmware and QEMU keep it, register A (UIP, divider and rate select),
//! register B (SET, PIE, AIE, UIE, SQWE, DM, 24/12, DSE), register C (IRQF,
//! PF, AF, UF, cleared on read) and register D (VRT). The memory-size bytes
//! follow QEMU's `pc_cmos_init` (hw/i386/pc.c) and what SeaBIOS reads back
//! (src/fw/paravirt.c `qemu_preinit`, src/fw/smp.c).
//!
//! The guest's clock is the injected host clock plus an offset in whole
//! seconds (libvirt's `<clock offset>` plus whatever the guest set), so the
//! update cycle stays aligned with host seconds. Interrupt flags are computed
//! lazily from the clock whenever the guest looks at register C and whenever
//! the VMM calls [`CmosRtc::advance`] at the time [`CmosRtc::next_event`] asks.
//!
//! Not emulated: the divider-chain bits of register A (any value runs the
//! clock from a 32.768 kHz time base), the square-wave output (SQWE), daylight
//! saving (DSE), battery state (VRT always reads valid), and an independently
//! counted day of week: it is always derived from the date, so a written day
//! of week is ignored.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::bus::BusDevice;
use super::irq::IrqLine;

// ---- Register indices (datasheet figure 4, "Address map") ------------------

const REG_SECONDS: u8 = 0x00;
const REG_SECONDS_ALARM: u8 = 0x01;
const REG_MINUTES: u8 = 0x02;
const REG_MINUTES_ALARM: u8 = 0x03;
const REG_HOURS: u8 = 0x04;
const REG_HOURS_ALARM: u8 = 0x05;
const REG_DAY_OF_WEEK: u8 = 0x06;
const REG_DATE_OF_MONTH: u8 = 0x07;
const REG_MONTH: u8 = 0x08;
const REG_YEAR: u8 = 0x09;
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_C: u8 = 0x0c;
const REG_D: u8 = 0x0d;
/// IBM PS/2 century byte; QEMU's default `rtc.century` register.
const REG_CENTURY: u8 = 0x32;

/// Registers that hold the time (as opposed to alarms, control and RAM).
const TIME_REGISTERS: [u8; 8] = [
    REG_SECONDS,
    REG_MINUTES,
    REG_HOURS,
    REG_DAY_OF_WEEK,
    REG_DATE_OF_MONTH,
    REG_MONTH,
    REG_YEAR,
    REG_CENTURY,
];

// ---- Register A ------------------------------------------------------------

/// Update in progress: time registers are about to change.
const REG_A_UIP: u8 = 0x80;
/// Rate selection bits RS3-RS0: the periodic interrupt rate.
const REG_A_RS_MASK: u8 = 0x0f;
/// How long before an update UIP is set (datasheet: tBUC = 244 µs).
const UIP_LEAD_NS: i128 = 244_000;

// ---- Register B ------------------------------------------------------------

/// SET: updates are frozen and the guest may write the time.
const REG_B_SET: u8 = 0x80;
/// Periodic interrupt enable.
const REG_B_PIE: u8 = 0x40;
/// Alarm interrupt enable.
const REG_B_AIE: u8 = 0x20;
/// Update-ended interrupt enable.
const REG_B_UIE: u8 = 0x10;
/// Data mode: 1 = binary, 0 = BCD.
const REG_B_DM: u8 = 0x04;
/// 1 = 24-hour mode, 0 = 12-hour mode with the PM flag in bit 7 of the hours.
const REG_B_24H: u8 = 0x02;

// ---- Register C ------------------------------------------------------------

/// Interrupt request flag: some enabled flag below is set.
const REG_C_IRQF: u8 = 0x80;
/// Periodic interrupt flag.
const REG_C_PF: u8 = 0x40;
/// Alarm interrupt flag.
const REG_C_AF: u8 = 0x20;
/// Update-ended interrupt flag.
const REG_C_UF: u8 = 0x10;

// ---- Register D ------------------------------------------------------------

/// Valid RAM and time: the battery is good.
const REG_D_VRT: u8 = 0x80;

/// An alarm byte with both top bits set matches any value ("don't care").
const ALARM_DONT_CARE: u8 = 0xc0;
/// PM flag of the hours register in 12-hour mode.
const HOURS_PM: u8 = 0x80;

const NS_PER_SEC: i128 = 1_000_000_000;
const SECS_PER_DAY: i64 = 86_400;

/// The host clock, injected so tests can drive time.
pub type Clock = Box<dyn Fn() -> SystemTime + Send>;

/// The MC146818A RTC and CMOS RAM. Ports: offset 0 = 0x70 (index, write
/// only), offset 1 = 0x71 (data).
pub struct CmosRtc {
    irq: Arc<dyn IrqLine>,
    clock: Clock,
    /// Selected register, NMI-mask bit stripped.
    index: u8,
    /// Registers and RAM. The time registers hold meaningful values only
    /// while SET is set (the frozen time the guest is editing); otherwise
    /// reads compute them from the clock.
    ram: [u8; 128],
    /// Guest time minus host time, in seconds.
    offset_secs: i64,
    /// Host time (ns since the epoch) up to which flags have been accounted.
    accounted_ns: i128,
    /// Whether we are driving the IRQ line high.
    irq_high: bool,
}

impl CmosRtc {
    /// An RTC reading the host clock through `clock`, in UTC until
    /// [`with_utc_offset`](Self::with_utc_offset) says otherwise.
    pub fn new(irq: Arc<dyn IrqLine>, clock: Clock) -> Self {
        let now = to_ns(clock());
        let mut ram = [0u8; 128];
        // Power-on values as QEMU and real firmware leave them: 32.768 kHz
        // divider with a 1024 Hz periodic rate, 24-hour BCD.
        ram[REG_A as usize] = 0x26;
        ram[REG_B as usize] = REG_B_24H;
        Self {
            irq,
            clock,
            index: 0,
            ram,
            offset_secs: 0,
            accounted_ns: now,
            irq_high: false,
        }
    }

    /// Sets the guest clock `seconds` ahead of UTC (libvirt
    /// `<clock offset='localtime'>` passes the host's UTC offset; 'utc' is 0).
    pub fn with_utc_offset(mut self, seconds: i64) -> Self {
        self.offset_secs = seconds;
        self
    }

    /// How far the guest clock is from the host's UTC, in seconds: the
    /// configured offset plus whatever the guest set.
    pub fn guest_offset(&self) -> i64 {
        self.offset_secs
    }

    /// Stores a byte of CMOS RAM (0x0E-0x7F) before the guest starts, for the
    /// firmware to read. Clock and control registers are not reachable this way.
    pub fn set_byte(&mut self, index: u8, value: u8) {
        let index = index & 0x7f;
        if index <= REG_D || index == REG_CENTURY {
            tracing::warn!(index, "cmos: set_byte on a clock register ignored");
            return;
        }
        self.ram[index as usize] = value;
    }

    /// Fills the memory-size bytes as QEMU's `pc_cmos_init` does; SeaBIOS
    /// derives the RAM size from 0x34/0x35 (or 0x30/0x31 below 16 MiB) and
    /// 0x5B-0x5D when fw_cfg gives no e820 table. `low_ram` is RAM below
    /// 4 GiB starting at 0, `high_ram` RAM from 4 GiB on; both in bytes.
    pub fn set_memory_size(&mut self, low_ram: u64, high_ram: u64) {
        const KIB: u64 = 1024;
        const MIB: u64 = 1024 * KIB;
        // Base memory: conventional RAM, at most 640 KiB.
        let base = (low_ram / KIB).min(640);
        self.set_word(0x15, base);
        // Extended memory above 1 MiB in KiB, saturating at 64 MiB - 1 KiB.
        let extended = (low_ram.saturating_sub(MIB) / KIB).min(0xffff);
        self.set_word(0x17, extended);
        self.set_word(0x30, extended);
        // RAM between 16 MiB and the end of low RAM, in 64 KiB units.
        let above_16m = (low_ram.saturating_sub(16 * MIB) / (64 * KIB)).min(0xffff);
        self.set_word(0x34, above_16m);
        // RAM above 4 GiB in 64 KiB units, 24 bits (QEMU truncates likewise).
        let above_4g = high_ram / (64 * KIB);
        self.ram[0x5b] = above_4g as u8;
        self.ram[0x5c] = (above_4g >> 8) as u8;
        self.ram[0x5d] = (above_4g >> 16) as u8;
    }

    /// Stores the CPU count minus one at 0x5F, as QEMU's
    /// `x86_rtc_set_cpus_count`; SeaBIOS adds one back. Counts that do not
    /// fit in a byte store 0, so firmware falls back to fw_cfg.
    pub fn set_cpu_count(&mut self, n: usize) {
        self.ram[0x5f] = match n {
            0 => 0,
            n if n > 0xff => 0,
            n => (n - 1) as u8,
        };
    }

    /// Accounts for the time passed since the last call: sets the periodic,
    /// alarm and update-ended flags that came due and raises IRQ 8 if one of
    /// them is enabled. The VMM calls it from a timer thread at
    /// [`next_event`](Self::next_event).
    pub fn advance(&mut self) {
        let now = self.now_ns();
        self.account(now);
    }

    /// When [`advance`](Self::advance) should next be called, or `None` when
    /// no interrupt is enabled (flags for polling guests are computed on read).
    pub fn next_event(&self) -> Option<SystemTime> {
        let now = self.now_ns();
        let b = self.ram[REG_B as usize];
        let mut next: Option<i128> = None;
        if b & REG_B_PIE != 0 {
            if let Some(hz) = self.periodic_hz() {
                let tick = periodic_ticks(now, hz) + 1;
                // The first nanosecond at which the tick count reaches `tick`.
                let at = (tick * NS_PER_SEC + hz - 1).div_euclid(hz);
                next = Some(at);
            }
        }
        if b & (REG_B_UIE | REG_B_AIE) != 0 && b & REG_B_SET == 0 {
            // Alarms are checked at each update, as the chip does.
            let at = (now.div_euclid(NS_PER_SEC) + 1) * NS_PER_SEC;
            next = Some(next.map_or(at, |n| n.min(at)));
        }
        next.map(from_ns)
    }

    // ---- Time ---------------------------------------------------------------

    fn now_ns(&self) -> i128 {
        to_ns((self.clock)())
    }

    fn set_word(&mut self, index: usize, value: u64) {
        self.ram[index] = value as u8;
        self.ram[index + 1] = (value >> 8) as u8;
    }

    fn binary_mode(&self) -> bool {
        self.ram[REG_B as usize] & REG_B_DM != 0
    }

    fn frozen(&self) -> bool {
        self.ram[REG_B as usize] & REG_B_SET != 0
    }

    /// Guest time in whole seconds since the epoch at host time `now`.
    fn guest_secs(&self, now: i128) -> i64 {
        (now.div_euclid(NS_PER_SEC) as i64).saturating_add(self.offset_secs)
    }

    /// Encodes a value 0-99 in the current data mode.
    fn encode(&self, value: u8) -> u8 {
        if self.binary_mode() {
            value
        } else {
            ((value / 10) << 4) | (value % 10)
        }
    }

    /// Decodes a register written in the current data mode; garbage BCD
    /// digits decode to values above 99 that callers range-check.
    fn decode(&self, value: u8) -> u8 {
        if self.binary_mode() {
            value
        } else {
            (value >> 4) * 10 + (value & 0x0f)
        }
    }

    fn encode_hours(&self, hour: u8) -> u8 {
        if self.ram[REG_B as usize] & REG_B_24H != 0 {
            return self.encode(hour);
        }
        // 12-hour mode: 12 AM, 1 AM .. 11 AM, 12 PM, 1 PM .. 11 PM.
        let twelve = match hour % 12 {
            0 => 12,
            h => h,
        };
        let pm = if hour >= 12 { HOURS_PM } else { 0 };
        self.encode(twelve) | pm
    }

    fn decode_hours(&self, value: u8) -> u8 {
        if self.ram[REG_B as usize] & REG_B_24H != 0 {
            return self.decode(value);
        }
        let hour = self.decode(value & !HOURS_PM) % 12;
        if value & HOURS_PM != 0 {
            hour + 12
        } else {
            hour
        }
    }

    /// The time registers for guest time `secs`, indexed like `ram`.
    fn time_registers(&self, secs: i64) -> [(u8, u8); 8] {
        let t = CivilTime::from_unix(secs);
        [
            (REG_SECONDS, self.encode(t.second)),
            (REG_MINUTES, self.encode(t.minute)),
            (REG_HOURS, self.encode_hours(t.hour)),
            (REG_DAY_OF_WEEK, self.encode(t.weekday)),
            (REG_DATE_OF_MONTH, self.encode(t.day)),
            (REG_MONTH, self.encode(t.month)),
            (REG_YEAR, self.encode((t.year.rem_euclid(100)) as u8)),
            (
                REG_CENTURY,
                self.encode((t.year.div_euclid(100)).rem_euclid(100) as u8),
            ),
        ]
    }

    /// Guest time (seconds since the epoch) that the time registers in `ram`
    /// spell, clamping out-of-range fields the way a guest most likely meant.
    fn time_from_registers(&self, ram: &[u8; 128]) -> i64 {
        let field = |index: u8, lo: u8, hi: u8| -> u8 {
            let value = self.decode(ram[index as usize]);
            if !(lo..=hi).contains(&value) {
                crate::guest_warn!(
                    "cmos: time register {index:#04x} holds {:#04x}, out of range",
                    ram[index as usize]
                );
            }
            value.clamp(lo, hi)
        };
        let second = field(REG_SECONDS, 0, 59);
        let minute = field(REG_MINUTES, 0, 59);
        let hour = self.decode_hours(ram[REG_HOURS as usize]).min(23);
        let day = field(REG_DATE_OF_MONTH, 1, 31);
        let month = field(REG_MONTH, 1, 12);
        let year = i64::from(field(REG_CENTURY, 0, 99)) * 100 + i64::from(field(REG_YEAR, 0, 99));
        // Day 31 of a short month rolls into the next, as mktime does.
        days_from_civil(year, month, day) * SECS_PER_DAY
            + i64::from(hour) * 3600
            + i64::from(minute) * 60
            + i64::from(second)
    }

    /// Makes guest time `secs` current now.
    fn set_guest_time(&mut self, secs: i64, now: i128) {
        self.offset_secs = secs.saturating_sub(now.div_euclid(NS_PER_SEC) as i64);
    }

    // ---- Interrupts ---------------------------------------------------------

    /// Periodic interrupt rate in Hz from RS3-RS0 (datasheet table 5, 32.768
    /// kHz time base), or `None` when RS is 0.
    fn periodic_hz(&self) -> Option<i128> {
        match self.ram[REG_A as usize] & REG_A_RS_MASK {
            0 => None,
            // RS = 1 and 2 repeat the rates of 8 and 9 on a 32.768 kHz base.
            1 => Some(256),
            2 => Some(128),
            rs => Some(65_536 >> rs),
        }
    }

    fn alarm_matches(&self, guest_secs: i64) -> bool {
        let of_day = guest_secs.rem_euclid(SECS_PER_DAY);
        let now = [
            (REG_SECONDS_ALARM, self.encode((of_day % 60) as u8)),
            (REG_MINUTES_ALARM, self.encode((of_day / 60 % 60) as u8)),
            (REG_HOURS_ALARM, self.encode_hours((of_day / 3600) as u8)),
        ];
        now.iter().all(|&(index, value)| {
            let alarm = self.ram[index as usize];
            alarm & ALARM_DONT_CARE == ALARM_DONT_CARE || alarm == value
        })
    }

    /// Sets the flags for every event between the last accounting and `now`.
    fn account(&mut self, now: i128) {
        let last = self.accounted_ns;
        self.accounted_ns = now;
        if now < last {
            // The host clock stepped back; start counting afresh.
            return;
        }
        let mut flags = 0;
        if let Some(hz) = self.periodic_hz() {
            if periodic_ticks(now, hz) > periodic_ticks(last, hz) {
                flags |= REG_C_PF;
            }
        }
        if !self.frozen() {
            let last_sec = last.div_euclid(NS_PER_SEC) as i64;
            let now_sec = now.div_euclid(NS_PER_SEC) as i64;
            if now_sec > last_sec {
                flags |= REG_C_UF;
                // Alarms repeat at most daily, so a day of missed updates
                // covers every match the guest could have seen.
                let first = (last_sec + 1).max(now_sec - (SECS_PER_DAY - 1));
                if (first..=now_sec).any(|s| self.alarm_matches(s.saturating_add(self.offset_secs)))
                {
                    flags |= REG_C_AF;
                }
            }
        }
        self.ram[REG_C as usize] |= flags;
        self.update_irq();
    }

    /// Recomputes IRQF and drives IRQ 8 to match it.
    fn update_irq(&mut self) {
        let b = self.ram[REG_B as usize];
        let c = self.ram[REG_C as usize];
        let pending = c & b & (REG_C_PF | REG_C_AF | REG_C_UF) != 0;
        if pending {
            self.ram[REG_C as usize] |= REG_C_IRQF;
        } else {
            self.ram[REG_C as usize] &= !REG_C_IRQF;
        }
        if pending != self.irq_high {
            self.irq_high = pending;
            self.irq.set_level(pending);
        }
    }

    // ---- Register access ----------------------------------------------------

    fn read_register(&mut self, index: u8) -> u8 {
        let now = self.now_ns();
        match index {
            REG_A => {
                let frac = now.rem_euclid(NS_PER_SEC);
                let uip = !self.frozen() && frac >= NS_PER_SEC - UIP_LEAD_NS;
                (self.ram[REG_A as usize] & !REG_A_UIP) | if uip { REG_A_UIP } else { 0 }
            }
            REG_C => {
                // Reading C returns the flags and clears them (datasheet:
                // "all flag bits are cleared after register C is read").
                self.account(now);
                let value = self.ram[REG_C as usize];
                self.ram[REG_C as usize] = 0;
                self.update_irq();
                value
            }
            REG_D => REG_D_VRT,
            i if TIME_REGISTERS.contains(&i) && !self.frozen() => {
                let secs = self.guest_secs(now);
                self.time_registers(secs)
                    .iter()
                    .find(|(reg, _)| *reg == i)
                    .map_or(0, |&(_, value)| value)
            }
            i => self.ram[i as usize],
        }
    }

    fn write_register(&mut self, index: u8, value: u8) {
        let now = self.now_ns();
        match index {
            REG_A => {
                // Account with the old rate before it changes.
                self.account(now);
                self.ram[REG_A as usize] = value & !REG_A_UIP;
            }
            REG_B => self.write_register_b(value, now),
            REG_C | REG_D => {
                crate::guest_warn!("cmos: write {value:#04x} to read-only register {index:#04x}");
            }
            i if TIME_REGISTERS.contains(&i) => {
                if self.frozen() {
                    self.ram[i as usize] = value;
                } else {
                    // Not the datasheet's way (set SET first), but guests do
                    // it: the new field takes effect at once.
                    let mut regs = self.ram;
                    for (reg, v) in self.time_registers(self.guest_secs(now)) {
                        regs[reg as usize] = v;
                    }
                    regs[i as usize] = value;
                    let secs = self.time_from_registers(&regs);
                    self.account(now);
                    self.set_guest_time(secs, now);
                }
            }
            i => self.ram[i as usize] = value,
        }
    }

    fn write_register_b(&mut self, mut value: u8, now: i128) {
        self.account(now);
        let was_frozen = self.frozen();
        let freezing = value & REG_B_SET != 0;
        if freezing {
            // Setting SET clears UIE (datasheet, register B, UIE).
            value &= !REG_B_UIE;
        }
        if freezing && !was_frozen {
            // Latch the current time (in the old data mode) for the guest to edit.
            for (reg, v) in self.time_registers(self.guest_secs(now)) {
                self.ram[reg as usize] = v;
            }
        }
        if !freezing && was_frozen {
            // The time the guest wrote is read in the new data mode, as the
            // chip does when it resumes counting.
            self.ram[REG_B as usize] = value;
            let secs = self.time_from_registers(&self.ram);
            self.set_guest_time(secs, now);
        }
        self.ram[REG_B as usize] = value;
        self.update_irq();
    }
}

impl BusDevice for CmosRtc {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = match offset.saturating_add(i as u64) {
                // The index register is write-only; an ISA read floats high.
                0 => 0xff,
                1 => self.read_register(self.index),
                _ => 0xff,
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            match offset.saturating_add(i as u64) {
                // Bit 7 of the index masks NMIs on a PC; there is no NMI
                // source to mask here, so it is dropped.
                0 => self.index = byte & 0x7f,
                1 => self.write_register(self.index, byte),
                other => crate::guest_warn!("cmos: write to port offset {other}"),
            }
        }
    }
}

/// Number of periodic ticks at rate `hz` from the epoch to `ns`.
fn periodic_ticks(ns: i128, hz: i128) -> i128 {
    (ns * hz).div_euclid(NS_PER_SEC)
}

fn to_ns(t: SystemTime) -> i128 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_nanos() as i128,
        Err(before) => -(before.duration().as_nanos() as i128),
    }
}

fn from_ns(ns: i128) -> SystemTime {
    let magnitude = Duration::from_nanos(ns.unsigned_abs().min(u64::MAX as u128) as u64);
    if ns >= 0 {
        UNIX_EPOCH + magnitude
    } else {
        UNIX_EPOCH - magnitude
    }
}

/// A proleptic Gregorian date and time of day.
#[derive(Debug, PartialEq, Eq)]
struct CivilTime {
    year: i64,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
    /// 1 = Sunday .. 7 = Saturday, the RTC's numbering.
    weekday: u8,
}

impl CivilTime {
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(SECS_PER_DAY);
        let of_day = secs.rem_euclid(SECS_PER_DAY);
        let (year, month, day) = civil_from_days(days);
        Self {
            year,
            month,
            day,
            hour: (of_day / 3600) as u8,
            minute: (of_day / 60 % 60) as u8,
            second: (of_day % 60) as u8,
            // 1970-01-01 was a Thursday (weekday 5).
            weekday: ((days + 4).rem_euclid(7) + 1) as u8,
        }
    }
}

/// Days since 1970-01-01 of a Gregorian date. Counts in 400-year eras with
/// years starting in March, so the leap day is the last day of its year.
fn days_from_civil(year: i64, month: u8, day: u8) -> i64 {
    let (month, day) = (i64::from(month), i64::from(day));
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let year_of_era = year - era * 400;
    let month_from_march = (month + 9) % 12;
    let day_of_year = (153 * month_from_march + 2) / 5 + day - 1;
    let day_of_era = year_of_era * 365 + year_of_era / 4 - year_of_era / 100 + day_of_year;
    // 719468 days separate 0000-03-01 from 1970-01-01.
    era * 146_097 + day_of_era - 719_468
}

/// The inverse of [`days_from_civil`].
pub(crate) fn civil_from_days(days: i64) -> (i64, u8, u8) {
    let days = days + 719_468;
    let era = days.div_euclid(146_097);
    let day_of_era = days - era * 146_097;
    let year_of_era =
        (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 {
        month_from_march + 3
    } else {
        month_from_march - 9
    };
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month as u8, day as u8)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::irq::FakeIrq;
    use std::sync::atomic::{AtomicI64, Ordering};

    /// 2024-02-29 13:45:30 UTC, a Thursday.
    const LEAP_DAY: i64 = 1_709_214_330;

    /// A clock the test moves by hand, in nanoseconds since the epoch.
    #[derive(Clone)]
    struct FakeClock(Arc<AtomicI64>);

    impl FakeClock {
        fn at_secs(secs: i64) -> Self {
            Self(Arc::new(AtomicI64::new(secs * 1_000_000_000)))
        }
        fn set_ns(&self, ns: i64) {
            self.0.store(ns, Ordering::SeqCst);
        }
        fn advance_ms(&self, ms: i64) {
            self.0.fetch_add(ms * 1_000_000, Ordering::SeqCst);
        }
        fn ns(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
        fn boxed(&self) -> Clock {
            let ns = self.0.clone();
            Box::new(move || from_ns(i128::from(ns.load(Ordering::SeqCst))))
        }
    }

    fn rtc_at(secs: i64) -> (CmosRtc, FakeClock, Arc<FakeIrq>) {
        let clock = FakeClock::at_secs(secs);
        let irq = FakeIrq::new();
        let rtc = CmosRtc::new(irq.clone(), clock.boxed());
        (rtc, clock, irq)
    }

    fn read(rtc: &mut CmosRtc, index: u8) -> u8 {
        rtc.write(0, &[index]);
        let mut data = [0u8];
        rtc.read(1, &mut data);
        data[0]
    }

    fn write(rtc: &mut CmosRtc, index: u8, value: u8) {
        rtc.write(0, &[index]);
        rtc.write(1, &[value]);
    }

    /// (seconds, minutes, hours, day of week, date, month, year, century)
    fn clock_registers(rtc: &mut CmosRtc) -> [u8; 8] {
        TIME_REGISTERS.map(|index| read(rtc, index))
    }

    #[test]
    fn reads_bcd_24h_time_as_firmware_leaves_it() {
        let (mut rtc, _, _) = rtc_at(LEAP_DAY);
        assert_eq!(
            clock_registers(&mut rtc),
            [0x30, 0x45, 0x13, 0x05, 0x29, 0x02, 0x24, 0x20]
        );
        assert_eq!(read(&mut rtc, REG_B), REG_B_24H);
        assert_eq!(read(&mut rtc, REG_D), REG_D_VRT);
        // SeaBIOS's rtc_present(): the month register is not 0xff.
        assert_ne!(read(&mut rtc, REG_MONTH), 0xff);
    }

    #[test]
    fn binary_and_12_hour_modes() {
        let (mut rtc, clock, _) = rtc_at(LEAP_DAY);
        write(&mut rtc, REG_B, REG_B_DM | REG_B_24H);
        assert_eq!(clock_registers(&mut rtc), [30, 45, 13, 5, 29, 2, 24, 20]);
        // 12-hour BCD: 13:45 is 1 PM.
        write(&mut rtc, REG_B, 0);
        assert_eq!(read(&mut rtc, REG_HOURS), HOURS_PM | 0x01);
        // Midnight is 12 AM, noon 12 PM.
        let midnight = LEAP_DAY - (13 * 3600 + 45 * 60 + 30);
        clock.set_ns(midnight * 1_000_000_000);
        assert_eq!(read(&mut rtc, REG_HOURS), 0x12);
        clock.set_ns((midnight + 12 * 3600) * 1_000_000_000);
        assert_eq!(read(&mut rtc, REG_HOURS), HOURS_PM | 0x12);
        // 12-hour binary.
        write(&mut rtc, REG_B, REG_B_DM);
        assert_eq!(read(&mut rtc, REG_HOURS), HOURS_PM | 12);
    }

    #[test]
    fn utc_offset_shifts_the_guest_clock() {
        let clock = FakeClock::at_secs(LEAP_DAY);
        let mut rtc = CmosRtc::new(FakeIrq::new(), clock.boxed()).with_utc_offset(11 * 3600);
        // 13:45:30 UTC + 11 h = 00:45:30 on Friday, 1 March.
        assert_eq!(
            clock_registers(&mut rtc),
            [0x30, 0x45, 0x00, 0x06, 0x01, 0x03, 0x24, 0x20]
        );
    }

    #[test]
    fn guest_sets_the_time_and_it_advances_from_there() {
        let (mut rtc, clock, _) = rtc_at(LEAP_DAY);
        // As Linux's mc146818_set_time: SET, write the fields, clear SET.
        write(&mut rtc, REG_B, REG_B_SET | REG_B_24H);
        // While SET is held the clock does not move.
        let frozen = clock_registers(&mut rtc);
        clock.advance_ms(5000);
        assert_eq!(clock_registers(&mut rtc), frozen);
        for (index, value) in [
            (REG_SECONDS, 0x58),
            (REG_MINUTES, 0x59),
            (REG_HOURS, 0x23),
            (REG_DATE_OF_MONTH, 0x31),
            (REG_MONTH, 0x12),
            (REG_YEAR, 0x99),
            (REG_CENTURY, 0x19),
        ] {
            write(&mut rtc, index, value);
        }
        write(&mut rtc, REG_B, REG_B_24H);
        assert_eq!(read(&mut rtc, REG_SECONDS), 0x58);
        clock.advance_ms(3000);
        // Three seconds later it is 2000-01-01 00:00:01, a Saturday.
        assert_eq!(
            clock_registers(&mut rtc),
            [0x01, 0x00, 0x00, 0x07, 0x01, 0x01, 0x00, 0x20]
        );
    }

    #[test]
    fn a_write_without_set_takes_effect_at_once() {
        let (mut rtc, _, _) = rtc_at(LEAP_DAY);
        write(&mut rtc, REG_HOURS, 0x08);
        assert_eq!(read(&mut rtc, REG_HOURS), 0x08);
        assert_eq!(read(&mut rtc, REG_MINUTES), 0x45);
        assert_eq!(rtc.guest_offset(), -5 * 3600);
    }

    #[test]
    fn uip_is_set_just_before_the_update() {
        let (mut rtc, clock, _) = rtc_at(LEAP_DAY);
        assert_eq!(read(&mut rtc, REG_A), 0x26);
        clock.set_ns(LEAP_DAY * 1_000_000_000 + 999_900_000);
        assert_eq!(read(&mut rtc, REG_A), REG_A_UIP | 0x26);
        // A write cannot set UIP, and SET suppresses it.
        write(&mut rtc, REG_A, 0xa6);
        write(&mut rtc, REG_B, REG_B_SET | REG_B_24H);
        assert_eq!(read(&mut rtc, REG_A), 0x26);
    }

    #[test]
    fn update_ended_interrupt_is_raised_and_cleared_by_reading_c() {
        let (mut rtc, clock, irq) = rtc_at(LEAP_DAY);
        assert_eq!(rtc.next_event(), None);
        write(&mut rtc, REG_A, 0x20); // no periodic flag to muddle register C
        write(&mut rtc, REG_B, REG_B_UIE | REG_B_24H);
        clock.advance_ms(400);
        assert_eq!(
            rtc.next_event(),
            Some(UNIX_EPOCH + Duration::from_secs(LEAP_DAY as u64 + 1))
        );
        rtc.advance();
        assert!(!irq.level());
        clock.advance_ms(600);
        rtc.advance();
        assert!(irq.level());
        assert_eq!(read(&mut rtc, REG_C), REG_C_IRQF | REG_C_UF);
        assert!(!irq.level());
        assert_eq!(read(&mut rtc, REG_C), 0);
        assert_eq!(irq.rising_edges(), 1);
    }

    #[test]
    fn flags_are_set_without_their_enables_for_polling_guests() {
        let (mut rtc, clock, irq) = rtc_at(LEAP_DAY);
        write(&mut rtc, REG_A, 0x20); // no periodic rate
        clock.advance_ms(1000);
        assert_eq!(read(&mut rtc, REG_C), REG_C_UF);
        assert!(!irq.level());
        // Enabling an interrupt whose flag is already set raises it at once.
        clock.advance_ms(1000);
        write(&mut rtc, REG_B, REG_B_UIE | REG_B_24H);
        assert!(irq.level());
    }

    #[test]
    fn periodic_interrupt_follows_rate_select() {
        let (mut rtc, clock, irq) = rtc_at(LEAP_DAY);
        // RS = 0xF: 2 Hz.
        write(&mut rtc, REG_A, 0x2f);
        read(&mut rtc, REG_C);
        write(&mut rtc, REG_B, REG_B_PIE | REG_B_24H);
        clock.advance_ms(100);
        let next = LEAP_DAY as u64 * 1_000_000_000 + 500_000_000;
        assert_eq!(
            rtc.next_event(),
            Some(UNIX_EPOCH + Duration::from_nanos(next))
        );
        rtc.advance();
        assert!(!irq.level());
        clock.advance_ms(400);
        rtc.advance();
        assert!(irq.level());
        assert_eq!(read(&mut rtc, REG_C), REG_C_IRQF | REG_C_PF);
        // 1024 Hz (RS = 6): the next tick is within a millisecond.
        write(&mut rtc, REG_A, 0x26);
        let now = clock.ns() as u64;
        let next = rtc.next_event().unwrap();
        let wait = next.duration_since(UNIX_EPOCH).unwrap().as_nanos() as u64 - now;
        assert!(wait > 0 && wait <= 976_563, "{wait}");
        // No rate: no periodic event.
        write(&mut rtc, REG_A, 0x20);
        assert_eq!(rtc.next_event(), None);
    }

    #[test]
    fn alarm_fires_at_the_programmed_time() {
        let (mut rtc, clock, irq) = rtc_at(LEAP_DAY);
        write(&mut rtc, REG_A, 0x20);
        // 13:45:33, then 3 s later; seconds-only "don't care" variant after.
        write(&mut rtc, REG_SECONDS_ALARM, 0x33);
        write(&mut rtc, REG_MINUTES_ALARM, 0x45);
        write(&mut rtc, REG_HOURS_ALARM, 0x13);
        read(&mut rtc, REG_C);
        write(&mut rtc, REG_B, REG_B_AIE | REG_B_24H);
        clock.advance_ms(2000);
        rtc.advance();
        assert!(!irq.level());
        clock.advance_ms(1000);
        rtc.advance();
        assert!(irq.level());
        assert_eq!(read(&mut rtc, REG_C), REG_C_IRQF | REG_C_AF | REG_C_UF);
        // Once a minute at second 10, found even when advance() runs late.
        write(&mut rtc, REG_SECONDS_ALARM, 0x10);
        write(&mut rtc, REG_MINUTES_ALARM, 0xff);
        write(&mut rtc, REG_HOURS_ALARM, 0xc0);
        clock.advance_ms(60_000);
        rtc.advance();
        assert_eq!(read(&mut rtc, REG_C), REG_C_IRQF | REG_C_AF | REG_C_UF);
    }

    #[test]
    fn set_clears_uie_and_stops_update_events() {
        let (mut rtc, clock, _) = rtc_at(LEAP_DAY);
        write(&mut rtc, REG_B, REG_B_SET | REG_B_UIE | REG_B_24H);
        assert_eq!(read(&mut rtc, REG_B), REG_B_SET | REG_B_24H);
        write(&mut rtc, REG_A, 0x20);
        read(&mut rtc, REG_C);
        clock.advance_ms(3000);
        assert_eq!(read(&mut rtc, REG_C), 0);
    }

    #[test]
    fn memory_size_bytes_match_qemu_pc() {
        let (mut rtc, _, _) = rtc_at(LEAP_DAY);
        // 4 GiB guest: 3 GiB low, 1 GiB above 4 GiB.
        rtc.set_memory_size(3 << 30, 1 << 30);
        let bytes = |rtc: &mut CmosRtc, at: u8, n: u8| -> Vec<u8> {
            (at..at + n).map(|i| read(rtc, i)).collect()
        };
        assert_eq!(bytes(&mut rtc, 0x15, 2), [0x80, 0x02]); // 640 KiB
        assert_eq!(bytes(&mut rtc, 0x17, 2), [0xff, 0xff]);
        assert_eq!(bytes(&mut rtc, 0x30, 2), [0xff, 0xff]);
        assert_eq!(bytes(&mut rtc, 0x34, 2), [0x00, 0xbf]); // (3 GiB - 16 MiB) / 64 KiB
        assert_eq!(bytes(&mut rtc, 0x5b, 3), [0x00, 0x40, 0x00]); // 1 GiB / 64 KiB
                                                                  // 8 MiB guest: below 16 MiB nothing is counted there.
        rtc.set_memory_size(8 << 20, 0);
        assert_eq!(bytes(&mut rtc, 0x17, 2), [0x00, 0x1c]); // 7168 KiB
        assert_eq!(bytes(&mut rtc, 0x34, 2), [0, 0]);
        assert_eq!(bytes(&mut rtc, 0x5b, 3), [0, 0, 0]);
        // SeaBIOS's qemu_preinit arithmetic for 128 MiB gives back 128 MiB.
        rtc.set_memory_size(128 << 20, 0);
        let lo = u64::from(read(&mut rtc, 0x34));
        let hi = u64::from(read(&mut rtc, 0x35));
        assert_eq!(((lo << 16) | (hi << 24)) + (16 << 20), 128 << 20);
    }

    #[test]
    fn cpu_count_byte() {
        let (mut rtc, _, _) = rtc_at(LEAP_DAY);
        rtc.set_cpu_count(4);
        assert_eq!(read(&mut rtc, 0x5f), 3);
        rtc.set_cpu_count(300);
        assert_eq!(read(&mut rtc, 0x5f), 0);
    }

    #[test]
    fn ram_keeps_what_the_guest_writes_and_nmi_bit_is_stripped() {
        let (mut rtc, _, _) = rtc_at(LEAP_DAY);
        rtc.set_byte(0x3d, 0x21);
        assert_eq!(read(&mut rtc, 0x3d), 0x21);
        // Index 0x80 | 0x40 selects byte 0x40.
        write(&mut rtc, 0xc0, 0x5a);
        assert_eq!(read(&mut rtc, 0x40), 0x5a);
        for index in 0x0e..0x80u8 {
            if index != REG_CENTURY {
                write(&mut rtc, index, index ^ 0xa5);
            }
        }
        for index in 0x0e..0x80u8 {
            if index != REG_CENTURY {
                assert_eq!(read(&mut rtc, index), index ^ 0xa5);
            }
        }
        // Clock registers are not preloadable.
        rtc.set_byte(REG_B, 0xff);
        assert_eq!(read(&mut rtc, REG_B), REG_B_24H);
        // The index port reads as an undriven bus.
        let mut data = [0u8];
        rtc.read(0, &mut data);
        assert_eq!(data, [0xff]);
    }

    #[test]
    fn word_access_writes_index_then_data() {
        let (mut rtc, _, _) = rtc_at(LEAP_DAY);
        rtc.write(0, &[0x50, 0x77]);
        assert_eq!(read(&mut rtc, 0x50), 0x77);
        let mut data = [0u8; 4];
        rtc.write(0, &[0x50]);
        rtc.read(0, &mut data);
        assert_eq!(data, [0xff, 0x77, 0xff, 0xff]);
    }

    #[test]
    fn civil_conversions_round_trip() {
        for days in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days);
        }
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(
            CivilTime::from_unix(LEAP_DAY),
            CivilTime {
                year: 2024,
                month: 2,
                day: 29,
                hour: 13,
                minute: 45,
                second: 30,
                weekday: 5
            }
        );
    }

    #[test]
    fn hostile_register_traffic_does_not_panic() {
        let (mut rtc, clock, _) = rtc_at(LEAP_DAY);
        // A small xorshift generator: deterministic garbage.
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..50_000 {
            let r = next();
            let port = r % 3;
            let byte = (r >> 8) as u8;
            if r >> 40 & 1 == 0 {
                rtc.write(port, &[byte]);
            } else {
                let mut data = [0u8; 2];
                rtc.read(port, &mut data);
            }
            if r >> 41 & 0xff == 0 {
                // Sometimes jump the clock, backwards too.
                clock.set_ns((r >> 20) as i64 - (1 << 40));
            }
            rtc.advance();
            let _ = rtc.next_event();
        }
        // Garbage BCD while SET is held still gives a valid clock afterwards.
        write(&mut rtc, REG_B, REG_B_SET | REG_B_24H);
        for index in TIME_REGISTERS {
            write(&mut rtc, index, 0xff);
        }
        write(&mut rtc, REG_B, REG_B_24H);
        let regs = clock_registers(&mut rtc);
        assert!(
            regs[0] <= 0x59 && regs[5] >= 1 && regs[5] <= 0x12,
            "{regs:x?}"
        );
    }
}
