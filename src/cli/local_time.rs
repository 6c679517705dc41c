//! Dates in the local time zone, as qemu-img and virsh print them
//! (C's `localtime_r` and `strftime("%Y-%m-%d %H:%M:%S")`, plus `%z`).

/// The fields of a broken-down local time.
struct Local {
    tm: libc::tm,
}

fn local(secs: i64) -> Local {
    let time = secs as libc::time_t;
    // SAFETY: an all-zero tm is a valid value for localtime_r to overwrite.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are to live locals; localtime_r is thread-safe.
    unsafe { libc::localtime_r(&time, &mut tm) };
    Local { tm }
}

/// "2026-12-07 08:39:39" in local time.
pub fn date_time(secs: i64) -> String {
    let tm = local(secs).tm;
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec
    )
}

/// "2026-12-07 08:39:39 +0000": virsh's creation time column.
pub fn date_time_zone(secs: i64) -> String {
    let offset = local(secs).tm.tm_gmtoff;
    let sign = if offset < 0 { '-' } else { '+' };
    let minutes = offset.abs() / 60;
    format!(
        "{} {sign}{:02}{:02}",
        date_time(secs),
        minutes / 60,
        minutes % 60
    )
}
