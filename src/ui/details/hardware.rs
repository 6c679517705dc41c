//! The Details tab's groups, one per section of virt-manager's hardware
//! list: each editable row changes the edited definition through
//! `app::edit` and says "Takes effect after shutdown" while the VM runs.

use std::cell::Cell;
use std::path::PathBuf;
use std::rc::Rc;

use crate::ui::file_chooser::{choose_path, Pick};
use adw::prelude::*;

use super::DetailsPage;
use crate::app::edit::{self, DeviceRef};
use crate::definitions::Definition;
use crate::domain::{BootDevice, CpuTopology, Disk, Domain, Input, Interface, Serial, Video};
use crate::ui::i18n::gettext_f;
use crate::ui::{gettext, ngettext};

/// Every group, in virt-manager's order.
pub fn groups(
    page: &DetailsPage,
    original: &Definition,
    domain: &Domain,
    running: bool,
) -> Vec<adw::PreferencesGroup> {
    let rows = Rows { page, running };
    let mut out = vec![
        overview(&rows, original, domain),
        cpus(&rows, domain),
        memory(&rows, domain),
        boot(&rows, domain),
    ];
    for disk in domain.disks().unwrap_or_default() {
        out.push(disk_group(&rows, &disk));
    }
    for (index, nic) in domain.interfaces().unwrap_or_default().iter().enumerate() {
        out.push(nic_group(&rows, index, nic));
    }
    out.push(display(&rows, domain));
    out.push(video(&rows, domain));
    out.push(serials(&rows, domain));
    out.push(inputs(&rows, domain));
    out
}

/// Row builders that know whether the VM runs.
struct Rows<'a> {
    page: &'a DetailsPage,
    running: bool,
}

impl Rows<'_> {
    /// A row whose suffix edits a value.
    fn editable(&self, title: &str) -> adw::ActionRow {
        let row = adw::ActionRow::builder().title(title).build();
        if self.running {
            row.set_subtitle(&gettext("Takes effect after shutdown"));
        }
        row
    }

    fn info(&self, group: &adw::PreferencesGroup, title: &str, value: &str) {
        let row = adw::ActionRow::builder()
            .title(title)
            .subtitle(value)
            .build();
        row.add_css_class("property");
        group.add(&row);
    }

    fn entry(
        &self,
        group: &adw::PreferencesGroup,
        title: &str,
        value: &str,
        change: impl Fn(&DetailsPage, String) + 'static,
    ) -> gtk::Entry {
        let row = self.editable(title);
        let entry = gtk::Entry::builder()
            .text(value)
            .valign(gtk::Align::Center)
            .width_chars(28)
            .build();
        row.add_suffix(&entry);
        group.add(&row);
        let page = self.page.clone();
        entry.connect_changed(move |e| change(&page, e.text().to_string()));
        entry
    }

    fn spin(
        &self,
        group: &adw::PreferencesGroup,
        title: &str,
        value: f64,
        (min, max, step): (f64, f64, f64),
        change: impl Fn(&DetailsPage, u64) + 'static,
    ) -> gtk::SpinButton {
        let row = self.editable(title);
        let spin = gtk::SpinButton::with_range(min, max, step);
        spin.set_value(value);
        spin.set_valign(gtk::Align::Center);
        row.add_suffix(&spin);
        group.add(&row);
        let page = self.page.clone();
        spin.connect_value_changed(move |s| change(&page, s.value() as u64));
        spin
    }

    fn switch(
        &self,
        group: &adw::PreferencesGroup,
        title: &str,
        active: bool,
        change: impl Fn(&DetailsPage, bool) + 'static,
    ) {
        let row = self.editable(title);
        let switch = gtk::Switch::builder()
            .active(active)
            .valign(gtk::Align::Center)
            .build();
        row.add_suffix(&switch);
        row.set_activatable_widget(Some(&switch));
        group.add(&row);
        let page = self.page.clone();
        switch.connect_active_notify(move |s| change(&page, s.is_active()));
    }

    /// A choice among `options` (the current value is added when it is
    /// not one of them, so a definition's own value is never lost).
    fn combo(
        &self,
        group: &adw::PreferencesGroup,
        title: &str,
        options: &[&str],
        current: &str,
        change: impl Fn(&DetailsPage, String) + 'static,
    ) {
        let mut options: Vec<String> = options.iter().map(|s| s.to_string()).collect();
        if !options.iter().any(|o| o == current) {
            options.push(current.to_string());
        }
        let list = gtk::StringList::new(&options.iter().map(String::as_str).collect::<Vec<_>>());
        let row = adw::ComboRow::builder().title(title).model(&list).build();
        if self.running {
            row.set_subtitle(&gettext("Takes effect after shutdown"));
        }
        let selected = options.iter().position(|o| o == current).unwrap_or(0);
        row.set_selected(selected as u32);
        group.add(&row);
        let page = self.page.clone();
        row.connect_selected_notify(move |r| {
            if let Some(value) = options.get(r.selected() as usize) {
                change(&page, value.clone());
            }
        });
    }

    /// A header button that removes `device` after asking.
    fn remove_button(&self, group: &adw::PreferencesGroup, device: DeviceRef, what: String) {
        add_header_button(group, &remove_button(self, device, what));
    }
}

