//! The virtio-blk driver half of the harness: a real [`VirtioBlock`] behind
//! a real [`VirtioPciDevice`] and its worker thread, started through PCI as
//! Linux starts it, then fed requests laid out as Linux's `virtio_blk`
//! lays them out: a 16-byte header the device reads, the data, and a
//! status byte the device writes, all in one indirect table when
//! `VIRTIO_RING_F_INDIRECT_DESC` was negotiated (Linux uses one for every
//! request of more than one buffer) and as three ring descriptors
//! otherwise.
//!
//! Requests live in slots: guest memory for one request each (header,
//! status, indirect table, data buffer), so up to `slots` requests can be
//! outstanding at once, as blk-mq keeps a tag per request. Kicks go to the
//! eventfd bound to the queue's notify address, unless the device set
//! `VRING_USED_F_NO_NOTIFY`; completions are reaped from the used ring
//! after the queue's MSI-X vector fires.

use std::collections::VecDeque;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use vm_memory::{Bytes, GuestAddress};

use super::host::{IoEventTable, VectorEvents};
use super::pci::PciDriver;
use super::ring::{Buffer, DriverRing};
use super::HarnessError;
use crate::devices::irq::IrqLine;
use crate::devices::virtio::blk::{
    VIRTIO_BLK_F_BLK_SIZE, VIRTIO_BLK_F_DISCARD, VIRTIO_BLK_F_FLUSH, VIRTIO_BLK_F_RO,
    VIRTIO_BLK_F_SEG_MAX, VIRTIO_BLK_F_SIZE_MAX, VIRTIO_BLK_F_WRITE_ZEROES, VIRTIO_BLK_T_DISCARD,
    VIRTIO_BLK_T_FLUSH, VIRTIO_BLK_T_GET_ID, VIRTIO_BLK_T_IN, VIRTIO_BLK_T_OUT,
    VIRTIO_BLK_T_WRITE_ZEROES,
};
use crate::devices::virtio::notify::{spawn_queue_worker, QueueEvents};
use crate::devices::virtio::pci::{msix_vectors, VirtioPciDevice};
use crate::devices::virtio::{
    VirtioBlock, VirtioDevice, VIRTIO_F_VERSION_1, VIRTIO_RING_F_INDIRECT_DESC,
};
use crate::devices::GuestRam;
use crate::storage::{open_image, BlockBackend, CacheMode, DiscardMode, ImageFormat, WithPolicy};

/// The MSI-X vectors the harness maps, as Linux maps them with one vector
/// per queue: configuration changes on 0, the request queue on 1.
pub const CONFIG_VECTOR: u16 = 0;
pub const QUEUE_VECTOR: u16 = 1;

/// `used->flags` bit: the device asks not to be kicked (§2.7.10).
const VRING_USED_F_NO_NOTIFY: u16 = 1;

/// Where the rings start; page 0 stays unused (the transport refuses a
/// driver area at address 0).
const RING_BASE: u64 = 0x10000;
/// Inside a slot's control page.
const SLOT_HEADER: u64 = 0;
const SLOT_STATUS: u64 = 16;
const SLOT_TABLE: u64 = 256;
const CONTROL_PAGE: u64 = 4096;
/// Scratch memory after the slots, for tests that build their own chains.
const SCRATCH_LEN: u64 = 1 << 20;

/// `struct virtio_blk_config` offsets the harness reads (§5.2.4).
const CONFIG_CAPACITY: u64 = 0x00;
const CONFIG_SEG_MAX: u64 = 0x0c;
const CONFIG_DISCARD_SECTOR_ALIGNMENT: u64 = 0x2c;

