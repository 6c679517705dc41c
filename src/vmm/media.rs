//! Removable media of a running VM: the host's side of QEMU's `eject`,
//! `blockdev-change-medium` and `query-block` (QEMU
//! `block/qapi-sysemu.c`, `qapi/block.json`), on the machine's IDE CD-ROM
//! drives.
//!
//! Drives are found by the names a user knows them by: the libvirt target
//! (`hdc`), which `query-block` reports as the block device's name, and
//! libvirt's device alias (`ide0-1-0`, reported as `qdev`, also accepted
//! with QEMU's `drive-` prefix). The runner keeps its [`VmConfig`] in step
//! with every change, so that a reset (which builds a fresh machine from
//! it) keeps the disc the user put in, as QEMU does.
//!
//! The new image is opened by the caller, on the control connection's
//! thread, before the request reaches the runner: a slow or missing file
//! never stalls the vCPUs, and a file that cannot be opened leaves the
//! drive as it was. The vCPUs wait only for the swap itself.
//!
//! The tray can also be opened and closed alone and the disc taken out of
//! the open tray (`blockdev-open-tray`, `blockdev-close-tray`,
//! `blockdev-remove-medium`); an open tray keeps its disc, and the runner's
//! configuration keeps it too (a reset closes the tray on it).
//!
//! Each tray movement is reported (QEMU's `DEVICE_TRAY_MOVED`): the host's
//! in the answer to its request, the guest's own (START STOP UNIT) when the
//! runner collects them with [`guest_tray_moves`].
//!
//! Not here: floppy drives, hot-plug, `blockdev-insert-medium` (it inserts
//! a node made by `blockdev-add`, which Vireo has not).

use std::path::PathBuf;
use std::sync::Mutex;

use super::config::{DiskBus, DiskConfig, DiskKind};
use crate::devices::ide::{CdromChangeError, IdeController};
use crate::storage::{BlockBackend, ImageFormat};

/// An image opened for a drive, with what `query-block` says about it.
pub struct NewMedium {
    pub backend: Box<dyn BlockBackend>,
    pub path: PathBuf,
    pub format: ImageFormat,
}

impl std::fmt::Debug for NewMedium {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewMedium")
            .field("path", &self.path)
            .field("format", &self.format)
            .finish_non_exhaustive()
    }
}

/// What the runner is asked about removable media.
#[derive(Debug)]
pub enum MediaRequest {
    /// The state of every block device (`query-block`).
    Query,
    /// Open the tray of `device`, take its disc out, and put `medium` in
    /// and close the tray (`None`: leave it open and empty, as QEMU's
    /// `eject` does). `force` overrides the guest's lock.
    Change {
        device: String,
        medium: Option<NewMedium>,
        force: bool,
    },
    /// Open the tray of `device`, leaving its disc in it. A tray the guest
    /// locked stays shut unless `force`; the guest is asked to eject
    /// either way, and the request succeeds (QEMU's `blockdev-open-tray`).
    OpenTray { device: String, force: bool },
    /// Close the tray of `device` (QEMU's `blockdev-close-tray`).
    CloseTray { device: String },
    /// Take the disc out of the open tray of `device` (QEMU's
    /// `blockdev-remove-medium`).
    RemoveMedium { device: String },
}

/// The answer to a [`MediaRequest`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MediaAnswer {
    Devices(Vec<BlockDevice>),
    /// Done; the tray of `target` (alias `alias`) moved to each of
    /// `tray_moves` in turn (`true` open).
    Changed {
        target: String,
        alias: String,
        tray_moves: Vec<bool>,
    },
}

/// One block device as `query-block` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockDevice {
    /// The libvirt target name (`hdc`, `vda`).
    pub target: String,
    /// libvirt's alias of the guest device (`ide0-1-0`, `virtio-disk0`).
    pub alias: String,
    pub removable: bool,
    /// The guest prevents medium removal.
    pub locked: bool,
    /// For a drive with a tray.
    pub tray_open: Option<bool>,
    /// The medium, when there is one (in the tray, open or not).
    pub inserted: Option<Inserted>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inserted {
    pub path: PathBuf,
    pub format: ImageFormat,
    pub read_only: bool,
}

/// Why a media request failed, with QEMU's sentences.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MediaError {
    /// No block device has that name (QMP class `DeviceNotFound`).
    #[error("Device '{0}' not found")]
    NotFound(String),
    /// A hard disk: its medium cannot change.
    #[error("Device '{0}' is not removable")]
    NotRemovable(String),
    /// The guest locked the tray and the request was not forced; the guest
    /// was asked to eject.
    #[error(
        "Device '{0}' is locked and force was not specified, wait for tray to open and try again"
    )]
    Locked(String),
    /// The disc is only taken out of an open tray.
    #[error("Tray of device '{0}' is not open")]
    TrayClosed(String),
    /// The VM is gone or did not answer.
    #[error("{0}")]
    Unavailable(String),
}

