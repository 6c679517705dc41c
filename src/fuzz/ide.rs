//! The PIIX3 IDE controller with a disk (primary master) and a CD-ROM drive
//! (secondary master): ATA task files and commands, ATAPI packets, PIO data
//! and bus-master DMA through guest-written PRD tables.

use std::sync::{Arc, Mutex};

use super::input::{load_ram_image, ram, run_program, Image, Input, Machine, Program};
use super::MemDisk;
use crate::devices::bus::Bus;
use crate::devices::ide::{legacy_ports, IdeController, IdeMedia, BAR_BUS_MASTER};
use crate::devices::irq::FakeIrq;
use crate::devices::pci::PciDevice;
use crate::devices::GuestRam;

const PRIMARY: u64 = 0x1f0;
const SECONDARY: u64 = 0x170;
/// Most PIO data one packet command may move in the ATAPI target.
const MAX_PACKET_DATA: usize = 256 << 10;

struct IdeMachine {
    ctrl: Arc<Mutex<IdeController>>,
    bus: Bus,
    mem: GuestRam,
}

const REGIONS: [(u8, u64, u64); 6] = [
    (0, PRIMARY, 8),
    (0, 0x3f6, 1),
    (0, SECONDARY, 8),
    (0, 0x376, 1),
    (1, 0, 16),
    (2, 0, 256),
];

impl IdeMachine {
    fn new() -> Self {
        let mem = ram();
        let ctrl = IdeController::new(mem.clone(), FakeIrq::new(), FakeIrq::new());
        let bus = Bus::new();
        for (port, len, device) in legacy_ports(&ctrl) {
            let _ = bus.insert(device, u64::from(port), len);
        }
        {
            let mut c = ctrl.lock().unwrap_or_else(|e| e.into_inner());
            c.attach(
                0,
                0,
                IdeMedia::Disk(Box::new(MemDisk::new(64 << 10, false))),
            );
            c.attach(
                1,
                0,
                IdeMedia::Cdrom(Some(Box::new(MemDisk::new(1 << 20, true)))),
            );
            c.enable_channels_as_firmware_does();
            // I/O decoding and bus mastering on, as SeaBIOS leaves them.
            c.write_config(4, &[0x05, 0x00]);
        }
        Self { ctrl, bus, mem }
    }

    fn inb(&mut self, port: u64) -> u8 {
        let mut b = [0];
        self.read(0, port, &mut b);
        b[0]
    }

    fn outb(&mut self, port: u64, value: u8) {
        self.write(0, port, &[value]);
    }
}

impl Machine for IdeMachine {
    fn regions(&self) -> &[(u8, u64, u64)] {
        &REGIONS
    }

    fn read(&mut self, space: u8, addr: u64, data: &mut [u8]) {
        match space {
            0 => {
                self.bus.read(addr, data);
            }
            1 => {
                let mut ctrl = self.ctrl.lock().unwrap_or_else(|e| e.into_inner());
                ctrl.read_bar(BAR_BUS_MASTER, addr, data);
            }
            _ => {
                let mut ctrl = self.ctrl.lock().unwrap_or_else(|e| e.into_inner());
                ctrl.read_config(addr as usize, data);
            }
        }
    }

    fn write(&mut self, space: u8, addr: u64, data: &[u8]) {
        match space {
            0 => {
                self.bus.write(addr, data);
            }
            1 => {
                let mut ctrl = self.ctrl.lock().unwrap_or_else(|e| e.into_inner());
                ctrl.write_bar(BAR_BUS_MASTER, addr, data);
            }
            _ => {
                let mut ctrl = self.ctrl.lock().unwrap_or_else(|e| e.into_inner());
                ctrl.write_config(addr as usize, data);
            }
        }
    }

    fn tick(&mut self, _arg: u8) {}

    fn ram(&self) -> &GuestRam {
        &self.mem
    }
}

/// ATA: any sequence of task-file, command, data-port, bus-master and PCI
/// configuration accesses against both drives.
pub fn ata(data: &[u8]) {
    let mut input = Input::new(data);
    let mut machine = IdeMachine::new();
    load_ram_image(&mut input, &machine.mem);
    run_program(&mut machine, &mut input);
}

/// ATAPI: packet commands to the CD-ROM drive through the PIO protocol a
/// driver follows (PACKET, 12 command bytes, then every DRQ block moved in
/// the direction the drive asks for). Each command is 12 CDB bytes, the
/// u16 byte-count limit, and the features byte (bit 0: DMA, through a PRD
/// table the input's RAM image may hold at 0).
pub fn atapi(data: &[u8]) {
    let mut input = Input::new(data);
    let mut machine = IdeMachine::new();
    load_ram_image(&mut input, &machine.mem);
    let base = SECONDARY;
    machine.outb(base + 6, 0xa0);
    let mut commands = 0;
    while !input.is_empty() && commands < 256 {
        commands += 1;
        let cdb = input.bytes(12).to_vec();
        let limit = input.u16();
        let features = input.u8();
        machine.outb(base + 1, features);
        machine.outb(base + 4, limit as u8);
        machine.outb(base + 5, (limit >> 8) as u8);
        machine.outb(base + 7, 0xa0);
        let mut packet = [0u8; 12];
        packet[..cdb.len()].copy_from_slice(&cdb);
        for word in packet.chunks(2) {
            machine.write(0, base, word);
        }
        if features & 1 != 0 {
            // PRD table at 0, read direction, start.
            machine.write(1, 8 + 4, &0u32.to_le_bytes());
            machine.write(1, 8, &[0x09]);
            machine.write(1, 8, &[0x00]);
        }
        let mut moved = 0;
        for _ in 0..64 {
            let status = machine.inb(base + 7);
            if status & 0x08 == 0 || moved > MAX_PACKET_DATA {
                break;
            }
            let count =
                usize::from(machine.inb(base + 4)) | usize::from(machine.inb(base + 5)) << 8;
            let count = count.clamp(2, 0xfffe);
            moved += count;
            if machine.inb(base + 2) & 2 != 0 {
                let mut data = vec![0u8; count];
                machine.read(0, base, &mut data);
            } else {
                let data = input.bytes(count).to_vec();
                machine.write(0, base, &data);
            }
        }
    }
}

