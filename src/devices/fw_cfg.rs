//! QEMU's firmware configuration device (`fw_cfg`), as SeaBIOS uses it on x86.
//!
//! Specification: QEMU `docs/specs/fw_cfg.rst` ("Guest-side Hardware
//! Interface" and "Guest-side DMA Interface"); the item keys are those of
//! QEMU's `include/standard-headers/linux/qemu_fw_cfg.h` and
//! `hw/i386/fw_cfg.h`. The guest side that matters is SeaBIOS
//! `src/fw/paravirt.c` (`qemu_cfg_detect`, `qemu_cfg_init`,
//! `qemu_early_e820`) and `src/boot.c` (`loadBootOrder`, `bootprio_find_*`).
//!
//! One device covers the twelve I/O ports at 0x510:
//!
//! | port  | offset | register                                              |
//! |-------|--------|-------------------------------------------------------|
//! | 0x510 | 0      | selector: 16-bit write, little-endian                 |
//! | 0x511 | 1      | data: 8-bit reads walk the selected item              |
//! | 0x514 | 4..8   | DMA address, most significant half (big-endian)       |
//! | 0x518 | 8..12  | DMA address, least significant half; writing it starts the transfer |
//!
//! Reading the DMA address register returns the signature `"QEMU CFG"`.
//!
//! Not emulated: writes through the data register (QEMU removed them in
//! v2.4) and DMA writes (QEMU v2.9 reinstated them for a few writable files
//! such as `etc/vmcoreinfo`; every item here is read-only, so a DMA write
//! ends with the error bit set); selection callbacks (items are fixed
//! before the guest runs); the legacy, order-sorted file directory of old
//! machine types (the directory here is always sorted by name).

use std::collections::BTreeMap;

use vm_memory::{Address, Bytes, GuestAddress};

use super::{BusDevice, GuestRam};

/// The selector keys of the well-known items (QEMU `qemu_fw_cfg.h`, and
/// `hw/i386/fw_cfg.h` for the x86 ones above [`ARCH_LOCAL`]).
///
/// Numeric items are little-endian unless noted.
pub mod keys {
    /// `"QEMU"`, four bytes; firmware detects the device by it.
    pub const SIGNATURE: u16 = 0x00;
    /// Feature bitmap, le32: bit 0 traditional interface, bit 1 DMA.
    pub const ID: u16 = 0x01;
    /// The machine's UUID, 16 bytes in SMBIOS byte order (SeaBIOS copies it
    /// into the SMBIOS type 1 table).
    pub const UUID: u16 = 0x02;
    /// RAM size in bytes, le64.
    pub const RAM_SIZE: u16 = 0x03;
    /// Non-zero, le16, when the machine has no display: SeaBIOS then enables
    /// its serial console on COM1.
    pub const NOGRAPHIC: u16 = 0x04;
    /// vCPUs present at boot, le16.
    pub const NB_CPUS: u16 = 0x05;
    pub const MACHINE_ID: u16 = 0x06;
    /// Direct kernel boot: where and how large the protected-mode kernel is.
    pub const KERNEL_ADDR: u16 = 0x07;
    pub const KERNEL_SIZE: u16 = 0x08;
    /// Obsolete address of the kernel command line; the string itself is
    /// [`CMDLINE_DATA`].
    pub const KERNEL_CMDLINE: u16 = 0x09;
    pub const INITRD_ADDR: u16 = 0x0a;
    pub const INITRD_SIZE: u16 = 0x0b;
    /// Legacy boot device letter (`-boot c`), le16.
    pub const BOOT_DEVICE: u16 = 0x0c;
    /// NUMA: le64 node count, then per-CPU and per-node le64 arrays.
    pub const NUMA: u16 = 0x0d;
    /// Non-zero, le16, to show SeaBIOS's boot menu ("Press ESC").
    pub const BOOT_MENU: u16 = 0x0e;
    /// Highest possible vCPU count, le16.
    pub const MAX_CPUS: u16 = 0x0f;
    pub const KERNEL_ENTRY: u16 = 0x10;
    pub const KERNEL_DATA: u16 = 0x11;
    pub const INITRD_DATA: u16 = 0x12;
    pub const CMDLINE_ADDR: u16 = 0x13;
    pub const CMDLINE_SIZE: u16 = 0x14;
    /// The kernel command line, NUL-terminated.
    pub const CMDLINE_DATA: u16 = 0x15;
    /// Direct kernel boot: the real-mode setup part of the bzImage.
    pub const SETUP_ADDR: u16 = 0x16;
    pub const SETUP_SIZE: u16 = 0x17;
    pub const SETUP_DATA: u16 = 0x18;
    /// The file directory: be32 count, then 64-byte entries.
    pub const FILE_DIR: u16 = 0x19;
    /// Named files get selectors from here up.
    pub const FILE_FIRST: u16 = 0x20;
    /// Bit 14 once meant "writable through the data register"; QEMU ignores
    /// it when looking an item up, and so does this device.
    pub const WRITE_CHANNEL: u16 = 0x4000;
    /// Bit 15: architecture-specific items.
    pub const ARCH_LOCAL: u16 = 0x8000;
    /// The bits that index an item within its (generic or arch) space.
    pub const ENTRY_MASK: u16 = !(WRITE_CHANNEL | ARCH_LOCAL);
    /// x86: legacy ACPI table blobs (le16 count, then le16-length tables).
    pub const ACPI_TABLES: u16 = ARCH_LOCAL;
    /// x86: legacy SMBIOS fields and tables.
    pub const SMBIOS_ENTRIES: u16 = ARCH_LOCAL + 1;
    /// x86: non-zero (u8) when the PIT's IRQ 0 is routed to IOAPIC pin 2.
    pub const IRQ0_OVERRIDE: u16 = ARCH_LOCAL + 2;
    /// x86: legacy e820 reservations (le32 count, then 20-byte entries);
    /// SeaBIOS only reads it when there is no `etc/e820` file.
    pub const E820_TABLE: u16 = ARCH_LOCAL + 3;
    /// x86: HPET description for the ACPI table.
    pub const HPET: u16 = ARCH_LOCAL + 4;
}

/// What the signature item holds.
const SIGNATURE: &[u8; 4] = b"QEMU";
/// What reads of the DMA address register return (`FW_CFG_DMA_SIGNATURE`,
/// 0x51454d5520434647 big-endian).
const DMA_SIGNATURE: &[u8; 8] = b"QEMU CFG";

