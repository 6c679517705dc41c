//! End to end under Xvfb: Connection Details' Host page, opened from the
//! main menu with the keyboard, shows what `hostname`, /proc/cpuinfo and
//! /dev/kvm say; and what the user sets (a preference, the window's size,
//! the selected VM) is still there when the app is started again.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::desktop::{artifacts, App, Display};
use common::{kvm_available, wait, Domain, Home};

/// Reads the screen until `check` accepts it; panics with the last
/// reading (and keeps the screenshot) after `timeout`.
fn wait_until(
    display: &Display,
    dir: &std::path::Path,
    what: &str,
    timeout: Duration,
    check: impl Fn(&str) -> bool,
) -> String {
    wait::poll(timeout, Duration::from_millis(500), || {
        let seen = display.read_screen(dir, "eng");
        if check(&seen) {
            Ok(seen)
        } else {
            Err(seen)
        }
    })
    .unwrap_or_else(|seen| {
        let _ = std::fs::copy(dir.join("screen.png"), dir.join("last-screen.png"));
        panic!("the screen never showed {what}; it read:\n{seen}");
    })
}

/// Whether a line that starts with `title` also shows `value` after it.
fn row_shows(seen: &str, title: &str, value: &str) -> bool {
    seen.lines().any(|line| {
        line.find(title).is_some_and(|at| {
            line[at + title.len()..]
                .split_whitespace()
                .any(|w| w == value)
        })
    })
}

/// Opens the main menu (F10) and picks the item with mnemonic `key`
/// until the screen shows `expect`: under load the menu can open after
/// the key meant for it, so a missed attempt is closed and made again.
fn from_main_menu(display: &Display, dir: &std::path::Path, key: &str, expect: &str) -> String {
    for _ in 0..4 {
        display.key("F10");
        std::thread::sleep(Duration::from_secs(1));
        display.key(key);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            let seen = display.read_screen(dir, "eng");
            if seen.contains(expect) {
                return seen;
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        display.key("Escape");
    }
    display.wait_for_text(dir, expect, Duration::from_secs(1))
}

fn open_host_details(display: &Display, dir: &std::path::Path) {
    // The "_Host Details" item.
    from_main_menu(display, dir, "h", "Hostname");
}

#[test]
fn host_details_show_the_hostname_cpus_and_kvm() {
    let hostname = Command::new("hostname").output().unwrap();
    let hostname = String::from_utf8_lossy(&hostname.stdout).trim().to_string();
    assert!(!hostname.is_empty());
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap();
    let cpus = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
        .to_string();
    let home = Home::new();
    let display = Display::start();
    let _app = App::start(&display, home.dir.path(), &[]);
    let dir = artifacts("gui-host");
    open_host_details(&display, &dir);
    let seen = wait_until(
        &display,
        &dir,
        "the host's name",
        Duration::from_secs(30),
        |s| row_shows(s, "Hostname", &hostname),
    );
    assert!(
        row_shows(&seen, "Logical CPUs", &cpus),
        "{cpus} CPUs?\n{seen}"
    );
    assert!(seen.contains("KVM"), "{seen}");
    if kvm_available() {
        assert!(seen.contains("API version 12"), "{seen}");
    }
}

#[test]
fn without_kvm_the_host_page_says_what_to_fix() {
    let home = Home::new();
    let display = Display::start();
    let _app = App::start_without_kvm(&display, &home);
    let dir = artifacts("gui-host-no-kvm");
    // The main window's status page says it too; the host page is on top.
    open_host_details(&display, &dir);
    let seen = display.wait_for_text(&dir, "Not available", Duration::from_secs(30));
    assert!(seen.contains("Hostname"), "{seen}");
    assert!(seen.contains("firmware"), "{seen}");
}

/// The main window's X id.
fn geometry(display: &Display) -> (u32, u32) {
    let (_, _, width, height) = display.main_window_geometry();
    (width, height)
}

/// Quits with Ctrl+Q (closing the Preferences window first, if open) and
/// waits until the window is gone, as a user would before starting again.
fn quit(display: &Display) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !display.main_window().is_empty() {
        assert!(Instant::now() < deadline, "the window did not close");
        display.key("ctrl+q");
    }
    std::thread::sleep(Duration::from_millis(500));
}

