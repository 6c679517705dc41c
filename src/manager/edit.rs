//! Editing a stored definition, as the Details page and its XML tab do it
//! (virt-manager's `details.py` and `addhardware.py`, without GTK): typed
//! changes to a [`Domain`] (memory, CPUs and topology, boot order, disks,
//! NICs, VNC, video), new hardware with its checks (target names that
//! collide, files that are missing), and saving through [`Store`] under the
//! same rules as `vireo define`.
//!
//! A running VM keeps the machine it was started with: the store holds one
//! definition, the one the next start uses, so saving while a VM runs
//! never touches the running VM ("takes effect after shutdown"). What needs
//! the VM off is refused instead: renaming.

use std::path::{Path, PathBuf};

use crate::domain::{
    BootDevice, CpuTopology, Disk, Domain, DomainError, Input, Interface, Serial, Video,
};
use crate::storage::pools::{NewVolume, PoolStore, VolumeFormat, DEFAULT_POOL};
use crate::store::{Definition, Store, StoreError};

/// Why an edit was refused. Every message is a sentence a person can act on.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    /// The edited definition breaks a rule of the domain model.
    #[error("{0}")]
    Domain(#[from] DomainError),
    /// The store refused it (name or UUID taken, a write failed).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// A new device's target name is already used.
    #[error("The target name “{0}” is already used by another device.")]
    TargetTaken(String),
    /// Every target name of a bus is taken.
    #[error("There is no free target name left on the {0} bus.")]
    NoFreeTarget(String),
    /// A file the device would use does not exist.
    #[error("The file {} does not exist.", .0.display())]
    MissingFile(PathBuf),
    /// No device with that target or position.
    #[error("There is no device {0} in this VM.")]
    NoSuchDevice(String),
    /// A number out of range, a bad address…
    #[error("{0}")]
    Invalid(String),
    /// A new volume could not be created in the default pool.
    #[error("The new volume could not be created: {0}")]
    Volume(String),
    /// The XML editor changed the VM's identity.
    #[error(
        "The XML changes the VM’s {0}. Rename a VM from its Details page; a UUID cannot change."
    )]
    IdentityChanged(&'static str),
    /// Renaming needs the VM off, as `vireo domrename` does.
    #[error("A running VM cannot be renamed; shut it down first.")]
    RenameRunning,
}

/// Disk buses the VMM emulates (see `domain::vm`).
pub const DISK_BUSES: &[&str] = &["virtio", "sata", "ide"];
/// Image formats the VMM reads.
pub const DISK_FORMATS: &[&str] = &["qcow2", "raw"];
/// NIC models the VMM emulates: every NIC is virtio-net.
pub const NIC_MODELS: &[&str] = &["virtio"];
/// The libvirt network a new NIC joins unless told otherwise.
pub const DEFAULT_NETWORK: &str = "default";
/// Video models the VMM emulates (others run as VGA).
pub const VIDEO_MODELS: &[&str] = &["vga", "none"];

/// Memory, in MiB (at least 1); the current memory follows it.
pub fn set_memory_mib(domain: &mut Domain, mib: u64) -> Result<(), EditError> {
    if mib == 0 || mib > (1 << 24) {
        return Err(EditError::Invalid(format!(
            "{mib} MiB is not a memory size a VM can have."
        )));
    }
    domain.set_memory(mib << 20);
    if domain.current_memory()?.is_some() {
        domain.set_current_memory(Some(mib << 20));
    }
    Ok(())
}

/// The number of vCPUs, and optionally a topology whose product must match.
pub fn set_cpus(
    domain: &mut Domain,
    count: u32,
    topology: Option<CpuTopology>,
) -> Result<(), EditError> {
    if count == 0 || count > 255 {
        return Err(EditError::Invalid(format!(
            "{count} is not a number of CPUs a VM can have (1 to 255)."
        )));
    }
    if let Some(t) = topology {
        let product = t.sockets * t.dies.unwrap_or(1) * t.cores * t.threads;
        if product != count {
            return Err(EditError::Invalid(format!(
                "The topology has {product} CPUs (sockets × cores × threads) but the VM has {count}."
            )));
        }
    }
    let mut vcpu = domain.vcpu()?;
    vcpu.count = count;
    vcpu.current = None;
    domain.set_vcpu(&vcpu);
    domain.set_cpu_topology(topology.as_ref());
    Ok(())
}

