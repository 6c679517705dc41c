//! The RFB wire format (RFC 6143, "The Remote Framebuffer Protocol"), one
//! type per message, each with a symmetric `read_from` / `write_to` so the
//! server and the test client share one definition and every message
//! round-trips in a test.
//!
//! All integers are big-endian (RFC 6143 §7). Pixel data inside a
//! FramebufferUpdate is written by the encoders (`raw.rs`, `hextile.rs`, …);
//! this file only frames it ([`UpdateHeader`], [`RectHeader`]).
//!
//! Extensions beyond the RFC are described in the community-maintained
//! "RFB protocol" document (rfbproto): ExtendedDesktopSize, the QEMU
//! client message and its Extended Key Event, QEMU LED state.

use std::io::{self, Read, Write};

/// Longest cut text (clipboard) kept from a client; the rest is skipped,
/// so a client cannot make the server allocate without bound.
pub const MAX_CUT_TEXT: usize = 1 << 20;
/// Longest desktop name or failure reason accepted when reading.
const MAX_STRING: usize = 1 << 16;

/// Encoding numbers (RFC 6143 §7.7, §7.8 and the rfbproto registry).
pub mod encoding {
    pub const RAW: i32 = 0;
    pub const COPY_RECT: i32 = 1;
    pub const HEXTILE: i32 = 5;
    pub const ZLIB: i32 = 6;
    pub const TIGHT: i32 = 7;
    pub const ZRLE: i32 = 16;
    /// Pseudo-encoding: the framebuffer changed size (RFC 6143 §7.8.2).
    pub const DESKTOP_SIZE: i32 = -223;
    /// Pseudo-encoding: the cursor shape (RFC 6143 §7.8.1).
    pub const CURSOR: i32 = -239;
    /// Pseudo-encoding: the client understands QEMU's Extended Key Event.
    pub const QEMU_EXTENDED_KEY_EVENT: i32 = -258;
    /// Pseudo-encoding: keyboard LED state (QEMU).
    pub const QEMU_LED_STATE: i32 = -261;
    /// Pseudo-encoding: ExtendedDesktopSize (rfbproto).
    pub const EXTENDED_DESKTOP_SIZE: i32 = -308;
}

/// Security types (RFC 6143 §7.1.2).
pub mod security {
    pub const INVALID: u8 = 0;
    pub const NONE: u8 = 1;
    pub const VNC_AUTH: u8 = 2;
    /// VeNCrypt (rfbproto): a sub-type negotiation, then TLS.
    pub const VENCRYPT: u8 = 19;
}

/// VeNCrypt 0.2 sub-types (rfbproto "VeNCrypt"), sent as u32.
pub mod vencrypt {
    /// TLS with the server's X.509 certificate, then no authentication.
    pub const X509_NONE: u32 = 260;
    /// TLS with the server's X.509 certificate, then VNC Authentication.
    pub const X509_VNC: u32 = 261;
}

/// Client-to-server message types (RFC 6143 §7.5, rfbproto).
pub mod client_type {
    pub const SET_PIXEL_FORMAT: u8 = 0;
    pub const SET_ENCODINGS: u8 = 2;
    pub const FRAMEBUFFER_UPDATE_REQUEST: u8 = 3;
    pub const KEY_EVENT: u8 = 4;
    pub const POINTER_EVENT: u8 = 5;
    pub const CLIENT_CUT_TEXT: u8 = 6;
    pub const SET_DESKTOP_SIZE: u8 = 251;
    pub const QEMU: u8 = 255;
    /// Sub-type of [`QEMU`]: Extended Key Event.
    pub const QEMU_EXTENDED_KEY_EVENT: u8 = 0;
}

/// Server-to-client message types (RFC 6143 §7.6).
pub mod server_type {
    pub const FRAMEBUFFER_UPDATE: u8 = 0;
    pub const SET_COLOUR_MAP_ENTRIES: u8 = 1;
    pub const BELL: u8 = 2;
    pub const SERVER_CUT_TEXT: u8 = 3;
}

