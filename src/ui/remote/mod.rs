//! Connections to libvirt hosts in the window: one group per connection
//! under the local VMs in the sidebar (its name, whether it is connected
//! and why not, its VMs with their states), and the selected VM's page in
//! place of a local VM's. The URIs are remembered in GSettings
//! (`connections`) and connected to again at start.
//!
//! Nothing here talks to a host on the GTK thread: each connection has a
//! worker thread ([`worker`]) whose every call is bounded, and the
//! console dials through libvirt on the console's own thread.
//!
//! ```text
//! sidebar: [This Computer] local list
//!          [QEMU/KVM on host · Connected  ⋮] list of the host's VMs
//! content: RemotePage (header bar with Start/Pause/Resume/Shut Down and a
//!          menu; Console / Details / XML)
//! ```

mod add_dialog;
mod copy_dialog;
mod page;
mod worker;

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::rc::Rc;
use std::sync::mpsc::Sender;
use std::sync::Arc;

use adw::prelude::*;

use super::console::{Dialer, Endpoint};
use super::i18n::gettext_f;
use super::{gettext, vm_list::state_label};
use crate::app::lifecycle::{Action, Decision, Lifecycle, VmState};
use crate::connection::{ConnectionUri, DomainRow, EngineError, ErrorKind, Power};
use page::RemotePage;
use worker::{Event, Request, SharedEngine};

/// The lifecycle verbs of the page's buttons: action name, lifecycle
/// action, libvirt verb.
const POWER_ACTIONS: &[(&str, Action, Power)] = &[
    ("start", Action::Start, Power::Start),
    ("pause", Action::Pause, Power::Suspend),
    ("resume", Action::Resume, Power::Resume),
    ("shutdown", Action::ShutDown, Power::Shutdown),
    ("reboot", Action::Reboot, Power::Reboot),
    ("force-off", Action::ForceOff, Power::Destroy),
];

/// A connection's error as a person reads it, translated, with the host's
/// own words after it.
pub fn error_text(error: &EngineError) -> String {
    let sentence = match error.kind {
        ErrorKind::AuthRefused => gettext(
            "The host refused the login. Check the user name, and that the host accepts your SSH key.",
        ),
        ErrorKind::Unreachable => gettext(
            "The host cannot be reached. Check its name, that it is on, and that SSH and libvirt run there.",
        ),
        ErrorKind::ConnectionLost => gettext("The connection to the host was lost."),
        ErrorKind::TimedOut => gettext("The host did not answer in time."),
        ErrorKind::Unsupported => gettext(
            "The host's libvirt cannot do this; it may be too old.",
        ),
        ErrorKind::NoDomain => gettext("The VM is no longer on the host."),
        ErrorKind::NoPool => gettext("The host has no such storage pool."),
        ErrorKind::NoVolume => gettext("The host has no such volume."),
        ErrorKind::NoNetwork => gettext("The host has no such network."),
        ErrorKind::InvalidState => gettext("The VM is not in a state that allows this."),
        ErrorKind::InvalidDefinition => gettext("The definition was refused."),
        ErrorKind::Other => gettext("The host reported an error."),
    };
    if error.detail.is_empty() {
        sentence
    } else {
        format!("{sentence} ({})", error.detail)
    }
}

/// What a connection is called in the sidebar: "QEMU/KVM on host" or
/// "QEMU/KVM" for this computer's libvirt.
fn connection_title(uri: &str) -> String {
    match ConnectionUri::parse(uri) {
        ConnectionUri::Local => gettext("This Computer"),
        ConnectionUri::Libvirt(parsed) => {
            let mut label = parsed.hypervisor_label().to_string();
            if parsed.path == "/session" {
                label = gettext_f("{hypervisor} user session", &[("hypervisor", &label)]);
            }
            match &parsed.host {
                Some(host) => gettext_f(
                    "{hypervisor} on {host}",
                    &[("hypervisor", &label), ("host", host)],
                ),
                None => label,
            }
        }
    }
}

