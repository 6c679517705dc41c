//! 16550A UART (National Semiconductor PC16550D datasheet), as COM1.
//!
//! Registers RBR/THR, IER, IIR/FCR, LCR, MCR, LSR, MSR, SCR and the divisor
//! latch; a 16-byte receive FIFO with trigger levels; the interrupt
//! priorities of datasheet table IV; loopback mode; and, as on every PC, the
//! interrupt output gated by MCR OUT2.
//!
//! Not emulated: baud rate and character timing (bytes move at once, so the
//! transmitter is always empty and the receive FIFO fills only as fast as
//! the host side offers bytes, which it never overruns), parity and framing
//! errors, break, and the character timeout counter (data below the trigger
//! level is reported as a timeout at once).

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

use super::{BusDevice, IrqLine};

// Register offsets (datasheet table II).
const RBR_THR_DLL: u64 = 0;
const IER_DLM: u64 = 1;
const IIR_FCR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const MSR: u64 = 6;
const SCR: u64 = 7;

// IER bits.
const IER_ERBFI: u8 = 0x01; // received data available
const IER_ETBEI: u8 = 0x02; // transmitter holding register empty
const IER_ELSI: u8 = 0x04; // receiver line status
const IER_EDSSI: u8 = 0x08; // modem status

// IIR values, highest priority first.
const IIR_NONE: u8 = 0x01;
const IIR_LINE_STATUS: u8 = 0x06;
const IIR_RX_DATA: u8 = 0x04;
const IIR_RX_TIMEOUT: u8 = 0x0c;
const IIR_THR_EMPTY: u8 = 0x02;
const IIR_MODEM_STATUS: u8 = 0x00;
const IIR_FIFOS_ENABLED: u8 = 0xc0;

// FCR bits.
const FCR_ENABLE: u8 = 0x01;
const FCR_CLEAR_RX: u8 = 0x02;

const LCR_DLAB: u8 = 0x80;

// MCR bits.
const MCR_DTR: u8 = 0x01;
const MCR_RTS: u8 = 0x02;
const MCR_OUT1: u8 = 0x04;
const MCR_OUT2: u8 = 0x08;
const MCR_LOOP: u8 = 0x10;

// LSR bits.
const LSR_DR: u8 = 0x01;
const LSR_OE: u8 = 0x02;
const LSR_THRE: u8 = 0x20;
const LSR_TEMT: u8 = 0x40;

// MSR bits.
const MSR_DCTS: u8 = 0x01;
const MSR_DDSR: u8 = 0x02;
const MSR_TERI: u8 = 0x04;
const MSR_DDCD: u8 = 0x08;
const MSR_CTS: u8 = 0x10;
const MSR_DSR: u8 = 0x20;
const MSR_RI: u8 = 0x40;
const MSR_DCD: u8 = 0x80;
const MSR_DELTAS: u8 = MSR_DCTS | MSR_DDSR | MSR_TERI | MSR_DDCD;

const FIFO_SIZE: usize = 16;

pub struct Uart16550 {
    irq: Arc<dyn IrqLine>,
    output: Box<dyn Write + Send>,
    output_failed: bool,
    rx: VecDeque<u8>,
    ier: u8,
    fcr: u8,
    lcr: u8,
    mcr: u8,
    /// Sticky line-status error bits (overrun), cleared by reading LSR.
    lsr_errors: u8,
    msr: u8,
    scr: u8,
    divisor: u16,
    /// The THR-empty interrupt is pending (set when THR empties with ETBEI
    /// on, cleared by reading IIR while it is the one reported, or by a
    /// write to THR).
    thr_empty_pending: bool,
    irq_level: bool,
}

impl Uart16550 {
    pub fn new(irq: Arc<dyn IrqLine>, output: Box<dyn Write + Send>) -> Self {
        Self {
            irq,
            output,
            output_failed: false,
            rx: VecDeque::with_capacity(FIFO_SIZE),
            ier: 0,
            fcr: 0,
            lcr: 0x03, // 8N1
            mcr: MCR_OUT2,
            lsr_errors: 0,
            // A terminal is attached and ready.
            msr: MSR_DCD | MSR_DSR | MSR_CTS,
            scr: 0,
            divisor: 12, // 9600 baud
            thr_empty_pending: false,
            irq_level: false,
        }
    }

    fn fifo_enabled(&self) -> bool {
        self.fcr & FCR_ENABLE != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled() {
            FIFO_SIZE
        } else {
            1
        }
    }

    /// How many bytes [`Uart16550::receive`] would accept now.
    pub fn rx_room(&self) -> usize {
        self.rx_capacity().saturating_sub(self.rx.len())
    }

