//! `vireo clone SRC NEW`: virt-clone's new VM from a shut-off one (see
//! `app::clone`), with a progress line on a terminal.

use super::disk_progress::with_disk_progress;
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
    with_disk_progress("Cloning", |progress| {
        crate::app::clone::clone_vm(&args.original, &args.name, args.overlay, progress)
    })?;
    println!("Clone '{}' created successfully.", args.name);
    Ok(ExitCode::SUCCESS)
}
