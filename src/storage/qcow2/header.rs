//! The qcow2 header, parsed and checked on its own.
//!
//! Follows QEMU's `docs/interop/qcow2.txt` (versions 2 and 3). Vireo reads
//! the header itself, before handing the file to imago, for three reasons:
//! `img info` and `img check` need fields imago keeps private; every table
//! the header points at is checked against the file's length first, so a
//! truncated or corrupted image fails with a sentence naming the bad field
//! instead of an I/O error deep inside a table load; and nothing is written
//! to an image whose header does not make sense.
//!
//! Not supported (refused with a clear error): encryption, external data
//! files, extended L2 entries, zstd compression.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// "QFI\xfb": the first four bytes of every qcow2 image.
pub const MAGIC: [u8; 4] = *b"QFI\xfb";

/// Length of the version 2 header; version 3 adds fields up to [`V3_HEADER_LEN`].
const V2_HEADER_LEN: usize = 72;
/// The smallest version 3 header (up to and including `header_length`).
const V3_HEADER_LEN: usize = 104;
/// QEMU refuses L1 tables above 32 MiB (`QCOW_MAX_L1_SIZE`); so does Vireo.
const MAX_L1_BYTES: u64 = 32 << 20;
/// QEMU refuses refcount tables above 8 MiB (`QCOW_MAX_REFTABLE_SIZE`).
const MAX_REFTABLE_BYTES: u64 = 8 << 20;
/// Longest backing file name QEMU writes or reads.
const MAX_BACKING_NAME: u32 = 1023;

/// Incompatible feature bits (header offset 72).
pub const INCOMPAT_DIRTY: u64 = 1 << 0;
pub const INCOMPAT_CORRUPT: u64 = 1 << 1;
pub const INCOMPAT_DATA_FILE: u64 = 1 << 2;
pub const INCOMPAT_COMPRESSION: u64 = 1 << 3;
pub const INCOMPAT_EXTL2: u64 = 1 << 4;
/// Compatible feature bits (header offset 80).
pub const COMPAT_LAZY_REFCOUNTS: u64 = 1 << 0;
/// Byte offset of the compatible-features field.
pub const COMPATIBLE_FEATURES_OFFSET: u64 = 80;

/// Header extension types (after the header, inside cluster 0).
const EXT_END: u32 = 0;
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
const EXT_DATA_FILE: u32 = 0x4441_5441;

/// What is wrong with a qcow2 header.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// Reading the file failed.
    #[error("cannot read the qcow2 header: {0}")]
    Io(#[from] io::Error),
    /// The file is shorter than the header or a table the header points at.
    #[error("image is truncated: {0}")]
    Truncated(String),
    /// A header field has a value no valid image has.
    #[error("corrupt qcow2 header: {0}")]
    Corrupt(String),
    /// The image uses a qcow2 feature Vireo does not implement.
    #[error("unsupported qcow2 feature: {0}")]
    Unsupported(String),
    /// Counting the file's clusters would take more memory than there is
    /// (a sparse file far larger than its data).
    #[error("cannot check the image: {0}")]
    TooLarge(String),
}

/// The fields of a qcow2 header that Vireo uses, all validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Qcow2Header {
    pub version: u32,
    pub backing_file: Option<String>,
    pub cluster_bits: u32,
    /// Virtual disk size in bytes.
    pub size: u64,
    pub l1_size: u32,
    pub l1_table_offset: u64,
    pub refcount_table_offset: u64,
    pub refcount_table_clusters: u32,
    pub nb_snapshots: u32,
    pub snapshots_offset: u64,
    pub incompatible_features: u64,
    pub compatible_features: u64,
    pub autoclear_features: u64,
    /// Refcounts are `1 << refcount_order` bits wide (always 4 in version 2).
    pub refcount_order: u32,
    pub header_length: u32,
    pub backing_format: Option<String>,
}

fn be32(buf: &[u8], at: usize) -> u32 {
    let mut bytes = [0; 4];
    bytes.copy_from_slice(&buf[at..at + 4]);
    u32::from_be_bytes(bytes)
}

