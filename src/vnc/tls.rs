//! TLS for VeNCrypt (rfbproto "VeNCrypt"): the server's X.509
//! credentials read from a directory as QEMU's `tls-creds-x509` and
//! libvirt's `vnc_tls_x509_cert_dir` lay it out, and a TLS session split
//! into a reading half and a writing half so that a client keeps its two
//! threads (reader and sender, see [`super::client`]).
//!
//! The split keeps the property the plain socket has: the reader never
//! waits for the socket's send side, and the sender writes with the
//! socket's send timeout. Both halves share one `rustls` session behind a
//! mutex that is held only while records are decrypted or encrypted in
//! memory, never across a socket read or write. Only the sender writes
//! records to the socket after the handshake; anything the reader's
//! processing queues (an alert, a TLS 1.3 key update) goes out with the
//! sender's next write, so records leave in the order they were made.
//!
//! TLS is done by `rustls` with its `ring` provider: pure Rust plus a
//! little assembly built by `cc`, so no cmake or Go toolchain is needed.

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig, ServerConnection};

use super::client::Connection;

/// The CA that signed the server's and the clients' certificates.
pub const CA_CERT: &str = "ca-cert.pem";
/// The server's certificate (optionally followed by its chain).
pub const SERVER_CERT: &str = "server-cert.pem";
/// The server certificate's private key (PKCS#8, PKCS#1 or SEC1).
pub const SERVER_KEY: &str = "server-key.pem";

/// Why the TLS credentials could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file is missing, unreadable or holds nothing usable.
    #[error("cannot read {path}: {message}")]
    File { path: PathBuf, message: String },
    /// rustls refused the certificates or the key.
    #[error("the VNC TLS credentials in {dir} are not usable: {source}")]
    Rustls {
        dir: PathBuf,
        #[source]
        source: rustls::Error,
    },
    /// The client verifier could not be built from the CA.
    #[error("cannot verify VNC clients against {path}: {message}")]
    Verifier { path: PathBuf, message: String },
}

fn certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let fail = |message: String| TlsError::File {
        path: path.to_path_buf(),
        message,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| fail(e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| fail(e.to_string()))?;
    if certs.is_empty() {
        return Err(fail("no PEM certificate in it".into()));
    }
    Ok(certs)
}

/// A TLS server configuration from the credentials in `dir`
/// ([`CA_CERT`], [`SERVER_CERT`], [`SERVER_KEY`]). With `verify_clients`
/// a client must present a certificate signed by the CA (libvirt's
/// `vnc_tls_x509_verify`); without, the CA file is not needed.
pub fn server_config(dir: &Path, verify_clients: bool) -> Result<Arc<ServerConfig>, TlsError> {
    let chain = certificates(&dir.join(SERVER_CERT))?;
    let key_path = dir.join(SERVER_KEY);
    let key = PrivateKeyDer::from_pem_file(&key_path).map_err(|e| TlsError::File {
        path: key_path.clone(),
        message: e.to_string(),
    })?;
    // rustls 0.23.48 deprecates its ring provider only because ring has
    // no post-quantum key exchange (X25519MLKEM768); the alternative,
    // aws-lc-rs, is a large C build. No VNC client offers post-quantum
    // groups today, so ring's X25519/P-256/P-384 are what they negotiate.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let rustls_error = |source| TlsError::Rustls {
        dir: dir.to_path_buf(),
        source,
    };
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(rustls_error)?;
    let builder = if verify_clients {
        let ca_path = dir.join(CA_CERT);
        let mut roots = RootCertStore::empty();
        for cert in certificates(&ca_path)? {
            roots.add(cert).map_err(|e| TlsError::Verifier {
                path: ca_path.clone(),
                message: e.to_string(),
            })?;
        }
        let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
            .build()
            .map_err(|e| TlsError::Verifier {
                path: ca_path.clone(),
                message: e.to_string(),
            })?;
        builder.with_client_cert_verifier(verifier)
    } else {
        builder.with_no_client_auth()
    };
    let mut config = builder.with_single_cert(chain, key).map_err(rustls_error)?;
    // Nothing resumes a VNC session: no tickets to make or keep.
    config.send_tls13_tickets = 0;
    Ok(Arc::new(config))
}

