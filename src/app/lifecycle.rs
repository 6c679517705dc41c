//! The lifecycle of one VM as the window sees it: a pure state machine
//! that decides whether a user's request is carried out, ignored because
//! it is already done or under way, or refused with a reason.
//!
//! The window asks [`Lifecycle::request`] before starting any operation
//! and enables a button only when [`Lifecycle::allows`] says so. A double
//! click, or a click that races a state change seen by the poller, then
//! costs nothing: the second request is ignored or refused, never sent.
//! (The idea is propolis's request queue.)
//!
//! States come from two places: what the VM's process says
//! ([`Lifecycle::observe`], from polling), and the transitional states the
//! window enters while one of its own operations runs, left when the
//! operation reports back ([`Lifecycle::finished`]).

use std::fmt;

/// What the user sees in the list and on the VM's page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum VmState {
    ShutOff,
    Running,
    Paused,
    /// Stopped at a guest crash, kept for inspection (`<on_crash>preserve`).
    Crashed,
    /// The guest powered off and `<on_poweroff>preserve` keeps its process
    /// (QMP status "shutdown") until it is forced off.
    PoweredOff,
    /// The VM's process is being started.
    Starting,
    /// The guest was asked to shut down (ACPI) and has not yet.
    ShuttingDown,
    /// Force Off under way.
    Stopping,
    Pausing,
    Resuming,
    Rebooting,
    /// Delete under way.
    Deleting,
}

impl VmState {
    /// States the VM's process can report, as opposed to the window's own
    /// transitional ones.
    pub fn is_settled(self) -> bool {
        matches!(
            self,
            Self::ShutOff | Self::Running | Self::Paused | Self::Crashed | Self::PoweredOff
        )
    }

    /// A VM process exists (its console can be shown).
    pub fn is_active(self) -> bool {
        !matches!(self, Self::ShutOff | Self::Starting | Self::Deleting)
    }
}

/// What a user can ask of a VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    Start,
    Pause,
    Resume,
    /// Ask the guest to power off (ACPI power button).
    ShutDown,
    Reboot,
    /// Pull the plug.
    ForceOff,
    Delete,
    Clone,
    Screenshot,
    SendKey,
}

impl Action {
    pub const ALL: [Action; 10] = [
        Action::Start,
        Action::Pause,
        Action::Resume,
        Action::ShutDown,
        Action::Reboot,
        Action::ForceOff,
        Action::Delete,
        Action::Clone,
        Action::Screenshot,
        Action::SendKey,
    ];

    /// The transitional state this action puts the VM in while it runs,
    /// if it changes the state at all.
    fn transition(self) -> Option<VmState> {
        match self {
            Action::Start => Some(VmState::Starting),
            Action::Pause => Some(VmState::Pausing),
            Action::Resume => Some(VmState::Resuming),
            Action::ShutDown => Some(VmState::ShuttingDown),
            Action::Reboot => Some(VmState::Rebooting),
            Action::ForceOff => Some(VmState::Stopping),
            Action::Delete => Some(VmState::Deleting),
            Action::Clone | Action::Screenshot | Action::SendKey => None,
        }
    }
}

/// Why a request is refused. `Display` is an English sentence for logs;
/// the window shows its own translated text for each variant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The VM must be running for this.
    NotRunning,
    /// The VM must be shut off for this.
    NotShutOff,
    /// The VM is paused; resume it first.
    Paused,
    /// Another operation is under way.
    Busy(VmState),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::NotRunning => f.write_str("the VM is not running"),
            Refusal::NotShutOff => f.write_str("the VM must be shut off first"),
            Refusal::Paused => f.write_str("the VM is paused; resume it first"),
            Refusal::Busy(state) => write!(f, "the VM is busy ({state:?})"),
        }
    }
}

/// The answer to a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// Carry it out.
    Accept,
    /// Already done or already under way: do nothing, say nothing.
    Ignore,
    Refuse(Refusal),
}

/// One VM's lifecycle.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lifecycle {
    state: VmState,
}

