//! The switch of an isolated network (libvirt `<network>` without
//! `<forward>`): a small process, `vireo __netd NAME`, that `net-start`
//! starts and `net-destroy` stops. It listens on a unix `SOCK_SEQPACKET`
//! socket in the runtime directory (`net-NAME.sock`); every VM NIC on the
//! network connects to it ([`SwitchPort`]) and sends and receives one
//! Ethernet frame per packet, the way QEMU's `-netdev stream`/`dgram`
//! carry frames between QEMU processes, with no privileges and no host
//! device.
//!
//! The switch learns which port each source MAC address sits behind,
//! sends unicast frames to that port only, and floods broadcast,
//! multicast and unknown destinations to all other ports. It answers
//! DHCP itself ([`super::dhcp`]) and keeps its leases in
//! `networks/NAME.leases` in the runtime directory for `net-dhcp-leases`.
//! There is no host side: frames never leave the VMs of the network.
//!
//! Not emulated: VLANs, STP, MAC ageing (a MAC moves when it is seen on
//! another port, and goes when its port closes), DNS.

use std::collections::HashMap;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tracing::{debug, info, warn};

use super::dhcp::{DhcpConfig, DhcpServer, Lease};
use super::{FrameSink, NetBackend, NetError};

/// The largest frame carried (a jumbo frame; the guests send 1514).
const MAX_FRAME: usize = 65536;

/// The socket of network `name`'s switch.
pub fn socket_path(name: &str) -> PathBuf {
    crate::paths::runtime_dir().join(format!("net-{name}.sock"))
}

/// Where the switch of `name` keeps its DHCP leases.
pub fn leases_path(name: &str) -> PathBuf {
    crate::paths::runtime_dir()
        .join("networks")
        .join(format!("{name}.leases"))
}

/// The leases the switch of `name` gave (none if it never ran).
pub fn read_leases(name: &str) -> Vec<Lease> {
    std::fs::read(leases_path(name))
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .unwrap_or_default()
}

fn sockaddr(path: &Path) -> std::io::Result<(libc::sockaddr_un, libc::socklen_t)> {
    use std::os::unix::ffi::OsStrExt;
    // SAFETY: sockaddr_un is plain data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_un = unsafe { std::mem::zeroed() };
    addr.sun_family = libc::AF_UNIX as libc::sa_family_t;
    let bytes = path.as_os_str().as_bytes();
    if bytes.len() >= addr.sun_path.len() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("socket path too long: {}", path.display()),
        ));
    }
    for (dst, &src) in addr.sun_path.iter_mut().zip(bytes) {
        *dst = src as libc::c_char;
    }
    Ok((
        addr,
        std::mem::size_of::<libc::sockaddr_un>() as libc::socklen_t,
    ))
}

