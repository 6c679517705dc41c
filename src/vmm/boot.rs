//! What the firmware is told about the machine through fw_cfg: CPUs, the
//! memory map, the ACPI tables and the boot order.

use super::config::{DiskBus, VmConfig};
use super::layout::{HIGH_RAM_START, KVM_IDENTITY_MAP, KVM_TSS};
use super::memory::GuestMemory;
use crate::devices::fw_cfg::{self, keys, E820Entry, E820Kind, FwCfg, FwCfgError};

/// KVM's identity-map page and TSS (three pages) must not be used as RAM.
pub(super) const KVM_PRIVATE_SIZE: u64 = KVM_TSS + 3 * 0x1000 - KVM_IDENTITY_MAP;

/// The e820 map: RAM as laid out, plus KVM's private pages. SeaBIOS adds
/// its own reservations (EBDA, BIOS area) on top.
pub fn e820_map(memory: &GuestMemory) -> Vec<E820Entry> {
    let mut map = vec![E820Entry {
        addr: 0,
        len: memory.low_ram,
        kind: E820Kind::Ram,
    }];
    if memory.high_ram > 0 {
        map.push(E820Entry {
            addr: HIGH_RAM_START,
            len: memory.high_ram,
            kind: E820Kind::Ram,
        });
    }
    map.push(E820Entry {
        addr: KVM_IDENTITY_MAP,
        len: KVM_PRIVATE_SIZE,
        kind: E820Kind::Reserved,
    });
    map
}

/// Device paths in boot order, as SeaBIOS matches them.
pub fn boot_order(config: &VmConfig) -> Vec<String> {
    let mut disks: Vec<_> = config
        .disks
        .iter()
        .filter_map(|d| d.boot_order.map(|o| (o, d)))
        .collect();
    disks.sort_by_key(|(order, _)| *order);
    disks
        .into_iter()
        .map(|(_, disk)| match disk.bus {
            DiskBus::Ide { channel, unit } => fw_cfg::ide_boot_path(channel, unit),
            DiskBus::Virtio { slot } => fw_cfg::pci_boot_path(slot, 0),
        })
        .collect()
}

/// Fills `fw_cfg` for `config` running in `memory`.
pub fn fill_fw_cfg(
    fw_cfg: &mut FwCfg,
    config: &VmConfig,
    memory: &GuestMemory,
) -> Result<(), FwCfgError> {
    fw_cfg.add_u16(keys::NB_CPUS, config.vcpus as u16);
    fw_cfg.add_u16(keys::MAX_CPUS, config.vcpus as u16);
    fw_cfg.add_u64(keys::RAM_SIZE, config.memory);
    fw_cfg.add_u16(keys::NOGRAPHIC, 0);
    fw_cfg.add_u16(keys::BOOT_MENU, 0);
    fw_cfg.add_file("etc/e820", fw_cfg::e820_file(&e820_map(memory)))?;
    let acpi = super::acpi::build(&super::acpi::AcpiConfig {
        vcpus: config.vcpus,
        low_ram_end: memory.low_ram,
    });
    fw_cfg.add_file(super::acpi::TABLES_FILE, acpi.tables)?;
    fw_cfg.add_file(super::acpi::RSDP_FILE, acpi.rsdp)?;
    fw_cfg.add_file(super::acpi::LOADER_FILE, acpi.loader)?;
    let order = boot_order(config);
    if !order.is_empty() {
        fw_cfg.add_file("bootorder", fw_cfg::bootorder_file(&order))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::config::{DiskConfig, DiskKind};

    fn disk(target: &str, bus: DiskBus, boot_order: Option<u32>) -> DiskConfig {
        DiskConfig {
            target: target.into(),
            kind: DiskKind::Disk,
            bus,
            path: None,
            format: crate::storage::ImageFormat::Raw,
            read_only: false,
            boot_order,
            cache: Default::default(),
            discard: Default::default(),
        }
    }

    #[test]
    fn boot_order_follows_the_order_numbers() {
        let mut config = VmConfig::new("t", 64 << 20);
        config.disks = vec![
            disk("vda", DiskBus::Virtio { slot: 5 }, Some(2)),
            disk(
                "hdb",
                DiskBus::Ide {
                    channel: 0,
                    unit: 1,
                },
                None,
            ),
            disk(
                "hdc",
                DiskBus::Ide {
                    channel: 1,
                    unit: 0,
                },
                Some(1),
            ),
        ];
        assert_eq!(
            boot_order(&config),
            [
                "/pci@i0cf8/ide@1,1/drive@1/disk@0",
                "/pci@i0cf8/scsi@5/disk@0,0"
            ]
        );
    }
}
