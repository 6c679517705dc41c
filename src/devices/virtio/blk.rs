//! virtio-blk (VIRTIO 1.2 §5.2): a disk behind one request queue.
//!
//! Requests are a 16-byte header (`type`, `reserved`, `sector`), data, and a
//! status byte in the last device-writable byte; the device reads them as
//! streams, whatever the driver's descriptor layout (§2.7.4). Implemented:
//! IN, OUT, FLUSH, GET_ID (20-byte serial), DISCARD and WRITE_ZEROES, with
//! features SIZE_MAX, SEG_MAX, BLK_SIZE, FLUSH (unless the backend writes
//! through), RO (read-only backends), and DISCARD/WRITE_ZEROES (writable
//! backends). Capacity is the backend size in 512-byte sectors, rounded
//! down.
//!
//! A FLUSH completes once the backend has made every completed write
//! durable (qcow2 metadata written, then `fdatasync`); a DISCARD is the
//! backend's discard (holes in raw files, freed qcow2 clusters, nothing
//! under `discard='ignore'`: see [`crate::storage::WithPolicy`]); a
//! WRITE_ZEROES with the UNMAP flag may free the space too, one without it
//! keeps the space allocated. The discard alignment offered is the
//! backend's granularity (a qcow2 cluster).
//!
//! Not emulated: multiple queues (`F_MQ`), geometry and topology, a
//! switchable write cache (`F_CONFIG_WCE`), secure erase, zoned devices,
//! and resizing. Requests run on the device's worker thread, one at a time
//! (see [`super::notify`]).
//!
//! A guest's bad request gets IOERR (or UNSUPP for unknown types) and a
//! warning, never a backend access outside the disk.

use std::io;
use std::sync::Arc;

use virtio_queue::Queue;

use super::{Chain, VirtQueue, VirtioDevice, VirtioError, VirtioInterrupt, VIRTIO_ID_BLOCK};
use crate::devices::GuestRam;
use crate::guest_warn;
use crate::storage::BlockBackend;

/// Feature bits (§5.2.3).
pub const VIRTIO_BLK_F_SIZE_MAX: u32 = 1;
pub const VIRTIO_BLK_F_SEG_MAX: u32 = 2;
pub const VIRTIO_BLK_F_RO: u32 = 5;
pub const VIRTIO_BLK_F_BLK_SIZE: u32 = 6;
pub const VIRTIO_BLK_F_FLUSH: u32 = 9;
pub const VIRTIO_BLK_F_DISCARD: u32 = 13;
pub const VIRTIO_BLK_F_WRITE_ZEROES: u32 = 14;

/// Request types (§5.2.6).
pub const VIRTIO_BLK_T_IN: u32 = 0;
pub const VIRTIO_BLK_T_OUT: u32 = 1;
pub const VIRTIO_BLK_T_FLUSH: u32 = 4;
pub const VIRTIO_BLK_T_GET_ID: u32 = 8;
pub const VIRTIO_BLK_T_DISCARD: u32 = 11;
pub const VIRTIO_BLK_T_WRITE_ZEROES: u32 = 13;

/// Request status (§5.2.6).
pub const VIRTIO_BLK_S_OK: u8 = 0;
pub const VIRTIO_BLK_S_IOERR: u8 = 1;
pub const VIRTIO_BLK_S_UNSUPP: u8 = 2;

/// `flags` bit of a write-zeroes segment: the device may unmap.
const VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP: u32 = 1;

/// Length of the serial number GET_ID returns.
pub const VIRTIO_BLK_ID_BYTES: usize = 20;

pub const SECTOR_SIZE: u64 = 512;
const HEADER_LEN: u64 = 16;
/// `struct virtio_blk_discard_write_zeroes`.
const SEGMENT_LEN: u64 = 16;

const QUEUE_SIZE: u16 = 256;
/// Data descriptors per request: the queue minus header and status.
const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Largest data descriptor the driver may use.
const SIZE_MAX: u32 = 1 << 20;
const MAX_DISCARD_SECTORS: u32 = 1 << 22;
const MAX_DISCARD_SEG: u32 = 32;
/// Write-zeroes is a hole, a zeroed range or zero clusters, not written
/// zeroes (but where the backend can do none of those, 512 MiB at most).
const MAX_WRITE_ZEROES_SECTORS: u32 = 1 << 20;
const MAX_WRITE_ZEROES_SEG: u32 = 1;

/// Data moves between guest memory and the backend through a bounce
/// buffer of at most this many bytes, whatever the request size.
const CHUNK: usize = 64 * 1024;

/// Offsets in `struct virtio_blk_config` (§5.2.4).
const CONFIG_CAPACITY: usize = 0x00;
const CONFIG_SIZE_MAX: usize = 0x08;
const CONFIG_SEG_MAX: usize = 0x0c;
const CONFIG_BLK_SIZE: usize = 0x14;
const CONFIG_NUM_QUEUES: usize = 0x22;
const CONFIG_MAX_DISCARD_SECTORS: usize = 0x24;
const CONFIG_MAX_DISCARD_SEG: usize = 0x28;
const CONFIG_DISCARD_SECTOR_ALIGNMENT: usize = 0x2c;
const CONFIG_MAX_WRITE_ZEROES_SECTORS: usize = 0x30;
const CONFIG_MAX_WRITE_ZEROES_SEG: usize = 0x34;
const CONFIG_LEN: usize = 0x3c;

