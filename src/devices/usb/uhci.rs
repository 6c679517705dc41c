//! The PIIX3 USB host controller: a UHCI, PCI function 00:01.2 (Intel
//! 82371SB, 8086:7020), with two root-hub ports.
//!
//! References: Universal Host Controller Interface Design Guide, revision
//! 1.1 (Intel, 1996): §2 registers, §3 data structures (frame list, transfer
//! descriptors, queue heads), §4 schedule processing; the PIIX3 datasheet
//! §2.5 for the PCI function (USBBA in BAR4, SBRN, LEGSUP).
//!
//! A frame timer calls [`Uhci::run_frame`] once per millisecond of elapsed
//! time (the VMM may batch a few). Each frame walks the schedule from the
//! frame list entry FRNUM points at: queue heads and transfer descriptors,
//! both horizontally and, where a TD asks for it, depth first. Every walk is
//! bounded ([`MAX_ELEMENTS_PER_FRAME`]), so a schedule that loops (Linux
//! links its last QH back for bandwidth reclamation) or a hostile one costs
//! at most that much per frame. A schedule address outside guest RAM halts
//! the controller with Host System Error, as a PCI master abort does.
//!
//! Transactions complete within the frame: a device answers at once with
//! data, NAK (the TD stays active and is retried next frame) or STALL.
//!
//! Not emulated: bandwidth and frame timing within a frame (any number of
//! TDs complete per frame), isochronous TDs (executed as ordinary ones),
//! CRC/bit-stuff errors and the three-strike error counter (a missing
//! device fails at the first try with a time-out), data-toggle checking,
//! suspend and resume signalling, the legacy keyboard/mouse emulation
//! (LEGSUP is stored, its traps never fire), low-speed devices.

use std::sync::Arc;

use vm_memory::{Bytes, GuestAddress};

use super::{UsbDevice, UsbResponse, PID_IN, PID_OUT, PID_SETUP};
use crate::devices::irq::IrqLine;
use crate::devices::pci::host_bridge::{SUBSYSTEM_QEMU, SUBSYSTEM_VENDOR_QEMU, VENDOR_INTEL};
use crate::devices::pci::{BarKind, PciClass, PciConfig, PciDevice};
use crate::devices::GuestRam;
use crate::guest_warn;

/// PCI device ID of the PIIX3 USB function.
pub const DEVICE_PIIX3_UHCI: u16 = 0x7020;
/// USBBA, the I/O base of the registers, is BAR4 (datasheet §2.5.9).
pub const BAR_IO: usize = 4;
/// Bytes of I/O space the registers take.
pub const IO_SIZE: u64 = 32;
/// Root-hub ports.
pub const PORTS: usize = 2;
/// Schedule elements (QHs and TDs) one frame may visit.
pub const MAX_ELEMENTS_PER_FRAME: usize = 512;
/// Largest TD data buffer (Design Guide §3.2.3: MaxLen up to 0x4FF).
const MAX_PACKET: usize = 1280;

/// Serial Bus Release Number register: USB 1.0 (datasheet §2.5.11).
const SBRN: usize = 0x60;
/// LEGSUP, legacy support (datasheet §2.5.12); PIRQ enable set at reset.
const LEGSUP: usize = 0xc0;

// ---- I/O registers (Design Guide §2.1), offsets from USBBA ---------------

const USBCMD: u64 = 0x00;
const USBSTS: u64 = 0x02;
const USBINTR: u64 = 0x04;
const FRNUM: u64 = 0x06;
const FLBASEADD: u64 = 0x08;
const SOFMOD: u64 = 0x0c;
const PORTSC1: u64 = 0x10;

// USBCMD bits.
pub const CMD_RS: u16 = 1 << 0;
pub const CMD_HCRESET: u16 = 1 << 1;
pub const CMD_GRESET: u16 = 1 << 2;
const CMD_WRITABLE: u16 = 0x00ff;

// USBSTS bits (write 1 to clear).
pub const STS_USBINT: u16 = 1 << 0;
pub const STS_ERROR: u16 = 1 << 1;
pub const STS_RESUME: u16 = 1 << 2;
pub const STS_HOST_SYSTEM_ERROR: u16 = 1 << 3;
pub const STS_PROCESS_ERROR: u16 = 1 << 4;
pub const STS_HALTED: u16 = 1 << 5;

