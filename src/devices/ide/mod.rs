//! The PIIX3 IDE controller: PCI function 00:01.1 (Intel 82371SB, 8086:7010)
//! in compatibility mode, with ATA hard disks and ATAPI CD/DVD-ROM drives.
//!
//! References: Intel 82371FB/SB (PIIX/PIIX3) datasheet §2.4 (IDE function
//! configuration registers) and §2.7 (bus master IDE I/O registers);
//! ATA/ATAPI-6 (T13 1410D) chapters 6–9 for the register file, reset and the
//! PIO, DMA and PACKET protocols. The command sets live in [`ata`] (disks) and
//! [`atapi`] (packet commands, SFF-8020i / MMC-3); bus-master DMA and PRD
//! tables in [`bmdma`].
//!
//! This file holds the PCI function, the two channels and their register
//! files (command block 0x1F0/0x170, control block 0x3F6/0x376), the data
//! register, software reset, drive selection and INTRQ.
//!
//! Not emulated: native-PCI mode (prog-if is fixed at 0x80, so IRQs are ISA
//! IRQ 14 and 15), the IDE timing registers (stored, without effect, and not
//! gating port decode — as in QEMU), transfer timing (every command completes
//! synchronously; BSY is only seen during SRST), 8-bit (CFA) data transfers,
//! overlapped and queued commands, power states, SMART, security and HPA.

mod ata;
mod atapi;
mod bmdma;

use std::mem;
use std::sync::{Arc, Mutex, PoisonError};

use self::ata::Disk;
pub use self::atapi::CdromStatus;
use self::atapi::{Cdrom, Reply, TrayLocked};
use self::bmdma::{BusMaster, PrdWalker};
use crate::devices::bus::{BusDevice, SharedDevice};
use crate::devices::irq::IrqLine;
use crate::devices::pci::host_bridge::{SUBSYSTEM_QEMU, SUBSYSTEM_VENDOR_QEMU, VENDOR_INTEL};
use crate::devices::pci::{BarKind, PciClass, PciConfig, PciDevice};
use crate::devices::GuestRam;
use crate::guest_warn;
use crate::storage::BlockBackend;

/// The compatibility-mode ports the PIIX3 IDE function decodes (PIIX3
/// datasheet §2.4, "IDE compatibility mode"): each channel's command block
/// and control register. `vmm::layout` lists them with every other port.
pub const PORT_IDE_SECONDARY: u16 = 0x170;
pub const PORT_IDE_SECONDARY_CONTROL: u16 = 0x376;
pub const PORT_IDE_PRIMARY: u16 = 0x1f0;
pub const PORT_IDE_PRIMARY_CONTROL: u16 = 0x3f6;
pub const IDE_COMMAND_PORTS: u64 = 8;

/// PCI device ID of the PIIX3 IDE function.
pub const DEVICE_PIIX3_IDE: u16 = 0x7010;
/// BMIBA: the bus master interface base address (datasheet §2.4.5) is BAR4.
pub const BAR_BUS_MASTER: usize = 4;
/// Two channels × eight bus-master registers.
const BUS_MASTER_PORTS: u64 = 16;
/// IDETIM (primary 0x40, secondary 0x42) and SIDETIM (0x44): stored only.
const IDETIM: usize = 0x40;
/// IDETIM bit 15, IDE Decode Enable: the channel is on (datasheet §2.4.6).
const IDETIM_DECODE_ENABLE: u16 = 0x8000;
const TIMING_REGISTER_BYTES: usize = 5;
/// The control block is one port per channel (0x3F7 is the floppy's).
const IDE_CONTROL_PORTS: u64 = 1;

// ---- Command block registers (ATA-6 §7), offsets from 0x1F0 / 0x170 -------

const REG_DATA: u64 = 0;
const REG_ERROR_FEATURES: u64 = 1;
const REG_SECTOR_COUNT: u64 = 2;
const REG_LBA_LOW: u64 = 3;
const REG_LBA_MID: u64 = 4;
const REG_LBA_HIGH: u64 = 5;
const REG_DEVICE: u64 = 6;
const REG_STATUS_COMMAND: u64 = 7;

// Status register (ATA-6 §7.15).
const STATUS_BSY: u8 = 0x80;
const STATUS_DRDY: u8 = 0x40;
/// DSC (SERV for packet devices): "seek complete", set by every completion.
const STATUS_DSC: u8 = 0x10;
const STATUS_DRQ: u8 = 0x08;
const STATUS_ERR: u8 = 0x01;

// Error register (ATA-6 §7.9).
const ERROR_UNC: u8 = 0x40;
const ERROR_IDNF: u8 = 0x10;
const ERROR_ABRT: u8 = 0x04;
/// The diagnostic code "device 0 passed, device 1 passed or not present",
/// which the Error register holds after any reset (ATA-6 §9.12).
const ERROR_DIAGNOSTIC_PASSED: u8 = 0x01;

// Device register (ATA-6 §7.10).
const DEVICE_DEV: u8 = 0x10;
const DEVICE_LBA: u8 = 0x40;

// Device control register (ATA-6 §7.8).
const CONTROL_NIEN: u8 = 0x02;
const CONTROL_SRST: u8 = 0x04;
const CONTROL_HOB: u8 = 0x80;

/// EXECUTE DEVICE DIAGNOSTIC is executed by both devices whatever DEV says.
const CMD_EXECUTE_DEVICE_DIAGNOSTIC: u8 = 0x90;

/// Why the host could not change a CD-ROM drive's disc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CdromChangeError {
    /// There is no CD-ROM drive at that position.
    #[error("no CD-ROM drive there")]
    NoDrive,
    /// The guest has locked the tray (PREVENT ALLOW MEDIUM REMOVAL) and the
    /// change was not forced; the guest was asked to eject.
    #[error("the guest has locked the tray")]
    Locked,
    /// The disc can only be taken out of an open tray.
    #[error("the tray is not open")]
    TrayClosed,
}

