//! The VM process is `vireo-vmm`, a binary that links no GTK and no
//! libvirt: `vireo start` runs it, and the running VM maps none of the
//! window's libraries.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::asm::firmware;
use common::{kvm_available, require_program, wait, Domain, Home};

/// Libraries of the window's stack (GTK, libadwaita and what they bring,
/// and libvirt's client for other hosts' VMs). Not GLib itself: libslirp,
/// the NAT every VM process links, needs it.
const GUI_LIBRARIES: [&str; 9] = [
    "libgtk",
    "libadwaita",
    "libgdk",
    "libpango",
    "libcairo",
    "libgraphene",
    "libgio",
    "libgobject",
    "libvirt.so",
];

fn gui_libraries_in(text: &str) -> Vec<String> {
    text.lines()
        .filter(|line| GUI_LIBRARIES.iter().any(|lib| line.contains(lib)))
        .map(|line| line.trim().to_string())
        .collect()
}

#[test]
fn the_vm_program_needs_no_gtk() {
    require_program("readelf");
    let vmm = env!("CARGO_BIN_EXE_vireo-vmm");
    let out = Command::new("readelf").args(["-d", vmm]).output().unwrap();
    assert!(out.status.success(), "readelf -d {vmm}");
    let dynamic = String::from_utf8_lossy(&out.stdout);
    assert!(dynamic.contains("(NEEDED)"), "{dynamic}");
    let gui = gui_libraries_in(&dynamic);
    assert!(gui.is_empty(), "vireo-vmm needs {gui:#?}");
    // The window's binary does link GTK: the check above can see it.
    let out = Command::new("readelf")
        .args(["-d", env!("CARGO_BIN_EXE_vireo")])
        .output()
        .unwrap();
    assert!(!gui_libraries_in(&String::from_utf8_lossy(&out.stdout)).is_empty());
}

#[test]
fn vireo_start_runs_the_vm_in_vireo_vmm_without_gtk_mapped() {
    if !kvm_available() {
        return;
    }
    let home = Home::new();
    let image = home.path("up.bin");
    std::fs::write(&image, firmware(|p| p.print("up\n"))).unwrap();
    let xml = home.path("plain.xml");
    std::fs::write(&xml, Domain::new("plain").firmware(&image).xml()).unwrap();
    home.ok(&["define", xml.to_str().unwrap()]);
    home.ok(&["start", "plain"]);
    home.wait_until(&["domstate", "plain"], Duration::from_secs(30), |s| {
        s.trim() == "running"
    });
    let state: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(home.vm_files("plain").state()).unwrap())
            .unwrap();
    let pid = state["pid"].as_u64().unwrap();
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).unwrap();
    assert_eq!(
        exe.file_name(),
        Path::new("vireo-vmm").file_name(),
        "{}",
        exe.display()
    );
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap();
    let args: Vec<&[u8]> = cmdline.split(|&b| b == 0).collect();
    assert_eq!(args.get(1), Some(&&b"plain"[..]), "{cmdline:?}");
    // The guest ran: its line is on the serial console.
    let serial = home.vm_files("plain").serial();
    wait::until(
        "the guest's line on its serial console",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            use std::io::Read;
            let mut stream =
                std::os::unix::net::UnixStream::connect(&serial).map_err(|e| e.to_string())?;
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut seen = [0u8; 256];
            let n = stream.read(&mut seen).unwrap_or(0);
            let text = String::from_utf8_lossy(&seen[..n]).into_owned();
            if text.contains("up") {
                Ok(())
            } else {
                Err(format!("serial: {text:?}"))
            }
        },
    );
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let gui = gui_libraries_in(&maps);
    home.ok(&["destroy", "plain"]);
    assert!(gui.is_empty(), "the VM process maps {gui:#?}");
}
