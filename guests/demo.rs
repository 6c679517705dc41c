#![allow(dead_code)] // build.rs uses the image, tests/demo.rs the constants

//! The demo VM that ships with Vireo: a small program SeaBIOS boots from a
//! 1 MiB raw disk (a boot sector that loads the sectors after it, see
//! [`boot_image`]). It switches the VGA to mode 13h (320×200, 256
//! colours), draws a splash — a gradient band, a bird and the word "Vireo"
//! in the VGA BIOS's own font scaled up four times — and then echoes what
//! is typed, on the keyboard (int 16h, so VNC and the GUI reach it) or on
//! COM1: on the screen as typed, and on COM1 in capitals after the
//! [`GREETING`], as the serial-only demo did.
//!
//! Everything is sized for a machine that emulates the guest at about half
//! a million instructions a second: the VGA window is MMIO, so every store
//! to it costs an exit; the splash writes 32-bit words (`stosd`) and leaves
//! most of the screen black, and the BIOS never scrolls (the typing area
//! wraps around and clears one text row at a time).

use crate::asm::{boot_image, Program, COM1, COM1_LSR};
use iced_x86::code_asm::*;

pub const GREETING: &str = "Vireo demo VM: type something, it comes back in capitals.\r\n";

/// The splash's big word and the line under it (the BIOS font has no dash
/// longer than '-').
pub const SPLASH_WORD: &str = "Vireo";
pub const SPLASH_PROMPT: &str = "Type something - it appears here";

/// Mode 13h: one byte per pixel at A000:0000, 320 pixels a row.
pub const WIDTH: u16 = 320;
pub const HEIGHT: u16 = 200;
const VGA_SEGMENT: u16 = 0xa000;

/// The gradient band: 64 DAC entries from [`GRADIENT_BASE`], two pixel
/// rows each, from the top of the screen.
pub const GRADIENT_BASE: u8 = 0x40;
pub const BAND_ROWS: u16 = 128;
/// The gradient's colour `i` (0..64) in the DAC's 6-bit components: blue
/// at the top to teal at the bottom. The assembly computes the same.
pub fn gradient_rgb6(i: u8) -> [u8; 3] {
    [i >> 3, (i >> 1) + 16, 63 - (i >> 2)]
}

/// Fixed DAC entries after the gradient (6-bit components).
pub const BIRD: u8 = 0x80;
pub const WORD: u8 = 0x81;
pub const SHADOW: u8 = 0x82;
pub const TYPED: u8 = 0x83;
pub const FIXED_RGB6: [[u8; 3]; 4] = [
    [34, 44, 8],  // BIRD: a vireo's olive green
    [63, 58, 22], // WORD: warm yellow
    [2, 6, 14],   // SHADOW: dark blue, under the bird and the word
    [40, 63, 40], // TYPED: light green for what the user types
];
/// The prompt line's colour: the standard palette's white.
const PROMPT: u8 = 0x0f;

/// Each bitmap pixel becomes a SCALE×SCALE block (one `stosd` a row).
const SCALE: u16 = 4;
/// Where the bird (16×16 bitmap) and the word (8×16 glyphs) go.
const BIRD_X: u16 = 36;
const WORD_X: u16 = 116;
const ART_Y: u16 = 32;
const SHADOW_OFFSET: u16 = 3;

/// Text rows of the BIOS's 8×8 font (40×25 cells): the prompt, then the
/// typing area, which wraps from its last row back to its first.
const PROMPT_ROW: u8 = 17;
const TYPE_TOP: u8 = 19;
const TYPE_BOTTOM: u8 = 23;

/// Low free memory for the ROM font's far pointer (offset, segment).
const FONT_PTR: u32 = 0x600;

/// The bird, facing left: 16 rows of 16 pixels, most significant bit left.
const BIRD_BITMAP: [u16; 16] = [
    0b0000000000000000,
    0b0000001111000000,
    0b0000011111100000,
    0b0000110111110000,
    0b0011111111100000,
    0b0000111111111000,
    0b0000011111111110,
    0b0000011111111111,
    0b0000001111111110,
    0b0000001111111100,
    0b0000000111111000,
    0b0000000011110000,
    0b0000000010010000,
    0b0000000110110000,
    0b0000000000000000,
    0b0000000000000000,
];

