//! Bridged NICs (libvirt `<interface type='bridge'><source bridge=>`): the
//! guest's frames go through a TAP device (Linux
//! Documentation/networking/tuntap.rst: `/dev/net/tun`, `TUNSETIFF` with
//! `IFF_TAP | IFF_NO_PI`, one frame per read and write) that is a port of
//! the host bridge.
//!
//! With CAP_NET_ADMIN (root) Vireo creates the TAP itself, named by
//! `<target dev=>` or `vireoN`, adds it to the bridge (`SIOCBRADDIF`) and
//! brings it up; it goes when the VM ends. Without it, the user gives a
//! persistent TAP that they own and that is already on the bridge, made
//! once by an administrator — the role qemu-bridge-helper plays for QEMU;
//! [`TapError::Permission`] says how.
//!
//! Not here: the virtio-net header on the TAP (`IFF_VNET_HDR`, offloads),
//! multiqueue, macvtap.

use crate::sandbox::ioctls::{SIOCBRADDIF, TUNSETIFF};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsRawFd;
use std::sync::Arc;

use tracing::warn;

use super::{FrameSink, NetBackend, NetError};

/// Why a TAP could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    #[error("cannot open /dev/net/tun: {0}")]
    Open(std::io::Error),
    #[error(
        "not allowed to put a TAP device on bridge '{bridge}' ({source}).\n\
         Either run Vireo with CAP_NET_ADMIN, or have an administrator create a TAP \
         device that you own on the bridge once:\n  \
         sudo ip tuntap add dev {tap} mode tap user $USER\n  \
         sudo ip link set {tap} master {bridge} up\n\
         and name it in the interface: <target dev='{tap}'/>"
    )]
    Permission {
        bridge: String,
        tap: String,
        source: std::io::Error,
    },
    #[error("TAP device '{tap}': {what}: {source}")]
    Setup {
        tap: String,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("TAP device '{tap}' is not on bridge '{bridge}' and Vireo may not add it (run `sudo ip link set {tap} master {bridge} up`)")]
    NotOnBridge { tap: String, bridge: String },
}

/// `struct ifreq` with the member used here: a name and flags or an index.
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: [u8; 24],
}

impl IfReq {
    fn new(name: &str) -> Self {
        let mut req = IfReq {
            name: [0; libc::IFNAMSIZ],
            data: [0; 24],
        };
        for (dst, &src) in req.name.iter_mut().zip(name.as_bytes().iter().take(15)) {
            *dst = src as libc::c_char;
        }
        req
    }

    fn name(&self) -> String {
        let bytes: Vec<u8> = self
            .name
            .iter()
            .take_while(|&&c| c != 0)
            .map(|&c| c as u8)
            .collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }

    fn set_short(&mut self, value: i16) {
        self.data[..2].copy_from_slice(&value.to_ne_bytes());
    }

    fn short(&self) -> i16 {
        i16::from_ne_bytes([self.data[0], self.data[1]])
    }

    fn set_int(&mut self, value: i32) {
        self.data[..4].copy_from_slice(&value.to_ne_bytes());
    }
}

fn ioctl(fd: i32, request: libc::c_ulong, req: &mut IfReq) -> std::io::Result<()> {
    // SAFETY: every request used here reads or writes one struct ifreq,
    // which IfReq lays out (name, then a 24-byte union).
    if unsafe { libc::ioctl(fd, request as _, req as *mut IfReq) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// The bridge `tap` is a port of, from sysfs.
fn master_of(tap: &str) -> Option<String> {
    let link = std::fs::read_link(format!("/sys/class/net/{tap}/master")).ok()?;
    Some(link.file_name()?.to_string_lossy().into_owned())
}

/// A NIC's TAP device on a host bridge.
pub struct TapBackend {
    file: Arc<File>,
}

impl TapBackend {
    /// Opens (or creates) the TAP `target` (else a new `vireoN`) on
    /// `bridge`; frames read from it go to `sink`.
    pub fn new(
        bridge: &str,
        target: Option<&str>,
        sink: Arc<dyn FrameSink>,
    ) -> Result<Self, NetError> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/net/tun")
            .map_err(|e| NetError::Config(TapError::Open(e).to_string()))?;
        let mut req = IfReq::new(target.unwrap_or("vireo%d"));
        req.set_short((libc::IFF_TAP | libc::IFF_NO_PI) as i16);
        let tap_hint = target.unwrap_or("vireo0").to_string();
        ioctl(file.as_raw_fd(), TUNSETIFF, &mut req).map_err(|source| {
            let error = if source.raw_os_error() == Some(libc::EPERM) {
                TapError::Permission {
                    bridge: bridge.to_string(),
                    tap: tap_hint.clone(),
                    source,
                }
            } else {
                TapError::Setup {
                    tap: tap_hint.clone(),
                    what: "TUNSETIFF",
                    source,
                }
            };
            NetError::Config(error.to_string())
        })?;
        let tap = req.name();
        if master_of(&tap).as_deref() != Some(bridge) {
            attach(&tap, bridge).map_err(|e| NetError::Config(e.to_string()))?;
        }
        bring_up(&tap).map_err(|e| NetError::Config(e.to_string()))?;
        let file = Arc::new(file);
        let reader = file.clone();
        std::thread::Builder::new()
            .name(format!("tap-{tap}"))
            .spawn(move || {
                crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Device);
                let mut buf = vec![0u8; 65536];
                loop {
                    match (&*reader).read(&mut buf) {
                        Ok(0) => break,
                        Ok(n) => sink.deliver(&buf[..n]),
                        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            warn!("reading TAP device {tap}: {e}; the NIC is unplugged");
                            break;
                        }
                    }
                }
            })?;
        Ok(Self { file })
    }
}

