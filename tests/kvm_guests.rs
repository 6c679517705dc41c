//! KVM tier: tiny guests written here, run as the machine's firmware (no
//! SeaBIOS), observed through their serial output and exit.

mod common;

use std::time::Duration;

use common::asm::{firmware, firmware_with_handler, HANDLER_OFFSET};
use common::{guest, kvm_available, Domain, Vm};
use iced_x86::code_asm::*;

const QUICK: Duration = Duration::from_secs(30);

fn run_firmware(name: &str, image: Vec<u8>, configure: impl FnOnce(Domain) -> Domain) -> Vm {
    let scratch = tempfile::tempdir().unwrap();
    let path = guest::write(scratch.path(), "guest.bin", &image);
    let domain = configure(Domain::new(name).firmware(&path));
    let vm = Vm::start(&domain);
    // The VM copied nothing from the scratch dir after start; keep it until
    // the image was read by waiting a moment is unnecessary: the firmware is
    // loaded before the first vCPU runs, but keep the file alive anyway.
    std::mem::forget(scratch);
    vm
}

#[test]
fn serial_output_and_exit_through_reset() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        p.print("hello from a tiny guest\n");
        p.exit();
    });
    let mut vm = run_firmware("hello", image, |d| d);
    vm.wait_for("hello from a tiny guest\n", QUICK);
    let status = vm.wait_exit(QUICK);
    assert!(
        status.success(),
        "on_reboot=destroy ends the run cleanly: {status}\n{}",
        vm.stderr()
    );
    assert_eq!(vm.serial(), "hello from a tiny guest\n");
}

#[test]
fn a_triple_fault_is_reported_as_a_crash() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        p.print("about to crash\n");
        p.triple_fault();
    });
    let mut vm = run_firmware("crash", image, |d| d);
    vm.wait_for("about to crash\n", QUICK);
    let status = vm.wait_exit(QUICK);
    assert!(!status.success());
    let log = vm.stderr();
    assert!(
        log.contains("the guest crashed: vCPU 0 triple-faulted"),
        "{log}"
    );
}

#[test]
fn restart_on_crash_boots_the_firmware_again() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        p.print("boot\n");
        p.triple_fault();
    });
    let vm = run_firmware("crash-loop", image, |mut d| {
        d.on_crash = "restart";
        d
    });
    // Each incarnation prints once: three prints prove two restarts.
    let start = std::time::Instant::now();
    while vm.serial().matches("boot\n").count() < 3 {
        assert!(
            start.elapsed() < QUICK,
            "restarts stalled: {:?}",
            vm.serial()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kvm_internal_errors_stop_the_vm_with_the_facts() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        p.print("jumping into the VGA hole\n");
        // 0xA0000 is MMIO with nothing behind it: KVM cannot fetch
        // instructions from there and gives up with an internal error.
        p.a.db(&[0xea, 0x00, 0x00, 0x00, 0xa0]).unwrap(); // jmp far A000:0000
    });
    let mut vm = run_firmware("internal-error", image, |d| d);
    vm.wait_for("jumping into the VGA hole\n", QUICK);
    let status = vm.wait_exit(QUICK);
    assert!(!status.success());
    let log = vm.stderr();
    assert!(log.contains("KVM could not run it"), "{log}");
    assert!(log.contains("RIP"), "{log}");
    assert!(log.contains("exit reason"), "{log}");
}

/// Programs both 8259 PICs as a BIOS does: vectors 8..15 and 0x70..0x77,
/// every line masked but the ones in `unmasked_master`.
fn init_pics(a: &mut CodeAssembler, unmasked_master: u8) {
    for (port, value) in [
        (0x20u32, 0x11u32), // ICW1: edge, cascade, ICW4 follows
        (0xa0, 0x11),
        (0x21, 0x08), // ICW2: master vectors 8..15
        (0xa1, 0x70), // slave vectors 0x70..0x77
        (0x21, 0x04), // ICW3: slave on IRQ2
        (0xa1, 0x02),
        (0x21, 0x01), // ICW4: 8086 mode
        (0xa1, 0x01),
        (0x21, (!unmasked_master) as u32 & 0xff),
        (0xa1, 0xff),
    ] {
        a.mov(al, value).unwrap();
        a.out(port, al).unwrap();
    }
}

