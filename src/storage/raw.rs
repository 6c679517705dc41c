//! Raw images: the file is the disk, byte for byte. A discard punches a
//! hole in the file (`FALLOC_FL_PUNCH_HOLE`), as QEMU's file driver does,
//! so the space goes back to the host; write-zeroes punches too when it
//! may unmap, and otherwise zeroes the range in place
//! (`FALLOC_FL_ZERO_RANGE`, or written zeroes where the file system has
//! neither).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{check_range, check_writable, lock_image, write_zero_bytes, BlockBackend, OpenError};

pub struct RawFile {
    file: File,
    size: u64,
    read_only: bool,
    path: String,
}

impl RawFile {
    /// Opens and locks `path` (shared for read-only, exclusive for writing).
    pub fn open(path: &Path, read_only: bool) -> Result<Self, OpenError> {
        let shown = path.display().to_string();
        let io_error = |source| OpenError::Io {
            path: shown.clone(),
            source,
        };
        let file = OpenOptions::new()
            .read(true)
            .write(!read_only)
            .open(path)
            .map_err(io_error)?;
        lock_image(&file, path, read_only)?;
        let size = file.metadata().map_err(io_error)?.len();
        Ok(Self {
            file,
            size,
            read_only,
            path: shown,
        })
    }
}

/// `fallocate(2)` on `file` with `mode` (and KEEP_SIZE: the disk never
/// grows); `Ok(false)` where the file system or device cannot do it.
fn fallocate(file: &File, mode: i32, offset: u64, len: u64) -> io::Result<bool> {
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return Err(io::Error::from(io::ErrorKind::InvalidInput));
    };
    loop {
        // SAFETY: fallocate on a descriptor we own; it touches no memory of ours.
        let ret = unsafe {
            libc::fallocate(
                file.as_raw_fd(),
                mode | libc::FALLOC_FL_KEEP_SIZE,
                offset,
                len,
            )
        };
        if ret == 0 {
            return Ok(true);
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::ENOTTY | libc::ENODEV) => {
                return Ok(false)
            }
            _ => return Err(error),
        }
    }
}

impl BlockBackend for RawFile {
    fn size(&self) -> u64 {
        self.size
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(offset, buf.len(), self.size)?;
        self.file.read_exact_at(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only disk",
            ));
        }
        check_range(offset, buf.len(), self.size)?;
        self.file.write_all_at(buf, offset)
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        self.file.sync_data()
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        check_writable(self.read_only, offset, len, self.size)?;
        if len > 0 {
            // Where holes cannot be punched, a discard does nothing.
            fallocate(&self.file, libc::FALLOC_FL_PUNCH_HOLE, offset, len)?;
        }
        Ok(())
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        check_writable(self.read_only, offset, len, self.size)?;
        if len == 0 {
            return Ok(());
        }
        // A hole reads as zeroes, in a file and on a block device alike.
        if unmap && fallocate(&self.file, libc::FALLOC_FL_PUNCH_HOLE, offset, len)? {
            return Ok(());
        }
        if fallocate(&self.file, libc::FALLOC_FL_ZERO_RANGE, offset, len)? {
            return Ok(());
        }
        write_zero_bytes(self, offset, len)
    }

    fn identity(&self) -> String {
        self.path.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_inside_the_file_only() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(4096).unwrap();
        let mut disk = RawFile::open(file.path(), false).unwrap();
        assert_eq!(disk.size(), 4096);
        disk.write_at(b"hello", 512).unwrap();
        let mut back = [0; 5];
        disk.read_at(&mut back, 512).unwrap();
        assert_eq!(&back, b"hello");
        assert!(disk.read_at(&mut [0; 2], 4095).is_err());
        assert!(disk.write_at(&[0; 1], u64::MAX).is_err());
        disk.flush().unwrap();
    }

    /// Allocated 4 KiB blocks of `path`, from `stat`.
    fn allocated_blocks(path: &Path) -> u64 {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata(path).unwrap().blocks() / 8
    }

    #[test]
    fn discard_and_unmapping_write_zeroes_punch_holes() {
        let file = tempfile::NamedTempFile::new().unwrap();
        let mut disk_bytes = vec![0x5a; 256 << 10];
        disk_bytes[0] = 1;
        std::fs::write(file.path(), &disk_bytes).unwrap();
        let mut disk = RawFile::open(file.path(), false).unwrap();
        let full = allocated_blocks(file.path());
        assert!(full >= 64, "{full} blocks");

        disk.discard(64 << 10, 64 << 10).unwrap();
        disk.write_zeroes(128 << 10, 64 << 10, true).unwrap();
        disk.write_zeroes(192 << 10, 4096, false).unwrap();
        disk.flush().unwrap();
        // tmpfs and every Linux disk file system punch holes.
        assert_eq!(allocated_blocks(file.path()), full - 32);
        assert_eq!(disk.size(), 256 << 10, "the file keeps its size");
        let mut back = vec![0xff; 256 << 10];
        disk.read_at(&mut back, 0).unwrap();
        assert_eq!(&back[1..64 << 10], &disk_bytes[1..64 << 10]);
        assert!(back[64 << 10..(192 << 10) + 4096].iter().all(|&b| b == 0));
        assert!(back[(192 << 10) + 4096..].iter().all(|&b| b == 0x5a));

        assert!(disk.discard(255 << 10, 2 << 10).is_err(), "past the end");
        assert!(disk.write_zeroes(u64::MAX, 1, true).is_err());
        drop(disk);
        let mut read_only = RawFile::open(file.path(), true).unwrap();
        assert_eq!(
            read_only.discard(0, 4096).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
    }

    #[test]
    fn read_only_disks_refuse_writes() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(512).unwrap();
        let mut disk = RawFile::open(file.path(), true).unwrap();
        assert!(disk.read_only());
        assert_eq!(
            disk.write_at(&[1], 0).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
    }
}
