//! Volumes of a directory pool: plain files, as libvirt's `dir` backend
//! keeps them (`src/storage/storage_util.c`).
//!
//! Everything here works on files by path; the pool code above it decides
//! names, checks that a pool is running, and cleans up after a failure.
//! What a volume reports follows libvirt: capacity is the virtual size (the
//! qcow2 header's, else the file length), allocation is `st_blocks * 512`,
//! physical is `st_size`.
//!
//! Not done here: encryption, compressed or external-data qcow2 images,
//! `vol-wipe`, reflink clones, and format conversion on clone (libvirt runs
//! `qemu-img convert`; a byte copy of a qcow2 file is an equally valid image).

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::xml::{Permissions, Timestamps, VolumeDef, VolumeFormat, VolumeTarget};

/// Mode of a new volume file, libvirt's `VIR_STORAGE_DEFAULT_VOL_PERM_MODE`.
pub const VOLUME_MODE: u32 = 0o600;

/// Bytes moved per read/write when copying or zero-filling.
const CHUNK: usize = 1 << 20;

/// Progress of a long operation: `(done, total)` in bytes.
pub type Progress<'a> = &'a mut dyn FnMut(u64, u64);

/// How much of a new image is allocated up front, as qemu-img's
/// `preallocation=` option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Preallocation {
    Off,
    /// qcow2 tables for the whole disk; data clusters reserved but sparse.
    Metadata,
    /// Metadata plus `fallocate` of the data.
    Falloc,
    /// Metadata plus zeros written to the data.
    Full,
}

impl Preallocation {
    pub fn name(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Metadata => "metadata",
            Self::Falloc => "falloc",
            Self::Full => "full",
        }
    }
}

/// What the first bytes of an image say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Probe {
    pub format: VolumeFormat,
    /// Virtual size.
    pub capacity: u64,
    pub backing: Option<(PathBuf, Option<VolumeFormat>)>,
    pub compat: Option<String>,
    pub cluster_size: Option<u64>,
    pub lazy_refcounts: bool,
}

/// Creates `path` for a new volume, refusing to replace anything; the file
/// is the volume's name reservation, removed by the caller if the rest fails.
pub fn create_exclusive(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(VOLUME_MODE)
        .open(path)
}

/// Makes `file` a raw volume of `capacity` bytes with its first `allocation`
/// bytes allocated on disk, as libvirt's `createRawFile` does.
pub fn create_raw(
    file: &File,
    capacity: u64,
    allocation: u64,
    progress: Progress,
) -> io::Result<()> {
    file.set_len(capacity)?;
    allocate(file, 0, allocation.min(capacity), progress)?;
    file.sync_all()
}

/// Reserves disk blocks for `[offset, offset + len)` of `file`: `fallocate`
/// where the file system has it, zeros written where it does not.
pub fn allocate(file: &File, offset: u64, len: u64, progress: Progress) -> io::Result<()> {
    let zeros = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < len {
        let step = (len - done).min(CHUNK as u64 * 64);
        // SAFETY: fallocate on a descriptor we own; it touches no memory of ours.
        let ret =
            unsafe { libc::fallocate(file.as_raw_fd(), 0, (offset + done) as i64, step as i64) };
        if ret != 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() != Some(libc::EOPNOTSUPP) {
                return Err(error);
            }
            // No fallocate here (some network file systems): write zeros.
            let mut written = 0u64;
            while written < step {
                let n = (step - written).min(CHUNK as u64) as usize;
                file.write_all_at(&zeros[..n], offset + done + written)?;
                written += n as u64;
            }
        }
        done += step;
        progress(done, len);
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Interim qcow2 writer. The shared qcow2 code (src/storage/qcow2*) replaces
// these three functions at the merge; nothing else here knows the format.
// Layout follows qemu's docs/interop/qcow2.txt, version 3.
// ---------------------------------------------------------------------------

const QCOW_MAGIC: u32 = 0x5146_49fb;
const QCOW2_CLUSTER_BITS: u32 = 16;
const QCOW2_HEADER_LENGTH: u32 = 104;
/// Header extension: the backing file's format name.
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// L1/L2 entry flag: refcount is exactly one, the cluster may be written in place.
const QCOW_OFLAG_COPIED: u64 = 1 << 63;
/// qemu's limit on the L1 table (`QCOW_MAX_L1_SIZE`, 32 MiB).
const QCOW_MAX_L1_BYTES: u64 = 32 << 20;
/// qemu's limit on a backing file name.
const QCOW_MAX_BACKING_NAME: usize = 1023;

fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
}

