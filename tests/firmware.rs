//! Firmware end-to-end tier: real SeaBIOS boots real boot software (boot
//! sectors of our own, GRUB ISOs made by grub-mkrescue) from IDE and
//! virtio-blk, and we watch the serial console.
//!
//! Guests run under emulation on some hosts (TESTING.md): SeaBIOS takes
//! tens of seconds to reach the boot, GRUB a couple of minutes to draw its
//! menu; the timeouts leave room for that.

mod common;

use std::time::Duration;

use common::asm::boot_sector;
use common::{guest, kvm_available, Domain, Vm};
use iced_x86::code_asm::*;

const BOOT: Duration = Duration::from_secs(240);
const GRUB: Duration = Duration::from_secs(600);

/// A boot sector that says where it was loaded from and ends the run.
fn announcing_boot_sector(message: &str) -> Vec<u8> {
    boot_sector(|p| {
        p.print(message);
        p.exit();
    })
}

fn boots_and_prints(domain: Domain, expect: &str) {
    let mut vm = Vm::start(&domain);
    vm.wait_for(expect, BOOT);
    let status = vm.wait_exit(BOOT);
    assert!(status.success(), "{status}: {}", vm.stderr());
}

/// SeaBIOS boots a raw disk on `target`/`bus` whose boot sector says `message`.
fn boots_from_raw_disk(target: &str, bus: &str, message: &str) {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sector = announcing_boot_sector(message);
    let disk = guest::raw_disk(dir.path(), "disk.img", &sector, 1 << 20);
    boots_and_prints(
        Domain::new("disk-boot").disk("disk", &disk, target, bus),
        message,
    );
}

#[test]
fn seabios_boots_a_boot_sector_from_an_ide_disk() {
    boots_from_raw_disk("hda", "ide", "BOOTED FROM IDE DISK\n");
}

#[test]
fn seabios_boots_a_boot_sector_from_a_virtio_disk() {
    boots_from_raw_disk("vda", "virtio", "BOOTED FROM VIRTIO DISK\n");
}

#[test]
fn the_first_device_in_boot_order_boots() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = guest::raw_disk(
        dir.path(),
        "disk.img",
        &announcing_boot_sector("BOOTED FROM DISK\n"),
        1 << 20,
    );
    let cd = guest::eltorito_iso(
        dir.path(),
        "cd.iso",
        &announcing_boot_sector("BOOTED FROM CDROM\n"),
    );
    for (order, expect) in [
        (["cdrom", "hd"], "BOOTED FROM CDROM\n"),
        (["hd", "cdrom"], "BOOTED FROM DISK\n"),
    ] {
        let mut domain = Domain::new("boot-order")
            .disk("disk", &disk, "hda", "ide")
            .disk("cdrom", &cd, "hdc", "ide");
        domain.boot = order.to_vec();
        boots_and_prints(domain, expect);
    }
}

/// Boots the serial-menu GRUB ISO attached as `device` on `target`/`bus`
/// and waits for both menu entries on the serial console.
fn grub_reaches_its_menu(device: &str, target: &str, bus: &str) {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let iso = guest::grub_iso(dir.path(), guest::GRUB_SERIAL_MENU);
    let mut domain = Domain::new("grub").disk(device, &iso, target, bus);
    domain.memory_mib = 256;
    let mut vm = Vm::start(&domain);
    let seen = vm.wait_for("Entry two", GRUB);
    assert!(seen.contains("Entry one"), "{seen}");
}

#[test]
fn grub_iso_boots_from_an_ide_cdrom_to_its_menu() {
    grub_reaches_its_menu("cdrom", "hdc", "ide");
}

/// grub-mkrescue makes a hybrid image: it boots as a hard disk too.
#[test]
fn grub_iso_boots_as_a_virtio_disk() {
    grub_reaches_its_menu("disk", "vda", "virtio");
}

