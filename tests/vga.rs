//! The VGA card end to end: tiny guests (run as the firmware, no BIOS)
//! program the card themselves — mode registers, palette, font, PCI BAR and
//! VBE — draw, say "drawn" on COM1 and end the run; `vireo run
//! --screenshot-on-exit` saves the screen, which is checked pixel by pixel
//! and against golden images in tests/data/vga/ (regenerate them with
//! `VIREO_REGENERATE_GOLDEN=1`). Then real SeaBIOS with SeaVGABIOS puts its
//! banner on the screen.

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::asm::{
    boot_sector, fill_rect_32bpp, firmware, out16, unreal_mode_fs, vbe_linear_mode, Program,
};
use common::{guest, kvm_available, Domain, Vm};
use iced_x86::code_asm::*;

const QUICK: Duration = Duration::from_secs(60);
const BOOT: Duration = Duration::from_secs(240);

/// A mode's registers as a VGA BIOS loads them (the IBM VGA tables, which
/// SeaVGABIOS carries too).
struct ModeRegs {
    misc: u8,
    seq: [u8; 4],
    crtc: [u8; 25],
    attr: [u8; 20],
    gc: [u8; 9],
}

const MODE_03: ModeRegs = ModeRegs {
    misc: 0x67,
    seq: [0x00, 0x03, 0x00, 0x02],
    crtc: [
        0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00, 0x00, 0x00,
        0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff,
    ],
    attr: [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e,
        0x3f, 0x0c, 0x00, 0x0f, 0x08,
    ],
    gc: [0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x0f, 0xff],
};

const MODE_12: ModeRegs = ModeRegs {
    misc: 0xe3,
    seq: [0x01, 0x0f, 0x00, 0x06],
    crtc: [
        0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0x0b, 0x3e, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0xea, 0x8c, 0xdf, 0x28, 0x00, 0xe7, 0x04, 0xe3, 0xff,
    ],
    attr: [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d, 0x3e,
        0x3f, 0x01, 0x00, 0x0f, 0x00,
    ],
    gc: [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0f, 0xff],
};

const MODE_13: ModeRegs = ModeRegs {
    misc: 0x63,
    seq: [0x01, 0x0f, 0x00, 0x0e],
    crtc: [
        0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00, 0x41, 0x00, 0x00, 0x00, 0x00, 0x00,
        0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff,
    ],
    attr: [
        0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d, 0x0e,
        0x0f, 0x41, 0x00, 0x0f, 0x00,
    ],
    gc: [0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0f, 0xff],
};

/// The EGA's 64 colours (6-bit DAC values): bits 2..0 two thirds of red,
/// green, blue; bits 5..3 one third.
fn ega_palette() -> Vec<u8> {
    (0..64u8)
        .flat_map(|i| {
            let c = |hi: u8, lo: u8| 0x2a * ((i >> hi) & 1) + 0x15 * ((i >> lo) & 1);
            [c(2, 5), c(1, 4), c(0, 3)]
        })
        .collect()
}

fn out8(a: &mut CodeAssembler, port: u16, value: u8) {
    a.mov(dx, port as u32).unwrap();
    a.mov(al, value as u32).unwrap();
    a.out(dx, al).unwrap();
}

/// Emits `bytes` inline and leaves DS:SI pointing at them (DS = CS here).
fn data(a: &mut CodeAssembler, bytes: &[u8]) {
    let mut after = a.create_label();
    a.call(after).unwrap();
    a.db(bytes).unwrap();
    a.set_label(&mut after).unwrap();
    a.pop(si).unwrap();
}

fn set_es(a: &mut CodeAssembler, segment: u16) {
    a.mov(ax, segment as u32).unwrap();
    a.mov(es, ax).unwrap();
}

