//! The Details and XML tabs, end to end under Xvfb: a shut-off VM defined
//! with the CLI, changed in the window with the keyboard and mouse, and
//! checked with the real `vireo` verbs (`domblklist`, `dumpxml`,
//! `dominfo`) and what tesseract reads off the screen.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::desktop::{artifacts, App, Display};
use common::{kvm_available, Home};

/// A name tesseract reads reliably in the sidebar.
const VM: &str = "garden";

/// Defines `VM` (shut off) with one disk, an empty CD-ROM drive and 128 MiB.
fn define_vm(home: &Home) {
    let root = home.path("root.qcow2");
    qemu_img_create(&root, "64M");
    let xml = format!(
        "<domain type='kvm'><name>{VM}</name><memory unit='KiB'>131072</memory>\
         <vcpu placement='static'>1</vcpu>\
         <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os><devices>\
         <disk type='file' device='disk'><driver name='qemu' type='qcow2'/>\
         <source file='{}'/><target dev='vda' bus='virtio'/></disk>\
         <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>\
         <target dev='hdc' bus='ide'/><readonly/></disk>\
         <serial type='pty'><target port='0'/></serial>\
         <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>\
         <video><model type='vga'/></video></devices></domain>",
        root.display()
    );
    let file = home.path("garden.xml");
    std::fs::write(&file, xml).unwrap();
    home.ok(&["define", file.to_str().unwrap()]);
}

fn qemu_img_create(path: &Path, size: &str) {
    common::require_program("qemu-img");
    let status = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2"])
        .arg(path)
        .arg(size)
        .status()
        .unwrap();
    assert!(status.success(), "qemu-img create failed");
}

/// Scrolls the page under the pointer down until the screen shows
/// `word`; where it is, or None after forty looks and scrolls (the page
/// may still be reloading on a loaded host).
fn scroll_to(display: &Display, dir: &Path, word: &str) -> Option<(u32, u32)> {
    let (x, y) = display.content_point();
    display.xdotool(&["mousemove", &x.to_string(), &y.to_string()]);
    // Bounded by steps, not time: each look is two or three tesseract
    // runs, seconds apiece on a loaded machine, and the page must still
    // be scrolled to its end.
    for _ in 0..40 {
        if let Some(at) = display.locate(dir, word) {
            return Some(at);
        }
        display.xdotool(&["click", "5", "click", "5"]);
        std::thread::sleep(Duration::from_millis(300));
    }
    None
}

/// The window's top left corner on the screen.
fn window_origin(display: &Display) -> (u32, u32) {
    let (x, y, _, _) = display.main_window_geometry();
    (x, y)
}

/// Starts the window on `VM` and opens the tab called `tab`.
fn open_tab(display: &Display, home: &Home, dir: &Path, tab: &str) -> App {
    let app = App::start(display, home.dir.path(), &[]);
    // The VM's row, the first in the sidebar (tesseract misreads the name
    // beside a running VM's thumbnail), once the list shows it.
    display.click_any(
        dir,
        &[VM, "Shut", "Running", "Vireo"],
        Duration::from_secs(60),
    );
    let (x, y) = window_origin(display);
    display.click(x + 60, y + 85);
    display.click_text(dir, tab, Duration::from_secs(60));
    app
}

#[test]
fn add_hardware_attaches_an_existing_qcow2_image() {
    let home = Home::new();
    define_vm(&home);
    let image = home.path("extra.qcow2");
    qemu_img_create(&image, "32M");
    let display = Display::start();
    let dir = artifacts("gui-details-add-disk");
    let _app = open_tab(&display, &home, &dir, "Details");
    display.wait_for_text(&dir, "Overview", Duration::from_secs(60));

    // Add Hardware…, a missing file first: refused in the dialog.
    display.key("alt+h");
    display.wait_for_text(&dir, "existing image", Duration::from_secs(60));
    display.key("ctrl+l");
    let missing = home.path("missing.qcow2");
    display.type_text(missing.to_str().unwrap());
    display.key("alt+f");
    display.wait_for_text(&dir, "does not exist", Duration::from_secs(60));
    let list = home.ok(&["domblklist", VM]);
    assert!(!list.contains("vdb"), "{list}");

    // Then the real image; Finish adds it and saves.
    display.key("ctrl+l");
    display.key("ctrl+a");
    display.type_text(image.to_str().unwrap());
    display.key("alt+f");
    let list = home.wait_until(&["domblklist", VM], Duration::from_secs(60), |t| {
        t.contains("vdb")
    });
    let row = list
        .lines()
        .find(|l| l.contains("vdb"))
        .unwrap_or_default()
        .to_string();
    assert!(row.contains(image.to_str().unwrap()), "{list}");
    let xml = home.ok(&["dumpxml", VM]);
    assert!(xml.contains("<target dev='vdb' bus='virtio'/>"), "{xml}");
    assert!(xml.contains("type='qcow2'"), "{xml}");
    // The page shows the new disk, further down.
    assert!(
        scroll_to(&display, &dir, "vdb").is_some(),
        "the Details page never showed disk vdb"
    );
}