/// An established TLS session on a client's socket, shared by its halves.
pub struct TlsSession {
    tls: Mutex<ServerConnection>,
}

impl TlsSession {
    /// Runs the server side of the TLS handshake on `socket` (blocking,
    /// bounded by the socket's timeouts). `early` holds bytes already read
    /// from the socket past the last plain RFB message.
    pub fn accept(
        config: Arc<ServerConfig>,
        socket: &mut Connection,
        early: &[u8],
    ) -> io::Result<Arc<Self>> {
        let mut tls = ServerConnection::new(config).map_err(io::Error::other)?;
        let mut early = early;
        while !early.is_empty() {
            tls.read_tls(&mut early)?;
            tls.process_new_packets().map_err(invalid)?;
        }
        while tls.is_handshaking() {
            tls.complete_io(socket)?;
        }
        while tls.wants_write() {
            tls.write_tls(socket)?;
        }
        Ok(Arc::new(Self {
            tls: Mutex::new(tls),
        }))
    }

    fn lock(&self) -> MutexGuard<'_, ServerConnection> {
        self.tls.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

/// Size of the reader's ciphertext buffer: one maximal TLS record.
const RECORD: usize = 16 * 1024 + 2048;

/// The reading half: decrypts what the socket brings.
pub struct TlsReader {
    session: Arc<TlsSession>,
    socket: Connection,
    /// Ciphertext read from the socket, not yet given to rustls.
    raw: Box<[u8]>,
    start: usize,
    end: usize,
    eof: bool,
}

impl TlsReader {
    pub fn new(session: Arc<TlsSession>, socket: Connection) -> Self {
        Self {
            session,
            socket,
            raw: vec![0; RECORD].into_boxed_slice(),
            start: 0,
            end: 0,
            eof: false,
        }
    }
}

impl Read for TlsReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            {
                let mut tls = self.session.lock();
                // Hand rustls what we hold; it refuses more while its
                // plaintext buffer is full, which the read below drains.
                let mut refused = None;
                if self.start < self.end {
                    let mut pending = &self.raw[self.start..self.end];
                    match tls.read_tls(&mut pending) {
                        Ok(n) => self.start += n,
                        Err(e) => refused = Some(e),
                    }
                } else if self.eof {
                    // An empty read tells rustls the socket ended.
                    let _ = tls.read_tls(&mut &[][..]);
                }
                tls.process_new_packets().map_err(invalid)?;
                match tls.reader().read(buf) {
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if let Some(e) = refused {
                    return Err(e);
                }
                if self.eof {
                    return Err(io::ErrorKind::UnexpectedEof.into());
                }
            }
            if self.start == self.end {
                // Outside the lock: the sender may encrypt meanwhile.
                let n = self.socket.read(&mut self.raw)?;
                (self.start, self.end) = (0, n);
                self.eof = n == 0;
            }
        }
    }
}

/// The writing half: encrypts and writes with the socket's send timeout.
pub struct TlsWriter {
    session: Arc<TlsSession>,
    socket: Connection,
    records: Vec<u8>,
}

impl TlsWriter {
    pub fn new(session: Arc<TlsSession>, socket: Connection) -> Self {
        Self {
            session,
            socket,
            records: Vec::new(),
        }
    }
}

impl Write for TlsWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.records.clear();
        let n = {
            let mut tls = self.session.lock();
            let n = tls.writer().write(buf)?;
            while tls.wants_write() {
                tls.write_tls(&mut self.records)?;
            }
            n
        };
        // Outside the lock, so the reader goes on reading input while a
        // slow client takes its time; a client that takes longer than the
        // send timeout gets an error here and is dropped.
        self.socket.write_all(&self.records)?;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}
