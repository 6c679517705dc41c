//! QEMU's firmware configuration device (fw_cfg), the x86 I/O-port flavour.
//!
//! Reference: QEMU `docs/specs/fw_cfg.rst`; SeaBIOS `src/fw/paravirt.c` is
//! the consumer. Ports, relative to 0x510: selector (16-bit, little endian)
//! at 0, data (8-bit) at 1, DMA address (64-bit, big endian) at 4..12.
//! Writing the DMA address's low half (offset 8), or all 64 bits at offset
//! 4, starts a transfer described by an `FWCfgDmaAccess` in guest memory.
//!
//! Items are read-only: the deprecated write path through the data port
//! and DMA writes are refused (DMA writes set the error bit). Writable
//! items (ACPI's table loader, `etc/...` scratch files) are not needed yet.

use std::collections::BTreeMap;

use vm_memory::{Bytes, GuestAddress};

use super::{BusDevice, GuestRam};
use crate::guest_warn;

/// Well-known selectors (QEMU `include/standard-headers/linux/qemu_fw_cfg.h`).
pub mod keys {
    pub const SIGNATURE: u16 = 0x00;
    pub const ID: u16 = 0x01;
    pub const UUID: u16 = 0x02;
    pub const RAM_SIZE: u16 = 0x03;
    pub const NOGRAPHIC: u16 = 0x04;
    pub const NB_CPUS: u16 = 0x05;
    pub const MACHINE_ID: u16 = 0x06;
    pub const KERNEL_ADDR: u16 = 0x07;
    pub const KERNEL_SIZE: u16 = 0x08;
    pub const KERNEL_CMDLINE: u16 = 0x09;
    pub const INITRD_ADDR: u16 = 0x0a;
    pub const INITRD_SIZE: u16 = 0x0b;
    pub const BOOT_DEVICE: u16 = 0x0c;
    pub const NUMA: u16 = 0x0d;
    pub const BOOT_MENU: u16 = 0x0e;
    pub const MAX_CPUS: u16 = 0x0f;
    pub const KERNEL_ENTRY: u16 = 0x10;
    pub const KERNEL_DATA: u16 = 0x11;
    pub const INITRD_DATA: u16 = 0x12;
    pub const CMDLINE_ADDR: u16 = 0x13;
    pub const CMDLINE_SIZE: u16 = 0x14;
    pub const CMDLINE_DATA: u16 = 0x15;
    pub const SETUP_ADDR: u16 = 0x16;
    pub const SETUP_SIZE: u16 = 0x17;
    pub const SETUP_DATA: u16 = 0x18;
    pub const FILE_DIR: u16 = 0x19;
    /// The first selector given to files.
    pub const FILE_FIRST: u16 = 0x20;
    /// x86-specific: the legacy e820 table (SeaBIOS prefers `etc/e820`).
    pub const E820_TABLE: u16 = 0x8003;
}

/// ID item bits.
const ID_TRADITIONAL: u32 = 1 << 0;
const ID_DMA: u32 = 1 << 1;
/// What the DMA address register reads as ("QEMU CFG").
const DMA_SIGNATURE: u64 = 0x5145_4d55_2043_4647;
/// `FWCfgDmaAccess.control` bits.
const DMA_ERROR: u32 = 0x01;
const DMA_READ: u32 = 0x02;
const DMA_SKIP: u32 = 0x04;
const DMA_SELECT: u32 = 0x08;
const DMA_WRITE: u32 = 0x10;
/// File names are at most 55 bytes plus a NUL.
pub const FILE_NAME_MAX: usize = 55;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FwCfgError {
    #[error("fw_cfg file name '{0}' is longer than {FILE_NAME_MAX} bytes")]
    NameTooLong(String),
    #[error("fw_cfg already has a file named '{0}'")]
    Duplicate(String),
    #[error("fw_cfg has no selectors left for file '{0}'")]
    Full(String),
}

pub struct FwCfg {
    mem: GuestRam,
    items: BTreeMap<u16, Vec<u8>>,
    /// name -> selector
    files: BTreeMap<String, u16>,
    selector: u16,
    offset: usize,
    dma_address: u64,
}

impl FwCfg {
    pub fn new(mem: GuestRam) -> Self {
        let mut fw_cfg = Self {
            mem,
            items: BTreeMap::new(),
            files: BTreeMap::new(),
            selector: 0,
            offset: 0,
            dma_address: 0,
        };
        fw_cfg.add_item(keys::SIGNATURE, b"QEMU".to_vec());
        fw_cfg.add_item(keys::ID, (ID_TRADITIONAL | ID_DMA).to_le_bytes().to_vec());
        fw_cfg.rebuild_directory();
        fw_cfg
    }

