//! Giving the space of freed clusters back to the host file system, as
//! QEMU's qcow2 driver does with `pass-discard-request=on` (its default):
//! when a guest's discard (or a write-zeroes that may unmap) drops a host
//! cluster's refcount to 0, a hole is punched where that cluster lies in
//! the image file (`FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE`), so `du`
//! of the image shrinks after a guest's `fstrim`. imago (0.2) only lowers
//! the refcounts; the bytes stay allocated in the file.
//!
//! Which clusters: before the discard, the host clusters mapping the
//! range ([`mapped_clusters`], from imago's own mapping); after it, once
//! imago has written the L2 tables and then the refcount blocks back to
//! the file, those of them whose refcount in the file is now 0
//! ([`punch_unreferenced`]). A cluster an internal snapshot still shares
//! keeps a refcount of at least 1 and is never punched; nor is a cluster
//! the header points at (header, refcount table, L1 table, snapshot table),
//! whatever a damaged refcount block says. The punch comes after the L2
//! entries that referenced the cluster are in the file, so a crash in
//! between leaves nothing pointing at a hole. Punching is best effort, as
//! in QEMU: where it fails, the space stays allocated, the data is safe.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use imago::{FormatAccess, ShallowMapping};

use super::check::refcount_at;
use super::editor::OFFSET_MASK;
use super::Storage;
use crate::storage::raw::fallocate;

/// A run of host clusters: the first one's index and how many.
pub(super) type ClusterRun = (u64, u64);

/// The host clusters of the image file that map the guest range
/// `[offset, offset + len)`, in runs of consecutive clusters. Clusters read
/// from a backing file, zero clusters and compressed clusters are left out.
pub(super) fn mapped_clusters(
    access: &FormatAccess<Storage>,
    offset: u64,
    len: u64,
    cluster_size: u64,
) -> io::Result<Vec<ClusterRun>> {
    let end = offset.saturating_add(len).min(access.size());
    let mut runs: Vec<ClusterRun> = Vec::new();
    let mut at = offset;
    while at < end {
        let (mapping, n) = access.get_shallow_mapping(at, end - at)?;
        if n == 0 {
            break;
        }
        if let ShallowMapping::Raw { offset: host, .. } = mapping {
            let first = host / cluster_size;
            let count = (host + n - 1) / cluster_size - first + 1;
            match runs.last_mut() {
                Some((start, len)) if *start + *len == first => *len += count,
                _ => runs.push((first, count)),
            }
        }
        at += n;
    }
    Ok(runs)
}

/// Header fields that can change while the image is open (imago moves the
/// refcount table and the L1 table when they grow), read from the file.
struct Tables {
    l1_size: u64,
    l1_table_offset: u64,
    refcount_table_offset: u64,
    refcount_table_clusters: u64,
    nb_snapshots: u64,
    snapshots_offset: u64,
}

impl Tables {
    fn read(file: &File) -> io::Result<Self> {
        let mut h = [0u8; 72];
        file.read_exact_at(&mut h, 0)?;
        let be32 = |at: usize| u64::from(u32::from_be_bytes(h[at..at + 4].try_into().unwrap()));
        let be64 = |at: usize| u64::from_be_bytes(h[at..at + 8].try_into().unwrap());
        Ok(Self {
            l1_size: be32(36),
            l1_table_offset: be64(40),
            refcount_table_offset: be64(48),
            refcount_table_clusters: be32(56),
            nb_snapshots: be32(60),
            snapshots_offset: be64(64),
        })
    }

    /// Whether host cluster `cluster` holds the header or a table the
    /// header points at.
    fn holds(&self, cluster: u64, cluster_size: u64) -> bool {
        let start = cluster * cluster_size;
        let overlaps = |offset: u64, len: u64| {
            len > 0 && offset < start + cluster_size && start < offset.saturating_add(len)
        };
        cluster == 0
            || overlaps(
                self.refcount_table_offset,
                self.refcount_table_clusters * cluster_size,
            )
            || overlaps(self.l1_table_offset, self.l1_size * 8)
            // The snapshot table's length is not in the header; one cluster
            // at least is its.
            || (self.nb_snapshots > 0 && overlaps(self.snapshots_offset, 1))
    }
}

