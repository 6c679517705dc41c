//! Linux proves the machine: the test guest of tests/linux/ (a tiny Linux
//! 6.1 with a busybox initramfs) boots directly from its bzImage and from
//! its ELF vmlinux through PVH, finds every vCPU and the IOAPIC in the ACPI
//! tables, keeps time with the host, powers off, reboots and answers the
//! ACPI power button, and survives its own hostile programs; each guest's
//! kernel log must be free of complaints about Vireo's hardware.
//!
//! One booted guest serves several assertions where they read naturally:
//! boots cost half a minute each where guest kernel code is emulated.

mod common;

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::kvm_available;
use common::linux::{dmesg_problems, test_linux, Boot, LinuxGuest, BOOT_TIMEOUT};

/// How the interrupts of `/proc/interrupts` are delivered: the chip column
/// of each numbered line (`IO-APIC`, `XT-PIC`…), by IRQ.
fn interrupt_chips(proc_interrupts: &str) -> Vec<(u32, String)> {
    proc_interrupts
        .lines()
        .filter_map(|line| {
            let (irq, rest) = line.trim_start().split_once(':')?;
            let irq = irq.parse().ok()?;
            let chip = rest
                .split_whitespace()
                .find(|word| word.parse::<u64>().is_err())?;
            Some((irq, chip.to_string()))
        })
        .collect()
}

#[test]
fn bzimage_boots_to_a_shell_on_two_vcpus_with_the_ioapic_and_the_hosts_time() {
    if !kvm_available() {
        return;
    }
    let Some(linux) = test_linux() else { return };
    let mut domain = linux.domain("linux-bz", Boot::BzImage);
    domain.vcpus = 2;
    let mut guest = LinuxGuest::boot(&domain);

    assert_eq!(
        guest.run("echo hello from $(uname -s)"),
        "hello from Linux\n"
    );
    assert_eq!(
        guest.loader_type(),
        0xff,
        "the bzImage's 64-bit entry, as Vireo's loader fills boot_params"
    );
    assert_eq!(guest.run("nproc").trim(), "2", "{}", guest.report());
    let interrupts = guest.run("cat /proc/interrupts");
    let chips = interrupt_chips(&interrupts);
    // The serial port (IRQ 4) and the timer go through the IOAPIC, not
    // the legacy PIC: the MADT was found and used.
    assert!(
        chips
            .iter()
            .any(|(irq, chip)| *irq == 4 && chip == "IO-APIC"),
        "COM1 not routed through the IOAPIC:\n{interrupts}"
    );
    assert!(
        chips.iter().all(|(_, chip)| chip != "XT-PIC"),
        "legacy PIC interrupts:\n{interrupts}"
    );

    // The RTC: Linux's rtc_cmos driver read Vireo's CMOS clock and set the
    // guest's clock from it, which is the host's.
    let log = guest.dmesg();
    assert!(
        log.lines()
            .any(|l| l.contains("rtc_cmos") && l.contains("setting system clock to")),
        "the guest did not set its clock from the RTC:\n{log}"
    );
    let guest_time: u64 = guest.run("date -u +%s").trim().parse().unwrap();
    let host_time = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(
        guest_time.abs_diff(host_time) <= 60,
        "guest clock {guest_time}, host {host_time}"
    );
    // Uptime advances at the wall clock's rate. Each read happens at some
    // moment between sending the command and its answer, so the guest's
    // interval between two reads lies between the host's inner and outer
    // intervals (give or take the clock's 10 ms ticks), however slow the
    // guest answers.
    let uptime = |guest: &mut LinuxGuest| -> (f64, Instant, Instant) {
        let sent = Instant::now();
        let line = guest.run("cat /proc/uptime");
        let seconds = line.split_whitespace().next().unwrap().parse().unwrap();
        (seconds, sent, Instant::now())
    };
    let (first, sent_first, answered_first) = uptime(&mut guest);
    std::thread::sleep(Duration::from_secs(20));
    let (second, sent_second, answered_second) = uptime(&mut guest);
    let guest_interval = second - first;
    let inner = (sent_second - answered_first).as_secs_f64();
    let outer = (answered_second - sent_first).as_secs_f64();
    assert!(
        (inner - 0.05..=outer + 0.05).contains(&guest_interval),
        "the guest's uptime advanced {guest_interval:.2} s while the host's clock \
         advanced between {inner:.2} and {outer:.2} s"
    );

    guest.check_dmesg();
}

#[test]
fn dmesg_problems_are_found_and_allowed_lines_pass() {
    let log = "<6>[    0.000000] Linux version 6.1.0\n\
               <4>[    0.100000] x86/cpu: Clearing CPUID bits: smap\n\
               <6>[    0.200000] virtio_blk virtio0: [vda] 2048 512-byte logical blocks\n\
               <3>[    1.000000] ata1: lost interrupt (Status 0x58)\n\
               <6>[    1.500000] virtio-pci 0000:00:05.0: probe with driver virtio-pci failed with error -22\n\
               <4>[    2.000000] WARNING: CPU: 0 PID: 1 at drivers/base/core.c:1 foo\n\
               <6>[    2.000001] Call Trace:\n";
    let problems = dmesg_problems(log);
    assert_eq!(problems.len(), 4, "{problems:#?}");
    assert!(problems[0].contains("lost interrupt"));
    assert!(problems[1].contains("failed with error"));
    assert!(problems[3].contains("Call Trace"));
}

