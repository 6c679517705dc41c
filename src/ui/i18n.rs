//! Translations through gettext: the `vireo` text domain, looked up in
//! `LOCALEDIR` as built (`make install` sets it), else beside a checkout's
//! `po/` build output, else the system's locale directory.

use std::path::PathBuf;

pub use gettextrs::{gettext, ngettext};

const DOMAIN: &str = "vireo";

fn locale_dir() -> PathBuf {
    if let Some(dir) = option_env!("VIREO_LOCALEDIR") {
        return PathBuf::from(dir);
    }
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("build/locale");
    if built.is_dir() {
        return built;
    }
    PathBuf::from("/usr/share/locale")
}

/// Sets the locale from the environment and binds the text domain.
pub fn init() {
    // SAFETY: called once on the main thread before GTK or any other
    // thread starts, so nothing reads the locale while it changes.
    unsafe {
        gettextrs::setlocale(gettextrs::LocaleCategory::LcAll, "");
    }
    let _ = gettextrs::bindtextdomain(DOMAIN, locale_dir());
    let _ = gettextrs::bind_textdomain_codeset(DOMAIN, "UTF-8");
    let _ = gettextrs::textdomain(DOMAIN);
}

/// `gettext` with `{name}` placeholders filled in after translation, so
/// translators can move them.
pub fn gettext_f(msgid: &str, args: &[(&str, &str)]) -> String {
    let mut text = gettext(msgid);
    for (name, value) in args {
        text = text.replace(&format!("{{{name}}}"), value);
    }
    text
}
