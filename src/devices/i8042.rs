//! Intel 8042 keyboard controller with a PS/2 keyboard and a PS/2 mouse on
//! its two ports, at I/O ports 0x60 (data) and 0x64 (status/command),
//! interrupting on ISA IRQ 1 (keyboard) and IRQ 12 (auxiliary device).
//!
//! Follows the IBM Personal System/2 Hardware Interface Technical Reference
//! ("Keyboard/Auxiliary Device Controller", and the keyboard and pointing
//! device chapters): the status register, the controller command byte and
//! commands 0x20-0x3F/0x60-0x7F (internal RAM), 0xA4-0xAE, 0xC0, 0xD0-0xD4,
//! 0xDD/0xDF (A20, an HP extension every PC chipset has) and 0xF0-0xFF (pulse
//! output lines); the keyboard's command set (IBM "Keyboard Commands from the
//! System") with scan code set 2 output, and the controller's set 2 to set 1
//! translation when command-byte bit 6 is set; the mouse's command set and
//! 3-byte packets, plus Microsoft's IntelliMouse 4-byte wheel packets after
//! the 200/100/80 sample-rate knock.
//!
//! Host input arrives as QEMU key numbers ("qnum": the PC set 1 make code,
//! with 0x80 set for E0-prefixed keys) and relative mouse motion.
//!
//! Not emulated: scan code set 3 (and its per-key commands 0xF7-0xFD, answered
//! with Resend), typematic repeat (the host repeats keys itself), the
//! extra shift codes real keyboards wrap around E0 keys when Num Lock or Shift
//! is on, the password commands (0xA5/0xA6), IntelliMouse Explorer (ID 4), the
//! mouse sample rate and resolution (reported back, but they do not pace or
//! scale motion), parity/timeout errors, and A20 masking (the output port's
//! A20 bit is kept and reported; KVM cannot mask A20).

use std::collections::VecDeque;
use std::sync::Arc;

use super::bus::BusDevice;
use super::irq::IrqLine;
use super::MachineControl;
use crate::keys::scancode::{
    set2_sequence, set2_to_set1, set2_to_set1_sequence, MOD_ALT, MOD_CTRL, MOD_SHIFT, PREFIX_BREAK,
    QNUM_LEFT_ALT, QNUM_LEFT_CTRL, QNUM_LEFT_SHIFT, QNUM_RIGHT_ALT, QNUM_RIGHT_CTRL,
    QNUM_RIGHT_SHIFT,
};

// ---- Port offsets in the device's range (0x60 + offset) --------------------

/// Port 0x60: output buffer (read) and input buffer for data (write).
const OFFSET_DATA: u64 = 0;
/// Port 0x64: status register (read) and input buffer for commands (write).
const OFFSET_COMMAND: u64 = 4;

// ---- Status register -------------------------------------------------------

/// Output buffer full: a byte waits at port 0x60.
const STATUS_OBF: u8 = 0x01;
/// System flag: mirrors command-byte bit 2; set by a passed self test.
const STATUS_SYS: u8 = 0x04;
/// A2: the last write went to port 0x64 (a command), not 0x60 (data).
const STATUS_A2: u8 = 0x08;
/// Inhibit switch: 1 = keyboard not inhibited (no key lock on a VM).
const STATUS_NOT_INHIBITED: u8 = 0x10;
/// The byte in the output buffer came from the auxiliary device.
const STATUS_AUX_OBF: u8 = 0x20;

// ---- Command byte (controller RAM byte 0) ----------------------------------

/// Raise IRQ 1 when keyboard data is in the output buffer.
const CB_KBD_INT: u8 = 0x01;
/// Raise IRQ 12 when auxiliary data is in the output buffer.
const CB_AUX_INT: u8 = 0x02;
/// System flag, copied to the status register.
const CB_SYS: u8 = 0x04;
/// Keyboard clock disabled: the keyboard cannot send.
const CB_KBD_DISABLE: u8 = 0x10;
/// Auxiliary clock disabled: the mouse cannot send.
const CB_AUX_DISABLE: u8 = 0x20;
/// Translate keyboard scan codes from set 2 to set 1.
const CB_TRANSLATE: u8 = 0x40;
/// Command byte after power-on, as QEMU has it: both interrupts enabled,
/// no translation until firmware asks for it.
const CB_POWER_ON: u8 = CB_KBD_INT | CB_AUX_INT;

// ---- Controller commands (written to port 0x64) ----------------------------

const CMD_READ_RAM_FIRST: u8 = 0x20;
const CMD_READ_RAM_LAST: u8 = 0x3f;
const CMD_WRITE_RAM_FIRST: u8 = 0x60;
const CMD_WRITE_RAM_LAST: u8 = 0x7f;
const CMD_PASSWORD_INSTALLED: u8 = 0xa4;
const CMD_AUX_DISABLE: u8 = 0xa7;
const CMD_AUX_ENABLE: u8 = 0xa8;
const CMD_AUX_INTERFACE_TEST: u8 = 0xa9;
const CMD_SELF_TEST: u8 = 0xaa;
const CMD_KBD_INTERFACE_TEST: u8 = 0xab;
const CMD_KBD_DISABLE: u8 = 0xad;
const CMD_KBD_ENABLE: u8 = 0xae;
const CMD_READ_INPUT_PORT: u8 = 0xc0;
const CMD_POLL_INPUT_LOW: u8 = 0xc1;
const CMD_POLL_INPUT_HIGH: u8 = 0xc2;
const CMD_READ_OUTPUT_PORT: u8 = 0xd0;
const CMD_WRITE_OUTPUT_PORT: u8 = 0xd1;
const CMD_WRITE_KBD_OUTPUT: u8 = 0xd2;
const CMD_WRITE_AUX_OUTPUT: u8 = 0xd3;
const CMD_WRITE_AUX: u8 = 0xd4;
const CMD_A20_DISABLE: u8 = 0xdd;
const CMD_A20_ENABLE: u8 = 0xdf;
const CMD_READ_TEST_INPUTS: u8 = 0xe0;
const CMD_PULSE_FIRST: u8 = 0xf0;

/// Self test passed.
const SELF_TEST_OK: u8 = 0x55;
/// Interface test: no error.
const INTERFACE_TEST_OK: u8 = 0x00;
/// Password test: none installed.
const NO_PASSWORD: u8 = 0xf1;
/// Input port: bit 7 = keyboard not inhibited; colour display, no jumper.
const INPUT_PORT: u8 = 0x80;

// ---- Output port -----------------------------------------------------------

/// System reset line, active low.
const OUT_RESET: u8 = 0x01;
/// Gate A20.
const OUT_A20: u8 = 0x02;
/// Output buffer full with keyboard data (drives IRQ 1).
const OUT_KBD_OBF: u8 = 0x10;
/// Output buffer full with auxiliary data (drives IRQ 12).
const OUT_AUX_OBF: u8 = 0x20;
/// After power-on: reset released, A20 on, clock and data lines high.
const OUT_POWER_ON: u8 = 0xcf;

// ---- Keyboard commands and replies -----------------------------------------

const KBD_SET_LEDS: u8 = 0xed;
const KBD_ECHO: u8 = 0xee;
const KBD_SCAN_CODE_SET: u8 = 0xf0;
const KBD_IDENTIFY: u8 = 0xf2;
const KBD_TYPEMATIC: u8 = 0xf3;
const KBD_ENABLE: u8 = 0xf4;
const KBD_DEFAULT_DISABLE: u8 = 0xf5;
const KBD_SET_DEFAULT: u8 = 0xf6;
const KBD_RESEND: u8 = 0xfe;
const KBD_RESET: u8 = 0xff;

const ACK: u8 = 0xfa;
const RESEND: u8 = 0xfe;
/// Basic assurance test passed.
const BAT_OK: u8 = 0xaa;
/// Identify reply: an MF2 keyboard.
const KBD_ID: [u8; 2] = [0xab, 0x83];

// ---- Mouse commands --------------------------------------------------------

