//! CPUID for each vCPU: what KVM supports, with the per-CPU topology fields
//! filled in (Intel SDM vol. 2A, CPUID leaves 01h and 0Bh).

use kvm_bindings::CpuId;

/// Leaf 01h ECX bit 31: running under a hypervisor.
const CPUID_HYPERVISOR: u32 = 1 << 31;
/// Leaf 01h EDX bit 28: more than one logical processor per package.
const CPUID_HTT: u32 = 1 << 28;

/// Patches `cpuid` (from KVM_GET_SUPPORTED_CPUID) for vCPU `id` of `count`.
pub fn for_vcpu(mut cpuid: CpuId, id: u32, count: u32) -> CpuId {
    for entry in cpuid.as_mut_slice() {
        match entry.function {
            0x1 => {
                // EBX: initial APIC id (31:24), logical processors (23:16),
                // CLFLUSH line size in quadwords (15:8).
                entry.ebx = (id << 24) | ((count.min(255)) << 16) | (8 << 8);
                entry.ecx |= CPUID_HYPERVISOR;
                if count > 1 {
                    entry.edx |= CPUID_HTT;
                } else {
                    entry.edx &= !CPUID_HTT;
                }
            }
            // Extended topology: EDX is the x2APIC id.
            0xb | 0x1f => entry.edx = id,
            _ => {}
        }
    }
    cpuid
}