// USBINTR bits.
pub const INTR_TIMEOUT_CRC: u16 = 1 << 0;
pub const INTR_RESUME: u16 = 1 << 1;
pub const INTR_IOC: u16 = 1 << 2;
pub const INTR_SHORT_PACKET: u16 = 1 << 3;

// PORTSC bits (Design Guide §2.1.7).
pub const PORT_CCS: u16 = 1 << 0;
pub const PORT_CSC: u16 = 1 << 1;
pub const PORT_PE: u16 = 1 << 2;
pub const PORT_PEC: u16 = 1 << 3;
pub const PORT_RESUME_DETECT: u16 = 1 << 6;
/// Reserved, always reads 1: drivers count ports by it.
pub const PORT_RESERVED_ONE: u16 = 1 << 7;
pub const PORT_RESET: u16 = 1 << 9;
pub const PORT_SUSPEND: u16 = 1 << 12;
const PORT_WRITE_CLEAR: u16 = PORT_CSC | PORT_PEC;
const PORT_WRITABLE: u16 = PORT_PE | PORT_RESUME_DETECT | PORT_RESET | PORT_SUSPEND;

// ---- Schedule structures (Design Guide §3) --------------------------------

/// Link pointer bits: terminate, the target is a QH, depth first (TDs only).
pub const LINK_TERMINATE: u32 = 1 << 0;
pub const LINK_QH: u32 = 1 << 1;
pub const LINK_DEPTH_FIRST: u32 = 1 << 2;
const LINK_ADDRESS: u32 = !0xf;

// TD control and status dword.
const TD_ACTLEN: u32 = 0x7ff;
pub const TD_CRC_TIMEOUT: u32 = 1 << 18;
pub const TD_NAK: u32 = 1 << 19;
pub const TD_STALLED: u32 = 1 << 22;
pub const TD_ACTIVE: u32 = 1 << 23;
pub const TD_IOC: u32 = 1 << 24;
pub const TD_SPD: u32 = 1 << 29;
const TD_STATUS: u32 = 0xff << 16;
const TD_ERROR_COUNT: u32 = 3 << 27;

/// What one TD did, for the walk to decide where to go next.
enum TdOutcome {
    /// Done: a queue advances past it.
    Complete,
    /// Not active, NAKed, short, or failed: a queue stays on it.
    Stay,
}

struct Port {
    status: u16,
    device: Option<Box<dyn UsbDevice>>,
}

impl Port {
    /// The state after a controller reset: connected (and changed) if a
    /// device is plugged in, not enabled.
    fn reset(&mut self) {
        self.status = PORT_RESERVED_ONE;
        if let Some(device) = &mut self.device {
            device.reset();
            self.status |= PORT_CCS | PORT_CSC;
        }
    }
}

pub struct Uhci {
    config: PciConfig,
    mem: GuestRam,
    irq: Arc<dyn IrqLine>,
    cmd: u16,
    sts: u16,
    intr: u16,
    frnum: u16,
    flbaseadd: u32,
    sofmod: u8,
    ports: [Port; PORTS],
    /// Why USBINT is set: IOC (bit 0) and short packet (bit 1), each
    /// gated by its own USBINTR enable (as QEMU's `status2`).
    usbint_causes: u8,
}

impl Uhci {
    pub fn new(mem: GuestRam, irq: Arc<dyn IrqLine>) -> Self {
        let class = PciClass {
            base: 0x0c, // serial bus
            sub: 0x03,  // USB
            prog_if: 0, // UHCI
        };
        let mut config = PciConfig::new(VENDOR_INTEL, DEVICE_PIIX3_UHCI, class, 1)
            .with_subsystem(SUBSYSTEM_VENDOR_QEMU, SUBSYSTEM_QEMU)
            .with_interrupt_pin(4) // INTD#, as on the PIIX3
            .with_bar(BAR_IO, BarKind::Io, IO_SIZE)
            .with_writable(LEGSUP, 0xff)
            .with_writable(LEGSUP + 1, 0xff);
        config.set_u8(SBRN, 0x10);
        config.set_u16(LEGSUP, 0x2000);
        let mut uhci = Self {
            config,
            mem,
            irq,
            cmd: 0,
            sts: 0,
            intr: 0,
            frnum: 0,
            flbaseadd: 0,
            sofmod: 0,
            ports: [
                Port {
                    status: 0,
                    device: None,
                },
                Port {
                    status: 0,
                    device: None,
                },
            ],
            usbint_causes: 0,
        };
        uhci.reset();
        uhci
    }

