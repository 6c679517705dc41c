//! Pieces the Storage page and the volume chooser share: a pool's row (name,
//! state, a bar of its file system's use), a volume's row, the sentences
//! for storage errors, and running pool work off the GTK thread.

use std::time::{Duration, Instant};

use adw::prelude::*;

use super::i18n::gettext_f;
use super::{gettext, ngettext};
use crate::app::storage::{
    fraction, human_size, AddPoolError, CapacityError, NameProblem, PoolSummary, RequestProblem,
    ResizeProblem,
};
use crate::storage::pools::{PoolError, VolumeDef};
use crate::storage::ImageLockError;

/// Runs `work` on a thread of its own and hands its result to `done` on
/// the GTK thread, which never waits for it.
pub fn background<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
    done: impl FnOnce(T) + 'static,
) {
    background_with_progress(move |_| work(), |_| {}, done);
}

/// Like [`background`], with `work`'s `(done, total)` progress passed to
/// `progress` on the GTK thread, a few times a second at most.
pub fn background_with_progress<T: Send + 'static>(
    work: impl FnOnce(&mut dyn FnMut(u64, u64)) -> T + Send + 'static,
    progress: impl Fn(f64) + 'static,
    done: impl FnOnce(T) + 'static,
) {
    enum Report<T> {
        Progress(f64),
        Done(T),
    }
    let (tx, rx) = async_channel::unbounded::<Report<T>>();
    let worker = std::thread::Builder::new()
        .name("vireo-storage".into())
        .spawn(move || {
            let mut last: Option<Instant> = None;
            let result = work(&mut |done, total| {
                let due = match last {
                    Some(t) => t.elapsed() >= Duration::from_millis(150),
                    None => true,
                };
                if due {
                    last = Some(Instant::now());
                    let _ = tx.send_blocking(Report::Progress(fraction(done, total)));
                }
            });
            let _ = tx.send_blocking(Report::Done(result));
        });
    if let Err(error) = worker {
        tracing::error!("cannot start a storage worker thread: {error}");
        return;
    }
    gtk::glib::MainContext::default().spawn_local(async move {
        while let Ok(report) = rx.recv().await {
            match report {
                Report::Progress(f) => progress(f),
                Report::Done(result) => {
                    done(result);
                    return;
                }
            }
        }
    });
}

/// `used of total used`, as a pool's caption.
pub fn usage_text(used: u64, total: u64) -> String {
    gettext_f(
        "{used} of {total} used",
        &[("used", &human_size(used)), ("total", &human_size(total))],
    )
}

/// A pool in a list: its name and state over a bar of its space.
pub fn pool_row(summary: &PoolSummary) -> gtk::ListBoxRow {
    let name = gtk::Label::builder()
        .label(summary.name())
        .xalign(0.0)
        .hexpand(true)
        .ellipsize(gtk::pango::EllipsizeMode::End)
        .css_classes(["heading"])
        .build();
    let state = gtk::Label::builder()
        .label(if summary.pool.active {
            gettext("Active")
        } else {
            gettext("Inactive")
        })
        .css_classes(["dim-label", "caption"])
        .build();
    let top = gtk::Box::builder().spacing(6).build();
    top.append(&name);
    top.append(&state);
    let bar = gtk::LevelBar::builder()
        .min_value(0.0)
        .max_value(1.0)
        .build();
    let caption = gtk::Label::builder()
        .xalign(0.0)
        .css_classes(["dim-label", "caption"])
        .build();
    match summary.space {
        Some(space) => {
            bar.set_value(fraction(space.allocation, space.capacity));
            caption.set_label(&usage_text(space.allocation, space.capacity));
        }
        None => caption.set_label(&gettext("Folder missing")),
    }
    let content = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(4)
        .margin_top(8)
        .margin_bottom(8)
        .margin_start(8)
        .margin_end(8)
        .build();
    content.append(&top);
    content.append(&bar);
    content.append(&caption);
    let row = gtk::ListBoxRow::builder().child(&content).build();
    row.set_widget_name(summary.name());
    row
}