/// Refcounts read from the file, one refcount block held at a time.
struct Refcounts<'f> {
    file: &'f File,
    file_len: u64,
    tables: Tables,
    cluster_size: u64,
    refcount_bits: u32,
    /// The refcount block last read: its table index and its bytes
    /// (`None` where the table has no block: every count there is 0).
    block: Option<(u64, Option<Vec<u8>>)>,
}

impl Refcounts<'_> {
    fn per_block(&self) -> u64 {
        self.cluster_size * 8 / u64::from(self.refcount_bits)
    }

    fn refcount(&mut self, cluster: u64) -> io::Result<u64> {
        let per_block = self.per_block();
        let index = cluster / per_block;
        if self.block.as_ref().map(|(i, _)| *i) != Some(index) {
            let block = self.read_block(index)?;
            self.block = Some((index, block));
        }
        let Some((_, block)) = &self.block else {
            unreachable!("read just above")
        };
        Ok(block.as_ref().map_or(0, |block| {
            refcount_at(block, (cluster % per_block) as usize, self.refcount_bits)
        }))
    }

    fn read_block(&self, index: u64) -> io::Result<Option<Vec<u8>>> {
        let damaged = |what: String| io::Error::new(io::ErrorKind::InvalidData, what);
        let entries = self.tables.refcount_table_clusters * self.cluster_size / 8;
        if index >= entries {
            // Past the table: a cluster no refcount block covers. That is
            // not "free" in an image imago wrote; leave it alone.
            return Err(damaged(format!(
                "refcount table has no entry {index} (it has {entries})"
            )));
        }
        let mut entry = [0u8; 8];
        self.file
            .read_exact_at(&mut entry, self.tables.refcount_table_offset + index * 8)?;
        let offset = u64::from_be_bytes(entry) & OFFSET_MASK;
        if offset == 0 {
            return Ok(None);
        }
        if offset % self.cluster_size != 0 || offset + self.cluster_size > self.file_len {
            return Err(damaged(format!(
                "refcount block {index} at {offset:#x} is misaligned or past the end of the file"
            )));
        }
        let mut block = vec![0; self.cluster_size as usize];
        self.file.read_exact_at(&mut block, offset)?;
        Ok(Some(block))
    }
}

/// Punches out of `file` (the image, its metadata written back) every
/// cluster of `runs` whose refcount is 0; returns the bytes punched.
pub(super) fn punch_unreferenced(
    file: &File,
    runs: &[ClusterRun],
    cluster_size: u64,
    refcount_bits: u32,
) -> io::Result<u64> {
    if runs.is_empty() {
        return Ok(0);
    }
    let mut refcounts = Refcounts {
        file,
        file_len: file.metadata()?.len(),
        tables: Tables::read(file)?,
        cluster_size,
        refcount_bits,
        block: None,
    };
    let mut punched = 0;
    // The run of free clusters being gathered: first cluster, count.
    let mut hole: Option<(u64, u64)> = None;
    let mut punch = |hole: &mut Option<(u64, u64)>| -> io::Result<()> {
        if let Some((first, count)) = hole.take() {
            if fallocate(
                file,
                libc::FALLOC_FL_PUNCH_HOLE,
                first * cluster_size,
                count * cluster_size,
            )? {
                punched += count * cluster_size;
            }
        }
        Ok(())
    };
    for &(first, count) in runs {
        for cluster in first..first + count {
            let free =
                refcounts.refcount(cluster)? == 0 && !refcounts.tables.holds(cluster, cluster_size);
            match &mut hole {
                Some((start, n)) if free && *start + *n == cluster => *n += 1,
                _ => {
                    punch(&mut hole)?;
                    if free {
                        hole = Some((cluster, 1));
                    }
                }
            }
        }
    }
    punch(&mut hole)?;
    Ok(punched)
}