/// The disk itself: what a request can touch.
struct Disk {
    backend: Box<dyn BlockBackend>,
    serial: [u8; VIRTIO_BLK_ID_BYTES],
    /// Bytes a request may reach: whole sectors only.
    capacity_bytes: u64,
    read_only: bool,
    acked_features: u64,
}

/// What a request did: its status and how many data bytes it wrote to the
/// driver's buffers.
struct Outcome {
    status: u8,
    written: u64,
}

impl Outcome {
    const fn status(status: u8) -> Self {
        Self { status, written: 0 }
    }
}

const IOERR: Outcome = Outcome::status(VIRTIO_BLK_S_IOERR);
const UNSUPP: Outcome = Outcome::status(VIRTIO_BLK_S_UNSUPP);
const OK: Outcome = Outcome::status(VIRTIO_BLK_S_OK);

fn host_error(what: &str, error: io::Error) -> Outcome {
    tracing::warn!(%error, "virtio-blk {what} failed");
    IOERR
}

impl Disk {
    fn negotiated(&self, feature: u32) -> bool {
        self.acked_features & (1 << feature) != 0
    }

    /// Handles one request; returns the used length (data written plus the
    /// status byte).
    fn handle(&mut self, mem: &GuestRam, chain: &Chain) -> u32 {
        let writable = chain.writable_len();
        if writable == 0 {
            guest_warn!(
                head = chain.head(),
                "virtio-blk request has no writable status byte"
            );
            return 0;
        }
        let status_at = writable - 1;
        let outcome = self.execute(mem, chain, status_at);
        if let Err(error) = chain.write_at(mem, status_at, &[outcome.status]) {
            guest_warn!(%error, "virtio-blk status byte cannot be written");
            return 0;
        }
        // The chain is at most 4 GiB (virtio-queue enforces it), so this fits.
        u32::try_from(outcome.written + 1).unwrap_or(u32::MAX)
    }

    /// `data_in` is how many writable bytes precede the status byte.
    fn execute(&mut self, mem: &GuestRam, chain: &Chain, data_in: u64) -> Outcome {
        let mut header = [0u8; HEADER_LEN as usize];
        if chain.read_at(mem, 0, &mut header).is_err() {
            guest_warn!(
                readable = chain.readable_len(),
                "virtio-blk request header is missing or device-writable"
            );
            return IOERR;
        }
        let request = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let mut sector_bytes = [0u8; 8];
        sector_bytes.copy_from_slice(&header[8..16]);
        let sector = u64::from_le_bytes(sector_bytes);
        let data_out = chain.readable_len() - HEADER_LEN;
        match request {
            VIRTIO_BLK_T_IN => self.read(mem, chain, sector, data_in),
            VIRTIO_BLK_T_OUT => self.write(mem, chain, sector, data_out),
            VIRTIO_BLK_T_FLUSH => match self.backend.flush() {
                Ok(()) => OK,
                Err(error) => host_error("flush", error),
            },
            VIRTIO_BLK_T_GET_ID => {
                let n = data_in.min(VIRTIO_BLK_ID_BYTES as u64) as usize;
                match chain.write_at(mem, 0, &self.serial[..n]) {
                    Ok(()) => Outcome {
                        status: VIRTIO_BLK_S_OK,
                        written: n as u64,
                    },
                    Err(_) => IOERR,
                }
            }
            VIRTIO_BLK_T_DISCARD if self.negotiated(VIRTIO_BLK_F_DISCARD) => {
                self.discard_or_zeroes(mem, chain, data_out, false)
            }
            VIRTIO_BLK_T_WRITE_ZEROES if self.negotiated(VIRTIO_BLK_F_WRITE_ZEROES) => {
                self.discard_or_zeroes(mem, chain, data_out, true)
            }
            other => {
                // Drivers probe with types they are not sure of; not an error.
                tracing::debug!(request = other, "unsupported virtio-blk request");
                UNSUPP
            }
        }
    }

    /// Byte offset of `[sector, sector + len)` if the disk holds it all.
    fn byte_range(&self, sector: u64, len: u64) -> Option<u64> {
        let offset = sector.checked_mul(SECTOR_SIZE)?;
        let end = offset.checked_add(len)?;
        (end <= self.capacity_bytes).then_some(offset)
    }

    fn checked_range(&self, what: &str, sector: u64, len: u64) -> Option<u64> {
        if len % SECTOR_SIZE != 0 {
            guest_warn!(
                what,
                sector,
                len,
                "virtio-blk transfer is not whole sectors"
            );
            return None;
        }
        let offset = self.byte_range(sector, len);
        if offset.is_none() {
            guest_warn!(
                what,
                sector,
                len,
                capacity = self.capacity_bytes,
                "virtio-blk request beyond the end of the disk"
            );
        }
        offset
    }

    fn read(&mut self, mem: &GuestRam, chain: &Chain, sector: u64, len: u64) -> Outcome {
        let Some(offset) = self.checked_range("read", sector, len) else {
            return IOERR;
        };
        let mut buf = vec![0u8; (len as usize).min(CHUNK)];
        let mut done = 0;
        while done < len {
            let n = ((len - done) as usize).min(CHUNK);
            if let Err(error) = self.backend.read_at(&mut buf[..n], offset + done) {
                return Outcome {
                    written: done,
                    ..host_error("read", error)
                };
            }
            if chain.write_at(mem, done, &buf[..n]).is_err() {
                return Outcome {
                    status: VIRTIO_BLK_S_IOERR,
                    written: done,
                };
            }
            done += n as u64;
        }
        Outcome {
            status: VIRTIO_BLK_S_OK,
            written: len,
        }
    }

