//! Vireo's own engine behind the [`Engine`] trait: the definitions in the
//! store, one VMM process per running VM, the directory pools and the
//! networks on this computer. Each method is the operation the window and
//! the local verbs already use, so `vireo -c vireo:///session list` and
//! `vireo list` answer alike.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;

use serde_json::Value;

use super::{
    sort_rows, DomainInfo, DomainRow, DomainState, Engine, EngineError, EngineResult, ErrorKind,
    NetworkRow, PoolRow, Power, Progress, VolumeRow,
};
use crate::app::inventory;
use crate::app::lifecycle::VmState;
use crate::app::operations;
use crate::definitions::{Definition, DomainStore as Store, NetworkStore, PoolStore};
use crate::storage::pools::{NewVolume, VolumeFormat};
use crate::vm_process::{RunFiles, RunState};

#[derive(Default)]
pub struct LocalEngine;

impl LocalEngine {
    pub fn new() -> Self {
        LocalEngine
    }

    fn definition(&self, which: &str) -> EngineResult<Definition> {
        Store::open().find(which).map_err(|e| {
            EngineError::new(
                ErrorKind::NoDomain,
                format!("failed to get domain '{which}': {e}"),
            )
        })
    }

    fn row(definition: &Definition, run: Option<RunState>) -> DomainRow {
        let state = match &run {
            None => DomainState::ShutOff,
            Some(_) => {
                match inventory::query_state(&definition.name, crate::control::DEFAULT_TIMEOUT) {
                    Some(VmState::Paused) => DomainState::Paused,
                    Some(VmState::Crashed) => DomainState::Crashed,
                    Some(VmState::PoweredOff) => DomainState::InShutdown,
                    _ => DomainState::Running,
                }
            }
        };
        DomainRow {
            id: run.map(|r| r.id),
            name: definition.name.clone(),
            uuid: definition.uuid.clone(),
            state,
        }
    }

    fn running(&self, name: &str) -> EngineResult<RunFiles> {
        let files = RunFiles::new(name);
        if files.running().is_none() {
            return Err(EngineError::new(
                ErrorKind::InvalidState,
                format!("domain '{name}' is not running"),
            ));
        }
        Ok(files)
    }
}

fn other(e: impl std::fmt::Display) -> EngineError {
    EngineError::other(e.to_string())
}

impl Engine for LocalEngine {
    fn uri(&self) -> &str {
        super::LOCAL_URI
    }

    fn list(&self) -> EngineResult<Vec<DomainRow>> {
        let mut rows: Vec<DomainRow> = Store::open()
            .list()
            .iter()
            .map(|d| Self::row(d, RunFiles::new(&d.name).running()))
            .collect();
        sort_rows(&mut rows);
        Ok(rows)
    }

    fn lookup(&self, which: &str) -> EngineResult<DomainRow> {
        if let Ok(id) = which.parse::<u32>() {
            for definition in Store::open().list() {
                if let Some(run) = RunFiles::new(&definition.name).running() {
                    if run.id == id {
                        return Ok(Self::row(&definition, Some(run)));
                    }
                }
            }
        }
        let definition = self.definition(which)?;
        let run = RunFiles::new(&definition.name).running();
        Ok(Self::row(&definition, run))
    }

    fn info(&self, name: &str) -> EngineResult<DomainInfo> {
        let definition = self.definition(name)?;
        let run = RunFiles::new(&definition.name).running();
        let pid = run.as_ref().map(|r| r.pid);
        let row = Self::row(&definition, run);
        let domain = definition.domain();
        let memory_kib = domain.memory().map_err(other)?.unwrap_or(0) / 1024;
        let cpu_time_ns = pid.and_then(cpu_time_ns);
        Ok(DomainInfo {
            row,
            os_type: "hvm".into(),
            vcpus: domain.vcpu().map_or(1, |v| v.count),
            cpu_time_ns,
            max_memory_kib: Some(memory_kib),
            used_memory_kib: memory_kib,
            persistent: Some(true),
            autostart: Some(false),
            managed_save: Some(false),
            security: Some(super::Security {
                model: "none".into(),
                doi: "0".into(),
                label: None,
            }),
        })
    }

    fn xml(&self, name: &str, _secure: bool) -> EngineResult<String> {
        Ok(self.definition(name)?.xml)
    }

    fn define(&self, xml: &str) -> EngineResult<String> {
        Store::open()
            .define(xml)
            .map(|d| d.name)
            .map_err(|e| EngineError::new(ErrorKind::InvalidDefinition, e.to_string()))
    }

    fn undefine(&self, name: &str) -> EngineResult<()> {
        let definition = self.definition(name)?;
        if RunFiles::new(&definition.name).running().is_some() {
            return Err(EngineError::new(
                ErrorKind::InvalidState,
                format!("domain '{}' is running", definition.name),
            ));
        }
        operations::delete(&definition.name, false)
            .map(|_| ())
            .map_err(EngineError::other)
    }

    fn power(&self, name: &str, verb: Power) -> EngineResult<()> {
        let name = self.definition(name)?.name;
        let active = RunFiles::new(&name).running().is_some();
        if active == (verb == Power::Start) {
            let what = if active {
                "Domain is already active"
            } else {
                "domain is not running"
            };
            return Err(EngineError::new(ErrorKind::InvalidState, what));
        }
        match verb {
            Power::Start => operations::start(&name),
            Power::Shutdown => operations::shut_down(&name),
            Power::Destroy => operations::force_off(&name),
            Power::Reboot => operations::reboot(&name),
            Power::Suspend => operations::pause(&name),
            Power::Resume => operations::resume(&name),
        }
        .map_err(EngineError::other)
    }