/// What sits at one position (master or slave) of a channel.
pub enum IdeMedia {
    /// An ATA hard disk.
    Disk(Box<dyn BlockBackend>),
    /// An ATAPI CD/DVD-ROM drive, with or without a disc in it.
    Cdrom(Option<Box<dyn BlockBackend>>),
}

/// The task file of one device (ATA-6 §7). The host's writes reach both
/// devices of a channel; reads come from the selected one. For 48-bit
/// commands each register is a two-deep FIFO: the `hob_` copy holds the
/// previous write and is read back with HOB set in Device Control.
#[derive(Debug, Default, Clone, Copy)]
struct TaskFile {
    feature: u8,
    hob_feature: u8,
    count: u8,
    hob_count: u8,
    lba_low: u8,
    hob_lba_low: u8,
    lba_mid: u8,
    hob_lba_mid: u8,
    lba_high: u8,
    hob_lba_high: u8,
    device: u8,
}

impl TaskFile {
    fn write(&mut self, reg: u64, value: u8) {
        let (current, previous) = match reg {
            REG_ERROR_FEATURES => (&mut self.feature, &mut self.hob_feature),
            REG_SECTOR_COUNT => (&mut self.count, &mut self.hob_count),
            REG_LBA_LOW => (&mut self.lba_low, &mut self.hob_lba_low),
            REG_LBA_MID => (&mut self.lba_mid, &mut self.hob_lba_mid),
            REG_LBA_HIGH => (&mut self.lba_high, &mut self.hob_lba_high),
            REG_DEVICE => {
                self.device = value;
                return;
            }
            _ => return,
        };
        *previous = *current;
        *current = value;
    }

    fn read(&self, reg: u64, hob: bool) -> u8 {
        match (reg, hob) {
            (REG_SECTOR_COUNT, false) => self.count,
            (REG_SECTOR_COUNT, true) => self.hob_count,
            (REG_LBA_LOW, false) => self.lba_low,
            (REG_LBA_LOW, true) => self.hob_lba_low,
            (REG_LBA_MID, false) => self.lba_mid,
            (REG_LBA_MID, true) => self.hob_lba_mid,
            (REG_LBA_HIGH, false) => self.lba_high,
            (REG_LBA_HIGH, true) => self.hob_lba_high,
            _ => self.device,
        }
    }

    /// The 28-bit address: Device bits 3:0 and LBA high/mid/low.
    fn lba28(&self) -> u64 {
        u64::from(self.device & 0x0f) << 24
            | u64::from(self.lba_high) << 16
            | u64::from(self.lba_mid) << 8
            | u64::from(self.lba_low)
    }

    /// The 48-bit address: previous (HOB) writes are the upper half.
    fn lba48(&self) -> u64 {
        u64::from(self.hob_lba_high) << 40
            | u64::from(self.hob_lba_mid) << 32
            | u64::from(self.hob_lba_low) << 24
            | u64::from(self.lba_high) << 16
            | u64::from(self.lba_mid) << 8
            | u64::from(self.lba_low)
    }

    /// The sector count; zero means 256 (28-bit) or 65536 (48-bit).
    fn sector_count(&self, lba48: bool) -> u64 {
        if lba48 {
            match u64::from(self.hob_count) << 8 | u64::from(self.count) {
                0 => 65536,
                n => n,
            }
        } else {
            match self.count {
                0 => 256,
                n => u64::from(n),
            }
        }
    }

    /// Leaves `lba` in the address registers, as a device does after an
    /// error (the failing sector) or a transfer (the last sector).
    fn set_lba(&mut self, lba: u64, lba48: bool) {
        self.lba_low = lba as u8;
        self.lba_mid = (lba >> 8) as u8;
        self.lba_high = (lba >> 16) as u8;
        if lba48 {
            self.hob_lba_low = (lba >> 24) as u8;
            self.hob_lba_mid = (lba >> 32) as u8;
            self.hob_lba_high = (lba >> 40) as u8;
        } else if self.device & DEVICE_LBA != 0 {
            self.device = (self.device & 0xf0) | ((lba >> 24) as u8 & 0x0f);
        }
    }

    /// The ATAPI byte count (LBA mid/high, ATA-6 §8.23).
    fn byte_count(&self) -> u16 {
        u16::from(self.lba_high) << 8 | u16::from(self.lba_mid)
    }

    fn set_byte_count(&mut self, count: u16) {
        self.lba_mid = count as u8;
        self.lba_high = (count >> 8) as u8;
    }

    /// The signature a device leaves after reset (ATA-6 §9.12): it is how
    /// firmware tells disks from packet devices.
    fn set_signature(&mut self, packet: bool) {
        self.count = 1;
        self.lba_low = 1;
        (self.lba_mid, self.lba_high) = if packet { (0x14, 0xeb) } else { (0, 0) };
        // The Device register reads 00h after a reset; a signature posted
        // for a command keeps the selection.
        self.device &= DEVICE_DEV;
    }
}

/// What the device is doing between register accesses.
enum Op {
    Idle,
    /// A one-block data-in command (IDENTIFY): done when the block is read.
    SingleIn,
    /// PIO data-in of sectors: the current block is in the data buffer;
    /// `lba`/`remaining` describe what follows it.
    ReadPio {
        lba: u64,
        remaining: u64,
        block: u64,
        lba48: bool,
    },
    /// PIO data-out of sectors: the data buffer receives the block for
    /// `lba`; `remaining` counts it too.
    WritePio {
        lba: u64,
        remaining: u64,
        block: u64,
        lba48: bool,
    },
    /// PACKET: the data buffer receives the command packet.
    Packet {
        dma: bool,
        limit: u16,
    },
    /// A packet command's data-in: the buffer holds one DRQ block, `reply`
    /// the rest.
    PacketIn {
        reply: Reply,
        limit: u16,
    },
    /// A DMA command waiting for the bus master to be started.
    Dma(DmaOp),
}