/// How the harness sets itself up.
#[derive(Debug, Clone, Copy)]
pub struct HarnessOptions {
    /// Entries of the request queue (at most what the device offers).
    pub queue_size: u16,
    /// Requests that can be outstanding at once.
    pub slots: usize,
    /// Largest data transfer of one request, in bytes.
    pub slot_data: u32,
    /// Accept VIRTIO_RING_F_INDIRECT_DESC if offered, as Linux does.
    pub indirect: bool,
    /// What a guest's discard does ([`BlkHarness::open`] only).
    pub discard: DiscardMode,
    /// Kick through the eventfd bound to the notify address (a VM with
    /// KVM_IOEVENTFD); when off, every kick is an MMIO write the device
    /// handles on the kicking thread, the path a vCPU took before.
    pub ioeventfd: bool,
}

impl Default for HarnessOptions {
    fn default() -> Self {
        Self {
            queue_size: 256,
            slots: 32,
            slot_data: 1 << 20,
            indirect: true,
            discard: DiscardMode::Unmap,
            ioeventfd: true,
        }
    }
}

/// One virtio-blk request (§5.2.6), its data already in its slot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlkRequest {
    /// Read `len` bytes at `sector` into the slot's data buffer.
    Read {
        sector: u64,
        len: u32,
    },
    /// Write the first `len` bytes of the slot's data buffer at `sector`.
    Write {
        sector: u64,
        len: u32,
    },
    Flush,
    /// The 20-byte serial number, into the slot's data buffer.
    GetId,
    /// `(sector, sectors)` ranges.
    Discard(Vec<(u64, u32)>),
    WriteZeroes {
        sector: u64,
        sectors: u32,
        unmap: bool,
    },
}

/// A request the device returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Completion {
    /// The descriptor head the used ring named.
    pub head: u32,
    /// The slot it belonged to (`None` for a chain a test built itself).
    pub slot: Option<usize>,
    /// The slot's status byte (0xff if the device never wrote it).
    pub status: u8,
    /// The used length: bytes the device wrote, status byte included.
    pub used_len: u32,
}

/// An INTx line nobody listens to: the harness enables MSI-X, under which
/// the transport never drives it.
struct NoIntx;

impl IrqLine for NoIntx {
    fn set_level(&self, _high: bool) {}
}

/// A running virtio-blk, driven from the host side.
pub struct BlkHarness {
    mem: GuestRam,
    pci: PciDriver,
    ioevents: Arc<IoEventTable>,
    vectors: Arc<VectorEvents>,
    ring: DriverRing,
    notify_addr: u64,
    features: u64,
    capacity: u64,
    seg_max: u32,
    discard_alignment: u32,
    options: HarnessOptions,
    slots_base: u64,
    slot_stride: u64,
    scratch: u64,
    free_slots: Vec<usize>,
    /// The slot each outstanding head belongs to (index = head).
    in_flight: Vec<Option<usize>>,
    /// Completions reaped while waiting for another one.
    reaped: VecDeque<Completion>,
    kicks: u64,
    stop: Arc<AtomicBool>,
    worker: Option<JoinHandle<()>>,
}

impl BlkHarness {
    /// A harness over the image at `path`, opened as the VMM opens a disk
    /// (write-back cache, `options.discard`).
    pub fn open(
        path: &Path,
        format: ImageFormat,
        read_only: bool,
        options: HarnessOptions,
    ) -> Result<Self, HarnessError> {
        let image = open_image(path, format, read_only)
            .map_err(|e| HarnessError::BringUp(format!("{}: {e}", path.display())))?;
        let backend = WithPolicy::new(image, CacheMode::WriteBack, options.discard);
        Self::start(Box::new(backend), options)
    }

