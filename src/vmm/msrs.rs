//! Model-specific registers a vCPU starts with that KVM leaves to the VMM,
//! as firmware would set them on real hardware.
//!
//! Only AMD's HWCR.TscFreqSel for now: AMD firmware sets it (the TSC counts
//! at the P0 frequency, which every Zen part does), and Linux warns
//! "[Firmware Bug]: TSC doesn't count with P0 frequency!" when it reads
//! clear (`arch/x86/kernel/cpu/amd.c`). KVM lets the VMM set it
//! (`MSR_K7_HWCR` accepts McStatusWrEn and TscFreqSel).

use kvm_bindings::{kvm_msr_entry, CpuId, Msrs};

/// AMD's hardware configuration register and its TscFreqSel bit (AMD
/// BKDG/PPR, MSRC001_0015[24]).
pub const MSR_K7_HWCR: u32 = 0xc001_0015;
pub const HWCR_TSC_FREQ_SEL: u64 = 1 << 24;

/// Whether `cpuid` (leaf 0's vendor string) is an AMD or Hygon CPU.
pub fn is_amd(cpuid: &CpuId) -> bool {
    cpuid
        .as_slice()
        .iter()
        .find(|entry| entry.function == 0)
        .is_some_and(|leaf| {
            let mut vendor = Vec::with_capacity(12);
            for reg in [leaf.ebx, leaf.edx, leaf.ecx] {
                vendor.extend_from_slice(&reg.to_le_bytes());
            }
            vendor == b"AuthenticAMD" || vendor == b"HygonGenuine"
        })
}

/// The MSRs to set on each vCPU before it runs, for a CPU with `cpuid`.
pub fn at_power_on(cpuid: &CpuId) -> Vec<kvm_msr_entry> {
    let mut msrs = Vec::new();
    if is_amd(cpuid) {
        msrs.push(kvm_msr_entry {
            index: MSR_K7_HWCR,
            data: HWCR_TSC_FREQ_SEL,
            ..Default::default()
        });
    }
    msrs
}

/// Writes `entries` into a vCPU; KVM's answer is how many it took.
pub fn set(fd: &kvm_ioctls::VcpuFd, entries: &[kvm_msr_entry]) -> Result<(), kvm_ioctls::Error> {
    if entries.is_empty() {
        return Ok(());
    }
    let msrs = Msrs::from_entries(entries).map_err(|_| kvm_ioctls::Error::new(libc::EINVAL))?;
    let taken = fd.set_msrs(&msrs)?;
    if taken != entries.len() {
        // KVM stops at the first MSR it refuses.
        return Err(kvm_ioctls::Error::new(libc::EINVAL));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use kvm_bindings::kvm_cpuid_entry2;

    fn vendor_leaf(vendor: &[u8; 12]) -> CpuId {
        let word = |i: usize| u32::from_le_bytes(vendor[i..i + 4].try_into().unwrap());
        CpuId::from_entries(&[kvm_cpuid_entry2 {
            function: 0,
            ebx: word(0),
            edx: word(4),
            ecx: word(8),
            ..Default::default()
        }])
        .unwrap()
    }

    #[test]
    fn amd_cpus_get_tsc_freq_sel_and_intel_ones_nothing() {
        let amd = at_power_on(&vendor_leaf(b"AuthenticAMD"));
        assert_eq!(amd.len(), 1);
        assert_eq!((amd[0].index, amd[0].data), (MSR_K7_HWCR, 1 << 24));
        assert!(at_power_on(&vendor_leaf(b"GenuineIntel")).is_empty());
        assert!(is_amd(&vendor_leaf(b"HygonGenuine")));
    }
}
