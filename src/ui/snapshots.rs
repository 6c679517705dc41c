//! The VM's Snapshots tab, virt-manager's snapshot view GNOME-style.
//!
//! ```text
//! Snapshots (GtkBox)
//! ├─ GtkRevealer: why the buttons are off (a running VM) / the error
//! ├─ AdwPreferencesPage: one row per snapshot, newest first: name, date,
//! │  state and description; Revert and Delete, each confirmed
//! ├─ GtkProgressBar while a deletion merges overlays back
//! └─ GtkActionBar: Create Snapshot…
//! ```
//!
//! The work is `app::snapshots`' (the CLI's verbs), run on a worker thread
//! so the window never waits for a disk. A running VM's snapshots are not
//! supported yet, so its buttons are off and the page says why.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use adw::prelude::*;

use super::confirm;
use super::details::{banner_label, error_label, in_background};
use super::gettext;
use super::i18n::gettext_f;
use crate::app::lifecycle::VmState;
use crate::app::snapshots;
use crate::definitions::{Definition, SnapshotStore};
use crate::domain::snapshot::SnapshotDef;

struct Inner {
    root: gtk::Box,
    page: adw::PreferencesPage,
    group: RefCell<Option<adw::PreferencesGroup>>,
    notice_revealer: gtk::Revealer,
    error: gtk::Label,
    error_revealer: gtk::Revealer,
    progress: gtk::ProgressBar,
    create: gtk::Button,
    /// The VM shown, and whether it runs.
    shown: RefCell<Option<(Definition, bool)>>,
    /// Work under way: the buttons wait for it.
    busy: Cell<bool>,
}

/// The Snapshots tab.
#[derive(Clone)]
pub struct SnapshotsPage(Rc<Inner>);

impl SnapshotsPage {
    pub fn new() -> Self {
        let notice = banner_label(&gettext(
            "Snapshots of a running VM are not supported yet. Shut it down to take, revert or delete one.",
        ));
        let notice_revealer = gtk::Revealer::builder().child(&notice).build();
        let error = error_label();
        let error_revealer = gtk::Revealer::builder().child(&error).build();
        let page = adw::PreferencesPage::builder().vexpand(true).build();
        let progress = gtk::ProgressBar::builder()
            .show_text(true)
            .visible(false)
            .margin_start(12)
            .margin_end(12)
            .build();
        let create = gtk::Button::builder()
            .label(gettext("_Create Snapshot…"))
            .use_underline(true)
            .css_classes(["suggested-action"])
            .build();
        let bar = gtk::ActionBar::new();
        bar.pack_start(&create);
        let root = gtk::Box::new(gtk::Orientation::Vertical, 0);
        root.append(&notice_revealer);
        root.append(&error_revealer);
        root.append(&page);
        root.append(&progress);
        root.append(&bar);
        let this = SnapshotsPage(Rc::new(Inner {
            root,
            page,
            group: RefCell::default(),
            notice_revealer,
            error,
            error_revealer,
            progress,
            create,
            shown: RefCell::default(),
            busy: Cell::new(false),
        }));
        let weak = Rc::downgrade(&this.0);
        this.0.create.connect_clicked(move |_| {
            if let Some(inner) = weak.upgrade() {
                SnapshotsPage(inner).ask_create();
            }
        });
        this
    }

    pub fn widget(&self) -> &gtk::Box {
        &self.0.root
    }

    /// Shows `definition`'s snapshots.
    pub fn show(&self, definition: &Definition, state: VmState) {
        let running = state.is_active();
        let same = self
            .0
            .shown
            .borrow()
            .as_ref()
            .is_some_and(|(d, _)| d.name == definition.name);
        if !same {
            self.set_error(None);
        }
        *self.0.shown.borrow_mut() = Some((definition.clone(), running));
        self.0.notice_revealer.set_reveal_child(running);
        self.reload();
    }

    fn set_error(&self, error: Option<String>) {
        self.0.error.set_label(error.as_deref().unwrap_or(""));
        self.0.error_revealer.set_reveal_child(error.is_some());
    }

    fn usable(&self) -> bool {
        let running = self.0.shown.borrow().as_ref().is_some_and(|(_, r)| *r);
        !running && !self.0.busy.get()
    }