/// `FW_CFG_ID` bits.
const ID_TRADITIONAL: u32 = 1 << 0;
const ID_DMA: u32 = 1 << 1;

/// Register offsets within the device's twelve ports.
const REG_SELECTOR: u64 = 0;
const REG_DATA: u64 = 1;
const REG_DMA_ADDRESS_HIGH: u64 = 4;
const REG_DMA_ADDRESS_LOW: u64 = 8;
const REG_DMA_END: u64 = 12;

/// `FWCfgDmaAccess.control` bits.
const DMA_CTL_ERROR: u32 = 1 << 0;
const DMA_CTL_READ: u32 = 1 << 1;
const DMA_CTL_SKIP: u32 = 1 << 2;
const DMA_CTL_SELECT: u32 = 1 << 3;
const DMA_CTL_WRITE: u32 = 1 << 4;
/// `FWCfgDmaAccess`: be32 control, be32 length, be64 address.
const DMA_ACCESS_SIZE: usize = 16;

/// `FWCfgFile.name`, including its terminating NUL.
const FILE_NAME_SIZE: usize = 56;
/// `FWCfgFile`: be32 size, be16 select, be16 reserved, name.
const FILE_ENTRY_SIZE: usize = 64;

/// Zero-filling a DMA read past the end of an item goes in pieces this
/// large, so a guest asking for 4 GiB costs no host allocation.
const ZERO_CHUNK: usize = 4096;
static ZEROS: [u8; ZERO_CHUNK] = [0; ZERO_CHUNK];

/// Errors from filling the device.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FwCfgError {
    /// The name does not fit the directory's 56-byte, NUL-terminated field.
    #[error("fw_cfg file name {name:?} is longer than {max} bytes")]
    NameTooLong { name: String, max: usize },
    /// The name is empty or contains a NUL byte, which would end it early.
    #[error("fw_cfg file name {0:?} is empty or contains a NUL byte")]
    InvalidName(String),
    /// A file of this name exists already.
    #[error("fw_cfg file {0:?} exists already")]
    DuplicateFile(String),
    /// Every file selector (0x0020..=0x3fff) is taken.
    #[error("no fw_cfg file selector left for {0:?}")]
    TooManyFiles(String),
    /// The directory records sizes as 32-bit numbers.
    #[error("fw_cfg file {name:?} is {size} bytes, more than 4 GiB")]
    FileTooLarge { name: String, size: usize },
}

/// One entry of the file directory.
#[derive(Debug)]
struct FileEntry {
    name: String,
    selector: u16,
    size: u32,
}

/// The fw_cfg device: a set of items the VMM fills before the guest runs,
/// read by firmware through the data port or by DMA.
pub struct FwCfg {
    mem: GuestRam,
    /// Every item by selector (with [`keys::WRITE_CHANNEL`] cleared).
    items: BTreeMap<u16, Vec<u8>>,
    /// The file directory's entries, sorted by name.
    files: Vec<FileEntry>,
    /// The selector the next file gets. Files keep the selector they were
    /// given, so what [`FwCfg::add_file`] returned stays true; SeaBIOS, OVMF
    /// and Linux all take selectors from the directory, never from a
    /// file's position in it.
    next_file_selector: u16,
    /// The selected item and how far into it the guest has read.
    selected: u16,
    offset: usize,
    /// The DMA address register, assembled from its two halves.
    dma_address: u64,
}

impl FwCfg {
    /// A device with the signature, the feature bitmap (traditional and DMA
    /// interfaces) and an empty file directory.
    pub fn new(mem: GuestRam) -> Self {
        let mut items = BTreeMap::new();
        items.insert(keys::SIGNATURE, SIGNATURE.to_vec());
        items.insert(keys::ID, (ID_TRADITIONAL | ID_DMA).to_le_bytes().to_vec());
        let mut fw_cfg = Self {
            mem,
            items,
            files: Vec::new(),
            next_file_selector: keys::FILE_FIRST,
            selected: keys::SIGNATURE,
            offset: 0,
            dma_address: 0,
        };
        fw_cfg.rebuild_directory();
        fw_cfg
    }

    /// Sets the well-known item `key` (see [`keys`]) to `data`, replacing
    /// what was there.
    ///
    /// # Panics
    ///
    /// If `key` is one the device owns: the signature, the feature bitmap,
    /// the file directory, or a file selector (use [`FwCfg::add_file`]).
    /// That is a bug in the VMM, not something a guest can cause.
    pub fn add_item(&mut self, key: u16, data: Vec<u8>) {
        let key = key & !keys::WRITE_CHANNEL;
        let index = key & keys::ENTRY_MASK;
        let generic = key & keys::ARCH_LOCAL == 0;
        let owned = generic
            && (matches!(index, keys::SIGNATURE | keys::ID | keys::FILE_DIR)
                || index >= keys::FILE_FIRST);
        assert!(!owned, "fw_cfg item {key:#06x} is owned by the device");
        self.items.insert(key, data);
    }

    /// Sets `key` to a little-endian 16-bit number.
    pub fn add_u16(&mut self, key: u16, value: u16) {
        self.add_item(key, value.to_le_bytes().to_vec());
    }

    /// Sets `key` to a little-endian 32-bit number.
    pub fn add_u32(&mut self, key: u16, value: u32) {
        self.add_item(key, value.to_le_bytes().to_vec());
    }

    /// Sets `key` to a little-endian 64-bit number.
    pub fn add_u64(&mut self, key: u16, value: u64) {
        self.add_item(key, value.to_le_bytes().to_vec());
    }

    /// Sets `key` to `value` followed by a NUL, as QEMU stores strings such
    /// as [`keys::CMDLINE_DATA`].
    pub fn add_string(&mut self, key: u16, value: &str) {
        let mut data = Vec::with_capacity(value.len() + 1);
        data.extend_from_slice(value.as_bytes());
        data.push(0);
        self.add_item(key, data);
    }