fn invalid(message: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, message.into())
}

pub(crate) fn read_u8(r: &mut impl Read) -> io::Result<u8> {
    let mut b = [0; 1];
    r.read_exact(&mut b)?;
    Ok(b[0])
}

pub(crate) fn read_u16(r: &mut impl Read) -> io::Result<u16> {
    let mut b = [0; 2];
    r.read_exact(&mut b)?;
    Ok(u16::from_be_bytes(b))
}

pub(crate) fn read_u32(r: &mut impl Read) -> io::Result<u32> {
    let mut b = [0; 4];
    r.read_exact(&mut b)?;
    Ok(u32::from_be_bytes(b))
}

fn read_i32(r: &mut impl Read) -> io::Result<i32> {
    Ok(read_u32(r)? as i32)
}

fn skip(r: &mut impl Read, n: u64) -> io::Result<()> {
    let copied = io::copy(&mut r.take(n), &mut io::sink())?;
    if copied < n {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}

/// A u32 length followed by that many bytes (at most `max`).
fn read_string(r: &mut impl Read, max: usize) -> io::Result<Vec<u8>> {
    let len = read_u32(r)? as usize;
    if len > max {
        return Err(invalid(format!("string of {len} bytes (at most {max})")));
    }
    let mut bytes = vec![0; len];
    r.read_exact(&mut bytes)?;
    Ok(bytes)
}

fn write_string(w: &mut impl Write, bytes: &[u8]) -> io::Result<()> {
    w.write_all(&(bytes.len() as u32).to_be_bytes())?;
    w.write_all(bytes)
}

/// ProtocolVersion (RFC 6143 §7.1.1): "RFB 003.008\n".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Version {
    V3_3,
    V3_7,
    V3_8,
}

impl Version {
    /// Reads a version string. Versions the RFC does not define are mapped
    /// as it advises: anything below 3.7 (e.g. Apple's 3.889 is above)
    /// speaks 3.3, anything above 3.8 speaks 3.8.
    pub fn read_from(r: &mut impl Read) -> io::Result<Version> {
        let mut b = [0u8; 12];
        r.read_exact(&mut b)?;
        let text = std::str::from_utf8(&b).map_err(|_| invalid("version is not text"))?;
        let parse = |s: &str| s.parse::<u32>().ok();
        let (major, minor) = match text
            .strip_prefix("RFB ")
            .and_then(|t| t.strip_suffix('\n'))
            .and_then(|t| t.split_once('.'))
        {
            Some((major, minor)) if major.len() == 3 && minor.len() == 3 => {
                (parse(major), parse(minor))
            }
            _ => (None, None),
        };
        match (major, minor) {
            (Some(3), Some(minor)) if minor < 7 => Ok(Version::V3_3),
            (Some(3), Some(7)) => Ok(Version::V3_7),
            (Some(major), Some(_)) if major >= 3 => Ok(Version::V3_8),
            _ => Err(invalid(format!("not an RFB version: {text:?}"))),
        }
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(match self {
            Version::V3_3 => b"RFB 003.003\n",
            Version::V3_7 => b"RFB 003.007\n",
            Version::V3_8 => b"RFB 003.008\n",
        })
    }
}

/// The security handshake's first server message.
///
/// 3.3 (RFC 6143 Appendix A.1): the server picks, as a u32; 0 is followed
/// by a failure reason. 3.7 and 3.8 (§7.1.2): a u8 count and the types
/// offered; a count of 0 is followed by a failure reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityTypes {
    /// The types offered (3.3: exactly one).
    Offer(Vec<u8>),
    /// The connection is refused, with a reason.
    Refused(String),
}

impl SecurityTypes {
    pub fn read_from(r: &mut impl Read, version: Version) -> io::Result<Self> {
        if version == Version::V3_3 {
            return match read_u32(r)? {
                0 => Ok(Self::Refused(reason(r)?)),
                t => Ok(Self::Offer(vec![t as u8])),
            };
        }
        let count = read_u8(r)?;
        if count == 0 {
            return Ok(Self::Refused(reason(r)?));
        }
        let mut types = vec![0; count as usize];
        r.read_exact(&mut types)?;
        Ok(Self::Offer(types))
    }

