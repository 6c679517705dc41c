//! VNC over VeNCrypt/TLS with real clients: `vireo.conf` turns TLS on
//! (`vnc_tls = 1` and a certificate directory made by `openssl` for the
//! test); gvnccapture (gtk-vnc) and TigerVNC's vncviewer (under Xvfb)
//! read a guest's screen through it, with and without a VNC password; a
//! client without TLS (vncdotool, which has no VeNCrypt) and a wrong
//! password are refused.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::asm::{fill_rect_32bpp, firmware, unreal_mode_fs, vbe_linear_mode};
use common::vnc::{free_display, gvnccapture_tls, vncdo, TestPki};
use common::{kvm_available, require_program, Domain, Vm};

const LFB: u32 = 0xe000_0000;

/// 640×480×32: a red 64×64 square at (100, 100) and a blue 10×10 square
/// in the bottom-right corner on black; then "drawn" on COM1, and it
/// halts with the picture on the screen.
fn guest(dir: &Path) -> std::path::PathBuf {
    let image = firmware(|p| {
        let a = &mut p.a;
        vbe_linear_mode(a, LFB, 640, 480);
        unreal_mode_fs(a);
        fill_rect_32bpp(a, LFB, 640, 100, 100, 64, 64, 0x00ff_0000);
        fill_rect_32bpp(a, LFB, 640, 630, 470, 10, 10, 0x0000_00ff);
        p.print("drawn\n");
        let a = &mut p.a;
        a.cli().unwrap();
        let mut spin = a.create_label();
        a.set_label(&mut spin).unwrap();
        a.hlt().unwrap();
        a.jmp(spin).unwrap();
    });
    common::guest::write(dir, "guest.bin", &image)
}

/// Starts the guest with VNC on a free display, TLS per `home`'s
/// `vireo.conf`, and waits until it has drawn.
fn start(dir: &Path, home: &Path, password: Option<&str>) -> (Vm, u16) {
    let display = free_display();
    let bios = guest(dir);
    let mut args = vec!["--vnc".to_string(), format!("127.0.0.1:{display}")];
    if let Some(password) = password {
        args.extend(["--vnc-password".to_string(), password.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let mut vm = Vm::start_with_env(
        &Domain::new("tls").firmware(&bios),
        &args,
        &[("VIREO_HOME", home.to_str().unwrap())],
    );
    vm.wait_for("drawn\n", Duration::from_secs(60));
    (vm, display)
}

/// How many pixels of `image` are exactly `rgb`.
fn count(image: &image::RgbImage, rgb: [u8; 3]) -> usize {
    image.pixels().filter(|p| p.0 == rgb).count()
}

fn assert_guest_screen(file: &Path, who: &str) {
    let shot = image::open(file)
        .unwrap_or_else(|e| panic!("{who}'s picture {}: {e}", file.display()))
        .to_rgb8();
    assert_eq!(shot.dimensions(), (640, 480), "{who}");
    assert_eq!(shot.get_pixel(100, 100).0, [255, 0, 0], "{who}");
    assert_eq!(shot.get_pixel(163, 163).0, [255, 0, 0], "{who}");
    assert_eq!(shot.get_pixel(164, 163).0, [0, 0, 0], "{who}");
    assert_eq!(shot.get_pixel(639, 479).0, [0, 0, 255], "{who}");
    assert_eq!(count(&shot, [255, 0, 0]), 64 * 64, "{who}");
}

#[test]
fn gvnccapture_reads_the_screen_over_vencrypt_x509none() {
    if !kvm_available() {
        return;
    }
    let pki = TestPki::new();
    let home = pki.home(false);
    let dir = tempfile::tempdir().unwrap();
    let (vm, display) = start(dir.path(), home.path(), None);
    let shot = dir.path().join("gvnc.png");
    let out = gvnccapture_tls(display, &pki.ca(), &shot, None);
    assert!(
        out.status.success(),
        "gvnccapture over TLS: {}{}\nVM: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        vm.stderr()
    );
    assert_guest_screen(&shot, "gvnccapture");
}

#[test]
fn gvnccapture_with_a_password_over_tls_and_a_wrong_one_refused() {
    if !kvm_available() {
        return;
    }
    let pki = TestPki::new();
    let home = pki.home(false);
    let dir = tempfile::tempdir().unwrap();
    let (vm, display) = start(dir.path(), home.path(), Some("s3cret"));
    let shot = dir.path().join("right.png");
    let out = gvnccapture_tls(display, &pki.ca(), &shot, Some("s3cret"));
    assert!(
        out.status.success(),
        "gvnccapture with the right password: {}{}\nVM: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        vm.stderr()
    );
    assert_guest_screen(&shot, "gvnccapture (X509Vnc)");

    let denied = dir.path().join("wrong.png");
    let out = gvnccapture_tls(display, &pki.ca(), &denied, Some("wrong"));
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "a wrong password got in: {said}");
    assert!(!denied.exists(), "a wrong password got the screen");
    // gvnccapture says only that; the server says why.
    assert!(said.contains("Unable to connect"), "{said}");
    common::wait::until(
        "the VM's log to name the wrong password",
        Duration::from_secs(10),
        Duration::from_millis(100),
        || {
            let log = vm.stderr();
            if log.contains("VNC: wrong password") {
                Ok(())
            } else {
                Err(log)
            }
        },
    );
}

#[test]
fn clients_without_tls_are_refused_with_a_reason() {
    if !kvm_available() {
        return;
    }
    let pki = TestPki::new();
    let home = pki.home(false);
    let dir = tempfile::tempdir().unwrap();
    let (vm, display) = start(dir.path(), home.path(), None);

    // vncdotool has no VeNCrypt: it is offered only type 19 and gives up.
    let shot = dir.path().join("vncdo.png");
    let out = vncdo(display, None, &["capture", shot.to_str().unwrap()]);
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "vncdotool got in without TLS");
    assert!(!shot.exists(), "vncdotool got the screen without TLS");
    assert!(said.contains("unknown security types: (19,)"), "{said}");

    // A client that insists on security None (RFC 6143 §7.1.2) gets the
    // server's failure reason, as RFB 3.8 carries it.
    let mut stream = TcpStream::connect(("127.0.0.1", 5900 + display)).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut version = [0u8; 12];
    stream.read_exact(&mut version).unwrap();
    stream.write_all(b"RFB 003.008\n").unwrap();
    let mut offer = [0u8; 2];
    stream.read_exact(&mut offer).unwrap();
    assert_eq!(offer, [1, 19], "only VeNCrypt is offered");
    stream.write_all(&[1]).unwrap();
    let mut result = [0u8; 8];
    stream.read_exact(&mut result).unwrap();
    assert_eq!(result[..4], [0, 0, 0, 1], "SecurityResult failed");
    let mut reason = vec![0u8; u32::from_be_bytes(result[4..].try_into().unwrap()) as usize];
    stream.read_exact(&mut reason).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&reason),
        "this server requires TLS: choose VeNCrypt (security type 19)"
    );
    assert!(vm.stderr().is_empty() || !vm.stderr().contains("panicked"));
}

