//! A 16550A UART, as COM1 of a PC (ports 0x3F8..0x3FF, ISA IRQ 4).
//!
//! Reference: National Semiconductor PC16550D "Universal Asynchronous
//! Receiver/Transmitter with FIFOs" datasheet: register set (Table II), the
//! interrupt identification priorities (Table IV), the FIFO control register
//! and loopback mode (MCR bit 4). On a PC the chip's INTR output reaches the
//! interrupt controller through a buffer enabled by the OUT2 modem-control
//! output, so the line is only driven while MCR OUT2 is set — and never in
//! loopback, where the datasheet forces the OUT pins inactive.
//!
//! There is no wire, so transmission is instantaneous: THR and the transmit
//! FIFO are always empty (LSR THRE and TEMT always set) and every byte written
//! goes straight to the output sink. Not emulated: baud rate timing (the
//! divisor latch is stored and read back, nothing more), parity, framing and
//! break errors (never occur; LSR bits 2..4 and 7 stay clear), sending a
//! break (LCR bit 6), DMA mode signalling (FCR bit 3, stored only), and the
//! four-character-time receive timeout: when the receive FIFO holds fewer
//! bytes than the trigger level, the character timeout interrupt is reported
//! at once, which is what a driver's timeout handler expects to see after the
//! last byte of a burst. The modem inputs of the external side read as CTS,
//! DSR and DCD asserted (a terminal is always attached), RI clear.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

use super::{BusDevice, IrqLine};
use crate::guest_warn;

// ---- Register offsets (Table II) --------------------------------------------

/// RBR (read), THR (write); DLL while LCR DLAB is set.
const RBR_THR: u64 = 0;
/// IER; DLM while LCR DLAB is set.
const IER: u64 = 1;
/// IIR (read), FCR (write).
const IIR_FCR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const MSR: u64 = 6;
const SCR: u64 = 7;
/// Number of ports the UART decodes.
pub const UART_REGISTERS: u64 = 8;

// ---- Interrupt Enable Register ------------------------------------------------

/// Enable Received Data Available Interrupt (and character timeout).
const IER_ERBFI: u8 = 0x01;
/// Enable Transmitter Holding Register Empty Interrupt.
const IER_ETBEI: u8 = 0x02;
/// Enable Receiver Line Status Interrupt.
const IER_ELSI: u8 = 0x04;
/// Enable MODEM Status Interrupt.
const IER_EDSSI: u8 = 0x08;
/// Bits 4..7 are always zero.
const IER_MASK: u8 = 0x0f;

// ---- Interrupt Identification Register (Table IV) -----------------------------

/// Bit 0 set: no interrupt pending.
const IIR_NO_INTERRUPT: u8 = 0x01;
const IIR_MODEM_STATUS: u8 = 0x00;
const IIR_THR_EMPTY: u8 = 0x02;
const IIR_RECEIVED_DATA: u8 = 0x04;
const IIR_LINE_STATUS: u8 = 0x06;
const IIR_CHARACTER_TIMEOUT: u8 = 0x0c;
/// Bits 6..7 are set when FCR0 is set; drivers read them to tell a 16550A
/// from a 16450.
const IIR_FIFOS_ENABLED: u8 = 0xc0;

// ---- FIFO Control Register ------------------------------------------------------

const FCR_FIFO_ENABLE: u8 = 0x01;
const FCR_RCVR_FIFO_RESET: u8 = 0x02;
const FCR_DMA_MODE: u8 = 0x08;
const FCR_TRIGGER_MASK: u8 = 0xc0;

// ---- Line Control Register -------------------------------------------------------

/// Divisor Latch Access Bit.
const LCR_DLAB: u8 = 0x80;

// ---- MODEM Control Register ------------------------------------------------------

const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;
/// Bits 5..7 are always zero.
const MCR_MASK: u8 = 0x1f;

// ---- Line Status Register --------------------------------------------------------

/// Data Ready.
const LSR_DR: u8 = 0x01;
/// Overrun Error.
const LSR_OE: u8 = 0x02;
// PE (0x04), FE (0x08) and BI (0x10) never occur without a wire.
/// Transmitter Holding Register Empty.
const LSR_THRE: u8 = 0x20;
/// Transmitter Empty.
const LSR_TEMT: u8 = 0x40;

// ---- MODEM Status Register -------------------------------------------------------

