//! A small RFB client for the tests: it speaks the handshake, keeps a
//! framebuffer in its own pixel format and decodes every encoding the
//! server sends, so a test can assert the client sees what the display
//! holds.

use std::io::{self, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::{Arc, Mutex};
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
    reader: BufReader<Box<dyn Read + Send>>,
    writer: Box<dyn Write + Send>,
    /// The socket under `reader` and `writer`, plain or carrying TLS.
    socket: Connection,
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
            reader: BufReader::new(Box::new(conn.try_clone().unwrap())),
            writer: Box::new(conn.try_clone().unwrap()),
            socket: conn,
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
        self.socket.shutdown();
    }

    /// The VeNCrypt handshake (rfbproto) trusting `roots`: version 0.2,
    /// `subtype` (offered or not: a refusal is an outcome), TLS, then VNC Authentication with `password` for X509Vnc, and
    /// ClientInit. From here on everything goes over TLS.
    pub fn vencrypt(
        &mut self,
        roots: &rustls::RootCertStore,
        subtype: u32,
        password: Option<&str>,
    ) -> io::Result<Outcome> {
        let server_version = Version::read_from(&mut self.reader)?;
        assert_eq!(server_version, Version::V3_8);
        Version::V3_8.write_to(&mut self.writer)?;
        match SecurityTypes::read_from(&mut self.reader, Version::V3_8)? {
            SecurityTypes::Offer(types) => assert_eq!(types, [security::VENCRYPT]),
            SecurityTypes::Refused(why) => return Ok(Outcome::Refused(why)),
        }
        SecurityChoice(security::VENCRYPT).write_to(&mut self.writer)?;
        let mut version = [0u8; 2];
        self.reader.read_exact(&mut version)?;
        assert_eq!(version, [0, 2]);
        self.writer.write_all(&version)?;
        assert_eq!(read_u8(&mut self.reader)?, 0, "VeNCrypt 0.2 accepted");
        let count = read_u8(&mut self.reader)?;
        let mut offered = Vec::new();
        for _ in 0..count {
            let mut t = [0u8; 4];
            self.reader.read_exact(&mut t)?;
            offered.push(u32::from_be_bytes(t));
        }
        assert_eq!(offered.len(), 1, "one sub-type offered: {offered:?}");
        self.writer.write_all(&subtype.to_be_bytes())?;
        if read_u8(&mut self.reader)? != 1 {
            return Ok(Outcome::Refused(format!("sub-type {subtype} refused")));
        }
        let config = rustls::ClientConfig::builder_with_provider(Arc::new(
            #[allow(deprecated)]
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone())
        .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let tls = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let stream = TlsStream(Arc::new(Mutex::new(rustls::StreamOwned::new(
            tls,
            self.socket.try_clone()?,
        ))));
        self.reader = BufReader::new(Box::new(stream.clone()));
        self.writer = Box::new(stream);
        if subtype == super::protocol::vencrypt::X509_VNC {
            let AuthBlock(challenge) = AuthBlock::read_from(&mut self.reader)?;
            let answer = auth::response(password.unwrap_or(""), &challenge);
            AuthBlock(answer).write_to(&mut self.writer)?;
        }
        if let SecurityResult::Failed(why) =
            SecurityResult::read_from(&mut self.reader, Version::V3_8)?
        {
            return Ok(Outcome::Refused(why));
        }
        ClientInit { shared: true }.write_to(&mut self.writer)?;
        let init = ServerInit::read_from(&mut self.reader)?;
        self.format = init.pixel_format;
        self.resize(init.width.into(), init.height.into());
        self.name = init.name;
        Ok(Outcome::Connected)
    }
}

/// A client-side TLS stream the test client reads and writes through
/// (one thread: the mutex only lets both halves own it).
#[derive(Clone)]
struct TlsStream(Arc<Mutex<rustls::StreamOwned<rustls::ClientConnection, Connection>>>);

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.lock().unwrap().read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().unwrap().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.lock().unwrap().flush()
    }
}

/// A test CA and a server certificate for localhost made with the
/// `openssl` command, loaded as the server's TLS configuration, and the
/// roots a client trusts.
pub fn test_tls() -> (
    tempfile::TempDir,
    Arc<rustls::ServerConfig>,
    rustls::RootCertStore,
) {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir.path())
            .output()
            .expect("the openssl command (scripts/setup.sh test)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-days",
        "2",
    ];
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "ca-key.pem",
            "-out",
            "ca-cert.pem",
            "-subj",
            "/CN=test CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign",
        ],
    ]
    .concat());
    run(&[
        &["req", "-x509"][..],
        &ec,
        &[
            "-keyout",
            "server-key.pem",
            "-out",
            "server-cert.pem",
            "-subj",
            "/CN=localhost",
            "-CA",
            "ca-cert.pem",
            "-CAkey",
            "ca-key.pem",
            "-addext",
            "subjectAltName=DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
        ],
    ]
    .concat());
    let server = super::tls::server_config(dir.path(), false).unwrap();
    let mut roots = rustls::RootCertStore::empty();
    let ca = std::fs::read(dir.path().join("ca-cert.pem")).unwrap();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_slice_iter(&ca) {
        roots.add(cert.unwrap()).unwrap();
    }
    (dir, server, roots)
}
