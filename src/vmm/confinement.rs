//! What a VM needs of the host once its process is confined
//! ([`crate::sandbox`]): the files a machine opens every time it is built
//! (a reset builds it again), by what it does with them.
//!
//! - read and write: `/dev/kvm` and the writable disk images;
//! - read: read-only images and CD-ROMs with their qcow2 backing chains,
//!   the kernel and initrd of a direct boot, `<loader>`, and the firmware
//!   directories (SeaBIOS, its VGA BIOS, iPXE's ROM);
//! - a user-mode NIC: `/etc/resolv.conf` (libslirp's DNS) and
//!   `/dev/urandom` (GLib's random numbers, behind libslirp);
//! - a bridged NIC: `/dev/net/tun` and the network devices in sysfs, and
//!   CAP_NET_ADMIN is kept to create the TAP device again after a reset;
//! - `/sys/devices/system/cpu` (glibc asks how many CPUs there are).

use std::path::PathBuf;

use super::config::{DiskKind, NicBackend, VmConfig};
use crate::sandbox::{FsRules, Plan};

/// CAP_NET_ADMIN's number (linux/capability.h).
const CAP_NET_ADMIN: u32 = 12;

/// The sandbox plan of a VM running `config`; the caller adds its own
/// run directory and whatever its consoles write to.
pub fn plan(config: &VmConfig) -> Plan {
    let mut files = FsRules {
        // Opened by the runner once the sockets are up.
        read_write: vec![PathBuf::from("/dev/kvm")],
        ..FsRules::default()
    };
    for disk in &config.disks {
        let Some(path) = &disk.path else { continue };
        if disk.read_only || disk.kind == DiskKind::Cdrom {
            files.read_only.push(path.clone());
        } else {
            files.read_write.push(path.clone());
        }
        files
            .read_only
            .extend(crate::storage::qcow2::backing_chain(path));
    }
    if let Some(boot) = &config.direct_boot {
        files.read_only.push(boot.kernel.clone());
        files.read_only.extend(boot.initrd.clone());
    }
    files.read_only.extend(config.loader.clone());
    files.read_only.extend(super::firmware::search_dirs());
    files
        .read_only
        .push(PathBuf::from("/sys/devices/system/cpu"));
    let mut keep_capabilities = Vec::new();
    for nic in &config.nics {
        match nic.backend {
            NicBackend::User(_) => {
                files.read_only.push(PathBuf::from("/etc/resolv.conf"));
                files.read_only.push(PathBuf::from("/dev/urandom"));
            }
            NicBackend::Tap { .. } => {
                files.read_write.push(PathBuf::from("/dev/net/tun"));
                files.read_only.push(PathBuf::from("/sys/class/net"));
                files
                    .read_only
                    .push(PathBuf::from("/sys/devices/virtual/net"));
                keep_capabilities.push(CAP_NET_ADMIN);
            }
            NicBackend::Switch { .. } => {}
        }
    }
    keep_capabilities.dedup();
    Plan {
        files,
        keep_capabilities,
    }
}
