//! The VM process: `vireo-vmm NAME` (or `vireo __vmm NAME` where that
//! binary is missing), started by [`super::spawn`]. It detaches from
//! whoever started it, publishes its sockets and state, runs the VM, and
//! cleans up after itself.

use std::fs::File;
use std::io::Write;
use std::os::fd::FromRawFd;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::controller::{qmp_event, Controller};
use super::serial_hub::SerialHub;
use super::{next_id, RunFiles, RunState};
use crate::control::{ControlServer, VncInfo};
use crate::definitions::{atomic_write, DomainStore};
use crate::display::input::InputSink;
use crate::domain::Domain;
use crate::vmm::{ConsoleIo, Outcome, SharedWriter, VmRunner};
use crate::vnc::{VncConfig, VncServer};

/// The hidden verb of `vireo` that runs a VM process.
pub const VMM_VERB: &str = "__vmm";
/// The VM process's own program, installed beside `vireo`; it links no GTK.
pub const VMM_PROGRAM: &str = "vireo-vmm";

/// `NAME [--paused]` (in either order), the arguments of [`VMM_PROGRAM`].
/// A name may start with '-' (libvirt allows it); `-h` or `--help` alone
/// asks for the usage.
pub fn parse_args(args: &[String]) -> Option<(String, bool)> {
    let paused = args.iter().any(|a| a == "--paused");
    let mut names = args.iter().filter(|a| *a != "--paused");
    let name = names.next()?;
    if names.next().is_some() || (args.len() == 1 && (name == "--help" || name == "-h")) {
        return None;
    }
    Some((name.clone(), paused))
}
/// The environment variable naming the descriptor on which the VM
/// process reports "ok" or "error: …" once it is up (or failed).
pub const READY_FD_ENV: &str = "VIREO_READY_FD";

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// The channel back to the starter; reports once.
struct Ready(Option<File>);

impl Ready {
    fn from_env() -> Self {
        let fd = std::env::var(READY_FD_ENV)
            .ok()
            .and_then(|v| v.parse::<i32>().ok());
        // SAFETY: the starter put the write end of a pipe at this
        // descriptor for us alone; nothing else in this process owns it.
        Self(fd.map(|fd| unsafe { File::from_raw_fd(fd) }))
    }

    fn report(&mut self, message: &str) {
        if let Some(mut file) = self.0.take() {
            let _ = writeln!(file, "{message}");
        }
    }
}

/// Leaves the starter's process tree: fork, and let the parent return at
/// once (the starter reaps it), so the VM is adopted by init and outlives
/// the command or window that started it.
fn detach() -> std::io::Result<()> {
    // SAFETY: called first thing in `main` for this verb, before any
    // thread exists, so the child inherits a consistent process.
    match unsafe { libc::fork() } {
        -1 => Err(std::io::Error::last_os_error()),
        0 => Ok(()),
        // SAFETY: the parent leaves at once without running destructors.
        _ => unsafe { libc::_exit(0) },
    }
}

