//! KVM tier: tiny guests written here, run as the machine's firmware (no
//! SeaBIOS), observed through their serial output and exit.

mod common;

use std::time::Duration;

use common::asm::firmware;
use common::{guest, kvm_available, Domain, Vm};

const QUICK: Duration = Duration::from_secs(30);

fn run_firmware(name: &str, image: Vec<u8>, configure: impl FnOnce(Domain) -> Domain) -> Vm {
    let scratch = tempfile::tempdir().unwrap();
    let path = guest::write(scratch.path(), "guest.bin", &image);
    let domain = configure(Domain::new(name).firmware(&path));
    let vm = Vm::start(&domain);
    // The VM copied nothing from the scratch dir after start; keep it until
    // the image was read by waiting a moment is unnecessary: the firmware is
    // loaded before the first vCPU runs, but keep the file alive anyway.
    std::mem::forget(scratch);
    vm
}

#[test]
fn serial_output_and_exit_through_reset() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        p.print("hello from a tiny guest\n");
        p.exit();
    });
    let mut vm = run_firmware("hello", image, |d| d);
    vm.wait_for("hello from a tiny guest\n", QUICK);
    let status = vm.wait_exit(QUICK);
    assert!(
        status.success(),
        "on_reboot=destroy ends the run cleanly: {status}\n{}",
        vm.stderr()
    );
    assert_eq!(vm.serial(), "hello from a tiny guest\n");
}

#[test]
fn a_triple_fault_is_reported_as_a_crash() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        p.print("about to crash\n");
        p.triple_fault();
    });
    let mut vm = run_firmware("crash", image, |d| d);
    vm.wait_for("about to crash\n", QUICK);
    let status = vm.wait_exit(QUICK);
    assert!(!status.success());
    let log = vm.stderr();
    assert!(
        log.contains("the guest crashed: vCPU 0 triple-faulted"),
        "{log}"
    );
}

#[test]
fn restart_on_crash_boots_the_firmware_again() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        p.print("boot\n");
        p.triple_fault();
    });
    let mut vm = run_firmware("crash-loop", image, |mut d| {
        d.on_crash = "restart";
        d
    });
    // Each incarnation prints once: three prints prove two restarts.
    let start = std::time::Instant::now();
    while vm.serial().matches("boot\n").count() < 3 {
        assert!(
            start.elapsed() < QUICK,
            "restarts stalled: {:?}",
            vm.serial()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn kvm_internal_errors_stop_the_vm_with_the_facts() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        p.print("jumping into the VGA hole\n");
        // 0xA0000 is MMIO with nothing behind it: KVM cannot fetch
        // instructions from there and gives up with an internal error.
        p.a.db(&[0xea, 0x00, 0x00, 0x00, 0xa0]).unwrap(); // jmp far A000:0000
    });
    let mut vm = run_firmware("internal-error", image, |d| d);
    vm.wait_for("jumping into the VGA hole\n", QUICK);
    let status = vm.wait_exit(QUICK);
    assert!(!status.success());
    let log = vm.stderr();
    assert!(log.contains("KVM could not run it"), "{log}");
    assert!(log.contains("RIP"), "{log}");
    assert!(log.contains("exit reason"), "{log}");
}
