//! Connection Details → Overview: what the host offers VMs, as
//! virt-manager's connection overview shows it — name, CPU, memory, KVM,
//! the VMs here and the capabilities XML (`vireo capabilities`).
//!
//! The facts come from [`HostInfo::gather`] on a worker thread each time
//! the page is shown, so the VM counts stay current and the window never
//! waits on /dev/kvm or /proc.

use adw::prelude::*;

use crate::app::host_info::{self, HostInfo};
use crate::ui::i18n::gettext_f;
use crate::ui::{gettext, ngettext};

pub struct HostPage {
    root: adw::PreferencesPage,
}

/// The rows whose values the gathered facts fill in.
#[derive(Clone)]
struct Rows {
    hostname: gtk::Label,
    kernel: gtk::Label,
    cpu_model: gtk::Label,
    cpus: gtk::Label,
    topology: gtk::Label,
    virtualization: gtk::Label,
    memory_total: gtk::Label,
    memory_available: gtk::Label,
    kvm: gtk::Label,
    max_vcpus: gtk::Label,
    vms: gtk::Label,
    vnc_listen: gtk::Label,
    capabilities: gtk::TextBuffer,
}

impl HostPage {
    pub fn new() -> Self {
        let root = adw::PreferencesPage::new();
        let wait = gettext("Gathering…");
        let host = group(&root, &gettext("Host"));
        let hostname = row(&host, &gettext("Hostname"), &wait);
        let kernel = row(&host, &gettext("Kernel"), "");
        let kvm = row(&host, &gettext("KVM"), "");
        // Room for the sentence that says what to fix, when there is one.
        kvm.set_wrap(true);
        kvm.set_width_chars(30);
        kvm.set_max_width_chars(48);
        let max_vcpus = row(&host, &gettext("Most vCPUs per VM"), "");
        let cpu = group(&root, &gettext("Processor"));
        let cpu_model = row(&cpu, &gettext("Model"), "");
        let cpus = row(&cpu, &gettext("Logical CPUs"), "");
        let topology = row(&cpu, &gettext("Sockets × cores × threads"), "");
        let virtualization = row(&cpu, &gettext("Hardware virtualization"), "");
        let memory = group(&root, &gettext("Memory"));
        let memory_total = row(&memory, &gettext("Total"), "");
        let memory_available = row(&memory, &gettext("Available"), "");
        let vm_group = group(&root, &gettext("Virtual Machines"));
        let vms = row(&vm_group, &gettext("On this host"), "");
        let vnc_listen = row(&vm_group, &gettext("VNC listen address for new VMs"), "");

        // The capabilities XML, folded away: long, and for experts.
        let capabilities = gtk::TextBuffer::new(None);
        let view = gtk::TextView::builder()
            .buffer(&capabilities)
            .editable(false)
            .monospace(true)
            .wrap_mode(gtk::WrapMode::None)
            .css_classes(["capabilities-xml"])
            .build();
        let scrolled = gtk::ScrolledWindow::builder()
            .child(&view)
            .min_content_height(320)
            .build();
        let copy = gtk::Button::builder()
            .icon_name("edit-copy-symbolic")
            .tooltip_text(gettext("Copy"))
            .valign(gtk::Align::Center)
            .css_classes(["flat"])
            .build();
        let buffer = capabilities.clone();
        copy.connect_clicked(move |button| {
            let text = buffer.text(&buffer.start_iter(), &buffer.end_iter(), false);
            button.clipboard().set_text(&text);
            button.set_tooltip_text(Some(&gettext("Copied")));
        });
        let expander = adw::ExpanderRow::builder()
            .title(gettext("Capabilities XML"))
            .subtitle(gettext(
                "What Vireo offers VMs here, as libvirt describes it",
            ))
            .build();
        expander.add_action(&copy);
        expander.add_row(&scrolled);
        let xml_group = group(&root, &gettext("Capabilities"));
        xml_group.add(&expander);

        let rows = Rows {
            hostname,
            kernel,
            cpu_model,
            cpus,
            topology,
            virtualization,
            memory_total,
            memory_available,
            kvm,
            max_vcpus,
            vms,
            vnc_listen,
            capabilities,
        };
        root.connect_map(move |_| {
            let rows = rows.clone();
            rows.vnc_listen
                .set_label(&crate::ui::settings::get().preferences().vnc_listen);
            let gathering = gtk::gio::spawn_blocking(HostInfo::gather);
            gtk::glib::spawn_future_local(async move {
                match gathering.await {
                    Ok(info) => rows.show(&info),
                    Err(_) => rows
                        .hostname
                        .set_label(&gettext("The host could not be examined")),
                }
            });
        });
        HostPage { root }
    }

    pub fn widget(&self) -> &adw::PreferencesPage {
        &self.root
    }
}

impl Rows {
    fn show(&self, info: &HostInfo) {
        self.hostname.set_label(&info.hostname);
        self.kernel.set_label(&info.kernel);
        self.cpu_model.set_label(&info.cpu_model);
        self.cpus.set_label(&info.logical_cpus.to_string());
        let (sockets, cores, threads) = info.topology;
        self.topology
            .set_label(&format!("{sockets} × {cores} × {threads}"));
        self.virtualization.set_label(
            &info
                .virtualization
                .map(str::to_string)
                .unwrap_or_else(|| gettext("Not reported by the CPU")),
        );
        self.memory_total
            .set_label(&host_info::gib(info.memory.total));
        self.memory_available
            .set_label(&host_info::gib(info.memory.available));
        match &info.kvm {
            Ok(kvm) => {
                self.kvm.set_label(&gettext_f(
                    "Available (API version {version})",
                    &[("version", &kvm.api_version.to_string())],
                ));
                self.max_vcpus.set_label(&kvm.max_vcpus.to_string());
            }
            Err(problem) => {
                self.kvm.set_label(&gettext_f(
                    "Not available. {problem}",
                    &[("problem", &crate::ui::window::kvm_problem_text(problem))],
                ));
                self.max_vcpus.set_label("—");
            }
        }
        self.vms.set_label(
            &ngettext(
                "{running} running of {n} defined",
                "{running} running of {n} defined",
                info.vms_defined as u32,
            )
            .replace("{running}", &info.vms_running.to_string())
            .replace("{n}", &info.vms_defined.to_string()),
        );
        self.capabilities.set_text(&info.capabilities_xml);
    }
}

fn group(page: &adw::PreferencesPage, title: &str) -> adw::PreferencesGroup {
    let group = adw::PreferencesGroup::builder().title(title).build();
    page.add(&group);
    group
}

/// A row titled `title` whose value (selectable, so it can be copied) is
/// the returned label.
fn row(group: &adw::PreferencesGroup, title: &str, value: &str) -> gtk::Label {
    let label = gtk::Label::builder()
        .label(value)
        .selectable(true)
        .xalign(1.0)
        .css_classes(["host-value"])
        .build();
    let row = adw::ActionRow::builder().title(title).build();
    row.add_suffix(&label);
    group.add(&row);
    label
}
