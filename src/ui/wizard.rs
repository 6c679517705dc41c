//! The New VM wizard, virt-manager's five steps in a modal window with
//! Back and Forward: how to install, the media, memory and CPUs, storage,
//! and name/network. Finish creates the disk (with a progress bar) and
//! the definition on a worker thread through `app::create`, which
//! removes whatever it made if anything fails.

use std::path::PathBuf;

use crate::ui::file_chooser::{choose_into, Pick};
use adw::prelude::*;
use relm4::prelude::*;

use super::gettext;
use super::i18n::gettext_f;
use super::volume_chooser::{Filter, VolumeChooser};
use crate::app::create::{self, HostLimits, InstallMethod, NewVmRequest, Problem, Storage};
use crate::app::osinfo::{self, OsGuess};

const STEPS: [&str; 5] = ["method", "media", "resources", "storage", "finish"];
/// How many recently used ISOs the media step offers.
const RECENT_ISOS: usize = 5;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Iso,
    Import,
    Kernel,
}

#[derive(Debug)]
pub enum WizardOutput {
    Created { name: String, start: bool },
    Cancelled,
}

#[derive(Debug)]
pub enum WizardMsg {
    Back,
    Forward,
    Cancel,
    Changed,
    Detected(Option<String>, Option<OsGuess>),
    Progress(f64),
    Finished(Result<String, String>),
}

pub struct NewVmWizard {
    step: usize,
    taken: Vec<String>,
    host: HostLimits,
    busy: bool,
    customize: bool,
    w: Widgets,
}

/// The widgets the wizard reads and updates.
pub struct Widgets {
    window: adw::Window,
    stack: gtk::Stack,
    back: gtk::Button,
    forward: gtk::Button,
    method_iso: gtk::CheckButton,
    method_import: gtk::CheckButton,
    iso: gtk::Entry,
    iso_os: gtk::Label,
    import_disk: gtk::Entry,
    kernel: gtk::Entry,
    initrd: gtk::Entry,
    cmdline: gtk::Entry,
    media_stack: gtk::Stack,
    memory: gtk::SpinButton,
    vcpus: gtk::SpinButton,
    storage_new: gtk::CheckButton,
    storage_existing: gtk::CheckButton,
    disk_gib: gtk::SpinButton,
    existing_disk: gtk::Entry,
    name: gtk::Entry,
    network: gtk::DropDown,
    customize: gtk::CheckButton,
    problem: gtk::Label,
    progress: gtk::ProgressBar,
}

impl Component for NewVmWizard {
    type CommandOutput = ();
    type Input = WizardMsg;
    type Output = WizardOutput;
    type Init = Vec<String>;
    type Root = adw::Window;
    type Widgets = ();

    fn init_root() -> Self::Root {
        adw::Window::builder()
            .title(gettext("New Virtual Machine"))
            .modal(true)
            .default_width(560)
            .default_height(520)
            .build()
    }

    fn init(
        taken: Vec<String>,
        window: adw::Window,
        sender: ComponentSender<Self>,
    ) -> ComponentParts<Self> {
        let host = HostLimits::read_for(&super::settings::get().preferences().default_pool);
        let method = MethodStep::new();
        let media = MediaStep::new(&window);
        let resources = ResourcesStep::new(&host);
        let storage = StorageStep::new(&window, &host);
        let finish = FinishStep::new(&taken);

        let stack = gtk::Stack::builder()
            .transition_type(gtk::StackTransitionType::SlideLeftRight)
            .vexpand(true)
            .build();
        stack.add_named(&method.page, Some(STEPS[0]));
        stack.add_named(&media.stack, Some(STEPS[1]));
        stack.add_named(&resources.page, Some(STEPS[2]));
        stack.add_named(&storage.page, Some(STEPS[3]));
        stack.add_named(&finish.page, Some(STEPS[4]));
        let frame = Frame::new(&window, &stack);

        let w = Widgets {
            window,
            stack,
            back: frame.back.clone(),
            forward: frame.forward.clone(),
            method_iso: method.iso,
            method_import: method.import,
            iso: media.iso,
            iso_os: media.iso_os,
            import_disk: media.import_disk,
            kernel: media.kernel,
            initrd: media.initrd,
            cmdline: media.cmdline,
            media_stack: media.stack,
            memory: resources.memory,
            vcpus: resources.vcpus,
            storage_new: storage.new,
            storage_existing: storage.existing,
            disk_gib: storage.disk_gib,
            existing_disk: storage.existing_disk,
            name: finish.name,
            network: finish.network,
            customize: finish.customize,
            problem: frame.problem.clone(),
            progress: finish.progress,
        };
        connect(&w, &frame, &[&method.kernel, &storage.none], &sender);
        let model = NewVmWizard {
            step: 0,
            taken,
            host,
            busy: false,
            customize: false,
            w,
        };
        model.refresh();
        ComponentParts { model, widgets: () }
    }