    pub fn write_to(&self, w: &mut impl Write, version: Version) -> io::Result<()> {
        match (self, version) {
            (Self::Offer(types), Version::V3_3) => {
                w.write_all(&u32::from(*types.first().unwrap_or(&0)).to_be_bytes())
            }
            (Self::Offer(types), _) => {
                w.write_all(&[types.len() as u8])?;
                w.write_all(types)
            }
            (Self::Refused(why), Version::V3_3) => {
                w.write_all(&0u32.to_be_bytes())?;
                write_string(w, why.as_bytes())
            }
            (Self::Refused(why), _) => {
                w.write_all(&[0])?;
                write_string(w, why.as_bytes())
            }
        }
    }
}

fn reason(r: &mut impl Read) -> io::Result<String> {
    Ok(String::from_utf8_lossy(&read_string(r, MAX_STRING)?).into_owned())
}

/// The client's choice of security type in 3.7 and 3.8 (RFC 6143 §7.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityChoice(pub u8);

impl SecurityChoice {
    pub fn read_from(r: &mut impl Read) -> io::Result<Self> {
        Ok(Self(read_u8(r)?))
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&[self.0])
    }
}

/// VNC Authentication's challenge and response (RFC 6143 §7.2.2): 16 bytes each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthBlock(pub [u8; 16]);

impl AuthBlock {
    pub fn read_from(r: &mut impl Read) -> io::Result<Self> {
        let mut b = [0; 16];
        r.read_exact(&mut b)?;
        Ok(Self(b))
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.0)
    }
}

/// SecurityResult (RFC 6143 §7.1.3): u32 0 = OK, 1 = failed; from 3.8 on a
/// failure carries a reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecurityResult {
    Ok,
    Failed(String),
}

impl SecurityResult {
    pub fn read_from(r: &mut impl Read, version: Version) -> io::Result<Self> {
        match read_u32(r)? {
            0 => Ok(Self::Ok),
            _ if version >= Version::V3_8 => Ok(Self::Failed(reason(r)?)),
            _ => Ok(Self::Failed(String::new())),
        }
    }

    pub fn write_to(&self, w: &mut impl Write, version: Version) -> io::Result<()> {
        match self {
            Self::Ok => w.write_all(&0u32.to_be_bytes()),
            Self::Failed(why) => {
                w.write_all(&1u32.to_be_bytes())?;
                if version >= Version::V3_8 {
                    write_string(w, why.as_bytes())?;
                }
                Ok(())
            }
        }
    }
}

/// ClientInit (RFC 6143 §7.3.1): may other clients stay connected?
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClientInit {
    pub shared: bool,
}

impl ClientInit {
    pub fn read_from(r: &mut impl Read) -> io::Result<Self> {
        Ok(Self {
            shared: read_u8(r)? != 0,
        })
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&[u8::from(self.shared)])
    }
}

/// PIXEL_FORMAT (RFC 6143 §7.4): how the client wants pixel values
/// packed. Conversion lives in `pixel.rs`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PixelFormat {
    pub bits_per_pixel: u8,
    pub depth: u8,
    pub big_endian: bool,
    pub true_colour: bool,
    pub red_max: u16,
    pub green_max: u16,
    pub blue_max: u16,
    pub red_shift: u8,
    pub green_shift: u8,
    pub blue_shift: u8,
}

