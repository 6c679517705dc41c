//! Queue notifications off the vCPU thread: one eventfd per queue, which
//! the VMM binds to the queue's notify address (KVM_IOEVENTFD), and a
//! worker thread per device that waits on them and runs the device.
//!
//! A guest's kick is then a write KVM completes by itself: the vCPU goes
//! back to the guest at once, and the device processes its queue here.
//! Kicks coalesce in the eventfd's counter, so a guest that kicks a
//! million times costs at most as many wake-ups, each one pass over the
//! queue. A write the eventfd does not catch (the configuration access
//! window, a BAR not bound yet, an odd access) still reaches
//! [`VirtioPciDevice`] as an MMIO exit and is handled there, as before.

use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::pci::VirtioPciDevice;

/// What the transport asks of the VMM when its notify addresses move.
pub trait NotifyBinder: Send + Sync {
    /// Queue `n` is now notified by writes to `addresses[n]` (guest
    /// physical); an empty slice means the BAR does not decode, so
    /// nothing is bound.
    fn bind(&self, addresses: &[u64]);
}

/// One eventfd per queue of a device.
pub struct QueueEvents {
    events: Vec<EventFd>,
}

impl QueueEvents {
    pub fn new(queues: usize) -> std::io::Result<Arc<Self>> {
        let events = (0..queues)
            .map(|_| EventFd::new(EFD_NONBLOCK))
            .collect::<std::io::Result<Vec<_>>>()?;
        Ok(Arc::new(Self { events }))
    }

    /// Queue `n`'s eventfd.
    pub fn get(&self, queue: usize) -> Option<&EventFd> {
        self.events.get(queue)
    }

    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }
}

/// How long the worker sleeps in `poll` before it looks at `stop` again.
const STOP_POLL: Duration = Duration::from_millis(50);

/// Starts the thread that runs `device`'s queues when their eventfds fire,
/// until `stop` is set.
pub fn spawn_queue_worker(
    name: String,
    device: Arc<Mutex<VirtioPciDevice>>,
    events: Arc<QueueEvents>,
    stop: Arc<AtomicBool>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name(name).spawn(move || {
        crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Device);
        let mut fds: Vec<libc::pollfd> = events
            .events
            .iter()
            .map(|e| libc::pollfd {
                fd: e.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        while !stop.load(Ordering::Acquire) {
            // SAFETY: `fds` is a valid array of `fds.len()` pollfds whose
            // descriptors `events` keeps open for the call.
            let ready = unsafe {
                libc::poll(
                    fds.as_mut_ptr(),
                    fds.len() as libc::nfds_t,
                    STOP_POLL.as_millis() as libc::c_int,
                )
            };
            if ready < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    tracing::error!(%error, "virtio queue worker cannot poll; it stops");
                    return;
                }
                continue;
            }
            for (queue, fd) in fds.iter_mut().enumerate() {
                if std::mem::take(&mut fd.revents) & libc::POLLIN == 0 {
                    continue;
                }
                // Reading resets the counter: every kick so far is one pass.
                if events.events[queue].read().is_ok() {
                    device
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .notify_queue(queue as u16);
                }
            }
        }
    })
}