    /// Lists the snapshots again, on a worker thread.
    fn reload(&self) {
        let Some(name) = self.0.shown.borrow().as_ref().map(|(d, _)| d.name.clone()) else {
            return;
        };
        let this = self.clone();
        in_background(
            move || SnapshotStore::for_domain(&name).list(),
            move |listed| match listed {
                Ok(mut list) => {
                    list.sort_by_key(|s| std::cmp::Reverse(s.creation_time));
                    this.fill(&list);
                }
                Err(error) => this.set_error(Some(gettext_f(
                    "The snapshots cannot be read: {error}",
                    &[("error", &error)],
                ))),
            },
        );
    }

    fn fill(&self, list: &[SnapshotDef]) {
        if let Some(old) = self.0.group.borrow_mut().take() {
            self.0.page.remove(&old);
        }
        let group = adw::PreferencesGroup::builder()
            .title(gettext("Snapshots"))
            .build();
        if list.is_empty() {
            group.set_description(Some(&gettext(
                "No snapshots yet. A snapshot keeps the disks as they are now, to go back to later.",
            )));
        }
        let usable = self.usable();
        for snapshot in list {
            group.add(&self.row(snapshot, usable));
        }
        self.0.page.add(&group);
        *self.0.group.borrow_mut() = Some(group);
        self.0.create.set_sensitive(usable);
    }

    fn row(&self, snapshot: &SnapshotDef, usable: bool) -> adw::ActionRow {
        let mut facts = Vec::new();
        if let Some(date) = snapshot
            .creation_time
            .and_then(|secs| gtk::glib::DateTime::from_unix_local(secs).ok())
            .and_then(|date| date.format("%x %X").ok())
        {
            facts.push(date.to_string());
        }
        facts.push(state_label(snapshot));
        if let Some(description) = snapshot.description.as_deref().filter(|d| !d.is_empty()) {
            facts.push(description.to_string());
        }
        let row = adw::ActionRow::builder()
            .title(gtk::glib::markup_escape_text(&snapshot.name).as_str())
            .subtitle(gtk::glib::markup_escape_text(&facts.join(" · ")).as_str())
            .build();
        if snapshot.current {
            let current = gtk::Label::builder()
                .label(gettext("Current"))
                .css_classes(["dim-label"])
                .build();
            row.add_suffix(&current);
        }
        for (label, confirm) in [
            (gettext("Revert"), Confirm::Revert),
            (gettext("Delete"), Confirm::Delete),
        ] {
            let button = gtk::Button::builder()
                .label(label)
                .valign(gtk::Align::Center)
                .sensitive(usable)
                .build();
            let this = self.clone();
            let name = snapshot.name.clone();
            button.connect_clicked(move |_| this.confirm(&name, confirm));
            row.add_suffix(&button);
        }
        row
    }

    fn window(&self) -> Option<gtk::Window> {
        self.0.root.root().and_downcast::<gtk::Window>()
    }

    fn ask_create(&self) {
        let Some((definition, _)) = self.0.shown.borrow().clone() else {
            return;
        };
        let name = gtk::Entry::builder()
            .placeholder_text(gettext("Name"))
            .activates_default(true)
            .build();
        let description = gtk::Entry::builder()
            .placeholder_text(gettext("Description (optional)"))
            .activates_default(true)
            .build();
        let fields = gtk::Box::new(gtk::Orientation::Vertical, 6);
        fields.append(&name);
        fields.append(&description);
        let dialog = adw::MessageDialog::builder()
            .modal(true)
            .heading(gettext_f(
                "Snapshot of “{name}”",
                &[("name", &definition.name)],
            ))
            .body(gettext(
                "The disks are kept as they are now; you can revert to them later.",
            ))
            .extra_child(&fields)
            .build();
        dialog.set_transient_for(self.window().as_ref());
        dialog.add_response("cancel", &gettext("_Cancel"));
        dialog.add_response("create", &gettext("C_reate"));
        dialog.set_response_appearance("create", adw::ResponseAppearance::Suggested);
        dialog.set_default_response(Some("create"));
        dialog.set_close_response("cancel");
        let this = self.clone();
        let name_entry = name.clone();
        dialog.connect_response(None, move |_, response| {
            if response != "create" {
                return;
            }
            let mut asked = SnapshotDef::parse("<domainsnapshot/>").expect("an empty snapshot");
            asked.name = name_entry.text().trim().to_string();
            let text = description.text().trim().to_string();
            asked.description = (!text.is_empty()).then_some(text);
            let definition = definition.clone();
            this.run(gettext("The snapshot could not be taken"), move |_| {
                snapshots::create(&definition, &asked, false, false).map(drop)
            });
        });
        dialog.present();
        name.grab_focus();
    }