    fn update(&mut self, msg: WizardMsg, sender: ComponentSender<Self>, _root: &Self::Root) {
        match msg {
            WizardMsg::Cancel => {
                if !self.busy {
                    self.w.window.close_request_disconnect();
                    let _ = sender.output(WizardOutput::Cancelled);
                }
                return;
            }
            WizardMsg::Back if !self.busy => {
                self.step = self.step.saturating_sub(1);
                if self.step == 3 && self.method() == Method::Import {
                    self.step = 2;
                }
            }
            WizardMsg::Forward if !self.busy => {
                if !self.problems_here().is_empty() {
                    return;
                }
                if self.step + 1 < STEPS.len() {
                    self.step += 1;
                    // An imported disk is the VM's storage.
                    if self.step == 3 && self.method() == Method::Import {
                        self.step = 4;
                    }
                } else {
                    self.finish(sender);
                }
            }
            WizardMsg::Detected(label, guess) => self.apply_guess(label, guess),
            WizardMsg::Progress(fraction) => {
                self.w.progress.set_fraction(fraction);
                self.w
                    .progress
                    .set_text(Some(&gettext("Creating the disk…")));
            }
            WizardMsg::Finished(Ok(name)) => {
                remember_iso(self.iso_path().as_deref());
                self.busy = false;
                self.w.window.close_request_disconnect();
                let _ = sender.output(WizardOutput::Created {
                    name,
                    start: !self.customize,
                });
                return;
            }
            WizardMsg::Finished(Err(error)) => {
                self.busy = false;
                self.w.progress.set_visible(false);
                self.w.problem.set_label(&error);
            }
            _ => {}
        }
        self.refresh();
    }
}

/// Detaches the wizard's close handler before the window goes away.
trait CloseQuietly {
    fn close_request_disconnect(&self);
}

impl CloseQuietly for adw::Window {
    fn close_request_disconnect(&self) {
        self.set_visible(false);
        self.destroy();
    }
}

impl NewVmWizard {
    fn method(&self) -> Method {
        if self.w.method_iso.is_active() {
            Method::Iso
        } else if self.w.method_import.is_active() {
            Method::Import
        } else {
            Method::Kernel
        }
    }

    fn iso_path(&self) -> Option<PathBuf> {
        (self.method() == Method::Iso).then(|| PathBuf::from(self.w.iso.text().as_str()))
    }

    fn request(&self) -> NewVmRequest {
        let text = |e: &gtk::Entry| PathBuf::from(e.text().as_str());
        let method = match self.method() {
            Method::Iso => InstallMethod::Iso(text(&self.w.iso)),
            Method::Import => InstallMethod::Import(text(&self.w.import_disk)),
            Method::Kernel => InstallMethod::Kernel {
                kernel: text(&self.w.kernel),
                initrd: Some(text(&self.w.initrd)).filter(|p| !p.as_os_str().is_empty()),
                cmdline: self.w.cmdline.text().to_string(),
            },
        };
        let storage = if self.method() == Method::Import {
            Storage::None
        } else if self.w.storage_new.is_active() {
            Storage::New {
                gib: self.w.disk_gib.value() as u64,
            }
        } else if self.w.storage_existing.is_active() {
            Storage::Existing(text(&self.w.existing_disk))
        } else {
            Storage::None
        };
        NewVmRequest {
            name: self.w.name.text().to_string(),
            method,
            memory_mib: self.w.memory.value() as u64,
            vcpus: self.w.vcpus.value() as u32,
            storage,
            network: (self.w.network.selected() == 0).then(|| "default".to_string()),
            pool: super::settings::get().preferences().default_pool,
            vnc_listen: super::settings::get().preferences().vnc_listen,
        }
    }

