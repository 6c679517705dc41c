//! The desktop path with Linux's own drivers (the test kernel's desktop
//! variant, tests/linux/desktop.fragment): bochs-drm sets a mode on the
//! std VGA card and fbcon draws the console there, which real VNC clients
//! (gvnccapture, a vncdotool session connected before the mode change) and
//! `vireo screenshot` show and tesseract reads; keys that `vncdo` sends
//! reach the shell on tty1 through the i8042 and atkbd, and so do keys
//! that xdotool types into Vireo's window under Xvfb; the pointer that
//! `vncdo move` sends reaches evdev through the UHCI and usbhid.
//!
//! One guest per test, each test one boot: the desktop kernel's drivers
//! cost emulated boot time (TESTING.md).

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::desktop::{artifacts, ocr, App, Display};
use common::linux::{self, Boot, LinuxGuest};
use common::vnc::{free_display, gvnccapture, vncdo_ok, VncSession};
use common::{kvm_available, require_program, Domain};

/// The mode the command line asks bochs-drm for (`video=`): not the
/// 1024x768 that direct boot sets for the kernel's `screen_info`, so the
/// driver's mode change shows; smaller, because fbcon's drawing is
/// emulated kernel code and costs boot time by the pixel (measured: 77 s
/// from bochs-drm's start to fbcon's takeover at 1280x1024, 52 s at
/// 800x600, on a loaded host).
const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;
/// How long the console may take to show a line: fbcon draws into a
/// shadow buffer that a worker copies to VRAM, all emulated kernel code.
const SCREEN_TIMEOUT: Duration = Duration::from_secs(180);

/// The desktop guest with the std VGA card, a VNC server on `display` and
/// the USB tablet, booting with `video=` [`WIDTH`]x[`HEIGHT`].
fn desktop_domain(linux: &linux::TestLinux, name: &str, display: u16) -> Domain {
    let mut domain =
        linux.domain_with_cmdline(name, Boot::BzImage, &format!("video={WIDTH}x{HEIGHT}"));
    domain.disks.push(format!(
        "<video><model type='vga'/></video>\
         <graphics type='vnc' port='{}' autoport='no' listen='127.0.0.1'/>\
         <controller type='usb' index='0' model='piix3-uhci'/>\
         <input type='tablet' bus='usb'/>",
        5900 + display
    ));
    domain
}

fn size_of(png: &Path) -> (u32, u32) {
    image::image_dimensions(png).unwrap_or_else(|e| panic!("{}: {e}", png.display()))
}

/// Takes pictures with `shoot` until tesseract reads `word` in one;
/// panics with the last reading otherwise.
fn wait_for_word(
    guest: &LinuxGuest,
    what: &str,
    word: &str,
    png: &Path,
    mut shoot: impl FnMut(&Path),
) {
    let start = Instant::now();
    loop {
        shoot(png);
        let text = ocr(png, "eng");
        if text.contains(word) {
            return;
        }
        if start.elapsed() > SCREEN_TIMEOUT {
            panic!(
                "{what}: tesseract did not read {word:?} within {SCREEN_TIMEOUT:?} \
                 (picture: {}); it read:\n{text}\n{}",
                png.display(),
                guest.report()
            );
        }
        std::thread::sleep(Duration::from_secs(2));
    }
}

