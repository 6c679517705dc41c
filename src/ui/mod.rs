//! The window: relm4 components over GTK 4.8 and libadwaita 1.2. The only
//! module that imports GTK; everything it shows comes from `manager`,
//! `store`, `runtime` and `control`, so the rest of Vireo stays headless.
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
//! ```

pub mod console;
mod console_host;
mod details;
mod i18n;
mod serial;
mod vm_list;
mod vm_page;
mod window;
mod wizard;

pub use i18n::{gettext, ngettext};

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
    app.run::<window::App>(startup);
    std::process::ExitCode::SUCCESS
}
