//! The commands: one QMP session's state and the dispatch of each command
//! to the [`VmController`], with QEMU's argument checks and error classes
//! (QEMU `qapi/control.json`, `qapi/run-state.json`, `qapi/ui.json`,
//! `qapi/misc.json`, `qapi/machine.json`, `qapi/block.json`).
//!
//! Not implemented: `blockdev-insert-medium`, whose medium is a node made
//! by `blockdev-add` (Vireo has no node graph; `blockdev-change-medium`
//! opens and inserts in one step).

use std::os::fd::OwnedFd;
use std::path::Path;

use serde_json::{json, Value};

use super::fdsets::FdSets;
use super::protocol::{
    encode_error, encode_return, enum_value, object_at, Args, CommandError, ErrorClass, Request,
};
use super::{BlockError, ChangeMedium, ImageFormat, ReadOnlyMode, RunState, VmController};
use crate::keys::qcode;

/// Every command the server knows, as `query-commands` lists them.
pub const COMMANDS: &[&str] = &[
    "qmp_capabilities",
    "query-commands",
    "query-version",
    "query-name",
    "query-status",
    "query-vnc",
    "stop",
    "cont",
    "system_powerdown",
    "system_reset",
    "quit",
    "screendump",
    "send-key",
    "query-block",
    "eject",
    "blockdev-change-medium",
    "blockdev-open-tray",
    "blockdev-close-tray",
    "blockdev-remove-medium",
    "add-fd",
    "remove-fd",
    "query-fdsets",
];

/// The QEMU release whose QMP this server's commands follow, given as the
/// `qemu` version in the greeting and `query-version`, so that tools gating
/// features on QEMU's version accept it; `package` says what it really is.
const QEMU_COMPAT: (u32, u32, u32) = (8, 2, 0);

/// `send-key`'s default hold time (QEMU's documented default).
const DEFAULT_HOLD_MS: i64 = 100;
/// Longer holds would only be a client's mistake.
const MAX_HOLD_MS: i64 = 10_000;
/// More keys at once than any chord needs.
const MAX_KEYS: usize = 64;

/// The version object of the greeting and `query-version`.
pub(crate) fn version() -> Value {
    let (major, minor, micro) = QEMU_COMPAT;
    json!({
        "qemu": {"major": major, "minor": minor, "micro": micro},
        "package": format!("vireo {}", env!("CARGO_PKG_VERSION")),
    })
}

/// One connection's QMP session: in capabilities negotiation until
/// `qmp_capabilities` succeeds, in command mode after.
#[derive(Debug, Default)]
pub(crate) struct Session {
    negotiated: bool,
    /// Descriptors that came with the client's last bytes (SCM_RIGHTS),
    /// for the `add-fd` they were sent with. A newer batch replaces them,
    /// as in QEMU; dropping them closes them.
    received_fds: Vec<OwnedFd>,
}

impl Session {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Keeps `fds`, received with the client's latest bytes, for the
    /// next `add-fd`; those of an earlier batch no command took are closed.
    pub(crate) fn received(&mut self, fds: Vec<OwnedFd>) {
        if !fds.is_empty() {
            self.received_fds = fds;
        }
    }

    /// Whether the session is past negotiation (and so receives events).
    pub(crate) fn negotiated(&self) -> bool {
        self.negotiated
    }

    /// Runs one command and encodes its answer.
    pub(crate) fn handle(&mut self, request: Request, controller: &dyn VmController) -> Vec<u8> {
        let id = request.id.clone();
        match self.execute(request, controller) {
            Ok(value) => encode_return(id, value),
            Err(error) => encode_error(id, &error),
        }
    }

