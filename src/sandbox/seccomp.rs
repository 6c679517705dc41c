//! seccomp-bpf allow-lists, one per kind of thread in a VM process, built
//! with `seccompiler` (the crate Firecracker and Cloud Hypervisor use).
//!
//! Filters stack: the main thread installs the broadest list (the
//! runner rebuilds machines on reset: KVM, images, TAP, threads), every
//! thread inherits it, and each thread kind narrows it at the root of its
//! kind with [`super::confine_thread`]; its children (a VNC client's
//! sender, a QMP connection's reader) inherit that. The kernel takes the
//! strictest answer of all the filters a thread carries.
//!
//! `ioctl` is allowed only with the requests each kind makes
//! ([`super::ioctls`]).
//!
//! A call outside a thread's list raises SIGSYS (`SECCOMP_RET_TRAP`); the
//! handler writes the call's name, number (and an ioctl's request) and the thread's name to
//! stderr, which is the VM's log, and ends the whole process. A few calls
//! are answered with an error instead (see [`ThreadKind::refused`]):
//! `clone3`, whose flags a filter cannot see, gets ENOSYS so that glibc
//! falls back to `clone`, where only new threads are allowed; threads that
//! never open files get EACCES from `openat` (glibc probes
//! `/sys/devices/system/cpu/online` from whichever thread first needs it),
//! and every thread but the main one gets EACCES from `socket(AF_UNIX)`:
//! Landlock does not govern connecting to a unix socket by its path, so
//! this is what keeps a compromised device, vCPU, VNC or QMP thread from
//! reaching another VM's control, console or VNC socket (only the main
//! thread binds this VM's sockets and connects to an isolated network's
//! switch, also when a reset rebuilds the machine).

use std::collections::BTreeMap;

use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};

use super::ioctls::Request;
use super::syscalls::SYSCALLS;
use super::ThreadKind;

/// What every thread does: memory, locks, signals, time, its own end,
/// and writing log lines (stderr is the VM's log).
const EVERY_THREAD: &[&str] = &[
    "brk",
    "mmap",
    "munmap",
    "mprotect",
    "madvise",
    "mremap",
    "futex",
    "sched_yield",
    "sched_getaffinity",
    "rseq",
    "set_robust_list",
    "sigaltstack",
    "rt_sigprocmask",
    "rt_sigreturn",
    "restart_syscall",
    "gettid",
    "getpid",
    "tgkill",
    "prctl",
    "clock_gettime",
    "clock_nanosleep",
    "nanosleep",
    "getrandom",
    "write",
    "writev",
    "close",
    "exit",
    "exit_group",
    // Only ever narrows: each thread kind installs its own list on top.
    "seccomp",
];

/// Reading and writing disk images and other open files.
const FILE_IO: &[&str] = &[
    "read",
    "readv",
    "pread64",
    "pwrite64",
    "preadv",
    "pwritev",
    "preadv2",
    "pwritev2",
    "lseek",
    "fsync",
    "fdatasync",
    "fallocate",
    "ftruncate",
    "fstat",
    "newfstatat",
    "statx",
    "fcntl",
    "flock",
    "ioctl",
];

/// Sockets: slirp's host connections (on vCPUs too, where the guest's
/// frames go out), the switch, VNC and QMP clients, the serial console.
const SOCKETS: &[&str] = &[
    "socket",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "setsockopt",
    "getsockopt",
    "getsockname",
    "getpeername",
    "sendto",
    "sendmsg",
    "sendmmsg",
    "recvfrom",
    "recvmsg",
    "recvmmsg",
    "shutdown",
    "poll",
    "ppoll",
    "pipe2",
    "eventfd2",
];

/// Starting threads (see [`thread_clone_rule`] and `clone3` above).
const THREADS: &[&str] = &["clone", "set_tid_address"];

/// The runner and what it does between machines: everything above plus
/// opening files, making and removing the run directory's files, KVM,
/// TAP, and signals to kick vCPUs.
const MAIN_ONLY: &[&str] = &[
    "openat",
    "access",
    "faccessat2",
    "readlink",
    "readlinkat",
    "getdents64",
    "mkdir",
    "mkdirat",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "chmod",
    "fchmod",
    "fchmodat",
    "fstatfs",
    "statfs",
    "getcwd",
    "uname",
    "getuid",
    "geteuid",
    "getgid",
    "getegid",
    "prlimit64",
    "rt_sigaction",
    "kill",
    "wait4",
    "timerfd_create",
    "timerfd_settime",
    "epoll_create1",
    "epoll_ctl",
    "epoll_wait",
    "epoll_pwait",
    "sched_setaffinity",
    "memfd_create",
    "capget",
    "arch_prctl",
];