struct Host {
    uri: String,
    requests: Sender<Request>,
    engine: Option<SharedEngine>,
    group: gtk::Box,
    status: gtk::Label,
    list: gtk::ListBox,
    rows: BTreeMap<String, (gtk::ListBoxRow, gtk::Label)>,
    domains: Vec<DomainRow>,
    lifecycles: HashMap<String, Lifecycle>,
    connected: bool,
    /// Connected once since the window opened: a failure then is a
    /// lost connection ("Disconnected"), also while reconnecting fails.
    was_connected: bool,
}

struct Inner {
    window: adw::ApplicationWindow,
    toasts: adw::ToastOverlay,
    sidebar: gtk::Box,
    heading: gtk::Label,
    hosts: Vec<Option<Host>>,
    selected: Option<(usize, String)>,
    /// The VM whose console, XML and details the page shows.
    shown: Option<(usize, String, bool)>,
    page: RemotePage,
    actions: gtk::gio::SimpleActionGroup,
    local_list: gtk::ListBox,
    local_content: Vec<gtk::Widget>,
    events: async_channel::Sender<Event>,
    /// Suppresses selection handlers while rows are changed in code.
    updating: bool,
}

/// The window's libvirt connections. Cheap to clone (one shared state).
#[derive(Clone)]
pub struct RemoteHosts(Rc<RefCell<Inner>>);

impl RemoteHosts {
    /// Builds the sidebar groups and the page; `local_list` is the local
    /// VMs' list (unselected when a host's VM is selected), and
    /// `local_content` the widgets that show a local VM (hidden meanwhile).
    pub fn new(
        window: &adw::ApplicationWindow,
        toasts: &adw::ToastOverlay,
        local_list: &gtk::ListBox,
        local_content: Vec<gtk::Widget>,
    ) -> Self {
        let sidebar = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .build();
        let heading = gtk::Label::builder()
            .label(gettext("This Computer"))
            .xalign(0.0)
            .css_classes(["heading", "dim-label"])
            .margin_start(12)
            .margin_top(6)
            .visible(false)
            .build();
        let (events, receiver) = async_channel::unbounded();
        let page = RemotePage::new();
        let actions = gtk::gio::SimpleActionGroup::new();
        let hosts = RemoteHosts(Rc::new(RefCell::new(Inner {
            window: window.clone(),
            toasts: toasts.clone(),
            sidebar,
            heading,
            hosts: Vec::new(),
            selected: None,
            shown: None,
            page,
            actions: actions.clone(),
            local_list: local_list.clone(),
            local_content,
            events,
            updating: false,
        })));
        for (name, action, verb) in POWER_ACTIONS {
            let a = gtk::gio::SimpleAction::new(name, None);
            let me = hosts.downgrade();
            let (action, verb) = (*action, *verb);
            a.connect_activate(move |_, _| {
                if let Some(me) = me.upgrade() {
                    RemoteHosts(me).power(action, verb);
                }
            });
            a.set_enabled(false);
            actions.add_action(&a);
        }
        let copy_here = gtk::gio::SimpleAction::new("copy-here", None);
        let me = hosts.downgrade();
        copy_here.connect_activate(move |_, _| {
            if let Some(me) = me.upgrade() {
                RemoteHosts(me).copy_here();
            }
        });
        actions.add_action(&copy_here);
        for (name, reconnect) in [("reconnect", true), ("remove", false)] {
            let a = gtk::gio::SimpleAction::new(name, Some(gtk::glib::VariantTy::STRING));
            let me = hosts.downgrade();
            a.connect_activate(move |_, uri| {
                let (Some(me), Some(uri)) = (me.upgrade(), uri.and_then(|u| u.get::<String>()))
                else {
                    return;
                };
                let me = RemoteHosts(me);
                if reconnect {
                    me.reconnect(&uri);
                } else {
                    me.remove(&uri);
                }
            });
            actions.add_action(&a);
        }
        window.insert_action_group("remote", Some(&actions));
        {
            let inner = hosts.0.borrow();
            let me = hosts.downgrade();
            inner.page.apply.connect_clicked(move |_| {
                if let Some(me) = me.upgrade() {
                    RemoteHosts(me).apply_xml();
                }
            });
            let me = hosts.downgrade();
            inner.page.revert.connect_clicked(move |_| {
                if let Some(me) = me.upgrade() {
                    RemoteHosts(me).ask_selected(true);
                }
            });
            // Selecting a local VM hides a host's VM.
            let me = hosts.downgrade();
            local_list.connect_row_selected(move |_, row| {
                if row.is_some() {
                    if let Some(me) = me.upgrade() {
                        RemoteHosts(me).select(None);
                    }
                }
            });
        }
        let me = hosts.downgrade();
        gtk::glib::MainContext::default().spawn_local(async move {
            while let Ok(event) = receiver.recv().await {
                let Some(me) = me.upgrade() else {
                    return;
                };
                RemoteHosts(me).handle(event);
            }
        });
        for uri in super::settings::get().connections() {
            hosts.add(&uri, false);
        }
        hosts
    }