/// `<os><boot dev=…/>` in this order, and `<bootmenu enable=>`.
pub fn set_boot(domain: &mut Domain, order: &[BootDevice], menu: bool) -> Result<(), EditError> {
    let mut os = domain.os()?;
    os.boot = order.to_vec();
    os.bootmenu = Some(menu);
    domain.set_os(&os);
    Ok(())
}

/// Moves boot device `index` one place up (`up`) or down; false at an end.
pub fn move_boot(order: &mut [BootDevice], index: usize, up: bool) -> bool {
    let other = if up {
        index.checked_sub(1)
    } else {
        Some(index + 1).filter(|i| *i < order.len())
    };
    match other {
        Some(other) if index < order.len() => {
            order.swap(index, other);
            true
        }
        _ => false,
    }
}

/// The title and description; empty text removes them.
pub fn set_overview(domain: &mut Domain, title: &str, description: &str) {
    let some = |s: &str| Some(s.trim().to_string()).filter(|s| !s.is_empty());
    domain.set_title(some(title).as_deref());
    domain.set_description(some(description).as_deref());
}

/// Changes the disk with target `target` through `change`.
pub fn update_disk(
    domain: &mut Domain,
    target: &str,
    change: impl FnOnce(&mut Disk),
) -> Result<(), EditError> {
    let (index, mut disk) = domain
        .disk(target)?
        .ok_or_else(|| EditError::NoSuchDevice(target.to_string()))?;
    change(&mut disk);
    domain.update_device(index, &disk);
    Ok(())
}

/// Moves disk `target` to `bus`; its target name follows the bus's naming
/// (`vda` → `sda`), as virt-manager does. Returns the new target name.
pub fn set_disk_bus(domain: &mut Domain, target: &str, bus: &str) -> Result<String, EditError> {
    if !DISK_BUSES.contains(&bus) {
        return Err(EditError::Invalid(format!(
            "The {bus} bus is not emulated; use virtio, SATA or IDE."
        )));
    }
    let mut new_target = target.to_string();
    let prefix = |b: &str| {
        if b == "virtio" {
            "vd"
        } else if b == "ide" {
            "hd"
        } else {
            "sd"
        }
    };
    if !target.starts_with(prefix(bus)) {
        new_target = next_target(domain, bus)?;
    }
    update_disk(domain, target, |disk| {
        disk.target_bus = Some(bus.to_string());
        disk.target_dev = new_target.clone();
        // The old bus's address does not fit the new one.
        disk.address = None;
    })?;
    Ok(new_target)
}

/// Changes the `index`th NIC through `change`.
pub fn update_interface(
    domain: &mut Domain,
    index: usize,
    change: impl FnOnce(&mut Interface),
) -> Result<(), EditError> {
    let mut nic = domain
        .interfaces()?
        .into_iter()
        .nth(index)
        .ok_or_else(|| EditError::NoSuchDevice(format!("NIC {}", index + 1)))?;
    change(&mut nic);
    if let Some(mac) = &nic.mac {
        if crate::domain::nic::parse_mac(mac).is_none() {
            return Err(EditError::Invalid(format!("{mac} is not a MAC address.")));
        }
    }
    domain.update_device(index, &nic);
    Ok(())
}

/// The VNC display's listen address, port (`None`: chosen at start) and
/// password (`None` or empty: none).
pub fn set_vnc(
    domain: &mut Domain,
    listen: &str,
    port: Option<u16>,
    password: Option<&str>,
) -> Result<(), EditError> {
    let (index, mut graphics) = domain
        .graphics()?
        .into_iter()
        .enumerate()
        .find(|(_, g)| g.kind == "vnc")
        .ok_or_else(|| EditError::NoSuchDevice("VNC".into()))?;
    let listen = listen.trim();
    if listen.parse::<std::net::IpAddr>().is_err() {
        return Err(EditError::Invalid(format!(
            "“{listen}” is not an IP address to listen on."
        )));
    }
    if port.is_some_and(|p| p < 5900) {
        return Err(EditError::Invalid(
            "A VNC port is 5900 or higher.".to_string(),
        ));
    }
    graphics.listen = Some(listen.to_string());
    for l in &mut graphics.listens {
        if l.kind == "address" {
            l.address = Some(listen.to_string());
        }
    }
    graphics.port = Some(port.map_or(-1, i32::from));
    graphics.autoport = Some(port.is_none());
    graphics.passwd = password.filter(|p| !p.is_empty()).map(str::to_string);
    domain.update_device(index, &graphics);
    Ok(())
}

