//! The window, end to end, under Xvfb: started as a user starts it, in a
//! fresh `VIREO_HOME`, driven with the keyboard and mouse through
//! xdotool, and checked by what the screen shows (tesseract) and what the
//! VMs do (serial output, `vireo` verbs).

mod common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use common::desktop::{artifacts, App, Display};
use common::{kvm_available, wait, Home};

/// Waits until `vireo domstate NAME` prints `state`.
fn wait_state(home: &Home, name: &str, state: &str, timeout: Duration) {
    wait::until(
        &format!("{name} to be {state:?}"),
        timeout,
        Duration::from_millis(250),
        || {
            let out = home.run(&["domstate", name]);
            let now = String::from_utf8_lossy(&out.stdout).trim().to_string();
            if now == state {
                Ok(())
            } else {
                Err(format!("{name} stayed {now:?}"))
            }
        },
    )
}

/// Waits until VM `name`'s serial console has printed `text`; returns it all.
fn wait_serial(home: &Home, name: &str, text: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let socket = home.vm_files(name).serial();
    loop {
        if let Ok(mut stream) = UnixStream::connect(&socket) {
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut seen = Vec::new();
            let mut buf = [0u8; 4096];
            while Instant::now() < deadline {
                match stream.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => seen.extend_from_slice(&buf[..n]),
                    Err(_) => {}
                }
                let text_so_far = String::from_utf8_lossy(&seen).into_owned();
                if text_so_far.contains(text) {
                    return text_so_far;
                }
            }
            panic!(
                "{name}'s serial console never printed {text:?}; it printed:\n{}",
                String::from_utf8_lossy(&seen)
            );
        }
        assert!(Instant::now() < deadline, "{name} has no serial console");
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// Types `command` on VM `name`'s serial console and waits for `expect`
/// in what follows; returns that.
fn serial_command(home: &Home, name: &str, command: &str, expect: &str) -> String {
    let mut stream = UnixStream::connect(home.vm_files(name).serial())
        .unwrap_or_else(|e| panic!("{name}'s serial console: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    stream.write_all(format!("{command}\n").as_bytes()).unwrap();
    let deadline = Instant::now() + common::linux::COMMAND_TIMEOUT;
    let (mut seen, mut buf) = (Vec::new(), [0u8; 4096]);
    loop {
        if let Ok(n) = stream.read(&mut buf) {
            seen.extend_from_slice(&buf[..n]);
        }
        let text = String::from_utf8_lossy(&seen).into_owned();
        // (past the echo of the command line itself)
        if text.matches(expect).count() > usize::from(command.contains(expect)) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not answer {command:?} with {expect:?}; it printed:\n{text}"
        );
    }
}

#[test]
fn an_empty_store_offers_a_new_vm_and_the_demo() {
    let home = Home::new();
    let display = Display::start();
    let _app = App::start(&display, home.dir.path(), &[]);
    let dir = artifacts("gui-empty");
    let seen = display.wait_for_text(&dir, "No Virtual Machines", Duration::from_secs(20));
    // ("New VM" is white on blue, which tesseract does not read; the
    // wizard test opens it.)
    assert!(seen.contains("Try the Demo VM"), "{seen}");
    assert!(seen.contains("installer ISO"), "{seen}");

    // Defined, renamed and undefined from the command line while the window is
    // open: the list follows within seconds, without a restart.
    let xml = home.path("garden.xml");
    std::fs::write(
        &xml,
        "<domain type='kvm'><name>garden</name><memory unit='MiB'>128</memory>\
         <vcpu>1</vcpu><os><type arch='x86_64' machine='pc'>hvm</type></os></domain>",
    )
    .unwrap();
    home.ok(&["define", xml.to_str().unwrap()]);
    display.wait_for_text(&dir, "garden", Duration::from_secs(30));
    home.ok(&["domrename", "garden", "meadow"]);
    display.wait_for_text(&dir, "meadow", Duration::from_secs(30));
    home.ok(&["undefine", "meadow"]);
    display.wait_for_text(&dir, "No Virtual Machines", Duration::from_secs(30));
}

#[test]
fn without_kvm_the_window_says_what_to_fix() {
    let home = Home::new();
    let display = Display::start();
    let _app = App::start_without_kvm(&display, &home);
    let dir = artifacts("gui-no-kvm");
    let seen = display.wait_for_text(&dir, "Cannot Run Here", Duration::from_secs(20));
    assert!(seen.contains("firmware"), "{seen}");
    assert!(seen.contains("--device=kvm"), "{seen}");
}

#[test]
fn the_demo_vm_echoes_what_is_typed_into_its_console_and_force_off_stops_it() {
    if !kvm_available() {
        return;
    }
    let home = Home::new();
    let display = Display::start();
    let _app = App::start(&display, home.dir.path(), &[]);
    let dir = artifacts("gui-demo");
    display.wait_for_text(&dir, "Demo VM", Duration::from_secs(20));
    // "Try the _Demo VM" on the empty page.
    display.key("alt+d");
    wait_state(&home, "Demo", "running", Duration::from_secs(180));
    wait_serial(&home, "Demo", "type something", Duration::from_secs(120));

    // Click into the console and type: the guest echoes in capitals.
    let (x, y) = display.content_point();
    display.click(x, y);
    display.type_text("wren");
    wait_serial(&home, "Demo", "WREN", Duration::from_secs(60));

    // Force Off, confirmed in its dialog.
    display.key("ctrl+shift+f");
    std::thread::sleep(Duration::from_secs(1));
    display.key("Return");
    wait_state(&home, "Demo", "shut off", Duration::from_secs(30));
    display.wait_for_text(&dir, "Shut off", Duration::from_secs(20));
}

/// The user's story: pick an installer ISO, click through the wizard, and
/// the VM boots it through SeaBIOS and GRUB to Linux's shell; the window's
/// console shows GRUB's screen.
#[test]
fn the_wizard_creates_a_vm_from_a_linux_iso_that_boots_through_grub_to_the_shell() {
    if !kvm_available() {
        return;
    }
    let Some(linux) = common::linux::test_linux() else {
        return;
    };
    let home = Home::new();
    let iso = linux.grub_iso(home.dir.path());
    let display = Display::start();
    let _app = App::start(&display, home.dir.path(), &[]);
    let dir = artifacts("gui-wizard");
    display.wait_for_text(&dir, "No Virtual Machines", Duration::from_secs(20));

    display.key("ctrl+n");
    display.wait_for_text(&dir, "Local install media", Duration::from_secs(20));
    // Step 1: local install media is preselected.
    display.key("alt+f");
    // Step 2: the ISO.
    display.type_text(iso.to_str().unwrap());
    display.key("alt+f");
    // Step 3: memory and CPUs as proposed.
    display.wait_for_text(&dir, "Memory and CPUs", Duration::from_secs(20));
    display.key("ctrl+a");
    display.type_text("256");
    display.key("Tab");
    display.key("alt+f");
    // Step 4: a new 1 GiB disk.
    display.wait_for_text(&dir, "Storage", Duration::from_secs(20));
    display.key("ctrl+a");
    display.type_text("1");
    display.key("Tab");
    display.key("alt+f");
    // Step 5: the name, then Finish.
    display.wait_for_text(&dir, "Ready to create", Duration::from_secs(20));
    display.key("ctrl+a");
    display.type_text("grubby");
    display.key("alt+f");

    // Creating the disk and starting the VM, on a host that may be busy.
    wait_state(&home, "grubby", "running", Duration::from_secs(180));
    let disk = home.path("data/images/grubby.qcow2");
    assert!(
        disk.is_file(),
        "the wizard made no disk at {}",
        disk.display()
    );
    // -U: the running VM holds the image's lock, as QEMU's would.
    let info = std::process::Command::new("qemu-img")
        .args(["info", "-U", "--output=json"])
        .arg(&disk)
        .output()
        .unwrap();
    let info = String::from_utf8_lossy(&info.stdout);
    assert!(info.contains("\"virtual-size\": 1073741824"), "{info}");
    assert!(info.contains("\"format\": \"qcow2\""), "{info}");

    // GRUB ran its menu entry, on the VGA screen as on serial, and Linux
    // (whose test kernel has no VGA console) reached busybox's shell,
    // which answers a command.
    display.wait_for_text(&dir, "loading the test kernel", Duration::from_secs(240));
    wait_serial(
        &home,
        "grubby",
        common::linux::PROMPT,
        common::linux::BOOT_TIMEOUT,
    );
    let answer = serial_command(&home, "grubby", "echo wizard-$((6*7))", "wizard-42");
    assert!(answer.contains("wizard-42"), "{answer}");
    let xml = home.ok(&["dumpxml", "grubby"]);
    assert!(xml.contains("<memory unit='KiB'>262144</memory>"), "{xml}");
    assert!(Path::new(&disk).exists());
    home.ok(&["destroy", "grubby"]);
}
