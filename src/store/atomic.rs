//! Atomic file replacement: write a temp file in the same directory,
//! fsync it, rename it over the target, fsync the directory.

use std::fs::File;
use std::io::Write;
use std::path::Path;

use super::StoreError;

pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp).map_err(StoreError::io("cannot create", &tmp))?;
        file.write_all(bytes)
            .map_err(StoreError::io("cannot write", &tmp))?;
        file.sync_all()
            .map_err(StoreError::io("cannot sync", &tmp))?;
        std::fs::rename(&tmp, path).map_err(StoreError::io("cannot replace", path))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(StoreError::io("cannot sync", dir))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
