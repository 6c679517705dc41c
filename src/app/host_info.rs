//! What Connection Details → Overview shows about the host (virt-manager's
//! connection overview): its name, CPU, memory, KVM and the capabilities
//! XML `vireo capabilities` prints. Gathered on a worker thread: opening
//! /dev/kvm and reading /proc take a moment, and the GTK thread must not.

use std::path::Path;

use super::host_check::{self, KvmProblem};
use crate::host::capabilities::{capabilities_xml, host_uuid};
use crate::host::cpu::HostCpu;

/// Everything the host page shows, as plain data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostInfo {
    pub hostname: String,
    /// The kernel's release (`uname -r`).
    pub kernel: String,
    /// "model name", e.g. "Intel(R) Core(TM) i7-8650U CPU @ 1.90GHz".
    pub cpu_model: String,
    pub logical_cpus: u32,
    /// (sockets, cores per socket, threads per core).
    pub topology: (u32, u32, u32),
    /// "Intel VT-x (vmx)", "AMD-V (svm)", or none.
    pub virtualization: Option<&'static str>,
    pub memory: Memory,
    pub kvm: Result<Kvm, KvmProblem>,
    pub vms_running: usize,
    pub vms_defined: usize,
    pub capabilities_xml: String,
}

/// `/proc/meminfo`'s totals, in bytes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Memory {
    pub total: u64,
    pub available: u64,
}

/// What `/dev/kvm` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kvm {
    /// KVM_GET_API_VERSION (12 on every kernel since 2.6.22).
    pub api_version: i32,
    /// The most vCPUs one VM may have here.
    pub max_vcpus: u32,
}

impl HostInfo {
    /// Reads the running host (its KVM device as the window checks it).
    pub fn gather() -> Self {
        let cpu = HostCpu::read();
        let kvm = open_kvm(&host_check::kvm_device());
        let max_vcpus = match &kvm {
            Ok(kvm) => kvm.max_vcpus,
            Err(_) => cpu.logical.len().max(1) as u32,
        };
        let emulator = std::env::current_exe()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|_| "vireo".into());
        let vms = super::inventory::list_quickly();
        HostInfo {
            hostname: read_trimmed("/proc/sys/kernel/hostname")
                .unwrap_or_else(|| "localhost".into()),
            kernel: read_trimmed("/proc/sys/kernel/osrelease").unwrap_or_default(),
            cpu_model: if cpu.model_name.is_empty() {
                cpu.vendor.clone()
            } else {
                cpu.model_name.clone()
            },
            logical_cpus: cpu.logical.len().max(1) as u32,
            topology: cpu.topology(),
            virtualization: cpu.hardware_virtualization(),
            memory: std::fs::read_to_string("/proc/meminfo")
                .map(|text| Memory::from_meminfo(&text))
                .unwrap_or_default(),
            kvm,
            vms_running: vms.iter().filter(|vm| vm.state.is_active()).count(),
            vms_defined: vms.len(),
            capabilities_xml: capabilities_xml(&cpu, &host_uuid(), &emulator, max_vcpus),
        }
    }
}

impl Memory {
    /// Parses `/proc/meminfo` (values in kB, which Linux means as KiB).
    pub fn from_meminfo(text: &str) -> Self {
        let field = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(':'))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
                .map(|kib| kib * 1024)
        };
        let total = field("MemTotal").unwrap_or(0);
        // Kernels before 3.14 have no MemAvailable; free memory is the
        // nearest figure they give.
        let available = field("MemAvailable")
            .or_else(|| field("MemFree"))
            .unwrap_or(0);
        Memory { total, available }
    }
}

/// Opens the KVM device and asks its API version and vCPU limit; when it
/// cannot be opened, says why the way the window's status page does.
pub fn open_kvm(device: &Path) -> Result<Kvm, KvmProblem> {
    if let Some(problem) = host_check::kvm_problem(device) {
        return Err(problem);
    }
    let path = std::ffi::CString::new(device.as_os_str().as_encoded_bytes())
        .map_err(|_| KvmProblem::Missing)?;
    // A file that opens but is no KVM device (as tests point
    // VIREO_KVM_DEVICE at) fails here: there is no KVM to use.
    let kvm = kvm_ioctls::Kvm::new_with_path(&path).map_err(|_| KvmProblem::Missing)?;
    let api_version = kvm.get_api_version();
    if api_version < 0 {
        return Err(KvmProblem::Missing);
    }
    Ok(Kvm {
        api_version,
        max_vcpus: crate::vmm::max_vcpus(&kvm),
    })
}

/// `bytes` in GiB with one decimal ("15.5 GiB"), the unit the New VM
/// wizard and virt-manager's overview use for host memory.
pub fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

fn read_trimmed(path: &str) -> Option<String> {
    std::fs::read_to_string(path)
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo_gives_total_and_available_in_bytes() {
        let text = "MemTotal:       16303588 kB\nMemFree:         1000000 kB\nMemAvailable:    8000000 kB\n";
        let memory = Memory::from_meminfo(text);
        assert_eq!(memory.total, 16303588 * 1024);
        assert_eq!(memory.available, 8000000 * 1024);
    }

    #[test]
    fn an_old_kernel_without_memavailable_reports_free_memory() {
        let memory = Memory::from_meminfo("MemTotal: 2048 kB\nMemFree: 1024 kB\n");
        assert_eq!(memory.available, 1024 * 1024);
    }

    #[test]
    fn gib_has_one_decimal() {
        assert_eq!(gib(16 << 30), "16.0 GiB");
        assert_eq!(gib(3 << 29), "1.5 GiB");
    }

    #[test]
    fn a_missing_device_is_the_host_checks_problem() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(open_kvm(&dir.path().join("kvm")), Err(KvmProblem::Missing));
    }

    #[test]
    fn a_plain_file_is_no_kvm() {
        let dir = tempfile::tempdir().unwrap();
        let device = dir.path().join("kvm");
        std::fs::write(&device, b"").unwrap();
        assert_eq!(open_kvm(&device), Err(KvmProblem::Missing));
    }

    #[test]
    fn the_running_host_is_described() {
        let info = HostInfo::gather();
        assert!(!info.hostname.is_empty());
        let cpus = std::thread::available_parallelism().unwrap().get() as u32;
        assert!(info.logical_cpus >= cpus, "{} < {cpus}", info.logical_cpus);
        assert!(info.memory.total > 0 && info.memory.available <= info.memory.total);
        assert!(info.capabilities_xml.contains("<capabilities>"));
        if Path::new("/dev/kvm").exists()
            && host_check::kvm_problem(Path::new("/dev/kvm")).is_none()
        {
            assert_eq!(info.kvm.map(|k| k.api_version), Ok(12));
        }
    }
}
