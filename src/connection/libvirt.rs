//! The libvirt engine: any libvirt URI through libvirt's own client
//! library (`libvirt.so`, through the `virt` crate's bindings).
//!
//! How it links: `virt-sys` asks the linker for `-lvirt`; rustc passes
//! `--as-needed`, so only executables that reach this module (the `vireo`
//! binary, for its CLI and window) record `libvirt.so.0` as needed. No
//! code the VMM process runs imports this module.
//!
//! libvirt reports errors through a global callback that prints them to
//! stderr; [`init`] silences it (errors come back as values here) and
//! starts libvirt's default event loop on a thread of its own, which the
//! keepalive needs: a host that stops answering is then declared dead
//! within [`KEEPALIVE_INTERVAL`] × ([`KEEPALIVE_COUNT`] + 1) seconds, and
//! every call on it fails instead of hanging.

use std::ffi::CStr;
use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::os::unix::net::UnixStream;
use std::sync::Once;

use virt::connect::Connect;
use virt::domain::Domain;
use virt::error::Error as VirtError;
use virt::storage_pool::StoragePool;
use virt::storage_vol::StorageVol;
use virt::stream::Stream;
use virt::sys;

use super::uri::LibvirtUri;
use super::{
    DomainInfo, DomainRow, DomainState, Engine, EngineError, EngineResult, ErrorKind, NetworkRow,
    PoolRow, Power, Progress, Security, VolumeRow,
};

/// Seconds between keepalive probes, and probes missed before the
/// connection counts as dead (virt-manager's and virsh's defaults).
pub const KEEPALIVE_INTERVAL: i32 = 5;
pub const KEEPALIVE_COUNT: u32 = 3;

/// Bytes per stream packet (libvirt's own limit is 256 KiB).
const CHUNK: usize = 256 * 1024;

/// Silences libvirt's stderr printer and starts its event loop, once.
pub fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        virt::error::clear_error_callback();
        if virt::event::event_register_default_impl().is_ok() {
            let spawned = std::thread::Builder::new()
                .name("libvirt-events".into())
                .spawn(|| loop {
                    if virt::event::event_run_default_impl().is_err() {
                        std::thread::sleep(std::time::Duration::from_millis(100));
                    }
                });
            if let Err(e) = spawned {
                tracing::warn!(
                    "libvirt's event loop does not run ({e}); dead hosts are noticed late"
                );
            }
        }
    });
}

pub struct LibvirtEngine {
    uri: String,
    parsed: LibvirtUri,
    conn: Connect,
}

impl LibvirtEngine {
    /// Connects to `uri`. Blocks for as long as the host takes (an SSH
    /// login included): the window calls it through [`super::timeout`].
    pub fn open(uri: &str) -> EngineResult<Self> {
        init();
        let conn = Connect::open(Some(uri)).map_err(|e| opening_error(&e))?;
        // The test driver and some transports have no keepalive: fine.
        let _ = conn.set_keep_alive(KEEPALIVE_INTERVAL, KEEPALIVE_COUNT);
        Ok(LibvirtEngine {
            uri: uri.to_string(),
            parsed: LibvirtUri::parse(uri),
            conn,
        })
    }

    pub fn parsed_uri(&self) -> &LibvirtUri {
        &self.parsed
    }

    /// The host's name, as libvirt reports it.
    pub fn hostname(&self) -> EngineResult<String> {
        self.conn.hostname().map_err(|e| call_error(&e))
    }

    fn domain(&self, name: &str) -> EngineResult<Domain> {
        self.conn
            .lookup_domain_by_name(name)
            .map_err(|e| call_error(&e))
    }

    fn pool(&self, name: &str) -> EngineResult<StoragePool> {
        self.conn
            .lookup_storage_pool_by_name(name)
            .map_err(|e| call_error(&e))
    }

