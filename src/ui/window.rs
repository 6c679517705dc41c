//! The main window: the list of VMs, the selected VM's page, and every
//! action on a VM. Each action asks the VM's [`Lifecycle`] first, runs on
//! a worker thread, and reports back; a poller thread keeps states and
//! thumbnails current. The GTK thread never waits on a VM or a disk.

use std::collections::HashMap;
use std::path::PathBuf;
use std::time::Duration;

use adw::prelude::*;
use relm4::prelude::*;

use super::connection::{ConnectionWindow, Page as ConnectionPage};
use super::i18n::gettext_f;
use super::vm_list::{VmList, THUMBNAIL_WIDTH};
use super::vm_page::VmPage;
use super::wizard::{NewVmWizard, WizardOutput};
use super::{gettext, Startup};
use crate::app::host_check::{self, KvmProblem};
use crate::app::inventory::{self, VmSummary};
use crate::app::lifecycle::{Action, Decision, Lifecycle, Refusal, VmState};
use crate::app::operations;
use crate::app::preferences::{Preferences, ReleaseKeys};
use crate::definitions::DomainStore;
use crate::vm_process::RunFiles;

/// How often the poller asks every running VM for its state.
const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Thumbnails are refreshed every this many polls.
const THUMBNAIL_EVERY: u32 = 2;

/// A downscaled screen, RGBA, made on the poller thread.
#[derive(Debug)]
pub struct Thumbnail {
    width: u32,
    height: u32,
    rgba: Vec<u8>,
}

/// Keys the Send Key menu offers, as QEMU key names.
const SEND_KEYS: &[(&str, &str)] = &[
    ("ctrl+alt+delete", "Ctrl+Alt+Del"),
    ("ctrl+alt+backspace", "Ctrl+Alt+Backspace"),
    ("ctrl+alt+f1", "Ctrl+Alt+F1"),
    ("ctrl+alt+f2", "Ctrl+Alt+F2"),
    ("ctrl+alt+f3", "Ctrl+Alt+F3"),
    ("ctrl+alt+f4", "Ctrl+Alt+F4"),
    ("ctrl+alt+f5", "Ctrl+Alt+F5"),
    ("ctrl+alt+f6", "Ctrl+Alt+F6"),
    ("ctrl+alt+f7", "Ctrl+Alt+F7"),
    ("ctrl+alt+f8", "Ctrl+Alt+F8"),
    ("ctrl+alt+f9", "Ctrl+Alt+F9"),
    ("ctrl+alt+f10", "Ctrl+Alt+F10"),
    ("ctrl+alt+f11", "Ctrl+Alt+F11"),
    ("ctrl+alt+f12", "Ctrl+Alt+F12"),
    ("print", "PrintScreen"),
];

/// The `vm.` actions and the lifecycle action each one asks for.
const VM_ACTIONS: &[(&str, Action)] = &[
    ("start", Action::Start),
    ("pause", Action::Pause),
    ("resume", Action::Resume),
    ("shutdown", Action::ShutDown),
    ("reboot", Action::Reboot),
    ("force-off", Action::ForceOff),
    ("delete", Action::Delete),
    ("clone", Action::Clone),
    ("screenshot", Action::Screenshot),
];

#[derive(Debug)]
pub enum AppMsg {
    Inventory(Vec<VmSummary>),
    Thumbnail(String, Thumbnail),
    Selected(Option<String>),
    /// A `vm.` action on the selected VM.
    Request(Action),
    SendKey(String),
    /// The user confirmed a dialog for `action` (with its text input).
    Confirmed(String, Action, ConfirmInput),
    NewVm,
    WizardDone(WizardOutput),
    Demo,
    ToggleFullscreen,
    SetScaleToFit(bool),
    About,
    Preferences,
    /// A preference changed in the Preferences window (already saved).
    PreferencesChanged(Preferences),
    /// Open Connection Details on this page.
    Connection(ConnectionPage),
    /// Add Connection… (a libvirt host).
    AddConnection,
    /// Copy the selected (shut-off) VM to a libvirt host.
    CopyTo,
}

/// What an action needs beyond the VM's name: what a confirmation dialog
/// collected, or the keys Send Key sends.
#[derive(Debug, Clone, Default)]
pub struct ConfirmInput {
    pub delete_storage: bool,
    pub clone_name: String,
    /// Send Key's combination, `ctrl+alt+delete`.
    pub keys: String,
}

#[derive(Debug)]
pub enum CmdOut {
    Done {
        name: String,
        action: Action,
        result: Result<Option<PathBuf>, String>,
        observed: VmState,
    },
    DemoReady(Result<String, String>),
    /// The pools the Preferences window offers, read off the GTK thread.
    PoolsForPreferences(Vec<String>),
}

pub struct App {
    window: adw::ApplicationWindow,
    toasts: adw::ToastOverlay,
    list: VmList,
    page: VmPage,
    content: gtk::Stack,
    header_title: adw::WindowTitle,
    switcher: adw::ViewSwitcherTitle,
    actions: gtk::gio::SimpleActionGroup,
    pause_button: gtk::Button,
    resume_button: gtk::Button,
    /// The content header's VM controls, hidden while no VM is shown.
    vm_controls: Vec<gtk::Widget>,
    summaries: Vec<VmSummary>,
    lifecycles: HashMap<String, Lifecycle>,
    selected: Option<String>,
    /// The VM whose serial console and details the page shows.
    shown: Option<(String, bool)>,
    kvm_problem: Option<KvmProblem>,
    wizard: Option<Controller<NewVmWizard>>,
    /// Select (and start) this VM when it appears in the list.
    pending_select: Option<(String, bool)>,
    console: super::console_host::ConsoleHost,
    preferences: Preferences,
    settings: super::settings::Settings,
    /// Made on first use, then kept so its pages keep their state.
    connection: Option<ConnectionWindow>,
    /// The libvirt connections: their sidebar groups and VM page.
    remote: super::remote::RemoteHosts,
}

