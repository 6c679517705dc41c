//! virtio-net (VIRTIO 1.2 §5.1): an Ethernet NIC with one receive and one
//! transmit queue, in front of a [`NetBackend`].
//!
//! Every buffer starts with the 12-byte `struct virtio_net_hdr` of
//! VERSION_1 (§5.1.6); with no offloads negotiated the device ignores it
//! on transmit and writes zeroes (and `num_buffers = 1`) on receive.
//! Features: MAC (config holds the address), STATUS (link always up).
//!
//! Not emulated: checksum and segmentation offloads (`F_CSUM`,
//! `F_GUEST_*`, `F_HOST_*`), mergeable receive buffers, multiqueue, the
//! control queue (promiscuous mode, MAC filters, VLANs, announce), MTU
//! advice and speed/duplex.
//!
//! Transmit runs in the notifying vCPU's exit: frames are copied out of
//! guest memory and handed to the backend, which queues them. Receive runs
//! on the backend's thread: a frame is copied into the next receive
//! buffer, or kept in a short backlog until the driver posts one (frames
//! beyond the backlog are dropped, as a busy wire drops them). A hostile
//! chain (outside RAM, zero-length, looping, a header too short, a frame
//! that does not fit) is returned unused with a warning, never followed.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard};

use virtio_queue::Queue;

use super::{Chain, VirtQueue, VirtioDevice, VirtioError, VirtioInterrupt, VIRTIO_ID_NET};
use crate::devices::GuestRam;
use crate::guest_warn;
use crate::net::{FrameSink, NetBackend, NetError};

/// Feature bits (§5.1.3).
pub const VIRTIO_NET_F_MAC: u32 = 5;
pub const VIRTIO_NET_F_STATUS: u32 = 16;
/// `status` bit: the link is up.
const VIRTIO_NET_S_LINK_UP: u16 = 1;

/// `struct virtio_net_hdr` with VERSION_1 (it includes `num_buffers`).
pub const NET_HDR_LEN: usize = 12;
/// Offset of `num_buffers` in the header.
const NUM_BUFFERS: usize = 10;

pub const RX_QUEUE: u16 = 0;
pub const TX_QUEUE: u16 = 1;
const QUEUE_SIZE: u16 = 256;
const QUEUE_SIZES: [u16; 2] = [QUEUE_SIZE, QUEUE_SIZE];

/// Largest frame accepted from the guest: without segmentation offloads a
/// frame is at most an MTU plus headers; this leaves room for jumbo frames
/// while bounding the copy.
pub const MAX_FRAME: usize = 65535 + 14;
/// Received frames kept while the driver has no buffers posted.
pub const RX_BACKLOG: usize = 256;

/// `struct virtio_net_config` (§5.1.4): mac[6], status.
const CONFIG_LEN: usize = 8;

/// Receive side, shared with the backend's thread.
struct RxState {
    running: Option<RxRunning>,
    backlog: VecDeque<Vec<u8>>,
}

struct RxRunning {
    mem: GuestRam,
    queue: VirtQueue,
    interrupt: Arc<dyn VirtioInterrupt>,
}

/// The [`FrameSink`] the backend delivers to.
struct RxPath {
    state: Mutex<RxState>,
}

impl RxPath {
    fn lock(&self) -> MutexGuard<'_, RxState> {
        // The state stays consistent between statements; a panic elsewhere
        // does not tear it.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl RxState {
    /// Copies backlogged frames into posted receive buffers.
    fn flush(&mut self) {
        let Some(running) = &mut self.running else {
            return;
        };
        let mem = &running.mem;
        let interrupt = running.interrupt.as_ref();
        while !self.backlog.is_empty() {
            let Some(chain) = running.queue.pop(mem, interrupt) else {
                break;
            };
            let Some(frame) = self.backlog.pop_front() else {
                break;
            };
            let written = write_rx(mem, &chain, &frame);
            running
                .queue
                .add_used(mem, chain.head(), written, interrupt);
        }
        running.queue.signal_used(mem, interrupt);
    }
}

/// Writes header and frame into a receive chain; the bytes written, or 0
/// (frame dropped) if the chain cannot hold them.
fn write_rx(mem: &GuestRam, chain: &Chain, frame: &[u8]) -> u32 {
    if chain.readable_len() != 0 {
        guest_warn!(
            head = chain.head(),
            "virtio-net receive buffer has device-readable parts"
        );
        return 0;
    }
    let total = NET_HDR_LEN + frame.len();
    if chain.writable_len() < total as u64 {
        guest_warn!(
            head = chain.head(),
            buffer = chain.writable_len(),
            frame = frame.len(),
            "virtio-net receive buffer too small; frame dropped"
        );
        return 0;
    }
    let mut header = [0u8; NET_HDR_LEN];
    header[NUM_BUFFERS..NUM_BUFFERS + 2].copy_from_slice(&1u16.to_le_bytes());
    let result = chain
        .write_at(mem, 0, &header)
        .and_then(|()| chain.write_at(mem, NET_HDR_LEN as u64, frame));
    match result {
        Ok(()) => total as u32,
        Err(error) => {
            guest_warn!(%error, "virtio-net receive buffer write failed");
            0
        }
    }
}

