//! The PCI bus: configuration mechanism #1 (ports 0xCF8/0xCFC, PCI 3.0
//! §3.2.2.3.2), BAR dispatch, and INTx routing through the PIIX3's PIRQ
//! registers.
//!
//! Only bus 0 exists. BARs are not placed on the VMM's buses; instead the
//! VMM hands accesses that no fixed device claims to [`PciBus::read_bar`] /
//! [`PciBus::write_bar`], which decode them against the current BAR values.
//! That keeps firmware's BAR programming free of bookkeeping.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};

use super::config::{AddressSpace, BarRegion};
use super::PciDevice;
use crate::devices::{BusDevice, IrqLine, MachineControl};
use crate::guest_warn;

/// A PCI function shared between the bus and its owner.
pub type SharedPciDevice = Arc<Mutex<dyn PciDevice>>;

/// Errors from building the bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PciError {
    /// Two functions at one device/function number.
    #[error("PCI slot {slot:02x}.{function} is taken")]
    SlotTaken { slot: u8, function: u8 },
    /// Device numbers are 0..32, functions 0..8.
    #[error("PCI address {slot:02x}.{function} is out of range")]
    BadAddress { slot: u8, function: u8 },
}

struct Function {
    /// Device number << 3 | function number.
    devfn: u8,
    device: SharedPciDevice,
    /// Where its BARs decode, refreshed after every configuration write.
    regions: Vec<BarRegion>,
}

/// Bus 0 of an i440FX PC.
#[derive(Default)]
pub struct PciBus {
    functions: Mutex<Vec<Function>>,
}

impl PciBus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Plugs `device` in at `slot`.`function`.
    pub fn add(&self, slot: u8, function: u8, device: SharedPciDevice) -> Result<(), PciError> {
        if slot >= 32 || function >= 8 {
            return Err(PciError::BadAddress { slot, function });
        }
        let devfn = slot << 3 | function;
        let mut functions = self.functions.lock().unwrap();
        if functions.iter().any(|f| f.devfn == devfn) {
            return Err(PciError::SlotTaken { slot, function });
        }
        let regions = device.lock().unwrap().config().bar_regions().collect();
        functions.push(Function {
            devfn,
            device,
            regions,
        });
        Ok(())
    }

    fn find(&self, devfn: u8) -> Option<SharedPciDevice> {
        let functions = self.functions.lock().unwrap();
        functions
            .iter()
            .find(|f| f.devfn == devfn)
            .map(|f| f.device.clone())
    }

    /// A configuration read of bus 0; absent functions read all ones.
    pub fn read_config(&self, devfn: u8, offset: usize, data: &mut [u8]) {
        match self.find(devfn) {
            Some(device) => device.lock().unwrap().read_config(offset, data),
            None => data.fill(0xff),
        }
    }

    /// A configuration write to bus 0; writes to absent functions vanish.
    pub fn write_config(&self, devfn: u8, offset: usize, data: &[u8]) {
        let mut functions = self.functions.lock().unwrap();
        if let Some(function) = functions.iter_mut().find(|f| f.devfn == devfn) {
            let mut device = function.device.lock().unwrap();
            device.write_config(offset, data);
            function.regions = device.config().bar_regions().collect();
        }
    }

    fn decode(&self, space: AddressSpace, addr: u64) -> Option<(SharedPciDevice, usize, u64)> {
        let functions = self.functions.lock().unwrap();
        functions.iter().find_map(|f| {
            f.regions
                .iter()
                .find(|r| r.space == space && addr >= r.base && addr - r.base < r.size)
                .map(|r| (f.device.clone(), r.bar, addr - r.base))
        })
    }

    /// Reads through whichever BAR decodes `addr` in `space`; `false` when none does.
    pub fn read_bar(&self, space: AddressSpace, addr: u64, data: &mut [u8]) -> bool {
        match self.decode(space, addr) {
            Some((device, bar, offset)) => {
                device.lock().unwrap().read_bar(bar, offset, data);
                true
            }
            None => false,
        }
    }

    /// Writes through whichever BAR decodes `addr` in `space`; `false` when none does.
    pub fn write_bar(&self, space: AddressSpace, addr: u64, data: &[u8]) -> bool {
        match self.decode(space, addr) {
            Some((device, bar, offset)) => {
                device.lock().unwrap().write_bar(bar, offset, data);
                true
            }
            None => false,
        }
    }

    /// Every decoding BAR, as (slot, function, region), for logs and tests.
    pub fn regions(&self) -> Vec<(u8, u8, BarRegion)> {
        let functions = self.functions.lock().unwrap();
        functions
            .iter()
            .flat_map(|f| {
                f.regions
                    .iter()
                    .map(move |r| (f.devfn >> 3, f.devfn & 7, *r))
            })
            .collect()
    }
}

