//! What KVM is to a virtio device, for a harness without a VM: the
//! notify-address binder the transport calls when its BAR moves (in a VM,
//! KVM_IOEVENTFD; here a table from guest address to the queue's eventfd,
//! which is exactly the match KVM makes on a guest's write), and the
//! device's MSI-X vectors as eventfds (in a VM each is an irqfd, which KVM
//! consumes to inject the interrupt; here the harness waits on it).

use std::os::fd::AsRawFd;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use super::HarnessError;
use crate::devices::pci::msix::{MsiMessage, MsiSink};
use crate::devices::virtio::notify::{NotifyBinder, QueueEvents};

/// The harness's KVM_IOEVENTFD: which queue eventfd a write to a guest
/// address signals.
pub struct IoEventTable {
    events: Arc<QueueEvents>,
    /// (queue, guest physical address) of every binding in place.
    bound: Mutex<Vec<(usize, u64)>>,
}

impl IoEventTable {
    pub fn new(events: Arc<QueueEvents>) -> Arc<Self> {
        Arc::new(Self {
            events,
            bound: Mutex::new(Vec::new()),
        })
    }

    /// A 16-bit write of `value` to guest address `addr`, as KVM handles
    /// it: if an eventfd is bound there, it is signalled and the write is
    /// done (`Ok(true)`); otherwise it would exit to user space (`Ok(false)`)
    /// and the caller must deliver it as an MMIO write.
    pub fn guest_write(&self, addr: u64) -> Result<bool, HarnessError> {
        let queue = self
            .bound
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .find(|&&(_, a)| a == addr)
            .map(|&(queue, _)| queue);
        let Some(event) = queue.and_then(|q| self.events.get(q)) else {
            return Ok(false);
        };
        event.write(1).map_err(HarnessError::Host)?;
        Ok(true)
    }

    /// The addresses bound now, by queue.
    pub fn bound(&self) -> Vec<(usize, u64)> {
        self.bound.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

impl NotifyBinder for IoEventTable {
    fn bind(&self, addresses: &[u64]) {
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        bound.clear();
        bound.extend(
            addresses
                .iter()
                .enumerate()
                .filter(|&(queue, _)| queue < self.events.len())
                .map(|(queue, &addr)| (queue, addr)),
        );
    }
}

/// A function's MSI-X vectors as eventfds (what the VMM registers as
/// irqfds), with the last message each carried.
pub struct VectorEvents {
    vectors: Vec<(EventFd, Mutex<Option<MsiMessage>>)>,
}

impl VectorEvents {
    pub fn new(count: u16) -> Result<Arc<Self>, HarnessError> {
        let vectors = (0..count)
            .map(|_| Ok((EventFd::new(EFD_NONBLOCK)?, Mutex::new(None))))
            .collect::<std::io::Result<Vec<_>>>()
            .map_err(HarnessError::Host)?;
        Ok(Arc::new(Self { vectors }))
    }

    /// The message vector `vector` last sent, if any.
    pub fn last_message(&self, vector: u16) -> Option<MsiMessage> {
        let (_, message) = self.vectors.get(vector as usize)?;
        *message.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes vector `vector`'s count without waiting (0 if none).
    pub fn take(&self, vector: u16) -> u64 {
        self.vectors
            .get(vector as usize)
            .and_then(|(event, _)| event.read().ok())
            .unwrap_or(0)
    }

    /// Waits until vector `vector` fires or `deadline` passes; returns how
    /// many times it fired since last taken (0 on timeout).
    pub fn wait(&self, vector: u16, deadline: Instant) -> Result<u64, HarnessError> {
        let Some((event, _)) = self.vectors.get(vector as usize) else {
            return Ok(0);
        };
        loop {
            if let Ok(count) = event.read() {
                return Ok(count);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(0);
            }
            let mut fd = libc::pollfd {
                fd: event.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            };
            let millis = left.max(Duration::from_millis(1)).as_millis();
            // SAFETY: one valid pollfd, whose descriptor `event` keeps
            // open, for the duration of the call.
            let ready = unsafe { libc::poll(&mut fd, 1, millis.min(i32::MAX as u128) as i32) };
            if ready < 0 {
                let error = std::io::Error::last_os_error();
                if error.kind() != std::io::ErrorKind::Interrupted {
                    return Err(HarnessError::Host(error));
                }
            }
        }
    }
}

impl MsiSink for VectorEvents {
    fn send(&self, vector: u16, message: MsiMessage) {
        let Some((event, last)) = self.vectors.get(vector as usize) else {
            return;
        };
        *last.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
        if let Err(error) = event.write(1) {
            tracing::error!(vector, %error, "harness cannot signal a vector's eventfd");
        }
    }
}
