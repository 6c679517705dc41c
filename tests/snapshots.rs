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

/// A qcow2 image made by `vireo img create`.
fn new_image(dir: &Path, name: &str, size: &str) -> PathBuf {
    let path = dir.join(name);
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

/// Both tools' `snapshot -l` of `image`, which must agree; returns it.
#[track_caller]
fn listing(image: &Path) -> String {
    let path = image.to_str().unwrap();
    let qemu = ok("qemu-img", &["snapshot", "-l", path]);
    assert_eq!(ok("vireo", &["img", "snapshot", "-l", path]), qemu);
    qemu
}

#[test]
fn qemu_img_lists_checks_and_reads_vireos_snapshots() {
    let dir = tempfile::tempdir().unwrap();
    let image = new_image(dir.path(), "disk.qcow2", "16M");
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
