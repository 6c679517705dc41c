//! The CPU state a 64-bit kernel entry needs: a GDT with the boot code and
//! data segments, identity-mapped page tables, and long mode in the
//! special registers (Linux `Documentation/arch/x86/boot.rst`, "64-bit
//! Boot Protocol"; Intel SDM vol. 3A §9.8.5 "Initializing IA-32e Mode").
//! The PVH entry uses the same GDT's 32-bit code segment, without paging
//! (Xen `docs/misc/pvh.pandoc`).
//!
//! The page tables map the first 4 GiB one to one with 2 MiB pages, which
//! covers the kernel, its decompression buffer, the zero page, the command
//! line and the initrd wherever [`super::kernel_boot`] puts them below the
//! PCI hole, and the devices' MMIO as well. No interrupt table is set up:
//! the protocol enters with interrupts disabled.

use kvm_bindings::{kvm_regs, kvm_segment, kvm_sregs};
use vm_memory::{Bytes, GuestAddress};

use crate::devices::GuestRam;

/// Where the GDT goes: just above the real-mode IVT and BIOS data area.
pub const GDT_ADDR: u64 = 0x500;
/// The page-map level 4 table; the PDPT and four page directories follow.
pub const PML4_ADDR: u64 = 0x9000;
const PDPT_ADDR: u64 = PML4_ADDR + 0x1000;
const PD_ADDR: u64 = PDPT_ADDR + 0x1000;
/// Page directories: one per GiB mapped.
const PD_COUNT: u64 = 4;
/// The first byte after the tables.
pub const PAGE_TABLES_END: u64 = PD_ADDR + PD_COUNT * 0x1000;

/// The flat 32-bit code segment of the PVH entry.
pub const PVH_CS: u16 = 0x08;
/// Selectors of the boot protocol's flat segments: `__BOOT_CS` and `__BOOT_DS`.
pub const BOOT_CS: u16 = 0x10;
pub const BOOT_DS: u16 = 0x18;

/// GDT entries, indexed by selector / 8. Access bytes and flags per SDM
/// vol. 3A §3.4.5: 0x9B = present, ring 0, code, execute/read, accessed;
/// 0x93 = present, ring 0, data, read/write, accessed. Flags 0xA = 4 KiB
/// granularity + long mode (L); 0xC = granularity + 32-bit default size.
const GDT: [u64; 4] = [
    0,
    0x00cf_9b00_0000_ffff, // 0x08: 32-bit code
    0x00af_9b00_0000_ffff, // 0x10: 64-bit code
    0x00cf_9300_0000_ffff, // 0x18: flat data
];

const PTE_PRESENT: u64 = 1 << 0;
const PTE_WRITABLE: u64 = 1 << 1;
/// In a page-directory entry: maps a 2 MiB page rather than a page table.
const PDE_LARGE: u64 = 1 << 7;

const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
pub const EFER_LMA: u64 = 1 << 10;

/// Writes the GDT and the identity-mapping page tables into guest RAM.
pub fn write_tables(ram: &GuestRam) -> Result<(), vm_memory::GuestMemoryError> {
    for (i, entry) in GDT.iter().enumerate() {
        ram.write_obj(*entry, GuestAddress(GDT_ADDR + i as u64 * 8))?;
    }
    ram.write_obj(
        PDPT_ADDR | PTE_PRESENT | PTE_WRITABLE,
        GuestAddress(PML4_ADDR),
    )?;
    for gib in 0..PD_COUNT {
        let pd = PD_ADDR + gib * 0x1000;
        ram.write_obj(
            pd | PTE_PRESENT | PTE_WRITABLE,
            GuestAddress(PDPT_ADDR + gib * 8),
        )?;
        for i in 0..512u64 {
            let frame = (gib << 30) | (i << 21);
            ram.write_obj(
                frame | PTE_PRESENT | PTE_WRITABLE | PDE_LARGE,
                GuestAddress(pd + i * 8),
            )?;
        }
    }
    Ok(())
}

/// A flat segment as the GDT entry at `selector` describes it (KVM wants
/// the descriptor's fields spelt out, not read from memory).
fn segment(selector: u16, code: bool) -> kvm_segment {
    let long = code && selector == BOOT_CS;
    kvm_segment {
        base: 0,
        limit: 0xffff_ffff,
        selector,
        type_: if code { 0xb } else { 0x3 },
        present: 1,
        dpl: 0,
        db: u8::from(!long),
        s: 1,
        l: u8::from(long),
        g: 1,
        avl: 0,
        unusable: 0,
        padding: 0,
    }
}

/// Turns `sregs` (as KVM reports them at reset) into 64-bit mode with the
/// tables of [`write_tables`]; the task register and the rest stay as KVM
/// set them.
pub fn long_mode_sregs(sregs: &mut kvm_sregs) {
    sregs.cs = segment(BOOT_CS, true);
    let data = segment(BOOT_DS, false);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.cr3 = PML4_ADDR;
    sregs.cr4 |= CR4_PAE;
    sregs.cr0 = (sregs.cr0 | CR0_PE | CR0_PG | CR0_ET) & !((1 << 29) | (1 << 30)); // caches on (NW, CD clear)
    sregs.efer |= EFER_LME | EFER_LMA;
}

