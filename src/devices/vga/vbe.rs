//! The Bochs VBE extension ("DISPI"): an index/data register pair at ports
//! 0x1CE/0x1CF that sets any resolution and depth with a linear
//! framebuffer, the interface SeaVGABIOS's `bochsvga.c` and Linux's
//! `bochs-drm` program.
//!
//! Reference: Bochs `iodev/display/vga.h` DISPI definitions (register
//! indices, ENABLE bits, IDs 0xB0C0–0xB0C5) and QEMU's `hw/display/vga.c`
//! for the behaviour guests rely on: register sanitising (as the interface
//! has no way to report an error), clearing on enable, and the legacy VGA
//! registers an enable sets so that VGA-aware code keeps working.
//!
//! Not emulated: big-endian framebuffers; depth 4 is accepted and shown as
//! 16-colour planar memory.

use super::memory::VgaMemory;
use super::registers::*;

pub const INDEX_ID: u16 = 0x0;
pub const INDEX_XRES: u16 = 0x1;
pub const INDEX_YRES: u16 = 0x2;
pub const INDEX_BPP: u16 = 0x3;
pub const INDEX_ENABLE: u16 = 0x4;
pub const INDEX_BANK: u16 = 0x5;
pub const INDEX_VIRT_WIDTH: u16 = 0x6;
pub const INDEX_VIRT_HEIGHT: u16 = 0x7;
pub const INDEX_X_OFFSET: u16 = 0x8;
pub const INDEX_Y_OFFSET: u16 = 0x9;
pub const INDEX_VIDEO_MEMORY_64K: u16 = 0xa;
const REGISTERS: usize = 10;

pub const ID0: u16 = 0xb0c0;
pub const ID5: u16 = 0xb0c5;

pub const ENABLED: u16 = 0x01;
/// While set, XRES/YRES/BPP read as the maxima.
pub const GETCAPS: u16 = 0x02;
pub const DAC_8BIT: u16 = 0x20;
pub const LFB_ENABLED: u16 = 0x40;
pub const NOCLEARMEM: u16 = 0x80;

pub const MAX_XRES: u16 = 2560;
pub const MAX_YRES: u16 = 1600;
pub const MAX_BPP: u16 = 32;

/// The DISPI registers and what they imply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Vbe {
    pub index: u16,
    regs: [u16; REGISTERS],
    /// Bytes per framebuffer line (VIRT_WIDTH × bytes per pixel).
    pub line_bytes: usize,
    /// Byte offset of the displayed top-left pixel (X/Y_OFFSET).
    pub start_byte: usize,
    /// The 64 KiB window's offset into VRAM (BANK × 64 KiB).
    pub bank_offset: usize,
    vram_size: usize,
}

impl Vbe {
    pub fn new(vram_size: usize) -> Self {
        let mut regs = [0; REGISTERS];
        regs[INDEX_ID as usize] = ID5;
        Self {
            index: 0,
            regs,
            line_bytes: 0,
            start_byte: 0,
            bank_offset: 0,
            vram_size,
        }
    }

    pub fn enabled(&self) -> bool {
        self.regs[INDEX_ENABLE as usize] & ENABLED != 0
    }

    pub fn xres(&self) -> u32 {
        self.regs[INDEX_XRES as usize] as u32
    }

    pub fn yres(&self) -> u32 {
        self.regs[INDEX_YRES as usize] as u32
    }

    pub fn bpp(&self) -> u32 {
        self.regs[INDEX_BPP as usize] as u32
    }

    /// Reads register `index`, as the data port does.
    pub fn read(&self, index: u16) -> u16 {
        let caps = self.regs[INDEX_ENABLE as usize] & GETCAPS != 0;
        match index {
            INDEX_XRES if caps => MAX_XRES,
            INDEX_YRES if caps => MAX_YRES,
            INDEX_BPP if caps => MAX_BPP,
            INDEX_VIDEO_MEMORY_64K => (self.vram_size >> 16).min(u16::MAX as usize) as u16,
            i if (i as usize) < REGISTERS => self.regs[i as usize],
            _ => 0,
        }
    }

    /// Writes `value` to register `index`, updating the VGA registers and
    /// memory an enable affects.
    pub fn write(&mut self, index: u16, value: u16, regs: &mut Registers, mem: &mut VgaMemory) {
        match index {
            INDEX_ID => {
                if (ID0..=ID5).contains(&value) {
                    self.regs[0] = value;
                }
            }
            INDEX_XRES | INDEX_YRES | INDEX_BPP | INDEX_VIRT_WIDTH | INDEX_X_OFFSET
            | INDEX_Y_OFFSET => {
                self.regs[index as usize] = value;
                self.sanitize();
            }
            INDEX_BANK => {
                let banks = (self.vram_size >> 16).max(1);
                let value = value as usize & (banks - 1);
                self.regs[index as usize] = value as u16;
                self.bank_offset = value << 16;
            }
            INDEX_ENABLE => self.write_enable(value, regs, mem),
            // The card derives the virtual height from the VRAM and the
            // line length (`sanitize`); Linux's bochs-drm writes it on every
            // mode set all the same, and QEMU ignores the write too.
            INDEX_VIRT_HEIGHT => {}
            _ => crate::guest_warn!(
                index,
                value,
                "write to a VBE DISPI register that does not exist"
            ),
        }
    }

