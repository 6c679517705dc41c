//! The Preferences window (GSettings `dev.vireo.Vireo`), a group at a
//! time: defaults for new VMs, confirmations, and the console. Every change
//! is saved at once and reported to the main window.

use std::cell::RefCell;
use std::rc::Rc;

use adw::prelude::*;

use super::gettext;
use super::window::AppMsg;
use crate::app::preferences::{Preferences, ReleaseKeys};

/// Applies a change to the preferences, saves its key with its value, and
/// tells the main window.
type OnChange = Rc<dyn Fn(&dyn Fn(&mut Preferences), &str, gtk::glib::Variant)>;

/// Opens the Preferences window over `parent`; `pools` are the storage
/// pools a new VM's disk can go to, `actions` the main window's `vm.`
/// group (its scale-to-fit action is the console switch's state).
pub(super) fn show(
    parent: &adw::ApplicationWindow,
    preferences: &Preferences,
    pools: Vec<String>,
    settings: &super::settings::Settings,
    actions: &gtk::gio::SimpleActionGroup,
    input: relm4::Sender<AppMsg>,
) {
    let current = Rc::new(RefCell::new(preferences.clone()));
    let settings = settings.clone();
    let changed: OnChange = Rc::new(
        move |change: &dyn Fn(&mut Preferences), key: &str, value: gtk::glib::Variant| {
            change(&mut current.borrow_mut());
            settings.set(key, value);
            input.emit(AppMsg::PreferencesChanged(current.borrow().clone()));
        },
    );
    let page = adw::PreferencesPage::new();
    page.add(&new_vms_group(preferences, pools, &changed));
    page.add(&confirmations_group(preferences, &changed));
    page.add(&console_group(preferences, actions, &changed));
    let window = adw::PreferencesWindow::builder()
        .transient_for(parent)
        .modal(true)
        .build();
    window.add(&page);
    window.present();
}

/// A row with a title, a subtitle and a switch at its end.
fn switch_row(title: String, subtitle: String, active: bool) -> (adw::ActionRow, gtk::Switch) {
    let row = adw::ActionRow::builder()
        .title(title)
        .subtitle(subtitle)
        .build();
    let switch = gtk::Switch::builder()
        .active(active)
        .valign(gtk::Align::Center)
        .build();
    row.add_suffix(&switch);
    row.set_activatable_widget(Some(&switch));
    (row, switch)
}

/// New VMs: where their disks go, where their VNC servers listen.
fn new_vms_group(
    preferences: &Preferences,
    pools: Vec<String>,
    changed: &OnChange,
) -> adw::PreferencesGroup {
    let mut pool_names = pools;
    if !pool_names.contains(&preferences.default_pool) {
        pool_names.insert(0, preferences.default_pool.clone());
    }
    let pool_list =
        gtk::StringList::new(&pool_names.iter().map(String::as_str).collect::<Vec<_>>());
    let pool_row = adw::ComboRow::builder()
        .title(gettext("Default storage pool"))
        .subtitle(gettext("Where the New VM wizard creates new disks"))
        .model(&pool_list)
        .selected(
            pool_names
                .iter()
                .position(|p| *p == preferences.default_pool)
                .unwrap_or(0) as u32,
        )
        .build();
    let c = changed.clone();
    pool_row.connect_selected_notify(move |row| {
        if let Some(name) = pool_names.get(row.selected() as usize).cloned() {
            c(
                &|p| p.default_pool = name.clone(),
                "default-pool",
                name.to_variant(),
            );
        }
    });
    let listen_row = adw::ActionRow::builder()
        .title(gettext("VNC listen address"))
        .subtitle(gettext(
            "127.0.0.1 keeps new VMs' screens on this computer; 0.0.0.0 opens them to the network",
        ))
        .build();
    let listen = gtk::Entry::builder()
        .text(&preferences.vnc_listen)
        .valign(gtk::Align::Center)
        .width_chars(15)
        .build();
    listen_row.add_suffix(&listen);
    let c = changed.clone();
    listen.connect_changed(move |entry| {
        let text = entry.text().trim().to_string();
        if Preferences::valid_listen(&text) {
            entry.remove_css_class("error");
            entry.set_tooltip_text(None);
            c(
                &|p| p.vnc_listen = text.clone(),
                "vnc-listen",
                text.to_variant(),
            );
        } else {
            entry.add_css_class("error");
            entry.set_tooltip_text(Some(&gettext("Enter an IP address, such as 127.0.0.1")));
        }
    });
    let new_vms = adw::PreferencesGroup::builder()
        .title(gettext("New Virtual Machines"))
        .build();
    new_vms.add(&pool_row);
    new_vms.add(&listen_row);
    new_vms
}

/// Confirmations before forcing off and deleting.
fn confirmations_group(preferences: &Preferences, changed: &OnChange) -> adw::PreferencesGroup {
    let (force_row, force_switch) = switch_row(
        gettext("Confirm before forcing off"),
        gettext("Ask before pulling the plug on a running VM"),
        preferences.confirm_force_off,
    );
    let c = changed.clone();
    force_switch.connect_active_notify(move |s| {
        let on = s.is_active();
        c(
            &|p| p.confirm_force_off = on,
            "confirm-force-off",
            on.to_variant(),
        );
    });
    let (delete_row, delete_switch) = switch_row(
        gettext("Confirm before deleting"),
        gettext("Without asking, a deleted VM's disk images are kept"),
        preferences.confirm_delete,
    );
    let c = changed.clone();
    delete_switch.connect_active_notify(move |s| {
        let on = s.is_active();
        c(
            &|p| p.confirm_delete = on,
            "confirm-delete",
            on.to_variant(),
        );
    });
    let confirmations = adw::PreferencesGroup::builder()
        .title(gettext("Confirmations"))
        .build();
    confirmations.add(&force_row);
    confirmations.add(&delete_row);
    confirmations
}

/// The console: scaling (through the vm.scale-to-fit action, which the VM
/// menu shares) and the keys that release the keyboard.
fn console_group(
    preferences: &Preferences,
    actions: &gtk::gio::SimpleActionGroup,
    changed: &OnChange,
) -> adw::PreferencesGroup {
    let (scale_row, scale_switch) = switch_row(
        gettext("Scale the console to the window"),
        gettext("Otherwise the guest's screen is shown pixel for pixel"),
        preferences.console_scale_to_fit,
    );
    let actions = actions.clone();
    scale_switch.connect_active_notify(move |s| {
        if let Some(action) = actions.lookup_action("scale-to-fit") {
            action.change_state(&s.is_active().to_variant());
        }
    });
    let labels: Vec<&str> = ReleaseKeys::ALL.iter().map(|k| k.label()).collect();
    let keys_row = adw::ComboRow::builder()
        .title(gettext("Release the keyboard with"))
        .subtitle(gettext(
            "The keys that give the keyboard back from a VM's console",
        ))
        .model(&gtk::StringList::new(&labels))
        .selected(
            ReleaseKeys::ALL
                .iter()
                .position(|k| *k == preferences.release_keys)
                .unwrap_or(0) as u32,
        )
        .build();
    let c = changed.clone();
    keys_row.connect_selected_notify(move |row| {
        if let Some(keys) = ReleaseKeys::ALL.get(row.selected() as usize).copied() {
            c(
                &|p| p.release_keys = keys,
                "release-keys",
                keys.nick().to_variant(),
            );
        }
    });
    let console = adw::PreferencesGroup::builder()
        .title(gettext("Console"))
        .build();
    console.add(&scale_row);
    console.add(&keys_row);
    console
}