/// Loads a mode's registers in the order SeaVGABIOS does, ending with the
/// palette address source set so the display runs.
fn set_mode(a: &mut CodeAssembler, mode: &ModeRegs) {
    a.mov(dx, 0x3dau32).unwrap();
    a.in_(al, dx).unwrap();
    for (i, &v) in mode.attr.iter().enumerate() {
        out8(a, 0x3c0, i as u8);
        out8(a, 0x3c0, v);
    }
    out16(a, 0x3c4, 0x0300);
    for (i, &v) in mode.seq.iter().enumerate() {
        out16(a, 0x3c4, (v as u16) << 8 | (i as u16 + 1));
    }
    for (i, &v) in mode.gc.iter().enumerate() {
        out16(a, 0x3ce, (v as u16) << 8 | i as u16);
    }
    out8(a, 0x3c2, mode.misc);
    out16(a, 0x3d4, 0x0011);
    for (i, &v) in mode.crtc.iter().enumerate() {
        out16(a, 0x3d4, (v as u16) << 8 | i as u16);
    }
    a.mov(dx, 0x3dau32).unwrap();
    a.in_(al, dx).unwrap();
    out8(a, 0x3c0, 0x20);
}

/// Writes `rgb` (6-bit triples) into the DAC from entry `first`.
fn load_dac(a: &mut CodeAssembler, first: u8, rgb: &[u8]) {
    out8(a, 0x3c8, first);
    data(a, rgb);
    a.mov(dx, 0x3c9u32).unwrap();
    a.mov(cx, rgb.len() as u32).unwrap();
    a.rep().outsb().unwrap();
}

/// Waits for the RTC's seconds to change twice (at least a second), so the
/// display has refreshed since the mode was set and what follows reaches
/// the screen through the incremental (dirty-tracked) path rather than a
/// mode change's full redraw.
fn let_the_display_catch_up(a: &mut CodeAssembler) {
    let read_seconds = |a: &mut CodeAssembler| {
        a.mov(al, 0u32).unwrap();
        a.out(0x70u32, al).unwrap();
        a.in_(al, 0x71u32).unwrap();
    };
    for _ in 0..2 {
        read_seconds(a);
        a.mov(bl, al).unwrap();
        let mut same = a.create_label();
        a.set_label(&mut same).unwrap();
        read_seconds(a);
        a.cmp(al, bl).unwrap();
        a.je(same).unwrap();
    }
}

fn finish(p: &mut Program) {
    p.print("drawn\n");
    p.exit();
}

/// Runs `image` as the firmware until it ends the run; returns the screen.
fn screenshot_of(name: &str, image: Vec<u8>) -> image::RgbImage {
    let scratch = tempfile::tempdir().unwrap();
    let firmware_path = guest::write(scratch.path(), "guest.bin", &image);
    let shot = scratch.path().join("screen.png");
    let domain = Domain::new(name).firmware(&firmware_path);
    let mut vm = Vm::start_with(&domain, &["--screenshot-on-exit", shot.to_str().unwrap()]);
    vm.wait_for("drawn\n", QUICK);
    let status = vm.wait_exit(QUICK);
    assert!(status.success(), "{status}: {}", vm.stderr());
    image::open(&shot)
        .unwrap_or_else(|e| panic!("no screenshot: {e}\n{}", vm.stderr()))
        .to_rgb8()
}

fn rgb(shot: &image::RgbImage, x: u32, y: u32) -> u32 {
    let [r, g, b] = shot.get_pixel(x, y).0;
    (r as u32) << 16 | (g as u32) << 8 | b as u32
}

fn golden_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/vga")
        .join(format!("{name}.png"))
}

/// Compares with the golden image, or rewrites it when asked to.
fn assert_golden(name: &str, shot: &image::RgbImage) {
    let path = golden_path(name);
    if std::env::var("VIREO_REGENERATE_GOLDEN").as_deref() == Ok("1") {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        shot.save(&path).unwrap();
        return;
    }
    let golden = image::open(&path)
        .unwrap_or_else(|e| {
            panic!(
                "golden image {} unreadable ({e}); run with VIREO_REGENERATE_GOLDEN=1",
                path.display()
            )
        })
        .to_rgb8();
    assert_eq!(golden.dimensions(), shot.dimensions(), "{name}: size");
    let differ = golden
        .pixels()
        .zip(shot.pixels())
        .filter(|(a, b)| a != b)
        .count();
    if differ > 0 {
        let actual = std::env::temp_dir().join(format!("vireo-{name}-actual.png"));
        shot.save(&actual).unwrap();
        panic!(
            "{name}: {differ} pixels differ from {}; this run's picture is {}",
            path.display(),
            actual.display()
        );
    }
}