    /// Sets item `key` to `data`.
    pub fn add_item(&mut self, key: u16, data: Vec<u8>) {
        self.items.insert(key, data);
    }

    pub fn add_u16(&mut self, key: u16, value: u16) {
        self.add_item(key, value.to_le_bytes().to_vec());
    }

    pub fn add_u32(&mut self, key: u16, value: u32) {
        self.add_item(key, value.to_le_bytes().to_vec());
    }

    pub fn add_u64(&mut self, key: u16, value: u64) {
        self.add_item(key, value.to_le_bytes().to_vec());
    }

    /// Adds a named file; returns its selector.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<u16, FwCfgError> {
        if name.len() > FILE_NAME_MAX {
            return Err(FwCfgError::NameTooLong(name.to_string()));
        }
        if self.files.contains_key(name) {
            return Err(FwCfgError::Duplicate(name.to_string()));
        }
        let selector = keys::FILE_FIRST
            .checked_add(self.files.len() as u16)
            .filter(|s| *s < 0x4000)
            .ok_or_else(|| FwCfgError::Full(name.to_string()))?;
        self.items.insert(selector, data);
        self.files.insert(name.to_string(), selector);
        self.rebuild_directory();
        Ok(selector)
    }

    /// The file directory item: be32 count, then per file (sorted by
    /// name) be32 size, be16 selector, be16 reserved, name[56].
    fn rebuild_directory(&mut self) {
        let mut dir = (self.files.len() as u32).to_be_bytes().to_vec();
        for (name, &selector) in &self.files {
            let size = self.items.get(&selector).map_or(0, Vec::len) as u32;
            dir.extend_from_slice(&size.to_be_bytes());
            dir.extend_from_slice(&selector.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut field = [0u8; FILE_NAME_MAX + 1];
            field[..name.len()].copy_from_slice(name.as_bytes());
            dir.extend_from_slice(&field);
        }
        self.items.insert(keys::FILE_DIR, dir);
    }

    fn select(&mut self, selector: u16) {
        self.selector = selector;
        self.offset = 0;
    }

    fn current(&self) -> &[u8] {
        self.items.get(&self.selector).map_or(&[], Vec::as_slice)
    }

    fn read_data_byte(&mut self) -> u8 {
        let byte = self.current().get(self.offset).copied().unwrap_or(0);
        if self.offset < self.current().len() {
            self.offset += 1;
        }
        byte
    }

    /// Runs the DMA request at guest address `at`.
    fn dma(&mut self, at: u64) {
        let access = GuestAddress(at);
        let mut header = [0u8; 16];
        if self.mem.read_slice(&mut header, access).is_err() {
            guest_warn!(
                addr = format_args!("{at:#x}"),
                "fw_cfg DMA descriptor outside guest RAM"
            );
            return;
        }
        let control = u32::from_be_bytes(header[0..4].try_into().unwrap());
        let length = u32::from_be_bytes(header[4..8].try_into().unwrap()) as usize;
        let address = u64::from_be_bytes(header[8..16].try_into().unwrap());
        let status = self.dma_transfer(control, length, address);
        if self.mem.write_slice(&status.to_be_bytes(), access).is_err() {
            guest_warn!(
                addr = format_args!("{at:#x}"),
                "fw_cfg DMA status outside guest RAM"
            );
        }
    }

    /// Carries out one request; returns the control word to write back.
    fn dma_transfer(&mut self, control: u32, length: usize, address: u64) -> u32 {
        if control & DMA_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        if control & DMA_WRITE != 0 {
            guest_warn!(
                selector = self.selector,
                "fw_cfg DMA write refused: items are read-only"
            );
            return DMA_ERROR;
        }
        let available = self.current().len().saturating_sub(self.offset);
        let count = length.min(available);
        if control & DMA_READ != 0 {
            // Past the end of the item the guest gets zeros (fw_cfg.rst).
            let mut buf = vec![0u8; length];
            buf[..count].copy_from_slice(&self.current()[self.offset..self.offset + count]);
            if self.mem.write_slice(&buf, GuestAddress(address)).is_err() {
                guest_warn!(
                    addr = format_args!("{address:#x}"),
                    len = length,
                    "fw_cfg DMA read into memory outside guest RAM"
                );
                return DMA_ERROR;
            }
        } else if control & DMA_SKIP == 0 {
            return 0; // select only
        }
        self.offset += count;
        0
    }
}

