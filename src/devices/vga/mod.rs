//! The standard VGA card of a QEMU PC ("std" VGA, PCI 1234:1111): an IBM
//! VGA with the Bochs VBE extension and a linear framebuffer in a PCI BAR,
//! the card SeaVGABIOS's `vgabios-stdvga.bin` drives.
//!
//! References: IBM VGA XGA Technical Reference Manual (VGA chapter) and
//! FreeVGA for the VGA; Bochs' DISPI definitions for VBE; QEMU's
//! `hw/display/vga-pci.c` for the PCI function (BAR0 = VRAM, prefetchable;
//! BAR2 = 4 KiB of MMIO with the VGA ports at 0x400, the DISPI registers at
//! 0x500 and QEMU's extension registers at 0x600; an expansion ROM).
//!
//! The card's parts share one [`Vga`] behind a mutex; each way in is a
//! small adapter: [`VgaPorts`] (0x3B0–0x3DF), [`VbePorts`] (0x1CE/0x1CF),
//! [`VgaWindow`] (0xA0000–0xBFFFF) and the PCI function [`StdVga`]. The
//! VMM renders with a [`Renderer`] on its own thread from the [`Frame`]s
//! [`Vga::frame`] hands out.
//!
//! The linear framebuffer should not trap: when the guest places BAR0 and
//! enables memory decoding, the card asks its [`VramMapper`] (the VMM) to
//! map the VRAM there, and reads the pages written through that mapping
//! back from it (KVM's dirty log). Until then, or if mapping fails, BAR0
//! accesses are emulated one by one.
//!
//! Not emulated: see each part's notes; in short, no CGA 2/4-colour modes,
//! no pixel panning or overscan border, no big-endian framebuffer.

pub mod memory;
pub mod registers;
pub mod render;
pub mod vbe;

use std::sync::{Arc, Mutex};

use memory::VgaMemory;
pub use memory::{Vram, VramError, PAGE_SIZE};
use registers::Registers;
pub use render::{BlinkPhase, Frame, Renderer};
use vbe::Vbe;

use super::bus::SharedDevice;
use super::pci::{BarKind, PciClass, PciConfig, PciDevice, PCI_ROM_BAR};
use super::BusDevice;
use crate::guest_warn;

pub const PCI_VENDOR_ID: u16 = 0x1234;
pub const PCI_DEVICE_ID: u16 = 0x1111;
/// Revision 2: the QEMU extension registers exist in BAR2.
const PCI_REVISION: u8 = 2;
const PCI_CLASS_VGA: PciClass = PciClass {
    base: 0x03,
    sub: 0x00,
    prog_if: 0x00,
};
/// QEMU's subsystem ids, which every QEMU PCI device carries.
const SUBSYSTEM_VENDOR_ID: u16 = 0x1af4;
const SUBSYSTEM_ID: u16 = 0x1100;

pub const BAR_VRAM: usize = 0;
pub const BAR_MMIO: usize = 2;
const MMIO_SIZE: u64 = 0x1000;
/// BAR2 layout (QEMU "stdvga" MMIO): VGA ports 0x3C0–0x3DF, the DISPI
/// registers as 16-bit words, and the extension registers.
const MMIO_VGA_PORTS: u64 = 0x400;
const MMIO_DISPI: u64 = 0x500;
const MMIO_QEXT: u64 = 0x600;
/// Extension register 0: the size of the extension region.
const QEXT_SIZE: u32 = 8;
/// Extension register 1: framebuffer byte order, little endian.
const QEXT_LITTLE_ENDIAN: u32 = 0x1e1e_1e1e;

/// Port ranges: the mono CRTC/status ports (0x3BC–0x3BF belong to LPT3),
/// the rest of the VGA, and the DISPI index/data pair.
pub const PORTS_MONO: (u16, u64) = (0x3b0, 0x0c);
pub const PORTS_VGA: (u16, u64) = (0x3c0, 0x20);
pub const PORTS_DISPI: (u16, u64) = (0x1ce, 2);
/// The legacy memory window.
pub const WINDOW: (u64, u64) = (0xa_0000, 0x2_0000);

/// Maps VRAM into the guest so its framebuffer accesses do not trap. The
/// VMM implements it over KVM memory slots with dirty logging.
pub trait VramMapper: Send {
    /// Maps the VRAM at guest-physical `base`, replacing any earlier
    /// mapping, or removes it (`None`). Returns whether the VRAM is now
    /// mapped there.
    fn map(&mut self, base: Option<u64>) -> bool;
    /// The pages written through the mapping since the last call, one bit
    /// per [`PAGE_SIZE`] page (KVM's dirty-log format); `None` when unknown.
    fn take_dirty(&mut self) -> Option<Vec<u64>>;
}

/// The card: registers, VBE state and memory.
pub struct Vga {
    // Field order is drop order: the mapping goes before the memory behind it.
    mapper: Option<Box<dyn VramMapper>>,
    /// Where the VRAM is mapped into the guest now.
    mapped_at: Option<u64>,
    regs: Registers,
    vbe: Vbe,
    memory: VgaMemory,
}

/// The card as its adapters share it.
pub type SharedVga = Arc<Mutex<Vga>>;

impl Vga {
    pub fn new(vram: Vram) -> Self {
        Self {
            mapper: None,
            mapped_at: None,
            regs: Registers::default(),
            vbe: Vbe::new(vram.len()),
            memory: VgaMemory::new(vram),
        }
    }

    pub fn vram(&self) -> &Vram {
        &self.memory.vram
    }

