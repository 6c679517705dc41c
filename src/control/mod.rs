//! The control protocol spoken on each running VM's unix socket
//! (`vm_process::RunFiles::control`): a subset of QEMU's machine protocol, QMP,
//! so that tools written for QEMU's monitor (`qemu.qmp`, `socat`, scripts)
//! drive a Vireo VM unchanged.
//!
//! The wire format is QMP's (QEMU `docs/interop/qmp-spec.rst`):
//!
//! ```text
//! S: {"QMP": {"version": {"qemu": {...}, "package": "vireo 0.1.0"}, "capabilities": []}}
//! C: {"execute": "qmp_capabilities"}
//! S: {"return": {}}
//! C: {"execute": "query-status", "id": 1}
//! S: {"id": 1, "return": {"running": true, "singlestep": false, "status": "running"}}
//! C: {"execute": "screendump"}
//! S: {"error": {"class": "GenericError", "desc": "Parameter 'filename' is missing"}}
//! S: {"event": "STOP", "timestamp": {"seconds": 1700000000, "microseconds": 12}}
//! ```
//!
//! The server writes one JSON object per line (ending in CRLF, as QEMU's
//! monitor does); it reads a stream of JSON objects with or without line
//! breaks between them, as QEMU does (`qemu.qmp` sends none). One connection
//! is one session; every session starts in capabilities negotiation, where
//! only `qmp_capabilities` is accepted; events go to every session past it.
//!
//! - [`ControlServer`] runs in the VM process and calls a [`VmController`]
//!   the VMM implements.
//! - [`ControlClient`] is the CLI's and GUI's side.
//! - key names (`send-key`) are read with [`crate::keys::qcode`].
//!
//! Not implemented: out-of-band execution (the `oob` capability is not
//! offered), QMP introspection (`query-qmp-schema`), and every command not
//! listed in [`COMMANDS`].

mod block;
mod client;
mod commands;
pub mod fdsets;
pub(crate) mod protocol;
mod server;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use block::{BlockDeviceInfo, BlockError, BlockInfo, ChangeMedium, ImageInfo, ReadOnlyMode};
pub use client::{ControlClient, DEFAULT_TIMEOUT};
pub use commands::COMMANDS;
pub use server::{ControlServer, EventEmitter};

/// A failed control operation, from the client's side.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    /// Nothing listens on the socket: the VM is not running.
    #[error("the VM is not running (no control socket at {})", path.display())]
    NotRunning { path: PathBuf },
    /// The socket exists but refused us for another reason (permissions).
    #[error("cannot connect to the VM's control socket {}", path.display())]
    Connect {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the connection failed.
    #[error("the control connection failed")]
    Io(#[source] std::io::Error),
    /// The VM closed the connection (it quit, or dropped us).
    #[error("the VM closed the control connection")]
    Closed,
    /// No answer came in time.
    #[error("the VM did not answer within {} s", .0.as_secs_f32())]
    Timeout(Duration),
    /// The other side does not speak QMP as expected.
    #[error("unexpected message on the control socket: {0}")]
    Protocol(String),
    /// The VM refused or failed the command; `desc` says why.
    #[error("{desc}")]
    Command { class: String, desc: String },
}

/// What a [`VmController`] method reports when a command fails: the
/// human-readable description a QMP `GenericError` carries.
pub type ControlResult<T = ()> = Result<T, String>;

/// A VM's run state, named as QEMU's `RunState` enum names them in
/// `query-status`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum RunState {
    /// Built, not started yet.
    Prelaunch,
    Running,
    /// Stopped by `stop` (or the GUI's pause button).
    Paused,
    /// The guest suspended itself (ACPI S3).
    Suspended,
    /// The guest powered off (or reset, with a no-reboot policy).
    Shutdown,
    /// The VMM hit an error it cannot continue from (a KVM failure).
    InternalError,
    /// The guest reported a panic (pvpanic).
    GuestPanicked,
    /// Stopped in a debugger.
    Debug,
    /// Stopped because a disk failed.
    IoError,
}

impl RunState {
    /// The name QMP uses.
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Prelaunch => "prelaunch",
            RunState::Running => "running",
            RunState::Paused => "paused",
            RunState::Suspended => "suspended",
            RunState::Shutdown => "shutdown",
            RunState::InternalError => "internal-error",
            RunState::GuestPanicked => "guest-panicked",
            RunState::Debug => "debug",
            RunState::IoError => "io-error",
        }
    }
}