    /// Builds the device over `backend`, starts its worker thread, and
    /// brings it up through PCI with MSI-X.
    pub fn start(
        backend: Box<dyn BlockBackend>,
        options: HarnessOptions,
    ) -> Result<Self, HarnessError> {
        if options.slots == 0 || options.slot_data < 512 {
            return Err(HarnessError::Request(
                "no slot, or slots under a sector".into(),
            ));
        }
        let block = VirtioBlock::new(backend, "vireo-harness".into());
        let vector_count = msix_vectors(&block);
        let queue_count = block.queue_max_sizes().len();

        let ring_len = DriverRing::footprint(options.queue_size);
        let slots_base = (RING_BASE + ring_len).next_multiple_of(0x10000);
        let slot_stride = CONTROL_PAGE + (options.slot_data as u64).next_multiple_of(4096);
        let scratch = slots_base + slot_stride * options.slots as u64;
        let ram_len = scratch + SCRATCH_LEN;
        let mem = GuestRam::from_ranges(&[(GuestAddress(0), ram_len as usize)])
            .map_err(|e| HarnessError::Memory(e.to_string()))?;

        let vectors = VectorEvents::new(vector_count)?;
        let events = QueueEvents::new(queue_count).map_err(HarnessError::Host)?;
        let ioevents = IoEventTable::new(events.clone());
        let device = VirtioPciDevice::new(
            Box::new(block),
            mem.clone(),
            Arc::new(NoIntx),
            vectors.clone(),
        )
        .with_notify_binder(ioevents.clone());
        let device = Arc::new(Mutex::new(device));
        // The worker runs from the start, as in a VM; it sees kicks only
        // once DRIVER_OK is set.
        let stop = Arc::new(AtomicBool::new(false));
        let worker = spawn_queue_worker(
            "virtio-harness".into(),
            device.clone(),
            events,
            stop.clone(),
        )
        .map_err(HarnessError::Host)?;

        let mut harness = Self {
            mem: mem.clone(),
            pci: PciDriver::probe(device)?,
            ioevents,
            vectors,
            ring: DriverRing::new(&mem, options.queue_size, RING_BASE)?,
            notify_addr: 0,
            features: 0,
            capacity: 0,
            seg_max: 0,
            discard_alignment: 0,
            options,
            slots_base,
            slot_stride,
            scratch,
            free_slots: (0..options.slots).rev().collect(),
            in_flight: vec![None; options.queue_size as usize],
            reaped: VecDeque::new(),
            kicks: 0,
            stop,
            worker: Some(worker),
        };
        harness.bring_up()?;
        Ok(harness)
    }

    /// Linux's order: features, MSI-X vectors, the queue, DRIVER_OK.
    fn bring_up(&mut self) -> Result<(), HarnessError> {
        let mut wanted = 1 << VIRTIO_F_VERSION_1
            | 1 << VIRTIO_BLK_F_SEG_MAX
            | 1 << VIRTIO_BLK_F_SIZE_MAX
            | 1 << VIRTIO_BLK_F_RO
            | 1 << VIRTIO_BLK_F_BLK_SIZE
            | 1 << VIRTIO_BLK_F_FLUSH
            | 1 << VIRTIO_BLK_F_DISCARD
            | 1 << VIRTIO_BLK_F_WRITE_ZEROES;
        if self.options.indirect {
            wanted |= 1 << VIRTIO_RING_F_INDIRECT_DESC;
        }
        self.features = self.pci.negotiate(wanted)?;
        self.capacity = self.pci.read_device_config(CONFIG_CAPACITY, 8);
        self.seg_max = if self.negotiated(VIRTIO_BLK_F_SEG_MAX) {
            self.pci.read_device_config(CONFIG_SEG_MAX, 4) as u32
        } else {
            1
        };
        self.discard_alignment =
            self.pci
                .read_device_config(CONFIG_DISCARD_SECTOR_ALIGNMENT, 4) as u32;
        if self.pci.num_queues() < 1 {
            return Err(HarnessError::BringUp("the device has no queue".into()));
        }
        self.pci.enable_msix(QUEUE_VECTOR + 1)?;
        self.pci.set_config_vector(CONFIG_VECTOR)?;
        self.notify_addr =
            self.pci
                .setup_queue(0, self.ring.size(), self.ring.addresses(), QUEUE_VECTOR)?;
        self.pci.driver_ok()
    }

