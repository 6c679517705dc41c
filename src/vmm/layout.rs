//! Every guest-physical address and I/O port of the machine, in address
//! order. An i440FX/PIIX3 PC as QEMU's `pc` machine lays it out, because that
//! is what SeaBIOS and every PC operating system expect.

// ---- I/O ports -------------------------------------------------------------

/// i8254 PIT (in-kernel, KVM_CREATE_PIT2).
pub const PORT_PIT: u16 = 0x40;
/// i8042 data port; the status/command port is at 0x64.
pub const PORT_I8042_DATA: u16 = 0x60;
pub const PORT_I8042_COMMAND: u16 = 0x64;
/// 0x60..=0x64 as one range; 0x61 (in between) belongs to the in-kernel PIT.
pub const I8042_PORTS: u64 = 5;
/// MC146818 RTC/CMOS index and data.
pub const PORT_CMOS: u16 = 0x70;
pub const CMOS_PORTS: u64 = 2;
/// POST code port; firmware writes progress codes here.
pub const PORT_POST: u16 = 0x80;
/// System control port A: fast A20 and fast reset.
pub const PORT_SYSTEM_CONTROL_A: u16 = 0x92;
/// APM control (the FADT's SMI_CMD) and status ports of the PIIX4.
pub const PORT_APM_CONTROL: u16 = 0xb2;
pub const APM_PORTS: u64 = 2;
/// IDE secondary (0x170, control 0x376) and primary (0x1F0, control
/// 0x3F6) channels: fixed by the PIIX3 IDE's compatibility mode, so the
/// device defines them and this file lists them in their place.
pub use crate::devices::ide::{
    IDE_COMMAND_PORTS, PORT_IDE_PRIMARY, PORT_IDE_PRIMARY_CONTROL, PORT_IDE_SECONDARY,
    PORT_IDE_SECONDARY_CONTROL,
};
/// 16550 UART COM1.
pub const PORT_COM1: u16 = 0x3f8;
pub const UART_PORTS: u64 = 8;
/// Bochs/QEMU debug console: bytes written appear in the debug log; reads
/// return 0xE9 so firmware can detect it.
pub const PORT_DEBUGCON: u16 = 0x402;
/// PIIX4 ACPI power-management I/O space (PM1 event/control, PM timer),
/// where SeaBIOS programs PMBASE on QEMU's `pc` machine.
pub const PORT_ACPI_PM: u16 = 0x600;
/// QEMU firmware configuration: selector, data, DMA address (12 ports).
pub const PORT_FW_CFG: u16 = 0x510;
pub const FW_CFG_PORTS: u64 = 0x0c;
/// PCI configuration mechanism #1 (0xCF8 address, 0xCF9 reset control,
/// 0xCFC data).
pub const PORT_PCI_CONFIG: u16 = 0xcf8;
pub const PCI_CONFIG_PORTS: u64 = 8;

// ---- ISA interrupt lines ---------------------------------------------------

pub const IRQ_KEYBOARD: u32 = 1;
pub const IRQ_COM1: u32 = 4;
pub const IRQ_RTC: u32 = 8;
/// The ACPI system control interrupt (PIIX4: hard-wired to IRQ 9, level).
pub const IRQ_SCI: u32 = 9;
pub const IRQ_MOUSE: u32 = 12;
pub const IRQ_IDE_PRIMARY: u32 = 14;
pub const IRQ_IDE_SECONDARY: u32 = 15;

// ---- Guest-physical memory -------------------------------------------------

/// Legacy VGA window (the console issue maps VGA here).
pub const VGA_WINDOW_START: u64 = 0xa_0000;
/// The last 128 KiB of the BIOS image appear here at reset (0xE0000..0x100000).
pub const BIOS_ALIAS_START: u64 = 0xe_0000;
pub const BIOS_ALIAS_SIZE: u64 = 0x2_0000;
/// Direct kernel boot, where no BIOS runs, puts the ACPI tables in that
/// area instead (e820 reserves it): the RSDP at its start, where an OS
/// scanning for it looks first, and the other tables a page above.
pub const DIRECT_BOOT_RSDP: u64 = BIOS_ALIAS_START;
pub const DIRECT_BOOT_ACPI_TABLES: u64 = BIOS_ALIAS_START + 0x1000;
/// Highest end of low RAM when RAM does not fit below the PCI hole; QEMU's
/// `pc` machine uses 3 GiB so the hole is aligned and large.
pub const LOW_RAM_END_LIMIT: u64 = 0xc000_0000;
/// Below this, all of RAM stays low (QEMU's `max-ram-below-4g`).
pub const LOW_RAM_MAX: u64 = 0xe000_0000;
/// The IOAPIC and the local APIC (in-kernel).
pub const IOAPIC_START: u64 = 0xfec0_0000;
pub const LAPIC_START: u64 = 0xfee0_0000;
/// KVM's identity-map page and TSS for real-mode emulation on Intel, where
/// QEMU puts them: just below the BIOS.
pub const KVM_IDENTITY_MAP: u64 = 0xfffb_c000;
pub const KVM_TSS: u64 = 0xfffb_d000;
/// The BIOS image ends at 4 GiB.
pub const FOUR_GIB: u64 = 0x1_0000_0000;
/// RAM beyond the low part continues at 4 GiB.
pub const HIGH_RAM_START: u64 = FOUR_GIB;

/// Where RAM of `size` bytes is: `(low, high)` lengths, low starting at 0,
/// high at [`HIGH_RAM_START`].
pub fn ram_split(size: u64) -> (u64, u64) {
    if size < LOW_RAM_MAX {
        (size, 0)
    } else {
        (LOW_RAM_END_LIMIT, size - LOW_RAM_END_LIMIT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ram_split_matches_qemu_pc() {
        assert_eq!(ram_split(256 << 20), (256 << 20, 0));
        assert_eq!(ram_split(0xdfff_f000), (0xdfff_f000, 0));
        assert_eq!(ram_split(4 << 30), (3 << 30, 1 << 30));
    }
}
