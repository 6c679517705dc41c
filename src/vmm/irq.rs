//! Interrupt lines into KVM's in-kernel PIC and IOAPIC.

use std::sync::Arc;

use kvm_ioctls::VmFd;

use crate::devices::IrqLine;

/// One GSI of the in-kernel irqchip. GSIs 0..16 reach both the PIC and the
/// IOAPIC, as KVM's default routing sets them up.
pub struct KvmIrq {
    vm: Arc<VmFd>,
    gsi: u32,
}

impl KvmIrq {
    pub fn new(vm: Arc<VmFd>, gsi: u32) -> Arc<Self> {
        Arc::new(Self { vm, gsi })
    }
}

impl IrqLine for KvmIrq {
    fn set_level(&self, high: bool) {
        set_gsi(&self.vm, self.gsi, high);
    }
}

/// Drives `gsi`; a failure means KVM itself is in trouble, which the next
/// KVM_RUN reports, so it is only logged here.
pub fn set_gsi(vm: &VmFd, gsi: u32, high: bool) {
    if let Err(e) = vm.set_irq_line(gsi, high) {
        tracing::error!(gsi, high, "KVM_IRQ_LINE failed: {e}");
    }
}