/// Turns `sregs` (as KVM reports them at reset) into the PVH entry state:
/// 32-bit protected mode with flat segments, paging off, CR4 and EFER
/// clear, and TR a 32-bit busy TSS of 0x68 bytes at 0 (the ABI's words).
pub fn protected_mode_sregs(sregs: &mut kvm_sregs) {
    sregs.cs = segment(PVH_CS, true);
    let data = segment(BOOT_DS, false);
    sregs.ds = data;
    sregs.es = data;
    sregs.fs = data;
    sregs.gs = data;
    sregs.ss = data;
    sregs.gdt.base = GDT_ADDR;
    sregs.gdt.limit = (GDT.len() * 8 - 1) as u16;
    sregs.idt.base = 0;
    sregs.idt.limit = 0;
    sregs.tr = kvm_segment {
        base: 0,
        limit: 0x67,
        selector: 0,
        type_: 0xb,
        present: 1,
        s: 0,
        ..Default::default()
    };
    sregs.cr0 = (sregs.cr0 | CR0_PE | CR0_ET) & !(CR0_PG | (1 << 29) | (1 << 30));
    sregs.cr4 = 0;
    sregs.efer = 0;
}

/// General registers at the PVH entry: `hvm_start_info` in EBX,
/// interrupts off; the ABI gives no stack.
pub fn pvh_entry_regs(rip: u64, start_info: u64) -> kvm_regs {
    kvm_regs {
        rip,
        rbx: start_info,
        rflags: 0x2,
        ..Default::default()
    }
}

/// General registers at the entry: `rip`, `rsi` as the protocol wants,
/// a stack at `stack_top`, interrupts off.
pub fn entry_regs(rip: u64, rsi: u64, stack_top: u64) -> kvm_regs {
    kvm_regs {
        rip,
        rsi,
        rsp: stack_top,
        rbp: stack_top,
        // Bit 1 is reserved and always set; IF clear.
        rflags: 0x2,
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram() -> GuestRam {
        GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    #[test]
    fn page_tables_map_the_first_4_gib_one_to_one() {
        let ram = ram();
        write_tables(&ram).unwrap();
        // Walk the tables for a few addresses as the MMU would.
        for addr in [
            0u64,
            0x10_0000,
            0x3fff_ffff,
            0x8000_1234,
            0xfd00_0000,
            0xffff_ffff,
        ] {
            let pml4e: u64 = ram
                .read_obj(GuestAddress(PML4_ADDR + ((addr >> 39) & 511) * 8))
                .unwrap();
            assert_eq!(pml4e & 1, 1);
            let pdpte: u64 = ram
                .read_obj(GuestAddress((pml4e & !0xfff) + ((addr >> 30) & 511) * 8))
                .unwrap();
            assert_eq!(pdpte & 1, 1, "{addr:#x}");
            let pde: u64 = ram
                .read_obj(GuestAddress((pdpte & !0xfff) + ((addr >> 21) & 511) * 8))
                .unwrap();
            assert_eq!(pde & (PTE_PRESENT | PDE_LARGE), PTE_PRESENT | PDE_LARGE);
            let physical = (pde & !0x1f_ffff & 0x000f_ffff_ffff_f000) | (addr & 0x1f_ffff);
            assert_eq!(physical, addr);
        }
    }

    #[test]
    fn gdt_has_the_boot_protocols_selectors() {
        let ram = ram();
        write_tables(&ram).unwrap();
        let cs: u64 = ram
            .read_obj(GuestAddress(GDT_ADDR + BOOT_CS as u64))
            .unwrap();
        // L set, D clear: a 64-bit code segment.
        assert_eq!((cs >> 53) & 1, 1);
        assert_eq!((cs >> 54) & 1, 0);
        let mut sregs = kvm_sregs::default();
        long_mode_sregs(&mut sregs);
        assert_eq!(sregs.cs.selector, BOOT_CS);
        assert_eq!(sregs.ss.selector, BOOT_DS);
        assert_eq!(sregs.efer & EFER_LMA, EFER_LMA);
        assert_eq!(sregs.cr0 & CR0_PG, CR0_PG);
        assert_eq!((sregs.cs.l, sregs.cs.db), (1, 0));
    }

    #[test]
    fn pvh_entry_is_flat_32_bit_protected_mode_without_paging() {
        let ram = ram();
        write_tables(&ram).unwrap();
        let cs: u64 = ram
            .read_obj(GuestAddress(GDT_ADDR + PVH_CS as u64))
            .unwrap();
        // D set, L clear, base 0, limit 4 GiB: a flat 32-bit code segment.
        assert_eq!(((cs >> 54) & 1, (cs >> 53) & 1), (1, 0));
        let mut sregs = kvm_sregs {
            cr0: 0x6000_0010,
            efer: EFER_LME,
            ..Default::default()
        };
        protected_mode_sregs(&mut sregs);
        assert_eq!(sregs.cs.selector, PVH_CS);
        assert_eq!(
            (sregs.cs.l, sregs.cs.db, sregs.cs.limit),
            (0, 1, 0xffff_ffff)
        );
        assert_eq!(sregs.cr0 & (CR0_PE | CR0_PG), CR0_PE);
        assert_eq!((sregs.cr4, sregs.efer), (0, 0));
        assert_eq!((sregs.tr.type_, sregs.tr.limit), (0xb, 0x67));
        let regs = pvh_entry_regs(0x100_0000, 0x7000);
        assert_eq!((regs.rip, regs.rbx, regs.rflags), (0x100_0000, 0x7000, 2));
    }
}
