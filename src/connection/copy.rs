//! "Copy to…": a shut-off VM from one engine to another — Vireo's store to
//! a libvirt host, a libvirt host back to Vireo, or between two hosts.
//!
//! The definition goes through the target's define; each file-backed disk
//! (and CD-ROM image) becomes a volume of the target's pool, filled with
//! the source's bytes through the engines' streams (libvirt's volume
//! upload and download APIs), and the copy's `<source file=>` points at
//! it. A disk that cannot be copied (its file is in no pool of the host,
//! a volume of that name exists) is left as it was and reported, never
//! silently dropped. Copying into Vireo also reports what Vireo will not
//! run in the definition, in `vm_config::unsupported()`'s sentences.

use std::os::unix::net::UnixStream;

use super::{DomainState, Engine, EngineError, EngineResult, ErrorKind, LOCAL_URI};
use crate::domain::{Disk, Domain, Element};

/// What happened to one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskOutcome {
    Copied {
        target: String,
        from: String,
        to: String,
        bytes: u64,
    },
    /// Left pointing where it pointed, and why.
    NotCopied { target: String, reason: String },
}

/// What a copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CopyReport {
    /// The copy's name on the target.
    pub name: String,
    pub disks: Vec<DiskOutcome>,
    /// What the target (Vireo) will not run as written.
    pub unsupported: Vec<String>,
}

/// Reports `(disk target, bytes done, bytes in all)` as disks are copied.
pub type CopyProgress<'a> = &'a mut dyn FnMut(&str, u64, u64);

/// Copies shut-off domain `name` from `from` to `to`, its disks into the
/// target's `pool`.
pub fn copy_vm(
    from: &dyn Engine,
    to: &dyn Engine,
    name: &str,
    pool: &str,
    progress: CopyProgress,
) -> EngineResult<CopyReport> {
    let row = from.lookup(name)?;
    if row.state != DomainState::ShutOff {
        return Err(EngineError::new(
            ErrorKind::InvalidState,
            format!(
                "'{}' is {}; shut it off before copying it",
                row.name,
                row.state.virsh_word()
            ),
        ));
    }
    if to.lookup(&row.name).is_ok() {
        return Err(EngineError::new(
            ErrorKind::InvalidState,
            format!("{} already has a VM named '{}'", to.uri(), row.name),
        ));
    }
    let xml = from.inactive_xml(&row.name)?;
    let mut domain = Element::parse(&xml)
        .and_then(Domain::from_element)
        .map_err(|e| EngineError::new(ErrorKind::InvalidDefinition, e.to_string()))?;
    let disks = domain
        .disks()
        .map_err(|e| EngineError::new(ErrorKind::InvalidDefinition, e.to_string()))?;
    let taken: Vec<String> = to.volumes(pool)?.into_iter().map(|v| v.name).collect();
    let mut report = CopyReport {
        name: row.name.clone(),
        ..CopyReport::default()
    };
    for (index, disk) in disks.iter().enumerate() {
        let outcome = copy_disk(from, to, pool, disk, &taken, progress);
        if let DiskOutcome::Copied { to: path, .. } = &outcome {
            let mut moved = disk.clone();
            moved.source = Some(path.clone());
            // The new volume is in the pool as a file.
            moved.disk_type = "file".into();
            domain.update_device(index, &moved);
        }
        report.disks.push(outcome);
    }
    if to.uri() == LOCAL_URI {
        report.unsupported = crate::vm_config::unsupported(&domain);
    }
    to.define(&domain.to_xml())?;
    Ok(report)
}

/// What Vireo would not run of the definition `xml`, in
/// `vm_config::unsupported()`'s sentences (none when it cannot be read:
/// the XML page reports that itself).
pub fn unsupported_in(xml: &str) -> Vec<String> {
    Element::parse(xml)
        .and_then(Domain::from_element)
        .map(|d| crate::vm_config::unsupported(&d))
        .unwrap_or_default()
}

fn copy_disk(
    from: &dyn Engine,
    to: &dyn Engine,
    pool: &str,
    disk: &Disk,
    taken: &[String],
    progress: CopyProgress,
) -> DiskOutcome {
    let target = disk.target_dev.clone();
    let not_copied = |reason: String| DiskOutcome::NotCopied {
        target: target.clone(),
        reason,
    };
    let Some(source) = disk.source.clone() else {
        return not_copied("the drive is empty".into());
    };
    if disk.disk_type != "file" && disk.disk_type != "volume" {
        return not_copied(format!(
            "a '{}' disk is not a file; copy its contents by hand",
            disk.disk_type
        ));
    }
    let file_name = source.rsplit('/').next().unwrap_or(&source).to_string();
    if taken.contains(&file_name) {
        return not_copied(format!(
            "pool '{pool}' on {} already has a volume named '{file_name}'",
            to.uri()
        ));
    }
    let size = match from.file_size(&source) {
        Ok(size) => size,
        Err(e) => return not_copied(format!("{source} cannot be read on {}: {e}", from.uri())),
    };
    // Raw and sparse: the upload replaces every byte, the format comes
    // with them (a qcow2 file stays qcow2).
    let path = match to.create_volume(pool, &file_name, size, "raw") {
        Ok(path) => path,
        Err(e) => return not_copied(format!("no volume for it in pool '{pool}': {e}")),
    };
    match stream_file(from, to, &source, &path, size, &target, progress) {
        Ok(bytes) => DiskOutcome::Copied {
            target,
            from: source,
            to: path,
            bytes,
        },
        Err(e) => not_copied(format!("copying {source} failed: {e}")),
    }
}

/// Streams the file at `source` on `from` into the volume at `path` on
/// `to`: the download feeds the upload through a socket pair.
fn stream_file(
    from: &dyn Engine,
    to: &dyn Engine,
    source: &str,
    path: &str,
    size: u64,
    target: &str,
    progress: CopyProgress,
) -> EngineResult<u64> {
    let (mut write_end, mut read_end) =
        UnixStream::pair().map_err(|e| EngineError::other(format!("socketpair: {e}")))?;
    std::thread::scope(|scope| {
        let download = scope.spawn(move || {
            let result = from.download(source, &mut write_end, &mut |_| {});
            drop(write_end);
            result
        });
        let uploaded = to.upload(path, &mut read_end, size, &mut |done| {
            progress(target, done, size)
        });
        drop(read_end);
        let downloaded = download
            .join()
            .unwrap_or_else(|_| Err(EngineError::other("the download stopped")));
        uploaded?;
        downloaded
    })
}
