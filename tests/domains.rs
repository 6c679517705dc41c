//! virsh's domain verbs with `vireo` in its place, as USER-STORIES.md's
//! sessions run them: define, list, start (own process), console, kill,
//! destroy, undefine — and the errors that must change nothing.

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::kvm_available;

/// A `vireo` session with the helpers these tests share.
struct Session {
    home: common::Home,
}

impl std::ops::Deref for Session {
    type Target = common::Home;
    fn deref(&self) -> &common::Home {
        &self.home
    }
}

impl Session {
    fn new() -> Self {
        Self {
            home: common::Home::new(),
        }
    }

    /// A raw disk whose boot sector is the demo guest (it echoes serial input).
    fn demo_disk(&self, name: &str) -> std::path::PathBuf {
        let path = self.path(name);
        let out = Command::new(env!("CARGO_BIN_EXE_vireo"))
            .args(["demo", "--serial", "null"])
            .env("VIREO_HOME", self.home.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        // `vireo demo` writes the disk first, then runs; take the disk and stop it.
        let mut child = out.unwrap();
        let demo = self.home.dir.path().join("data/images/demo.img");
        let start = Instant::now();
        while !demo.is_file() {
            assert!(start.elapsed() < Duration::from_secs(10));
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        std::fs::copy(&demo, &path).unwrap();
        path
    }

    fn domain_xml(&self, name: &str, disk: &Path) -> String {
        format!(
            "<domain type='kvm'>\n  <name>{name}</name>\n  <memory unit='MiB'>32</memory>\n  <vcpu>1</vcpu>\n  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/></os>\n  <devices>\n    <disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='hda' bus='ide'/></disk>\n  </devices>\n</domain>\n",
            disk.display()
        )
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Leave no VM process behind, whatever the test did.
        for name in ["c1", "c2"] {
            let _ = self.run(&["destroy", name]);
        }
    }
}

fn attach_console(session: &Session, name: &str, typed: &[u8], expect: &str) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_vireo"))
        .args(["console", name])
        .env("VIREO_HOME", session.home.dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 1024];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let text = || String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
    let start = Instant::now();
    while !text().contains("comes back in capitals") {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no greeting: {:?}",
            text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(typed).unwrap();
    stdin.flush().unwrap();
    while !text().contains(expect) {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no {expect:?}: {:?}",
            text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    stdin.write_all(&[0x1d]).unwrap(); // Ctrl+] leaves
    stdin.flush().unwrap();
    assert!(child.wait().unwrap().success());
    text()
}

#[test]
fn define_clone_by_xml_start_console_destroy_undefine() {
    if !kvm_available() {
        return;
    }
    let s = Session::new();
    let disk1 = s.demo_disk("c1.img");
    let disk2 = s.demo_disk("c2.img");
    std::fs::write(s.path("c1.xml"), s.domain_xml("c1", &disk1)).unwrap();
    assert_eq!(
        s.ok(&["define", s.path("c1.xml").to_str().unwrap()]),
        format!("Domain 'c1' defined from {}\n", s.path("c1.xml").display())
    );

    // Clone by copying the definition: dumpxml, change name, uuid and disk, define.
    let dumped = s.ok(&["dumpxml", "c1"]);
    assert!(dumped.contains("<uuid>"), "define added a UUID:\n{dumped}");
    let uuid1 = s.ok(&["domuuid", "c1"]).trim().to_string();
    let c2 = dumped
        .replace("<name>c1</name>", "<name>c2</name>")
        .replace(&uuid1, "6229e3ad-efa7-e426-49eb-9ddf9060fde5")
        .replace(disk1.to_str().unwrap(), disk2.to_str().unwrap());
    std::fs::write(s.path("c2.xml"), c2).unwrap();
    s.ok(&["define", s.path("c2.xml").to_str().unwrap()]);

    assert_eq!(
        s.ok(&["list", "--all"]),
        " Id   Name   State\n-----------------------\n -    c1     shut off\n -    c2     shut off\n\n"
    );
    assert_eq!(
        s.ok(&["list"]),
        " Id   Name   State\n--------------------\n\n",
        "nothing runs yet"
    );

    assert_eq!(s.ok(&["start", "c1"]), "Domain 'c1' started\n");
    let list = s.ok(&["list", "--all"]);
    let id = list
        .lines()
        .nth(2)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(id.parse::<u32>().is_ok(), "{list}");
    assert_eq!(list, format!(" Id   Name   State\n-----------------------\n {id}    c1     running\n -    c2     shut off\n\n"));
    assert_eq!(s.ok(&["domstate", "c1"]).trim(), "running");
    assert_eq!(s.ok(&["domid", "c1"]).trim(), id);
    assert!(s.ok(&["dominfo", &id]).contains("State:          running"));
    assert!(s.fails(&["start", "c1"]).contains("already active"));
    assert!(s.fails(&["undefine", "c1"]).contains("destroy"));

    // The VM outlives the command that started it; its console echoes.
    let seen = attach_console(&s, "c1", b"hello\r", "HELLO\r\n");
    assert!(
        seen.starts_with("Connected to domain 'c1'\nEscape character is ^] (Ctrl + ])\n"),
        "{seen}"
    );

    assert_eq!(s.ok(&["destroy", &id]), "Domain 'c1' destroyed\n");
    assert_eq!(s.ok(&["domstate", "c1"]).trim(), "shut off");
    assert_eq!(
        s.ok(&["undefine", "c2"]),
        "Domain 'c2' has been undefined\n"
    );
    assert_eq!(s.ok(&["list", "--all", "--name"]), "c1\n\n");
}

#[test]
fn a_killed_vm_process_leaves_no_stale_state() {
    if !kvm_available() {
        return;
    }
    let s = Session::new();
    let disk = s.demo_disk("c1.img");
    std::fs::write(s.path("c1.xml"), s.domain_xml("c1", &disk)).unwrap();
    s.ok(&["define", s.path("c1.xml").to_str().unwrap()]);
    s.ok(&["start", "c1"]);
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(s.vm_files("c1").state()).unwrap()).unwrap();
    let pid = state["pid"].as_u64().unwrap() as i32;
    // SAFETY: killing the VM process this test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let start = Instant::now();
    while Path::new(&format!("/proc/{pid}")).exists() && start.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(s.ok(&["domstate", "c1"]).trim(), "shut off");
    assert!(
        !s.vm_files("c1").state().exists() && !s.vm_files("c1").serial().exists(),
        "cleaned on the next look"
    );
    assert!(
        s.ok(&["dumpxml", "c1"]).contains("<name>c1</name>"),
        "the definition is intact"
    );
    // And it starts again: the disk lock died with the process.
    s.ok(&["start", "c1"]);
}

#[test]
fn errors_are_clear_and_change_nothing() {
    let s = Session::new();
    let disk = s.path("missing.img");
    std::fs::write(s.path("c1.xml"), s.domain_xml("c1", &disk)).unwrap();
    s.ok(&["define", s.path("c1.xml").to_str().unwrap()]);
    let stored = std::fs::read(s.path("config/domains/c1.xml")).unwrap();

    std::fs::write(s.path("bad.xml"), "<domain><name>c1</name><memory").unwrap();
    assert!(s
        .fails(&["define", s.path("bad.xml").to_str().unwrap()])
        .contains("malformed"));
    let other_uuid = s.domain_xml("c1", &disk).replace(
        "<name>c1</name>",
        "<name>c1</name><uuid>6229e3ad-efa7-e426-49eb-9ddf9060fde5</uuid>",
    );
    std::fs::write(s.path("dup.xml"), other_uuid).unwrap();
    assert!(s
        .fails(&["define", s.path("dup.xml").to_str().unwrap()])
        .contains("already exists"));
    assert_eq!(
        std::fs::read(s.path("config/domains/c1.xml")).unwrap(),
        stored
    );

    assert!(s.fails(&["dumpxml", "nope"]).contains("does not exist"));
    if kvm_available() {
        let err = s.fails(&["start", "c1"]);
        assert!(err.contains("missing.img"), "names the missing disk: {err}");
        assert_eq!(s.ok(&["domstate", "c1"]).trim(), "shut off");
    }
}

#[test]
fn edit_saves_valid_changes_and_refuses_broken_ones() {
    let s = Session::new();
    let disk = s.path("c1.img");
    std::fs::write(s.path("c1.xml"), s.domain_xml("c1", &disk)).unwrap();
    s.ok(&["define", s.path("c1.xml").to_str().unwrap()]);
    let edit = |script: &str| {
        Command::new(env!("CARGO_BIN_EXE_vireo"))
            .args(["edit", "c1"])
            .env("VIREO_HOME", s.home.dir.path())
            .env("EDITOR", script)
            .output()
            .unwrap()
    };
    // An "editor" that changes the memory.
    let out = edit("sed -i 's/>32</>64</'");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "Domain 'c1' XML configuration edited.\n"
    );
    assert!(s
        .ok(&["dominfo", "c1"])
        .contains("Max memory:     65536 KiB"));
    // One that breaks the XML: refused, the stored definition unchanged.
    let before = s.ok(&["dumpxml", "c1"]);
    let out = edit("sed -i 's/<memory/<memory broken/; s/<\\/name>//'");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not changed"));
    assert_eq!(s.ok(&["dumpxml", "c1"]), before);
}

#[test]
fn attach_list_and_detach_disks_as_in_the_user_stories() {
    let s = Session::new();
    let root = s.path("cirros2.img");
    std::fs::write(&root, vec![0u8; 1 << 20]).unwrap();
    let xml = s.domain_xml("c2", &root).replace(
        "<target dev='hda' bus='ide'/>",
        "<target dev='vda' bus='virtio'/>",
    );
    std::fs::write(s.path("c2.xml"), xml).unwrap();
    s.ok(&["define", s.path("c2.xml").to_str().unwrap()]);
    let new_disk = s.path("newdisk.img");
    std::fs::write(&new_disk, vec![0u8; 2 << 20]).unwrap();

    assert_eq!(
        s.ok(&["attach-disk", "c2", new_disk.to_str().unwrap(), "vdb"]),
        "Disk attached successfully\n\n"
    );
    let list = s.ok(&["domblklist", "c2"]);
    let width = new_disk
        .to_str()
        .unwrap()
        .len()
        .max(root.to_str().unwrap().len());
    assert_eq!(
        list,
        format!(
            " Target   Source\n{}\n vda      {}\n vdb      {}\n\n",
            "-".repeat(9 + width + 3),
            root.display(),
            new_disk.display()
        )
    );
    assert!(s
        .ok(&["domblklist", "c2", "--details"])
        .contains(" file   disk     vdb      "));
    assert_eq!(
        s.ok(&["domblkinfo", "c2", "vdb"]),
        format!(
            "Capacity:       {}\nAllocation:     {}\nPhysical:       {}\n\n",
            2 << 20,
            std::fs::metadata(&new_disk)
                .map(|m| {
                    use std::os::unix::fs::MetadataExt;
                    m.blocks() * 512
                })
                .unwrap(),
            2 << 20
        )
    );
    assert!(s
        .fails(&["attach-disk", "c2", new_disk.to_str().unwrap(), "vdb"])
        .contains("already exists"));
    assert_eq!(
        s.ok(&["detach-disk", "c2", "vdb"]),
        "Disk detached successfully\n\n"
    );
    assert!(!s.ok(&["domblklist", "c2"]).contains("vdb"));
    // The stored definition still passes libvirt's schema.
    common::require_program("virt-xml-validate");
    let out = Command::new("virt-xml-validate")
        .arg(s.path("config/domains/c2.xml"))
        .arg("domain")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn clone_gives_a_new_identity_and_its_own_disks() {
    let s = Session::new();
    let disk = if kvm_available() {
        s.demo_disk("c1.img")
    } else {
        s.path("c1.img")
    };
    if !disk.exists() {
        std::fs::write(&disk, vec![1u8; 4096]).unwrap();
    }
    let xml = s.domain_xml("c1", &disk).replace(
        "</devices>",
        "<interface type='network'><mac address='52:54:00:73:65:64'/><source network='default'/></interface></devices>",
    );
    std::fs::write(s.path("c1.xml"), xml).unwrap();
    s.ok(&["define", s.path("c1.xml").to_str().unwrap()]);
    assert_eq!(
        s.ok(&["clone", "c1", "c2"]),
        "Clone 'c2' created successfully.\n"
    );
    let (a, b) = (s.ok(&["dumpxml", "c1"]), s.ok(&["dumpxml", "c2"]));
    assert_ne!(s.ok(&["domuuid", "c1"]), s.ok(&["domuuid", "c2"]));
    assert!(
        a.contains("52:54:00:73:65:64") && !b.contains("52:54:00:73:65:64"),
        "{b}"
    );
    assert!(b.contains("<mac address='52:54:00:"), "{b}");
    let copy = s.path("c2.img");
    assert!(b.contains(copy.to_str().unwrap()), "{b}");
    assert_eq!(std::fs::read(&copy).unwrap(), std::fs::read(&disk).unwrap());
    assert!(s.fails(&["clone", "c1", "c2"]).contains("already exists"));
    if kvm_available() {
        // Both run at once: each has its own disk, so neither lock conflicts.
        s.ok(&["start", "c1"]);
        s.ok(&["start", "c2"]);
        assert_eq!(s.ok(&["list", "--name"]), "c1\nc2\n\n");
    }
}

#[test]
fn undefine_with_remove_all_storage_deletes_writable_disks_only() {
    let s = Session::new();
    let disk = s.path("c1.img");
    std::fs::write(&disk, vec![0u8; 4096]).unwrap();
    let iso = s.path("install.iso");
    std::fs::write(&iso, vec![0u8; 4096]).unwrap();
    let xml = s.domain_xml("c1", &disk).replace(
        "</devices>",
        &format!("<disk type='file' device='cdrom'><source file='{}'/><target dev='hdc' bus='ide'/><readonly/></disk></devices>", iso.display()),
    );
    std::fs::write(s.path("c1.xml"), xml).unwrap();
    s.ok(&["define", s.path("c1.xml").to_str().unwrap()]);
    let out = s.ok(&["undefine", "c1", "--remove-all-storage"]);
    assert!(out.starts_with("Domain 'c1' has been undefined\n"), "{out}");
    assert!(
        !disk.exists() && iso.exists(),
        "the ISO is not the VM's to delete"
    );
}

#[test]
fn libvirts_own_xp_definition_loads_and_starts_with_a_list_of_what_is_not_emulated() {
    if !kvm_available() {
        return;
    }
    let s = Session::new();
    let disk = s.demo_disk("xp.img");
    let iso = s.path("xp.iso");
    std::fs::write(&iso, vec![0u8; 1 << 20]).unwrap();
    let xml = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/xp-for-test.domain.xml"
    ))
    .unwrap()
    .replace(
        "/var/lib/libvirt/images/XP_FOR_TEST.img",
        disk.to_str().unwrap(),
    )
    .replace("/root/Desktop/xp.iso", iso.to_str().unwrap())
    .replace(
        "<vcpu placement='static'>2</vcpu>",
        "<vcpu placement='static'>1</vcpu>",
    );
    std::fs::write(s.path("xp.xml"), xml).unwrap();
    s.ok(&["define", s.path("xp.xml").to_str().unwrap()]);
    let dumped = s.ok(&["dumpxml", "XP_FOR_TEST"]);
    for kept in [
        "<hostdev mode='subsystem' type='usb' managed='yes'>",
        "<sound model='ich6'>",
        "<channel type='spicevmc'>",
        "passwd='123456'",
    ] {
        assert!(dumped.contains(kept), "{kept} survives define:\n{dumped}");
    }
    s.ok(&["start", "XP_FOR_TEST"]);
    let console = attach_console(&s, "XP_FOR_TEST", b"xp\r", "XP\r\n");
    assert!(console.contains("comes back in capitals"));
    let log = std::fs::read_to_string(s.path("state/log/XP_FOR_TEST.log")).unwrap();
    for note in ["SPICE", "QXL", "0951:1665", "ich6"] {
        assert!(
            log.contains(note),
            "the log says what is not emulated ({note}):\n{log}"
        );
    }
    s.ok(&["destroy", "XP_FOR_TEST"]);
}

