//! Power and boot: ACPI as guests use it (the power button through
//! `vireo shutdown`, S5 soft-off, what `<on_poweroff>` says next), the
//! tables SeaBIOS finds, and several vCPUs that guests start themselves.
//!
//! The guests are boot sectors of our own that SeaBIOS loads, and GRUB
//! (whose `halt` command uses the ACPI tables). Guests run under emulation
//! on some hosts (TESTING.md), hence the long timeouts.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::asm::{boot_sector, Program};
use common::{guest, kvm_available, wait, Domain, Home, Vm};
use iced_x86::code_asm::*;
use serde_json::{json, Value};
use vireo::control::ControlClient;

const BOOT: Duration = Duration::from_secs(240);
const GRUB: Duration = Duration::from_secs(600);

/// PIIX4 PM I/O space as the FADT describes it, and the APM control port.
const PM1_STS: u16 = 0x600;
const PM1_EN: u16 = 0x602;
const PM1_CNT: u16 = 0x604;
const SMI_CMD: u16 = 0xb2;
const ACPI_ENABLE: u8 = 0xf1;
const PWRBTN: u16 = 1 << 8;
const SCI_EN: u16 = 1;
const SLP_EN: u16 = 1 << 13;

/// A boot sector that does what an ACPI OS does with the power button:
/// switch to ACPI mode through SMI_CMD, enable PWRBTN_EN, wait for
/// PWRBTN_STS, acknowledge it and enter S5 (SLP_TYP 0, as \_S5 says).
fn power_button_guest() -> Vec<u8> {
    boot_sector(|p: &mut Program| {
        let a = &mut p.a;
        a.mov(al, ACPI_ENABLE as u32).unwrap();
        a.out(SMI_CMD as u32, al).unwrap();
        a.mov(dx, PM1_EN as u32).unwrap();
        a.mov(ax, PWRBTN as u32).unwrap();
        a.out(dx, ax).unwrap();
        p.print("acpi on\n");
        let a = &mut p.a;
        let mut wait = a.create_label();
        a.set_label(&mut wait).unwrap();
        a.pause().unwrap();
        a.mov(dx, PM1_STS as u32).unwrap();
        a.in_(ax, dx).unwrap();
        a.test(ax, PWRBTN as u32).unwrap();
        a.jz(wait).unwrap();
        p.print("power button\n");
        let a = &mut p.a;
        a.mov(dx, PM1_STS as u32).unwrap();
        a.mov(ax, PWRBTN as u32).unwrap();
        a.out(dx, ax).unwrap();
        a.mov(dx, PM1_CNT as u32).unwrap();
        a.mov(ax, (SCI_EN | SLP_EN) as u32).unwrap();
        a.out(dx, ax).unwrap();
        let mut spin = a.create_label();
        a.set_label(&mut spin).unwrap();
        a.hlt().unwrap();
        a.jmp(spin).unwrap();
    })
}

/// A defined, started domain whose serial console the test reads.
struct Started {
    home: Home,
    name: &'static str,
    serial: Arc<Mutex<Vec<u8>>>,
}

impl Started {
    /// Defines `xml` (a domain named `name`) in a fresh home and starts it.
    fn new(name: &'static str, xml: &str) -> Self {
        let home = Home::new();
        let path = home.path("domain.xml");
        std::fs::write(&path, xml).unwrap();
        home.ok(&["define", path.to_str().unwrap()]);
        home.ok(&["start", name]);
        let (_console, serial) = common::attach_serial(&home, name);
        Self { home, name, serial }
    }

    fn serial(&self) -> String {
        String::from_utf8_lossy(&self.serial.lock().unwrap()).into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.path(&format!("logs/{}.log", self.name)))
            .unwrap_or_default()
    }

    /// Waits until `text` appears `times` times on the serial console.
    fn wait_for(&self, text: &str, times: usize, timeout: Duration) {
        wait::until(
            &format!("{text:?} {times} times on serial"),
            timeout,
            Duration::from_millis(50),
            || {
                let serial = self.serial();
                if serial.matches(text).count() >= times {
                    Ok(())
                } else {
                    Err(format!("serial: {serial:?}\nlog: {}", self.log()))
                }
            },
        )
    }

    fn domstate(&self) -> String {
        self.home.ok(&["domstate", self.name]).trim().to_string()
    }

    fn wait_shut_off(&self, timeout: Duration) {
        wait::until("shut off", timeout, Duration::from_millis(100), || {
            let state = self.domstate();
            if state == "shut off" {
                Ok(())
            } else {
                Err(format!(
                    "still {state}; serial {:?}\nlog: {}",
                    self.serial(),
                    self.log()
                ))
            }
        })
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.home.run(&["destroy", self.name]);
    }
}