fn be64(buf: &[u8], at: usize) -> u64 {
    let mut bytes = [0; 8];
    bytes.copy_from_slice(&buf[at..at + 8]);
    u64::from_be_bytes(bytes)
}

fn corrupt(message: impl Into<String>) -> HeaderError {
    HeaderError::Corrupt(message.into())
}

impl Qcow2Header {
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    pub fn refcount_bits(&self) -> u32 {
        1 << self.refcount_order
    }

    /// L2 entries per L2 table (one cluster of 8-byte entries).
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / 8
    }

    pub fn lazy_refcounts(&self) -> bool {
        self.compatible_features & COMPAT_LAZY_REFCOUNTS != 0
    }

    pub fn dirty(&self) -> bool {
        self.incompatible_features & INCOMPAT_DIRTY != 0
    }

    pub fn corrupt(&self) -> bool {
        self.incompatible_features & INCOMPAT_CORRUPT != 0
    }

    /// "1.1" for version 3, "0.10" for version 2, as `qemu-img info` says.
    pub fn compat(&self) -> &'static str {
        if self.version >= 3 {
            "1.1"
        } else {
            "0.10"
        }
    }

    /// Reads and validates the header of the image open as `file`.
    pub fn read(file: &File) -> Result<Self, HeaderError> {
        let file_len = file.metadata()?.len();
        // Everything the header describes about itself lies in cluster 0,
        // which is at most 2 MiB; read what the file has of it.
        let want = file_len.min(1 << 21) as usize;
        let mut buf = vec![0; want];
        file.read_exact_at(&mut buf, 0)?;
        Self::parse(&buf, file_len)
    }

    /// Parses the header from `buf` (the start of the file, up to its first
    /// cluster) and checks every table it points at against `file_len`.
    pub fn parse(buf: &[u8], file_len: u64) -> Result<Self, HeaderError> {
        if buf.len() < 8 || buf[0..4] != MAGIC {
            return Err(corrupt("not a qcow2 image (bad magic)"));
        }
        let version = be32(buf, 4);
        if version != 2 && version != 3 {
            return Err(HeaderError::Unsupported(format!("qcow2 version {version}")));
        }
        if buf.len() < V2_HEADER_LEN {
            return Err(HeaderError::Truncated(format!(
                "{} bytes, shorter than the {V2_HEADER_LEN}-byte header",
                buf.len()
            )));
        }
        let backing_file_offset = be64(buf, 8);
        let backing_file_size = be32(buf, 16);
        let cluster_bits = be32(buf, 20);
        let size = be64(buf, 24);
        let crypt_method = be32(buf, 32);
        let l1_size = be32(buf, 36);
        let l1_table_offset = be64(buf, 40);
        let refcount_table_offset = be64(buf, 48);
        let refcount_table_clusters = be32(buf, 56);
        let nb_snapshots = be32(buf, 60);
        let snapshots_offset = be64(buf, 64);

        // QEMU accepts 512 B to 2 MiB clusters.
        if !(9..=21).contains(&cluster_bits) {
            return Err(corrupt(format!(
                "cluster_bits is {cluster_bits}; it must be between 9 and 21"
            )));
        }
        let cluster_size = 1u64 << cluster_bits;

        let (
            incompatible_features,
            compatible_features,
            autoclear_features,
            refcount_order,
            header_length,
        ) = if version == 3 {
            if buf.len() < V3_HEADER_LEN {
                return Err(HeaderError::Truncated(format!(
                    "{} bytes, shorter than the {V3_HEADER_LEN}-byte version 3 header",
                    buf.len()
                )));
            }
            (
                be64(buf, 72),
                be64(buf, 80),
                be64(buf, 88),
                be32(buf, 96),
                be32(buf, 100),
            )
        } else {
            (0, 0, 0, 4, V2_HEADER_LEN as u32)
        };

        if version == 3
            && (header_length < V3_HEADER_LEN as u32 || u64::from(header_length) > cluster_size)
        {
            return Err(corrupt(format!(
                "header_length is {header_length}; it must be between {V3_HEADER_LEN} and the cluster size"
            )));
        }
        if refcount_order > 6 {
            return Err(corrupt(format!(
                "refcount_order is {refcount_order}; it must be at most 6"
            )));
        }
        if crypt_method != 0 {
            return Err(HeaderError::Unsupported("encrypted images".into()));
        }
        let known = INCOMPAT_DIRTY
            | INCOMPAT_CORRUPT
            | INCOMPAT_DATA_FILE
            | INCOMPAT_COMPRESSION
            | INCOMPAT_EXTL2;
        if incompatible_features & !known != 0 {
            return Err(HeaderError::Unsupported(format!(
                "unknown incompatible feature bits {:#x}",
                incompatible_features & !known
            )));
        }
        if incompatible_features & INCOMPAT_DATA_FILE != 0 {
            return Err(HeaderError::Unsupported("external data files".into()));
        }
        if incompatible_features & INCOMPAT_EXTL2 != 0 {
            return Err(HeaderError::Unsupported("extended L2 entries".into()));
        }
        if incompatible_features & INCOMPAT_COMPRESSION != 0 {
            // The compression type byte follows the 104-byte header.
            let kind = if header_length > 104 && buf.len() > 104 {
                buf[104]
            } else {
                0
            };
            if kind != 0 {
                return Err(HeaderError::Unsupported(format!(
                    "compression type {kind} (zstd)"
                )));
            }
        }

        // The virtual size must be addressable through the L1 table.
        let l2_entries = cluster_size / 8;
        let bytes_per_l1 = cluster_size * l2_entries;
        let needed_l1 = size.div_ceil(bytes_per_l1);
        if needed_l1 > u64::from(l1_size) {
            return Err(corrupt(format!(
                "L1 table has {l1_size} entries; a {size}-byte disk needs {needed_l1}"
            )));
        }
        let l1_bytes = u64::from(l1_size) * 8;
        if l1_bytes > MAX_L1_BYTES {
            return Err(corrupt(format!(
                "L1 table of {l1_bytes} bytes is too large"
            )));
        }
        check_table(
            "L1 table",
            l1_table_offset,
            l1_bytes,
            cluster_size,
            file_len,
        )?;

        let reftable_bytes = u64::from(refcount_table_clusters) * cluster_size;
        if reftable_bytes == 0 {
            return Err(corrupt("refcount table is empty"));
        }
        if reftable_bytes > MAX_REFTABLE_BYTES {
            return Err(corrupt(format!(
                "refcount table of {reftable_bytes} bytes is too large"
            )));
        }
        check_table(
            "refcount table",
            refcount_table_offset,
            reftable_bytes,
            cluster_size,
            file_len,
        )?;
        if nb_snapshots > 0 {
            check_table(
                "snapshot table",
                snapshots_offset,
                1,
                cluster_size,
                file_len,
            )?;
        }

        let backing_file = if backing_file_offset != 0 {
            if backing_file_size > MAX_BACKING_NAME {
                return Err(corrupt(format!(
                    "backing file name is {backing_file_size} bytes long (at most {MAX_BACKING_NAME})"
                )));
            }
            let end = backing_file_offset
                .checked_add(u64::from(backing_file_size))
                .filter(|&end| end <= cluster_size)
                .ok_or_else(|| corrupt("backing file name lies outside the first cluster"))?;
            if end > buf.len() as u64 {
                return Err(HeaderError::Truncated(
                    "backing file name is cut off".into(),
                ));
            }
            let name = &buf[backing_file_offset as usize..end as usize];
            Some(
                String::from_utf8(name.to_vec())
                    .map_err(|_| corrupt("backing file name is not UTF-8"))?,
            )
        } else {
            None
        };

        let backing_format = if version == 3 {
            parse_extensions(buf, header_length as usize, cluster_size as usize)?
        } else {
            // Version 2 images may carry extensions too (QEMU writes the
            // backing format one); a malformed area is ignored as QEMU does.
            parse_extensions(buf, V2_HEADER_LEN, cluster_size as usize).unwrap_or(None)
        };

        Ok(Self {
            version,
            backing_file,
            cluster_bits,
            size,
            l1_size,
            l1_table_offset,
            refcount_table_offset,
            refcount_table_clusters,
            nb_snapshots,
            snapshots_offset,
            incompatible_features,
            compatible_features,
            autoclear_features,
            refcount_order,
            header_length,
            backing_format,
        })
    }
}

