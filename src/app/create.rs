//! Creating a VM, as the New VM wizard (and `vireo create`) does it:
//! validate the request against the host and the store, create the disk
//! in the default pool with progress, define the VM. Anything created
//! before a failure is removed again, so nothing half-made is left.

use std::path::PathBuf;

use crate::definitions::DomainStore;
use crate::definitions::PoolStore;
use crate::domain::NewVm;
use crate::storage::pools::{NewVolume, PoolError, VolumeFormat, DEFAULT_POOL};

/// How the guest OS gets installed (virt-manager's first step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallMethod {
    /// Boot an installer ISO from the CD-ROM drive.
    Iso(PathBuf),
    /// Boot an existing disk image that already holds an OS.
    Import(PathBuf),
    /// Boot a Linux kernel and initrd directly.
    Kernel {
        kernel: PathBuf,
        initrd: Option<PathBuf>,
        cmdline: String,
    },
}

/// The VM's disk (the wizard's storage step).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// A new qcow2 volume of this many GiB in the default pool.
    New {
        gib: u64,
    },
    /// An existing image or volume.
    Existing(PathBuf),
    None,
}

/// Everything the wizard asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewVmRequest {
    pub name: String,
    pub method: InstallMethod,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub storage: Storage,
    /// A network to attach to, or none.
    pub network: Option<String>,
    /// The pool a new disk is created in (the preferences' default pool).
    pub pool: String,
    /// The address the VM's VNC server listens on (the preferences').
    pub vnc_listen: String,
}

/// What the host offers, to bound the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostLimits {
    pub memory_mib: u64,
    pub cpus: u32,
    /// Free bytes in the default pool.
    pub pool_free_bytes: u64,
}

impl HostLimits {
    /// Reads the host's memory (`/proc/meminfo`), usable vCPUs and the
    /// default pool's free space.
    pub fn read() -> Self {
        Self::read_for(DEFAULT_POOL)
    }

    /// As [`HostLimits::read`], with the free space of `pool`.
    pub fn read_for(pool: &str) -> Self {
        let memory_mib = std::fs::read_to_string("/proc/meminfo")
            .ok()
            .and_then(|text| {
                text.lines()
                    .find_map(|l| l.strip_prefix("MemTotal:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            })
            .map(|kib| kib / 1024)
            .unwrap_or(0);
        let cpus = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
        let pool_free_bytes = PoolStore::open()
            .and_then(|store| store.get(pool))
            .and_then(|pool| pool.space())
            .map(|space| space.available)
            .unwrap_or(0);
        HostLimits {
            memory_mib,
            cpus,
            pool_free_bytes,
        }
    }
}

/// Something wrong with a request, for the wizard to show next to the
/// field it concerns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    NameEmpty,
    /// Characters a file name cannot safely carry.
    NameInvalid,
    NameTaken,
    MediaMissing(PathBuf),
    /// Below what any guest can boot with.
    MemoryTooSmall {
        minimum_mib: u64,
    },
    MemoryOverHost {
        host_mib: u64,
    },
    NoCpus,
    CpusOverHost {
        host: u32,
    },
    DiskEmpty,
    DiskOverFree {
        free_gib: u64,
    },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::NameEmpty => f.write_str("give the VM a name"),
            Problem::NameInvalid => f.write_str(
                "a name cannot contain '/' or start with '.', and must be shorter than 249 bytes",
            ),
            Problem::NameTaken => f.write_str("a VM with this name exists; choose another name"),
            Problem::MediaMissing(path) => write!(f, "{} does not exist", path.display()),
            Problem::MemoryTooSmall { minimum_mib } => {
                write!(f, "give the VM at least {minimum_mib} MiB of memory")
            }
            Problem::MemoryOverHost { host_mib } => {
                write!(f, "the host has only {host_mib} MiB of memory")
            }
            Problem::NoCpus => f.write_str("give the VM at least one CPU"),
            Problem::CpusOverHost { host } => write!(f, "the host has only {host} CPUs"),
            Problem::DiskEmpty => f.write_str("a new disk needs at least 1 GiB"),
            Problem::DiskOverFree { free_gib } => {
                write!(f, "the default pool has only {free_gib} GiB free")
            }
        }
    }
}

/// The least memory the firmware and a boot loader need.
pub const MIN_MEMORY_MIB: u64 = 16;

/// A name not yet used, from `base`: `base`, then `base-2`, `base-3`…
pub fn unique_name(base: &str, taken: &[String]) -> String {
    if !taken.iter().any(|t| t == base) {
        return base.to_string();
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|name| !taken.iter().any(|t| t == name))
        .unwrap_or_else(|| base.to_string())
}

/// A file name not yet used, from `stem` and `extension`: `stem.extension`,
/// then `stem-2.extension`… (the extension stays last, so the file still
/// says what it is).
pub fn unique_file_name(stem: &str, extension: &str, taken: &[String]) -> String {
    (1..)
        .map(|n| match n {
            1 => format!("{stem}.{extension}"),
            n => format!("{stem}-{n}.{extension}"),
        })
        .find(|name| !taken.iter().any(|t| t == name))
        .unwrap_or_else(|| format!("{stem}.{extension}"))
}

/// Checks the name alone (the wizard's last step checks it as it is typed).
pub fn check_name(name: &str, taken: &[String]) -> Option<Problem> {
    if name.is_empty() {
        Some(Problem::NameEmpty)
    } else if crate::definitions::validate_name(name).is_err() {
        Some(Problem::NameInvalid)
    } else if taken.iter().any(|t| t == name) {
        Some(Problem::NameTaken)
    } else {
        None
    }
}

/// Everything wrong with `request`, in the wizard's order; empty when it
/// can be created.
pub fn validate(request: &NewVmRequest, host: &HostLimits, taken: &[String]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let media: Vec<&PathBuf> = match &request.method {
        InstallMethod::Iso(p) | InstallMethod::Import(p) => vec![p],
        InstallMethod::Kernel { kernel, initrd, .. } => {
            std::iter::once(kernel).chain(initrd.iter()).collect()
        }
    };
    for path in media {
        if !path.is_file() {
            problems.push(Problem::MediaMissing(path.clone()));
        }
    }
    if request.memory_mib < MIN_MEMORY_MIB {
        problems.push(Problem::MemoryTooSmall {
            minimum_mib: MIN_MEMORY_MIB,
        });
    } else if host.memory_mib > 0 && request.memory_mib > host.memory_mib {
        problems.push(Problem::MemoryOverHost {
            host_mib: host.memory_mib,
        });
    }
    if request.vcpus == 0 {
        problems.push(Problem::NoCpus);
    } else if request.vcpus > host.cpus {
        problems.push(Problem::CpusOverHost { host: host.cpus });
    }
    match &request.storage {
        Storage::New { gib: 0 } => problems.push(Problem::DiskEmpty),
        // A qcow2 grows as the guest writes; like virt-manager, refuse a
        // disk that could never fit, not one that merely might not.
        Storage::New { gib } if *gib << 30 > host.pool_free_bytes => {
            problems.push(Problem::DiskOverFree {
                free_gib: host.pool_free_bytes >> 30,
            })
        }
        Storage::Existing(path) if !path.is_file() => {
            problems.push(Problem::MediaMissing(path.clone()))
        }
        _ => {}
    }
    if let Some(problem) = check_name(&request.name, taken) {
        problems.push(problem);
    }
    problems
}

/// What went wrong while creating, after validation passed.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("{0}")]
    Invalid(Problem),
    #[error("cannot create the disk: {0}")]
    Disk(String),
    #[error("cannot define the VM: {0}")]
    Define(String),
}

