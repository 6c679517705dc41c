//! Small ISA ports firmware uses: the Bochs/QEMU debug console (0x402) and
//! the POST code port (0x80).
//!
//! The debug console has no datasheet: it is the port Bochs defined and
//! QEMU's `isa-debugcon` implements. Written bytes are the firmware's log;
//! a read returns 0xE9, which is how SeaBIOS detects the port is there.

use std::io::Write;

use super::BusDevice;

/// What reading the debug console returns (QEMU's `readback` default).
pub const DEBUGCON_READBACK: u8 = 0xe9;

pub struct DebugCon {
    output: Box<dyn Write + Send>,
    failed: bool,
}

impl DebugCon {
    pub fn new(output: Box<dyn Write + Send>) -> Self {
        Self {
            output,
            failed: false,
        }
    }
}

impl BusDevice for DebugCon {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(DEBUGCON_READBACK);
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Err(e) = self.output.write_all(data) {
            if !self.failed {
                tracing::warn!("debug console output failed: {e}");
                self.failed = true;
            }
        }
    }
}

/// Port 0x80: firmware writes progress codes here. The last one is kept
/// (it tells where a firmware that hangs stopped).
#[derive(Default)]
pub struct PostCode {
    last: Option<u8>,
}

impl PostCode {
    pub fn last(&self) -> Option<u8> {
        self.last
    }
}

impl BusDevice for PostCode {
    fn read(&mut self, _offset: u64, data: &mut [u8]) {
        data.fill(self.last.unwrap_or(0xff));
    }

    fn write(&mut self, _offset: u64, data: &[u8]) {
        if let Some(&code) = data.first() {
            tracing::trace!(code = format_args!("{code:#04x}"), "POST code");
            self.last = Some(code);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    struct Shared(Arc<Mutex<Vec<u8>>>);
    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn debugcon_logs_writes_and_reads_back_e9() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let mut port = DebugCon::new(Box::new(Shared(log.clone())));
        port.write(0, b"SeaBIOS");
        let mut probe = [0];
        port.read(0, &mut probe);
        assert_eq!(probe, [0xe9]);
        assert_eq!(log.lock().unwrap().as_slice(), b"SeaBIOS");
    }

    #[test]
    fn post_code_keeps_the_last_value() {
        let mut port = PostCode::default();
        assert_eq!(port.last(), None);
        port.write(0, &[0x12]);
        port.write(0, &[0x34]);
        assert_eq!(port.last(), Some(0x34));
    }
}