/// Where each structure of a new image goes, in clusters.
#[derive(Debug, PartialEq, Eq)]
struct Qcow2Layout {
    l1_entries: u64,
    reftable_clusters: u64,
    refblocks: u64,
    l1_clusters: u64,
    l2_clusters: u64,
    data_clusters: u64,
}

impl Qcow2Layout {
    fn new(size: u64, preallocated: bool) -> Self {
        let cluster = 1u64 << QCOW2_CLUSTER_BITS;
        let data = div_ceil(size, cluster);
        let l1_entries = div_ceil(data, cluster / 8);
        let l1_clusters = div_ceil(l1_entries * 8, cluster);
        let (l2_clusters, data_clusters) = if preallocated {
            (l1_entries, data)
        } else {
            (0, 0)
        };
        let others = 1 + l1_clusters + l2_clusters + data_clusters;
        // Refcount blocks count themselves and the table, so iterate to the
        // fixed point; it only ever grows, and converges in a step or two.
        let per_block = cluster / 2; // 16-bit refcounts
        let (mut refblocks, mut reftable_clusters) = (1, 1);
        loop {
            let total = others + refblocks + reftable_clusters;
            let need_blocks = div_ceil(total, per_block);
            let need_table = div_ceil(need_blocks * 8, cluster);
            if need_blocks <= refblocks && need_table <= reftable_clusters {
                break;
            }
            refblocks = refblocks.max(need_blocks);
            reftable_clusters = reftable_clusters.max(need_table);
        }
        Self {
            l1_entries,
            reftable_clusters,
            refblocks,
            l1_clusters,
            l2_clusters,
            data_clusters,
        }
    }

    fn reftable(&self) -> u64 {
        1
    }
    fn first_refblock(&self) -> u64 {
        self.reftable() + self.reftable_clusters
    }
    fn l1(&self) -> u64 {
        self.first_refblock() + self.refblocks
    }
    fn first_l2(&self) -> u64 {
        self.l1() + self.l1_clusters
    }
    fn first_data(&self) -> u64 {
        self.first_l2() + self.l2_clusters
    }
    fn total(&self) -> u64 {
        self.first_data() + self.data_clusters
    }
}

