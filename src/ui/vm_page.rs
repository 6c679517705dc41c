//! The VM's page: Console (the guest's screen, or a "shut off" state with
//! a Start button), Details (the hardware view, `details`), XML (the
//! definition's editor), Snapshots (`snapshots`) and Serial (the serial
//! console), switched in the header bar.

use adw::prelude::*;

use super::details::Details;
use super::gettext;
use super::i18n::gettext_f;
use super::serial::SerialView;
use super::snapshots::SnapshotsPage;
use crate::app::lifecycle::VmState;
use crate::definitions::Definition;

pub struct VmPage {
    /// The tabs, over the bar that switches them in a narrow window.
    pub root: gtk::Box,
    pub stack: adw::ViewStack,
    pub switcher_bar: adw::ViewSwitcherBar,
    /// Holds the console view while the VM runs.
    pub console_slot: gtk::Box,
    console_stack: gtk::Stack,
    off_page: adw::StatusPage,
    details: Details,
    snapshots: SnapshotsPage,
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

        let details = Details::new();
        let snapshots = SnapshotsPage::new();
        let serial = SerialView::new();
        let stack = adw::ViewStack::new();
        stack
            .add_titled(&console_stack, Some("console"), &gettext("Console"))
            .set_icon_name(Some("video-display-symbolic"));
        stack
            .add_titled(
                details.hardware.widget(),
                Some("details"),
                &gettext("Details"),
            )
            .set_icon_name(Some("document-properties-symbolic"));
        stack
            .add_titled(details.xml.widget(), Some("xml"), &gettext("XML"))
            .set_icon_name(Some("text-x-generic-symbolic"));
        stack
            .add_titled(snapshots.widget(), Some("snapshots"), &gettext("Snapshots"))
            .set_icon_name(Some("camera-photo-symbolic"));
        stack
            .add_titled(serial.widget(), Some("serial"), &gettext("Serial"))
            .set_icon_name(Some("utilities-terminal-symbolic"));
        let switcher_bar = adw::ViewSwitcherBar::builder().stack(&stack).build();
        stack.set_vexpand(true);
        let root = gtk::Box::new(gtk::Orientation::Vertical, 0);
        root.append(&stack);
        root.append(&switcher_bar);
        VmPage {
            root,
            stack,
            switcher_bar,
            console_slot,
            console_stack,
            off_page,
            details,
            snapshots,
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

    /// Fills the Details, XML and Snapshots tabs from `definition`.
    pub fn show_details(&mut self, definition: &Definition, state: VmState) {
        self.details.show(definition, state);
        self.snapshots.show(definition, state);
    }
}
