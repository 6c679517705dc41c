//! Interrupt lines into KVM's in-kernel PIC and IOAPIC, and how GSIs
//! reach their pins.

use std::sync::Arc;

use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip,
    KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER, KVM_IRQCHIP_PIC_SLAVE,
    KVM_IRQ_ROUTING_IRQCHIP,
};
use kvm_ioctls::VmFd;

use crate::devices::IrqLine;

/// One GSI of the in-kernel irqchip. GSIs 0..16 reach both the PIC and the
/// IOAPIC, as [`route_like_a_pc`] sets them up.
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

/// The IOAPIC's pins.
pub const IOAPIC_PINS: u32 = 24;

/// (GSI, irqchip, pin) for every route of a PC, as QEMU's `pc` machine
/// sets them (`kvm_pc_setup_irq_routing`): ISA IRQs 0..15 to the two PICs,
/// except 2 (the cascade); GSIs 0..23 to the IOAPIC pin of the same
/// number, except that IRQ 0, the PIT, is wired to pin 2, which is what
/// the MADT's interrupt source override (IRQ 0 -> GSI 2) tells the OS.
/// KVM's default routing wires IRQ 0 to pin 0, where an OS that reads the
/// MADT never looks for the timer.
pub fn pc_routes() -> Vec<(u32, u32, u32)> {
    let mut routes = Vec::new();
    for irq in (0..16).filter(|&irq| irq != 2) {
        let chip = if irq < 8 {
            KVM_IRQCHIP_PIC_MASTER
        } else {
            KVM_IRQCHIP_PIC_SLAVE
        };
        routes.push((irq, chip, irq % 8));
    }
    for gsi in (0..IOAPIC_PINS).filter(|&gsi| gsi != 2) {
        let pin = if gsi == 0 { 2 } else { gsi };
        routes.push((gsi, KVM_IRQCHIP_IOAPIC, pin));
    }
    routes
}

/// Installs [`pc_routes`] in `vm` (after KVM_CREATE_IRQCHIP).
pub fn route_like_a_pc(vm: &VmFd) -> Result<(), kvm_ioctls::Error> {
    let routes = pc_routes();
    let mut table =
        KvmIrqRouting::new(routes.len()).map_err(|_| kvm_ioctls::Error::new(libc::ENOMEM))?;
    for (entry, (gsi, irqchip, pin)) in table.as_mut_slice().iter_mut().zip(routes) {
        *entry = kvm_irq_routing_entry {
            gsi,
            type_: KVM_IRQ_ROUTING_IRQCHIP,
            u: kvm_irq_routing_entry__bindgen_ty_1 {
                irqchip: kvm_irq_routing_irqchip { irqchip, pin },
            },
            ..Default::default()
        };
    }
    vm.set_gsi_routing(&table)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pit_reaches_ioapic_pin_2_and_the_other_isa_irqs_their_own_pins() {
        let routes = pc_routes();
        let ioapic = |gsi| {
            routes
                .iter()
                .filter(|r| r.0 == gsi && r.1 == KVM_IRQCHIP_IOAPIC)
                .map(|r| r.2)
                .collect::<Vec<_>>()
        };
        let pic = |gsi| {
            routes
                .iter()
                .filter(|r| r.0 == gsi && r.1 != KVM_IRQCHIP_IOAPIC)
                .map(|r| (r.1, r.2))
                .collect::<Vec<_>>()
        };
        assert_eq!(ioapic(0), [2]);
        assert_eq!(pic(0), [(KVM_IRQCHIP_PIC_MASTER, 0)]);
        assert!(ioapic(2).is_empty() && pic(2).is_empty(), "the cascade");
        assert_eq!(ioapic(4), [4]);
        assert_eq!(pic(9), [(KVM_IRQCHIP_PIC_SLAVE, 1)]);
        assert_eq!(ioapic(11), [11]);
        assert_eq!((ioapic(23), pic(23)), (vec![23], vec![]));
    }
}
