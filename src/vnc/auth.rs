//! VNC Authentication (RFC 6143 §7.2.2) and the limits that keep it from
//! being guessed: an exponentially growing delay per source after each
//! wrong password, and a cap on handshakes in progress.
//!
//! The scheme is weak by design (a 16-byte DES challenge, passwords cut
//! to 8 characters); it keeps the casual out of a listener on localhost or
//! a LAN, as with QEMU. Anything stronger belongs to a tunnel (SSH).

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use des::cipher::generic_array::GenericArray;
use des::cipher::{BlockEncrypt, KeyInit};

/// The DES key VNC derives from a password: its first 8 bytes, zero
/// padded, each byte's bits reversed (the reference implementation's
/// DES took keys least-significant bit first, and every client copies it).
fn key(password: &str) -> [u8; 8] {
    let mut key = [0u8; 8];
    for (k, b) in key.iter_mut().zip(password.bytes()) {
        *k = b.reverse_bits();
    }
    key
}

/// The response a client holding `password` sends to `challenge`: the
/// challenge's two 8-byte halves DES-encrypted (ECB) with [`key`].
pub fn response(password: &str, challenge: &[u8; 16]) -> [u8; 16] {
    let cipher = des::Des::new(&GenericArray::from(key(password)));
    let mut out = *challenge;
    for half in out.chunks_exact_mut(8) {
        cipher.encrypt_block(GenericArray::from_mut_slice(half));
    }
    out
}

/// Whether `answer` proves knowledge of `password`, compared in constant
/// time so timing reveals nothing of the expected response (how many of
/// its leading bytes a guess got right).
///
/// `subtle` rather than a hand-written XOR fold: the fold is constant
/// time only as long as the optimiser does not turn it into an early
/// exit, which nothing forbids; `subtle`'s `ct_eq` passes its result
/// through an optimisation barrier, is audited and is what RustCrypto
/// and rustls compare secrets with.
pub fn verify(password: &str, challenge: &[u8; 16], answer: &[u8; 16]) -> bool {
    use subtle::ConstantTimeEq;
    response(password, challenge).ct_eq(answer).into()
}

/// A fresh random challenge from the kernel.
pub fn challenge() -> std::io::Result<[u8; 16]> {
    let mut buf = [0u8; 16];
    let mut filled = 0;
    while filled < buf.len() {
        // SAFETY: the pointer and length describe the unfilled part of
        // `buf`, which lives across the call.
        let n =
            unsafe { libc::getrandom(buf[filled..].as_mut_ptr().cast(), buf.len() - filled, 0) };
        if n < 0 {
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        } else {
            filled += n as usize;
        }
    }
    Ok(buf)
}

/// The delay after the first wrong password from a source; it doubles
/// with each further one.
const FIRST_DELAY: Duration = Duration::from_millis(100);
/// The longest delay.
const MAX_DELAY: Duration = Duration::from_secs(30);
/// A source's failures are forgotten after this long without one.
const FORGET_AFTER: Duration = Duration::from_secs(600);
/// Handshakes (connections not yet past authentication) served at once.
pub const MAX_HANDSHAKES: usize = 16;

struct Failures {
    count: u32,
    last: Instant,
}

/// Per-server memory of failed logins, and the handshake cap.
pub struct AuthLimiter {
    failures: Mutex<HashMap<String, Failures>>,
    handshakes: AtomicUsize,
    max_handshakes: usize,
}

impl AuthLimiter {
    pub fn new(max_handshakes: usize) -> Arc<Self> {
        Arc::new(Self {
            failures: Mutex::new(HashMap::new()),
            handshakes: AtomicUsize::new(0),
            max_handshakes,
        })
    }

    /// Records a wrong password from `source` and returns how long to
    /// wait before saying so: 100 ms, 200 ms, 400 ms, … up to 30 s.
    pub fn failed(&self, source: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        failures.retain(|_, f| now.duration_since(f.last) < FORGET_AFTER);
        let entry = failures.entry(source.to_string()).or_insert(Failures {
            count: 0,
            last: now,
        });
        entry.count = entry.count.saturating_add(1);
        entry.last = now;
        FIRST_DELAY
            .saturating_mul(1u32 << (entry.count - 1).min(16))
            .min(MAX_DELAY)
    }

    /// A right password from `source`: its slate is wiped.
    pub fn succeeded(&self, source: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(source);
    }

    /// A slot for one handshake, or `None` when too many are under way.
    pub fn begin_handshake(self: &Arc<Self>) -> Option<HandshakeSlot> {
        let previous = self.handshakes.fetch_add(1, Ordering::SeqCst);
        let slot = HandshakeSlot(self.clone());
        (previous < self.max_handshakes).then_some(slot)
    }
}

/// Holds one handshake slot until dropped.
pub struct HandshakeSlot(Arc<AuthLimiter>);

impl Drop for HandshakeSlot {
    fn drop(&mut self) {
        self.0.handshakes.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_matches_an_independent_des() {
        // openssl enc -des-ecb -nopad -K cea6c64ea62e0000 (the bit-reversed
        // "secret") over "0123456789abcdef".
        let expected = [
            0x75, 0x24, 0x40, 0xee, 0x2b, 0xfc, 0xc2, 0xa0, 0xd9, 0x01, 0x3f, 0xd2, 0x03, 0x71,
            0xe2, 0x3b,
        ];
        assert_eq!(response("secret", b"0123456789abcdef"), expected);
        assert!(verify("secret", b"0123456789abcdef", &expected));
        assert!(!verify("secreT", b"0123456789abcdef", &expected));
        // Only the first 8 characters count, as in every VNC server.
        assert_eq!(
            response("password1", b"0123456789abcdef"),
            response("password2", b"0123456789abcdef")
        );
    }

    #[test]
    fn challenges_differ() {
        assert_ne!(challenge().unwrap(), challenge().unwrap());
    }

    #[test]
    fn delays_grow_per_source_and_reset_on_success() {
        let limiter = AuthLimiter::new(2);
        assert_eq!(limiter.failed("a"), Duration::from_millis(100));
        assert_eq!(limiter.failed("a"), Duration::from_millis(200));
        assert_eq!(limiter.failed("a"), Duration::from_millis(400));
        assert_eq!(limiter.failed("b"), Duration::from_millis(100));
        for _ in 0..40 {
            limiter.failed("a");
        }
        assert_eq!(limiter.failed("a"), MAX_DELAY);
        limiter.succeeded("a");
        assert_eq!(limiter.failed("a"), Duration::from_millis(100));
    }

    #[test]
    fn handshakes_are_capped() {
        let limiter = AuthLimiter::new(2);
        let a = limiter.begin_handshake();
        let b = limiter.begin_handshake();
        assert!(a.is_some() && b.is_some());
        assert!(limiter.begin_handshake().is_none());
        drop(a);
        assert!(limiter.begin_handshake().is_some());
    }
}
