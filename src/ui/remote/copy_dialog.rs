//! Copy to…: which host (and pool) a local VM goes to, the copy itself on
//! a thread of its own (disks can take minutes), and the report — each
//! disk copied or why not, and for a copy into Vireo what it would not run.

use adw::prelude::*;

use super::super::gettext;
use super::super::i18n::gettext_f;
use super::worker::{CopyOutcome, Event, SharedEngine};
use crate::connection::copy::{copy_vm, DiskOutcome};
use crate::connection::local::LocalEngine;

/// The pool offered first: libvirt's and Vireo's usual one (a name, not
/// a word to translate).
const DEFAULT_POOL: &str = "default";

/// Asks where to copy local VM `name` among `hosts` (title, URI, engine),
/// then copies it.
pub fn ask_and_copy_out(
    window: &adw::ApplicationWindow,
    toasts: &adw::ToastOverlay,
    name: &str,
    hosts: Vec<(String, String, SharedEngine)>,
    events: async_channel::Sender<Event>,
) {
    let titles: Vec<String> = hosts
        .iter()
        .map(|(t, uri, _)| format!("{t} ({uri})"))
        .collect();
    let host_choice =
        gtk::DropDown::from_strings(&titles.iter().map(String::as_str).collect::<Vec<_>>());
    let pool = gtk::Entry::builder()
        .text(DEFAULT_POOL)
        .placeholder_text(gettext("Storage pool on the host"))
        .build();
    let fields = gtk::Box::builder()
        .orientation(gtk::Orientation::Vertical)
        .spacing(6)
        .build();
    fields.append(&host_choice);
    fields.append(&pool);
    let dialog = adw::MessageDialog::builder()
        .transient_for(window)
        .modal(true)
        .heading(gettext_f("Copy “{name}” to…", &[("name", name)]))
        .body(gettext(
            "The VM's definition and its disk images are copied to the host; the VM here stays as it is.",
        ))
        .extra_child(&fields)
        .build();
    dialog.add_response("cancel", &gettext("_Cancel"));
    dialog.add_response("copy", &gettext("_Copy"));
    dialog.set_response_appearance("copy", adw::ResponseAppearance::Suggested);
    dialog.set_default_response(Some("copy"));
    let name = name.to_string();
    let toasts = toasts.clone();
    dialog.connect_response(None, move |_, response| {
        if response != "copy" {
            return;
        }
        let Some((title, _, engine)) = hosts.get(host_choice.selected() as usize).cloned() else {
            return;
        };
        let pool = pool.text().trim().to_string();
        toasts.add_toast(adw::Toast::new(&gettext_f(
            "Copying “{name}” to {host}…",
            &[("name", &name), ("host", &title)],
        )));
        let name = name.clone();
        let events = events.clone();
        std::thread::spawn(move || {
            let result = copy_vm(
                &LocalEngine::new(),
                engine.as_ref(),
                &name,
                &pool,
                &mut |_, _, _| {},
            );
            let _ = events.send_blocking(Event::Copied(CopyOutcome {
                name,
                to: title,
                result,
            }));
        });
    });
    dialog.present();
}

/// Copies a host's VM `name` into Vireo's store, its disks into `pool`.
pub fn copy_in(
    toasts: &adw::ToastOverlay,
    engine: SharedEngine,
    name: String,
    pool: String,
    events: async_channel::Sender<Event>,
) {
    toasts.add_toast(adw::Toast::new(&gettext_f(
        "Copying “{name}” to this computer…",
        &[("name", &name)],
    )));
    std::thread::spawn(move || {
        let local = LocalEngine::new();
        let result = copy_vm(engine.as_ref(), &local, &name, &pool, &mut |_, _, _| {});
        let to = gettext("This Computer");
        let _ = events.send_blocking(Event::Copied(CopyOutcome { name, to, result }));
    });
}

/// Says what a copy did.
pub fn report(window: &adw::ApplicationWindow, outcome: CopyOutcome) {
    let (heading, body) = match &outcome.result {
        Err(e) => (
            gettext_f("“{name}” Was Not Copied", &[("name", &outcome.name)]),
            super::error_text(e),
        ),
        Ok(report) => {
            let mut lines = vec![gettext_f(
                "“{name}” is now on {host}.",
                &[("name", &report.name), ("host", &outcome.to)],
            )];
            for disk in &report.disks {
                lines.push(match disk {
                    DiskOutcome::Copied {
                        target, to, bytes, ..
                    } => gettext_f(
                        "Disk {target}: copied to {path} ({size}).",
                        &[
                            ("target", target),
                            ("path", to),
                            ("size", &crate::storage::pools::pretty_capacity(*bytes)),
                        ],
                    ),
                    DiskOutcome::NotCopied { target, reason } => gettext_f(
                        "Disk {target}: not copied — {reason}",
                        &[("target", target), ("reason", reason)],
                    ),
                });
            }
            if !report.unsupported.is_empty() {
                lines.push(gettext("Vireo will run it without:"));
                lines.extend(report.unsupported.iter().map(|s| format!("• {s}")));
            }
            (
                gettext_f("“{name}” Copied", &[("name", &outcome.name)]),
                lines.join("\n"),
            )
        }
    };
    let dialog = adw::MessageDialog::builder()
        .transient_for(window)
        .modal(true)
        .heading(heading)
        .body(body)
        .build();
    dialog.add_response("close", &gettext("_Close"));
    dialog.present();
}