/// The image format of an existing disk, as qemu-img would probe it.
fn probe_format(path: &std::path::Path) -> &'static str {
    crate::storage::detect_format(path)
        .unwrap_or(crate::storage::ImageFormat::Raw)
        .name()
}

/// Creates the VM `request` describes: its disk (reporting the fraction
/// done), then its definition. Returns the VM's name. On failure nothing
/// it created remains.
pub fn create(
    request: &NewVmRequest,
    host: &HostLimits,
    progress: &mut dyn FnMut(f64),
) -> Result<String, CreateError> {
    let store = DomainStore::open();
    let taken: Vec<String> = store.list().into_iter().map(|d| d.name).collect();
    if let Some(problem) = validate(request, host, &taken).into_iter().next() {
        return Err(CreateError::Invalid(problem));
    }
    let mut vm = NewVm::new(&request.name)
        .memory_mib(request.memory_mib)
        .vcpus(request.vcpus);
    match &request.method {
        InstallMethod::Iso(iso) => vm = vm.cdrom(&iso.to_string_lossy()),
        InstallMethod::Import(disk) => vm = vm.disk_as(&disk.to_string_lossy(), probe_format(disk)),
        InstallMethod::Kernel {
            kernel,
            initrd,
            cmdline,
        } => {
            let initrd = initrd.as_ref().map(|p| p.to_string_lossy().into_owned());
            vm = vm.kernel(
                &kernel.to_string_lossy(),
                initrd.as_deref(),
                (!cmdline.is_empty()).then_some(cmdline.as_str()),
            )
        }
    }
    if let Some(network) = &request.network {
        vm = vm.network(network);
    }
    if !request.vnc_listen.is_empty() {
        vm = vm.vnc_listen(&request.vnc_listen);
    }
    let mut created: Option<PathBuf> = None;
    match &request.storage {
        Storage::New { gib } => {
            let path = create_disk(&request.pool, &request.name, *gib, progress)?;
            vm = vm.disk_as(&path.to_string_lossy(), "qcow2");
            created = Some(path);
        }
        Storage::Existing(path) => vm = vm.disk_as(&path.to_string_lossy(), probe_format(path)),
        Storage::None => {}
    }
    let defined = vm
        .build()
        .map_err(|e| CreateError::Define(e.to_string()))
        .and_then(|domain| {
            store
                .define(&domain.to_xml())
                .map_err(|e| CreateError::Define(e.to_string()))
        });
    match defined {
        Ok(definition) => {
            progress(1.0);
            Ok(definition.name)
        }
        Err(e) => {
            if let Some(path) = created {
                let _ = std::fs::remove_file(path);
            }
            Err(e)
        }
    }
}