/// One boot serves every check (the desktop kernel's boot is minutes on a
/// loaded host that emulates guest kernel code); each step's failure says
/// which step it is.
#[test]
fn the_linux_console_keyboard_and_tablet_through_vnc_clients() {
    if !kvm_available() {
        return;
    }
    let Some(linux) = linux::test_linux_desktop() else {
        return;
    };
    for program in [
        "gvnccapture",
        "tesseract",
        "convert",
        "vncdo",
        "Xvfb",
        "xdotool",
    ] {
        require_program(program);
    }
    // The pictures stay there, to explain a failure.
    let dir = artifacts("linux_desktop");
    let display = free_display();
    let domain = desktop_domain(&linux, "screen", display);
    // Paused, so that a client is there before the guest sets its mode.
    let mut guest = LinuxGuest::start_defined_paused(&domain);
    let mut session = VncSession::connect(display);
    let before = dir.join("session-before.png");
    session.capture(&before);
    let before_size = size_of(&before);
    // (direct boot's mode, which the kernel finds in screen_info)
    assert_eq!(before_size, (1024, 768), "before the guest ran");
    let name = domain.name.clone();
    guest.home().0.ok(&["resume", &name]);
    guest.wait_boot();

    let dmesg = guest.dmesg();
    assert!(
        dmesg.contains("fb0: bochs-drmdrmfb frame buffer device"),
        "bochs-drm did not set up its frame buffer:\n{dmesg}"
    );

    // A word on the console: tty0 is the foreground virtual terminal.
    guest.run("echo PELICANHOLLOW > /dev/tty0");
    let shot = dir.join("vireo-screenshot.png");
    wait_for_word(&guest, "vireo screenshot", "PELICANHOLLOW", &shot, |png| {
        guest
            .home()
            .0
            .ok(&["screenshot", &name, png.to_str().unwrap()]);
    });
    assert_eq!(size_of(&shot), (WIDTH, HEIGHT), "vireo screenshot");

    // The client connected before the mode change follows it (DesktopSize):
    // its picture has the new size, and the console. (Before gvnccapture,
    // which asks for the screen to itself, so the server drops the others.)
    let after = dir.join("session-after.png");
    wait_for_word(
        &guest,
        "the vncdotool session connected before the mode change",
        "PELICANHOLLOW",
        &after,
        |png| session.capture(png),
    );
    assert_eq!(
        size_of(&after),
        (WIDTH, HEIGHT),
        "the vncdotool session connected at {before_size:?}"
    );
    drop(session);

    let capture = dir.join("gvnccapture.png");
    wait_for_word(&guest, "gvnccapture", "PELICANHOLLOW", &capture, |png| {
        gvnccapture(display, png)
    });
    assert_eq!(size_of(&capture), (WIDTH, HEIGHT), "gvnccapture");

    keys_from_vncdo_reach_the_shell_on_tty1(&mut guest, display);
    keys_typed_in_the_window_reach_the_shell(&mut guest);
    tablet_moves_arrive_as_scaled_ev_abs(&mut guest, display);
    guest.check_dmesg();
}

