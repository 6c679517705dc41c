//! Reaching a remote domain's VNC server when libvirt cannot hand over a
//! connected socket (`virDomainOpenGraphicsFD` needs descriptor passing,
//! which an SSH transport has not): as virt-manager does, through the same
//! SSH login the libvirt connection uses (`ssh -W listen:port host`, so
//! nothing needs installing on the host), or straight over TCP for
//! transports without SSH (`qemu+tls://`).
//!
//! Either way the console gets one end of a socket pair, so it reads one
//! kind of stream whatever carries it.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};

use super::uri::LibvirtUri;
use super::{EngineError, EngineResult, ErrorKind};
use crate::domain::{Domain, Element};

/// The first VNC `<graphics>` of a running domain's XML: where it listens
/// and on which port; `None` without one (or before a port is assigned).
pub fn vnc_listener(xml: &str) -> Option<(String, u16)> {
    let graphics = vnc_graphics(xml)?;
    let port = u16::try_from(graphics.port?).ok().filter(|p| *p > 0)?;
    let listen = graphics
        .listens
        .iter()
        .find_map(|l| l.address.clone())
        .or(graphics.listen)
        .unwrap_or_default();
    Some((listen, port))
}

/// The VNC password in a domain's XML (dumped with secure information).
pub fn vnc_password(xml: &str) -> Option<String> {
    vnc_graphics(xml)?.passwd.filter(|p| !p.is_empty())
}

fn vnc_graphics(xml: &str) -> Option<crate::domain::Graphics> {
    // Not validated: a libvirt host's definition may hold much that
    // Vireo does not run, and only the graphics matter here.
    let domain = Domain::from_element(Element::parse(xml).ok()?).ok()?;
    domain
        .graphics()
        .ok()?
        .into_iter()
        .find(|g| g.kind == "vnc")
}

/// What `virsh vncdisplay` prints for a listener: `address:display`, with
/// no address when it listens on every interface.
pub fn virsh_display(listen: &str, port: u16) -> String {
    let display = port.saturating_sub(5900);
    match listen {
        "" | "0.0.0.0" | "::" => format!(":{display}"),
        address => format!("{address}:{display}"),
    }
}

/// Opens a stream to the VNC server at `listen:port` on the host `uri`
/// names: over SSH when the connection uses SSH, else over TCP.
pub fn open(uri: &LibvirtUri, listen: &str, port: u16) -> EngineResult<UnixStream> {
    // A wildcard listener is reached on the host's own loopback.
    let target = match listen {
        "" | "0.0.0.0" | "::" => "127.0.0.1",
        address => address,
    };
    if uri.is_ssh() {
        return ssh_tunnel(uri, target, port);
    }
    let host = match (&uri.host, target) {
        (Some(host), "127.0.0.1" | "::1" | "localhost") => host.clone(),
        (None, _) => target.to_string(),
        (Some(_), address) => address.to_string(),
    };
    tcp_relay(&host, port)
}

/// The `ssh` arguments for reaching `target:port` through the host of
/// `uri`, with the URI's user, port, key and host-key policy.
pub fn ssh_arguments(uri: &LibvirtUri, target: &str, port: u16) -> Vec<String> {
    let mut args = vec![
        // A prompt would wait forever: nobody sees it. libvirt's own
        // connection has logged in with the same key or agent already.
        "-o".to_string(),
        "BatchMode=yes".to_string(),
        "-o".to_string(),
        "ConnectTimeout=15".to_string(),
    ];
    if let Some(port) = uri.port {
        args.extend(["-p".to_string(), port.to_string()]);
    }
    if let Some(user) = &uri.user {
        args.extend(["-l".to_string(), user.clone()]);
    }
    if let Some(key) = uri.param("keyfile") {
        args.extend(["-i".to_string(), key.to_string()]);
    }
    if uri.param("no_verify") == Some("1") {
        args.extend([
            "-o".to_string(),
            "StrictHostKeyChecking=no".to_string(),
            "-o".to_string(),
            "UserKnownHostsFile=/dev/null".to_string(),
        ]);
    }
    if let Some(known) = uri.param("known_hosts") {
        args.extend(["-o".to_string(), format!("UserKnownHostsFile={known}")]);
    }
    let target = if target.contains(':') {
        format!("[{target}]")
    } else {
        target.to_string()
    };
    args.extend([
        "-W".to_string(),
        format!("{target}:{port}"),
        "--".to_string(),
        uri.host.clone().unwrap_or_else(|| "localhost".into()),
    ]);
    args
}

/// How long the tunnel may take to reach the VNC server: ssh's own
/// `ConnectTimeout` and a login.
const TUNNEL_READY: std::time::Duration = std::time::Duration::from_secs(30);

