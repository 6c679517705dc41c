//! Vireo against a real libvirt daemon with its QEMU driver, started by
//! the test: `libvirtd` in a mount namespace of its own (its `/run/libvirt`,
//! `/etc/libvirt/qemu`, `/var/lib/libvirt`… are the test's directories, and
//! a `qemu.conf` that runs QEMU as root without a log daemon), so the
//! host's own libvirt, if any, is never touched; its `/run` is a tmpfs of
//! the namespace, so nothing is created outside the test's directory. An
//! `sshd` on loopback with throw-away keys runs in the same namespace, so
//! `qemu+ssh://root@127.0.0.1:PORT/system` reaches this daemon; the client
//! checks the host key against the test's own known-hosts file (through an
//! ssh wrapper the URI's `command=` names), never `~/.ssh`.
//!
//! - a `grub-mkrescue` ISO under QEMU: listed and started with `vireo -c`
//!   (output compared with virsh's), its screen in the window's console
//!   through libvirt's graphics descriptor, then through the SSH tunnel
//!   with the domain's VNC password, and the window surviving the daemon's
//!   death with the connection shown as lost;
//! - a Vireo VM copied to the daemon (definition and disk, through libvirt's
//!   volume upload), its `virsh dumpxml` valid for `virt-xml-validate`, and
//!   copied back (volume download) with the same bytes; the same both
//!   ways in the window (Copy to… and the host's VM's Copy to This
//!   Computer…).
//!
//! Needs root (mount namespaces), as CI has; skipped visibly otherwise,
//! and failed then under `VIREO_REQUIRE_TOOLS=1`.

mod common;

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::desktop::{artifacts, App, Display};
use common::{kvm_available, require_program, Home};

/// Whether this test can set up a daemon here (root, the tools).
fn can_run() -> bool {
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    if !root {
        assert!(
            std::env::var("VIREO_REQUIRE_TOOLS").as_deref() != Ok("1"),
            "the libvirtd tests need root (mount namespaces) and VIREO_REQUIRE_TOOLS=1"
        );
        eprintln!("SKIPPED: the libvirtd tests need root for their mount namespace");
        return false;
    }
    for program in [
        "libvirtd",
        "virsh",
        "unshare",
        "qemu-system-x86_64",
        "ssh",
        "ssh-keygen",
    ] {
        require_program(program);
    }
    assert!(
        Path::new("/usr/sbin/sshd").exists(),
        "sshd is not installed; run `scripts/setup.sh test`"
    );
    true
}

