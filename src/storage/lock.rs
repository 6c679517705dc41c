//! Image locking with open-file-description (OFD) locks, byte for byte as
//! QEMU takes them (`block/file-posix.c`), so Vireo, QEMU and `qemu-img`
//! see each other's use of an image.
//!
//! QEMU gives each block permission a lock byte: 100 + n while it holds
//! permission n, 200 + n while it forbids others that permission, all as
//! shared (read) locks. n is 0 for reading, 1 for writing, 3 for resizing.
//! Having taken its bytes, an opener tests for another holder of the
//! bytes that conflict with them and lets go if there is one. So:
//! - a writer (a running VM's disk) holds 100, 101, 103 and forbids
//!   writing and resizing (201, 203);
//! - a reader (a read-only disk, a backing file, `qemu-img info`) holds 100
//!   and forbids the same;
//! - two writers, or a writer and a reader, refuse each other, readers share;
//! - `qemu-img info -U` (force share) holds only 100 and forbids nothing,
//!   so it reads a running VM's image, as it reads a running QEMU's.
//!
//! The observed bytes (QEMU 7.2, `/proc/locks`): `qemu-io` writing an image
//! holds 100–101, 103, 201, 203; `qemu-io -r` holds 100, 201, 203.
//!
//! OFD locks belong to the open file, not the process, so they survive
//! `fork` correctly and vanish when the VM process dies, leaving no stale
//! lock behind a `kill -9`.

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

/// QEMU's lock byte for holding permission n is `PERM_BASE + n`; for
/// forbidding it to others, `SHARED_BASE + n`.
const PERM_BASE: i64 = 100;
const SHARED_BASE: i64 = 200;
/// QEMU's permission numbers (BLK_PERM_* bits 0, 1 and 3).
const READ: i64 = 0;
const WRITE: i64 = 1;
const RESIZE: i64 = 3;
/// What every Vireo opener forbids others: writing and resizing under it.
const FORBIDDEN: [i64; 2] = [WRITE, RESIZE];

/// Locks `file` as QEMU would for a reader (`read_only`) or a writer;
/// refuses with [`ImageLockError::InUse`] when another opener's use
/// conflicts, and then holds nothing.
pub fn lock_image(file: &File, path: &Path, read_only: bool) -> Result<(), ImageLockError> {
    let held: &[i64] = if read_only {
        &[READ]
    } else {
        &[READ, WRITE, RESIZE]
    };
    take_bytes(file, held).map_err(|source| {
        unlock_all(file);
        let path = path.display().to_string();
        match source.raw_os_error() {
            Some(libc::EAGAIN) | Some(libc::EACCES) => ImageLockError::InUse { path },
            _ => ImageLockError::Io { path, source },
        }
    })
}

/// Takes the bytes for holding `held` and forbidding [`FORBIDDEN`], then
/// looks for a conflicting opener: one that forbids what we hold, or
/// holds what we forbid. A conflict is EAGAIN, as F_OFD_SETLK reports one.
fn take_bytes(file: &File, held: &[i64]) -> std::io::Result<()> {
    let ours = held
        .iter()
        .map(|n| PERM_BASE + n)
        .chain(FORBIDDEN.iter().map(|n| SHARED_BASE + n));
    for byte in ours {
        set_lock(file, byte, libc::F_RDLCK)?;
    }
    let conflicting = held
        .iter()
        .map(|n| SHARED_BASE + n)
        .chain(FORBIDDEN.iter().map(|n| PERM_BASE + n));
    for byte in conflicting {
        if someone_else_holds(file, byte)? {
            return Err(std::io::Error::from_raw_os_error(libc::EAGAIN));
        }
    }
    Ok(())
}

fn lock_of(byte: i64, kind: i32) -> libc::flock {
    libc::flock {
        l_type: kind as i16,
        l_whence: libc::SEEK_SET as i16,
        l_start: byte,
        l_len: 1,
        l_pid: 0, // must be zero for OFD locks
    }
}

/// One byte locked (F_RDLCK) or unlocked (F_UNLCK) for this open file.
fn set_lock(file: &File, byte: i64, kind: i32) -> std::io::Result<()> {
    let lock = lock_of(byte, kind);
    // SAFETY: F_OFD_SETLK reads a valid, initialised `flock` through the
    // pointer and does not keep it; the descriptor is owned by `file`.
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether another open file holds a lock on `byte` (this one's own locks
/// never conflict with themselves).
fn someone_else_holds(file: &File, byte: i64) -> std::io::Result<bool> {
    let mut lock = lock_of(byte, libc::F_WRLCK);
    // SAFETY: F_OFD_GETLK reads and rewrites the valid `flock` through the
    // pointer and does not keep it; the descriptor is owned by `file`.
    let ret = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_GETLK, &mut lock) };
    if ret != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(lock.l_type != libc::F_UNLCK as i16)
}

/// Lets go of every byte this open file locked (after a conflict).
fn unlock_all(file: &File) {
    for byte in (PERM_BASE..PERM_BASE + 4).chain(SHARED_BASE..SHARED_BASE + 4) {
        let _ = set_lock(file, byte, libc::F_UNLCK);
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
