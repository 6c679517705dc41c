//! Virtual network definitions (libvirt network XML), stored like domains:
//! `<config>/networks/NAME.xml`, autostart markers in
//! `<config>/networks/autostart/`, and the active ones marked in
//! `<run>/networks/`.
//!
//! Understood: `<name>`, `<uuid>`, `<forward mode=>` (none = NAT in
//! libvirt), `<bridge name=>`, and the IPv4 `<ip address= netmask=|prefix=>`
//! with `<tftp root=>` and `<dhcp><bootp file=>`. Everything else is kept
//! as written.
//!
//! Vireo's NAT networks are user-mode (libslirp) inside each VM process:
//! starting one creates no host bridge or firewall rule, it marks the
//! network usable. Every VM on it sees the network's addressing, but the
//! VMs do not see each other (each has its own NAT).
//!
//! Isolated networks (no `<forward>`) run a switch process of their own
//! ([`crate::net::switch`]) from `net-start` to `net-destroy`: the VMs on one
//! see each other and its DHCP server, and nothing else. Its pid is in
//! the network's active marker. Bridged networks (`<forward
//! mode='bridge'/>`) use a bridge the host already has; starting one
//! checks that it exists.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use super::files::DefinitionFiles;
use crate::domain::xml::Element;
use crate::net::UserNetConfig;

/// Why a network verb failed.
#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("network XML: {0}")]
    Xml(String),
    #[error("failed to get network '{0}'\nerror: Network not found: no network with matching name '{0}'")]
    NotFound(String),
    #[error("network '{0}' is already active")]
    AlreadyActive(String),
    #[error("network '{0}' is not active")]
    NotActive(String),
    #[error("network '{name}': forward mode '{mode}' is not supported yet (Vireo runs NAT networks in user mode)")]
    Unsupported { name: String, mode: String },
    #[error("network '{name}': {message}")]
    Switch { name: String, message: String },
    #[error("network '{0}' is transient: it exists while it runs and goes away when destroyed; `vireo net-define` makes a network that stays")]
    Transient(String),
    #[error("network '{0}' already exists")]
    Exists(String),
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> NetworkError {
    let path = path.to_path_buf();
    move |source| NetworkError::Io { what, path, source }
}

/// One network definition.
#[derive(Debug, Clone)]
pub struct NetworkDef {
    root: Element,
}

impl NetworkDef {
    pub fn parse(xml: &str) -> Result<Self, NetworkError> {
        let root = Element::parse(xml).map_err(|e| NetworkError::Xml(e.to_string()))?;
        if root.name != "network" {
            return Err(NetworkError::Xml(format!(
                "the root element is <{}>, not <network>",
                root.name
            )));
        }
        let def = Self { root };
        let name = def.name();
        if name.is_empty() || name.contains('/') || name.starts_with('.') {
            return Err(NetworkError::Xml(format!("bad network name '{name}'")));
        }
        def.user_config()
            .map_err(|e| NetworkError::Xml(e.to_string()))?;
        Ok(def)
    }

    /// libvirt's `default` network: NAT on virbr0, 192.168.122.0/24.
    pub fn default_network() -> Self {
        let uuid = crate::ids::generate_uuid().unwrap_or_default();
        Self::parse(&format!(
            "<network>\n  <name>default</name>\n  <uuid>{uuid}</uuid>\n  <forward mode='nat'/>\n  <bridge name='virbr0' stp='on' delay='0'/>\n  <ip address='192.168.122.1' netmask='255.255.255.0'>\n    <dhcp>\n      <range start='192.168.122.2' end='192.168.122.254'/>\n    </dhcp>\n  </ip>\n</network>\n"
        ))
        .expect("the built-in default network parses")
    }

