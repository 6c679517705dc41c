//! Direct kernel boot: load a Linux kernel, its initrd and command line
//! into guest RAM and start it at an entry point that needs no firmware.
//! Two kinds of kernel file, told apart by their first bytes:
//!
//! - a **bzImage**: fill the zero page (`struct boot_params`) and enter at
//!   the 64-bit entry point, as the Linux x86 boot protocol describes
//!   (`Documentation/arch/x86/boot.rst`, "64-bit Boot Protocol";
//!   `Documentation/arch/x86/zero-page.rst`);
//! - an **ELF vmlinux with a PVH note** (`XEN_ELFNOTE_PHYS32_ENTRY`): load
//!   its segments where they ask to be, fill `struct hvm_start_info` and
//!   enter in 32-bit protected mode without paging, as Xen's x86/HVM direct
//!   boot ABI describes (`xen/include/public/arch-x86/hvm/start_info.h`,
//!   `docs/misc/pvh.pandoc`). That entry skips the bzImage's decompressor,
//!   which is most of the time before the first printk where guest kernel
//!   code is emulated. Firecracker and Cloud Hypervisor boot this way.
//!
//! In both cases the ACPI tables are in memory ([`super::acpi`]) and the
//! kernel is told where the RSDP is.
//!
//! The firmware does not run on this path: the VMM plays the boot loader
//! (type_of_loader 0xFF, "undefined"), as cloud-hypervisor and Firecracker
//! do. That is simpler than QEMU's route through fw_cfg and an option ROM
//! (`linuxboot_dma.bin`), needs no extra firmware file, and is the only
//! route that avoids minutes of real-mode emulation on hosts without VMX.
//!
//! Not done: the 16-bit real-mode entry, EFI handover, `setup_data`
//! chains, kernels or initrds above 4 GiB (`ext_*` fields), ELF kernels
//! without a PVH note, the framebuffer for PVH (`hvm_start_info` has no
//! field for it), MP tables (the MADT describes the CPUs).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use linux_loader::bootparam::{boot_e820_entry, boot_params, screen_info};
use linux_loader::loader::bzimage::BzImage;
use linux_loader::loader::elf::{Elf, PvhBootCapability};
use linux_loader::loader::KernelLoader;
use vm_memory::{Bytes, GuestAddress};

use super::config::DirectBoot;
use super::layout::{
    BIOS_ALIAS_SIZE, BIOS_ALIAS_START, HIGH_RAM_START, KVM_IDENTITY_MAP, VGA_WINDOW_START,
};
use super::page_tables;
use crate::devices::fw_cfg::{E820Entry, E820Kind};
use crate::devices::GuestRam;

/// The zero page (`struct boot_params`).
pub const BOOT_PARAMS_ADDR: u64 = 0x7000;
/// The boot stack grows down from here, through the page above the zero page.
pub const BOOT_STACK_TOP: u64 = 0x9000;
/// The kernel command line.
pub const CMDLINE_ADDR: u64 = 0x2_0000;
/// The most command-line bytes this layout has room for (below the VGA window).
const CMDLINE_ROOM: u64 = 0x1_0000;
/// Where a bzImage's protected-mode code goes when its header does not say.
pub const KERNEL_LOAD_ADDR: u64 = 0x10_0000;
/// The 64-bit entry point's offset from the protected-mode code's start
/// (`startup_64` in `arch/x86/boot/compressed/head_64.S`).
pub const STARTUP_64_OFFSET: u64 = 0x200;

// The low-memory boot data must not overlap: GDT, zero page, stack, page
// tables, command line, all below the VGA window.
const _: () = assert!(
    page_tables::GDT_ADDR + 32 <= BOOT_PARAMS_ADDR
        && BOOT_PARAMS_ADDR + 0x1000 < BOOT_STACK_TOP
        && BOOT_STACK_TOP <= page_tables::PML4_ADDR
        && page_tables::PAGE_TABLES_END <= CMDLINE_ADDR
        && CMDLINE_ADDR + CMDLINE_ROOM <= VGA_WINDOW_START
);

/// `boot_params.hdr.type_of_loader`: a boot loader without an assigned id.
pub const LOADER_TYPE_UNDEFINED: u8 = 0xff;
/// `loadflags` bits.
const LOADED_HIGH: u8 = 0x01;
pub const CAN_USE_HEAP: u8 = 0x80;
/// `xloadflags` bit 0: the kernel has the 64-bit entry at +0x200.
const XLF_KERNEL_64: u16 = 0x01;
/// The setup header's magic ("HdrS") and the boot-sector signature.
pub const HDRS_MAGIC: u32 = 0x5372_6448;
pub const BOOT_FLAG: u16 = 0xaa55;
/// The protocol version with `xloadflags` (2.12).
const PROTOCOL_2_12: u16 = 0x020c;

/// `struct hvm_start_info` for the PVH entry, with the memory map and the
/// initrd's module entry after it, in the page the zero page uses for a
/// bzImage.
pub const PVH_START_INFO_ADDR: u64 = BOOT_PARAMS_ADDR;
/// `XEN_HVM_START_MAGIC_VALUE`.
pub const PVH_START_MAGIC: u32 = 0x336e_c578;
/// Version 1 has the memory map (`memmap_paddr`, `memmap_entries`), which
/// a kernel that is not a Xen guest requires.
const PVH_START_VERSION: u32 = 1;
/// `sizeof(struct hvm_start_info)`, `hvm_memmap_table_entry`,
/// `hvm_modlist_entry`.
const PVH_START_INFO_SIZE: u64 = 56;
const PVH_MEMMAP_ENTRY_SIZE: u64 = 24;
const PVH_MODLIST_ENTRY_SIZE: u64 = 32;
/// Linux's `COMMAND_LINE_SIZE` on x86, with the NUL: a PVH kernel copies at
/// most this much of the command line.
const PVH_CMDLINE_MAX: usize = 2047;

