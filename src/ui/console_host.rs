//! Where the VM page shows the guest's screen: owns the console view,
//! points it at the selected VM's VNC socket (or at nothing), and turns
//! the Send Key menu's QEMU key names into key presses through it.

use std::path::PathBuf;

use gtk::prelude::*;

use super::console::ConsoleView;

pub struct ConsoleHost {
    view: ConsoleView,
    socket: std::cell::RefCell<Option<PathBuf>>,
}

impl ConsoleHost {
    pub fn new(slot: &gtk::Box) -> Self {
        let view = ConsoleView::new();
        view.set_hexpand(true);
        view.set_vexpand(true);
        slot.append(&view);
        ConsoleHost {
            view,
            socket: Default::default(),
        }
    }

    /// Shows the screen served on VNC socket `socket`, or nothing.
    pub fn show(&self, socket: Option<PathBuf>) {
        if *self.socket.borrow() == socket {
            return;
        }
        match &socket {
            Some(path) => self.view.connect_vm(path),
            None => self.view.disconnect(),
        }
        self.socket.replace(socket);
    }

    pub fn set_scale_to_fit(&self, on: bool) {
        self.view.set_scale_to_fit(on);
    }

    pub fn set_release_keys(&self, keys: crate::app::preferences::ReleaseKeys) {
        self.view.set_release_keys(keys);
    }

    /// Presses QEMU keys (`ctrl`, `alt`, `delete`) together through the
    /// console; false when a name is unknown or nothing is shown.
    pub fn send_keys(&self, qcodes: &[&str]) -> bool {
        if self.socket.borrow().is_none() {
            return false;
        }
        let Some(qnums) = qcodes
            .iter()
            .map(|code| crate::keys::qcode::qnum(code))
            .collect::<Option<Vec<u16>>>()
        else {
            return false;
        };
        self.view.send_keys(&qnums);
        true
    }
}
