//! Domain snapshots of a shut-off VM, as libvirt's QEMU driver takes them:
//! an internal snapshot in every writable qcow2 disk (under the snapshot's
//! name), and a `<domainsnapshot>` description kept beside the definitions
//! with the domain's definition at that moment ([`SnapshotStore`]).
//! Reverting applies each disk's snapshot and restores that definition;
//! deleting removes the disks' snapshots and hands the snapshot's children
//! to its parent. Errors are virsh's sentences.
//!
//! A running VM's snapshot (RAM and device state in the qcow2 VM state
//! area) is refused for now.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::definitions::{Definition, DomainStore, SnapshotStore};
use crate::domain::snapshot::{SnapshotDef, SnapshotDisk};
use crate::domain::{Disk, Domain, Element};
use crate::storage::qcow2::snapshot::{self as qcow2_snapshot, NewSnapshot, SnapshotError};

/// What the running VM's half will lift.
const RUNNING: &str = "snapshots of a running domain are not supported yet; shut it down first";

/// The virsh error for a snapshot name that is not there.
pub fn not_found(name: &str) -> String {
    format!("Domain snapshot not found: no domain snapshot with matching name '{name}'")
}

fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// How libvirt snapshots a disk by default: media that cannot change
/// (CD-ROMs, read-only disks, empty drives) not at all, the rest internally.
fn default_kind(disk: &Disk) -> &'static str {
    if disk.device == "cdrom" || disk.device == "floppy" || disk.readonly || disk.source.is_none() {
        "no"
    } else {
        "internal"
    }
}

/// The disks to snapshot, in the domain's order, with what to do to each:
/// the user's `<disks>` (by target or source path) over the default.
fn plan_disks(domain: &Domain, asked: &[SnapshotDisk]) -> Result<Vec<(Disk, String)>, String> {
    let disks = domain.disks().map_err(|e| e.to_string())?;
    for wanted in asked {
        let known = disks
            .iter()
            .any(|d| d.target_dev == wanted.name || d.source.as_deref() == Some(&wanted.name));
        if !known {
            return Err(format!("invalid argument: no disk named '{}'", wanted.name));
        }
    }
    let mut plan = Vec::new();
    for disk in disks {
        let asked = asked
            .iter()
            .find(|w| w.name == disk.target_dev || Some(w.name.as_str()) == disk.source.as_deref());
        let kind = asked
            .and_then(|w| w.snapshot.clone())
            .unwrap_or_else(|| default_kind(&disk).to_string());
        match kind.as_str() {
            "no" => {}
            "internal" => {
                let format = disk.driver_type.as_deref().unwrap_or("raw");
                if format != "qcow2" {
                    return Err(format!(
                        "unsupported configuration: internal snapshot for disk {} unsupported for storage type {format}",
                        disk.target_dev
                    ));
                }
                if disk.disk_type != "file" {
                    return Err(format!(
                        "unsupported configuration: internal snapshot for disk {} needs a file, not a {} disk",
                        disk.target_dev, disk.disk_type
                    ));
                }
            }
            "external" | "manual" => {
                return Err(format!(
                    "unsupported configuration: {kind} snapshots (disk {}) are not supported yet; use internal snapshots of qcow2 disks",
                    disk.target_dev
                ))
            }
            other => {
                return Err(format!(
                    "unsupported configuration: unknown disk snapshot type '{other}'"
                ))
            }
        }
        plan.push((disk, kind));
    }
    Ok(plan)
}

fn image_error(disk: &Disk, error: SnapshotError) -> String {
    format!("disk {}: {error}", disk.target_dev)
}

