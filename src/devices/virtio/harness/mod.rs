//! A host-side harness that drives a real virtio device the way a guest
//! driver does, without a vCPU: guest memory is a `GuestMemoryMmap`, the
//! split rings are laid out in it, the device is found and started through
//! its PCI configuration space and BARs (BAR sizing, capability walk,
//! feature negotiation, MSI-X table, queue registers, DRIVER_OK), kicks go
//! into the eventfd the transport asked the VMM to bind to the queue's
//! notify address (what KVM_IOEVENTFD signals), and completions arrive on
//! the eventfd of the queue's MSI-X vector (what KVM_IRQFD would consume).
//! The device runs on the same worker thread ([`super::notify`]) it runs
//! on inside a VM.
//!
//! It lives in the library, always built, rather than behind `cfg(test)`
//! or a cargo feature: the integration tests (`tests/virtio_blk.rs`) and
//! the hidden `vireo img virtio-bench` verb that `make bench` runs both
//! need it, and a feature would have to be switched on identically for
//! `make test`, `make bench` and clippy to keep them building the same
//! code. It adds no dependency and nothing a VM process calls.
//!
//! - [`ring`]: the driver's half of a split virtqueue.
//! - [`host`]: what KVM is to the device: the notify-address binder and
//!   the MSI-X vectors as eventfds.
//! - [`pci`]: firmware's and Linux `virtio_pci`'s part: BARs, capabilities,
//!   negotiation, MSI-X, queue setup.
//! - [`blk`]: Linux `virtio_blk`'s part: requests in slots, submit, kick,
//!   reap; [`blk::BlkHarness`] is what tests and the benchmark use.

pub mod blk;
pub mod host;
pub mod pci;
pub mod ring;

use std::time::Duration;

pub use blk::{BlkHarness, BlkRequest, Completion, HarnessOptions};

/// Why the harness could not do what it was asked.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// Guest memory could not be created or accessed.
    #[error("guest memory: {0}")]
    Memory(String),
    /// The device did not look or behave like a virtio PCI device should
    /// during bring-up (a structure missing, FEATURES_OK refused...).
    #[error("virtio bring-up failed: {0}")]
    BringUp(String),
    /// An eventfd or the worker thread could not be created or used.
    #[error("host resource: {0}")]
    Host(#[source] std::io::Error),
    /// No completion arrived in time; says what the rings held.
    #[error("no completion within {timeout:?}: {state}")]
    Timeout { timeout: Duration, state: String },
    /// The request does not fit the harness's slots or the ring.
    #[error("request refused by the harness: {0}")]
    Request(String),
}
