//! Video memory: the VRAM itself, the four planes as the legacy window
//! 0xA0000–0xBFFFF sees them (chain 4, odd/even, planar with latches and
//! the graphics controller's read and write modes), and which pages changed.
//!
//! Reference: IBM VGA Technical Reference, "Graphics Controller Registers"
//! (read modes 0–1, write modes 0–3, data rotate, set/reset, bit mask) and
//! "Sequencer Registers" (map mask, memory mode); FreeVGA "VGA Memory
//! Organization".
//!
//! Layout: plane *p* of address *a* is VRAM byte `4 * a + p` (the layout
//! QEMU uses). With it, chain-4 and unchained 256-colour modes and the
//! Bochs VBE framebuffer are all plain linear bytes, and one 32-bit word
//! holds the four bytes a latched access moves. Odd/even addressing puts
//! CPU address *A* at plane address *A* / 2, so the text cell *k* of the
//! CRTC (which counts cells, not bytes) is at plane address *k*.
//!
//! Not emulated: the odd/even page bit (misc output bit 5) and the
//! difference between the sequencer's and the graphics controller's odd/even
//! controls (both follow graphics mode bit 4, as on QEMU's card).

use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::registers::*;
use crate::devices::GuestRam;

/// The dirty-tracking granularity: a host page, as KVM's dirty log reports.
pub const PAGE_SIZE: usize = 4096;

/// The legacy VGA's 256 KiB: four planes of 64 KiB.
pub const LEGACY_VRAM: usize = 0x4_0000;

#[derive(Debug, thiserror::Error)]
pub enum VramError {
    #[error("video memory must be a power of two from 1 MiB to 256 MiB, not {0} bytes")]
    BadSize(u64),
    #[error("cannot allocate {size} bytes of video memory: {reason}")]
    Allocation { size: u64, reason: String },
}

/// The card's memory: anonymous memory the VMM may also map into the guest
/// (the linear framebuffer), so every access is bounds-checked and volatile
/// through `vm-memory`.
#[derive(Clone)]
pub struct Vram {
    mem: GuestRam,
    size: usize,
}

impl Vram {
    pub const MIN_SIZE: u64 = 1 << 20;
    pub const MAX_SIZE: u64 = 256 << 20;

    pub fn new(size: u64) -> Result<Self, VramError> {
        if !size.is_power_of_two() || !(Self::MIN_SIZE..=Self::MAX_SIZE).contains(&size) {
            return Err(VramError::BadSize(size));
        }
        let mem = GuestRam::from_ranges(&[(GuestAddress(0), size as usize)]).map_err(|e| {
            VramError::Allocation {
                size,
                reason: e.to_string(),
            }
        })?;
        Ok(Self {
            mem,
            size: size as usize,
        })
    }

    pub fn len(&self) -> usize {
        self.size
    }

    pub fn is_empty(&self) -> bool {
        self.size == 0
    }

    /// Where the VRAM lives in this process, for mapping it into the guest.
    pub fn host_address(&self) -> *mut u8 {
        self.mem
            .get_host_address(GuestAddress(0))
            .expect("VRAM region starts at 0")
    }

    pub fn read_u8(&self, offset: usize) -> u8 {
        self.mem
            .read_obj(GuestAddress(offset as u64))
            .unwrap_or(0xff)
    }

    pub fn write_u8(&self, offset: usize, value: u8) {
        let _ = self.mem.write_obj(value, GuestAddress(offset as u64));
    }

    /// The four planes' bytes at plane address `address`, plane 0 lowest.
    pub fn read_planes(&self, address: usize) -> u32 {
        self.mem
            .read_obj::<u32>(GuestAddress(address as u64 * 4))
            .map(u32::from_le)
            .unwrap_or(u32::MAX)
    }

    pub fn write_planes(&self, address: usize, value: u32) {
        let _ = self
            .mem
            .write_obj(value.to_le(), GuestAddress(address as u64 * 4));
    }

