//! Internal snapshots of a qcow2 image, stored as QEMU stores them
//! (`docs/interop/qcow2.txt`, "Snapshots"): a snapshot table of entries
//! (L1 table offset and size, id and name, date, VM clock, VM state size,
//! extra data with the 64-bit VM state size, the disk size and icount), a
//! copy of the active L1 table per snapshot, and refcounts raised on every
//! L2 table and data cluster the snapshot shares with the active disk.
//! The COPIED flag (bit 63) of active L1/L2 entries is kept set exactly
//! where the refcount is 1, so the next guest write to a shared cluster
//! (imago honours the flag) copies it first and the snapshot stays intact.
//!
//! Every operation works on a shut-off image, locked exclusively.
//!
//! # Crash safety: the order of writes
//!
//! A refcount is never lowered before the last reference it counts is
//! gone, and never raised after a new reference is made; each step is
//! made durable (fdatasync) before the next. The switch from the old state
//! to the new one is a single write of adjacent header fields inside the
//! first sector (`size`, `l1_size`, `l1_table_offset` for apply;
//! `nb_snapshots`, `snapshots_offset` for create and delete), so the image
//! shows either the old snapshot table or the new one, never a mix:
//!
//! - **create**: (1) raise the refcounts of the active tree, count the
//!   snapshot's L1 copy and the new snapshot table; (2) write the L1 copy and
//!   the new table, clear COPIED in the active L2 and L1 tables; (3) switch
//!   the header to the new table; (4) free the old table.
//! - **apply**: (1) raise the refcounts of the snapshot's tree, count a new
//!   active L1 table; (2) clear COPIED in the snapshot's L2 tables, write the
//!   new active L1 (a copy of the snapshot's, COPIED clear); (3) switch the
//!   header to the new L1 table and the snapshot's disk size; (4) lower the
//!   refcounts of the old active tree and free its L1 table.
//! - **delete**: (1) count and write the new table; (2) switch the header to
//!   it; (3) lower the refcounts of the snapshot's tree, free its L1 copy and
//!   the old table; (4) set COPIED where the active disk is now the only user.
//!
//! A crash at any point leaves no cluster with fewer counts than
//! references, so no data can be lost or overwritten, and `qemu-img check`
//! finds at most leaked clusters, with two exceptions inherent to the
//! format (QEMU has the same windows): between steps 1 and 2 of create and
//! between steps 3 and 4 of delete, COPIED flags on the active disk do not
//! yet match the refcounts, which `qemu-img check` reports as errors
//! (`-r all` repairs them). Both are harmless: a set flag on a cluster
//! that no committed snapshot shares, or a clear flag that only costs one
//! extra copy; and every later create or delete recomputes the flags.

use std::fs::{File, OpenOptions};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use super::editor::{EditError, Editor, FLAG_COPIED};
use super::header::{HeaderError, Qcow2Header};
use crate::storage::{lock_image, OpenError};

/// Byte offset of the virtual size in the header; `l1_size` and
/// `l1_table_offset` follow it, all in the first sector.
const SIZE_OFFSET: u64 = 24;
/// Byte offset of `nb_snapshots`; `snapshots_offset` follows it.
const NB_SNAPSHOTS_OFFSET: u64 = 60;
/// QEMU's limits (`QCOW_MAX_SNAPSHOTS`, `QCOW_MAX_SNAPSHOT_EXTRA_DATA`).
const MAX_SNAPSHOTS: u32 = 65536;
const MAX_EXTRA_DATA: u32 = 1024;
const MAX_TABLE_BYTES: u64 = 64 << 20;
/// The extra data QEMU writes: vm_state_size_large, disk_size, icount.
const EXTRA_DATA_LEN: usize = 24;
/// icount as QEMU writes it when the VM ran without instruction counting.
const NO_ICOUNT: u64 = u64::MAX;

/// One snapshot as `qemu-img snapshot -l` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The unique id ("1", "2", ...).
    pub id: String,
    pub name: String,
    /// When it was taken (seconds and nanoseconds since the epoch).
    pub date_sec: u32,
    pub date_nsec: u32,
    /// The guest's clock at the snapshot (0 for a shut-off VM).
    pub vm_clock_nsec: u64,
    /// Bytes of saved VM state (RAM and devices); 0 for a disk-only snapshot.
    pub vm_state_size: u64,
    /// The virtual disk size at the snapshot, where the entry records it.
    pub disk_size: Option<u64>,
    /// Instructions executed, when the VM counted them.
    pub icount: Option<u64>,
}

