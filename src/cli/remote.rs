//! `vireo -c URI VERB`: the verbs that make sense on another host, through
//! the [`Engine`] a URI names, printed exactly as virsh prints them (its
//! messages, its tables, the empty line after each command's output).
//!
//! The URI comes from `-c`, else `VIREO_DEFAULT_URI`, else
//! `LIBVIRT_DEFAULT_URI` (see [`crate::connection::resolve_uri`]); without
//! one, or with `vireo:///session`, the local verbs answer as before.

use std::path::PathBuf;
use std::process::ExitCode;

use super::Command;
use crate::connection::{self, DomainInfo, DomainRow, Engine, Power};
use crate::storage::pools::{parse_size, pretty_capacity};

type CliResult = Result<ExitCode, String>;

/// Whether `command` is one this module runs over a connection.
pub(super) fn accepts(command: &Command) -> bool {
    use super::network::NetCommand;
    use super::pool::PoolCommand;
    matches!(
        command,
        Command::List(_)
            | Command::Dominfo { .. }
            | Command::Domstate { .. }
            | Command::Domid { .. }
            | Command::Domuuid { .. }
            | Command::Dumpxml { .. }
            | Command::Define { .. }
            | Command::Undefine(_)
            | Command::Start(_)
            | Command::Shutdown { .. }
            | Command::Destroy { .. }
            | Command::Reboot { .. }
            | Command::Suspend { .. }
            | Command::Resume { .. }
            | Command::Screenshot { .. }
            | Command::Console { .. }
            | Command::Vncdisplay { .. }
            | Command::Pool(PoolCommand::PoolList(_))
            | Command::Pool(PoolCommand::VolList(_))
            | Command::Pool(PoolCommand::VolCreateAs(_))
            | Command::Net(NetCommand::NetList { .. })
    )
}

/// Runs `command` on the engine `uri` names.
pub(super) fn run(uri: &str, command: Command) -> CliResult {
    let engine = connection::open(uri).map_err(|e| format!("cannot connect to {uri}: {e}"))?;
    let engine = engine.as_ref();
    match execute(engine, command) {
        Ok(text) => {
            print!("{text}");
            Ok(ExitCode::SUCCESS)
        }
        Err(Failure::Done(code)) => Ok(code),
        Err(e) => Err(e.to_string()),
    }
}

/// Either side's error, as a message.
#[derive(Debug)]
enum Failure {
    Engine(connection::EngineError),
    Message(String),
    /// The console ran and ended; its exit code.
    Done(ExitCode),
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Engine(e) => write!(f, "{e}"),
            Failure::Message(m) => write!(f, "{m}"),
            Failure::Done(_) => Ok(()),
        }
    }
}

impl From<connection::EngineError> for Failure {
    fn from(e: connection::EngineError) -> Self {
        Failure::Engine(e)
    }
}

impl From<String> for Failure {
    fn from(m: String) -> Self {
        Failure::Message(m)
    }
}

