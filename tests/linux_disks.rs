//! Disks as Linux's own drivers see them: `virtio_blk` on a qcow2 and a raw
//! image, `ata_piix` on an IDE disk, and `sr` on an ATAPI CD-ROM whose disc
//! is changed and ejected while the guest runs. What the guest writes is
//! checked on the host with qemu-img and qemu-io, what the host wrote is
//! what the guest reads, and each guest's kernel log must be clean.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{SystemTime, UNIX_EPOCH};

use common::guest::run_tool;
use common::linux::{test_linux, Boot, LinuxGuest, BOOT_TIMEOUT};
use common::{kvm_available, sha256_hex};

/// Where in each disk the host writes (1 MiB in) and the guest writes
/// (2 MiB in), and how much: 64 KiB each.
const HOST_OFFSET: u64 = 1 << 20;
const GUEST_OFFSET: u64 = 2 << 20;
const CHUNK: usize = 64 << 10;

/// A word no earlier run wrote: the pattern is chosen per run.
fn run_tag(what: &str) -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!("{what}-{}-{nanos:09}", std::process::id())
}

/// What `yes WORD | head -c CHUNK` prints in the guest.
fn repeated_line(word: &str) -> Vec<u8> {
    format!("{word}\n")
        .into_bytes()
        .into_iter()
        .cycle()
        .take(CHUNK)
        .collect()
}

/// The guest's shell command that writes `yes WORD` over the CHUNK at
/// GUEST_OFFSET of `device` and waits until the device has it (`fsync`,
/// which Linux turns into the device's flush).
fn guest_write(device: &str, word: &str) -> String {
    format!(
        "yes {word} | head -c {CHUNK} > /tmp/chunk && \
         dd if=/tmp/chunk of={device} bs={CHUNK} seek={} conv=fsync 2>/dev/null && sync",
        GUEST_OFFSET / CHUNK as u64
    )
}

/// The guest's shell command that prints the SHA-256 of the CHUNK the host
/// wrote at HOST_OFFSET of `device`.
fn guest_read_sum(device: &str) -> String {
    format!(
        "dd if={device} bs={CHUNK} skip={} count=1 2>/dev/null | sha256sum",
        HOST_OFFSET / CHUNK as u64
    )
}

/// The raw image a disk should equal: zeros, the host's chunk and the
/// guest's chunk at their offsets.
fn expected_image(dir: &Path, name: &str, size: u64, host: &[u8], guest: &[u8]) -> PathBuf {
    let mut bytes = vec![0u8; size as usize];
    bytes[HOST_OFFSET as usize..][..CHUNK].copy_from_slice(host);
    bytes[GUEST_OFFSET as usize..][..CHUNK].copy_from_slice(guest);
    common::guest::write(dir, name, &bytes)
}

