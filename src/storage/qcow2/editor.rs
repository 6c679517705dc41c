//! Offline edits of a qcow2 image's metadata: refcounts, cluster
//! allocation, L1/L2 tables, header fields.
//!
//! Internal snapshots ([`super::snapshot`]) change the image while no VM has
//! it open (it is locked exclusively meanwhile), so they do not go through
//! imago: imago caches the L1 table and refcounts of an open image, and
//! knows no snapshot table. The editor reads what it needs, keeps every
//! change in memory until the caller writes it in the order crash safety
//! asks for ([`Editor::write_refcounts`], [`Editor::write_table`],
//! [`Editor::write_header_fields`]), and checks every offset it follows
//! against the file, so a damaged image gives an error, never a panic or a
//! write outside the file's metadata.
//!
//! Not supported: growing the refcount table (an error says so; only images
//! larger than the table covers, terabytes with 64 KiB clusters, need it).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use super::check::refcount_at;
use super::header::Qcow2Header;

/// L1/L2 entry bits (qcow2.txt, "Cluster mapping").
pub(super) const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
pub(super) const FLAG_COPIED: u64 = 1 << 63;
pub(super) const FLAG_COMPRESSED: u64 = 1 << 62;

/// What went wrong while editing; the caller words it for people.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The metadata contradicts itself or points outside the file.
    #[error("corrupt qcow2 image: {0}")]
    Corrupt(String),
    /// The image needs something the editor does not do.
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Io(#[from] io::Error),
}

fn corrupt(message: impl Into<String>) -> EditError {
    EditError::Corrupt(message.into())
}

/// Reads big-endian u64 entries.
pub(super) fn entries(buf: &[u8]) -> Vec<u64> {
    buf.chunks_exact(8)
        .map(|b| u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
        .collect()
}

#[cfg(test)]
thread_local! {
    /// Tests simulate a crash: writes after this many fail.
    pub(super) static WRITES_LEFT: std::cell::Cell<Option<u32>> = const { std::cell::Cell::new(None) };
}

/// Every metadata write goes through here, so tests can stop the process's
/// work after any of them, as a crash would.
fn write_at(file: &File, bytes: &[u8], offset: u64) -> io::Result<()> {
    #[cfg(test)]
    if let Some(left) = WRITES_LEFT.get() {
        if left == 0 {
            return Err(io::Error::other("simulated crash"));
        }
        WRITES_LEFT.set(Some(left - 1));
    }
    file.write_all_at(bytes, offset)
}

/// Writes a refcount into a refcount block (the inverse of `refcount_at`).
fn set_refcount_at(block: &mut [u8], index: usize, bits: u32, value: u64) {
    match bits {
        1 | 2 | 4 => {
            let per_byte = 8 / bits as usize;
            let shift = (index % per_byte) as u32 * bits;
            let mask = (((1u16 << bits) - 1) as u8) << shift;
            let byte = &mut block[index / per_byte];
            *byte = (*byte & !mask) | (((value as u8) << shift) & mask);
        }
        _ => {
            let width = bits as usize / 8;
            let bytes = value.to_be_bytes();
            block[index * width..(index + 1) * width].copy_from_slice(&bytes[8 - width..]);
        }
    }
}

/// An image's metadata being edited.
pub(super) struct Editor<'f> {
    file: &'f File,
    pub header: Qcow2Header,
    file_len: u64,
    reftable: Vec<u64>,
    /// Refcount blocks read so far, by refcount table index.
    blocks: BTreeMap<usize, Vec<u8>>,
    dirty_blocks: BTreeSet<usize>,
    /// Refcount table entries that point at blocks made by this editor.
    new_blocks: BTreeSet<usize>,
    /// Where the next free-cluster search starts.
    search_from: u64,
}

impl<'f> Editor<'f> {
    pub fn new(file: &'f File, header: Qcow2Header) -> Result<Self, EditError> {
        let file_len = file.metadata()?.len();
        let cs = header.cluster_size();
        let mut table = vec![0; (u64::from(header.refcount_table_clusters) * cs) as usize];
        file.read_exact_at(&mut table, header.refcount_table_offset)?;
        Ok(Self {
            file,
            header,
            file_len,
            reftable: entries(&table),
            blocks: BTreeMap::new(),
            dirty_blocks: BTreeSet::new(),
            new_blocks: BTreeSet::new(),
            search_from: 0,
        })
    }

