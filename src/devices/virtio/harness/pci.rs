//! The PCI side of a guest driver, for the harness: what SeaBIOS does to a
//! function (size and place its BARs, enable memory decoding and bus
//! mastering) and what Linux's `virtio_pci_modern` does next (walk the
//! capability list for the virtio structures and MSI-X, negotiate
//! features, program the MSI-X table, set each queue up, DRIVER_OK).
//!
//! Every access goes through the [`PciDevice`] trait, as the VMM's PCI bus
//! routes a vCPU's configuration cycles and BAR accesses, with the device
//! behind the same mutex its worker thread takes. Register offsets are the
//! spec's (§4.1.4.3), kept here separately from the transport's own, as a
//! driver keeps its own copy of the header.

use std::sync::{Arc, Mutex, MutexGuard};

use crate::devices::pci::msix::{
    MSIX_ENABLE, MSIX_FUNCTION_MASK, MSIX_MESSAGE_CONTROL, PCI_CAP_ID_MSIX,
};
use crate::devices::pci::PciDevice;
use crate::devices::virtio::pci::{
    VirtioPciDevice, CONFIG_GENERATION, CONFIG_MSIX_VECTOR, DEVICE_FEATURE, DEVICE_FEATURE_SELECT,
    DEVICE_STATUS, DRIVER_FEATURE, DRIVER_FEATURE_SELECT, NUM_QUEUES, QUEUE_DESC, QUEUE_DEVICE,
    QUEUE_DRIVER, QUEUE_ENABLE, QUEUE_MSIX_VECTOR, QUEUE_NOTIFY_OFF, QUEUE_SELECT, QUEUE_SIZE,
    VIRTIO_PCI_CAP_COMMON_CFG, VIRTIO_PCI_CAP_DEVICE_CFG, VIRTIO_PCI_CAP_ISR_CFG,
    VIRTIO_PCI_CAP_NOTIFY_CFG,
};
use crate::devices::virtio::{
    STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK,
};

use super::HarnessError;

const PCI_COMMAND: usize = 0x04;
const COMMAND_MEMORY: u16 = 1 << 1;
const COMMAND_BUS_MASTER: u16 = 1 << 2;
const PCI_BAR0: usize = 0x10;
const PCI_CAPABILITY_LIST: usize = 0x34;
const PCI_CAP_ID_VNDR: u8 = 0x09;

/// Where the harness places BARs: 32-bit ones below 4 GiB where SeaBIOS's
/// PCI window starts, 64-bit ones above 32 GiB.
const MMIO32_BASE: u64 = 0xc000_0000;
const MMIO64_BASE: u64 = 0x8_0000_0000;

/// An x86 MSI address (fixed destination, APIC 0), as Linux programs one.
const MSI_ADDRESS: u64 = 0xfee0_0000;

/// One virtio structure: (BAR, offset inside it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Structure {
    bar: usize,
    offset: u64,
}

/// A started (or starting) virtio PCI function, seen from its driver.
pub struct PciDriver {
    device: Arc<Mutex<VirtioPciDevice>>,
    bar_bases: [u64; 6],
    common: Structure,
    isr: Structure,
    device_cfg: Structure,
    notify: Structure,
    notify_multiplier: u32,
    msix_cap: Option<usize>,
}

impl PciDriver {
    /// Places the BARs, turns decoding and bus mastering on, and finds the
    /// virtio structures, as firmware and `virtio_pci_modern_probe` do.
    pub fn probe(device: Arc<Mutex<VirtioPciDevice>>) -> Result<Self, HarnessError> {
        let mut driver = Self {
            device,
            bar_bases: [0; 6],
            common: Structure { bar: 0, offset: 0 },
            isr: Structure { bar: 0, offset: 0 },
            device_cfg: Structure { bar: 0, offset: 0 },
            notify: Structure { bar: 0, offset: 0 },
            notify_multiplier: 0,
            msix_cap: None,
        };
        driver.assign_bars();
        let command = driver.cfg_u16(PCI_COMMAND) | COMMAND_MEMORY | COMMAND_BUS_MASTER;
        driver
            .lock()
            .write_config(PCI_COMMAND, &command.to_le_bytes());
        driver.find_capabilities()?;
        Ok(driver)
    }