    /// Plugs `device` into root-hub port `port` (0 or 1).
    pub fn attach(&mut self, port: usize, device: Box<dyn UsbDevice>) {
        self.ports[port].device = Some(device);
        self.ports[port].reset();
    }

    /// Whether the schedule runs (USBCMD.RS).
    pub fn running(&self) -> bool {
        self.cmd & CMD_RS != 0
    }

    /// Controller reset: registers to their defaults, ports and devices reset.
    fn reset(&mut self) {
        self.cmd = 0;
        self.sts = STS_HALTED;
        self.intr = 0;
        self.frnum = 0;
        self.flbaseadd = 0;
        self.sofmod = 0x40;
        self.usbint_causes = 0;
        for port in &mut self.ports {
            port.reset();
        }
        self.update_irq();
    }

    fn update_irq(&self) {
        let level = (self.usbint_causes & 1 != 0 && self.intr & INTR_IOC != 0)
            || (self.usbint_causes & 2 != 0 && self.intr & INTR_SHORT_PACKET != 0)
            || (self.sts & STS_ERROR != 0 && self.intr & INTR_TIMEOUT_CRC != 0)
            || (self.sts & STS_RESUME != 0 && self.intr & INTR_RESUME != 0)
            || self.sts & (STS_HOST_SYSTEM_ERROR | STS_PROCESS_ERROR) != 0;
        self.irq.set_level(level && !self.config.intx_disabled());
    }

    fn read16(&self, offset: u64) -> u16 {
        match offset {
            USBCMD => self.cmd,
            USBSTS => self.sts,
            USBINTR => self.intr,
            FRNUM => self.frnum,
            FLBASEADD => self.flbaseadd as u16,
            0x0a => (self.flbaseadd >> 16) as u16,
            SOFMOD => self.sofmod as u16,
            0x10 | 0x12 => self.ports[((offset - PORTSC1) / 2) as usize].status,
            // Reads beyond the two ports: 0x14 is the reserved-bit test Linux
            // uses to count ports, and must not look like a port.
            _ => 0,
        }
    }

    fn write16(&mut self, offset: u64, value: u16) {
        match offset {
            USBCMD => {
                if value & (CMD_GRESET | CMD_HCRESET) != 0 {
                    self.reset();
                    return;
                }
                self.cmd = value & CMD_WRITABLE;
                if self.running() {
                    self.sts &= !STS_HALTED;
                } else {
                    self.sts |= STS_HALTED;
                }
            }
            USBSTS => {
                self.sts &= !(value & 0x3f & !STS_HALTED);
                if value & STS_USBINT != 0 {
                    self.usbint_causes = 0;
                }
                self.update_irq();
            }
            USBINTR => {
                self.intr = value & 0x0f;
                self.update_irq();
            }
            FRNUM => self.frnum = value & 0x7ff,
            FLBASEADD => self.flbaseadd = (self.flbaseadd & 0xffff_0000) | (value & 0xf000) as u32,
            0x0a => self.flbaseadd = (self.flbaseadd & 0xffff) | ((value as u32) << 16),
            SOFMOD => self.sofmod = value as u8 & 0x7f,
            0x10 | 0x12 => self.write_portsc(((offset - PORTSC1) / 2) as usize, value),
            _ => guest_warn!(offset, value, "UHCI: write to a reserved register"),
        }
    }

    fn write_portsc(&mut self, n: usize, value: u16) {
        let port = &mut self.ports[n];
        let old = port.status;
        if value & PORT_RESET != 0 && old & PORT_RESET == 0 {
            // Reset signalling starts: the device goes back to address 0
            // and the port is disabled until software enables it again.
            if let Some(device) = &mut port.device {
                device.reset();
            }
        }
        let mut new = (old & !PORT_WRITABLE & !PORT_WRITE_CLEAR) | (value & PORT_WRITABLE);
        new |= old & PORT_WRITE_CLEAR & !value;
        if new & PORT_RESET != 0 || new & PORT_CCS == 0 {
            new &= !PORT_PE;
        }
        port.status = new;
    }

    /// Processes one frame and advances FRNUM (Design Guide §4).
    pub fn run_frame(&mut self) {
        if !self.running() {
            return;
        }
        if self.config.bus_master() {
            if let Err(address) = self.walk_schedule() {
                guest_warn!(address, "UHCI: schedule outside guest RAM; halting");
                self.sts |= STS_HOST_SYSTEM_ERROR | STS_HALTED;
                self.cmd &= !CMD_RS;
                self.update_irq();
                return;
            }
        }
        self.frnum = (self.frnum + 1) & 0x7ff;
    }

