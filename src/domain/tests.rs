use super::*;
use crate::vmm::{DiskBus, DiskKind, LifecycleAction};

const MINIMAL: &str = r#"
<domain type='kvm'>
  <name>grub</name>
  <memory unit='MiB'>256</memory>
  <vcpu placement='static'>2</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='cdrom'/><boot dev='hd'/></os>
  <on_reboot>destroy</on_reboot>
  <devices>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw'/>
      <source file='/images/disk.img'/>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/images/grub.iso'/>
      <target dev='hdc' bus='ide'/>
    </disk>
    <serial type='pty'><target port='0'/></serial>
  </devices>
</domain>"#;

const XP: &str = include_str!("../../tests/data/xp-for-test.domain.xml");

#[test]
fn reads_what_the_vmm_needs() {
    let config = parse(MINIMAL).unwrap();
    assert_eq!(config.name, "grub");
    assert_eq!(config.memory, 256 << 20);
    assert_eq!(config.vcpus, 2);
    assert_eq!(config.on_reboot, LifecycleAction::Destroy);
    assert_eq!(config.disks.len(), 2);
    let (vda, hdc) = (&config.disks[0], &config.disks[1]);
    assert_eq!(vda.bus, DiskBus::Virtio { slot: 5 });
    assert_eq!(vda.boot_order, Some(2), "hd is second in <os><boot>");
    assert_eq!(
        hdc.bus,
        DiskBus::Ide {
            channel: 1,
            unit: 0
        }
    );
    assert_eq!(hdc.kind, DiskKind::Cdrom);
    assert!(hdc.read_only);
    assert_eq!(hdc.boot_order, Some(1));
}

#[test]
fn libvirts_own_example_parses() {
    let config = parse(XP).unwrap();
    assert_eq!(config.name, "XP_FOR_TEST");
    assert_eq!(config.memory, 1 << 30);
    assert_eq!(config.on_crash, LifecycleAction::Restart);
    assert_eq!(
        config.disks[0].bus,
        DiskBus::Ide {
            channel: 0,
            unit: 0
        }
    );
    assert_eq!(
        config.disks[1].bus,
        DiskBus::Ide {
            channel: 1,
            unit: 0
        }
    );
}

#[test]
fn bad_definitions_say_what_is_wrong() {
    for (xml, expect) in [
        ("<domain><name>x</name></domain>", "no <memory>"),
        ("<domain><name>x</name><memory unit='parsecs'>1</memory></domain>", "parsecs"),
        ("<domain><name>x</name><memory>1</memory><vcpu>two</vcpu></domain>", "two"),
        ("<domain><name>x</name><memory>1</memory><on_crash>explode</on_crash></domain>", "explode"),
        ("<domain><name>x</name><memory", "malformed"),
        (
            "<domain><name>x</name><memory>1</memory><devices><disk><target dev='hdz'/><source file='a'/></disk></devices></domain>",
            "hda to hdd",
        ),
    ] {
        let err = parse(xml).unwrap_err().to_string();
        assert!(err.contains(expect), "{xml}: {err}");
    }
}

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
fn unsupported_list_for_libvirts_example_is_complete() {
    let d = Domain::parse(XP).unwrap();
    let list = d.unsupported();
    let expected = [
        "clock offset 'localtime' is not applied; the guest's clock starts at UTC",
        "timer rtc: tick policy 'catchup' is not applied",
        "the emulator /usr/libexec/qemu-kvm is not used; Vireo runs the VM itself",
        "disk hda: cache mode 'none' is not applied; the host page cache is used",
        "USB controllers other than the PIIX3 UHCI are not emulated (ich9-ehci1, ich9-uhci1, ich9-uhci2, ich9-uhci3); USB devices are on the PIIX3 UHCI",
        "the virtio-serial controller is not emulated",
        "SPICE graphics will be served as VNC",
        "QXL video falls back to the standard VGA",
        "sound card ich6 is not emulated",
        "USB host device 0951:1665 is not passed through",
        "the virtio memory balloon is not emulated",
        "channel spicevmc (com.redhat.spice.0) is not emulated",
    ];
    assert_eq!(list, expected, "{list:#?}");
}