/// What a new snapshot records besides the disk.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewSnapshot {
    pub name: String,
    pub vm_clock_nsec: u64,
    /// Bytes of VM state that the caller has already written into the
    /// image's VM state area (guest offsets from the first L1 entry past
    /// the disk, as QEMU's `qcow2_vm_state_offset`); the snapshot's L1 copy
    /// takes that area with it. 0 for a shut-off VM.
    pub vm_state_size: u64,
}

/// Why a snapshot operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Open(#[from] OpenError),
    #[error("{path}: {source}")]
    Header {
        path: String,
        #[source]
        source: HeaderError,
    },
    #[error("{path}: {source}")]
    Edit {
        path: String,
        #[source]
        source: EditError,
    },
    /// A snapshot with this name (or id) is there already.
    #[error("snapshot '{0}' already exists")]
    Exists(String),
    /// No snapshot has this name or id.
    #[error("no snapshot named '{0}'")]
    NotFound(String),
    /// The image cannot take snapshots in its state.
    #[error("{path}: {message}")]
    Refused { path: String, message: String },
}

/// A snapshot table entry with what is kept as found.
#[derive(Debug, Clone)]
struct Entry {
    l1_table_offset: u64,
    l1_size: u32,
    info: SnapshotInfo,
    /// Extra data past the fields Vireo knows, kept as found.
    unknown_extra: Vec<u8>,
}

fn be16(b: &[u8], at: usize) -> u16 {
    u16::from_be_bytes([b[at], b[at + 1]])
}
fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be64(b: &[u8], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(bytes)
}

fn corrupt(message: impl Into<String>) -> EditError {
    EditError::Corrupt(message.into())
}

/// Parses `count` entries from `table` (the bytes from `snapshots_offset`
/// to at most the end of the file); returns them and the table's length.
fn parse_table(table: &[u8], count: u32) -> Result<(Vec<Entry>, u64), EditError> {
    if count > MAX_SNAPSHOTS {
        return Err(corrupt(format!(
            "{count} snapshots (at most {MAX_SNAPSHOTS})"
        )));
    }
    let mut entries = Vec::new();
    let mut at = 0usize;
    for index in 0..count {
        let truncated = || corrupt(format!("snapshot table is truncated in entry {index}"));
        let fixed = table.get(at..at + 40).ok_or_else(truncated)?;
        let id_len = usize::from(be16(fixed, 12));
        let name_len = usize::from(be16(fixed, 14));
        let extra_len = be32(fixed, 36);
        if extra_len > MAX_EXTRA_DATA {
            return Err(corrupt(format!(
                "snapshot {index} has {extra_len} bytes of extra data (at most {MAX_EXTRA_DATA})"
            )));
        }
        let extra_len = extra_len as usize;
        let end = at + 40 + extra_len + id_len + name_len;
        let whole = table.get(at..end).ok_or_else(truncated)?;
        let extra = &whole[40..40 + extra_len];
        let id = &whole[40 + extra_len..40 + extra_len + id_len];
        let name = &whole[40 + extra_len + id_len..];
        let text = |bytes: &[u8], what: &str| {
            String::from_utf8(bytes.to_vec())
                .map_err(|_| corrupt(format!("snapshot {index}'s {what} is not UTF-8")))
        };
        let vm_state_size = if extra.len() >= 8 {
            be64(extra, 0)
        } else {
            u64::from(be32(fixed, 32))
        };
        let info = SnapshotInfo {
            id: text(id, "id")?,
            name: text(name, "name")?,
            date_sec: be32(fixed, 16),
            date_nsec: be32(fixed, 20),
            vm_clock_nsec: be64(fixed, 24),
            vm_state_size,
            disk_size: (extra.len() >= 16).then(|| be64(extra, 8)),
            icount: (extra.len() >= 24)
                .then(|| be64(extra, 16))
                .filter(|&i| i != NO_ICOUNT),
        };
        entries.push(Entry {
            l1_table_offset: be64(fixed, 0),
            l1_size: be32(fixed, 8),
            info,
            unknown_extra: extra.get(EXTRA_DATA_LEN..).unwrap_or_default().to_vec(),
        });
        at = end.next_multiple_of(8);
        if at as u64 > MAX_TABLE_BYTES {
            return Err(corrupt("snapshot table is larger than 64 MiB"));
        }
    }
    Ok((entries, at as u64))
}

