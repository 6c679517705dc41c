//! The rules behind Connection Details → Storage and the volume chooser,
//! without GTK: what the page shows of each pool (a snapshot read on a
//! worker thread), how the New Volume and Resize dialogs' fields become a
//! [`NewVolume`] or a resize, and the checks that refuse bad input before
//! anything touches the disk. The widgets only draw these and translate
//! the problems into sentences.
//!
//! Follows virt-manager's `createpool.py` / `createvol.py` where they apply
//! to directory pools: a new pool is built, started and autostarted at once;
//! a backing volume excludes preallocation; qcow2 cannot shrink.

use std::path::{Path, PathBuf};

use crate::definitions::PoolStore;
use crate::storage::pools::{
    validate_name, NewVolume, Pool, PoolError, PoolSpace, ResizeFlags, VolumeDef, VolumeFormat,
};

/// Units the capacity fields offer (powers of 1024, as virt-manager's GiB).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SizeUnit {
    MiB,
    GiB,
    TiB,
}

impl SizeUnit {
    pub const ALL: [SizeUnit; 3] = [SizeUnit::MiB, SizeUnit::GiB, SizeUnit::TiB];

    pub fn bytes(self) -> u64 {
        match self {
            SizeUnit::MiB => 1 << 20,
            SizeUnit::GiB => 1 << 30,
            SizeUnit::TiB => 1 << 40,
        }
    }

    pub fn symbol(self) -> &'static str {
        match self {
            SizeUnit::MiB => "MiB",
            SizeUnit::GiB => "GiB",
            SizeUnit::TiB => "TiB",
        }
    }
}

/// Why a capacity field was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapacityError {
    /// Not a number like `10` or `1.5`.
    #[error("'{0}' is not a number")]
    NotANumber(String),
    /// Zero (or less than a byte).
    #[error("a volume needs a capacity above zero")]
    Zero,
    /// More bytes than 64 bits hold.
    #[error("'{0}' is too large")]
    TooLarge(String),
}

/// Bytes in `number` (`10`, `1.5`, `0,5`) of `unit`; fractions are rounded
/// up to whole 512-byte sectors, as qemu-img rounds a virtual size.
pub fn parse_capacity(number: &str, unit: SizeUnit) -> Result<u64, CapacityError> {
    let text = number.trim();
    let not_a_number = || CapacityError::NotANumber(text.to_string());
    let normalized = text.replace(',', ".");
    let (whole, fraction) = match normalized.split_once('.') {
        Some((w, f)) => (w, f),
        None => (normalized.as_str(), ""),
    };
    let digits = |s: &str| s.chars().all(|c| c.is_ascii_digit());
    if (whole.is_empty() && fraction.is_empty()) || !digits(whole) || !digits(fraction) {
        return Err(not_a_number());
    }
    let too_large = || CapacityError::TooLarge(text.to_string());
    let whole: u64 = if whole.is_empty() {
        0
    } else {
        whole.parse().map_err(|_| too_large())?
    };
    let mut bytes = whole.checked_mul(unit.bytes()).ok_or_else(too_large)?;
    // The fraction, exactly: digits / 10^len of the unit, 18 digits at most.
    let fraction = &fraction[..fraction.len().min(18)];
    if !fraction.is_empty() {
        let numerator: u128 = fraction.parse().map_err(|_| not_a_number())?;
        let denominator = 10u128.pow(fraction.len() as u32);
        let part = (numerator * unit.bytes() as u128).div_ceil(denominator);
        bytes = bytes.checked_add(part as u64).ok_or_else(too_large)?;
    }
    if bytes == 0 {
        return Err(CapacityError::Zero);
    }
    bytes.checked_next_multiple_of(512).ok_or_else(too_large)
}

/// `bytes` for a person: `512 MiB`, `2.0 GiB`, `1.5 TiB` (one decimal from
/// GiB up, whole numbers below, as GNOME's disk tools print them).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit < 2 {
        format!("{} {}", value.round() as u64, UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// How full a bar is: `used / total`, clamped to 0..=1; 0 for an empty total.
pub fn fraction(used: u64, total: u64) -> f64 {
    if total == 0 {
        0.0
    } else {
        (used as f64 / total as f64).clamp(0.0, 1.0)
    }
}

/// What is wrong with a pool or volume name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NameProblem {
    Empty,
    /// A `/` would put the file somewhere else.
    Slash,
    /// `.`, `..`, a NUL, or (for a pool) a leading dot.
    Reserved,
    TooLong,
    /// Already used in this pool (or by another pool).
    Taken,
}

