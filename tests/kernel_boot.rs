//! Direct kernel boot with Debian's stock kernel and initrd (package
//! `linux-image-amd64`): the machine is held at its first instruction and
//! what the kernel would find is read back from guest memory and the vCPU
//! — the zero page against the bzImage file itself, the command line, the
//! initrd bytes, the e820 map, the framebuffer — then the kernel runs for a
//! minute. On a host without VMX the decompressor does not finish in that
//! time (measured under QEMU too), so what it printed is reported, not
//! asserted. The CLI tests check that `vireo run` takes `<os><kernel>`
//! and explains a missing or wrong kernel file.

mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{kvm_available, Capture, Domain, Vm};
use vireo::vmm::inspect::HeldMachine;
use vireo::vmm::{ConsoleIo, DirectBoot, SharedWriter, VmConfig};
use vm_memory::{Bytes, GuestAddress};

const MEMORY: u64 = 256 << 20;
const CMDLINE: &str = "console=ttyS0 earlyprintk=serial,ttyS0,115200";

/// The installed kernel and its initrd, whatever version Debian has. A
/// missing kernel skips the test visibly, or fails it under
/// `VIREO_REQUIRE_TOOLS=1` (as `make test` sets after installing it).
fn debian_kernel() -> Option<(PathBuf, PathBuf)> {
    let mut kernels: Vec<PathBuf> = std::fs::read_dir("/boot")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("vmlinuz-"))
        })
        .collect();
    kernels.sort();
    for kernel in kernels.iter().rev() {
        let name = kernel.file_name().and_then(|n| n.to_str()).unwrap_or("");
        let initrd = PathBuf::from(format!("/boot/initrd.img-{}", &name["vmlinuz-".len()..]));
        if initrd.is_file() {
            return Some((kernel.clone(), initrd));
        }
    }
    let what = "no /boot/vmlinuz-* with its initrd.img-*: install linux-image-amd64 (`scripts/setup.sh test`)";
    if std::env::var("VIREO_REQUIRE_TOOLS").as_deref() == Ok("1") {
        panic!("{what}, and VIREO_REQUIRE_TOOLS=1");
    }
    eprintln!("SKIPPED: {what}");
    None
}

fn guest_bytes(held: &HeldMachine, addr: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0u8; len];
    held.ram().read_slice(&mut buf, GuestAddress(addr)).unwrap();
    buf
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