    /// Lets the card map its VRAM into the guest through `mapper`.
    pub fn set_mapper(&mut self, mapper: Box<dyn VramMapper>) {
        self.mapper = Some(mapper);
    }

    /// A byte read from VGA port `port` (0x3B0..0x3E0).
    pub fn read_port(&mut self, port: u16) -> u8 {
        self.regs.read_port(port)
    }

    /// A byte written to VGA port `port` (0x3B0..0x3E0).
    pub fn write_port(&mut self, port: u16, value: u8) {
        self.regs.write_port(port, value);
    }

    /// DISPI index register.
    pub fn dispi_index(&self) -> u16 {
        self.vbe.index
    }

    pub fn set_dispi_index(&mut self, index: u16) {
        self.vbe.index = index;
    }

    /// DISPI register `index`.
    pub fn read_dispi(&self, index: u16) -> u16 {
        self.vbe.read(index)
    }

    pub fn write_dispi(&mut self, index: u16, value: u16) {
        self.vbe
            .write(index, value, &mut self.regs, &mut self.memory);
    }

    /// A read of the legacy window at `offset` (0..0x20000).
    pub fn read_window(&mut self, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset as usize + i;
            *byte = if at < WINDOW.1 as usize {
                self.memory.read(&self.regs, self.vbe.bank_offset, at)
            } else {
                0xff
            };
        }
    }

    pub fn write_window(&mut self, offset: u64, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            let at = offset as usize + i;
            if at < WINDOW.1 as usize {
                self.memory
                    .write(&self.regs, self.vbe.bank_offset, at, byte);
            }
        }
    }

    /// A read of VRAM through BAR0 while it is not mapped into the guest.
    fn read_vram(&self, offset: u64, data: &mut [u8]) {
        match usize::try_from(offset) {
            Ok(at) if at < self.memory.vram.len() => self.memory.vram.read(at, data),
            _ => data.fill(0xff),
        }
    }

    fn write_vram(&mut self, offset: u64, data: &[u8]) {
        if let Ok(at) = usize::try_from(offset) {
            if at < self.memory.vram.len() {
                self.memory.vram.write(at, data);
                self.memory.dirty.mark(at, data.len());
            }
        }
    }

    /// BAR0 now decodes at `base` (or nowhere): move the VRAM mapping.
    fn place_framebuffer(&mut self, base: Option<u64>) {
        if base == self.mapped_at {
            return;
        }
        let Some(mapper) = self.mapper.as_mut() else {
            return;
        };
        // Keep what the guest wrote through the old mapping.
        if self.mapped_at.is_some() {
            match mapper.take_dirty() {
                Some(bits) => self.memory.dirty.merge(&bits),
                None => self.memory.dirty = memory::DirtyPages::all(self.memory.vram.len()),
            }
        }
        self.mapped_at = if mapper.map(base) { base } else { None };
        if base.is_some() && self.mapped_at.is_none() {
            // The guest put the BAR where nothing can be mapped (over RAM
            // or firmware, say); accesses are emulated instead.
            guest_warn!(
                base = format_args!("{:#x}", base.unwrap_or(0)),
                "the VGA framebuffer cannot be mapped there; emulating it (slowly)"
            );
        }
    }

    /// Where the VRAM is mapped into the guest.
    pub fn framebuffer_mapping(&self) -> Option<u64> {
        self.mapped_at
    }

    /// The state a redraw needs; what was written since the last frame
    /// starts over.
    pub fn frame(&mut self) -> Frame {
        let mut dirty = self.memory.dirty.take();
        if self.mapped_at.is_some() {
            if let Some(mapper) = self.mapper.as_mut() {
                match mapper.take_dirty() {
                    Some(bits) => dirty.merge(&bits),
                    None => dirty = memory::DirtyPages::all(self.memory.vram.len()),
                }
            }
        }
        Frame {
            regs: self.regs.clone(),
            vbe: self.vbe.clone(),
            vram: self.memory.vram.clone(),
            dirty,
            font_written: std::mem::take(&mut self.memory.font_written),
        }
    }
}

fn lock(vga: &SharedVga) -> std::sync::MutexGuard<'_, Vga> {
    vga.lock().unwrap_or_else(|e| e.into_inner())
}

/// VGA ports: one adapter per port range, `base` being where it starts.
pub struct VgaPorts {
    vga: SharedVga,
    base: u16,
}

impl VgaPorts {
    pub fn new(vga: SharedVga, base: u16) -> Self {
        Self { vga, base }
    }
}

impl BusDevice for VgaPorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        // A word access reaches two consecutive ports, as on an ISA bus.
        let mut vga = lock(&self.vga);
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = vga.read_port(self.base + offset as u16 + i as u16);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let mut vga = lock(&self.vga);
        for (i, &byte) in data.iter().enumerate() {
            vga.write_port(self.base + offset as u16 + i as u16, byte);
        }
    }
}

/// The DISPI index (0x1CE) and data (0x1CF) ports, 16 bits wide.
pub struct VbePorts {
    vga: SharedVga,
}

impl VbePorts {
    pub fn new(vga: SharedVga) -> Self {
        Self { vga }
    }
}

impl BusDevice for VbePorts {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let vga = lock(&self.vga);
        let value = match offset {
            0 => vga.dispi_index(),
            _ => vga.read_dispi(vga.dispi_index()),
        };
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = value.to_le_bytes().get(i).copied().unwrap_or(0xff);
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        let value = match *data {
            [lo] => lo as u16,
            [lo, hi] => u16::from_le_bytes([lo, hi]),
            _ => {
                guest_warn!(
                    offset,
                    len = data.len(),
                    "VBE DISPI ports take 8- or 16-bit accesses"
                );
                return;
            }
        };
        let mut vga = lock(&self.vga);
        match offset {
            0 => vga.set_dispi_index(value),
            _ => {
                let index = vga.dispi_index();
                vga.write_dispi(index, value);
            }
        }
    }
}

