//! Real VNC clients against a VM's built-in server: vncdotool and
//! gvnccapture, and tesseract to read what they capture.

use std::path::{Path, PathBuf};
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

/// A certificate authority and a server certificate for 127.0.0.1 and
/// localhost, made with the `openssl` command in a directory of their own
/// laid out as `vnc_tls_x509_cert_dir` wants it (`ca-cert.pem`,
/// `server-cert.pem`, `server-key.pem`). Made anew for each test.
pub struct TestPki {
    pub dir: tempfile::TempDir,
}

/// Runs `openssl ARGS` in `dir`; panics with what it said if it fails.
fn openssl(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl TestPki {
    pub fn new() -> Self {
        require_program("openssl");
        let dir = tempfile::tempdir().unwrap();
        let run = |args: &[&str]| openssl(dir.path(), args);
        let p256 = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &p256,
            &[
                "-keyout",
                "ca-key.pem",
                "-out",
                "ca-cert.pem",
                "-days",
                "2",
                "-subj",
                "/CN=Vireo test CA",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
            ],
        ]
        .concat());
        std::fs::write(
            dir.path().join("server.ext"),
            "basicConstraints = critical, CA:FALSE\n\
             keyUsage = critical, digitalSignature, keyEncipherment\n\
             extendedKeyUsage = serverAuth\n\
             subjectAltName = DNS:localhost, IP:127.0.0.1\n",
        )
        .unwrap();
        run(&[
            &["req"][..],
            &p256,
            &[
                "-keyout",
                "server-key.pem",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat());
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca-cert.pem",
            "-CAkey",
            "ca-key.pem",
            "-CAcreateserial",
            "-out",
            "server-cert.pem",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        TestPki { dir }
    }

    /// A client certificate signed by the CA, as gtk-vnc looks for one:
    /// a directory with `clientcert.pem` and `private/clientkey.pem`.
    pub fn client(&self) -> PathBuf {
        let dir = self.dir.path().join("client");
        std::fs::create_dir_all(dir.join("private")).unwrap();
        let run = |args: &[&str]| openssl(self.dir.path(), args);
        run(&[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=viewer",
            "-CA",
            "ca-cert.pem",
            "-CAkey",
            "ca-key.pem",
            "-keyout",
            "client/private/clientkey.pem",
            "-out",
            "client/clientcert.pem",
            "-addext",
            "basicConstraints=critical,CA:FALSE",
            "-addext",
            "extendedKeyUsage=clientAuth",
        ]);
        dir
    }

    /// The CA certificate clients must trust.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca-cert.pem")
    }

    /// A `VIREO_HOME` whose `vireo.conf` turns VNC TLS on with these
    /// credentials (and, with `verify`, requires client certificates).
    pub fn home(&self, verify: bool) -> tempfile::TempDir {
        let home = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(home.path().join("config")).unwrap();
        std::fs::write(
            home.path().join("config/vireo.conf"),
            format!(
                "# as libvirt's qemu.conf\nvnc_tls = 1\nvnc_tls_x509_cert_dir = \"{}\"\nvnc_tls_x509_verify = {}\n",
                self.dir.path().display(),
                u8::from(verify)
            ),
        )
        .unwrap();
        home
    }
}