/// Writes a fresh, empty qcow2 (version 3, 64 KiB clusters, 16-bit
/// refcounts) of virtual `size` at `path`, replacing what is there; with a
/// `backing` file, reads of unwritten clusters go to it.
pub fn create_qcow2(
    path: &Path,
    size: u64,
    prealloc: Preallocation,
    backing: Option<(&Path, VolumeFormat)>,
    progress: Progress,
) -> io::Result<()> {
    let invalid = |message: String| io::Error::new(io::ErrorKind::InvalidInput, message);
    let cluster = 1u64 << QCOW2_CLUSTER_BITS;
    // qemu rounds the virtual size up to whole 512-byte sectors.
    let size = size
        .checked_next_multiple_of(512)
        .ok_or_else(|| invalid(format!("{size} bytes is too large for a qcow2 image")))?;
    let layout = Qcow2Layout::new(size, prealloc != Preallocation::Off);
    if layout.l1_entries * 8 > QCOW_MAX_L1_BYTES {
        return Err(invalid(format!(
            "{size} bytes is too large for a qcow2 image with 64 KiB clusters"
        )));
    }
    let backing_name = match backing {
        Some((path, _)) => {
            let name = path.to_string_lossy().into_owned();
            if name.len() > QCOW_MAX_BACKING_NAME {
                return Err(invalid(format!(
                    "backing file name {name} is longer than 1023 bytes"
                )));
            }
            Some(name)
        }
        None => None,
    };

    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .mode(VOLUME_MODE)
        .open(path)?;

    // Header (qcow2.txt "Header"), then extensions, then the backing name.
    let mut header = vec![0u8; QCOW2_HEADER_LENGTH as usize];
    let put32 = |h: &mut [u8], at: usize, v: u32| h[at..at + 4].copy_from_slice(&v.to_be_bytes());
    let put64 = |h: &mut [u8], at: usize, v: u64| h[at..at + 8].copy_from_slice(&v.to_be_bytes());
    put32(&mut header, 0, QCOW_MAGIC);
    put32(&mut header, 4, 3); // version
    put32(&mut header, 20, QCOW2_CLUSTER_BITS);
    put64(&mut header, 24, size);
    put32(&mut header, 32, 0); // crypt_method: none
    put32(&mut header, 36, layout.l1_entries as u32);
    put64(&mut header, 40, layout.l1() * cluster);
    put64(&mut header, 48, layout.reftable() * cluster);
    put32(&mut header, 56, layout.reftable_clusters as u32);
    // nb_snapshots, snapshots_offset, incompatible/compatible/autoclear
    // features: all zero.
    put32(&mut header, 96, 4); // refcount_order: 16-bit refcounts
    put32(&mut header, 100, QCOW2_HEADER_LENGTH);
    if let Some((_, format)) = backing {
        let name = format.name().as_bytes();
        header.extend_from_slice(&EXT_BACKING_FORMAT.to_be_bytes());
        header.extend_from_slice(&(name.len() as u32).to_be_bytes());
        header.extend_from_slice(name);
        header.resize(header.len().next_multiple_of(8), 0);
    }
    header.extend_from_slice(&[0; 8]); // end of header extensions
    if let Some(name) = &backing_name {
        let offset = header.len() as u64;
        put64(&mut header, 8, offset);
        put32(&mut header, 16, name.len() as u32);
        header.extend_from_slice(name.as_bytes());
    }
    file.write_all_at(&header, 0)?;

    // Refcount table: one entry per refcount block.
    let mut table = Vec::with_capacity(layout.refblocks as usize * 8);
    for block in 0..layout.refblocks {
        table.extend_from_slice(&((layout.first_refblock() + block) * cluster).to_be_bytes());
    }
    file.write_all_at(&table, layout.reftable() * cluster)?;

    // Refcount blocks: every cluster up to the end has refcount 1.
    let per_block = cluster / 2;
    let total = layout.total();
    for block in 0..layout.refblocks {
        let first = block * per_block;
        let used = total.saturating_sub(first).min(per_block) as usize;
        let mut bytes = vec![0u8; cluster as usize];
        for entry in bytes.chunks_exact_mut(2).take(used) {
            entry.copy_from_slice(&1u16.to_be_bytes());
        }
        file.write_all_at(&bytes, (layout.first_refblock() + block) * cluster)?;
    }

    let l1_offset = layout.l1() * cluster;
    if prealloc == Preallocation::Off {
        file.set_len(l1_offset + layout.l1_entries * 8)?;
    } else {
        // L1 points at every L2 table, each L2 entry at its data cluster.
        let mut l1 = Vec::with_capacity(layout.l1_entries as usize * 8);
        for table in 0..layout.l1_entries {
            l1.extend_from_slice(
                &(((layout.first_l2() + table) * cluster) | QCOW_OFLAG_COPIED).to_be_bytes(),
            );
        }
        file.write_all_at(&l1, l1_offset)?;
        let per_l2 = cluster / 8;
        for table in 0..layout.l2_clusters {
            let mut l2 = vec![0u8; cluster as usize];
            for (index, entry) in l2.chunks_exact_mut(8).enumerate() {
                let data = table * per_l2 + index as u64;
                if data >= layout.data_clusters {
                    break;
                }
                let offset = (layout.first_data() + data) * cluster;
                entry.copy_from_slice(&(offset | QCOW_OFLAG_COPIED).to_be_bytes());
            }
            file.write_all_at(&l2, (layout.first_l2() + table) * cluster)?;
            if prealloc == Preallocation::Metadata {
                progress((table + 1) * cluster, layout.l2_clusters * cluster);
            }
        }
        file.set_len(total * cluster)?;
        let data_offset = layout.first_data() * cluster;
        let data_len = layout.data_clusters * cluster;
        match prealloc {
            Preallocation::Falloc => allocate(&file, data_offset, data_len, progress)?,
            Preallocation::Full => {
                let zeros = vec![0u8; CHUNK];
                let mut done = 0;
                while done < data_len {
                    let n = (data_len - done).min(CHUNK as u64) as usize;
                    file.write_all_at(&zeros[..n], data_offset + done)?;
                    done += n as u64;
                    progress(done, data_len);
                }
            }
            Preallocation::Off | Preallocation::Metadata => {}
        }
    }
    file.sync_all()
}

