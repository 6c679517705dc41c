//! Committing a qcow2 overlay into the image behind it, as `qemu-img
//! commit` does: every cluster the overlay holds (data, or zeroes) is
//! written into its backing image, which then reads as the overlay did.
//! Deleting an external snapshot is this merge.
//!
//! The overlay is read straight from its L2 tables rather than through
//! imago: imago opens the whole chain and locks the backing image shared,
//! while the commit needs it locked for writing. Until the caller stops
//! using the overlay, nothing is lost at any point: the overlay still
//! holds every cluster it had, so a crash mid-way leaves a chain that reads
//! the same as before.

use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::editor::{EditError, Editor, FLAG_COMPRESSED, OFFSET_MASK};
use super::header::{Qcow2Header, INCOMPAT_EXTL2};
use super::{open_locked, resolve_backing};
use crate::storage::{open_image, ImageFormat, OpenError};

/// L2 entry bit 0 (version 3): the cluster reads as zeroes.
const FLAG_ZERO: u64 = 1;

/// Why a commit stopped; the backing image reads as before for every
/// cluster not yet written, and the overlay is untouched.
#[derive(Debug, thiserror::Error)]
pub enum CommitError {
    #[error("{0}")]
    Open(#[from] OpenError),
    #[error("{0}")]
    Metadata(#[from] EditError),
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("{0}")]
    Unsupported(String),
}

/// Writes what the overlay at `overlay` holds into its backing image and
/// flushes it to disk; returns the backing image's path and format.
/// `progress` gets the fraction done. The overlay itself is not changed.
pub fn commit(
    overlay: &Path,
    progress: &mut dyn FnMut(f64),
) -> Result<(PathBuf, ImageFormat), CommitError> {
    let file = open_locked(overlay, true)?;
    let header = Qcow2Header::read(&file)
        .map_err(|e| CommitError::Unsupported(format!("{}: {e}", overlay.display())))?;
    let unsupported = |what: &str| {
        Err(CommitError::Unsupported(format!(
            "{}: {what}",
            overlay.display()
        )))
    };
    let Some(backing_name) = header.backing_file.clone() else {
        return unsupported("has no backing file to commit into");
    };
    if header.incompatible_features & INCOMPAT_EXTL2 != 0 {
        return unsupported("extended L2 entries are not supported");
    }
    if header.nb_snapshots > 0 {
        return unsupported("holds internal snapshots, which a commit would lose");
    }
    let backing = resolve_backing(overlay, &backing_name);
    let format = match header.backing_format.as_deref() {
        Some(name) => ImageFormat::parse(name).ok_or_else(|| {
            CommitError::Unsupported(format!("backing format {name} is not supported"))
        })?,
        None => crate::storage::detect_format(&backing)?,
    };
    let mut target = open_image(&backing, format, false)?;
    let size = header.size.min(target.size());

    let editor = Editor::new(&file, header.clone())?;
    let cluster = header.cluster_size();
    let per_l2 = cluster / 8;
    let l1 = editor.read_table(
        header.l1_table_offset,
        u64::from(header.l1_size),
        "L1 table",
    )?;
    let mut buf = vec![0u8; cluster as usize];
    for (l1_index, &l1_entry) in l1.iter().enumerate() {
        progress(l1_index as f64 / l1.len().max(1) as f64);
        let l2_offset = l1_entry & OFFSET_MASK;
        if l2_offset == 0 {
            continue;
        }
        let l2 = editor.read_l2(l2_offset)?;
        for (l2_index, &entry) in l2.iter().enumerate() {
            let guest = (l1_index as u64 * per_l2 + l2_index as u64) * cluster;
            if guest >= size {
                break;
            }
            let len = cluster.min(size - guest) as usize;
            if entry & FLAG_COMPRESSED != 0 {
                return unsupported("compressed clusters are not supported");
            }
            if entry & FLAG_ZERO != 0 && header.version >= 3 {
                buf[..len].fill(0);
            } else if entry & OFFSET_MASK != 0 {
                file.read_exact_at(&mut buf[..len], entry & OFFSET_MASK)?;
            } else {
                // (not in the overlay: the backing image has it already)
                continue;
            }
            target.write_at(&buf[..len], guest)?;
        }
    }
    target.flush()?;
    progress(1.0);
    Ok((backing, format))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::qcow2::{create_overlay, Qcow2Image};
    use crate::storage::BlockBackend;

    #[test]
    fn the_backing_image_reads_as_the_overlay_did() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().join("base.raw");
        std::fs::write(&base, vec![0x11u8; 3 << 20]).unwrap();
        let top = dir.path().join("top.qcow2");
        create_overlay(&base, "raw", &top).unwrap();
        {
            let mut image = Qcow2Image::open(&top, false).unwrap();
            image.write_at(&[0x22; 4096], 65536 + 512).unwrap();
            image.write_at(&[0x33; 100], (3 << 20) - 100).unwrap();
            image.discard(2 << 20, 65536).unwrap();
            image.flush().unwrap();
        }
        let before = std::fs::read(&top).unwrap();
        let mut seen = Vec::new();
        let (backing, format) = commit(&top, &mut |f| seen.push(f)).unwrap();
        assert_eq!(
            (backing.as_path(), format),
            (base.as_path(), ImageFormat::Raw)
        );
        assert_eq!(seen.last(), Some(&1.0));
        assert_eq!(std::fs::read(&top).unwrap(), before, "the overlay changed");

        let bytes = std::fs::read(&base).unwrap();
        assert_eq!(bytes.len(), 3 << 20);
        assert!(bytes[..65536 + 512].iter().all(|&b| b == 0x11));
        assert!(bytes[65536 + 512..65536 + 512 + 4096]
            .iter()
            .all(|&b| b == 0x22));
        assert!(bytes[65536 + 4608..2 << 20].iter().all(|&b| b == 0x11));
        assert!(bytes[2 << 20..(2 << 20) + 65536].iter().all(|&b| b == 0));
        assert!(bytes[(3 << 20) - 100..].iter().all(|&b| b == 0x33));
    }

    #[test]
    fn an_image_without_backing_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let alone = dir.path().join("alone.qcow2");
        let options = crate::storage::qcow2::CreateOptions {
            size: 1 << 20,
            ..Default::default()
        };
        Qcow2Image::create(&alone, &options, &mut |_| {}).unwrap();
        let error = commit(&alone, &mut |_| {}).unwrap_err();
        assert!(error.to_string().contains("has no backing file"), "{error}");
    }
}