/// Checks a new pool's name against the rules and the pools there are.
pub fn check_pool_name(name: &str, existing: &[String]) -> Result<(), NameProblem> {
    check_name("pool", name)?;
    if existing.iter().any(|n| n == name) {
        return Err(NameProblem::Taken);
    }
    Ok(())
}

/// Checks a new volume's name against the rules and the pool's volumes.
pub fn check_volume_name(name: &str, existing: &[VolumeDef]) -> Result<(), NameProblem> {
    check_name("volume", name)?;
    if existing.iter().any(|v| v.name == name) {
        return Err(NameProblem::Taken);
    }
    Ok(())
}

fn check_name(what: &'static str, name: &str) -> Result<(), NameProblem> {
    if name.is_empty() {
        return Err(NameProblem::Empty);
    }
    if name.contains('/') {
        return Err(NameProblem::Slash);
    }
    if name.len() > 240 {
        return Err(NameProblem::TooLong);
    }
    validate_name(what, name).map_err(|_| NameProblem::Reserved)
}

/// The name the New Volume dialog proposes: `NAME.qcow2` / `NAME.img`,
/// counting up past names the pool has (virt-manager's default).
pub fn suggest_volume_name(base: &str, format: VolumeFormat, existing: &[VolumeDef]) -> String {
    let extension = match format {
        VolumeFormat::Raw => "img",
        other => other.name(),
    };
    let taken = |n: &str| existing.iter().any(|v| v.name == n);
    let first = format!("{base}.{extension}");
    if !taken(&first) {
        return first;
    }
    (1..)
        .map(|i| format!("{base}-{i}.{extension}"))
        .find(|n| !taken(n))
        .unwrap_or(first)
}

/// Swaps a volume name's extension when its format changes, if the name
/// still has the other format's (so a typed name is left alone).
pub fn rename_for_format(name: &str, format: VolumeFormat) -> String {
    let (from, to) = match format {
        VolumeFormat::Raw => (".qcow2", ".img"),
        _ => (".img", ".qcow2"),
    };
    match name.strip_suffix(from) {
        Some(stem) => format!("{stem}{to}"),
        None => name.to_string(),
    }
}

/// How much of a new volume is allocated at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prealloc {
    /// Sparse: space is taken as the guest writes.
    Off,
    /// qcow2 only: its tables for the whole disk, data still sparse.
    Metadata,
    /// All of it now, so the guest cannot run out of space later.
    Full,
}

impl Prealloc {
    pub const ALL: [Prealloc; 3] = [Prealloc::Off, Prealloc::Metadata, Prealloc::Full];

    /// Whether a volume of `format` can be preallocated so.
    pub fn applies_to(self, format: VolumeFormat) -> bool {
        !(self == Prealloc::Metadata && format != VolumeFormat::Qcow2)
    }

    /// The choices New Volume offers for `format`, in order: a raw volume
    /// has no metadata to preallocate, so it is not offered one (as
    /// virt-manager does), rather than taken and quietly ignored.
    pub fn choices(format: VolumeFormat) -> Vec<Prealloc> {
        Prealloc::ALL
            .into_iter()
            .filter(|p| p.applies_to(format))
            .collect()
    }

    /// What stays chosen when the format changes to `format`: this choice
    /// where it still applies, else none.
    pub fn kept_for(self, format: VolumeFormat) -> Prealloc {
        if self.applies_to(format) {
            self
        } else {
            Prealloc::Off
        }
    }
}

/// The New Volume dialog's fields.
#[derive(Debug, Clone)]
pub struct VolumeRequest {
    pub name: String,
    pub format: VolumeFormat,
    pub capacity: u64,
    pub prealloc: Prealloc,
    /// A volume whose data the new qcow2 reads until it is written.
    pub backing: Option<PathBuf>,
}

/// Why a volume request is refused before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RequestProblem {
    Name(NameProblem),
    /// Metadata preallocation asked of a raw volume.
    PreallocFormat,
    /// A backing volume under a raw volume.
    BackingNeedsQcow2,
    /// A backing volume with preallocation: the data lives in the backing file.
    BackingWithPrealloc,
    /// Full preallocation of more than the pool has free.
    NoSpace {
        needed: u64,
        available: u64,
    },
}