#[test]
fn seabios_finds_every_vcpu_and_logs_on_the_debug_port() {
    if !kvm_available() {
        return;
    }
    let mut domain = Domain::new("smp");
    // More than this host's two CPUs is allowed: they time-slice.
    domain.vcpus = 4;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("seabios.log");
    let disk = guest::raw_disk(
        dir.path(),
        "disk.img",
        &announcing_boot_sector("BOOTED\n"),
        1 << 20,
    );
    let domain = domain.disk("disk", &disk, "hda", "ide");
    let mut vm = Vm::start_with(&domain, &["--debugcon", log.to_str().unwrap()]);
    vm.wait_for("BOOTED\n", BOOT);
    let text = std::fs::read_to_string(&log).unwrap();
    let expect = format!(
        "Found {n} cpu(s) max supported {n} cpu(s)",
        n = domain.vcpus
    );
    assert!(
        text.contains(&expect),
        "SeaBIOS log lacks {expect:?}:\n{text}"
    );
    assert!(text.contains("Running on QEMU (i440fx)"), "{text}");
    assert!(text.contains("Running on KVM"), "{text}");
}

/// A domain whose virtio disk is a qcow2 image (made by `qemu-img
/// convert`) starting with `sector`; returns it and the image's path.
fn qcow2_virtio_domain(
    name: &str,
    dir: &std::path::Path,
    sector: &[u8],
) -> (Domain, std::path::PathBuf) {
    common::require_program("qemu-img");
    let raw = guest::raw_disk(dir, "disk.img", sector, 1 << 20);
    let qcow2 = dir.join("disk.qcow2");
    guest::run_tool(
        std::process::Command::new("qemu-img")
            .args(["convert", "-f", "raw", "-O", "qcow2"])
            .arg(&raw)
            .arg(&qcow2),
    );
    let mut domain = Domain::new(name);
    domain.disks.push(format!(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/><target dev='vda' bus='virtio'/></disk>",
        qcow2.display()
    ));
    (domain, qcow2)
}

#[test]
fn seabios_boots_a_boot_sector_from_a_qcow2_virtio_disk() {
    if !kvm_available() {
        return;
    }
    common::require_program("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let sector = announcing_boot_sector("BOOTED FROM QCOW2\n");
    let (domain, _) = qcow2_virtio_domain("qcow2-boot", dir.path(), &sector);
    boots_and_prints(domain, "BOOTED FROM QCOW2\n");
}

#[test]
fn a_guest_writing_through_virtio_blk_leaves_a_qcow2_that_checks_clean() {
    if !kvm_available() {
        return;
    }
    common::require_program("qemu-img");
    // The boot sector writes itself to LBA 5 through int 13h, which
    // SeaBIOS carries out with its virtio-blk driver (virtqueue writes).
    let sector = boot_sector(|p| {
        let a = &mut p.a;
        a.xor(ax, ax).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(bx, 0x7c00u32).unwrap();
        a.mov(ax, 0x0301u32).unwrap(); // AH=3 write, AL=1 sector
        a.mov(cx, 0x0006u32).unwrap(); // cylinder 0, sector 6 (LBA 5)
        a.mov(dx, 0x0080u32).unwrap(); // head 0, first hard disk
        a.int(0x13).unwrap();
        let mut failed = a.create_label();
        a.jc(failed).unwrap();
        p.print("WRITTEN\n");
        p.exit();
        p.a.set_label(&mut failed).unwrap();
        p.print("WRITE FAILED\n");
        p.exit();
    });
    let dir = tempfile::tempdir().unwrap();
    let (domain, qcow2) = qcow2_virtio_domain("virtio-write", dir.path(), &sector);
    boots_and_prints(domain, "WRITTEN\n");
    let check = std::process::Command::new("qemu-img")
        .arg("check")
        .arg(&qcow2)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
    // What the guest wrote is where it wrote it, as QEMU reads the image.
    let back = dir.path().join("back.img");
    guest::run_tool(
        std::process::Command::new("qemu-img")
            .args(["convert", "-f", "qcow2", "-O", "raw"])
            .arg(&qcow2)
            .arg(&back),
    );
    let bytes = std::fs::read(&back).unwrap();
    assert_eq!(
        &bytes[5 * 512..6 * 512],
        &sector[..],
        "LBA 5 holds the boot sector"
    );
    assert_eq!(&bytes[..512], &sector[..]);
}
