//! QEMU key names (`QKeyCode`, from QEMU's `qapi/ui.json`) and the key
//! numbers ("qnum") they stand for, as QMP's `send-key` names keys.
//!
//! A qnum is the key's PC scan code set 1 make code, with 0x80 set for keys
//! whose code is prefixed with 0xE0: Left Ctrl is 0x1D, Right Ctrl (E0 1D) is
//! 0x9D, Delete (E0 53) is 0xD3. That is what
//! the i8042 keyboard (`devices::i8042`) takes, and
//! what VNC's QEMU extended key event carries.
//!
//! The numbers come from QEMU's key map database (keycodemapdb
//! `data/keymaps.csv`, the "AT set1 keycode" column of each `QEMU QKeyCode`
//! row, folded into a qnum the way its `keymap-gen` does), with three keys
//! given the number our i8042 needs to send what QEMU's PS/2 keyboard sends:
//!
//! - `print` and `sysrq` (a synonym QEMU keeps for `print`) are 0xB7, the
//!   Print Screen key (E0 37), which QEMU also accepts for Print; QEMU's own
//!   preferred number 0x54 is the bare SysRq code, which the i8042 sends as
//!   is, while QEMU's keyboard turns `print` into E0 2A E0 37.
//! - `lang1` (Hangeul) and `lang2` (Hanja) are 0xF2 and 0xF1, their one-byte
//!   codes, where keymaps.csv keeps the historical 0x72 and 0x71.
//!
//! `unmapped` is a `QKeyCode` but names no key.

/// Every `QKeyCode` but `unmapped`, in the order of QEMU's enum, with its
/// qnum.
pub const QKEYCODES: &[(&str, u16)] = &[
    ("shift", 0x2a),
    ("shift_r", 0x36),
    ("alt", 0x38),
    ("alt_r", 0xb8),
    ("ctrl", 0x1d),
    ("ctrl_r", 0x9d),
    ("menu", 0x9e),
    ("esc", 0x01),
    ("1", 0x02),
    ("2", 0x03),
    ("3", 0x04),
    ("4", 0x05),
    ("5", 0x06),
    ("6", 0x07),
    ("7", 0x08),
    ("8", 0x09),
    ("9", 0x0a),
    ("0", 0x0b),
    ("minus", 0x0c),
    ("equal", 0x0d),
    ("backspace", 0x0e),
    ("tab", 0x0f),
    ("q", 0x10),
    ("w", 0x11),
    ("e", 0x12),
    ("r", 0x13),
    ("t", 0x14),
    ("y", 0x15),
    ("u", 0x16),
    ("i", 0x17),
    ("o", 0x18),
    ("p", 0x19),
    ("bracket_left", 0x1a),
    ("bracket_right", 0x1b),
    ("ret", 0x1c),
    ("a", 0x1e),
    ("s", 0x1f),
    ("d", 0x20),
    ("f", 0x21),
    ("g", 0x22),
    ("h", 0x23),
    ("j", 0x24),
    ("k", 0x25),
    ("l", 0x26),
    ("semicolon", 0x27),
    ("apostrophe", 0x28),
    ("grave_accent", 0x29),
    ("backslash", 0x2b),
    ("z", 0x2c),
    ("x", 0x2d),
    ("c", 0x2e),
    ("v", 0x2f),
    ("b", 0x30),
    ("n", 0x31),
    ("m", 0x32),
    ("comma", 0x33),
    ("dot", 0x34),
    ("slash", 0x35),
    ("asterisk", 0x37),
    ("spc", 0x39),
    ("caps_lock", 0x3a),
    ("f1", 0x3b),
    ("f2", 0x3c),
    ("f3", 0x3d),
    ("f4", 0x3e),
    ("f5", 0x3f),
    ("f6", 0x40),
    ("f7", 0x41),
    ("f8", 0x42),
    ("f9", 0x43),
    ("f10", 0x44),
    ("num_lock", 0x45),
    ("scroll_lock", 0x46),
    ("kp_divide", 0xb5),
    ("kp_multiply", 0x37),
    ("kp_subtract", 0x4a),
    ("kp_add", 0x4e),
    ("kp_enter", 0x9c),
    ("kp_decimal", 0x53),
    ("sysrq", 0xb7),
    ("kp_0", 0x52),
    ("kp_1", 0x4f),
    ("kp_2", 0x50),
    ("kp_3", 0x51),
    ("kp_4", 0x4b),
    ("kp_5", 0x4c),
    ("kp_6", 0x4d),
    ("kp_7", 0x47),
    ("kp_8", 0x48),
    ("kp_9", 0x49),
    ("less", 0x56),
    ("f11", 0x57),
    ("f12", 0x58),
    ("print", 0xb7),
    ("home", 0xc7),
    ("pgup", 0xc9),
    ("pgdn", 0xd1),
    ("end", 0xcf),
    ("left", 0xcb),
    ("up", 0xc8),
    ("down", 0xd0),
    ("right", 0xcd),
    ("insert", 0xd2),
    ("delete", 0xd3),
    ("stop", 0xe8),
    ("again", 0x85),
    ("props", 0x86),
    ("undo", 0x87),
    ("front", 0x8c),
    ("copy", 0xf8),
    ("open", 0x64),
    ("paste", 0x65),
    ("find", 0xc1),
    ("cut", 0xbc),
    ("lf", 0x5b),
    ("help", 0xf5),
    ("meta_l", 0xdb),
    ("meta_r", 0xdc),
    ("compose", 0xdd),
    ("pause", 0xc6),
    ("ro", 0x73),
    ("hiragana", 0x77),
    ("henkan", 0x79),
    ("yen", 0x7d),
    ("muhenkan", 0x7b),
    ("katakanahiragana", 0x70),
    ("kp_comma", 0x7e),
    ("kp_equals", 0x59),
    ("power", 0xde),
    ("sleep", 0xdf),
    ("wake", 0xe3),
    ("audionext", 0x99),
    ("audioprev", 0x90),
    ("audiostop", 0xa4),
    ("audioplay", 0xa2),
    ("audiomute", 0xa0),
    ("volumeup", 0xb0),
    ("volumedown", 0xae),
    ("mediaselect", 0xed),
    ("mail", 0xec),
    ("calculator", 0xa1),
    ("computer", 0xeb),
    ("ac_home", 0xb2),
    ("ac_back", 0xea),
    ("ac_forward", 0xe9),
    ("ac_refresh", 0xe7),
    ("ac_bookmarks", 0xe6),
    ("lang1", 0xf2),
    ("lang2", 0xf1),
    ("f13", 0x5d),
    ("f14", 0x5e),
    ("f15", 0x5f),
    ("f16", 0x55),
    ("f17", 0x83),
    ("f18", 0xf7),
    ("f19", 0x84),
    ("f20", 0x5a),
    ("f21", 0x74),
    ("f22", 0xf9),
    ("f23", 0x6d),
    ("f24", 0x6f),
];