/// The demo disk's first sectors: loader plus program.
pub fn demo_image() -> Vec<u8> {
    boot_image(|p| {
        let r = Routines::new(&mut p.a);
        let a = &mut p.a;
        set_mode_13h(a);
        load_palette(a);
        fill_screen(a);
        save_rom_font_pointer(a);
        draw_bird(a, &r);
        draw_word(a, &r, SPLASH_WORD);
        print_at(a, &r, PROMPT_ROW, 4, PROMPT, SPLASH_PROMPT);
        a.mov(dh, TYPE_TOP as u32).unwrap();
        a.call(r.start_row).unwrap();
        p.print("\r\n");
        p.print(GREETING);
        echo_loop(&mut p.a, &r);
        define_routines(p, r);
    })
}

/// Labels of the program's own subroutines (defined after the main code).
struct Routines {
    /// Fills a SCALE×SCALE block with EAX (the colour four times) at pixel
    /// (BX, DX). ES = A000. Clobbers DI.
    put_block: CodeLabel,
    /// Draws the 8×16 bitmap at DS:SI scaled up at (BX, DX) in colour AL.
    draw_glyph: CodeLabel,
    /// Prints the NUL-terminated text after the call on the screen in
    /// colour BL, with the BIOS teletype, and returns past it.
    screen_puts: CodeLabel,
    /// Prints AL on the screen in colour BL (BIOS teletype).
    screen_putc: CodeLabel,
    /// Moves the cursor to row DH, column DL.
    set_cursor: CodeLabel,
    /// Starts text row DH of the typing area (wrapping past its bottom):
    /// clears it and puts the cursor at its start.
    start_row: CodeLabel,
    /// Shows AL on the screen and sends it on COM1 in capitals.
    echo: CodeLabel,
}

impl Routines {
    fn new(a: &mut CodeAssembler) -> Self {
        Self {
            put_block: a.create_label(),
            draw_glyph: a.create_label(),
            screen_puts: a.create_label(),
            screen_putc: a.create_label(),
            set_cursor: a.create_label(),
            start_row: a.create_label(),
            echo: a.create_label(),
        }
    }
}

/// Emits `call over; db bytes; over: pop si` — SI = the bytes' address
/// (code_asm cannot take a label's address in 16-bit code).
fn inline_data(a: &mut CodeAssembler, bytes: &[u8]) {
    let mut over = a.create_label();
    a.call(over).unwrap();
    a.db(bytes).unwrap();
    a.set_label(&mut over).unwrap();
    a.pop(si).unwrap();
}

/// EAX = AL in all four bytes (clobbers nothing else).
fn replicate_al(a: &mut CodeAssembler) {
    a.mov(ah, al).unwrap();
    a.push(ax).unwrap();
    a.shl(eax, 16u32).unwrap();
    a.pop(ax).unwrap();
}

/// int 10h AH=00h: mode 13h. Bit 7 keeps the BIOS from clearing the
/// screen (a byte at a time, the slowest part of the splash when
/// emulated): fill_screen writes every pixel anyway.
fn set_mode_13h(a: &mut CodeAssembler) {
    a.mov(ax, 0x0093u32).unwrap();
    a.int(0x10).unwrap();
}

/// Programs the DAC: the gradient from GRADIENT_BASE, then the fixed
/// colours right after it (the write index advances by itself).
fn load_palette(a: &mut CodeAssembler) {
    a.mov(dx, 0x3c8u32).unwrap(); // DAC write index
    a.mov(al, GRADIENT_BASE as u32).unwrap();
    a.out(dx, al).unwrap();
    a.inc(dx).unwrap(); // DAC data: red, green, blue per entry
    a.xor(bx, bx).unwrap();
    let mut entry = a.create_label();
    a.set_label(&mut entry).unwrap();
    // Same formula as gradient_rgb6(BL).
    a.mov(al, bl).unwrap();
    a.shr(al, 3u32).unwrap();
    a.out(dx, al).unwrap();
    a.mov(al, bl).unwrap();
    a.shr(al, 1u32).unwrap();
    a.add(al, 16u32).unwrap();
    a.out(dx, al).unwrap();
    a.mov(ah, bl).unwrap();
    a.shr(ah, 2u32).unwrap();
    a.mov(al, 63u32).unwrap();
    a.sub(al, ah).unwrap();
    a.out(dx, al).unwrap();
    a.inc(bx).unwrap();
    a.cmp(bx, 64u32).unwrap();
    a.jb(entry).unwrap();
    let fixed: Vec<u8> = FIXED_RGB6.iter().flatten().copied().collect();
    inline_data(a, &fixed);
    a.mov(cx, fixed.len() as u32).unwrap();
    a.rep().outsb().unwrap();
}

