//! Input from a console (VNC, the window) into the guest.
//!
//! Keys are QEMU key numbers ("qnum": the PC set-1 make code, with 0x80
//! added for E0-prefixed keys), the form QEMU's extended key event carries
//! and the i8042 consumes. Pointer positions are absolute, in surface
//! pixels; a relative device (the PS/2 mouse) turns them into motion.

/// Button bits, as RFB's PointerEvent button mask.
pub const BUTTON_LEFT: u8 = 1 << 0;
pub const BUTTON_MIDDLE: u8 = 1 << 1;
pub const BUTTON_RIGHT: u8 = 1 << 2;
pub const WHEEL_UP: u8 = 1 << 3;
pub const WHEEL_DOWN: u8 = 1 << 4;

/// Where console input goes. The VMM implements it over the machine's
/// input devices, and keeps it valid across machine resets.
pub trait InputSink: Send + Sync {
    /// A key went down or up.
    fn key(&self, qnum: u16, down: bool);
    /// The pointer is at (`x`, `y`) with `buttons` held (RFB mask bits).
    fn pointer(&self, x: u32, y: u32, buttons: u8);
}

/// An input sink that drops everything (a VM without a keyboard yet).
pub struct NoInput;

impl InputSink for NoInput {
    fn key(&self, _qnum: u16, _down: bool) {}
    fn pointer(&self, _x: u32, _y: u32, _buttons: u8) {}
}