/// libvirt's alias for `disk`: `ide0-C-U` for IDE (controller 0, bus C,
/// unit U), `virtio-diskN` for virtio with N the target's index (`vda` 0).
pub fn alias(disk: &DiskConfig) -> String {
    match disk.bus {
        DiskBus::Ide { channel, unit } => format!("ide0-{channel}-{unit}"),
        DiskBus::Virtio { .. } => format!("virtio-disk{}", target_index(&disk.target)),
    }
}

/// The index libvirt's `virDiskNameToIndex` gives a target: the letters
/// after the two-letter prefix in base 26 (`vda` 0, `vdz` 25, `vdaa` 26).
fn target_index(target: &str) -> u64 {
    let letters = target.get(2..).unwrap_or_default();
    let mut index: u64 = 0;
    for (i, c) in letters.bytes().enumerate() {
        if !c.is_ascii_lowercase() {
            break;
        }
        let digit = u64::from(c - b'a');
        index = if i == 0 {
            digit
        } else {
            (index + 1).saturating_mul(26).saturating_add(digit)
        };
    }
    index
}

/// The disk a request names: by target, alias, or `drive-` + alias.
pub fn find(disks: &[DiskConfig], name: &str) -> Option<usize> {
    disks.iter().position(|disk| {
        let alias = alias(disk);
        name == disk.target || name == alias || name.strip_prefix("drive-") == Some(&alias)
    })
}

/// The configured CD-ROM drive `device` names: its index in `disks` and its
/// IDE position.
fn cdrom(disks: &[DiskConfig], device: &str) -> Result<(usize, usize, usize), MediaError> {
    let index = find(disks, device).ok_or_else(|| MediaError::NotFound(device.to_string()))?;
    match (disks[index].kind, &disks[index].bus) {
        (DiskKind::Cdrom, DiskBus::Ide { channel, unit }) => {
            Ok((index, usize::from(*channel), usize::from(*unit)))
        }
        _ => Err(MediaError::NotRemovable(device.to_string())),
    }
}

fn change_error(device: &str) -> impl Fn(CdromChangeError) -> MediaError + '_ {
    move |error| match error {
        CdromChangeError::Locked => MediaError::Locked(device.to_string()),
        CdromChangeError::NoDrive => MediaError::NotFound(device.to_string()),
        CdromChangeError::TrayClosed => MediaError::TrayClosed(device.to_string()),
    }
}

fn lock(ide: &Mutex<IdeController>) -> std::sync::MutexGuard<'_, IdeController> {
    ide.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The tray movements guests made themselves since the last call, as
/// (target, alias, open), oldest first per drive.
pub(super) fn guest_tray_moves(
    ide: &Mutex<IdeController>,
    disks: &[DiskConfig],
) -> Vec<(String, String, bool)> {
    let moves = lock(ide).take_guest_tray_moves();
    moves
        .into_iter()
        .filter_map(|(channel, unit, open)| {
            let disk = disks.iter().find(|d| {
                d.kind == DiskKind::Cdrom
                    && matches!(d.bus, DiskBus::Ide { channel: c, unit: u }
                        if usize::from(c) == channel && usize::from(u) == unit)
            })?;
            Some((disk.target.clone(), alias(disk), open))
        })
        .collect()
}

/// Carries out `request` on the machine's IDE controller and keeps `disks`
/// (the runner's configuration) in step.
pub(super) fn handle(
    ide: &Mutex<IdeController>,
    disks: &mut [DiskConfig],
    request: MediaRequest,
) -> Result<MediaAnswer, MediaError> {
    match request {
        MediaRequest::Query => Ok(MediaAnswer::Devices(query(ide, disks))),
        MediaRequest::OpenTray { device, force } => {
            let (index, channel, unit) = cdrom(disks, &device)?;
            let moved = match lock(ide).open_cdrom_tray(channel, unit, force) {
                Ok(moved) => moved,
                // The guest was asked to eject: the tray opens when it does.
                Err(CdromChangeError::Locked) => false,
                Err(error) => return Err(change_error(&device)(error)),
            };
            Ok(changed(
                &disks[index],
                if moved { vec![true] } else { vec![] },
            ))
        }
        MediaRequest::CloseTray { device } => {
            let (index, channel, unit) = cdrom(disks, &device)?;
            let moved = lock(ide)
                .close_cdrom_tray(channel, unit)
                .map_err(change_error(&device))?;
            Ok(changed(
                &disks[index],
                if moved { vec![false] } else { vec![] },
            ))
        }
        MediaRequest::RemoveMedium { device } => {
            let (index, channel, unit) = cdrom(disks, &device)?;
            let old = lock(ide)
                .remove_cdrom_medium(channel, unit)
                .map_err(change_error(&device))?;
            // Closed here, outside the controller's lock.
            let removed = old.is_some();
            drop(old);
            let disk = &mut disks[index];
            if removed {
                tracing::info!(target = %disk.target, "CD-ROM medium removed");
            }
            disk.path = None;
            Ok(changed(disk, vec![]))
        }
        MediaRequest::Change {
            device,
            medium,
            force,
        } => {
            let (index, channel, unit) = cdrom(disks, &device)?;
            let disk = &mut disks[index];
            let (path, format, backend) = match medium {
                Some(m) => (Some(m.path), m.format, Some(m.backend)),
                None => (None, disk.format, None),
            };
            let inserting = backend.is_some();
            let (was_open, old) = {
                let mut ide = lock(ide);
                let was_open = ide.cdrom_status(channel, unit).is_some_and(|s| s.tray_open);
                let old = ide
                    .change_cdrom(channel, unit, backend, force)
                    .map_err(change_error(&device))?;
                (was_open, old)
            };
            let mut tray_moves = Vec::new();
            if !was_open {
                tray_moves.push(true);
            }
            if inserting {
                tray_moves.push(false);
            }
            // Closed here, outside the controller's lock.
            drop(old);
            tracing::info!(
                target = %disk.target,
                medium = ?path,
                force,
                "CD-ROM medium changed"
            );
            disk.path = path;
            disk.format = format;
            Ok(changed(disk, tray_moves))
        }
    }
}