/// The legacy memory window 0xA0000–0xBFFFF.
pub struct VgaWindow {
    vga: SharedVga,
}

impl VgaWindow {
    pub fn new(vga: SharedVga) -> Self {
        Self { vga }
    }
}

impl BusDevice for VgaWindow {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        lock(&self.vga).read_window(offset, data);
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        lock(&self.vga).write_window(offset, data);
    }
}

/// Where the card's legacy parts go: `(base, length, device)` on the port
/// bus and on the memory bus.
pub struct LegacyDevices {
    pub ports: Vec<(u16, u64, SharedDevice)>,
    pub window: (u64, u64, SharedDevice),
}

/// The card's PCI function.
pub struct StdVga {
    config: PciConfig,
    vga: SharedVga,
    rom: Vec<u8>,
}

impl StdVga {
    /// A card with `vram` and, if given, the option ROM image `rom` in its
    /// expansion ROM BAR.
    pub fn new(vram: Vram, rom: Option<Vec<u8>>) -> Self {
        let mut config = PciConfig::new(PCI_VENDOR_ID, PCI_DEVICE_ID, PCI_CLASS_VGA, PCI_REVISION)
            .with_subsystem(SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID)
            .with_bar(
                BAR_VRAM,
                BarKind::Memory32 { prefetchable: true },
                vram.len() as u64,
            )
            .with_bar(
                BAR_MMIO,
                BarKind::Memory32 {
                    prefetchable: false,
                },
                MMIO_SIZE,
            );
        let rom = rom.unwrap_or_default();
        if !rom.is_empty() {
            config = config.with_rom((rom.len() as u64).next_power_of_two().max(2048));
        }
        Self {
            config,
            vga: Arc::new(Mutex::new(Vga::new(vram))),
            rom,
        }
    }

    /// The card, for the port and window adapters and the renderer.
    pub fn vga(&self) -> SharedVga {
        self.vga.clone()
    }

    /// The port and memory adapters to put on the buses.
    pub fn legacy_devices(&self) -> LegacyDevices {
        let device = |d: SharedDevice| d;
        LegacyDevices {
            ports: vec![
                (
                    PORTS_MONO.0,
                    PORTS_MONO.1,
                    device(Arc::new(Mutex::new(VgaPorts::new(
                        self.vga(),
                        PORTS_MONO.0,
                    )))),
                ),
                (
                    PORTS_VGA.0,
                    PORTS_VGA.1,
                    device(Arc::new(Mutex::new(VgaPorts::new(self.vga(), PORTS_VGA.0)))),
                ),
                (
                    PORTS_DISPI.0,
                    PORTS_DISPI.1,
                    device(Arc::new(Mutex::new(VbePorts::new(self.vga())))),
                ),
            ],
            window: (
                WINDOW.0,
                WINDOW.1,
                Arc::new(Mutex::new(VgaWindow::new(self.vga()))),
            ),
        }
    }

    fn read_mmio(&self, offset: u64, data: &mut [u8]) {
        let mut vga = lock(&self.vga);
        match offset {
            o if (MMIO_VGA_PORTS..MMIO_VGA_PORTS + 0x20).contains(&o) => {
                for (i, byte) in data.iter_mut().enumerate() {
                    *byte = vga.read_port(0x3c0 + (o - MMIO_VGA_PORTS) as u16 + i as u16);
                }
            }
            o if (MMIO_DISPI..MMIO_DISPI + 0x20).contains(&o) => {
                let index = ((o - MMIO_DISPI) / 2) as u16;
                let value = vga.read_dispi(index).to_le_bytes();
                let skip = ((o - MMIO_DISPI) % 2) as usize;
                for (i, byte) in data.iter_mut().enumerate() {
                    *byte = value.get(skip + i).copied().unwrap_or(0);
                }
            }
            o if (MMIO_QEXT..MMIO_QEXT + QEXT_SIZE as u64).contains(&o) => {
                let mut regs = [0u8; QEXT_SIZE as usize];
                regs[..4].copy_from_slice(&QEXT_SIZE.to_le_bytes());
                regs[4..].copy_from_slice(&QEXT_LITTLE_ENDIAN.to_le_bytes());
                let start = (o - MMIO_QEXT) as usize;
                for (i, byte) in data.iter_mut().enumerate() {
                    *byte = regs.get(start + i).copied().unwrap_or(0);
                }
            }
            _ => data.fill(0xff),
        }
    }

    fn write_mmio(&self, offset: u64, data: &[u8]) {
        let mut vga = lock(&self.vga);
        match offset {
            o if (MMIO_VGA_PORTS..MMIO_VGA_PORTS + 0x20).contains(&o) => {
                for (i, &byte) in data.iter().enumerate() {
                    vga.write_port(0x3c0 + (o - MMIO_VGA_PORTS) as u16 + i as u16, byte);
                }
            }
            o if (MMIO_DISPI..MMIO_DISPI + 0x20).contains(&o) && o % 2 == 0 && data.len() == 2 => {
                let index = ((o - MMIO_DISPI) / 2) as u16;
                vga.write_dispi(index, u16::from_le_bytes([data[0], data[1]]));
            }
            o if o == MMIO_QEXT + 4 && data == QEXT_LITTLE_ENDIAN.to_le_bytes() => {}
            _ => guest_warn!(
                offset = format_args!("{offset:#x}"),
                len = data.len(),
                "unsupported write to the VGA MMIO BAR"
            ),
        }
    }
}

