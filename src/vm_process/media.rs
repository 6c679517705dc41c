//! The VM process's side of `query-block`, `eject`,
//! `blockdev-change-medium`, `blockdev-open-tray`, `blockdev-close-tray` and
//! `blockdev-remove-medium`: QMP's shapes and error classes around the
//! runner's media requests ([`crate::vmm::media`]).
//!
//! As QEMU's `bdrv_open`, a new medium is opened with the format the
//! client names (`raw` or `qcow2`; others are refused as unknown drivers),
//! or the format its first bytes show when it names none.
//!
//! A new image is opened here, on the control connection's thread, after
//! the drive was found and before the runner is asked: a missing or
//! unreadable file is a QMP error and the drive keeps its disc; the vCPUs
//! never wait for the file system.

use crate::control::{BlockDeviceInfo, BlockError, BlockInfo, ChangeMedium, ReadOnlyMode};
use crate::storage::ImageFormat;
use crate::vmm::media::{BlockDevice, MediaAnswer, MediaError, MediaRequest, NewMedium};
use crate::vmm::VmHandle;

impl From<MediaError> for BlockError {
    fn from(error: MediaError) -> Self {
        match error {
            MediaError::NotFound(device) => BlockError::not_found(&device),
            other => BlockError::generic(other.to_string()),
        }
    }
}

fn devices(handle: &VmHandle) -> Result<Vec<BlockDevice>, MediaError> {
    match handle.media(MediaRequest::Query)? {
        MediaAnswer::Devices(devices) => Ok(devices),
        MediaAnswer::Changed { .. } => Err(MediaError::Unavailable(
            "the VM answered a query with a change".into(),
        )),
    }
}

/// QEMU's `BlockInfo` for one device.
fn block_info(device: BlockDevice) -> BlockInfo {
    BlockInfo {
        inserted: device.inserted.map(|medium| {
            let size = crate::storage::virtual_size(&medium.path).ok();
            BlockDeviceInfo::new(
                medium.path.to_string_lossy().into_owned(),
                medium.read_only,
                medium.format.name(),
                size,
            )
        }),
        device: device.target,
        qdev: Some(device.alias),
        kind: "unknown".into(),
        removable: device.removable,
        locked: device.locked,
        tray_open: device.tray_open,
    }
}

pub(super) fn query_block(handle: &VmHandle) -> Vec<BlockInfo> {
    match devices(handle) {
        Ok(devices) => devices.into_iter().map(block_info).collect(),
        Err(error) => {
            tracing::warn!(%error, "query-block: no answer from the VM");
            Vec::new()
        }
    }
}

pub(super) fn eject(handle: &VmHandle, device: &str, force: bool) -> Result<(), BlockError> {
    handle.media(MediaRequest::Change {
        device: device.to_string(),
        medium: None,
        force,
    })?;
    Ok(())
}

pub(super) fn open_tray(handle: &VmHandle, device: &str, force: bool) -> Result<(), BlockError> {
    handle.media(MediaRequest::OpenTray {
        device: device.to_string(),
        force,
    })?;
    Ok(())
}

pub(super) fn close_tray(handle: &VmHandle, device: &str) -> Result<(), BlockError> {
    handle.media(MediaRequest::CloseTray {
        device: device.to_string(),
    })?;
    Ok(())
}

pub(super) fn remove_medium(handle: &VmHandle, id: &str) -> Result<(), BlockError> {
    handle.media(MediaRequest::RemoveMedium {
        device: id.to_string(),
    })?;
    Ok(())
}

pub(super) fn change_medium(handle: &VmHandle, change: &ChangeMedium) -> Result<(), BlockError> {
    // Find the drive first, as QEMU does, so that a wrong name is reported
    // as such whatever the file.
    let devices = devices(handle)?;
    let device = devices
        .iter()
        .find(|d| {
            d.target == change.device
                || d.alias == change.device
                || change.device.strip_prefix("drive-") == Some(d.alias.as_str())
        })
        .ok_or_else(|| BlockError::not_found(&change.device))?;
    if !device.removable {
        return Err(MediaError::NotRemovable(change.device.clone()).into());
    }
    if change.read_only == ReadOnlyMode::ReadWrite {
        return Err(BlockError::generic(format!(
            "Device '{}' is a CD-ROM drive: its medium is read-only",
            change.device
        )));
    }
    let format = match change.format.as_deref() {
        // Probed; a file that cannot be read fails to open just below.
        None => crate::storage::detect_format(&change.filename).unwrap_or(ImageFormat::Raw),
        Some(name) => ImageFormat::parse(name)
            .ok_or_else(|| BlockError::generic(format!("Unknown driver: '{name}'")))?,
    };
    let backend = crate::storage::open_image(&change.filename, format, true).map_err(|error| {
        tracing::warn!(%error, "blockdev-change-medium: the new medium cannot be opened");
        BlockError::generic(format!(
            "Could not open '{}': {}",
            change.filename.display(),
            error_chain(&error)
        ))
    })?;
    handle.media(MediaRequest::Change {
        device: change.device.clone(),
        medium: Some(NewMedium {
            backend,
            path: change.filename.clone(),
            format,
        }),
        force: change.force,
    })?;
    Ok(())
}

/// The innermost cause of `error`, which says what went wrong ("No such
/// file or directory") without repeating the path.
fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut innermost = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    innermost.to_string()
}
