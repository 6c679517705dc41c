//! No new privileges, and every capability dropped but those kept on
//! purpose (CAP_NET_ADMIN for a VM whose bridged NIC Vireo creates: a
//! reset builds the machine, and its TAP device, again).

/// `PR_SET_NO_NEW_PRIVS`: nothing this process runs can gain privileges
/// (and seccomp filters need it without CAP_SYS_ADMIN).
pub fn no_new_privs() -> Result<(), String> {
    // SAFETY: a prctl with integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!(
            "PR_SET_NO_NEW_PRIVS: {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The highest capability number this kernel knows.
fn last_cap() -> u32 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// Keeps only `keep` (capability numbers) in the effective and permitted
/// sets, empties the inheritable and ambient sets, and drops everything
/// else from the bounding set where the process may.
pub fn drop_capabilities(keep: &[u32]) -> Result<(), String> {
    // The bounding set first: dropping from it needs CAP_SETPCAP, which
    // goes below. Without CAP_SETPCAP (an ordinary user) it is left as is;
    // no_new_privs already keeps a later program from using it.
    for cap in 0..=last_cap() {
        if !keep.contains(&cap) {
            // SAFETY: a prctl with integer arguments only.
            unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        }
    }
    // SAFETY: a prctl with integer arguments only.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    let mut data = [CapData::default(); 2];
    for &cap in keep {
        let (word, bit) = ((cap / 32) as usize, 1u32 << (cap % 32));
        if word < data.len() {
            data[word].effective |= bit;
            data[word].permitted |= bit;
        }
    }
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: capset reads a version-3 header and two data structs, which
    // is what `header` and `data` are.
    let result = unsafe {
        libc::syscall(
            libc::SYS_capset,
            std::ptr::from_mut(&mut header),
            data.as_mut_ptr(),
        )
    };
    if result != 0 {
        let error = std::io::Error::last_os_error();
        // Asking to keep one we have not is EPERM: keep none then.
        if !keep.is_empty() {
            return drop_capabilities(&[]);
        }
        return Err(format!("capset: {error}"));
    }
    Ok(())
}