#[test]
fn the_xml_tab_changes_the_memory() {
    let home = Home::new();
    define_vm(&home);
    let display = Display::start();
    let dir = artifacts("gui-details-xml-memory");
    let _app = open_tab(&display, &home, &dir, "XML");
    display.wait_for_text(&dir, "memory", Duration::from_secs(60));

    // The editor shows what dumpxml prints: go to the <memory> line as a
    // person would, with the arrow keys, and change the number.
    let before = home.ok(&["dumpxml", VM]);
    let line = before
        .lines()
        .position(|l| l.contains("<memory unit='KiB'>131072</memory>"))
        .expect("the definition has a memory line");
    let (x, y) = display.content_point();
    display.click(x, y);
    display.key("ctrl+Home");
    for _ in 0..line {
        display.xdotool(&["key", "Down"]);
    }
    display.key("End");
    for _ in 0.."</memory>".len() {
        display.xdotool(&["key", "Left"]);
    }
    for _ in 0.."131072".len() {
        display.xdotool(&["key", "BackSpace"]);
    }
    display.type_text("262144");
    display.key("alt+p");

    let info = home.wait_until(&["dominfo", VM], Duration::from_secs(60), |t| {
        t.contains("262144 KiB")
    });
    assert!(info.contains("Max memory:     262144 KiB"), "{info}");
    let xml = home.ok(&["dumpxml", VM]);
    assert!(xml.contains("<memory unit='KiB'>262144</memory>"), "{xml}");
}

#[test]
fn the_xml_tab_refuses_invalid_xml_and_says_why() {
    let home = Home::new();
    define_vm(&home);
    let before = home.ok(&["dumpxml", VM]);
    let display = Display::start();
    let dir = artifacts("gui-details-xml-invalid");
    let _app = open_tab(&display, &home, &dir, "XML");
    display.wait_for_text(&dir, "memory", Duration::from_secs(60));

    // Delete the closing </domain> and apply.
    let (x, y) = display.content_point();
    display.click(x, y);
    display.key("ctrl+End");
    display.key("shift+Home");
    display.key("Delete");
    display.key("alt+p");
    let seen = display.wait_for_text(&dir, "malformed", Duration::from_secs(60));
    assert!(seen.contains("not saved"), "{seen}");
    // Nothing was written: the previous definition stands.
    assert_eq!(home.ok(&["dumpxml", VM]), before);
    home.ok(&["dominfo", VM]);
}

