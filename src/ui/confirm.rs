//! The question every destructive action asks first: a modal dialog with
//! Cancel and the action's own verb, shown in the destructive style, that
//! Escape or closing cancels (GNOME HIG, "Dialogs").

use adw::prelude::*;

use super::gettext;

/// A dialog over `parent` asking `heading` / `body`, with Cancel and
/// `verb` (a mnemonic label) whose response is `id`. The caller connects
/// the response and presents it.
pub(crate) fn destructive(
    parent: Option<&gtk::Window>,
    heading: &str,
    body: &str,
    id: &str,
    verb: &str,
) -> adw::MessageDialog {
    let dialog = adw::MessageDialog::builder()
        .modal(true)
        .heading(heading)
        .body(body)
        .build();
    dialog.set_transient_for(parent);
    dialog.add_response("cancel", &gettext("_Cancel"));
    dialog.add_response(id, verb);
    dialog.set_response_appearance(id, adw::ResponseAppearance::Destructive);
    dialog.set_close_response("cancel");
    dialog
}
