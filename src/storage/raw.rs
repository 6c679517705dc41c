//! Raw images: the file is the disk, byte for byte.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{check_range, lock_image, BlockBackend, OpenError};

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