enum DmaOp {
    Ata { lba: u64, count: u64, write: bool },
    Packet(Reply),
}

/// How a bus-master transfer ended.
enum DmaOutcome {
    Done,
    /// The PRD table was malformed, too short or pointed outside RAM: the
    /// bus master's error bit.
    BadTable,
    /// The device failed (medium error); the bus master itself is fine.
    DeviceError,
}

/// The registers and protocol state of one device position. It exists for
/// absent devices too, because the host's register writes latch in both.
struct UnitState {
    tf: TaskFile,
    status: u8,
    error: u8,
    /// This device's INTRQ; the channel's line follows the selected device's.
    intrq: bool,
    /// INTRQ was asserted since the channel last looked (for BMISTA).
    raised: bool,
    /// The current DRQ data block and how far the host got through it.
    pio: Vec<u8>,
    pio_pos: usize,
    pio_out: bool,
    op: Op,
}

impl UnitState {
    fn new() -> Self {
        Self {
            tf: TaskFile::default(),
            status: 0,
            error: 0,
            intrq: false,
            raised: false,
            pio: Vec::new(),
            pio_pos: 0,
            pio_out: false,
            op: Op::Idle,
        }
    }

    fn raise_irq(&mut self) {
        self.intrq = true;
        self.raised = true;
    }

    fn clear_transfer(&mut self) {
        self.op = Op::Idle;
        self.pio = Vec::new();
        self.pio_pos = 0;
    }

    /// Successful completion with an interrupt.
    fn complete(&mut self) {
        self.clear_transfer();
        self.status = STATUS_DRDY | STATUS_DSC;
        self.raise_irq();
    }

    /// Error completion: ERR with `error` in the Error register.
    fn fail(&mut self, error: u8) {
        self.clear_transfer();
        self.status = STATUS_DRDY | STATUS_ERR;
        self.error = error;
        self.raise_irq();
    }

    fn abort(&mut self) {
        self.fail(ERROR_ABRT);
    }

    /// The last data-in block was read: no interrupt follows (ATA-6 §9.7).
    fn finish_in(&mut self) {
        self.clear_transfer();
        self.status = STATUS_DRDY | STATUS_DSC;
    }

    /// Offers a data-in block and interrupts, as every PIO data-in block does.
    fn start_in(&mut self, data: Vec<u8>, op: Op) {
        self.pio = data;
        self.pio_pos = 0;
        self.pio_out = false;
        self.op = op;
        self.status = STATUS_DRDY | STATUS_DSC | STATUS_DRQ;
        self.error = 0;
        self.raise_irq();
    }

    /// Asks for a data-out block. The first block of a write is requested
    /// without an interrupt; later ones with one (ATA-6 §9.8).
    fn start_out(&mut self, len: usize, op: Op, irq: bool) {
        self.pio = vec![0; len];
        self.pio_pos = 0;
        self.pio_out = true;
        self.op = op;
        self.status = STATUS_DRDY | STATUS_DSC | STATUS_DRQ;
        self.error = 0;
        if irq {
            self.raise_irq();
        }
    }

    /// Parks a DMA command until the bus master runs it.
    fn start_dma(&mut self, op: DmaOp) {
        self.clear_transfer();
        self.op = Op::Dma(op);
        self.status = STATUS_DRDY | STATUS_DSC | STATUS_DRQ;
        self.error = 0;
    }

    fn transferring(&self, out: bool) -> bool {
        self.pio_out == out && self.pio_pos < self.pio.len()
    }
}

enum Device {
    Disk(Disk),
    Cdrom(Cdrom),
}

struct Unit {
    st: UnitState,
    device: Option<Device>,
}

impl Unit {
    /// Power-on, SRST release or DEVICE RESET: the signature, the
    /// diagnostic code, DRDY for disks only (packet devices leave it clear
    /// until IDENTIFY PACKET DEVICE, ATA-6 §9.12).
    fn reset(&mut self) {
        self.st.clear_transfer();
        self.st.intrq = false;
        match &self.device {
            None => {
                self.st.status = 0;
                self.st.error = 0;
            }
            Some(Device::Disk(_)) => {
                self.st.tf.set_signature(false);
                self.st.status = STATUS_DRDY | STATUS_DSC;
                self.st.error = ERROR_DIAGNOSTIC_PASSED;
            }
            Some(Device::Cdrom(_)) => {
                self.st.tf.set_signature(true);
                self.st.status = 0;
                self.st.error = ERROR_DIAGNOSTIC_PASSED;
            }
        }
    }

    fn command(&mut self, command: u8) {
        let reset = match &mut self.device {
            Some(Device::Disk(disk)) => {
                disk.command(&mut self.st, command);
                false
            }
            Some(Device::Cdrom(cdrom)) => cdrom.command(&mut self.st, command),
            None => false,
        };
        if reset {
            self.reset();
        }
    }

    /// The host has moved the whole current DRQ block.
    fn end_of_block(&mut self) {
        let op = mem::replace(&mut self.st.op, Op::Idle);
        let data = mem::take(&mut self.st.pio);
        self.st.pio_pos = 0;
        match &mut self.device {
            Some(Device::Disk(disk)) => disk.end_of_block(&mut self.st, op, data),
            Some(Device::Cdrom(cdrom)) => cdrom.end_of_block(&mut self.st, op, data),
            None => {}
        }
    }
}

/// What a bus-master transfer may touch.
struct DmaContext<'a> {
    mem: &'a GuestRam,
    /// PCI command register bit 2: the guest let the function master the bus.
    bus_master: bool,
}

/// One IDE channel: two device positions, the shared control register, the
/// channel's bus-master registers and its interrupt line.
struct Channel {
    units: [Unit; 2],
    selected: usize,
    control: u8,
    bm: BusMaster,
    irq: Arc<dyn IrqLine>,
    irq_level: bool,
}

