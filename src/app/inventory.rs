//! The VMs the window lists: every stored definition with its state, as
//! the store and the VM processes say. Reading it never blocks for long:
//! definitions are small files, and a running VM answers `query-status`
//! on its control socket within the client's timeout.
//!
//! [`LiveInventory`] keeps the list current for the window: definitions
//! are reread only when [`StoreWatcher`] says the store changed, and only
//! VMs with a process are asked for their state.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;

use super::lifecycle::VmState;
use crate::control::ControlClient;
use crate::definitions::{Definition, DomainStore};
use crate::vm_process::RunFiles;

use super::store_watch::StoreWatcher;

/// How long a VM may take to answer a status query before the window
/// stops waiting for it (it is then listed as running).
const STATUS_TIMEOUT: Duration = Duration::from_millis(500);

/// One VM as the list shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmSummary {
    pub name: String,
    pub uuid: String,
    pub title: Option<String>,
    pub memory_bytes: u64,
    pub vcpus: u32,
    pub state: VmState,
}

impl VmSummary {
    fn new(definition: &Definition, state: VmState) -> Self {
        let domain = definition.domain();
        VmSummary {
            name: definition.name.clone(),
            uuid: definition.uuid.clone(),
            title: domain.title(),
            memory_bytes: domain.memory().ok().flatten().unwrap_or(0),
            vcpus: domain.vcpu().map(|v| v.count).unwrap_or(1),
            state,
        }
    }
}

/// What the VM process of `name` says it is doing; `ShutOff` when there
/// is no process, `Running` when it does not answer in time.
pub fn live_state(name: &str) -> VmState {
    if RunFiles::new(name).running().is_none() {
        return VmState::ShutOff;
    }
    query_state(name, STATUS_TIMEOUT).unwrap_or(VmState::Running)
}

/// Asks a running VM's process for its state (QMP `query-status`), waiting
/// at most `timeout`; `None` when it cannot be asked.
pub fn query_state(name: &str, timeout: Duration) -> Option<VmState> {
    let status = ControlClient::connect(RunFiles::new(name).control()).and_then(|mut client| {
        client.set_timeout(timeout);
        client.execute("query-status", Value::Null)
    });
    match status {
        Ok(status) => Some(match status["status"].as_str() {
            Some("paused") => VmState::Paused,
            Some("guest-panicked") | Some("internal-error") => VmState::Crashed,
            Some("shutdown") => VmState::PoweredOff,
            _ => VmState::Running,
        }),
        Err(e) => {
            tracing::debug!(vm = name, "status query failed: {e}");
            None
        }
    }
}

/// Every defined VM, sorted by name, without asking running VMs anything:
/// what the window shows at once, before the first full poll.
pub fn list_quickly() -> Vec<VmSummary> {
    DomainStore::open()
        .list()
        .iter()
        .map(|definition| {
            let running = RunFiles::new(&definition.name).running().is_some();
            let state = if running {
                VmState::Running
            } else {
                VmState::ShutOff
            };
            VmSummary::new(definition, state)
        })
        .collect()
}

/// The window's view of the store, kept current: what [`list`] returns,
/// without rereading every definition each time.
pub struct LiveInventory {
    domains: PathBuf,
    runtime: PathBuf,
    /// `None` when inotify could not be set up: then everything is reread
    /// on every [`LiveInventory::wait`], as a timer would.
    watcher: Option<StoreWatcher>,
    definitions: Vec<Definition>,
    /// VMs whose process published its state: the only ones asked.
    published: HashSet<String>,
}

impl LiveInventory {
    /// The store in `paths::domains_dir()`, VMs in `paths::runtime_dir()`.
    pub fn open() -> Self {
        Self::at(&crate::paths::domains_dir(), &crate::paths::runtime_dir())
    }

    pub fn at(domains: &Path, runtime: &Path) -> Self {
        let watcher = match StoreWatcher::new(domains, runtime) {
            Ok(watcher) => Some(watcher),
            Err(e) => {
                tracing::warn!("{e}; rereading every definition on a timer instead");
                None
            }
        };
        let mut inventory = Self {
            domains: domains.to_path_buf(),
            runtime: runtime.to_path_buf(),
            watcher,
            definitions: Vec::new(),
            published: HashSet::new(),
        };
        inventory.reread_definitions();
        inventory.reread_runtime();
        inventory
    }

    /// Whether changes are noticed (else everything is reread each time).
    pub fn is_watching(&self) -> bool {
        self.watcher.is_some()
    }

    /// Every defined VM, sorted by name: running ones (by their run state
    /// file) are asked what they are doing, the rest are shut off.
    pub fn current(&self) -> Vec<VmSummary> {
        self.definitions
            .iter()
            .map(|definition| {
                let state = if self.published.contains(&definition.name) {
                    live_state(&definition.name)
                } else {
                    VmState::ShutOff
                };
                VmSummary::new(definition, state)
            })
            .collect()
    }

