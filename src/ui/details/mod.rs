//! The VM's Details and XML tabs: virt-manager's hardware view, GNOME-style.
//!
//! ```text
//! Details (GtkBox)
//! ├─ GtkRevealer: "takes effect after shutdown" notice / error label
//! ├─ AdwPreferencesPage: Overview, CPUs, Memory, Boot options, one group
//! │  per disk / CD-ROM / NIC, Display, Video, Serial, Input (hardware.rs)
//! └─ GtkActionBar: Add Hardware… (add_hardware.rs) | Revert, Apply
//! XML (xml.rs): the whole definition in a monospace GtkTextView
//! ```
//!
//! Edits collect in a copy of the definition and Apply saves them through
//! `app::edit` on a worker thread; Revert drops them. Add Hardware and
//! Remove save at once, as virt-manager's do. A running VM keeps running
//! the machine it started with: what is saved is what its next start uses,
//! and the editable rows say so.

mod add_hardware;
mod hardware;
mod xml;

use std::cell::RefCell;
use std::rc::Rc;

use adw::prelude::*;

use super::gettext;
use crate::app::edit::{self, EditError};
use crate::app::lifecycle::VmState;
use crate::app::media::MediaError;
use crate::definitions::{Definition, DomainStore};
use crate::domain::Domain;

/// Runs `work` on a worker thread and `done` with its result on the GTK
/// thread, so the window never waits for a disk or a VM.
pub(crate) fn in_background<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
    done: impl FnOnce(T) + 'static,
) {
    let handle = gtk::gio::spawn_blocking(work);
    gtk::glib::spawn_future_local(async move {
        if let Ok(value) = handle.await {
            done(value);
        }
    });
}

/// Told what one tab saved (and whether the VM runs), so the other shows it.
pub(crate) type OnSaved = Box<dyn Fn(&Definition, bool)>;

/// Both tabs of one VM's definition.
pub struct Details {
    pub hardware: DetailsPage,
    pub xml: xml::XmlEditor,
}

impl Details {
    pub fn new() -> Self {
        let hardware = DetailsPage::new();
        let xml = xml::XmlEditor::new();
        // What one tab saves, the other shows.
        let other = xml.clone();
        hardware.set_on_saved(move |definition, running| other.show(definition, running, true));
        let other = hardware.clone();
        xml.set_on_saved(move |definition, running| other.reload(definition, running));
        Details { hardware, xml }
    }

    /// Shows `definition`, keeping edits not yet applied to the same VM.
    pub fn show(&self, definition: &Definition, state: VmState) {
        let running = state.is_active();
        self.hardware.show(definition, running);
        self.xml.show(definition, running, false);
    }
}

#[derive(Default)]
struct State {
    /// The definition as stored.
    original: Option<Definition>,
    /// The definition with the edits not yet applied.
    edited: Option<Domain>,
    running: bool,
    dirty: bool,
    /// The edit that failed, shown until one succeeds.
    error: Option<String>,
}

struct Inner {
    state: RefCell<State>,
    root: gtk::Box,
    page: adw::PreferencesPage,
    groups: RefCell<Vec<adw::PreferencesGroup>>,
    notice: gtk::Label,
    notice_revealer: gtk::Revealer,
    error: gtk::Label,
    error_revealer: gtk::Revealer,
    apply: gtk::Button,
    revert: gtk::Button,
    add: gtk::Button,
    on_saved: RefCell<Option<OnSaved>>,
}

/// The Details tab.
#[derive(Clone)]
pub struct DetailsPage(Rc<Inner>);

impl DetailsPage {
    fn new() -> Self {
        let notice = banner_label(&gettext(
            "The VM is running: changes are saved now and take effect after it shuts down.",
        ));
        let notice_revealer = gtk::Revealer::builder().child(&notice).build();
        let error = error_label();
        let error_revealer = gtk::Revealer::builder().child(&error).build();
        let page = adw::PreferencesPage::builder().vexpand(true).build();
        let add = gtk::Button::with_mnemonic(&gettext("Add _Hardware…"));
        let (bar, revert, apply) = apply_bar(&gettext("_Revert"), &gettext("_Apply"));
        bar.pack_start(&add);
        let root = gtk::Box::new(gtk::Orientation::Vertical, 0);
        root.append(&notice_revealer);
        root.append(&error_revealer);
        root.append(&page);
        root.append(&bar);
        let this = DetailsPage(Rc::new(Inner {
            state: RefCell::default(),
            root,
            page,
            groups: RefCell::default(),
            notice,
            notice_revealer,
            error,
            error_revealer,
            apply,
            revert,
            add,
            on_saved: RefCell::default(),
        }));
        let weak = Rc::downgrade(&this.0);
        this.0.apply.connect_clicked(move |_| {
            if let Some(inner) = weak.upgrade() {
                DetailsPage(inner).apply();
            }
        });
        let weak = Rc::downgrade(&this.0);
        this.0.revert.connect_clicked(move |_| {
            if let Some(inner) = weak.upgrade() {
                DetailsPage(inner).revert();
            }
        });
        let weak = Rc::downgrade(&this.0);
        this.0.add.connect_clicked(move |_| {
            if let Some(inner) = weak.upgrade() {
                add_hardware::present(&DetailsPage(inner));
            }
        });
        this.update_buttons();
        this
    }

