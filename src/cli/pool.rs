//! `vireo pool-*` and `vol-*`: virsh's storage verbs, with virsh's flags,
//! messages and table layouts, so scripts written for virsh keep working.
//!
//! As virsh does, every successful verb ends its output with an empty line.
//! Long copies and allocations show a progress line on stderr when stderr is
//! a terminal.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand};

use crate::definitions::PoolStore;
use crate::storage::pools::{
    parse_size, pretty_capacity, NewVolume, Pool, PoolDef, PoolError, ResizeFlags, VolumeDef,
    VolumeFormat,
};

/// The storage verbs, flattened into the top-level command list.
#[derive(Subcommand)]
pub enum PoolCommand {
    /// Define a directory pool: `pool-define-as NAME dir --target PATH`.
    PoolDefineAs(DefineAsArgs),
    /// Define (or redefine) a pool from a pool XML file.
    PoolDefine(PoolFileArgs),
    /// Create and start a transient pool from a pool XML file; it is gone once destroyed.
    PoolCreate(PoolCreateArgs),
    /// Create a pool's directory.
    PoolBuild(PoolBuildArgs),
    /// Start (activate) a pool.
    PoolStart(PoolStartArgs),
    /// Stop (deactivate) a pool; its files stay.
    PoolDestroy(PoolArg),
    /// Remove a pool's definition; its directory and files stay.
    PoolUndefine(PoolArg),
    /// Start a pool automatically at boot, or with --disable stop doing so.
    PoolAutostart(PoolAutostartArgs),
    /// List pools.
    PoolList(PoolListArgs),
    /// Show a pool's state and space.
    PoolInfo(PoolInfoArgs),
    /// Re-read a pool's volumes.
    PoolRefresh(PoolArg),
    /// Print a pool's XML.
    PoolDumpxml(PoolDumpxmlArgs),
    /// Print a pool's UUID.
    PoolUuid(PoolArg),
    /// Create a volume: `vol-create-as POOL NAME SIZE --format qcow2`.
    VolCreateAs(VolCreateAsArgs),
    /// Create a volume from a volume XML file: `vol-create POOL FILE`.
    VolCreate(VolCreateArgs),
    /// Create a volume from a volume XML file with another volume's contents: `vol-create-from POOL FILE VOL`.
    VolCreateFrom(VolCreateFromArgs),
    /// List the volumes of a pool.
    VolList(VolListArgs),
    /// Show a volume's type and sizes.
    VolInfo(VolInfoArgs),
    /// Print a volume's path.
    VolPath(VolArg),
    /// Print a volume's key (its path, in a directory pool).
    VolKey(VolArg),
    /// Print a volume's XML.
    VolDumpxml(VolArg),
    /// Delete a volume and its file.
    VolDelete(VolDeleteArgs),
    /// Change a volume's size.
    VolResize(VolResizeArgs),
    /// Copy a volume within its pool.
    VolClone(VolCloneArgs),
    /// Copy a file's bytes into a volume.
    VolUpload(VolTransferArgs),
    /// Copy a volume's bytes into a file.
    VolDownload(VolTransferArgs),
}

#[derive(Args)]
pub struct DefineAsArgs {
    /// Name of the new pool.
    name: String,
    /// Pool type; Vireo has `dir`.
    #[arg(value_name = "TYPE")]
    kind: String,
    /// The directory holding the pool's volumes.
    #[arg(long)]
    target: Option<PathBuf>,
    /// Print the XML instead of defining the pool.
    #[arg(long)]
    print_xml: bool,
}

#[derive(Args)]
pub struct PoolFileArgs {
    /// A file with a libvirt pool XML description.
    file: PathBuf,
}

#[derive(Args)]
pub struct PoolCreateArgs {
    /// A file with a libvirt pool XML description.
    file: PathBuf,
    /// Create the pool's directory first.
    #[arg(long)]
    build: bool,
    /// Accepted for virsh compatibility, with --build; a directory pool never overwrites.
    #[arg(long)]
    overwrite: bool,
    /// Accepted for virsh compatibility, with --build.
    #[arg(long)]
    no_overwrite: bool,
}

