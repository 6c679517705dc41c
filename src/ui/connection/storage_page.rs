//! Connection Details → Storage, as virt-manager lays it out: the pools on
//! the left, each with its state and a bar of its file system's use; the
//! selected pool's volumes on the right.
//!
//! ```text
//! AdwToastOverlay
//! └─ GtkBox (horizontal)
//!    ├─ pools: GtkListBox (pool_view::pool_row) + Add Pool, Start, Stop, Delete
//!    └─ volumes: title, Autostart switch, column titles, GtkListBox
//!       (pool_view::VolumeColumns) + New Volume, Resize, Delete
//! ```
//!
//! Every read and change runs on a worker thread (`pool_view::background`);
//! the page reloads after each change and whenever it is shown again.
//! Only directory pools exist (see `storage::pools`).

mod dialogs;

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use adw::prelude::*;

use crate::app::storage::{load, Snapshot};
use crate::definitions::PoolStore;
use crate::ui::gettext;
use crate::ui::i18n::gettext_f;
use crate::ui::pool_view::{
    background, clear, pool_error_text, select_named, selected_name, show_pools, volume_count_text,
    VolumeColumns,
};

pub struct StoragePage {
    inner: Rc<Inner>,
}

struct Inner {
    root: adw::ToastOverlay,
    pools: gtk::ListBox,
    volumes: gtk::ListBox,
    columns: VolumeColumns,
    title: gtk::Label,
    subtitle: gtk::Label,
    autostart: gtk::Switch,
    start: gtk::Button,
    stop: gtk::Button,
    delete_pool: gtk::Button,
    new_volume: gtk::Button,
    resize: gtk::Button,
    delete_volume: gtk::Button,
    volume_stack: gtk::Stack,
    snapshot: RefCell<Snapshot>,
    /// Rows are being rebuilt: selection and switch signals are ours.
    rendering: Cell<bool>,
    /// A reload is running; another one is queued instead of run twice.
    loading: Cell<bool>,
    reload_again: Cell<bool>,
}

fn button(label: &str, icon: &str) -> gtk::Button {
    let content = adw::ButtonContent::builder()
        .label(label)
        .icon_name(icon)
        .use_underline(true)
        .build();
    gtk::Button::builder()
        .child(&content)
        .css_classes(["flat"])
        .build()
}

fn toolbar(buttons: &[&gtk::Button]) -> gtk::Box {
    let bar = gtk::Box::builder()
        .spacing(4)
        .margin_top(6)
        .margin_bottom(6)
        .margin_start(6)
        .margin_end(6)
        .build();
    for b in buttons {
        bar.append(*b);
    }
    bar
}