const MSR_DCTS: u8 = 0x01;
const MSR_DDSR: u8 = 0x02;
/// Trailing Edge Ring Indicator.
const MSR_TERI: u8 = 0x04;
const MSR_DDCD: u8 = 0x08;
const MSR_DELTAS: u8 = MSR_DCTS | MSR_DDSR | MSR_TERI | MSR_DDCD;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;
/// What the external side presents: a terminal that is always there.
const MSR_EXTERNAL_INPUTS: u8 = MSR_CTS | MSR_DSR | MSR_DCD;

/// Depth of the receive FIFO.
const FIFO_SIZE: usize = 16;
/// Divisor after power-on: the datasheet leaves it undefined; 12 is 9600
/// baud from the PC's 1.8432 MHz clock, what BIOSes program anyway.
const DEFAULT_DIVISOR: u16 = 12;

/// A 16550A UART. See the module documentation for what is emulated.
pub struct Uart16550 {
    irq: Arc<dyn IrqLine>,
    output: Box<dyn Write + Send>,
    /// Set after the first failed write to `output`, so a broken sink is
    /// logged once rather than once per byte.
    output_failed: bool,
    /// The receive FIFO; in 16450 mode (FCR0 clear) it holds at most one
    /// byte, the receiver buffer register.
    rx_fifo: VecDeque<u8>,
    /// The last byte read from RBR, returned again if the guest reads an
    /// empty receiver, as the hardware register keeps its contents.
    rbr: u8,
    divisor: u16,
    ier: u8,
    /// FCR0 (enable), FCR3 (DMA mode) and the trigger level bits.
    fcr: u8,
    lcr: u8,
    mcr: u8,
    /// LSR error bits accumulated since the last LSR read: only ever OE,
    /// the one error that can happen without a wire.
    lsr_errors: u8,
    /// MSR: current modem inputs (bits 4..7) and deltas since the last read.
    msr: u8,
    scr: u8,
    /// The THRE interrupt is pending: set when THR becomes empty or ETBEI
    /// is enabled while it is empty; cleared by reading IIR while it is the
    /// reported source, or by writing THR.
    thr_empty_pending: bool,
    /// The level last driven on `irq`.
    irq_level: bool,
}

impl Uart16550 {
    /// A UART in its master-reset state, interrupts going to `irq`, bytes
    /// the guest transmits going to `output`.
    pub fn new(irq: Arc<dyn IrqLine>, output: Box<dyn Write + Send>) -> Self {
        Self {
            irq,
            output,
            output_failed: false,
            rx_fifo: VecDeque::with_capacity(FIFO_SIZE),
            rbr: 0,
            divisor: DEFAULT_DIVISOR,
            ier: 0,
            fcr: 0,
            lcr: 0,
            mcr: 0,
            lsr_errors: 0,
            msr: MSR_EXTERNAL_INPUTS,
            scr: 0,
            thr_empty_pending: false,
            irq_level: false,
        }
    }

    /// Master reset (the MR pin, i.e. a machine reset): IER, IIR, FCR, LCR,
    /// MCR, LSR and the MSR deltas go back to their reset values and the
    /// receive FIFO is emptied; the divisor latch, RBR and SCR keep their
    /// contents, as on the chip.
    pub fn reset(&mut self) {
        self.rx_fifo.clear();
        self.ier = 0;
        self.fcr = 0;
        self.lcr = 0;
        self.mcr = 0;
        self.lsr_errors = 0;
        self.msr = MSR_EXTERNAL_INPUTS;
        self.thr_empty_pending = false;
        self.update_irq();
    }

