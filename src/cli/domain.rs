//! virsh's domain verbs: define, undefine, list, start, destroy, dumpxml,
//! domstate, domid, domuuid, dominfo, domrename, console.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Command, ExitCode};

use crate::app::inventory;
use crate::app::lifecycle::VmState;
use crate::definitions::{Definition, DomainStore};
use crate::vm_process::{spawn, RunFiles, RunState};

type CliResult = Result<ExitCode, String>;

/// A domain as virsh names it: by id (while running), name or UUID.
pub(super) fn resolve(which: &str) -> Result<(Definition, Option<RunState>), String> {
    let store = DomainStore::open();
    if let Ok(id) = which.parse::<u32>() {
        for definition in store.list() {
            if let Some(state) = RunFiles::new(&definition.name).running() {
                if state.id == id {
                    return Ok((definition, Some(state)));
                }
            }
        }
    }
    let definition = store.find(which).map_err(|e| e.to_string())?;
    let state = RunFiles::new(&definition.name).running();
    Ok((definition, state))
}

/// virsh's state words for what the VM's process says (asked of the VM
/// itself), or "shut off" when there is none.
fn state_name(definition: &Definition, state: &Option<RunState>) -> String {
    if state.is_none() {
        return "shut off".into();
    }
    // As long as any command waits: a loaded host must not turn "paused"
    // into "running".
    let word = match inventory::query_state(&definition.name, crate::control::DEFAULT_TIMEOUT) {
        Some(VmState::Paused) => "paused",
        Some(VmState::Crashed) => "crashed",
        Some(VmState::PoweredOff) => "in shutdown",
        _ => "running",
    };
    word.into()
}