/// gvnccapture over VeNCrypt/TLS. gtk-vnc takes its CA from
/// `~/.pki/CA/cacert.pem` of the user's passwd entry (not `$HOME`), so it
/// runs in a user and mount namespace of its own where a tmpfs over that
/// home holds `ca`. With a `password`, gvnccapture asks for it on a
/// terminal: `script` gives it one, with gvnccapture in the terminal's
/// foreground group, and the password is typed once the prompt shows.
/// With `client`, a directory made by [`TestPki::client`], it shows that
/// certificate (gtk-vnc's `~/.pki/gvnccapture/`). Returns its output; the
/// caller judges the status.
pub fn gvnccapture_tls(
    display: u16,
    ca: &Path,
    file: &Path,
    password: Option<&str>,
    client: Option<&Path>,
) -> Output {
    use std::io::Read;
    require_program("gvnccapture");
    require_program("unshare");
    require_program("script");
    // `--foreground`: timeout otherwise moves into a process group of its
    // own, and under a shell that does not exec its last command (dash,
    // `script`'s shell when SHELL is unset) that group is not the
    // terminal's: gvnccapture's TCSAFLUSH then stops it with SIGTTOU and
    // the password is never read. SHELL is pinned so that every machine
    // runs the capture the same way.
    let capture = format!(
        "timeout --foreground {} gvnccapture 127.0.0.1:{display} {}",
        CLIENT_TIMEOUT.as_secs(),
        file.display()
    );
    let exec = if password.is_some() {
        "SHELL=/bin/sh exec script -qec \"$capture\" /dev/null"
    } else {
        "exec $capture"
    };
    let setup = format!(
        "home=$(getent passwd \"$(id -u)\" | cut -d: -f6) && \
         mount -t tmpfs tmpfs \"$home\" && mkdir -p \"$home/.pki/CA\" && \
         cp \"$1\" \"$home/.pki/CA/cacert.pem\" && capture=\"$2\" && \
         if [ -n \"$3\" ]; then cp -r \"$3\" \"$home/.pki/gvnccapture\"; fi && {exec}"
    );
    let mut child = Command::new("unshare")
        .args([
            "--user",
            "--map-root-user",
            "--mount",
            "sh",
            "-c",
            &setup,
            "sh",
        ])
        .arg(ca)
        .arg(&capture)
        .arg(client.unwrap_or(Path::new("")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = super::drain(stdout, seen.clone());
    let mut stdin = child.stdin.take().unwrap();
    if let Some(password) = password {
        let start = Instant::now();
        while !String::from_utf8_lossy(&seen.lock().unwrap()).contains("Password:") {
            if start.elapsed() > CLIENT_TIMEOUT || child.try_wait().unwrap().is_some() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        type_password_once_read(&mut stdin, &seen, password, &mut child);
    }
    let mut stderr = String::new();
    let _ = child.stderr.take().unwrap().read_to_string(&mut stderr);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let stdout = seen.lock().unwrap().clone();
    drop(stdin);
    Output {
        status,
        stdout,
        stderr: stderr.into_bytes(),
    }
}

/// Types `password` at gvnccapture's prompt until it is read, watching
/// until gvnccapture ends. gvnccapture turns echo off with TCSAFLUSH after
/// printing the prompt, which throws away what was typed before: a
/// password the terminal echoed was typed too early and is gone, so it is
/// typed again. One that is never echoed went to gvnccapture.
fn type_password_once_read(
    stdin: &mut std::process::ChildStdin,
    seen: &std::sync::Mutex<Vec<u8>>,
    password: &str,
    child: &mut std::process::Child,
) {
    use std::io::Write;
    let echoes = || {
        String::from_utf8_lossy(&seen.lock().unwrap())
            .matches(password)
            .count()
    };
    let mut echoed = echoes();
    let _ = writeln!(stdin, "{password}");
    let start = Instant::now();
    while start.elapsed() < CLIENT_TIMEOUT && child.try_wait().unwrap().is_none() {
        std::thread::sleep(Duration::from_millis(100));
        if echoes() > echoed {
            echoed = echoes();
            let _ = writeln!(stdin, "{password}");
        }
    }
}

/// A vncdotool client that stays connected (its Python API, driven line by
/// line on stdin), for what a one-shot `vncdo` cannot show: that a client
/// connected before the guest changed its mode follows the change
/// (DesktopSize) and captures the new size.
pub struct VncSession {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

/// The session's side in Python: `capture FILE` answers `captured`.
const SESSION_SCRIPT: &str = r#"
import sys
from vncdotool import api
client = api.connect(sys.argv[1], password=None, timeout=60)
client.refreshScreen()
print("connected", flush=True)
for line in sys.stdin:
    command, _, argument = line.strip().partition(" ")
    if command == "capture":
        client.captureScreen(argument)
        print("captured", flush=True)
    elif command == "quit":
        break
client.disconnect()
api.shutdown()
"#;

impl VncSession {
    /// Connects to `display`; returns once the first screen has arrived.
    pub fn connect(display: u16) -> Self {
        require_program("vncdo");
        // The interpreter that has vncdotool: the one vncdo runs with
        // (build/venv/bin, on PATH in `make test`).
        let vncdo = std::env::var_os("PATH")
            .and_then(|path| {
                std::env::split_paths(&path)
                    .map(|dir| dir.join("vncdo"))
                    .find(|file| file.is_file())
            })
            .unwrap();
        let python = vncdo.with_file_name("python3");
        let python = if python.is_file() {
            python
        } else {
            "python3".into()
        };
        let mut child = Command::new(python)
            .arg("-u")
            .arg("-c")
            .arg(SESSION_SCRIPT)
            .arg(format!("127.0.0.1::{}", 5900 + display))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stdin = child.stdin.take().unwrap();
        let (sender, lines) = std::sync::mpsc::channel();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if sender.send(line).is_err() {
                    break;
                }
            }
        });
        let stderr = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        super::drain(child.stderr.take().unwrap(), stderr.clone());
        let mut session = Self {
            child,
            stdin,
            lines,
            stderr,
        };
        session.expect("connected");
        session
    }

    fn expect(&mut self, answer: &str) {
        match self.lines.recv_timeout(CLIENT_TIMEOUT) {
            Ok(line) if line == answer => {}
            outcome => panic!(
                "the vncdotool session answered {outcome:?}, not {answer:?}; its stderr:\n{}",
                String::from_utf8_lossy(&self.stderr.lock().unwrap())
            ),
        }
    }

    /// Captures the screen as this client sees it into `file` (PNG).
    pub fn capture(&mut self, file: &Path) {
        use std::io::Write;
        writeln!(self.stdin, "capture {}", file.display()).unwrap();
        self.stdin.flush().unwrap();
        self.expect("captured");
    }
}

impl Drop for VncSession {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
