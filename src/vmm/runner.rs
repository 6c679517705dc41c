//! A VM's lifecycle: machine incarnations one after another (a reset
//! builds a fresh one), requests from its controller (pause, resume,
//! reset, power button, quit), and what the definition says to do when the
//! guest resets, powers off or crashes.
//!
//! The runner owns the machine; everyone else talks to it through a
//! [`VmHandle`], whose requests arrive on the same channel as the
//! machine's own stop reports, so the two are handled one at a time.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use super::events::{Event, Request, StopSender};
use super::machine::Machine;
use super::media::{MediaAnswer, MediaError, MediaRequest};
use super::vcpu::StopReason;
use super::{
    firmware, max_vcpus, recommended_vcpus, ConsoleIo, KvmFailure, LifecycleAction, Outcome,
    VmConfig, VmmError,
};

/// Where the VM is, as QMP's `query-status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmStatus {
    /// Firmware and guest are running.
    Running,
    /// Stopped by request; `resume` goes on.
    Paused,
    /// Stopped after a crash, kept for inspection (`on_crash=preserve`).
    GuestPanicked,
    /// KVM could not go on.
    InternalError,
    /// Powered off: the process is about to end, or stays because
    /// `on_poweroff=preserve` (QEMU's -no-shutdown).
    Shutdown,
}

impl VmStatus {
    /// QMP's `RunState` name.
    pub fn qmp_name(self) -> &'static str {
        match self {
            VmStatus::Running => "running",
            VmStatus::Paused => "paused",
            VmStatus::GuestPanicked => "guest-panicked",
            VmStatus::InternalError => "internal-error",
            VmStatus::Shutdown => "shutdown",
        }
    }
}

/// Something that happened to the VM, for listeners (QMP events).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmEvent {
    Stop,
    Resume,
    /// `guest`: the guest asked (as opposed to the controller).
    Reset {
        guest: bool,
    },
    Powerdown,
    Shutdown {
        guest: bool,
        reason: &'static str,
    },
    /// The host or the guest opened (`open`) or closed the tray of CD-ROM
    /// drive `target` (libvirt alias `alias`).
    TrayMoved {
        target: String,
        alias: String,
        open: bool,
    },
}

type Listener = Box<dyn Fn(&VmEvent) + Send + Sync>;
type ReadyHook = Box<dyn FnOnce() + Send>;

/// Talks to a running VM from any thread.
#[derive(Clone)]
pub struct VmHandle {
    tx: mpsc::Sender<Event>,
    status: Arc<Mutex<VmStatus>>,
}

impl VmHandle {
    pub fn status(&self) -> VmStatus {
        *self.status.lock().unwrap()
    }

    /// Sends `request` and waits for the runner's answer.
    pub fn request(&self, request: Request) -> Result<(), String> {
        let (reply, answer) = mpsc::channel();
        self.tx
            .send(Event::Request(request, reply))
            .map_err(|_| "the VM has stopped".to_string())?;
        answer
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| "the VM did not answer".to_string())?
    }

    /// Sends a removable-media request and waits for the runner's answer.
    pub fn media(&self, request: MediaRequest) -> Result<MediaAnswer, MediaError> {
        let (reply, answer) = mpsc::channel();
        self.tx
            .send(Event::Media(request, reply))
            .map_err(|_| MediaError::Unavailable("the VM has stopped".into()))?;
        answer
            .recv_timeout(Duration::from_secs(30))
            .map_err(|_| MediaError::Unavailable("the VM did not answer".into()))?
    }
}

pub struct VmRunner {
    config: VmConfig,
    console: ConsoleIo,
    tx: mpsc::Sender<Event>,
    rx: mpsc::Receiver<Event>,
    status: Arc<Mutex<VmStatus>>,
    listeners: Vec<Listener>,
    on_ready: Option<ReadyHook>,
}

impl VmRunner {
    pub fn new(config: VmConfig, console: ConsoleIo) -> Self {
        let (tx, rx) = mpsc::channel();
        Self {
            config,
            console,
            tx,
            rx,
            status: Arc::new(Mutex::new(VmStatus::Running)),
            listeners: Vec::new(),
            on_ready: None,
        }
    }

    pub fn handle(&self) -> VmHandle {
        VmHandle {
            tx: self.tx.clone(),
            status: self.status.clone(),
        }
    }