#[test]
fn suspend_resume_reset_screenshot_and_vnc_through_the_control_socket() {
    if !kvm_available() {
        return;
    }
    let s = Session::new();
    let disk = s.demo_disk("c1.img");
    let xml = s.domain_xml("c1", &disk).replace(
        "</devices>",
        "<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/></devices>",
    );
    std::fs::write(s.path("c1.xml"), xml).unwrap();
    s.ok(&["define", s.path("c1.xml").to_str().unwrap()]);
    s.ok(&["start", "c1"]);
    assert_eq!(s.ok(&["suspend", "c1"]), "Domain 'c1' suspended\n\n");
    assert_eq!(s.ok(&["domstate", "c1"]).trim(), "paused");
    assert!(s.ok(&["list"]).contains(" c1     paused"));
    assert_eq!(s.ok(&["resume", "c1"]), "Domain 'c1' resumed\n\n");
    assert_eq!(s.ok(&["domstate", "c1"]).trim(), "running");
    let refused = s.fails(&["shutdown", "c1"]);
    assert!(
        refused.contains("ACPI") && refused.contains("destroy"),
        "{refused}"
    );
    assert_eq!(s.ok(&["reset", "c1"]), "Domain 'c1' was reset\n\n");
    // reboot is the reset button too, with virsh's message.
    assert_eq!(s.ok(&["reboot", "c1"]), "Domain 'c1' is being rebooted\n\n");
    // The guest boots again after the reset: its greeting comes again.
    attach_console(&s, "c1", b"x\r", "X\r\n");

    let shot = s.path("shot.png");
    let out = s.ok(&["screenshot", "c1", shot.to_str().unwrap()]);
    assert_eq!(
        out,
        format!(
            "Screenshot saved to {}, with type of image/png\n\n",
            shot.display()
        )
    );
    let bytes = std::fs::read(&shot).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");

    let display = s.ok(&["vncdisplay", "c1"]);
    let port: u16 = 5900
        + display
            .trim()
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap();
    assert!(display.starts_with("127.0.0.1:"), "{display}");
    let mut vnc = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    let mut banner = [0u8; 12];
    vnc.read_exact(&mut banner).unwrap();
    assert_eq!(&banner, b"RFB 003.008\n");
    assert!(s
        .fails(&["send-key", "c1", "KEY_NOPE"])
        .contains("invalid keycode"));
    s.ok(&[
        "send-key",
        "c1",
        "KEY_LEFTCTRL",
        "KEY_LEFTALT",
        "KEY_DELETE",
    ]);
    s.ok(&["destroy", "c1"]);
}

