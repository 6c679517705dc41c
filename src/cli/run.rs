//! `vireo run DOMAIN.xml`: one VM in the foreground, like
//! `qemu-system-x86_64`. Ctrl+C (or SIGTERM) stops it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use crate::display::input::InputSink;
use crate::domain::Domain;
use crate::vmm::{self, ConsoleIo, Outcome, SharedWriter, VmConfig};
use crate::vnc::{parse_vnc_display, VncConfig, VncServer};

#[derive(clap::Args)]
pub struct RunArgs {
    /// The libvirt domain XML to run.
    domain: PathBuf,
    /// Where COM1 goes: `stdio` (output on stdout, input from stdin),
    /// `file:PATH`, or `null`.
    #[arg(long, default_value = "null")]
    serial: String,
    /// Write what the guest sends to the debug port 0x402 (SeaBIOS's log) to this file.
    #[arg(long)]
    debugcon: Option<PathBuf>,
    /// Serve the screen over VNC on ADDR:DISPLAY, as QEMU's -vnc does:
    /// `127.0.0.1:0` is port 5900, `:1` is 127.0.0.1:5901. Without it, the
    /// domain's `<graphics type='vnc'>` says where, as for `vireo start`.
    /// With `vnc_tls = 1` in vireo.conf (see `vireo --help`) TCP clients
    /// must use VeNCrypt/TLS.
    #[arg(long, value_name = "ADDR:DISPLAY")]
    vnc: Option<String>,
    /// Serve the screen over VNC on this unix socket.
    #[arg(long, value_name = "PATH")]
    vnc_unix: Option<PathBuf>,
    /// Require this VNC password (VNC authentication; 8 characters count).
    #[arg(long, value_name = "PASS")]
    vnc_password: Option<String>,
    /// When the VM stops, write its screen as it was then to this PNG file.
    #[arg(long, value_name = "FILE")]
    screenshot_on_exit: Option<PathBuf>,
}

/// Set by SIGINT/SIGTERM; the VM loop polls it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_terminate(_: libc::c_int, _: *mut libc::siginfo_t, _: *mut libc::c_void) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

pub fn run(args: RunArgs) -> Result<ExitCode, String> {
    let domain = crate::domain::Domain::load(&args.domain).map_err(|e| e.to_string())?;
    for note in crate::vm_config::unsupported(&domain) {
        eprintln!("vireo: note: {note}");
    }
    let mut config = crate::vm_config::from_domain(&domain).map_err(|e| e.to_string())?;
    crate::vm_config::resolve_networks(&mut config).map_err(|e| e.to_string())?;
    let vnc = vnc_config(&args, &domain, &config.name)?;
    run_with(
        config,
        RunOptions {
            serial: &args.serial,
            debugcon: args.debugcon.as_deref(),
            vnc,
            screenshot_on_exit: args.screenshot_on_exit.as_deref(),
            sandbox_opt_out: crate::vm_process::process::sandbox_opt_out(&domain),
        },
    )
}

/// The VNC server the definition and the options ask for, if any: the
/// domain's `<graphics type='vnc'>` as `vireo start` serves it, with
/// `--vnc` in place of its TCP listener, `--vnc-unix` added and
/// `--vnc-password` in place of its password; TLS on the TCP listener
/// when `vireo.conf` says `vnc_tls = 1`.
fn vnc_config(args: &RunArgs, domain: &Domain, name: &str) -> Result<Option<VncConfig>, String> {
    let mut vnc = VncConfig::new(name);
    let graphics = if args.vnc.is_none() {
        crate::vm_process::process::graphics_vnc(domain, &mut vnc)?
    } else {
        false
    };
    if !graphics && args.vnc.is_none() && args.vnc_unix.is_none() {
        if args.vnc_password.is_some() {
            return Err("--vnc-password needs --vnc or --vnc-unix".into());
        }
        return Ok(None);
    }
    if let Some(spec) = &args.vnc {
        let (addr, port) = parse_vnc_display(spec).map_err(|e| format!("--vnc: {e}"))?;
        vnc.tcp = Some((addr, Some(port)));
    }
    vnc.unix = args.vnc_unix.clone();
    if args.vnc_password.is_some() {
        vnc.password = args.vnc_password.clone();
    }
    if vnc.tcp.is_some() {
        vnc.tls = crate::host::conf::vnc_tls()?;
    }
    Ok(Some(vnc))
}