    pub fn name(&self) -> String {
        self.root
            .child_text("name")
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    pub fn uuid(&self) -> Option<String> {
        self.root.child_text("uuid").map(|u| u.trim().to_string())
    }

    /// Adds a UUID if the definition has none.
    fn ensure_uuid(&mut self) {
        if self.uuid().is_none() {
            if let Ok(uuid) = crate::ids::generate_uuid() {
                self.root
                    .set_child_text("uuid", Some(&uuid), &["name", "uuid"]);
            }
        }
    }

    /// `<forward mode=>`; libvirt's default mode is nat when `<forward>`
    /// is present, and the network is isolated when it is absent.
    pub fn forward_mode(&self) -> String {
        match self.root.child("forward") {
            Some(f) => f.attr("mode").unwrap_or("nat").to_string(),
            None => "isolated".to_string(),
        }
    }

    pub fn bridge(&self) -> Option<String> {
        self.root
            .child("bridge")
            .and_then(|b| b.attr("name"))
            .map(str::to_string)
    }

    /// The guest-side addressing of a user-mode NAT on this network.
    pub fn user_config(&self) -> Result<UserNetConfig, crate::net::NetError> {
        let Some(ip) = self
            .root
            .children_named("ip")
            .find(|ip| ip.attr("family").unwrap_or("ipv4") == "ipv4")
        else {
            return Ok(UserNetConfig::default());
        };
        let bad = |what: &str| crate::net::NetError::Config(format!("network <ip>: bad {what}"));
        let address: Ipv4Addr = ip
            .attr("address")
            .and_then(|a| a.parse().ok())
            .ok_or_else(|| bad("address"))?;
        let prefix = match (ip.attr("prefix"), ip.attr("netmask")) {
            (Some(p), _) => p.parse::<u8>().map_err(|_| bad("prefix"))?,
            (None, Some(m)) => {
                let mask: Ipv4Addr = m.parse().map_err(|_| bad("netmask"))?;
                u32::from(mask).count_ones() as u8
            }
            (None, None) => 24,
        };
        if !(8..=30).contains(&prefix) {
            return Err(bad("prefix (8 to 30)"));
        }
        let mut config = UserNetConfig::for_network(address, prefix);
        config.gateway = address;
        if config.dns == config.gateway {
            config.dns = Ipv4Addr::from(u32::from(config.dns).wrapping_sub(1));
        }
        if let Some(start) = ip
            .child("dhcp")
            .and_then(|d| d.child("range"))
            .and_then(|r| r.attr("start"))
        {
            config.dhcp_start = start.parse().map_err(|_| bad("DHCP range start"))?;
        }
        config.tftp_root = ip
            .child("tftp")
            .and_then(|t| t.attr("root"))
            .map(PathBuf::from);
        config.boot_file = ip
            .child("dhcp")
            .and_then(|d| d.child("bootp"))
            .and_then(|b| b.attr("file"))
            .map(str::to_string);
        config.validate()?;
        Ok(config)
    }

    /// The DHCP server of an isolated network: the `<ip>` address serves,
    /// the `<dhcp><range>` (else the rest of the subnet) is handed out.
    pub fn dhcp_config(&self) -> Result<crate::net::dhcp::DhcpConfig, crate::net::NetError> {
        let user = self.user_config()?;
        let mask = u32::from(user.netmask());
        let last = (u32::from(user.network) | !mask).wrapping_sub(1);
        let end = self
            .root
            .children_named("ip")
            .find(|ip| ip.attr("family").unwrap_or("ipv4") == "ipv4")
            .and_then(|ip| ip.child("dhcp"))
            .and_then(|d| d.child("range"))
            .and_then(|r| r.attr("end"))
            .map(|e| {
                e.parse::<Ipv4Addr>().map_err(|_| {
                    crate::net::NetError::Config("network <ip>: bad DHCP range end".into())
                })
            })
            .transpose()?
            .unwrap_or(Ipv4Addr::from(last));
        if u32::from(end) < u32::from(user.dhcp_start)
            || u32::from(end) & mask != u32::from(user.network)
        {
            return Err(crate::net::NetError::Config(format!(
                "network <ip>: the DHCP range {}-{end} is not inside the network",
                user.dhcp_start
            )));
        }
        Ok(crate::net::dhcp::DhcpConfig {
            server: user.gateway,
            netmask: user.netmask(),
            start: user.dhcp_start,
            end,
            lease_secs: 3600,
        })
    }

    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }
}

/// The argument after which the switch process has the network name.
pub const SWITCH_VERB: &str = "__netd";

/// Whether `pid` is the switch process of network `name`.
fn process_is_switch(pid: u32, name: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    args.windows(2)
        .any(|w| w[0] == SWITCH_VERB.as_bytes() && w[1] == name.as_bytes())
}

