//! The USB tablet end to end: a tiny guest drives the PIIX3 UHCI at
//! 00:01.2 as a driver does (PCI setup, frame list and queue head, port
//! reset and enable, enumeration by control transfers, interrupt IN
//! polling) and prints each report on serial; vncdotool moves and clicks
//! through Vireo's VNC server. And SeaBIOS's own USB driver finds the
//! controller and the tablet without hanging the boot.

mod common;

use std::time::{Duration, Instant};

use common::asm::{boot_sector, firmware, out16, out32};
use common::vnc::{free_display, vncdo};
use common::{guest, kvm_available, Domain, Vm};
use iced_x86::code_asm::*;

const TABLET: &str =
    "<controller type='usb' index='0' model='piix3-uhci'/><input type='tablet' bus='usb'/>";
/// Where the guest puts the UHCI's registers (BAR4).
const IO: u16 = 0xc000;
/// The guest's data structures, in the first 64 KiB (ES = 0).
const FRAME_LIST: u32 = 0x8000;
const QH: u32 = 0x9000;
const TDS: u32 = 0x9100;
const INTERRUPT_TD: u32 = 0x9300;
const SETUP_PACKET: u32 = 0x9400;
const DATA: u32 = 0x9500;
const REPORT: u32 = 0x9600;
/// The guest's display: Bochs VBE 640×480.
const WIDTH: u32 = 640;
const HEIGHT: u32 = 480;

const PID_SETUP: u32 = 0x2d;
const PID_IN: u32 = 0x69;
const PID_OUT: u32 = 0xe1;
/// TD control: active, three retries.
const TD_ACTIVE: u32 = (1 << 23) | (3 << 27);
const LINK_TERMINATE: u32 = 1;
const LINK_QH: u32 = 2;
const LINK_DEPTH_FIRST: u32 = 4;

fn store32(a: &mut CodeAssembler, at: u32, value: u32) {
    a.mov(dword_ptr(at).es(), value).unwrap();
}

/// A TD token: PID, device address, endpoint, MaxLen (n - 1; 0x7FF for 0).
fn token(pid: u32, address: u32, endpoint: u32, len: u32) -> u32 {
    ((len.wrapping_sub(1) & 0x7ff) << 21) | (endpoint << 15) | (address << 8) | pid
}

/// Emits a control transfer to `address`: SETUP with `setup`, IN data in
/// 8-byte packets into DATA, then the status stage; queues it and waits
/// until the queue head's element pointer reaches the end.
fn control_transfer(a: &mut CodeAssembler, address: u32, setup: [u8; 8]) {
    let length = u16::from_le_bytes([setup[6], setup[7]]) as u32;
    store32(
        a,
        SETUP_PACKET,
        u32::from_le_bytes(setup[..4].try_into().unwrap()),
    );
    store32(
        a,
        SETUP_PACKET + 4,
        u32::from_le_bytes(setup[4..].try_into().unwrap()),
    );
    let mut tds = vec![(token(PID_SETUP, address, 0, 8), SETUP_PACKET)];
    let mut offset = 0;
    while offset < length {
        let n = (length - offset).min(8);
        tds.push((token(PID_IN, address, 0, n), DATA + offset));
        offset += n;
    }
    let status = if length > 0 { PID_OUT } else { PID_IN };
    tds.push((token(status, address, 0, 0), 0));
    for (i, (tok, buffer)) in tds.iter().enumerate() {
        let at = TDS + 16 * i as u32;
        let link = if i + 1 == tds.len() {
            LINK_TERMINATE
        } else {
            (at + 16) | LINK_DEPTH_FIRST
        };
        store32(a, at, link);
        store32(a, at + 4, TD_ACTIVE);
        store32(a, at + 8, *tok);
        store32(a, at + 12, *buffer);
    }
    store32(a, QH + 4, TDS);
    wait_for_queue(a);
}

/// Spins until the QH's element pointer has its terminate bit.
fn wait_for_queue(a: &mut CodeAssembler) {
    let mut wait = a.create_label();
    a.set_label(&mut wait).unwrap();
    a.test(dword_ptr(QH + 4).es(), LINK_TERMINATE).unwrap();
    a.jz(wait).unwrap();
}

