//! The Linux test guest (tests/linux/): finds the kernel and initramfs that
//! `tests/linux/build.sh` built (building them when the cache has none),
//! boots them with direct kernel boot, and talks to busybox's shell on the
//! serial console: type a command, read what it printed and its exit
//! status, collect `dmesg` and check it for what Vireo's hardware would
//! make Linux complain about.
//!
//! A test:
//!
//! ```ignore
//! let Some(linux) = linux::test_linux() else { return };
//! let mut guest = LinuxGuest::boot(&linux.domain("t", Boot::BzImage));
//! assert_eq!(guest.run("nproc").trim(), "1");
//! guest.check_dmesg();
//! ```
//!
//! Every wait is bounded and panics with the serial log and the VMM's log.
//! Guest kernel code is emulated on hosts without VMX (TESTING.md), so a
//! boot takes half a minute there, longer on a loaded machine.

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use super::{Domain, Home, Vm};

/// How long a boot to the shell may take: under a minute alone on a host
/// that emulates the guest kernel, several minutes on two cores shared
/// with other VMs and builds (measured: 257 s at a load average of 10).
pub const BOOT_TIMEOUT: Duration = Duration::from_secs(600);
/// How long one shell command may take by default: each process start
/// and each driver call is emulated kernel code, seconds apiece when
/// several guests share two cores.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(300);
/// The shell's prompt (tests/linux/initramfs/etc/profile).
pub const PROMPT: &str = "vireo-guest# ";
/// What rcS prints once the file systems are mounted.
pub const UP: &str = "VIREO-LINUX-UP";

/// The kernel images and the initramfs, as built.
#[derive(Debug, Clone)]
pub struct TestLinux {
    /// The bzImage, for the 64-bit boot protocol.
    pub bzimage: PathBuf,
    /// The ELF vmlinux with its PVH note.
    pub vmlinux: PathBuf,
    pub initramfs: PathBuf,
    /// tests/linux/cmdline, as one line.
    pub cmdline: String,
}

/// Which of the two kernel files `<os><kernel>` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Boot {
    BzImage,
    Pvh,
}

fn repo_file(rest: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rest)
}