impl Lifecycle {
    /// Starts from what the VM's process last reported.
    pub fn new(observed: VmState) -> Self {
        Lifecycle { state: observed }
    }

    pub fn state(&self) -> VmState {
        self.state
    }

    /// What `action` would get now, without changing anything.
    pub fn decide(&self, action: Action) -> Decision {
        use Action as A;
        use VmState as S;
        let state = self.state;
        // While an operation of the window's own runs, only Force Off may
        // interrupt a guest that is taking its time to shut down.
        let busy = !state.is_settled() && state != S::ShuttingDown;
        if busy {
            return match action.transition() {
                Some(t) if t == state => Decision::Ignore,
                _ => Decision::Refuse(Refusal::Busy(state)),
            };
        }
        match (action, state) {
            (A::Start, S::ShutOff) => Decision::Accept,
            // A crashed or preserved VM's process is kept for inspection
            // until forced off.
            (A::Start, S::Crashed | S::PoweredOff) => Decision::Refuse(Refusal::NotShutOff),
            (A::Start, _) => Decision::Ignore,

            (A::Pause, S::Running) => Decision::Accept,
            (A::Pause, S::Paused) => Decision::Ignore,
            (A::Resume, S::Paused) => Decision::Accept,
            (A::Resume, S::Running) => Decision::Ignore,
            (A::Pause | A::Resume, S::ShuttingDown) => Decision::Refuse(Refusal::Busy(state)),
            (A::Pause | A::Resume, _) => Decision::Refuse(Refusal::NotRunning),

            (A::ShutDown, S::Running) => Decision::Accept,
            (A::ShutDown, S::ShuttingDown) => Decision::Ignore,
            (A::ShutDown | A::Reboot, S::Paused) => Decision::Refuse(Refusal::Paused),
            (A::ShutDown, _) => Decision::Ignore,
            (A::Reboot, S::Running) => Decision::Accept,
            (A::Reboot, S::ShuttingDown) => Decision::Refuse(Refusal::Busy(state)),
            (A::Reboot, _) => Decision::Refuse(Refusal::NotRunning),

            (A::ForceOff, S::ShutOff) => Decision::Ignore,
            (A::ForceOff, _) => Decision::Accept,

            (A::Delete | A::Clone, S::ShutOff) => Decision::Accept,
            (A::Delete | A::Clone, _) => Decision::Refuse(Refusal::NotShutOff),

            (
                A::Screenshot,
                S::Running | S::Paused | S::Crashed | S::PoweredOff | S::ShuttingDown,
            ) => Decision::Accept,
            (A::SendKey, S::Running | S::ShuttingDown) => Decision::Accept,
            (A::SendKey, S::Paused) => Decision::Refuse(Refusal::Paused),
            (A::Screenshot | A::SendKey, _) => Decision::Refuse(Refusal::NotRunning),
        }
    }

    /// Whether the button for `action` should be enabled.
    pub fn allows(&self, action: Action) -> bool {
        self.decide(action) == Decision::Accept
    }

    /// Decides on `action` and, when accepted, enters its transitional
    /// state. The caller runs the operation only on `Accept` and reports
    /// its end with [`Lifecycle::finished`].
    pub fn request(&mut self, action: Action) -> Decision {
        let decision = self.decide(action);
        if decision == Decision::Accept {
            if let Some(state) = action.transition() {
                self.state = state;
            }
        }
        decision
    }

    /// The operation for `action` ended; `observed` is the VM's state as
    /// its process reports it now. A report for an operation that is no
    /// longer the current one (say, Shut Down overtaken by Force Off) is
    /// dropped.
    pub fn finished(&mut self, action: Action, succeeded: bool, observed: VmState) {
        let Some(transition) = action.transition() else {
            return;
        };
        if self.state != transition {
            return;
        }
        // Asking the guest to shut down succeeds long before the guest
        // does; wait for the poller to see it go.
        if action == Action::ShutDown && succeeded && observed == VmState::Running {
            return;
        }
        self.state = observed;
    }