    fn execute(
        &mut self,
        request: Request,
        controller: &dyn VmController,
    ) -> Result<Value, CommandError> {
        let args = Args::new(request.arguments);
        let command = request.command.as_str();
        if !self.negotiated {
            // QEMU has only qmp_capabilities before negotiation, and says so
            // instead of "not found".
            if command != "qmp_capabilities" {
                return Err(CommandError::not_found(
                    "Expecting capabilities negotiation with 'qmp_capabilities'",
                ));
            }
            qmp_capabilities(args)?;
            self.negotiated = true;
            return Ok(json!({}));
        }
        let ok =
            |result: Result<(), String>| result.map(|()| json!({})).map_err(CommandError::generic);
        match command {
            "qmp_capabilities" => Err(CommandError::not_found(
                "Capabilities negotiation is already complete, command ignored",
            )),
            "query-commands" => {
                args.finish()?;
                Ok(Value::Array(
                    COMMANDS.iter().map(|name| json!({"name": name})).collect(),
                ))
            }
            "query-version" => {
                args.finish()?;
                Ok(version())
            }
            "query-name" => {
                args.finish()?;
                Ok(match controller.name() {
                    Some(name) => json!({"name": name}),
                    None => json!({}),
                })
            }
            "query-status" => {
                args.finish()?;
                let status = controller.status();
                Ok(json!({
                    "running": status == RunState::Running,
                    "singlestep": false,
                    "status": status,
                }))
            }
            "query-vnc" => {
                args.finish()?;
                serde_json::to_value(controller.vnc_info())
                    .map_err(|e| CommandError::generic(e.to_string()))
            }
            "stop" => {
                args.finish()?;
                ok(controller.pause())
            }
            "cont" => {
                args.finish()?;
                ok(controller.resume())
            }
            "system_powerdown" => {
                args.finish()?;
                ok(controller.powerdown())
            }
            "system_reset" => {
                args.finish()?;
                ok(controller.reset())
            }
            "quit" => {
                args.finish()?;
                ok(controller.quit())
            }
            "screendump" => {
                let (filename, format) = screendump_args(args)?;
                ok(controller.screendump(Path::new(&filename), format))
            }
            "send-key" => {
                let (qnums, hold_ms) = send_key_args(args)?;
                if qnums.is_empty() {
                    return Ok(json!({}));
                }
                ok(controller.send_key(&qnums, hold_ms))
            }
            "query-block" => {
                args.finish()?;
                serde_json::to_value(controller.query_block())
                    .map_err(|e| CommandError::generic(e.to_string()))
            }
            "eject" => {
                let (device, force) = eject_args(args)?;
                block(controller.eject(&device, force))
            }
            "blockdev-change-medium" => {
                let change = change_medium_args(args)?;
                block(controller.change_medium(&change))
            }
            "blockdev-open-tray" => {
                let (device, force) = eject_args(args)?;
                block(controller.open_tray(&device, force))
            }
            "blockdev-close-tray" => {
                let mut args = args;
                let device = drive_name(&mut args)?;
                args.finish()?;
                block(controller.close_tray(&device))
            }
            "blockdev-remove-medium" => {
                let mut args = args;
                let id = args.str("id")?;
                args.finish()?;
                block(controller.remove_medium(&id))
            }
            "add-fd" => {
                let mut args = args;
                let fdset_id = args.opt_int("fdset-id")?;
                let opaque = args.opt_str("opaque")?;
                args.finish()?;
                let fdset_id = fdset_id
                    .map(|id| {
                        u64::try_from(id).map_err(|_| {
                            CommandError::generic(
                                "Parameter 'fdset-id' expects a non-negative value",
                            )
                        })
                    })
                    .transpose()?;
                let sets = fd_sets(controller)?;
                // The first descriptor of the batch, as QEMU takes one;
                // the others are closed.
                let Some(fd) = std::mem::take(&mut self.received_fds).into_iter().next() else {
                    return Err(CommandError::generic(
                        "No file descriptor supplied via SCM_RIGHTS",
                    ));
                };
                let added = sets
                    .add(fd, fdset_id, opaque)
                    .map_err(CommandError::generic)?;
                serde_json::to_value(added).map_err(|e| CommandError::generic(e.to_string()))
            }
            "remove-fd" => {
                let mut args = args;
                let fdset_id = args.int("fdset-id")?;
                let fd = args.opt_int("fd")?;
                args.finish()?;
                let sets = fd_sets(controller)?;
                let not_found = || {
                    CommandError::generic(format!(
                        "File descriptor named 'fdset-id:{fdset_id}' not found"
                    ))
                };
                let fdset_id = u64::try_from(fdset_id).map_err(|_| not_found())?;
                let fd = fd
                    .map(|fd| std::os::fd::RawFd::try_from(fd).map_err(|_| not_found()))
                    .transpose()?;
                ok(sets.remove(fdset_id, fd))
            }
            "query-fdsets" => {
                args.finish()?;
                let sets = fd_sets(controller)?;
                serde_json::to_value(sets.query()).map_err(|e| CommandError::generic(e.to_string()))
            }
            _ => Err(CommandError::not_found(format!(
                "The command {command} has not been found"
            ))),
        }
    }
}

