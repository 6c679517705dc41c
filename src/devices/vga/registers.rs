//! The VGA register file behind ports 0x3B0–0x3DF: miscellaneous output,
//! input status, sequencer, CRT controller, graphics controller, attribute
//! controller and DAC.
//!
//! Reference: IBM VGA XGA Technical Reference Manual, "Video Graphics Array"
//! chapter (register descriptions); FreeVGA's register pages for the same
//! registers. Register names below are IBM's.
//!
//! Not emulated: the CRT timing registers are stored but drive nothing
//! (the display refresh is the VMM's, not a raster); input status 1 toggles
//! its retrace bits on every read so polling code progresses; the feature
//! connector, light pen and switch sense read as zero; the odd/even page bit
//! of the miscellaneous output register is ignored.

use crate::guest_warn;

/// Port numbers as offsets from 0x3C0 (the colour/mono pairs are decoded in
/// [`Registers::read_port`]).
pub const PORT_ATTR_INDEX: u16 = 0x3c0;
pub const PORT_ATTR_DATA_READ: u16 = 0x3c1;
pub const PORT_MISC_WRITE: u16 = 0x3c2;
pub const PORT_SEQ_INDEX: u16 = 0x3c4;
pub const PORT_SEQ_DATA: u16 = 0x3c5;
pub const PORT_DAC_MASK: u16 = 0x3c6;
pub const PORT_DAC_READ_INDEX: u16 = 0x3c7;
pub const PORT_DAC_WRITE_INDEX: u16 = 0x3c8;
pub const PORT_DAC_DATA: u16 = 0x3c9;
pub const PORT_FEATURE_READ: u16 = 0x3ca;
pub const PORT_MISC_READ: u16 = 0x3cc;
pub const PORT_GC_INDEX: u16 = 0x3ce;
pub const PORT_GC_DATA: u16 = 0x3cf;
/// CRTC index/data and input status 1 at 0x3Dx (colour) or 0x3Bx (mono).
const CRTC_INDEX: u16 = 0x4;
const CRTC_DATA: u16 = 0x5;
const INPUT_STATUS_1: u16 = 0xa;

/// Miscellaneous output bit 0: CRTC and status at 0x3Dx (else 0x3Bx).
pub const MISC_COLOR_IO: u8 = 0x01;

/// Sequencer register indices.
pub const SR_RESET: usize = 0;
pub const SR_CLOCKING_MODE: usize = 1;
pub const SR_MAP_MASK: usize = 2;
pub const SR_CHARACTER_MAP: usize = 3;
pub const SR_MEMORY_MODE: usize = 4;
/// Clocking mode: 8-dot characters (else 9).
pub const SR01_DOTS_8: u8 = 0x01;
/// Clocking mode: dot clock divided by two (40-column text, 320-wide modes).
pub const SR01_DOT_CLOCK_HALF: u8 = 0x08;
/// Clocking mode: screen off.
pub const SR01_SCREEN_OFF: u8 = 0x20;
/// Memory mode: chain 4 (CPU address bits 1:0 select the plane).
pub const SR04_CHAIN4: u8 = 0x08;

/// CRT controller register indices.
pub const CR_HORIZONTAL_DISPLAY_END: usize = 0x01;
pub const CR_OVERFLOW: usize = 0x07;
pub const CR_MAXIMUM_SCAN_LINE: usize = 0x09;
pub const CR_CURSOR_START: usize = 0x0a;
pub const CR_CURSOR_END: usize = 0x0b;
pub const CR_START_ADDRESS_HIGH: usize = 0x0c;
pub const CR_START_ADDRESS_LOW: usize = 0x0d;
pub const CR_CURSOR_LOCATION_HIGH: usize = 0x0e;
pub const CR_CURSOR_LOCATION_LOW: usize = 0x0f;
pub const CR_VERTICAL_RETRACE_END: usize = 0x11;
pub const CR_VERTICAL_DISPLAY_END: usize = 0x12;
pub const CR_OFFSET: usize = 0x13;
pub const CR_UNDERLINE_LOCATION: usize = 0x14;
pub const CR_MODE_CONTROL: usize = 0x17;
pub const CR_LINE_COMPARE: usize = 0x18;
const CRTC_REGISTERS: usize = 0x19;
/// Vertical retrace end bit 7: CR00–CR07 are write-protected (but CR07 bit 4).
const CR11_PROTECT: u8 = 0x80;

