//! A machine held still before its first instruction, so a test (or a
//! debugging tool) can read what the VMM prepared — guest memory, vCPU
//! registers, the memory map — then let it run and pause it again to see
//! where it got. The normal lifecycle is [`super::VmRunner`]; this skips
//! its lifecycle handling (resets and power-off just end the run).

use std::sync::mpsc;
use std::time::Duration;

use super::events::{Event, StopSender};
use super::kernel_boot::{Framebuffer, KernelEntry};
use super::machine::Machine;
use super::vcpu::{StopReason, VcpuRegisters};
use super::{firmware, ConsoleIo, VmConfig, VmmError};
use crate::devices::fw_cfg::E820Entry;
use crate::devices::GuestRam;

/// A built machine whose vCPUs wait at their first instruction.
pub struct HeldMachine {
    machine: Machine,
    events: mpsc::Receiver<Event>,
    _kvm: kvm_ioctls::Kvm,
}

impl HeldMachine {
    /// Builds the machine for `config` with every vCPU parked before it
    /// runs anything.
    pub fn start(config: &VmConfig, console: &ConsoleIo) -> Result<Self, VmmError> {
        let kvm = kvm_ioctls::Kvm::new().map_err(VmmError::NoKvm)?;
        let (_, bios) = firmware::load_bios(config.loader.as_deref())?;
        let (tx, events) = mpsc::channel();
        let machine = Machine::start(&kvm, config, &bios, console, StopSender::new(tx, 1), true)?;
        if !machine.wait_parked(Duration::from_secs(10)) {
            return Err(VmmError::Config(
                "the vCPUs did not stop at power-on".into(),
            ));
        }
        Ok(Self {
            machine,
            events,
            _kvm: kvm,
        })
    }

    pub fn ram(&self) -> &GuestRam {
        &self.machine.memory().ram
    }

    /// The memory map a directly booted kernel is given for this machine's RAM.
    pub fn kernel_e820(&self) -> Vec<E820Entry> {
        let memory = self.machine.memory();
        super::kernel_boot::e820_map(memory.low_ram, memory.high_ram)
    }

    pub fn framebuffer(&self) -> Option<Framebuffer> {
        self.machine.framebuffer()
    }

    pub fn kernel_entry(&self) -> Option<KernelEntry> {
        self.machine.kernel_entry()
    }

    /// vCPU `id`'s registers at power-on or the last [`Self::pause`].
    pub fn registers(&self, id: u32) -> Option<VcpuRegisters> {
        self.machine.registers(id)
    }

    pub fn resume(&self) {
        self.machine.resume();
    }

    pub fn pause(&self) {
        self.machine.pause();
    }

    /// Why the machine stopped by itself, if it has.
    pub fn stopped(&self) -> Option<StopReason> {
        match self.events.try_recv() {
            Ok(Event::Stopped { reason, .. }) => Some(reason),
            _ => None,
        }
    }
}
