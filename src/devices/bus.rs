//! An address bus: an ordered map of non-overlapping ranges to devices.
//!
//! The VMM has two of them, one for port I/O and one for MMIO. A vCPU exit is
//! routed to the device whose range holds the first byte of the access; the
//! device sees the offset from the start of its range.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, RwLock};

/// A device reachable through a [`Bus`].
///
/// Both methods have defaults for write-only and read-only devices: reads of
/// nothing return all ones, as an undriven ISA or PCI bus does.
pub trait BusDevice: Send {
    /// Reads `data.len()` bytes at `offset` from the start of the device's range.
    fn read(&mut self, offset: u64, data: &mut [u8]) {
        let _ = offset;
        data.fill(0xff);
    }

    /// Writes `data` at `offset` from the start of the device's range.
    fn write(&mut self, offset: u64, data: &[u8]) {
        let _ = (offset, data);
    }
}

/// A device shared between the bus and whoever else drives it (the VMM's
/// control thread, a worker).
pub type SharedDevice = Arc<Mutex<dyn BusDevice>>;

/// Errors from building a bus.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BusError {
    /// The new range overlaps one already on the bus.
    #[error("bus range {base:#x}+{len:#x} overlaps an existing device at {other_base:#x}+{other_len:#x}")]
    Overlap {
        base: u64,
        len: u64,
        other_base: u64,
        other_len: u64,
    },
    /// A range of zero length, or one that wraps past the end of the address space.
    #[error("invalid bus range {base:#x}+{len:#x}")]
    InvalidRange { base: u64, len: u64 },
}

#[derive(Clone)]
struct Entry {
    len: u64,
    device: SharedDevice,
}

/// An ordered map of address ranges to devices.
#[derive(Default)]
pub struct Bus {
    // Keyed by base address; ranges never overlap.
    entries: RwLock<BTreeMap<u64, Entry>>,
}

impl Bus {
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts `device` at `[base, base + len)`.
    pub fn insert(&self, device: SharedDevice, base: u64, len: u64) -> Result<(), BusError> {
        let end = base
            .checked_add(len)
            .filter(|_| len > 0)
            .ok_or(BusError::InvalidRange { base, len })?;
        let mut entries = self.entries.write().expect("bus lock poisoned");
        // The only candidates for an overlap are the last range starting
        // below `end`; since ranges are disjoint, checking it suffices.
        if let Some((&other_base, other)) = entries.range(..end).next_back() {
            if other_base + other.len > base {
                return Err(BusError::Overlap {
                    base,
                    len,
                    other_base,
                    other_len: other.len,
                });
            }
        }
        entries.insert(base, Entry { len, device });
        Ok(())
    }

    /// Removes the device whose range starts at `base`; returns whether there was one.
    pub fn remove(&self, base: u64) -> bool {
        self.entries
            .write()
            .expect("bus lock poisoned")
            .remove(&base)
            .is_some()
    }

    /// The device whose range holds `addr`, with `addr`'s offset into it.
    pub fn resolve(&self, addr: u64) -> Option<(SharedDevice, u64)> {
        let entries = self.entries.read().expect("bus lock poisoned");
        let (&base, entry) = entries.range(..=addr).next_back()?;
        (addr - base < entry.len).then(|| (entry.device.clone(), addr - base))
    }

    /// Reads from the device at `addr`; returns `false` (and leaves `data`
    /// alone) when nothing is there.
    pub fn read(&self, addr: u64, data: &mut [u8]) -> bool {
        match self.resolve(addr) {
            Some((device, offset)) => {
                device
                    .lock()
                    .expect("device lock poisoned")
                    .read(offset, data);
                true
            }
            None => false,
        }
    }

    /// Writes to the device at `addr`; returns `false` when nothing is there.
    pub fn write(&self, addr: u64, data: &[u8]) -> bool {
        match self.resolve(addr) {
            Some((device, offset)) => {
                device
                    .lock()
                    .expect("device lock poisoned")
                    .write(offset, data);
                true
            }
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Remembers the last access and answers reads with its offset.
    #[derive(Default)]
    struct Probe {
        last_write: Option<(u64, Vec<u8>)>,
    }

    impl BusDevice for Probe {
        fn read(&mut self, offset: u64, data: &mut [u8]) {
            data.fill(offset as u8);
        }
        fn write(&mut self, offset: u64, data: &[u8]) {
            self.last_write = Some((offset, data.to_vec()));
        }
    }

    fn probe() -> Arc<Mutex<Probe>> {
        Arc::new(Mutex::new(Probe::default()))
    }

    #[test]
    fn overlap_cases() {
        let bus = Bus::new();
        bus.insert(probe(), 0x100, 0x10).unwrap();
        // (base, len, accepted?)
        let cases = [
            (0x100, 0x10, false), // identical
            (0x0f8, 0x10, false), // overlaps the start
            (0x108, 0x10, false), // overlaps the end
            (0x104, 0x04, false), // inside
            (0x0f0, 0x40, false), // encloses
            (0x0f0, 0x10, true),  // ends exactly at the start
            (0x110, 0x10, true),  // starts exactly at the end
        ];
        for (base, len, ok) in cases {
            let fresh = Bus::new();
            fresh.insert(probe(), 0x100, 0x10).unwrap();
            assert_eq!(
                fresh.insert(probe(), base, len).is_ok(),
                ok,
                "range {base:#x}+{len:#x}"
            );
        }
        assert_eq!(
            bus.insert(probe(), 0, 0),
            Err(BusError::InvalidRange { base: 0, len: 0 })
        );
        assert!(bus.insert(probe(), u64::MAX, 2).is_err());
    }

    #[test]
    fn routes_by_offset_and_reports_holes() {
        let bus = Bus::new();
        let a = probe();
        bus.insert(a.clone(), 0x3f8, 8).unwrap();
        let mut byte = [0u8; 1];
        assert!(bus.read(0x3fd, &mut byte));
        assert_eq!(byte, [5]);
        assert!(bus.write(0x3f8, &[0x41]));
        assert_eq!(a.lock().unwrap().last_write, Some((0, vec![0x41])));
        assert!(!bus.read(0x400, &mut byte));
        assert!(!bus.read(0x3f7, &mut byte));
        assert!(bus.remove(0x3f8));
        assert!(!bus.read(0x3f8, &mut byte));
    }

    #[test]
    fn default_read_is_all_ones() {
        struct Silent;
        impl BusDevice for Silent {}
        let bus = Bus::new();
        bus.insert(Arc::new(Mutex::new(Silent)), 0x80, 1).unwrap();
        let mut data = [0u8; 2];
        bus.read(0x80, &mut data);
        assert_eq!(data, [0xff, 0xff]);
    }
}
