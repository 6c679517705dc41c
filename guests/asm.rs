#![allow(dead_code)] // each includer uses a different part

//! Tiny real-mode guest programs, assembled with iced-x86's `code_asm`.
//!
//! Shared by `build.rs` (the demo VM's boot sector) and the tests (test
//! guests), which include this file with `#[path]`.
//!
//! A [`Program`] is 16-bit code plus a small library (COM1 output, hex
//! printing, exit through the reset register). It is packaged either as a
//! 64 KiB firmware image that starts at the reset vector (KVM-tier tests,
//! no SeaBIOS involved) or as a 512-byte boot sector that SeaBIOS loads
//! (firmware end-to-end tests).

use iced_x86::code_asm::*;

pub const COM1: u16 = 0x3f8;
/// Line status register; bit 5 = transmitter holding register empty.
pub const COM1_LSR: u16 = 0x3fd;

pub struct Program {
    pub a: CodeAssembler,
    pub putc: CodeLabel,
    pub puts: CodeLabel,
    /// Prints the NUL-terminated string at DS:SI.
    pub puts_at: CodeLabel,
    pub puthex8: CodeLabel,
    pub puthex16: CodeLabel,
}

impl Program {
    fn new() -> Self {
        let mut a = CodeAssembler::new(16).unwrap();
        let putc = a.create_label();
        let puts = a.create_label();
        let puts_at = a.create_label();
        let puthex8 = a.create_label();
        let puthex16 = a.create_label();
        Self {
            a,
            putc,
            puts,
            puts_at,
            puthex8,
            puthex16,
        }
    }

    /// Emits code that prints `text` on COM1 (clobbers ax, si). The text
    /// sits inline after a call; the routine prints it and returns past it
    /// (code_asm cannot take a label's address in 16-bit code).
    pub fn print(&mut self, text: &str) {
        let mut bytes = text.as_bytes().to_vec();
        bytes.push(0);
        self.a.call(self.puts).unwrap();
        self.a.db(&bytes).unwrap();
    }

    /// Emits code that resets the machine through port 0xCF9; with
    /// `<on_reboot>destroy</on_reboot>` that ends `vireo run`.
    pub fn exit(&mut self) {
        let a = &mut self.a;
        a.mov(dx, 0xcf9u32).unwrap();
        a.mov(al, 0x06u32).unwrap();
        a.out(dx, al).unwrap();
        let mut spin = a.create_label();
        a.set_label(&mut spin).unwrap();
        a.hlt().unwrap();
        a.jmp(spin).unwrap();
    }

    /// Emits code that triple-faults the CPU: empty descriptor and
    /// interrupt tables (limit 0, read from zeroed RAM at 0:0500),
    /// protected mode so the limits are enforced, then a segment load
    /// beyond the GDT: its #GP cannot be delivered, nor the double fault,
    /// and the CPU shuts down.
    pub fn triple_fault(&mut self) {
        let a = &mut self.a;
        a.xor(ax, ax).unwrap();
        a.mov(ds, ax).unwrap();
        a.lidt(ptr(0x500u32)).unwrap();
        a.lgdt(ptr(0x500u32)).unwrap();
        a.mov(eax, cr0).unwrap();
        a.or(eax, 1u32).unwrap();
        a.mov(cr0, eax).unwrap();
        a.mov(ax, 0x08u32).unwrap();
        a.mov(ds, ax).unwrap();
    }

