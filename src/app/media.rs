//! Inserting and ejecting a CD-ROM's medium: the whole feature as the
//! window and the command line use it. (The VM process's side is
//! `vm_process::controller`, the drives themselves `vmm::media`.)
//!
//! - [`change_media`]: the Details page's Insert…/Eject buttons. A shut-off
//!   VM's definition changes (like `vireo change-media --config`); a
//!   running VM swaps the disc now and its stored definition changes too,
//!   so the medium is still there at the next start (`change-media --live
//!   --config`).
//! - [`change_medium`], [`change_medium_as`], [`query_block`]: a running
//!   VM's drive changed from outside it, as `virsh change-media --live`
//!   does: the client side of QMP's `blockdev-change-medium`, `eject` and
//!   `query-block`. Blocking (it talks to the VM process).
//!
//! Drives are named by their libvirt target (`hdc`, `sda`); the VM also
//! accepts libvirt's alias (`ide0-1-0`).
//!
//! The disc goes in with the format the definition gives the drive, or the
//! file's own when it gives none ([`medium_format`]: qcow2 by its magic,
//! otherwise raw, the probe of [`crate::storage::detect_format`], which the
//! editors use too), as libvirt sends it; that format is stored with it, so
//! the next start reads the disc the same way.

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::control::{BlockInfo, ControlClient, ControlError};
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
    Live(#[source] LiveMediaError),
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

/// Why a live medium change failed.
#[derive(Debug, thiserror::Error)]
pub enum LiveMediaError {
    /// The new image cannot be used (missing, unreadable, not a file).
    #[error("cannot use {} as a medium: {source}", path.display())]
    Source {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The VM refused (the class says why: `DeviceNotFound`,
    /// `GenericError` for a locked tray or a disk that is not removable),
    /// or could not be reached.
    #[error(transparent)]
    Control(#[from] ControlError),
    /// The VM answered `query-block` with something else than QEMU's shape.
    #[error("the VM's query-block answer is not understood: {0}")]
    Answer(String),
}

impl LiveMediaError {
    /// The QMP error class when the VM refused (`"DeviceNotFound"`,
    /// `"GenericError"`).
    pub fn qmp_class(&self) -> Option<&str> {
        match self {
            LiveMediaError::Control(ControlError::Command { class, .. }) => Some(class),
            _ => None,
        }
    }
}

fn connect(vm: &str) -> Result<ControlClient, LiveMediaError> {
    Ok(ControlClient::connect(RunFiles::new(vm).control())?)
}

/// The absolute path of `source`, and the file open for reading, once it
/// is known to be a regular file.
fn checked_source(source: &Path) -> Result<(PathBuf, std::fs::File), LiveMediaError> {
    let error = |source_error| LiveMediaError::Source {
        path: source.to_path_buf(),
        source: source_error,
    };
    let path = std::fs::canonicalize(source).map_err(error)?;
    let file = std::fs::File::open(&path).map_err(error)?;
    let metadata = file.metadata().map_err(error)?;
    if !metadata.is_file() {
        return Err(error(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "not a regular file",
        )));
    }
    Ok((path, file))
}

/// The format to open `path` with in a drive whose definition says
/// `driver_type`: that, when it says one, else the file's own (`qcow2` or
/// `raw`).
pub fn medium_format(driver_type: Option<&str>, path: &Path) -> String {
    match driver_type {
        Some(format) => format.to_string(),
        None => crate::storage::detect_format(path)
            .unwrap_or(crate::storage::ImageFormat::Raw)
            .name()
            .to_string(),
    }
}

/// The `<driver type=...>` of drive `target` in the stored definition of
/// `vm`, if it has one (a VM started without a definition has none).
fn defined_format(vm: &str, target: &str) -> Option<String> {
    let definition = DomainStore::open().find(vm).ok()?;
    let (_, disk) = definition.domain().disk(target).ok()??;
    disk.driver_type
}

/// Puts `source` (an ISO image, raw or qcow2) into the CD-ROM drive
/// `target` of the running VM `vm`, or ejects its disc when `source` is
/// `None`. The format is the drive's in the VM's stored definition, or
/// the file's own (see [`medium_format`]). `force` overrides a lock the
/// guest put on the tray; without it a locked drive refuses (and the guest
/// is asked to eject). When the image cannot be opened the drive keeps its
/// disc.
pub fn change_medium(
    vm: &str,
    target: &str,
    source: Option<&Path>,
    force: bool,
) -> Result<(), LiveMediaError> {
    let driver_type = source.and_then(|_| defined_format(vm, target));
    change_medium_as(vm, target, source, driver_type.as_deref(), force)
}

/// [`change_medium`] with the drive's `<driver type=...>` given
/// (`None`: the file's own format).
pub fn change_medium_as(
    vm: &str,
    target: &str,
    source: Option<&Path>,
    driver_type: Option<&str>,
    force: bool,
) -> Result<(), LiveMediaError> {
    let source = source.map(checked_source).transpose()?;
    let mut client = connect(vm)?;
    match source {
        Some((path, file)) => {
            // The VM process is confined to its own files, so the disc is
            // opened here and passed to it, as libvirt passes files to QEMU.
            let added = client.execute_with_fd(
                "add-fd",
                json!({"opaque": path.to_string_lossy()}),
                file.as_fd(),
            )?;
            let fdset = added
                .get("fdset-id")
                .and_then(Value::as_u64)
                .ok_or_else(|| LiveMediaError::Answer(format!("add-fd answered {added}")))?;
            let changed = client.execute(
                "blockdev-change-medium",
                json!({
                    "id": target,
                    "filename": format!("/dev/fdset/{fdset}"),
                    "format": medium_format(driver_type, &path),
                    "force": force,
                }),
            );
            // The drive holds its own duplicate: the set can go either way.
            let removed = client.execute("remove-fd", json!({"fdset-id": fdset}));
            changed?;
            removed?;
        }
        None => {
            client.execute("eject", json!({"id": target, "force": force}))?;
        }
    };
    Ok(())
}

/// The block devices of the running VM `vm`, as `query-block` reports
/// them (`device` is the target name, `qdev` libvirt's alias).
pub fn query_block(vm: &str) -> Result<Vec<BlockInfo>, LiveMediaError> {
    let answer = connect(vm)?.execute("query-block", Value::Null)?;
    serde_json::from_value(answer).map_err(|e| LiveMediaError::Answer(e.to_string()))
}

/// The drive `target` in `devices`, by target name or alias.
pub fn find<'a>(devices: &'a [BlockInfo], target: &str) -> Option<&'a BlockInfo> {
    devices
        .iter()
        .find(|d| d.device == target || d.qdev.as_deref() == Some(target))
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

    #[test]
    fn a_missing_source_fails_before_reaching_the_vm() {
        let error = change_medium(
            "no-such-vm-for-this-test",
            "hdc",
            Some(Path::new("/nonexistent/new.iso")),
            false,
        )
        .unwrap_err();
        assert!(matches!(error, LiveMediaError::Source { .. }), "{error:?}");
        assert!(
            error
                .to_string()
                .starts_with("cannot use /nonexistent/new.iso as a medium: "),
            "{error}"
        );
        let dir = tempfile::tempdir().unwrap();
        let error = change_medium("x", "hdc", Some(dir.path()), false).unwrap_err();
        assert!(error.to_string().contains("not a regular file"), "{error}");
    }

    #[test]
    fn the_definition_names_the_format_else_the_file_does() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("disc.iso");
        std::fs::write(&iso, vec![0x42; 4096]).unwrap();
        let qcow2 = dir.path().join("disc.qcow2");
        std::fs::write(&qcow2, b"QFI\xfb\0\0\0\x03").unwrap();
        assert_eq!(medium_format(None, &iso), "raw");
        assert_eq!(medium_format(None, &qcow2), "qcow2");
        assert_eq!(medium_format(Some("raw"), &qcow2), "raw");
        assert_eq!(medium_format(Some("qcow2"), &iso), "qcow2");
        // A file that cannot be read is the VM's to refuse.
        assert_eq!(medium_format(None, &dir.path().join("gone.iso")), "raw");
    }
}