    pub fn widget(&self) -> &gtk::Box {
        &self.0.root
    }

    fn set_on_saved(&self, f: impl Fn(&Definition, bool) + 'static) {
        *self.0.on_saved.borrow_mut() = Some(Box::new(f));
    }

    fn window(&self) -> Option<gtk::Window> {
        self.0.root.root().and_downcast::<gtk::Window>()
    }

    /// Shows `definition`; edits not yet applied to the same VM are kept.
    pub fn show(&self, definition: &Definition, running: bool) {
        {
            let mut state = self.0.state.borrow_mut();
            let same = state
                .original
                .as_ref()
                .is_some_and(|o| o.uuid == definition.uuid);
            let unchanged = state.original.as_ref() == Some(definition);
            if same && state.dirty {
                state.running = running;
            } else if unchanged && state.running == running {
                return;
            } else {
                *state = State {
                    original: Some(definition.clone()),
                    edited: Some(definition.domain().clone()),
                    running,
                    ..State::default()
                };
            }
        }
        self.rebuild();
    }

    /// Shows what was just saved elsewhere (the XML tab), dropping edits.
    fn reload(&self, definition: &Definition, running: bool) {
        *self.0.state.borrow_mut() = State {
            original: Some(definition.clone()),
            edited: Some(definition.domain().clone()),
            running,
            ..State::default()
        };
        self.rebuild();
    }

    fn running(&self) -> bool {
        self.0.state.borrow().running
    }

    fn vm_name(&self) -> String {
        self.0
            .state
            .borrow()
            .original
            .as_ref()
            .map(|d| d.name.clone())
            .unwrap_or_default()
    }

    /// Applies `change` to the edited definition; a refusal is shown.
    fn edit(&self, change: impl FnOnce(&mut Domain) -> Result<(), EditError>) {
        let result = {
            let mut state = self.0.state.borrow_mut();
            let Some(domain) = state.edited.as_mut() else {
                return;
            };
            let mut changed = domain.clone();
            let result = change(&mut changed);
            match &result {
                Ok(()) => {
                    state.edited = Some(changed);
                    state.dirty = true;
                    state.error = None;
                }
                Err(e) => state.error = Some(e.to_string()),
            }
            result
        };
        let _ = result;
        self.update_buttons();
    }

    /// [`edit`](Self::edit), then redraws the rows (for changes that add,
    /// remove or rename rows).
    fn edit_and_rebuild(&self, change: impl FnOnce(&mut Domain) -> Result<(), EditError>) {
        self.edit(change);
        self.rebuild();
    }

    fn update_buttons(&self) {
        let state = self.0.state.borrow();
        self.0
            .apply
            .set_sensitive(state.dirty && state.error.is_none());
        self.0.revert.set_sensitive(state.dirty);
        self.0.add.set_sensitive(state.original.is_some());
        self.0.notice_revealer.set_reveal_child(state.running);
        self.0.notice.set_visible(state.running);
        match &state.error {
            Some(error) => {
                self.0.error.set_text(error);
                self.0.error_revealer.set_reveal_child(true);
            }
            None => self.0.error_revealer.set_reveal_child(false),
        }
    }

    /// Redraws every group from the edited definition.
    fn rebuild(&self) {
        for group in self.0.groups.borrow_mut().drain(..) {
            self.0.page.remove(&group);
        }
        let (domain, original, running) = {
            let state = self.0.state.borrow();
            (state.edited.clone(), state.original.clone(), state.running)
        };
        if let (Some(domain), Some(original)) = (domain, original) {
            let groups = hardware::groups(self, &original, &domain, running);
            for group in &groups {
                self.0.page.add(group);
            }
            *self.0.groups.borrow_mut() = groups;
        }
        self.update_buttons();
    }

    fn revert(&self) {
        {
            let mut state = self.0.state.borrow_mut();
            state.edited = state.original.as_ref().map(|d| d.domain().clone());
            state.dirty = false;
            state.error = None;
        }
        self.rebuild();
    }

    /// Saves the edits on a worker thread.
    fn apply(&self) {
        let (original, edited, running) = {
            let state = self.0.state.borrow();
            match (&state.original, &state.edited) {
                (Some(o), Some(e)) => (o.clone(), e.clone(), state.running),
                _ => return,
            }
        };
        self.save(original, edited, running, |_| {});
    }

    /// Saves `edited` over `original`, then shows what was stored; `after`
    /// gets the outcome (the Add Hardware dialog closes or shows it).
    fn save(
        &self,
        original: Definition,
        edited: Domain,
        running: bool,
        after: impl FnOnce(Result<(), String>) + 'static,
    ) {
        self.0.apply.set_sensitive(false);
        let this = self.clone();
        in_background(
            move || edit::save(&DomainStore::open(), &original, &edited, running),
            move |result| match result {
                Ok(saved) => {
                    this.saved(&saved, running);
                    after(Ok(()));
                }
                Err(e) => {
                    this.0.state.borrow_mut().error = Some(e.to_string());
                    this.update_buttons();
                    after(Err(e.to_string()));
                }
            },
        );
    }

