//! Landlock (the `landlock` crate): the file system a VM process may
//! still reach once confined: its images, firmware and kernel, its run
//! directory, and the few system files its libraries read. Everything
//! else (`/etc/shadow`, other VMs' logs and disks, the user's home) is
//! refused with EACCES.
//!
//! Rules are kept to what each path needs: read-only paths may be read
//! and listed, read-write files also written and truncated, and
//! read-write directories (the run directory) also hold new sockets and
//! files. Files opened before the process confines itself (its log, which
//! is stderr; `/dev/kvm`) stay usable.

use std::path::{Path, PathBuf};

use landlock::{
    Access, AccessFs, BitFlags, PathBeneath, PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr,
    RulesetStatus, ABI,
};

/// The newest Landlock ABI this code knows; older kernels get what they
/// support (best effort), a kernel without Landlock gets nothing.
const ABI_VERSION: ABI = ABI::V5;

/// How far the file system is confined.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsConfinement {
    Full,
    /// The kernel's Landlock lacks some of the rights asked for.
    Partial,
    /// The kernel has no Landlock (or it is disabled).
    None,
}

/// The paths a VM process may reach, by what it may do with them.
#[derive(Debug, Clone, Default)]
pub struct FsRules {
    pub read_only: Vec<PathBuf>,
    pub read_write: Vec<PathBuf>,
    /// Directories where files and sockets are made and removed.
    pub read_write_dirs: Vec<PathBuf>,
}

fn read_access() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir
}

fn write_access() -> BitFlags<AccessFs> {
    read_access() | AccessFs::WriteFile | AccessFs::Truncate | AccessFs::IoctlDev
}

fn dir_access() -> BitFlags<AccessFs> {
    AccessFs::from_all(ABI_VERSION) & !AccessFs::Execute
}

/// Only the rights that apply to a file when `path` is one (Landlock
/// refuses directory rights on a file).
fn for_path(path: &Path, access: BitFlags<AccessFs>) -> BitFlags<AccessFs> {
    if path.is_dir() {
        access
    } else {
        access & AccessFs::from_file(ABI_VERSION)
    }
}

/// Restricts the calling thread (and the threads it starts later) to
/// `rules`. Paths that do not exist are skipped: a missing image fails
/// later with its own error.
pub fn restrict(rules: &FsRules) -> Result<FsConfinement, String> {
    let fail = |e: landlock::RulesetError| format!("Landlock: {e}");
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(ABI_VERSION))
        .map_err(fail)?
        .create()
        .map_err(fail)?;
    let groups = [
        (&rules.read_only, read_access()),
        (&rules.read_write, write_access()),
        (&rules.read_write_dirs, dir_access()),
    ];
    for (paths, access) in groups {
        for path in paths {
            let Ok(fd) = PathFd::new(path) else {
                tracing::debug!(path = %path.display(), "sandbox: not there, no rule");
                continue;
            };
            ruleset = ruleset
                .add_rule(PathBeneath::new(fd, for_path(path, access)))
                .map_err(fail)?;
        }
    }
    let status = ruleset.restrict_self().map_err(fail)?;
    Ok(match status.ruleset {
        RulesetStatus::FullyEnforced => FsConfinement::Full,
        RulesetStatus::PartiallyEnforced => FsConfinement::Partial,
        RulesetStatus::NotEnforced => FsConfinement::None,
    })
}
