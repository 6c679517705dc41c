//! virsh's verbs that talk to a running VM through its control socket:
//! suspend, resume, shutdown, reboot, reset, send-key, screenshot,
//! vncdisplay, and the paused state for domstate/list.

use std::path::PathBuf;
use std::process::ExitCode;

use serde_json::{json, Value};

use crate::control::ControlClient;
use crate::definitions::DomainStore;
use crate::keys::qcode;
use crate::vm_process::RunFiles;

type CliResult = Result<ExitCode, String>;

/// Connects to running domain `which`; returns its name and a client.
fn connect(which: &str) -> Result<(String, ControlClient), String> {
    let definition = DomainStore::open().find(which).map_err(|e| e.to_string())?;
    let files = RunFiles::new(&definition.name);
    if files.running().is_none() {
        return Err(format!("domain '{}' is not running", definition.name));
    }
    let client = ControlClient::connect(files.control()).map_err(|e| e.to_string())?;
    Ok((definition.name, client))
}

fn execute(which: &str, command: &str, arguments: Value) -> Result<(String, Value), String> {
    let (name, mut client) = connect(which)?;
    let value = client
        .execute(command, arguments)
        .map_err(|e| e.to_string())?;
    Ok((name, value))
}

/// "running" or "paused", as QMP's query-status says, for a running VM.
pub fn suspend(which: &str) -> CliResult {
    let (name, _) = execute(which, "stop", Value::Null)?;
    println!("Domain '{name}' suspended\n");
    Ok(ExitCode::SUCCESS)
}

pub fn resume(which: &str) -> CliResult {
    let (name, _) = execute(which, "cont", Value::Null)?;
    println!("Domain '{name}' resumed\n");
    Ok(ExitCode::SUCCESS)
}

pub fn shutdown(which: &str) -> CliResult {
    let (name, _) = execute(which, "system_powerdown", Value::Null)?;
    println!("Domain '{name}' is being shutdown\n");
    Ok(ExitCode::SUCCESS)
}

/// virsh reboot asks the guest to reboot itself. The PIIX4 PM function has
/// no reboot request a guest would act on (the power button means power
/// off), so this presses the reset button, as `reset` does; the message is
/// virsh's.
pub fn reboot(which: &str) -> CliResult {
    let (name, _) = execute(which, "system_reset", Value::Null)?;
    println!("Domain '{name}' is being rebooted\n");
    Ok(ExitCode::SUCCESS)
}

pub fn reset(which: &str) -> CliResult {
    let (name, _) = execute(which, "system_reset", Value::Null)?;
    println!("Domain '{name}' was reset\n");
    Ok(ExitCode::SUCCESS)
}

/// A key as virsh's default `linux` codeset names it (`KEY_LEFTCTRL`), or
/// as a QEMU qcode (`ctrl`), to the qcode.
fn key_to_qcode(key: &str) -> Option<String> {
    if qcode::qnum(key).is_some() {
        return Some(key.to_string());
    }
    let name = key.strip_prefix("KEY_")?.to_ascii_lowercase();
    let mapped = match name.as_str() {
        "leftctrl" => "ctrl",
        "rightctrl" => "ctrl_r",
        "leftalt" => "alt",
        "rightalt" => "alt_r",
        "leftshift" => "shift",
        "rightshift" => "shift_r",
        "leftmeta" => "meta_l",
        "rightmeta" => "meta_r",
        "enter" => "ret",
        "space" => "spc",
        "esc" => "esc",
        "pageup" => "pgup",
        "pagedown" => "pgdn",
        "sysrq" => "sysrq",
        "minus" => "minus",
        "equal" => "equal",
        other => other,
    };
    qcode::qnum(mapped).map(|_| mapped.to_string())
}

#[derive(clap::Args)]
pub struct SendKeyArgs {
    domain: String,
    /// Keys pressed together: KEY_LEFTCTRL KEY_LEFTALT KEY_DELETE, or QEMU names (ctrl alt delete).
    #[arg(required = true)]
    keys: Vec<String>,
    /// How long to hold them, in milliseconds.
    #[arg(long, default_value_t = 100)]
    holdtime: u32,
}

pub fn send_key(args: SendKeyArgs) -> CliResult {
    let mut keys = Vec::new();
    for key in &args.keys {
        let code = key_to_qcode(key).ok_or_else(|| format!("invalid keycode: '{key}'"))?;
        keys.push(json!({"type": "qcode", "data": code}));
    }
    execute(
        &args.domain,
        "send-key",
        json!({"keys": keys, "hold-time": args.holdtime}),
    )?;
    Ok(ExitCode::SUCCESS)
}

pub fn screenshot(which: &str, file: Option<PathBuf>) -> CliResult {
    let definition = DomainStore::open().find(which).map_err(|e| e.to_string())?;
    let file = file.unwrap_or_else(|| PathBuf::from(format!("{}-screenshot.png", definition.name)));
    let file = std::path::absolute(&file).map_err(|e| e.to_string())?;
    let png = file.extension().map_or(true, |e| e != "ppm");
    let format = if png { "png" } else { "ppm" };
    let scratch = crate::vm_process::RunFiles::new(&definition.name).screendump();
    execute(
        which,
        "screendump",
        json!({"filename": scratch, "format": format}),
    )?;
    crate::vm_process::deliver_screenshot(&scratch, &file)?;
    let mime = if png {
        "image/png"
    } else {
        "image/x-portable-pixmap"
    };
    println!(
        "Screenshot saved to {}, with type of {mime}\n",
        file.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn vncdisplay(which: &str) -> CliResult {
    let (_, info) = execute(which, "query-vnc", Value::Null)?;
    match (
        info["family"].as_str(),
        info["host"].as_str(),
        info["service"].as_str(),
    ) {
        (Some("ipv4" | "ipv6"), Some(host), Some(port)) => {
            let port: u16 = port.parse().map_err(|_| format!("odd VNC port '{port}'"))?;
            let display = port
                .checked_sub(5900)
                .map(|d| d.to_string())
                .unwrap_or_else(|| port.to_string());
            println!("{host}:{display}\n");
            Ok(ExitCode::SUCCESS)
        }
        _ => Err(
            "the domain has no VNC listener on TCP (add <graphics type='vnc'/> to its definition)"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn virsh_key_names_map_to_qcodes() {
        assert_eq!(key_to_qcode("KEY_LEFTCTRL").as_deref(), Some("ctrl"));
        assert_eq!(key_to_qcode("KEY_DELETE").as_deref(), Some("delete"));
        assert_eq!(key_to_qcode("KEY_A").as_deref(), Some("a"));
        assert_eq!(key_to_qcode("KEY_F12").as_deref(), Some("f12"));
        assert_eq!(key_to_qcode("alt").as_deref(), Some("alt"));
        assert_eq!(key_to_qcode("KEY_NOPE"), None);
    }
}