/// 8×16 glyphs for the text test.
const GLYPH_H: [u8; 16] = [
    0x00, 0x00, 0xc6, 0xc6, 0xc6, 0xc6, 0xfe, 0xc6, 0xc6, 0xc6, 0xc6, 0xc6, 0x00, 0x00, 0x00, 0x00,
];
const GLYPH_I: [u8; 16] = [
    0x00, 0x00, 0x3c, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x18, 0x3c, 0x00, 0x00, 0x00, 0x00,
];
/// Full block (0xDB): in the line-graphics range, so its 9th column is lit too.
const GLYPH_BLOCK: [u8; 16] = [0xff; 16];

const BLACK: u32 = 0x000000;
const BLUE: u32 = 0x0000aa;
const LIGHT_GRAY: u32 = 0xaaaaaa;
const YELLOW: u32 = 0xffff55;
const WHITE: u32 = 0xffffff;

#[test]
fn text_mode_with_a_loaded_font_colours_and_the_cursor() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        let a = &mut p.a;
        set_mode(a, &MODE_03);
        load_dac(a, 0, &ega_palette());
        // Font into plane 2, as a VGA BIOS loads it: plane 2 only,
        // sequential addressing, A0000 64 KiB.
        out16(a, 0x3c4, 0x0402);
        out16(a, 0x3c4, 0x0704);
        out16(a, 0x3ce, 0x0204);
        out16(a, 0x3ce, 0x0005);
        out16(a, 0x3ce, 0x0406);
        set_es(a, 0xa000);
        for (character, glyph) in [(b'H', &GLYPH_H), (b'I', &GLYPH_I), (0xdb, &GLYPH_BLOCK)] {
            data(a, glyph);
            a.mov(di, character as u32 * 32).unwrap();
            a.mov(cx, 16u32).unwrap();
            a.rep().movsb().unwrap();
        }
        // Back to text addressing: planes 0 and 1, odd/even, B8000.
        out16(a, 0x3c4, 0x0302);
        out16(a, 0x3c4, 0x0204);
        out16(a, 0x3ce, 0x0004);
        out16(a, 0x3ce, 0x1005);
        out16(a, 0x3ce, 0x0e06);
        // Clear the screen: spaces, light grey on black.
        set_es(a, 0xb800);
        a.xor(di, di).unwrap();
        a.mov(ax, 0x0720u32).unwrap();
        a.mov(cx, 80 * 25u32).unwrap();
        a.rep().stosw().unwrap();
        let_the_display_catch_up(a);
        // Row 2, column 10: "HI" yellow on blue, then a white-on-red block.
        data(a, &[b'H', 0x1e, b'I', 0x1e, 0xdb, 0x4f]);
        a.mov(di, (2 * 80 + 10) * 2u32).unwrap();
        a.mov(cx, 6u32).unwrap();
        a.rep().movsb().unwrap();
        // The cursor to row 5, column 20.
        let at = 5 * 80 + 20u16;
        out16(a, 0x3d4, (at & 0xff00) | 0x0e);
        out16(a, 0x3d4, (at << 8) | 0x0f);
        finish(p);
    });
    let shot = screenshot_of("vga-text", image);
    assert_eq!(shot.dimensions(), (720, 400), "80×25 cells of 9×16 dots");
    let (x, y) = (10 * 9, 2 * 16);
    assert_eq!(rgb(&shot, x, y + 2), YELLOW, "H's left stem");
    assert_eq!(rgb(&shot, x + 2, y + 2), BLUE, "inside the H");
    assert_eq!(rgb(&shot, x + 3, y + 6), YELLOW, "H's crossbar");
    assert_eq!(
        rgb(&shot, x + 8, y + 6),
        BLUE,
        "9th column of a letter is background"
    );
    assert_eq!(rgb(&shot, x, y), BLUE, "glyph's empty top row");
    assert_eq!(rgb(&shot, x + 9 + 3, y + 5), YELLOW, "I's stem");
    assert_eq!(rgb(&shot, x + 9, y + 5), BLUE);
    assert_eq!(rgb(&shot, x + 18, y), WHITE, "block");
    assert_eq!(
        rgb(&shot, x + 18 + 8, y + 15),
        WHITE,
        "block's 9th column (line graphics)"
    );
    assert_eq!(rgb(&shot, x + 27, y), BLACK, "after the text");
    // The cursor: scanlines 13 and 14 of its cell, light grey (the cell's
    // foreground); shown steadily in a still picture.
    let (cursor_x, cursor_y) = (20 * 9, 5 * 16);
    assert_eq!(rgb(&shot, cursor_x, cursor_y + 13), LIGHT_GRAY);
    assert_eq!(rgb(&shot, cursor_x + 8, cursor_y + 14), LIGHT_GRAY);
    assert_eq!(rgb(&shot, cursor_x, cursor_y + 12), BLACK);
    assert_eq!(rgb(&shot, cursor_x + 9, cursor_y + 13), BLACK);
    assert_golden("text-mode", &shot);
}