/// The snapshot table's bytes, as QEMU writes them.
fn serialize_table(entries: &[Entry]) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in entries {
        let info = &entry.info;
        let mut extra = Vec::with_capacity(EXTRA_DATA_LEN + entry.unknown_extra.len());
        extra.extend_from_slice(&info.vm_state_size.to_be_bytes());
        extra.extend_from_slice(&info.disk_size.unwrap_or(0).to_be_bytes());
        extra.extend_from_slice(&info.icount.unwrap_or(NO_ICOUNT).to_be_bytes());
        extra.extend_from_slice(&entry.unknown_extra);
        out.extend_from_slice(&entry.l1_table_offset.to_be_bytes());
        out.extend_from_slice(&entry.l1_size.to_be_bytes());
        out.extend_from_slice(&(info.id.len() as u16).to_be_bytes());
        out.extend_from_slice(&(info.name.len() as u16).to_be_bytes());
        out.extend_from_slice(&info.date_sec.to_be_bytes());
        out.extend_from_slice(&info.date_nsec.to_be_bytes());
        out.extend_from_slice(&info.vm_clock_nsec.to_be_bytes());
        // The 32-bit field QEMU also fills (truncated, as QEMU does).
        out.extend_from_slice(&(info.vm_state_size as u32).to_be_bytes());
        out.extend_from_slice(&(extra.len() as u32).to_be_bytes());
        out.extend_from_slice(&extra);
        out.extend_from_slice(info.id.as_bytes());
        out.extend_from_slice(info.name.as_bytes());
        out.resize(out.len().next_multiple_of(8), 0);
    }
    out
}

/// An image open for snapshot work: the file, locked, and its snapshots.
struct Image {
    file: File,
    path: String,
    header: Qcow2Header,
    entries: Vec<Entry>,
    table_len: u64,
}

impl Image {
    fn open(path: &Path, write: bool) -> Result<Self, SnapshotError> {
        let shown = path.display().to_string();
        let file = OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .map_err(|source| OpenError::Io {
                path: shown.clone(),
                source,
            })?;
        lock_image(&file, path, !write).map_err(OpenError::from)?;
        let header = Qcow2Header::read(&file).map_err(|source| SnapshotError::Header {
            path: shown.clone(),
            source,
        })?;
        let refuse = |message: &str| {
            Err(SnapshotError::Refused {
                path: shown.clone(),
                message: message.into(),
            })
        };
        if write && header.dirty() {
            return refuse(
                "image was not closed cleanly (lazy refcounts); repair it with 'qemu-img check -r all'",
            );
        }
        if write && header.corrupt() {
            return refuse("image is marked corrupt; repair it with 'qemu-img check -r all'");
        }
        let (entries, table_len) =
            read_entries(&file, &header).map_err(|source| SnapshotError::Edit {
                path: shown.clone(),
                source,
            })?;
        Ok(Self {
            file,
            path: shown,
            header,
            entries,
            table_len,
        })
    }

    fn edit_error(&self, source: EditError) -> SnapshotError {
        SnapshotError::Edit {
            path: self.path.clone(),
            source,
        }
    }

    /// The entry named `which` (or with that id, as QEMU also accepts).
    fn find(&self, which: &str) -> Result<usize, SnapshotError> {
        self.entries
            .iter()
            .position(|e| e.info.name == which)
            .or_else(|| self.entries.iter().position(|e| e.info.id == which))
            .ok_or_else(|| SnapshotError::NotFound(which.to_string()))
    }
}

fn read_entries(file: &File, header: &Qcow2Header) -> Result<(Vec<Entry>, u64), EditError> {
    if header.nb_snapshots == 0 {
        return Ok((Vec::new(), 0));
    }
    let file_len = file.metadata()?.len();
    let available = file_len
        .saturating_sub(header.snapshots_offset)
        .min(MAX_TABLE_BYTES + 8);
    let mut table = vec![0; available as usize];
    std::os::unix::fs::FileExt::read_exact_at(file, &mut table, header.snapshots_offset)?;
    parse_table(&table, header.nb_snapshots)
}

/// Lists the snapshots of the qcow2 image at `path` (locked shared meanwhile).
pub fn list(path: &Path) -> Result<Vec<SnapshotInfo>, SnapshotError> {
    let image = Image::open(path, false)?;
    Ok(image.entries.into_iter().map(|e| e.info).collect())
}

fn now() -> (u32, u32) {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    (since.as_secs() as u32, since.subsec_nanos())
}

/// Clusters needed for `bytes`.
fn clusters(bytes: u64, cluster_size: u64) -> u64 {
    bytes.div_ceil(cluster_size).max(1)
}

