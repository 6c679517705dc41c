//! The VMs the window lists: every stored definition with its state, as
//! the store and the VM processes say. Reading it never blocks for long:
//! definitions are small files, and a running VM answers `query-status`
//! on its control socket within the client's timeout.

use std::time::Duration;

use serde_json::Value;

use super::lifecycle::VmState;
use crate::control::ControlClient;
use crate::runtime::RunFiles;
use crate::store::{Definition, Store};

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

/// Every defined VM, sorted by name, with what its process says.
pub fn list() -> Vec<VmSummary> {
    Store::open()
        .list()
        .iter()
        .map(|definition| VmSummary::new(definition, live_state(&definition.name)))
        .collect()
}

/// Every defined VM, sorted by name, without asking running VMs anything:
/// what the window shows at once, before the first full poll.
pub fn list_quickly() -> Vec<VmSummary> {
    Store::open()
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
