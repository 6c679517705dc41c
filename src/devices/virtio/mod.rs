//! Virtio devices: the [`VirtioDevice`] trait every device implements, the
//! interrupt path back to the transport, and the split-virtqueue plumbing
//! devices share ([`VirtQueue`], [`Chain`]).
//!
//! Reference: Virtual I/O Device (VIRTIO) Version 1.2, §2.1 (device status),
//! §2.2 (feature bits), §2.7 (split virtqueues). The transport is
//! [`pci::VirtioPciDevice`] (§4.1); the devices are [`blk::VirtioBlock`]
//! (§5.2) and [`net::VirtioNet`] (§5.1), later virtio-input.
//! [`harness`] drives them from the host side as a guest driver would, for
//! tests and benchmarks.
//!
//! Not emulated: packed virtqueues (`VIRTIO_F_RING_PACKED`), `VIRTIO_F_EVENT_IDX`
//! (the device always interrupts after using buffers, which §2.7.7 allows),
//! notification data and per-queue reset. Descriptor chains are read and
//! bounds-checked by the `virtio-queue` crate; every buffer is checked again
//! against guest RAM here before a device sees it.

pub mod blk;
pub mod harness;
pub mod net;
pub mod notify;
pub mod pci;

use std::sync::Arc;

use virtio_queue::{DescriptorChain, Queue, QueueOwnedT, QueueT};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend};

use super::GuestRam;
use crate::guest_warn;

pub use blk::VirtioBlock;
pub use net::VirtioNet;
pub use pci::VirtioPciDevice;

/// Device status bits (§2.1).
pub const STATUS_ACKNOWLEDGE: u8 = 1;
pub const STATUS_DRIVER: u8 = 2;
pub const STATUS_DRIVER_OK: u8 = 4;
pub const STATUS_FEATURES_OK: u8 = 8;
pub const STATUS_DEVICE_NEEDS_RESET: u8 = 0x40;
pub const STATUS_FAILED: u8 = 0x80;

/// Reserved feature bits (§6): descriptors may point to indirect tables.
pub const VIRTIO_RING_F_INDIRECT_DESC: u32 = 28;
/// The device follows this specification rather than the legacy one.
pub const VIRTIO_F_VERSION_1: u32 = 32;

/// Device types (§5).
pub const VIRTIO_ID_NET: u32 = 1;
pub const VIRTIO_ID_BLOCK: u32 = 2;
pub const VIRTIO_ID_CONSOLE: u32 = 3;
pub const VIRTIO_ID_INPUT: u32 = 18;

/// The transport's side of a device's interrupts. The PCI transport sets
/// its ISR bits and drives INTx; another transport (MMIO) would do its own.
pub trait VirtioInterrupt: Send + Sync {
    /// Buffers were added to the used ring of `queue` (ISR bit 0).
    fn signal_used_queue(&self, queue: u16);

    /// The device configuration changed (ISR bit 1, new config_generation).
    fn signal_config_change(&self);

    /// The device hit an error it cannot recover from without a reset:
    /// sets DEVICE_NEEDS_RESET and sends a configuration change
    /// notification, as §2.1.2 requires.
    fn set_needs_reset(&self);
}

/// Why a device could not start.
#[derive(Debug, thiserror::Error)]
pub enum VirtioError {
    /// The device was given fewer queues than it declared.
    #[error("virtio device expected {expected} queues, got {got}")]
    QueueCount { expected: usize, got: usize },
    /// A host resource behind the device failed (tap device, file).
    #[error("virtio device backend failed: {0}")]
    Backend(#[source] std::io::Error),
}

/// One virtio device, independent of its transport.
///
/// The transport owns feature negotiation, the status state machine and the
/// queue registers. When the driver sets DRIVER_OK it builds one
/// [`Queue`] per declared queue and calls [`VirtioDevice::activate`]; from
/// then on the device owns its queues and is told of driver notifications
/// through [`VirtioDevice::queue_notify`]. A device may process a queue
/// synchronously there (virtio-blk does) or hand it to a worker thread
/// (virtio-net receive will); either way it reports completions through the
/// [`VirtioInterrupt`] it was given.
pub trait VirtioDevice: Send {
    /// Device type (§5), e.g. [`VIRTIO_ID_BLOCK`].
    fn device_type(&self) -> u32;