pub struct AppWidgets {}

impl Component for App {
    type CommandOutput = CmdOut;
    type Input = AppMsg;
    type Output = ();
    type Init = Startup;
    type Root = adw::ApplicationWindow;
    type Widgets = AppWidgets;

    fn init_root() -> Self::Root {
        let state = super::settings::get().window_state();
        let window = adw::ApplicationWindow::builder()
            .title(gettext("Vireo"))
            .default_width(state.width.max(360))
            .default_height(state.height.max(300))
            .maximized(state.maximized)
            .build();
        // Saved on close, restored on the next start.
        window.connect_close_request(|window| {
            let (width, height) = window.default_size();
            super::settings::get().save_window_state(super::settings::WindowState {
                width,
                height,
                maximized: window.is_maximized(),
            });
            gtk::glib::Propagation::Proceed
        });
        window
    }

    fn init(
        startup: Startup,
        window: Self::Root,
        sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        let list = VmList::new();
        let page = VmPage::new();
        let (sidebar, sidebar_lists) = sidebar(&list);
        let header = ContentHeader::new(&page);
        let kvm_problem = host_check::kvm_problem(&host_check::kvm_device());
        let content = content_stack(&page, kvm_problem.as_ref());
        let content_box = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .hexpand(true)
            .build();
        content_box.append(&header.bar);
        content_box.append(&content);

        let leaflet = adw::Leaflet::builder().can_navigate_back(true).build();
        leaflet.append(&sidebar);
        leaflet.append(&gtk::Separator::new(gtk::Orientation::Vertical));
        leaflet.append(&content_box);
        let toasts = adw::ToastOverlay::new();
        toasts.set_child(Some(&leaflet));
        window.set_content(Some(&toasts));
        let remote = super::remote::RemoteHosts::new(
            &window,
            &toasts,
            list.widget(),
            vec![header.bar.clone().upcast(), content.clone().upcast()],
        );
        sidebar_lists.prepend(&remote.local_heading());
        sidebar_lists.append(&remote.sidebar());
        content_box.append(&remote.page());

        let actions = vm_actions(&sender);
        window.insert_action_group("vm", Some(&actions));
        add_window_actions(&window, &sender);
        let settings = super::settings::get();
        let preferences = settings.preferences();
        if let Some(shortcuts) = shortcuts_window(preferences.release_keys) {
            window.set_help_overlay(Some(&shortcuts));
        }

        let input = sender.input_sender().clone();
        list.widget().connect_row_selected(move |_, row| {
            input.emit(AppMsg::Selected(row.map(VmList::name_of)));
        });

        let console = super::console_host::ConsoleHost::new(&page.console_slot);
        let mut model = App {
            window: window.clone(),
            toasts,
            list,
            page,
            content,
            header_title: header.title,
            switcher: header.switcher.clone(),
            actions,
            vm_controls: vec![
                header.start.upcast(),
                header.shutdown.upcast(),
                header.menu.upcast(),
                header.switcher.upcast(),
            ],
            pause_button: header.pause,
            resume_button: header.resume,
            summaries: Vec::new(),
            lifecycles: HashMap::new(),
            selected: None,
            shown: None,
            kvm_problem,
            wizard: None,
            pending_select: None,
            console,
            preferences,
            settings,
            connection: None,
            remote,
        };
        model
            .console
            .set_scale_to_fit(model.preferences.console_scale_to_fit);
        model
            .console
            .set_release_keys(model.preferences.release_keys);
        // Reselect the VM the window showed last, if it is still there.
        let last = model.settings.last_selected_vm();
        if let Some(name) = &last {
            model.pending_select = Some((name.clone(), false));
        }
        if let Some(action) = model.actions.lookup_action("scale-to-fit") {
            action.change_state(&model.preferences.console_scale_to_fit.to_variant());
        }
        // What the store says, at once; the poller adds what VMs say.
        model.apply_inventory(inventory::list_quickly(), &sender);
        // Gone since: select nothing rather than a VM made later by that name.
        if last.is_some() && model.pending_select.as_ref().map(|p| &p.0) == last.as_ref() {
            model.pending_select = None;
        }
        start_poller(sender.input_sender().clone());
        if startup.demo {
            sender.input(AppMsg::Demo);
        }
        model.refresh_view();
        report_startup(&model.window, model.list.widget());
        ComponentParts {
            model,
            widgets: AppWidgets {},
        }
    }

