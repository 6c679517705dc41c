//! The demo VM that ships with Vireo: a guest assembled at build time
//! from `guests/demo.rs` that draws a splash and echoes what is typed, on
//! a 1 MiB raw disk in the default pool, booted
//! through SeaBIOS like any other disk. The window's empty state and
//! `make run` define and start it as "Demo".

use std::path::{Path, PathBuf};

use crate::definitions::DomainStore;
use crate::domain::{Disk, NewVm};

/// The demo guest: the disk's first sectors.
pub const DEMO_IMAGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/demo-image.bin"));
const DEMO_DISK_SIZE: u64 = 1 << 20;
/// The demo VM's name in the store.
pub const DEMO_NAME: &str = "Demo";
/// Enough for SeaBIOS and the demo; small enough for any host.
pub const DEMO_MEMORY_MIB: u64 = 32;

/// Writes the demo disk into `dir` (replacing an outdated one) and returns its path.
pub fn write_demo_disk(dir: &Path) -> std::io::Result<PathBuf> {
    std::fs::create_dir_all(dir)?;
    let path = dir.join("demo.img");
    let mut disk = DEMO_IMAGE.to_vec();
    disk.resize(DEMO_DISK_SIZE as usize, 0);
    let tmp = dir.join(".demo.img.tmp");
    std::fs::write(&tmp, &disk)?;
    std::fs::rename(&tmp, &path)?;
    Ok(path)
}

/// Defines the demo VM unless it exists, and (re)writes its disk unless
/// it is running. Returns its name.
pub fn ensure_demo() -> Result<String, String> {
    let store = DomainStore::open();
    let running = crate::vm_process::RunFiles::new(DEMO_NAME)
        .running()
        .is_some();
    if running {
        return Ok(DEMO_NAME.to_string());
    }
    let disk = write_demo_disk(&crate::paths::images_dir())
        .map_err(|e| format!("cannot write the demo disk: {e}"))?;
    if store.find(DEMO_NAME).is_ok() {
        return Ok(DEMO_NAME.to_string());
    }
    let mut domain = NewVm::new(DEMO_NAME)
        .memory_mib(DEMO_MEMORY_MIB)
        .build()
        .map_err(|e| format!("cannot make the demo VM: {e}"))?;
    domain.set_title(Some("Vireo demo"));
    domain.set_description(Some(
        "A tiny guest that ships with Vireo: it shows a splash and echoes what you type.",
    ));
    // The demo's boot sector uses the BIOS disk services: an IDE disk is
    // what every BIOS path knows.
    domain.add_device(&Disk::file("disk", &disk.to_string_lossy(), "hda", "ide"));
    store
        .define(&domain.to_xml())
        .map_err(|e| format!("cannot define the demo VM: {e}"))?;
    Ok(DEMO_NAME.to_string())
}