/// The test guest's command line: tests/linux/cmdline without comments.
pub fn cmdline() -> String {
    let text = std::fs::read_to_string(repo_file("tests/linux/cmdline")).unwrap();
    text.lines()
        .filter(|line| !line.trim_start().starts_with('#'))
        .flat_map(str::split_whitespace)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The test kernel, built once per test process (the build script caches
/// it across processes and serialises concurrent builds). `None` skips the
/// test visibly when the packages are missing; under
/// `VIREO_REQUIRE_TOOLS=1` (`make test`) that is a failure instead.
pub fn test_linux() -> Option<TestLinux> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    guest_files(&BUILT, None)
}

/// The desktop variant (`build.sh --variant desktop`: tests/linux/
/// desktop.fragment over kernel.fragment): the same guest with bochs-drm
/// and fbcon on the VGA card, atkbd and the USB tablet's driver.
pub fn test_linux_desktop() -> Option<TestLinux> {
    static BUILT: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    guest_files(&BUILT, Some("desktop"))
}

fn guest_files(
    built: &OnceLock<Result<PathBuf, String>>,
    variant: Option<&str>,
) -> Option<TestLinux> {
    let built = built.get_or_init(|| {
        let mut command = std::process::Command::new(repo_file("tests/linux/build.sh"));
        command.arg("--quiet");
        if let Some(variant) = variant {
            command.args(["--variant", variant]);
        }
        let output = command
            .output()
            .map_err(|e| format!("cannot run tests/linux/build.sh: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "tests/linux/build.sh failed ({}):\n{}",
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let dir = String::from_utf8_lossy(&output.stdout).trim().to_string();
        Ok(PathBuf::from(dir))
    });
    match built {
        Ok(dir) => Some(TestLinux {
            bzimage: dir.join("bzImage"),
            vmlinux: dir.join("vmlinux"),
            initramfs: dir.join("initramfs.cpio"),
            cmdline: cmdline(),
        }),
        Err(why) if std::env::var("VIREO_REQUIRE_TOOLS").as_deref() == Ok("1") => {
            panic!("no Linux test guest, and VIREO_REQUIRE_TOOLS=1: {why}")
        }
        Err(why) => {
            eprintln!("SKIPPED: no Linux test guest: {why}");
            None
        }
    }
}

impl TestLinux {
    pub fn kernel(&self, boot: Boot) -> &Path {
        match boot {
            Boot::BzImage => &self.bzimage,
            Boot::Pvh => &self.vmlinux,
        }
    }

    /// An installer-like ISO made by `grub-mkrescue` (a hybrid image: it
    /// boots as a CD-ROM and as a hard disk) holding the bzImage and the
    /// initramfs, booted by tests/linux/iso-grub.cfg's one menu entry.
    pub fn grub_iso(&self, dir: &Path) -> PathBuf {
        let root = dir.join("iso-root");
        std::fs::create_dir_all(root.join("boot/grub")).unwrap();
        std::fs::copy(&self.bzimage, root.join("boot/bzImage")).unwrap();
        std::fs::copy(&self.initramfs, root.join("boot/initramfs.cpio")).unwrap();
        let grub_cfg = std::fs::read_to_string(repo_file("tests/linux/iso-grub.cfg"))
            .unwrap()
            .replace("@CMDLINE@", &self.cmdline);
        super::guest::grub_iso_of(&root, &grub_cfg, &dir.join("linux.iso"))
    }

    /// A domain that boots the test guest directly: 256 MiB, one vCPU.
    pub fn domain(&self, name: &str, boot: Boot) -> Domain {
        self.domain_with_cmdline(name, boot, "")
    }

    /// Like [`Self::domain`], with `extra` appended to the command line.
    pub fn domain_with_cmdline(&self, name: &str, boot: Boot, extra: &str) -> Domain {
        let mut domain = Domain::new(name);
        domain.memory_mib = 256;
        let cmdline = format!("{} {extra}", self.cmdline);
        domain.os_extra = format!(
            "<kernel>{}</kernel><initrd>{}</initrd><cmdline>{}</cmdline>",
            self.kernel(boot).display(),
            self.initramfs.display(),
            cmdline.trim()
        );
        domain
    }
}

/// `boot_params.hdr.type_of_loader` that GRUB 2 writes (loader ID 7,
/// version 2: Linux's Documentation/arch/x86/boot.rst).
pub const GRUB_LOADER_TYPE: u8 = 0x72;

/// What a guest is running in: a `vireo run` process, or a domain defined
/// and started in a home of its own (for verbs such as `vireo shutdown`).
enum Host {
    Run(Vm),
    Started {
        home: Home,
        name: String,
        serial: Arc<Mutex<Vec<u8>>>,
        input: UnixStream,
    },
}

/// A booted Linux test guest at its shell prompt.
pub struct LinuxGuest {
    host: Host,
    /// Serial bytes up to the end of the last command's prompt.
    consumed: usize,
    commands: u32,
}

impl LinuxGuest {
    /// Boots `domain` under `vireo run` and waits for the shell.
    pub fn boot(domain: &Domain) -> Self {
        Self::boot_with(domain, &[])
    }

    /// Like [`Self::boot`], with extra `vireo run` arguments.
    pub fn boot_with(domain: &Domain, extra_args: &[&str]) -> Self {
        Self::boot_with_env(domain, extra_args, &[])
    }

    /// Like [`Self::boot_with`], with extra environment variables for
    /// `vireo run` (a `VIREO_HOME` whose networks the guest joins).
    pub fn boot_with_env(domain: &Domain, extra_args: &[&str], env: &[(&str, &str)]) -> Self {
        let vm = Vm::start_with_env(domain, extra_args, env);
        Self::at_prompt(Host::Run(vm))
    }

    /// Defines `domain` in a fresh `VIREO_HOME`, starts it (`vireo start`)
    /// and waits for the shell on its serial console socket.
    pub fn start_defined(domain: &Domain) -> Self {
        let mut guest = Self::define_and_start(domain, &[]);
        guest.wait_boot();
        guest
    }

    /// Like [`Self::start_defined`], with the vCPUs paused (`vireo start
    /// --paused`) so that a test connects its clients before the guest
    /// runs; it then resumes the domain (`vireo resume`) and calls
    /// [`Self::wait_boot`].
    pub fn start_defined_paused(domain: &Domain) -> Self {
        Self::define_and_start(domain, &["--paused"])
    }

    fn define_and_start(domain: &Domain, start_args: &[&str]) -> Self {
        let home = Home::new();
        let xml = home.path("domain.xml");
        std::fs::write(&xml, domain.xml()).unwrap();
        home.ok(&["define", xml.to_str().unwrap()]);
        let mut start = vec!["start", domain.name.as_str()];
        start.extend_from_slice(start_args);
        home.ok(&start);
        let (input, serial) = super::attach_serial(&home, &domain.name);
        Self {
            host: Host::Started {
                home,
                name: domain.name.clone(),
                serial,
                input,
            },
            consumed: 0,
            commands: 0,
        }
    }

    fn at_prompt(host: Host) -> Self {
        let mut guest = Self {
            host,
            consumed: 0,
            commands: 0,
        };
        guest.wait_boot();
        guest
    }

    /// Waits for a (re)boot to reach the shell, from what has not been
    /// read yet, and sets the shell up for [`Self::run`]: no echo and no
    /// line editing (busybox falls back to plain reads without ECHO), and
    /// kernel messages kept off the console (they stay in `dmesg`, which
    /// tests check), so a command's output is exactly what it printed.
    pub fn wait_boot(&mut self) {
        let up = self.wait_for_from(self.consumed, UP, BOOT_TIMEOUT);
        self.wait_for_from(up, PROMPT, BOOT_TIMEOUT);
        self.send(b"stty -echo; dmesg -n 1; echo VIREO-READY-$((6*7))\n");
        let ready = self.wait_for_from(up, "VIREO-READY-42", COMMAND_TIMEOUT);
        self.consumed = self.wait_for_from(ready, PROMPT, COMMAND_TIMEOUT);
    }

    /// Everything the serial console has printed (`\r` removed).
    pub fn serial(&self) -> String {
        let bytes = match &self.host {
            Host::Run(vm) => vm.serial().into_bytes(),
            Host::Started { serial, .. } => serial.lock().unwrap().clone(),
        };
        String::from_utf8_lossy(&bytes).replace('\r', "")
    }

    /// The VMM's log: stderr of `vireo run`, or the started domain's log.
    pub fn vmm_log(&self) -> String {
        match &self.host {
            Host::Run(vm) => vm.stderr(),
            Host::Started { home, name, .. } => {
                std::fs::read_to_string(home.path(&format!("logs/{name}.log"))).unwrap_or_default()
            }
        }
    }

    /// The `vireo run` process, for tests that need it.
    pub fn vm(&mut self) -> &mut Vm {
        match &mut self.host {
            Host::Run(vm) => vm,
            Host::Started { .. } => panic!("the guest runs as a defined domain, not `vireo run`"),
        }
    }

    /// The home of a guest started with [`Self::start_defined`], and its name.
    pub fn home(&self) -> (&Home, &str) {
        match &self.host {
            Host::Started { home, name, .. } => (home, name),
            Host::Run(_) => panic!("the guest runs under `vireo run`, not as a defined domain"),
        }
    }

    /// `boot_params.hdr.type_of_loader` as the guest kernel kept it (byte
    /// 0x210 of /sys/kernel/boot_params/data): 0xFF where Vireo's bzImage
    /// loader filled the header, 0xB0 where the kernel's own PVH entry did,
    /// [`GRUB_LOADER_TYPE`] where GRUB loaded it.
    pub fn loader_type(&mut self) -> u8 {
        let hex = self.run("od -An -tx1 -j528 -N1 /sys/kernel/boot_params/data");
        u8::from_str_radix(hex.trim(), 16).unwrap_or_else(|_| panic!("{hex:?}"))
    }

    /// Types `bytes` on the serial console.
    pub fn send(&mut self, bytes: &[u8]) {
        match &mut self.host {
            Host::Run(vm) => vm.type_serial(bytes),
            Host::Started { input, .. } => {
                input.write_all(bytes).unwrap();
                input.flush().unwrap();
            }
        }
    }

    /// Whether the VM has stopped, and how (a `vireo run` exit status, or
    /// the domain's state).
    fn ended(&mut self) -> Option<String> {
        match &mut self.host {
            Host::Run(vm) => vm.exited().map(|status| format!("vireo exited ({status})")),
            Host::Started { home, name, .. } => {
                let out = home.run(&["domstate", name]);
                let state = String::from_utf8_lossy(&out.stdout).trim().to_string();
                (state == "shut off").then(|| format!("the domain is {state}"))
            }
        }
    }

    /// The failure report: what the console and the VMM said.
    pub fn report(&self) -> String {
        format!(
            "serial console:\n{}\n---- VMM log:\n{}",
            self.serial(),
            self.vmm_log()
        )
    }

    /// Waits until `text` appears at or after byte `from` of the serial
    /// output; returns the offset just past it.
    pub fn wait_for_from(&mut self, from: usize, text: &str, timeout: Duration) -> usize {
        let start = Instant::now();
        let mut next_state_check = Instant::now();
        loop {
            let seen = self.serial();
            if let Some(at) = seen.get(from.min(seen.len())..).and_then(|s| s.find(text)) {
                return from + at + text.len();
            }
            if Instant::now() >= next_state_check {
                if let Some(how) = self.ended() {
                    std::thread::sleep(Duration::from_millis(200));
                    let seen = self.serial();
                    if let Some(at) = seen.get(from.min(seen.len())..).and_then(|s| s.find(text)) {
                        return from + at + text.len();
                    }
                    panic!("{how} before the guest printed {text:?}\n{}", self.report());
                }
                next_state_check = Instant::now() + Duration::from_millis(500);
            }
            if start.elapsed() > timeout {
                panic!(
                    "the guest did not print {text:?} within {timeout:?}\n{}",
                    self.report()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for `text` anywhere after the last command's prompt.
    pub fn wait_for(&mut self, text: &str, timeout: Duration) -> usize {
        self.wait_for_from(self.consumed, text, timeout)
    }

    /// Runs one shell command line (not ending in `&`) and returns what it
    /// printed on stdout and stderr, with its exit status.
    pub fn run_status_timeout(&mut self, command: &str, timeout: Duration) -> (i32, String) {
        assert!(!command.contains('\n'), "one line at a time: {command:?}");
        self.commands += 1;
        let n = self.commands;
        let from = self.serial().len().max(self.consumed);
        self.send(format!("{command} 2>&1; echo VIREO-DONE-{n}-$?\n").as_bytes());
        let marker = format!("VIREO-DONE-{n}-");
        let after = self.wait_for_from(from, &marker, timeout);
        let end = self.wait_for_from(after, PROMPT, timeout);
        let seen = self.serial();
        let output = seen[from..after - marker.len()].to_string();
        let status_text = seen[after..].lines().next().unwrap_or("").trim();
        let status = status_text
            .parse()
            .unwrap_or_else(|_| panic!("unreadable exit status {status_text:?} of {command:?}"));
        self.consumed = end;
        (status, output)
    }

    pub fn run_status(&mut self, command: &str) -> (i32, String) {
        self.run_status_timeout(command, COMMAND_TIMEOUT)
    }

    /// Runs a command that must succeed; returns its output.
    pub fn run(&mut self, command: &str) -> String {
        self.run_timeout(command, COMMAND_TIMEOUT)
    }

    pub fn run_timeout(&mut self, command: &str, timeout: Duration) -> String {
        let (status, output) = self.run_status_timeout(command, timeout);
        if status != 0 {
            panic!(
                "`{command}` failed in the guest with status {status}:\n{output}\n{}",
                self.report()
            );
        }
        output
    }

    /// Types a command whose end the shell does not see (`poweroff`,
    /// `reboot`): nothing is waited for.
    pub fn type_line(&mut self, command: &str) {
        self.send(format!("{command}\n").as_bytes());
    }

    /// The kernel log, raw (`<level>[time] message` per line).
    pub fn dmesg(&mut self) -> String {
        self.run("dmesg -r")
    }

    /// Fails the test on any line of the kernel log that says something
    /// went wrong (see [`dmesg_problems`]).
    pub fn check_dmesg(&mut self) {
        let log = self.dmesg();
        let problems = dmesg_problems(&log);
        assert!(
            problems.is_empty(),
            "the guest kernel complained:\n{}\n---- whole dmesg:\n{log}",
            problems.join("\n")
        );
    }

    /// Waits for a `vireo run` guest to end on its own (power-off, or
    /// `on_reboot=destroy`); returns the exit status.
    pub fn wait_exit(&mut self, timeout: Duration) -> std::process::ExitStatus {
        self.vm().wait_exit(timeout)
    }
}

impl Drop for LinuxGuest {
    fn drop(&mut self) {
        if let Host::Started { home, name, .. } = &self.host {
            let _ = home.run(&["destroy", name]);
        }
    }
}

/// Kernel log lines that are not Vireo's doing: this host, or the test
/// setup, makes Linux print them. Each is a regex on the message text.
pub const DMESG_ALLOWED: &[(&str, &str)] = &[
    // `clearcpuid=smap` on the command line (tests/linux/cmdline): the host's
    // emulator cannot execute CLAC/STAC. Clearing CPUID bits taints the
    // kernel, which says so.
    (
        r"^x86/cpu: Clearing CPUID bits:",
        "clearcpuid= on the command line",
    ),
    (
        r"^Unknown kernel command line parameters",
        "parameters meant for init",
    ),
    // The command line itself, echoed: its words (rcu_cpu_stall_timeout)
    // are no complaint.
    (r"^(Kernel )?[Cc]ommand line: ", "the command line"),
    (
        r"^RCU CPU stall warnings timeout set to",
        "rcupdate.rcu_cpu_stall_timeout= on the command line",
    ),
];

/// Words that mark a kernel log line as a complaint whatever its level.
const DMESG_COMPLAINTS: &[&str] = &[
    "call trace",
    "warning",
    "bug:",
    "oops",
    "timed out",
    "timeout",
    "failed",
    "failure",
    "error",
    "nobody cared",
    "spurious",
    "lost interrupt",
    "irq storm",
    "disabling irq",
    "unexpected",
    "invalid",
    "can't",
    "cannot",
    "unable",
    "no irq",
    "bogus",
    "firmware bug",
];

/// The lines of a raw kernel log (`dmesg -r`) that report a problem: any
/// message at warning level or above (`<0>`..`<4>`), and any line that
/// names a failure, a timeout, a call trace or an interrupt complaint;
/// minus [`DMESG_ALLOWED`].
pub fn dmesg_problems(log: &str) -> Vec<String> {
    let allowed: Vec<regex::Regex> = DMESG_ALLOWED
        .iter()
        .map(|(pattern, _)| regex::Regex::new(pattern).unwrap())
        .collect();
    log.lines()
        .filter_map(|line| {
            let line = line.trim_end();
            let (level, rest) = match line.strip_prefix('<').and_then(|r| r.split_once('>')) {
                Some((level, rest)) => (level.parse::<u32>().ok().map(|l| l & 7), rest),
                None => (None, line),
            };
            // "[    1.234567] message"
            let message = match rest.trim_start().strip_prefix('[') {
                Some(r) => r.split_once(']').map(|(_, m)| m).unwrap_or(r),
                None => rest,
            }
            .trim();
            if message.is_empty() || allowed.iter().any(|re| re.is_match(message)) {
                return None;
            }
            let lower = message.to_lowercase();
            let severe = level.is_some_and(|l| l <= 4);
            let complaint = DMESG_COMPLAINTS.iter().any(|word| lower.contains(word));
            (severe || complaint).then(|| line.to_string())
        })
        .collect()
}