    /// Offers bytes typed at the console; returns how many were taken.
    /// The caller keeps the rest and offers it again later, so nothing is
    /// lost to an overrun.
    pub fn receive(&mut self, bytes: &[u8]) -> usize {
        if self.mcr & MCR_LOOP != 0 {
            // In loopback the receiver hears only the transmitter.
            return 0;
        }
        let taken = bytes.len().min(self.rx_room());
        self.rx.extend(&bytes[..taken]);
        self.update_irq();
        taken
    }

    fn trigger_level(&self) -> usize {
        match self.fcr >> 6 {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        }
    }

    /// The highest-priority pending interrupt, as IIR bits 3:0.
    fn pending(&self) -> u8 {
        if self.ier & IER_ELSI != 0 && self.lsr_errors != 0 {
            IIR_LINE_STATUS
        } else if self.ier & IER_ERBFI != 0 && !self.rx.is_empty() {
            if !self.fifo_enabled() || self.rx.len() >= self.trigger_level() {
                IIR_RX_DATA
            } else {
                IIR_RX_TIMEOUT
            }
        } else if self.ier & IER_ETBEI != 0 && self.thr_empty_pending {
            IIR_THR_EMPTY
        } else if self.ier & IER_EDSSI != 0 && self.msr & MSR_DELTAS != 0 {
            IIR_MODEM_STATUS
        } else {
            IIR_NONE
        }
    }

    fn update_irq(&mut self) {
        // On PCs the INTR pin reaches the PIC only through the OUT2-gated buffer.
        let level = self.pending() != IIR_NONE && self.mcr & MCR_OUT2 != 0;
        if level != self.irq_level {
            self.irq_level = level;
            self.irq.set_level(level);
        }
    }

    fn transmit(&mut self, byte: u8) {
        if self.mcr & MCR_LOOP != 0 {
            if self.rx.len() < self.rx_capacity() {
                self.rx.push_back(byte);
            } else {
                self.lsr_errors |= LSR_OE;
            }
        } else if let Err(e) = self
            .output
            .write_all(&[byte])
            .and_then(|_| self.output.flush())
        {
            if !self.output_failed {
                tracing::warn!("serial output failed, dropping guest output: {e}");
                self.output_failed = true;
            }
        }
        // The byte left at once: THR is empty again.
        self.thr_empty_pending = true;
    }

    fn msr_value(&self) -> u8 {
        if self.mcr & MCR_LOOP != 0 {
            // Loopback wires the modem outputs back to the inputs (§8.6).
            let m = self.mcr;
            let mut value = self.msr & MSR_DELTAS;
            if m & MCR_RTS != 0 {
                value |= MSR_CTS;
            }
            if m & MCR_DTR != 0 {
                value |= MSR_DSR;
            }
            if m & MCR_OUT1 != 0 {
                value |= MSR_RI;
            }
            if m & MCR_OUT2 != 0 {
                value |= MSR_DCD;
            }
            value
        } else {
            self.msr
        }
    }

    fn read_register(&mut self, offset: u64) -> u8 {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR_DLL if dlab => self.divisor as u8,
            RBR_THR_DLL => {
                let byte = self.rx.pop_front().unwrap_or(0);
                self.update_irq();
                byte
            }
            IER_DLM if dlab => (self.divisor >> 8) as u8,
            IER_DLM => self.ier,
            IIR_FCR => {
                let pending = self.pending();
                if pending == IIR_THR_EMPTY {
                    // Reading IIR acknowledges a THR-empty interrupt.
                    self.thr_empty_pending = false;
                    self.update_irq();
                }
                let fifos = if self.fifo_enabled() {
                    IIR_FIFOS_ENABLED
                } else {
                    0
                };
                pending | fifos
            }
            LCR => self.lcr,
            MCR => self.mcr,
            LSR => {
                let mut value = LSR_THRE | LSR_TEMT | self.lsr_errors;
                if !self.rx.is_empty() {
                    value |= LSR_DR;
                }
                self.lsr_errors = 0;
                self.update_irq();
                value
            }
            MSR => {
                let value = self.msr_value();
                self.msr &= !MSR_DELTAS;
                self.update_irq();
                value
            }
            SCR => self.scr,
            _ => 0xff,
        }
    }

    fn write_register(&mut self, offset: u64, value: u8) {
        let dlab = self.lcr & LCR_DLAB != 0;
        match offset {
            RBR_THR_DLL if dlab => self.divisor = (self.divisor & 0xff00) | value as u16,
            RBR_THR_DLL => {
                self.thr_empty_pending = false;
                self.transmit(value);
            }
            IER_DLM if dlab => self.divisor = (self.divisor & 0x00ff) | (value as u16) << 8,
            IER_DLM => {
                let enabling_thre = value & IER_ETBEI != 0 && self.ier & IER_ETBEI == 0;
                self.ier = value & 0x0f;
                if enabling_thre {
                    // THR is always empty here, so enabling ETBEI raises it at once.
                    self.thr_empty_pending = true;
                }
            }
            IIR_FCR => {
                let was_enabled = self.fifo_enabled();
                if value & FCR_CLEAR_RX != 0 || (value & FCR_ENABLE != 0) != was_enabled {
                    // Clearing, or switching FIFO mode, empties the receiver.
                    self.rx.clear();
                }
                self.fcr = value & 0xc9;
            }
            LCR => self.lcr = value,
            MCR => self.mcr = value & 0x1f,
            LSR | MSR => {} // factory test registers
            SCR => self.scr = value,
            _ => {}
        }
        self.update_irq();
    }
}

