//! fw_cfg, the VGA card, the UHCI controller and the USB tablet behind it:
//! each driven by a program of the guest's port, MMIO and RAM accesses.

use std::sync::Arc;

use super::input::{load_ram_image, ram, run_program, Image, Input, Machine, Program};
use crate::devices::bus::Bus;
use crate::devices::fw_cfg::{keys, FwCfg};
use crate::devices::irq::FakeIrq;
use crate::devices::pci::PciDevice;
use crate::devices::usb::hid_tablet::{HidTablet, TabletInput};
use crate::devices::usb::uhci::{Uhci, BAR_IO};
use crate::devices::usb::UsbDevice;
use crate::devices::vga::{BlinkPhase, Renderer, StdVga, Vram, BAR_MMIO};
use crate::devices::{BusDevice, GuestRam};
use crate::display::Display;

/// fw_cfg at its ports (selector, data, DMA address) with the items a VM
/// has: the DMA interface reads control structures from guest RAM and
/// reads, skips or writes items there.
struct FwCfgMachine {
    fw_cfg: FwCfg,
    mem: GuestRam,
}

impl Machine for FwCfgMachine {
    fn regions(&self) -> &[(u8, u64, u64)] {
        &[(0, 0, 12)]
    }
    fn read(&mut self, _space: u8, addr: u64, data: &mut [u8]) {
        self.fw_cfg.read(addr, data);
    }
    fn write(&mut self, _space: u8, addr: u64, data: &[u8]) {
        self.fw_cfg.write(addr, data);
    }
    fn tick(&mut self, _arg: u8) {}
    fn ram(&self) -> &GuestRam {
        &self.mem
    }
}

pub fn fw_cfg(data: &[u8]) {
    let mut input = Input::new(data);
    let mem = ram();
    load_ram_image(&mut input, &mem);
    let mut fw_cfg = FwCfg::new(mem.clone());
    fw_cfg.add_u64(keys::RAM_SIZE, 64 << 10);
    fw_cfg.add_u16(keys::NB_CPUS, 1);
    fw_cfg.add_string(keys::KERNEL_CMDLINE, "console=ttyS0");
    let _ = fw_cfg.add_file("etc/boot-fail-wait", 5u32.to_le_bytes().to_vec());
    let _ = fw_cfg.add_file("bootorder", b"/pci@i0cf8/ide@1,1/drive@0/disk@0\n".to_vec());
    let _ = fw_cfg.add_file("etc/acpi/tables", vec![0x41; 300]);
    run_program(&mut FwCfgMachine { fw_cfg, mem }, &mut input);
}

/// DMA control structure (big-endian control, length, address).
fn dma_access(image: &mut Image, at: usize, control: u32, len: u32, addr: u64) {
    image.put(at, &control.to_be_bytes());
    image.put(at + 4, &len.to_be_bytes());
    image.put(at + 8, &addr.to_be_bytes());
}

/// Seeds: the signature read through the data port, then DMA reads of the
/// file directory and a file, a skip, and a write, as SeaBIOS and Linux
/// do them.
pub fn fw_cfg_seeds() -> Vec<Vec<u8>> {
    let mut image = Image::new(0x400);
    // select + read the directory, 256 bytes to 0x100.
    dma_access(&mut image, 0x00, 0x19 << 16 | 0x08 | 0x02, 256, 0x100);
    // select file 0x20, skip 2, read 2.
    dma_access(&mut image, 0x10, 0x20 << 16 | 0x08 | 0x04, 2, 0);
    dma_access(&mut image, 0x20, 0x02, 2, 0x200);
    // a write to the selected item.
    dma_access(&mut image, 0x30, 0x10, 4, 0x300);
    let mut p = Program::with_ram(&image.0);
    p.write(0, 0, 2, 0).read_string(0, 1, 4).read(0, 4, 8);
    for at in [0u64, 0x10, 0x20, 0x30] {
        p.write(0, 4, 4, 0)
            .write(0, 8, 4, u64::from((at as u32).swap_bytes()));
    }
    p.write(0, 4, 8, 0x00u64.swap_bytes());
    vec![p.build()]
}