fn execute(engine: &dyn Engine, command: Command) -> Result<String, Failure> {
    use super::network::NetCommand;
    use super::pool::PoolCommand;
    let done = |verb: &str, name: &str| format!("Domain '{name}' {verb}\n\n");
    Ok(match command {
        Command::List(args) => list(engine, args.all, args.inactive, args.name, args.uuid)?,
        Command::Dominfo { domain } => {
            let name = engine.lookup(&domain)?.name;
            dominfo(&engine.info(&name)?)
        }
        Command::Domstate { domain } => {
            format!("{}\n\n", engine.lookup(&domain)?.state.virsh_word())
        }
        Command::Domid { domain } => {
            let row = engine.lookup(&domain)?;
            format!(
                "{}\n\n",
                row.id.map_or("-".to_string(), |id| id.to_string())
            )
        }
        Command::Domuuid { domain } => format!("{}\n\n", engine.lookup(&domain)?.uuid),
        Command::Dumpxml { domain } => {
            let name = engine.lookup(&domain)?.name;
            let xml = engine.xml(&name, false)?;
            format!("{}\n\n", xml.trim_end())
        }
        Command::Define { file } => {
            let xml = std::fs::read_to_string(&file)
                .map_err(|e| format!("Failed to open file '{}': {e}", file.display()))?;
            let name = engine.define(&xml)?;
            format!("Domain '{name}' defined from {}\n\n", file.display())
        }
        Command::Undefine(args) => {
            if args.remove_all_storage {
                return Err(Failure::Message(
                    "--remove-all-storage is for Vireo's own VMs; delete a host's volumes with its own tools".into(),
                ));
            }
            let name = engine.lookup(&args.domain)?.name;
            engine.undefine(&name)?;
            format!("Domain '{name}' has been undefined\n\n")
        }
        Command::Start(args) => {
            let row = engine.lookup(&args.domain)?;
            if args.paused {
                return Err(Failure::Message(
                    "--paused is for Vireo's own VMs; start the domain, then suspend it".into(),
                ));
            }
            if row.state.is_active() {
                return Err(Failure::Message("Domain is already active".into()));
            }
            engine.power(&row.name, Power::Start)?;
            let text = done("started", &row.name);
            if args.console {
                print!("{text}");
                return Err(console(engine, &row.name));
            }
            text
        }
        Command::Shutdown { domain } => {
            power(engine, &domain, Power::Shutdown, "is being shutdown")?
        }
        Command::Destroy { domain } => power(engine, &domain, Power::Destroy, "destroyed")?,
        Command::Reboot { domain } => power(engine, &domain, Power::Reboot, "is being rebooted")?,
        Command::Suspend { domain } => power(engine, &domain, Power::Suspend, "suspended")?,
        Command::Resume { domain } => power(engine, &domain, Power::Resume, "resumed")?,
        Command::Screenshot { domain, file } => screenshot(engine, &domain, file)?,
        Command::Vncdisplay { domain } => {
            let name = engine.lookup(&domain)?.name;
            match engine.vnc_display(&name)? {
                Some(display) => format!("{display}\n\n"),
                None => {
                    return Err(Failure::Message(
                        "Failed to get VNC port. Is this domain using VNC?".into(),
                    ))
                }
            }
        }
        Command::Console { domain } => {
            let name = engine.lookup(&domain)?.name;
            return Err(console(engine, &name));
        }
        Command::Pool(PoolCommand::PoolList(args)) => {
            let pools = engine.pools()?;
            let wanted = pools.into_iter().filter(|p| {
                let state = if args.inactive {
                    !p.active
                } else {
                    args.all || p.active
                };
                state && (!args.autostart || p.autostart) && (!args.no_autostart || !p.autostart)
            });
            let pools: Vec<_> = wanted.collect();
            if args.name {
                let mut out: String = pools.iter().map(|p| format!("{}\n", p.name)).collect();
                out.push('\n');
                return Ok(out);
            }
            let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
            let mut out = if args.details {
                let rows: Vec<Vec<String>> = pools
                    .iter()
                    .map(|p| {
                        let mut row = vec![
                            p.name.clone(),
                            p.state.clone(),
                            yes(p.autostart),
                            yes(p.persistent),
                        ];
                        if p.active {
                            row.extend(
                                [p.capacity, p.allocation, p.available].map(pretty_capacity),
                            );
                        } else {
                            row.extend(["-", "-", "-"].map(String::from));
                        }
                        row
                    })
                    .collect();
                super::table::render(
                    &[
                        "Name",
                        "State",
                        "Autostart",
                        "Persistent",
                        "Capacity",
                        "Allocation",
                        "Available",
                    ],
                    &rows,
                )
            } else {
                let rows: Vec<Vec<String>> = pools
                    .iter()
                    .map(|p| {
                        let state = if p.active { "active" } else { "inactive" };
                        vec![p.name.clone(), state.to_string(), yes(p.autostart)]
                    })
                    .collect();
                super::table::render(&["Name", "State", "Autostart"], &rows)
            };
            out.push('\n');
            out
        }
        Command::Pool(PoolCommand::VolList(args)) => {
            let pool = args
                .pool_arg
                .or(args.pool)
                .ok_or_else(|| "which pool? give its name, or --pool NAME".to_string())?;
            let volumes = engine.volumes(&pool)?;
            let mut out = if args.details {
                let rows: Vec<Vec<String>> = volumes
                    .iter()
                    .map(|v| {
                        vec![
                            v.name.clone(),
                            v.path.clone(),
                            v.kind.clone(),
                            pretty_capacity(v.capacity),
                            pretty_capacity(v.allocation),
                        ]
                    })
                    .collect();
                super::table::render(&["Name", "Path", "Type", "Capacity", "Allocation"], &rows)
            } else {
                let rows: Vec<Vec<String>> = volumes
                    .iter()
                    .map(|v| vec![v.name.clone(), v.path.clone()])
                    .collect();
                super::table::render(&["Name", "Path"], &rows)
            };
            out.push('\n');
            out
        }
        Command::Pool(PoolCommand::VolCreateAs(args)) => {
            if args.print_xml {
                return Err(Failure::Message(
                    "--print-xml is for Vireo's own pools".into(),
                ));
            }
            let capacity = parse_size(&args.capacity).map_err(|e| e.to_string())?;
            engine.create_volume(&args.pool, &args.name, capacity, &args.format)?;
            format!("Vol {} created\n\n", args.name)
        }
        Command::Net(NetCommand::NetList { all, inactive }) => {
            let yes = |b: bool| if b { "yes" } else { "no" }.to_string();
            let rows: Vec<Vec<String>> = engine
                .networks()?
                .into_iter()
                .filter(|n| all || (n.active != inactive))
                .map(|n| {
                    let state = if n.active { "active" } else { "inactive" };
                    vec![
                        n.name,
                        state.to_string(),
                        yes(n.autostart),
                        yes(n.persistent),
                    ]
                })
                .collect();
            let mut out =
                super::table::render(&["Name", "State", "Autostart", "Persistent"], &rows);
            out.push('\n');
            out
        }
        _ => {
            return Err(Failure::Message(
                "this command is not available over a connection".into(),
            ))
        }
    })
}

