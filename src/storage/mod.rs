//! Disk images as the VMM's devices see them: a [`BlockBackend`] per disk.
//!
//! Raw files ([`RawFile`]) and qcow2 images ([`Qcow2Image`]) behind one trait. Images in use
//! are locked with open-file-description locks, as QEMU does, so a second
//! writer is refused instead of corrupting the disk.

mod lock;
mod policy;
pub mod pools;
pub mod qcow2;
mod raw;

pub use lock::{lock_image, ImageLockError};
pub use policy::{CacheMode, DiscardMode, WithPolicy};
pub use qcow2::Qcow2Image;
pub use raw::RawFile;

use std::io;
use std::path::Path;

/// A virtual disk: a flat array of bytes.
///
/// Offsets and lengths are in bytes; callers (IDE, virtio-blk) check them
/// against [`BlockBackend::size`] before calling, and implementations check
/// again and fail with `InvalidInput` rather than touch anything outside.
pub trait BlockBackend: Send {
    /// Virtual size in bytes.
    fn size(&self) -> u64;

    /// Whether writes are refused.
    fn read_only(&self) -> bool;

    /// Fills `buf` from `offset`.
    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()>;

    /// Writes `buf` at `offset`.
    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()>;

    /// Makes every completed write durable.
    fn flush(&mut self) -> io::Result<()>;

    /// Tells the backend the range is unused: it may free the space behind
    /// it (a hole in a raw file, freed clusters in a qcow2 image) or do
    /// nothing. What the range reads afterwards is unspecified (old data
    /// or zeroes), as for a guest's DISCARD.
    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        let _ = (offset, len);
        Ok(())
    }

    /// Makes the range read as zeroes. With `unmap` the backend may free
    /// the space (as [`BlockBackend::discard`] does, but zeroes are
    /// guaranteed); without it the space stays allocated, as a write of
    /// zeroes would leave it. This default writes zeroes.
    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        let _ = unmap;
        write_zero_bytes(self, offset, len)
    }

    /// The unit in which discards free space, in bytes (a power of two,
    /// at least 512): a guest should align its discards to it.
    fn discard_granularity(&self) -> u64 {
        4096
    }

    /// Whether every write is durable when it completes (libvirt's
    /// `cache='writethrough'`), so that a guest need not be offered a
    /// flush command.
    fn writes_through(&self) -> bool {
        false
    }

    /// A stable identifier for the medium (serial numbers, logs).
    fn identity(&self) -> String;
}

/// Writes zeroes over `[offset, offset + len)` of `disk`, 64 KiB at a time.
pub fn write_zero_bytes<B: BlockBackend + ?Sized>(
    disk: &mut B,
    offset: u64,
    len: u64,
) -> io::Result<()> {
    const STEP: u64 = 64 << 10;
    let zeroes = vec![0u8; len.min(STEP) as usize];
    let mut done = 0;
    while done < len {
        let n = (len - done).min(STEP) as usize;
        disk.write_at(&zeroes[..n], offset + done)?;
        done += n as u64;
    }
    Ok(())
}

/// Checks that `[offset, offset + len)` lies inside a disk of `size` bytes.
pub fn check_range(offset: u64, len: usize, size: u64) -> io::Result<()> {
    match offset.checked_add(len as u64) {
        Some(end) if end <= size => Ok(()),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("access at {offset}+{len} is past the end of a {size}-byte disk"),
        )),
    }
}

/// Checks that a change of `len` bytes at `offset` may be made to a disk
/// of `size` bytes: the disk is writable and the range inside it.
pub fn check_writable(read_only: bool, offset: u64, len: u64, size: u64) -> io::Result<()> {
    if read_only {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "read-only disk",
        ));
    }
    let len = usize::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    check_range(offset, len, size)
}

/// Disk image formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFormat {
    Raw,
    Qcow2,
}

impl ImageFormat {
    /// The name `qemu-img` and libvirt use (`raw`, `qcow2`).
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
        }
    }

    /// Parses a format name as `-f`/`-O` and `<driver type=...>` give it.
    pub fn parse(name: &str) -> Option<Self> {
        match name {
            "raw" => Some(Self::Raw),
            "qcow2" => Some(Self::Qcow2),
            _ => None,
        }
    }
}

/// Guesses an image's format from its first bytes: qcow2 by its magic,
/// anything else raw (as QEMU's probing does for the formats Vireo knows).
///
/// Probing is for images the user names; a guest can write a qcow2 magic
/// into a raw disk, so a VM's disks should carry their format explicitly.
pub fn detect_format(path: &Path) -> Result<ImageFormat, OpenError> {
    let file = std::fs::File::open(path).map_err(|source| OpenError::Io {
        path: path.display().to_string(),
        source,
    })?;
    detect_format_of(&file, path)
}