/// TigerVNC's viewer, a second real VeNCrypt client (vncdotool has none:
/// its `SUPPORTED_AUTHS` are None, VNC Authentication and Apple's
/// Diffie-Hellman), shows the guest's screen in an Xvfb window.
#[test]
fn tigervnc_shows_the_screen_over_vencrypt() {
    if !kvm_available() {
        return;
    }
    require_program("vncviewer");
    let pki = TestPki::new();
    let home = pki.home(false);
    let dir = tempfile::tempdir().unwrap();
    let (vm, display) = start(dir.path(), home.path(), None);
    let x = common::desktop::Display::start();
    let viewer_home = tempfile::tempdir().unwrap();
    let log = dir.path().join("vncviewer.log");
    let mut viewer = Command::new("vncviewer")
        .args(["-SecurityTypes", "X509None", "-X509CA"])
        .arg(pki.ca())
        .arg(format!("127.0.0.1::{}", 5900 + display))
        .env("DISPLAY", &x.name)
        .env("HOME", viewer_home.path())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let shot = dir.path().join("screen.png");
    let start = Instant::now();
    let mut red = 0;
    while start.elapsed() < Duration::from_secs(60) {
        std::thread::sleep(Duration::from_secs(1));
        x.screenshot(&shot);
        let screen = image::open(&shot).unwrap().to_rgb8();
        red = count(&screen, [255, 0, 0]);
        if red == 64 * 64 && count(&screen, [0, 0, 255]) == 100 {
            break;
        }
    }
    let _ = viewer.kill();
    let _ = viewer.wait();
    assert_eq!(
        red,
        64 * 64,
        "the red square in TigerVNC's window; vncviewer said: {}\nVM: {}",
        std::fs::read_to_string(&log).unwrap_or_default(),
        vm.stderr()
    );
    let said = std::fs::read_to_string(&log).unwrap_or_default();
    assert!(said.contains("X509None"), "{said}");
}
