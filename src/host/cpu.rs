//! The host CPU as Linux describes it (/proc/cpuinfo, sysfs topology).

use std::collections::BTreeSet;
use std::path::Path;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostCpu {
    pub vendor: String,
    /// "model name" from /proc/cpuinfo.
    pub model_name: String,
    /// Flags as /proc/cpuinfo spells them.
    pub flags: BTreeSet<String>,
    pub logical: Vec<LogicalCpu>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalCpu {
    pub id: u32,
    pub socket: u32,
    pub core: u32,
    pub siblings: String,
}

impl HostCpu {
    /// Reads the running host.
    pub fn read() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let mut cpu = Self::from_cpuinfo(&cpuinfo);
        cpu.logical = read_topology(Path::new("/sys/devices/system/cpu"), &cpuinfo);
        cpu
    }

    /// Parses /proc/cpuinfo (the first processor's vendor, model and flags).
    pub fn from_cpuinfo(text: &str) -> Self {
        let field = |name: &str| {
            text.lines()
                .find(|l| l.split(':').next().map(str::trim) == Some(name))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        };
        let vendor = match field("vendor_id").as_str() {
            "GenuineIntel" => "Intel".to_string(),
            "AuthenticAMD" => "AMD".to_string(),
            other => other.to_string(),
        };
        let flags = field("flags")
            .split_whitespace()
            .map(str::to_string)
            .collect();
        Self {
            vendor,
            model_name: field("model name"),
            flags,
            logical: Vec::new(),
        }
    }

    pub fn has(&self, flag: &str) -> bool {
        self.flags.contains(flag)
    }

    /// Hardware virtualization: Intel VT-x or AMD-V.
    pub fn hardware_virtualization(&self) -> Option<&'static str> {
        if self.has("vmx") {
            Some("Intel VT-x (vmx)")
        } else if self.has("svm") {
            Some("AMD-V (svm)")
        } else {
            None
        }
    }

    /// The nearest libvirt/QEMU named model by instruction-set level (a
    /// coarse guess: libvirt's cpu_map compares full feature sets).
    pub fn libvirt_model(&self) -> &'static str {
        let amd = self.vendor == "AMD";
        if self.has("avx512f") {
            if amd {
                "EPYC-Genoa"
            } else {
                "Skylake-Server"
            }
        } else if self.has("avx2") {
            if amd {
                "EPYC"
            } else {
                "Haswell"
            }
        } else if self.has("avx") {
            if amd {
                "Opteron_G4"
            } else {
                "SandyBridge"
            }
        } else if self.has("sse4_2") {
            "Nehalem"
        } else {
            "qemu64"
        }
    }

    /// (sockets, cores per socket, threads per core).
    pub fn topology(&self) -> (u32, u32, u32) {
        let sockets: BTreeSet<u32> = self.logical.iter().map(|c| c.socket).collect();
        let cores: BTreeSet<(u32, u32)> = self.logical.iter().map(|c| (c.socket, c.core)).collect();
        let sockets_n = sockets.len().max(1) as u32;
        let cores_n = (cores.len() as u32 / sockets_n).max(1);
        let threads = (self.logical.len() as u32 / (sockets_n * cores_n)).max(1);
        (sockets_n, cores_n, threads)
    }
}

/// Logical CPUs with their package and core ids (sysfs), falling back to
/// one socket of single-thread cores counted from /proc/cpuinfo.
fn read_topology(sysfs: &Path, cpuinfo: &str) -> Vec<LogicalCpu> {
    let count = cpuinfo
        .lines()
        .filter(|l| l.starts_with("processor"))
        .count()
        .max(1) as u32;
    (0..count)
        .map(|id| {
            let dir = sysfs.join(format!("cpu{id}/topology"));
            let read = |name: &str| {
                std::fs::read_to_string(dir.join(name))
                    .ok()
                    .map(|s| s.trim().to_string())
            };
            LogicalCpu {
                id,
                socket: read("physical_package_id")
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0),
                core: read("core_id").and_then(|s| s.parse().ok()).unwrap_or(id),
                siblings: read("thread_siblings_list").unwrap_or_else(|| id.to_string()),
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CPUINFO: &str = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i7\nflags\t\t: fpu vme vmx sse4_2 avx\n\nprocessor\t: 1\nvendor_id\t: GenuineIntel\n";

    #[test]
    fn cpuinfo_gives_vendor_model_and_flags() {
        let cpu = HostCpu::from_cpuinfo(CPUINFO);
        assert_eq!(cpu.vendor, "Intel");
        assert_eq!(cpu.model_name, "Intel(R) Core(TM) i7");
        assert_eq!(cpu.hardware_virtualization(), Some("Intel VT-x (vmx)"));
        assert_eq!(cpu.libvirt_model(), "SandyBridge");
    }

    #[test]
    fn topology_counts_sockets_cores_threads() {
        let mut cpu = HostCpu::from_cpuinfo(CPUINFO);
        cpu.logical = (0..8)
            .map(|id| LogicalCpu {
                id,
                socket: id / 4,
                core: (id % 4) / 2,
                siblings: String::new(),
            })
            .collect();
        assert_eq!(cpu.topology(), (2, 2, 2));
    }
}