fn domain_xml(name: &str, disk: &std::path::Path, on_poweroff: &'static str) -> String {
    let mut domain = Domain::new(name).disk("disk", disk, "hda", "ide");
    domain.on_poweroff = on_poweroff;
    domain.xml()
}

#[test]
fn vireo_shutdown_presses_the_power_button_and_the_guest_powers_off() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = guest::raw_disk(dir.path(), "disk.img", &power_button_guest(), 1 << 20);
    let vm = Started::new("acpi1", &domain_xml("acpi1", &disk, "destroy"));
    vm.wait_for("acpi on\n", 1, BOOT);
    assert!(!vm.serial().contains("power button"));
    assert_eq!(
        vm.home.ok(&["shutdown", "acpi1"]),
        "Domain 'acpi1' is being shutdown\n\n"
    );
    vm.wait_for("power button\n", 1, BOOT);
    vm.wait_shut_off(BOOT);
}

#[test]
fn on_poweroff_restart_boots_the_guest_again_after_s5() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = guest::raw_disk(dir.path(), "disk.img", &power_button_guest(), 1 << 20);
    let vm = Started::new("acpi2", &domain_xml("acpi2", &disk, "restart"));
    vm.wait_for("acpi on\n", 1, BOOT);
    vm.home.ok(&["shutdown", "acpi2"]);
    vm.wait_for("power button\n", 1, BOOT);
    // A new machine: SeaBIOS and the guest run again, ACPI off again.
    vm.wait_for("acpi on\n", 2, BOOT);
    assert_eq!(vm.domstate(), "running");
}