/// Opening files: media changes and screenshots (control), slirp's
/// `/dev/urandom`, TAP's sysfs files (devices).
const OPEN_FILES: &[&str] = &[
    "openat",
    "access",
    "readlink",
    "mkdir",
    "unlink",
    "rename",
    "renameat",
    "renameat2",
    "fchmod",
    "fstatfs",
    "getdents64",
    "getcwd",
];

impl ThreadKind {
    /// The calls this kind of thread may make.
    pub fn allowed(self) -> Vec<&'static str> {
        let parts: &[&[&str]] = match self {
            ThreadKind::Main => &[EVERY_THREAD, FILE_IO, SOCKETS, THREADS, MAIN_ONLY],
            // KVM_RUN and device emulation on the vCPU's thread: KVM
            // ioctls, disk I/O, the NIC's backend, serial output.
            ThreadKind::Vcpu => &[EVERY_THREAD, FILE_IO, SOCKETS],
            ThreadKind::Device => &[EVERY_THREAD, FILE_IO, SOCKETS, OPEN_FILES],
            ThreadKind::Vnc => &[EVERY_THREAD, SOCKETS, THREADS, &["read", "fcntl", "ioctl"]],
            ThreadKind::Control => &[EVERY_THREAD, FILE_IO, SOCKETS, THREADS, OPEN_FILES],
            ThreadKind::Serial => &[EVERY_THREAD, SOCKETS, THREADS, &["read", "fcntl"]],
        };
        let mut names: Vec<&str> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        names.sort_unstable();
        names.dedup();
        names
    }

    /// Calls answered with an error number rather than allowed or fatal.
    pub fn refused(self) -> Vec<(&'static str, i32)> {
        let mut refused = vec![("clone3", libc::ENOSYS)];
        if !self.allowed().contains(&"openat") {
            refused.push(("openat", libc::EACCES));
        }
        refused
    }
}

impl ThreadKind {
    /// Socket families this kind may not create (EACCES).
    pub fn refused_socket_families(self) -> &'static [i32] {
        match self {
            ThreadKind::Main => &[],
            _ => &[libc::AF_UNIX],
        }
    }
}

/// The filter answering `socket(family, …)` with EACCES for each of
/// `families`, and allowing everything else.
fn socket_family_filter(
    families: &[i32],
    arch: TargetArch,
) -> Result<SeccompFilter, seccompiler::BackendError> {
    let rules = families
        .iter()
        .map(|&family| {
            SeccompRule::new(vec![SeccompCondition::new(
                0,
                SeccompCmpArgLen::Dword,
                SeccompCmpOp::Eq,
                family as u64,
            )?])
        })
        .collect::<Result<Vec<_>, _>>()?;
    SeccompFilter::new(
        BTreeMap::from([(libc::SYS_socket, rules)]),
        SeccompAction::Allow,
        SeccompAction::Errno(libc::EACCES as u32),
        arch,
    )
}

/// The number of `name`, from the kernel's table.
pub fn number(name: &str) -> Option<i64> {
    SYSCALLS.iter().find(|(n, _)| *n == name).map(|&(_, nr)| nr)
}

/// The name of call `nr`, for the log.
pub fn name(nr: i64) -> Option<&'static str> {
    SYSCALLS
        .iter()
        .find(|&&(_, n)| n == nr)
        .map(|&(name, _)| name)
}

/// `ioctl` only with the requests `kind` makes ([`super::ioctls`]).
fn ioctl_rules(kind: ThreadKind) -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    kind.ioctl_requests()
        .into_iter()
        .map(|request| {
            // The kernel takes the request as an unsigned int: compare its
            // low 32 bits.
            let condition = match request {
                Request::Is(number) => {
                    SeccompCondition::new(1, SeccompCmpArgLen::Dword, SeccompCmpOp::Eq, number)?
                }
                Request::OfType(ty) => SeccompCondition::new(
                    1,
                    SeccompCmpArgLen::Dword,
                    SeccompCmpOp::MaskedEq(0xff00),
                    u64::from(ty) << 8,
                )?,
            };
            SeccompRule::new(vec![condition])
        })
        .collect()
}

