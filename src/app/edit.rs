//! Editing a stored definition, as the Details page and its XML tab do it
//! (virt-manager's `details.py` and `addhardware.py`, without GTK): typed
//! changes to a [`Domain`] (memory, CPUs and topology, boot order, disks,
//! NICs, VNC, video), new hardware with its checks (target names that
//! collide, files that are missing), and saving through [`DomainStore`] under the
//! same rules as `vireo define`.
//!
//! The CLI's `attach-disk`, `detach-disk`, `attach-interface` and
//! `detach-interface` go through the same functions ([`attach_disk`],
//! [`detach_disk`], [`attach_interface`], [`detach_interface`], [`Scope`]),
//! so both front ends follow one set of rules; the CLI words the errors as
//! virsh does.
//!
//! A running VM keeps the machine it was started with: the store holds one
//! definition, the one the next start uses, so saving while a VM runs
//! never touches the running VM ("takes effect after shutdown"). What needs
//! the VM off is refused instead: renaming, and a device change asked for
//! the running VM itself (hot-plug is not emulated).

use std::path::{Path, PathBuf};

use crate::definitions::{Definition, DomainStore, StoreError};
use crate::domain::{
    BootDevice, CpuTopology, Disk, Domain, DomainError, Input, Interface, Serial, Video,
};
use crate::storage::pools::DEFAULT_POOL;

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
    /// A device change was asked of the running VM: that is hot-plug.
    #[error("Changing {0} of a running VM needs hot-plug, which Vireo does not have yet.")]
    NeedsHotplug(&'static str),
    /// A text that is not a MAC address.
    #[error("{0} is not a MAC address.")]
    BadMac(String),
    /// No NIC of that type (and MAC address, when one is given).
    #[error("There is no {kind} NIC{} in this VM.", .mac.as_ref().map(|m| format!(" with MAC address {m}")).unwrap_or_default())]
    NoSuchInterface { kind: String, mac: Option<String> },
    /// More than one NIC matches and no MAC address says which.
    #[error("{0} NICs match; say which one by its MAC address.")]
    AmbiguousInterface(usize),
}

/// Disk buses the VMM emulates (see `vm_config`).
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
    if !target.starts_with(target_prefix(bus)) {
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
        check_mac(mac)?;
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

/// The target names of `bus` start with this: `vd`, `sd`, `hd`.
fn target_prefix(bus: &str) -> &'static str {
    match bus {
        "virtio" => "vd",
        "sata" | "scsi" | "usb" => "sd",
        _ => "hd",
    }
}

/// How many drives `bus` holds: IDE has two channels of two drives, and
/// the SATA disks take the same four places (see `vm_config`).
fn target_limit(bus: &str) -> u8 {
    if bus == "virtio" {
        26
    } else {
        4
    }
}

/// Whether `target` is a name `bus` can place: its prefix and one letter
/// (`vda`…`vdz`, `hda`…`hdd`, `sda`…`sdd`).
fn check_target(target: &str, bus: &str) -> Result<(), EditError> {
    let prefix = target_prefix(bus);
    let last = (b'a' + target_limit(bus) - 1) as char;
    let fits = target
        .strip_prefix(prefix)
        .is_some_and(|rest| matches!(rest.as_bytes(), [c] if (b'a'..=last as u8).contains(c)));
    if fits {
        Ok(())
    } else {
        Err(EditError::Invalid(format!(
            "“{target}” is not a target name on the {bus} bus; use {prefix}a to {prefix}{last}."
        )))
    }
}

/// The first free target name on `bus`: `vda`, `sda`, `hda`… (libvirt's
/// `virDomainDiskDefAssignAddress` naming).
pub fn next_target(domain: &Domain, bus: &str) -> Result<String, EditError> {
    let prefix = target_prefix(bus);
    let taken: Vec<String> = domain.disks()?.into_iter().map(|d| d.target_dev).collect();
    (b'a'..b'a' + target_limit(bus))
        .map(|c| format!("{prefix}{}", c as char))
        .find(|t| !taken.contains(t))
        .ok_or_else(|| EditError::NoFreeTarget(bus.to_string()))
}

/// Where a virsh verb's change applies: `--live`, `--config`,
/// `--persistent`, `--current` (none given is `--current`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Scope {
    pub live: bool,
    pub config: bool,
    pub persistent: bool,
    pub current: bool,
}