#[derive(Args)]
pub struct VolCreateArgs {
    /// Pool name.
    pool: String,
    /// A file with a libvirt volume XML description.
    file: PathBuf,
    /// Preallocate qcow2 metadata instead of nothing.
    #[arg(long)]
    prealloc_metadata: bool,
}

#[derive(Args)]
pub struct VolCreateFromArgs {
    /// Pool of the new volume.
    pool: String,
    /// A file with a libvirt volume XML description of the new volume.
    file: PathBuf,
    /// The volume whose contents the new one gets (a name, or a path).
    vol: String,
    /// The pool of the input volume (default: a path in any pool, or a name in POOL).
    #[arg(long)]
    inputpool: Option<String>,
    /// Preallocate qcow2 metadata instead of nothing.
    #[arg(long)]
    prealloc_metadata: bool,
    /// Accepted for virsh compatibility; Vireo copies.
    #[arg(long)]
    reflink: bool,
}

#[derive(Args)]
pub struct PoolArg {
    /// Pool name.
    pool: String,
}

#[derive(Args)]
pub struct PoolBuildArgs {
    pool: String,
    /// Accepted for virsh compatibility; a directory pool never overwrites.
    #[arg(long)]
    overwrite: bool,
    /// Accepted for virsh compatibility.
    #[arg(long)]
    no_overwrite: bool,
}

#[derive(Args)]
pub struct PoolStartArgs {
    pool: String,
    /// Build the pool's directory first.
    #[arg(long)]
    build: bool,
}

#[derive(Args)]
pub struct PoolAutostartArgs {
    pool: String,
    /// Turn autostart off.
    #[arg(long)]
    disable: bool,
}

#[derive(Args)]
pub struct PoolListArgs {
    /// Active and inactive pools.
    #[arg(long)]
    all: bool,
    /// Inactive pools only.
    #[arg(long)]
    inactive: bool,
    /// Pools marked autostart only.
    #[arg(long)]
    autostart: bool,
    /// Pools not marked autostart only.
    #[arg(long)]
    no_autostart: bool,
    /// Persistent pools only.
    #[arg(long)]
    persistent: bool,
    /// Transient pools only (made by pool-create).
    #[arg(long)]
    transient: bool,
    /// State, persistence, capacity, allocation and free space.
    #[arg(long)]
    details: bool,
    /// Names only, one a line.
    #[arg(long)]
    name: bool,
    /// UUIDs only, one a line.
    #[arg(long)]
    uuid: bool,
}

#[derive(Args)]
pub struct PoolInfoArgs {
    pool: String,
    /// Sizes in bytes instead of KiB/MiB/GiB.
    #[arg(long)]
    bytes: bool,
}

#[derive(Args)]
pub struct PoolDumpxmlArgs {
    pool: String,
    /// The stored definition, without live sizes.
    #[arg(long)]
    inactive: bool,
}

#[derive(Args)]
pub struct VolCreateAsArgs {
    /// Pool name.
    pool: String,
    /// Name of the new volume.
    name: String,
    /// Size, as virsh reads it: bytes, or with a suffix (K, M, G, T, KiB, MB, …).
    capacity: String,
    /// Bytes to allocate up front (raw); default all of the capacity.
    #[arg(long)]
    allocation: Option<String>,
    /// raw or qcow2.
    #[arg(long, default_value = "raw")]
    format: String,
    /// The backing volume, by name in the pool or by path.
    #[arg(long)]
    backing_vol: Option<String>,
    /// Format of the backing volume; probed when not given.
    #[arg(long)]
    backing_vol_format: Option<String>,
    /// Preallocate qcow2 metadata instead of nothing.
    #[arg(long)]
    prealloc_metadata: bool,
    /// Print the volume XML instead of creating the volume.
    #[arg(long)]
    print_xml: bool,
}

/// A pool given positionally or with `--pool`, as virsh accepts both.
#[derive(Args)]
pub struct VolListArgs {
    #[arg(value_name = "POOL")]
    pool_arg: Option<String>,
    #[arg(long)]
    pool: Option<String>,
    /// Type, capacity and allocation.
    #[arg(long)]
    details: bool,
}

