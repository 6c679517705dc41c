//! X keysyms (what RFB KeyEvent carries, RFC 6143 §7.5.4) to QEMU key
//! numbers ("qnum": the PC scan code set 1 make code, 0x80 added for
//! E0-prefixed keys) on a US keyboard.
//!
//! A keysym names a symbol, not a key, so the mapping needs a layout: a
//! shifted symbol ('!', 'A') maps to the key that produces it, and the
//! client sends Shift itself. Clients that know the physical key use
//! QEMU's Extended Key Event instead, which carries the qnum and needs no
//! table; that is the way to non-US layouts.

/// Whether a US keyboard needs Shift held to type `keysym` (capitals and
/// the symbols above the digits and punctuation keys).
pub fn needs_shift(keysym: u32) -> bool {
    match keysym {
        0x41..=0x5a => true,
        0x20..=0x7e => "~!@#$%^&*()_+{}|:\"<>?".contains(keysym as u8 as char),
        _ => false,
    }
}

/// The key for `keysym`, or `None` for symbols a US keyboard lacks.
pub fn to_qnum(keysym: u32) -> Option<u16> {
    let qnum = match keysym {
        0x20..=0x7e => ascii(keysym as u8)?,
        0xff08 => 0x0e,                                     // BackSpace
        0xff09 | 0xfe20 => 0x0f,                            // Tab, ISO_Left_Tab (Shift+Tab)
        0xff0d => 0x1c,                                     // Return
        0xff13 => 0xc6,                                     // Pause (QEMU's own number for it)
        0xff14 => 0x46,                                     // Scroll_Lock
        0xff15 => 0x54,                                     // Sys_Req
        0xff1b => 0x01,                                     // Escape
        0xff50 => 0xc7,                                     // Home
        0xff51 => 0xcb,                                     // Left
        0xff52 => 0xc8,                                     // Up
        0xff53 => 0xcd,                                     // Right
        0xff54 => 0xd0,                                     // Down
        0xff55 => 0xc9,                                     // Prior (Page Up)
        0xff56 => 0xd1,                                     // Next (Page Down)
        0xff57 => 0xcf,                                     // End
        0xff61 => 0xb7,                                     // Print
        0xff63 => 0xd2,                                     // Insert
        0xff67 => 0xdd,                                     // Menu
        0xff7f => 0x45,                                     // Num_Lock
        0xff8d => 0x9c,                                     // KP_Enter
        0xff95 => 0x47,                                     // KP_Home
        0xff96 => 0x4b,                                     // KP_Left
        0xff97 => 0x48,                                     // KP_Up
        0xff98 => 0x4d,                                     // KP_Right
        0xff99 => 0x50,                                     // KP_Down
        0xff9a => 0x49,                                     // KP_Prior
        0xff9b => 0x51,                                     // KP_Next
        0xff9c => 0x4f,                                     // KP_End
        0xff9d => 0x4c,                                     // KP_Begin
        0xff9e => 0x52,                                     // KP_Insert
        0xff9f => 0x53,                                     // KP_Delete
        0xffaa => 0x37,                                     // KP_Multiply
        0xffab => 0x4e,                                     // KP_Add
        0xffac | 0xffae => 0x53,                            // KP_Separator, KP_Decimal
        0xffad => 0x4a,                                     // KP_Subtract
        0xffaf => 0xb5,                                     // KP_Divide
        0xffb0 => 0x52,                                     // KP_0
        0xffb1..=0xffb3 => 0x4f + (keysym - 0xffb1) as u16, // KP_1..3
        0xffb4..=0xffb6 => 0x4b + (keysym - 0xffb4) as u16, // KP_4..6
        0xffb7..=0xffb9 => 0x47 + (keysym - 0xffb7) as u16, // KP_7..9
        0xffbe..=0xffc7 => 0x3b + (keysym - 0xffbe) as u16, // F1..F10
        0xffc8 => 0x57,                                     // F11
        0xffc9 => 0x58,                                     // F12
        0xffe1 => 0x2a,                                     // Shift_L
        0xffe2 => 0x36,                                     // Shift_R
        0xffe3 => 0x1d,                                     // Control_L
        0xffe4 => 0x9d,                                     // Control_R
        0xffe5 => 0x3a,                                     // Caps_Lock
        0xffe7 | 0xffe9 => 0x38,                            // Meta_L, Alt_L
        0xffe8 | 0xffea | 0xfe03 => 0xb8, // Meta_R, Alt_R, ISO_Level3_Shift (AltGr)
        0xffeb => 0xdb,                   // Super_L
        0xffec => 0xdc,                   // Super_R
        0xffff => 0xd3,                   // Delete
        _ => return None,
    };
    Some(qnum)
}

