//! Consistency check of a qcow2 image, as `qemu-img check` does it.
//!
//! Every cluster the metadata references (header, refcount table and blocks,
//! the active and snapshot L1 tables, L2 tables, data clusters) is counted,
//! and the counts are compared with the refcounts stored in the image
//! (`docs/interop/qcow2.txt`, "Host cluster management"). A stored refcount
//! above the count is a leak (wasted space); one below it is a corruption
//! (a later allocation could overwrite live data). Like QEMU, the check also
//! verifies the COPIED flag (bit 63) of active L1/L2 entries, which must be
//! set exactly when the refcount is 1.
//!
//! Read-only: nothing is repaired (no `-r`). Bitmaps are not checked.

use std::fs::File;
use std::os::unix::fs::FileExt;

use super::header::{HeaderError, Qcow2Header};

/// L1/L2 entry bits (qcow2.txt, "Cluster mapping").
const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
const FLAG_COPIED: u64 = 1 << 63;
const FLAG_COMPRESSED: u64 = 1 << 62;
const FLAG_ZERO: u64 = 1;

/// What the check found, in `qemu-img check`'s terms.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CheckReport {
    /// Clusters whose stored refcount is below their use (or wrong flags).
    pub corruptions: u64,
    /// Of the corruptions, those that are only a wrong COPIED flag: the
    /// refcounts themselves are right.
    pub copied_flag_errors: u64,
    /// Clusters whose stored refcount is above their use.
    pub leaks: u64,
    /// Metadata the check could not read.
    pub check_errors: u64,
    /// One line per problem, as QEMU prints them on stderr.
    pub messages: Vec<String>,
    /// Guest clusters of the virtual disk.
    pub total_clusters: u64,
    /// Guest clusters with data (or preallocated zeroes) in this image.
    pub allocated_clusters: u64,
    pub fragmented_clusters: u64,
    pub compressed_clusters: u64,
    /// End of the last cluster in use.
    pub image_end_offset: u64,
}

impl CheckReport {
    /// `qemu-img check`'s exit status: 0 clean, 1 check failed, 2 corrupt, 3 leaks only.
    pub fn exit_code(&self) -> u8 {
        if self.check_errors > 0 {
            1
        } else if self.corruptions > 0 {
            2
        } else if self.leaks > 0 {
            3
        } else {
            0
        }
    }
}

/// An active L1 or L2 entry whose COPIED flag is checked against the refcount.
struct CopiedCheck {
    /// Host offset of the cluster the entry points at.
    offset: u64,
    entry: u64,
    /// For L1 entries (pointing at L2 tables), their index.
    l1_index: Option<usize>,
}

/// Reference counts being gathered, one per cluster of the file.
struct Counter<'a> {
    header: &'a Qcow2Header,
    file: &'a File,
    file_len: u64,
    refs: Vec<u32>,
    report: CheckReport,
}