impl Channel {
    fn new(irq: Arc<dyn IrqLine>) -> Self {
        let unit = || Unit {
            st: UnitState::new(),
            device: None,
        };
        Self {
            units: [unit(), unit()],
            selected: 0,
            control: 0,
            bm: BusMaster::default(),
            irq,
            irq_level: false,
        }
    }

    fn has_devices(&self) -> bool {
        self.units.iter().any(|u| u.device.is_some())
    }

    fn selected_present(&self) -> bool {
        self.units[self.selected].device.is_some()
    }

    /// A command block register read (not the data register).
    ///
    /// A channel without devices reads as zero, and so do Status and Error
    /// of an absent device next to a present one; the other registers read
    /// back what the host wrote, since both positions latch writes. That is
    /// what QEMU does and what SeaBIOS's probe (write 0x55/0xAA to sector
    /// count/number and read them back, then look at Status) expects.
    fn read_register(&mut self, reg: u64) -> u8 {
        if !self.has_devices() {
            return 0;
        }
        let present = self.selected_present();
        let hob = self.control & CONTROL_HOB != 0;
        let st = &mut self.units[self.selected].st;
        match reg {
            REG_ERROR_FEATURES => {
                if present {
                    st.error
                } else {
                    0
                }
            }
            REG_STATUS_COMMAND => {
                // Reading Status acknowledges the interrupt (ATA-6 §5.2.9).
                st.intrq = false;
                if present {
                    st.status
                } else {
                    0
                }
            }
            _ => st.tf.read(reg, hob),
        }
    }

    fn alternate_status(&self) -> u8 {
        if self.selected_present() {
            self.units[self.selected].st.status
        } else {
            0
        }
    }

    fn write_register(&mut self, reg: u64, value: u8, ctx: &DmaContext) {
        // Any command block write clears HOB (ATA-6 §7.8).
        self.control &= !CONTROL_HOB;
        match reg {
            REG_STATUS_COMMAND => self.command(value, ctx),
            REG_DEVICE => {
                for unit in &mut self.units {
                    unit.st.tf.write(reg, value);
                }
                self.selected = usize::from(value & DEVICE_DEV != 0);
            }
            _ => {
                for unit in &mut self.units {
                    unit.st.tf.write(reg, value);
                }
            }
        }
    }

    /// Device Control: nIEN, SRST, HOB.
    fn write_control(&mut self, value: u8) {
        let was_reset = self.control & CONTROL_SRST != 0;
        self.control = value;
        let in_reset = value & CONTROL_SRST != 0;
        if in_reset && !was_reset {
            // Both devices abandon what they were doing and stay busy
            // until SRST is cleared.
            for unit in &mut self.units {
                unit.st.clear_transfer();
                unit.st.intrq = false;
                if unit.device.is_some() {
                    unit.st.status = STATUS_BSY;
                }
            }
        } else if was_reset && !in_reset {
            for unit in &mut self.units {
                unit.reset();
                unit.st.tf.device = 0;
            }
            // The reset Device register selects device 0.
            self.selected = 0;
        }
    }

    fn command(&mut self, command: u8, ctx: &DmaContext) {
        if self.control & CONTROL_SRST != 0 {
            guest_warn!(
                command,
                "IDE: command written during software reset, ignored"
            );
            return;
        }
        if command == CMD_EXECUTE_DEVICE_DIAGNOSTIC {
            self.execute_device_diagnostic();
            return;
        }
        let unit = &mut self.units[self.selected];
        if unit.device.is_none() {
            // Nobody answers; the host sees Status 0 and gives up.
            return;
        }
        // Writing Command negates INTRQ; a new command ends any transfer
        // in progress (the host is not supposed to do that, and QEMU does
        // the same).
        unit.st.intrq = false;
        unit.st.clear_transfer();
        unit.command(command);
        self.try_dma(ctx);
    }

    /// Both devices run their diagnostics and post their signatures;
    /// device 0 interrupts (ATA-6 §8.11).
    fn execute_device_diagnostic(&mut self) {
        for unit in &mut self.units {
            unit.reset();
            unit.st.tf.device = 0;
        }
        self.selected = 0;
        if let Some(unit) = self.units.iter_mut().find(|u| u.device.is_some()) {
            unit.st.raise_irq();
        }
    }

    /// The data register: moves `data.len()` bytes of the current transfer,
    /// crossing into the next DRQ block when one follows at once (so a
    /// `rep insw` spanning blocks works). Nothing to read reads as all ones.
    fn read_data(&mut self, data: &mut [u8]) {
        let unit = &mut self.units[self.selected];
        let mut done = 0;
        while done < data.len() && unit.st.transferring(false) {
            let st = &mut unit.st;
            let n = (data.len() - done).min(st.pio.len() - st.pio_pos);
            data[done..done + n].copy_from_slice(&st.pio[st.pio_pos..st.pio_pos + n]);
            st.pio_pos += n;
            done += n;
            if st.pio_pos == st.pio.len() {
                unit.end_of_block();
            }
        }
        data[done..].fill(0xff);
    }

    fn write_data(&mut self, data: &[u8], ctx: &DmaContext) {
        let unit = &mut self.units[self.selected];
        let mut done = 0;
        while done < data.len() && unit.st.transferring(true) {
            let st = &mut unit.st;
            let n = (data.len() - done).min(st.pio.len() - st.pio_pos);
            st.pio[st.pio_pos..st.pio_pos + n].copy_from_slice(&data[done..done + n]);
            st.pio_pos += n;
            done += n;
            if st.pio_pos == st.pio.len() {
                unit.end_of_block();
            }
        }
        // A packet just received may be a DMA command.
        self.try_dma(ctx);
    }