pub fn define(file: PathBuf) -> CliResult {
    let xml = std::fs::read_to_string(&file)
        .map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let definition = DomainStore::open()
        .define(&xml)
        .map_err(|e| e.to_string())?;
    println!(
        "Domain '{}' defined from {}",
        definition.name,
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct UndefineArgs {
    pub(super) domain: String,
    /// Also delete the domain's writable disk images (CD-ROM and
    /// read-only media are left alone).
    #[arg(long)]
    pub(super) remove_all_storage: bool,
    /// Also forget the domain's snapshots (their descriptions; the disks
    /// keep their internal snapshots), without which a domain that has
    /// snapshots is not undefined.
    #[arg(long)]
    pub(super) snapshots_metadata: bool,
}

pub fn undefine(args: UndefineArgs) -> CliResult {
    let (definition, state) = resolve(&args.domain)?;
    if state.is_some() {
        return Err(format!(
            "domain '{}' is running; stop it first with `vireo destroy {}`",
            definition.name, definition.name
        ));
    }
    let snapshots = crate::definitions::SnapshotStore::for_domain(&definition.name).list()?;
    if !snapshots.is_empty() && !args.snapshots_metadata {
        return Err(format!(
            "Failed to undefine domain '{}'\nerror: Requested operation is not valid: cannot delete inactive domain with {} snapshots",
            definition.name,
            snapshots.len()
        ));
    }
    let storage = if args.remove_all_storage {
        crate::app::operations::owned_storage(&definition.name)?
    } else {
        Vec::new()
    };
    let left = crate::app::operations::delete(&definition.name, args.remove_all_storage)?;
    println!("Domain '{}' has been undefined", definition.name);
    for (target, path) in storage {
        match left.iter().find(|(p, _)| *p == path) {
            None => println!("Volume '{target}'({}) removed.", path.display()),
            Some((_, e)) => eprintln!("vireo: cannot remove {}: {e}", path.display()),
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct ListArgs {
    /// Include domains that are shut off.
    #[arg(long)]
    pub(super) all: bool,
    /// Only shut-off domains.
    #[arg(long)]
    pub(super) inactive: bool,
    /// Print only names.
    #[arg(long)]
    pub(super) name: bool,
    /// Print only UUIDs.
    #[arg(long)]
    pub(super) uuid: bool,
}

pub fn list(args: ListArgs) -> CliResult {
    let mut shown = Vec::new();
    for definition in DomainStore::open().list() {
        let state = RunFiles::new(&definition.name).running();
        let wanted = match (args.all, args.inactive) {
            (true, _) => true,
            (false, true) => state.is_none(),
            (false, false) => state.is_some(),
        };
        if wanted {
            shown.push((definition, state));
        }
    }
    // virsh lists running domains by id, then the rest by name.
    shown.sort_by_key(|(d, s)| (s.as_ref().map_or(u32::MAX, |s| s.id), d.name.clone()));
    // Like virsh, every form ends with a blank line (an empty list too).
    if args.name || args.uuid {
        for (definition, _) in &shown {
            println!(
                "{}",
                if args.uuid {
                    &definition.uuid
                } else {
                    &definition.name
                }
            );
        }
        println!();
        return Ok(ExitCode::SUCCESS);
    }
    let rows: Vec<Vec<String>> = shown
        .iter()
        .map(|(d, s)| {
            let id = s.as_ref().map_or("-".to_string(), |s| s.id.to_string());
            vec![id, d.name.clone(), state_name(d, s)]
        })
        .collect();
    println!("{}", super::table::render(&["Id", "Name", "State"], &rows));
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
pub struct StartArgs {
    /// Domain name or UUID.
    pub(super) domain: String,
    /// Attach to the serial console once started.
    #[arg(long)]
    pub(super) console: bool,
    /// Start with the vCPUs paused.
    #[arg(long)]
    pub(super) paused: bool,
}

pub fn start(args: StartArgs) -> CliResult {
    let (definition, state) = resolve(&args.domain)?;
    if state.is_some() {
        return Err(format!("domain '{}' is already active", definition.name));
    }
    spawn::start(&definition.name, args.paused)?;
    println!("Domain '{}' started", definition.name);
    if args.console {
        return console(&definition.name);
    }
    Ok(ExitCode::SUCCESS)
}

pub fn destroy(which: &str) -> CliResult {
    let (definition, _) = resolve(which)?;
    spawn::destroy(&definition.name)?;
    println!("Domain '{}' destroyed", definition.name);
    Ok(ExitCode::SUCCESS)
}

pub fn dumpxml(which: &str) -> CliResult {
    let (definition, _) = resolve(which)?;
    print!("{}", definition.xml.trim_end());
    println!();
    Ok(ExitCode::SUCCESS)
}

pub fn domstate(which: &str) -> CliResult {
    let (definition, state) = resolve(which)?;
    println!("{}\n", state_name(&definition, &state));
    Ok(ExitCode::SUCCESS)
}

pub fn domid(which: &str) -> CliResult {
    let (_, state) = resolve(which)?;
    println!("{}\n", state.map_or("-".to_string(), |s| s.id.to_string()));
    Ok(ExitCode::SUCCESS)
}

pub fn domuuid(which: &str) -> CliResult {
    let (definition, _) = resolve(which)?;
    println!("{}\n", definition.uuid);
    Ok(ExitCode::SUCCESS)
}

/// Seconds of CPU the process used (user + system), from /proc.
fn cpu_time(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after_name = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    Some(ticks as f64 / hz)
}

pub fn dominfo(which: &str) -> CliResult {
    let (definition, state) = resolve(which)?;
    let config = crate::vm_config::for_definition(&definition).map_err(|e| e.to_string())?;
    let field = |name: &str, value: String| println!("{:<16}{value}", format!("{name}:"));
    field(
        "Id",
        state.as_ref().map_or("-".into(), |s| s.id.to_string()),
    );
    field("Name", definition.name.clone());
    field("UUID", definition.uuid.clone());
    field("OS Type", "hvm".into());
    field("State", state_name(&definition, &state));
    field("CPU(s)", config.vcpus.to_string());
    if let Some(seconds) = state.as_ref().and_then(|s| cpu_time(s.pid)) {
        field("CPU time", format!("{seconds:.1}s"));
    }
    field("Max memory", format!("{} KiB", config.memory / 1024));
    field("Used memory", format!("{} KiB", config.memory / 1024));
    field("Persistent", "yes".into());
    field("Autostart", "disable".into());
    field("Managed save", "no".into());
    field("Security model", "none".into());
    field("Security DOI", "0".into());
    println!();
    Ok(ExitCode::SUCCESS)
}

pub fn domrename(which: &str, new_name: &str) -> CliResult {
    let (definition, state) = resolve(which)?;
    if state.is_some() {
        return Err(format!(
            "domain '{}' is running; only a shut-off domain can be renamed",
            definition.name
        ));
    }
    DomainStore::open()
        .rename(&definition.name, new_name)
        .map_err(|e| e.to_string())?;
    println!("Domain successfully renamed");
    Ok(ExitCode::SUCCESS)
}

/// The byte that ends a console session: Ctrl+], as in virsh and telnet.
const ESCAPE: u8 = 0x1d;

pub fn console(which: &str) -> CliResult {
    let (definition, state) = resolve(which)?;
    if state.is_none() {
        return Err(format!("domain '{}' is not running", definition.name));
    }
    let path = RunFiles::new(&definition.name).serial();
    let stream = UnixStream::connect(&path)
        .map_err(|e| format!("cannot connect to the serial console: {e}"))?;
    attach(&definition.name, stream)
}

/// Joins this terminal to a console stream (a local VM's serial socket,
/// or a libvirt console relayed over a socket pair) until Ctrl+] or the
/// far end closes.
pub(super) fn attach(name: &str, stream: UnixStream) -> CliResult {
    println!("Connected to domain '{name}'");
    println!("Escape character is ^] (Ctrl + ])");
    let _raw = super::terminal::RawMode::enable();
    let mut from_vm = stream.try_clone().map_err(|e| e.to_string())?;
    std::thread::spawn(move || {
        let mut out = std::io::stdout();
        let mut buf = [0u8; 4096];
        while let Ok(n) = from_vm.read(&mut buf) {
            if n == 0 || out.write_all(&buf[..n]).and_then(|_| out.flush()).is_err() {
                break;
            }
        }
        // The VM went away: end the session as virsh does.
        std::process::exit(0);
    });
    let mut to_vm = stream;
    let mut stdin = std::io::stdin();
    let mut buf = [0u8; 256];
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let typed = &buf[..n];
        let (send, leave) = match typed.iter().position(|&b| b == ESCAPE) {
            Some(at) => (&typed[..at], true),
            None => (typed, false),
        };
        if to_vm.write_all(send).is_err() || leave {
            break;
        }
    }
    drop(_raw);
    println!();
    Ok(ExitCode::SUCCESS)
}

/// `vireo edit NAME`: the definition in `$EDITOR` (or `$VISUAL`, else
/// `vi`), checked before it is saved; a broken edit is refused with the
/// reason and the edited file kept for another try.
pub fn edit(which: &str) -> CliResult {
    let (definition, _) = resolve(which)?;
    let dir = tempfile::Builder::new()
        .prefix("vireo-edit")
        .tempdir()
        .map_err(|e| format!("cannot create a scratch directory: {e}"))?;
    let path = dir.path().join(format!("{}.xml", definition.name));
    std::fs::write(&path, &definition.xml).map_err(|e| e.to_string())?;
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".to_string());
    let status = Command::new("sh")
        .arg("-c")
        .arg(format!("{editor} \"$1\""))
        .arg("sh")
        .arg(&path)
        .status()
        .map_err(|e| format!("cannot run the editor '{editor}': {e}"))?;
    if !status.success() {
        return Err(format!(
            "the editor '{editor}' failed ({status}); nothing changed"
        ));
    }
    let edited = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
    if edited == definition.xml {
        println!(
            "Domain '{}' XML configuration not changed.",
            definition.name
        );
        return Ok(ExitCode::SUCCESS);
    }
    match DomainStore::open().define(&edited) {
        Ok(saved) => {
            println!("Domain '{}' XML configuration edited.", saved.name);
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let kept = dir.keep().join(format!("{}.xml", definition.name));
            Err(format!(
                "{e}\nThe definition was not changed; your edit is kept in {}",
                kept.display()
            ))
        }
    }
}
