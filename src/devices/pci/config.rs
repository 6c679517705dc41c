//! The type 0 configuration header (PCI 3.0 §6.1) with BAR sizing, the
//! expansion-ROM BAR and a capability list.

/// Index of the expansion ROM in BAR-indexed APIs (the six BARs are 0..6).
pub const PCI_ROM_BAR: usize = 6;

const VENDOR_ID: usize = 0x00;
const DEVICE_ID: usize = 0x02;
const COMMAND: usize = 0x04;
const STATUS: usize = 0x06;
const REVISION: usize = 0x08;
const PROG_IF: usize = 0x09;
const SUBCLASS: usize = 0x0a;
const CLASS: usize = 0x0b;
const HEADER_TYPE: usize = 0x0e;
const BAR0: usize = 0x10;
const SUBSYSTEM_VENDOR_ID: usize = 0x2c;
const SUBSYSTEM_ID: usize = 0x2e;
const ROM_ADDRESS: usize = 0x30;
const CAPABILITIES_POINTER: usize = 0x34;
const INTERRUPT_LINE: usize = 0x3c;
const INTERRUPT_PIN: usize = 0x3d;
const FIRST_CAPABILITY: usize = 0x40;

/// Command register bits (§6.2.2).
pub const COMMAND_IO: u16 = 1 << 0;
pub const COMMAND_MEMORY: u16 = 1 << 1;
pub const COMMAND_BUS_MASTER: u16 = 1 << 2;
pub const COMMAND_INTX_DISABLE: u16 = 1 << 10;
/// Status bit: a capability list is present.
const STATUS_CAPABILITIES: u16 = 1 << 4;

/// Class code: base class, subclass, programming interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciClass {
    pub base: u8,
    pub sub: u8,
    pub prog_if: u8,
}

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    Io,
    Memory32 {
        prefetchable: bool,
    },
    /// Takes two BAR slots; the upper half lives in the next one.
    Memory64 {
        prefetchable: bool,
    },
}

#[derive(Debug, Clone, Copy)]
struct Bar {
    kind: BarKind,
    size: u64,
}

/// Where a BAR currently decodes: I/O ports or memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSpace {
    Io,
    Memory,
}

/// One decoded BAR: which, where and how large.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BarRegion {
    pub bar: usize,
    pub space: AddressSpace,
    pub base: u64,
    pub size: u64,
}

/// The 256-byte configuration space of one function.
#[derive(Clone)]
pub struct PciConfig {
    bytes: [u8; 256],
    /// Bits the guest may change, per byte, outside the BARs.
    writable: [u8; 256],
    bars: [Option<Bar>; 6],
    rom_size: u64,
    next_capability: usize,
    last_capability: Option<usize>,
}

impl PciConfig {
    /// A type 0 header for a single-function device.
    pub fn new(vendor: u16, device: u16, class: PciClass, revision: u8) -> Self {
        let mut config = Self {
            bytes: [0; 256],
            writable: [0; 256],
            bars: [None; 6],
            rom_size: 0,
            next_capability: FIRST_CAPABILITY,
            last_capability: None,
        };
        config.set_u16(VENDOR_ID, vendor);
        config.set_u16(DEVICE_ID, device);
        config.bytes[REVISION] = revision;
        config.bytes[PROG_IF] = class.prog_if;
        config.bytes[SUBCLASS] = class.sub;
        config.bytes[CLASS] = class.base;
        let command = COMMAND_IO | COMMAND_MEMORY | COMMAND_BUS_MASTER | COMMAND_INTX_DISABLE;
        config.writable[COMMAND..COMMAND + 2].copy_from_slice(&command.to_le_bytes());
        config.writable[INTERRUPT_LINE] = 0xff;
        config
    }

    pub fn with_subsystem(mut self, vendor: u16, id: u16) -> Self {
        self.set_u16(SUBSYSTEM_VENDOR_ID, vendor);
        self.set_u16(SUBSYSTEM_ID, id);
        self
    }

    /// Marks the device as multi-function (header type bit 7), as function 0
    /// of a multi-function device must be.
    pub fn with_multifunction(mut self) -> Self {
        self.bytes[HEADER_TYPE] |= 0x80;
        self
    }