    fn row(domain: &Domain) -> EngineResult<DomainRow> {
        let (state, _) = domain.state().map_err(|e| call_error(&e))?;
        Ok(DomainRow {
            id: domain.id(),
            name: domain.name().map_err(|e| call_error(&e))?,
            uuid: domain.uuid_string().map_err(|e| call_error(&e))?,
            state: state_of(state.to_raw()),
        })
    }

    fn security(&self, domain: &Domain) -> EngineResult<Option<Security>> {
        // SAFETY: virSecurityModel is plain bytes; libvirt fills it and
        // NUL-terminates both strings on success.
        let mut model: sys::virSecurityModel = unsafe { std::mem::zeroed() };
        // SAFETY: a live connection's pointer and a struct of the size
        // libvirt writes.
        if unsafe { sys::virNodeGetSecurityModel(self.conn.as_ptr(), &mut model) } < 0 {
            let e = VirtError::last_error();
            if e.code().to_raw() == sys::VIR_ERR_NO_SUPPORT {
                return Ok(None);
            }
            return Err(call_error(&e));
        }
        // SAFETY: NUL-terminated by libvirt (zeroed before).
        let text = |chars: &[std::os::raw::c_char]| unsafe {
            CStr::from_ptr(chars.as_ptr())
                .to_string_lossy()
                .into_owned()
        };
        let model_name = text(&model.model);
        if model_name.is_empty() {
            return Ok(None);
        }
        // SAFETY: as above, for virSecurityLabel.
        let mut label: sys::virSecurityLabel = unsafe { std::mem::zeroed() };
        // SAFETY: a live domain's pointer and a struct of the size
        // libvirt writes.
        if unsafe { sys::virDomainGetSecurityLabel(domain.as_ptr(), &mut label) } < 0 {
            return Err(call_error(&VirtError::last_error()));
        }
        let label_text = text(&label.label);
        Ok(Some(Security {
            model: model_name,
            doi: text(&model.doi),
            label: (!label_text.is_empty()).then_some((label_text, label.enforcing != 0)),
        }))
    }

    /// The running domain's VNC `(listen address, port)`, from its live XML.
    pub fn vnc_address(&self, name: &str) -> EngineResult<Option<(String, u16)>> {
        let xml = self.xml(name, false)?;
        Ok(super::vnc_tunnel::vnc_listener(&xml))
    }

    fn volume(&self, path: &str) -> EngineResult<StorageVol> {
        self.conn
            .lookup_storage_vol_by_path(path)
            .map_err(|e| call_error(&e))
    }
}

impl Engine for LibvirtEngine {
    fn uri(&self) -> &str {
        &self.uri
    }

    fn is_alive(&self) -> bool {
        self.conn.is_alive().unwrap_or(false)
    }

    fn list(&self) -> EngineResult<Vec<DomainRow>> {
        let domains = self.conn.list_all_domains(0).map_err(|e| call_error(&e))?;
        let mut rows = domains
            .iter()
            .map(Self::row)
            .collect::<EngineResult<Vec<_>>>()?;
        super::sort_rows(&mut rows);
        Ok(rows)
    }

    fn lookup(&self, which: &str) -> EngineResult<DomainRow> {
        // As virsh: an id, then a UUID, then a name.
        if let Ok(id) = which.parse::<u32>() {
            if let Ok(domain) = self.conn.lookup_domain_by_id(id) {
                return Self::row(&domain);
            }
        }
        if which.len() == 36 && which.chars().filter(|c| *c == '-').count() == 4 {
            if let Ok(domain) = self.conn.lookup_domain_by_uuid_string(which) {
                return Self::row(&domain);
            }
        }
        match self.conn.lookup_domain_by_name(which) {
            Ok(domain) => Self::row(&domain),
            Err(e) if e.code().to_raw() == sys::VIR_ERR_NO_DOMAIN => Err(EngineError::new(
                ErrorKind::NoDomain,
                format!("failed to get domain '{which}'"),
            )),
            Err(e) => Err(call_error(&e)),
        }
    }