#[test]
fn a_second_vm_on_the_same_writable_image_is_refused() {
    if !kvm_available() {
        return;
    }
    let s = Session::new();
    let disk = s.demo_disk("shared.img");
    for name in ["c1", "c2"] {
        std::fs::write(s.path(&format!("{name}.xml")), s.domain_xml(name, &disk)).unwrap();
        s.ok(&["define", s.path(&format!("{name}.xml")).to_str().unwrap()]);
    }
    s.ok(&["start", "c1"]);
    let refused = s.fails(&["start", "c2"]);
    assert!(refused.contains("in use by another VM"), "{refused}");
    assert!(refused.contains("shared.img"), "names the image: {refused}");
    assert_eq!(s.ok(&["domstate", "c2"]).trim(), "shut off");
    assert_eq!(
        s.ok(&["domstate", "c1"]).trim(),
        "running",
        "the first VM is untouched"
    );
}

#[test]
fn clone_with_overlays_backs_the_clone_with_the_original_disk() {
    common::require_program("qemu-img");
    let s = Session::new();
    let disk = s.path("c1.img");
    std::fs::write(&disk, vec![7u8; 1 << 20]).unwrap();
    std::fs::write(s.path("c1.xml"), s.domain_xml("c1", &disk)).unwrap();
    s.ok(&["define", s.path("c1.xml").to_str().unwrap()]);
    assert_eq!(
        s.ok(&["clone", "c1", "c2", "--overlay"]),
        "Clone 'c2' created successfully.\n"
    );
    let overlay = s.path("c2.qcow2");
    let xml = s.ok(&["dumpxml", "c2"]);
    assert!(
        xml.contains(overlay.to_str().unwrap()) && xml.contains("type='qcow2'"),
        "{xml}"
    );
    let info = Command::new("qemu-img")
        .args(["info", "--output=json"])
        .arg(&overlay)
        .output()
        .unwrap();
    let info: serde_json::Value = serde_json::from_slice(&info.stdout).unwrap();
    assert_eq!(info["virtual-size"], 1 << 20);
    assert_eq!(info["backing-filename"], disk.to_str().unwrap());
    let check = Command::new("qemu-img")
        .arg("check")
        .arg(&overlay)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    assert_eq!(
        s.ok(&["domblkinfo", "c2", "hda"]).lines().next(),
        Some("Capacity:       1048576")
    );
}

