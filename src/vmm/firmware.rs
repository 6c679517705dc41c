//! Finding the firmware (SeaBIOS's `bios-256k.bin`).
//!
//! Searched in order: the domain's `<os><loader>`, `$VIREO_FIRMWARE_DIR`,
//! the Flatpak's `/app/share/vireo/firmware`, the install prefix's
//! `share/vireo/firmware` (beside the running binary's `bin/`, as
//! `make install` lays it out, or `VIREO_PREFIX` given at build time), and
//! Debian's `/usr/share/seabios`.

use std::path::{Path, PathBuf};

pub const BIOS_FILE: &str = "bios-256k.bin";

/// The BIOS is mapped to end at 4 GiB; SeaBIOS images are 128 or 256 KiB.
pub const MAX_BIOS_SIZE: usize = 16 << 20;

#[derive(Debug, thiserror::Error)]
pub enum FirmwareError {
    #[error(
        "no firmware found: looked for {BIOS_FILE} in {}. Install SeaBIOS (Debian/Ubuntu: `apt install seabios`) or set VIREO_FIRMWARE_DIR",
        .searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
    )]
    NotFound { searched: Vec<PathBuf> },
    #[error("cannot read firmware {path}: {source}")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("firmware {path} is {size} bytes; it must be a non-empty multiple of 64 KiB of at most 16 MiB")]
    BadSize { path: PathBuf, size: usize },
}

/// Directories searched for firmware when the domain names none.
pub fn search_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::var_os("VIREO_FIRMWARE_DIR") {
        dirs.push(PathBuf::from(dir));
    }
    dirs.push(PathBuf::from("/app/share/vireo/firmware"));
    if let Some(share) = crate::paths::installed_share_dir() {
        dirs.push(share.join("vireo/firmware"));
    }
    if let Some(prefix) = option_env!("VIREO_PREFIX") {
        dirs.push(Path::new(prefix).join("share/vireo/firmware"));
    }
    dirs.push(PathBuf::from("/usr/share/seabios"));
    // iPXE's boot ROMs (Debian ipxe-qemu).
    dirs.push(PathBuf::from("/usr/lib/ipxe/qemu"));
    dirs
}

/// Finds a file named `name` in the firmware directories.
pub fn find(name: &str) -> Result<PathBuf, Vec<PathBuf>> {
    let candidates: Vec<PathBuf> = search_dirs().into_iter().map(|d| d.join(name)).collect();
    candidates
        .iter()
        .find(|p| p.is_file())
        .cloned()
        .ok_or(candidates)
}

/// Loads the BIOS image: `loader` if given, else the first one found.
pub fn load_bios(loader: Option<&Path>) -> Result<(PathBuf, Vec<u8>), FirmwareError> {
    let path = match loader {
        Some(path) => path.to_path_buf(),
        None => find(BIOS_FILE).map_err(|searched| FirmwareError::NotFound { searched })?,
    };
    let bytes = std::fs::read(&path).map_err(|source| FirmwareError::Unreadable {
        path: path.clone(),
        source,
    })?;
    if bytes.is_empty() || bytes.len() % 0x1_0000 != 0 || bytes.len() > MAX_BIOS_SIZE {
        return Err(FirmwareError::BadSize {
            path,
            size: bytes.len(),
        });
    }
    Ok((path, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_loader_names_the_path() {
        let err = load_bios(Some(Path::new("/nonexistent/bios.bin"))).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/bios.bin"), "{err}");
    }

    #[test]
    fn odd_sized_firmware_is_refused() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), [0u8; 1000]).unwrap();
        assert!(matches!(
            load_bios(Some(file.path())),
            Err(FirmwareError::BadSize { size: 1000, .. })
        ));
    }

    #[test]
    fn not_found_lists_every_place_searched() {
        let err = FirmwareError::NotFound {
            searched: vec![
                PathBuf::from("/a/bios-256k.bin"),
                PathBuf::from("/b/bios-256k.bin"),
            ],
        };
        let text = err.to_string();
        assert!(
            text.contains("/a/bios-256k.bin, /b/bios-256k.bin"),
            "{text}"
        );
        assert!(text.contains("VIREO_FIRMWARE_DIR"));
    }
}
