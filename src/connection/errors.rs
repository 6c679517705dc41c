//! What went wrong on a connection, in a person's terms: a kind the window
//! turns into a translated sentence, and the engine's own words kept as
//! the detail (libvirt's message, the path that was missing).

use std::fmt;

/// What kind of failure, as a person would tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The host refused the credentials (SSH key, SASL, polkit).
    AuthRefused,
    /// The host, its SSH server or its libvirt daemon could not be reached.
    Unreachable,
    /// The connection worked and is gone now.
    ConnectionLost,
    /// The host did not answer in time.
    TimedOut,
    /// The host's libvirt does not offer what was asked (too old, or
    /// another hypervisor).
    Unsupported,
    NoDomain,
    NoPool,
    NoVolume,
    NoNetwork,
    /// The domain is not in a state that allows it (already running…).
    InvalidState,
    /// The definition was refused.
    InvalidDefinition,
    Other,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineError {
    pub kind: ErrorKind,
    /// The engine's own words.
    pub detail: String,
}

impl EngineError {
    pub fn new(kind: ErrorKind, detail: impl Into<String>) -> Self {
        EngineError {
            kind,
            detail: detail.into(),
        }
    }

    pub fn other(detail: impl Into<String>) -> Self {
        Self::new(ErrorKind::Other, detail)
    }

    /// The sentence that leads the message (English; the window has its
    /// own translated ones for each kind).
    pub fn summary(&self) -> &'static str {
        match self.kind {
            ErrorKind::AuthRefused => "The host refused the login",
            ErrorKind::Unreachable => "The host cannot be reached",
            ErrorKind::ConnectionLost => "The connection to the host was lost",
            ErrorKind::TimedOut => "The host did not answer in time",
            ErrorKind::Unsupported => "The host's libvirt does not offer this (it may be too old)",
            ErrorKind::NoDomain => "There is no such domain",
            ErrorKind::NoPool => "There is no such storage pool",
            ErrorKind::NoVolume => "There is no such volume",
            ErrorKind::NoNetwork => "There is no such network",
            ErrorKind::InvalidState => "The domain is not in a state that allows this",
            ErrorKind::InvalidDefinition => "The definition was refused",
            ErrorKind::Other => "",
        }
    }
}

impl fmt::Display for EngineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.summary(), self.detail.is_empty()) {
            ("", _) => write!(f, "{}", self.detail),
            (summary, true) => write!(f, "{summary}"),
            (summary, false) => write!(f, "{summary}: {}", self.detail),
        }
    }
}

impl std::error::Error for EngineError {}

impl From<String> for EngineError {
    fn from(detail: String) -> Self {
        EngineError::other(detail)
    }
}
