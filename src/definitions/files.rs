//! The one way definitions live on disk, whatever their kind: a directory
//! of `NAME.xml` files, each replaced atomically ([`crate::fsutil::atomic_write`]:
//! temp file, fsync, rename, fsync of the directory), so a crash leaves the
//! old definition or the new one, never half of either.
//!
//! Each store ([`super::DomainStore`], [`super::PoolStore`],
//! [`super::NetworkStore`]) keeps its definitions in one of these and adds
//! what its kind needs (names and UUIDs unique, autostart, running state).

use std::io;
use std::path::{Path, PathBuf};

/// A directory of `NAME.xml` definitions.
#[derive(Debug, Clone)]
pub struct DefinitionFiles {
    dir: PathBuf,
}

impl DefinitionFiles {
    pub fn new(dir: PathBuf) -> Self {
        Self { dir }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where the definition called `name` is (whether or not it exists).
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.xml"))
    }

    /// The names of the `*.xml` files that are there, in no particular
    /// order; files whose name starts with a dot (temporary files of a
    /// write in progress) are not definitions. A directory that does not
    /// exist (yet) holds none.
    pub fn names(&self) -> io::Result<Vec<String>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        Ok(entries
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                let stem = name.strip_suffix(".xml")?;
                (!stem.is_empty() && !stem.starts_with('.') && e.path().is_file())
                    .then(|| stem.to_string())
            })
            .collect())
    }

    /// The text of definition `name`, or `None` if there is none.
    pub fn read(&self, name: &str) -> io::Result<Option<String>> {
        match std::fs::read_to_string(self.path(name)) {
            Ok(text) => Ok(Some(text)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Stores `text` as definition `name`, atomically, creating the
    /// directory if needed.
    pub fn write(&self, name: &str, text: &str) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        crate::fsutil::atomic_write(&self.path(name), text.as_bytes())
    }

    /// Removes definition `name`.
    pub fn remove(&self, name: &str) -> io::Result<()> {
        std::fs::remove_file(self.path(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_reads_writes_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let files = DefinitionFiles::new(dir.path().join("kind"));
        assert_eq!(files.names().unwrap(), Vec::<String>::new());
        assert_eq!(files.read("a").unwrap(), None);
        files.write("a", "<a/>").unwrap();
        files.write("b", "<b/>").unwrap();
        std::fs::write(dir.path().join("kind/.c.xml.tmp1"), "").unwrap();
        std::fs::write(dir.path().join("kind/.lock"), "").unwrap();
        std::fs::create_dir(dir.path().join("kind/autostart")).unwrap();
        let mut names = files.names().unwrap();
        names.sort();
        assert_eq!(names, ["a", "b"]);
        assert_eq!(files.read("a").unwrap().as_deref(), Some("<a/>"));
        files.write("a", "<a2/>").unwrap();
        assert_eq!(files.read("a").unwrap().as_deref(), Some("<a2/>"));
        files.remove("a").unwrap();
        assert_eq!(files.read("a").unwrap(), None);
        assert!(files.remove("a").is_err());
    }
}