impl VolumeRequest {
    /// The backend's request, checked against the pool's volumes and free
    /// space (`None`: unknown, not checked).
    pub fn to_new_volume(
        &self,
        existing: &[VolumeDef],
        available: Option<u64>,
    ) -> Result<NewVolume, RequestProblem> {
        check_volume_name(&self.name, existing).map_err(RequestProblem::Name)?;
        if !self.prealloc.applies_to(self.format) {
            return Err(RequestProblem::PreallocFormat);
        }
        if self.backing.is_some() {
            if self.format != VolumeFormat::Qcow2 {
                return Err(RequestProblem::BackingNeedsQcow2);
            }
            if self.prealloc != Prealloc::Off {
                return Err(RequestProblem::BackingWithPrealloc);
            }
        }
        if let (Prealloc::Full, Some(available)) = (self.prealloc, available) {
            if self.capacity > available {
                return Err(RequestProblem::NoSpace {
                    needed: self.capacity,
                    available,
                });
            }
        }
        // The backend reads preallocation as virsh's --allocation and
        // --prealloc-metadata: no allocation means all of the capacity.
        let (allocation, prealloc_metadata) = match self.prealloc {
            Prealloc::Off => (Some(0), false),
            Prealloc::Metadata => (Some(0), true),
            Prealloc::Full => (None, self.format == VolumeFormat::Qcow2),
        };
        Ok(NewVolume {
            name: self.name.clone(),
            capacity: self.capacity,
            allocation,
            format: self.format,
            prealloc_metadata,
            // The backend reads the backing file's format from its header.
            backing: self.backing.as_ref().map(|path| (path.clone(), None)),
        })
    }
}

/// Why a resize is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResizeProblem {
    /// The new size is the size it has.
    Unchanged,
    /// qcow2 images only grow.
    CannotShrink,
}

/// The backend's flags for resizing a `format` volume of `current` bytes
/// to `requested`: growing always, shrinking only raw files (cutting their
/// end off, which the dialog warns about).
pub fn check_resize(
    format: Option<VolumeFormat>,
    current: u64,
    requested: u64,
) -> Result<ResizeFlags, ResizeProblem> {
    if requested == current {
        return Err(ResizeProblem::Unchanged);
    }
    let shrink = requested < current;
    if shrink && format != Some(VolumeFormat::Raw) {
        return Err(ResizeProblem::CannotShrink);
    }
    Ok(ResizeFlags {
        allocate: false,
        shrink,
    })
}

/// One pool as the page lists it.
#[derive(Debug, Clone)]
pub struct PoolSummary {
    pub pool: Pool,
    /// The file system's size and use, when the folder can be read.
    pub space: Option<PoolSpace>,
}

impl PoolSummary {
    pub fn name(&self) -> &str {
        self.pool.name()
    }
}

/// Everything the page shows, read at once on a worker thread.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub pools: Vec<PoolSummary>,
    /// The selected pool's name and volumes (empty while it is stopped).
    pub selected: Option<String>,
    pub volumes: Vec<VolumeDef>,
}

impl Snapshot {
    pub fn selected_pool(&self) -> Option<&PoolSummary> {
        let name = self.selected.as_deref()?;
        self.pools.iter().find(|p| p.name() == name)
    }
}

/// Reads the pools and the volumes of `selected` (or of the first pool,
/// preferring the default one, when `selected` is gone or `None`).
pub fn load(store: &PoolStore, selected: Option<&str>) -> Result<Snapshot, PoolError> {
    let pools: Vec<PoolSummary> = store
        .list()?
        .into_iter()
        .map(|pool| {
            let space = if pool.def.target.is_dir() {
                pool.space().ok()
            } else {
                None
            };
            PoolSummary { pool, space }
        })
        .collect();
    let selected = selected
        .filter(|name| pools.iter().any(|p| p.name() == *name))
        .map(str::to_string)
        .or_else(|| {
            pools
                .iter()
                .find(|p| p.name() == crate::storage::pools::DEFAULT_POOL)
                .or(pools.first())
                .map(|p| p.name().to_string())
        });
    let volumes = match selected
        .as_deref()
        .and_then(|name| pools.iter().find(|p| p.name() == name))
    {
        Some(summary) if summary.pool.active => summary.pool.volumes()?,
        _ => Vec::new(),
    };
    Ok(Snapshot {
        pools,
        selected,
        volumes,
    })
}