    /// Whether the driver accepted feature bit `bit`.
    pub fn negotiated(&self, bit: u32) -> bool {
        self.features & (1 << bit) != 0
    }

    pub fn features(&self) -> u64 {
        self.features
    }

    /// Capacity in 512-byte sectors, from the device configuration.
    pub fn capacity(&self) -> u64 {
        self.capacity
    }

    /// Where the device asks discards to be aligned, in sectors.
    pub fn discard_alignment(&self) -> u32 {
        self.discard_alignment
    }

    /// The device status register (DEVICE_NEEDS_RESET shows here).
    pub fn device_status(&self) -> u8 {
        self.pci.status()
    }

    /// Kicks delivered so far.
    pub fn kicks(&self) -> u64 {
        self.kicks
    }

    pub fn mem(&self) -> &GuestRam {
        &self.mem
    }

    /// Guest memory no slot uses, [`SCRATCH_LEN`] bytes, for tests.
    pub fn scratch(&self) -> u64 {
        self.scratch
    }

    /// The guest address of the request queue's notify register.
    pub fn notify_address(&self) -> u64 {
        self.notify_addr
    }

    /// The notify addresses the transport bound to eventfds.
    pub fn bound_notify_addresses(&self) -> Vec<(usize, u64)> {
        self.ioevents.bound()
    }

    /// The ring and guest memory, for tests that write their own chains.
    pub fn ring_mut(&mut self) -> (&GuestRam, &mut DriverRing) {
        (&self.mem, &mut self.ring)
    }

    /// A free slot, if any (blk-mq's tag).
    pub fn take_slot(&mut self) -> Option<usize> {
        self.free_slots.pop()
    }

    /// Gives a slot back once its request completed.
    pub fn release_slot(&mut self, slot: usize) {
        debug_assert!(slot < self.options.slots && !self.free_slots.contains(&slot));
        self.free_slots.push(slot);
    }

    fn slot_base(&self, slot: usize) -> u64 {
        self.slots_base + self.slot_stride * slot as u64
    }

    /// Guest address of `slot`'s data buffer.
    pub fn data_addr(&self, slot: usize) -> u64 {
        self.slot_base(slot) + CONTROL_PAGE
    }

    pub fn write_data(&self, slot: usize, bytes: &[u8]) -> Result<(), HarnessError> {
        self.mem
            .write_slice(bytes, GuestAddress(self.data_addr(slot)))
            .map_err(|e| HarnessError::Memory(e.to_string()))
    }

    pub fn read_data(&self, slot: usize, len: usize) -> Result<Vec<u8>, HarnessError> {
        let mut buf = vec![0; len];
        self.mem
            .read_slice(&mut buf, GuestAddress(self.data_addr(slot)))
            .map_err(|e| HarnessError::Memory(e.to_string()))?;
        Ok(buf)
    }

