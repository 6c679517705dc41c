//! A driver's-eye test rig: the controller on a port bus, fake IRQs, a small
//! guest RAM and raw images in temporary files.

use std::io::Write;
use std::sync::{Arc, Mutex};

use tempfile::NamedTempFile;
use vm_memory::GuestAddress;

use super::{legacy_ports, IdeController, IdeMedia};
use crate::devices::bus::Bus;
use crate::devices::irq::FakeIrq;
use crate::devices::pci::PciDevice;
use crate::devices::GuestRam;
use crate::storage::RawFile;

pub fn small_ram() -> GuestRam {
    GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
}

/// The byte an image holds at `offset`: different in every sector.
pub fn pattern(offset: u64, len: usize) -> Vec<u8> {
    (offset..offset + len as u64)
        .map(|o| ((o >> 9) as u8).wrapping_mul(31) ^ (o as u8) ^ ((o >> 17) as u8))
        .collect()
}

/// A raw image of `size` bytes filled with [`pattern`].
pub fn image(size: u64) -> NamedTempFile {
    let mut file = NamedTempFile::new().unwrap();
    file.write_all(&pattern(0, size as usize)).unwrap();
    file.flush().unwrap();
    file
}

/// An ATA string from IDENTIFY data, trailing spaces removed.
pub fn ata_string(bytes: &[u8]) -> String {
    let swapped: Vec<u8> = bytes.chunks(2).flat_map(|w| [w[1], w[0]]).collect();
    String::from_utf8(swapped).unwrap().trim_end().to_string()
}

pub fn read_bm_status(rig: &Rig, channel: u64) -> u8 {
    let mut byte = [0];
    rig.ctrl
        .lock()
        .unwrap()
        .read_bar(4, channel * 8 + 2, &mut byte);
    byte[0]
}

pub struct Rig {
    pub ctrl: Arc<Mutex<IdeController>>,
    pub irq0: Arc<FakeIrq>,
    pub irq1: Arc<FakeIrq>,
    pub mem: GuestRam,
    bus: Bus,
}

impl Rig {
    pub fn new() -> Self {
        let mem = small_ram();
        let (irq0, irq1) = (FakeIrq::new(), FakeIrq::new());
        let ctrl = IdeController::new(mem.clone(), irq0.clone(), irq1.clone());
        let bus = Bus::new();
        for (port, len, device) in legacy_ports(&ctrl) {
            bus.insert(device, u64::from(port), len).unwrap();
        }
        Self {
            ctrl,
            irq0,
            irq1,
            mem,
            bus,
        }
    }

    pub fn attach_disk(&self, channel: usize, unit: usize, size: u64) -> NamedTempFile {
        let file = image(size);
        let backend = RawFile::open(file.path(), false).unwrap();
        self.ctrl
            .lock()
            .unwrap()
            .attach(channel, unit, IdeMedia::Disk(Box::new(backend)));
        file
    }

    pub fn attach_cdrom(
        &self,
        channel: usize,
        unit: usize,
        size: Option<u64>,
    ) -> Option<NamedTempFile> {
        let file = size.map(image);
        let backend = file.as_ref().map(|f| {
            Box::new(RawFile::open(f.path(), true).unwrap())
                as Box<dyn crate::storage::BlockBackend>
        });
        self.ctrl
            .lock()
            .unwrap()
            .attach(channel, unit, IdeMedia::Cdrom(backend));
        file
    }

    pub fn inb(&self, port: u16) -> u8 {
        let mut byte = [0];
        assert!(
            self.bus.read(u64::from(port), &mut byte),
            "nothing at {port:#x}"
        );
        byte[0]
    }

    pub fn outb(&self, port: u16, value: u8) {
        assert!(
            self.bus.write(u64::from(port), &[value]),
            "nothing at {port:#x}"
        );
    }

    /// `len` bytes in 16-bit accesses.
    pub fn insw(&self, port: u16, len: usize) -> Vec<u8> {
        let mut data = vec![0; len];
        for word in data.chunks_mut(2) {
            self.bus.read(u64::from(port), word);
        }
        data
    }

    /// `len` bytes in 32-bit accesses.
    pub fn insl(&self, port: u16, len: usize) -> Vec<u8> {
        let mut data = vec![0; len];
        for dword in data.chunks_mut(4) {
            self.bus.read(u64::from(port), dword);
        }
        data
    }

    /// `len` bytes in one access, as a VMM may hand over a `rep insw`.
    pub fn ins(&self, port: u16, len: usize) -> Vec<u8> {
        let mut data = vec![0; len];
        self.bus.read(u64::from(port), &mut data);
        data
    }

    /// `data` in one access.
    pub fn outs(&self, port: u16, data: &[u8]) {
        self.bus.write(u64::from(port), data);
    }

    /// Loads the task file (LBA28) and writes the command, as SeaBIOS does.
    pub fn ata_command(&self, base: u16, device: u8, command: u8, count: u8, lba: u32) {
        self.outb(base + 6, device | (lba >> 24) as u8 & 0x0f);
        self.outb(base + 2, count);
        self.outb(base + 3, lba as u8);
        self.outb(base + 4, (lba >> 8) as u8);
        self.outb(base + 5, (lba >> 16) as u8);
        self.outb(base + 7, command);
    }

    /// Sector count, LBA low, mid, high.
    pub fn signature(&self, base: u16) -> [u8; 4] {
        [
            self.inb(base + 2),
            self.inb(base + 3),
            self.inb(base + 4),
            self.inb(base + 5),
        ]
    }

    /// A PIO PACKET command to the selected device: sends `cdb`, reads every
    /// DRQ block (each `byte count` long), returns the final status and the
    /// data.
    pub fn packet(&self, base: u16, cdb: &[u8], limit: u16) -> (u8, Vec<u8>) {
        self.outb(base + 1, 0);
        self.outb(base + 4, limit as u8);
        self.outb(base + 5, (limit >> 8) as u8);
        self.outb(base + 7, 0xa0);
        assert_eq!(self.inb(base + 7) & 0x08, 0x08, "DRQ for the packet");
        assert_eq!(self.inb(base + 2) & 3, 1, "interrupt reason: command out");
        let mut packet = [0u8; 12];
        packet[..cdb.len()].copy_from_slice(cdb);
        for word in packet.chunks(2) {
            self.bus.write(u64::from(base), word);
        }
        let mut data = Vec::new();
        for _ in 0..100_000 {
            let status = self.inb(base + 7);
            if status & 0x08 == 0 {
                assert_eq!(self.inb(base + 2) & 3, 3, "interrupt reason: status");
                return (status, data);
            }
            assert_eq!(self.inb(base + 2) & 3, 2, "interrupt reason: data in");
            let count = usize::from(self.inb(base + 4)) | usize::from(self.inb(base + 5)) << 8;
            let max = if limit == 0 || limit == 0xffff {
                0xfffe
            } else {
                limit.max(2)
            };
            assert!(count > 0 && count <= usize::from(max), "byte count {count}");
            data.extend(self.ins(base, count));
        }
        panic!("packet command never finished");
    }
}
