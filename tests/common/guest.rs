//! Files for test guests: firmware images and disks in a scratch directory.

use std::path::{Path, PathBuf};

/// Writes `bytes` to `dir/name` and returns the path.
pub fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// A raw disk of `size` bytes whose first sectors are `content`.
pub fn raw_disk(dir: &Path, name: &str, content: &[u8], size: u64) -> PathBuf {
    let path = write(dir, name, content);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(size.max(content.len() as u64)).unwrap();
    path
}

/// Runs a command, panicking with its output when it fails.
pub fn run_tool(command: &mut std::process::Command) {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A GRUB rescue ISO made by `grub-mkrescue` whose menu appears on the
/// serial console (as TESTING.md shows under QEMU). It is a hybrid image:
/// it boots as a CD-ROM and as a hard disk.
pub fn grub_iso(dir: &Path, grub_cfg: &str) -> PathBuf {
    grub_iso_of(&dir.join("iso-root"), grub_cfg, &dir.join("grub.iso"))
}

/// Like [`grub_iso`], from the files already in `root` (which gets
/// boot/grub/grub.cfg), written to `iso`.
pub fn grub_iso_of(root: &Path, grub_cfg: &str, iso: &Path) -> PathBuf {
    super::require_program("grub-mkrescue");
    super::require_program("xorriso");
    std::fs::create_dir_all(root.join("boot/grub")).unwrap();
    std::fs::write(root.join("boot/grub/grub.cfg"), grub_cfg).unwrap();
    run_tool(
        std::process::Command::new("grub-mkrescue")
            .arg("-o")
            .arg(iso)
            .arg(root),
    );
    iso.to_path_buf()
}

/// The GRUB configuration the firmware tests boot: a serial terminal and a
/// menu that waits forever.
pub const GRUB_SERIAL_MENU: &str = "serial --unit=0 --speed=115200\n\
terminal_input --append serial\n\
terminal_output --append serial\n\
set timeout=-1\n\
menuentry \"Entry one\" { echo one }\n\
menuentry \"Entry two\" { echo two }\n";

/// An El Torito CD-ROM image (no emulation) whose boot image is `sector`.
pub fn eltorito_iso(dir: &Path, name: &str, sector: &[u8]) -> PathBuf {
    super::require_program("xorriso");
    let root = dir.join(format!("{name}-root"));
    std::fs::create_dir_all(&root).unwrap();
    // Four 512-byte sectors are loaded; pad the boot image to 2 KiB.
    let mut image = sector.to_vec();
    image.resize(2048, 0);
    std::fs::write(root.join("boot.img"), image).unwrap();
    let iso = dir.join(name);
    run_tool(
        std::process::Command::new("xorriso")
            .args([
                "-as",
                "mkisofs",
                "-quiet",
                "-b",
                "boot.img",
                "-no-emul-boot",
                "-boot-load-size",
                "4",
                "-o",
            ])
            .arg(&iso)
            .arg(&root),
    );
    iso
}