/// The first video device's model.
pub fn set_video_model(domain: &mut Domain, model: &str) -> Result<(), EditError> {
    let mut video = domain
        .devices::<Video>()?
        .into_iter()
        .next()
        .ok_or_else(|| EditError::NoSuchDevice("video".into()))?;
    video.model = Some(model.to_string());
    domain.update_device(0, &video);
    Ok(())
}

/// Where a new disk's image comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskSource {
    /// A new qcow2 volume of this many GiB in the default pool.
    NewVolume { gib: u64 },
    /// An image file that exists.
    Existing(PathBuf),
}

/// What Add Hardware adds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewHardware {
    Disk {
        source: DiskSource,
        bus: String,
    },
    /// A CD-ROM drive, with an ISO in it or empty.
    Cdrom {
        iso: Option<PathBuf>,
    },
    /// A NIC on a libvirt network.
    Nic {
        network: String,
        model: String,
    },
    /// A serial port on a pseudo-terminal.
    Serial,
}

/// The first free target name on `bus`: `vda`, `sda`, `hda`… (libvirt's
/// `virDomainDiskDefAssignAddress` naming).
pub fn next_target(domain: &Domain, bus: &str) -> Result<String, EditError> {
    let prefix = match bus {
        "virtio" => "vd",
        "sata" | "scsi" | "usb" => "sd",
        _ => "hd",
    };
    // IDE has two channels of two drives.
    let limit = if prefix == "hd" { 4 } else { 26 };
    let taken: Vec<String> = domain.disks()?.into_iter().map(|d| d.target_dev).collect();
    (b'a'..b'a' + limit)
        .map(|c| format!("{prefix}{}", c as char))
        .find(|t| !taken.contains(t))
        .ok_or_else(|| EditError::NoFreeTarget(bus.to_string()))
}

/// Adds `hardware` to `domain`; a new volume is created in the default
/// pool first (and named after the VM). Returns what to call it ("vdb").
pub fn add_hardware(domain: &mut Domain, hardware: &NewHardware) -> Result<String, EditError> {
    match hardware {
        NewHardware::Disk { source, bus } => {
            if !DISK_BUSES.contains(&bus.as_str()) {
                return Err(EditError::Invalid(format!(
                    "The {bus} bus is not emulated; use virtio, SATA or IDE."
                )));
            }
            let target = next_target(domain, bus)?;
            let (path, format) = match source {
                DiskSource::Existing(path) => {
                    let path = existing(path)?;
                    let format = image_format(&path);
                    (path, format)
                }
                DiskSource::NewVolume { gib } => {
                    (new_volume(&domain.name(), *gib)?, "qcow2".to_string())
                }
            };
            let mut disk = Disk::file("disk", &path.to_string_lossy(), &target, bus);
            disk.driver_type = Some(format);
            add_disk(domain, disk)?;
            Ok(target)
        }
        NewHardware::Cdrom { iso } => {
            let target = next_target(domain, "ide")?;
            let mut disk = Disk::file("cdrom", "", &target, "ide");
            disk.source = match iso {
                Some(iso) => Some(existing(iso)?.to_string_lossy().into_owned()),
                None => None,
            };
            add_disk(domain, disk)?;
            Ok(target)
        }
        NewHardware::Nic { network, model } => {
            let network = network.trim();
            if network.is_empty() {
                return Err(EditError::Invalid(
                    "Say which network the NIC connects to.".into(),
                ));
            }
            let mac = crate::domain::generate_mac()
                .map_err(|e| EditError::Invalid(format!("No MAC address could be made: {e}")))?;
            let mut nic = Interface::network(network, &mac);
            nic.model = Some(model.clone());
            domain.add_device(&nic);
            Ok(mac)
        }
        NewHardware::Serial => {
            let ports: Vec<u32> = domain
                .devices::<Serial>()?
                .iter()
                .filter_map(|s| s.0.target_port)
                .collect();
            let port = (0..4).find(|p| !ports.contains(p)).ok_or_else(|| {
                EditError::Invalid("The VM has four serial ports already.".into())
            })?;
            domain.add_device(&Serial(crate::domain::devices::CharDevice::pty(port)));
            Ok(format!("serial{port}"))
        }
    }
}

