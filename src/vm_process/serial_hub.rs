//! The serial console of a VM process, shared by every `vireo console`
//! (and the window's serial tab) through a unix socket: guest output goes
//! to all of them, and what any of them types goes to the guest.
//!
//! The guest's UART never waits for a console. Each console has its own
//! outbox, emptied by its own writer thread: a console that falls behind
//! (a busy window, a script on a loaded host) gets its output late but
//! whole, and only one that falls [`CONSOLE_BACKLOG`] behind (gone, or not
//! reading at all) is dropped, with a log line. Writing to the socket
//! directly from the UART, as this hub once did, dropped consoles that
//! were merely a few hundred bytes behind: the UART writes a byte at a
//! time, and each byte is a whole socket buffer entry.
//!
//! The last 64 KiB of output are replayed to a console that attaches, so
//! it does not start on a blank screen.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{mpsc, Arc, Condvar, Mutex};

const SCROLLBACK: usize = 64 * 1024;

/// How far a console may fall behind the guest before it is dropped.
const CONSOLE_BACKLOG: usize = 1024 * 1024;

#[derive(Default)]
struct Clients {
    consoles: Vec<Arc<Console>>,
    scrollback: VecDeque<u8>,
}

/// One attached console's output not yet written to its socket.
struct Console {
    outbox: Mutex<Outbox>,
    wake: Condvar,
    /// Shut down on close, so a writer blocked on a console that stopped
    /// reading returns and its thread ends.
    socket: UnixStream,
}

#[derive(Default)]
struct Outbox {
    bytes: Vec<u8>,
    /// The console is gone, or fell too far behind: nothing more is queued.
    closed: bool,
}

impl Console {
    fn new(socket: UnixStream) -> Self {
        Self {
            outbox: Mutex::default(),
            wake: Condvar::new(),
            socket,
        }
    }

    /// Queues `bytes` for the console; false once it is closed (so the hub
    /// forgets it).
    fn offer(&self, bytes: &[u8]) -> bool {
        let mut outbox = self.outbox.lock().unwrap();
        if outbox.closed {
            return false;
        }
        if outbox.bytes.len() + bytes.len() > CONSOLE_BACKLOG {
            let behind_kib = outbox.bytes.len() / 1024;
            drop(outbox);
            tracing::warn!(
                behind_kib,
                "a serial console stopped reading and is dropped"
            );
            self.close();
            return false;
        }
        outbox.bytes.extend_from_slice(bytes);
        self.wake.notify_one();
        true
    }

    fn close(&self) {
        self.outbox.lock().unwrap().closed = true;
        self.wake.notify_one();
        let _ = self.socket.shutdown(Shutdown::Both);
    }

    /// Writes what is queued to the socket, in as few writes as the
    /// console's pace allows, until the console is closed or its socket
    /// fails.
    fn write_out(&self) {
        loop {
            let bytes = {
                let mut outbox = self.outbox.lock().unwrap();
                while outbox.bytes.is_empty() && !outbox.closed {
                    outbox = self.wake.wait(outbox).unwrap();
                }
                if outbox.closed {
                    break;
                }
                std::mem::take(&mut outbox.bytes)
            };
            if (&self.socket).write_all(&bytes).is_err() {
                break;
            }
        }
        // Ends the console's reader thread too, and tells the client.
        self.close();
    }
}

/// Guest output side: implements `Write` for the UART.
#[derive(Clone, Default)]
pub struct SerialHub {
    clients: Arc<Mutex<Clients>>,
}

