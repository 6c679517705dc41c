//! Storage pools and volumes, as libvirt's directory pools keep them
//! (<https://libvirt.org/storage.html#directory-pool>,
//! <https://libvirt.org/formatstorage.html>).
//!
//! A pool is a directory; its volumes are the files in it. Definitions live
//! in `paths::config_dir()/pools/NAME.xml`, written atomically, with
//! autostart as a symlink in `pools/autostart/` (libvirt's layout). Vireo has
//! no daemon, so "running" is a state file in the runtime directory, which
//! the system clears at boot; the first command of each boot starts the
//! autostart pools, as libvirtd does when it starts. On first use a `default`
//! pool at `paths::images_dir()` is defined, built, started and autostarted.
//!
//! Only `dir` pools exist; no logical, disk, iSCSI, NFS or other backends.

pub mod units;
pub mod volume;
pub mod xml;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

pub use crate::storage::qcow2::Preallocation;
pub use units::{parse_size, pretty_capacity, SizeError};
pub use volume::{Progress, Zeros};
pub use xml::{Permissions, PoolDef, PoolSpace, VolumeDef, VolumeFormat, XmlError};

use crate::storage::qcow2::{CreateError as Qcow2CreateError, CreateOptions};
use crate::storage::{lock_image, ImageLockError, Qcow2Image};

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