/// The whole screen, a 32-bit word at a time: the gradient band (BAND_ROWS
/// rows from the top, colour GRADIENT_BASE + row / 2), black below.
fn fill_screen(a: &mut CodeAssembler) {
    a.mov(ax, VGA_SEGMENT as u32).unwrap();
    a.mov(es, ax).unwrap();
    a.xor(di, di).unwrap();
    a.xor(dx, dx).unwrap(); // row
    let mut row = a.create_label();
    let mut fill = a.create_label();
    a.set_label(&mut row).unwrap();
    a.xor(al, al).unwrap();
    a.cmp(dx, BAND_ROWS as u32).unwrap();
    a.jae(fill).unwrap();
    a.mov(al, dl).unwrap();
    a.shr(al, 1u32).unwrap();
    a.add(al, GRADIENT_BASE as u32).unwrap();
    a.set_label(&mut fill).unwrap();
    replicate_al(a);
    a.mov(cx, (WIDTH / 4) as u32).unwrap();
    a.rep().stosd().unwrap();
    a.inc(dx).unwrap();
    a.cmp(dx, HEIGHT as u32).unwrap();
    a.jb(row).unwrap();
}

/// int 10h AX=1130h BH=06h: ES:BP = the VGA BIOS's 8×16 font; keep it at
/// FONT_PTR and point ES back at the screen.
fn save_rom_font_pointer(a: &mut CodeAssembler) {
    a.mov(ax, 0x1130u32).unwrap();
    a.mov(bh, 0x06u32).unwrap();
    a.int(0x10).unwrap();
    a.mov(word_ptr(FONT_PTR), bp).unwrap();
    a.mov(word_ptr(FONT_PTR + 2), es).unwrap();
    a.mov(ax, VGA_SEGMENT as u32).unwrap();
    a.mov(es, ax).unwrap();
}

/// Calls draw_glyph for the bitmap at SI (in DS) twice: a shadow offset
/// down and right, then `colour` on top.
fn glyph_with_shadow(a: &mut CodeAssembler, r: &Routines, x: u16, colour: u8) {
    for (dx_, colour) in [(SHADOW_OFFSET, SHADOW), (0, colour)] {
        a.push(si).unwrap();
        a.mov(bx, (x + dx_) as u32).unwrap();
        a.mov(dx, (ART_Y + dx_) as u32).unwrap();
        a.mov(al, colour as u32).unwrap();
        a.call(r.draw_glyph).unwrap();
        a.pop(si).unwrap();
    }
}

/// The bird: its left and right halves are two 8×16 glyphs.
fn draw_bird(a: &mut CodeAssembler, r: &Routines) {
    for half in 0..2 {
        let glyph: Vec<u8> = BIRD_BITMAP
            .iter()
            .map(|row| (row >> (8 * (1 - half))) as u8)
            .collect();
        inline_data(a, &glyph);
        glyph_with_shadow(a, r, BIRD_X + half * 8 * SCALE, BIRD);
    }
}

/// `text` in the ROM font, scaled up, from WORD_X.
fn draw_word(a: &mut CodeAssembler, r: &Routines, text: &str) {
    for (i, byte) in text.bytes().enumerate() {
        a.push(ds).unwrap();
        a.lds(si, ptr(FONT_PTR)).unwrap();
        a.add(si, byte as u32 * 16).unwrap();
        glyph_with_shadow(a, r, WORD_X + i as u16 * 8 * SCALE, WORD);
        a.pop(ds).unwrap();
    }
}

/// Prints `text` at text row `row`, column `col`, in `colour`.
fn print_at(a: &mut CodeAssembler, r: &Routines, row: u8, col: u8, colour: u8, text: &str) {
    a.mov(dx, ((row as u32) << 8) | col as u32).unwrap();
    a.call(r.set_cursor).unwrap();
    a.mov(bl, colour as u32).unwrap();
    a.call(r.screen_puts).unwrap();
    let mut bytes = text.as_bytes().to_vec();
    bytes.push(0);
    a.db(&bytes).unwrap();
}

