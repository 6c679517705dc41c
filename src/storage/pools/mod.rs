//! Storage pools and volumes, as libvirt's directory pools keep them
//! (<https://libvirt.org/storage.html#directory-pool>,
//! <https://libvirt.org/formatstorage.html>).
//!
//! A pool is a directory; its volumes are the files in it. This module is
//! the pool as a directory (its volumes, their creation, resizing, cloning,
//! upload and download) and the pool and volume XML; where definitions are
//! stored and which pools run is [`crate::definitions::pools`].
//!
//! Only `dir` pools exist; no logical, disk, iSCSI, NFS or other backends.

pub mod units;
pub mod volume;
pub mod xml;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub use crate::storage::qcow2::Preallocation;
pub use units::{parse_size, pretty_capacity, SizeError};
pub use volume::{Progress, Zeros};
pub use xml::{Permissions, PoolDef, PoolSpace, VolumeDef, VolumeFormat, XmlError};

use crate::storage::qcow2::{CreateError as Qcow2CreateError, CreateOptions};
use crate::storage::{lock_image, ImageFormat, ImageLockError, Qcow2Image};

/// Mode of a pool directory `pool-build` creates, libvirt's
/// `VIR_STORAGE_DEFAULT_POOL_PERM_MODE`.
pub const POOL_DIR_MODE: u32 = 0o711;

/// The pool defined on first use.
pub const DEFAULT_POOL: &str = "default";