fn io_error(action: impl Into<String>) -> impl FnOnce(io::Error) -> PoolError {
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

/// All pool definitions and their states.
pub struct PoolStore {
    /// `config/pools`: definitions.
    config: PathBuf,
    /// `run/pools`: which pools are running this boot.
    runtime: PathBuf,
}

/// One pool as the store sees it.
#[derive(Debug, Clone)]
pub struct Pool {
    pub def: PoolDef,
    pub active: bool,
    pub autostart: bool,
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

impl PoolStore {
    /// The user's pools; defines the default pool on first use and starts
    /// autostart pools on the first use after boot.
    pub fn open() -> Result<Self, PoolError> {
        Self::open_at(
            &crate::paths::config_dir().join("pools"),
            &crate::paths::runtime_dir().join("pools"),
            &crate::paths::images_dir(),
        )
    }

    /// Pools defined in `config`, running state in `runtime`, and the
    /// default pool over `default_target`.
    pub fn open_at(
        config: &Path,
        runtime: &Path,
        default_target: &Path,
    ) -> Result<Self, PoolError> {
        let store = Self {
            config: config.to_path_buf(),
            runtime: runtime.to_path_buf(),
        };
        let first_use = !config.exists();
        make_dir(&store.config.join("autostart"), 0o700)?;
        make_dir(&store.runtime, 0o700)?;
        let _lock = store.lock()?;
        if first_use {
            let def = PoolDef {
                name: DEFAULT_POOL.into(),
                uuid: new_uuid(),
                target: default_target.to_path_buf(),
                permissions: Permissions::default(),
            };
            store.write_def(&def)?;
            store.build_locked(DEFAULT_POOL)?;
            store.set_autostart_locked(DEFAULT_POOL, true)?;
        }
        store.autostart_once()?;
        Ok(store)
    }

    /// Starts every autostart pool once per boot (the runtime directory is
    /// emptied at boot, taking the marker with it).
    fn autostart_once(&self) -> Result<(), PoolError> {
        let marker = self.runtime.join(".autostarted");
        if marker.exists() {
            return Ok(());
        }
        for pool in self.list()? {
            if pool.autostart && !pool.active && pool.def.target.is_dir() {
                self.mark_active(&pool.def)?;
            }
        }
        fs::write(&marker, b"").map_err(io_error(format!("write {}", marker.display())))
    }

    /// Serialises changes to definitions between processes.
    fn lock(&self) -> Result<File, PoolError> {
        let path = self.config.join(".lock");
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&path)
            .map_err(io_error(format!("open {}", path.display())))?;
        // SAFETY: flock on a descriptor we own; released when it closes.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
            return Err(io_error(format!("lock {}", path.display()))(
                io::Error::last_os_error(),
            ));
        }
        Ok(file)
    }

    fn def_path(&self, name: &str) -> PathBuf {
        self.config.join(format!("{name}.xml"))
    }

    fn autostart_path(&self, name: &str) -> PathBuf {
        self.config.join("autostart").join(format!("{name}.xml"))
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.runtime.join(format!("{name}.xml"))
    }

    /// Names of all defined pools, sorted as virsh sorts them.
    pub fn names(&self) -> Result<Vec<String>, PoolError> {
        let entries = fs::read_dir(&self.config)
            .map_err(io_error(format!("read {}", self.config.display())))?;
        let mut names: Vec<String> = entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let stem = name.strip_suffix(".xml")?;
                (!stem.starts_with('.') && e.file_type().ok()?.is_file()).then(|| stem.to_string())
            })
            .collect();
        names.sort_by_key(|n| n.to_lowercase());
        Ok(names)
    }

    /// Every pool.
    pub fn list(&self) -> Result<Vec<Pool>, PoolError> {
        self.names()?.iter().map(|name| self.get(name)).collect()
    }

    /// The pool called `name`.
    pub fn get(&self, name: &str) -> Result<Pool, PoolError> {
        if validate_name("pool", name).is_err() {
            return Err(PoolError::NoSuchPool(name.to_string()));
        }
        let path = self.def_path(name);
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(PoolError::NoSuchPool(name.to_string()))
            }
            Err(e) => return Err(io_error(format!("read {}", path.display()))(e)),
        };
        let def = PoolDef::from_xml(&text)?;
        let active = fs::read_to_string(self.state_path(name))
            .map(|uuid| uuid.trim() == def.uuid)
            .unwrap_or(false);
        let autostart = self.autostart_path(name).symlink_metadata().is_ok();
        Ok(Pool {
            def,
            active,
            autostart,
        })
    }

    /// Defines a directory pool `name` over `target` (`pool-define-as NAME dir --target PATH`).
    pub fn define_dir(&self, name: &str, target: &Path) -> Result<Pool, PoolError> {
        self.define(PoolDef {
            name: name.to_string(),
            uuid: String::new(),
            target: target.to_path_buf(),
            permissions: Permissions::default(),
        })
    }

    /// Stores a new definition; an empty UUID gets a fresh one.
    pub fn define(&self, mut def: PoolDef) -> Result<Pool, PoolError> {
        validate_name("pool", &def.name)?;
        if !def.target.is_absolute() {
            let cwd = std::env::current_dir().map_err(io_error("find the current directory"))?;
            def.target = cwd.join(&def.target);
        }
        if def.uuid.is_empty() {
            def.uuid = new_uuid();
        }
        let _lock = self.lock()?;
        for other in self.list()? {
            if other.def.name == def.name {
                return Err(PoolError::PoolExists(def.name));
            }
            if other.def.uuid == def.uuid {
                return Err(PoolError::Unsupported(format!(
                    "pool '{}' already has UUID {}; leave <uuid> out to get a new one",
                    other.def.name, def.uuid
                )));
            }
            if same_dir(&other.def.target, &def.target) {
                return Err(PoolError::TargetInUse {
                    path: def.target.display().to_string(),
                    other: other.def.name,
                });
            }
        }
        self.write_def(&def)?;
        Ok(Pool {
            def,
            active: false,
            autostart: false,
        })
    }

    fn write_def(&self, def: &PoolDef) -> Result<(), PoolError> {
        let text = format!(
            "<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n\
             OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:\n  \
             vireo pool-define-as, vireo pool-undefine\nor the Vireo application.\n-->\n\n{}",
            def.to_xml(None)
        );
        write_atomically(&self.def_path(&def.name), text.as_bytes())
    }

    /// Creates the pool's directory (`pool-build`).
    pub fn build(&self, name: &str) -> Result<(), PoolError> {
        let _lock = self.lock()?;
        self.build_locked(name)
    }

    fn build_locked(&self, name: &str) -> Result<(), PoolError> {
        let pool = self.get(name)?;
        let mode = pool.def.permissions.mode.unwrap_or(POOL_DIR_MODE);
        make_dir(&pool.def.target, mode)?;
        if pool.def.permissions.owner.is_some() || pool.def.permissions.group.is_some() {
            std::os::unix::fs::chown(
                &pool.def.target,
                pool.def.permissions.owner,
                pool.def.permissions.group,
            )
            .map_err(io_error(format!(
                "set the owner of {}",
                pool.def.target.display()
            )))?;
        }
        Ok(())
    }

    /// Marks the pool running (`pool-start`); its directory must exist.
    pub fn start(&self, name: &str) -> Result<(), PoolError> {
        let _lock = self.lock()?;
        let pool = self.get(name)?;
        if pool.active {
            return Err(PoolError::AlreadyActive(name.to_string()));
        }
        if !pool.def.target.is_dir() {
            return Err(PoolError::TargetMissing {
                name: name.to_string(),
                path: pool.def.target.display().to_string(),
            });
        }
        self.mark_active(&pool.def)
    }

    fn mark_active(&self, def: &PoolDef) -> Result<(), PoolError> {
        write_atomically(
            &self.state_path(&def.name),
            format!("{}\n", def.uuid).as_bytes(),
        )
    }

    /// Stops the pool (`pool-destroy`); its files stay.
    pub fn destroy(&self, name: &str) -> Result<(), PoolError> {
        let _lock = self.lock()?;
        let pool = self.get(name)?;
        if !pool.active {
            return Err(PoolError::NotActive(name.to_string()));
        }
        remove_file(&self.state_path(name))
    }

    /// Forgets the definition (`pool-undefine`); the directory and files stay.
    pub fn undefine(&self, name: &str) -> Result<(), PoolError> {
        let _lock = self.lock()?;
        let pool = self.get(name)?;
        if pool.active {
            return Err(PoolError::StillActive(name.to_string()));
        }
        let _ = fs::remove_file(self.autostart_path(name));
        remove_file(&self.def_path(name))
    }

    /// Turns autostart on or off (`pool-autostart [--disable]`).
    pub fn set_autostart(&self, name: &str, on: bool) -> Result<(), PoolError> {
        let _lock = self.lock()?;
        self.set_autostart_locked(name, on)
    }

    fn set_autostart_locked(&self, name: &str, on: bool) -> Result<(), PoolError> {
        self.get(name)?;
        let link = self.autostart_path(name);
        let _ = fs::remove_file(&link);
        if on {
            std::os::unix::fs::symlink(format!("../{name}.xml"), &link)
                .map_err(io_error(format!("create {}", link.display())))?;
        }
        Ok(())
    }

    /// Finds a volume given as virsh takes it: a name in `pool`, or without
    /// a pool, a path (or key) inside a running pool.
    pub fn find_volume(&self, vol: &str, pool: Option<&str>) -> Result<(Pool, String), PoolError> {
        if let Some(pool) = pool {
            let pool = self.get(pool)?;
            pool.require_active()?;
            let name = match Path::new(vol).strip_prefix(&pool.def.target) {
                Ok(rest) if Path::new(vol).is_absolute() => rest.to_string_lossy().into_owned(),
                _ => vol.to_string(),
            };
            pool.volume_path(&name)?;
            return Ok((pool, name));
        }
        let path = Path::new(vol);
        if path.is_absolute() {
            if let (Some(dir), Some(file)) = (path.parent(), path.file_name()) {
                for pool in self.list()? {
                    if pool.active && same_dir(&pool.def.target, dir) {
                        let name = file.to_string_lossy().into_owned();
                        pool.volume_path(&name)?;
                        return Ok((pool, name));
                    }
                }
            }
        }
        Err(PoolError::VolumeNotFound(vol.to_string()))
    }
}

