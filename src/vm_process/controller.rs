//! The VM process's side of the control socket: QMP commands turned into
//! requests to the VM runner, screenshots from the display, keys into the
//! input router; and the runner's events turned into QMP events.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::control::{
    BlockError, BlockInfo, ChangeMedium, Event, ImageFormat, RunState, ShutdownCause, VmController,
    VncInfo,
};
use crate::display::input::InputSink;
use crate::display::screenshot::{write_png, write_ppm};
use crate::display::Display;
use crate::vmm::{InputRouter, Request, VmEvent, VmHandle, VmStatus};

pub struct Controller {
    pub name: String,
    pub handle: VmHandle,
    pub display: Arc<Display>,
    pub input: Arc<InputRouter>,
    pub vnc: Mutex<VncInfo>,
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
        super::media::query_block(&self.handle)
    }

    fn eject(&self, device: &str, force: bool) -> Result<(), BlockError> {
        super::media::eject(&self.handle, device, force)
    }

    fn change_medium(&self, change: &ChangeMedium) -> Result<(), BlockError> {
        super::media::change_medium(&self.handle, change)
    }

    fn open_tray(&self, device: &str, force: bool) -> Result<(), BlockError> {
        super::media::open_tray(&self.handle, device, force)
    }

    fn close_tray(&self, device: &str) -> Result<(), BlockError> {
        super::media::close_tray(&self.handle, device)
    }

    fn remove_medium(&self, id: &str) -> Result<(), BlockError> {
        super::media::remove_medium(&self.handle, id)
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