#[test]
fn on_poweroff_preserve_keeps_the_vm_in_shutdown_until_reset_or_destroyed() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let disk = guest::raw_disk(dir.path(), "disk.img", &power_button_guest(), 1 << 20);
    let vm = Started::new("acpi3", &domain_xml("acpi3", &disk, "preserve"));
    vm.wait_for("acpi on\n", 1, BOOT);
    vm.home.ok(&["shutdown", "acpi3"]);
    vm.wait_for("power button\n", 1, BOOT);
    let start = Instant::now();
    while vm.domstate() != "in shutdown" {
        assert!(
            start.elapsed() < BOOT,
            "still {} after S5; log: {}",
            vm.domstate(),
            vm.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // As QEMU with -no-shutdown: powered off, not crashed, and kept.
    let mut client = ControlClient::connect(vm.home.vm_files("acpi3").control()).unwrap();
    assert_eq!(
        client.execute("query-status", Value::Null).unwrap(),
        json!({"running": false, "singlestep": false, "status": "shutdown"})
    );
    drop(client);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(vm.domstate(), "in shutdown");
    assert_eq!(vm.serial().matches("acpi on").count(), 1, "{}", vm.serial());
    let refused = vm.home.fails(&["resume", "acpi3"]);
    assert!(refused.contains("powered off"), "{refused}");
    // The reset button starts it over, as on QEMU.
    vm.home.ok(&["reset", "acpi3"]);
    vm.wait_for("acpi on\n", 2, BOOT);
    assert_eq!(vm.domstate(), "running");
    vm.home.ok(&["destroy", "acpi3"]);
    vm.wait_shut_off(BOOT);
}

/// APIC ids of the CPUs that said hello, from lines "cpu XX".
fn cpu_ids(serial: &str) -> Vec<u8> {
    let mut ids: Vec<u8> = serial
        .lines()
        .filter_map(|l| l.trim().strip_prefix("cpu "))
        .filter_map(|id| u8::from_str_radix(id, 16).ok())
        .collect();
    ids.sort();
    ids
}

/// The x2APIC interrupt command register MSR and IA32_APIC_BASE.
const MSR_APIC_BASE: u32 = 0x1b;
const MSR_X2APIC_ICR: u32 = 0x830;
/// ICR: all excluding self, level assert, INIT / start-up (vector in 7:0).
const ICR_INIT_ALL_BUT_SELF: u32 = 0x000c_4500;
const ICR_SIPI_ALL_BUT_SELF: u32 = 0x000c_4600;
/// Where the APs start: page 7 (0x7000) holds a far jump to 0:7C00.
const SIPI_VECTOR: u32 = 0x07;
/// A spinlock byte and the count of APs that reported, in free low memory.
const LOCK: u32 = 0x500;
const REPORTED: u32 = 0x502;

/// A boot sector run by every CPU: the BSP starts the APs with INIT/SIPI
/// through its local APIC (x2APIC MSRs, reachable from real mode), each
/// CPU prints "cpu" and its APIC id from CPUID leaf 1, and the BSP resets
/// the machine once all of them (CPUID's logical processor count) did.
fn smp_guest() -> Vec<u8> {
    boot_sector(|p: &mut Program| {
        let a = &mut p.a;
        let mut ap = a.create_label();
        let mut hello = a.create_label();
        a.mov(ecx, MSR_APIC_BASE).unwrap();
        a.rdmsr().unwrap();
        a.test(ah, 1u32).unwrap(); // bit 8: this is the BSP
        a.jz(ap).unwrap();

        // BSP: far jump at 0x7000 to 0:7C00, then INIT and SIPI.
        a.mov(byte_ptr(LOCK), 0u32).unwrap();
        a.mov(word_ptr(REPORTED), 0u32).unwrap();
        a.mov(byte_ptr(0x7000u32), 0xeau32).unwrap();
        a.mov(word_ptr(0x7001u32), 0x7c00u32).unwrap();
        a.mov(word_ptr(0x7003u32), 0u32).unwrap();
        a.or(eax, 0xc00u32).unwrap(); // EN | EXTD: x2APIC mode
        a.wrmsr().unwrap();
        a.mov(ecx, MSR_X2APIC_ICR).unwrap();
        a.xor(edx, edx).unwrap();
        a.mov(eax, ICR_INIT_ALL_BUT_SELF).unwrap();
        a.wrmsr().unwrap();
        a.mov(esi, 0x10_0000u32).unwrap();
        let mut delay = a.create_label();
        a.set_label(&mut delay).unwrap();
        a.dec(esi).unwrap();
        a.jnz(delay).unwrap();
        a.mov(eax, ICR_SIPI_ALL_BUT_SELF | SIPI_VECTOR).unwrap();
        a.wrmsr().unwrap();
        a.call(hello).unwrap();
        // Wait until every AP reported: CPUID.1:EBX[23:16] - 1 of them.
        a.mov(eax, 1u32).unwrap();
        a.cpuid().unwrap();
        a.shr(ebx, 16u32).unwrap();
        a.dec(bl).unwrap();
        let mut wait = a.create_label();
        a.set_label(&mut wait).unwrap();
        a.pause().unwrap();
        a.cmp(byte_ptr(REPORTED), bl).unwrap();
        a.jb(wait).unwrap();
        p.print("all cpus\n");
        p.exit();

        // AP: its own stack, hello, count, halt.
        let a = &mut p.a;
        a.set_label(&mut ap).unwrap();
        a.mov(eax, 1u32).unwrap();
        a.cpuid().unwrap();
        a.shr(ebx, 24u32).unwrap();
        a.shl(bx, 9u32).unwrap();
        a.mov(sp, 0x6000u32).unwrap();
        a.sub(sp, bx).unwrap();
        a.call(hello).unwrap();
        a.inc(byte_ptr(REPORTED)).unwrap();
        a.mov(byte_ptr(LOCK), 0u32).unwrap(); // hello left the lock held
        let mut park = a.create_label();
        a.set_label(&mut park).unwrap();
        a.cli().unwrap();
        a.hlt().unwrap();
        a.jmp(park).unwrap();

        // hello: take the lock, print "cpu XX\n"; the BSP releases it
        // here, an AP after counting itself.
        a.set_label(&mut hello).unwrap();
        a.nop().unwrap(); // one label per instruction
        let mut spin = a.create_label();
        a.set_label(&mut spin).unwrap();
        a.mov(al, 1u32).unwrap();
        a.xchg(byte_ptr(LOCK), al).unwrap();
        a.test(al, al).unwrap();
        a.jnz(spin).unwrap();
        p.print("cpu ");
        let a = &mut p.a;
        a.mov(eax, 1u32).unwrap();
        a.cpuid().unwrap();
        a.shr(ebx, 24u32).unwrap();
        a.mov(al, bl).unwrap();
        a.call(p.puthex8).unwrap();
        p.print("\n");
        let a = &mut p.a;
        let mut keep = a.create_label();
        a.mov(ecx, MSR_APIC_BASE).unwrap();
        a.rdmsr().unwrap();
        a.test(ah, 1u32).unwrap();
        a.jz(keep).unwrap();
        a.mov(byte_ptr(LOCK), 0u32).unwrap();
        a.set_label(&mut keep).unwrap();
        a.ret().unwrap();
    })
}

#[test]
fn every_vcpu_starts_and_seabios_finds_the_acpi_tables() {
    if !kvm_available() {
        return;
    }
    let mut domain = Domain::new("smp");
    // Four whatever the host has: more vCPUs than host CPUs time-slice, as
    // on QEMU (this host may have two).
    domain.vcpus = 4;
    let dir = tempfile::tempdir().unwrap();
    let disk = guest::raw_disk(dir.path(), "disk.img", &smp_guest(), 1 << 20);
    let domain = domain.disk("disk", &disk, "hda", "ide");
    let log = dir.path().join("seabios.log");
    let mut vm = Vm::start_with(&domain, &["--debugcon", log.to_str().unwrap()]);
    let serial = vm.wait_for("all cpus\n", BOOT);
    let status = vm.wait_exit(BOOT);
    assert!(status.success(), "{status}: {}", vm.stderr());
    assert_eq!(cpu_ids(&serial), vec![0, 1, 2, 3], "{serial}");
    let host_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    if host_cpus < 4 {
        assert!(vm.stderr().contains("will time-slice"), "{}", vm.stderr());
    }

    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.contains("Found 4 cpu(s) max supported 4 cpu(s)"),
        "{text}"
    );
    // SeaBIOS ran our table-loader, found the RSDP, followed the XSDT to
    // the FADT ("FACP" = 0x50434146) and parsed the DSDT it points at.
    assert!(text.contains("table(50434146)="), "{text}");
    assert!(text.contains("ACPI: parse DSDT at"), "{text}");
    // The DSDT declares the PS/2 keyboard, so SeaBIOS keeps it.
    assert!(text.contains("PS2 keyboard initialized"), "{text}");
    assert!(!text.contains("no PS/2 keyboard"), "{text}");
}

