//! A bound on every call to a remote host. libvirt's client library
//! blocks (a dead host, an SSH password prompt nobody sees, a daemon stuck
//! on a lock), so a caller that must not hang runs the call on its own
//! thread and stops waiting after a deadline. The thread is left to finish
//! or fail by itself (libvirt's keepalive ends it once the connection is
//! declared dead); the caller gets [`ErrorKind::TimedOut`].

use std::time::Duration;

use super::{EngineError, EngineResult, ErrorKind};

/// How long a window's call may take: opening an SSH connection to a
/// slow host fits; a hung one does not hold the list up for longer.
pub const DEFAULT: Duration = Duration::from_secs(30);

/// Runs `work` on a thread of its own and waits at most `limit` for it.
pub fn call<T, F>(limit: Duration, what: &str, work: F) -> EngineResult<T>
where
    T: Send + 'static,
    F: FnOnce() -> EngineResult<T> + Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    let spawned = std::thread::Builder::new()
        .name("libvirt-call".into())
        .spawn(move || {
            let _ = tx.send(work());
        });
    if let Err(e) = spawned {
        return Err(EngineError::other(format!("cannot start a thread: {e}")));
    }
    match rx.recv_timeout(limit) {
        Ok(result) => result,
        Err(_) => Err(EngineError::new(
            ErrorKind::TimedOut,
            format!("{what}: no answer within {} s", limit.as_secs()),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_call_that_hangs_is_reported_not_waited_for() {
        let result: EngineResult<()> = call(Duration::from_millis(50), "listing", || {
            std::thread::sleep(Duration::from_secs(5));
            Ok(())
        });
        let error = result.unwrap_err();
        assert_eq!(error.kind, ErrorKind::TimedOut);
        assert!(error.detail.starts_with("listing"), "{error}");
        assert_eq!(call(Duration::from_secs(5), "x", || Ok(7)).unwrap(), 7);
    }
}
