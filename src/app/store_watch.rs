//! Change notification on the store, so the window rereads definitions
//! only when one changed rather than every second: Linux inotify(7) on the
//! definitions directory, on the directory of VMs' private run directories
//! ([`crate::vm_process::vms_dir`]), and on each of those, where a VM
//! process publishes `state.json` while it runs.
//!
//! What counts: a `NAME.xml` created, written, renamed or removed (a
//! define, undefine, rename or edit, from any window or the command line),
//! a VM's directory made or removed, and its `state.json` written or
//! removed. Dot files are not changes: they are the store's temp files
//! before their rename, the window's thumbnails and screenshots on their
//! way out. Not watched: whether a running VM is paused (that is asked of
//! the VM), pools and networks.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("cannot create {path}: {source}")]
    CreateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start inotify: {0}")]
    Init(#[source] std::io::Error),
    #[error("cannot watch {path}: {source}")]
    Watch {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot read inotify events: {0}")]
    Read(#[source] std::io::Error),
}

/// What changed since the last [`StoreWatcher::wait`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Changes {
    /// A definition was added, removed, renamed or rewritten.
    pub definitions: bool,
    /// A VM process started or stopped (its `state.json` came or went).
    pub runtime: bool,
}

impl Changes {
    pub fn any(self) -> bool {
        self.definitions || self.runtime
    }
}

/// Events that can change what a directory holds, and the directory's
/// own removal or move (after which it is watched again at its path).
const MASK: u32 = libc::IN_CREATE
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_DELETE_SELF
    | libc::IN_MOVE_SELF
    | libc::IN_ONLYDIR;

/// After the first event, how long to keep reading so that one define
/// (temp file, write, rename, directory sync) is reported once.
const SETTLE: Duration = Duration::from_millis(30);
/// The longest a burst of events delays the report.
const SETTLE_MAX: Duration = Duration::from_millis(250);

/// What a VM's own directory is watched for: its state file coming and
/// going.
const VM_MASK: u32 = libc::IN_CREATE
    | libc::IN_CLOSE_WRITE
    | libc::IN_DELETE
    | libc::IN_MOVED_FROM
    | libc::IN_MOVED_TO
    | libc::IN_ONLYDIR;

/// The file a VM process publishes in its directory.
const STATE_FILE: &[u8] = b"state.json";

/// One watched directory.
struct Watch {
    dir: PathBuf,
    /// Names ending in this are changes.
    suffix: &'static str,
    wd: i32,
}

/// Watches the definitions and the VMs' run directories.
pub struct StoreWatcher {
    fd: OwnedFd,
    definitions: Watch,
    /// The directory of VMs' run directories: each one made or removed.
    runtime: Watch,
    /// Each VM's run directory, by watch descriptor.
    vms: std::collections::HashMap<i32, PathBuf>,
}

impl StoreWatcher {
    /// Watches `paths::domains_dir()` and the VMs in `paths::runtime_dir()`.
    pub fn open() -> Result<Self, WatchError> {
        Self::new(&crate::paths::domains_dir(), &crate::paths::runtime_dir())
    }

    /// Watches `domains` for `*.xml` and the VMs' directories under the
    /// runtime directory `runtime` for their state, creating the watched
    /// directories when missing (a fresh home has neither until the first
    /// define or start; watching a parent instead would wake for logs,
    /// images and settings).
    pub fn new(domains: &Path, runtime: &Path) -> Result<Self, WatchError> {
        // SAFETY: plain syscall; the result is checked.
        let raw = unsafe { libc::inotify_init1(libc::IN_NONBLOCK | libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(WatchError::Init(std::io::Error::last_os_error()));
        }
        // SAFETY: `raw` is a descriptor inotify_init1 just gave us; nothing
        // else owns it.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut definitions = Watch {
            dir: domains.to_path_buf(),
            suffix: ".xml",
            wd: -1,
        };
        let mut runtime = Watch {
            dir: crate::vm_process::vms_dir(runtime),
            suffix: "",
            wd: -1,
        };
        add_watch(&fd, &mut definitions)?;
        add_watch(&fd, &mut runtime)?;
        let mut watcher = Self {
            fd,
            definitions,
            runtime,
            vms: Default::default(),
        };
        watcher.watch_vms();
        Ok(watcher)
    }

    /// Watches every VM directory not watched yet. One that cannot be
    /// watched (removed meanwhile) is skipped: its removal is a change
    /// already.
    fn watch_vms(&mut self) {
        let Ok(entries) = std::fs::read_dir(&self.runtime.dir) else {
            return;
        };
        for entry in entries.flatten() {
            let dir = entry.path();
            if !dir.is_dir() || self.vms.values().any(|d| *d == dir) {
                continue;
            }
            let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: a valid inotify descriptor and a NUL-terminated path.
            let wd =
                unsafe { libc::inotify_add_watch(self.fd.as_raw_fd(), path.as_ptr(), VM_MASK) };
            if wd >= 0 {
                self.vms.insert(wd, dir);
            }
        }
    }

    /// Waits up to `timeout` for a change; returns at once (after the
    /// burst settles) when there is one, and no change on timeout.
    pub fn wait(&mut self, timeout: Duration) -> Result<Changes, WatchError> {
        let mut changes = Changes::default();
        if !self.poll(timeout)? {
            return Ok(changes);
        }
        let start = Instant::now();
        loop {
            self.read_events(&mut changes)?;
            if start.elapsed() >= SETTLE_MAX || !self.poll(SETTLE)? {
                return Ok(changes);
            }
        }
    }

    /// Whether events are waiting, after at most `timeout`.
    fn poll(&self, timeout: Duration) -> Result<bool, WatchError> {
        let mut pollfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pollfd, 1, millis) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                return Ok(false);
            }
            return Err(WatchError::Read(e));
        }
        Ok(n > 0)
    }

    /// Reads every queued event into `changes`; watches a removed or moved
    /// directory again.
    fn read_events(&mut self, changes: &mut Changes) -> Result<(), WatchError> {
        let mut rewatch = (false, false);
        let mut new_vm_dirs = false;
        // Room for many events; inotify never splits one across reads.
        let mut buf = vec![0u8; 16 * 1024];
        loop {
            // SAFETY: reads at most buf.len() bytes into buf.
            let n = unsafe {
                libc::read(
                    self.fd.as_raw_fd(),
                    buf.as_mut_ptr().cast::<libc::c_void>(),
                    buf.len(),
                )
            };
            if n < 0 {
                let e = std::io::Error::last_os_error();
                match e.kind() {
                    std::io::ErrorKind::WouldBlock => break,
                    std::io::ErrorKind::Interrupted => continue,
                    _ => return Err(WatchError::Read(e)),
                }
            }
            if n == 0 {
                break;
            }
            for event in Events::new(&buf[..n as usize]) {
                if event.mask & libc::IN_Q_OVERFLOW != 0 {
                    // Events were lost: anything may have changed.
                    changes.definitions = true;
                    changes.runtime = true;
                    continue;
                }
                if event.mask & libc::IN_IGNORED != 0 {
                    // A VM directory removed (or its watch dropped).
                    self.vms.remove(&event.wd);
                    continue;
                }
                if self.vms.contains_key(&event.wd) {
                    changes.runtime |= event.name == STATE_FILE;
                    continue;
                }
                if event.wd == self.runtime.wd && event.mask & libc::IN_ISDIR != 0 {
                    // A VM directory made or removed.
                    changes.runtime = true;
                    new_vm_dirs = true;
                }
                let gone = event.mask & (libc::IN_DELETE_SELF | libc::IN_MOVE_SELF) != 0;
                for (watch, changed, again) in [
                    (&self.definitions, &mut changes.definitions, &mut rewatch.0),
                    (&self.runtime, &mut changes.runtime, &mut rewatch.1),
                ] {
                    if event.wd != watch.wd {
                        continue;
                    }
                    if gone {
                        *changed = true;
                        *again = true;
                    } else if counts(event.name, watch.suffix) {
                        *changed = true;
                    }
                }
            }
        }
        if rewatch.0 {
            rm_watch(&self.fd, &self.definitions);
            add_watch(&self.fd, &mut self.definitions)?;
        }
        if rewatch.1 {
            rm_watch(&self.fd, &self.runtime);
            add_watch(&self.fd, &mut self.runtime)?;
        }
        if new_vm_dirs || rewatch.1 {
            self.watch_vms();
        }
        Ok(())
    }
}