    /// Interrupt pin: 1 = INTA# … 4 = INTD#.
    pub fn with_interrupt_pin(mut self, pin: u8) -> Self {
        self.bytes[INTERRUPT_PIN] = pin;
        self
    }

    /// Declares BAR `index` of `size` bytes (a power of two; at least 4 for
    /// I/O and 16 for memory, as §6.2.5.1 requires).
    pub fn with_bar(mut self, index: usize, kind: BarKind, size: u64) -> Self {
        assert!(size.is_power_of_two(), "BAR size must be a power of two");
        let (min, slots) = match kind {
            BarKind::Io => (4, 1),
            BarKind::Memory32 { .. } => (16, 1),
            BarKind::Memory64 { .. } => (16, 2),
        };
        assert!(size >= min && index + slots <= 6, "bad BAR {index}");
        self.bars[index] = Some(Bar { kind, size });
        let flags = Self::bar_flags(kind);
        self.set_u32(BAR0 + 4 * index, flags);
        self
    }

    /// Declares an expansion ROM of `size` bytes (a power of two, ≥ 2 KiB).
    pub fn with_rom(mut self, size: u64) -> Self {
        assert!(size.is_power_of_two() && size >= 2048);
        self.rom_size = size;
        self
    }

    /// Lets the guest write `mask` bits of the byte at `offset` (for
    /// device-specific registers kept in configuration space).
    pub fn with_writable(mut self, offset: usize, mask: u8) -> Self {
        self.writable[offset] = mask;
        self
    }

    /// Appends a capability with identifier `id` and `body` (the bytes after
    /// the ID and next pointer); returns its offset in configuration space.
    pub fn add_capability(&mut self, id: u8, body: &[u8]) -> usize {
        let offset = self.next_capability;
        let len = (2 + body.len()).next_multiple_of(4);
        assert!(
            offset + len <= 256,
            "capability list overflows config space"
        );
        self.bytes[offset] = id;
        self.bytes[offset + 1] = 0;
        self.bytes[offset + 2..offset + 2 + body.len()].copy_from_slice(body);
        match self.last_capability {
            Some(last) => self.bytes[last + 1] = offset as u8,
            None => {
                self.bytes[CAPABILITIES_POINTER] = offset as u8;
                let status = self.u16(STATUS) | STATUS_CAPABILITIES;
                self.set_u16(STATUS, status);
            }
        }
        self.last_capability = Some(offset);
        self.next_capability = offset + len;
        offset
    }

    fn bar_flags(kind: BarKind) -> u32 {
        match kind {
            BarKind::Io => 0x1,
            BarKind::Memory32 { prefetchable } => (prefetchable as u32) << 3,
            BarKind::Memory64 { prefetchable } => 0x4 | (prefetchable as u32) << 3,
        }
    }

    pub fn u8(&self, offset: usize) -> u8 {
        self.bytes[offset]
    }

    pub fn u16(&self, offset: usize) -> u16 {
        u16::from_le_bytes([self.bytes[offset], self.bytes[offset + 1]])
    }