    fn info(&self, name: &str) -> EngineResult<DomainInfo> {
        let domain = self.domain(name)?;
        let row = Self::row(&domain)?;
        let info = domain.info().map_err(|e| call_error(&e))?;
        let os_type = domain.os_type().map_err(|e| call_error(&e))?;
        // virsh: "no limit" is an unsigned long's largest value.
        let max_memory_kib = (info.max_mem != u64::from(u32::MAX) && info.max_mem != u64::MAX)
            .then_some(info.max_mem);
        Ok(DomainInfo {
            cpu_time_ns: row.state.is_active().then_some(info.cpu_time),
            row,
            os_type,
            vcpus: info.nr_virt_cpu,
            max_memory_kib,
            used_memory_kib: info.memory,
            persistent: domain.is_persistent().ok(),
            autostart: domain.autostart().ok(),
            managed_save: domain.has_managed_save(0).ok(),
            security: self.security(&domain)?,
        })
    }

    fn xml(&self, name: &str, secure: bool) -> EngineResult<String> {
        let flags = if secure {
            sys::VIR_DOMAIN_XML_SECURE
        } else {
            0
        };
        self.domain(name)?
            .xml_desc(flags)
            .map_err(|e| call_error(&e))
    }

    fn inactive_xml(&self, name: &str) -> EngineResult<String> {
        self.domain(name)?
            .xml_desc(sys::VIR_DOMAIN_XML_SECURE | sys::VIR_DOMAIN_XML_INACTIVE)
            .map_err(|e| call_error(&e))
    }

    fn define(&self, xml: &str) -> EngineResult<String> {
        let domain = self
            .conn
            .define_domain_xml(xml)
            .map_err(|e| call_error(&e))?;
        domain.name().map_err(|e| call_error(&e))
    }

    fn undefine(&self, name: &str) -> EngineResult<()> {
        self.domain(name)?.undefine().map_err(|e| call_error(&e))
    }

    fn power(&self, name: &str, verb: Power) -> EngineResult<()> {
        let domain = self.domain(name)?;
        // Drivers word this differently (the test driver calls it an
        // internal error); virsh checks first, and so does this.
        if verb == Power::Start && domain.is_active().map_err(|e| call_error(&e))? {
            return Err(EngineError::new(
                ErrorKind::InvalidState,
                "Domain is already active",
            ));
        }
        match verb {
            Power::Start => domain.create(),
            Power::Shutdown => domain.shutdown(),
            Power::Destroy => domain.destroy(),
            Power::Reboot => domain.reboot(0),
            Power::Suspend => domain.suspend(),
            Power::Resume => domain.resume(),
        }
        .map_err(|e| call_error(&e))
    }