/// Graphics controller register indices.
pub const GR_SET_RESET: usize = 0;
pub const GR_ENABLE_SET_RESET: usize = 1;
pub const GR_COLOR_COMPARE: usize = 2;
pub const GR_DATA_ROTATE: usize = 3;
pub const GR_READ_MAP_SELECT: usize = 4;
pub const GR_MODE: usize = 5;
pub const GR_MISC: usize = 6;
pub const GR_COLOR_DONT_CARE: usize = 7;
pub const GR_BIT_MASK: usize = 8;
const GC_REGISTERS: usize = 9;
/// Graphics mode: host odd/even addressing.
pub const GR05_ODD_EVEN: u8 = 0x10;
/// Graphics mode: read mode 1 (colour compare).
pub const GR05_READ_MODE_1: u8 = 0x08;
/// Graphics mode: 256-colour shift mode.
pub const GR05_SHIFT_256: u8 = 0x40;
/// Miscellaneous graphics: graphics (not alphanumeric) mode.
pub const GR06_GRAPHICS: u8 = 0x01;

/// Attribute controller register indices.
pub const AR_MODE_CONTROL: usize = 0x10;
pub const AR_COLOR_PLANE_ENABLE: usize = 0x12;
pub const AR_COLOR_SELECT: usize = 0x14;
const ATTR_REGISTERS: usize = 0x15;
/// Attribute index bit 5: palette address source — the display runs only
/// while it is set (the CPU owns the palette otherwise and the screen is blank).
pub const ATTR_PAS: u8 = 0x20;
/// Mode control: line graphics enable (9th column copies the 8th for 0xC0–0xDF).
pub const AR10_LINE_GRAPHICS: u8 = 0x04;
/// Mode control: blink enable (attribute bit 7 blinks instead of intensifying the background).
pub const AR10_BLINK: u8 = 0x08;
/// Mode control: palette bits 5–4 come from the colour select register.
pub const AR10_P54_SELECT: u8 = 0x80;

/// Bits of each register a guest may set, as on the IBM VGA (reserved bits read 0).
const SEQ_MASK: [u8; 8] = [0x03, 0x3d, 0x0f, 0x3f, 0x0e, 0x00, 0x00, 0x00];
const GC_MASK: [u8; GC_REGISTERS] = [0x0f, 0x0f, 0x0f, 0x1f, 0x03, 0x7b, 0x0f, 0x0f, 0xff];

/// Input status 1: display disabled (in blanking) and vertical retrace.
const ST01_DISPLAY_DISABLED: u8 = 0x01;
const ST01_VERTICAL_RETRACE: u8 = 0x08;

/// The colour lookup table: 256 entries of red, green, blue.
#[derive(Clone)]
pub struct Dac {
    pub pel_mask: u8,
    /// Raw entries; only the low 6 bits count unless the DAC is in 8-bit mode.
    pub palette: [u8; 768],
    read_index: u8,
    write_index: u8,
    read_component: usize,
    write_component: usize,
    pending: [u8; 3],
    /// DAC state register (0x3C7 read): 0 after a write index, 3 after a read index.
    state: u8,
    /// VBE's 8-bit DAC mode (DISPI ENABLE bit 5); 6-bit otherwise.
    pub eight_bit: bool,
}

impl Default for Dac {
    fn default() -> Self {
        Self {
            pel_mask: 0xff,
            palette: [0; 768],
            read_index: 0,
            write_index: 0,
            read_component: 0,
            write_component: 0,
            pending: [0; 3],
            state: 0,
            eight_bit: false,
        }
    }
}

