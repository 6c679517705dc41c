//! The VM lifecycle through the library's handle, as the control socket
//! drives it: pause really stops the guest, resume lets it go on, reset
//! starts the firmware again, quit ends the run. The guest is a tiny
//! firmware image that prints "boot" and then a dot per loop.

mod common;

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::asm::firmware;
use common::{kvm_available, wait, Capture};
use iced_x86::code_asm::*;
use vireo::vmm::{
    ConsoleIo, Outcome, Request, SharedWriter, VmConfig, VmEvent, VmRunner, VmStatus,
};

fn wait_until(what: &str, cond: impl Fn() -> bool) {
    wait::until(
        what,
        Duration::from_secs(30),
        Duration::from_millis(10),
        || cond().then_some(()).ok_or_else(|| "not yet".to_string()),
    )
}

#[test]
fn pause_resume_reset_and_quit() {
    if !kvm_available() {
        return;
    }
    let image = firmware(|p| {
        p.print("boot\n");
        let putc = p.putc;
        let a = &mut p.a;
        let mut again = a.create_label();
        let mut delay = a.create_label();
        a.set_label(&mut again).unwrap();
        a.mov(ecx, 20_000u32).unwrap();
        a.set_label(&mut delay).unwrap();
        a.in_(al, 0x80u32).unwrap(); // an exit per iteration paces the loop
        a.dec(ecx).unwrap();
        a.jnz(delay).unwrap();
        a.mov(al, b'.' as u32).unwrap();
        a.call(putc).unwrap();
        a.jmp(again).unwrap();
    });
    let dir = tempfile::tempdir().unwrap();
    let bios = dir.path().join("guest.bin");
    std::fs::write(&bios, image).unwrap();
    let mut config = VmConfig::new("lifecycle", 32 << 20);
    config.loader = Some(bios);
    let serial = Capture::default();
    let console = ConsoleIo::new(SharedWriter::new(serial.clone()));
    let mut runner = VmRunner::new(config, console);
    let events = Arc::new(Mutex::new(Vec::new()));
    let seen = events.clone();
    runner.on_event(move |e| seen.lock().unwrap().push(e.clone()));
    let handle = runner.handle();
    let interrupted = Arc::new(AtomicBool::new(false));
    let flag = interrupted.clone();
    let thread = std::thread::spawn(move || runner.run(&flag, false));

    wait_until("the first dots", || serial.text().matches('.').count() >= 3);
    handle.request(Request::Pause).unwrap();
    assert_eq!(handle.status(), VmStatus::Paused);
    let frozen = serial.text();
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(serial.text(), frozen, "a paused guest prints nothing");

    handle.request(Request::Resume).unwrap();
    assert_eq!(handle.status(), VmStatus::Running);
    wait_until("more dots after resume", || {
        serial.text().len() > frozen.len() + 2
    });

    handle.request(Request::Reset).unwrap();
    wait_until("a second boot", || {
        serial.text().matches("boot\n").count() == 2
    });
    assert_eq!(handle.status(), VmStatus::Running);

    let refused = handle.request(Request::PowerButton).unwrap_err();
    assert!(refused.contains("destroy"), "{refused}");

    handle.request(Request::Quit).unwrap();
    let outcome = thread.join().unwrap().unwrap();
    assert_eq!(outcome, Outcome::Interrupted);
    assert_eq!(
        *events.lock().unwrap(),
        vec![
            VmEvent::Stop,
            VmEvent::Resume,
            VmEvent::Reset { guest: false },
            VmEvent::Shutdown {
                guest: false,
                reason: "host-qmp-quit"
            },
        ]
    );
}
