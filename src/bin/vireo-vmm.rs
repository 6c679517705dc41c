//! `vireo-vmm NAME [--paused]`: one running VM, the process `vireo start`
//! and the window start (`vm_process::spawn`). A binary of its own so that
//! the process that runs a guest, and reads everything the guest and its
//! VNC and QMP clients send, maps no GTK: it links only what a VM needs.

use std::process::ExitCode;

fn main() -> ExitCode {
    vireo::logging::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    match vireo::vm_process::process::parse_args(&args) {
        Some((name, paused)) => vireo::vm_process::process::main(&name, paused),
        None => {
            eprintln!(
                "usage: vireo-vmm NAME [--paused]\n\
                 Runs the defined VM NAME; `vireo start NAME` starts it this way."
            );
            ExitCode::from(2)
        }
    }
}
