//! Cloning a shut-off VM, as virt-clone does it — new name, new UUID, new
//! MAC addresses, and its own copy of every writable disk (read-only media
//! such as ISOs are shared). Behind `vireo clone` and the window's Clone.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use crate::definitions::DomainStore;
use crate::domain::{Disk, Interface};
use crate::ids::{generate_mac, generate_uuid};
use crate::vm_process::RunFiles;

/// Progress of a clone: the disk being copied (its target, `vda`) and the
/// fraction of all bytes copied so far, 0.0 to 1.0.
pub type Progress<'a> = &'a mut dyn FnMut(&str, f64);

/// Where the clone's copy of `source` goes: beside it, named after the clone.
fn clone_path(source: &Path, original: &str, name: &str, target: &str) -> PathBuf {
    let file = source
        .file_name()
        .map(|f| f.to_string_lossy().into_owned())
        .unwrap_or_default();
    let renamed = if file.contains(original) {
        file.replacen(original, name, 1)
    } else {
        let ext = source
            .extension()
            .map(|e| format!(".{}", e.to_string_lossy()))
            .unwrap_or_default();
        format!("{name}-{target}{ext}")
    };
    source.with_file_name(renamed)
}

/// Copies `from` to `to` keeping holes (so a sparse image stays sparse),
/// reporting progress. A failed copy leaves no file.
pub fn sparse_copy(from: &Path, to: &Path, label: &str, progress: Progress) -> Result<(), String> {
    const CHUNK: usize = 1 << 20;
    let mut input = File::open(from).map_err(|e| format!("cannot read {}: {e}", from.display()))?;
    let len = input.metadata().map_err(|e| e.to_string())?.len();
    let result = (|| {
        let mut output = File::options()
            .write(true)
            .create_new(true)
            .open(to)
            .map_err(|e| format!("cannot create {}: {e}", to.display()))?;
        let mut buf = vec![0u8; CHUNK];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(CHUNK as u64) as usize;
            input.read_exact(&mut buf[..n]).map_err(|e| e.to_string())?;
            if buf[..n].iter().all(|&b| b == 0) {
                output
                    .seek(SeekFrom::Current(n as i64))
                    .map_err(|e| e.to_string())?;
            } else {
                output.write_all(&buf[..n]).map_err(|e| e.to_string())?;
            }
            done += n as u64;
            progress(label, done as f64 / len.max(1) as f64);
        }
        output.set_len(len).map_err(|e| e.to_string())?;
        output.sync_all().map_err(|e| e.to_string())?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(to);
    }
    result
}

/// A qcow2 overlay at `target` backed by `source` (in `disk`'s format).
fn overlay(source: &Path, disk: &Disk, target: &Path) -> Result<(), String> {
    let format = disk.driver_type.as_deref().unwrap_or("raw");
    crate::storage::qcow2::create_overlay(source, format, target)
        .map_err(|e| format!("cannot create the overlay {}: {e}", target.display()))
}

/// Clones shut-off VM `original` as `name`; with `overlay`, each writable
/// disk of the clone is a qcow2 overlay backed by the original's instead
/// of a copy. Nothing is left behind when it fails.
pub fn clone_vm(
    original: &str,
    name: &str,
    overlay_disks: bool,
    progress: Progress,
) -> Result<(), String> {
    let store = DomainStore::open();
    let original = store.find(original).map_err(|e| e.to_string())?;
    if RunFiles::new(&original.name).running().is_some() {
        return Err(format!(
            "'{}' is running; shut it off before cloning it",
            original.name
        ));
    }
    if store.find(name).is_ok() {
        return Err(format!("a domain named '{}' already exists", name));
    }
    crate::definitions::validate_name(name).map_err(|e| e.to_string())?;
    let mut domain = original.domain().clone();
    domain.set_name(name);
    let uuid = generate_uuid().map_err(|e| format!("cannot generate a UUID: {e}"))?;
    domain.set_uuid(Some(&uuid));

    let interfaces: Vec<Interface> = domain.interfaces().map_err(|e| e.to_string())?;
    for (index, mut interface) in interfaces.into_iter().enumerate() {
        interface.mac = Some(generate_mac().map_err(|e| format!("cannot generate a MAC: {e}"))?);
        domain.update_device(index, &interface);
    }

    let disks: Vec<Disk> = domain.disks().map_err(|e| e.to_string())?;
    let mut copied: Vec<PathBuf> = Vec::new();
    let mut plan = Vec::new();
    for (index, disk) in disks.into_iter().enumerate() {
        let writable = disk.device == "disk" && !disk.readonly && !disk.shareable;
        let Some(source) = disk.source.clone().filter(|_| writable) else {
            continue;
        };
        let source = PathBuf::from(source);
        let mut target = clone_path(&source, &original.name, name, &disk.target_dev);
        if overlay_disks {
            target.set_extension("qcow2");
        }
        if target.exists() {
            return Err(format!(
                "{} already exists; move it away or clone under another name",
                target.display()
            ));
        }
        plan.push((index, disk, source, target));
    }
    for (index, mut disk, source, target) in plan {
        let made = if overlay_disks {
            overlay(&source, &disk, &target)
        } else {
            sparse_copy(&source, &target, &disk.target_dev, progress)
        };
        if let Err(e) = made {
            for path in &copied {
                let _ = std::fs::remove_file(path);
            }
            return Err(e);
        }
        copied.push(target.clone());
        disk.source = Some(target.to_string_lossy().into_owned());
        if overlay_disks {
            disk.driver_type = Some("qcow2".into());
        }
        domain.update_device(index, &disk);
    }
    if let Err(e) = store.define(&domain.to_xml()) {
        for path in &copied {
            let _ = std::fs::remove_file(path);
        }
        return Err(e.to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clone_paths_follow_the_new_name() {
        assert_eq!(
            clone_path(Path::new("/vms/c1.img"), "c1", "c2", "vda"),
            PathBuf::from("/vms/c2.img")
        );
        assert_eq!(
            clone_path(Path::new("/vms/disk.qcow2"), "c1", "c2", "vdb"),
            PathBuf::from("/vms/c2-vdb.qcow2")
        );
    }

    #[test]
    fn sparse_copy_keeps_content_and_holes() {
        let dir = tempfile::tempdir().unwrap();
        let from = dir.path().join("a");
        let mut data = vec![0u8; 3 << 20];
        data[5] = 7;
        data[(3 << 20) - 1] = 9;
        std::fs::write(&from, &data).unwrap();
        let to = dir.path().join("b");
        sparse_copy(&from, &to, "vda", &mut |_, _| {}).unwrap();
        assert_eq!(std::fs::read(&to).unwrap(), data);
        use std::os::unix::fs::MetadataExt;
        assert!(
            std::fs::metadata(&to).unwrap().blocks() * 512 < 3 << 20,
            "the zero megabyte is a hole"
        );
        assert!(
            sparse_copy(&from, &to, "vda", &mut |_, _| {}).is_err(),
            "never overwrites"
        );
    }
}