    /// Appends the library routines and the strings.
    fn finish(&mut self, origin: u64) -> Vec<u8> {
        let a = &mut self.a;
        // putc: al -> COM1, waiting for THRE. Preserves everything but flags.
        a.set_label(&mut self.putc).unwrap();
        a.push(dx).unwrap();
        a.push(ax).unwrap();
        a.mov(dx, COM1_LSR as u32).unwrap();
        let mut wait = a.create_label();
        a.set_label(&mut wait).unwrap();
        a.in_(al, dx).unwrap();
        a.test(al, 0x20u32).unwrap();
        a.jz(wait).unwrap();
        a.pop(ax).unwrap();
        a.mov(dx, COM1 as u32).unwrap();
        a.out(dx, al).unwrap();
        a.pop(dx).unwrap();
        a.ret().unwrap();
        // puts: prints the NUL-terminated text at the return address (DS
        // equals CS in both packagings) and returns past it.
        a.set_label(&mut self.puts).unwrap();
        a.pop(si).unwrap();
        let mut next = a.create_label();
        let mut done = a.create_label();
        a.set_label(&mut next).unwrap();
        a.lodsb().unwrap();
        a.test(al, al).unwrap();
        a.jz(done).unwrap();
        a.call(self.putc).unwrap();
        a.jmp(next).unwrap();
        a.set_label(&mut done).unwrap();
        a.push(si).unwrap();
        a.ret().unwrap();
        // puts_at: ds:si -> COM1 until NUL.
        a.set_label(&mut self.puts_at).unwrap();
        let mut at_done = a.create_label();
        a.lodsb().unwrap();
        a.test(al, al).unwrap();
        a.jz(at_done).unwrap();
        a.call(self.putc).unwrap();
        a.jmp(self.puts_at).unwrap();
        a.set_label(&mut at_done).unwrap();
        a.ret().unwrap();
        // puthex16: ax as four hex digits.
        a.set_label(&mut self.puthex16).unwrap();
        a.push(ax).unwrap();
        a.mov(al, ah).unwrap();
        a.call(self.puthex8).unwrap();
        a.pop(ax).unwrap();
        // fall through to puthex8 for the low byte
        a.set_label(&mut self.puthex8).unwrap();
        a.push(ax).unwrap();
        a.push(ax).unwrap();
        a.shr(al, 4u32).unwrap();
        let nibble = a.create_label();
        a.call(nibble).unwrap();
        a.pop(ax).unwrap();
        a.and(al, 0x0fu32).unwrap();
        a.call(nibble).unwrap();
        a.pop(ax).unwrap();
        a.ret().unwrap();
        let mut nibble = nibble;
        a.set_label(&mut nibble).unwrap();
        a.cmp(al, 10u32).unwrap();
        let mut digit = a.create_label();
        a.jb(digit).unwrap();
        a.add(al, (b'a' - b'0' - 10) as u32).unwrap();
        a.set_label(&mut digit).unwrap();
        a.add(al, b'0' as u32).unwrap();
        a.call(self.putc).unwrap();
        a.ret().unwrap();
        a.assemble(origin).expect("assemble test guest")
    }
}

/// Size of a firmware image: the BIOS window 0xF0000..0x100000.
pub const FIRMWARE_SIZE: usize = 0x1_0000;

/// Fills a rectangle of a 32-bpp linear framebuffer at `lfb` that is
/// `width` pixels wide, through FS (after [`unreal_mode_fs`]).
#[allow(clippy::too_many_arguments)]
pub fn fill_rect_32bpp(
    a: &mut CodeAssembler,
    lfb: u32,
    width: u32,
    x: u32,
    y: u32,
    w: u32,
    h: u32,
    colour: u32,
) {
    a.mov(eax, colour).unwrap();
    a.mov(edi, lfb + (y * width + x) * 4).unwrap();
    a.mov(bx, h).unwrap();
    let mut row = a.create_label();
    let mut dot = a.create_label();
    a.set_label(&mut row).unwrap();
    a.mov(esi, edi).unwrap();
    a.mov(cx, w).unwrap();
    a.set_label(&mut dot).unwrap();
    a.mov(dword_ptr(edi).fs(), eax).unwrap();
    a.add(edi, 4u32).unwrap();
    a.dec(cx).unwrap();
    a.jnz(dot).unwrap();
    a.mov(edi, esi).unwrap();
    a.add(edi, width * 4).unwrap();
    a.dec(bx).unwrap();
    a.jnz(row).unwrap();
}

impl Program {
    /// Polls the i8042 forever, printing each make code (break codes are
    /// skipped) in hex and a space on COM1.
    pub fn print_make_codes_forever(&mut self) {
        let puthex8 = self.puthex8;
        let putc = self.putc;
        let a = &mut self.a;
        let mut poll = a.create_label();
        a.set_label(&mut poll).unwrap();
        a.in_(al, 0x64u32).unwrap();
        a.test(al, 0x01u32).unwrap();
        a.jz(poll).unwrap();
        a.in_(al, 0x60u32).unwrap();
        a.test(al, 0x80u32).unwrap();
        a.jnz(poll).unwrap();
        a.call(puthex8).unwrap();
        a.mov(al, b' ' as u32).unwrap();
        a.call(putc).unwrap();
        a.jmp(poll).unwrap();
    }
}