#[test]
fn a_minimal_kvm_definition_runs_as_written() {
    let d = Domain::parse(MINIMAL).unwrap();
    assert_eq!(d.unsupported(), Vec::<String>::new());
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

#[test]
fn new_vm_builder() {
    let d = NewVm::new("fedora")
        .memory_mib(2048)
        .vcpus(2)
        .disk("/vms/fedora.img")
        .cdrom("/isos/fedora.iso")
        .network("default")
        .uuid("8b2c3a9e-0d1f-4a5b-9c6d-7e8f90a1b2c3")
        .mac("52:54:00:12:34:56")
        .build()
        .unwrap();
    let again = Domain::parse(&d.to_xml()).unwrap();
    let config = again.to_vm_config().unwrap();
    assert_eq!(config.memory, 2 << 30);
    assert_eq!(config.vcpus, 2);
    assert_eq!(config.disks[0].bus, DiskBus::Virtio { slot: 5 });
    assert_eq!(config.disks[0].boot_order, Some(2));
    assert_eq!(config.disks[1].kind, DiskKind::Cdrom);
    assert_eq!(config.disks[1].boot_order, Some(1));
    assert!(config.usb_tablet, "new VMs get the USB tablet");
    assert_eq!(again.graphics().unwrap()[0].kind, "vnc");
    assert_eq!(
        again.devices::<Video>().unwrap()[0].model.as_deref(),
        Some("vga")
    );
    // A random UUID and MAC when none is given.
    let d = NewVm::new("r").network("default").build().unwrap();
    assert!(validate::is_uuid(&d.uuid().unwrap()));
    assert!(d.interfaces().unwrap()[0]
        .mac
        .as_deref()
        .unwrap()
        .starts_with("52:54:00:"));
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
fn loads_files_and_reports_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("xp.xml");
    std::fs::write(&path, XP).unwrap();
    assert_eq!(load(&path).unwrap().name, "XP_FOR_TEST");
    let err = load(&dir.path().join("missing.xml")).unwrap_err();
    assert!(matches!(err, DomainError::Read { .. }), "{err}");
}

#[test]
fn an_unknown_device_is_refused_with_its_place() {
    let xml = "<domain type='kvm'>\n  <name>u</name>\n  <memory unit='MiB'>32</memory>\n  <os><type>hvm</type></os>\n  <devices>\n    <frobnicator/>\n  </devices>\n</domain>";
    let err = Domain::parse(xml).unwrap_err().to_string();
    assert!(err.contains("<frobnicator> is not a device"), "{err}");
    assert!(err.contains("line 6"), "{err}");
}

#[test]
fn os_kernel_initrd_cmdline_become_a_direct_boot() {
    let xml = "<domain type='kvm'><name>k</name><memory unit='MiB'>256</memory><os><type>hvm</type><kernel> /boot/vmlinuz </kernel><initrd>/boot/initrd.img</initrd><cmdline>console=ttyS0 quiet</cmdline></os></domain>";
    let d = Domain::parse(xml).unwrap();
    assert_eq!(d.unsupported(), Vec::<String>::new());
    let boot = d.to_vm_config().unwrap().direct_boot.unwrap();
    assert_eq!(boot.kernel, std::path::PathBuf::from("/boot/vmlinuz"));
    assert_eq!(
        boot.initrd.as_deref(),
        Some(std::path::Path::new("/boot/initrd.img"))
    );
    assert_eq!(boot.cmdline, "console=ttyS0 quiet");

    // An initrd with nothing to boot it is a mistake in the definition.
    let xml = "<domain type='kvm'><name>k</name><memory unit='MiB'>256</memory><os><type>hvm</type><initrd>/boot/initrd.img</initrd></os></domain>";
    let err = Domain::parse(xml).unwrap().to_vm_config().unwrap_err();
    assert!(err.to_string().contains("no <kernel>"), "{err}");
}

#[test]
fn a_usb_tablet_in_the_definition_gives_the_machine_one() {
    let xml = |devices: &str| {
        format!("<domain type='kvm'><name>t</name><memory unit='MiB'>64</memory><os><type>hvm</type></os><devices>{devices}</devices></domain>")
    };
    let config = |devices: &str| {
        Domain::parse(&xml(devices))
            .unwrap()
            .to_vm_config()
            .unwrap()
    };
    assert!(config("<controller type='usb' index='0' model='piix3-uhci'/><input type='tablet' bus='usb'/><input type='mouse' bus='ps2'/>").usb_tablet);
    assert!(config("<input type='tablet' bus='usb'/>").usb_tablet);
    assert!(!config("<input type='mouse' bus='ps2'/>").usb_tablet);
    assert!(
        !config("<controller type='usb' model='none'/><input type='tablet' bus='usb'/>").usb_tablet
    );
    let d = Domain::parse(&xml(
        "<controller type='usb' model='piix3-uhci'/><input type='tablet' bus='usb'/>",
    ))
    .unwrap();
    assert!(d.validate().is_ok());
    assert!(d.unsupported().is_empty(), "{:?}", d.unsupported());
}
