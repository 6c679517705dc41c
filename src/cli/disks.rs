//! virsh's disk verbs: attach-disk, detach-disk, change-media,
//! domblklist, domblkinfo. They change the stored definition; a running
//! VM sees the change at its next start (hot-plug is not there yet, and
//! `--live` says so), except for `change-media`, which swaps a running
//! VM's CD-ROM disc through its control socket as `virsh change-media
//! --live` does.

use std::os::unix::fs::MetadataExt;
use std::process::ExitCode;

use clap::Args;

use crate::app::edit::{self, EditError};
use crate::definitions::{Definition, DomainStore};
use crate::domain::Disk;
use crate::vm_process::RunFiles;

type CliResult = Result<ExitCode, String>;

#[derive(Args)]
pub struct Scope {
    /// Change the stored definition (takes effect at the next start).
    #[arg(long)]
    config: bool,
    /// Change the running VM now.
    #[arg(long)]
    live: bool,
    /// Same as --config for a running VM's persistent definition.
    #[arg(long)]
    persistent: bool,
    /// Both --live and --config when running, else --config.
    #[arg(long)]
    current: bool,
}

impl Scope {
    /// The flags as `app::edit` reads them.
    pub(super) fn edit_scope(&self) -> edit::Scope {
        edit::Scope {
            live: self.live,
            config: self.config,
            persistent: self.persistent,
            current: self.current,
        }
    }
}

/// Loads `which` and checks that a device change of `devices` can go to
/// its stored definition (no hot-plug).
pub(super) fn load_for_device_change(
    which: &str,
    scope: &Scope,
    devices: &'static str,
) -> Result<(DomainStore, Definition, bool), String> {
    let (store, definition) = load(which)?;
    let running = RunFiles::new(&definition.name).running().is_some();
    scope
        .edit_scope()
        .stored_only(running, devices)
        .map_err(|e| virsh_error(e, &definition.name))?;
    Ok((store, definition, running))
}

/// Saves a device change through `app::edit::save`, as the GUI does.
pub(super) fn save_device_change(
    store: &DomainStore,
    definition: &Definition,
    domain: &crate::domain::Domain,
    running: bool,
) -> Result<(), String> {
    edit::save(store, definition, domain, running)
        .map(|_| ())
        .map_err(|e| virsh_error(e, &definition.name))
}

/// `app::edit`'s refusals in virsh's words where virsh has some.
pub(super) fn virsh_error(error: EditError, vm: &str) -> String {
    match error {
        EditError::NeedsHotplug(devices) => format!(
            "changing {devices} of a running VM needs hot-plug, which Vireo does not have yet; use --config to change '{vm}' from its next start"
        ),
        EditError::TargetTaken(target) => format!("target {target} already exists in '{vm}'"),
        EditError::NoSuchDevice(which) => {
            format!("no disk found whose source path or target is {which}")
        }
        EditError::BadMac(mac) => format!("unable to parse mac address '{mac}'"),
        EditError::NoSuchInterface { kind, mac } => format!(
            "No interface found whose type is {kind} and MAC address is {}",
            mac.as_deref().unwrap_or("any")
        ),
        EditError::AmbiguousInterface(count) => format!(
            "Domain has {count} interfaces. Please specify which one to detach using --mac"
        ),
        other => other.to_string(),
    }
}

fn load(which: &str) -> Result<(DomainStore, Definition), String> {
    let store = DomainStore::open();
    let definition = store.find(which).map_err(|e| e.to_string())?;
    Ok((store, definition))
}

fn save(store: &DomainStore, domain: &crate::domain::Domain) -> Result<(), String> {
    store
        .define(&domain.to_xml())
        .map(|_| ())
        .map_err(|e| e.to_string())
}

#[derive(Args)]
pub struct AttachDiskArgs {
    domain: String,
    source: String,
    target: String,
    /// ide or virtio (default: from the target name, vdX is virtio).
    #[arg(long)]
    targetbus: Option<String>,
    /// disk or cdrom.
    #[arg(long = "type", default_value = "disk")]
    kind: String,
    /// readonly or shareable.
    #[arg(long)]
    mode: Option<String>,
    /// The image format (raw or qcow2); `--driver qemu` is accepted and implied.
    #[arg(long)]
    subdriver: Option<String>,
    #[arg(long)]
    driver: Option<String>,
    #[command(flatten)]
    scope: Scope,
}

