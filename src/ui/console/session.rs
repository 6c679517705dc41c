//! The VNC session behind a console view, off the GTK thread.
//!
//! One std thread per connected view runs a current-thread tokio runtime
//! with vnc-rs on the VM's unix socket (`RunFiles::vnc()`): security None,
//! 32-bit little-endian BGRX pixels (`gdk::MemoryFormat::B8g8r8x8`, so the
//! widget uploads them as they come), encodings Raw first (on a local
//! socket copying is cheaper than compressing), then ZRLE, and DesktopSize
//! so the guest's mode changes reach the widget.
//!
//! ExtendedDesktopSize is not announced: the guest alone decides its
//! resolution (our server answers SetDesktopSize "prohibited"), and vnc-rs
//! rejects an update that carries an ExtendedDesktopSize rectangle together
//! with pixels, which is how a server sends a resize.
//!
//! Keys go as QEMU extended key events (the physical key's qnum plus the
//! keysym), which vnc-rs cannot send. The stream handed to vnc-rs is
//! therefore [`Ordered`]: its writes go, one whole message per write (vnc-rs
//! serialises each client message into one buffer and `write_all`s it), into
//! the same queue as the messages this module writes itself — keys, pointer
//! and update requests — so that one writer task puts them on the socket in
//! order. Our server accepts the extended key event without the client
//! announcing the -258 pseudo-encoding (src/vnc/client.rs), so the
//! announcement, which vnc-rs could not parse the answer to, is skipped.
//!
//! Decoded rectangles land in a [`Framebuffer`]; the damaged tiles go to
//! the GTK thread in one [`FrameBatch`] when the view has taken the previous
//! one, so a slow view gets fewer, larger batches and never a queue. When
//! the socket closes (the VM stopped) the state becomes Disconnected and the
//! session retries every half second until the view disconnects.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use vnc::{PixelFormat, VncConnector, VncEncoding, VncError, VncEvent};

use super::framebuffer::{FrameBatch, Framebuffer};
use crate::vnc::protocol::ClientMessage;

/// How long to wait between connection attempts.
const RETRY: Duration = Duration::from_millis(500);
/// The handshake must finish within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Rectangles that keep coming are handed over at least this often…
const MAX_BATCH_DELAY: Duration = Duration::from_millis(8);
/// …and a pause this long in the stream of rectangles ends a batch.
const IDLE: Duration = Duration::from_millis(1);
/// With nothing arriving, ask again this often (a server may drop requests).
const KEEPALIVE: Duration = Duration::from_secs(1);

/// What the console shows about its connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleState {
    Connecting,
    Connected,
    /// Not connected, and why (the VM stopped, the socket is missing…).
    Disconnected(String),
}

/// From the session to the view.
#[derive(Debug)]
pub enum Update {
    State(ConsoleState),
    Frame(FrameBatch),
}

/// From the view to the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Input {
    /// The pointer is at (x, y) in guest pixels with `buttons` held (RFB mask).
    Pointer { x: u16, y: u16, buttons: u8 },
    /// A key: its qnum (0 if unknown) and the keysym for the server's fallback.
    Key { down: bool, keysym: u32, qnum: u16 },
    /// Send the whole screen again.
    FullRefresh,
}

/// Why a session could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("cannot start the console thread")]
    Thread(#[source] io::Error),
}

/// Flow control between the session and the view: one batch in flight.
#[derive(Default)]
struct Gate {
    in_flight: AtomicBool,
    taken: Notify,
    /// Batches handed over, for the benchmark.
    handed: AtomicU64,
}

/// The view's end of a running session. Dropping it ends the session.
pub struct Session {
    input: async_channel::Sender<Input>,
    updates: async_channel::Receiver<Update>,
    gate: Arc<Gate>,
}

impl Session {
    /// Starts a session on the VNC unix socket at `path`.
    pub fn start(path: &Path) -> Result<Self, SessionError> {
        let (input_tx, input_rx) = async_channel::unbounded();
        let (update_tx, update_rx) = async_channel::unbounded();
        let gate = Arc::new(Gate::default());
        let session_gate = gate.clone();
        let path = path.to_path_buf();
        std::thread::Builder::new()
            .name("vnc-console".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let reason = format!("cannot start the console runtime: {e}");
                        let _ =
                            update_tx.try_send(Update::State(ConsoleState::Disconnected(reason)));
                        return;
                    }
                };
                runtime.block_on(run(path, input_rx, update_tx, session_gate));
            })
            .map_err(SessionError::Thread)?;
        Ok(Self {
            input: input_tx,
            updates: update_rx,
            gate,
        })
    }

    /// Queues input for the guest (dropped while disconnected).
    pub fn send(&self, input: Input) {
        let _ = self.input.try_send(input);
    }

    /// What the session reports; ends when the session does.
    pub fn updates(&self) -> async_channel::Receiver<Update> {
        self.updates.clone()
    }

    /// The view has taken the last batch: the next one may come.
    pub fn frame_taken(&self) {
        self.gate.in_flight.store(false, Ordering::Release);
        self.gate.taken.notify_one();
    }

    /// How many batches the session has handed over.
    pub fn batches_handed(&self) -> u64 {
        self.gate.handed.load(Ordering::Relaxed)
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        // Closing the input channel ends the session's loop; its thread
        // then drops the runtime, the socket and vnc-rs's tasks.
        self.input.close();
        self.updates.close();
        self.gate.taken.notify_one();
    }
}

