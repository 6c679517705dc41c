//! The window's preferences, kept as JSON in the config directory
//! (`preferences.json`) so they survive restarts. A missing or unreadable
//! file gives the defaults; a write goes through the atomic writer.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Preferences {
    /// Ask before Force Off.
    pub confirm_force_off: bool,
    /// Scale the console to the window (else 1:1).
    pub console_scale_to_fit: bool,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            confirm_force_off: true,
            console_scale_to_fit: true,
        }
    }
}

fn path() -> std::path::PathBuf {
    crate::paths::config_dir().join("preferences.json")
}

impl Preferences {
    pub fn load() -> Self {
        std::fs::read_to_string(path())
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    pub fn save(&self) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())?;
        crate::store::atomic_write(&path(), text.as_bytes()).map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_or_missing_fields_take_the_defaults() {
        let p: Preferences =
            serde_json::from_str(r#"{"confirm_force_off": false, "x": 1}"#).unwrap();
        assert!(!p.confirm_force_off);
        assert!(p.console_scale_to_fit);
    }
}