#[test]
fn a_running_vm_keeps_running_and_its_rows_say_when_changes_apply() {
    if !kvm_available() {
        return;
    }
    let home = Home::new();
    define_vm(&home);
    let iso = home.path("medium.iso");
    std::fs::write(&iso, vec![0u8; 2048]).unwrap();
    home.ok(&[
        "change-media",
        VM,
        "hdc",
        "--insert",
        iso.to_str().unwrap(),
        "--config",
    ]);
    home.ok(&["start", VM]);
    home.wait_until(&["domstate", VM], Duration::from_secs(120), |t| {
        t.contains("running")
    });
    let display = Display::start();
    let dir = artifacts("gui-details-running");
    let _app = open_tab(&display, &home, &dir, "Details");
    display.wait_for_text(&dir, "after it shuts down", Duration::from_secs(60));

    // Eject the CD-ROM while the VM runs: the VMM takes the disc out now,
    // and the definition follows.
    let eject = scroll_to(&display, &dir, "Eject");
    let (ex, ey) = eject.expect("the CD-ROM group has an Eject button");
    display.click(ex, ey);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let list = home.ok(&["domblklist", VM]);
        let hdc = list.lines().find(|l| l.contains("hdc")).unwrap_or_default();
        if hdc.contains('-') && !hdc.contains("medium.iso") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "Eject did not empty hdc in the definition:\n{list}\n{}",
            display.read_screen(&dir, "eng")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    // The running drive is empty too, as the VM itself reports it.
    let socket = home.vm_files(VM).control();
    let mut client = vireo::control::ControlClient::connect(&socket).unwrap();
    let blocks = client
        .execute("query-block", serde_json::Value::Null)
        .unwrap();
    let hdc = blocks
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["device"] == "hdc")
        .unwrap_or_else(|| panic!("no hdc in {blocks}"));
    assert!(hdc.get("inserted").is_none(), "hdc still has a disc: {hdc}");
    assert_eq!(home.ok(&["domstate", VM]).trim(), "running");
    home.ok(&["destroy", VM]);
}

/// `qemu-io -c 'read -P BYTE 0 64k'` of `image` succeeds: its first 64 KiB
/// hold BYTE.
fn starts_with(image: &Path, byte: u8) -> bool {
    common::require_program("qemu-io");
    let output = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", &format!("read -P {byte} 0 64k")])
        .arg(image)
        .output()
        .unwrap();
    output.status.success()
        && !String::from_utf8_lossy(&output.stdout).contains("Pattern verification failed")
}

fn fill_start(image: &Path, byte: u8) {
    let status = Command::new("qemu-io")
        .args(["-f", "qcow2", "-c", &format!("write -P {byte} 0 64k")])
        .arg(image)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "qemu-io write failed");
}

#[test]
fn the_snapshots_tab_takes_lists_and_reverts_a_snapshot() {
    let home = Home::new();
    define_vm(&home);
    let root = home.path("root.qcow2");
    fill_start(&root, 0x11);
    let display = Display::start();
    let dir = artifacts("gui-snapshots");
    let _app = open_tab(&display, &home, &dir, "Snapshots");
    display.wait_for_text(&dir, "No snapshots yet", Duration::from_secs(60));

    // Create Snapshot…: a name and a description, typed into its dialog.
    display.key("alt+c");
    display.wait_for_text(&dir, "Snapshot of", Duration::from_secs(60));
    display.type_text("pristine");
    display.key("Tab");
    display.type_text("before the upgrade");
    display.key("Return");
    home.wait_until(
        &["snapshot-list", VM, "--name"],
        Duration::from_secs(60),
        |names| names.contains("pristine"),
    );
    let info = home.ok(&["snapshot-dumpxml", VM, "pristine"]);
    assert!(
        info.contains("<description>before the upgrade</description>"),
        "{info}"
    );
    let listed = Command::new("qemu-img")
        .args(["snapshot", "-l"])
        .arg(&root)
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains("pristine"),
        "qemu-img snapshot -l: {listed:?}"
    );
    // The row: its name, and its description beside the date and state.
    display.wait_for_text(&dir, "pristine", Duration::from_secs(60));
    display.wait_for_text(&dir, "upgrade", Duration::from_secs(60));

    // The disk changes; Revert, confirmed, brings its bytes back.
    fill_start(&root, 0x22);
    assert!(starts_with(&root, 0x22));
    display.click_text(&dir, "Revert", Duration::from_secs(60));
    display.wait_for_text(&dir, "Changes made since", Duration::from_secs(60));
    display.key("Return");
    let start = Instant::now();
    while !starts_with(&root, 0x11) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "the disk was not reverted; the screen:\n{}",
            display.read_screen(&dir, "eng")
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let check = Command::new("qemu-img")
        .arg("check")
        .arg(&root)
        .output()
        .unwrap();
    assert!(check.status.success(), "qemu-img check: {check:?}");
    assert_eq!(home.ok(&["snapshot-current", VM, "--name"]), "pristine\n");
}