/// Takes a snapshot of the shut-off domain `definition` as `asked` describes
/// it (name, description, disks; the rest is filled in as libvirt does).
pub fn create(
    definition: &Definition,
    asked: &SnapshotDef,
    running: bool,
) -> Result<SnapshotDef, String> {
    if running {
        return Err(format!("Operation not supported: {RUNNING}"));
    }
    let store = SnapshotStore::for_domain(&definition.name);
    let created = now();
    let name = if asked.name.is_empty() {
        created.to_string()
    } else {
        asked.name.clone()
    };
    if name.starts_with('.') || name.contains('/') {
        return Err(format!(
            "invalid argument: snapshot name '{name}' may not start with '.' or contain '/'"
        ));
    }
    if store.get(&name)?.is_some() {
        return Err(format!(
            "operation failed: domain moment {name} already exists"
        ));
    }
    if asked.memory.as_deref().is_some_and(|m| m != "no") {
        return Err(
            "unsupported configuration: memory state cannot be saved with offline or disk-only snapshot"
                .into(),
        );
    }
    let plan = plan_disks(definition.domain(), &asked.disks)?;

    // The disks first; a failure takes back the ones already done.
    let mut done: Vec<&Disk> = Vec::new();
    for (disk, kind) in &plan {
        if kind != "internal" {
            continue;
        }
        let path = disk.source.as_deref().unwrap_or_default();
        let new = NewSnapshot {
            name: name.clone(),
            ..NewSnapshot::default()
        };
        if let Err(error) = qcow2_snapshot::create(Path::new(path), &new) {
            for undo in done {
                let path = undo.source.as_deref().unwrap_or_default();
                if let Err(e) = qcow2_snapshot::delete(Path::new(path), &name) {
                    tracing::error!("cannot take back snapshot {name} of {path}: {e}");
                }
            }
            return Err(image_error(disk, error));
        }
        done.push(disk);
    }

    let parent = store.current()?.map(|c| c.name);
    let def = SnapshotDef {
        name,
        description: asked.description.clone(),
        state: Some("shutoff".into()),
        parent,
        creation_time: Some(created),
        memory: Some("no".into()),
        disks: plan
            .iter()
            .map(|(disk, kind)| SnapshotDisk {
                name: disk.target_dev.clone(),
                snapshot: Some(kind.clone()),
            })
            .collect(),
        domain: Some(definition.domain().root().clone()),
        current: true,
    };
    store.save(&def)?;
    store.set_current(Some(&def.name))?;
    Ok(def)
}

/// The disks a snapshot holds, from the definition it saved.
fn snapshot_disks(def: &SnapshotDef) -> Result<Vec<Disk>, String> {
    let Some(domain) = &def.domain else {
        return Ok(Vec::new());
    };
    let domain = Domain::from_element(domain.clone()).map_err(|e| e.to_string())?;
    let disks = domain.disks().map_err(|e| e.to_string())?;
    Ok(disks
        .into_iter()
        .filter(|disk| {
            def.disks
                .iter()
                .any(|d| d.name == disk.target_dev && d.snapshot.as_deref() == Some("internal"))
        })
        .collect())
}

/// Reverts the shut-off domain to snapshot `name`: its disks read as they
/// did then, and its definition is the one saved with the snapshot.
pub fn revert(definition: &Definition, name: &str, running: bool) -> Result<SnapshotDef, String> {
    if running {
        return Err(format!("Operation not supported: {RUNNING}"));
    }
    let store = SnapshotStore::for_domain(&definition.name);
    let def = store.get(name)?.ok_or_else(|| not_found(name))?;
    let disks = snapshot_disks(&def)?;
    // Every disk must hold the snapshot before any is reverted, so a disk
    // that lost it (or is gone, or in use) leaves all of them as they are.
    for disk in &disks {
        let path = disk.source.as_deref().unwrap_or_default();
        let held = qcow2_snapshot::list(Path::new(path)).map_err(|e| image_error(disk, e))?;
        if !held.iter().any(|s| s.name == name) {
            return Err(image_error(disk, SnapshotError::NotFound(name.into())));
        }
    }
    for disk in &disks {
        let path = disk.source.as_deref().unwrap_or_default();
        qcow2_snapshot::apply(Path::new(path), name).map_err(|e| image_error(disk, e))?;
    }
    if let Some(domain) = &def.domain {
        restore_definition(domain)?;
    }
    store.set_current(Some(name))?;
    Ok(def)
}

fn restore_definition(domain: &Element) -> Result<(), String> {
    DomainStore::open()
        .define(&domain.to_xml())
        .map(drop)
        .map_err(|e| format!("cannot restore the snapshot's definition: {e}"))
}

/// Deletes snapshot `name` of the shut-off domain: the disks' snapshots go
/// (their clusters freed), children move up to its parent, and its parent
/// becomes current if it was.
pub fn delete(definition: &Definition, name: &str, running: bool) -> Result<(), String> {
    if running {
        return Err(format!("Operation not supported: {RUNNING}"));
    }
    let store = SnapshotStore::for_domain(&definition.name);
    let def = store.get(name)?.ok_or_else(|| not_found(name))?;
    for disk in snapshot_disks(&def)? {
        let path = disk.source.as_deref().unwrap_or_default();
        match qcow2_snapshot::delete(Path::new(path), name) {
            // Already gone from the image (deleted by hand): only the
            // description is left to remove.
            Ok(_) | Err(SnapshotError::NotFound(_)) => {}
            Err(error) => return Err(image_error(&disk, error)),
        }
    }
    for child in store.list()? {
        if child.parent.as_deref() == Some(name) {
            store.save(&SnapshotDef {
                parent: def.parent.clone(),
                ..child
            })?;
        }
    }
    if def.current {
        if let Some(parent) = &def.parent {
            store.set_current(Some(parent))?;
        }
    }
    store.remove(name)
}