const AUX_SET_SCALING_1_1: u8 = 0xe6;
const AUX_SET_SCALING_2_1: u8 = 0xe7;
const AUX_SET_RESOLUTION: u8 = 0xe8;
const AUX_STATUS_REQUEST: u8 = 0xe9;
const AUX_SET_STREAM: u8 = 0xea;
const AUX_READ_DATA: u8 = 0xeb;
const AUX_RESET_WRAP: u8 = 0xec;
const AUX_SET_WRAP: u8 = 0xee;
const AUX_SET_REMOTE: u8 = 0xf0;
const AUX_GET_ID: u8 = 0xf2;
const AUX_SET_SAMPLE_RATE: u8 = 0xf3;
const AUX_ENABLE: u8 = 0xf4;
const AUX_DISABLE: u8 = 0xf5;
const AUX_SET_DEFAULT: u8 = 0xf6;
const AUX_RESEND: u8 = 0xfe;
const AUX_RESET: u8 = 0xff;

/// Device IDs: a standard PS/2 mouse and an IntelliMouse with a wheel.
const MOUSE_ID_STANDARD: u8 = 0x00;
const MOUSE_ID_INTELLIMOUSE: u8 = 0x03;
/// Sample rates that, set in a row, switch on the wheel.
const INTELLIMOUSE_KNOCK: [u8; 3] = [200, 100, 80];

/// Packet byte 0: always one, so drivers can resynchronise.
const PACKET_ALWAYS_ONE: u8 = 0x08;
const PACKET_X_SIGN: u8 = 0x10;
const PACKET_Y_SIGN: u8 = 0x20;
const PACKET_X_OVERFLOW: u8 = 0x40;
const PACKET_Y_OVERFLOW: u8 = 0x80;
/// Status request byte 0 flags.
const MOUSE_STATUS_REMOTE: u8 = 0x40;
const MOUSE_STATUS_ENABLED: u8 = 0x20;
const MOUSE_STATUS_SCALING_2_1: u8 = 0x10;

// ---- Buffers ---------------------------------------------------------------

/// Host key bytes buffered while the guest is not reading. A real keyboard
/// holds 16, but a VNC client that types a line (`vncdotool type`, a
/// viewer's "type the clipboard") sends its key events at once, faster
/// than a guest whose kernel is emulated reads them: 64 bytes (about 20
/// keys) overflowed with Linux's atkbd, and a dropped break left Shift
/// held in the guest. 384 bytes hold 128 keys pressed and released, and
/// stay below [`REPLY_LIMIT`], so queued keys never crowd out the replies
/// to the guest's commands.
const KBD_INPUT_LIMIT: usize = 384;
const _: () = assert!(KBD_INPUT_LIMIT < REPLY_LIMIT);
/// Host mouse bytes buffered while the guest is not reading.
const MOUSE_INPUT_LIMIT: usize = 256;
/// Above this, even command replies are dropped: a guest that sends
/// commands and never reads cannot grow memory.
const REPLY_LIMIT: usize = 512;
/// Packets one mouse event may split into before motion is clipped.
const MAX_PACKETS_PER_EVENT: usize = 8;

/// Who put a byte in the output buffer; decides the AUX status bit and the IRQ.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Source {
    /// The keyboard, or the controller answering a command (IRQ 1).
    Keyboard,
    /// The mouse, or the controller's 0xD3 (IRQ 12).
    Aux,
}

/// The PS/2 keyboard on the first port.
struct Keyboard {
    /// Bytes waiting for the keyboard clock, in set 2 (or set 1 if selected).
    queue: VecDeque<u8>,
    scanning: bool,
    /// Scan code set the guest selected: 1 or 2.
    scan_set: u8,
    /// LED bits: 0 Scroll Lock, 1 Num Lock, 2 Caps Lock.
    leds: u8,
    /// Typematic rate/delay byte, kept only to be a faithful device.
    typematic: u8,
    /// A command whose parameter byte comes next.
    awaiting: Option<u8>,
    /// The last byte sent, for Resend.
    last_sent: u8,
    /// MOD_* keys held on the host side.
    modifiers: u8,
}

impl Keyboard {
    fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            scanning: true,
            scan_set: 2,
            leds: 0,
            typematic: 0x2b,
            awaiting: None,
            last_sent: 0,
            modifiers: 0,
        }
    }

    /// Power-on defaults of the keyboard's settings (IBM: "Set Default").
    fn defaults(&mut self) {
        self.scan_set = 2;
        self.typematic = 0x2b;
    }

    fn reply(&mut self, bytes: &[u8]) {
        if self.queue.len() + bytes.len() > REPLY_LIMIT {
            crate::guest_warn!("i8042: keyboard reply dropped, guest is not reading");
            return;
        }
        self.queue.extend(bytes);
        if let Some(&last) = bytes.last() {
            self.last_sent = last;
        }
    }
}

/// The PS/2 mouse on the auxiliary port.
struct Mouse {
    queue: VecDeque<u8>,
    reporting: bool,
    remote: bool,
    wrap: bool,
    scaling_2_1: bool,
    resolution: u8,
    sample_rate: u8,
    id: u8,
    /// The last three sample rates set, oldest first, for the wheel knock.
    recent_rates: [u8; 3],
    awaiting: Option<u8>,
    last_sent: u8,
    /// Button bits in packet order: 0 left, 1 right, 2 middle.
    buttons: u8,
    /// Motion not yet reported, for remote mode (PS/2 axes: y up).
    dx: i32,
    dy: i32,
    dz: i32,
}

impl Mouse {
    fn new() -> Self {
        Self {
            queue: VecDeque::new(),
            reporting: false,
            remote: false,
            wrap: false,
            scaling_2_1: false,
            resolution: 2,
            sample_rate: 100,
            id: MOUSE_ID_STANDARD,
            recent_rates: [0; 3],
            awaiting: None,
            last_sent: 0,
            buttons: 0,
            dx: 0,
            dy: 0,
            dz: 0,
        }
    }

    /// "Set Default": 100 samples/s, 4 counts/mm, 1:1, stream, disabled.
    fn defaults(&mut self) {
        self.reporting = false;
        self.remote = false;
        self.scaling_2_1 = false;
        self.resolution = 2;
        self.sample_rate = 100;
        self.dx = 0;
        self.dy = 0;
        self.dz = 0;
    }

    fn reply(&mut self, bytes: &[u8]) {
        if self.queue.len() + bytes.len() > REPLY_LIMIT {
            crate::guest_warn!("i8042: mouse reply dropped, guest is not reading");
            return;
        }
        self.queue.extend(bytes);
        if let Some(&last) = bytes.last() {
            self.last_sent = last;
        }
    }

    /// One movement packet, clipping what does not fit and flagging it.
    fn packet(&self, dx: i32, dy: i32, dz: i32) -> Vec<u8> {
        let x = dx.clamp(-256, 255);
        let y = dy.clamp(-256, 255);
        let mut status = PACKET_ALWAYS_ONE | (self.buttons & 0x07);
        if x < 0 {
            status |= PACKET_X_SIGN;
        }
        if y < 0 {
            status |= PACKET_Y_SIGN;
        }
        if x != dx {
            status |= PACKET_X_OVERFLOW;
        }
        if y != dy {
            status |= PACKET_Y_OVERFLOW;
        }
        let mut packet = vec![status, x as u8, y as u8];
        if self.id == MOUSE_ID_INTELLIMOUSE {
            packet.push(dz.clamp(-128, 127) as i8 as u8);
        }
        packet
    }

    /// The status-request reply (three bytes after the ACK).
    fn status(&self) -> [u8; 3] {
        let mut flags = 0;
        if self.remote {
            flags |= MOUSE_STATUS_REMOTE;
        }
        if self.reporting {
            flags |= MOUSE_STATUS_ENABLED;
        }
        if self.scaling_2_1 {
            flags |= MOUSE_STATUS_SCALING_2_1;
        }
        // Buttons: bit 2 left, bit 1 middle, bit 0 right.
        let left = self.buttons & 0x01;
        let right = (self.buttons >> 1) & 0x01;
        let middle = (self.buttons >> 2) & 0x01;
        flags |= (left << 2) | (middle << 1) | right;
        [flags, self.resolution, self.sample_rate]
    }
}

/// 2:1 scaling as the PS/2 mouse applies it to each stream-mode report.
fn scale_2_1(d: i32) -> i32 {
    let magnitude = match d.unsigned_abs() {
        0 => 0,
        1 | 2 => 1,
        3 => 3,
        4 => 6,
        5 => 9,
        m => m.saturating_mul(2).min(i32::MAX as u32),
    } as i32;
    magnitude * d.signum()
}

/// Called with the LED bits (0 Scroll, 1 Num, 2 Caps) when the guest sets them.
pub type LedCallback = Box<dyn Fn(u8) + Send>;