#[test]
fn serial_input_arrives_by_interrupt() {
    if !kvm_available() {
        return;
    }
    let image = firmware_with_handler(
        |p| {
            let a = &mut p.a;
            // IVT entry for IRQ 4 (vector 0x0C) -> F000:HANDLER_OFFSET.
            a.xor(ax, ax).unwrap();
            a.mov(es, ax).unwrap();
            a.mov(word_ptr(0x0c * 4).es(), HANDLER_OFFSET as u32)
                .unwrap();
            a.mov(word_ptr(0x0c * 4 + 2).es(), 0xf000u32).unwrap();
            init_pics(a, 1 << 4);
            a.mov(dx, 0x3f9u32).unwrap(); // IER: received data available
            a.mov(al, 0x01u32).unwrap();
            a.out(dx, al).unwrap();
            a.mov(dx, 0x3fcu32).unwrap(); // MCR: DTR, RTS, OUT2 (gates the IRQ)
            a.mov(al, 0x0bu32).unwrap();
            a.out(dx, al).unwrap();
            p.print("ready\n");
            let a = &mut p.a;
            a.sti().unwrap();
            let mut idle = a.create_label();
            a.set_label(&mut idle).unwrap();
            a.hlt().unwrap();
            a.jmp(idle).unwrap();
        },
        |p| {
            // Echo each received byte in capitals; 'q' ends the run.
            let putc = p.putc;
            let a = &mut p.a;
            let mut drain = a.create_label();
            let mut done = a.create_label();
            let mut not_lower = a.create_label();
            let mut not_quit = a.create_label();
            a.push(ax).unwrap();
            a.push(dx).unwrap();
            a.set_label(&mut drain).unwrap();
            a.mov(dx, 0x3fdu32).unwrap();
            a.in_(al, dx).unwrap();
            a.test(al, 0x01u32).unwrap();
            a.jz(done).unwrap();
            a.mov(dx, 0x3f8u32).unwrap();
            a.in_(al, dx).unwrap();
            a.cmp(al, b'q' as u32).unwrap();
            a.jne(not_quit).unwrap();
            a.mov(dx, 0xcf9u32).unwrap();
            a.mov(al, 0x06u32).unwrap();
            a.out(dx, al).unwrap();
            a.set_label(&mut not_quit).unwrap();
            a.cmp(al, b'a' as u32).unwrap();
            a.jb(not_lower).unwrap();
            a.sub(al, 0x20u32).unwrap();
            a.set_label(&mut not_lower).unwrap();
            a.call(putc).unwrap();
            a.jmp(drain).unwrap();
            a.set_label(&mut done).unwrap();
            a.mov(al, 0x20u32).unwrap(); // EOI
            a.out(0x20u32, al).unwrap();
            a.pop(dx).unwrap();
            a.pop(ax).unwrap();
            a.iret().unwrap();
        },
    );
    let mut vm = run_firmware("serial-irq", image, |d| d);
    vm.wait_for("ready\n", QUICK);
    vm.type_serial(b"abc");
    vm.wait_for("ready\nABC", QUICK);
    vm.type_serial(b"xyz");
    vm.wait_for("ready\nABCXYZ", QUICK);
    vm.type_serial(b"q");
    assert!(vm.wait_exit(QUICK).success());
}

#[test]
fn cmos_holds_the_memory_size_and_a_running_clock() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        let puthex8 = p.puthex8;
        // Extended memory in KiB (0x30/0x31), then RAM above 16 MiB in
        // 64 KiB units (0x34/0x35), high byte first.
        for index in [0x31u32, 0x30, 0x35, 0x34] {
            let a = &mut p.a;
            a.mov(al, index).unwrap();
            a.out(0x70u32, al).unwrap();
            a.in_(al, 0x71u32).unwrap();
            a.call(puthex8).unwrap();
        }
        p.print("\n");
        // The seconds register changes within a couple of seconds.
        let a = &mut p.a;
        a.mov(al, 0u32).unwrap();
        a.out(0x70u32, al).unwrap();
        a.in_(al, 0x71u32).unwrap();
        a.mov(bl, al).unwrap();
        let mut poll = a.create_label();
        a.set_label(&mut poll).unwrap();
        a.mov(al, 0u32).unwrap();
        a.out(0x70u32, al).unwrap();
        a.in_(al, 0x71u32).unwrap();
        a.cmp(al, bl).unwrap();
        a.je(poll).unwrap();
        p.print("tick\n");
        p.exit();
    });
    let mut vm = run_firmware("cmos", image, |d| d);
    // 64 MiB: 63 MiB extended = 0xFC00 KiB; 48 MiB above 16 MiB = 0x0300 units.
    vm.wait_for("fc000300\ntick\n", QUICK);
    assert!(vm.wait_exit(QUICK).success());
}