fn group(title: &str) -> adw::PreferencesGroup {
    adw::PreferencesGroup::builder().title(title).build()
}

/// Buttons beside a group's title (several share one box).
fn add_header_button(group: &adw::PreferencesGroup, button: &gtk::Button) {
    let holder = match group.header_suffix().and_downcast::<gtk::Box>() {
        Some(b) => b,
        None => {
            let b = gtk::Box::builder().spacing(6).build();
            group.set_header_suffix(Some(&b));
            b
        }
    };
    holder.append(button);
}

fn overview(rows: &Rows, original: &Definition, domain: &Domain) -> adw::PreferencesGroup {
    let g = group(&gettext("Overview"));
    let name = rows.entry(&g, &gettext("Name"), &domain.name(), |page, name| {
        page.edit(|d| {
            d.set_name(name.trim());
            Ok(())
        })
    });
    // Renaming needs the VM off, as `vireo domrename` does.
    name.set_sensitive(!rows.running);
    let title = rows.entry(
        &g,
        &gettext("Title"),
        &domain.title().unwrap_or_default(),
        |_, _| {},
    );
    let description = rows.entry(
        &g,
        &gettext("Description"),
        &domain.description().unwrap_or_default(),
        |_, _| {},
    );
    // Either text changes both: set_overview takes the pair.
    for entry in [&title, &description] {
        let (title, description, page) = (title.clone(), description.clone(), rows.page.clone());
        entry.connect_changed(move |_| {
            let (t, s) = (title.text().to_string(), description.text().to_string());
            page.edit(|d| {
                edit::set_overview(d, &t, &s);
                Ok(())
            })
        });
    }
    rows.info(&g, &gettext("UUID"), &original.uuid);
    rows.info(
        &g,
        &gettext("State"),
        &if rows.running {
            gettext("Running")
        } else {
            gettext("Shut off")
        },
    );
    g
}

fn cpus(rows: &Rows, domain: &Domain) -> adw::PreferencesGroup {
    let g = group(&gettext("CPUs"));
    let count = domain.vcpu().map(|v| v.count).unwrap_or(1);
    let topology = domain.cpu_topology().ok().flatten();
    let t = topology.unwrap_or(CpuTopology {
        sockets: 1,
        dies: None,
        cores: count,
        threads: 1,
    });
    let count_spin = rows.spin(
        &g,
        &gettext("Count"),
        count.into(),
        (1.0, 255.0, 1.0),
        |_, _| {},
    );
    let manual = adw::ExpanderRow::builder()
        .title(gettext("Manual topology"))
        .show_enable_switch(true)
        .enable_expansion(topology.is_some())
        .build();
    g.add(&manual);
    let spin = |title: &str, value: u32| {
        let row = rows.editable(title);
        let s = gtk::SpinButton::with_range(1.0, 255.0, 1.0);
        s.set_value(value.into());
        s.set_valign(gtk::Align::Center);
        row.add_suffix(&s);
        manual.add_row(&row);
        s
    };
    let sockets = spin(&gettext("Sockets"), t.sockets);
    let cores = spin(&gettext("Cores"), t.cores);
    let threads = spin(&gettext("Threads"), t.threads);
    let update = {
        let (count_spin, manual, sockets, cores, threads, page) = (
            count_spin.clone(),
            manual.clone(),
            sockets.clone(),
            cores.clone(),
            threads.clone(),
            rows.page.clone(),
        );
        let dies = t.dies;
        Rc::new(move || {
            let topology = manual.enables_expansion().then(|| CpuTopology {
                sockets: sockets.value() as u32,
                dies,
                cores: cores.value() as u32,
                threads: threads.value() as u32,
            });
            let count = count_spin.value() as u32;
            page.edit(|d| edit::set_cpus(d, count, topology));
        })
    };
    for s in [&count_spin, &sockets, &cores, &threads] {
        let update = update.clone();
        s.connect_value_changed(move |_| update());
    }
    manual.connect_enable_expansion_notify(move |_| update());
    g
}

