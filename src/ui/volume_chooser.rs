//! "Choose Storage Volume", virt-manager's "Locate or create storage
//! volume": the pools on the left, the selected pool's volumes on the
//! right, "Browse Local…" for a file outside every pool, and "Choose
//! Volume". The wizard's media and disk steps open it, and so may any page
//! that needs a disk or ISO path:
//!
//! ```ignore
//! VolumeChooser::pick(&window, Filter::Iso, |path| { /* Some(path) or None */ });
//! ```
//!
//! Pools are read on a worker thread; stopped pools show no volumes (start
//! them on the Storage page). Creating a volume from here is not offered.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;

use crate::ui::file_chooser::{choose_path, Pick};
use adw::prelude::*;

use super::gettext;
use super::pool_view::{
    background, clear, modal_window, pool_error_text, selected_name, show_pools, VolumeColumns,
};
use crate::app::storage::{load, Snapshot};
use crate::definitions::PoolStore;
use crate::storage::pools::VolumeFormat;

/// What the caller is looking for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filter {
    /// An installation or CD-ROM image: Browse Local shows `*.iso` first.
    Iso,
    /// A disk image: any file.
    Disk,
}

type Callback = Box<dyn FnOnce(Option<PathBuf>)>;

pub struct VolumeChooser {
    window: adw::Window,
    pools: gtk::ListBox,
    volumes: gtk::ListBox,
    columns: VolumeColumns,
    stack: gtk::Stack,
    choose: gtk::Button,
    error: gtk::Label,
    filter: Filter,
    snapshot: RefCell<Snapshot>,
    rendering: std::cell::Cell<bool>,
    /// The volume list has had the keyboard focus once.
    focused: std::cell::Cell<bool>,
    callback: RefCell<Option<Callback>>,
}

impl VolumeChooser {
    /// Opens the chooser over `parent`; `callback` gets the chosen path, or
    /// `None` when the chooser is cancelled or closed. It is called once.
    pub fn pick(
        parent: &impl IsA<gtk::Window>,
        filter: Filter,
        callback: impl FnOnce(Option<PathBuf>) + 'static,
    ) {
        let this = Self::new(parent.upcast_ref(), filter, Box::new(callback));
        this.window.present();
        this.reload(None);
    }

    fn new(parent: &gtk::Window, filter: Filter, callback: Callback) -> Rc<Self> {
        let title = match filter {
            Filter::Iso => gettext("Choose an ISO Image"),
            Filter::Disk => gettext("Choose a Disk Image"),
        };
        let cancel = gtk::Button::with_label(&gettext("Cancel"));
        let browse = gtk::Button::with_mnemonic(&gettext("_Browse Local…"));
        let choose = gtk::Button::builder()
            .label(gettext("C_hoose Volume"))
            .use_underline(true)
            .sensitive(false)
            .css_classes(["suggested-action"])
            .build();
        let header = adw::HeaderBar::builder()
            .title_widget(&adw::WindowTitle::new(&title, ""))
            .show_end_title_buttons(false)
            .show_start_title_buttons(false)
            .build();
        header.pack_start(&cancel);
        header.pack_end(&choose);
        header.pack_end(&browse);

        let pools = gtk::ListBox::builder()
            .selection_mode(gtk::SelectionMode::Browse)
            .css_classes(["navigation-sidebar"])
            .build();
        let mut columns = VolumeColumns::new();
        let volumes = gtk::ListBox::builder()
            .selection_mode(gtk::SelectionMode::Single)
            .activate_on_single_click(false)
            .css_classes(["rich-list"])
            .build();
        let list = columns.list_with_header(&volumes);
        let stopped = adw::StatusPage::builder()
            .icon_name("media-playback-stop-symbolic")
            .title(gettext("Pool Stopped"))
            .description(gettext(
                "Start it in Storage, from the main menu, to choose its volumes.",
            ))
            .build();
        let stack = gtk::Stack::builder().hexpand(true).vexpand(true).build();
        stack.add_named(&list, Some("volumes"));
        stack.add_named(&stopped, Some("stopped"));
        let error = gtk::Label::builder()
            .xalign(0.0)
            .wrap(true)
            .visible(false)
            .margin_start(12)
            .margin_end(12)
            .margin_bottom(8)
            .css_classes(["error"])
            .build();
        let right = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .hexpand(true)
            .build();
        right.append(&stack);
        right.append(&error);
        let body = gtk::Box::new(gtk::Orientation::Horizontal, 0);
        body.append(
            &gtk::ScrolledWindow::builder()
                .child(&pools)
                .width_request(240)
                .hscrollbar_policy(gtk::PolicyType::Never)
                .build(),
        );
        body.append(&gtk::Separator::new(gtk::Orientation::Vertical));
        body.append(&right);
        let window = modal_window(Some(parent), &title, (&header, &body), &choose, (820, 480));

        let this = Rc::new(VolumeChooser {
            window,
            pools,
            volumes,
            columns,
            stack,
            choose: choose.clone(),
            error,
            filter,
            snapshot: RefCell::default(),
            rendering: std::cell::Cell::new(false),
            focused: std::cell::Cell::new(false),
            callback: RefCell::new(Some(callback)),
        });

        // The window holds the chooser until it closes; then the callback
        // hears `None` unless a path was given already.
        let held = RefCell::new(Some(this.clone()));
        this.window.connect_close_request(move |_| {
            if let Some(this) = held.take() {
                this.finish(None);
            }
            gtk::glib::Propagation::Proceed
        });
        let weak = Rc::downgrade(&this);
        cancel.connect_clicked(move |_| {
            if let Some(this) = weak.upgrade() {
                this.window.close();
            }
        });
        let weak = Rc::downgrade(&this);
        this.pools.connect_row_selected(move |list, _| {
            if let Some(this) = weak.upgrade() {
                if !this.rendering.get() {
                    this.reload(selected_name(list));
                }
            }
        });
        let weak = Rc::downgrade(&this);
        this.volumes.connect_row_selected(move |_, row| {
            if let Some(this) = weak.upgrade() {
                this.choose.set_sensitive(row.is_some());
            }
        });
        let weak = Rc::downgrade(&this);
        this.volumes.connect_row_activated(move |list, row| {
            if let Some(this) = weak.upgrade() {
                list.select_row(Some(row));
                this.choose_selected();
            }
        });
        let weak = Rc::downgrade(&this);
        choose.connect_clicked(move |_| {
            if let Some(this) = weak.upgrade() {
                this.choose_selected();
            }
        });
        let weak = Rc::downgrade(&this);
        browse.connect_clicked(move |_| {
            if let Some(this) = weak.upgrade() {
                this.browse_local();
            }
        });
        this
    }

