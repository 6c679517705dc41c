//! QEMU's BIOS linker/loader script (`etc/table-loader`): how firmware is
//! told to place fw_cfg blobs in guest memory and patch the pointers and
//! checksums between them, so the VMM can build ACPI tables without
//! knowing where they will live.
//!
//! Format: QEMU `hw/acpi/bios-linker-loader.c` and SeaBIOS
//! `src/fw/romfile_loader.{c,h}`: a sequence of 128-byte entries, each a
//! little-endian u32 command followed by its arguments, file names as
//! NUL-padded 56-byte fields.
//!
//! Not produced: WRITE_POINTER (used by QEMU for vmgenid and the like).

/// File names are NUL-padded to this size (SeaBIOS `ROMFILE_LOADER_FILESZ`).
pub const FILE_NAME_SIZE: usize = 56;
/// Every entry is this long.
pub const ENTRY_SIZE: usize = 128;

const COMMAND_ALLOCATE: u32 = 1;
const COMMAND_ADD_POINTER: u32 = 2;
const COMMAND_ADD_CHECKSUM: u32 = 3;

/// Where firmware puts an allocated blob.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Zone {
    /// High memory (below 4 GiB), for the tables themselves.
    High = 1,
    /// The F segment (0xE0000..0x100000), where OSes search for the RSDP.
    FSeg = 2,
}

/// A loader script under construction.
#[derive(Default)]
pub struct TableLoader {
    script: Vec<u8>,
}

impl TableLoader {
    pub fn new() -> Self {
        Self::default()
    }

    fn entry(&mut self, command: u32) -> &mut [u8] {
        let start = self.script.len();
        self.script.resize(start + ENTRY_SIZE, 0);
        let entry = &mut self.script[start..];
        entry[..4].copy_from_slice(&command.to_le_bytes());
        entry
    }

    fn put_name(field: &mut [u8], name: &str) {
        // Names are ours and short; a longer one is a programming error.
        assert!(name.len() < FILE_NAME_SIZE, "fw_cfg file name too long");
        field[..name.len()].copy_from_slice(name.as_bytes());
    }

    /// Allocate fw_cfg file `file` at an `align`-byte boundary in `zone`
    /// and copy it there.
    pub fn allocate(&mut self, file: &str, align: u32, zone: Zone) {
        let entry = self.entry(COMMAND_ALLOCATE);
        Self::put_name(&mut entry[4..4 + FILE_NAME_SIZE], file);
        let at = 4 + FILE_NAME_SIZE;
        entry[at..at + 4].copy_from_slice(&align.to_le_bytes());
        entry[at + 4] = zone as u8;
    }

    /// Add the address of `source` to the `size`-byte little-endian value
    /// at `offset` in `dest` (which holds an offset into `source`).
    pub fn add_pointer(&mut self, dest: &str, source: &str, offset: u32, size: u8) {
        let entry = self.entry(COMMAND_ADD_POINTER);
        Self::put_name(&mut entry[4..4 + FILE_NAME_SIZE], dest);
        let at = 4 + FILE_NAME_SIZE;
        Self::put_name(&mut entry[at..at + FILE_NAME_SIZE], source);
        let at = at + FILE_NAME_SIZE;
        entry[at..at + 4].copy_from_slice(&offset.to_le_bytes());
        entry[at + 4] = size;
    }

    /// Make the bytes `start..start + length` of `file` sum to zero by
    /// adjusting the byte at `offset`.
    pub fn add_checksum(&mut self, file: &str, offset: u32, start: u32, length: u32) {
        let entry = self.entry(COMMAND_ADD_CHECKSUM);
        Self::put_name(&mut entry[4..4 + FILE_NAME_SIZE], file);
        let at = 4 + FILE_NAME_SIZE;
        entry[at..at + 4].copy_from_slice(&offset.to_le_bytes());
        entry[at + 4..at + 8].copy_from_slice(&start.to_le_bytes());
        entry[at + 8..at + 12].copy_from_slice(&length.to_le_bytes());
    }

    pub fn into_bytes(self) -> Vec<u8> {
        self.script
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u32_at(bytes: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap())
    }

    #[test]
    fn entries_have_seabios_layout() {
        let mut loader = TableLoader::new();
        loader.allocate("etc/acpi/rsdp", 16, Zone::FSeg);
        loader.add_pointer("etc/acpi/rsdp", "etc/acpi/tables", 16, 4);
        loader.add_checksum("etc/acpi/rsdp", 8, 0, 20);
        let script = loader.into_bytes();
        assert_eq!(script.len(), 3 * ENTRY_SIZE);

        let alloc = &script[..ENTRY_SIZE];
        assert_eq!(u32_at(alloc, 0), 1);
        assert_eq!(&alloc[4..17], b"etc/acpi/rsdp");
        assert_eq!(alloc[17], 0);
        assert_eq!(u32_at(alloc, 60), 16, "align after the 56-byte name");
        assert_eq!(alloc[64], 2, "FSEG zone");

        let pointer = &script[ENTRY_SIZE..2 * ENTRY_SIZE];
        assert_eq!(u32_at(pointer, 0), 2);
        assert_eq!(&pointer[60..75], b"etc/acpi/tables");
        assert_eq!(u32_at(pointer, 116), 16);
        assert_eq!(pointer[120], 4);

        let checksum = &script[2 * ENTRY_SIZE..];
        assert_eq!(u32_at(checksum, 0), 3);
        assert_eq!(
            [
                u32_at(checksum, 60),
                u32_at(checksum, 64),
                u32_at(checksum, 68)
            ],
            [8, 0, 20]
        );
    }
}