    /// Adds the named file `name` (e.g. `"etc/e820"`, `"bootorder"`) and
    /// returns its selector.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<u16, FwCfgError> {
        if name.is_empty() || name.contains('\0') {
            return Err(FwCfgError::InvalidName(name.to_owned()));
        }
        if name.len() >= FILE_NAME_SIZE {
            return Err(FwCfgError::NameTooLong {
                name: name.to_owned(),
                max: FILE_NAME_SIZE - 1,
            });
        }
        let size = u32::try_from(data.len()).map_err(|_| FwCfgError::FileTooLarge {
            name: name.to_owned(),
            size: data.len(),
        })?;
        // `str`'s ordering is byte-wise, the same as the `strcmp` QEMU sorts with.
        let index = match self.files.binary_search_by(|f| f.name.as_str().cmp(name)) {
            Ok(_) => return Err(FwCfgError::DuplicateFile(name.to_owned())),
            Err(index) => index,
        };
        let selector = self.next_file_selector;
        if selector > keys::ENTRY_MASK {
            return Err(FwCfgError::TooManyFiles(name.to_owned()));
        }
        self.next_file_selector += 1;
        self.files.insert(
            index,
            FileEntry {
                name: name.to_owned(),
                selector,
                size,
            },
        );
        self.items.insert(selector, data);
        self.rebuild_directory();
        Ok(selector)
    }

    /// Back to the power-on state: the signature selected, no DMA address
    /// latched. The items stay.
    pub fn reset(&mut self) {
        self.select(keys::SIGNATURE);
        self.dma_address = 0;
    }

    /// Re-encodes [`keys::FILE_DIR`] from `files`.
    fn rebuild_directory(&mut self) {
        let mut dir = Vec::with_capacity(4 + FILE_ENTRY_SIZE * self.files.len());
        // `files` holds at most 0x3fe0 entries, so the count fits.
        dir.extend_from_slice(&(self.files.len() as u32).to_be_bytes());
        for file in &self.files {
            dir.extend_from_slice(&file.size.to_be_bytes());
            dir.extend_from_slice(&file.selector.to_be_bytes());
            dir.extend_from_slice(&0u16.to_be_bytes()); // reserved
            let mut name = [0u8; FILE_NAME_SIZE];
            name[..file.name.len()].copy_from_slice(file.name.as_bytes());
            dir.extend_from_slice(&name);
        }
        self.items.insert(keys::FILE_DIR, dir);
    }

    /// The selector register: picks an item and rewinds to its start. A key
    /// with no item reads as zeros.
    fn select(&mut self, key: u16) {
        self.selected = key & !keys::WRITE_CHANNEL;
        self.offset = 0;
    }

    /// The selected item, or nothing when no item has that key.
    fn selected_data(&self) -> &[u8] {
        self.items.get(&self.selected).map_or(&[], Vec::as_slice)
    }

    /// One byte from the data register; zero past the end of the item.
    fn read_data_byte(&mut self) -> u8 {
        match self.selected_data().get(self.offset).copied() {
            Some(byte) => {
                self.offset += 1;
                byte
            }
            None => 0,
        }
    }

    /// Runs the `FWCfgDmaAccess` at the latched DMA address, then writes the
    /// outcome into its `control` field: 0, or [`DMA_CTL_ERROR`].
    fn dma_transfer(&mut self) {
        // QEMU clears the register before the transfer, so the next one can
        // be started with a single 32-bit write of the low half.
        let access_addr = GuestAddress(std::mem::take(&mut self.dma_address));
        let mut access = [0u8; DMA_ACCESS_SIZE];
        if let Err(e) = self.mem.read_slice(&mut access, access_addr) {
            crate::guest_warn!(
                "fw_cfg: DMA descriptor at {:#x} is not in guest RAM: {e}",
                access_addr.0
            );
            self.dma_complete(access_addr, DMA_CTL_ERROR);
            return;
        }
        let [c0, c1, c2, c3, l0, l1, l2, l3, a0, a1, a2, a3, a4, a5, a6, a7] = access;
        let control = u32::from_be_bytes([c0, c1, c2, c3]);
        let length = u32::from_be_bytes([l0, l1, l2, l3]);
        let address = GuestAddress(u64::from_be_bytes([a0, a1, a2, a3, a4, a5, a6, a7]));
        tracing::trace!(control, length, address = address.0, "fw_cfg DMA");

        if control & DMA_CTL_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        // The same precedence as QEMU: read, else write, else skip.
        let status = if control & DMA_CTL_READ != 0 {
            self.dma_read(address, length)
        } else if control & DMA_CTL_WRITE != 0 {
            if length == 0 {
                0
            } else {
                crate::guest_warn!(
                    "fw_cfg: DMA write to read-only item {:#06x} refused",
                    self.selected
                );
                DMA_CTL_ERROR
            }
        } else if control & DMA_CTL_SKIP != 0 {
            let len = self.selected_data().len();
            self.offset = self.offset.saturating_add(length as usize).min(len);
            0
        } else {
            0
        };
        self.dma_complete(access_addr, status);
    }

    /// Copies `length` bytes of the selected item, from the current offset,
    /// to guest memory at `dest`; zeros past the end of the item.
    fn dma_read(&mut self, dest: GuestAddress, length: u32) -> u32 {
        let length = length as usize;
        let data = self
            .items
            .get(&self.selected)
            .map_or(&[][..], Vec::as_slice);
        let start = self.offset.min(data.len());
        let copied = length.min(data.len() - start);
        let result = self.mem.write_slice(&data[start..start + copied], dest);
        // As QEMU, the offset advances even when the guest's buffer was bad.
        self.offset = start + copied;
        if let Err(e) = result {
            crate::guest_warn!(
                "fw_cfg: DMA read of {length} bytes to {:#x} is not in guest RAM: {e}",
                dest.0
            );
            return DMA_CTL_ERROR;
        }
        let mut remaining = length - copied;
        let mut addr = dest.checked_add(copied as u64);
        while remaining > 0 {
            let chunk = remaining.min(ZERO_CHUNK);
            let Some(at) = addr else {
                crate::guest_warn!("fw_cfg: DMA read wraps past the end of the address space");
                return DMA_CTL_ERROR;
            };
            if let Err(e) = self.mem.write_slice(&ZEROS[..chunk], at) {
                crate::guest_warn!(
                    "fw_cfg: DMA read of {length} bytes to {:#x} runs out of guest RAM: {e}",
                    dest.0
                );
                return DMA_CTL_ERROR;
            }
            remaining -= chunk;
            addr = at.checked_add(chunk as u64);
        }
        0
    }

    /// Writes the outcome into the descriptor's `control` field, which the
    /// firmware polls.
    fn dma_complete(&self, access_addr: GuestAddress, status: u32) {
        if let Err(e) = self.mem.write_slice(&status.to_be_bytes(), access_addr) {
            crate::guest_warn!(
                "fw_cfg: cannot write DMA status to {:#x}: {e}",
                access_addr.0
            );
        }
    }
}