#[test]
fn every_command_in_help_says_what_it_does() {
    let help = common::Home::new().ok(&["--help"]);
    let commands = help
        .split("Commands:\n")
        .nth(1)
        .and_then(|rest| rest.split("\n\n").next())
        .unwrap_or_else(|| panic!("no command list in:\n{help}"));
    let mut silent = Vec::new();
    for line in commands.lines() {
        let mut words = line.split_whitespace();
        let Some(verb) = words.next() else { continue };
        if words.next().is_none() {
            silent.push(verb.to_string());
        }
    }
    assert!(silent.is_empty(), "--help says nothing about {silent:?}");
    assert!(commands.lines().count() > 40, "{commands}");
}

/// libvirt forbids only '/' in a domain name; so does Vireo (and, as names
/// become file names, a leading '.').
#[test]
fn names_libvirt_accepts_are_accepted() {
    let s = Session::new();
    let names = [
        "My VM (test)",
        "débian 12 — 测试",
        "a:b+c,d=e",
        "-starts-with-dash",
    ];
    for name in names {
        let file = s.path("vm.xml");
        std::fs::write(&file, common::Domain::new(name).xml()).unwrap();
        assert_eq!(
            s.ok(&["define", file.to_str().unwrap()]),
            format!("Domain '{name}' defined from {}\n", file.display()),
        );
        // `--` before a name that starts with '-', as virsh needs it too.
        assert!(s
            .ok(&["dumpxml", "--", name])
            .contains(&format!("<name>{name}</name>")));
        assert_eq!(s.ok(&["domstate", "--", name]).trim(), "shut off");
    }
    let list = s.ok(&["list", "--all"]);
    for name in names {
        assert!(list.contains(name), "{list}");
    }
    assert_eq!(
        s.ok(&["domrename", "My VM (test)", "Renamed VM!"]),
        "Domain successfully renamed\n"
    );
    assert_eq!(s.ok(&["domstate", "Renamed VM!"]).trim(), "shut off");
    assert!(s
        .fails(&["domrename", "Renamed VM!", "a/b"])
        .contains("'/'"));
    let file = s.path("slash.xml");
    std::fs::write(&file, common::Domain::new("a/b").xml()).unwrap();
    assert!(s.fails(&["define", file.to_str().unwrap()]).contains("'/'"));
    if kvm_available() {
        // Such a name runs too: its process, sockets and files.
        let image = s.path("up.bin");
        std::fs::write(&image, common::asm::firmware(|p| p.print("up\n"))).unwrap();
        let file = s.path("run.xml");
        std::fs::write(
            &file,
            common::Domain::new("-a VM: 测试").firmware(&image).xml(),
        )
        .unwrap();
        s.ok(&["define", file.to_str().unwrap()]);
        s.ok(&["start", "--", "-a VM: 测试"]);
        assert_eq!(s.ok(&["domstate", "--", "-a VM: 测试"]).trim(), "running");
        s.ok(&["destroy", "--", "-a VM: 测试"]);
        assert_eq!(s.ok(&["domstate", "--", "-a VM: 测试"]).trim(), "shut off");
    }
    s.ok(&["undefine", "débian 12 — 测试"]);
    assert!(!s.ok(&["list", "--all"]).contains("débian"));
}

