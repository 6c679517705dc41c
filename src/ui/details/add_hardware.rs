//! The Add Hardware dialog (virt-manager's `addhardware.py`): a disk (a
//! new qcow2 volume in the default pool, or an existing image), a CD-ROM
//! drive (with an ISO or empty), a NIC on a libvirt network, a serial
//! port. Finish adds it and saves; a refusal (a missing file, a target
//! name taken) is shown in the dialog, which stays open.

use crate::ui::file_chooser::{choose_into, Pick};
use adw::prelude::*;

use super::hardware::path_of;
use super::DetailsPage;
use crate::app::edit::{self, DiskSource, NewHardware};
use crate::ui::gettext;

/// The kinds in the Type row, in order.
const KINDS: usize = 4;

pub fn present(page: &DetailsPage) {
    let window = adw::Window::builder()
        .title(gettext("Add Hardware"))
        .modal(true)
        .default_width(560)
        .default_height(560)
        .build();
    window.set_transient_for(page.window().as_ref());

    let cancel = gtk::Button::with_mnemonic(&gettext("_Cancel"));
    let finish = gtk::Button::with_mnemonic(&gettext("_Finish"));
    finish.add_css_class("suggested-action");
    let header = adw::HeaderBar::builder()
        .show_end_title_buttons(false)
        .show_start_title_buttons(false)
        .build();
    header.pack_start(&cancel);
    header.pack_end(&finish);

    let kinds = gtk::StringList::new(&[
        &gettext("Disk"),
        &gettext("CD-ROM drive"),
        &gettext("Network interface"),
        &gettext("Serial port"),
    ]);
    let kind = adw::ComboRow::builder()
        .title(gettext("Type"))
        .model(&kinds)
        .build();
    let type_group = adw::PreferencesGroup::new();
    type_group.add(&kind);

    // Disk.
    let disk_group = adw::PreferencesGroup::builder()
        .title(gettext("Disk"))
        .build();
    let new_volume = gtk::CheckButton::with_mnemonic(&gettext("Create a _new volume"));
    new_volume.set_active(true);
    let size = gtk::SpinButton::with_range(1.0, 65536.0, 1.0);
    size.set_value(10.0);
    size.set_valign(gtk::Align::Center);
    let new_row = adw::ActionRow::builder()
        .title(gettext("Size (GiB)"))
        .build();
    new_row.add_prefix(&new_volume);
    new_row.add_suffix(&size);
    disk_group.add(&new_row);
    let existing = gtk::CheckButton::with_mnemonic(&gettext("Use an _existing image"));
    existing.set_group(Some(&new_volume));
    let disk_path = gtk::Entry::builder()
        .placeholder_text(gettext("Path to the image"))
        .valign(gtk::Align::Center)
        .hexpand(true)
        .build();
    let existing_row = adw::ActionRow::new();
    existing_row.add_prefix(&existing);
    existing_row.add_suffix(&disk_path);
    existing_row.add_suffix(&browse_button(&window, &disk_path, false));
    disk_group.add(&existing_row);
    {
        // Typing a path chooses it.
        let existing = existing.clone();
        disk_path.connect_changed(move |e| {
            if !e.text().is_empty() {
                existing.set_active(true);
            }
        });
    }
    let buses = gtk::StringList::new(edit::DISK_BUSES);
    let bus = adw::ComboRow::builder()
        .title(gettext("Bus"))
        .model(&buses)
        .build();
    disk_group.add(&bus);

    // CD-ROM.
    let cdrom_group = adw::PreferencesGroup::builder()
        .title(gettext("CD-ROM drive"))
        .description(gettext("Leave the path empty for an empty drive."))
        .build();
    let iso_path = gtk::Entry::builder()
        .placeholder_text(gettext("Path to an ISO image"))
        .valign(gtk::Align::Center)
        .hexpand(true)
        .build();
    let iso_row = adw::ActionRow::builder()
        .title(gettext("ISO image"))
        .build();
    iso_row.add_suffix(&iso_path);
    iso_row.add_suffix(&browse_button(&window, &iso_path, true));
    cdrom_group.add(&iso_row);

    // NIC.
    let nic_group = adw::PreferencesGroup::builder()
        .title(gettext("Network interface"))
        .build();
    let network = gtk::Entry::builder()
        .text(edit::DEFAULT_NETWORK)
        .valign(gtk::Align::Center)
        .build();
    let network_row = adw::ActionRow::builder().title(gettext("Network")).build();
    network_row.add_suffix(&network);
    nic_group.add(&network_row);
    let models = gtk::StringList::new(edit::NIC_MODELS);
    let model = adw::ComboRow::builder()
        .title(gettext("Model"))
        .model(&models)
        .build();
    nic_group.add(&model);

    // Serial.
    let serial_group = adw::PreferencesGroup::builder()
        .title(gettext("Serial port"))
        .description(gettext(
            "A serial port on a pseudo-terminal, readable in the Serial tab.",
        ))
        .build();

    let error = gtk::Label::builder()
        .wrap(true)
        .xalign(0.0)
        .visible(false)
        .build();
    error.add_css_class("error");
    let error_group = adw::PreferencesGroup::new();
    error_group.add(&error);

    let prefs = adw::PreferencesPage::new();
    for g in [
        &type_group,
        &disk_group,
        &cdrom_group,
        &nic_group,
        &serial_group,
        &error_group,
    ] {
        prefs.add(g);
    }
    let content = gtk::Box::new(gtk::Orientation::Vertical, 0);
    content.append(&header);
    content.append(&prefs);
    window.set_content(Some(&content));

    let sections = [
        disk_group.clone(),
        cdrom_group.clone(),
        nic_group.clone(),
        serial_group.clone(),
    ];
    let show_kind = move |selected: u32| {
        for (i, g) in sections.iter().enumerate().take(KINDS) {
            g.set_visible(i as u32 == selected);
        }
    };
    show_kind(0);
    kind.connect_selected_notify(move |k| show_kind(k.selected()));

    // Ctrl+L types a location, as in GTK's file chooser.
    let shortcuts = gtk::ShortcutController::new();
    shortcuts.set_propagation_phase(gtk::PropagationPhase::Capture);
    {
        let (kind, disk_path, iso_path) = (kind.clone(), disk_path.clone(), iso_path.clone());
        shortcuts.add_shortcut(gtk::Shortcut::new(
            gtk::ShortcutTrigger::parse_string("<Control>l"),
            Some(gtk::CallbackAction::new(move |_, _| {
                match kind.selected() {
                    0 => disk_path.grab_focus(),
                    1 => iso_path.grab_focus(),
                    _ => false,
                };
                gtk::glib::Propagation::Stop
            })),
        ));
    }
    window.add_controller(shortcuts);

    {
        let window = window.clone();
        cancel.connect_clicked(move |_| window.close());
    }
    let page = page.clone();
    let dialog = window.clone();
    finish.connect_clicked(move |finish| {
        let hardware = match kind.selected() {
            0 => NewHardware::Disk {
                source: if existing.is_active() {
                    DiskSource::Existing(path_of(&disk_path.text()).unwrap_or_default())
                } else {
                    DiskSource::NewVolume {
                        gib: size.value() as u64,
                    }
                },
                bus: edit::DISK_BUSES
                    .get(bus.selected() as usize)
                    .unwrap_or(&"virtio")
                    .to_string(),
            },
            1 => NewHardware::Cdrom {
                iso: path_of(&iso_path.text()),
            },
            2 => NewHardware::Nic {
                network: network.text().to_string(),
                model: edit::NIC_MODELS
                    .get(model.selected() as usize)
                    .unwrap_or(&"virtio")
                    .to_string(),
            },
            _ => NewHardware::Serial,
        };
        finish.set_sensitive(false);
        let (dialog, error, finish) = (dialog.clone(), error.clone(), finish.clone());
        page.add_hardware(hardware, move |result| match result {
            Ok(()) => dialog.close(),
            Err(message) => {
                error.set_text(&message);
                error.set_visible(true);
                finish.set_sensitive(true);
            }
        });
    });
    window.present();
}

fn browse_button(window: &adw::Window, entry: &gtk::Entry, iso: bool) -> gtk::Button {
    let button = gtk::Button::builder()
        .icon_name("document-open-symbolic")
        .tooltip_text(gettext("Browse…"))
        .valign(gtk::Align::Center)
        .build();
    let (window, entry) = (window.clone(), entry.clone());
    button.connect_clicked(move |_| {
        let (title, pick) = if iso {
            (gettext("Choose an ISO Image"), Pick::Iso)
        } else {
            (gettext("Choose a Disk Image"), Pick::File)
        };
        choose_into(Some(window.upcast_ref()), &title, pick, &entry);
    });
    button
}