fn memory(rows: &Rows, domain: &Domain) -> adw::PreferencesGroup {
    let g = group(&gettext("Memory"));
    let mib = domain.memory().ok().flatten().unwrap_or(0) >> 20;
    rows.spin(
        &g,
        &gettext("Memory (MiB)"),
        mib as f64,
        (16.0, 1_048_576.0, 64.0),
        |page, mib| page.edit(|d| edit::set_memory_mib(d, mib)),
    );
    g
}

fn boot_label(device: BootDevice) -> String {
    match device {
        BootDevice::Hd => gettext("Hard disk"),
        BootDevice::Cdrom => gettext("CD-ROM"),
        BootDevice::Fd => gettext("Floppy"),
        BootDevice::Network => gettext("Network (PXE)"),
    }
}

fn boot(rows: &Rows, domain: &Domain) -> adw::PreferencesGroup {
    let g = group(&gettext("Boot Options"));
    let os = domain.os().unwrap_or_default();
    let enabled = os.boot.clone();
    // The enabled devices in order, then the others.
    let mut all = enabled.clone();
    for d in [
        BootDevice::Hd,
        BootDevice::Cdrom,
        BootDevice::Network,
        BootDevice::Fd,
    ] {
        if !all.contains(&d) {
            all.push(d);
        }
    }
    let menu = os.bootmenu.unwrap_or(false);
    for (index, device) in all.iter().copied().enumerate() {
        let row = rows.editable(&boot_label(device));
        let check = gtk::CheckButton::builder()
            .active(enabled.contains(&device))
            .valign(gtk::Align::Center)
            .build();
        row.add_prefix(&check);
        row.set_activatable_widget(Some(&check));
        {
            let (page, enabled) = (rows.page.clone(), enabled.clone());
            check.connect_toggled(move |c| {
                let mut order = enabled.clone();
                if c.is_active() {
                    order.push(device);
                } else {
                    order.retain(|d| *d != device);
                }
                page.edit_and_rebuild(|d| edit::set_boot(d, &order, menu));
            });
        }
        if index < enabled.len() {
            for (up, icon, tip) in [
                (true, "go-up-symbolic", gettext("Move Up")),
                (false, "go-down-symbolic", gettext("Move Down")),
            ] {
                let button = gtk::Button::builder()
                    .icon_name(icon)
                    .tooltip_text(tip)
                    .valign(gtk::Align::Center)
                    .css_classes(["flat"])
                    .build();
                let mut order = enabled.clone();
                button.set_sensitive(edit::move_boot(&mut order, index, up));
                let page = rows.page.clone();
                button.connect_clicked(move |_| {
                    let order = order.clone();
                    page.edit_and_rebuild(|d| edit::set_boot(d, &order, menu));
                });
                row.add_suffix(&button);
            }
        }
        g.add(&row);
    }
    rows.switch(&g, &gettext("Boot menu"), menu, move |page, on| {
        let order = enabled.clone();
        page.edit(|d| edit::set_boot(d, &order, on))
    });
    g
}