/// The controller's descriptor sets, or the error of a VM without them.
fn fd_sets(controller: &dyn VmController) -> Result<&FdSets, CommandError> {
    controller
        .fd_sets()
        .ok_or_else(|| CommandError::generic("This VM takes no file descriptors"))
}

/// A block command's result as QMP answers it.
fn block(result: Result<(), BlockError>) -> Result<Value, CommandError> {
    result.map(|()| json!({})).map_err(|error| CommandError {
        class: if error.device_not_found {
            ErrorClass::DeviceNotFound
        } else {
            ErrorClass::GenericError
        },
        desc: error.desc,
    })
}

/// `'*device': 'str', '*id': 'str'`: exactly one names the drive.
fn drive_name(args: &mut Args) -> Result<String, CommandError> {
    let device = args.opt_str("device")?;
    let id = args.opt_str("id")?;
    match (device, id) {
        (Some(name), None) | (None, Some(name)) => Ok(name),
        _ => Err(CommandError::generic(
            "Need exactly one of 'device' and 'id'",
        )),
    }
}

/// `eject` and `blockdev-open-tray` `{'*device': 'str', '*id': 'str',
/// '*force': 'bool'}`.
fn eject_args(mut args: Args) -> Result<(String, bool), CommandError> {
    let device = drive_name(&mut args)?;
    let force = args.opt_bool("force")?.unwrap_or(false);
    args.finish()?;
    Ok((device, force))
}

/// `blockdev-change-medium {'*device': 'str', '*id': 'str', 'filename':
/// 'str', '*format': 'str', '*force': 'bool', '*read-only-mode':
/// 'BlockdevChangeReadOnlyMode'}`.
fn change_medium_args(mut args: Args) -> Result<ChangeMedium, CommandError> {
    let filename = args.str("filename")?;
    let format = args.opt_str("format")?;
    let force = args.opt_bool("force")?.unwrap_or(false);
    let read_only = match args.opt_str("read-only-mode")? {
        None => ReadOnlyMode::Retain,
        Some(mode) => match enum_value(
            "read-only-mode",
            &mode,
            &["retain", "read-only", "read-write"],
        )? {
            "read-only" => ReadOnlyMode::ReadOnly,
            "read-write" => ReadOnlyMode::ReadWrite,
            _ => ReadOnlyMode::Retain,
        },
    };
    let device = drive_name(&mut args)?;
    args.finish()?;
    if let Some(format) = format.as_deref().filter(|f| !matches!(*f, "raw" | "qcow2")) {
        return Err(CommandError::generic(format!("Unknown driver: '{format}'")));
    }
    // The VM process does not share the client's working directory.
    if !Path::new(&filename).is_absolute() {
        return Err(CommandError::generic(format!(
            "'{filename}' is not an absolute file name (the VM does not share the client's working directory)"
        )));
    }
    Ok(ChangeMedium {
        device,
        filename: filename.into(),
        format,
        read_only,
        force,
    })
}

/// `qmp_capabilities {'*enable': ['QMPCapability']}`; no capability is
/// offered, so enabling any fails as in QEMU.
fn qmp_capabilities(mut args: Args) -> Result<(), CommandError> {
    let enable = args.opt_array("enable")?.unwrap_or_default();
    args.finish()?;
    // The first one fails: none is offered.
    if let Some(capability) = enable.first() {
        let name = "enable[0]";
        let Value::String(capability) = capability else {
            return Err(CommandError::generic(format!(
                "Invalid parameter type for '{name}', expected: string"
            )));
        };
        let capability = enum_value(name, capability, &["oob"])?;
        return Err(CommandError::generic(format!(
            "Capability '{capability}' not available"
        )));
    }
    Ok(())
}