#[test]
fn debian_kernel_is_loaded_and_entered_per_the_boot_protocol() {
    if !kvm_available() {
        return;
    }
    let Some((kernel, initrd)) = debian_kernel() else {
        return;
    };
    let image = std::fs::read(&kernel).unwrap();
    let initrd_bytes = std::fs::read(&initrd).unwrap();
    let mut config = VmConfig::new("kboot", MEMORY);
    config.direct_boot = Some(DirectBoot {
        kernel: kernel.clone(),
        initrd: Some(initrd.clone()),
        cmdline: CMDLINE.into(),
    });
    let serial = Capture::default();
    let console = ConsoleIo::new(SharedWriter::new(serial.clone()));
    let held = HeldMachine::start(&config, &console).unwrap();

    // The zero page, as the kernel will read it through RSI.
    let entry = held.kernel_entry().expect("a kernel entry");
    let zp = guest_bytes(&held, entry.boot_params, 4096);

    // The setup header is the file's (0x1F1 up to the end the jump at
    // 0x200 gives), except the fields a boot loader writes.
    let header_end = 0x202 + image[0x201] as usize;
    let loader_written = [
        0x210..0x212, // type_of_loader, loadflags
        0x218..0x220, // ramdisk_image, ramdisk_size
        0x224..0x226, // heap_end_ptr
        0x228..0x22c, // cmd_line_ptr
    ];
    for at in 0x1f1..header_end {
        if loader_written.iter().any(|r| r.contains(&at)) {
            continue;
        }
        assert_eq!(zp[at], image[at], "setup header byte {at:#x}");
    }
    assert_eq!(u16_at(&zp, 0x1fe), 0xaa55, "boot_flag");
    assert_eq!(&zp[0x202..0x206], b"HdrS");
    assert_eq!(u16_at(&zp, 0x206), u16_at(&image, 0x206), "version");
    assert!(u16_at(&zp, 0x206) >= 0x020c);
    assert_eq!(zp[0x210], 0xff, "type_of_loader");
    assert_eq!(zp[0x211] & 0x81, 0x81, "LOADED_HIGH | CAN_USE_HEAP");
    let code32_start = u32_at(&zp, 0x214) as u64;
    assert_eq!(code32_start, entry.load_addr);

    // The protected-mode code is in memory at code32_start.
    let setup_sects = match image[0x1f1] {
        0 => 4,
        n => n as usize,
    };
    let pm_code = &image[(setup_sects + 1) * 512..];
    assert!(
        guest_bytes(&held, code32_start, pm_code.len()) == pm_code,
        "the kernel's protected-mode code is at {code32_start:#x}"
    );

    // The command line, NUL-terminated, where cmd_line_ptr points.
    let cmd_line_ptr = u32_at(&zp, 0x228) as u64;
    let line = guest_bytes(&held, cmd_line_ptr, CMDLINE.len() + 1);
    assert_eq!(&line[..CMDLINE.len()], CMDLINE.as_bytes());
    assert_eq!(line[CMDLINE.len()], 0);

    // The initrd, byte for byte, below initrd_addr_max and the end of RAM.
    let ramdisk_image = u32_at(&zp, 0x218) as u64;
    let ramdisk_size = u32_at(&zp, 0x21c) as usize;
    assert_eq!(ramdisk_size, initrd_bytes.len());
    assert!(ramdisk_image + ramdisk_size as u64 <= MEMORY);
    assert!(ramdisk_image + ramdisk_size as u64 - 1 <= u32_at(&zp, 0x22c) as u64);
    // Clear of the decompressor's buffer: init_size bytes from pref_address.
    let decompress_at = code32_start.max(u64_at(&zp, 0x258));
    assert!(
        ramdisk_image >= decompress_at + u32_at(&zp, 0x260) as u64,
        "above the decompression buffer"
    );
    assert!(
        guest_bytes(&held, ramdisk_image, ramdisk_size) == initrd_bytes,
        "the initrd's {ramdisk_size} bytes are at {ramdisk_image:#x}"
    );

    // The e820 map is the machine's memory layout for 256 MiB.
    let entries = zp[0x1e8] as usize;
    let e820: Vec<(u64, u64, u32)> = (0..entries)
        .map(|i| {
            let at = 0x2d0 + i * 20;
            (u64_at(&zp, at), u64_at(&zp, at + 8), u32_at(&zp, at + 16))
        })
        .collect();
    assert_eq!(
        e820,
        [
            (0, 0xa_0000, 1),                   // below the VGA window
            (0xe_0000, 0x2_0000, 2),            // the BIOS area
            (0x10_0000, MEMORY - 0x10_0000, 1), // 1 MiB to the end of RAM
            (0xfffb_c000, 0x4000, 2),           // KVM's identity map and TSS
        ]
    );
    let machine_map: Vec<(u64, u64, u32)> = held
        .kernel_e820()
        .iter()
        .map(|e| (e.addr, e.len, e.kind.code()))
        .collect();
    assert_eq!(e820, machine_map);

    // screen_info: a 1024×768 XRGB8888 linear framebuffer at the VGA BAR.
    let fb = held.framebuffer().expect("a framebuffer");
    assert_eq!(zp[0x0f], 0x23, "orig_video_isVGA = VIDEO_TYPE_VLFB");
    assert_eq!(u16_at(&zp, 0x12), 1024, "lfb_width");
    assert_eq!(u16_at(&zp, 0x14), 768, "lfb_height");
    assert_eq!(u16_at(&zp, 0x16), 32, "lfb_depth");
    assert_eq!(u32_at(&zp, 0x18) as u64, fb.base, "lfb_base");
    assert_eq!(fb.base, 0xfd00_0000, "where SeaBIOS puts a 16 MiB BAR too");
    assert_eq!(u32_at(&zp, 0x1c), (16 << 20) >> 16, "lfb_size in 64 KiB");
    assert_eq!(u16_at(&zp, 0x24), 4096, "lfb_linelength");
    assert_eq!(&zp[0x26..0x2e], &[8, 16, 8, 8, 8, 0, 8, 24], "colour masks");
    // The card really is in that mode: the display shows 1024×768.
    let start = Instant::now();
    while console.display.with_surface(|s| (s.width, s.height)) != (1024, 768) {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "the display is {:?}, not the VBE mode",
            console.display.with_surface(|s| (s.width, s.height))
        );
        std::thread::sleep(Duration::from_millis(20));
    }

    // The boot vCPU at startup_64 in long mode.
    let cpu = held.registers(0).expect("vCPU 0 parked at power-on");
    assert_eq!(cpu.regs.rip, code32_start + 0x200, "startup_64");
    assert_eq!(cpu.regs.rsi, entry.boot_params);
    assert_eq!(cpu.regs.rflags & 0x200, 0, "interrupts off");
    assert_ne!(cpu.sregs.efer & (1 << 10), 0, "EFER.LMA");
    assert_ne!(cpu.sregs.cr0 & (1 << 31), 0, "CR0.PG");
    assert_ne!(cpu.sregs.cr4 & (1 << 5), 0, "CR4.PAE");
    assert_eq!((cpu.sregs.cs.l, cpu.sregs.cs.db), (1, 0), "64-bit CS");
    assert_eq!(cpu.sregs.cs.selector, 0x10, "__BOOT_CS");
    assert_eq!(cpu.sregs.ds.selector, 0x18, "__BOOT_DS");

    // Let it run for a minute and see how far it gets.
    held.resume();
    let mut rips = Vec::new();
    let mut stopped = None;
    for _ in 0..12 {
        std::thread::sleep(Duration::from_secs(5));
        if let Some(reason) = held.stopped() {
            stopped = Some(reason);
            break;
        }
        held.pause();
        if let Some(cpu) = held.registers(0) {
            rips.push(cpu.regs.rip);
        }
        held.resume();
    }
    held.pause();
    let rips: Vec<String> = rips.iter().map(|r| format!("{r:#x}")).collect();
    let output = serial.text();
    eprintln!("kernel run: RIP samples every 5 s: {}", rips.join(" "));
    eprintln!("kernel run: stopped by itself: {stopped:?}");
    eprintln!(
        "kernel run: serial output ({} bytes): {output:?}",
        output.len()
    );
    assert!(
        stopped.is_none(),
        "the kernel's machine stopped: {stopped:?} (RIPs {rips:?}, serial {output:?})"
    );
    assert!(
        rips.iter()
            .any(|r| *r != format!("{:#x}", code32_start + 0x200)),
        "the vCPU never left the entry point"
    );
}