fn add_disk(domain: &mut Domain, disk: Disk) -> Result<(), EditError> {
    if domain.disk(&disk.target_dev)?.is_some() {
        return Err(EditError::TargetTaken(disk.target_dev));
    }
    domain.add_device(&disk);
    Ok(())
}

/// The absolute path of a file that must exist.
fn existing(path: &Path) -> Result<PathBuf, EditError> {
    if path.as_os_str().is_empty() || !path.exists() {
        return Err(EditError::MissingFile(path.to_path_buf()));
    }
    std::fs::canonicalize(path).map_err(|_| EditError::MissingFile(path.to_path_buf()))
}

/// `qcow2` when the file starts with the qcow2 magic, else `raw`.
fn image_format(path: &Path) -> String {
    use std::io::Read;
    let mut magic = [0u8; 4];
    let is_qcow2 = std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut magic))
        .is_ok()
        && magic == *b"QFI\xfb";
    if is_qcow2 { "qcow2" } else { "raw" }.to_string()
}

/// A new qcow2 volume `VM-N.qcow2` of `gib` GiB in the default pool.
fn new_volume(vm: &str, gib: u64) -> Result<PathBuf, EditError> {
    if gib == 0 {
        return Err(EditError::Invalid(
            "A new disk needs at least 1 GiB.".into(),
        ));
    }
    let err = |e: crate::storage::pools::PoolError| EditError::Volume(e.to_string());
    let pools = PoolStore::open().map_err(err)?;
    let pool = pools.get(DEFAULT_POOL).map_err(err)?;
    let taken: Vec<String> = pool
        .volumes()
        .map_err(err)?
        .into_iter()
        .map(|v| v.name)
        .collect();
    let name = (1..)
        .map(|n| format!("{vm}-{n}.qcow2"))
        .find(|n| !taken.contains(n))
        .unwrap_or_else(|| format!("{vm}.qcow2"));
    let spec = NewVolume {
        name: name.clone(),
        capacity: gib << 30,
        allocation: Some(0),
        format: VolumeFormat::Qcow2,
        prealloc_metadata: false,
        backing: None,
    };
    pool.create_volume(&spec, &mut |_, _| {}).map_err(err)?;
    pool.volume_path(&name).map_err(err)
}

/// A device Remove can take out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceRef {
    /// A disk or CD-ROM, by target name.
    Disk(String),
    /// The `n`th NIC.
    Interface(usize),
    /// The `n`th serial port.
    Serial(usize),
    /// The `n`th input device.
    Input(usize),
}

/// Removes `device`.
pub fn remove_device(domain: &mut Domain, device: &DeviceRef) -> Result<(), EditError> {
    let removed = match device {
        DeviceRef::Disk(target) => domain.remove_disk(target)?,
        DeviceRef::Interface(i) => domain.remove_device::<Interface>(*i),
        DeviceRef::Serial(i) => domain.remove_device::<Serial>(*i),
        DeviceRef::Input(i) => domain.remove_device::<Input>(*i),
    };
    if removed {
        Ok(())
    } else {
        Err(EditError::NoSuchDevice(format!("{device:?}")))
    }
}

/// Saves `edited` as the new definition of the VM now stored as
/// `original`. A changed name renames the VM (refused while it runs); the
/// UUID cannot change. Returns what was stored.
pub fn save(
    store: &Store,
    original: &Definition,
    edited: &Domain,
    running: bool,
) -> Result<Definition, EditError> {
    if edited
        .uuid()
        .is_some_and(|u| !u.eq_ignore_ascii_case(&original.uuid))
    {
        return Err(EditError::IdentityChanged("UUID"));
    }
    // Checked in full before anything is written.
    let checked = original.with_domain(edited.clone())?;
    if checked.name != original.name {
        if running {
            return Err(EditError::RenameRunning);
        }
        crate::store::validate_name(&checked.name)?;
        store.rename(&original.name, &checked.name)?;
    }
    Ok(store.define(&checked.xml)?)
}