/// Adds `tap` to `bridge` (needs CAP_NET_ADMIN).
fn attach(tap: &str, bridge: &str) -> Result<(), TapError> {
    let setup = |what, source| TapError::Setup {
        tap: tap.to_string(),
        what,
        source,
    };
    let socket = control_socket().map_err(|e| setup("socket", e))?;
    let index = std::fs::read_to_string(format!("/sys/class/net/{tap}/ifindex"))
        .ok()
        .and_then(|i| i.trim().parse::<i32>().ok())
        .ok_or_else(|| {
            setup(
                "ifindex",
                std::io::Error::from(std::io::ErrorKind::NotFound),
            )
        })?;
    let mut req = IfReq::new(bridge);
    req.set_int(index);
    ioctl(socket.as_raw_fd(), SIOCBRADDIF, &mut req).map_err(|source| {
        if source.raw_os_error() == Some(libc::EPERM) {
            TapError::NotOnBridge {
                tap: tap.to_string(),
                bridge: bridge.to_string(),
            }
        } else {
            setup("adding it to the bridge", source)
        }
    })
}

/// Sets IFF_UP on `tap` unless it is up already.
fn bring_up(tap: &str) -> Result<(), TapError> {
    let setup = |what, source| TapError::Setup {
        tap: tap.to_string(),
        what,
        source,
    };
    let socket = control_socket().map_err(|e| setup("socket", e))?;
    let mut req = IfReq::new(tap);
    ioctl(socket.as_raw_fd(), libc::SIOCGIFFLAGS as _, &mut req)
        .map_err(|e| setup("SIOCGIFFLAGS", e))?;
    let flags = req.short();
    if flags & libc::IFF_UP as i16 != 0 {
        return Ok(());
    }
    req.set_short(flags | libc::IFF_UP as i16);
    ioctl(socket.as_raw_fd(), libc::SIOCSIFFLAGS as _, &mut req)
        .map_err(|e| setup("bringing it up", e))
}

fn control_socket() -> std::io::Result<std::os::fd::OwnedFd> {
    use std::os::fd::FromRawFd;
    // SAFETY: socket() returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned here alone.
    Ok(unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) })
}

impl NetBackend for TapBackend {
    fn send(&mut self, frame: &[u8]) {
        // A TAP that is down or full drops the frame, as a wire would.
        let _ = (&*self.file).write(frame);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ifreq_is_the_kernels_size() {
        assert_eq!(std::mem::size_of::<IfReq>(), 40);
        let mut req = IfReq::new("a-very-long-interface-name");
        assert_eq!(req.name(), "a-very-long-int");
        req.set_short(0x1002);
        assert_eq!(req.short(), 0x1002);
    }

    #[test]
    fn the_permission_error_says_what_to_do() {
        let text = TapError::Permission {
            bridge: "br0".into(),
            tap: "vireo0".into(),
            source: std::io::Error::from_raw_os_error(libc::EPERM),
        }
        .to_string();
        assert!(text.contains("sudo ip tuntap add dev vireo0 mode tap user $USER"));
        assert!(text.contains("sudo ip link set vireo0 master br0 up"));
        assert!(text.contains("<target dev='vireo0'/>"));
    }
}