#[test]
fn mode_13h_draws_256_colours_at_320_by_200() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        let a = &mut p.a;
        set_mode(a, &MODE_13);
        // DAC 1 red, 2 green, 3 blue, 4 an orange.
        load_dac(
            a,
            1,
            &[0x3f, 0, 0, 0, 0x3f, 0, 0, 0, 0x3f, 0x3f, 0x20, 0x08],
        );
        set_es(a, 0xa000);
        let_the_display_catch_up(a);
        // Three 40×20 rectangles and a diagonal.
        for (x, y, colour) in [(10u32, 10u32, 1u32), (60, 10, 2), (110, 10, 3)] {
            a.mov(di, y * 320 + x).unwrap();
            a.mov(bx, 20u32).unwrap();
            let mut row = a.create_label();
            a.set_label(&mut row).unwrap();
            a.push(di).unwrap();
            a.mov(cx, 40u32).unwrap();
            a.mov(al, colour).unwrap();
            a.rep().stosb().unwrap();
            a.pop(di).unwrap();
            a.add(di, 320u32).unwrap();
            a.dec(bx).unwrap();
            a.jnz(row).unwrap();
        }
        a.mov(di, 50 * 320 + 50u32).unwrap();
        a.mov(cx, 100u32).unwrap();
        let mut diagonal = a.create_label();
        a.set_label(&mut diagonal).unwrap();
        a.mov(byte_ptr(di).es(), 4u32).unwrap();
        a.add(di, 321u32).unwrap();
        a.dec(cx).unwrap();
        a.jnz(diagonal).unwrap();
        // The last pixel of the screen.
        a.mov(byte_ptr(199 * 320 + 319u32).es(), 3u32).unwrap();
        finish(p);
    });
    let shot = screenshot_of("vga-mode13", image);
    assert_eq!(shot.dimensions(), (320, 200));
    assert_eq!(rgb(&shot, 10, 10), 0xff0000);
    assert_eq!(rgb(&shot, 49, 29), 0xff0000);
    assert_eq!(rgb(&shot, 50, 29), BLACK);
    assert_eq!(rgb(&shot, 49, 30), BLACK);
    assert_eq!(rgb(&shot, 60, 10), 0x00ff00);
    assert_eq!(rgb(&shot, 149, 29), 0x0000ff);
    assert_eq!(rgb(&shot, 50, 50), 0xff8220);
    assert_eq!(rgb(&shot, 149, 149), 0xff8220);
    assert_eq!(rgb(&shot, 150, 149), BLACK);
    assert_eq!(rgb(&shot, 319, 199), 0x0000ff);
    assert_golden("mode-13h", &shot);
}