    fn downgrade(&self) -> std::rc::Weak<RefCell<Inner>> {
        Rc::downgrade(&self.0)
    }

    /// The groups of connections, for the sidebar under the local list.
    pub fn sidebar(&self) -> gtk::Box {
        self.0.borrow().sidebar.clone()
    }

    /// "This Computer", for the sidebar above the local list; shown while
    /// there are connections.
    pub fn local_heading(&self) -> gtk::Label {
        self.0.borrow().heading.clone()
    }

    /// The page of a host's VM, for the content area.
    pub fn page(&self) -> gtk::Box {
        self.0.borrow().page.root.clone()
    }

    /// Add Connection…
    pub fn add_connection(&self) {
        let window = self.0.borrow().window.clone();
        let me = self.clone();
        add_dialog::show(&window, move |uri| me.add(&uri, true));
    }

    /// Connects to `uri` (once), remembering it when `remember`.
    pub fn add(&self, uri: &str, remember: bool) {
        let mut inner = self.0.borrow_mut();
        if inner.hosts.iter().flatten().any(|h| h.uri == uri) {
            return;
        }
        let id = inner.hosts.len();
        let requests = worker::spawn(id, uri.to_string(), inner.events.clone());
        let title = gtk::Label::builder()
            .label(connection_title(uri))
            .xalign(0.0)
            .ellipsize(gtk::pango::EllipsizeMode::End)
            .css_classes(["heading"])
            .tooltip_text(uri)
            .build();
        let status = gtk::Label::builder()
            .label(gettext("Connecting…"))
            .xalign(0.0)
            .wrap(true)
            .css_classes(["dim-label", "caption"])
            .build();
        let labels = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .hexpand(true)
            .build();
        labels.append(&title);
        labels.append(&status);
        let menu = gtk::gio::Menu::new();
        let item = gtk::gio::MenuItem::new(Some(&gettext("_Reconnect")), None);
        item.set_action_and_target_value(Some("remote.reconnect"), Some(&uri.to_variant()));
        menu.append_item(&item);
        let item = gtk::gio::MenuItem::new(Some(&gettext("Re_move Connection")), None);
        item.set_action_and_target_value(Some("remote.remove"), Some(&uri.to_variant()));
        menu.append_item(&item);
        let menu_button = gtk::MenuButton::builder()
            .icon_name("view-more-symbolic")
            .menu_model(&menu)
            .valign(gtk::Align::Center)
            .css_classes(["flat"])
            .tooltip_text(gettext("Connection Menu"))
            .build();
        let header = gtk::Box::builder()
            .spacing(6)
            .margin_top(12)
            .margin_start(12)
            .margin_end(6)
            .build();
        header.append(&labels);
        header.append(&menu_button);
        let list = gtk::ListBox::builder()
            .selection_mode(gtk::SelectionMode::Single)
            .css_classes(["navigation-sidebar"])
            .build();
        let group = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .build();
        group.append(&header);
        group.append(&list);
        inner.sidebar.append(&group);
        let me = self.downgrade();
        list.connect_row_selected(move |_, row| {
            let Some(me) = me.upgrade() else {
                return;
            };
            let me = RemoteHosts(me);
            if me.0.borrow().updating {
                return;
            }
            if let Some(row) = row {
                me.select(Some((id, row.widget_name().to_string())));
            }
        });
        inner.hosts.push(Some(Host {
            uri: uri.to_string(),
            requests,
            engine: None,
            group,
            status,
            list,
            rows: BTreeMap::new(),
            domains: Vec::new(),
            lifecycles: HashMap::new(),
            connected: false,
            was_connected: false,
        }));
        inner.heading.set_visible(true);
        if remember {
            let uris: Vec<String> = inner
                .hosts
                .iter()
                .flatten()
                .map(|h| h.uri.clone())
                .collect();
            super::settings::get().set_connections(&uris);
        }
    }

