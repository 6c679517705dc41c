use super::*;
use crate::domain::{validate, NewVm, Video};
use crate::vmm::{DiskBus, DiskKind, LifecycleAction, VideoConfig, VideoModel};

const MINIMAL: &str = include_str!("../../tests/data/minimal.domain.xml");
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
fn unsupported_list_for_libvirts_example_is_complete() {
    let d = Domain::parse(XP).unwrap();
    let list = unsupported(&d);
    let expected = [
        "clock offset 'localtime' is not applied; the guest's clock starts at UTC",
        "timer rtc: tick policy 'catchup' is not applied",
        "the emulator /usr/libexec/qemu-kvm is not used; Vireo runs the VM itself",
        "disk hda: cache mode 'none' still uses the host page cache",
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
    assert_eq!(unsupported(&d), Vec::<String>::new());
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
    let config = from_domain(&again).unwrap();
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
fn os_kernel_initrd_cmdline_become_a_direct_boot() {
    let xml = "<domain type='kvm'><name>k</name><memory unit='MiB'>256</memory><os><type>hvm</type><kernel> /boot/vmlinuz </kernel><initrd>/boot/initrd.img</initrd><cmdline>console=ttyS0 quiet</cmdline></os></domain>";
    let d = Domain::parse(xml).unwrap();
    assert_eq!(unsupported(&d), Vec::<String>::new());
    let boot = from_domain(&d).unwrap().direct_boot.unwrap();
    assert_eq!(boot.kernel, std::path::PathBuf::from("/boot/vmlinuz"));
    assert_eq!(
        boot.initrd.as_deref(),
        Some(std::path::Path::new("/boot/initrd.img"))
    );
    assert_eq!(boot.cmdline, "console=ttyS0 quiet");

    // An initrd with nothing to boot it is a mistake in the definition.
    let xml = "<domain type='kvm'><name>k</name><memory unit='MiB'>256</memory><os><type>hvm</type><initrd>/boot/initrd.img</initrd></os></domain>";
    let err = from_domain(&Domain::parse(xml).unwrap()).unwrap_err();
    assert!(err.to_string().contains("no <kernel>"), "{err}");
}

#[test]
fn a_usb_tablet_in_the_definition_gives_the_machine_one() {
    let xml = |devices: &str| {
        format!("<domain type='kvm'><name>t</name><memory unit='MiB'>64</memory><os><type>hvm</type></os><devices>{devices}</devices></domain>")
    };
    let config = |devices: &str| from_domain(&Domain::parse(&xml(devices)).unwrap()).unwrap();
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
    assert!(unsupported(&d).is_empty(), "{:?}", unsupported(&d));
}

fn config(devices: &str) -> VmConfig {
    let xml = format!("<domain type='kvm'><name>v</name><memory unit='MiB'>64</memory><os><type>hvm</type></os><devices>{devices}</devices></domain>");
    from_domain(&Domain::parse(&xml).unwrap()).unwrap()
}

#[test]
fn video_model_and_vram_map_to_the_card() {
    assert_eq!(config("").video, VideoConfig::default());
    let qxl = config("<video><model type='qxl' ram='65536' vram='65536' heads='1'/></video>");
    assert_eq!(
        (qxl.video.model, qxl.video.vram_bytes),
        (VideoModel::Vga, 64 << 20)
    );
    let odd = config("<video><model type='vga' vram='9216'/></video>");
    assert_eq!(
        odd.video.vram_bytes,
        16 << 20,
        "rounded up to a power of two"
    );
    let none = config("<video><model type='none'/></video>");
    assert_eq!(none.video.model, VideoModel::None);
}

#[test]
fn a_nic_where_the_vga_card_is_is_refused_naming_both() {
    let xml = "<domain type='kvm'><name>v</name><memory unit='MiB'>64</memory><os><type>hvm</type></os><devices><interface type='user'><mac address='52:54:00:00:00:01'/><address type='pci' domain='0' bus='0' slot='2' function='0'/></interface></devices></domain>";
    let error = from_domain(&Domain::parse(xml).unwrap())
        .unwrap_err()
        .to_string();
    assert!(
        error.contains(
            "00:02.0 would hold both the VGA card and network interface 52:54:00:00:00:01"
        ),
        "{error}"
    );
    // Without a VGA card the slot is free.
    let headless = xml.replace(
        "</devices>",
        "<video><model type='none'/></video></devices>",
    );
    assert_eq!(
        from_domain(&Domain::parse(&headless).unwrap())
            .unwrap()
            .nics[0]
            .slot,
        2
    );
}

#[test]
fn driver_cache_and_discard_reach_the_disk() {
    use crate::storage::{CacheMode, DiscardMode};
    let disk = |driver: &str| {
        let c = config(&format!(
            "<disk type='file' device='disk'><driver name='qemu' type='raw'{driver}/><source file='/d'/><target dev='vda' bus='virtio'/></disk>"
        ));
        (c.disks[0].cache, c.disks[0].discard)
    };
    assert_eq!(disk(""), (CacheMode::WriteBack, DiscardMode::Ignore));
    assert_eq!(
        disk(" cache='unsafe' discard='unmap'"),
        (CacheMode::Unsafe, DiscardMode::Unmap)
    );
    assert_eq!(
        disk(" cache='directsync' discard='ignore'").0,
        CacheMode::WriteThrough
    );
    let bad = "<domain type='kvm'><name>v</name><memory unit='MiB'>64</memory><os><type>hvm</type></os><devices><disk type='file' device='disk'><driver name='qemu' discard='trim'/><source file='/d'/><target dev='vda' bus='virtio'/></disk></devices></domain>";
    let err = Domain::parse(bad).unwrap_err().to_string();
    assert!(err.contains("trim"), "{err}");
}
