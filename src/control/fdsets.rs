//! File descriptor sets, QMP's `add-fd` / `remove-fd` / `query-fdsets`: a
//! client passes an open file to the VM process over the control socket
//! (SCM_RIGHTS with the `add-fd` command) and names it `/dev/fdset/N`
//! where a command takes a file name, as libvirt does for QEMU.
//!
//! This is how a confined VM process gets a file its Landlock rules do not
//! let it open by path: a disc for `change-media --live` is opened by the
//! client, which may read it, and handed over. The VM process never needs
//! to read the directories of the storage pools.
//!
//! As in QEMU (`monitor/fds.c`), sets are numbered from 0 and belong to
//! the VM, not to the connection that made them; opening `/dev/fdset/N`
//! duplicates a member whose access mode is the one asked for, so
//! `remove-fd` afterwards leaves the user of the duplicate alone. Unlike
//! QEMU, a set lives until `remove-fd` empties it, and the VM holds at
//! most [`MAX_FDS`] descriptors, so a client cannot exhaust its table.

use std::collections::BTreeMap;
use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::Serialize;

/// The most descriptors all sets together hold.
pub const MAX_FDS: usize = 64;

/// Where a set's members are named in file name arguments.
const FDSET_PREFIX: &str = "/dev/fdset/";

/// One member of a set.
struct Member {
    fd: OwnedFd,
    opaque: Option<String>,
}

/// Every set of a VM.
#[derive(Default)]
pub struct FdSets {
    sets: Mutex<BTreeMap<u64, Vec<Member>>>,
}

/// `add-fd`'s answer (QMP `AddfdInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AddedFd {
    #[serde(rename = "fdset-id")]
    pub fdset_id: u64,
    pub fd: RawFd,
}

/// `query-fdsets`' answer, one per set (QMP `FdsetInfo`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FdSetInfo {
    #[serde(rename = "fdset-id")]
    pub fdset_id: u64,
    pub fds: Vec<FdInfo>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FdInfo {
    pub fd: RawFd,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opaque: Option<String>,
}

/// Why `/dev/fdset/N` could not be opened, as QEMU's errno says it.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum FdSetOpenError {
    /// No such set (QEMU: ENOENT).
    #[error("No such file or directory")]
    NoSet,
    /// The set has no member open for the access asked for (QEMU: EACCES).
    #[error("Permission denied")]
    NoMatchingMode,
    /// Duplicating the member failed.
    #[error("{0}")]
    Dup(String),
}

