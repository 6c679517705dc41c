//! Turns the card's registers and memory into pixels on the shared
//! [`Display`]: alphanumeric modes (glyphs from plane 2, attributes,
//! blinking, the cursor), 16-colour planar modes, 256-colour modes (chained
//! and unchained) and Bochs VBE framebuffers of 8, 15, 16, 24 and 32 bits.
//!
//! Reference: IBM VGA Technical Reference ("Attribute Controller
//! Registers", "CRT Controller Registers": start address, offset, cursor,
//! maximum scan line, line compare; "Character Map Select"); FreeVGA
//! "VGA Text Mode Operation".
//!
//! The surface has the mode's addressable resolution: 320×200 for mode 13h,
//! 640×480 for mode 12h, columns × character cell for text (40-column
//! modes, which halve the dot clock, are drawn at double width so they keep
//! their shape). Redraws are incremental: a graphics row is drawn again
//! only when a VRAM page it shows was written, a text cell only when its
//! character, attribute, cursor or blink state changed; a new mode, palette
//! or font redraws everything.
//!
//! Not emulated: CGA-compatible 2- and 4-colour modes (04h–06h, shown
//! blank), pixel panning, the underline of monochrome text, the overscan
//! border.

use std::time::Duration;

use super::memory::{DirtyPages, Vram, LEGACY_VRAM};
use super::registers::*;
use super::vbe::Vbe;
use crate::display::{Display, Rect, Surface};

/// Everything a redraw reads, taken from the card under its lock (the
/// VRAM is shared memory and is read after the lock is gone).
pub struct Frame {
    pub regs: Registers,
    pub vbe: Vbe,
    pub vram: Vram,
    /// Pages written since the last frame.
    pub dirty: DirtyPages,
    /// Plane 2 (the font) was written since the last frame.
    pub font_written: bool,
}

/// Which half of their blink cycle the cursor and blinking text are in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlinkPhase {
    pub cursor_visible: bool,
    pub text_visible: bool,
}

impl BlinkPhase {
    /// Both shown: for still pictures (a screenshot of a stopped machine).
    pub const STEADY: Self = Self {
        cursor_visible: true,
        text_visible: true,
    };

    /// The phase `elapsed` after power-on. A VGA blinks the cursor every 16
    /// frames and blinking text every 32, at 60 frames per second.
    pub fn at(elapsed: Duration) -> Self {
        let frames = elapsed.as_millis() * 60 / 1000;
        Self {
            cursor_visible: (frames / 16) % 2 == 0,
            text_visible: (frames / 32) % 2 == 0,
        }
    }
}

/// Largest surface the card draws (the biggest VBE mode).
const MAX_WIDTH: u32 = super::vbe::MAX_XRES as u32;
const MAX_HEIGHT: u32 = super::vbe::MAX_YRES as u32;

/// Where a graphics mode's rows are in VRAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Scan {
    width: u32,
    height: u32,
    /// Byte offset of row 0.
    start: usize,
    /// Bytes from one row to the next.
    line_bytes: usize,
    /// Rows from this one on start again at offset 0 (line compare).
    split_row: u32,
    /// Addresses wrap at this size (the legacy 256 KiB, or all of VRAM for VBE).
    wrap: usize,
}