    /// Hands `path` to the caller (once) and closes.
    fn finish(&self, path: Option<PathBuf>) {
        if let Some(callback) = self.callback.take() {
            callback(path);
        }
    }

    fn choose_selected(self: &Rc<Self>) {
        let Some(name) = selected_name(&self.volumes) else {
            return;
        };
        let path = self
            .snapshot
            .borrow()
            .volumes
            .iter()
            .find(|v| v.name == name)
            .map(|v| v.target.path.clone());
        if let Some(path) = path {
            self.finish(Some(path));
            self.window.close();
        }
    }

    fn browse_local(self: &Rc<Self>) {
        let (title, pick) = match self.filter {
            Filter::Iso => (gettext("Choose an ISO Image"), Pick::Iso),
            Filter::Disk => (gettext("Choose a Disk Image"), Pick::File),
        };
        let weak = Rc::downgrade(self);
        choose_path(Some(self.window.upcast_ref()), &title, pick, move |path| {
            if let Some(this) = weak.upgrade() {
                this.finish(Some(path));
                this.window.close();
            }
        });
    }

    fn reload(self: &Rc<Self>, select: Option<String>) {
        let weak = Rc::downgrade(self);
        background(
            move || {
                let store = PoolStore::open()?;
                load(&store, select.as_deref())
            },
            move |result| {
                let Some(this) = weak.upgrade() else { return };
                match result {
                    Ok(snapshot) => {
                        this.error.set_visible(false);
                        *this.snapshot.borrow_mut() = snapshot;
                        this.render();
                    }
                    Err(error) => {
                        this.error.set_label(&pool_error_text(&error));
                        this.error.set_visible(true);
                    }
                }
            },
        );
    }

    fn render(&self) {
        self.rendering.set(true);
        let snapshot = self.snapshot.borrow();
        show_pools(&self.pools, &snapshot.pools, snapshot.selected.as_deref());
        clear(&self.volumes);
        // ISOs first when an ISO is wanted; every volume stays choosable.
        let mut volumes: Vec<_> = snapshot.volumes.iter().collect();
        if self.filter == Filter::Iso {
            volumes.sort_by_key(|v| v.target.format != Some(VolumeFormat::Iso));
        }
        for volume in volumes {
            self.volumes.append(&self.columns.row(volume));
        }
        let active = snapshot.selected_pool().is_some_and(|p| p.pool.active);
        self.stack
            .set_visible_child_name(if active { "volumes" } else { "stopped" });
        self.choose.set_sensitive(false);
        drop(snapshot);
        // The first time, the keyboard starts in the volume list: arrows
        // and Enter pick a volume.
        if !self.focused.replace(true) {
            self.volumes.child_focus(gtk::DirectionType::TabForward);
        }
        self.rendering.set(false);
    }
}