/// `clone` only for a thread (CLONE_THREAD set): never a new process.
fn thread_clone_rule() -> Result<Vec<SeccompRule>, seccompiler::BackendError> {
    let flag = libc::CLONE_THREAD as u64;
    Ok(vec![SeccompRule::new(vec![SeccompCondition::new(
        0,
        SeccompCmpArgLen::Qword,
        SeccompCmpOp::MaskedEq(flag),
        flag,
    )?])?])
}

/// A kind's programs: the allow-list (SIGSYS on anything else) and, when
/// some calls are refused, a second filter that answers those with their
/// error (the kernel prefers the error to the allow-list's trap).
pub fn programs(kind: ThreadKind) -> Result<Vec<BpfProgram>, String> {
    let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> = BTreeMap::new();
    for call in kind.allowed() {
        let nr = number(call).ok_or_else(|| format!("no system call named {call}"))?;
        let chain = match call {
            "clone" => thread_clone_rule().map_err(|e| e.to_string())?,
            "ioctl" => {
                let rules = ioctl_rules(kind).map_err(|e| e.to_string())?;
                // No rule would mean any request: no ioctl at all instead.
                if rules.is_empty() {
                    continue;
                }
                rules
            }
            _ => Vec::new(),
        };
        rules.insert(nr, chain);
    }
    let mut programs = Vec::new();
    let refused = kind.refused();
    if !refused.is_empty() {
        // Also on the allow-list's side, so that it does not trap them.
        for (call, _) in &refused {
            let nr = number(call).ok_or_else(|| format!("no system call named {call}"))?;
            rules.insert(nr, Vec::new());
        }
    }
    let allow = SeccompFilter::new(rules, SeccompAction::Trap, SeccompAction::Allow, arch)
        .map_err(|e| e.to_string())?;
    programs.push(BpfProgram::try_from(allow).map_err(|e| e.to_string())?);
    for (call, errno) in refused {
        let nr = number(call).ok_or_else(|| format!("no system call named {call}"))?;
        let filter = SeccompFilter::new(
            BTreeMap::from([(nr, Vec::new())]),
            SeccompAction::Allow,
            SeccompAction::Errno(errno as u32),
            arch,
        )
        .map_err(|e| e.to_string())?;
        programs.push(BpfProgram::try_from(filter).map_err(|e| e.to_string())?);
    }
    let families = kind.refused_socket_families();
    if !families.is_empty() {
        let filter = socket_family_filter(families, arch).map_err(|e| e.to_string())?;
        programs.push(BpfProgram::try_from(filter).map_err(|e| e.to_string())?);
    }
    Ok(programs)
}