    fn lock(&self) -> MutexGuard<'_, VirtioPciDevice> {
        self.device.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn cfg_read(&self, offset: usize, data: &mut [u8]) {
        self.lock().read_config(offset, data);
    }

    fn cfg_u8(&self, offset: usize) -> u8 {
        let mut b = [0; 1];
        self.cfg_read(offset, &mut b);
        b[0]
    }

    fn cfg_u16(&self, offset: usize) -> u16 {
        let mut b = [0; 2];
        self.cfg_read(offset, &mut b);
        u16::from_le_bytes(b)
    }

    fn cfg_u32(&self, offset: usize) -> u32 {
        let mut b = [0; 4];
        self.cfg_read(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn cfg_write32(&self, offset: usize, value: u32) {
        self.lock().write_config(offset, &value.to_le_bytes());
    }

    /// Sizes each BAR by writing all ones and reading back, then places
    /// it naturally aligned, as SeaBIOS's `pci_bios_map_devices` does.
    fn assign_bars(&mut self) {
        let mut next32 = MMIO32_BASE;
        let mut next64 = MMIO64_BASE;
        let mut bar = 0;
        while bar < 6 {
            let at = PCI_BAR0 + 4 * bar;
            let original = self.cfg_u32(at);
            self.cfg_write32(at, u32::MAX);
            let low = self.cfg_u32(at);
            if low == 0 || original & 1 == 1 {
                // Absent, or I/O space (a virtio-pci modern function has none).
                bar += 1;
                continue;
            }
            let is64 = (low >> 1) & 3 == 2;
            let mut mask = (low & !0xf) as u64;
            if is64 {
                self.cfg_write32(at + 4, u32::MAX);
                mask |= (self.cfg_u32(at + 4) as u64) << 32;
            } else {
                mask |= 0xffff_ffff_0000_0000;
            }
            let size = (!mask).wrapping_add(1);
            let next = if is64 { &mut next64 } else { &mut next32 };
            let base = next.div_ceil(size) * size;
            *next = base + size;
            self.cfg_write32(at, base as u32 | (low & 0xf));
            if is64 {
                self.cfg_write32(at + 4, (base >> 32) as u32);
            }
            self.bar_bases[bar] = base;
            bar += if is64 { 2 } else { 1 };
        }
    }

    /// Walks the capability list as `virtio_pci_find_capability` does; the
    /// first structure of each type wins (§4.1.4).
    fn find_capabilities(&mut self) -> Result<(), HarnessError> {
        let mut found: [Option<Structure>; 5] = [None; 5];
        let mut cap = self.cfg_u8(PCI_CAPABILITY_LIST) as usize & !3;
        let mut hops = 0;
        while cap != 0 {
            hops += 1;
            if hops > 48 {
                return Err(HarnessError::BringUp("the capability list loops".into()));
            }
            match self.cfg_u8(cap) {
                PCI_CAP_ID_MSIX => self.msix_cap = Some(cap),
                PCI_CAP_ID_VNDR => {
                    let cfg_type = self.cfg_u8(cap + 3);
                    let structure = Structure {
                        bar: self.cfg_u8(cap + 4) as usize,
                        offset: self.cfg_u32(cap + 8) as u64,
                    };
                    if cfg_type == VIRTIO_PCI_CAP_NOTIFY_CFG && found[2].is_none() {
                        self.notify_multiplier = self.cfg_u32(cap + 16);
                    }
                    if let Some(slot) = found.get_mut(cfg_type as usize) {
                        slot.get_or_insert(structure);
                    }
                }
                _ => {}
            }
            cap = self.cfg_u8(cap + 1) as usize & !3;
        }
        let get = |cfg_type: u8, what: &str| {
            found[cfg_type as usize]
                .filter(|s| s.bar < 6)
                .ok_or_else(|| HarnessError::BringUp(format!("no {what} capability")))
        };
        self.common = get(VIRTIO_PCI_CAP_COMMON_CFG, "common configuration")?;
        self.isr = get(VIRTIO_PCI_CAP_ISR_CFG, "ISR")?;
        self.device_cfg = get(VIRTIO_PCI_CAP_DEVICE_CFG, "device configuration")?;
        self.notify = get(VIRTIO_PCI_CAP_NOTIFY_CFG, "notification")?;
        Ok(())
    }

    fn bar_read(&self, s: Structure, offset: u64, len: usize) -> u64 {
        let mut buf = [0u8; 8];
        self.lock()
            .read_bar(s.bar, s.offset + offset, &mut buf[..len]);
        u64::from_le_bytes(buf)
    }

    fn bar_write(&self, s: Structure, offset: u64, len: usize, value: u64) {
        self.lock()
            .write_bar(s.bar, s.offset + offset, &value.to_le_bytes()[..len]);
    }

    fn common_read(&self, offset: u64, len: usize) -> u64 {
        self.bar_read(self.common, offset, len)
    }

    fn common_write(&self, offset: u64, len: usize, value: u64) {
        self.bar_write(self.common, offset, len, value)
    }

    /// A 64-bit register written as two 32-bit halves, low first (Linux's
    /// `vp_iowrite64_twopart`).
    fn common_write64(&self, offset: u64, value: u64) {
        self.common_write(offset, 4, value & 0xffff_ffff);
        self.common_write(offset + 4, 4, value >> 32);
    }

    pub fn status(&self) -> u8 {
        self.common_read(DEVICE_STATUS, 1) as u8
    }

    fn add_status(&self, bits: u8) {
        let status = self.status();
        self.common_write(DEVICE_STATUS, 1, (status | bits) as u64);
    }

    pub fn num_queues(&self) -> u16 {
        self.common_read(NUM_QUEUES, 2) as u16
    }

    /// Reset, ACKNOWLEDGE, DRIVER, then accepts `wanted & offered` and
    /// sets FEATURES_OK (§3.1.1 steps 1-6). Returns the accepted features.
    pub fn negotiate(&self, wanted: u64) -> Result<u64, HarnessError> {
        self.common_write(DEVICE_STATUS, 1, 0);
        // A reset completes when the status reads back 0 (§4.1.4.3.2).
        if self.status() != 0 {
            return Err(HarnessError::BringUp("reset did not complete".into()));
        }
        self.add_status(STATUS_ACKNOWLEDGE);
        self.add_status(STATUS_DRIVER);
        let mut offered = 0;
        for select in 0..2u64 {
            self.common_write(DEVICE_FEATURE_SELECT, 4, select);
            offered |= self.common_read(DEVICE_FEATURE, 4) << (32 * select);
        }
        let accepted = offered & wanted;
        for select in 0..2u64 {
            self.common_write(DRIVER_FEATURE_SELECT, 4, select);
            self.common_write(DRIVER_FEATURE, 4, (accepted >> (32 * select)) & 0xffff_ffff);
        }
        self.add_status(STATUS_FEATURES_OK);
        if self.status() & STATUS_FEATURES_OK == 0 {
            return Err(HarnessError::BringUp(format!(
                "the device refused features {accepted:#x}"
            )));
        }
        Ok(accepted)
    }

    /// Enables MSI-X with `vectors` entries programmed and unmasked, as
    /// `pci_alloc_irq_vectors` does: function masked while the table is
    /// written, then unmasked. Vector `n` carries data `0x20 + n`.
    pub fn enable_msix(&self, vectors: u16) -> Result<(), HarnessError> {
        let cap = self
            .msix_cap
            .ok_or_else(|| HarnessError::BringUp("no MSI-X capability".into()))?;
        let table = self.cfg_u32(cap + 4);
        let bar = (table & 7) as usize;
        let table_offset = (table & !7) as u64;
        let control = cap + MSIX_MESSAGE_CONTROL;
        let table_size = (self.cfg_u16(control) & 0x7ff) + 1;
        if vectors > table_size {
            return Err(HarnessError::BringUp(format!(
                "{vectors} vectors wanted, the table has {table_size}"
            )));
        }
        let mask = MSIX_ENABLE | MSIX_FUNCTION_MASK;
        self.lock().write_config(control, &mask.to_le_bytes());
        for vector in 0..vectors as u64 {
            let entry = table_offset + 16 * vector;
            let mut device = self.lock();
            device.write_bar(bar, entry, &(MSI_ADDRESS as u32).to_le_bytes());
            device.write_bar(bar, entry + 4, &((MSI_ADDRESS >> 32) as u32).to_le_bytes());
            device.write_bar(bar, entry + 8, &(0x20 + vector as u32).to_le_bytes());
            device.write_bar(bar, entry + 12, &0u32.to_le_bytes());
        }
        self.lock()
            .write_config(control, &MSIX_ENABLE.to_le_bytes());
        Ok(())
    }

    /// Maps configuration changes to MSI-X `vector` and checks the device
    /// took it (§4.1.5.1.2).
    pub fn set_config_vector(&self, vector: u16) -> Result<(), HarnessError> {
        self.common_write(CONFIG_MSIX_VECTOR, 2, vector as u64);
        if self.common_read(CONFIG_MSIX_VECTOR, 2) != vector as u64 {
            return Err(HarnessError::BringUp(format!(
                "config_msix_vector {vector} refused"
            )));
        }
        Ok(())
    }

    /// Sets queue `index` up on the rings at `(desc, driver, device)`
    /// with `size` entries and MSI-X `vector`, and enables it (§4.1.5.1.3).
    /// Returns the guest address its notifications go to.
    pub fn setup_queue(
        &self,
        index: u16,
        size: u16,
        (desc, driver, device): (u64, u64, u64),
        vector: u16,
    ) -> Result<u64, HarnessError> {
        self.common_write(QUEUE_SELECT, 2, index as u64);
        let max = self.common_read(QUEUE_SIZE, 2) as u16;
        if max == 0 || size > max {
            return Err(HarnessError::BringUp(format!(
                "queue {index} holds {max} entries, {size} wanted"
            )));
        }
        self.common_write(QUEUE_SIZE, 2, size as u64);
        self.common_write64(QUEUE_DESC, desc);
        self.common_write64(QUEUE_DRIVER, driver);
        self.common_write64(QUEUE_DEVICE, device);
        self.common_write(QUEUE_MSIX_VECTOR, 2, vector as u64);
        if self.common_read(QUEUE_MSIX_VECTOR, 2) != vector as u64 {
            return Err(HarnessError::BringUp(format!(
                "queue {index} refused MSI-X vector {vector}"
            )));
        }
        let notify_off = self.common_read(QUEUE_NOTIFY_OFF, 2);
        self.common_write(QUEUE_ENABLE, 2, 1);
        Ok(self.bar_bases[self.notify.bar]
            + self.notify.offset
            + notify_off * self.notify_multiplier as u64)
    }

    /// Sets DRIVER_OK; the device is live when it reads back.
    pub fn driver_ok(&self) -> Result<(), HarnessError> {
        self.add_status(STATUS_DRIVER_OK);
        if self.status() & STATUS_DRIVER_OK == 0 {
            return Err(HarnessError::BringUp(format!(
                "DRIVER_OK refused (status {:#x})",
                self.status()
            )));
        }
        Ok(())
    }

    /// Reads the device configuration at `offset` (`len` of 1, 2, 4 or 8;
    /// an 8-byte field in two halves), retrying while `config_generation`
    /// changes, as `virtio_cread` does.
    pub fn read_device_config(&self, offset: u64, len: usize) -> u64 {
        loop {
            let before = self.common_read(CONFIG_GENERATION, 1);
            let value = if len == 8 {
                self.bar_read(self.device_cfg, offset, 4)
                    | self.bar_read(self.device_cfg, offset + 4, 4) << 32
            } else {
                self.bar_read(self.device_cfg, offset, len)
            };
            if self.common_read(CONFIG_GENERATION, 1) == before {
                return value;
            }
        }
    }

    /// Reads (and so clears) the ISR, as an INTx handler does.
    pub fn read_isr(&self) -> u8 {
        self.bar_read(self.isr, 0, 1) as u8
    }

    /// A 16-bit write of `value` to guest address `addr`, delivered as an
    /// MMIO exit would be: to whichever BAR decodes it.
    pub fn mmio_write16(&self, addr: u64, value: u16) {
        let mut device = self.lock();
        let region = device
            .config()
            .bar_regions()
            .find(|r| addr >= r.base && addr - r.base < r.size);
        if let Some(region) = region {
            device.write_bar(region.bar, addr - region.base, &value.to_le_bytes());
        }
    }

    /// The device, for what the harness hands to the worker thread.
    pub fn device(&self) -> &Arc<Mutex<VirtioPciDevice>> {
        &self.device
    }
}