impl PixelFormat {
    pub fn read_from(r: &mut impl Read) -> io::Result<Self> {
        let mut b = [0u8; 16];
        r.read_exact(&mut b)?;
        Ok(Self {
            bits_per_pixel: b[0],
            depth: b[1],
            big_endian: b[2] != 0,
            true_colour: b[3] != 0,
            red_max: u16::from_be_bytes([b[4], b[5]]),
            green_max: u16::from_be_bytes([b[6], b[7]]),
            blue_max: u16::from_be_bytes([b[8], b[9]]),
            red_shift: b[10],
            green_shift: b[11],
            blue_shift: b[12],
            // b[13..16]: padding
        })
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        let [rh, rl] = self.red_max.to_be_bytes();
        let [gh, gl] = self.green_max.to_be_bytes();
        let [bh, bl] = self.blue_max.to_be_bytes();
        w.write_all(&[
            self.bits_per_pixel,
            self.depth,
            u8::from(self.big_endian),
            u8::from(self.true_colour),
            rh,
            rl,
            gh,
            gl,
            bh,
            bl,
            self.red_shift,
            self.green_shift,
            self.blue_shift,
            0,
            0,
            0,
        ])
    }
}

/// ServerInit (RFC 6143 §7.3.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerInit {
    pub width: u16,
    pub height: u16,
    pub pixel_format: PixelFormat,
    pub name: String,
}

impl ServerInit {
    pub fn read_from(r: &mut impl Read) -> io::Result<Self> {
        let width = read_u16(r)?;
        let height = read_u16(r)?;
        let pixel_format = PixelFormat::read_from(r)?;
        let name = String::from_utf8_lossy(&read_string(r, MAX_STRING)?).into_owned();
        Ok(Self {
            width,
            height,
            pixel_format,
            name,
        })
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.width.to_be_bytes())?;
        w.write_all(&self.height.to_be_bytes())?;
        self.pixel_format.write_to(w)?;
        write_string(w, self.name.as_bytes())
    }
}

/// One screen of an ExtendedDesktopSize layout (rfbproto
/// "ExtendedDesktopSize Pseudo-encoding", "SetDesktopSize").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Screen {
    pub id: u32,
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
    pub flags: u32,
}

impl Screen {
    pub fn read_from(r: &mut impl Read) -> io::Result<Self> {
        Ok(Self {
            id: read_u32(r)?,
            x: read_u16(r)?,
            y: read_u16(r)?,
            width: read_u16(r)?,
            height: read_u16(r)?,
            flags: read_u32(r)?,
        })
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&self.id.to_be_bytes())?;
        w.write_all(&self.x.to_be_bytes())?;
        w.write_all(&self.y.to_be_bytes())?;
        w.write_all(&self.width.to_be_bytes())?;
        w.write_all(&self.height.to_be_bytes())?;
        w.write_all(&self.flags.to_be_bytes())
    }
}

/// Messages a client sends after initialisation (RFC 6143 §7.5).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    /// §7.5.1.
    SetPixelFormat(PixelFormat),
    /// §7.5.2: encodings in the client's order of preference.
    SetEncodings(Vec<i32>),
    /// §7.5.3.
    FramebufferUpdateRequest {
        incremental: bool,
        x: u16,
        y: u16,
        width: u16,
        height: u16,
    },
    /// §7.5.4: an X keysym.
    KeyEvent { down: bool, keysym: u32 },
    /// §7.5.5.
    PointerEvent { buttons: u8, x: u16, y: u16 },
    /// §7.5.6: Latin-1 text (kept up to [`MAX_CUT_TEXT`] bytes).
    ClientCutText(Vec<u8>),
    /// rfbproto "SetDesktopSize": the client asks for a new size.
    SetDesktopSize {
        width: u16,
        height: u16,
        screens: Vec<Screen>,
    },
    /// rfbproto "QEMU Extended Key Event": the keysym and the key's QEMU
    /// key number (0 if the client does not know it).
    QemuExtendedKeyEvent { down: bool, keysym: u32, qnum: u32 },
}

