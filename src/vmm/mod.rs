//! The virtual machine monitor: builds an i440FX PC on KVM and runs it.
//!
//! [`run`] is the whole lifecycle of a VM process: load the firmware, build
//! a [`machine::Machine`], wait for it to stop, and act on why (the guest
//! reset, powered off, crashed; the user interrupted) as the definition's
//! `on_reboot` / `on_poweroff` / `on_crash` say.

mod boot;
pub mod config;
pub mod console;
mod cpuid;
mod display;
pub mod firmware;
mod input;
mod irq;
pub mod layout;
mod machine;
pub mod memory;
mod vcpu;

use std::sync::atomic::AtomicBool;

pub use config::{
    DiskBus, DiskConfig, DiskKind, LifecycleAction, VideoConfig, VideoModel, VmConfig,
};
pub use console::{ConsoleIo, SharedWriter};
pub use input::InputRouter;
pub use vcpu::{KvmFailure, StopReason};

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

/// The most vCPUs a VM may have: the host's CPU count (more would only
/// time-slice) and KVM's own limit.
pub fn max_vcpus(kvm: &kvm_ioctls::Kvm) -> u32 {
    let host = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    host.min(kvm.get_max_vcpus()) as u32
}

/// Runs the VM described by `config` until it powers off, crashes (per
/// `on_crash`), fails, or `interrupted` becomes true.
pub fn run(
    config: &VmConfig,
    console: &ConsoleIo,
    interrupted: &AtomicBool,
) -> Result<Outcome, VmmError> {
    let kvm = kvm_ioctls::Kvm::new().map_err(VmmError::NoKvm)?;
    let max = max_vcpus(&kvm);
    if config.vcpus == 0 || config.vcpus > max {
        return Err(VmmError::Config(format!(
            "{} vCPUs requested; this host allows 1 to {max}",
            config.vcpus
        )));
    }
    let (bios_path, bios) = firmware::load_bios(config.loader.as_deref())?;
    tracing::info!(firmware = %bios_path.display(), "starting {}", config.name);
    loop {
        let mut machine = machine::Machine::start(&kvm, config, &bios, console)?;
        let reason = machine.wait(interrupted);
        tracing::info!(?reason, "machine stopped");
        let action = match &reason {
            StopReason::Reset => config.on_reboot,
            StopReason::PowerOff => config.on_poweroff,
            StopReason::TripleFault { .. } => config.on_crash,
            StopReason::Interrupted => return Ok(Outcome::Interrupted),
            StopReason::KvmFailure(failure) => return Ok(Outcome::KvmFailure(failure.clone())),
        };
        match (reason, action) {
            (_, LifecycleAction::Restart) => continue,
            (reason, LifecycleAction::Preserve) => {
                // Keep the machine as it is, vCPUs stopped, for inspection,
                // until the user ends it.
                machine.pause();
                tracing::warn!(
                    ?reason,
                    "the VM is preserved as it stopped; stop it to end it"
                );
                while !interrupted.load(std::sync::atomic::Ordering::Acquire) {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                return Ok(Outcome::Interrupted);
            }
            (StopReason::TripleFault { vcpu, rip }, _) => {
                return Ok(Outcome::Crashed { vcpu, rip })
            }
            _ => return Ok(Outcome::PoweredOff),
        }
    }
}