    fn update(&mut self, msg: AppMsg, sender: ComponentSender<Self>, _root: &Self::Root) {
        match msg {
            AppMsg::Inventory(vms) => self.apply_inventory(vms, &sender),
            AppMsg::Thumbnail(name, thumbnail) => {
                let bytes = gtk::glib::Bytes::from_owned(thumbnail.rgba);
                let texture = gtk::gdk::MemoryTexture::new(
                    thumbnail.width as i32,
                    thumbnail.height as i32,
                    gtk::gdk::MemoryFormat::R8g8b8a8,
                    &bytes,
                    thumbnail.width as usize * 4,
                );
                self.list.set_thumbnail(&name, texture.upcast_ref());
            }
            AppMsg::Selected(name) => {
                if let Some(name) = &name {
                    self.settings.set("last-selected-vm", name.as_str());
                }
                self.selected = name;
            }
            AppMsg::Request(action) => self.request(action, sender),
            AppMsg::SendKey(keys) => {
                // Through the console when it shows this VM, so the keys
                // are ordered with what the user types; else through QMP.
                if let Some(name) = self.selected.clone() {
                    if self.decide(&name, Action::SendKey) == Decision::Accept {
                        let codes: Vec<&str> = keys.split('+').collect();
                        if !self.console.send_keys(&codes) {
                            let input = ConfirmInput {
                                keys: keys.clone(),
                                ..ConfirmInput::default()
                            };
                            self.run(name, Action::SendKey, input, sender);
                        }
                    }
                }
            }
            AppMsg::Confirmed(name, action, input) => self.run(name, action, input, sender),
            AppMsg::NewVm => self.open_wizard(sender),
            AppMsg::WizardDone(output) => {
                self.wizard = None;
                if let WizardOutput::Created { name, start } = output {
                    self.pending_select = Some((name, start));
                    self.apply_inventory(inventory::list_quickly(), &sender);
                }
            }
            AppMsg::Demo => {
                sender.spawn_oneshot_command(|| CmdOut::DemoReady(crate::app::demo::ensure_demo()));
            }
            AppMsg::ToggleFullscreen => {
                self.window.set_fullscreened(!self.window.is_fullscreen());
            }
            AppMsg::SetScaleToFit(on) => {
                self.console.set_scale_to_fit(on);
                self.preferences.console_scale_to_fit = on;
                self.settings.set("console-scale-to-fit", on);
            }
            AppMsg::About => self.about(),
            AppMsg::Preferences => {
                // Pool definitions are files: read them off the GTK thread.
                sender.spawn_oneshot_command(|| {
                    let pools = crate::definitions::PoolStore::open()
                        .and_then(|store| store.names())
                        .unwrap_or_default();
                    CmdOut::PoolsForPreferences(pools)
                });
            }
            AppMsg::PreferencesChanged(preferences) => {
                self.console.set_release_keys(preferences.release_keys);
                if let Some(shortcuts) = shortcuts_window(preferences.release_keys) {
                    self.window.set_help_overlay(Some(&shortcuts));
                }
                self.preferences = preferences;
            }
            AppMsg::AddConnection => self.remote.add_connection(),
            AppMsg::CopyTo => {
                if let Some(name) = self.selected.clone() {
                    match self.decide(&name, Action::Clone) {
                        Decision::Accept => self.remote.copy_local(&name),
                        Decision::Ignore => {}
                        Decision::Refuse(refusal) => self.toast(&refusal_text(&name, refusal)),
                    }
                }
            }
            AppMsg::Connection(page) => {
                let window = &self.window;
                self.connection
                    .get_or_insert_with(|| ConnectionWindow::new(window))
                    .present(page);
            }
        }
        self.refresh_view();
    }

    fn update_cmd(&mut self, msg: CmdOut, sender: ComponentSender<Self>, _root: &Self::Root) {
        match msg {
            CmdOut::Done {
                name,
                action,
                result,
                observed,
            } => {
                if let Some(lifecycle) = self.lifecycles.get_mut(&name) {
                    lifecycle.finished(action, result.is_ok(), observed);
                }
                match result {
                    Ok(saved) => self.succeeded(&name, action, saved),
                    Err(error) => self.failed(&name, action, &error),
                }
                if matches!(action, Action::Delete | Action::Clone) {
                    self.apply_inventory(inventory::list_quickly(), &sender);
                }
                self.shown = None;
            }
            CmdOut::DemoReady(Ok(name)) => {
                self.pending_select = Some((name, true));
                self.apply_inventory(inventory::list_quickly(), &sender);
            }
            CmdOut::PoolsForPreferences(pools) => self.show_preferences(pools, &sender),
            CmdOut::DemoReady(Err(error)) => {
                self.toast(&gettext_f(
                    "The demo VM could not be created: {error}",
                    &[("error", &error)],
                ));
            }
        }
        self.refresh_view();
    }
}

impl App {
    fn apply_inventory(&mut self, vms: Vec<VmSummary>, sender: &ComponentSender<Self>) {
        let selected_uuid = self
            .selected
            .as_ref()
            .and_then(|name| self.summaries.iter().find(|s| &s.name == name))
            .map(|s| s.uuid.clone());
        for vm in &vms {
            self.lifecycles
                .entry(vm.name.clone())
                .and_modify(|l| l.observe(vm.state))
                .or_insert_with(|| Lifecycle::new(vm.state));
        }
        self.lifecycles
            .retain(|name, _| vms.iter().any(|vm| &vm.name == name));
        self.summaries = vms;
        let rows: Vec<(VmSummary, VmState)> = self
            .summaries
            .iter()
            .map(|vm| (vm.clone(), self.lifecycles[&vm.name].state()))
            .collect();
        self.list.update(&rows);
        if let Some((name, start)) = self.pending_select.clone() {
            if self.lifecycles.contains_key(&name) {
                self.pending_select = None;
                self.list.select(&name);
                self.selected = Some(name.clone());
                if start && self.decide(&name, Action::Start) == Decision::Accept {
                    self.run(name, Action::Start, ConfirmInput::default(), sender.clone());
                }
            }
        }
        if let Some(selected) = &self.selected {
            if !self.lifecycles.contains_key(selected) {
                // Renamed (in Details, or with `vireo domrename`): still the
                // same VM, known by its UUID.
                let renamed = selected_uuid
                    .and_then(|uuid| self.summaries.iter().find(|s| s.uuid == uuid))
                    .map(|s| s.name.clone());
                if let Some(name) = &renamed {
                    self.list.select(name);
                }
                self.selected = renamed;
            }
        }
    }