#[test]
fn pvh_vmlinux_boots_on_four_vcpus_reboots_and_powers_off() {
    if !kvm_available() {
        return;
    }
    let Some(linux) = test_linux() else { return };
    let mut domain = linux.domain("linux-pvh", Boot::Pvh);
    domain.vcpus = 4;
    domain.on_reboot = "restart";
    let mut guest = LinuxGuest::boot(&domain);

    assert_eq!(guest.run("nproc").trim(), "4", "{}", guest.report());
    let interrupts = guest.run("cat /proc/interrupts");
    // One column of counts per CPU, and the IOAPIC routing.
    let header = interrupts.lines().next().unwrap_or("");
    assert_eq!(header.split_whitespace().count(), 4, "{interrupts}");
    assert!(
        interrupt_chips(&interrupts)
            .iter()
            .any(|(irq, chip)| *irq == 4 && chip == "IO-APIC"),
        "{interrupts}"
    );
    // The kernel came in through the PVH entry, which fills boot_params
    // itself and names QEMU (0xB) as the loader of a non-Xen PVH guest.
    assert_eq!(guest.loader_type(), 0xb0);
    guest.check_dmesg();

    // `reboot`: busybox init ends everything, the kernel resets the
    // machine through the FADT's reset register, and on_reboot=restart
    // boots the kernel again.
    let boots = guest.serial().matches("Linux version").count();
    guest.type_line("reboot");
    guest.wait_for("reboot: Restarting system", BOOT_TIMEOUT);
    guest.wait_boot();
    assert_eq!(
        guest.serial().matches("Linux version").count(),
        boots + 1,
        "{}",
        guest.report()
    );
    assert_eq!(guest.run("nproc").trim(), "4");

    // `poweroff`: ACPI S5, and on_poweroff=destroy ends `vireo run`.
    guest.type_line("poweroff");
    guest.wait_for("reboot: Power down", BOOT_TIMEOUT);
    let status = guest.wait_exit(Duration::from_secs(60));
    assert!(status.success(), "{status}\n{}", guest.report());
}

/// The I/O ports of Vireo's own (user-space) devices that a hostile guest
/// program fills with random bytes, as `start:count`: both IDE channels,
/// the Bochs VBE and VGA registers, fw_cfg's selector and data, the debug
/// console, the POST port, the RTC. Left out are the ports whose purpose is
/// to reset or power off the machine (0x64, 0x92, 0xCF9, the ACPI PM block,
/// APM control) or that carry the console (COM1) — random bytes there end
/// or blind the VM by design — and the in-kernel PIC and PIT.
const HOSTILE_PORTS: &str =
    "0x1f0:8 0x3f6:1 0x170:8 0x376:1 0x1ce:2 0x3c0:32 0x510:2 0x402:1 0x80:1 0x70:2";

#[test]
fn a_hostile_guest_does_not_bring_the_vmm_down_and_the_power_button_still_works() {
    if !kvm_available() {
        return;
    }
    let Some(linux) = test_linux() else { return };
    let dir = tempfile::tempdir().unwrap();
    let disk = common::guest::raw_disk(dir.path(), "scratch.img", &[], 1 << 20);
    let domain = linux
        .domain("linux-hostile", Boot::BzImage)
        .disk("disk", &disk, "vda", "virtio");
    let mut guest = LinuxGuest::start_defined(&domain);

    // Random bytes to every port of HOSTILE_PORTS, three times over (each
    // `dd` is a process start, seconds of emulated kernel on a busy host).
    guest.run_timeout(
        &format!(
            "for i in 1 2 3; do for r in {HOSTILE_PORTS}; do \
             dd if=/dev/urandom of=/dev/port bs=1 seek=$((${{r%:*}})) count=${{r#*:}} 2>/dev/null; \
             done; done"
        ),
        Duration::from_secs(300),
    );
    // Random bytes over the virtio disk's registers (common and device
    // configuration, ISR, notifications: its BAR 4), through /dev/mem.
    let device = guest
        .run("for d in /sys/bus/pci/devices/*; do [ $(cat $d/vendor) = 0x1af4 ] && echo $d; done")
        .trim()
        .to_string();
    assert!(!device.is_empty(), "no virtio device in the guest");
    let resources = guest.run(&format!("cat {device}/resource"));
    let bar4 = resources.lines().nth(4).unwrap_or("");
    let mut fields = bar4.split_whitespace();
    let parse = |f: Option<&str>| {
        u64::from_str_radix(f.unwrap_or("0x0").trim_start_matches("0x"), 16).unwrap()
    };
    let (start, end) = (parse(fields.next()), parse(fields.next()));
    assert!(start > 0 && end > start, "BAR 4 of {device}: {resources}");
    let pages = (end + 1 - start) / 4096;
    guest.run_timeout(
        &format!(
            "for i in 1 2 3; do dd if=/dev/urandom of=/dev/mem bs=4096 seek={} count={pages} 2>/dev/null; done; true",
            start / 4096
        ),
        Duration::from_secs(300),
    );
    // And over the VGA card's PCI configuration space (its BARs move).
    guest.run_timeout(
        "for i in 1 2 3; do dd if=/dev/urandom of=/sys/bus/pci/devices/0000:00:02.0/config bs=1 seek=4 count=60 2>/dev/null; done; true",
        Duration::from_secs(300),
    );

    // The VM is still there and its guest still answers.
    assert_eq!(guest.run("echo still here"), "still here\n");
    let (home, name) = guest.home();
    assert_eq!(home.ok(&["domstate", name]).trim(), "running");

    // The ACPI power button reaches busybox acpid, which powers off.
    let (home, name) = guest.home();
    let name = name.to_string();
    home.ok(&["shutdown", &name]);
    guest.wait_for("VIREO-POWER-BUTTON", BOOT_TIMEOUT);
    guest.wait_for("reboot: Power down", BOOT_TIMEOUT);
    let (home, _) = guest.home();
    home.wait_until(&["domstate", &name], Duration::from_secs(60), |s| {
        s.trim() == "shut off"
    });
}
