//! One connected, initialised client: its pixel format, encodings,
//! pseudo-encodings, dirty map and the two threads that serve it.
//!
//! - The *reader* (the client's own thread) parses client messages
//!   (RFC 6143 §7.5), applies input at once and records update requests.
//! - The *sender* waits until the client has asked for an update and
//!   something it asked about changed, then copies those pixels from the
//!   display, converts and encodes them and writes the update.
//!
//! Throttling: the sender encodes the next update only after the previous
//! one was accepted by the socket, so what a client has not yet read is
//! bounded by the kernel's send buffer plus one update. While a slow
//! client catches up, damage merely accumulates in its fixed-size dirty
//! map (16×16-pixel blocks, as in QEMU). A client that reads nothing for
//! the write timeout is disconnected.

use std::collections::HashSet;
use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

use flate2::Compress;

use super::pixel::{Block, Converter};
use super::protocol::{
    encoding, ClientMessage, PixelFormat, RectHeader, Screen, ScreenLayout, UpdateHeader,
};
use super::tight::TightStreams;
use super::{hextile, raw, tight, zlib, zrle};
use crate::display::input::InputSink;
use crate::display::{Damage, Display, Rect, Serial};
use crate::keys::keysym;

/// A client's socket, TCP or unix.
pub enum Connection {
    Tcp(TcpStream),
    Unix(UnixStream),
}

impl Connection {
    pub fn try_clone(&self) -> io::Result<Connection> {
        Ok(match self {
            Self::Tcp(s) => Self::Tcp(s.try_clone()?),
            Self::Unix(s) => Self::Unix(s.try_clone()?),
        })
    }

    /// Ends both directions, waking the client's threads.
    pub fn shutdown(&self) {
        let _ = match self {
            Self::Tcp(s) => s.shutdown(Shutdown::Both),
            Self::Unix(s) => s.shutdown(Shutdown::Both),
        };
    }

    pub fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_read_timeout(timeout),
            Self::Unix(s) => s.set_read_timeout(timeout),
        }
    }

    pub fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        match self {
            Self::Tcp(s) => s.set_write_timeout(timeout),
            Self::Unix(s) => s.set_write_timeout(timeout),
        }
    }

    /// Whether this is a TCP connection (which TLS, when configured, guards).
    pub fn is_tcp(&self) -> bool {
        matches!(self, Self::Tcp(_))
    }

    /// Who is connecting, for the login rate limit: the peer's address
    /// for TCP; every unix-socket client counts as one source.
    pub fn source(&self) -> String {
        match self {
            Self::Tcp(s) => s
                .peer_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|_| "tcp".into()),
            Self::Unix(_) => "unix".into(),
        }
    }
}

impl Read for Connection {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.read(buf),
            Self::Unix(s) => s.read(buf),
        }
    }
}

