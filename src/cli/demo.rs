//! `vireo demo`: the demo VM that ships with Vireo, started at once.
//!
//! Its guest (a boot sector and the program it loads, assembled at build
//! time from `guests/demo.rs`) lives at the start of a 1 MiB raw disk in
//! the default pool and boots through SeaBIOS like any other disk. It
//! draws a splash on the VGA screen and echoes keys and serial input.

use std::path::PathBuf;

use crate::app::demo::write_demo_disk;
use std::process::ExitCode;

use crate::vmm::{DiskBus, DiskConfig, DiskKind, VmConfig};

#[derive(clap::Args)]
pub struct DemoArgs {
    /// Where COM1 goes (see `vireo run --help`); the demo talks on it.
    #[arg(long, default_value = "stdio")]
    serial: String,
    /// Also serve its screen over VNC on ADDR:DISPLAY (see `vireo run --help`).
    #[arg(long, value_name = "ADDR:DISPLAY")]
    vnc: Option<String>,
}

pub fn demo_config(disk: PathBuf) -> VmConfig {
    let mut config = VmConfig::new(
        crate::app::demo::DEMO_NAME,
        crate::app::demo::DEMO_MEMORY_MIB << 20,
    );
    config.disks.push(DiskConfig {
        target: "hda".into(),
        kind: DiskKind::Disk,
        bus: DiskBus::Ide {
            channel: 0,
            unit: 0,
        },
        path: Some(disk),
        format: crate::storage::ImageFormat::Raw,
        read_only: false,
        boot_order: Some(1),
        cache: Default::default(),
        discard: Default::default(),
    });
    config
}

pub fn run(args: DemoArgs) -> Result<ExitCode, String> {
    let vnc = match &args.vnc {
        Some(spec) => {
            let (addr, port) =
                crate::vnc::parse_vnc_display(spec).map_err(|e| format!("--vnc: {e}"))?;
            let mut vnc = crate::vnc::VncConfig::new("Demo");
            vnc.tcp = Some((addr, Some(port)));
            Some(vnc)
        }
        None => None,
    };
    let disk = write_demo_disk(&crate::paths::images_dir())
        .map_err(|e| format!("cannot write the demo disk: {e}"))?;
    eprintln!("Starting the demo VM (SeaBIOS boots its disk; Ctrl+C stops it)…");
    super::run::run_with(
        demo_config(disk),
        super::run::RunOptions {
            serial: &args.serial,
            debugcon: None,
            vnc,
            screenshot_on_exit: None,
            sandbox_opt_out: crate::sandbox::disabled_by_env().then_some("VIREO_NO_SANDBOX=1"),
        },
    )
}