impl Scan {
    /// Byte offset of row `y`.
    fn row_start(&self, y: u32) -> usize {
        if y >= self.split_row {
            (y - self.split_row) as usize * self.line_bytes % self.wrap
        } else {
            (self.start + y as usize * self.line_bytes) % self.wrap
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TextLayout {
    columns: u32,
    rows: u32,
    /// 8 or 9 dots.
    cell_width: u32,
    cell_height: u32,
    /// Each dot drawn twice (40-column modes).
    double_width: bool,
    /// Plane address of the top-left cell.
    start: u32,
    /// Plane addresses from one row to the next.
    row_offset: u32,
    split_row: u32,
    /// Plane addresses of the fonts for attribute bit 3 clear and set.
    fonts: [u32; 2],
}

impl TextLayout {
    fn dot_width(&self) -> u32 {
        self.cell_width * if self.double_width { 2 } else { 1 }
    }

    fn cell_address(&self, row: u32, column: u32) -> u32 {
        let base = if row >= self.split_row {
            (row - self.split_row) * self.row_offset
        } else {
            self.start + row * self.row_offset
        };
        (base + column) & 0xffff
    }
}

/// How the screen is drawn right now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// Display off (palette address source clear, screen off, or a mode
    /// this card does not draw).
    Blank,
    Text(TextLayout),
    /// 16 colours, one bit per plane.
    Planar(Scan),
    /// 256 colours, one byte per pixel through the DAC.
    Packed(Scan),
    /// VBE direct colour of `bpp` bits.
    Direct(Scan, u32),
}

impl Layout {
    fn of(regs: &Registers, vbe: &Vbe, vram_size: usize) -> Self {
        if vbe.enabled() {
            let scan = Scan {
                width: vbe.xres(),
                height: vbe.yres(),
                start: vbe.start_byte,
                line_bytes: vbe.line_bytes,
                split_row: u32::MAX,
                wrap: vram_size,
            };
            return match vbe.bpp() {
                4 => Layout::Planar(scan),
                8 => Layout::Packed(scan),
                bpp => Layout::Direct(scan, bpp),
            };
        }
        if !regs.display_enabled() {
            return Layout::Blank;
        }
        let layout = if regs.graphics_mode() {
            Self::graphics(regs)
        } else {
            Self::text(regs)
        };
        let (width, height) = layout.size();
        if width == 0 || height == 0 || width > MAX_WIDTH || height > MAX_HEIGHT {
            return Layout::Blank;
        }
        layout
    }

    fn graphics(regs: &Registers) -> Self {
        let per_row = regs.scanlines_per_row();
        let mut scan = Scan {
            width: regs.horizontal_display_chars() * 8,
            height: regs.vertical_display_lines() / per_row,
            start: regs.start_address() as usize * 4,
            line_bytes: regs.line_offset() as usize * 4,
            split_row: (regs.line_compare() + 1).div_ceil(per_row),
            wrap: LEGACY_VRAM,
        };
        match (regs.gc[GR_MODE] >> 5) & 3 {
            0 => Layout::Planar(scan),
            1 => Layout::Blank,
            _ => {
                // Two dot clocks per 8-bit pixel.
                scan.width /= 2;
                Layout::Packed(scan)
            }
        }
    }

    fn text(regs: &Registers) -> Self {
        let cell_height = (regs.crtc[CR_MAXIMUM_SCAN_LINE] & 0x1f) as u32 + 1;
        let per_row = regs.scanlines_per_row();
        let clocking = regs.seq[SR_CLOCKING_MODE];
        let map = regs.seq[SR_CHARACTER_MAP] as u32;
        // Character map select: map B (attribute bit 3 clear) in bits 4,1,0,
        // map A in bits 5,3,2; map n starts at 8 Ki plane addresses times
        // (n's low bit above its two high bits).
        let font_b = ((map >> 4) & 1 | (map << 1) & 6) * 0x2000;
        let font_a = ((map >> 5) & 1 | (map >> 1) & 6) * 0x2000;
        Layout::Text(TextLayout {
            columns: regs.horizontal_display_chars(),
            rows: regs.vertical_display_lines() / per_row,
            cell_width: if clocking & SR01_DOTS_8 != 0 { 8 } else { 9 },
            cell_height,
            double_width: clocking & SR01_DOT_CLOCK_HALF != 0,
            start: regs.start_address(),
            row_offset: regs.line_offset(),
            split_row: (regs.line_compare() + 1).div_ceil(per_row),
            fonts: [font_b, font_a],
        })
    }

    fn size(&self) -> (u32, u32) {
        match self {
            Layout::Blank => (0, 0),
            Layout::Text(t) => (t.columns * t.dot_width(), t.rows * t.cell_height),
            Layout::Planar(s) | Layout::Packed(s) | Layout::Direct(s, _) => (s.width, s.height),
        }
    }
}

/// What a text cell looked like when last drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cell {
    character: u8,
    attribute: u8,
    /// Cursor scanlines drawn over it (first, last).
    cursor: Option<(u8, u8)>,
    /// A blinking character in its off phase.
    hidden: bool,
}

/// Draws frames of one card into a display, remembering what it drew.
#[derive(Default)]
pub struct Renderer {
    layout: Option<Layout>,
    palette: Vec<u32>,
    cells: Vec<Option<Cell>>,
}

impl Renderer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Draws what changed in `frame` into `display`.
    pub fn render(&mut self, frame: &Frame, display: &Display, blink: BlinkPhase) {
        let layout = Layout::of(&frame.regs, &frame.vbe, frame.vram.len());
        let mut full = self.layout != Some(layout);
        if layout == Layout::Blank {
            if full {
                display.update(|surface| {
                    surface.pixels.fill(0);
                    vec![Rect::new(0, 0, surface.width, surface.height)]
                });
                self.layout = Some(layout);
                self.cells.clear();
            }
            return;
        }
        let (width, height) = layout.size();
        display.resize(width, height);
        let palette: Vec<u32> = match layout {
            Layout::Text(_) => frame.regs.palette16().to_vec(),
            Layout::Planar(_) => {
                // Colour plane enable masks each pixel's planes before the
                // palette; folding it in makes a change of it a palette change.
                let palette = frame.regs.palette16();
                let mask = frame.regs.attr[AR_COLOR_PLANE_ENABLE] as usize & 0x0f;
                (0..16).map(|i| palette[i & mask]).collect()
            }
            Layout::Packed(_) => frame.regs.palette256().to_vec(),
            _ => Vec::new(),
        };
        full |= palette != self.palette;
        self.palette = palette;
        self.layout = Some(layout);
        display.update(|surface| {
            // Another producer cannot resize, but be safe against a
            // surface that is not the size this layout draws.
            if (surface.width, surface.height) != (width, height) {
                return Vec::new();
            }
            match layout {
                Layout::Blank => Vec::new(),
                Layout::Text(text) => {
                    self.draw_text(frame, &text, surface, full || frame.font_written, blink)
                }
                Layout::Planar(scan) => {
                    let palette = &self.palette;
                    draw_rows(
                        frame,
                        &scan,
                        scan.width as usize / 8 * 4,
                        full,
                        surface,
                        |src, row| {
                            for (x, pixel) in row.iter_mut().enumerate() {
                                let at = (x / 8) * 4;
                                let bit = 7 - (x % 8);
                                let value =
                                    (0..4).fold(0u8, |v, p| v | ((src[at + p] >> bit) & 1) << p);
                                *pixel = palette[value as usize];
                            }
                        },
                    )
                }
                Layout::Packed(scan) => {
                    let palette = &self.palette;
                    draw_rows(
                        frame,
                        &scan,
                        scan.width as usize,
                        full,
                        surface,
                        |src, row| {
                            for (pixel, &index) in row.iter_mut().zip(src) {
                                *pixel = palette[index as usize];
                            }
                        },
                    )
                }
                Layout::Direct(scan, bpp) => {
                    let bytes = bpp.div_ceil(8) as usize;
                    draw_rows(
                        frame,
                        &scan,
                        scan.width as usize * bytes,
                        full,
                        surface,
                        |src, row| {
                            for (pixel, p) in row.iter_mut().zip(src.chunks_exact(bytes)) {
                                *pixel = direct_color(bpp, p);
                            }
                        },
                    )
                }
            }
        });
    }

