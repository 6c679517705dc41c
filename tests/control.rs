//! The control socket end to end: a [`ControlServer`] with a fake VM in a
//! temporary directory, driven by [`ControlClient`], by raw JSON on the
//! socket (as `socat` users and QEMU's own qmp-test do), and by QEMU's
//! Python QMP library when it is installed.

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vireo::control::{
    ControlClient, ControlError, ControlServer, Event, EventEmitter, ImageFormat, RunState,
    ShutdownCause, VmController, VncInfo,
};

/// A VM that keeps its state in memory and emits the events QEMU would.
struct FakeVm {
    state: Mutex<RunState>,
    calls: Mutex<Vec<String>>,
    events: OnceLock<EventEmitter>,
    quit: Mutex<Option<mpsc::Sender<()>>>,
}

impl FakeVm {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(RunState::Running),
            calls: Mutex::new(Vec::new()),
            events: OnceLock::new(),
            quit: Mutex::new(None),
        })
    }

    fn emit(&self, event: Event) {
        if let Some(events) = self.events.get() {
            events.emit(&event);
        }
    }

    fn record(&self, call: String) {
        self.calls.lock().unwrap().push(call);
    }

    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
}

impl VmController for FakeVm {
    fn name(&self) -> Option<String> {
        Some("fake".into())
    }
    fn status(&self) -> RunState {
        *self.state.lock().unwrap()
    }
    fn pause(&self) -> Result<(), String> {
        self.record("pause".into());
        *self.state.lock().unwrap() = RunState::Paused;
        self.emit(Event::stop());
        Ok(())
    }
    fn resume(&self) -> Result<(), String> {
        let mut state = self.state.lock().unwrap();
        if *state == RunState::Shutdown {
            return Err("Resetting the Virtual Machine is required".into());
        }
        *state = RunState::Running;
        drop(state);
        self.emit(Event::resume());
        Ok(())
    }
    fn powerdown(&self) -> Result<(), String> {
        self.emit(Event::powerdown());
        Ok(())
    }
    fn reset(&self) -> Result<(), String> {
        self.emit(Event::reset(ShutdownCause::HostQmpSystemReset));
        Ok(())
    }
    fn quit(&self) -> Result<(), String> {
        self.emit(Event::shutdown(ShutdownCause::HostQmpQuit));
        if let Some(quit) = self.quit.lock().unwrap().take() {
            let _ = quit.send(());
        }
        Ok(())
    }
    fn screendump(&self, path: &Path, format: ImageFormat) -> Result<(), String> {
        // A 1x1 black PPM is enough for the protocol.
        std::fs::write(path, b"P6\n1 1\n255\n\0\0\0")
            .map_err(|e| format!("Could not open '{}': {e}", path.display()))?;
        self.record(format!("screendump {format:?}"));
        Ok(())
    }
    fn send_key(&self, qnums: &[u16], hold_ms: u32) -> Result<(), String> {
        self.record(format!("send_key {qnums:02x?} {hold_ms}"));
        Ok(())
    }
    fn vnc_info(&self) -> VncInfo {
        VncInfo {
            enabled: true,
            host: Some("127.0.0.1".into()),
            family: Some("ipv4".into()),
            service: Some("5900".into()),
            auth: Some("none".into()),
            clients: Some(Vec::new()),
        }
    }
}

struct Rig {
    dir: tempfile::TempDir,
    vm: Arc<FakeVm>,
    server: Option<ControlServer>,
}

impl Rig {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("run")).unwrap();
        let vm = FakeVm::new();
        let server = ControlServer::bind(dir.path().join("run/fake.ctl"), vm.clone()).unwrap();
        vm.events.set(server.emitter()).unwrap();
        Self {
            dir,
            vm,
            server: Some(server),
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("run/fake.ctl")
    }

    fn server(&self) -> &ControlServer {
        self.server.as_ref().unwrap()
    }

    fn client(&self) -> ControlClient {
        ControlClient::connect(self.path()).unwrap()
    }

    fn raw(&self) -> Raw {
        Raw::connect(&self.path())
    }
}

/// A client speaking raw bytes on the socket.
struct Raw {
    stream: UnixStream,
    reader: BufReader<UnixStream>,
}

impl Raw {
    fn connect(path: &Path) -> Self {
        let stream = UnixStream::connect(path).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let reader = BufReader::new(stream.try_clone().unwrap());
        let mut raw = Self { stream, reader };
        let greeting = raw.recv();
        assert_eq!(greeting["QMP"]["capabilities"], json!([]));
        assert!(greeting["QMP"]["version"]["qemu"]["major"].is_u64());
        raw
    }

    fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).unwrap();
    }

    /// One line from the server, which must be a JSON object ending in CRLF.
    fn recv(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        assert!(line.ends_with("\r\n"), "not a CRLF line: {line:?}");
        serde_json::from_str(&line).unwrap()
    }

    fn call(&mut self, request: &str) -> Value {
        self.send(request.as_bytes());
        self.recv()
    }

    fn negotiate(&mut self) {
        assert_eq!(
            self.call(r#"{"execute": "qmp_capabilities"}"#),
            json!({"return": {}})
        );
    }

    /// Whether anything arrives within `wait`.
    fn quiet_for(&mut self, wait: Duration) -> bool {
        self.stream.set_read_timeout(Some(wait)).unwrap();
        // A timeout is quiet; data, or the end of the stream, is not.
        let quiet = self.reader.fill_buf().is_err();
        self.stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        quiet
    }
}

fn error_class(answer: &Value) -> &str {
    answer["error"]["class"].as_str().unwrap_or("no error")
}

#[test]
fn the_client_runs_every_command() {
    let rig = Rig::new();
    let mut client = rig.client();
    assert!(client.greeting()["QMP"]["version"]["package"]
        .as_str()
        .unwrap()
        .starts_with("vireo"));

    assert_eq!(
        client.execute("query-status", Value::Null).unwrap(),
        json!({"running": true, "singlestep": false, "status": "running"})
    );
    assert_eq!(
        client.execute("query-name", Value::Null).unwrap(),
        json!({"name": "fake"})
    );
    assert_eq!(
        client.execute("query-vnc", Value::Null).unwrap()["service"],
        "5900"
    );
    let commands = client.execute("query-commands", Value::Null).unwrap();
    assert!(commands
        .as_array()
        .unwrap()
        .contains(&json!({"name": "send-key"})));

    assert_eq!(client.execute("stop", json!({})).unwrap(), json!({}));
    let stop = client.next_event(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(stop.name, "STOP");
    assert!(stop.timestamp.seconds > 1_600_000_000);
    assert_eq!(
        client.execute("query-status", Value::Null).unwrap()["status"],
        "paused"
    );
    client.execute("cont", Value::Null).unwrap();
    client.execute("system_reset", Value::Null).unwrap();
    client.execute("system_powerdown", Value::Null).unwrap();
    let names: Vec<String> = (0..3)
        .map(|_| client.next_event(Duration::from_secs(5)).unwrap().unwrap())
        .map(|e| {
            if e.name == "RESET" {
                assert_eq!(
                    e.data,
                    json!({"guest": false, "reason": "host-qmp-system-reset"})
                );
            }
            e.name
        })
        .collect();
    assert_eq!(names, ["RESUME", "RESET", "POWERDOWN"]);
    assert!(client
        .next_event(Duration::from_millis(50))
        .unwrap()
        .is_none());

    let shot = rig.dir.path().join("shot.ppm");
    client
        .execute("screendump", json!({"filename": shot}))
        .unwrap();
    assert!(std::fs::read(&shot).unwrap().starts_with(b"P6"));
    client
        .execute(
            "send-key",
            json!({"keys": [{"type": "qcode", "data": "ctrl"},
                            {"type": "qcode", "data": "alt"},
                            {"type": "qcode", "data": "delete"}]}),
        )
        .unwrap();
    assert_eq!(
        rig.vm.calls(),
        ["pause", "screendump Ppm", "send_key [1d, 38, d3] 100"]
    );

    // Refusals come back with QEMU's class and description.
    let err = client.execute("migrate", Value::Null).unwrap_err();
    assert!(
        matches!(&err, ControlError::Command { class, .. } if class == "CommandNotFound"),
        "{err:?}"
    );
    assert_eq!(err.to_string(), "The command migrate has not been found");
    *rig.vm.state.lock().unwrap() = RunState::Shutdown;
    let err = client.execute("cont", Value::Null).unwrap_err();
    assert_eq!(err.to_string(), "Resetting the Virtual Machine is required");
    let err = client
        .execute("screendump", json!({"filename": "/nonexistent/dir/x.ppm"}))
        .unwrap_err();
    assert!(err.to_string().starts_with("Could not open"), "{err}");
    // The session is still fine after errors.
    assert_eq!(
        client.execute("query-status", Value::Null).unwrap()["status"],
        "shutdown"
    );
}

#[test]
fn raw_sessions_need_negotiation_and_survive_garbage() {
    let rig = Rig::new();
    let mut raw = rig.raw();
    let answer = raw.call(r#"{"execute": "query-version", "id": "v"}"#);
    assert_eq!(error_class(&answer), "CommandNotFound");
    assert_eq!(
        answer["error"]["desc"],
        "Expecting capabilities negotiation with 'qmp_capabilities'"
    );
    assert_eq!(answer["id"], "v");
    assert!(rig.vm.calls().is_empty());

    // QEMU's tests/qtest/qmp-test.c test_malformed, before and after
    // negotiation: each input earns one GenericError, and the session
    // recovers.
    let malformed: &[&[u8]] = &[
        b"{]\n",
        b"{\xff",
        b"{\x01",
        b"{\"bad \xff",
        b"{\"execute\": \"nonexistent\", \"id\":\"\n",
        b"%p",
        b"null\n",
        b"{}",
        b"{\"execute\": true}",
        b"{\"execute\": \"no-such-cmd\", \"arguments\": []}",
        b"{\"execute\": \"no-such-cmd\", \"extra\": true}",
    ];
    for negotiated in [false, true] {
        for input in malformed {
            raw.send(input);
            let answer = raw.recv();
            assert_eq!(
                error_class(&answer),
                "GenericError",
                "{} -> {answer}",
                String::from_utf8_lossy(input)
            );
            let answer = raw.call(r#"{"execute": "no-such-cmd"}"#);
            assert_eq!(error_class(&answer), "CommandNotFound", "after {input:?}");
        }
        if !negotiated {
            raw.negotiate();
        }
    }

    // Repeated negotiation fails as in QEMU.
    assert_eq!(
        error_class(&raw.call(r#"{"execute": "qmp_capabilities"}"#)),
        "CommandNotFound"
    );
    // Commands back to back without newlines (as qemu.qmp sends them), and
    // one split across writes.
    raw.send(br#"{"execute":"query-name","id":1}{"execute":"query-status","id":2}{"exec"#);
    std::thread::sleep(Duration::from_millis(20));
    raw.send(br#"ute":"stop","id":3}"#);
    assert_eq!(raw.recv(), json!({"return": {"name": "fake"}, "id": 1}));
    assert_eq!(raw.recv()["id"], 2);
    // The VM stops while the command runs, so (as with QEMU) the event
    // comes before the answer.
    assert_eq!(raw.recv()["event"], "STOP");
    assert_eq!(raw.recv(), json!({"return": {}, "id": 3}));
    // Wrong argument types are errors, not crashes.
    let answer = raw.call(r#"{"execute": "screendump", "arguments": {"filename": ["x"]}}"#);
    assert_eq!(
        answer["error"]["desc"],
        "Invalid parameter type for 'filename', expected: string"
    );
    let answer = raw.call(
        r#"{"execute": "send-key", "arguments": {"keys": [{"type": "qcode", "data": "nokey"}]}}"#,
    );
    assert_eq!(
        answer["error"]["desc"],
        "Parameter 'keys[0].data' does not accept value 'nokey'"
    );
}

#[test]
fn huge_input_is_refused_and_the_session_goes_on() {
    let rig = Rig::new();
    let mut raw = rig.raw();
    raw.negotiate();
    let mut huge = br#"{"execute": "screendump", "arguments": {"filename": "/"#.to_vec();
    huge.extend(vec![b'a'; 3 << 20]);
    huge.extend_from_slice(br#""}}"#);
    raw.send(&huge);
    let answer = raw.recv();
    assert_eq!(error_class(&answer), "GenericError");
    assert!(
        answer["error"]["desc"]
            .as_str()
            .unwrap()
            .contains("longer than"),
        "{answer}"
    );
    assert_eq!(
        raw.call(r#"{"execute": "query-name"}"#),
        json!({"return": {"name": "fake"}})
    );
    assert!(rig.vm.calls().is_empty());
}

#[test]
fn events_reach_every_negotiated_client_and_no_other() {
    let rig = Rig::new();
    let mut first = rig.client();
    let mut second = rig.client();
    let mut pending = rig.raw();

    rig.server().emit(&Event::powerdown());
    for client in [&mut first, &mut second] {
        assert_eq!(
            client
                .next_event(Duration::from_secs(5))
                .unwrap()
                .unwrap()
                .name,
            "POWERDOWN"
        );
    }
    // The client still negotiating saw nothing; once negotiated, it gets
    // the next event after the answer.
    assert!(pending.quiet_for(Duration::from_millis(100)));
    pending.negotiate();
    rig.server()
        .emit(&Event::shutdown(ShutdownCause::GuestShutdown));
    let event = pending.recv();
    assert_eq!(event["event"], "SHUTDOWN");
    assert_eq!(
        event["data"],
        json!({"guest": true, "reason": "guest-shutdown"})
    );
    assert!(event["timestamp"]["microseconds"].is_i64());
    // A command on one client makes an event for all.
    first.execute("stop", Value::Null).unwrap();
    for client in [&mut first, &mut second] {
        let names: Vec<String> =
            std::iter::from_fn(|| client.next_event(Duration::from_millis(500)).unwrap())
                .map(|e| e.name)
                .collect();
        assert_eq!(names.last().map(String::as_str), Some("STOP"));
    }
    assert_eq!(pending.recv()["event"], "STOP");
    assert_eq!(rig.server().client_count(), 3);
}

#[test]
fn a_client_that_stops_reading_is_dropped_without_stalling_the_vm() {
    let rig = Rig::new();
    let mut slow = rig.raw();
    slow.negotiate();
    let mut good = rig.client();

    // About 10 MiB of events: far more than the slow client's queue and
    // socket buffer hold.
    let event = Event::new("BIG", json!({"blob": "x".repeat(16 * 1024)}));
    let started = Instant::now();
    for _ in 0..640 {
        rig.server().emit(&event);
        // The good client keeps up.
        assert_eq!(
            good.next_event(Duration::from_secs(5))
                .unwrap()
                .unwrap()
                .name,
            "BIG"
        );
    }
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "emitting stalled: {:?}",
        started.elapsed()
    );
    // The slow client is gone: what it reads ends, well short of everything.
    let deadline = Instant::now() + Duration::from_secs(5);
    while rig.server().client_count() > 1 {
        assert!(Instant::now() < deadline, "slow client still connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut rest = Vec::new();
    slow.stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    slow.reader.read_to_end(&mut rest).unwrap();
    assert!(rest.len() < 4 << 20, "slow client got {} bytes", rest.len());
    // The good one is still served.
    assert_eq!(
        good.execute("query-name", Value::Null).unwrap(),
        json!({"name": "fake"})
    );
}

#[test]
fn quit_is_answered_before_the_socket_closes() {
    let mut rig = Rig::new();
    let (quit_tx, quit_rx) = mpsc::channel();
    *rig.vm.quit.lock().unwrap() = Some(quit_tx);
    let server = rig.server.take().unwrap();
    // The VMM's control thread: drop the server when asked to quit.
    let vmm = std::thread::spawn(move || {
        quit_rx.recv().unwrap();
        drop(server);
    });
    let mut client = rig.client();
    let mut watcher = rig.client();
    assert_eq!(client.execute("quit", Value::Null).unwrap(), json!({}));
    let shutdown = watcher.next_event(Duration::from_secs(5)).unwrap().unwrap();
    assert_eq!(shutdown.name, "SHUTDOWN");
    assert_eq!(shutdown.data["reason"], "host-qmp-quit");
    vmm.join().unwrap();
    assert!(matches!(
        watcher.next_event(Duration::from_secs(5)),
        Err(ControlError::Closed)
    ));
    assert!(!rig.path().exists(), "socket file left behind");
    assert!(matches!(
        ControlClient::connect(rig.path()),
        Err(ControlError::NotRunning { .. })
    ));
}

#[test]
fn binding_replaces_a_dead_vms_socket_but_not_a_live_one() {
    let rig = Rig::new();
    let err = ControlServer::bind(rig.path(), FakeVm::new()).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::AddrInUse);
    assert!(err.to_string().contains("running VM"), "{err}");

    let stale = rig.dir.path().join("run/stale.ctl");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let server = ControlServer::bind(&stale, FakeVm::new()).unwrap();
    ControlClient::connect(&stale).unwrap();
    drop(server);
    assert!(!stale.exists());

    let file = rig.dir.path().join("run/file.ctl");
    std::fs::write(&file, b"not a socket").unwrap();
    assert!(ControlServer::bind(&file, FakeVm::new()).is_err());
    assert_eq!(std::fs::read(&file).unwrap(), b"not a socket");
}

#[test]
fn dropping_the_server_closes_idle_and_busy_sessions() {
    let mut rig = Rig::new();
    let mut idle = rig.client();
    let mut raw = rig.raw();
    // Half a command in flight.
    raw.send(br#"{"execute": "query-"#);
    let started = Instant::now();
    drop(rig.server.take());
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(
        idle.execute("query-status", Value::Null),
        Err(ControlError::Closed)
    ));
    let mut rest = Vec::new();
    raw.reader.read_to_end(&mut rest).unwrap();
    assert!(rest.is_empty());
}

/// QEMU's own Python QMP library (`pip install qemu.qmp`) against the
/// server: the best check that QEMU tooling works unchanged.
#[test]
fn qemus_python_qmp_library_drives_the_server() {
    let available = std::process::Command::new("python3")
        .args(["-c", "import qemu.qmp"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available {
        assert_ne!(
            std::env::var("VIREO_REQUIRE_TOOLS").as_deref(),
            Ok("1"),
            "python3 module qemu.qmp is missing; run scripts/setup.sh test"
        );
        eprintln!(
            "SKIPPED qemus_python_qmp_library_drives_the_server: python3 module qemu.qmp \
             is not installed (scripts/setup.sh test installs it)"
        );
        return;
    }
    let rig = Rig::new();
    let script = r#"
import asyncio, json, sys
from qemu.qmp import QMPClient, ExecuteError

async def main(path):
    qmp = QMPClient('vireo-test')
    await qmp.connect(path)
    out = {'greeting': qmp.greeting._raw['QMP']['version']['package']}
    out['status'] = await qmp.execute('query-status')
    with qmp.listener(('STOP',)) as listener:
        await qmp.execute('stop')
        event = await asyncio.wait_for(listener.get(), 5)
        out['event'] = event['event']
    out['send_key'] = await qmp.execute('send-key', {
        'keys': [{'type': 'qcode', 'data': 'ctrl'}, {'type': 'qcode', 'data': 'alt'},
                 {'type': 'qcode', 'data': 'f2'}], 'hold-time': 50})
    try:
        await qmp.execute('no-such-command')
    except ExecuteError as err:
        out['error'] = err.error_class
    out['commands'] = len(await qmp.execute('query-commands'))
    await qmp.disconnect()
    print(json.dumps(out))

asyncio.run(main(sys.argv[1]))
"#;
    let output = std::process::Command::new("python3")
        .args(["-c", script])
        .arg(rig.path())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "python failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let out: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(out["greeting"].as_str().unwrap().starts_with("vireo"));
    assert_eq!(out["status"]["status"], "running");
    assert_eq!(out["event"], "STOP");
    assert_eq!(out["send_key"], json!({}));
    assert_eq!(out["error"], "CommandNotFound");
    assert_eq!(out["commands"], vireo::control::COMMANDS.len());
    assert_eq!(rig.vm.calls(), ["pause", "send_key [1d, 38, 3c] 50"]);
}

#[test]
fn a_half_closed_connection_still_gets_its_answers() {
    // `echo '...' | socat - UNIX-CONNECT:vm.ctl` sends, then shuts its
    // writing side down and waits for what comes back.
    let rig = Rig::new();
    let mut stream = UnixStream::connect(rig.path()).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"{\"execute\":\"qmp_capabilities\"}\n{\"execute\":\"query-name\"}\n")
        .unwrap();
    stream.shutdown(std::net::Shutdown::Write).unwrap();
    let mut all = String::new();
    stream.read_to_string(&mut all).unwrap();
    let lines: Vec<Value> = all
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3, "{all}");
    assert_eq!(lines[1], json!({"return": {}}));
    assert_eq!(lines[2], json!({"return": {"name": "fake"}}));
}

#[test]
fn connections_past_the_limit_are_closed_at_once() {
    let rig = Rig::new();
    let served: Vec<Raw> = (0..32).map(|_| rig.raw()).collect();
    let mut refused = UnixStream::connect(rig.path()).unwrap();
    refused
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut got = Vec::new();
    refused.read_to_end(&mut got).unwrap();
    assert!(got.is_empty());
    drop(served);
    // Room again once they leave.
    let deadline = Instant::now() + Duration::from_secs(5);
    while rig.server().client_count() > 0 {
        assert!(Instant::now() < deadline);
        std::thread::sleep(Duration::from_millis(10));
    }
    rig.client();
}