/// Printable ASCII: the key of a US keyboard that types it.
fn ascii(c: u8) -> Option<u16> {
    const ROW_Q: &[u8] = b"qwertyuiop";
    const ROW_A: &[u8] = b"asdfghjkl";
    const ROW_Z: &[u8] = b"zxcvbnm";
    let c = c.to_ascii_lowercase();
    let position =
        |row: &[u8], base: u16| row.iter().position(|&k| k == c).map(|i| base + i as u16);
    let qnum = match c {
        b'1'..=b'9' => 0x02 + u16::from(c - b'1'),
        b'0' => 0x0b,
        b'a'..=b'z' => position(ROW_Q, 0x10)
            .or_else(|| position(ROW_A, 0x1e))
            .or_else(|| position(ROW_Z, 0x2c))?,
        b'!' => 0x02,
        b'@' => 0x03,
        b'#' => 0x04,
        b'$' => 0x05,
        b'%' => 0x06,
        b'^' => 0x07,
        b'&' => 0x08,
        b'*' => 0x09,
        b'(' => 0x0a,
        b')' => 0x0b,
        b'-' | b'_' => 0x0c,
        b'=' | b'+' => 0x0d,
        b'[' | b'{' => 0x1a,
        b']' | b'}' => 0x1b,
        b';' | b':' => 0x27,
        b'\'' | b'"' => 0x28,
        b'`' | b'~' => 0x29,
        b'\\' | b'|' => 0x2b,
        b',' | b'<' => 0x33,
        b'.' | b'>' => 0x34,
        b'/' | b'?' => 0x35,
        b' ' => 0x39,
        _ => return None,
    };
    Some(qnum)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn letters_digits_and_punctuation() {
        assert_eq!(to_qnum(u32::from(b'a')), Some(0x1e));
        assert_eq!(to_qnum(u32::from(b'A')), Some(0x1e));
        assert_eq!(to_qnum(u32::from(b'q')), Some(0x10));
        assert_eq!(to_qnum(u32::from(b'p')), Some(0x19));
        assert_eq!(to_qnum(u32::from(b'l')), Some(0x26));
        assert_eq!(to_qnum(u32::from(b'm')), Some(0x32));
        assert_eq!(to_qnum(u32::from(b'1')), Some(0x02));
        assert_eq!(to_qnum(u32::from(b'0')), Some(0x0b));
        assert_eq!(to_qnum(u32::from(b'!')), Some(0x02));
        assert_eq!(to_qnum(u32::from(b'?')), Some(0x35));
        assert_eq!(to_qnum(u32::from(b' ')), Some(0x39));
    }

    #[test]
    fn function_navigation_and_modifier_keys() {
        assert_eq!(to_qnum(0xff0d), Some(0x1c)); // Return
        assert_eq!(to_qnum(0xffbe), Some(0x3b)); // F1
        assert_eq!(to_qnum(0xffc7), Some(0x44)); // F10
        assert_eq!(to_qnum(0xffc9), Some(0x58)); // F12
        assert_eq!(to_qnum(0xff52), Some(0xc8)); // Up: E0 48
        assert_eq!(to_qnum(0xffe4), Some(0x9d)); // Control_R: E0 1D
        assert_eq!(to_qnum(0xffff), Some(0xd3)); // Delete: E0 53
        assert_eq!(to_qnum(0xffb7), Some(0x47)); // KP_7
        assert_eq!(to_qnum(0xffb3), Some(0x51)); // KP_3
        assert_eq!(to_qnum(0xffb5), Some(0x4c)); // KP_5
    }

    #[test]
    fn symbols_without_a_us_key_are_none() {
        assert_eq!(to_qnum(0xe9), None); // eacute
        assert_eq!(to_qnum(0x20ac), None); // EuroSign
        assert_eq!(to_qnum(0), None);
    }
}
