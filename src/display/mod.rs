//! The guest's screen as the rest of Vireo sees it: a surface of XRGB8888
//! pixels with damage, written by the display device (VGA) and read by
//! every consumer (the VNC server's clients, screenshots).
//!
//! One [`Display`] lives as long as the VM process, across machine resets,
//! so VNC clients stay connected through a reboot. The producer changes the
//! surface under its lock and records which rectangles changed; each
//! consumer remembers the last [`Serial`] it saw and asks what changed
//! since. Consumers that fall too far behind, or that missed a resize, are
//! told to redraw everything.

pub mod input;
pub mod screenshot;

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

/// A change counter: bumped by every update, never reused.
pub type Serial = u64;

/// How many damage records are kept for slow consumers before they are
/// told to redraw everything.
const DAMAGE_HISTORY: usize = 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Rect {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

impl Rect {
    pub fn new(x: u32, y: u32, width: u32, height: u32) -> Self {
        Self {
            x,
            y,
            width,
            height,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.width == 0 || self.height == 0
    }

    /// This rectangle cut to a `width` × `height` surface.
    pub fn clip(&self, width: u32, height: u32) -> Rect {
        let x = self.x.min(width);
        let y = self.y.min(height);
        Rect {
            x,
            y,
            width: self.width.min(width - x),
            height: self.height.min(height - y),
        }
    }

    /// The smallest rectangle holding both.
    pub fn union(&self, other: &Rect) -> Rect {
        if self.is_empty() {
            return *other;
        }
        if other.is_empty() {
            return *self;
        }
        let x = self.x.min(other.x);
        let y = self.y.min(other.y);
        let right = (self.x + self.width).max(other.x + other.width);
        let bottom = (self.y + self.height).max(other.y + other.height);
        Rect::new(x, y, right - x, bottom - y)
    }
}

/// Pixels, row-major, `width` per row, each `0x00RRGGBB`.
#[derive(Clone, PartialEq, Eq)]
pub struct Surface {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u32>,
}

impl Surface {
    pub fn new(width: u32, height: u32) -> Self {
        Self {
            width,
            height,
            pixels: vec![0; width as usize * height as usize],
        }
    }

    pub fn pixel(&self, x: u32, y: u32) -> u32 {
        self.pixels[y as usize * self.width as usize + x as usize]
    }

    pub fn row(&self, y: u32) -> &[u32] {
        let start = y as usize * self.width as usize;
        &self.pixels[start..start + self.width as usize]
    }

    pub fn row_mut(&mut self, y: u32) -> &mut [u32] {
        let start = y as usize * self.width as usize;
        &mut self.pixels[start..start + self.width as usize]
    }
}

impl std::fmt::Debug for Surface {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Surface({}x{})", self.width, self.height)
    }
}

/// What changed since a consumer last looked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Damage {
    /// Nothing.
    None,
    /// These rectangles (already clipped to the surface).
    Rects(Vec<Rect>),
    /// Everything: the consumer is too far behind, or the size changed.
    All,
}

struct State {
    surface: Surface,
    serial: Serial,
    /// Serial of the last resize.
    resized_at: Serial,
    /// (serial, rect) for the last updates, oldest first.
    history: VecDeque<(Serial, Rect)>,
    /// Keyboard LEDs as the guest set them (bit 0 Scroll, 1 Num, 2 Caps).
    leds: u8,
}

/// The shared screen of one VM.
pub struct Display {
    state: Mutex<State>,
    changed: Condvar,
}

/// The size a display starts with before the guest sets a mode (VGA text
/// mode 3 at 9×16 pixels per character).
pub const INITIAL_SIZE: (u32, u32) = (720, 400);

