//! Guest memory: RAM below and above the PCI hole, and the BIOS ROM.
//!
//! RAM is one `vm-memory` collection (what devices use for DMA). KVM sees it
//! through slots that leave the legacy VGA window 0xA0000..0xC0000 unmapped,
//! so accesses there exit to the VMM as MMIO, as on a real PC. The BIOS is a
//! separate, read-only slot ending at 4 GiB; its last 128 KiB are also copied
//! to 0xE0000, where the CPU starts executing it after reset.

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_READONLY};
use kvm_ioctls::VmFd;
use vm_memory::{
    Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryRegion, GuestRegionCollection,
};

use super::layout::{
    ram_split, BIOS_ALIAS_SIZE, BIOS_ALIAS_START, FOUR_GIB, HIGH_RAM_START, VGA_WINDOW_START,
};
use crate::devices::GuestRam;

/// The smallest guest SeaBIOS is happy in.
pub const MIN_RAM: u64 = 16 << 20;
const VGA_WINDOW_END: u64 = 0xc_0000;

#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(
        "{requested} bytes of memory is too little: a PC needs at least {MIN_RAM} bytes (16 MiB)"
    )]
    TooSmall { requested: u64 },
    #[error("cannot allocate {size} bytes of guest memory: {reason}")]
    Allocation { size: u64, reason: String },
    #[error("KVM refused memory slot {slot} at {guest_addr:#x}: {source}")]
    Slot {
        slot: u32,
        guest_addr: u64,
        #[source]
        source: kvm_ioctls::Error,
    },
}

/// Guest RAM and the BIOS ROM, registered with KVM.
pub struct GuestMemory {
    pub ram: GuestRam,
    /// Kept alive for as long as KVM maps it.
    _bios: GuestRam,
    pub low_ram: u64,
    pub high_ram: u64,
}

impl GuestMemory {
    /// Allocates `size` bytes of RAM plus the BIOS, and maps both into `vm`.
    pub fn new(vm: &VmFd, size: u64, bios: &[u8]) -> Result<Self, MemoryError> {
        if size < MIN_RAM {
            return Err(MemoryError::TooSmall { requested: size });
        }
        let (low_ram, high_ram) = ram_split(size);
        let mut ranges = vec![(GuestAddress(0), low_ram as usize)];
        if high_ram > 0 {
            ranges.push((GuestAddress(HIGH_RAM_START), high_ram as usize));
        }
        let alloc_error = |reason: String| MemoryError::Allocation { size, reason };
        let ram =
            GuestRegionCollection::from_ranges(&ranges).map_err(|e| alloc_error(e.to_string()))?;

        let bios_base = FOUR_GIB - bios.len() as u64;
        let bios_mem: GuestRam =
            GuestRegionCollection::from_ranges(&[(GuestAddress(bios_base), bios.len())])
                .map_err(|e| alloc_error(e.to_string()))?;
        bios_mem
            .write_slice(bios, GuestAddress(bios_base))
            .map_err(|e| alloc_error(e.to_string()))?;
        // The reset vector and BIOS entry points live in the last 128 KiB
        // (all of a smaller image), which also appear just below 1 MiB.
        let alias_len = bios.len().min(BIOS_ALIAS_SIZE as usize);
        let alias = &bios[bios.len() - alias_len..];
        let alias_start = BIOS_ALIAS_START + BIOS_ALIAS_SIZE - alias_len as u64;
        ram.write_slice(alias, GuestAddress(alias_start))
            .map_err(|e| alloc_error(e.to_string()))?;

        let mut slot = 0;
        let mut map = |mem: &GuestRam, start: u64, end: u64, flags: u32| {
            let host = mem
                .get_host_address(GuestAddress(start))
                .map_err(|e| alloc_error(e.to_string()))?;
            let region = kvm_userspace_memory_region {
                slot,
                flags,
                guest_phys_addr: start,
                memory_size: end - start,
                userspace_addr: host as u64,
            };
            // SAFETY: the host range is owned by `mem`, which this struct keeps
            // alive for as long as the VM exists (the VmFd is dropped first by
            // the machine that owns both).
            unsafe { vm.set_user_memory_region(region) }.map_err(|source| MemoryError::Slot {
                slot,
                guest_addr: start,
                source,
            })?;
            slot += 1;
            Ok::<(), MemoryError>(())
        };
        map(&ram, 0, VGA_WINDOW_START, 0)?;
        map(&ram, VGA_WINDOW_END, low_ram, 0)?;
        if high_ram > 0 {
            map(&ram, HIGH_RAM_START, HIGH_RAM_START + high_ram, 0)?;
        }
        map(&bios_mem, bios_base, FOUR_GIB, KVM_MEM_READONLY)?;
        debug_assert_eq!(ram.iter().map(|r| r.len()).sum::<u64>(), size);
        Ok(Self {
            ram,
            _bios: bios_mem,
            low_ram,
            high_ram,
        })
    }
}