    fn draw_text(
        &mut self,
        frame: &Frame,
        text: &TextLayout,
        surface: &mut Surface,
        full: bool,
        blink: BlinkPhase,
    ) -> Vec<Rect> {
        let regs = &frame.regs;
        let vram = &frame.vram;
        let count = (text.columns * text.rows) as usize;
        if full || self.cells.len() != count {
            self.cells = vec![None; count];
        }
        let mode = regs.attr[AR_MODE_CONTROL];
        let cursor_start = regs.crtc[CR_CURSOR_START];
        let cursor_end = (regs.crtc[CR_CURSOR_END] & 0x1f).min(text.cell_height as u8 - 1);
        let cursor = (cursor_start & 0x20 == 0
            && blink.cursor_visible
            && (cursor_start & 0x1f) <= cursor_end)
            .then_some((cursor_start & 0x1f, cursor_end));
        let cursor_address = regs.cursor_location() & 0xffff;
        let dot = text.dot_width() as usize;
        let mut rects = Vec::new();
        for row in 0..text.rows {
            let mut changed: Option<(u32, u32)> = None;
            for column in 0..text.columns {
                let address = text.cell_address(row, column) as usize;
                let character = vram.read_u8(address * 4);
                let attribute = vram.read_u8(address * 4 + 1);
                let blinking = mode & AR10_BLINK != 0 && attribute & 0x80 != 0;
                let cell = Cell {
                    character,
                    attribute,
                    cursor: cursor.filter(|_| address as u32 == cursor_address),
                    hidden: blinking && !blink.text_visible,
                };
                let slot = &mut self.cells[(row * text.columns + column) as usize];
                if *slot == Some(cell) {
                    continue;
                }
                *slot = Some(cell);
                changed = Some(match changed {
                    Some((first, _)) => (first, column),
                    None => (column, column),
                });
                let background = if mode & AR10_BLINK != 0 {
                    (attribute >> 4) & 7
                } else {
                    attribute >> 4
                };
                let bg = self.palette[background as usize];
                let fg = if cell.hidden {
                    bg
                } else {
                    self.palette[(attribute & 0x0f) as usize]
                };
                let font = text.fonts[((attribute >> 3) & 1) as usize];
                let line_graphics =
                    mode & AR10_LINE_GRAPHICS != 0 && (0xc0..=0xdf).contains(&character);
                let x0 = (column * text.dot_width()) as usize;
                for line in 0..text.cell_height {
                    let glyph_address = (font + character as u32 * 32 + line) as usize;
                    let mut bits = vram.read_u8(glyph_address * 4 + 2) as u16;
                    bits <<= 1;
                    if text.cell_width == 9 && line_graphics {
                        bits |= bits >> 1 & 1;
                    }
                    if let Some((first, last)) = cell.cursor {
                        if (first as u32..=last as u32).contains(&line) {
                            bits = 0x1ff;
                        }
                    }
                    let y = row * text.cell_height + line;
                    let scale = dot / text.cell_width as usize;
                    for (i, pixel) in surface.row_mut(y)[x0..x0 + dot].iter_mut().enumerate() {
                        // Bit 8 is the leftmost dot, bit 0 the ninth.
                        let on = (bits >> (8 - i / scale)) & 1 != 0;
                        *pixel = if on { fg } else { bg };
                    }
                }
            }
            if let Some((first, last)) = changed {
                rects.push(Rect::new(
                    first * text.dot_width(),
                    row * text.cell_height,
                    (last - first + 1) * text.dot_width(),
                    text.cell_height,
                ));
            }
        }
        rects
    }
}