    fn screenshot(&self, name: &str) -> EngineResult<(Vec<u8>, String)> {
        let domain = self.domain(name)?;
        let stream = Stream::new(&self.conn, 0).map_err(|e| call_error(&e))?;
        let mime = domain
            .screenshot(&stream, 0, 0)
            .map_err(|e| call_error(&e))?;
        let mut image = Vec::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = stream.recv(&mut buf).map_err(|e| call_error(&e))?;
            if n <= 0 {
                break;
            }
            image.extend_from_slice(&buf[..n as usize]);
        }
        stream.finish().map_err(|e| call_error(&e))?;
        Ok((image, mime))
    }

    fn vnc_display(&self, name: &str) -> EngineResult<Option<String>> {
        let domain = self.domain(name)?;
        if !domain.is_active().map_err(|e| call_error(&e))? {
            return Err(EngineError::new(
                ErrorKind::InvalidState,
                "Domain is not running",
            ));
        }
        Ok(self
            .vnc_address(name)?
            .map(|(listen, port)| super::vnc_tunnel::virsh_display(&listen, port)))
    }

    fn open_vnc(&self, name: &str) -> EngineResult<UnixStream> {
        let domain = self.domain(name)?;
        // libvirt hands over a socket QEMU already accepted: no port, no
        // password, no tunnel. Only where descriptors can be passed (a
        // local UNIX socket); over SSH the port is tunnelled instead.
        if !self.parsed.is_ssh() {
            match domain.open_graphics_fd(0, sys::VIR_DOMAIN_OPEN_GRAPHICS_SKIPAUTH) {
                Ok(fd) => {
                    // SAFETY: libvirt returned a new socket descriptor we own.
                    return Ok(unsafe { UnixStream::from_raw_fd(fd as i32) });
                }
                Err(e) => tracing::debug!("no graphics descriptor ({e}); connecting to the port"),
            }
        }
        let (listen, port) = self.vnc_address(name)?.ok_or_else(|| {
            EngineError::new(
                ErrorKind::Unsupported,
                "the domain has no VNC display (add <graphics type='vnc'/> to its definition)",
            )
        })?;
        super::vnc_tunnel::open(&self.parsed, &listen, port)
    }

    fn open_console(&self, name: &str) -> EngineResult<UnixStream> {
        let domain = self.domain(name)?;
        let stream =
            Stream::new(&self.conn, sys::VIR_STREAM_NONBLOCK).map_err(|e| call_error(&e))?;
        domain
            .open_console(None, &stream, 0)
            .map_err(|e| call_error(&e))?;
        let (ours, theirs) =
            UnixStream::pair().map_err(|e| EngineError::other(format!("socketpair: {e}")))?;
        std::thread::Builder::new()
            .name("libvirt-console".into())
            .spawn(move || relay_console(stream, ours))
            .map_err(|e| EngineError::other(format!("cannot start the console relay: {e}")))?;
        Ok(theirs)
    }

    fn pools(&self) -> EngineResult<Vec<PoolRow>> {
        let pools = self
            .conn
            .list_all_storage_pools(0)
            .map_err(|e| call_error(&e))?;
        let mut rows = Vec::new();
        for pool in pools {
            let info = pool.info().map_err(|e| call_error(&e))?;
            rows.push(PoolRow {
                name: pool.name().map_err(|e| call_error(&e))?,
                state: pool_state_word(info.state),
                active: pool.is_active().unwrap_or(false),
                autostart: pool.autostart().unwrap_or(false),
                persistent: pool.is_persistent().unwrap_or(false),
                capacity: info.capacity,
                allocation: info.allocation,
                available: info.available,
            });
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    fn volumes(&self, pool: &str) -> EngineResult<Vec<VolumeRow>> {
        let pool = self.pool(pool)?;
        let volumes = pool.list_all_volumes(0).map_err(|e| call_error(&e))?;
        let mut rows = Vec::new();
        for volume in volumes {
            let info = volume.info().map_err(|e| call_error(&e))?;
            rows.push(VolumeRow {
                name: volume.name().map_err(|e| call_error(&e))?,
                path: volume.path().map_err(|e| call_error(&e))?,
                kind: volume_kind_word(info.kind).to_string(),
                capacity: info.capacity,
                allocation: info.allocation,
            });
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }

    fn create_volume(
        &self,
        pool: &str,
        name: &str,
        capacity: u64,
        format: &str,
    ) -> EngineResult<String> {
        let pool = self.pool(pool)?;
        let xml = format!(
            "<volume>\n  <name>{}</name>\n  <capacity unit='bytes'>{capacity}</capacity>\n  <target>\n    <format type='{}'/>\n  </target>\n</volume>\n",
            xml_escape(name),
            xml_escape(format)
        );
        let volume = StorageVol::create_xml(&pool, &xml, 0).map_err(|e| call_error(&e))?;
        volume.path().map_err(|e| call_error(&e))
    }

    fn file_size(&self, path: &str) -> EngineResult<u64> {
        // With GET_PHYSICAL the allocation field is the file's length.
        let info = self
            .volume(path)?
            .info_flags(sys::VIR_STORAGE_VOL_GET_PHYSICAL)
            .map_err(|e| call_error(&e))?;
        Ok(info.allocation)
    }

    fn upload(
        &self,
        path: &str,
        data: &mut dyn Read,
        length: u64,
        progress: Progress,
    ) -> EngineResult<()> {
        let volume = self.volume(path)?;
        let stream = Stream::new(&self.conn, 0).map_err(|e| call_error(&e))?;
        volume
            .upload(&stream, 0, length, 0)
            .map_err(|e| call_error(&e))?;
        let mut buf = vec![0u8; CHUNK];
        let mut sent = 0u64;
        loop {
            let n = match data.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    let _ = stream.abort();
                    return Err(EngineError::other(format!("cannot read the image: {e}")));
                }
            };
            let mut chunk = &buf[..n];
            while !chunk.is_empty() {
                let written = stream.send(chunk).map_err(|e| call_error(&e))?;
                chunk = &chunk[written.max(0) as usize..];
            }
            sent += n as u64;
            progress(sent);
        }
        stream.finish().map_err(|e| call_error(&e))
    }

    fn download(&self, path: &str, out: &mut dyn Write, progress: Progress) -> EngineResult<u64> {
        let volume = self.volume(path)?;
        let stream = Stream::new(&self.conn, 0).map_err(|e| call_error(&e))?;
        volume
            .download(&stream, 0, 0, 0)
            .map_err(|e| call_error(&e))?;
        let mut buf = vec![0u8; CHUNK];
        let mut received = 0u64;
        loop {
            let n = stream.recv(&mut buf).map_err(|e| call_error(&e))?;
            if n <= 0 {
                break;
            }
            if let Err(e) = out.write_all(&buf[..n as usize]) {
                let _ = stream.abort();
                return Err(EngineError::other(format!("cannot write the image: {e}")));
            }
            received += n as u64;
            progress(received);
        }
        stream.finish().map_err(|e| call_error(&e))?;
        Ok(received)
    }

    fn networks(&self) -> EngineResult<Vec<NetworkRow>> {
        let networks = self.conn.list_all_networks(0).map_err(|e| call_error(&e))?;
        let mut rows = Vec::new();
        for network in networks {
            rows.push(NetworkRow {
                name: network.name().map_err(|e| call_error(&e))?,
                active: network.is_active().unwrap_or(false),
                autostart: network.autostart().unwrap_or(false),
                persistent: network.is_persistent().unwrap_or(false),
            });
        }
        rows.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(rows)
    }
}

