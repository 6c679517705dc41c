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

/// Where tesseract reads `word` (case-insensitive, part of a word) on the
/// screen, in screen pixels: the test's way to find a tab or a button the
/// way a person finds it by looking.
fn locate(display: &Display, dir: &Path, word: &str) -> Option<(u32, u32)> {
    let shot = dir.join("locate.png");
    display.screenshot(&shot);
    let wanted = word.to_lowercase();
    for negate in [false, true] {
        let scaled = dir.join(if negate {
            "locate-neg.png"
        } else {
            "locate-x2.png"
        });
        let mut convert = Command::new("convert");
        convert
            .arg(&shot)
            .args(["-resize", "200%", "-colorspace", "Gray"]);
        if negate {
            convert.args(["-threshold", "55%", "-negate"]);
        }
        let _ = convert.arg(&scaled).status();
        let out = Command::new("tesseract")
            .arg(&scaled)
            .args(["-", "-l", "eng", "tsv"])
            .stderr(std::process::Stdio::null())
            .output()
            .unwrap();
        let tsv = String::from_utf8_lossy(&out.stdout);
        for line in tsv.lines().skip(1) {
            let f: Vec<&str> = line.split('\t').collect();
            if f.len() < 12 || !f[11].to_lowercase().contains(&wanted) {
                continue;
            }
            let num = |i: usize| f[i].parse::<u32>().unwrap_or(0);
            // Halve: tesseract read the picture at twice the size.
            return Some(((num(6) + num(8) / 2) / 2, (num(7) + num(9) / 2) / 2));
        }
    }
    None
}

/// Clicks on `word` once the screen shows it.
fn click_text(display: &Display, dir: &Path, word: &str, timeout: Duration) {
    click_any(display, dir, &[word], timeout);
}

/// Clicks on the first of `words` the screen shows.
fn click_any(display: &Display, dir: &Path, words: &[&str], timeout: Duration) {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some((x, y)) = words.iter().find_map(|w| locate(display, dir, w)) {
            display.click(x, y);
            return;
        }
        if Instant::now() > deadline {
            let _ = std::fs::copy(dir.join("locate.png"), dir.join("last-screen.png"));
            panic!("never found {words:?} on the screen to click");
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Polls `vireo ARGS` until its output contains `text`; returns it.
fn wait_cli(home: &Home, args: &[&str], text: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    loop {
        let out = home.run(args);
        let seen = String::from_utf8_lossy(&out.stdout).into_owned();
        if seen.contains(text) {
            return seen;
        }
        assert!(
            Instant::now() < deadline,
            "`vireo {args:?}` never printed {text:?}; it printed:\n{seen}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
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
    click_any(
        display,
        dir,
        &[VM, "Shut", "Running", "Vireo"],
        Duration::from_secs(60),
    );
    let (x, y) = window_origin(display);
    display.click(x + 60, y + 85);
    click_text(display, dir, tab, Duration::from_secs(60));
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
    let list = wait_cli(&home, &["domblklist", VM], "vdb", Duration::from_secs(60));
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
    let (x, y) = display.content_point();
    display.xdotool(&["mousemove", &x.to_string(), &y.to_string()]);
    let mut seen = false;
    for _ in 0..20 {
        if locate(&display, &dir, "vdb").is_some() {
            seen = true;
            break;
        }
        display.xdotool(&["click", "5", "click", "5"]);
        std::thread::sleep(Duration::from_millis(300));
    }
    assert!(seen, "the Details page never showed disk vdb");
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

    let info = wait_cli(
        &home,
        &["dominfo", VM],
        "262144 KiB",
        Duration::from_secs(60),
    );
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
    wait_cli(
        &home,
        &["domstate", VM],
        "running",
        Duration::from_secs(120),
    );
    let display = Display::start();
    let dir = artifacts("gui-details-running");
    let _app = open_tab(&display, &home, &dir, "Details");
    display.wait_for_text(&dir, "after it shuts down", Duration::from_secs(60));

    // Eject the CD-ROM while the VM runs: the VMM takes the disc out now,
    // and the definition follows.
    let (x, y) = display.content_point();
    display.xdotool(&["mousemove", &x.to_string(), &y.to_string()]);
    let mut eject = None;
    for _ in 0..20 {
        eject = locate(&display, &dir, "Eject");
        if eject.is_some() {
            break;
        }
        display.xdotool(&["click", "5", "click", "5"]);
        std::thread::sleep(Duration::from_millis(300));
    }
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
    let socket = home.path("run").join(format!("{VM}.ctl"));
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
