//! The VM's VNC server: RFB 3.3, 3.7 and 3.8 (RFC 6143) over TCP and a
//! unix socket, serving the [`Display`](crate::display::Display) to any
//! number of viewers and feeding their keyboard and pointer into an
//! [`InputSink`](crate::display::input::InputSink).
//!
//! ```text
//!  server.rs   listeners, accept threads, handshake (version, security, init),
//!  │           the client registry, a display watcher that wakes clients
//!  ├─ auth.rs      VNC authentication (DES challenge), login rate limits
//!  ├─ tls.rs       VeNCrypt's TLS: X.509 credentials, a session split
//!  │               into a reading and a writing half
//!  └─ client.rs    per client: pixel format, encodings, dirty map,
//!      │           reader thread (messages, input) + sender thread (updates)
//!      ├─ pixel.rs     pixel-format conversion, CPIXEL/TPIXEL
//!      ├─ raw.rs hextile.rs zlib.rs zrle.rs tight.rs   one file per encoding
//!      └─ (keys: crate::keys::keysym, X keysym -> QEMU key number)
//!  protocol.rs  every RFB message, read_from / write_to
//! ```
//!
//! Served: security None and VNC Authentication, and VeNCrypt with TLS
//! (X509None, X509Vnc; `tls.rs`) required on TCP when configured
//! (`vnc_tls` in vireo.conf, read by `host::conf`); encodings Raw, Hextile,
//! Zlib, ZRLE, Tight (fill, palette and copy; no JPEG, no gradient);
//! pseudo-encodings DesktopSize, ExtendedDesktopSize (the size is the
//! guest's: SetDesktopSize is answered "prohibited"), QEMU Extended Key
//! Event, QEMU LED state. Not served: CopyRect, the cursor
//! pseudo-encoding (the guest draws its own pointer), colour-map pixel
//! formats, clipboard (cut text is read and dropped), continuous
//! updates, fences, the anonymous-DH VeNCrypt sub-types (TLSNone,
//! TLSVnc: gtk-vnc and TigerVNC prefer the X.509 ones), SASL, Plain.

pub mod auth;
pub mod client;
pub mod hextile;
pub mod pixel;
pub mod protocol;
pub mod raw;
mod server;
pub mod tight;
pub mod tls;
pub mod zlib;
pub mod zrle;

#[cfg(test)]
mod test_client;

pub use server::{parse_vnc_display, VncConfig, VncError, VncServer, AUTOPORT_BASE};
