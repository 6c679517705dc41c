//! KVM tier: a tiny guest drives the virtio-net NIC through user-mode NAT.
//!
//! The guest (real mode, run as the firmware) finds the NIC on the PCI bus,
//! reaches its virtio structures through the PCI configuration access
//! capability (so it needs no BAR mapping), sets up the receive and
//! transmit queues, and then, with frames built here as templates and
//! patched in the guest:
//!
//! 1. DHCPDISCOVER, prints the offered address; DHCPREQUEST, prints ACK;
//! 2. announces itself by ARP and sends a UDP datagram to the gateway,
//!    which libslirp delivers to this test's echo server on 127.0.0.1;
//!    prints the echo it gets back;
//! 3. prints READY and then the datagram this test sends to a forwarded
//!    host UDP port.
//!
//! The same guest, given other steps, shows that the VMs on an isolated
//! network reach each other and nothing else, and (with `--ignored
//! write_bench_guests`) makes the guests of scripts/bench_net.py.

mod common;

use std::net::UdpSocket;
use std::time::Duration;

use common::asm::{firmware, Program};
use common::{guest, kvm_available, Domain, Home, NetworkGuard, Vm};
use iced_x86::code_asm::*;

const MAC: [u8; 6] = [0x52, 0x54, 0x00, 0x12, 0x34, 0x56];
const GATEWAY: [u8; 4] = [192, 168, 122, 1];
const GUEST_PORT: u16 = 7777;
const XID: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

/// Where the templates sit in the 64 KiB firmware image (CS = DS = F000).
const DISCOVER_AT: u16 = 0xc000;
const REQUEST_AT: u16 = 0xc400;
const ARP_AT: u16 = 0xc800;
const UDP_AT: u16 = 0xcc00;
/// Room for one datagram template (1400 bytes of payload fit).
const UDP_SLOT: u16 = 0x600;

/// Guest memory (ES = 0x1000, physical 0x10000): the two queues, the
/// driver's variables, the transmit buffer and eight receive buffers.
const SEG: u16 = 0x1000;
const BASE: u32 = 0x10000;
const RXQ: u16 = 0x0000;
const TXQ: u16 = 0x0400;
const RX_LAST_USED: u16 = 0x0700;
const CAP: u16 = 0x0706;
const PCI_ADDR: u16 = 0x0708;
const YIADDR: u16 = 0x0710;
const COUNT: u16 = 0x0720;
const TX_BUF: u16 = 0x1000;
const RX_BUFS: u16 = 0x2000;
const RX_BUF_LEN: u16 = 0x800;
const QSIZE: u16 = 8;
/// The virtio-net header in front of every frame.
const HDR: u16 = 12;