impl Counter<'_> {
    fn cluster_size(&self) -> u64 {
        self.header.cluster_size()
    }

    /// Counts one reference to every cluster touched by `[offset, offset + len)`.
    fn reference(&mut self, offset: u64, len: u64) {
        if len == 0 {
            return;
        }
        let cs = self.cluster_size();
        let Some(end) = offset.checked_add(len) else {
            self.corrupt(format!("ERROR: reference at offset {offset:#x} overflows"));
            return;
        };
        if end.div_ceil(cs) > self.file_len.div_ceil(cs) {
            self.corrupt(format!(
                "ERROR: counting reference for region exceeding the end of the file by one cluster or more: offset {offset:#x} size {len:#x}"
            ));
            return;
        }
        for cluster in offset / cs..end.div_ceil(cs) {
            if let Some(count) = self.refs.get_mut(cluster as usize) {
                *count = count.saturating_add(1);
            }
        }
    }

    fn corrupt(&mut self, message: String) {
        self.report.corruptions += 1;
        self.report.messages.push(message);
    }

    fn read_table(&mut self, offset: u64, entries: u64) -> Option<Vec<u64>> {
        let mut buf = vec![0u8; (entries * 8) as usize];
        match self.file.read_exact_at(&mut buf, offset) {
            Ok(()) => Some(
                buf.chunks_exact(8)
                    .map(|b| u64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]))
                    .collect(),
            ),
            Err(error) => {
                self.report.check_errors += 1;
                self.report
                    .messages
                    .push(format!("ERROR reading table at {offset:#x}: {error}"));
                None
            }
        }
    }

    /// Counts an L1 table, its L2 tables and their data clusters.
    /// `active` gathers fragmentation statistics (the snapshot tables do not).
    fn walk_l1(&mut self, l1_offset: u64, l1_size: u64, active: bool) -> Vec<CopiedCheck> {
        let cs = self.cluster_size();
        let mut copied_checks = Vec::new();
        self.reference(l1_offset, l1_size * 8);
        let Some(l1) = self.read_table(l1_offset, l1_size) else {
            return copied_checks;
        };
        for (l1_index, entry) in l1.into_iter().enumerate() {
            let l2_offset = entry & OFFSET_MASK;
            if l2_offset == 0 {
                continue;
            }
            if l2_offset % cs != 0 {
                self.corrupt(format!(
                    "ERROR l2_offset={l2_offset:x}: Table is not cluster aligned; L1 entry corrupted"
                ));
                continue;
            }
            if active {
                copied_checks.push(CopiedCheck {
                    offset: l2_offset,
                    entry,
                    l1_index: Some(l1_index),
                });
            }
            let before = self.report.corruptions;
            self.reference(l2_offset, cs);
            if self.report.corruptions != before {
                continue; // past the end of the file: nothing to read
            }
            let Some(l2) = self.read_table(l2_offset, cs / 8) else {
                continue;
            };
            // As QEMU counts it: contiguity restarts with each L2 table.
            let mut next_contiguous = 0;
            for l2_entry in l2 {
                if l2_entry & FLAG_COMPRESSED != 0 {
                    let csize_shift = 62 - (self.header.cluster_bits - 8);
                    let csize_mask = (1u64 << (self.header.cluster_bits - 8)) - 1;
                    let coffset = l2_entry & ((1u64 << csize_shift) - 1);
                    let sectors = ((l2_entry >> csize_shift) & csize_mask) + 1;
                    let csize = sectors * 512 - (coffset & 511);
                    self.reference(coffset, csize);
                    if active {
                        self.report.allocated_clusters += 1;
                        self.report.compressed_clusters += 1;
                        self.report.fragmented_clusters += 1;
                    }
                    continue;
                }
                let host = l2_entry & OFFSET_MASK;
                if host == 0 {
                    continue; // unallocated, or a zero cluster without space
                }
                if host % cs != 0 {
                    self.corrupt(format!(
                        "ERROR offset={host:x}: Cluster is not properly aligned; L2 entry corrupted."
                    ));
                    continue;
                }
                if self.header.version < 3 && l2_entry & FLAG_ZERO != 0 {
                    self.corrupt(format!(
                        "ERROR offset={host:x}: zero flag in a version 2 image"
                    ));
                }
                self.reference(host, cs);
                if active {
                    copied_checks.push(CopiedCheck {
                        offset: host,
                        entry: l2_entry,
                        l1_index: None,
                    });
                    self.report.allocated_clusters += 1;
                    if next_contiguous != 0 && host != next_contiguous {
                        self.report.fragmented_clusters += 1;
                    }
                    next_contiguous = host + cs;
                }
            }
        }
        copied_checks
    }

    /// Counts the snapshot table and every snapshot's L1 table.
    fn walk_snapshots(&mut self) {
        let mut at = self.header.snapshots_offset;
        let start = at;
        for _ in 0..self.header.nb_snapshots {
            let mut fixed = [0u8; 40];
            if self.file.read_exact_at(&mut fixed, at).is_err() {
                self.report.check_errors += 1;
                self.report
                    .messages
                    .push("ERROR: snapshot table is truncated".into());
                return;
            }
            let l1_offset = u64::from_be_bytes(fixed[0..8].try_into().unwrap_or([0; 8]));
            let l1_size = u32::from_be_bytes(fixed[8..12].try_into().unwrap_or([0; 4]));
            let id_len = u16::from_be_bytes([fixed[12], fixed[13]]);
            let name_len = u16::from_be_bytes([fixed[14], fixed[15]]);
            let extra = u32::from_be_bytes(fixed[36..40].try_into().unwrap_or([0; 4]));
            at += (40 + u64::from(extra) + u64::from(id_len) + u64::from(name_len))
                .next_multiple_of(8);
            let cs = self.cluster_size();
            if l1_offset % cs != 0 || u64::from(l1_size) * 8 > (32 << 20) {
                self.corrupt(format!(
                    "ERROR snapshot L1 table at {l1_offset:#x} is invalid"
                ));
                continue;
            }
            let inside = l1_offset
                .checked_add(u64::from(l1_size) * 8)
                .is_some_and(|end| end <= self.file_len);
            if !inside {
                self.corrupt(format!(
                    "ERROR snapshot L1 table at {l1_offset:#x} lies outside the image"
                ));
                continue;
            }
            self.walk_l1(l1_offset, u64::from(l1_size), false);
        }
        self.reference(start, at - start);
    }
}

