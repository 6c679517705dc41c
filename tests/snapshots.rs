//! Internal snapshots against QEMU's own tools, and virsh's snapshot verbs.
//!
//! Vireo's snapshots must be QEMU's: `qemu-img snapshot -l` lists them by
//! name, date and size, `qemu-img check` is clean after every step, and a
//! snapshot `qemu-img snapshot -c` made is listed and applied by Vireo with
//! the bytes `qemu-io` wrote. The verbs print what virsh prints, and the
//! snapshot XML validates against libvirt's schema.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// Runs `program` (a tool, or Vireo's own binary for "vireo") under TZ=UTC.
fn tool(program: &str, args: &[&str]) -> Output {
    let program = if program == "vireo" {
        env!("CARGO_BIN_EXE_vireo")
    } else {
        common::require_program(program);
        program
    };
    Command::new(program)
        .args(args)
        .env("TZ", "UTC")
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

#[track_caller]
fn ok(program: &str, args: &[&str]) -> String {
    let output = tool(program, args);
    assert!(
        output.status.success(),
        "{program} {args:?} failed ({:?}):\n{}{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[track_caller]
fn qemu_check(image: &Path, when: &str) {
    let output = tool("qemu-img", &["check", image.to_str().unwrap()]);
    assert!(
        output.status.success(),
        "qemu-img check {when}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `qemu-io -c 'read -P BYTE OFFSET LEN'` succeeds: the range holds BYTE.
fn holds(image: &Path, byte: u8, offset: u64, len: u64) -> bool {
    let command = format!("read -P {byte} {offset} {len}");
    let output = tool(
        "qemu-io",
        &["-f", "qcow2", "-c", &command, image.to_str().unwrap()],
    );
    let text = String::from_utf8_lossy(&output.stdout);
    output.status.success() && !text.contains("Pattern verification failed")
}

fn qemu_write(image: &Path, byte: u8, offset: u64, len: u64) {
    let command = format!("write -P {byte} {offset} {len}");
    ok(
        "qemu-io",
        &["-f", "qcow2", "-c", &command, image.to_str().unwrap()],
    );
}

/// A qcow2 image made by `vireo img create` at `path`.
fn new_image(path: PathBuf, size: &str) -> PathBuf {
    ok(
        "vireo",
        &[
            "img",
            "create",
            "-q",
            "-f",
            "qcow2",
            path.to_str().unwrap(),
            size,
        ],
    );
    path
}

/// `vireo img snapshot FLAG NAME IMAGE`.
fn vireo_snapshot(flag: &str, name: &str, image: &Path) {
    ok(
        "vireo",
        &["img", "snapshot", flag, name, image.to_str().unwrap()],
    );
}

/// Both tools' `snapshot -l` of `image`, which must agree (and so must
/// the snapshot list in `info`); returns it.
#[track_caller]
fn listing(image: &Path) -> String {
    let path = image.to_str().unwrap();
    let qemu = ok("qemu-img", &["snapshot", "-l", path]);
    assert_eq!(ok("vireo", &["img", "snapshot", "-l", path]), qemu);
    let info = |command: &[&str]| {
        let (program, verb) = command.split_first().unwrap();
        let text = ok(program, &[verb, &["info", "-f", "qcow2", path]].concat());
        text.lines()
            .skip_while(|l| !l.starts_with("Snapshot list:"))
            .take_while(|l| !l.starts_with("Format specific"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    };
    assert_eq!(info(&["vireo", "img"]), info(&["qemu-img"]));
    let json = |command: &[&str]| {
        let (program, verb) = command.split_first().unwrap();
        ok(
            program,
            &[verb, &["info", "--output=json", "-f", "qcow2", path]].concat(),
        )
    };
    assert_eq!(json(&["vireo", "img"]), json(&["qemu-img"]));
    qemu
}

#[test]
fn qemu_img_lists_checks_and_reads_vireos_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let image = new_image(dir.path().join("disk.qcow2"), "16M");
    let path = image.to_str().unwrap();
    qemu_write(&image, 0x11, 0, 1 << 20);
    let before = now_utc();
    vireo_snapshot("-c", "before update", &image);
    let after = now_utc();
    qemu_check(&image, "after create");

    // qemu-img lists it by id, name, VM state size and date, as Vireo does.
    let listed = listing(&image);
    let line = listed
        .lines()
        .find(|l| l.contains("before update"))
        .unwrap_or_else(|| panic!("not listed:\n{listed}"));
    assert!(line.starts_with("1 "), "{line}");
    assert!(line.contains("     0 B"), "{line}");
    assert!(
        line.contains(&before) || line.contains(&after),
        "taken at {before}..{after}, listed as {line}"
    );

    // The guest (qemu-io here) overwrites the disk; the snapshot keeps the old bytes.
    qemu_write(&image, 0x22, 4096, 600_000);
    qemu_write(&image, 0x33, 8 << 20, 65536);
    qemu_check(&image, "after writing over the snapshot's clusters");
    vireo_snapshot("-c", "after", &image);
    listing(&image);
    vireo_snapshot("-a", "before update", &image);
    qemu_check(&image, "after apply");
    assert!(holds(&image, 0x11, 0, 1 << 20), "old bytes back");
    assert!(holds(&image, 0, 8 << 20, 65536), "later data gone");

    // qemu-img applies Vireo's other snapshot the same way.
    ok("qemu-img", &["snapshot", "-a", "after", path]);
    assert!(holds(&image, 0x22, 4096, 600_000));
    assert!(holds(&image, 0x33, 8 << 20, 65536));

    // Deleting frees what only the snapshots held: check clean, no
    // snapshots left, and new data fits in the freed clusters.
    vireo_snapshot("-d", "before update", &image);
    qemu_check(&image, "after deleting one");
    vireo_snapshot("-d", "after", &image);
    qemu_check(&image, "after deleting both");
    assert!(!ok("qemu-img", &["snapshot", "-l", path]).contains("after"));
    let info = ok("qemu-img", &["info", path]);
    assert!(!info.contains("Snapshot list"), "{info}");
    let length = std::fs::metadata(&image).unwrap().len();
    qemu_write(&image, 0x44, 2 << 20, 512 << 10); // 8 clusters; 11 were freed
    assert_eq!(
        std::fs::metadata(&image).unwrap().len(),
        length,
        "the freed clusters were not reused"
    );
    qemu_check(&image, "after reusing freed clusters");
    let map = ok("qemu-img", &["map", "--output=json", path]);
    assert!(map.contains("\"data\": true"), "{map}");
}

#[test]
fn vireo_lists_and_applies_snapshots_qemu_img_made() {
    let dir = tempfile::tempdir().unwrap();
    let image = dir.path().join("q.qcow2");
    let path = image.to_str().unwrap();
    ok("qemu-img", &["create", "-q", "-f", "qcow2", path, "8M"]);
    qemu_write(&image, 0x5a, 0, 3 << 20);
    ok("qemu-img", &["snapshot", "-c", "from-qemu", path]);
    qemu_write(&image, 0xa5, 1 << 20, 1 << 20);
    ok("qemu-img", &["snapshot", "-c", "second", path]);
    qemu_write(&image, 0x77, 0, 4096);

    let listed = listing(&image);
    assert!(
        listed.contains("from-qemu") && listed.contains("second"),
        "{listed}"
    );

    // A copy of the disk as it was, made by QEMU, to compare against.
    ok("qemu-img", &["snapshot", "-a", "from-qemu", path]);
    let expected = dir.path().join("expected.qcow2");
    ok(
        "qemu-img",
        &["convert", "-O", "qcow2", path, expected.to_str().unwrap()],
    );
    ok("qemu-img", &["snapshot", "-a", "second", path]);

    vireo_snapshot("-a", "from-qemu", &image);
    qemu_check(&image, "after Vireo applied QEMU's snapshot");
    ok("qemu-img", &["compare", path, expected.to_str().unwrap()]);
    // Writes after the revert go to new clusters; the snapshot stays.
    qemu_write(&image, 0x01, 0, 65536);
    qemu_check(&image, "after a write past the revert");
    vireo_snapshot("-a", "from-qemu", &image);
    ok("qemu-img", &["compare", path, expected.to_str().unwrap()]);
    vireo_snapshot("-d", "from-qemu", &image);
    qemu_check(&image, "after Vireo deleted QEMU's snapshot");
    let listing = ok("qemu-img", &["snapshot", "-l", path]);
    assert!(
        listing.contains("second") && !listing.contains("from-qemu"),
        "{listing}"
    );
}

/// Now, as qemu-img prints dates under TZ=UTC.
fn now_utc() -> String {
    let output = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M:%S"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A domain on `image` (qcow2 or raw), defined in `home`.
fn define(home: &common::Home, name: &str, image: &Path, format: &str) {
    let xml = common::Domain::new(name)
        .device(&format!(
            "<disk type='file' device='disk'><driver name='qemu' type='{format}'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>",
            image.display()
        ))
        .xml();
    let file = home.path(&format!("{name}.xml"));
    std::fs::write(&file, xml).unwrap();
    home.ok(&["define", file.to_str().unwrap()]);
}

#[track_caller]
fn validates(xml: &str, file: &Path) {
    std::fs::write(file, xml).unwrap();
    let output = tool(
        "virt-xml-validate",
        &[file.to_str().unwrap(), "domainsnapshot"],
    );
    assert!(
        output.status.success(),
        "{xml}\ndoes not validate: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// `date -d @SECS` in virsh's creation-time format (local time, as virsh).
fn virsh_time(secs: &str) -> String {
    let output = Command::new("date")
        .args(["-d", &format!("@{secs}"), "+%Y-%m-%d %H:%M:%S %z"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

fn creation_time(xml: &str) -> String {
    let start = xml.find("<creationTime>").expect("no creationTime") + "<creationTime>".len();
    let end = xml[start..].find('<').unwrap() + start;
    xml[start..end].to_string()
}

#[test]
fn virsh_snapshot_verbs_on_a_shut_off_vm() {
    let home = common::Home::new();
    let image = new_image(home.path("vm.qcow2"), "8M");
    qemu_write(&image, 0x11, 0, 1 << 20);
    define(&home, "vm", &image, "qcow2");

    assert_eq!(
        home.ok(&[
            "snapshot-create-as",
            "vm",
            "first",
            "--description",
            "clean install"
        ]),
        "Domain snapshot first created\n"
    );
    qemu_check(&image, "after snapshot-create-as");
    assert!(listing(&image).contains(" first "));

    // libvirt's XML, valid against its schema, as printed and as kept.
    let xml = home.ok(&["snapshot-dumpxml", "vm", "first"]);
    for part in [
        "<domainsnapshot>\n  <name>first</name>\n  <description>clean install</description>\n  <state>shutoff</state>\n  <creationTime>",
        "  <memory snapshot='no'/>\n  <disks>\n    <disk name='vda' snapshot='internal'/>\n  </disks>\n  <domain type='kvm'>\n",
        "<memory unit='MiB'>64</memory>",
    ] {
        assert!(xml.contains(part), "{part} not in\n{xml}");
    }
    validates(&xml, &home.path("dumped.xml"));
    let kept = std::fs::read_to_string(home.path("config/snapshots/vm/first.xml")).unwrap();
    assert!(kept.contains("<active>1</active>"), "{kept}");
    validates(&kept, &home.path("kept.xml"));

    // The VM changes: its disk and its definition.
    qemu_write(&image, 0x22, 0, 65536);
    let changed = home.ok(&["dumpxml", "vm"]).replace(
        "<memory unit='MiB'>64</memory>",
        "<memory unit='MiB'>128</memory>",
    );
    std::fs::write(home.path("changed.xml"), changed).unwrap();
    home.ok(&["define", home.path("changed.xml").to_str().unwrap()]);
    home.ok(&["snapshot-create-as", "vm", "--name", "second"]);
    let refused = home.fails(&["snapshot-create-as", "vm", "first"]);
    assert!(
        refused.contains("operation failed: domain moment first already exists"),
        "{refused}"
    );

    // virsh's table, with and without parents, and its tree.
    let first_time = virsh_time(&creation_time(&xml));
    let second_xml = home.ok(&["snapshot-dumpxml", "vm", "second"]);
    let second_time = virsh_time(&creation_time(&second_xml));
    assert_eq!(
        home.ok(&["snapshot-list", "vm"]),
        format!(
            " Name     Creation Time               State\n-----------------------------------------------\n first    {first_time}   shutoff\n second   {second_time}   shutoff\n\n"
        )
    );
    assert_eq!(
        home.ok(&["snapshot-list", "vm", "--parent"]),
        format!(
            " Name     Creation Time               State     Parent\n--------------------------------------------------------\n first    {first_time}   shutoff   \n second   {second_time}   shutoff   first\n\n"
        )
    );
    assert_eq!(
        home.ok(&["snapshot-list", "vm", "--tree"]),
        "first\n  |\n  +- second\n    \n\n"
    );
    assert_eq!(home.ok(&["snapshot-current", "vm", "--name"]), "second\n");

    // Revert: the disk's bytes and the definition come back.
    assert_eq!(
        home.ok(&["snapshot-revert", "vm", "first"]),
        "Domain snapshot first reverted\n\n"
    );
    qemu_check(&image, "after snapshot-revert");
    assert!(holds(&image, 0x11, 0, 1 << 20), "the disk's old bytes");
    assert!(home
        .ok(&["dumpxml", "vm"])
        .contains("<memory unit='MiB'>64</memory>"));
    assert_eq!(home.ok(&["snapshot-current", "vm", "--name"]), "first\n");
    assert_eq!(
        home.ok(&["snapshot-info", "vm", "first"]),
        "Name:           first\nDomain:         vm\nCurrent:        yes\nState:          shutoff\nLocation:       internal\nParent:         -\nChildren:       1\nDescendants:    1\nMetadata:       yes\n\n"
    );

    // snapshot-create from a file: its parent is the current snapshot.
    let file = home.path("snap.xml");
    std::fs::write(
        &file,
        "<domainsnapshot><name>fromfile</name><description>d</description></domainsnapshot>",
    )
    .unwrap();
    assert_eq!(
        home.ok(&["snapshot-create", "vm", file.to_str().unwrap()]),
        format!(
            "Domain snapshot fromfile created from '{}'\n",
            file.display()
        )
    );
    assert_eq!(
        home.ok(&["snapshot-list", "vm", "--tree"]),
        "first\n  |\n  +- fromfile\n  +- second\n    \n\n"
    );

    // A domain with snapshots is neither renamed nor undefined by accident.
    let refused = home.fails(&["domrename", "vm", "other"]);
    assert!(
        refused.contains("cannot rename domain with snapshots"),
        "{refused}"
    );
    let refused = home.fails(&["undefine", "vm"]);
    assert!(
        refused.contains("cannot delete inactive domain with 3 snapshots"),
        "{refused}"
    );

    // Delete: the image's snapshot goes, its children move up.
    assert_eq!(
        home.ok(&["snapshot-delete", "vm", "first"]),
        "Domain snapshot first deleted\n\n"
    );
    qemu_check(&image, "after snapshot-delete");
    let left = listing(&image);
    assert!(
        !left.contains(" first ") && left.contains(" second "),
        "{left}"
    );
    assert_eq!(
        home.ok(&["snapshot-list", "vm", "--name"]),
        "fromfile\nsecond\n\n"
    );
    let missing = home.fails(&["snapshot-revert", "vm", "first"]);
    assert!(
        missing
            .contains("Domain snapshot not found: no domain snapshot with matching name 'first'"),
        "{missing}"
    );
    home.ok(&["undefine", "vm", "--snapshots-metadata"]);
    assert!(!home.path("config/snapshots/vm").exists());
    // The disk keeps its snapshots, as with virsh.
    assert!(listing(&image).contains(" second "));
}

#[test]
fn raw_disks_and_bad_input_get_virshs_errors() {
    let home = common::Home::new();
    let raw = home.path("raw.img");
    std::fs::write(&raw, vec![0; 1 << 20]).unwrap();
    define(&home, "rawvm", &raw, "raw");
    let refused = home.fails(&["snapshot-create-as", "rawvm", "s"]);
    assert!(
        refused.contains(
            "unsupported configuration: internal snapshot for disk vda unsupported for storage type raw"
        ),
        "{refused}"
    );
    assert!(home
        .ok(&["snapshot-list", "rawvm", "--name"])
        .trim()
        .is_empty());

    // A truncated snapshot table in the image: a clear error, no panic.
    let image = new_image(home.path("bad.qcow2"), "1M");
    define(&home, "badvm", &image, "qcow2");
    home.ok(&["snapshot-create-as", "badvm", "one"]);
    let length = std::fs::metadata(&image).unwrap().len();
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(&image)
        .unwrap();
    file.set_len(length - 20).unwrap();
    drop(file);
    let refused = home.fails(&["snapshot-create-as", "badvm", "two"]);
    assert!(refused.contains("snapshot table is truncated"), "{refused}");
    assert!(!refused.contains("panicked"), "{refused}");

    // A disk that lost the snapshot (deleted with qemu-img): revert says
    // which disk, and changes nothing.
    let other = new_image(home.path("other.qcow2"), "1M");
    define(&home, "gone", &other, "qcow2");
    home.ok(&["snapshot-create-as", "gone", "s"]);
    ok(
        "qemu-img",
        &["snapshot", "-d", "s", other.to_str().unwrap()],
    );
    let refused = home.fails(&["snapshot-revert", "gone", "s"]);
    assert!(
        refused.contains("disk vda: no snapshot named 's'"),
        "{refused}"
    );
    assert_eq!(home.ok(&["snapshot-list", "gone", "--name"]), "s\n\n");

    let file = home.path("bad.xml");
    std::fs::write(&file, "<domainsnapshot><name>x</name>").unwrap();
    let refused = home.fails(&["snapshot-create", "badvm", file.to_str().unwrap()]);
    assert!(refused.contains("line 1"), "{refused}");
}

#[test]
fn a_running_vm_is_refused_for_now() {
    if !common::kvm_available() {
        return;
    }
    let home = common::Home::new();
    let image = new_image(home.path("run.qcow2"), "1M");
    define(&home, "runvm", &image, "qcow2");
    home.ok(&["snapshot-create-as", "runvm", "off"]);
    home.ok(&["start", "runvm"]);
    struct Destroy<'a>(&'a common::Home);
    impl Drop for Destroy<'_> {
        fn drop(&mut self) {
            let _ = self.0.run(&["destroy", "runvm"]);
        }
    }
    let _guard = Destroy(&home);
    for verb in ["snapshot-create-as", "snapshot-revert", "snapshot-delete"] {
        let args: &[&str] = match verb {
            "snapshot-create-as" => &[verb, "runvm", "on"],
            _ => &[verb, "runvm", "off"],
        };
        let refused = home.fails(args);
        assert!(
            refused.contains("snapshots of a running domain are not supported yet"),
            "{verb}: {refused}"
        );
    }
    // What is there is still listed, and the disk was not touched.
    assert_eq!(home.ok(&["snapshot-list", "runvm", "--name"]), "off\n\n");
}

/// `qemu-img info --output=json` of `image`: the backing file, its format
/// and the virtual size, as QEMU reads the header.
fn backing_of(image: &Path) -> (String, String, u64) {
    let json = ok(
        "qemu-img",
        &["info", "--output=json", "-U", image.to_str().unwrap()],
    );
    let info: serde_json::Value = serde_json::from_str(&json).unwrap();
    (
        info["backing-filename"].as_str().unwrap_or("").to_string(),
        info["backing-filename-format"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        info["virtual-size"].as_u64().unwrap(),
    )
}

#[test]
fn disk_only_snapshots_put_overlays_in_front_of_the_images_as_libvirt_does() {
    let home = common::Home::new();
    let image = new_image(home.path("vm.qcow2"), "8M");
    qemu_write(&image, 0x11, 0, 1 << 20);
    let raw = home.path("data.img");
    std::fs::write(&raw, vec![0x22; 2 << 20]).unwrap();
    let xml = common::Domain::new("vm")
        .device(&format!(
            "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>",
            image.display()
        ))
        .device(&format!(
            "<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{}'/><target dev='vdb' bus='virtio'/></disk>",
            raw.display()
        ))
        .xml();
    let file = home.path("vm.xml");
    std::fs::write(&file, xml).unwrap();
    home.ok(&["define", file.to_str().unwrap()]);
    let image_bytes = std::fs::read(&image).unwrap();
    let raw_bytes = std::fs::read(&raw).unwrap();

    assert_eq!(
        home.ok(&["snapshot-create-as", "vm", "before", "--disk-only"]),
        "Domain snapshot before created\n"
    );
    // libvirt's names: the image's extension replaced by the snapshot's.
    let vda = home.path("vm.before");
    let vdb = home.path("data.before");
    for (overlay, backing, format, size) in [
        (&vda, &image, "qcow2", 8 << 20),
        (&vdb, &raw, "raw", 2 << 20),
    ] {
        assert_eq!(
            backing_of(overlay),
            (backing.display().to_string(), format.to_string(), size),
            "qemu-img info {}",
            overlay.display()
        );
        qemu_check(overlay, "after snapshot-create-as --disk-only");
    }
    let definition = home.ok(&["dumpxml", "vm"]);
    for overlay in [&vda, &vdb] {
        assert!(
            definition.contains(&format!(
                "<driver name='qemu' type='qcow2'/>\n      <source file='{}'/>",
                overlay.display()
            )),
            "the definition is not switched to {}:\n{definition}",
            overlay.display()
        );
    }
    let snapshot = home.ok(&["snapshot-dumpxml", "vm", "before"]);
    assert!(
        snapshot.contains(&format!(
            "<disk name='vda' snapshot='external' type='file'>\n      <driver type='qcow2'/>\n      <source file='{}'/>\n    </disk>",
            vda.display()
        )) && snapshot.contains("<state>shutoff</state>")
            && snapshot.contains("<memory snapshot='no'/>")
            // (the definition as it was, on the images)
            && snapshot.contains(&format!("<source file='{}'/>", image.display())),
        "{snapshot}"
    );
    validates(&snapshot, &home.path("before.xml"));
    assert!(home
        .ok(&["snapshot-info", "vm", "before"])
        .contains("Location:       external\n"));

    // New writes land in the overlay; the image keeps the snapshot's bytes,
    // and Vireo reads the chain as QEMU does.
    qemu_write(&vda, 0x33, 0, 64 << 10);
    assert!(holds(&vda, 0x33, 0, 64 << 10) && holds(&vda, 0x11, 64 << 10, 960 << 10));
    assert_eq!(std::fs::read(&image).unwrap(), image_bytes);
    assert_eq!(std::fs::read(&raw).unwrap(), raw_bytes);
    let flat = home.path("flat.raw");
    ok(
        "vireo",
        &[
            "img",
            "convert",
            "-O",
            "raw",
            vda.to_str().unwrap(),
            flat.to_str().unwrap(),
        ],
    );
    let flat = std::fs::read(&flat).unwrap();
    assert!(flat[..64 << 10].iter().all(|&b| b == 0x33));
    assert!(flat[64 << 10..1 << 20].iter().all(|&b| b == 0x11));

    let raw_overlay = vdb.to_str().unwrap();
    ok(
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0x44 1M 64k", raw_overlay],
    );

    // Reverting to an external snapshot is refused, as libvirt 9.0 does.
    let refused = home.fails(&["snapshot-revert", "vm", "before"]);
    assert!(
        refused.contains("revert to external snapshot not supported yet"),
        "{refused}"
    );
    assert_eq!(home.ok(&["dumpxml", "vm"]), definition);

    // Bad requests: virsh's errors, nothing made, the definition kept.
    std::fs::write(home.path("vm.third"), b"someone's file").unwrap();
    let refused = home.fails(&["snapshot-create-as", "vm", "third", "--disk-only"]);
    assert!(
        refused.contains(&format!(
            "external snapshot file for disk vda already exists and is not a block device: {}",
            home.path("vm.third").display()
        )),
        "{refused}"
    );
    assert!(!home.path("data.third").exists());
    assert_eq!(
        std::fs::read(home.path("vm.third")).unwrap(),
        b"someone's file"
    );
    let refused = home.fails(&[
        "snapshot-create-as",
        "vm",
        "mixed",
        "--disk-only",
        "--diskspec",
        "vda,snapshot=internal",
    ]);
    assert!(
        refused.contains("mixing internal and external targets"),
        "{refused}"
    );
    let refused = home.fails(&[
        "snapshot-create-as",
        "vm",
        "offline",
        "--diskspec",
        "vdb,snapshot=external",
    ]);
    assert!(
        refused.contains("disk 'vdb' must use snapshot mode 'internal'"),
        "{refused}"
    );
    assert_eq!(home.ok(&["dumpxml", "vm"]), definition);
    assert_eq!(home.ok(&["snapshot-list", "vm", "--name"]), "before\n\n");

    // --diskspec: a file of the user's choosing, and a disk left out.
    let custom = home.path("custom, named.qcow2");
    let spec = format!("vda,snapshot=external,file={}", custom.display()).replace(", ", ",, ");
    home.ok(&[
        "snapshot-create-as",
        "vm",
        "second",
        "--disk-only",
        "--diskspec",
        &spec,
        "--diskspec",
        "vdb,snapshot=no",
    ]);
    assert_eq!(backing_of(&custom).0, vda.display().to_string());
    let second = home.ok(&["dumpxml", "vm"]);
    assert!(
        second.contains(&format!("<source file='{}'/>", custom.display()))
            && second.contains(&format!("<source file='{}'/>", vdb.display())),
        "{second}"
    );
    assert_eq!(
        home.ok(&["snapshot-list", "vm", "--tree"]),
        "before\n  |\n  +- second\n    \n\n"
    );
    qemu_write(&custom, 0x55, 128 << 10, 64 << 10);

    // Deleting merges, newest first: a snapshot with one after it waits.
    let refused = home.fails(&["snapshot-delete", "vm", "before"]);
    assert!(refused.contains("has snapshots after it"), "{refused}");
    assert_eq!(home.ok(&["dumpxml", "vm"]), second);
    assert_eq!(
        home.ok(&["snapshot-delete", "vm", "second"]),
        "Domain snapshot second deleted\n\n"
    );
    assert!(!custom.exists(), "the merged overlay is still there");
    assert_eq!(home.ok(&["dumpxml", "vm"]), definition);
    qemu_check(&vda, "after merging the second snapshot's overlay");
    assert!(holds(&vda, 0x55, 128 << 10, 64 << 10));
    assert_eq!(
        home.ok(&["snapshot-delete", "vm", "before"]),
        "Domain snapshot before deleted\n\n"
    );
    assert!(!vda.exists() && !vdb.exists());
    // The VM is back on its images, which now hold every write.
    let merged = home.ok(&["dumpxml", "vm"]);
    assert!(
        merged.contains(&format!(
            "<driver name='qemu' type='qcow2'/>\n      <source file='{}'/>",
            image.display()
        )) && merged.contains(&format!(
            "<driver name='qemu' type='raw'/>\n      <source file='{}'/>",
            raw.display()
        )),
        "{merged}"
    );
    qemu_check(&image, "after merging into it");
    assert!(holds(&image, 0x33, 0, 64 << 10));
    assert!(holds(&image, 0x55, 128 << 10, 64 << 10));
    assert!(holds(&image, 0x11, 192 << 10, 832 << 10));
    let raw_bytes = std::fs::read(&raw).unwrap();
    assert_eq!(raw_bytes.len(), 2 << 20);
    assert!(raw_bytes[..1 << 20].iter().all(|&b| b == 0x22));
    assert!(raw_bytes[1 << 20..(1 << 20) + (64 << 10)]
        .iter()
        .all(|&b| b == 0x44));
    assert!(raw_bytes[(1 << 20) + (64 << 10)..]
        .iter()
        .all(|&b| b == 0x22));
    assert!(home
        .ok(&["snapshot-list", "vm", "--name"])
        .trim()
        .is_empty());

    // --metadata forgets a snapshot and keeps the disks as they are.
    std::fs::remove_file(home.path("vm.third")).unwrap();
    home.ok(&["snapshot-create-as", "vm", "third", "--disk-only"]);
    let third = home.ok(&["dumpxml", "vm"]);
    assert_eq!(
        home.ok(&["snapshot-delete", "vm", "third", "--metadata"]),
        "Domain snapshot third deleted\n\n"
    );
    assert_eq!(home.ok(&["dumpxml", "vm"]), third);
    assert!(home.path("vm.third").exists() && home.path("data.third").exists());
}