impl std::fmt::Display for RunState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a VM shut down or reset: QEMU's `ShutdownCause`, carried by the
/// `SHUTDOWN` and `RESET` events.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ShutdownCause {
    None,
    /// An error in the VMM.
    HostError,
    /// The `quit` command.
    HostQmpQuit,
    /// The `system_reset` command.
    HostQmpSystemReset,
    /// SIGTERM, SIGINT or SIGHUP.
    HostSignal,
    /// The window's force-off (or QEMU's window closed).
    HostUi,
    /// The guest powered off (ACPI S5, or a port write).
    GuestShutdown,
    /// The guest reset the machine.
    GuestReset,
    /// The guest panicked and the policy is to stop.
    GuestPanic,
    SubsystemReset,
    SnapshotLoad,
}

impl ShutdownCause {
    /// Whether the guest asked for it (QEMU's `guest` member of the events).
    pub fn is_guest(self) -> bool {
        matches!(
            self,
            ShutdownCause::GuestShutdown | ShutdownCause::GuestReset | ShutdownCause::GuestPanic
        )
    }
}

/// The image format `screendump` writes (QEMU's `ImageFormat`; QEMU's
/// default is PPM).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ImageFormat {
    /// Binary PPM (P6), 8 bits per channel.
    Ppm,
    Png,
}

/// The VNC server's state, as `query-vnc` reports it (QEMU's `VncInfo`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VncInfo {
    pub enabled: bool,
    /// The address listened on (`"127.0.0.1"`, `"::1"`, or a socket path).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    /// `"ipv4"`, `"ipv6"` or `"unix"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub family: Option<String>,
    /// The port, as a string (`"5900"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// `"none"`, `"vnc"`, or with TLS `"vencrypt+x509+none"` / `"vencrypt+x509+vnc"` (QEMU's names).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clients: Option<Vec<VncClientInfo>>,
}

/// One connected VNC client (QEMU's `VncClientInfo`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VncClientInfo {
    pub host: String,
    pub service: String,
    pub family: String,
    pub websocket: bool,
}

/// When an event happened: seconds and microseconds since the Unix epoch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Timestamp {
    pub seconds: i64,
    pub microseconds: i64,
}

impl Timestamp {
    pub fn now() -> Self {
        let since = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        Self {
            seconds: i64::try_from(since.as_secs()).unwrap_or(i64::MAX),
            microseconds: i64::from(since.subsec_micros()),
        }
    }
}

/// An asynchronous QMP event: `{"event": NAME, "data": {...}, "timestamp":
/// {...}}`. `data` is `Null` (and left out on the wire) for events without
/// data, as QEMU leaves it out.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Event {
    #[serde(rename = "event")]
    pub name: String,
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub data: Value,
    pub timestamp: Timestamp,
}

impl Event {
    /// An event stamped now.
    pub fn new(name: impl Into<String>, data: Value) -> Self {
        Self {
            name: name.into(),
            data,
            timestamp: Timestamp::now(),
        }
    }

    /// `STOP`: the vCPUs stopped (after `stop`, or a pause from the GUI).
    pub fn stop() -> Self {
        Self::new("STOP", Value::Null)
    }

    /// `RESUME`: the vCPUs run again.
    pub fn resume() -> Self {
        Self::new("RESUME", Value::Null)
    }

    /// `POWERDOWN`: the ACPI power button was pressed for the guest.
    pub fn powerdown() -> Self {
        Self::new("POWERDOWN", Value::Null)
    }

    /// `RESET`: the machine was reset.
    pub fn reset(cause: ShutdownCause) -> Self {
        Self::new(
            "RESET",
            serde_json::json!({"guest": cause.is_guest(), "reason": cause}),
        )
    }

    /// `SHUTDOWN`: the VM is shutting down (the process exits next, unless
    /// it is kept around in the `shutdown` state).
    pub fn shutdown(cause: ShutdownCause) -> Self {
        Self::new(
            "SHUTDOWN",
            serde_json::json!({"guest": cause.is_guest(), "reason": cause}),
        )
    }
}