impl BusDevice for FwCfg {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (offset, &mut *data) {
            // QEMU answers byte reads of either port of the selector/data pair
            // with data; SeaBIOS uses 0x511 (`insb`, `inb`).
            (REG_SELECTOR | REG_DATA, [byte]) => *byte = self.read_data_byte(),
            (offset, data)
                if offset >= REG_DMA_ADDRESS_HIGH
                    && offset.saturating_add(data.len() as u64) <= REG_DMA_END =>
            {
                let start = (offset - REG_DMA_ADDRESS_HIGH) as usize;
                let len = data.len();
                data.copy_from_slice(&DMA_SIGNATURE[start..start + len]);
            }
            (offset, data) => {
                crate::guest_warn!(
                    "fw_cfg: ignored {}-byte read at offset {offset}",
                    data.len()
                );
                data.fill(0xff);
            }
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data) {
            (REG_SELECTOR, &[lo, hi]) => self.select(u16::from_le_bytes([lo, hi])),
            // The register is big-endian: the guest's `outl` of
            // `cpu_to_be32(addr)` puts the address's most significant byte
            // at the lowest port.
            (REG_DMA_ADDRESS_HIGH, &[a, b, c, d]) => {
                self.dma_address = u64::from(u32::from_be_bytes([a, b, c, d])) << 32;
            }
            (REG_DMA_ADDRESS_LOW, &[a, b, c, d]) => {
                self.dma_address |= u64::from(u32::from_be_bytes([a, b, c, d]));
                self.dma_transfer();
            }
            (REG_DMA_ADDRESS_HIGH, &[a, b, c, d, e, f, g, h]) => {
                self.dma_address = u64::from_be_bytes([a, b, c, d, e, f, g, h]);
                self.dma_transfer();
            }
            (REG_SELECTOR | REG_DATA, [_]) => {
                crate::guest_warn!("fw_cfg: data register writes are not supported");
            }
            _ => crate::guest_warn!(
                "fw_cfg: ignored {}-byte write at offset {offset}",
                data.len()
            ),
        }
    }
}

/// An e820 memory type, as in the ACPI specification's address range types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum E820Kind {
    /// Usable RAM (type 1).
    Ram,
    /// Reserved, not usable by the OS (type 2).
    Reserved,
    /// ACPI tables, reclaimable after they are read (type 3).
    Acpi,
    /// ACPI non-volatile storage (type 4).
    Nvs,
}

impl E820Kind {
    /// The number the e820 table stores.
    pub fn code(self) -> u32 {
        match self {
            E820Kind::Ram => 1,
            E820Kind::Reserved => 2,
            E820Kind::Acpi => 3,
            E820Kind::Nvs => 4,
        }
    }
}

/// One range of the guest's physical memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub len: u64,
    pub kind: E820Kind,
}

/// The contents of the `etc/e820` file: per entry le64 address, le64
/// length, le32 type, packed (20 bytes), as QEMU's `struct e820_entry`.
///
/// SeaBIOS's `qemu_early_e820` reads it before anything else and takes the
/// RAM size below and above 4 GiB from its RAM entries; it adds RAM and
/// reserved entries to its own map and ignores other types. Without the
/// file it falls back to CMOS.
pub fn e820_file(entries: &[E820Entry]) -> Vec<u8> {
    let mut out = Vec::with_capacity(entries.len() * 20);
    for entry in entries {
        out.extend_from_slice(&entry.addr.to_le_bytes());
        out.extend_from_slice(&entry.len.to_le_bytes());
        out.extend_from_slice(&entry.kind.code().to_le_bytes());
    }
    out
}

/// The contents of the `bootorder` file: one device path per line,
/// separated by `\n`, NUL-terminated (QEMU's `get_boot_devices_list`).
///
/// SeaBIOS's `loadBootOrder` splits the file at newlines and trims trailing
/// white space; a device's priority is the line number of the first line
/// its pattern matches (`find_prio`). A last line `HALT` makes SeaBIOS boot
/// only the listed devices. Paths must not contain `\n` or NUL.
pub fn bootorder_file(paths: &[String]) -> Vec<u8> {
    let mut out = paths.join("\n").into_bytes();
    out.push(0);
    out
}

/// The boot path of the PCI root bus as SeaBIOS names it (`FW_PCI_DOMAIN`
/// in `src/boot.c`): the host bridge decodes configuration mechanism #1 at
/// I/O port 0xCF8.
const PCI_ROOT_PATH: &str = "/pci@i0cf8";

/// The boot path of an IDE disk or CD-ROM on the PIIX IDE function at
/// 00:01.1: `channel` 0 primary, 1 secondary; `unit` 0 master, 1 slave.
///
/// `ide_boot_path(1, 0)` is `/pci@i0cf8/ide@1,1/drive@1/disk@0`, what QEMU
/// writes for the same drive (`idebus_get_fw_dev_path` plus the IDE
/// device's `/disk@<unit>`). SeaBIOS matches it in `bootprio_find_ata_device`
/// (called from `init_drive_ata` and `init_drive_atapi` in `src/hw/ata.c`)
/// with the pattern `/pci@i0cf8/*@1,1/drive@<chanid>/disk@<slave>` built by
/// `build_ata_path`, numbers in hex.
pub fn ide_boot_path(channel: u8, unit: u8) -> String {
    format!("{PCI_ROOT_PATH}/ide@1,1/drive@{channel:x}/disk@{unit:x}")
}

