//! Real VNC clients against a VM's built-in server: vncdotool and
//! gvnccapture, and tesseract to read what they capture.

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use super::require_program;

/// How long one client command may take before it is killed: a server
/// that stops answering must fail the test, not hang it.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// A free TCP port above 5900, as a VNC display number.
pub fn free_display() -> u16 {
    loop {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        if port > 5900 {
            return port - 5900;
        }
    }
}

/// Runs vncdotool against `display`; the caller judges its exit status
/// (a refused password is an expected failure).
pub fn vncdo(display: u16, password: Option<&str>, args: &[&str]) -> Output {
    require_program("vncdo");
    let mut command = Command::new("vncdo");
    command
        .arg("-s")
        .arg(format!("127.0.0.1::{}", 5900 + display));
    if let Some(password) = password {
        command.args(["--password", password]);
    }
    let mut child = command
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > CLIENT_TIMEOUT {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

/// vncdotool without a password, which must succeed.
pub fn vncdo_ok(display: u16, args: &[&str]) -> Output {
    let out = vncdo(display, None, args);
    assert!(
        out.status.success(),
        "vncdo {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// gtk-vnc's one-shot capture of `display` into `file`.
pub fn gvnccapture(display: u16, file: &Path) {
    require_program("gvnccapture");
    let out = Command::new("timeout")
        .arg(CLIENT_TIMEOUT.as_secs().to_string())
        .arg("gvnccapture")
        .arg(format!("127.0.0.1:{display}"))
        .arg(file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gvnccapture failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// What tesseract reads in the image `file`.
pub fn ocr(file: &Path) -> String {
    require_program("tesseract");
    let out = Command::new("tesseract")
        .arg(file)
        .arg("-")
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}
