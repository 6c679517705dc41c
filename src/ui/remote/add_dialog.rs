//! Add Connection…, as virt-manager's dialog: a hypervisor, optionally a
//! host reached over SSH and the user to log in as, or a raw URI for
//! anything else (`qemu+tls://…`); the URI it will use is shown as the
//! fields change.

use std::rc::Rc;

use adw::prelude::*;

use super::super::gettext;
use crate::connection::uri::build_uri;

/// The hypervisors offered: (label, driver, session).
fn hypervisors() -> Vec<(String, &'static str, bool)> {
    vec![
        (gettext("QEMU/KVM"), "qemu", false),
        (gettext("QEMU/KVM user session"), "qemu", true),
        (gettext("libvirt test driver"), "test", false),
    ]
}

/// Shows the dialog; `connect` gets the URI when the user confirms.
pub fn show(parent: &adw::ApplicationWindow, connect: impl Fn(String) + 'static) {
    let choices = hypervisors();
    let labels: Vec<&str> = choices.iter().map(|(l, _, _)| l.as_str()).collect();
    let hypervisor = adw::ComboRow::builder()
        .title(gettext("Hypervisor"))
        .model(&gtk::StringList::new(&labels))
        .build();
    let over_ssh = gtk::Switch::builder().valign(gtk::Align::Center).build();
    let ssh_row = adw::ActionRow::builder()
        .title(gettext("Connect to a remote host over SSH"))
        .activatable_widget(&over_ssh)
        .build();
    ssh_row.add_suffix(&over_ssh);
    let user = adw::EntryRow::builder().title(gettext("User name")).build();
    let host = adw::EntryRow::builder().title(gettext("Host name")).build();
    let custom = adw::EntryRow::builder()
        .title(gettext("Custom URI (instead of the fields above)"))
        .build();
    // The URI on a line of its own, in full contrast and selectable, to
    // check or copy (a row's subtitle is small and dimmed).
    let generated_uri = gtk::Label::builder()
        .selectable(true)
        .wrap(true)
        .wrap_mode(gtk::pango::WrapMode::WordChar)
        .xalign(0.0)
        .css_classes(["monospace"])
        .build();
    let generated_box = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(3)
        .margin_top(9)
        .margin_bottom(9)
        .margin_start(12)
        .margin_end(12)
        .build();
    generated_box.append(
        &gtk::Label::builder()
            .label(gettext("Generated URI"))
            .xalign(0.0)
            .css_classes(["dim-label", "caption"])
            .build(),
    );
    generated_box.append(&generated_uri);
    let generated = adw::PreferencesRow::builder()
        .child(&generated_box)
        .activatable(false)
        .build();
    let group = adw::PreferencesGroup::new();
    group.add(&hypervisor);
    group.add(&ssh_row);
    group.add(&user);
    group.add(&host);
    let custom_group = adw::PreferencesGroup::new();
    custom_group.add(&custom);
    custom_group.add(&generated);

    let uri = {
        let (hypervisor, over_ssh, user, host, custom) = (
            hypervisor.clone(),
            over_ssh.clone(),
            user.clone(),
            host.clone(),
            custom.clone(),
        );
        let choices = choices.clone();
        Rc::new(move || {
            let typed = custom.text().trim().to_string();
            if !typed.is_empty() {
                return typed;
            }
            let (_, driver, session) = choices
                .get(hypervisor.selected() as usize)
                .cloned()
                .unwrap_or((String::new(), "qemu", false));
            let remote = over_ssh.is_active();
            let host_text = if remote { host.text() } else { "".into() };
            let user_text = if remote { user.text() } else { "".into() };
            build_uri(driver, &host_text, &user_text, session)
        })
    };
    let refresh = {
        let (generated_uri, user, host, over_ssh, uri) = (
            generated_uri.clone(),
            user.clone(),
            host.clone(),
            over_ssh.clone(),
            uri.clone(),
        );
        Rc::new(move || {
            user.set_sensitive(over_ssh.is_active());
            host.set_sensitive(over_ssh.is_active());
            generated_uri.set_label(&uri());
        })
    };
    refresh();
    let r = refresh.clone();
    hypervisor.connect_selected_notify(move |_| r());
    let r = refresh.clone();
    over_ssh.connect_active_notify(move |_| r());
    for entry in [&user, &host, &custom] {
        let r = refresh.clone();
        entry.connect_changed(move |_| r());
    }

    let cancel = gtk::Button::with_mnemonic(&gettext("_Cancel"));
    let add = gtk::Button::builder()
        .label(gettext("C_onnect"))
        .use_underline(true)
        .css_classes(["suggested-action"])
        .build();
    let header = adw::HeaderBar::builder()
        .show_end_title_buttons(false)
        .show_start_title_buttons(false)
        .title_widget(&adw::WindowTitle::new(&gettext("Add Connection"), ""))
        .build();
    header.pack_start(&cancel);
    header.pack_end(&add);
    let content = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(18)
        .margin_top(18)
        .margin_bottom(18)
        .margin_start(18)
        .margin_end(18)
        .build();
    content.append(&group);
    content.append(&custom_group);
    let outer = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .build();
    outer.append(&header);
    outer.append(&content);
    let window = adw::Window::builder()
        .transient_for(parent)
        .modal(true)
        .default_width(460)
        .content(&outer)
        .build();
    let w = window.clone();
    cancel.connect_clicked(move |_| w.close());
    let w = window.clone();
    add.connect_clicked(move |_| {
        let uri = uri();
        if !uri.is_empty() {
            connect(uri);
        }
        w.close();
    });
    window.present();
}