fn kernel_domain(name: &str, kernel: &str, extra: &str) -> Domain {
    let mut domain = Domain::new(name);
    domain.memory_mib = 256;
    domain.os_extra = format!("<kernel>{kernel}</kernel>{extra}");
    domain
}

#[test]
fn vireo_run_explains_a_missing_kernel() {
    if !kvm_available() {
        return;
    }
    let mut vm = Vm::start(&kernel_domain("nokernel", "/nonexistent/vmlinuz", ""));
    let status = vm.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let stderr = vm.stderr();
    assert!(
        stderr.contains("cannot read the kernel /nonexistent/vmlinuz"),
        "{stderr}"
    );
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn vireo_run_refuses_a_file_that_is_not_a_bzimage() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("vmlinuz");
    std::fs::write(&bogus, vec![0x90u8; 64 * 1024]).unwrap();
    let mut vm = Vm::start(&kernel_domain("bogus", bogus.to_str().unwrap(), ""));
    let status = vm.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let stderr = vm.stderr();
    assert!(stderr.contains("is not a Linux bzImage"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn vireo_run_refuses_an_initrd_bigger_than_ram() {
    if !kvm_available() {
        return;
    }
    let Some((kernel, initrd)) = debian_kernel() else {
        return;
    };
    let mut domain = kernel_domain(
        "bigrd",
        kernel.to_str().unwrap(),
        &format!("<initrd>{}</initrd>", initrd.display()),
    );
    // Enough for the kernel to decompress (about 64 MiB from 16 MiB for
    // Debian's), not for its 30 MB initrd as well.
    domain.memory_mib = 96;
    let mut vm = Vm::start(&domain);
    let status = vm.wait_exit(Duration::from_secs(30));
    assert!(!status.success());
    let stderr = vm.stderr();
    assert!(stderr.contains("does not fit in the VM's RAM"), "{stderr}");
}

#[test]
fn vireo_run_boots_a_kernel_from_the_definition() {
    if !kvm_available() {
        return;
    }
    let Some((kernel, initrd)) = debian_kernel() else {
        return;
    };
    let domain = kernel_domain(
        "kernel",
        kernel.to_str().unwrap(),
        &format!(
            "<initrd>{}</initrd><cmdline>{CMDLINE}</cmdline>",
            initrd.display()
        ),
    );
    let mut vm = Vm::start(&domain);
    // The VM keeps running the kernel: it neither fails to start nor
    // crashes at the entry point, and nothing says direct boot is not
    // supported.
    std::thread::sleep(Duration::from_secs(10));
    let stderr = vm.stderr();
    assert_eq!(vm.exited(), None, "vireo exited: {stderr}");
    assert!(!stderr.contains("not supported"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