/// Entry point of `vireo-vmm NAME [--paused]` and `vireo __vmm NAME [--paused]`.
pub fn main(name: &str, paused: bool) -> ExitCode {
    let ready = Arc::new(Mutex::new(Ready::from_env()));
    if let Err(e) = detach() {
        ready
            .lock()
            .unwrap()
            .report(&format!("error: cannot detach the VM process: {e}"));
        return ExitCode::FAILURE;
    }
    match run(name, paused, ready.clone()) {
        Ok(outcome) => {
            eprintln!("vireo: {name} ended: {outcome:?}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("vireo: {name}: {message}");
            // Only reaches the starter if the VM never came up.
            ready.lock().unwrap().report(&format!("error: {message}"));
            ExitCode::FAILURE
        }
    }
}

fn run(name: &str, paused: bool, ready: Arc<Mutex<Ready>>) -> Result<Outcome, String> {
    let definition = DomainStore::open().find(name).map_err(|e| e.to_string())?;
    let config = crate::vm_config::for_definition(&definition).map_err(|e| e.to_string())?;
    for note in crate::vm_config::unsupported(definition.domain()) {
        eprintln!("vireo: note: {note}");
    }
    let files = RunFiles::new(&definition.name);
    if let Some(state) = files.running() {
        return Err(format!(
            "domain '{name}' is already running (pid {})",
            state.pid
        ));
    }
    files.create_dir()?;
    // The counter is shared by every VM: taken before the process is
    // confined to its own directory.
    let id = next_id(&crate::paths::runtime_dir())
        .map_err(|e| format!("cannot allocate a domain id: {e}"))?;
    for signal in [libc::SIGINT, libc::SIGTERM, libc::SIGHUP] {
        vmm_sys_util::signal::register_signal_handler(signal, on_terminate)
            .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    }
    let vnc_config = vnc_config(definition.domain(), &definition.name, files.vnc())?;
    // Before any thread starts, so that every thread inherits it.
    crate::sandbox::enter(
        &sandbox_plan(&config, files.dir()),
        sandbox_opt_out(definition.domain()),
    )?;
    let result = serve(&definition, config, vnc_config, paused, id, &files, ready);
    files.remove_files();
    result
}

/// Why the sandbox is off, if it is: `VIREO_NO_SANDBOX=1`, or libvirt's
/// `<seclabel type='none'/>` in the definition.
pub fn sandbox_opt_out(domain: &Domain) -> Option<&'static str> {
    if crate::sandbox::disabled_by_env() {
        return Some("VIREO_NO_SANDBOX=1");
    }
    domain
        .root()
        .children_named("seclabel")
        .any(|e| e.attr("type") == Some("none"))
        .then_some("<seclabel type='none'/> in the definition")
}

/// What the VM process may reach once confined: what its machine needs
/// ([`crate::vmm::confinement`]) and its own run directory (not the other
/// VMs'). A disc changed while it runs is opened by the client and passed
/// to it (QMP `add-fd`, as libvirt does for QEMU), so it reads no
/// directory of images, only its own images.
fn sandbox_plan(config: &crate::vmm::VmConfig, run_dir: &Path) -> crate::sandbox::Plan {
    let mut plan = crate::vmm::confinement::plan(config);
    plan.files.read_write_dirs.push(run_dir.to_path_buf());
    plan
}

/// The VNC listeners a definition asks for: always the VM's unix socket
/// (the window's way in), and TCP per `<graphics type='vnc'>` (see
/// [`graphics_vnc`]), with TLS when `vireo.conf` says `vnc_tls = 1`. The
/// credentials are read here, before the process is confined.
pub fn vnc_config(domain: &Domain, name: &str, unix: PathBuf) -> Result<VncConfig, String> {
    let mut config = VncConfig::new(name);
    config.unix = Some(unix);
    if graphics_vnc(domain, &mut config)? {
        config.tls = crate::host::conf::vnc_tls()?;
    }
    Ok(config)
}

/// Sets the TCP listener and password of `config` as the definition's
/// `<graphics type='vnc'>` asks (SPICE is served as VNC): `listen`
/// (default 127.0.0.1), `port` or autoport, `passwd`. Returns whether the
/// definition has such graphics.
pub fn graphics_vnc(domain: &Domain, config: &mut VncConfig) -> Result<bool, String> {
    let graphics = domain.graphics().map_err(|e| e.to_string())?;
    let Some(g) = graphics
        .iter()
        .find(|g| g.kind == "vnc" || g.kind == "spice")
    else {
        return Ok(false);
    };
    let listen = g
        .listen
        .clone()
        .or_else(|| g.listens.iter().find_map(|l| l.address.clone()))
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let address: IpAddr = listen
        .parse()
        .map_err(|_| format!("<graphics listen='{listen}'> is not an IP address"))?;
    let port = match (g.autoport, g.port) {
        (Some(true), _) | (_, None) => None,
        (_, Some(port)) if port < 0 => None,
        (_, Some(port)) => Some(
            u16::try_from(port).map_err(|_| format!("<graphics port='{port}'> is not a port"))?,
        ),
    };
    config.tcp = Some((address, port));
    config.password = g.passwd.clone().filter(|p| !p.is_empty());
    Ok(true)
}

fn has_vnc_password(definition: &crate::definitions::Definition) -> bool {
    definition
        .domain()
        .graphics()
        .ok()
        .into_iter()
        .flatten()
        .any(|g| g.passwd.is_some())
}

