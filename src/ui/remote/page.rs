//! The page of a VM on a libvirt host: its own header bar with the same
//! lifecycle buttons as a local VM's, and Console (the same console widget,
//! fed by libvirt's graphics descriptor or an SSH tunnel), Details (what
//! the host says, and what Vireo would not run as written) and XML
//! (editable; Apply defines it on the host).

use adw::prelude::*;

use super::super::console::ConsoleView;
use super::super::gettext;
use crate::app::lifecycle::VmState;
use crate::connection::DomainInfo;

pub struct RemotePage {
    pub root: gtk::Box,
    pub title: adw::WindowTitle,
    pub pause: gtk::Button,
    pub resume: gtk::Button,
    pub console: ConsoleView,
    details: gtk::Box,
    details_content: std::cell::RefCell<Option<adw::PreferencesPage>>,
    pub xml: gtk::TextView,
    pub xml_error: gtk::Label,
    pub apply: gtk::Button,
    pub revert: gtk::Button,
}

fn icon_button(icon: &str, tooltip: &str, action: &str) -> gtk::Button {
    gtk::Button::builder()
        .icon_name(icon)
        .tooltip_text(tooltip)
        .action_name(action)
        .build()
}

impl RemotePage {
    pub fn new() -> Self {
        let title = adw::WindowTitle::new("", "");
        let stack = adw::ViewStack::new();
        let switcher = adw::ViewSwitcherTitle::builder()
            .stack(&stack)
            .title("")
            .build();
        let start = icon_button(
            "media-playback-start-symbolic",
            &gettext("Start"),
            "remote.start",
        );
        let pause = icon_button(
            "media-playback-pause-symbolic",
            &gettext("Pause"),
            "remote.pause",
        );
        let resume = icon_button(
            "media-playback-start-symbolic",
            &gettext("Resume"),
            "remote.resume",
        );
        let shutdown = icon_button(
            "system-shutdown-symbolic",
            &gettext("Shut Down"),
            "remote.shutdown",
        );
        let menu = gtk::gio::Menu::new();
        let power = gtk::gio::Menu::new();
        power.append(Some(&gettext("_Reboot")), Some("remote.reboot"));
        power.append(Some(&gettext("_Force Off")), Some("remote.force-off"));
        menu.append_section(None, &power);
        let manage = gtk::gio::Menu::new();
        manage.append(
            Some(&gettext("Copy to _This Computer…")),
            Some("remote.copy-here"),
        );
        menu.append_section(None, &manage);
        let menu_button = gtk::MenuButton::builder()
            .icon_name("view-more-symbolic")
            .menu_model(&menu)
            .tooltip_text(gettext("VM Menu"))
            .build();
        let header = adw::HeaderBar::builder().title_widget(&switcher).build();
        header.pack_start(&start);
        header.pack_start(&pause);
        header.pack_start(&resume);
        header.pack_start(&shutdown);
        header.pack_end(&menu_button);

        let console = ConsoleView::new();
        console.set_hexpand(true);
        console.set_vexpand(true);
        stack.add_titled_with_icon(
            &console,
            Some("console"),
            &gettext("Console"),
            "computer-symbolic",
        );

        let details = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .vexpand(true)
            .build();
        stack.add_titled_with_icon(
            &details,
            Some("details"),
            &gettext("Details"),
            "document-properties-symbolic",
        );

        let xml = gtk::TextView::builder()
            .monospace(true)
            .wrap_mode(gtk::WrapMode::None)
            .top_margin(12)
            .bottom_margin(12)
            .left_margin(12)
            .right_margin(12)
            .build();
        let scrolled = gtk::ScrolledWindow::builder()
            .child(&xml)
            .vexpand(true)
            .build();
        let xml_error = gtk::Label::builder()
            .wrap(true)
            .xalign(0.0)
            .css_classes(["error"])
            .visible(false)
            .margin_start(12)
            .margin_end(12)
            .build();
        let apply = gtk::Button::builder()
            .label(gettext("_Apply"))
            .use_underline(true)
            .css_classes(["suggested-action"])
            .build();
        let revert = gtk::Button::builder()
            .label(gettext("_Revert"))
            .use_underline(true)
            .build();
        let buttons = gtk::Box::builder()
            .spacing(6)
            .halign(gtk::Align::End)
            .margin_top(6)
            .margin_bottom(6)
            .margin_end(12)
            .build();
        buttons.append(&revert);
        buttons.append(&apply);
        let xml_page = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .build();
        xml_page.append(&scrolled);
        xml_page.append(&xml_error);
        xml_page.append(&buttons);
        stack.add_titled_with_icon(
            &xml_page,
            Some("xml"),
            &gettext("XML"),
            "text-x-generic-symbolic",
        );

        let root = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .hexpand(true)
            .vexpand(true)
            .visible(false)
            .build();
        root.append(&header);
        root.append(&stack);
        // The switcher's title is the VM's; keep the plain title in sync.
        title
            .bind_property("title", &switcher, "title")
            .sync_create()
            .build();
        title
            .bind_property("subtitle", &switcher, "subtitle")
            .sync_create()
            .build();
        RemotePage {
            root,
            title,
            pause,
            resume,
            console,
            details,
            details_content: Default::default(),
            xml,
            xml_error,
            apply,
            revert,
        }
    }

