//! The graphical console with real firmware and real VNC clients:
//! SeaBIOS and GRUB on the screen as gvnccapture and vncdotool see it
//! (read back by tesseract), keys typed with vncdotool reaching guests,
//! VNC passwords, and two clients at once.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::asm::{boot_sector, firmware};
use common::vnc::{free_display, gvnccapture, ocr, vncdo};
use common::{guest, kvm_available, wait, Domain, Vm};
use iced_x86::code_asm::*;

/// Captures with vncdo until tesseract reads `text`, or fails after `timeout`.
fn wait_for_screen_text(display: u16, dir: &Path, text: &str, timeout: Duration) -> PathBuf {
    let shot = dir.join("vncdo.png");
    wait::until(
        &format!("{text:?} on the screen"),
        timeout,
        Duration::from_secs(2),
        || {
            let out = vncdo(display, None, &["capture", shot.to_str().unwrap()]);
            let seen = ocr(&shot);
            if out.status.success() && seen.contains(text) {
                Ok(shot.clone())
            } else {
                Err(format!("the screen read: {seen}"))
            }
        },
    )
}

fn vnc_args(display: u16) -> Vec<String> {
    vec!["--vnc".into(), format!("127.0.0.1:{display}")]
}

fn start_with_vnc(domain: &Domain, display: u16, extra: &[&str]) -> Vm {
    let mut args: Vec<String> = vnc_args(display);
    args.extend(extra.iter().map(|s| s.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    Vm::start_with(domain, &args)
}

#[test]
fn real_clients_see_the_seabios_banner_and_the_same_screen() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let display = free_display();
    let _vm = start_with_vnc(&Domain::new("banner"), display, &[]);
    wait_for_screen_text(display, dir.path(), "SeaBIOS", Duration::from_secs(120));
    // Once SeaBIOS gives up ("No bootable device"), the screen holds still
    // for a minute: two clients at once must see the same picture.
    wait_for_screen_text(
        display,
        dir.path(),
        "No bootable device",
        Duration::from_secs(120),
    );
    let g = dir.path().join("gvnc.png");
    let v = dir.path().join("both.png");
    let vncdo_thread = {
        let v = v.clone();
        std::thread::spawn(move || vncdo(display, None, &["capture", v.to_str().unwrap()]))
    };
    gvnccapture(display, &g);
    assert!(vncdo_thread.join().unwrap().status.success());
    assert!(
        ocr(&g).contains("SeaBIOS"),
        "gvnccapture's picture: {}",
        ocr(&g)
    );
    let (a, b) = (
        image::open(&g).unwrap().to_rgb8(),
        image::open(&v).unwrap().to_rgb8(),
    );
    assert_eq!(a.dimensions(), (720, 400));
    assert_eq!(b.dimensions(), (720, 400));
    // The text cursor blinks between the two captures; everything else
    // must be identical: at most one 9x16 character cell may differ.
    let differing = a.pixels().zip(b.pixels()).filter(|(p, q)| p != q).count();
    assert!(
        differing <= 9 * 16,
        "gvnccapture and vncdo, connected at once, differ in {differing} pixels"
    );
}

#[test]
fn real_clients_see_the_grub_menu() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let iso = guest::grub_iso(dir.path(), guest::GRUB_SERIAL_MENU);
    let mut domain = Domain::new("grub-vnc").disk("cdrom", &iso, "hdc", "ide");
    domain.memory_mib = 256;
    let display = free_display();
    let mut vm = start_with_vnc(&domain, display, &[]);
    vm.wait_for("Entry two", Duration::from_secs(600));
    wait_for_screen_text(display, dir.path(), "GNU GRUB", Duration::from_secs(60));
    let g = dir.path().join("grub-gvnc.png");
    gvnccapture(display, &g);
    // (The highlighted entry is drawn inverted, which OCR reads poorly;
    // the serial console above already showed both entries.)
    let text = ocr(&g);
    assert!(text.contains("GNU GRUB"), "{text}");
}