fn power(engine: &dyn Engine, which: &str, verb: Power, done: &str) -> Result<String, Failure> {
    let name = engine.lookup(which)?.name;
    engine.power(&name, verb)?;
    Ok(format!("Domain '{name}' {done}\n\n"))
}

/// `virsh list`: running domains by id, then the rest by name; `--name`
/// and `--uuid` print one a line.
fn list(
    engine: &dyn Engine,
    all: bool,
    inactive: bool,
    names: bool,
    uuids: bool,
) -> Result<String, Failure> {
    let rows: Vec<DomainRow> = engine
        .list()?
        .into_iter()
        .filter(|row| match (all, inactive) {
            (true, _) => true,
            (false, true) => !row.state.is_active(),
            (false, false) => row.state.is_active(),
        })
        .collect();
    let mut out = if names || uuids {
        rows.iter()
            .map(|r| {
                if uuids && names {
                    format!("{}  {}\n", r.uuid, r.name)
                } else if uuids {
                    format!("{}\n", r.uuid)
                } else {
                    format!("{}\n", r.name)
                }
            })
            .collect()
    } else {
        let table: Vec<Vec<String>> = rows
            .iter()
            .map(|r| {
                vec![
                    r.id.map_or("-".to_string(), |id| id.to_string()),
                    r.name.clone(),
                    r.state.virsh_word().to_string(),
                ]
            })
            .collect();
        super::table::render(&["Id", "Name", "State"], &table)
    };
    out.push('\n');
    Ok(out)
}