    /// Runs a parked DMA command if the bus master has been started.
    fn try_dma(&mut self, ctx: &DmaContext) {
        if !self.bm.active() {
            return;
        }
        let unit = &mut self.units[self.selected];
        let Op::Dma(op) = mem::replace(&mut unit.st.op, Op::Idle) else {
            return;
        };
        if !ctx.bus_master {
            guest_warn!("IDE: bus master started with PCI bus mastering disabled");
            self.bm.finish(true, true);
            unit.st.abort();
            return;
        }
        let mut prd = PrdWalker::new(ctx.mem, self.bm.prd_table());
        let outcome = match &mut unit.device {
            Some(Device::Disk(disk)) => disk.run_dma(&mut unit.st, op, &mut prd),
            Some(Device::Cdrom(cdrom)) => cdrom.run_dma(&mut unit.st, op, &mut prd),
            None => return,
        };
        match outcome {
            DmaOutcome::Done => self.bm.finish(prd.at_end(), false),
            DmaOutcome::BadTable => self.bm.finish(true, true),
            DmaOutcome::DeviceError => self.bm.finish(true, false),
        }
    }

    fn write_bus_master(&mut self, reg: u64, value: u8, ctx: &DmaContext) {
        if self.bm.write(reg, value) {
            self.try_dma(ctx);
        }
    }

    /// Drives the line from the selected device's INTRQ unless nIEN masks
    /// it, and latches BMISTA's interrupt bit on every assertion (which the
    /// datasheet sets regardless of masking).
    fn sync_irq(&mut self) {
        for unit in &mut self.units {
            if mem::take(&mut unit.st.raised) {
                self.bm.interrupt();
            }
        }
        let level = self.units[self.selected].st.intrq && self.control & CONTROL_NIEN == 0;
        if level != self.irq_level {
            self.irq_level = level;
            self.irq.set_level(level);
        }
    }
}

/// The PIIX3 IDE function with its two channels.
pub struct IdeController {
    config: PciConfig,
    mem: GuestRam,
    channels: [Channel; 2],
}

impl IdeController {
    /// A controller with nothing attached; `irq_primary` and `irq_secondary`
    /// are ISA IRQ 14 and 15.
    pub fn new(
        mem: GuestRam,
        irq_primary: Arc<dyn IrqLine>,
        irq_secondary: Arc<dyn IrqLine>,
    ) -> Arc<Mutex<Self>> {
        // Mass storage, IDE, prog-if 0x80: both channels in compatibility
        // mode (bits 0 and 2 clear, not switchable) and bus-master capable.
        let class = PciClass {
            base: 0x01,
            sub: 0x01,
            prog_if: 0x80,
        };
        let mut config = PciConfig::new(VENDOR_INTEL, DEVICE_PIIX3_IDE, class, 0)
            .with_subsystem(SUBSYSTEM_VENDOR_QEMU, SUBSYSTEM_QEMU)
            .with_bar(BAR_BUS_MASTER, BarKind::Io, BUS_MASTER_PORTS);
        for offset in IDETIM..IDETIM + TIMING_REGISTER_BYTES {
            config = config.with_writable(offset, 0xff);
        }
        // PCISTS: fast back-to-back capable, medium DEVSEL timing (§2.4.4).
        config.set_u16(0x06, 0x0280);
        Arc::new(Mutex::new(Self {
            config,
            mem,
            channels: [Channel::new(irq_primary), Channel::new(irq_secondary)],
        }))
    }

    /// Puts a disk or drive at `channel` (0 primary, 1 secondary), `unit`
    /// (0 master, 1 slave), in its power-on state.
    pub fn attach(&mut self, channel: usize, unit: usize, media: IdeMedia) {
        assert!(
            channel < 2 && unit < 2,
            "IDE position {channel}:{unit} does not exist"
        );
        let device = match media {
            IdeMedia::Disk(backend) => Device::Disk(Disk::new(backend, unit)),
            IdeMedia::Cdrom(medium) => Device::Cdrom(Cdrom::new(medium, channel, unit)),
        };
        let slot = &mut self.channels[channel].units[unit];
        slot.device = Some(device);
        slot.reset();
    }

    /// Sets IDE Decode Enable (bit 15 of IDETIM) on both channels, as the
    /// BIOS does at power-on (SeaBIOS writes 0x8000 to 0x40 and 0x42): the
    /// chip resets with both channels disabled (datasheet §2.4.6), and
    /// Linux's `ata_piix` skips a channel whose bit is clear, so a kernel
    /// booted without firmware would find no IDE drive at all. The bit
    /// gates nothing here (see the module notes); it is what drivers read.
    pub fn enable_channels_as_firmware_does(&mut self) {
        for channel_timing in [IDETIM, IDETIM + 2] {
            let value = self.config.u16(channel_timing) | IDETIM_DECODE_ENABLE;
            self.config.set_u16(channel_timing, value);
        }
    }

    fn cdrom_mut(&mut self, channel: usize, unit: usize) -> Option<&mut Cdrom> {
        let slot = self
            .channels
            .get_mut(channel)
            .and_then(|c| c.units.get_mut(unit));
        match slot {
            Some(Unit {
                device: Some(Device::Cdrom(cdrom)),
                ..
            }) => Some(cdrom),
            _ => None,
        }
    }

    /// Swaps the disc of the CD-ROM drive at `channel`:`unit` as a person
    /// at the drive would: open the tray, take the disc out, put `medium`
    /// in and close the tray (`None` leaves it open and empty). The guest
    /// sees a media event and, after an insert, NOT READY then UNIT
    /// ATTENTION (MMC-3 §4.1.6). A tray the guest locked stays shut unless
    /// `force`. Returns the disc taken out.
    pub fn change_cdrom(
        &mut self,
        channel: usize,
        unit: usize,
        medium: Option<Box<dyn BlockBackend>>,
        force: bool,
    ) -> Result<Option<Box<dyn BlockBackend>>, CdromChangeError> {
        let cdrom = self
            .cdrom_mut(channel, unit)
            .ok_or(CdromChangeError::NoDrive)?;
        cdrom
            .change_medium(medium, force)
            .map_err(|TrayLocked| CdromChangeError::Locked)
    }