/// Publishes the sockets, runs the VM, and says "ok" to the starter once
/// the first machine is built (disks opened, firmware loaded).
fn serve(
    definition: &crate::definitions::Definition,
    config: crate::vmm::VmConfig,
    vnc_config: VncConfig,
    paused: bool,
    id: u32,
    files: &RunFiles,
    ready: Arc<Mutex<Ready>>,
) -> Result<Outcome, String> {
    let hub = SerialHub::default();
    let (input_tx, input_rx) = mpsc::channel();
    hub.listen(&files.serial(), input_tx)
        .map_err(|e| format!("cannot listen on {}: {e}", files.serial().display()))?;
    let mut console = ConsoleIo::new(SharedWriter::new(hub));
    console.serial_input = Some(Arc::new(Mutex::new(input_rx)));

    let tls = vnc_config.tls.is_some();
    let input: Arc<dyn InputSink> = console.input.clone();
    let vnc =
        VncServer::start(console.display.clone(), input, vnc_config).map_err(|e| e.to_string())?;
    let vnc_info = match vnc.tcp_addr() {
        Some(addr) => VncInfo {
            enabled: true,
            host: Some(addr.ip().to_string()),
            family: Some(if addr.is_ipv4() { "ipv4" } else { "ipv6" }.to_string()),
            service: Some(addr.port().to_string()),
            // As QEMU's query-vnc names them.
            auth: Some(
                match (tls, has_vnc_password(definition)) {
                    (false, true) => "vnc",
                    (false, false) => "none",
                    (true, true) => "vencrypt+x509+vnc",
                    (true, false) => "vencrypt+x509+none",
                }
                .to_string(),
            ),
            ..Default::default()
        },
        None => VncInfo {
            enabled: true,
            host: Some(files.vnc().display().to_string()),
            family: Some("unix".into()),
            ..Default::default()
        },
    };

    let mut runner = VmRunner::new(config, console.clone());
    let controller = Arc::new(Controller {
        name: definition.name.clone(),
        handle: runner.handle(),
        display: console.display.clone(),
        input: console.input.clone(),
        vnc: Mutex::new(vnc_info),
        fd_sets: crate::control::fdsets::FdSets::new(),
    });
    let control = ControlServer::bind(files.control(), controller)
        .map_err(|e| format!("cannot listen on {}: {e}", files.control().display()))?;
    let events = control.emitter();
    runner.on_event(move |event| events.emit(&qmp_event(event)));

    let state = RunState {
        pid: std::process::id(),
        id,
        uuid: definition.uuid.clone(),
        vnc_port: vnc.tcp_port(),
    };
    if let Some(port) = state.vnc_port {
        eprintln!(
            "vireo: VNC server on {}",
            vnc.tcp_addr()
                .map(|a| a.to_string())
                .unwrap_or_else(|| port.to_string())
        );
    }
    let state_path = files.state();
    runner.on_ready(Box::new(move || {
        let json = serde_json::to_string(&state).unwrap_or_default();
        let message = match atomic_write(&state_path, json.as_bytes()) {
            Ok(()) => "ok".to_string(),
            Err(e) => format!("error: {e}"),
        };
        ready.lock().unwrap().report(&message);
    }));
    let outcome = runner.run(&INTERRUPTED, paused).map_err(|e| e.to_string());
    drop(control);
    drop(vnc);
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn vmm_arguments_are_a_name_and_maybe_paused() {
        assert_eq!(parse_args(&args(&["vm1"])), Some(("vm1".into(), false)));
        assert_eq!(
            parse_args(&args(&["vm1", "--paused"])),
            Some(("vm1".into(), true))
        );
        assert_eq!(
            parse_args(&args(&["--paused", "vm1"])),
            Some(("vm1".into(), true))
        );
        assert_eq!(parse_args(&args(&[])), None);
        assert_eq!(parse_args(&args(&["a", "b"])), None);
        assert_eq!(parse_args(&args(&["--help"])), None);
        assert_eq!(
            parse_args(&args(&["-a name", "--paused"])),
            Some(("-a name".into(), true))
        );
    }
}