/// Whether a name in a watched directory is a change: `NAME.suffix`, not
/// a dot file.
fn counts(name: &[u8], suffix: &str) -> bool {
    !name.is_empty() && name[0] != b'.' && name.ends_with(suffix.as_bytes())
}

fn add_watch(fd: &OwnedFd, watch: &mut Watch) -> Result<(), WatchError> {
    std::fs::create_dir_all(&watch.dir).map_err(|source| WatchError::CreateDir {
        path: watch.dir.display().to_string(),
        source,
    })?;
    let watch_error = |source| WatchError::Watch {
        path: watch.dir.display().to_string(),
        source,
    };
    let path = std::ffi::CString::new(watch.dir.as_os_str().as_encoded_bytes())
        .map_err(|_| watch_error(std::io::Error::from(std::io::ErrorKind::InvalidInput)))?;
    // SAFETY: a valid inotify descriptor and a NUL-terminated path.
    let wd = unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), MASK) };
    if wd < 0 {
        return Err(watch_error(std::io::Error::last_os_error()));
    }
    watch.wd = wd;
    Ok(())
}

fn rm_watch(fd: &OwnedFd, watch: &Watch) {
    // SAFETY: plain syscall; fails harmlessly when the watch is already
    // gone (the directory was removed).
    unsafe { libc::inotify_rm_watch(fd.as_raw_fd(), watch.wd) };
}