impl BusDevice for FwCfg {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (offset, data.len()) {
            (0, 2) => data.copy_from_slice(&self.selector.to_le_bytes()),
            (1, _) => {
                // Wider reads of the data port return consecutive bytes.
                for byte in data.iter_mut() {
                    *byte = self.read_data_byte();
                }
            }
            (4..=11, _) => {
                let signature = DMA_SIGNATURE.to_be_bytes();
                for (i, byte) in data.iter_mut().enumerate() {
                    *byte = signature.get(offset as usize - 4 + i).copied().unwrap_or(0);
                }
            }
            _ => data.fill(0),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (0, 2) => self.select(u16::from_le_bytes([data[0], data[1]])),
            (1, _) => guest_warn!(
                selector = self.selector,
                "fw_cfg data-port write refused: items are read-only"
            ),
            (4, 4) => {
                let high = u32::from_be_bytes(data.try_into().unwrap()) as u64;
                self.dma_address = (high << 32) | (self.dma_address & 0xffff_ffff);
            }
            (8, 4) => {
                let low = u32::from_be_bytes(data.try_into().unwrap()) as u64;
                let address = (self.dma_address & !0xffff_ffff) | low;
                self.dma_address = 0;
                self.dma(address);
            }
            (4, 8) => {
                let address = u64::from_be_bytes(data.try_into().unwrap());
                self.dma_address = 0;
                self.dma(address);
            }
            _ => guest_warn!(offset, len = data.len(), "odd fw_cfg access ignored"),
        }
    }
}

/// An `etc/e820` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub len: u64,
    pub kind: E820Kind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E820Kind {
    Ram = 1,
    Reserved = 2,
    Acpi = 3,
    Nvs = 4,
}

/// The `etc/e820` file: per entry le64 address, le64 length, le32 type.
pub fn e820_file(entries: &[E820Entry]) -> Vec<u8> {
    let mut file = Vec::with_capacity(entries.len() * 20);
    for entry in entries {
        file.extend_from_slice(&entry.addr.to_le_bytes());
        file.extend_from_slice(&entry.len.to_le_bytes());
        file.extend_from_slice(&(entry.kind as u32).to_le_bytes());
    }
    file
}

/// The `bootorder` file: one OpenFirmware device path per line, best
/// first, NUL-terminated (SeaBIOS `loadBootOrder`).
pub fn bootorder_file(paths: &[String]) -> Vec<u8> {
    let mut file = paths.join("\n").into_bytes();
    file.push(0);
    file
}

/// The device path of an IDE disk or CD-ROM on the PIIX IDE function at
/// 00:01.1. SeaBIOS's `bootprio_find_ata_device` looks for
/// `/pci@i0cf8/*@1,1/drive@<channel>/disk@<unit>`; the name is QEMU's.
pub fn ide_boot_path(channel: u8, unit: u8) -> String {
    format!("/pci@i0cf8/ide@1,1/drive@{channel:x}/disk@{unit:x}")
}