fn ssh_tunnel(uri: &LibvirtUri, target: &str, port: u16) -> EngineResult<UnixStream> {
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| EngineError::other(format!("socketpair: {e}")))?;
    let input: OwnedFd = theirs
        .try_clone()
        .map_err(|e| EngineError::other(format!("socketpair: {e}")))?
        .into();
    let output: OwnedFd = theirs.into();
    let program = ssh_program(uri);
    let mut child = Command::new(&program)
        .args(ssh_arguments(uri, target, port))
        .stdin(Stdio::from(input))
        .stdout(Stdio::from(output))
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| {
            EngineError::new(
                ErrorKind::Unsupported,
                format!("cannot run {program} for the console tunnel: {e}"),
            )
        })?;
    let mut stderr = child.stderr.take();
    // A VNC server speaks first (RFB's ProtocolVersion), so its first
    // bytes say the tunnel is through; an end of stream first says ssh
    // gave up, and why is on its stderr. Without this wait the console
    // would only see an early end of file.
    match first_bytes(&ours, TUNNEL_READY) {
        Arrival::Data => {}
        Arrival::Closed => {
            let _ = child.wait();
            let mut said = String::new();
            if let Some(stderr) = stderr.as_mut() {
                let _ = stderr.read_to_string(&mut said);
            }
            return Err(ssh_failure(said.trim()));
        }
        Arrival::TimedOut => {
            let _ = child.kill();
            let _ = child.wait();
            return Err(EngineError::new(
                ErrorKind::TimedOut,
                format!(
                    "the SSH tunnel to the console at {target}:{port} gave no answer in {} s",
                    TUNNEL_READY.as_secs()
                ),
            ));
        }
    }
    // Reaped when the tunnel ends; what ssh said goes to the log.
    let _ = std::thread::Builder::new()
        .name("vnc-ssh-tunnel".into())
        .spawn(move || {
            let mut said = String::new();
            if let Some(mut stderr) = stderr {
                let _ = stderr.read_to_string(&mut said);
            }
            match child.wait() {
                Ok(status) if status.success() => {
                    tracing::debug!(said = said.trim(), "console tunnel ended")
                }
                status => tracing::warn!(?status, said = said.trim(), "console tunnel failed"),
            }
        });
    Ok(ours)
}

/// What came first on a stream.
#[derive(Debug, PartialEq, Eq)]
enum Arrival {
    Data,
    /// End of stream (or an error on it).
    Closed,
    TimedOut,
}

/// Waits up to `limit` for `stream` to have bytes or to end, without
/// taking any bytes from it.
fn first_bytes(stream: &UnixStream, limit: std::time::Duration) -> Arrival {
    use std::os::fd::AsRawFd;
    let deadline = std::time::Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        if left.is_zero() {
            return Arrival::TimedOut;
        }
        let mut poll = libc::pollfd {
            fd: stream.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = left.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for a descriptor `stream` owns.
        let ready = unsafe { libc::poll(&mut poll, 1, millis) };
        if ready < 0 {
            if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            return Arrival::Closed;
        }
        if ready == 0 {
            continue;
        }
        let mut byte = 0u8;
        // SAFETY: a one-byte buffer we own; MSG_PEEK leaves the byte queued.
        let seen = unsafe {
            libc::recv(
                stream.as_raw_fd(),
                (&mut byte as *mut u8).cast(),
                1,
                libc::MSG_PEEK | libc::MSG_DONTWAIT,
            )
        };
        return match seen {
            n if n > 0 => Arrival::Data,
            -1 if std::io::Error::last_os_error().kind() == std::io::ErrorKind::WouldBlock => {
                continue
            }
            _ => Arrival::Closed,
        };
    }
}

/// An ssh that exited before the tunnel was through, in the kind a
/// person tells apart, with ssh's own words.
fn ssh_failure(said: &str) -> EngineError {
    let lower = said.to_lowercase();
    let kind = if lower.contains("permission denied") {
        ErrorKind::AuthRefused
    } else if [
        "connection refused",
        "no route to host",
        "could not resolve",
        "name or service not known",
        "timed out",
        "network is unreachable",
    ]
    .iter()
    .any(|s| lower.contains(s))
    {
        ErrorKind::Unreachable
    } else {
        ErrorKind::Other
    };
    let said = if said.is_empty() {
        "ssh exited without a word"
    } else {
        said
    };
    EngineError::new(
        kind,
        format!("the SSH tunnel to the console failed: {said}"),
    )
}

/// The ssh program: the URI's `command=` (as libvirt's own SSH transport
/// takes it), else `VIREO_SSH`, else `ssh` on the PATH.
fn ssh_program(uri: &LibvirtUri) -> String {
    uri.param("command")
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .or_else(|| std::env::var("VIREO_SSH").ok())
        .unwrap_or_else(|| "ssh".into())
}

