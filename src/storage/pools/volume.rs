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
// qcow2 volumes are created by the qcow2 module (`Qcow2Image::create`, the
// one writer of new images); what is left here reads headers for `probe`
// and grows an image in place for `vol-resize`. Layout from qemu's
// docs/interop/qcow2.txt, version 3.
// ---------------------------------------------------------------------------

const QCOW_MAGIC: u32 = 0x5146_49fb;
/// Header extension: the backing file's format name.
const EXT_BACKING_FORMAT: u32 = 0xe279_2aca;
/// qemu's limit on a backing file name.
const QCOW_MAX_BACKING_NAME: usize = 1023;

fn div_ceil(a: u64, b: u64) -> u64 {
    a.div_ceil(b)
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
    fn qcow2_images_probe_back() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.img");
        std::fs::write(&base, b"").unwrap();
        let path = dir.path().join("a.qcow2");
        let options = crate::storage::qcow2::CreateOptions {
            size: 1000,
            backing_file: Some(base.to_str().unwrap().into()),
            backing_format: Some("raw".into()),
            ..Default::default()
        };
        crate::storage::Qcow2Image::create(&path, &options, &mut |_| {}).unwrap();
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