/// libvirt takes a domain's memory from its NUMA cells when they give it,
/// and writes the sum as `<memory>`; a definition with only cells is valid.
#[test]
fn memory_given_only_by_numa_cells_is_their_sum() {
    let s = Session::new();
    let file = s.path("numa.xml");
    std::fs::write(
        &file,
        "<domain type='kvm'>\n  <name>numa</name>\n  <vcpu>2</vcpu>\n  <cpu>\n    <numa>\n      <cell id='0' cpus='0' memory='32' unit='MiB'/>\n      <cell id='1' cpus='1' memory='32768'/>\n    </numa>\n  </cpu>\n  <os><type arch='x86_64' machine='pc'>hvm</type></os>\n</domain>\n",
    )
    .unwrap();
    s.ok(&["define", file.to_str().unwrap()]);
    let xml = s.ok(&["dumpxml", "numa"]);
    assert!(xml.contains("<memory unit='KiB'>65536</memory>"), "{xml}");
    assert!(
        xml.contains("<cell id='0' cpus='0' memory='32' unit='MiB'/>"),
        "{xml}"
    );
    let info = s.ok(&["dominfo", "numa"]);
    assert!(info.contains("Max memory:     65536 KiB"), "{info}");
    // Neither <memory> nor cells: refused, as libvirt refuses it.
    std::fs::write(
        &file,
        "<domain type='kvm'><name>none</name><os><type>hvm</type></os></domain>",
    )
    .unwrap();
    assert!(s
        .fails(&["define", file.to_str().unwrap()])
        .contains("<memory>"));
}

