//! Domain snapshots of a shut-off VM, as libvirt's QEMU driver takes them:
//! an internal snapshot in every writable qcow2 disk (under the snapshot's
//! name), and a `<domainsnapshot>` description kept beside the definitions
//! with the domain's definition at that moment ([`SnapshotStore`]).
//! Reverting applies each disk's snapshot and restores that definition;
//! deleting removes the disks' snapshots and hands the snapshot's children
//! to its parent. Errors are virsh's sentences.
//!
//! An external (`--disk-only`) snapshot leaves each image as it is and
//! puts a new qcow2 overlay in front of it, as libvirt does; deleting it
//! merges the overlays back (libvirt 9.0 does too), and reverting to one
//! is refused for now, as libvirt 9.0 refuses it.
//!
//! A running VM's snapshot (RAM and device state in the qcow2 VM state
//! area) is refused for now.

use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::app::clone::Progress;
use crate::definitions::{Definition, DomainStore, SnapshotStore};
use crate::domain::snapshot::{SnapshotDef, SnapshotDisk};
use crate::domain::{Disk, Domain, Element};
use crate::storage::qcow2::commit::commit;
use crate::storage::qcow2::create_overlay;
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
/// (CD-ROMs, read-only disks, empty drives) not at all, the rest in the
/// image (or, for `--disk-only`, in a new overlay file).
fn default_kind(disk: &Disk, disk_only: bool) -> &'static str {
    if disk.device == "cdrom" || disk.device == "floppy" || disk.readonly || disk.source.is_none() {
        "no"
    } else if disk_only {
        "external"
    } else {
        "internal"
    }
}

/// What a snapshot does to one disk of the domain.
struct PlannedDisk {
    /// Its index among the domain's disks, and the disk.
    index: usize,
    disk: Disk,
    /// `internal`, `external` or `no`.
    kind: String,
    /// For `external`, the overlay to create.
    overlay: Option<String>,
}

/// libvirt's name for an external snapshot's file when none is given
/// (`virDomainSnapshotDefAssignExternalNames`): the disk's path with its
/// extension, if the file name has one, replaced by the snapshot's name.
fn default_overlay(source: &str, snapshot: &str) -> String {
    let file_start = source.rfind('/').map_or(0, |slash| slash + 1);
    let stem = match source[file_start..].rfind('.') {
        Some(dot) => &source[..file_start + dot],
        None => source,
    };
    format!("{stem}.{snapshot}")
}

/// The disks to snapshot, in the domain's order, with what to do to each:
/// the user's `<disks>` (by target or source path) over the default.
fn plan_disks(
    domain: &Domain,
    snapshot: &str,
    asked: &[SnapshotDisk],
    disk_only: bool,
) -> Result<Vec<PlannedDisk>, String> {
    let disks = domain.disks().map_err(|e| e.to_string())?;
    for wanted in asked {
        let known = disks
            .iter()
            .any(|d| d.target_dev == wanted.name || d.source.as_deref() == Some(&wanted.name));
        if !known {
            return Err(format!("invalid argument: no disk named '{}'", wanted.name));
        }
    }
    let mut plan: Vec<PlannedDisk> = Vec::new();
    for (index, disk) in disks.into_iter().enumerate() {
        let asked = asked
            .iter()
            .find(|w| w.name == disk.target_dev || Some(w.name.as_str()) == disk.source.as_deref());
        let kind = asked
            .and_then(|w| w.snapshot.clone())
            .unwrap_or_else(|| default_kind(&disk, disk_only).to_string());
        let mut overlay = None;
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
            // (offline, libvirt takes external snapshots only when asked
            // for disks alone)
            "external" if !disk_only => {
                return Err(format!(
                    "unsupported configuration: disk '{}' must use snapshot mode 'internal'",
                    disk.target_dev
                ))
            }
            "external" => {
                let Some(source) = disk.source.as_deref().filter(|_| disk.disk_type == "file")
                else {
                    return Err(format!(
                        "unsupported configuration: cannot generate external snapshot name for disk '{}' without source",
                        disk.target_dev
                    ));
                };
                if let Some(format) = asked.and_then(|w| w.driver_type.as_deref()) {
                    if format != "qcow2" {
                        return Err(format!(
                            "unsupported configuration: external snapshot format for disk {} is unsupported: {format}",
                            disk.target_dev
                        ));
                    }
                }
                let file = asked
                    .and_then(|w| w.source.clone())
                    .unwrap_or_else(|| default_overlay(source, snapshot));
                if let Some(other) = plan.iter().find(|p| p.overlay.as_deref() == Some(&file)) {
                    return Err(format!(
                        "unsupported configuration: disks '{}' and '{}' cannot both take their snapshot in {file}",
                        other.disk.target_dev, disk.target_dev
                    ));
                }
                if Path::new(&file).exists() {
                    return Err(format!(
                        "unsupported configuration: external snapshot file for disk {} already exists and is not a block device: {file}",
                        disk.target_dev
                    ));
                }
                overlay = Some(file);
            }
            "manual" => {
                return Err(format!(
                    "unsupported configuration: manual snapshots (disk {}) are not supported; use internal or external snapshots",
                    disk.target_dev
                ))
            }
            other => {
                return Err(format!(
                    "unsupported configuration: unknown disk snapshot type '{other}'"
                ))
            }
        }
        plan.push(PlannedDisk {
            index,
            disk,
            kind,
            overlay,
        });
    }
    let has = |kind: &str| plan.iter().any(|p| p.kind == kind);
    if has("internal") && has("external") {
        return Err(
            "unsupported configuration: mixing internal and external targets for a snapshot is not yet supported"
                .into(),
        );
    }
    Ok(plan)
}

