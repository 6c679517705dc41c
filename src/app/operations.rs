//! The operations behind the window's buttons. Each one blocks (it talks
//! to a VM process or the disk), so the window runs it on a worker thread
//! after its [`Lifecycle`](super::lifecycle::Lifecycle) accepted it.
//! Errors are English sentences that say what to do; the window shows
//! them as they are after its own translated headline.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::control::ControlClient;
use crate::definitions::DomainStore;
use crate::vm_process::RunFiles;

fn control(name: &str) -> Result<ControlClient, String> {
    let files = RunFiles::new(name);
    if files.running().is_none() {
        return Err(format!("'{name}' is not running"));
    }
    ControlClient::connect(files.control())
        .map_err(|e| format!("cannot reach '{name}' through its control socket: {e}"))
}

fn execute(name: &str, command: &str, arguments: Value) -> Result<Value, String> {
    control(name)?
        .execute(command, arguments)
        .map_err(|e| e.to_string())
}

/// Starts `name` in its own process; returns once it runs.
pub fn start(name: &str) -> Result<(), String> {
    crate::vm_process::spawn::start(name, false).map(|_| ())
}

pub fn pause(name: &str) -> Result<(), String> {
    execute(name, "stop", Value::Null).map(|_| ())
}

pub fn resume(name: &str) -> Result<(), String> {
    execute(name, "cont", Value::Null).map(|_| ())
}

/// Presses the guest's power button (ACPI).
pub fn shut_down(name: &str) -> Result<(), String> {
    execute(name, "system_powerdown", Value::Null).map(|_| ())
}

/// Resets the VM, as `vireo reboot` does.
pub fn reboot(name: &str) -> Result<(), String> {
    execute(name, "system_reset", Value::Null).map(|_| ())
}

/// Pulls the plug.
pub fn force_off(name: &str) -> Result<(), String> {
    crate::vm_process::spawn::destroy(name)
}

/// Presses `qcodes` together (QEMU key names: `ctrl`, `alt`, `delete`).
pub fn send_key(name: &str, qcodes: &[&str]) -> Result<(), String> {
    let keys: Vec<Value> = qcodes
        .iter()
        .map(|code| json!({"type": "qcode", "data": code}))
        .collect();
    execute(name, "send-key", json!({ "keys": keys })).map(|_| ())
}

/// Saves the guest's screen as a PNG at `path`.
pub fn screenshot(name: &str, path: &Path) -> Result<(), String> {
    let path = std::path::absolute(path).map_err(|e| e.to_string())?;
    let scratch = RunFiles::new(name).screendump();
    execute(
        name,
        "screendump",
        json!({"filename": scratch, "format": "png"}),
    )?;
    crate::vm_process::deliver_screenshot(&scratch, &path)
}

/// Where a screenshot of `name` taken now goes: the user's Pictures
/// folder (`xdg-user-dir PICTURES`, else `~/Pictures`), named after the
/// VM and the time, never over an existing file.
pub fn screenshot_path(name: &str, pictures: &Path, now: &str) -> PathBuf {
    let base = format!("{name} {now}");
    let mut path = pictures.join(format!("{base}.png"));
    let mut n = 2;
    while path.exists() {
        path = pictures.join(format!("{base} ({n}).png"));
        n += 1;
    }
    path
}

/// The disks `delete` removes with "delete storage": writable, unshared
/// disk images (never CD-ROMs, read-only or shared disks), with their
/// targets (`vda`).
pub fn owned_storage(name: &str) -> Result<Vec<(String, PathBuf)>, String> {
    let definition = DomainStore::open().find(name).map_err(|e| e.to_string())?;
    let disks = definition.domain().disks().map_err(|e| e.to_string())?;
    Ok(disks
        .into_iter()
        .filter(|d| d.device == "disk" && !d.readonly && !d.shareable)
        .filter_map(|d| Some((d.target_dev, PathBuf::from(d.source?))))
        .collect())
}

/// Undefines shut-off VM `name`; with `with_storage`, also removes the
/// disks [`owned_storage`] names. Returns the files that could not be
/// removed, with why (the definition is gone either way).
pub fn delete(name: &str, with_storage: bool) -> Result<Vec<(PathBuf, String)>, String> {
    if RunFiles::new(name).running().is_some() {
        return Err(format!("'{name}' is running; force it off first"));
    }
    let storage = if with_storage {
        owned_storage(name)?
    } else {
        Vec::new()
    };
    DomainStore::open()
        .undefine(name)
        .map_err(|e| e.to_string())?;
    // The snapshots' descriptions go with the domain (the disks keep their
    // snapshots), as virsh's --snapshots-metadata and virt-manager do: a
    // new domain of the same name must not inherit them.
    crate::definitions::SnapshotStore::for_domain(name).remove_all()?;
    let mut left = Vec::new();
    for (_, path) in storage {
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => left.push((path, e.to_string())),
        }
    }
    Ok(left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn screenshots_never_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let first = screenshot_path("vm", dir.path(), "2026-11-23 12-00-00");
        assert_eq!(first, dir.path().join("vm 2026-11-23 12-00-00.png"));
        std::fs::write(&first, b"x").unwrap();
        let second = screenshot_path("vm", dir.path(), "2026-11-23 12-00-00");
        assert_eq!(second, dir.path().join("vm 2026-11-23 12-00-00 (2).png"));
    }
}
