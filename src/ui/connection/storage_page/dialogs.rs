//! The Storage page's dialogs: Add Pool, New Volume and Resize. Each
//! checks its fields with `app::storage`, runs the change on a worker
//! thread (New Volume with a progress bar), shows a refusal or failure as a
//! sentence in place, and closes when the change is made.

use std::cell::{Cell, RefCell};
use std::path::PathBuf;
use std::rc::Rc;

use crate::ui::file_chooser::{choose_into, Pick};
use adw::prelude::*;

use crate::app::storage::{
    add_dir_pool, check_pool_name, check_resize, human_size, parse_capacity, rename_for_format,
    suggest_volume_name, Prealloc, SizeUnit, Snapshot, VolumeRequest,
};
use crate::definitions::PoolStore;
use crate::storage::pools::{VolumeDef, VolumeFormat};
use crate::ui::gettext;
use crate::ui::i18n::gettext_f;
use crate::ui::pool_view::{
    add_pool_error_text, background, background_with_progress, capacity_error_text, modal_window,
    name_problem_text, pool_error_text, request_problem_text, resize_problem_text,
};

/// A modal window with Cancel and one suggested action in its header,
/// a form, and a line for errors under it.
struct Shell {
    window: adw::Window,
    form: gtk::Grid,
    extra: gtk::Box,
    action: gtk::Button,
    cancel: gtk::Button,
    error: gtk::Label,
    /// Rows used in `form`.
    rows: Cell<i32>,
    /// A change is running: the dialog cannot be closed or resubmitted.
    busy: Rc<Cell<bool>>,
}

impl Shell {
    fn new(parent: Option<&gtk::Window>, title: &str, action: &str) -> Rc<Self> {
        let cancel = gtk::Button::with_label(&gettext("Cancel"));
        let action = gtk::Button::builder()
            .label(action)
            .use_underline(true)
            .css_classes(["suggested-action"])
            .build();
        let header = adw::HeaderBar::builder()
            .title_widget(&adw::WindowTitle::new(title, ""))
            .show_end_title_buttons(false)
            .show_start_title_buttons(false)
            .build();
        header.pack_start(&cancel);
        header.pack_end(&action);
        let form = gtk::Grid::builder()
            .row_spacing(12)
            .column_spacing(12)
            .build();
        let extra = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(8)
            .build();
        let error = gtk::Label::builder()
            .xalign(0.0)
            .wrap(true)
            .visible(false)
            .css_classes(["error"])
            .build();
        let body = gtk::Box::builder()
            .orientation(gtk::Orientation::Vertical)
            .spacing(12)
            .margin_top(18)
            .margin_bottom(18)
            .margin_start(18)
            .margin_end(18)
            .build();
        body.append(&form);
        body.append(&extra);
        body.append(&error);
        // Its natural height: as tall as the form.
        let window = modal_window(parent, title, (&header, &body), &action, (480, -1));
        let busy = Rc::new(Cell::new(false));
        {
            let busy = busy.clone();
            window.connect_close_request(move |_| {
                if busy.get() {
                    gtk::glib::Propagation::Stop
                } else {
                    gtk::glib::Propagation::Proceed
                }
            });
        }
        {
            let window = window.clone();
            cancel.connect_clicked(move |_| {
                window.close();
            });
        }
        Rc::new(Shell {
            window,
            form,
            extra,
            action,
            cancel,
            error,
            rows: Cell::new(0),
            busy,
        })
    }

    /// Adds a labelled row; the label's mnemonic focuses `widget`.
    fn row(&self, label: &str, widget: &impl IsA<gtk::Widget>) {
        self.row_for(label, widget, widget);
    }

    /// Adds a labelled row of `widget`; the label's mnemonic focuses `target` in it.
    fn row_for(&self, label: &str, widget: &impl IsA<gtk::Widget>, target: &impl IsA<gtk::Widget>) {
        let title = gtk::Label::builder()
            .label(label)
            .use_underline(true)
            .xalign(1.0)
            .build();
        title.set_mnemonic_widget(Some(target));
        let row = self.rows.get();
        self.form.attach(&title, 0, row, 1, 1);
        self.form.attach(widget, 1, row, 1, 1);
        self.rows.set(row + 1);
    }