/// The columns of a volume list, kept aligned by size groups.
///
/// Two things keep the headings over their values: the heading line sits
/// in a one-row list of the same style as the volumes, so the theme gives
/// it the rows' padding; and every new row queues a resize of the
/// headings. GTK does not do the latter itself: a label that has never
/// been measured is already marked for resize, so adding it to a group
/// does not reach the group's other members, and the headings would keep
/// the width measured before any row existed (their own, in the smaller
/// caption font).
pub struct VolumeColumns {
    groups: [gtk::SizeGroup; 3],
    /// The heading cells in `groups`, one a group.
    headings: Vec<gtk::Label>,
}

impl VolumeColumns {
    pub fn new() -> Self {
        VolumeColumns {
            groups: std::array::from_fn(|_| gtk::SizeGroup::new(gtk::SizeGroupMode::Horizontal)),
            headings: Vec::new(),
        }
    }

    /// A line of `cells`: the name, then the three sized columns.
    fn line(&self, cells: [&str; 4], css: &[&str]) -> (gtk::Box, Vec<gtk::Label>) {
        let line = gtk::Box::builder()
            .spacing(12)
            .margin_start(8)
            .margin_end(8)
            .build();
        let mut sized = Vec::new();
        for (index, text) in cells.iter().enumerate() {
            let label = gtk::Label::builder()
                .label(*text)
                .xalign(if index == 0 { 0.0 } else { 1.0 })
                .css_classes(css.iter().map(|s| s.to_string()).collect::<Vec<_>>())
                .build();
            if index == 0 {
                label.set_hexpand(true);
                label.set_ellipsize(gtk::pango::EllipsizeMode::Middle);
            } else {
                label.set_width_chars(9);
                self.groups[index - 1].add_widget(&label);
                sized.push(label.clone());
            }
            line.append(&label);
        }
        (line, sized)
    }

    /// The column headings over `volumes`, scrolled: the volume list of
    /// both the Storage page and the volume chooser.
    pub fn list_with_header(&mut self, volumes: &gtk::ListBox) -> gtk::Box {
        let list = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .build();
        list.append(&self.header(volumes));
        list.append(&gtk::Separator::new(gtk::Orientation::Horizontal));
        list.append(
            &gtk::ScrolledWindow::builder()
                .child(volumes)
                .vexpand(true)
                .hscrollbar_policy(gtk::PolicyType::Never)
                .build(),
        );
        list
    }

    /// The headings, in a list styled as `volumes` so that its row padding
    /// is theirs; it takes no focus, selection or clicks.
    fn header(&mut self, volumes: &gtk::ListBox) -> gtk::ListBox {
        let (line, headings) = self.line(
            [
                &gettext("Name"),
                &gettext("Format"),
                &gettext("Capacity"),
                &gettext("Allocation"),
            ],
            &["dim-label", "caption-heading"],
        );
        self.headings = headings;
        let row = gtk::ListBoxRow::builder()
            .child(&line)
            .activatable(false)
            .selectable(false)
            .focusable(false)
            .build();
        let header = gtk::ListBox::builder()
            .selection_mode(gtk::SelectionMode::None)
            .focusable(false)
            .can_target(false)
            .build();
        for class in volumes.css_classes() {
            header.add_css_class(&class);
        }
        // Lower than a volume's row (resources/style.css).
        header.add_css_class("volume-headings");
        header.append(&row);
        header
    }

    /// A volume's row, named after it.
    pub fn row(&self, volume: &VolumeDef) -> gtk::ListBoxRow {
        let format = volume.target.format.map_or("?", |f| f.name());
        let (line, _) = self.line(
            [
                &volume.name,
                format,
                &human_size(volume.capacity),
                &human_size(volume.allocation),
            ],
            &[],
        );
        line.set_margin_top(6);
        line.set_margin_bottom(6);
        // The headings take the new row's widths (see the type's comment).
        for heading in &self.headings {
            heading.queue_resize();
        }
        let row = gtk::ListBoxRow::builder().child(&line).build();
        row.set_widget_name(&volume.name);
        row.set_tooltip_text(Some(&volume.target.path.to_string_lossy()));
        row
    }
}

