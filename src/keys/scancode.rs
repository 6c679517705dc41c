//! PS/2 keyboard scan codes: the set 2 bytes a keyboard sends for a key
//! number (qnum, [`super::qcode`]), and the 8042 controller's translation
//! of set 2 into set 1 (IBM Personal System/2 Hardware Interface Technical
//! Reference, "Keyboard Scan-Code Set 2" and "Scan code translation").
//!
//! The i8042 device (`devices::i8042`) sends these bytes; the tables are
//! here, beside the other key tables, so every key table has one home.

/// Set 2 prefixes.
pub const PREFIX_E0: u8 = 0xe0;
pub const PREFIX_E1: u8 = 0xe1;
pub const PREFIX_BREAK: u8 = 0xf0;

/// Set 2 to set 1 translation done by the 8042 when command-byte bit 6 is
/// set (IBM technical reference, "Scan code translation"). Codes from 0x85
/// up pass through unchanged.
const SET2_TO_SET1: [u8; 0x85] = [
    0xff, 0x43, 0x41, 0x3f, 0x3d, 0x3b, 0x3c, 0x58, 0x64, 0x44, 0x42, 0x40, 0x3e, 0x0f, 0x29, 0x59,
    0x65, 0x38, 0x2a, 0x70, 0x1d, 0x10, 0x02, 0x5a, 0x66, 0x71, 0x2c, 0x1f, 0x1e, 0x11, 0x03, 0x5b,
    0x67, 0x2e, 0x2d, 0x20, 0x12, 0x05, 0x04, 0x5c, 0x68, 0x39, 0x2f, 0x21, 0x14, 0x13, 0x06, 0x5d,
    0x69, 0x31, 0x30, 0x23, 0x22, 0x15, 0x07, 0x5e, 0x6a, 0x72, 0x32, 0x24, 0x16, 0x08, 0x09, 0x5f,
    0x6b, 0x33, 0x25, 0x17, 0x18, 0x0b, 0x0a, 0x60, 0x6c, 0x34, 0x35, 0x26, 0x27, 0x19, 0x0c, 0x61,
    0x6d, 0x73, 0x28, 0x74, 0x1a, 0x0d, 0x62, 0x6e, 0x3a, 0x36, 0x1c, 0x1b, 0x75, 0x2b, 0x63, 0x76,
    0x55, 0x56, 0x77, 0x78, 0x79, 0x7a, 0x0e, 0x7b, 0x7c, 0x4f, 0x7d, 0x4b, 0x47, 0x7e, 0x7f, 0x6f,
    0x52, 0x53, 0x50, 0x4c, 0x4d, 0x48, 0x01, 0x45, 0x57, 0x4e, 0x51, 0x4a, 0x37, 0x49, 0x46, 0x54,
    0x80, 0x81, 0x82, 0x41, 0x54,
];

/// Set 1 code (low seven bits) to the set 2 code a real keyboard sends: the
/// inverse of [`SET2_TO_SET1`]. Where two set 2 codes translate alike, the
/// higher is the real key (0x83 = F7, 0x84 = Alt+SysRq).
const SET1_TO_SET2: [u8; 0x80] = {
    let mut inverse = [0u8; 0x80];
    let mut set2 = 1;
    while set2 < SET2_TO_SET1.len() {
        let set1 = SET2_TO_SET1[set2];
        if set1 < 0x80 {
            inverse[set1 as usize] = set2 as u8;
        }
        set2 += 1;
    }
    inverse
};

pub fn set2_to_set1(code: u8) -> u8 {
    SET2_TO_SET1.get(code as usize).copied().unwrap_or(code)
}

// ---- Key numbers (qnum) with special sequences -----------------------------

pub const QNUM_LEFT_CTRL: u16 = 0x1d;
pub const QNUM_RIGHT_CTRL: u16 = 0x9d;
pub const QNUM_LEFT_SHIFT: u16 = 0x2a;
pub const QNUM_RIGHT_SHIFT: u16 = 0x36;
pub const QNUM_LEFT_ALT: u16 = 0x38;
pub const QNUM_RIGHT_ALT: u16 = 0xb8;
/// Print Screen (E0 37 in set 1).
pub const QNUM_PRINT_SCREEN: u16 = 0xb7;
/// Pause (E0 46 in qnum; E1 1D 45 E1 9D C5 on the wire).
pub const QNUM_PAUSE: u16 = 0xc6;
/// Korean Hanja and Hangeul keys: one code each, no break code.
pub const QNUM_HANJA: u16 = 0xf1;
pub const QNUM_HANGEUL: u16 = 0xf2;