impl Dac {
    /// Entry `index` as 0x00RRGGBB.
    pub fn color(&self, index: u8) -> u32 {
        let i = index as usize * 3;
        let expand = |v: u8| -> u32 {
            if self.eight_bit {
                v as u32
            } else {
                let v = (v & 0x3f) as u32;
                (v << 2) | (v >> 4)
            }
        };
        expand(self.palette[i]) << 16
            | expand(self.palette[i + 1]) << 8
            | expand(self.palette[i + 2])
    }

    fn write_data(&mut self, value: u8) {
        self.pending[self.write_component] = value;
        self.write_component += 1;
        if self.write_component == 3 {
            let i = self.write_index as usize * 3;
            self.palette[i..i + 3].copy_from_slice(&self.pending);
            self.write_component = 0;
            self.write_index = self.write_index.wrapping_add(1);
        }
    }

    fn read_data(&mut self) -> u8 {
        let value = self.palette[self.read_index as usize * 3 + self.read_component];
        self.read_component += 1;
        if self.read_component == 3 {
            self.read_component = 0;
            self.read_index = self.read_index.wrapping_add(1);
        }
        if self.eight_bit {
            value
        } else {
            value & 0x3f
        }
    }
}

/// Every VGA register, as the guest programmed it.
#[derive(Clone)]
pub struct Registers {
    pub misc_output: u8,
    pub feature_control: u8,
    pub seq_index: u8,
    pub seq: [u8; 8],
    pub crtc_index: u8,
    pub crtc: [u8; CRTC_REGISTERS],
    pub gc_index: u8,
    pub gc: [u8; GC_REGISTERS],
    /// Attribute address register, including the palette address source bit.
    pub attr_index: u8,
    /// false: the next 0x3C0 write is an index; true: data.
    attr_data_next: bool,
    pub attr: [u8; ATTR_REGISTERS],
    pub dac: Dac,
    input_status_1: u8,
}

impl Default for Registers {
    fn default() -> Self {
        Self {
            misc_output: 0,
            feature_control: 0,
            seq_index: 0,
            seq: [0; 8],
            crtc_index: 0,
            crtc: [0; CRTC_REGISTERS],
            gc_index: 0,
            gc: [0; GC_REGISTERS],
            attr_index: 0,
            attr_data_next: false,
            attr: [0; ATTR_REGISTERS],
            dac: Dac::default(),
            input_status_1: 0,
        }
    }
}

impl Registers {
    /// Whether `port` answers with the current colour/mono setting: the
    /// CRTC and input status 1 live at 0x3Dx in colour mode, 0x3Bx in mono,
    /// and the other pair floats.
    fn decodes(&self, port: u16) -> bool {
        let color = self.misc_output & MISC_COLOR_IO != 0;
        match port {
            0x3b0..=0x3bf => !color,
            0x3d0..=0x3df => color,
            _ => true,
        }
    }

    /// A byte read from `port` (0x3B0..0x3E0).
    pub fn read_port(&mut self, port: u16) -> u8 {
        if !self.decodes(port) {
            return 0xff;
        }
        match port {
            PORT_ATTR_INDEX => self.attr_index,
            PORT_ATTR_DATA_READ => self
                .attr
                .get((self.attr_index & 0x1f) as usize)
                .copied()
                .unwrap_or(0),
            // Input status 0: no switch sense, no CRT interrupt.
            PORT_MISC_WRITE => 0,
            PORT_SEQ_INDEX => self.seq_index,
            PORT_SEQ_DATA => self.seq[self.seq_index as usize],
            PORT_DAC_MASK => self.dac.pel_mask,
            PORT_DAC_READ_INDEX => self.dac.state,
            PORT_DAC_WRITE_INDEX => self.dac.write_index,
            PORT_DAC_DATA => self.dac.read_data(),
            PORT_FEATURE_READ => self.feature_control,
            PORT_MISC_READ => self.misc_output,
            PORT_GC_INDEX => self.gc_index,
            PORT_GC_DATA => self.gc.get(self.gc_index as usize).copied().unwrap_or(0),
            0x3b0..=0x3bf | 0x3d0..=0x3df => match port & 0xf {
                CRTC_INDEX => self.crtc_index,
                CRTC_DATA => self
                    .crtc
                    .get(self.crtc_index as usize)
                    .copied()
                    .unwrap_or(0),
                INPUT_STATUS_1 => {
                    // Reading input status 1 also resets the attribute
                    // flip-flop to "index". The retrace bits toggle so that
                    // code waiting for a retrace edge sees one.
                    self.attr_data_next = false;
                    self.input_status_1 ^= ST01_DISPLAY_DISABLED | ST01_VERTICAL_RETRACE;
                    self.input_status_1
                }
                _ => 0xff,
            },
            _ => 0xff,
        }
    }