/// The XML tab's Apply: `xml` parsed and validated like `vireo define`,
/// with the VM's name and UUID unchanged. Nothing is written when it fails.
pub fn save_xml(store: &Store, original: &Definition, xml: &str) -> Result<Definition, EditError> {
    let parsed = Definition::parse_new(xml)?;
    if parsed.name != original.name {
        return Err(EditError::IdentityChanged("name"));
    }
    if parsed.uuid != original.uuid {
        return Err(EditError::IdentityChanged("UUID"));
    }
    Ok(store.define(xml)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    const UUID: &str = "5119e3ad-efa7-e426-49eb-9ddf9060fde4";

    fn xml(name: &str) -> String {
        format!(
            "<domain type='kvm'><name>{name}</name><uuid>{UUID}</uuid>\
             <memory unit='KiB'>131072</memory><currentMemory unit='KiB'>131072</currentMemory>\
             <vcpu placement='static'>1</vcpu>\
             <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/><boot dev='cdrom'/></os>\
             <devices>\
             <disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='/tmp/a.qcow2'/><target dev='vda' bus='virtio'/></disk>\
             <disk type='file' device='cdrom'><driver name='qemu' type='raw'/><target dev='hdc' bus='ide'/><readonly/></disk>\
             <interface type='network'><mac address='52:54:00:12:34:56'/><source network='default'/><model type='virtio'/></interface>\
             <serial type='pty'><target port='0'/></serial>\
             <input type='mouse' bus='ps2'/>\
             <graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>\
             <video><model type='vga' vram='16384' heads='1'/></video>\
             </devices></domain>"
        )
    }

    fn stored(dir: &Path) -> (Store, Definition) {
        let store = Store::at(dir.join("domains"));
        let def = store.define(&xml("wren")).unwrap();
        (store, def)
    }

    #[test]
    fn memory_cpus_and_boot_are_saved_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let (store, def) = stored(dir.path());
        let mut d = def.domain().clone();
        set_memory_mib(&mut d, 256).unwrap();
        let topo = CpuTopology {
            sockets: 1,
            dies: None,
            cores: 2,
            threads: 2,
        };
        assert!(matches!(
            set_cpus(&mut d, 2, Some(topo)),
            Err(EditError::Invalid(m)) if m.contains("4 CPUs")
        ));
        set_cpus(&mut d, 4, Some(topo)).unwrap();
        let mut order = d.os().unwrap().boot;
        assert!(move_boot(&mut order, 1, true));
        assert!(!move_boot(&mut order, 0, true));
        set_boot(&mut d, &order, true).unwrap();
        set_overview(&mut d, "A bird", "  ");
        save(&store, &def, &d, false).unwrap();

        let back = store.find("wren").unwrap();
        let back = back.domain();
        assert_eq!(back.memory().unwrap(), Some(256 << 20));
        assert_eq!(back.current_memory().unwrap(), Some(256 << 20));
        assert_eq!(back.vcpu().unwrap().count, 4);
        assert_eq!(back.cpu_topology().unwrap(), Some(topo));
        let os = back.os().unwrap();
        assert_eq!(os.boot, [BootDevice::Cdrom, BootDevice::Hd]);
        assert_eq!(os.bootmenu, Some(true));
        assert_eq!(back.title().as_deref(), Some("A bird"));
        assert_eq!(back.description(), None);
        assert!(set_memory_mib(&mut d, 0).is_err());
    }

    #[test]
    fn disks_nics_vnc_and_video_are_edited() {
        let dir = tempfile::tempdir().unwrap();
        let (store, def) = stored(dir.path());
        let mut d = def.domain().clone();
        update_disk(&mut d, "vda", |disk| {
            disk.readonly = true;
            disk.target_bus = Some("sata".into());
        })
        .unwrap();
        assert_eq!(set_disk_bus(&mut d, "vda", "ide").unwrap(), "hda");
        assert_eq!(set_disk_bus(&mut d, "hda", "sata").unwrap(), "sda");
        assert!(set_disk_bus(&mut d, "sda", "scsi").is_err());
        assert!(matches!(
            update_disk(&mut d, "vdz", |_| {}),
            Err(EditError::NoSuchDevice(_))
        ));
        update_interface(&mut d, 0, |n| n.source_network = Some("isolated".into())).unwrap();
        assert!(update_interface(&mut d, 0, |n| n.mac = Some("nope".into())).is_err());
        set_vnc(&mut d, "0.0.0.0", Some(5905), Some("secret")).unwrap();
        assert!(set_vnc(&mut d, "somewhere", None, None).is_err());
        set_video_model(&mut d, "none").unwrap();
        let saved = save(&store, &def, &d, true).unwrap();
        let x = &saved.xml;
        assert!(x.contains("<target dev='sda' bus='sata'/>"), "{x}");
        assert!(saved.domain().disk("sda").unwrap().unwrap().1.readonly);
        assert!(x.contains("<source network='isolated'/>"), "{x}");
        assert!(
            x.contains("port='5905'") && x.contains("passwd='secret'"),
            "{x}"
        );
        assert!(x.contains("<model type='none'"), "{x}");
    }

    #[test]
    fn add_hardware_names_targets_and_refuses_missing_files() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, def) = stored(dir.path());
        let mut d = def.domain().clone();
        let image = dir.path().join("extra.qcow2");
        std::fs::write(&image, b"QFI\xfb\0\0\0\x03").unwrap();
        let disk = NewHardware::Disk {
            source: DiskSource::Existing(image.clone()),
            bus: "virtio".into(),
        };
        assert_eq!(add_hardware(&mut d, &disk).unwrap(), "vdb");
        let (_, added) = d.disk("vdb").unwrap().unwrap();
        assert_eq!(added.driver_type.as_deref(), Some("qcow2"));
        assert_eq!(added.source.as_deref(), image.to_str());
        assert_eq!(add_hardware(&mut d, &disk).unwrap(), "vdc");
        let missing = NewHardware::Disk {
            source: DiskSource::Existing(dir.path().join("gone.img")),
            bus: "sata".into(),
        };
        let e = add_hardware(&mut d, &missing).unwrap_err().to_string();
        assert!(
            e.contains("gone.img") && e.contains("does not exist"),
            "{e}"
        );
        // hdc is the CD-ROM already: the next IDE drive is hda.
        assert_eq!(
            add_hardware(&mut d, &NewHardware::Cdrom { iso: None }).unwrap(),
            "hda"
        );
        let collision = Disk::file("disk", "/x", "vda", "virtio");
        assert!(
            matches!(add_disk(&mut d, collision), Err(EditError::TargetTaken(t)) if t == "vda")
        );
        add_hardware(
            &mut d,
            &NewHardware::Nic {
                network: "default".into(),
                model: "virtio".into(),
            },
        )
        .unwrap();
        assert_eq!(d.interfaces().unwrap().len(), 2);
        assert_eq!(
            add_hardware(&mut d, &NewHardware::Serial).unwrap(),
            "serial1"
        );
        d.validate().unwrap();
        remove_device(&mut d, &DeviceRef::Disk("vdb".into())).unwrap();
        remove_device(&mut d, &DeviceRef::Serial(1)).unwrap();
        assert!(remove_device(&mut d, &DeviceRef::Input(5)).is_err());
        assert!(d.disk("vdb").unwrap().is_none());
    }

    #[test]
    fn the_xml_tab_saves_only_valid_xml_of_the_same_vm() {
        let dir = tempfile::tempdir().unwrap();
        let (store, def) = stored(dir.path());
        let before = store.find("wren").unwrap().xml;
        let broken = def.xml.replace("</devices>", "");
        let e = save_xml(&store, &def, &broken).unwrap_err().to_string();
        assert!(e.contains("malformed"), "{e}");
        let renamed = def.xml.replace("<name>wren</name>", "<name>finch</name>");
        assert!(matches!(
            save_xml(&store, &def, &renamed),
            Err(EditError::IdentityChanged("name"))
        ));
        let bad_bus = def.xml.replace("bus='virtio'", "bus='wire'");
        assert!(save_xml(&store, &def, &bad_bus).is_err());
        assert_eq!(store.find("wren").unwrap().xml, before, "nothing written");
        assert!(store.find("finch").is_err());

        let bigger = def.xml.replace(
            "<memory unit='KiB'>131072</memory>",
            "<memory unit='KiB'>262144</memory>",
        );
        let saved = save_xml(&store, &def, &bigger).unwrap();
        assert_eq!(saved.domain().memory().unwrap(), Some(256 << 20));
    }

    #[test]
    fn renaming_needs_the_vm_off() {
        let dir = tempfile::tempdir().unwrap();
        let (store, def) = stored(dir.path());
        let mut d = def.domain().clone();
        d.set_name("finch");
        assert!(matches!(
            save(&store, &def, &d, true),
            Err(EditError::RenameRunning)
        ));
        assert!(store.find("wren").is_ok());
        let saved = save(&store, &def, &d, false).unwrap();
        assert_eq!((saved.name.as_str(), saved.uuid.as_str()), ("finch", UUID));
        assert!(store.find("wren").is_err());
    }
}
