//! `vireo clone SRC NEW`: virt-clone's new VM from a shut-off one (see
//! `app::clone`), with a progress line on a terminal.

use std::io::IsTerminal;
use std::process::ExitCode;

#[derive(clap::Args)]
pub struct CloneArgs {
    /// The VM to clone (shut off).
    original: String,
    /// The new VM's name.
    name: String,
    /// Instead of copying each writable disk, give the clone a qcow2
    /// overlay whose backing file is the original disk (fast and small;
    /// the original must then stay unchanged while the clone exists).
    #[arg(long)]
    overlay: bool,
}

pub fn clone(args: CloneArgs) -> Result<ExitCode, String> {
    let show = std::io::stderr().is_terminal();
    let mut shown = false;
    let result = crate::app::clone::clone_vm(
        &args.original,
        &args.name,
        args.overlay,
        &mut |disk, fraction| {
            if show {
                eprint!("\rCloning {disk}  {:3.0}%", fraction * 100.0);
                shown = true;
            }
        },
    );
    if shown {
        eprintln!();
    }
    result?;
    println!("Clone '{}' created successfully.", args.name);
    Ok(ExitCode::SUCCESS)
}
