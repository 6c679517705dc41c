//! What reaches a VM's runner: machines reporting that they stopped, and
//! requests from whoever controls the VM (the control socket, Ctrl+C).

use std::sync::mpsc;

use super::media::{MediaAnswer, MediaError, MediaRequest};
use super::vcpu::StopReason;

/// A request to the running VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    /// Stop the vCPUs where they are.
    Pause,
    /// Let paused vCPUs go on.
    Resume,
    /// Press the reset button.
    Reset,
    /// Press the power button (ACPI).
    PowerButton,
    /// Pull the plug.
    Quit,
}

pub enum Event {
    /// Machine incarnation `generation` stopped.
    Stopped { generation: u64, reason: StopReason },
    /// A request, answered on the channel with `Ok` or a sentence saying why not.
    Request(Request, mpsc::Sender<Result<(), String>>),
    /// A question or change about removable media.
    Media(MediaRequest, mpsc::Sender<Result<MediaAnswer, MediaError>>),
}

/// How a machine (its vCPUs and devices) tells the runner it stopped.
/// Tagged with the machine's generation, so a late report from a machine
/// that was already replaced after a reset is recognised and ignored.
#[derive(Clone)]
pub struct StopSender {
    tx: mpsc::Sender<Event>,
    generation: u64,
}

impl StopSender {
    pub fn new(tx: mpsc::Sender<Event>, generation: u64) -> Self {
        Self { tx, generation }
    }

    pub fn send(&self, reason: StopReason) {
        let _ = self.tx.send(Event::Stopped {
            generation: self.generation,
            reason,
        });
    }
}