    /// The poller saw the VM's process in `observed`. Transitional states
    /// of the window's own operations wait for those operations instead;
    /// a pending shutdown ends when the VM is seen off (or paused, or
    /// crashed).
    pub fn observe(&mut self, observed: VmState) {
        debug_assert!(observed.is_settled(), "observed {observed:?}");
        match self.state {
            VmState::ShuttingDown if observed == VmState::Running => {}
            state if state.is_settled() || state == VmState::ShuttingDown => self.state = observed,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Action as A;
    use super::VmState as S;
    use super::*;

    #[test]
    fn a_shut_off_vm_can_be_started_deleted_or_cloned_and_nothing_else() {
        let vm = Lifecycle::new(S::ShutOff);
        let allowed: Vec<_> = A::ALL.into_iter().filter(|a| vm.allows(*a)).collect();
        assert_eq!(allowed, [A::Start, A::Delete, A::Clone]);
    }

    #[test]
    fn a_running_vm_allows_the_console_actions() {
        let vm = Lifecycle::new(S::Running);
        let allowed: Vec<_> = A::ALL.into_iter().filter(|a| vm.allows(*a)).collect();
        assert_eq!(
            allowed,
            [
                A::Pause,
                A::ShutDown,
                A::Reboot,
                A::ForceOff,
                A::Screenshot,
                A::SendKey
            ]
        );
    }

    #[test]
    fn a_paused_vm_can_be_resumed_forced_off_or_photographed() {
        let vm = Lifecycle::new(S::Paused);
        let allowed: Vec<_> = A::ALL.into_iter().filter(|a| vm.allows(*a)).collect();
        assert_eq!(allowed, [A::Resume, A::ForceOff, A::Screenshot]);
        assert_eq!(vm.decide(A::ShutDown), Decision::Refuse(Refusal::Paused));
    }

    #[test]
    fn a_double_click_on_start_starts_once() {
        let mut vm = Lifecycle::new(S::ShutOff);
        assert_eq!(vm.request(A::Start), Decision::Accept);
        assert_eq!(vm.state(), S::Starting);
        assert_eq!(vm.request(A::Start), Decision::Ignore);
        vm.finished(A::Start, true, S::Running);
        assert_eq!(vm.state(), S::Running);
        assert_eq!(vm.request(A::Start), Decision::Ignore);
    }

    #[test]
    fn a_double_click_on_force_off_stops_once() {
        let mut vm = Lifecycle::new(S::Running);
        assert_eq!(vm.request(A::ForceOff), Decision::Accept);
        assert_eq!(vm.request(A::ForceOff), Decision::Ignore);
        vm.finished(A::ForceOff, true, S::ShutOff);
        assert_eq!(vm.request(A::ForceOff), Decision::Ignore);
        assert_eq!(vm.state(), S::ShutOff);
    }

    #[test]
    fn other_actions_wait_for_a_running_operation() {
        let mut vm = Lifecycle::new(S::ShutOff);
        vm.request(A::Start);
        for action in [A::Delete, A::Pause, A::ForceOff, A::Screenshot] {
            assert_eq!(
                vm.request(action),
                Decision::Refuse(Refusal::Busy(S::Starting))
            );
        }
        assert!(A::ALL.into_iter().all(|a| !vm.allows(a)));
    }

    #[test]
    fn the_poller_does_not_overrule_an_operation_under_way() {
        let mut vm = Lifecycle::new(S::ShutOff);
        vm.request(A::Start);
        // The process is not up yet; the poller still sees it off.
        vm.observe(S::ShutOff);
        assert_eq!(vm.state(), S::Starting);
        vm.finished(A::Start, true, S::Running);
        assert_eq!(vm.state(), S::Running);
    }

    #[test]
    fn a_failed_start_returns_to_what_the_vm_is() {
        let mut vm = Lifecycle::new(S::ShutOff);
        vm.request(A::Start);
        vm.finished(A::Start, false, S::ShutOff);
        assert_eq!(vm.state(), S::ShutOff);
        assert!(vm.allows(A::Start));
    }

    #[test]
    fn shutting_down_lasts_until_the_guest_is_off() {
        let mut vm = Lifecycle::new(S::Running);
        assert_eq!(vm.request(A::ShutDown), Decision::Accept);
        // The power button was pressed; the guest is still running.
        vm.finished(A::ShutDown, true, S::Running);
        assert_eq!(vm.state(), S::ShuttingDown);
        vm.observe(S::Running);
        assert_eq!(vm.state(), S::ShuttingDown);
        assert_eq!(vm.request(A::ShutDown), Decision::Ignore);
        vm.observe(S::ShutOff);
        assert_eq!(vm.state(), S::ShutOff);
    }

    #[test]
    fn a_guest_without_acpi_stays_running_after_shut_down_fails() {
        let mut vm = Lifecycle::new(S::Running);
        vm.request(A::ShutDown);
        vm.finished(A::ShutDown, false, S::Running);
        assert_eq!(vm.state(), S::Running);
    }

    #[test]
    fn force_off_overtakes_a_slow_shutdown_and_the_late_report_is_dropped() {
        let mut vm = Lifecycle::new(S::Running);
        vm.request(A::ShutDown);
        vm.finished(A::ShutDown, true, S::Running);
        assert_eq!(vm.request(A::ForceOff), Decision::Accept);
        assert_eq!(vm.state(), S::Stopping);
        // A stale report from the shutdown request changes nothing.
        vm.finished(A::ShutDown, true, S::Running);
        assert_eq!(vm.state(), S::Stopping);
        vm.finished(A::ForceOff, true, S::ShutOff);
        assert_eq!(vm.state(), S::ShutOff);
    }

    #[test]
    fn a_vm_that_stops_by_itself_is_seen_off() {
        let mut vm = Lifecycle::new(S::Running);
        vm.observe(S::ShutOff);
        assert_eq!(vm.state(), S::ShutOff);
        assert!(vm.allows(A::Start));
    }

    #[test]
    fn running_vms_cannot_be_deleted_or_cloned() {
        let vm = Lifecycle::new(S::Running);
        assert_eq!(vm.decide(A::Delete), Decision::Refuse(Refusal::NotShutOff));
        assert_eq!(vm.decide(A::Clone), Decision::Refuse(Refusal::NotShutOff));
    }

    #[test]
    fn pause_and_resume_are_idempotent() {
        let mut vm = Lifecycle::new(S::Running);
        assert_eq!(vm.request(A::Pause), Decision::Accept);
        assert_eq!(vm.request(A::Pause), Decision::Ignore);
        vm.finished(A::Pause, true, S::Paused);
        assert_eq!(vm.request(A::Pause), Decision::Ignore);
        assert_eq!(vm.request(A::Resume), Decision::Accept);
        vm.finished(A::Resume, true, S::Running);
        assert_eq!(vm.request(A::Resume), Decision::Ignore);
    }

    #[test]
    fn crashed_and_preserved_vms_are_kept_until_forced_off() {
        for kept in [S::Crashed, S::PoweredOff] {
            let mut vm = Lifecycle::new(kept);
            assert_eq!(vm.decide(A::Start), Decision::Refuse(Refusal::NotShutOff));
            assert_eq!(vm.decide(A::Delete), Decision::Refuse(Refusal::NotShutOff));
            assert_eq!(vm.decide(A::ShutDown), Decision::Ignore);
            assert!(vm.allows(A::Screenshot));
            assert!(!vm.allows(A::SendKey));
            assert_eq!(vm.request(A::ForceOff), Decision::Accept);
            vm.finished(A::ForceOff, true, S::ShutOff);
            assert_eq!(vm.decide(A::Start), Decision::Accept);
        }
    }

    #[test]
    fn actions_without_a_transition_leave_the_state_alone() {
        let mut vm = Lifecycle::new(S::Running);
        assert_eq!(vm.request(A::Screenshot), Decision::Accept);
        assert_eq!(vm.request(A::SendKey), Decision::Accept);
        assert_eq!(vm.state(), S::Running);
    }
}