impl Display {
    pub fn new(width: u32, height: u32) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                surface: Surface::new(width, height),
                serial: 1,
                resized_at: 1,
                history: VecDeque::new(),
                leds: 0,
            }),
            changed: Condvar::new(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Producer: changes the size (the new surface is black and entirely damaged).
    pub fn resize(&self, width: u32, height: u32) {
        let mut state = self.lock();
        if state.surface.width == width && state.surface.height == height {
            return;
        }
        state.surface = Surface::new(width, height);
        state.serial += 1;
        state.resized_at = state.serial;
        state.history.clear();
        drop(state);
        self.changed.notify_all();
    }

    /// Producer: lets `draw` change pixels and return the rectangles it
    /// changed; records them as damage and wakes consumers.
    pub fn update(&self, draw: impl FnOnce(&mut Surface) -> Vec<Rect>) {
        let mut state = self.lock();
        let rects = draw(&mut state.surface);
        let (width, height) = (state.surface.width, state.surface.height);
        let mut any = false;
        for rect in rects
            .iter()
            .map(|r| r.clip(width, height))
            .filter(|r| !r.is_empty())
        {
            state.serial += 1;
            let serial = state.serial;
            state.history.push_back((serial, rect));
            any = true;
        }
        while state.history.len() > DAMAGE_HISTORY {
            state.history.pop_front();
        }
        drop(state);
        if any {
            self.changed.notify_all();
        }
    }

    /// The current serial: pass it to [`Display::damage_since`] later.
    pub fn serial(&self) -> Serial {
        self.lock().serial
    }

    /// Consumer: what changed after `since`, and the serial to ask with next time.
    pub fn damage_since(&self, since: Serial) -> (Serial, Damage) {
        let state = self.lock();
        let now = state.serial;
        if since >= now {
            return (now, Damage::None);
        }
        if since < state.resized_at {
            return (now, Damage::All);
        }
        match state.history.front() {
            // Records after `since` were dropped: redraw everything.
            Some(&(oldest, _)) if oldest > since + 1 => (now, Damage::All),
            None => (now, Damage::All),
            _ => {
                let rects = state
                    .history
                    .iter()
                    .filter(|(s, _)| *s > since)
                    .map(|(_, r)| *r)
                    .collect();
                (now, Damage::Rects(rects))
            }
        }
    }

    /// Consumer: runs `read` on the surface under the lock.
    pub fn with_surface<R>(&self, read: impl FnOnce(&Surface) -> R) -> R {
        read(&self.lock().surface)
    }

    /// A copy of the surface (for screenshots).
    pub fn snapshot(&self) -> Surface {
        self.lock().surface.clone()
    }

    /// Serial of the last size change.
    pub fn resized_at(&self) -> Serial {
        self.lock().resized_at
    }

    /// Consumer: waits until something changes after `since`, or `timeout`.
    pub fn wait_for_change(&self, since: Serial, timeout: Duration) -> Serial {
        let state = self.lock();
        let (state, _) = self
            .changed
            .wait_timeout_while(state, timeout, |s| s.serial <= since)
            .unwrap_or_else(|e| e.into_inner());
        state.serial
    }

    pub fn set_leds(&self, leds: u8) {
        let mut state = self.lock();
        if state.leds != leds {
            state.leds = leds;
            state.serial += 1;
            drop(state);
            self.changed.notify_all();
        }
    }

    pub fn leds(&self) -> u8 {
        self.lock().leds
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumers_see_the_damage_since_they_looked() {
        let display = Display::new(64, 32);
        let (seen, damage) = display.damage_since(0);
        assert_eq!(damage, Damage::All, "a new consumer draws everything");
        display.update(|s| {
            s.row_mut(3)[5] = 0xff0000;
            vec![Rect::new(5, 3, 1, 1)]
        });
        display.update(|_| vec![Rect::new(60, 30, 10, 10)]);
        let (next, damage) = display.damage_since(seen);
        assert_eq!(
            damage,
            Damage::Rects(vec![Rect::new(5, 3, 1, 1), Rect::new(60, 30, 4, 2)])
        );
        assert_eq!(display.damage_since(next).1, Damage::None);
        assert_eq!(display.with_surface(|s| s.pixel(5, 3)), 0xff0000);
    }

    #[test]
    fn a_resize_or_a_long_absence_means_redraw_everything() {
        let display = Display::new(8, 8);
        let (seen, _) = display.damage_since(0);
        display.resize(16, 8);
        assert_eq!(display.damage_since(seen).1, Damage::All);
        let (seen, _) = display.damage_since(0);
        for _ in 0..DAMAGE_HISTORY + 5 {
            display.update(|_| vec![Rect::new(0, 0, 1, 1)]);
        }
        assert_eq!(display.damage_since(seen).1, Damage::All);
    }

    #[test]
    fn waiting_returns_on_change() {
        let display = Display::new(4, 4);
        let since = display.serial();
        let d = display.clone();
        let writer = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            d.update(|_| vec![Rect::new(0, 0, 1, 1)]);
        });
        let now = display.wait_for_change(since, Duration::from_secs(5));
        assert!(now > since);
        writer.join().unwrap();
    }

    #[test]
    fn rect_geometry() {
        assert_eq!(Rect::new(5, 5, 10, 10).clip(8, 20), Rect::new(5, 5, 3, 10));
        assert_eq!(Rect::new(30, 5, 10, 10).clip(8, 20), Rect::new(8, 5, 0, 10));
        assert_eq!(
            Rect::new(0, 0, 2, 2).union(&Rect::new(4, 4, 2, 2)),
            Rect::new(0, 0, 6, 6)
        );
    }
}