#[test]
fn mode_12h_draws_16_planar_colours_at_640_by_480() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        let a = &mut p.a;
        set_mode(a, &MODE_12);
        load_dac(a, 0, &ega_palette());
        set_es(a, 0xa000);
        let_the_display_catch_up(a);
        // Set/reset fills (write mode 0): colour 14 over x 64..192,
        // y 100..140; colour 1 over x 320..640, y 0..8.
        out16(a, 0x3ce, 0x0f01);
        out16(a, 0x3ce, 0xff08);
        for (byte, y, bytes, rows, colour) in
            [(8u32, 100u32, 16u32, 40u32, 14u16), (40, 0, 40, 8, 1)]
        {
            out16(a, 0x3ce, colour << 8);
            a.mov(di, y * 80 + byte).unwrap();
            a.mov(bx, rows).unwrap();
            let mut row = a.create_label();
            a.set_label(&mut row).unwrap();
            a.push(di).unwrap();
            a.mov(cx, bytes).unwrap();
            a.rep().stosb().unwrap();
            a.pop(di).unwrap();
            a.add(di, 80u32).unwrap();
            a.dec(bx).unwrap();
            a.jnz(row).unwrap();
        }
        out16(a, 0x3ce, 0x0001);
        // A vertical line of colour 15 at x = 300 with write mode 2 and the
        // bit mask; each write after a read that loads the latches.
        out16(a, 0x3ce, 0x0205);
        out16(a, 0x3ce, ((0x80u16 >> (300 % 8)) << 8) | 0x08);
        a.mov(di, 200 * 80 + 300 / 8u32).unwrap();
        a.mov(cx, 100u32).unwrap();
        let mut line = a.create_label();
        a.set_label(&mut line).unwrap();
        a.mov(al, byte_ptr(di).es()).unwrap();
        a.mov(byte_ptr(di).es(), 15u32).unwrap();
        a.add(di, 80u32).unwrap();
        a.dec(cx).unwrap();
        a.jnz(line).unwrap();
        finish(p);
    });
    let shot = screenshot_of("vga-mode12", image);
    assert_eq!(shot.dimensions(), (640, 480));
    assert_eq!(rgb(&shot, 64, 100), YELLOW);
    assert_eq!(rgb(&shot, 191, 139), YELLOW);
    assert_eq!(rgb(&shot, 192, 139), BLACK);
    assert_eq!(rgb(&shot, 63, 100), BLACK);
    assert_eq!(rgb(&shot, 320, 0), BLUE);
    assert_eq!(rgb(&shot, 639, 7), BLUE);
    assert_eq!(rgb(&shot, 639, 8), BLACK);
    assert_eq!(rgb(&shot, 300, 200), WHITE);
    assert_eq!(rgb(&shot, 300, 299), WHITE);
    assert_eq!(rgb(&shot, 299, 250), BLACK);
    assert_eq!(rgb(&shot, 301, 250), BLACK);
    assert_eq!(rgb(&shot, 300, 300), BLACK);
    assert_golden("mode-12h", &shot);
}

/// Where the VBE test guest puts BAR0 (16 MiB aligned, in the PCI hole).
const LFB: u32 = 0xe000_0000;

#[test]
fn vbe_1024x768x32_through_the_linear_framebuffer() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        let a = &mut p.a;
        vbe_linear_mode(a, LFB, 1024, 768);
        unreal_mode_fs(a);
        let_the_display_catch_up(a);
        // row 400, blue 10×10 in the bottom-right corner.
        for (x, y, w, h, colour) in [
            (100u32, 100u32, 64u32, 64u32, 0x00ff_0000u32),
            (0, 400, 1024, 1, 0x0000_ff00),
            (1014, 758, 10, 10, 0x0000_00ff),
        ] {
            fill_rect_32bpp(a, LFB, 1024, x, y, w, h, colour);
        }
        let pixel = |x: u32, y: u32| LFB + (y * 1024 + x) * 4;
        a.mov(edi, pixel(512, 384)).unwrap();
        a.mov(dword_ptr(edi).fs(), 0x00ff_ffffu32).unwrap();
        // Restore DS for the library's print (the GDT work did not touch it).
        finish(p);
    });
    let shot = screenshot_of("vga-vbe", image);
    assert_eq!(shot.dimensions(), (1024, 768));
    assert_eq!(rgb(&shot, 100, 100), 0xff0000);
    assert_eq!(rgb(&shot, 163, 163), 0xff0000);
    assert_eq!(rgb(&shot, 164, 163), BLACK);
    assert_eq!(rgb(&shot, 99, 100), BLACK);
    assert_eq!(rgb(&shot, 0, 400), 0x00ff00);
    assert_eq!(rgb(&shot, 1023, 400), 0x00ff00);
    assert_eq!(rgb(&shot, 1023, 401), BLACK);
    assert_eq!(rgb(&shot, 1014, 758), 0x0000ff);
    assert_eq!(rgb(&shot, 1023, 767), 0x0000ff);
    assert_eq!(rgb(&shot, 512, 384), WHITE);
    assert_eq!(rgb(&shot, 513, 384), BLACK);
    assert_golden("vbe-1024x768x32", &shot);
}