impl FrameSink for RxPath {
    fn deliver(&self, frame: &[u8]) {
        let mut state = self.lock();
        if state.running.is_none() {
            return; // no driver: the frame falls on the floor
        }
        if state.backlog.len() >= RX_BACKLOG {
            tracing::debug!("virtio-net receive backlog full; dropping a frame");
            return;
        }
        state.backlog.push_back(frame.to_vec());
        state.flush();
    }
}

struct TxRunning {
    mem: GuestRam,
    queue: VirtQueue,
    interrupt: Arc<dyn VirtioInterrupt>,
}

/// A virtio-net device.
pub struct VirtioNet {
    mac: [u8; 6],
    rx: Arc<RxPath>,
    tx: Option<TxRunning>,
    backend: Box<dyn NetBackend>,
}

impl VirtioNet {
    /// A NIC with address `mac`; `backend` is built with the sink that
    /// receives its frames.
    pub fn new(
        mac: [u8; 6],
        backend: impl FnOnce(Arc<dyn FrameSink>) -> Result<Box<dyn NetBackend>, NetError>,
    ) -> Result<Self, NetError> {
        let rx = Arc::new(RxPath {
            state: Mutex::new(RxState {
                running: None,
                backlog: VecDeque::new(),
            }),
        });
        let backend = backend(rx.clone())?;
        Ok(Self {
            mac,
            rx,
            tx: None,
            backend,
        })
    }

    fn transmit(&mut self) {
        let Some(tx) = &mut self.tx else {
            return;
        };
        let backend = &mut self.backend;
        let mem = &tx.mem;
        tx.queue.process(mem, tx.interrupt.as_ref(), |chain| {
            if let Some(frame) = read_tx(mem, chain) {
                backend.send(&frame);
            }
            0
        });
    }
}

/// The frame in a transmit chain, or `None` (with a warning) if the chain
/// is malformed.
fn read_tx(mem: &GuestRam, chain: &Chain) -> Option<Vec<u8>> {
    let len = chain.readable_len();
    if len < NET_HDR_LEN as u64 {
        guest_warn!(
            head = chain.head(),
            len,
            "virtio-net transmit buffer shorter than its header"
        );
        return None;
    }
    let frame_len = len - NET_HDR_LEN as u64;
    if frame_len > MAX_FRAME as u64 {
        guest_warn!(
            head = chain.head(),
            len = frame_len,
            "virtio-net transmit frame too long; dropped"
        );
        return None;
    }
    let mut frame = vec![0u8; frame_len as usize];
    match chain.read_at(mem, NET_HDR_LEN as u64, &mut frame) {
        Ok(()) => Some(frame),
        Err(error) => {
            guest_warn!(%error, "virtio-net transmit buffer read failed");
            None
        }
    }
}

impl VirtioDevice for VirtioNet {
    fn device_type(&self) -> u32 {
        VIRTIO_ID_NET
    }

    fn device_features(&self) -> u64 {
        1 << VIRTIO_NET_F_MAC | 1 << VIRTIO_NET_F_STATUS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &QUEUE_SIZES
    }