    /// Device-specific feature bits offered (the transport adds the
    /// reserved ones it implements, such as [`VIRTIO_F_VERSION_1`]).
    fn device_features(&self) -> u64;

    /// Maximum size of each queue; its length is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];

    /// The features the driver accepted, when it sets FEATURES_OK.
    fn ack_features(&mut self, features: u64) {
        let _ = features;
    }

    /// Reads the device-specific configuration at `offset`; bytes past its
    /// end read as zero.
    fn read_config(&self, offset: u64, data: &mut [u8]);

    /// Writes the device-specific configuration; most fields are read-only.
    fn write_config(&mut self, offset: u64, data: &[u8]) {
        guest_warn!(
            offset,
            len = data.len(),
            "write to read-only virtio device configuration"
        );
    }

    /// Starts the device with the driver's queues (index = queue number;
    /// queues the driver did not enable are not ready).
    fn activate(
        &mut self,
        mem: GuestRam,
        queues: Vec<Queue>,
        interrupt: Arc<dyn VirtioInterrupt>,
    ) -> Result<(), VirtioError>;

    /// Stops the device and forgets its queues (device reset, §2.4).
    fn reset(&mut self);

    /// The driver notified `queue` (§4.1.5.2): buffers are available.
    fn queue_notify(&mut self, queue: u16);
}

/// A readable or writable run of guest memory from one descriptor, already
/// checked to lie inside guest RAM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Segment {
    addr: GuestAddress,
    len: u32,
}

/// Why a descriptor chain was refused.
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The head index is not below the queue size (§2.7.6); the chain
    /// cannot even be returned through the used ring.
    #[error("descriptor head {head} is outside a queue of {size}")]
    HeadOutOfRange { head: u16, size: u16 },
    /// No descriptor could be read: the table or an indirect table is bad.
    #[error("descriptor chain {head} has no readable descriptor")]
    Empty { head: u16 },
    /// The chain still said NEXT when it ran out: it loops, is longer than
    /// the queue, or points past the table (§2.7.5.2).
    #[error("descriptor chain {head} loops or is longer than the queue")]
    Unterminated { head: u16 },
    /// A buffer of zero bytes.
    #[error("descriptor chain {head} has a zero-length buffer")]
    ZeroLength { head: u16 },
    /// A buffer that is not entirely inside guest RAM.
    #[error("descriptor chain {head} points outside guest RAM at {addr:#x}+{len:#x}")]
    OutsideRam { head: u16, addr: u64, len: u32 },
    /// A device-readable buffer after a device-writable one (§2.7.4.2).
    #[error("descriptor chain {head} has a readable buffer after a writable one")]
    ReadableAfterWritable { head: u16 },
    /// A device asked for bytes beyond the end of the chain's buffers.
    #[error("descriptor chain is too short for the request")]
    TooShort,
    /// Guest memory refused an access that was checked before.
    #[error("guest memory access failed: {0}")]
    Memory(#[source] vm_memory::GuestMemoryError),
}

/// A validated descriptor chain: its head, then the device-readable bytes
/// and the device-writable bytes, each seen as one stream regardless of how
/// the driver split them into descriptors (§2.7.4, message framing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    head: u16,
    readable: Vec<Segment>,
    writable: Vec<Segment>,
}