/// Takes an internal snapshot of the shut-off image at `path`.
pub fn create(path: &Path, new: &NewSnapshot) -> Result<SnapshotInfo, SnapshotError> {
    let image = Image::open(path, true)?;
    if new.name.is_empty() || new.name.len() > usize::from(u16::MAX) {
        return Err(SnapshotError::Refused {
            path: image.path.clone(),
            message: "a snapshot name must be 1 to 65535 bytes long".into(),
        });
    }
    if image.entries.iter().any(|e| e.info.name == new.name) {
        return Err(SnapshotError::Exists(new.name.clone()));
    }
    if image.entries.len() as u32 >= MAX_SNAPSHOTS {
        return Err(SnapshotError::Refused {
            path: image.path.clone(),
            message: format!("the image has {MAX_SNAPSHOTS} snapshots already"),
        });
    }
    // The next free numeric id, as QEMU picks it.
    let id = image
        .entries
        .iter()
        .filter_map(|e| e.info.id.parse::<u64>().ok())
        .max()
        .unwrap_or(0)
        + 1;
    let (date_sec, date_nsec) = now();
    let info = SnapshotInfo {
        id: id.to_string(),
        name: new.name.clone(),
        date_sec,
        date_nsec,
        vm_clock_nsec: new.vm_clock_nsec,
        vm_state_size: new.vm_state_size,
        disk_size: Some(image.header.size),
        icount: None,
    };
    do_create(&image, info.clone()).map_err(|e| image.edit_error(e))?;
    Ok(info)
}

fn do_create(image: &Image, info: SnapshotInfo) -> Result<(), EditError> {
    let header = &image.header;
    let mut ed = Editor::new(&image.file, header.clone())?;
    let cs = ed.cluster_size();
    let l1 = ed.read_table(
        header.l1_table_offset,
        u64::from(header.l1_size),
        "L1 table",
    )?;

    // (1) Counts first: the tree the snapshot will share, its L1 copy, the
    // new table.
    ed.adjust_tree(&l1, 1)?;
    let l1_bytes = l1.len() as u64 * 8;
    let sn_l1_offset = if l1.is_empty() {
        0
    } else {
        ed.allocate(clusters(l1_bytes, cs))?
    };
    let mut entries = image.entries.clone();
    entries.push(Entry {
        l1_table_offset: sn_l1_offset,
        l1_size: header.l1_size,
        info,
        unknown_extra: Vec::new(),
    });
    let table = serialize_table(&entries);
    let table_offset = ed.allocate(clusters(table.len() as u64, cs))?;
    ed.write_refcounts()?;

    // (2) The new structures, not referenced yet, and the active tree's
    // flags: COPIED goes wherever the refcount is now 2 or more.
    let copy: Vec<u64> = l1.iter().map(|e| e & !FLAG_COPIED).collect();
    if !copy.is_empty() {
        ed.write_table(sn_l1_offset, &copy)?;
    }
    ed.write_bytes(table_offset, &table)?;
    ed.fix_copied(header.l1_table_offset, &l1)?;
    ed.sync()?;

    // (3) The switch.
    switch_table(&mut ed, entries.len() as u32, table_offset)?;

    // (4) The old table is garbage now.
    if image.table_len > 0 {
        ed.adjust_range(header.snapshots_offset, image.table_len, -1)?;
        ed.write_refcounts()?;
    }
    Ok(())
}

/// Points the header at a new snapshot table in one write.
fn switch_table(ed: &mut Editor, count: u32, offset: u64) -> Result<(), EditError> {
    let mut fields = [0u8; 12];
    fields[..4].copy_from_slice(&count.to_be_bytes());
    fields[4..].copy_from_slice(&offset.to_be_bytes());
    ed.write_bytes(NB_SNAPSHOTS_OFFSET, &fields)?;
    ed.sync()
}

/// Reverts the shut-off image at `path` to the snapshot `which` (its name
/// or id): the disk reads exactly as it did when the snapshot was taken,
/// and has the size it had then. The snapshot stays.
pub fn apply(path: &Path, which: &str) -> Result<SnapshotInfo, SnapshotError> {
    let image = Image::open(path, true)?;
    let index = image.find(which)?;
    do_apply(&image, &image.entries[index]).map_err(|e| image.edit_error(e))?;
    Ok(image.entries[index].info.clone())
}