/// `out dx, ax` to `port`.
pub fn out16(a: &mut CodeAssembler, port: u16, value: u16) {
    a.mov(dx, port as u32).unwrap();
    a.mov(ax, value as u32).unwrap();
    a.out(dx, ax).unwrap();
}

/// `out dx, eax` to `port`.
pub fn out32(a: &mut CodeAssembler, port: u16, value: u32) {
    a.mov(dx, port as u32).unwrap();
    a.mov(eax, value).unwrap();
    a.out(dx, eax).unwrap();
}

/// Without a BIOS: places the std VGA's BAR0 (00:02.0) at `lfb`, enables
/// memory decoding, and sets a Bochs VBE linear mode of `width`×`height`
/// at 32 bits per pixel.
pub fn vbe_linear_mode(a: &mut CodeAssembler, lfb: u32, width: u16, height: u16) {
    out32(a, 0xcf8, 0x8000_1010);
    out32(a, 0xcfc, lfb);
    out32(a, 0xcf8, 0x8000_1004);
    out16(a, 0xcfc, 0x0002);
    for (index, value) in [(3u16, 32u16), (1, width), (2, height), (4, 0x41)] {
        out16(a, 0x1ce, index);
        out16(a, 0x1cf, value);
    }
}

/// Unreal mode: FS becomes a flat 4 GiB data segment, so real-mode code
/// reaches a framebuffer above 1 MiB. GDT at 0:0600, its pointer at 0:0610.
pub fn unreal_mode_fs(a: &mut CodeAssembler) {
    a.xor(ax, ax).unwrap();
    a.mov(es, ax).unwrap();
    a.mov(dword_ptr(0x600u32).es(), 0u32).unwrap();
    a.mov(dword_ptr(0x604u32).es(), 0u32).unwrap();
    a.mov(dword_ptr(0x608u32).es(), 0x0000_ffffu32).unwrap();
    a.mov(dword_ptr(0x60cu32).es(), 0x00cf_9200u32).unwrap();
    a.mov(word_ptr(0x610u32).es(), 15u32).unwrap();
    a.mov(dword_ptr(0x612u32).es(), 0x600u32).unwrap();
    a.lgdt(ptr(0x610u32).es()).unwrap();
    a.mov(eax, cr0).unwrap();
    a.or(eax, 1u32).unwrap();
    a.mov(cr0, eax).unwrap();
    a.mov(bx, 8u32).unwrap();
    a.mov(fs, bx).unwrap();
    a.and(eax, !1u32).unwrap();
    a.mov(cr0, eax).unwrap();
}

/// A 64 KiB firmware image: the CPU's reset vector jumps to `body`, which
/// runs in real mode with CS = DS = 0xF000 and a stack at 0:7000.
pub fn firmware(body: impl FnOnce(&mut Program)) -> Vec<u8> {
    let mut p = Program::new();
    {
        let a = &mut p.a;
        a.cli().unwrap();
        a.xor(ax, ax).unwrap();
        a.mov(ss, ax).unwrap();
        a.mov(sp, 0x7000u32).unwrap();
        a.mov(ax, cs).unwrap();
        a.mov(ds, ax).unwrap();
        a.cld().unwrap();
    }
    body(&mut p);
    let code = p.finish(0);
    assert!(code.len() < 0xfff0, "test firmware too large");
    let mut image = vec![0xf4u8; FIRMWARE_SIZE]; // hlt everywhere else
    image[..code.len()].copy_from_slice(&code);
    // Reset vector (F000:FFF0): jmp far F000:0000.
    image[0xfff0..0xfff5].copy_from_slice(&[0xea, 0x00, 0x00, 0x00, 0xf0]);
    image
}

/// Where [`firmware_with_handler`] puts the interrupt handler: F000:8000.
pub const HANDLER_OFFSET: u16 = 0x8000;