impl Chain {
    /// Reads and checks the chain starting at `chain`'s head.
    fn parse(chain: DescriptorChain<&GuestRam>, mem: &GuestRam) -> Result<Self, ChainError> {
        let head = chain.head_index();
        let mut parsed = Chain {
            head,
            readable: Vec::new(),
            writable: Vec::new(),
        };
        let mut count = 0usize;
        let mut last_had_next = false;
        for desc in chain {
            count += 1;
            last_had_next = desc.has_next();
            let segment = Segment {
                addr: desc.addr(),
                len: desc.len(),
            };
            if segment.len == 0 {
                return Err(ChainError::ZeroLength { head });
            }
            if !GuestMemoryBackend::check_range(mem, segment.addr, segment.len as usize) {
                return Err(ChainError::OutsideRam {
                    head,
                    addr: segment.addr.0,
                    len: segment.len,
                });
            }
            if desc.is_write_only() {
                parsed.writable.push(segment);
            } else if parsed.writable.is_empty() {
                parsed.readable.push(segment);
            } else {
                return Err(ChainError::ReadableAfterWritable { head });
            }
        }
        // virtio-queue ends the iteration quietly on a loop (after queue-size
        // descriptors), a bad next index or an unreadable table; the last
        // descriptor it returned then still says NEXT.
        if count == 0 {
            return Err(ChainError::Empty { head });
        }
        if last_had_next {
            return Err(ChainError::Unterminated { head });
        }
        Ok(parsed)
    }

    /// The descriptor index to return through the used ring.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// Total device-readable bytes.
    pub fn readable_len(&self) -> u64 {
        self.readable.iter().map(|s| s.len as u64).sum()
    }

    /// Total device-writable bytes.
    pub fn writable_len(&self) -> u64 {
        self.writable.iter().map(|s| s.len as u64).sum()
    }

    /// Copies `buf.len()` device-readable bytes starting `offset` bytes into
    /// the readable stream.
    pub fn read_at(&self, mem: &GuestRam, offset: u64, buf: &mut [u8]) -> Result<(), ChainError> {
        let mut done = 0;
        for (addr, len) in Self::spans(&self.readable, offset, buf.len())? {
            mem.read_slice(&mut buf[done..done + len], addr)
                .map_err(ChainError::Memory)?;
            done += len;
        }
        Ok(())
    }

    /// Copies `buf` into the device-writable stream starting `offset` bytes in.
    pub fn write_at(&self, mem: &GuestRam, offset: u64, buf: &[u8]) -> Result<(), ChainError> {
        let mut done = 0;
        for (addr, len) in Self::spans(&self.writable, offset, buf.len())? {
            mem.write_slice(&buf[done..done + len], addr)
                .map_err(ChainError::Memory)?;
            done += len;
        }
        Ok(())
    }

    /// The guest ranges holding `len` bytes at `offset` of a stream.
    fn spans(
        segments: &[Segment],
        offset: u64,
        len: usize,
    ) -> Result<Vec<(GuestAddress, usize)>, ChainError> {
        let mut spans = Vec::new();
        let mut skip = offset;
        let mut left = len as u64;
        for segment in segments {
            if left == 0 {
                break;
            }
            let seg_len = segment.len as u64;
            if skip >= seg_len {
                skip -= seg_len;
                continue;
            }
            let take = (seg_len - skip).min(left);
            // The segment was checked to lie inside guest RAM, so
            // `addr + skip` (below `addr + len`) cannot wrap.
            spans.push((GuestAddress(segment.addr.0 + skip), take as usize));
            left -= take;
            skip = 0;
        }
        if left == 0 {
            Ok(spans)
        } else {
            Err(ChainError::TooShort)
        }
    }
}

/// One split virtqueue as a device uses it: pops validated chains, returns
/// them through the used ring, interrupts the driver.
///
/// A malformed chain whose head is valid is returned unused (length 0)
/// with a warning; the driver sees its request fail. A broken ring (an
/// available index that runs ahead by more than the queue size, a head
/// index outside the queue, a used ring that cannot be written) leaves the
/// queue unusable: the device is marked DEVICE_NEEDS_RESET and the queue is
/// ignored until the driver resets the device.
pub struct VirtQueue {
    index: u16,
    queue: Queue,
    broken: bool,
    /// Used entries added since the driver was last interrupted.
    used_pending: bool,
}

