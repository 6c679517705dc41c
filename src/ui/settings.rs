//! The window's preferences and state in GSettings (schema
//! `dev.vireo.Vireo`, `data/dev.vireo.Vireo.gschema.xml`).
//!
//! The schema is looked up where GLib looks (installed, or
//! `GSETTINGS_SCHEMA_DIR`); a binary run from the build tree falls back to
//! the copy build.rs compiled and embedded, written out to the runtime
//! directory. Without either the window still runs, on the defaults of
//! [`Preferences`], and says so in the log.
//!
//! With `VIREO_HOME` set (tests, the demo script) and no
//! `GSETTINGS_BACKEND` chosen, settings live in a key file inside that
//! home, so separate homes never share state and the user's dconf is left
//! alone.

use gtk::gio;
use gtk::prelude::*;

use crate::app::preferences::{Preferences, ReleaseKeys};

/// Every key the window reads; an installed schema lacking one (an older
/// Vireo's) is not used, as reading a missing key aborts.
const KEYS: &[&str] = &[
    "window-width",
    "window-height",
    "window-maximized",
    "last-selected-vm",
    "default-pool",
    "vnc-listen",
    "confirm-force-off",
    "confirm-delete",
    "console-scale-to-fit",
    "release-keys",
];

/// The schema as build.rs compiled it (empty when it could not).
const COMPILED: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/schemas/gschemas.compiled"));

/// The window's size and whether it was maximized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowState {
    pub width: i32,
    pub height: i32,
    pub maximized: bool,
}

/// The window's settings, or nothing when no schema was found (then
/// reads give the defaults and writes are dropped).
#[derive(Clone)]
pub struct Settings(Option<gio::Settings>);

thread_local! {
    static SETTINGS: Settings = Settings::open();
}

/// The settings, opened on first use (on the GTK thread).
pub fn get() -> Settings {
    SETTINGS.with(Settings::clone)
}

impl Settings {
    fn open() -> Self {
        let Some(schema) = find_schema() else {
            tracing::warn!(
                "GSettings schema {} not found; using the default preferences, which are not saved",
                super::APP_ID
            );
            return Settings(None);
        };
        let settings = match home_keyfile() {
            Some(file) => {
                let backend = gio::keyfile_settings_backend_new(
                    &file.to_string_lossy(),
                    "/dev/vireo/Vireo/",
                    Some("vireo"),
                );
                gio::Settings::new_full(&schema, Some(&backend), None)
            }
            None => gio::Settings::new_full(&schema, None::<&gio::SettingsBackend>, None),
        };
        let settings = Settings(Some(settings));
        settings.migrate_legacy();
        settings
    }

    /// Carries `preferences.json`'s choices over, once.
    fn migrate_legacy(&self) {
        let Some(legacy) = Preferences::take_legacy() else {
            return;
        };
        if let Some(on) = legacy.confirm_force_off {
            self.set("confirm-force-off", on);
        }
        if let Some(on) = legacy.console_scale_to_fit {
            self.set("console-scale-to-fit", on);
        }
        tracing::info!("preferences.json carried over into GSettings and removed");
    }

    pub fn preferences(&self) -> Preferences {
        let Some(s) = &self.0 else {
            return Preferences::default();
        };
        Preferences {
            default_pool: s.string("default-pool").into(),
            vnc_listen: s.string("vnc-listen").into(),
            confirm_force_off: s.boolean("confirm-force-off"),
            confirm_delete: s.boolean("confirm-delete"),
            console_scale_to_fit: s.boolean("console-scale-to-fit"),
            release_keys: ReleaseKeys::from_nick(&s.string("release-keys")).unwrap_or_default(),
        }
    }

    pub fn window_state(&self) -> WindowState {
        match &self.0 {
            Some(s) => WindowState {
                width: s.int("window-width"),
                height: s.int("window-height"),
                maximized: s.boolean("window-maximized"),
            },
            None => WindowState {
                width: 1100,
                height: 720,
                maximized: false,
            },
        }
    }

    pub fn save_window_state(&self, state: WindowState) {
        self.set("window-width", state.width);
        self.set("window-height", state.height);
        self.set("window-maximized", state.maximized);
        // The app may exit right after the window closes.
        gio::Settings::sync();
    }

    /// The VM selected when the window last closed, if any.
    pub fn last_selected_vm(&self) -> Option<String> {
        let name: String = self.0.as_ref()?.string("last-selected-vm").into();
        (!name.is_empty()).then_some(name)
    }

    /// Writes `key`; a refused write (a value outside the schema's range,
    /// a read-only backend) is logged, as the window has no better place
    /// to show it.
    pub fn set(&self, key: &str, value: impl Into<gtk::glib::Variant>) {
        if let Some(s) = &self.0 {
            if let Err(e) = s.set_value(key, &value.into()) {
                tracing::warn!("setting {key} could not be saved: {e}");
            }
        }
    }
}

/// The key file settings live in when `VIREO_HOME` isolates this run and
/// the environment chose no backend.
fn home_keyfile() -> Option<std::path::PathBuf> {
    std::env::var_os("VIREO_HOME").filter(|h| !h.is_empty())?;
    if std::env::var_os("GSETTINGS_BACKEND").is_some() {
        return None;
    }
    Some(crate::paths::config_dir().join("settings.ini"))
}

fn find_schema() -> Option<gio::SettingsSchema> {
    let complete = |schema: &gio::SettingsSchema| KEYS.iter().all(|k| schema.has_key(k));
    if let Some(schema) = gio::SettingsSchemaSource::default()
        .and_then(|source| source.lookup(super::APP_ID, true))
        .filter(complete)
    {
        return Some(schema);
    }
    if COMPILED.is_empty() {
        return None;
    }
    // GLib reads compiled schemas from a folder only: write the embedded
    // copy to one of our own.
    let dir = crate::paths::runtime_dir().join("schemas");
    let file = dir.join("gschemas.compiled");
    if std::fs::read(&file).ok().as_deref() != Some(COMPILED) {
        if let Err(e) =
            std::fs::create_dir_all(&dir).and_then(|_| crate::fsutil::atomic_write(&file, COMPILED))
        {
            tracing::warn!(
                "cannot write the GSettings schema to {}: {e}",
                dir.display()
            );
            return None;
        }
    }
    match gio::SettingsSchemaSource::from_directory(&dir, None, false) {
        Ok(source) => source.lookup(super::APP_ID, false).filter(complete),
        Err(e) => {
            tracing::warn!("the embedded GSettings schema does not load: {e}");
            None
        }
    }
}
