//! `vireo capabilities`, `vireo domcapabilities`, `vireo host-validate`.

use std::process::ExitCode;

use crate::host::capabilities::{capabilities_xml, domain_capabilities_xml, host_uuid};
use crate::host::cpu::HostCpu;
use crate::host::validate::{self, Verdict};

fn emulator() -> String {
    std::env::current_exe()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|_| "vireo".into())
}

fn max_vcpus() -> u32 {
    kvm_ioctls::Kvm::new()
        .map(|kvm| crate::vmm::max_vcpus(&kvm))
        .unwrap_or_else(|_| {
            std::thread::available_parallelism()
                .map(|n| n.get() as u32)
                .unwrap_or(1)
        })
}

pub fn capabilities() -> Result<ExitCode, String> {
    print!(
        "{}",
        capabilities_xml(&HostCpu::read(), &host_uuid(), &emulator(), max_vcpus())
    );
    Ok(ExitCode::SUCCESS)
}

pub fn domcapabilities() -> Result<ExitCode, String> {
    let loaders: Vec<String> = crate::vmm::firmware::search_dirs()
        .into_iter()
        .map(|d| d.join(crate::vmm::firmware::BIOS_FILE))
        .filter(|p| p.is_file())
        .map(|p| p.display().to_string())
        .collect();
    print!(
        "{}",
        domain_capabilities_xml(&emulator(), max_vcpus(), &loaders)
    );
    Ok(ExitCode::SUCCESS)
}

pub fn host_validate() -> Result<ExitCode, String> {
    let checks = validate::checks();
    print!("{}", validate::render(&checks));
    Ok(if checks.iter().any(|c| c.verdict == Verdict::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}