/// The standard VGA card: its legacy ports (sequencer, graphics and
/// attribute controllers, CRTC, DAC, VBE DISPI), the 0xA0000 window and
/// the MMIO BAR; a tick renders a frame, as the display thread does.
struct VgaMachine {
    card: StdVga,
    bus: Bus,
    renderer: Renderer,
    display: Arc<Display>,
    frames: usize,
    mem: GuestRam,
}

const VGA_REGIONS: [(u8, u64, u64); 5] = [
    (0, 0x3b0, 0x0c),
    (0, 0x3c0, 0x20),
    (0, 0x1ce, 2),
    (1, 0xa_0000, 0x2_0000),
    (2, 0x400, 0x200),
];

/// Frames rendered per input at most: a frame costs a full redraw.
const MAX_FRAMES: usize = 8;

impl Machine for VgaMachine {
    fn regions(&self) -> &[(u8, u64, u64)] {
        &VGA_REGIONS
    }
    fn read(&mut self, space: u8, addr: u64, data: &mut [u8]) {
        match space {
            0 | 1 => {
                self.bus.read(addr, data);
            }
            _ => self.card.read_bar(BAR_MMIO, addr, data),
        }
    }
    fn write(&mut self, space: u8, addr: u64, data: &[u8]) {
        match space {
            0 | 1 => {
                self.bus.write(addr, data);
            }
            _ => self.card.write_bar(BAR_MMIO, addr, data),
        }
    }
    fn tick(&mut self, arg: u8) {
        if self.frames < MAX_FRAMES {
            self.frames += 1;
            let frame = self
                .card
                .vga()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .frame();
            let blink = BlinkPhase::at(std::time::Duration::from_millis(u64::from(arg) * 100));
            self.renderer.render(&frame, &self.display, blink);
        }
    }
    fn ram(&self) -> &GuestRam {
        &self.mem
    }
}

pub fn vga(data: &[u8]) {
    let Ok(vram) = Vram::new(Vram::MIN_SIZE) else {
        return;
    };
    let card = StdVga::new(vram, None);
    let bus = Bus::new();
    let legacy = card.legacy_devices();
    for (port, len, device) in legacy.ports {
        let _ = bus.insert(device, u64::from(port), len);
    }
    let (base, len, window) = legacy.window;
    let _ = bus.insert(window, base, len);
    let mut machine = VgaMachine {
        card,
        bus,
        renderer: Renderer::new(),
        display: Display::new(640, 480),
        frames: 0,
        mem: ram(),
    };
    let mut input = Input::new(data);
    run_program(&mut machine, &mut input);
    machine.tick(0);
}