/// More vCPUs than KVM allows (or than 8-bit APIC ids can name) is refused
/// with a message that says the limit, before any firmware runs.
#[test]
fn more_vcpus_than_kvm_allows_are_refused() {
    if !kvm_available() {
        return;
    }
    let mut domain = Domain::new("huge");
    domain.vcpus = 4096;
    let mut vm = Vm::start(&domain);
    let status = vm.wait_exit(BOOT);
    assert!(!status.success());
    let stderr = vm.stderr();
    assert!(
        stderr.contains("4096 vCPUs requested; KVM on this host allows 1 to "),
        "{stderr}"
    );
    assert!(vm.serial().is_empty(), "{}", vm.serial());
}

#[test]
fn grub_halt_powers_the_vm_off() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let iso = guest::grub_iso(
        dir.path(),
        "serial --unit=0 --speed=115200\n\
         terminal_input --append serial\n\
         terminal_output --append serial\n\
         set timeout=1\n\
         set default=0\n\
         menuentry \"Power off\" { echo halting; halt }\n",
    );
    let mut domain = Domain::new("grub-halt").disk("cdrom", &iso, "hdc", "ide");
    // A reset would start the machine over rather than end the run, so an
    // ending run is a power-off (on_poweroff defaults to destroy).
    domain.on_reboot = "restart";
    let mut vm = Vm::start(&domain);
    vm.wait_for("halting", GRUB);
    let status = vm.wait_exit(BOOT);
    assert!(status.success(), "{status}: {}", vm.stderr());
}