    fn write_enable(&mut self, value: u16, regs: &mut Registers, mem: &mut VgaMemory) {
        let was_enabled = self.enabled();
        self.regs[INDEX_ENABLE as usize] = value;
        regs.dac.eight_bit = value & DAC_8BIT != 0;
        if value & ENABLED == 0 {
            self.bank_offset = 0;
            return;
        }
        if was_enabled {
            self.sanitize();
            return;
        }
        // A fresh enable starts from an unpanned, tightly packed framebuffer.
        self.regs[INDEX_VIRT_WIDTH as usize] = 0;
        self.regs[INDEX_X_OFFSET as usize] = 0;
        self.regs[INDEX_Y_OFFSET as usize] = 0;
        self.sanitize();
        if value & NOCLEARMEM == 0 {
            mem.vram.clear(0, self.yres() as usize * self.line_bytes);
            mem.dirty.mark(0, self.yres() as usize * self.line_bytes);
        }
        // Put the VGA into a matching graphics mode, so VGA-aware code
        // (and the legacy window as a banked framebuffer) works on.
        regs.gc[GR_MISC] = (regs.gc[GR_MISC] & !0x0c) | 0x04 | GR06_GRAPHICS;
        regs.crtc[CR_MODE_CONTROL] |= 0x03;
        regs.crtc[CR_OFFSET] = (self.line_bytes >> 3) as u8;
        regs.crtc[CR_HORIZONTAL_DISPLAY_END] = ((self.xres() >> 3) as u8).wrapping_sub(1);
        let last_line = self.yres() - 1;
        regs.crtc[CR_VERTICAL_DISPLAY_END] = last_line as u8;
        regs.crtc[CR_OVERFLOW] = (regs.crtc[CR_OVERFLOW] & !0x42)
            | ((last_line >> 7) & 0x02) as u8
            | ((last_line >> 3) & 0x40) as u8;
        regs.crtc[CR_LINE_COMPARE] = 0xff;
        regs.crtc[CR_OVERFLOW] |= 0x10;
        regs.crtc[CR_MAXIMUM_SCAN_LINE] |= 0x40;
        let shift = if self.bpp() == 4 {
            regs.seq[SR_CLOCKING_MODE] &= !SR01_DOT_CLOCK_HALF;
            0
        } else {
            regs.seq[SR_MEMORY_MODE] |= SR04_CHAIN4;
            regs.seq[SR_MAP_MASK] |= 0x0f;
            2
        };
        regs.gc[GR_MODE] = (regs.gc[GR_MODE] & !0x60) | shift << 5;
        regs.crtc[CR_MAXIMUM_SCAN_LINE] &= !0x9f;
    }

    /// Bits per pixel as stored (15 takes 16).
    fn storage_bits(&self) -> usize {
        match self.bpp() {
            15 => 16,
            bpp => bpp as usize,
        }
    }

