//! Fuzz targets: one function per parser that a guest or a client
//! controls, each taking arbitrary bytes and building the device or reader
//! around them (a small guest RAM, an in-memory disk, a display). The AFL++
//! harness in `fuzz/` calls them by name, and `tests/fuzz_corpus.rs` runs
//! the stored corpus and every crash ever found through the same functions
//! in `make test`, so a fixed bug stays fixed.
//!
//! A target must return for every input, quickly and without keeping
//! memory: inputs are capped where the parser itself would not be (the
//! number of operations, frames rendered, bytes encoded).

mod devices;
mod ide;
pub mod input;
mod qcow2;
mod text;
mod virtio;
mod vnc;

use std::io;

use crate::storage::{check_range, BlockBackend};

/// A fuzz target: takes any input, returns normally.
pub type Target = fn(&[u8]);

/// Makes a target's seed inputs: small, meaningful inputs AFL++ starts from.
pub type Seeds = fn() -> Vec<Vec<u8>>;

/// Every target by name, with the function making its seed inputs.
pub const TARGETS: &[(&str, Target, Seeds)] = &[
    ("virtio_blk", virtio::virtio_blk, virtio::virtio_blk_seeds),
    ("virtio_net", virtio::virtio_net, virtio::virtio_net_seeds),
    ("ata", ide::ata, ide::ata_seeds),
    ("atapi", ide::atapi, ide::atapi_seeds),
    ("fw_cfg", devices::fw_cfg, devices::fw_cfg_seeds),
    ("vga", devices::vga, devices::vga_seeds),
    ("uhci", devices::uhci, devices::uhci_seeds),
    (
        "usb_control",
        devices::usb_control,
        devices::usb_control_seeds,
    ),
    ("vnc_client", vnc::vnc_client, vnc::vnc_client_seeds),
    ("qcow2", qcow2::qcow2, qcow2::qcow2_seeds),
    ("qmp", text::qmp, text::qmp_seeds),
    ("xml", text::xml, text::xml_seeds),
];

/// The target called `name`.
pub fn target(name: &str) -> Option<Target> {
    TARGETS.iter().find(|t| t.0 == name).map(|t| t.1)
}

/// A disk in memory: fuzzing must not touch files, and must be fast.
pub struct MemDisk {
    data: Vec<u8>,
    read_only: bool,
}

impl MemDisk {
    pub fn new(size: usize, read_only: bool) -> Self {
        // A pattern, so reads return something other than zeros.
        let data = (0..size).map(|i| (i ^ (i >> 9)) as u8).collect();
        Self { data, read_only }
    }
}

impl BlockBackend for MemDisk {
    fn size(&self) -> u64 {
        self.data.len() as u64
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        check_range(offset, buf.len(), self.size())?;
        let start = offset as usize;
        buf.copy_from_slice(&self.data[start..start + buf.len()]);
        Ok(())
    }

    fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
        if self.read_only {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "read-only"));
        }
        check_range(offset, buf.len(), self.size())?;
        let start = offset as usize;
        self.data[start..start + buf.len()].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    fn identity(&self) -> String {
        "fuzz".into()
    }
}
