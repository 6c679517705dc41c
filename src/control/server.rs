//! The VM process's side: a unix socket listener with one session per
//! connection.
//!
//! Threads: one accepts; each connection has a reader, which parses and runs
//! commands (calling the [`VmController`]), and a writer, which sends what
//! the reader and [`EventEmitter::emit`] queue. Emitting never touches a
//! socket, so the VM never waits for a client: each client's queue is
//! bounded ([`OUTPUT_LIMIT`]) and a client that lets it fill up, by not
//! reading, is disconnected, as QEMU's VNC server drops a client that stops
//! reading.

use std::collections::VecDeque;
use std::io::{self, Write};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::commands::{version, Session};
use super::protocol::{
    encode_error, encode_event, encode_greeting, parse_request, CommandError, Piece, Splitter,
    MAX_MESSAGE,
};
use super::{Event, VmController};

/// Bytes queued for one client before it counts as not reading and is
/// disconnected. Far above anything a reading client leaves queued (answers
/// and events are a few hundred bytes).
pub(crate) const OUTPUT_LIMIT: usize = 1 << 20;
/// Connections served at once; more are closed at once.
const MAX_CLIENTS: usize = 32;
/// How long a write to a client may block; a client that stays stuck this
/// long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long dropping the server waits for commands still running, so that
/// `quit`'s answer goes out before the socket closes.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the control socket down with it.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where a client's output stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum OutputState {
    Open,
    /// Send what is queued, then close (the client hung up its side, or the
    /// server is going away).
    Finishing,
    /// Dropped: nothing more is sent.
    Dropped,
}

struct Outbox {
    queue: VecDeque<Arc<[u8]>>,
    bytes: usize,
    state: OutputState,
    /// Past `qmp_capabilities`: receives events. Kept under the same lock as
    /// the queue so that no event goes out before the negotiation's answer.
    negotiated: bool,
}

/// One connection, as the reader, the writer and the emitter share it.
struct Client {
    id: u64,
    /// For shutting the connection down from any thread.
    stream: UnixStream,
    outbox: Mutex<Outbox>,
    wake: Condvar,
}

impl Client {
    /// Queues `bytes` unless the client is gone; disconnects a client whose
    /// queue would pass [`OUTPUT_LIMIT`]. Returns whether it was queued.
    fn send(&self, bytes: Arc<[u8]>, negotiated: Option<bool>) -> bool {
        let mut out = lock(&self.outbox);
        if out.state == OutputState::Dropped {
            return false;
        }
        if out.bytes + bytes.len() > OUTPUT_LIMIT {
            tracing::warn!(
                client = self.id,
                queued = out.bytes,
                "control: disconnecting a client that does not read its answers and events"
            );
            self.drop_locked(&mut out);
            return false;
        }
        out.bytes += bytes.len();
        out.queue.push_back(bytes);
        if let Some(negotiated) = negotiated {
            out.negotiated = negotiated;
        }
        self.wake.notify_all();
        true
    }

    /// Queues an event if the client is past negotiation.
    fn send_event(&self, bytes: &Arc<[u8]>) {
        if lock(&self.outbox).negotiated {
            self.send(bytes.clone(), None);
        }
    }

    fn drop_locked(&self, out: &mut Outbox) {
        out.state = OutputState::Dropped;
        out.queue.clear();
        out.bytes = 0;
        let _ = self.stream.shutdown(Shutdown::Both);
        self.wake.notify_all();
    }

    /// Sends what is queued, then closes.
    fn finish(&self) {
        let mut out = lock(&self.outbox);
        if out.state == OutputState::Open {
            out.state = OutputState::Finishing;
        }
        self.wake.notify_all();
    }