impl BusDevice for Uart16550 {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // Wider accesses touch consecutive registers, as on an ISA bus.
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = self.read_register(offset + i as u64);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            self.write_register(offset + i as u64, byte);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;
    use crate::devices::irq::FakeIrq;

    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<u8>>>);

    impl Write for Capture {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn uart() -> (Uart16550, Arc<FakeIrq>, Capture) {
        let irq = FakeIrq::new();
        let out = Capture::default();
        (Uart16550::new(irq.clone(), Box::new(out.clone())), irq, out)
    }

    fn inb(u: &mut Uart16550, offset: u64) -> u8 {
        let mut b = [0];
        u.read(offset, &mut b);
        b[0]
    }

    fn outb(u: &mut Uart16550, offset: u64, value: u8) {
        u.write(offset, &[value]);
    }

    /// What a driver does first: 115200 8N1, FIFOs on, DTR/RTS/OUT2.
    fn init(u: &mut Uart16550) {
        outb(u, LCR, 0x80);
        outb(u, RBR_THR_DLL, 1);
        outb(u, IER_DLM, 0);
        outb(u, LCR, 0x03);
        outb(u, IIR_FCR, 0xc7);
        outb(u, MCR, 0x0b);
    }

    #[test]
    fn divisor_latch_and_registers_read_back() {
        let (mut u, _, _) = uart();
        outb(&mut u, LCR, 0x83);
        outb(&mut u, RBR_THR_DLL, 0x34);
        outb(&mut u, IER_DLM, 0x12);
        assert_eq!((inb(&mut u, 0), inb(&mut u, 1)), (0x34, 0x12));
        outb(&mut u, LCR, 0x03);
        outb(&mut u, SCR, 0x5a);
        assert_eq!(inb(&mut u, SCR), 0x5a);
        assert_eq!(inb(&mut u, IER_DLM), 0, "IER is separate from DLM");
    }

    #[test]
    fn transmitted_bytes_reach_the_output() {
        let (mut u, _, out) = uart();
        init(&mut u);
        for &b in b"hi\n" {
            assert_ne!(inb(&mut u, LSR) & LSR_THRE, 0);
            outb(&mut u, RBR_THR_DLL, b);
        }
        assert_eq!(out.0.lock().unwrap().as_slice(), b"hi\n");
    }

    #[test]
    fn received_bytes_raise_the_interrupt_until_read() {
        let (mut u, irq, _) = uart();
        init(&mut u);
        outb(&mut u, IER_DLM, IER_ERBFI);
        assert!(!irq.level());
        assert_eq!(u.receive(b"ab"), 2);
        assert!(irq.level());
        // Below the 14-byte trigger: reported as a character timeout.
        assert_eq!(inb(&mut u, IIR_FCR), 0xc0 | IIR_RX_TIMEOUT);
        assert_eq!(inb(&mut u, LSR) & LSR_DR, LSR_DR);
        assert_eq!(inb(&mut u, RBR_THR_DLL), b'a');
        assert!(irq.level());
        assert_eq!(inb(&mut u, RBR_THR_DLL), b'b');
        assert!(!irq.level());
        assert_eq!(inb(&mut u, IIR_FCR), 0xc0 | IIR_NONE);
    }

    #[test]
    fn the_fifo_fills_to_sixteen_and_the_rest_waits() {
        let (mut u, _, _) = uart();
        init(&mut u);
        let input: Vec<u8> = (0..20).collect();
        assert_eq!(u.receive(&input), 16);
        assert_eq!(u.rx_room(), 0);
        assert_eq!(u.receive(&input[16..]), 0);
        let got: Vec<u8> = (0..16).map(|_| inb(&mut u, RBR_THR_DLL)).collect();
        assert_eq!(got, (0..16).collect::<Vec<u8>>());
        assert_eq!(inb(&mut u, LSR) & LSR_DR, 0);
    }

    #[test]
    fn without_fifo_one_byte_is_held() {
        let (mut u, _, _) = uart();
        assert_eq!(u.receive(b"xyz"), 1);
        assert_eq!(inb(&mut u, RBR_THR_DLL), b'x');
    }

    #[test]
    fn thr_empty_interrupt_is_acknowledged_by_reading_iir() {
        let (mut u, irq, _) = uart();
        init(&mut u);
        outb(&mut u, IER_DLM, IER_ETBEI);
        assert!(irq.level(), "enabling ETBEI with an empty THR interrupts");
        assert_eq!(inb(&mut u, IIR_FCR) & 0x0f, IIR_THR_EMPTY);
        assert!(!irq.level());
        assert_eq!(inb(&mut u, IIR_FCR) & 0x0f, IIR_NONE);
        outb(&mut u, RBR_THR_DLL, b'x');
        assert!(irq.level(), "THR empties again after the byte leaves");
    }

    #[test]
    fn received_data_outranks_thr_empty() {
        let (mut u, _, _) = uart();
        init(&mut u);
        outb(&mut u, IER_DLM, IER_ERBFI | IER_ETBEI);
        u.receive(b"k");
        assert_eq!(inb(&mut u, IIR_FCR) & 0x0f, IIR_RX_TIMEOUT);
        inb(&mut u, RBR_THR_DLL);
        assert_eq!(inb(&mut u, IIR_FCR) & 0x0f, IIR_THR_EMPTY);
    }

    #[test]
    fn out2_gates_the_interrupt_line() {
        let (mut u, irq, _) = uart();
        init(&mut u);
        outb(&mut u, MCR, MCR_DTR | MCR_RTS);
        outb(&mut u, IER_DLM, IER_ERBFI);
        u.receive(b"z");
        assert!(!irq.level(), "no OUT2, no IRQ");
        assert_eq!(
            inb(&mut u, IIR_FCR) & 0x0f,
            IIR_RX_TIMEOUT,
            "still pending in IIR"
        );
        outb(&mut u, MCR, MCR_DTR | MCR_RTS | MCR_OUT2);
        assert!(irq.level());
    }

    #[test]
    fn loopback_returns_what_is_sent_and_overruns_show_in_lsr() {
        let (mut u, irq, out) = uart();
        init(&mut u);
        outb(&mut u, MCR, MCR_LOOP | MCR_OUT2 | MCR_RTS);
        outb(&mut u, IER_DLM, IER_ELSI);
        assert_eq!(
            inb(&mut u, MSR) & (MSR_CTS | MSR_DCD | MSR_DSR),
            MSR_CTS | MSR_DCD
        );
        for b in 0..17u8 {
            outb(&mut u, RBR_THR_DLL, b);
        }
        assert!(
            out.0.lock().unwrap().is_empty(),
            "loopback sends nothing out"
        );
        assert!(irq.level(), "overrun raises a line-status interrupt");
        assert_eq!(inb(&mut u, IIR_FCR) & 0x0f, IIR_LINE_STATUS);
        assert_eq!(inb(&mut u, LSR) & (LSR_OE | LSR_DR), LSR_OE | LSR_DR);
        assert_eq!(
            inb(&mut u, LSR) & LSR_OE,
            0,
            "overrun is cleared by reading LSR"
        );
        assert_eq!(inb(&mut u, RBR_THR_DLL), 0);
        assert_eq!(
            u.receive(b"q"),
            0,
            "the outside line is disconnected in loopback"
        );
    }

    #[test]
    fn fifo_clear_empties_the_receiver() {
        let (mut u, _, _) = uart();
        init(&mut u);
        u.receive(b"abc");
        outb(&mut u, IIR_FCR, 0xc3);
        assert_eq!(inb(&mut u, LSR) & LSR_DR, 0);
    }

    #[test]
    fn hostile_accesses_do_not_panic() {
        let (mut u, _, _) = uart();
        let mut seed = 0x1234_5678u32;
        for _ in 0..20_000 {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let offset = (seed >> 8) as u64 % 10;
            let value = (seed >> 16) as u8;
            if seed & 1 == 0 {
                u.write(offset, &[value, value]);
            } else {
                let mut data = [0; 3];
                u.read(offset, &mut data);
            }
            u.receive(&[value]);
        }
    }
}
