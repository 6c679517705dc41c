//! Starting and stopping VM processes from the command line or the window.

use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{READY_FD_ENV, VMM_PROGRAM, VMM_VERB};
use super::{RunFiles, RunState};
use crate::definitions::DomainStore;

/// The descriptor number the VM process finds its ready pipe at.
const READY_FD: i32 = 3;
/// How long a VM may take to come up (firmware and disks loaded).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Starts VM `name` in its own process; returns once it runs (or says why
/// it could not start, with the reason the VM process gave).
pub fn start(name: &str, paused: bool) -> Result<RunState, String> {
    let definition = DomainStore::open().find(name).map_err(|e| e.to_string())?;
    let files = RunFiles::new(&definition.name);
    if files.running().is_some() {
        return Err(format!("domain '{}' is already running", definition.name));
    }
    // The VM's private directory, before the VM process confines itself
    // to it.
    files.create_dir()?;
    let log_dir = crate::paths::log_dir();
    std::fs::create_dir_all(&log_dir)
        .map_err(|e| format!("cannot create {}: {e}", log_dir.display()))?;
    let log_path = log_dir.join(format!("{}.log", definition.name));
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(|e| format!("cannot open the log {}: {e}", log_path.display()))?;
    {
        use std::io::Write;
        let mut log = &log;
        let _ = writeln!(
            log,
            "---- starting {} (uuid {})",
            definition.name, definition.uuid
        );
    }

    let mut fds = [0i32; 2];
    // SAFETY: pipe2 writes two descriptors into the array it is given.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(format!(
            "cannot create a pipe: {}",
            std::io::Error::last_os_error()
        ));
    }
    // SAFETY: both descriptors were just created and are owned here alone.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let mut command = vmm_command()?;
    command
        .arg(&definition.name)
        .env(READY_FD_ENV, READY_FD.to_string())
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log);
    if paused {
        command.arg("--paused");
    }
    let write_raw = write_end.as_raw_fd();
    // SAFETY: only async-signal-safe calls between fork and exec: dup2
    // puts the pipe at READY_FD (without close-on-exec), setsid leaves
    // the starter's session so terminal signals do not reach the VM.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(write_raw, READY_FD) < 0 || libc::setsid() < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = command
        .spawn()
        .map_err(|e| format!("cannot start the VM process: {e}"))?;
    drop(write_end);
    // The first process forks the VM off and exits at once.
    let _ = child.wait();

    let message = read_ready(read_end, START_TIMEOUT).unwrap_or_else(|| {
        format!(
            "error: the VM process did not report; see {}",
            log_path.display()
        )
    });
    match message.trim().strip_prefix("error: ") {
        None if message.trim() == "ok" => files.running().ok_or_else(|| {
            format!(
                "the VM process stopped right after starting; see {}",
                log_path.display()
            )
        }),
        Some(reason) => Err(reason.to_string()),
        None => Err(format!("unexpected answer from the VM process: {message}")),
    }
}

/// The VM process's program: `vireo-vmm` beside this executable, which
/// links no GTK; without it (a build or install of `vireo` alone) this
/// executable's hidden `__vmm` verb, which runs the same code.
fn vmm_command() -> Result<Command, String> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find the vireo program: {e}"))?;
    let vmm = exe.with_file_name(VMM_PROGRAM);
    if vmm.is_file() {
        return Ok(Command::new(vmm));
    }
    let mut command = Command::new(exe);
    command.arg(VMM_VERB);
    Ok(command)
}

/// Reads the VM process's one-line report, or `None` on timeout/EOF.
fn read_ready(pipe: OwnedFd, timeout: Duration) -> Option<String> {
    let deadline = Instant::now() + timeout;
    let mut file = std::fs::File::from(pipe);
    let mut text = Vec::new();
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        let mut poll = libc::pollfd {
            fd: file.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd.
        let ready =
            unsafe { libc::poll(&mut poll, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        if ready <= 0 {
            continue;
        }
        let mut buf = [0u8; 512];
        match file.read(&mut buf) {
            Ok(0) | Err(_) => {
                return (!text.is_empty()).then(|| String::from_utf8_lossy(&text).into_owned())
            }
            Ok(n) => {
                text.extend_from_slice(&buf[..n]);
                if text.contains(&b'\n') {
                    return Some(String::from_utf8_lossy(&text).into_owned());
                }
            }
        }
    }
}

/// Forces VM `name` off: SIGTERM (the VM process stops its vCPUs and
/// cleans up), then SIGKILL if it has not gone within a few seconds.
pub fn destroy(name: &str) -> Result<(), String> {
    let definition = DomainStore::open().find(name).map_err(|e| e.to_string())?;
    let files = RunFiles::new(&definition.name);
    let state = files
        .running()
        .ok_or_else(|| format!("domain '{}' is not running", definition.name))?;
    let pid = state.pid as libc::pid_t;
    // SAFETY: plain signal delivery to a pid we checked is our VM process.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(5);
    while super::process_is_vm(state.pid, &definition.name) {
        if Instant::now() > deadline {
            tracing::warn!(pid, "VM process ignored SIGTERM; killing it");
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    while super::process_is_vm(state.pid, &definition.name) {
        std::thread::sleep(Duration::from_millis(20));
    }
    files.remove_all();
    Ok(())
}
