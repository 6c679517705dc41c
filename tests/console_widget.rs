//! The console widget against a real VM, under Xvfb: a guest switches to
//! 1024×768×32 (Bochs VBE), draws known rectangles and polls the keyboard
//! controller, printing each key's make code on COM1. The widget, connected
//! to the VM's VNC unix socket, must follow the resize, hold exactly the
//! screen gvnccapture (a real client, over TCP) sees, draw it, grab the
//! keyboard on a click, pass keys typed by xdotool to the guest as physical
//! keys, let Ctrl+Alt release the grab, and report the VM going away.
//!
//! GTK must own the main thread, so this test has its own `main`
//! (`harness = false` in Cargo.toml).

mod common;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::asm::{fill_rect_32bpp, firmware, unreal_mode_fs, vbe_linear_mode};
use common::vnc::free_display;
use common::{kvm_available, require_program, Domain, Vm};
use gtk::prelude::*;
use iced_x86::code_asm::*;
use vireo::ui::console::{ConsoleState, ConsoleView};

const LFB: u32 = 0xe000_0000;

/// 1024×768×32 with a red 64×64 square at (100, 100), a green row 400 and
/// a blue 10×10 square in the bottom-right corner; then "drawn" on COM1 and
/// the i8042 polled, each make code printed in hex.
fn guest() -> Vec<u8> {
    firmware(|p| {
        let a = &mut p.a;
        vbe_linear_mode(a, LFB, 1024, 768);
        unreal_mode_fs(a);
        for (x, y, w, h, colour) in [
            (100u32, 100u32, 64u32, 64u32, 0x00ff_0000u32),
            (0, 400, 1024, 1, 0x0000_ff00),
            (1014, 758, 10, 10, 0x0000_00ff),
        ] {
            fill_rect_32bpp(a, LFB, 1024, x, y, w, h, colour);
        }
        // The keyboard controller: translation on, interrupts off.
        a.mov(al, 0x60u32).unwrap();
        a.out(0x64u32, al).unwrap();
        a.mov(al, 0x40u32).unwrap();
        a.out(0x60u32, al).unwrap();
        p.print("drawn\n");
        p.print_make_codes_forever();
    })
}

/// An X server of our own; killed on drop.
struct Xvfb {
    child: Child,
    display: String,
}