    /// Copies bytes from `offset` into `buf`; what lies beyond the end reads as zero.
    pub fn read(&self, offset: usize, buf: &mut [u8]) {
        let available = self.size.saturating_sub(offset).min(buf.len());
        if available > 0
            && self
                .mem
                .read_slice(&mut buf[..available], GuestAddress(offset as u64))
                .is_ok()
        {
            buf[available..].fill(0);
        } else {
            buf.fill(0);
        }
    }

    /// Writes bytes at `offset`; what would land beyond the end is dropped.
    pub fn write(&self, offset: usize, data: &[u8]) {
        let available = self.size.saturating_sub(offset).min(data.len());
        if available > 0 {
            let _ = self
                .mem
                .write_slice(&data[..available], GuestAddress(offset as u64));
        }
    }

    /// Zeroes `len` bytes from `offset` (clipped to the VRAM).
    pub fn clear(&self, offset: usize, len: usize) {
        const CHUNK: [u8; PAGE_SIZE] = [0; PAGE_SIZE];
        let end = offset.saturating_add(len).min(self.size);
        let mut at = offset;
        while at < end {
            let n = (end - at).min(PAGE_SIZE);
            self.write(at, &CHUNK[..n]);
            at += n;
        }
    }
}

/// One bit per VRAM page: written since the renderer last looked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DirtyPages {
    bits: Vec<u64>,
}

impl DirtyPages {
    pub fn new(vram_size: usize) -> Self {
        Self {
            bits: vec![0; vram_size.div_ceil(PAGE_SIZE).div_ceil(64)],
        }
    }

    /// Every page dirty.
    pub fn all(vram_size: usize) -> Self {
        let mut pages = Self::new(vram_size);
        pages.bits.fill(u64::MAX);
        pages
    }

    pub fn mark(&mut self, offset: usize, len: usize) {
        if len == 0 {
            return;
        }
        let first = offset / PAGE_SIZE;
        let last = (offset + len - 1) / PAGE_SIZE;
        for page in first..=last {
            if let Some(word) = self.bits.get_mut(page / 64) {
                *word |= 1 << (page % 64);
            }
        }
    }

    /// Adds pages from a bitmap in KVM's dirty-log format (bit *n* = page *n*).
    pub fn merge(&mut self, bitmap: &[u64]) {
        for (word, more) in self.bits.iter_mut().zip(bitmap) {
            *word |= more;
        }
    }

    /// Whether any byte of `offset..offset + len` lies in a dirty page.
    pub fn touches(&self, offset: usize, len: usize) -> bool {
        if len == 0 {
            return false;
        }
        let first = offset / PAGE_SIZE;
        let last = (offset + len - 1) / PAGE_SIZE;
        (first..=last).any(|page| {
            self.bits
                .get(page / 64)
                .is_some_and(|word| word & (1 << (page % 64)) != 0)
        })
    }

    pub fn any(&self) -> bool {
        self.bits.iter().any(|&w| w != 0)
    }

    /// The dirty set, leaving this one clean.
    pub fn take(&mut self) -> Self {
        let clean = vec![0; self.bits.len()];
        Self {
            bits: std::mem::replace(&mut self.bits, clean),
        }
    }
}

/// Replicates each bit of a 4-bit plane mask into a byte lane.
fn expand_planes(mask: u8) -> u32 {
    (0..4)
        .filter(|p| mask & (1 << p) != 0)
        .fold(0, |acc, p| acc | 0xff << (8 * p))
}

/// The legacy window's view of VRAM.
pub struct VgaMemory {
    pub vram: Vram,
    /// The four bytes the last planar read loaded.
    latch: u32,
    pub dirty: DirtyPages,
    /// Plane 2 (the font) was written: text must be redrawn.
    pub font_written: bool,
}

impl VgaMemory {
    pub fn new(vram: Vram) -> Self {
        let dirty = DirtyPages::new(vram.len());
        Self {
            vram,
            latch: 0,
            dirty,
            font_written: false,
        }
    }