    /// The problems the current step is responsible for.
    fn problems_here(&self) -> Vec<Problem> {
        let step = self.step;
        create::validate(&self.request(), &self.host, &self.taken)
            .into_iter()
            .filter(|p| match p {
                Problem::MediaMissing(path) => {
                    let storage_disk = PathBuf::from(self.w.existing_disk.text().as_str());
                    if *path == storage_disk && self.method() != Method::Import {
                        step == 3
                    } else {
                        step == 1
                    }
                }
                Problem::MemoryTooSmall { .. }
                | Problem::MemoryOverHost { .. }
                | Problem::NoCpus
                | Problem::CpusOverHost { .. } => step == 2,
                Problem::DiskEmpty | Problem::DiskOverFree { .. } => step == 3,
                Problem::NameEmpty | Problem::NameInvalid | Problem::NameTaken => step == 4,
            })
            .collect()
    }

    /// The field a step starts in, so the keyboard alone can drive the wizard.
    fn focus_step(&self) {
        let w = &self.w;
        match STEPS[self.step] {
            "media" => {
                match self.method() {
                    Method::Iso => w.iso.grab_focus(),
                    Method::Import => w.import_disk.grab_focus(),
                    Method::Kernel => w.kernel.grab_focus(),
                };
            }
            "resources" => {
                w.memory.grab_focus();
            }
            "storage" => {
                w.disk_gib.grab_focus();
            }
            "finish" => {
                w.name.grab_focus();
            }
            _ => {}
        }
    }

    fn refresh(&self) {
        let w = &self.w;
        let step_changed = w.stack.visible_child_name().as_deref() != Some(STEPS[self.step]);
        w.stack.set_visible_child_name(STEPS[self.step]);
        if step_changed {
            self.focus_step();
        }
        w.media_stack.set_visible_child_name(match self.method() {
            Method::Iso => "iso",
            Method::Import => "import",
            Method::Kernel => "kernel",
        });
        w.disk_gib.set_sensitive(w.storage_new.is_active());
        w.existing_disk
            .set_sensitive(w.storage_existing.is_active());
        w.back.set_sensitive(self.step > 0 && !self.busy);
        let last = self.step + 1 == STEPS.len();
        w.forward.set_label(&if last {
            gettext("_Finish")
        } else {
            gettext("_Forward")
        });
        let problems = self.problems_here();
        w.forward.set_sensitive(problems.is_empty() && !self.busy);
        // Say what is wrong only once the user has typed something.
        let shown = problems
            .iter()
            .find(|p| !matches!(p, Problem::MediaMissing(path) if path.as_os_str().is_empty()));
        w.problem
            .set_label(&shown.map(problem_text).unwrap_or_default());
    }

    fn apply_guess(&mut self, label: Option<String>, guess: Option<OsGuess>) {
        let text = match (&label, &guess) {
            (_, Some(os)) => gettext_f("Detected: {os}", &[("os", &os.name)]),
            (Some(label), None) => gettext_f(
                "Volume label “{label}”: operating system not recognised",
                &[("label", label)],
            ),
            (None, None) => gettext("Not an ISO 9660 image"),
        };
        self.w.iso_os.set_label(&text);
        if let Some(os) = guess {
            if let Some(mib) = os.memory_mib {
                self.w
                    .memory
                    .set_value(mib.min(self.host.memory_mib) as f64);
            }
            if let Some(n) = os.vcpus {
                self.w.vcpus.set_value(n.min(self.host.cpus) as f64);
            }
            if let Some(gib) = os.disk_gib {
                self.w
                    .disk_gib
                    .set_value(gib.min(self.host.pool_free_bytes >> 30).max(1) as f64);
            }
            let base: String = os
                .short_id
                .chars()
                .filter(|c| c.is_ascii_alphanumeric())
                .collect();
            if !base.is_empty() {
                self.w
                    .name
                    .set_text(&create::unique_name(&base, &self.taken));
            }
        }
    }