/// Errors from pool and volume operations; each says what to do next.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No definition with that name.
    #[error("pool '{0}' does not exist; list pools with `vireo pool-list --all`")]
    NoSuchPool(String),
    /// Defining a name that is taken.
    #[error("pool '{0}' already exists; choose another name, or remove it first with `vireo pool-undefine {0}`")]
    PoolExists(String),
    /// Two pools over one directory would list the same files twice.
    #[error("directory {path} is already the target of pool '{other}'; use that pool, or choose another directory")]
    TargetInUse { path: String, other: String },
    /// A name that cannot be a file name.
    #[error("invalid {what} name '{name}': {reason}")]
    InvalidName {
        what: &'static str,
        name: String,
        reason: &'static str,
    },
    /// Volume operations need a running pool.
    #[error("pool '{0}' is not active; start it with `vireo pool-start {0}`")]
    NotActive(String),
    /// Starting a running pool.
    #[error("pool '{0}' is already active")]
    AlreadyActive(String),
    /// Undefining a running pool.
    #[error("pool '{0}' is still active; stop it first with `vireo pool-destroy {0}`")]
    StillActive(String),
    /// Starting a pool whose directory is missing.
    #[error("cannot start pool '{name}': directory {path} does not exist; create it with `vireo pool-build {name}`")]
    TargetMissing { name: String, path: String },
    /// No such file in the pool.
    #[error("volume '{name}' does not exist in pool '{pool}'; list its volumes with `vireo vol-list {pool}`")]
    NoSuchVolume { pool: String, name: String },
    /// A volume given by path or key outside every running pool.
    #[error("failed to get vol '{0}'; give its pool with --pool, or its full path inside a running pool")]
    VolumeNotFound(String),
    /// Creating a volume whose name is taken.
    #[error("volume '{name}' already exists in pool '{pool}'; choose another name, or delete it first with `vireo vol-delete {name} --pool {pool}`")]
    VolumeExists { pool: String, name: String },
    /// A resize that would cut data off without `--shrink`.
    #[error("volume '{name}' is {current} bytes; resizing it to {requested} bytes would cut data off the end, add --shrink if that is what you want")]
    WouldShrink {
        name: String,
        current: u64,
        requested: u64,
    },
    /// A request Vireo cannot carry out.
    #[error("{0}")]
    Unsupported(String),
    /// The volume is open in a VM or another program.
    #[error(transparent)]
    InUse(#[from] ImageLockError),
    /// Bad XML.
    #[error(transparent)]
    Xml(#[from] XmlError),
    /// A file-system operation failed.
    #[error("cannot {action}: {source}")]
    Io {
        action: String,
        #[source]
        source: io::Error,
    },
}

pub(crate) fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> PoolError {
    let action = action.into();
    move |source| PoolError::Io { action, source }
}

/// Checks `name` can be a pool or volume name: a single file name.
pub fn validate_name(what: &'static str, name: &str) -> Result<(), PoolError> {
    let reason = if name.is_empty() {
        Some("it is empty")
    } else if name.contains('/') {
        Some("it contains '/'")
    } else if name.contains('\0') {
        Some("it contains a NUL character")
    } else if name == "." || name == ".." {
        Some("'.' and '..' name directories")
    } else if what == "pool" && name.starts_with('.') {
        Some("pool names cannot start with '.'")
    } else if name.len() > 240 {
        Some("it is longer than 240 bytes")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(PoolError::InvalidName {
            what,
            name: name.to_string(),
            reason,
        }),
        None => Ok(()),
    }
}

/// One pool as the store sees it.
#[derive(Debug, Clone)]
pub struct Pool {
    pub def: PoolDef,
    pub active: bool,
    pub autostart: bool,
    /// Defined to stay (`pool-define`); a transient pool (`pool-create`)
    /// exists only while it runs.
    pub persistent: bool,
}

/// What `vol-create-as` asks for.
#[derive(Debug, Clone)]
pub struct NewVolume {
    pub name: String,
    pub capacity: u64,
    /// `None`: all of `capacity`, as libvirt defaults it.
    pub allocation: Option<u64>,
    pub format: VolumeFormat,
    pub prealloc_metadata: bool,
    /// A backing volume (already resolved to a path) and its format.
    pub backing: Option<(PathBuf, Option<VolumeFormat>)>,
}

/// What `vol-resize` may do.
#[derive(Debug, Clone, Copy, Default)]
pub struct ResizeFlags {
    /// Allocate the added space instead of leaving it sparse.
    pub allocate: bool,
    /// Allow the volume to get smaller.
    pub shrink: bool,
}

impl Pool {
    pub fn name(&self) -> &str {
        &self.def.name
    }

    pub(crate) fn require_active(&self) -> Result<(), PoolError> {
        if self.active {
            Ok(())
        } else {
            Err(PoolError::NotActive(self.def.name.clone()))
        }
    }

    /// The file system's size and free space under the pool, as libvirt
    /// computes them: capacity `f_frsize * f_blocks`, available
    /// `f_bfree * f_frsize`, allocation the difference.
    pub fn space(&self) -> Result<PoolSpace, PoolError> {
        let path = std::ffi::CString::new(self.def.target.as_os_str().as_encoded_bytes())
            .map_err(|_| PoolError::Unsupported("pool path contains a NUL byte".into()))?;
        // SAFETY: statvfs is plain data; zeroed is a valid value.
        let mut sb: libc::statvfs = unsafe { std::mem::zeroed() };
        // SAFETY: a valid C string and a valid pointer to a statvfs.
        if unsafe { libc::statvfs(path.as_ptr(), &mut sb) } != 0 {
            return Err(io_error(format!("statvfs {}", self.def.target.display()))(
                io::Error::last_os_error(),
            ));
        }
        let capacity = sb.f_frsize as u64 * sb.f_blocks as u64;
        let available = sb.f_bfree as u64 * sb.f_frsize as u64;
        Ok(PoolSpace {
            capacity,
            allocation: capacity.saturating_sub(available),
            available,
        })
    }

    /// `pool-dumpxml`: a running pool with its space and its directory's
    /// actual permissions; `inactive` (or a stopped pool) as stored.
    pub fn to_xml(&self, inactive: bool) -> Result<String, PoolError> {
        if inactive || !self.active {
            return Ok(self.def.to_xml(None));
        }
        let mut def = self.def.clone();
        if let Ok(meta) = fs::metadata(&def.target) {
            def.permissions.mode = Some(meta.mode() & 0o7777);
            def.permissions.owner = Some(meta.uid());
            def.permissions.group = Some(meta.gid());
        }
        Ok(def.to_xml(Some(self.space()?)))
    }

    /// Path of volume `name`, which must exist.
    pub fn volume_path(&self, name: &str) -> Result<PathBuf, PoolError> {
        self.require_active()?;
        let missing = || PoolError::NoSuchVolume {
            pool: self.def.name.clone(),
            name: name.to_string(),
        };
        validate_name("volume", name).map_err(|_| missing())?;
        let path = self.def.target.join(name);
        match fs::metadata(&path) {
            Ok(meta) if meta.is_file() => Ok(path),
            _ => Err(missing()),
        }
    }

    /// Every volume, sorted as virsh sorts them.
    pub fn volumes(&self) -> Result<Vec<VolumeDef>, PoolError> {
        self.require_active()?;
        let dir = &self.def.target;
        let entries =
            fs::read_dir(dir).map_err(io_error(format!("read directory {}", dir.display())))?;
        let mut volumes = Vec::new();
        for entry in entries.filter_map(|e| e.ok()) {
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            // Regular files only (symlinks followed), as libvirt's dir backend.
            if !fs::metadata(entry.path())
                .map(|m| m.is_file())
                .unwrap_or(false)
            {
                continue;
            }
            // A file we may not read (another user's) is skipped, not fatal.
            if let Ok(volume) = volume::describe(&name, &entry.path()) {
                volumes.push(volume);
            }
        }
        volumes.sort_by_key(|v| v.name.to_lowercase());
        Ok(volumes)
    }

    /// Volume `name` as `vol-dumpxml` / `vol-info` report it.
    pub fn volume(&self, name: &str) -> Result<VolumeDef, PoolError> {
        let path = self.volume_path(name)?;
        volume::describe(name, &path).map_err(io_error(format!("read {}", path.display())))
    }

    /// Creates a volume (`vol-create-as`); on any failure its file is removed.
    pub fn create_volume(
        &self,
        spec: &NewVolume,
        progress: Progress,
    ) -> Result<VolumeDef, PoolError> {
        self.require_active()?;
        validate_name("volume", &spec.name)?;
        let path = self.def.target.join(&spec.name);
        if spec.backing.is_some() && spec.format != VolumeFormat::Qcow2 {
            return Err(PoolError::Unsupported(format!(
                "a backing volume needs --format qcow2, not {}",
                spec.format.name()
            )));
        }
        let file = volume::create_exclusive(&path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                PoolError::VolumeExists {
                    pool: self.def.name.clone(),
                    name: spec.name.clone(),
                }
            } else {
                io_error(format!("create {}", path.display()))(e)
            }
        })?;
        let result = self.fill_volume(&file, &path, spec, progress);
        drop(file);
        if let Err(error) = result {
            let _ = fs::remove_file(&path);
            return Err(error);
        }
        self.volume(&spec.name)
    }

    /// Creates volume `spec` holding what the image at `source` (in
    /// `source_format`) holds, converted to the volume's format
    /// (`vol-create-from`). The volume is at least as large as the source,
    /// as libvirt makes it. On any failure its file is removed.
    pub fn create_volume_from(
        &self,
        spec: &NewVolume,
        source: &Path,
        source_format: ImageFormat,
        progress: Progress,
    ) -> Result<VolumeDef, PoolError> {
        let mut input = crate::storage::open_image(source, source_format, true)
            .map_err(|e| PoolError::Unsupported(e.to_string()))?;
        let size = input.size();
        let mut spec = spec.clone();
        spec.capacity = spec.capacity.max(size);
        self.create_volume(&spec, &mut |_, _| {})?;
        let path = self.def.target.join(&spec.name);
        let format = match spec.format {
            VolumeFormat::Qcow2 => ImageFormat::Qcow2,
            _ => ImageFormat::Raw,
        };
        let copied = crate::storage::open_image(&path, format, false)
            .map_err(|e| PoolError::Unsupported(e.to_string()))
            .and_then(|mut output| {
                crate::storage::copy_contents(input.as_mut(), output.as_mut(), size, progress)
                    .map_err(|e| {
                        io_error(format!("copy {} into {}", source.display(), path.display()))(
                            io::Error::other(e),
                        )
                    })
            });
        if let Err(error) = copied {
            let _ = fs::remove_file(&path);
            return Err(error);
        }
        self.volume(&spec.name)
    }

    fn fill_volume(
        &self,
        file: &File,
        path: &Path,
        spec: &NewVolume,
        progress: Progress,
    ) -> Result<(), PoolError> {
        let allocation = spec.allocation.unwrap_or(spec.capacity);
        let action = || format!("write volume {}", path.display());
        match spec.format {
            VolumeFormat::Raw => volume::create_raw(file, spec.capacity, allocation, progress)
                .map_err(io_error(action())),
            VolumeFormat::Qcow2 => {
                // libvirt asks qemu-img for metadata preallocation when told to,
                // and for falloc when the allocation covers the whole capacity.
                let prealloc = match (spec.prealloc_metadata, allocation >= spec.capacity) {
                    (false, _) => Preallocation::Off,
                    (true, false) => Preallocation::Metadata,
                    (true, true) => Preallocation::Falloc,
                };
                let mut options = CreateOptions {
                    size: spec.capacity,
                    preallocation: prealloc,
                    ..CreateOptions::default()
                };
                if let Some((backing, format)) = &spec.backing {
                    let format = match format {
                        Some(format) => *format,
                        None => {
                            let file = File::open(backing).map_err(io_error(format!(
                                "open backing file {}",
                                backing.display()
                            )))?;
                            volume::probe(&file)
                                .map_err(io_error(format!(
                                    "read backing file {}",
                                    backing.display()
                                )))?
                                .format
                        }
                    };
                    let name = backing.to_str().ok_or_else(|| {
                        PoolError::Unsupported(format!(
                            "the backing file name {} is not UTF-8",
                            backing.display()
                        ))
                    })?;
                    options.backing_file = Some(name.to_string());
                    options.backing_format = Some(format.name().to_string());
                }
                // The qcow2 module reports percent; pools report bytes.
                let capacity = spec.capacity;
                Qcow2Image::create(path, &options, &mut |percent| {
                    progress((percent / 100.0 * capacity as f64) as u64, capacity)
                })
                .map_err(|e| match e {
                    Qcow2CreateError::Invalid(message) => PoolError::Unsupported(message),
                    Qcow2CreateError::Io(e) => io_error(action())(e),
                    other => PoolError::Unsupported(format!("{}: {other}", action())),
                })
            }
            other => Err(PoolError::Unsupported(format!(
                "Vireo creates raw and qcow2 volumes, not {}",
                other.name()
            ))),
        }
    }

    /// Deletes volume `name` (`vol-delete`); refused while a VM has it open.
    pub fn delete_volume(&self, name: &str) -> Result<(), PoolError> {
        let path = self.volume_path(name)?;
        let file = open_locked(&path, false)?;
        let result = remove_file(&path);
        drop(file);
        result
    }

    /// Changes volume `name`'s virtual size (`vol-resize`); returns the new size.
    pub fn resize_volume(
        &self,
        name: &str,
        capacity: u64,
        flags: ResizeFlags,
        progress: Progress,
    ) -> Result<u64, PoolError> {
        let path = self.volume_path(name)?;
        let file = open_locked(&path, false)?;
        let probe = volume::probe(&file).map_err(io_error(format!("read {}", path.display())))?;
        if capacity < probe.capacity && !flags.shrink {
            return Err(PoolError::WouldShrink {
                name: name.to_string(),
                current: probe.capacity,
                requested: capacity,
            });
        }
        let action = format!("resize {}", path.display());
        match probe.format {
            VolumeFormat::Raw => {
                let old = probe.capacity;
                file.set_len(capacity).map_err(io_error(action.clone()))?;
                if flags.allocate && capacity > old {
                    volume::allocate(&file, old, capacity - old, progress)
                        .map_err(io_error(action.clone()))?;
                }
                file.sync_all().map_err(io_error(action))?;
            }
            VolumeFormat::Qcow2 => {
                drop(file);
                volume::resize_qcow2(&path, capacity).map_err(|e| match e.kind() {
                    io::ErrorKind::Unsupported => PoolError::Unsupported(e.to_string()),
                    _ => io_error(action)(e),
                })?;
            }
            other => {
                return Err(PoolError::Unsupported(format!(
                    "Vireo cannot resize {} volumes",
                    other.name()
                )))
            }
        }
        Ok(capacity)
    }

    /// Copies volume `name` to `new_name` in this pool (`vol-clone`),
    /// keeping holes; on failure the partial copy is removed.
    pub fn clone_volume(
        &self,
        name: &str,
        new_name: &str,
        progress: Progress,
    ) -> Result<VolumeDef, PoolError> {
        let src_path = self.volume_path(name)?;
        validate_name("volume", new_name)?;
        let src = open_locked(&src_path, true)?;
        let dst_path = self.def.target.join(new_name);
        let dst = volume::create_exclusive(&dst_path).map_err(|e| {
            if e.kind() == io::ErrorKind::AlreadyExists {
                PoolError::VolumeExists {
                    pool: self.def.name.clone(),
                    name: new_name.to_string(),
                }
            } else {
                io_error(format!("create {}", dst_path.display()))(e)
            }
        })?;
        let result = volume::copy_range(&src, 0, &dst, 0, None, Zeros::Skip, progress)
            .and_then(|_| dst.sync_all())
            .map_err(io_error(format!(
                "copy {} to {}",
                src_path.display(),
                dst_path.display()
            )));
        drop(dst);
        if let Err(error) = result {
            let _ = fs::remove_file(&dst_path);
            return Err(error);
        }
        self.volume(new_name)
    }

    /// Writes `source`'s bytes into volume `name` at `offset`, at most
    /// `length` of them (`vol-upload`); returns the bytes written.
    pub fn upload(
        &self,
        name: &str,
        source: &Path,
        offset: u64,
        length: Option<u64>,
        sparse: bool,
        progress: Progress,
    ) -> Result<u64, PoolError> {
        let path = self.volume_path(name)?;
        let src = File::open(source).map_err(io_error(format!("read {}", source.display())))?;
        let src_len = src
            .metadata()
            .map_err(io_error(format!("stat {}", source.display())))?
            .len();
        let dst = open_locked(&path, false)?;
        let volume_len = dst
            .metadata()
            .map_err(io_error(format!("stat {}", path.display())))?
            .len();
        let amount = length.map_or(src_len, |l| l.min(src_len));
        let end = offset.saturating_add(amount);
        if end > volume_len {
            return Err(PoolError::Unsupported(format!(
                "uploading {amount} bytes at offset {offset} would end at byte {end}, past the end of \
                 volume '{name}' ({volume_len} bytes); grow it first with `vireo vol-resize {name} {end} --pool {}`",
                self.def.name
            )));
        }
        let zeros = if sparse { Zeros::Punch } else { Zeros::Write };
        volume::copy_range(&src, 0, &dst, offset, Some(amount), zeros, progress)
            .and_then(|n| dst.sync_all().map(|_| n))
            .map_err(io_error(format!("write volume {}", path.display())))
    }

    /// Copies volume `name`'s bytes from `offset` (at most `length`) to the
    /// file `dest` (`vol-download`), created or truncated; a file it created
    /// is removed again if the copy fails.
    pub fn download(
        &self,
        name: &str,
        dest: &Path,
        offset: u64,
        length: Option<u64>,
        sparse: bool,
        progress: Progress,
    ) -> Result<u64, PoolError> {
        let path = self.volume_path(name)?;
        let src = open_locked(&path, true)?;
        let (dst, created) = match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o666)
            .open(dest)
        {
            Ok(file) => (file, true),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => (
                OpenOptions::new()
                    .write(true)
                    .truncate(true)
                    .open(dest)
                    .map_err(io_error(format!("create {}", dest.display())))?,
                false,
            ),
            Err(e) => return Err(io_error(format!("create {}", dest.display()))(e)),
        };
        let zeros = if sparse { Zeros::Skip } else { Zeros::Write };
        let result = volume::copy_range(&src, offset, &dst, 0, length, zeros, progress)
            .and_then(|n| (&dst).flush().map(|_| n))
            .map_err(io_error(format!("write {}", dest.display())));
        if result.is_err() && created {
            let _ = fs::remove_file(dest);
        }
        result
    }
}

/// Opens a volume locked like a VM locks its disks: shared for reading,
/// exclusive for changing, so a volume in use is not changed under a guest.
fn open_locked(path: &Path, read_only: bool) -> Result<File, PoolError> {
    let file = OpenOptions::new()
        .read(true)
        .write(!read_only)
        .open(path)
        .map_err(io_error(format!("open {}", path.display())))?;
    lock_image(&file, path, read_only)?;
    Ok(file)
}

pub(crate) fn make_dir(path: &Path, mode: u32) -> Result<(), PoolError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(io_error(format!("create directory {}", path.display())))
}

pub(crate) fn remove_file(path: &Path) -> Result<(), PoolError> {
    fs::remove_file(path).map_err(io_error(format!("remove {}", path.display())))
}

/// Whether `a` and `b` name one directory (after resolving links where they exist).
pub(crate) fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.components().collect());
    canon(a) == canon(b)
}

/// Replaces `path` with `bytes` atomically (see [`crate::fsutil::atomic_write`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PoolError> {
    crate::fsutil::atomic_write(path, bytes).map_err(io_error(format!("write {}", path.display())))
}