impl StoragePage {
    pub fn new() -> Self {
        // Left: the pools.
        let pools = gtk::ListBox::builder()
            .selection_mode(gtk::SelectionMode::Browse)
            .css_classes(["navigation-sidebar"])
            .build();
        let add_pool = button(&gettext("_Add Pool"), "list-add-symbolic");
        let start = button(&gettext("_Start"), "media-playback-start-symbolic");
        let stop = button(&gettext("S_top"), "media-playback-stop-symbolic");
        let delete_pool = gtk::Button::builder()
            .icon_name("user-trash-symbolic")
            .tooltip_text(gettext("Delete Pool"))
            .css_classes(["flat"])
            .build();
        let left = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .width_request(280)
            .build();
        left.append(
            &gtk::ScrolledWindow::builder()
                .child(&pools)
                .vexpand(true)
                .hscrollbar_policy(gtk::PolicyType::Never)
                .build(),
        );
        left.append(&gtk::Separator::new(gtk::Orientation::Horizontal));
        left.append(&toolbar(&[&add_pool, &start, &stop, &delete_pool]));

        // Right: the selected pool's volumes.
        let title = gtk::Label::builder()
            .xalign(0.0)
            .ellipsize(gtk::pango::EllipsizeMode::End)
            .css_classes(["title-3"])
            .build();
        let subtitle = gtk::Label::builder()
            .xalign(0.0)
            .ellipsize(gtk::pango::EllipsizeMode::Middle)
            .selectable(true)
            .css_classes(["dim-label"])
            .build();
        let autostart = gtk::Switch::builder().valign(gtk::Align::Center).build();
        let autostart_label = gtk::Label::builder()
            .label(gettext("A_utostart"))
            .use_underline(true)
            .mnemonic_widget(&autostart)
            .build();
        let heading = gtk::Box::builder()
            .spacing(12)
            .margin_top(12)
            .margin_start(12)
            .margin_end(12)
            .build();
        let titles = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .hexpand(true)
            .build();
        titles.append(&title);
        titles.append(&subtitle);
        heading.append(&titles);
        heading.append(&autostart_label);
        heading.append(&autostart);

        let mut columns = VolumeColumns::new();
        let volumes = gtk::ListBox::builder()
            .selection_mode(gtk::SelectionMode::Single)
            .css_classes(["rich-list"])
            .build();
        let list = columns.list_with_header(&volumes);
        let stopped = adw::StatusPage::builder()
            .icon_name("media-playback-stop-symbolic")
            .title(gettext("Pool Stopped"))
            .description(gettext("Start the pool to see and create its volumes."))
            .build();
        let volume_stack = gtk::Stack::builder().vexpand(true).build();
        volume_stack.add_named(&list, Some("volumes"));
        volume_stack.add_named(&stopped, Some("stopped"));

        let new_volume = button(&gettext("_New Volume"), "document-new-symbolic");
        let resize = button(&gettext("_Resize…"), "zoom-fit-best-symbolic");
        let delete_volume = button(&gettext("_Delete Volume"), "user-trash-symbolic");
        let right = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(6)
            .hexpand(true)
            .build();
        right.append(&heading);
        right.append(&volume_stack);
        right.append(&gtk::Separator::new(gtk::Orientation::Horizontal));
        right.append(&toolbar(&[&new_volume, &resize, &delete_volume]));

        let body = gtk::Box::new(gtk::Orientation::Horizontal, 0);
        body.append(&left);
        body.append(&gtk::Separator::new(gtk::Orientation::Vertical));
        body.append(&right);
        let root = adw::ToastOverlay::new();
        root.set_child(Some(&body));

        let inner = Rc::new(Inner {
            root,
            pools,
            volumes,
            columns,
            title,
            subtitle,
            autostart,
            start,
            stop,
            delete_pool,
            new_volume,
            resize,
            delete_volume,
            volume_stack,
            snapshot: RefCell::default(),
            rendering: Cell::new(false),
            loading: Cell::new(false),
            reload_again: Cell::new(false),
        });
        inner.render();
        Inner::connect(&inner, &add_pool);
        StoragePage { inner }
    }

    pub fn widget(&self) -> &adw::ToastOverlay {
        &self.inner.root
    }
}

impl Inner {
    fn connect(this: &Rc<Self>, add_pool: &gtk::Button) {
        let weak = Rc::downgrade(this);
        let with = move |f: fn(&Rc<Inner>)| {
            let weak = weak.clone();
            move || {
                if let Some(inner) = weak.upgrade() {
                    f(&inner)
                }
            }
        };
        // Shown again (the window presented, the tab switched): reload.
        // This handler holds the page: the window keeps only its widget,
        // and GTK drops the handler (and the page) when the widget goes.
        let page = this.clone();
        this.root.connect_map(move |_| page.reload(None));
        let on_pool = with(|i| {
            if !i.rendering.get() {
                i.reload(selected_name(&i.pools));
            }
        });
        this.pools.connect_row_selected(move |_, _| on_pool());
        let on_volume = with(|i| i.update_buttons());
        this.volumes.connect_row_selected(move |_, _| on_volume());
        let on_autostart = with(|i| {
            if !i.rendering.get() {
                i.set_autostart(i.autostart.is_active());
            }
        });
        this.autostart
            .connect_active_notify(move |_| on_autostart());
        let f = with(|i| i.add_pool());
        add_pool.connect_clicked(move |_| f());
        let f = with(|i| i.start_or_stop(true));
        this.start.connect_clicked(move |_| f());
        let f = with(|i| i.start_or_stop(false));
        this.stop.connect_clicked(move |_| f());
        let f = with(|i| i.delete_pool());
        this.delete_pool.connect_clicked(move |_| f());
        let f = with(|i| i.new_volume());
        this.new_volume.connect_clicked(move |_| f());
        let f = with(|i| i.resize_volume());
        this.resize.connect_clicked(move |_| f());
        let f = with(|i| i.delete_volume());
        this.delete_volume.connect_clicked(move |_| f());
    }

    fn window(&self) -> Option<gtk::Window> {
        self.root.root().and_downcast::<gtk::Window>()
    }

    fn toast(&self, text: &str) {
        let toast = adw::Toast::new(text);
        toast.set_timeout(6);
        self.root.add_toast(toast);
    }

    fn selected_pool_name(&self) -> Option<String> {
        self.snapshot.borrow().selected.clone()
    }