#[test]
fn a_password_lets_the_right_client_in_and_keeps_the_wrong_one_out() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let display = free_display();
    let _vm = start_with_vnc(
        &Domain::new("locked"),
        display,
        &["--vnc-password", "s3cret"],
    );
    let shot = dir.path().join("ok.png");
    let start = Instant::now();
    loop {
        let out = vncdo(
            display,
            Some("s3cret"),
            &["capture", shot.to_str().unwrap()],
        );
        if out.status.success() && ocr(&shot).contains("SeaBIOS") {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_secs(2));
    }
    let denied = dir.path().join("denied.png");
    let out = vncdo(
        display,
        Some("wrong"),
        &["capture", denied.to_str().unwrap()],
    );
    assert!(
        !out.status.success() || !denied.exists(),
        "a wrong password must not get the screen"
    );
}

/// `vireo run` serves VNC where the definition's `<graphics type='vnc'
/// port=…>` says, as `vireo start` does, without `--vnc`.
#[test]
fn vireo_run_listens_where_the_definitions_graphics_say() {
    if !kvm_available() {
        return;
    }
    let port = 5900 + free_display();
    let image = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(image.path(), firmware(|p| p.print("up\n"))).unwrap();
    let domain = Domain::new("graphics")
        .firmware(image.path())
        .device(&format!(
            "<graphics type='vnc' port='{port}' autoport='no' listen='127.0.0.1'/>"
        ));
    let mut vm = Vm::start(&domain);
    vm.wait_for("up\n", Duration::from_secs(30));
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_or_else(|e| {
        panic!(
            "no VNC server on port {port} ({e}); stderr: {}",
            vm.stderr()
        )
    });
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut version = [0u8; 12];
    std::io::Read::read_exact(&mut stream, &mut version).unwrap();
    assert_eq!(&version, b"RFB 003.008\n");
    assert!(
        vm.stderr()
            .contains(&format!("VNC server on 127.0.0.1:{port}")),
        "{}",
        vm.stderr()
    );
}

/// A firmware guest that reads the keyboard controller directly: it turns
/// on scancode translation and prints each make code in hex on COM1.
fn i8042_polling_guest() -> Vec<u8> {
    firmware(|p| {
        let a = &mut p.a;
        // Command byte: translation on, interrupts off.
        a.mov(al, 0x60u32).unwrap();
        a.out(0x64u32, al).unwrap();
        a.mov(al, 0x40u32).unwrap();
        a.out(0x60u32, al).unwrap();
        p.print("keyboard ready\n");
        p.print_make_codes_forever();
    })
}

#[test]
fn keys_typed_with_vncdotool_reach_a_guest_polling_the_i8042() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bios = guest::write(dir.path(), "kbd.bin", &i8042_polling_guest());
    let display = free_display();
    let mut vm = start_with_vnc(&Domain::new("kbd").firmware(&bios), display, &[]);
    vm.wait_for("keyboard ready\n", Duration::from_secs(30));
    let out = vncdo(display, None, &["type", "ab1"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Set 1 make codes of a, b and 1.
    vm.wait_for("1e 30 02 ", Duration::from_secs(30));
}

#[test]
fn keys_typed_with_vncdotool_reach_a_guest_reading_int16h_after_seabios() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sector = boot_sector(|p| {
        p.print("int16 ready\n");
        let putc = p.putc;
        let a = &mut p.a;
        let mut next = a.create_label();
        a.set_label(&mut next).unwrap();
        a.xor(ah, ah).unwrap();
        a.int(0x16).unwrap(); // wait for a key: AL = ASCII
        a.call(putc).unwrap();
        a.jmp(next).unwrap();
    });
    let disk = guest::raw_disk(dir.path(), "disk.img", &sector, 1 << 20);
    let display = free_display();
    let mut vm = start_with_vnc(
        &Domain::new("int16").disk("disk", &disk, "hda", "ide"),
        display,
        &[],
    );
    vm.wait_for("int16 ready\n", Duration::from_secs(120));
    let out = vncdo(display, None, &["type", "Hello"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    vm.wait_for("int16 ready\nHello", Duration::from_secs(30));
}