    fn reconnect(&self, uri: &str) {
        let inner = self.0.borrow();
        if let Some(host) = inner.hosts.iter().flatten().find(|h| h.uri == uri) {
            let _ = host.requests.send(Request::Reconnect);
        }
    }

    fn remove(&self, uri: &str) {
        let selected_here = {
            let inner = self.0.borrow();
            inner
                .selected
                .as_ref()
                .and_then(|(id, _)| inner.hosts.get(*id)?.as_ref())
                .is_some_and(|h| h.uri == uri)
        };
        if selected_here {
            self.select(None);
        }
        let mut inner = self.0.borrow_mut();
        let Some(slot) = inner
            .hosts
            .iter_mut()
            .find(|h| h.as_ref().is_some_and(|h| h.uri == uri))
        else {
            return;
        };
        // Dropping the sender ends the worker.
        if let Some(host) = slot.take() {
            inner.sidebar.remove(&host.group);
        }
        let uris: Vec<String> = inner
            .hosts
            .iter()
            .flatten()
            .map(|h| h.uri.clone())
            .collect();
        inner.heading.set_visible(!uris.is_empty());
        super::settings::get().set_connections(&uris);
    }

    fn host_mut(inner: &mut Inner, id: usize) -> Option<&mut Host> {
        inner.hosts.get_mut(id)?.as_mut()
    }