/// Moves bytes between a non-blocking libvirt console stream and our end
/// of a socket pair until either side closes.
fn relay_console(stream: Stream, socket: UnixStream) {
    let _ = socket.set_nonblocking(true);
    let mut socket = socket;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut moved = false;
        match stream.recv(&mut buf) {
            Ok(-2) => {}
            Ok(n) if n <= 0 => break,
            Ok(n) => {
                moved = true;
                let _ = socket.set_nonblocking(false);
                let ok = socket.write_all(&buf[..n as usize]).is_ok();
                let _ = socket.set_nonblocking(true);
                if !ok {
                    break;
                }
            }
            Err(_) => break,
        }
        match socket.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                moved = true;
                let mut chunk = &buf[..n];
                while !chunk.is_empty() {
                    match stream.send(chunk) {
                        Ok(-2) => std::thread::sleep(std::time::Duration::from_millis(5)),
                        Ok(sent) if sent > 0 => chunk = &chunk[sent as usize..],
                        _ => {
                            let _ = stream.abort();
                            return;
                        }
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => break,
        }
        if !moved {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    }
    let _ = stream.abort();
}

fn state_of(raw: sys::virDomainState) -> DomainState {
    match raw {
        sys::VIR_DOMAIN_RUNNING => DomainState::Running,
        sys::VIR_DOMAIN_BLOCKED => DomainState::Idle,
        sys::VIR_DOMAIN_PAUSED => DomainState::Paused,
        sys::VIR_DOMAIN_SHUTDOWN => DomainState::InShutdown,
        sys::VIR_DOMAIN_SHUTOFF => DomainState::ShutOff,
        sys::VIR_DOMAIN_CRASHED => DomainState::Crashed,
        sys::VIR_DOMAIN_PMSUSPENDED => DomainState::PmSuspended,
        _ => DomainState::NoState,
    }
}

/// `virsh pool-list --details`'s state words.
fn pool_state_word(raw: u32) -> String {
    match raw {
        sys::VIR_STORAGE_POOL_INACTIVE => "inactive",
        sys::VIR_STORAGE_POOL_BUILDING => "building",
        sys::VIR_STORAGE_POOL_RUNNING => "running",
        sys::VIR_STORAGE_POOL_DEGRADED => "degraded",
        sys::VIR_STORAGE_POOL_INACCESSIBLE => "inaccessible",
        _ => "unknown",
    }
    .to_string()
}

/// `virsh vol-list --details`'s type words.
fn volume_kind_word(raw: u32) -> &'static str {
    match raw {
        sys::VIR_STORAGE_VOL_FILE => "file",
        sys::VIR_STORAGE_VOL_BLOCK => "block",
        sys::VIR_STORAGE_VOL_DIR => "dir",
        sys::VIR_STORAGE_VOL_NETWORK => "network",
        sys::VIR_STORAGE_VOL_NETDIR => "netdir",
        _ => "unknown",
    }
}

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
        .replace('"', "&quot;")
}

