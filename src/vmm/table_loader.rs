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
//!
//! [`link`] runs a script the way SeaBIOS's `romfile_loader` does, for the
//! boot path where no firmware runs (direct kernel boot): the VMM places
//! the blobs itself and gets the very bytes the firmware would have made.

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

/// Why a loader script could not be run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LinkError {
    #[error("loader script entry {0} is not a known command")]
    UnknownCommand(usize),
    #[error("loader script names file {0:?}, which it did not allocate")]
    UnknownFile(String),
    #[error("loader script entry {0} reaches outside its file")]
    OutOfBounds(usize),
    #[error("no room for {file:?} ({len} bytes, {align}-byte aligned) in zone {zone:?}")]
    NoRoom {
        file: String,
        len: usize,
        align: u32,
        zone: Zone,
    },
}

/// A blob placed by [`link`]: its guest address and its final bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    pub file: String,
    pub addr: u64,
    pub bytes: Vec<u8>,
}

fn u32_at(entry: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([entry[at], entry[at + 1], entry[at + 2], entry[at + 3]])
}

fn name_at(field: &[u8]) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// Runs loader `script` over `files` (name and contents): each ALLOCATE
/// asks `place(file, len, align, zone)` for the blob's guest address,
/// ADD_POINTER adds a blob's address to a field of another, ADD_CHECKSUM
/// fixes a checksum byte. Returns the blobs in allocation order.
pub fn link(
    script: &[u8],
    files: &[(&str, &[u8])],
    mut place: impl FnMut(&str, usize, u32, Zone) -> Option<u64>,
) -> Result<Vec<Placed>, LinkError> {
    let mut placed: Vec<Placed> = Vec::new();
    let find = |placed: &[Placed], name: &str| {
        placed
            .iter()
            .position(|p| p.file == name)
            .ok_or_else(|| LinkError::UnknownFile(name.to_string()))
    };
    for (index, entry) in script.chunks_exact(ENTRY_SIZE).enumerate() {
        let args = &entry[4..];
        match u32_at(entry, 0) {
            COMMAND_ALLOCATE => {
                let file = name_at(&args[..FILE_NAME_SIZE]);
                let align = u32_at(args, FILE_NAME_SIZE).max(1);
                let zone = match args[FILE_NAME_SIZE + 4] {
                    1 => Zone::High,
                    2 => Zone::FSeg,
                    _ => return Err(LinkError::UnknownCommand(index)),
                };
                let bytes = files
                    .iter()
                    .find(|(name, _)| *name == file)
                    .map(|(_, bytes)| bytes.to_vec())
                    .ok_or_else(|| LinkError::UnknownFile(file.clone()))?;
                let addr = place(&file, bytes.len(), align, zone)
                    .filter(|addr| addr % align as u64 == 0)
                    .ok_or_else(|| LinkError::NoRoom {
                        file: file.clone(),
                        len: bytes.len(),
                        align,
                        zone,
                    })?;
                placed.push(Placed { file, addr, bytes });
            }
            COMMAND_ADD_POINTER => {
                let dest = find(&placed, &name_at(&args[..FILE_NAME_SIZE]))?;
                let source = find(&placed, &name_at(&args[FILE_NAME_SIZE..2 * FILE_NAME_SIZE]))?;
                let offset = u32_at(args, 2 * FILE_NAME_SIZE) as usize;
                let size = args[2 * FILE_NAME_SIZE + 4] as usize;
                let base = placed[source].addr;
                let field = offset
                    .checked_add(size)
                    .filter(|&end| matches!(size, 1 | 2 | 4 | 8) && end <= placed[dest].bytes.len())
                    .map(|end| &mut placed[dest].bytes[offset..end])
                    .ok_or(LinkError::OutOfBounds(index))?;
                let mut value = [0u8; 8];
                value[..size].copy_from_slice(field);
                let sum = u64::from_le_bytes(value).wrapping_add(base);
                field.copy_from_slice(&sum.to_le_bytes()[..size]);
            }
            COMMAND_ADD_CHECKSUM => {
                let file = find(&placed, &name_at(&args[..FILE_NAME_SIZE]))?;
                let bytes = &mut placed[file].bytes;
                let offset = u32_at(args, FILE_NAME_SIZE) as usize;
                let start = u32_at(args, FILE_NAME_SIZE + 4) as usize;
                let len = u32_at(args, FILE_NAME_SIZE + 8) as usize;
                let end = start
                    .checked_add(len)
                    .ok_or(LinkError::OutOfBounds(index))?;
                if offset >= bytes.len() || end > bytes.len() {
                    return Err(LinkError::OutOfBounds(index));
                }
                // The checksum byte counts as zero, as in SeaBIOS.
                bytes[offset] = 0;
                let sum = bytes[start..end]
                    .iter()
                    .fold(0u8, |sum, &b| sum.wrapping_add(b));
                bytes[offset] = sum.wrapping_neg();
            }
            _ => return Err(LinkError::UnknownCommand(index)),
        }
    }
    Ok(placed)
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

    #[test]
    fn link_places_blobs_patches_pointers_and_fixes_checksums() {
        let mut loader = TableLoader::new();
        loader.allocate("tables", 64, Zone::High);
        loader.allocate("rsdp", 16, Zone::FSeg);
        // rsdp[4..8] holds an offset into "tables"; its byte 1 makes
        // bytes 0..8 sum to zero.
        loader.add_pointer("rsdp", "tables", 4, 4);
        loader.add_checksum("rsdp", 1, 0, 8);
        let tables = vec![0xaa; 100];
        let rsdp = [7u8, 0, 0, 0, 0x10, 0, 0, 0];
        let placed = link(
            &loader.into_bytes(),
            &[("rsdp", &rsdp), ("tables", &tables)],
            |_, _, _, zone| Some(if zone == Zone::FSeg { 0xe0000 } else { 0xe1000 }),
        )
        .unwrap();
        assert_eq!(placed[0].file, "tables");
        assert_eq!((placed[0].addr, &placed[0].bytes), (0xe1000, &tables));
        let rsdp = &placed[1];
        assert_eq!(rsdp.addr, 0xe0000);
        assert_eq!(u32_at(&rsdp.bytes, 4), 0xe1010, "offset plus address");
        assert_eq!(rsdp.bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b)), 0);
    }

    #[test]
    fn link_refuses_scripts_that_reach_outside_their_files() {
        let files: [(&str, &[u8]); 1] = [("a", &[0u8; 4])];
        let mut loader = TableLoader::new();
        loader.allocate("a", 4, Zone::High);
        loader.add_pointer("a", "a", 2, 4);
        let err = link(&loader.into_bytes(), &files, |_, _, _, _| Some(0x1000));
        assert_eq!(err, Err(LinkError::OutOfBounds(1)));
        let mut loader = TableLoader::new();
        loader.add_checksum("b", 0, 0, 1);
        let err = link(&loader.into_bytes(), &files, |_, _, _, _| Some(0x1000));
        assert_eq!(err, Err(LinkError::UnknownFile("b".into())));
        let mut loader = TableLoader::new();
        loader.allocate("a", 8, Zone::High);
        let err = link(&loader.into_bytes(), &files, |_, _, _, _| Some(0x1004));
        assert!(matches!(err, Err(LinkError::NoRoom { .. })), "misaligned");
    }
}
