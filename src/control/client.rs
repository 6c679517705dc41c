//! The CLI's and GUI's side: connect, negotiate, run commands, wait for
//! events. Blocking, one command at a time; events that arrive while a
//! command waits for its answer are kept for [`ControlClient::next_event`].

use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::protocol::{Piece, Splitter, MAX_MESSAGE};
use super::{ControlError, Event};

/// How long [`ControlClient::execute`] waits for an answer unless told
/// otherwise with [`ControlClient::set_timeout`].
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// A QMP session with a running VM.
#[derive(Debug)]
pub struct ControlClient {
    stream: UnixStream,
    splitter: Splitter,
    /// Parsed messages not yet looked at.
    incoming: VecDeque<Value>,
    events: VecDeque<Event>,
    next_id: u64,
    greeting: Value,
    timeout: Duration,
}

impl ControlClient {
    /// Connects to the control socket at `path`, reads the greeting and
    /// negotiates capabilities.
    pub fn connect(path: impl AsRef<Path>) -> Result<Self, ControlError> {
        let path = path.as_ref();
        let stream = UnixStream::connect(path).map_err(|source| match source.kind() {
            // No socket, or a socket left by a VM that died.
            io::ErrorKind::NotFound | io::ErrorKind::ConnectionRefused => {
                ControlError::NotRunning {
                    path: path.to_path_buf(),
                }
            }
            _ => ControlError::Connect {
                path: path.to_path_buf(),
                source,
            },
        })?;
        let mut client = Self {
            stream,
            // Answers are small; the limit only guards against a peer that
            // is not a VMM.
            splitter: Splitter::new(16 * MAX_MESSAGE),
            incoming: VecDeque::new(),
            events: VecDeque::new(),
            next_id: 1,
            greeting: Value::Null,
            timeout: DEFAULT_TIMEOUT,
        };
        let deadline = Instant::now() + client.timeout;
        let greeting = client.read_message(deadline)?;
        if !greeting.get("QMP").is_some_and(Value::is_object) {
            return Err(ControlError::Protocol(format!(
                "expected the QMP greeting, got {greeting}"
            )));
        }
        client.greeting = greeting;
        client.execute("qmp_capabilities", Value::Null)?;
        Ok(client)
    }

