//! The virtual machine monitor: builds an i440FX PC on KVM and runs it.
//!
//! [`run`] is the whole lifecycle of a VM process: load the firmware, build
//! a [`machine::Machine`], wait for it to stop, and act on why (the guest
//! reset, powered off, crashed; the user interrupted) as the definition's
//! `on_reboot` / `on_poweroff` / `on_crash` say.

mod acpi;
mod boot;
pub mod config;
pub mod confinement;
pub mod console;
mod cpuid;
mod display;
mod events;
pub mod firmware;
mod input;
pub mod inspect;
mod ioevents;
mod irq;
pub mod kernel_boot;
pub mod layout;
mod machine;
pub mod media;
pub mod memory;
mod msrs;
mod network;
pub mod page_tables;
mod runner;
mod table_loader;
mod usb;
mod vcpu;

use std::sync::atomic::AtomicBool;

pub use config::{
    DirectBoot, DiskBus, DiskConfig, DiskKind, LifecycleAction, NicBackend, NicConfig, VideoConfig,
    VideoModel, VmConfig,
};
pub use console::{ConsoleIo, SharedWriter};
pub use events::Request;
pub use input::InputRouter;
pub use runner::{VmEvent, VmHandle, VmRunner, VmStatus};
pub use vcpu::{KvmFailure, StopReason, VcpuRegisters};

use crate::devices::pci::PciError;
use crate::devices::BusError;

/// Errors that keep a VM from starting or running.
#[derive(Debug, thiserror::Error)]
pub enum VmmError {
    #[error("KVM is not available: {0}. Vireo needs /dev/kvm (hardware virtualization enabled in the firmware setup, the kvm module loaded, and read/write access — usually membership of the `kvm` group)")]
    NoKvm(#[source] kvm_ioctls::Error),
    #[error("KVM could not {what}: {source}")]
    Kvm {
        what: &'static str,
        #[source]
        source: kvm_ioctls::Error,
    },
    #[error(transparent)]
    Firmware(#[from] firmware::FirmwareError),
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    #[error("machine wiring: {0}")]
    Bus(#[from] BusError),
    #[error("machine wiring: {0}")]
    Pci(#[from] PciError),
    #[error("firmware configuration: {0}")]
    FwCfg(#[from] crate::devices::fw_cfg::FwCfgError),
    #[error("disk {target}: {source}")]
    Disk {
        target: String,
        #[source]
        source: crate::storage::OpenError,
    },
    #[error("video memory: {0}")]
    Video(#[from] crate::devices::vga::VramError),
    #[error("direct kernel boot: {0}")]
    KernelBoot(#[from] kernel_boot::KernelBootError),
    #[error("direct kernel boot: {0}")]
    DirectBootAcpi(#[from] acpi::DirectTablesError),
    #[error("network interface {mac}: {source}")]
    Nic {
        mac: String,
        #[source]
        source: crate::net::NetError,
    },
    #[error("invalid machine configuration: {0}")]
    Config(String),
    #[error("cannot start a thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl VmmError {
    fn kvm(what: &'static str) -> impl Fn(kvm_ioctls::Error) -> Self {
        move |source| Self::Kvm { what, source }
    }
}

/// How a VM's run ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The guest powered off (or rebooted with `on_reboot=destroy`).
    PoweredOff,
    /// The user stopped it.
    Interrupted,
    /// The guest crashed (triple fault) and `on_crash` said destroy.
    Crashed { vcpu: u32, rip: u64 },
    /// KVM could not run the guest.
    KvmFailure(KvmFailure),
}

/// The most vCPUs a VM may have: KVM's hard limit (KVM_CAP_MAX_VCPUS), and
/// 255, because the MADT gives each vCPU an 8-bit local APIC id (0xff is the
/// broadcast id; there are no x2APIC entries). More vCPUs than host CPUs is
/// allowed, as on QEMU: they time-slice (see [`recommended_vcpus`]).
pub fn max_vcpus(kvm: &kvm_ioctls::Kvm) -> u32 {
    kvm.get_max_vcpus().min(MAX_XAPIC_VCPUS) as u32
}

/// Local APIC ids 0..=254; 255 addresses every CPU.
const MAX_XAPIC_VCPUS: usize = 255;

/// The most vCPUs that do not overcommit the host: its usable CPUs, and
/// KVM's recommended maximum (KVM_CAP_NR_VCPUS, the online CPU count).
pub fn recommended_vcpus(kvm: &kvm_ioctls::Kvm) -> u32 {
    let host = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    host.min(kvm.get_nr_vcpus()).min(MAX_XAPIC_VCPUS) as u32
}

/// Runs the VM described by `config` until it powers off, crashes (per
/// `on_crash`), fails, or `interrupted` becomes true.
pub fn run(
    config: &VmConfig,
    console: &ConsoleIo,
    interrupted: &AtomicBool,
) -> Result<Outcome, VmmError> {
    VmRunner::new(config.clone(), console.clone()).run(interrupted, false)
}
