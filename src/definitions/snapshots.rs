//! The domain snapshots' descriptions, kept as libvirt keeps them: one
//! `<domainsnapshot>` file per snapshot in a directory per domain
//! (`paths::config_dir()/snapshots/DOMAIN/NAME.xml`, as libvirt's
//! `qemu/snapshot/DOMAIN/NAME.xml`), with `<active>1</active>` on the
//! domain's current snapshot. The disks' own snapshots live in their qcow2
//! images; these files say which snapshots exist, how they relate and
//! what the domain's definition was.

use std::path::PathBuf;

use super::DefinitionFiles;
use crate::domain::snapshot::SnapshotDef;

/// One domain's snapshot descriptions.
#[derive(Debug, Clone)]
pub struct SnapshotStore {
    files: DefinitionFiles,
}

impl SnapshotStore {
    /// The snapshots of the domain called `domain`.
    pub fn for_domain(domain: &str) -> Self {
        Self::at(crate::paths::config_dir().join("snapshots").join(domain))
    }

    pub fn at(dir: PathBuf) -> Self {
        Self {
            files: DefinitionFiles::new(dir),
        }
    }

    /// Every snapshot, sorted by name (virsh's order).
    pub fn list(&self) -> Result<Vec<SnapshotDef>, String> {
        let mut names = self
            .files
            .names()
            .map_err(|e| format!("cannot list {}: {e}", self.files.dir().display()))?;
        names.sort();
        names
            .iter()
            .filter_map(|name| self.get(name).transpose())
            .collect()
    }

    /// The snapshot called `name`, if there is one.
    pub fn get(&self, name: &str) -> Result<Option<SnapshotDef>, String> {
        let path = self.files.path(name);
        let Some(text) = self
            .files
            .read(name)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?
        else {
            return Ok(None);
        };
        SnapshotDef::parse(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Stores `def` (atomically), replacing a snapshot of that name.
    pub fn save(&self, def: &SnapshotDef) -> Result<(), String> {
        self.files
            .write(&def.name, &def.to_xml(true))
            .map_err(|e| format!("cannot write {}: {e}", self.files.path(&def.name).display()))
    }

    /// Forgets the snapshot called `name`.
    pub fn remove(&self, name: &str) -> Result<(), String> {
        self.files
            .remove(name)
            .map_err(|e| format!("cannot remove {}: {e}", self.files.path(name).display()))
    }

    /// Forgets every snapshot, and the domain's directory.
    pub fn remove_all(&self) -> Result<(), String> {
        for def in self.list()? {
            self.remove(&def.name)?;
        }
        match std::fs::remove_dir(self.files.dir()) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(format!("cannot remove {}: {e}", self.files.dir().display())),
        }
    }

    /// Makes `name` the current snapshot (or none): the new current one is
    /// written first, so a crash leaves at worst two marked current, and
    /// [`Self::current`] then picks the newer.
    pub fn set_current(&self, name: Option<&str>) -> Result<(), String> {
        let all = self.list()?;
        if let Some(def) = all.iter().find(|d| Some(d.name.as_str()) == name) {
            if !def.current {
                self.save(&SnapshotDef {
                    current: true,
                    ..def.clone()
                })?;
            }
        }
        for def in all
            .iter()
            .filter(|d| d.current && Some(d.name.as_str()) != name)
        {
            self.save(&SnapshotDef {
                current: false,
                ..def.clone()
            })?;
        }
        Ok(())
    }

    /// The current snapshot, if any.
    pub fn current(&self) -> Result<Option<SnapshotDef>, String> {
        Ok(self
            .list()?
            .into_iter()
            .filter(|d| d.current)
            .max_by_key(|d| d.creation_time))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn def(name: &str, time: i64) -> SnapshotDef {
        SnapshotDef {
            name: name.into(),
            description: None,
            state: Some("shutoff".into()),
            parent: None,
            creation_time: Some(time),
            memory: Some("no".into()),
            disks: Vec::new(),
            domain: None,
            current: false,
        }
    }

    #[test]
    fn keeps_one_file_per_snapshot_and_one_current() {
        let dir = tempfile::tempdir().unwrap();
        let store = SnapshotStore::at(dir.path().join("vm"));
        assert!(store.list().unwrap().is_empty());
        store.save(&def("b", 2)).unwrap();
        store.save(&def("a", 1)).unwrap();
        assert!(dir.path().join("vm/a.xml").is_file());
        store.set_current(Some("a")).unwrap();
        store.set_current(Some("b")).unwrap();
        let names: Vec<_> = store.list().unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(store.current().unwrap().unwrap().name, "b");
        assert!(!store.get("a").unwrap().unwrap().current);
        store.remove_all().unwrap();
        assert!(!dir.path().join("vm").exists());
    }
}