    /// Reads the pools again, selecting `select` (or keeping the selection).
    fn reload(self: &Rc<Self>, select: Option<String>) {
        let select = select.or_else(|| self.selected_pool_name());
        if self.loading.replace(true) {
            self.reload_again.set(true);
            return;
        }
        let weak = Rc::downgrade(self);
        background(
            move || {
                let store = PoolStore::open()?;
                load(&store, select.as_deref())
            },
            move |result| {
                let Some(inner) = weak.upgrade() else { return };
                inner.loading.set(false);
                match result {
                    Ok(snapshot) => {
                        *inner.snapshot.borrow_mut() = snapshot;
                        inner.render();
                    }
                    Err(error) => inner.toast(&pool_error_text(&error)),
                }
                if inner.reload_again.replace(false) {
                    inner.reload(None);
                }
            },
        );
    }

    /// Draws the snapshot.
    fn render(&self) {
        self.rendering.set(true);
        let chosen_volume = selected_name(&self.volumes);
        let snapshot = self.snapshot.borrow();
        show_pools(&self.pools, &snapshot.pools, snapshot.selected.as_deref());
        clear(&self.volumes);
        for volume in &snapshot.volumes {
            self.volumes.append(&self.columns.row(volume));
        }
        if let Some(name) = chosen_volume {
            select_named(&self.volumes, &name);
        }
        match snapshot.selected_pool() {
            Some(summary) => {
                let pool = &summary.pool;
                self.title.set_label(pool.name());
                let path = pool.def.target.to_string_lossy();
                self.subtitle.set_label(&if pool.active {
                    format!("{path} — {}", volume_count_text(snapshot.volumes.len()))
                } else {
                    path.into_owned()
                });
                self.autostart.set_active(pool.autostart);
                self.volume_stack.set_visible_child_name(if pool.active {
                    "volumes"
                } else {
                    "stopped"
                });
            }
            None => {
                self.title.set_label(&gettext("No Pools"));
                self.subtitle
                    .set_label(&gettext("Add a pool to keep volumes in a folder."));
                self.autostart.set_active(false);
                self.volume_stack.set_visible_child_name("volumes");
            }
        }
        drop(snapshot);
        self.update_buttons();
        self.rendering.set(false);
    }

    fn update_buttons(&self) {
        let snapshot = self.snapshot.borrow();
        let pool = snapshot.selected_pool();
        let active = pool.is_some_and(|p| p.pool.active);
        self.start.set_sensitive(pool.is_some() && !active);
        self.stop.set_sensitive(active);
        self.delete_pool.set_sensitive(pool.is_some());
        self.autostart.set_sensitive(pool.is_some());
        self.new_volume.set_sensitive(active);
        let volume = active && self.volumes.selected_row().is_some();
        self.resize.set_sensitive(volume);
        self.delete_volume.set_sensitive(volume);
    }

    /// Runs a change to pool `name` off the GTK thread, then reloads and
    /// toasts `success` or the error.
    fn change(
        self: &Rc<Self>,
        work: impl FnOnce(&PoolStore) -> Result<(), crate::storage::pools::PoolError> + Send + 'static,
        success: String,
    ) {
        let weak = Rc::downgrade(self);
        background(
            move || {
                let store = PoolStore::open()?;
                work(&store)
            },
            move |result| {
                let Some(inner) = weak.upgrade() else { return };
                match result {
                    Ok(()) => inner.toast(&success),
                    Err(error) => inner.toast(&pool_error_text(&error)),
                }
                inner.reload(None);
            },
        );
    }

    fn add_pool(self: &Rc<Self>) {
        let weak = Rc::downgrade(self);
        let snapshot = self.snapshot.borrow().clone();
        dialogs::add_pool(self.window().as_ref(), &snapshot, move |name| {
            if let Some(inner) = weak.upgrade() {
                inner.toast(&gettext_f(
                    "The pool “{name}” was added",
                    &[("name", &name)],
                ));
                inner.reload(Some(name));
            }
        });
    }

    fn start_or_stop(self: &Rc<Self>, start: bool) {
        let Some(name) = self.selected_pool_name() else {
            return;
        };
        let success = if start {
            gettext_f("The pool “{name}” was started", &[("name", &name)])
        } else {
            gettext_f("The pool “{name}” was stopped", &[("name", &name)])
        };
        self.change(
            move |store| {
                if start {
                    store.start(&name)
                } else {
                    store.destroy(&name)
                }
            },
            success,
        );
    }

    fn set_autostart(self: &Rc<Self>, on: bool) {
        let Some(name) = self.selected_pool_name() else {
            return;
        };
        let success = if on {
            gettext_f(
                "The pool “{name}” will start automatically",
                &[("name", &name)],
            )
        } else {
            gettext_f(
                "The pool “{name}” will no longer start automatically",
                &[("name", &name)],
            )
        };
        self.change(move |store| store.set_autostart(&name, on), success);
    }