    fn confirm(&self, snapshot: &str, what: Confirm) {
        let Some((definition, _)) = self.0.shown.borrow().clone() else {
            return;
        };
        let vm = definition.name.clone();
        let (heading, body, verb) = match what {
            Confirm::Revert => (
                gettext_f("Revert to “{snapshot}”?", &[("snapshot", snapshot)]),
                gettext_f(
                    "The disks and settings of “{name}” go back to how they were when the snapshot was taken. Changes made since then are lost.",
                    &[("name", &vm)],
                ),
                gettext("_Revert"),
            ),
            Confirm::Delete => (
                gettext_f("Delete “{snapshot}”?", &[("snapshot", snapshot)]),
                gettext(
                    "The VM can no longer go back to this snapshot. Its disks keep their present contents.",
                ),
                gettext("_Delete"),
            ),
        };
        let dialog = confirm::destructive(self.window().as_ref(), &heading, &body, "go", &verb);
        dialog.set_default_response(Some("go"));
        let this = self.clone();
        let snapshot = snapshot.to_string();
        dialog.connect_response(None, move |_, response| {
            if response != "go" {
                return;
            }
            let definition = definition.clone();
            let snapshot = snapshot.clone();
            match what {
                Confirm::Revert => this.run(
                    gettext("The VM could not be reverted to the snapshot"),
                    move |_| snapshots::revert(&definition, &snapshot, false).map(drop),
                ),
                Confirm::Delete => this.run(
                    gettext("The snapshot could not be deleted"),
                    move |progress| {
                        snapshots::delete(&definition, &snapshot, false, false, &mut |_, f| {
                            progress.store(f.to_bits(), Ordering::Relaxed)
                        })
                    },
                ),
            }
        });
        dialog.present();
    }

    /// Runs `work` on a worker thread with the progress bar showing what
    /// it reports, then lists the snapshots again; a failure is shown
    /// under `headline`.
    fn run(
        &self,
        headline: String,
        work: impl FnOnce(&AtomicU64) -> Result<(), String> + Send + 'static,
    ) {
        self.0.busy.set(true);
        self.set_error(None);
        self.0.create.set_sensitive(false);
        let fraction = Arc::new(AtomicU64::new(0f64.to_bits()));
        let bar = self.0.progress.clone();
        bar.set_fraction(0.0);
        // (shown only if the work outlasts a blink)
        let shown = fraction.clone();
        let ticker = gtk::glib::timeout_add_local(Duration::from_millis(200), move || {
            bar.set_visible(true);
            bar.set_fraction(f64::from_bits(shown.load(Ordering::Relaxed)));
            gtk::glib::ControlFlow::Continue
        });
        let this = self.clone();
        in_background(
            move || work(&fraction),
            move |result| {
                ticker.remove();
                this.0.progress.set_visible(false);
                this.0.busy.set(false);
                if let Err(error) = result {
                    tracing::warn!("{headline}: {error}");
                    this.set_error(Some(format!("{headline}: {error}")));
                }
                this.reload();
            },
        );
    }
}

#[derive(Clone, Copy)]
enum Confirm {
    Revert,
    Delete,
}

/// The state the VM was in, as virt-manager names it.
fn state_label(snapshot: &SnapshotDef) -> String {
    match snapshot.state.as_deref() {
        Some("running") => gettext("Running"),
        Some("paused") => gettext("Paused"),
        Some("disk-snapshot") => gettext("Disks only"),
        _ => gettext("Shut off"),
    }
}