fn image_error(disk: &Disk, error: SnapshotError) -> String {
    format!("disk {}: {error}", disk.target_dev)
}

/// Takes a snapshot of the shut-off domain `definition` as `asked` describes
/// it (name, description, disks; the rest is filled in as libvirt does).
/// `disk_only` (virsh's `--disk-only`) puts every disk's new writes in an
/// overlay, the image staying as it is; otherwise disks are snapshotted
/// inside their qcow2 images.
pub fn create(
    definition: &Definition,
    asked: &SnapshotDef,
    disk_only: bool,
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
    let plan = plan_disks(definition.domain(), &name, &asked.disks, disk_only)?;
    let internal: Vec<&Disk> = plan
        .iter()
        .filter(|p| p.kind == "internal")
        .map(|p| &p.disk)
        .collect();
    take_internal(&internal, &name)?;
    if let Err(error) = take_external(definition, &plan) {
        drop_internal(&internal, &name);
        return Err(error);
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
            .map(|p| SnapshotDisk {
                name: p.disk.target_dev.clone(),
                snapshot: Some(p.kind.clone()),
                driver_type: p.overlay.as_ref().map(|_| "qcow2".to_string()),
                source: p.overlay.clone(),
            })
            .collect(),
        // (as it was: an external snapshot's disks are its overlays' backing files)
        domain: Some(definition.domain().root().clone()),
        current: true,
    };
    store.save(&def)?;
    store.set_current(Some(&def.name))?;
    Ok(def)
}

/// Snapshots `disks` inside their qcow2 images; a failure takes back the
/// ones already done.
fn take_internal(disks: &[&Disk], name: &str) -> Result<(), String> {
    for (done, disk) in disks.iter().enumerate() {
        let path = disk.source.as_deref().unwrap_or_default();
        let new = NewSnapshot {
            name: name.to_string(),
            ..NewSnapshot::default()
        };
        if let Err(error) = qcow2_snapshot::create(Path::new(path), &new) {
            drop_internal(&disks[..done], name);
            return Err(image_error(disk, error));
        }
    }
    Ok(())
}

fn drop_internal(disks: &[&Disk], name: &str) {
    for disk in disks {
        let path = disk.source.as_deref().unwrap_or_default();
        if let Err(e) = qcow2_snapshot::delete(Path::new(path), name) {
            tracing::error!("cannot take back snapshot {name} of {path}: {e}");
        }
    }
}

