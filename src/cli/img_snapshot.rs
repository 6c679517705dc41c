//! `vireo img snapshot`: qemu-img's internal snapshot verb on a shut-off
//! qcow2 image (`-l` list, `-c` create, `-a` apply, `-d` delete), with
//! qemu-img 7.2's listing layout (QEMU's `bdrv_snapshot_dump`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

use super::img::size_to_str;
use super::local_time::date_time;
use crate::storage::qcow2::snapshot::{self, NewSnapshot, SnapshotInfo};

#[derive(Args)]
#[command(group = clap::ArgGroup::new("action").required(true))]
pub struct SnapshotArgs {
    /// List the image's snapshots.
    #[arg(short = 'l', group = "action")]
    list: bool,
    /// Create a snapshot named SNAPSHOT.
    #[arg(short = 'c', value_name = "SNAPSHOT", group = "action")]
    create: Option<String>,
    /// Revert the image to SNAPSHOT.
    #[arg(short = 'a', value_name = "SNAPSHOT", group = "action")]
    apply: Option<String>,
    /// Delete SNAPSHOT.
    #[arg(short = 'd', value_name = "SNAPSHOT", group = "action")]
    delete: Option<String>,
    /// Image format (only qcow2 has internal snapshots).
    #[arg(short = 'f')]
    format: Option<String>,
    /// Quiet: print nothing on success.
    #[arg(short = 'q')]
    quiet: bool,
    file: PathBuf,
}

/// One line of `qemu-img snapshot -l`, or its heading for `None`.
pub fn listing_line(snapshot: Option<&SnapshotInfo>) -> String {
    let Some(sn) = snapshot else {
        return format!(
            "{:<10}{:<17}{:>8}{:>20}{:>13}{:>11}",
            "ID", "TAG", "VM SIZE", "DATE", "VM CLOCK", "ICOUNT"
        );
    };
    let secs = sn.vm_clock_nsec / 1_000_000_000;
    let clock = format!(
        "{:02}:{:02}:{:02}.{:03}",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60,
        (sn.vm_clock_nsec / 1_000_000) % 1000
    );
    let icount = sn.icount.map(|i| i.to_string()).unwrap_or_default();
    format!(
        "{:<9} {:<16} {:>8}{:>20}{:>13}{:>11}",
        sn.id,
        sn.name,
        size_to_str(sn.vm_state_size),
        date_time(i64::from(sn.date_sec)),
        clock,
        icount
    )
}

pub fn run(args: SnapshotArgs) -> Result<ExitCode, String> {
    if args.format.as_deref().is_some_and(|f| f != "qcow2") {
        return Err(format!(
            "Could not open '{}': only qcow2 images have internal snapshots",
            args.file.display()
        ));
    }
    let file = &args.file;
    if args.list {
        let snapshots = snapshot::list(file)
            .map_err(|e| format!("Could not open '{}': {e}", file.display()))?;
        if !snapshots.is_empty() {
            println!("Snapshot list:");
            println!("{}", listing_line(None));
            for sn in &snapshots {
                println!("{}", listing_line(Some(sn)));
            }
        }
    } else if let Some(name) = args.create {
        let new = NewSnapshot {
            name: name.clone(),
            ..NewSnapshot::default()
        };
        snapshot::create(file, &new)
            .map_err(|e| format!("Could not create snapshot '{name}': {e}"))?;
    } else if let Some(name) = args.apply {
        snapshot::apply(file, &name)
            .map_err(|e| format!("Could not apply snapshot '{name}': {e}"))?;
    } else if let Some(name) = args.delete {
        snapshot::delete(file, &name)
            .map_err(|e| format!("Could not delete snapshot '{name}': {e}"))?;
    }
    let _ = args.quiet;
    Ok(ExitCode::SUCCESS)
}
