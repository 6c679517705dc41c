//! The VM process's side of the control socket: QMP commands turned into
//! requests to the VM runner, screenshots from the display, keys into the
//! input router; and the runner's events turned into QMP events.
//!
//! Block devices: `query-block`, `eject`, `blockdev-change-medium`,
//! `blockdev-open-tray`, `blockdev-close-tray` and `blockdev-remove-medium`
//! get QMP's shapes and error classes around the runner's media requests
//! ([`crate::vmm::media`]). As QEMU's `bdrv_open`, a new medium is opened
//! with the format the client names (`raw` or `qcow2`; others are refused
//! as unknown drivers), or the format its first bytes show when it names
//! none. It is opened here, on the control connection's thread, after the
//! drive was found and before the runner is asked: a missing or unreadable
//! file is a QMP error and the drive keeps its disc; the vCPUs never wait
//! for the file system. The VM process, confined, opens only its own
//! images: a client passes any other disc with `add-fd` and names it
//! `/dev/fdset/N` ([`crate::control::fdsets`]), as libvirt does for QEMU.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::control::fdsets::{self, FdSets};
use crate::control::{
    BlockDeviceInfo, BlockError, BlockInfo, ChangeMedium, Event, ImageFormat, ReadOnlyMode,
    RunState, ShutdownCause, VmController, VncInfo,
};
use crate::display::input::InputSink;
use crate::display::screenshot::{write_png, write_ppm};
use crate::display::Display;
use crate::storage::ImageFormat as DiskFormat;
use crate::vmm::config::PassedFile;
use crate::vmm::media::{BlockDevice, MediaAnswer, MediaError, MediaRequest, NewMedium};
use crate::vmm::{InputRouter, Request, VmEvent, VmHandle, VmStatus};

pub struct Controller {
    pub name: String,
    pub handle: VmHandle,
    pub display: Arc<Display>,
    pub input: Arc<InputRouter>,
    pub vnc: Mutex<VncInfo>,
    /// Files clients passed (`add-fd`): how a confined VM gets a new disc.
    pub fd_sets: FdSets,
}

impl VmController for Controller {
    fn name(&self) -> Option<String> {
        Some(self.name.clone())
    }

    fn status(&self) -> RunState {
        match self.handle.status() {
            VmStatus::Running => RunState::Running,
            VmStatus::Paused => RunState::Paused,
            VmStatus::GuestPanicked => RunState::GuestPanicked,
            VmStatus::InternalError => RunState::InternalError,
            VmStatus::Shutdown => RunState::Shutdown,
        }
    }

    fn pause(&self) -> Result<(), String> {
        self.handle.request(Request::Pause)
    }

    fn resume(&self) -> Result<(), String> {
        self.handle.request(Request::Resume)
    }

    fn powerdown(&self) -> Result<(), String> {
        self.handle.request(Request::PowerButton)
    }

    fn reset(&self) -> Result<(), String> {
        self.handle.request(Request::Reset)
    }

    fn quit(&self) -> Result<(), String> {
        self.handle.request(Request::Quit)
    }

    fn screendump(&self, path: &Path, format: ImageFormat) -> Result<(), String> {
        let surface = self.display.snapshot();
        match format {
            ImageFormat::Png => write_png(&surface, path).map_err(|e| e.to_string()),
            ImageFormat::Ppm => write_ppm(&surface, path)
                .map_err(|e| format!("cannot write {}: {e}", path.display())),
        }
    }

    fn send_key(&self, qnums: &[u16], hold_ms: u32) -> Result<(), String> {
        for &q in qnums {
            self.input.key(q, true);
        }
        std::thread::sleep(Duration::from_millis(hold_ms as u64));
        for &q in qnums.iter().rev() {
            self.input.key(q, false);
        }
        Ok(())
    }

    fn vnc_info(&self) -> VncInfo {
        self.vnc.lock().unwrap().clone()
    }

    fn query_block(&self) -> Vec<BlockInfo> {
        query_block(&self.handle)
    }

    fn eject(&self, device: &str, force: bool) -> Result<(), BlockError> {
        eject(&self.handle, device, force)
    }

    fn change_medium(&self, change: &ChangeMedium) -> Result<(), BlockError> {
        change_medium(&self.handle, &self.fd_sets, change)
    }

    fn open_tray(&self, device: &str, force: bool) -> Result<(), BlockError> {
        open_tray(&self.handle, device, force)
    }

    fn close_tray(&self, device: &str) -> Result<(), BlockError> {
        close_tray(&self.handle, device)
    }

    fn remove_medium(&self, id: &str) -> Result<(), BlockError> {
        remove_medium(&self.handle, id)
    }

