//! The serial console of a VM process, shared by every `vireo console`
//! (and the window's serial tab) through a unix socket: guest output goes
//! to all of them, and what any of them types goes to the guest.
//!
//! A console that stops reading is dropped rather than allowed to stall
//! the guest's UART. The last 64 KiB of output are replayed to a console
//! that attaches, so it does not start on a blank screen.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::Path;
use std::sync::{mpsc, Arc, Mutex};

const SCROLLBACK: usize = 64 * 1024;

#[derive(Default)]
struct Clients {
    streams: Vec<UnixStream>,
    scrollback: VecDeque<u8>,
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
        let clients = self.clients.clone();
        std::thread::Builder::new()
            .name("serial-accept".into())
            .spawn(move || {
                crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Serial);
                for stream in listener.incoming().flatten() {
                    let Ok(reader) = stream.try_clone() else {
                        continue;
                    };
                    {
                        let mut clients = clients.lock().unwrap();
                        let replay: Vec<u8> = clients.scrollback.iter().copied().collect();
                        let mut writer = &stream;
                        if writer.write_all(&replay).is_err() {
                            continue;
                        }
                        clients.streams.push(stream);
                    }
                    let input = input.clone();
                    let _ = std::thread::Builder::new()
                        .name("serial-client".into())
                        .spawn(move || {
                            let mut reader = reader;
                            let mut buf = [0u8; 1024];
                            while let Ok(n) = reader.read(&mut buf) {
                                if n == 0 || input.send(buf[..n].to_vec()).is_err() {
                                    break;
                                }
                            }
                        });
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
        // Non-blocking sends: a console that cannot take the bytes now
        // (gone, or not reading) is dropped instead of stalling the guest.
        clients.streams.retain(|stream| send_now(stream, buf));
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Sends all of `buf` without blocking (the socket's reader thread keeps
/// it in blocking mode, so the flag goes on each send instead).
fn send_now(stream: &UnixStream, buf: &[u8]) -> bool {
    use std::os::fd::AsRawFd;
    let mut sent = 0;
    while sent < buf.len() {
        // SAFETY: sends from a valid slice on a socket this hub owns.
        let n = unsafe {
            libc::send(
                stream.as_raw_fd(),
                buf[sent..].as_ptr().cast(),
                buf.len() - sent,
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
        if n <= 0 {
            return false;
        }
        sent += n as usize;
    }
    true
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
        while hub.clients.lock().unwrap().streams.is_empty() {
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
}