impl VirtQueue {
    pub fn new(index: u16, queue: Queue) -> Self {
        Self {
            index,
            queue,
            broken: false,
            used_pending: false,
        }
    }

    pub fn index(&self) -> u16 {
        self.index
    }

    /// Whether the driver enabled the queue and it is still usable.
    pub fn ready(&self) -> bool {
        self.queue.ready() && !self.broken
    }

    fn break_ring(&mut self, interrupt: &dyn VirtioInterrupt) {
        self.broken = true;
        interrupt.set_needs_reset();
    }

    /// The next well-formed chain the driver made available, if any.
    pub fn pop(&mut self, mem: &GuestRam, interrupt: &dyn VirtioInterrupt) -> Option<Chain> {
        loop {
            if !self.ready() {
                return None;
            }
            let size = self.queue.size();
            let chain = match self.queue.iter(mem) {
                Ok(mut available) => available.next()?,
                Err(error) => {
                    guest_warn!(queue = self.index, %error, "virtio available ring is corrupt");
                    self.break_ring(interrupt);
                    return None;
                }
            };
            let head = chain.head_index();
            if head >= size {
                guest_warn!(queue = self.index, error = %ChainError::HeadOutOfRange { head, size }, "bad virtio descriptor chain");
                self.break_ring(interrupt);
                return None;
            }
            match Chain::parse(chain, mem) {
                Ok(chain) => return Some(chain),
                Err(error) => {
                    guest_warn!(queue = self.index, %error, "bad virtio descriptor chain");
                    self.add_used(mem, head, 0, interrupt);
                }
            }
        }
    }

    /// Returns `head` to the driver with `len` bytes written.
    pub fn add_used(
        &mut self,
        mem: &GuestRam,
        head: u16,
        len: u32,
        interrupt: &dyn VirtioInterrupt,
    ) {
        if self.broken {
            return;
        }
        match self.queue.add_used(mem, head, len) {
            Ok(()) => self.used_pending = true,
            Err(error) => {
                guest_warn!(queue = self.index, %error, "cannot write the virtio used ring");
                self.break_ring(interrupt);
            }
        }
    }

    /// Interrupts the driver if buffers were used since the last interrupt.
    pub fn signal_used(&mut self, mem: &GuestRam, interrupt: &dyn VirtioInterrupt) {
        if !std::mem::take(&mut self.used_pending) {
            return;
        }
        // Without EVENT_IDX this is always true; it is here so that
        // negotiating EVENT_IDX later needs no change in devices.
        if self.queue.needs_notification(mem).unwrap_or(true) {
            interrupt.signal_used_queue(self.index);
        }
    }

    /// Handles every available chain with `handler`, which returns the
    /// number of bytes it wrote; then interrupts the driver once.
    pub fn process(
        &mut self,
        mem: &GuestRam,
        interrupt: &dyn VirtioInterrupt,
        mut handler: impl FnMut(&Chain) -> u32,
    ) {
        while let Some(chain) = self.pop(mem, interrupt) {
            let written = handler(&chain);
            self.add_used(mem, chain.head(), written, interrupt);
        }
        self.signal_used(mem, interrupt);
    }
}

/// Test helpers shared by the transport and device tests: a driver's view
/// of a split queue laid out in guest memory.
#[cfg(test)]
pub(crate) mod testing {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use super::*;

    pub const DESC_WRITE: u16 = 2;
    pub const DESC_NEXT: u16 = 1;

    /// A split queue of `size` entries at fixed addresses, written the way a
    /// driver writes it.
    pub struct DriverQueue {
        pub size: u16,
        pub desc: u64,
        pub avail: u64,
        pub used: u64,
        pub avail_idx: u16,
    }

