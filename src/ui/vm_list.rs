//! The sidebar's list of VMs: one row per definition with its name, its
//! state and a thumbnail of its screen while it runs. Rows are kept by
//! name and updated in place, so selection and focus survive a refresh.

use std::collections::BTreeMap;

use gtk::prelude::*;

use super::gettext;
use crate::app::inventory::VmSummary;
use crate::app::lifecycle::VmState;

/// Thumbnails are this wide; their height follows the guest's aspect.
pub const THUMBNAIL_WIDTH: u32 = 96;

/// The state as the list and the VM page show it.
pub fn state_label(state: VmState) -> String {
    match state {
        VmState::ShutOff => gettext("Shut off"),
        VmState::Running => gettext("Running"),
        VmState::Paused => gettext("Paused"),
        VmState::Crashed => gettext("Crashed"),
        // Translators: the guest shut itself down, and the VM is kept
        // (not yet shut off) so its screen can still be seen.
        VmState::PoweredOff => gettext("Powered off (kept)"),
        VmState::Starting => gettext("Starting…"),
        VmState::ShuttingDown => gettext("Shutting down…"),
        VmState::Stopping => gettext("Forcing off…"),
        VmState::Pausing => gettext("Pausing…"),
        VmState::Resuming => gettext("Resuming…"),
        VmState::Rebooting => gettext("Rebooting…"),
        VmState::Deleting => gettext("Deleting…"),
    }
}

struct Row {
    row: gtk::ListBoxRow,
    state: gtk::Label,
    thumbnail: gtk::Picture,
}

pub struct VmList {
    list: gtk::ListBox,
    rows: BTreeMap<String, Row>,
}

impl VmList {
    pub fn new() -> Self {
        let list = gtk::ListBox::builder()
            .selection_mode(gtk::SelectionMode::Single)
            .css_classes(["navigation-sidebar"])
            .build();
        VmList {
            list,
            rows: BTreeMap::new(),
        }
    }

    pub fn widget(&self) -> &gtk::ListBox {
        &self.list
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Brings the rows in line with `vms` (sorted by name), showing each
    /// VM's state as its lifecycle has it.
    pub fn update(&mut self, vms: &[(VmSummary, VmState)]) {
        let gone: Vec<String> = self
            .rows
            .keys()
            .filter(|name| !vms.iter().any(|(vm, _)| &vm.name == *name))
            .cloned()
            .collect();
        for name in gone {
            if let Some(row) = self.rows.remove(&name) {
                self.list.remove(&row.row);
            }
        }
        for (index, (vm, state)) in vms.iter().enumerate() {
            let row = self
                .rows
                .entry(vm.name.clone())
                .or_insert_with(|| new_row(&vm.name));
            if row.row.parent().is_none() {
                self.list.insert(&row.row, index as i32);
            }
            // The name is what the CLI and other tools know the VM by;
            // the title, when there is one, is the tooltip.
            row.row.set_tooltip_text(vm.title.as_deref());
            row.state.set_label(&state_label(*state));
            if !state.is_active() {
                row.thumbnail.set_paintable(gtk::gdk::Paintable::NONE);
            }
            row.thumbnail.set_visible(state.is_active());
        }
    }

    pub fn set_thumbnail(&self, name: &str, texture: &gtk::gdk::Texture) {
        if let Some(row) = self.rows.get(name) {
            row.thumbnail.set_paintable(Some(texture));
        }
    }

    pub fn select(&self, name: &str) {
        if let Some(row) = self.rows.get(name) {
            self.list.select_row(Some(&row.row));
        }
    }

    /// The name of the VM a row shows.
    pub fn name_of(row: &gtk::ListBoxRow) -> String {
        row.widget_name().to_string()
    }
}

fn new_row(name: &str) -> Row {
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
    let thumbnail = gtk::Picture::builder()
        .width_request(THUMBNAIL_WIDTH as i32)
        .height_request((THUMBNAIL_WIDTH * 3 / 4) as i32)
        .content_fit(gtk::ContentFit::Contain)
        .css_classes(["card"])
        .visible(false)
        .build();
    let labels = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .valign(gtk::Align::Center)
        .spacing(2)
        .hexpand(true)
        .build();
    labels.append(&title);
    labels.append(&state);
    let content = gtk::Box::builder()
        .spacing(12)
        .margin_top(6)
        .margin_bottom(6)
        .margin_start(6)
        .margin_end(6)
        .build();
    content.append(&labels);
    content.append(&thumbnail);
    let row = gtk::ListBoxRow::builder()
        .child(&content)
        .name(name)
        .build();
    Row {
        row,
        state,
        thumbnail,
    }
}
