//! How many full-screen 1024×768 changes per second the console widget
//! shows: an in-process VNC server (Vireo's own, on a unix socket) serves a
//! display that a painter thread fills with a new colour each time the
//! widget has drawn the previous one (both corners read back from the
//! widget's textures after a frame was drawn). That is the whole path —
//! server encoding (Raw), socket, vnc-rs decoding, tile textures, GTK
//! drawing — as a closed loop, so the figure is frames a user would see.
//!
//! Needs an X or Wayland display: `xvfb-run -a cargo run --release
//! --example console_fps -- [SECONDS]`. Prints one line:
//! `console_fps frames_per_second=F frames=N seconds=S batches=B draws=D`.

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gtk::prelude::*;
use vireo::display::input::NoInput;
use vireo::display::{Display, Rect};
use vireo::ui::console::ConsoleView;
use vireo::vnc::{VncConfig, VncServer};

const WIDTH: u32 = 1024;
const HEIGHT: u32 = 768;

/// A colour for frame `k`, different from frame k-1's.
fn colour(k: u32) -> u32 {
    (k.wrapping_mul(0x0009_1d37) ^ 0x0040_8020) & 0x00ff_ffff
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let seconds: f64 = std::env::args()
        .nth(1)
        .map(|s| s.parse())
        .transpose()?
        .unwrap_or(10.0);
    gtk::init()?;
    let dir = tempfile::tempdir()?;
    let socket = dir.path().join("bench.vnc");
    let display = Display::new(WIDTH, HEIGHT);
    let mut config = VncConfig::new("console-fps");
    config.unix = Some(socket.clone());
    let _server = VncServer::start(display.clone(), Arc::new(NoInput), config)?;

    // The painter: frame k is painted once frame k-1 has been shown.
    let painted = Arc::new(AtomicU32::new(0));
    let shown = Arc::new(AtomicU32::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let painter = {
        let (painted, shown, stop) = (painted.clone(), shown.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut k = 0u32;
            while !stop.load(Ordering::Relaxed) {
                k += 1;
                let c = colour(k);
                display.update(|s| {
                    s.pixels.fill(c);
                    vec![Rect::new(0, 0, WIDTH, HEIGHT)]
                });
                painted.store(k, Ordering::Release);
                while shown.load(Ordering::Acquire) < k && !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_micros(200));
                }
            }
        })
    };

    let window = gtk::Window::new();
    window.set_default_size(WIDTH as i32, HEIGHT as i32);
    let view = ConsoleView::new();
    view.set_scale_to_fit(false);
    window.set_child(Some(&view));
    view.connect_vm(&socket);
    window.present();

    let started = std::rc::Rc::new(std::cell::Cell::new(None::<(Instant, u32, u64, u64)>));
    let last_draws = std::cell::Cell::new(0u64);
    {
        let (painted, shown, started) = (painted.clone(), shown.clone(), started.clone());
        view.add_tick_callback(move |view, _| {
            let draws = view.frames_drawn();
            if draws != last_draws.replace(draws) {
                let k = painted.load(Ordering::Acquire);
                let c = colour(k);
                if k > 0
                    && view.pixel_rgb(0, 0) == Some(c)
                    && view.pixel_rgb(WIDTH - 1, HEIGHT - 1) == Some(c)
                {
                    if started.get().is_none() {
                        started.set(Some((Instant::now(), k, view.batches_received(), draws)));
                    }
                    shown.store(k, Ordering::Release);
                }
            }
            gtk::glib::ControlFlow::Continue
        });
    }

    let context = gtk::glib::MainContext::default();
    let deadline = Instant::now() + Duration::from_secs_f64(seconds + 30.0);
    loop {
        context.iteration(true);
        if let Some((t0, k0, b0, d0)) = started.get() {
            let elapsed = t0.elapsed().as_secs_f64();
            if elapsed >= seconds {
                let frames = shown.load(Ordering::Acquire) - k0;
                println!(
                    "console_fps frames_per_second={:.1} frames={frames} seconds={elapsed:.2} batches={} draws={}",
                    f64::from(frames) / elapsed,
                    view.batches_received() - b0,
                    view.frames_drawn() - d0,
                );
                break;
            }
        }
        if Instant::now() > deadline {
            return Err(format!("no frame shown; console state {:?}", view.state()).into());
        }
    }
    stop.store(true, Ordering::Relaxed);
    view.disconnect();
    let _ = painter.join();
    Ok(())
}