fn qemu_img(args: &[&str]) -> String {
    common::require_program("qemu-img");
    let out = Command::new("qemu-img").args(args).output().unwrap();
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The `<disk>` element of a virtio disk in `format`.
fn virtio_disk(path: &Path, format: &str, target: &str) -> String {
    format!(
        "<disk type='file' device='disk'><driver name='qemu' type='{format}'/><source file='{}'/><target dev='{target}' bus='virtio'/></disk>",
        path.display()
    )
}

#[test]
fn virtio_blk_on_qcow2_and_raw_holds_exactly_what_guest_and_host_wrote() {
    if !kvm_available() {
        return;
    }
    let Some(linux) = test_linux() else { return };
    common::require_program("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    // Different sizes tell the two disks apart in the guest.
    let (qcow2_size, raw_size) = (16u64 << 20, 8u64 << 20);
    let host_qcow2 = run_tag("host-qcow2");
    let host_raw = run_tag("host-raw");

    // The host writes its chunks: into the qcow2 through qemu-io, into the
    // raw file directly.
    let qcow2 = path("disk.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        qcow2.to_str().unwrap(),
        &qcow2_size.to_string(),
    ]);
    let chunk_file = common::guest::write(dir.path(), "host-chunk", &repeated_line(&host_qcow2));
    run_tool(Command::new("qemu-io").args([
        "-f",
        "qcow2",
        "-c",
        &format!(
            "write -s {} {HOST_OFFSET} {CHUNK}",
            chunk_file.to_str().unwrap()
        ),
        qcow2.to_str().unwrap(),
    ]));
    let mut raw_bytes = vec![0u8; raw_size as usize];
    raw_bytes[HOST_OFFSET as usize..][..CHUNK].copy_from_slice(&repeated_line(&host_raw));
    let raw = common::guest::write(dir.path(), "disk.raw", &raw_bytes);

    let domain = linux
        .domain("linux-virtio-blk", Boot::Pvh)
        .device(&virtio_disk(&qcow2, "qcow2", "vda"))
        .device(&virtio_disk(&raw, "raw", "vdb"));
    let mut guest = LinuxGuest::boot(&domain);

    // Which block device is which, by size in 512-byte sectors.
    let sizes = guest.run("for d in /sys/block/vd*; do echo ${d##*/} $(cat $d/size); done");
    let device_of = |sectors: u64| -> String {
        let line = sizes
            .lines()
            .find(|l| l.ends_with(&format!(" {sectors}")))
            .unwrap_or_else(|| panic!("no virtio disk of {sectors} sectors:\n{sizes}"));
        format!("/dev/{}", line.split_whitespace().next().unwrap())
    };
    let (qcow2_dev, raw_dev) = (device_of(qcow2_size / 512), device_of(raw_size / 512));

    // The host's bytes, as the guest reads them.
    for (device, word) in [(&qcow2_dev, &host_qcow2), (&raw_dev, &host_raw)] {
        let sum = guest.run(&guest_read_sum(device));
        assert_eq!(
            sum.split_whitespace().next(),
            Some(sha256_hex(&repeated_line(word)).as_str()),
            "{device} does not hold what the host wrote"
        );
    }
    // The guest's bytes, flushed.
    let guest_qcow2 = run_tag("guest-qcow2");
    let guest_raw = run_tag("guest-raw");
    guest.run(&guest_write(&qcow2_dev, &guest_qcow2));
    guest.run(&guest_write(&raw_dev, &guest_raw));
    // Both disks interrupt through MSI-X (a vector per queue and one for
    // configuration changes), not a shared INTx line, and the queues'
    // vectors did fire.
    let interrupts = guest.run("grep virtio /proc/interrupts");
    let virtio: Vec<&str> = interrupts
        .lines()
        .filter(|l| l.contains("virtio"))
        .collect();
    let requests: Vec<&str> = virtio
        .iter()
        .copied()
        .filter(|l| l.contains("-req."))
        .collect();
    assert_eq!(
        requests.len(),
        2,
        "a request vector per disk:\n{interrupts}"
    );
    assert!(
        virtio.iter().all(|l| l.contains("PCI-MSI")),
        "virtio interrupts are not MSI-X:\n{interrupts}"
    );
    let fired: u64 = requests
        .iter()
        .flat_map(|l| {
            l.split_whitespace()
                .skip(1)
                .map_while(|n| n.parse::<u64>().ok())
        })
        .sum();
    assert!(fired > 0, "no request interrupt arrived:\n{interrupts}");
    guest.check_dmesg();
    guest.type_line("poweroff");
    let status = guest.wait_exit(BOOT_TIMEOUT);
    assert!(status.success(), "{status}\n{}", guest.report());

    // qemu-img sees exactly those bytes, and an image without a flaw.
    let check = qemu_img(&["check", qcow2.to_str().unwrap()]);
    assert!(check.contains("No errors were found"), "{check}");
    for (image, format, size, host, guest_word) in [
        (&qcow2, "qcow2", qcow2_size, &host_qcow2, &guest_qcow2),
        (&raw, "raw", raw_size, &host_raw, &guest_raw),
    ] {
        let expected = expected_image(
            dir.path(),
            &format!("expected-{format}"),
            size,
            &repeated_line(host),
            &repeated_line(guest_word),
        );
        let compare = qemu_img(&[
            "compare",
            "-f",
            format,
            "-F",
            "raw",
            image.to_str().unwrap(),
            expected.to_str().unwrap(),
        ]);
        assert!(compare.contains("Images are identical"), "{compare}");
    }
    // And qemu-io reads the guest's chunk where the guest wrote it.
    let read = Command::new("qemu-io")
        .args([
            "-f",
            "qcow2",
            "-r",
            "-c",
            &format!("read -v {GUEST_OFFSET} 32"),
            qcow2.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&read.stdout);
    // (qemu-io prints the bytes in hex, 16 to a line.)
    let first_line: Vec<String> = guest_qcow2
        .bytes()
        .take(16)
        .map(|b| format!("{b:02x}"))
        .collect();
    assert!(dump.contains(&first_line.join(" ")), "{dump}");
}

/// An ISO 9660 image made by xorriso holding `file` with `content`.
fn iso_with_file(dir: &Path, name: &str, file: &str, content: &str) -> PathBuf {
    common::require_program("xorriso");
    let root = dir.join(format!("{name}-root"));
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join(file), content).unwrap();
    let iso = dir.join(name);
    run_tool(Command::new("xorriso").args([
        "-as",
        "mkisofs",
        "-quiet",
        "-o",
        iso.to_str().unwrap(),
        root.to_str().unwrap(),
    ]));
    iso
}

#[test]
fn ata_piix_disk_and_atapi_cdrom_whose_disc_changes_and_ejects_live() {
    if !kvm_available() {
        return;
    }
    let Some(linux) = test_linux() else { return };
    let dir = tempfile::tempdir().unwrap();
    let first = run_tag("first-disc");
    let second = run_tag("second-disc");
    let first_iso = iso_with_file(dir.path(), "first.iso", "one.txt", &first);
    let second_iso = iso_with_file(dir.path(), "second.iso", "two.txt", &second);
    let host_word = run_tag("host-ide");
    let mut disk_bytes = vec![0u8; 4 << 20];
    disk_bytes[HOST_OFFSET as usize..][..CHUNK].copy_from_slice(&repeated_line(&host_word));
    let disk = common::guest::write(dir.path(), "ide.raw", &disk_bytes);

    let domain = linux
        .domain("linux-ide", Boot::Pvh)
        .disk("disk", &disk, "hda", "ide")
        .disk("cdrom", &first_iso, "hdc", "ide");
    let mut guest = LinuxGuest::start_defined(&domain);
    let name = domain.name.clone();

    // ata_piix found a disk on the primary channel and the CD-ROM on the
    // secondary.
    let blocks = guest.run("ls /sys/block");
    assert!(
        blocks.split_whitespace().any(|b| b == "sda") && blocks.contains("sr0"),
        "{blocks}\n{}",
        guest.report()
    );

    // The IDE disk: the host's bytes read back, the guest's written.
    let sum = guest.run(&guest_read_sum("/dev/sda"));
    assert_eq!(
        sum.split_whitespace().next(),
        Some(sha256_hex(&repeated_line(&host_word)).as_str())
    );
    let guest_word = run_tag("guest-ide");
    guest.run(&guest_write("/dev/sda", &guest_word));
    // Raw writes go straight to the file: the host sees them while the VM
    // runs.
    let on_disk = std::fs::read(&disk).unwrap();
    assert_eq!(
        &on_disk[GUEST_OFFSET as usize..][..CHUNK],
        &repeated_line(&guest_word)[..]
    );

    // The first disc.
    guest.run("mkdir -p /mnt/cd");
    assert_eq!(
        guest.run(
            "mount -t iso9660 -o ro /dev/sr0 /mnt/cd && cat /mnt/cd/one.txt && umount /mnt/cd"
        ),
        first
    );

    // Everything up to here (boot, the IDE disk, the first disc) without a
    // complaint. After a live change the guest's first read meets the
    // drive's unit attention and logs an I/O error, as on a real drive.
    guest.check_dmesg();

    // Swapped while the guest runs: the guest reads the new disc.
    let (home, _) = guest.home();
    let out = home.ok(&[
        "change-media",
        &name,
        "hdc",
        second_iso.to_str().unwrap(),
        "--update",
        "--live",
    ]);
    assert_eq!(out.trim(), "Successfully updated media.");
    // The first command after the change meets the drive's unit attention
    // (medium may have changed) and fails, as on a real drive; Linux then
    // revalidates the disc. Up to three tries, each error kept for the report.
    let (status, tries) = guest.run_status(
        "(for i in 1 2 3; do mount -t iso9660 -o ro /dev/sr0 /mnt/cd && exit 0; sleep 1; done; exit 1)",
    );
    assert_eq!(status, 0, "the new disc never mounted:\n{tries}");
    assert_eq!(
        guest.run("cat /mnt/cd/two.txt && umount /mnt/cd"),
        second,
        "mounting took: {tries}"
    );

    // Ejected: the guest finds no medium.
    let (home, _) = guest.home();
    let out = home.ok(&["change-media", &name, "hdc", "--eject", "--live"]);
    assert_eq!(out.trim(), "Successfully ejected media.");
    let (status, said) = guest.run_status("mount -t iso9660 -o ro /dev/sr0 /mnt/cd");
    assert_ne!(status, 0, "mounted an ejected disc: {said}");
    assert!(said.contains("No medium found"), "{said}");
}
