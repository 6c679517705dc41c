//! Where VMs live: the engines Vireo manages them through, behind one
//! small [`Engine`] trait that the command line (`vireo -c URI …`) and the
//! window (one group per connection) both use.
//!
//! Two engines implement it: [`local::LocalEngine`], Vireo's own store and
//! VMM processes on this computer (URI `vireo:///session`, the default),
//! and [`libvirt::LibvirtEngine`], any libvirt URI (`qemu:///system`,
//! `qemu+ssh://user@host/system`, `test:///default`) through libvirt's
//! own client library. The VMM process never comes here: only the CLI and
//! the window link libvirt's library in (see `libvirt.rs`).
//!
//! Everything an engine returns is plain data in virsh's terms (states,
//! ids, KiB), so the command line prints the same tables whichever engine
//! answered, and errors are [`EngineError`]s whose kind the window turns
//! into a translated sentence.

pub mod copy;
mod errors;
pub mod libvirt;
pub mod local;
pub mod timeout;
pub mod uri;
pub mod vnc_tunnel;

use std::os::unix::net::UnixStream;

pub use errors::{EngineError, ErrorKind};
pub use uri::{resolve_uri, ConnectionUri, LOCAL_URI};

pub type EngineResult<T> = Result<T, EngineError>;

/// A domain's state, as libvirt's `virDomainState` and virsh's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DomainState {
    NoState,
    Running,
    /// Blocked on a resource (libvirt's "idle").
    Idle,
    Paused,
    InShutdown,
    ShutOff,
    Crashed,
    PmSuspended,
}

impl DomainState {
    /// What `virsh list` and `virsh domstate` print.
    pub fn virsh_word(self) -> &'static str {
        match self {
            DomainState::NoState => "no state",
            DomainState::Running => "running",
            DomainState::Idle => "idle",
            DomainState::Paused => "paused",
            DomainState::InShutdown => "in shutdown",
            DomainState::ShutOff => "shut off",
            DomainState::Crashed => "crashed",
            DomainState::PmSuspended => "pmsuspended",
        }
    }

    /// Whether the domain has a running instance (an id, a console).
    pub fn is_active(self) -> bool {
        !matches!(self, DomainState::ShutOff | DomainState::NoState)
    }

    /// The window's lifecycle state for it.
    pub fn vm_state(self) -> crate::app::lifecycle::VmState {
        use crate::app::lifecycle::VmState;
        match self {
            DomainState::Running | DomainState::Idle | DomainState::NoState => VmState::Running,
            DomainState::Paused | DomainState::PmSuspended => VmState::Paused,
            DomainState::InShutdown => VmState::ShuttingDown,
            DomainState::ShutOff => VmState::ShutOff,
            DomainState::Crashed => VmState::Crashed,
        }
    }
}

/// One row of `virsh list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainRow {
    /// The running instance's id.
    pub id: Option<u32>,
    pub name: String,
    pub uuid: String,
    pub state: DomainState,
}

/// What `virsh dominfo` shows.
#[derive(Debug, Clone, PartialEq)]
pub struct DomainInfo {
    pub row: DomainRow,
    pub os_type: String,
    pub vcpus: u32,
    /// CPU time used, in nanoseconds, while the domain runs.
    pub cpu_time_ns: Option<u64>,
    /// `None`: no limit.
    pub max_memory_kib: Option<u64>,
    pub used_memory_kib: u64,
    /// `None` where the engine cannot say.
    pub persistent: Option<bool>,
    pub autostart: Option<bool>,
    pub managed_save: Option<bool>,
    /// The host's security model, where one is active.
    pub security: Option<Security>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Security {
    pub model: String,
    pub doi: String,
    /// The domain's label and whether it is enforced (running domains).
    pub label: Option<(String, bool)>,
}

/// The lifecycle verbs every engine offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Power {
    Start,
    /// Ask the guest to shut down (ACPI).
    Shutdown,
    /// Force off.
    Destroy,
    Reboot,
    Suspend,
    Resume,
}

/// One row of `virsh pool-list --details`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolRow {
    pub name: String,
    /// `--details`'s state word: running, inactive, building, degraded…
    pub state: String,
    pub active: bool,
    pub autostart: bool,
    pub persistent: bool,
    pub capacity: u64,
    pub allocation: u64,
    pub available: u64,
}