    /// The VM page's widgets and the actions' enabled states, from the model.
    fn refresh_view(&mut self) {
        let state = self
            .selected
            .as_ref()
            .and_then(|name| self.lifecycles.get(name))
            .map(|l| l.state());
        let page = match (&self.selected, state) {
            (Some(_), Some(_)) => "vm",
            _ if self.list.is_empty() && self.kvm_problem.is_none() => "empty",
            _ if self.kvm_problem.is_some() => "no-kvm",
            _ => "none",
        };
        self.content.set_visible_child_name(page);
        for (name, action) in VM_ACTIONS {
            let enabled = self
                .selected
                .as_ref()
                .and_then(|n| self.lifecycles.get(n))
                .is_some_and(|l| l.allows(*action));
            if let Some(a) = self.actions.lookup_action(name) {
                if let Some(a) = a.downcast_ref::<gtk::gio::SimpleAction>() {
                    a.set_enabled(enabled);
                }
            }
        }
        let can_send = self
            .selected
            .as_ref()
            .and_then(|n| self.lifecycles.get(n))
            .is_some_and(|l| l.allows(Action::SendKey));
        if let Some(a) = self.actions.lookup_action("send-key") {
            if let Some(a) = a.downcast_ref::<gtk::gio::SimpleAction>() {
                a.set_enabled(can_send);
            }
        }
        let paused = state == Some(VmState::Paused);
        let shown = state.is_some();
        self.pause_button.set_visible(shown && !paused);
        self.resume_button.set_visible(shown && paused);
        for control in &self.vm_controls {
            control.set_visible(shown);
        }

        let (Some(name), Some(state)) = (self.selected.clone(), state) else {
            self.switcher.set_title("");
            self.console.show(None);
            self.page.serial.attach(None);
            self.shown = None;
            return;
        };
        self.switcher.set_title(&name);
        self.switcher
            .set_subtitle(&super::vm_list::state_label(state));
        self.header_title.set_title(&name);
        self.page.show_state(&name, state);
        let live = state.is_active();
        if self.shown.as_ref() != Some(&(name.clone(), live)) {
            self.shown = Some((name.clone(), live));
            let files = RunFiles::new(&name);
            self.console.show(live.then(|| files.vnc()));
            self.page.serial.attach(live.then(|| files.serial()));
            if let Ok(definition) = DomainStore::open().find(&name) {
                self.page.show_details(&definition, state);
            }
        }
    }

    fn decide(&self, name: &str, action: Action) -> Decision {
        self.lifecycles
            .get(name)
            .map(|l| l.decide(action))
            .unwrap_or(Decision::Refuse(Refusal::NotRunning))
    }

    /// A `vm.` action on the selected VM: asks first where the action
    /// cannot be undone, then runs it.
    fn request(&mut self, action: Action, sender: ComponentSender<Self>) {
        let Some(name) = self.selected.clone() else {
            return;
        };
        match self.decide(&name, action) {
            Decision::Accept => {}
            Decision::Ignore => return,
            Decision::Refuse(refusal) => {
                self.toast(&refusal_text(&name, refusal));
                return;
            }
        }
        match action {
            Action::ForceOff if self.preferences.confirm_force_off => {
                self.confirm_force_off(name, sender)
            }
            Action::Delete if self.preferences.confirm_delete => self.confirm_delete(name, sender),
            Action::Clone => self.ask_clone_name(name, sender),
            _ => self.run(name, action, ConfirmInput::default(), sender),
        }
    }

    /// Runs `action` on a worker once the lifecycle accepts it.
    fn run(
        &mut self,
        name: String,
        action: Action,
        input: ConfirmInput,
        sender: ComponentSender<Self>,
    ) {
        let Some(lifecycle) = self.lifecycles.get_mut(&name) else {
            return;
        };
        if lifecycle.request(action) != Decision::Accept {
            return;
        }
        let pictures = pictures_dir();
        sender.spawn_oneshot_command(move || {
            let result = match action {
                Action::Start => operations::start(&name).map(|_| None),
                Action::Pause => operations::pause(&name).map(|_| None),
                Action::Resume => operations::resume(&name).map(|_| None),
                Action::ShutDown => operations::shut_down(&name).map(|_| None),
                Action::Reboot => operations::reboot(&name).map(|_| None),
                Action::ForceOff => operations::force_off(&name).map(|_| None),
                Action::Delete => {
                    operations::delete(&name, input.delete_storage).and_then(|left| {
                        match left.first() {
                            None => Ok(None),
                            Some((path, e)) => Err(format!("{}: {e}", path.display())),
                        }
                    })
                }
                Action::Clone => {
                    crate::app::clone::clone_vm(&name, &input.clone_name, false, &mut |_, _| {})
                        .map(|_| None)
                }
                Action::Screenshot => {
                    let _ = std::fs::create_dir_all(&pictures);
                    let now = gtk::glib::DateTime::now_local()
                        .and_then(|t| t.format("%Y-%m-%d %H-%M-%S"))
                        .map(|s| s.to_string())
                        .unwrap_or_default();
                    let path = operations::screenshot_path(&name, &pictures, &now);
                    operations::screenshot(&name, &path).map(|_| Some(path))
                }
                Action::SendKey => {
                    let codes: Vec<&str> = input.keys.split('+').collect();
                    operations::send_key(&name, &codes).map(|_| None)
                }
            };
            let observed = inventory::live_state(&name);
            CmdOut::Done {
                name,
                action,
                result,
                observed,
            }
        });
    }

    fn succeeded(&mut self, name: &str, action: Action, saved: Option<PathBuf>) {
        match action {
            Action::Screenshot => {
                if let Some(path) = saved {
                    let toast = adw::Toast::builder()
                        .title(gettext("Screenshot saved"))
                        .button_label(gettext("_Open"))
                        .build();
                    toast.connect_button_clicked(move |_| {
                        let uri = gtk::gio::File::for_path(&path).uri();
                        let _ = gtk::gio::AppInfo::launch_default_for_uri(
                            &uri,
                            gtk::gio::AppLaunchContext::NONE,
                        );
                    });
                    self.toasts.add_toast(toast);
                }
            }
            Action::Delete => {
                self.toast(&gettext_f("“{name}” was deleted", &[("name", name)]));
                self.selected = None;
            }
            Action::Clone => self.toast(&gettext_f("“{name}” was cloned", &[("name", name)])),
            Action::ShutDown => self.toast(&gettext_f(
                "“{name}” was asked to shut down",
                &[("name", name)],
            )),
            _ => {}
        }
    }