fn seqpacket() -> std::io::Result<OwnedFd> {
    // SAFETY: socket() returns a new descriptor or -1.
    let fd = unsafe { libc::socket(libc::AF_UNIX, libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just created and is owned here alone.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Connects to the switch listening at `path`.
pub fn connect(path: &Path) -> std::io::Result<OwnedFd> {
    let fd = seqpacket()?;
    let (addr, len) = sockaddr(path)?;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes.
    let rc = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            len,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

fn listen(path: &Path) -> std::io::Result<OwnedFd> {
    let fd = seqpacket()?;
    let _ = std::fs::remove_file(path);
    let (addr, len) = sockaddr(path)?;
    // SAFETY: addr is a valid sockaddr_un of `len` bytes.
    let rc = unsafe {
        libc::bind(
            fd.as_raw_fd(),
            std::ptr::from_ref(&addr).cast::<libc::sockaddr>(),
            len,
        )
    };
    // SAFETY: listen on a descriptor we own.
    if rc != 0 || unsafe { libc::listen(fd.as_raw_fd(), 16) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(fd)
}

/// One packet into `buf`; Ok(0) when the peer closed.
fn recv(fd: RawFd, buf: &mut [u8]) -> std::io::Result<usize> {
    loop {
        // SAFETY: buf is valid for buf.len() bytes.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Sends one packet without waiting: a full peer loses the frame, as a
/// congested wire would.
fn send(fd: RawFd, frame: &[u8]) {
    // SAFETY: frame is valid for frame.len() bytes.
    unsafe {
        libc::send(
            fd,
            frame.as_ptr().cast(),
            frame.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
}

/// A VM NIC's connection to its network's switch.
pub struct SwitchPort {
    fd: Arc<OwnedFd>,
}

impl SwitchPort {
    /// Connects to network `name`'s switch; received frames go to `sink`.
    pub fn new(name: &str, socket: &Path, sink: Arc<dyn FrameSink>) -> Result<Self, NetError> {
        let fd = Arc::new(connect(socket).map_err(|e| {
            NetError::Config(format!(
                "network '{name}' is not running ({e} on {}); start it with `vireo net-start {name}`",
                socket.display()
            ))
        })?);
        let reader = fd.clone();
        std::thread::Builder::new()
            .name(format!("net-{name}"))
            .spawn(move || {
                crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Device);
                let mut buf = vec![0u8; MAX_FRAME];
                while let Ok(n) = recv(reader.as_raw_fd(), &mut buf) {
                    if n == 0 {
                        warn!("the switch closed the connection; the NIC is unplugged");
                        break;
                    }
                    sink.deliver(&buf[..n]);
                }
            })?;
        Ok(Self { fd })
    }
}

impl NetBackend for SwitchPort {
    fn send(&mut self, frame: &[u8]) {
        send(self.fd.as_raw_fd(), frame);
    }
}

impl Drop for SwitchPort {
    fn drop(&mut self) {
        // SAFETY: shutdown on a descriptor we own ends the reader thread.
        unsafe { libc::shutdown(self.fd.as_raw_fd(), libc::SHUT_RDWR) };
    }
}

/// The switch's state, shared by the threads serving its ports.
struct Switch {
    ports: HashMap<u64, Arc<OwnedFd>>,
    macs: HashMap<[u8; 6], u64>,
    dhcp: DhcpServer,
    leases_path: PathBuf,
}

impl Switch {
    /// Forwards `frame`, which came in on port `from`.
    fn forward(&mut self, from: u64, frame: &[u8]) {
        let (Some(dst), Some(src)) = (frame.get(..6), frame.get(6..12)) else {
            return;
        };
        let (Ok(dst), Ok(src)) = (<[u8; 6]>::try_from(dst), <[u8; 6]>::try_from(src)) else {
            return;
        };
        if src[0] & 1 == 0 {
            self.macs.insert(src, from);
        }
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let (reply, changed) = self.dhcp.handle(frame, now);
        if changed {
            self.save_leases();
        }
        if let Some(reply) = reply {
            if let Some(port) = self.ports.get(&from) {
                send(port.as_raw_fd(), &reply);
            }
            return;
        }
        if dst[0] & 1 == 0 {
            if let Some(port) = self.macs.get(&dst).and_then(|p| self.ports.get(p)) {
                send(port.as_raw_fd(), frame);
                return;
            }
        }
        for (&id, port) in &self.ports {
            if id != from {
                send(port.as_raw_fd(), frame);
            }
        }
    }

    fn save_leases(&self) {
        match serde_json::to_vec(&self.dhcp.leases) {
            Ok(bytes) => {
                if let Err(e) = crate::fsutil::atomic_write(&self.leases_path, &bytes) {
                    warn!(path = %self.leases_path.display(), "cannot store the DHCP leases: {e}");
                }
            }
            Err(e) => warn!("cannot encode the DHCP leases: {e}"),
        }
    }
}

/// Runs network `name`'s switch until the process is killed.
pub fn run(name: &str, dhcp: DhcpConfig) -> Result<(), NetError> {
    let path = socket_path(name);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let leases_path = leases_path(name);
    if let Some(dir) = leases_path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let listener = listen(&path)?;
    info!(socket = %path.display(), "switch of network '{name}' running");
    let switch = Arc::new(Mutex::new(Switch {
        ports: HashMap::new(),
        macs: HashMap::new(),
        dhcp: DhcpServer::new(dhcp, read_leases(name)),
        leases_path,
    }));
    for id in 0u64.. {
        // SAFETY: accept4 on our listening socket; no address wanted.
        let fd = unsafe {
            libc::accept4(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                libc::SOCK_CLOEXEC,
            )
        };
        if fd < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e.into());
        }
        // SAFETY: accept4 returned a new descriptor, owned here alone.
        let port = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        debug!(port = id, "a NIC connected");
        lock(&switch).ports.insert(id, port.clone());
        let switch = switch.clone();
        std::thread::spawn(move || {
            let mut buf = vec![0u8; MAX_FRAME];
            while let Ok(n) = recv(port.as_raw_fd(), &mut buf) {
                if n == 0 {
                    break;
                }
                lock(&switch).forward(id, &buf[..n]);
            }
            let mut switch = lock(&switch);
            switch.ports.remove(&id);
            switch.macs.retain(|_, p| *p != id);
            debug!(port = id, "a NIC disconnected");
        });
    }
    Ok(())
}

fn lock(switch: &Mutex<Switch>) -> std::sync::MutexGuard<'_, Switch> {
    switch.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seqpacket_keeps_frame_boundaries() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.sock");
        let listener = listen(&path).unwrap();
        let client = connect(&path).unwrap();
        // SAFETY: accept on our listening socket.
        let server = unsafe {
            OwnedFd::from_raw_fd(libc::accept(
                listener.as_raw_fd(),
                std::ptr::null_mut(),
                std::ptr::null_mut(),
            ))
        };
        send(client.as_raw_fd(), &[1; 60]);
        send(client.as_raw_fd(), &[2; 1514]);
        let mut buf = [0u8; 4096];
        assert_eq!(recv(server.as_raw_fd(), &mut buf).unwrap(), 60);
        assert_eq!(recv(server.as_raw_fd(), &mut buf).unwrap(), 1514);
        drop(client);
        assert_eq!(recv(server.as_raw_fd(), &mut buf).unwrap(), 0);
    }
}