/// Ports 0xCF8..0xD00: the configuration address and data registers, and the
/// PIIX3 reset control register at 0xCF9 which shares the range.
pub struct PciConfigIo {
    bus: Arc<PciBus>,
    address: u32,
    machine: Arc<dyn MachineControl>,
    reset_control: u8,
}

/// Bit 31 of the address register: configuration cycles enabled.
const CONFIG_ENABLE: u32 = 1 << 31;
/// Reset control register (PIIX3 datasheet §4.1.4): bit 2 starts a reset.
const RESET_CPU: u8 = 1 << 2;

impl PciConfigIo {
    pub fn new(bus: Arc<PciBus>, machine: Arc<dyn MachineControl>) -> Self {
        Self {
            bus,
            address: 0,
            machine,
            reset_control: 0,
        }
    }

    /// The function and register offset the address register selects, if
    /// it selects bus 0 with configuration enabled.
    fn target(&self, port_offset: u64) -> Option<(u8, usize)> {
        let bus = (self.address >> 16) & 0xff;
        if self.address & CONFIG_ENABLE == 0 || bus != 0 {
            return None;
        }
        let devfn = (self.address >> 8) as u8;
        let register = (self.address & 0xfc) as usize + (port_offset as usize - 4);
        Some((devfn, register))
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        match (offset, data.len()) {
            (0, 4) => data.copy_from_slice(&self.address.to_le_bytes()),
            (1, 1) => data[0] = self.reset_control,
            (4..=7, _) => match self.target(offset) {
                Some((devfn, register)) => self.bus.read_config(devfn, register, data),
                None => data.fill(0xff),
            },
            _ => data.fill(0xff),
        }
    }

    fn write(&mut self, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (0, 4) => {
                self.address = u32::from_le_bytes(data.try_into().unwrap()) & 0x80ff_fffc;
            }
            (1, 1) => {
                // A reset starts on the write that sets bit 2 (bit 1 picks
                // hard or soft, which a VM does not distinguish).
                if data[0] & RESET_CPU != 0 && self.reset_control & RESET_CPU == 0 {
                    tracing::info!("guest reset through port 0xcf9");
                    self.machine.request_reset();
                }
                self.reset_control = data[0] & !RESET_CPU;
            }
            (4..=7, _) => {
                if let Some((devfn, register)) = self.target(offset) {
                    self.bus.write_config(devfn, register, data);
                }
            }
            // 0xCFB was the configuration-mechanism select register of
            // chipsets older than the PIIX; Linux's type-1 probe
            // (pci_check_type1) writes 1 there on every boot. Nothing to
            // select here, as on QEMU's i440FX.
            (3, 1) => {}
            _ => guest_warn!(
                offset,
                len = data.len(),
                "odd access to PCI configuration ports"
            ),
        }
    }
}

/// The PIIX3's PIRQ routing registers (config 0x60..0x63), shared with the
/// INTx lines they route. A register holds an ISA IRQ in bits 3:0 and a
/// disable flag in bit 7, as firmware programs it.
pub struct IntxRouter {
    routes: [AtomicU8; 4],
    /// Per PIRQ, a bitmask of the sources asserting it (PCI INTx is level
    /// triggered and shared, so the line is the OR of its sources).
    asserted: Mutex<[u64; 4]>,
    isa_irq: Box<dyn Fn(u8, bool) + Send + Sync>,
}

const PIRQ_DISABLED: u8 = 0x80;

impl IntxRouter {
    /// `isa_irq(irq, level)` drives one ISA interrupt line.
    pub fn new(isa_irq: impl Fn(u8, bool) + Send + Sync + 'static) -> Arc<Self> {
        Arc::new(Self {
            routes: std::array::from_fn(|_| AtomicU8::new(PIRQ_DISABLED)),
            asserted: Mutex::new([0; 4]),
            isa_irq: Box::new(isa_irq),
        })
    }