    fn failed(&mut self, name: &str, action: Action, error: &str) {
        let headline = match action {
            Action::Start => gettext_f("“{name}” could not be started", &[("name", name)]),
            Action::ShutDown => gettext_f(
                "“{name}” could not be asked to shut down",
                &[("name", name)],
            ),
            Action::ForceOff => gettext_f("“{name}” could not be forced off", &[("name", name)]),
            Action::Delete => gettext_f("“{name}” could not be deleted", &[("name", name)]),
            Action::Clone => gettext_f("“{name}” could not be cloned", &[("name", name)]),
            Action::Screenshot => gettext("The screenshot could not be saved"),
            _ => gettext_f("The action on “{name}” failed", &[("name", name)]),
        };
        tracing::warn!(vm = name, ?action, "{error}");
        let dialog = adw::MessageDialog::builder()
            .transient_for(&self.window)
            .modal(true)
            .heading(headline)
            .body(error)
            .build();
        dialog.add_response("close", &gettext("_Close"));
        dialog.present();
    }

    fn confirm_force_off(&self, name: String, sender: ComponentSender<Self>) {
        let dialog = super::confirm::destructive(
            Some(self.window.upcast_ref()),
            &gettext_f("Force Off “{name}”?", &[("name", &name)]),
            &gettext(
                "The VM stops at once, as if its power cord were pulled. Unsaved work in the guest is lost.",
            ),
            "force-off",
            &gettext("_Force Off"),
        );
        dialog.set_default_response(Some("force-off"));
        dialog.connect_response(None, move |_, response| {
            if response == "force-off" {
                sender.input(AppMsg::Confirmed(
                    name.clone(),
                    Action::ForceOff,
                    ConfirmInput::default(),
                ));
            }
        });
        dialog.present();
    }

    fn confirm_delete(&self, name: String, sender: ComponentSender<Self>) {
        let storage = operations::owned_storage(&name).unwrap_or_default();
        let check = gtk::CheckButton::builder()
            .label(ngettext_files(storage.len()))
            .active(!storage.is_empty())
            .sensitive(!storage.is_empty())
            .build();
        let dialog = super::confirm::destructive(
            Some(self.window.upcast_ref()),
            &gettext_f("Delete “{name}”?", &[("name", &name)]),
            &gettext("Its definition is removed. This cannot be undone."),
            "delete",
            &gettext("_Delete"),
        );
        dialog.set_extra_child(Some(&check));
        dialog.connect_response(None, move |_, response| {
            if response == "delete" {
                sender.input(AppMsg::Confirmed(
                    name.clone(),
                    Action::Delete,
                    ConfirmInput {
                        delete_storage: check.is_active(),
                        ..Default::default()
                    },
                ));
            }
        });
        dialog.present();
    }

    fn ask_clone_name(&self, name: String, sender: ComponentSender<Self>) {
        let taken: Vec<String> = self.summaries.iter().map(|s| s.name.clone()).collect();
        let suggested = crate::app::create::unique_name(&format!("{name}-clone"), &taken);
        let entry = gtk::Entry::builder()
            .text(&suggested)
            .activates_default(true)
            .build();
        let dialog = adw::MessageDialog::builder()
            .transient_for(&self.window)
            .modal(true)
            .heading(gettext_f("Clone “{name}”", &[("name", &name)]))
            .body(gettext(
                "The clone gets its own copy of every writable disk, a new UUID and new MAC addresses.",
            ))
            .extra_child(&entry)
            .build();
        dialog.add_response("cancel", &gettext("_Cancel"));
        dialog.add_response("clone", &gettext("C_lone"));
        dialog.set_response_appearance("clone", adw::ResponseAppearance::Suggested);
        dialog.set_default_response(Some("clone"));
        dialog.set_close_response("cancel");
        let check_taken = taken.clone();
        let d = dialog.clone();
        entry.connect_changed(move |entry| {
            let ok = crate::app::create::check_name(&entry.text(), &check_taken).is_none();
            d.set_response_enabled("clone", ok);
        });
        dialog.connect_response(None, move |_, response| {
            if response == "clone" {
                sender.input(AppMsg::Confirmed(
                    name.clone(),
                    Action::Clone,
                    ConfirmInput {
                        clone_name: entry.text().to_string(),
                        ..Default::default()
                    },
                ));
            }
        });
        dialog.present();
    }

    fn open_wizard(&mut self, sender: ComponentSender<Self>) {
        let taken: Vec<String> = self.summaries.iter().map(|s| s.name.clone()).collect();
        let wizard = NewVmWizard::builder()
            .transient_for(&self.window)
            .launch(taken)
            .forward(sender.input_sender(), AppMsg::WizardDone);
        wizard.widget().present();
        self.wizard = Some(wizard);
    }

    fn about(&self) {
        let about = adw::AboutWindow::builder()
            .transient_for(&self.window)
            .application_name(gettext("Vireo"))
            .application_icon(super::APP_ID)
            .developer_name(gettext("The Vireo developers"))
            .version(env!("CARGO_PKG_VERSION"))
            .comments(gettext(
                "Create and run virtual machines, with a monitor of its own on KVM",
            ))
            .license_type(gtk::License::Gpl30)
            .build();
        about.present();
    }

    /// The Preferences window. Each change is saved at once (GSettings)
    /// and reported back, so the window, console and wizard follow it.
    fn show_preferences(&self, pools: Vec<String>, sender: &ComponentSender<Self>) {
        super::preferences::show(
            &self.window,
            &self.preferences,
            pools,
            &self.settings,
            &self.actions,
            sender.input_sender().clone(),
        );
    }

