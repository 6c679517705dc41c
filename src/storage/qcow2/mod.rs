//! qcow2 images (QEMU's `docs/interop/qcow2.txt`, versions 2 and 3).
//!
//! The cluster mapping, allocation, copy-on-write from backing files, zero
//! clusters and discard are imago's (a qcow2 library by a QEMU block-layer
//! maintainer, built here fully synchronous). Vireo adds around it:
//! - its own header parser ([`header`]), run before imago sees the file, so a
//!   truncated or corrupted image is refused with a clear sentence and
//!   nothing is written to it;
//! - OFD locks on the image (exclusive for writing, shared for reading) and
//!   shared locks on every file of its backing chain, as QEMU takes them;
//! - a bounded backing chain (no loops through symlinks or renamed files);
//! - `create` with QEMU's options (preallocation off/metadata/falloc/full with
//!   progress, cluster size, refcount bits, lazy refcounts), `resize`, and a
//!   refcount [`check`] like `qemu-img check`.
//!
//! - holes punched in the file where a discard freed clusters (`punch.rs`),
//!   so the host gets the space back, as QEMU's `pass-discard-request`;
//! - internal snapshots of a shut-off image ([`snapshot`]: create, apply,
//!   delete, list, as QEMU stores them); a guest's writes to clusters a
//!   snapshot shares are copied first (imago honours the COPIED flag).
//!
//! Not supported: encryption, external data files, extended L2 entries,
//! zstd compression, shrinking an image that has snapshots, creating
//! version 2 images, repairing (`check -r`), and writing to images whose
//! refcounts are damaged or were left dirty by lazy refcounts (run
//! `qemu-img check -r all`).

pub mod check;
pub mod commit;
mod editor;
pub mod header;
mod punch;
pub mod snapshot;

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use imago::format::gate::ImplicitOpenGate;
use imago::format::PreallocateMode;
use imago::qcow2::Qcow2;
use imago::{FormatAccess, FormatCreateBuilder, FormatDriverBuilder, StorageOpenOptions};

use super::{check_range, check_writable, lock_image, BlockBackend, OpenError};
use header::{HeaderError, Qcow2Header, COMPATIBLE_FEATURES_OFFSET, COMPAT_LAZY_REFCOUNTS};

pub use check::{check, CheckReport};

/// imago's storage for a plain file.
type Storage = imago::file::File;

/// Where the header keeps the number of L1 entries (qcow2.txt, bytes 36-39).
const L1_SIZE_OFFSET: u64 = 36;

/// Longest backing chain Vireo follows; a longer one is almost surely a loop.
const MAX_CHAIN_DEPTH: usize = 32;

/// How much of a new image is allocated up front (`-o preallocation=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Preallocation {
    /// Nothing: clusters are allocated on first write.
    #[default]
    Off,
    /// L2 tables and data clusters mapped, the file left sparse.
    Metadata,
    /// Like metadata, with the data area reserved by `fallocate`.
    Falloc,
    /// Like metadata, with zeroes written over the whole data area.
    Full,
}

impl Preallocation {
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Metadata => "metadata",
            Self::Falloc => "falloc",
            Self::Full => "full",
        }
    }

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "off" => Self::Off,
            "metadata" => Self::Metadata,
            "falloc" => Self::Falloc,
            "full" => Self::Full,
            _ => return None,
        })
    }
}

/// Options for a new qcow2 image, as `qemu-img create -o` takes them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreateOptions {
    pub size: u64,
    pub cluster_size: u32,
    pub refcount_bits: u32,
    pub lazy_refcounts: bool,
    pub preallocation: Preallocation,
    /// Backing file name as written into the header (relative to the image).
    pub backing_file: Option<String>,
    /// "raw" or "qcow2".
    pub backing_format: Option<String>,
}

impl Default for CreateOptions {
    fn default() -> Self {
        Self {
            size: 0,
            cluster_size: 65536,
            refcount_bits: 16,
            lazy_refcounts: false,
            preallocation: Preallocation::Off,
            backing_file: None,
            backing_format: None,
        }
    }
}

/// Errors from creating or resizing an image.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("{0}")]
    Io(#[from] io::Error),
}

/// A qcow2 image open for the VMM.
pub struct Qcow2Image {
    access: FormatAccess<Storage>,
    /// The image file once more (the same open file, duplicated): where
    /// freed clusters are punched out and their refcounts read back.
    file: File,
    header: Qcow2Header,
    read_only: bool,
    path: String,
}

impl std::fmt::Debug for Qcow2Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Qcow2Image")
            .field("path", &self.path)
            .field("read_only", &self.read_only)
            .finish()
    }
}

