//! Inserting and ejecting a CD-ROM's medium, as the Details page's
//! Insert…/Eject buttons do it: a shut-off VM's definition changes (like
//! `vireo change-media --config`); a running VM is told over its QMP
//! control socket (`blockdev-change-medium` / `eject`, QEMU's commands with
//! the drive named by its target) and its stored definition changes too,
//! so the medium is still there at the next start.

use std::path::{Path, PathBuf};

use serde_json::json;

use crate::control::{ControlClient, ControlError};
use crate::runtime::RunFiles;
use crate::store::{Store, StoreError};

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
    /// The running VMM does not know the command (yet).
    #[error("This VM cannot change media while running; shut it down first.")]
    LiveUnsupported,
    /// The running VM refused or did not answer.
    #[error("The VM did not change the medium: {0}")]
    Control(#[source] ControlError),
}

/// Puts `source` into CD-ROM drive `target` of VM `vm`, or ejects its
/// medium when `source` is `None`.
pub fn change_media(
    vm: &str,
    target: &str,
    source: Option<&Path>,
) -> Result<MediaChange, MediaError> {
    let files = RunFiles::new(vm);
    let control = files.running().map(|_| files.control());
    change_media_in(&Store::open(), vm, target, source, control.as_deref())
}

/// [`change_media`] against `store`; `control` is the running VM's
/// control socket, `None` when it is off.
pub fn change_media_in(
    store: &Store,
    vm: &str,
    target: &str,
    source: Option<&Path>,
    control: Option<&Path>,
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
    let change = match control {
        None => MediaChange::Definition,
        Some(socket) => {
            live_change(socket, target, source.as_deref())?;
            MediaChange::Live
        }
    };
    disk.source = source.map(|p| p.to_string_lossy().into_owned());
    domain.update_device(index, &disk);
    store.define(&domain.to_xml())?;
    Ok(change)
}

/// QEMU's commands: `blockdev-change-medium` opens the tray, swaps the
/// medium and closes it; `eject` with `force` opens it even if the guest
/// locked it.
fn live_change(socket: &Path, target: &str, source: Option<&Path>) -> Result<(), MediaError> {
    let mut client = ControlClient::connect(socket).map_err(MediaError::Control)?;
    let result = match source {
        Some(path) => client.execute(
            "blockdev-change-medium",
            json!({"id": target, "device": target, "filename": path.to_string_lossy()}),
        ),
        None => client.execute(
            "eject",
            json!({"id": target, "device": target, "force": true}),
        ),
    };
    match result {
        Ok(_) => Ok(()),
        Err(ControlError::Command { class, .. }) if class == "CommandNotFound" => {
            Err(MediaError::LiveUnsupported)
        }
        Err(e) => Err(MediaError::Control(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn define(store: &Store) {
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
        let store = Store::at(dir.path().join("domains"));
        define(&store);
        let iso = dir.path().join("install.iso");
        std::fs::write(&iso, b"iso").unwrap();
        let done = change_media_in(&store, "wren", "hdc", Some(&iso), None).unwrap();
        assert_eq!(done, MediaChange::Definition);
        let (_, cd) = store
            .find("wren")
            .unwrap()
            .domain()
            .disk("hdc")
            .unwrap()
            .unwrap();
        assert_eq!(cd.source.as_deref(), iso.canonicalize().unwrap().to_str());

        change_media_in(&store, "wren", "hdc", None, None).unwrap();
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
        let store = Store::at(dir.path().join("domains"));
        define(&store);
        let before = store.find("wren").unwrap().xml;
        let iso = dir.path().join("install.iso");
        std::fs::write(&iso, b"iso").unwrap();
        let e = change_media_in(&store, "wren", "vda", Some(&iso), None).unwrap_err();
        assert!(matches!(e, MediaError::NotRemovable(_)), "{e}");
        let e = change_media_in(&store, "wren", "hdd", None, None).unwrap_err();
        assert!(e.to_string().contains("no drive hdd"), "{e}");
        let gone = dir.path().join("gone.iso");
        let e = change_media_in(&store, "wren", "hdc", Some(&gone), None).unwrap_err();
        assert!(e.to_string().contains("gone.iso"), "{e}");
        // A VM whose control socket is gone: refused, definition kept.
        let socket = dir.path().join("wren.ctl");
        let e = change_media_in(&store, "wren", "hdc", Some(&iso), Some(&socket)).unwrap_err();
        assert!(
            matches!(e, MediaError::Control(ControlError::NotRunning { .. })),
            "{e}"
        );
        assert_eq!(store.find("wren").unwrap().xml, before);
    }
}