/// A guest that scans bus 0 through 0xCF8/0xCFC and prints
/// "slot.function vendor:device" for every function present.
fn pci_scan_guest() -> Vec<u8> {
    firmware(|p| {
        let (putc, puthex8, puthex16) = (p.putc, p.puthex8, p.puthex16);
        let a = &mut p.a;
        a.xor(ecx, ecx).unwrap(); // devfn << 8
        let mut next = a.create_label();
        let mut skip = a.create_label();
        a.set_label(&mut next).unwrap();
        a.mov(eax, 0x8000_0000u32).unwrap();
        a.or(eax, ecx).unwrap();
        a.mov(dx, 0xcf8u32).unwrap();
        a.out(dx, eax).unwrap();
        a.mov(dx, 0xcfcu32).unwrap();
        a.in_(eax, dx).unwrap();
        a.cmp(eax, 0xffff_ffffu32 as i32).unwrap();
        a.je(skip).unwrap();
        a.mov(ebx, eax).unwrap();
        a.mov(eax, ecx).unwrap();
        a.shr(eax, 11u32).unwrap();
        a.call(puthex8).unwrap(); // slot
        a.mov(al, b'.' as u32).unwrap();
        a.call(putc).unwrap();
        a.mov(eax, ecx).unwrap();
        a.shr(eax, 8u32).unwrap();
        a.and(al, 7u32).unwrap();
        a.add(al, b'0' as u32).unwrap();
        a.call(putc).unwrap();
        a.mov(al, b' ' as u32).unwrap();
        a.call(putc).unwrap();
        a.mov(ax, bx).unwrap();
        a.call(puthex16).unwrap(); // vendor
        a.mov(al, b':' as u32).unwrap();
        a.call(putc).unwrap();
        a.mov(eax, ebx).unwrap();
        a.shr(eax, 16u32).unwrap();
        a.call(puthex16).unwrap(); // device
        a.mov(al, b'\n' as u32).unwrap();
        a.call(putc).unwrap();
        a.set_label(&mut skip).unwrap();
        a.add(ecx, 0x100u32).unwrap();
        a.cmp(ecx, 0x1_0000u32).unwrap();
        a.jb(next).unwrap();
        p.print("scan done\n");
        p.exit();
    })
}

#[test]
fn a_pci_scan_finds_the_chipset_and_a_virtio_disk() {
    if !kvm_available() {
        return;
    }
    let scratch = tempfile::tempdir().unwrap();
    let disk = guest::raw_disk(scratch.path(), "disk.img", &[], 1 << 20);
    let mut vm = run_firmware("pci-scan", pci_scan_guest(), |d| {
        d.disk("disk", &disk, "vda", "virtio")
    });
    let seen = vm.wait_for("scan done\n", QUICK);
    assert_eq!(
        seen,
        "00.0 8086:1237\n01.0 8086:7000\n01.1 8086:7010\n01.3 8086:7113\n02.0 1234:1111\n05.0 1af4:1042\nscan done\n",
        "host bridge, PIIX3 ISA and IDE, PIIX4 PM, the VGA at slot 2, then the virtio disk at slot 5"
    );
}

/// A guest that prints "boot" and then resets through `reset`.
fn resetting_guest(reset: impl FnOnce(&mut CodeAssembler)) -> Vec<u8> {
    firmware(|p| {
        p.print("boot\n");
        reset(&mut p.a);
        let a = &mut p.a;
        let mut spin = a.create_label();
        a.set_label(&mut spin).unwrap();
        a.hlt().unwrap();
        a.jmp(spin).unwrap();
    })
}