impl SerialHub {
    /// Listens on `path`; bytes typed by consoles go to `input`.
    pub fn listen(&self, path: &Path, input: mpsc::Sender<Vec<u8>>) -> std::io::Result<()> {
        let _ = std::fs::remove_file(path);
        let listener = UnixListener::bind(path)?;
        // Only its user may attach, as the VNC and control sockets.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        let hub = self.clone();
        std::thread::Builder::new()
            .name("serial-accept".into())
            .spawn(move || {
                crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Serial);
                for stream in listener.incoming().flatten() {
                    if let Err(e) = hub.attach(stream, input.clone()) {
                        tracing::warn!("a serial console could not attach: {e}");
                    }
                }
            })?;
        Ok(())
    }

    /// Starts serving `stream`: the scrollback first, then live output;
    /// what it sends goes to `input`.
    fn attach(&self, stream: UnixStream, input: mpsc::Sender<Vec<u8>>) -> std::io::Result<()> {
        let mut reader = stream.try_clone()?;
        let console = Arc::new(Console::new(stream));
        {
            let mut clients = self.clients.lock().unwrap();
            let replay: Vec<u8> = clients.scrollback.iter().copied().collect();
            console.offer(&replay);
            clients.consoles.push(console.clone());
        }
        std::thread::Builder::new()
            .name("serial-out".into())
            .spawn(move || console.write_out())?;
        std::thread::Builder::new()
            .name("serial-client".into())
            .spawn(move || {
                let mut buf = [0u8; 1024];
                // A console that stops typing may still read (a script
                // that closed its input): only its writer drops it.
                while let Ok(n) = reader.read(&mut buf) {
                    if n == 0 || input.send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
            })?;
        Ok(())
    }
}

impl Write for SerialHub {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut clients = self.clients.lock().unwrap();
        clients.scrollback.extend(buf);
        let excess = clients.scrollback.len().saturating_sub(SCROLLBACK);
        clients.scrollback.drain(..excess);
        clients.consoles.retain(|console| console.offer(buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn consoles_get_output_and_scrollback_and_send_input() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.serial");
        let mut hub = SerialHub::default();
        let (tx, rx) = mpsc::channel();
        hub.listen(&path, tx).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&path.metadata().unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600, "only its user may attach");
        hub.write_all(b"early ").unwrap();
        let mut console = UnixStream::connect(&path).unwrap();
        console
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut got = [0u8; 6];
        console.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"early ", "scrollback replayed on attach");
        // Wait until the hub registered the console, then write more.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while hub.clients.lock().unwrap().consoles.is_empty() {
            assert!(std::time::Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        hub.write_all(b"late").unwrap();
        let mut late = [0u8; 4];
        console.read_exact(&mut late).unwrap();
        assert_eq!(&late, b"late");
        console.write_all(b"typed").unwrap();
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), b"typed");
    }

    /// Attaches a console to a fresh hub and waits until the hub serves it.
    fn hub_with_console() -> (tempfile::TempDir, SerialHub, UnixStream) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vm.serial");
        let hub = SerialHub::default();
        let (tx, _rx) = mpsc::channel();
        hub.listen(&path, tx).unwrap();
        let console = UnixStream::connect(&path).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while hub.clients.lock().unwrap().consoles.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "console never attached"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        (dir, hub, console)
    }

    #[test]
    fn a_console_that_lags_gets_every_byte_in_order() {
        let (_dir, mut hub, mut console) = hub_with_console();
        // A UART's way: one byte per write, far more writes than a socket
        // buffer has entries, while the console is not reading yet.
        let sent: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        for byte in &sent {
            hub.write_all(std::slice::from_ref(byte)).unwrap();
        }
        console
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut got = vec![0u8; sent.len()];
        console.read_exact(&mut got).unwrap();
        assert!(got == sent, "the console's output differs from the guest's");
    }

    #[test]
    fn a_console_that_never_reads_is_dropped_and_others_still_attach() {
        let (dir, mut hub, _stuck) = hub_with_console();
        let chunk = [b'x'; 4096];
        for _ in 0..(2 * CONSOLE_BACKLOG / chunk.len()) {
            hub.write_all(&chunk).unwrap();
        }
        assert!(
            hub.clients.lock().unwrap().consoles.is_empty(),
            "a console {} KiB behind is still served",
            2 * CONSOLE_BACKLOG / 1024
        );
        hub.write_all(b"after").unwrap();
        let mut late = UnixStream::connect(dir.path().join("vm.serial")).unwrap();
        late.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut tail = vec![0u8; SCROLLBACK];
        late.read_exact(&mut tail).unwrap();
        assert!(
            tail.ends_with(b"after"),
            "the scrollback's end is not the latest output"
        );
    }
}