fn open_error(path: &Path, source: io::Error) -> OpenError {
    OpenError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn header_error(path: &Path, error: HeaderError) -> OpenError {
    match error {
        HeaderError::Io(source) => open_error(path, source),
        other => open_error(path, io::Error::new(io::ErrorKind::InvalidData, other)),
    }
}

/// Opens and locks a file of an image chain (shared when `read_only`).
fn open_locked(path: &Path, read_only: bool) -> Result<File, OpenError> {
    let file = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .map_err(|e| open_error(path, e))?;
    lock_image(&file, path, read_only)?;
    Ok(file)
}

/// Wraps a locked file for imago, remembering its path so relative
/// backing file names resolve against the image's directory.
fn storage(file: File, path: &Path, writable: bool) -> io::Result<Storage> {
    let options = StorageOpenOptions::new().filename(path).write(writable);
    Storage::from_open_file(file, options)
}

/// Opens backing files for imago: each locked shared, each qcow2 header
/// checked by Vireo first, the chain at most [`MAX_CHAIN_DEPTH`] deep.
struct ChainGate {
    depth: usize,
}

impl ImplicitOpenGate<Storage> for ChainGate {
    fn open_format<F: FormatDriverBuilder<Storage>>(
        &mut self,
        builder: F,
    ) -> io::Result<FormatAccess<Storage>> {
        if self.depth >= MAX_CHAIN_DEPTH {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("backing chain is longer than {MAX_CHAIN_DEPTH} images (a loop?)"),
            ));
        }
        let next = ChainGate {
            depth: self.depth + 1,
        };
        Ok(FormatAccess::new(builder.write(false).open(next)?))
    }

    fn open_storage(&mut self, options: StorageOpenOptions) -> io::Result<Storage> {
        let path = options
            .get_filename()
            .map(Path::to_path_buf)
            .ok_or_else(|| io::Error::other("backing file without a name"))?;
        let file = open_locked(&path, true).map_err(io::Error::other)?;
        let mut magic = [0u8; 4];
        if file.read_at(&mut magic, 0).ok() == Some(4) && magic == header::MAGIC {
            Qcow2Header::read(&file).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        }
        storage(file, &path, false)
    }
}

/// Why the image in `file` must not be written, if its refcounts are
/// damaged: a cluster in use whose stored refcount is too low would be
/// handed out again and overwritten (`qemu-img check` calls the image
/// corrupt), and damaged refcount blocks can send the allocator into
/// unbounded recursion, which would abort the VM. QEMU checks such an image
/// only when it was left dirty; Vireo checks every image it opens for
/// writing, because the check is a read of the metadata alone. A file too
/// large to count in memory (past 8 TiB) is opened unchecked.
fn refcount_damage(file: &File) -> Option<String> {
    let report = check(file).ok()?;
    // A wrong COPIED flag alone is the window a crash during an internal
    // snapshot leaves (`snapshot`); it costs a copy or a leak, and the
    // allocator does not trip over it.
    let refcount_errors = report.corruptions - report.copied_flag_errors;
    let what = if refcount_errors > 0 {
        format!("image has {refcount_errors} refcount error(s)")
    } else if report.check_errors > 0 {
        "part of the image's metadata cannot be read".to_string()
    } else {
        return None;
    };
    Some(format!(
        "{what} ('qemu-img check' lists them); writing to it could overwrite data, \
         so it can only be opened read-only until 'qemu-img check -r all' repairs it"
    ))
}

impl Qcow2Image {
    /// Opens and locks the image at `path` with its backing chain.
    pub fn open(path: &Path, read_only: bool) -> Result<Self, OpenError> {
        Self::open_file(open_locked(path, read_only)?, path, read_only)
    }

    /// Locks and opens the image in `file`, opened elsewhere (for writing
    /// too, unless `read_only`), known as `path`.
    pub fn from_file(file: File, path: &Path, read_only: bool) -> Result<Self, OpenError> {
        lock_image(&file, path, read_only)?;
        Self::open_file(file, path, read_only)
    }

    /// Opens the image in `file`, already open and locked (at `path`).
    fn open_file(file: File, path: &Path, read_only: bool) -> Result<Self, OpenError> {
        let header = Qcow2Header::read(&file).map_err(|e| header_error(path, e))?;
        let refuse = |message: &str| {
            Err(open_error(
                path,
                io::Error::new(io::ErrorKind::InvalidData, message.to_string()),
            ))
        };
        if header.dirty() {
            return refuse(
                "image was not closed cleanly (lazy refcounts); repair it with 'qemu-img check -r all'",
            );
        }
        if header.corrupt() && !read_only {
            return refuse("image is marked corrupt; it can only be opened read-only");
        }
        if !read_only {
            if let Some(damage) = refcount_damage(&file) {
                return refuse(&damage);
            }
        }
        let own = file.try_clone().map_err(|e| open_error(path, e))?;
        let metadata = storage(file, path, !read_only).map_err(|e| open_error(path, e))?;
        let qcow2 = Qcow2::<Storage>::builder(metadata)
            .write(!read_only)
            .open(ChainGate { depth: 1 })
            .map_err(|e| open_error(path, e))?;
        Ok(Self {
            access: FormatAccess::new(qcow2),
            file: own,
            header,
            read_only,
            path: path.display().to_string(),
        })
    }

    /// The header as it was when the image was opened.
    pub fn header(&self) -> &Qcow2Header {
        &self.header
    }