/// Installs `programs` on the calling thread.
pub fn apply(programs: &[BpfProgram]) -> Result<(), String> {
    for program in programs {
        seccompiler::apply_filter(program).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The SIGSYS handler: names the forbidden call and the thread in the
/// log, then ends the process (as SECCOMP_RET_KILL_PROCESS would, but
/// saying why). Only async-signal-safe calls: `prctl`, `write`, `_exit`.
extern "C" fn on_sigsys(_: libc::c_int, info: *mut libc::siginfo_t, context: *mut libc::c_void) {
    // SAFETY: the kernel passes a valid siginfo for SA_SIGINFO handlers;
    // for SIGSYS from seccomp its union holds `_sigsys`, whose
    // `_syscall` field follows `_call_addr` (a pointer) at the start of
    // the union (uapi asm-generic/siginfo.h), 16 bytes into siginfo_t.
    let nr = unsafe {
        let base = info
            .cast::<u8>()
            .add(16 + std::mem::size_of::<*mut libc::c_void>());
        i64::from(base.cast::<libc::c_int>().read_unaligned())
    };
    let mut thread = [0u8; 17];
    // SAFETY: PR_GET_NAME writes at most 16 bytes and a NUL into `thread`.
    unsafe { libc::prctl(libc::PR_GET_NAME, thread.as_mut_ptr()) };
    let thread_len = thread.iter().position(|&b| b == 0).unwrap_or(16);
    let mut line = [0u8; 256];
    let mut at = 0;
    let mut put = |bytes: &[u8]| {
        let n = bytes.len().min(line.len() - at);
        line[at..at + n].copy_from_slice(&bytes[..n]);
        at += n;
    };
    put(b"vireo: sandbox: thread '");
    put(&thread[..thread_len]);
    put(b"' made the forbidden system call ");
    put(name(nr).unwrap_or("unknown").as_bytes());
    put(b" (");
    let mut digits = [0u8; 20];
    put(format_number(nr.unsigned_abs(), 10, &mut digits));
    put(b")");
    if nr == libc::SYS_ioctl {
        // SAFETY: for an SA_SIGINFO handler the third argument is the
        // interrupted thread's ucontext; at a seccomp trap its registers
        // hold the call's arguments, the request (second) in RSI.
        let request = unsafe {
            let context = &*context.cast::<libc::ucontext_t>();
            context.uc_mcontext.gregs[libc::REG_RSI as usize] as u64 & 0xffff_ffff
        };
        put(b" request 0x");
        put(format_number(request, 16, &mut digits));
    }
    put(b"; the VM process ends\n");
    // SAFETY: writes our own buffer to stderr, then ends the process
    // without running anything else of it (exit_group is on every list).
    unsafe {
        libc::write(2, line.as_ptr().cast(), at);
        libc::_exit(EXIT_FORBIDDEN_CALL);
    }
}

/// `n` in `base` (10 or 16) in `digits`, without allocating (the SIGSYS
/// handler may not).
fn format_number(mut n: u64, base: u64, digits: &mut [u8; 20]) -> &[u8] {
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b"0123456789abcdef"[(n % base) as usize];
        n /= base;
        if n == 0 {
            break;
        }
    }
    &digits[i..]
}

/// The VM process's exit status after a forbidden call: 128 + SIGSYS,
/// what a shell reports for a process the signal killed.
pub const EXIT_FORBIDDEN_CALL: i32 = 128 + libc::SIGSYS;

/// Installs the SIGSYS handler for the whole process.
pub fn install_sigsys_handler() -> Result<(), String> {
    vmm_sys_util::signal::register_signal_handler(libc::SIGSYS, on_sigsys)
        .map_err(|e| format!("cannot install the SIGSYS handler: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_call_has_a_number() {
        for kind in ThreadKind::ALL {
            for call in kind.allowed() {
                assert!(number(call).is_some(), "{kind:?}: {call}");
            }
            assert!(programs(kind).is_ok(), "{kind:?}");
        }
    }

    #[test]
    fn no_kind_may_start_programs_or_trace() {
        for kind in ThreadKind::ALL {
            let allowed = kind.allowed();
            for call in [
                "execve",
                "execveat",
                "ptrace",
                "fork",
                "vfork",
                "process_vm_readv",
                "mount",
                "bpf",
            ] {
                assert!(!allowed.contains(&call), "{kind:?} allows {call}");
            }
        }
    }

    #[test]
    fn numbers_print_in_decimal_and_hex() {
        let mut digits = [0u8; 20];
        assert_eq!(format_number(16, 10, &mut digits), b"16");
        assert_eq!(format_number(0xae80, 16, &mut digits), b"ae80");
        assert_eq!(format_number(0, 16, &mut digits), b"0");
    }

    #[test]
    fn only_the_main_thread_may_make_any_kvm_request_and_none_a_terminals() {
        for kind in ThreadKind::ALL {
            let requests = kind.ioctl_requests();
            assert_eq!(
                requests.contains(&Request::OfType(0xAE)),
                kind == ThreadKind::Main,
                "{kind:?}"
            );
            // TIOCSTI would type into a terminal.
            assert!(!requests.contains(&Request::Is(libc::TIOCSTI)), "{kind:?}");
        }
        assert!(
            ThreadKind::Vcpu
                .ioctl_requests()
                .contains(&Request::Is(0xae80)),
            "KVM_RUN"
        );
    }

    #[test]
    fn names_and_numbers_agree_with_libc() {
        assert_eq!(number("execve"), Some(libc::SYS_execve));
        assert_eq!(number("ptrace"), Some(libc::SYS_ptrace));
        assert_eq!(name(libc::SYS_clone3), Some("clone3"));
        assert_eq!(name(9999), None);
    }
}