fn tablet_guest() -> Vec<u8> {
    firmware(|p| {
        let a = &mut p.a;
        a.xor(ax, ax).unwrap();
        a.mov(es, ax).unwrap();
        // A known display size: Bochs VBE 640×480×32.
        for (index, value) in [
            (3u16, 32u16),
            (1, WIDTH as u16),
            (2, HEIGHT as u16),
            (4, 0x01),
        ] {
            out16(a, 0x1ce, index);
            out16(a, 0x1cf, value);
        }
        // 00:01.2: vendor and device, then BAR4 and I/O + bus master on.
        out32(a, 0xcf8, 0x8000_0a00);
        a.mov(dx, 0xcfcu32).unwrap();
        a.in_(eax, dx).unwrap();
        a.mov(ebx, eax).unwrap();
        p.print("pci ");
        let (puthex16, puthex8, putc) = (p.puthex16, p.puthex8, p.putc);
        let a = &mut p.a;
        a.mov(eax, ebx).unwrap();
        a.shr(eax, 16u32).unwrap();
        a.call(puthex16).unwrap();
        a.mov(ax, bx).unwrap();
        a.call(puthex16).unwrap();
        a.mov(al, b'\n' as u32).unwrap();
        a.call(putc).unwrap();
        out32(a, 0xcf8, 0x8000_0a20);
        out32(a, 0xcfc, IO as u32);
        out32(a, 0xcf8, 0x8000_0a04);
        out16(a, 0xcfc, 0x0005);
        // Host controller reset, then the schedule: every frame list entry
        // points at one QH, empty for now.
        out16(a, IO, 0x0002);
        a.cld().unwrap();
        a.mov(di, FRAME_LIST).unwrap();
        a.mov(cx, 1024u32).unwrap();
        a.mov(eax, QH | LINK_QH).unwrap();
        a.rep().stosd().unwrap();
        store32(a, QH, LINK_TERMINATE);
        store32(a, QH + 4, LINK_TERMINATE);
        out32(a, IO + 8, FRAME_LIST);
        out16(a, IO + 6, 0);
        // Port 1: reset, then enable (clearing the connect change).
        out16(a, IO + 0x10, 0x0200);
        out16(a, IO + 0x10, 0x0000);
        out16(a, IO + 0x10, 0x0006);
        a.mov(dx, (IO + 0x10) as u32).unwrap();
        a.in_(ax, dx).unwrap();
        a.mov(bx, ax).unwrap();
        p.print("portsc ");
        let a = &mut p.a;
        a.mov(ax, bx).unwrap();
        a.call(puthex16).unwrap();
        a.mov(al, b'\n' as u32).unwrap();
        a.call(putc).unwrap();
        // Run.
        out16(a, IO, 0x0001);
        // GET_DESCRIPTOR(DEVICE, 18) at address 0: print idVendor idProduct.
        control_transfer(a, 0, [0x80, 6, 0, 1, 0, 0, 18, 0]);
        p.print("device ");
        let a = &mut p.a;
        a.mov(ax, word_ptr(DATA + 8).es()).unwrap();
        a.call(puthex16).unwrap();
        a.mov(al, b':' as u32).unwrap();
        a.call(putc).unwrap();
        a.mov(ax, word_ptr(DATA + 10).es()).unwrap();
        a.call(puthex16).unwrap();
        a.mov(al, b'\n' as u32).unwrap();
        a.call(putc).unwrap();
        // SET_ADDRESS(1), SET_CONFIGURATION(1) at the new address.
        control_transfer(a, 0, [0x00, 5, 1, 0, 0, 0, 0, 0]);
        control_transfer(a, 1, [0x00, 9, 1, 0, 0, 0, 0, 0]);
        p.print("configured\n");
        // Poll the interrupt IN endpoint; print each report.
        let a = &mut p.a;
        let mut next = a.create_label();
        a.set_label(&mut next).unwrap();
        store32(a, INTERRUPT_TD, LINK_TERMINATE);
        store32(a, INTERRUPT_TD + 4, TD_ACTIVE);
        store32(a, INTERRUPT_TD + 8, token(PID_IN, 1, 1, 8));
        store32(a, INTERRUPT_TD + 12, REPORT);
        store32(a, QH + 4, INTERRUPT_TD);
        wait_for_queue(a);
        p.print("report btn ");
        let a = &mut p.a;
        a.mov(al, byte_ptr(REPORT).es()).unwrap();
        a.call(puthex8).unwrap();
        p.print(" x ");
        let a = &mut p.a;
        a.mov(ax, word_ptr(REPORT + 1).es()).unwrap();
        a.call(puthex16).unwrap();
        p.print(" y ");
        let a = &mut p.a;
        a.mov(ax, word_ptr(REPORT + 3).es()).unwrap();
        a.call(puthex16).unwrap();
        a.mov(al, b'\n' as u32).unwrap();
        a.call(putc).unwrap();
        a.jmp(next).unwrap();
    })
}