    /// Creates (or overwrites) a qcow2 image at `path`. `progress` is called
    /// with the percentage done while preallocating.
    pub fn create(
        path: &Path,
        options: &CreateOptions,
        progress: &mut dyn FnMut(f64),
    ) -> Result<(), CreateError> {
        let invalid = |m: String| Err(CreateError::Invalid(m));
        let cs = options.cluster_size;
        if !cs.is_power_of_two() || !(512..=2 << 20).contains(&cs) {
            return invalid("Cluster size must be a power of two between 512 and 2048k".into());
        }
        if !options.refcount_bits.is_power_of_two() || options.refcount_bits > 64 {
            return invalid(
                "Refcount width must be a power of two and may not exceed 64 bits".into(),
            );
        }
        if options.backing_file.is_some() && options.preallocation != Preallocation::Off {
            return invalid(
                "Backing file and preallocation can only be used at the same time if extended_l2 is on"
                    .into(),
            );
        }
        if options.size > (1 << 62) {
            return invalid(format!("Image size is too large: {}", options.size));
        }
        if options
            .backing_file
            .as_ref()
            .is_some_and(|b| b.len() > 1023)
        {
            return invalid("Backing file name too long".into());
        }
        // QEMU rounds the virtual size up to whole 512-byte sectors.
        let size = options.size.next_multiple_of(512);

        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false) // not before the lock: a VM may be using it
            .open(path)
            .map_err(|e| open_error(path, e))?;
        lock_image(&file, path, false).map_err(OpenError::from)?;
        file.set_len(0)?;
        let mut builder = Qcow2::<Storage>::create_builder(storage(file.try_clone()?, path, true)?)
            .cluster_size(cs as usize)
            .refcount_width(options.refcount_bits as usize)
            .size(0);
        if let (Some(name), format) = (&options.backing_file, &options.backing_format) {
            builder = builder.backing(name.clone(), format.clone().unwrap_or_default());
        }
        builder.create()?;
        if options.lazy_refcounts {
            // imago updates refcounts eagerly, which a lazy-refcounts image
            // allows; the bit tells QEMU it may defer them.
            let mut bits = [0u8; 8];
            file.read_exact_at(&mut bits, COMPATIBLE_FEATURES_OFFSET)?;
            let value = u64::from_be_bytes(bits) | COMPAT_LAZY_REFCOUNTS;
            file.write_all_at(&value.to_be_bytes(), COMPATIBLE_FEATURES_OFFSET)?;
        }
        // The lock is held from here to the end through this same open
        // file: closing it and opening the path again would let a child
        // that another thread forks in between (holding a copy of the fd
        // until it execs) keep the lock, and the reopen fail as "in use".
        let locked = file.try_clone()?;

        // The size is set by growing the empty image, which is where imago
        // preallocates metadata and falloc; growing in steps gives the
        // progress. Full preallocation writes zeroes in order instead, which
        // also keeps the data clusters in guest order in the file.
        let mut image = Self::open_file(file, path, false)?;
        let mode = match options.preallocation {
            Preallocation::Off | Preallocation::Full => PreallocateMode::None,
            Preallocation::Metadata => PreallocateMode::FormatAllocate,
            Preallocation::Falloc => PreallocateMode::FullAllocate,
        };
        let steps: u64 = if mode == PreallocateMode::None {
            1
        } else {
            100
        };
        let step = size
            .div_ceil(steps)
            .next_multiple_of(u64::from(cs))
            .max(u64::from(cs));
        let mut grown = 0;
        while grown < size {
            grown = (grown + step).min(size);
            image.access.resize_grow(grown, mode)?;
            if mode != PreallocateMode::None {
                progress(grown as f64 * 100.0 / size as f64);
            }
        }
        if options.preallocation == Preallocation::Full {
            let zeroes = vec![0u8; (1 << 20).max(cs as usize)];
            let mut done = 0;
            while done < size {
                let n = (size - done).min(zeroes.len() as u64) as usize;
                image.access.write(&zeroes[..n], done)?;
                done += n as u64;
                progress(done as f64 * 100.0 / size as f64);
            }
        }
        image.flush()?;
        drop(image);
        let header = Qcow2Header::read(&locked)
            .map_err(|e| CreateError::Invalid(format!("the new image does not read back: {e}")))?;
        // QEMU gives a new image only the L1 entries its size needs and
        // ends the file right after them; imago fills the L1 table's whole
        // cluster. With nothing allocated yet every entry is zero, so the
        // table is cut to QEMU's length and the file with it, and a volume
        // is as long as qemu-img makes it (`vol-info --physical`). Only
        // when the L1 table is the last thing in the file: nothing else is cut.
        let cluster = u64::from(cs);
        let needed = size.div_ceil(cluster * (cluster / 8));
        let l1_offset = header.l1_table_offset;
        let file = locked;
        if options.preallocation == Preallocation::Off
            && needed > 0
            && needed < u64::from(header.l1_size)
            && file.metadata()?.len() == l1_offset + cluster
            && u64::from(header.l1_size) * 8 <= cluster
        {
            let mut l1 = vec![0u8; (u64::from(header.l1_size) * 8) as usize];
            file.read_exact_at(&mut l1, l1_offset)?;
            if l1.iter().all(|&b| b == 0) {
                file.write_all_at(&(needed as u32).to_be_bytes(), L1_SIZE_OFFSET)?;
                file.set_len(l1_offset + needed * 8)?;
                file.sync_all()?;
            }
        }
        Ok(())
    }

    /// Grows or shrinks the virtual disk to `new_size` bytes.
    pub fn resize(&mut self, new_size: u64) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only disk",
            ));
        }
        if self.header.nb_snapshots > 0 && new_size < self.size() {
            // The snapshots' L1 tables still map the clusters past the new
            // end; QEMU refuses this too.
            return Err(io::Error::new(
                io::ErrorKind::Unsupported,
                "cannot shrink an image that has internal snapshots",
            ));
        }
        self.access.resize(new_size, PreallocateMode::None)?;
        self.flush()
    }

    /// The host clusters mapping a guest range, before it is discarded.
    fn mapped_clusters(&self, offset: u64, len: u64) -> io::Result<Vec<punch::ClusterRun>> {
        punch::mapped_clusters(&self.access, offset, len, self.header.cluster_size())
    }

    /// After a discard: writes the L2 tables and refcounts back to the
    /// file (no fsync, in the order write_at explains), then punches the
    /// clusters of `mapped` that nothing references any more. A failed
    /// punch leaves the space allocated, as in QEMU; the discard stands.
    fn punch_freed(&mut self, mapped: &[punch::ClusterRun]) -> io::Result<()> {
        self.access.flush()?;
        let (cluster_size, bits) = (self.header.cluster_size(), self.header.refcount_bits());
        if let Err(error) = punch::punch_unreferenced(&self.file, mapped, cluster_size, bits) {
            crate::guest_warn!("{}: freed clusters stay allocated: {error}", self.path);
        }
        Ok(())
    }
}