/// Two devices at one PCI address are refused when defined, as libvirt
/// refuses them, naming both; a disk without an address does not take a
/// slot a NIC names.
#[test]
fn two_devices_at_one_pci_address_are_refused() {
    let s = Session::new();
    let disk = s.path("a.img");
    std::fs::write(&disk, vec![0u8; 1 << 20]).unwrap();
    let pci = |slot: u32| {
        format!(
            "<address type='pci' domain='0x0000' bus='0x00' slot='{slot:#04x}' function='0x0'/>"
        )
    };
    let file = s.path("dup.xml");
    let domain = |name: &str, disk_address: &str| {
        common::Domain::new(name)
            .device(&format!(
                "<disk type='file' device='disk'><source file='{}'/><target dev='vda' bus='virtio'/>{disk_address}</disk>",
                disk.display()
            ))
            .device(&format!(
                "<interface type='user'><mac address='52:54:00:12:34:56'/>{}</interface>",
                pci(5)
            ))
    };
    std::fs::write(&file, domain("dup", &pci(5)).xml()).unwrap();
    let refused = s.fails(&["define", file.to_str().unwrap()]);
    assert!(
        refused.contains("Attempted double use of PCI Address 0000:00:05.0"),
        "{refused}"
    );
    assert!(
        refused.contains("<disk> vda") && refused.contains("<interface> 52:54:00:12:34:56"),
        "{refused}"
    );
    assert!(s.fails(&["dominfo", "dup"]).contains("does not exist"));

    // Without its own address the disk goes elsewhere, and the VM starts.
    std::fs::write(&file, domain("dup", "").xml()).unwrap();
    s.ok(&["define", file.to_str().unwrap()]);
    let info = s.ok(&["dominfo", "dup"]);
    assert!(info.contains("shut off"), "{info}");
    if kvm_available() {
        let image = s.path("up.bin");
        std::fs::write(&image, common::asm::firmware(|p| p.print("up\n"))).unwrap();
        std::fs::write(&file, domain("dup2", "").firmware(&image).xml()).unwrap();
        s.ok(&["define", file.to_str().unwrap()]);
        s.ok(&["start", "dup2"]);
        assert_eq!(s.ok(&["domstate", "dup2"]).trim(), "running");
        s.ok(&["destroy", "dup2"]);
    }
}