/// `screendump {'filename': 'str', '*device': 'str', '*head': 'int',
/// '*format': 'ImageFormat'}`.
fn screendump_args(mut args: Args) -> Result<(String, ImageFormat), CommandError> {
    let filename = args.str("filename")?;
    let device = args.opt_str("device")?;
    let head = args.opt_int("head")?;
    let format = match args.opt_str("format")? {
        None => ImageFormat::Ppm,
        Some(format) => match enum_value("format", &format, &["ppm", "png"])? {
            "png" => ImageFormat::Png,
            _ => ImageFormat::Ppm,
        },
    };
    args.finish()?;
    if let Some(device) = device {
        // One display, without a device id to name it by.
        return Err(CommandError {
            class: ErrorClass::DeviceNotFound,
            desc: format!("Device '{device}' not found"),
        });
    }
    if let Some(head) = head.filter(|&h| h != 0) {
        return Err(CommandError::generic(format!("Head {head} does not exist")));
    }
    // The VM process does not share the client's working directory, so a
    // relative name would land somewhere unexpected.
    if !Path::new(&filename).is_absolute() {
        return Err(CommandError::generic(format!(
            "'{filename}' is not an absolute file name (the VM does not share the client's working directory)"
        )));
    }
    Ok((filename, format))
}

/// `send-key {'keys': ['KeyValue'], '*hold-time': 'int'}`, a `KeyValue`
/// being `{"type": "qcode", "data": QKeyCode}` or `{"type": "number",
/// "data": int}`. Returns qnums and the hold time.
fn send_key_args(mut args: Args) -> Result<(Vec<u16>, u32), CommandError> {
    let keys = args.array("keys")?;
    let hold = args.opt_int("hold-time")?.unwrap_or(DEFAULT_HOLD_MS);
    args.finish()?;
    if !(0..=MAX_HOLD_MS).contains(&hold) {
        return Err(CommandError::generic(format!(
            "Parameter 'hold-time' expects a time from 0 to {MAX_HOLD_MS} ms"
        )));
    }
    if keys.len() > MAX_KEYS {
        return Err(CommandError::generic(format!(
            "Too many keys ({}, at most {MAX_KEYS})",
            keys.len()
        )));
    }
    let mut qnums = Vec::with_capacity(keys.len());
    for (i, key) in keys.into_iter().enumerate() {
        let mut key = object_at(key, &format!("keys[{i}]"))?;
        let kind = key.str("type")?;
        let qnum = match enum_value(&key.path("type"), &kind, &["number", "qcode"])? {
            "qcode" => {
                let name = key.str("data")?;
                match qcode::qnum(&name) {
                    Some(qnum) => Some(qnum),
                    // A valid QKeyCode naming no key: QEMU accepts it and
                    // sends nothing for it.
                    None if name == qcode::UNMAPPED => None,
                    None => {
                        return Err(CommandError::generic(format!(
                            "Parameter '{}' does not accept value '{name}'",
                            key.path("data")
                        )))
                    }
                }
            }
            // QEMU passes any number on; one that names no key is surely a
            // client's mistake, so say so.
            _ => match u16::try_from(key.int("data")?) {
                Ok(n @ 1..=0xff) => Some(n),
                _ => {
                    return Err(CommandError::generic(format!(
                        "Parameter '{}' expects a key number from 1 to 255",
                        key.path("data")
                    )))
                }
            },
        };
        key.finish()?;
        qnums.extend(qnum);
    }
    // In range: checked against MAX_HOLD_MS above.
    Ok((qnums, u32::try_from(hold).unwrap_or(0)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::control::{VncClientInfo, VncInfo};
    use std::sync::Mutex;

    #[derive(Default)]
    struct Recorder {
        calls: Mutex<Vec<String>>,
    }

    impl VmController for Recorder {
        fn name(&self) -> Option<String> {
            Some("debian".into())
        }
        fn status(&self) -> RunState {
            RunState::Paused
        }
        fn pause(&self) -> Result<(), String> {
            self.calls.lock().unwrap().push("pause".into());
            Ok(())
        }
        fn resume(&self) -> Result<(), String> {
            Err("Resetting the Virtual Machine is required".into())
        }
        fn powerdown(&self) -> Result<(), String> {
            self.calls.lock().unwrap().push("powerdown".into());
            Ok(())
        }
        fn reset(&self) -> Result<(), String> {
            self.calls.lock().unwrap().push("reset".into());
            Ok(())
        }
        fn quit(&self) -> Result<(), String> {
            self.calls.lock().unwrap().push("quit".into());
            Ok(())
        }
        fn screendump(&self, path: &Path, format: ImageFormat) -> Result<(), String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("screendump {} {format:?}", path.display()));
            Ok(())
        }
        fn send_key(&self, qnums: &[u16], hold_ms: u32) -> Result<(), String> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("send_key {qnums:x?} {hold_ms}"));
            Ok(())
        }
        fn vnc_info(&self) -> VncInfo {
            VncInfo {
                enabled: true,
                host: Some("127.0.0.1".into()),
                family: Some("ipv4".into()),
                service: Some("5900".into()),
                auth: Some("none".into()),
                clients: Some(vec![VncClientInfo {
                    host: "127.0.0.1".into(),
                    service: "41000".into(),
                    family: "ipv4".into(),
                    websocket: false,
                }]),
            }
        }
    }

    fn run(session: &mut Session, ctl: &Recorder, request: Value) -> Value {
        let bytes = serde_json::to_vec(&request).unwrap();
        let request = super::super::protocol::parse_request(&bytes).unwrap();
        serde_json::from_slice(&session.handle(request, ctl)).unwrap()
    }

    fn negotiated() -> Session {
        let mut session = Session::new();
        let ctl = Recorder::default();
        let answer = run(&mut session, &ctl, json!({"execute": "qmp_capabilities"}));
        assert_eq!(answer, json!({"return": {}}));
        session
    }

    fn error_of(answer: &Value) -> (&str, &str) {
        (
            answer["error"]["class"].as_str().unwrap_or("none"),
            answer["error"]["desc"].as_str().unwrap_or("none"),
        )
    }

    #[test]
    fn negotiation_comes_first() {
        let ctl = Recorder::default();
        let mut session = Session::new();
        let answer = run(&mut session, &ctl, json!({"execute": "stop", "id": 1}));
        assert_eq!(
            error_of(&answer),
            (
                "CommandNotFound",
                "Expecting capabilities negotiation with 'qmp_capabilities'"
            )
        );
        assert_eq!(answer["id"], 1);
        assert!(ctl.calls.lock().unwrap().is_empty(), "stop ran early");
        let answer = run(
            &mut session,
            &ctl,
            json!({"execute": "qmp_capabilities", "arguments": {"enable": ["oob"]}}),
        );
        assert_eq!(error_of(&answer).1, "Capability 'oob' not available");
        let answer = run(
            &mut session,
            &ctl,
            json!({"execute": "qmp_capabilities", "arguments": {"enable": ["x"]}}),
        );
        assert_eq!(
            error_of(&answer).1,
            "Parameter 'enable[0]' does not accept value 'x'"
        );
        assert!(!session.negotiated());
        let answer = run(
            &mut session,
            &ctl,
            json!({"execute": "qmp_capabilities", "arguments": {"enable": []}}),
        );
        assert_eq!(answer, json!({"return": {}}));
        assert!(session.negotiated());
        let answer = run(&mut session, &ctl, json!({"execute": "qmp_capabilities"}));
        assert_eq!(error_of(&answer).0, "CommandNotFound");
    }

    #[test]
    fn queries() {
        let ctl = Recorder::default();
        let mut s = negotiated();
        assert_eq!(
            run(&mut s, &ctl, json!({"execute": "query-status"})),
            json!({"return": {"running": false, "singlestep": false, "status": "paused"}})
        );
        assert_eq!(
            run(
                &mut s,
                &ctl,
                json!({"execute": "query-name", "id": "cookie#1"})
            ),
            json!({"return": {"name": "debian"}, "id": "cookie#1"})
        );
        let version = run(&mut s, &ctl, json!({"execute": "query-version"}));
        assert_eq!(version["return"]["qemu"]["major"], 8);
        assert!(version["return"]["package"]
            .as_str()
            .unwrap()
            .starts_with("vireo "));
        let commands = run(&mut s, &ctl, json!({"execute": "query-commands"}));
        let names: Vec<&str> = commands["return"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, COMMANDS);
        let vnc = run(&mut s, &ctl, json!({"execute": "query-vnc"}));
        assert_eq!(vnc["return"]["service"], "5900");
        assert_eq!(vnc["return"]["clients"][0]["websocket"], false);
        let answer = run(
            &mut s,
            &ctl,
            json!({"execute": "query-status", "arguments": {"verbose": true}}),
        );
        assert_eq!(error_of(&answer).1, "Parameter 'verbose' is unexpected");
        let answer = run(&mut s, &ctl, json!({"execute": "migrate", "id": 2}));
        assert_eq!(
            error_of(&answer),
            ("CommandNotFound", "The command migrate has not been found")
        );
        assert_eq!(answer["id"], 2);
    }

    #[test]
    fn actions_reach_the_controller_and_its_errors_come_back() {
        let ctl = Recorder::default();
        let mut s = negotiated();
        for command in ["stop", "system_powerdown", "system_reset", "quit"] {
            assert_eq!(
                run(&mut s, &ctl, json!({"execute": command})),
                json!({"return": {}})
            );
        }
        assert_eq!(
            *ctl.calls.lock().unwrap(),
            ["pause", "powerdown", "reset", "quit"]
        );
        let answer = run(&mut s, &ctl, json!({"execute": "cont"}));
        assert_eq!(
            error_of(&answer),
            ("GenericError", "Resetting the Virtual Machine is required")
        );
    }

    #[test]
    fn screendump_arguments() {
        let ctl = Recorder::default();
        let mut s = negotiated();
        let dump = |s: &mut Session, args: Value| {
            run(s, &ctl, json!({"execute": "screendump", "arguments": args}))
        };
        assert_eq!(
            dump(&mut s, json!({"filename": "/tmp/a.ppm"})),
            json!({"return": {}})
        );
        assert_eq!(
            dump(
                &mut s,
                json!({"filename": "/tmp/a.png", "format": "png", "head": 0})
            ),
            json!({"return": {}})
        );
        assert_eq!(
            *ctl.calls.lock().unwrap(),
            ["screendump /tmp/a.ppm Ppm", "screendump /tmp/a.png Png"]
        );
        let cases = [
            (json!({}), "Parameter 'filename' is missing"),
            (
                json!({"filename": 1}),
                "Invalid parameter type for 'filename', expected: string",
            ),
            (
                json!({"filename": "/a", "format": "gif"}),
                "Parameter 'format' does not accept value 'gif'",
            ),
            (
                json!({"filename": "/a", "head": 1}),
                "Head 1 does not exist",
            ),
            (
                json!({"filename": "/a", "device": "vga"}),
                "Device 'vga' not found",
            ),
            (
                json!({"filename": "/a", "size": 1}),
                "Parameter 'size' is unexpected",
            ),
        ];
        for (args, desc) in cases {
            assert_eq!(error_of(&dump(&mut s, args)).1, desc);
        }
        let relative = dump(&mut s, json!({"filename": "shot.png"}));
        assert!(error_of(&relative).1.contains("not an absolute file name"));
        assert_eq!(ctl.calls.lock().unwrap().len(), 2);
    }

    #[test]
    fn send_key_arguments() {
        let ctl = Recorder::default();
        let mut s = negotiated();
        let send = |s: &mut Session, args: Value| {
            run(s, &ctl, json!({"execute": "send-key", "arguments": args}))
        };
        let ctrl_alt_del = json!({"keys": [
            {"type": "qcode", "data": "ctrl"},
            {"type": "qcode", "data": "alt"},
            {"type": "qcode", "data": "delete"}]});
        assert_eq!(send(&mut s, ctrl_alt_del), json!({"return": {}}));
        assert_eq!(
            send(
                &mut s,
                json!({"keys": [{"type": "number", "data": 0x9d}], "hold-time": 0})
            ),
            json!({"return": {}})
        );
        assert_eq!(send(&mut s, json!({"keys": []})), json!({"return": {}}));
        assert_eq!(
            send(
                &mut s,
                json!({"keys": [{"type": "qcode", "data": "unmapped"}]})
            ),
            json!({"return": {}})
        );
        assert_eq!(
            *ctl.calls.lock().unwrap(),
            ["send_key [1d, 38, d3] 100", "send_key [9d] 0"]
        );
        let cases = [
            (json!({}), "Parameter 'keys' is missing"),
            (
                json!({"keys": "ctrl"}),
                "Invalid parameter type for 'keys', expected: array",
            ),
            (
                json!({"keys": ["ctrl"]}),
                "Invalid parameter type for 'keys[0]', expected: object",
            ),
            (
                json!({"keys": [{"data": "a"}]}),
                "Parameter 'keys[0].type' is missing",
            ),
            (
                json!({"keys": [{"type": "qcode", "data": "a"}, {"type": "keysym", "data": 1}]}),
                "Parameter 'keys[1].type' does not accept value 'keysym'",
            ),
            (
                json!({"keys": [{"type": "qcode", "data": "control"}]}),
                "Parameter 'keys[0].data' does not accept value 'control'",
            ),
            (
                json!({"keys": [{"type": "qcode", "data": 29}]}),
                "Invalid parameter type for 'keys[0].data', expected: string",
            ),
            (
                json!({"keys": [{"type": "number", "data": "29"}]}),
                "Invalid parameter type for 'keys[0].data', expected: integer",
            ),
            (
                json!({"keys": [{"type": "number", "data": 256}]}),
                "Parameter 'keys[0].data' expects a key number from 1 to 255",
            ),
            (
                json!({"keys": [{"type": "number", "data": -1}]}),
                "Parameter 'keys[0].data' expects a key number from 1 to 255",
            ),
            (
                json!({"keys": [{"type": "qcode"}]}),
                "Parameter 'keys[0].data' is missing",
            ),
            (
                json!({"keys": [{"type": "qcode", "data": "a", "down": true}]}),
                "Parameter 'keys[0].down' is unexpected",
            ),
            (
                json!({"keys": [], "hold-time": -5}),
                "Parameter 'hold-time' expects a time from 0 to 10000 ms",
            ),
            (
                json!({"keys": vec![json!({"type": "number", "data": 30}); 65]}),
                "Too many keys (65, at most 64)",
            ),
        ];
        for (args, desc) in cases {
            assert_eq!(error_of(&send(&mut s, args.clone())).1, desc, "{args}");
        }
        assert_eq!(ctl.calls.lock().unwrap().len(), 2);
    }

    /// Records the block commands it is given; knows one drive, `hdc`.
    #[derive(Default)]
    struct Drives {
        calls: Mutex<Vec<String>>,
    }

    impl VmController for Drives {
        fn status(&self) -> RunState {
            RunState::Running
        }
        fn pause(&self) -> Result<(), String> {
            Ok(())
        }
        fn resume(&self) -> Result<(), String> {
            Ok(())
        }
        fn powerdown(&self) -> Result<(), String> {
            Ok(())
        }
        fn reset(&self) -> Result<(), String> {
            Ok(())
        }
        fn quit(&self) -> Result<(), String> {
            Ok(())
        }
        fn screendump(&self, _: &Path, _: ImageFormat) -> Result<(), String> {
            Ok(())
        }
        fn send_key(&self, _: &[u16], _: u32) -> Result<(), String> {
            Ok(())
        }
        fn vnc_info(&self) -> VncInfo {
            VncInfo::default()
        }
        fn eject(&self, device: &str, force: bool) -> Result<(), BlockError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("eject {device} {force}"));
            match device {
                "hdc" => Ok(()),
                _ => Err(BlockError::not_found(device)),
            }
        }
        fn change_medium(&self, change: &ChangeMedium) -> Result<(), BlockError> {
            self.calls.lock().unwrap().push(format!("{change:?}"));
            Ok(())
        }
        fn open_tray(&self, device: &str, force: bool) -> Result<(), BlockError> {
            self.calls
                .lock()
                .unwrap()
                .push(format!("open {device} {force}"));
            Ok(())
        }
        fn close_tray(&self, device: &str) -> Result<(), BlockError> {
            self.calls.lock().unwrap().push(format!("close {device}"));
            Ok(())
        }
        fn remove_medium(&self, id: &str) -> Result<(), BlockError> {
            self.calls.lock().unwrap().push(format!("remove {id}"));
            Ok(())
        }
    }

    #[test]
    fn tray_commands_take_qemus_arguments() {
        let ctl = Drives::default();
        for request in [
            json!({"execute": "blockdev-open-tray", "arguments": {"id": "ide0-1-0"}}),
            json!({"execute": "blockdev-open-tray", "arguments": {"device": "hdc", "force": true}}),
            json!({"execute": "blockdev-close-tray", "arguments": {"device": "hdc"}}),
            json!({"execute": "blockdev-remove-medium", "arguments": {"id": "ide0-1-0"}}),
        ] {
            assert_eq!(run_on(&ctl, request), json!({"return": {}}));
        }
        for (request, desc) in [
            (
                json!({"execute": "blockdev-open-tray", "arguments": {}}),
                "Need exactly one of 'device' and 'id'",
            ),
            (
                json!({"execute": "blockdev-close-tray", "arguments": {"id": "hdc", "force": true}}),
                "Parameter 'force' is unexpected",
            ),
            // QEMU's blockdev-remove-medium names the guest device only.
            (
                json!({"execute": "blockdev-remove-medium", "arguments": {"device": "hdc"}}),
                "Parameter 'id' is missing",
            ),
        ] {
            assert_eq!(error_of(&run_on(&ctl, request)), ("GenericError", desc));
        }
        assert_eq!(
            *ctl.calls.lock().unwrap(),
            [
                "open ide0-1-0 false",
                "open hdc true",
                "close hdc",
                "remove ide0-1-0"
            ]
        );
        // Without a VMM behind it no drive exists.
        let answer = run_on(
            &Recorder::default(),
            json!({"execute": "blockdev-close-tray", "arguments": {"id": "hdc"}}),
        );
        assert_eq!(
            error_of(&answer),
            ("DeviceNotFound", "Device 'hdc' not found")
        );
    }

    fn run_on(ctl: &dyn VmController, request: Value) -> Value {
        let mut session = Session::new();
        let bytes = serde_json::to_vec(&json!({"execute": "qmp_capabilities"})).unwrap();
        session.handle(super::super::protocol::parse_request(&bytes).unwrap(), ctl);
        let bytes = serde_json::to_vec(&request).unwrap();
        let request = super::super::protocol::parse_request(&bytes).unwrap();
        serde_json::from_slice(&session.handle(request, ctl)).unwrap()
    }

    #[test]
    fn eject_and_change_medium_take_qemus_arguments() {
        let ctl = Drives::default();
        let answer = run_on(
            &ctl,
            json!({"execute": "eject", "arguments": {"id": "hdc", "force": true}}),
        );
        assert_eq!(answer, json!({"return": {}}));
        let answer = run_on(
            &ctl,
            json!({"execute": "eject", "arguments": {"device": "hdd"}}),
        );
        assert_eq!(
            error_of(&answer),
            ("DeviceNotFound", "Device 'hdd' not found")
        );
        for arguments in [json!({}), json!({"id": "hdc", "device": "hdc"})] {
            let answer = run_on(&ctl, json!({"execute": "eject", "arguments": arguments}));
            assert_eq!(
                error_of(&answer),
                ("GenericError", "Need exactly one of 'device' and 'id'")
            );
        }
        let answer = run_on(
            &ctl,
            json!({"execute": "eject", "arguments": {"id": "hdc", "force": "yes"}}),
        );
        assert_eq!(
            error_of(&answer).1,
            "Invalid parameter type for 'force', expected: boolean"
        );
        assert_eq!(
            *ctl.calls.lock().unwrap(),
            ["eject hdc true", "eject hdd false"]
        );

        let answer = run_on(
            &ctl,
            json!({"execute": "blockdev-change-medium", "arguments": {
                "device": "hdc", "filename": "/isos/new.iso", "format": "raw",
                "read-only-mode": "read-only", "force": false}}),
        );
        assert_eq!(answer, json!({"return": {}}));
        assert!(ctl.calls.lock().unwrap()[2].contains("\"/isos/new.iso\""));
        for (arguments, desc) in [
            (json!({"id": "hdc"}), "Parameter 'filename' is missing"),
            (json!({"id": "hdc", "filename": "new.iso"}), "'new.iso' is not an absolute file name (the VM does not share the client's working directory)"),
            (json!({"id": "hdc", "filename": "/a.iso", "format": "vmdk"}), "Unknown driver: 'vmdk'"),
            (json!({"id": "hdc", "filename": "/a.iso", "read-only-mode": "rw"}), "Parameter 'read-only-mode' does not accept value 'rw'"),
            (json!({"id": "hdc", "filename": "/a.iso", "bogus": 1}), "Parameter 'bogus' is unexpected"),
        ] {
            let answer = run_on(&ctl, json!({"execute": "blockdev-change-medium", "arguments": arguments}));
            assert_eq!(error_of(&answer), ("GenericError", desc));
        }
        assert_eq!(
            ctl.calls.lock().unwrap().len(),
            3,
            "refused commands reach nothing"
        );
        // Without a VMM behind it there are no block devices.
        let answer = run_on(&Recorder::default(), json!({"execute": "query-block"}));
        assert_eq!(answer, json!({"return": []}));
    }
}