    fn finish(&mut self, sender: ComponentSender<Self>) {
        self.busy = true;
        self.customize = self.w.customize.is_active();
        self.w.progress.set_visible(true);
        self.w.progress.set_fraction(0.0);
        self.w.problem.set_label("");
        let request = self.request();
        let host = self.host;
        std::thread::spawn(move || {
            let progress_sender = sender.clone();
            let mut last = -1.0f64;
            let result = create::create(&request, &host, &mut |fraction| {
                if fraction - last >= 0.01 || fraction >= 1.0 {
                    last = fraction;
                    progress_sender.input(WizardMsg::Progress(fraction));
                }
            });
            sender.input(WizardMsg::Finished(
                result.map_err(|e| create_error_text(&e)),
            ));
        });
    }
}

/// Step 1: how to install.
struct MethodStep {
    page: gtk::Box,
    iso: gtk::CheckButton,
    import: gtk::CheckButton,
    kernel: gtk::CheckButton,
}

impl MethodStep {
    fn new() -> Self {
        let iso = radio(&gettext("_Local install media (ISO image)"), None);
        let import = radio(&gettext("_Import an existing disk image"), Some(&iso));
        let kernel = radio(
            &gettext("_Manual install (Linux kernel and initrd)"),
            Some(&iso),
        );
        iso.set_active(true);
        let page = page(
            &gettext("How would you like to install the operating system?"),
            &[iso.upcast_ref(), import.upcast_ref(), kernel.upcast_ref()],
        );
        Self {
            page,
            iso,
            import,
            kernel,
        }
    }
}

/// Step 2: the media, one page per way to install.
struct MediaStep {
    stack: gtk::Stack,
    iso: gtk::Entry,
    iso_os: gtk::Label,
    import_disk: gtk::Entry,
    kernel: gtk::Entry,
    initrd: gtk::Entry,
    cmdline: gtk::Entry,
}

impl MediaStep {
    fn new(window: &adw::Window) -> Self {
        let iso = path_entry(&gettext("ISO image"));
        let iso_os = gtk::Label::builder()
            .xalign(0.0)
            .wrap(true)
            .css_classes(["dim-label"])
            .build();
        let recent = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(4)
            .build();
        for path in recent_isos().into_iter().take(RECENT_ISOS) {
            let button = gtk::Button::builder()
                .label(path.display().to_string())
                .css_classes(["flat"])
                .halign(gtk::Align::Start)
                .build();
            let entry = iso.clone();
            button.connect_clicked(move |_| entry.set_text(&path.to_string_lossy()));
            recent.append(&button);
        }
        let iso_box = page(
            &gettext("Choose the installation ISO"),
            &[
                volume_row(window, &iso, Filter::Iso).upcast_ref(),
                iso_os.upcast_ref(),
                recent.upcast_ref(),
            ],
        );
        let import_disk = path_entry(&gettext("Disk image"));
        let import_box = page(
            &gettext("Choose the disk image to import"),
            &[volume_row(window, &import_disk, Filter::Disk).upcast_ref()],
        );
        let kernel = path_entry(&gettext("Kernel"));
        let initrd = path_entry(&gettext("Initrd (optional)"));
        let cmdline = gtk::Entry::builder()
            .placeholder_text(gettext("Kernel arguments, for example console=ttyS0"))
            .build();
        let kernel_box = page(
            &gettext("Choose the kernel and initrd to boot"),
            &[
                browse_row(window, &kernel, &gettext("Choose a Kernel"), false).upcast_ref(),
                browse_row(window, &initrd, &gettext("Choose an Initrd"), false).upcast_ref(),
                cmdline.upcast_ref(),
            ],
        );
        let stack = gtk::Stack::new();
        stack.add_named(&iso_box, Some("iso"));
        stack.add_named(&import_box, Some("import"));
        stack.add_named(&kernel_box, Some("kernel"));
        Self {
            stack,
            iso,
            iso_os,
            import_disk,
            kernel,
            initrd,
            cmdline,
        }
    }
}

/// Step 3: memory and CPUs, bounded by the host's.
struct ResourcesStep {
    page: gtk::Box,
    memory: gtk::SpinButton,
    vcpus: gtk::SpinButton,
}

