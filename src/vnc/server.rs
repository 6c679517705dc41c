//! Listeners, the accept loops, the RFB handshake (RFC 6143 §7.1–§7.3)
//! and the registry of connected clients.
//!
//! Threads: one accept thread per listener, one display watcher that wakes
//! every client's sender when the display changes, and per client a reader
//! (its handshake, then its messages) and a sender. Dropping the
//! [`VncServer`] stops and joins them all and removes the unix socket.

use std::collections::HashMap;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::auth::{self, AuthLimiter};
use super::client::{self, ClientShared, Connection};
use super::protocol::{
    security, vencrypt, AuthBlock, ClientInit, PixelFormat, SecurityChoice, SecurityResult,
    SecurityTypes, ServerInit, Version,
};
use super::tls::{TlsReader, TlsSession, TlsWriter};
use crate::display::input::InputSink;
use crate::display::Display;

/// TCP port of VNC display 0; display N listens on `AUTOPORT_BASE + N`.
pub const AUTOPORT_BASE: u16 = 5900;
/// A client must finish its handshake within this time.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);
/// A client that reads nothing for this long is disconnected.
const WRITE_TIMEOUT: Duration = Duration::from_secs(30);
/// Clients (handshaking or connected) served at once.
const MAX_CLIENTS: usize = 64;
/// How often the display watcher looks for a stop request.
const WATCH_INTERVAL: Duration = Duration::from_millis(200);

/// Where and how to serve: a domain's `<graphics type='vnc'>`.
#[derive(Debug, Clone)]
pub struct VncConfig {
    /// TCP listener: address and port; `None` as port picks the first
    /// free one from 5900 (libvirt's autoport). Port 0 lets the kernel pick.
    pub tcp: Option<(IpAddr, Option<u16>)>,
    /// Unix-socket listener (the GUI's, `vm_process::RunFiles::vnc`).
    pub unix: Option<PathBuf>,
    /// VNC password (`<graphics passwd=>`); None offers security None.
    pub password: Option<String>,
    /// Desktop name in ServerInit (the domain's name).
    pub name: String,
    /// A client that reads nothing for this long is dropped.
    pub write_timeout: Duration,
    /// VeNCrypt with these TLS credentials on the TCP listener (QEMU's
    /// `tls-creds`); a TCP client that does not choose it is refused.
    /// The unix socket stays plain: only its owner can reach it (0600 in
    /// a 0700 directory), and the window's own viewer speaks no TLS.
    pub tls: Option<Arc<rustls::ServerConfig>>,
}