/// A libvirtd of the test's own (and an sshd beside it), stopped with
/// every process of its namespace (QEMUs, SSH sessions) when dropped.
struct Daemon {
    dir: tempfile::TempDir,
    child: Child,
    /// The mount namespace (`/proc/PID/ns/mnt`) the daemon runs in.
    namespace: PathBuf,
    ssh_port: u16,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        for sub in [
            "run",
            "etc-libvirt/qemu",
            "etc-libvirt/storage",
            "lib",
            "log",
            "cache",
            "images",
        ] {
            std::fs::create_dir_all(d.join(sub)).unwrap();
        }
        // `namespaces = []`: QEMU stays in the daemon's mount namespace
        // (libvirt gives each domain one of its own otherwise), where
        // Drop finds and stops it.
        std::fs::write(
            d.join("etc-libvirt/qemu.conf"),
            "user = \"root\"\ngroup = \"root\"\ndynamic_ownership = 0\n\
             security_driver = \"none\"\nstdio_handler = \"file\"\nnamespaces = []\n",
        )
        .unwrap();
        // Throw-away SSH keys: the host's, and the client's (authorized).
        for key in ["host-key", "client-key"] {
            let status = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-f"])
                .arg(d.join(key))
                .status()
                .unwrap();
            assert!(status.success(), "ssh-keygen failed");
        }
        let ssh_port = free_port();
        // The client knows the host's key from the test's own file, so it
        // checks the key strictly and neither reads nor writes the
        // machine's ~/.ssh/known_hosts. libvirt (and Vireo's console
        // tunnel) run ssh as the URI's `command=` names: this wrapper.
        let host_key = std::fs::read_to_string(d.join("host-key.pub")).unwrap();
        let host_key: Vec<&str> = host_key.split_whitespace().take(2).collect();
        std::fs::write(
            d.join("known_hosts"),
            format!("[127.0.0.1]:{ssh_port} {}\n", host_key.join(" ")),
        )
        .unwrap();
        let wrapper = d.join("ssh");
        std::fs::write(
            &wrapper,
            format!(
                "#!/bin/sh\nexec ssh -F /dev/null -o UserKnownHostsFile={d}/known_hosts \
                 -o GlobalKnownHostsFile=/dev/null -o StrictHostKeyChecking=yes \"$@\"\n",
                d = d.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::write(
            d.join("sshd_config"),
            format!(
                "Port {ssh_port}\nListenAddress 127.0.0.1\nHostKey {d}/host-key\n\
                 AuthorizedKeysFile {d}/client-key.pub\nPermitRootLogin prohibit-password\n\
                 PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\n\
                 StrictModes no\nPidFile none\n",
                d = d.display()
            ),
        )
        .unwrap();
        // Inside the namespace: a /run of its own (libvirtd's pid file,
        // its sockets, sshd's privilege separation directory), and the
        // daemon's configuration and state directories are ours. Nothing
        // is created outside the test's directory.
        let script = format!(
            "set -e\n\
             D='{d}'\n\
             mount -t tmpfs -o mode=755 vireo-test-run /run\n\
             mkdir /run/libvirt /run/sshd /run/lock\n\
             mount --bind \"$D/run\" /run/libvirt\n\
             mount --bind \"$D/etc-libvirt\" /etc/libvirt\n\
             mount --bind \"$D/lib\" /var/lib/libvirt\n\
             mount --bind \"$D/log\" /var/log/libvirt\n\
             mount --bind \"$D/cache\" /var/cache/libvirt\n\
             /usr/sbin/sshd -D -e -f \"$D/sshd_config\" 2>\"$D/sshd.log\" &\n\
             exec libvirtd\n",
            d = d.display()
        );
        for needed in [
            "/etc/libvirt",
            "/var/lib/libvirt",
            "/var/log/libvirt",
            "/var/cache/libvirt",
        ] {
            assert!(
                Path::new(needed).is_dir(),
                "{needed} is missing: install libvirt-daemon-system (`scripts/setup.sh test`)"
            );
        }
        let log = std::fs::File::create(d.join("libvirtd.log")).unwrap();
        let child = Command::new("unshare")
            .args(["-m", "--propagation", "private", "sh", "-c", &script])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap();
        let mut daemon = Daemon {
            dir,
            namespace: PathBuf::new(),
            child,
            ssh_port,
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        while !daemon.virsh(&["version"]).status.success() {
            assert!(
                Instant::now() < deadline,
                "libvirtd never answered; its log:\n{}",
                daemon.log()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
        // unshare(1) without --fork runs the script, then libvirtd, in
        // its own process: that process is in the namespace.
        daemon.namespace =
            std::fs::read_link(format!("/proc/{}/ns/mnt", daemon.child.id())).unwrap();
        assert_ne!(
            daemon.namespace,
            std::fs::read_link("/proc/self/ns/mnt").unwrap(),
            "libvirtd runs in the test's own mount namespace"
        );
        // The pool copies land in.
        let images = daemon.path("images");
        let images = images.to_str().unwrap();
        daemon.virsh_ok(&["pool-define-as", "default", "dir", "--target", images]);
        daemon.virsh_ok(&["pool-start", "default"]);
        daemon
    }

    fn path(&self, rest: &str) -> PathBuf {
        self.dir.path().join(rest)
    }

    fn log(&self) -> String {
        let mut text = std::fs::read_to_string(self.path("libvirtd.log")).unwrap_or_default();
        text.push_str(&std::fs::read_to_string(self.path("sshd.log")).unwrap_or_default());
        text
    }

    /// This daemon through its UNIX socket.
    fn uri(&self) -> String {
        format!(
            "qemu:///system?socket={}",
            self.path("run/libvirt-sock").display()
        )
    }

    /// This daemon through SSH as root on loopback, with the test's key
    /// and its known host key.
    fn ssh_uri(&self) -> String {
        format!(
            "qemu+ssh://root@127.0.0.1:{}/system?keyfile={}&command={}",
            self.ssh_port,
            self.path("client-key").display(),
            self.path("ssh").display()
        )
    }

    fn virsh_on(&self, uri: &str, args: &[&str]) -> Output {
        Command::new("virsh")
            .arg("-c")
            .arg(uri)
            .args(args)
            .output()
            .unwrap()
    }

    fn virsh(&self, args: &[&str]) -> Output {
        self.virsh_on(&self.uri(), args)
    }

    fn virsh_ok(&self, args: &[&str]) -> String {
        let out = self.virsh(args);
        assert!(
            out.status.success(),
            "virsh {args:?} failed: {}\ndaemon log:\n{}",
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// How many logins sshd has accepted so far.
    fn ssh_logins(&self) -> usize {
        std::fs::read_to_string(self.path("sshd.log"))
            .unwrap_or_default()
            .matches("Accepted publickey")
            .count()
    }

    /// Stops libvirtd (and sshd's listener) while its QEMUs go on: a host
    /// whose daemon dies.
    fn kill_daemon(&mut self) {
        // SAFETY: signalling the process group this test started.
        unsafe { libc::kill(-(self.child.id() as i32), libc::SIGKILL) };
        let _ = self.child.wait();
    }

    /// The processes in the daemon's namespace: libvirtd, sshd and its
    /// sessions, QEMU.
    fn processes(&self) -> Vec<i32> {
        let Ok(entries) = std::fs::read_dir("/proc") else {
            return Vec::new();
        };
        entries
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|pid| {
                std::fs::read_link(format!("/proc/{pid}/ns/mnt"))
                    .is_ok_and(|ns| ns == self.namespace)
            })
            .collect()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill_daemon();
        if self.namespace.as_os_str().is_empty() {
            return;
        }
        // QEMU and the SSH sessions left the daemon's process group; each
        // is found by its namespace and stopped by its pid.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = self.processes();
            if left.is_empty() {
                return;
            }
            if Instant::now() > deadline {
                eprintln!("processes of the daemon's namespace outlived it: {left:?}");
                return;
            }
            for pid in left {
                // SAFETY: a process of the namespace this test made.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

fn vireo(home: &Home, uri: &str, args: &[&str]) -> Output {
    let mut all = vec!["-c", uri];
    all.extend_from_slice(args);
    home.run(&all)
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

const GRUB_DOMAIN: &str = "grub-remote";
const VNC_PASSWORD: &str = "s3cret";

fn grub_domain_xml(iso: &Path) -> String {
    format!(
        "<domain type='kvm'>\n  <name>{GRUB_DOMAIN}</name>\n  <memory unit='MiB'>128</memory>\n  \
         <vcpu>1</vcpu>\n  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='cdrom'/></os>\n  \
         <devices>\n    <disk type='file' device='cdrom'><driver name='qemu' type='raw'/>\
         <source file='{}'/><target dev='hdc' bus='ide'/><readonly/></disk>\n    \
         <serial type='pty'><target port='0'/></serial>\n    \
         <console type='pty'><target type='serial' port='0'/></console>\n    \
         <graphics type='vnc' autoport='yes' listen='127.0.0.1' passwd='{VNC_PASSWORD}'/>\n    \
         <video><model type='vga'/></video>\n  </devices>\n</domain>\n",
        iso.display()
    )
}

/// The window in `home` connected to `uri` only (remembered in its
/// settings, as after Add Connection…).
fn window_on(display: &Display, home: &Home, uri: &str) -> App {
    let config = home.path("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("settings.ini"),
        format!("[vireo]\nconnections=['{uri}']\n"),
    )
    .unwrap();
    App::start(display, home.dir.path(), &[])
}

#[test]
fn a_grub_iso_under_libvirtds_qemu_from_the_cli_and_in_the_window_over_unix_and_ssh() {
    if !can_run() || !kvm_available() {
        return;
    }
    let mut daemon = Daemon::start();
    let home = Home::new();
    let iso = common::guest::grub_iso(home.dir.path(), common::guest::GRUB_SERIAL_MENU);
    let xml_file = home.path("grub-remote.xml");
    std::fs::write(&xml_file, grub_domain_xml(&iso)).unwrap();
    let uri = daemon.uri();
    let xml_path = xml_file.to_str().unwrap();

    // Defined and started with vireo, listed as virsh lists it.
    let defined = vireo(&home, &uri, &["define", xml_path]);
    assert_eq!(
        stdout(&defined),
        format!("Domain '{GRUB_DOMAIN}' defined from {xml_path}\n\n"),
        "{}\n{}",
        String::from_utf8_lossy(&defined.stderr),
        daemon.log()
    );
    let started = vireo(&home, &uri, &["start", GRUB_DOMAIN]);
    assert_eq!(
        stdout(&started),
        format!("Domain '{GRUB_DOMAIN}' started\n\n"),
        "{}\n{}",
        String::from_utf8_lossy(&started.stderr),
        daemon.log()
    );
    // Its serial console, as `virsh console` joins it: GRUB's menu comes
    // there too (it is still in the BIOS now).
    let console = SerialConsole::attach(&home, &uri, GRUB_DOMAIN);
    for args in [
        &["list", "--all"][..],
        &["vncdisplay", GRUB_DOMAIN],
        &["domstate", GRUB_DOMAIN],
        &["pool-list", "--all"],
        &["net-list", "--all"],
    ] {
        assert_eq!(
            stdout(&vireo(&home, &uri, args)),
            stdout(&daemon.virsh(args)),
            "vireo -c {uri} {args:?} differs from virsh"
        );
    }
    // The domain's VNC server asks for its password (VNC authentication
    // only), so a console that shows the screen has given it.
    let display_address = daemon.virsh_ok(&["vncdisplay", GRUB_DOMAIN]);
    let vnc_port = 5900
        + display_address
            .trim()
            .rsplit(':')
            .next()
            .and_then(|d| d.parse::<u16>().ok())
            .unwrap_or_else(|| panic!("vncdisplay said {display_address:?}"));
    assert_eq!(
        vnc_security_types(vnc_port),
        [2],
        "QEMU's VNC server should offer VNC authentication only"
    );

    // The same daemon through SSH, as `virsh -c qemu+ssh://…` reaches it.
    let ssh_uri = daemon.ssh_uri();
    let over_ssh = vireo(&home, &ssh_uri, &["list", "--all"]);
    assert_eq!(
        stdout(&over_ssh),
        stdout(&daemon.virsh_on(&ssh_uri, &["list", "--all"])),
        "over SSH: {}\n{}",
        String::from_utf8_lossy(&over_ssh.stderr),
        daemon.log()
    );
    assert!(
        stdout(&over_ssh).contains(" running"),
        "{}",
        stdout(&over_ssh)
    );

    // The console in the window through libvirt's graphics descriptor on
    // the UNIX socket (no port, no password). GRUB's menu takes a minute
    // or two to appear under emulation (TESTING.md).
    let display = Display::start();
    let dir = artifacts("libvirt-console");
    let window_home = Home::new();
    let app = window_on(&display, &window_home, &uri);
    display.click_text(&dir, GRUB_DOMAIN, Duration::from_secs(60));
    wait_for_grub(&display, &dir, &daemon, "unix", Duration::from_secs(300));
    drop(app);
    let serial = console.wait_for("Entry one", Duration::from_secs(60));
    assert!(serial.contains("Entry two"), "{serial}");
    console.leave();

    // Through SSH: the window logs in as the URI says, and the console
    // goes through a tunnel on a second SSH login, with the domain's VNC
    // password.
    let logins_before = daemon.ssh_logins();
    let window_home = Home::new();
    let app = window_on(&display, &window_home, &ssh_uri);
    display.click_text(&dir, GRUB_DOMAIN, Duration::from_secs(60));
    wait_for_grub(&display, &dir, &daemon, "ssh", Duration::from_secs(120));
    let logins = daemon.ssh_logins() - logins_before;
    assert!(
        logins >= 2,
        "the window logged in {logins} time(s) over SSH; the connection and the console tunnel make two\n{}",
        daemon.log()
    );

    // The host's daemon dies: the window says so and stays. The reason is
    // the lost connection, or, once the window has tried to reconnect,
    // that the host cannot be reached (sshd went with the daemon).
    daemon.kill_daemon();
    let seen = display.wait_for_sidebar_text(&dir, "Disconnected", Duration::from_secs(90));
    // The sentence wraps in the sidebar: compared with single spaces.
    let flat = seen.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(
        flat.contains("connection to the host was lost") || flat.contains("cannot be reached"),
        "{seen}"
    );
    assert!(
        !display.main_window().is_empty(),
        "the window went away with the host"
    );
    drop(app);
}

/// Waits for GRUB's menu in the window's console; keeps the screenshot
/// as `LABEL.png` and shows the daemon's log when it never comes.
fn wait_for_grub(display: &Display, dir: &Path, daemon: &Daemon, label: &str, timeout: Duration) {
    let seen = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        display.wait_for_text(dir, "GNU GRUB", timeout)
    }));
    if seen.is_err() {
        let _ = std::fs::copy(
            dir.join("last-screen.png"),
            dir.join(format!("{label}.png")),
        );
        panic!(
            "the {label} console never showed GRUB; daemon log:\n{}",
            daemon.log()
        );
    }
}

/// The security types a VNC server at 127.0.0.1:`port` offers (RFB 3.8,
/// RFC 6143 7.1.2): 1 is none, 2 is VNC authentication.
fn vnc_security_types(port: u16) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut server = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    server
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    let mut version = [0u8; 12];
    server.read_exact(&mut version).unwrap();
    assert!(version.starts_with(b"RFB "), "{version:?}");
    server.write_all(b"RFB 003.008\n").unwrap();
    let mut count = [0u8; 1];
    server.read_exact(&mut count).unwrap();
    let mut types = vec![0u8; count[0] as usize];
    server.read_exact(&mut types).unwrap();
    types
}

/// `vireo -c URI console NAME` with its output collected, as a person at
/// a terminal would see it.
struct SerialConsole {
    child: Child,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
}

impl SerialConsole {
    fn attach(home: &Home, uri: &str, name: &str) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vireo"))
            .args(["-c", uri, "console", name])
            .env("VIREO_HOME", home.dir.path())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        for stream in [
            Box::new(child.stdout.take().unwrap()) as Box<dyn std::io::Read + Send>,
            Box::new(child.stderr.take().unwrap()),
        ] {
            let sink = seen.clone();
            std::thread::spawn(move || {
                let mut stream = stream;
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    sink.lock().unwrap().extend_from_slice(&buf[..n]);
                }
            });
        }
        SerialConsole { child, seen }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    fn wait_for(&self, text: &str, timeout: Duration) -> String {
        common::wait::poll(timeout, Duration::from_millis(200), || {
            let seen = self.text();
            if seen.contains(text) {
                Ok(seen)
            } else {
                Err(seen)
            }
        })
        .unwrap_or_else(|seen| panic!("the serial console never showed {text:?}:\n{seen}"))
    }

    /// Ctrl+], as in virsh: the console ends, successfully.
    fn leave(mut self) {
        use std::io::Write;
        let stdin = self.child.stdin.as_mut().unwrap();
        stdin.write_all(&[0x1d]).unwrap();
        stdin.flush().unwrap();
        let status = common::wait::poll(
            Duration::from_secs(20),
            Duration::from_millis(100),
            || match self.child.try_wait().unwrap() {
                Some(status) => Ok(status),
                None => Err(String::new()),
            },
        )
        .unwrap_or_else(|_| panic!("the console did not end on Ctrl+]:\n{}", self.text()));
        assert!(status.success(), "{status}: {}", self.text());
    }
}

impl Drop for SerialConsole {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn a_vireo_vm_copied_to_libvirtd_and_back() {
    if !can_run() {
        return;
    }
    require_program("virt-xml-validate");
    require_program("qemu-img");
    require_program("qemu-io");
    let daemon = Daemon::start();
    let home = Home::new();
    // The in-process engines read VIREO_HOME: this test's alone.
    std::env::set_var("VIREO_HOME", home.dir.path());

    // A Vireo VM with a qcow2 disk holding known bytes.
    let (_, original) = define_vm_with_known_disk(&home, "c1", "write -P 0x5a 1M 64k");

    let local = vireo::connection::local::LocalEngine::new();
    let remote = vireo::connection::open(&daemon.uri()).expect("connect to the daemon");
    let report = vireo::connection::copy::copy_vm(
        &local,
        remote.as_ref(),
        "c1",
        "default",
        &mut |_, _, _| {},
    )
    .unwrap_or_else(|e| panic!("copy to libvirtd: {e}\n{}", daemon.log()));
    assert_eq!(report.disks.len(), 1, "{report:?}");
    let copied = match &report.disks[0] {
        vireo::connection::copy::DiskOutcome::Copied { to, bytes, .. } => {
            assert_eq!(*bytes, original.len() as u64);
            PathBuf::from(to)
        }
        other => panic!("the disk was not copied: {other:?}"),
    };
    assert_eq!(
        std::fs::read(&copied).unwrap(),
        original,
        "the volume's bytes"
    );
    let dumped = daemon.virsh_ok(&["dumpxml", "c1"]);
    assert!(dumped.contains(&copied.display().to_string()), "{dumped}");
    assert_valid_domain(&home.path("c1-on-libvirtd.xml"), &dumped);
    let vols = daemon.virsh_ok(&["vol-list", "default"]);
    assert!(vols.contains("c1.qcow2"), "{vols}");

    // And back, into a Vireo store that does not have it.
    let back = Home::new();
    std::env::set_var("VIREO_HOME", back.dir.path());
    // Its default pool is there from the start, as in a new Vireo.
    let report = vireo::connection::copy::copy_vm(
        remote.as_ref(),
        &local,
        "c1",
        "default",
        &mut |_, _, _| {},
    )
    .unwrap_or_else(|e| panic!("copy back from libvirtd: {e}\n{}", daemon.log()));
    let returned = match &report.disks[0] {
        vireo::connection::copy::DiskOutcome::Copied { to, .. } => PathBuf::from(to),
        other => panic!("the disk did not come back: {other:?}"),
    };
    assert_came_back_whole(&returned, &original);
    let xml_back = back.ok(&["dumpxml", "c1"]);
    assert!(
        xml_back.contains(&returned.display().to_string()),
        "{xml_back}"
    );
    assert_valid_domain(&back.path("c1-back.xml"), &xml_back);
}

#[test]
fn copy_to_from_the_window_and_back() {
    if !can_run() {
        return;
    }
    require_program("virt-xml-validate");
    require_program("qemu-img");
    require_program("qemu-io");
    let daemon = Daemon::start();
    let home = Home::new();
    // A shut-off Vireo VM with a qcow2 disk holding known bytes.
    let (disk, original) = define_vm_with_known_disk(&home, "copyme", "write -P 0x3c 2M 64k");

    let display = Display::start();
    let dir = artifacts("libvirt-copy-window");
    let _app = window_on(&display, &home, &daemon.uri());
    display.wait_for_sidebar_text(&dir, "Connected", Duration::from_secs(60));

    // Copy to…: the local VM's menu, the host, the Copy button.
    display.click_in_sidebar(&dir, "copyme", Duration::from_secs(30));
    display.open_vm_menu(&dir, "Copy to");
    display.click_text(&dir, "Copy to", Duration::from_secs(10));
    display.wait_for_text(&dir, "disk images are copied", Duration::from_secs(30));
    display.click_lowest(&dir, "Copy", Duration::from_secs(10));
    let report = display.wait_for_text(&dir, "is now on", Duration::from_secs(120));
    assert!(report.contains("copied to"), "{report}");
    let copied = daemon.path("images/copyme.qcow2");
    assert_eq!(
        std::fs::read(&copied).unwrap(),
        original,
        "the volume's bytes on the host"
    );
    let dumped = daemon.virsh_ok(&["dumpxml", "copyme"]);
    assert!(dumped.contains(&copied.display().to_string()), "{dumped}");
    assert_valid_domain(&home.path("copyme-on-libvirtd.xml"), &dumped);
    display.click_lowest(&dir, "Close", Duration::from_secs(10));

    // And back: gone from this computer (definition and disk), then the
    // host's VM's "Copy to This Computer…".
    home.ok(&["undefine", "copyme", "--remove-all-storage"]);
    assert!(!disk.exists(), "the local disk was not removed");
    // The window sees the local VM go (its row gone, the empty state),
    // so the only "copyme" in the sidebar is the host's.
    display.wait_for_text(&dir, "No Virtual Machines", Duration::from_secs(30));
    display.click_in_sidebar(&dir, "copyme", Duration::from_secs(30));
    display.open_vm_menu(&dir, "Copy to This");
    display.click_text(&dir, "Copy to This", Duration::from_secs(10));
    let report = display.wait_for_text(&dir, "is now on", Duration::from_secs(120));
    assert!(report.contains("This Computer"), "{report}");
    assert!(report.contains("copied to"), "{report}");
    let list = home.ok(&["list", "--all"]);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["-", "copyme", "shut", "off"]),
        "{list}"
    );
    let xml_back = home.ok(&["dumpxml", "copyme"]);
    let returned = disk_source(&xml_back);
    assert_came_back_whole(&returned, &original);
    assert_valid_domain(&home.path("copyme-back.xml"), &xml_back);
}

/// The file of a definition's first `<source file=…/>`.
fn disk_source(xml: &str) -> PathBuf {
    let start = xml
        .find("<source file=")
        .unwrap_or_else(|| panic!("no disk file in\n{xml}"))
        + "<source file=".len();
    let quote = &xml[start..start + 1];
    let end = start + 1 + xml[start + 1..].find(quote).unwrap();
    PathBuf::from(&xml[start + 1..end])
}

/// Defines a shut-off Vireo VM `name` in `home` whose qcow2 disk (in the
/// default pool) holds the bytes the qemu-io command `write` put there;
/// returns the disk and its file's bytes.
fn define_vm_with_known_disk(home: &Home, name: &str, write: &str) -> (PathBuf, Vec<u8>) {
    let images = home.path("data/images");
    std::fs::create_dir_all(&images).unwrap();
    let disk = images.join(format!("{name}.qcow2"));
    common::guest::run_tool(
        Command::new("qemu-img")
            .args(["create", "-q", "-f", "qcow2"])
            .arg(&disk)
            .arg("16M"),
    );
    common::guest::run_tool(
        Command::new("qemu-io")
            .args(["-f", "qcow2", "-c", write])
            .arg(&disk),
    );
    let original = std::fs::read(&disk).unwrap();
    let xml = common::Domain::new(name)
        .disk("disk", &disk, "vda", "virtio")
        .xml()
        .replace("type='raw'", "type='qcow2'");
    let file = home.path(&format!("{name}.xml"));
    std::fs::write(&file, &xml).unwrap();
    home.ok(&["define", file.to_str().unwrap()]);
    (disk, original)
}

/// Writes a domain definition to `file` and checks it with libvirt's own
/// schema (virt-xml-validate).
fn assert_valid_domain(file: &Path, xml: &str) {
    std::fs::write(file, xml).unwrap();
    let validate = Command::new("virt-xml-validate")
        .arg(file)
        .arg("domain")
        .output()
        .unwrap();
    assert!(
        validate.status.success(),
        "virt-xml-validate: {}{}\n{xml}",
        String::from_utf8_lossy(&validate.stdout),
        String::from_utf8_lossy(&validate.stderr)
    );
}

/// A disk copied back from libvirtd: the bytes it left with, and an image
/// qemu-img finds whole.
fn assert_came_back_whole(returned: &Path, original: &[u8]) {
    assert_eq!(
        std::fs::read(returned).unwrap(),
        original,
        "the bytes that came back"
    );
    let check = Command::new("qemu-img")
        .arg("check")
        .arg(returned)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}
