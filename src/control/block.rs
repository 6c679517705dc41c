//! The block-device part of the protocol: `query-block`'s answer and the
//! arguments of `eject` and `blockdev-change-medium`, shaped as QEMU's
//! `qapi/block-core.json` (`BlockInfo`, `BlockDeviceInfo`, `ImageInfo`) and
//! `qapi/block.json` define them, so that QMP tools read them unchanged.
//!
//! Members QEMU has that Vireo has nothing behind (I/O throttling, cache
//! modes, write thresholds) are reported with the values an unthrottled,
//! write-back QEMU drive reports.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// One block device (QEMU's `BlockInfo`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockInfo {
    /// The block device's name: the libvirt target (`hdc`, `vda`).
    pub device: String,
    /// The guest device's id: libvirt's alias (`ide0-1-0`, `virtio-disk0`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qdev: Option<String>,
    /// Always `"unknown"` (QEMU's deprecated member, kept for old tools).
    #[serde(rename = "type", default)]
    pub kind: String,
    pub removable: bool,
    /// The guest prevents medium removal.
    pub locked: bool,
    /// Only for a drive with a tray.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tray_open: Option<bool>,
    /// The medium, when the drive has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inserted: Option<BlockDeviceInfo>,
}

/// The medium of a block device (QEMU's `BlockDeviceInfo`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BlockDeviceInfo {
    /// The image file.
    pub file: String,
    pub ro: bool,
    /// The format driver (`raw`, `qcow2`).
    pub drv: String,
    #[serde(default)]
    pub encrypted: bool,
    #[serde(default)]
    pub backing_file_depth: u32,
    #[serde(default = "off")]
    pub detect_zeroes: String,
    #[serde(default)]
    pub bps: u64,
    #[serde(default)]
    pub bps_rd: u64,
    #[serde(default)]
    pub bps_wr: u64,
    #[serde(default)]
    pub iops: u64,
    #[serde(default)]
    pub iops_rd: u64,
    #[serde(default)]
    pub iops_wr: u64,
    #[serde(default)]
    pub write_threshold: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ImageInfo>,
}

fn off() -> String {
    "off".into()
}

impl BlockDeviceInfo {
    /// A medium as an unthrottled QEMU drive reports it.
    pub fn new(file: String, ro: bool, drv: &str, virtual_size: Option<u64>) -> Self {
        Self {
            image: virtual_size.map(|size| ImageInfo {
                filename: file.clone(),
                format: drv.to_string(),
                virtual_size: size,
            }),
            file,
            ro,
            drv: drv.to_string(),
            encrypted: false,
            backing_file_depth: 0,
            detect_zeroes: off(),
            bps: 0,
            bps_rd: 0,
            bps_wr: 0,
            iops: 0,
            iops_rd: 0,
            iops_wr: 0,
            write_threshold: 0,
        }
    }
}

/// The image of a medium (part of QEMU's `ImageInfo`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ImageInfo {
    pub filename: String,
    pub format: String,
    #[serde(rename = "virtual-size")]
    pub virtual_size: u64,
}

/// `blockdev-change-medium`'s `read-only-mode` (QEMU's
/// `BlockdevChangeReadOnlyMode`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum ReadOnlyMode {
    /// As the previous medium was.
    #[default]
    Retain,
    ReadOnly,
    ReadWrite,
}

/// What `blockdev-change-medium` asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChangeMedium {
    /// The drive, by block device name or guest device id.
    pub device: String,
    /// The new image, an absolute path.
    pub filename: PathBuf,
    /// The format driver; `None` is raw.
    pub format: Option<String>,
    pub read_only: ReadOnlyMode,
    /// Override the guest's lock on the tray.
    pub force: bool,
}

/// Why a block command failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BlockError {
    /// QMP class `DeviceNotFound` rather than `GenericError`.
    pub device_not_found: bool,
    pub desc: String,
}

impl BlockError {
    pub fn generic(desc: impl Into<String>) -> Self {
        Self {
            device_not_found: false,
            desc: desc.into(),
        }
    }

    /// `Device 'NAME' not found`.
    pub fn not_found(device: &str) -> Self {
        Self {
            device_not_found: true,
            desc: format!("Device '{device}' not found"),
        }
    }
}