/// A new qcow2 volume `NAME.qcow2` (or `NAME-2.qcow2`… when taken) of
/// `gib` GiB in `pool`.
fn create_disk(
    pool: &str,
    name: &str,
    gib: u64,
    progress: &mut dyn FnMut(f64),
) -> Result<PathBuf, CreateError> {
    new_qcow2_volume(
        pool,
        gib,
        |taken| unique_file_name(name, "qcow2", taken),
        progress,
    )
    .map_err(|e| CreateError::Disk(e.to_string()))
}

/// An empty qcow2 volume of `gib` GiB in `pool`, named by `name_for` from
/// the names the pool already has (the wizard's and Add Hardware's new
/// disks); returns its path. `progress` gets the fraction done.
pub(crate) fn new_qcow2_volume(
    pool: &str,
    gib: u64,
    name_for: impl FnOnce(&[String]) -> String,
    progress: &mut dyn FnMut(f64),
) -> Result<PathBuf, PoolError> {
    let pools = PoolStore::open()?;
    let pool = pools.get(pool)?;
    let taken: Vec<String> = pool.volumes()?.into_iter().map(|v| v.name).collect();
    let volume = name_for(&taken);
    let spec = NewVolume {
        name: volume.clone(),
        capacity: gib << 30,
        allocation: Some(0),
        format: VolumeFormat::Qcow2,
        prealloc_metadata: false,
        backing: None,
    };
    pool.create_volume(&spec, &mut |done, total| {
        progress(done as f64 / total.max(1) as f64)
    })?;
    pool.volume_path(&volume)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host() -> HostLimits {
        HostLimits {
            memory_mib: 4096,
            cpus: 4,
            pool_free_bytes: 10 << 30,
        }
    }

    fn request(dir: &std::path::Path) -> NewVmRequest {
        let iso = dir.join("install.iso");
        std::fs::write(&iso, b"iso").unwrap();
        NewVmRequest {
            name: "vm1".into(),
            method: InstallMethod::Iso(iso),
            memory_mib: 1024,
            vcpus: 2,
            storage: Storage::New { gib: 1 },
            network: None,
            pool: DEFAULT_POOL.into(),
            vnc_listen: "127.0.0.1".into(),
        }
    }

    #[test]
    fn a_sensible_request_has_no_problems() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(validate(&request(dir.path()), &host(), &[]), []);
    }

    #[test]
    fn names_must_be_valid_and_unique() {
        let taken = vec!["vm1".to_string()];
        assert_eq!(check_name("", &taken), Some(Problem::NameEmpty));
        assert_eq!(check_name("a/b", &taken), Some(Problem::NameInvalid));
        assert_eq!(check_name(".hidden", &taken), Some(Problem::NameInvalid));
        assert_eq!(check_name("vm1", &taken), Some(Problem::NameTaken));
        assert_eq!(check_name("vm2", &taken), None);
        assert_eq!(unique_name("vm1", &taken), "vm1-2");
        assert_eq!(unique_name("vm9", &taken), "vm9");
        let files = vec!["vm1.qcow2".to_string(), "vm1-2.qcow2".to_string()];
        assert_eq!(unique_file_name("vm1", "qcow2", &files), "vm1-3.qcow2");
        assert_eq!(unique_file_name("vm2", "qcow2", &files), "vm2.qcow2");
    }

    #[test]
    fn memory_and_cpus_are_bounded_by_the_host() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = request(dir.path());
        r.memory_mib = 8192;
        r.vcpus = 8;
        assert_eq!(
            validate(&r, &host(), &[]),
            [
                Problem::MemoryOverHost { host_mib: 4096 },
                Problem::CpusOverHost { host: 4 }
            ]
        );
        r.memory_mib = 4;
        r.vcpus = 0;
        assert_eq!(
            validate(&r, &host(), &[]),
            [Problem::MemoryTooSmall { minimum_mib: 16 }, Problem::NoCpus]
        );
    }

    #[test]
    fn a_new_disk_must_fit_in_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = request(dir.path());
        r.storage = Storage::New { gib: 11 };
        assert_eq!(
            validate(&r, &host(), &[]),
            [Problem::DiskOverFree { free_gib: 10 }]
        );
        r.storage = Storage::New { gib: 0 };
        assert_eq!(validate(&r, &host(), &[]), [Problem::DiskEmpty]);
    }

    #[test]
    fn missing_media_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut r = request(dir.path());
        let missing = dir.path().join("nope.iso");
        r.method = InstallMethod::Iso(missing.clone());
        assert_eq!(validate(&r, &host(), &[]), [Problem::MediaMissing(missing)]);
    }
}