/// The tablet coordinate a surface position maps to.
fn absolute(position: u32, extent: u32) -> u32 {
    position * 0x7fff / (extent - 1)
}

#[test]
fn a_vnc_click_reaches_a_guest_driving_the_usb_tablet_at_the_same_place() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bios = guest::write(dir.path(), "tablet.bin", &tablet_guest());
    let display = free_display();
    let domain = Domain::new("tablet").firmware(&bios).device(TABLET);
    let vnc = format!("127.0.0.1:{display}");
    let mut vm = Vm::start_with(&domain, &["--vnc", &vnc]);
    let seen = vm.wait_for("configured\n", Duration::from_secs(60));
    assert!(seen.contains("pci 70208086\n"), "{seen}");
    assert!(
        seen.contains("portsc 0085\n"),
        "port 1 connected and enabled: {seen}"
    );
    assert!(seen.contains("device 0627:0001\n"), "{seen}");
    // The screen must be the guest's 640×480 before the pointer moves.
    let start = Instant::now();
    loop {
        let shot = dir.path().join("shot.png");
        let out = vncdo(display, None, &["capture", shot.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let png = std::fs::read(&shot).unwrap();
        let size = (
            u32::from_be_bytes(png[16..20].try_into().unwrap()),
            u32::from_be_bytes(png[20..24].try_into().unwrap()),
        );
        if size == (WIDTH, HEIGHT) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "screen stays {size:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let (x, y) = (123, 456);
    let out = vncdo(
        display,
        None,
        &["move", &x.to_string(), &y.to_string(), "click", "1"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (abs_x, abs_y) = (absolute(x, WIDTH), absolute(y, HEIGHT));
    let pressed = format!("report btn 01 x {abs_x:04x} y {abs_y:04x}\n");
    let released = format!("report btn 00 x {abs_x:04x} y {abs_y:04x}\n");
    let seen = vm.wait_for(&released, Duration::from_secs(30));
    let press_at = seen
        .find(&pressed)
        .unwrap_or_else(|| panic!("no {pressed:?} in {seen}"));
    assert!(
        seen[press_at..].contains(&released),
        "the release follows the press: {seen}"
    );
    let moved = format!("report btn 00 x {abs_x:04x} y {abs_y:04x}\n");
    assert!(
        seen[..press_at].contains(&moved),
        "the move came first: {seen}"
    );
}

#[test]
fn seabios_finds_the_uhci_and_the_tablet_and_boots_on() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sector = boot_sector(|p| {
        p.print("BOOTED\n");
        p.a.hlt().unwrap();
    });
    let disk = guest::raw_disk(dir.path(), "disk.img", &sector, 1 << 20);
    let log = dir.path().join("seabios.log");
    let domain = Domain::new("seabios-usb")
        .disk("disk", &disk, "hda", "ide")
        .device(TABLET);
    let mut vm = Vm::start_with_env(
        &domain,
        &["--debugcon", log.to_str().unwrap()],
        &[("VIREO_LOG", "warn,vireo::devices::usb=debug")],
    );
    vm.wait_for("BOOTED\n", Duration::from_secs(180));
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("UHCI init on dev 00:01.2 (io="), "{text}");
    // SeaBIOS's debug level does not log USB enumeration; the tablet's
    // own log shows that SeaBIOS reset the port, gave the tablet an
    // address and read its descriptors. (It leaves the tablet
    // unconfigured: its HID driver takes boot-protocol devices only.)
    let log = vm.stderr();
    assert!(log.contains("USB tablet: address set"), "{log}");
    assert!(
        log.contains("request: 6, value: 512"),
        "configuration descriptor read: {log}"
    );
    assert!(
        !log.contains("UHCI:"),
        "no guest warnings from the UHCI: {log}"
    );
}