/// SeaBIOS runs SeaVGABIOS from the card's ROM, prints its banner through
/// it, and boots a sector that reads the first two text rows back from
/// B800:0000 and prints them on COM1; the screenshot must show those very
/// characters.
#[test]
fn seabios_banner_appears_in_text_mode() {
    if !kvm_available() {
        return;
    }
    let sector = boot_sector(|p| {
        let putc = p.putc;
        let a = &mut p.a;
        set_es(a, 0xb800);
        a.xor(di, di).unwrap();
        a.mov(cx, 160u32).unwrap();
        let mut next = a.create_label();
        a.set_label(&mut next).unwrap();
        a.mov(al, byte_ptr(di).es()).unwrap();
        a.call(putc).unwrap();
        a.add(di, 2u32).unwrap();
        a.dec(cx).unwrap();
        a.jnz(next).unwrap();
        p.print("\nscreen read\n");
        p.exit();
    });
    let scratch = tempfile::tempdir().unwrap();
    let disk = guest::raw_disk(scratch.path(), "disk.img", &sector, 1 << 20);
    let shot_path = scratch.path().join("screen.png");
    let domain = Domain::new("vga-seabios").disk("disk", &disk, "hda", "ide");
    let mut vm = Vm::start_with(
        &domain,
        &["--screenshot-on-exit", shot_path.to_str().unwrap()],
    );
    let serial = vm.wait_for("screen read\n", BOOT);
    let status = vm.wait_exit(BOOT);
    assert!(status.success(), "{status}: {}", vm.stderr());
    let text = serial.split("\nscreen read\n").next().unwrap();
    let text = &text[text.len() - 160..];
    let rows = [&text[..80], &text[80..]];
    assert!(
        rows[0].starts_with("SeaBIOS (version "),
        "row 0: {:?}",
        rows[0]
    );

    let shot = image::open(&shot_path).unwrap().to_rgb8();
    assert_eq!(shot.dimensions(), (720, 400), "mode 3");
    // Each character cell of the banner row: lit dots exactly where the
    // character is not a space, in light grey on black, and the same
    // character always drawn the same.
    let cell = |column: u32| -> Vec<u32> {
        (0..16)
            .flat_map(|y| (0..9).map(move |x| (column * 9 + x, y)))
            .map(|(x, y)| rgb(&shot, x, y))
            .collect()
    };
    let mut seen: std::collections::HashMap<u8, Vec<u32>> = Default::default();
    for (column, character) in rows[0].bytes().enumerate() {
        let dots = cell(column as u32);
        assert!(
            dots.iter().all(|&c| c == BLACK || c == LIGHT_GRAY),
            "column {column}: colours"
        );
        let lit = dots.contains(&LIGHT_GRAY);
        assert_eq!(
            lit,
            character != b' ',
            "column {column} ({:?})",
            character as char
        );
        if let Some(earlier) = seen.get(&character) {
            assert_eq!(earlier, &dots, "{:?} drawn two ways", character as char);
        }
        seen.insert(character, dots);
    }
    assert_ne!(
        seen[&b'S'], seen[&b'B'],
        "different characters look different"
    );
}