    pub fn u32(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.bytes[offset..offset + 4].try_into().unwrap())
    }

    /// Sets a register as the device (not the guest) sees fit.
    pub fn set_u8(&mut self, offset: usize, value: u8) {
        self.bytes[offset] = value;
    }

    pub fn set_u16(&mut self, offset: usize, value: u16) {
        self.bytes[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
    }

    pub fn set_u32(&mut self, offset: usize, value: u32) {
        self.bytes[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
    }

    pub fn command(&self) -> u16 {
        self.u16(COMMAND)
    }

    /// Whether the guest let this function master the bus (DMA).
    pub fn bus_master(&self) -> bool {
        self.command() & COMMAND_BUS_MASTER != 0
    }

    /// Whether the guest masked legacy interrupts (INTx disable).
    pub fn intx_disabled(&self) -> bool {
        self.command() & COMMAND_INTX_DISABLE != 0
    }

    /// The interrupt line the firmware wrote (the ISA IRQ it routed INTx to).
    pub fn interrupt_line(&self) -> u8 {
        self.bytes[INTERRUPT_LINE]
    }

    /// Reads as the guest does. Accesses past the end read as all ones.
    pub fn read(&self, offset: usize, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = self.bytes.get(offset + i).copied().unwrap_or(0xff);
        }
    }

    /// Writes as the guest does: read-only bits stay, BARs keep their size
    /// alignment and type bits, the ROM BAR its enable bit.
    pub fn write(&mut self, offset: usize, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            let at = offset + i;
            if at >= 256 {
                break;
            }
            match at {
                BAR0..=0x27 => self.write_bar_byte(at, byte),
                ROM_ADDRESS..=0x33 => self.write_rom_byte(at, byte),
                _ => {
                    let mask = self.writable[at];
                    self.bytes[at] = (self.bytes[at] & !mask) | (byte & mask);
                }
            }
        }
    }

    fn write_bar_byte(&mut self, at: usize, byte: u8) {
        let index = (at - BAR0) / 4;
        let shift = 8 * ((at - BAR0) % 4);
        // Which declared BAR owns this slot, and is it the upper half of a
        // 64-bit one?
        let (bar, upper) = match (
            self.bars[index],
            index.checked_sub(1).and_then(|i| self.bars[i]),
        ) {
            (Some(bar), _) => (bar, false),
            (
                None,
                Some(
                    prev @ Bar {
                        kind: BarKind::Memory64 { .. },
                        ..
                    },
                ),
            ) => (prev, true),
            _ => return, // unimplemented BAR: reads as zero forever
        };
        let mask: u64 = !(bar.size - 1);
        let slot_mask: u32 = if upper {
            (mask >> 32) as u32
        } else {
            let flag_bits = if bar.kind == BarKind::Io { 0x3 } else { 0xf };
            mask as u32 & !flag_bits
        };
        let offset = BAR0 + 4 * index;
        let old = self.u32(offset);
        let merged = (old & !(0xff << shift)) | ((byte as u32) << shift);
        let flags = if upper { 0 } else { Self::bar_flags(bar.kind) };
        self.set_u32(offset, (merged & slot_mask) | flags);
    }

    fn write_rom_byte(&mut self, at: usize, byte: u8) {
        if self.rom_size == 0 {
            return;
        }
        let shift = 8 * (at - ROM_ADDRESS);
        let old = self.u32(ROM_ADDRESS);
        let merged = (old & !(0xff << shift)) | ((byte as u32) << shift);
        let mask = !(self.rom_size as u32 - 1) | 1;
        self.set_u32(ROM_ADDRESS, merged & mask);
    }

    /// Where BAR `index` (or [`PCI_ROM_BAR`]) decodes now, if it is
    /// implemented, placed (non-zero) and enabled by the command register.
    pub fn bar_region(&self, index: usize) -> Option<BarRegion> {
        let command = self.command();
        if index == PCI_ROM_BAR {
            let value = self.u32(ROM_ADDRESS);
            let base = (value & !0x7ff) as u64;
            return (self.rom_size > 0
                && value & 1 != 0
                && command & COMMAND_MEMORY != 0
                && base != 0)
                .then_some(BarRegion {
                    bar: index,
                    space: AddressSpace::Memory,
                    base,
                    size: self.rom_size,
                });
        }
        let bar = self.bars.get(index).copied().flatten()?;
        let low = self.u32(BAR0 + 4 * index) as u64;
        let (space, base, enabled) = match bar.kind {
            BarKind::Io => (AddressSpace::Io, low & !0x3, command & COMMAND_IO != 0),
            BarKind::Memory32 { .. } => (
                AddressSpace::Memory,
                low & !0xf,
                command & COMMAND_MEMORY != 0,
            ),
            BarKind::Memory64 { .. } => {
                let high = self.u32(BAR0 + 4 * (index + 1)) as u64;
                (
                    AddressSpace::Memory,
                    (high << 32) | (low & !0xf),
                    command & COMMAND_MEMORY != 0,
                )
            }
        };
        (enabled && base != 0).then_some(BarRegion {
            bar: index,
            space,
            base,
            size: bar.size,
        })
    }

    /// Every BAR (and the ROM) that decodes now.
    pub fn bar_regions(&self) -> impl Iterator<Item = BarRegion> + '_ {
        (0..=PCI_ROM_BAR).filter_map(|i| self.bar_region(i))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CLASS_STORAGE: PciClass = PciClass {
        base: 1,
        sub: 0,
        prog_if: 0,
    };

    fn read32(config: &PciConfig, offset: usize) -> u32 {
        let mut data = [0; 4];
        config.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn header_identifies_the_function() {
        let config = PciConfig::new(0x1af4, 0x1042, CLASS_STORAGE, 1).with_subsystem(0x1af4, 2);
        assert_eq!(read32(&config, 0), 0x1042_1af4);
        assert_eq!(read32(&config, 8), 0x0100_0001);
        assert_eq!(read32(&config, 0x2c), 0x0002_1af4);
        let mut far = [0; 2];
        config.read(255, &mut far);
        assert_eq!(far, [0, 0xff]);
    }

    #[test]
    fn bar_sizing_the_way_firmware_does_it() {
        let mut config = PciConfig::new(1, 2, CLASS_STORAGE, 0)
            .with_bar(0, BarKind::Io, 16)
            .with_bar(
                1,
                BarKind::Memory32 {
                    prefetchable: false,
                },
                0x1000,
            )
            .with_bar(2, BarKind::Memory64 { prefetchable: true }, 0x4000);
        for (offset, expect) in [
            (0x10, 0xffff_fff1u32), // 16 ports, I/O
            (0x14, 0xffff_f000),    // 4 KiB, 32-bit memory
            (0x18, 0xffff_c00c),    // 16 KiB, 64-bit prefetchable
            (0x1c, 0xffff_ffff),    // upper half of the 64-bit BAR
            (0x20, 0),              // unimplemented
        ] {
            config.write(offset, &0xffff_ffffu32.to_le_bytes());
            assert_eq!(read32(&config, offset), expect, "BAR at {offset:#x}");
        }
    }

    #[test]
    fn bars_decode_only_when_enabled() {
        let mut config = PciConfig::new(1, 2, CLASS_STORAGE, 0)
            .with_bar(4, BarKind::Io, 16)
            .with_bar(
                0,
                BarKind::Memory64 {
                    prefetchable: false,
                },
                0x4000,
            );
        config.write(0x20, &0xc001u32.to_le_bytes());
        config.write(0x10, &0xfebf_0000u32.to_le_bytes());
        config.write(0x14, &1u32.to_le_bytes());
        assert_eq!(config.bar_region(4), None, "I/O decoding is off");
        config.write(0x04, &(COMMAND_IO | COMMAND_MEMORY).to_le_bytes());
        assert_eq!(
            config.bar_region(4),
            Some(BarRegion {
                bar: 4,
                space: AddressSpace::Io,
                base: 0xc000,
                size: 16
            })
        );
        assert_eq!(config.bar_region(0).unwrap().base, 0x1_febf_0000);
    }

    #[test]
    fn rom_bar_has_enable_bit_and_size() {
        let mut config = PciConfig::new(1, 2, CLASS_STORAGE, 0).with_rom(0x10000);
        config.write(0x30, &0xffff_ffffu32.to_le_bytes());
        assert_eq!(read32(&config, 0x30), 0xffff_0001);
        config.write(0x30, &0xfeb0_0001u32.to_le_bytes());
        config.write(0x04, &COMMAND_MEMORY.to_le_bytes());
        assert_eq!(config.bar_region(PCI_ROM_BAR).unwrap().base, 0xfeb0_0000);
    }

    #[test]
    fn read_only_registers_ignore_writes() {
        let mut config = PciConfig::new(0x8086, 0x1237, CLASS_STORAGE, 2).with_interrupt_pin(1);
        config.write(0, &[0; 16]);
        assert_eq!(read32(&config, 0), 0x1237_8086);
        config.write(0x3c, &[11, 4]);
        assert_eq!(config.interrupt_line(), 11);
        assert_eq!(config.u8(0x3d), 1);
    }

    #[test]
    fn capabilities_form_a_list() {
        let mut config = PciConfig::new(1, 2, CLASS_STORAGE, 0);
        let first = config.add_capability(0x09, &[16, 1, 2]);
        let second = config.add_capability(0x11, &[0; 10]);
        assert_eq!(config.u8(0x34) as usize, first);
        assert_eq!(config.u8(first + 1) as usize, second);
        assert_eq!(config.u8(second + 1), 0);
        assert_ne!(config.u16(0x06) & STATUS_CAPABILITIES, 0);
    }
}