    fn read_u32(&self, address: u32) -> Result<u32, u32> {
        let mut bytes = [0u8; 4];
        self.mem
            .read_slice(&mut bytes, GuestAddress(address as u64))
            .map_err(|_| address)?;
        Ok(u32::from_le_bytes(bytes))
    }

    fn write_u32(&self, address: u32, value: u32) -> Result<(), u32> {
        self.mem
            .write_slice(&value.to_le_bytes(), GuestAddress(address as u64))
            .map_err(|_| address)
    }

    /// Walks this frame's schedule; `Err` holds an address outside RAM.
    fn walk_schedule(&mut self) -> Result<(), u32> {
        let entry = (self.flbaseadd & 0xffff_f000) + (self.frnum as u32 & 0x3ff) * 4;
        let mut link = self.read_u32(entry)?;
        // The queue head whose element list is being walked, with its
        // horizontal link.
        let mut queue: Option<(u32, u32)> = None;
        let mut pending = 0u8;
        for _ in 0..MAX_ELEMENTS_PER_FRAME {
            if link & LINK_TERMINATE != 0 {
                match queue.take() {
                    Some((_, head)) => {
                        link = head;
                        continue;
                    }
                    None => break,
                }
            }
            let address = link & LINK_ADDRESS;
            if link & LINK_QH != 0 {
                let head = self.read_u32(address)?;
                let element = self.read_u32(address.wrapping_add(4))?;
                queue = Some((address, head));
                link = element;
                continue;
            }
            let td_link = self.read_u32(address)?;
            let outcome = self.execute_td(address, &mut pending)?;
            link = match (outcome, queue) {
                (TdOutcome::Complete, Some((qh, head))) => {
                    // The queue advances to the next TD (§3.3.2), and goes on
                    // down it only if the TD asked for depth first.
                    self.write_u32(qh.wrapping_add(4), td_link)?;
                    if td_link & (LINK_DEPTH_FIRST | LINK_TERMINATE) == LINK_DEPTH_FIRST {
                        td_link
                    } else {
                        queue = None;
                        head
                    }
                }
                (TdOutcome::Stay, Some((_, head))) => {
                    queue = None;
                    head
                }
                (_, None) => td_link,
            };
        }
        if pending != 0 {
            self.usbint_causes |= pending;
            self.sts |= STS_USBINT;
            self.update_irq();
        }
        Ok(())
    }

    /// Executes the TD at `address` if active; records IOC / short-packet
    /// interrupt causes in `pending`.
    fn execute_td(&mut self, address: u32, pending: &mut u8) -> Result<TdOutcome, u32> {
        let mut ctrl = self.read_u32(address.wrapping_add(4))?;
        if ctrl & TD_ACTIVE == 0 {
            return Ok(TdOutcome::Stay);
        }
        let token = self.read_u32(address.wrapping_add(8))?;
        let buffer = self.read_u32(address.wrapping_add(12))?;
        let pid = token as u8;
        let device_address = ((token >> 8) & 0x7f) as u8;
        let endpoint = ((token >> 15) & 0xf) as u8;
        let max_len = (((token >> 21) + 1) & 0x7ff) as usize;
        if max_len > MAX_PACKET {
            guest_warn!(max_len, "UHCI: TD MaxLen beyond 1280 bytes");
            self.sts |= STS_PROCESS_ERROR | STS_HALTED;
            self.cmd &= !CMD_RS;
            self.update_irq();
            return Ok(TdOutcome::Stay);
        }
        let device = self.ports.iter_mut().find_map(|p| {
            p.device
                .as_mut()
                .filter(|d| p.status & PORT_PE != 0 && d.address() == device_address)
        });
        let response = match device {
            None => None,
            Some(device) => Some(match pid {
                PID_SETUP | PID_OUT => {
                    let mut data = vec![0u8; max_len];
                    self.mem
                        .read_slice(&mut data, GuestAddress(buffer as u64))
                        .map_err(|_| buffer)?;
                    if pid == PID_SETUP {
                        match <[u8; 8]>::try_from(data.as_slice()) {
                            Ok(request) => device.setup(request),
                            Err(_) => UsbResponse::Stall,
                        }
                    } else {
                        device.data_out(endpoint, &data)
                    }
                }
                PID_IN => {
                    let mut data = vec![0u8; max_len];
                    let response = device.data_in(endpoint, &mut data);
                    if let UsbResponse::Ack(n) = response {
                        self.mem
                            .write_slice(&data[..n], GuestAddress(buffer as u64))
                            .map_err(|_| buffer)?;
                    }
                    response
                }
                _ => {
                    guest_warn!(pid, "UHCI: TD with an unknown PID");
                    UsbResponse::Stall
                }
            }),
        };
        let outcome = match response {
            Some(UsbResponse::Ack(n)) => {
                ctrl &= !(TD_ACTIVE | TD_STATUS | TD_ACTLEN);
                ctrl |= (n as u32).wrapping_sub(1) & TD_ACTLEN;
                if ctrl & TD_IOC != 0 {
                    *pending |= 1;
                }
                if pid == PID_IN && n < max_len && ctrl & TD_SPD != 0 {
                    *pending |= 2;
                    TdOutcome::Stay
                } else {
                    TdOutcome::Complete
                }
            }
            Some(UsbResponse::Nak) => {
                ctrl |= TD_NAK;
                TdOutcome::Stay
            }
            failure => {
                // STALL from the device, or no device answering: a time-out.
                ctrl &= !(TD_ACTIVE | TD_ERROR_COUNT);
                ctrl |= if failure.is_some() {
                    TD_STALLED
                } else {
                    TD_CRC_TIMEOUT
                };
                if ctrl & TD_IOC != 0 {
                    *pending |= 1;
                }
                self.sts |= STS_ERROR;
                self.update_irq();
                TdOutcome::Stay
            }
        };
        self.write_u32(address.wrapping_add(4), ctrl)?;
        Ok(outcome)
    }
}