pub const MOD_CTRL: u8 = 0x01;
pub const MOD_SHIFT: u8 = 0x02;
pub const MOD_ALT: u8 = 0x04;

/// The set 2 bytes for one key event, or `None` for a key number that names
/// no key. `modifiers` are the MOD_* keys held, which change Print Screen
/// and Pause as a real keyboard does.
pub fn set2_sequence(qnum: u16, down: bool, modifiers: u8) -> Option<Vec<u8>> {
    let seq = match qnum {
        QNUM_PAUSE if !down => Vec::new(),
        // Ctrl+Pause is Break.
        QNUM_PAUSE if modifiers & MOD_CTRL != 0 => {
            vec![PREFIX_E0, 0x7e, PREFIX_E0, PREFIX_BREAK, 0x7e]
        }
        // Pause sends make and break at once, on press only.
        QNUM_PAUSE => vec![
            PREFIX_E1,
            0x14,
            0x77,
            PREFIX_E1,
            PREFIX_BREAK,
            0x14,
            PREFIX_BREAK,
            0x77,
        ],
        // Alt+Print Screen is SysRq, a plain key.
        QNUM_PRINT_SCREEN if modifiers & MOD_ALT != 0 => {
            if down {
                vec![0x84]
            } else {
                vec![PREFIX_BREAK, 0x84]
            }
        }
        QNUM_PRINT_SCREEN if modifiers & (MOD_CTRL | MOD_SHIFT) != 0 => {
            if down {
                vec![PREFIX_E0, 0x7c]
            } else {
                vec![PREFIX_E0, PREFIX_BREAK, 0x7c]
            }
        }
        // Alone, Print Screen pretends to be E0-Shift plus the key.
        QNUM_PRINT_SCREEN => {
            if down {
                vec![PREFIX_E0, 0x12, PREFIX_E0, 0x7c]
            } else {
                vec![PREFIX_E0, PREFIX_BREAK, 0x7c, PREFIX_E0, PREFIX_BREAK, 0x12]
            }
        }
        QNUM_HANJA | QNUM_HANGEUL if !down => Vec::new(),
        QNUM_HANJA | QNUM_HANGEUL => vec![qnum as u8],
        _ => {
            if qnum > 0xff {
                return None;
            }
            let code = SET1_TO_SET2[(qnum & 0x7f) as usize];
            if code == 0 {
                return None;
            }
            let mut seq = Vec::with_capacity(3);
            if qnum & 0x80 != 0 {
                seq.push(PREFIX_E0);
            }
            if !down {
                seq.push(PREFIX_BREAK);
            }
            seq.push(code);
            seq
        }
    };
    Some(seq)
}

/// Set 2 bytes rewritten as set 1, as the 8042's translator would: a break
/// prefix folds into bit 7 of the next code.
pub fn set2_to_set1_sequence(set2: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(set2.len());
    let mut breaking = false;
    for &byte in set2 {
        if byte == PREFIX_BREAK {
            breaking = true;
            continue;
        }
        let code = set2_to_set1(byte);
        out.push(if breaking { code | 0x80 } else { code });
        breaking = false;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_translates_back_to_its_qnum() {
        for qnum in 1..=0xffu16 {
            for down in [true, false] {
                let Some(set2) = set2_sequence(qnum, down, 0) else {
                    continue;
                };
                let set1 = set2_to_set1_sequence(&set2);
                let expected: Vec<u8> = match qnum {
                    QNUM_PAUSE => {
                        if down {
                            vec![0xe1, 0x1d, 0x45, 0xe1, 0x9d, 0xc5]
                        } else {
                            vec![]
                        }
                    }
                    QNUM_PRINT_SCREEN => {
                        if down {
                            vec![0xe0, 0x2a, 0xe0, 0x37]
                        } else {
                            vec![0xe0, 0xb7, 0xe0, 0xaa]
                        }
                    }
                    QNUM_HANJA | QNUM_HANGEUL => {
                        if down {
                            vec![qnum as u8]
                        } else {
                            vec![]
                        }
                    }
                    _ => {
                        let code = (qnum & 0x7f) as u8 | if down { 0 } else { 0x80 };
                        if qnum & 0x80 != 0 {
                            vec![0xe0, code]
                        } else {
                            vec![code]
                        }
                    }
                };
                assert_eq!(set1, expected, "qnum {qnum:#x} down={down}");
            }
        }
        // Only key number 0 (and 0x80) name no key.
        assert!(set2_sequence(0, true, 0).is_none());
        assert!(set2_sequence(0x100, true, 0).is_none());
    }
}