/// Checks that a table is cluster-aligned and lies inside the file.
fn check_table(
    what: &str,
    offset: u64,
    len: u64,
    cluster_size: u64,
    file_len: u64,
) -> Result<(), HeaderError> {
    if len == 0 {
        return Ok(());
    }
    if offset == 0 || offset % cluster_size != 0 {
        return Err(corrupt(format!(
            "{what} offset {offset:#x} is not a non-zero multiple of the cluster size"
        )));
    }
    match offset.checked_add(len) {
        Some(end) if end <= file_len => Ok(()),
        Some(_) => Err(HeaderError::Truncated(format!(
            "{what} at {offset:#x} ({len} bytes) lies past the end of the {file_len}-byte file"
        ))),
        None => Err(corrupt(format!("{what} offset {offset:#x} overflows"))),
    }
}

/// Walks the header extensions from `start`; returns the backing format.
fn parse_extensions(
    buf: &[u8],
    start: usize,
    cluster_size: usize,
) -> Result<Option<String>, HeaderError> {
    let limit = buf.len().min(cluster_size);
    let mut at = start;
    let mut backing_format = None;
    loop {
        if at + 8 > limit {
            // No end marker before the cluster (or file) ends: QEMU treats a
            // header with nothing after it as having no extensions.
            if at >= buf.len() {
                return Ok(backing_format);
            }
            return Err(corrupt("header extensions run past the first cluster"));
        }
        let kind = be32(buf, at);
        let len = be32(buf, at + 4) as usize;
        at += 8;
        if kind == EXT_END {
            return Ok(backing_format);
        }
        let end = at
            .checked_add(len)
            .filter(|&end| end <= limit)
            .ok_or_else(|| corrupt("a header extension runs past the first cluster"))?;
        match kind {
            EXT_BACKING_FORMAT => {
                backing_format = Some(
                    String::from_utf8(buf[at..end].to_vec())
                        .map_err(|_| corrupt("backing format name is not UTF-8"))?,
                );
            }
            EXT_DATA_FILE => {
                return Err(HeaderError::Unsupported("external data files".into()));
            }
            _ => {}
        }
        at = end.next_multiple_of(8);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    /// A named way to damage an image's bytes.
    type Damage = (&'static str, Box<dyn Fn(&mut Vec<u8>)>);

    use super::*;

    /// A version 3 header for a 1 MiB disk with 64 KiB clusters: header in
    /// cluster 0, refcount table in cluster 1, refcount block in cluster 2,
    /// L1 table in cluster 3. Returns the header cluster; the file is 4 clusters.
    pub(crate) fn v3_header() -> Vec<u8> {
        let mut h = vec![0u8; 65536];
        h[0..4].copy_from_slice(&MAGIC); // magic
        h[4..8].copy_from_slice(&3u32.to_be_bytes()); // version
        h[20..24].copy_from_slice(&16u32.to_be_bytes()); // cluster_bits: 64 KiB
        h[24..32].copy_from_slice(&(1u64 << 20).to_be_bytes()); // size: 1 MiB
        h[36..40].copy_from_slice(&1u32.to_be_bytes()); // l1_size
        h[40..48].copy_from_slice(&0x30000u64.to_be_bytes()); // l1_table_offset
        h[48..56].copy_from_slice(&0x10000u64.to_be_bytes()); // refcount_table_offset
        h[56..60].copy_from_slice(&1u32.to_be_bytes()); // refcount_table_clusters
        h[96..100].copy_from_slice(&4u32.to_be_bytes()); // refcount_order: 16 bits
        h[100..104].copy_from_slice(&104u32.to_be_bytes()); // header_length
        h
    }

    const FILE_LEN: u64 = 4 << 16;

    #[test]
    fn parses_a_minimal_v3_header() {
        let h = Qcow2Header::parse(&v3_header(), FILE_LEN).unwrap();
        assert_eq!(h.version, 3);
        assert_eq!(h.size, 1 << 20);
        assert_eq!(h.cluster_size(), 65536);
        assert_eq!(h.refcount_bits(), 16);
        assert_eq!(h.backing_file, None);
        assert_eq!(h.compat(), "1.1");
    }

    #[test]
    fn reads_backing_name_and_format_extension() {
        let mut h = v3_header();
        h[8..16].copy_from_slice(&512u64.to_be_bytes()); // backing_file_offset
        h[16..20].copy_from_slice(&8u32.to_be_bytes()); // backing_file_size
        h[512..520].copy_from_slice(b"base.img");
        h[104..108].copy_from_slice(&EXT_BACKING_FORMAT.to_be_bytes()); // extension type
        h[108..112].copy_from_slice(&3u32.to_be_bytes()); // extension length
        h[112..115].copy_from_slice(b"raw");
        let h = Qcow2Header::parse(&h, FILE_LEN).unwrap();
        assert_eq!(h.backing_file.as_deref(), Some("base.img"));
        assert_eq!(h.backing_format.as_deref(), Some("raw"));
    }

    #[test]
    fn hostile_headers_are_errors_not_panics() {
        let cases: Vec<Damage> = vec![
            ("bad magic", Box::new(|h| h[0] = b'X')),
            ("version 4", Box::new(|h| h[7] = 4)),
            ("cluster_bits 40", Box::new(|h| h[23] = 40)),
            ("cluster_bits 8", Box::new(|h| h[23] = 8)),
            (
                "huge size",
                Box::new(|h| h[24..32].copy_from_slice(&u64::MAX.to_be_bytes())),
            ),
            ("unaligned L1", Box::new(|h| h[47] = 1)),
            (
                "L1 past EOF",
                Box::new(|h| h[40..48].copy_from_slice(&(1u64 << 40).to_be_bytes())),
            ),
            (
                "L1 overflow",
                Box::new(|h| h[40..48].copy_from_slice(&(u64::MAX - 0xffff).to_be_bytes())),
            ),
            (
                "huge L1",
                Box::new(|h| h[36..40].copy_from_slice(&u32::MAX.to_be_bytes())),
            ),
            (
                "no reftable",
                Box::new(|h| h[56..60].copy_from_slice(&0u32.to_be_bytes())),
            ),
            (
                "reftable past EOF",
                Box::new(|h| h[56..60].copy_from_slice(&100u32.to_be_bytes())),
            ),
            ("refcount_order 7", Box::new(|h| h[99] = 7)),
            ("header_length 8", Box::new(|h| h[103] = 8)),
            ("encrypted", Box::new(|h| h[35] = 1)),
            ("unknown incompat", Box::new(|h| h[72] = 0x80)),
            (
                "backing name outside",
                Box::new(|h| {
                    h[8..16].copy_from_slice(&65530u64.to_be_bytes());
                    h[19] = 100;
                }),
            ),
            (
                "backing name too long",
                Box::new(|h| {
                    h[8..16].copy_from_slice(&512u64.to_be_bytes());
                    h[16..20].copy_from_slice(&5000u32.to_be_bytes());
                }),
            ),
            (
                "extension past cluster",
                Box::new(|h| {
                    h[104..108].copy_from_slice(&EXT_BACKING_FORMAT.to_be_bytes());
                    h[108..112].copy_from_slice(&u32::MAX.to_be_bytes());
                }),
            ),
        ];
        for (what, mutate) in cases {
            let mut h = v3_header();
            mutate(&mut h);
            assert!(
                Qcow2Header::parse(&h, FILE_LEN).is_err(),
                "{what} was accepted"
            );
        }
        // Every truncation of a valid header is an error, never a panic.
        let h = v3_header();
        for len in 0..200 {
            assert!(Qcow2Header::parse(&h[..len], len as u64).is_err());
        }
    }
}