impl PciDevice for StdVga {
    fn config(&self) -> &PciConfig {
        &self.config
    }

    fn config_mut(&mut self) -> &mut PciConfig {
        &mut self.config
    }

    fn write_config(&mut self, offset: usize, data: &[u8]) {
        self.config.write(offset, data);
        let base = self.config.bar_region(BAR_VRAM).map(|r| r.base);
        lock(&self.vga).place_framebuffer(base);
    }

    fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
        match bar {
            BAR_VRAM => lock(&self.vga).read_vram(offset, data),
            BAR_MMIO => self.read_mmio(offset, data),
            PCI_ROM_BAR => {
                for (i, byte) in data.iter_mut().enumerate() {
                    *byte = usize::try_from(offset)
                        .ok()
                        .and_then(|o| o.checked_add(i))
                        .and_then(|o| self.rom.get(o))
                        .copied()
                        .unwrap_or(0xff);
                }
            }
            _ => data.fill(0xff),
        }
    }

    fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
        match bar {
            BAR_VRAM => lock(&self.vga).write_vram(offset, data),
            BAR_MMIO => self.write_mmio(offset, data),
            _ => guest_warn!(bar, offset, "write to the VGA's read-only BAR"),
        }
    }
}

#[cfg(test)]
mod tests {
    //! The card as a driver sees it: modes programmed through the ports the
    //! way SeaVGABIOS does (its register tables for modes 03h, 12h and 13h
    //! are the IBM VGA's), then pixels read off the rendered display.

    use super::*;
    use crate::devices::pci::PciDevice;
    use crate::display::{Damage, Display, Rect};

    struct Card {
        pci: StdVga,
        vga: SharedVga,
        ports: VgaPorts,
        dispi: VbePorts,
        window: VgaWindow,
        display: Arc<Display>,
        renderer: Renderer,
    }