/// Forever: a key from the keyboard buffer (int 16h AH=01h looks without
/// waiting), else a byte from COM1 (LSR data ready), else sleep until the
/// next interrupt (the timer ticks 18.2 times a second).
fn echo_loop(a: &mut CodeAssembler, r: &Routines) {
    let mut poll = a.create_label();
    let mut serial = a.create_label();
    let mut idle = a.create_label();
    a.sti().unwrap();
    a.set_label(&mut poll).unwrap();
    a.mov(ah, 0x01u32).unwrap();
    a.int(0x16).unwrap();
    a.jz(serial).unwrap();
    a.xor(ah, ah).unwrap(); // take the key: AL = its character
    a.int(0x16).unwrap();
    a.call(r.echo).unwrap();
    a.jmp(poll).unwrap();
    a.set_label(&mut serial).unwrap();
    a.mov(dx, COM1_LSR as u32).unwrap();
    a.in_(al, dx).unwrap();
    a.test(al, 0x01u32).unwrap();
    a.jz(idle).unwrap();
    a.mov(dx, COM1 as u32).unwrap();
    a.in_(al, dx).unwrap();
    a.call(r.echo).unwrap();
    a.jmp(poll).unwrap();
    a.set_label(&mut idle).unwrap();
    a.hlt().unwrap();
    a.jmp(poll).unwrap();
}

