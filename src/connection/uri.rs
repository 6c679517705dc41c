//! Connection URIs: which engine a command talks to, as virsh decides it
//! (`-c URI`, then `VIREO_DEFAULT_URI`, then `LIBVIRT_DEFAULT_URI`), and
//! the parts of a libvirt URI the window shows and the console tunnel
//! needs (transport, user, host, port, SSH options). The grammar is
//! libvirt's (<https://libvirt.org/uri.html>):
//! `driver[+transport]://[user@][host][:port]/[path][?extraparameters]`.

/// Vireo's own store and VMM on this computer.
pub const LOCAL_URI: &str = "vireo:///session";

/// The URI a command should use: `explicit` (`-c`), else the environment;
/// `None` means Vireo's own store, as without any of them.
pub fn resolve_uri(explicit: Option<&str>) -> Option<String> {
    let from_env = |var: &str| std::env::var(var).ok().filter(|v| !v.trim().is_empty());
    explicit
        .map(str::to_string)
        .or_else(|| from_env("VIREO_DEFAULT_URI"))
        .or_else(|| from_env("LIBVIRT_DEFAULT_URI"))
}

/// What a URI names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConnectionUri {
    /// `vireo:///session` (or any `vireo:` URI).
    Local,
    Libvirt(LibvirtUri),
}

/// The parts of a libvirt URI.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LibvirtUri {
    /// `qemu`, `test`, `xen`…
    pub driver: String,
    /// `ssh`, `tls`, `tcp`, `unix`, `libssh2`…; empty for the default.
    pub transport: String,
    pub user: Option<String>,
    pub host: Option<String>,
    pub port: Option<u16>,
    /// `/system`, `/session`, `/default`…
    pub path: String,
    /// `?keyfile=…&no_verify=1&socket=…`, decoded.
    pub params: Vec<(String, String)>,
}

impl ConnectionUri {
    pub fn parse(uri: &str) -> Self {
        let uri = uri.trim();
        if uri.starts_with("vireo:") {
            return ConnectionUri::Local;
        }
        ConnectionUri::Libvirt(LibvirtUri::parse(uri))
    }
}

impl LibvirtUri {
    pub fn parse(uri: &str) -> Self {
        let (scheme, rest) = uri.split_once("://").unwrap_or((uri, ""));
        let (driver, transport) = scheme.split_once('+').unwrap_or((scheme, ""));
        let (rest, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, path) = match rest.find('/') {
            Some(at) => (&rest[..at], &rest[at..]),
            None => (rest, ""),
        };
        let (user, hostport) = match authority.rsplit_once('@') {
            Some((user, hostport)) => (Some(percent_decode(user)), hostport),
            None => (None, authority),
        };
        let (host, port) = split_host_port(hostport);
        let params = query
            .split('&')
            .filter(|p| !p.is_empty())
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap_or((p, ""));
                (percent_decode(k), percent_decode(v))
            })
            .collect();
        LibvirtUri {
            driver: driver.to_string(),
            transport: transport.to_string(),
            user,
            host: (!host.is_empty()).then(|| host.to_string()),
            port,
            path: path.to_string(),
            params,
        }
    }

    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Whether the connection goes through an SSH child process (where
    /// libvirt cannot pass file descriptors, so the console is tunnelled).
    pub fn is_ssh(&self) -> bool {
        self.transport == "ssh"
    }

    /// What the window calls the connection: "QEMU/KVM on host (user)",
    /// "QEMU/KVM", "Test" — virt-manager's naming, untranslated parts only.
    pub fn hypervisor_label(&self) -> &str {
        match self.driver.as_str() {
            "qemu" => "QEMU/KVM",
            "test" => "Test",
            "xen" => "Xen",
            "lxc" => "LXC",
            "ch" => "Cloud Hypervisor",
            "bhyve" => "bhyve",
            other => other,
        }
    }
}

/// Builds a libvirt URI from the Add Connection dialog's fields, as
/// virt-manager does: `driver[+ssh]://[user@]host/system`, or the local
/// `driver:///system` without a host.
pub fn build_uri(driver: &str, host: &str, user: &str, session: bool) -> String {
    let path = match driver {
        "test" => "default",
        _ if session => "session",
        _ => "system",
    };
    let host = host.trim();
    let user = user.trim();
    if host.is_empty() {
        return format!("{driver}:///{path}");
    }
    let at = if user.is_empty() {
        String::new()
    } else {
        format!("{user}@")
    };
    format!("{driver}+ssh://{at}{host}/{path}")
}

fn split_host_port(hostport: &str) -> (&str, Option<u16>) {
    // [::1]:22
    if let Some(rest) = hostport.strip_prefix('[') {
        if let Some((host, after)) = rest.split_once(']') {
            return (host, after.strip_prefix(':').and_then(|p| p.parse().ok()));
        }
    }
    match hostport.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, port.parse().ok()),
        _ => (hostport, None),
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(byte) = u8::from_str_radix(hex, 16) {
                out.push(byte);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_part_of_an_ssh_uri() {
        let uri = LibvirtUri::parse(
            "qemu+ssh://root@127.0.0.1:2222/system?keyfile=/tmp/k%20ey&no_verify=1",
        );
        assert_eq!(uri.driver, "qemu");
        assert_eq!(uri.transport, "ssh");
        assert_eq!(uri.user.as_deref(), Some("root"));
        assert_eq!(uri.host.as_deref(), Some("127.0.0.1"));
        assert_eq!(uri.port, Some(2222));
        assert_eq!(uri.path, "/system");
        assert_eq!(uri.param("keyfile"), Some("/tmp/k ey"));
        assert_eq!(uri.param("no_verify"), Some("1"));
        assert!(uri.is_ssh());
    }

    #[test]
    fn local_uris_have_no_host() {
        let uri = LibvirtUri::parse("test:///default");
        assert_eq!(uri.driver, "test");
        assert_eq!(uri.host, None);
        assert_eq!(uri.path, "/default");
        assert_eq!(
            ConnectionUri::parse("vireo:///session"),
            ConnectionUri::Local
        );
        let v6 = LibvirtUri::parse("qemu+tls://[::1]:16514/system");
        assert_eq!(v6.host.as_deref(), Some("::1"));
        assert_eq!(v6.port, Some(16514));
    }

    #[test]
    fn builds_uris_as_virt_manager_does() {
        assert_eq!(build_uri("qemu", "", "", false), "qemu:///system");
        assert_eq!(build_uri("qemu", "", "", true), "qemu:///session");
        assert_eq!(
            build_uri("qemu", "host.example", "root", false),
            "qemu+ssh://root@host.example/system"
        );
        assert_eq!(build_uri("test", "", "", false), "test:///default");
    }
}