/// The `QKeyCode` that names no key.
pub const UNMAPPED: &str = "unmapped";

/// The qnum of the key QEMU calls `qcode` (`"ctrl"` → 0x1D), or `None` for a
/// name QEMU does not know and for `unmapped`.
pub fn qnum(qcode: &str) -> Option<u16> {
    QKEYCODES
        .iter()
        .find(|(name, _)| *name == qcode)
        .map(|&(_, qnum)| qnum)
}

/// The `QKeyCode` of a key number (the first name where two share one, so
/// 0x37 is `asterisk` and 0xB7 is `sysrq`), or `None` for a number that names
/// no key.
pub fn qcode(qnum: u16) -> Option<&'static str> {
    QKEYCODES
        .iter()
        .find(|&&(_, number)| number == qnum)
        .map(|&(name, _)| name)
}

/// Whether `name` is a value of QEMU's `QKeyCode` enum (`unmapped` is).
pub fn is_qkeycode(name: &str) -> bool {
    name == UNMAPPED || qnum(name).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `QKeyCode` enum's members as QEMU's `qapi/ui.json` lists them
    /// (QEMU 8.0 onwards, when f13-f24 were added).
    const UI_JSON_QKEYCODE: &str = "
        'unmapped',
        'shift', 'shift_r', 'alt', 'alt_r', 'ctrl',
        'ctrl_r', 'menu', 'esc', '1', '2', '3', '4', '5', '6', '7', '8',
        '9', '0', 'minus', 'equal', 'backspace', 'tab', 'q', 'w', 'e',
        'r', 't', 'y', 'u', 'i', 'o', 'p', 'bracket_left', 'bracket_right',
        'ret', 'a', 's', 'd', 'f', 'g', 'h', 'j', 'k', 'l', 'semicolon',
        'apostrophe', 'grave_accent', 'backslash', 'z', 'x', 'c', 'v', 'b',
        'n', 'm', 'comma', 'dot', 'slash', 'asterisk', 'spc', 'caps_lock',
        'f1', 'f2', 'f3', 'f4', 'f5', 'f6', 'f7', 'f8', 'f9', 'f10',
        'num_lock', 'scroll_lock', 'kp_divide', 'kp_multiply',
        'kp_subtract', 'kp_add', 'kp_enter', 'kp_decimal', 'sysrq', 'kp_0',
        'kp_1', 'kp_2', 'kp_3', 'kp_4', 'kp_5', 'kp_6', 'kp_7', 'kp_8',
        'kp_9', 'less', 'f11', 'f12', 'print', 'home', 'pgup', 'pgdn', 'end',
        'left', 'up', 'down', 'right', 'insert', 'delete', 'stop', 'again',
        'props', 'undo', 'front', 'copy', 'open', 'paste', 'find', 'cut',
        'lf', 'help', 'meta_l', 'meta_r', 'compose', 'pause',
        'ro', 'hiragana', 'henkan', 'yen', 'muhenkan', 'katakanahiragana',
        'kp_comma', 'kp_equals', 'power', 'sleep', 'wake',
        'audionext', 'audioprev', 'audiostop', 'audioplay', 'audiomute',
        'volumeup', 'volumedown', 'mediaselect',
        'mail', 'calculator', 'computer',
        'ac_home', 'ac_back', 'ac_forward', 'ac_refresh', 'ac_bookmarks',
        'lang1', 'lang2','f13','f14','f15','f16','f17','f18','f19','f20',
        'f21','f22','f23','f24'";

    #[test]
    fn names_are_qemus_qkeycode_enum_in_order() {
        let ui_json: Vec<&str> = UI_JSON_QKEYCODE
            .split(',')
            .map(|s| s.trim().trim_matches('\''))
            .collect();
        let ours: Vec<&str> = std::iter::once(UNMAPPED)
            .chain(QKEYCODES.iter().map(|&(name, _)| name))
            .collect();
        assert_eq!(ours, ui_json);
        assert!(ui_json.iter().all(|name| is_qkeycode(name)));
        assert!(!is_qkeycode("control"));
    }

    #[test]
    fn key_numbers_are_pc_set1_codes() {
        // Single-byte codes, E0-prefixed codes with bit 7, from keymaps.csv.
        let cases = [
            ("esc", 0x01),
            ("a", 0x1e),
            ("ret", 0x1c),
            ("ctrl", 0x1d),
            ("ctrl_r", 0x9d),
            ("alt", 0x38),
            ("alt_r", 0xb8),
            ("shift", 0x2a),
            ("shift_r", 0x36),
            ("delete", 0xd3),
            ("insert", 0xd2),
            ("f1", 0x3b),
            ("f10", 0x44),
            ("f11", 0x57),
            ("f12", 0x58),
            ("kp_add", 0x4e),
            ("kp_enter", 0x9c),
            ("kp_divide", 0xb5),
            ("meta_l", 0xdb),
            ("menu", 0x9e),
            ("compose", 0xdd),
            ("up", 0xc8),
            ("less", 0x56),
            ("pause", 0xc6),
            ("print", 0xb7),
            ("sysrq", 0xb7),
            ("lang1", 0xf2),
            ("lang2", 0xf1),
            ("f24", 0x6f),
        ];
        for (name, number) in cases {
            assert_eq!(qnum(name), Some(number), "{name}");
        }
        assert_eq!(qnum(UNMAPPED), None);
        assert_eq!(qnum("CTRL"), None, "names are case-sensitive, as in QEMU");
        assert_eq!(qnum(""), None);
    }

    #[test]
    fn numbers_name_one_key_except_qemus_synonyms() {
        for &(name, number) in QKEYCODES {
            assert!(number > 0 && number <= 0xff, "{name}");
            let first = qcode(number).unwrap();
            let synonyms = [("asterisk", "kp_multiply"), ("sysrq", "print")];
            assert!(
                first == name || synonyms.contains(&(first, name)),
                "{name} shares {number:#x} with {first}"
            );
        }
        assert_eq!(qcode(0x1d), Some("ctrl"));
        assert_eq!(qcode(0), None);
        assert_eq!(qcode(0x100), None);
    }
}