/// Seeds: a VBE mode set (800x600x32, then 8 bpp with a virtual width and
/// offsets), a mode 13h-like register set with palette writes, and text
/// mode with pixels and characters written through the window.
pub fn vga_seeds() -> Vec<Vec<u8>> {
    let mut vbe = Program::default();
    for (index, value) in [(4u64, 0u64), (1, 800), (2, 600), (3, 32), (4, 0x41)] {
        vbe.write(2, 0, 2, index).write(2, 1, 2, value);
    }
    vbe.write_string(3, 0, &[0x80; 64]).tick(0);
    for (index, value) in [(3u64, 8u64), (6, 1024), (8, 3), (9, 5)] {
        vbe.write(2, 0, 2, index).write(2, 1, 2, value);
    }
    vbe.read(2, 1, 2).tick(1);
    // The same through the MMIO BAR (DISPI at 0x500).
    vbe.write(4, 0x100 + 2 * 3, 2, 16).tick(2);

    let mut planar = Program::default();
    // Misc output, sequencer (chain-4), CRTC unlock and a few timings,
    // graphics controller (256-colour shift), attribute controller.
    planar.write(1, 0x02, 1, 0x63);
    for (i, v) in [(0u64, 3u64), (1, 1), (2, 0x0f), (3, 0), (4, 0x0e)] {
        planar.write(1, 0x04, 1, i).write(1, 0x05, 1, v);
    }
    for (i, v) in [
        (0x11u64, 0x0eu64),
        (0x01, 0x4f),
        (0x12, 0x8f),
        (0x13, 0x28),
        (0x09, 0x41),
    ] {
        planar.write(1, 0x14, 1, i).write(1, 0x15, 1, v);
    }
    for (i, v) in [(5u64, 0x40u64), (6, 0x05)] {
        planar.write(1, 0x0e, 1, i).write(1, 0x0f, 1, v);
    }
    planar.read(1, 0x1a, 1);
    for (i, v) in [(0x10u64, 0x41u64), (0x12, 0x0f), (0x14, 0)] {
        planar.write(1, 0x00, 1, i).write(1, 0x00, 1, v);
    }
    planar.write(1, 0x00, 1, 0x20);
    planar.write(1, 0x08, 1, 0);
    for v in 0..48u64 {
        planar.write(1, 0x09, 1, v);
    }
    planar.write_string(3, 0, &[7; 200]).tick(0);
    planar
        .write(1, 0x07, 1, 0)
        .read(1, 0x09, 1)
        .read(0, 0x0a, 1);

    let mut text = Program::default();
    // Back to the power-on text mode: characters and attributes at 0xB8000.
    text.write_string(3, 0x8000, b"H\x07e\x07l\x07l\x07o\x07");
    text.write(1, 0x14, 1, 0x0e)
        .write(1, 0x15, 1, 0)
        .tick(3)
        .tick(7);
    vec![vbe.build(), planar.build(), text.build()]
}

/// The UHCI controller with the tablet on port 1: its I/O BAR and PCI
/// configuration, frame lists, queue heads and TDs in guest RAM, and the
/// frame timer as ticks.
struct UhciMachine {
    uhci: Uhci,
    mem: GuestRam,
    frames: usize,
}

/// Frames run per input at most (each walks up to the controller's own
/// element limit).
const MAX_USB_FRAMES: usize = 64;

impl Machine for UhciMachine {
    fn regions(&self) -> &[(u8, u64, u64)] {
        &[(0, 0, 0x20), (1, 0, 0x100)]
    }
    fn read(&mut self, space: u8, addr: u64, data: &mut [u8]) {
        match space {
            0 => self.uhci.read_bar(BAR_IO, addr, data),
            _ => self.uhci.read_config(addr as usize, data),
        }
    }
    fn write(&mut self, space: u8, addr: u64, data: &[u8]) {
        match space {
            0 => self.uhci.write_bar(BAR_IO, addr, data),
            _ => self.uhci.write_config(addr as usize, data),
        }
    }
    fn tick(&mut self, arg: u8) {
        for _ in 0..=arg % 4 {
            if self.frames < MAX_USB_FRAMES {
                self.frames += 1;
                self.uhci.run_frame();
            }
        }
    }
    fn ram(&self) -> &GuestRam {
        &self.mem
    }
}

pub fn uhci(data: &[u8]) {
    let mut input = Input::new(data);
    let mem = ram();
    load_ram_image(&mut input, &mem);
    let mut uhci = Uhci::new(mem.clone(), FakeIrq::new());
    let tablet = TabletInput::new();
    uhci.attach(0, Box::new(HidTablet::new(tablet.clone())));
    uhci.write_config(4, &[0x05, 0x00]);
    let mut machine = UhciMachine {
        uhci,
        mem,
        frames: 0,
    };
    run_program(&mut machine, &mut input);
    tablet.pointer(100, 200, 1, 1);
    machine.tick(3);
}

const TD_ACTIVE: u32 = 1 << 23;
const LINK_TERMINATE: u32 = 1;
const LINK_QH: u32 = 2;
const LINK_DEPTH_FIRST: u32 = 4;