pub fn attach_disk(args: AttachDiskArgs) -> CliResult {
    let (store, definition, running) = load_for_device_change(&args.domain, &args.scope, "disks")?;
    let (readonly, shareable) = match args.mode.as_deref() {
        Some("readonly") => (true, false),
        Some("shareable") => (false, true),
        Some(other) => return Err(format!("--mode {other} is not readonly or shareable")),
        None => (false, false),
    };
    let spec = edit::DiskSpec {
        device: args.kind,
        source: Some(edit::DiskSource::Existing(args.source.into())),
        target: Some(args.target),
        bus: args.targetbus,
        format: args.subdriver,
        readonly,
        shareable,
    };
    let mut domain = definition.domain().clone();
    edit::attach_disk(&mut domain, &spec).map_err(|e| virsh_error(e, &definition.name))?;
    save_device_change(&store, &definition, &domain, running)?;
    println!("Disk attached successfully\n");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct DetachDiskArgs {
    domain: String,
    /// The drive's target name or image path.
    target: String,
    #[command(flatten)]
    scope: Scope,
}

pub fn detach_disk(args: DetachDiskArgs) -> CliResult {
    let (store, definition, running) = load_for_device_change(&args.domain, &args.scope, "disks")?;
    let mut domain = definition.domain().clone();
    edit::detach_disk(&mut domain, &args.target).map_err(|e| virsh_error(e, &definition.name))?;
    save_device_change(&store, &definition, &domain, running)?;
    println!("Disk detached successfully\n");
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct ChangeMediaArgs {
    domain: String,
    /// The drive's target (`hdc`, `sda`).
    target: String,
    /// The image to put in (with --insert or --update).
    source: Option<String>,
    /// Put a disc into an empty drive (the image as SOURCE or --insert FILE).
    #[arg(long, num_args = 0..=1, value_name = "FILE", conflicts_with_all = ["eject", "update"])]
    insert: Option<Option<String>>,
    /// Take the disc out.
    #[arg(long, conflicts_with = "update")]
    eject: bool,
    /// Swap the disc for SOURCE (eject when none is given); the default.
    #[arg(long)]
    update: bool,
    /// Override a lock the guest put on the tray of a running VM.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    scope: Scope,
}

/// What `change-media` does to the drive.
#[derive(Debug, Clone, PartialEq, Eq)]
enum MediaAction {
    Eject,
    Insert(String),
    Update(Option<String>),
}

impl ChangeMediaArgs {
    /// virsh's rules: --eject takes no source, --insert needs one, and
    /// --update (the default) with none ejects.
    fn action(&self) -> Result<MediaAction, String> {
        let source = match (&self.insert, &self.source) {
            (Some(Some(_)), Some(_)) => return Err("give the image once, as SOURCE".into()),
            (Some(Some(file)), None) => Some(file.clone()),
            (_, source) => source.clone(),
        };
        if self.eject {
            return match source {
                Some(_) => Err("--eject takes no SOURCE".into()),
                None => Ok(MediaAction::Eject),
            };
        }
        if self.insert.is_some() {
            return source
                .map(MediaAction::Insert)
                .ok_or_else(|| "--insert needs the image to put in (SOURCE)".into());
        }
        Ok(MediaAction::Update(source))
    }
}

/// Where a change applies: the running VM, the stored definition, or both
/// (virsh's --live, --config, --current, --persistent: a running VM's
/// change is live only unless --config, --current or --persistent also
/// asks for the definition).
fn media_scope(scope: &Scope, running: bool) -> Result<(bool, bool), String> {
    let explicit = scope.live || scope.config || scope.persistent;
    let live = scope.live || (running && (scope.current || scope.persistent || !explicit));
    let config =
        scope.config || scope.persistent || (!running && !scope.live) || (running && scope.current);
    if live && !running {
        return Err("the VM is not running: --live needs a running VM (use --config)".into());
    }
    Ok((live, config))
}

pub fn change_media(args: ChangeMediaArgs) -> CliResult {
    let action = args.action()?;
    let store = DomainStore::open();
    let definition = store.find(&args.domain);
    // A running VM started from a definition is known by that name; a
    // name the store does not know can still be a running VM.
    let name = match &definition {
        Ok(definition) => definition.name.clone(),
        Err(_) => args.domain.clone(),
    };
    let running = RunFiles::new(&name).running().is_some();
    let (live, config) = media_scope(&args.scope, running)?;
    let mut stored = None;
    if config {
        let definition = definition.map_err(|e| e.to_string())?;
        let domain = definition.domain().clone();
        let (index, disk) = domain
            .disk(&args.target)
            .map_err(|e| e.to_string())?
            .ok_or_else(|| format!("no disk {} in '{}'", args.target, name))?;
        if disk.device != "cdrom" && disk.device != "floppy" {
            return Err(format!(
                "{} is a {}, not removable media",
                args.target, disk.device
            ));
        }
        match (&action, &disk.source) {
            (MediaAction::Insert(_), Some(_)) => {
                return Err(format!(
                    "the disk device '{}' already has media (use --update)",
                    args.target
                ))
            }
            (MediaAction::Eject, None) => {
                return Err(format!(
                    "the disk device '{}' doesn't have media",
                    args.target
                ))
            }
            _ => {}
        }
        stored = Some((domain, index, disk));
    }
    let source = match &action {
        MediaAction::Insert(path) | MediaAction::Update(Some(path)) => {
            Some(std::fs::canonicalize(path).map_err(|e| format!("cannot insert {path}: {e}"))?)
        }
        MediaAction::Eject | MediaAction::Update(None) => None,
    };
    // The running VM first: if it refuses (a locked tray, a file it cannot
    // open) the definition stays as it was.
    if live {
        crate::app::media::change_medium(&name, &args.target, source.as_deref(), args.force)
            .map_err(|e| {
                format!(
                    "cannot change the medium of {} in '{name}': {e}",
                    args.target
                )
            })?;
    }
    if let Some((mut domain, index, mut disk)) = stored {
        disk.source = source.as_ref().map(|p| p.to_string_lossy().into_owned());
        domain.update_device(index, &disk);
        save(&store, &domain)?;
    }
    println!(
        "{}",
        match (&action, &source) {
            (_, None) => "Successfully ejected media.",
            (MediaAction::Insert(_), Some(_)) => "Successfully inserted media.",
            _ => "Successfully updated media.",
        }
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(Args)]
pub struct BlkListArgs {
    domain: String,
    /// Also show the type and device of each disk.
    #[arg(long)]
    details: bool,
}

pub fn domblklist(args: BlkListArgs) -> CliResult {
    let (_, definition) = load(&args.domain)?;
    let disks = definition.domain().disks().map_err(|e| e.to_string())?;
    let source = |d: &Disk| d.source.clone().unwrap_or_else(|| "-".into());
    let table = if args.details {
        let rows: Vec<Vec<String>> = disks
            .iter()
            .map(|d| {
                vec![
                    d.disk_type.clone(),
                    d.device.clone(),
                    d.target_dev.clone(),
                    source(d),
                ]
            })
            .collect();
        super::table::render(&["Type", "Device", "Target", "Source"], &rows)
    } else {
        let rows: Vec<Vec<String>> = disks
            .iter()
            .map(|d| vec![d.target_dev.clone(), source(d)])
            .collect();
        super::table::render(&["Target", "Source"], &rows)
    };
    println!("{table}");
    Ok(ExitCode::SUCCESS)
}

pub fn domblkinfo(which: &str, target: &str) -> CliResult {
    let (_, definition) = load(which)?;
    let (_, disk) = definition
        .domain()
        .disk(target)
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("no disk {target} in '{}'", definition.name))?;
    let path = disk
        .source
        .ok_or_else(|| format!("{target} has no medium"))?;
    let meta = std::fs::metadata(&path).map_err(|e| format!("cannot read {path}: {e}"))?;
    let capacity = crate::storage::virtual_size(std::path::Path::new(&path)).unwrap_or(meta.len());
    println!("Capacity:       {capacity}");
    println!("Allocation:     {}", meta.blocks() * 512);
    println!("Physical:       {}\n", meta.len());
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: ChangeMediaArgs,
    }

    fn parse(line: &[&str]) -> ChangeMediaArgs {
        let mut argv = vec!["change-media"];
        argv.extend_from_slice(line);
        Cli::try_parse_from(argv).unwrap().args
    }

    #[test]
    fn change_media_follows_virshs_forms() {
        use MediaAction::*;
        let action = |line: &[&str]| parse(line).action();
        assert_eq!(
            action(&["vm", "hdc", "a.iso"]),
            Ok(Update(Some("a.iso".into())))
        );
        assert_eq!(
            action(&["vm", "hdc", "a.iso", "--update"]),
            Ok(Update(Some("a.iso".into())))
        );
        assert_eq!(action(&["vm", "hdc", "--update"]), Ok(Update(None)));
        assert_eq!(
            action(&["vm", "hdc", "a.iso", "--insert"]),
            Ok(Insert("a.iso".into()))
        );
        assert_eq!(
            action(&["vm", "hdc", "--insert", "a.iso"]),
            Ok(Insert("a.iso".into()))
        );
        assert_eq!(action(&["vm", "hdc", "--eject"]), Ok(Eject));
        assert!(action(&["vm", "hdc", "a.iso", "--eject"]).is_err());
        assert!(action(&["vm", "hdc", "--insert"]).is_err());
        let both = ["change-media", "vm", "hdc", "--eject", "--update"];
        assert!(Cli::try_parse_from(both).is_err());
        assert!(parse(&["vm", "hdc", "--eject", "--force", "--live"]).force);
    }

    #[test]
    fn change_media_scope_is_virshs() {
        let scope = |line: &[&str], running| media_scope(&parse(line).scope, running);
        let base = ["vm", "hdc", "--eject"];
        let with = |flags: &[&'static str]| {
            let mut line = base.to_vec();
            line.extend_from_slice(flags);
            line
        };
        // (live, config)
        assert_eq!(scope(&base, true), Ok((true, false)));
        assert_eq!(scope(&base, false), Ok((false, true)));
        assert_eq!(scope(&with(&["--live"]), true), Ok((true, false)));
        assert!(scope(&with(&["--live"]), false).is_err());
        assert_eq!(scope(&with(&["--config"]), true), Ok((false, true)));
        assert_eq!(
            scope(&with(&["--live", "--config"]), true),
            Ok((true, true))
        );
        assert_eq!(scope(&with(&["--persistent"]), true), Ok((true, true)));
        assert_eq!(scope(&with(&["--current"]), true), Ok((true, true)));
        assert_eq!(scope(&with(&["--current"]), false), Ok((false, true)));
    }
}