/// Why a directory pool could not be added; nothing is left defined.
#[derive(Debug, thiserror::Error)]
pub enum AddPoolError {
    /// The name is taken, the folder belongs to another pool, …
    #[error(transparent)]
    Define(PoolError),
    /// The folder could not be made.
    #[error("cannot create folder {path}: {source}")]
    Folder {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Building or starting failed otherwise.
    #[error(transparent)]
    Start(PoolError),
}

/// Adds a directory pool over `folder` the way virt-manager's Add Pool
/// does: defined, its folder created, started, and started at login too.
/// If any step fails the definition is removed again.
pub fn add_dir_pool(store: &PoolStore, name: &str, folder: &Path) -> Result<Pool, AddPoolError> {
    store
        .define_dir(name, folder)
        .map_err(AddPoolError::Define)?;
    let rest = store
        .build(name)
        .map_err(|e| match e {
            PoolError::Io { source, .. } => AddPoolError::Folder {
                path: folder.to_path_buf(),
                source,
            },
            other => AddPoolError::Start(other),
        })
        .and_then(|()| store.start(name).map_err(AddPoolError::Start))
        .and_then(|()| store.set_autostart(name, true).map_err(AddPoolError::Start));
    match rest {
        Ok(()) => store.get(name).map_err(AddPoolError::Start),
        Err(error) => {
            let _ = store.destroy(name);
            let _ = store.undefine(name);
            Err(error)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::pools::xml::VolumeTarget;
    use crate::storage::pools::DEFAULT_POOL;

    const GIB: u64 = 1 << 30;

    fn volume(name: &str) -> VolumeDef {
        VolumeDef {
            name: name.into(),
            key: format!("/p/{name}"),
            capacity: 0,
            allocation: 0,
            physical: None,
            target: VolumeTarget::new(PathBuf::from(format!("/p/{name}")), None),
            backing_store: None,
        }
    }

    fn store(dir: &Path) -> PoolStore {
        PoolStore::open_at(
            &dir.join("config/pools"),
            &dir.join("run/pools"),
            &dir.join("images"),
        )
        .unwrap()
    }

    #[test]
    fn capacities_read_as_a_person_types_them() {
        assert_eq!(parse_capacity("2", SizeUnit::GiB), Ok(2 * GIB));
        assert_eq!(parse_capacity(" 1.5 ", SizeUnit::GiB), Ok(3 * GIB / 2));
        assert_eq!(parse_capacity("0,5", SizeUnit::TiB), Ok(512 * GIB));
        assert_eq!(parse_capacity(".25", SizeUnit::MiB), Ok(256 << 10));
        assert_eq!(parse_capacity("512", SizeUnit::MiB), Ok(512 << 20));
        // A third of a MiB is rounded up to whole sectors.
        assert_eq!(
            parse_capacity("0.333333", SizeUnit::MiB),
            Ok(349_696) // 349_525.0… bytes → 683 sectors
        );
        assert_eq!(parse_capacity("0", SizeUnit::GiB), Err(CapacityError::Zero));
        assert_eq!(
            parse_capacity("0.0", SizeUnit::GiB),
            Err(CapacityError::Zero)
        );
        for bad in ["", "ten", "1e3", "-1", "1.2.3", "."] {
            assert!(
                matches!(
                    parse_capacity(bad, SizeUnit::GiB),
                    Err(CapacityError::NotANumber(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(
            parse_capacity("99999999999", SizeUnit::TiB),
            Err(CapacityError::TooLarge(_))
        ));
    }

    #[test]
    fn sizes_print_with_the_unit_that_fits() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(1023), "1023 B");
        assert_eq!(human_size(4096), "4 KiB");
        assert_eq!(human_size(512 << 20), "512 MiB");
        assert_eq!(human_size(2 * GIB), "2.0 GiB");
        assert_eq!(human_size(3 * GIB / 2), "1.5 GiB");
        assert_eq!(human_size(1 << 40), "1.0 TiB");
        assert_eq!(human_size(5 << 50), "5120.0 TiB");
    }

    #[test]
    fn bar_fractions_stay_in_range() {
        assert_eq!(fraction(0, 0), 0.0);
        assert_eq!(fraction(1, 4), 0.25);
        assert_eq!(fraction(9, 4), 1.0);
    }

    #[test]
    fn names_are_checked_before_the_disk_is_touched() {
        let pools = vec!["default".to_string()];
        assert_eq!(check_pool_name("isos", &pools), Ok(()));
        assert_eq!(check_pool_name("", &pools), Err(NameProblem::Empty));
        assert_eq!(check_pool_name("a/b", &pools), Err(NameProblem::Slash));
        assert_eq!(check_pool_name(".x", &pools), Err(NameProblem::Reserved));
        assert_eq!(check_pool_name("default", &pools), Err(NameProblem::Taken));
        let volumes = [volume("disk.qcow2")];
        assert_eq!(check_volume_name(".x", &volumes), Ok(()));
        assert_eq!(
            check_volume_name("..", &volumes),
            Err(NameProblem::Reserved)
        );
        assert_eq!(
            check_volume_name(&"v".repeat(241), &volumes),
            Err(NameProblem::TooLong)
        );
        assert_eq!(
            check_volume_name("disk.qcow2", &volumes),
            Err(NameProblem::Taken)
        );
    }

    #[test]
    fn proposed_names_follow_the_format_and_skip_taken_ones() {
        let volumes = [volume("vm.qcow2"), volume("vm-1.qcow2")];
        assert_eq!(
            suggest_volume_name("vm", VolumeFormat::Qcow2, &volumes),
            "vm-2.qcow2"
        );
        assert_eq!(
            suggest_volume_name("vm", VolumeFormat::Raw, &volumes),
            "vm.img"
        );
        assert_eq!(rename_for_format("a.qcow2", VolumeFormat::Raw), "a.img");
        assert_eq!(rename_for_format("a.img", VolumeFormat::Qcow2), "a.qcow2");
        assert_eq!(rename_for_format("mine", VolumeFormat::Raw), "mine");
    }

    fn request(format: VolumeFormat, prealloc: Prealloc) -> VolumeRequest {
        VolumeRequest {
            name: "new".into(),
            format,
            capacity: 2 * GIB,
            prealloc,
            backing: None,
        }
    }

    #[test]
    fn preallocation_becomes_the_backends_allocation() {
        let spec = |format, prealloc| {
            let s = request(format, prealloc).to_new_volume(&[], None).unwrap();
            (s.allocation, s.prealloc_metadata)
        };
        assert_eq!(spec(VolumeFormat::Qcow2, Prealloc::Off), (Some(0), false));
        assert_eq!(
            spec(VolumeFormat::Qcow2, Prealloc::Metadata),
            (Some(0), true)
        );
        assert_eq!(spec(VolumeFormat::Qcow2, Prealloc::Full), (None, true));
        assert_eq!(spec(VolumeFormat::Raw, Prealloc::Off), (Some(0), false));
        assert_eq!(spec(VolumeFormat::Raw, Prealloc::Full), (None, false));
    }

    #[test]
    fn raw_is_not_offered_metadata_preallocation() {
        assert_eq!(Prealloc::choices(VolumeFormat::Qcow2), Prealloc::ALL);
        assert_eq!(
            Prealloc::choices(VolumeFormat::Raw),
            [Prealloc::Off, Prealloc::Full]
        );
        // Switching to raw drops Metadata and keeps the others; switching
        // back keeps what raw had.
        assert_eq!(
            Prealloc::Metadata.kept_for(VolumeFormat::Raw),
            Prealloc::Off
        );
        assert_eq!(Prealloc::Full.kept_for(VolumeFormat::Raw), Prealloc::Full);
        assert_eq!(Prealloc::Off.kept_for(VolumeFormat::Raw), Prealloc::Off);
        for p in Prealloc::ALL {
            assert_eq!(p.kept_for(VolumeFormat::Qcow2), p);
            // Whatever is kept is one of the choices offered.
            for format in [VolumeFormat::Qcow2, VolumeFormat::Raw] {
                assert!(Prealloc::choices(format).contains(&p.kept_for(format)));
            }
        }
    }

    #[test]
    fn impossible_requests_are_refused() {
        let taken = [volume("new")];
        assert_eq!(
            request(VolumeFormat::Qcow2, Prealloc::Off)
                .to_new_volume(&taken, None)
                .unwrap_err(),
            RequestProblem::Name(NameProblem::Taken)
        );
        assert_eq!(
            request(VolumeFormat::Raw, Prealloc::Metadata)
                .to_new_volume(&[], None)
                .unwrap_err(),
            RequestProblem::PreallocFormat
        );
        let mut backed = request(VolumeFormat::Raw, Prealloc::Off);
        backed.backing = Some("/p/base.qcow2".into());
        assert_eq!(
            backed.to_new_volume(&[], None).unwrap_err(),
            RequestProblem::BackingNeedsQcow2
        );
        backed.format = VolumeFormat::Qcow2;
        backed.prealloc = Prealloc::Metadata;
        assert_eq!(
            backed.to_new_volume(&[], None).unwrap_err(),
            RequestProblem::BackingWithPrealloc
        );
        backed.prealloc = Prealloc::Off;
        let spec = backed.to_new_volume(&[], Some(0)).unwrap();
        assert_eq!(spec.backing, Some(("/p/base.qcow2".into(), None)));
        assert_eq!(
            request(VolumeFormat::Raw, Prealloc::Full)
                .to_new_volume(&[], Some(GIB))
                .unwrap_err(),
            RequestProblem::NoSpace {
                needed: 2 * GIB,
                available: GIB
            }
        );
    }

    #[test]
    fn only_raw_volumes_shrink() {
        let raw = Some(VolumeFormat::Raw);
        let qcow2 = Some(VolumeFormat::Qcow2);
        assert!(!check_resize(qcow2, GIB, 2 * GIB).unwrap().shrink);
        assert!(check_resize(raw, 2 * GIB, GIB).unwrap().shrink);
        assert_eq!(
            check_resize(qcow2, 2 * GIB, GIB).unwrap_err(),
            ResizeProblem::CannotShrink
        );
        assert_eq!(
            check_resize(raw, GIB, GIB).unwrap_err(),
            ResizeProblem::Unchanged
        );
    }

    #[test]
    fn a_pool_is_added_running_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let pools = store(dir.path());
        let folder = dir.path().join("vms/fast");
        let pool = add_dir_pool(&pools, "fast", &folder).unwrap();
        assert!(pool.active && pool.autostart && folder.is_dir());

        // A folder below a file cannot be made: nothing stays defined.
        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        assert!(matches!(
            add_dir_pool(&pools, "bad", &file.join("sub")),
            Err(AddPoolError::Folder { .. })
        ));
        assert!(matches!(pools.get("bad"), Err(PoolError::NoSuchPool(_))));
        assert!(matches!(
            add_dir_pool(&pools, "fast", &dir.path().join("other")),
            Err(AddPoolError::Define(PoolError::PoolExists(_)))
        ));
        assert!(pools.get("fast").unwrap().active, "the first one survives");
    }

    #[test]
    fn the_snapshot_lists_pools_and_the_selected_pools_volumes() {
        let dir = tempfile::tempdir().unwrap();
        let pools = store(dir.path());
        add_dir_pool(&pools, "fast", &dir.path().join("fast")).unwrap();
        let spec = request(VolumeFormat::Qcow2, Prealloc::Off)
            .to_new_volume(&[], None)
            .unwrap();
        pools
            .get("fast")
            .unwrap()
            .create_volume(&spec, &mut |_, _| {})
            .unwrap();

        let snap = load(&pools, None).unwrap();
        assert_eq!(snap.selected.as_deref(), Some(DEFAULT_POOL));
        assert!(snap.volumes.is_empty());
        assert_eq!(snap.pools.len(), 2);
        assert!(snap.pools.iter().all(|p| p.space.is_some()));

        let snap = load(&pools, Some("fast")).unwrap();
        assert_eq!(snap.volumes.len(), 1);
        assert_eq!(snap.volumes[0].name, "new");
        assert_eq!(snap.volumes[0].capacity, 2 * GIB);

        pools.destroy("fast").unwrap();
        let snap = load(&pools, Some("fast")).unwrap();
        assert!(snap.volumes.is_empty(), "a stopped pool shows no volumes");
        assert!(!snap.selected_pool().unwrap().pool.active);
        let snap = load(&pools, Some("gone")).unwrap();
        assert_eq!(snap.selected.as_deref(), Some(DEFAULT_POOL));
    }
}
