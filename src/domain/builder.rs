//! New definitions: MAC addresses filled in ([`fill_macs`]) and read
//! ([`parse_mac`]), and [`NewVm`], the
//! builder behind the New VM wizard and `virt-install`-like commands. The
//! XML it writes is what virt-install writes for an i440FX KVM guest, with
//! the devices Vireo emulates.

use super::devices::{
    CharDevice, Console, Controller, Disk, Graphics, Input, Interface, Serial, Video,
};
use super::os::{BootDevice, Os};
use super::{Clock, Domain, DomainError, LifecycleEvent, Timer, Vcpu};
use crate::ids::{generate_mac, generate_uuid};

/// Parses `aa:bb:cc:dd:ee:ff`.
pub fn parse_mac(text: &str) -> Option<[u8; 6]> {
    let mut bytes = [0u8; 6];
    let mut parts = text.split(':');
    for byte in &mut bytes {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 2 {
            return None;
        }
        *byte = u8::from_str_radix(part, 16).ok()?;
    }
    parts.next().is_none().then_some(bytes)
}

/// Gives every `<interface>` without a `<mac>` a random one in 52:54:00,
/// as libvirt does when a definition is stored. Returns whether any was
/// added.
pub fn fill_macs(d: &mut Domain) -> Result<bool, DomainError> {
    let mut changed = false;
    let nics = d.interfaces()?;
    for (i, nic) in nics.iter().enumerate() {
        if nic.mac.is_some() {
            continue;
        }
        let mac = crate::ids::generate_mac()
            .map_err(|e| DomainError::whole(format!("cannot generate a MAC address: {e}")))?;
        let mut nic = nic.clone();
        nic.mac = Some(mac);
        d.update_device(i, &nic);
        changed = true;
    }
    Ok(changed)
}

/// The pieces of a new VM. Disks are attached in order: disks as `vda`,
/// `vdb`… on virtio (or `hda`… on IDE with [`NewVm::ide_disks`]), the
/// CD-ROM as `hdc` on IDE (where SeaBIOS and every installer find it).
#[derive(Debug, Clone)]
pub struct NewVm {
    name: String,
    memory_mib: u64,
    vcpus: u32,
    /// Paths and formats (`raw`, `qcow2`).
    disks: Vec<(String, String)>,
    ide_disks: bool,
    kernel: Option<(String, Option<String>, Option<String>)>,
    cdrom: Option<String>,
    network: Option<String>,
    vnc: bool,
    /// Where the VNC server listens, when not on localhost.
    vnc_listen: Option<String>,
    serial_console: bool,
    uuid: Option<String>,
    mac: Option<String>,
}

impl NewVm {
    /// A VM with 1 GiB of RAM, one vCPU, VNC graphics, a standard VGA, a USB
    /// tablet and a serial console; no disks and no network until added.
    pub fn new(name: &str) -> Self {
        NewVm {
            name: name.to_string(),
            memory_mib: 1024,
            vcpus: 1,
            disks: Vec::new(),
            ide_disks: false,
            kernel: None,
            cdrom: None,
            network: None,
            vnc: true,
            vnc_listen: None,
            serial_console: true,
            uuid: None,
            mac: None,
        }
    }

    pub fn memory_mib(mut self, mib: u64) -> Self {
        self.memory_mib = mib;
        self
    }

    pub fn vcpus(mut self, vcpus: u32) -> Self {
        self.vcpus = vcpus;
        self
    }

    /// Adds a raw disk image.
    pub fn disk(self, path: &str) -> Self {
        self.disk_as(path, "raw")
    }

    /// Adds a disk image in `format` (`raw` or `qcow2`).
    pub fn disk_as(mut self, path: &str, format: &str) -> Self {
        self.disks.push((path.to_string(), format.to_string()));
        self
    }

    /// Boots a Linux kernel directly (virt-install's `--boot kernel=`),
    /// with an optional initrd and command line.
    pub fn kernel(mut self, kernel: &str, initrd: Option<&str>, cmdline: Option<&str>) -> Self {
        self.kernel = Some((
            kernel.to_string(),
            initrd.map(str::to_string),
            cmdline.map(str::to_string),
        ));
        self
    }

    /// Puts the disks on IDE (for guests without virtio drivers, such as Windows XP).
    pub fn ide_disks(mut self, ide: bool) -> Self {
        self.ide_disks = ide;
        self
    }

    /// An installation ISO in the CD-ROM drive; the VM boots from it first.
    pub fn cdrom(mut self, iso: &str) -> Self {
        self.cdrom = Some(iso.to_string());
        self
    }

    /// A NIC on libvirt network `network` (`default` is NAT).
    pub fn network(mut self, network: &str) -> Self {
        self.network = Some(network.to_string());
        self
    }

    pub fn vnc(mut self, on: bool) -> Self {
        self.vnc = on;
        self
    }

    /// VNC listening on `address` (`0.0.0.0`: every interface).
    pub fn vnc_listen(mut self, address: &str) -> Self {
        self.vnc_listen = Some(address.to_string());
        self
    }

    pub fn serial_console(mut self, on: bool) -> Self {
        self.serial_console = on;
        self
    }

    /// A fixed UUID instead of a random one (tests, re-definitions).
    pub fn uuid(mut self, uuid: &str) -> Self {
        self.uuid = Some(uuid.to_string());
        self
    }

    /// A fixed MAC instead of a random one.
    pub fn mac(mut self, mac: &str) -> Self {
        self.mac = Some(mac.to_string());
        self
    }