    /// Brings the registers to the nearest valid values, since the
    /// interface cannot report an error, and recomputes the geometry.
    fn sanitize(&mut self) {
        if !self.enabled() {
            return;
        }
        let r = &mut self.regs;
        if !matches!(r[INDEX_BPP as usize], 4 | 8 | 15 | 16 | 24 | 32) {
            r[INDEX_BPP as usize] = 8;
        }
        let xres = &mut r[INDEX_XRES as usize];
        *xres = (*xres & !7).clamp(8, MAX_XRES);
        let xres = *xres;
        let virt = &mut r[INDEX_VIRT_WIDTH as usize];
        *virt = (*virt & !7).clamp(xres, MAX_XRES);
        let virt = *virt as usize;
        let bits = self.storage_bits();
        let r = &mut self.regs;
        let line = virt * bits / 8;
        let max_lines = (self.vram_size / line).min(u16::MAX as usize) as u16;
        let yres = &mut r[INDEX_YRES as usize];
        *yres = (*yres).clamp(1, MAX_YRES.min(max_lines).max(1));
        let yres = *yres as usize;
        r[INDEX_X_OFFSET as usize] = r[INDEX_X_OFFSET as usize].min(MAX_XRES);
        r[INDEX_Y_OFFSET as usize] = r[INDEX_Y_OFFSET as usize].min(MAX_YRES);
        let mut start = r[INDEX_X_OFFSET as usize] as usize * bits / 8
            + r[INDEX_Y_OFFSET as usize] as usize * line;
        if start + yres * line > self.vram_size {
            r[INDEX_Y_OFFSET as usize] = 0;
            start = r[INDEX_X_OFFSET as usize] as usize * bits / 8;
            if start + yres * line > self.vram_size {
                r[INDEX_X_OFFSET as usize] = 0;
                start = 0;
            }
        }
        r[INDEX_VIRT_HEIGHT as usize] = max_lines;
        self.line_bytes = line;
        self.start_byte = start;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::vga::memory::Vram;

    fn setup() -> (Vbe, Registers, VgaMemory) {
        let vram = Vram::new(16 << 20).unwrap();
        (
            Vbe::new(16 << 20),
            Registers::default(),
            VgaMemory::new(vram),
        )
    }

    #[test]
    fn seavgabios_probe_and_mode_set() {
        let (mut vbe, mut regs, mut mem) = setup();
        vbe.write(INDEX_ID, ID0, &mut regs, &mut mem);
        assert_eq!(vbe.read(INDEX_ID), ID0);
        vbe.write(INDEX_ID, 0x1234, &mut regs, &mut mem);
        assert_eq!(vbe.read(INDEX_ID), ID0, "unknown IDs are refused");
        assert_eq!(vbe.read(INDEX_VIDEO_MEMORY_64K), 256);
        vbe.write(INDEX_ENABLE, GETCAPS, &mut regs, &mut mem);
        assert_eq!(vbe.read(INDEX_XRES), MAX_XRES);
        assert_eq!(vbe.read(INDEX_BPP), 32);
        vbe.write(INDEX_ENABLE, 0, &mut regs, &mut mem);

        mem.vram.write_u8(5, 0xaa);
        vbe.write(INDEX_BPP, 32, &mut regs, &mut mem);
        vbe.write(INDEX_XRES, 1024, &mut regs, &mut mem);
        vbe.write(INDEX_YRES, 768, &mut regs, &mut mem);
        vbe.write(INDEX_ENABLE, ENABLED | LFB_ENABLED, &mut regs, &mut mem);
        assert!(vbe.enabled());
        assert_eq!(vbe.line_bytes, 4096);
        assert_eq!(vbe.read(INDEX_VIRT_WIDTH), 1024);
        assert_eq!(vbe.read(INDEX_VIRT_HEIGHT), 4096);
        // bochs-drm writes it (VRAM / line length, as it computes it): the
        // card's own value stands.
        vbe.write(INDEX_VIRT_HEIGHT, 5242, &mut regs, &mut mem);
        assert_eq!(vbe.read(INDEX_VIRT_HEIGHT), 4096);
        assert_eq!(mem.vram.read_u8(5), 0, "enable clears the framebuffer");
        assert!(regs.graphics_mode());
        assert_ne!(regs.seq[SR_MEMORY_MODE] & SR04_CHAIN4, 0);

        vbe.write(INDEX_Y_OFFSET, 10, &mut regs, &mut mem);
        assert_eq!(vbe.start_byte, 10 * 4096);
    }

    #[test]
    fn nonsense_is_sanitized() {
        let (mut vbe, mut regs, mut mem) = setup();
        vbe.write(INDEX_ENABLE, ENABLED | NOCLEARMEM, &mut regs, &mut mem);
        vbe.write(INDEX_BPP, 13, &mut regs, &mut mem);
        assert_eq!(vbe.bpp(), 8);
        vbe.write(INDEX_XRES, 0xffff, &mut regs, &mut mem);
        assert_eq!(vbe.xres(), MAX_XRES as u32);
        vbe.write(INDEX_XRES, 3, &mut regs, &mut mem);
        assert_eq!(vbe.xres(), 8);
        vbe.write(INDEX_YRES, 0, &mut regs, &mut mem);
        assert_eq!(vbe.yres(), 1);
        vbe.write(INDEX_Y_OFFSET, 0xffff, &mut regs, &mut mem);
        assert!(vbe.start_byte + vbe.line_bytes <= 16 << 20);
        vbe.write(INDEX_BANK, 0xffff, &mut regs, &mut mem);
        assert_eq!(vbe.bank_offset, 255 << 16);
        vbe.write(0x77, 1, &mut regs, &mut mem);
        assert_eq!(vbe.read(0x77), 0);
        // A huge mode in little memory: YRES is cut to what fits.
        let vram = Vram::new(1 << 20).unwrap();
        let mut small = Vbe::new(1 << 20);
        let mut mem = VgaMemory::new(vram);
        small.write(INDEX_BPP, 32, &mut regs, &mut mem);
        small.write(INDEX_XRES, 2560, &mut regs, &mut mem);
        small.write(INDEX_YRES, 1600, &mut regs, &mut mem);
        small.write(INDEX_ENABLE, ENABLED, &mut regs, &mut mem);
        assert_eq!(small.yres(), (1 << 20) / (2560 * 4));
    }
}