#[derive(Args)]
pub struct VolArg {
    /// Volume name (with its pool), or its path.
    vol: String,
    #[arg(value_name = "POOL")]
    pool_arg: Option<String>,
    /// Pool name.
    #[arg(long)]
    pool: Option<String>,
}

#[derive(Args)]
pub struct VolInfoArgs {
    #[command(flatten)]
    vol: VolArg,
    /// Sizes in bytes.
    #[arg(long)]
    bytes: bool,
    /// Show the file's length (Physical) instead of its allocation.
    #[arg(long)]
    physical: bool,
}

#[derive(Args)]
pub struct VolDeleteArgs {
    #[command(flatten)]
    vol: VolArg,
    /// Accepted for virsh compatibility; volumes in a directory pool have no snapshots of their own.
    #[arg(long)]
    delete_snapshots: bool,
}

#[derive(Args)]
pub struct VolResizeArgs {
    vol: String,
    /// New size, or with --delta the change; a leading '-' (with --shrink) shrinks by that much.
    #[arg(allow_hyphen_values = true)]
    capacity: String,
    #[arg(value_name = "POOL")]
    pool_arg: Option<String>,
    #[arg(long)]
    pool: Option<String>,
    /// Allocate the added space instead of leaving it sparse.
    #[arg(long)]
    allocate: bool,
    /// CAPACITY is a change to the current size.
    #[arg(long)]
    delta: bool,
    /// Allow the volume to get smaller.
    #[arg(long)]
    shrink: bool,
}

#[derive(Args)]
pub struct VolCloneArgs {
    vol: String,
    /// Name of the copy.
    newname: String,
    #[arg(value_name = "POOL")]
    pool_arg: Option<String>,
    #[arg(long)]
    pool: Option<String>,
    /// Accepted for virsh compatibility; the copy keeps the source's layout.
    #[arg(long)]
    prealloc_metadata: bool,
    /// Accepted for virsh compatibility; Vireo copies, keeping holes.
    #[arg(long)]
    reflink: bool,
}

#[derive(Args)]
pub struct VolTransferArgs {
    vol: String,
    /// The local file.
    file: PathBuf,
    #[arg(value_name = "POOL")]
    pool_arg: Option<String>,
    #[arg(long)]
    pool: Option<String>,
    /// Byte offset in the volume.
    #[arg(long, default_value = "0")]
    offset: String,
    /// Bytes to copy (default: all).
    #[arg(long)]
    length: Option<String>,
    /// Keep holes (runs of zeros) as holes.
    #[arg(long)]
    sparse: bool,
}

/// Runs one storage verb.
pub fn run(command: PoolCommand) -> Result<ExitCode, String> {
    let store = PoolStore::open().map_err(|e| e.to_string())?;
    let mut out = String::new();
    execute(&store, command, &mut out).map_err(|e| e.to_string())?;
    // virsh ends every command's output with an empty line.
    out.push('\n');
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|_| stdout.flush())
        .map_err(|e| format!("cannot write output: {e}"))?;
    Ok(ExitCode::SUCCESS)
}

fn either(
    positional: Option<String>,
    flag: Option<String>,
    what: &str,
) -> Result<String, PoolError> {
    match (positional, flag) {
        (Some(a), Some(b)) if a != b => Err(PoolError::Unsupported(format!(
            "two {what}s given ('{a}' and --{what} '{b}'); give one"
        ))),
        (Some(a), _) | (None, Some(a)) => Ok(a),
        (None, None) => Err(PoolError::Unsupported(format!(
            "which {what}? give its name, or --{what} NAME; list them with `vireo pool-list --all`"
        ))),
    }
}

fn size(text: &str) -> Result<u64, PoolError> {
    parse_size(text).map_err(|e| PoolError::Unsupported(e.to_string()))
}

fn format_arg(text: &str) -> Result<VolumeFormat, PoolError> {
    match VolumeFormat::from_name(text) {
        Some(format @ (VolumeFormat::Raw | VolumeFormat::Qcow2)) => Ok(format),
        _ => Err(PoolError::Unsupported(format!(
            "unsupported volume format '{text}'; use --format raw or --format qcow2"
        ))),
    }
}