    /// The writer thread's loop.
    fn write_loop(&self, mut stream: UnixStream) {
        loop {
            let next = {
                let mut out = lock(&self.outbox);
                loop {
                    if out.state == OutputState::Dropped {
                        break None;
                    }
                    if let Some(bytes) = out.queue.pop_front() {
                        out.bytes -= bytes.len();
                        break Some(bytes);
                    }
                    if out.state == OutputState::Finishing {
                        break None;
                    }
                    out = self.wake.wait(out).unwrap_or_else(PoisonError::into_inner);
                }
            };
            let Some(bytes) = next else { break };
            if let Err(error) = stream.write_all(&bytes) {
                tracing::debug!(client = self.id, %error, "control: client gone");
                self.drop_locked(&mut lock(&self.outbox));
                break;
            }
        }
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// The connected clients, shared by the server and its emitters.
#[derive(Default)]
struct Hub {
    clients: Mutex<Vec<Arc<Client>>>,
    closed: AtomicBool,
}

/// Sends events to every negotiated client of a [`ControlServer`]. Cheap to
/// clone; hand one to whatever notices state changes (the control thread,
/// vCPU threads). After the server is dropped, emitting does nothing.
#[derive(Clone)]
pub struct EventEmitter {
    hub: Arc<Hub>,
}

impl EventEmitter {
    /// Sends `event` to every client past negotiation. Never blocks on a
    /// socket.
    pub fn emit(&self, event: &Event) {
        if self.hub.closed.load(Ordering::Acquire) {
            return;
        }
        let bytes: Arc<[u8]> = encode_event(event).into();
        for client in lock(&self.hub.clients).iter() {
            client.send_event(&bytes);
        }
    }
}

impl std::fmt::Debug for EventEmitter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventEmitter").finish_non_exhaustive()
    }
}

/// Commands running now, so that dropping the server can let them answer.
struct Shared {
    controller: Arc<dyn VmController>,
    hub: Arc<Hub>,
    state: Mutex<RunningCommands>,
    idle: Condvar,
}

struct RunningCommands {
    shutting_down: bool,
    count: usize,
}

impl Shared {
    /// Counts a command in, unless the server is going away.
    fn begin(&self) -> Option<CommandGuard<'_>> {
        let mut state = lock(&self.state);
        if state.shutting_down {
            return None;
        }
        state.count += 1;
        Some(CommandGuard { shared: self })
    }

    fn shutting_down(&self) -> bool {
        lock(&self.state).shutting_down
    }
}

/// Counts a command out when dropped, even if the controller panicked.
struct CommandGuard<'a> {
    shared: &'a Shared,
}

impl Drop for CommandGuard<'_> {
    fn drop(&mut self) {
        let mut state = lock(&self.shared.state);
        state.count -= 1;
        if state.count == 0 {
            self.shared.idle.notify_all();
        }
    }
}

/// Closes a connection's output and forgets it when its reader ends, even
/// by a panic.
struct ReaderGuard<'a> {
    client: &'a Arc<Client>,
    hub: &'a Hub,
}

impl Drop for ReaderGuard<'_> {
    fn drop(&mut self) {
        self.client.finish();
        lock(&self.hub.clients).retain(|c| c.id != self.client.id);
    }
}

/// The control socket of a running VM. Dropping it stops accepting, lets
/// running commands answer (up to a second), flushes what is queued for each
/// client, closes the connections and removes the socket file.
pub struct ControlServer {
    path: PathBuf,
    /// Device and inode of the socket file made, so that drop removes it
    /// only if it is still ours.
    identity: Option<(u64, u64)>,
    listener: Arc<UnixListener>,
    shared: Arc<Shared>,
    accept_thread: Option<JoinHandle<()>>,
}

impl ControlServer {
    /// Listens on `path` (its directory must exist) and serves `controller`
    /// from threads of its own. A socket file left by a VM that died is
    /// replaced; one a live process answers on is an `AddrInUse` error.
    pub fn bind(path: impl AsRef<Path>, controller: Arc<dyn VmController>) -> io::Result<Self> {
        let path = path.as_ref().to_path_buf();
        let listener = bind_replacing_stale(&path)?;
        // Only the user who owns the VM may control it.
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
        let identity = std::fs::metadata(&path).ok().map(|m| (m.dev(), m.ino()));
        let listener = Arc::new(listener);
        let shared = Arc::new(Shared {
            controller,
            hub: Arc::new(Hub::default()),
            state: Mutex::new(RunningCommands {
                shutting_down: false,
                count: 0,
            }),
            idle: Condvar::new(),
        });
        let accept_thread = {
            let listener = listener.clone();
            let shared = shared.clone();
            std::thread::Builder::new()
                .name("ctl-accept".into())
                .spawn(move || {
                    crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Control);
                    accept_loop(&listener, &shared)
                })?
        };
        tracing::debug!(path = %path.display(), "control: listening");
        Ok(Self {
            path,
            identity,
            listener,
            shared,
            accept_thread: Some(accept_thread),
        })
    }

    /// The socket's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sends `event` to every negotiated client.
    pub fn emit(&self, event: &Event) {
        self.emitter().emit(event);
    }

    /// A handle for emitting events from other threads.
    pub fn emitter(&self) -> EventEmitter {
        EventEmitter {
            hub: self.shared.hub.clone(),
        }
    }

    /// How many clients are connected (negotiated or not).
    pub fn client_count(&self) -> usize {
        lock(&self.shared.hub.clients).len()
    }
}