impl Scope {
    /// Devices are not hot-plugged, so a device change reaches only the
    /// stored definition. Refused: `--live`, and a running VM's change
    /// without `--config` or `--persistent` (virsh's default is the
    /// running VM then). `devices` names them: "disks".
    pub fn stored_only(self, running: bool, devices: &'static str) -> Result<(), EditError> {
        if self.live || (running && !self.config && !self.persistent) {
            return Err(EditError::NeedsHotplug(devices));
        }
        Ok(())
    }
}

/// A drive to attach, as `virsh attach-disk` and Add Hardware describe it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiskSpec {
    /// `disk` or `cdrom` (empty: `disk`).
    pub device: String,
    /// The image; `None` only for an empty CD-ROM drive.
    pub source: Option<DiskSource>,
    /// The target name; `None`: the bus's first free one.
    pub target: Option<String>,
    /// `None`: the bus the target name implies (as `vm_config` reads it),
    /// else virtio for a disk and IDE for a CD-ROM.
    pub bus: Option<String>,
    /// `raw` or `qcow2`; `None`: read off the image.
    pub format: Option<String>,
    pub readonly: bool,
    pub shareable: bool,
}

/// Adds the drive `spec` describes. Everything is checked before a new
/// volume is made. Returns its target name ("vdb").
pub fn attach_disk(domain: &mut Domain, spec: &DiskSpec) -> Result<String, EditError> {
    let device = match spec.device.as_str() {
        "" | "disk" => "disk",
        "cdrom" => "cdrom",
        other => {
            return Err(EditError::Invalid(format!(
                "A {other} drive is not emulated; attach a disk or a CD-ROM."
            )))
        }
    };
    let bus = match (&spec.bus, &spec.target) {
        (Some(bus), _) => bus.clone(),
        (None, Some(target)) => crate::vm_config::default_bus(target).to_string(),
        (None, None) if device == "cdrom" => "ide".to_string(),
        (None, None) => "virtio".to_string(),
    };
    if !DISK_BUSES.contains(&bus.as_str()) {
        return Err(EditError::Invalid(format!(
            "The {bus} bus is not emulated; use virtio, SATA or IDE."
        )));
    }
    if device == "cdrom" && bus == "virtio" {
        return Err(EditError::Invalid(
            "A CD-ROM drive sits on the IDE or SATA bus, not virtio.".into(),
        ));
    }
    let target = match &spec.target {
        Some(target) => {
            check_target(target, &bus)?;
            if domain.disk(target)?.is_some() {
                return Err(EditError::TargetTaken(target.clone()));
            }
            target.clone()
        }
        None => next_target(domain, &bus)?,
    };
    if let Some(format) = &spec.format {
        if !DISK_FORMATS.contains(&format.as_str()) {
            return Err(EditError::Invalid(format!(
                "The image format {format} is not read; use qcow2 or raw."
            )));
        }
    }
    let (path, format) = match &spec.source {
        Some(DiskSource::Existing(path)) => {
            let path = existing(path)?;
            let format = spec.format.clone().unwrap_or_else(|| {
                // A file that cannot be read now is taken as raw; the VM
                // says why when it opens it.
                crate::storage::detect_format(&path)
                    .unwrap_or(crate::storage::ImageFormat::Raw)
                    .name()
                    .to_string()
            });
            (Some(path), format)
        }
        Some(DiskSource::NewVolume { gib }) => {
            (Some(new_volume(&domain.name(), *gib)?), "qcow2".to_string())
        }
        None if device == "cdrom" => (None, "raw".to_string()),
        None => return Err(EditError::Invalid("A disk needs an image.".into())),
    };
    let mut disk = Disk::file(device, "", &target, &bus);
    disk.source = path.map(|p| p.to_string_lossy().into_owned());
    disk.driver_type = Some(format);
    disk.readonly |= spec.readonly;
    disk.shareable = spec.shareable;
    domain.add_device(&disk);
    Ok(target)
}