fn changed(disk: &DiskConfig, tray_moves: Vec<bool>) -> MediaAnswer {
    MediaAnswer::Changed {
        target: disk.target.clone(),
        alias: alias(disk),
        tray_moves,
    }
}

fn query(ide: &Mutex<IdeController>, disks: &[DiskConfig]) -> Vec<BlockDevice> {
    let ide = lock(ide);
    disks
        .iter()
        .map(|disk| {
            let inserted = |path: &PathBuf| Inserted {
                path: path.clone(),
                format: disk.format,
                read_only: disk.read_only,
            };
            let drive = match (disk.kind, &disk.bus) {
                (DiskKind::Cdrom, DiskBus::Ide { channel, unit }) => {
                    ide.cdrom_status(usize::from(*channel), usize::from(*unit))
                }
                _ => None,
            };
            match drive {
                Some(status) => BlockDevice {
                    target: disk.target.clone(),
                    alias: alias(disk),
                    removable: true,
                    locked: status.locked,
                    tray_open: Some(status.tray_open),
                    inserted: disk
                        .path
                        .as_ref()
                        .filter(|_| status.has_medium)
                        .map(inserted),
                },
                None => BlockDevice {
                    target: disk.target.clone(),
                    alias: alias(disk),
                    removable: false,
                    locked: false,
                    tray_open: None,
                    inserted: disk.path.as_ref().map(inserted),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn disk(target: &str, bus: DiskBus, kind: DiskKind) -> DiskConfig {
        DiskConfig {
            target: target.into(),
            kind,
            bus,
            path: None,
            format: ImageFormat::Raw,
            read_only: kind == DiskKind::Cdrom,
            boot_order: None,
            cache: Default::default(),
            discard: Default::default(),
        }
    }

    #[test]
    fn names_follow_libvirt() {
        let disks = [
            disk(
                "hda",
                DiskBus::Ide {
                    channel: 0,
                    unit: 0,
                },
                DiskKind::Disk,
            ),
            disk(
                "hdc",
                DiskBus::Ide {
                    channel: 1,
                    unit: 0,
                },
                DiskKind::Cdrom,
            ),
            disk("vdb", DiskBus::Virtio { slot: 5 }, DiskKind::Disk),
            disk("vdab", DiskBus::Virtio { slot: 6 }, DiskKind::Disk),
        ];
        assert_eq!(alias(&disks[1]), "ide0-1-0");
        assert_eq!(alias(&disks[2]), "virtio-disk1");
        assert_eq!(alias(&disks[3]), "virtio-disk27");
        assert_eq!(find(&disks, "hdc"), Some(1));
        assert_eq!(find(&disks, "ide0-1-0"), Some(1));
        assert_eq!(find(&disks, "drive-ide0-1-0"), Some(1));
        assert_eq!(find(&disks, "ide0-0-0"), Some(0));
        assert_eq!(find(&disks, "virtio-disk1"), Some(2));
        assert_eq!(find(&disks, "hdd"), None);
        assert_eq!(find(&disks, "drive-hdc"), None);
    }

    #[test]
    fn errors_say_what_qemu_says() {
        assert_eq!(
            MediaError::Locked("hdc".into()).to_string(),
            "Device 'hdc' is locked and force was not specified, wait for tray to open and try again"
        );
        assert_eq!(
            MediaError::NotRemovable("vda".into()).to_string(),
            "Device 'vda' is not removable"
        );
        assert_eq!(
            MediaError::TrayClosed("ide0-1-0".into()).to_string(),
            "Tray of device 'ide0-1-0' is not open"
        );
        assert_eq!(
            MediaError::NotFound("x".into()).to_string(),
            "Device 'x' not found"
        );
    }
}
