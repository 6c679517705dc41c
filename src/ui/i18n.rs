//! Translations through gettext: the `vireo` text domain, looked up in
//! `VIREO_LOCALEDIR` if given at build time, else in the install prefix's
//! `share/locale` (beside the binary's `bin/`, where `make install` puts the
//! catalogues), else beside a checkout's `po/` build output, else the
//! system's locale directory.

use std::path::PathBuf;

pub use gettextrs::{gettext, ngettext};

const DOMAIN: &str = "vireo";

fn locale_dir() -> PathBuf {
    if let Some(dir) = option_env!("VIREO_LOCALEDIR") {
        return PathBuf::from(dir);
    }
    if let Some(installed) = crate::paths::installed_share_dir()
        .map(|share| share.join("locale"))
        .filter(|dir| dir.is_dir())
    {
        return installed;
    }
    let built = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("build/locale");
    if built.is_dir() {
        return built;
    }
    PathBuf::from("/usr/share/locale")
}

/// Sets the locale from the environment and binds the text domain. Also
/// called by the command line before it prints a translated message.
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
