//! The XML tab: the whole stored definition in a monospace text view, for
//! experts (virt-manager's XML tab, one editor for the domain). Apply
//! checks the text the way `vireo define` does (`app::edit::save_xml`)
//! and saves only a valid definition of the same VM; a refusal is shown
//! above the editor and the text stays as typed.

use std::cell::RefCell;
use std::rc::Rc;

use adw::prelude::*;

use super::{in_background, OnSaved};
use crate::app::edit;
use crate::definitions::{Definition, DomainStore};
use crate::ui::gettext;
use crate::ui::i18n::gettext_f;

#[derive(Default)]
struct State {
    original: Option<Definition>,
    running: bool,
    /// Set while the text is replaced from the definition, so that is not
    /// taken for an edit.
    loading: bool,
    dirty: bool,
}

struct Inner {
    state: RefCell<State>,
    root: gtk::Box,
    buffer: gtk::TextBuffer,
    error: gtk::Label,
    notice: gtk::Label,
    apply: gtk::Button,
    revert: gtk::Button,
    on_saved: RefCell<Option<OnSaved>>,
}

#[derive(Clone)]
pub struct XmlEditor(Rc<Inner>);

impl XmlEditor {
    pub fn new() -> Self {
        let error = super::error_label();
        error.set_visible(false);
        let notice = super::banner_label(&gettext(
            "The VM is running: a saved definition takes effect after it shuts down.",
        ));
        notice.set_visible(false);
        let view = gtk::TextView::builder()
            .monospace(true)
            .wrap_mode(gtk::WrapMode::None)
            .top_margin(8)
            .bottom_margin(8)
            .left_margin(8)
            .right_margin(8)
            .build();
        let buffer = view.buffer();
        let scroller = gtk::ScrolledWindow::builder()
            .child(&view)
            .vexpand(true)
            .hexpand(true)
            .build();
        let (bar, revert, apply) =
            super::apply_bar(&gettext("Re_vert XML"), &gettext("A_pply XML"));
        let root = gtk::Box::new(gtk::Orientation::Vertical, 0);
        root.append(&notice);
        root.append(&error);
        root.append(&scroller);
        root.append(&bar);
        let this = XmlEditor(Rc::new(Inner {
            state: RefCell::default(),
            root,
            buffer,
            error,
            notice,
            apply,
            revert,
            on_saved: RefCell::default(),
        }));
        let weak = Rc::downgrade(&this.0);
        this.0.buffer.connect_changed(move |_| {
            if let Some(inner) = weak.upgrade() {
                let this = XmlEditor(inner);
                let mut state = this.0.state.borrow_mut();
                if !state.loading {
                    state.dirty = true;
                }
                drop(state);
                this.update_buttons();
            }
        });
        let weak = Rc::downgrade(&this.0);
        this.0.apply.connect_clicked(move |_| {
            if let Some(inner) = weak.upgrade() {
                XmlEditor(inner).apply();
            }
        });
        let weak = Rc::downgrade(&this.0);
        this.0.revert.connect_clicked(move |_| {
            if let Some(inner) = weak.upgrade() {
                let this = XmlEditor(inner);
                let (original, running) = {
                    let s = this.0.state.borrow();
                    (s.original.clone(), s.running)
                };
                if let Some(original) = original {
                    this.show(&original, running, true);
                }
            }
        });
        this.update_buttons();
        this
    }

    pub fn widget(&self) -> &gtk::Box {
        &self.0.root
    }

    pub(super) fn set_on_saved(&self, f: impl Fn(&Definition, bool) + 'static) {
        *self.0.on_saved.borrow_mut() = Some(Box::new(f));
    }

    /// Shows `definition`; an edit to the same VM not yet applied is kept
    /// unless `replace`.
    pub fn show(&self, definition: &Definition, running: bool, replace: bool) {
        let keep = {
            let mut state = self.0.state.borrow_mut();
            let same = state
                .original
                .as_ref()
                .is_some_and(|o| o.uuid == definition.uuid);
            state.running = running;
            if same && state.dirty && !replace {
                true
            } else {
                state.original = Some(definition.clone());
                state.dirty = false;
                state.loading = true;
                false
            }
        };
        if !keep {
            self.0.buffer.set_text(definition.xml.trim_end());
            self.0.state.borrow_mut().loading = false;
            self.0.error.set_visible(false);
        }
        self.update_buttons();
    }

    fn update_buttons(&self) {
        let state = self.0.state.borrow();
        self.0.apply.set_sensitive(state.dirty);
        self.0.revert.set_sensitive(state.dirty);
        self.0.notice.set_visible(state.running);
    }

    fn apply(&self) {
        let (original, running) = {
            let s = self.0.state.borrow();
            match &s.original {
                Some(o) => (o.clone(), s.running),
                None => return,
            }
        };
        let (start, end) = self.0.buffer.bounds();
        let text = self.0.buffer.text(&start, &end, false).to_string();
        self.0.apply.set_sensitive(false);
        let this = self.clone();
        in_background(
            move || edit::save_xml(&DomainStore::open(), &original, &text),
            move |result| match result {
                Ok(saved) => {
                    this.show(&saved, running, true);
                    if let Some(f) = this.0.on_saved.borrow().as_ref() {
                        f(&saved, running);
                    }
                }
                Err(e) => {
                    this.0.error.set_text(&gettext_f(
                        "The definition was not saved: {error}",
                        &[("error", &e.to_string())],
                    ));
                    this.0.error.set_visible(true);
                    this.update_buttons();
                }
            },
        );
    }
}