impl ClientMessage {
    /// Reads one message. An unknown message type is an error: RFB
    /// messages carry no length, so nothing after it could be framed.
    pub fn read_from(r: &mut impl Read) -> io::Result<Self> {
        use client_type::*;
        let kind = read_u8(r)?;
        match kind {
            SET_PIXEL_FORMAT => {
                skip(r, 3)?;
                Ok(Self::SetPixelFormat(PixelFormat::read_from(r)?))
            }
            SET_ENCODINGS => {
                skip(r, 1)?;
                let count = read_u16(r)?;
                let encodings = (0..count).map(|_| read_i32(r)).collect::<io::Result<_>>()?;
                Ok(Self::SetEncodings(encodings))
            }
            FRAMEBUFFER_UPDATE_REQUEST => Ok(Self::FramebufferUpdateRequest {
                incremental: read_u8(r)? != 0,
                x: read_u16(r)?,
                y: read_u16(r)?,
                width: read_u16(r)?,
                height: read_u16(r)?,
            }),
            KEY_EVENT => {
                let down = read_u8(r)? != 0;
                skip(r, 2)?;
                Ok(Self::KeyEvent {
                    down,
                    keysym: read_u32(r)?,
                })
            }
            POINTER_EVENT => Ok(Self::PointerEvent {
                buttons: read_u8(r)?,
                x: read_u16(r)?,
                y: read_u16(r)?,
            }),
            CLIENT_CUT_TEXT => {
                skip(r, 3)?;
                let len = read_u32(r)? as u64;
                let kept = len.min(MAX_CUT_TEXT as u64);
                let mut text = vec![0; kept as usize];
                r.read_exact(&mut text)?;
                skip(r, len - kept)?;
                Ok(Self::ClientCutText(text))
            }
            SET_DESKTOP_SIZE => {
                skip(r, 1)?;
                let width = read_u16(r)?;
                let height = read_u16(r)?;
                let count = read_u8(r)?;
                skip(r, 1)?;
                let screens = (0..count)
                    .map(|_| Screen::read_from(r))
                    .collect::<io::Result<_>>()?;
                Ok(Self::SetDesktopSize {
                    width,
                    height,
                    screens,
                })
            }
            QEMU => match read_u8(r)? {
                QEMU_EXTENDED_KEY_EVENT => Ok(Self::QemuExtendedKeyEvent {
                    down: read_u16(r)? != 0,
                    keysym: read_u32(r)?,
                    qnum: read_u32(r)?,
                }),
                sub => Err(invalid(format!("unknown QEMU client message {sub}"))),
            },
            other => Err(invalid(format!("unknown client message type {other}"))),
        }
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        use client_type::*;
        match self {
            Self::SetPixelFormat(pf) => {
                w.write_all(&[SET_PIXEL_FORMAT, 0, 0, 0])?;
                pf.write_to(w)
            }
            Self::SetEncodings(encodings) => {
                w.write_all(&[SET_ENCODINGS, 0])?;
                w.write_all(&(encodings.len() as u16).to_be_bytes())?;
                for e in encodings {
                    w.write_all(&e.to_be_bytes())?;
                }
                Ok(())
            }
            Self::FramebufferUpdateRequest {
                incremental,
                x,
                y,
                width,
                height,
            } => {
                w.write_all(&[FRAMEBUFFER_UPDATE_REQUEST, u8::from(*incremental)])?;
                for v in [x, y, width, height] {
                    w.write_all(&v.to_be_bytes())?;
                }
                Ok(())
            }
            Self::KeyEvent { down, keysym } => {
                w.write_all(&[KEY_EVENT, u8::from(*down), 0, 0])?;
                w.write_all(&keysym.to_be_bytes())
            }
            Self::PointerEvent { buttons, x, y } => {
                w.write_all(&[POINTER_EVENT, *buttons])?;
                w.write_all(&x.to_be_bytes())?;
                w.write_all(&y.to_be_bytes())
            }
            Self::ClientCutText(text) => {
                w.write_all(&[CLIENT_CUT_TEXT, 0, 0, 0])?;
                write_string(w, text)
            }
            Self::SetDesktopSize {
                width,
                height,
                screens,
            } => {
                w.write_all(&[SET_DESKTOP_SIZE, 0])?;
                w.write_all(&width.to_be_bytes())?;
                w.write_all(&height.to_be_bytes())?;
                w.write_all(&[screens.len() as u8, 0])?;
                for screen in screens {
                    screen.write_to(w)?;
                }
                Ok(())
            }
            Self::QemuExtendedKeyEvent { down, keysym, qnum } => {
                w.write_all(&[QEMU, QEMU_EXTENDED_KEY_EVENT])?;
                w.write_all(&u16::from(*down).to_be_bytes())?;
                w.write_all(&keysym.to_be_bytes())?;
                w.write_all(&qnum.to_be_bytes())
            }
        }
    }
}

