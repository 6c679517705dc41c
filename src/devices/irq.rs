//! Interrupt lines, as a device sees them.
//!
//! A device holds an [`IrqLine`] and drives its level; the VMM implements it
//! on top of the in-kernel PIC/IOAPIC (`KVM_IRQ_LINE`). Tests use
//! [`FakeIrq`], which records what the device did.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// One interrupt line.
pub trait IrqLine: Send + Sync {
    /// Drives the line high (`true`) or low.
    fn set_level(&self, high: bool);

    /// A rising and a falling edge, for edge-triggered ISA interrupts.
    fn pulse(&self) {
        self.set_level(true);
        self.set_level(false);
    }
}

/// An interrupt line for tests: remembers its level and counts rising edges.
#[derive(Default)]
pub struct FakeIrq {
    level: AtomicBool,
    rising_edges: AtomicUsize,
}

impl FakeIrq {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    pub fn level(&self) -> bool {
        self.level.load(Ordering::SeqCst)
    }

    /// How many times the line went from low to high.
    pub fn rising_edges(&self) -> usize {
        self.rising_edges.load(Ordering::SeqCst)
    }
}

impl IrqLine for FakeIrq {
    fn set_level(&self, high: bool) {
        let was = self.level.swap(high, Ordering::SeqCst);
        if high && !was {
            self.rising_edges.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A line nobody listens to, for devices whose interrupt is not wired.
pub struct NoIrq;

impl IrqLine for NoIrq {
    fn set_level(&self, _high: bool) {}
}