/// Starts the switch of isolated network `name` (`vireo __netd NAME`) in
/// its own session, logging to `net-NAME.log`; returns its pid once it
/// accepts connections.
fn spawn_switch(name: &str) -> Result<u32, String> {
    use std::os::unix::process::CommandExt;
    let log_dir = crate::paths::log_dir();
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| format!("cannot create {}: {e}", log_dir.display()))?;
    let log_path = log_dir.join(format!("net-{name}.log"));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open the log {}: {e}", log_path.display()))?;
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the vireo program: {e}"))?;
    let mut command = std::process::Command::new(exe);
    command
        .arg(SWITCH_VERB)
        .arg(name)
        .stdin(std::process::Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    // SAFETY: setsid is async-signal-safe; it leaves the starter's session
    // so that terminal signals do not stop the network.
    unsafe {
        command.pre_exec(|| {
            if libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the switch: {e}"))?;
    let socket = crate::net::switch::socket_path(name);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if crate::net::switch::connect(&socket).is_ok() {
            return Ok(child.id());
        }
        if let Ok(Some(status)) = child.try_wait() {
            return Err(format!(
                "the switch exited ({status}); see {}",
                log_path.display()
            ));
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(format!(
                "the switch did not come up in 10 s; see {}",
                log_path.display()
            ));
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

/// A network and its state.
#[derive(Debug, Clone)]
pub struct Network {
    pub def: NetworkDef,
    pub active: bool,
    pub autostart: bool,
    /// Defined to stay (`net-define`); a transient network (`net-create`)
    /// exists only while it runs.
    pub persistent: bool,
}

/// Where network definitions and their state live. A transient network's
/// definition is in the runtime directory only (`networks/.transient/`),
/// gone with `net-destroy` or the end of the session.
pub struct NetworkStore {
    files: DefinitionFiles,
    transient: DefinitionFiles,
    run_dir: PathBuf,
}

impl NetworkStore {
    /// The user's store; creates and starts `default` on first use, as a
    /// libvirt installation ships it. Autostart networks start the first
    /// time the store is opened after the runtime directory was cleared
    /// (a new login session), the counterpart of libvirtd starting them at
    /// boot.
    pub fn open() -> Result<Self, NetworkError> {
        let store = Self::at(
            crate::paths::config_dir().join("networks"),
            crate::paths::runtime_dir().join("networks"),
        );
        if !store.files.dir().exists() {
            let mut default = NetworkDef::default_network();
            default.ensure_uuid();
            store.define(default)?;
            store.set_autostart("default", true)?;
        }
        if !store.run_dir.exists() {
            std::fs::create_dir_all(&store.run_dir).map_err(io("cannot create", &store.run_dir))?;
            for network in store.list()? {
                let mode = network.def.forward_mode();
                if network.autostart && (mode == "nat" || mode == "isolated") {
                    store.start(&network.def.name())?;
                }
            }
        }
        Ok(store)
    }

    pub fn at(dir: PathBuf, run_dir: PathBuf) -> Self {
        Self {
            files: DefinitionFiles::new(dir),
            transient: DefinitionFiles::new(run_dir.join(".transient")),
            run_dir,
        }
    }

    fn autostart_file(&self, name: &str) -> PathBuf {
        self.files.dir().join("autostart").join(name)
    }

    fn active_file(&self, name: &str) -> PathBuf {
        self.run_dir.join(name)
    }

    pub fn list(&self) -> Result<Vec<Network>, NetworkError> {
        let mut out = Vec::new();
        let mut names = self
            .files
            .names()
            .map_err(io("cannot read", self.files.dir()))?;
        names.extend(
            self.transient
                .names()
                .map_err(io("cannot read", self.transient.dir()))?,
        );
        names.sort();
        names.dedup();
        for name in names {
            match self.get(&name) {
                Ok(network) => out.push(network),
                Err(error) => tracing::warn!(
                    %error,
                    "skipping network {}",
                    self.files.path(&name).display()
                ),
            }
        }
        out.sort_by_key(|n| n.def.name());
        Ok(out)
    }

    pub fn get(&self, name: &str) -> Result<Network, NetworkError> {
        let read = |files: &DefinitionFiles| {
            files
                .read(name)
                .map_err(io("cannot read", &files.path(name)))
        };
        let (xml, persistent) = match read(&self.files)? {
            Some(xml) => (xml, true),
            None => (
                read(&self.transient)?.ok_or_else(|| NetworkError::NotFound(name.to_string()))?,
                false,
            ),
        };
        let def = NetworkDef::parse(&xml)?;
        let active = match std::fs::read_to_string(self.active_file(name)) {
            // An isolated network is active while its switch runs.
            Ok(pid) if def.forward_mode() == "isolated" => pid
                .trim()
                .parse()
                .is_ok_and(|pid| process_is_switch(pid, name)),
            Ok(_) => true,
            Err(_) => false,
        };
        Ok(Network {
            def,
            active,
            autostart: persistent && self.autostart_file(name).exists(),
            persistent,
        })
    }

    /// Stores `def` (replacing a definition of the same name).
    pub fn define(&self, mut def: NetworkDef) -> Result<NetworkDef, NetworkError> {
        def.ensure_uuid();
        let name = def.name();
        self.files
            .write(&name, &def.to_xml())
            .map_err(io("cannot write", &self.files.path(&name)))?;
        Ok(def)
    }

    /// `net-create`: a transient network from `def`, started at once and
    /// gone when destroyed.
    pub fn create(&self, mut def: NetworkDef) -> Result<NetworkDef, NetworkError> {
        def.ensure_uuid();
        let name = def.name();
        match self.get(&name) {
            Ok(_) => return Err(NetworkError::Exists(name)),
            Err(NetworkError::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        self.transient
            .write(&name, &def.to_xml())
            .map_err(io("cannot write", &self.transient.path(&name)))?;
        if let Err(error) = self.start(&name) {
            let _ = self.transient.remove(&name);
            return Err(error);
        }
        Ok(def)
    }

    pub fn undefine(&self, name: &str) -> Result<(), NetworkError> {
        if !self.get(name)?.persistent {
            return Err(NetworkError::Transient(name.to_string()));
        }
        self.files
            .remove(name)
            .map_err(io("cannot remove", &self.files.path(name)))?;
        let _ = std::fs::remove_file(self.autostart_file(name));
        Ok(())
    }

    pub fn start(&self, name: &str) -> Result<(), NetworkError> {
        let network = self.get(name)?;
        if network.active {
            return Err(NetworkError::AlreadyActive(name.to_string()));
        }
        let mode = network.def.forward_mode();
        let marker = match mode.as_str() {
            "nat" => String::new(),
            "isolated" => {
                let switch = |message| NetworkError::Switch {
                    name: name.to_string(),
                    message,
                };
                network
                    .def
                    .dhcp_config()
                    .map_err(|e| switch(e.to_string()))?;
                spawn_switch(name).map_err(switch)?.to_string()
            }
            // libvirt's bridge mode: the host's own bridge, made by the
            // administrator; the VMs' TAPs join it (see `crate::net::tap`).
            "bridge" => match network.def.bridge() {
                Some(bridge) if std::path::Path::new("/sys/class/net").join(&bridge).exists() => {
                    String::new()
                }
                Some(bridge) => {
                    return Err(NetworkError::Switch {
                        name: name.to_string(),
                        message: format!("the host has no bridge '{bridge}' (create it first, e.g. `sudo ip link add {bridge} type bridge`)"),
                    })
                }
                None => {
                    return Err(NetworkError::Switch {
                        name: name.to_string(),
                        message: "forward mode 'bridge' needs <bridge name=>".into(),
                    })
                }
            },
            _ => {
                return Err(NetworkError::Unsupported {
                    name: name.to_string(),
                    mode,
                })
            }
        };
        std::fs::create_dir_all(&self.run_dir).map_err(io("cannot create", &self.run_dir))?;
        let path = self.active_file(name);
        std::fs::write(&path, marker).map_err(io("cannot write", &path))
    }

    pub fn destroy(&self, name: &str) -> Result<(), NetworkError> {
        let network = self.get(name)?;
        if !network.active {
            return Err(NetworkError::NotActive(name.to_string()));
        }
        let path = self.active_file(name);
        if let Some(pid) = std::fs::read_to_string(&path)
            .ok()
            .and_then(|p| p.trim().parse::<u32>().ok())
            .filter(|&pid| process_is_switch(pid, name))
        {
            // SAFETY: kill sends a signal; the pid was just checked to be
            // this network's switch.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
            let _ = std::fs::remove_file(crate::net::switch::socket_path(name));
            let _ = std::fs::remove_file(crate::net::switch::leases_path(name));
        }
        std::fs::remove_file(&path).map_err(io("cannot remove", &path))?;
        if !network.persistent {
            self.transient
                .remove(name)
                .map_err(io("cannot remove", &self.transient.path(name)))?;
        }
        Ok(())
    }

    pub fn set_autostart(&self, name: &str, on: bool) -> Result<(), NetworkError> {
        if !self.get(name)?.persistent {
            return Err(NetworkError::Transient(name.to_string()));
        }
        let path = self.autostart_file(name);
        if on {
            let dir = self.files.dir().join("autostart");
            std::fs::create_dir_all(&dir).map_err(io("cannot create", &dir))?;
            std::fs::write(&path, b"").map_err(io("cannot write", &path))
        } else {
            match std::fs::remove_file(&path) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(io("cannot remove", &path)(e))
                }
                _ => Ok(()),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_network_addressing() {
        let def = NetworkDef::default_network();
        assert_eq!(def.forward_mode(), "nat");
        assert_eq!(def.bridge().as_deref(), Some("virbr0"));
        let config = def.user_config().unwrap();
        assert_eq!(config.gateway, Ipv4Addr::new(192, 168, 122, 1));
        assert_eq!(config.dhcp_start, Ipv4Addr::new(192, 168, 122, 2));
        assert_ne!(config.dns, config.gateway);
    }

    #[test]
    fn tftp_and_bootp_come_from_the_ip_element() {
        let def = NetworkDef::parse(
            "<network><name>pxe</name><forward mode='nat'/><ip address='10.9.0.1' prefix='24'><tftp root='/srv/tftp'/><dhcp><range start='10.9.0.100' end='10.9.0.200'/><bootp file='undionly.kpxe'/></dhcp></ip></network>",
        )
        .unwrap();
        let config = def.user_config().unwrap();
        assert_eq!(config.dhcp_start, Ipv4Addr::new(10, 9, 0, 100));
        assert_eq!(config.tftp_root, Some(PathBuf::from("/srv/tftp")));
        assert_eq!(config.boot_file.as_deref(), Some("undionly.kpxe"));
    }

    #[test]
    fn isolated_dhcp_range() {
        let def = NetworkDef::parse(
            "<network><name>iso</name><ip address='10.7.0.1' netmask='255.255.255.0'><dhcp><range start='10.7.0.50' end='10.7.0.60'/></dhcp></ip></network>",
        )
        .unwrap();
        assert_eq!(def.forward_mode(), "isolated");
        let dhcp = def.dhcp_config().unwrap();
        assert_eq!(dhcp.server, Ipv4Addr::new(10, 7, 0, 1));
        assert_eq!(dhcp.start, Ipv4Addr::new(10, 7, 0, 50));
        assert_eq!(dhcp.end, Ipv4Addr::new(10, 7, 0, 60));
        let whole = NetworkDef::parse(
            "<network><name>i2</name><ip address='10.8.0.1' prefix='24'/></network>",
        )
        .unwrap()
        .dhcp_config()
        .unwrap();
        assert_eq!(
            (whole.start, whole.end),
            (Ipv4Addr::new(10, 8, 0, 2), Ipv4Addr::new(10, 8, 0, 254))
        );
        assert!(NetworkDef::parse("<network><name>i3</name><ip address='10.9.0.1' prefix='24'><dhcp><range start='10.9.0.9' end='10.9.1.9'/></dhcp></ip></network>")
            .unwrap()
            .dhcp_config()
            .is_err());
    }

    #[test]
    fn store_lifecycle() {
        let dir = tempfile::tempdir().unwrap();
        let store = NetworkStore::at(dir.path().join("n"), dir.path().join("r"));
        let def =
            NetworkDef::parse("<network><name>lab</name><forward mode='nat'/></network>").unwrap();
        let def = store.define(def).unwrap();
        assert!(def.uuid().is_some());
        assert!(!store.get("lab").unwrap().active);
        store.start("lab").unwrap();
        assert!(matches!(
            store.start("lab"),
            Err(NetworkError::AlreadyActive(_))
        ));
        store.set_autostart("lab", true).unwrap();
        let lab = store.get("lab").unwrap();
        assert!(lab.active && lab.autostart);
        store.destroy("lab").unwrap();
        store.undefine("lab").unwrap();
        assert!(matches!(store.get("lab"), Err(NetworkError::NotFound(_))));
        let bridged = NetworkDef::parse(
            "<network><name>br</name><forward mode='bridge'/><bridge name='no-such-br9'/></network>",
        )
        .unwrap();
        store.define(bridged).unwrap();
        let error = store.start("br").unwrap_err().to_string();
        assert!(error.contains("no bridge 'no-such-br9'"), "{error}");
        let macvtap =
            NetworkDef::parse("<network><name>mv</name><forward mode='passthrough'/></network>")
                .unwrap();
        store.define(macvtap).unwrap();
        assert!(matches!(
            store.start("mv"),
            Err(NetworkError::Unsupported { .. })
        ));
    }
}
