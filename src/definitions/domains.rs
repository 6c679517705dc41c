//! The store of domain definitions: one libvirt XML file per VM in
//! `paths::domains_dir()`, the counterpart of `/etc/libvirt/qemu/`.
//!
//! Names and UUIDs are unique. Every write is atomic (temp file, fsync,
//! rename, fsync of the directory), so a crash leaves the old definition
//! or the new one, never half of either.

use std::path::{Path, PathBuf};

pub use super::definition::Definition;
use super::files::DefinitionFiles;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("domain '{0}' does not exist; list them with `vireo list --all`")]
    NotFound(String),
    #[error("domain '{name}' already exists with UUID {uuid}")]
    NameTaken { name: String, uuid: String },
    #[error("domain '{other}' already has UUID {uuid}")]
    UuidTaken { other: String, uuid: String },
    #[error("'{0}' is not a valid domain name: a name cannot contain '/', start with '.', or be longer than 248 bytes")]
    BadName(String),
    /// libvirt's refusal: the snapshots' descriptions name the domain.
    #[error("Requested operation is not valid: cannot rename domain with snapshots")]
    HasSnapshots,
    #[error(transparent)]
    Domain(#[from] crate::domain::DomainError),
    #[error("{action} {path}: {source}")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl StoreError {
    pub(crate) fn io(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.display().to_string();
        move |source| StoreError::Io {
            action,
            path,
            source,
        }
    }
}

/// Replaces `path` with `bytes` atomically (see [`crate::fsutil`]).
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    crate::fsutil::atomic_write(path, bytes).map_err(StoreError::io("cannot write", path))
}

/// The longest name whose files (`NAME.xml`, `NAME.log`, and room for a
/// suffix as long as `.serial`) still fit a file name of 255 bytes.
pub const MAX_NAME_BYTES: usize = 255 - ".serial".len();

/// Valid VM names, as libvirt's: anything but '/' (spaces, punctuation and
/// any script included). Two rules of Vireo's own, as names become file
/// names: no leading '.' (hidden files are Vireo's own state), and at most
/// [`MAX_NAME_BYTES`] bytes.
pub fn validate_name(name: &str) -> Result<(), StoreError> {
    let ok = !name.is_empty()
        && !name.contains('/')
        && !name.contains('\0')
        && !name.starts_with('.')
        && name.len() <= MAX_NAME_BYTES;
    if ok {
        Ok(())
    } else {
        Err(StoreError::BadName(name.to_string()))
    }
}

/// The domain definitions in one directory.
pub struct DomainStore {
    files: DefinitionFiles,
}

impl DomainStore {
    /// The store in `paths::domains_dir()`.
    pub fn open() -> Self {
        Self::at(crate::paths::domains_dir())
    }

    pub fn at(dir: PathBuf) -> Self {
        Self {
            files: DefinitionFiles::new(dir),
        }
    }

    fn path_of(&self, name: &str) -> PathBuf {
        self.files.path(name)
    }

