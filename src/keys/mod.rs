//! Every key table of Vireo, in one place. Keys travel through Vireo as
//! QEMU key numbers ("qnum": the PC scan code set 1 make code, with 0x80
//! set for E0-prefixed keys); each file here translates one other
//! numbering into or out of it:
//!
//! | file | numbering | who uses it |
//! |---|---|---|
//! | [`qcode`] | QEMU's `QKeyCode` names (`ctrl`, `kp_add`) | QMP's `send-key`, `vireo send-key` |
//! | [`evdev`] | Linux evdev codes and X/GDK hardware keycodes | the window's console |
//! | [`keysym`] | X keysyms on a US layout | VNC's plain KeyEvent |
//! | [`scancode`] | PS/2 scan code sets 2 and 1 | the i8042 keyboard |
//!
//! Pure tables and functions: this module imports nothing else of Vireo.

pub mod evdev;
pub mod keysym;
pub mod qcode;
pub mod scancode;