/// Removes the drive whose target name or image path is `which`, as
/// `virsh detach-disk` finds it. Returns what was removed.
pub fn detach_disk(domain: &mut Domain, which: &str) -> Result<Disk, EditError> {
    let disks = domain.disks()?;
    let canonical = std::fs::canonicalize(which).ok();
    let found = disks
        .iter()
        .position(|d| d.target_dev == which)
        .or_else(|| {
            disks.iter().position(|d| {
                d.source.as_deref().is_some_and(|s| {
                    s == which || canonical.as_deref().is_some_and(|c| Path::new(s) == c)
                })
            })
        });
    match found {
        Some(index) => {
            domain.remove_device::<Disk>(index);
            Ok(disks[index].clone())
        }
        None => Err(EditError::NoSuchDevice(which.to_string())),
    }
}

/// What a new NIC connects to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicSource {
    /// A libvirt network (`<interface type='network'>`).
    Network(String),
    /// A host bridge (`<interface type='bridge'>`).
    Bridge(String),
    /// User-mode networking (`<interface type='user'>`).
    User,
}

/// A NIC to attach, as `virsh attach-interface` and Add Hardware say it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicSpec {
    pub source: NicSource,
    /// `None`: a new one in QEMU's 52:54:00 range.
    pub mac: Option<String>,
    /// `None`: virtio.
    pub model: Option<String>,
}

fn check_mac(mac: &str) -> Result<(), EditError> {
    match crate::domain::builder::parse_mac(mac) {
        Some(_) => Ok(()),
        None => Err(EditError::BadMac(mac.to_string())),
    }
}

/// Adds the NIC `spec` describes. Returns its MAC address.
pub fn attach_interface(domain: &mut Domain, spec: &NicSpec) -> Result<String, EditError> {
    let named = |name: &str, what: &str| {
        let name = name.trim();
        if name.is_empty() {
            Err(EditError::Invalid(format!(
                "Say which {what} the NIC connects to."
            )))
        } else {
            Ok(Some(name.to_string()))
        }
    };
    let (kind, source_network, source_bridge) = match &spec.source {
        NicSource::Network(n) => ("network", named(n, "network")?, None),
        NicSource::Bridge(b) => ("bridge", None, named(b, "bridge")?),
        NicSource::User => ("user", None, None),
    };
    let mac = match &spec.mac {
        Some(mac) => {
            check_mac(mac)?;
            mac.clone()
        }
        None => crate::ids::generate_mac()
            .map_err(|e| EditError::Invalid(format!("No MAC address could be made: {e}")))?,
    };
    let nic = Interface {
        kind: kind.to_string(),
        mac: Some(mac.clone()),
        source_network,
        source_bridge,
        model: Some(
            spec.model
                .clone()
                .unwrap_or_else(|| NIC_MODELS[0].to_string()),
        ),
        address: None,
    };
    domain.add_device(&nic);
    Ok(mac)
}

/// Removes the one NIC of type `kind` (with MAC address `mac`, when
/// given), as `virsh detach-interface` finds it. Returns what was removed.
pub fn detach_interface(
    domain: &mut Domain,
    kind: &str,
    mac: Option<&str>,
) -> Result<Interface, EditError> {
    let nics = domain.interfaces()?;
    let matching: Vec<usize> = nics
        .iter()
        .enumerate()
        .filter(|(_, n)| n.kind == kind)
        .filter(|(_, n)| {
            mac.map_or(true, |mac| {
                n.mac
                    .as_deref()
                    .is_some_and(|m| m.eq_ignore_ascii_case(mac))
            })
        })
        .map(|(i, _)| i)
        .collect();
    match matching.as_slice() {
        [] => Err(EditError::NoSuchInterface {
            kind: kind.to_string(),
            mac: mac.map(str::to_string),
        }),
        [index] => {
            domain.remove_device::<Interface>(*index);
            Ok(nics[*index].clone())
        }
        more => Err(EditError::AmbiguousInterface(more.len())),
    }
}