/// The device path of a virtio-blk disk at `slot`.`function` of bus 0.
/// SeaBIOS's `bootprio_find_pci_device` looks for the prefix
/// `/pci@i0cf8/*@<slot>[,<function>]`; the rest is QEMU's naming.
pub fn pci_boot_path(slot: u8, function: u8) -> String {
    let function = if function == 0 {
        String::new()
    } else {
        format!(",{function:x}")
    };
    format!("/pci@i0cf8/scsi@{slot:x}{function}/disk@0,0")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram() -> GuestRam {
        GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    fn select(fw: &mut FwCfg, key: u16) {
        fw.write(0, &key.to_le_bytes());
    }

    fn read_bytes(fw: &mut FwCfg, n: usize) -> Vec<u8> {
        (0..n)
            .map(|_| {
                let mut b = [0];
                fw.read(1, &mut b);
                b[0]
            })
            .collect()
    }

    #[test]
    fn signature_and_id_through_the_ports() {
        let mut fw = FwCfg::new(ram());
        select(&mut fw, keys::SIGNATURE);
        assert_eq!(read_bytes(&mut fw, 4), b"QEMU");
        assert_eq!(read_bytes(&mut fw, 2), [0, 0], "past the end reads zero");
        select(&mut fw, keys::ID);
        assert_eq!(read_bytes(&mut fw, 4), [3, 0, 0, 0], "traditional and DMA");
        let mut sig = [0u8; 8];
        fw.read(4, &mut sig);
        assert_eq!(&sig, b"QEMU CFG");
    }

    #[test]
    fn files_are_listed_sorted_and_readable_by_selector() {
        let mut fw = FwCfg::new(ram());
        let b = fw.add_file("etc/zzz", vec![9; 3]).unwrap();
        let a = fw.add_file("bootorder", b"/x\0".to_vec()).unwrap();
        assert_eq!(
            fw.add_file("bootorder", vec![]),
            Err(FwCfgError::Duplicate("bootorder".into()))
        );
        assert!(matches!(
            fw.add_file(&"n".repeat(56), vec![]),
            Err(FwCfgError::NameTooLong(_))
        ));
        select(&mut fw, keys::FILE_DIR);
        let count = u32::from_be_bytes(read_bytes(&mut fw, 4).try_into().unwrap());
        assert_eq!(count, 2);
        let first = read_bytes(&mut fw, 64);
        assert_eq!(u32::from_be_bytes(first[0..4].try_into().unwrap()), 3);
        assert_eq!(u16::from_be_bytes(first[4..6].try_into().unwrap()), a);
        assert_eq!(&first[8..17], b"bootorder");
        let second = read_bytes(&mut fw, 64);
        assert_eq!(u16::from_be_bytes(second[4..6].try_into().unwrap()), b);
        select(&mut fw, b);
        assert_eq!(read_bytes(&mut fw, 3), [9, 9, 9]);
    }

    fn dma_request(fw: &mut FwCfg, at: u64, control: u32, length: u32, address: u64) -> u32 {
        let mut desc = Vec::new();
        desc.extend_from_slice(&control.to_be_bytes());
        desc.extend_from_slice(&length.to_be_bytes());
        desc.extend_from_slice(&address.to_be_bytes());
        fw.mem.write_slice(&desc, GuestAddress(at)).unwrap();
        fw.write(4, &((at >> 32) as u32).to_be_bytes());
        fw.write(8, &(at as u32).to_be_bytes());
        let mut status = [0u8; 4];
        fw.mem.read_slice(&mut status, GuestAddress(at)).unwrap();
        u32::from_be_bytes(status)
    }

    #[test]
    fn dma_select_skip_and_read() {
        let mut fw = FwCfg::new(ram());
        let sel = fw.add_file("etc/data", (0u8..32).collect()).unwrap();
        let control = (sel as u32) << 16 | DMA_SELECT | DMA_SKIP;
        assert_eq!(dma_request(&mut fw, 0x1000, control, 4, 0), 0);
        assert_eq!(dma_request(&mut fw, 0x1000, DMA_READ, 30, 0x2000), 0);
        let mut got = [0u8; 30];
        fw.mem.read_slice(&mut got, GuestAddress(0x2000)).unwrap();
        let mut expect: Vec<u8> = (4u8..32).collect();
        expect.extend([0, 0]); // past the end: zeros
        assert_eq!(got.to_vec(), expect);
    }

    #[test]
    fn dma_outside_ram_or_writes_set_the_error_bit() {
        let mut fw = FwCfg::new(ram());
        let control = (keys::SIGNATURE as u32) << 16 | DMA_SELECT | DMA_READ;
        assert_eq!(
            dma_request(&mut fw, 0x1000, control, 4, 0xffff_0000),
            DMA_ERROR
        );
        assert_eq!(
            dma_request(&mut fw, 0x1000, DMA_WRITE, 4, 0x2000),
            DMA_ERROR
        );
        // A descriptor outside RAM is ignored without a panic.
        fw.write(4, &0x10u32.to_be_bytes());
        fw.write(8, &0u32.to_be_bytes());
    }

    #[test]
    fn odd_accesses_are_ignored() {
        let mut fw = FwCfg::new(ram());
        for offset in 0..14 {
            fw.write(offset, &[0xff]);
            fw.write(offset, &[0xff; 3]);
            let mut data = [0u8; 5];
            fw.read(offset, &mut data);
        }
    }

    #[test]
    fn e820_and_bootorder_encodings() {
        let e820 = e820_file(&[E820Entry {
            addr: 0x1000,
            len: 0x2000,
            kind: E820Kind::Reserved,
        }]);
        assert_eq!(
            e820,
            [0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0x20, 0, 0, 0, 0, 0, 0, 2, 0, 0, 0]
        );
        let order = bootorder_file(&[ide_boot_path(1, 0), pci_boot_path(5, 0)]);
        assert_eq!(
            order,
            b"/pci@i0cf8/ide@1,1/drive@1/disk@0\n/pci@i0cf8/scsi@5/disk@0,0\0"
        );
        assert_eq!(pci_boot_path(6, 2), "/pci@i0cf8/scsi@6,2/disk@0,0");
    }
}