    /// A byte written to `port` (0x3B0..0x3E0).
    pub fn write_port(&mut self, port: u16, value: u8) {
        if !self.decodes(port) {
            return;
        }
        match port {
            PORT_ATTR_INDEX => {
                if self.attr_data_next {
                    self.write_attr(value);
                } else {
                    self.attr_index = value & 0x3f;
                }
                self.attr_data_next = !self.attr_data_next;
            }
            PORT_MISC_WRITE => self.misc_output = value & !0x10,
            PORT_SEQ_INDEX => self.seq_index = value & 7,
            PORT_SEQ_DATA => {
                let i = self.seq_index as usize;
                self.seq[i] = value & SEQ_MASK[i];
            }
            PORT_DAC_MASK => self.dac.pel_mask = value,
            PORT_DAC_READ_INDEX => {
                self.dac.read_index = value;
                self.dac.read_component = 0;
                self.dac.state = 3;
            }
            PORT_DAC_WRITE_INDEX => {
                self.dac.write_index = value;
                self.dac.write_component = 0;
                self.dac.state = 0;
            }
            PORT_DAC_DATA => self.dac.write_data(value),
            PORT_GC_INDEX => self.gc_index = value & 0x0f,
            PORT_GC_DATA => match self.gc.get_mut(self.gc_index as usize) {
                Some(register) => *register = value & GC_MASK[self.gc_index as usize],
                None => guest_warn!(
                    index = self.gc_index,
                    "write to a graphics controller register that does not exist"
                ),
            },
            0x3b0..=0x3bf | 0x3d0..=0x3df => match port & 0xf {
                CRTC_INDEX => self.crtc_index = value,
                CRTC_DATA => self.write_crtc(value),
                INPUT_STATUS_1 => self.feature_control = value & 0x0b,
                _ => {}
            },
            _ => {}
        }
    }

    fn write_attr(&mut self, value: u8) {
        let index = (self.attr_index & 0x1f) as usize;
        let value = match index {
            0x00..=0x0f => value & 0x3f,
            AR_MODE_CONTROL => value & !0x10,
            0x11 => value,
            AR_COLOR_PLANE_ENABLE => value & 0x3f,
            0x13 | AR_COLOR_SELECT => value & 0x0f,
            _ => {
                guest_warn!(index, "write to an attribute register that does not exist");
                return;
            }
        };
        self.attr[index] = value;
    }

    fn write_crtc(&mut self, value: u8) {
        let index = self.crtc_index as usize;
        if index >= CRTC_REGISTERS {
            // Extended CRTC registers of other chips: absent here. Drivers
            // probe them, so this is not worth a warning.
            tracing::trace!(index, "write to an absent CRTC register");
            return;
        }
        if self.crtc[CR_VERTICAL_RETRACE_END] & CR11_PROTECT != 0 && index <= CR_OVERFLOW {
            // Protected; only the line compare bit 8 in the overflow
            // register stays writable.
            if index == CR_OVERFLOW {
                self.crtc[index] = (self.crtc[index] & !0x10) | (value & 0x10);
            }
            return;
        }
        self.crtc[index] = value;
    }