    fn toast(&self, text: &str) {
        self.toasts.add_toast(adw::Toast::new(text));
    }
}

/// The sidebar: the VM list under its own header bar, with New VM and the
/// main menu; and the box the lists go in (this computer's VMs, then each
/// libvirt connection's).
fn sidebar(list: &VmList) -> (gtk::Box, gtk::Box) {
    let new_button = gtk::Button::builder()
        .icon_name("list-add-symbolic")
        .tooltip_text(gettext("New VM"))
        .action_name("win.new-vm")
        .build();
    let primary_menu = gtk::gio::Menu::new();
    let section = gtk::gio::Menu::new();
    let connection = gtk::gio::Menu::new();
    connection.append(Some(&gettext("_Storage")), Some("win.storage"));
    connection.append(Some(&gettext("_Host Details")), Some("win.host"));
    connection.append(
        Some(&gettext("Add _Connection…")),
        Some("win.add-connection"),
    );
    primary_menu.append_section(None, &connection);
    section.append(Some(&gettext("_Preferences")), Some("win.preferences"));
    section.append(
        Some(&gettext("_Keyboard Shortcuts")),
        Some("win.show-help-overlay"),
    );
    section.append(Some(&gettext("_About Vireo")), Some("win.about"));
    primary_menu.append_section(None, &section);
    let menu_button = gtk::MenuButton::builder()
        .icon_name("open-menu-symbolic")
        .menu_model(&primary_menu)
        .primary(true)
        .tooltip_text(gettext("Main Menu"))
        .build();
    let sidebar_header = adw::HeaderBar::builder()
        .title_widget(&adw::WindowTitle::new(&gettext("Vireo"), ""))
        .show_end_title_buttons(false)
        .build();
    sidebar_header.pack_start(&new_button);
    sidebar_header.pack_end(&menu_button);
    let sidebar_lists = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .build();
    sidebar_lists.append(list.widget());
    let scrolled = gtk::ScrolledWindow::builder()
        .child(&sidebar_lists)
        .vexpand(true)
        .hscrollbar_policy(gtk::PolicyType::Never)
        .build();
    let sidebar = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .width_request(260)
        .build();
    sidebar.append(&sidebar_header);
    sidebar.append(&scrolled);
    (sidebar, sidebar_lists)
}

/// The content's header bar: the shown VM's title and page switcher,
/// Start, Pause, Resume and Shut Down, and the VM menu.
struct ContentHeader {
    bar: adw::HeaderBar,
    title: adw::WindowTitle,
    switcher: adw::ViewSwitcherTitle,
    start: gtk::Button,
    pause: gtk::Button,
    resume: gtk::Button,
    shutdown: gtk::Button,
    menu: gtk::MenuButton,
}

impl ContentHeader {
    fn new(page: &VmPage) -> Self {
        let header_title = adw::WindowTitle::new("", "");
        let switcher = adw::ViewSwitcherTitle::builder().stack(&page.stack).build();
        // Where the header is too narrow for the tabs, they move to a bar
        // under the page (the GNOME pattern).
        switcher
            .bind_property("title-visible", &page.switcher_bar, "reveal")
            .sync_create()
            .build();
        let start_button = icon_button(
            "media-playback-start-symbolic",
            &gettext("Start"),
            "vm.start",
        );
        let pause_button = icon_button(
            "media-playback-pause-symbolic",
            &gettext("Pause"),
            "vm.pause",
        );
        let resume_button = icon_button(
            "media-playback-start-symbolic",
            &gettext("Resume"),
            "vm.resume",
        );
        let shutdown_button = icon_button(
            "system-shutdown-symbolic",
            &gettext("Shut Down"),
            "vm.shutdown",
        );
        let vm_menu_button = gtk::MenuButton::builder()
            .icon_name("view-more-symbolic")
            .menu_model(&vm_menu())
            .tooltip_text(gettext("VM Menu"))
            .build();
        let content_header = adw::HeaderBar::builder().title_widget(&switcher).build();
        content_header.pack_start(&start_button);
        content_header.pack_start(&pause_button);
        content_header.pack_start(&resume_button);
        content_header.pack_start(&shutdown_button);
        content_header.pack_end(&vm_menu_button);
        Self {
            bar: content_header,
            title: header_title,
            switcher,
            start: start_button,
            pause: pause_button,
            resume: resume_button,
            shutdown: shutdown_button,
            menu: vm_menu_button,
        }
    }
}

/// What the content shows: the empty state, "select a VM", why KVM is
/// missing (when it is), or the VM's page.
fn content_stack(page: &VmPage, kvm_problem: Option<&KvmProblem>) -> gtk::Stack {
    let content = gtk::Stack::new();
    content.add_named(&empty_page(), Some("empty"));
    content.add_named(
        &adw::StatusPage::builder()
            .icon_name("computer-symbolic")
            .title(gettext("Select a Virtual Machine"))
            .build(),
        Some("none"),
    );
    if let Some(problem) = kvm_problem {
        content.add_named(&kvm_page(problem), Some("no-kvm"));
    }
    content.add_named(&page.root, Some("vm"));
    content
}