/// A packet command for [`atapi`].
fn packet(out: &mut Vec<u8>, cdb: &[u8], limit: u16, features: u8) {
    let mut bytes = [0u8; 12];
    bytes[..cdb.len()].copy_from_slice(cdb);
    out.extend(bytes);
    out.extend(limit.to_le_bytes());
    out.push(features);
}

/// Seeds: what SeaBIOS and Linux send a CD-ROM drive (TEST UNIT READY,
/// REQUEST SENSE, INQUIRY, READ CAPACITY, READ(10), MODE SENSE, READ TOC,
/// GET CONFIGURATION, GET EVENT STATUS, and one READ(10) by DMA).
pub fn atapi_seeds() -> Vec<Vec<u8>> {
    let mut image = Image::new(0x100);
    image.u32(0, 0x1000).u32(4, 0x8000_0000 | 4096);
    let mut seed = Program::with_ram(&image.0).build();
    for (cdb, limit, features) in [
        (&[0x00][..], 0xfffe, 0),
        (&[0x03, 0, 0, 0, 18], 18, 0),
        (&[0x12, 0, 0, 0, 36], 36, 0),
        (&[0x25], 8, 0),
        (&[0x28, 0, 0, 0, 0, 16, 0, 0, 2], 4096, 0),
        (&[0x5a, 0, 0x2a, 0, 0, 0, 0, 0, 28], 28, 0),
        (&[0x43, 0, 0, 0, 0, 0, 0, 0x03, 0x24], 0x324, 0),
        (&[0x46, 2, 0, 0, 0, 0, 0, 0, 32], 32, 0),
        (&[0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8], 8, 0),
        (&[0x28, 0, 0, 0, 0, 1, 0, 0, 2], 4096, 1),
        (&[0x1e, 0, 0, 0, 1], 0, 0),
        (&[0x1b, 0, 0, 0, 2], 0, 0),
        (&[0xbd, 0, 0, 0, 0, 0, 0, 0, 0, 8], 8, 0),
    ] {
        packet(&mut seed, cdb, limit, features);
    }
    vec![seed]
}

/// Seeds: IDENTIFY, a PIO read and write, SET FEATURES, READ DMA through a
/// PRD table, and the same on the CD-ROM drive (which aborts them).
pub fn ata_seeds() -> Vec<Vec<u8>> {
    let mut image = Image::new(0x100);
    image.u32(0, 0x1000).u32(4, 0x8000_0000 | 1024);
    let mut p = Program::with_ram(&image.0);
    let (reg, ctl) = (0u8, 1u8);
    for (drive, select) in [(0u8, 0xe0u64), (2, 0xa0)] {
        // IDENTIFY (or IDENTIFY PACKET DEVICE), read it.
        p.write(drive, 6, 1, select)
            .write(drive, 7, 1, 0xec)
            .read(drive, 7, 1)
            .read_string(drive, 0, 512)
            .write(drive, 7, 1, 0xa1)
            .read_string(drive, 0, 512);
        // READ SECTORS: two from LBA 5.
        p.write(drive, 2, 1, 2)
            .write(drive, 3, 1, 5)
            .write(drive, 4, 1, 0)
            .write(drive, 5, 1, 0)
            .write(drive, 7, 1, 0x20)
            .read_string(drive, 0, 1024);
        // WRITE SECTORS: one at LBA 7.
        p.write(drive, 2, 1, 1)
            .write(drive, 3, 1, 7)
            .write(drive, 7, 1, 0x30)
            .write_string(drive, 0, &[0x5a; 255])
            .write_string(drive, 0, &[0xa5; 255])
            .write_string(drive, 0, &[0x11; 2]);
        // SET FEATURES: transfer mode UDMA2; READ DMA of two sectors.
        p.write(drive, 1, 1, 3)
            .write(drive, 2, 1, 0x42)
            .write(drive, 7, 1, 0xef)
            .write(4, 4 + 8 * u16::from(drive / 2), 4, 0)
            .write(drive, 2, 1, 2)
            .write(drive, 7, 1, 0xc8)
            .write(4, 8 * u16::from(drive / 2), 1, 0x09)
            .read(4, 2 + 8 * u16::from(drive / 2), 1)
            .write(4, 8 * u16::from(drive / 2), 1, 0);
        // Soft reset through the device control register.
        p.write(ctl + drive, 0, 1, 4).write(ctl + drive, 0, 1, 0);
        // Read the task file back.
        for offset in 1..8 {
            p.read(reg + drive, offset, 1);
        }
    }
    vec![p.build()]
}
