use super::*;

const MINIMAL: &str = include_str!("../../tests/data/minimal.domain.xml");

const XP: &str = include_str!("../../tests/data/xp-for-test.domain.xml");

#[test]
fn typed_view_of_libvirts_example() {
    let d = Domain::parse(XP).unwrap();
    assert_eq!(
        d.uuid().as_deref(),
        Some("5119e3ad-efa7-e426-49eb-9ddf9060fde4")
    );
    assert_eq!(d.current_memory().unwrap(), Some(1 << 30));
    let vcpu = d.vcpu().unwrap();
    assert_eq!((vcpu.count, vcpu.placement.as_deref()), (2, Some("static")));
    let os = d.os().unwrap();
    assert_eq!(os.machine.as_deref(), Some("rhel6.6.0"));
    assert_eq!(os.boot, [BootDevice::Hd]);
    assert_eq!(d.features(), ["acpi", "apic", "pae"]);
    let clock = d.clock().unwrap();
    assert_eq!(clock.offset.as_deref(), Some("localtime"));
    assert_eq!(clock.timers[0].tickpolicy.as_deref(), Some("catchup"));
    let disks = d.disks().unwrap();
    assert_eq!(disks[0].driver_cache.as_deref(), Some("none"));
    assert_eq!(disks[1].device, "cdrom");
    assert!(disks[1].readonly);
    assert_eq!(disks[0].address, Some(Address::drive(0, 0, 0)));
    let controllers = d.devices::<Controller>().unwrap();
    assert_eq!(controllers.len(), 6);
    assert_eq!(
        controllers[1].address.as_ref().unwrap().multifunction,
        Some(true)
    );
    let nic = &d.interfaces().unwrap()[0];
    assert_eq!(nic.mac.as_deref(), Some("52:54:00:73:65:64"));
    assert_eq!(nic.source_network.as_deref(), Some("default"));
    let g = &d.graphics().unwrap()[0];
    assert_eq!(
        (g.kind.as_str(), g.passwd.as_deref()),
        ("spice", Some("123456"))
    );
    assert_eq!(g.listens[0].address.as_deref(), Some("0.0.0.0"));
    let video = &d.devices::<Video>().unwrap()[0];
    assert_eq!(
        (video.model.as_deref(), video.vram, video.heads),
        (Some("qxl"), Some(65536), Some(1))
    );
    let hostdev = &d.devices::<Hostdev>().unwrap()[0];
    assert_eq!(
        (hostdev.usb_vendor, hostdev.usb_product),
        (Some(0x0951), Some(0x1665))
    );
    assert_eq!(d.emulator().as_deref(), Some("/usr/libexec/qemu-kvm"));
}

#[test]
fn edits_keep_what_is_not_modelled() {
    let mut d = Domain::parse(XP).unwrap();
    let before = d.to_xml();
    d.set_name("XP_CLONE");
    d.set_uuid(Some("8b2c3a9e-0d1f-4a5b-9c6d-7e8f90a1b2c3"));
    let mut nic = d.interfaces().unwrap().remove(0);
    nic.mac = Some("52:54:00:aa:bb:cc".into());
    assert!(d.update_device(0, &nic));
    let (i, mut disk) = d.disk("hda").unwrap().unwrap();
    disk.source = Some("/vms/clone.img".into());
    assert!(d.update_device(i, &disk));
    let after = d.to_xml();
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed,
        [
            ("  <name>XP_FOR_TEST</name>", "  <name>XP_CLONE</name>"),
            (
                "  <uuid>5119e3ad-efa7-e426-49eb-9ddf9060fde4</uuid>",
                "  <uuid>8b2c3a9e-0d1f-4a5b-9c6d-7e8f90a1b2c3</uuid>"
            ),
            (
                "      <source file='/var/lib/libvirt/images/XP_FOR_TEST.img'/>",
                "      <source file='/vms/clone.img'/>"
            ),
            (
                "      <mac address='52:54:00:73:65:64'/>",
                "      <mac address='52:54:00:aa:bb:cc'/>"
            ),
        ]
    );
    assert_eq!(before.lines().count(), after.lines().count());
}

#[test]
fn attach_and_detach_disk() {
    let mut d = Domain::parse(MINIMAL).unwrap();
    d.add_device(&Disk::file("disk", "/vms/new.img", "vdb", "virtio"));
    let targets: Vec<String> = d
        .disks()
        .unwrap()
        .into_iter()
        .map(|d| d.target_dev)
        .collect();
    assert_eq!(targets, ["vda", "hdc", "vdb"]);
    let xml = d.to_xml();
    assert!(
        xml.contains("    <disk type='file' device='disk'>\n      <driver name='qemu' type='raw'/>\n      <source file='/vms/new.img'/>\n      <target dev='vdb' bus='virtio'/>\n    </disk>\n    <serial"),
        "{xml}"
    );
    Domain::parse(&xml).unwrap();
    assert!(d.remove_disk("vdb").unwrap());
    assert!(!d.remove_disk("vdb").unwrap());
    assert_eq!(d.to_xml(), Domain::parse(MINIMAL).unwrap().to_xml());
}

