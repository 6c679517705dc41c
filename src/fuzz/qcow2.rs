//! qcow2 images as a downloaded or hand-edited file makes them: the header
//! and its extensions, the L1/L2 and refcount tables, snapshots; opened,
//! checked, read, written and flushed. The file is a memfd, so nothing
//! touches the disk.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd};
use std::path::PathBuf;

use crate::storage::qcow2::{check, snapshot, Qcow2Image};
use crate::storage::BlockBackend;

/// A sealed-off in-memory file holding `data`, and a path that opens it.
fn memfd(data: &[u8]) -> Option<(File, PathBuf)> {
    // SAFETY: memfd_create takes a NUL-terminated name and flags; it
    // returns a new descriptor or -1 and touches no memory of ours.
    let fd = unsafe { libc::memfd_create(c"vireo-fuzz-qcow2".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just created and is owned by nothing else.
    let mut file = unsafe { File::from_raw_fd(fd) };
    file.write_all(data).ok()?;
    let path = PathBuf::from(format!("/proc/self/fd/{}", file.as_raw_fd()));
    Some((file, path))
}

/// The input is the image file. Its backing file name is cleared first:
/// it would name a host file, which a fuzzer must not open (the name's
/// resolution is tested in the storage module).
pub fn qcow2(data: &[u8]) {
    let mut image = data.to_vec();
    if image.len() >= 20 {
        image[8..20].fill(0);
    }
    let Some((file, path)) = memfd(&image) else {
        return;
    };
    let _ = check::check(&file);
    let _ = snapshot::list(&path);
    for read_only in [true, false] {
        let Ok(mut disk) = Qcow2Image::open(&path, read_only) else {
            return;
        };
        let size = disk.size();
        let mut buf = vec![0u8; 4096];
        for offset in [0, size / 2, size.saturating_sub(4096)] {
            let _ = disk.read_at(&mut buf, offset);
            if !read_only {
                let _ = disk.write_at(&[0x5a; 4096], offset);
            }
        }
        let _ = disk.flush();
    }
    let _ = check::check(&file);
}

/// Seeds: images `qemu-img create` made and `qemu-io` wrote (v3 with
/// data, v2, lazy refcounts with 1-bit refcounts, one with a snapshot),
/// with 512- and 1024-byte clusters so they stay a few KiB.
pub fn qcow2_seeds() -> Vec<Vec<u8>> {
    [
        &include_bytes!("../../fuzz/seeds/qcow2/qemu-img-v3-data.qcow2")[..],
        include_bytes!("../../fuzz/seeds/qcow2/qemu-img-v2.qcow2"),
        include_bytes!("../../fuzz/seeds/qcow2/qemu-img-v3-lazy.qcow2"),
        include_bytes!("../../fuzz/seeds/qcow2/qemu-img-snap.qcow2"),
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The seeds open through the memfd and read back what qemu-io wrote.
    #[test]
    fn seed_images_open_and_read() {
        let (_file, path) = memfd(&qcow2_seeds()[0]).unwrap();
        let mut disk = Qcow2Image::open(&path, true).unwrap();
        let mut buf = [0u8; 4];
        disk.read_at(&mut buf, 300 << 10).unwrap();
        assert_eq!(buf, [0xaa; 4]);
        let (file, path) = memfd(&qcow2_seeds()[3]).unwrap();
        assert_eq!(snapshot::list(&path).unwrap().len(), 1);
        assert_eq!(check::check(&file).unwrap().exit_code(), 0);
    }
}
