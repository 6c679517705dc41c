//! Golden tests for the domain XML model, as virt-manager's
//! `tests/data/xmlparse`: each `tests/data/domain/NAME-in.xml` is read and
//! written back, and the output must equal `NAME-out.xml`. Run with
//! `VIREO_REGENERATE_GOLDEN=1` to rewrite the -out files after an intended
//! change (and read the diff before committing it). Every -out file must
//! pass libvirt's own schema check, `virt-xml-validate FILE domain`.
//! `NAME-unsupported.txt` holds what Vireo says it will not emulate for
//! that input, so a change to those sentences shows in review.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use vireo::domain::{Domain, NewVm};
use vireo::vm_config;

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data")
}

/// (name, input) pairs: every `*-in.xml`, plus libvirt's example from
/// `tests/data/xp-for-test.domain.xml`.
fn inputs() -> Vec<(String, PathBuf)> {
    let dir = data_dir().join("domain");
    let mut inputs: Vec<(String, PathBuf)> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter_map(|p| {
            let name = p
                .file_name()?
                .to_str()?
                .strip_suffix("-in.xml")?
                .to_string();
            Some((name, p))
        })
        .collect();
    inputs.push((
        "xp-for-test".to_string(),
        data_dir().join("xp-for-test.domain.xml"),
    ));
    inputs.sort();
    inputs
}

/// A definition made by the New VM builder, with fixed UUID and MAC.
fn new_vm_xml() -> String {
    NewVm::new("new-vm")
        .memory_mib(2048)
        .vcpus(2)
        .disk("/var/lib/vireo/images/new-vm.img")
        .cdrom("/var/lib/vireo/isos/installer.iso")
        .network("default")
        .uuid("6d1c5b0e-2f43-4a8e-9b7d-0c1e2f3a4b5c")
        .mac("52:54:00:6b:3c:01")
        .build()
        .unwrap()
        .to_xml()
}

fn regenerate() -> bool {
    std::env::var("VIREO_REGENERATE_GOLDEN").as_deref() == Ok("1")
}

/// Compares `actual` with the golden file, or rewrites it when regenerating.
fn check_golden(out: &Path, actual: &str) -> Result<(), String> {
    if regenerate() {
        std::fs::write(out, actual).unwrap();
        return Ok(());
    }
    let expected = std::fs::read_to_string(out).map_err(|e| {
        format!(
            "{}: {e} (run with VIREO_REGENERATE_GOLDEN=1 to create it)",
            out.display()
        )
    })?;
    if expected == actual {
        return Ok(());
    }
    let first = expected
        .lines()
        .zip(actual.lines())
        .position(|(a, b)| a != b)
        .unwrap_or_else(|| expected.lines().count().min(actual.lines().count()));
    Err(format!(
        "{} differs from the output at line {}:\n  golden: {:?}\n  output: {:?}\n(VIREO_REGENERATE_GOLDEN=1 rewrites it)",
        out.display(),
        first + 1,
        expected.lines().nth(first),
        actual.lines().nth(first)
    ))
}

#[test]
fn round_trips_match_golden_files() {
    let out_dir = data_dir().join("domain");
    let mut failures = Vec::new();
    for (name, input) in inputs() {
        let text = std::fs::read_to_string(&input).unwrap();
        let domain = Domain::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", input.display()));
        let xml = domain.to_xml();
        // Writing is stable: the output reads back to itself.
        let again = Domain::parse(&xml).unwrap_or_else(|e| panic!("{name} output: {e}"));
        assert_eq!(again.to_xml(), xml, "{name}: output is not a fixed point");
        assert_eq!(again, domain, "{name}: output reads back differently");
        if let Err(e) = check_golden(&out_dir.join(format!("{name}-out.xml")), &xml) {
            failures.push(e);
        }
        // What Vireo says it will not emulate, one sentence a line.
        let unsupported: String = vm_config::unsupported(&domain)
            .iter()
            .map(|s| format!("{s}\n"))
            .collect();
        if let Err(e) = check_golden(
            &out_dir.join(format!("{name}-unsupported.txt")),
            &unsupported,
        ) {
            failures.push(e);
        }
    }
    if let Err(e) = check_golden(&out_dir.join("new-vm-out.xml"), &new_vm_xml()) {
        failures.push(e);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn unknown_elements_survive() {
    let input = std::fs::read_to_string(data_dir().join("domain/unknown-in.xml")).unwrap();
    let xml = Domain::parse(&input).unwrap().to_xml();
    for kept in [
        "<libosinfo:os id='http://microsoft.com/win/xp'/>",
        "<app2:bar xmlns:app2='http://app1.org/app2/' attr='x &amp; y'>",
        "<app2:baz>nested</app2:baz>",
        "<!-- Comments inside the definition survive too. -->",
        "<source file='/vms/unknown.img' startupPolicy='optional'>",
        "<seclabel model='dac' relabel='no'/>",
        "<serial>WD-1234</serial>",
        "<qemu:arg value='-newarg'/>",
        "<tpm model='tpm-crb'>",
        "<vcpu placement='static' cpuset='0-1'>1</vcpu>",
        "<clock offset='variable' adjustment='3600' basis='utc'/>",
    ] {
        assert!(xml.contains(kept), "lost {kept}:\n{xml}");
    }
}

#[test]
fn golden_outputs_pass_libvirts_schema() {
    common::require_program("virt-xml-validate");
    let scratch = tempfile::tempdir().unwrap();
    // What the model writes now: the -out files when the golden test passes
    // (validating the text rather than the files keeps this test
    // independent of a concurrent regeneration).
    let mut outputs: Vec<(String, String)> = inputs()
        .into_iter()
        .map(|(name, input)| {
            let text = std::fs::read_to_string(input).unwrap();
            (name, Domain::parse(&text).unwrap().to_xml())
        })
        .collect();
    outputs.push(("new-vm".to_string(), new_vm_xml()));
    let mut checked = 0;
    for (name, xml) in outputs {
        // The stored form too: the header comment must not break the file.
        let stored = Domain::parse(&xml).unwrap().to_stored_xml();
        for (suffix, text) in [("-out", xml), ("-stored", stored)] {
            let file = scratch.path().join(format!("{name}{suffix}.xml"));
            std::fs::write(&file, text).unwrap();
            let output = Command::new("virt-xml-validate")
                .arg(&file)
                .arg("domain")
                .output()
                .expect("run virt-xml-validate");
            assert!(
                output.status.success(),
                "{name}{suffix}.xml does not validate:\n{}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 12, "only {checked} files validated");
}

#[test]
fn vireo_runs_what_it_can_of_each_golden_input() {
    for (name, input) in inputs() {
        let domain = Domain::load(&input).unwrap();
        let unsupported = vm_config::unsupported(&domain);
        match vm_config::from_domain(&domain) {
            Ok(config) => assert_eq!(config.name, domain.name(), "{name}"),
            // A definition the VMM cannot start says why in its list.
            Err(e) => assert!(
                unsupported.iter().any(|s| s.contains("cannot start")),
                "{name}: {e} but the unsupported list does not say so: {unsupported:#?}"
            ),
        }
    }
}