    pub fn cluster_size(&self) -> u64 {
        self.header.cluster_size()
    }

    /// Clusters one refcount block covers.
    fn per_block(&self) -> u64 {
        self.cluster_size() * 8 / u64::from(self.header.refcount_bits())
    }

    /// The refcount block for table index `index`, read on first use;
    /// `None` where the table has no block (every cluster there is free).
    fn block(&mut self, index: usize) -> Result<Option<&mut Vec<u8>>, EditError> {
        if !self.blocks.contains_key(&index) {
            let Some(&entry) = self.reftable.get(index) else {
                return Ok(None);
            };
            let offset = entry & OFFSET_MASK;
            if offset == 0 {
                return Ok(None);
            }
            let cs = self.cluster_size();
            if offset % cs != 0 || offset + cs > self.file_len {
                return Err(corrupt(format!(
                    "refcount block {index} at {offset:#x} is misaligned or past the end of the file"
                )));
            }
            let mut block = vec![0; cs as usize];
            self.file.read_exact_at(&mut block, offset)?;
            self.blocks.insert(index, block);
        }
        Ok(self.blocks.get_mut(&index))
    }

    /// The refcount of host cluster `cluster`.
    pub fn refcount(&mut self, cluster: u64) -> Result<u64, EditError> {
        let per_block = self.per_block();
        let bits = self.header.refcount_bits();
        let index = (cluster / per_block) as usize;
        Ok(self.block(index)?.map_or(0, |block| {
            refcount_at(block, (cluster % per_block) as usize, bits)
        }))
    }

    /// Adds `delta` to the refcount of `cluster` (in memory).
    pub fn adjust(&mut self, cluster: u64, delta: i64) -> Result<(), EditError> {
        let per_block = self.per_block();
        let bits = self.header.refcount_bits();
        let max = if bits == 64 {
            u64::MAX
        } else {
            (1u64 << bits) - 1
        };
        let index = (cluster / per_block) as usize;
        let current = self.refcount(cluster)?;
        let new = current.checked_add_signed(delta).filter(|&n| n <= max);
        let Some(new) = new else {
            return Err(if delta < 0 {
                corrupt(format!(
                    "cluster {cluster} has refcount {current}, too low for what references it"
                ))
            } else {
                EditError::Unsupported(format!(
                    "cluster {cluster} would be shared more than {bits}-bit refcounts can count"
                ))
            });
        };
        // Only `allocate` makes blocks: anything else that finds none is
        // referenced without being counted.
        let block = self.block(index)?.ok_or_else(|| {
            corrupt(format!(
                "cluster {cluster} is in use but no refcount block counts it"
            ))
        })?;
        set_refcount_at(block, (cluster % per_block) as usize, bits, new);
        self.dirty_blocks.insert(index);
        if new == 0 && cluster < self.search_from {
            self.search_from = cluster;
        }
        Ok(())
    }

    /// Adds `delta` to every cluster touched by `[offset, offset + len)`,
    /// each of which must lie inside the file and be in use.
    pub fn adjust_range(&mut self, offset: u64, len: u64, delta: i64) -> Result<(), EditError> {
        let cs = self.cluster_size();
        let end = offset
            .checked_add(len)
            .filter(|&end| end.div_ceil(cs) <= self.file_len.div_ceil(cs))
            .ok_or_else(|| {
                corrupt(format!(
                    "reference at {offset:#x} lies past the end of the file"
                ))
            })?;
        for cluster in offset / cs..end.div_ceil(cs) {
            // What is referenced must be counted already.
            if self.refcount(cluster)? == 0 {
                return Err(corrupt(format!(
                    "cluster {cluster} is in use but its refcount is 0"
                )));
            }
            self.adjust(cluster, delta)?;
        }
        Ok(())
    }