impl PciDevice for Uhci {
    fn config(&self) -> &PciConfig {
        &self.config
    }
    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        // The command register's INTx disable may have changed.
        self.update_irq();
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        if bar != BAR_IO {
            data.fill(0xff);
            return;
        }
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            *byte = (self.read16(at & !1) >> (8 * (at & 1))) as u8;
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != BAR_IO {
            return;
        }
        match (offset, data.len()) {
            (SOFMOD, 1) => self.write16(SOFMOD, data[0] as u16),
            (FLBASEADD, 4) => {
                self.write16(FLBASEADD, u16::from_le_bytes([data[0], data[1]]));
                self.write16(0x0a, u16::from_le_bytes([data[2], data[3]]));
            }
            (o, 2) if o % 2 == 0 => self.write16(o, u16::from_le_bytes([data[0], data[1]])),
            (o, 4) if o % 4 == 0 => {
                self.write16(o, u16::from_le_bytes([data[0], data[1]]));
                self.write16(o + 2, u16::from_le_bytes([data[2], data[3]]));
            }
            (o, 1) => {
                // One byte of a 16-bit register: the other byte keeps its
                // value, with write-1-to-clear bits written as 0.
                let register = o & !1;
                let keep = match register {
                    USBSTS => 0,
                    0x10 | 0x12 => self.read16(register) & !PORT_WRITE_CLEAR,
                    _ => self.read16(register),
                };
                let shift = 8 * (o & 1);
                let value = (keep & !(0xff << shift)) | ((data[0] as u16) << shift);
                self.write16(register, value);
            }
            _ => guest_warn!(offset, len = data.len(), "UHCI: unaligned register write"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::irq::FakeIrq;
    use crate::devices::usb::hid_tablet::{HidTablet, TabletInput};

    const IO: u64 = 0;
    const FRAME_LIST: u32 = 0x1000;
    const QH: u32 = 0x2000;
    const TDS: u32 = 0x3000;
    const DATA: u32 = 0x4000;

    /// A TD token: PID, device address, endpoint, MaxLen (n - 1; 0x7FF for 0).
    fn token(pid: u8, addr: u8, ep: u8, len: usize) -> u32 {
        let max = (len as u32).wrapping_sub(1) & 0x7ff;
        (max << 21) | ((ep as u32) << 15) | ((addr as u32) << 8) | pid as u32
    }

    fn ram() -> GuestRam {
        GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    struct Rig {
        uhci: Uhci,
        mem: GuestRam,
        irq: Arc<FakeIrq>,
        input: Arc<TabletInput>,
    }

    impl Rig {
        fn new() -> Self {
            let mem = ram();
            let irq = FakeIrq::new();
            let mut uhci = Uhci::new(mem.clone(), irq.clone());
            let input = TabletInput::new();
            uhci.attach(0, Box::new(HidTablet::new(input.clone())));
            // Bus master and I/O on.
            uhci.write_config(4, &[0x05, 0x00]);
            let rig = Self {
                uhci,
                mem,
                irq,
                input,
            };
            // Every frame list entry points at one QH that ends the schedule.
            for i in 0..1024 {
                rig.put(FRAME_LIST + 4 * i, QH | LINK_QH);
            }
            rig.put(QH, LINK_TERMINATE);
            rig.put(QH + 4, LINK_TERMINATE);
            rig
        }
        fn put(&self, at: u32, value: u32) {
            self.mem
                .write_slice(&value.to_le_bytes(), GuestAddress(at as u64))
                .unwrap();
        }
        fn get(&self, at: u32) -> u32 {
            let mut b = [0u8; 4];
            self.mem
                .read_slice(&mut b, GuestAddress(at as u64))
                .unwrap();
            u32::from_le_bytes(b)
        }
        fn out16(&mut self, reg: u64, value: u16) {
            self.uhci.write_bar(BAR_IO, IO + reg, &value.to_le_bytes());
        }
        fn in16(&mut self, reg: u64) -> u16 {
            let mut b = [0u8; 2];
            self.uhci.read_bar(BAR_IO, IO + reg, &mut b);
            u16::from_le_bytes(b)
        }
        fn start(&mut self) {
            self.uhci
                .write_bar(BAR_IO, FLBASEADD, &FRAME_LIST.to_le_bytes());
            // Reset then enable port 1, as a driver does.
            self.out16(PORTSC1, PORT_RESET);
            self.out16(PORTSC1, 0);
            self.out16(PORTSC1, PORT_PE | PORT_CSC);
            self.out16(USBCMD, CMD_RS);
        }
        /// Writes a TD at `at`: link, control (active + `flags`), token, buffer.
        fn td(&self, at: u32, link: u32, flags: u32, token: u32, buf: u32) {
            self.put(at, link);
            self.put(at + 4, TD_ACTIVE | (3 << 27) | flags);
            self.put(at + 8, token);
            self.put(at + 12, buf);
        }
        fn queue(&self, first_td: u32) {
            self.put(QH + 4, first_td);
        }
        /// A control transfer: SETUP, `data_len` bytes of IN data in
        /// 8-byte packets, and an OUT status stage; returns the data.
        fn control(&mut self, addr: u8, setup: [u8; 8], data_len: usize) -> Vec<u8> {
            self.mem
                .write_slice(&setup, GuestAddress(DATA as u64))
                .unwrap();
            let mut at = TDS;
            let packets = data_len.div_ceil(8);
            self.td(
                at,
                (at + 16) | LINK_DEPTH_FIRST,
                0,
                token(PID_SETUP, addr, 0, 8),
                DATA,
            );
            for i in 0..packets {
                at += 16;
                let len = (data_len - 8 * i).min(8);
                self.td(
                    at,
                    (at + 16) | LINK_DEPTH_FIRST,
                    0,
                    token(PID_IN, addr, 0, len),
                    DATA + 0x100 + 8 * i as u32,
                );
            }
            at += 16;
            let status_pid = if packets == 0 { PID_IN } else { PID_OUT };
            self.td(at, LINK_TERMINATE, TD_IOC, token(status_pid, addr, 0, 0), 0);
            self.queue(TDS);
            self.uhci.run_frame();
            for i in 0..=packets + 1 {
                let ctrl = self.get(TDS + 16 * i as u32 + 4);
                assert_eq!(ctrl & TD_ACTIVE, 0, "TD {i} done in one frame: {ctrl:#x}");
                assert_eq!(ctrl & TD_STATUS, 0, "TD {i} without error: {ctrl:#x}");
            }
            assert_eq!(self.get(QH + 4), LINK_TERMINATE, "the queue ran dry");
            let mut data = vec![0u8; data_len];
            self.mem
                .read_slice(&mut data, GuestAddress(DATA as u64 + 0x100))
                .unwrap();
            data
        }
    }

    #[test]
    fn registers_after_reset_and_port_reset_enable() {
        let mut rig = Rig::new();
        assert_eq!(rig.in16(USBSTS), STS_HALTED);
        assert_eq!(rig.in16(SOFMOD) & 0xff, 0x40);
        assert_eq!(rig.in16(PORTSC1), PORT_RESERVED_ONE | PORT_CCS | PORT_CSC);
        assert_eq!(rig.in16(0x12), PORT_RESERVED_ONE, "port 2: empty");
        // CSC is write-1-to-clear; CCS is read-only.
        rig.out16(PORTSC1, PORT_CSC);
        assert_eq!(rig.in16(PORTSC1), PORT_RESERVED_ONE | PORT_CCS);
        rig.out16(PORTSC1, PORT_RESET | PORT_PE);
        assert_eq!(rig.in16(PORTSC1) & PORT_PE, 0, "no enable during reset");
        rig.out16(PORTSC1, PORT_PE);
        assert_eq!(rig.in16(PORTSC1), PORT_RESERVED_ONE | PORT_CCS | PORT_PE);
        rig.out16(0x12, PORT_PE);
        assert_eq!(rig.in16(0x12) & PORT_PE, 0, "nothing to enable on port 2");
        rig.out16(USBCMD, CMD_RS);
        assert_eq!(rig.in16(USBSTS), 0, "running");
        rig.uhci.run_frame();
        rig.uhci.run_frame();
        assert_eq!(rig.in16(FRNUM), 2);
        rig.out16(USBCMD, CMD_HCRESET);
        assert_eq!(rig.in16(USBCMD), 0, "HCRESET clears itself");
        assert_eq!(rig.in16(FRNUM), 0);
        assert_eq!(
            rig.in16(PORTSC1) & (PORT_PE | PORT_CSC),
            PORT_CSC,
            "reconnected"
        );
    }

    #[test]
    fn enumeration_by_control_transfers_and_reports_by_interrupt_in() {
        let mut rig = Rig::new();
        rig.start();
        rig.out16(USBINTR, INTR_IOC);
        // GET_DESCRIPTOR(DEVICE) at address 0.
        let device = rig.control(0, [0x80, 6, 0, 1, 0, 0, 18, 0], 18);
        assert_eq!(&device[..2], &[18, 1]);
        assert_eq!(&device[8..12], &[0x27, 0x06, 0x01, 0x00]);
        assert_eq!(
            rig.in16(USBSTS) & STS_USBINT,
            STS_USBINT,
            "IOC on the status TD"
        );
        assert!(rig.irq.level());
        rig.out16(USBSTS, STS_USBINT);
        assert!(!rig.irq.level(), "cleared by writing 1");
        // SET_ADDRESS 3, then SET_CONFIGURATION 1 at the new address.
        rig.control(0, [0, 5, 3, 0, 0, 0, 0, 0], 0);
        rig.control(3, [0, 9, 1, 0, 0, 0, 0, 0], 0);
        assert!(rig.input.configured());
        // Interrupt IN: NAK while nothing is pending, then the report.
        rig.td(TDS, LINK_TERMINATE, TD_IOC, token(PID_IN, 3, 1, 8), DATA);
        rig.queue(TDS);
        rig.uhci.run_frame();
        let ctrl = rig.get(TDS + 4);
        assert_eq!(ctrl & (TD_ACTIVE | TD_NAK), TD_ACTIVE | TD_NAK);
        assert_eq!(rig.get(QH + 4), TDS, "a NAKed TD stays queued");
        rig.input.pointer(0x1234, 0x5678, 1, 0);
        rig.uhci.run_frame();
        let ctrl = rig.get(TDS + 4);
        assert_eq!(ctrl & TD_ACTIVE, 0);
        assert_eq!(ctrl & TD_ACTLEN, 5, "six bytes (ActLen is n-1)");
        let mut report = [0u8; 6];
        rig.mem
            .read_slice(&mut report, GuestAddress(DATA as u64))
            .unwrap();
        assert_eq!(report, [1, 0x34, 0x12, 0x78, 0x56, 0]);
    }

    #[test]
    fn a_short_packet_with_spd_stops_the_queue_and_interrupts() {
        let mut rig = Rig::new();
        rig.start();
        rig.out16(USBINTR, INTR_SHORT_PACKET);
        rig.control(0, [0, 5, 1, 0, 0, 0, 0, 0], 0);
        rig.control(1, [0, 9, 1, 0, 0, 0, 0, 0], 0);
        rig.out16(USBSTS, 0x3f);
        rig.input.pointer(1, 2, 0, 0);
        rig.td(TDS, TDS + 16, TD_SPD, token(PID_IN, 1, 1, 8), DATA);
        rig.td(
            TDS + 16,
            LINK_TERMINATE,
            0,
            token(PID_IN, 1, 1, 8),
            DATA + 8,
        );
        rig.queue(TDS);
        rig.uhci.run_frame();
        assert_eq!(rig.get(TDS + 4) & TD_ACTIVE, 0);
        assert_eq!(rig.get(QH + 4), TDS, "the queue stays on the short TD");
        assert_eq!(rig.in16(USBSTS) & STS_USBINT, STS_USBINT);
        assert!(rig.irq.level());
    }

    #[test]
    fn no_device_at_an_address_times_out_and_a_stall_halts_the_queue() {
        let mut rig = Rig::new();
        rig.start();
        rig.out16(USBINTR, INTR_TIMEOUT_CRC);
        rig.td(TDS, LINK_TERMINATE, 0, token(PID_SETUP, 9, 0, 8), DATA);
        rig.queue(TDS);
        rig.uhci.run_frame();
        let ctrl = rig.get(TDS + 4);
        assert_eq!(ctrl & (TD_ACTIVE | TD_CRC_TIMEOUT), TD_CRC_TIMEOUT);
        assert_eq!(rig.in16(USBSTS) & STS_ERROR, STS_ERROR);
        assert!(rig.irq.level());
        rig.out16(USBSTS, STS_ERROR);
        // An unknown request is stalled by the device.
        rig.mem
            .write_slice(&[0x40, 0x99, 0, 0, 0, 0, 0, 0], GuestAddress(DATA as u64))
            .unwrap();
        rig.td(
            TDS,
            (TDS + 16) | LINK_DEPTH_FIRST,
            0,
            token(PID_SETUP, 0, 0, 8),
            DATA,
        );
        rig.td(TDS + 16, LINK_TERMINATE, 0, token(PID_IN, 0, 0, 0), 0);
        rig.queue(TDS);
        rig.uhci.run_frame();
        assert_eq!(rig.get(TDS + 4) & (TD_ACTIVE | TD_STALLED), TD_STALLED);
        assert_eq!(rig.get(TDS + 16 + 4) & TD_ACTIVE, TD_ACTIVE, "not reached");
        assert_eq!(rig.get(QH + 4), TDS);
    }

    #[test]
    fn a_looping_schedule_costs_a_bounded_walk_per_frame() {
        let mut rig = Rig::new();
        rig.start();
        // A QH whose horizontal link points back at itself, holding a TD
        // that NAKs forever; and a TD list that links to itself.
        rig.put(QH, QH | LINK_QH);
        rig.td(TDS, TDS | LINK_DEPTH_FIRST, 0, token(PID_IN, 0, 1, 8), DATA);
        rig.queue(TDS);
        rig.uhci.run_frame();
        rig.put(FRAME_LIST, TDS + 32);
        rig.td(TDS + 32, TDS + 32, 0, token(PID_IN, 0, 1, 8), DATA);
        for _ in 0..1024 {
            rig.uhci.run_frame();
        }
        assert_eq!(rig.in16(FRNUM), 1025, "every frame finished");
    }

    #[test]
    fn a_schedule_outside_ram_halts_with_host_system_error() {
        let mut rig = Rig::new();
        rig.start();
        rig.put(QH + 4, 0xfff0_0000);
        rig.uhci.run_frame();
        assert_eq!(
            rig.in16(USBSTS) & (STS_HOST_SYSTEM_ERROR | STS_HALTED),
            STS_HOST_SYSTEM_ERROR | STS_HALTED
        );
        assert!(!rig.uhci.running());
        assert!(rig.irq.level(), "a host system error always interrupts");
        // A frame list base outside RAM, too.
        rig.out16(USBSTS, 0x3f);
        rig.uhci
            .write_bar(BAR_IO, FLBASEADD, &0xf000_0000u32.to_le_bytes());
        rig.out16(USBCMD, CMD_RS);
        rig.uhci.run_frame();
        assert!(!rig.uhci.running());
    }

    #[test]
    fn pci_identity() {
        let rig = Rig::new();
        let c = rig.uhci.config();
        assert_eq!((c.u16(0), c.u16(2)), (0x8086, 0x7020));
        assert_eq!((c.u8(0x0b), c.u8(0x0a), c.u8(0x09)), (0x0c, 0x03, 0x00));
        assert_eq!(c.u8(0x3d), 4, "INTD#");
        assert_eq!(c.u8(SBRN), 0x10);
    }
}