/// The 8042 controller with its keyboard and mouse. One bus device for ports
/// 0x60-0x64: offset 0 is the data port, offset 4 the status/command port.
pub struct I8042 {
    kbd_irq: Arc<dyn IrqLine>,
    mouse_irq: Arc<dyn IrqLine>,
    machine: Arc<dyn MachineControl>,
    /// Controller RAM; byte 0 is the command byte.
    ram: [u8; 32],
    /// Status SYS flag.
    sys: bool,
    /// Status A2 flag.
    last_write_command: bool,
    /// The output buffer and who filled it.
    output: Option<(u8, Source)>,
    /// What port 0x60 reads when the buffer is empty (the stale byte).
    last_output: u8,
    /// Controller replies, ahead of device data.
    controller_queue: VecDeque<(u8, Source)>,
    /// A controller command whose data byte comes next at port 0x60.
    awaiting: Option<u8>,
    output_port: u8,
    /// The translator saw a set 2 break prefix.
    translate_break: bool,
    kbd: Keyboard,
    mouse: Mouse,
    led_callback: Option<LedCallback>,
    kbd_irq_high: bool,
    mouse_irq_high: bool,
}

impl I8042 {
    pub fn new(
        kbd_irq: Arc<dyn IrqLine>,
        mouse_irq: Arc<dyn IrqLine>,
        machine: Arc<dyn MachineControl>,
    ) -> Self {
        let mut ram = [0u8; 32];
        ram[0] = CB_POWER_ON;
        Self {
            kbd_irq,
            mouse_irq,
            machine,
            ram,
            sys: false,
            last_write_command: false,
            output: None,
            last_output: 0,
            controller_queue: VecDeque::new(),
            awaiting: None,
            output_port: OUT_POWER_ON,
            translate_break: false,
            kbd: Keyboard::new(),
            mouse: Mouse::new(),
            led_callback: None,
            kbd_irq_high: false,
            mouse_irq_high: false,
        }
    }

    /// Back to the power-on state, for a machine reset. Keeps the LED callback.
    pub fn reset(&mut self) {
        self.ram = [0; 32];
        self.ram[0] = CB_POWER_ON;
        self.sys = false;
        self.last_write_command = false;
        self.output = None;
        self.controller_queue.clear();
        self.awaiting = None;
        self.output_port = OUT_POWER_ON;
        self.translate_break = false;
        let leds_were = self.kbd.leds;
        self.kbd = Keyboard::new();
        self.mouse = Mouse::new();
        if leds_were != 0 {
            self.notify_leds();
        }
        self.update_irqs();
    }

    /// The keyboard LEDs the guest last set: bit 0 Scroll Lock, bit 1 Num
    /// Lock, bit 2 Caps Lock.
    pub fn leds(&self) -> u8 {
        self.kbd.leds
    }

    /// Calls `callback` with the LED bits whenever the guest changes them.
    pub fn set_led_callback(&mut self, callback: LedCallback) {
        self.led_callback = Some(callback);
    }

    /// Whether the output port's A20 gate is on (reported only; see above).
    pub fn a20_enabled(&self) -> bool {
        self.output_port & OUT_A20 != 0
    }

    /// A key pressed or released on the host. `qnum` is QEMU's key number:
    /// the set 1 make code, with 0x80 for E0-prefixed keys (0x9d right Ctrl,
    /// 0xc8 Up). The keyboard sends the matching set 2 bytes (set 1 if the
    /// guest selected it), unless the guest disabled scanning.
    pub fn key_event(&mut self, qnum: u16, down: bool) {
        let modifier = match qnum {
            QNUM_LEFT_CTRL | QNUM_RIGHT_CTRL => MOD_CTRL,
            QNUM_LEFT_SHIFT | QNUM_RIGHT_SHIFT => MOD_SHIFT,
            QNUM_LEFT_ALT | QNUM_RIGHT_ALT => MOD_ALT,
            _ => 0,
        };
        if down {
            self.kbd.modifiers |= modifier;
        } else {
            self.kbd.modifiers &= !modifier;
        }
        if !self.kbd.scanning {
            return;
        }
        let Some(set2) = set2_sequence(qnum, down, self.kbd.modifiers) else {
            tracing::debug!(qnum, "i8042: no scan code for key number");
            return;
        };
        let bytes = if self.kbd.scan_set == 1 {
            set2_to_set1_sequence(&set2)
        } else {
            set2
        };
        if self.kbd.queue.len() + bytes.len() > KBD_INPUT_LIMIT {
            crate::guest_warn!("i8042: keyboard buffer full, key event dropped");
            return;
        }
        self.kbd.queue.extend(&bytes);
        if let Some(&last) = bytes.last() {
            self.kbd.last_sent = last;
        }
        self.refill();
    }

    /// Relative mouse motion and the buttons now held. `dx` is positive to
    /// the right and `dy` positive downwards (screen coordinates, as VNC and
    /// GTK give them; the packet turns y around, PS/2 counts up). `dz` is the
    /// wheel, positive towards the user (scrolling down), as IntelliMouse
    /// reports it. `buttons`: bit 0 left, bit 1 right, bit 2 middle.
    pub fn mouse_event(&mut self, dx: i32, dy: i32, dz: i32, buttons: u8) {
        let mouse = &mut self.mouse;
        mouse.buttons = buttons & 0x07;
        let dy = dy.saturating_neg();
        if mouse.remote {
            // Remote mode: accumulate until the guest asks with Read Data.
            const LIMIT: i32 = 1 << 20;
            mouse.dx = mouse.dx.saturating_add(dx).clamp(-LIMIT, LIMIT);
            mouse.dy = mouse.dy.saturating_add(dy).clamp(-LIMIT, LIMIT);
            mouse.dz = mouse.dz.saturating_add(dz).clamp(-LIMIT, LIMIT);
            return;
        }
        if !mouse.reporting {
            return;
        }
        let (mut dx, mut dy, mut dz) = if mouse.scaling_2_1 {
            (scale_2_1(dx), scale_2_1(dy), dz)
        } else {
            (dx, dy, dz)
        };
        if mouse.id != MOUSE_ID_INTELLIMOUSE {
            dz = 0;
        }
        // Large motion goes out as several packets, as a mouse sampling
        // faster would have sent it; the last one flags any overflow.
        for n in 0..MAX_PACKETS_PER_EVENT {
            let last = n + 1 == MAX_PACKETS_PER_EVENT;
            let (px, py, pz) = if last {
                (dx, dy, dz)
            } else {
                (
                    dx.clamp(-256, 255),
                    dy.clamp(-256, 255),
                    dz.clamp(-128, 127),
                )
            };
            let packet = mouse.packet(px, py, pz);
            if mouse.queue.len() + packet.len() > MOUSE_INPUT_LIMIT {
                crate::guest_warn!("i8042: mouse buffer full, motion dropped");
                break;
            }
            mouse.queue.extend(&packet);
            mouse.last_sent = packet[packet.len() - 1];
            dx -= px;
            dy -= py;
            dz -= pz;
            if dx == 0 && dy == 0 && dz == 0 {
                break;
            }
        }
        self.refill();
    }

    // ---- Output buffer and interrupts ---------------------------------------

    fn command_byte(&self) -> u8 {
        self.ram[0]
    }

    /// Moves the next byte into an empty output buffer: controller replies
    /// first, then the keyboard, then the mouse, each only while its clock
    /// is enabled.
    fn refill(&mut self) {
        while self.output.is_none() {
            if let Some(entry) = self.controller_queue.pop_front() {
                self.output = Some(entry);
                break;
            }
            let cb = self.command_byte();
            if cb & CB_KBD_DISABLE == 0 {
                if let Some(byte) = self.kbd.queue.pop_front() {
                    if cb & CB_TRANSLATE == 0 {
                        self.output = Some((byte, Source::Keyboard));
                    } else if byte == PREFIX_BREAK {
                        // Folded into the next code; keep pulling.
                        self.translate_break = true;
                    } else {
                        let mut code = set2_to_set1(byte);
                        if std::mem::take(&mut self.translate_break) {
                            code |= 0x80;
                        }
                        self.output = Some((code, Source::Keyboard));
                    }
                    continue;
                }
            }
            if cb & CB_AUX_DISABLE == 0 {
                if let Some(byte) = self.mouse.queue.pop_front() {
                    self.output = Some((byte, Source::Aux));
                }
            }
            break;
        }
        self.update_irqs();
    }