    /// Hands bytes typed on the console to the receiver. Accepts as many as
    /// fit in the receive FIFO and returns how many that was; the caller
    /// keeps the rest and offers them again once the guest has read some.
    /// Nothing is accepted in loopback mode, where the receiver is
    /// disconnected from the line.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        let n = bytes.len().min(self.rx_room());
        if n > 0 {
            self.rx_fifo.extend(&bytes[..n]);
            self.update_irq();
        }
        n
    }

    /// How many bytes [`Self::receive`] would accept now.
    pub fn rx_room(&self) -> usize {
        if self.loopback() {
            0
        } else {
            self.rx_capacity() - self.rx_fifo.len()
        }
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_FIFO_ENABLE != 0
    }

    fn loopback(&self) -> bool {
        self.mcr & MCR_LOOP != 0
    }

    /// 16 bytes with FIFOs enabled, the single RBR without.
    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_SIZE
        } else {
            1
        }
    }

    /// The receiver FIFO trigger level selected by FCR bits 6..7.
    fn rx_trigger(&self) -> usize {
        match self.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    /// The modem inputs as the MSR sees them: in loopback the MCR outputs
    /// fed back (DTR→DSR, RTS→CTS, OUT1→RI, OUT2→DCD), else the terminal.
    fn modem_inputs(&self) -> u8 {
        if !self.loopback() {
            return MSR_EXTERNAL_INPUTS;
        }
        let mut inputs = 0;
        for (out, input) in [
            (MCR_DTR, MSR_DSR),
            (MCR_RTS, MSR_CTS),
            (MCR_OUT1, MSR_RI),
            (MCR_OUT2, MSR_DCD),
        ] {
            if self.mcr & out != 0 {
                inputs |= input;
            }
        }
        inputs
    }

    /// The highest-priority enabled interrupt that is pending, as its IIR
    /// identification bits (Table IV), or `None`.
    fn pending_interrupt(&self) -> Option<u8> {
        if self.ier & IER_ELSI != 0 && self.lsr_errors != 0 {
            Some(IIR_LINE_STATUS)
        } else if self.ier & IER_ERBFI != 0 && !self.rx_fifo.is_empty() {
            if !self.fifo_enabled() || self.rx_fifo.len() >= self.rx_trigger() {
                Some(IIR_RECEIVED_DATA)
            } else {
                // The timeout is reported without waiting four character
                // times; see the module documentation.
                Some(IIR_CHARACTER_TIMEOUT)
            }
        } else if self.ier & IER_ETBEI != 0 && self.thr_empty_pending {
            Some(IIR_THR_EMPTY)
        } else if self.ier & IER_EDSSI != 0 && self.msr & MSR_DELTAS != 0 {
            Some(IIR_MODEM_STATUS)
        } else {
            None
        }
    }

    /// Drives the interrupt line: high while an enabled interrupt is pending
    /// and the OUT2 buffer lets it through.
    fn update_irq(&mut self) {
        let gate_open = self.mcr & MCR_OUT2 != 0 && !self.loopback();
        let level = gate_open && self.pending_interrupt().is_some();
        if level != self.irq_level {
            self.irq_level = level;
            self.irq.set_level(level);
        }
    }

    /// A character arriving at the receiver from the line (here only from
    /// the transmitter in loopback mode).
    fn receive_from_line(&mut self, byte: u8) {
        if self.rx_fifo.len() < self.rx_capacity() {
            self.rx_fifo.push_back(byte);
            return;
        }
        self.lsr_errors |= LSR_OE;
        // With FIFOs the character in the shift register is lost; without,
        // it overwrites the unread RBR.
        if !self.fifo_enabled() {
            self.rx_fifo.clear();
            self.rx_fifo.push_back(byte);
        }
    }

    fn transmit(&mut self, byte: u8) {
        // Writing THR clears the THRE interrupt; the byte then leaves at
        // once and THR is empty again. Dropping the line in between gives an
        // edge-triggered PIC the new rising edge it needs to deliver the
        // next THRE interrupt.
        self.thr_empty_pending = false;
        self.update_irq();
        if self.loopback() {
            self.receive_from_line(byte);
        } else {
            let result = self
                .output
                .write_all(&[byte])
                .and_then(|()| self.output.flush());
            if let Err(error) = result {
                if !self.output_failed {
                    self.output_failed = true;
                    tracing::warn!(%error, "serial output failed; further errors are not logged");
                }
            }
        }
        self.thr_empty_pending = true;
        self.update_irq();
    }

    fn write_ier(&mut self, value: u8) {
        let old = self.ier;
        self.ier = value & IER_MASK;
        // THR is always empty, so enabling ETBEI raises THRE at once. Drivers
        // (Linux's serial8250_start_tx, its UART_BUG_THRE probe) rely on this.
        if self.ier & IER_ETBEI != 0 && old & IER_ETBEI == 0 {
            self.thr_empty_pending = true;
        }
    }

    fn write_fcr(&mut self, value: u8) {
        let enable = value & FCR_FIFO_ENABLE != 0;
        if enable != self.fifo_enabled() {
            // Changing FCR0 clears both FIFOs.
            self.rx_fifo.clear();
        }
        if !enable {
            // FCR0 must be set for the other bits to be programmed.
            self.fcr = 0;
            return;
        }
        if value & FCR_RCVR_FIFO_RESET != 0 {
            self.rx_fifo.clear();
        }
        // FCR2 (XMIT FIFO reset) has nothing to do: the transmit FIFO is
        // always empty.
        self.fcr = value & (FCR_FIFO_ENABLE | FCR_DMA_MODE | FCR_TRIGGER_MASK);
    }

    fn write_mcr(&mut self, value: u8) {
        let old_inputs = self.modem_inputs();
        self.mcr = value & MCR_MASK;
        let new_inputs = self.modem_inputs();
        let changed = old_inputs ^ new_inputs;
        let mut deltas = 0;
        for (input, delta) in [
            (MSR_CTS, MSR_DCTS),
            (MSR_DSR, MSR_DDSR),
            (MSR_DCD, MSR_DDCD),
        ] {
            if changed & input != 0 {
                deltas |= delta;
            }
        }
        // TERI flags only the trailing (falling) edge of RI.
        if old_inputs & MSR_RI != 0 && new_inputs & MSR_RI == 0 {
            deltas |= MSR_TERI;
        }
        self.msr = new_inputs | (self.msr & MSR_DELTAS) | deltas;
    }

    fn read_register(&mut self, offset: u64) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR if dlab => self.divisor as u8,
            RBR_THR => {
                if let Some(byte) = self.rx_fifo.pop_front() {
                    self.rbr = byte;
                }
                self.rbr
            }
            IER if dlab => (self.divisor >> 8) as u8,
            IER => self.ier,
            IIR_FCR => {
                let fifo_bits = if self.fifo_enabled() {
                    IIR_FIFOS_ENABLED
                } else {
                    0
                };
                match self.pending_interrupt() {
                    Some(id) => {
                        // Reading IIR is how a THRE interrupt is acknowledged,
                        // but only while THRE is what IIR reports.
                        if id == IIR_THR_EMPTY {
                            self.thr_empty_pending = false;
                        }
                        id | fifo_bits
                    }
                    None => IIR_NO_INTERRUPT | fifo_bits,
                }
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let mut lsr = LSR_THRE | LSR_TEMT | self.lsr_errors;
                if !self.rx_fifo.is_empty() {
                    lsr |= LSR_DR;
                }
                self.lsr_errors = 0;
                lsr
            }
            MSR => {
                let msr = self.msr;
                self.msr &= !MSR_DELTAS;
                msr
            }
            SCR => self.scr,
            _ => 0xff,
        }
    }

    fn write_register(&mut self, offset: u64, value: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR if dlab => self.divisor = (self.divisor & 0xff00) | u16::from(value),
            RBR_THR => self.transmit(value),
            IER if dlab => self.divisor = (self.divisor & 0x00ff) | (u16::from(value) << 8),
            IER => self.write_ier(value),
            IIR_FCR => self.write_fcr(value),
            LCR => self.lcr = value,
            MCR => self.write_mcr(value),
            LSR | MSR => {
                // Writable only for factory testing on the real chip.
                guest_warn!(
                    offset,
                    value,
                    "write to read-only UART status register ignored"
                );
            }
            SCR => self.scr = value,
            _ => {}
        }
    }
}

