//! The `vireo` command line: virsh- and qemu-img-like verbs.

mod demo;
mod img;
mod run;
mod terminal;

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
    /// Start the demo VM that ships with Vireo, its console in this terminal.
    Demo(demo::DemoArgs),
    /// Create, inspect, check, convert and resize disk images, like qemu-img.
    Img(img::ImgArgs),
}

pub fn main() -> ExitCode {
    crate::logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::run(args),
        Command::Demo(args) => demo::run(args),
        Command::Img(args) => img::run(args),
    };
    match result {
        Ok(code) => code,
        Err(message) => {
            eprintln!("vireo: {message}");
            ExitCode::FAILURE
        }
    }
}
