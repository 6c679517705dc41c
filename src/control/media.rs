//! Changing a running VM's CD-ROM disc from outside it, as `virsh
//! change-media --live` does: the client side of QMP's
//! `blockdev-change-medium`, `eject` and `query-block`. Blocking (it talks
//! to the VM process); GTK-free, so the CLI and the window's workers share
//! it.
//!
//! Drives are named by their libvirt target (`hdc`, `sda`); the VM also
//! accepts libvirt's alias (`ide0-1-0`).
//!
//! The new disc is sent with its format, as libvirt sends it: the
//! definition's `<driver type=...>` for the drive when it names one, else
//! what the file is (qcow2 by its magic, otherwise raw: the probe of
//! [`crate::storage::detect_format`], which the editors use too).

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::{socket_path, BlockInfo, ControlClient, ControlError};

/// Why a live medium change failed.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
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

impl MediaError {
    /// The QMP error class when the VM refused (`"DeviceNotFound"`,
    /// `"GenericError"`).
    pub fn qmp_class(&self) -> Option<&str> {
        match self {
            MediaError::Control(ControlError::Command { class, .. }) => Some(class),
            _ => None,
        }
    }
}

fn connect(vm: &str) -> Result<ControlClient, MediaError> {
    Ok(ControlClient::connect(socket_path(
        &crate::paths::runtime_dir(),
        vm,
    ))?)
}

/// The absolute path of `source`, once it is known to be a readable file.
fn checked_source(source: &Path) -> Result<PathBuf, MediaError> {
    let error = |source_error| MediaError::Source {
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
    Ok(path)
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
    let definition = crate::definitions::DomainStore::open().find(vm).ok()?;
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
) -> Result<(), MediaError> {
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
) -> Result<(), MediaError> {
    let source = source.map(checked_source).transpose()?;
    let mut client = connect(vm)?;
    match source {
        Some(path) => client.execute(
            "blockdev-change-medium",
            json!({
                "id": target,
                "filename": path.to_string_lossy(),
                "format": medium_format(driver_type, &path),
                "force": force,
            }),
        )?,
        None => client.execute("eject", json!({"id": target, "force": force}))?,
    };
    Ok(())
}

/// The block devices of the running VM `vm`, as `query-block` reports
/// them (`device` is the target name, `qdev` libvirt's alias).
pub fn query_block(vm: &str) -> Result<Vec<BlockInfo>, MediaError> {
    let answer = connect(vm)?.execute("query-block", Value::Null)?;
    serde_json::from_value(answer).map_err(|e| MediaError::Answer(e.to_string()))
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

    #[test]
    fn a_missing_source_fails_before_reaching_the_vm() {
        let error = change_medium(
            "no-such-vm-for-this-test",
            "hdc",
            Some(Path::new("/nonexistent/new.iso")),
            false,
        )
        .unwrap_err();
        assert!(matches!(error, MediaError::Source { .. }), "{error:?}");
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