fn disk_group(rows: &Rows, disk: &Disk) -> adw::PreferencesGroup {
    let cdrom = disk.device == "cdrom";
    let title = if cdrom {
        gettext_f("CD-ROM {target}", &[("target", &disk.target_dev)])
    } else {
        gettext_f("Disk {target}", &[("target", &disk.target_dev)])
    };
    let g = group(&title);
    let target = disk.target_dev.clone();
    if cdrom {
        rows.info(
            &g,
            &gettext("Source"),
            &disk.source.clone().unwrap_or_else(|| gettext("Empty")),
        );
        let insert = gtk::Button::builder()
            .label(gettext("Insert…"))
            .valign(gtk::Align::Center)
            .build();
        let page = rows.page.clone();
        let t = target.clone();
        insert.connect_clicked(move |_| choose_iso(&page, t.clone()));
        add_header_button(&g, &insert);
        let eject = gtk::Button::builder()
            .label(gettext("Eject"))
            .valign(gtk::Align::Center)
            .sensitive(disk.source.is_some())
            .build();
        let page = rows.page.clone();
        let t = target.clone();
        eject.connect_clicked(move |_| page.change_media(t.clone(), None));
        add_header_button(&g, &eject);
    } else {
        let t = target.clone();
        rows.entry(
            &g,
            &gettext("Source path"),
            disk.source.as_deref().unwrap_or_default(),
            move |page, path| {
                let path = path.trim().to_string();
                page.edit(|d| {
                    edit::update_disk(d, &t, |disk| {
                        disk.source = Some(path).filter(|p| !p.is_empty());
                    })
                })
            },
        );
    }
    let t = target.clone();
    rows.combo(
        &g,
        &gettext("Bus"),
        edit::DISK_BUSES,
        disk.target_bus.as_deref().unwrap_or("ide"),
        move |page, bus| page.edit_and_rebuild(|d| edit::set_disk_bus(d, &t, &bus).map(|_| ())),
    );
    let t = target.clone();
    rows.combo(
        &g,
        &gettext("Format"),
        edit::DISK_FORMATS,
        disk.driver_type.as_deref().unwrap_or("raw"),
        move |page, format| {
            page.edit(|d| edit::update_disk(d, &t, |disk| disk.driver_type = Some(format)))
        },
    );
    let t = target.clone();
    rows.switch(&g, &gettext("Read-only"), disk.readonly, move |page, on| {
        page.edit(|d| edit::update_disk(d, &t, |disk| disk.readonly = on))
    });
    rows.remove_button(&g, DeviceRef::Disk(target), title);
    g
}

/// Insert…: a file chooser for ISO images.
fn choose_iso(page: &DetailsPage, target: String) {
    let parent = page.window();
    let page = page.clone();
    choose_path(
        parent.as_ref(),
        &gettext("Choose an ISO Image"),
        Pick::Iso,
        move |path| page.change_media(target.clone(), Some(path)),
    );
}

fn nic_group(rows: &Rows, index: usize, nic: &Interface) -> adw::PreferencesGroup {
    let title = gettext_f("Network Interface {n}", &[("n", &(index + 1).to_string())]);
    let g = group(&title);
    match nic.kind.as_str() {
        "network" => {
            rows.entry(
                &g,
                &gettext("Network"),
                nic.source_network.as_deref().unwrap_or_default(),
                move |page, net| {
                    let net = net.trim().to_string();
                    page.edit(|d| {
                        edit::update_interface(d, index, |n| n.source_network = Some(net))
                    })
                },
            );
        }
        "bridge" => {
            rows.entry(
                &g,
                &gettext("Bridge"),
                nic.source_bridge.as_deref().unwrap_or_default(),
                move |page, br| {
                    let br = br.trim().to_string();
                    page.edit(|d| edit::update_interface(d, index, |n| n.source_bridge = Some(br)))
                },
            );
        }
        other => rows.info(&g, &gettext("Source"), other),
    }
    rows.combo(
        &g,
        &gettext("Model"),
        edit::NIC_MODELS,
        nic.model.as_deref().unwrap_or("virtio"),
        move |page, model| {
            page.edit(|d| edit::update_interface(d, index, |n| n.model = Some(model)))
        },
    );
    rows.entry(
        &g,
        &gettext("MAC address"),
        nic.mac.as_deref().unwrap_or_default(),
        move |page, mac| {
            let mac = mac.trim().to_ascii_lowercase();
            page.edit(|d| edit::update_interface(d, index, |n| n.mac = Some(mac)))
        },
    );
    rows.remove_button(&g, DeviceRef::Interface(index), title);
    g
}