impl VncConfig {
    /// No listeners yet, no password, the default timeouts.
    pub fn new(name: impl Into<String>) -> Self {
        Self {
            tcp: None,
            unix: None,
            password: None,
            name: name.into(),
            write_timeout: WRITE_TIMEOUT,
            tls: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum VncError {
    /// A TCP listener could not be bound.
    #[error("cannot listen for VNC on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    /// Every port from 5900 up is taken.
    #[error("no free VNC port on {0} from 5900 up")]
    NoFreePort(IpAddr),
    /// The unix socket could not be created.
    #[error("cannot listen for VNC on {path}")]
    Unix {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    /// Another live server owns the unix socket.
    #[error("{0} is in use by another VNC server")]
    UnixInUse(PathBuf),
    /// A server thread could not be started.
    #[error("cannot start a VNC server thread")]
    Thread(#[source] io::Error),
}

/// Parses QEMU's `-vnc` display syntax: `HOST:N` (port 5900 + N), `:N`
/// (127.0.0.1), `[IPV6]:N`.
pub fn parse_vnc_display(spec: &str) -> Result<(IpAddr, u16), String> {
    let (host, display) = spec
        .rsplit_once(':')
        .ok_or_else(|| format!("'{spec}' is not HOST:DISPLAY (e.g. 127.0.0.1:0 or :1)"))?;
    let display: u16 = display
        .parse()
        .ok()
        .filter(|d| *d <= u16::MAX - AUTOPORT_BASE)
        .ok_or_else(|| format!("'{display}' is not a VNC display number"))?;
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addr = if host.is_empty() || host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse()
            .map_err(|_| format!("'{host}' is not an IP address"))?
    };
    Ok((addr, AUTOPORT_BASE + display))
}

/// A registered connection: its socket (to end it) and, once past the
/// handshake, its shared state.
struct Entry {
    conn: Connection,
    shared: Option<Arc<ClientShared>>,
}

struct Inner {
    display: Arc<Display>,
    input: Arc<dyn InputSink>,
    password: Option<String>,
    name: String,
    write_timeout: Duration,
    tls: Option<Arc<rustls::ServerConfig>>,
    limiter: Arc<AuthLimiter>,
    stopping: AtomicBool,
    clients: Mutex<HashMap<u64, Entry>>,
    next_id: AtomicU64,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

/// A running VNC server; dropping it stops it.
pub struct VncServer {
    inner: Arc<Inner>,
    tcp_addr: Option<SocketAddr>,
    unix_path: Option<(PathBuf, (u64, u64))>,
    /// Raw fds of the listeners, to shut them down (which wakes accept).
    listener_fds: Vec<i32>,
    threads: Vec<JoinHandle<()>>,
}

fn bind_tcp(addr: IpAddr, port: Option<u16>) -> Result<TcpListener, VncError> {
    if let Some(port) = port {
        let addr = SocketAddr::new(addr, port);
        return TcpListener::bind(addr).map_err(|source| VncError::Bind { addr, source });
    }
    for port in AUTOPORT_BASE..=u16::MAX {
        let at = SocketAddr::new(addr, port);
        match TcpListener::bind(at) {
            Ok(listener) => return Ok(listener),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(source) => return Err(VncError::Bind { addr: at, source }),
        }
    }
    Err(VncError::NoFreePort(addr))
}

fn bind_unix(path: &Path) -> Result<(UnixListener, (u64, u64)), VncError> {
    let fail = |source| VncError::Unix {
        path: path.to_path_buf(),
        source,
    };
    if path.exists() {
        // A socket left by a VM that died is stale; a live one is not ours.
        if UnixStream::connect(path).is_ok() {
            return Err(VncError::UnixInUse(path.to_path_buf()));
        }
        std::fs::remove_file(path).map_err(fail)?;
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(fail)?;
    }
    let listener = UnixListener::bind(path).map_err(fail)?;
    // Only the user may connect: the socket gives the VM's console.
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(fail)?;
    let meta = std::fs::metadata(path).map_err(fail)?;
    Ok((listener, (meta.dev(), meta.ino())))
}

fn spawn(name: &str, f: impl FnOnce() + Send + 'static) -> Result<JoinHandle<()>, VncError> {
    std::thread::Builder::new()
        .name(name.into())
        .spawn(|| {
            crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Vnc);
            f()
        })
        .map_err(VncError::Thread)
}

impl VncServer {
    /// Binds the listeners in `config` and starts serving `display`.
    pub fn start(
        display: Arc<Display>,
        input: Arc<dyn InputSink>,
        config: VncConfig,
    ) -> Result<VncServer, VncError> {
        let tcp = config
            .tcp
            .map(|(addr, port)| bind_tcp(addr, port))
            .transpose()?;
        let tcp_addr = tcp.as_ref().and_then(|l| l.local_addr().ok());
        let unix = config.unix.as_deref().map(bind_unix).transpose()?;
        let inner = Arc::new(Inner {
            display,
            input,
            password: config.password.filter(|p| !p.is_empty()),
            name: config.name,
            write_timeout: config.write_timeout,
            tls: config.tls,
            limiter: AuthLimiter::new(auth::MAX_HANDSHAKES),
            stopping: AtomicBool::new(false),
            clients: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(0),
            threads: Mutex::new(Vec::new()),
        });
        let mut server = VncServer {
            inner: inner.clone(),
            tcp_addr,
            unix_path: None,
            listener_fds: Vec::new(),
            threads: Vec::new(),
        };
        if let Some(listener) = tcp {
            server.listener_fds.push(listener.as_raw_fd());
            let inner = inner.clone();
            server.threads.push(spawn("vnc-accept-tcp", move || {
                accept_loop(&inner, || {
                    listener.accept().map(|(s, _)| {
                        let _ = s.set_nodelay(true);
                        Connection::Tcp(s)
                    })
                })
            })?);
        }
        if let Some((listener, id)) = unix {
            server.listener_fds.push(listener.as_raw_fd());
            server.unix_path = config.unix.clone().map(|p| (p, id));
            let inner = inner.clone();
            server.threads.push(spawn("vnc-accept-unix", move || {
                accept_loop(&inner, || {
                    listener.accept().map(|(s, _)| Connection::Unix(s))
                })
            })?);
        }
        let watcher = inner.clone();
        server
            .threads
            .push(spawn("vnc-display-watch", move || watch_display(&watcher))?);
        Ok(server)
    }

    /// The TCP port listened on, if any.
    pub fn tcp_port(&self) -> Option<u16> {
        self.tcp_addr.map(|a| a.port())
    }

    /// The TCP address listened on, if any.
    pub fn tcp_addr(&self) -> Option<SocketAddr> {
        self.tcp_addr
    }

    /// How many clients are connected past their handshake.
    pub fn client_count(&self) -> usize {
        self.inner
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
            .filter(|e| e.shared.as_ref().is_some_and(|s| !s.is_closed()))
            .count()
    }
}

impl Drop for VncServer {
    fn drop(&mut self) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        for &fd in &self.listener_fds {
            // SAFETY: the fd belongs to a listener its accept thread still
            // owns (joined below); shutdown only makes accept() return.
            unsafe { libc::shutdown(fd, libc::SHUT_RDWR) };
        }
        for thread in self.threads.drain(..) {
            let _ = thread.join();
        }
        for entry in self
            .inner
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .values()
        {
            if let Some(shared) = &entry.shared {
                shared.close();
            }
            entry.conn.shutdown();
        }
        let threads =
            std::mem::take(&mut *self.inner.threads.lock().unwrap_or_else(|e| e.into_inner()));
        for thread in threads {
            let _ = thread.join();
        }
        if let Some((path, (dev, ino))) = &self.unix_path {
            // Remove the socket only if it is still ours.
            if std::fs::metadata(path).is_ok_and(|m| m.dev() == *dev && m.ino() == *ino) {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

fn accept_loop(inner: &Arc<Inner>, mut accept: impl FnMut() -> io::Result<Connection>) {
    while !inner.stopping.load(Ordering::SeqCst) {
        match accept() {
            Ok(conn) => {
                if inner.stopping.load(Ordering::SeqCst) {
                    conn.shutdown();
                    break;
                }
                start_client(inner, conn);
            }
            Err(_) if inner.stopping.load(Ordering::SeqCst) => break,
            Err(e) => {
                // Out of fds or memory: back off rather than spin.
                tracing::warn!("VNC: accept failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

fn start_client(inner: &Arc<Inner>, conn: Connection) {
    let source = conn.source();
    let Ok(registered) = conn.try_clone() else {
        return;
    };
    let id = inner.next_id.fetch_add(1, Ordering::SeqCst);
    {
        let mut clients = inner.clients.lock().unwrap_or_else(|e| e.into_inner());
        if clients.len() >= MAX_CLIENTS {
            tracing::warn!(%source, "VNC: too many clients, connection refused");
            conn.shutdown();
            return;
        }
        clients.insert(
            id,
            Entry {
                conn: registered,
                shared: None,
            },
        );
    }
    let thread_inner = inner.clone();
    let spawned = spawn("vnc-client", move || {
        let inner = thread_inner;
        match serve(&inner, id, conn, &source) {
            Ok(()) => tracing::info!(%source, "VNC: client disconnected"),
            Err(e) => tracing::info!(%source, "VNC: client dropped: {e}"),
        }
        inner
            .clients
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    });
    let mut threads = inner.threads.lock().unwrap_or_else(|e| e.into_inner());
    threads.retain(|t| !t.is_finished());
    match spawned {
        Ok(thread) => threads.push(thread),
        Err(e) => {
            tracing::warn!("VNC: {e}");
            if let Some(entry) = inner
                .clients
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&id)
            {
                entry.conn.shutdown();
            }
        }
    }
}

/// Sleeps `delay` unless the server stops first.
fn sleep_unless_stopping(inner: &Inner, delay: Duration) {
    let until = Instant::now() + delay;
    while !inner.stopping.load(Ordering::SeqCst) {
        let now = Instant::now();
        if now >= until {
            break;
        }
        std::thread::sleep((until - now).min(Duration::from_millis(50)));
    }
}

/// The first failure reason a TCP client gets when TLS is required and
/// it chose something else.
const TLS_REQUIRED: &str = "this server requires TLS: choose VeNCrypt (security type 19)";

/// What a finished handshake leaves: the client's ClientInit and, over
/// VeNCrypt, its TLS session.
struct Handshaken {
    init: ClientInit,
    tls: Option<Arc<TlsSession>>,
}

/// RFC 6143 §7.1–§7.3: version, security, ClientInit. Returns `None` when
/// the client was refused (wrong password, unsupported security type).
fn handshake(
    inner: &Inner,
    reader: &mut BufReader<Connection>,
    writer: &mut Connection,
    source: &str,
) -> io::Result<Option<Handshaken>> {
    Version::V3_8.write_to(writer)?;
    let version = Version::read_from(reader)?;
    let tls = inner.tls.clone().filter(|_| writer.is_tcp());
    if let Some(config) = tls {
        return vencrypt(inner, config, reader, writer, version, source);
    }
    let offered = if inner.password.is_some() {
        security::VNC_AUTH
    } else {
        security::NONE
    };
    SecurityTypes::Offer(vec![offered]).write_to(writer, version)?;
    if version >= Version::V3_7 {
        let SecurityChoice(chosen) = SecurityChoice::read_from(reader)?;
        if chosen != offered {
            SecurityResult::Failed("security type not offered".into()).write_to(writer, version)?;
            return Ok(None);
        }
    }
    if inner.password.is_some() {
        if !authenticate(inner, reader, writer, version, source)? {
            return Ok(None);
        }
    } else if version == Version::V3_8 {
        // 3.8 confirms even security None (§7.1.3); 3.3 and 3.7 do not.
        SecurityResult::Ok.write_to(writer, version)?;
    }
    Ok(Some(Handshaken {
        init: ClientInit::read_from(reader)?,
        tls: None,
    }))
}

/// VNC Authentication (§7.2.2) and its SecurityResult: whether the client
/// knew the password. A wrong answer is told after the source's delay.
fn authenticate(
    inner: &Inner,
    reader: &mut impl Read,
    writer: &mut impl Write,
    version: Version,
    source: &str,
) -> io::Result<bool> {
    let Some(password) = &inner.password else {
        SecurityResult::Ok.write_to(writer, version)?;
        return Ok(true);
    };
    let challenge = auth::challenge()?;
    AuthBlock(challenge).write_to(writer)?;
    let AuthBlock(answer) = AuthBlock::read_from(reader)?;
    if !auth::verify(password, &challenge, &answer) {
        let delay = inner.limiter.failed(source);
        tracing::warn!(%source, "VNC: wrong password; next answer after {delay:?}");
        sleep_unless_stopping(inner, delay);
        SecurityResult::Failed("authentication failed".into()).write_to(writer, version)?;
        return Ok(false);
    }
    inner.limiter.succeeded(source);
    SecurityResult::Ok.write_to(writer, version)?;
    Ok(true)
}

/// VeNCrypt 0.2 (rfbproto "VeNCrypt"), the only security type offered
/// when TLS is configured: version, one X.509 sub-type (X509Vnc with a
/// password, else X509None), the TLS handshake, then VNC Authentication
/// or none and ClientInit over TLS, as QEMU serves it.
fn vencrypt(
    inner: &Inner,
    config: Arc<rustls::ServerConfig>,
    reader: &mut BufReader<Connection>,
    writer: &mut Connection,
    version: Version,
    source: &str,
) -> io::Result<Option<Handshaken>> {
    if version == Version::V3_3 {
        // 3.3 lets the server pick one type and has no way to negotiate.
        SecurityTypes::Refused(TLS_REQUIRED.into()).write_to(writer, version)?;
        tracing::info!(%source, "VNC: RFB 3.3 client refused: TLS is required");
        return Ok(None);
    }
    SecurityTypes::Offer(vec![security::VENCRYPT]).write_to(writer, version)?;
    let SecurityChoice(chosen) = SecurityChoice::read_from(reader)?;
    if chosen != security::VENCRYPT {
        SecurityResult::Failed(TLS_REQUIRED.into()).write_to(writer, version)?;
        tracing::info!(%source, "VNC: client chose security type {chosen}; TLS is required");
        return Ok(None);
    }
    // Version 0.2; the client answers with the version it speaks.
    writer.write_all(&[0, 2])?;
    let mut theirs = [0u8; 2];
    reader.read_exact(&mut theirs)?;
    if theirs != [0, 2] {
        writer.write_all(&[1])?;
        tracing::info!(%source, "VNC: VeNCrypt {}.{} is not served", theirs[0], theirs[1]);
        return Ok(None);
    }
    writer.write_all(&[0])?;
    let subtype = if inner.password.is_some() {
        vencrypt::X509_VNC
    } else {
        vencrypt::X509_NONE
    };
    let mut offer = vec![1u8];
    offer.extend_from_slice(&subtype.to_be_bytes());
    writer.write_all(&offer)?;
    let mut choice = [0u8; 4];
    reader.read_exact(&mut choice)?;
    let choice = u32::from_be_bytes(choice);
    if choice != subtype {
        // 0: refused; VeNCrypt has no room for a reason here.
        writer.write_all(&[0])?;
        tracing::info!(%source, "VNC: client chose VeNCrypt sub-type {choice}, not {subtype}");
        return Ok(None);
    }
    writer.write_all(&[1])?;
    // The client waits for that before its ClientHello, so the buffer is
    // normally empty; a client that sent early loses nothing.
    let early = reader.buffer().to_vec();
    reader.consume(early.len());
    let session = match TlsSession::accept(config, writer, &early) {
        Ok(session) => session,
        Err(e) => {
            tracing::info!(%source, "VNC: TLS handshake failed: {e}");
            return Ok(None);
        }
    };
    let mut tls_reader = TlsReader::new(session.clone(), writer.try_clone()?);
    let mut tls_writer = TlsWriter::new(session.clone(), writer.try_clone()?);
    if !authenticate(inner, &mut tls_reader, &mut tls_writer, version, source)? {
        return Ok(None);
    }
    Ok(Some(Handshaken {
        init: ClientInit::read_from(&mut tls_reader)?,
        tls: Some(session),
    }))
}

fn serve(inner: &Arc<Inner>, id: u64, conn: Connection, source: &str) -> io::Result<()> {
    let Some(slot) = inner.limiter.begin_handshake() else {
        tracing::warn!(%source, "VNC: too many handshakes in progress, connection refused");
        return Ok(());
    };
    conn.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    conn.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    let Some(Handshaken { init, tls }) = handshake(inner, &mut reader, &mut writer, source)? else {
        return Ok(());
    };
    drop(slot);
    match tls {
        None => {
            let sender = writer.try_clone()?;
            run_session(inner, id, init, source, reader, sender, writer)
        }
        Some(session) => {
            let tls_reader = BufReader::new(TlsReader::new(session.clone(), writer.try_clone()?));
            let tls_writer = TlsWriter::new(session, writer.try_clone()?);
            run_session(inner, id, init, source, tls_reader, tls_writer, writer)
        }
    }
}

/// Serves an initialised client: ServerInit, then its reader here and its
/// sender on a thread of its own. `socket` is the plain socket under
/// `reader` and `writer`, for its timeouts and to end the session.
fn run_session(
    inner: &Arc<Inner>,
    id: u64,
    init: ClientInit,
    source: &str,
    mut reader: impl Read,
    mut writer: impl Write + Send + 'static,
    socket: Connection,
) -> io::Result<()> {
    let (width, height) = inner.display.with_surface(|s| (s.width, s.height));
    let shared = ClientShared::new(width, height);
    let server_init = ServerInit {
        width: width as u16,
        height: height as u16,
        pixel_format: PixelFormat::native(),
        name: inner.name.clone(),
    };
    let mut message = Vec::new();
    server_init.write_to(&mut message)?;
    writer.write_all(&message)?;
    // Past the handshake a client may stay idle as long as it likes (the
    // option is the socket's, shared by every clone).
    socket.set_read_timeout(None)?;
    socket.set_write_timeout(Some(inner.write_timeout))?;
    {
        let mut clients = inner.clients.lock().unwrap_or_else(|e| e.into_inner());
        if !init.shared {
            // RFC 6143 §7.3.1: exclusive access disconnects everyone else.
            for (_, other) in clients.iter().filter(|(other, _)| **other != id) {
                if let Some(s) = &other.shared {
                    s.close();
                }
                other.conn.shutdown();
            }
        }
        if let Some(entry) = clients.get_mut(&id) {
            entry.shared = Some(shared.clone());
        }
    }
    tracing::info!(%source, shared = init.shared, "VNC: client connected");

    let sender = {
        let shared = shared.clone();
        let display = inner.display.clone();
        let socket = socket.try_clone()?;
        std::thread::Builder::new()
            .name("vnc-send".into())
            .spawn(move || {
                let result = client::send_updates(&mut writer, &shared, &display);
                shared.close();
                socket.shutdown();
                result
            })?
    };
    let result = client::read_messages(&mut reader, &shared, inner.input.as_ref());
    shared.close();
    socket.shutdown();
    let sent = sender
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("sender panicked")));
    match (result, sent) {
        // A client hanging up is how sessions normally end.
        (Err(e), _) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(()),
        (Err(e), _) => Err(e),
        (Ok(()), sent) => sent,
    }
}

/// Wakes every client's sender whenever the display changes.
fn watch_display(inner: &Inner) {
    let mut seen = inner.display.serial();
    while !inner.stopping.load(Ordering::SeqCst) {
        let now = inner.display.wait_for_change(seen, WATCH_INTERVAL);
        if now == seen {
            continue;
        }
        seen = now;
        let clients = inner.clients.lock().unwrap_or_else(|e| e.into_inner());
        for shared in clients.values().filter_map(|e| e.shared.as_ref()) {
            shared.poke();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::display::Rect;
    use crate::vnc::pixel::formats::*;
    use crate::vnc::pixel::Converter;
    use crate::vnc::protocol::{encoding, ClientMessage, Screen};
    use crate::vnc::test_client::{test_tls, Outcome, TestClient};
    use std::io::Read;
    use std::net::TcpStream;

    #[derive(Debug, Clone, PartialEq, Eq)]
    enum Event {
        Key(u16, bool),
        Pointer(u32, u32, u8),
    }

    #[derive(Default)]
    struct FakeInput(Mutex<Vec<Event>>);

    impl InputSink for FakeInput {
        fn key(&self, qnum: u16, down: bool) {
            self.0.lock().unwrap().push(Event::Key(qnum, down));
        }
        fn pointer(&self, x: u32, y: u32, buttons: u8) {
            self.0.lock().unwrap().push(Event::Pointer(x, y, buttons));
        }
    }

    impl FakeInput {
        fn take(&self) -> Vec<Event> {
            std::mem::take(&mut *self.0.lock().unwrap())
        }
    }

    fn config() -> VncConfig {
        VncConfig {
            tcp: Some((IpAddr::V4(Ipv4Addr::LOCALHOST), Some(0))),
            ..VncConfig::new("test-vm")
        }
    }

    fn start(display: &Arc<Display>, config: VncConfig) -> (VncServer, Arc<FakeInput>) {
        let input = Arc::new(FakeInput::default());
        let server = VncServer::start(display.clone(), input.clone(), config).unwrap();
        (server, input)
    }

    fn connect(server: &VncServer) -> TestClient {
        let mut client = TestClient::tcp(server.tcp_addr().unwrap());
        assert_eq!(
            client.handshake(Version::V3_8, None, true).unwrap(),
            Outcome::Connected
        );
        client
    }

    /// Draws `f(x, y)` into `rect` of the display.
    fn paint(display: &Display, rect: Rect, f: impl Fn(u32, u32) -> u32) {
        display.update(|s| {
            let r = rect.clip(s.width, s.height);
            for y in r.y..r.y + r.height {
                for x in r.x..r.x + r.width {
                    s.row_mut(y)[x as usize] = f(x, y);
                }
            }
            vec![r]
        });
    }

    /// A picture with flat areas, text-like strokes, gradients and noise,
    /// so every encoding's every sub-mode is used.
    fn picture(x: u32, y: u32) -> u32 {
        match (x / 40, y / 40) {
            (0, _) => 0x204060,
            (1, _) if (x * 7 + y * 3) % 11 < 3 => 0xffffff,
            (1, _) => 0x000080,
            (2, _) => ((x * 4) << 16) | ((y * 2) << 8) | ((x + y) & 0xff),
            (3, _) => {
                [0xff0000, 0x00ff00, 0x0000ff, 0xffff00, 0x00ffff][((x / 3 + y / 5) % 5) as usize]
            }
            _ => x.wrapping_mul(2654435761) ^ y.wrapping_mul(40503) & 0xffffff,
        }
    }

    fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
        let until = Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(Instant::now() < until, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[test]
    fn every_encoding_in_every_pixel_format_shows_the_surface() {
        let display = Display::new(203, 117);
        paint(&display, Rect::new(0, 0, 203, 117), picture);
        let (server, _) = start(&display, config());
        let encodings = [
            encoding::RAW,
            encoding::HEXTILE,
            encoding::ZLIB,
            encoding::ZRLE,
            encoding::TIGHT,
        ];
        let formats = [rgb888_le(), rgb888_be(), rgb565(), rgb332(), bgr888_high()];
        for (n, &enc) in encodings.iter().enumerate() {
            for (m, format) in formats.iter().enumerate() {
                let what = format!("encoding {enc}, format {format:?}");
                let mut client = connect(&server);
                client.set_pixel_format(*format);
                client.set_encodings(&[enc, encoding::DESKTOP_SIZE]);
                client.request(false);
                let rects = client.read_update().unwrap();
                assert!(rects.iter().all(|r| r.encoding == enc), "{what}");
                assert_eq!(client.fb, client.expected(&display), "full: {what}");

                // Partial updates: two small changes, one straddling blocks.
                let seed = (n * 10 + m) as u32;
                paint(&display, Rect::new(17, 9, 30, 20), |x, y| {
                    picture(x + seed, y) ^ 0x00ff00
                });
                paint(&display, Rect::new(150, 100, 53, 17), |x, y| {
                    0x010101 * ((x + y + seed) % 3)
                });
                client.request(true);
                let rects = client.read_update().unwrap();
                let area: u32 = rects
                    .iter()
                    .map(|r| u32::from(r.width) * u32::from(r.height))
                    .sum();
                assert!(area < 203 * 117 / 2, "only the changes are sent: {what}");
                assert_eq!(client.fb, client.expected(&display), "partial: {what}");

                // A new resolution: DesktopSize, then everything.
                let (w, h) = if display.with_surface(|s| s.width) == 203 {
                    (260, 131)
                } else {
                    (203, 117)
                };
                display.resize(w, h);
                paint(&display, Rect::new(0, 0, w, h), |x, y| picture(y, x + seed));
                client.request(true);
                let rects = client.read_update().unwrap();
                assert_eq!(rects[0].encoding, encoding::DESKTOP_SIZE, "{what}");
                assert_eq!((client.width, client.height), (w as usize, h as usize));
                assert_eq!(client.fb, client.expected(&display), "resized: {what}");
            }
        }
    }

    #[test]
    fn nothing_changed_means_no_update_until_something_does() {
        let display = Display::new(64, 64);
        let (server, _) = start(&display, config());
        let mut client = connect(&server);
        client.request(false);
        client.read_update().unwrap();
        client.request(true);
        // The update waits for the change; draw it from another thread.
        let d = display.clone();
        let painter = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(100));
            paint(&d, Rect::new(3, 3, 2, 2), |_, _| 0xabcdef);
        });
        let rects = client.read_update().unwrap();
        painter.join().unwrap();
        assert_eq!(rects.len(), 1);
        assert_eq!(client.fb, client.expected(&display));
        // A non-incremental request is answered even with nothing new.
        client.request(false);
        assert!(!client.read_update().unwrap().is_empty());
    }

    #[test]
    fn handshakes_of_every_version_reach_server_init() {
        let display = Display::new(32, 16);
        let (server, _) = start(&display, config());
        for version in [Version::V3_3, Version::V3_7, Version::V3_8] {
            let mut client = TestClient::tcp(server.tcp_addr().unwrap());
            assert_eq!(
                client.handshake(version, None, true).unwrap(),
                Outcome::Connected
            );
            assert_eq!(client.name, "test-vm");
            assert_eq!((client.width, client.height), (32, 16));
            client.request(false);
            client.read_update().unwrap();
            assert_eq!(client.fb, client.expected(&display));
        }
    }

    #[test]
    fn vnc_authentication_admits_the_right_password_only() {
        let display = Display::new(32, 16);
        let (server, _) = start(
            &display,
            VncConfig {
                password: Some("s3cret".into()),
                ..config()
            },
        );
        for version in [Version::V3_3, Version::V3_7, Version::V3_8] {
            let mut client = TestClient::tcp(server.tcp_addr().unwrap());
            assert_eq!(
                client.handshake(version, Some("s3cret"), true).unwrap(),
                Outcome::Connected,
                "{version:?}"
            );
            let mut client = TestClient::tcp(server.tcp_addr().unwrap());
            let reason = match version {
                Version::V3_8 => "authentication failed",
                _ => "", // 3.3 and 3.7 carry no reason
            };
            assert_eq!(
                client.handshake(version, Some("guess"), true).unwrap(),
                Outcome::Refused(reason.into()),
                "{version:?}"
            );
            assert!(client.is_closed());
        }
        // A client that picks security None when VNC auth is offered.
        let mut stream = TcpStream::connect(server.tcp_addr().unwrap()).unwrap();
        let mut buf = [0u8; 12];
        stream.read_exact(&mut buf).unwrap();
        stream.write_all(b"RFB 003.008\n").unwrap();
        let mut offer = [0u8; 2];
        stream.read_exact(&mut offer).unwrap();
        assert_eq!(offer, [1, security::VNC_AUTH]);
        stream.write_all(&[security::NONE]).unwrap();
        let mut result = [0u8; 4];
        stream.read_exact(&mut result).unwrap();
        assert_eq!(result, [0, 0, 0, 1], "SecurityResult failed");
    }

    #[test]
    fn wrong_passwords_are_answered_ever_more_slowly() {
        let display = Display::new(8, 8);
        let (server, _) = start(
            &display,
            VncConfig {
                password: Some("right".into()),
                ..config()
            },
        );
        let mut elapsed = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            let mut client = TestClient::tcp(server.tcp_addr().unwrap());
            let outcome = client.handshake(Version::V3_8, Some("wrong"), true);
            assert!(matches!(outcome.unwrap(), Outcome::Refused(_)));
            elapsed.push(started.elapsed());
        }
        assert!(elapsed[0] >= Duration::from_millis(100), "{elapsed:?}");
        assert!(elapsed[1] >= Duration::from_millis(200), "{elapsed:?}");
        assert!(elapsed[2] >= Duration::from_millis(400), "{elapsed:?}");
        // The right password still gets in at once, and wipes the slate.
        let mut client = TestClient::tcp(server.tcp_addr().unwrap());
        let started = Instant::now();
        assert_eq!(
            client
                .handshake(Version::V3_8, Some("right"), true)
                .unwrap(),
            Outcome::Connected
        );
        assert!(started.elapsed() < Duration::from_millis(400));
    }

    #[test]
    fn handshakes_in_progress_are_capped() {
        let display = Display::new(8, 8);
        let (server, _) = start(&display, config());
        let addr = server.tcp_addr().unwrap();
        let mut idle: Vec<TcpStream> = (0..auth::MAX_HANDSHAKES)
            .map(|_| {
                let mut s = TcpStream::connect(addr).unwrap();
                let mut version = [0u8; 12];
                s.read_exact(&mut version).unwrap();
                s
            })
            .collect();
        let mut refused = TcpStream::connect(addr).unwrap();
        refused
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = [0u8; 12];
        assert_eq!(refused.read(&mut buf).unwrap_or(0), 0, "closed at once");
        // One idle handshake leaves: once the server notices, a slot is free.
        idle.pop();
        let mut admitted = false;
        for _ in 0..100 {
            let mut client = TestClient::tcp(addr);
            if client.handshake(Version::V3_8, None, true).is_ok() {
                admitted = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(admitted);
    }

    #[test]
    fn an_exclusive_client_disconnects_the_others() {
        let display = Display::new(16, 16);
        let (server, _) = start(&display, config());
        let mut a = connect(&server);
        let mut b = connect(&server);
        wait_until("two clients", || server.client_count() == 2);
        // Shared clients coexist: both are served.
        for c in [&mut a, &mut b] {
            c.request(false);
            c.read_update().unwrap();
        }
        let mut exclusive = TestClient::tcp(server.tcp_addr().unwrap());
        assert_eq!(
            exclusive.handshake(Version::V3_8, None, false).unwrap(),
            Outcome::Connected
        );
        assert!(a.is_closed());
        assert!(b.is_closed());
        exclusive.request(false);
        exclusive.read_update().unwrap();
        wait_until("one client", || server.client_count() == 1);
    }

    #[test]
    fn malformed_or_truncated_messages_end_only_their_client() {
        let display = Display::new(40, 30);
        paint(&display, Rect::new(0, 0, 40, 30), picture);
        let (server, _) = start(&display, config());
        let mut good = connect(&server);
        let hostile: [&[u8]; 5] = [
            &[99],           // unknown message type
            &[255, 9, 0, 0], // unknown QEMU sub-message
            &[
                0, 0, 0, 0, 24, 24, 0, 1, 0, 255, 0, 255, 0, 255, 16, 8, 0, 0, 0, 0,
            ], // 24 bpp
            &[0, 0, 0, 0, 8, 8, 0, 0, 0, 7, 0, 7, 0, 3, 5, 2, 0, 0, 0, 0], // colour map
            &[2, 0, 0xff, 0xff, 0, 0, 0], // SetEncodings cut short
        ];
        for bytes in hostile {
            let mut bad = connect(&server);
            bad.send_raw(bytes).unwrap();
            if bytes[0] == 2 {
                // Truncated: the client stops sending mid-message.
                bad.shutdown();
            }
            assert!(bad.is_closed(), "{bytes:?}");
            // The well-behaved client is still served.
            paint(&display, Rect::new(1, 1, 5, 5), |x, y| x * y * 1000);
            good.request(true);
            good.read_update().unwrap();
            assert_eq!(good.fb, good.expected(&display));
        }
        // Garbage instead of a version string.
        let mut stream = TcpStream::connect(server.tcp_addr().unwrap()).unwrap();
        stream.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
        let mut rest = Vec::new();
        stream.read_to_end(&mut rest).unwrap();
        assert_eq!(rest, b"RFB 003.008\n", "version, then closed");
        wait_until("one client", || server.client_count() == 1);
    }

    #[test]
    fn keys_and_pointer_reach_the_input_sink() {
        let display = Display::new(100, 50);
        let (server, input) = start(&display, config());
        let mut client = connect(&server);
        client.set_encodings(&[encoding::RAW, encoding::QEMU_EXTENDED_KEY_EVENT]);
        client.request(false);
        client.read_update().unwrap();
        assert!(
            client.extended_keys,
            "the server acknowledged QEMU key events"
        );
        for message in [
            ClientMessage::KeyEvent {
                down: true,
                keysym: u32::from(b'a'),
            },
            ClientMessage::KeyEvent {
                down: false,
                keysym: u32::from(b'a'),
            },
            ClientMessage::KeyEvent {
                down: true,
                keysym: 0xff52, // Up
            },
            ClientMessage::KeyEvent {
                down: false,
                keysym: 0xff52,
            },
            // A French keyboard's 'a' is the US 'q' key: the qnum wins.
            ClientMessage::QemuExtendedKeyEvent {
                down: true,
                keysym: u32::from(b'a'),
                qnum: 0x10,
            },
            ClientMessage::QemuExtendedKeyEvent {
                down: false,
                keysym: u32::from(b'a'),
                qnum: 0x10,
            },
            // No qnum: the keysym table decides.
            ClientMessage::QemuExtendedKeyEvent {
                down: true,
                keysym: 0xffe3,
                qnum: 0,
            },
            ClientMessage::PointerEvent {
                buttons: 1,
                x: 10,
                y: 20,
            },
            ClientMessage::PointerEvent {
                buttons: 0,
                x: 5000,
                y: 5000,
            },
            // A symbol no US key types is dropped.
            ClientMessage::KeyEvent {
                down: true,
                keysym: 0x20ac,
            },
        ] {
            client.send(&message).unwrap();
        }
        // Messages are handled in order: once this is answered, all were.
        client.request(false);
        client.read_update().unwrap();
        assert_eq!(
            input.take(),
            [
                Event::Key(0x1e, true),
                Event::Key(0x1e, false),
                Event::Key(0xc8, true),
                Event::Key(0xc8, false),
                Event::Key(0x10, true),
                Event::Key(0x10, false),
                Event::Key(0x1d, true),
                Event::Pointer(10, 20, 1),
                Event::Pointer(99, 49, 0),
            ]
        );
        // Keys still down when a client leaves are released.
        client.shutdown();
        drop(client);
        wait_until("the held key's release", || {
            input.0.lock().unwrap().contains(&Event::Key(0x1d, false))
        });
    }

    #[test]
    fn led_state_and_desktop_layout_are_reported() {
        let display = Display::new(64, 48);
        display.set_leds(0b010); // Num Lock
        let (server, _) = start(&display, config());
        let mut client = connect(&server);
        client.set_encodings(&[
            encoding::ZRLE,
            encoding::QEMU_LED_STATE,
            encoding::EXTENDED_DESKTOP_SIZE,
        ]);
        client.request(false);
        client.read_update().unwrap();
        assert_eq!(client.leds, Some(0b010));
        assert_eq!(client.layouts, [(0, 0, 64, 48)]);
        display.set_leds(0b110); // and Caps Lock
        client.request(true);
        client.read_update().unwrap();
        assert_eq!(client.leds, Some(0b110));
        // The guest owns the resolution: a resize request is refused.
        client
            .send(&ClientMessage::SetDesktopSize {
                width: 800,
                height: 600,
                screens: vec![Screen {
                    id: 0,
                    x: 0,
                    y: 0,
                    width: 800,
                    height: 600,
                    flags: 0,
                }],
            })
            .unwrap();
        client.request(true);
        client.read_update().unwrap();
        assert_eq!(client.layouts.last(), Some(&(1, 1, 64, 48)));
        // The guest changes mode: the layout follows.
        display.resize(80, 40);
        client.request(true);
        client.read_update().unwrap();
        assert_eq!(client.layouts.last(), Some(&(0, 0, 80, 40)));
        assert_eq!(client.fb, client.expected(&display));
    }

    #[test]
    fn a_client_that_stops_reading_is_dropped() {
        let display = Display::new(1024, 768);
        paint(&display, Rect::new(0, 0, 1024, 768), picture);
        let (server, _) = start(
            &display,
            VncConfig {
                write_timeout: Duration::from_millis(300),
                ..config()
            },
        );
        let mut stuck = connect(&server);
        let mut good = connect(&server);
        wait_until("two clients", || server.client_count() == 2);
        // Raw full-screen updates (3 MiB each), asked for and never read.
        for _ in 0..20 {
            stuck.request(false);
        }
        wait_until("the stuck client's removal", || server.client_count() == 1);
        good.request(false);
        good.read_update().unwrap();
        assert_eq!(good.fb, good.expected(&display));
        drop(stuck);
    }

    fn tls_config(tls: &Arc<rustls::ServerConfig>) -> VncConfig {
        VncConfig {
            tls: Some(tls.clone()),
            ..config()
        }
    }

    #[test]
    fn vencrypt_x509none_and_x509vnc_serve_the_screen_over_tls() {
        let (_dir, tls, roots) = test_tls();
        let display = Display::new(203, 117);
        paint(&display, Rect::new(0, 0, 203, 117), picture);
        let (server, _) = start(&display, tls_config(&tls));
        let mut client = TestClient::tcp(server.tcp_addr().unwrap());
        let outcome = client.vencrypt(&roots, vencrypt::X509_NONE, None);
        assert_eq!(outcome.unwrap(), Outcome::Connected);
        for enc in [encoding::RAW, encoding::TIGHT, encoding::ZRLE] {
            client.set_encodings(&[enc]);
            client.request(false);
            client.read_update().unwrap();
            assert_eq!(client.fb, client.expected(&display), "encoding {enc}");
        }
        // X509Vnc is offered instead once there is a password.
        let mut client = TestClient::tcp(server.tcp_addr().unwrap());
        let outcome = client.vencrypt(&roots, vencrypt::X509_VNC, None).unwrap();
        assert_eq!(outcome, Outcome::Refused("sub-type 261 refused".into()));
        drop(server);

        let (server, _) = start(
            &display,
            VncConfig {
                password: Some("s3cret".into()),
                ..tls_config(&tls)
            },
        );
        let mut client = TestClient::tcp(server.tcp_addr().unwrap());
        let outcome = client.vencrypt(&roots, vencrypt::X509_VNC, Some("s3cret"));
        assert_eq!(outcome.unwrap(), Outcome::Connected);
        client.request(false);
        client.read_update().unwrap();
        assert_eq!(client.fb, client.expected(&display));
        let mut wrong = TestClient::tcp(server.tcp_addr().unwrap());
        let outcome = wrong.vencrypt(&roots, vencrypt::X509_VNC, Some("guess"));
        assert_eq!(
            outcome.unwrap(),
            Outcome::Refused("authentication failed".into())
        );
    }

    #[test]
    fn with_tls_required_other_security_types_are_refused_with_a_reason() {
        let (_dir, tls, _) = test_tls();
        let display = Display::new(32, 32);
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("vm.vnc");
        let (server, _) = start(
            &display,
            VncConfig {
                unix: Some(socket.clone()),
                password: Some("s3cret".into()),
                ..tls_config(&tls)
            },
        );
        // 3.3: the server's pick is "none possible", with the reason; 3.8:
        // the client chose VNC Authentication or None, and the
        // SecurityResult says why not. (3.7 has no reason to carry.)
        for version in [Version::V3_3, Version::V3_8] {
            let mut client = TestClient::tcp(server.tcp_addr().unwrap());
            let outcome = client.handshake(version, Some("s3cret"), true).unwrap();
            assert_eq!(
                outcome,
                Outcome::Refused(TLS_REQUIRED.into()),
                "{version:?}"
            );
        }
        // The owner-only unix socket stays plain (the window's viewer).
        let mut client = TestClient::unix(&socket);
        let outcome = client.handshake(Version::V3_8, Some("s3cret"), true);
        assert_eq!(outcome.unwrap(), Outcome::Connected);
    }

    #[test]
    fn tls_garbage_and_a_tls_client_that_stops_reading_do_not_stall_others() {
        let (_dir, tls, roots) = test_tls();
        let display = Display::new(1024, 768);
        paint(&display, Rect::new(0, 0, 1024, 768), picture);
        let (server, _) = start(
            &display,
            VncConfig {
                write_timeout: Duration::from_millis(300),
                ..tls_config(&tls)
            },
        );
        // Garbage where the ClientHello belongs: that client is dropped.
        let mut garbage = TcpStream::connect(server.tcp_addr().unwrap()).unwrap();
        let mut version = [0u8; 12];
        garbage.read_exact(&mut version).unwrap();
        garbage.write_all(b"RFB 003.008\n").unwrap();
        let mut offer = [0u8; 2];
        garbage.read_exact(&mut offer).unwrap();
        garbage.write_all(&[security::VENCRYPT, 0, 2]).unwrap();
        // Version 0.2, accepted, one sub-type: X509None (260).
        let mut status = [0u8; 8];
        garbage.read_exact(&mut status).unwrap();
        assert_eq!(status, [0, 2, 0, 1, 0, 0, 1, 4]);
        garbage
            .write_all(&vencrypt::X509_NONE.to_be_bytes())
            .unwrap();
        garbage
            .write_all(&[0x16, 3, 1, 0xff, 0xff, 1, 2, 3])
            .unwrap();
        garbage.write_all(&[0xa5; 4096]).unwrap();
        let mut rest = Vec::new();
        let _ = garbage.read_to_end(&mut rest);
        // The ack and at most a TLS alert came back; then the server hung up.
        assert_eq!(rest.first(), Some(&1));
        assert!(rest.len() < 64, "{rest:?}");

        let mut stuck = TestClient::tcp(server.tcp_addr().unwrap());
        let mut good = TestClient::tcp(server.tcp_addr().unwrap());
        for client in [&mut stuck, &mut good] {
            let outcome = client.vencrypt(&roots, vencrypt::X509_NONE, None);
            assert_eq!(outcome.unwrap(), Outcome::Connected);
        }
        wait_until("two clients", || server.client_count() == 2);
        // Raw full-screen updates (3 MiB each), asked for and never read.
        for _ in 0..20 {
            stuck.request(false);
        }
        wait_until("the stuck client's removal", || server.client_count() == 1);
        good.request(false);
        good.read_update().unwrap();
        assert_eq!(good.fb, good.expected(&display));
        drop(stuck);
    }

    #[test]
    fn unix_socket_listener_serves_and_is_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run/vm.vnc");
        // A stale socket from a VM that died is replaced.
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        drop(UnixListener::bind(&path).unwrap());
        let display = Display::new(48, 24);
        paint(&display, Rect::new(0, 0, 48, 24), picture);
        let (server, _) = start(
            &display,
            VncConfig {
                unix: Some(path.clone()),
                ..VncConfig::new("unix-vm")
            },
        );
        assert_eq!(server.tcp_port(), None);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // A second server cannot take a live socket.
        let taken = VncServer::start(
            display.clone(),
            Arc::new(FakeInput::default()),
            VncConfig {
                unix: Some(path.clone()),
                ..VncConfig::new("other")
            },
        );
        assert!(matches!(taken, Err(VncError::UnixInUse(_))));
        let mut client = TestClient::unix(&path);
        assert_eq!(
            client.handshake(Version::V3_8, None, true).unwrap(),
            Outcome::Connected
        );
        client.set_encodings(&[encoding::TIGHT]);
        client.request(false);
        client.read_update().unwrap();
        assert_eq!(client.fb, client.expected(&display));
        drop(server);
        assert!(client.is_closed());
        assert!(!path.exists());
    }

    #[test]
    fn autoport_takes_the_first_free_port_from_5900() {
        let display = Display::new(8, 8);
        let auto = VncConfig {
            tcp: Some((IpAddr::V4(Ipv4Addr::LOCALHOST), None)),
            ..VncConfig::new("a")
        };
        let (first, _) = start(&display, auto.clone());
        let (second, _) = start(&display, auto);
        let (p1, p2) = (first.tcp_port().unwrap(), second.tcp_port().unwrap());
        assert!(p1 >= AUTOPORT_BASE && p2 >= AUTOPORT_BASE && p1 != p2);
        // A fixed port that is taken is an error, not a silent move.
        let fixed = VncConfig {
            tcp: Some((IpAddr::V4(Ipv4Addr::LOCALHOST), Some(p1))),
            ..VncConfig::new("b")
        };
        let taken = VncServer::start(display.clone(), Arc::new(FakeInput::default()), fixed);
        assert!(matches!(taken, Err(VncError::Bind { .. })));
        let addr = first.tcp_addr().unwrap();
        drop(first);
        assert!(TcpStream::connect(addr).is_err(), "stopped on drop");
    }

    #[test]
    fn vnc_display_syntax_is_qemus() {
        let localhost = IpAddr::V4(Ipv4Addr::LOCALHOST);
        assert_eq!(parse_vnc_display("127.0.0.1:0"), Ok((localhost, 5900)));
        assert_eq!(parse_vnc_display(":1"), Ok((localhost, 5901)));
        assert_eq!(
            parse_vnc_display("0.0.0.0:3"),
            Ok((IpAddr::V4(Ipv4Addr::UNSPECIFIED), 5903))
        );
        assert_eq!(
            parse_vnc_display("[::1]:2"),
            Ok(("::1".parse().unwrap(), 5902))
        );
        assert!(parse_vnc_display("5900").is_err());
        assert!(parse_vnc_display("host:x").is_err());
        assert!(parse_vnc_display("nohost.example:1").is_err());
        assert!(parse_vnc_display(":70000").is_err());
    }

    /// A real viewer's program, or `None` (and a note) when it is not
    /// installed: scripts/setup.sh installs gvncviewer and vncdotool.
    fn tool(name: &str) -> Option<std::path::PathBuf> {
        let found = std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|dir| dir.join(name))
                .find(|p| p.is_file())
        });
        if found.is_none() {
            missing(&format!("{name} is not installed"));
        }
        found
    }

    /// A real client is missing: a failure where the setup step installed
    /// them all (`VIREO_REQUIRE_TOOLS=1`, as `make test` sets), else a
    /// visible skip.
    fn missing(what: &str) {
        if std::env::var("VIREO_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("{what}, and VIREO_REQUIRE_TOOLS=1; run scripts/setup.sh test");
        }
        eprintln!("SKIPPED: {what}; run scripts/setup.sh test");
    }

    /// Runs a viewer's command, killing it if it hangs.
    fn run_tool(command: &mut std::process::Command) -> std::process::Output {
        let child = command
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let pid = child.id();
        let watchdog = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(60));
            // SAFETY: plain kill(2) of the child we started; harmless if gone.
            unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        });
        let output = child.wait_with_output().unwrap();
        drop(watchdog);
        output
    }

    fn assert_png_shows(path: &Path, display: &Display) {
        let png = image::open(path).unwrap().to_rgb8();
        display.with_surface(|s| {
            assert_eq!((png.width(), png.height()), (s.width, s.height));
            for (x, y, p) in png.enumerate_pixels() {
                let rgb = (u32::from(p[0]) << 16) | (u32::from(p[1]) << 8) | u32::from(p[2]);
                assert_eq!(rgb, s.pixel(x, y) & 0xffffff, "pixel ({x}, {y})");
            }
        });
    }

    /// A display with a picture behind an autoport listener (the tools
    /// take a display number, 5900 + N).
    fn real_client_server() -> (Arc<Display>, VncServer, Arc<FakeInput>, u16) {
        // Not a multiple of 16 or 64: the viewers decode partial tiles too.
        let display = Display::new(331, 203);
        paint(&display, Rect::new(0, 0, 331, 203), picture);
        let (server, input) = start(
            &display,
            VncConfig {
                tcp: Some((IpAddr::V4(Ipv4Addr::LOCALHOST), None)),
                ..VncConfig::new("real-client")
            },
        );
        let port = server.tcp_port().unwrap();
        (display, server, input, port)
    }

    #[test]
    fn gvnccapture_captures_the_surface() {
        let Some(gvnccapture) = tool("gvnccapture") else {
            return;
        };
        let (display, _server, _, port) = real_client_server();
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("capture.png");
        let output = run_tool(
            std::process::Command::new(gvnccapture)
                .arg(format!("127.0.0.1:{}", port - AUTOPORT_BASE))
                .arg(&png),
        );
        assert!(output.status.success(), "{output:?}");
        assert_png_shows(&png, &display);
    }

    #[test]
    fn vncdotool_captures_the_surface_and_types() {
        let Some(vncdo) = tool("vncdo") else {
            return;
        };
        let (display, _server, input, port) = real_client_server();
        let dir = tempfile::tempdir().unwrap();
        let png = dir.path().join("capture.png");
        let output = run_tool(
            std::process::Command::new(vncdo)
                .args(["-s", &format!("127.0.0.1::{port}"), "-t", "30"])
                .args(["key", "a", "move", "12", "34", "click", "1", "capture"])
                .arg(&png),
        );
        assert!(output.status.success(), "{output:?}");
        assert_png_shows(&png, &display);
        let events = input.take();
        assert!(events.contains(&Event::Key(0x1e, true)), "{events:?}");
        assert!(events.contains(&Event::Key(0x1e, false)), "{events:?}");
        assert!(events.contains(&Event::Pointer(12, 34, 1)), "{events:?}");
    }

    /// vncdotool's own decoders, driven from Python: its Hextile and ZRLE
    /// in 32-bit and 16-bit (565) formats, as a second opinion on ours.
    const VNCDOTOOL_CAPTURE: &str = r#"
import sys
from vncdotool import api, client
server, out, encoding, fmt = sys.argv[1:5]
client.VNCDoToolClient.encoding = int(encoding)
if fmt == "565":
    def set_image_mode(self):
        self.setPixelFormat(client.BGR16)
        self._image_mode = "BGR;16"
    client.VNCDoToolClient.setImageMode = set_image_mode
c = api.connect(server, timeout=30)
c.captureScreen(out)
c.disconnect()
api.shutdown()
"#;

    #[test]
    fn vncdotool_decodes_hextile_and_zrle_in_32_and_16_bits() {
        let Some(python) = tool("python3") else {
            return;
        };
        let probe = run_tool(std::process::Command::new(&python).args(["-c", "import vncdotool"]));
        if !probe.status.success() {
            missing("the vncdotool Python module is not installed");
            return;
        }
        let (display, _server, _, port) = real_client_server();
        let dir = tempfile::tempdir().unwrap();
        for enc in [encoding::RAW, encoding::HEXTILE, encoding::ZRLE] {
            for format in ["32", "565"] {
                if enc == encoding::ZRLE && format == "565" {
                    // vncdotool's ZRLE knows only 3-byte CPIXELs.
                    continue;
                }
                let png = dir.path().join(format!("{enc}-{format}.png"));
                let output = run_tool(
                    std::process::Command::new(&python)
                        .args(["-c", VNCDOTOOL_CAPTURE])
                        .arg(format!("127.0.0.1::{port}"))
                        .arg(&png)
                        .arg(enc.to_string())
                        .arg(format),
                );
                assert!(output.status.success(), "{enc} {format}: {output:?}");
                if format == "32" {
                    assert_png_shows(&png, &display);
                    continue;
                }
                // 565: compare the channels the client received.
                let conv = Converter::new(rgb565());
                let captured = image::open(&png).unwrap().to_rgb8();
                display.with_surface(|s| {
                    for (x, y, p) in captured.enumerate_pixels() {
                        let v = conv.convert(s.pixel(x, y));
                        let sent = ((v >> 11) & 31, (v >> 5) & 63, v & 31);
                        let got = (
                            u32::from(p[0]) >> 3,
                            u32::from(p[1]) >> 2,
                            u32::from(p[2]) >> 3,
                        );
                        assert_eq!(got, sent, "{enc} 565 pixel ({x}, {y})");
                    }
                });
            }
        }
    }

    /// A minimal RFB client around noVNC's own decoders and receive queue
    /// (Debian's `novnc` package): it asks for one full update in noVNC's
    /// pixel format and writes the framebuffer as a PPM.
    const NOVNC_CAPTURE: &str = r#"
import "./window.js"; // noVNC's logging looks at window.console
import net from "node:net";
import fs from "node:fs";
import Websock from "./core/websock.js";
import RawDecoder from "./core/decoders/raw.js";
import HextileDecoder from "./core/decoders/hextile.js";
import TightDecoder from "./core/decoders/tight.js";

const [port, encoding, out, ...regions] = process.argv.slice(2);
// After the full update, one update per region "x,y,w,h": small areas
// make the server pick Tight's fill and palette modes.
const requests = regions.map((r) => r.split(",").map(Number));
const decoders = { 0: new RawDecoder(), 5: new HextileDecoder(), 7: new TightDecoder() };
const ws = new Websock();
ws.init();
let width = 0, height = 0, fb = null, state = "version", rects = 0, rect = null;
const display = {
    fillRect(x, y, w, h, color) {
        for (let yy = y; yy < y + h; yy++)
            for (let xx = x; xx < x + w; xx++)
                for (let c = 0; c < 3; c++) fb[(yy * width + xx) * 3 + c] = color[c];
    },
    blitImage(x, y, w, h, arr, offset) {
        for (let i = 0; i < w * h; i++) {
            const xx = x + (i % w), yy = y + Math.floor(i / w);
            for (let c = 0; c < 3; c++) fb[(yy * width + xx) * 3 + c] = arr[offset + i * 4 + c];
        }
    },
    imageRect() { throw new Error("no JPEG or PNG expected"); },
};
const socket = net.connect(Number(port), "127.0.0.1");
const send = (bytes) => socket.write(Buffer.from(bytes));
const be16 = (v) => [v >> 8, v & 255];
function handle() {
    for (;;) {
        if (state === "version") {
            if (ws.rQwait("version", 12)) return;
            ws.rQskipBytes(12);
            send(Buffer.from("RFB 003.008\n"));
            state = "types";
        } else if (state === "types") {
            if (ws.rQwait("types", 1)) return;
            const n = ws.rQpeek8();
            if (ws.rQwait("types", 1 + n)) return;
            ws.rQskipBytes(1 + n);
            send([1]);
            state = "result";
        } else if (state === "result") {
            if (ws.rQwait("result", 4)) return;
            if (ws.rQshift32() !== 0) throw new Error("refused");
            send([1]);
            state = "init";
        } else if (state === "init") {
            if (ws.rQwait("init", 24)) return;
            width = ws.rQshift16();
            height = ws.rQshift16();
            ws.rQskipBytes(16);
            const len = ws.rQshift32();
            if (ws.rQwait("name", len, 24)) return;
            ws.rQskipBytes(len);
            fb = new Uint8Array(width * height * 3);
            // noVNC's format: 32 bpp, depth 24, little-endian, R at 0, G at 8, B at 16.
            send([0, 0, 0, 0, 32, 24, 0, 1, 0, 255, 0, 255, 0, 255, 0, 8, 16, 0, 0, 0]);
            const e = Number(encoding);
            send([2, 0, 0, 1, (e >>> 24) & 255, (e >>> 16) & 255, (e >>> 8) & 255, e & 255]);
            send([3, 0, 0, 0, 0, 0, ...be16(width), ...be16(height)]);
            state = "update";
        } else if (state === "update") {
            if (ws.rQwait("update", 4)) return;
            if (ws.rQshift8() !== 0) throw new Error("not an update");
            ws.rQskipBytes(1);
            rects = ws.rQshift16();
            state = "rects";
        } else {
            if (rects === 0) {
                const next = requests.shift();
                if (next) {
                    send([3, 0, ...next.flatMap(be16)]);
                    state = "update";
                    continue;
                }
                fs.writeFileSync(out, Buffer.concat([Buffer.from(`P6\n${width} ${height}\n255\n`), Buffer.from(fb)]));
                socket.destroy();
                return;
            }
            if (rect === null) {
                if (ws.rQwait("rect", 12)) return;
                rect = { x: ws.rQshift16(), y: ws.rQshift16(), w: ws.rQshift16(), h: ws.rQshift16(), e: ws.rQshift32() };
            }
            const decoder = decoders[rect.e];
            if (!decoder) throw new Error(`encoding ${rect.e}`);
            if (!decoder.decodeRect(rect.x, rect.y, rect.w, rect.h, ws, display, 24)) return;
            rect = null;
            rects--;
        }
    }
}
ws.on("message", handle);
socket.on("data", (chunk) => {
    ws._recvMessage({ data: chunk.buffer.slice(chunk.byteOffset, chunk.byteOffset + chunk.length) });
});
setTimeout(() => { console.error("timed out"); process.exit(2); }, 30000).unref();
"#;

    #[test]
    fn novnc_decodes_tight_hextile_and_raw() {
        let novnc = std::env::var_os("VIREO_NOVNC_DIR")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| "/usr/share/novnc".into());
        if !novnc.join("core/decoders/tight.js").is_file() {
            missing("noVNC is not installed");
            return;
        }
        let Some(node) = tool("node") else {
            return;
        };
        // noVNC's files are ES modules; node needs a package.json saying so.
        let dir = tempfile::tempdir().unwrap();
        for sub in ["core", "vendor"] {
            let copied = run_tool(
                std::process::Command::new("cp")
                    .arg("-r")
                    .arg(novnc.join(sub))
                    .arg(dir.path()),
            );
            assert!(copied.status.success(), "{copied:?}");
        }
        std::fs::write(dir.path().join("package.json"), r#"{"type": "module"}"#).unwrap();
        std::fs::write(dir.path().join("window.js"), "globalThis.window = globalThis;\nglobalThis.WebSocket = {};\nglobalThis.DataChannel = {};\n").unwrap();
        let script = dir.path().join("capture.js");
        std::fs::write(&script, NOVNC_CAPTURE).unwrap();
        let (display, _server, _, port) = real_client_server();
        for enc in [encoding::TIGHT, encoding::HEXTILE, encoding::RAW] {
            let ppm = dir.path().join(format!("{enc}.ppm"));
            let output = run_tool(
                std::process::Command::new(&node)
                    .arg(&script)
                    .arg(port.to_string())
                    .arg(enc.to_string())
                    .arg(&ppm)
                    // Inside the picture's flat, two-colour and five-colour columns.
                    .args(["0,0,32,203", "48,0,32,203", "128,0,32,203"]),
            );
            assert!(output.status.success(), "{enc}: {output:?}");
            let bytes = std::fs::read(&ppm).unwrap();
            let header = format!(
                "P6\n{} {}\n255\n",
                display.with_surface(|s| s.width),
                display.with_surface(|s| s.height)
            );
            assert!(bytes.starts_with(header.as_bytes()), "{enc}");
            let rgb = &bytes[header.len()..];
            display.with_surface(|s| {
                for (i, (&want, got)) in s.pixels.iter().zip(rgb.chunks_exact(3)).enumerate() {
                    let got =
                        (u32::from(got[0]) << 16) | (u32::from(got[1]) << 8) | u32::from(got[2]);
                    assert_eq!(got, want & 0xffffff, "encoding {enc}, pixel {i}");
                }
            });
        }
    }
}