    fn read_config(&self, offset: u64, data: &mut [u8]) {
        let mut config = [0u8; CONFIG_LEN];
        config[..6].copy_from_slice(&self.mac);
        config[6..8].copy_from_slice(&VIRTIO_NET_S_LINK_UP.to_le_bytes());
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| config.get(o))
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
        let mut queues = queues.into_iter();
        let (Some(rx), Some(tx), None) = (queues.next(), queues.next(), queues.next()) else {
            return Err(VirtioError::QueueCount { expected: 2, got });
        };
        self.tx = Some(TxRunning {
            mem: mem.clone(),
            queue: VirtQueue::new(TX_QUEUE, tx),
            interrupt: interrupt.clone(),
        });
        let mut state = self.rx.lock();
        state.backlog.clear();
        state.running = Some(RxRunning {
            mem,
            queue: VirtQueue::new(RX_QUEUE, rx),
            interrupt,
        });
        Ok(())
    }

    fn reset(&mut self) {
        self.tx = None;
        let mut state = self.rx.lock();
        state.running = None;
        state.backlog.clear();
    }

    fn queue_notify(&mut self, queue: u16) {
        match queue {
            RX_QUEUE => self.rx.lock().flush(),
            TX_QUEUE => self.transmit(),
            _ => guest_warn!(
                queue,
                "virtio-net notification for a queue it does not have"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use vm_memory::{Bytes, GuestAddress};

    use super::super::testing::*;
    use super::*;

    /// A backend that keeps what the device sent, and hands back its sink.
    #[derive(Clone, Default)]
    struct Wire {
        sent: Arc<Mutex<Vec<Vec<u8>>>>,
        sink: Arc<Mutex<Option<Arc<dyn FrameSink>>>>,
    }

    impl NetBackend for Wire {
        fn send(&mut self, frame: &[u8]) {
            self.sent.lock().unwrap().push(frame.to_vec());
        }
    }

    impl Wire {
        fn sent(&self) -> Vec<Vec<u8>> {
            self.sent.lock().unwrap().clone()
        }
        fn deliver(&self, frame: &[u8]) {
            let sink = self.sink.lock().unwrap().clone().unwrap();
            sink.deliver(frame);
        }
    }

    const MAC: [u8; 6] = [0x52, 0x54, 0, 1, 2, 3];

    struct Setup {
        mem: GuestRam,
        rx: DriverQueue,
        tx: DriverQueue,
        net: VirtioNet,
        wire: Wire,
        irq: Arc<RecordingInterrupt>,
    }

    fn setup() -> Setup {
        let mem = ram();
        let wire = Wire::default();
        let w = wire.clone();
        let mut net = VirtioNet::new(MAC, move |sink| {
            *w.sink.lock().unwrap() = Some(sink);
            Ok(Box::new(w.clone()) as Box<dyn NetBackend>)
        })
        .unwrap();
        let rx = DriverQueue::new(8, 0x10000);
        let tx = DriverQueue::new(8, 0x20000);
        let irq = Arc::new(RecordingInterrupt::default());
        net.activate(mem.clone(), vec![rx.queue(), tx.queue()], irq.clone())
            .unwrap();
        Setup {
            mem,
            rx,
            tx,
            net,
            wire,
            irq,
        }
    }

    #[test]
    fn config_holds_the_mac_and_link_up() {
        let s = setup();
        let mut config = [0xaa; 10];
        s.net.read_config(0, &mut config);
        assert_eq!(&config[..6], &MAC);
        assert_eq!(&config[6..], &[1, 0, 0, 0]);
        assert_eq!(
            s.net.device_features(),
            1 << VIRTIO_NET_F_MAC | 1 << VIRTIO_NET_F_STATUS
        );
    }

    #[test]
    fn transmit_strips_the_header_across_descriptors() {
        let mut s = setup();
        // Header split 8 + (4 + frame), as a driver may do.
        s.mem.write_slice(&[0; 8], GuestAddress(0x4000)).unwrap();
        s.mem
            .write_slice(b"\0\0\0\0hello frame", GuestAddress(0x5000))
            .unwrap();
        s.tx.set_desc(&s.mem, 0, 0x4000, 8, DESC_NEXT, 1);
        s.tx.set_desc(&s.mem, 1, 0x5000, 15, 0, 0);
        s.tx.make_available(&s.mem, 0);
        s.net.queue_notify(TX_QUEUE);
        assert_eq!(s.wire.sent(), vec![b"hello frame".to_vec()]);
        assert_eq!(s.tx.used_idx(&s.mem), 1);
        assert_eq!(s.irq.used(), 1);
    }

    /// Hostile transmit chains are returned unused and sent nowhere; the
    /// good chain after them still goes out and the device stays usable.
    #[test]
    fn hostile_transmit_chains_are_dropped() {
        let mut s = setup();
        s.mem.write_slice(&[0u8; 12], GuestAddress(0x4000)).unwrap();
        s.mem.write_slice(b"ok", GuestAddress(0x400c)).unwrap();
        // 0: outside guest RAM (1 MiB).
        s.tx.set_desc(&s.mem, 0, 0xffff_f000, 64, 0, 0);
        // 1: zero length.
        s.tx.set_desc(&s.mem, 1, 0x4000, 0, 0, 0);
        // 2: loops onto itself.
        s.tx.set_desc(&s.mem, 2, 0x4000, 14, DESC_NEXT, 2);
        // 3: shorter than the header.
        s.tx.set_desc(&s.mem, 3, 0x4000, 11, 0, 0);
        // 4: straddles the end of RAM.
        s.tx.set_desc(&s.mem, 4, 0xfff00, 0x200, 0, 0);
        // 5: address that wraps the 64-bit space.
        s.tx.set_desc(&s.mem, 5, u64::MAX - 4, 64, 0, 0);
        // 6: a good frame.
        s.tx.set_desc(&s.mem, 6, 0x4000, 14, 0, 0);
        for head in 0..7 {
            s.tx.make_available(&s.mem, head);
        }
        s.net.queue_notify(TX_QUEUE);
        assert_eq!(s.wire.sent(), vec![b"ok".to_vec()]);
        assert_eq!(s.tx.used_idx(&s.mem), 7);
        for n in 0..7 {
            assert_eq!(s.tx.used_entry(&s.mem, n).1, 0);
        }
        assert!(!s.irq.needs_reset());
    }

    #[test]
    fn an_oversized_transmit_frame_is_dropped() {
        let mut s = setup();
        s.tx.set_desc(
            &s.mem,
            0,
            0x40000,
            (NET_HDR_LEN + MAX_FRAME + 1) as u32,
            0,
            0,
        );
        s.tx.make_available(&s.mem, 0);
        s.net.queue_notify(TX_QUEUE);
        assert!(s.wire.sent().is_empty());
        assert_eq!(s.tx.used_idx(&s.mem), 1);
    }

    #[test]
    fn receive_waits_for_buffers_then_fills_them() {
        let mut s = setup();
        s.wire.deliver(b"early frame");
        assert_eq!(s.rx.used_idx(&s.mem), 0, "no buffer posted yet");
        s.rx.set_desc(&s.mem, 0, 0x6000, 4, DESC_WRITE | DESC_NEXT, 1);
        s.rx.set_desc(&s.mem, 1, 0x7000, 2048, DESC_WRITE, 0);
        s.rx.make_available(&s.mem, 0);
        s.net.queue_notify(RX_QUEUE);
        assert_eq!(s.rx.used_idx(&s.mem), 1);
        assert_eq!(s.rx.used_entry(&s.mem, 0), (0, 12 + 11));
        let mut header = [0xffu8; 12];
        s.mem
            .read_slice(&mut header[..4], GuestAddress(0x6000))
            .unwrap();
        s.mem
            .read_slice(&mut header[4..], GuestAddress(0x7000))
            .unwrap();
        assert_eq!(header[10..], [1, 0], "num_buffers = 1");
        assert_eq!(header[..10], [0; 10]);
        let mut frame = [0u8; 11];
        s.mem.read_slice(&mut frame, GuestAddress(0x7008)).unwrap();
        assert_eq!(&frame, b"early frame");
        assert!(s.irq.used() >= 1);
    }

    /// Hostile receive chains are returned unused (each costing the frame
    /// that did not fit), and never written outside guest RAM.
    #[test]
    fn hostile_receive_chains_are_skipped() {
        let mut s = setup();
        // 0: outside RAM; 1: zero length; 2: readable; 3: too small;
        // 4: good.
        s.rx.set_desc(&s.mem, 0, 0x1_0000_0000, 2048, DESC_WRITE, 0);
        s.rx.set_desc(&s.mem, 1, 0x6000, 0, DESC_WRITE, 0);
        s.rx.set_desc(&s.mem, 2, 0x6000, 2048, 0, 0);
        s.rx.set_desc(&s.mem, 3, 0x6000, 13, DESC_WRITE, 0);
        s.rx.set_desc(&s.mem, 4, 0x7000, 2048, DESC_WRITE, 0);
        for head in 0..5 {
            s.rx.make_available(&s.mem, head);
        }
        s.net.queue_notify(RX_QUEUE);
        s.wire.deliver(b"lost to the small buffer");
        s.wire.deliver(b"lost to the readable one");
        s.wire.deliver(b"kept");
        assert_eq!(s.rx.used_idx(&s.mem), 5);
        let used: Vec<_> = (0..5).map(|n| s.rx.used_entry(&s.mem, n)).collect();
        assert_eq!(used[4], (4, 16));
        assert!(used[..4].iter().all(|&(_, len)| len == 0), "{used:?}");
        let mut frame = [0u8; 4];
        s.mem.read_slice(&mut frame, GuestAddress(0x700c)).unwrap();
        assert_eq!(&frame, b"kept");
        assert!(!s.irq.needs_reset());
    }

    #[test]
    fn the_receive_backlog_is_bounded_and_reset_clears_it() {
        let mut s = setup();
        for _ in 0..RX_BACKLOG + 10 {
            s.wire.deliver(&[0u8; 60]);
        }
        assert_eq!(s.net.rx.lock().backlog.len(), RX_BACKLOG);
        s.net.reset();
        assert!(s.net.rx.lock().backlog.is_empty());
        s.wire.deliver(&[0u8; 60]);
        assert!(s.net.rx.lock().backlog.is_empty(), "no driver, no backlog");
    }
}
