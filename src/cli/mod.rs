//! The `vireo` command line: virsh- and qemu-img-like verbs.

mod run;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "vireo",
    version,
    about = "A virtual-machine manager with its own KVM monitor"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a VM in the foreground from a domain XML file, like qemu-system-x86_64.
    Run(run::RunArgs),
}

pub fn main() -> ExitCode {
    crate::logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("vireo: {message}");
            ExitCode::FAILURE
        }
    }
}