/// Creates the external disks' overlays, each backed by the disk's image,
/// and switches the definition to them; a failure removes what it made
/// and leaves the definition as it was.
fn take_external(definition: &Definition, plan: &[PlannedDisk]) -> Result<(), String> {
    let external: Vec<&PlannedDisk> = plan.iter().filter(|p| p.overlay.is_some()).collect();
    if external.is_empty() {
        return Ok(());
    }
    let mut domain = definition.domain().clone();
    let mut made: Vec<&str> = Vec::new();
    let undo = |made: &[&str]| {
        for file in made {
            if let Err(e) = std::fs::remove_file(file) {
                tracing::error!("cannot remove the overlay {file}: {e}");
            }
        }
    };
    for planned in external {
        let overlay = planned.overlay.as_deref().unwrap_or_default();
        let source = planned.disk.source.as_deref().unwrap_or_default();
        let format = planned.disk.driver_type.as_deref().unwrap_or("raw");
        if let Err(e) = create_overlay(Path::new(source), format, Path::new(overlay)) {
            undo(&made);
            return Err(format!("disk {}: {e}", planned.disk.target_dev));
        }
        made.push(overlay);
        let mut disk = planned.disk.clone();
        disk.source = Some(overlay.to_string());
        disk.driver_type = Some("qcow2".into());
        domain.update_device(planned.index, &disk);
    }
    if let Err(e) = DomainStore::open().define(&domain.to_xml()) {
        undo(&made);
        return Err(format!("cannot switch the definition to the overlays: {e}"));
    }
    Ok(())
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
    if def.is_external() {
        // (libvirt 9.0's words; its later versions make new overlays on
        // the snapshot's files)
        return Err(
            "unsupported configuration: revert to external snapshot not supported yet".into(),
        );
    }
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
/// becomes current if it was. `metadata_only` (virsh's `--metadata`)
/// removes only the description and leaves the disks as they are.
/// An external snapshot's overlays are merged into the images behind them
/// (`progress` gets each disk's target and the fraction done).
pub fn delete(
    definition: &Definition,
    name: &str,
    metadata_only: bool,
    running: bool,
    progress: Progress,
) -> Result<(), String> {
    if running && !metadata_only {
        return Err(format!("Operation not supported: {RUNNING}"));
    }
    let store = SnapshotStore::for_domain(&definition.name);
    let def = store.get(name)?.ok_or_else(|| not_found(name))?;
    if def.is_external() && !metadata_only {
        merge_overlays(definition, &store, &def, progress)?;
    }
    let disks = if metadata_only {
        Vec::new()
    } else {
        snapshot_disks(&def)?
    };
    for disk in disks {
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

/// Deletes the data side of external snapshot `def`, as libvirt does: each
/// disk's overlay is committed into the image it fronts (which then holds
/// the disk's present bytes), the disk goes back on that image, and the
/// overlay file is removed. Only a snapshot whose overlays the disks still
/// use, with no snapshot after it, can be merged so; the rest is refused
/// before anything changes.
fn merge_overlays(
    definition: &Definition,
    store: &SnapshotStore,
    def: &SnapshotDef,
    progress: Progress,
) -> Result<(), String> {
    let name = &def.name;
    let keep = "; 'snapshot-delete --metadata' removes only its description and keeps the disks as they are";
    if store
        .list()?
        .iter()
        .any(|s| s.parent.as_deref() == Some(name.as_str()))
    {
        return Err(format!(
            "unsupported configuration: deleting external snapshot {name}, which has snapshots after it, is not supported yet{keep}"
        ));
    }
    let mut domain = definition.domain().clone();
    let disks = domain.disks().map_err(|e| e.to_string())?;
    let mut merges = Vec::new();
    for wanted in def
        .disks
        .iter()
        .filter(|d| d.snapshot.as_deref() == Some("external"))
    {
        let overlay = wanted.source.as_deref().unwrap_or_default();
        let found = disks
            .iter()
            .enumerate()
            .find(|(_, d)| d.target_dev == wanted.name);
        match found {
            Some((index, disk)) if disk.source.as_deref() == Some(overlay) => {
                merges.push((index, disk.clone(), overlay));
            }
            _ => {
                return Err(format!(
                    "unsupported configuration: disk {} no longer uses snapshot {name}'s overlay {overlay}, so it cannot be merged{keep}",
                    wanted.name
                ))
            }
        }
    }
    // Each commit leaves the chain reading as before, and the definition
    // names the overlays until every disk is merged: a failure part-way
    // loses nothing.
    for (index, disk, overlay) in &merges {
        let (backing, format) = commit(Path::new(overlay), &mut |fraction| {
            progress(&disk.target_dev, fraction)
        })
        .map_err(|e| format!("disk {}: cannot merge {overlay}: {e}", disk.target_dev))?;
        let mut disk = disk.clone();
        disk.source = Some(backing.to_string_lossy().into_owned());
        disk.driver_type = Some(format.name().to_string());
        domain.update_device(*index, &disk);
    }
    DomainStore::open()
        .define(&domain.to_xml())
        .map_err(|e| format!("cannot put the disks back on their images: {e}"))?;
    for (_, _, overlay) in merges {
        if let Err(e) = std::fs::remove_file(overlay) {
            tracing::warn!("cannot remove the merged overlay {overlay}: {e}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::default_overlay;

    #[test]
    fn overlays_are_named_as_libvirt_names_them() {
        assert_eq!(default_overlay("/img/vm.qcow2", "s1"), "/img/vm.s1");
        assert_eq!(default_overlay("/img/vm", "s1"), "/img/vm.s1");
        assert_eq!(default_overlay("/img.d/vm", "s1"), "/img.d/vm.s1");
        assert_eq!(default_overlay("/img/vm.tar.gz", "s1"), "/img/vm.tar.s1");
    }
}
