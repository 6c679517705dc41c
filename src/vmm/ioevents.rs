//! KVM_IOEVENTFD for virtio queue notifications: each queue's notify
//! address is bound to its eventfd, so KVM completes the guest's kick
//! itself and the device's worker thread wakes (see
//! [`crate::devices::virtio::notify`]). Bound with no data match and any
//! length, so Linux's 16-bit and SeaBIOS's writes are caught alike.

use std::sync::{Arc, Mutex};

use kvm_ioctls::{IoEventAddress, NoDatamatch, VmFd};

use crate::devices::virtio::notify::{NotifyBinder, QueueEvents};
use crate::guest_warn;

/// Binds one device's queue eventfds wherever its notify addresses are.
pub struct KvmNotifyBinder {
    vm: Arc<VmFd>,
    events: Arc<QueueEvents>,
    /// (queue, guest physical address) of every binding in place.
    bound: Mutex<Vec<(usize, u64)>>,
}

impl KvmNotifyBinder {
    pub fn new(vm: Arc<VmFd>, events: Arc<QueueEvents>) -> Arc<Self> {
        Arc::new(Self {
            vm,
            events,
            bound: Mutex::new(Vec::new()),
        })
    }
}

impl NotifyBinder for KvmNotifyBinder {
    fn bind(&self, addresses: &[u64]) {
        let mut bound = self.bound.lock().unwrap_or_else(|p| p.into_inner());
        for (queue, address) in bound.drain(..) {
            let Some(event) = self.events.get(queue) else {
                continue;
            };
            if let Err(e) =
                self.vm
                    .unregister_ioevent(event, &IoEventAddress::Mmio(address), NoDatamatch)
            {
                tracing::error!(queue, address, "cannot unbind a virtio notify address: {e}");
            }
        }
        for (queue, &address) in addresses.iter().enumerate() {
            let Some(event) = self.events.get(queue) else {
                break;
            };
            // A failure (another device's binding at the same address,
            // while firmware moves BARs) leaves the kick to the MMIO exit.
            match self
                .vm
                .register_ioevent(event, &IoEventAddress::Mmio(address), NoDatamatch)
            {
                Ok(()) => {
                    tracing::debug!(queue, address, "virtio notify address bound to its eventfd");
                    bound.push((queue, address));
                }
                Err(e) => guest_warn!(
                    queue,
                    address,
                    "cannot bind a virtio notify address to its eventfd ({e}); kicks take the slow path"
                ),
            }
        }
    }
}