/// The `vm.` actions on the selected VM: its lifecycle (disabled until a
/// VM allows them), Send Key, Fullscreen and Scale to Window.
fn vm_actions(sender: &ComponentSender<App>) -> gtk::gio::SimpleActionGroup {
    let actions = gtk::gio::SimpleActionGroup::new();
    for (name, action) in VM_ACTIONS {
        let a = gtk::gio::SimpleAction::new(name, None);
        let input = sender.input_sender().clone();
        let action = *action;
        a.connect_activate(move |_, _| input.emit(AppMsg::Request(action)));
        a.set_enabled(false);
        actions.add_action(&a);
    }
    let send_key = gtk::gio::SimpleAction::new("send-key", Some(gtk::glib::VariantTy::STRING));
    let input = sender.input_sender().clone();
    send_key.connect_activate(move |_, keys| {
        if let Some(keys) = keys.and_then(|k| k.get::<String>()) {
            input.emit(AppMsg::SendKey(keys));
        }
    });
    actions.add_action(&send_key);
    let fullscreen = gtk::gio::SimpleAction::new("fullscreen", None);
    let input = sender.input_sender().clone();
    fullscreen.connect_activate(move |_, _| input.emit(AppMsg::ToggleFullscreen));
    actions.add_action(&fullscreen);
    let scale = gtk::gio::SimpleAction::new_stateful("scale-to-fit", None, &true.to_variant());
    let input = sender.input_sender().clone();
    scale.connect_change_state(move |action, value| {
        if let Some(on) = value.and_then(|v| v.get::<bool>()) {
            action.set_state(&on.to_variant());
            input.emit(AppMsg::SetScaleToFit(on));
        }
    });
    actions.add_action(&scale);
    let copy_to = gtk::gio::SimpleAction::new("copy-to", None);
    let input = sender.input_sender().clone();
    copy_to.connect_activate(move |_, _| input.emit(AppMsg::CopyTo));
    actions.add_action(&copy_to);
    actions
}

/// The window's own actions (`win.`) and the application's shortcuts.
fn add_window_actions(window: &adw::ApplicationWindow, sender: &ComponentSender<App>) {
    // On the window itself: a separate "win" group would hide the
    // window's own win.show-help-overlay (the Keyboard Shortcuts item).
    for (name, msg) in [
        ("new-vm", (|| AppMsg::NewVm) as fn() -> AppMsg),
        ("demo", || AppMsg::Demo),
        ("about", || AppMsg::About),
        ("preferences", || AppMsg::Preferences),
        ("storage", || AppMsg::Connection(ConnectionPage::Storage)),
        ("host", || AppMsg::Connection(ConnectionPage::Overview)),
        ("add-connection", || AppMsg::AddConnection),
    ] {
        let a = gtk::gio::SimpleAction::new(name, None);
        let input = sender.input_sender().clone();
        a.connect_activate(move |_, _| input.emit(msg()));
        window.add_action(&a);
    }
    if let Some(app) = relm4::main_application().downcast_ref::<gtk::Application>() {
        app.set_accels_for_action("win.new-vm", &["<Control>n"]);
        app.set_accels_for_action("vm.fullscreen", &["F11"]);
        app.set_accels_for_action("vm.force-off", &["<Control><Shift>f"]);
        app.set_accels_for_action("vm.screenshot", &["<Control><Shift>s"]);
        app.set_accels_for_action("window.close", &["<Control>q", "<Control>w"]);
    }
}

fn ngettext_files(n: usize) -> String {
    super::ngettext(
        "Also delete its disk image",
        "Also delete its {n} disk images",
        n as u32,
    )
    .replace("{n}", &n.to_string())
}

fn refusal_text(name: &str, refusal: Refusal) -> String {
    match refusal {
        Refusal::NotRunning => gettext_f("“{name}” is not running", &[("name", name)]),
        Refusal::NotShutOff => gettext_f("Shut “{name}” off first", &[("name", name)]),
        Refusal::Paused => gettext_f("“{name}” is paused; resume it first", &[("name", name)]),
        Refusal::Busy(_) => gettext_f("“{name}” is busy; try again in a moment", &[("name", name)]),
    }
}

fn icon_button(icon: &str, tooltip: &str, action: &str) -> gtk::Button {
    gtk::Button::builder()
        .icon_name(icon)
        .tooltip_text(tooltip)
        .action_name(action)
        .build()
}

fn vm_menu() -> gtk::gio::Menu {
    let menu = gtk::gio::Menu::new();
    let power = gtk::gio::Menu::new();
    power.append(Some(&gettext("_Reboot")), Some("vm.reboot"));
    power.append(Some(&gettext("_Force Off…")), Some("vm.force-off"));
    menu.append_section(None, &power);
    let keys = gtk::gio::Menu::new();
    for (codes, label) in SEND_KEYS {
        let item = gtk::gio::MenuItem::new(Some(label), None);
        item.set_action_and_target_value(Some("vm.send-key"), Some(&codes.to_variant()));
        keys.append_item(&item);
    }
    let console = gtk::gio::Menu::new();
    console.append_submenu(Some(&gettext("Send _Key")), &keys);
    console.append(Some(&gettext("Take _Screenshot")), Some("vm.screenshot"));
    console.append(Some(&gettext("F_ullscreen")), Some("vm.fullscreen"));
    console.append(Some(&gettext("Scale to _Window")), Some("vm.scale-to-fit"));
    menu.append_section(None, &console);
    let manage = gtk::gio::Menu::new();
    manage.append(Some(&gettext("_Clone…")), Some("vm.clone"));
    manage.append(Some(&gettext("Copy _to…")), Some("vm.copy-to"));
    manage.append(Some(&gettext("_Delete…")), Some("vm.delete"));
    menu.append_section(None, &manage);
    menu
}

fn empty_page() -> adw::StatusPage {
    let new_vm = gtk::Button::builder()
        .label(gettext("_New VM"))
        .use_underline(true)
        .action_name("win.new-vm")
        .css_classes(["pill", "suggested-action"])
        .build();
    let demo = gtk::Button::builder()
        .label(gettext("Try the _Demo VM"))
        .use_underline(true)
        .action_name("win.demo")
        .css_classes(["pill"])
        .build();
    let buttons = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(12)
        .halign(gtk::Align::Center)
        .build();
    buttons.append(&new_vm);
    buttons.append(&demo);
    adw::StatusPage::builder()
        .icon_name("computer-symbolic")
        .title(gettext("No Virtual Machines"))
        .description(gettext(
            "Create a VM from an installer ISO, a disk image or a Linux kernel, or try the small demo VM that ships with Vireo.",
        ))
        .child(&buttons)
        .build()
}

