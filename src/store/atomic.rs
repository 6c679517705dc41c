//! Atomic replacement of a stored definition (see [`crate::fsutil`]).

use std::path::Path;

use super::StoreError;

pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<(), StoreError> {
    crate::fsutil::atomic_write(path, bytes).map_err(StoreError::io("cannot write", path))
}
