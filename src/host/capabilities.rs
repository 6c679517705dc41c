//! `vireo capabilities` and `vireo domcapabilities`: what the host and
//! Vireo's machine offer, in libvirt's capabilities and domain
//! capabilities XML (both pass `virt-xml-validate`).

use quick_xml::escape::escape;

use super::cpu::HostCpu;

/// libvirt's names for /proc/cpuinfo flags, where they differ (and are
/// allowed by the capabilities schema, which has no '.' in host features).
fn libvirt_feature_name(flag: &str) -> &str {
    match flag {
        "tsc_deadline_timer" => "tsc-deadline",
        other => other,
    }
}

/// Flags worth listing, as libvirt lists features beyond the model.
const LISTED_FLAGS: &[&str] = &[
    "vme",
    "ds",
    "ss",
    "ht",
    "vmx",
    "svm",
    "hypervisor",
    "pcid",
    "movbe",
    "f16c",
    "rdrand",
    "fma",
    "avx",
    "avx2",
    "avx512f",
    "bmi1",
    "bmi2",
    "erms",
    "invpcid",
    "fsgsbase",
    "smep",
    "smap",
    "abm",
    "pdpe1gb",
    "x2apic",
    "tsc_deadline_timer",
    "aes",
    "sse4_1",
    "sse4_2",
    "popcnt",
    "rdseed",
    "adx",
    "sha_ni",
    "invtsc",
];

/// A stable host UUID: DMI's product UUID, else the machine id.
pub fn host_uuid() -> String {
    if let Ok(uuid) = std::fs::read_to_string("/sys/class/dmi/id/product_uuid") {
        return uuid.trim().to_lowercase();
    }
    let id = std::fs::read_to_string("/etc/machine-id").unwrap_or_default();
    let id: String = id
        .trim()
        .chars()
        .filter(|c| c.is_ascii_hexdigit())
        .collect();
    let id = format!("{id:0<32}");
    format!(
        "{}-{}-{}-{}-{}",
        &id[0..8],
        &id[8..12],
        &id[12..16],
        &id[16..20],
        &id[20..32]
    )
}

/// Host capabilities XML for `cpu`.
pub fn capabilities_xml(cpu: &HostCpu, uuid: &str, emulator: &str, max_vcpus: u32) -> String {
    let (sockets, cores, threads) = cpu.topology();
    let mut x = String::new();
    x.push_str("<capabilities>\n\n  <host>\n");
    x.push_str(&format!("    <uuid>{}</uuid>\n", escape(uuid)));
    x.push_str("    <cpu>\n      <arch>x86_64</arch>\n");
    x.push_str(&format!("      <model>{}</model>\n", cpu.libvirt_model()));
    if !cpu.vendor.is_empty() {
        x.push_str(&format!("      <vendor>{}</vendor>\n", escape(&cpu.vendor)));
    }
    x.push_str(&format!(
        "      <topology sockets='{sockets}' dies='1' cores='{cores}' threads='{threads}'/>\n"
    ));
    for flag in LISTED_FLAGS.iter().filter(|f| cpu.has(f)) {
        x.push_str(&format!(
            "      <feature name='{}'/>\n",
            libvirt_feature_name(flag)
        ));
    }
    x.push_str("    </cpu>\n");
    x.push_str("    <power_management/>\n");
    x.push_str("    <iommu support='no'/>\n");
    x.push_str("    <topology>\n      <cells num='1'>\n        <cell id='0'>\n");
    x.push_str(&format!("          <cpus num='{}'>\n", cpu.logical.len()));
    for c in &cpu.logical {
        x.push_str(&format!(
            "            <cpu id='{}' socket_id='{}' die_id='0' core_id='{}' siblings='{}'/>\n",
            c.id,
            c.socket,
            c.core,
            escape(&c.siblings)
        ));
    }
    x.push_str("          </cpus>\n        </cell>\n      </cells>\n    </topology>\n");
    x.push_str("  </host>\n\n");
    for (arch, wordsize) in [("i686", 32), ("x86_64", 64)] {
        x.push_str("  <guest>\n    <os_type>hvm</os_type>\n");
        x.push_str(&format!(
            "    <arch name='{arch}'>\n      <wordsize>{wordsize}</wordsize>\n"
        ));
        x.push_str(&format!(
            "      <emulator>{}</emulator>\n",
            escape(emulator)
        ));
        x.push_str(&format!(
            "      <machine maxCpus='{max_vcpus}'>pc-i440fx-vireo</machine>\n"
        ));
        x.push_str(&format!(
            "      <machine canonical='pc-i440fx-vireo' maxCpus='{max_vcpus}'>pc</machine>\n"
        ));
        x.push_str("      <domain type='kvm'/>\n    </arch>\n");
        x.push_str("    <features>\n      <deviceboot/>\n");
        x.push_str("      <apic default='on' toggle='no'/>\n");
        if arch == "i686" {
            x.push_str("      <pae/>\n      <nonpae/>\n");
        }
        x.push_str("    </features>\n  </guest>\n\n");
    }
    x.push_str("</capabilities>\n");
    x
}