/// Like [`firmware`], with `handler` assembled at F000:[`HANDLER_OFFSET`]
/// (a separate program with its own copy of the library), so the body can
/// point an interrupt vector at it. The handler must end with `iret`.
pub fn firmware_with_handler(
    body: impl FnOnce(&mut Program),
    handler: impl FnOnce(&mut Program),
) -> Vec<u8> {
    let mut image = firmware(body);
    let mut p = Program::new();
    handler(&mut p);
    let code = p.finish(HANDLER_OFFSET as u64);
    let start = HANDLER_OFFSET as usize;
    assert!(start + code.len() < 0xfff0, "handler too large");
    assert!(
        image[start..start + code.len()].iter().all(|&b| b == 0xf4),
        "body overlaps the handler"
    );
    image[start..start + code.len()].copy_from_slice(&code);
    image
}

/// A boot sector (512 bytes ending in 55 AA) loaded by firmware at 0:7C00.
pub fn boot_sector(body: impl FnOnce(&mut Program)) -> Vec<u8> {
    let mut p = Program::new();
    {
        let a = &mut p.a;
        a.cli().unwrap();
        a.xor(ax, ax).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(ss, ax).unwrap();
        a.mov(sp, 0x7c00u32).unwrap();
        a.cld().unwrap();
    }
    body(&mut p);
    let code = p.finish(0x7c00);
    assert!(
        code.len() <= 510,
        "boot sector code is {} bytes",
        code.len()
    );
    let mut sector = vec![0u8; 512];
    sector[..code.len()].copy_from_slice(&code);
    sector[510] = 0x55;
    sector[511] = 0xaa;
    sector
}

/// Where [`boot_image`] loads and runs its program: right after the boot
/// sector.
pub const STAGE2_ORIGIN: u16 = 0x7e00;

/// A disk image for programs larger than a boot sector: a boot sector that
/// reads the sectors after it from the boot disk (int 13h AH=02h, the drive
/// in DL as the BIOS passes it) to 0:[`STAGE2_ORIGIN`] and jumps there,
/// followed by `body` assembled for that address. The body starts with
/// DS = ES = SS = 0, the stack below 0:7C00, interrupts off. If the BIOS
/// cannot read the disk, the loader says so on COM1 and halts.
pub fn boot_image(body: impl FnOnce(&mut Program)) -> Vec<u8> {
    let mut p = Program::new();
    body(&mut p);
    let stage2 = p.finish(STAGE2_ORIGIN as u64);
    // One CHS read stays within the first track (SeaBIOS gives a small
    // disk 63 sectors per track), so at most 62 sectors follow the loader.
    let sectors = stage2.len().div_ceil(512);
    assert!(sectors <= 62, "boot image body is {} bytes", stage2.len());

    let mut a = CodeAssembler::new(16).unwrap();
    a.cli().unwrap();
    a.xor(ax, ax).unwrap();
    a.mov(ds, ax).unwrap();
    a.mov(es, ax).unwrap();
    a.mov(ss, ax).unwrap();
    a.mov(sp, 0x7c00u32).unwrap();
    a.cld().unwrap();
    // Read `sectors` sectors from cylinder 0, head 0, sector 2 to ES:BX.
    a.mov(bx, STAGE2_ORIGIN as u32).unwrap();
    a.mov(ax, 0x0200u32 | sectors as u32).unwrap();
    a.mov(cx, 0x0002u32).unwrap();
    a.xor(dh, dh).unwrap();
    a.int(0x13).unwrap();
    let mut failed = a.create_label();
    a.jc(failed).unwrap();
    a.jmp(STAGE2_ORIGIN as u64).unwrap();
    // The read failed: report it on COM1 (already set up by the BIOS).
    a.set_label(&mut failed).unwrap();
    a.mov(dx, COM1 as u32).unwrap();
    for &byte in b"boot: disk read failed\r\n" {
        a.mov(al, byte as u32).unwrap();
        a.out(dx, al).unwrap();
    }
    let mut halt = a.create_label();
    a.set_label(&mut halt).unwrap();
    a.hlt().unwrap();
    a.jmp(halt).unwrap();
    let loader = a.assemble(0x7c00).expect("assemble boot loader");
    assert!(loader.len() <= 510, "boot loader is {} bytes", loader.len());

    let mut image = vec![0u8; 512 + sectors * 512];
    image[..loader.len()].copy_from_slice(&loader);
    image[510] = 0x55;
    image[511] = 0xaa;
    image[512..512 + stage2.len()].copy_from_slice(&stage2);
    image
}
