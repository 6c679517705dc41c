//! Confinement of a VM process, which runs code written by strangers and
//! reads what VNC and QMP clients send (as Firecracker and Cloud
//! Hypervisor assume, the guest is hostile):
//!
//! 1. `PR_SET_NO_NEW_PRIVS`, and every capability dropped but those the
//!    caller keeps ([`privileges`]);
//! 2. Landlock: the file system limited to the VM's images, firmware, run
//!    directory and the few system files its libraries read ([`files`]);
//!    a kernel without Landlock is said so in the log;
//! 3. seccomp-bpf: an allow-list per kind of thread ([`seccomp`]); a call
//!    outside it ends the process with a log line naming the call.
//!
//! [`enter`] does all three on the main thread before any other thread
//! starts, so every thread inherits them; each thread then narrows its
//! filter to its kind with [`confine_thread`], which does nothing in a
//! process that is not confined (the window, the command line, tests).
//!
//! `VIREO_NO_SANDBOX=1` (or `<seclabel type='none'/>` in the domain, as
//! libvirt spells it) turns it off for debugging.
//!
//! [`PROBE_ENV`] makes a thread (a device thread unless
//! [`PROBE_THREAD_ENV`] names another kind) try something the sandbox forbids,
//! for the tests that prove it holds. It is honoured in every build: it
//! cannot widen anything, only make the process die or log a refusal, and
//! integration tests run the release binary.

pub mod files;
pub mod ioctls;
pub mod privileges;
pub mod seccomp;
mod syscalls;

use std::collections::BTreeMap;
use std::sync::OnceLock;

pub use files::{FsConfinement, FsRules};
pub use seccomp::EXIT_FORBIDDEN_CALL;

/// Turns confinement off when set to `1`.
pub const NO_SANDBOX_ENV: &str = "VIREO_NO_SANDBOX";

/// Test hook: `execve`, `ptrace`, `open:PATH`, `connect:PATH` (a unix
/// socket) or `ioctl:0xREQUEST` — a device thread (or the kind
/// [`PROBE_THREAD_ENV`] names) tries it once, after confinement.
pub const PROBE_ENV: &str = "VIREO_SANDBOX_PROBE";

/// Which kind of thread runs the [`PROBE_ENV`] probe: `device` unless
/// set to `vcpu`, `vnc`, `control` or `serial`.
pub const PROBE_THREAD_ENV: &str = "VIREO_SANDBOX_PROBE_THREAD";

/// The kinds of thread in a VM process, each with its own allow-list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ThreadKind {
    /// The runner: builds machines, handles requests.
    Main,
    /// A vCPU's `KVM_RUN` loop and the device emulation it runs.
    Vcpu,
    /// Device timers and backends: display refresh, RTC, UHCI frames,
    /// serial input, slirp, TAP, the isolated switch.
    Device,
    /// The VNC server: listeners, display watcher, clients.
    Vnc,
    /// The QMP server: listener and connections (media changes,
    /// screenshots).
    Control,
    /// The serial console's listener and clients.
    Serial,
}

impl ThreadKind {
    pub const ALL: [ThreadKind; 6] = [
        ThreadKind::Main,
        ThreadKind::Vcpu,
        ThreadKind::Device,
        ThreadKind::Vnc,
        ThreadKind::Control,
        ThreadKind::Serial,
    ];

    /// The kind `name` (lower case, as [`PROBE_THREAD_ENV`] spells it).
    fn named(name: &str) -> Option<ThreadKind> {
        ThreadKind::ALL
            .into_iter()
            .find(|kind| format!("{kind:?}").eq_ignore_ascii_case(name))
    }
}

/// What a VM process confines itself to.
#[derive(Debug, Clone, Default)]
pub struct Plan {
    pub files: FsRules,
    /// Capabilities kept (numbers, as `CAP_NET_ADMIN`).
    pub keep_capabilities: Vec<u32>,
}

/// What [`enter`] did, for the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Confinement {
    /// Turned off by the user.
    Off(&'static str),
    On {
        files: FsConfinement,
    },
}

/// Each kind's compiled filters, once the process is confined.
static FILTERS: OnceLock<BTreeMap<ThreadKind, Vec<seccompiler::BpfProgram>>> = OnceLock::new();

/// Whether the user turned confinement off (`VIREO_NO_SANDBOX=1`).
pub fn disabled_by_env() -> bool {
    std::env::var(NO_SANDBOX_ENV).is_ok_and(|v| v == "1")
}