/// How a foreground VM's consoles are connected.
pub struct RunOptions<'a> {
    /// COM1: `stdio`, `file:PATH` or `null`.
    pub serial: &'a str,
    /// The debug port's output file.
    pub debugcon: Option<&'a Path>,
    /// The VNC server, if any, for as long as the VM runs.
    pub vnc: Option<VncConfig>,
    /// When the VM stops, its screen goes here as PNG.
    pub screenshot_on_exit: Option<&'a Path>,
    /// Why the VM runs unconfined, if it does (see [`crate::sandbox`]).
    pub sandbox_opt_out: Option<&'static str>,
}

/// Runs `config` in the foreground with its consoles per `options`.
pub fn run_with(config: VmConfig, options: RunOptions) -> Result<ExitCode, String> {
    let RunOptions {
        serial,
        debugcon,
        vnc,
        screenshot_on_exit,
        sandbox_opt_out,
    } = options;
    let mut console = ConsoleIo::new(SharedWriter::sink());
    let mut _raw_terminal = None;
    match serial {
        "stdio" => {
            _raw_terminal = super::terminal::RawMode::enable();
            console.serial = SharedWriter::new(std::io::stdout());
        }
        "null" => {}
        other => match other.strip_prefix("file:") {
            Some(path) => {
                let file = File::create(path)
                    .map_err(|e| format!("cannot create serial log {path}: {e}"))?;
                console.serial = SharedWriter::new(file);
            }
            None => {
                return Err(format!(
                    "--serial '{other}' is not stdio, file:PATH or null"
                ))
            }
        },
    }
    if let Some(path) = debugcon {
        let file =
            File::create(path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        console.debugcon = SharedWriter::new(file);
    }
    // Its files are open; before any thread starts, so that every thread
    // inherits the confinement.
    crate::sandbox::enter(
        &sandbox_plan(&config, vnc.as_ref(), screenshot_on_exit),
        sandbox_opt_out,
    )?;
    if serial == "stdio" {
        console.serial_input = Some(stdin_reader());
    }
    let _vnc_server = match vnc {
        Some(vnc) => Some(start_vnc(&console, vnc)?),
        None => None,
    };
    for signal in [libc::SIGINT, libc::SIGTERM] {
        vmm_sys_util::signal::register_signal_handler(signal, on_terminate)
            .map_err(|e| format!("cannot install a signal handler: {e}"))?;
    }
    let outcome = vmm::run(&config, &console, &INTERRUPTED).map_err(|e| e.to_string())?;
    if let Some(path) = screenshot_on_exit {
        // The machine drew its last frame as it stopped.
        crate::display::screenshot::write_png(&console.display.snapshot(), path)
            .map_err(|e| e.to_string())?;
    }
    match outcome {
        Outcome::PoweredOff | Outcome::Interrupted => Ok(ExitCode::SUCCESS),
        Outcome::Crashed { vcpu, rip } => Err(format!(
            "the guest crashed: vCPU {vcpu} triple-faulted at RIP {rip:#x} (on_crash is destroy)"
        )),
        Outcome::KvmFailure(failure) => Err(format!(
            "the VM stopped because KVM could not run it: {failure}"
        )),
    }
}

/// What a foreground VM may reach once confined: what its machine needs,
/// the directory of its VNC socket, and where its last screenshot goes.
fn sandbox_plan(
    config: &VmConfig,
    vnc: Option<&VncConfig>,
    screenshot_on_exit: Option<&Path>,
) -> crate::sandbox::Plan {
    let mut plan = crate::vmm::confinement::plan(config);
    let dirs = vnc
        .and_then(|v| v.unix.as_deref())
        .into_iter()
        .chain(screenshot_on_exit)
        .filter_map(|p| std::path::absolute(p).ok()?.parent().map(Path::to_path_buf));
    plan.files.read_write_dirs.extend(dirs);
    plan
}

/// Starts the VNC server on the console's display and input and says
/// where it listens (on stderr, as QEMU does not but a user wants).
fn start_vnc(console: &ConsoleIo, vnc: VncConfig) -> Result<VncServer, String> {
    let unix = vnc.unix.clone();
    let input: Arc<dyn InputSink> = console.input.clone();
    let server = VncServer::start(console.display.clone(), input, vnc)
        .map_err(|e| crate::logging::with_causes(&e))?;
    if let Some(addr) = server.tcp_addr() {
        eprintln!("VNC server on {addr}");
    }
    if let Some(path) = unix {
        eprintln!("VNC server on unix:{}", path.display());
    }
    Ok(server)
}

/// Reads stdin on a thread and hands chunks to the serial port.
fn stdin_reader() -> Arc<Mutex<mpsc::Receiver<Vec<u8>>>> {
    let (tx, rx) = mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Serial);
            let mut stdin = std::io::stdin();
            let mut buf = [0u8; 256];
            loop {
                match stdin.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        if tx.send(buf[..n].to_vec()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
    Arc::new(Mutex::new(rx))
}