    /// IRQ 1 and IRQ 12 follow the output buffer (the 8042 drives them from
    /// output-port bits 4 and 5) gated by the command byte's enables.
    fn update_irqs(&mut self) {
        let cb = self.command_byte();
        let source = self.output.map(|(_, source)| source);
        let kbd = source == Some(Source::Keyboard) && cb & CB_KBD_INT != 0;
        let aux = source == Some(Source::Aux) && cb & CB_AUX_INT != 0;
        if kbd != self.kbd_irq_high {
            self.kbd_irq_high = kbd;
            self.kbd_irq.set_level(kbd);
        }
        if aux != self.mouse_irq_high {
            self.mouse_irq_high = aux;
            self.mouse_irq.set_level(aux);
        }
    }

    fn controller_reply(&mut self, byte: u8, source: Source) {
        if self.controller_queue.len() >= REPLY_LIMIT {
            crate::guest_warn!("i8042: controller reply dropped, guest is not reading");
            return;
        }
        self.controller_queue.push_back((byte, source));
    }

    fn status(&self) -> u8 {
        let mut status = STATUS_NOT_INHIBITED;
        if let Some((_, source)) = self.output {
            status |= STATUS_OBF;
            if source == Source::Aux {
                status |= STATUS_AUX_OBF;
            }
        }
        if self.sys {
            status |= STATUS_SYS;
        }
        if self.last_write_command {
            status |= STATUS_A2;
        }
        status
    }

    fn read_data(&mut self) -> u8 {
        match self.output.take() {
            Some((byte, _)) => {
                self.last_output = byte;
                // Drop the line before the next byte raises it again, so an
                // edge-triggered PIC sees a new edge per byte.
                self.update_irqs();
                self.refill();
                byte
            }
            None => self.last_output,
        }
    }

    // ---- Controller commands ------------------------------------------------

    fn write_command(&mut self, command: u8) {
        self.last_write_command = true;
        if let Some(previous) = self.awaiting.take() {
            crate::guest_warn!(
                "i8042: command {command:#04x} while {previous:#04x} awaited its data byte"
            );
        }
        match command {
            CMD_READ_RAM_FIRST..=CMD_READ_RAM_LAST => {
                let byte = self.ram[(command & 0x1f) as usize];
                self.controller_reply(byte, Source::Keyboard);
            }
            CMD_WRITE_RAM_FIRST..=CMD_WRITE_RAM_LAST
            | CMD_WRITE_OUTPUT_PORT
            | CMD_WRITE_KBD_OUTPUT
            | CMD_WRITE_AUX_OUTPUT
            | CMD_WRITE_AUX => self.awaiting = Some(command),
            CMD_PASSWORD_INSTALLED => self.controller_reply(NO_PASSWORD, Source::Keyboard),
            CMD_AUX_DISABLE => self.ram[0] |= CB_AUX_DISABLE,
            CMD_AUX_ENABLE => self.ram[0] &= !CB_AUX_DISABLE,
            CMD_AUX_INTERFACE_TEST | CMD_KBD_INTERFACE_TEST => {
                self.controller_reply(INTERFACE_TEST_OK, Source::Keyboard)
            }
            CMD_SELF_TEST => {
                // IBM: the system flag is set once the self test passes.
                self.sys = true;
                self.controller_reply(SELF_TEST_OK, Source::Keyboard);
            }
            CMD_KBD_DISABLE => self.ram[0] |= CB_KBD_DISABLE,
            CMD_KBD_ENABLE => self.ram[0] &= !CB_KBD_DISABLE,
            CMD_READ_INPUT_PORT => self.controller_reply(INPUT_PORT, Source::Keyboard),
            // Copy input-port bits into the status register: nothing to copy.
            CMD_POLL_INPUT_LOW | CMD_POLL_INPUT_HIGH => {}
            CMD_READ_OUTPUT_PORT => {
                let mut port = self.output_port & !(OUT_KBD_OBF | OUT_AUX_OBF);
                match self.output {
                    Some((_, Source::Keyboard)) => port |= OUT_KBD_OBF,
                    Some((_, Source::Aux)) => port |= OUT_AUX_OBF,
                    None => {}
                }
                self.controller_reply(port, Source::Keyboard);
            }
            CMD_A20_DISABLE => self.output_port &= !OUT_A20,
            CMD_A20_ENABLE => self.output_port |= OUT_A20,
            CMD_READ_TEST_INPUTS => self.controller_reply(0x00, Source::Keyboard),
            CMD_PULSE_FIRST..=0xff => {
                // Bits 3-0 low pulse output-port lines 3-0 for 6 µs; line 0
                // is the CPU reset (0xFE is the classic reboot).
                if command & OUT_RESET == 0 {
                    self.machine.request_reset();
                }
            }
            other => crate::guest_warn!("i8042: unknown controller command {other:#04x}"),
        }
        self.refill();
    }

    fn write_data(&mut self, byte: u8) {
        self.last_write_command = false;
        match self.awaiting.take() {
            Some(command @ CMD_WRITE_RAM_FIRST..=CMD_WRITE_RAM_LAST) => {
                self.ram[(command & 0x1f) as usize] = byte;
                if command == CMD_WRITE_RAM_FIRST {
                    self.sys = byte & CB_SYS != 0;
                    if byte & CB_TRANSLATE == 0 {
                        self.translate_break = false;
                    }
                }
            }
            Some(CMD_WRITE_OUTPUT_PORT) => {
                if byte & OUT_RESET == 0 {
                    self.machine.request_reset();
                }
                // The reset line is released once the CPU restarts.
                self.output_port = (byte | OUT_RESET) & !(OUT_KBD_OBF | OUT_AUX_OBF);
            }
            Some(CMD_WRITE_KBD_OUTPUT) => self.controller_reply(byte, Source::Keyboard),
            Some(CMD_WRITE_AUX_OUTPUT) => self.controller_reply(byte, Source::Aux),
            Some(CMD_WRITE_AUX) => self.mouse_write(byte),
            Some(other) => {
                crate::guest_warn!("i8042: data byte for unexpected command {other:#04x}")
            }
            None => {
                // Sending to the keyboard re-enables its clock, as the
                // controller must drive it to transmit (QEMU does the same).
                self.ram[0] &= !CB_KBD_DISABLE;
                self.keyboard_write(byte);
            }
        }
        self.refill();
    }

    // ---- Keyboard -----------------------------------------------------------

    fn notify_leds(&self) {
        if let Some(callback) = &self.led_callback {
            callback(self.kbd.leds);
        }
    }

    /// A byte from the controller to the keyboard: a command, or the
    /// parameter of the previous one.
    fn keyboard_write(&mut self, byte: u8) {
        // A command byte (0xED and up) where a parameter was expected starts
        // a new command, as real keyboards do.
        if let Some(command) = self.kbd.awaiting.take() {
            if byte < KBD_SET_LEDS {
                self.keyboard_parameter(command, byte);
                return;
            }
        }
        // Enable, Default Disable, Set Default and Reset clear the
        // keyboard's output buffer (IBM keyboard command descriptions), so
        // stale keys cannot arrive after the acknowledgement.
        if matches!(
            byte,
            KBD_ENABLE | KBD_DEFAULT_DISABLE | KBD_SET_DEFAULT | KBD_RESET
        ) {
            self.kbd.queue.clear();
            self.translate_break = false;
        }
        match byte {
            KBD_SET_LEDS | KBD_SCAN_CODE_SET | KBD_TYPEMATIC => {
                self.kbd.awaiting = Some(byte);
                self.kbd.reply(&[ACK]);
            }
            KBD_ECHO => self.kbd.reply(&[KBD_ECHO]),
            KBD_IDENTIFY => self.kbd.reply(&[ACK, KBD_ID[0], KBD_ID[1]]),
            KBD_ENABLE => {
                self.kbd.scanning = true;
                self.kbd.reply(&[ACK]);
            }
            KBD_DEFAULT_DISABLE => {
                self.kbd.defaults();
                self.kbd.scanning = false;
                self.kbd.reply(&[ACK]);
            }
            KBD_SET_DEFAULT => {
                self.kbd.defaults();
                self.kbd.scanning = true;
                self.kbd.reply(&[ACK]);
            }
            KBD_RESEND => {
                let last = self.kbd.last_sent;
                self.kbd.reply(&[last]);
            }
            KBD_RESET => {
                self.kbd.defaults();
                self.kbd.scanning = true;
                if self.kbd.leds != 0 {
                    self.kbd.leds = 0;
                    self.notify_leds();
                }
                self.kbd.reply(&[ACK, BAT_OK]);
            }
            other => {
                crate::guest_warn!("i8042: unsupported keyboard command {other:#04x}");
                self.kbd.reply(&[RESEND]);
            }
        }
    }