/// Runs one verb against `store`, writing what virsh prints to `out`.
fn execute(store: &PoolStore, command: PoolCommand, out: &mut String) -> Result<(), PoolError> {
    use std::fmt::Write as _;
    match command {
        PoolCommand::PoolDefineAs(args) => pool_define_as(store, args, out)?,
        PoolCommand::PoolDefine(args) => {
            let pool = store.define_or_update(PoolDef::from_xml(&read_xml(&args.file)?)?)?;
            let _ = writeln!(
                out,
                "Pool {} defined from {}",
                pool.def.name,
                args.file.display()
            );
        }
        PoolCommand::PoolCreate(args) => {
            let def = PoolDef::from_xml(&read_xml(&args.file)?)?;
            let pool = store.create(def, args.build)?;
            let _ = writeln!(
                out,
                "Pool {} created from {}",
                pool.def.name,
                args.file.display()
            );
        }
        PoolCommand::PoolBuild(args) => {
            store.build(&args.pool)?;
            let _ = writeln!(out, "Pool {} built", args.pool);
        }
        PoolCommand::PoolStart(args) => {
            if args.build {
                store.build(&args.pool)?;
            }
            store.start(&args.pool)?;
            let _ = writeln!(out, "Pool {} started", args.pool);
        }
        PoolCommand::PoolDestroy(args) => {
            store.destroy(&args.pool)?;
            let _ = writeln!(out, "Pool {} destroyed", args.pool);
        }
        PoolCommand::PoolUndefine(args) => {
            store.undefine(&args.pool)?;
            let _ = writeln!(out, "Pool {} has been undefined", args.pool);
        }
        PoolCommand::PoolAutostart(args) => {
            store.set_autostart(&args.pool, !args.disable)?;
            let what = if args.disable { "unmarked" } else { "marked" };
            let _ = writeln!(out, "Pool {} {what} as autostarted", args.pool);
        }
        PoolCommand::PoolList(args) => pool_list(store, &args, out)?,
        PoolCommand::PoolInfo(args) => pool_info(store, args, out)?,
        PoolCommand::PoolRefresh(args) => {
            // Volumes are read from the directory each time; refreshing
            // checks the pool is running and its directory readable.
            let pool = store.get(&args.pool)?;
            pool.volumes()?;
            let _ = writeln!(out, "Pool {} refreshed", args.pool);
        }
        PoolCommand::PoolDumpxml(args) => {
            out.push_str(&store.get(&args.pool)?.to_xml(args.inactive)?);
        }
        PoolCommand::PoolUuid(args) => {
            let _ = writeln!(out, "{}", store.get(&args.pool)?.def.uuid);
        }
        PoolCommand::VolCreateAs(args) => vol_create_as(store, args, out)?,
        PoolCommand::VolCreate(args) => {
            let pool = store.get(&args.pool)?;
            let spec = volume_spec(&read_xml(&args.file)?, args.prealloc_metadata)?;
            with_progress(&format!("Allocating {}", spec.name), |progress| {
                pool.create_volume(&spec, progress)
            })?;
            let _ = writeln!(
                out,
                "Vol {} created from {}",
                spec.name,
                args.file.display()
            );
        }
        PoolCommand::VolCreateFrom(args) => vol_create_from(store, args, out)?,
        PoolCommand::VolList(args) => vol_list(store, args, out)?,
        PoolCommand::VolInfo(args) => vol_info(store, args, out)?,
        PoolCommand::VolPath(args) | PoolCommand::VolKey(args) => {
            let (pool, name) = find(store, args)?;
            let _ = writeln!(out, "{}", pool.volume_path(&name)?.display());
        }
        PoolCommand::VolDumpxml(args) => {
            let (pool, name) = find(store, args)?;
            out.push_str(&pool.volume(&name)?.to_xml());
        }
        PoolCommand::VolDelete(args) => {
            let (pool, name) = find(store, args.vol)?;
            pool.delete_volume(&name)?;
            let _ = writeln!(out, "Vol {name} deleted");
        }
        PoolCommand::VolResize(args) => vol_resize(store, args, out)?,
        PoolCommand::VolClone(args) => vol_clone(store, args, out)?,
        PoolCommand::VolUpload(args) => vol_upload(store, args)?,
        PoolCommand::VolDownload(args) => vol_download(store, args)?,
    }
    Ok(())
}