    impl DriverQueue {
        pub fn new(size: u16, base: u64) -> Self {
            Self {
                size,
                desc: base,
                avail: base + 0x1000,
                used: base + 0x2000,
                avail_idx: 0,
            }
        }

        pub fn set_desc(
            &self,
            mem: &GuestRam,
            index: u16,
            addr: u64,
            len: u32,
            flags: u16,
            next: u16,
        ) {
            let at = GuestAddress(self.desc + 16 * index as u64);
            let mut raw = [0u8; 16];
            raw[0..8].copy_from_slice(&addr.to_le_bytes());
            raw[8..12].copy_from_slice(&len.to_le_bytes());
            raw[12..14].copy_from_slice(&flags.to_le_bytes());
            raw[14..16].copy_from_slice(&next.to_le_bytes());
            mem.write_slice(&raw, at).unwrap();
        }

        /// Makes the chain at `head` available and publishes the new index.
        pub fn make_available(&mut self, mem: &GuestRam, head: u16) {
            let slot = GuestAddress(self.avail + 4 + 2 * (self.avail_idx % self.size) as u64);
            mem.write_obj(head, slot).unwrap();
            self.avail_idx = self.avail_idx.wrapping_add(1);
            mem.write_obj(self.avail_idx, GuestAddress(self.avail + 2))
                .unwrap();
        }

        pub fn used_idx(&self, mem: &GuestRam) -> u16 {
            mem.read_obj(GuestAddress(self.used + 2)).unwrap()
        }

        /// Used ring entry `n`: (id, len).
        pub fn used_entry(&self, mem: &GuestRam, n: u16) -> (u32, u32) {
            let at = self.used + 4 + 8 * (n % self.size) as u64;
            (
                mem.read_obj(GuestAddress(at)).unwrap(),
                mem.read_obj(GuestAddress(at + 4)).unwrap(),
            )
        }

        /// A virtio-queue `Queue` configured as the transport would.
        pub fn queue(&self) -> Queue {
            let mut queue = Queue::new(self.size).unwrap();
            queue.try_set_size(self.size).unwrap();
            queue
                .try_set_desc_table_address(GuestAddress(self.desc))
                .unwrap();
            queue
                .try_set_avail_ring_address(GuestAddress(self.avail))
                .unwrap();
            queue
                .try_set_used_ring_address(GuestAddress(self.used))
                .unwrap();
            queue.set_ready(true);
            queue
        }
    }

    /// Records what a device signalled.
    #[derive(Default)]
    pub struct RecordingInterrupt {
        pub used: AtomicUsize,
        pub config: AtomicUsize,
        pub needs_reset: AtomicBool,
    }

    impl RecordingInterrupt {
        pub fn used(&self) -> usize {
            self.used.load(Ordering::SeqCst)
        }
        pub fn needs_reset(&self) -> bool {
            self.needs_reset.load(Ordering::SeqCst)
        }
    }

    impl VirtioInterrupt for RecordingInterrupt {
        fn signal_used_queue(&self, _queue: u16) {
            self.used.fetch_add(1, Ordering::SeqCst);
        }
        fn signal_config_change(&self) {
            self.config.fetch_add(1, Ordering::SeqCst);
        }
        fn set_needs_reset(&self) {
            self.needs_reset.store(true, Ordering::SeqCst);
        }
    }

