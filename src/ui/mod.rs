//! The window: relm4 components over GTK 4.8 and libadwaita 1.2. The only
//! module that imports GTK; everything it shows comes from `app`,
//! `store`, `vm_process` and `control`, so the rest of Vireo stays headless.
//!
//! ```text
//! AdwApplicationWindow
//! └─ AdwToastOverlay
//!    └─ AdwLeaflet
//!       ├─ sidebar: AdwHeaderBar (New VM, primary menu) + GtkListBox of VMs (vm_list)
//!       └─ content: AdwHeaderBar (VM actions, view switcher) + GtkStack
//!          ├─ "empty": AdwStatusPage (New VM, Try the Demo VM)
//!          ├─ "no-kvm": AdwStatusPage (what to fix)
//!          └─ "vm": AdwViewStack (vm_page): Console / Details / XML / Serial
//!             (details: the hardware view and the XML editor)
//! NewVmWizard (wizard): a modal window with the five steps
//! ConnectionWindow (connection): the host's overview and its storage
//! VolumeChooser (volume_chooser): a pool's volume or a local file, for a path
//! RemoteHosts (remote): libvirt connections' groups in the sidebar, their
//!   VMs' page in the content area, Add Connection…, Copy to…
//! ```

mod confirm;
mod connection;
pub mod console;
mod console_host;
mod details;
mod file_chooser;
mod i18n;
mod pool_view;
mod preferences;
mod remote;
mod serial;
pub mod settings;
mod snapshots;
mod vm_list;
mod vm_page;
pub mod volume_chooser;
mod window;
mod wizard;

pub use i18n::{gettext, init as init_translations, ngettext};

/// The application id (desktop file, GSettings, D-Bus name).
pub const APP_ID: &str = "dev.vireo.Vireo";

/// How the window starts.
#[derive(Debug, Clone, Default)]
pub struct Startup {
    /// Define and start the demo VM, and show it.
    pub demo: bool,
}

/// Opens the window; returns when it is closed.
pub fn run(startup: Startup) -> std::process::ExitCode {
    i18n::init();
    let app = relm4::RelmApp::new(APP_ID).with_args(Vec::new());
    register_resources();
    app.run::<window::App>(startup);
    std::process::ExitCode::SUCCESS
}

/// The resource bundle build.rs compiled (empty when it could not).
const RESOURCES: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/vireo.gresource"));

/// Where the bundle's files are (GtkApplication's resource base path).
pub const RESOURCE_BASE: &str = "/dev/vireo/Vireo";

/// Registers the embedded bundle (style.css, shortcuts.ui, icons) and
/// loads its style sheet. Without it the window runs unstyled and
/// without its Keyboard Shortcuts window.
fn register_resources() {
    use gtk::gio;
    let resource = gio::Resource::from_data(&gtk::glib::Bytes::from_static(RESOURCES));
    match resource {
        Ok(resource) => gio::resources_register(&resource),
        Err(e) => {
            tracing::warn!("the window's resources do not load: {e}");
            return;
        }
    }
    let Some(display) = gtk::gdk::Display::default() else {
        return;
    };
    let css = gtk::CssProvider::new();
    css.load_from_resource(&format!("{RESOURCE_BASE}/style.css"));
    gtk::style_context_add_provider_for_display(
        &display,
        &css,
        gtk::STYLE_PROVIDER_PRIORITY_APPLICATION,
    );
    // The app icon, for the About window before installation.
    gtk::IconTheme::for_display(&display).add_resource_path(&format!("{RESOURCE_BASE}/icons"));
}