/// Reads one refcount from a refcount block (`bits` wide, big-endian; narrower
/// than a byte: least significant bits first, as QEMU packs them).
pub(super) fn refcount_at(block: &[u8], index: usize, bits: u32) -> u64 {
    match bits {
        1 | 2 | 4 => {
            let per_byte = 8 / bits as usize;
            let byte = block[index / per_byte];
            let shift = (index % per_byte) as u32 * bits;
            u64::from((byte >> shift) & ((1u16 << bits) - 1) as u8)
        }
        _ => {
            let width = bits as usize / 8;
            block[index * width..(index + 1) * width]
                .iter()
                .fold(0u64, |acc, &b| (acc << 8) | u64::from(b))
        }
    }
}

/// One counter per cluster of the file, or an error where the file is
/// too large to count in memory: a sparse file whose tables point far past
/// its data (writes through a crafted L2 table make one) must not abort
/// the process, as an infallible allocation would.
fn zeroed<T: Clone + Default>(clusters: u64) -> Result<Vec<T>, HeaderError> {
    let too_large = || {
        HeaderError::TooLarge(format!(
            "the file has {clusters} clusters, too many to count in memory"
        ))
    };
    // 2^27 clusters: an 8 TiB file of 64 KiB clusters, 1.5 GiB of counters.
    if clusters > 1 << 27 {
        return Err(too_large());
    }
    let n = usize::try_from(clusters).map_err(|_| too_large())?;
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| too_large())?;
    v.resize(n, T::default());
    Ok(v)
}