    fn keyboard_parameter(&mut self, command: u8, value: u8) {
        match command {
            KBD_SET_LEDS => {
                self.kbd.leds = value & 0x07;
                self.kbd.reply(&[ACK]);
                self.notify_leds();
            }
            KBD_SCAN_CODE_SET => match value {
                0 => {
                    let set = self.kbd.scan_set;
                    self.kbd.reply(&[ACK, set]);
                }
                1 | 2 => {
                    self.kbd.scan_set = value;
                    self.kbd.reply(&[ACK]);
                }
                other => {
                    crate::guest_warn!("i8042: scan code set {other} not emulated");
                    self.kbd.reply(&[RESEND]);
                }
            },
            KBD_TYPEMATIC => {
                self.kbd.typematic = value & 0x7f;
                self.kbd.reply(&[ACK]);
            }
            // Only the commands above set `awaiting`.
            _ => self.kbd.reply(&[RESEND]),
        }
    }

    // ---- Mouse --------------------------------------------------------------

    /// A byte for the mouse (after controller command 0xD4).
    fn mouse_write(&mut self, byte: u8) {
        let mouse = &mut self.mouse;
        if let Some(command) = mouse.awaiting.take() {
            match command {
                AUX_SET_SAMPLE_RATE => {
                    mouse.sample_rate = byte;
                    mouse.recent_rates = [mouse.recent_rates[1], mouse.recent_rates[2], byte];
                    if mouse.recent_rates == INTELLIMOUSE_KNOCK {
                        mouse.id = MOUSE_ID_INTELLIMOUSE;
                    }
                }
                _ => mouse.resolution = byte & 0x03,
            }
            mouse.reply(&[ACK]);
            return;
        }
        if mouse.wrap && byte != AUX_RESET_WRAP && byte != AUX_RESET {
            // Wrap mode echoes everything but its way out.
            mouse.reply(&[byte]);
            return;
        }
        // Like the keyboard's, these drop packets not yet sent: after them
        // old motion means nothing to the driver.
        if matches!(byte, AUX_ENABLE | AUX_DISABLE | AUX_SET_DEFAULT | AUX_RESET) {
            mouse.queue.clear();
        }
        match byte {
            AUX_SET_SCALING_1_1 => {
                mouse.scaling_2_1 = false;
                mouse.reply(&[ACK]);
            }
            AUX_SET_SCALING_2_1 => {
                mouse.scaling_2_1 = true;
                mouse.reply(&[ACK]);
            }
            AUX_SET_RESOLUTION | AUX_SET_SAMPLE_RATE => {
                mouse.awaiting = Some(byte);
                mouse.reply(&[ACK]);
            }
            AUX_STATUS_REQUEST => {
                let status = mouse.status();
                mouse.reply(&[ACK, status[0], status[1], status[2]]);
            }
            AUX_SET_STREAM => {
                mouse.remote = false;
                mouse.dx = 0;
                mouse.dy = 0;
                mouse.dz = 0;
                mouse.reply(&[ACK]);
            }
            AUX_READ_DATA => {
                let packet = mouse.packet(mouse.dx, mouse.dy, mouse.dz);
                mouse.dx = 0;
                mouse.dy = 0;
                mouse.dz = 0;
                mouse.reply(&[ACK]);
                mouse.reply(&packet);
            }
            AUX_RESET_WRAP => {
                mouse.wrap = false;
                mouse.reply(&[ACK]);
            }
            AUX_SET_WRAP => {
                mouse.wrap = true;
                mouse.reply(&[ACK]);
            }
            AUX_SET_REMOTE => {
                mouse.remote = true;
                mouse.reply(&[ACK]);
            }
            AUX_GET_ID => {
                let id = mouse.id;
                mouse.reply(&[ACK, id]);
            }
            AUX_ENABLE => {
                mouse.reporting = true;
                mouse.reply(&[ACK]);
            }
            AUX_DISABLE => {
                mouse.reporting = false;
                mouse.reply(&[ACK]);
            }
            AUX_SET_DEFAULT => {
                mouse.defaults();
                mouse.reply(&[ACK]);
            }
            AUX_RESEND => {
                let last = mouse.last_sent;
                mouse.reply(&[last]);
            }
            AUX_RESET => {
                mouse.defaults();
                mouse.wrap = false;
                mouse.id = MOUSE_ID_STANDARD;
                mouse.recent_rates = [0; 3];
                mouse.reply(&[ACK, BAT_OK, MOUSE_ID_STANDARD]);
            }
            other => {
                crate::guest_warn!("i8042: unsupported mouse command {other:#04x}");
                mouse.reply(&[RESEND]);
            }
        }
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = match offset.saturating_add(i as u64) {
                OFFSET_DATA => self.read_data(),
                OFFSET_COMMAND => self.status(),
                // 0x61-0x63 belong to other chips (the in-kernel PIT has 0x61).
                _ => 0xff,
            };
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            match offset.saturating_add(i as u64) {
                OFFSET_DATA => self.write_data(byte),
                OFFSET_COMMAND => self.write_command(byte),
                other => crate::guest_warn!("i8042: write to port offset {other}"),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::irq::FakeIrq;
    use crate::devices::FakeMachine;
    use crate::keys::scancode::{QNUM_PAUSE, QNUM_PRINT_SCREEN};
    use std::sync::Mutex;

    struct Rig {
        dev: I8042,
        kbd_irq: Arc<FakeIrq>,
        mouse_irq: Arc<FakeIrq>,
        machine: Arc<FakeMachine>,
    }

    fn rig() -> Rig {
        let kbd_irq = FakeIrq::new();
        let mouse_irq = FakeIrq::new();
        let machine = Arc::new(FakeMachine::default());
        let dev = I8042::new(kbd_irq.clone(), mouse_irq.clone(), machine.clone());
        Rig {
            dev,
            kbd_irq,
            mouse_irq,
            machine,
        }
    }

    impl Rig {
        fn status(&mut self) -> u8 {
            let mut b = [0];
            self.dev.read(OFFSET_COMMAND, &mut b);
            b[0]
        }
        fn command(&mut self, command: u8) {
            self.dev.write(OFFSET_COMMAND, &[command]);
        }
        fn data(&mut self, byte: u8) {
            self.dev.write(OFFSET_DATA, &[byte]);
        }
        fn read_data(&mut self) -> u8 {
            let mut b = [0];
            self.dev.read(OFFSET_DATA, &mut b);
            b[0]
        }
        /// Everything waiting in the output buffer, as a polling driver
        /// (SeaBIOS's i8042_flush) would drain it.
        fn drain(&mut self) -> Vec<u8> {
            let mut out = Vec::new();
            while self.status() & STATUS_OBF != 0 && out.len() < 1000 {
                out.push(self.read_data());
            }
            out
        }
        /// A controller command with one reply byte (SeaBIOS i8042_command).
        fn command_reply(&mut self, command: u8) -> u8 {
            self.command(command);
            assert_ne!(self.status() & STATUS_OBF, 0, "no reply to {command:#x}");
            self.read_data()
        }
        fn write_command_byte(&mut self, value: u8) {
            self.command(CMD_WRITE_RAM_FIRST);
            self.data(value);
        }
        fn mouse_command(&mut self, byte: u8) {
            self.command(CMD_WRITE_AUX);
            self.data(byte);
        }
    }

    /// SeaBIOS's ps2port.c keyboard_init, step by step, ending with the
    /// command byte 0x61 (translation, keyboard interrupt, mouse disabled).
    fn seabios_keyboard_init(r: &mut Rig) {
        assert!(r.drain().is_empty());
        r.command(CMD_KBD_DISABLE);
        r.command(CMD_AUX_DISABLE);
        assert!(r.drain().is_empty());
        assert_eq!(r.command_reply(CMD_SELF_TEST), SELF_TEST_OK);
        assert_eq!(r.command_reply(CMD_KBD_INTERFACE_TEST), 0x00);
        // __ps2_command: save the command byte, run with interrupts off and
        // only the keyboard clock on, restore it.
        let saved = r.command_reply(CMD_READ_RAM_FIRST);
        r.write_command_byte(
            (saved & !(CB_KBD_INT | CB_AUX_INT | CB_KBD_DISABLE)) | CB_AUX_DISABLE,
        );
        r.data(KBD_RESET);
        assert_eq!(r.drain(), [ACK, BAT_OK]);
        r.data(KBD_DEFAULT_DISABLE);
        assert_eq!(r.drain(), [ACK]);
        r.data(KBD_SCAN_CODE_SET);
        assert_eq!(r.drain(), [ACK]);
        r.data(0x02);
        assert_eq!(r.drain(), [ACK]);
        r.write_command_byte(CB_AUX_DISABLE | CB_TRANSLATE | CB_KBD_INT);
        r.data(KBD_ENABLE);
        assert_eq!(r.drain(), [ACK]);
        assert!(!r.kbd_irq.level());
    }

    #[test]
    fn seabios_boot_sequence_then_keys_arrive_as_set_1() {
        let mut r = rig();
        seabios_keyboard_init(&mut r);
        let status = r.status();
        assert_eq!(status & STATUS_SYS, 0, "command byte 0x61 clears SYS");
        let edges = r.kbd_irq.rising_edges();
        // 'A' press and release.
        r.dev.key_event(0x1e, true);
        assert!(r.kbd_irq.level());
        assert_eq!(r.status() & (STATUS_OBF | STATUS_AUX_OBF), STATUS_OBF);
        assert_eq!(r.read_data(), 0x1e);
        assert!(!r.kbd_irq.level());
        r.dev.key_event(0x1e, false);
        assert_eq!(r.read_data(), 0x9e);
        // Right Ctrl and Up arrow: E0-prefixed.
        r.dev.key_event(0x9d, true);
        r.dev.key_event(0xc8, true);
        r.dev.key_event(0xc8, false);
        r.dev.key_event(0x9d, false);
        assert_eq!(r.drain(), [0xe0, 0x1d, 0xe0, 0x48, 0xe0, 0xc8, 0xe0, 0x9d]);
        // F7 (0x83 in set 2) and every other key round-trips through the
        // translator to its own set 1 code.
        r.dev.key_event(0x41, true);
        assert_eq!(r.drain(), [0x41]);
        // One rising edge per byte delivered.
        assert_eq!(r.kbd_irq.rising_edges() - edges, 11);
        assert!(!r.mouse_irq.level());
    }

    /// The keys of tests/linux_desktop.rs's F-key step, pressed and
    /// released at once as `vncdo` sends them, reach a driver that reads
    /// one byte per interrupt (Linux's i8042_interrupt) whole and in order
    /// in raw set 2 (direct boot leaves translation off): each byte
    /// raises its own edge, and none is left in the buffer.
    #[test]
    fn a_burst_of_function_and_extended_keys_arrives_one_byte_per_interrupt() {
        let mut r = rig();
        r.write_command_byte(CB_KBD_INT);
        let keys = [0x3b, 0x58, 0x0f, 0xcb, 0xd3, 0x1c]; // F1 F12 Tab Left Delete Enter
        for qnum in keys {
            r.dev.key_event(qnum, true);
            r.dev.key_event(qnum, false);
        }
        let mut seen = Vec::new();
        let mut edges = r.kbd_irq.rising_edges();
        while r.kbd_irq.level() {
            seen.push(r.read_data());
            let now = r.kbd_irq.rising_edges();
            assert!(
                now == edges + 1 || !r.kbd_irq.level(),
                "no new edge after {seen:x?}"
            );
            edges = now;
        }
        assert_eq!(
            seen,
            [
                0x05, 0xf0, 0x05, // F1
                0x07, 0xf0, 0x07, // F12
                0x0d, 0xf0, 0x0d, // Tab
                0xe0, 0x6b, 0xe0, 0xf0, 0x6b, // Left
                0xe0, 0x71, 0xe0, 0xf0, 0x71, // Delete
                0x5a, 0xf0, 0x5a, // Enter
            ]
        );
        assert_eq!(r.status() & STATUS_OBF, 0);
    }

    #[test]
    fn keys_are_set_2_without_translation() {
        let mut r = rig();
        r.write_command_byte(CB_KBD_INT);
        r.dev.key_event(0x1e, true);
        r.dev.key_event(0x1e, false);
        assert_eq!(r.drain(), [0x1c, 0xf0, 0x1c]);
        r.dev.key_event(0x9d, true);
        r.dev.key_event(0x9d, false);
        assert_eq!(r.drain(), [0xe0, 0x14, 0xe0, 0xf0, 0x14]);
        r.dev.key_event(0xc8, false);
        assert_eq!(r.drain(), [0xe0, 0xf0, 0x75]);
        r.dev.key_event(0x41, true);
        assert_eq!(r.drain(), [0x83]);
    }

    #[test]
    fn pause_and_print_screen_sequences() {
        let mut r = rig();
        r.write_command_byte(CB_KBD_INT);
        r.dev.key_event(QNUM_PAUSE, true);
        r.dev.key_event(QNUM_PAUSE, false);
        assert_eq!(r.drain(), [0xe1, 0x14, 0x77, 0xe1, 0xf0, 0x14, 0xf0, 0x77]);
        r.dev.key_event(QNUM_PRINT_SCREEN, true);
        r.dev.key_event(QNUM_PRINT_SCREEN, false);
        assert_eq!(
            r.drain(),
            [0xe0, 0x12, 0xe0, 0x7c, 0xe0, 0xf0, 0x7c, 0xe0, 0xf0, 0x12]
        );
        // Ctrl+Pause is Break; Ctrl+Print Screen drops the fake shift.
        r.dev.key_event(QNUM_LEFT_CTRL, true);
        r.dev.key_event(QNUM_PAUSE, true);
        r.dev.key_event(QNUM_PRINT_SCREEN, true);
        r.dev.key_event(QNUM_PRINT_SCREEN, false);
        r.dev.key_event(QNUM_LEFT_CTRL, false);
        assert_eq!(
            r.drain(),
            [0x14, 0xe0, 0x7e, 0xe0, 0xf0, 0x7e, 0xe0, 0x7c, 0xe0, 0xf0, 0x7c, 0xf0, 0x14]
        );
        // Alt+Print Screen is SysRq.
        r.dev.key_event(QNUM_RIGHT_ALT, true);
        r.dev.key_event(QNUM_PRINT_SCREEN, true);
        r.dev.key_event(QNUM_PRINT_SCREEN, false);
        assert_eq!(r.drain(), [0xe0, 0x11, 0x84, 0xf0, 0x84]);
        // Translated, Pause reaches the guest as set 1's E1 1D 45 E1 9D C5.
        r.dev.key_event(QNUM_RIGHT_ALT, false);
        r.drain();
        r.write_command_byte(CB_KBD_INT | CB_TRANSLATE);
        r.dev.key_event(QNUM_PAUSE, true);
        assert_eq!(r.drain(), [0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5]);
    }

    #[test]
    fn keyboard_commands() {
        let mut r = rig();
        r.write_command_byte(0);
        r.data(KBD_IDENTIFY);
        assert_eq!(r.drain(), [ACK, 0xab, 0x83]);
        // Under translation the ID's second byte reads 0x41, as Linux expects.
        r.write_command_byte(CB_TRANSLATE);
        r.data(KBD_IDENTIFY);
        assert_eq!(r.drain(), [ACK, 0xab, 0x41]);
        r.write_command_byte(0);
        r.data(KBD_ECHO);
        assert_eq!(r.drain(), [KBD_ECHO]);
        r.data(KBD_SCAN_CODE_SET);
        r.data(0);
        assert_eq!(r.drain(), [ACK, ACK, 2]);
        r.data(KBD_SCAN_CODE_SET);
        r.data(3);
        assert_eq!(r.drain(), [ACK, RESEND]);
        r.data(KBD_TYPEMATIC);
        r.data(0x20);
        assert_eq!(r.drain(), [ACK, ACK]);
        r.data(0x42);
        assert_eq!(r.drain(), [RESEND]);
        r.data(KBD_RESEND);
        assert_eq!(r.drain(), [RESEND]);
        // Disabled, the keyboard sends no keys; enabled again, it does.
        r.data(KBD_DEFAULT_DISABLE);
        r.drain();
        r.dev.key_event(0x1e, true);
        assert!(r.drain().is_empty());
        r.data(KBD_ENABLE);
        r.drain();
        r.dev.key_event(0x1e, true);
        assert_eq!(r.drain(), [0x1c]);
        // Set 1 selected at the keyboard, no translation.
        r.data(KBD_SCAN_CODE_SET);
        r.data(1);
        r.drain();
        r.dev.key_event(0x9d, false);
        assert_eq!(r.drain(), [0xe0, 0x9d]);
        // A command where a parameter was due starts the new command.
        r.data(KBD_SET_LEDS);
        r.data(KBD_ECHO);
        assert_eq!(r.drain(), [ACK, KBD_ECHO]);
    }

    #[test]
    fn leds_are_kept_and_reported() {
        let mut r = rig();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let sink = seen.clone();
        r.dev
            .set_led_callback(Box::new(move |leds| sink.lock().unwrap().push(leds)));
        r.data(KBD_SET_LEDS);
        r.data(0x06); // Num and Caps Lock
        assert_eq!(r.drain(), [ACK, ACK]);
        assert_eq!(r.dev.leds(), 0x06);
        r.data(KBD_SET_LEDS);
        r.data(0x7f);
        assert_eq!(r.drain(), [ACK, ACK]);
        assert_eq!(r.dev.leds(), 0x07);
        r.data(KBD_RESET);
        assert_eq!(r.drain(), [ACK, BAT_OK]);
        assert_eq!(r.dev.leds(), 0);
        assert_eq!(*seen.lock().unwrap(), [0x06, 0x07, 0x00]);
    }

    #[test]
    fn controller_commands() {
        let mut r = rig();
        assert_eq!(r.status() & STATUS_NOT_INHIBITED, STATUS_NOT_INHIBITED);
        r.command(CMD_READ_RAM_FIRST);
        assert_ne!(r.status() & STATUS_A2, 0);
        assert_eq!(r.read_data(), CB_POWER_ON);
        r.write_command_byte(0x45);
        assert_eq!(r.status() & STATUS_A2, 0);
        assert_ne!(r.status() & STATUS_SYS, 0);
        assert_eq!(r.command_reply(CMD_READ_RAM_FIRST), 0x45);
        // Other controller RAM bytes.
        r.command(0x65);
        r.data(0x99);
        assert_eq!(r.command_reply(0x25), 0x99);
        assert_eq!(r.command_reply(CMD_AUX_INTERFACE_TEST), 0x00);
        assert_eq!(r.command_reply(CMD_PASSWORD_INSTALLED), NO_PASSWORD);
        assert_eq!(r.command_reply(CMD_READ_INPUT_PORT), INPUT_PORT);
        r.command(CMD_AUX_ENABLE);
        r.command(CMD_KBD_DISABLE);
        assert_eq!(
            r.command_reply(CMD_READ_RAM_FIRST),
            (0x45 | CB_KBD_DISABLE) & !CB_AUX_DISABLE
        );
        // A20 through the output port and the HP commands.
        assert!(r.dev.a20_enabled());
        r.command(CMD_A20_DISABLE);
        assert!(!r.dev.a20_enabled());
        assert_eq!(r.command_reply(CMD_READ_OUTPUT_PORT) & OUT_A20, 0);
        r.command(CMD_WRITE_OUTPUT_PORT);
        r.data(OUT_RESET | OUT_A20);
        assert!(r.dev.a20_enabled());
        assert_eq!(r.machine.resets(), 0);
        // 0xD2/0xD3 echo through the output buffer as keyboard/aux data.
        r.write_command_byte(CB_KBD_INT | CB_AUX_INT);
        r.command(CMD_WRITE_KBD_OUTPUT);
        r.data(0x5a);
        assert!(r.kbd_irq.level());
        assert_eq!(r.status() & STATUS_AUX_OBF, 0);
        assert_eq!(r.read_data(), 0x5a);
        r.command(CMD_WRITE_AUX_OUTPUT);
        r.data(0xa5);
        assert!(r.mouse_irq.level() && !r.kbd_irq.level());
        assert_ne!(r.status() & STATUS_AUX_OBF, 0);
        assert_eq!(r.read_data(), 0xa5);
        assert!(!r.mouse_irq.level());
        // Reading an empty buffer repeats the last byte.
        assert_eq!(r.read_data(), 0xa5);
    }

    #[test]
    fn reset_through_pulse_and_output_port() {
        let mut r = rig();
        r.command(0xfe);
        assert_eq!(r.machine.resets(), 1);
        // Pulsing other lines (bit 0 high) does not reset.
        r.command(0xff);
        r.command(0xf1);
        assert_eq!(r.machine.resets(), 1);
        r.command(0xf0);
        assert_eq!(r.machine.resets(), 2);
        let port = r.command_reply(CMD_READ_OUTPUT_PORT);
        assert_ne!(port & OUT_RESET, 0);
        r.command(CMD_WRITE_OUTPUT_PORT);
        r.data(port & !OUT_RESET);
        assert_eq!(r.machine.resets(), 3);
        assert_eq!(r.machine.poweroffs(), 0);
    }

    #[test]
    fn irqs_follow_command_byte_enables_and_disabled_clocks_hold_data() {
        let mut r = rig();
        r.write_command_byte(CB_KBD_DISABLE);
        r.dev.key_event(0x1e, true);
        assert_eq!(r.status() & STATUS_OBF, 0, "keyboard clock is off");
        r.command(CMD_KBD_ENABLE);
        assert_ne!(r.status() & STATUS_OBF, 0);
        assert!(!r.kbd_irq.level(), "interrupt not enabled");
        r.write_command_byte(CB_KBD_INT);
        assert!(r.kbd_irq.level());
        assert_eq!(r.read_data(), 0x1c);
        assert!(!r.kbd_irq.level());
    }

    #[test]
    fn mouse_init_and_packets() {
        let mut r = rig();
        // Linux psmouse-style probe with the IntelliMouse knock.
        r.write_command_byte(CB_KBD_INT | CB_AUX_INT | CB_TRANSLATE | CB_SYS);
        r.mouse_command(AUX_RESET);
        assert_eq!(r.drain(), [ACK, BAT_OK, 0x00]);
        r.mouse_command(AUX_GET_ID);
        assert_eq!(r.drain(), [ACK, 0x00]);
        for rate in INTELLIMOUSE_KNOCK {
            r.mouse_command(AUX_SET_SAMPLE_RATE);
            r.mouse_command(rate);
        }
        assert_eq!(r.drain(), [ACK; 6]);
        r.mouse_command(AUX_GET_ID);
        let reply = r.drain();
        assert_eq!(reply, [ACK, MOUSE_ID_INTELLIMOUSE]);
        r.mouse_command(AUX_SET_RESOLUTION);
        r.mouse_command(3);
        r.mouse_command(AUX_SET_SCALING_1_1);
        r.mouse_command(AUX_STATUS_REQUEST);
        assert_eq!(r.drain(), [ACK, ACK, ACK, ACK, 0x00, 3, 80]);
        // No packets until reporting is enabled.
        r.dev.mouse_event(5, 5, 0, 0);
        assert!(r.drain().is_empty());
        r.mouse_command(AUX_ENABLE);
        assert_eq!(r.drain(), [ACK]);
        // Right and down by 5 with the left button; wheel down one notch.
        let edges = r.mouse_irq.rising_edges();
        r.dev.mouse_event(5, 3, 1, 0x01);
        assert!(r.mouse_irq.level() && !r.kbd_irq.level());
        assert_ne!(r.status() & STATUS_AUX_OBF, 0);
        assert_eq!(r.drain(), [0x08 | 0x01 | PACKET_Y_SIGN, 5, 0xfd, 0x01]);
        assert_eq!(r.mouse_irq.rising_edges() - edges, 4);
        // Left and up, wheel up.
        r.dev.mouse_event(-2, -7, -1, 0x04);
        assert_eq!(r.drain(), [0x08 | 0x04 | PACKET_X_SIGN, 0xfe, 7, 0xff]);
        // Large motion splits into packets that add up.
        r.dev.mouse_event(600, 0, 0, 0);
        let bytes = r.drain();
        let total: i32 = bytes
            .chunks(4)
            .map(|p| i32::from(p[1]) - if p[0] & PACKET_X_SIGN != 0 { 256 } else { 0 })
            .sum();
        assert_eq!(total, 600);
        assert!(bytes.chunks(4).all(|p| p[0] & PACKET_X_OVERFLOW == 0));
        // Beyond what eight packets carry, the last one flags overflow.
        r.dev.mouse_event(-100_000, 0, 0, 0);
        let bytes = r.drain();
        assert_eq!(bytes.len(), 4 * MAX_PACKETS_PER_EVENT);
        assert_ne!(bytes[bytes.len() - 4] & PACKET_X_OVERFLOW, 0);
        // Disabled again: silence.
        r.mouse_command(AUX_DISABLE);
        r.drain();
        r.dev.mouse_event(1, 1, 0, 0);
        assert!(r.drain().is_empty());
    }

    #[test]
    fn keyboard_and_mouse_bytes_are_told_apart() {
        let mut r = rig();
        r.write_command_byte(CB_KBD_INT | CB_AUX_INT);
        r.mouse_command(AUX_ENABLE);
        r.drain();
        r.dev.key_event(0x1e, true);
        r.dev.mouse_event(1, 0, 0, 0);
        let mut seen = Vec::new();
        while r.status() & STATUS_OBF != 0 {
            let aux = r.status() & STATUS_AUX_OBF != 0;
            seen.push((aux, r.read_data()));
        }
        // Keyboard first, then the mouse packet, each byte tagged right.
        assert_eq!(
            seen,
            [(false, 0x1c), (true, 0x08), (true, 0x01), (true, 0x00)]
        );
    }

    #[test]
    fn mouse_remote_wrap_scaling_and_defaults() {
        let mut r = rig();
        r.write_command_byte(0);
        r.mouse_command(AUX_SET_REMOTE);
        r.drain();
        r.dev.mouse_event(3, -4, 0, 0x02);
        r.dev.mouse_event(1, 0, 0, 0x02);
        assert!(r.drain().is_empty(), "remote mode sends only on request");
        r.mouse_command(AUX_READ_DATA);
        assert_eq!(r.drain(), [ACK, 0x08 | 0x02, 4, 4]);
        r.mouse_command(AUX_READ_DATA);
        assert_eq!(r.drain(), [ACK, 0x08 | 0x02, 0, 0]);
        r.mouse_command(AUX_STATUS_REQUEST);
        assert_eq!(r.drain(), [ACK, MOUSE_STATUS_REMOTE | 0x01, 2, 100]);
        // Wrap mode echoes until Reset Wrap.
        r.mouse_command(AUX_SET_WRAP);
        r.mouse_command(0x12);
        r.mouse_command(AUX_ENABLE);
        r.mouse_command(AUX_RESET_WRAP);
        assert_eq!(r.drain(), [ACK, 0x12, AUX_ENABLE, ACK]);
        // 2:1 scaling in stream mode.
        r.mouse_command(AUX_SET_STREAM);
        r.mouse_command(AUX_SET_SCALING_2_1);
        r.mouse_command(AUX_ENABLE);
        r.drain();
        r.dev.mouse_event(4, 0, 0, 0);
        r.dev.mouse_event(10, 0, 0, 0);
        assert_eq!(r.drain(), [0x08, 6, 0, 0x08, 20, 0]);
        r.mouse_command(AUX_SET_DEFAULT);
        r.mouse_command(AUX_STATUS_REQUEST);
        assert_eq!(r.drain(), [ACK, ACK, 0x00, 2, 100]);
        r.mouse_command(0x42);
        assert_eq!(r.drain(), [RESEND]);
    }

    #[test]
    fn input_buffers_are_bounded() {
        let mut r = rig();
        r.write_command_byte(CB_KBD_DISABLE);
        for _ in 0..KBD_INPUT_LIMIT + 1000 {
            r.dev.key_event(0x1e, true);
        }
        r.command(CMD_KBD_ENABLE);
        let bytes = r.drain();
        assert_eq!(bytes.len(), KBD_INPUT_LIMIT);
        // Whole sequences only: no E0 without its code.
        r.write_command_byte(CB_KBD_DISABLE);
        for _ in 0..KBD_INPUT_LIMIT {
            r.dev.key_event(0x9d, false);
        }
        r.command(CMD_KBD_ENABLE);
        assert_eq!(r.drain().len() % 3, 0);
        // A guest that sends commands and never reads.
        r.write_command_byte(CB_KBD_DISABLE);
        for _ in 0..10_000 {
            r.data(KBD_IDENTIFY);
            r.write_command_byte(CB_KBD_DISABLE);
            r.command(CMD_READ_RAM_FIRST);
        }
        assert!(r.dev.kbd.queue.len() <= REPLY_LIMIT);
        assert!(r.dev.controller_queue.len() <= REPLY_LIMIT);
    }

    #[test]
    fn machine_reset_returns_to_power_on() {
        let mut r = rig();
        seabios_keyboard_init(&mut r);
        r.dev.key_event(0x1e, true);
        r.dev.reset();
        assert!(!r.kbd_irq.level());
        assert_eq!(r.status(), STATUS_NOT_INHIBITED);
        assert_eq!(r.command_reply(CMD_READ_RAM_FIRST), CB_POWER_ON);
    }

    #[test]
    fn hostile_byte_streams_do_not_panic() {
        let mut r = rig();
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..200_000 {
            let v = next();
            let byte = v as u8;
            match (v >> 8) % 8 {
                0 | 1 => r.command(byte),
                2 | 3 => r.data(byte),
                4 => {
                    r.read_data();
                }
                5 => {
                    r.status();
                }
                6 => r.dev.key_event((v >> 16) as u16 & 0x1ff, v >> 30 & 1 == 0),
                _ => r.dev.mouse_event(
                    (v >> 16) as i16 as i32 * 40,
                    (v >> 32) as i16 as i32,
                    (v >> 48) as i8 as i32,
                    (v >> 56) as u8,
                ),
            }
            if v >> 60 == 0 {
                // Odd widths and offsets inside the range.
                let mut wide = [0u8; 4];
                r.dev.read((v >> 20) % 5, &mut wide);
                r.dev.write((v >> 24) % 5, &wide[..(v >> 28) as usize % 4]);
            }
        }
        assert!(r.dev.kbd.queue.len() <= REPLY_LIMIT);
        assert!(r.dev.mouse.queue.len() <= REPLY_LIMIT);
    }

    /// A PS/2 controller with the 8042's set 1 translation on, as PC BIOSes
    /// leave it.
    fn translating_i8042() -> I8042 {
        let mut dev = I8042::new(
            FakeIrq::new(),
            FakeIrq::new(),
            Arc::new(FakeMachine::default()),
        );
        // Controller command 0x60 (write command byte): keyboard interrupt
        // and translation (bits 0 and 6).
        dev.write(4, &[0x60]);
        dev.write(0, &[0x41]);
        dev
    }

    fn drain(dev: &mut I8042) -> Vec<u8> {
        let mut out = Vec::new();
        let mut status = [0];
        loop {
            dev.read(4, &mut status);
            if status[0] & 1 == 0 || out.len() > 64 {
                return out;
            }
            let mut byte = [0];
            dev.read(0, &mut byte);
            out.push(byte[0]);
        }
    }

    #[test]
    fn every_key_reaches_the_guest_as_qemus_ps2_keyboard_sends_it() {
        for &(name, number) in crate::keys::qcode::QKEYCODES {
            let mut dev = translating_i8042();
            dev.key_event(number, true);
            let make = drain(&mut dev);
            dev.key_event(number, false);
            let brk = drain(&mut dev);
            // What QEMU's hw/input/ps2.c puts out for the key, translated.
            let (want_make, want_break): (Vec<u8>, Vec<u8>) = match name {
                "print" | "sysrq" => (vec![0xe0, 0x2a, 0xe0, 0x37], vec![0xe0, 0xb7, 0xe0, 0xaa]),
                "pause" => (vec![0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5], vec![]),
                "lang1" => (vec![0xf2], vec![]),
                "lang2" => (vec![0xf1], vec![]),
                _ if number & 0x80 != 0 => {
                    (vec![0xe0, number as u8 & 0x7f], vec![0xe0, number as u8])
                }
                _ => (vec![number as u8], vec![number as u8 | 0x80]),
            };
            assert_eq!((make, brk), (want_make, want_break), "{name}");
        }
    }
}