/// One row of `virsh vol-list --details`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeRow {
    pub name: String,
    pub path: String,
    /// virsh's type word: file, block, dir…
    pub kind: String,
    pub capacity: u64,
    pub allocation: u64,
}

/// One row of `virsh net-list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkRow {
    pub name: String,
    pub active: bool,
    pub autostart: bool,
    pub persistent: bool,
}

/// Bytes read from or written to a disk image, in a copy between engines.
pub type Progress<'a> = &'a mut dyn FnMut(u64);

/// A place VMs live and the verbs that make sense there. Every method may
/// block on the network: the window calls them off the GTK thread through
/// [`timeout::call`].
pub trait Engine: Send + Sync {
    /// The URI this engine was opened with.
    fn uri(&self) -> &str;
    /// Whether the connection still answers (libvirt's keepalive).
    fn is_alive(&self) -> bool {
        true
    }
    /// Every domain, running ones first by id, then the rest by name.
    fn list(&self) -> EngineResult<Vec<DomainRow>>;
    /// A domain by id, name or UUID, as virsh resolves them.
    fn lookup(&self, which: &str) -> EngineResult<DomainRow>;
    fn info(&self, name: &str) -> EngineResult<DomainInfo>;
    /// The definition; `secure` includes passwords (the console's).
    fn xml(&self, name: &str, secure: bool) -> EngineResult<String>;
    /// The definition as it will be on next boot (not the live one).
    fn inactive_xml(&self, name: &str) -> EngineResult<String> {
        self.xml(name, true)
    }
    /// Defines (or redefines) a domain; returns its name.
    fn define(&self, xml: &str) -> EngineResult<String>;
    fn undefine(&self, name: &str) -> EngineResult<()>;
    fn power(&self, name: &str, verb: Power) -> EngineResult<()>;
    /// The screen as an image file's bytes and its MIME type.
    fn screenshot(&self, name: &str) -> EngineResult<(Vec<u8>, String)>;
    /// virsh's `vncdisplay` answer (`127.0.0.1:0`), `None` without VNC.
    fn vnc_display(&self, name: &str) -> EngineResult<Option<String>>;
    /// A stream that speaks RFB to the running domain's screen.
    fn open_vnc(&self, name: &str) -> EngineResult<UnixStream>;
    /// A byte stream to the domain's serial console.
    fn open_console(&self, name: &str) -> EngineResult<UnixStream>;
    fn pools(&self) -> EngineResult<Vec<PoolRow>>;
    fn volumes(&self, pool: &str) -> EngineResult<Vec<VolumeRow>>;
    /// Creates an empty volume; returns its path.
    fn create_volume(
        &self,
        pool: &str,
        name: &str,
        capacity: u64,
        format: &str,
    ) -> EngineResult<String>;
    /// How many bytes the image file at `path` holds (what a download
    /// of it yields).
    fn file_size(&self, path: &str) -> EngineResult<u64>;
    /// Fills the volume at `path` from `data` (`length` bytes).
    fn upload(
        &self,
        path: &str,
        data: &mut dyn std::io::Read,
        length: u64,
        progress: Progress,
    ) -> EngineResult<()>;
    /// Copies the volume at `path` into `out`; returns the bytes copied.
    fn download(
        &self,
        path: &str,
        out: &mut dyn std::io::Write,
        progress: Progress,
    ) -> EngineResult<u64>;
    fn networks(&self) -> EngineResult<Vec<NetworkRow>>;
}

/// Opens the engine for `uri`: Vireo's own for `vireo:` URIs, libvirt for
/// every other.
pub fn open(uri: &str) -> EngineResult<Box<dyn Engine>> {
    match ConnectionUri::parse(uri) {
        ConnectionUri::Local => Ok(Box::new(local::LocalEngine::new())),
        ConnectionUri::Libvirt(_) => Ok(Box::new(libvirt::LibvirtEngine::open(uri)?)),
    }
}

/// Sorts rows as `virsh list` does: running domains by id, then the rest
/// by name.
pub fn sort_rows(rows: &mut [DomainRow]) {
    rows.sort_by(|a, b| {
        (a.id.unwrap_or(u32::MAX), &a.name).cmp(&(b.id.unwrap_or(u32::MAX), &b.name))
    });
}