/// `pool-define-as NAME dir --target PATH [--print-xml]`.
fn pool_define_as(
    store: &PoolStore,
    args: DefineAsArgs,
    out: &mut String,
) -> Result<(), PoolError> {
    use std::fmt::Write as _;
    if args.kind != "dir" {
        return Err(PoolError::Unsupported(format!(
            "pool type '{}' is not supported; Vireo has directory pools: `vireo pool-define-as {} dir --target PATH`",
            args.kind, args.name
        )));
    }
    let target = args.target.ok_or_else(|| {
        PoolError::Unsupported(format!(
            "a dir pool needs a directory: `vireo pool-define-as {} dir --target PATH`",
            args.name
        ))
    })?;
    if args.print_xml {
        crate::storage::pools::validate_name("pool", &args.name)?;
        let _ = write!(
            out,
            "<pool type='dir'>\n  <name>{}</name>\n  <target>\n    <path>{}</path>\n  </target>\n</pool>\n",
            crate::storage::pools::xml::escape(&args.name),
            crate::storage::pools::xml::escape(&target.to_string_lossy())
        );
        return Ok(());
    }
    store.define_dir(&args.name, &target)?;
    let _ = writeln!(out, "Pool {} defined", args.name);
    Ok(())
}

/// `pool-info POOL [--bytes]`.
fn pool_info(store: &PoolStore, args: PoolInfoArgs, out: &mut String) -> Result<(), PoolError> {
    use std::fmt::Write as _;
    let pool = store.get(&args.pool)?;
    let _ = writeln!(out, "{:<15} {}", "Name:", pool.def.name);
    let _ = writeln!(out, "{:<15} {}", "UUID:", pool.def.uuid);
    let _ = writeln!(
        out,
        "{:<15} {}",
        "State:",
        if pool.active { "running" } else { "inactive" }
    );
    let _ = writeln!(out, "{:<15} {}", "Persistent:", yes_no(pool.persistent));
    let _ = writeln!(out, "{:<15} {}", "Autostart:", yes_no(pool.autostart));
    if pool.active {
        let space = pool.space()?;
        for (label, value) in [
            ("Capacity:", space.capacity),
            ("Allocation:", space.allocation),
            ("Available:", space.available),
        ] {
            if args.bytes {
                let _ = writeln!(out, "{label:<15} {value} bytes");
            } else {
                let _ = writeln!(out, "{label:<15} {}", pretty_capacity(value));
            }
        }
    }
    Ok(())
}

/// `vol-list POOL [--details]`.
fn vol_list(store: &PoolStore, args: VolListArgs, out: &mut String) -> Result<(), PoolError> {
    let pool = store.get(&either(args.pool_arg, args.pool, "pool")?)?;
    let volumes = pool.volumes()?;
    if args.details {
        let rows = volumes
            .iter()
            .map(|v| {
                vec![
                    v.name.clone(),
                    v.target.path.display().to_string(),
                    "file".to_string(),
                    pretty_capacity(v.capacity),
                    pretty_capacity(v.allocation),
                ]
            })
            .collect();
        out.push_str(&table(
            &["Name", "Path", "Type", "Capacity", "Allocation"],
            rows,
        ));
    } else {
        let rows = volumes
            .iter()
            .map(|v| vec![v.name.clone(), v.target.path.display().to_string()])
            .collect();
        out.push_str(&table(&["Name", "Path"], rows));
    }
    Ok(())
}

/// `vol-info VOL [POOL] [--bytes] [--physical]`.
fn vol_info(store: &PoolStore, args: VolInfoArgs, out: &mut String) -> Result<(), PoolError> {
    use std::fmt::Write as _;
    let (pool, name) = find(store, args.vol)?;
    let volume = pool.volume(&name)?;
    let _ = writeln!(out, "{:<15} {}", "Name:", volume.name);
    let _ = writeln!(out, "{:<15} file", "Type:");
    let (label, second) = if args.physical {
        ("Physical:", volume.physical.unwrap_or(0))
    } else {
        ("Allocation:", volume.allocation)
    };
    for (label, value) in [("Capacity:", volume.capacity), (label, second)] {
        if args.bytes {
            let _ = writeln!(out, "{label:<15} {value} bytes");
        } else {
            let _ = writeln!(out, "{label:<15} {}", pretty_capacity(value));
        }
    }
    Ok(())
}

