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

/// `gvnccapture_tls` succeeded as `what`, and its picture (`shot`) is the
/// guest's screen as `who` saw it; a failure shows both sides' words.
fn assert_captured(out: &std::process::Output, vm: &Vm, shot: &Path, what: &str, who: &str) {
    assert!(
        out.status.success(),
        "{what}: {}{}\nVM: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        vm.stderr()
    );
    assert_guest_screen(shot, who);
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
    let out = gvnccapture_tls(display, &pki.ca(), &shot, None, None);
    assert_captured(&out, &vm, &shot, "gvnccapture over TLS", "gvnccapture");
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
    let out = gvnccapture_tls(display, &pki.ca(), &shot, Some("s3cret"), None);
    assert_captured(
        &out,
        &vm,
        &shot,
        "gvnccapture with the right password",
        "gvnccapture (X509Vnc)",
    );

    let denied = dir.path().join("wrong.png");
    let out = gvnccapture_tls(display, &pki.ca(), &denied, Some("wrong"), None);
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

/// `vnc_tls_x509_verify = 1`: a client must show a certificate the CA
/// signed.
#[test]
fn with_verify_only_a_client_with_a_certificate_gets_in() {
    if !kvm_available() {
        return;
    }
    let pki = TestPki::new();
    let home = pki.home(true);
    let dir = tempfile::tempdir().unwrap();
    let (vm, display) = start(dir.path(), home.path(), None);
    let anonymous = dir.path().join("anonymous.png");
    let out = gvnccapture_tls(display, &pki.ca(), &anonymous, None, None);
    assert!(
        !out.status.success(),
        "a client without a certificate got in"
    );
    assert!(!anonymous.exists());
    let shot = dir.path().join("client.png");
    let out = gvnccapture_tls(display, &pki.ca(), &shot, None, Some(&pki.client()));
    assert_captured(
        &out,
        &vm,
        &shot,
        "gvnccapture with a client certificate",
        "gvnccapture (client certificate)",
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

/// The TCP addresses process `pid` listens on (`/proc/PID/net/tcp*`
/// lines in state LISTEN whose socket inode is one of its fds), IPv4 as
/// `a.b.c.d:port`, IPv6 as the kernel's hex.
fn tcp_listeners(pid: u32) -> Vec<String> {
    let inodes: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .flatten()
        .filter_map(|fd| std::fs::read_link(fd.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            Some(
                target
                    .strip_prefix("socket:[")?
                    .strip_suffix(']')?
                    .to_string(),
            )
        })
        .collect();
    let mut listening = Vec::new();
    for table in ["tcp", "tcp6"] {
        let text = std::fs::read_to_string(format!("/proc/{pid}/net/{table}")).unwrap();
        for line in text.lines().skip(1) {
            let fields: Vec<&str> = line.split_whitespace().collect();
            if fields[3] != "0A" || !inodes.iter().any(|i| i == fields[9]) {
                continue;
            }
            let (ip, port) = fields[1].split_once(':').unwrap();
            let port = u16::from_str_radix(port, 16).unwrap();
            if ip.len() == 8 {
                let ip = u32::from_str_radix(ip, 16).unwrap().to_le_bytes();
                listening.push(format!("{}.{}.{}.{}:{port}", ip[0], ip[1], ip[2], ip[3]));
            } else {
                listening.push(format!("[{ip}]:{port}"));
            }
        }
    }
    listening
}

fn mode(path: &Path) -> u32 {
    std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(path).unwrap().permissions()) & 0o777
}

/// `vireo start` with TLS configured and the sandbox on (the default):
/// the credentials are read before the process is confined, and the
/// confined VNC threads serve TLS. A definition without `<graphics>`
/// gets no TCP listener at all, one with `<graphics listen=…>` exactly
/// that one; the unix socket is 0600 in the 0700 run directory.
#[test]
fn vireo_start_serves_tls_confined_and_listens_only_where_graphics_say() {
    if !kvm_available() {
        return;
    }
    let pki = TestPki::new();
    let home = common::Home::new();
    std::fs::create_dir_all(home.path("config")).unwrap();
    std::fs::copy(
        pki.home(false).path().join("config/vireo.conf"),
        home.path("config/vireo.conf"),
    )
    .unwrap();
    let bios = guest(home.dir.path());
    let define = |name: &str, graphics: &str| {
        let mut domain = Domain::new(name).firmware(&bios);
        if !graphics.is_empty() {
            domain = domain.device(graphics);
        }
        let xml = home.path(&format!("{name}.xml"));
        std::fs::write(&xml, domain.xml()).unwrap();
        home.ok(&["define", xml.to_str().unwrap()]);
    };
    let pid = |name: &str| -> u32 {
        let state = std::fs::read_to_string(home.vm_files(name).state()).unwrap();
        let state: serde_json::Value = serde_json::from_str(&state).unwrap();
        state["pid"].as_u64().unwrap() as u32
    };

    define("headless", "");
    home.ok(&["start", "headless"]);
    assert_eq!(tcp_listeners(pid("headless")), Vec::<String>::new());
    assert_eq!(mode(&home.path("run")), 0o700);
    assert_eq!(mode(home.vm_files("headless").dir()), 0o700);
    assert_eq!(mode(&home.vm_files("headless").vnc()), 0o600);
    home.ok(&["destroy", "headless"]);

    let display = free_display();
    let port = 5900 + display;
    define(
        "shown",
        &format!("<graphics type='vnc' port='{port}' autoport='no' listen='127.0.0.1'/>"),
    );
    home.ok(&["start", "shown"]);
    let pid = pid("shown");
    assert_eq!(tcp_listeners(pid), vec![format!("127.0.0.1:{port}")]);
    assert_eq!(mode(&home.vm_files("shown").vnc()), 0o600);
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.contains("Seccomp:\t2"), "{status}");
    let log = || std::fs::read_to_string(home.path("state/log/shown.log")).unwrap_or_default();
    let shot = home.path("shown.png");
    // The guest draws within a second or so of starting; capture until
    // the picture is there.
    common::wait::until(
        "gvnccapture over TLS to see the guest's picture",
        Duration::from_secs(60),
        Duration::from_millis(500),
        || {
            let out = gvnccapture_tls(display, &pki.ca(), &shot, None, None);
            let drawn = out.status.success()
                && image::open(&shot).is_ok_and(|i| count(&i.to_rgb8(), [255, 0, 0]) == 64 * 64);
            if drawn {
                Ok(())
            } else {
                Err(format!(
                    "gvnccapture: {}{}\nlog: {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr),
                    log()
                ))
            }
        },
    );
    assert!(log().contains("vireo: sandbox: confined"), "{}", log());
    assert_guest_screen(&shot, "gvnccapture (vireo start)");
    home.ok(&["destroy", "shown"]);
}
