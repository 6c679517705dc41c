//! `vireo net-*`, `domiflist`, `attach-interface` and `detach-interface`:
//! virsh's network verbs with virsh's messages and tables.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

use super::disks::{load_for_device_change, save_device_change, virsh_error, Scope};
use crate::app::edit::{self, NicSource};
use crate::definitions::DomainStore;
use crate::definitions::{NetworkDef, NetworkStore};

type CliResult = Result<ExitCode, String>;

#[derive(Subcommand)]
pub enum NetCommand {
    /// Define (or redefine) a virtual network from a libvirt network XML file
    NetDefine { file: PathBuf },
    /// Create and start a transient network from a libvirt network XML file; it is gone once destroyed
    NetCreate { file: PathBuf },
    /// Remove an inactive network's definition
    NetUndefine { network: String },
    /// Start (activate) a defined network
    NetStart { network: String },
    /// Stop (deactivate) a network; its definition stays
    NetDestroy { network: String },
    /// Start a network automatically in each session, or with --disable stop doing so
    NetAutostart {
        network: String,
        #[arg(long)]
        disable: bool,
    },
    /// List networks (the active ones; --all for every one)
    NetList {
        /// Inactive networks too.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        inactive: bool,
    },
    /// Show a network's name, UUID, state, autostart and bridge
    NetInfo { network: String },
    /// Print a network's XML
    NetDumpxml { network: String },
    /// The DHCP leases an isolated network's switch gave.
    NetDhcpLeases {
        network: String,
        #[arg(long)]
        mac: Option<String>,
    },
    /// An isolated network's switch process (started by `net-start`).
    #[command(name = "__netd", hide = true)]
    Netd { network: String },
    /// List a domain's network interfaces
    Domiflist { domain: String },
    /// Add a network interface to a domain
    AttachInterface(AttachInterfaceArgs),
    /// Remove a network interface from a domain
    DetachInterface(DetachInterfaceArgs),
}

#[derive(Args)]
pub struct AttachInterfaceArgs {
    domain: String,
    /// network, user or bridge.
    #[arg(long = "type")]
    kind: String,
    /// The network or bridge name (ignored for user).
    #[arg(long)]
    source: Option<String>,
    #[arg(long)]
    mac: Option<String>,
    #[arg(long)]
    model: Option<String>,
    #[command(flatten)]
    scope: Scope,
}

#[derive(Args)]
pub struct DetachInterfaceArgs {
    domain: String,
    #[arg(long = "type")]
    kind: String,
    #[arg(long)]
    mac: Option<String>,
    #[command(flatten)]
    scope: Scope,
}

fn store() -> Result<NetworkStore, String> {
    NetworkStore::open().map_err(|e| e.to_string())
}

/// virsh's `net-dhcp-leases` table; times are UTC.
fn dhcp_leases(network: &str, mac: Option<&str>) -> Result<(), String> {
    let net = store()?.get(network).map_err(|e| e.to_string())?;
    let prefix = net.def.user_config().map_err(|e| e.to_string())?.prefix;
    let wanted = mac.map(str::to_ascii_lowercase);
    let rows: Vec<Vec<String>> = crate::net::switch::read_leases(network)
        .into_iter()
        .map(|lease| {
            let secs = lease.expiry as i64;
            let (y, mo, d) = crate::devices::cmos::civil_from_days(secs.div_euclid(86400));
            let t = secs.rem_euclid(86400);
            vec![
                format!(
                    "{y:04}-{mo:02}-{d:02} {:02}:{:02}:{:02}",
                    t / 3600,
                    t / 60 % 60,
                    t % 60
                ),
                lease
                    .mac
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
                "ipv4".to_string(),
                format!("{}/{prefix}", lease.ip),
                "-".to_string(),
                "-".to_string(),
            ]
        })
        .filter(|row| wanted.as_ref().map_or(true, |m| *m == row[1]))
        .collect();
    println!(
        "{}",
        super::table::render(
            &[
                "Expiry Time",
                "MAC address",
                "Protocol",
                "IP address",
                "Hostname",
                "Client ID or DUID"
            ],
            &rows
        )
    );
    Ok(())
}

fn yes(on: bool) -> String {
    if on { "yes" } else { "no" }.to_string()
}

