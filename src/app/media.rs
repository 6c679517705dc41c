//! Inserting and ejecting a CD-ROM's medium, as the Details page's
//! Insert…/Eject buttons do it: a shut-off VM's definition changes (like
//! `vireo change-media --config`); a running VM swaps the disc now
//! (`control::media`, QEMU's `blockdev-change-medium` / `eject`) and its
//! stored definition changes too, so the medium is still there at the next
//! start (`change-media --live --config`).
//!
//! The disc goes in with the format the definition gives the drive, or the
//! file's own when it gives none (`control::media::medium_format`); that
//! format is stored with it, so the next start reads the disc the same way.

use std::path::{Path, PathBuf};

use crate::control::media::{change_medium_as, medium_format};
use crate::definitions::{DomainStore, StoreError};
use crate::vm_process::RunFiles;

/// What a media change did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaChange {
    /// The VM is off: its definition changed.
    Definition,
    /// The running VM changed the medium now, and the definition too.
    Live,
}

/// Why a media change failed; the messages are for people.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    Domain(#[from] crate::domain::DomainError),
    /// No drive with that target.
    #[error("“{vm}” has no drive {target}.")]
    NoDrive { vm: String, target: String },
    /// The drive is a hard disk.
    #[error("{0} is a hard disk, not a CD-ROM drive.")]
    NotRemovable(String),
    /// The image to insert does not exist.
    #[error("The file {} does not exist.", .0.display())]
    MissingFile(PathBuf),
    /// The running VM refused (a drive the guest locked is forced open,
    /// so this is a disc it cannot read, or a VM that did not answer).
    #[error("The running VM did not change the medium: {0}")]
    Live(#[source] crate::control::media::MediaError),
}

/// Puts `source` into CD-ROM drive `target` of VM `vm`, or ejects its
/// medium when `source` is `None`.
pub fn change_media(
    vm: &str,
    target: &str,
    source: Option<&Path>,
) -> Result<MediaChange, MediaError> {
    let running = RunFiles::new(vm).running().is_some();
    change_media_in(&DomainStore::open(), vm, target, source, running)
}

/// [`change_media`] against `store`, for a VM that is `running` or not.
pub fn change_media_in(
    store: &DomainStore,
    vm: &str,
    target: &str,
    source: Option<&Path>,
    running: bool,
) -> Result<MediaChange, MediaError> {
    let definition = store.find(vm)?;
    let mut domain = definition.domain().clone();
    let (index, mut disk) = domain.disk(target)?.ok_or_else(|| MediaError::NoDrive {
        vm: definition.name.clone(),
        target: target.to_string(),
    })?;
    if disk.device != "cdrom" && disk.device != "floppy" {
        return Err(MediaError::NotRemovable(target.to_string()));
    }
    let source = match source {
        Some(path) => Some(
            std::fs::canonicalize(path).map_err(|_| MediaError::MissingFile(path.to_path_buf()))?,
        ),
        None => None,
    };
    let change = if running {
        // Forced, as the Eject button means it: the user, not the guest,
        // decides when the disc comes out. The definition follows only a
        // change the VM made.
        change_medium_as(
            &definition.name,
            target,
            source.as_deref(),
            disk.driver_type.as_deref(),
            true,
        )
        .map_err(MediaError::Live)?;
        MediaChange::Live
    } else {
        MediaChange::Definition
    };
    if let Some(path) = &source {
        disk.driver_type = Some(medium_format(disk.driver_type.as_deref(), path));
    }
    disk.source = source.map(|p| p.to_string_lossy().into_owned());
    domain.update_device(index, &disk);
    store.define(&domain.to_xml())?;
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn define(store: &DomainStore) {
        store
            .define(
                "<domain type='kvm'><name>wren</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>\
                 <os><type>hvm</type></os><devices>\
                 <disk type='file' device='disk'><source file='/tmp/a.img'/><target dev='vda' bus='virtio'/></disk>\
                 <disk type='file' device='cdrom'><target dev='hdc' bus='ide'/><readonly/></disk>\
                 </devices></domain>",
            )
            .unwrap();
    }

    #[test]
    fn a_shut_off_vm_gets_the_medium_in_its_definition() {
        let dir = tempfile::tempdir().unwrap();
        let store = DomainStore::at(dir.path().join("domains"));
        define(&store);
        let iso = dir.path().join("install.iso");
        std::fs::write(&iso, b"iso").unwrap();
        let done = change_media_in(&store, "wren", "hdc", Some(&iso), false).unwrap();
        assert_eq!(done, MediaChange::Definition);
        let (_, cd) = store
            .find("wren")
            .unwrap()
            .domain()
            .disk("hdc")
            .unwrap()
            .unwrap();
        assert_eq!(cd.source.as_deref(), iso.canonicalize().unwrap().to_str());
        assert_eq!(cd.driver_type.as_deref(), Some("raw"), "probed, and kept");
        // A qcow2 disc in a drive whose definition names no format.
        let qcow2 = dir.path().join("install.qcow2");
        std::fs::write(&qcow2, b"QFI\xfb\0\0\0\x03").unwrap();
        change_media_in(&store, "wren", "hdc", Some(&qcow2), false).unwrap();
        let cd = store
            .find("wren")
            .unwrap()
            .domain()
            .disk("hdc")
            .unwrap()
            .unwrap()
            .1;
        assert_eq!(
            cd.driver_type.as_deref(),
            Some("raw"),
            "the definition's format stays"
        );

        change_media_in(&store, "wren", "hdc", None, false).unwrap();
        let (_, cd) = store
            .find("wren")
            .unwrap()
            .domain()
            .disk("hdc")
            .unwrap()
            .unwrap();
        assert_eq!(cd.source, None);
    }

    #[test]
    fn wrong_drives_and_missing_files_change_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = DomainStore::at(dir.path().join("domains"));
        define(&store);
        let before = store.find("wren").unwrap().xml;
        let iso = dir.path().join("install.iso");
        std::fs::write(&iso, b"iso").unwrap();
        let e = change_media_in(&store, "wren", "vda", Some(&iso), false).unwrap_err();
        assert!(matches!(e, MediaError::NotRemovable(_)), "{e}");
        let e = change_media_in(&store, "wren", "hdd", None, false).unwrap_err();
        assert!(e.to_string().contains("no drive hdd"), "{e}");
        let gone = dir.path().join("gone.iso");
        let e = change_media_in(&store, "wren", "hdc", Some(&gone), false).unwrap_err();
        assert!(e.to_string().contains("gone.iso"), "{e}");
        // A VM that does not answer: refused, definition kept.
        let e = change_media_in(&store, "wren", "hdc", Some(&iso), true).unwrap_err();
        assert!(matches!(e, MediaError::Live(_)), "{e}");
        assert_eq!(store.find("wren").unwrap().xml, before);
    }
}