/// The smallest host-side harness: a real virtio-blk driven as a guest
/// driver would drive it, rings in guest memory, kicks through the queue
/// eventfd and completions through an MSI-X vector's eventfd (what KVM's
/// ioeventfd and irqfd are to a guest).
#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::fd::AsRawFd;

    use vm_memory::{Bytes, GuestAddress};

    use super::*;
    use crate::devices::irq::FakeIrq;
    use crate::devices::pci::msix::{MsiMessage, MsiSink, MSIX_ENABLE};
    use crate::devices::pci::PciDevice;
    use crate::devices::virtio::blk::{VIRTIO_BLK_S_OK, VIRTIO_BLK_T_IN};
    use crate::devices::virtio::pci::testing::Driver;
    use crate::devices::virtio::testing::{ram, DriverQueue, DESC_NEXT, DESC_WRITE};
    use crate::devices::virtio::{VirtioBlock, VIRTIO_F_VERSION_1};
    use crate::devices::GuestRam;
    use crate::storage::RawFile;

    /// Records the notify addresses the transport asks to bind.
    #[derive(Default)]
    struct RecordingBinder {
        bound: Mutex<Vec<Vec<u64>>>,
    }

    impl NotifyBinder for RecordingBinder {
        fn bind(&self, addresses: &[u64]) {
            self.bound.lock().unwrap().push(addresses.to_vec());
        }
    }

    /// An irqfd stand-in: each vector writes its own eventfd.
    struct EventFdMsi {
        vectors: Vec<EventFd>,
    }

    impl MsiSink for EventFdMsi {
        fn send(&self, vector: u16, _message: MsiMessage) {
            self.vectors[vector as usize].write(1).unwrap();
        }
    }

    /// Waits up to 10 s for `event`, and takes its count.
    fn wait(event: &EventFd) -> u64 {
        let mut fd = libc::pollfd {
            fd: event.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let ready = unsafe { libc::poll(&mut fd, 1, 10_000) };
        assert_eq!(ready, 1, "no interrupt within 10 s");
        event.read().unwrap()
    }

    const BAR4: u64 = 0x8_0000_0000;
    const HEADER: u64 = 0x20000;
    const DATA: u64 = 0x30000;
    const STATUS: u64 = 0x40000;

    fn read_request(mem: &GuestRam, queue: &mut DriverQueue, sector: u64) {
        let mut header = [0u8; 16];
        header[0..4].copy_from_slice(&VIRTIO_BLK_T_IN.to_le_bytes());
        header[8..16].copy_from_slice(&sector.to_le_bytes());
        mem.write_slice(&header, GuestAddress(HEADER)).unwrap();
        mem.write_obj(0xffu8, GuestAddress(STATUS)).unwrap();
        queue.set_desc(mem, 0, HEADER, 16, DESC_NEXT, 1);
        queue.set_desc(mem, 1, DATA, 512, DESC_NEXT | DESC_WRITE, 2);
        queue.set_desc(mem, 2, STATUS, 1, DESC_WRITE, 0);
        queue.make_available(mem, 0);
    }

    #[test]
    fn a_kick_through_the_eventfd_completes_through_the_msix_vector() {
        let mut file = tempfile::NamedTempFile::new().unwrap();
        file.write_all(&[0u8; 512 * 3]).unwrap();
        file.write_all(&[b'V'; 512]).unwrap();
        let backend = RawFile::open(file.path(), true).unwrap();
        let block = VirtioBlock::new(Box::new(backend), "harness".into());
        let mem = ram();
        let msi = Arc::new(EventFdMsi {
            vectors: (0..2)
                .map(|_| EventFd::new(EFD_NONBLOCK).unwrap())
                .collect(),
        });
        let binder = Arc::new(RecordingBinder::default());
        let dev = VirtioPciDevice::new(Box::new(block), mem.clone(), FakeIrq::new(), msi.clone())
            .with_notify_binder(binder.clone());
        let mut d = Driver::probe(dev);

        // Where the guest puts BAR 4 decides what is bound; memory
        // decoding off unbinds.
        d.dev.write_config(0x20, &(BAR4 as u32 | 0xc).to_le_bytes());
        d.dev
            .write_config(0x24, &((BAR4 >> 32) as u32).to_le_bytes());
        assert!(binder.bound.lock().unwrap().is_empty(), "decoding is off");
        d.dev.write_config(0x04, &0x0006u16.to_le_bytes());
        assert_eq!(
            binder.bound.lock().unwrap().pop(),
            Some(vec![BAR4 + 0x3000])
        );
        d.dev.write_config(0x04, &0x0004u16.to_le_bytes());
        assert_eq!(binder.bound.lock().unwrap().pop(), Some(vec![]));

        // Bring-up with queue 0 on MSI-X vector 1.
        d.msix_control(MSIX_ENABLE);
        d.program_vector(0, 0xfee0_0000, 0x40);
        d.program_vector(1, 0xfee0_0000, 0x41);
        assert!(d.negotiate(1 << VIRTIO_F_VERSION_1));
        d.common_write(0x10, 2, 0); // config_msix_vector
        d.common_write(0x16, 2, 0); // queue_select
        d.common_write(0x1a, 2, 1); // queue_msix_vector
        assert_eq!(d.common_read(0x1a, 2), 1);
        let mut queue = DriverQueue::new(16, 0x10000);
        d.setup_queue(0, &queue);
        d.driver_ok();

        let device = Arc::new(Mutex::new(d.dev));
        let events = QueueEvents::new(1).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let worker = spawn_queue_worker(
            "harness".into(),
            device.clone(),
            events.clone(),
            stop.clone(),
        )
        .unwrap();

        read_request(&mem, &mut queue, 3);
        events.get(0).unwrap().write(1).unwrap();
        wait(&msi.vectors[1]);
        assert_eq!(queue.used_idx(&mem), 1);
        assert_eq!(queue.used_entry(&mem, 0), (0, 513));
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(),
            VIRTIO_BLK_S_OK
        );
        let mut data = [0u8; 512];
        mem.read_slice(&mut data, GuestAddress(DATA)).unwrap();
        assert!(data.iter().all(|&b| b == b'V'));

        // A storm of kicks with nothing new: coalesced, harmless; the next
        // request still completes.
        for _ in 0..100_000 {
            events.get(0).unwrap().write(1).unwrap();
        }
        read_request(&mem, &mut queue, 0);
        events.get(0).unwrap().write(1).unwrap();
        while queue.used_idx(&mem) != 2 {
            wait(&msi.vectors[1]);
        }
        assert_eq!(
            mem.read_obj::<u8>(GuestAddress(STATUS)).unwrap(),
            VIRTIO_BLK_S_OK
        );

        // A broken ring (the available index runs ahead by more than the
        // queue) marks the device for reset and says so on vector 0.
        mem.write_obj(
            queue.avail_idx.wrapping_add(100),
            GuestAddress(queue.avail + 2),
        )
        .unwrap();
        events.get(0).unwrap().write(1).unwrap();
        wait(&msi.vectors[0]);

        stop.store(true, Ordering::Release);
        worker.join().unwrap();
    }
}