/// Grows the qcow2 image at `path` to virtual `new_size`, within the room
/// its L1 table already has (4 TiB for a fresh 64 KiB-cluster image).
pub fn resize_qcow2(path: &Path, new_size: u64) -> io::Result<()> {
    let unsupported = |message: String| io::Error::new(io::ErrorKind::Unsupported, message);
    let file = OpenOptions::new().read(true).write(true).open(path)?;
    let mut header = [0u8; 104];
    file.read_exact_at(&mut header[..72], 0)?;
    let be32 = |at: usize| {
        u32::from_be_bytes([header[at], header[at + 1], header[at + 2], header[at + 3]])
    };
    let be64 = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&header[at..at + 8]);
        u64::from_be_bytes(b)
    };
    if be32(0) != QCOW_MAGIC || !(2..=3).contains(&be32(4)) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "not a qcow2 image",
        ));
    }
    let cluster_bits = be32(20);
    if !(9..=21).contains(&cluster_bits) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "qcow2 cluster size out of range",
        ));
    }
    let old_size = be64(24);
    let new_size = new_size
        .checked_next_multiple_of(512)
        .ok_or_else(|| unsupported("size too large".into()))?;
    if new_size < old_size {
        return Err(unsupported(
            "shrinking a qcow2 volume is not supported; create a smaller volume and copy the data"
                .into(),
        ));
    }
    let l1_size = u64::from(be32(36));
    let l1_offset = be64(40);
    let cluster = 1u64 << cluster_bits;
    let per_l2 = cluster / 8;
    let needed = div_ceil(div_ceil(new_size, cluster), per_l2);
    if needed > l1_size {
        let room = div_ceil(l1_size * 8, cluster).max(1) * cluster / 8;
        if l1_size == 0 || needed > room {
            return Err(unsupported(format!(
                "growing this qcow2 volume to {new_size} bytes needs a larger L1 table, which Vireo \
                 cannot move yet; use `qemu-img resize {}` instead",
                path.display()
            )));
        }
        let zeros = vec![0u8; ((needed - l1_size) * 8) as usize];
        file.write_all_at(&zeros, l1_offset + l1_size * 8)?;
        file.write_all_at(&(needed as u32).to_be_bytes(), 36)?;
    }
    file.write_all_at(&new_size.to_be_bytes(), 24)?;
    file.sync_all()
}

