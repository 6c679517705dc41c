//! The stored pool definitions and their states, as libvirt's directory
//! pools keep them: `paths::config_dir()/pools/NAME.xml` written
//! atomically, autostart as a symlink in `pools/autostart/` (libvirt's
//! layout), and "running" as a state file in the runtime directory, which
//! the system clears at boot; the first command of each boot starts the
//! autostart pools, as libvirtd does when it starts. On first use a
//! `default` pool at `paths::images_dir()` is defined, built, started and
//! autostarted.
//!
//! A transient pool (`pool-create`) has its definition in the runtime
//! directory only (`pools/.transient/NAME.xml`): it runs until
//! `pool-destroy` or the next boot, and then it is gone, as in libvirt.
//!
//! What a pool holds (its volumes) is [`crate::storage::pools`].

use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use super::files::DefinitionFiles;
use crate::storage::pools::{
    io_error, make_dir, remove_file, same_dir, validate_name, write_atomically, Permissions, Pool,
    PoolDef, PoolError, DEFAULT_POOL, POOL_DIR_MODE,
};

/// All pool definitions and their states.
pub struct PoolStore {
    /// `config/pools`: definitions.
    files: DefinitionFiles,
    /// `run/pools/.transient`: pools created without a definition that stays.
    transient: DefinitionFiles,
    /// `run/pools`: which pools are running this boot.
    runtime: PathBuf,
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
            files: DefinitionFiles::new(config.to_path_buf()),
            transient: DefinitionFiles::new(runtime.join(".transient")),
            runtime: runtime.to_path_buf(),
        };
        let first_use = !config.exists();
        make_dir(&store.files.dir().join("autostart"), 0o700)?;
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
        let path = self.files.dir().join(".lock");
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

    fn autostart_path(&self, name: &str) -> PathBuf {
        self.files
            .dir()
            .join("autostart")
            .join(format!("{name}.xml"))
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.runtime.join(format!("{name}.xml"))
    }

    /// Names of all pools, persistent and transient, sorted as virsh sorts them.
    pub fn names(&self) -> Result<Vec<String>, PoolError> {
        let mut names = self
            .files
            .names()
            .map_err(io_error(format!("read {}", self.files.dir().display())))?;
        let transient = self
            .transient
            .names()
            .map_err(io_error(format!("read {}", self.transient.dir().display())))?;
        names.extend(transient);
        names.sort_by_key(|n| n.to_lowercase());
        names.dedup();
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
        let read = |files: &DefinitionFiles| {
            files
                .read(name)
                .map_err(io_error(format!("read {}", files.path(name).display())))
        };
        if let Some(text) = read(&self.files)? {
            let def = PoolDef::from_xml(&text)?;
            let active = fs::read_to_string(self.state_path(name))
                .map(|uuid| uuid.trim() == def.uuid)
                .unwrap_or(false);
            let autostart = self.autostart_path(name).symlink_metadata().is_ok();
            return Ok(Pool {
                def,
                active,
                autostart,
                persistent: true,
            });
        }
        let text = read(&self.transient)?.ok_or_else(|| PoolError::NoSuchPool(name.to_string()))?;
        Ok(Pool {
            def: PoolDef::from_xml(&text)?,
            active: true,
            autostart: false,
            persistent: false,
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
    pub fn define(&self, def: PoolDef) -> Result<Pool, PoolError> {
        let def = complete(def)?;
        let _lock = self.lock()?;
        self.check_unique(&def, None)?;
        self.write_def(&def)?;
        Ok(Pool {
            def,
            active: false,
            autostart: false,
            persistent: true,
        })
    }

    /// `pool-define FILE`: a new pool, or a new definition of the
    /// persistent pool of that name (and UUID, when the XML gives one),
    /// which keeps running if it runs. Returns the pool as stored.
    pub fn define_or_update(&self, def: PoolDef) -> Result<Pool, PoolError> {
        let uuid_given = !def.uuid.is_empty();
        let mut def = complete(def)?;
        let existing = match self.get(&def.name) {
            Ok(pool) if pool.persistent => pool,
            Ok(_) => return Err(PoolError::PoolExists(def.name)),
            Err(PoolError::NoSuchPool(_)) => return self.define(def),
            Err(e) => return Err(e),
        };
        let _lock = self.lock()?;
        if uuid_given && def.uuid != existing.def.uuid {
            return Err(PoolError::Unsupported(format!(
                "pool '{}' already exists with UUID {}; give that UUID, or none, to change its definition",
                def.name, existing.def.uuid
            )));
        }
        def.uuid = existing.def.uuid.clone();
        self.check_unique(&def, Some(&def.name))?;
        self.write_def(&def)?;
        self.get(&def.name)
    }

    /// `pool-create FILE`: a transient pool, running at once, gone when
    /// destroyed. `build` creates its directory first (`--build`).
    pub fn create(&self, def: PoolDef, build: bool) -> Result<Pool, PoolError> {
        let def = complete(def)?;
        let _lock = self.lock()?;
        self.check_unique(&def, None)?;
        if build {
            make_dir(&def.target, def.permissions.mode.unwrap_or(POOL_DIR_MODE))?;
        }
        if !def.target.is_dir() {
            return Err(PoolError::TargetMissing {
                name: def.name.clone(),
                path: def.target.display().to_string(),
            });
        }
        let path = self.transient.path(&def.name);
        self.transient
            .write(&def.name, &def.to_xml(None))
            .map_err(io_error(format!("write {}", path.display())))?;
        Ok(Pool {
            def,
            active: true,
            autostart: false,
            persistent: false,
        })
    }

    /// Refuses `def` when another pool (than `replacing`) has its name,
    /// its UUID or its directory.
    fn check_unique(&self, def: &PoolDef, replacing: Option<&str>) -> Result<(), PoolError> {
        for other in self.list()? {
            if Some(other.def.name.as_str()) == replacing {
                continue;
            }
            if other.def.name == def.name {
                return Err(PoolError::PoolExists(def.name.clone()));
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
        Ok(())
    }

    fn write_def(&self, def: &PoolDef) -> Result<(), PoolError> {
        let text = format!(
            "<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n\
             OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:\n  \
             vireo pool-define-as, vireo pool-undefine\nor the Vireo application.\n-->\n\n{}",
            def.to_xml(None)
        );
        let path = self.files.path(&def.name);
        self.files
            .write(&def.name, &text)
            .map_err(io_error(format!("write {}", path.display())))
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

    /// Stops the pool (`pool-destroy`); its files stay. A transient pool
    /// is gone after it.
    pub fn destroy(&self, name: &str) -> Result<(), PoolError> {
        let _lock = self.lock()?;
        let pool = self.get(name)?;
        if !pool.active {
            return Err(PoolError::NotActive(name.to_string()));
        }
        if !pool.persistent {
            return remove_file(&self.transient.path(name));
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
        remove_file(&self.files.path(name))
    }

    /// Turns autostart on or off (`pool-autostart [--disable]`).
    pub fn set_autostart(&self, name: &str, on: bool) -> Result<(), PoolError> {
        let _lock = self.lock()?;
        self.set_autostart_locked(name, on)
    }

    fn set_autostart_locked(&self, name: &str, on: bool) -> Result<(), PoolError> {
        if !self.get(name)?.persistent {
            return Err(PoolError::Unsupported(format!(
                "pool '{name}' is transient, so it cannot start by itself; define it with `vireo pool-define` to keep it"
            )));
        }
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

    /// Finds a backing volume as virsh does: a name in `pool`, else a
    /// path in any running pool.
    pub fn resolve_backing(&self, pool: &Pool, vol: &str) -> Result<PathBuf, PoolError> {
        if let Ok(path) = pool.volume_path(vol) {
            return Ok(path);
        }
        let (pool, name) = self.find_volume(vol, None)?;
        pool.volume_path(&name)
    }
}

/// `def` as stored: its directory absolute, its UUID given or new.
fn complete(mut def: PoolDef) -> Result<PoolDef, PoolError> {
    validate_name("pool", &def.name)?;
    if !def.target.is_absolute() {
        let cwd = std::env::current_dir().map_err(io_error("find the current directory"))?;
        def.target = cwd.join(&def.target);
    }
    if def.uuid.is_empty() {
        def.uuid = new_uuid();
    }
    Ok(def)
}

/// A random (version 4) UUID.
pub fn new_uuid() -> String {
    crate::ids::generate_uuid().unwrap_or_else(|_| {
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
    use crate::storage::pools::{NewVolume, VolumeFormat};
    use std::os::unix::fs::MetadataExt;

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