    /// Opens the tray of the CD-ROM drive at `channel`:`unit`, leaving its
    /// disc in it (QEMU's `blockdev-open-tray`). A tray the guest locked
    /// stays shut unless `force`, and the guest is asked to eject either
    /// way. Returns whether the tray moved.
    pub fn open_cdrom_tray(
        &mut self,
        channel: usize,
        unit: usize,
        force: bool,
    ) -> Result<bool, CdromChangeError> {
        let cdrom = self
            .cdrom_mut(channel, unit)
            .ok_or(CdromChangeError::NoDrive)?;
        let was_open = cdrom.status().tray_open;
        cdrom
            .open_tray(force)
            .map_err(|TrayLocked| CdromChangeError::Locked)?;
        Ok(!was_open)
    }

    /// Closes the tray of the CD-ROM drive at `channel`:`unit` (QEMU's
    /// `blockdev-close-tray`); a disc in it reaches the guest as a new
    /// one. Returns whether the tray moved.
    pub fn close_cdrom_tray(
        &mut self,
        channel: usize,
        unit: usize,
    ) -> Result<bool, CdromChangeError> {
        let cdrom = self
            .cdrom_mut(channel, unit)
            .ok_or(CdromChangeError::NoDrive)?;
        Ok(cdrom.close_tray())
    }

    /// Takes the disc out of the open tray of the CD-ROM drive at
    /// `channel`:`unit` (QEMU's `blockdev-remove-medium`); returns it, for
    /// the caller to close outside the controller's lock.
    pub fn remove_cdrom_medium(
        &mut self,
        channel: usize,
        unit: usize,
    ) -> Result<Option<Box<dyn BlockBackend>>, CdromChangeError> {
        let cdrom = self
            .cdrom_mut(channel, unit)
            .ok_or(CdromChangeError::NoDrive)?;
        if !cdrom.status().tray_open {
            return Err(CdromChangeError::TrayClosed);
        }
        Ok(cdrom.remove_medium())
    }

    /// The tray movements guests made with START STOP UNIT since the last
    /// call, as (`channel`, `unit`, open), oldest first per drive.
    pub fn take_guest_tray_moves(&mut self) -> Vec<(usize, usize, bool)> {
        let mut moves = Vec::new();
        for (channel, chan) in self.channels.iter_mut().enumerate() {
            for (unit, slot) in chan.units.iter_mut().enumerate() {
                if let Some(Device::Cdrom(cdrom)) = &mut slot.device {
                    moves.extend(
                        cdrom
                            .take_guest_tray_moves()
                            .into_iter()
                            .map(|open| (channel, unit, open)),
                    );
                }
            }
        }
        moves
    }

    /// Whether the CD-ROM drive at `channel`:`unit` has a readable disc
    /// (the guest may have ejected it with START STOP UNIT).
    pub fn cdrom_loaded(&self, channel: usize, unit: usize) -> bool {
        let slot = self.channels.get(channel).and_then(|c| c.units.get(unit));
        matches!(slot, Some(Unit { device: Some(Device::Cdrom(cdrom)), .. }) if cdrom.loaded())
    }

    /// The tray and lock of the CD-ROM drive at `channel`:`unit`, if one
    /// is there.
    pub fn cdrom_status(&self, channel: usize, unit: usize) -> Option<CdromStatus> {
        let slot = self.channels.get(channel).and_then(|c| c.units.get(unit));
        match slot {
            Some(Unit {
                device: Some(Device::Cdrom(cdrom)),
                ..
            }) => Some(cdrom.status()),
            _ => None,
        }
    }

    /// A read of the compatibility-mode ports of `channel`: the command
    /// block (`control == false`) or the alternate status register.
    fn read_ports(&mut self, channel: usize, control: bool, offset: u64, data: &mut [u8]) {
        let chan = &mut self.channels[channel];
        if control {
            let status = if chan.has_devices() {
                chan.alternate_status()
            } else {
                0
            };
            data.fill(0xff);
            if offset == 0 {
                if let Some(first) = data.first_mut() {
                    *first = status;
                }
            }
        } else if offset == REG_DATA {
            chan.read_data(data);
        } else {
            // A wide access to an 8-bit register reaches the following
            // ports, as on ISA.
            for (i, byte) in data.iter_mut().enumerate() {
                let reg = offset + i as u64;
                *byte = if reg < IDE_COMMAND_PORTS {
                    chan.read_register(reg)
                } else {
                    0xff
                };
            }
        }
        chan.sync_irq();
    }

    fn write_ports(&mut self, channel: usize, control: bool, offset: u64, data: &[u8]) {
        let ctx = DmaContext {
            mem: &self.mem,
            bus_master: self.config.bus_master(),
        };
        let chan = &mut self.channels[channel];
        if control {
            if let (0, Some(&value)) = (offset, data.first()) {
                chan.write_control(value);
            }
        } else if offset == REG_DATA {
            chan.write_data(data, &ctx);
        } else {
            for (i, &value) in data.iter().enumerate() {
                let reg = offset + i as u64;
                if reg < IDE_COMMAND_PORTS {
                    chan.write_register(reg, value, &ctx);
                }
            }
        }
        chan.sync_irq();
    }
}

impl PciDevice for IdeController {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset + i as u64;
            *byte = match (bar, self.channels.get((at / 8) as usize)) {
                (BAR_BUS_MASTER, Some(chan)) => chan.bm.read(at % 8),
                _ => 0xff,
            };
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        if bar != BAR_BUS_MASTER {
            return;
        }
        let ctx = DmaContext {
            mem: &self.mem,
            bus_master: self.config.bus_master(),
        };
        for (i, &value) in data.iter().enumerate() {
            let at = offset + i as u64;
            if let Some(chan) = self.channels.get_mut((at / 8) as usize) {
                chan.write_bus_master(at % 8, value, &ctx);
            }
        }
        for chan in &mut self.channels {
            chan.sync_irq();
        }
    }
}