/// One event as the kernel wrote it: `struct inotify_event` then `len`
/// bytes of NUL-padded name.
struct Event<'a> {
    wd: i32,
    mask: u32,
    name: &'a [u8],
}

/// The events in one read's bytes.
struct Events<'a> {
    bytes: &'a [u8],
}

impl<'a> Events<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes }
    }
}

/// Size of `struct inotify_event` before its name: wd, mask, cookie, len.
const HEADER: usize = 16;

impl<'a> Iterator for Events<'a> {
    type Item = Event<'a>;

    fn next(&mut self) -> Option<Event<'a>> {
        let field = |at: usize| -> Option<[u8; 4]> { self.bytes.get(at..at + 4)?.try_into().ok() };
        let wd = i32::from_ne_bytes(field(0)?);
        let mask = u32::from_ne_bytes(field(4)?);
        let len = u32::from_ne_bytes(field(12)?) as usize;
        let name = self.bytes.get(HEADER..HEADER + len)?;
        let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
        self.bytes = &self.bytes[HEADER + len..];
        Some(Event { wd, mask, name })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definitions::DomainStore;

    const QUIET: Duration = Duration::from_millis(300);
    const SOON: Duration = Duration::from_secs(2);

    fn xml(name: &str) -> String {
        format!("<domain type='kvm'><name>{name}</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>")
    }

    /// A fresh home's two directories (not created yet) and a watcher.
    fn setup() -> (tempfile::TempDir, PathBuf, PathBuf, StoreWatcher) {
        let home = tempfile::tempdir().unwrap();
        let domains = home.path().join("config/domains");
        let run = home.path().join("run");
        let watcher = StoreWatcher::new(&domains, &run).unwrap();
        assert!(domains.is_dir() && run.is_dir(), "both are created");
        (home, domains, run, watcher)
    }

    #[test]
    fn header_size_matches_the_kernel() {
        assert_eq!(HEADER, std::mem::size_of::<libc::inotify_event>());
    }

    #[test]
    fn define_rename_undefine_are_each_reported_once() {
        let (_home, domains, _run, mut watcher) = setup();
        let store = DomainStore::at(domains);
        assert_eq!(watcher.wait(QUIET).unwrap(), Changes::default());

        store.define(&xml("heron")).unwrap();
        let defined = Changes {
            definitions: true,
            runtime: false,
        };
        assert_eq!(watcher.wait(SOON).unwrap(), defined);
        // The burst (temp file, write, rename) settled into that one report.
        assert_eq!(watcher.wait(QUIET).unwrap(), Changes::default());

        store.rename("heron", "egret").unwrap();
        assert_eq!(watcher.wait(SOON).unwrap(), defined);
        store.undefine("egret").unwrap();
        assert_eq!(watcher.wait(SOON).unwrap(), defined);
        assert_eq!(watcher.wait(QUIET).unwrap(), Changes::default());
    }

