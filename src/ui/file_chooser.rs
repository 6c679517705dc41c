//! The system's file chooser — the file chooser portal inside a Flatpak,
//! which is how a sandboxed Vireo gets at ISOs and images outside it — for
//! every place a path is picked, so that all of them offer the same
//! filters and behave alike.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use adw::prelude::*;

use super::gettext;

/// What is being picked.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Pick {
    /// An installer or CD-ROM image: ISO images first, any file allowed.
    Iso,
    /// Any file (a disk image, a kernel).
    File,
    /// A folder.
    Folder,
}

/// Shows the chooser over `parent`, titled `title`; `chosen` gets the path
/// if the user picks one (and is not called if they cancel).
pub fn choose_path(
    parent: Option<&gtk::Window>,
    title: &str,
    pick: Pick,
    chosen: impl Fn(PathBuf) + 'static,
) {
    let action = match pick {
        Pick::Folder => gtk::FileChooserAction::SelectFolder,
        Pick::Iso | Pick::File => gtk::FileChooserAction::Open,
    };
    let chooser = gtk::FileChooserNative::new(Some(title), parent, action, None, None);
    if pick == Pick::Iso {
        let isos = gtk::FileFilter::new();
        isos.set_name(Some(&gettext("ISO images")));
        isos.add_pattern("*.iso");
        isos.add_pattern("*.ISO");
        chooser.add_filter(&isos);
        let all = gtk::FileFilter::new();
        all.set_name(Some(&gettext("All files")));
        all.add_pattern("*");
        chooser.add_filter(&all);
    }
    // GTK does not keep a native dialog alive while it is shown: without a
    // reference of our own it is finalized as this function returns, and
    // never appears. The response handler holds it until the answer.
    let keep_alive = Rc::new(RefCell::new(Some(chooser.clone())));
    chooser.connect_response(move |chooser, response| {
        keep_alive.borrow_mut().take();
        if response != gtk::ResponseType::Accept {
            return;
        }
        if let Some(path) = chooser.file().and_then(|f| f.path()) {
            chosen(path);
        }
    });
    chooser.show();
}

/// Like [`choose_path`], writing the chosen path into `entry`.
pub fn choose_into(parent: Option<&gtk::Window>, title: &str, pick: Pick, entry: &gtk::Entry) {
    let entry = entry.clone();
    choose_path(parent, title, pick, move |path| {
        entry.set_text(&path.to_string_lossy());
    });
}