fn token(pid: u8, addr: u8, ep: u8, len: usize) -> u32 {
    let max = (len as u32).wrapping_sub(1) & 0x7ff;
    (max << 21) | (u32::from(ep) << 15) | (u32::from(addr) << 8) | u32::from(pid)
}

/// Seeds: a schedule as Linux builds it (frame list → QH → TDs) carrying
/// GET_DESCRIPTOR(DEVICE), SET_ADDRESS, then an interrupt IN.
pub fn uhci_seeds() -> Vec<Vec<u8>> {
    let (frame_list, qh, tds, buf) = (0x1000usize, 0x2000usize, 0x3000usize, 0x4000usize);
    let mut image = Image::new(0x4100);
    for i in 0..1024 {
        image.u32(frame_list + 4 * i, qh as u32 | LINK_QH);
    }
    image.u32(qh, LINK_TERMINATE).u32(qh + 4, tds as u32);
    image.put(buf, &[0x80, 6, 0, 1, 0, 0, 18, 0]);
    let td = |image: &mut Image, n: usize, last: bool, token: u32, buffer: usize| {
        let at = tds + 16 * n;
        let link = if last {
            LINK_TERMINATE
        } else {
            (at as u32 + 16) | LINK_DEPTH_FIRST
        };
        image
            .u32(at, link)
            .u32(at + 4, TD_ACTIVE | 3 << 27)
            .u32(at + 8, token)
            .u32(at + 12, buffer as u32);
    };
    td(&mut image, 0, false, token(0x2d, 0, 0, 8), buf);
    td(&mut image, 1, false, token(0x69, 0, 0, 8), buf + 0x10);
    td(&mut image, 2, false, token(0x69, 0, 0, 8), buf + 0x18);
    td(&mut image, 3, false, token(0x69, 0, 0, 2), buf + 0x20);
    td(&mut image, 4, true, token(0xe1, 0, 0, 0), 0);
    let mut p = Program::with_ram(&image.0);
    // Port reset and enable, frame list base, interrupts, run.
    p.write(0, 0x10, 2, 0x200)
        .write(0, 0x10, 2, 0)
        .write(0, 0x10, 2, 0x0006)
        .write(0, 0x08, 4, frame_list as u64)
        .write(0, 0x04, 2, 0x0f)
        .write(0, 0x00, 2, 1)
        .tick(0)
        .read(0, 0x02, 2)
        .write(0, 0x02, 2, 0x3f);
    // SET_ADDRESS 1, SET_CONFIGURATION 1, then an interrupt IN on ep 1.
    p.ram(buf as u16, &[0, 5, 1, 0, 0, 0, 0, 0]);
    for n in 0..2u16 {
        p.ram(
            tds as u16 + 16 * n + 4,
            &(TD_ACTIVE | 3 << 27).to_le_bytes(),
        );
    }
    p.ram(
        tds as u16,
        &(LINK_DEPTH_FIRST | (tds as u32 + 0x40)).to_le_bytes(),
    )
    .ram(tds as u16 + 0x40, &LINK_TERMINATE.to_le_bytes())
    .ram(tds as u16 + 0x44, &(TD_ACTIVE | 3 << 27).to_le_bytes())
    .ram(tds as u16 + 0x48, &token(0x69, 0, 0, 0).to_le_bytes())
    .ram(qh as u16 + 4, &(tds as u32).to_le_bytes())
    .tick(1);
    p.ram(buf as u16, &[0, 9, 1, 0, 0, 0, 0, 0])
        .ram(tds as u16 + 8, &token(0x2d, 1, 0, 8).to_le_bytes())
        .ram(tds as u16 + 4, &(TD_ACTIVE | 3 << 27).to_le_bytes())
        .ram(tds as u16 + 0x48, &token(0x69, 1, 0, 0).to_le_bytes())
        .ram(tds as u16 + 0x44, &(TD_ACTIVE | 3 << 27).to_le_bytes())
        .ram(qh as u16 + 4, &(tds as u32).to_le_bytes())
        .tick(1);
    p.ram(tds as u16 + 0x40, &LINK_TERMINATE.to_le_bytes())
        .ram(
            tds as u16 + 0x44,
            &(TD_ACTIVE | 3 << 27 | 1 << 24).to_le_bytes(),
        )
        .ram(tds as u16 + 0x48, &token(0x69, 1, 1, 8).to_le_bytes())
        .ram(qh as u16 + 4, &(tds as u32 + 0x40).to_le_bytes())
        .tick(2);
    vec![p.build()]
}