    /// Turns an offset in 0xA0000..0xC0000 into an offset in the memory the
    /// graphics controller maps there (memory map select), or `None` where
    /// nothing is mapped. `bank` is the VBE bank offset for the 64 KiB map.
    fn map(regs: &Registers, window: usize, bank: usize) -> Option<usize> {
        match (regs.gc[GR_MISC] >> 2) & 3 {
            0 => Some(window),
            1 => (window < 0x1_0000).then_some(window + bank),
            2 => window.checked_sub(0x1_0000).filter(|&a| a < 0x8000),
            _ => window.checked_sub(0x1_8000).filter(|&a| a < 0x8000),
        }
    }

    /// A CPU read of the window at `window` (0..0x20000).
    pub fn read(&mut self, regs: &Registers, bank: usize, window: usize) -> u8 {
        let Some(address) = Self::map(regs, window, bank) else {
            return 0xff;
        };
        if regs.seq[SR_MEMORY_MODE] & SR04_CHAIN4 != 0 {
            return self.vram.read_u8(address);
        }
        if regs.gc[GR_MODE] & GR05_ODD_EVEN != 0 {
            let plane = (regs.gc[GR_READ_MAP_SELECT] & 2) as usize | (address & 1);
            return self.vram.read_u8(((address & !1) << 1) | plane);
        }
        self.latch = self.vram.read_planes(address);
        if regs.gc[GR_MODE] & GR05_READ_MODE_1 == 0 {
            let plane = regs.gc[GR_READ_MAP_SELECT] & 3;
            (self.latch >> (8 * plane)) as u8
        } else {
            // Colour compare: a 1 for each pixel whose planes (those not
            // "don't care") match the compare colour.
            let compare = expand_planes(regs.gc[GR_COLOR_COMPARE]);
            let care = expand_planes(regs.gc[GR_COLOR_DONT_CARE]);
            let differ = (self.latch ^ compare) & care;
            let differ = differ | differ >> 16;
            !((differ | differ >> 8) as u8)
        }
    }

    /// A CPU write of `value` to the window at `window` (0..0x20000).
    pub fn write(&mut self, regs: &Registers, bank: usize, window: usize, value: u8) {
        let Some(address) = Self::map(regs, window, bank) else {
            return;
        };
        let map_mask = regs.seq[SR_MAP_MASK];
        if regs.seq[SR_MEMORY_MODE] & SR04_CHAIN4 != 0 {
            let plane = address & 3;
            if map_mask & (1 << plane) != 0 && address < self.vram.len() {
                self.vram.write_u8(address, value);
                self.dirty.mark(address, 1);
                self.font_written |= plane == 2;
            }
            return;
        }
        if regs.gc[GR_MODE] & GR05_ODD_EVEN != 0 {
            let plane = (regs.gc[GR_READ_MAP_SELECT] & 2) as usize | (address & 1);
            if map_mask & (1 << plane) != 0 {
                let offset = ((address & !1) << 1) | plane;
                self.vram.write_u8(offset, value);
                self.dirty.mark(offset, 1);
                self.font_written |= plane == 2;
            }
            return;
        }
        if address * 4 + 3 >= self.vram.len() {
            return;
        }
        let rotate = regs.gc[GR_DATA_ROTATE] & 7;
        let mut bit_mask = regs.gc[GR_BIT_MASK];
        let data: u32 = match regs.gc[GR_MODE] & 3 {
            0 => {
                let v = value.rotate_right(rotate as u32) as u32 * 0x0101_0101;
                let enable = expand_planes(regs.gc[GR_ENABLE_SET_RESET]);
                (v & !enable) | (expand_planes(regs.gc[GR_SET_RESET]) & enable)
            }
            1 => {
                // The latches go straight back, whatever the ALU and bit mask say.
                self.store(address, self.latch, map_mask);
                return;
            }
            2 => expand_planes(value & 0x0f),
            _ => {
                bit_mask &= value.rotate_right(rotate as u32);
                expand_planes(regs.gc[GR_SET_RESET])
            }
        };
        let data = match (regs.gc[GR_DATA_ROTATE] >> 3) & 3 {
            0 => data,
            1 => data & self.latch,
            2 => data | self.latch,
            _ => data ^ self.latch,
        };
        let bit_mask = bit_mask as u32 * 0x0101_0101;
        let data = (data & bit_mask) | (self.latch & !bit_mask);
        self.store(address, data, map_mask);
    }

