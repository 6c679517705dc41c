//! The machine's ACPI tables, handed to SeaBIOS through fw_cfg as QEMU
//! does: `etc/acpi/tables` (FACS, DSDT, FADT, MADT, RSDT, XSDT),
//! `etc/acpi/rsdp`, and the `etc/table-loader` script that places them and
//! fixes their pointers and checksums ([`super::table_loader`]).
//!
//! References: ACPI 6.5 §5.2 (RSDP, RSDT/XSDT, FADT, FACS, MADT), §5.6.5
//! (the power button), §7.4.2 (\_S5), §6.2.13 (\_PRT); the values follow
//! QEMU's `pc` machine (`hw/i386/acpi-build.c`) where a choice was free.
//!
//! Not described: processor C-states, S1–S4 (only \_S5 is offered), the
//! sleep button, GPE blocks, hotplug, HPET, the 64-bit PCI window. PCI
//! interrupts are declared as fixed GSIs: the ones SeaBIOS routes PIRQA..D
//! to (10, 10, 11, 11), as it writes them into the PIIX3 PIRQ registers;
//! an OS that reprograms those registers is not told of the change.

use acpi_tables::aml::{
    self, AddressSpace, AddressSpaceCacheable, Device, EISAName, Interrupt, Name, Package,
    ResourceTemplate, Scope, IO,
};
use acpi_tables::fadt::{FADTBuilder, Flags};
use acpi_tables::gas::{AccessSize, AddressSpace as GasSpace, GAS};
use acpi_tables::rsdp::Rsdp;
use acpi_tables::sdt::Sdt;
use acpi_tables::Aml;

use super::layout::*;
use super::table_loader::{LinkError, TableLoader, Zone};
use crate::devices::acpi_pm::{ACPI_DISABLE, ACPI_ENABLE, PM1_CNT, PM1_EN, PM_TMR, SLP_TYP_S5};
use crate::devices::pci::piix4_pm::PM_BASE;
use crate::devices::GuestRam;
use vm_memory::{Bytes, GuestAddress};

pub const RSDP_FILE: &str = "etc/acpi/rsdp";
pub const TABLES_FILE: &str = "etc/acpi/tables";
pub const LOADER_FILE: &str = "etc/table-loader";

const OEM_ID: [u8; 6] = *b"VIREO ";
const OEM_TABLE_ID: [u8; 8] = *b"VIREOPC ";
const OEM_REVISION: u32 = 1;

/// The PCI IRQs SeaBIOS programs into PIRQA..D on an i440FX machine
/// (`src/fw/pciinit.c`, `pci_irqs`); direct boot programs the same.
pub const PIRQ_GSIS: [u32; 4] = [10, 10, 11, 11];
/// The PIIX3's reset control register and the value that resets the machine.
const RESET_VALUE: u8 = 0x06;
/// FADT IA-PC boot architecture flags: legacy devices, an 8042.
const IAPC_LEGACY_DEVICES_AND_8042: u16 = 0x0003;
/// C2/C3 latencies above 100/1000 µs mean "not supported".
const NO_C2: u16 = 0x0fff;
const NO_C3: u16 = 0x0fff;

/// What the tables describe.
pub struct AcpiConfig {
    pub vcpus: u32,
    /// End of RAM below 4 GiB; the PCI memory window starts there.
    pub low_ram_end: u64,
}

/// The three fw_cfg files.
pub struct AcpiFiles {
    pub rsdp: Vec<u8>,
    pub tables: Vec<u8>,
    pub loader: Vec<u8>,
}

/// Appends tables to the blob, remembering where each starts.
struct Blob {
    bytes: Vec<u8>,
}

impl Blob {
    fn push(&mut self, table: &[u8]) -> u32 {
        let at = self.bytes.len() as u32;
        self.bytes.extend_from_slice(table);
        at
    }
}

fn aml_bytes(object: &dyn Aml) -> Vec<u8> {
    let mut bytes = Vec::new();
    object.to_aml_bytes(&mut bytes);
    bytes
}

