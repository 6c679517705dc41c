//! The demo VM that ships with Vireo: a boot sector SeaBIOS loads from a
//! small raw disk. It greets on the serial console and echoes what is typed
//! there, in capitals, so a newcomer sees a live VM within seconds even on a
//! machine that emulates the guest instead of running it natively.

use crate::asm::{boot_sector, COM1, COM1_LSR};
use iced_x86::code_asm::*;

pub const GREETING: &str = "Vireo demo VM: type something, it comes back in capitals.\r\n";

pub fn demo_boot_sector() -> Vec<u8> {
    boot_sector(|p| {
        p.print("\r\n");
        p.print(GREETING);
        let putc = p.putc;
        let a = &mut p.a;
        let mut wait = a.create_label();
        let mut not_lower = a.create_label();
        let mut not_return = a.create_label();
        a.set_label(&mut wait).unwrap();
        // Poll the line status register until a byte arrives (bit 0, DR).
        a.mov(dx, COM1_LSR as u32).unwrap();
        a.in_(al, dx).unwrap();
        a.test(al, 0x01u32).unwrap();
        a.jz(wait).unwrap();
        a.mov(dx, COM1 as u32).unwrap();
        a.in_(al, dx).unwrap();
        // a..z -> A..Z
        a.cmp(al, b'a' as u32).unwrap();
        a.jb(not_lower).unwrap();
        a.cmp(al, b'z' as u32).unwrap();
        a.ja(not_lower).unwrap();
        a.sub(al, 0x20u32).unwrap();
        a.set_label(&mut not_lower).unwrap();
        a.call(putc).unwrap();
        // A carriage return also moves to the next line.
        a.cmp(al, b'\r' as u32).unwrap();
        a.jne(not_return).unwrap();
        a.mov(al, b'\n' as u32).unwrap();
        a.call(putc).unwrap();
        a.set_label(&mut not_return).unwrap();
        a.jmp(wait).unwrap();
    })
}