impl BlockBackend for Qcow2Image {
    fn size(&self) -> u64 {
        self.access.size()
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(offset, buf.len(), self.size())?;
        self.access.read(buf, offset)
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                "read-only disk",
            ));
        }
        check_range(offset, buf.len(), self.size())?;
        self.access.write(buf, offset)?;
        // Write the metadata caches back now (no fsync): imago orders L2
        // after refcount blocks, but can leave a new L1 entry on disk
        // ahead of the refcount block that counts its L2 table, so a
        // `kill -9` in between left an image qemu-img check calls
        // corrupt (tests/crash.rs caught it). After this, a crash loses
        // at most what the guest had not flushed, and leaks at worst.
        self.access.flush()
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.read_only {
            return Ok(());
        }
        // Metadata caches out to the file, then the file to the disk.
        self.access.flush()?;
        self.access.sync()
    }

    fn discard(&mut self, offset: u64, len: u64) -> io::Result<()> {
        check_writable(self.read_only, offset, len, self.size())?;
        // Version 2 has no zero flag, so a discarded cluster would show the
        // backing file again; QEMU ignores such discards too.
        if self.header.version < 3 {
            return Ok(());
        }
        // Whole clusters become zero clusters and their refcounts drop, as
        // QEMU's qcow2 discard does; the parts of a cluster at either end
        // stay as they are. Those no longer used are punched out.
        let mapped = self.mapped_clusters(offset, len)?;
        self.access.discard_to_any(offset, len)?;
        self.punch_freed(&mapped)
    }

    /// Only whole clusters are freed.
    fn discard_granularity(&self) -> u64 {
        self.header.cluster_size()
    }

    fn write_zeroes(&mut self, offset: u64, len: u64, unmap: bool) -> io::Result<()> {
        check_writable(self.read_only, offset, len, self.size())?;
        if self.header.version < 3 {
            return super::write_zero_bytes(self, offset, len);
        }
        if unmap {
            // Zero clusters whose data clusters are freed (and punched out);
            // partial clusters at the ends get written zeroes.
            let mapped = self.mapped_clusters(offset, len)?;
            self.access.discard_to_zero(offset, len)?;
            self.punch_freed(&mapped)
        } else {
            // Zero clusters that keep their allocation (preallocated zeroes).
            self.access.write_zeroes(offset, len)?;
            self.access.flush()
        }
    }

    fn identity(&self) -> String {
        self.path.clone()
    }
}

impl Drop for Qcow2Image {
    fn drop(&mut self) {
        if !self.read_only {
            if let Err(error) = self.flush() {
                tracing::error!("cannot flush {}: {error}", self.path);
            }
        }
    }
}

/// Creates a qcow2 overlay at `target` in front of `backing` (an image in
/// `backing_format`, `raw` or `qcow2`), of the same virtual size: the
/// overlay takes the writes and reads the rest from `backing`, which stays
/// as it is. The header names `backing` by the path given, as qemu-img
/// does. A `target` that exists is refused, never overwritten.
pub fn create_overlay(
    backing: &Path,
    backing_format: &str,
    target: &Path,
) -> Result<(), CreateError> {
    if target.exists() {
        return Err(CreateError::Invalid(format!(
            "{} already exists",
            target.display()
        )));
    }
    let file = File::open(backing)?;
    // By the declared format, never by probing: a raw disk whose guest
    // wrote a qcow2 header at its start is still raw.
    let size = match backing_format {
        "raw" => file.metadata()?.len(),
        "qcow2" => {
            Qcow2Header::read(&file)
                .map_err(|e| CreateError::Invalid(format!("{}: {e}", backing.display())))?
                .size
        }
        other => {
            return Err(CreateError::Invalid(format!(
                "cannot put an overlay in front of a {other} image"
            )))
        }
    };
    let options = CreateOptions {
        size,
        backing_file: Some(backing.to_string_lossy().into_owned()),
        backing_format: Some(backing_format.to_string()),
        ..CreateOptions::default()
    };
    Qcow2Image::create(target, &options, &mut |_| {})
}