/// Refills `list` with a row for each pool, selecting the one named
/// `selected`.
pub fn show_pools(list: &gtk::ListBox, pools: &[PoolSummary], selected: Option<&str>) {
    clear(list);
    for summary in pools {
        list.append(&pool_row(summary));
    }
    if let Some(name) = selected {
        select_named(list, name);
    }
}

/// A modal window over `parent` with `header` above `body`, `default` as
/// its default widget, and Escape to close it: the frame of the storage
/// dialogs and of the volume chooser.
pub fn modal_window(
    parent: Option<&gtk::Window>,
    title: &str,
    (header, body): (&impl IsA<gtk::Widget>, &impl IsA<gtk::Widget>),
    default: &impl IsA<gtk::Widget>,
    (width, height): (i32, i32),
) -> adw::Window {
    let content = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .build();
    content.append(header);
    content.append(body);
    let window = adw::Window::builder()
        .title(title)
        .modal(true)
        .default_width(width)
        .default_height(height)
        .content(&content)
        .build();
    window.set_transient_for(parent);
    window.set_default_widget(Some(default));
    let escape = gtk::ShortcutController::new();
    escape.add_shortcut(gtk::Shortcut::new(
        gtk::ShortcutTrigger::parse_string("Escape"),
        Some(gtk::NamedAction::new("window.close")),
    ));
    window.add_controller(escape);
    window
}

/// Removes every row of `list`.
pub fn clear(list: &gtk::ListBox) {
    while let Some(child) = list.first_child() {
        list.remove(&child);
    }
}

/// The widget name of `list`'s selected row: the pool's or volume's name.
pub fn selected_name(list: &gtk::ListBox) -> Option<String> {
    list.selected_row().map(|row| row.widget_name().to_string())
}

/// Selects the row named `name`, if there is one.
pub fn select_named(list: &gtk::ListBox, name: &str) -> bool {
    let mut child = list.first_child();
    while let Some(widget) = child {
        if let Some(row) = widget.downcast_ref::<gtk::ListBoxRow>() {
            if row.widget_name() == name {
                list.select_row(Some(row));
                return true;
            }
        }
        child = widget.next_sibling();
    }
    false
}

/// An OS error as the system words it, without Rust's "(os error N)".
pub fn io_error_text(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.rfind(" (os error ") {
        Some(at) if text.ends_with(')') => text[..at].to_string(),
        _ => text,
    }
}

/// A storage error as a sentence for the window.
pub fn pool_error_text(error: &PoolError) -> String {
    match error {
        PoolError::NoSuchPool(name) => {
            gettext_f("The pool “{name}” no longer exists.", &[("name", name)])
        }
        PoolError::PoolExists(name) => gettext_f(
            "A pool named “{name}” already exists. Choose another name.",
            &[("name", name)],
        ),
        PoolError::TargetInUse { path, other } => gettext_f(
            "The folder {path} already belongs to the pool “{other}”.",
            &[("path", path), ("other", other)],
        ),
        PoolError::InvalidName { name, .. } => {
            gettext_f("“{name}” cannot be used as a name.", &[("name", name)])
        }
        PoolError::NotActive(name) => gettext_f(
            "The pool “{name}” is stopped. Start it first.",
            &[("name", name)],
        ),
        PoolError::AlreadyActive(name) => {
            gettext_f("The pool “{name}” is already running.", &[("name", name)])
        }
        PoolError::StillActive(name) => gettext_f(
            "The pool “{name}” is running. Stop it before deleting it.",
            &[("name", name)],
        ),
        PoolError::TargetMissing { name, path } => gettext_f(
            "The pool “{name}” cannot start: its folder {path} does not exist.",
            &[("name", name), ("path", path)],
        ),
        PoolError::NoSuchVolume { pool, name } => gettext_f(
            "The volume “{name}” is no longer in the pool “{pool}”.",
            &[("name", name), ("pool", pool)],
        ),
        PoolError::VolumeNotFound(volume) => gettext_f(
            "No running pool holds the volume {volume}.",
            &[("volume", volume)],
        ),
        PoolError::VolumeExists { pool, name } => gettext_f(
            "A volume named “{name}” already exists in the pool “{pool}”. Choose another name.",
            &[("name", name), ("pool", pool)],
        ),
        PoolError::WouldShrink { name, .. } => {
            gettext_f("The volume “{name}” cannot get smaller.", &[("name", name)])
        }
        PoolError::Unsupported(reason) => gettext_f(
            "This cannot be done: {reason}.",
            &[("reason", reason.trim_end_matches('.'))],
        ),
        PoolError::InUse(ImageLockError::InUse { path }) => gettext_f(
            "{path} is in use by a virtual machine or another program. Shut it down first.",
            &[("path", path)],
        ),
        PoolError::InUse(ImageLockError::Io { path, source }) => gettext_f(
            "{path} cannot be locked: {error}.",
            &[("path", path), ("error", &io_error_text(source))],
        ),
        PoolError::Xml(error) => gettext_f(
            "A pool definition cannot be read: {error}.",
            &[("error", &error.to_string())],
        ),
        PoolError::Io { action, source } => gettext_f(
            "The operation failed ({action}): {error}.",
            &[("action", action), ("error", &io_error_text(source))],
        ),
    }
}