    pub fn route(&self, pirq: usize) -> u8 {
        self.routes[pirq].load(Ordering::SeqCst)
    }

    pub fn set_route(&self, pirq: usize, value: u8) {
        self.routes[pirq].store(value, Ordering::SeqCst);
    }

    fn set_source(&self, pirq: usize, source: u32, high: bool) {
        let mut asserted = self.asserted.lock().unwrap();
        let was = asserted[pirq] != 0;
        if high {
            asserted[pirq] |= 1 << source;
        } else {
            asserted[pirq] &= !(1 << source);
        }
        let now = asserted[pirq] != 0;
        let route = self.route(pirq);
        if was != now && route & PIRQ_DISABLED == 0 {
            (self.isa_irq)(route & 0xf, now);
        }
    }
}

/// The INTx line of one PCI function, routed through the PIIX3.
pub struct PciIntx {
    router: Arc<IntxRouter>,
    pirq: usize,
    source: u32,
}

impl PciIntx {
    /// The line of a function in `slot` using interrupt `pin` (1 = INTA#),
    /// swizzled onto PIRQA..D as on an i440FX board: PIRQ = (slot + pin - 1) mod 4.
    pub fn new(router: Arc<IntxRouter>, slot: u8, pin: u8) -> Self {
        let pirq = (slot as usize + pin as usize - 1) % 4;
        let source = (slot as u32 * 4 + pin as u32) % 64;
        Self {
            router,
            pirq,
            source,
        }
    }
}

