//! The driver's half of a split virtqueue (VIRTIO 1.2 §2.7), written into
//! guest memory the way Linux's `virtio_ring.c` writes it: descriptors
//! from a free list, optionally one ring descriptor pointing at an
//! indirect table (§2.7.5.3), available entries published with a release
//! store of `avail->idx` after the entries themselves, and used entries
//! read after an acquire load of `used->idx`. The device runs on another
//! thread, so those orderings are what keep the two sides honest, exactly
//! as between a guest vCPU and a device thread.

use std::sync::atomic::Ordering;

use vm_memory::{Bytes, GuestAddress};

use super::HarnessError;
use crate::devices::GuestRam;

/// Descriptor flags (§2.7.5).
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;

const DESC_LEN: u64 = 16;

/// One buffer of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buffer {
    /// Guest physical address.
    pub addr: u64,
    pub len: u32,
    /// The device writes it (VIRTQ_DESC_F_WRITE).
    pub device_writes: bool,
}

/// A split ring of `size` entries at fixed guest addresses.
pub struct DriverRing {
    size: u16,
    desc: u64,
    avail: u64,
    used: u64,
    /// The available index as the driver has written entries so far;
    /// the device sees it only after [`DriverRing::publish`].
    avail_idx: u16,
    /// The next used entry to read.
    last_used: u16,
    free: Vec<u16>,
    /// The ring descriptors each outstanding head holds (index = head).
    chains: Vec<Vec<u16>>,
}

impl DriverRing {
    /// Bytes the ring needs at its base: the descriptor table, then the
    /// available ring, then the used ring, each on its own 4 KiB page
    /// boundary (more alignment than §2.7 asks, as Linux's legacy layout).
    pub fn footprint(size: u16) -> u64 {
        let page = |n: u64| n.div_ceil(4096) * 4096;
        page(DESC_LEN * size as u64) + page(6 + 2 * size as u64) + page(6 + 8 * size as u64)
    }

    /// A ring of `size` (a power of two) at `base`, zeroed.
    pub fn new(mem: &GuestRam, size: u16, base: u64) -> Result<Self, HarnessError> {
        if !size.is_power_of_two() {
            return Err(HarnessError::Request(format!(
                "queue size {size} is not a power of two"
            )));
        }
        let page = |n: u64| n.div_ceil(4096) * 4096;
        let desc = base;
        let avail = desc + page(DESC_LEN * size as u64);
        let used = avail + page(6 + 2 * size as u64);
        mem.write_slice(
            &vec![0u8; Self::footprint(size) as usize],
            GuestAddress(base),
        )
        .map_err(|e| HarnessError::Memory(format!("ring at {base:#x}: {e}")))?;
        Ok(Self {
            size,
            desc,
            avail,
            used,
            avail_idx: 0,
            last_used: 0,
            // Popped from the end: hand out 0, 1, 2... first, as Linux does.
            free: (0..size).rev().collect(),
            chains: vec![Vec::new(); size as usize],
        })
    }

    pub fn size(&self) -> u16 {
        self.size
    }

    /// Guest addresses of the descriptor table, driver and device areas.
    pub fn addresses(&self) -> (u64, u64, u64) {
        (self.desc, self.avail, self.used)
    }

    pub fn free_descriptors(&self) -> usize {
        self.free.len()
    }