/// Why adding a pool failed, as a sentence.
pub fn add_pool_error_text(error: &AddPoolError) -> String {
    match error {
        AddPoolError::Define(e) | AddPoolError::Start(e) => pool_error_text(e),
        AddPoolError::Folder { path, source } => gettext_f(
            "The folder {path} cannot be created: {error}.",
            &[
                ("path", &path.to_string_lossy()),
                ("error", &io_error_text(source)),
            ],
        ),
    }
}

/// What is wrong with a typed name, as a sentence.
pub fn name_problem_text(problem: NameProblem) -> String {
    match problem {
        NameProblem::Empty => gettext("Enter a name."),
        NameProblem::Slash => gettext("A name cannot contain “/”."),
        NameProblem::Reserved => gettext("This name is reserved. Choose another one."),
        NameProblem::TooLong => gettext("The name is too long."),
        NameProblem::Taken => gettext("This name is already used. Choose another one."),
    }
}

/// What is wrong with a typed capacity, as a sentence.
pub fn capacity_error_text(error: &CapacityError) -> String {
    match error {
        CapacityError::NotANumber(text) => gettext_f(
            "“{text}” is not a size. Enter a number such as 20 or 1.5.",
            &[("text", text)],
        ),
        CapacityError::Zero => gettext("The capacity must be more than zero."),
        CapacityError::TooLarge(text) => gettext_f("“{text}” is too large.", &[("text", text)]),
    }
}

/// Why a New Volume request was refused, as a sentence.
pub fn request_problem_text(problem: &RequestProblem) -> String {
    match problem {
        RequestProblem::Name(problem) => name_problem_text(*problem),
        RequestProblem::PreallocFormat => {
            gettext("Only qcow2 volumes can preallocate just their metadata.")
        }
        RequestProblem::BackingNeedsQcow2 => {
            gettext("Only a qcow2 volume can have a backing volume.")
        }
        RequestProblem::BackingWithPrealloc => {
            gettext("A volume with a backing volume cannot be preallocated.")
        }
        RequestProblem::NoSpace { needed, available } => gettext_f(
            "The pool has {available} free, not the {needed} to allocate.",
            &[
                ("available", &human_size(*available)),
                ("needed", &human_size(*needed)),
            ],
        ),
    }
}

/// Why a resize was refused, as a sentence.
pub fn resize_problem_text(problem: ResizeProblem) -> String {
    match problem {
        ResizeProblem::Unchanged => gettext("The volume already has this size."),
        ResizeProblem::CannotShrink => {
            gettext("A qcow2 volume can only grow. Enter a larger size.")
        }
    }
}

/// "N volumes" for a pool's heading.
pub fn volume_count_text(count: usize) -> String {
    ngettext("{n} volume", "{n} volumes", count as u32).replace("{n}", &count.to_string())
}
