//! `vireo run DOMAIN.xml`: one VM in the foreground, like
//! `qemu-system-x86_64`. Ctrl+C (or SIGTERM) stops it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};

use crate::vmm::{self, ConsoleIo, Outcome, SharedWriter, VmConfig};

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
    let config = crate::domain::load(&args.domain).map_err(|e| e.to_string())?;
    run_config(
        config,
        &args.serial,
        args.debugcon.as_deref(),
        args.screenshot_on_exit.as_deref(),
    )
}

/// Runs `config` in the foreground with COM1 per `serial` (stdio,
/// file:PATH, null) and the debug port to `debugcon`; when it stops, its
/// screen goes to `screenshot_on_exit` as PNG.
pub fn run_config(
    config: VmConfig,
    serial: &str,
    debugcon: Option<&Path>,
    screenshot_on_exit: Option<&Path>,
) -> Result<ExitCode, String> {
    let mut console = ConsoleIo::new(SharedWriter::sink());
    let mut _raw_terminal = None;
    match serial {
        "stdio" => {
            _raw_terminal = super::terminal::RawMode::enable();
            console.serial = SharedWriter::new(std::io::stdout());
            console.serial_input = Some(stdin_reader());
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

/// Reads stdin on a thread and hands chunks to the serial port.
fn stdin_reader() -> Arc<Mutex<mpsc::Receiver<Vec<u8>>>> {
    let (tx, rx) = mpsc::channel();
    let _ = std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
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
