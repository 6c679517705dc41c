//! Physical keys from the host (Linux evdev key codes, `KEY_*` in
//! `linux/input-event-codes.h`) to QEMU key numbers ("qnum", see
//! [`super::qcode`]).
//!
//! A window gets the key's hardware code with every key event (on X11 and
//! Wayland alike the X keycode, which is the evdev code plus 8), whatever
//! layout the host uses. Sending the guest the key rather than the symbol
//! (QEMU's extended key event) lets the guest's own layout decide what the
//! key means, so any host layout works. The names follow QEMU's keycodemapdb
//! (`data/keymaps.csv`, the "Linux" and "QEMU QKeyCode" columns); the
//! numbers come from [`super::qcode`], so the window, QMP's
//! `send-key` and the i8042 agree on every key.
//!
//! Not mapped: evdev keys that have no `QKeyCode` (Zenkaku/Hankaku,
//! Katakana, KP JP comma, macro and most multimedia keys).

use super::qcode;

/// Offset of X keycodes (and GDK hardware keycodes) over evdev codes.
pub const X_KEYCODE_OFFSET: u32 = 8;

/// evdev code → `QKeyCode` name, in evdev order.
const EVDEV_QCODES: &[(u16, &str)] = &[
    (1, "esc"),
    (2, "1"),
    (3, "2"),
    (4, "3"),
    (5, "4"),
    (6, "5"),
    (7, "6"),
    (8, "7"),
    (9, "8"),
    (10, "9"),
    (11, "0"),
    (12, "minus"),
    (13, "equal"),
    (14, "backspace"),
    (15, "tab"),
    (16, "q"),
    (17, "w"),
    (18, "e"),
    (19, "r"),
    (20, "t"),
    (21, "y"),
    (22, "u"),
    (23, "i"),
    (24, "o"),
    (25, "p"),
    (26, "bracket_left"),
    (27, "bracket_right"),
    (28, "ret"),
    (29, "ctrl"),
    (30, "a"),
    (31, "s"),
    (32, "d"),
    (33, "f"),
    (34, "g"),
    (35, "h"),
    (36, "j"),
    (37, "k"),
    (38, "l"),
    (39, "semicolon"),
    (40, "apostrophe"),
    (41, "grave_accent"),
    (42, "shift"),
    (43, "backslash"),
    (44, "z"),
    (45, "x"),
    (46, "c"),
    (47, "v"),
    (48, "b"),
    (49, "n"),
    (50, "m"),
    (51, "comma"),
    (52, "dot"),
    (53, "slash"),
    (54, "shift_r"),
    (55, "kp_multiply"),
    (56, "alt"),
    (57, "spc"),
    (58, "caps_lock"),
    (59, "f1"),
    (60, "f2"),
    (61, "f3"),
    (62, "f4"),
    (63, "f5"),
    (64, "f6"),
    (65, "f7"),
    (66, "f8"),
    (67, "f9"),
    (68, "f10"),
    (69, "num_lock"),
    (70, "scroll_lock"),
    (71, "kp_7"),
    (72, "kp_8"),
    (73, "kp_9"),
    (74, "kp_subtract"),
    (75, "kp_4"),
    (76, "kp_5"),
    (77, "kp_6"),
    (78, "kp_add"),
    (79, "kp_1"),
    (80, "kp_2"),
    (81, "kp_3"),
    (82, "kp_0"),
    (83, "kp_decimal"),
    (86, "less"), // KEY_102ND, the extra key left of Z on ISO keyboards
    (87, "f11"),
    (88, "f12"),
    (89, "ro"),
    (91, "hiragana"),
    (92, "henkan"),
    (93, "katakanahiragana"),
    (94, "muhenkan"),
    (96, "kp_enter"),
    (97, "ctrl_r"),
    (98, "kp_divide"),
    (99, "print"), // KEY_SYSRQ is the Print Screen key
    (100, "alt_r"),
    (101, "lf"),
    (102, "home"),
    (103, "up"),
    (104, "pgup"),
    (105, "left"),
    (106, "right"),
    (107, "end"),
    (108, "down"),
    (109, "pgdn"),
    (110, "insert"),
    (111, "delete"),
    (113, "audiomute"),
    (114, "volumedown"),
    (115, "volumeup"),
    (116, "power"),
    (117, "kp_equals"),
    (119, "pause"),
    (121, "kp_comma"),
    (122, "lang1"), // KEY_HANGEUL
    (123, "lang2"), // KEY_HANJA
    (124, "yen"),
    (125, "meta_l"),
    (126, "meta_r"),
    (127, "compose"), // the Menu (application) key
    (128, "stop"),
    (129, "again"),
    (130, "props"),
    (131, "undo"),
    (132, "front"),
    (133, "copy"),
    (134, "open"),
    (135, "paste"),
    (136, "find"),
    (137, "cut"),
    (138, "help"),
    (139, "menu"),
    (140, "calculator"),
    (142, "sleep"),
    (143, "wake"),
    (155, "mail"),
    (156, "ac_bookmarks"),
    (157, "computer"),
    (158, "ac_back"),
    (159, "ac_forward"),
    (163, "audionext"),
    (164, "audioplay"),
    (165, "audioprev"),
    (166, "audiostop"),
    (172, "ac_home"),
    (173, "ac_refresh"),
    (183, "f13"),
    (184, "f14"),
    (185, "f15"),
    (186, "f16"),
    (187, "f17"),
    (188, "f18"),
    (189, "f19"),
    (190, "f20"),
    (191, "f21"),
    (192, "f22"),
    (193, "f23"),
    (194, "f24"),
    (226, "mediaselect"), // KEY_MEDIA
];