    /// Makes a refcount block for table index `index`, placed in the first
    /// cluster it covers (free, since no block counted it) and counting itself.
    fn new_block(&mut self, index: usize) -> Result<(), EditError> {
        if index >= self.reftable.len() {
            return Err(EditError::Unsupported(
                "the image's refcount table is full; Vireo cannot grow it (qemu-img can: 'qemu-img snapshot')"
                    .into(),
            ));
        }
        let cs = self.cluster_size();
        let first = index as u64 * self.per_block();
        let mut block = vec![0; cs as usize];
        set_refcount_at(&mut block, 0, self.header.refcount_bits(), 1);
        self.reftable[index] = first * cs;
        self.blocks.insert(index, block);
        self.dirty_blocks.insert(index);
        self.new_blocks.insert(index);
        Ok(())
    }

    /// Finds `count` contiguous free clusters, marks them used (refcount 1)
    /// and returns the offset of the first. Nothing is written yet.
    pub fn allocate(&mut self, count: u64) -> Result<u64, EditError> {
        let per_block = self.per_block();
        let mut start = self.search_from;
        let mut run = 0;
        let mut cluster = start;
        while run < count {
            // A range no block counts yet gets its block first (in its own
            // first cluster), so the search steps over it.
            let index = (cluster / per_block) as usize;
            if self.block(index)?.is_none() {
                self.new_block(index)?;
            }
            if self.refcount(cluster)? == 0 {
                run += 1;
            } else {
                run = 0;
                start = cluster + 1;
            }
            cluster += 1;
        }
        for c in start..start + count {
            self.adjust(c, 1)?;
        }
        self.search_from = start + count;
        Ok(start * self.cluster_size())
    }

    /// The file grows as clusters past its end are written.
    fn note_write(&mut self, offset: u64, len: u64) {
        self.file_len = self.file_len.max(offset + len);
    }

    /// Writes the changed refcount blocks, then the refcount table entries
    /// of new blocks (a block is complete before anything points at it),
    /// then makes it all durable.
    pub fn write_refcounts(&mut self) -> Result<(), EditError> {
        for &index in &self.dirty_blocks {
            let offset = self.reftable[index] & OFFSET_MASK;
            let block = &self.blocks[&index];
            write_at(self.file, block, offset)?;
            self.file_len = self.file_len.max(offset + block.len() as u64);
        }
        if !self.new_blocks.is_empty() {
            self.file.sync_data()?;
        }
        for &index in &self.new_blocks {
            let at = self.header.refcount_table_offset + index as u64 * 8;
            write_at(self.file, &self.reftable[index].to_be_bytes(), at)?;
        }
        self.dirty_blocks.clear();
        self.new_blocks.clear();
        self.file.sync_data()?;
        Ok(())
    }

    /// Reads a table of `count` u64 entries at `offset`, checked to lie
    /// inside the file.
    pub fn read_table(&self, offset: u64, count: u64, what: &str) -> Result<Vec<u64>, EditError> {
        let len = count
            .checked_mul(8)
            .filter(|&len| len <= 32 << 20)
            .ok_or_else(|| corrupt(format!("{what} is too large")))?;
        let inside = offset
            .checked_add(len)
            .is_some_and(|end| end <= self.file_len);
        if offset % self.cluster_size() != 0 || !inside {
            return Err(corrupt(format!(
                "{what} at {offset:#x} is misaligned or past the end of the file"
            )));
        }
        let mut buf = vec![0; len as usize];
        self.file.read_exact_at(&mut buf, offset)?;
        Ok(entries(&buf))
    }

    /// Writes `table` (u64 entries) at `offset`.
    pub fn write_table(&mut self, offset: u64, table: &[u64]) -> Result<(), EditError> {
        let bytes: Vec<u8> = table.iter().flat_map(|e| e.to_be_bytes()).collect();
        self.write_bytes(offset, &bytes)
    }

    pub fn write_bytes(&mut self, offset: u64, bytes: &[u8]) -> Result<(), EditError> {
        write_at(self.file, bytes, offset)?;
        self.note_write(offset, bytes.len() as u64);
        Ok(())
    }

