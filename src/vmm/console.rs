//! Where a VM's character devices go: the serial port and the debug port.

use std::io::{self, Write};
use std::sync::{Arc, Mutex};

use super::input::InputRouter;
use crate::display::{Display, INITIAL_SIZE};

/// A writer shared by every incarnation of a machine (it survives resets),
/// flushed after each write so a reader sees bytes as the guest sends them.
#[derive(Clone)]
pub struct SharedWriter(Arc<Mutex<Box<dyn Write + Send>>>);

impl SharedWriter {
    pub fn new(inner: impl Write + Send + 'static) -> Self {
        Self(Arc::new(Mutex::new(Box::new(inner))))
    }

    /// A writer that drops everything.
    pub fn sink() -> Self {
        Self::new(io::sink())
    }
}

impl Write for SharedWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut inner = self.0.lock().unwrap_or_else(|e| e.into_inner());
        inner.write_all(buf)?;
        inner.flush()?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

/// A VM's consoles: character devices, the screen and console input.
/// Created once per VM process; every machine incarnation plugs into it.
#[derive(Clone)]
pub struct ConsoleIo {
    /// The guest's screen, shared with the VNC server and screenshots.
    pub display: Arc<Display>,
    /// Console keyboard and pointer, routed to the running machine.
    pub input: Arc<InputRouter>,
    /// COM1 output.
    pub serial: SharedWriter,
    /// Port 0x402 output (SeaBIOS's debug log).
    pub debugcon: SharedWriter,
    /// COM1 input: bytes typed at the console, in order.
    pub serial_input: Option<Arc<Mutex<std::sync::mpsc::Receiver<Vec<u8>>>>>,
}

impl ConsoleIo {
    pub fn new(serial: SharedWriter) -> Self {
        Self {
            display: Display::new(INITIAL_SIZE.0, INITIAL_SIZE.1),
            input: InputRouter::new(),
            serial,
            debugcon: SharedWriter::sink(),
            serial_input: None,
        }
    }
}
