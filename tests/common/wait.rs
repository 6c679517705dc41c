//! The one wait loop of the tests. Every wait is bounded and, when it runs
//! out, says what it saw last (serial output, a screen's text, a state),
//! so a failure explains itself.
//!
//! `look` is called until it returns `Ok`; each `Err` carries what it saw.
//! It may panic itself when waiting longer cannot help (the VM exited).

use std::time::{Duration, Instant};

/// Polls `look` every `every` until it returns `Ok(value)`; after
/// `timeout`, `Err` with what the last look saw.
pub fn poll<T>(
    timeout: Duration,
    every: Duration,
    mut look: impl FnMut() -> Result<T, String>,
) -> Result<T, String> {
    let deadline = Instant::now() + timeout;
    loop {
        match look() {
            Ok(value) => return Ok(value),
            Err(seen) if Instant::now() >= deadline => return Err(seen),
            Err(_) => std::thread::sleep(every),
        }
    }
}

/// [`poll`], failing the test with `what` was waited for and what the last
/// look saw.
pub fn until<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    look: impl FnMut() -> Result<T, String>,
) -> T {
    poll(timeout, every, look)
        .unwrap_or_else(|seen| panic!("timed out after {timeout:?} waiting for {what}; {seen}"))
}