impl Pool {
    pub fn name(&self) -> &str {
        &self.def.name
    }

    fn require_active(&self) -> Result<(), PoolError> {
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

    /// Finds a backing volume as virsh does: a name in this pool, else a
    /// path in any running pool of `store`.
    pub fn resolve_backing(&self, store: &PoolStore, vol: &str) -> Result<PathBuf, PoolError> {
        if let Ok(path) = self.volume_path(vol) {
            return Ok(path);
        }
        let (pool, name) = store.find_volume(vol, None)?;
        pool.volume_path(&name)
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

fn make_dir(path: &Path, mode: u32) -> Result<(), PoolError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(io_error(format!("create directory {}", path.display())))
}

fn remove_file(path: &Path) -> Result<(), PoolError> {
    fs::remove_file(path).map_err(io_error(format!("remove {}", path.display())))
}

/// Whether `a` and `b` name one directory (after resolving links where they exist).
fn same_dir(a: &Path, b: &Path) -> bool {
    let canon = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.components().collect());
    canon(a) == canon(b)
}

/// Replaces `path` with `bytes` atomically (see [`crate::fsutil::atomic_write`]).
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), PoolError> {
    crate::fsutil::atomic_write(path, bytes).map_err(io_error(format!("write {}", path.display())))
}

/// A random (version 4) UUID.
pub fn new_uuid() -> String {
    crate::domain::generate_uuid().unwrap_or_else(|_| {
        // No randomness to be had: time and pid are unique enough here.
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        format!(
            "{:08x}-0000-4000-8000-{:012x}",
            std::process::id(),
            now.as_nanos() as u64 & 0xffff_ffff_ffff
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(dir: &Path) -> PoolStore {
        PoolStore::open_at(
            &dir.join("config/pools"),
            &dir.join("run/pools"),
            &dir.join("images"),
        )
        .unwrap()
    }

    #[test]
    fn default_pool_exists_on_first_use_only() {
        let dir = tempfile::tempdir().unwrap();
        let pools = store(dir.path());
        let default = pools.get(DEFAULT_POOL).unwrap();
        assert!(default.active && default.autostart);
        assert!(dir.path().join("images").is_dir());
        pools.destroy(DEFAULT_POOL).unwrap();
        pools.undefine(DEFAULT_POOL).unwrap();
        let pools = store(dir.path());
        assert!(matches!(
            pools.get(DEFAULT_POOL),
            Err(PoolError::NoSuchPool(_))
        ));
    }

    #[test]
    fn autostart_pools_start_once_per_boot() {
        let dir = tempfile::tempdir().unwrap();
        let pools = store(dir.path());
        pools.destroy(DEFAULT_POOL).unwrap();
        assert!(
            !store(dir.path()).get(DEFAULT_POOL).unwrap().active,
            "same boot: stays stopped"
        );
        fs::remove_dir_all(dir.path().join("run")).unwrap(); // a reboot
        assert!(store(dir.path()).get(DEFAULT_POOL).unwrap().active);
    }

    #[test]
    fn names_are_validated_and_unique() {
        let dir = tempfile::tempdir().unwrap();
        let pools = store(dir.path());
        for bad in ["", "a/b", ".", "..", ".hidden"] {
            assert!(
                matches!(
                    pools.define_dir(bad, &dir.path().join("x")),
                    Err(PoolError::InvalidName { .. })
                ),
                "{bad:?}"
            );
        }
        pools.define_dir("isos", &dir.path().join("isos")).unwrap();
        assert!(matches!(
            pools.define_dir("isos", &dir.path().join("other")),
            Err(PoolError::PoolExists(_))
        ));
        assert!(matches!(
            pools.define_dir("again", &dir.path().join("isos")),
            Err(PoolError::TargetInUse { .. })
        ));
        assert!(matches!(
            pools.start("isos"),
            Err(PoolError::TargetMissing { .. })
        ));
        pools.build("isos").unwrap();
        assert_eq!(
            fs::metadata(dir.path().join("isos")).unwrap().mode() & 0o777,
            POOL_DIR_MODE
        );
        pools.start("isos").unwrap();
        assert!(matches!(
            pools.undefine("isos"),
            Err(PoolError::StillActive(_))
        ));
        assert_eq!(pools.names().unwrap(), ["default", "isos"]);
    }

    #[test]
    fn failed_volume_creation_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let pools = store(dir.path());
        let pool = pools.get(DEFAULT_POOL).unwrap();
        let spec = NewVolume {
            name: "huge.qcow2".into(),
            capacity: u64::MAX - 4096,
            allocation: Some(0),
            format: VolumeFormat::Qcow2,
            prealloc_metadata: false,
            backing: None,
        };
        assert!(pool.create_volume(&spec, &mut |_, _| {}).is_err());
        assert!(!dir.path().join("images/huge.qcow2").exists());
        let raw = NewVolume {
            name: "r".into(),
            capacity: 4096,
            format: VolumeFormat::Raw,
            ..spec
        };
        pool.create_volume(&raw, &mut |_, _| {}).unwrap();
        assert!(matches!(
            pool.create_volume(&raw, &mut |_, _| {}),
            Err(PoolError::VolumeExists { .. })
        ));
        assert!(
            dir.path().join("images/r").exists(),
            "the existing volume survives"
        );
    }

    #[test]
    fn stored_definitions_carry_the_warning_header() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path());
        let text = fs::read_to_string(dir.path().join("config/pools/default.xml")).unwrap();
        assert!(text.starts_with("<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE."));
        assert!(text.contains("<capacity unit='bytes'>0</capacity>"));
    }

    #[test]
    fn uuids_are_version_4() {
        let uuid = new_uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(&uuid[14..15], "4");
        assert_ne!(uuid, new_uuid());
    }
}