/// Connects, serves, and reconnects until the view goes away.
async fn run(
    path: PathBuf,
    input: async_channel::Receiver<Input>,
    updates: async_channel::Sender<Update>,
    gate: Arc<Gate>,
) {
    let mut last: Option<ConsoleState> = None;
    let report = |state: ConsoleState, last: &mut Option<ConsoleState>| {
        if last.as_ref() != Some(&state) {
            let _ = updates.try_send(Update::State(state.clone()));
            *last = Some(state);
        }
    };
    report(ConsoleState::Connecting, &mut last);
    loop {
        let reason = match UnixStream::connect(&path).await {
            Err(e) => format!("cannot connect to {}: {e}", path.display()),
            Ok(stream) => match tokio::time::timeout(HANDSHAKE_TIMEOUT, connect(stream)).await {
                Err(_) => "the VNC handshake timed out".to_string(),
                Ok(Err(e)) => format!("VNC handshake failed: {e}"),
                Ok(Ok(connection)) => {
                    report(ConsoleState::Connected, &mut last);
                    match serve(connection, &input, &updates, &gate).await {
                        Ended::Stopped => return,
                        Ended::Lost(reason) => reason,
                    }
                }
            },
        };
        tracing::debug!(%reason, "console disconnected");
        report(ConsoleState::Disconnected(reason), &mut last);
        // Wait before retrying; input meanwhile has nowhere to go.
        let until = Instant::now() + RETRY;
        loop {
            match tokio::time::timeout_at(until, input.recv()).await {
                Err(_) => break,
                Ok(Ok(_)) => continue,
                Ok(Err(_)) => return,
            }
        }
        if updates.is_closed() {
            return;
        }
    }
}

/// The stream vnc-rs gets: reads straight from the socket, each write one
/// whole message queued for the writer task (see the module comment).
struct Ordered {
    read: OwnedReadHalf,
    out: mpsc::UnboundedSender<Vec<u8>>,
}

impl AsyncRead for Ordered {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.read).poll_read(cx, buf)
    }
}