fn display(rows: &Rows, domain: &Domain) -> adw::PreferencesGroup {
    let g = group(&gettext("Display"));
    let graphics = domain.graphics().unwrap_or_default();
    let Some(vnc) = graphics.into_iter().find(|g| g.kind == "vnc") else {
        rows.info(&g, &gettext("VNC"), &gettext("None"));
        return g;
    };
    let listen = rows.entry(
        &g,
        &gettext("VNC listen address"),
        vnc.listen.as_deref().unwrap_or("127.0.0.1"),
        |_, _| {},
    );
    let fixed_port = vnc.port.filter(|p| *p > 0 && vnc.autoport != Some(true));
    let auto = Rc::new(Cell::new(fixed_port.is_none()));
    let port = rows.spin(
        &g,
        &gettext("Port"),
        fixed_port.unwrap_or(5900).into(),
        (5900.0, 65535.0, 1.0),
        |_, _| {},
    );
    port.set_sensitive(fixed_port.is_some());
    let auto_switch = gtk::Switch::builder()
        .active(fixed_port.is_none())
        .valign(gtk::Align::Center)
        .build();
    let auto_row = rows.editable(&gettext("Choose the port automatically"));
    auto_row.add_suffix(&auto_switch);
    auto_row.set_activatable_widget(Some(&auto_switch));
    g.add(&auto_row);
    let password = gtk::PasswordEntry::builder()
        .text(vnc.passwd.as_deref().unwrap_or_default())
        .show_peek_icon(true)
        .valign(gtk::Align::Center)
        .width_chars(20)
        .build();
    let password_row = rows.editable(&gettext("Password"));
    password_row.add_suffix(&password);
    g.add(&password_row);
    let update = {
        let (listen, port, password, auto, page) = (
            listen.clone(),
            port.clone(),
            password.clone(),
            auto.clone(),
            rows.page.clone(),
        );
        Rc::new(move || {
            let port = (!auto.get()).then(|| port.value() as u16);
            let (l, p) = (listen.text().to_string(), password.text().to_string());
            page.edit(|d| edit::set_vnc(d, &l, port, Some(&p)));
        })
    };
    {
        let update = update.clone();
        listen.connect_changed(move |_| update());
    }
    {
        let update = update.clone();
        port.connect_value_changed(move |_| update());
    }
    {
        let update = update.clone();
        password.connect_changed(move |_| update());
    }
    auto_switch.connect_active_notify(move |s| {
        auto.set(s.is_active());
        port.set_sensitive(!s.is_active());
        update();
    });
    g
}

fn video(rows: &Rows, domain: &Domain) -> adw::PreferencesGroup {
    let g = group(&gettext("Video"));
    match domain.devices::<Video>().unwrap_or_default().first() {
        Some(video) => rows.combo(
            &g,
            &gettext("Model"),
            edit::VIDEO_MODELS,
            video.model.as_deref().unwrap_or("vga"),
            |page, model| page.edit(|d| edit::set_video_model(d, &model)),
        ),
        None => rows.info(&g, &gettext("Model"), &gettext("None")),
    }
    g
}

fn serials(rows: &Rows, domain: &Domain) -> adw::PreferencesGroup {
    let g = group(&gettext("Serial"));
    let serials = domain.devices::<Serial>().unwrap_or_default();
    if serials.is_empty() {
        rows.info(&g, &gettext("Serial ports"), &gettext("None"));
    }
    for (index, serial) in serials.iter().enumerate() {
        let port = serial.0.target_port.unwrap_or(index as u32);
        let title = gettext_f("Serial port {n}", &[("n", &port.to_string())]);
        let row = adw::ActionRow::builder()
            .title(&title)
            .subtitle(&serial.0.kind)
            .build();
        row_remove_button(rows, &row, DeviceRef::Serial(index), title);
        g.add(&row);
    }
    g
}

fn inputs(rows: &Rows, domain: &Domain) -> adw::PreferencesGroup {
    let inputs = domain.devices::<Input>().unwrap_or_default();
    let g = group(&ngettext(
        "Input Device",
        "Input Devices",
        inputs.len() as u32,
    ));
    if inputs.is_empty() {
        rows.info(&g, &gettext("Input devices"), &gettext("None"));
    }
    for (index, input) in inputs.iter().enumerate() {
        let title = match input.kind.as_str() {
            "mouse" => gettext("Mouse"),
            "tablet" => gettext("Tablet"),
            "keyboard" => gettext("Keyboard"),
            other => other.to_string(),
        };
        let row = adw::ActionRow::builder()
            .title(&title)
            .subtitle(input.bus.as_deref().unwrap_or_default())
            .build();
        row_remove_button(rows, &row, DeviceRef::Input(index), title);
        g.add(&row);
    }
    g
}

fn row_remove_button(rows: &Rows, row: &adw::ActionRow, device: DeviceRef, what: String) {
    row.add_suffix(&remove_button(rows, device, what));
}

/// A trash button that removes `device` after asking.
fn remove_button(rows: &Rows, device: DeviceRef, what: String) -> gtk::Button {
    let button = gtk::Button::builder()
        .icon_name("user-trash-symbolic")
        .tooltip_text(gettext("Remove"))
        .valign(gtk::Align::Center)
        .css_classes(["flat"])
        .build();
    let page = rows.page.clone();
    button.connect_clicked(move |_| page.remove(device.clone(), what.clone()));
    button
}

/// A path typed or chosen, as a `PathBuf` (empty: none).
pub fn path_of(text: &str) -> Option<PathBuf> {
    let text = text.trim();
    (!text.is_empty()).then(|| PathBuf::from(text))
}