/// Changes the VNC listen address in Preferences, resizes the window and
/// selects a VM; quits; starts again in the same home with `env`; and
/// finds all three as they were left.
fn settings_survive_a_restart(name: &str, env: &[(&str, &str)]) {
    let home = Home::new();
    let xml = home.path("wren.xml");
    std::fs::write(&xml, Domain::new("wren").xml()).unwrap();
    home.ok(&["define", xml.to_str().unwrap()]);
    let display = Display::start();
    let dir = artifacts(name);

    let app = App::start(&display, home.dir.path(), env);
    display.wait_for_text(&dir, "Select a Virtual Machine", Duration::from_secs(20));
    // Select the VM: click its row, the first in the sidebar.
    let id = display.main_window();
    let (x, y, _, _) = display.main_window_geometry();
    display.click(x + 130, y + 100);
    // The VM's page: its console, shut off. (Not the tab names: with four
    // tabs a narrow header shows only their icons.)
    const VM_PAGE: &str = "Start it to see its screen";
    display.wait_for_text(&dir, VM_PAGE, Duration::from_secs(20));
    // Preferences (main menu → "_Preferences"): the third focus stop is
    // the VNC listen address.
    from_main_menu(&display, &dir, "p", "VNC listen address");
    for _ in 0..3 {
        display.key("Tab");
    }
    display.key("ctrl+a");
    display.type_text("0.0.0.0");
    display.wait_for_text(&dir, "0.0.0.0", Duration::from_secs(10));
    display.key("Escape");
    display.xdotool(&["windowsize", "--sync", &id, "900", "640"]);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(geometry(&display), (900, 640));
    quit(&display);
    drop(app);

    let _app = App::start(&display, home.dir.path(), env);
    // The VM is selected again: its page shows.
    let seen = display.wait_for_text(&dir, VM_PAGE, Duration::from_secs(20));
    assert!(!seen.contains("Select a Virtual Machine"), "{seen}");
    let (width, height) = geometry(&display);
    assert!(
        width.abs_diff(900) <= 2 && height.abs_diff(640) <= 2,
        "the window came back at {width}×{height}"
    );
    let seen = from_main_menu(&display, &dir, "p", "VNC listen address");
    assert!(seen.contains("0.0.0.0"), "{seen}");
}

#[test]
fn settings_survive_a_restart_in_the_homes_own_settings() {
    settings_survive_a_restart("gui-host-settings", &[]);
}

#[test]
fn settings_survive_a_restart_with_glibs_keyfile_backend() {
    let config = tempfile::tempdir().unwrap();
    settings_survive_a_restart(
        "gui-host-settings-keyfile",
        &[
            ("GSETTINGS_BACKEND", "keyfile"),
            ("XDG_CONFIG_HOME", config.path().to_str().unwrap()),
        ],
    );
    // GLib's keyfile backend kept them under XDG_CONFIG_HOME.
    let keyfile = config.path().join("glib-2.0/settings/keyfile");
    let text = std::fs::read_to_string(&keyfile).unwrap();
    assert!(text.contains("vnc-listen='0.0.0.0'"), "{text}");
}

/// The Keyboard Shortcuts window comes from the resource bundle
/// (resources/shortcuts.ui) and names the release keys the preferences
/// chose.
#[test]
fn the_keyboard_shortcuts_window_comes_from_the_bundle() {
    let home = Home::new();
    let display = Display::start();
    let _app = App::start(&display, home.dir.path(), &[]);
    let dir = artifacts("gui-host-shortcuts");
    display.wait_for_text(&dir, "No Virtual Machines", Duration::from_secs(20));
    // Main menu → "_Keyboard Shortcuts".
    let seen = from_main_menu(&display, &dir, "k", "Release the keyboard from the console");
    assert!(seen.contains("Take screenshot"), "{seen}");
}
