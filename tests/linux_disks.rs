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

/// `qemu-img map --output=json` of `image`: (start, length, zero, data)
/// per extent.
fn image_map(image: &Path, format: &str) -> Vec<(u64, u64, bool, bool)> {
    let out = qemu_img(&[
        "map",
        "--output=json",
        "-f",
        format,
        image.to_str().unwrap(),
    ]);
    let extents: serde_json::Value = serde_json::from_str(&out).unwrap();
    extents
        .as_array()
        .unwrap_or_else(|| panic!("qemu-img map printed {out}"))
        .iter()
        .map(|e| {
            (
                e["start"].as_u64().unwrap(),
                e["length"].as_u64().unwrap(),
                e["zero"].as_bool().unwrap(),
                e["data"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Whether every extent of `map` that overlaps `[start, end)` has data
/// (`true`) or is an unallocated run of zeroes (`false`).
fn extents_in(map: &[(u64, u64, bool, bool)], start: u64, end: u64) -> Vec<(bool, bool)> {
    map.iter()
        .filter(|&&(s, len, _, _)| s < end && s + len > start)
        .map(|&(_, _, zero, data)| (zero, data))
        .collect()
}

/// The `qemu-img check` line that counts allocated clusters.
fn allocated_line(check: &str) -> String {
    check
        .lines()
        .find(|l| l.contains("allocated"))
        .unwrap_or_default()
        .to_string()
}

/// A guest's BLKDISCARD frees the space behind it when the disk says
/// `discard='unmap'` (a hole in a raw file, freed clusters in a qcow2
/// image, both reading back as zeroes), and changes nothing under the
/// default `discard='ignore'`, as with QEMU.
#[test]
fn guest_discard_punches_raw_files_and_frees_qcow2_clusters() {
    if !kvm_available() {
        return;
    }
    let Some(linux) = test_linux() else { return };
    common::require_program("qemu-io");
    let dir = tempfile::tempdir().unwrap();
    // Sizes tell the disks apart in the guest.
    let (qcow2_size, raw_size, kept_size) = (16u64 << 20, 8u64 << 20, 4u64 << 20);
    // The guest discards 2 MiB from 1 MiB in.
    let (from, len) = (1u64 << 20, 2u64 << 20);

    let qcow2 = dir.path().join("trim.qcow2");
    qemu_img(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        qcow2.to_str().unwrap(),
        &qcow2_size.to_string(),
    ]);
    run_tool(Command::new("qemu-io").args([
        "-f",
        "qcow2",
        "-c",
        "write -P 0x5a 0 4M",
        qcow2.to_str().unwrap(),
    ]));
    let raw = common::guest::write(dir.path(), "trim.raw", &vec![0x5a; raw_size as usize]);
    let kept = common::guest::write(dir.path(), "kept.raw", &vec![0x5a; kept_size as usize]);
    let qcow2_before = image_map(&qcow2, "qcow2");
    let raw_before = image_map(&raw, "raw");
    let kept_before = image_map(&kept, "raw");
    let check_before = qemu_img(&["check", qcow2.to_str().unwrap()]);
    assert_eq!(extents_in(&qcow2_before, from, from + len), [(false, true)]);
    assert_eq!(extents_in(&raw_before, from, from + len), [(false, true)]);

    let disk = |path: &Path, format: &str, target: &str, discard: &str| {
        format!(
            "<disk type='file' device='disk'><driver name='qemu' type='{format}'{discard}/><source file='{}'/><target dev='{target}' bus='virtio'/></disk>",
            path.display()
        )
    };
    let domain = linux
        .domain("linux-discard", Boot::Pvh)
        .device(&disk(&qcow2, "qcow2", "vda", " discard='unmap'"))
        .device(&disk(&raw, "raw", "vdb", " discard='unmap'"))
        .device(&disk(&kept, "raw", "vdc", ""));
    let mut guest = LinuxGuest::boot(&domain);
    let sizes = guest.run("for d in /sys/block/vd*; do echo ${d##*/} $(cat $d/size) $(cat $d/queue/discard_granularity); done");
    let device_of = |bytes: u64| -> (String, u64) {
        let line = sizes
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(&(bytes / 512).to_string()))
            .unwrap_or_else(|| panic!("no virtio disk of {bytes} bytes:\n{sizes}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        (format!("/dev/{}", words[0]), words[2].parse().unwrap())
    };
    let (qcow2_dev, qcow2_granularity) = device_of(qcow2_size);
    let (raw_dev, raw_granularity) = device_of(raw_size);
    let (kept_dev, _) = device_of(kept_size);
    // A qcow2 disk asks for whole clusters, a raw one for host blocks.
    assert_eq!(
        (qcow2_granularity, raw_granularity),
        (65536, 4096),
        "{sizes}"
    );

    let zeroes = sha256_hex(&vec![0u8; len as usize]);
    let pattern = sha256_hex(&vec![0x5a; len as usize]);
    for (device, expect) in [
        (&qcow2_dev, &zeroes),
        (&raw_dev, &zeroes),
        (&kept_dev, &pattern),
    ] {
        let (status, said) = guest.run_status(&format!("blkdiscard -o {from} -l {len} {device}"));
        assert_eq!(status, 0, "blkdiscard {device}: {said}");
        let sum = guest.run(&format!(
            "dd if={device} bs=1M skip={} count={} 2>/dev/null | sha256sum",
            from >> 20,
            len >> 20
        ));
        assert_eq!(
            sum.split_whitespace().next(),
            Some(expect.as_str()),
            "{device} after the discard"
        );
    }
    guest.check_dmesg();
    guest.type_line("poweroff");
    let status = guest.wait_exit(BOOT_TIMEOUT);
    assert!(status.success(), "{status}\n{}", guest.report());

    let qcow2_after = image_map(&qcow2, "qcow2");
    let raw_after = image_map(&raw, "raw");
    let check_after = qemu_img(&["check", qcow2.to_str().unwrap()]);
    eprintln!(
        "qcow2 map before {qcow2_before:?}\nqcow2 map after {qcow2_after:?}\nraw map before {raw_before:?}\nraw map after {raw_after:?}\nqcow2 check before: {}\nqcow2 check after: {}",
        allocated_line(&check_before),
        allocated_line(&check_after)
    );
    assert!(
        check_after.contains("No errors were found"),
        "{check_after}"
    );
    for (map, what) in [(&qcow2_after, "qcow2"), (&raw_after, "raw")] {
        assert_eq!(
            extents_in(map, from, from + len),
            [(true, false)],
            "{what}: the discarded range is a hole: {map:?}"
        );
        assert!(
            extents_in(map, 0, from).iter().all(|&(_, data)| data),
            "{what}: the data before it stays: {map:?}"
        );
    }
    assert!(
        extents_in(&qcow2_after, from + len, 4 << 20)
            .iter()
            .all(|&(_, data)| data),
        "{qcow2_after:?}"
    );
    assert_eq!(
        image_map(&kept, "raw"),
        kept_before,
        "discard='ignore' keeps the space"
    );
    assert_eq!(
        std::fs::read(&kept).unwrap(),
        vec![0x5a; kept_size as usize]
    );
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