/// `vol-resize VOL CAPACITY [POOL] [--delta] [--shrink] [--allocate]`.
fn vol_resize(store: &PoolStore, args: VolResizeArgs, out: &mut String) -> Result<(), PoolError> {
    use std::fmt::Write as _;
    let (pool, name) = find(
        store,
        VolArg {
            vol: args.vol,
            pool_arg: args.pool_arg,
            pool: args.pool,
        },
    )?;
    let text = args.capacity.trim_start();
    let (negative, number) = match text.strip_prefix('-') {
        Some(rest) if args.shrink => (true, rest),
        Some(_) => {
            return Err(PoolError::Unsupported(
                "negative size requires --shrink".into(),
            ))
        }
        None => (false, text),
    };
    let amount = size(number)?;
    let current = pool.volume(&name)?.capacity;
    let capacity = if negative {
        current.checked_sub(amount).ok_or_else(|| {
            PoolError::Unsupported(format!(
                "volume '{name}' is only {current} bytes; cannot shrink it by {amount}"
            ))
        })?
    } else if args.delta {
        current
            .checked_add(amount)
            .ok_or_else(|| PoolError::Unsupported("the new size is too large".into()))?
    } else {
        amount
    };
    let flags = ResizeFlags {
        allocate: args.allocate,
        shrink: args.shrink,
    };
    with_progress(&format!("Resizing {name}"), |progress| {
        pool.resize_volume(&name, capacity, flags, progress)
    })?;
    if negative || args.delta {
        let _ = writeln!(
            out,
            "Size of volume '{name}' successfully changed by {}",
            args.capacity
        );
    } else {
        let _ = writeln!(
            out,
            "Size of volume '{name}' successfully changed to {}",
            args.capacity
        );
    }
    Ok(())
}

/// `vol-clone VOL NEWNAME [POOL]`.
fn vol_clone(store: &PoolStore, args: VolCloneArgs, out: &mut String) -> Result<(), PoolError> {
    use std::fmt::Write as _;
    let (pool, name) = find(
        store,
        VolArg {
            vol: args.vol,
            pool_arg: args.pool_arg,
            pool: args.pool,
        },
    )?;
    with_progress(&format!("Cloning {name}"), |progress| {
        pool.clone_volume(&name, &args.newname, progress)
    })?;
    let _ = writeln!(out, "Vol {} cloned from {name}", args.newname);
    Ok(())
}

/// `vol-upload VOL FILE [POOL] [--offset] [--length] [--sparse]`.
fn vol_upload(store: &PoolStore, args: VolTransferArgs) -> Result<(), PoolError> {
    let offset = size(&args.offset)?;
    let length = args.length.as_deref().map(size).transpose()?;
    let (pool, name) = find(
        store,
        VolArg {
            vol: args.vol,
            pool_arg: args.pool_arg,
            pool: args.pool,
        },
    )?;
    with_progress(&format!("Uploading to {name}"), |progress| {
        pool.upload(&name, &args.file, offset, length, args.sparse, progress)
    })?;
    Ok(())
}

/// `vol-download VOL FILE [POOL] [--offset] [--length] [--sparse]`.
fn vol_download(store: &PoolStore, args: VolTransferArgs) -> Result<(), PoolError> {
    let offset = size(&args.offset)?;
    let length = args.length.as_deref().map(size).transpose()?;
    let (pool, name) = find(
        store,
        VolArg {
            vol: args.vol,
            pool_arg: args.pool_arg,
            pool: args.pool,
        },
    )?;
    with_progress(&format!("Downloading {name}"), |progress| {
        pool.download(&name, &args.file, offset, length, args.sparse, progress)
    })?;
    Ok(())
}

/// The text of an XML file given on the command line.
fn read_xml(path: &std::path::Path) -> Result<String, PoolError> {
    std::fs::read_to_string(path).map_err(|e| {
        PoolError::Unsupported(format!("Failed to open file '{}': {e}", path.display()))
    })
}