    fn write(&mut self, mem: &GuestRam, chain: &Chain, sector: u64, len: u64) -> Outcome {
        if self.read_only {
            guest_warn!(sector, "virtio-blk write to a read-only disk");
            return IOERR;
        }
        let Some(offset) = self.checked_range("write", sector, len) else {
            return IOERR;
        };
        let mut buf = vec![0u8; (len as usize).min(CHUNK)];
        let mut done = 0;
        while done < len {
            let n = ((len - done) as usize).min(CHUNK);
            if chain
                .read_at(mem, HEADER_LEN + done, &mut buf[..n])
                .is_err()
            {
                return IOERR;
            }
            if let Err(error) = self.backend.write_at(&buf[..n], offset + done) {
                return host_error("write", error);
            }
            done += n as u64;
        }
        OK
    }

    /// DISCARD and WRITE_ZEROES: a list of `(sector, num_sectors, flags)`
    /// segments after the header (§5.2.6).
    fn discard_or_zeroes(
        &mut self,
        mem: &GuestRam,
        chain: &Chain,
        data_out: u64,
        zeroes: bool,
    ) -> Outcome {
        let (max_segments, max_sectors) = if zeroes {
            (MAX_WRITE_ZEROES_SEG, MAX_WRITE_ZEROES_SECTORS)
        } else {
            (MAX_DISCARD_SEG, MAX_DISCARD_SECTORS)
        };
        if self.read_only {
            guest_warn!(
                zeroes,
                "virtio-blk discard or write-zeroes on a read-only disk"
            );
            return IOERR;
        }
        let count = data_out / SEGMENT_LEN;
        if data_out % SEGMENT_LEN != 0 || count == 0 || count > max_segments as u64 {
            guest_warn!(
                data_out,
                zeroes,
                "virtio-blk discard or write-zeroes has a bad segment list"
            );
            return IOERR;
        }
        // Check every segment before touching the disk.
        let mut ranges = Vec::with_capacity(count as usize);
        for i in 0..count {
            let mut raw = [0u8; SEGMENT_LEN as usize];
            if chain
                .read_at(mem, HEADER_LEN + i * SEGMENT_LEN, &mut raw)
                .is_err()
            {
                return IOERR;
            }
            let sector = u64::from_le_bytes(raw[0..8].try_into().unwrap_or_default());
            let sectors = u32::from_le_bytes(raw[8..12].try_into().unwrap_or_default());
            let flags = u32::from_le_bytes(raw[12..16].try_into().unwrap_or_default());
            let allowed = if zeroes {
                VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP
            } else {
                0
            };
            if flags & !allowed != 0 {
                guest_warn!(
                    flags,
                    zeroes,
                    "virtio-blk discard or write-zeroes with unknown flags"
                );
                return UNSUPP;
            }
            if sectors > max_sectors {
                guest_warn!(
                    sectors,
                    zeroes,
                    "virtio-blk discard or write-zeroes is too large"
                );
                return IOERR;
            }
            let unmap = flags & VIRTIO_BLK_WRITE_ZEROES_FLAG_UNMAP != 0;
            let len = sectors as u64 * SECTOR_SIZE;
            let Some(offset) = self.checked_range("discard", sector, len) else {
                return IOERR;
            };
            ranges.push((offset, len, unmap));
        }
        for (offset, len, unmap) in ranges {
            let result = if zeroes {
                self.backend.write_zeroes(offset, len, unmap)
            } else {
                self.backend.discard(offset, len)
            };
            if let Err(error) = result {
                return host_error(if zeroes { "write-zeroes" } else { "discard" }, error);
            }
        }
        OK
    }
}

/// The queue and what it needs once the driver has started the device.
struct Running {
    mem: GuestRam,
    queue: VirtQueue,
    interrupt: Arc<dyn VirtioInterrupt>,
}

/// A virtio block device over a [`BlockBackend`].
pub struct VirtioBlock {
    disk: Disk,
    features: u64,
    /// Where the driver should align discards, in sectors.
    discard_sector_alignment: u32,
    running: Option<Running>,
}

impl VirtioBlock {
    /// A disk with `serial` as its GET_ID answer (truncated to 20 bytes).
    pub fn new(backend: Box<dyn BlockBackend>, serial: String) -> Self {
        let read_only = backend.read_only();
        let capacity_bytes = backend.size() / SECTOR_SIZE * SECTOR_SIZE;
        let mut id = [0u8; VIRTIO_BLK_ID_BYTES];
        let n = serial.len().min(VIRTIO_BLK_ID_BYTES);
        id[..n].copy_from_slice(&serial.as_bytes()[..n]);
        let mut features =
            1 << VIRTIO_BLK_F_SIZE_MAX | 1 << VIRTIO_BLK_F_SEG_MAX | 1 << VIRTIO_BLK_F_BLK_SIZE;
        // A write-through disk has no volatile cache to flush; the driver
        // then sends no flushes (QEMU's write cache off).
        if !backend.writes_through() {
            features |= 1 << VIRTIO_BLK_F_FLUSH;
        }
        let discard_sector_alignment = u32::try_from(backend.discard_granularity() / SECTOR_SIZE)
            .unwrap_or(u32::MAX)
            .max(1);
        if read_only {
            features |= 1 << VIRTIO_BLK_F_RO;
        } else {
            features |= 1 << VIRTIO_BLK_F_DISCARD | 1 << VIRTIO_BLK_F_WRITE_ZEROES;
        }
        Self {
            disk: Disk {
                backend,
                serial: id,
                capacity_bytes,
                read_only,
                acked_features: 0,
            },
            features,
            discard_sector_alignment,
            running: None,
        }
    }