    /// Writes descriptor `index` as given, whatever it says: for tests that
    /// build hostile chains.
    pub fn write_desc(
        &self,
        mem: &GuestRam,
        index: u16,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> Result<(), HarnessError> {
        Self::write_desc_at(
            mem,
            self.desc + DESC_LEN * index as u64,
            addr,
            len,
            flags,
            next,
        )
    }

    fn write_desc_at(
        mem: &GuestRam,
        at: u64,
        addr: u64,
        len: u32,
        flags: u16,
        next: u16,
    ) -> Result<(), HarnessError> {
        let mut raw = [0u8; DESC_LEN as usize];
        raw[0..8].copy_from_slice(&addr.to_le_bytes());
        raw[8..12].copy_from_slice(&len.to_le_bytes());
        raw[12..14].copy_from_slice(&flags.to_le_bytes());
        raw[14..16].copy_from_slice(&next.to_le_bytes());
        mem.write_slice(&raw, GuestAddress(at))
            .map_err(|e| HarnessError::Memory(format!("descriptor at {at:#x}: {e}")))
    }

    /// Takes `count` ring descriptors off the free list as one chain; the
    /// first is its head, which [`DriverRing::pop_used`] frees them by.
    pub fn claim(&mut self, count: usize) -> Option<Vec<u16>> {
        if count == 0 || count > self.free.len() {
            return None;
        }
        let indices: Vec<u16> = (0..count).filter_map(|_| self.free.pop()).collect();
        self.chains[indices[0] as usize] = indices.clone();
        Some(indices)
    }

    /// Writes `buffers` as a chain of ring descriptors; returns its head,
    /// or `None` if the ring has too few free descriptors.
    pub fn add_direct(
        &mut self,
        mem: &GuestRam,
        buffers: &[Buffer],
    ) -> Result<Option<u16>, HarnessError> {
        let Some(indices) = self.claim(buffers.len()) else {
            return Ok(None);
        };
        for (i, (buffer, &index)) in buffers.iter().zip(&indices).enumerate() {
            let next = indices.get(i + 1).copied();
            let flags = if buffer.device_writes {
                VIRTQ_DESC_F_WRITE
            } else {
                0
            } | if next.is_some() { VIRTQ_DESC_F_NEXT } else { 0 };
            self.write_desc(
                mem,
                index,
                buffer.addr,
                buffer.len,
                flags,
                next.unwrap_or(0),
            )?;
        }
        Ok(Some(indices[0]))
    }

    /// Writes `buffers` into an indirect table at `table` (16 bytes each,
    /// linked by `next` in order, as Linux builds them) and one ring
    /// descriptor pointing at it; returns that descriptor's index.
    pub fn add_indirect(
        &mut self,
        mem: &GuestRam,
        table: u64,
        buffers: &[Buffer],
    ) -> Result<Option<u16>, HarnessError> {
        let Some(indices) = self.claim(1) else {
            return Ok(None);
        };
        for (i, buffer) in buffers.iter().enumerate() {
            let last = i + 1 == buffers.len();
            let flags = if buffer.device_writes {
                VIRTQ_DESC_F_WRITE
            } else {
                0
            } | if last { 0 } else { VIRTQ_DESC_F_NEXT };
            let next = if last { 0 } else { i as u16 + 1 };
            Self::write_desc_at(
                mem,
                table + DESC_LEN * i as u64,
                buffer.addr,
                buffer.len,
                flags,
                next,
            )?;
        }
        let head = indices[0];
        self.write_desc(
            mem,
            head,
            table,
            (DESC_LEN * buffers.len() as u64) as u32,
            VIRTQ_DESC_F_INDIRECT,
            0,
        )?;
        Ok(Some(head))
    }

    /// Puts `head` in the next available slot; the device does not see it
    /// until [`DriverRing::publish`].
    pub fn push_available(&mut self, mem: &GuestRam, head: u16) -> Result<(), HarnessError> {
        let slot = self.avail + 4 + 2 * (self.avail_idx % self.size) as u64;
        mem.write_obj(head, GuestAddress(slot))
            .map_err(|e| HarnessError::Memory(format!("available ring: {e}")))?;
        self.avail_idx = self.avail_idx.wrapping_add(1);
        Ok(())
    }

    /// Publishes every pushed entry: a release store of `avail->idx`, so the
    /// device, which loads it with acquire, sees the entries and the
    /// descriptors behind them (Linux's `virtio_wmb` then the index write).
    pub fn publish(&self, mem: &GuestRam) -> Result<(), HarnessError> {
        mem.store(
            self.avail_idx,
            GuestAddress(self.avail + 2),
            Ordering::Release,
        )
        .map_err(|e| HarnessError::Memory(format!("available index: {e}")))
    }

    /// Sets `avail->idx` to any value: for tests of a broken ring.
    pub fn force_avail_idx(&self, mem: &GuestRam, idx: u16) -> Result<(), HarnessError> {
        mem.store(idx, GuestAddress(self.avail + 2), Ordering::Release)
            .map_err(|e| HarnessError::Memory(format!("available index: {e}")))
    }

    pub fn avail_idx(&self) -> u16 {
        self.avail_idx
    }

    /// The device's `used->idx`.
    pub fn used_idx(&self, mem: &GuestRam) -> Result<u16, HarnessError> {
        mem.load(GuestAddress(self.used + 2), Ordering::Acquire)
            .map_err(|e| HarnessError::Memory(format!("used index: {e}")))
    }

    /// The next used entry, `(id, len)`, if the device has returned one;
    /// frees the descriptors of its chain. An id that is not an
    /// outstanding head is still returned (a hostile test's chain), and
    /// frees nothing.
    pub fn pop_used(&mut self, mem: &GuestRam) -> Result<Option<(u32, u32)>, HarnessError> {
        if self.used_idx(mem)? == self.last_used {
            return Ok(None);
        }
        let at = self.used + 4 + 8 * (self.last_used % self.size) as u64;
        let read = |addr: u64| -> Result<u32, HarnessError> {
            mem.read_obj(GuestAddress(addr))
                .map_err(|e| HarnessError::Memory(format!("used ring: {e}")))
        };
        let (id, len) = (read(at)?, read(at + 4)?);
        self.last_used = self.last_used.wrapping_add(1);
        if let Some(chain) = self.chains.get_mut(id as usize) {
            self.free.extend(chain.drain(..).rev());
        }
        Ok(Some((id, len)))
    }

    /// A one-line picture of the indices, for timeout messages.
    pub fn describe(&self, mem: &GuestRam) -> String {
        format!(
            "avail idx {} (published {:?}), used idx {:?}, driver has read {}, {} descriptors free",
            self.avail_idx,
            mem.load::<u16>(GuestAddress(self.avail + 2), Ordering::Acquire)
                .ok(),
            self.used_idx(mem).ok(),
            self.last_used,
            self.free.len()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ram() -> GuestRam {
        GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }

    #[test]
    fn chains_are_written_as_linux_writes_them_and_freed_on_use() {
        let mem = ram();
        let mut ring = DriverRing::new(&mem, 8, 0x10000).unwrap();
        let buffers = [
            Buffer {
                addr: 0x4000,
                len: 16,
                device_writes: false,
            },
            Buffer {
                addr: 0x5000,
                len: 1,
                device_writes: true,
            },
        ];
        let head = ring.add_direct(&mem, &buffers).unwrap().unwrap();
        assert_eq!(head, 0);
        assert_eq!(ring.free_descriptors(), 6);
        let desc: [u8; 32] = mem.read_obj(GuestAddress(0x10000)).unwrap();
        assert_eq!(&desc[12..16], &[1, 0, 1, 0], "NEXT to 1");
        assert_eq!(&desc[28..32], &[2, 0, 0, 0], "WRITE, last");
        let indirect = ring.add_indirect(&mem, 0x6000, &buffers).unwrap().unwrap();
        assert_eq!(indirect, 2);
        let ring_desc: [u8; 16] = mem.read_obj(GuestAddress(0x10000 + 32)).unwrap();
        assert_eq!(u32::from_le_bytes(ring_desc[8..12].try_into().unwrap()), 32);
        assert_eq!(&ring_desc[12..14], &[4, 0], "INDIRECT");
        ring.push_available(&mem, head).unwrap();
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0x11002)).unwrap(), 0);
        ring.publish(&mem).unwrap();
        assert_eq!(mem.read_obj::<u16>(GuestAddress(0x11002)).unwrap(), 1);
        // The device returns head 0.
        mem.write_obj(0u32, GuestAddress(0x12004)).unwrap();
        mem.write_obj(1u32, GuestAddress(0x12008)).unwrap();
        mem.write_obj(1u16, GuestAddress(0x12002)).unwrap();
        assert_eq!(ring.pop_used(&mem).unwrap(), Some((0, 1)));
        assert_eq!(ring.pop_used(&mem).unwrap(), None);
        assert_eq!(ring.free_descriptors(), 7);
        assert!(ring.claim(8).is_none());
    }
}