    /// Whether the display is running: palette address source set and the
    /// screen not turned off by the sequencer.
    pub fn display_enabled(&self) -> bool {
        self.attr_index & ATTR_PAS != 0 && self.seq[SR_CLOCKING_MODE] & SR01_SCREEN_OFF == 0
    }

    /// Start address (CRTC address counter units).
    pub fn start_address(&self) -> u32 {
        (self.crtc[CR_START_ADDRESS_HIGH] as u32) << 8 | self.crtc[CR_START_ADDRESS_LOW] as u32
    }

    /// Cursor location (CRTC address counter units).
    pub fn cursor_location(&self) -> u32 {
        (self.crtc[CR_CURSOR_LOCATION_HIGH] as u32) << 8 | self.crtc[CR_CURSOR_LOCATION_LOW] as u32
    }

    /// Address counter units per displayed row of memory: the offset
    /// register counts words (two addresses).
    pub fn line_offset(&self) -> u32 {
        self.crtc[CR_OFFSET] as u32 * 2
    }

    /// Number of displayed scanlines (vertical display end + 1).
    pub fn vertical_display_lines(&self) -> u32 {
        let overflow = self.crtc[CR_OVERFLOW] as u32;
        let end = self.crtc[CR_VERTICAL_DISPLAY_END] as u32
            | (overflow & 0x02) << 7
            | (overflow & 0x40) << 3;
        end + 1
    }

    /// Displayed character clocks per line (horizontal display end + 1).
    pub fn horizontal_display_chars(&self) -> u32 {
        self.crtc[CR_HORIZONTAL_DISPLAY_END] as u32 + 1
    }

    /// Line compare (split screen): the scanline after which the address
    /// counter restarts at 0.
    pub fn line_compare(&self) -> u32 {
        self.crtc[CR_LINE_COMPARE] as u32
            | (self.crtc[CR_OVERFLOW] as u32 & 0x10) << 4
            | (self.crtc[CR_MAXIMUM_SCAN_LINE] as u32 & 0x40) << 3
    }

    /// Scanlines per character row (text) or per pixel row (graphics),
    /// including scan doubling.
    pub fn scanlines_per_row(&self) -> u32 {
        let max_scan = self.crtc[CR_MAXIMUM_SCAN_LINE];
        ((max_scan & 0x1f) as u32 + 1) << (max_scan >> 7)
    }

    /// Graphics (rather than alphanumeric) mode.
    pub fn graphics_mode(&self) -> bool {
        self.gc[GR_MISC] & GR06_GRAPHICS != 0
    }

    /// The attribute controller's 16-entry palette through the DAC, for
    /// text and 16-colour modes: each entry picks a DAC colour, with bits 7–4
    /// of the DAC index from the colour select register.
    pub fn palette16(&self) -> [u32; 16] {
        let mode = self.attr[AR_MODE_CONTROL];
        let select = self.attr[AR_COLOR_SELECT];
        std::array::from_fn(|i| {
            let entry = self.attr[i];
            let index = if mode & AR10_P54_SELECT != 0 {
                (select & 0x0f) << 4 | (entry & 0x0f)
            } else {
                (select & 0x0c) << 4 | (entry & 0x3f)
            };
            self.dac.color(index & self.dac.pel_mask)
        })
    }