    fn store(&mut self, address: usize, data: u32, map_mask: u8) {
        let keep = !expand_planes(map_mask);
        let old = self.vram.read_planes(address);
        self.vram
            .write_planes(address, (old & keep) | (data & !keep));
        self.dirty.mark(address * 4, 4);
        self.font_written |= map_mask & 4 != 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn memory() -> (VgaMemory, Registers) {
        let vram = Vram::new(1 << 20).unwrap();
        (VgaMemory::new(vram), Registers::default())
    }

    /// Mode 12h's memory setup: planar, A0000 64 KiB, all planes writable.
    fn planar(regs: &mut Registers) {
        regs.seq[SR_MAP_MASK] = 0x0f;
        regs.seq[SR_MEMORY_MODE] = 0x06;
        regs.gc[GR_MISC] = 0x05;
        regs.gc[GR_MODE] = 0x00;
        regs.gc[GR_BIT_MASK] = 0xff;
    }

    #[test]
    fn chain4_is_linear() {
        let (mut mem, mut regs) = memory();
        regs.seq[SR_MAP_MASK] = 0x0f;
        regs.seq[SR_MEMORY_MODE] = 0x0e;
        regs.gc[GR_MISC] = 0x05;
        mem.write(&regs, 0, 321, 0x42);
        assert_eq!(mem.vram.read_u8(321), 0x42);
        assert_eq!(mem.read(&regs, 0, 321), 0x42);
        // The VBE bank moves the 64 KiB window.
        mem.write(&regs, 0x2_0000, 5, 0x77);
        assert_eq!(mem.vram.read_u8(0x2_0005), 0x77);
        // Nothing is mapped above 64 KiB in that map.
        mem.write(&regs, 0, 0x1_0000, 0x11);
        assert_eq!(mem.read(&regs, 0, 0x1_0000), 0xff);
        assert!(mem.dirty.touches(0x2_0000, 1));
    }

    #[test]
    fn odd_even_splits_characters_and_attributes() {
        let (mut mem, mut regs) = memory();
        regs.seq[SR_MAP_MASK] = 0x03;
        regs.seq[SR_MEMORY_MODE] = 0x02;
        regs.gc[GR_MISC] = 0x0e; // B8000, 32 KiB
        regs.gc[GR_MODE] = GR05_ODD_EVEN;
        let cell = 0x1_8000 + 2 * 81; // row 1, column 1
        mem.write(&regs, 0, cell, b'A');
        mem.write(&regs, 0, cell + 1, 0x1e);
        assert_eq!(mem.vram.read_planes(81) & 0xffff, 0x1e41);
        assert_eq!(mem.read(&regs, 0, cell), b'A');
        assert_eq!(mem.read(&regs, 0, cell + 1), 0x1e);
        // B0000 is not mapped in this memory map.
        assert_eq!(mem.read(&regs, 0, 0x1_0000), 0xff);
        assert!(!mem.font_written);
    }

    #[test]
    fn write_mode_0_with_set_reset_and_bit_mask() {
        let (mut mem, mut regs) = memory();
        planar(&mut regs);
        // Set/reset colour 9 in all enabled planes, only the left pixel.
        regs.gc[GR_SET_RESET] = 0x09;
        regs.gc[GR_ENABLE_SET_RESET] = 0x0f;
        regs.gc[GR_BIT_MASK] = 0x80;
        mem.read(&regs, 0, 10); // load latches (all zero)
        mem.write(&regs, 0, 10, 0x00);
        assert_eq!(mem.vram.read_planes(10), 0x8000_0080);
        // Data rotate and XOR with the latches.
        regs.gc[GR_ENABLE_SET_RESET] = 0;
        regs.gc[GR_BIT_MASK] = 0xff;
        regs.gc[GR_DATA_ROTATE] = 0x18 | 1; // XOR, rotate right by 1
        mem.read(&regs, 0, 10);
        mem.write(&regs, 0, 10, 0x03); // rotates to 0x81
        assert_eq!(mem.vram.read_planes(10), 0x0181_8101);
    }

    #[test]
    fn write_modes_1_2_3() {
        let (mut mem, mut regs) = memory();
        planar(&mut regs);
        mem.vram.write_planes(0, 0x1234_5678);
        regs.gc[GR_MODE] = 1;
        mem.read(&regs, 0, 0);
        mem.write(&regs, 0, 7, 0xff);
        assert_eq!(
            mem.vram.read_planes(7),
            0x1234_5678,
            "mode 1 copies latches"
        );

        regs.gc[GR_MODE] = 2;
        regs.gc[GR_BIT_MASK] = 0x0f;
        mem.read(&regs, 0, 20); // zero latches
        mem.write(&regs, 0, 20, 0x05); // colour 5 in the right four pixels
        assert_eq!(mem.vram.read_planes(20), 0x000f_000f);

        regs.gc[GR_MODE] = 3;
        regs.gc[GR_BIT_MASK] = 0xff;
        regs.gc[GR_SET_RESET] = 0x02;
        mem.read(&regs, 0, 30);
        mem.write(&regs, 0, 30, 0xc0); // bit mask = 0xff & 0xc0
        assert_eq!(mem.vram.read_planes(30), 0x0000_c000);
    }

    #[test]
    fn map_mask_protects_planes_and_read_modes() {
        let (mut mem, mut regs) = memory();
        planar(&mut regs);
        regs.seq[SR_MAP_MASK] = 0x04;
        mem.write(&regs, 0, 3, 0xaa);
        assert_eq!(mem.vram.read_planes(3), 0x00aa_0000);
        assert!(mem.font_written, "plane 2 holds the font");
        regs.gc[GR_READ_MAP_SELECT] = 2;
        assert_eq!(mem.read(&regs, 0, 3), 0xaa);
        // Read mode 1: pixels equal to colour 4 (plane 2 only).
        regs.gc[GR_MODE] = GR05_READ_MODE_1;
        regs.gc[GR_COLOR_COMPARE] = 0x04;
        regs.gc[GR_COLOR_DONT_CARE] = 0x0f;
        assert_eq!(mem.read(&regs, 0, 3), 0xaa);
        regs.gc[GR_COLOR_DONT_CARE] = 0x00;
        assert_eq!(
            mem.read(&regs, 0, 3),
            0xff,
            "nothing cared about: all match"
        );
    }

    #[test]
    fn hostile_addresses_stay_inside_vram() {
        let (mut mem, mut regs) = memory();
        regs.seq[SR_MEMORY_MODE] = 0x0e;
        regs.seq[SR_MAP_MASK] = 0x0f;
        regs.gc[GR_MISC] = 0x05;
        // A bank beyond the VRAM: writes vanish, reads float.
        mem.write(&regs, 0x7fff_0000, 0xffff, 1);
        assert_eq!(mem.read(&regs, 0x7fff_0000, 0xffff), 0xff);
        planar(&mut regs);
        mem.write(&regs, 0xfff_0000, 0xffff, 1);
        let mut buf = [1u8; 8];
        mem.vram.read(mem.vram.len() - 4, &mut buf);
        assert_eq!(buf, [0; 8]);
        mem.vram.write(usize::MAX - 2, &[1, 2, 3]);
        mem.vram.clear(mem.vram.len() - 1, 100);
    }

    #[test]
    fn dirty_pages_track_and_merge() {
        let mut dirty = DirtyPages::new(1 << 20);
        dirty.mark(PAGE_SIZE - 1, 2);
        assert!(dirty.touches(0, 1) && dirty.touches(PAGE_SIZE, 1));
        assert!(!dirty.touches(2 * PAGE_SIZE, PAGE_SIZE));
        dirty.merge(&[1 << 5]);
        assert!(dirty.touches(5 * PAGE_SIZE + 7, 1));
        let taken = dirty.take();
        assert!(taken.any() && !dirty.any());
        assert!(Vram::new(3 << 20).is_err(), "not a power of two");
    }
}