    /// One mode's register set, in the order a VGA BIOS loads it.
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
            0x5f, 0x4f, 0x50, 0x82, 0x55, 0x81, 0xbf, 0x1f, 0x00, 0x4f, 0x0d, 0x0e, 0x00, 0x00,
            0x00, 0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x1f, 0x96, 0xb9, 0xa3, 0xff,
        ],
        attr: [
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d,
            0x3e, 0x3f, 0x0c, 0x00, 0x0f, 0x08,
        ],
        gc: [0x00, 0x00, 0x00, 0x00, 0x00, 0x10, 0x0e, 0x0f, 0xff],
    };

    const MODE_12: ModeRegs = ModeRegs {
        misc: 0xe3,
        seq: [0x01, 0x0f, 0x00, 0x06],
        crtc: [
            0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0x0b, 0x3e, 0x00, 0x40, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0xea, 0x8c, 0xdf, 0x28, 0x00, 0xe7, 0x04, 0xe3, 0xff,
        ],
        attr: [
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x14, 0x07, 0x38, 0x39, 0x3a, 0x3b, 0x3c, 0x3d,
            0x3e, 0x3f, 0x01, 0x00, 0x0f, 0x00,
        ],
        gc: [0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x05, 0x0f, 0xff],
    };

    const MODE_13: ModeRegs = ModeRegs {
        misc: 0x63,
        seq: [0x01, 0x0f, 0x00, 0x0e],
        crtc: [
            0x5f, 0x4f, 0x50, 0x82, 0x54, 0x80, 0xbf, 0x1f, 0x00, 0x41, 0x00, 0x00, 0x00, 0x00,
            0x00, 0x00, 0x9c, 0x8e, 0x8f, 0x28, 0x40, 0x96, 0xb9, 0xa3, 0xff,
        ],
        attr: [
            0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0x0c, 0x0d,
            0x0e, 0x0f, 0x41, 0x00, 0x0f, 0x00,
        ],
        gc: [0x00, 0x00, 0x00, 0x00, 0x00, 0x40, 0x05, 0x0f, 0xff],
    };

    /// The EGA's 64 colours: bits 2..0 two thirds of red, green, blue;
    /// bits 5..3 one third.
    fn ega_color(i: u8) -> [u8; 3] {
        let c = |hi: u8, lo: u8| 0x2a * ((i >> hi) & 1) + 0x15 * ((i >> lo) & 1);
        [c(2, 5), c(1, 4), c(0, 3)]
    }

    impl Card {
        fn new() -> Self {
            let pci = StdVga::new(Vram::new(16 << 20).unwrap(), Some(vec![0x55, 0xaa, 3]));
            let vga = pci.vga();
            Self {
                ports: VgaPorts::new(vga.clone(), 0x3c0),
                dispi: VbePorts::new(vga.clone()),
                window: VgaWindow::new(vga.clone()),
                vga,
                pci,
                display: Display::new(720, 400),
                renderer: Renderer::new(),
            }
        }

        fn outb(&mut self, port: u16, value: u8) {
            self.ports.write((port - 0x3c0) as u64, &[value]);
        }

        fn inb(&mut self, port: u16) -> u8 {
            let mut data = [0];
            self.ports.read((port - 0x3c0) as u64, &mut data);
            data[0]
        }

        fn dispi(&mut self, index: u16, value: u16) {
            self.dispi.write(0, &index.to_le_bytes());
            self.dispi.write(1, &value.to_le_bytes());
        }

        fn poke(&mut self, address: u64, value: u8) {
            self.window.write(address - WINDOW.0, &[value]);
        }

        fn peek(&mut self, address: u64) -> u8 {
            let mut data = [0];
            self.window.read(address - WINDOW.0, &mut data);
            data[0]
        }

        /// Loads a mode's registers as SeaVGABIOS's `stdvga_set_mode` does.
        fn set_mode(&mut self, mode: &ModeRegs) {
            self.inb(0x3da);
            for (i, &v) in mode.attr.iter().enumerate() {
                self.outb(0x3c0, i as u8);
                self.outb(0x3c0, v);
            }
            self.outb(0x3c4, 0);
            self.outb(0x3c5, 0x03);
            for (i, &v) in mode.seq.iter().enumerate() {
                self.outb(0x3c4, i as u8 + 1);
                self.outb(0x3c5, v);
            }
            for (i, &v) in mode.gc.iter().enumerate() {
                self.outb(0x3ce, i as u8);
                self.outb(0x3cf, v);
            }
            self.outb(0x3c2, mode.misc);
            self.outb(0x3d4, 0x11);
            self.outb(0x3d5, 0x00);
            for (i, &v) in mode.crtc.iter().enumerate() {
                self.outb(0x3d4, i as u8);
                self.outb(0x3d5, v);
            }
            self.inb(0x3da);
            self.outb(0x3c0, 0x20);
        }

        fn load_ega_palette(&mut self) {
            self.outb(0x3c8, 0);
            for i in 0..64 {
                for c in ega_color(i) {
                    self.outb(0x3c9, c);
                }
            }
        }

        /// Writes glyphs into plane 2 the way SeaVGABIOS's font loader
        /// does: plane 2 alone, sequential addressing, 64 KiB at A0000.
        fn load_glyph(&mut self, character: u8, rows: &[u8; 16]) {
            for (index, value) in [(2, 0x04), (4, 0x07)] {
                self.outb(0x3c4, index);
                self.outb(0x3c5, value);
            }
            for (index, value) in [(4, 0x02), (5, 0x00), (6, 0x04)] {
                self.outb(0x3ce, index);
                self.outb(0x3cf, value);
            }
            for (line, &bits) in rows.iter().enumerate() {
                self.poke(0xa_0000 + character as u64 * 32 + line as u64, bits);
            }
            for (index, value) in [(2, 0x03), (4, 0x02)] {
                self.outb(0x3c4, index);
                self.outb(0x3c5, value);
            }
            for (index, value) in [(4, 0x00), (5, 0x10), (6, 0x0e)] {
                self.outb(0x3ce, index);
                self.outb(0x3cf, value);
            }
        }

        fn render_with(&mut self, blink: BlinkPhase) {
            let frame = lock(&self.vga).frame();
            self.renderer.render(&frame, &self.display, blink);
        }

        fn render(&mut self) {
            self.render_with(BlinkPhase::STEADY);
        }

        fn pixel(&self, x: u32, y: u32) -> u32 {
            self.display.with_surface(|s| s.pixel(x, y))
        }

        fn size(&self) -> (u32, u32) {
            self.display.with_surface(|s| (s.width, s.height))
        }
    }

    const GLYPH_H: [u8; 16] = [
        0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xff, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0xc3, 0x00,
        0x00,
    ];
    /// Box drawing "─" (0xC4): a line through the middle, touching the right edge.
    const GLYPH_LINE: [u8; 16] = [0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0, 0, 0, 0, 0, 0, 0];

    const BLUE: u32 = 0x0000aa;
    const YELLOW: u32 = 0xffff55;
    const LIGHT_GRAY: u32 = 0xaaaaaa;

    fn text_card() -> Card {
        let mut card = Card::new();
        card.set_mode(&MODE_03);
        card.load_ega_palette();
        card.load_glyph(b'H', &GLYPH_H);
        card.load_glyph(0xc4, &GLYPH_LINE);
        // Blank the screen with spaces in light grey on black, as a BIOS does.
        for cell in 0..80 * 25u64 {
            card.poke(0xb_8000 + 2 * cell, b' ');
            card.poke(0xb_8000 + 2 * cell + 1, 0x07);
        }
        card
    }

    #[test]
    fn mode_03_text_with_font_attributes_and_cursor() {
        let mut card = text_card();
        // Row 1: "H" yellow on blue at column 2, a line-drawing character at
        // column 3; the cursor on column 5.
        card.poke(0xb_8000 + 2 * 82, b'H');
        card.poke(0xb_8000 + 2 * 82 + 1, 0x1e);
        card.poke(0xb_8000 + 2 * 83, 0xc4);
        card.poke(0xb_8000 + 2 * 83 + 1, 0x1e);
        card.outb(0x3d4, 0x0e);
        card.outb(0x3d5, 0);
        card.outb(0x3d4, 0x0f);
        card.outb(0x3d5, 85);
        card.render();
        assert_eq!(card.size(), (720, 400), "80×25 cells of 9×16");

        let (x, y) = (2 * 9, 16);
        assert_eq!(card.pixel(x, y), YELLOW, "glyph dot");
        assert_eq!(card.pixel(x + 2, y), BLUE, "glyph gap is background");
        assert_eq!(card.pixel(x + 3, y + 7), YELLOW, "crossbar");
        assert_eq!(
            card.pixel(x + 8, y + 7),
            BLUE,
            "9th column is background for letters"
        );
        assert_eq!(
            card.pixel(x + 9 + 8, y + 8),
            YELLOW,
            "9th column repeats the 8th for box drawing"
        );
        assert_eq!(card.pixel(x + 9 + 8, y + 7), BLUE);
        assert_eq!(card.pixel(0, 0), 0, "blank cells are black");

        // The cursor: scanlines 13–14 of the cell, in its foreground colour.
        let cx = 5 * 9;
        assert_eq!(card.pixel(cx, 16 + 13), LIGHT_GRAY);
        assert_eq!(card.pixel(cx + 8, 16 + 14), LIGHT_GRAY);
        assert_eq!(card.pixel(cx, 16 + 12), 0);
        card.render_with(BlinkPhase {
            cursor_visible: false,
            text_visible: true,
        });
        assert_eq!(card.pixel(cx, 16 + 13), 0, "cursor in its off phase");
        // Cursor disabled (start register bit 5) stays off in any phase.
        card.outb(0x3d4, 0x0a);
        card.outb(0x3d5, 0x20);
        card.render();
        assert_eq!(card.pixel(cx, 16 + 13), 0);
    }

    #[test]
    fn blinking_text_and_eight_dot_cells() {
        let mut card = text_card();
        card.poke(0xb_8000, b'H');
        card.poke(0xb_8001, 0x9e); // blinking yellow on blue
        card.render_with(BlinkPhase::STEADY);
        assert_eq!(card.pixel(0, 0), YELLOW);
        card.render_with(BlinkPhase {
            cursor_visible: true,
            text_visible: false,
        });
        assert_eq!(card.pixel(0, 0), BLUE, "hidden in the off phase");
        // 8-dot characters: 640 wide.
        card.outb(0x3c4, 1);
        card.outb(0x3c5, 0x01);
        card.render();
        assert_eq!(card.size(), (640, 400));
        assert_eq!(card.pixel(8 + 8 * 3, 0), 0, "cell 1 starts at x = 8");
    }

    #[test]
    fn a_dac_change_recolours_and_is_damage() {
        let mut card = text_card();
        card.poke(0xb_8000 + 2 * 82, b'H');
        card.poke(0xb_8000 + 2 * 82 + 1, 0x1e);
        card.render();
        assert_eq!(card.pixel(20, 16), BLUE);
        let (seen, _) = card.display.damage_since(0);
        // Attribute colour 1 is DAC entry 1: make it pure red.
        card.outb(0x3c8, 1);
        for c in [0x3f, 0x00, 0x00] {
            card.outb(0x3c9, c);
        }
        card.render();
        assert_eq!(card.pixel(20, 16), 0xff0000);
        assert_ne!(card.display.damage_since(seen).1, Damage::None);
        // Nothing changed: no damage.
        let (seen, _) = card.display.damage_since(0);
        card.render();
        assert_eq!(card.display.damage_since(seen).1, Damage::None);
        // One character: damage for that cell only.
        card.poke(0xb_8000 + 2 * 160, b'H');
        card.render();
        assert_eq!(
            card.display.damage_since(seen).1,
            Damage::Rects(vec![Rect::new(0, 32, 9, 16)])
        );
    }

    #[test]
    fn mode_13h_is_320_by_200_through_the_dac() {
        let mut card = Card::new();
        card.set_mode(&MODE_13);
        card.outb(0x3c8, 0x28);
        for c in [0x3f, 0x20, 0x10] {
            card.outb(0x3c9, c);
        }
        card.poke(0xa_0000 + 199 * 320 + 319, 0x28);
        card.poke(0xa_0000 + 10 * 320 + 20, 0x28);
        card.render();
        assert_eq!(card.size(), (320, 200));
        assert_eq!(card.pixel(319, 199), 0xff8241);
        assert_eq!(card.pixel(20, 10), 0xff8241);
        assert_eq!(card.pixel(21, 10), 0);
        assert_eq!(card.peek(0xa_0000 + 10 * 320 + 20), 0x28);
        // A later write shows up on the next frame (dirty page tracking).
        card.poke(0xa_0000 + 100 * 320, 0x28);
        card.render();
        assert_eq!(card.pixel(0, 100), 0xff8241);
    }

    #[test]
    fn mode_12h_planar_with_write_modes() {
        let mut card = Card::new();
        card.set_mode(&MODE_12);
        card.load_ega_palette();
        // A horizontal line in colour 12 with set/reset (write mode 0):
        // row 50, bytes 10..12 = x 80..96.
        card.outb(0x3ce, 0);
        card.outb(0x3cf, 12);
        card.outb(0x3ce, 1);
        card.outb(0x3cf, 0x0f);
        for byte in 10..12 {
            card.poke(0xa_0000 + 50 * 80 + byte, 0xff);
        }
        card.outb(0x3ce, 1);
        card.outb(0x3cf, 0x00);
        // One pixel in colour 9 with write mode 2 and the bit mask: (101, 60).
        card.outb(0x3ce, 5);
        card.outb(0x3cf, 0x02);
        card.outb(0x3ce, 8);
        card.outb(0x3cf, 0x80 >> (101 % 8));
        card.peek(0xa_0000 + 60 * 80 + 101 / 8); // load the latches
        card.poke(0xa_0000 + 60 * 80 + 101 / 8, 9);
        card.render();
        assert_eq!(card.size(), (640, 480));
        assert_eq!(card.pixel(80, 50), 0xff5555, "colour 12 is light red");
        assert_eq!(card.pixel(95, 50), 0xff5555);
        assert_eq!(card.pixel(96, 50), 0);
        assert_eq!(card.pixel(101, 60), 0x5555ff, "colour 9 is light blue");
        assert_eq!(card.pixel(100, 60), 0);
        assert_eq!(card.pixel(102, 60), 0);
        // The colour plane enable register masks planes out.
        card.inb(0x3da);
        card.outb(0x3c0, 0x32);
        card.outb(0x3c0, 0x07);
        card.render();
        assert_eq!(card.pixel(80, 50), 0xaa0000, "12 & 7 = 4, red");
    }

    type MapCalls = Arc<Mutex<Vec<Option<u64>>>>;
    type DirtyLog = Arc<Mutex<Vec<u64>>>;

    fn fake_mapper() -> (Box<FakeMapper>, MapCalls, DirtyLog) {
        let calls = Arc::new(Mutex::new(Vec::new()));
        let dirty = Arc::new(Mutex::new(Vec::new()));
        (
            Box::new(FakeMapper {
                calls: calls.clone(),
                dirty: dirty.clone(),
            }),
            calls,
            dirty,
        )
    }

    struct FakeMapper {
        calls: MapCalls,
        dirty: DirtyLog,
    }

    impl VramMapper for FakeMapper {
        fn map(&mut self, base: Option<u64>) -> bool {
            self.calls.lock().unwrap().push(base);
            base != Some(0xff00_0000)
        }
        fn take_dirty(&mut self) -> Option<Vec<u64>> {
            Some(std::mem::take(&mut *self.dirty.lock().unwrap()))
        }
    }

    fn vbe_1024x768x32(card: &mut Card) {
        card.dispi(vbe::INDEX_ID, vbe::ID5);
        card.dispi(vbe::INDEX_ENABLE, 0);
        card.dispi(vbe::INDEX_BPP, 32);
        card.dispi(vbe::INDEX_XRES, 1024);
        card.dispi(vbe::INDEX_YRES, 768);
        card.dispi(vbe::INDEX_BANK, 0);
        card.dispi(vbe::INDEX_ENABLE, vbe::ENABLED | vbe::LFB_ENABLED);
    }

    #[test]
    fn vbe_1024x768x32_through_the_lfb_and_the_bank_window() {
        let mut card = Card::new();
        vbe_1024x768x32(&mut card);
        let mut id = [0; 2];
        card.dispi.read(1, &mut id);
        card.dispi.write(0, &vbe::INDEX_ID.to_le_bytes());
        card.dispi.read(1, &mut id);
        assert_eq!(u16::from_le_bytes(id), vbe::ID5);
        // BAR0 not mapped: the LFB is emulated.
        card.pci.write_bar(
            BAR_VRAM,
            (300 * 1024 + 400) * 4,
            &0x0012_3456u32.to_le_bytes(),
        );
        // Bank 1 of the 64 KiB window: VRAM 0x10000 = pixel (0, 16).
        card.dispi(vbe::INDEX_BANK, 1);
        for (i, b) in [0x00u8, 0x00, 0xff, 0x00].iter().enumerate() {
            card.poke(0xa_0000 + i as u64, *b);
        }
        card.render();
        assert_eq!(card.size(), (1024, 768));
        assert_eq!(card.pixel(400, 300), 0x123456);
        assert_eq!(card.pixel(0, 16), 0xff0000);
        assert_eq!(card.pixel(401, 300), 0);
        // Only the written row is redrawn next time.
        let (seen, _) = card.display.damage_since(0);
        card.pci
            .write_bar(BAR_VRAM, (700 * 1024) * 4, &[0xff, 0, 0, 0]);
        card.render();
        assert_eq!(
            card.display.damage_since(seen).1,
            Damage::Rects(vec![Rect::new(0, 700, 1024, 1)])
        );
        assert_eq!(card.pixel(0, 700), 0x0000ff);
    }

    #[test]
    fn the_framebuffer_is_mapped_where_bar0_decodes_and_dirty_pages_come_back() {
        let mut card = Card::new();
        let (mapper, calls, dirty) = fake_mapper();
        lock(&card.vga).set_mapper(mapper);
        card.pci.write_config(0x10, &0xfd00_0000u32.to_le_bytes());
        assert!(calls.lock().unwrap().is_empty(), "decoding still off");
        card.pci.write_config(0x04, &0x0003u16.to_le_bytes());
        assert_eq!(*calls.lock().unwrap(), vec![Some(0xfd00_0000)]);
        assert_eq!(lock(&card.vga).framebuffer_mapping(), Some(0xfd00_0000));

        vbe_1024x768x32(&mut card);
        card.render();
        // The guest writes through the mapping: the card learns of it only
        // from the dirty log.
        let vram = lock(&card.vga).vram().clone();
        vram.write(10 * 4096 + 8, &[0x11, 0x22, 0x33, 0]);
        card.render();
        assert_eq!(card.pixel(2, 10), 0, "not reported dirty, not redrawn");
        dirty.lock().unwrap().push(1 << 10);
        card.render();
        assert_eq!(card.pixel(2, 10), 0x332211);

        // Moving the BAR remaps; disabling decoding unmaps.
        card.pci.write_config(0x10, &0xfe00_0000u32.to_le_bytes());
        card.pci.write_config(0x04, &0u16.to_le_bytes());
        assert_eq!(
            *calls.lock().unwrap(),
            vec![Some(0xfd00_0000), Some(0xfe00_0000), None]
        );
        // A place the mapper refuses leaves the LFB emulated.
        card.pci.write_config(0x10, &0xff00_0000u32.to_le_bytes());
        card.pci.write_config(0x04, &0x0002u16.to_le_bytes());
        assert_eq!(lock(&card.vga).framebuffer_mapping(), None);
    }

    #[test]
    fn pci_identity_bars_and_rom() {
        let mut card = Card::new();
        let mut id = [0; 4];
        card.pci.read_config(0, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x1111_1234);
        card.pci.read_config(8, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x0300_0002);
        card.pci.write_config(0x10, &u32::MAX.to_le_bytes());
        card.pci.read_config(0x10, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0xff00_0008, "16 MiB, prefetchable");
        card.pci.write_config(0x18, &u32::MAX.to_le_bytes());
        card.pci.read_config(0x18, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0xffff_f000);
        card.pci.write_config(0x30, &u32::MAX.to_le_bytes());
        card.pci.read_config(0x30, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0xffff_f801, "2 KiB ROM");
        let mut rom = [0; 4];
        card.pci.read_bar(PCI_ROM_BAR, 0, &mut rom);
        assert_eq!(rom, [0x55, 0xaa, 3, 0xff]);
        card.pci.read_bar(PCI_ROM_BAR, u64::MAX, &mut rom);
        assert_eq!(rom, [0xff; 4]);
    }

    #[test]
    fn mmio_bar_reaches_the_vga_and_dispi_registers() {
        let mut card = Card::new();
        // Sequencer index/data through MMIO (0x3C4 → 0x404), as a word.
        card.pci.write_bar(BAR_MMIO, 0x404, &[0x02, 0x0f]);
        assert_eq!(lock(&card.vga).regs.seq[2], 0x0f);
        card.pci.write_bar(
            BAR_MMIO,
            0x500 + 2 * vbe::INDEX_XRES as u64,
            &800u16.to_le_bytes(),
        );
        let mut word = [0; 2];
        card.pci
            .read_bar(BAR_MMIO, 0x500 + 2 * vbe::INDEX_XRES as u64, &mut word);
        assert_eq!(u16::from_le_bytes(word), 800);
        card.pci.read_bar(
            BAR_MMIO,
            0x500 + 2 * vbe::INDEX_VIDEO_MEMORY_64K as u64,
            &mut word,
        );
        assert_eq!(u16::from_le_bytes(word), 256);
        let mut dword = [0; 4];
        card.pci.read_bar(BAR_MMIO, 0x600, &mut dword);
        assert_eq!(u32::from_le_bytes(dword), 8);
        card.pci.read_bar(BAR_MMIO, 0x604, &mut dword);
        assert_eq!(u32::from_le_bytes(dword), 0x1e1e_1e1e);
        // Garbage: ignored, nothing panics.
        card.pci
            .write_bar(BAR_MMIO, 0xfff, &[1, 2, 3, 4, 5, 6, 7, 8]);
        card.pci.write_bar(BAR_MMIO, 0x501, &[1]);
        card.pci.read_bar(BAR_MMIO, 0x51f, &mut dword);
        card.pci.write_bar(BAR_VRAM, u64::MAX, &[1, 2]);
        card.pci.read_bar(BAR_VRAM, (16 << 20) - 1, &mut dword);
        card.pci.write_bar(5, 0, &[1]);
        card.dispi.write(0, &[1, 2, 3, 4]);
        card.window.write(0x1_ffff, &[1, 2, 3, 4]);
        card.window.read(0x1_fffe, &mut dword);
    }

    #[test]
    fn vbe_pixel_formats() {
        use super::render::BlinkPhase;
        for (bpp, bytes, expect) in [
            (15u16, vec![0x1f, 0x7c], 0xff00ffu32),
            (16, vec![0xe0, 0x07], 0x00ff00),
            (24, vec![0x01, 0x02, 0x03], 0x030201),
            (32, vec![0x01, 0x02, 0x03, 0xff], 0x030201),
        ] {
            let mut card = Card::new();
            card.dispi(vbe::INDEX_BPP, bpp);
            card.dispi(vbe::INDEX_XRES, 640);
            card.dispi(vbe::INDEX_YRES, 480);
            card.dispi(vbe::INDEX_ENABLE, vbe::ENABLED);
            card.pci.write_bar(BAR_VRAM, 0, &bytes);
            card.render_with(BlinkPhase::STEADY);
            assert_eq!(card.pixel(0, 0), expect, "{bpp} bpp");
            assert_eq!(card.size(), (640, 480));
        }
        // 8 bpp goes through the DAC, in 8-bit mode when asked.
        let mut card = Card::new();
        card.dispi(vbe::INDEX_BPP, 8);
        card.dispi(vbe::INDEX_XRES, 800);
        card.dispi(vbe::INDEX_YRES, 600);
        card.dispi(vbe::INDEX_ENABLE, vbe::ENABLED | vbe::DAC_8BIT);
        card.outb(0x3c8, 7);
        for c in [0x80, 0x40, 0xff] {
            card.outb(0x3c9, c);
        }
        card.pci.write_bar(BAR_VRAM, 799, &[7]);
        card.render();
        assert_eq!(card.pixel(799, 0), 0x8040ff);
    }

    #[test]
    fn the_screen_is_blank_until_the_palette_is_given_to_the_display() {
        let mut card = text_card();
        card.inb(0x3da);
        card.outb(0x3c0, 0x00); // palette address source cleared
        card.poke(0xb_8000, b'H');
        card.poke(0xb_8001, 0x1e);
        card.render();
        assert_eq!(card.pixel(0, 0), 0);
        card.outb(0x3c0, 0x00); // data write; flip-flop back to index
        card.outb(0x3c0, 0x20);
        card.render();
        assert_eq!(card.pixel(0, 0), YELLOW);
    }
}
