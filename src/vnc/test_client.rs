//! A small RFB client for the tests: it speaks the handshake, keeps a
//! framebuffer in its own pixel format and decodes every encoding the
//! server sends, so a test can assert the client sees what the display
//! holds.

use std::io::{self, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use flate2::Decompress;

use super::client::Connection;
use super::pixel::Converter;
use super::protocol::{
    encoding, read_u8, security, server_type, AuthBlock, ClientInit, ClientMessage, PixelFormat,
    RectHeader, ScreenLayout, SecurityChoice, SecurityResult, SecurityTypes, ServerInit,
    ServerMessage, UpdateHeader, Version,
};
use super::{auth, hextile, raw, tight, zlib, zrle};
use crate::display::Display;

pub struct TestClient {
    reader: BufReader<Connection>,
    writer: Connection,
    pub version: Version,
    pub format: PixelFormat,
    pub width: usize,
    pub height: usize,
    /// Pixel values in `format`.
    pub fb: Vec<u32>,
    pub name: String,
    pub leds: Option<u8>,
    pub extended_keys: bool,
    /// ExtendedDesktopSize rectangles seen: (reason, status, width, height).
    pub layouts: Vec<(u16, u16, u16, u16)>,
    zlib: Decompress,
    zrle: Decompress,
    tight: [Decompress; 4],
}

/// How a handshake ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    Connected,
    Refused(String),
}

impl TestClient {
    fn new(conn: Connection) -> Self {
        conn.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Self {
            reader: BufReader::new(conn.try_clone().unwrap()),
            writer: conn,
            version: Version::V3_8,
            format: PixelFormat::native(),
            width: 0,
            height: 0,
            fb: Vec::new(),
            name: String::new(),
            leds: None,
            extended_keys: false,
            layouts: Vec::new(),
            zlib: Decompress::new(true),
            zrle: Decompress::new(true),
            tight: std::array::from_fn(|_| Decompress::new(true)),
        }
    }

    pub fn tcp(addr: SocketAddr) -> Self {
        Self::new(Connection::Tcp(TcpStream::connect(addr).unwrap()))
    }

    pub fn unix(path: &Path) -> Self {
        Self::new(Connection::Unix(UnixStream::connect(path).unwrap()))
    }

    /// Version, security (with `password` if VNC auth is offered), init.
    pub fn handshake(
        &mut self,
        version: Version,
        password: Option<&str>,
        shared: bool,
    ) -> io::Result<Outcome> {
        let server_version = Version::read_from(&mut self.reader)?;
        assert_eq!(server_version, Version::V3_8);
        self.version = version;
        version.write_to(&mut self.writer)?;
        let offered = match SecurityTypes::read_from(&mut self.reader, version)? {
            SecurityTypes::Offer(types) => types,
            SecurityTypes::Refused(why) => return Ok(Outcome::Refused(why)),
        };
        let chosen = if offered.contains(&security::VNC_AUTH) {
            security::VNC_AUTH
        } else {
            security::NONE
        };
        if version >= Version::V3_7 {
            SecurityChoice(chosen).write_to(&mut self.writer)?;
        }
        if chosen == security::VNC_AUTH {
            let AuthBlock(challenge) = AuthBlock::read_from(&mut self.reader)?;
            let answer = auth::response(password.unwrap_or(""), &challenge);
            AuthBlock(answer).write_to(&mut self.writer)?;
        }
        if chosen == security::VNC_AUTH || version == Version::V3_8 {
            if let SecurityResult::Failed(why) =
                SecurityResult::read_from(&mut self.reader, version)?
            {
                return Ok(Outcome::Refused(why));
            }
        }
        ClientInit { shared }.write_to(&mut self.writer)?;
        let init = ServerInit::read_from(&mut self.reader)?;
        self.format = init.pixel_format;
        self.resize(init.width.into(), init.height.into());
        self.name = init.name;
        Ok(Outcome::Connected)
    }

    fn resize(&mut self, width: usize, height: usize) {
        self.width = width;
        self.height = height;
        self.fb = vec![0; width * height];
    }

    pub fn send(&mut self, message: &ClientMessage) -> io::Result<()> {
        let mut wire = Vec::new();
        message.write_to(&mut wire)?;
        self.writer.write_all(&wire)
    }