    fn handle(&self, event: Event) {
        match event {
            Event::Connecting(id) => {
                let mut inner = self.0.borrow_mut();
                if let Some(host) = Self::host_mut(&mut inner, id) {
                    if !host.connected {
                        host.status.set_label(&gettext("Connecting…"));
                    }
                }
            }
            Event::Connected(id, engine, _host) => {
                let mut inner = self.0.borrow_mut();
                if let Some(host) = Self::host_mut(&mut inner, id) {
                    host.engine = Some(engine);
                    host.connected = true;
                    host.was_connected = true;
                    host.status.set_label(&gettext("Connected"));
                    host.status.remove_css_class("error");
                    host.status.add_css_class("dim-label");
                }
            }
            Event::Failed(id, error) => {
                let mut inner = self.0.borrow_mut();
                if let Some(host) = Self::host_mut(&mut inner, id) {
                    let lost = matches!(
                        error.kind,
                        ErrorKind::ConnectionLost | ErrorKind::TimedOut | ErrorKind::Unreachable
                    );
                    if host.connected && !lost {
                        // A failed listing on a live connection: keep it.
                        return;
                    }
                    let text = if host.was_connected {
                        gettext_f("Disconnected: {reason}", &[("reason", &error_text(&error))])
                    } else {
                        gettext_f(
                            "Not connected: {reason}",
                            &[("reason", &error_text(&error))],
                        )
                    };
                    host.connected = false;
                    host.engine = None;
                    host.status.set_label(&text);
                    // In full red: dimmed, an error is hard to read.
                    host.status.remove_css_class("dim-label");
                    host.status.add_css_class("error");
                }
                drop(inner);
                self.refresh_page();
            }
            Event::Domains(id, rows) => {
                self.apply_domains(id, rows);
                self.refresh_page();
            }
            Event::Done(id, name, verb, result, observed) => {
                {
                    let mut inner = self.0.borrow_mut();
                    let toasts = inner.toasts.clone();
                    if let Some(host) = Self::host_mut(&mut inner, id) {
                        let action = POWER_ACTIONS
                            .iter()
                            .find(|(_, _, v)| *v == verb)
                            .map(|(_, a, _)| *a);
                        // What the host says now; failing that, what it
                        // said last (settled, so the next poll corrects it).
                        // Never the transitional state itself, which no
                        // poll would end.
                        let observed = observed.or_else(|| {
                            host.domains
                                .iter()
                                .find(|d| d.name == name)
                                .map(|d| d.state)
                        });
                        if let (Some(action), Some(lifecycle), Some(observed)) =
                            (action, host.lifecycles.get_mut(&name), observed)
                        {
                            lifecycle.finished(action, result.is_ok(), observed.vm_state());
                        }
                        let _ = host.requests.send(Request::Refresh);
                    }
                    if let Err(e) = result {
                        toasts.add_toast(adw::Toast::new(&gettext_f(
                            "“{name}”: {error}",
                            &[("name", &name), ("error", &error_text(&e))],
                        )));
                    }
                }
                self.refresh_page();
            }
            Event::Xml(id, name, result) => self.show_xml(id, &name, result),
            Event::Info(id, name, result) => {
                let inner = self.0.borrow();
                if inner.selected.as_ref() != Some(&(id, name.clone())) {
                    return;
                }
                match result {
                    Ok(info) => {
                        let uri = inner.hosts[id].as_ref().map_or("", |h| h.uri.as_str());
                        let unsupported =
                            crate::connection::copy::unsupported_in(&inner.page.xml_text());
                        inner.page.show_details(uri, &info, &unsupported);
                    }
                    Err(e) => inner.toasts.add_toast(adw::Toast::new(&error_text(&e))),
                }
            }
            Event::Defined(result) => {
                let inner = self.0.borrow();
                match result {
                    Ok(name) => {
                        inner.page.xml_error.set_visible(false);
                        inner.toasts.add_toast(adw::Toast::new(&gettext_f(
                            "The definition of “{name}” was saved on the host",
                            &[("name", &name)],
                        )));
                    }
                    Err(e) => {
                        inner.page.xml_error.set_label(&error_text(&e));
                        inner.page.xml_error.set_visible(true);
                    }
                }
            }
            Event::Copied(result) => copy_dialog::report(&self.0.borrow().window, result),
        }
    }

    /// Brings a host's rows and lifecycles in line with what it listed.
    fn apply_domains(&self, id: usize, rows: Vec<DomainRow>) {
        let mut inner = self.0.borrow_mut();
        inner.updating = true;
        if let Some(host) = Self::host_mut(&mut inner, id) {
            let gone: Vec<String> = host
                .rows
                .keys()
                .filter(|n| !rows.iter().any(|r| &r.name == *n))
                .cloned()
                .collect();
            for name in gone {
                if let Some((row, _)) = host.rows.remove(&name) {
                    host.list.remove(&row);
                }
                host.lifecycles.remove(&name);
            }
            for (index, domain) in rows.iter().enumerate() {
                let observed = domain.state.vm_state();
                let lifecycle = host
                    .lifecycles
                    .entry(domain.name.clone())
                    .and_modify(|l| l.observe(observed))
                    .or_insert_with(|| Lifecycle::new(observed));
                let state = lifecycle.state();
                let list = host.list.clone();
                let (row, label) = host
                    .rows
                    .entry(domain.name.clone())
                    .or_insert_with(|| new_row(&domain.name));
                if row.parent().is_none() {
                    list.insert(row, index as i32);
                }
                label.set_label(&state_label(state));
            }
            host.domains = rows;
        }
        inner.updating = false;
    }

    /// Shows (or, with `None`, hides) a host's VM.
    fn select(&self, which: Option<(usize, String)>) {
        {
            let mut inner = self.0.borrow_mut();
            if inner.selected == which {
                return;
            }
            inner.updating = true;
            for (id, host) in inner.hosts.iter().enumerate() {
                if let Some(host) = host {
                    if which.as_ref().map(|w| w.0) != Some(id) {
                        host.list.unselect_all();
                    }
                }
            }
            inner.updating = false;
            let showing = which.is_some();
            inner.page.root.set_visible(showing);
            for widget in &inner.local_content {
                widget.set_visible(!showing);
            }
            if showing {
                inner.local_list.unselect_all();
            }
            inner.selected = which;
        }
        self.ask_selected(false);
        self.refresh_page();
    }