fn kvm_page(problem: &KvmProblem) -> adw::StatusPage {
    adw::StatusPage::builder()
        .icon_name("dialog-warning-symbolic")
        .title(gettext("Virtual Machines Cannot Run Here"))
        .description(kvm_problem_text(problem))
        .build()
}

/// What to do about `problem`, in a sentence (also on the Host page).
pub(super) fn kvm_problem_text(problem: &KvmProblem) -> String {
    match problem {
        KvmProblem::Missing => gettext(
            "This computer does not offer KVM: /dev/kvm is missing. Turn on virtualization (Intel VT-x or AMD-V) in the computer's firmware settings and make sure the kvm_intel or kvm_amd module is loaded. Inside a Flatpak, Vireo also needs the --device=kvm permission.",
        ),
        KvmProblem::NoAccess { group } => {
            let group = group.clone().unwrap_or_else(|| "kvm".into());
            gettext_f(
                "You may not use /dev/kvm. Add yourself to the “{group}” group with “sudo usermod -aG {group} $USER”, then log out and back in.",
                &[("group", &group)],
            )
        }
    }
}

/// The Keyboard Shortcuts window from the resource bundle
/// (resources/shortcuts.ui), showing `release` as the console's release
/// keys; none when the bundle did not load.
fn shortcuts_window(release: ReleaseKeys) -> Option<gtk::ShortcutsWindow> {
    let builder = gtk::Builder::new();
    builder.set_translation_domain(Some("vireo"));
    if let Err(e) = builder.add_from_resource(&format!("{}/shortcuts.ui", super::RESOURCE_BASE)) {
        tracing::warn!("no Keyboard Shortcuts window: {e}");
        return None;
    }
    if let Some(shortcut) = builder.object::<gtk::ShortcutsShortcut>("release-keys") {
        let accelerator = match release {
            ReleaseKeys::CtrlAlt => "<Control><Alt>",
            ReleaseKeys::CtrlAltG => "<Control><Alt>g",
            ReleaseKeys::RightCtrl => "Control_R",
        };
        shortcut.set_property("accelerator", accelerator);
    }
    builder.object("shortcuts")
}

/// For `make bench`'s cold-start figure: with `VIREO_STARTUP_PROBE` set,
/// prints `vireo-startup: list-shown` on stderr once the first frame with
/// the VM list has been drawn, and with `VIREO_STARTUP_PROBE=exit` quits.
fn report_startup(window: &adw::ApplicationWindow, list: &gtk::ListBox) {
    let Some(probe) = std::env::var_os("VIREO_STARTUP_PROBE") else {
        return;
    };
    let exit = probe == "exit";
    let window = window.clone();
    list.connect_map(move |list| {
        let window = window.clone();
        list.add_tick_callback(move |_, _| {
            eprintln!("vireo-startup: list-shown");
            if exit {
                window.close();
            }
            gtk::glib::ControlFlow::Break
        });
    });
}

fn pictures_dir() -> PathBuf {
    gtk::glib::user_special_dir(gtk::glib::UserDirectory::Pictures)
        .unwrap_or_else(|| gtk::glib::home_dir().join("Pictures"))
}

/// Keeps the list current off the GTK thread: definitions are reread when
/// the store changes (inotify; a timer when that cannot be set up), running
/// VMs are asked their state every [`POLL_INTERVAL`] and their screens
/// (for thumbnails) every [`THUMBNAIL_EVERY`] intervals.
fn start_poller(input: relm4::Sender<AppMsg>) {
    std::thread::Builder::new()
        .name("vm-poller".into())
        .spawn(move || {
            let mut inventory = inventory::LiveInventory::open();
            let thumbnail_interval = POLL_INTERVAL * THUMBNAIL_EVERY;
            let mut last_thumbnails: Option<std::time::Instant> = None;
            let mut last: HashMap<String, u64> = HashMap::new();
            loop {
                let vms = inventory.current();
                let running: Vec<String> = vms
                    .iter()
                    .filter(|vm| vm.state.is_active())
                    .map(|vm| vm.name.clone())
                    .collect();
                if input.send(AppMsg::Inventory(vms)).is_err() {
                    return;
                }
                // By the clock: a change in the store wakes this loop early.
                if last_thumbnails.map_or(true, |t| t.elapsed() >= thumbnail_interval) {
                    last_thumbnails = Some(std::time::Instant::now());
                    for name in running {
                        if let Some((thumbnail, hash)) = take_thumbnail(&name) {
                            if last.insert(name.clone(), hash) != Some(hash)
                                && input.send(AppMsg::Thumbnail(name, thumbnail)).is_err()
                            {
                                return;
                            }
                        }
                    }
                }
                inventory.wait(POLL_INTERVAL);
            }
        })
        .expect("spawn the VM poller");
}

/// The VM's screen, scaled down to [`THUMBNAIL_WIDTH`], and a hash of it
/// so an unchanged screen is not sent again.
fn take_thumbnail(name: &str) -> Option<(Thumbnail, u64)> {
    use std::hash::{Hash, Hasher};
    let path = RunFiles::new(name)
        .dir()
        .join(format!(".{name}.thumbnail.png"));
    operations::screenshot(name, &path).ok()?;
    let image = image::open(&path).ok()?.to_rgba8();
    let _ = std::fs::remove_file(&path);
    let height = (image.height() * THUMBNAIL_WIDTH / image.width().max(1)).max(1);
    let small = image::imageops::thumbnail(&image, THUMBNAIL_WIDTH, height);
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    small.as_raw().hash(&mut hasher);
    Some((
        Thumbnail {
            width: small.width(),
            height: small.height(),
            rgba: small.into_raw(),
        },
        hasher.finish(),
    ))
}