impl AsyncWrite for Ordered {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Taking all of `buf` at once is what keeps vnc-rs's messages whole.
        match self.out.send(buf.to_vec()) {
            Ok(()) => Poll::Ready(Ok(buf.len())),
            Err(_) => Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

/// Puts queued messages on the socket in order; ends when every sender is
/// gone or the socket fails.
async fn write_messages(mut socket: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<Vec<u8>>) {
    while let Some(message) = queue.recv().await {
        if socket.write_all(&message).await.is_err() {
            return;
        }
    }
    let _ = socket.shutdown().await;
}

/// A connected client and our end of its ordered writer.
struct Connection {
    client: vnc::VncClient,
    out: mpsc::UnboundedSender<Vec<u8>>,
}

type NoAuth = std::future::Ready<Result<String, VncError>>;

async fn connect(stream: UnixStream) -> Result<Connection, VncError> {
    let (read, write) = stream.into_split();
    let (out, queue) = mpsc::unbounded_channel();
    tokio::spawn(write_messages(write, queue));
    let stream = Ordered {
        read,
        out: out.clone(),
    };
    let client = VncConnector::<_, NoAuth>::new(stream)
        .allow_shared(true)
        .set_pixel_format(PixelFormat::bgra())
        .add_encoding(VncEncoding::Raw)
        .add_encoding(VncEncoding::Zrle)
        .add_encoding(VncEncoding::DesktopSizePseudo)
        .build()?
        .try_start()
        .await?
        .finish()?;
    Ok(Connection { client, out })
}

/// RFC 6143 §7.5.3 FramebufferUpdateRequest for the whole screen.
fn update_request(incremental: bool, width: u32, height: u32) -> Vec<u8> {
    encode(ClientMessage::FramebufferUpdateRequest {
        incremental,
        x: 0,
        y: 0,
        width: width.min(u16::MAX.into()) as u16,
        height: height.min(u16::MAX.into()) as u16,
    })
}

/// One input event as its RFB message: RFC 6143 §7.5.5 PointerEvent, or
/// rfbproto's QEMU Extended Key Event.
fn input_message(input: Input, (width, height): (u32, u32)) -> Vec<u8> {
    match input {
        Input::Pointer { x, y, buttons } => encode(ClientMessage::PointerEvent { buttons, x, y }),
        Input::Key { down, keysym, qnum } => encode(ClientMessage::QemuExtendedKeyEvent {
            down,
            keysym,
            qnum: u32::from(qnum),
        }),
        Input::FullRefresh => update_request(false, width, height),
    }
}

/// A client message's bytes, as `vnc::protocol` (the server's own reader's
/// counterpart) writes them.
fn encode(message: ClientMessage) -> Vec<u8> {
    let mut bytes = Vec::new();
    message
        .write_to(&mut bytes)
        .expect("writing into a Vec cannot fail");
    bytes
}

enum Ended {
    /// The view went away.
    Stopped,
    /// The connection ended, and why.
    Lost(String),
}

/// Applies one event from vnc-rs; an error ends the connection.
fn apply(fb: &mut Framebuffer, event: VncEvent) -> Result<(), String> {
    match event {
        VncEvent::SetResolution(screen) => {
            fb.resize(screen.width.into(), screen.height.into());
        }
        VncEvent::RawImage(r, data) => fb
            .put(
                r.x.into(),
                r.y.into(),
                r.width.into(),
                r.height.into(),
                &data,
            )
            .map_err(|e| e.to_string())?,
        VncEvent::Copy(dst, src) => fb
            .copy(
                src.x.into(),
                src.y.into(),
                dst.x.into(),
                dst.y.into(),
                dst.width.into(),
                dst.height.into(),
            )
            .map_err(|e| e.to_string())?,
        VncEvent::Error(e) => return Err(e),
        _ => {}
    }
    Ok(())
}

async fn serve(
    connection: Connection,
    input: &async_channel::Receiver<Input>,
    updates: &async_channel::Sender<Update>,
    gate: &Gate,
) -> Ended {
    let Connection { client, out } = connection;
    let mut fb = Framebuffer::new(1, 1);
    // The first event is the server's screen size (ServerInit).
    let mut first_damage: Option<Instant> = None;
    let mut last_event = Instant::now();
    let mut asked_since_event = true;
    gate.in_flight.store(false, Ordering::Release);
    let ended = loop {
        let flush_at = first_damage.map(|first| (last_event + IDLE).min(first + MAX_BATCH_DELAY));
        let can_hand_over = !gate.in_flight.load(Ordering::Acquire);
        tokio::select! {
            event = client.recv_event() => match event {
                Ok(event) => {
                    if let Err(reason) = apply(&mut fb, event) {
                        break Ended::Lost(reason);
                    }
                    last_event = Instant::now();
                    asked_since_event = false;
                    if fb.is_dirty() && first_damage.is_none() {
                        first_damage = Some(last_event);
                    }
                }
                Err(e) => break Ended::Lost(format!("the VM's display closed ({e})")),
            },
            message = input.recv() => match message {
                Ok(message) => {
                    if out.send(input_message(message, fb.size())).is_err() {
                        break Ended::Lost("the VM's display closed".into());
                    }
                }
                Err(_) => break Ended::Stopped,
            },
            _ = gate.taken.notified(), if first_damage.is_some() && !can_hand_over => {}
            // Due once the rectangles pause; while the view still holds the
            // last batch only the request is due (the damage waits for
            // `taken` above), so a busy view does not make this spin.
            _ = tokio::time::sleep_until(flush_at.unwrap_or(last_event + IDLE)),
                if !asked_since_event || (flush_at.is_some() && can_hand_over) =>
            {
                // The rectangles stopped for a moment: the update is (very
                // likely) complete. Ask for the next one, and hand the
                // damage over if the view is ready for it.
                if !asked_since_event {
                    let (w, h) = fb.size();
                    let _ = out.send(update_request(true, w, h));
                    asked_since_event = true;
                }
                if can_hand_over && fb.is_dirty() {
                    gate.in_flight.store(true, Ordering::Release);
                    gate.handed.fetch_add(1, Ordering::Relaxed);
                    if updates.try_send(Update::Frame(fb.take_batch())).is_err() {
                        break Ended::Stopped;
                    }
                    first_damage = None;
                } else if !fb.is_dirty() {
                    first_damage = None;
                }
            },
            _ = tokio::time::sleep(KEEPALIVE) => {
                let (w, h) = fb.size();
                let _ = out.send(update_request(true, w, h));
            },
        }
    };
    let _ = client.close().await;
    ended
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(bytes: &[u8]) -> ClientMessage {
        let mut r = bytes;
        let m = ClientMessage::read_from(&mut r).unwrap();
        assert!(r.is_empty(), "{} bytes left over", r.len());
        m
    }

    #[test]
    fn our_server_reads_the_messages_the_session_writes() {
        assert_eq!(
            parse(&input_message(
                Input::Key {
                    down: true,
                    keysym: 0x61,
                    qnum: 0x1e
                },
                (0, 0)
            )),
            ClientMessage::QemuExtendedKeyEvent {
                down: true,
                keysym: 0x61,
                qnum: 0x1e
            }
        );
        assert_eq!(
            parse(&input_message(
                Input::Pointer {
                    x: 1023,
                    y: 7,
                    buttons: 0b101
                },
                (0, 0)
            )),
            ClientMessage::PointerEvent {
                buttons: 0b101,
                x: 1023,
                y: 7
            }
        );
        assert_eq!(
            parse(&input_message(Input::FullRefresh, (1024, 768))),
            ClientMessage::FramebufferUpdateRequest {
                incremental: false,
                x: 0,
                y: 0,
                width: 1024,
                height: 768
            }
        );
    }
}