    /// Pause or Resume, whichever the state offers.
    pub fn show_state(&self, state: VmState) {
        let paused = state == VmState::Paused;
        self.pause.set_visible(!paused);
        self.resume.set_visible(paused);
    }

    /// Details: what the host says about the VM, and what Vireo would not
    /// run as written (should it be copied to this computer).
    pub fn show_details(&self, uri: &str, info: &DomainInfo, unsupported: &[String]) {
        let page = adw::PreferencesPage::new();
        let group = adw::PreferencesGroup::builder()
            .title(gettext("Overview"))
            .build();
        let row = |title: &str, value: &str| {
            // A URI's `&` and an element's `<name>` are text, not markup
            // (libadwaita 1.2 reads a subtitle as markup whatever
            // `use-markup` says, so the text is escaped instead).
            let row = adw::ActionRow::builder()
                .title(gtk::glib::markup_escape_text(title).as_str())
                .subtitle(gtk::glib::markup_escape_text(value).as_str())
                .build();
            row.add_css_class("property");
            group.add(&row);
        };
        let yes_no = |v: Option<bool>| match v {
            Some(true) => gettext("Yes"),
            Some(false) => gettext("No"),
            None => gettext("Unknown"),
        };
        row(&gettext("Name"), &info.row.name);
        row(&gettext("UUID"), &info.row.uuid);
        row(&gettext("Connection"), uri);
        row(
            &gettext("State"),
            &super::super::vm_list::state_label(info.row.state.vm_state()),
        );
        row(&gettext("CPUs"), &info.vcpus.to_string());
        row(
            &gettext("Memory"),
            &format!("{} MiB", info.used_memory_kib / 1024),
        );
        row(&gettext("Persistent"), &yes_no(info.persistent));
        row(&gettext("Start with the host"), &yes_no(info.autostart));
        page.add(&group);
        if !unsupported.is_empty() {
            let differences = adw::PreferencesGroup::builder()
                .title(gettext("What Vireo Would Not Run"))
                .description(gettext(
                    "Copied to this computer, Vireo would run this VM without these parts of its definition:",
                ))
                .build();
            for sentence in unsupported {
                let row = adw::ActionRow::builder()
                    .title(gtk::glib::markup_escape_text(sentence).as_str())
                    .build();
                row.set_title_lines(0);
                differences.add(&row);
            }
            page.add(&differences);
        }
        if let Some(old) = self.details_content.replace(Some(page.clone())) {
            self.details.remove(&old);
        }
        self.details.append(&page);
    }

    pub fn set_xml(&self, xml: &str) {
        self.xml.buffer().set_text(xml);
        self.xml_error.set_visible(false);
    }

    pub fn xml_text(&self) -> String {
        let buffer = self.xml.buffer();
        buffer
            .text(&buffer.start_iter(), &buffer.end_iter(), false)
            .to_string()
    }
}