/// What a `<volume>` description asks `vol-create` for: its name,
/// capacity, allocation, format (raw unless it says) and backing store.
fn volume_spec(xml: &str, prealloc_metadata: bool) -> Result<NewVolume, PoolError> {
    let def = VolumeDef::from_xml(xml)?;
    let format = def.target.format.unwrap_or(VolumeFormat::Raw);
    format_arg(format.name())?;
    Ok(NewVolume {
        name: def.name,
        capacity: def.capacity,
        allocation: Some(def.allocation),
        format,
        prealloc_metadata,
        backing: def.backing_store.map(|b| (b.path, b.format)),
    })
}

/// `vol-create-from POOL FILE VOL [--inputpool POOL]`.
fn vol_create_from(
    store: &PoolStore,
    args: VolCreateFromArgs,
    out: &mut String,
) -> Result<(), PoolError> {
    use std::fmt::Write as _;
    let pool = store.get(&args.pool)?;
    let spec = volume_spec(&read_xml(&args.file)?, args.prealloc_metadata)?;
    // virsh looks the input volume up in --inputpool, else by path (or
    // key), else by name in the new volume's pool.
    let (input_pool, input_name) = match &args.inputpool {
        Some(name) => store.find_volume(&args.vol, Some(name))?,
        None => store
            .find_volume(&args.vol, None)
            .or_else(|_| store.find_volume(&args.vol, Some(&args.pool)))?,
    };
    let input = input_pool.volume(&input_name)?;
    let input_format = match input.target.format {
        Some(VolumeFormat::Qcow2) => crate::storage::ImageFormat::Qcow2,
        _ => crate::storage::ImageFormat::Raw,
    };
    with_progress(&format!("Copying {input_name}"), |progress| {
        pool.create_volume_from(&spec, &input.target.path, input_format, progress)
    })?;
    let _ = writeln!(out, "Vol {} created from input vol {input_name}", spec.name);
    Ok(())
}

fn find(store: &PoolStore, args: VolArg) -> Result<(Pool, String), PoolError> {
    let pool = match (args.pool_arg, args.pool) {
        (None, None) => None,
        (a, b) => Some(either(a, b, "pool")?),
    };
    store.find_volume(&args.vol, pool.as_deref())
}

fn yes_no(value: bool) -> &'static str {
    if value {
        "yes"
    } else {
        "no"
    }
}

fn pool_list(store: &PoolStore, args: &PoolListArgs, out: &mut String) -> Result<(), PoolError> {
    use std::fmt::Write as _;
    let pools: Vec<Pool> = store
        .list()?
        .into_iter()
        .filter(|p| {
            let state = if args.inactive {
                !p.active
            } else {
                args.all || p.active
            };
            let autostart =
                (!args.autostart || p.autostart) && (!args.no_autostart || !p.autostart);
            let persistence =
                (!args.persistent || p.persistent) && (!args.transient || !p.persistent);
            state && autostart && persistence
        })
        .collect();
    if args.name || args.uuid {
        for pool in &pools {
            match (args.uuid, args.name) {
                (true, true) => {
                    let _ = writeln!(out, "{} {}", pool.def.uuid, pool.def.name);
                }
                (true, false) => {
                    let _ = writeln!(out, "{}", pool.def.uuid);
                }
                _ => {
                    let _ = writeln!(out, "{}", pool.def.name);
                }
            }
        }
        return Ok(());
    }
    if !args.details {
        let rows = pools
            .iter()
            .map(|p| {
                vec![
                    p.def.name.clone(),
                    if p.active { "active" } else { "inactive" }.to_string(),
                    yes_no(p.autostart).to_string(),
                ]
            })
            .collect();
        out.push_str(&table(&["Name", "State", "Autostart"], rows));
        return Ok(());
    }
    let mut rows = Vec::new();
    for pool in &pools {
        let mut row = vec![
            pool.def.name.clone(),
            if pool.active { "running" } else { "inactive" }.to_string(),
            yes_no(pool.autostart).to_string(),
            yes_no(pool.persistent).to_string(),
        ];
        match pool.active.then(|| pool.space()).transpose()? {
            Some(space) => {
                row.extend([space.capacity, space.allocation, space.available].map(pretty_capacity))
            }
            None => row.extend(["-", "-", "-"].map(String::from)),
        }
        rows.push(row);
    }
    out.push_str(&table(
        &[
            "Name",
            "State",
            "Autostart",
            "Persistent",
            "Capacity",
            "Allocation",
            "Available",
        ],
        rows,
    ));
    Ok(())
}