    fn show_error(&self, text: &str) {
        self.error.set_label(text);
        self.error.set_visible(true);
    }

    /// `result`'s value, or `None` with its error shown as `text` words it.
    fn accept<T, E>(&self, result: Result<T, E>, text: impl FnOnce(E) -> String) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(error) => {
                self.show_error(&text(error));
                None
            }
        }
    }

    fn clear_error(&self) {
        self.error.set_visible(false);
    }

    /// Marks a change as running (or finished): the form is locked meanwhile.
    fn set_busy(&self, busy: bool) {
        self.busy.set(busy);
        self.form.set_sensitive(!busy);
        self.action.set_sensitive(!busy);
        self.cancel.set_sensitive(!busy);
    }

    fn close(&self) {
        self.busy.set(false);
        self.window.close();
    }

    /// Runs `work` on a worker with the form locked; on success closes the
    /// dialog and calls `done`, else shows the error in place.
    fn submit(
        self: &Rc<Self>,
        work: impl FnOnce() -> Result<(), String> + Send + 'static,
        done: impl FnOnce() + 'static,
    ) {
        self.clear_error();
        self.set_busy(true);
        let shell = self.clone();
        background(work, move |result| {
            shell.set_busy(false);
            match result {
                Ok(()) => {
                    shell.close();
                    done();
                }
                Err(text) => shell.show_error(&text),
            }
        });
    }
}

fn entry(text: &str) -> gtk::Entry {
    gtk::Entry::builder()
        .text(text)
        .hexpand(true)
        .activates_default(true)
        .build()
}

fn string_dropdown(items: &[String]) -> gtk::DropDown {
    let items: Vec<&str> = items.iter().map(String::as_str).collect();
    gtk::DropDown::from_strings(&items)
}

fn unit_dropdown(selected: SizeUnit) -> gtk::DropDown {
    let dropdown = gtk::DropDown::from_strings(&SizeUnit::ALL.map(SizeUnit::symbol));
    let index = SizeUnit::ALL
        .iter()
        .position(|u| *u == selected)
        .unwrap_or(1);
    dropdown.set_selected(index as u32);
    dropdown
}

/// The item of `choices` selected in `dropdown` (listed in that order), or
/// `fallback` while nothing is.
fn chosen<T: Copy>(choices: &[T], dropdown: &gtk::DropDown, fallback: T) -> T {
    choices
        .get(dropdown.selected() as usize)
        .copied()
        .unwrap_or(fallback)
}

/// A capacity: a number entry with a unit beside it.
struct CapacityField {
    number: gtk::Entry,
    unit: gtk::DropDown,
}

impl CapacityField {
    /// Adds the field to `shell` as a row titled `label`, showing `text` in `unit`.
    fn add(shell: &Shell, label: &str, text: &str, unit: SizeUnit) -> Self {
        let number = entry(text);
        number.set_width_chars(8);
        let unit = unit_dropdown(unit);
        let row = gtk::Box::builder().spacing(6).build();
        row.append(&number);
        row.append(&unit);
        shell.row_for(label, &row, &number);
        CapacityField { number, unit }
    }

    /// The bytes typed, or `None` with the reason shown in `shell`.
    fn bytes(&self, shell: &Shell) -> Option<u64> {
        shell.accept(
            parse_capacity(
                self.number.text().as_str(),
                chosen(&SizeUnit::ALL, &self.unit, SizeUnit::GiB),
            ),
            |error| capacity_error_text(&error),
        )
    }
}

/// A preallocation as New Volume offers it.
fn prealloc_label(prealloc: Prealloc) -> String {
    match prealloc {
        Prealloc::Off => gettext("Off (grows as it is written)"),
        Prealloc::Metadata => gettext("Metadata (qcow2 tables only)"),
        Prealloc::Full => gettext("Full (all of it now)"),
    }
}