/// [`detect_format`] of a file already open (`path` names it in errors).
pub fn detect_format_of(file: &std::fs::File, path: &Path) -> Result<ImageFormat, OpenError> {
    let mut magic = [0u8; 4];
    let read = std::os::unix::fs::FileExt::read_at(file, &mut magic, 0).map_err(|source| {
        OpenError::Io {
            path: path.display().to_string(),
            source,
        }
    })?;
    Ok(if read == 4 && magic == qcow2::header::MAGIC {
        ImageFormat::Qcow2
    } else {
        ImageFormat::Raw
    })
}

/// Where copying one image's contents into another failed.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("error while reading at byte {offset}: {source}")]
    Read {
        offset: u64,
        #[source]
        source: io::Error,
    },
    #[error("error while writing at byte {offset}: {source}")]
    Write {
        offset: u64,
        #[source]
        source: io::Error,
    },
}

/// The unit in which [`copy_contents`] skips zeros.
const COPY_SPARSE_BLOCK: usize = 64 << 10;

/// Copies the first `size` bytes of `source` into `destination`, which
/// must read as zeros already (a new image): only the runs of 64 KiB
/// blocks with data in them are written, so the copy stays sparse.
/// `progress` hears the bytes done and `size`. Flushes at the end. What
/// `qemu-img convert` and `vol-create-from` do.
pub fn copy_contents(
    source: &mut dyn BlockBackend,
    destination: &mut dyn BlockBackend,
    size: u64,
    progress: &mut dyn FnMut(u64, u64),
) -> Result<(), CopyError> {
    let mut buf = vec![0u8; 2 << 20];
    let mut done = 0;
    while done < size {
        let n = (size - done).min(buf.len() as u64) as usize;
        source
            .read_at(&mut buf[..n], done)
            .map_err(|source| CopyError::Read {
                offset: done,
                source,
            })?;
        let mut at = 0;
        while at < n {
            let block_has_data = |start: usize| {
                buf[start..(start + COPY_SPARSE_BLOCK).min(n)]
                    .iter()
                    .any(|&b| b != 0)
            };
            if !block_has_data(at) {
                at += COPY_SPARSE_BLOCK;
                continue;
            }
            let mut end = at + COPY_SPARSE_BLOCK;
            while end < n && block_has_data(end) {
                end += COPY_SPARSE_BLOCK;
            }
            let end = end.min(n);
            let offset = done + at as u64;
            destination
                .write_at(&buf[at..end], offset)
                .map_err(|source| CopyError::Write { offset, source })?;
            at = end;
        }
        done += n as u64;
        progress(done, size);
    }
    destination.flush().map_err(|source| CopyError::Write {
        offset: size,
        source,
    })
}

/// Errors from opening an image.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot open disk image {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error(transparent)]
    Locked(#[from] ImageLockError),
    #[error("disk image {path} has format {format}, which Vireo cannot read yet")]
    UnsupportedFormat { path: String, format: String },
}

/// The size the guest sees of the image at `path`: a qcow2 image's
/// virtual size, a raw file's length.
pub fn virtual_size(path: &Path) -> std::io::Result<u64> {
    virtual_size_of(&std::fs::File::open(path)?, path)
}

/// [`virtual_size`] of a file already open (`path` names it in errors).
pub fn virtual_size_of(file: &std::fs::File, path: &Path) -> std::io::Result<u64> {
    match detect_format_of(file, path) {
        Ok(ImageFormat::Qcow2) => qcow2::header::Qcow2Header::read(file)
            .map(|header| header.size)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e.to_string())),
        _ => Ok(file.metadata()?.len()),
    }
}

/// Opens the image at `path` in `format`, locked against other writers.
pub fn open_image(
    path: &Path,
    format: ImageFormat,
    read_only: bool,
) -> Result<Box<dyn BlockBackend>, OpenError> {
    match format {
        ImageFormat::Raw => Ok(Box::new(RawFile::open(path, read_only)?)),
        ImageFormat::Qcow2 => Ok(Box::new(Qcow2Image::open(path, read_only)?)),
    }
}

/// [`open_image`], or, when another process opened the file and passed
/// it in (`passed`, a descriptor a confined VM process may use where it
/// may not open `path`), the image in a duplicate of that file, known as
/// `path`. It is locked as `open_image` locks; a qcow2 image's backing
/// files are still opened by name.
pub fn open_image_passed(
    path: &Path,
    passed: Option<&std::fs::File>,
    format: ImageFormat,
    read_only: bool,
) -> Result<Box<dyn BlockBackend>, OpenError> {
    let Some(passed) = passed else {
        return open_image(path, format, read_only);
    };
    let file = passed.try_clone().map_err(|source| OpenError::Io {
        path: path.display().to_string(),
        source,
    })?;
    match format {
        ImageFormat::Raw => Ok(Box::new(RawFile::from_file(file, path, read_only)?)),
        ImageFormat::Qcow2 => Ok(Box::new(Qcow2Image::from_file(file, path, read_only)?)),
    }
}
