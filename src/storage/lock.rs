//! Image locking with open-file-description (OFD) locks.
//!
//! Like QEMU, a writer takes an exclusive lock and a reader a shared one, so
//! two VMs cannot both write one image, and nobody writes an image a VM is
//! reading. OFD locks belong to the open file, not the process, so they
//! survive `fork` correctly and vanish when the VM process dies, leaving no
//! stale lock behind a `kill -9`.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum ImageLockError {
    #[error("disk image {path} is in use by another VM or program (it holds a lock on it)")]
    InUse { path: String },
    #[error("cannot lock disk image {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Locks all of `file`: shared when `read_only`, exclusive otherwise.
pub fn lock_image(file: &File, path: &Path, read_only: bool) -> Result<(), ImageLockError> {
    let lock = libc::flock {
        l_type: if read_only {
            libc::F_RDLCK
        } else {
            libc::F_WRLCK
        } as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: 0,
        l_len: 0, // to the end of the file, however it grows
        l_pid: 0, // must be zero for OFD locks
    };
    // SAFETY: F_OFD_SETLK reads a valid, initialised `flock` through the
    // pointer and does not keep it; the descriptor is owned by `file`.
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if ret == 0 {
        return Ok(());
    }
    let source = std::io::Error::last_os_error();
    let path = path.display().to_string();
    match source.raw_os_error() {
        Some(libc::EAGAIN) | Some(libc::EACCES) => Err(ImageLockError::InUse { path }),
        _ => Err(ImageLockError::Io { path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn second_writer_is_refused_readers_share() {
        let image = tempfile::NamedTempFile::new().unwrap();
        let path = image.path();
        let first = File::options().read(true).write(true).open(path).unwrap();
        lock_image(&first, path, false).unwrap();
        let second = File::options().read(true).write(true).open(path).unwrap();
        assert!(matches!(
            lock_image(&second, path, false),
            Err(ImageLockError::InUse { .. })
        ));
        assert!(matches!(
            lock_image(&second, path, true),
            Err(ImageLockError::InUse { .. })
        ));
        drop(first);
        let reader_a = File::open(path).unwrap();
        let reader_b = File::open(path).unwrap();
        lock_image(&reader_a, path, true).unwrap();
        lock_image(&reader_b, path, true).unwrap();
    }
}
