//! The VM's page: Console (the guest's screen, or a "shut off" state with
//! a Start button), Details (a read-only summary of the definition) and
//! Serial (the serial console), switched in the header bar.

use adw::prelude::*;

use super::i18n::gettext_f;
use super::serial::SerialView;
use super::{gettext, ngettext};
use crate::manager::lifecycle::VmState;
use crate::store::Definition;

pub struct VmPage {
    pub stack: adw::ViewStack,
    /// Holds the console view while the VM runs.
    pub console_slot: gtk::Box,
    console_stack: gtk::Stack,
    off_page: adw::StatusPage,
    details: adw::PreferencesPage,
    details_groups: Vec<adw::PreferencesGroup>,
    pub serial: SerialView,
}

impl VmPage {
    pub fn new() -> Self {
        let console_slot = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .hexpand(true)
            .vexpand(true)
            .build();
        let start = gtk::Button::builder()
            .label(gettext("_Start"))
            .use_underline(true)
            .halign(gtk::Align::Center)
            .action_name("vm.start")
            .css_classes(["pill", "suggested-action"])
            .build();
        let off_page = adw::StatusPage::builder()
            .icon_name("system-shutdown-symbolic")
            .title(gettext("Shut Off"))
            .child(&start)
            .build();
        let console_stack = gtk::Stack::new();
        console_stack.add_named(&console_slot, Some("console"));
        console_stack.add_named(&off_page, Some("off"));

        let details = adw::PreferencesPage::new();
        let serial = SerialView::new();
        let stack = adw::ViewStack::new();
        stack
            .add_titled(&console_stack, Some("console"), &gettext("Console"))
            .set_icon_name(Some("video-display-symbolic"));
        stack
            .add_titled(&details, Some("details"), &gettext("Details"))
            .set_icon_name(Some("document-properties-symbolic"));
        stack
            .add_titled(serial.widget(), Some("serial"), &gettext("Serial"))
            .set_icon_name(Some("utilities-terminal-symbolic"));
        VmPage {
            stack,
            console_slot,
            console_stack,
            off_page,
            details,
            details_groups: Vec::new(),
            serial,
        }
    }

    /// Shows the console, or the "shut off" state when there is no VM
    /// process to show.
    pub fn show_state(&self, name: &str, state: VmState) {
        if state.is_active() {
            self.console_stack.set_visible_child_name("console");
        } else {
            self.off_page.set_description(Some(&gettext_f(
                "“{name}” is not running. Start it to see its screen here.",
                &[("name", name)],
            )));
            self.off_page.set_title(&if state == VmState::Starting {
                gettext("Starting…")
            } else {
                gettext("Shut Off")
            });
            self.console_stack.set_visible_child_name("off");
        }
    }

    /// Fills the Details tab from `definition`.
    pub fn show_details(&mut self, definition: &Definition, state: VmState) {
        for group in self.details_groups.drain(..) {
            self.details.remove(&group);
        }
        let domain = definition.domain();
        let overview = group(&gettext("Overview"));
        row(&overview, &gettext("Name"), &definition.name);
        if let Some(title) = domain.title() {
            row(&overview, &gettext("Title"), &title);
        }
        if let Some(description) = domain.description() {
            row(&overview, &gettext("Description"), &description);
        }
        row(&overview, &gettext("UUID"), &definition.uuid);
        row(
            &overview,
            &gettext("State"),
            &super::vm_list::state_label(state),
        );

        let hardware = group(&gettext("Hardware"));
        let memory_mib = domain.memory().ok().flatten().unwrap_or(0) >> 20;
        row(
            &hardware,
            &gettext("Memory"),
            &gettext_f("{n} MiB", &[("n", &memory_mib.to_string())]),
        );
        let vcpus = domain.vcpu().map(|v| v.count).unwrap_or(1);
        row(
            &hardware,
            &gettext("CPUs"),
            &ngettext("{n} CPU", "{n} CPUs", vcpus).replace("{n}", &vcpus.to_string()),
        );
        if let Ok(os) = domain.os() {
            if let Some(kernel) = os.kernel {
                row(&hardware, &gettext("Kernel"), &kernel);
            }
            let boot: Vec<&str> = os.boot.iter().map(|b| b.as_str()).collect();
            if !boot.is_empty() {
                row(&hardware, &gettext("Boot order"), &boot.join(", "));
            }
        }

        let storage = group(&gettext("Storage"));
        for disk in domain.disks().unwrap_or_default() {
            let kind = if disk.device == "cdrom" {
                gettext("CD-ROM")
            } else {
                gettext("Disk")
            };
            let title = format!(
                "{kind} {} ({})",
                disk.target_dev,
                disk.target_bus.as_deref().unwrap_or("?")
            );
            let source = disk.source.unwrap_or_else(|| gettext("Empty"));
            row(&storage, &title, &source);
        }
        let display = group(&gettext("Display"));
        for graphics in domain.graphics().unwrap_or_default() {
            if graphics.kind == "vnc" {
                row(
                    &display,
                    &gettext("VNC"),
                    &graphics.listen.unwrap_or_else(|| "127.0.0.1".into()),
                );
            }
        }
        for g in [overview, hardware, storage, display] {
            self.details.add(&g);
            self.details_groups.push(g);
        }
    }
}

fn group(title: &str) -> adw::PreferencesGroup {
    adw::PreferencesGroup::builder().title(title).build()
}

fn row(group: &adw::PreferencesGroup, title: &str, value: &str) {
    let row = adw::ActionRow::builder()
        .title(title)
        .subtitle(value)
        .build();
    row.add_css_class("property");
    group.add(&row);
}