#[test]
fn setters_write_what_libvirt_writes() {
    let mut d = Domain::new("t");
    d.set_memory(512 << 20);
    d.set_vcpu(&Vcpu {
        count: 4,
        placement: Some("static".into()),
        current: Some(2),
    });
    d.set_cpu_topology(Some(&CpuTopology {
        sockets: 1,
        dies: None,
        cores: 2,
        threads: 2,
    }));
    d.set_os(&Os {
        os_type: Some("hvm".into()),
        kernel: Some("/boot/vmlinuz".into()),
        initrd: Some("/boot/initrd.img".into()),
        cmdline: Some("console=ttyS0".into()),
        ..Os::default()
    });
    d.set_title(Some("A test"));
    assert_eq!(
        d.to_xml(),
        "<domain type='kvm'>\n  <name>t</name>\n  <title>A test</title>\n  <memory unit='KiB'>524288</memory>\n  <vcpu placement='static' current='2'>4</vcpu>\n  <os>\n    <type>hvm</type>\n    <kernel>/boot/vmlinuz</kernel>\n    <initrd>/boot/initrd.img</initrd>\n    <cmdline>console=ttyS0</cmdline>\n  </os>\n  <cpu>\n    <topology sockets='1' cores='2' threads='2'/>\n  </cpu>\n</domain>\n"
    );
    assert_eq!(d.memory().unwrap(), Some(512 << 20));
    // Setting the same amount leaves the original units alone.
    let mut d = Domain::parse(MINIMAL).unwrap();
    d.set_memory(256 << 20);
    assert!(d.to_xml().contains("<memory unit='MiB'>256</memory>"));
}

#[test]
fn stored_xml_has_the_do_not_edit_header() {
    let d = Domain::parse(XP).unwrap();
    let stored = d.to_stored_xml();
    assert!(stored.starts_with("<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE."));
    assert!(stored.contains("  vireo edit XP_FOR_TEST\n"));
    assert!(stored.ends_with(&d.to_xml()));
    // Reading a stored file gives the same definition back.
    assert_eq!(Domain::parse(&stored).unwrap(), d);
    assert!(!d.to_xml().contains("WARNING"));
}

fn error_of(xml: &str) -> String {
    Domain::parse(xml).unwrap_err().to_string()
}

#[test]
fn malformed_xml_names_line_and_column() {
    for (xml, expect) in [
        // Wrong nesting.
        (
            "<domain type='kvm'>\n  <name>x</name>\n  <memory unit='KiB'>1024</vcpu>\n</domain>",
            "line 3, column 26: expected </memory>, found </vcpu>",
        ),
        // Truncated in the middle of an element.
        (
            "<domain type='kvm'>\n  <name>x</name>\n  <memory unit='KiB'>1024",
            "line 3, column 26: the text ends before </memory> (<memory> opened at line 3, column 3)",
        ),
        // Truncated inside a tag.
        ("<domain type='kvm'>\n  <name>x</name>\n  <memo", "line 3, column 3: the text ends inside a tag"),
        // Truncated inside an attribute value.
        ("<domain type='kvm'>\n  <memory unit='Ki", "line 2, column 3: an attribute value has no closing quote"),
        // A closing tag for nothing.
        ("<domain>\n</domain>\n</devices>", "line 3, column 1"),
        ("", "there is no root element"),
        ("<domain/><domain/>", "line 1, column 10: a second root element <domain>"),
        ("<domain>&bogus;</domain>", "line 1, column 9: unknown entity &bogus;"),
        ("text<domain/>", "line 1, column 1: text outside the root element"),
    ] {
        let err = error_of(xml);
        assert!(err.starts_with("malformed domain XML: "), "{xml:?}: {err}");
        assert!(err.contains(expect), "{xml:?}:\n  got {err}\n  want {expect}");
    }
}

