//! Logging helpers shared by every module.
//!
//! A guest controls how often a device sees bad input, so warnings caused by
//! guest behaviour go through [`guest_warn!`], which is rate-limited per call
//! site: the first few are logged, then one in every thousand.

use std::sync::atomic::{AtomicU64, Ordering};

/// How many warnings of one call site are always logged before thinning out.
const ALWAYS_LOGGED: u64 = 10;
/// After [`ALWAYS_LOGGED`], one warning in this many is logged.
const THEN_ONE_IN: u64 = 1000;

/// `error` and each of its causes, joined by ": " (a message that says both
/// what failed and why, where `Display` alone gives only the outer error).
pub fn with_causes(error: &(dyn std::error::Error + 'static)) -> String {
    let mut message = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        message.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    message
}

/// Per-call-site counter behind [`guest_warn!`].
#[derive(Default)]
pub struct RateLimit {
    seen: AtomicU64,
}

impl RateLimit {
    pub const fn new() -> Self {
        Self {
            seen: AtomicU64::new(0),
        }
    }

    /// Counts one occurrence; returns `Some(n)` (the running count) when this
    /// occurrence should be logged.
    pub fn admit(&self) -> Option<u64> {
        let n = self.seen.fetch_add(1, Ordering::Relaxed) + 1;
        (n <= ALWAYS_LOGGED || n % THEN_ONE_IN == 0).then_some(n)
    }
}

/// `warn!` for things a guest did wrong (bad port, bad descriptor, bad
/// command): rate-limited per call site so a hostile guest cannot flood the
/// log.
#[macro_export]
macro_rules! guest_warn {
    ($($arg:tt)+) => {{
        static LIMIT: $crate::logging::RateLimit = $crate::logging::RateLimit::new();
        if let Some(n) = LIMIT.admit() {
            tracing::warn!(occurrence = n, $($arg)+);
        }
    }};
}

/// Installs the process-wide tracing subscriber; `RUST_LOG` (or
/// `VIREO_LOG`) selects what is shown, `warn` by default.
pub fn init() {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("VIREO_LOG")
        .ok()
        .and_then(|s| EnvFilter::try_new(s).ok())
        .or_else(|| EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_admits_first_ten_then_one_in_a_thousand() {
        let limit = RateLimit::new();
        let admitted = (0..5000).filter(|_| limit.admit().is_some()).count();
        assert_eq!(admitted, 10 + 5);
    }
}
