//! Shared test harness: run real `vireo run` processes on tiny guests and
//! watch what they print.
#![allow(dead_code)] // each test binary uses a different part of it

#[path = "../../guests/asm.rs"]
pub mod asm;
pub mod desktop;
pub mod guest;
pub mod linux;
pub mod vnc;
pub mod wait;

use std::io::Read;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Whether KVM tests can run here. Without /dev/kvm they are skipped with a
/// visible message, unless `VIREO_REQUIRE_KVM=1` (as in CI), where a missing
/// KVM fails the test instead of passing it silently.
pub fn kvm_available() -> bool {
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if !usable {
        if std::env::var("VIREO_REQUIRE_KVM").as_deref() == Ok("1") {
            panic!("/dev/kvm is not usable and VIREO_REQUIRE_KVM=1");
        }
        eprintln!("SKIPPED: /dev/kvm is not usable on this machine");
    }
    usable
}

/// Whether `program` is on PATH; the tests that need it fail when it is
/// missing (the setup script installs it), rather than passing unseen.
pub fn require_program(program: &str) {
    let found = std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| dir.join(program).is_file()))
        .unwrap_or(false);
    assert!(
        found,
        "{program} is not installed; run `scripts/setup.sh test`"
    );
}

/// A libvirt domain definition for a test VM.
pub struct Domain {
    pub name: String,
    pub memory_mib: u64,
    pub vcpus: u32,
    pub loader: Option<PathBuf>,
    pub boot: Vec<&'static str>,
    pub on_poweroff: &'static str,
    pub on_reboot: &'static str,
    pub on_crash: &'static str,
    /// Raw `<disk>` elements.
    pub disks: Vec<String>,
    /// Raw elements appended inside `<os>` (`<kernel>`, `<cmdline>`…).
    pub os_extra: String,
}

impl Domain {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.to_string(),
            memory_mib: 64,
            vcpus: 1,
            loader: None,
            boot: Vec::new(),
            on_poweroff: "destroy",
            on_reboot: "destroy",
            on_crash: "destroy",
            disks: Vec::new(),
            os_extra: String::new(),
        }
    }

    /// Boots `image` as the firmware (a tiny guest that starts at the reset vector).
    pub fn firmware(mut self, image: &Path) -> Self {
        self.loader = Some(image.to_path_buf());
        self
    }

    pub fn disk(mut self, device: &str, path: &Path, target: &str, bus: &str) -> Self {
        self.disks.push(format!(
            "<disk type='file' device='{device}'><driver name='qemu' type='raw'/><source file='{}'/><target dev='{target}' bus='{bus}'/></disk>",
            path.display()
        ));
        self
    }

    /// Adds a raw device element such as `<input type='tablet' bus='usb'/>`
    /// (it joins the `<disk>` elements inside `<devices>`).
    pub fn device(mut self, xml: &str) -> Self {
        self.disks.push(xml.to_string());
        self
    }

    pub fn xml(&self) -> String {
        let loader = self
            .loader
            .as_ref()
            .map(|p| format!("<loader readonly='yes' type='rom'>{}</loader>", p.display()))
            .unwrap_or_default();
        let boot: String = self
            .boot
            .iter()
            .map(|d| format!("<boot dev='{d}'/>"))
            .collect();
        format!(
            "<domain type='kvm'>\n  <name>{}</name>\n  <memory unit='MiB'>{}</memory>\n  <vcpu>{}</vcpu>\n  <os><type arch='x86_64' machine='pc'>hvm</type>{loader}{boot}{}</os>\n  <on_poweroff>{}</on_poweroff>\n  <on_reboot>{}</on_reboot>\n  <on_crash>{}</on_crash>\n  <devices>\n    {}\n    <serial type='pty'><target port='0'/></serial>\n  </devices>\n</domain>\n",
            self.name,
            self.memory_mib,
            self.vcpus,
            self.os_extra,
            self.on_poweroff,
            self.on_reboot,
            self.on_crash,
            self.disks.join("\n    ")
        )
    }
}