    /// Reads the L2 table at `offset` after checking it is a whole cluster
    /// inside the file.
    pub fn read_l2(&self, offset: u64) -> Result<Vec<u64>, EditError> {
        let cs = self.cluster_size();
        self.read_table(offset, cs / 8, "L2 table")
    }

    /// Adds `delta` to the refcount of every L2 table and data cluster an
    /// L1 table reaches (`l1` entries), the way `qemu-img check` counts them:
    /// once per L1 table that reaches them.
    pub fn adjust_tree(&mut self, l1: &[u64], delta: i64) -> Result<(), EditError> {
        let cs = self.cluster_size();
        for &l1_entry in l1 {
            let l2_offset = l1_entry & OFFSET_MASK;
            if l2_offset == 0 {
                continue;
            }
            self.adjust_range(l2_offset, cs, delta)?;
            for entry in self.read_l2(l2_offset)? {
                if entry & FLAG_COMPRESSED != 0 {
                    let (offset, len) = self.compressed_extent(entry);
                    self.adjust_range(offset, len, delta)?;
                    continue;
                }
                let host = entry & OFFSET_MASK;
                if host == 0 {
                    continue;
                }
                if host % cs != 0 {
                    return Err(corrupt(format!(
                        "L2 entry {entry:#x} points at an unaligned cluster"
                    )));
                }
                self.adjust_range(host, cs, delta)?;
            }
        }
        Ok(())
    }

    /// Host bytes a compressed cluster's entry covers (qcow2.txt).
    fn compressed_extent(&self, entry: u64) -> (u64, u64) {
        let cluster_bits = self.header.cluster_bits;
        let csize_shift = 62 - (cluster_bits - 8);
        let csize_mask = (1u64 << (cluster_bits - 8)) - 1;
        let offset = entry & ((1u64 << csize_shift) - 1);
        let sectors = ((entry >> csize_shift) & csize_mask) + 1;
        (offset, sectors * 512 - (offset & 511))
    }

    /// Sets or clears COPIED on the active L1 table and its L2 tables so
    /// that it is set exactly where the refcount is 1 (refcounts as they
    /// are in memory). Writes the L2 tables that change, then the L1 table;
    /// returns the updated L1.
    pub fn fix_copied(&mut self, l1_offset: u64, l1: &[u64]) -> Result<Vec<u64>, EditError> {
        let cs = self.cluster_size();
        let mut new_l1 = l1.to_vec();
        for entry in new_l1.iter_mut() {
            let l2_offset = *entry & OFFSET_MASK;
            if l2_offset == 0 {
                continue;
            }
            let mut l2 = self.read_l2(l2_offset)?;
            let mut changed = false;
            for l2_entry in l2.iter_mut() {
                let host = *l2_entry & OFFSET_MASK;
                if *l2_entry & FLAG_COMPRESSED != 0 || host == 0 {
                    continue;
                }
                let want = self.refcount(host / cs)? == 1;
                if want != (*l2_entry & FLAG_COPIED != 0) {
                    *l2_entry ^= FLAG_COPIED;
                    changed = true;
                }
            }
            if changed {
                self.write_table(l2_offset, &l2)?;
            }
            let want = self.refcount(l2_offset / cs)? == 1;
            if want {
                *entry |= FLAG_COPIED;
            } else {
                *entry &= !FLAG_COPIED;
            }
        }
        if new_l1 != l1 {
            self.file.sync_data()?;
            self.write_table(l1_offset, &new_l1)?;
        }
        Ok(new_l1)
    }

    /// Makes every write so far durable.
    pub fn sync(&self) -> Result<(), EditError> {
        self.file.sync_data()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refcounts_round_trip_at_every_width() {
        for bits in [1u32, 2, 4, 8, 16, 32, 64] {
            let mut block = vec![0u8; 64];
            let max = if bits == 64 {
                u64::MAX
            } else {
                (1 << bits) - 1
            };
            let slots = 64 * 8 / bits as usize;
            for i in 0..slots {
                set_refcount_at(&mut block, i, bits, (i as u64 * 7) & max);
            }
            for i in 0..slots {
                assert_eq!(refcount_at(&block, i, bits), (i as u64 * 7) & max, "{bits}");
            }
        }
    }
}
