//! The VM process: one process per running VM (`vireo-vmm NAME`), which outlives
//! the command or window that started it, and the files through which
//! everyone else finds it: a private directory per VM,
//! `paths::runtime_dir()/domains/NAME/` (0700, as libvirt's
//! `/run/libvirt/qemu/DOMAIN` directories), which only [`RunFiles`] names:
//!
//! | file | what |
//! |---|---|
//! | `state.json` | pid, per-boot id, UUID, VNC port: present while it runs |
//! | `control.sock` | the QMP-compatible control socket |
//! | `serial.sock` | the serial console (`vireo console NAME`) |
//! | `vnc.sock` | the VNC server, for the window |
//!
//! Whoever starts the VM creates the directory; the confined VM process
//! may reach only its own (Landlock), so one VM cannot open another's
//! files. It removes its files when it stops; the empty directory goes
//! with the next `destroy` or start (the confined process may not remove
//! it). A VM process that died (killed, crashed) leaves its files behind;
//! whoever looks next finds the pid gone and removes them.

pub mod controller;
pub mod process;
pub mod serial_hub;
pub mod spawn;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// What a running VM process publishes about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunState {
    pub pid: u32,
    /// Per-boot id, as virsh's: increases with every start.
    pub id: u32,
    pub uuid: String,
    pub vnc_port: Option<u16>,
}

/// Where VMs' private run directories are, under the runtime directory
/// `run_dir`.
pub fn vms_dir(run_dir: &Path) -> PathBuf {
    run_dir.join("domains")
}

/// The runtime files of one VM, in its private directory.
pub struct RunFiles {
    dir: PathBuf,
    name: String,
}

impl RunFiles {
    /// VM `name`'s files under `paths::runtime_dir()`.
    pub fn new(name: &str) -> Self {
        Self::under(&crate::paths::runtime_dir(), name)
    }

    /// VM `name`'s files under the runtime directory `run_dir` (tests and
    /// tools that look into another `VIREO_HOME`).
    pub fn under(run_dir: &Path, name: &str) -> Self {
        Self {
            dir: vms_dir(run_dir).join(name),
            name: name.to_string(),
        }
    }

    /// The VM's private directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn state(&self) -> PathBuf {
        self.dir.join("state.json")
    }

    pub fn control(&self) -> PathBuf {
        self.dir.join("control.sock")
    }

    pub fn serial(&self) -> PathBuf {
        self.dir.join("serial.sock")
    }

    pub fn vnc(&self) -> PathBuf {
        self.dir.join("vnc.sock")
    }

    /// A fresh name where the VM process writes a screenshot for this
    /// client: the confined process may write only in its own directory,
    /// so the client asks for it there and moves it
    /// ([`deliver_screenshot`]), as libvirt has QEMU write into libvirt's
    /// own directory first.
    pub fn screendump(&self) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.dir
            .join(format!(".screendump-{}-{n}", std::process::id()))
    }

    /// Creates the VM's private directory (and the runtime directory above
    /// it), 0700; one of ours that is not private is made so.
    pub fn create_dir(&self) -> Result<(), String> {
        // The runtime directory, the directory of VMs, then this VM's.
        let mut dirs: Vec<&Path> = self.dir.ancestors().take(3).collect();
        dirs.reverse();
        dirs.into_iter().try_for_each(private_dir)
    }

    /// Removes every runtime file of this VM, and its directory once empty.
    pub fn remove_all(&self) {
        self.remove_files();
        let _ = std::fs::remove_dir(&self.dir);
    }

    /// Removes this VM's files but not its directory: what the VM process
    /// itself does when it ends, as its confinement lets it write in its
    /// directory but not remove it (the empty directory stays until the
    /// next start or `destroy`).
    pub fn remove_files(&self) {
        for path in [self.state(), self.control(), self.serial(), self.vnc()] {
            let _ = std::fs::remove_file(path);
        }
    }

    /// The VM's state if its process is alive; stale files of a dead
    /// process are cleaned up on the way.
    pub fn running(&self) -> Option<RunState> {
        let text = std::fs::read_to_string(self.state()).ok()?;
        let state: RunState = match serde_json::from_str(&text) {
            Ok(state) => state,
            Err(e) => {
                tracing::warn!(path = %self.state().display(), "unreadable run state, removing it: {e}");
                self.remove_all();
                return None;
            }
        };
        if process_is_vm(state.pid, &self.name) {
            Some(state)
        } else {
            tracing::info!(name = %self.name, pid = state.pid, "VM process is gone; cleaning up after it");
            self.remove_all();
            None
        }
    }
}

/// Creates `dir`, or makes it private (0700) if it is ours.
fn private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
    let fail = |e: std::io::Error| format!("cannot create {}: {e}", dir.display());
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(fail)?;
    let meta = std::fs::metadata(dir).map_err(fail)?;
    // SAFETY: getuid cannot fail.
    if meta.uid() == unsafe { libc::getuid() } && meta.mode() & 0o077 != 0 {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
    }
    Ok(())
}

/// Moves a screenshot the VM process wrote at `from` (see
/// [`RunFiles::screendump`]) to `to`, across file systems too.
pub fn deliver_screenshot(from: &Path, to: &Path) -> Result<(), String> {
    let result = match std::fs::rename(from, to) {
        Ok(()) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::EXDEV) => std::fs::copy(from, to).map(|_| ()),
        Err(e) => Err(e),
    };
    let _ = std::fs::remove_file(from);
    result.map_err(|e| format!("cannot write {}: {e}", to.display()))
}

/// Whether `pid` is alive and is the VM process of `name` (guards against
/// pid reuse after a crash).
pub fn process_is_vm(pid: u32, name: &str) -> bool {
    let Ok(cmdline) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    // `vireo-vmm NAME`, or `vireo __vmm NAME` (no vireo-vmm beside vireo,
    // or a VM started by an older Vireo).
    let program = args
        .first()
        .map(|a| a.rsplit(|&b| b == b'/').next().unwrap_or(a));
    (program == Some(process::VMM_PROGRAM.as_bytes()) && args.get(1) == Some(&name.as_bytes()))
        || args
            .windows(2)
            .any(|w| w[0] == process::VMM_VERB.as_bytes() && w[1] == name.as_bytes())
}

/// The next per-boot id: a counter in the runtime directory, taken under
/// an exclusive lock so two starts never share one.
pub fn next_id(dir: &Path) -> std::io::Result<u32> {
    use std::io::{Read, Seek, Write};
    use std::os::fd::AsRawFd;
    std::fs::create_dir_all(dir)?;
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(".last-id"))?;
    // SAFETY: flock on a descriptor we own; released when `file` closes.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut text = String::new();
    file.read_to_string(&mut text)?;
    let id = text.trim().parse::<u32>().unwrap_or(0) + 1;
    file.rewind()?;
    file.set_len(0)?;
    write!(file, "{id}")?;
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_increase() {
        let dir = tempfile::tempdir().unwrap();
        let a = next_id(dir.path()).unwrap();
        let b = next_id(dir.path()).unwrap();
        assert_eq!((a, b), (1, 2));
    }

    #[test]
    fn our_own_process_is_not_a_vm() {
        assert!(!process_is_vm(std::process::id(), "x"));
        assert!(!process_is_vm(u32::MAX, "x"));
    }
}