fn assert_restarts(name: &str, image: Vec<u8>) {
    let vm = run_firmware(name, image, |mut d| {
        d.on_reboot = "restart";
        d
    });
    let start = std::time::Instant::now();
    while vm.serial().matches("boot\n").count() < 3 {
        assert!(
            start.elapsed() < QUICK,
            "{name}: no restart: {:?}\n{}",
            vm.serial(),
            vm.stderr()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn resets_through_every_reset_line_restart_the_firmware() {
    if !kvm_available() {
        return;
    }
    assert_restarts(
        "reset-cf9",
        resetting_guest(|a| {
            a.mov(dx, 0xcf9u32).unwrap();
            a.mov(al, 0x06u32).unwrap();
            a.out(dx, al).unwrap();
        }),
    );
    assert_restarts(
        "reset-port92",
        resetting_guest(|a| {
            a.mov(al, 0x01u32).unwrap();
            a.out(0x92u32, al).unwrap();
        }),
    );
    assert_restarts(
        "reset-i8042",
        resetting_guest(|a| {
            a.mov(al, 0xfeu32).unwrap();
            a.out(0x64u32, al).unwrap();
        }),
    );
}

/// Polls the primary IDE channel until BSY clears and DRQ is set.
fn wait_drq(a: &mut CodeAssembler) {
    let mut poll = a.create_label();
    a.mov(dx, 0x1f7u32).unwrap();
    a.set_label(&mut poll).unwrap();
    a.in_(al, dx).unwrap();
    a.and(al, 0x88u32).unwrap();
    a.cmp(al, 0x08u32).unwrap();
    a.jne(poll).unwrap();
}

/// Issues an LBA28 command for one sector on the primary master.
fn ide_command(a: &mut CodeAssembler, lba: u8, command: u8) {
    for (port, value) in [
        (0x1f6u32, 0xe0u32),
        (0x1f2, 1),
        (0x1f3, lba as u32),
        (0x1f4, 0),
        (0x1f5, 0),
        (0x1f7, command as u32),
    ] {
        a.mov(dx, port).unwrap();
        a.mov(al, value).unwrap();
        a.out(dx, al).unwrap();
    }
}

#[test]
fn ide_pio_reads_and_writes_sectors() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        let puts_at = p.puts_at;
        let a = &mut p.a;
        // READ SECTORS, LBA 1, into 0:1000.
        ide_command(a, 1, 0x20);
        wait_drq(a);
        a.xor(ax, ax).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(di, 0x1000u32).unwrap();
        a.mov(cx, 256u32).unwrap();
        a.mov(dx, 0x1f0u32).unwrap();
        a.rep().insw().unwrap();
        a.push(ds).unwrap();
        a.xor(ax, ax).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(si, 0x1000u32).unwrap();
        a.call(puts_at).unwrap();
        a.pop(ds).unwrap();
        // WRITE SECTORS, LBA 2, from the same buffer with its first byte
        // changed, so the host sees the guest's own data.
        a.mov(byte_ptr(0x1000).es(), b'W' as u32).unwrap();
        ide_command(a, 2, 0x30);
        wait_drq(a);
        a.push(ds).unwrap();
        a.xor(ax, ax).unwrap();
        a.mov(ds, ax).unwrap();
        a.mov(si, 0x1000u32).unwrap();
        a.mov(cx, 256u32).unwrap();
        a.mov(dx, 0x1f0u32).unwrap();
        a.rep().outsw().unwrap();
        a.pop(ds).unwrap();
        // Wait for the write to finish (BSY clear), then flush the cache.
        let mut busy = a.create_label();
        a.mov(dx, 0x1f7u32).unwrap();
        a.set_label(&mut busy).unwrap();
        a.in_(al, dx).unwrap();
        a.test(al, 0x80u32).unwrap();
        a.jnz(busy).unwrap();
        a.mov(al, 0xe7u32).unwrap();
        a.out(dx, al).unwrap();
        let mut flushing = a.create_label();
        a.set_label(&mut flushing).unwrap();
        a.in_(al, dx).unwrap();
        a.test(al, 0x80u32).unwrap();
        a.jnz(flushing).unwrap();
        p.print("\nwritten\n");
        p.exit();
    });
    let scratch = tempfile::tempdir().unwrap();
    let mut content = vec![0u8; 1536];
    content[512..512 + 15].copy_from_slice(b"VIREO-SECTOR-1\0");
    let disk = guest::raw_disk(scratch.path(), "disk.img", &content, 1 << 20);
    let mut vm = run_firmware("ide-pio", image, |d| d.disk("disk", &disk, "hda", "ide"));
    vm.wait_for("VIREO-SECTOR-1\nwritten\n", QUICK);
    assert!(vm.wait_exit(QUICK).success());
    let bytes = std::fs::read(&disk).unwrap();
    assert_eq!(
        &bytes[1024..1024 + 15],
        b"WIREO-SECTOR-1\0",
        "sector 2 holds what the guest wrote"
    );
}

#[test]
fn a_guest_poking_every_port_does_not_bring_the_vm_down() {
    if !kvm_available() {
        return;
    }
    // Writes a junk byte to, and reads back, every I/O port except the
    // reset lines (a reset is a legitimate request) and COM1 (the test's
    // own channel), then reports.
    let image = firmware(|p| {
        let a = &mut p.a;
        let mut next = a.create_label();
        let mut skip = a.create_label();
        a.xor(dx, dx).unwrap();
        a.set_label(&mut next).unwrap();
        for port in [0x64u32, 0x92, 0xcf9, 0xcf8] {
            a.cmp(dx, port).unwrap();
            a.je(skip).unwrap();
        }
        a.mov(ax, dx).unwrap();
        a.and(ax, 0xfff8u32).unwrap();
        a.cmp(ax, 0x3f8u32).unwrap();
        a.je(skip).unwrap();
        a.mov(al, dl).unwrap();
        a.xor(al, 0x5au32).unwrap();
        a.out(dx, al).unwrap();
        a.in_(al, dx).unwrap();
        a.in_(ax, dx).unwrap();
        a.set_label(&mut skip).unwrap();
        a.inc(dx).unwrap();
        a.jnz(next).unwrap();
        p.print("survived\n");
        p.exit();
    });
    let mut vm = run_firmware("port-fuzz", image, |d| {
        d.disk("cdrom", std::path::Path::new("/dev/null"), "hdc", "ide")
    });
    vm.wait_for("survived\n", Duration::from_secs(120));
    assert!(vm.wait_exit(QUICK).success(), "{}", vm.stderr());
}