fn vol_create_as(
    store: &PoolStore,
    args: VolCreateAsArgs,
    out: &mut String,
) -> Result<(), PoolError> {
    use std::fmt::Write as _;
    let pool = store.get(&args.pool)?;
    let capacity = size(&args.capacity)?;
    let allocation = args.allocation.as_deref().map(size).transpose()?;
    let format = format_arg(&args.format)?;
    let backing_format = args
        .backing_vol_format
        .as_deref()
        .map(format_arg)
        .transpose()?;
    let backing = match &args.backing_vol {
        Some(vol) => Some((store.resolve_backing(&pool, vol)?, backing_format)),
        None => None,
    };
    if args.print_xml {
        let _ = write!(
            out,
            "<volume>\n  <name>{}</name>\n  <capacity>{capacity}</capacity>\n",
            crate::storage::pools::xml::escape(&args.name)
        );
        if let Some(allocation) = allocation {
            let _ = writeln!(out, "  <allocation>{allocation}</allocation>");
        }
        let _ = write!(
            out,
            "  <target>\n    <format type='{}'/>\n  </target>\n",
            format.name()
        );
        if let Some((path, format)) = &backing {
            let _ = write!(
                out,
                "  <backingStore>\n    <path>{}</path>\n",
                crate::storage::pools::xml::escape(&path.to_string_lossy())
            );
            if let Some(format) = format {
                let _ = writeln!(out, "    <format type='{}'/>", format.name());
            }
            let _ = writeln!(out, "  </backingStore>");
        }
        let _ = writeln!(out, "</volume>");
        return Ok(());
    }
    let spec = NewVolume {
        name: args.name.clone(),
        capacity,
        allocation,
        format,
        prealloc_metadata: args.prealloc_metadata,
        backing,
    };
    let _: VolumeDef = with_progress(&format!("Allocating {}", args.name), |progress| {
        pool.create_volume(&spec, progress)
    })?;
    let _ = writeln!(out, "Vol {} created", args.name);
    Ok(())
}

/// virsh's table layout (see [`super::table`]).
fn table(header: &[&str], rows: Vec<Vec<String>>) -> String {
    super::table::render(header, &rows)
}

/// Runs `work` with a progress callback that draws a line on stderr when
/// stderr is a terminal (at most a few times a second), erased at the end.
fn with_progress<T>(label: &str, work: impl FnOnce(crate::storage::pools::Progress) -> T) -> T {
    let terminal = std::io::stderr().is_terminal();
    let start = Instant::now();
    let mut last = Instant::now();
    let mut drawn = false;
    let mut callback = |done: u64, total: u64| {
        if !terminal
            || start.elapsed() < Duration::from_millis(500)
            || last.elapsed() < Duration::from_millis(200)
        {
            return;
        }
        last = Instant::now();
        drawn = true;
        let percent = done.saturating_mul(100).checked_div(total).unwrap_or(100);
        eprint!(
            "\r\x1b[K{label}: {percent:>3}% ({} of {})",
            pretty_capacity(done),
            pretty_capacity(total)
        );
    };
    let result = work(&mut callback);
    if drawn {
        eprint!("\r\x1b[K");
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tables_match_virsh_layout() {
        let text = table(
            &["Name", "State", "Autostart"],
            vec![
                vec!["default-pool".into(), "active".into(), "no".into()],
                vec!["p1".into(), "active".into(), "no".into()],
            ],
        );
        assert_eq!(
            text,
            " Name           State    Autostart\n\
             ------------------------------------\n \
             default-pool   active   no\n \
             p1             active   no\n"
        );
        assert_eq!(
            table(&["Name", "Path"], vec![]),
            " Name   Path\n--------------\n"
        );
    }
}