/// Reads what format `file` is and its virtual size; anything that is not a
/// recognised image is raw. Never trusts the header beyond bounds checks.
pub fn probe(file: &File) -> io::Result<Probe> {
    let length = file.metadata()?.len();
    let mut head = vec![0u8; 64 * 1024];
    let got = read_up_to(file, &mut head, 0)?;
    head.truncate(got);
    let be32 = |at: usize| -> Option<u32> {
        Some(u32::from_be_bytes(head.get(at..at + 4)?.try_into().ok()?))
    };
    let be64 = |at: usize| -> Option<u64> {
        Some(u64::from_be_bytes(head.get(at..at + 8)?.try_into().ok()?))
    };
    let raw = Probe {
        format: VolumeFormat::Raw,
        capacity: length,
        backing: None,
        compat: None,
        cluster_size: None,
        lazy_refcounts: false,
    };
    if be32(0) == Some(QCOW_MAGIC) {
        let version = be32(4).unwrap_or(0);
        let capacity = be64(24).unwrap_or(0);
        let backing_offset = be64(8).unwrap_or(0);
        let backing_len = be32(16).unwrap_or(0) as u64;
        let mut backing = None;
        if backing_offset != 0 && backing_len != 0 && backing_len <= QCOW_MAX_BACKING_NAME as u64 {
            let mut name = vec![0u8; backing_len as usize];
            if file.read_exact_at(&mut name, backing_offset).is_ok() {
                backing = Some((
                    PathBuf::from(String::from_utf8_lossy(&name).into_owned()),
                    None,
                ));
            }
        }
        if version == 1 {
            return Ok(Probe {
                format: VolumeFormat::Qcow,
                capacity,
                backing,
                ..raw
            });
        }
        if version == 2 || version == 3 {
            let cluster_bits = be32(20).unwrap_or(0);
            let header_length = if version == 3 {
                be32(100).unwrap_or(72) as usize
            } else {
                72
            };
            // Walk the header extensions for the backing format.
            let mut at = header_length;
            while let (Some(kind), Some(len)) = (be32(at), be32(at + 4)) {
                let len = len as usize;
                if kind == 0 {
                    break;
                }
                if kind == EXT_BACKING_FORMAT {
                    if let (Some(name), Some((_, format))) =
                        (head.get(at + 8..at + 8 + len), backing.as_mut())
                    {
                        *format = VolumeFormat::from_name(&String::from_utf8_lossy(name));
                    }
                }
                at = match at.checked_add(8 + len.next_multiple_of(8)) {
                    Some(next) => next,
                    None => break,
                };
            }
            let compatible = if version == 3 {
                be64(80).unwrap_or(0)
            } else {
                0
            };
            return Ok(Probe {
                format: VolumeFormat::Qcow2,
                capacity,
                backing,
                compat: Some(if version == 3 { "1.1" } else { "0.10" }.into()),
                cluster_size: (9..=21)
                    .contains(&cluster_bits)
                    .then(|| 1u64 << cluster_bits),
                lazy_refcounts: compatible & 1 != 0,
            });
        }
    }
    // ISO 9660: "CD001" in the primary volume descriptor at sector 16.
    let mut iso = [0u8; 5];
    if length > 0x8006 && file.read_exact_at(&mut iso, 0x8001).is_ok() && &iso == b"CD001" {
        return Ok(Probe {
            format: VolumeFormat::Iso,
            ..raw
        });
    }
    Ok(raw)
}

fn read_up_to(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// The volume `name` at `path` as `vol-dumpxml` shows it.
pub fn describe(name: &str, path: &Path) -> io::Result<VolumeDef> {
    let file = File::open(path)?;
    let meta = file.metadata()?;
    let probe = probe(&file)?;
    let mut target = VolumeTarget::new(path.to_path_buf(), Some(probe.format));
    target.permissions = Permissions {
        mode: Some(meta.mode() & 0o7777),
        owner: Some(meta.uid()),
        group: Some(meta.gid()),
        label: None,
    };
    target.timestamps = Some(Timestamps {
        atime: (meta.atime(), meta.atime_nsec() as u32),
        mtime: (meta.mtime(), meta.mtime_nsec() as u32),
        ctime: (meta.ctime(), meta.ctime_nsec() as u32),
    });
    if probe.format == VolumeFormat::Qcow2 {
        target.compat = probe.compat.clone();
        target.cluster_size = probe.cluster_size;
        target.features = Some(if probe.lazy_refcounts {
            vec!["lazy_refcounts".into()]
        } else {
            vec![]
        });
    }
    let backing_store = probe.backing.map(|(backing, format)| {
        // Relative backing names are relative to the image's directory.
        let full = match path.parent() {
            Some(dir) if backing.is_relative() => dir.join(&backing),
            _ => backing,
        };
        let mut store = VolumeTarget::new(full.clone(), format);
        if let Ok(meta) = std::fs::metadata(&full) {
            store.permissions = Permissions {
                mode: Some(meta.mode() & 0o7777),
                owner: Some(meta.uid()),
                group: Some(meta.gid()),
                label: None,
            };
        }
        store
    });
    Ok(VolumeDef {
        name: name.to_string(),
        key: path.to_string_lossy().into_owned(),
        capacity: probe.capacity,
        allocation: meta.blocks() * 512,
        physical: Some(meta.len()),
        target,
        backing_store,
    })
}

/// What to do with runs of zeros when copying.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Zeros {
    /// Write them like any data.
    Write,
    /// Leave holes: the destination is new, so unwritten means zero.
    Skip,
    /// Punch holes: the destination may hold old data there.
    Punch,
}