/// The subroutines behind [`Routines`]' labels.
fn define_routines(p: &mut Program, mut r: Routines) {
    let putc = p.putc;
    let a = &mut p.a;

    // put_block: SCALE rows of one 32-bit word each (SCALE is 4).
    a.set_label(&mut r.put_block).unwrap();
    a.imul_3(di, dx, WIDTH as i32).unwrap();
    a.add(di, bx).unwrap();
    for row in 0..SCALE {
        a.stosd().unwrap();
        if row + 1 < SCALE {
            a.add(di, (WIDTH - 4) as u32).unwrap();
        }
    }
    a.ret().unwrap();

    // draw_glyph: 16 rows of 8 bits; each set bit is a block.
    a.set_label(&mut r.draw_glyph).unwrap();
    let mut row = a.create_label();
    let mut bit = a.create_label();
    let mut clear = a.create_label();
    a.push(bp).unwrap();
    replicate_al(a);
    a.mov(bp, 16u32).unwrap();
    a.set_label(&mut row).unwrap();
    a.mov(ch, byte_ptr(si)).unwrap();
    a.inc(si).unwrap();
    a.push(bx).unwrap();
    a.mov(cl, 8u32).unwrap();
    a.set_label(&mut bit).unwrap();
    a.shl(ch, 1u32).unwrap();
    a.jnc(clear).unwrap();
    a.call(r.put_block).unwrap();
    a.set_label(&mut clear).unwrap();
    a.add(bx, SCALE as u32).unwrap();
    a.dec(cl).unwrap();
    a.jnz(bit).unwrap();
    a.pop(bx).unwrap();
    a.add(dx, SCALE as u32).unwrap();
    a.dec(bp).unwrap();
    a.jnz(row).unwrap();
    a.pop(bp).unwrap();
    a.ret().unwrap();

    // screen_putc: int 10h AH=0Eh, page 0, colour BL.
    a.set_label(&mut r.screen_putc).unwrap();
    a.pusha().unwrap();
    a.mov(ah, 0x0eu32).unwrap();
    a.xor(bh, bh).unwrap();
    a.int(0x10).unwrap();
    a.popa().unwrap();
    a.ret().unwrap();

    // screen_puts: the text after the call, like Program::print on COM1.
    a.set_label(&mut r.screen_puts).unwrap();
    let mut next = a.create_label();
    let mut done = a.create_label();
    a.pop(si).unwrap();
    a.set_label(&mut next).unwrap();
    a.lodsb().unwrap();
    a.test(al, al).unwrap();
    a.jz(done).unwrap();
    a.call(r.screen_putc).unwrap();
    a.jmp(next).unwrap();
    a.set_label(&mut done).unwrap();
    a.push(si).unwrap();
    a.ret().unwrap();

    // set_cursor: int 10h AH=02h, page 0.
    a.set_label(&mut r.set_cursor).unwrap();
    a.pusha().unwrap();
    a.mov(ah, 0x02u32).unwrap();
    a.xor(bh, bh).unwrap();
    a.int(0x10).unwrap();
    a.popa().unwrap();
    a.ret().unwrap();

    // start_row: past the bottom, wrap to the top of the typing area; clear
    // the row's 8 pixel rows (black) and put the cursor at its start.
    a.set_label(&mut r.start_row).unwrap();
    let mut in_area = a.create_label();
    a.cmp(dh, TYPE_BOTTOM as u32).unwrap();
    a.jbe(in_area).unwrap();
    a.mov(dh, TYPE_TOP as u32).unwrap();
    a.set_label(&mut in_area).unwrap();
    a.pusha().unwrap();
    a.push(es).unwrap();
    a.mov(ax, VGA_SEGMENT as u32).unwrap();
    a.mov(es, ax).unwrap();
    a.movzx(di, dh).unwrap();
    a.imul_3(di, di, (8 * WIDTH) as i32).unwrap();
    a.xor(eax, eax).unwrap();
    a.mov(cx, (8 * WIDTH / 4) as u32).unwrap();
    a.rep().stosd().unwrap();
    a.pop(es).unwrap();
    a.popa().unwrap();
    a.xor(dl, dl).unwrap();
    a.call(r.set_cursor).unwrap();
    a.ret().unwrap();

    // echo: COM1 gets capitals (CR followed by LF); the screen gets the
    // character as typed, Enter starts a new row, Backspace (or DEL)
    // rubs out, other control characters show nothing.
    a.set_label(&mut r.echo).unwrap();
    let mut not_lower = a.create_label();
    let mut not_return = a.create_label();
    let mut printable = a.create_label();
    let mut rub_out = a.create_label();
    let mut newline = a.create_label();
    let mut ret = a.create_label();
    a.push(ax).unwrap();
    a.cmp(al, b'a' as u32).unwrap();
    a.jb(not_lower).unwrap();
    a.cmp(al, b'z' as u32).unwrap();
    a.ja(not_lower).unwrap();
    a.sub(al, 0x20u32).unwrap();
    a.set_label(&mut not_lower).unwrap();
    a.call(putc).unwrap();
    a.cmp(al, b'\r' as u32).unwrap();
    a.jne(not_return).unwrap();
    a.mov(al, b'\n' as u32).unwrap();
    a.call(putc).unwrap();
    a.set_label(&mut not_return).unwrap();
    a.pop(ax).unwrap();
    // The screen.
    a.mov(bl, TYPED as u32).unwrap();
    a.cmp(al, b'\r' as u32).unwrap();
    a.je(newline).unwrap();
    a.cmp(al, 0x08u32).unwrap();
    a.je(rub_out).unwrap();
    a.cmp(al, 0x7fu32).unwrap();
    a.je(rub_out).unwrap();
    a.cmp(al, b' ' as u32).unwrap();
    a.jae(printable).unwrap();
    a.ret().unwrap();
    // A character: the teletype moves on, to the next row after the last
    // column — start that row ourselves so the BIOS never scrolls.
    a.set_label(&mut printable).unwrap();
    a.call(r.screen_putc).unwrap();
    a.mov(ah, 0x03u32).unwrap(); // cursor: DH row, DL column
    a.xor(bh, bh).unwrap();
    a.int(0x10).unwrap();
    a.test(dl, dl).unwrap();
    a.jnz(ret).unwrap();
    a.jmp(r.start_row).unwrap();
    // Backspace: back, a blank, back; not past the row's start.
    a.set_label(&mut rub_out).unwrap();
    a.mov(ah, 0x03u32).unwrap();
    a.xor(bh, bh).unwrap();
    a.int(0x10).unwrap();
    a.test(dl, dl).unwrap();
    a.jz(ret).unwrap();
    a.dec(dl).unwrap();
    a.call(r.set_cursor).unwrap();
    a.mov(al, b' ' as u32).unwrap();
    a.mov(bl, TYPED as u32).unwrap();
    a.call(r.screen_putc).unwrap();
    a.jmp(r.set_cursor).unwrap();
    // Enter: the next row.
    a.set_label(&mut newline).unwrap();
    a.mov(ah, 0x03u32).unwrap();
    a.xor(bh, bh).unwrap();
    a.int(0x10).unwrap();
    a.inc(dh).unwrap();
    a.jmp(r.start_row).unwrap();
    a.set_label(&mut ret).unwrap();
    a.ret().unwrap();
}