    #[test]
    fn an_edit_in_place_is_reported() {
        let (_home, domains, _run, mut watcher) = setup();
        let path = domains.join("heron.xml");
        std::fs::write(&path, xml("heron")).unwrap();
        assert!(watcher.wait(SOON).unwrap().definitions);
        std::fs::write(&path, xml("heron").replace("64", "128")).unwrap();
        assert!(watcher.wait(SOON).unwrap().definitions);
    }

    #[test]
    fn dot_files_and_other_names_are_not_changes() {
        let (_home, domains, run, mut watcher) = setup();
        std::fs::write(domains.join(".heron.xml.tmp1"), "x").unwrap();
        std::fs::write(domains.join("notes.txt"), "x").unwrap();
        std::fs::write(run.join(".heron.thumbnail.png"), "x").unwrap();
        std::fs::write(run.join(".last-id"), "1").unwrap();
        std::fs::write(run.join("heron.serial"), "").unwrap();
        assert_eq!(watcher.wait(QUIET).unwrap(), Changes::default());
        // The temp file renamed into place is a define.
        std::fs::rename(domains.join(".heron.xml.tmp1"), domains.join("heron.xml")).unwrap();
        assert!(watcher.wait(SOON).unwrap().definitions);
    }

    #[test]
    fn a_vm_process_publishing_or_removing_its_state_is_reported() {
        let (_home, domains, run, mut watcher) = setup();
        let started = Changes {
            definitions: false,
            runtime: true,
        };
        let files = crate::vm_process::RunFiles::under(&run, "heron");
        files.create_dir().unwrap();
        assert_eq!(watcher.wait(SOON).unwrap(), started);
        // Its sockets are not changes; its state is.
        std::fs::write(files.serial(), "").unwrap();
        assert_eq!(watcher.wait(QUIET).unwrap(), Changes::default());
        crate::fsutil::atomic_write(&files.state(), b"{}").unwrap();
        assert_eq!(watcher.wait(SOON).unwrap(), started);
        std::fs::remove_file(files.state()).unwrap();
        assert_eq!(watcher.wait(SOON).unwrap(), started);
        files.remove_all();
        assert_eq!(watcher.wait(SOON).unwrap(), started);
        // A VM directory that was there before the watcher is watched too.
        files.create_dir().unwrap();
        let mut watcher = StoreWatcher::new(&domains, &run).unwrap();
        crate::fsutil::atomic_write(&files.state(), b"{}").unwrap();
        assert_eq!(watcher.wait(SOON).unwrap(), started);
    }

    #[test]
    fn a_removed_directory_is_watched_again_when_it_comes_back() {
        let (_home, domains, _run, mut watcher) = setup();
        std::fs::remove_dir(&domains).unwrap();
        assert!(watcher.wait(SOON).unwrap().definitions);
        // Watched again (and recreated): a define in it is seen.
        assert!(domains.is_dir());
        DomainStore::at(domains).define(&xml("heron")).unwrap();
        assert!(watcher.wait(SOON).unwrap().definitions);
    }

    #[test]
    fn events_parse_names_and_padding() {
        let mut bytes = Vec::new();
        for (wd, mask, name) in [(1i32, libc::IN_CREATE, &b"a.xml"[..]), (2, 0, b"")] {
            let padded = if name.is_empty() { 0 } else { 16 };
            bytes.extend_from_slice(&wd.to_ne_bytes());
            bytes.extend_from_slice(&mask.to_ne_bytes());
            bytes.extend_from_slice(&0u32.to_ne_bytes());
            bytes.extend_from_slice(&(padded as u32).to_ne_bytes());
            let mut name = name.to_vec();
            name.resize(padded, 0);
            bytes.extend_from_slice(&name);
        }
        let events: Vec<_> = Events::new(&bytes)
            .map(|e| (e.wd, e.mask, e.name.to_vec()))
            .collect();
        assert_eq!(
            events,
            [(1, libc::IN_CREATE, b"a.xml".to_vec()), (2, 0, Vec::new())]
        );
        // A truncated tail is not read past.
        assert_eq!(Events::new(&bytes[..20]).count(), 0);
    }
}