/// Builds the tables for `config`.
pub fn build(config: &AcpiConfig) -> AcpiFiles {
    let mut blob = Blob { bytes: Vec::new() };
    let mut loader = TableLoader::new();
    loader.allocate(TABLES_FILE, 64, Zone::High);
    loader.allocate(RSDP_FILE, 16, Zone::FSeg);

    // FACS first: it must be 64-byte aligned, and the blob is.
    let facs = blob.push(&facs());
    let dsdt = blob.push(&dsdt(config));
    let fadt_table = fadt(facs, dsdt);
    let fadt = blob.push(&fadt_table);
    loader.add_pointer(TABLES_FILE, TABLES_FILE, fadt + 36, 4);
    loader.add_pointer(TABLES_FILE, TABLES_FILE, fadt + 40, 4);
    let madt = blob.push(&madt(config.vcpus));
    let tables = [fadt, madt];
    let rsdt = blob.push(&root_table(b"RSDT", &tables, 4));
    let xsdt = blob.push(&root_table(b"XSDT", &tables, 8));
    for (i, _) in tables.iter().enumerate() {
        loader.add_pointer(TABLES_FILE, TABLES_FILE, rsdt + 36 + 4 * i as u32, 4);
        loader.add_pointer(TABLES_FILE, TABLES_FILE, xsdt + 36 + 8 * i as u32, 8);
    }
    // Checksums after every pointer in the table is final.
    for (start, len) in [dsdt, fadt, madt, rsdt, xsdt]
        .into_iter()
        .map(|at| (at, table_len(&blob.bytes, at)))
    {
        loader.add_checksum(TABLES_FILE, start + 9, start, len);
    }

    let mut rsdp = aml_bytes(&Rsdp::new(OEM_ID, xsdt as u64));
    rsdp[16..20].copy_from_slice(&rsdt.to_le_bytes());
    loader.add_pointer(RSDP_FILE, TABLES_FILE, 16, 4);
    loader.add_pointer(RSDP_FILE, TABLES_FILE, 24, 8);
    // The ACPI 1.0 checksum covers the first 20 bytes, the extended one all.
    loader.add_checksum(RSDP_FILE, 8, 0, 20);
    loader.add_checksum(RSDP_FILE, 32, 0, rsdp.len() as u32);

    AcpiFiles {
        rsdp,
        tables: blob.bytes,
        loader: loader.into_bytes(),
    }
}