/// Confines the calling thread (the process's only thread, so far) as
/// `plan` says, unless `opt_out` names why not. Errors are the VM's: it
/// does not run unconfined by accident.
pub fn enter(plan: &Plan, opt_out: Option<&'static str>) -> Result<Confinement, String> {
    if let Some(why) = opt_out {
        eprintln!("vireo: sandbox: off ({why}): this VM process is not confined");
        return Ok(Confinement::Off(why));
    }
    let mut compiled = BTreeMap::new();
    for kind in ThreadKind::ALL {
        compiled.insert(kind, seccomp::programs(kind)?);
    }
    privileges::no_new_privs()?;
    privileges::drop_capabilities(&plan.keep_capabilities)?;
    let files = files::restrict(&plan.files)?;
    match files {
        FsConfinement::Full => {}
        FsConfinement::Partial => tracing::warn!(
            "sandbox: this kernel's Landlock lacks some rights; the file system is partly confined"
        ),
        FsConfinement::None => tracing::warn!(
            "sandbox: this kernel has no Landlock (or it is disabled); the file system is not confined, only system calls are"
        ),
    }
    seccomp::install_sigsys_handler()?;
    seccomp::apply(&compiled[&ThreadKind::Main])?;
    let _ = FILTERS.set(compiled);
    eprintln!(
        "vireo: sandbox: confined: no new privileges, capabilities {:?} kept, seccomp per thread kind, file system {}",
        plan.keep_capabilities,
        match files {
            FsConfinement::Full => "limited by Landlock",
            FsConfinement::Partial => "partly limited by Landlock",
            FsConfinement::None => "not limited (no Landlock)",
        }
    );
    Ok(Confinement::On { files })
}

/// Narrows the calling thread's filter to `kind`; nothing in a process
/// that is not confined. A thread that cannot narrows keeps the main
/// thread's (broader) filter and says so.
pub fn confine_thread(kind: ThreadKind) {
    let Some(filters) = FILTERS.get() else {
        return;
    };
    if let Err(e) = seccomp::apply(&filters[&kind]) {
        tracing::error!(?kind, "sandbox: cannot narrow this thread's filter: {e}");
    }
    probe(kind);
}

/// The [`PROBE_ENV`] test hook, run once by the first thread of the kind
/// [`PROBE_THREAD_ENV`] names (a device thread by default).
fn probe(kind: ThreadKind) {
    static DONE: OnceLock<()> = OnceLock::new();
    let Ok(what) = std::env::var(PROBE_ENV) else {
        return;
    };
    let wanted = std::env::var(PROBE_THREAD_ENV)
        .ok()
        .and_then(|name| ThreadKind::named(&name))
        .unwrap_or(ThreadKind::Device);
    if kind != wanted {
        return;
    }
    if DONE.set(()).is_err() {
        return;
    }
    tracing::warn!("sandbox probe: trying {what}");
    if let Some(path) = what.strip_prefix("open:") {
        match std::fs::File::open(path) {
            Ok(_) => tracing::error!("sandbox probe: opened {path}: NOT confined"),
            Err(e) => tracing::warn!("sandbox probe: refused to open {path}: {e}"),
        }
        return;
    }
    if let Some(path) = what.strip_prefix("connect:") {
        match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => tracing::error!("sandbox probe: connected to {path}: NOT confined"),
            Err(e) => tracing::warn!("sandbox probe: refused to connect to {path}: {e}"),
        }
        return;
    }
    if let Some(number) = what.strip_prefix("ioctl:") {
        let Some(request) = number
            .strip_prefix("0x")
            .and_then(|hex| libc::c_ulong::from_str_radix(hex, 16).ok())
        else {
            tracing::error!("sandbox probe: {number} is not a hexadecimal ioctl request");
            return;
        };
        // SAFETY: on no descriptor (-1): a request the filter lets through
        // fails with EBADF and touches nothing; one it forbids never runs.
        let result = unsafe { libc::ioctl(-1, request) };
        let error = std::io::Error::last_os_error();
        tracing::warn!(
            "sandbox probe: ioctl request {number} passed the filter: {result}, {error}"
        );
        return;
    }
    // SAFETY: both calls are meant to be stopped by the filter before
    // they do anything; with the sandbox off they fail harmlessly
    // (execve of a missing program, PTRACE_TRACEME on ourselves).
    let result = unsafe {
        match what.as_str() {
            "execve" => libc::execve(c"/nonexistent".as_ptr(), std::ptr::null(), std::ptr::null()),
            "ptrace" => libc::ptrace(libc::PTRACE_TRACEME, 0, 0, 0) as libc::c_int,
            _ => 0,
        }
    };
    tracing::error!("sandbox probe: {what} returned {result}: NOT confined");
}