impl ResourcesStep {
    fn new(host: &HostLimits) -> Self {
        let memory = gtk::SpinButton::with_range(
            create::MIN_MEMORY_MIB as f64,
            host.memory_mib.max(create::MIN_MEMORY_MIB) as f64,
            64.0,
        );
        memory.set_value(1024f64.min(host.memory_mib as f64));
        let vcpus = gtk::SpinButton::with_range(1.0, host.cpus.max(1) as f64, 1.0);
        vcpus.set_value(1.0);
        let page = page(
            &gettext("Memory and CPUs"),
            &[
                labelled(
                    &gettext("_Memory (MiB)"),
                    &memory,
                    &gettext_f(
                        "Up to {n} MiB available on this computer",
                        &[("n", &host.memory_mib.to_string())],
                    ),
                )
                .upcast_ref(),
                labelled(
                    &gettext("_CPUs"),
                    &vcpus,
                    &super::ngettext(
                        "Up to {n} CPU available",
                        "Up to {n} CPUs available",
                        host.cpus,
                    )
                    .replace("{n}", &host.cpus.to_string()),
                )
                .upcast_ref(),
            ],
        );
        Self {
            page,
            memory,
            vcpus,
        }
    }
}

/// Step 4: storage.
struct StorageStep {
    page: gtk::Box,
    new: gtk::CheckButton,
    existing: gtk::CheckButton,
    none: gtk::CheckButton,
    disk_gib: gtk::SpinButton,
    existing_disk: gtk::Entry,
}

impl StorageStep {
    fn new(window: &adw::Window, host: &HostLimits) -> Self {
        let storage_new = radio(&gettext("Create a _disk image for the VM"), None);
        let disk_gib =
            gtk::SpinButton::with_range(1.0, ((host.pool_free_bytes >> 30).max(1)) as f64, 1.0);
        disk_gib.set_value(20f64.min((host.pool_free_bytes >> 30) as f64).max(1.0));
        let storage_existing = radio(&gettext("Use an _existing disk image"), Some(&storage_new));
        let existing_disk = path_entry(&gettext("Disk image"));
        let storage_none = radio(&gettext("_No storage"), Some(&storage_new));
        storage_new.set_active(true);
        let page = page(
            &gettext("Storage"),
            &[
                storage_new.upcast_ref(),
                labelled(
                    &gettext("Size (GiB)"),
                    &disk_gib,
                    &gettext_f(
                        "{n} GiB free in the default pool",
                        &[("n", &(host.pool_free_bytes >> 30).to_string())],
                    ),
                )
                .upcast_ref(),
                storage_existing.upcast_ref(),
                volume_row(window, &existing_disk, Filter::Disk).upcast_ref(),
                storage_none.upcast_ref(),
            ],
        );
        Self {
            page,
            new: storage_new,
            existing: storage_existing,
            none: storage_none,
            disk_gib,
            existing_disk,
        }
    }
}

/// Step 5: name, network, customize.
struct FinishStep {
    page: gtk::Box,
    name: gtk::Entry,
    network: gtk::DropDown,
    customize: gtk::CheckButton,
    progress: gtk::ProgressBar,
}

impl FinishStep {
    fn new(taken: &[String]) -> Self {
        let name = gtk::Entry::builder().activates_default(true).build();
        name.set_text(&create::unique_name("vm", taken));
        let networks = gtk::StringList::new(&[&gettext("Default (NAT)"), &gettext("None")]);
        let network = gtk::DropDown::builder()
            .model(&networks)
            .selected(0)
            .build();
        let customize =
            gtk::CheckButton::with_mnemonic(&gettext("C_ustomize configuration before starting"));
        let progress = gtk::ProgressBar::builder()
            .show_text(true)
            .visible(false)
            .build();
        let page = page(
            &gettext("Ready to create the VM"),
            &[
                labelled(&gettext("_Name"), &name, "").upcast_ref(),
                labelled(&gettext("N_etwork"), &network, "").upcast_ref(),
                customize.upcast_ref(),
                progress.upcast_ref(),
            ],
        );
        Self {
            page,
            name,
            network,
            customize,
            progress,
        }
    }
}

/// The window around the steps: Cancel, Back and Forward in the header
/// bar, the problem line under the steps.
struct Frame {
    cancel: gtk::Button,
    back: gtk::Button,
    forward: gtk::Button,
    problem: gtk::Label,
}