/// Add Pool: a name and a folder (typed, or picked with Browse). The pool
/// is created, started and set to start automatically.
pub fn add_pool(
    parent: Option<&gtk::Window>,
    snapshot: &Snapshot,
    on_added: impl Fn(String) + 'static,
) {
    let shell = Shell::new(parent, &gettext("Add Storage Pool"), &gettext("C_reate"));
    let existing: Vec<String> = snapshot
        .pools
        .iter()
        .map(|p| p.name().to_string())
        .collect();
    let base = crate::paths::data_dir().join("pools");
    let proposed = (0..)
        .map(|i| {
            if i == 0 {
                "pool".to_string()
            } else {
                format!("pool-{i}")
            }
        })
        .find(|n| !existing.contains(n))
        .unwrap_or_default();
    let name = entry(&proposed);
    let folder = entry(&base.join(&proposed).to_string_lossy());
    let browse = gtk::Button::with_mnemonic(&gettext("_Browse…"));
    let folder_row = gtk::Box::builder().spacing(6).build();
    folder_row.append(&folder);
    folder_row.append(&browse);
    shell.row(&gettext("_Name"), &name);
    shell.row_for(&gettext("_Folder"), &folder_row, &folder);
    folder.set_hexpand(true);
    shell.extra.append(
        &gtk::Label::builder()
            .label(gettext(
                "The folder is created if it does not exist. Volumes are the files in it.",
            ))
            .xalign(0.0)
            .wrap(true)
            .css_classes(["dim-label", "caption"])
            .build(),
    );
    // The folder follows the name until it is edited by hand.
    let following = Rc::new(Cell::new(true));
    let setting = Rc::new(Cell::new(false));
    {
        let folder = folder.clone();
        let following = following.clone();
        let setting = setting.clone();
        name.connect_changed(move |name| {
            if following.get() {
                setting.set(true);
                folder.set_text(&base.join(name.text().trim()).to_string_lossy());
                setting.set(false);
            }
        });
    }
    folder.connect_changed(move |_| {
        if !setting.get() {
            following.set(false);
        }
    });
    {
        let window = shell.window.clone();
        let folder = folder.clone();
        browse.connect_clicked(move |_| {
            choose_into(
                Some(window.upcast_ref()),
                &gettext("Choose the Pool’s Folder"),
                Pick::Folder,
                &folder,
            );
        });
    }
    let on_added = Rc::new(on_added);
    {
        let shell_ref = shell.clone();
        let name = name.clone();
        let folder = folder.clone();
        shell.action.connect_clicked(move |_| {
            let shell = shell_ref.clone();
            let pool = name.text().trim().to_string();
            if shell
                .accept(check_pool_name(&pool, &existing), name_problem_text)
                .is_none()
            {
                return;
            }
            let path = PathBuf::from(folder.text().trim());
            if !path.is_absolute() {
                shell.show_error(&gettext(
                    "Enter the folder as a full path, starting with “/”.",
                ));
                return;
            }
            let on_added = on_added.clone();
            let pool_name = pool.clone();
            shell.submit(
                move || {
                    let store = PoolStore::open().map_err(|e| pool_error_text(&e))?;
                    add_dir_pool(&store, &pool, &path)
                        .map(|_| ())
                        .map_err(|e| add_pool_error_text(&e))
                },
                move || on_added(pool_name),
            );
        });
    }
    shell.window.present();
    name.grab_focus();
}