/// Checks the qcow2 image open as `file`.
pub fn check(file: &File) -> Result<CheckReport, HeaderError> {
    let header = Qcow2Header::read(file)?;
    let file_len = file.metadata()?.len();
    let cs = header.cluster_size();
    let file_clusters = file_len.div_ceil(cs);
    let mut counter = Counter {
        header: &header,
        file,
        file_len,
        refs: zeroed(file_clusters)?,
        report: CheckReport::default(),
    };
    counter.report.total_clusters = header.size.div_ceil(cs);

    counter.reference(0, cs); // the header
    let copied_checks = counter.walk_l1(header.l1_table_offset, u64::from(header.l1_size), true);
    if header.nb_snapshots > 0 {
        counter.walk_snapshots();
    }
    let reftable_offset = header.refcount_table_offset;
    let reftable_entries = u64::from(header.refcount_table_clusters) * cs / 8;
    counter.reference(reftable_offset, reftable_entries * 8);
    let reftable = counter
        .read_table(reftable_offset, reftable_entries)
        .unwrap_or_default();

    // Stored refcounts of the clusters inside the file. Like QEMU, refcounts
    // of clusters past the end of the file are not compared.
    let bits = header.refcount_bits();
    let per_block = cs * 8 / u64::from(bits);
    let mut stored: Vec<u64> = zeroed(file_clusters)?;
    let mut blocks = Vec::new();
    for (index, &entry) in reftable.iter().enumerate() {
        let block_offset = entry & !(cs - 1) & OFFSET_MASK;
        if block_offset == 0 {
            continue;
        }
        if entry & (cs - 1) != 0 {
            counter.corrupt(format!(
                "ERROR refcount block {index} is not cluster aligned; refcount table entry corrupted"
            ));
            continue;
        }
        if block_offset >= file_len {
            counter.corrupt(format!("ERROR refcount block {index} is outside image"));
            continue;
        }
        blocks.push(block_offset);
        let mut block = vec![0u8; cs as usize];
        if let Err(error) = file.read_exact_at(&mut block, block_offset) {
            counter.report.check_errors += 1;
            counter
                .report
                .messages
                .push(format!("ERROR reading refcount block {index}: {error}"));
            continue;
        }
        for i in 0..per_block {
            let cluster = index as u64 * per_block + i;
            let refcount = refcount_at(&block, i as usize, bits);
            if let Some(slot) = stored.get_mut(cluster as usize) {
                *slot = refcount;
            }
        }
    }
    for block in blocks {
        counter.reference(block, cs);
    }

    let mut highest = None;
    let refs = std::mem::take(&mut counter.refs);
    for (cluster, (&refcount, &used)) in stored.iter().zip(refs.iter()).enumerate() {
        let used = u64::from(used);
        if refcount > 0 || used > 0 {
            highest = Some(cluster as u64);
        }
        if refcount != used {
            let kind = if refcount < used { "ERROR" } else { "Leaked" };
            counter.report.messages.push(format!(
                "{kind} cluster {cluster} refcount={refcount} reference={used}"
            ));
            if refcount < used {
                counter.report.corruptions += 1;
            } else {
                counter.report.leaks += 1;
            }
        }
    }

    // COPIED must be set exactly on clusters nobody else shares.
    for item in copied_checks {
        let Some(&refcount) = stored.get((item.offset / cs) as usize) else {
            continue;
        };
        if (refcount == 1) != (item.entry & FLAG_COPIED != 0) {
            counter.report.copied_flag_errors += 1;
            let entry = item.entry;
            counter.corrupt(match item.l1_index {
                Some(index) => format!(
                    "ERROR OFLAG_COPIED L2 cluster: l1_index={index} l1_entry={entry:x} refcount={refcount}"
                ),
                None => format!(
                    "ERROR OFLAG_COPIED data cluster: l2_entry={entry:x} refcount={refcount}"
                ),
            });
        }
    }

    let mut report = counter.report;
    report.image_end_offset = highest.map_or(0, |c| (c + 1) * cs);
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::super::header::tests::v3_header;
    use super::*;

    /// The image of `header::tests::v3_header`, with refcounts 1 for its
    /// four clusters (header, refcount table, refcount block, L1 table).
    fn clean_image() -> tempfile::NamedTempFile {
        let mut data = v3_header();
        data.resize(4 << 16, 0);
        // Refcount table entry 0 -> refcount block at cluster 2.
        data[0x10000..0x10008].copy_from_slice(&0x20000u64.to_be_bytes());
        for cluster in 0..4 {
            data[0x20000 + cluster * 2 + 1] = 1; // 16-bit refcount 1
        }
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().write_all_at(&data, 0).unwrap();
        file
    }

    #[test]
    fn a_clean_image_has_no_errors() {
        let image = clean_image();
        let report = check(image.as_file()).unwrap();
        assert_eq!(report.messages, Vec::<String>::new());
        assert_eq!(report.exit_code(), 0);
        assert_eq!(report.total_clusters, 16);
        assert_eq!(report.image_end_offset, 4 << 16);
    }

    /// A sparse file of 15 TiB (a write through a crafted L2 entry makes
    /// one) is refused with an error, not an aborting allocation.
    #[test]
    fn a_huge_sparse_file_is_refused_not_counted() {
        let image = clean_image();
        image.as_file().set_len(15 << 40).unwrap();
        let error = check(image.as_file()).unwrap_err();
        assert!(matches!(error, HeaderError::TooLarge(_)), "{error}");
        assert!(error.to_string().contains("too many to count"), "{error}");
    }

    #[test]
    fn finds_leaks_and_corruptions() {
        let image = clean_image();
        // Cluster 3 (the L1 table) refcount 2: a leak.
        image.as_file().write_all_at(&[0, 2], 0x20006).unwrap();
        let report = check(image.as_file()).unwrap();
        assert_eq!((report.leaks, report.corruptions), (1, 0));
        assert_eq!(report.exit_code(), 3);

        // An L2 table at cluster 4 whose refcount is 0: a corruption.
        let image = clean_image();
        image.as_file().set_len(5 << 16).unwrap();
        let l1_entry = 0x40000u64 | FLAG_COPIED;
        image
            .as_file()
            .write_all_at(&l1_entry.to_be_bytes(), 0x30000)
            .unwrap();
        let report = check(image.as_file()).unwrap();
        assert!(report.corruptions >= 1);
        assert_eq!(report.exit_code(), 2);
        assert!(report.messages[0].starts_with("ERROR cluster 4 refcount=0 reference=1"));
    }

    #[test]
    fn tables_pointing_outside_the_file_are_corruptions() {
        let image = clean_image();
        let l1_entry = (1u64 << 40) | FLAG_COPIED;
        image
            .as_file()
            .write_all_at(&l1_entry.to_be_bytes(), 0x30000)
            .unwrap();
        let report = check(image.as_file()).unwrap();
        assert_eq!(report.corruptions, 1);
        let image = clean_image();
        image
            .as_file()
            .write_all_at(&[0, 0, 0, 0, 0, 0, 0x10, 0x01], 0x10000)
            .unwrap();
        let report = check(image.as_file()).unwrap();
        assert!(report.corruptions >= 1);
    }

    #[test]
    fn narrow_refcounts_are_packed_lsb_first() {
        let block = [0b1110_0100u8, 0xff];
        assert_eq!(refcount_at(&block, 0, 2), 0);
        assert_eq!(refcount_at(&block, 1, 2), 1);
        assert_eq!(refcount_at(&block, 2, 2), 2);
        assert_eq!(refcount_at(&block, 3, 2), 3);
        assert_eq!(refcount_at(&block, 1, 1), 0);
        assert_eq!(refcount_at(&block, 2, 1), 1);
        assert_eq!(refcount_at(&[0x12, 0x34], 0, 16), 0x1234);
    }
}