    /// Calls `listener` for every [`VmEvent`].
    pub fn on_event(&mut self, listener: impl Fn(&VmEvent) + Send + Sync + 'static) {
        self.listeners.push(Box::new(listener));
    }

    /// Calls `hook` once, when the first machine has been built (its
    /// firmware loaded and disks opened) and is about to run.
    pub fn on_ready(&mut self, hook: ReadyHook) {
        self.on_ready = Some(hook);
    }

    fn emit(&self, event: VmEvent) {
        for listener in &self.listeners {
            listener(&event);
        }
    }

    fn set_status(&self, status: VmStatus) {
        *self.status.lock().unwrap() = status;
    }

    /// Runs the VM until it ends; `interrupted` (Ctrl+C, SIGTERM) ends it too.
    /// `start_paused` keeps the vCPUs stopped until a resume request.
    pub fn run(
        mut self,
        interrupted: &AtomicBool,
        start_paused: bool,
    ) -> Result<Outcome, VmmError> {
        let kvm = kvm_ioctls::Kvm::new().map_err(VmmError::NoKvm)?;
        let max = max_vcpus(&kvm);
        if self.config.vcpus == 0 || self.config.vcpus > max {
            return Err(VmmError::Config(format!(
                "{} vCPUs requested; KVM on this host allows 1 to {max}",
                self.config.vcpus
            )));
        }
        let recommended = recommended_vcpus(&kvm);
        if self.config.vcpus > recommended {
            // Allowed, as QEMU allows it: the vCPUs share the host's CPUs.
            tracing::warn!(
                "{} vCPUs exceed the {recommended} this host runs at once; they will time-slice",
                self.config.vcpus
            );
        }
        let (bios_path, bios) = firmware::load_bios(self.config.loader.as_deref())?;
        tracing::info!(firmware = %bios_path.display(), "starting {}", self.config.name);
        let mut generation = 0;
        let mut paused = start_paused;
        loop {
            generation += 1;
            let stops = StopSender::new(self.tx.clone(), generation);
            let machine = Machine::start(&kvm, &self.config, &bios, &self.console, stops, paused)?;
            self.set_status(if paused {
                VmStatus::Paused
            } else {
                VmStatus::Running
            });
            if let Some(hook) = self.on_ready.take() {
                hook();
            }
            let reason = self.serve(&machine, generation, interrupted, &mut paused);
            tracing::info!(?reason, "machine stopped");
            let action = match &reason {
                StopReason::HostReset => LifecycleAction::Restart,
                StopReason::Reset => self.config.on_reboot,
                StopReason::PowerOff => self.config.on_poweroff,
                StopReason::TripleFault { .. } => self.config.on_crash,
                StopReason::Interrupted => {
                    self.finish(
                        machine,
                        VmEvent::Shutdown {
                            guest: false,
                            reason: "host-qmp-quit",
                        },
                    );
                    return Ok(Outcome::Interrupted);
                }
                StopReason::KvmFailure(failure) => {
                    self.set_status(VmStatus::InternalError);
                    drop(machine);
                    return Ok(Outcome::KvmFailure(KvmFailure::clone(failure)));
                }
            };
            if reason == StopReason::Reset {
                self.emit(VmEvent::Reset { guest: true });
            }
            match (reason, action) {
                (_, LifecycleAction::Restart) => {
                    drop(machine);
                    continue;
                }
                (reason, LifecycleAction::Preserve) => {
                    // Keep the machine as it stopped, for inspection,
                    // until the user ends it.
                    machine.pause();
                    if reason == StopReason::PowerOff {
                        // As QEMU with -no-shutdown: the power-off is
                        // reported and the process stays, in state
                        // "shutdown", not "guest-panicked".
                        self.set_status(VmStatus::Shutdown);
                        self.emit(VmEvent::Shutdown {
                            guest: true,
                            reason: "guest-shutdown",
                        });
                    } else {
                        self.set_status(VmStatus::GuestPanicked);
                    }
                    self.emit(VmEvent::Stop);
                    tracing::warn!(
                        ?reason,
                        "the VM is preserved as it stopped; reset it to start over, or stop it to end it"
                    );
                    let mut still_paused = true;
                    let end = self.serve(&machine, generation, interrupted, &mut still_paused);
                    tracing::info!(?end, "preserved VM ended");
                    if end == StopReason::HostReset {
                        // The reset button starts a new machine, as on QEMU.
                        drop(machine);
                        paused = false;
                        continue;
                    }
                    self.finish(
                        machine,
                        VmEvent::Shutdown {
                            guest: false,
                            reason: "host-qmp-quit",
                        },
                    );
                    return Ok(Outcome::Interrupted);
                }
                (StopReason::TripleFault { vcpu, rip }, _) => {
                    self.finish(
                        machine,
                        VmEvent::Shutdown {
                            guest: true,
                            reason: "guest-panic",
                        },
                    );
                    return Ok(Outcome::Crashed { vcpu, rip });
                }
                (StopReason::Reset, _) => {
                    self.finish(
                        machine,
                        VmEvent::Shutdown {
                            guest: true,
                            reason: "guest-reset",
                        },
                    );
                    return Ok(Outcome::PoweredOff);
                }
                _ => {
                    self.finish(
                        machine,
                        VmEvent::Shutdown {
                            guest: true,
                            reason: "guest-shutdown",
                        },
                    );
                    return Ok(Outcome::PoweredOff);
                }
            }
        }
    }