/// The compatibility-mode ports of one channel, as the port I/O bus sees
/// them: the command block or the control block.
pub struct IdePorts {
    controller: Arc<Mutex<IdeController>>,
    channel: usize,
    control: bool,
}

impl BusDevice for IdePorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let mut ctrl = self
            .controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ctrl.read_ports(self.channel, self.control, offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut ctrl = self
            .controller
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        ctrl.write_ports(self.channel, self.control, offset, data);
    }
}

/// The fixed ports of compatibility mode, as `(port, length, device)`:
/// 0x1F0–0x1F7 and 0x3F6 (primary, IRQ 14), 0x170–0x177 and 0x376
/// (secondary, IRQ 15).
pub fn legacy_ports(ctrl: &Arc<Mutex<IdeController>>) -> Vec<(u16, u64, SharedDevice)> {
    let ports = |channel, control| -> SharedDevice {
        Arc::new(Mutex::new(IdePorts {
            controller: ctrl.clone(),
            channel,
            control,
        }))
    };
    vec![
        (PORT_IDE_PRIMARY, IDE_COMMAND_PORTS, ports(0, false)),
        (PORT_IDE_PRIMARY_CONTROL, IDE_CONTROL_PORTS, ports(0, true)),
        (PORT_IDE_SECONDARY, IDE_COMMAND_PORTS, ports(1, false)),
        (
            PORT_IDE_SECONDARY_CONTROL,
            IDE_CONTROL_PORTS,
            ports(1, true),
        ),
    ]
}

/// IDENTIFY (PACKET) DEVICE data: 256 little-endian words (ATA-6 §8.15).
struct IdentifyData([u16; 256]);

impl IdentifyData {
    fn new() -> Self {
        Self([0; 256])
    }

    fn set(&mut self, word: usize, value: u16) {
        self.0[word] = value;
    }

    fn set_u32(&mut self, word: usize, value: u32) {
        self.0[word] = value as u16;
        self.0[word + 1] = (value >> 16) as u16;
    }

    fn set_u64(&mut self, word: usize, value: u64) {
        for i in 0..4 {
            self.0[word + i] = (value >> (16 * i)) as u16;
        }
    }

    /// An ATA string: space-padded, the first character of each pair in
    /// the high byte of its word.
    fn set_string(&mut self, word: usize, words: usize, text: &str) {
        let mut bytes = text.bytes().filter(|b| b.is_ascii_graphic() || *b == b' ');
        for i in 0..words {
            let high = bytes.next().unwrap_or(b' ');
            let low = bytes.next().unwrap_or(b' ');
            self.0[word + i] = u16::from(high) << 8 | u16::from(low);
        }
    }

    /// The 512 bytes, with the integrity word (word 255: signature 0xA5 and
    /// a checksum making all bytes sum to zero).
    fn into_bytes(mut self) -> Vec<u8> {
        self.0[255] = 0x00a5;
        let mut bytes: Vec<u8> = self.0.iter().flat_map(|w| w.to_le_bytes()).collect();
        let sum = bytes[..511].iter().fold(0u8, |a, b| a.wrapping_add(*b));
        bytes[511] = sum.wrapping_neg();
        bytes
    }
}

/// The DMA modes a SET FEATURES "set transfer mode" selected (ATA-6
/// §8.37.10); advertised in IDENTIFY words 63 and 88.
#[derive(Debug, Default, Clone, Copy)]
struct TransferModes {
    mwdma: Option<u8>,
    udma: Option<u8>,
}

impl TransferModes {
    /// Applies a transfer mode value; false if it names an unsupported mode.
    fn select(&mut self, value: u8) -> bool {
        match value {
            // PIO default, PIO default without IORDY, PIO flow control 0–4.
            0x00 | 0x01 | 0x08..=0x0c => true,
            0x20..=0x22 => {
                (self.mwdma, self.udma) = (Some(value & 7), None);
                true
            }
            0x40..=0x45 => {
                (self.mwdma, self.udma) = (None, Some(value & 7));
                true
            }
            _ => false,
        }
    }

    /// Word 63: multiword DMA 0–2 supported, and the selected one.
    fn word63(&self) -> u16 {
        0x0007 | self.mwdma.map_or(0, |m| 0x100 << m)
    }

    /// Word 88: Ultra DMA 0–5 supported, and the selected one.
    fn word88(&self) -> u16 {
        0x003f | self.udma.map_or(0, |m| 0x100 << m)
    }
}

/// A serial number that stays the same for the same image, so guests
/// (udev's /dev/disk/by-id) keep recognising the disk.
fn serial_for(identity: &str) -> String {
    // FNV-1a, 64 bits.
    let hash = identity.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    });
    format!("VR{hash:016X}")
}

/// Firmware revision in IDENTIFY (8 characters).
const FIRMWARE_REVISION: &str = env!("CARGO_PKG_VERSION");

#[cfg(test)]
mod testutil;

#[cfg(test)]
mod tests {
    use super::testutil::*;
    use super::*;
    use crate::devices::irq::FakeIrq;

    #[test]
    fn pci_header_is_a_piix3_ide_function() {
        let ctrl = IdeController::new(small_ram(), FakeIrq::new(), FakeIrq::new());
        let mut c = ctrl.lock().unwrap();
        let mut dword = [0; 4];
        c.read_config(0, &mut dword);
        assert_eq!(u32::from_le_bytes(dword), 0x7010_8086);
        c.read_config(8, &mut dword);
        assert_eq!(
            u32::from_le_bytes(dword),
            0x0101_8000,
            "class 01.01, prog-if 0x80"
        );
        c.read_config(0x2c, &mut dword);
        assert_eq!(u32::from_le_bytes(dword), 0x1100_1af4);
        c.write_config(0x20, &0xffff_ffffu32.to_le_bytes());
        c.read_config(0x20, &mut dword);
        assert_eq!(u32::from_le_bytes(dword), 0xffff_fff1, "BAR4: 16 I/O ports");
        // SeaBIOS enables both channels' decode in IDETIM.
        c.write_config(0x40, &[0x00, 0x80, 0x00, 0x80]);
        c.read_config(0x40, &mut dword);
        assert_eq!(dword, [0x00, 0x80, 0x00, 0x80]);
    }