impl IrqLine for PciIntx {
    fn set_level(&self, high: bool) {
        self.router.set_source(self.pirq, self.source, high);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::devices::pci::{BarKind, PciClass, PciConfig};
    use crate::devices::FakeMachine;

    struct Dummy {
        config: PciConfig,
        last_write: Option<(usize, u64, Vec<u8>)>,
    }

    impl PciDevice for Dummy {
        fn config(&self) -> &PciConfig {
            &self.config
        }
        fn config_mut(&mut self) -> &mut PciConfig {
            &mut self.config
        }
        fn read_bar(&mut self, bar: usize, offset: u64, data: &mut [u8]) {
            data.fill((bar as u8) << 4 | offset as u8);
        }
        fn write_bar(&mut self, bar: usize, offset: u64, data: &[u8]) {
            self.last_write = Some((bar, offset, data.to_vec()));
        }
    }

    fn dummy() -> Arc<Mutex<Dummy>> {
        let class = PciClass {
            base: 0xff,
            sub: 0,
            prog_if: 0,
        };
        Arc::new(Mutex::new(Dummy {
            config: PciConfig::new(0x1234, 0x5678, class, 0)
                .with_bar(0, BarKind::Io, 16)
                .with_bar(
                    1,
                    BarKind::Memory32 {
                        prefetchable: false,
                    },
                    0x1000,
                ),
            last_write: None,
        }))
    }

    fn config_io() -> (PciConfigIo, Arc<PciBus>, Arc<FakeMachine>) {
        let bus = Arc::new(PciBus::new());
        let machine = Arc::new(FakeMachine::default());
        (PciConfigIo::new(bus.clone(), machine.clone()), bus, machine)
    }

    fn select(io: &mut PciConfigIo, slot: u32, function: u32, register: u32) {
        let address = CONFIG_ENABLE | slot << 11 | function << 8 | register;
        io.write(0, &address.to_le_bytes());
    }

    fn read_dword(io: &mut PciConfigIo) -> u32 {
        let mut data = [0; 4];
        io.read(4, &mut data);
        u32::from_le_bytes(data)
    }

    #[test]
    fn linux_type1_probe_finds_mechanism_1() {
        // arch/x86/pci/direct.c, pci_check_type1: a byte to 0xCFB, then
        // the address register must hold what is written to it.
        let (mut io, _, _) = config_io();
        io.write(0, &0x8000_1234u32.to_le_bytes());
        io.write(3, &[0x01]);
        let mut value = [0u8; 4];
        io.read(0, &mut value);
        assert_eq!(
            u32::from_le_bytes(value),
            0x8000_1234,
            "0xCFB leaves it alone"
        );
        io.write(0, &0x8000_0000u32.to_le_bytes());
        io.read(0, &mut value);
        assert_eq!(u32::from_le_bytes(value), 0x8000_0000);
    }

    #[test]
    fn enumeration_finds_present_functions_only() {
        let (mut io, bus, _) = config_io();
        bus.add(3, 0, dummy()).unwrap();
        select(&mut io, 3, 0, 0);
        assert_eq!(read_dword(&mut io), 0x5678_1234);
        select(&mut io, 4, 0, 0);
        assert_eq!(read_dword(&mut io), 0xffff_ffff);
        // Sub-dword reads at 0xCFE select the upper half of the register.
        select(&mut io, 3, 0, 0);
        let mut word = [0; 2];
        io.read(6, &mut word);
        assert_eq!(u16::from_le_bytes(word), 0x5678);
        // Configuration disabled (bit 31 clear): nothing answers.
        io.write(0, &(3u32 << 11).to_le_bytes());
        assert_eq!(read_dword(&mut io), 0xffff_ffff);
    }

    #[test]
    fn slots_are_exclusive_and_bounded() {
        let bus = PciBus::new();
        bus.add(1, 0, dummy()).unwrap();
        assert_eq!(
            bus.add(1, 0, dummy()),
            Err(PciError::SlotTaken {
                slot: 1,
                function: 0
            })
        );
        assert!(bus.add(32, 0, dummy()).is_err());
        assert!(bus.add(0, 8, dummy()).is_err());
    }

    #[test]
    fn programmed_bars_route_accesses() {
        let (mut io, bus, _) = config_io();
        let device = dummy();
        bus.add(2, 0, device.clone()).unwrap();
        select(&mut io, 2, 0, 0x10);
        io.write(4, &0xc040u32.to_le_bytes());
        select(&mut io, 2, 0, 0x14);
        io.write(4, &0xfebf_1000u32.to_le_bytes());
        let mut byte = [0; 1];
        assert!(
            !bus.read_bar(AddressSpace::Io, 0xc041, &mut byte),
            "decoding still off"
        );
        select(&mut io, 2, 0, 0x04);
        io.write(4, &3u32.to_le_bytes());
        assert!(bus.read_bar(AddressSpace::Io, 0xc041, &mut byte));
        assert_eq!(byte, [0x01]);
        assert!(bus.write_bar(AddressSpace::Memory, 0xfebf_1ffc, &[9]));
        assert_eq!(device.lock().unwrap().last_write, Some((1, 0xffc, vec![9])));
        assert!(!bus.read_bar(AddressSpace::Memory, 0xfebf_2000, &mut byte));
        assert!(
            !bus.read_bar(AddressSpace::Memory, 0xc041, &mut byte),
            "wrong space"
        );
    }

    #[test]
    fn port_cf9_resets_on_bit_2() {
        let (mut io, _, machine) = config_io();
        io.write(1, &[0x02]);
        assert_eq!(machine.resets(), 0);
        io.write(1, &[0x06]);
        assert_eq!(machine.resets(), 1);
        // A dword write to 0xCF8 is the address register, not a reset.
        io.write(0, &0x8000_0000u32.to_le_bytes());
        assert_eq!(machine.resets(), 1);
    }

    #[test]
    fn intx_is_swizzled_routed_and_shared() {
        let log = Arc::new(Mutex::new(Vec::new()));
        let sink = log.clone();
        let router = IntxRouter::new(move |irq, level| sink.lock().unwrap().push((irq, level)));
        router.set_route(0, 10);
        router.set_route(1, 11);
        // Slot 1 INTA# and slot 4 INTB# both land on PIRQB.
        let a = PciIntx::new(router.clone(), 1, 1);
        let b = PciIntx::new(router.clone(), 4, 2);
        a.set_level(true);
        b.set_level(true);
        a.set_level(false);
        assert_eq!(
            *log.lock().unwrap(),
            vec![(11, true)],
            "still held by the second source"
        );
        b.set_level(false);
        assert_eq!(log.lock().unwrap().last(), Some(&(11, false)));
        // A disabled route drives nothing.
        let c = PciIntx::new(router, 3, 1); // PIRQD, never routed
        c.set_level(true);
        assert_eq!(log.lock().unwrap().len(), 2);
    }
}