/// Why the tables could not be put in guest memory for direct boot.
#[derive(Debug, thiserror::Error)]
pub enum DirectTablesError {
    #[error("cannot lay out the ACPI tables: {0}")]
    Link(#[from] LinkError),
    #[error("cannot write the ACPI tables into guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

/// Builds the tables for `config` and writes them where direct kernel
/// boot keeps them ([`DIRECT_BOOT_RSDP`], [`DIRECT_BOOT_ACPI_TABLES`]),
/// linked by the same loader script SeaBIOS runs, so a directly booted
/// kernel reads the very bytes a firmware-booted one does. Returns the
/// RSDP's address, for the boot protocol's `acpi_rsdp_addr`.
pub fn write_for_direct_boot(
    ram: &GuestRam,
    config: &AcpiConfig,
) -> Result<u64, DirectTablesError> {
    let files = build(config);
    let area_end = BIOS_ALIAS_START + BIOS_ALIAS_SIZE;
    let placed = super::table_loader::link(
        &files.loader,
        &[(RSDP_FILE, &files.rsdp), (TABLES_FILE, &files.tables)],
        |_, len, _, zone| {
            let at = match zone {
                Zone::FSeg => DIRECT_BOOT_RSDP,
                Zone::High => DIRECT_BOOT_ACPI_TABLES,
            };
            let end = if zone == Zone::FSeg {
                DIRECT_BOOT_ACPI_TABLES
            } else {
                area_end
            };
            (at + len as u64 <= end).then_some(at)
        },
    )?;
    // Nothing of the BIOS image copied there is left for a scan to find.
    ram.write_slice(
        &vec![0u8; BIOS_ALIAS_SIZE as usize],
        GuestAddress(BIOS_ALIAS_START),
    )?;
    for blob in &placed {
        ram.write_slice(&blob.bytes, GuestAddress(blob.addr))?;
    }
    Ok(DIRECT_BOOT_RSDP)
}

fn table_len(blob: &[u8], at: u32) -> u32 {
    let at = at as usize;
    u32::from_le_bytes([blob[at + 4], blob[at + 5], blob[at + 6], blob[at + 7]])
}

/// Firmware ACPI control structure (ACPI 6.5 §5.2.10): no waking vector,
/// no global lock use; the OS wants it present.
fn facs() -> Vec<u8> {
    let mut facs = vec![0u8; 64];
    facs[0..4].copy_from_slice(b"FACS");
    facs[4..8].copy_from_slice(&64u32.to_le_bytes());
    facs[32] = 2; // version
    facs
}

/// RSDT (32-bit entries) or XSDT (64-bit entries) listing `tables`, given
/// as offsets in the blob; the loader adds the blob's address.
fn root_table(signature: &[u8; 4], tables: &[u32], entry_size: usize) -> Vec<u8> {
    let mut sdt = Sdt::new(*signature, 36, 1, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    for &table in tables {
        sdt.append_slice(&(table as u64).to_le_bytes()[..entry_size]);
    }
    sdt.as_slice().to_vec()
}

fn io_gas(port: u16, bits: u8, access: AccessSize) -> GAS {
    GAS::new(GasSpace::SystemIo, bits, 0, access, port as u64)
}

/// Fixed ACPI description table: the PIIX4 PM block, the SCI, SMI_CMD and
/// the 0xCF9 reset register. The fixed-feature power button is present
/// (PWR_BUTTON flag clear); there is no sleep button.
fn fadt(facs: u32, dsdt: u32) -> Vec<u8> {
    let pm1a_evt = PM_BASE;
    let pm1a_cnt = PM_BASE + PM1_CNT as u16;
    let pm_tmr = PM_BASE + PM_TMR as u16;
    let mut fadt = FADTBuilder::new(OEM_ID, OEM_TABLE_ID, OEM_REVISION)
        .firmware_ctrl_32(facs)
        .dsdt_32(dsdt)
        .flag(Flags::Wbinvd)
        .flag(Flags::ProcC1)
        .flag(Flags::SlpButton)
        .flag(Flags::ResetRegSup);
    fadt.sci_int = (IRQ_SCI as u16).into();
    fadt.smi_cmd = (PORT_APM_CONTROL as u32).into();
    fadt.acpi_enable = ACPI_ENABLE;
    fadt.acpi_disable = ACPI_DISABLE;
    fadt.pm1a_evt_blk = (pm1a_evt as u32).into();
    fadt.pm1a_cnt_blk = (pm1a_cnt as u32).into();
    fadt.pm_tmr_blk = (pm_tmr as u32).into();
    fadt.pm1_evt_len = (2 * PM1_EN) as u8;
    fadt.pm1_cnt_len = 2;
    fadt.pm_tmr_len = 4;
    fadt.p_lvl2_lat = NO_C2.into();
    fadt.p_lvl3_lat = NO_C3.into();
    fadt.century = 0x32;
    fadt.iapc_boot_arch = IAPC_LEGACY_DEVICES_AND_8042.into();
    fadt.reset_reg = io_gas(PORT_PCI_CONFIG + 1, 8, AccessSize::ByteAccess);
    fadt.reset_value = RESET_VALUE;
    fadt.x_pm1a_evt_blk = io_gas(pm1a_evt, 32, AccessSize::WordAccess);
    fadt.x_pm1a_cnt_blk = io_gas(pm1a_cnt, 16, AccessSize::WordAccess);
    fadt.x_pm_tmr_blk = io_gas(pm_tmr, 32, AccessSize::DwordAccess);
    aml_bytes(&fadt.finalize())
}

/// MADT entry types and flags (ACPI 6.5 §5.2.12).
const MADT_LOCAL_APIC: u8 = 0;
const MADT_IO_APIC: u8 = 1;
const MADT_INTERRUPT_OVERRIDE: u8 = 2;
const MADT_PCAT_COMPAT: u32 = 1;
const LOCAL_APIC_ENABLED: u32 = 1;
/// MPS INTI flags: active high (01), level triggered (11 << 2).
const INTI_ACTIVE_HIGH_LEVEL: u16 = 0x000d;
/// Conforms to the bus (ISA: edge, active high).
const INTI_CONFORMING: u16 = 0;
/// KVM's in-kernel IOAPIC answers to ID 0, as QEMU's tables say.
const IOAPIC_ID: u8 = 0;

/// Multiple APIC description table: one local APIC per vCPU (APIC ID =
/// vCPU index, as CPUID reports), the IOAPIC, and the ISA overrides: the
/// PIT's IRQ 0 on GSI 2, the SCI level-triggered, active high.
fn madt(vcpus: u32) -> Vec<u8> {
    let mut sdt = Sdt::new(*b"APIC", 44, 3, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    sdt.write_u32(36, LAPIC_START as u32);
    sdt.write_u32(40, MADT_PCAT_COMPAT);
    for id in 0..vcpus {
        let mut entry = vec![MADT_LOCAL_APIC, 8, id as u8, id as u8];
        entry.extend_from_slice(&LOCAL_APIC_ENABLED.to_le_bytes());
        sdt.append_slice(&entry);
    }
    let mut ioapic = vec![MADT_IO_APIC, 12, IOAPIC_ID, 0];
    ioapic.extend_from_slice(&(IOAPIC_START as u32).to_le_bytes());
    ioapic.extend_from_slice(&0u32.to_le_bytes()); // GSI base
    sdt.append_slice(&ioapic);
    for (irq, gsi, flags) in [
        (0u8, 2u32, INTI_CONFORMING),
        (IRQ_SCI as u8, IRQ_SCI, INTI_ACTIVE_HIGH_LEVEL),
    ] {
        let mut entry = vec![MADT_INTERRUPT_OVERRIDE, 10, 0, irq];
        entry.extend_from_slice(&gsi.to_le_bytes());
        entry.extend_from_slice(&flags.to_le_bytes());
        sdt.append_slice(&entry);
    }
    sdt.as_slice().to_vec()
}

/// The DSDT: \_SB.PCI0 with its windows and interrupt routing, the ISA
/// devices firmware and OSes look for, one processor device per vCPU, and
/// \_S5.
fn dsdt(config: &AcpiConfig) -> Vec<u8> {
    let mut body = Vec::new();

    // ---- PCI host bridge ----
    let bus = AddressSpace::<u16>::new_bus_number(0, 0xff);
    let config_io = IO::new(PORT_PCI_CONFIG, PORT_PCI_CONFIG, 1, PCI_CONFIG_PORTS as u8);
    let io_low = AddressSpace::<u16>::new_io(0, PORT_PCI_CONFIG - 1, None);
    let io_high = AddressSpace::<u16>::new_io(0x0d00, 0xffff, None);
    let vga = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::Cacheable,
        true,
        VGA_WINDOW_START as u32,
        (VGA_WINDOW_START + 0x2_0000 - 1) as u32,
        None,
    );
    let pci_hole = AddressSpace::<u32>::new_memory(
        AddressSpaceCacheable::NotCacheable,
        true,
        config.low_ram_end as u32,
        (IOAPIC_START - 1) as u32,
        None,
    );
    let crs = ResourceTemplate::new(vec![&bus, &config_io, &io_low, &io_high, &vga, &pci_hole]);

    // _PRT: Package { address (slot << 16 | 0xFFFF), pin, source 0, GSI }.
    let mut routes: Vec<(u32, u8, u8, u32)> = Vec::new();
    for slot in 1..32u32 {
        for pin in 0..4u8 {
            let gsi = PIRQ_GSIS[((slot + pin as u32) % 4) as usize];
            routes.push(((slot << 16) | 0xffff, pin, 0, gsi));
        }
    }
    let entries: Vec<Package> = routes
        .iter()
        .map(|(address, pin, source, gsi)| {
            Package::new(vec![address as &dyn Aml, pin, source, gsi])
        })
        .collect();
    let prt = Package::new(entries.iter().map(|p| p as &dyn Aml).collect());

    // ---- ISA devices (on the PIIX3, 00:01.0) ----
    let isa_irq = |irq: u32| Interrupt::new(true, true, false, false, irq);
    let kbd = isa_device(
        "KBD_",
        "PNP0303",
        &[
            &IO::new(PORT_I8042_DATA, PORT_I8042_DATA, 1, 1),
            &IO::new(PORT_I8042_COMMAND, PORT_I8042_COMMAND, 1, 1),
            &isa_irq(IRQ_KEYBOARD),
        ],
    );
    let mouse = isa_device("MOU_", "PNP0F13", &[&isa_irq(IRQ_MOUSE)]);
    let rtc = isa_device(
        "RTC_",
        "PNP0B00",
        &[
            &IO::new(PORT_CMOS, PORT_CMOS, 1, CMOS_PORTS as u8),
            &isa_irq(IRQ_RTC),
        ],
    );
    let com1 = isa_device(
        "COM1",
        "PNP0501",
        &[
            &IO::new(PORT_COM1, PORT_COM1, 1, UART_PORTS as u8),
            &isa_irq(IRQ_COM1),
        ],
    );
    let isa = Raw(aml_bytes(&Device::new(
        "ISA_".into(),
        vec![
            &Name::new("_ADR".into(), &0x0001_0000u32),
            &kbd,
            &mouse,
            &rtc,
            &com1,
        ],
    )));

    let pci0 = Raw(aml_bytes(&Device::new(
        "PCI0".into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new("PNP0A03")),
            &Name::new("_ADR".into(), &0u8),
            &Name::new("_UID".into(), &0u8),
            &Name::new("_BBN".into(), &0u8),
            &Name::new("_CRS".into(), &crs),
            &Name::new("_PRT".into(), &prt),
            &isa,
        ],
    )));

    // ---- Processors (ACPI 6.5 §8.4: Device with _HID ACPI0007) ----
    let cpus: Vec<Raw> = (0..config.vcpus)
        .map(|id| {
            let name = format!("C{id:03X}");
            Raw(aml_bytes(&Device::new(
                name.as_str().into(),
                vec![
                    &Name::new("_HID".into(), &"ACPI0007"),
                    &Name::new("_UID".into(), &id),
                ],
            )))
        })
        .collect();
    let mut sb_children: Vec<&dyn Aml> = vec![&pci0];
    sb_children.extend(cpus.iter().map(|c| c as &dyn Aml));
    Scope::new("\\_SB_".into(), sb_children).to_aml_bytes(&mut body);

    // \_S5: SLP_TYP values for PM1a and PM1b, and two reserved words.
    let s5_typ = SLP_TYP_S5 as u8;
    aml::Name::new(
        "\\_S5_".into(),
        &Package::new(vec![&s5_typ, &s5_typ, &0u8, &0u8]),
    )
    .to_aml_bytes(&mut body);

    let mut sdt = Sdt::new(*b"DSDT", 36, 2, OEM_ID, OEM_TABLE_ID, OEM_REVISION);
    sdt.append_slice(&body);
    sdt.as_slice().to_vec()
}

/// AML already serialised, to nest in a parent object.
struct Raw(Vec<u8>);

impl Aml for Raw {
    fn to_aml_bytes(&self, sink: &mut dyn acpi_tables::AmlSink) {
        sink.vec(&self.0);
    }
}

/// An ISA device with a fixed `_HID` and `_CRS`, present.
fn isa_device(name: &str, hid: &str, resources: &[&dyn Aml]) -> Raw {
    let crs = ResourceTemplate::new(resources.to_vec());
    Raw(aml_bytes(&Device::new(
        name.into(),
        vec![
            &Name::new("_HID".into(), &EISAName::new(hid)),
            &Name::new("_STA".into(), &0x0fu8),
            &Name::new("_CRS".into(), &crs),
        ],
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Each file's guest address and bytes after loading.
    type Placed = HashMap<String, (u64, Vec<u8>)>;

    /// Runs the loader script as SeaBIOS would, placing the tables at a
    /// made-up high address and the RSDP in the F segment; returns the
    /// files as placed, and the tables' bytes.
    fn run_loader(files: &AcpiFiles) -> (Placed, Vec<u8>) {
        let placed = crate::vmm::table_loader::link(
            &files.loader,
            &[(RSDP_FILE, &files.rsdp), (TABLES_FILE, &files.tables)],
            |_, _, _, zone| {
                Some(if zone == Zone::FSeg {
                    0xf5000
                } else {
                    0x7fe0_0000
                })
            },
        )
        .unwrap();
        let placed: Placed = placed
            .into_iter()
            .map(|p| (p.file, (p.addr, p.bytes)))
            .collect();
        let memory = placed[TABLES_FILE].1.clone();
        (placed, memory)
    }

    fn sum(bytes: &[u8]) -> u8 {
        bytes.iter().fold(0u8, |a, &b| a.wrapping_add(b))
    }

    #[test]
    fn tables_link_into_a_consistent_acpi_tree() {
        let files = build(&AcpiConfig {
            vcpus: 4,
            low_ram_end: 256 << 20,
        });
        let (placed, tables) = run_loader(&files);
        let base = placed[TABLES_FILE].0;
        let rsdp = &placed[RSDP_FILE].1;
        assert_eq!(&rsdp[..8], b"RSD PTR ");
        assert_eq!(sum(&rsdp[..20]), 0);
        assert_eq!(sum(&rsdp[..36]), 0);
        let at = |addr: u64| (addr - base) as usize;
        let table = |addr: u64| {
            let start = at(addr);
            let len = table_len(&tables, start as u32) as usize;
            let t = &tables[start..start + len];
            assert_eq!(sum(t), 0, "checksum of {:?}", std::str::from_utf8(&t[..4]));
            t
        };
        let rsdt_addr = u32::from_le_bytes(rsdp[16..20].try_into().unwrap()) as u64;
        let xsdt_addr = u64::from_le_bytes(rsdp[24..32].try_into().unwrap());
        let rsdt = table(rsdt_addr);
        let xsdt = table(xsdt_addr);
        assert_eq!(&rsdt[..4], b"RSDT");
        assert_eq!(&xsdt[..4], b"XSDT");
        let entries: Vec<u64> = rsdt[36..]
            .chunks(4)
            .map(|c| u32::from_le_bytes(c.try_into().unwrap()) as u64)
            .collect();
        let xentries: Vec<u64> = xsdt[36..]
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_eq!(entries, xentries);
        let signatures: Vec<&[u8]> = entries.iter().map(|&a| &table(a)[..4]).collect();
        assert_eq!(signatures, [b"FACP", b"APIC"]);

        let fadt = table(entries[0]);
        let u32_at = |t: &[u8], o: usize| u32::from_le_bytes(t[o..o + 4].try_into().unwrap());
        assert_eq!(&tables[at(u32_at(fadt, 36) as u64)..][..4], b"FACS");
        assert_eq!(at(u32_at(fadt, 36) as u64) % 64, 0, "FACS 64-byte aligned");
        let dsdt = table(u32_at(fadt, 40) as u64);
        assert_eq!(&dsdt[..4], b"DSDT");
        assert_eq!(u16::from_le_bytes([fadt[46], fadt[47]]), 9, "SCI_INT");
        assert_eq!(u32_at(fadt, 48), 0xb2, "SMI_CMD");
        assert_eq!([fadt[52], fadt[53]], [0xf1, 0xf0]);
        assert_eq!(u32_at(fadt, 56), 0x600, "PM1a_EVT_BLK");
        assert_eq!(u32_at(fadt, 64), 0x604, "PM1a_CNT_BLK");
        assert_eq!(u32_at(fadt, 76), 0x608, "PM_TMR_BLK");
        assert_eq!([fadt[88], fadt[89], fadt[91]], [4, 2, 4]);
        let flags = u32_at(fadt, 112);
        assert_ne!(flags & (1 << 10), 0, "RESET_REG_SUP");
        assert_eq!(flags & (1 << 4), 0, "fixed power button present");
        // RESET_REG: system I/O, 8 bits, at 0xCF9; RESET_VALUE 6.
        assert_eq!(fadt[116], 1);
        assert_eq!(
            u64::from_le_bytes(fadt[120..128].try_into().unwrap()),
            0xcf9
        );
        assert_eq!(fadt[128], 6);

        let madt = table(entries[1]);
        assert_eq!(u32_at(madt, 36), 0xfee0_0000);
        let mut apic_ids = Vec::new();
        let mut overrides = Vec::new();
        let mut ioapics = 0;
        let mut i = 44;
        while i < madt.len() {
            let (kind, len) = (madt[i], madt[i + 1] as usize);
            match kind {
                0 => apic_ids.push(madt[i + 3]),
                1 => ioapics += 1,
                2 => overrides.push((madt[i + 3], u32_at(madt, i + 4), madt[i + 8])),
                _ => panic!("unexpected MADT entry {kind}"),
            }
            i += len;
        }
        assert_eq!(apic_ids, [0, 1, 2, 3]);
        assert_eq!(ioapics, 1);
        assert_eq!(overrides, [(0, 2, 0), (9, 9, 0x0d)]);

        // The DSDT names what SeaBIOS and OSes look for.
        let has = |needle: &[u8]| dsdt.windows(needle.len()).any(|w| w == needle);
        assert!(has(b"PCI0") && has(b"_PRT") && has(b"_S5_") && has(b"KBD_"));
        // EISA ID of PNP0303 (the keyboard SeaBIOS checks for).
        assert!(has(&[0x41, 0xd0, 0x03, 0x03]));
    }
}
