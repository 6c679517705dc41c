//! Interrupt lines into KVM's in-kernel PIC and IOAPIC, how GSIs reach
//! their pins, and MSI-X messages delivered through irqfd.
//!
//! KVM has one GSI routing table per VM, and KVM_SET_GSI_ROUTING replaces
//! it whole; [`GsiRouting`] owns it: the PC's irqchip routes
//! ([`pc_routes`]) and, above the IOAPIC's pins, one MSI route per MSI-X
//! vector in use. Each vector is a GSI with an eventfd registered as its
//! irqfd ([`KvmMsi`]): a device sends the vector by writing the eventfd,
//! from whichever thread it runs on, and KVM injects the interrupt
//! without a trip through the vCPU thread. A vector's route is rewritten
//! only when the guest changed its message since it was last sent.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use kvm_bindings::{
    kvm_irq_routing_entry, kvm_irq_routing_entry__bindgen_ty_1, kvm_irq_routing_irqchip,
    kvm_irq_routing_msi, KvmIrqRouting, KVM_IRQCHIP_IOAPIC, KVM_IRQCHIP_PIC_MASTER,
    KVM_IRQCHIP_PIC_SLAVE, KVM_IRQ_ROUTING_IRQCHIP, KVM_IRQ_ROUTING_MSI,
};
use kvm_ioctls::VmFd;
use vmm_sys_util::eventfd::{EventFd, EFD_NONBLOCK};

use crate::devices::pci::{MsiMessage, MsiSink};
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

/// A VM's GSI routing table (see the module's comment).
pub struct GsiRouting {
    vm: Arc<VmFd>,
    state: Mutex<RoutingState>,
}

struct RoutingState {
    /// The MSI route of each GSI handed out to an MSI-X vector.
    msi: BTreeMap<u32, MsiMessage>,
    next_gsi: u32,
}

impl GsiRouting {
    /// Installs [`pc_routes`] in `vm` (after KVM_CREATE_IRQCHIP).
    pub fn new(vm: Arc<VmFd>) -> Result<Arc<Self>, kvm_ioctls::Error> {
        let routing = Self {
            vm,
            state: Mutex::new(RoutingState {
                msi: BTreeMap::new(),
                next_gsi: IOAPIC_PINS,
            }),
        };
        routing.commit(&routing.lock())?;
        Ok(Arc::new(routing))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RoutingState> {
        // Every update leaves the map whole; a panic elsewhere cannot tear it.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the whole table: the PC's routes, then the MSI routes.
    fn commit(&self, state: &RoutingState) -> Result<(), kvm_ioctls::Error> {
        let routes = pc_routes();
        let mut table = KvmIrqRouting::new(routes.len() + state.msi.len())
            .map_err(|_| kvm_ioctls::Error::new(libc::ENOMEM))?;
        let entries = table.as_mut_slice();
        for (entry, (gsi, irqchip, pin)) in entries.iter_mut().zip(routes) {
            *entry = kvm_irq_routing_entry {
                gsi,
                type_: KVM_IRQ_ROUTING_IRQCHIP,
                u: kvm_irq_routing_entry__bindgen_ty_1 {
                    irqchip: kvm_irq_routing_irqchip { irqchip, pin },
                },
                ..Default::default()
            };
        }
        let first_msi = entries.len() - state.msi.len();
        for (entry, (&gsi, message)) in entries[first_msi..].iter_mut().zip(&state.msi) {
            *entry = kvm_irq_routing_entry {
                gsi,
                type_: KVM_IRQ_ROUTING_MSI,
                u: kvm_irq_routing_entry__bindgen_ty_1 {
                    msi: kvm_irq_routing_msi {
                        address_lo: message.address as u32,
                        address_hi: (message.address >> 32) as u32,
                        data: message.data,
                        ..Default::default()
                    },
                },
                ..Default::default()
            };
        }
        self.vm.set_gsi_routing(&table)
    }

    /// Points `gsi` (one of [`GsiRouting::msi_vectors`]') at `message`.
    fn set_msi(&self, gsi: u32, message: MsiMessage) -> Result<(), kvm_ioctls::Error> {
        let mut state = self.lock();
        let old = state.msi.insert(gsi, message);
        let result = self.commit(&state);
        if result.is_err() {
            match old {
                Some(old) => state.msi.insert(gsi, old),
                None => state.msi.remove(&gsi),
            };
        }
        result
    }

    /// `count` MSI-X vectors for one function: a GSI and an irqfd each.
    pub fn msi_vectors(self: &Arc<Self>, count: u16) -> Result<Arc<KvmMsi>, kvm_ioctls::Error> {
        let mut vectors = Vec::with_capacity(count as usize);
        for _ in 0..count {
            let gsi = {
                let mut state = self.lock();
                let gsi = state.next_gsi;
                state.next_gsi += 1;
                gsi
            };
            let event = EventFd::new(EFD_NONBLOCK)
                .map_err(|e| kvm_ioctls::Error::new(e.raw_os_error().unwrap_or(libc::EMFILE)))?;
            // A GSI without a route yet: KVM accepts the irqfd and injects
            // nothing until a route exists, which `send` sets first.
            self.vm.register_irqfd(&event, gsi)?;
            vectors.push(MsiVector {
                gsi,
                event,
                routed: Mutex::new(None),
            });
        }
        Ok(Arc::new(KvmMsi {
            routing: self.clone(),
            vectors,
        }))
    }
}

/// One function's MSI-X vectors, delivered through irqfd.
pub struct KvmMsi {
    routing: Arc<GsiRouting>,
    vectors: Vec<MsiVector>,
}

struct MsiVector {
    gsi: u32,
    event: EventFd,
    /// The message the GSI's route holds now.
    routed: Mutex<Option<MsiMessage>>,
}

impl MsiSink for KvmMsi {
    fn send(&self, vector: u16, message: MsiMessage) {
        let Some(v) = self.vectors.get(vector as usize) else {
            return;
        };
        let mut routed = v.routed.lock().unwrap_or_else(|p| p.into_inner());
        if *routed != Some(message) {
            if let Err(e) = self.routing.set_msi(v.gsi, message) {
                tracing::error!(gsi = v.gsi, "KVM_SET_GSI_ROUTING failed: {e}");
                return;
            }
            *routed = Some(message);
        }
        if let Err(e) = v.event.write(1) {
            tracing::error!(gsi = v.gsi, "cannot signal an irqfd: {e}");
        }
    }
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