impl BusDevice for Uart16550 {
    /// An access wider than a byte is split into byte accesses at
    /// consecutive ports, as the ISA bus does for an 8-bit device.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        if data.len() != 1 {
            guest_warn!(offset, len = data.len(), "UART read wider than a byte");
        }
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = match offset.checked_add(i as u64) {
                Some(port) if port < UART_REGISTERS => self.read_register(port),
                _ => 0xff,
            };
        }
        tracing::trace!(offset, ?data, "uart read");
        self.update_irq();
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        if data.len() != 1 {
            guest_warn!(offset, len = data.len(), "UART write wider than a byte");
        }
        tracing::trace!(offset, ?data, "uart write");
        for (i, &value) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(port) if port < UART_REGISTERS => self.write_register(port, value),
                _ => {}
            }
        }
        self.update_irq();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::irq::FakeIrq;
    use std::sync::Mutex;

    /// An output sink the test can read back.
    #[derive(Clone, Default)]
    struct SharedBuf(Arc<Mutex<Vec<u8>>>);

    impl SharedBuf {
        fn contents(&self) -> Vec<u8> {
            self.0.lock().unwrap().clone()
        }
    }

    impl Write for SharedBuf {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// An output sink that always fails, counting attempts.
    struct Broken(Arc<Mutex<usize>>);

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            *self.0.lock().unwrap() += 1;
            Err(std::io::Error::other("gone"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    struct Rig {
        uart: Uart16550,
        irq: Arc<FakeIrq>,
        out: SharedBuf,
    }

    impl Rig {
        fn new() -> Self {
            let irq = FakeIrq::new();
            let out = SharedBuf::default();
            let uart = Uart16550::new(irq.clone(), Box::new(out.clone()));
            Self { uart, irq, out }
        }
        fn inb(&mut self, port: u64) -> u8 {
            let mut b = [0];
            self.uart.read(port, &mut b);
            b[0]
        }
        fn outb(&mut self, port: u64, value: u8) {
            self.uart.write(port, &[value]);
        }
        /// What a driver's open() does: 115200 8N1, FIFOs on with the given
        /// FCR, DTR|RTS|OUT2, then the given interrupt enables.
        fn setup(&mut self, fcr: u8, ier: u8) {
            self.outb(LCR, LCR_DLAB);
            self.outb(RBR_THR, 1);
            self.outb(IER, 0);
            self.outb(LCR, 0x03);
            self.outb(IIR_FCR, fcr);
            self.outb(MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
            self.outb(IER, ier);
        }
    }

    #[test]
    fn reset_values_match_the_datasheet() {
        let mut r = Rig::new();
        assert_eq!(r.inb(IER), 0);
        assert_eq!(r.inb(IIR_FCR), 0x01);
        assert_eq!(r.inb(LCR), 0);
        assert_eq!(r.inb(MCR), 0);
        assert_eq!(r.inb(LSR), 0x60);
        assert_eq!(r.inb(MSR), 0xb0, "CTS, DSR, DCD from the terminal");
        assert!(!r.irq.level());
    }

    #[test]
    fn divisor_latch_and_scratch() {
        let mut r = Rig::new();
        r.outb(LCR, LCR_DLAB | 0x03);
        r.outb(RBR_THR, 0x34);
        r.outb(IER, 0x12);
        assert_eq!((r.inb(RBR_THR), r.inb(IER)), (0x34, 0x12));
        r.outb(LCR, 0x03);
        // With DLAB clear the same ports are THR/RBR and IER again.
        assert_eq!(r.inb(IER), 0);
        r.outb(IER, 0xff);
        assert_eq!(r.inb(IER), 0x0f, "IER bits 4..7 read as zero");
        r.outb(LCR, LCR_DLAB);
        assert_eq!((r.inb(RBR_THR), r.inb(IER)), (0x34, 0x12));
        assert!(r.out.contents().is_empty(), "divisor writes are not data");
        r.outb(SCR, 0x5a);
        assert_eq!(r.inb(SCR), 0x5a);
    }

    #[test]
    fn driver_transmits_a_string_with_thre_interrupts() {
        let mut r = Rig::new();
        r.setup(0xc7, IER_ERBFI | IER_ETBEI);
        // Enabling ETBEI with THR empty raises THRE at once.
        assert!(r.irq.level());
        assert_eq!(r.inb(IIR_FCR), 0xc2);
        // That IIR read acknowledged it.
        assert!(!r.irq.level());
        assert_eq!(r.inb(IIR_FCR), 0xc1);
        let edges = r.irq.rising_edges();
        for &b in b"hello\n" {
            assert_ne!(r.inb(LSR) & LSR_THRE, 0);
            r.outb(RBR_THR, b);
            // Each byte leaves at once and raises THRE anew, with an edge.
            assert!(r.irq.level());
            assert_eq!(r.inb(IIR_FCR), 0xc2);
        }
        assert_eq!(r.irq.rising_edges(), edges + 6);
        assert_eq!(r.out.contents(), b"hello\n");
        assert_eq!(r.inb(LSR), LSR_THRE | LSR_TEMT);
    }

    #[test]
    fn thre_is_reraised_by_toggling_etbei() {
        // Linux's UART_BUG_THRE probe: the second enable must raise THRE too.
        let mut r = Rig::new();
        r.setup(0xc7, 0);
        r.outb(IER, IER_ETBEI);
        assert_eq!(r.inb(IIR_FCR) & 0x0f, IIR_THR_EMPTY);
        r.outb(IER, 0);
        r.outb(IER, IER_ETBEI);
        assert_eq!(r.inb(IIR_FCR) & 0x0f, IIR_THR_EMPTY);
        assert_eq!(r.inb(IIR_FCR) & 0x0f, IIR_NO_INTERRUPT);
        // Re-writing IER with ETBEI already set is not an enable.
        r.outb(IER, IER_ETBEI);
        assert_eq!(r.inb(IIR_FCR) & 0x0f, IIR_NO_INTERRUPT);
    }

    #[test]
    fn receive_timeout_then_trigger_level() {
        let mut r = Rig::new();
        r.setup(0xc7, IER_ERBFI); // trigger level 14
        assert!(!r.irq.level());
        assert_eq!(r.uart.receive(b"ab"), 2);
        assert!(r.irq.level());
        assert_eq!(r.inb(IIR_FCR), 0xcc, "below the trigger: character timeout");
        assert_eq!(r.inb(LSR), LSR_DR | LSR_THRE | LSR_TEMT);
        assert_eq!(r.inb(RBR_THR), b'a');
        assert_eq!(r.inb(RBR_THR), b'b');
        assert_eq!(r.inb(LSR) & LSR_DR, 0);
        assert!(!r.irq.level());
        assert_eq!(r.inb(IIR_FCR), 0xc1);

        assert_eq!(r.uart.receive(&[b'x'; 14]), 14);
        assert_eq!(
            r.inb(IIR_FCR),
            0xc4,
            "at the trigger: received data available"
        );
        assert_eq!(r.uart.rx_room(), 2);
        r.inb(RBR_THR);
        assert_eq!(r.inb(IIR_FCR), 0xcc, "back below the trigger");
        while r.inb(LSR) & LSR_DR != 0 {
            r.inb(RBR_THR);
        }
        assert!(!r.irq.level());
        // An empty RBR keeps returning the last byte.
        assert_eq!(r.inb(RBR_THR), b'x');
    }

    #[test]
    fn trigger_levels() {
        for (fcr, level) in [(0x01, 1), (0x41, 4), (0x81, 8), (0xc1, 14)] {
            let mut r = Rig::new();
            r.setup(fcr, IER_ERBFI);
            r.uart.receive(&vec![0; level - 1]);
            if level > 1 {
                assert_eq!(r.inb(IIR_FCR), 0xcc, "fcr {fcr:#x}");
            }
            r.uart.receive(&[0]);
            assert_eq!(r.inb(IIR_FCR), 0xc4, "fcr {fcr:#x}");
        }
    }

    #[test]
    fn receive_takes_only_what_fits() {
        let mut r = Rig::new();
        r.setup(0xc7, IER_ERBFI | IER_ELSI);
        let data: Vec<u8> = (0..20).collect();
        assert_eq!(r.uart.receive(&data), 16);
        assert_eq!(r.uart.rx_room(), 0);
        assert_eq!(r.uart.receive(&data[16..]), 0);
        assert_eq!(r.inb(LSR) & LSR_OE, 0, "the console waits; nothing is lost");
        for expected in 0..16 {
            assert_eq!(r.inb(RBR_THR), expected);
        }
        assert_eq!(r.uart.receive(&data[16..]), 4);
        // Without FIFOs the receiver holds one byte.
        r.outb(IIR_FCR, 0);
        assert_eq!(r.uart.rx_room(), 1);
        assert_eq!(r.uart.receive(b"yz"), 1);
        assert_eq!(r.inb(IIR_FCR), 0x04, "16450 mode: RDA, FIFO bits clear");
        assert_eq!(r.inb(RBR_THR), b'y');
    }

    #[test]
    fn loopback_returns_transmitted_bytes() {
        let mut r = Rig::new();
        r.setup(0xc7, IER_ERBFI);
        r.outb(MCR, MCR_LOOP | MCR_OUT2);
        assert_eq!(r.uart.rx_room(), 0, "receiver disconnected from the line");
        assert_eq!(r.uart.receive(b"q"), 0);
        r.outb(RBR_THR, 0x55);
        r.outb(RBR_THR, 0xaa);
        assert!(r.out.contents().is_empty(), "nothing leaves in loopback");
        assert_eq!(r.inb(IIR_FCR), 0xcc, "interrupts still identified");
        assert!(!r.irq.level(), "but OUT2 is disconnected from the PC's IRQ");
        assert_eq!(r.inb(RBR_THR), 0x55);
        assert_eq!(r.inb(RBR_THR), 0xaa);
        r.outb(MCR, MCR_OUT2);
        r.outb(RBR_THR, b'!');
        assert_eq!(r.out.contents(), b"!");
    }

    #[test]
    fn loopback_fifo_overflow_sets_overrun() {
        let mut r = Rig::new();
        r.setup(0xc7, IER_ERBFI | IER_ELSI);
        r.outb(MCR, MCR_LOOP);
        for b in 0..17 {
            r.outb(RBR_THR, b);
        }
        assert_eq!(r.inb(IIR_FCR), 0xc6, "line status outranks received data");
        assert_eq!(r.inb(LSR), LSR_DR | LSR_OE | LSR_THRE | LSR_TEMT);
        assert_eq!(r.inb(LSR) & LSR_OE, 0, "reading LSR clears OE");
        assert_eq!(r.inb(IIR_FCR), 0xc4);
        // The byte in the shift register was lost, the FIFO kept.
        for expected in 0..16 {
            assert_eq!(r.inb(RBR_THR), expected);
        }
        assert_eq!(r.inb(LSR) & LSR_DR, 0);
    }

    #[test]
    fn overrun_without_fifo_overwrites_rbr() {
        let mut r = Rig::new();
        r.setup(0x00, IER_ELSI);
        r.outb(MCR, MCR_LOOP);
        r.outb(RBR_THR, 1);
        assert_eq!(r.inb(LSR) & LSR_OE, 0);
        r.outb(RBR_THR, 2);
        assert_eq!(r.inb(IIR_FCR), IIR_LINE_STATUS);
        assert_eq!(r.inb(LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        assert_eq!(r.inb(RBR_THR), 2);
    }

    #[test]
    fn loopback_modem_signals_and_status_interrupt() {
        let mut r = Rig::new();
        r.setup(0xc7, IER_EDSSI);
        r.inb(MSR);
        r.outb(MCR, MCR_LOOP);
        // Entering loopback drops CTS/DSR/DCD from the terminal.
        assert_eq!(r.inb(MSR), MSR_DCTS | MSR_DDSR | MSR_DDCD);
        assert_eq!(r.inb(IIR_FCR), 0xc1, "MSR read cleared the deltas");
        // Linux's probe: MCR = LOOP | OUT2 | RTS must read back CTS and DCD.
        r.outb(MCR, MCR_LOOP | MCR_OUT2 | MCR_RTS);
        assert_eq!(r.inb(MSR) & 0xf0, MSR_DCD | MSR_CTS);
        r.outb(MCR, MCR_LOOP | MCR_OUT1 | MCR_DTR);
        assert_eq!(r.inb(IIR_FCR), 0xc0, "modem status pending");
        assert_eq!(
            r.inb(MSR),
            MSR_RI | MSR_DSR | MSR_DCTS | MSR_DDSR | MSR_DDCD,
            "RI rising is not a TERI"
        );
        r.outb(MCR, MCR_LOOP | MCR_DTR);
        assert_eq!(r.inb(MSR), MSR_DSR | MSR_TERI, "RI falling is");
        assert_eq!(r.inb(IIR_FCR), 0xc1);
    }

    #[test]
    fn out2_gates_the_interrupt_line() {
        let mut r = Rig::new();
        r.setup(0xc7, 0);
        r.outb(MCR, MCR_DTR | MCR_RTS);
        r.outb(IER, IER_ERBFI);
        r.uart.receive(b"k");
        assert_eq!(r.inb(IIR_FCR), 0xcc, "pending inside the chip");
        assert!(!r.irq.level(), "but OUT2 is clear");
        r.outb(MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
        assert!(r.irq.level());
        r.outb(MCR, MCR_OUT2 | MCR_LOOP);
        assert!(!r.irq.level(), "loopback forces OUT2 inactive");
        r.outb(MCR, MCR_OUT2);
        assert!(r.irq.level());
        r.outb(IER, 0);
        assert!(!r.irq.level(), "and IER masks it");
    }

    #[test]
    fn interrupt_priorities() {
        let mut r = Rig::new();
        r.setup(0xc1, IER_ERBFI | IER_ETBEI | IER_ELSI | IER_EDSSI);
        r.outb(MCR, MCR_LOOP | MCR_RTS); // DCTS etc.: modem status pending
        r.outb(RBR_THR, 0); // one byte received: timeout
        for _ in 0..16 {
            r.outb(RBR_THR, 0); // FIFO full (14 trigger) and overrun
        }
        assert_eq!(r.inb(IIR_FCR), 0xc6);
        r.inb(LSR);
        assert_eq!(r.inb(IIR_FCR), 0xc4);
        while r.inb(LSR) & LSR_DR != 0 {
            r.inb(RBR_THR);
        }
        assert_eq!(r.inb(IIR_FCR), 0xc2);
        assert_eq!(r.inb(IIR_FCR), 0xc0);
        r.inb(MSR);
        assert_eq!(r.inb(IIR_FCR), 0xc1);
    }

    #[test]
    fn fcr_clears_and_programs_fifos() {
        let mut r = Rig::new();
        r.setup(0xc7, IER_ERBFI);
        r.uart.receive(b"abc");
        r.outb(IIR_FCR, 0xc1 | FCR_RCVR_FIFO_RESET);
        assert_eq!(r.inb(LSR) & LSR_DR, 0);
        assert_eq!(r.inb(IIR_FCR), 0xc1);
        r.uart.receive(b"abc");
        r.outb(IIR_FCR, 0x00);
        assert_eq!(r.inb(LSR) & LSR_DR, 0, "disabling the FIFOs clears them");
        assert_eq!(r.inb(IIR_FCR), 0x01, "FIFO bits clear in 16450 mode");
        // Other bits are not programmed without FCR0.
        r.outb(IIR_FCR, 0x40);
        r.outb(IIR_FCR, 0x01);
        r.uart.receive(b"a");
        assert_eq!(r.inb(IIR_FCR), 0xc4, "trigger level 1, not 4");
    }

    #[test]
    fn master_reset() {
        let mut r = Rig::new();
        r.setup(0xc7, IER_ERBFI);
        r.outb(SCR, 9);
        r.uart.receive(b"z");
        assert!(r.irq.level());
        r.uart.reset();
        assert!(!r.irq.level());
        assert_eq!((r.inb(IER), r.inb(IIR_FCR), r.inb(LSR)), (0, 0x01, 0x60));
        assert_eq!(r.inb(SCR), 9);
        r.outb(LCR, LCR_DLAB);
        assert_eq!(r.inb(RBR_THR), 1, "divisor survives");
    }

    #[test]
    fn output_errors_are_not_fatal() {
        let attempts = Arc::new(Mutex::new(0));
        let irq = FakeIrq::new();
        let mut uart = Uart16550::new(irq, Box::new(Broken(attempts.clone())));
        for &b in b"abc" {
            uart.write(RBR_THR, &[b]);
        }
        assert_eq!(*attempts.lock().unwrap(), 3, "keeps trying");
        assert!(uart.output_failed);
        let mut lsr = [0];
        uart.read(LSR, &mut lsr);
        assert_eq!(lsr[0], LSR_THRE | LSR_TEMT);
    }

    #[test]
    fn wide_and_out_of_range_accesses() {
        let mut r = Rig::new();
        r.setup(0xc7, 0);
        // A word write at LCR is LCR then MCR, as the ISA bus splits it.
        r.uart.write(LCR, &[0x03, MCR_OUT2]);
        assert_eq!((r.inb(LCR), r.inb(MCR)), (0x03, MCR_OUT2));
        // A dword read at SCR runs off the end: the rest reads as 0xFF.
        r.outb(SCR, 0x42);
        let mut data = [0; 4];
        r.uart.read(SCR, &mut data);
        assert_eq!(data, [0x42, 0xff, 0xff, 0xff]);
        r.uart.write(SCR, &[1, 2, 3, 4]);
        assert_eq!(r.inb(SCR), 1);
        r.uart.read(u64::MAX, &mut data);
        assert_eq!(data, [0xff; 4]);
        r.uart.write(u64::MAX, &[1, 2]);
        r.uart.read(0, &mut []);
        r.uart.write(0, &[]);
        // Status registers are read-only.
        r.outb(LSR, 0xff);
        r.outb(MSR, 0x0f);
        assert_eq!(r.inb(LSR), 0x60);
        assert_eq!(r.inb(MSR), 0xb0);
    }

    #[test]
    fn random_register_traffic_keeps_invariants() {
        let mut r = Rig::new();
        let mut seed: u32 = 0x1234_5678;
        let mut next = || {
            seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (seed >> 16) as u8
        };
        for _ in 0..20_000 {
            let op = next();
            let port = u64::from(next() % 8);
            let value = next();
            match op % 4 {
                0 => r.outb(port, value),
                1 => {
                    r.inb(port);
                }
                2 => {
                    r.uart.receive(&[value; 5]);
                }
                _ => {
                    r.uart.write(port, &[value, next()]);
                }
            }
            assert!(r.uart.rx_fifo.len() <= FIFO_SIZE);
            let gate = r.uart.mcr & MCR_OUT2 != 0 && r.uart.mcr & MCR_LOOP == 0;
            assert_eq!(r.irq.level(), gate && r.uart.pending_interrupt().is_some());
        }
    }
}