    /// Waits up to `interval`, returning early when the store changed, and
    /// rereads what changed.
    pub fn wait(&mut self, interval: Duration) {
        let changes = match self.watcher.as_mut().map(|w| w.wait(interval)) {
            Some(Ok(changes)) => changes,
            Some(Err(e)) => {
                tracing::warn!("{e}; rereading every definition on a timer instead");
                self.watcher = None;
                std::thread::sleep(interval);
                Default::default()
            }
            None => {
                std::thread::sleep(interval);
                Default::default()
            }
        };
        let timed = self.watcher.is_none();
        if timed || changes.definitions {
            self.reread_definitions();
        }
        if timed || changes.runtime {
            self.reread_runtime();
        }
    }

    fn reread_definitions(&mut self) {
        self.definitions = DomainStore::at(self.domains.clone()).list();
    }

    /// One directory listing rather than a lookup per VM: the VMs whose
    /// directory holds a state file. A VM process that died leaves its
    /// file; [`live_state`] then finds it gone and removes the file, which
    /// is a change like any other.
    fn reread_runtime(&mut self) {
        self.published = std::fs::read_dir(crate::vm_process::vms_dir(&self.runtime))
            .into_iter()
            .flatten()
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name().into_string().ok()?;
                RunFiles::under(&self.runtime, &name)
                    .state()
                    .exists()
                    .then_some(name)
            })
            .collect();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xml(name: &str, memory_mib: u32) -> String {
        format!("<domain type='kvm'><name>{name}</name><memory unit='MiB'>{memory_mib}</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>")
    }

    fn names(vms: &[VmSummary]) -> Vec<&str> {
        vms.iter().map(|vm| vm.name.as_str()).collect()
    }

    /// Waits (as the window's poller does, a second at a time) until the
    /// list satisfies `done`; fails after a few seconds.
    fn wait_for(inventory: &mut LiveInventory, done: impl Fn(&[VmSummary]) -> bool) {
        for _ in 0..5 {
            if done(&inventory.current()) {
                return;
            }
            inventory.wait(Duration::from_secs(1));
        }
        panic!("never changed: {:?}", inventory.current());
    }

    #[test]
    fn defines_renames_edits_and_undefines_from_elsewhere_show_up() {
        let home = tempfile::tempdir().unwrap();
        let domains = home.path().join("config/domains");
        let runtime = home.path().join("run");
        let store = DomainStore::at(domains.clone());
        store.define(&xml("alpha", 64)).unwrap();
        let mut inventory = LiveInventory::at(&domains, &runtime);
        assert!(inventory.is_watching());
        assert_eq!(names(&inventory.current()), ["alpha"]);

        // Another process (the CLI) defines one: seen well within a second.
        let started = std::time::Instant::now();
        store.define(&xml("beta", 64)).unwrap();
        inventory.wait(Duration::from_secs(5));
        assert!(started.elapsed() < Duration::from_secs(1));
        assert_eq!(names(&inventory.current()), ["alpha", "beta"]);

        // Edited (redefined with the same UUID, as `vireo edit` does).
        let beta = store.find("beta").unwrap();
        let edited = xml("beta", 256).replace(
            "<name>beta</name>",
            &format!("<name>beta</name><uuid>{}</uuid>", beta.uuid),
        );
        store.define(&edited).unwrap();
        wait_for(&mut inventory, |vms| vms[1].memory_bytes == 256 << 20);
        store.rename("alpha", "gamma").unwrap();
        wait_for(&mut inventory, |vms| names(vms) == ["beta", "gamma"]);
        store.undefine("beta").unwrap();
        wait_for(&mut inventory, |vms| names(vms) == ["gamma"]);
        assert!(inventory
            .current()
            .iter()
            .all(|vm| vm.state == VmState::ShutOff));
    }

    #[test]
    fn without_changes_nothing_is_reread() {
        let home = tempfile::tempdir().unwrap();
        let domains = home.path().join("config/domains");
        let store = DomainStore::at(domains.clone());
        store.define(&xml("alpha", 64)).unwrap();
        let mut inventory = LiveInventory::at(&domains, &home.path().join("run"));
        // Rewritten but still open for writing: not a change yet (the
        // watcher waits for the close), so nothing is reread and the list
        // still shows what it read before.
        let mut file = std::fs::File::create(domains.join("alpha.xml")).unwrap();
        std::io::Write::write_all(&mut file, xml("alpha", 512).as_bytes()).unwrap();
        inventory.wait(Duration::from_millis(300));
        assert_eq!(inventory.current()[0].memory_bytes, 64 << 20);
        // Closed: a change, and the list follows.
        drop(file);
        wait_for(&mut inventory, |vms| vms[0].memory_bytes == 512 << 20);
    }

    #[test]
    fn without_inotify_it_rereads_on_the_timer() {
        let home = tempfile::tempdir().unwrap();
        // A file where the definitions directory should be: cannot be watched.
        let domains = home.path().join("domains");
        std::fs::write(&domains, "").unwrap();
        let mut inventory = LiveInventory::at(&domains, &home.path().join("run"));
        assert!(!inventory.is_watching());
        assert!(inventory.current().is_empty());
        std::fs::remove_file(&domains).unwrap();
        DomainStore::at(domains).define(&xml("alpha", 64)).unwrap();
        inventory.wait(Duration::from_millis(100));
        assert_eq!(names(&inventory.current()), ["alpha"]);
    }
}