/// USB control transfers straight to the tablet: each step is a kind byte
/// (SETUP with 8 request bytes, IN of a length, OUT with bytes, a bus
/// reset, or new pointer input) against endpoint 0 or 1.
pub fn usb_control(data: &[u8]) {
    let mut input = Input::new(data);
    let tablet_input = TabletInput::new();
    let mut tablet = HidTablet::new(tablet_input.clone());
    let mut steps = 0;
    while !input.is_empty() && steps < 1024 {
        steps += 1;
        match input.u8() % 5 {
            0 => {
                let mut request = [0u8; 8];
                request.copy_from_slice(&{
                    let mut r = [0u8; 8];
                    let got = input.bytes(8);
                    r[..got.len()].copy_from_slice(got);
                    r
                });
                let _ = tablet.setup(request);
            }
            1 => {
                let endpoint = input.u8();
                let mut buf = vec![0u8; usize::from(input.u16() % 2048)];
                let _ = tablet.data_in(endpoint, &mut buf);
            }
            2 => {
                let endpoint = input.u8();
                let len = usize::from(input.u8());
                let _ = tablet.data_out(endpoint, input.bytes(len));
            }
            3 => tablet.reset(),
            _ => {
                let (x, y, buttons, wheel) = (input.u16(), input.u16(), input.u8(), input.u8());
                tablet_input.pointer(x, y, buttons, wheel as i8);
            }
        }
        let _ = tablet.address();
    }
}

/// Seeds: enumeration as a host does it (descriptors of every kind,
/// SET_ADDRESS, SET_CONFIGURATION, HID class requests), then a report.
pub fn usb_control_seeds() -> Vec<Vec<u8>> {
    let mut seed = Vec::new();
    let setup = |seed: &mut Vec<u8>, request: [u8; 8], read: u16| {
        seed.push(0);
        seed.extend(request);
        if read > 0 {
            seed.push(1);
            seed.push(0);
            seed.extend(read.to_le_bytes());
        }
        // Status stage.
        seed.extend(if read > 0 {
            vec![2, 0, 0]
        } else {
            vec![1, 0, 0, 0]
        });
    };
    setup(&mut seed, [0x80, 6, 0, 1, 0, 0, 64, 0], 64);
    setup(&mut seed, [0, 5, 2, 0, 0, 0, 0, 0], 0);
    setup(&mut seed, [0x80, 6, 0, 2, 0, 0, 0xff, 0], 255);
    setup(&mut seed, [0x80, 6, 0, 3, 0, 0, 0xff, 0], 255);
    setup(&mut seed, [0x80, 6, 1, 3, 9, 4, 0xff, 0], 255);
    setup(&mut seed, [0x81, 6, 0, 0x22, 0, 0, 0x80, 0], 128);
    setup(&mut seed, [0, 9, 1, 0, 0, 0, 0, 0], 0);
    setup(&mut seed, [0x21, 0x0a, 0, 0, 0, 0, 0, 0], 0);
    setup(&mut seed, [0xa1, 1, 0, 1, 0, 0, 6, 0], 6);
    setup(&mut seed, [0x80, 0, 0, 0, 0, 0, 2, 0], 2);
    setup(&mut seed, [0x02, 1, 0, 0, 0x81, 0, 0, 0], 0);
    seed.extend([4, 0x34, 0x12, 0x78, 0x56, 1, 0xff]);
    seed.extend([1, 1, 8, 0]);
    seed.push(3);
    vec![seed]
}
