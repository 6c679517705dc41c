//! The window's preferences as plain data, GTK-free: what the
//! Preferences dialog sets and the window, the console and the New VM
//! wizard read. The window keeps them in GSettings (`src/ui/settings.rs`,
//! schema `data/dev.vireo.Vireo.gschema.xml`, whose defaults these
//! mirror); the command line never reads them.
//!
//! Before GSettings they were kept as JSON (`preferences.json` in the
//! config directory); [`Preferences::take_legacy`] reads that file once so
//! the window can carry the choices over, and removes it.

use serde::Deserialize;

/// The key combinations that release the console's keyboard grab, as
/// the schema's `release-keys` enum names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ReleaseKeys {
    /// Ctrl+Alt, as virt-manager and GNOME Boxes.
    #[default]
    CtrlAlt,
    /// Ctrl+Alt+G, for guests that use Ctrl+Alt themselves.
    CtrlAltG,
    /// The right Ctrl key alone, as VirtualBox's host key.
    RightCtrl,
}

impl ReleaseKeys {
    pub const ALL: [ReleaseKeys; 3] = [
        ReleaseKeys::CtrlAlt,
        ReleaseKeys::CtrlAltG,
        ReleaseKeys::RightCtrl,
    ];

    /// The schema's nick for this choice.
    pub fn nick(self) -> &'static str {
        match self {
            ReleaseKeys::CtrlAlt => "ctrl-alt",
            ReleaseKeys::CtrlAltG => "ctrl-alt-g",
            ReleaseKeys::RightCtrl => "right-ctrl",
        }
    }

    pub fn from_nick(nick: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.nick() == nick)
    }

    /// The keys as a keyboard shows them (not translated: key caps).
    pub fn label(self) -> &'static str {
        match self {
            ReleaseKeys::CtrlAlt => "Ctrl+Alt",
            ReleaseKeys::CtrlAltG => "Ctrl+Alt+G",
            ReleaseKeys::RightCtrl => "Right Ctrl",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preferences {
    /// The pool the New VM wizard creates disks in.
    pub default_pool: String,
    /// The address new VMs' VNC servers listen on.
    pub vnc_listen: String,
    /// Ask before Force Off.
    pub confirm_force_off: bool,
    /// Ask before Delete.
    pub confirm_delete: bool,
    /// Scale the console to the window (else 1:1).
    pub console_scale_to_fit: bool,
    pub release_keys: ReleaseKeys,
}

impl Default for Preferences {
    fn default() -> Self {
        Preferences {
            default_pool: crate::storage::pools::DEFAULT_POOL.into(),
            vnc_listen: "127.0.0.1".into(),
            confirm_force_off: true,
            confirm_delete: true,
            console_scale_to_fit: true,
            release_keys: ReleaseKeys::CtrlAlt,
        }
    }
}

/// What `preferences.json` held.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Legacy {
    pub confirm_force_off: Option<bool>,
    pub console_scale_to_fit: Option<bool>,
}

fn legacy_path() -> std::path::PathBuf {
    crate::paths::config_dir().join("preferences.json")
}

impl Preferences {
    /// Reads and removes the old `preferences.json`, if there is one. A
    /// file that does not parse is removed too: its defaults are these.
    pub fn take_legacy() -> Option<Legacy> {
        let path = legacy_path();
        let text = std::fs::read_to_string(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        Self::parse_legacy(&text)
    }

    fn parse_legacy(text: &str) -> Option<Legacy> {
        serde_json::from_str(text).ok()
    }

    /// An address a VNC server can listen on: an IPv4 or IPv6 address
    /// (`0.0.0.0` for every interface), not a host name to resolve.
    pub fn valid_listen(address: &str) -> bool {
        address.trim().parse::<std::net::IpAddr>().is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_old_json_is_read_with_missing_fields_left_out() {
        let legacy = Preferences::parse_legacy(r#"{"confirm_force_off": false, "x": 1}"#).unwrap();
        assert_eq!(legacy.confirm_force_off, Some(false));
        assert_eq!(legacy.console_scale_to_fit, None);
        assert_eq!(Preferences::parse_legacy("not json"), None);
    }

    #[test]
    fn release_keys_round_trip_through_their_nicks() {
        for keys in ReleaseKeys::ALL {
            assert_eq!(ReleaseKeys::from_nick(keys.nick()), Some(keys));
        }
        assert_eq!(ReleaseKeys::from_nick("shift"), None);
    }

    #[test]
    fn listen_addresses_are_ip_addresses() {
        assert!(Preferences::valid_listen("127.0.0.1"));
        assert!(Preferences::valid_listen("0.0.0.0"));
        assert!(Preferences::valid_listen("::1"));
        assert!(!Preferences::valid_listen("localhost"));
        assert!(!Preferences::valid_listen(""));
    }

    /// The schema's defaults are these (the window falls back to them
    /// when the schema cannot be found).
    #[test]
    fn defaults_match_the_schema() {
        let schema = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("data/dev.vireo.Vireo.gschema.xml"),
        )
        .unwrap();
        let default_of = |key: &str| {
            let start = schema.find(&format!("<key name=\"{key}\"")).unwrap();
            let rest = &schema[start..];
            let open = rest.find("<default>").unwrap() + "<default>".len();
            let close = rest.find("</default>").unwrap();
            rest[open..close].trim().trim_matches('\'').to_string()
        };
        let p = Preferences::default();
        assert_eq!(default_of("default-pool"), p.default_pool);
        assert_eq!(default_of("vnc-listen"), p.vnc_listen);
        assert_eq!(
            default_of("confirm-force-off"),
            p.confirm_force_off.to_string()
        );
        assert_eq!(default_of("confirm-delete"), p.confirm_delete.to_string());
        assert_eq!(
            default_of("console-scale-to-fit"),
            p.console_scale_to_fit.to_string()
        );
        assert_eq!(default_of("release-keys"), p.release_keys.nick());
    }
}