/// New Volume in `pool`: name, format, capacity, preallocation and an
/// optional backing volume; created on a worker thread with a progress bar.
pub fn new_volume(
    parent: Option<&gtk::Window>,
    pool: &str,
    volumes: &[VolumeDef],
    available: Option<u64>,
    on_created: impl Fn(String) + 'static,
) {
    let shell = Shell::new(parent, &gettext("New Storage Volume"), &gettext("C_reate"));
    let formats = [VolumeFormat::Qcow2, VolumeFormat::Raw];
    let name = entry(&suggest_volume_name("volume", VolumeFormat::Qcow2, volumes));
    let format = gtk::DropDown::from_strings(&formats.map(VolumeFormat::name));
    // The preallocations the format allows, the dropdown's items in order.
    let prealloc_choices = Rc::new(RefCell::new(Prealloc::choices(VolumeFormat::Qcow2)));
    let prealloc_items = gtk::StringList::new(&[]);
    let prealloc = gtk::DropDown::new(Some(prealloc_items.clone()), gtk::Expression::NONE);
    // The pool's volumes a qcow2 may be based on.
    let bases: Vec<VolumeDef> = volumes
        .iter()
        .filter(|v| {
            matches!(
                v.target.format,
                Some(VolumeFormat::Qcow2) | Some(VolumeFormat::Raw)
            )
        })
        .cloned()
        .collect();
    let mut backing_items = vec![gettext("None")];
    backing_items.extend(bases.iter().map(|v| v.name.clone()));
    let backing = string_dropdown(&backing_items);
    shell.row(&gettext("_Name"), &name);
    shell.row(&gettext("F_ormat"), &format);
    let capacity = CapacityField::add(&shell, &gettext("_Capacity"), "20", SizeUnit::GiB);
    shell.row(&gettext("Pre_allocation"), &prealloc);
    shell.row(&gettext("_Backing volume"), &backing);
    if let Some(available) = available {
        shell.extra.append(
            &gtk::Label::builder()
                .label(gettext_f(
                    "{size} free in the pool “{pool}”",
                    &[("size", &human_size(available)), ("pool", pool)],
                ))
                .xalign(0.0)
                .css_classes(["dim-label", "caption"])
                .build(),
        );
    }
    let progress = gtk::ProgressBar::builder()
        .show_text(true)
        .visible(false)
        .build();
    shell.extra.append(&progress);

    let selected_format = {
        let format = format.clone();
        move || chosen(&formats, &format, VolumeFormat::Qcow2)
    };
    let selected_prealloc = {
        let prealloc = prealloc.clone();
        let choices = prealloc_choices.clone();
        move || chosen(&choices.borrow(), &prealloc, Prealloc::Off)
    };
    // A backing volume only under a qcow2 that preallocates nothing.
    let sync_backing = {
        let selected_format = selected_format.clone();
        let selected_prealloc = selected_prealloc.clone();
        let backing = backing.clone();
        move || {
            let qcow2 = selected_format() == VolumeFormat::Qcow2;
            if !qcow2 {
                backing.set_selected(0);
            }
            backing.set_sensitive(qcow2 && selected_prealloc() == Prealloc::Off);
        }
    };
    // The format decides the preallocations offered (raw has no metadata)
    // and the name's extension.
    let sync_format = {
        let selected_format = selected_format.clone();
        let selected_prealloc = selected_prealloc.clone();
        let sync_backing = sync_backing.clone();
        let prealloc = prealloc.clone();
        let name = name.clone();
        move || {
            let format = selected_format();
            let kept = selected_prealloc().kept_for(format);
            let choices = Prealloc::choices(format);
            let labels: Vec<String> = choices.iter().map(|p| prealloc_label(*p)).collect();
            let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
            *prealloc_choices.borrow_mut() = choices.clone();
            prealloc_items.splice(0, prealloc_items.n_items(), &labels);
            let index = choices.iter().position(|p| *p == kept).unwrap_or(0);
            prealloc.set_selected(index as u32);
            sync_backing();
            let renamed = rename_for_format(name.text().as_str(), format);
            if renamed != name.text().as_str() {
                name.set_text(&renamed);
            }
        }
    };
    sync_format();
    format.connect_selected_notify(move |_| sync_format());
    {
        let sync_backing = sync_backing.clone();
        prealloc.connect_selected_notify(move |_| sync_backing());
    }

    let focus = name.clone();
    let on_created = Rc::new(on_created);
    let existing = volumes.to_vec();
    let pool = pool.to_string();
    {
        let shell_ref = shell.clone();
        shell.action.connect_clicked(move |_| {
            let shell = shell_ref.clone();
            let Some(bytes) = capacity.bytes(&shell) else {
                return;
            };
            let backing_path = (backing.selected() as usize)
                .checked_sub(1)
                .and_then(|i| bases.get(i))
                .map(|v| v.target.path.clone());
            let request = VolumeRequest {
                name: name.text().trim().to_string(),
                format: selected_format(),
                capacity: bytes,
                prealloc: selected_prealloc(),
                backing: backing_path,
            };
            let Some(spec) = shell.accept(request.to_new_volume(&existing, available), |p| {
                request_problem_text(&p)
            }) else {
                return;
            };
            shell.clear_error();
            shell.set_busy(true);
            progress.set_fraction(0.0);
            progress.set_text(Some(&gettext_f(
                "Creating “{name}”…",
                &[("name", &spec.name)],
            )));
            progress.set_visible(true);
            let pool = pool.clone();
            let on_created = on_created.clone();
            let created_name = spec.name.clone();
            let bar = progress.clone();
            let bar_done = progress.clone();
            background_with_progress(
                move |report| {
                    let store = PoolStore::open().map_err(|e| pool_error_text(&e))?;
                    let pool = store.get(&pool).map_err(|e| pool_error_text(&e))?;
                    pool.create_volume(&spec, report)
                        .map(|_| ())
                        .map_err(|e| pool_error_text(&e))
                },
                move |fraction| bar.set_fraction(fraction),
                move |result: Result<(), String>| {
                    shell.set_busy(false);
                    match result {
                        Ok(()) => {
                            bar_done.set_fraction(1.0);
                            shell.close();
                            on_created(created_name);
                        }
                        Err(text) => {
                            bar_done.set_visible(false);
                            shell.show_error(&text);
                        }
                    }
                },
            );
        });
    }
    shell.window.present();
    focus.grab_focus();
}