/// Adds `hardware` to `domain`; a new volume is created in the default
/// pool first (and named after the VM). Returns what to call it ("vdb").
pub fn add_hardware(domain: &mut Domain, hardware: &NewHardware) -> Result<String, EditError> {
    match hardware {
        NewHardware::Disk { source, bus } => {
            let spec = DiskSpec {
                source: Some(source.clone()),
                bus: Some(bus.clone()),
                ..DiskSpec::default()
            };
            attach_disk(domain, &spec)
        }
        NewHardware::Cdrom { iso } => {
            let spec = DiskSpec {
                device: "cdrom".into(),
                source: iso.clone().map(DiskSource::Existing),
                bus: Some("ide".into()),
                ..DiskSpec::default()
            };
            attach_disk(domain, &spec)
        }
        NewHardware::Nic { network, model } => {
            let spec = NicSpec {
                source: NicSource::Network(network.clone()),
                mac: None,
                model: Some(model.clone()),
            };
            attach_interface(domain, &spec)
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

/// The absolute path of a file that must exist.
fn existing(path: &Path) -> Result<PathBuf, EditError> {
    if path.as_os_str().is_empty() || !path.exists() {
        return Err(EditError::MissingFile(path.to_path_buf()));
    }
    std::fs::canonicalize(path).map_err(|_| EditError::MissingFile(path.to_path_buf()))
}

/// A new qcow2 volume `VM-N.qcow2` of `gib` GiB in the default pool.
fn new_volume(vm: &str, gib: u64) -> Result<PathBuf, EditError> {
    if gib == 0 {
        return Err(EditError::Invalid(
            "A new disk needs at least 1 GiB.".into(),
        ));
    }
    let name_for = |taken: &[String]| {
        (1..)
            .map(|n| format!("{vm}-{n}.qcow2"))
            .find(|n| !taken.contains(n))
            .unwrap_or_else(|| format!("{vm}.qcow2"))
    };
    super::create::new_qcow2_volume(DEFAULT_POOL, gib, name_for, &mut |_| {})
        .map_err(|e| EditError::Volume(e.to_string()))
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
        DeviceRef::Disk(target) => return detach_disk(domain, target).map(|_| ()),
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
    store: &DomainStore,
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
        crate::definitions::validate_name(&checked.name)?;
        store.rename(&original.name, &checked.name)?;
    }
    Ok(store.define(&checked.xml)?)
}

/// The XML tab's Apply: `xml` parsed and validated like `vireo define`,
/// with the VM's name and UUID unchanged. Nothing is written when it fails.
pub fn save_xml(
    store: &DomainStore,
    original: &Definition,
    xml: &str,
) -> Result<Definition, EditError> {
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

    fn stored(dir: &Path) -> (DomainStore, Definition) {
        let store = DomainStore::at(dir.join("domains"));
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
        let collision = DiskSpec {
            source: Some(DiskSource::Existing(image.clone())),
            target: Some("vda".into()),
            ..DiskSpec::default()
        };
        assert!(
            matches!(attach_disk(&mut d, &collision), Err(EditError::TargetTaken(t)) if t == "vda")
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
    fn attach_disk_follows_virshs_naming_and_modes() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, def) = stored(dir.path());
        let mut d = def.domain().clone();
        let image = dir.path().join("data.img");
        std::fs::write(&image, [0u8; 512]).unwrap();
        let spec = |target: &str| DiskSpec {
            source: Some(DiskSource::Existing(image.clone())),
            target: Some(target.into()),
            ..DiskSpec::default()
        };
        // The bus follows the target name, as the VMM reads it.
        assert_eq!(attach_disk(&mut d, &spec("sdb")).unwrap(), "sdb");
        let (_, sdb) = d.disk("sdb").unwrap().unwrap();
        assert_eq!(sdb.target_bus.as_deref(), Some("sata"));
        assert_eq!(sdb.driver_type.as_deref(), Some("raw"));
        // Names a bus cannot place are refused before anything is added.
        for bad in ["sde", "hdq", "vd", "vdb1"] {
            assert!(
                matches!(attach_disk(&mut d, &spec(bad)), Err(EditError::Invalid(_))),
                "{bad}"
            );
        }
        let wrong_bus = DiskSpec {
            bus: Some("ide".into()),
            ..spec("vdb")
        };
        assert!(matches!(
            attach_disk(&mut d, &wrong_bus),
            Err(EditError::Invalid(m)) if m.contains("hda to hdd")
        ));
        let readonly = DiskSpec {
            readonly: true,
            format: Some("qcow2".into()),
            ..spec("vdb")
        };
        attach_disk(&mut d, &readonly).unwrap();
        let (_, vdb) = d.disk("vdb").unwrap().unwrap();
        assert!(vdb.readonly && !vdb.shareable);
        assert_eq!(vdb.driver_type.as_deref(), Some("qcow2"));
        let vmdk = DiskSpec {
            format: Some("vmdk".into()),
            ..spec("vdc")
        };
        assert!(attach_disk(&mut d, &vmdk).is_err());
        // A CD-ROM is read-only, and not on virtio.
        let cdrom = |target: &str| DiskSpec {
            device: "cdrom".into(),
            ..spec(target)
        };
        assert!(attach_disk(&mut d, &cdrom("vdc")).is_err());
        assert_eq!(attach_disk(&mut d, &cdrom("hdd")).unwrap(), "hdd");
        assert!(d.disk("hdd").unwrap().unwrap().1.readonly);
        let floppy = DiskSpec {
            device: "floppy".into(),
            ..spec("hda")
        };
        assert!(attach_disk(&mut d, &floppy).is_err());
        d.validate().unwrap();
        // The VMM can place every drive attached.
        crate::vm_config::from_domain(&d).unwrap();

        // Detached by target name or by image path, as virsh finds them.
        assert_eq!(detach_disk(&mut d, "hdd").unwrap().device, "cdrom");
        let by_path = detach_disk(&mut d, image.to_str().unwrap()).unwrap();
        assert_eq!(by_path.target_dev, "sdb");
        assert!(matches!(
            detach_disk(&mut d, "sdb"),
            Err(EditError::NoSuchDevice(t)) if t == "sdb"
        ));
    }

    #[test]
    fn a_running_vm_gets_device_changes_only_in_its_definition() {
        let config = Scope {
            config: true,
            ..Scope::default()
        };
        let persistent = Scope {
            persistent: true,
            ..Scope::default()
        };
        let live = Scope {
            live: true,
            ..Scope::default()
        };
        let current = Scope {
            current: true,
            ..Scope::default()
        };
        for running in [false, true] {
            assert!(config.stored_only(running, "disks").is_ok());
            assert!(persistent.stored_only(running, "disks").is_ok());
            assert!(live.stored_only(running, "disks").is_err());
        }
        assert!(Scope::default().stored_only(false, "disks").is_ok());
        assert!(current.stored_only(false, "disks").is_ok());
        let e = Scope::default().stored_only(true, "disks").unwrap_err();
        assert!(matches!(e, EditError::NeedsHotplug("disks")));
        assert!(current.stored_only(true, "disks").is_err());
    }

    #[test]
    fn interfaces_attach_and_detach_as_virsh_finds_them() {
        let dir = tempfile::tempdir().unwrap();
        let (_store, def) = stored(dir.path());
        let mut d = def.domain().clone();
        let user = NicSpec {
            source: NicSource::User,
            mac: Some("52:54:00:00:00:02".into()),
            model: None,
        };
        assert_eq!(
            attach_interface(&mut d, &user).unwrap(),
            "52:54:00:00:00:02"
        );
        let bridge = NicSpec {
            source: NicSource::Bridge("br0".into()),
            mac: None,
            model: Some("e1000".into()),
        };
        let mac = attach_interface(&mut d, &bridge).unwrap();
        assert!(mac.starts_with("52:54:00:"), "{mac}");
        let bad = NicSpec {
            mac: Some("52:54:00".into()),
            ..user.clone()
        };
        assert!(
            matches!(attach_interface(&mut d, &bad), Err(EditError::BadMac(m)) if m == "52:54:00")
        );
        let nowhere = NicSpec {
            source: NicSource::Network(" ".into()),
            ..user.clone()
        };
        assert!(attach_interface(&mut d, &nowhere).is_err());
        let nics = d.interfaces().unwrap();
        assert_eq!(nics.len(), 3);
        assert_eq!(nics[1].kind, "user");
        assert_eq!(nics[1].model.as_deref(), Some("virtio"));
        assert_eq!(nics[2].source_bridge.as_deref(), Some("br0"));
        d.validate().unwrap();

        attach_interface(&mut d, &NicSpec { mac: None, ..user }).unwrap();
        assert!(matches!(
            detach_interface(&mut d, "user", None),
            Err(EditError::AmbiguousInterface(2))
        ));
        let gone = detach_interface(&mut d, "user", Some("52:54:00:00:00:02")).unwrap();
        assert_eq!(gone.mac.as_deref(), Some("52:54:00:00:00:02"));
        assert!(matches!(
            detach_interface(&mut d, "bridge", Some("52:54:00:ff:ff:ff")),
            Err(EditError::NoSuchInterface { .. })
        ));
        detach_interface(&mut d, "network", None).unwrap();
        assert_eq!(d.interfaces().unwrap().len(), 2);
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
