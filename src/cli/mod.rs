//! The `vireo` command line: virsh- and qemu-img-like verbs.

mod clone;
mod control;
mod demo;
mod disk_progress;
mod disks;
mod domain;
mod host;
mod img;
mod img_snapshot;
mod img_virtio_bench;
mod local_time;
mod network;
mod pool;
mod remote;
mod run;
mod snapshot;
mod table;
mod terminal;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// The FILES part of `vireo --help`: the host configuration.
const HOST_CONFIGURATION: &str = "\
Host configuration: vireo.conf in $XDG_CONFIG_HOME/vireo (or $VIREO_HOME/config),
in the syntax and with the key names of libvirt's qemu.conf:
  vnc_tls = 1                VNC on TCP only over VeNCrypt/TLS (X509None, or
                             X509Vnc with a password); the VM's unix socket stays plain
  vnc_tls_x509_cert_dir = \"DIR\"
                             ca-cert.pem, server-cert.pem, server-key.pem
                             (default: the configuration directory's pki/vnc)
  vnc_tls_x509_verify = 1    clients must show a certificate signed by ca-cert.pem";

#[derive(Parser)]
#[command(
    name = "vireo",
    version,
    about = "A virtual-machine manager with its own KVM monitor",
    after_long_help = HOST_CONFIGURATION
)]
struct Cli {
    /// Open the window and start the demo VM in it.
    #[arg(long)]
    demo: bool,
    /// Manage the VMs of this libvirt URI (qemu:///system,
    /// qemu+ssh://user@host/system, test:///default) instead of Vireo's
    /// own; default $VIREO_DEFAULT_URI, else $LIBVIRT_DEFAULT_URI.
    #[arg(short = 'c', long = "connect", value_name = "URI", global = true)]
    connect: Option<String>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run a VM in the foreground from a domain XML file, like qemu-system-x86_64.
    Run(run::RunArgs),
    /// Start the demo VM that ships with Vireo, its console in this terminal.
    Demo(demo::DemoArgs),
    /// Define (or redefine) a domain from an XML file.
    Define { file: std::path::PathBuf },
    /// Remove a domain's definition.
    Undefine(domain::UndefineArgs),
    /// List domains.
    List(domain::ListArgs),
    /// Start a defined domain in its own process.
    Start(domain::StartArgs),
    /// Force a domain off at once.
    Destroy { domain: String },
    /// Print a domain's definition.
    Dumpxml { domain: String },
    /// Print a domain's state.
    Domstate { domain: String },
    /// Print a running domain's id.
    Domid { domain: String },
    /// Print a domain's UUID.
    Domuuid { domain: String },
    /// Print a summary of a domain.
    Dominfo { domain: String },
    /// Edit a domain's definition in $EDITOR; it is checked before it is saved.
    Edit { domain: String },
    /// Make a new VM from a shut-off one: new name, UUID, MACs, copied disks.
    Clone(clone::CloneArgs),
    /// Rename a shut-off domain.
    Domrename { domain: String, new_name: String },
    /// Pause a running domain's vCPUs.
    Suspend { domain: String },
    /// Let a paused domain go on.
    Resume { domain: String },
    /// Ask the guest to shut down (ACPI power button).
    Shutdown { domain: String },
    /// Reboot the guest.
    Reboot { domain: String },
    /// Press the reset button.
    Reset { domain: String },
    /// Send keys to the guest, pressed together (e.g. KEY_LEFTCTRL KEY_LEFTALT KEY_DELETE).
    SendKey(control::SendKeyArgs),
    /// Save the guest's screen as PNG (or PPM).
    Screenshot {
        domain: String,
        file: Option<std::path::PathBuf>,
    },
    /// The VNC display of a running domain.
    Vncdisplay { domain: String },
    /// Add a disk or CD-ROM to a domain's definition.
    AttachDisk(disks::AttachDiskArgs),
    /// Remove a disk from a domain's definition.
    DetachDisk(disks::DetachDiskArgs),
    /// Insert or eject a CD-ROM's medium.
    ChangeMedia(disks::ChangeMediaArgs),
    /// List a domain's disks.
    Domblklist(disks::BlkListArgs),
    /// Sizes of one of a domain's disks.
    Domblkinfo { domain: String, target: String },
    /// Attach to a running domain's serial console (Ctrl+] leaves).
    Console { domain: String },
    /// The VM process itself (started by `start`; not for people).
    #[command(name = "__vmm", hide = true)]
    Vmm {
        #[arg(allow_hyphen_values = true)]
        name: String,
        #[arg(long)]
        paused: bool,
    },
    /// Take a snapshot of a shut-off domain's disks and definition.
    SnapshotCreateAs(snapshot::CreateAsArgs),
    /// Take a snapshot described by a <domainsnapshot> XML file.
    SnapshotCreate(snapshot::CreateArgs),
    /// List a domain's snapshots.
    SnapshotList(snapshot::ListArgs),
    /// Summarize a snapshot.
    SnapshotInfo(snapshot::PickArgs),
    /// Print a snapshot's XML.
    SnapshotDumpxml(snapshot::DumpxmlArgs),
    /// Print (or set) the domain's current snapshot.
    SnapshotCurrent(snapshot::CurrentArgs),
    /// Revert a shut-off domain to a snapshot: its disks and its definition.
    SnapshotRevert(snapshot::PickArgs),
    /// Delete a snapshot; the clusters only it held are freed.
    SnapshotDelete(snapshot::DeleteArgs),
    /// Host capabilities as libvirt's capabilities XML.
    Capabilities,
    /// What a VM may use in Vireo, as libvirt's domain capabilities XML.
    Domcapabilities,
    /// Check whether this host can run VMs, and say why not.
    HostValidate,
    #[command(flatten)]
    Pool(pool::PoolCommand),
    #[command(flatten)]
    Net(network::NetCommand),
    /// Create, inspect, check, convert and resize disk images, like qemu-img.
    Img(img::ImgArgs),
}