/// Copies `len` bytes (`None`: to the end of `src`) from `src` at
/// `src_offset` to `dst` at `dst_offset`; returns the bytes copied.
/// With [`Zeros::Skip`] the holes of a sparse source are jumped over
/// without reading them, so a 100 GiB empty disk copies in a moment.
pub fn copy_range(
    src: &File,
    src_offset: u64,
    dst: &File,
    dst_offset: u64,
    len: Option<u64>,
    zeros: Zeros,
    progress: Progress,
) -> io::Result<u64> {
    let src_len = src.metadata()?.len();
    let is_regular = src.metadata()?.file_type().is_file();
    let total = match len {
        Some(len) if is_regular => len.min(src_len.saturating_sub(src_offset)),
        Some(len) => len,
        None if is_regular => src_len.saturating_sub(src_offset),
        None => u64::MAX,
    };
    let mut buf = vec![0u8; CHUNK];
    let mut done = 0u64;
    while done < total {
        if zeros == Zeros::Skip && is_regular {
            // Jump to the next data; if there is none, the rest is a hole.
            let at = src_offset + done;
            // SAFETY: lseek on a descriptor we own.
            let data = unsafe { libc::lseek(src.as_raw_fd(), at as i64, libc::SEEK_DATA) };
            if data < 0 {
                if io::Error::last_os_error().raw_os_error() == Some(libc::ENXIO) {
                    done = total;
                    break;
                }
            } else if data as u64 > at {
                done = (data as u64 - src_offset).min(total);
                progress(done, total);
                continue;
            }
        }
        let want = (total - done).min(CHUNK as u64) as usize;
        let got = read_up_to(src, &mut buf[..want], src_offset + done)?;
        if got == 0 {
            break;
        }
        let chunk = &buf[..got];
        let at = dst_offset + done;
        if zeros != Zeros::Write && chunk.iter().all(|b| *b == 0) {
            if zeros == Zeros::Punch {
                punch_hole(dst, at, got as u64)?;
            }
        } else {
            dst.write_all_at(chunk, at)?;
        }
        done += got as u64;
        progress(done, total);
    }
    // Holes at the end still count: make the destination long enough.
    if dst.metadata()?.len() < dst_offset + done && dst.metadata()?.file_type().is_file() {
        dst.set_len(dst_offset + done)?;
    }
    Ok(done)
}