    /// The DAC's 256 colours, for 256-colour modes.
    pub fn palette256(&self) -> [u32; 256] {
        std::array::from_fn(|i| self.dac.color(i as u8 & self.dac.pel_mask))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn color() -> Registers {
        let mut regs = Registers::default();
        regs.write_port(PORT_MISC_WRITE, 0x67);
        regs
    }

    #[test]
    fn crtc_answers_at_the_pair_misc_output_selects() {
        let mut regs = color();
        regs.write_port(0x3d4, 0x0e);
        regs.write_port(0x3d5, 0x12);
        assert_eq!(regs.read_port(0x3d5), 0x12);
        assert_eq!(
            regs.read_port(0x3b5),
            0xff,
            "mono pair floats in colour mode"
        );
        regs.write_port(0x3b5, 0x99);
        assert_eq!(regs.cursor_location(), 0x1200);
        regs.write_port(PORT_MISC_WRITE, 0x66);
        assert_eq!(regs.read_port(0x3b4), 0x0e);
        assert_eq!(regs.read_port(0x3d4), 0xff);
        assert_eq!(regs.read_port(PORT_MISC_READ), 0x66);
    }

    #[test]
    fn attribute_flip_flop_is_reset_by_input_status_1() {
        let mut regs = color();
        regs.read_port(0x3da);
        regs.write_port(PORT_ATTR_INDEX, 0x01);
        regs.write_port(PORT_ATTR_INDEX, 0x3f);
        assert_eq!(regs.attr[1], 0x3f);
        // Leave the flip-flop at "data", then reset it.
        regs.write_port(PORT_ATTR_INDEX, 0x02);
        regs.read_port(0x3da);
        regs.write_port(PORT_ATTR_INDEX, 0x20 | 0x03);
        regs.write_port(PORT_ATTR_INDEX, 0x07);
        assert_eq!(regs.attr[3], 0x07);
        assert_eq!(regs.attr[2], 0);
        assert_eq!(regs.read_port(PORT_ATTR_INDEX), 0x23);
        assert_eq!(regs.read_port(PORT_ATTR_DATA_READ), 0x07);
        assert!(regs.attr_index & ATTR_PAS != 0);
    }

    #[test]
    fn retrace_bits_toggle_for_polling_guests() {
        let mut regs = color();
        let a = regs.read_port(0x3da);
        let b = regs.read_port(0x3da);
        assert_eq!(a ^ b, 0x09);
    }

    #[test]
    fn dac_auto_increments_in_triples() {
        let mut regs = color();
        regs.write_port(PORT_DAC_WRITE_INDEX, 0xff);
        for v in [0x3f, 0x00, 0x20, 0x01, 0x02, 0x03] {
            regs.write_port(PORT_DAC_DATA, v);
        }
        // Index wrapped from 255 to 0.
        assert_eq!(regs.dac.color(0xff), 0xff0082);
        assert_eq!(&regs.dac.palette[0..3], &[1, 2, 3]);
        regs.write_port(PORT_DAC_READ_INDEX, 0xff);
        assert_eq!(regs.read_port(PORT_DAC_READ_INDEX), 3);
        let read: Vec<u8> = (0..4).map(|_| regs.read_port(PORT_DAC_DATA)).collect();
        assert_eq!(read, [0x3f, 0x00, 0x20, 0x01]);
    }

    #[test]
    fn protected_crtc_registers_keep_their_values() {
        let mut regs = color();
        regs.write_port(0x3d4, 0x01);
        regs.write_port(0x3d5, 0x4f);
        regs.write_port(0x3d4, 0x11);
        regs.write_port(0x3d5, 0x80);
        regs.write_port(0x3d4, 0x01);
        regs.write_port(0x3d5, 0x10);
        assert_eq!(regs.crtc[1], 0x4f);
        regs.write_port(0x3d4, 0x07);
        regs.write_port(0x3d5, 0xff);
        assert_eq!(regs.crtc[7], 0x10);
    }

    #[test]
    fn garbage_indices_are_harmless() {
        let mut regs = color();
        for port in 0x3b0..0x3e0u16 {
            for value in [0x00, 0x55, 0xaa, 0xff] {
                regs.write_port(port, value);
                regs.read_port(port);
            }
        }
        regs.write_port(PORT_GC_INDEX, 0xff);
        regs.write_port(PORT_GC_DATA, 1);
        assert_eq!(regs.read_port(PORT_GC_DATA), 0);
        regs.write_port(0x3d4, 0xff);
        regs.write_port(0x3d5, 1);
        assert_eq!(regs.read_port(0x3d5), 0);
    }
}