#[test]
fn invalid_values_name_the_element() {
    let wrap = |body: &str| {
        format!("<domain type='kvm'>\n  <name>x</name>\n  <memory>1024</memory>\n{body}\n</domain>")
    };
    for (body, expect) in [
        ("<uuid>1234</uuid>", "line 4, column 1: <uuid> '1234' is not a UUID"),
        ("<vcpu>-2</vcpu>", "line 4, column 1: <vcpu>: '-2' is not a valid number"),
        ("<vcpu>99999999999</vcpu>", "'99999999999' is not a valid number"),
        ("<vcpu current='3'>2</vcpu>", "<vcpu current='3'> must be between 1 and 2"),
        ("<currentMemory unit='furlongs'>1</currentMemory>", "<currentMemory>: unknown unit 'furlongs'"),
        ("<currentMemory unit='KiB'>1.5</currentMemory>", "<currentMemory>: '1.5' is not a whole number"),
        ("<vcpu>4</vcpu><cpu><topology sockets='1' cores='2' threads='1'/></cpu>", "<topology> gives 2 vCPUs"),
        ("<os><boot dev='usb'/></os>", "<boot dev='usb'>: not hd, cdrom, fd or network"),
        ("<os><type>linux</type></os>", "Vireo runs full virtual machines"),
        ("<clock offset='mars'/>", "unknown clock offset 'mars'"),
        ("<on_reboot>explode</on_reboot>", "line 4, column 1: <on_reboot>: unknown action 'explode'"),
        (
            "<devices>\n<disk type='file'><source file='/a'/><target dev='vda' bus='floppybus'/></disk>\n</devices>",
            "line 5, column 38: <target>: unknown bus 'floppybus'",
        ),
        (
            "<devices><disk type='file'><source file='/a'/><target dev='vda'/></disk><disk type='file'><source file='/b'/><target dev='vda'/></disk></devices>",
            "duplicate disk target",
        ),
        (
            "<devices><disk type='file'><source file='/a'/><target dev='vda'/><address type='pci' slot='0x40'/></disk></devices>",
            "slot must be 0 to 0x1f",
        ),
        (
            "<devices><disk type='file'><source file='/a'/><target dev='vda'/><address type='pci' slot='five'/></disk></devices>",
            "<address slot='five'>: 'five' is not a valid number",
        ),
        ("<devices><disk type='file'><target dev='vda'/></disk></devices>", "vda has no <source>"),
        (
            "<devices><interface type='network'><mac address='01:00:00:00:00:01'/></interface></devices>",
            "is a multicast address",
        ),
        (
            "<devices><interface type='network'><mac address='52:54:00:zz:00:01'/></interface></devices>",
            "is not a MAC address",
        ),
        ("<devices><graphics type='vnc' port='70000'/></devices>", "not a TCP port"),
        ("<devices><graphics type='vnc' autoport='maybe'/></devices>", "expected yes or no"),
        ("<devices><video><model type='matrox'/></video></devices>", "unknown video model 'matrox'"),
        ("<devices><controller type='warp'/></devices>", "unknown controller type 'warp'"),
        ("<devices><input type='mouse' bus='serial'/></devices>", "unknown input bus 'serial'"),
    ] {
        let err = error_of(&wrap(body));
        assert!(err.starts_with("invalid domain definition: "), "{body}: {err}");
        assert!(err.contains(expect), "{body}:\n  got {err}\n  want {expect}");
    }
    assert!(error_of("<vm/>").contains("the root element is <vm>, not <domain>"));
}

#[test]
fn an_unknown_device_is_refused_with_its_place() {
    let xml = "<domain type='kvm'>\n  <name>u</name>\n  <memory unit='MiB'>32</memory>\n  <os><type>hvm</type></os>\n  <devices>\n    <frobnicator/>\n  </devices>\n</domain>";
    let err = Domain::parse(xml).unwrap_err().to_string();
    assert!(err.contains("<frobnicator> is not a device"), "{err}");
    assert!(err.contains("line 6"), "{err}");
}

#[test]
fn numa_cells_give_the_memory_when_they_have_some() {
    let d = Domain::parse("<domain type='kvm'><name>n</name><memory unit='MiB'>512</memory><cpu><numa><cell id='0' cpus='0' memory='1' unit='GiB'/><cell id='1' cpus='1' memory='1048576'/></numa></cpu><os><type>hvm</type></os></domain>").unwrap();
    assert_eq!(d.numa_memory().unwrap(), Some(2 << 30));
    assert_eq!(
        d.memory().unwrap(),
        Some(2 << 30),
        "the cells win, as in libvirt"
    );
    let mut only_cells = Domain::parse("<domain type='kvm'><name>n</name><cpu><numa><cell id='0' cpus='0' memory='64' unit='MiB'/></numa></cpu><os><type>hvm</type></os></domain>").unwrap();
    assert!(only_cells.fill_memory_from_numa().unwrap());
    assert!(only_cells
        .to_xml()
        .contains("<memory unit='KiB'>65536</memory>"));
    assert!(!only_cells.fill_memory_from_numa().unwrap());
    let bad = Domain::parse("<domain type='kvm'><name>n</name><memory>1</memory><cpu><numa><cell id='0' cpus='0' memory='lots'/></numa></cpu><os><type>hvm</type></os></domain>");
    let error = bad.and_then(|d| d.numa_memory());
    assert!(error.unwrap_err().to_string().contains("lots"));
}