    /// Asks the selected VM's host for its definition and details.
    fn ask_selected(&self, xml_only: bool) {
        let inner = self.0.borrow();
        let Some((id, name)) = inner.selected.clone() else {
            return;
        };
        if let Some(Some(host)) = inner.hosts.get(id) {
            let _ = host.requests.send(Request::Xml(name.clone()));
            if !xml_only {
                let _ = host.requests.send(Request::Info(name));
            }
        }
    }

    fn show_xml(&self, id: usize, name: &str, result: Result<String, EngineError>) {
        let inner = self.0.borrow();
        if inner.selected.as_ref() != Some(&(id, name.to_string())) {
            return;
        }
        match result {
            Ok(xml) => {
                inner.page.set_xml(&xml);
                let password = crate::connection::vnc_tunnel::vnc_password(&xml);
                drop(inner);
                self.connect_console(password);
            }
            Err(e) => inner.toasts.add_toast(adw::Toast::new(&error_text(&e))),
        }
    }

    /// Points the console at the selected VM while it runs (with the VNC
    /// password from its definition), at nothing otherwise.
    fn connect_console(&self, password: Option<String>) {
        let mut inner = self.0.borrow_mut();
        let Some((id, name)) = inner.selected.clone() else {
            inner.page.console.disconnect();
            inner.shown = None;
            return;
        };
        let (engine, active) = match inner.hosts.get(id).and_then(Option::as_ref) {
            Some(host) => (
                host.engine.clone(),
                host.lifecycles
                    .get(&name)
                    .is_some_and(|l| l.state().is_active()),
            ),
            None => (None, false),
        };
        let wanted = (id, name.clone(), active);
        match (engine, active) {
            (Some(engine), true) => {
                let dial: Dialer =
                    Arc::new(move || engine.open_vnc(&name).map_err(|e| error_text(&e)));
                inner
                    .page
                    .console
                    .connect_endpoint(Endpoint::Dial { dial, password });
            }
            _ => inner.page.console.disconnect(),
        }
        inner.shown = Some(wanted);
    }

    /// The page's title, buttons and console, from the selected VM's state.
    fn refresh_page(&self) {
        let (state, changed) = {
            let inner = self.0.borrow();
            let Some((id, name)) = inner.selected.clone() else {
                for (action, _, _) in POWER_ACTIONS {
                    set_enabled(&inner.actions, action, false);
                }
                return;
            };
            let host = inner.hosts.get(id).and_then(Option::as_ref);
            let lifecycle = host.and_then(|h| h.lifecycles.get(&name));
            let state = lifecycle.map(Lifecycle::state);
            for (action_name, action, _) in POWER_ACTIONS {
                let enabled = host.is_some_and(|h| h.connected)
                    && lifecycle.is_some_and(|l| l.allows(*action));
                set_enabled(&inner.actions, action_name, enabled);
            }
            set_enabled(
                &inner.actions,
                "copy-here",
                host.is_some_and(|h| h.connected) && state == Some(VmState::ShutOff),
            );
            inner.page.title.set_title(&name);
            let subtitle = match (host, state) {
                (Some(h), Some(s)) => format!("{} · {}", state_label(s), connection_title(&h.uri)),
                (Some(h), None) => connection_title(&h.uri),
                _ => String::new(),
            };
            inner.page.title.set_subtitle(&subtitle);
            if let Some(state) = state {
                inner.page.show_state(state);
            }
            let active = state.is_some_and(|s| s.is_active());
            let changed = inner.shown.as_ref().map(|s| s.2) != Some(active)
                || inner.shown.as_ref().map(|s| (s.0, &s.1)) != Some((id, &name));
            (state, changed)
        };
        if changed && state.is_some() {
            // Fetch the XML again: the password and the live port come with it.
            self.ask_selected(true);
            let mut inner = self.0.borrow_mut();
            if !state.is_some_and(|s| s.is_active()) {
                inner.page.console.disconnect();
            }
            let selected = inner.selected.clone();
            inner.shown =
                selected.map(|(id, name)| (id, name, state.is_some_and(|s| s.is_active())));
        }
    }