/// `screen_info.orig_video_isVGA` for a VESA linear framebuffer.
pub const VIDEO_TYPE_VLFB: u8 = 0x23;

/// The linear framebuffer the kernel is told about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Framebuffer {
    /// Guest-physical address (the VGA card's BAR0).
    pub base: u64,
    /// Bytes of video memory behind `base`.
    pub size: u64,
    pub width: u16,
    pub height: u16,
}

impl Framebuffer {
    /// Bits per pixel: XRGB8888.
    pub const DEPTH: u16 = 32;

    pub fn line_bytes(&self) -> u16 {
        self.width * (Self::DEPTH / 8)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum KernelBootError {
    /// The kernel file cannot be opened or read.
    #[error("cannot read the kernel {}: {source}", path.display())]
    ReadKernel {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The file has no Linux setup header.
    #[error("{} is not a Linux bzImage kernel ({reason})", path.display())]
    NotBzImage { path: PathBuf, reason: String },
    /// An ELF file that is not a loadable 64-bit x86 kernel.
    #[error("{} is an ELF file but not a loadable x86-64 kernel ({reason})", path.display())]
    BadElf { path: PathBuf, reason: String },
    /// An ELF kernel without the PVH entry point.
    #[error("{} is an ELF kernel without a PVH entry point (XEN_ELFNOTE_PHYS32_ENTRY): build it with CONFIG_PVH=y, or boot its bzImage", path.display())]
    NoPvhEntry { path: PathBuf },
    /// An old kernel without the 64-bit entry point.
    #[error("{} is too old for direct boot: it needs boot protocol 2.12 with a 64-bit entry point (Linux 3.8 or later), it has protocol {}.{}", path.display(), version >> 8, version & 0xff)]
    No64BitEntry { path: PathBuf, version: u16 },
    /// Kernel and its decompression buffer do not fit in low RAM.
    #[error("the kernel {} needs {need} bytes from {load:#x} to decompress, but low RAM ends at {low_ram:#x}; give the VM more memory", path.display())]
    KernelTooLarge {
        path: PathBuf,
        load: u64,
        need: u64,
        low_ram: u64,
    },
    #[error("cannot read the initrd {}: {source}", path.display())]
    ReadInitrd {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// No room for the initrd between the kernel and the top of usable RAM.
    #[error("the initrd {} ({size} bytes) does not fit in the VM's RAM: {room} bytes are free between the kernel and {top:#x}; give the VM more memory", path.display())]
    InitrdTooLarge {
        path: PathBuf,
        size: u64,
        room: u64,
        top: u64,
    },
    #[error("the kernel command line is {len} bytes; this kernel accepts at most {max}")]
    CmdlineTooLong { len: usize, max: usize },
    #[error("the kernel command line contains a NUL byte")]
    CmdlineNul,
    #[error("cannot write the boot data into guest memory: {0}")]
    Memory(#[from] vm_memory::GuestMemoryError),
}

/// How the vCPU enters the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryProtocol {
    /// The 64-bit boot protocol: long mode, the zero page in RSI.
    Linux64,
    /// PVH: 32-bit protected mode without paging, `hvm_start_info` in EBX.
    Pvh,
}

/// Where the loaded kernel starts, for the vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KernelEntry {
    pub protocol: EntryProtocol,
    /// Where the kernel was loaded (a bzImage's protected-mode code, or
    /// the ELF file's lowest segment).
    pub load_addr: u64,
    /// `startup_64`, or the PVH entry (`pvh_start_xen`).
    pub rip: u64,
    /// The zero page (RSI), or `hvm_start_info` (EBX).
    pub boot_params: u64,
}

/// The e820 map the kernel gets: the machine's RAM as `memory.rs` maps it
/// (the 640 KiB below the VGA window, RAM from 1 MiB to the PCI hole, RAM
/// above 4 GiB), the BIOS area below 1 MiB, and KVM's private pages.
pub fn e820_map(low_ram: u64, high_ram: u64) -> Vec<E820Entry> {
    let mut map = vec![
        E820Entry {
            addr: 0,
            len: VGA_WINDOW_START,
            kind: E820Kind::Ram,
        },
        E820Entry {
            addr: BIOS_ALIAS_START,
            len: BIOS_ALIAS_SIZE,
            kind: E820Kind::Reserved,
        },
        E820Entry {
            addr: KERNEL_LOAD_ADDR,
            len: low_ram - KERNEL_LOAD_ADDR,
            kind: E820Kind::Ram,
        },
        E820Entry {
            addr: KVM_IDENTITY_MAP,
            len: super::boot::KVM_PRIVATE_SIZE,
            kind: E820Kind::Reserved,
        },
    ];
    if high_ram > 0 {
        map.push(E820Entry {
            addr: HIGH_RAM_START,
            len: high_ram,
            kind: E820Kind::Ram,
        });
    }
    map
}

/// `screen_info` for a VESA linear framebuffer in XRGB8888, as `vesafb`,
/// `simplefb` and `sysfb` read it (`include/uapi/linux/screen_info.h`).
pub fn screen_info_for(fb: &Framebuffer) -> screen_info {
    let frame = fb.line_bytes() as u64 * fb.height as u64;
    screen_info {
        orig_video_isVGA: VIDEO_TYPE_VLFB,
        lfb_width: fb.width,
        lfb_height: fb.height,
        lfb_depth: Framebuffer::DEPTH,
        lfb_base: fb.base as u32,
        ext_lfb_base: (fb.base >> 32) as u32,
        // For VLFB the size is in 64 KiB units.
        lfb_size: (fb.size >> 16) as u32,
        lfb_linelength: fb.line_bytes(),
        red_size: 8,
        red_pos: 16,
        green_size: 8,
        green_pos: 8,
        blue_size: 8,
        blue_pos: 0,
        rsvd_size: 8,
        rsvd_pos: 24,
        pages: (fb.size / frame.max(1)).min(u16::MAX as u64) as u16,
        ..Default::default()
    }
}

fn read_file(path: &Path) -> std::io::Result<Vec<u8>> {
    let mut data = Vec::new();
    File::open(path)?.read_to_end(&mut data)?;
    Ok(data)
}

/// ELF files start with this; a bzImage starts with its boot sector.
const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
/// `ELFCLASS64`, `ELFDATA2LSB`, `EM_X86_64`.
const ELF_CLASS_64: u8 = 2;
const ELF_DATA_LSB: u8 = 1;
const ELF_MACHINE_X86_64: u16 = 62;

/// Whether the kernel file is an ELF image (by its first four bytes).
fn is_elf(file: &mut File) -> std::io::Result<bool> {
    use std::io::{Seek, SeekFrom};
    let mut magic = [0u8; 4];
    let elf = match file.read_exact(&mut magic) {
        Ok(()) => magic == ELF_MAGIC,
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => false,
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(0))?;
    Ok(elf)
}

/// Writes `cmdline`, NUL-terminated, where the kernel is told to find it;
/// `max` bytes at most (without the NUL).
fn write_cmdline(ram: &GuestRam, cmdline: &str, max: usize) -> Result<(), KernelBootError> {
    let bytes = cmdline.as_bytes();
    if bytes.contains(&0) {
        return Err(KernelBootError::CmdlineNul);
    }
    let max = max.min(CMDLINE_ROOM as usize - 1);
    if bytes.len() > max {
        return Err(KernelBootError::CmdlineTooLong {
            len: bytes.len(),
            max,
        });
    }
    ram.write_slice(bytes, GuestAddress(CMDLINE_ADDR))?;
    ram.write_obj(0u8, GuestAddress(CMDLINE_ADDR + bytes.len() as u64))?;
    Ok(())
}

/// Reads the initrd and puts it as high as it fits above `kernel_end`;
/// returns its address and size, `(0, 0)` without one.
fn load_initrd(
    ram: &GuestRam,
    boot: &DirectBoot,
    kernel_end: u64,
    low_ram: u64,
    initrd_addr_max: u32,
) -> Result<(u64, u64), KernelBootError> {
    let Some(path) = &boot.initrd else {
        return Ok((0, 0));
    };
    let data = read_file(path).map_err(|source| KernelBootError::ReadInitrd {
        path: path.clone(),
        source,
    })?;
    let addr = place_initrd(data.len() as u64, kernel_end, low_ram, initrd_addr_max).map_err(
        |(room, top)| KernelBootError::InitrdTooLarge {
            path: path.clone(),
            size: data.len() as u64,
            room,
            top,
        },
    )?;
    ram.write_slice(&data, GuestAddress(addr))?;
    Ok((addr, data.len() as u64))
}

/// Loads `boot` into `ram` (`low_ram` bytes below the PCI hole, `high_ram`
/// above 4 GiB) and writes the zero page, the command line and the tables
/// for the 64-bit entry. `framebuffer` is the mode the VGA card is in,
/// `acpi_rsdp` where the ACPI tables' root pointer is.
pub fn load(
    ram: &GuestRam,
    low_ram: u64,
    high_ram: u64,
    boot: &DirectBoot,
    framebuffer: Option<&Framebuffer>,
    acpi_rsdp: Option<u64>,
) -> Result<KernelEntry, KernelBootError> {
    let kernel_path = &boot.kernel;
    let read_error = |source| KernelBootError::ReadKernel {
        path: kernel_path.clone(),
        source,
    };
    let mut kernel = File::open(kernel_path).map_err(read_error)?;
    if is_elf(&mut kernel).map_err(read_error)? {
        load_pvh(ram, low_ram, high_ram, boot, kernel, acpi_rsdp)
    } else {
        load_bzimage(ram, low_ram, high_ram, boot, kernel, framebuffer, acpi_rsdp)
    }
}

/// Loads a bzImage for the 64-bit boot protocol.
fn load_bzimage(
    ram: &GuestRam,
    low_ram: u64,
    high_ram: u64,
    boot: &DirectBoot,
    mut kernel: File,
    framebuffer: Option<&Framebuffer>,
    acpi_rsdp: Option<u64>,
) -> Result<KernelEntry, KernelBootError> {
    let kernel_path = &boot.kernel;
    let kernel_len = kernel
        .metadata()
        .map_err(|source| KernelBootError::ReadKernel {
            path: kernel_path.clone(),
            source,
        })?
        .len();
    let not_bzimage = |reason: String| KernelBootError::NotBzImage {
        path: kernel_path.clone(),
        reason,
    };
    // The loader copies the protected-mode code wherever code32_start
    // says (1 MiB for every bzImage), after checking the header.
    let loaded = BzImage::load(ram, None, &mut kernel, Some(GuestAddress(KERNEL_LOAD_ADDR)))
        .map_err(|e| match e {
            linux_loader::loader::Error::Bzimage(
                linux_loader::loader::bzimage::Error::ReadBzImageCompressedKernel,
            ) => KernelBootError::KernelTooLarge {
                path: kernel_path.clone(),
                load: KERNEL_LOAD_ADDR,
                need: kernel_len,
                low_ram,
            },
            other => not_bzimage(other.to_string()),
        })?;
    let mut hdr = loaded
        .setup_header
        .ok_or_else(|| not_bzimage("no setup header".into()))?;
    if hdr.boot_flag != BOOT_FLAG {
        return Err(not_bzimage(format!(
            "boot signature {:#06x}, not 0xaa55",
            { hdr.boot_flag }
        )));
    }
    let version = hdr.version;
    if version < PROTOCOL_2_12 || hdr.xloadflags & XLF_KERNEL_64 == 0 {
        return Err(KernelBootError::No64BitEntry {
            path: kernel_path.clone(),
            version,
        });
    }
    let load_addr = loaded.kernel_load.0;
    // The decompressor needs init_size bytes from where it decompresses to
    // (boot.rst, "init_size"): the load address, or pref_address when that
    // is higher (head_64.S never decompresses below LOAD_PHYSICAL_ADDR).
    let output = load_addr.max(hdr.pref_address);
    let kernel_end = output + (hdr.init_size as u64).max(loaded.kernel_end - load_addr);
    if kernel_end > low_ram {
        return Err(KernelBootError::KernelTooLarge {
            path: kernel_path.clone(),
            load: output,
            need: kernel_end - output,
            low_ram,
        });
    }

    // cmdline_size excludes the terminating NUL.
    write_cmdline(ram, &boot.cmdline, hdr.cmdline_size as usize)?;
    let (ramdisk_image, ramdisk_size) =
        load_initrd(ram, boot, kernel_end, low_ram, hdr.initrd_addr_max)?;

    hdr.type_of_loader = LOADER_TYPE_UNDEFINED;
    hdr.loadflags |= LOADED_HIGH | CAN_USE_HEAP;
    // The end of the real-mode heap, relative to the setup code; unused by
    // the 64-bit entry but required with CAN_USE_HEAP (boot.rst).
    hdr.heap_end_ptr = 0xfe00 - 0x200;
    hdr.cmd_line_ptr = CMDLINE_ADDR as u32;
    // Below initrd_addr_max, so below 4 GiB.
    hdr.ramdisk_image = ramdisk_image as u32;
    hdr.ramdisk_size = ramdisk_size as u32;

    let mut params = boot_params {
        hdr,
        ..Default::default()
    };
    let e820 = e820_map(low_ram, high_ram);
    for (slot, entry) in params.e820_table.iter_mut().zip(&e820) {
        *slot = boot_e820_entry {
            addr: entry.addr,
            size: entry.len,
            r#type: entry.kind.code(),
        };
    }
    params.e820_entries = e820.len() as u8;
    if let Some(fb) = framebuffer {
        params.screen_info = screen_info_for(fb);
    }
    // Boot protocol 2.14; older kernels ignore it and scan for the RSDP,
    // which is where they look too.
    params.acpi_rsdp_addr = acpi_rsdp.unwrap_or(0);
    ram.write_obj(params, GuestAddress(BOOT_PARAMS_ADDR))?;
    page_tables::write_tables(ram)?;

    Ok(KernelEntry {
        protocol: EntryProtocol::Linux64,
        load_addr,
        rip: load_addr + STARTUP_64_OFFSET,
        boot_params: BOOT_PARAMS_ADDR,
    })
}

/// Loads an ELF vmlinux for its PVH entry and writes `hvm_start_info`:
/// the memory map, the command line, the initrd as the first module, the
/// RSDP.
fn load_pvh(
    ram: &GuestRam,
    low_ram: u64,
    high_ram: u64,
    boot: &DirectBoot,
    mut kernel: File,
    acpi_rsdp: Option<u64>,
) -> Result<KernelEntry, KernelBootError> {
    let path = &boot.kernel;
    let bad = |reason: String| KernelBootError::BadElf {
        path: path.clone(),
        reason,
    };
    // A 64-bit little-endian x86-64 ELF file (e_ident[EI_CLASS],
    // e_ident[EI_DATA], e_machine); the loader checks the rest.
    let mut ident = [0u8; 20];
    kernel
        .read_exact(&mut ident)
        .map_err(|_| bad("shorter than an ELF header".into()))?;
    if ident[4] != ELF_CLASS_64 || ident[5] != ELF_DATA_LSB {
        return Err(bad("not a 64-bit little-endian ELF file".into()));
    }
    if u16::from_le_bytes([ident[18], ident[19]]) != ELF_MACHINE_X86_64 {
        return Err(bad("not built for x86-64".into()));
    }
    // Segments go to their physical addresses (p_paddr), which must be
    // in RAM; the loader checks they fit in guest memory.
    let loaded = Elf::load(ram, None, &mut kernel, None).map_err(|e| bad(e.to_string()))?;
    let PvhBootCapability::PvhEntryPresent(entry) = loaded.pvh_boot_cap else {
        return Err(KernelBootError::NoPvhEntry { path: path.clone() });
    };
    let kernel_end = loaded.kernel_end;
    if kernel_end > low_ram {
        return Err(KernelBootError::KernelTooLarge {
            path: path.clone(),
            load: KERNEL_LOAD_ADDR,
            need: kernel_end - KERNEL_LOAD_ADDR,
            low_ram,
        });
    }
    write_cmdline(ram, &boot.cmdline, PVH_CMDLINE_MAX)?;
    let (initrd, initrd_size) = load_initrd(ram, boot, kernel_end, low_ram, u32::MAX)?;

    let e820 = e820_map(low_ram, high_ram);
    let memmap = PVH_START_INFO_ADDR + PVH_START_INFO_SIZE.next_multiple_of(8);
    let modlist = memmap + e820.len() as u64 * PVH_MEMMAP_ENTRY_SIZE;
    let modules = u32::from(boot.initrd.is_some());
    let info = pvh_start_info(
        modules,
        modlist,
        acpi_rsdp.unwrap_or(0),
        memmap,
        e820.len() as u32,
    );
    ram.write_slice(&info, GuestAddress(PVH_START_INFO_ADDR))?;
    for (i, region) in e820.iter().enumerate() {
        let mut entry = Vec::with_capacity(PVH_MEMMAP_ENTRY_SIZE as usize);
        entry.extend_from_slice(&region.addr.to_le_bytes());
        entry.extend_from_slice(&region.len.to_le_bytes());
        entry.extend_from_slice(&region.kind.code().to_le_bytes());
        entry.extend_from_slice(&0u32.to_le_bytes()); // reserved
        ram.write_slice(
            &entry,
            GuestAddress(memmap + i as u64 * PVH_MEMMAP_ENTRY_SIZE),
        )?;
    }
    if modules > 0 {
        let mut module = Vec::with_capacity(PVH_MODLIST_ENTRY_SIZE as usize);
        module.extend_from_slice(&initrd.to_le_bytes()); // paddr
        module.extend_from_slice(&initrd_size.to_le_bytes()); // size
        module.extend_from_slice(&0u64.to_le_bytes()); // cmdline_paddr: none
        module.extend_from_slice(&0u64.to_le_bytes()); // reserved
        ram.write_slice(&module, GuestAddress(modlist))?;
    }
    page_tables::write_tables(ram)?;
    Ok(KernelEntry {
        protocol: EntryProtocol::Pvh,
        load_addr: loaded.kernel_load.0,
        rip: entry.0,
        boot_params: PVH_START_INFO_ADDR,
    })
}

/// `struct hvm_start_info`, version 1, as bytes.
fn pvh_start_info(
    nr_modules: u32,
    modlist_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
) -> Vec<u8> {
    let mut info = Vec::with_capacity(PVH_START_INFO_SIZE as usize);
    info.extend_from_slice(&PVH_START_MAGIC.to_le_bytes());
    info.extend_from_slice(&PVH_START_VERSION.to_le_bytes());
    info.extend_from_slice(&0u32.to_le_bytes()); // flags
    info.extend_from_slice(&nr_modules.to_le_bytes());
    info.extend_from_slice(&modlist_paddr.to_le_bytes());
    info.extend_from_slice(&CMDLINE_ADDR.to_le_bytes()); // cmdline_paddr
    info.extend_from_slice(&rsdp_paddr.to_le_bytes());
    info.extend_from_slice(&memmap_paddr.to_le_bytes());
    info.extend_from_slice(&memmap_entries.to_le_bytes());
    info.extend_from_slice(&0u32.to_le_bytes()); // reserved
    debug_assert_eq!(info.len() as u64, PVH_START_INFO_SIZE);
    info
}

/// The initrd's address: as high as it can go, page-aligned, below both
/// the end of low RAM and `initrd_addr_max`, above `kernel_end`. On failure,
/// the room there is and the top it had to stay under.
fn place_initrd(
    size: u64,
    kernel_end: u64,
    low_ram: u64,
    initrd_addr_max: u32,
) -> Result<u64, (u64, u64)> {
    // initrd_addr_max is the highest address the initrd's last byte may
    // occupy; 0 means the protocol's old default.
    let max = if initrd_addr_max == 0 {
        0x37ff_ffff
    } else {
        initrd_addr_max as u64
    };
    let top = low_ram.min(max + 1);
    let room = top.saturating_sub(kernel_end);
    match top.checked_sub(size) {
        Some(start) if start & !0xfff >= kernel_end => Ok(start & !0xfff),
        _ => Err((room, top)),
    }
}

/// Puts vCPU `fd` at the entry of `entry`, in the mode its protocol wants.
pub fn enter(fd: &kvm_ioctls::VcpuFd, entry: &KernelEntry) -> Result<(), kvm_ioctls::Error> {
    let mut sregs = fd.get_sregs()?;
    match entry.protocol {
        EntryProtocol::Linux64 => {
            page_tables::long_mode_sregs(&mut sregs);
            fd.set_sregs(&sregs)?;
            fd.set_regs(&page_tables::entry_regs(
                entry.rip,
                entry.boot_params,
                BOOT_STACK_TOP,
            ))
        }
        EntryProtocol::Pvh => {
            page_tables::protected_mode_sregs(&mut sregs);
            fd.set_sregs(&sregs)?;
            fd.set_regs(&page_tables::pvh_entry_regs(entry.rip, entry.boot_params))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmm::layout::{ram_split, KVM_TSS};

    #[test]
    fn e820_follows_the_machines_layout() {
        let (low, high) = ram_split(256 << 20);
        let map = e820_map(low, high);
        let table: Vec<(u64, u64, u32)> =
            map.iter().map(|e| (e.addr, e.len, e.kind.code())).collect();
        assert_eq!(
            table,
            [
                (0, 0xa_0000, 1),
                (0xe_0000, 0x2_0000, 2),
                (0x10_0000, (256 << 20) - 0x10_0000, 1),
                (0xfffb_c000, 0x4000, 2),
            ]
        );
        // Above the PCI hole the rest of RAM continues at 4 GiB.
        let (low, high) = ram_split(4 << 30);
        let map = e820_map(low, high);
        assert_eq!(map[2].addr + map[2].len, 3 << 30);
        assert_eq!(
            map.last().map(|e| (e.addr, e.len)),
            Some((1 << 32, 1 << 30))
        );
        // KVM's TSS pages are inside the reserved entry.
        assert!(KVM_TSS + 0x3000 <= map[3].addr + map[3].len);
    }

    #[test]
    fn screen_info_describes_an_xrgb8888_linear_framebuffer() {
        let fb = Framebuffer {
            base: 0xfd00_0000,
            size: 16 << 20,
            width: 1024,
            height: 768,
        };
        let si = screen_info_for(&fb);
        assert_eq!(si.orig_video_isVGA, 0x23);
        assert_eq!({ si.lfb_base }, 0xfd00_0000);
        assert_eq!({ si.ext_lfb_base }, 0);
        assert_eq!(
            ({ si.lfb_width }, { si.lfb_height }, { si.lfb_depth }),
            (1024, 768, 32)
        );
        assert_eq!({ si.lfb_linelength }, 4096);
        assert_eq!({ si.lfb_size }, 256, "64 KiB units");
        assert_eq!(
            (si.red_pos, si.green_pos, si.blue_pos, si.rsvd_pos),
            (16, 8, 0, 24)
        );
        assert_eq!((si.red_size, si.green_size, si.blue_size), (8, 8, 8));
    }

    #[test]
    fn initrd_goes_high_below_the_limits_and_above_the_kernel() {
        // Below the end of RAM, page aligned.
        assert_eq!(
            place_initrd(0x1800, 0x200_0000, 0x1000_0000, 0x7fff_ffff),
            Ok(0x1000_0000 - 0x2000)
        );
        // initrd_addr_max is the last byte's address.
        assert_eq!(
            place_initrd(0x1000, 0x200_0000, 0x1_0000_0000, 0x0fff_ffff),
            Ok(0x0fff_f000)
        );
        // Too big: the error says how much room there was.
        assert_eq!(
            place_initrd(0x900_0000, 0x800_0000, 0x1000_0000, 0x7fff_ffff),
            Err((0x800_0000, 0x1000_0000))
        );
    }

    fn direct(kernel: &Path) -> DirectBoot {
        DirectBoot {
            kernel: kernel.to_path_buf(),
            initrd: None,
            cmdline: String::new(),
        }
    }

    fn ram() -> GuestRam {
        GuestRam::from_ranges(&[(GuestAddress(0), 32 << 20)]).unwrap()
    }

    #[test]
    fn a_missing_kernel_is_a_clear_error() {
        let err = load(
            &ram(),
            32 << 20,
            0,
            &direct(Path::new("/nonexistent/vmlinuz")),
            None,
            None,
        )
        .unwrap_err();
        assert!(matches!(err, KernelBootError::ReadKernel { .. }), "{err}");
        assert!(err.to_string().contains("/nonexistent/vmlinuz"), "{err}");
    }

    #[test]
    fn a_file_that_is_not_a_bzimage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notes.txt");
        std::fs::write(&path, vec![b'x'; 8192]).unwrap();
        let err = load(&ram(), 32 << 20, 0, &direct(&path), None, None).unwrap_err();
        assert!(matches!(err, KernelBootError::NotBzImage { .. }), "{err}");
        assert!(err.to_string().contains("is not a Linux bzImage"), "{err}");
        // Shorter than a setup header.
        std::fs::write(&path, b"tiny").unwrap();
        let err = load(&ram(), 32 << 20, 0, &direct(&path), None, None).unwrap_err();
        assert!(matches!(err, KernelBootError::NotBzImage { .. }), "{err}");
    }

    /// A synthetic bzImage: a setup header and a few bytes of "kernel".
    fn fake_bzimage(dir: &Path, init_size: u32) -> PathBuf {
        let mut image = vec![0u8; 5 * 512 + 4096];
        image[0x1f1] = 4; // setup_sects
        image[0x1fe..0x200].copy_from_slice(&BOOT_FLAG.to_le_bytes());
        image[0x202..0x206].copy_from_slice(&HDRS_MAGIC.to_le_bytes());
        image[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes()); // version 2.15
        image[0x211] = LOADED_HIGH; // loadflags
        image[0x214..0x218].copy_from_slice(&0x10_0000u32.to_le_bytes()); // code32_start
        image[0x22c..0x230].copy_from_slice(&0x7fff_ffffu32.to_le_bytes()); // initrd_addr_max
        image[0x236..0x238].copy_from_slice(&XLF_KERNEL_64.to_le_bytes()); // xloadflags
        image[0x238..0x23c].copy_from_slice(&2048u32.to_le_bytes()); // cmdline_size
        image[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes()); // pref_address
        image[0x260..0x264].copy_from_slice(&init_size.to_le_bytes()); // init_size
        image[5 * 512..5 * 512 + 4].copy_from_slice(b"KERN");
        let path = dir.join("bzImage");
        std::fs::write(&path, image).unwrap();
        path
    }

    #[test]
    fn zero_page_of_a_synthetic_bzimage() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = fake_bzimage(dir.path(), 0x40_0000);
        let initrd = dir.path().join("initrd");
        std::fs::write(&initrd, vec![0x5a; 10_000]).unwrap();
        let boot = DirectBoot {
            kernel,
            initrd: Some(initrd),
            cmdline: "console=ttyS0 quiet".into(),
        };
        let ram = ram();
        let entry = load(&ram, 32 << 20, 0, &boot, None, None).unwrap();
        assert_eq!(entry.rip, 0x10_0200);
        let mut kern = [0u8; 4];
        ram.read_slice(&mut kern, GuestAddress(0x10_0000)).unwrap();
        assert_eq!(&kern, b"KERN");
        let params: boot_params = ram.read_obj(GuestAddress(BOOT_PARAMS_ADDR)).unwrap();
        let hdr = params.hdr;
        assert_eq!({ hdr.header }, HDRS_MAGIC);
        assert_eq!(hdr.type_of_loader, 0xff);
        assert_eq!(hdr.loadflags & CAN_USE_HEAP, CAN_USE_HEAP);
        let mut line = vec![0u8; 20];
        ram.read_slice(&mut line, GuestAddress(hdr.cmd_line_ptr as u64))
            .unwrap();
        assert_eq!(&line, b"console=ttyS0 quiet\0");
        let (image, size) = ({ hdr.ramdisk_image }, { hdr.ramdisk_size });
        assert_eq!(size, 10_000);
        assert_eq!(image % 4096, 0);
        assert!(image as u64 + 10_000 <= 32 << 20);
        assert!(
            image as u64 >= 0x100_0000 + 0x40_0000,
            "above the decompression buffer at pref_address"
        );
        let mut data = vec![0u8; 10_000];
        ram.read_slice(&mut data, GuestAddress(image as u64))
            .unwrap();
        assert!(data.iter().all(|&b| b == 0x5a));
        assert_eq!(params.e820_entries, 4);
        assert_eq!({ params.e820_table[2].addr }, 0x10_0000);
        assert_eq!(params.screen_info.orig_video_isVGA, 0, "no framebuffer");
    }

    #[test]
    fn an_initrd_that_does_not_fit_and_a_long_cmdline_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let kernel = fake_bzimage(dir.path(), 0x40_0000);
        let initrd = dir.path().join("initrd");
        std::fs::write(&initrd, vec![0; 30 << 20]).unwrap();
        let mut boot = DirectBoot {
            kernel,
            initrd: Some(initrd),
            cmdline: String::new(),
        };
        let err = load(&ram(), 32 << 20, 0, &boot, None, None).unwrap_err();
        assert!(
            matches!(err, KernelBootError::InitrdTooLarge { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("does not fit"), "{err}");
        boot.initrd = None;
        boot.cmdline = "x".repeat(2049);
        let err = load(&ram(), 32 << 20, 0, &boot, None, None).unwrap_err();
        assert!(
            matches!(
                err,
                KernelBootError::CmdlineTooLong {
                    len: 2049,
                    max: 2048
                }
            ),
            "{err}"
        );
        // A kernel whose decompression needs more than the RAM there is.
        boot.cmdline.clear();
        boot.kernel = fake_bzimage(dir.path(), 64 << 20);
        let err = load(&ram(), 32 << 20, 0, &boot, None, None).unwrap_err();
        assert!(
            matches!(err, KernelBootError::KernelTooLarge { .. }),
            "{err}"
        );
    }

    /// A synthetic vmlinux: one PT_LOAD segment of "kernel" at 16 MiB and
    /// a PT_NOTE with the PVH entry (XEN_ELFNOTE_PHYS32_ENTRY), unless
    /// `entry` is `None`.
    fn fake_vmlinux(dir: &Path, entry: Option<u32>) -> PathBuf {
        const PHDR: usize = 56;
        let code_at = 64 + 2 * PHDR;
        let code = b"PVHKERNEL";
        let note_at = code_at + 16;
        let mut note = Vec::new();
        note.extend_from_slice(&4u32.to_le_bytes()); // n_namesz
        note.extend_from_slice(&4u32.to_le_bytes()); // n_descsz
        note.extend_from_slice(&18u32.to_le_bytes()); // n_type
        note.extend_from_slice(b"Xen\0");
        note.extend_from_slice(&entry.unwrap_or(0).to_le_bytes());
        let mut elf = vec![0u8; note_at + note.len()];
        elf[..4].copy_from_slice(&ELF_MAGIC);
        elf[4] = ELF_CLASS_64;
        elf[5] = ELF_DATA_LSB;
        elf[6] = 1; // EI_VERSION
        elf[16..18].copy_from_slice(&2u16.to_le_bytes()); // ET_EXEC
        elf[18..20].copy_from_slice(&ELF_MACHINE_X86_64.to_le_bytes());
        elf[20..24].copy_from_slice(&1u32.to_le_bytes()); // e_version
        elf[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes()); // e_entry
        elf[32..40].copy_from_slice(&64u64.to_le_bytes()); // e_phoff
        elf[52..54].copy_from_slice(&64u16.to_le_bytes()); // e_ehsize
        elf[54..56].copy_from_slice(&(PHDR as u16).to_le_bytes()); // e_phentsize
        let phnum: u16 = if entry.is_some() { 2 } else { 1 };
        elf[56..58].copy_from_slice(&phnum.to_le_bytes()); // e_phnum
                                                           // PT_LOAD: offset, vaddr, paddr, filesz, memsz (a page of bss).
        let load = &mut elf[64..64 + PHDR];
        load[0..4].copy_from_slice(&1u32.to_le_bytes());
        load[8..16].copy_from_slice(&(code_at as u64).to_le_bytes());
        load[16..24].copy_from_slice(&0xffff_ffff_8100_0000u64.to_le_bytes());
        load[24..32].copy_from_slice(&0x100_0000u64.to_le_bytes());
        load[32..40].copy_from_slice(&(code.len() as u64).to_le_bytes());
        load[40..48].copy_from_slice(&0x1000u64.to_le_bytes());
        // PT_NOTE.
        let pnote = &mut elf[64 + PHDR..64 + 2 * PHDR];
        pnote[0..4].copy_from_slice(&4u32.to_le_bytes());
        pnote[8..16].copy_from_slice(&(note_at as u64).to_le_bytes());
        pnote[32..40].copy_from_slice(&(note.len() as u64).to_le_bytes());
        elf[code_at..code_at + code.len()].copy_from_slice(code);
        elf[note_at..].copy_from_slice(&note);
        let path = dir.join("vmlinux");
        std::fs::write(&path, elf).unwrap();
        path
    }

    fn u32_in(ram: &GuestRam, addr: u64) -> u32 {
        ram.read_obj(GuestAddress(addr)).unwrap()
    }

    fn u64_in(ram: &GuestRam, addr: u64) -> u64 {
        ram.read_obj(GuestAddress(addr)).unwrap()
    }

    #[test]
    fn pvh_start_info_of_a_synthetic_vmlinux() {
        let dir = tempfile::tempdir().unwrap();
        let initrd = dir.path().join("initrd");
        std::fs::write(&initrd, vec![0x3c; 5000]).unwrap();
        let boot = DirectBoot {
            kernel: fake_vmlinux(dir.path(), Some(0x100_0abc)),
            initrd: Some(initrd),
            cmdline: "console=ttyS0".into(),
        };
        let ram = ram();
        let entry = load(&ram, 32 << 20, 0, &boot, None, Some(0xe_0000)).unwrap();
        assert_eq!(entry.protocol, EntryProtocol::Pvh);
        assert_eq!(entry.rip, 0x100_0abc, "the note's entry, not e_entry");
        assert_eq!(entry.boot_params, PVH_START_INFO_ADDR);
        let mut kern = [0u8; 9];
        ram.read_slice(&mut kern, GuestAddress(0x100_0000)).unwrap();
        assert_eq!(&kern, b"PVHKERNEL", "loaded at p_paddr");

        let info = PVH_START_INFO_ADDR;
        assert_eq!(u32_in(&ram, info), PVH_START_MAGIC);
        assert_eq!(u32_in(&ram, info + 4), 1, "version");
        assert_eq!(u32_in(&ram, info + 12), 1, "nr_modules");
        let cmdline = u64_in(&ram, info + 24);
        let mut line = [0u8; 14];
        ram.read_slice(&mut line, GuestAddress(cmdline)).unwrap();
        assert_eq!(&line, b"console=ttyS0\0");
        assert_eq!(u64_in(&ram, info + 32), 0xe_0000, "rsdp_paddr");
        // The memory map is the bzImage's e820 map.
        let memmap = u64_in(&ram, info + 40);
        let entries = u32_in(&ram, info + 48);
        let e820 = e820_map(32 << 20, 0);
        assert_eq!(entries as usize, e820.len());
        for (i, region) in e820.iter().enumerate() {
            let at = memmap + i as u64 * 24;
            assert_eq!(
                (
                    u64_in(&ram, at),
                    u64_in(&ram, at + 8),
                    u32_in(&ram, at + 16)
                ),
                (region.addr, region.len, region.kind.code())
            );
        }
        // The initrd is module 0, above the kernel's bss, in RAM.
        let module = u64_in(&ram, info + 16);
        let (paddr, size) = (u64_in(&ram, module), u64_in(&ram, module + 8));
        assert_eq!(size, 5000);
        assert!(paddr >= 0x100_1000 && paddr + size <= 32 << 20);
        let mut data = vec![0u8; 5000];
        ram.read_slice(&mut data, GuestAddress(paddr)).unwrap();
        assert!(data.iter().all(|&b| b == 0x3c));
    }

    #[test]
    fn an_elf_without_a_pvh_note_or_for_another_machine_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let err = load(
            &ram(),
            32 << 20,
            0,
            &direct(&fake_vmlinux(dir.path(), None)),
            None,
            None,
        )
        .unwrap_err();
        assert!(matches!(err, KernelBootError::NoPvhEntry { .. }), "{err}");
        assert!(err.to_string().contains("CONFIG_PVH"), "{err}");
        let path = fake_vmlinux(dir.path(), Some(0x100_0000));
        let mut elf = std::fs::read(&path).unwrap();
        elf[18] = 183; // EM_AARCH64
        std::fs::write(&path, elf).unwrap();
        let err = load(&ram(), 32 << 20, 0, &direct(&path), None, None).unwrap_err();
        assert!(matches!(err, KernelBootError::BadElf { .. }), "{err}");
        assert!(err.to_string().contains("x86-64"), "{err}");
    }

    #[test]
    fn the_zero_page_points_at_the_rsdp() {
        let dir = tempfile::tempdir().unwrap();
        let boot = direct(&fake_bzimage(dir.path(), 0x40_0000));
        let ram = ram();
        load(&ram, 32 << 20, 0, &boot, None, Some(0xe_0000)).unwrap();
        let params: boot_params = ram.read_obj(GuestAddress(BOOT_PARAMS_ADDR)).unwrap();
        assert_eq!({ params.acpi_rsdp_addr }, 0xe_0000);
    }
}
