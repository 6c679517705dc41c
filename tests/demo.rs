//! The demo VM that `make run` starts: SeaBIOS boots its disk, it draws
//! its splash on the VGA screen (as a VNC client sees it, read back pixel
//! by pixel and by tesseract) and echoes what is typed, on the serial
//! console in capitals and on the screen as typed, whether it comes from
//! the serial console or from keys sent over VNC.

mod common;
// guests/demo.rs names the assembler helpers `crate::asm`.
use common::asm;
#[path = "../guests/demo.rs"]
mod demo_guest;

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::vnc::{free_display, vncdo_ok};
use common::{kvm_available, require_program, wait};
use demo_guest::*;

/// `vireo demo` with its serial console on pipes.
struct Demo {
    child: Child,
    seen: Arc<Mutex<Vec<u8>>>,
    home: tempfile::TempDir,
}

impl Demo {
    fn start(extra_args: &[&str]) -> Self {
        let home = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vireo"))
            .arg("demo")
            .args(extra_args)
            .env("VIREO_HOME", home.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let mut stdout = child.stdout.take().unwrap();
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 256];
            while let Ok(n) = stdout.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self { child, seen, home }
    }

    /// Waits until the serial output holds `text`; returns all of it.
    fn wait_for(&self, text: &str) -> String {
        wait::until(
            &format!("{text:?}"),
            Duration::from_secs(120),
            Duration::from_millis(20),
            || {
                let now = String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned();
                if now.contains(text) {
                    Ok(now)
                } else {
                    Err(format!("serial: {now:?}"))
                }
            },
        )
    }

    fn type_serial(&mut self, text: &[u8]) {
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(text).unwrap();
        stdin.flush().unwrap();
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn the_demo_vm_greets_and_echoes_in_capitals() {
    if !kvm_available() {
        return;
    }
    let mut demo = Demo::start(&[]);
    demo.wait_for("type something, it comes back in capitals.");
    demo.type_serial(b"hello vireo\r");
    demo.wait_for("HELLO VIREO\r\n");
    assert!(
        demo.home.path().join("data/images/demo.img").is_file(),
        "the demo disk lives in the default pool"
    );
}

/// The screen as vncdotool captures it.
fn capture(display: u16, dir: &Path) -> image::RgbImage {
    let shot = dir.join("screen.png");
    vncdo_ok(display, &["capture", shot.to_str().unwrap()]);
    image::open(&shot).unwrap().to_rgb8()
}

/// What tesseract reads in `part` of the screen, scaled up four times
/// (the 8×8 BIOS font is too small for it as it is).
fn ocr(shot: &image::RgbImage, part: (u32, u32, u32, u32), dir: &Path) -> String {
    require_program("tesseract");
    let (x, y, w, h) = part;
    let cut = image::imageops::crop_imm(shot, x, y, w, h).to_image();
    let big = image::imageops::resize(&cut, w * 4, h * 4, image::imageops::FilterType::Nearest);
    let file = dir.join("ocr.png");
    big.save(&file).unwrap();
    let out = Command::new("tesseract")
        .arg(&file)
        .arg("-")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A DAC colour (6-bit components) as the screen shows it (8-bit).
fn rgb8(rgb6: [u8; 3]) -> image::Rgb<u8> {
    image::Rgb(rgb6.map(|v| (v << 2) | (v >> 4)))
}

fn count(shot: &image::RgbImage, colour: image::Rgb<u8>) -> usize {
    shot.pixels().filter(|&&p| p == colour).count()
}

#[test]
fn the_demo_vm_shows_its_splash_and_echoes_keys_typed_over_vnc() {
    if !kvm_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let display = free_display();
    let started = Instant::now();
    let mut demo = Demo::start(&["--vnc", &format!("127.0.0.1:{display}")]);
    // The greeting goes out once the splash is drawn.
    demo.wait_for(GREETING);
    eprintln!(
        "splash drawn {:?} after `vireo demo` started",
        started.elapsed()
    );
    let shot = capture(display, dir.path());

    assert_eq!(shot.dimensions(), (WIDTH as u32, HEIGHT as u32), "mode 13h");
    // The gradient band: its first colour at the top, its last at its
    // bottom, each row one colour where nothing is drawn over it.
    assert_eq!(*shot.get_pixel(0, 0), rgb8(gradient_rgb6(0)));
    assert_eq!(
        *shot.get_pixel(0, BAND_ROWS as u32 - 1),
        rgb8(gradient_rgb6(63))
    );
    assert_eq!(*shot.get_pixel(0, BAND_ROWS as u32), image::Rgb([0, 0, 0]));
    // The bird, the word, their shadow: whole 4×4 blocks of each colour.
    for (name, index) in [("bird", BIRD), ("word", WORD), ("shadow", SHADOW)] {
        let colour = rgb8(FIXED_RGB6[(index - BIRD) as usize]);
        let n = count(&shot, colour);
        assert!(n >= 40 * 16, "{name} colour {colour:?} on {n} pixels only");
    }
    let big_word = ocr(&shot, (100, 20, 200, 96), dir.path());
    assert!(big_word.contains(SPLASH_WORD), "OCR read {big_word:?}");
    let prompt = ocr(&shot, (0, 128, 320, 24), dir.path());
    assert!(
        prompt.contains("Type something"),
        "OCR read {prompt:?} for the prompt"
    );

    // Keys over VNC reach the guest through the i8042 and int 16h: serial
    // echo in capitals, the screen as typed, in the typed-text colour.
    assert_eq!(count(&shot, rgb8(FIXED_RGB6[(TYPED - BIRD) as usize])), 0);
    vncdo_ok(
        display,
        &["type", "hello there", "key", "enter", "type", "wren"],
    );
    demo.wait_for("HELLO THERE\r\nWREN");
    // Serial input shows on the screen too.
    demo.type_serial(b" ok");
    demo.wait_for("WREN OK");
    let shot = capture(display, dir.path());
    assert!(count(&shot, rgb8(FIXED_RGB6[(TYPED - BIRD) as usize])) > 50);
    let typed = ocr(&shot, (0, 148, 320, 52), dir.path());
    assert!(
        typed.contains("hello there") && typed.contains("wren ok"),
        "OCR read {typed:?} for the typed text"
    );
}