/// `virsh dominfo`'s lines: each label padded to 15 columns and a space.
pub fn dominfo(info: &DomainInfo) -> String {
    let mut out = String::new();
    let mut field = |label: &str, value: &str| {
        out.push_str(&format!("{:<15} {value}\n", format!("{label}:")));
    };
    let row = &info.row;
    field("Id", &row.id.map_or("-".to_string(), |id| id.to_string()));
    field("Name", &row.name);
    field("UUID", &row.uuid);
    field("OS Type", &info.os_type);
    field("State", row.state.virsh_word());
    field("CPU(s)", &info.vcpus.to_string());
    if let Some(ns) = info.cpu_time_ns {
        field("CPU time", &format!("{:.1}s", ns as f64 / 1e9));
    }
    match info.max_memory_kib {
        Some(kib) => field("Max memory", &format!("{kib} KiB")),
        None => field("Max memory", "no limit"),
    }
    field("Used memory", &format!("{} KiB", info.used_memory_kib));
    let yes_no_unknown = |v: Option<bool>| match v {
        Some(true) => "yes",
        Some(false) => "no",
        None => "unknown",
    };
    field("Persistent", yes_no_unknown(info.persistent));
    if let Some(on) = info.autostart {
        field("Autostart", if on { "enable" } else { "disable" });
    }
    field("Managed save", yes_no_unknown(info.managed_save));
    if let Some(security) = &info.security {
        field("Security model", &security.model);
        field("Security DOI", &security.doi);
        if let Some((label, enforcing)) = &security.label {
            let mode = if *enforcing {
                "enforcing"
            } else {
                "permissive"
            };
            field("Security label", &format!("{label} ({mode})"));
        }
    }
    out.push('\n');
    out
}

/// `virsh screenshot DOMAIN [FILE]`: without a file, `NAME-SECONDS.EXT`
/// with the extension for the image type the host sent.
fn screenshot(engine: &dyn Engine, which: &str, file: Option<PathBuf>) -> Result<String, Failure> {
    let name = engine.lookup(which)?.name;
    let (image, mime) = engine.screenshot(&name)?;
    let file = file.unwrap_or_else(|| {
        let seconds = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let extension = match mime.as_str() {
            "image/png" => "png",
            "image/x-portable-pixmap" => "ppm",
            _ => "screen",
        };
        PathBuf::from(format!("{name}-{seconds}.{extension}"))
    });
    std::fs::write(&file, image).map_err(|e| format!("cannot write {}: {e}", file.display()))?;
    Ok(format!(
        "Screenshot saved to {}, with type of {mime}\n",
        file.display()
    ))
}

/// The console, as `virsh console`: this terminal joined to the domain's
/// serial console until Ctrl+].
fn console(engine: &dyn Engine, name: &str) -> Failure {
    match engine.open_console(name) {
        Err(e) => Failure::Engine(e),
        Ok(stream) => match super::domain::attach(name, stream) {
            Ok(code) => Failure::Done(code),
            Err(message) => Failure::Message(message),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::connection::{DomainState, Security};

    #[test]
    fn dominfo_lines_up_as_virsh() {
        let info = DomainInfo {
            row: DomainRow {
                id: Some(1),
                name: "test".into(),
                uuid: "6695eb01-f6a4-8304-79aa-97f2502e193f".into(),
                state: DomainState::Running,
            },
            os_type: "linux".into(),
            vcpus: 2,
            cpu_time_ns: Some(1_500_000_000),
            max_memory_kib: Some(8388608),
            used_memory_kib: 2097152,
            persistent: Some(true),
            autostart: Some(false),
            managed_save: Some(false),
            security: Some(Security {
                model: "testSecurity".into(),
                doi: "".into(),
                label: Some(("libvirt-test".into(), true)),
            }),
        };
        let text = dominfo(&info);
        assert!(
            text.starts_with("Id:             1\nName:           test\n"),
            "{text}"
        );
        assert!(text.contains("CPU time:       1.5s\n"), "{text}");
        assert!(text.contains("Security DOI:   \n"), "{text}");
        assert!(
            text.ends_with("Security label: libvirt-test (enforcing)\n\n"),
            "{text}"
        );
    }
}
