//! `vireo capabilities`, `domcapabilities` and `host-validate` as a user
//! runs them: the XML passes libvirt's own schema check.

mod common;

use std::process::Command;

fn vireo(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_vireo"))
        .args(args)
        .output()
        .unwrap()
}

fn validate(xml: &[u8], schema: &str) {
    common::require_program("virt-xml-validate");
    let file = tempfile::Builder::new().suffix(".xml").tempfile().unwrap();
    std::fs::write(file.path(), xml).unwrap();
    let out = Command::new("virt-xml-validate")
        .arg(file.path())
        .arg(schema)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{schema} does not validate:\n{}\n{}",
        String::from_utf8_lossy(&out.stderr),
        String::from_utf8_lossy(xml)
    );
}

#[test]
fn capabilities_validate_and_describe_this_host() {
    let out = vireo(&["capabilities"]);
    assert!(out.status.success());
    validate(&out.stdout, "capability");
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(xml.contains("<arch>x86_64</arch>"));
    let cpus = std::thread::available_parallelism().unwrap().get();
    assert!(xml.contains(&format!("<cpus num='{cpus}'>")), "{xml}");
}

#[test]
fn domain_capabilities_validate() {
    let out = vireo(&["domcapabilities"]);
    assert!(out.status.success());
    validate(&out.stdout, "domaincaps");
    let xml = String::from_utf8(out.stdout).unwrap();
    assert!(
        xml.contains("<value>virtio</value>") && xml.contains("<value>cdrom</value>"),
        "{xml}"
    );
    // As libvirt: KVM's hard limit (KVM_CAP_MAX_VCPUS), not the host's CPU
    // count; vireo also stops at 255, the 8-bit APIC ids its MADT gives.
    if common::kvm_available() {
        let kvm = kvm_ioctls::Kvm::new().unwrap();
        let max = kvm.get_max_vcpus().min(255);
        assert!(xml.contains(&format!("<vcpu max='{max}'/>")), "{xml}");
    }
}

#[test]
fn host_validate_reports_kvm_access() {
    let out = vireo(&["host-validate"]);
    let text = String::from_utf8(out.stdout).unwrap();
    let kvm_line = text
        .lines()
        .find(|l| l.contains("access to /dev/kvm"))
        .expect(&text);
    let usable = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    assert_eq!(kvm_line.contains(": PASS"), usable, "{text}");
    assert_eq!(out.status.success(), !text.contains(": FAIL"));
}