fn ip_checksum(header: &[u8]) -> u16 {
    let mut sum: u32 = header
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// virtio-net header + Ethernet + IPv4 + UDP (checksum 0) + payload.
fn udp_frame(
    mac: [u8; 6],
    dst_mac: [u8; 6],
    (src, dst): ([u8; 4], [u8; 4]),
    sport: u16,
    dport: u16,
    payload: &[u8],
) -> Vec<u8> {
    let mut f = vec![0u8; HDR as usize];
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (20 + 8 + payload.len()) as u16;
    let mut ip = vec![0x45, 0, 0, 0, 0, 1, 0, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src);
    ip.extend_from_slice(&dst);
    let sum = ip_checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&sport.to_be_bytes());
    f.extend_from_slice(&dport.to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

/// A BOOTP/DHCP client message with `options` (after the magic cookie).
fn dhcp_frame(mac: [u8; 6], options: &[u8]) -> Vec<u8> {
    let mut bootp = vec![0u8; 236];
    bootp[0] = 1; // BOOTREQUEST
    bootp[1] = 1; // Ethernet
    bootp[2] = 6;
    bootp[4..8].copy_from_slice(&XID);
    bootp[10] = 0x80; // broadcast reply
    bootp[28..34].copy_from_slice(&mac);
    bootp.extend_from_slice(&[99, 130, 83, 99]);
    bootp.extend_from_slice(options);
    bootp.resize(548, 0);
    udp_frame(mac, [0xff; 6], ([0; 4], [255; 4]), 68, 67, &bootp)
}

/// Offset of the requested-address option's value in the REQUEST buffer.
const REQUESTED_IP_AT: u16 = HDR + 14 + 20 + 8 + 240 + 5;

fn arp_frame(mac: [u8; 6], target: [u8; 4]) -> Vec<u8> {
    let mut f = vec![0u8; HDR as usize];
    f.extend_from_slice(&[0xff; 6]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
    f.extend_from_slice(&mac);
    f.extend_from_slice(&[0; 4]); // sender IP, patched
    f.extend_from_slice(&[0; 6]);
    f.extend_from_slice(&target);
    f
}

/// A UDP datagram the guest sends from its DHCP address and GUEST_PORT.
struct Datagram {
    dst_mac: [u8; 6],
    dst_ip: [u8; 4],
    dport: u16,
    payload: Vec<u8>,
}

/// What the guest does after DHCP and its ARP announcement.
enum Step {
    /// Sends datagram i.
    Send(usize),
    /// Waits for a datagram to GUEST_PORT; prints the label, its payload
    /// and a newline.
    Recv(&'static str),
    Print(&'static str),
    /// Sends datagram i this many times, as fast as the queue takes them.
    Blast(usize, u32),
    /// Counts the datagrams to GUEST_PORT until one whose payload starts
    /// with 'E'; prints "received N".
    Count,
}

/// One tiny guest: its MAC, the DHCP server (and ARP target) it expects,
/// its datagrams and its steps; it exits after the last step.
struct Guest {
    mac: [u8; 6],
    server: [u8; 4],
    datagrams: Vec<Datagram>,
    steps: Vec<Step>,
}
/// Offset of the ARP sender address in the ARP buffer.
const ARP_SENDER_IP_AT: u16 = HDR + 14 + 14;

/// Offsets in a received frame (from the Ethernet header).
const ETH_TYPE: u16 = 12;
const IP_PROTO: u16 = 14 + 9;
const UDP_DPORT: u16 = 14 + 20 + 2;
const UDP_LEN: u16 = 14 + 20 + 4;
const PAYLOAD: u16 = 14 + 20 + 8;
const BOOTP_YIADDR: u16 = PAYLOAD + 16;
const DHCP_MSG_TYPE: u16 = PAYLOAD + 242;

struct Labels {
    cfg_read: CodeLabel,
    cfg_write: CodeLabel,
    bar_read: CodeLabel,
    bar_write: CodeLabel,
    send: CodeLabel,
    rx_wait: CodeLabel,
    recycle: CodeLabel,
    putdec: CodeLabel,
    put_ip: CodeLabel,
    put_payload: CodeLabel,
    putdec32: CodeLabel,
    prepare_udp: CodeLabel,
}

/// `bar_write` of a constant to the virtio BAR at `offset`, `len` bytes.
fn bar_set(p: &mut Program, l: &Labels, offset: u32, value: u32, len: u32) {
    let a = &mut p.a;
    a.mov(ebx, offset).unwrap();
    a.mov(eax, value).unwrap();
    a.mov(ecx, len).unwrap();
    a.call(l.bar_write).unwrap();
}

/// Waits until the device has sent everything queued, so that the
/// transmit buffer may change (QEMU sends from a bottom half, later).
fn tx_drain(p: &mut Program) {
    let a = &mut p.a;
    let mut wait = a.create_label();
    a.set_label(&mut wait).unwrap();
    a.mov(ax, word_ptr(TXQ as u32 + 0x202).es()).unwrap();
    a.cmp(ax, word_ptr(TXQ as u32 + 0x102).es()).unwrap();
    a.jne(wait).unwrap();
}

/// Copies a template (DS:from, `len` bytes) to the transmit buffer.
fn load_template(p: &mut Program, from: u16, len: usize) {
    let a = &mut p.a;
    a.mov(si, from as u32).unwrap();
    a.mov(di, TX_BUF as u32).unwrap();
    a.mov(cx, len as u32).unwrap();
    a.rep().movsb().unwrap();
}

fn guest_image(g: &Guest) -> Vec<u8> {
    let discover = dhcp_frame(g.mac, &[53, 1, 1, 255]);
    let mut req_opts = vec![53, 1, 3, 50, 4, 0, 0, 0, 0, 54, 4];
    req_opts.extend_from_slice(&g.server);
    req_opts.push(255);
    let request = dhcp_frame(g.mac, &req_opts);
    let arp = arp_frame(g.mac, g.server);
    let udps: Vec<Vec<u8>> = g
        .datagrams
        .iter()
        .map(|d| {
            udp_frame(
                g.mac,
                d.dst_mac,
                ([0; 4], d.dst_ip),
                GUEST_PORT,
                d.dport,
                &d.payload,
            )
        })
        .collect();
    let lens = (discover.len(), request.len(), arp.len());

    let mut image = firmware(|p| {
        let mut l = Labels {
            cfg_read: p.a.create_label(),
            cfg_write: p.a.create_label(),
            bar_read: p.a.create_label(),
            bar_write: p.a.create_label(),
            send: p.a.create_label(),
            rx_wait: p.a.create_label(),
            recycle: p.a.create_label(),
            putdec: p.a.create_label(),
            put_ip: p.a.create_label(),
            put_payload: p.a.create_label(),
            putdec32: p.a.create_label(),
            prepare_udp: p.a.create_label(),
        };
        let mut fail = p.a.create_label();
        {
            let a = &mut p.a;
            a.mov(ax, SEG as u32).unwrap();
            a.mov(es, ax).unwrap();
            a.xor(di, di).unwrap();
            a.xor(ax, ax).unwrap();
            a.mov(cx, 0x4000u32).unwrap();
            a.rep().stosw().unwrap();
            // Find 1af4:1041 on bus 0.
            a.mov(ebx, 0x8000_0000u32).unwrap();
            let mut scan = a.create_label();
            let mut found = a.create_label();
            a.set_label(&mut scan).unwrap();
            a.mov(eax, ebx).unwrap();
            a.mov(dx, 0xcf8u32).unwrap();
            a.out(dx, eax).unwrap();
            a.mov(dx, 0xcfcu32).unwrap();
            a.in_(eax, dx).unwrap();
            a.cmp(eax, 0x1041_1af4u32).unwrap();
            a.je(found).unwrap();
            a.add(ebx, 0x800u32).unwrap();
            a.cmp(ebx, 0x8001_0000u32).unwrap();
            a.jb(scan).unwrap();
            a.jmp(fail).unwrap();
            a.set_label(&mut found).unwrap();
            a.mov(dword_ptr(PCI_ADDR as u32).es(), ebx).unwrap();
            // Memory space and bus mastering.
            a.mov(dl, 0x04u32).unwrap();
            a.mov(eax, 0x0006u32).unwrap();
            a.call(l.cfg_write).unwrap();
            // Walk the capabilities for the PCI configuration access one.
            a.mov(dl, 0x34u32).unwrap();
            a.call(l.cfg_read).unwrap();
            let mut walk = a.create_label();
            let mut got_cap = a.create_label();
            a.set_label(&mut walk).unwrap();
            a.and(al, 0xfcu32).unwrap();
            a.jz(fail).unwrap();
            a.mov(cl, al).unwrap();
            a.mov(dl, al).unwrap();
            a.call(l.cfg_read).unwrap();
            a.cmp(al, 0x09u32).unwrap();
            let mut next = a.create_label();
            a.jne(next).unwrap();
            a.mov(edx, eax).unwrap();
            a.shr(edx, 24u32).unwrap();
            a.cmp(dl, 5u32).unwrap();
            a.je(got_cap).unwrap();
            a.set_label(&mut next).unwrap();
            a.mov(al, ah).unwrap();
            a.jmp(walk).unwrap();
            a.set_label(&mut got_cap).unwrap();
            a.mov(byte_ptr(CAP as u32).es(), cl).unwrap();
        }
        // Reset, ACKNOWLEDGE | DRIVER, accept VERSION_1 only, FEATURES_OK.
        bar_set(p, &l, 0x14, 0, 1);
        bar_set(p, &l, 0x14, 3, 1);
        bar_set(p, &l, 0x08, 1, 4);
        bar_set(p, &l, 0x0c, 1, 4);
        bar_set(p, &l, 0x08, 0, 4);
        bar_set(p, &l, 0x0c, 0, 4);
        bar_set(p, &l, 0x14, 0x0b, 1);
        for (q, at) in [(0u32, RXQ), (1, TXQ)] {
            let at = BASE + at as u32;
            bar_set(p, &l, 0x16, q, 2);
            bar_set(p, &l, 0x18, QSIZE as u32, 2);
            bar_set(p, &l, 0x20, at, 4);
            bar_set(p, &l, 0x24, 0, 4);
            bar_set(p, &l, 0x28, at + 0x100, 4);
            bar_set(p, &l, 0x2c, 0, 4);
            bar_set(p, &l, 0x30, at + 0x200, 4);
            bar_set(p, &l, 0x34, 0, 4);
            bar_set(p, &l, 0x1c, 1, 2);
        }
        bar_set(p, &l, 0x14, 0x0f, 1);
        {
            // Post the receive buffers.
            let a = &mut p.a;
            for i in 0..QSIZE as u32 {
                let desc = RXQ as u32 + 16 * i;
                a.mov(
                    dword_ptr(desc).es(),
                    BASE + RX_BUFS as u32 + i * RX_BUF_LEN as u32,
                )
                .unwrap();
                a.mov(dword_ptr(desc + 8).es(), RX_BUF_LEN as u32).unwrap();
                a.mov(word_ptr(desc + 12).es(), 2u32).unwrap(); // WRITE
                a.mov(word_ptr(RXQ as u32 + 0x104 + 2 * i).es(), i).unwrap();
            }
            a.mov(word_ptr(RXQ as u32 + 0x102).es(), QSIZE as u32)
                .unwrap();
        }
        bar_set(p, &l, 0x3000, 0, 2);
        p.print("virtio-net up\n");

        // DHCP: DISCOVER, OFFER.
        load_template(p, DISCOVER_AT, lens.0);
        p.a.mov(cx, lens.0 as u32).unwrap();
        p.a.call(l.send).unwrap();
        p.a.mov(bx, u16::from_be_bytes(68u16.to_le_bytes()) as u32)
            .unwrap();
        p.a.call(l.rx_wait).unwrap();
        p.a.mov(eax, dword_ptr(di + BOOTP_YIADDR as i32).es())
            .unwrap();
        p.a.mov(dword_ptr(YIADDR as u32).es(), eax).unwrap();
        p.a.call(l.recycle).unwrap();
        p.print("DHCP offer ");
        p.a.call(l.put_ip).unwrap();
        p.print("\n");
        // REQUEST, ACK.
        load_template(p, REQUEST_AT, lens.1);
        p.a.mov(eax, dword_ptr(YIADDR as u32).es()).unwrap();
        p.a.mov(dword_ptr((TX_BUF + REQUESTED_IP_AT) as u32).es(), eax)
            .unwrap();
        p.a.mov(cx, lens.1 as u32).unwrap();
        p.a.call(l.send).unwrap();
        p.a.mov(bx, u16::from_be_bytes(68u16.to_le_bytes()) as u32)
            .unwrap();
        p.a.call(l.rx_wait).unwrap();
        p.a.mov(al, byte_ptr(di + DHCP_MSG_TYPE as i32).es())
            .unwrap();
        p.a.call(l.recycle).unwrap();
        p.a.cmp(al, 5u32).unwrap();
        p.a.jne(fail).unwrap();
        p.print("DHCP ack\n");

        // ARP, so that libslirp (or the other guests) know our MAC.
        load_template(p, ARP_AT, lens.2);
        p.a.mov(eax, dword_ptr(YIADDR as u32).es()).unwrap();
        p.a.mov(dword_ptr((TX_BUF + ARP_SENDER_IP_AT) as u32).es(), eax)
            .unwrap();
        p.a.mov(cx, lens.2 as u32).unwrap();
        p.a.call(l.send).unwrap();
        tx_drain(p);
        let port = u16::from_be_bytes(GUEST_PORT.to_le_bytes()) as u32;
        for step in &g.steps {
            match *step {
                Step::Send(i) => {
                    p.a.mov(si, (UDP_AT + UDP_SLOT * i as u16) as u32).unwrap();
                    p.a.mov(cx, udps[i].len() as u32).unwrap();
                    p.a.call(l.prepare_udp).unwrap();
                    p.a.call(l.send).unwrap();
                    tx_drain(p);
                }
                Step::Recv(label) => {
                    p.a.mov(bx, port).unwrap();
                    p.a.call(l.rx_wait).unwrap();
                    p.print(label);
                    p.a.call(l.put_payload).unwrap();
                    p.a.call(l.recycle).unwrap();
                    p.print("\n");
                }
                Step::Print(text) => p.print(text),
                Step::Blast(i, count) => {
                    let a = &mut p.a;
                    a.mov(si, (UDP_AT + UDP_SLOT * i as u16) as u32).unwrap();
                    a.mov(cx, udps[i].len() as u32).unwrap();
                    a.call(l.prepare_udp).unwrap();
                    a.mov(dword_ptr(COUNT as u32).es(), count).unwrap();
                    let mut again = a.create_label();
                    a.set_label(&mut again).unwrap();
                    a.mov(cx, udps[i].len() as u32).unwrap();
                    a.call(l.send).unwrap();
                    a.dec(dword_ptr(COUNT as u32).es()).unwrap();
                    a.jnz(again).unwrap();
                    tx_drain(p);
                }
                Step::Count => {
                    let a = &mut p.a;
                    a.mov(dword_ptr(COUNT as u32).es(), 0u32).unwrap();
                    let mut again = a.create_label();
                    let mut end = a.create_label();
                    a.set_label(&mut again).unwrap();
                    a.mov(bx, port).unwrap();
                    a.call(l.rx_wait).unwrap();
                    a.cmp(byte_ptr(di + PAYLOAD as i32).es(), b'E' as u32)
                        .unwrap();
                    a.je(end).unwrap();
                    a.inc(dword_ptr(COUNT as u32).es()).unwrap();
                    a.call(l.recycle).unwrap();
                    a.jmp(again).unwrap();
                    a.set_label(&mut end).unwrap();
                    a.call(l.recycle).unwrap();
                    p.print("received ");
                    p.a.mov(eax, dword_ptr(COUNT as u32).es()).unwrap();
                    p.a.call(l.putdec32).unwrap();
                    p.print("\n");
                }
            }
        }
        p.exit();
        p.a.set_label(&mut fail).unwrap();
        p.print("FAIL\n");
        p.exit();

        let putc = p.putc;
        let a = &mut p.a;
        // cfg_addr: selects register dl of the NIC; dx = data port.
        let mut cfg_addr = a.create_label();
        a.set_label(&mut cfg_addr).unwrap();
        a.push(eax).unwrap();
        a.mov(eax, dword_ptr(PCI_ADDR as u32).es()).unwrap();
        a.or(al, dl).unwrap();
        a.mov(dx, 0xcf8u32).unwrap();
        a.out(dx, eax).unwrap();
        a.pop(eax).unwrap();
        a.mov(dx, 0xcfcu32).unwrap();
        a.ret().unwrap();
        // cfg_read: eax = register dl.  cfg_write: register dl = eax.
        a.set_label(&mut l.cfg_read).unwrap();
        a.call(cfg_addr).unwrap();
        a.in_(eax, dx).unwrap();
        a.ret().unwrap();
        a.set_label(&mut l.cfg_write).unwrap();
        a.call(cfg_addr).unwrap();
        a.out(dx, eax).unwrap();
        a.ret().unwrap();
        // window: points the access capability at BAR 4 offset ebx, ecx bytes.
        let mut window = a.create_label();
        a.set_label(&mut window).unwrap();
        a.push(eax).unwrap();
        for (field, value) in [(4u32, None), (8, Some(ebx)), (12, Some(ecx))] {
            a.mov(dl, byte_ptr(CAP as u32).es()).unwrap();
            a.add(dl, field).unwrap();
            match value {
                None => a.mov(eax, 4u32).unwrap(),
                Some(reg) => a.mov(eax, reg).unwrap(),
            }
            a.call(l.cfg_write).unwrap();
        }
        a.pop(eax).unwrap();
        a.mov(dl, byte_ptr(CAP as u32).es()).unwrap();
        a.add(dl, 16u32).unwrap();
        a.ret().unwrap();
        a.set_label(&mut l.bar_write).unwrap();
        a.call(window).unwrap();
        a.call(l.cfg_write).unwrap();
        a.ret().unwrap();
        a.set_label(&mut l.bar_read).unwrap();
        a.call(window).unwrap();
        a.call(l.cfg_read).unwrap();
        a.ret().unwrap();
        // prepare_udp: copies the template at DS:si (cx bytes) to the
        // transmit buffer with our address as its source (keeps cx).
        a.set_label(&mut l.prepare_udp).unwrap();
        a.push(cx).unwrap();
        a.mov(di, TX_BUF as u32).unwrap();
        a.rep().movsb().unwrap();
        {
            let ip = (TX_BUF + HDR + 14) as u32;
            a.mov(eax, dword_ptr(YIADDR as u32).es()).unwrap();
            a.mov(dword_ptr(ip + 12).es(), eax).unwrap();
            // IP header checksum over the patched header.
            a.mov(word_ptr(ip + 10).es(), 0u32).unwrap();
            a.mov(si, ip).unwrap();
            a.mov(cx, 10u32).unwrap();
            a.xor(dx, dx).unwrap();
            let mut sum = a.create_label();
            a.set_label(&mut sum).unwrap();
            a.add(dx, word_ptr(si).es()).unwrap();
            a.adc(dx, 0u32).unwrap();
            a.add(si, 2u32).unwrap();
            a.loop_(sum).unwrap();
            a.not(dx).unwrap();
            a.mov(word_ptr(ip + 10).es(), dx).unwrap();
        }
        a.pop(cx).unwrap();
        a.ret().unwrap();
        // send: transmits cx bytes from the transmit buffer, once the
        // device has given back a descriptor if all are in flight.
        a.set_label(&mut l.send).unwrap();
        let full = l.send;
        a.mov(ax, word_ptr(TXQ as u32 + 0x102).es()).unwrap();
        a.sub(ax, word_ptr(TXQ as u32 + 0x202).es()).unwrap();
        a.cmp(ax, QSIZE as u32).unwrap();
        a.jae(full).unwrap();
        a.mov(bx, word_ptr(TXQ as u32 + 0x102).es()).unwrap();
        a.and(bx, (QSIZE - 1) as u32).unwrap();
        a.mov(si, bx).unwrap();
        a.shl(si, 4u32).unwrap();
        a.mov(dword_ptr(si + TXQ as i32).es(), BASE + TX_BUF as u32)
            .unwrap();
        a.mov(dword_ptr(si + TXQ as i32 + 4).es(), 0u32).unwrap();
        a.mov(word_ptr(si + TXQ as i32 + 8).es(), cx).unwrap();
        a.mov(word_ptr(si + TXQ as i32 + 10).es(), 0u32).unwrap();
        a.mov(word_ptr(si + TXQ as i32 + 12).es(), 0u32).unwrap();
        a.shl(bx, 1u32).unwrap();
        a.shr(si, 4u32).unwrap();
        a.mov(word_ptr(bx + TXQ as i32 + 0x104).es(), si).unwrap();
        a.inc(word_ptr(TXQ as u32 + 0x102).es()).unwrap();
        a.mov(ebx, 0x3004u32).unwrap();
        a.xor(eax, eax).unwrap();
        a.mov(ecx, 2u32).unwrap();
        a.call(l.bar_write).unwrap();
        a.ret().unwrap();
        // rx_wait: the next received IPv4/UDP frame to port bx (network
        // order); di = its Ethernet header, si = its descriptor. Other
        // frames go back to the device.
        let mut poll = l.rx_wait;
        let mut skip = a.create_label();
        a.set_label(&mut poll).unwrap();
        a.mov(ax, word_ptr(RXQ as u32 + 0x202).es()).unwrap();
        a.cmp(ax, word_ptr(RX_LAST_USED as u32).es()).unwrap();
        a.je(poll).unwrap();
        a.mov(si, word_ptr(RX_LAST_USED as u32).es()).unwrap();
        a.and(si, (QSIZE - 1) as u32).unwrap();
        a.shl(si, 3u32).unwrap();
        a.mov(si, word_ptr(si + RXQ as i32 + 0x204).es()).unwrap();
        a.inc(word_ptr(RX_LAST_USED as u32).es()).unwrap();
        a.mov(di, si).unwrap();
        a.shl(di, 11u32).unwrap();
        a.add(di, (RX_BUFS + HDR) as u32).unwrap();
        a.cmp(word_ptr(di + ETH_TYPE as i32).es(), 0x0008u32)
            .unwrap();
        a.jne(skip).unwrap();
        a.cmp(byte_ptr(di + IP_PROTO as i32).es(), 17u32).unwrap();
        a.jne(skip).unwrap();
        a.cmp(word_ptr(di + UDP_DPORT as i32).es(), bx).unwrap();
        a.jne(skip).unwrap();
        a.ret().unwrap();
        a.set_label(&mut skip).unwrap();
        a.push(bx).unwrap();
        a.call(l.recycle).unwrap();
        a.pop(bx).unwrap();
        a.jmp(poll).unwrap();
        // recycle: gives receive descriptor si back (keeps ax).
        a.set_label(&mut l.recycle).unwrap();
        a.push(eax).unwrap();
        a.mov(bx, word_ptr(RXQ as u32 + 0x102).es()).unwrap();
        a.and(bx, (QSIZE - 1) as u32).unwrap();
        a.shl(bx, 1u32).unwrap();
        a.mov(word_ptr(bx + RXQ as i32 + 0x104).es(), si).unwrap();
        a.inc(word_ptr(RXQ as u32 + 0x102).es()).unwrap();
        a.mov(ebx, 0x3000u32).unwrap();
        a.xor(eax, eax).unwrap();
        a.mov(ecx, 2u32).unwrap();
        a.call(l.bar_write).unwrap();
        a.pop(eax).unwrap();
        a.ret().unwrap();
        // putdec: al in decimal.
        a.set_label(&mut l.putdec).unwrap();
        a.movzx(ax, al).unwrap();
        a.xor(cx, cx).unwrap();
        let mut digits = a.create_label();
        a.set_label(&mut digits).unwrap();
        a.mov(bl, 10u32).unwrap();
        a.div(bl).unwrap();
        a.mov(dl, ah).unwrap();
        a.push(dx).unwrap();
        a.inc(cx).unwrap();
        a.xor(ah, ah).unwrap();
        a.test(al, al).unwrap();
        a.jnz(digits).unwrap();
        let mut out = a.create_label();
        a.set_label(&mut out).unwrap();
        a.pop(dx).unwrap();
        a.mov(al, dl).unwrap();
        a.add(al, b'0' as u32).unwrap();
        a.call(putc).unwrap();
        a.loop_(out).unwrap();
        a.ret().unwrap();
        // putdec32: eax in decimal.
        a.set_label(&mut l.putdec32).unwrap();
        a.xor(cx, cx).unwrap();
        a.mov(ebx, 10u32).unwrap();
        let mut digits32 = a.create_label();
        a.set_label(&mut digits32).unwrap();
        a.xor(edx, edx).unwrap();
        a.div(ebx).unwrap();
        a.push(dx).unwrap();
        a.inc(cx).unwrap();
        a.test(eax, eax).unwrap();
        a.jnz(digits32).unwrap();
        let mut out32 = a.create_label();
        a.set_label(&mut out32).unwrap();
        a.pop(dx).unwrap();
        a.mov(al, dl).unwrap();
        a.add(al, b'0' as u32).unwrap();
        a.call(putc).unwrap();
        a.loop_(out32).unwrap();
        a.ret().unwrap();
        // put_ip: the dotted form of YIADDR.
        a.set_label(&mut l.put_ip).unwrap();
        a.xor(bp, bp).unwrap();
        let mut octet = a.create_label();
        let mut last = a.create_label();
        a.set_label(&mut octet).unwrap();
        a.mov(al, byte_ptr(bp + YIADDR as i32).es()).unwrap();
        a.call(l.putdec).unwrap();
        a.inc(bp).unwrap();
        a.cmp(bp, 4u32).unwrap();
        a.je(last).unwrap();
        a.mov(al, b'.' as u32).unwrap();
        a.call(putc).unwrap();
        a.jmp(octet).unwrap();
        a.set_label(&mut last).unwrap();
        a.ret().unwrap();
        // put_payload: the UDP payload of the frame at di.
        a.set_label(&mut l.put_payload).unwrap();
        a.mov(cx, word_ptr(di + UDP_LEN as i32).es()).unwrap();
        a.xchg(cl, ch).unwrap();
        a.sub(cx, 8u32).unwrap();
        let mut byte = a.create_label();
        let mut done = a.create_label();
        a.jbe(done).unwrap();
        a.set_label(&mut byte).unwrap();
        a.mov(al, byte_ptr(di + PAYLOAD as i32).es()).unwrap();
        a.call(putc).unwrap();
        a.inc(di).unwrap();
        a.loop_(byte).unwrap();
        a.set_label(&mut done).unwrap();
        a.ret().unwrap();
    });
    let mut templates = vec![
        (DISCOVER_AT, &discover),
        (REQUEST_AT, &request),
        (ARP_AT, &arp),
    ];
    for (i, udp) in udps.iter().enumerate() {
        assert!(udp.len() <= UDP_SLOT as usize);
        templates.push((UDP_AT + UDP_SLOT * i as u16, udp));
    }
    for (at, bytes) in templates {
        let at = at as usize;
        assert!(
            image[at..at + bytes.len()].iter().all(|&b| b == 0xf4),
            "code overlaps the templates"
        );
        image[at..at + bytes.len()].copy_from_slice(bytes);
    }
    image
}

#[test]
fn dhcp_udp_through_nat_and_a_forwarded_port() {
    if !kvm_available() {
        return;
    }
    let echo = UdpSocket::bind("127.0.0.1:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();
    let echo_thread = std::thread::spawn(move || {
        echo.set_read_timeout(Some(Duration::from_secs(120)))
            .unwrap();
        let mut buf = [0u8; 1500];
        let (n, from) = echo.recv_from(&mut buf).unwrap();
        let mut reply = b"echo of ".to_vec();
        reply.extend_from_slice(&buf[..n]);
        echo.send_to(&reply, from).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    });
    let forward_port = free_port_below_ephemeral();

    let scratch = tempfile::tempdir().unwrap();
    let nat_guest = Guest {
        mac: MAC,
        server: GATEWAY,
        datagrams: vec![Datagram {
            dst_mac: [0xff; 6],
            dst_ip: GATEWAY,
            dport: echo_port,
            payload: b"ping-from-guest".to_vec(),
        }],
        steps: vec![
            Step::Send(0),
            Step::Recv("echo: "),
            Step::Print("READY\n"),
            Step::Recv("forwarded: "),
        ],
    };
    let image = guest::write(scratch.path(), "guest.bin", &guest_image(&nat_guest));
    let domain = Domain::new("net").firmware(&image).device(&format!(
        "<interface type='user'><mac address='52:54:00:12:34:56'/><model type='virtio'/>\
         <portForward proto='udp' address='127.0.0.1'><range start='{forward_port}' to='{GUEST_PORT}'/></portForward></interface>"
    ));
    let mut vm = Vm::start(&domain);
    let timeout = Duration::from_secs(120);
    vm.wait_for("virtio-net up\n", timeout);
    vm.wait_for("DHCP offer 192.168.122.2\n", timeout);
    vm.wait_for("DHCP ack\n", timeout);
    vm.wait_for("READY\n", timeout);
    assert_eq!(echo_thread.join().unwrap(), "ping-from-guest");
    let serial = vm.serial();
    assert!(
        serial.contains("echo: echo of ping-from-guest\n"),
        "{serial}"
    );

    let sender = UdpSocket::bind("127.0.0.1:0").unwrap();
    sender
        .send_to(b"hello-through-the-forward", ("127.0.0.1", forward_port))
        .unwrap();
    vm.wait_for("forwarded: hello-through-the-forward\n", timeout);
    let status = vm.wait_exit(timeout);
    assert!(status.success(), "{status}\n{}", vm.stderr());
    assert!(!vm.serial().contains("FAIL"), "{}", vm.serial());
}

/// A UDP port on 127.0.0.1 free now, below Linux's ephemeral range
/// (32768–60999): a port the kernel hands out for `bind(0)` could be
/// given to another test's socket between this probe and the VM's bind.
fn free_port_below_ephemeral() -> u16 {
    let start = 20000 + (std::process::id() % 10000) as u16;
    (start..32768)
        .chain(20000..start)
        .find(|port| UdpSocket::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free UDP port below 32768")
}

#[test]
fn isolated_network_joins_its_vms_and_nothing_else() {
    if !kvm_available() {
        return;
    }
    const SERVER: [u8; 4] = [10, 50, 0, 1];
    const MAC_A: [u8; 6] = [0x52, 0x54, 0x00, 0xaa, 0x00, 0x01];
    const MAC_B: [u8; 6] = [0x52, 0x54, 0x00, 0xbb, 0x00, 0x02];
    let home = Home::new();
    let xml = home.path("lab.xml");
    std::fs::write(
        &xml,
        "<network><name>lab</name><ip address='10.50.0.1' prefix='24'><dhcp><range start='10.50.0.10' end='10.50.0.20'/></dhcp></ip></network>",
    )
    .unwrap();
    home.ok(&["net-define", xml.to_str().unwrap()]);
    home.ok(&["net-start", "lab"]);
    let _guard = NetworkGuard(&home, "lab");
    assert!(home.ok(&["net-list"]).contains("lab"));

    // A UDP echo server on the host, which a NAT guest would reach at its
    // gateway address; on an isolated network nothing may reach it.
    let echo = UdpSocket::bind("0.0.0.0:0").unwrap();
    let echo_port = echo.local_addr().unwrap().port();

    let a = Guest {
        mac: MAC_A,
        server: SERVER,
        datagrams: Vec::new(),
        steps: vec![Step::Print("READY\n"), Step::Recv("peer: ")],
    };
    let b = Guest {
        mac: MAC_B,
        server: SERVER,
        datagrams: vec![
            Datagram {
                dst_mac: MAC_A,
                dst_ip: [10, 50, 0, 10],
                dport: GUEST_PORT,
                payload: b"hello-from-b".to_vec(),
            },
            Datagram {
                dst_mac: [0xff; 6],
                dst_ip: SERVER,
                dport: echo_port,
                payload: b"ping-from-b".to_vec(),
            },
        ],
        steps: vec![
            Step::Send(0),
            Step::Send(1),
            Step::Print("SENT\n"),
            Step::Recv("echo: "),
        ],
    };
    let nic = |mac: &str| {
        format!("<interface type='network'><mac address='{mac}'/><source network='lab'/><model type='virtio'/></interface>")
    };
    let scratch = tempfile::tempdir().unwrap();
    let env = [("VIREO_HOME", home.dir.path().to_str().unwrap())];
    let timeout = Duration::from_secs(120);

    let image_a = guest::write(scratch.path(), "a.bin", &guest_image(&a));
    let mut vm_a = Vm::start_with_env(
        &Domain::new("a")
            .firmware(&image_a)
            .device(&nic("52:54:00:aa:00:01")),
        &[],
        &env,
    );
    vm_a.wait_for("DHCP offer 10.50.0.10\n", timeout);
    vm_a.wait_for("READY\n", timeout);

    let image_b = guest::write(scratch.path(), "b.bin", &guest_image(&b));
    let mut vm_b = Vm::start_with_env(
        &Domain::new("b")
            .firmware(&image_b)
            .device(&nic("52:54:00:bb:00:02")),
        &[],
        &env,
    );
    vm_b.wait_for("DHCP offer 10.50.0.11\n", timeout);
    vm_b.wait_for("DHCP ack\n", timeout);
    vm_b.wait_for("SENT\n", timeout);

    vm_a.wait_for("peer: hello-from-b\n", timeout);
    let status = vm_a.wait_exit(timeout);
    assert!(status.success(), "{status}\n{}", vm_a.stderr());

    // Nothing reaches the host from the isolated network.
    echo.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 1500];
    if let Ok((n, from)) = echo.recv_from(&mut buf) {
        panic!(
            "the host got {:?} from {from} off an isolated network",
            String::from_utf8_lossy(&buf[..n])
        );
    }
    assert!(vm_b.exited().is_none(), "{}", vm_b.serial());
    assert!(!vm_b.serial().contains("echo:"), "{}", vm_b.serial());

    // The switch's DHCP server kept the two leases.
    let leases = home.ok(&["net-dhcp-leases", "lab"]);
    assert!(leases.contains("52:54:00:aa:00:01"), "{leases}");
    assert!(leases.contains("10.50.0.10/24"), "{leases}");
    assert!(leases.contains("52:54:00:bb:00:02"), "{leases}");
    assert!(leases.contains("10.50.0.11/24"), "{leases}");
    drop(vm_b);

    home.ok(&["net-destroy", "lab"]);
    let list = home.ok(&["net-list", "--all"]);
    assert!(
        list.lines()
            .any(|l| l.contains("lab") && l.contains("inactive")),
        "{list}"
    );
    // A VM cannot join a network that is not running.
    let mut vm_c = Vm::start_with_env(
        &Domain::new("c")
            .firmware(&image_a)
            .device(&nic("52:54:00:aa:00:01")),
        &[],
        &env,
    );
    let status = vm_c.wait_exit(timeout);
    assert!(!status.success());
    assert!(
        vm_c.stderr().contains("network 'lab' is not active"),
        "{}",
        vm_c.stderr()
    );
}

/// The guests of scripts/bench_net.py (NAT throughput, Vireo against
/// QEMU), written to `$VIREO_NET_BENCH_DIR`: `tx.bin` sends
/// `$VIREO_NET_BENCH_COUNT` datagrams of 1400 bytes to the host's UDP port
/// `$VIREO_NET_BENCH_PORT` through the gateway and prints "SENT";
/// `rx.bin` prints READY and counts the datagrams that reach its port
/// 7777 until one starting with 'E', then prints "received N".
#[test]
#[ignore = "makes the guests of scripts/bench_net.py"]
fn write_bench_guests() {
    let var = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("set {name}"));
    let dir = std::path::PathBuf::from(var("VIREO_NET_BENCH_DIR"));
    let port: u16 = var("VIREO_NET_BENCH_PORT").parse().unwrap();
    let count: u32 = var("VIREO_NET_BENCH_COUNT").parse().unwrap();
    let tx = Guest {
        mac: MAC,
        server: GATEWAY,
        datagrams: vec![Datagram {
            dst_mac: [0xff; 6],
            dst_ip: GATEWAY,
            dport: port,
            payload: vec![b'x'; 1400],
        }],
        steps: vec![
            Step::Print("START\n"),
            Step::Blast(0, count),
            Step::Print("SENT\n"),
        ],
    };
    let rx = Guest {
        mac: MAC,
        server: GATEWAY,
        datagrams: Vec::new(),
        steps: vec![Step::Print("READY\n"), Step::Count],
    };
    guest::write(&dir, "tx.bin", &guest_image(&tx));
    guest::write(&dir, "rx.bin", &guest_image(&rx));
}

/// Network namespaces made by a test, deleted (with their processes'
/// links) when it ends.
struct Netns(Vec<String>);

impl Drop for Netns {
    fn drop(&mut self) {
        for ns in &self.0 {
            let _ = std::process::Command::new("ip")
                .args(["netns", "pids", ns])
                .output()
                .map(|out| {
                    for pid in String::from_utf8_lossy(&out.stdout).split_whitespace() {
                        let _ = std::process::Command::new("kill").arg(pid).status();
                    }
                });
            let _ = std::process::Command::new("ip")
                .args(["netns", "del", ns])
                .status();
        }
    }
}

/// Waits until `dnsmasq`, started in namespace `ns`, listens on the DHCP
/// port: the test guests send one DISCOVER and wait for its answer, so one
/// sent before the server is up would never be answered.
fn wait_for_dhcp_server(ns: &str, dnsmasq: &mut std::process::Child) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let listening = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "ss", "-Hlun", "sport = :67"])
            .output()
            .expect("run ss");
        if !listening.stdout.is_empty() {
            return;
        }
        if let Some(status) = dnsmasq.try_wait().unwrap() {
            let mut stderr = String::new();
            use std::io::Read;
            let _ = dnsmasq.stderr.take().unwrap().read_to_string(&mut stderr);
            panic!("dnsmasq exited ({status}) before serving DHCP: {stderr}");
        }
        assert!(
            std::time::Instant::now() < deadline,
            "dnsmasq in {ns} not listening on port 67 after 30 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn ip(args: &[&str]) {
    guest::run_tool(std::process::Command::new("ip").args(args));
}

#[test]
fn bridged_nic_gets_its_address_from_the_bridges_dhcp_server() {
    if !kvm_available() {
        return;
    }
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var("VIREO_REQUIRE_TOOLS").as_deref() == Ok("1") {
            panic!("the bridged test needs root (network namespaces), and VIREO_REQUIRE_TOOLS=1");
        }
        eprintln!("SKIPPED: the bridged test needs root to make network namespaces");
        return;
    }
    common::require_program("ip");
    common::require_program("dnsmasq");
    // The VM's namespace has bridge br0 with one end of a veth pair; the
    // other end is in a second namespace where dnsmasq serves DHCP.
    let id = std::process::id();
    let (vm_ns, lan_ns) = (format!("vireo-vm-{id}"), format!("vireo-lan-{id}"));
    ip(&["netns", "add", &vm_ns]);
    let _cleanup = Netns(vec![vm_ns.clone(), lan_ns.clone()]);
    ip(&["netns", "add", &lan_ns]);
    let in_vm = |args: &[&str]| {
        let mut all = vec!["-n", vm_ns.as_str()];
        all.extend_from_slice(args);
        ip(&all);
    };
    in_vm(&["link", "add", "br0", "type", "bridge"]);
    in_vm(&["link", "set", "br0", "up"]);
    in_vm(&[
        "link", "add", "veth0", "type", "veth", "peer", "name", "veth1",
    ]);
    in_vm(&["link", "set", "veth0", "master", "br0", "up"]);
    in_vm(&["link", "set", "veth1", "netns", &lan_ns]);
    ip(&["-n", &lan_ns, "addr", "add", "10.60.0.1/24", "dev", "veth1"]);
    ip(&["-n", &lan_ns, "link", "set", "veth1", "up"]);
    let scratch = tempfile::tempdir().unwrap();
    let leases = scratch.path().join("dnsmasq.leases");
    let mut dnsmasq = std::process::Command::new("ip")
        .args([
            "netns",
            "exec",
            &lan_ns,
            "dnsmasq",
            "--no-daemon",
            "--port=0",
        ])
        .args([
            "--interface=veth1",
            "--bind-interfaces",
            "--no-resolv",
            "--no-hosts",
        ])
        .args(["--dhcp-range=10.60.0.50,10.60.0.50,255.255.255.0,1h"])
        .arg(format!("--dhcp-leasefile={}", leases.display()))
        .arg(format!(
            "--pid-file={}",
            scratch.path().join("dnsmasq.pid").display()
        ))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("start dnsmasq");

    wait_for_dhcp_server(&lan_ns, &mut dnsmasq);

    let g = Guest {
        mac: MAC,
        server: [10, 60, 0, 1],
        datagrams: Vec::new(),
        steps: vec![Step::Print("BRIDGED\n")],
    };
    let image = guest::write(scratch.path(), "guest.bin", &guest_image(&g));
    let timeout = Duration::from_secs(120);
    // Starts the guest in the VM's namespace on a NIC with `source`,
    // with or without CAP_NET_ADMIN.
    let start = |source: &str, net_admin: bool| {
        let domain = Domain::new("bridged").firmware(&image).device(&format!(
            "<interface type='{}'><mac address='52:54:00:12:34:56'/>{source}<model type='virtio'/></interface>",
            if source.contains("network=") { "network" } else { "bridge" }
        ));
        let mut wrapper = vec!["ip", "netns", "exec", vm_ns.as_str()];
        if !net_admin {
            wrapper.extend(["setpriv", "--bounding-set=-net_admin"]);
        }
        let home = scratch.path().to_str().unwrap();
        Vm::start_wrapped(&domain, &wrapper, &[], &[("VIREO_HOME", home)])
    };
    // Waits for the guest's DHCP exchange through the bridge and its exit.
    let leases_through_bridge = |mut vm: Vm| {
        vm.wait_for("DHCP offer 10.60.0.50\n", timeout);
        vm.wait_for("DHCP ack\nBRIDGED\n", timeout);
        let status = vm.wait_exit(timeout);
        assert!(status.success(), "{}\n{}", vm.serial(), vm.stderr());
    };
    // With the right: Vireo makes the TAP and puts it on the bridge.
    leases_through_bridge(start(
        "<source bridge='br0'/><target dev='vireotap0'/>",
        true,
    ));
    let leases = std::fs::read_to_string(&leases).unwrap_or_default();
    assert!(leases.contains("52:54:00:12:34:56 10.60.0.50"), "{leases}");

    // Without it, the error says what to do...
    let mut vm = start("<source bridge='br0'/>", false);
    assert!(!vm.wait_exit(timeout).success());
    let stderr = vm.stderr();
    assert!(
        stderr.contains("sudo ip tuntap add dev vireo0 mode tap user $USER")
            && stderr.contains("sudo ip link set vireo0 master br0 up")
            && stderr.contains("<target dev='vireo0'/>"),
        "{stderr}"
    );
    // ...and doing it works: a persistent TAP the user owns, on the bridge.
    in_vm(&["tuntap", "add", "dev", "vireo0", "mode", "tap", "user", "0"]);
    in_vm(&["link", "set", "vireo0", "master", "br0", "up"]);
    for source in [
        "<source bridge='br0'/><target dev='vireo0'/>",
        "<source network='lan'/><target dev='vireo0'/>",
    ] {
        if source.contains("lan") {
            // The same through a libvirt network in bridge mode.
            let net = scratch.path().join("lan.xml");
            std::fs::write(
                &net,
                "<network><name>lan</name><forward mode='bridge'/><bridge name='br0'/></network>",
            )
            .unwrap();
            for verb in [
                vec!["net-define", net.to_str().unwrap()],
                vec!["net-start", "lan"],
            ] {
                let status = std::process::Command::new("ip")
                    .args(["netns", "exec", &vm_ns, env!("CARGO_BIN_EXE_vireo")])
                    .args(&verb)
                    .env("VIREO_HOME", scratch.path())
                    .status()
                    .unwrap();
                assert!(status.success(), "{verb:?}");
            }
        }
        leases_through_bridge(start(source, false));
    }
    let _ = dnsmasq.kill();
    let _ = dnsmasq.wait();
}