/// Zeros `[offset, offset + len)` of `file` by deallocating it where the
/// file system can, writing zeros where it cannot.
fn punch_hole(file: &File, offset: u64, len: u64) -> io::Result<()> {
    let file_len = file.metadata()?.len();
    if offset >= file_len {
        return Ok(()); // past the end reads as zeros once the length grows
    }
    let len = len.min(file_len - offset);
    // SAFETY: fallocate on a descriptor we own; it touches no memory of ours.
    let ret = unsafe {
        libc::fallocate(
            file.as_raw_fd(),
            libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            offset as i64,
            len as i64,
        )
    };
    if ret == 0 {
        return Ok(());
    }
    file.write_all_at(&vec![0u8; len as usize], offset)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn no_progress() -> impl FnMut(u64, u64) {
        |_, _| {}
    }

    #[test]
    fn qcow2_layout_matches_qemu_for_small_images() {
        // qemu-img create -f qcow2 x 1G: header, reftable, refblock, L1.
        let layout = Qcow2Layout::new(1 << 30, false);
        assert_eq!(layout.l1_entries, 2);
        assert_eq!(
            (layout.reftable(), layout.first_refblock(), layout.l1()),
            (1, 2, 3)
        );
        assert_eq!(layout.total(), 4);
        // 5 GiB with metadata: 81920 data + 10 L2 + 1 L1 + header + 3 refblocks + table.
        let layout = Qcow2Layout::new(5 << 30, true);
        assert_eq!(layout.data_clusters, 81920);
        assert_eq!(layout.l2_clusters, 10);
        assert_eq!(layout.refblocks, 3);
        assert_eq!(layout.total(), 81920 + 10 + 1 + 1 + 3 + 1);
        // A refcount table that needs a second cluster.
        let huge = Qcow2Layout::new(20 << 40, true);
        assert!(huge.reftable_clusters >= 2);
        assert!(huge.refblocks * 32768 >= huge.total());
    }

    #[test]
    fn qcow2_images_probe_back() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        std::fs::write(&base, b"").unwrap();
        let path = dir.path().join("a.qcow2");
        create_qcow2(
            &path,
            1000,
            Preallocation::Off,
            Some((&base, VolumeFormat::Raw)),
            &mut no_progress(),
        )
        .unwrap();
        let probe = probe(&File::open(&path).unwrap()).unwrap();
        assert_eq!(probe.format, VolumeFormat::Qcow2);
        assert_eq!(probe.capacity, 1024, "rounded up to sectors as qemu does");
        assert_eq!(probe.backing, Some((base, Some(VolumeFormat::Raw))));
        assert_eq!(probe.compat.as_deref(), Some("1.1"));
        assert_eq!(probe.cluster_size, Some(65536));

        resize_qcow2(&path, 2 << 30).unwrap();
        assert_eq!(
            super::probe(&File::open(&path).unwrap()).unwrap().capacity,
            2 << 30
        );
        assert!(
            resize_qcow2(&path, 1 << 30).is_err(),
            "shrinking is refused"
        );
    }

    #[test]
    fn garbage_probes_as_raw_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("junk");
        // A qcow2 magic with absurd fields everywhere.
        let mut junk = vec![0xffu8; 200];
        junk[..4].copy_from_slice(&QCOW_MAGIC.to_be_bytes());
        junk[4..8].copy_from_slice(&3u32.to_be_bytes());
        std::fs::write(&path, &junk).unwrap();
        let probe = probe(&File::open(&path).unwrap()).unwrap();
        assert_eq!(probe.format, VolumeFormat::Qcow2);
        assert_eq!(probe.cluster_size, None);
        assert_eq!(probe.backing, None);
        std::fs::write(&path, b"QFI").unwrap();
        assert_eq!(
            super::probe(&File::open(&path).unwrap()).unwrap().format,
            VolumeFormat::Raw
        );
        std::fs::write(&path, b"").unwrap();
        assert_eq!(
            super::probe(&File::open(&path).unwrap()).unwrap().capacity,
            0
        );
        assert!(resize_qcow2(&path, 1 << 20).is_err());
    }

    #[test]
    fn raw_volumes_are_allocated_as_asked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.img");
        let file = create_exclusive(&path).unwrap();
        create_raw(&file, 10 << 20, 1 << 20, &mut no_progress()).unwrap();
        let meta = std::fs::metadata(&path).unwrap();
        assert_eq!(meta.len(), 10 << 20);
        assert!(meta.blocks() * 512 >= 1 << 20);
        assert_eq!(meta.mode() & 0o777, VOLUME_MODE);
        assert_eq!(
            create_exclusive(&path).unwrap_err().kind(),
            io::ErrorKind::AlreadyExists
        );
    }

    #[test]
    fn sparse_copies_keep_holes_and_data() {
        let dir = tempfile::tempdir().unwrap();
        let src_path = dir.path().join("src");
        let src = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&src_path)
            .unwrap();
        src.set_len(64 << 20).unwrap();
        src.write_all_at(b"hello", 40 << 20).unwrap();
        let dst = File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(dir.path().join("dst"))
            .unwrap();
        let copied = copy_range(&src, 0, &dst, 0, None, Zeros::Skip, &mut no_progress()).unwrap();
        assert_eq!(copied, 64 << 20);
        assert_eq!(dst.metadata().unwrap().len(), 64 << 20);
        let mut word = [0u8; 5];
        dst.read_exact_at(&mut word, 40 << 20).unwrap();
        assert_eq!(&word, b"hello");
        assert!(
            dst.metadata().unwrap().blocks() * 512 < 8 << 20,
            "holes stay holes"
        );

        // Punching into a destination with old data zeros it.
        dst.write_all_at(&[7u8; 4096], 0).unwrap();
        copy_range(
            &src,
            0,
            &dst,
            0,
            Some(4096),
            Zeros::Punch,
            &mut no_progress(),
        )
        .unwrap();
        let mut page = [1u8; 4096];
        dst.read_exact_at(&mut page, 0).unwrap();
        assert!(page.iter().all(|b| *b == 0));
    }
}