    fn report_guest_tray_moves(&self, machine: &Machine) {
        for (target, alias, open) in
            super::media::guest_tray_moves(machine.ide(), &self.config.disks)
        {
            self.emit(VmEvent::TrayMoved {
                target,
                alias,
                open,
            });
        }
    }

    fn finish(&self, machine: Machine, event: VmEvent) {
        drop(machine);
        self.set_status(VmStatus::Shutdown);
        self.emit(event);
    }

    /// Handles requests until machine `generation` stops (or is stopped).
    fn serve(
        &mut self,
        machine: &Machine,
        generation: u64,
        interrupted: &AtomicBool,
        paused: &mut bool,
    ) -> StopReason {
        loop {
            if interrupted.load(Ordering::Acquire) {
                return StopReason::Interrupted;
            }
            // The guest's own tray movements, within one 50 ms tick.
            self.report_guest_tray_moves(machine);
            let event = match self.rx.recv_timeout(Duration::from_millis(50)) {
                Ok(event) => event,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => return StopReason::Interrupted,
            };
            match event {
                Event::Stopped {
                    generation: g,
                    reason,
                } if g == generation => return reason,
                Event::Stopped {
                    generation: g,
                    reason,
                } => {
                    tracing::debug!(g, ?reason, "late report from a replaced machine ignored");
                }
                Event::Media(request, reply) => {
                    // Reported first, so events come in the order the
                    // tray moved.
                    self.report_guest_tray_moves(machine);
                    let answer =
                        super::media::handle(machine.ide(), &mut self.config.disks, request);
                    if let Ok(MediaAnswer::Changed {
                        target,
                        alias,
                        tray_moves,
                    }) = &answer
                    {
                        for &open in tray_moves {
                            self.emit(VmEvent::TrayMoved {
                                target: target.clone(),
                                alias: alias.clone(),
                                open,
                            });
                        }
                    }
                    let _ = reply.send(answer);
                }
                Event::Request(request, reply) => {
                    let answer = match request {
                        Request::Pause => {
                            if !*paused {
                                machine.pause();
                                *paused = true;
                                self.set_status(VmStatus::Paused);
                                self.emit(VmEvent::Stop);
                            }
                            Ok(())
                        }
                        Request::Resume => {
                            let status = *self.status.lock().unwrap();
                            if status == VmStatus::GuestPanicked {
                                Err(
                                    "the guest crashed and is kept for inspection; it cannot go on"
                                        .to_string(),
                                )
                            } else if status == VmStatus::Shutdown {
                                Err("the guest powered off; reset it to start it again".to_string())
                            } else {
                                if *paused {
                                    machine.resume();
                                    *paused = false;
                                    self.set_status(VmStatus::Running);
                                    self.emit(VmEvent::Resume);
                                }
                                Ok(())
                            }
                        }
                        Request::Reset => {
                            let _ = reply.send(Ok(()));
                            self.emit(VmEvent::Reset { guest: false });
                            // Like the reset button: a new machine, whatever on_reboot says.
                            *paused = false;
                            return StopReason::HostReset;
                        }
                        Request::PowerButton => {
                            let pressed = machine.power_button().map_err(|e| e.to_string());
                            if pressed.is_ok() {
                                self.emit(VmEvent::Powerdown);
                            }
                            pressed
                        }
                        Request::Quit => {
                            let _ = reply.send(Ok(()));
                            return StopReason::Interrupted;
                        }
                    };
                    let _ = reply.send(answer);
                }
            }
        }
    }
}
