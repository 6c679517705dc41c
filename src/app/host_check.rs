//! Whether this host can run VMs at all, checked when the window opens
//! so it can say what to fix instead of failing at the first Start.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

/// Why VMs cannot run here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KvmProblem {
    /// No `/dev/kvm`: virtualization is off in the firmware, the kvm
    /// module is not loaded, or a Flatpak lacks `--device=kvm`.
    Missing,
    /// `/dev/kvm` exists but this user may not open it.
    NoAccess { group: Option<String> },
}

/// The KVM device the window checks: `/dev/kvm`, or `VIREO_KVM_DEVICE`
/// (which lets tests show the window's message on a host that has KVM).
pub fn kvm_device() -> PathBuf {
    std::env::var_os("VIREO_KVM_DEVICE")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/dev/kvm"))
}

/// What stops VMs from running, if anything.
pub fn kvm_problem(device: &Path) -> Option<KvmProblem> {
    if !device.exists() {
        return Some(KvmProblem::Missing);
    }
    match OpenOptions::new().read(true).write(true).open(device) {
        Ok(_) => None,
        Err(_) => Some(KvmProblem::NoAccess {
            group: owning_group(device),
        }),
    }
}

/// The name of the group that owns `path` (`kvm` on most distributions).
fn owning_group(path: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let gid = std::fs::metadata(path).ok()?.gid();
    let groups = std::fs::read_to_string("/etc/group").ok()?;
    groups.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        let _password = fields.next()?;
        (fields.next()?.parse::<u32>().ok()? == gid).then(|| name.to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_is_reported_as_missing() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            kvm_problem(&dir.path().join("kvm")),
            Some(KvmProblem::Missing)
        );
    }

    #[test]
    fn an_openable_device_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        let device = dir.path().join("kvm");
        std::fs::write(&device, b"").unwrap();
        assert_eq!(kvm_problem(&device), None);
    }
}