    /// How long [`execute`](Self::execute) waits for an answer.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.timeout = timeout;
    }

    /// The server's greeting: `{"QMP": {"version": ..., "capabilities": []}}`.
    pub fn greeting(&self) -> &Value {
        &self.greeting
    }

    /// Runs `command` with `arguments` (an object, or `Null` for none) and
    /// returns what it returned. A refusal is [`ControlError::Command`].
    pub fn execute(&mut self, command: &str, arguments: Value) -> Result<Value, ControlError> {
        self.execute_passing(command, arguments, None)
    }

    /// [`execute`](Self::execute), passing `fd` with the command's bytes
    /// (SCM_RIGHTS), as QMP's `add-fd` wants it.
    pub fn execute_with_fd(
        &mut self,
        command: &str,
        arguments: Value,
        fd: BorrowedFd<'_>,
    ) -> Result<Value, ControlError> {
        self.execute_passing(command, arguments, Some(fd))
    }

    fn execute_passing(
        &mut self,
        command: &str,
        arguments: Value,
        fd: Option<BorrowedFd<'_>>,
    ) -> Result<Value, ControlError> {
        let id = self.next_id;
        self.next_id += 1;
        let mut request = json!({"execute": command, "id": id});
        if !arguments.is_null() {
            request["arguments"] = arguments;
        }
        let mut line =
            serde_json::to_vec(&request).map_err(|e| ControlError::Protocol(e.to_string()))?;
        line.push(b'\n');
        let mut sent = 0;
        if let Some(fd) = fd {
            use vmm_sys_util::sock_ctrl_msg::ScmSocket;
            // The descriptor travels with the first bytes; the rest of the
            // line, if the socket took only part of it, follows plainly.
            sent = self
                .stream
                .send_with_fd(&line[..], fd.as_raw_fd())
                .map_err(|e| io_error(io::Error::from_raw_os_error(e.errno())))?;
        }
        self.stream.write_all(&line[sent..]).map_err(io_error)?;
        let deadline = Instant::now() + self.timeout;
        loop {
            let message = self.read_message(deadline)?;
            if message.get("event").is_some() {
                self.keep_event(message)?;
                continue;
            }
            match message.get("id") {
                Some(answered) if *answered == json!(id) => {}
                // An answer to an earlier command that timed out.
                Some(_) => continue,
                // Only input the server could not parse has no id; ours
                // always parses, but do not wait for an answer that will
                // not come.
                None if message.get("error").is_some() => {}
                None => continue,
            }
            if let Some(value) = message.get("return") {
                return Ok(value.clone());
            }
            if let Some(error) = message.get("error") {
                let text = |key: &str| {
                    error
                        .get(key)
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .to_string()
                };
                return Err(ControlError::Command {
                    class: text("class"),
                    desc: text("desc"),
                });
            }
            return Err(ControlError::Protocol(format!(
                "answer with neither return nor error: {message}"
            )));
        }
    }

    /// The next event, waiting up to `timeout` for one; `None` if none came.
    pub fn next_event(&mut self, timeout: Duration) -> Result<Option<Event>, ControlError> {
        let deadline = Instant::now() + timeout;
        while self.events.is_empty() {
            match self.read_message(deadline) {
                Ok(message) if message.get("event").is_some() => self.keep_event(message)?,
                // Answers to commands that timed out.
                Ok(_) => {}
                Err(ControlError::Timeout(_)) => return Ok(None),
                Err(e) => return Err(e),
            }
        }
        Ok(self.events.pop_front())
    }

    fn keep_event(&mut self, message: Value) -> Result<(), ControlError> {
        let event = serde_json::from_value(message)
            .map_err(|e| ControlError::Protocol(format!("malformed event: {e}")))?;
        self.events.push_back(event);
        Ok(())
    }

    /// The next message, reading until one is complete or `deadline` passes.
    fn read_message(&mut self, deadline: Instant) -> Result<Value, ControlError> {
        let mut buf = [0u8; 8192];
        loop {
            if let Some(message) = self.incoming.pop_front() {
                return Ok(message);
            }
            let now = Instant::now();
            let Some(left) = deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                return Err(ControlError::Timeout(self.timeout));
            };
            self.stream
                .set_read_timeout(Some(left))
                .map_err(ControlError::Io)?;
            let n = match self.stream.read(&mut buf) {
                Ok(0) => return Err(ControlError::Closed),
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    continue
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(io_error(e)),
            };
            let mut pieces = Vec::new();
            self.splitter.feed(&buf[..n], &mut pieces);
            for piece in pieces {
                match piece {
                    Piece::Message(bytes) => {
                        let value = serde_json::from_slice(&bytes).map_err(|e| {
                            ControlError::Protocol(format!("invalid JSON from the VM: {e}"))
                        })?;
                        self.incoming.push_back(value);
                    }
                    Piece::Error(desc) => return Err(ControlError::Protocol(desc)),
                }
            }
        }
    }
}

fn io_error(error: io::Error) -> ControlError {
    match error.kind() {
        io::ErrorKind::BrokenPipe
        | io::ErrorKind::ConnectionReset
        | io::ErrorKind::UnexpectedEof => ControlError::Closed,
        _ => ControlError::Io(error),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_socket_means_the_vm_is_not_running() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ghost.ctl");
        let err = ControlClient::connect(&path).unwrap_err();
        assert!(matches!(err, ControlError::NotRunning { .. }));
        assert_eq!(
            err.to_string(),
            format!(
                "the VM is not running (no control socket at {})",
                path.display()
            )
        );
        // A socket file nobody listens on: the VM died.
        drop(std::os::unix::net::UnixListener::bind(&path).unwrap());
        assert!(matches!(
            ControlClient::connect(&path),
            Err(ControlError::NotRunning { .. })
        ));
    }

    #[test]
    fn a_peer_that_is_not_qmp_is_a_protocol_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("other.ctl");
        let listener = std::os::unix::net::UnixListener::bind(&path).unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"{\"hello\": 1}\n").unwrap();
            // Keep the connection open until the client gives up.
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        });
        let err = ControlClient::connect(&path).unwrap_err();
        assert!(
            matches!(&err, ControlError::Protocol(m) if m.contains("greeting")),
            "{err:?}"
        );
        drop(err);
        server.join().unwrap();
    }
}