/// FramebufferUpdate's header (RFC 6143 §7.6.1): the message type, padding
/// and the number of rectangles that follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UpdateHeader {
    pub rects: u16,
}

impl UpdateHeader {
    /// Reads the header after its message-type byte.
    pub fn read_from(r: &mut impl Read) -> io::Result<Self> {
        skip(r, 1)?;
        Ok(Self {
            rects: read_u16(r)?,
        })
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&[server_type::FRAMEBUFFER_UPDATE, 0])?;
        w.write_all(&self.rects.to_be_bytes())
    }
}

/// One rectangle's header inside a FramebufferUpdate (RFC 6143 §7.6.1);
/// the encoding's data follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RectHeader {
    pub x: u16,
    pub y: u16,
    pub width: u16,
    pub height: u16,
    pub encoding: i32,
}

impl RectHeader {
    pub fn read_from(r: &mut impl Read) -> io::Result<Self> {
        Ok(Self {
            x: read_u16(r)?,
            y: read_u16(r)?,
            width: read_u16(r)?,
            height: read_u16(r)?,
            encoding: read_i32(r)?,
        })
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        for v in [self.x, self.y, self.width, self.height] {
            w.write_all(&v.to_be_bytes())?;
        }
        w.write_all(&self.encoding.to_be_bytes())
    }
}

/// The payload of an ExtendedDesktopSize rectangle (rfbproto): the
/// screen layout. The rectangle's x says why (0 server, 1 this client,
/// 2 another client), its y carries the status of a client's request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScreenLayout {
    pub screens: Vec<Screen>,
}

impl ScreenLayout {
    pub fn read_from(r: &mut impl Read) -> io::Result<Self> {
        let count = read_u8(r)?;
        skip(r, 3)?;
        let screens = (0..count)
            .map(|_| Screen::read_from(r))
            .collect::<io::Result<_>>()?;
        Ok(Self { screens })
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        w.write_all(&[self.screens.len() as u8, 0, 0, 0])?;
        for screen in &self.screens {
            screen.write_to(w)?;
        }
        Ok(())
    }
}

/// Server messages other than FramebufferUpdate (RFC 6143 §7.6.2–§7.6.4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerMessage {
    /// §7.6.2: colour-map entries (16-bit RGB).
    SetColourMapEntries {
        first: u16,
        colours: Vec<(u16, u16, u16)>,
    },
    /// §7.6.3.
    Bell,
    /// §7.6.4.
    ServerCutText(Vec<u8>),
}

impl ServerMessage {
    /// Reads the message after its message-type byte `kind`.
    pub fn read_from(r: &mut impl Read, kind: u8) -> io::Result<Self> {
        match kind {
            server_type::SET_COLOUR_MAP_ENTRIES => {
                skip(r, 1)?;
                let first = read_u16(r)?;
                let count = read_u16(r)?;
                let colours = (0..count)
                    .map(|_| Ok((read_u16(r)?, read_u16(r)?, read_u16(r)?)))
                    .collect::<io::Result<_>>()?;
                Ok(Self::SetColourMapEntries { first, colours })
            }
            server_type::BELL => Ok(Self::Bell),
            server_type::SERVER_CUT_TEXT => {
                skip(r, 3)?;
                Ok(Self::ServerCutText(read_string(r, MAX_CUT_TEXT)?))
            }
            other => Err(invalid(format!("unknown server message type {other}"))),
        }
    }