/// Polls a shell command on the serial console until its output satisfies
/// `done`; panics with the last output otherwise.
fn poll_serial(guest: &mut LinuxGuest, what: &str, command: &str, done: impl Fn(&str) -> bool) {
    let start = Instant::now();
    loop {
        let (_, output) = guest.run_status(command);
        if done(&output) {
            return;
        }
        if start.elapsed() > linux::COMMAND_TIMEOUT {
            panic!(
                "{what}: `{command}` still printed {output:?} after {:?}\n{}",
                linux::COMMAND_TIMEOUT,
                guest.report()
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Keys that `vncdo` sends reach the shell on tty1 through the i8042 and
/// atkbd: a typed command runs, Shift gives capitals, Backspace erases, Up
/// recalls the last command, Ctrl+C interrupts a running `sleep`, and
/// F-keys, Tab, arrows and Delete give the console's sequences.
fn keys_from_vncdo_reach_the_shell_on_tty1(guest: &mut LinuxGuest, display: u16) {
    let devices = guest.run("cat /proc/bus/input/devices");
    assert!(
        // "AT Raw Set 2" here: direct boot runs no firmware to turn the
        // controller's translation on, so Linux leaves it off (SeaBIOS
        // turns it on: "AT Translated Set 2").
        devices.contains("AT Raw Set 2 keyboard")
            || devices.contains("AT Translated Set 2 keyboard"),
        "atkbd found no keyboard:\n{devices}"
    );

    // A command typed on tty1's shell writes to the serial console.
    let from = guest.serial().len();
    vncdo_ok(
        display,
        &["type", "echo typed-$((6*7)) >/dev/ttyS0", "key", "enter"],
    );
    guest.wait_for_from(from, "typed-42", linux::COMMAND_TIMEOUT);

    // Shift gives capitals (a held Shift, and a keysym that needs it),
    // Backspace erases, Up recalls the last command.
    let from = guest.serial().len();
    vncdo_ok(
        display,
        &[
            "type",
            "echo ",
            "key",
            "shift-c",
            "type",
            "aps-",
            "type",
            "Shift-okx",
            "key",
            "bsp",
            "type",
            " >/dev/ttyS0",
            "key",
            "enter",
        ],
    );
    let after = guest.wait_for_from(from, "Caps-Shift-ok\n", linux::COMMAND_TIMEOUT);
    vncdo_ok(display, &["key", "up", "key", "enter"]);
    guest.wait_for_from(after, "Caps-Shift-ok\n", linux::COMMAND_TIMEOUT);

    // Ctrl+C interrupts a running sleep; the shell takes commands again.
    vncdo_ok(display, &["type", "sleep 1000", "key", "enter"]);
    poll_serial(guest, "sleep typed on tty1", "pidof sleep", |out| {
        !out.trim().is_empty()
    });
    vncdo_ok(display, &["key", "ctrl-c"]);
    poll_serial(guest, "Ctrl+C on tty1", "pidof sleep", |out| {
        out.trim().is_empty()
    });
    let from = guest.serial().len();
    vncdo_ok(
        display,
        &["type", "echo after-ctrl-c >/dev/ttyS0", "key", "enter"],
    );
    guest.wait_for_from(from, "after-ctrl-c", linux::COMMAND_TIMEOUT);

    // The keys installers need beyond letters: F-keys, Tab, arrows and
    // Delete arrive as the Linux console's own sequences (F1 ESC [ [ A,
    // F12 ESC [ 2 4 ~, Left ESC [ D, Delete ESC [ 3 ~): 18 bytes with the
    // Enter, which dd reads from tty1 in canonical mode. The keys go only
    // once the shell has run the command line: before that, busybox's line
    // editor would read them itself, in raw mode.
    let from = guest.serial().len();
    vncdo_ok(
        display,
        &[
            "type",
            "echo keys-$((3+4)) >/dev/ttyS0; dd bs=1 count=18 2>/dev/null | od -An -c >/dev/ttyS0",
            "key",
            "enter",
        ],
    );
    let from = guest.wait_for_from(from, "keys-7", linux::COMMAND_TIMEOUT);
    vncdo_ok(
        display,
        &[
            "key", "f1", "key", "f12", "key", "tab", "key", "left", "key", "del", "key", "enter",
        ],
    );
    let end = guest.wait_for_from(from, "\\n", linux::COMMAND_TIMEOUT);
    let dump = guest.serial()[from..end]
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    assert!(
        dump.ends_with("033 [ [ A 033 [ 2 4 ~ \\t 033 [ D 033 [ 3 ~ \\n"),
        "od -c of F1, F12, Tab, Left, Delete, Enter on tty1: {dump:?}"
    );
}

/// The same through the window: under Xvfb, Vireo's window (started as a
/// user starts it, in the guest's home) shows the running VM's console; a
/// click there grabs the keyboard, and a command xdotool types runs in
/// tty1's shell.
fn keys_typed_in_the_window_reach_the_shell(guest: &mut LinuxGuest) {
    let (home, name) = guest.home();
    let (home, name) = (home.dir.path().to_path_buf(), name.to_string());
    let display = Display::start();
    let app = App::start(&display, &home, &[]);
    let dir = artifacts("linux_desktop_window");
    display.click_in_sidebar(&dir, &name, Duration::from_secs(60));
    // The console page shows the guest's screen once connected.
    display.wait_for_text(&dir, "PELICANHOLLOW", SCREEN_TIMEOUT);
    let (x, y) = display.content_point();
    display.click(x, y);
    let from = guest.serial().len();
    display.type_text("echo window-$((6*7)) >/dev/ttyS0");
    display.key("Return");
    guest.wait_for_from(from, "window-42", linux::COMMAND_TIMEOUT);
    drop(app);
}

/// The USB tablet: usbhid binds it, and `vncdo move X Y` arrives on its
/// evdev node as EV_ABS X and Y, the pixel scaled to the logical range
/// its HID report descriptor declares (first pixel 0, last the maximum).
fn tablet_moves_arrive_as_scaled_ev_abs(guest: &mut LinuxGuest, display: u16) {
    let devices = guest.run("cat /proc/bus/input/devices");
    let block = devices
        .split("\n\n")
        .find(|block| block.contains("Vireo USB Tablet"))
        .unwrap_or_else(|| panic!("usbhid found no tablet:\n{devices}"));
    let event = block
        // ("H: Handlers=event2 ")
        .split(|c: char| c.is_whitespace() || c == '=')
        .find(|word| word.starts_with("event"))
        .unwrap_or_else(|| panic!("the tablet has no evdev node:\n{block}"))
        .to_string();
    let descriptor = guest.run(&format!(
        "hexdump -v -e '1/1 \"%02x \"' /sys/class/input/{event}/device/device/report_descriptor"
    ));
    let descriptor: Vec<u8> = descriptor
        .split_whitespace()
        .map(|byte| u8::from_str_radix(byte, 16).unwrap())
        .collect();
    let (max_x, max_y) = absolute_maxima(&descriptor);

    let (x, y) = (300u32, 200u32);
    // Park the pointer elsewhere first: the input core drops an EV_ABS
    // that repeats the axis's current value, and a move that lands before
    // the reader below has the node open is not queued for it.
    vncdo_ok(
        display,
        &["move", &(x / 2).to_string(), &(y / 2).to_string()],
    );
    let reader = guest.run(&format!(
        "cat /dev/input/{event} >/tmp/events & echo PID=$!"
    ));
    let reader = reader
        .lines()
        .find_map(|line| line.trim().strip_prefix("PID="))
        .unwrap_or_else(|| panic!("no PID for the event reader:\n{reader}"))
        .to_string();
    // (the background job forks and opens the node at the guest's pace)
    poll_serial(
        guest,
        "the event reader opening the tablet's node",
        &format!("ls -l /proc/{reader}/fd"),
        |out| out.contains(&format!("/dev/input/{event}")),
    );
    vncdo_ok(display, &["move", &x.to_string(), &y.to_string()]);
    // The parked position may reach the reader too (usbhid polls at the
    // guest's pace), so wait for the last report to be the move's.
    let scaled = |pixel: u32, extent: u32, max: u32| (pixel * max / (extent - 1)) as i32;
    let expected = (
        Some(scaled(x, WIDTH, max_x)),
        Some(scaled(y, HEIGHT, max_y)),
    );
    poll_serial(
        guest,
        &format!(
            "vncdo move {x} {y} on a {WIDTH}x{HEIGHT} screen, logical maxima \
             {max_x} and {max_y}: expected EV_ABS X and Y {expected:?}"
        ),
        "hexdump -v -e '24/1 \"%02x\" \"\\n\"' /tmp/events",
        |dump| last_absolute_position(dump) == expected,
    );
    guest.run(&format!("kill {reader}"));
}

/// The last EV_ABS X and Y values in a hexdump of `struct input_event`s,
/// one 24-byte event per line (x86-64: timeval, type, code, value).
fn last_absolute_position(dump: &str) -> (Option<i32>, Option<i32>) {
    let mut seen = (None, None);
    for line in dump.lines().map(str::trim).filter(|line| line.len() == 48) {
        let Some(bytes) = (0..24)
            .map(|i| u8::from_str_radix(&line[2 * i..2 * i + 2], 16).ok())
            .collect::<Option<Vec<u8>>>()
        else {
            continue;
        };
        let kind = u16::from_le_bytes([bytes[16], bytes[17]]);
        let code = u16::from_le_bytes([bytes[18], bytes[19]]);
        let value = i32::from_le_bytes([bytes[20], bytes[21], bytes[22], bytes[23]]);
        match (kind, code) {
            (EV_ABS, ABS_X) => seen.0 = Some(value),
            (EV_ABS, ABS_Y) => seen.1 = Some(value),
            _ => {}
        }
    }
    seen
}

const EV_ABS: u16 = 3;
const ABS_X: u16 = 0;
const ABS_Y: u16 = 1;

/// The Logical Maximum in effect for the Generic Desktop X and Y usages
/// of a HID report descriptor (HID 1.11, 6.2.2: short items; usages are
/// local items, Logical Maximum a global one).
fn absolute_maxima(descriptor: &[u8]) -> (u32, u32) {
    const USAGE: u8 = 0x08;
    const LOGICAL_MAXIMUM: u8 = 0x24;
    const INPUT: u8 = 0x80;
    const USAGE_X: u32 = 0x30;
    const USAGE_Y: u32 = 0x31;
    let (mut logical_max, mut usages) = (0u32, Vec::new());
    let (mut max_x, mut max_y) = (None, None);
    let mut at = 0;
    while at < descriptor.len() {
        let prefix = descriptor[at];
        let size = [0, 1, 2, 4][usize::from(prefix & 3)];
        let data =
            &descriptor[(at + 1).min(descriptor.len())..(at + 1 + size).min(descriptor.len())];
        let value = data
            .iter()
            .rev()
            .fold(0u32, |v, byte| (v << 8) | u32::from(*byte));
        match prefix & 0xfc {
            USAGE => usages.push(value),
            LOGICAL_MAXIMUM => logical_max = value,
            INPUT => {
                if usages.contains(&USAGE_X) {
                    max_x = Some(logical_max);
                }
                if usages.contains(&USAGE_Y) {
                    max_y = Some(logical_max);
                }
                usages.clear();
            }
            // Other main items end the local items too.
            0x90 | 0xb0 | 0xa0 | 0xc0 => usages.clear(),
            _ => {}
        }
        at += 1 + size;
    }
    match (max_x, max_y) {
        (Some(x), Some(y)) => (x, y),
        _ => panic!("no X and Y usages in the report descriptor {descriptor:02x?}"),
    }
}