impl std::fmt::Debug for ControlServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlServer")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Drop for ControlServer {
    fn drop(&mut self) {
        // Let running commands (quit, above all) queue their answers.
        {
            let mut state = lock(&self.shared.state);
            state.shutting_down = true;
            let deadline = Instant::now() + DRAIN_TIMEOUT;
            while state.count > 0 {
                let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                    break;
                };
                state = self
                    .shared
                    .idle
                    .wait_timeout(state, left)
                    .unwrap_or_else(PoisonError::into_inner)
                    .0;
            }
        }
        // Shutting a listening socket down wakes a thread blocked in
        // accept(2) on Linux (it returns EINVAL).
        // SAFETY: the descriptor belongs to `self.listener`, alive here.
        unsafe {
            libc::shutdown(self.listener.as_raw_fd(), libc::SHUT_RDWR);
        }
        if let Some(thread) = self.accept_thread.take() {
            let _ = thread.join();
        }
        let ours = std::fs::metadata(&self.path)
            .ok()
            .map(|m| (m.dev(), m.ino()));
        if ours.is_some() && ours == self.identity {
            let _ = std::fs::remove_file(&self.path);
        }
        self.shared.hub.closed.store(true, Ordering::Release);
        let clients = std::mem::take(&mut *lock(&self.shared.hub.clients));
        for client in clients {
            // The reader stops; the writer sends what is queued and closes.
            let _ = client.stream.shutdown(Shutdown::Read);
            client.finish();
        }
    }
}

/// Binds `path`, first removing a socket file nobody listens on.
fn bind_replacing_stale(path: &Path) -> io::Result<UnixListener> {
    match UnixListener::bind(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse => {}
        other => return other,
    }
    if UnixStream::connect(path).is_ok() {
        return Err(io::Error::new(
            io::ErrorKind::AddrInUse,
            format!("{} is the control socket of a running VM", path.display()),
        ));
    }
    if !std::fs::symlink_metadata(path)?.file_type().is_socket() {
        return Err(io::Error::new(
            io::ErrorKind::AlreadyExists,
            format!("{} exists and is not a socket", path.display()),
        ));
    }
    tracing::info!(path = %path.display(), "control: replacing a stale socket");
    std::fs::remove_file(path)?;
    UnixListener::bind(path)
}

fn accept_loop(listener: &UnixListener, shared: &Arc<Shared>) {
    static NEXT_ID: AtomicU64 = AtomicU64::new(1);
    loop {
        let stream = match listener.accept() {
            Ok((stream, _)) => stream,
            Err(_) if shared.shutting_down() => return,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Out of descriptors, most likely: wait rather than spin.
                tracing::warn!(error = %e, "control: accept failed");
                std::thread::sleep(Duration::from_millis(100));
                continue;
            }
        };
        if shared.shutting_down() {
            return;
        }
        if lock(&shared.hub.clients).len() >= MAX_CLIENTS {
            tracing::warn!("control: too many clients, refusing one");
            continue;
        }
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        if let Err(e) = start_client(id, stream, shared) {
            tracing::warn!(error = %e, "control: cannot serve a client");
        }
    }
}

fn start_client(id: u64, stream: UnixStream, shared: &Arc<Shared>) -> io::Result<()> {
    stream.set_write_timeout(Some(WRITE_TIMEOUT))?;
    let client = Arc::new(Client {
        id,
        stream: stream.try_clone()?,
        outbox: Mutex::new(Outbox {
            queue: VecDeque::new(),
            bytes: 0,
            state: OutputState::Open,
            negotiated: false,
        }),
        wake: Condvar::new(),
    });
    client.send(encode_greeting(version()).into(), None);
    let writer_stream = stream.try_clone()?;
    let writer = {
        let client = client.clone();
        std::thread::Builder::new()
            .name(format!("ctl-out-{id}"))
            .spawn(move || client.write_loop(writer_stream))?
    };
    lock(&shared.hub.clients).push(client.clone());
    let reader = {
        let client = client.clone();
        let shared = shared.clone();
        std::thread::Builder::new()
            .name(format!("ctl-in-{id}"))
            .spawn(move || read_loop(stream, &client, &shared))
    };
    if let Err(e) = reader {
        lock(&shared.hub.clients).retain(|c| c.id != id);
        client.drop_locked(&mut lock(&client.outbox));
        drop(writer);
        return Err(e);
    }
    tracing::debug!(client = id, "control: client connected");
    Ok(())
}