    fn screenshot(&self, name: &str) -> EngineResult<(Vec<u8>, String)> {
        let files = self.running(name)?;
        let path = files
            .dir()
            .join(format!(".{name}.screenshot-{}.png", std::process::id()));
        operations::screenshot(name, &path).map_err(EngineError::other)?;
        let image = std::fs::read(&path).map_err(other);
        let _ = std::fs::remove_file(&path);
        Ok((image?, "image/png".into()))
    }

    fn vnc_display(&self, name: &str) -> EngineResult<Option<String>> {
        let files = self.running(name)?;
        let mut client = crate::control::ControlClient::connect(files.control()).map_err(other)?;
        let info = client.execute("query-vnc", Value::Null).map_err(other)?;
        let (Some(host), Some(port)) = (info["host"].as_str(), info["service"].as_str()) else {
            return Ok(None);
        };
        let port: u16 = port.parse().map_err(other)?;
        Ok(Some(super::vnc_tunnel::virsh_display(host, port)))
    }

    fn open_vnc(&self, name: &str) -> EngineResult<UnixStream> {
        let files = self.running(name)?;
        UnixStream::connect(files.vnc()).map_err(other)
    }

    fn open_console(&self, name: &str) -> EngineResult<UnixStream> {
        let files = self.running(name)?;
        UnixStream::connect(files.serial()).map_err(other)
    }

    fn pools(&self) -> EngineResult<Vec<PoolRow>> {
        let store = PoolStore::open().map_err(other)?;
        let mut rows = Vec::new();
        for pool in store.list().map_err(other)? {
            let space = if pool.active { pool.space().ok() } else { None };
            rows.push(PoolRow {
                name: pool.def.name.clone(),
                state: if pool.active { "running" } else { "inactive" }.into(),
                active: pool.active,
                autostart: pool.autostart,
                persistent: true,
                capacity: space.as_ref().map_or(0, |s| s.capacity),
                allocation: space.as_ref().map_or(0, |s| s.allocation),
                available: space.as_ref().map_or(0, |s| s.available),
            });
        }
        Ok(rows)
    }

    fn volumes(&self, pool: &str) -> EngineResult<Vec<VolumeRow>> {
        let store = PoolStore::open().map_err(other)?;
        let pool = store
            .get(pool)
            .map_err(|e| EngineError::new(ErrorKind::NoPool, e.to_string()))?;
        Ok(pool
            .volumes()
            .map_err(other)?
            .into_iter()
            .map(|v| VolumeRow {
                name: v.name,
                path: v.key,
                kind: "file".into(),
                capacity: v.capacity,
                allocation: v.allocation,
            })
            .collect())
    }

    fn create_volume(
        &self,
        pool: &str,
        name: &str,
        capacity: u64,
        format: &str,
    ) -> EngineResult<String> {
        let store = PoolStore::open().map_err(other)?;
        let pool = store
            .get(pool)
            .map_err(|e| EngineError::new(ErrorKind::NoPool, e.to_string()))?;
        let format = VolumeFormat::from_name(format).ok_or_else(|| {
            EngineError::new(
                ErrorKind::Unsupported,
                format!("Vireo creates raw and qcow2 volumes, not {format}"),
            )
        })?;
        let spec = NewVolume {
            name: name.to_string(),
            capacity,
            allocation: Some(0),
            format,
            prealloc_metadata: false,
            backing: None,
        };
        let volume = pool.create_volume(&spec, &mut |_, _| {}).map_err(other)?;
        Ok(volume.key)
    }

    fn file_size(&self, path: &str) -> EngineResult<u64> {
        std::fs::metadata(path).map(|m| m.len()).map_err(other)
    }

    fn upload(
        &self,
        path: &str,
        data: &mut dyn Read,
        _length: u64,
        progress: Progress,
    ) -> EngineResult<()> {
        let mut file = std::fs::File::create(path).map_err(other)?;
        copy_counting(data, &mut file, progress).map_err(other)?;
        file.sync_all().map_err(other)
    }

    fn download(&self, path: &str, out: &mut dyn Write, progress: Progress) -> EngineResult<u64> {
        let mut file = std::fs::File::open(path).map_err(other)?;
        copy_counting(&mut file, out, progress).map_err(other)
    }

    fn networks(&self) -> EngineResult<Vec<NetworkRow>> {
        let store = NetworkStore::open().map_err(other)?;
        Ok(store
            .list()
            .map_err(other)?
            .into_iter()
            .map(|n| NetworkRow {
                name: n.def.name(),
                active: n.active,
                autostart: n.autostart,
                persistent: true,
            })
            .collect())
    }
}

/// Copies everything, reporting the bytes so far.
pub fn copy_counting(
    from: &mut dyn Read,
    to: &mut dyn Write,
    progress: Progress,
) -> std::io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
        progress(total);
    }
}

/// CPU time the VM's process used, in nanoseconds, from /proc.
fn cpu_time_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(ticks * 1_000_000_000 / hz)
}