/// Domain capabilities: what a `kvm`/`pc` domain may use in Vireo.
pub fn domain_capabilities_xml(emulator: &str, max_vcpus: u32, loaders: &[String]) -> String {
    let mut x = String::new();
    x.push_str("<domainCapabilities>\n");
    x.push_str(&format!("  <path>{}</path>\n", escape(emulator)));
    x.push_str(
        "  <domain>kvm</domain>\n  <machine>pc-i440fx-vireo</machine>\n  <arch>x86_64</arch>\n",
    );
    x.push_str(&format!("  <vcpu max='{max_vcpus}'/>\n"));
    x.push_str(
        "  <os supported='yes'>\n    <enum name='firmware'/>\n    <loader supported='yes'>\n",
    );
    for loader in loaders {
        x.push_str(&format!("      <value>{}</value>\n", escape(loader)));
    }
    x.push_str("      <enum name='type'>\n        <value>rom</value>\n      </enum>\n");
    x.push_str("      <enum name='readonly'>\n        <value>yes</value>\n      </enum>\n");
    x.push_str("    </loader>\n  </os>\n");
    x.push_str("  <cpu>\n    <mode name='host-passthrough' supported='yes'/>\n");
    x.push_str(
        "    <mode name='maximum' supported='no'/>\n    <mode name='host-model' supported='no'/>\n",
    );
    x.push_str("    <mode name='custom' supported='no'/>\n  </cpu>\n");
    x.push_str("  <devices>\n");
    x.push_str("    <disk supported='yes'>\n      <enum name='diskDevice'>\n        <value>disk</value>\n        <value>cdrom</value>\n      </enum>\n");
    x.push_str("      <enum name='bus'>\n        <value>ide</value>\n        <value>virtio</value>\n      </enum>\n");
    x.push_str("      <enum name='model'/>\n    </disk>\n");
    x.push_str("    <graphics supported='yes'>\n      <enum name='type'>\n        <value>vnc</value>\n      </enum>\n    </graphics>\n");
    x.push_str("    <video supported='yes'>\n      <enum name='modelType'>\n        <value>vga</value>\n        <value>bochs</value>\n      </enum>\n    </video>\n");
    x.push_str("    <hostdev supported='no'/>\n");
    x.push_str("  </devices>\n");
    x.push_str("  <features>\n    <gic supported='no'/>\n    <vmcoreinfo supported='no'/>\n    <genid supported='no'/>\n    <sev supported='no'/>\n  </features>\n");
    x.push_str("</domainCapabilities>\n");
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host::cpu::LogicalCpu;

    fn cpu() -> HostCpu {
        let mut cpu = HostCpu::from_cpuinfo(
            "vendor_id\t: AuthenticAMD\nflags\t: vme svm avx avx2 sse4_2 hypervisor\n",
        );
        cpu.logical = (0..2)
            .map(|id| LogicalCpu {
                id,
                socket: 0,
                core: id,
                siblings: id.to_string(),
            })
            .collect();
        cpu
    }

    #[test]
    fn capabilities_describe_host_and_guests() {
        let xml = capabilities_xml(
            &cpu(),
            "3d1219c7-c4c5-404a-aa1f-6d2a48adfda4",
            "/usr/bin/vireo",
            2,
        );
        for expect in [
            "<arch>x86_64</arch>",
            "<model>EPYC</model>",
            "<vendor>AMD</vendor>",
            "<topology sockets='1' dies='1' cores='2' threads='1'/>",
            "<feature name='svm'/>",
            "<feature name='sse4_2'/>",
            "<cpu id='1' socket_id='0' die_id='0' core_id='1' siblings='1'/>",
            "<domain type='kvm'/>",
            "<emulator>/usr/bin/vireo</emulator>",
        ] {
            assert!(xml.contains(expect), "missing {expect}:\n{xml}");
        }
    }

    #[test]
    fn host_uuid_is_uuid_shaped() {
        let uuid = host_uuid();
        assert_eq!(uuid.len(), 36, "{uuid}");
        assert_eq!(uuid.matches('-').count(), 4);
    }
}