pub fn main() -> ExitCode {
    crate::logging::init();
    let cli = Cli::parse();
    let Some(command) = cli.command else {
        return open_window(cli.demo);
    };
    if let Some(result) = on_connection(cli.connect.as_deref(), &command) {
        return finish(result.and_then(|uri| remote::run(&uri, command)));
    }
    let result = match command {
        Command::Run(args) => run::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Define { file } => domain::define(file),
        Command::Undefine(args) => domain::undefine(args),
        Command::List(args) => domain::list(args),
        Command::Start(args) => domain::start(args),
        Command::Destroy { domain } => domain::destroy(&domain),
        Command::Dumpxml { domain } => domain::dumpxml(&domain),
        Command::Domstate { domain } => domain::domstate(&domain),
        Command::Domid { domain } => domain::domid(&domain),
        Command::Domuuid { domain } => domain::domuuid(&domain),
        Command::Dominfo { domain } => domain::dominfo(&domain),
        Command::Edit { domain } => domain::edit(&domain),
        Command::Clone(args) => clone::clone(args),
        Command::Domrename { domain, new_name } => domain::domrename(&domain, &new_name),
        Command::Console { domain } => domain::console(&domain),
        Command::Suspend { domain } => control::suspend(&domain),
        Command::Resume { domain } => control::resume(&domain),
        Command::Shutdown { domain } => control::shutdown(&domain),
        Command::Reboot { domain } => control::reboot(&domain),
        Command::Reset { domain } => control::reset(&domain),
        Command::SendKey(args) => control::send_key(args),
        Command::Screenshot { domain, file } => control::screenshot(&domain, file),
        Command::Vncdisplay { domain } => control::vncdisplay(&domain),
        Command::AttachDisk(args) => disks::attach_disk(args),
        Command::DetachDisk(args) => disks::detach_disk(args),
        Command::ChangeMedia(args) => disks::change_media(args),
        Command::Domblklist(args) => disks::domblklist(args),
        Command::Domblkinfo { domain, target } => disks::domblkinfo(&domain, &target),
        Command::Vmm { name, paused } => return crate::vm_process::process::main(&name, paused),
        Command::SnapshotCreateAs(args) => snapshot::create_as(args),
        Command::SnapshotCreate(args) => snapshot::create(args),
        Command::SnapshotList(args) => snapshot::list(args),
        Command::SnapshotInfo(args) => snapshot::info(args),
        Command::SnapshotDumpxml(args) => snapshot::dumpxml(args),
        Command::SnapshotCurrent(args) => snapshot::current(args),
        Command::SnapshotRevert(args) => snapshot::revert(args),
        Command::SnapshotDelete(args) => snapshot::delete(args),
        Command::Capabilities => host::capabilities(),
        Command::Domcapabilities => host::domcapabilities(),
        Command::HostValidate => host::host_validate(),
        Command::Pool(command) => pool::run(command),
        Command::Net(command) => network::run(command),
        Command::Img(args) => img::run(args),
    };
    finish(result)
}

fn finish(result: Result<ExitCode, String>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("vireo: {message}");
            ExitCode::FAILURE
        }
    }
}

/// The libvirt URI `command` goes to, when it goes to one: `-c URI`, else
/// the environment as virsh reads it. Vireo's own URI, and verbs that
/// only make sense on this computer under a URI from the environment,
/// stay local; those verbs with an explicit libvirt `-c` are refused.
fn on_connection(explicit: Option<&str>, command: &Command) -> Option<Result<String, String>> {
    let uri = crate::connection::resolve_uri(explicit)?;
    if crate::connection::ConnectionUri::parse(&uri) == crate::connection::ConnectionUri::Local {
        return None;
    }
    if remote::accepts(command) {
        return Some(Ok(uri));
    }
    explicit.map(|_| {
        Err(format!(
            "this command manages Vireo's own VMs and is not available on {uri}"
        ))
    })
}

/// `vireo` without a command: the window, where there is a display.
fn open_window(demo: bool) -> ExitCode {
    let has_display = ["WAYLAND_DISPLAY", "DISPLAY"]
        .iter()
        .any(|var| std::env::var_os(var).is_some_and(|v| !v.is_empty()));
    if !has_display {
        // Translated: the person who typed `vireo` reads this instead of a window.
        crate::ui::init_translations();
        eprintln!(
            "vireo: {}",
            crate::ui::gettext(
                "there is no display to open the window on; `vireo demo` runs the demo VM in this terminal, and `vireo --help` lists the commands"
            )
        );
        return ExitCode::FAILURE;
    }
    crate::ui::run(crate::ui::Startup { demo })
}