    /// Capacity in 512-byte sectors, as the driver sees it.
    pub fn capacity(&self) -> u64 {
        self.disk.capacity_bytes / SECTOR_SIZE
    }

    fn config_bytes(&self) -> [u8; CONFIG_LEN] {
        let mut config = [0u8; CONFIG_LEN];
        let mut put = |offset: usize, bytes: &[u8]| {
            config[offset..offset + bytes.len()].copy_from_slice(bytes)
        };
        put(CONFIG_CAPACITY, &self.capacity().to_le_bytes());
        put(CONFIG_SIZE_MAX, &SIZE_MAX.to_le_bytes());
        put(CONFIG_SEG_MAX, &SEG_MAX.to_le_bytes());
        put(CONFIG_BLK_SIZE, &(SECTOR_SIZE as u32).to_le_bytes());
        put(CONFIG_NUM_QUEUES, &1u16.to_le_bytes());
        put(
            CONFIG_MAX_DISCARD_SECTORS,
            &MAX_DISCARD_SECTORS.to_le_bytes(),
        );
        put(CONFIG_MAX_DISCARD_SEG, &MAX_DISCARD_SEG.to_le_bytes());
        put(
            CONFIG_DISCARD_SECTOR_ALIGNMENT,
            &self.discard_sector_alignment.to_le_bytes(),
        );
        put(
            CONFIG_MAX_WRITE_ZEROES_SECTORS,
            &MAX_WRITE_ZEROES_SECTORS.to_le_bytes(),
        );
        put(
            CONFIG_MAX_WRITE_ZEROES_SEG,
            &MAX_WRITE_ZEROES_SEG.to_le_bytes(),
        );
        config
    }
}