impl FdSets {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `fd` to set `fdset_id`, or to a new set (the lowest free
    /// number) when it is `None`.
    pub fn add(
        &self,
        fd: OwnedFd,
        fdset_id: Option<u64>,
        opaque: Option<String>,
    ) -> Result<AddedFd, String> {
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        if sets.values().map(Vec::len).sum::<usize>() >= MAX_FDS {
            return Err(format!(
                "The VM already holds {MAX_FDS} passed file descriptors; remove some with remove-fd"
            ));
        }
        let id = fdset_id.unwrap_or_else(|| (0..).find(|id| !sets.contains_key(id)).unwrap_or(0));
        let raw = fd.as_raw_fd();
        sets.entry(id).or_default().push(Member { fd, opaque });
        Ok(AddedFd {
            fdset_id: id,
            fd: raw,
        })
    }

    /// Closes member `fd` of set `fdset_id`, or every member when `fd` is
    /// `None`. An emptied set goes.
    pub fn remove(&self, fdset_id: u64, fd: Option<RawFd>) -> Result<(), String> {
        let mut sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        let not_found = || match fd {
            Some(fd) => format!("File descriptor named 'fdset-id:{fdset_id}, fd:{fd}' not found"),
            None => format!("File descriptor named 'fdset-id:{fdset_id}' not found"),
        };
        let members = sets.get_mut(&fdset_id).ok_or_else(not_found)?;
        match fd {
            None => members.clear(),
            Some(fd) => {
                let before = members.len();
                members.retain(|m| m.fd.as_raw_fd() != fd);
                if members.len() == before {
                    return Err(not_found());
                }
            }
        }
        if members.is_empty() {
            sets.remove(&fdset_id);
        }
        Ok(())
    }

    pub fn query(&self) -> Vec<FdSetInfo> {
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        sets.iter()
            .map(|(&id, members)| FdSetInfo {
                fdset_id: id,
                fds: members
                    .iter()
                    .map(|m| FdInfo {
                        fd: m.fd.as_raw_fd(),
                        opaque: m.opaque.clone(),
                    })
                    .collect(),
            })
            .collect()
    }

    /// Opens `/dev/fdset/N`: a duplicate of a member of set N open for
    /// reading only (`read_only`) or for reading and writing. `None` when
    /// `path` does not name a set.
    pub fn open(&self, path: &Path, read_only: bool) -> Option<Result<File, FdSetOpenError>> {
        let id = fdset_id(path)?;
        let sets = self.sets.lock().unwrap_or_else(|e| e.into_inner());
        let Some(members) = sets.get(&id) else {
            return Some(Err(FdSetOpenError::NoSet));
        };
        let wanted = if read_only {
            libc::O_RDONLY
        } else {
            libc::O_RDWR
        };
        let Some(member) = members.iter().find(|m| access_mode(&m.fd) == Some(wanted)) else {
            return Some(Err(FdSetOpenError::NoMatchingMode));
        };
        Some(
            member
                .fd
                .try_clone()
                .map(File::from)
                .map_err(|e| FdSetOpenError::Dup(e.to_string())),
        )
    }
}

/// N of `/dev/fdset/N`.
pub fn fdset_id(path: &Path) -> Option<u64> {
    path.to_str()?.strip_prefix(FDSET_PREFIX)?.parse().ok()
}

/// `O_RDONLY`, `O_WRONLY` or `O_RDWR`: how `fd` was opened.
fn access_mode(fd: &impl AsFd) -> Option<i32> {
    // SAFETY: F_GETFL reads the flags of a descriptor we hold; no memory
    // is passed.
    let flags = unsafe { libc::fcntl(fd.as_fd().as_raw_fd(), libc::F_GETFL) };
    (flags >= 0).then_some(flags & libc::O_ACCMODE)
}

/// The path `file` was opened at, as the kernel names it, for showing
/// (`query-block`) and storing: a disc passed by descriptor is still known
/// by its real path.
pub fn path_of(file: &File) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/self/fd/{}", file.as_raw_fd())).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A 4-byte "disc.iso" in a directory of its own.
    fn disc() -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("disc.iso");
        std::fs::write(&file, b"disc").unwrap();
        (dir, file)
    }

    fn open(path: &Path, write: bool) -> OwnedFd {
        std::fs::OpenOptions::new()
            .read(true)
            .write(write)
            .open(path)
            .unwrap()
            .into()
    }

    #[test]
    fn sets_are_numbered_from_zero_and_listed_as_qemu_lists_them() {
        let (_dir, file) = disc();
        let sets = FdSets::new();
        let first = sets.add(open(&file, false), None, None).unwrap();
        assert_eq!(first.fdset_id, 0);
        let second = sets
            .add(open(&file, false), None, Some("cd".into()))
            .unwrap();
        assert_eq!(second.fdset_id, 1);
        let joined = sets.add(open(&file, true), Some(1), None).unwrap();
        assert_eq!(joined.fdset_id, 1);
        let listed = serde_json::to_value(sets.query()).unwrap();
        assert_eq!(
            listed,
            serde_json::json!([
                {"fdset-id": 0, "fds": [{"fd": first.fd}]},
                {"fdset-id": 1, "fds": [{"fd": second.fd, "opaque": "cd"}, {"fd": joined.fd}]},
            ])
        );
        // A freed number is used again.
        sets.remove(0, None).unwrap();
        assert_eq!(
            sets.add(open(&file, false), None, None).unwrap().fdset_id,
            0
        );
    }

    #[test]
    fn opening_a_set_duplicates_the_member_with_the_access_asked_for() {
        use std::io::Read;
        let (_dir, file) = disc();
        let sets = FdSets::new();
        let added = sets.add(open(&file, false), None, None).unwrap();
        let path = PathBuf::from(format!("/dev/fdset/{}", added.fdset_id));

        let mut dup = sets.open(&path, true).unwrap().unwrap();
        assert_ne!(dup.as_raw_fd(), added.fd);
        // The duplicate outlives the member.
        sets.remove(added.fdset_id, Some(added.fd)).unwrap();
        let mut read = String::new();
        dup.read_to_string(&mut read).unwrap();
        assert_eq!(read, "disc");
        assert_eq!(path_of(&dup), Some(file.canonicalize().unwrap()));

        assert_eq!(
            sets.open(&path, true).unwrap().unwrap_err(),
            FdSetOpenError::NoSet
        );
        let added = sets.add(open(&file, false), Some(7), None).unwrap();
        assert_eq!(
            sets.open(Path::new("/dev/fdset/7"), false)
                .unwrap()
                .unwrap_err(),
            FdSetOpenError::NoMatchingMode,
            "a read-only member does not open for writing"
        );
        assert!(sets.open(Path::new("/srv/disc.iso"), true).is_none());
        assert!(sets.open(Path::new("/dev/fdset/x"), true).is_none());
        sets.remove(7, Some(added.fd)).unwrap();
    }

    #[test]
    fn unknown_members_are_reported_and_the_table_is_bounded() {
        let (_dir, file) = disc();
        let sets = FdSets::new();
        assert_eq!(
            sets.remove(3, None).unwrap_err(),
            "File descriptor named 'fdset-id:3' not found"
        );
        let added = sets.add(open(&file, false), None, None).unwrap();
        assert_eq!(
            sets.remove(0, Some(added.fd + 1000)).unwrap_err(),
            format!(
                "File descriptor named 'fdset-id:0, fd:{}' not found",
                added.fd + 1000
            )
        );
        for _ in 1..MAX_FDS {
            sets.add(open(&file, false), Some(0), None).unwrap();
        }
        let refused = sets.add(open(&file, false), None, None).unwrap_err();
        assert!(refused.contains("remove-fd"), "{refused}");
        assert_eq!(sets.query()[0].fds.len(), MAX_FDS);
    }
}