    pub fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes)
    }

    pub fn set_pixel_format(&mut self, format: PixelFormat) {
        self.send(&ClientMessage::SetPixelFormat(format)).unwrap();
        self.format = format;
    }

    pub fn set_encodings(&mut self, encodings: &[i32]) {
        self.send(&ClientMessage::SetEncodings(encodings.to_vec()))
            .unwrap();
    }

    pub fn request(&mut self, incremental: bool) {
        let (width, height) = (self.width as u16, self.height as u16);
        self.send(&ClientMessage::FramebufferUpdateRequest {
            incremental,
            x: 0,
            y: 0,
            width,
            height,
        })
        .unwrap();
    }

    /// Reads server messages until one FramebufferUpdate has been
    /// applied; returns its rectangle headers.
    pub fn read_update(&mut self) -> io::Result<Vec<RectHeader>> {
        loop {
            let kind = read_u8(&mut self.reader)?;
            if kind != server_type::FRAMEBUFFER_UPDATE {
                ServerMessage::read_from(&mut self.reader, kind)?;
                continue;
            }
            let header = UpdateHeader::read_from(&mut self.reader)?;
            let mut rects = Vec::new();
            for _ in 0..header.rects {
                let rect = RectHeader::read_from(&mut self.reader)?;
                self.apply(&rect)?;
                rects.push(rect);
            }
            return Ok(rects);
        }
    }

    fn apply(&mut self, rect: &RectHeader) -> io::Result<()> {
        let (x, y) = (usize::from(rect.x), usize::from(rect.y));
        let (w, h) = (usize::from(rect.width), usize::from(rect.height));
        let format = self.format;
        let r = &mut self.reader;
        let pixels = match rect.encoding {
            encoding::RAW => raw::decode(r, w, h, &format)?,
            encoding::HEXTILE => hextile::decode(r, w, h, &format)?,
            encoding::ZLIB => zlib::decode(r, w, h, &format, &mut self.zlib)?,
            encoding::ZRLE => zrle::decode(r, w, h, &format, &mut self.zrle)?,
            encoding::TIGHT => tight::decode(r, w, h, &format, &mut self.tight)?,
            encoding::DESKTOP_SIZE => {
                self.resize(w, h);
                return Ok(());
            }
            encoding::EXTENDED_DESKTOP_SIZE => {
                let layout = ScreenLayout::read_from(r)?;
                assert_eq!(layout.screens.len(), 1);
                self.layouts.push((rect.x, rect.y, rect.width, rect.height));
                if rect.x != 1 {
                    self.resize(w, h);
                }
                return Ok(());
            }
            encoding::QEMU_EXTENDED_KEY_EVENT => {
                self.extended_keys = true;
                return Ok(());
            }
            encoding::QEMU_LED_STATE => {
                self.leds = Some(read_u8(r)?);
                return Ok(());
            }
            other => panic!("unexpected encoding {other}"),
        };
        assert!(
            x + w <= self.width && y + h <= self.height,
            "{rect:?} outside"
        );
        for row in 0..h {
            self.fb[(y + row) * self.width + x..][..w].copy_from_slice(&pixels[row * w..][..w]);
        }
        Ok(())
    }

    /// The display's surface as this client's pixel values.
    pub fn expected(&self, display: &Display) -> Vec<u32> {
        let converter = Converter::new(self.format);
        display.with_surface(|s| {
            assert_eq!(
                (s.width as usize, s.height as usize),
                (self.width, self.height)
            );
            s.pixels.iter().map(|&p| converter.convert(p)).collect()
        })
    }

    /// Whether the server has closed the connection (reads EOF or reset).
    pub fn is_closed(&mut self) -> bool {
        loop {
            match read_u8(&mut self.reader) {
                Ok(kind) if kind == server_type::FRAMEBUFFER_UPDATE => {
                    // Drain an update still in flight.
                    if self.drain_update().is_err() {
                        return true;
                    }
                }
                Ok(_) => return false,
                Err(e) => {
                    return matches!(
                        e.kind(),
                        io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                    )
                }
            }
        }
    }

    fn drain_update(&mut self) -> io::Result<()> {
        let header = UpdateHeader::read_from(&mut self.reader)?;
        for _ in 0..header.rects {
            let rect = RectHeader::read_from(&mut self.reader)?;
            self.apply(&rect)?;
        }
        Ok(())
    }

    pub fn shutdown(&self) {
        self.writer.shutdown();
    }
}