    #[test]
    fn channels_start_disabled_until_firmware_enables_them() {
        let ctrl = IdeController::new(small_ram(), FakeIrq::new(), FakeIrq::new());
        let mut c = ctrl.lock().unwrap();
        let mut dword = [0; 4];
        c.read_config(0x40, &mut dword);
        assert_eq!(dword, [0; 4], "IDETIM resets to 0 (both channels off)");
        // A timing value a driver wrote stays; only the enable bit is added.
        c.write_config(0x40, &[0x23, 0x01, 0x00, 0x00]);
        c.enable_channels_as_firmware_does();
        c.read_config(0x40, &mut dword);
        assert_eq!(dword, [0x23, 0x81, 0x00, 0x80]);
    }

    #[test]
    fn empty_channel_reads_as_zero() {
        let rig = Rig::new();
        for port in 0x171..=0x177 {
            assert_eq!(rig.inb(port), 0, "port {port:#x}");
        }
        assert_eq!(rig.inb(0x376), 0);
        rig.outb(0x177, 0xec);
        assert_eq!(rig.inb(0x177), 0);
        assert!(!rig.irq1.level());
    }

    #[test]
    fn disk_master_and_cdrom_slave_share_a_channel() {
        let rig = Rig::new();
        let _disk = rig.attach_disk(0, 0, 1 << 20);
        let _iso = rig.attach_cdrom(0, 1, Some(64 * 2048));
        rig.outb(0x3f6, 0x0e);
        rig.outb(0x3f6, 0x0a);
        assert_eq!(rig.inb(0x1f6), 0, "reset selects device 0");
        assert_eq!(rig.signature(0x1f0), [1, 1, 0, 0]);
        rig.outb(0x1f6, 0xb0);
        assert_eq!(rig.inb(0x1f6), 0xb0);
        assert_eq!(rig.signature(0x1f0), [1, 1, 0x14, 0xeb]);
        assert_eq!(rig.inb(0x1f7), 0);
        rig.outb(0x1f7, 0xa1);
        assert_eq!(rig.ins(0x1f0, 2), [0xc0, 0x85]);
        // Switching devices mid-transfer: the master has nothing to offer.
        rig.outb(0x1f6, 0xa0);
        assert_eq!(rig.inb(0x1f7), 0x50);
        assert_eq!(rig.ins(0x1f0, 2), [0xff, 0xff]);
        // EXECUTE DEVICE DIAGNOSTIC runs on both and interrupts from device 0.
        rig.outb(0x3f6, 0x08); // interrupts on
        rig.outb(0x1f6, 0xb0);
        rig.outb(0x1f7, 0x90);
        assert!(rig.irq0.level());
        assert_eq!(rig.inb(0x1f6) & DEVICE_DEV, 0);
        assert_eq!(rig.inb(0x1f1), ERROR_DIAGNOSTIC_PASSED);
        rig.outb(0x1f6, 0xb0);
        assert_eq!(rig.signature(0x1f0)[2..], [0x14, 0xeb]);
    }

    #[test]
    fn odd_and_truncated_accesses() {
        let rig = Rig::new();
        let _disk = rig.attach_disk(0, 0, 1 << 20);
        rig.ata_command(0x1f0, 0xe0, 0x20, 2, 5);
        // A byte, then an odd-length string: the buffer is consumed in order.
        let mut data = rig.ins(0x1f0, 1);
        data.extend(rig.ins(0x1f0, 1022));
        data.extend(rig.insl(0x1f0, 4));
        assert_eq!(&data[..1024], &testutil::pattern(5 * 512, 1024)[..]);
        assert_eq!(&data[1024..], &[0xff; 3], "nothing left");
        // A 16-bit read of the Device register also reads Status.
        let mut pair = [0; 2];
        rig.ctrl.lock().unwrap().read_ports(0, false, 6, &mut pair);
        assert_eq!(pair, [0xe0, 0x50]);
        // Writes beyond the register block, empty accesses, the control
        // port read wide: ignored or all ones.
        rig.ctrl
            .lock()
            .unwrap()
            .write_ports(0, false, 7, &[0x00, 0x11, 0x22]);
        rig.ctrl.lock().unwrap().write_ports(0, false, 0, &[]);
        rig.ctrl.lock().unwrap().read_ports(0, false, 0, &mut []);
        let mut wide = [0; 4];
        rig.ctrl.lock().unwrap().read_ports(0, true, 0, &mut wide);
        assert_eq!(wide[1..], [0xff; 3]);
        // Bus master ports past the 16 and other BARs.
        let mut ctrl = rig.ctrl.lock().unwrap();
        ctrl.write_bar(4, 14, &[0xff; 8]);
        ctrl.write_bar(0, 0, &[0xff; 4]);
        let mut bm = [0; 4];
        ctrl.read_bar(4, 12, &mut bm);
        assert_eq!(bm, [0, 0, 0xff, 0xff], "secondary BMIDTP upper half");
        ctrl.read_bar(4, 16, &mut bm);
        assert_eq!(bm, [0xff; 4], "no third channel");
        ctrl.read_bar(5, 0, &mut bm);
        assert_eq!(bm, [0xff; 4]);
    }

    #[test]
    fn identify_strings_and_checksum() {
        let mut id = IdentifyData::new();
        id.set_string(27, 20, "VIREO HARDDISK");
        let bytes = id.into_bytes();
        assert_eq!(&bytes[54..62], b"IVER OAH");
        assert_eq!(bytes[510], 0xa5);
        assert_eq!(bytes.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    }
}