    pub fn write_to(&self, w: &mut impl Write) -> io::Result<()> {
        match self {
            Self::SetColourMapEntries { first, colours } => {
                w.write_all(&[server_type::SET_COLOUR_MAP_ENTRIES, 0])?;
                w.write_all(&first.to_be_bytes())?;
                w.write_all(&(colours.len() as u16).to_be_bytes())?;
                for (r, g, b) in colours {
                    for v in [r, g, b] {
                        w.write_all(&v.to_be_bytes())?;
                    }
                }
                Ok(())
            }
            Self::Bell => w.write_all(&[server_type::BELL]),
            Self::ServerCutText(text) => {
                w.write_all(&[server_type::SERVER_CUT_TEXT, 0, 0, 0])?;
                write_string(w, text)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pf() -> PixelFormat {
        PixelFormat {
            bits_per_pixel: 16,
            depth: 16,
            big_endian: true,
            true_colour: true,
            red_max: 31,
            green_max: 63,
            blue_max: 31,
            red_shift: 11,
            green_shift: 5,
            blue_shift: 0,
        }
    }

    #[test]
    fn client_messages_round_trip() {
        let messages = [
            ClientMessage::SetPixelFormat(pf()),
            ClientMessage::SetEncodings(vec![16, 5, 0, -223, -308, -258]),
            ClientMessage::FramebufferUpdateRequest {
                incremental: true,
                x: 1,
                y: 2,
                width: 300,
                height: 400,
            },
            ClientMessage::KeyEvent {
                down: true,
                keysym: 0xff0d,
            },
            ClientMessage::PointerEvent {
                buttons: 5,
                x: 640,
                y: 480,
            },
            ClientMessage::ClientCutText(b"hello".to_vec()),
            ClientMessage::SetDesktopSize {
                width: 1024,
                height: 768,
                screens: vec![Screen {
                    id: 1,
                    x: 0,
                    y: 0,
                    width: 1024,
                    height: 768,
                    flags: 0,
                }],
            },
            ClientMessage::QemuExtendedKeyEvent {
                down: false,
                keysym: 0x61,
                qnum: 0x1e,
            },
        ];
        let mut wire = Vec::new();
        for m in &messages {
            m.write_to(&mut wire).unwrap();
        }
        let mut r = &wire[..];
        for m in &messages {
            assert_eq!(&ClientMessage::read_from(&mut r).unwrap(), m);
        }
        assert!(r.is_empty());
    }

    #[test]
    fn wire_layout_matches_the_rfc() {
        // §7.5.4 KeyEvent: type 4, down-flag, 2 padding, key.
        let mut wire = Vec::new();
        ClientMessage::KeyEvent {
            down: true,
            keysym: 0x0000ff0d,
        }
        .write_to(&mut wire)
        .unwrap();
        assert_eq!(wire, [4, 1, 0, 0, 0, 0, 0xff, 0x0d]);
        // §7.4 PIXEL_FORMAT is 16 bytes; §7.5.1 adds type + 3 padding.
        let mut wire = Vec::new();
        ClientMessage::SetPixelFormat(pf())
            .write_to(&mut wire)
            .unwrap();
        assert_eq!(wire.len(), 20);
        assert_eq!(&wire[4..8], &[16, 16, 1, 1]);
    }

    #[test]
    fn handshake_messages_round_trip() {
        for v in [Version::V3_3, Version::V3_7, Version::V3_8] {
            let mut wire = Vec::new();
            v.write_to(&mut wire).unwrap();
            assert_eq!(Version::read_from(&mut &wire[..]).unwrap(), v);
            for t in [
                SecurityTypes::Offer(vec![security::VNC_AUTH]),
                SecurityTypes::Refused("too many".into()),
            ] {
                let mut wire = Vec::new();
                t.write_to(&mut wire, v).unwrap();
                assert_eq!(SecurityTypes::read_from(&mut &wire[..], v).unwrap(), t);
            }
            let mut wire = Vec::new();
            SecurityResult::Failed("no".into())
                .write_to(&mut wire, v)
                .unwrap();
            let expected = if v == Version::V3_8 { "no" } else { "" };
            assert_eq!(
                SecurityResult::read_from(&mut &wire[..], v).unwrap(),
                SecurityResult::Failed(expected.into())
            );
        }
        let init = ServerInit {
            width: 720,
            height: 400,
            pixel_format: pf(),
            name: "vm".into(),
        };
        let mut wire = Vec::new();
        init.write_to(&mut wire).unwrap();
        assert_eq!(wire.len(), 2 + 2 + 16 + 4 + 2);
        assert_eq!(ServerInit::read_from(&mut &wire[..]).unwrap(), init);
    }

    #[test]
    fn odd_versions_map_as_the_rfc_advises() {
        let v = |s: &[u8]| Version::read_from(&mut &s[..]);
        assert_eq!(v(b"RFB 003.005\n").unwrap(), Version::V3_3);
        assert_eq!(v(b"RFB 003.889\n").unwrap(), Version::V3_8);
        assert_eq!(v(b"RFB 004.001\n").unwrap(), Version::V3_8);
        assert!(v(b"GET / HTTP/1").is_err());
        assert!(v(b"RFB 003.00").is_err());
    }

    #[test]
    fn unknown_or_truncated_messages_are_errors() {
        assert!(ClientMessage::read_from(&mut &[99u8][..]).is_err());
        assert!(ClientMessage::read_from(&mut &[255u8, 7][..]).is_err());
        // A FramebufferUpdateRequest cut short.
        assert!(ClientMessage::read_from(&mut &[3u8, 1, 0, 0, 0][..]).is_err());
        // Cut text that claims more bytes than follow.
        assert!(ClientMessage::read_from(&mut &[6u8, 0, 0, 0, 0, 0, 0, 9, b'a'][..]).is_err());
    }

    #[test]
    fn long_cut_text_is_skipped_not_stored() {
        let mut wire = vec![6u8, 0, 0, 0];
        let len = MAX_CUT_TEXT + 10;
        wire.extend_from_slice(&(len as u32).to_be_bytes());
        wire.resize(wire.len() + len, b'x');
        wire.push(2); // next message starts here
        let mut r = &wire[..];
        match ClientMessage::read_from(&mut r).unwrap() {
            ClientMessage::ClientCutText(t) => assert_eq!(t.len(), MAX_CUT_TEXT),
            other => panic!("{other:?}"),
        }
        assert_eq!(r, [2]);
    }

    #[test]
    fn server_messages_round_trip() {
        for m in [
            ServerMessage::Bell,
            ServerMessage::ServerCutText(b"clip".to_vec()),
            ServerMessage::SetColourMapEntries {
                first: 3,
                colours: vec![(1, 2, 3), (65535, 0, 0)],
            },
        ] {
            let mut wire = Vec::new();
            m.write_to(&mut wire).unwrap();
            let mut r = &wire[1..];
            assert_eq!(ServerMessage::read_from(&mut r, wire[0]).unwrap(), m);
            assert!(r.is_empty());
        }
        let mut wire = Vec::new();
        UpdateHeader { rects: 2 }.write_to(&mut wire).unwrap();
        let h = RectHeader {
            x: 1,
            y: 2,
            width: 3,
            height: 4,
            encoding: encoding::EXTENDED_DESKTOP_SIZE,
        };
        h.write_to(&mut wire).unwrap();
        let layout = ScreenLayout {
            screens: vec![Screen {
                id: 0,
                x: 0,
                y: 0,
                width: 3,
                height: 4,
                flags: 0,
            }],
        };
        layout.write_to(&mut wire).unwrap();
        assert_eq!(wire[0], server_type::FRAMEBUFFER_UPDATE);
        let mut r = &wire[1..];
        assert_eq!(UpdateHeader::read_from(&mut r).unwrap().rects, 2);
        assert_eq!(RectHeader::read_from(&mut r).unwrap(), h);
        assert_eq!(ScreenLayout::read_from(&mut r).unwrap(), layout);
        assert!(r.is_empty());
    }
}