    pub fn ram() -> GuestRam {
        GuestRam::from_ranges(&[(GuestAddress(0), 1 << 20)]).unwrap()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;

    fn setup() -> (GuestRam, DriverQueue, VirtQueue, RecordingInterrupt) {
        let mem = ram();
        let driver = DriverQueue::new(8, 0x10000);
        let queue = VirtQueue::new(0, driver.queue());
        (mem, driver, queue, RecordingInterrupt::default())
    }

    #[test]
    fn chain_streams_ignore_descriptor_boundaries() {
        let (mem, mut driver, mut queue, irq) = setup();
        mem.write_slice(b"abc", GuestAddress(0x4000)).unwrap();
        mem.write_slice(b"defg", GuestAddress(0x5000)).unwrap();
        driver.set_desc(&mem, 0, 0x4000, 3, DESC_NEXT, 1);
        driver.set_desc(&mem, 1, 0x5000, 4, DESC_NEXT, 2);
        driver.set_desc(&mem, 2, 0x6000, 2, DESC_NEXT | DESC_WRITE, 3);
        driver.set_desc(&mem, 3, 0x7000, 2, DESC_WRITE, 0);
        driver.make_available(&mem, 0);
        let chain = queue.pop(&mem, &irq).unwrap();
        assert_eq!((chain.readable_len(), chain.writable_len()), (7, 4));
        let mut buf = [0; 4];
        chain.read_at(&mem, 2, &mut buf).unwrap();
        assert_eq!(&buf, b"cdef");
        chain.write_at(&mem, 1, b"xyz").unwrap();
        let mut back = [0; 2];
        mem.read_slice(&mut back, GuestAddress(0x7000)).unwrap();
        assert_eq!(&back, b"yz");
        assert!(matches!(
            chain.write_at(&mem, 2, b"xyz"),
            Err(ChainError::TooShort)
        ));
        queue.add_used(&mem, chain.head(), 4, &irq);
        queue.signal_used(&mem, &irq);
        assert_eq!(driver.used_idx(&mem), 1);
        assert_eq!(driver.used_entry(&mem, 0), (0, 4));
        assert_eq!(irq.used(), 1);
        assert!(queue.pop(&mem, &irq).is_none());
    }

    /// Each malformed chain is returned with length 0; the queue stays usable.
    #[test]
    fn malformed_chains_fail_alone() {
        let (mem, mut driver, mut queue, irq) = setup();
        // 0: loops onto itself.
        driver.set_desc(&mem, 0, 0x4000, 16, DESC_NEXT, 0);
        // 1: points past the end of RAM.
        driver.set_desc(&mem, 1, 0xff000, 0x2000, 0, 0);
        // 2: zero-length buffer.
        driver.set_desc(&mem, 2, 0x4000, 0, 0, 0);
        // 3 -> 4: readable after writable.
        driver.set_desc(&mem, 3, 0x4000, 16, DESC_NEXT | DESC_WRITE, 4);
        driver.set_desc(&mem, 4, 0x5000, 16, 0, 0);
        // 5: next index beyond the queue.
        driver.set_desc(&mem, 5, 0x4000, 16, DESC_NEXT, 200);
        // 6: a good one, so we see processing continue.
        driver.set_desc(&mem, 6, 0x4000, 16, 0, 0);
        for head in [0, 1, 2, 3, 5, 6] {
            driver.make_available(&mem, head);
        }
        let good = queue.pop(&mem, &irq).unwrap();
        assert_eq!(good.head(), 6);
        for n in 0..5 {
            assert_eq!(driver.used_entry(&mem, n).1, 0, "used entry {n}");
        }
        assert!(!irq.needs_reset());
        assert!(queue.ready());
    }

    #[test]
    fn available_index_running_ahead_breaks_the_queue() {
        let (mem, driver, mut queue, irq) = setup();
        mem.write_obj(9u16, GuestAddress(driver.avail + 2)).unwrap();
        assert!(queue.pop(&mem, &irq).is_none());
        assert!(irq.needs_reset());
        assert!(!queue.ready());
    }

    #[test]
    fn head_outside_the_queue_breaks_the_queue() {
        let (mem, mut driver, mut queue, irq) = setup();
        driver.make_available(&mem, 8);
        assert!(queue.pop(&mem, &irq).is_none());
        assert!(irq.needs_reset());
        assert_eq!(driver.used_idx(&mem), 0);
    }
}
