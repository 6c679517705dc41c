//! A VM process confines itself (src/sandbox): what a user can see of a
//! running `vireo-vmm` in /proc, and what happens when code inside it
//! (a device thread, through the `VIREO_SANDBOX_PROBE` test hook) tries
//! what a compromised VMM would: start a program, trace a process, read a
//! file that is not the VM's, reach another VM's sockets. The VM boots
//! SeaBIOS with a raw disk.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::{kvm_available, sha256_hex, wait, Domain, Home};

/// Defines a SeaBIOS VM with a 1 MiB raw disk of known bytes; returns the
/// disk's path.
fn define(home: &Home, name: &str, extra: &str) -> std::path::PathBuf {
    let disk = home.path(&format!("{name}.img"));
    let bytes: Vec<u8> = (0..1u32 << 20).map(|i| (i % 251) as u8).collect();
    std::fs::write(&disk, &bytes).unwrap();
    let mut domain = Domain::new(name).disk("disk", &disk, "hda", "ide");
    if !extra.is_empty() {
        domain = domain.device(extra);
    }
    let xml = home.path(&format!("{name}.xml"));
    let text = domain.xml();
    std::fs::write(&xml, text).unwrap();
    home.ok(&["define", xml.to_str().unwrap()]);
    disk
}

/// `vireo start NAME` with extra environment for the VM process.
fn start(home: &Home, name: &str, env: &[(&str, &str)]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vireo"))
        .args(["start", name])
        .env("VIREO_HOME", home.dir.path())
        .env_remove("VIREO_NO_SANDBOX")
        .envs(env.iter().copied())
        .output()
        .unwrap()
}

fn log(home: &Home, name: &str) -> String {
    std::fs::read_to_string(home.path(&format!("state/log/{name}.log"))).unwrap_or_default()
}

fn pid(home: &Home, name: &str) -> u32 {
    let state = std::fs::read_to_string(home.vm_files(name).state())
        .unwrap_or_else(|e| panic!("no run state: {e}\n{}", log(home, name)));
    let value: serde_json::Value = serde_json::from_str(&state).unwrap();
    value["pid"].as_u64().unwrap() as u32
}

/// `Field:\tvalue` from /proc/PID/status (or a task's).
fn status_field(status: &str, field: &str) -> String {
    status
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{field}:")))
        .unwrap_or_else(|| panic!("no {field} in\n{status}"))
        .trim()
        .to_string()
}

/// Each thread's name and how many seccomp filters it carries.
fn thread_filters(pid: u32) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .flatten()
    {
        let dir = task.path();
        let (Ok(comm), Ok(status)) = (
            std::fs::read_to_string(dir.join("comm")),
            std::fs::read_to_string(dir.join("status")),
        ) else {
            continue;
        };
        let filters = status_field(&status, "Seccomp_filters").parse().unwrap();
        out.push((comm.trim().to_string(), filters));
    }
    out
}

fn wait_for_log(home: &Home, name: &str, text: &str) -> String {
    wait::until(
        &format!("the VM log to say {text:?}"),
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let log = log(home, name);
            if log.contains(text) {
                Ok(log)
            } else {
                Err(log)
            }
        },
    )
}

#[test]
fn a_running_vm_has_no_privileges_a_filter_per_thread_and_a_private_run_directory() {
    if !kvm_available() {
        return;
    }
    let home = Home::new();
    // A virtio disk too, whose queues run on a device thread of their own.
    let second = home.path("second.img");
    std::fs::write(&second, vec![0u8; 1 << 20]).unwrap();
    define(
        &home,
        "confined",
        &format!(
            "<graphics type='vnc' port='-1' autoport='yes'/>\
             <disk type='file' device='disk'><driver name='qemu' type='raw'/>\
             <source file='{}'/><target dev='vdb' bus='virtio'/></disk>",
            second.display()
        ),
    );
    let out = start(&home, "confined", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = pid(&home, "confined");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(status_field(&status, "Seccomp"), "2", "{status}");
    assert_eq!(status_field(&status, "NoNewPrivs"), "1", "{status}");
    // No bridged NIC: no capability at all, whoever started it.
    for set in ["CapEff", "CapPrm", "CapInh", "CapAmb"] {
        assert_eq!(
            status_field(&status, set),
            "0000000000000000",
            "{set}\n{status}"
        );
    }
    // Every thread is filtered; vCPUs, devices and VNC narrow the main
    // thread's list with their own (more filters stacked).
    let threads = thread_filters(pid);
    let main = threads.iter().find(|(n, _)| n == "vireo-vmm").unwrap().1;
    assert!(
        threads.iter().any(|(n, _)| n == "virtio-vdb"),
        "the virtio disk's queue thread: {threads:?}"
    );
    assert!(main >= 1, "{threads:?}");
    for (thread, filters) in &threads {
        assert!(*filters >= main, "{thread}: {threads:?}");
        if thread.starts_with("vcpu")
            || thread == "rtc"
            || thread.starts_with("vnc-")
            || thread.starts_with("virtio-")
        {
            assert!(*filters > main, "{thread} is not narrowed: {threads:?}");
        }
    }
    // Its own private directory; its sockets for its user alone.
    let files = home.vm_files("confined");
    for (path, private) in [
        (home.path("run"), 0o700),
        (files.dir().to_path_buf(), 0o700),
        (files.control(), 0o600),
        (files.serial(), 0o600),
        (files.vnc(), 0o600),
    ] {
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path).unwrap().permissions(),
        );
        assert_eq!(mode & 0o777, private, "{}", path.display());
    }
    let log = log(&home, "confined");
    assert!(log.contains("vireo: sandbox: confined"), "{log}");
    // It still works: a screenshot taken through QMP, a VNC client.
    let shot = home.path("shot.png");
    home.ok(&["screenshot", "confined", shot.to_str().unwrap()]);
    assert!(std::fs::metadata(&shot).unwrap().len() > 100);
    home.ok(&["destroy", "confined"]);
}