/// A TCP connection to `host:port`, carried over a socket pair by two
/// copying threads.
fn tcp_relay(host: &str, port: u16) -> EngineResult<UnixStream> {
    use std::net::ToSocketAddrs;
    let address = (host, port)
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| {
            EngineError::new(ErrorKind::Unreachable, format!("cannot resolve {host}"))
        })?;
    let tcp = std::net::TcpStream::connect_timeout(&address, std::time::Duration::from_secs(15))
        .map_err(|e| {
            EngineError::new(
                ErrorKind::Unreachable,
                format!("cannot reach the console at {host}:{port}: {e}"),
            )
        })?;
    let (ours, theirs) =
        UnixStream::pair().map_err(|e| EngineError::other(format!("socketpair: {e}")))?;
    let pump = |mut from: Box<dyn Read + Send>, mut to: Box<dyn Write + Send>| {
        move || {
            let _ = std::io::copy(&mut from, &mut to);
        }
    };
    let clone_error = |e: std::io::Error| EngineError::other(format!("socket: {e}"));
    let tcp_in = tcp.try_clone().map_err(clone_error)?;
    let ours_in = ours.try_clone().map_err(clone_error)?;
    std::thread::spawn(pump(Box::new(tcp_in), Box::new(ours_in)));
    std::thread::spawn(pump(Box::new(ours), Box::new(tcp)));
    Ok(theirs)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "<domain type='kvm'><name>g</name><devices>\
        <graphics type='spice' port='5930'/>\
        <graphics type='vnc' port='5901' autoport='yes' listen='127.0.0.1' passwd='s3cret'>\
        <listen type='address' address='127.0.0.1'/></graphics></devices></domain>";

    #[test]
    fn finds_the_vnc_listener_and_password() {
        assert_eq!(vnc_listener(LIVE), Some(("127.0.0.1".into(), 5901)));
        assert_eq!(vnc_password(LIVE).as_deref(), Some("s3cret"));
        let off =
            "<domain><name>g</name><devices><graphics type='vnc' port='-1'/></devices></domain>";
        assert_eq!(vnc_listener(off), None);
    }

    #[test]
    fn displays_as_virsh_does() {
        assert_eq!(virsh_display("127.0.0.1", 5900), "127.0.0.1:0");
        assert_eq!(virsh_display("0.0.0.0", 5907), ":7");
    }

    #[test]
    fn ssh_reuses_the_uris_login() {
        let uri = LibvirtUri::parse("qemu+ssh://root@127.0.0.1:2222/system?keyfile=/k&no_verify=1");
        let args = ssh_arguments(&uri, "127.0.0.1", 5900).join(" ");
        assert!(args.contains("-p 2222"), "{args}");
        assert!(args.contains("-l root"), "{args}");
        assert!(args.contains("-i /k"), "{args}");
        assert!(args.contains("StrictHostKeyChecking=no"), "{args}");
        assert!(args.ends_with("-W 127.0.0.1:5900 -- 127.0.0.1"), "{args}");
    }

    #[test]
    fn ssh_is_the_uris_command_as_for_libvirt() {
        let uri = LibvirtUri::parse("qemu+ssh://h/system?command=/opt/bin/my-ssh");
        assert_eq!(ssh_program(&uri), "/opt/bin/my-ssh");
    }

    #[test]
    fn a_tunnel_that_ends_first_is_told_from_one_that_answers() {
        let (a, b) = UnixStream::pair().unwrap();
        let short = std::time::Duration::from_millis(50);
        assert_eq!(first_bytes(&a, short), Arrival::TimedOut);
        (&b).write_all(b"RFB 003.008\n").unwrap();
        assert_eq!(first_bytes(&a, short), Arrival::Data);
        // Peeked, not taken: the console reads the greeting whole.
        let mut greeting = [0u8; 12];
        (&a).read_exact(&mut greeting).unwrap();
        assert_eq!(&greeting, b"RFB 003.008\n");
        drop(b);
        assert_eq!(first_bytes(&a, short), Arrival::Closed);
    }

    #[test]
    fn ssh_failures_read_as_their_kind() {
        let refused = ssh_failure("root@h: Permission denied (publickey).");
        assert_eq!(refused.kind, ErrorKind::AuthRefused);
        let down = ssh_failure("ssh: connect to host h port 22: Connection refused");
        assert_eq!(down.kind, ErrorKind::Unreachable);
        let key = ssh_failure("Host key verification failed.");
        assert!(
            key.detail.ends_with("Host key verification failed."),
            "{key}"
        );
    }
}