fn do_apply(image: &Image, snapshot: &Entry) -> Result<(), EditError> {
    let header = &image.header;
    let mut ed = Editor::new(&image.file, header.clone())?;
    let cs = ed.cluster_size();
    let active_l1 = ed.read_table(
        header.l1_table_offset,
        u64::from(header.l1_size),
        "L1 table",
    )?;
    let sn_l1 = ed.read_table(
        snapshot.l1_table_offset,
        u64::from(snapshot.l1_size),
        "snapshot L1 table",
    )?;
    let disk_size = snapshot.info.disk_size.unwrap_or(header.size);
    let needed = disk_size.div_ceil(cs * (cs / 8));
    if needed.saturating_mul(8) > 32 << 20 {
        return Err(corrupt(format!(
            "the snapshot's disk size {disk_size} needs an L1 table above 32 MiB"
        )));
    }
    let mut new_l1: Vec<u64> = sn_l1.iter().map(|e| e & !FLAG_COPIED).collect();
    if (new_l1.len() as u64) < needed {
        new_l1.resize(needed as usize, 0);
    }

    // (1) Counts: the snapshot's tree gains the active disk as a user.
    ed.adjust_tree(&sn_l1, 1)?;
    let new_l1_offset = if new_l1.is_empty() {
        0
    } else {
        ed.allocate(clusters(new_l1.len() as u64 * 8, cs))?
    };
    ed.write_refcounts()?;

    // (2) Everything the new active L1 reaches is shared (the snapshot
    // keeps it too), so no entry may claim COPIED.
    for &l1_entry in &sn_l1 {
        let l2_offset = l1_entry & super::editor::OFFSET_MASK;
        if l2_offset == 0 {
            continue;
        }
        let l2 = ed.read_l2(l2_offset)?;
        if l2.iter().any(|e| e & FLAG_COPIED != 0) {
            let cleared: Vec<u64> = l2.iter().map(|e| e & !FLAG_COPIED).collect();
            ed.write_table(l2_offset, &cleared)?;
        }
    }
    if !new_l1.is_empty() {
        ed.write_table(new_l1_offset, &new_l1)?;
    }
    ed.sync()?;

    // (3) The switch: size, l1_size and l1_table_offset are adjacent.
    let mut fields = [0u8; 24];
    fields[..8].copy_from_slice(&disk_size.to_be_bytes());
    // crypt_method (bytes 32-35) stays 0: encrypted images are refused.
    fields[12..16].copy_from_slice(&(new_l1.len() as u32).to_be_bytes());
    fields[16..].copy_from_slice(&new_l1_offset.to_be_bytes());
    ed.write_bytes(SIZE_OFFSET, &fields)?;
    ed.sync()?;

    // (4) The old active tree loses its user; what nobody else holds is free.
    ed.adjust_tree(&active_l1, -1)?;
    if !active_l1.is_empty() {
        ed.adjust_range(header.l1_table_offset, active_l1.len() as u64 * 8, -1)?;
    }
    ed.write_refcounts()?;
    Ok(())
}

/// Deletes the snapshot `which` (name or id) of the shut-off image at
/// `path`; the clusters only it held are freed.
pub fn delete(path: &Path, which: &str) -> Result<SnapshotInfo, SnapshotError> {
    let image = Image::open(path, true)?;
    let index = image.find(which)?;
    do_delete(&image, index).map_err(|e| image.edit_error(e))?;
    Ok(image.entries[index].info.clone())
}

fn do_delete(image: &Image, index: usize) -> Result<(), EditError> {
    let header = &image.header;
    let mut ed = Editor::new(&image.file, header.clone())?;
    let cs = ed.cluster_size();
    let snapshot = &image.entries[index];
    let sn_l1 = ed.read_table(
        snapshot.l1_table_offset,
        u64::from(snapshot.l1_size),
        "snapshot L1 table",
    )?;
    let active_l1 = ed.read_table(
        header.l1_table_offset,
        u64::from(header.l1_size),
        "L1 table",
    )?;
    let mut entries = image.entries.clone();
    entries.remove(index);

    // (1) The new table.
    let table = serialize_table(&entries);
    let table_offset = if entries.is_empty() {
        0
    } else {
        let offset = ed.allocate(clusters(table.len() as u64, cs))?;
        ed.write_refcounts()?;
        ed.write_bytes(offset, &table)?;
        ed.sync()?;
        offset
    };

    // (2) The switch.
    switch_table(&mut ed, entries.len() as u32, table_offset)?;

    // (3) What only the snapshot held is free.
    ed.adjust_tree(&sn_l1, -1)?;
    if !sn_l1.is_empty() {
        ed.adjust_range(snapshot.l1_table_offset, sn_l1.len() as u64 * 8, -1)?;
    }
    ed.adjust_range(header.snapshots_offset, image.table_len, -1)?;
    ed.write_refcounts()?;

    // (4) The active disk may be the only user of clusters now.
    ed.fix_copied(header.l1_table_offset, &active_l1)?;
    ed.sync()
}

#[cfg(test)]
mod tests;