/// The qnum of the key with Linux evdev code `code`, or `None` for a key
/// QEMU has no number for.
pub fn evdev_to_qnum(code: u32) -> Option<u16> {
    let code = u16::try_from(code).ok()?;
    let i = EVDEV_QCODES.binary_search_by_key(&code, |&(c, _)| c).ok()?;
    qcode::qnum(EVDEV_QCODES[i].1)
}

/// The qnum of the key with X (or GDK hardware) keycode `keycode`.
pub fn x_keycode_to_qnum(keycode: u32) -> Option<u16> {
    evdev_to_qnum(keycode.checked_sub(X_KEYCODE_OFFSET)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_every_name_is_a_qkeycode() {
        assert!(EVDEV_QCODES.windows(2).all(|w| w[0].0 < w[1].0));
        for (code, name) in EVDEV_QCODES {
            assert!(qcode::qnum(name).is_some(), "evdev {code}: {name}");
        }
    }

    #[test]
    fn the_main_block_is_set_1_itself() {
        // evdev numbered the PC keys by their set-1 make code: for the
        // block from Esc to KP . the two are the same number.
        for code in 1..=83u32 {
            assert_eq!(evdev_to_qnum(code), Some(code as u16), "evdev {code}");
        }
    }

    #[test]
    fn extended_keys_get_the_e0_bit() {
        assert_eq!(evdev_to_qnum(97), Some(0x9d)); // Right Ctrl: E0 1D
        assert_eq!(evdev_to_qnum(100), Some(0xb8)); // AltGr: E0 38
        assert_eq!(evdev_to_qnum(111), Some(0xd3)); // Delete: E0 53
        assert_eq!(evdev_to_qnum(103), Some(0xc8)); // Up: E0 48
        assert_eq!(evdev_to_qnum(96), Some(0x9c)); // KP Enter: E0 1C
        assert_eq!(evdev_to_qnum(125), Some(0xdb)); // Left Super: E0 5B
        assert_eq!(evdev_to_qnum(99), Some(0xb7)); // Print: E0 37
        assert_eq!(evdev_to_qnum(86), Some(0x56)); // ISO <> key
    }

    #[test]
    fn x_keycodes_are_evdev_plus_8() {
        assert_eq!(x_keycode_to_qnum(38), Some(0x1e)); // 'a' on any layout's A key
        assert_eq!(x_keycode_to_qnum(9), Some(0x01)); // Escape
        assert_eq!(x_keycode_to_qnum(3), None);
        assert_eq!(x_keycode_to_qnum(8), None); // evdev 0 is KEY_RESERVED
        assert_eq!(x_keycode_to_qnum(84 + 8), None);
        assert_eq!(evdev_to_qnum(u32::MAX), None);
    }
}