#[test]
fn the_sandbox_can_be_turned_off_for_debugging() {
    if !kvm_available() {
        return;
    }
    let home = Home::new();
    define(&home, "loose", "");
    define(&home, "seclabel", "");
    let out = start(&home, "loose", &[("VIREO_NO_SANDBOX", "1")]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid(&home, "loose"))).unwrap();
    assert_eq!(status_field(&status, "Seccomp"), "0", "{status}");
    assert!(log(&home, "loose").contains("sandbox: off (VIREO_NO_SANDBOX=1)"));
    home.ok(&["destroy", "loose"]);

    // libvirt's spelling in the definition.
    let xml = home.ok(&["dumpxml", "seclabel"]);
    let xml = xml.replace("</devices>", "</devices>\n  <seclabel type='none'/>");
    std::fs::write(home.path("seclabel.xml"), xml).unwrap();
    home.ok(&["define", home.path("seclabel.xml").to_str().unwrap()]);
    let out = start(&home, "seclabel", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status =
        std::fs::read_to_string(format!("/proc/{}/status", pid(&home, "seclabel"))).unwrap();
    assert_eq!(status_field(&status, "Seccomp"), "0", "{status}");
    home.ok(&["destroy", "seclabel"]);
}

/// A device thread tries `call`: the process ends, the log names the
/// call, and the definition and the disk are as they were.
fn forbidden_call_ends_the_vm(call: &str) {
    forbidden_probe_ends_the_vm(
        &format!("probe-{call}"),
        &[("VIREO_SANDBOX_PROBE", call)],
        &format!("made the forbidden system call {call} ("),
    );
}

/// A thread tries what `probe` (the VIREO_SANDBOX_PROBE* variables) says:
/// the process ends, the log says `expected`, and the definition and the
/// disk are as they were.
fn forbidden_probe_ends_the_vm(name: &str, probe: &[(&str, &str)], expected: &str) {
    let home = Home::new();
    let disk = define(&home, name, "");
    let before = (
        sha256_hex(&std::fs::read(&disk).unwrap()),
        home.ok(&["dumpxml", name]),
    );
    // Whether `start` saw "ok" first depends on when the thread ran;
    // either way the process must end.
    let _ = start(&home, name, probe);
    let log = wait_for_log(&home, name, expected);
    wait::until(
        "the VM to be shut off",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let list = home.ok(&["list", "--all"]);
            if list.contains("shut off") {
                Ok(())
            } else {
                Err(list)
            }
        },
    );
    assert!(!log.contains("NOT confined"), "{log}");
    assert!(!log.contains("passed the filter"), "{log}");
    let after = (
        sha256_hex(&std::fs::read(&disk).unwrap()),
        home.ok(&["dumpxml", name]),
    );
    assert_eq!(before, after, "the disk or the definition changed\n{log}");
    // And it starts again, without the probe.
    let out = start(&home, name, &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    home.ok(&["destroy", name]);
}

#[test]
fn execve_from_a_device_thread_ends_the_vm_and_the_log_names_it() {
    if !kvm_available() {
        return;
    }
    forbidden_call_ends_the_vm("execve");
}

#[test]
fn ptrace_from_a_device_thread_ends_the_vm_and_the_log_names_it() {
    if !kvm_available() {
        return;
    }
    forbidden_call_ends_the_vm("ptrace");
}

/// A thread of kind `thread` makes ioctl `request` (on no descriptor):
/// the process ends and the log names the call and the request.
fn forbidden_ioctl_ends_the_vm(thread: &str, request: &str) {
    let probe = format!("ioctl:{request}");
    forbidden_probe_ends_the_vm(
        &format!("ioctl-{thread}"),
        &[
            ("VIREO_SANDBOX_PROBE", &probe),
            ("VIREO_SANDBOX_PROBE_THREAD", thread),
        ],
        &format!("made the forbidden system call ioctl (16) request {request};"),
    );
}

#[test]
fn a_device_thread_cannot_type_into_a_terminal() {
    if !kvm_available() {
        return;
    }
    // TIOCSTI: pushes bytes into a terminal's input, as if typed there
    // (`vireo run --serial stdio` runs on the user's terminal).
    forbidden_ioctl_ends_the_vm("device", "0x5412");
}