/// Resize: the new capacity of `volume`; qcow2 only grows, raw may shrink.
pub fn resize_volume(
    parent: Option<&gtk::Window>,
    pool: &str,
    volume: &VolumeDef,
    on_resized: impl Fn(String) + 'static,
) {
    let shell = Shell::new(
        parent,
        &gettext_f("Resize “{name}”", &[("name", &volume.name)]),
        &gettext("_Resize"),
    );
    let current = volume.capacity;
    let unit_now = if current >= 1 << 40 {
        SizeUnit::TiB
    } else if current >= 1 << 30 {
        SizeUnit::GiB
    } else {
        SizeUnit::MiB
    };
    let shown = current as f64 / unit_now.bytes() as f64;
    let capacity = CapacityField::add(
        &shell,
        &gettext("_New capacity"),
        &format!("{}", (shown * 100.0).round() / 100.0),
        unit_now,
    );
    let format = volume.target.format;
    let hint = if format == Some(VolumeFormat::Raw) {
        gettext_f(
            "Now {size}. A raw volume may also shrink: data past its new end is lost.",
            &[("size", &human_size(current))],
        )
    } else {
        gettext_f(
            "Now {size}. The guest sees the new space after it restarts; grow its partitions inside it.",
            &[("size", &human_size(current))],
        )
    };
    shell.extra.append(
        &gtk::Label::builder()
            .label(hint)
            .xalign(0.0)
            .wrap(true)
            .css_classes(["dim-label", "caption"])
            .build(),
    );
    let focus = capacity.number.clone();
    let on_resized = Rc::new(on_resized);
    let pool = pool.to_string();
    let name = volume.name.clone();
    {
        let shell_ref = shell.clone();
        shell.action.connect_clicked(move |_| {
            let shell = shell_ref.clone();
            let Some(bytes) = capacity.bytes(&shell) else {
                return;
            };
            let Some(flags) =
                shell.accept(check_resize(format, current, bytes), resize_problem_text)
            else {
                return;
            };
            let pool = pool.clone();
            let name = name.clone();
            let on_resized = on_resized.clone();
            let resized = name.clone();
            shell.submit(
                move || {
                    let store = PoolStore::open().map_err(|e| pool_error_text(&e))?;
                    let pool = store.get(&pool).map_err(|e| pool_error_text(&e))?;
                    pool.resize_volume(&name, bytes, flags, &mut |_, _| {})
                        .map(|_| ())
                        .map_err(|e| pool_error_text(&e))
                },
                move || on_resized(resized),
            );
        });
    }
    shell.window.present();
    focus.grab_focus();
}