impl Xvfb {
    fn start() -> Self {
        require_program("Xvfb");
        let first = 100 + std::process::id() % 400;
        let n = (first..first + 200)
            .find(|n| {
                !Path::new(&format!("/tmp/.X{n}-lock")).exists()
                    && !Path::new(&format!("/tmp/.X11-unix/X{n}")).exists()
            })
            .expect("a free X display");
        let display = format!(":{n}");
        let child = Command::new("Xvfb")
            .args([&display, "-screen", "0", "1280x1024x24", "-nolisten", "tcp"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start Xvfb");
        let socket = format!("/tmp/.X11-unix/X{n}");
        let start = Instant::now();
        while !Path::new(&socket).exists() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "Xvfb did not start"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self { child, display }
    }
}

impl Drop for Xvfb {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs GTK's main loop until `done` holds; fails with `what` after `timeout`.
fn pump_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let context = gtk::glib::MainContext::default();
    common::wait::until(what, timeout, Duration::from_millis(5), || {
        if done() {
            return Ok(());
        }
        while context.iteration(false) {}
        Err("not yet".into())
    })
}

/// Runs xdotool while GTK's main loop keeps running.
fn xdotool(display: &str, args: &[&str]) -> String {
    let child = Command::new("xdotool")
        .args(args)
        .env("DISPLAY", display)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run xdotool");
    let output = std::sync::Arc::new(std::sync::Mutex::new(None));
    let slot = output.clone();
    std::thread::spawn(move || {
        *slot.lock().unwrap() = Some(child.wait_with_output());
    });
    pump_until(
        &format!("xdotool {args:?}"),
        Duration::from_secs(30),
        || output.lock().unwrap().is_some(),
    );
    let out = output.lock().unwrap().take().unwrap().unwrap();
    assert!(
        out.status.success(),
        "xdotool {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn rgb_at(fb: &(u32, u32, Vec<u8>), x: u32, y: u32) -> u32 {
    let at = ((y * fb.0 + x) * 3) as usize;
    u32::from_be_bytes([0, fb.2[at], fb.2[at + 1], fb.2[at + 2]])
}

fn main() {
    if !kvm_available() {
        return;
    }
    require_program("xdotool");
    require_program("gvnccapture");
    let xvfb = Xvfb::start();
    std::env::set_var("DISPLAY", &xvfb.display);
    std::env::set_var("GDK_BACKEND", "x11");
    gtk::init().expect("GTK starts on Xvfb");

    let scratch = tempfile::tempdir().unwrap();
    let bios = common::guest::write(scratch.path(), "guest.bin", &guest());
    let socket = scratch.path().join("console.vnc");
    let tcp = free_display();
    let mut vm = Vm::start_with(
        &Domain::new("widget").firmware(&bios),
        &[
            "--vnc-unix",
            socket.to_str().unwrap(),
            "--vnc",
            &format!("127.0.0.1:{tcp}"),
        ],
    );
    vm.wait_for("drawn\n", Duration::from_secs(60));

    let window = gtk::Window::new();
    window.set_title(Some("vireo-console-test"));
    window.set_default_size(800, 600);
    let view = ConsoleView::new();
    window.set_child(Some(&view));
    let states = std::rc::Rc::new(std::cell::RefCell::new(Vec::new()));
    let seen = states.clone();
    view.connect_state_changed(move |state| seen.borrow_mut().push(state));
    view.connect_vm(&socket);
    window.present();

    // The widget follows the guest to 1024×768 and holds its pixels.
    pump_until(
        "the guest's 1024x768 screen",
        Duration::from_secs(30),
        || {
            view.framebuffer_rgb()
                .is_some_and(|fb| fb.0 == 1024 && fb.1 == 768 && rgb_at(&fb, 1023, 767) == 0x0000ff)
        },
    );
    assert_eq!(view.state(), ConsoleState::Connected);
    assert_eq!(
        states.borrow()[..2],
        [ConsoleState::Connecting, ConsoleState::Connected]
    );
    assert_eq!(view.framebuffer_size(), Some((1024, 768)));
    pump_until("a drawn frame", Duration::from_secs(10), || {
        view.frames_drawn() > 0
    });
    let fb = view.framebuffer_rgb().unwrap();
    assert_eq!(rgb_at(&fb, 100, 100), 0xff0000);
    assert_eq!(rgb_at(&fb, 163, 163), 0xff0000);
    assert_eq!(rgb_at(&fb, 164, 163), 0x000000);
    assert_eq!(rgb_at(&fb, 0, 400), 0x00ff00);
    assert_eq!(rgb_at(&fb, 1023, 401), 0x000000);

    // Exactly what an independent client sees. gvnccapture asks for the
    // screen to itself (ClientInit shared = 0), so the server drops the
    // widget, which must come back on its own.
    let before = states.borrow().len();
    let shot = scratch.path().join("gvnc.png");
    let out = Command::new("timeout")
        .args(["30", "gvnccapture", &format!("127.0.0.1:{tcp}")])
        .arg(&shot)
        .env_remove("DISPLAY")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gvnccapture: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let reference = image::open(&shot).unwrap().to_rgb8();
    assert_eq!(reference.dimensions(), (1024, 768));
    let differing = reference
        .as_raw()
        .chunks_exact(3)
        .zip(fb.2.chunks_exact(3))
        .filter(|(a, b)| a != b)
        .count();
    assert_eq!(
        differing, 0,
        "the widget and gvnccapture differ in {differing} pixels"
    );
    pump_until("the widget's reconnection", Duration::from_secs(20), || {
        let states = states.borrow();
        states[before..]
            .iter()
            .any(|s| matches!(s, ConsoleState::Disconnected(_)))
            && states.last() == Some(&ConsoleState::Connected)
    });
    pump_until(
        "the screen after reconnecting",
        Duration::from_secs(20),
        || view.framebuffer_rgb().is_some_and(|again| again == fb),
    );

    // A click grabs the keyboard; keys typed on the host reach the guest as
    // the physical keys (set 1 make codes of A, B and 1).
    let window_id = xdotool(
        &xvfb.display,
        &["search", "--sync", "--name", "vireo-console-test"],
    );
    let window_id = window_id.lines().next().unwrap().trim().to_string();
    xdotool(&xvfb.display, &["windowfocus", "--sync", &window_id]);
    xdotool(
        &xvfb.display,
        &[
            "mousemove",
            "--window",
            &window_id,
            "400",
            "300",
            "click",
            "1",
        ],
    );
    pump_until("the keyboard grab", Duration::from_secs(10), || {
        view.is_grabbed()
    });
    xdotool(&xvfb.display, &["type", "--delay", "150", "ab1"]);
    pump_until(
        "the keys on the guest's serial port",
        Duration::from_secs(30),
        || vm.serial().contains("1e 30 02 "),
    );
    // Ctrl+Alt gives the keyboard back.
    xdotool(&xvfb.display, &["key", "ctrl+alt"]);
    pump_until("the grab's release", Duration::from_secs(10), || {
        !view.is_grabbed()
    });

    // The window's Send Key path: Ctrl+Alt+Del presses 1D 38 D3 (the guest
    // prints the low byte of each make code: E0 53's 53).
    view.send_keys(&[0x1d, 0x38, 0xd3]);
    pump_until(
        "Ctrl+Alt+Del on the guest's serial port",
        Duration::from_secs(30),
        || vm.serial().contains("1d 38 53 "),
    );

    // The VM stops: the widget says so.
    drop(vm);
    pump_until("the Disconnected state", Duration::from_secs(10), || {
        matches!(view.state(), ConsoleState::Disconnected(_))
    });
    view.disconnect();
    window.destroy();
    println!("console_widget: ok");
}