    /// Every definition, sorted by name. Files that do not parse are
    /// skipped with a warning (they are left alone, never overwritten).
    pub fn list(&self) -> Vec<Definition> {
        let Ok(names) = self.files.names() else {
            return Vec::new();
        };
        let mut out: Vec<Definition> = names
            .iter()
            .map(|name| self.path_of(name))
            .filter_map(|p| {
                match std::fs::read_to_string(&p)
                    .map_err(|e| e.to_string())
                    .and_then(|xml| Definition::parse(&xml).map_err(|e| e.to_string()))
                {
                    Ok(def) => Some(def),
                    Err(e) => {
                        tracing::warn!(path = %p.display(), "skipping unreadable definition: {e}");
                        None
                    }
                }
            })
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// The definition called `name`, or with UUID `name`.
    pub fn find(&self, name_or_uuid: &str) -> Result<Definition, StoreError> {
        let by_name = self.path_of(name_or_uuid);
        if validate_name(name_or_uuid).is_ok() && by_name.is_file() {
            let xml = std::fs::read_to_string(&by_name)
                .map_err(StoreError::io("cannot read", &by_name))?;
            return Ok(Definition::parse(&xml)?);
        }
        let wanted = name_or_uuid.to_ascii_lowercase();
        self.list()
            .into_iter()
            .find(|d| d.uuid == wanted)
            .ok_or_else(|| StoreError::NotFound(name_or_uuid.to_string()))
    }

    /// Defines (or redefines, when name and UUID both match) a domain from
    /// XML; a missing UUID is generated. Returns the stored definition.
    pub fn define(&self, xml: &str) -> Result<Definition, StoreError> {
        let definition = Definition::parse_new(xml)?;
        validate_name(&definition.name)?;
        for existing in self.list() {
            if existing.name == definition.name && existing.uuid != definition.uuid {
                return Err(StoreError::NameTaken {
                    name: existing.name,
                    uuid: existing.uuid,
                });
            }
            if existing.uuid == definition.uuid && existing.name != definition.name {
                return Err(StoreError::UuidTaken {
                    other: existing.name,
                    uuid: existing.uuid,
                });
            }
        }
        let path = self.path_of(&definition.name);
        self.files
            .write(&definition.name, &definition.stored_xml())
            .map_err(StoreError::io("cannot write", &path))?;
        Ok(definition)
    }

    /// Removes the definition called `name`.
    pub fn undefine(&self, name: &str) -> Result<(), StoreError> {
        let definition = self.find(name)?;
        let path = self.path_of(&definition.name);
        self.files
            .remove(&definition.name)
            .map_err(StoreError::io("cannot remove", &path))
    }

    /// Renames a definition, keeping its UUID.
    pub fn rename(&self, name: &str, new_name: &str) -> Result<Definition, StoreError> {
        validate_name(new_name)?;
        let definition = self.find(name)?;
        // The snapshots live beside the domains directory (see `snapshots`).
        if let Some(config) = self.files.dir().parent() {
            let snapshots =
                super::SnapshotStore::at(config.join("snapshots").join(&definition.name));
            if snapshots.list().is_ok_and(|all| !all.is_empty()) {
                return Err(StoreError::HasSnapshots);
            }
        }
        if self.path_of(new_name).exists() {
            let other = self.find(new_name)?;
            return Err(StoreError::NameTaken {
                name: other.name,
                uuid: other.uuid,
            });
        }
        let renamed = definition.renamed(new_name)?;
        self.files
            .write(new_name, &renamed.stored_xml())
            .map_err(StoreError::io("cannot write", &self.path_of(new_name)))?;
        let old = self.path_of(&definition.name);
        self.files
            .remove(&definition.name)
            .map_err(StoreError::io("cannot remove", &old))?;
        Ok(renamed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xml(name: &str, uuid: Option<&str>) -> String {
        let uuid = uuid
            .map(|u| format!("<uuid>{u}</uuid>"))
            .unwrap_or_default();
        format!("<domain type='kvm'><name>{name}</name>{uuid}<memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os></domain>")
    }

    const U1: &str = "5119e3ad-efa7-e426-49eb-9ddf9060fde4";
    const U2: &str = "6229e3ad-efa7-e426-49eb-9ddf9060fde5";

    #[test]
    fn define_list_find_undefine() {
        let dir = tempfile::tempdir().unwrap();
        let store = DomainStore::at(dir.path().join("domains"));
        let a = store.define(&xml("alpha", Some(U1))).unwrap();
        assert_eq!(a.uuid, U1);
        let b = store.define(&xml("beta", None)).unwrap();
        assert_eq!(b.uuid.len(), 36, "a UUID is generated");
        assert_eq!(
            store
                .list()
                .iter()
                .map(|d| d.name.as_str())
                .collect::<Vec<_>>(),
            ["alpha", "beta"]
        );
        assert_eq!(store.find(U1).unwrap().name, "alpha");
        assert_eq!(store.find("beta").unwrap().uuid, b.uuid);
        // Redefining with the same name and UUID updates.
        store.define(&xml("alpha", Some(U1))).unwrap();
        assert!(matches!(
            store.define(&xml("alpha", Some(U2))),
            Err(StoreError::NameTaken { .. })
        ));
        assert!(matches!(
            store.define(&xml("gamma", Some(U1))),
            Err(StoreError::UuidTaken { .. })
        ));
        store.undefine("alpha").unwrap();
        assert!(matches!(store.find("alpha"), Err(StoreError::NotFound(_))));
    }

    #[test]
    fn bad_input_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = DomainStore::at(dir.path().join("domains"));
        store.define(&xml("keep", Some(U1))).unwrap();
        let before = std::fs::read(dir.path().join("domains/keep.xml")).unwrap();
        assert!(store.define("<domain><name>keep</name><memory").is_err());
        // Refused by the domain model or by the store's own name check.
        let evil = store.define(&xml("../evil", None)).unwrap_err().to_string();
        assert!(evil.contains("name"), "{evil}");
        assert_eq!(
            std::fs::read(dir.path().join("domains/keep.xml")).unwrap(),
            before
        );
        assert_eq!(
            std::fs::read_dir(dir.path().join("domains"))
                .unwrap()
                .count(),
            1,
            "no temp files left"
        );
    }

    #[test]
    fn rename_keeps_the_uuid() {
        let dir = tempfile::tempdir().unwrap();
        let store = DomainStore::at(dir.path().to_path_buf());
        store.define(&xml("old", Some(U1))).unwrap();
        let renamed = store.rename("old", "new").unwrap();
        assert_eq!((renamed.name.as_str(), renamed.uuid.as_str()), ("new", U1));
        assert!(store.find("old").is_err());
        assert!(store.find("new").unwrap().xml.contains("<name>new</name>"));
    }
}
