//! The demo VM that `make run` starts: SeaBIOS boots its disk and it
//! echoes what is typed on the serial console, in capitals.

mod common;

use std::io::{Read, Write};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::kvm_available;

#[test]
fn the_demo_vm_greets_and_echoes_in_capitals() {
    if !kvm_available() {
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vireo"))
        .arg("demo")
        .env("VIREO_HOME", home.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().unwrap();
    let sink = seen.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 256];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    let wait_for = |text: &str| {
        let start = Instant::now();
        loop {
            let now = String::from_utf8_lossy(&seen.lock().unwrap()).into_owned();
            if now.contains(text) {
                return now;
            }
            assert!(
                start.elapsed() < Duration::from_secs(120),
                "no {text:?} in {now:?}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    wait_for("type something, it comes back in capitals.");
    let stdin = child.stdin.as_mut().unwrap();
    stdin.write_all(b"hello vireo\r").unwrap();
    stdin.flush().unwrap();
    wait_for("HELLO VIREO\r\n");
    assert!(
        home.path().join("data/images/demo.img").is_file(),
        "the demo disk lives in the default pool"
    );
    let _ = child.kill();
    let _ = child.wait();
}