/// An error while connecting: which of "refused", "unreachable", "too
/// old" it is.
fn opening_error(e: &VirtError) -> EngineError {
    let error = classify(e);
    if error.kind == ErrorKind::Other || error.kind == ErrorKind::ConnectionLost {
        return EngineError::new(ErrorKind::Unreachable, e.message());
    }
    error
}

/// An error from a call on an open connection.
fn call_error(e: &VirtError) -> EngineError {
    classify(e)
}

fn classify(e: &VirtError) -> EngineError {
    let code = e.code().to_raw();
    let from = e.domain().to_raw();
    let kind = match code {
        sys::VIR_ERR_AUTH_FAILED
        | sys::VIR_ERR_AUTH_CANCELLED
        | sys::VIR_ERR_AUTH_UNAVAILABLE
        | sys::VIR_ERR_ACCESS_DENIED
        | sys::VIR_ERR_OPERATION_DENIED => ErrorKind::AuthRefused,
        sys::VIR_ERR_NO_SUPPORT | sys::VIR_ERR_OPERATION_UNSUPPORTED => ErrorKind::Unsupported,
        sys::VIR_ERR_NO_DOMAIN => ErrorKind::NoDomain,
        sys::VIR_ERR_NO_STORAGE_POOL => ErrorKind::NoPool,
        sys::VIR_ERR_NO_STORAGE_VOL => ErrorKind::NoVolume,
        sys::VIR_ERR_NO_NETWORK => ErrorKind::NoNetwork,
        sys::VIR_ERR_OPERATION_INVALID => ErrorKind::InvalidState,
        sys::VIR_ERR_XML_ERROR | sys::VIR_ERR_XML_DETAIL | sys::VIR_ERR_CONFIG_UNSUPPORTED => {
            ErrorKind::InvalidDefinition
        }
        sys::VIR_ERR_OPERATION_TIMEOUT => ErrorKind::TimedOut,
        sys::VIR_ERR_NO_CONNECT | sys::VIR_ERR_INVALID_CONN => ErrorKind::ConnectionLost,
        _ if matches!(
            from,
            sys::VIR_FROM_RPC | sys::VIR_FROM_REMOTE | sys::VIR_FROM_SSH | sys::VIR_FROM_LIBSSH
        ) =>
        {
            ErrorKind::ConnectionLost
        }
        _ => ErrorKind::Other,
    };
    EngineError::new(kind, e.message())
}