    /// The definition. Fails only when no random numbers can be read.
    pub fn build(self) -> std::io::Result<Domain> {
        let mut d = Domain::new(&self.name);
        let uuid = match self.uuid {
            Some(u) => u,
            None => generate_uuid()?,
        };
        d.set_uuid(Some(&uuid));
        d.set_memory(self.memory_mib << 20);
        d.set_current_memory(Some(self.memory_mib << 20));
        d.set_vcpu(&Vcpu {
            count: self.vcpus.max(1),
            placement: Some("static".into()),
            current: None,
        });
        let mut boot = Vec::new();
        if self.cdrom.is_some() {
            boot.push(BootDevice::Cdrom);
        }
        boot.push(BootDevice::Hd);
        let (kernel, initrd, cmdline) = self.kernel.clone().unwrap_or_default();
        d.set_os(&Os {
            os_type: Some("hvm".into()),
            arch: Some("x86_64".into()),
            machine: Some("pc".into()),
            boot,
            kernel: (!kernel.is_empty()).then_some(kernel),
            initrd,
            cmdline,
            ..Os::default()
        });
        for feature in ["acpi", "apic"] {
            d.set_feature(feature, true);
        }
        d.set_clock(&Clock {
            offset: Some("utc".into()),
            timers: vec![
                Timer {
                    name: "rtc".into(),
                    tickpolicy: Some("catchup".into()),
                    present: None,
                },
                Timer {
                    name: "pit".into(),
                    tickpolicy: Some("delay".into()),
                    present: None,
                },
                Timer {
                    name: "hpet".into(),
                    tickpolicy: None,
                    present: Some(false),
                },
            ],
        });
        d.set_lifecycle(LifecycleEvent::Poweroff, Some("destroy"));
        d.set_lifecycle(LifecycleEvent::Reboot, Some("restart"));
        d.set_lifecycle(LifecycleEvent::Crash, Some("destroy"));

        for (i, (path, format)) in self.disks.iter().enumerate() {
            let (target, bus) = if self.ide_disks {
                // hdc is the CD-ROM's; the disks take hda, hdb, hdd.
                let letter = [b'a', b'b', b'd'].get(i).copied().unwrap_or(b'z');
                (format!("hd{}", letter as char), "ide")
            } else {
                (format!("vd{}", (b'a' + (i as u8 % 26)) as char), "virtio")
            };
            let mut disk = Disk::file("disk", path, &target, bus);
            disk.driver_type = Some(format.clone());
            d.add_device(&disk);
        }
        if let Some(iso) = &self.cdrom {
            d.add_device(&Disk::file("cdrom", iso, "hdc", "ide"));
        }
        if let Some(network) = &self.network {
            let mac = match &self.mac {
                Some(m) => m.clone(),
                None => generate_mac()?,
            };
            d.add_device(&Interface::network(network, &mac));
        }
        if self.serial_console {
            d.add_device(&Serial(CharDevice::pty(0)));
            d.add_device(&Console(CharDevice {
                target_type: Some("serial".into()),
                ..CharDevice::pty(0)
            }));
        }
        // The absolute pointer virt-manager gives every VM: a USB tablet
        // on the PIIX3's UHCI. libvirt writes the controller and the PS/2
        // mouse and keyboard (the i8042 is always there) out too.
        d.add_device(&Controller {
            kind: "usb".into(),
            index: Some(0),
            model: Some("piix3-uhci".into()),
            address: None,
        });
        for (kind, bus) in [("tablet", "usb"), ("mouse", "ps2"), ("keyboard", "ps2")] {
            d.add_device(&Input {
                kind: kind.into(),
                bus: Some(bus.into()),
            });
        }
        if self.vnc {
            let mut graphics = Graphics::vnc();
            if let Some(address) = &self.vnc_listen {
                graphics.listen = Some(address.clone());
                for listen in &mut graphics.listens {
                    listen.address = Some(address.clone());
                }
            }
            d.add_device(&graphics);
        }
        d.add_device(&Video::vga());
        Ok(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vnc_listens_where_asked() {
        let xml = NewVm::new("a").build().unwrap().to_xml();
        assert!(
            xml.contains("listen='127.0.0.1'") || xml.contains("listen=\"127.0.0.1\""),
            "{xml}"
        );
        let d = NewVm::new("a").vnc_listen("0.0.0.0").build().unwrap();
        let graphics = d.graphics().unwrap();
        assert_eq!(graphics[0].listen.as_deref(), Some("0.0.0.0"));
        assert_eq!(graphics[0].listens[0].address.as_deref(), Some("0.0.0.0"));
    }

    #[test]
    fn uuids_are_version_4() {
        let a = generate_uuid().unwrap();
        let b = generate_uuid().unwrap();
        assert_ne!(a, b);
        assert!(super::super::validate::is_uuid(&a), "{a}");
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!("89ab".contains(&a[19..20]), "{a}");
    }

    #[test]
    fn macs_are_in_qemus_range() {
        let mac = generate_mac().unwrap();
        assert!(mac.starts_with("52:54:00:"), "{mac}");
        assert_eq!(super::super::validate::is_unicast_mac(&mac), Some(true));
    }

    fn with_devices(devices: &str) -> Domain {
        Domain::parse(&format!(
            "<domain type='kvm'><name>n</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices>{devices}</devices></domain>"
        ))
        .unwrap()
    }

    #[test]
    fn fill_macs_adds_only_missing_ones() {
        let mut d = with_devices(
            "<interface type='user'/><interface type='user'><mac address='52:54:00:00:00:01'/></interface>",
        );
        assert!(fill_macs(&mut d).unwrap());
        let nics = d.interfaces().unwrap();
        assert!(nics[0].mac.as_deref().unwrap().starts_with("52:54:00:"));
        assert_eq!(nics[1].mac.as_deref(), Some("52:54:00:00:00:01"));
        assert!(!fill_macs(&mut d).unwrap());
    }
}