    fn saved(&self, saved: &Definition, running: bool) {
        self.reload(saved, running);
        if let Some(f) = self.0.on_saved.borrow().as_ref() {
            f(saved, running);
        }
    }

    /// Adds `hardware` and saves at once, with the edits made so far.
    fn add_hardware(
        &self,
        hardware: edit::NewHardware,
        after: impl FnOnce(Result<(), String>) + 'static,
    ) {
        let (original, edited, running) = {
            let state = self.0.state.borrow();
            match (&state.original, &state.edited) {
                (Some(o), Some(e)) => (o.clone(), e.clone(), state.running),
                _ => return,
            }
        };
        let this = self.clone();
        in_background(
            move || {
                let mut domain = edited;
                edit::add_hardware(&mut domain, &hardware)?;
                edit::save(&DomainStore::open(), &original, &domain, running)
            },
            move |result| match result {
                Ok(saved) => {
                    this.saved(&saved, running);
                    after(Ok(()));
                }
                Err(e) => after(Err(e.to_string())),
            },
        );
    }

    /// Removes `device` after asking, and saves at once.
    fn remove(&self, device: edit::DeviceRef, what: String) {
        let dialog = adw::MessageDialog::builder()
            .heading(super::i18n::gettext_f(
                "Remove {device}?",
                &[("device", &what)],
            ))
            .body(gettext(
                "The device is taken out of the definition. Disk images stay where they are.",
            ))
            .modal(true)
            .build();
        dialog.set_transient_for(self.window().as_ref());
        dialog.add_response("cancel", &gettext("_Cancel"));
        dialog.add_response("remove", &gettext("_Remove"));
        dialog.set_response_appearance("remove", adw::ResponseAppearance::Destructive);
        dialog.set_default_response(Some("cancel"));
        dialog.set_close_response("cancel");
        let this = self.clone();
        dialog.connect_response(None, move |_, response| {
            if response != "remove" {
                return;
            }
            this.edit(|d| edit::remove_device(d, &device));
            if this.0.state.borrow().error.is_none() {
                this.apply();
            }
        });
        dialog.present();
    }

    /// Inserts `source` into CD-ROM `target`, or ejects it, on a worker
    /// thread; the edits not yet applied get the same medium.
    fn change_media(&self, target: String, source: Option<std::path::PathBuf>) {
        let vm = self.vm_name();
        let this = self.clone();
        in_background(
            {
                let target = target.clone();
                let source = source.clone();
                move || {
                    crate::app::media::change_media(&vm, &target, source.as_deref())
                        .map_err(|e| match e {
                            MediaError::Live(error) => super::i18n::gettext_f(
                                "The running VM did not change the medium: {error}",
                                &[("error", &error.to_string())],
                            ),
                            other => other.to_string(),
                        })
                        .and_then(|_| DomainStore::open().find(&vm).map_err(|e| e.to_string()))
                }
            },
            move |result| match result {
                Ok(stored) => {
                    let dirty = this.0.state.borrow().dirty;
                    if dirty {
                        let medium = source.map(|p| p.to_string_lossy().into_owned());
                        let mut state = this.0.state.borrow_mut();
                        state.original = Some(stored.clone());
                        if let Some(d) = state.edited.as_mut() {
                            let _ = edit::update_disk(d, &target, |disk| disk.source = medium);
                        }
                        drop(state);
                        this.rebuild();
                    } else {
                        let running = this.running();
                        this.saved(&stored, running);
                    }
                }
                Err(e) => {
                    this.0.state.borrow_mut().error = Some(e);
                    this.update_buttons();
                }
            },
        );
    }
}

/// A line of text across the top of a tab, for notices and errors.
pub(crate) fn banner_label(text: &str) -> gtk::Label {
    gtk::Label::builder()
        .label(text)
        .wrap(true)
        .xalign(0.0)
        .margin_top(6)
        .margin_bottom(6)
        .margin_start(12)
        .margin_end(12)
        .build()
}

/// Where a refused save says why, in place; selectable so it can be copied.
pub(crate) fn error_label() -> gtk::Label {
    let error = banner_label("");
    error.set_selectable(true);
    error.add_css_class("error");
    error
}

/// The action bar under a tab's editor: Revert and Apply at its end.
fn apply_bar(revert: &str, apply: &str) -> (gtk::ActionBar, gtk::Button, gtk::Button) {
    let revert = gtk::Button::with_mnemonic(revert);
    let apply = gtk::Button::with_mnemonic(apply);
    apply.add_css_class("suggested-action");
    let bar = gtk::ActionBar::new();
    bar.pack_end(&apply);
    bar.pack_end(&revert);
    (bar, revert, apply)
}