/// The reader thread: splits input, runs commands, queues the answers.
fn read_loop(stream: UnixStream, client: &Arc<Client>, shared: &Shared) {
    let _guard = ReaderGuard {
        client,
        hub: &shared.hub,
    };
    let mut splitter = Splitter::new(MAX_MESSAGE);
    let mut session = Session::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut pieces = Vec::new();
    loop {
        let (n, fds) = match receive(&stream, &mut buf) {
            Ok((0, _)) => return,
            Ok(got) => got,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::debug!(client = client.id, error = %e, "control: reading from the client failed");
                return;
            }
        };
        session.received(fds);
        splitter.feed(&buf[..n], &mut pieces);
        for piece in pieces.drain(..) {
            // Held until the answer is queued, so that dropping the server
            // waits for it.
            let mut running = None;
            let answer = match piece {
                Piece::Error(desc) => encode_error(None, &CommandError::generic(desc)),
                Piece::Message(bytes) => match parse_request(&bytes) {
                    Err(bad) => encode_error(bad.id, &CommandError::generic(bad.desc)),
                    Ok(request) => {
                        running = shared.begin();
                        if running.is_none() {
                            return;
                        }
                        session.handle(request, &*shared.controller)
                    }
                },
            };
            let queued = client.send(answer.into(), Some(session.negotiated()));
            drop(running);
            if !queued {
                return;
            }
        }
    }
}

/// The most descriptors one read takes with its bytes: `add-fd` needs
/// one; a client sending more loses its connection (their bytes are lost
/// with the descriptors the kernel had to drop).
const MAX_FDS_PER_READ: usize = 4;

/// Reads what the client sent, and any descriptors that came with it
/// (SCM_RIGHTS, for `add-fd`).
fn receive(stream: &UnixStream, buf: &mut [u8]) -> io::Result<(usize, Vec<OwnedFd>)> {
    use vmm_sys_util::sock_ctrl_msg::ScmSocket;
    let mut iovecs = [libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    }];
    let mut raw = [-1; MAX_FDS_PER_READ];
    // SAFETY: the iovec covers `buf`, which we borrow mutably and which
    // may take any bytes.
    let (n, count) = unsafe { stream.recv_with_fds(&mut iovecs, &mut raw) }
        .map_err(|e| io::Error::from_raw_os_error(e.errno()))?;
    let fds = raw[..count]
        .iter()
        // SAFETY: recvmsg just gave us these descriptors; nothing else
        // owns them.
        .map(|&fd| unsafe { OwnedFd::from_raw_fd(fd) })
        .collect();
    Ok((n, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_queue_drops_the_client_and_nothing_more_is_queued() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let client = Client {
            id: 1,
            stream: ours,
            outbox: Mutex::new(Outbox {
                queue: VecDeque::new(),
                bytes: 0,
                state: OutputState::Open,
                negotiated: true,
            }),
            wake: Condvar::new(),
        };
        let chunk: Arc<[u8]> = vec![b'x'; 4096].into();
        let fits = OUTPUT_LIMIT / chunk.len();
        for _ in 0..fits {
            assert!(client.send(chunk.clone(), None));
        }
        assert!(!client.send(chunk.clone(), None));
        let out = lock(&client.outbox);
        assert_eq!(out.state, OutputState::Dropped);
        assert_eq!(out.bytes, 0);
        drop(out);
        assert!(!client.send(b"late".to_vec().into(), None));
    }

    #[test]
    fn events_wait_for_negotiation() {
        let (ours, _theirs) = UnixStream::pair().unwrap();
        let client = Client {
            id: 2,
            stream: ours,
            outbox: Mutex::new(Outbox {
                queue: VecDeque::new(),
                bytes: 0,
                state: OutputState::Open,
                negotiated: false,
            }),
            wake: Condvar::new(),
        };
        let event: Arc<[u8]> = encode_event(&Event::stop()).into();
        client.send_event(&event);
        assert!(lock(&client.outbox).queue.is_empty());
        client.send(b"{\"return\": {}}\r\n".to_vec().into(), Some(true));
        client.send_event(&event);
        assert_eq!(lock(&client.outbox).queue.len(), 2);
    }
}
