//! The per-disk progress line of long disk work (cloning, merging
//! overlays): `\rCloning vda   42%` on stderr, only when it is a
//! terminal, so scripts and pipes get no carriage returns.

use std::io::IsTerminal;

/// Runs `work`, giving it a progress callback (a disk's target and the
/// fraction done) that redraws the line under `verb`; ends the line
/// afterwards if one was drawn.
pub fn with_disk_progress<T>(verb: &str, work: impl FnOnce(&mut dyn FnMut(&str, f64)) -> T) -> T {
    let show = std::io::stderr().is_terminal();
    let mut shown = false;
    let result = work(&mut |disk, fraction| {
        if show {
            eprint!("\r{verb} {disk}  {:3.0}%", fraction * 100.0);
            shown = true;
        }
    });
    if shown {
        eprintln!();
    }
    result
}