/// A `vireo run` process with its serial console on a pipe.
pub struct Vm {
    child: Child,
    serial: Arc<Mutex<Vec<u8>>>,
    stderr: Arc<Mutex<Vec<u8>>>,
    pub dir: tempfile::TempDir,
}

/// Copies what `from` yields into `into` on a thread of its own, to the
/// end; join the thread to know that everything is in.
pub fn drain(
    mut from: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> std::thread::JoinHandle<()> {
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = from.read(&mut buf) {
            if n == 0 {
                break;
            }
            into.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    })
}

impl Vm {
    /// Starts `domain` with `--serial stdio`, in a fresh scratch directory.
    pub fn start(domain: &Domain) -> Self {
        Self::start_with(domain, &[])
    }

    pub fn start_with(domain: &Domain, extra_args: &[&str]) -> Self {
        Self::start_with_env(domain, extra_args, &[])
    }

    /// Like [`Self::start_with`], with extra environment variables for
    /// `vireo` (such as `VIREO_LOG` to see a device's debug log on stderr).
    pub fn start_with_env(domain: &Domain, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::start_wrapped(domain, &[], extra_args, env)
    }

    /// Like [`Self::start_with_env`], with `vireo` run by a `wrapper`
    /// command line (such as `ip netns exec NS`), which ends with the
    /// program that runs it.
    pub fn start_wrapped(
        domain: &Domain,
        wrapper: &[&str],
        extra_args: &[&str],
        env: &[(&str, &str)],
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let xml = dir.path().join("domain.xml");
        std::fs::write(&xml, domain.xml()).unwrap();
        let vireo = env!("CARGO_BIN_EXE_vireo");
        let (program, wrapper_args) = match wrapper.split_first() {
            Some((program, args)) => (*program, args),
            None => (vireo, &[][..]),
        };
        let mut command = Command::new(program);
        command.args(wrapper_args);
        if !wrapper.is_empty() {
            command.arg(vireo);
        }
        let mut child = command
            .arg("run")
            .arg(&xml)
            .args(["--serial", "stdio"])
            .args(extra_args)
            .env("VIREO_HOME", dir.path())
            .envs(env.iter().copied())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start vireo");
        let serial = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(Vec::new()));
        drain(child.stdout.take().unwrap(), serial.clone());
        drain(child.stderr.take().unwrap(), stderr.clone());
        Self {
            child,
            serial,
            stderr,
            dir,
        }
    }

    pub fn serial(&self) -> String {
        String::from_utf8_lossy(&self.serial.lock().unwrap()).into_owned()
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.stderr.lock().unwrap()).into_owned()
    }

    /// Types into the serial console.
    pub fn type_serial(&mut self, text: &[u8]) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(text).unwrap();
        stdin.flush().unwrap();
    }

    /// Waits until the serial output contains `text`; panics with what
    /// was seen (and the VMM's log) after `timeout`.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) -> String {
        wait::until(
            &format!("{text:?} on serial"),
            timeout,
            Duration::from_millis(20),
            || {
                let seen = self.serial();
                if seen.contains(text) {
                    return Ok(seen);
                }
                if let Ok(Some(status)) = self.child.try_wait() {
                    // Give the reader threads a moment to drain the pipes.
                    std::thread::sleep(Duration::from_millis(100));
                    let seen = self.serial();
                    if seen.contains(text) {
                        return Ok(seen);
                    }
                    panic!(
                        "vireo exited ({status}) before printing {text:?}\nserial: {seen:?}\nstderr: {}",
                        self.stderr()
                    );
                }
                Err(format!("serial: {seen:?}\nstderr: {}", self.stderr()))
            },
        )
    }

    /// Waits for the process to exit on its own; returns its exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(100));
                return status;
            }
            if start.elapsed() > timeout {
                panic!(
                    "vireo still running after {timeout:?}\nserial: {:?}\nstderr: {}",
                    self.serial(),
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The exit status, if the process has ended.
    pub fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().unwrap()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Vm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A `VIREO_HOME` of its own, in which `vireo` verbs run as a user types
/// them (virsh sessions with `vireo` in its place).
pub struct Home {
    pub dir: tempfile::TempDir,
}

impl Default for Home {
    fn default() -> Self {
        Self::new()
    }
}

impl Home {
    pub fn new() -> Self {
        Self {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    pub fn path(&self, rest: &str) -> PathBuf {
        self.dir.path().join(rest)
    }

    /// The runtime files (state, sockets) of VM `name` in this home.
    pub fn vm_files(&self, name: &str) -> vireo::vm_process::RunFiles {
        vireo::vm_process::RunFiles::under(&self.path("run"), name)
    }

    pub fn run(&self, args: &[&str]) -> std::process::Output {
        Command::new(env!("CARGO_BIN_EXE_vireo"))
            .args(args)
            .env("VIREO_HOME", self.dir.path())
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    }

    /// Polls `vireo ARGS` until it succeeds with output that satisfies
    /// `ok` (what a window's change looks like from the CLI); returns it.
    pub fn wait_until(
        &self,
        args: &[&str],
        timeout: Duration,
        ok: impl Fn(&str) -> bool,
    ) -> String {
        wait::until(
            &format!("`vireo {}` to show what was wanted", args.join(" ")),
            timeout,
            Duration::from_millis(300),
            || {
                let out = self.run(args);
                let text = String::from_utf8_lossy(&out.stdout).into_owned();
                if out.status.success() && ok(&text) {
                    return Ok(text);
                }
                Err(format!(
                    "it printed:\n{text}{}",
                    String::from_utf8_lossy(&out.stderr)
                ))
            },
        )
    }

    /// Runs a verb that must succeed; returns its stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            output.status.success(),
            "vireo {args:?} failed:\n{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    }

    /// Runs a verb that must fail; returns its stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let output = self.run(args);
        assert!(
            !output.status.success(),
            "vireo {args:?} should have failed"
        );
        assert!(
            output.stdout.is_empty(),
            "a failure prints nothing on stdout"
        );
        String::from_utf8(output.stderr).unwrap()
    }
}

/// What an in-process machine writes to its serial port, for tests that
/// drive `VmRunner` directly instead of a `vireo run` process.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Capture {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

/// A started domain's serial console socket (`Home::vm_files`):
/// the stream to type on, and everything read from it so far, gathered by
/// a thread. Waits up to 30 s for the socket to appear.
pub fn attach_serial(home: &Home, name: &str) -> (UnixStream, Arc<Mutex<Vec<u8>>>) {
    let socket = home.vm_files(name).serial();
    let start = Instant::now();
    let stream = loop {
        match UnixStream::connect(&socket) {
            Ok(stream) => break stream,
            Err(e) if start.elapsed() > Duration::from_secs(30) => {
                panic!("no serial console at {}: {e}", socket.display())
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let serial = Arc::new(Mutex::new(Vec::new()));
    drain(stream.try_clone().unwrap(), serial.clone());
    (stream, serial)
}

/// The SHA-256 of `bytes` as `sha256sum` (and busybox's) prints it.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run sha256sum");
    child.stdin.take().unwrap().write_all(bytes).unwrap();
    let out = child.wait_with_output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .expect("sha256sum printed nothing")
        .to_string()
}

/// Stops a network's switch (`vireo net-destroy`) when the test ends,
/// however it ends.
pub struct NetworkGuard<'a>(pub &'a Home, pub &'static str);

impl Drop for NetworkGuard<'_> {
    fn drop(&mut self) {
        let _ = self.0.run(&["net-destroy", self.1]);
    }
}
