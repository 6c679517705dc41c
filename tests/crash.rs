//! Robustness: `kill -9` of a VM process in the middle of guest writes
//! leaves a qcow2 image that `qemu-img check` accepts (leaked clusters at
//! most, as after a QEMU crash) and a definition that is intact.

mod common;

use std::process::Command;
use std::time::Duration;

use common::asm::firmware;
use common::{guest, kvm_available, require_program, Domain, Vm};
use iced_x86::code_asm::*;

/// A guest that writes sectors 0..4096 of the primary IDE disk over and
/// over with PIO, printing a dot every 64 sectors.
fn writing_guest() -> Vec<u8> {
    firmware(|p| {
        let putc = p.putc;
        let a = &mut p.a;
        // A sector's worth of data at 0:1000 (whatever RAM holds is fine,
        // but make it non-zero so clusters really get allocated).
        a.xor(ax, ax).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(di, 0x1000u32).unwrap();
        a.mov(cx, 256u32).unwrap();
        a.mov(ax, 0xa55au32).unwrap();
        a.rep().stosw().unwrap();
        a.xor(ebx, ebx).unwrap(); // LBA
        let mut next = a.create_label();
        a.set_label(&mut next).unwrap();
        // LBA28 WRITE SECTORS, one sector at LBA ebx.
        a.mov(dx, 0x1f6u32).unwrap();
        a.mov(eax, ebx).unwrap();
        a.shr(eax, 24u32).unwrap();
        a.or(al, 0xe0u32).unwrap();
        a.out(dx, al).unwrap();
        a.mov(dx, 0x1f2u32).unwrap();
        a.mov(al, 1u32).unwrap();
        a.out(dx, al).unwrap();
        for (port, shift) in [(0x1f3u32, 0u32), (0x1f4, 8), (0x1f5, 16)] {
            a.mov(eax, ebx).unwrap();
            if shift > 0 {
                a.shr(eax, shift).unwrap();
            }
            a.mov(dx, port).unwrap();
            a.out(dx, al).unwrap();
        }
        a.mov(dx, 0x1f7u32).unwrap();
        a.mov(al, 0x30u32).unwrap();
        a.out(dx, al).unwrap();
        let mut drq = a.create_label();
        a.set_label(&mut drq).unwrap();
        a.in_(al, dx).unwrap();
        a.test(al, 0x08u32).unwrap();
        a.jz(drq).unwrap();
        a.push(ds).unwrap();
        a.xor(ax, ax).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(si, 0x1000u32).unwrap();
        a.mov(cx, 256u32).unwrap();
        a.mov(dx, 0x1f0u32).unwrap();
        a.rep().outsw().unwrap();
        a.pop(ds).unwrap();
        a.inc(ebx).unwrap();
        a.test(bl, 0x3fu32).unwrap();
        let mut no_dot = a.create_label();
        a.jnz(no_dot).unwrap();
        a.mov(al, b'.' as u32).unwrap();
        a.call(putc).unwrap();
        a.set_label(&mut no_dot).unwrap();
        a.and(ebx, 0xfffu32).unwrap();
        a.jmp(next).unwrap();
    })
}

#[test]
fn kill_9_during_guest_writes_leaves_a_qcow2_that_checks_clean() {
    if !kvm_available() {
        return;
    }
    require_program("qemu-img");
    let dir = tempfile::tempdir().unwrap();
    let disk = dir.path().join("disk.qcow2");
    let out = Command::new("qemu-img")
        .args(["create", "-q", "-f", "qcow2", "-o", "cluster_size=4096"])
        .arg(&disk)
        .arg("64M")
        .output()
        .unwrap();
    assert!(out.status.success());
    let bios = guest::write(dir.path(), "writer.bin", &writing_guest());
    let mut domain = Domain::new("writer").firmware(&bios);
    domain.disks.push(format!(
        "<disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{}'/><target dev='hda' bus='ide'/></disk>",
        disk.display()
    ));
    let mut vm = Vm::start(&domain);
    vm.wait_for("......", Duration::from_secs(60));
    // SAFETY: killing the VM process this test started.
    unsafe { libc::kill(vm.pid() as i32, libc::SIGKILL) };
    let _ = vm.wait_exit(Duration::from_secs(10));
    let check = Command::new("qemu-img")
        .args(["check", "-f", "qcow2"])
        .arg(&disk)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&check.stdout);
    // qemu-img check: 0 = clean, 3 = leaked clusters only; 2 = corruption.
    assert!(
        matches!(check.status.code(), Some(0) | Some(3)),
        "qemu-img check after kill -9: {:?}\n{report}{}",
        check.status.code(),
        String::from_utf8_lossy(&check.stderr)
    );
    assert!(!report.contains("ERROR"), "{report}");
    // And what the guest wrote before the kill is there: sector 0 holds
    // its 0xA55A words (written long before the kill).
    for (offset, byte) in [(0, "0x5a"), (1, "0xa5"), (511, "0xa5")] {
        let read = Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", &format!("read -P {byte} {offset} 1")])
            .arg(&disk)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&read.stdout);
        assert!(
            !text.contains("Pattern verification failed") && read.status.success(),
            "{text}"
        );
    }
}
