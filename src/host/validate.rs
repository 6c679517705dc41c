//! `vireo host-validate`: can this host run VMs, and if not, why not — in
//! the spirit of `virt-host-validate`, one line per check.

use std::fs::OpenOptions;
use std::path::Path;

use super::cpu::HostCpu;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Pass,
    Warn,
    Fail,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub what: &'static str,
    pub verdict: Verdict,
    /// Details, and what to do when it is not a pass.
    pub note: String,
}

const KVM_DEVICE: &str = "/dev/kvm";
/// KVM's stable API version (`KVM_GET_API_VERSION`).
const KVM_API_VERSION: i32 = 12;

/// Runs every check against the running host.
pub fn checks() -> Vec<Check> {
    let cpu = HostCpu::read();
    let mut out = Vec::new();
    let modules: Vec<String> = std::fs::read_dir("/sys/module")
        .map(|dir| {
            dir.filter_map(|e| e.ok())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| n.starts_with("kvm"))
                .collect()
        })
        .unwrap_or_default();

    out.push(match cpu.hardware_virtualization() {
        Some(kind) => Check { what: "hardware virtualization", verdict: Verdict::Pass, note: kind.to_string() },
        None if modules.iter().any(|m| m == "kvm_pvm") => Check {
            what: "hardware virtualization",
            verdict: Verdict::Warn,
            note: "the CPU offers no VT-x/AMD-V; KVM runs through the kvm_pvm module, so guests run, but emulated and slowly".into(),
        },
        None => Check {
            what: "hardware virtualization",
            verdict: Verdict::Fail,
            note: "the CPU offers no VT-x/AMD-V: turn on \"Intel Virtualization Technology\" or \"SVM Mode\" in the firmware setup (BIOS/UEFI)".into(),
        },
    });

    out.push(if modules.iter().any(|m| m == "kvm") {
        Check {
            what: "kvm kernel module",
            verdict: Verdict::Pass,
            note: modules.join(", "),
        }
    } else {
        Check {
            what: "kvm kernel module",
            verdict: Verdict::Fail,
            note:
                "not loaded: run `sudo modprobe kvm_intel` (Intel) or `sudo modprobe kvm_amd` (AMD)"
                    .into(),
        }
    });

    out.push(device_check(Path::new(KVM_DEVICE)));

    if let Ok(kvm) = kvm_ioctls::Kvm::new() {
        let version = kvm.get_api_version();
        out.push(Check {
            what: "KVM API version",
            verdict: if version == KVM_API_VERSION {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            note: format!("{version}"),
        });
        let irqchip = kvm.check_extension(kvm_ioctls::Cap::Irqchip);
        out.push(Check {
            what: "in-kernel interrupt controllers",
            verdict: if irqchip {
                Verdict::Pass
            } else {
                Verdict::Fail
            },
            note: if irqchip {
                "PIC, IOAPIC and PIT in the kernel".into()
            } else {
                "KVM lacks KVM_CAP_IRQCHIP".into()
            },
        });
    }

    out.push(match crate::vmm::firmware::find(crate::vmm::firmware::BIOS_FILE) {
        Ok(path) => Check { what: "firmware (SeaBIOS)", verdict: Verdict::Pass, note: path.display().to_string() },
        Err(searched) => Check {
            what: "firmware (SeaBIOS)",
            verdict: Verdict::Fail,
            note: format!(
                "not found in {}: install it (`sudo apt install seabios`) or set VIREO_FIRMWARE_DIR",
                searched.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
            ),
        },
    });
    out
}

/// Whether `/dev/kvm` exists and this user may open it read-write.
pub fn device_check(path: &Path) -> Check {
    let what = "access to /dev/kvm";
    if !path.exists() {
        return Check {
            what,
            verdict: Verdict::Fail,
            note: format!("{} does not exist: load the kvm module, and inside a Flatpak make sure the app has --device=kvm", path.display()),
        };
    }
    match OpenOptions::new().read(true).write(true).open(path) {
        Ok(_) => Check { what, verdict: Verdict::Pass, note: "read/write".into() },
        Err(e) => Check {
            what,
            verdict: Verdict::Fail,
            note: format!(
                "{e}: add yourself to the group that owns it (`sudo usermod -aG kvm $USER`, then log out and in again)"
            ),
        },
    }
}

/// The checks as virt-host-validate prints them.
pub fn render(checks: &[Check]) -> String {
    let mut out = String::new();
    for check in checks {
        let verdict = match check.verdict {
            Verdict::Pass => "PASS",
            Verdict::Warn => "WARN",
            Verdict::Fail => "FAIL",
        };
        let label = format!("  Vireo: Checking for {}", check.what);
        out.push_str(&format!("{label:<78}: {verdict}"));
        if check.verdict != Verdict::Pass || !check.note.is_empty() {
            out.push_str(&format!(" ({})", check.note));
        }
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_device_says_what_to_do() {
        let check = device_check(Path::new("/nonexistent/kvm"));
        assert_eq!(check.verdict, Verdict::Fail);
        assert!(check.note.contains("--device=kvm"), "{}", check.note);
    }

    #[test]
    fn rendering_lines_up_like_virt_host_validate() {
        let text = render(&[Check {
            what: "x",
            verdict: Verdict::Warn,
            note: "why".into(),
        }]);
        assert!(text.starts_with("  Vireo: Checking for x"));
        assert!(text.ends_with(": WARN (why)\n"), "{text}");
        assert_eq!(text.find(':').unwrap(), 7);
    }
}