/// The backing files under the image at `path`, nearest first, as far as
/// their headers can be read (at most 16 deep); empty for a raw image.
/// The VM process's sandbox lets it read exactly these.
pub fn backing_chain(path: &Path) -> Vec<PathBuf> {
    let mut chain = Vec::new();
    let mut image = path.to_path_buf();
    for _ in 0..16 {
        let Ok(file) = std::fs::File::open(&image) else {
            break;
        };
        let Ok(header) = Qcow2Header::read(&file) else {
            break;
        };
        let Some(backing) = header.backing_file else {
            break;
        };
        image = resolve_backing(&image, &backing);
        chain.push(image.clone());
    }
    chain
}

/// The backing file's path as QEMU resolves it: relative names are relative
/// to the directory of the image that names them.
pub fn resolve_backing(image: &Path, backing: &str) -> PathBuf {
    let backing = Path::new(backing);
    if backing.is_absolute() {
        return backing.to_path_buf();
    }
    match image.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.join(backing),
        _ => backing.to_path_buf(),
    }
}

#[cfg(test)]
mod tests {
    /// A named way to damage an image's bytes.
    type Damage = (&'static str, Box<dyn Fn(&mut Vec<u8>)>);

    use super::*;

    fn create(dir: &Path, name: &str, options: &CreateOptions) -> PathBuf {
        let path = dir.join(name);
        Qcow2Image::create(&path, options, &mut |_| {}).unwrap();
        path
    }

    fn sized(size: u64) -> CreateOptions {
        CreateOptions {
            size,
            ..CreateOptions::default()
        }
    }

    #[test]
    fn writes_read_back_across_reopen_at_odd_offsets() {
        let dir = tempfile::tempdir().unwrap();
        let path = create(dir.path(), "a.qcow2", &sized(4 << 20));
        let mut disk = Qcow2Image::open(&path, false).unwrap();
        assert_eq!(disk.size(), 4 << 20);
        let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7) as u8).collect();
        disk.write_at(&data, 65_000).unwrap(); // spans three clusters
        disk.write_at(&[0xab; 512], (4 << 20) - 512).unwrap();
        disk.flush().unwrap();
        drop(disk);
        let mut disk = Qcow2Image::open(&path, true).unwrap();
        let mut back = vec![0; data.len()];
        disk.read_at(&mut back, 65_000).unwrap();
        assert_eq!(back, data);
        let mut untouched = [1u8; 4096];
        disk.read_at(&mut untouched, 1 << 20).unwrap();
        assert_eq!(untouched, [0; 4096]);
        assert!(disk.read_at(&mut [0; 2], (4 << 20) - 1).is_err());
        assert_eq!(
            disk.write_at(&[0], 0).unwrap_err().kind(),
            io::ErrorKind::PermissionDenied
        );
        let report = check(&File::open(&path).unwrap()).unwrap();
        assert_eq!(report.messages, Vec::<String>::new());
    }

    #[test]
    fn backing_chain_reads_through_and_copies_on_write() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.raw");
        std::fs::write(&base, vec![0x11; 1 << 20]).unwrap();
        let mid = create(
            dir.path(),
            "mid.qcow2",
            &CreateOptions {
                backing_file: Some("base.raw".into()),
                backing_format: Some("raw".into()),
                ..sized(1 << 20)
            },
        );
        let top = create(
            dir.path(),
            "top.qcow2",
            &CreateOptions {
                backing_file: Some(mid.display().to_string()),
                backing_format: Some("qcow2".into()),
                ..sized(2 << 20)
            },
        );
        let mut disk = Qcow2Image::open(&top, false).unwrap();
        disk.write_at(&[0x22; 512], 1024).unwrap();
        let mut back = vec![0; 4096];
        disk.read_at(&mut back, 0).unwrap();
        assert_eq!(&back[..1024], &[0x11; 1024][..]);
        assert_eq!(&back[1024..1536], &[0x22; 512][..]);
        assert_eq!(&back[1536..], &[0x11; 2560][..]);
        // Past the backing file's end, the disk reads zeroes.
        disk.read_at(&mut back, 1 << 20).unwrap();
        assert_eq!(back, vec![0; 4096]);
        // The backing files are locked shared: nobody can write them now.
        assert!(matches!(
            super::super::RawFile::open(&base, false),
            Err(OpenError::Locked(_))
        ));
        drop(disk);
        assert_eq!(std::fs::read(&base).unwrap(), vec![0x11; 1 << 20]);
    }

    #[test]
    fn discard_reads_back_as_zeroes() {
        let dir = tempfile::tempdir().unwrap();
        let path = create(dir.path(), "d.qcow2", &sized(1 << 20));
        let mut disk = Qcow2Image::open(&path, false).unwrap();
        disk.write_at(&vec![0x55; 1 << 20], 0).unwrap();
        disk.discard(65536, 131072).unwrap();
        let mut back = vec![0; 65536];
        disk.read_at(&mut back, 65536).unwrap();
        assert_eq!(back, vec![0; 65536]);
        disk.read_at(&mut back, 0).unwrap();
        assert_eq!(back, vec![0x55; 65536]);
    }

    /// Discard and write-zeroes free or keep clusters as QEMU does, and the
    /// image stays consistent.
    #[test]
    fn discard_frees_clusters_and_write_zeroes_keeps_them_when_asked() {
        const C: u64 = 65536;
        let dir = tempfile::tempdir().unwrap();
        let path = create(dir.path(), "z.qcow2", &sized(16 * C));
        let mut disk = Qcow2Image::open(&path, false).unwrap();
        disk.write_at(&vec![0x55; 16 * C as usize], 0).unwrap();
        let allocated = |disk: &mut Qcow2Image| {
            disk.flush().unwrap();
            let report = check(&File::open(&path).unwrap()).unwrap();
            assert_eq!(report.messages, Vec::<String>::new());
            report.allocated_clusters
        };
        assert_eq!(allocated(&mut disk), 16);
        let read = |disk: &mut Qcow2Image, offset: u64, len: usize| {
            let mut back = vec![0xee; len];
            disk.read_at(&mut back, offset).unwrap();
            back
        };

        // Two whole clusters freed; a discard inside one cluster changes nothing.
        disk.discard(C, 2 * C).unwrap();
        disk.discard(6 * C + 512, 1024).unwrap();
        assert_eq!(allocated(&mut disk), 14);
        assert_eq!(read(&mut disk, C, 2 * C as usize), vec![0; 2 * C as usize]);
        assert_eq!(read(&mut disk, 6 * C, 4096), vec![0x55; 4096]);

        // Zeroes that keep the cluster allocated.
        disk.write_zeroes(3 * C, C, false).unwrap();
        assert_eq!(allocated(&mut disk), 14);
        assert_eq!(read(&mut disk, 3 * C, C as usize), vec![0; C as usize]);

        // Zeroes that may unmap: the whole cluster is freed, the partial
        // one after it is zeroed in place.
        disk.write_zeroes(4 * C, C + 512, true).unwrap();
        assert_eq!(allocated(&mut disk), 13);
        assert_eq!(
            read(&mut disk, 4 * C, C as usize + 512),
            vec![0; C as usize + 512]
        );
        assert_eq!(read(&mut disk, 5 * C + 512, 512), vec![0x55; 512]);

        assert!(disk.discard(15 * C, 2 * C).is_err(), "past the end");
        drop(disk);
        let mut read_only = Qcow2Image::open(&path, true).unwrap();
        assert!(read_only.write_zeroes(0, 512, true).is_err());
    }

    /// Allocated 512-byte blocks of the file at `path` (`st_blocks`), what
    /// `du` shows a user.
    fn allocated_blocks(path: &Path) -> u64 {
        std::os::unix::fs::MetadataExt::blocks(&std::fs::metadata(path).unwrap())
    }

    /// Runs qemu-img (which must be installed: scripts/setup.sh) and
    /// returns its exit status and what it printed.
    fn qemu_img(args: &[&str]) -> (i32, String) {
        let output = std::process::Command::new("qemu-img")
            .args(args)
            .output()
            .expect("qemu-img is not installed; run `scripts/setup.sh test`");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        (output.status.code().unwrap_or(-1), said)
    }

    /// `qemu-img check` finds nothing wrong, and `qemu-img compare` finds
    /// the image's disk equal to `expected`, byte for byte.
    fn qemu_agrees(path: &Path, expected: &[u8]) {
        let (status, said) = qemu_img(&["check", path.to_str().unwrap()]);
        assert!(
            status == 0 && said.contains("No errors were found"),
            "{status}: {said}"
        );
        let raw = path.with_extension("expected.raw");
        std::fs::write(&raw, expected).unwrap();
        let (status, said) = qemu_img(&[
            "compare",
            "-f",
            "qcow2",
            "-F",
            "raw",
            path.to_str().unwrap(),
            raw.to_str().unwrap(),
        ]);
        assert_eq!(status, 0, "qemu-img compare: {said}");
    }

    /// A discard (and a write-zeroes that may unmap) gives the freed
    /// clusters' space back to the host file system, as QEMU's
    /// pass-discard-request does: the file's allocated blocks drop by the
    /// clusters freed, the disk reads zeroes there, and the image stays
    /// consistent, also after new data lands in the punched clusters.
    #[test]
    fn discard_punches_freed_clusters_out_of_the_file() {
        const C: u64 = 65536;
        let dir = tempfile::tempdir().unwrap();
        let path = create(dir.path(), "p.qcow2", &sized(16 * C));
        let mut expected = vec![0x55; 16 * C as usize];
        let mut disk = Qcow2Image::open(&path, false).unwrap();
        disk.write_at(&expected, 0).unwrap();
        disk.flush().unwrap();
        let before = allocated_blocks(&path);

        // Four whole clusters discarded, two zeroed with unmap, and a
        // discard inside one cluster, which frees nothing.
        disk.discard(C, 4 * C).unwrap();
        disk.write_zeroes(8 * C, 2 * C, true).unwrap();
        disk.discard(12 * C + 512, 1024).unwrap();
        disk.flush().unwrap();
        let after = allocated_blocks(&path);
        eprintln!("st_blocks before {before}, after {after}");
        // Six clusters are 768 blocks; the file system spends a few on the
        // extent tree of a file with more holes (ext4: one 4 KiB block).
        assert!(
            before - after >= 5 * C / 512,
            "six clusters (768 blocks) punched: {before} blocks before, {after} after"
        );
        expected[C as usize..5 * C as usize].fill(0);
        expected[8 * C as usize..10 * C as usize].fill(0);
        let mut back = vec![0xee; expected.len()];
        disk.read_at(&mut back, 0).unwrap();
        assert!(
            back == expected,
            "the disk reads zeroes where it was discarded"
        );
        drop(disk);
        qemu_agrees(&path, &expected);

        // The freed clusters are used again for new data.
        let mut disk = Qcow2Image::open(&path, false).unwrap();
        disk.write_at(&[0x77; 2 * C as usize], 2 * C).unwrap();
        expected[2 * C as usize..4 * C as usize].fill(0x77);
        drop(disk);
        qemu_agrees(&path, &expected);
    }

    /// Clusters an internal snapshot shares keep their space when the
    /// active disk discards them: only the clusters nobody references any
    /// more are punched, and the snapshot reads back intact.
    #[test]
    fn discard_never_punches_clusters_a_snapshot_holds() {
        const C: u64 = 65536;
        let dir = tempfile::tempdir().unwrap();
        let path = create(dir.path(), "s.qcow2", &sized(16 * C));
        let old = vec![0x55; 16 * C as usize];
        let mut disk = Qcow2Image::open(&path, false).unwrap();
        disk.write_at(&old, 0).unwrap();
        drop(disk);
        let new = snapshot::NewSnapshot {
            name: "before".into(),
            ..Default::default()
        };
        snapshot::create(&path, &new).unwrap();

        // Four clusters rewritten after the snapshot are the active disk's
        // own; the other twelve are shared with the snapshot.
        let mut disk = Qcow2Image::open(&path, false).unwrap();
        disk.write_at(&[0x66; 4 * C as usize], 0).unwrap();
        disk.flush().unwrap();
        let before = allocated_blocks(&path);
        disk.discard(0, 16 * C).unwrap();
        disk.flush().unwrap();
        let after = allocated_blocks(&path);
        eprintln!("st_blocks before {before}, after {after}");
        assert!(
            before - after >= 3 * C / 512,
            "the four unshared clusters (512 blocks) are punched: {before} blocks before, {after} after"
        );
        assert!(
            before - after < 8 * C / 512,
            "the twelve shared clusters keep their space: {before} blocks before, {after} after"
        );
        let mut back = vec![0xee; old.len()];
        disk.read_at(&mut back, 0).unwrap();
        assert!(back.iter().all(|&b| b == 0));
        drop(disk);
        qemu_agrees(&path, &vec![0; old.len()]);

        snapshot::apply(&path, "before").unwrap();
        let mut disk = Qcow2Image::open(&path, true).unwrap();
        disk.read_at(&mut back, 0).unwrap();
        assert!(back == old, "the snapshot's data is intact");
        drop(disk);
        qemu_agrees(&path, &old);
    }

    #[test]
    fn every_preallocation_reads_zeroes_and_checks_clean() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [
            Preallocation::Metadata,
            Preallocation::Falloc,
            Preallocation::Full,
        ] {
            let mut seen = Vec::new();
            let path = dir.path().join(format!("{}.qcow2", mode.name()));
            let options = CreateOptions {
                preallocation: mode,
                ..sized(3 << 20)
            };
            Qcow2Image::create(&path, &options, &mut |p| seen.push(p)).unwrap();
            assert_eq!(seen.last().copied(), Some(100.0));
            let report = check(&File::open(&path).unwrap()).unwrap();
            assert_eq!(report.messages, Vec::<String>::new(), "{mode:?}");
            assert_eq!(report.allocated_clusters, 48, "{mode:?}");
            let mut disk = Qcow2Image::open(&path, true).unwrap();
            let mut back = vec![1; 3 << 20];
            disk.read_at(&mut back, 0).unwrap();
            assert!(back.iter().all(|&b| b == 0));
        }
    }

    #[test]
    fn sizes_round_up_to_sectors_and_long_backing_names_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = create(dir.path(), "odd.qcow2", &sized(1000));
        assert_eq!(Qcow2Image::open(&path, true).unwrap().size(), 1024);
        let options = CreateOptions {
            size: 1 << 20,
            backing_file: Some("b".repeat(1024)),
            backing_format: Some("raw".into()),
            ..CreateOptions::default()
        };
        let refused = Qcow2Image::create(&dir.path().join("long.qcow2"), &options, &mut |_| {});
        assert!(matches!(refused, Err(CreateError::Invalid(_))));
    }

    #[test]
    fn resize_grows_and_shrinks() {
        let dir = tempfile::tempdir().unwrap();
        let path = create(dir.path(), "r.qcow2", &sized(1 << 20));
        let mut disk = Qcow2Image::open(&path, false).unwrap();
        disk.write_at(&[7; 512], 0).unwrap();
        disk.resize(10 << 30).unwrap();
        assert_eq!(disk.size(), 10 << 30);
        disk.write_at(&[8; 512], (10 << 30) - 512).unwrap();
        disk.resize(1 << 20).unwrap();
        drop(disk);
        let disk = Qcow2Image::open(&path, true).unwrap();
        assert_eq!(disk.size(), 1 << 20);
        assert_eq!(check(&File::open(&path).unwrap()).unwrap().exit_code(), 0);
    }

    #[test]
    fn corrupted_images_are_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = create(dir.path(), "c.qcow2", &sized(1 << 20));
        {
            let mut disk = Qcow2Image::open(&path, false).unwrap();
            disk.write_at(&[9; 4096], 0).unwrap();
        }
        let good = std::fs::read(&path).unwrap();
        let damages: Vec<Damage> = vec![
            ("truncated to the header", Box::new(|d| d.truncate(100))),
            ("truncated to one cluster", Box::new(|d| d.truncate(65536))),
            ("bad version", Box::new(|d| d[7] = 9)),
            ("L1 offset past the end", Box::new(|d| d[40] = 0x7f)),
            ("refcount table past the end", Box::new(|d| d[48] = 0x7f)),
            ("dirty", Box::new(|d| d[79] |= 1)),
            ("huge cluster bits", Box::new(|d| d[23] = 30)),
            ("L1 too small for the size", Box::new(|d| d[24] = 0x7f)),
        ];
        for (what, damage) in damages {
            let mut data = good.clone();
            damage(&mut data);
            std::fs::write(&path, &data).unwrap();
            let error = Qcow2Image::open(&path, false).expect_err(what);
            assert!(!error.to_string().is_empty());
            assert_eq!(
                std::fs::read(&path).unwrap(),
                data,
                "{what}: file was written"
            );
        }
    }

    /// A cluster in use whose refcount says it is free (here the header's)
    /// would be handed out by the next allocation and overwritten: the
    /// image opens read-only, with its data, and never for writing.
    #[test]
    fn an_image_with_damaged_refcounts_opens_only_read_only() {
        let dir = tempfile::tempdir().unwrap();
        let path = create(dir.path(), "r.qcow2", &sized(1 << 20));
        {
            let mut disk = Qcow2Image::open(&path, false).unwrap();
            disk.write_at(&[9; 4096], 0).unwrap();
        }
        let mut data = std::fs::read(&path).unwrap();
        let at = |d: &[u8], offset: usize| {
            u64::from_be_bytes(d[offset..offset + 8].try_into().unwrap()) as usize
        };
        let refblock = at(&data, at(&data, 48));
        data[refblock..refblock + 2].fill(0); // cluster 0's 16-bit refcount
        std::fs::write(&path, &data).unwrap();

        let error = Qcow2Image::open(&path, false).unwrap_err().to_string();
        assert!(error.contains("image has 1 refcount error(s)"), "{error}");
        assert!(error.contains("qemu-img check -r all"), "{error}");
        assert_eq!(std::fs::read(&path).unwrap(), data, "the file was written");
        let mut disk = Qcow2Image::open(&path, true).unwrap();
        let mut buf = [0u8; 4096];
        disk.read_at(&mut buf, 0).unwrap();
        assert_eq!(buf, [9; 4096]);
    }

    #[test]
    fn backing_loops_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let a = dir.path().join("a.qcow2");
        let b = dir.path().join("b.qcow2");
        create(dir.path(), "b.qcow2", &sized(1 << 20));
        create(
            dir.path(),
            "a.qcow2",
            &CreateOptions {
                backing_file: Some("b.qcow2".into()),
                backing_format: Some("qcow2".into()),
                ..sized(1 << 20)
            },
        );
        // Point b back at a by renaming a copy of a over b.
        std::fs::copy(&a, &b).unwrap();
        let error = Qcow2Image::open(&a, true).unwrap_err();
        assert!(error.to_string().contains("loop"), "{error}");
    }

    /// Random damage to the metadata clusters (header, refcount table and
    /// block, L1 and L2 tables) must give errors, never panics or hangs,
    /// in the backend and in `check`.
    #[test]
    fn random_metadata_damage_is_survived() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.qcow2");
        let options = CreateOptions {
            cluster_size: 4096,
            ..sized(4 << 20)
        };
        Qcow2Image::create(&path, &options, &mut |_| {}).unwrap();
        {
            let mut disk = Qcow2Image::open(&path, false).unwrap();
            for i in 0..64u64 {
                disk.write_at(&[i as u8; 4096], i * 65536).unwrap();
            }
        }
        let good = std::fs::read(&path).unwrap();
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut random = move || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        let metadata_end = 8 * 4096;
        let mut opened = 0;
        for round in 0..1500 {
            let mut data = good.clone();
            for _ in 0..1 + random() % 4 {
                let at = (random() % metadata_end) as usize;
                data[at] = random() as u8;
            }
            std::fs::write(&path, &data).unwrap();
            let survived = std::panic::catch_unwind(|| {
                let _ = check(&File::open(&path).unwrap());
                let Ok(mut disk) = Qcow2Image::open(&path, false) else {
                    return false;
                };
                let mut buf = vec![0; 65536];
                for i in 0..64u64 {
                    let _ = disk.read_at(&mut buf, i * 65536);
                }
                for i in 0..8u64 {
                    let _ = disk.write_at(&[1; 8192], i * 300_000);
                }
                let _ = disk.discard(0, 1 << 20);
                let _ = disk.flush();
                true
            });
            match survived {
                Ok(true) => opened += 1,
                Ok(false) => {}
                Err(_) => panic!("round {round} panicked"),
            }
        }
        // Most damage lands in tables the header check does not read.
        assert!(opened > 100, "only {opened} damaged images opened");
    }
}