impl VirtioDevice for VirtioBlock {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_BLOCK
    }

    fn device_features(&self) -> u64 {
        self.features
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn ack_features(&mut self, features: u64) {
        self.disk.acked_features = features;
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let config = self.config_bytes();
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = usize::try_from(offset)
                .ok()
                .and_then(|o| config.get(o + i))
                .copied()
                .unwrap_or(0);
        }
    }

    fn activate(
        &mut self,
        mem: GuestRam,
        queues: Vec<Queue>,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<(), VirtioError> {
        let got = queues.len();
        let Some(queue) = queues.into_iter().next().filter(|_| got == 1) else {
            return Err(VirtioError::QueueCount { expected: 1, got });
        };
        self.running = Some(Running {
            mem,
            queue: VirtQueue::new(0, queue),
            interrupt,
        });
        Ok(())
    }

    fn reset(&mut self) {
        self.running = None;
        self.disk.acked_features = 0;
    }

    fn queue_notify(&mut self, queue: u16) {
        let Some(running) = &mut self.running else {
            return;
        };
        if queue != 0 {
            guest_warn!(
                queue,
                "virtio-blk notification for a queue it does not have"
            );
            return;
        }
        let disk = &mut self.disk;
        let mem = &running.mem;
        running
            .queue
            .process(mem, running.interrupt.as_ref(), |chain| {
                disk.handle(mem, chain)
            });
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::sync::Mutex;

    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::devices::irq::FakeIrq;
    use crate::devices::pci::msix::RecordingMsi;
    use crate::devices::pci::PciDevice;
    use crate::devices::virtio::pci::testing::Driver;
    use crate::devices::virtio::pci::VirtioPciDevice;
    use crate::devices::virtio::testing::{ram, DriverQueue, DESC_NEXT, DESC_WRITE};
    use crate::devices::virtio::{STATUS_DEVICE_NEEDS_RESET, VIRTIO_F_VERSION_1};
    use crate::storage::RawFile;

    const DISK_SECTORS: u64 = 64;
    const HEADER: u64 = 0x20000;
    const DATA: u64 = 0x30000;
    const STATUS: u64 = 0x40000;

    /// A driver with a started virtio-blk on a temporary raw image.
    struct Rig {
        driver: Driver,
        queue: DriverQueue,
        mem: GuestRam,
        irq: Arc<FakeIrq>,
        file: tempfile::NamedTempFile,
        next_desc: u16,
    }

    fn all_features() -> u64 {
        1 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_BLK_F_FLUSH
            | 1 << VIRTIO_BLK_F_BLK_SIZE
            | 1 << VIRTIO_BLK_F_DISCARD
            | 1 << VIRTIO_BLK_F_WRITE_ZEROES
    }

    fn rig_with(read_only: bool, features: u64) -> Rig {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(DISK_SECTORS * SECTOR_SIZE).unwrap();
        let backend = RawFile::open(file.path(), read_only).unwrap();
        let block = VirtioBlock::new(Box::new(backend), "vireo-disk-0".into());
        let mem = ram();
        let irq = FakeIrq::new();
        let mut driver = Driver::probe(VirtioPciDevice::new(
            Box::new(block),
            mem.clone(),
            irq.clone(),
            RecordingMsi::new(),
        ));
        assert!(driver.negotiate(features));
        let queue = DriverQueue::new(16, 0x10000);
        driver.setup_queue(0, &queue);
        driver.driver_ok();
        Rig {
            driver,
            queue,
            mem,
            irq,
            file,
            next_desc: 0,
        }
    }

    fn rig() -> Rig {
        rig_with(false, all_features())
    }

    impl Rig {
        /// Submits a request the way Linux lays it out (header, data,
        /// status in separate descriptors) and returns the status byte and
        /// used length.
        fn submit(&mut self, request: u32, sector: u64, data: Option<(u32, bool)>) -> (u8, u32) {
            let mut header = [0u8; 16];
            header[0..4].copy_from_slice(&request.to_le_bytes());
            header[8..16].copy_from_slice(&sector.to_le_bytes());
            self.mem.write_slice(&header, GuestAddress(HEADER)).unwrap();
            self.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
            let mut descs = vec![(HEADER, 16, 0)];
            if let Some((len, device_writes)) = data {
                descs.push((DATA, len, if device_writes { DESC_WRITE } else { 0 }));
            }
            descs.push((STATUS, 1, DESC_WRITE));
            self.submit_chain(&descs)
        }

        fn submit_chain(&mut self, descs: &[(u64, u32, u16)]) -> (u8, u32) {
            let head = self.next_desc;
            for (i, &(addr, len, flags)) in descs.iter().enumerate() {
                let index = (head + i as u16) % self.queue.size;
                let last = i + 1 == descs.len();
                let next = (index + 1) % self.queue.size;
                self.queue.set_desc(
                    &self.mem,
                    index,
                    addr,
                    len,
                    flags | if last { 0 } else { DESC_NEXT },
                    next,
                );
            }
            self.next_desc = (head + descs.len() as u16) % self.queue.size;
            let used_before = self.queue.used_idx(&self.mem);
            self.queue.make_available(&self.mem, head);
            self.driver.notify(0);
            assert_eq!(
                self.queue.used_idx(&self.mem),
                used_before.wrapping_add(1),
                "request completed"
            );
            let (id, len) = self.queue.used_entry(&self.mem, used_before);
            assert_eq!(id, head as u32);
            (self.mem.read_obj(GuestAddress(STATUS)).unwrap(), len)
        }

        fn file_bytes(&self, offset: u64, len: usize) -> Vec<u8> {
            let mut file = self.file.reopen().unwrap();
            file.seek(SeekFrom::Start(offset)).unwrap();
            let mut buf = vec![0; len];
            file.read_exact(&mut buf).unwrap();
            buf
        }
    }

    #[test]
    fn config_space_describes_the_disk() {
        let mut r = rig();
        let device = r.driver.device;
        assert_eq!(
            r.driver.read(device, 0, 4) | r.driver.read(device, 4, 4) << 32,
            DISK_SECTORS
        );
        assert_eq!(r.driver.read(device, CONFIG_BLK_SIZE as u64, 4), 512);
        assert_eq!(
            r.driver.read(device, CONFIG_SEG_MAX as u64, 4),
            SEG_MAX as u64
        );
        assert_eq!(
            r.driver.read(device, CONFIG_SIZE_MAX as u64, 4),
            SIZE_MAX as u64
        );
        assert_eq!(
            r.driver.read(device, CONFIG_MAX_DISCARD_SEG as u64, 4),
            MAX_DISCARD_SEG as u64
        );
        assert_eq!(
            r.driver.read(device, 0x800, 4),
            0,
            "past the end reads zero"
        );
        let features = r.driver.device_features();
        for bit in [
            VIRTIO_BLK_F_FLUSH,
            VIRTIO_BLK_F_BLK_SIZE,
            VIRTIO_BLK_F_SEG_MAX,
            VIRTIO_BLK_F_SIZE_MAX,
            VIRTIO_BLK_F_DISCARD,
        ] {
            assert_ne!(features & 1 << bit, 0, "feature {bit}");
        }
        assert_eq!(features & 1 << VIRTIO_BLK_F_RO, 0);
        assert_eq!(
            r.driver
                .read(device, CONFIG_DISCARD_SECTOR_ALIGNMENT as u64, 4),
            8,
            "a raw file's 4 KiB"
        );
    }

    /// A write-through disk offers no flush (no volatile cache), and a
    /// qcow2 disk asks for discards in whole clusters.
    #[test]
    fn cache_mode_and_format_shape_what_is_offered() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.qcow2");
        crate::storage::Qcow2Image::create(
            &path,
            &crate::storage::qcow2::CreateOptions {
                size: 1 << 20,
                ..Default::default()
            },
            &mut |_| {},
        )
        .unwrap();
        let image = crate::storage::Qcow2Image::open(&path, false).unwrap();
        let block = VirtioBlock::new(
            Box::new(crate::storage::WithPolicy::new(
                Box::new(image),
                crate::storage::CacheMode::WriteThrough,
                crate::storage::DiscardMode::Unmap,
            )),
            String::new(),
        );
        assert_eq!(block.device_features() & 1 << VIRTIO_BLK_F_FLUSH, 0);
        assert_ne!(block.device_features() & 1 << VIRTIO_BLK_F_DISCARD, 0);
        let mut alignment = [0u8; 4];
        block.read_config(CONFIG_DISCARD_SECTOR_ALIGNMENT as u64, &mut alignment);
        assert_eq!(u32::from_le_bytes(alignment), 128, "64 KiB clusters");
    }

    #[test]
    fn write_lands_in_the_file_and_reads_back() {
        let mut r = rig();
        let pattern: Vec<u8> = (0..1024u32).map(|i| (i * 7) as u8).collect();
        r.mem.write_slice(&pattern, GuestAddress(DATA)).unwrap();
        assert_eq!(
            r.submit(VIRTIO_BLK_T_OUT, 3, Some((1024, false))),
            (VIRTIO_BLK_S_OK, 1)
        );
        assert_eq!(r.file_bytes(3 * 512, 1024), pattern);
        assert!(r.irq.level());
        assert_eq!(r.driver.isr(), 1);
        assert!(!r.irq.level());

        r.mem.write_slice(&[0u8; 1024], GuestAddress(DATA)).unwrap();
        assert_eq!(
            r.submit(VIRTIO_BLK_T_IN, 3, Some((1024, true))),
            (VIRTIO_BLK_S_OK, 1025)
        );
        let mut back = vec![0; 1024];
        r.mem.read_slice(&mut back, GuestAddress(DATA)).unwrap();
        assert_eq!(back, pattern);
    }

    #[test]
    fn reads_larger_than_the_bounce_buffer() {
        let mut r = rig();
        let len = 24 * 1024u32;
        let mut file = r.file.reopen().unwrap();
        let pattern: Vec<u8> = (0..len).map(|i| (i / 512) as u8 ^ i as u8).collect();
        file.seek(SeekFrom::Start(512)).unwrap();
        file.write_all(&pattern).unwrap();
        // Split across several descriptors of odd sizes, as §2.7.4 allows.
        let descs = [
            (HEADER, 16, 0),
            (DATA, 1000, DESC_WRITE),
            (DATA + 0x1000, len - 1000, DESC_WRITE),
            (STATUS, 1, DESC_WRITE),
        ];
        let mut header = [0u8; 16];
        header[8] = 1;
        r.mem.write_slice(&header, GuestAddress(HEADER)).unwrap();
        assert_eq!(r.submit_chain(&descs), (VIRTIO_BLK_S_OK, len + 1));
        let mut back = vec![0; len as usize];
        r.mem
            .read_slice(&mut back[..1000], GuestAddress(DATA))
            .unwrap();
        r.mem
            .read_slice(&mut back[1000..], GuestAddress(DATA + 0x1000))
            .unwrap();
        assert_eq!(back, pattern);
    }

    #[test]
    fn get_id_flush_and_unknown_requests() {
        let mut r = rig();
        assert_eq!(
            r.submit(VIRTIO_BLK_T_GET_ID, 0, Some((20, true))),
            (VIRTIO_BLK_S_OK, 21)
        );
        let mut id = [0u8; 20];
        r.mem.read_slice(&mut id, GuestAddress(DATA)).unwrap();
        assert_eq!(&id, b"vireo-disk-0\0\0\0\0\0\0\0\0");
        assert_eq!(r.submit(VIRTIO_BLK_T_FLUSH, 0, None), (VIRTIO_BLK_S_OK, 1));
        assert_eq!(
            r.submit(2, 0, None),
            (VIRTIO_BLK_S_UNSUPP, 1),
            "SCSI commands"
        );
    }

    #[test]
    fn discard_and_write_zeroes() {
        let mut r = rig();
        let mut file = r.file.reopen().unwrap();
        file.write_all(&[0xaa; 4096]).unwrap();
        let segment = |sector: u64, sectors: u32, flags: u32| {
            let mut raw = [0u8; 16];
            raw[0..8].copy_from_slice(&sector.to_le_bytes());
            raw[8..12].copy_from_slice(&sectors.to_le_bytes());
            raw[12..16].copy_from_slice(&flags.to_le_bytes());
            raw
        };
        r.mem
            .write_slice(&segment(1, 2, 0), GuestAddress(DATA))
            .unwrap();
        assert_eq!(
            r.submit(VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((16, false))).0,
            VIRTIO_BLK_S_OK
        );
        assert_eq!(
            r.file_bytes(0, 4096)[..1536],
            [[0xaa; 512], [0; 512], [0; 512]].concat()[..]
        );
        assert_eq!(
            r.submit(VIRTIO_BLK_T_DISCARD, 0, Some((16, false))).0,
            VIRTIO_BLK_S_OK
        );
        // A raw file gets a hole: the discarded sectors read as zeroes;
        // write-zeroes may unmap.
        file.write_all(&[0xbb; 4096]).unwrap();
        r.mem
            .write_slice(&segment(8, 8, 0), GuestAddress(DATA))
            .unwrap();
        assert_eq!(
            r.submit(VIRTIO_BLK_T_DISCARD, 0, Some((16, false))).0,
            VIRTIO_BLK_S_OK
        );
        assert_eq!(r.file_bytes(4096, 4096), vec![0; 4096]);
        r.mem
            .write_slice(&segment(0, 8, 1), GuestAddress(DATA))
            .unwrap();
        assert_eq!(
            r.submit(VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((16, false))).0,
            VIRTIO_BLK_S_OK
        );
        assert_eq!(r.file_bytes(0, 4096), vec![0; 4096]);
        // Too many segments, and one too large.
        assert_eq!(
            r.submit(VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((32, false))).0,
            VIRTIO_BLK_S_IOERR
        );
        r.mem
            .write_slice(&segment(0, MAX_DISCARD_SECTORS + 1, 0), GuestAddress(DATA))
            .unwrap();
        assert_eq!(
            r.submit(VIRTIO_BLK_T_DISCARD, 0, Some((16, false))).0,
            VIRTIO_BLK_S_IOERR
        );
        // Unknown flags, ranges past the end, bad segment lists.
        r.mem
            .write_slice(&segment(1, 2, 1), GuestAddress(DATA))
            .unwrap();
        assert_eq!(
            r.submit(VIRTIO_BLK_T_DISCARD, 0, Some((16, false))).0,
            VIRTIO_BLK_S_UNSUPP
        );
        r.mem
            .write_slice(&segment(DISK_SECTORS - 1, 2, 0), GuestAddress(DATA))
            .unwrap();
        assert_eq!(
            r.submit(VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((16, false))).0,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(
            r.submit(VIRTIO_BLK_T_DISCARD, 0, Some((15, false))).0,
            VIRTIO_BLK_S_IOERR
        );
        r.mem
            .write_slice(&segment(u64::MAX / 2, 1, 0), GuestAddress(DATA))
            .unwrap();
        assert_eq!(
            r.submit(VIRTIO_BLK_T_DISCARD, 0, Some((16, false))).0,
            VIRTIO_BLK_S_IOERR
        );
    }

    /// Indices wrap around the 16-entry rings several times.
    #[test]
    fn rings_wrap() {
        let mut r = rig();
        for i in 0..40u64 {
            r.mem
                .write_slice(&[i as u8; 512], GuestAddress(DATA))
                .unwrap();
            assert_eq!(
                r.submit(VIRTIO_BLK_T_OUT, i % DISK_SECTORS, Some((512, false)))
                    .0,
                VIRTIO_BLK_S_OK
            );
        }
        assert_eq!(r.file_bytes(39 * 512, 512), vec![39; 512]);
        assert_eq!(r.queue.used_idx(&r.mem), 40);
    }

    /// Several requests made available before one notification complete
    /// together, with one interrupt.
    #[test]
    fn batch_of_requests_one_interrupt() {
        let mut r = rig();
        let mut header = [0u8; 16];
        header[0] = VIRTIO_BLK_T_FLUSH as u8;
        r.mem.write_slice(&header, GuestAddress(HEADER)).unwrap();
        for n in 0..3u16 {
            r.queue
                .set_desc(&r.mem, 2 * n, HEADER, 16, DESC_NEXT, 2 * n + 1);
            r.queue
                .set_desc(&r.mem, 2 * n + 1, STATUS + n as u64, 1, DESC_WRITE, 0);
            r.queue.make_available(&r.mem, 2 * n);
        }
        r.driver.notify(0);
        assert_eq!(r.queue.used_idx(&r.mem), 3);
        assert_eq!(r.irq.rising_edges(), 1);
        assert_eq!(r.driver.isr(), 1);
    }

    #[test]
    fn discard_needs_negotiation() {
        let mut r = rig_with(false, 1 << VIRTIO_F_VERSION_1);
        assert_eq!(
            r.submit(VIRTIO_BLK_T_DISCARD, 0, Some((16, false))).0,
            VIRTIO_BLK_S_UNSUPP
        );
    }

    #[test]
    fn requests_beyond_the_end_fail_without_touching_the_disk() {
        /// A backend that records every call and fails the test on one out of range.
        struct Strict {
            calls: Arc<Mutex<Vec<(u64, usize)>>>,
        }
        impl BlockBackend for Strict {
            fn size(&self) -> u64 {
                DISK_SECTORS * SECTOR_SIZE + 100 // a partial last sector is unreachable
            }
            fn read_only(&self) -> bool {
                false
            }
            fn read_at(&mut self, buf: &mut [u8], offset: u64) -> io::Result<()> {
                self.calls.lock().unwrap().push((offset, buf.len()));
                Ok(())
            }
            fn write_at(&mut self, buf: &[u8], offset: u64) -> io::Result<()> {
                self.calls.lock().unwrap().push((offset, buf.len()));
                Ok(())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
            fn identity(&self) -> String {
                "strict".into()
            }
        }
        let calls = Arc::new(Mutex::new(Vec::new()));
        let block = VirtioBlock::new(
            Box::new(Strict {
                calls: calls.clone(),
            }),
            String::new(),
        );
        assert_eq!(block.capacity(), DISK_SECTORS);
        let mem = ram();
        let mut driver = Driver::probe(VirtioPciDevice::new(
            Box::new(block),
            mem.clone(),
            FakeIrq::new(),
            RecordingMsi::new(),
        ));
        assert!(driver.negotiate(1 << VIRTIO_F_VERSION_1));
        let queue = DriverQueue::new(16, 0x10000);
        driver.setup_queue(0, &queue);
        driver.driver_ok();
        let mut r = Rig {
            driver,
            queue,
            mem,
            irq: FakeIrq::new(),
            file: tempfile::NamedTempFile::new().unwrap(),
            next_desc: 0,
        };
        assert_eq!(
            r.submit(VIRTIO_BLK_T_IN, DISK_SECTORS - 1, Some((1024, true)))
                .0,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(
            r.submit(VIRTIO_BLK_T_OUT, DISK_SECTORS, Some((512, false)))
                .0,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(
            r.submit(VIRTIO_BLK_T_IN, u64::MAX / 256, Some((512, true)))
                .0,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(
            r.submit(VIRTIO_BLK_T_IN, 0, Some((100, true))).0,
            VIRTIO_BLK_S_IOERR,
            "not whole sectors"
        );
        assert!(calls.lock().unwrap().is_empty());
        assert_eq!(
            r.submit(VIRTIO_BLK_T_IN, DISK_SECTORS - 1, Some((512, true)))
                .0,
            VIRTIO_BLK_S_OK
        );
        assert_eq!(
            *calls.lock().unwrap(),
            vec![((DISK_SECTORS - 1) * 512, 512)]
        );
    }

    #[test]
    fn read_only_disk_refuses_writes() {
        let mut r = rig_with(true, 1 << VIRTIO_F_VERSION_1 | 1 << VIRTIO_BLK_F_RO);
        assert_ne!(r.driver.device_features() & 1 << VIRTIO_BLK_F_RO, 0);
        assert_eq!(r.driver.device_features() & 1 << VIRTIO_BLK_F_DISCARD, 0);
        r.mem.write_slice(&[0x55; 512], GuestAddress(DATA)).unwrap();
        assert_eq!(
            r.submit(VIRTIO_BLK_T_OUT, 0, Some((512, false))).0,
            VIRTIO_BLK_S_IOERR
        );
        assert_eq!(r.file_bytes(0, 512), vec![0; 512]);
        assert_eq!(
            r.submit(VIRTIO_BLK_T_IN, 0, Some((512, true))).0,
            VIRTIO_BLK_S_OK
        );
        assert_eq!(r.submit(VIRTIO_BLK_T_FLUSH, 0, None).0, VIRTIO_BLK_S_OK);
    }

    #[test]
    fn malformed_requests_fail_and_the_queue_keeps_working() {
        let mut r = rig();
        // Header in a device-writable buffer: the status byte says IOERR.
        assert_eq!(
            r.submit_chain(&[(HEADER, 16, DESC_WRITE), (STATUS, 1, DESC_WRITE)]),
            (VIRTIO_BLK_S_IOERR, 1)
        );
        // A short header.
        r.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        assert_eq!(
            r.submit_chain(&[(HEADER, 8, 0), (STATUS, 1, DESC_WRITE)]),
            (VIRTIO_BLK_S_IOERR, 1)
        );
        // Status byte read-only: nothing can be reported, used length 0.
        r.mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        assert_eq!(
            r.submit_chain(&[(HEADER, 16, 0), (STATUS, 1, 0)]),
            (0xff, 0)
        );
        // Zero-length data buffer: the chain is refused whole.
        assert_eq!(
            r.submit_chain(&[
                (HEADER, 16, 0),
                (DATA, 0, DESC_WRITE),
                (STATUS, 1, DESC_WRITE)
            ])
            .1,
            0
        );
        // Data buffer outside guest RAM.
        let mut header = [0u8; 16];
        header[0] = VIRTIO_BLK_T_IN as u8;
        r.mem.write_slice(&header, GuestAddress(HEADER)).unwrap();
        assert_eq!(
            r.submit_chain(&[
                (HEADER, 16, 0),
                (0xffff_0000, 512, DESC_WRITE),
                (STATUS, 1, DESC_WRITE)
            ])
            .1,
            0
        );
        assert_eq!(
            r.submit_chain(&[
                (HEADER, 16, 0),
                (0xffe00, 1024, DESC_WRITE),
                (STATUS, 1, DESC_WRITE)
            ])
            .1,
            0
        );
        // After all that, a good request still works.
        assert_eq!(
            r.submit(VIRTIO_BLK_T_GET_ID, 0, Some((20, true))),
            (VIRTIO_BLK_S_OK, 21)
        );
        assert_eq!(r.driver.status() & STATUS_DEVICE_NEEDS_RESET, 0);
    }

    #[test]
    fn looping_chain_is_failed() {
        let mut r = rig();
        r.queue.set_desc(&r.mem, 0, HEADER, 16, DESC_NEXT, 1);
        r.queue
            .set_desc(&r.mem, 1, STATUS, 1, DESC_NEXT | DESC_WRITE, 0);
        r.queue.make_available(&r.mem, 0);
        r.driver.notify(0);
        assert_eq!(r.queue.used_idx(&r.mem), 1);
        assert_eq!(r.queue.used_entry(&r.mem, 0), (0, 0));
    }

    #[test]
    fn broken_ring_sets_needs_reset_until_reset() {
        let mut r = rig();
        r.mem
            .write_obj(40u16, GuestAddress(r.queue.avail + 2))
            .unwrap();
        r.driver.notify(0);
        assert_ne!(r.driver.status() & STATUS_DEVICE_NEEDS_RESET, 0);
        assert_eq!(r.driver.isr(), 2);
        // A reset and a fresh setup bring the disk back.
        r.driver.set_status(0);
        assert_eq!(r.driver.status(), 0);
        let mut fresh = DriverQueue::new(16, 0x50000);
        assert!(r.driver.negotiate(all_features()));
        r.driver.setup_queue(0, &fresh);
        r.driver.driver_ok();
        std::mem::swap(&mut r.queue, &mut fresh);
        r.next_desc = 0;
        assert_eq!(r.submit(VIRTIO_BLK_T_FLUSH, 0, None), (VIRTIO_BLK_S_OK, 1));
    }

    /// The transport refuses to reach the device before DRIVER_OK; the
    /// device itself ignores notifications when not running.
    #[test]
    fn notify_before_activation_is_ignored() {
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len(4096).unwrap();
        let mut block = VirtioBlock::new(
            Box::new(RawFile::open(file.path(), false).unwrap()),
            "x".into(),
        );
        block.queue_notify(0);
        let mut dev =
            VirtioPciDevice::new(Box::new(block), ram(), FakeIrq::new(), RecordingMsi::new());
        dev.write_bar(4, 0x3000, &[0, 0]);
    }
}