/// What the VMM does for the control protocol. Methods are called on the
/// session's own thread, one command at a time per connection but from
/// several connections at once; none should block for long (ask the
/// control thread and return).
///
/// Events are the VMM's to emit, when the state change has happened (through
/// the [`EventEmitter`] of [`ControlServer::emitter`]), as QEMU does: `STOP`
/// after a pause, `RESUME` after a resume, `POWERDOWN` when the power button
/// is pressed, `RESET` (`host-qmp-system-reset`) after a reset, `SHUTDOWN`
/// (`host-qmp-quit`) before quitting.
pub trait VmController: Send + Sync {
    /// The VM's name, for `query-name`.
    fn name(&self) -> Option<String> {
        None
    }
    /// The current run state, for `query-status`.
    fn status(&self) -> RunState;
    /// `stop`: pause the vCPUs. Pausing a paused VM succeeds.
    fn pause(&self) -> ControlResult;
    /// `cont`: resume the vCPUs. Fails when the VM cannot run (shut down).
    fn resume(&self) -> ControlResult;
    /// `system_powerdown`: press the ACPI power button.
    fn powerdown(&self) -> ControlResult;
    /// `system_reset`: reset the machine, as the reset button does.
    fn reset(&self) -> ControlResult;
    /// `quit`: stop the VM and end the VMM process. Should return before the
    /// process exits, so that the answer reaches the client; dropping the
    /// [`ControlServer`] sends what is queued before closing.
    fn quit(&self) -> ControlResult;
    /// `screendump`: write the screen to `path` as `format`.
    fn screendump(&self, path: &Path, format: ImageFormat) -> ControlResult;
    /// `send-key`: press the keys (qnums, see [`crate::keys::qcode`]) in order, hold them
    /// `hold_ms` milliseconds, release them in reverse order.
    fn send_key(&self, qnums: &[u16], hold_ms: u32) -> ControlResult;
    /// `query-vnc`.
    fn vnc_info(&self) -> VncInfo;
    /// `query-block`: every block device. None by default.
    fn query_block(&self) -> Vec<BlockInfo> {
        Vec::new()
    }
    /// `eject`: open the tray of `device` (a block device name or a guest
    /// device id) and take its medium out; `force` overrides the guest's
    /// lock. Without a VMM behind it no device exists.
    fn eject(&self, device: &str, force: bool) -> Result<(), BlockError> {
        let _ = force;
        Err(BlockError::not_found(device))
    }
    /// `blockdev-change-medium`: put a new medium in. The drive stays as it
    /// was when the new medium cannot be opened.
    fn change_medium(&self, change: &ChangeMedium) -> Result<(), BlockError> {
        Err(BlockError::not_found(&change.device))
    }
    /// `blockdev-open-tray`: open the tray, leaving the medium in it. A
    /// tray the guest locked stays shut unless `force`; the guest is asked
    /// to eject either way and the command succeeds (the tray opens when
    /// the guest lets it, and `DEVICE_TRAY_MOVED` says so).
    fn open_tray(&self, device: &str, force: bool) -> Result<(), BlockError> {
        let _ = force;
        Err(BlockError::not_found(device))
    }
    /// `blockdev-close-tray`.
    fn close_tray(&self, device: &str) -> Result<(), BlockError> {
        Err(BlockError::not_found(device))
    }
    /// `blockdev-remove-medium`: take the medium out of the open tray of
    /// the guest device `id`.
    fn remove_medium(&self, id: &str) -> Result<(), BlockError> {
        Err(BlockError::not_found(id))
    }
    /// The VM's file descriptor sets (`add-fd`, `remove-fd`,
    /// `query-fdsets`); `None` where nothing could use a passed file.
    fn fd_sets(&self) -> Option<&fdsets::FdSets> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn events_serialise_as_qemu_sends_them() {
        let mut event = Event::shutdown(ShutdownCause::HostQmpQuit);
        event.timestamp = Timestamp {
            seconds: 1267040730,
            microseconds: 682951,
        };
        assert_eq!(
            serde_json::to_value(&event).unwrap(),
            json!({"event": "SHUTDOWN", "data": {"guest": false, "reason": "host-qmp-quit"},
                   "timestamp": {"seconds": 1267040730, "microseconds": 682951}})
        );
        let reset = Event::reset(ShutdownCause::GuestReset);
        assert_eq!(reset.data, json!({"guest": true, "reason": "guest-reset"}));
        // Events without data carry no "data" member.
        let stop = serde_json::to_value(Event::stop()).unwrap();
        assert_eq!(stop["event"], "STOP");
        assert!(stop.get("data").is_none());
        // And they read back, with or without data.
        let back: Event = serde_json::from_value(stop).unwrap();
        assert_eq!(back.name, "STOP");
        assert!(back.data.is_null());
    }

    #[test]
    fn run_states_use_qemus_names() {
        for state in [
            RunState::Running,
            RunState::Paused,
            RunState::Shutdown,
            RunState::InternalError,
            RunState::GuestPanicked,
            RunState::IoError,
        ] {
            assert_eq!(serde_json::to_value(state).unwrap(), json!(state.as_str()));
        }
        assert_eq!(RunState::InternalError.to_string(), "internal-error");
    }

    #[test]
    fn vnc_info_leaves_out_what_is_unknown() {
        assert_eq!(
            serde_json::to_value(VncInfo::default()).unwrap(),
            json!({"enabled": false})
        );
    }
}
