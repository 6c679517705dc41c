//! The install path the BIOS way: an ISO made by `grub-mkrescue` that
//! holds the test kernel and initramfs, as a distribution's live ISO holds
//! its own, boots through SeaBIOS and GRUB to the Linux shell, from an IDE
//! CD-ROM and, the image being hybrid, from a virtio-blk disk.
//!
//! Each test checks that GRUB, not Vireo's direct boot, loaded the kernel
//! (GRUB's line on the serial console, its loader type in the boot
//! parameters, the `BOOT_IMAGE=` it prepends to the command line) and that
//! Linux's own driver reads the ISO on the device it booted from.

mod common;

use common::linux::{self, LinuxGuest, GRUB_LOADER_TYPE};
use common::{kvm_available, Domain};

/// Boots the ISO attached as `device` on `target`/`bus` to the shell;
/// `node` is the block device Linux names it.
fn grub_boots_linux_from(device: &str, target: &str, bus: &str, node: &str) {
    if !kvm_available() {
        return;
    }
    let Some(linux) = linux::test_linux() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let iso = linux.grub_iso(dir.path());
    let mut domain = Domain::new(&format!("iso-{bus}")).disk(device, &iso, target, bus);
    domain.memory_mib = 256;
    let mut guest = LinuxGuest::boot(&domain);

    let serial = guest.serial();
    assert!(
        serial.contains("GRUB: loading the test kernel"),
        "GRUB's menu entry did not run:\n{}",
        guest.report()
    );
    assert_eq!(guest.loader_type(), GRUB_LOADER_TYPE, "type_of_loader");
    let cmdline = guest.run("cat /proc/cmdline");
    assert!(
        cmdline.starts_with("BOOT_IMAGE=/boot/bzImage "),
        "GRUB prepends the kernel's path: {cmdline:?}"
    );
    // The ISO 9660 primary volume descriptor (sector 16 of 2 KiB: type 1,
    // "CD001") on the device Linux's driver found.
    let descriptor = guest.run(&format!(
        "dd if=/dev/{node} bs=2048 skip=16 count=1 2>/dev/null | head -c 6 | od -An -c"
    ));
    let descriptor: String = descriptor.split_whitespace().collect();
    assert_eq!(descriptor, "001CD001", "/dev/{node}'s volume descriptor");
    guest.check_dmesg();
}

#[test]
fn grub_boots_linux_from_an_iso_on_an_ide_cdrom() {
    grub_boots_linux_from("cdrom", "hdc", "ide", "sr0");
}

/// grub-mkrescue's image is hybrid: an MBR and GRUB's core image in front
/// of the ISO 9660 file system, so it boots as a hard disk too.
#[test]
fn grub_boots_linux_from_the_same_iso_as_a_virtio_disk() {
    grub_boots_linux_from("disk", "vda", "virtio", "vda");
}