impl Write for Connection {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Tcp(s) => s.write(buf),
            Self::Unix(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Side of a dirty-map block in pixels.
const BLOCK: u32 = 16;
/// More rectangles than this in one update are sent as their bounding box.
const MAX_RECTS: usize = 4096;

/// Which 16×16 blocks of the client's framebuffer it has not seen yet.
pub(crate) struct DirtyMap {
    width: u32,
    height: u32,
    cols: u32,
    dirty: Vec<bool>,
}

impl DirtyMap {
    pub fn new(width: u32, height: u32) -> Self {
        let cols = width.div_ceil(BLOCK);
        let rows = height.div_ceil(BLOCK);
        Self {
            width,
            height,
            cols,
            dirty: vec![false; cols as usize * rows as usize],
        }
    }

    /// The blocks `rect` touches, as (first column, end column, first row, end row).
    fn span(&self, rect: Rect) -> Option<(u32, u32, u32, u32)> {
        let r = rect.clip(self.width, self.height);
        if r.is_empty() {
            return None;
        }
        Some((
            r.x / BLOCK,
            (r.x + r.width).div_ceil(BLOCK),
            r.y / BLOCK,
            (r.y + r.height).div_ceil(BLOCK),
        ))
    }

    pub fn mark(&mut self, rect: Rect) {
        if let Some((c0, c1, r0, r1)) = self.span(rect) {
            for row in r0..r1 {
                let start = (row * self.cols) as usize;
                self.dirty[start + c0 as usize..start + c1 as usize].fill(true);
            }
        }
    }

    pub fn mark_all(&mut self) {
        self.dirty.fill(true);
    }

    /// Takes the dirty blocks that touch `region`, merged into rectangles
    /// (runs within a row, stacked while the runs line up), in pixels.
    pub fn take(&mut self, region: Rect) -> Vec<Rect> {
        let Some((c0, c1, r0, r1)) = self.span(region) else {
            return Vec::new();
        };
        // (first col, end col, first row, rows): rectangles still growing.
        let mut open: Vec<(u32, u32, u32, u32)> = Vec::new();
        let mut done = Vec::new();
        for row in r0..r1 {
            let mut runs = Vec::new();
            let mut col = c0;
            while col < c1 {
                let i = (row * self.cols + col) as usize;
                if !self.dirty[i] {
                    col += 1;
                    continue;
                }
                let start = col;
                while col < c1 && self.dirty[(row * self.cols + col) as usize] {
                    self.dirty[(row * self.cols + col) as usize] = false;
                    col += 1;
                }
                runs.push((start, col));
            }
            let mut next = Vec::new();
            for (start, end) in runs {
                match open.iter().position(|o| o.0 == start && o.1 == end) {
                    Some(i) => {
                        let mut o = open.swap_remove(i);
                        o.3 += 1;
                        next.push(o);
                    }
                    None => next.push((start, end, row, 1)),
                }
            }
            done.append(&mut open);
            open = next;
        }
        done.append(&mut open);
        let rects: Vec<Rect> = done
            .into_iter()
            .map(|(c0, c1, r0, rows)| {
                Rect::new(c0 * BLOCK, r0 * BLOCK, (c1 - c0) * BLOCK, rows * BLOCK)
                    .clip(self.width, self.height)
            })
            .collect();
        if rects.len() > MAX_RECTS {
            return vec![rects.iter().fold(Rect::default(), |u, r| u.union(r))];
        }
        rects
    }
}

/// What the sender must put into the next update besides pixels.
#[derive(Default)]
struct Pending {
    /// The framebuffer changed size: DesktopSize or ExtendedDesktopSize.
    resize: bool,
    /// Tell a client that announced ExtendedDesktopSize the layout.
    layout: bool,
    /// Answer a SetDesktopSize with this status (rfbproto: 1 = prohibited).
    layout_reply: Option<u32>,
    /// Acknowledge QEMU Extended Key Event support.
    extended_keys: bool,
}

/// A client's state, shared by its reader and sender.
struct State {
    converter: Arc<Converter>,
    /// The encoding pixel rectangles use: the client's favourite we have.
    encoding: i32,
    desktop_size: bool,
    extended_desktop_size: bool,
    leds: bool,
    /// The LED state last sent (None: never, or the client asked anew).
    leds_sent: Option<u8>,
    pending: Pending,
    /// The framebuffer size the client knows.
    width: u32,
    height: u32,
    dirty: DirtyMap,
    /// The display serial whose damage is in `dirty`.
    seen: Serial,
    /// The area of outstanding update requests (None: none outstanding).
    requested: Option<Rect>,
    /// A non-incremental request must be answered even if nothing changed.
    must_reply: bool,
    closed: bool,
}

/// The part of a client the server's other threads reach: its state and
/// the condition its sender sleeps on.
pub struct ClientShared {
    state: Mutex<State>,
    wake: Condvar,
}

impl ClientShared {
    pub fn new(width: u32, height: u32) -> Arc<Self> {
        Arc::new(Self {
            state: Mutex::new(State {
                converter: Arc::new(Converter::new(PixelFormat::native())),
                encoding: encoding::RAW,
                desktop_size: false,
                extended_desktop_size: false,
                leds: false,
                leds_sent: None,
                pending: Pending::default(),
                width,
                height,
                dirty: DirtyMap::new(width, height),
                // Serial 0 is before everything: the first look sees it all.
                seen: 0,
                requested: None,
                must_reply: false,
                closed: false,
            }),
            wake: Condvar::new(),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Wakes the sender to look at the display again. Taking the lock
    /// first means a sender between its check and its wait cannot miss it.
    pub fn poke(&self) {
        drop(self.lock());
        self.wake.notify_all();
    }

    /// Marks the client closed and wakes its sender.
    pub fn close(&self) {
        self.lock().closed = true;
        self.wake.notify_all();
    }

    pub fn is_closed(&self) -> bool {
        self.lock().closed
    }
}

/// The encodings we can send pixels in.
const PIXEL_ENCODINGS: [i32; 5] = [
    encoding::RAW,
    encoding::HEXTILE,
    encoding::ZLIB,
    encoding::ZRLE,
    encoding::TIGHT,
];

fn malformed(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message)
}

/// The reader: handles client messages until the connection ends or a
/// message is malformed. Keys still held when it ends are released.
pub fn read_messages(
    reader: &mut impl Read,
    shared: &ClientShared,
    input: &dyn InputSink,
) -> io::Result<()> {
    let mut held: HashSet<u16> = HashSet::new();
    let result = (|| loop {
        let message = ClientMessage::read_from(reader)?;
        handle(message, shared, input, &mut held)?;
    })();
    for qnum in held {
        input.key(qnum, false);
    }
    result
}

fn handle(
    message: ClientMessage,
    shared: &ClientShared,
    input: &dyn InputSink,
    held: &mut HashSet<u16>,
) -> io::Result<()> {
    const SHIFT: u16 = 0x2a;
    const SHIFT_R: u16 = 0x36;
    let shift_held = held.contains(&SHIFT) || held.contains(&SHIFT_R);
    let mut key = |qnum: Option<u16>, down: bool, keysym: u32| match qnum {
        Some(qnum) => {
            if down {
                held.insert(qnum);
            } else {
                held.remove(&qnum);
            }
            input.key(qnum, down);
        }
        None => tracing::debug!(
            keysym = format_args!("{keysym:#x}"),
            "VNC: no key for keysym"
        ),
    };
    match message {
        ClientMessage::SetPixelFormat(format) => {
            format
                .check()
                .map_err(|why| malformed(format!("unusable pixel format: {why}")))?;
            let mut state = shared.lock();
            state.converter = Arc::new(Converter::new(format));
            // Pixels in flight were in the old format: send all again.
            state.dirty.mark_all();
        }
        ClientMessage::SetEncodings(list) => {
            let mut state = shared.lock();
            state.encoding = list
                .iter()
                .copied()
                .find(|e| PIXEL_ENCODINGS.contains(e))
                .unwrap_or(encoding::RAW);
            state.desktop_size = list.contains(&encoding::DESKTOP_SIZE);
            state.extended_desktop_size = list.contains(&encoding::EXTENDED_DESKTOP_SIZE);
            state.pending.layout = state.extended_desktop_size;
            state.pending.extended_keys = list.contains(&encoding::QEMU_EXTENDED_KEY_EVENT);
            state.leds = list.contains(&encoding::QEMU_LED_STATE);
            state.leds_sent = None;
            tracing::debug!(encoding = state.encoding, ?list, "VNC: client encodings");
            drop(state);
            shared.wake.notify_all();
        }
        ClientMessage::FramebufferUpdateRequest {
            incremental,
            x,
            y,
            width,
            height,
        } => {
            let mut state = shared.lock();
            let rect = Rect::new(x.into(), y.into(), width.into(), height.into())
                .clip(state.width, state.height);
            if !incremental {
                state.dirty.mark(rect);
                state.must_reply = true;
            }
            state.requested = Some(match state.requested {
                Some(r) => r.union(&rect),
                None => rect,
            });
            drop(state);
            shared.wake.notify_all();
        }
        ClientMessage::KeyEvent { down, keysym } => {
            // A client that sends a shifted symbol ('H', '!') without
            // pressing Shift itself (vncdotool does) gets Shift pressed
            // around the key press, as QEMU's server does, so the guest
            // sees the character the user meant.
            let implicit_shift = down && keysym::needs_shift(keysym) && !shift_held;
            if implicit_shift {
                input.key(SHIFT, true);
            }
            key(keysym::to_qnum(keysym), down, keysym);
            if implicit_shift {
                input.key(SHIFT, false);
            }
        }
        ClientMessage::QemuExtendedKeyEvent { down, keysym, qnum } => {
            // The client knows the physical key: trust it over the layout table.
            let qnum = match u16::try_from(qnum) {
                Ok(0) | Err(_) => keysym::to_qnum(keysym),
                Ok(q) => Some(q),
            };
            key(qnum, down, keysym)
        }
        ClientMessage::PointerEvent { buttons, x, y } => {
            let (width, height) = {
                let state = shared.lock();
                (state.width, state.height)
            };
            let x = u32::from(x).min(width.saturating_sub(1));
            let y = u32::from(y).min(height.saturating_sub(1));
            input.pointer(x, y, buttons);
        }
        ClientMessage::ClientCutText(text) => {
            tracing::debug!(bytes = text.len(), "VNC: client cut text ignored");
        }
        ClientMessage::SetDesktopSize { width, height, .. } => {
            // The guest decides its resolution; a viewer cannot. Say so,
            // unless it asked for the size it already has.
            let mut state = shared.lock();
            let same = u32::from(width) == state.width && u32::from(height) == state.height;
            state.pending.layout_reply = Some(if same { 0 } else { 1 });
            drop(state);
            shared.wake.notify_all();
        }
    }
    Ok(())
}

/// One update, decided under the client's lock and built outside it.
struct Plan {
    converter: Arc<Converter>,
    encoding: i32,
    width: u32,
    height: u32,
    /// Pseudo-rectangles, already encoded (header and payload).
    pseudo: Vec<u8>,
    pseudo_count: u16,
    rects: Vec<Rect>,
}

fn layout(width: u32, height: u32) -> ScreenLayout {
    ScreenLayout {
        screens: vec![Screen {
            id: 0,
            x: 0,
            y: 0,
            width: width as u16,
            height: height as u16,
            flags: 0,
        }],
    }
}

/// An ExtendedDesktopSize rectangle: `reason` in x (0 server, 1 this
/// client), `status` in y.
fn put_layout(out: &mut Vec<u8>, reason: u16, status: u16, width: u32, height: u32) {
    let header = RectHeader {
        x: reason,
        y: status,
        width: width as u16,
        height: height as u16,
        encoding: encoding::EXTENDED_DESKTOP_SIZE,
    };
    let _ = header.write_to(out);
    let _ = layout(width, height).write_to(out);
}

impl State {
    /// Folds the display's new damage (and size, and LEDs) into this
    /// client's state; returns the next update if one is due.
    fn plan(&mut self, display: &Display) -> Option<Plan> {
        let (serial, damage) = display.damage_since(self.seen);
        self.seen = serial;
        match damage {
            Damage::None => {}
            Damage::All => self.dirty.mark_all(),
            Damage::Rects(rects) => rects.iter().for_each(|r| self.dirty.mark(*r)),
        }
        let (width, height) = display.with_surface(|s| (s.width, s.height));
        if (width, height) != (self.width, self.height)
            && (self.desktop_size || self.extended_desktop_size)
        {
            self.pending.resize = true;
        }
        let requested = self.requested?;
        let mut pseudo = Vec::new();
        let mut count = 0u16;
        let mut region = requested;
        if std::mem::take(&mut self.pending.resize) {
            // RFC 6143 §7.8.2: the client's framebuffer takes the new
            // size at this rectangle; all of it follows in this update.
            self.width = width;
            self.height = height;
            self.dirty = DirtyMap::new(width, height);
            self.dirty.mark_all();
            region = Rect::new(0, 0, width, height);
            if self.extended_desktop_size {
                put_layout(&mut pseudo, 0, 0, width, height);
            } else {
                let _ = RectHeader {
                    x: 0,
                    y: 0,
                    width: width as u16,
                    height: height as u16,
                    encoding: encoding::DESKTOP_SIZE,
                }
                .write_to(&mut pseudo);
            }
            count += 1;
            self.pending.layout = false;
        }
        if std::mem::take(&mut self.pending.layout) {
            put_layout(&mut pseudo, 0, 0, self.width, self.height);
            count += 1;
        }
        if let Some(status) = self.pending.layout_reply.take() {
            if self.extended_desktop_size {
                put_layout(&mut pseudo, 1, status as u16, self.width, self.height);
                count += 1;
            }
        }
        if std::mem::take(&mut self.pending.extended_keys) {
            let _ = RectHeader {
                x: 0,
                y: 0,
                width: 0,
                height: 0,
                encoding: encoding::QEMU_EXTENDED_KEY_EVENT,
            }
            .write_to(&mut pseudo);
            count += 1;
        }
        let leds = display.leds();
        if self.leds && self.leds_sent != Some(leds) {
            let _ = RectHeader {
                x: 0,
                y: 0,
                width: 0,
                height: 0,
                encoding: encoding::QEMU_LED_STATE,
            }
            .write_to(&mut pseudo);
            // Bit 0 Scroll, 1 Num, 2 Caps: the display keeps the same order.
            pseudo.push(leds & 7);
            self.leds_sent = Some(leds);
            count += 1;
        }
        let rects = self.dirty.take(region);
        if rects.is_empty() && count == 0 && !self.must_reply {
            return None;
        }
        self.requested = None;
        self.must_reply = false;
        Some(Plan {
            converter: self.converter.clone(),
            encoding: self.encoding,
            width: self.width,
            height: self.height,
            pseudo,
            pseudo_count: count,
            rects,
        })
    }
}

/// The per-client compression state that must persist across updates.
pub struct Encoders {
    zlib: Compress,
    zrle: Compress,
    tight: TightStreams,
}

impl Default for Encoders {
    fn default() -> Self {
        Self {
            zlib: zlib::new_stream(),
            zrle: zlib::new_stream(),
            tight: TightStreams::default(),
        }
    }
}

impl Encoders {
    /// Appends rectangles (header and data) for `block` at (`x`, `y`);
    /// returns how many. Tight's size limits split the block.
    fn encode(
        &mut self,
        encoding: i32,
        format: &PixelFormat,
        block: Block,
        x: u32,
        y: u32,
        out: &mut Vec<u8>,
    ) -> io::Result<u16> {
        let (max_width, max_area) = if encoding == encoding::TIGHT {
            (tight::MAX_WIDTH, tight::MAX_AREA)
        } else {
            (usize::MAX, usize::MAX)
        };
        let piece_width = block.width.min(max_width).max(1);
        let piece_height = (max_area / piece_width).clamp(1, block.height.max(1));
        let mut count = 0;
        for (px, py, piece) in pieces(block, piece_width, piece_height) {
            let header = RectHeader {
                x: (x as usize + px) as u16,
                y: (y as usize + py) as u16,
                width: piece.width as u16,
                height: piece.height as u16,
                encoding,
            };
            header.write_to(out)?;
            match encoding {
                encoding::HEXTILE => hextile::encode(piece, format, out),
                encoding::ZLIB => zlib::encode(piece, format, &mut self.zlib, out)?,
                encoding::ZRLE => zrle::encode(piece, format, &mut self.zrle, out)?,
                encoding::TIGHT => tight::encode(piece, format, &mut self.tight, out)?,
                _ => raw::encode(piece, format, out),
            }
            count += 1;
        }
        Ok(count)
    }
}

/// `block` cut into pieces of at most `width` × `height`.
fn pieces(block: Block, width: usize, height: usize) -> Vec<(usize, usize, Block)> {
    let mut out = Vec::new();
    for y in (0..block.height).step_by(height) {
        for x in (0..block.width).step_by(width) {
            let w = width.min(block.width - x);
            let h = height.min(block.height - y);
            out.push((x, y, block.sub(x, y, w, h)));
        }
    }
    out
}

/// Builds the FramebufferUpdate for `plan` from the display's pixels.
fn build_update(plan: &Plan, display: &Display, encoders: &mut Encoders) -> io::Result<Vec<u8>> {
    // Copy the pixels under the display lock, convert and encode after.
    let mut pixels: Vec<Vec<u32>> = display.with_surface(|surface| {
        plan.rects
            .iter()
            .map(|r| {
                let mut data = vec![0u32; r.width as usize * r.height as usize];
                // The surface may have changed size since the plan: what
                // it no longer has stays black until the next update.
                let visible = r.clip(surface.width, surface.height);
                for y in visible.y..visible.y + visible.height {
                    let src = &surface.row(y)[visible.x as usize..][..visible.width as usize];
                    let dst = ((y - r.y) * r.width) as usize;
                    data[dst..dst + visible.width as usize].copy_from_slice(src);
                }
                data
            })
            .collect()
    });
    let converter = &plan.converter;
    let format = converter.format;
    let mut out = Vec::new();
    UpdateHeader { rects: 0 }.write_to(&mut out)?;
    out.extend_from_slice(&plan.pseudo);
    let mut count = u32::from(plan.pseudo_count);
    for (rect, data) in plan.rects.iter().zip(pixels.iter_mut()) {
        let rect = rect.clip(plan.width, plan.height);
        if rect.is_empty() {
            continue;
        }
        for p in data.iter_mut() {
            *p = converter.convert(*p);
        }
        let block = Block::new(data, rect.width as usize, rect.height as usize);
        count +=
            u32::from(encoders.encode(plan.encoding, &format, block, rect.x, rect.y, &mut out)?);
    }
    let count = u16::try_from(count).map_err(|_| malformed("update too large".into()))?;
    out[2..4].copy_from_slice(&count.to_be_bytes());
    Ok(out)
}

/// How long the sender sleeps without news before looking anyway.
const IDLE_RECHECK: Duration = Duration::from_secs(1);

/// The sender: writes updates until the client closes or a write fails
/// (including the write timeout of a client that stopped reading).
pub fn send_updates(
    writer: &mut impl Write,
    shared: &ClientShared,
    display: &Display,
) -> io::Result<()> {
    let mut encoders = Encoders::default();
    loop {
        let plan = {
            let mut state = shared.lock();
            loop {
                if state.closed {
                    return Ok(());
                }
                if let Some(plan) = state.plan(display) {
                    break plan;
                }
                state = shared
                    .wake
                    .wait_timeout(state, IDLE_RECHECK)
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        };
        let update = build_update(&plan, display, &mut encoders)?;
        writer.write_all(&update)?;
    }
}

/// A whole session without sockets or threads: handles every client
/// message in `reader` as the reader thread does and, after each, builds
/// the updates the sender would write, counting their bytes (the fuzz
/// target for client messages). Ends at the first malformed message, as a
/// connection would, or once `max_output` bytes were produced.
pub fn replay(
    reader: &mut impl Read,
    display: &Display,
    input: &dyn InputSink,
    max_output: usize,
) -> io::Result<usize> {
    let (width, height) = display.with_surface(|s| (s.width, s.height));
    let shared = ClientShared::new(width, height);
    let mut encoders = Encoders::default();
    let mut held = HashSet::new();
    let mut sent = 0;
    while sent < max_output {
        let message = ClientMessage::read_from(reader)?;
        handle(message, &shared, input, &mut held)?;
        while sent < max_output {
            let Some(plan) = shared.lock().plan(display) else {
                break;
            };
            sent += build_update(&plan, display, &mut encoders)?.len();
        }
    }
    Ok(sent)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dirty_blocks_merge_into_few_rects() {
        let mut map = DirtyMap::new(100, 50);
        assert!(map.take(Rect::new(0, 0, 100, 50)).is_empty());
        map.mark(Rect::new(5, 5, 20, 20)); // blocks (0..2, 0..2)
        map.mark(Rect::new(90, 40, 1, 1)); // block (5, 2)
        let rects = map.take(Rect::new(0, 0, 100, 50));
        assert_eq!(
            rects,
            vec![Rect::new(0, 0, 32, 32), Rect::new(80, 32, 16, 16)]
        );
        assert!(map.take(Rect::new(0, 0, 100, 50)).is_empty(), "taken once");
    }

    #[test]
    fn only_the_requested_region_is_taken() {
        let mut map = DirtyMap::new(64, 64);
        map.mark_all();
        assert_eq!(
            map.take(Rect::new(0, 0, 10, 10)),
            vec![Rect::new(0, 0, 16, 16)]
        );
        let rest = map.take(Rect::new(0, 0, 64, 64));
        let area: u32 = rest.iter().map(|r| r.width * r.height).sum();
        assert_eq!(area, 64 * 64 - 16 * 16);
        // Out-of-range requests are clipped, not trusted.
        map.mark(Rect::new(60, 60, 1000, 1000));
        assert_eq!(
            map.take(Rect::new(0, 0, 65535, 65535)),
            vec![Rect::new(48, 48, 16, 16)]
        );
    }

    #[test]
    fn tight_rects_are_split_to_its_limits() {
        let data = vec![0u32; 3000 * 40];
        let mut out = Vec::new();
        let n = Encoders::default()
            .encode(
                encoding::TIGHT,
                &PixelFormat::native(),
                Block::new(&data, 3000, 40),
                0,
                0,
                &mut out,
            )
            .unwrap();
        // 2048 wide x 32 high (65536 px), then the remainders.
        assert_eq!(n, 4);
    }
}