impl Frame {
    fn new(window: &adw::Window, stack: &gtk::Stack) -> Self {
        let problem = gtk::Label::builder()
            .xalign(0.0)
            .wrap(true)
            .css_classes(["error"])
            .build();
        let cancel = gtk::Button::with_mnemonic(&gettext("_Cancel"));
        let back = gtk::Button::with_mnemonic(&gettext("_Back"));
        let forward = gtk::Button::builder()
            .label(gettext("_Forward"))
            .use_underline(true)
            .css_classes(["suggested-action"])
            .build();
        let header = adw::HeaderBar::builder()
            .show_end_title_buttons(false)
            .show_start_title_buttons(false)
            .build();
        header.pack_start(&cancel);
        header.pack_end(&forward);
        header.pack_end(&back);
        let body = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .build();
        body.append(&header);
        body.append(stack);
        body.append(&problem);
        problem.set_margin_start(24);
        problem.set_margin_end(24);
        problem.set_margin_bottom(12);
        window.set_content(Some(&body));
        window.set_default_widget(Some(&forward));
        Self {
            cancel,
            back,
            forward,
            problem,
        }
    }
}

/// The wizard's signals: the buttons, every field that changes what the
/// wizard says, and the OS recognised on the chosen ISO. `also_toggled`
/// are the radio buttons the widgets do not keep.
fn connect(
    w: &Widgets,
    frame: &Frame,
    also_toggled: &[&gtk::CheckButton],
    sender: &ComponentSender<NewVmWizard>,
) {
    let changed = {
        let sender = sender.clone();
        move || sender.input(WizardMsg::Changed)
    };
    let s = sender.clone();
    frame
        .cancel
        .connect_clicked(move |_| s.input(WizardMsg::Cancel));
    let s = sender.clone();
    frame
        .back
        .connect_clicked(move |_| s.input(WizardMsg::Back));
    let s = sender.clone();
    frame
        .forward
        .connect_clicked(move |_| s.input(WizardMsg::Forward));
    let s = sender.clone();
    w.window.connect_close_request(move |_| {
        s.input(WizardMsg::Cancel);
        gtk::glib::Propagation::Stop
    });
    for entry in [
        &w.iso,
        &w.import_disk,
        &w.kernel,
        &w.initrd,
        &w.existing_disk,
        &w.name,
    ] {
        let c = changed.clone();
        entry.connect_changed(move |_| c());
    }
    let kept = [
        &w.method_iso,
        &w.method_import,
        &w.storage_new,
        &w.storage_existing,
    ];
    for check in kept.into_iter().chain(also_toggled.iter().copied()) {
        let c = changed.clone();
        check.connect_toggled(move |_| c());
    }
    for spin in [&w.memory, &w.vcpus, &w.disk_gib] {
        let c = changed.clone();
        spin.connect_value_changed(move |_| c());
    }
    // Recognise the OS on the ISO, off the GTK thread.
    let s = sender.clone();
    w.iso.connect_changed(move |entry| {
        let path = PathBuf::from(entry.text().as_str());
        if !path.is_file() {
            return;
        }
        let s = s.clone();
        std::thread::spawn(move || {
            let label = osinfo::iso_volume_label(&path).ok().flatten();
            let guess = label.as_deref().and_then(osinfo::detect);
            s.input(WizardMsg::Detected(label, guess));
        });
    });
}

fn problem_text(problem: &Problem) -> String {
    match problem {
        Problem::NameEmpty => gettext("Give the VM a name."),
        Problem::NameInvalid => gettext(
            "A name cannot contain “/” or start with “.”, and must be shorter than 249 bytes.",
        ),
        Problem::NameTaken => gettext("A VM with this name exists. Choose another name."),
        Problem::MediaMissing(path) => gettext_f(
            "{path} does not exist. Choose an existing file.",
            &[("path", &path.display().to_string())],
        ),
        Problem::MemoryTooSmall { minimum_mib } => gettext_f(
            "Give the VM at least {n} MiB of memory.",
            &[("n", &minimum_mib.to_string())],
        ),
        Problem::MemoryOverHost { host_mib } => gettext_f(
            "This computer has only {n} MiB of memory. Choose less.",
            &[("n", &host_mib.to_string())],
        ),
        Problem::NoCpus => gettext("Give the VM at least one CPU."),
        Problem::CpusOverHost { host } => gettext_f(
            "This computer has only {n} CPUs. Choose fewer.",
            &[("n", &host.to_string())],
        ),
        Problem::DiskEmpty => gettext("A new disk needs at least 1 GiB."),
        Problem::DiskOverFree { free_gib } => gettext_f(
            "The default pool has only {n} GiB free. Choose a smaller disk or free some space.",
            &[("n", &free_gib.to_string())],
        ),
    }
}