pub fn run(command: NetCommand) -> CliResult {
    match command {
        NetCommand::NetDefine { file } => {
            let xml = std::fs::read_to_string(&file)
                .map_err(|e| format!("Failed to open file '{}': {e}", file.display()))?;
            let def = NetworkDef::parse(&xml).map_err(|e| e.to_string())?;
            let def = store()?.define(def).map_err(|e| e.to_string())?;
            println!("Network {} defined from {}\n", def.name(), file.display());
        }
        NetCommand::NetCreate { file } => {
            let xml = std::fs::read_to_string(&file)
                .map_err(|e| format!("Failed to open file '{}': {e}", file.display()))?;
            let def = NetworkDef::parse(&xml).map_err(|e| e.to_string())?;
            let def = store()?.create(def).map_err(|e| e.to_string())?;
            println!("Network {} created from {}\n", def.name(), file.display());
        }
        NetCommand::NetUndefine { network } => {
            store()?.undefine(&network).map_err(|e| e.to_string())?;
            println!("Network {network} has been undefined\n");
        }
        NetCommand::NetDhcpLeases { network, mac } => dhcp_leases(&network, mac.as_deref())?,
        NetCommand::Netd { network } => {
            let def = store()?.get(&network).map_err(|e| e.to_string())?.def;
            let dhcp = def.dhcp_config().map_err(|e| e.to_string())?;
            crate::net::switch::run(&network, dhcp).map_err(|e| e.to_string())?;
        }
        NetCommand::NetStart { network } => {
            store()?.start(&network).map_err(|e| e.to_string())?;
            println!("Network {network} started\n");
        }
        NetCommand::NetDestroy { network } => {
            store()?.destroy(&network).map_err(|e| e.to_string())?;
            println!("Network {network} destroyed\n");
        }
        NetCommand::NetAutostart { network, disable } => {
            store()?
                .set_autostart(&network, !disable)
                .map_err(|e| e.to_string())?;
            let what = if disable { "unmarked" } else { "marked" };
            println!("Network {network} {what} as autostarted\n");
        }
        NetCommand::NetList { all, inactive } => {
            let rows: Vec<Vec<String>> = store()?
                .list()
                .map_err(|e| e.to_string())?
                .into_iter()
                .filter(|n| all || (n.active != inactive))
                .map(|n| {
                    vec![
                        n.def.name(),
                        if n.active { "active" } else { "inactive" }.to_string(),
                        yes(n.autostart),
                        yes(n.persistent),
                    ]
                })
                .collect();
            println!(
                "{}",
                super::table::render(&["Name", "State", "Autostart", "Persistent"], &rows)
            );
        }
        NetCommand::NetInfo { network } => {
            let n = store()?.get(&network).map_err(|e| e.to_string())?;
            let mut out = String::new();
            let mut line = |label: &str, value: String| {
                out.push_str(&format!("{:<15} {value}\n", format!("{label}:")));
            };
            line("Name", n.def.name());
            line("UUID", n.def.uuid().unwrap_or_default());
            line("Active", yes(n.active));
            line("Persistent", yes(n.persistent));
            line("Autostart", yes(n.autostart));
            if let Some(bridge) = n.def.bridge() {
                line("Bridge", bridge);
            }
            println!("{out}");
        }
        NetCommand::NetDumpxml { network } => {
            let n = store()?.get(&network).map_err(|e| e.to_string())?;
            print!("{}", n.def.to_xml());
            if !n.def.to_xml().ends_with('\n') {
                println!();
            }
        }
        NetCommand::Domiflist { domain } => return domiflist(&domain),
        NetCommand::AttachInterface(args) => return attach_interface(args),
        NetCommand::DetachInterface(args) => return detach_interface(args),
    }
    Ok(ExitCode::SUCCESS)
}

fn domiflist(which: &str) -> CliResult {
    let definition = DomainStore::open().find(which).map_err(|e| e.to_string())?;
    let nics = definition
        .domain()
        .interfaces()
        .map_err(|e| e.to_string())?;
    let rows: Vec<Vec<String>> = nics
        .iter()
        .map(|nic| {
            let dash = || "-".to_string();
            vec![
                dash(),
                nic.kind.clone(),
                nic.source_network
                    .clone()
                    .or_else(|| nic.source_bridge.clone())
                    .unwrap_or_else(dash),
                nic.model.clone().unwrap_or_else(dash),
                nic.mac.clone().unwrap_or_else(dash),
            ]
        })
        .collect();
    println!(
        "{}",
        super::table::render(&["Interface", "Type", "Source", "Model", "MAC"], &rows)
    );
    Ok(ExitCode::SUCCESS)
}

fn attach_interface(args: AttachInterfaceArgs) -> CliResult {
    let (store, definition, running) =
        load_for_device_change(&args.domain, &args.scope, "the network cards")?;
    let source = match args.kind.as_str() {
        "network" => {
            NicSource::Network(args.source.unwrap_or_else(|| edit::DEFAULT_NETWORK.into()))
        }
        "bridge" => NicSource::Bridge(args.source.ok_or("--source is required for a bridge")?),
        "user" => NicSource::User,
        other => return Err(format!("interface type '{other}' is not supported")),
    };
    let spec = edit::NicSpec {
        source,
        mac: args.mac,
        model: args.model,
    };
    let mut domain = definition.domain().clone();
    edit::attach_interface(&mut domain, &spec).map_err(|e| virsh_error(e, &definition.name))?;
    save_device_change(&store, &definition, &domain, running)?;
    println!("Interface attached successfully\n");
    Ok(ExitCode::SUCCESS)
}

fn detach_interface(args: DetachInterfaceArgs) -> CliResult {
    let (store, definition, running) =
        load_for_device_change(&args.domain, &args.scope, "the network cards")?;
    let mut domain = definition.domain().clone();
    edit::detach_interface(&mut domain, &args.kind, args.mac.as_deref())
        .map_err(|e| virsh_error(e, &definition.name))?;
    save_device_change(&store, &definition, &domain, running)?;
    println!("Interface detached successfully\n");
    Ok(ExitCode::SUCCESS)
}