    fn power(&self, action: Action, verb: Power) {
        let mut inner = self.0.borrow_mut();
        let Some((id, name)) = inner.selected.clone() else {
            return;
        };
        let toasts = inner.toasts.clone();
        let Some(host) = Self::host_mut(&mut inner, id) else {
            return;
        };
        let Some(lifecycle) = host.lifecycles.get_mut(&name) else {
            return;
        };
        match lifecycle.request(action) {
            Decision::Accept => {
                let _ = host.requests.send(Request::Power(name, verb));
            }
            Decision::Ignore => {}
            Decision::Refuse(refusal) => {
                toasts.add_toast(adw::Toast::new(&refusal.to_string()));
            }
        }
        drop(inner);
        self.refresh_page();
    }

    fn apply_xml(&self) {
        let inner = self.0.borrow();
        let Some((id, _)) = inner.selected.clone() else {
            return;
        };
        if let Some(Some(host)) = inner.hosts.get(id) {
            let _ = host.requests.send(Request::Define(inner.page.xml_text()));
        }
    }

    /// The hosts connected now: (title, URI, engine).
    fn connected(&self) -> Vec<(String, String, SharedEngine)> {
        self.0
            .borrow()
            .hosts
            .iter()
            .flatten()
            .filter_map(|h| {
                h.engine
                    .clone()
                    .map(|e| (connection_title(&h.uri), h.uri.clone(), e))
            })
            .collect()
    }

    /// Copy to…: a shut-off local VM to one of the connected hosts.
    pub fn copy_local(&self, name: &str) {
        let (window, toasts, events) = {
            let inner = self.0.borrow();
            (
                inner.window.clone(),
                inner.toasts.clone(),
                inner.events.clone(),
            )
        };
        let hosts = self.connected();
        if hosts.is_empty() {
            toasts.add_toast(adw::Toast::new(&gettext(
                "Connect to a libvirt host first (Add Connection… in the main menu)",
            )));
            return;
        }
        copy_dialog::ask_and_copy_out(&window, &toasts, name, hosts, events);
    }

    /// Copy to This Computer: the selected (shut-off) VM into Vireo's store.
    fn copy_here(&self) {
        let inner = self.0.borrow();
        let Some((id, name)) = inner.selected.clone() else {
            return;
        };
        let Some(engine) = inner
            .hosts
            .get(id)
            .and_then(Option::as_ref)
            .and_then(|h| h.engine.clone())
        else {
            return;
        };
        let pool = super::settings::get().preferences().default_pool;
        copy_dialog::copy_in(&inner.toasts, engine, name, pool, inner.events.clone());
    }
}

fn set_enabled(group: &gtk::gio::SimpleActionGroup, name: &str, enabled: bool) {
    if let Some(action) = group.lookup_action(name) {
        if let Some(action) = action.downcast_ref::<gtk::gio::SimpleAction>() {
            action.set_enabled(enabled);
        }
    }
}

fn new_row(name: &str) -> (gtk::ListBoxRow, gtk::Label) {
    let title = gtk::Label::builder()
        .label(name)
        .xalign(0.0)
        .ellipsize(gtk::pango::EllipsizeMode::End)
        .css_classes(["heading"])
        .build();
    let state = gtk::Label::builder()
        .xalign(0.0)
        .css_classes(["dim-label", "caption"])
        .build();
    let labels = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(2)
        .margin_top(6)
        .margin_bottom(6)
        .margin_start(6)
        .margin_end(6)
        .build();
    labels.append(&title);
    labels.append(&state);
    let row = gtk::ListBoxRow::builder().child(&labels).build();
    row.set_widget_name(name);
    (row, state)
}