#[test]
fn a_vcpu_thread_cannot_make_kvm_requests_its_devices_do_not() {
    if !kvm_available() {
        return;
    }
    // KVM_CREATE_VCPU: the main thread builds machines, a vCPU never.
    forbidden_ioctl_ends_the_vm("vcpu", "0xae41");
}

#[test]
fn the_requests_a_vcpu_thread_makes_pass_its_filter() {
    if !kvm_available() {
        return;
    }
    let home = Home::new();
    define(&home, "irq-line", "");
    // KVM_IRQ_LINE, which a vCPU's device emulation raises: the filter
    // lets it through to the kernel, which finds no descriptor.
    let out = start(
        &home,
        "irq-line",
        &[
            ("VIREO_SANDBOX_PROBE", "ioctl:0x4008ae61"),
            ("VIREO_SANDBOX_PROBE_THREAD", "vcpu"),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = wait_for_log(
        &home,
        "irq-line",
        "ioctl request 0x4008ae61 passed the filter: -1, Bad file descriptor",
    );
    assert!(!log.contains("forbidden system call"), "{log}");
    assert!(
        home.ok(&["domstate", "irq-line"]).contains("running"),
        "{log}"
    );
    home.ok(&["destroy", "irq-line"]);
}

/// A device thread tries to open `path`: refused, and the VM runs on.
fn open_is_refused(home: &Home, name: &str, path: &Path) {
    probe_is_refused(home, name, "open", path);
}

/// A device thread tries `what` (`open` or `connect`) on `path`: refused
/// with EACCES, the log says so, and the VM runs on.
fn probe_is_refused(home: &Home, name: &str, what: &str, path: &Path) {
    let probe = format!("{what}:{}", path.display());
    let out = start(home, name, &[("VIREO_SANDBOX_PROBE", &probe)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let log = wait::until(
        "the probe's result in the VM log",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || {
            let log = self::log(home, name);
            if log.contains("sandbox probe: refused") || log.contains("NOT confined") {
                Ok(log)
            } else {
                Err(log)
            }
        },
    );
    assert!(
        log.contains(&format!(
            "refused to {what} {}{}: Permission denied",
            if what == "connect" { "to " } else { "" },
            path.display()
        )),
        "{log}"
    );
    assert!(home.ok(&["domstate", name]).contains("running"), "{log}");
    home.ok(&["destroy", name]);
}

#[test]
fn the_vm_cannot_open_etc_shadow_nor_another_vms_disk() {
    if !kvm_available() {
        return;
    }
    let home = Home::new();
    define(&home, "curious", "");
    open_is_refused(&home, "curious", Path::new("/etc/shadow"));
    // Another VM's disk in the same VIREO_HOME, and its log.
    let other = define(&home, "other", "");
    open_is_refused(&home, "curious", &other);
    let out = start(&home, "other", &[]);
    assert!(out.status.success());
    home.ok(&["destroy", "other"]);
    open_is_refused(&home, "curious", &home.path("state/log/other.log"));
}

#[test]
fn the_vm_cannot_reach_another_running_vms_sockets_nor_files() {
    if !kvm_available() {
        return;
    }
    let home = Home::new();
    define(&home, "curious", "");
    define(&home, "other", "");
    let out = start(&home, "other", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let other = home.vm_files("other");
    // The sockets answer their own user (this test)...
    std::os::unix::net::UnixStream::connect(other.control()).unwrap();
    std::os::unix::net::UnixStream::connect(other.serial()).unwrap();
    // ...but not another VM process of that user.
    probe_is_refused(&home, "curious", "connect", &other.control());
    probe_is_refused(&home, "curious", "connect", &other.vnc());
    probe_is_refused(&home, "curious", "open", &other.state());
    probe_is_refused(&home, "curious", "open", other.dir());
    assert!(home.ok(&["domstate", "other"]).contains("running"));
    home.ok(&["destroy", "other"]);
    assert!(!other.dir().exists(), "destroy removes the VM's directory");
    // Both ended as asked, not by the filter (cleaning up is allowed).
    for name in ["other", "curious"] {
        let log = log(&home, name);
        assert!(log.contains(&format!("vireo: {name} ended")), "{log}");
        assert!(!log.contains("forbidden system call"), "{log}");
    }
}

#[test]
fn vireo_run_is_confined_too() {
    if !kvm_available() {
        return;
    }
    let domain = Domain::new("run-confined");
    let mut vm = common::Vm::start(&domain);
    let pid = vm.pid();
    let status = wait::until(
        "vireo run to confine itself",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
                .map_err(|e| e.to_string())?;
            if status_field(&status, "Seccomp") == "2" {
                Ok(status)
            } else {
                Err(status)
            }
        },
    );
    assert_eq!(status_field(&status, "NoNewPrivs"), "1");
    assert!(vm.exited().is_none(), "{}", vm.stderr());
}