fn create_error_text(error: &create::CreateError) -> String {
    match error {
        create::CreateError::Invalid(problem) => problem_text(problem),
        create::CreateError::Disk(e) => gettext_f("The disk could not be created: {error}. Check the default pool's folder and free space.", &[("error", e)]),
        create::CreateError::Define(e) => gettext_f("The VM could not be defined: {error}", &[("error", e)]),
    }
}

fn radio(label: &str, group: Option<&gtk::CheckButton>) -> gtk::CheckButton {
    let button = gtk::CheckButton::with_mnemonic(label);
    if let Some(group) = group {
        button.set_group(Some(group));
    }
    button
}

fn path_entry(placeholder: &str) -> gtk::Entry {
    gtk::Entry::builder()
        .placeholder_text(placeholder)
        .hexpand(true)
        .build()
}

/// A path entry with a Browse button that opens the file chooser portal.
fn browse_row(window: &adw::Window, entry: &gtk::Entry, title: &str, folder: bool) -> gtk::Box {
    let button = gtk::Button::with_mnemonic(&gettext("_Browse…"));
    let row = gtk::Box::builder().spacing(6).build();
    row.append(entry);
    row.append(&button);
    let window = window.clone();
    let entry = entry.clone();
    let title = title.to_string();
    button.connect_clicked(move |_| {
        let pick = if folder { Pick::Folder } else { Pick::File };
        choose_into(Some(window.upcast_ref()), &title, pick, &entry);
    });
    row
}

/// A path entry with a Browse button that opens the volume chooser (which
/// offers the file chooser portal too, as Browse Local).
fn volume_row(window: &adw::Window, entry: &gtk::Entry, filter: Filter) -> gtk::Box {
    let button = gtk::Button::with_mnemonic(&gettext("_Browse…"));
    let row = gtk::Box::builder().spacing(6).build();
    row.append(entry);
    row.append(&button);
    let window = window.clone();
    let entry = entry.clone();
    button.connect_clicked(move |_| {
        let entry = entry.clone();
        VolumeChooser::pick(&window, filter, move |path| {
            if let Some(path) = path {
                entry.set_text(&path.to_string_lossy());
            }
        });
    });
    row
}

fn labelled(label: &str, widget: &impl IsA<gtk::Widget>, hint: &str) -> gtk::Box {
    let title = gtk::Label::builder()
        .label(label)
        .use_underline(true)
        .xalign(0.0)
        .build();
    title.set_mnemonic_widget(Some(widget));
    let row = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(4)
        .build();
    row.append(&title);
    row.append(widget);
    if !hint.is_empty() {
        row.append(
            &gtk::Label::builder()
                .label(hint)
                .xalign(0.0)
                .css_classes(["dim-label", "caption"])
                .build(),
        );
    }
    row
}

fn page(title: &str, children: &[&gtk::Widget]) -> gtk::Box {
    let page = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(12)
        .margin_top(24)
        .margin_bottom(24)
        .margin_start(24)
        .margin_end(24)
        .build();
    page.append(
        &gtk::Label::builder()
            .label(title)
            .xalign(0.0)
            .wrap(true)
            .css_classes(["title-3"])
            .build(),
    );
    for child in children {
        page.append(*child);
    }
    page
}

/// The ISOs used before, newest first, from `recent-isos` in the config dir.
fn recent_isos() -> Vec<PathBuf> {
    std::fs::read_to_string(crate::paths::config_dir().join("recent-isos"))
        .unwrap_or_default()
        .lines()
        .map(PathBuf::from)
        .filter(|p| p.is_file())
        .collect()
}

fn remember_iso(iso: Option<&std::path::Path>) {
    let Some(iso) = iso else { return };
    let mut list = recent_isos();
    list.retain(|p| p != iso);
    list.insert(0, iso.to_path_buf());
    list.truncate(RECENT_ISOS);
    let text: String = list.iter().map(|p| format!("{}\n", p.display())).collect();
    let _ = crate::definitions::atomic_write(
        &crate::paths::config_dir().join("recent-isos"),
        text.as_bytes(),
    );
}