    /// Writes `request` into `slot` and makes it available; the device
    /// sees it after the next [`BlkHarness::kick`].
    pub fn submit(&mut self, slot: usize, request: &BlkRequest) -> Result<(), HarnessError> {
        if slot >= self.options.slots {
            return Err(HarnessError::Request(format!("no slot {slot}")));
        }
        let memory = |e: vm_memory::GuestMemoryError| HarnessError::Memory(e.to_string());
        let base = self.slot_base(slot);
        let data = self.data_addr(slot);
        let (kind, sector, payload) = match *request {
            BlkRequest::Read { sector, len } => (VIRTIO_BLK_T_IN, sector, Some((len, true))),
            BlkRequest::Write { sector, len } => (VIRTIO_BLK_T_OUT, sector, Some((len, false))),
            BlkRequest::Flush => (VIRTIO_BLK_T_FLUSH, 0, None),
            BlkRequest::GetId => (VIRTIO_BLK_T_GET_ID, 0, Some((20, true))),
            BlkRequest::Discard(ref ranges) => {
                for (i, &(sector, sectors)) in ranges.iter().enumerate() {
                    self.write_segment(data + 16 * i as u64, sector, sectors, 0)?;
                }
                (
                    VIRTIO_BLK_T_DISCARD,
                    0,
                    Some((16 * ranges.len() as u32, false)),
                )
            }
            BlkRequest::WriteZeroes {
                sector,
                sectors,
                unmap,
            } => {
                self.write_segment(data, sector, sectors, unmap as u32)?;
                (VIRTIO_BLK_T_WRITE_ZEROES, 0, Some((16, false)))
            }
        };
        if payload.is_some_and(|(len, _)| len == 0 || len > self.options.slot_data) {
            return Err(HarnessError::Request(format!(
                "{request:?} does not fit a slot of {} bytes",
                self.options.slot_data
            )));
        }
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&kind.to_le_bytes());
        header[8..16].copy_from_slice(&sector.to_le_bytes());
        self.mem
            .write_slice(&header, GuestAddress(base + SLOT_HEADER))
            .map_err(memory)?;
        // A status the device never writes reads back as this.
        self.mem
            .write_obj(0xffu8, GuestAddress(base + SLOT_STATUS))
            .map_err(memory)?;
        let mut buffers = [Buffer {
            addr: base + SLOT_HEADER,
            len: 16,
            device_writes: false,
        }; 3];
        let mut count = 1;
        if let Some((len, device_writes)) = payload {
            buffers[count] = Buffer {
                addr: data,
                len,
                device_writes,
            };
            count += 1;
        }
        buffers[count] = Buffer {
            addr: base + SLOT_STATUS,
            len: 1,
            device_writes: true,
        };
        count += 1;
        let head = if self.negotiated(VIRTIO_RING_F_INDIRECT_DESC) {
            self.ring
                .add_indirect(&self.mem, base + SLOT_TABLE, &buffers[..count])?
        } else {
            self.ring.add_direct(&self.mem, &buffers[..count])?
        };
        let head = head.ok_or_else(|| HarnessError::Request("the ring is full".into()))?;
        self.in_flight[head as usize] = Some(slot);
        self.ring.push_available(&self.mem, head)
    }

    /// `struct virtio_blk_discard_write_zeroes` at `addr`.
    fn write_segment(
        &self,
        addr: u64,
        sector: u64,
        sectors: u32,
        flags: u32,
    ) -> Result<(), HarnessError> {
        let mut raw = [0u8; 16];
        raw[0..8].copy_from_slice(&sector.to_le_bytes());
        raw[8..12].copy_from_slice(&sectors.to_le_bytes());
        raw[12..16].copy_from_slice(&flags.to_le_bytes());
        self.mem
            .write_slice(&raw, GuestAddress(addr))
            .map_err(|e| HarnessError::Memory(e.to_string()))
    }

    /// Publishes what was submitted and notifies the device, as
    /// `virtqueue_kick` does: skipped when the device set NO_NOTIFY;
    /// otherwise a write to the notify address, which lands in the queue's
    /// eventfd when the transport bound one there and reaches the device
    /// as an MMIO write when not. Returns whether a notification was sent.
    pub fn kick(&mut self) -> Result<bool, HarnessError> {
        self.ring.publish(&self.mem)?;
        self.notify()
    }

    /// The notification half of [`BlkHarness::kick`], without publishing
    /// the available index: for tests that write the index themselves.
    pub fn notify(&mut self) -> Result<bool, HarnessError> {
        // The published index must be visible before the flags are read
        // (Linux's virtio_mb in virtqueue_kick_prepare).
        std::sync::atomic::fence(Ordering::SeqCst);
        let (_, _, used) = self.ring.addresses();
        let flags: u16 = self
            .mem
            .load(GuestAddress(used), Ordering::Acquire)
            .map_err(|e| HarnessError::Memory(e.to_string()))?;
        if flags & VRING_USED_F_NO_NOTIFY != 0 {
            return Ok(false);
        }
        if !(self.options.ioeventfd && self.ioevents.guest_write(self.notify_addr)?) {
            self.pci.mmio_write16(self.notify_addr, 0);
        }
        self.kicks += 1;
        Ok(true)
    }

    /// Every used entry the device has returned so far.
    fn reap(&mut self) -> Result<(), HarnessError> {
        while let Some((head, used_len)) = self.ring.pop_used(&self.mem)? {
            let slot = self.in_flight.get_mut(head as usize).and_then(Option::take);
            let status = match slot {
                Some(slot) => self
                    .mem
                    .read_obj(GuestAddress(self.slot_base(slot) + SLOT_STATUS))
                    .map_err(|e| HarnessError::Memory(e.to_string()))?,
                None => 0xff,
            };
            self.reaped.push_back(Completion {
                head,
                slot,
                status,
                used_len,
            });
        }
        Ok(())
    }

    /// Waits for completions (at least one) for up to `timeout`: reaps the
    /// used ring, and sleeps on the queue's MSI-X eventfd while it is empty.
    pub fn wait(&mut self, timeout: Duration) -> Result<Vec<Completion>, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            self.reap()?;
            if !self.reaped.is_empty() {
                return Ok(self.reaped.drain(..).collect());
            }
            if self.vectors.wait(QUEUE_VECTOR, deadline)? == 0 {
                self.reap()?;
                if !self.reaped.is_empty() {
                    return Ok(self.reaped.drain(..).collect());
                }
                return Err(HarnessError::Timeout {
                    timeout,
                    state: format!(
                        "{}; device status {:#x}",
                        self.ring.describe(&self.mem),
                        self.pci.status()
                    ),
                });
            }
        }
    }

    /// Submits `request` in a free slot, kicks, and waits for it alone
    /// (other completions stay queued for the next [`BlkHarness::wait`]).
    /// The slot is given back once the request completed; its data buffer
    /// keeps what the device wrote until it is used again.
    pub fn run(
        &mut self,
        request: &BlkRequest,
        timeout: Duration,
    ) -> Result<(usize, Completion), HarnessError> {
        let slot = self
            .take_slot()
            .ok_or_else(|| HarnessError::Request("every slot is in use".into()))?;
        self.submit(slot, request)?;
        self.kick()?;
        let deadline = Instant::now() + timeout;
        let mut others = Vec::new();
        let result = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let batch = match self.wait(left) {
                Ok(batch) => batch,
                Err(e) => break Err(e),
            };
            let mut mine = None;
            for completion in batch {
                if completion.slot == Some(slot) {
                    mine = Some(completion);
                } else {
                    others.push(completion);
                }
            }
            if let Some(completion) = mine {
                break Ok((slot, completion));
            }
        };
        self.reaped.extend(others);
        // A request that timed out may still complete into its slot: the
        // slot stays taken rather than be reused under it.
        if result.is_ok() {
            self.release_slot(slot);
        }
        result
    }

    /// Waits up to `timeout` for a configuration-change interrupt (how the
    /// device reports DEVICE_NEEDS_RESET); returns whether one came.
    pub fn wait_config_interrupt(&self, timeout: Duration) -> Result<bool, HarnessError> {
        Ok(self.vectors.wait(CONFIG_VECTOR, Instant::now() + timeout)? > 0)
    }

    /// The MSI-X message `vector` last carried (the table entry the
    /// driver programmed, as the device read it when it fired).
    pub fn last_message(&self, vector: u16) -> Option<crate::devices::pci::msix::MsiMessage> {
        self.vectors.last_message(vector)
    }

    /// How many data buffers one request may have (`seg_max`).
    pub fn seg_max(&self) -> u32 {
        self.seg_max
    }
}

impl Drop for BlkHarness {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}