    fn fd_sets(&self) -> Option<&FdSets> {
        Some(&self.fd_sets)
    }
}

/// The QMP event for a runner event.
pub fn qmp_event(event: &VmEvent) -> Event {
    match event {
        VmEvent::TrayMoved {
            target,
            alias,
            open,
        } => Event::new(
            "DEVICE_TRAY_MOVED",
            serde_json::json!({"device": target, "id": alias, "tray-open": open}),
        ),
        VmEvent::Stop => Event::stop(),
        VmEvent::Resume => Event::resume(),
        VmEvent::Powerdown => Event::powerdown(),
        VmEvent::Reset { guest: true } => Event::reset(ShutdownCause::GuestReset),
        VmEvent::Reset { guest: false } => Event::reset(ShutdownCause::HostQmpSystemReset),
        VmEvent::Shutdown { reason, .. } => Event::shutdown(match *reason {
            "guest-shutdown" => ShutdownCause::GuestShutdown,
            "guest-reset" => ShutdownCause::GuestReset,
            "guest-panic" => ShutdownCause::GuestPanic,
            "host-signal" => ShutdownCause::HostSignal,
            _ => ShutdownCause::HostQmpQuit,
        }),
    }
}

// ---- Block devices ---------------------------------------------------------

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
            let size = match &medium.passed {
                Some(passed) => crate::storage::virtual_size_of(&passed.0, &medium.path),
                None => crate::storage::virtual_size(&medium.path),
            }
            .ok();
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

fn query_block(handle: &VmHandle) -> Vec<BlockInfo> {
    match devices(handle) {
        Ok(devices) => devices.into_iter().map(block_info).collect(),
        Err(error) => {
            tracing::warn!(%error, "query-block: no answer from the VM");
            Vec::new()
        }
    }
}

fn eject(handle: &VmHandle, device: &str, force: bool) -> Result<(), BlockError> {
    handle.media(MediaRequest::Change {
        device: device.to_string(),
        medium: None,
        force,
    })?;
    Ok(())
}

fn open_tray(handle: &VmHandle, device: &str, force: bool) -> Result<(), BlockError> {
    handle.media(MediaRequest::OpenTray {
        device: device.to_string(),
        force,
    })?;
    Ok(())
}

fn close_tray(handle: &VmHandle, device: &str) -> Result<(), BlockError> {
    handle.media(MediaRequest::CloseTray {
        device: device.to_string(),
    })?;
    Ok(())
}

fn remove_medium(handle: &VmHandle, id: &str) -> Result<(), BlockError> {
    handle.media(MediaRequest::RemoveMedium {
        device: id.to_string(),
    })?;
    Ok(())
}

fn change_medium(
    handle: &VmHandle,
    fd_sets: &FdSets,
    change: &ChangeMedium,
) -> Result<(), BlockError> {
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
    let by_descriptor = fdsets::fdset_id(&change.filename).is_some();
    let cannot_open = |error: &(dyn std::error::Error + 'static)| {
        tracing::warn!(%error, "blockdev-change-medium: the new medium cannot be opened");
        let cause = error_chain(error);
        // Landlock's refusal: say how a client gets the file in.
        let hint = if !by_descriptor && cause.contains("Permission denied") {
            ". The VM process may open only its own images: pass the file with add-fd \
             and name it /dev/fdset/N"
        } else {
            ""
        };
        BlockError::generic(format!(
            "Could not open '{}': {cause}{hint}",
            change.filename.display(),
        ))
    };
    // A disc passed as /dev/fdset/N was opened by the client: it is known
    // by the path the kernel gives the descriptor.
    let passed = match fd_sets.open(&change.filename, true) {
        None => None,
        Some(Ok(file)) => Some(file),
        Some(Err(error)) => return Err(cannot_open(&error)),
    };
    let path = passed
        .as_ref()
        .and_then(fdsets::path_of)
        .unwrap_or_else(|| change.filename.clone());
    let format = match change.format.as_deref() {
        // Probed; a file that cannot be read fails to open just below.
        None => match &passed {
            Some(file) => crate::storage::detect_format_of(file, &path),
            None => crate::storage::detect_format(&path),
        }
        .unwrap_or(DiskFormat::Raw),
        Some(name) => DiskFormat::parse(name)
            .ok_or_else(|| BlockError::generic(format!("Unknown driver: '{name}'")))?,
    };
    let backend = crate::storage::open_image_passed(&path, passed.as_ref(), format, true)
        .map_err(|error| cannot_open(&error))?;
    handle.media(MediaRequest::Change {
        device: change.device.clone(),
        medium: Some(NewMedium {
            backend,
            path,
            format,
            passed: passed.map(|file| PassedFile(Arc::new(file))),
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