    fn delete_pool(self: &Rc<Self>) {
        let snapshot = self.snapshot.borrow();
        let Some(summary) = snapshot.selected_pool() else {
            return;
        };
        let name = summary.name().to_string();
        if summary.pool.active {
            // The backend refuses this too; say so before asking.
            self.toast(&gettext_f(
                "The pool “{name}” is running. Stop it before deleting it.",
                &[("name", &name)],
            ));
            return;
        }
        let folder = summary.pool.def.target.to_string_lossy().into_owned();
        drop(snapshot);
        let heading = gettext_f("Delete the pool “{name}”?", &[("name", &name)]);
        let body = gettext_f(
            "Vireo forgets the pool. Its folder {path} and the files in it are kept.",
            &[("path", &folder)],
        );
        self.confirm_delete(&heading, &body, move |inner| {
            let name = name.clone();
            let success = gettext_f("The pool “{name}” was deleted", &[("name", &name)]);
            inner.change(move |store| store.undefine(&name), success);
        });
    }

    fn new_volume(self: &Rc<Self>) {
        let snapshot = self.snapshot.borrow();
        let Some(summary) = snapshot.selected_pool() else {
            return;
        };
        let pool = summary.name().to_string();
        let available = summary.space.map(|s| s.available);
        let volumes = snapshot.volumes.clone();
        drop(snapshot);
        let weak = Rc::downgrade(self);
        dialogs::new_volume(
            self.window().as_ref(),
            &pool,
            &volumes,
            available,
            move |name| {
                if let Some(inner) = weak.upgrade() {
                    inner.toast(&gettext_f(
                        "The volume “{name}” was created",
                        &[("name", &name)],
                    ));
                    inner.reload(None);
                    // Select the new volume once the list has it.
                    inner.select_volume_later(name);
                }
            },
        );
    }

    /// Selects volume `name` after the reload that shows it.
    fn select_volume_later(self: &Rc<Self>, name: String) {
        let weak = Rc::downgrade(self);
        gtk::glib::timeout_add_local_once(std::time::Duration::from_millis(400), move || {
            if let Some(inner) = weak.upgrade() {
                select_named(&inner.volumes, &name);
            }
        });
    }

    fn selected_volume(&self) -> Option<(String, crate::storage::pools::VolumeDef)> {
        let name = selected_name(&self.volumes)?;
        let snapshot = self.snapshot.borrow();
        let pool = snapshot.selected.clone()?;
        let volume = snapshot.volumes.iter().find(|v| v.name == name)?.clone();
        Some((pool, volume))
    }

    fn resize_volume(self: &Rc<Self>) {
        let Some((pool, volume)) = self.selected_volume() else {
            return;
        };
        let weak = Rc::downgrade(self);
        dialogs::resize_volume(self.window().as_ref(), &pool, &volume, move |name| {
            if let Some(inner) = weak.upgrade() {
                inner.toast(&gettext_f(
                    "The volume “{name}” was resized",
                    &[("name", &name)],
                ));
                inner.reload(None);
            }
        });
    }

    /// Asks `heading` / `body` with Cancel and a destructive Delete, and
    /// runs `delete` on this page if the user confirms (and it still exists).
    fn confirm_delete(
        self: &Rc<Self>,
        heading: &str,
        body: &str,
        delete: impl Fn(&Rc<Self>) + 'static,
    ) {
        let dialog = crate::ui::confirm::destructive(
            self.window().as_ref(),
            heading,
            body,
            "delete",
            &gettext("_Delete"),
        );
        let weak = Rc::downgrade(self);
        dialog.connect_response(None, move |_, response| {
            if response == "delete" {
                if let Some(inner) = weak.upgrade() {
                    delete(&inner);
                }
            }
        });
        dialog.present();
    }

    fn delete_volume(self: &Rc<Self>) {
        let Some((pool, volume)) = self.selected_volume() else {
            return;
        };
        let name = volume.name;
        let heading = gettext_f("Delete the volume “{name}”?", &[("name", &name)]);
        let body = gettext("Its file and all the data in it are removed. This cannot be undone.");
        self.confirm_delete(&heading, &body, move |inner| {
            let pool = pool.clone();
            let name = name.clone();
            let success = gettext_f("The volume “{name}” was deleted", &[("name", &name)]);
            inner.change(move |store| store.get(&pool)?.delete_volume(&name), success);
        });
    }
}