/// Redraws the rows of `scan` that are dirty (or all when `full`):
/// `convert` turns a row's `row_bytes` bytes of VRAM into pixels. Returns
/// the damaged rectangles, one per run of redrawn rows.
fn draw_rows(
    frame: &Frame,
    scan: &Scan,
    row_bytes: usize,
    full: bool,
    surface: &mut Surface,
    convert: impl Fn(&[u8], &mut [u32]),
) -> Vec<Rect> {
    let mut rects: Vec<Rect> = Vec::new();
    let mut src = vec![0u8; row_bytes];
    for y in 0..scan.height {
        let start = scan.row_start(y);
        // A row may wrap around the end of the addressable memory.
        let first = row_bytes.min(scan.wrap - start);
        let dirty =
            full || frame.dirty.touches(start, first) || frame.dirty.touches(0, row_bytes - first);
        if !dirty {
            continue;
        }
        frame.vram.read(start, &mut src[..first]);
        frame.vram.read(0, &mut src[first..]);
        convert(&src, surface.row_mut(y));
        match rects.last_mut() {
            Some(last) if last.y + last.height == y => last.height += 1,
            _ => rects.push(Rect::new(0, y, scan.width, 1)),
        }
    }
    rects
}

/// A VBE direct-colour pixel (little-endian bytes) as 0x00RRGGBB.
fn direct_color(bpp: u32, p: &[u8]) -> u32 {
    let expand5 = |v: u32| (v << 3) | (v >> 2);
    let expand6 = |v: u32| (v << 2) | (v >> 4);
    match bpp {
        15 => {
            let v = u16::from_le_bytes([p[0], p[1]]) as u32;
            expand5((v >> 10) & 0x1f) << 16 | expand5((v >> 5) & 0x1f) << 8 | expand5(v & 0x1f)
        }
        16 => {
            let v = u16::from_le_bytes([p[0], p[1]]) as u32;
            expand5(v >> 11) << 16 | expand6((v >> 5) & 0x3f) << 8 | expand5(v & 0x1f)
        }
        24 => (p[2] as u32) << 16 | (p[1] as u32) << 8 | p[0] as u32,
        _ => u32::from_le_bytes([p[0], p[1], p[2], p[3]]) & 0x00ff_ffff,
    }
}