/// The boot path of a virtio-blk disk at PCI `slot` and `function` of the
/// root bus.
///
/// `pci_boot_path(4, 0)` is `/pci@i0cf8/scsi@4/disk@0,0`, what QEMU writes
/// for a virtio-blk-pci device (its class is SCSI storage, named `scsi`,
/// plus `/disk@0,0`); function 2 gives `/pci@i0cf8/scsi@4,2/disk@0,0`.
/// SeaBIOS matches it in `bootprio_find_pci_device` (called from
/// `init_virtio_blk` in `src/hw/virtio-blk.c`) with the pattern
/// `/pci@i0cf8/*@<slot>[,<function>]` from `build_pci_path`: the `*`
/// matches any name, the function appears only when non-zero, numbers are
/// hex, and the pattern need only match up to a `/` of the path.
pub fn pci_boot_path(slot: u8, function: u8) -> String {
    if function == 0 {
        format!("{PCI_ROOT_PATH}/scsi@{slot:x}/disk@0,0")
    } else {
        format!("{PCI_ROOT_PATH}/scsi@{slot:x},{function:x}/disk@0,0")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RAM_SIZE: u64 = 1 << 20;
    /// Where tests put the `FWCfgDmaAccess` descriptor.
    const DESCRIPTOR: u64 = 0x1000;
    /// Where tests ask DMA reads to land.
    const BUFFER: u64 = 0x2000;

    fn ram() -> GuestRam {
        GuestRam::from_ranges(&[(GuestAddress(0), RAM_SIZE as usize)]).unwrap()
    }

    fn device() -> (FwCfg, GuestRam) {
        let mem = ram();
        (FwCfg::new(mem.clone()), mem)
    }

    /// `outw(key, 0x510)`.
    fn select(dev: &mut FwCfg, key: u16) {
        dev.write(REG_SELECTOR, &key.to_le_bytes());
    }

    /// `insb(0x511, buf, len)`.
    fn read_data(dev: &mut FwCfg, len: usize) -> Vec<u8> {
        (0..len)
            .map(|_| {
                let mut byte = [0u8];
                dev.read(REG_DATA, &mut byte);
                byte[0]
            })
            .collect()
    }

    /// Writes a descriptor and starts it the way SeaBIOS's
    /// `qemu_cfg_dma_transfer` does: `outl(cpu_to_be32(addr), 0x518)`.
    /// Returns the control field afterwards.
    fn dma(dev: &mut FwCfg, mem: &GuestRam, control: u32, length: u32, address: u64) -> u32 {
        write_descriptor(mem, DESCRIPTOR, control, length, address);
        dev.write(REG_DMA_ADDRESS_LOW, &(DESCRIPTOR as u32).to_be_bytes());
        control_at(mem, DESCRIPTOR)
    }

    fn write_descriptor(mem: &GuestRam, at: u64, control: u32, length: u32, address: u64) {
        let mut access = Vec::new();
        access.extend_from_slice(&control.to_be_bytes()); // control
        access.extend_from_slice(&length.to_be_bytes()); // length
        access.extend_from_slice(&address.to_be_bytes()); // address
        mem.write_slice(&access, GuestAddress(at)).unwrap();
    }

    fn control_at(mem: &GuestRam, at: u64) -> u32 {
        let mut control = [0u8; 4];
        mem.read_slice(&mut control, GuestAddress(at)).unwrap();
        u32::from_be_bytes(control)
    }

    fn guest_bytes(mem: &GuestRam, at: u64, len: usize) -> Vec<u8> {
        let mut out = vec![0u8; len];
        mem.read_slice(&mut out, GuestAddress(at)).unwrap();
        out
    }

    /// SeaBIOS's `glob_prefix` (src/boot.c), restated: does `path` start
    /// with `pattern`, where `*` matches any run of characters other than
    /// `/` and the pattern's next character, and the match must end at the
    /// end of `path` or at a `/`?
    fn seabios_matches(pattern: &str, path: &str) -> bool {
        let (glob, s) = (pattern.as_bytes(), path.as_bytes());
        let (mut g, mut i) = (0, 0);
        loop {
            let gc = glob.get(g).copied();
            let sc = s.get(i).copied();
            match gc {
                None => return sc.is_none() || sc == Some(b'/'),
                Some(b'*') => {
                    if sc.is_none() || sc == Some(b'/') || sc == glob.get(g + 1).copied() {
                        g += 1;
                    } else {
                        i += 1;
                    }
                }
                Some(c) => {
                    if sc != Some(c) {
                        return false;
                    }
                    g += 1;
                    i += 1;
                }
            }
        }
    }

    #[test]
    fn signature_and_id_through_the_ports_as_seabios_detects_them() {
        let (mut dev, _) = device();
        select(&mut dev, keys::SIGNATURE);
        assert_eq!(read_data(&mut dev, 4), b"QEMU");
        // Past the end the data register reads zeros.
        assert_eq!(read_data(&mut dev, 3), [0, 0, 0]);

        select(&mut dev, keys::ID);
        let id = read_data(&mut dev, 4);
        assert_eq!(u32::from_le_bytes(id.try_into().unwrap()), 0b11);

        // Re-selecting rewinds.
        select(&mut dev, keys::SIGNATURE);
        assert_eq!(read_data(&mut dev, 2), b"QE");
        select(&mut dev, keys::SIGNATURE);
        assert_eq!(read_data(&mut dev, 4), b"QEMU");
    }

    #[test]
    fn dma_register_reads_return_the_signature() {
        let (mut dev, _) = device();
        let mut eight = [0u8; 8];
        dev.read(REG_DMA_ADDRESS_HIGH, &mut eight);
        assert_eq!(&eight, b"QEMU CFG");
        let mut four = [0u8; 4];
        dev.read(REG_DMA_ADDRESS_HIGH, &mut four);
        assert_eq!(&four, b"QEMU");
        dev.read(REG_DMA_ADDRESS_LOW, &mut four);
        assert_eq!(&four, b" CFG");
        let mut two = [0u8; 2];
        dev.read(5, &mut two);
        assert_eq!(&two, b"EM");
    }

    #[test]
    fn numeric_items_are_little_endian() {
        let (mut dev, _) = device();
        dev.add_u64(keys::RAM_SIZE, 0x1_2345_6789);
        dev.add_u16(keys::NB_CPUS, 2);
        dev.add_u32(keys::E820_TABLE, 0);
        dev.add_string(keys::CMDLINE_DATA, "console=ttyS0");
        select(&mut dev, keys::RAM_SIZE);
        assert_eq!(
            read_data(&mut dev, 8),
            [0x89, 0x67, 0x45, 0x23, 0x01, 0, 0, 0]
        );
        select(&mut dev, keys::NB_CPUS);
        assert_eq!(read_data(&mut dev, 3), [2, 0, 0]);
        select(&mut dev, keys::E820_TABLE);
        assert_eq!(read_data(&mut dev, 4), [0, 0, 0, 0]);
        select(&mut dev, keys::CMDLINE_DATA);
        assert_eq!(read_data(&mut dev, 14), b"console=ttyS0\0");
        // Replacing an item is allowed.
        dev.add_u16(keys::NB_CPUS, 4);
        select(&mut dev, keys::NB_CPUS);
        assert_eq!(read_data(&mut dev, 2), [4, 0]);
    }

    #[test]
    #[should_panic(expected = "owned by the device")]
    fn add_item_refuses_the_file_directory() {
        let (mut dev, _) = device();
        dev.add_item(keys::FILE_DIR, vec![0; 4]);
    }

    #[test]
    fn file_directory_walk_and_read_by_selector() {
        let (mut dev, _) = device();
        let bootorder = bootorder_file(&[ide_boot_path(1, 0)]);
        let e820 = e820_file(&[E820Entry {
            addr: 0,
            len: 0x9fc00,
            kind: E820Kind::Ram,
        }]);
        // Added out of name order.
        let sel_opt = dev.add_file("opt/org.vireo/x", b"xyz".to_vec()).unwrap();
        let sel_e820 = dev.add_file("etc/e820", e820.clone()).unwrap();
        let sel_boot = dev.add_file("bootorder", bootorder.clone()).unwrap();
        assert_eq!((sel_opt, sel_e820, sel_boot), (0x20, 0x21, 0x22));

        // What qemu_cfg_init does: read the count, then 64-byte entries.
        select(&mut dev, keys::FILE_DIR);
        let count = u32::from_be_bytes(read_data(&mut dev, 4).try_into().unwrap());
        assert_eq!(count, 3);
        let mut found = Vec::new();
        for _ in 0..count {
            let entry = read_data(&mut dev, 64);
            let size = u32::from_be_bytes(entry[0..4].try_into().unwrap());
            let selector = u16::from_be_bytes(entry[4..6].try_into().unwrap());
            assert_eq!(&entry[6..8], [0, 0], "reserved");
            let name = &entry[8..];
            let end = name.iter().position(|&b| b == 0).unwrap();
            assert!(name[end..].iter().all(|&b| b == 0));
            found.push((
                String::from_utf8(name[..end].to_vec()).unwrap(),
                selector,
                size,
            ));
        }
        // Past the directory: zeros.
        assert_eq!(read_data(&mut dev, 4), [0; 4]);
        assert_eq!(
            found,
            [
                ("bootorder".to_owned(), 0x22, bootorder.len() as u32),
                ("etc/e820".to_owned(), 0x21, 20),
                ("opt/org.vireo/x".to_owned(), 0x20, 3),
            ]
        );

        // Read each file by the selector the directory gave.
        select(&mut dev, 0x21);
        assert_eq!(read_data(&mut dev, 20), e820);
        select(&mut dev, 0x22);
        assert_eq!(read_data(&mut dev, bootorder.len()), bootorder);
        // Bit 14 (the old write channel) selects the same item, as in QEMU.
        select(&mut dev, 0x20 | keys::WRITE_CHANNEL);
        assert_eq!(read_data(&mut dev, 4), b"xyz\0");
        // A selector with no item reads zeros.
        select(&mut dev, 0x3fff);
        assert_eq!(read_data(&mut dev, 2), [0, 0]);
    }

    #[test]
    fn add_file_rejects_bad_names_and_duplicates() {
        let (mut dev, _) = device();
        let longest = "a".repeat(55);
        assert_eq!(dev.add_file(&longest, vec![1]), Ok(0x20));
        let too_long = "a".repeat(56);
        assert_eq!(
            dev.add_file(&too_long, vec![]),
            Err(FwCfgError::NameTooLong {
                name: too_long.clone(),
                max: 55
            })
        );
        assert_eq!(
            dev.add_file(&longest, vec![]),
            Err(FwCfgError::DuplicateFile(longest.clone()))
        );
        assert_eq!(
            dev.add_file("", vec![]),
            Err(FwCfgError::InvalidName(String::new()))
        );
        assert_eq!(
            dev.add_file("a\0b", vec![]),
            Err(FwCfgError::InvalidName("a\0b".to_owned()))
        );
        // The refused files took no selector.
        assert_eq!(dev.add_file("b", vec![]), Ok(0x21));

        // A 55-byte name fills the field with exactly one NUL.
        select(&mut dev, keys::FILE_DIR);
        let dir = read_data(&mut dev, 4 + 2 * 64);
        assert_eq!(&dir[..4], [0, 0, 0, 2]);
        assert_eq!(&dir[4 + 8..4 + 8 + 55], longest.as_bytes());
        assert_eq!(dir[4 + 63], 0);
    }

    #[test]
    fn dma_select_skip_and_read_into_guest_memory() {
        let (mut dev, mem) = device();
        let sel = dev.add_file("etc/test", (0u8..100).collect()).unwrap();
        mem.write_slice(&[0xaa; 64], GuestAddress(BUFFER)).unwrap();

        // qemu_cfg_read_entry: select and read in one go.
        let status = dma(
            &mut dev,
            &mem,
            u32::from(sel) << 16 | DMA_CTL_SELECT | DMA_CTL_READ,
            10,
            BUFFER,
        );
        assert_eq!(status, 0);
        assert_eq!(guest_bytes(&mem, BUFFER, 11), {
            let mut v: Vec<u8> = (0..10).collect();
            v.push(0xaa);
            v
        });

        // qemu_cfg_skip: skip 80 bytes; the read continues from byte 90.
        assert_eq!(dma(&mut dev, &mem, DMA_CTL_SKIP, 80, 0), 0);
        assert_eq!(dma(&mut dev, &mem, DMA_CTL_READ, 16, BUFFER), 0);
        // Ten bytes of item, then zeros where the item ended.
        let mut expected: Vec<u8> = (90..100).collect();
        expected.extend([0; 6]);
        expected.push(0xaa);
        assert_eq!(guest_bytes(&mem, BUFFER, 17), expected);

        // Select and skip together, then read through the data port: DMA
        // and port reads share one offset.
        assert_eq!(
            dma(
                &mut dev,
                &mem,
                u32::from(sel) << 16 | DMA_CTL_SELECT | DMA_CTL_SKIP,
                50,
                0
            ),
            0
        );
        assert_eq!(read_data(&mut dev, 2), [50, 51]);

        // Skipping past the end stops at the end.
        assert_eq!(dma(&mut dev, &mem, DMA_CTL_SKIP, u32::MAX, 0), 0);
        assert_eq!(read_data(&mut dev, 1), [0]);

        // The signature via DMA, as SeaBIOS reads FW_CFG_ID once DMA is on.
        assert_eq!(
            dma(
                &mut dev,
                &mem,
                u32::from(keys::ID) << 16 | DMA_CTL_SELECT | DMA_CTL_READ,
                4,
                BUFFER
            ),
            0
        );
        assert_eq!(guest_bytes(&mem, BUFFER, 4), [3, 0, 0, 0]);

        // A selector with no item reads as zeros.
        mem.write_slice(&[0xaa; 4], GuestAddress(BUFFER)).unwrap();
        assert_eq!(
            dma(
                &mut dev,
                &mem,
                0x1234 << 16 | DMA_CTL_SELECT | DMA_CTL_READ,
                4,
                BUFFER
            ),
            0
        );
        assert_eq!(guest_bytes(&mem, BUFFER, 4), [0; 4]);

        // No operation bits: nothing happens, and the status is success.
        mem.write_slice(&[0xaa; 4], GuestAddress(BUFFER)).unwrap();
        assert_eq!(dma(&mut dev, &mem, 0, 4, BUFFER), 0);
        assert_eq!(guest_bytes(&mem, BUFFER, 4), [0xaa; 4]);
    }

    #[test]
    fn dma_address_as_two_halves_or_one_64_bit_write() {
        let (mut dev, mem) = device();
        write_descriptor(
            &mem,
            0x3000,
            u32::from(keys::SIGNATURE) << 16 | DMA_CTL_SELECT | DMA_CTL_READ,
            4,
            BUFFER,
        );
        // High half first (zero), then the low half starts it.
        dev.write(REG_DMA_ADDRESS_HIGH, &0u32.to_be_bytes());
        dev.write(REG_DMA_ADDRESS_LOW, &0x3000u32.to_be_bytes());
        assert_eq!(control_at(&mem, 0x3000), 0);
        assert_eq!(guest_bytes(&mem, BUFFER, 4), b"QEMU");

        mem.write_slice(&[0; 4], GuestAddress(BUFFER)).unwrap();
        write_descriptor(
            &mem,
            0x3000,
            u32::from(keys::SIGNATURE) << 16 | DMA_CTL_SELECT | DMA_CTL_READ,
            4,
            BUFFER,
        );
        dev.write(REG_DMA_ADDRESS_HIGH, &0x3000u64.to_be_bytes());
        assert_eq!(control_at(&mem, 0x3000), 0);
        assert_eq!(guest_bytes(&mem, BUFFER, 4), b"QEMU");

        // Writing the high half alone starts nothing.
        write_descriptor(&mem, 0x3000, DMA_CTL_READ, 4, BUFFER);
        dev.write(REG_DMA_ADDRESS_HIGH, &0u32.to_be_bytes());
        assert_eq!(control_at(&mem, 0x3000), DMA_CTL_READ);
    }

    #[test]
    fn dma_to_addresses_outside_guest_ram_sets_error() {
        let (mut dev, mem) = device();
        let sel = dev.add_file("etc/test", vec![7; 32]).unwrap();
        let read_file = u32::from(sel) << 16 | DMA_CTL_SELECT | DMA_CTL_READ;

        // Far outside RAM.
        assert_eq!(
            dma(&mut dev, &mem, read_file, 16, 0x1_0000_0000),
            DMA_CTL_ERROR
        );
        // Straddling the end of RAM: the item part fits, the rest does not.
        assert_eq!(
            dma(&mut dev, &mem, read_file, 16, RAM_SIZE - 8),
            DMA_CTL_ERROR
        );
        // Zero fill that runs off the end of RAM.
        assert_eq!(
            dma(&mut dev, &mem, read_file, u32::MAX, RAM_SIZE - 0x10000),
            DMA_CTL_ERROR
        );
        assert_eq!(guest_bytes(&mem, RAM_SIZE - 0x10000, 32), [7; 32]);
        // An address that wraps the 64-bit space.
        assert_eq!(
            dma(&mut dev, &mem, read_file, 64, u64::MAX - 8),
            DMA_CTL_ERROR
        );
        // Writes are refused: every item is read-only.
        assert_eq!(
            dma(
                &mut dev,
                &mem,
                u32::from(sel) << 16 | DMA_CTL_SELECT | DMA_CTL_WRITE,
                4,
                BUFFER
            ),
            DMA_CTL_ERROR
        );
        select(&mut dev, sel);
        assert_eq!(read_data(&mut dev, 4), [7; 4]);

        // A descriptor outside RAM: nothing to report to, and no panic.
        dev.write(REG_DMA_ADDRESS_HIGH, &0x10u32.to_be_bytes());
        dev.write(REG_DMA_ADDRESS_LOW, &0u32.to_be_bytes());
        // Half a descriptor at the end of RAM: the error lands in the half
        // that exists, as QEMU's `stl_be_dma` of the control field does.
        dev.write(REG_DMA_ADDRESS_HIGH, &(RAM_SIZE - 4).to_be_bytes());
        assert_eq!(control_at(&mem, RAM_SIZE - 4), DMA_CTL_ERROR);
        // The register was cleared after each attempt: a low-only write
        // reaches a descriptor in RAM again.
        assert_eq!(
            dma(
                &mut dev,
                &mem,
                u32::from(keys::SIGNATURE) << 16 | DMA_CTL_SELECT | DMA_CTL_READ,
                4,
                BUFFER
            ),
            0
        );
        assert_eq!(guest_bytes(&mem, BUFFER, 4), b"QEMU");
    }

    #[test]
    fn odd_widths_and_unused_ports_are_ignored() {
        let (mut dev, mem) = device();
        select(&mut dev, keys::ID);

        // Selector: only a 16-bit write selects.
        dev.write(REG_SELECTOR, &[0]);
        dev.write(REG_SELECTOR, &[0, 0, 0, 0]);
        dev.write(REG_DATA, &[0, 0]);
        dev.write(REG_DATA, &[0x55]);
        // Data: only byte reads advance.
        let mut two = [0u8; 2];
        dev.read(REG_DATA, &mut two);
        assert_eq!(two, [0xff, 0xff]);
        let mut four = [0u8; 4];
        dev.read(REG_SELECTOR, &mut four);
        assert_eq!(four, [0xff; 4]);
        // The unused ports 0x512 and 0x513, and past the end.
        for offset in [2, 3, 12, 100, u64::MAX] {
            let mut byte = [0u8];
            dev.read(offset, &mut byte);
            assert_eq!(byte, [0xff], "offset {offset}");
            dev.write(offset, &[1, 2]);
        }
        // A read that runs past the DMA register.
        dev.read(10, &mut four);
        assert_eq!(four, [0xff; 4]);
        // Empty accesses.
        dev.read(REG_DATA, &mut []);
        dev.write(REG_SELECTOR, &[]);

        // DMA register: partial writes start nothing.
        write_descriptor(&mem, 0, DMA_CTL_READ, 4, BUFFER);
        mem.write_slice(&[0xaa; 4], GuestAddress(BUFFER)).unwrap();
        dev.write(REG_DMA_ADDRESS_LOW, &[0, 0]);
        dev.write(REG_DMA_ADDRESS_LOW + 1, &[0, 0, 0, 0]);
        dev.write(REG_DMA_ADDRESS_HIGH + 2, &[0, 0, 0, 0]);
        dev.write(REG_DMA_ADDRESS_LOW, &[0; 8]);
        dev.write(REG_DMA_ADDRESS_HIGH, &[0]);
        assert_eq!(control_at(&mem, 0), DMA_CTL_READ);
        assert_eq!(guest_bytes(&mem, BUFFER, 4), [0xaa; 4]);

        // Still on FW_CFG_ID, from the start.
        assert_eq!(read_data(&mut dev, 4), [3, 0, 0, 0]);
    }

    #[test]
    fn reset_selects_the_signature() {
        let (mut dev, _) = device();
        select(&mut dev, keys::ID);
        read_data(&mut dev, 1);
        dev.write(REG_DMA_ADDRESS_HIGH, &1u32.to_be_bytes());
        dev.reset();
        assert_eq!(read_data(&mut dev, 4), b"QEMU");
        assert_eq!(dev.dma_address, 0);
    }

    #[test]
    fn e820_file_encoding() {
        let file = e820_file(&[
            E820Entry {
                addr: 0,
                len: 0x9fc00,
                kind: E820Kind::Ram,
            },
            E820Entry {
                addr: 0x1_0000_0000,
                len: 0x4000_0000,
                kind: E820Kind::Reserved,
            },
            E820Entry {
                addr: 0x10,
                len: 0x20,
                kind: E820Kind::Acpi,
            },
            E820Entry {
                addr: 0x30,
                len: 0x40,
                kind: E820Kind::Nvs,
            },
        ]);
        #[rustfmt::skip]
        let expected: &[u8] = &[
            // entry 0
            0, 0, 0, 0, 0, 0, 0, 0,             // address 0
            0x00, 0xfc, 0x09, 0, 0, 0, 0, 0,    // length 0x9fc00
            1, 0, 0, 0,                         // RAM
            // entry 1
            0, 0, 0, 0, 1, 0, 0, 0,             // address 4 GiB
            0, 0, 0, 0x40, 0, 0, 0, 0,          // length 1 GiB
            2, 0, 0, 0,                         // reserved
            // entry 2
            0x10, 0, 0, 0, 0, 0, 0, 0,          // address
            0x20, 0, 0, 0, 0, 0, 0, 0,          // length
            3, 0, 0, 0,                         // ACPI
            // entry 3
            0x30, 0, 0, 0, 0, 0, 0, 0,          // address
            0x40, 0, 0, 0, 0, 0, 0, 0,          // length
            4, 0, 0, 0,                         // NVS
        ];
        assert_eq!(file, expected);
        assert!(e820_file(&[]).is_empty());
    }

    #[test]
    fn bootorder_file_encoding() {
        let paths = [
            "/pci@i0cf8/ide@1,1/drive@1/disk@0".to_owned(),
            "/pci@i0cf8/scsi@4/disk@0,0".to_owned(),
        ];
        assert_eq!(
            bootorder_file(&paths),
            b"/pci@i0cf8/ide@1,1/drive@1/disk@0\n/pci@i0cf8/scsi@4/disk@0,0\0"
        );
        assert_eq!(bootorder_file(&[]), b"\0");
        assert_eq!(bootorder_file(&["HALT".to_owned()]), b"HALT\0");
    }

    #[test]
    fn ide_boot_paths_match_seabios_ata_patterns() {
        assert_eq!(ide_boot_path(0, 0), "/pci@i0cf8/ide@1,1/drive@0/disk@0");
        assert_eq!(ide_boot_path(1, 0), "/pci@i0cf8/ide@1,1/drive@1/disk@0");
        assert_eq!(ide_boot_path(0, 1), "/pci@i0cf8/ide@1,1/drive@0/disk@1");
        // build_ata_path for the PIIX IDE function 00:01.1, chanid, slave.
        for channel in 0..2 {
            for unit in 0..2 {
                let path = ide_boot_path(channel, unit);
                for c in 0..2 {
                    for u in 0..2 {
                        let pattern = format!("/pci@i0cf8/*@1,1/drive@{c:x}/disk@{u:x}");
                        assert_eq!(
                            seabios_matches(&pattern, &path),
                            (c, u) == (channel, unit),
                            "{pattern} vs {path}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn pci_boot_paths_match_seabios_pci_patterns() {
        assert_eq!(pci_boot_path(4, 0), "/pci@i0cf8/scsi@4/disk@0,0");
        assert_eq!(pci_boot_path(0x1f, 2), "/pci@i0cf8/scsi@1f,2/disk@0,0");
        // build_pci_path(.., "*", pci) for slot 4 function 0 and 2.
        assert!(seabios_matches("/pci@i0cf8/*@4", &pci_boot_path(4, 0)));
        assert!(!seabios_matches("/pci@i0cf8/*@4", &pci_boot_path(4, 2)));
        assert!(seabios_matches("/pci@i0cf8/*@4,2", &pci_boot_path(4, 2)));
        assert!(!seabios_matches("/pci@i0cf8/*@4,2", &pci_boot_path(4, 0)));
        assert!(!seabios_matches("/pci@i0cf8/*@5", &pci_boot_path(4, 0)));
        assert!(!seabios_matches("/pci@i0cf8/*@4", &pci_boot_path(0x14, 0)));
        assert!(seabios_matches(
            "/pci@i0cf8/*@1f,2",
            &pci_boot_path(0x1f, 2)
        ));
        // A virtio disk's path never matches an IDE pattern, or back.
        assert!(!seabios_matches(
            "/pci@i0cf8/*@1,1/drive@0/disk@0",
            &pci_boot_path(1, 1)
        ));
        assert!(!seabios_matches("/pci@i0cf8/*@1", &ide_boot_path(0, 0)));
    }
}
