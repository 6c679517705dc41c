//! `<devices>` children (<https://libvirt.org/formatdomain.html#devices>).
//!
//! Each device type reads its modelled attributes and children from an
//! element ([`DeviceXml::from_element`]) and writes them back into an
//! element ([`DeviceXml::write_into`]) without touching anything else, so a
//! device edited through its typed value keeps the parts Vireo does not know.

use super::{attr_bool, attr_num, set_attr_num, yes_no, DomainError, Element};

/// The order libvirt writes `<devices>`'s children in (`virDomainDefFormatInternal`).
pub(crate) const DEVICES_ORDER: &[&str] = &[
    "emulator",
    "disk",
    "controller",
    "lease",
    "filesystem",
    "interface",
    "smartcard",
    "serial",
    "parallel",
    "console",
    "channel",
    "input",
    "tpm",
    "graphics",
    "sound",
    "audio",
    "video",
    "hostdev",
    "redirdev",
    "redirfilter",
    "hub",
    "watchdog",
    "memballoon",
    "rng",
    "panic",
    "shmem",
    "memory",
    "iommu",
    "vsock",
];

/// A device element Vireo models.
pub trait DeviceXml: Sized {
    /// The element name under `<devices>`.
    const TAG: &'static str;
    /// Reads the modelled parts of `el`.
    fn from_element(el: &Element) -> Result<Self, DomainError>;
    /// Writes the modelled parts into `el`, leaving the rest alone.
    fn write_into(&self, el: &mut Element);
    /// A new element for this device.
    fn to_element(&self) -> Element {
        let mut el = Element::new(Self::TAG);
        self.write_into(&mut el);
        el
    }
}

fn required(el: &Element, name: &str) -> Result<String, DomainError> {
    el.attr(name)
        .map(str::to_string)
        .ok_or_else(|| DomainError::invalid(el, format!("<{}> has no {name}=", el.name)))
}

fn opt(el: Option<&Element>, name: &str) -> Option<String> {
    el.and_then(|e| e.attr(name)).map(str::to_string)
}

/// Sets `child`'s attribute `name`, creating the child when the value is
/// set, and dropping the child when it ends up empty.
fn set_child_attr(el: &mut Element, child: &str, name: &str, value: Option<&str>, order: &[&str]) {
    match value {
        Some(v) => el.ensure_child(child, order).set_attr(name, v),
        None => {
            if let Some(c) = el.child_mut(child) {
                c.remove_attr(name);
                if c.attrs.is_empty() && c.children.is_empty() {
                    el.remove_children(child);
                }
            }
        }
    }
}

/// A flag child such as `<readonly/>`.
fn set_flag(el: &mut Element, child: &str, on: bool, order: &[&str]) {
    if on {
        el.ensure_child(child, order);
    } else {
        el.remove_children(child);
    }
}

/// A device's `<address>`, which must say its type.
fn read_address(el: &Element) -> Result<Option<Address>, DomainError> {
    let Some(a) = el.child("address") else {
        return Ok(None);
    };
    required(a, "type")?;
    Address::from_element(a).map(Some)
}

fn write_address(el: &mut Element, address: &Option<Address>, order: &[&str]) {
    match address {
        Some(a) => a.write_into(el.ensure_child("address", order)),
        None => el.remove_children("address"),
    }
}

/// `<address type='pci' domain= bus= slot= function=/>`,
/// `<address type='drive' controller= bus= target= unit=/>` and the like.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Address {
    /// `pci`, `drive`, `virtio-serial`, `usb`, `ccid`, `isa`…; empty for
    /// the untyped PCI address inside `<hostdev><source>`.
    pub kind: String,
    pub domain: Option<u32>,
    pub bus: Option<u32>,
    pub slot: Option<u32>,
    pub function: Option<u32>,
    pub multifunction: Option<bool>,
    pub controller: Option<u32>,
    pub target: Option<u32>,
    pub unit: Option<u32>,
    pub port: Option<u32>,
}

impl Address {
    /// A PCI address on bus 0 of domain 0.
    pub fn pci(slot: u32, function: u32) -> Self {
        Address {
            kind: "pci".into(),
            domain: Some(0),
            bus: Some(0),
            slot: Some(slot),
            function: Some(function),
            ..Self::default()
        }
    }

    /// An IDE/SCSI drive address.
    pub fn drive(controller: u32, bus: u32, unit: u32) -> Self {
        Address {
            kind: "drive".into(),
            controller: Some(controller),
            bus: Some(bus),
            target: Some(0),
            unit: Some(unit),
            ..Self::default()
        }
    }

    pub fn from_element(el: &Element) -> Result<Self, DomainError> {
        Ok(Address {
            kind: el.attr("type").unwrap_or_default().to_string(),
            domain: attr_num(el, "domain")?,
            bus: attr_num(el, "bus")?,
            slot: attr_num(el, "slot")?,
            function: attr_num(el, "function")?,
            multifunction: attr_bool(el, "multifunction")?,
            controller: attr_num(el, "controller")?,
            target: attr_num(el, "target")?,
            unit: attr_num(el, "unit")?,
            port: attr_num(el, "port")?,
        })
    }

    /// Writes the attributes in libvirt's order; PCI numbers in its hex widths.
    pub fn write_into(&self, el: &mut Element) {
        if !self.kind.is_empty() {
            el.set_attr("type", self.kind.as_str());
        }
        let pci = self.kind == "pci" || self.kind.is_empty();
        let hex = |w| if pci { Some(w) } else { None };
        set_attr_num(el, "domain", self.domain.map(u64::from), hex(4));
        set_attr_num(el, "controller", self.controller.map(u64::from), None);
        set_attr_num(el, "bus", self.bus.map(u64::from), hex(2));
        set_attr_num(el, "slot", self.slot.map(u64::from), hex(2));
        set_attr_num(el, "function", self.function.map(u64::from), hex(1));
        el.set_opt_attr(
            "multifunction",
            self.multifunction.map(|m| if m { "on" } else { "off" }),
        );
        set_attr_num(el, "target", self.target.map(u64::from), None);
        set_attr_num(el, "unit", self.unit.map(u64::from), None);
        set_attr_num(el, "port", self.port.map(u64::from), None);
    }
}

const DISK_ORDER: &[&str] = &[
    "driver",
    "source",
    "backingStore",
    "target",
    "iotune",
    "boot",
    "readonly",
    "shareable",
    "transient",
    "serial",
    "wwn",
    "vendor",
    "product",
    "encryption",
    "alias",
    "address",
];

/// `<disk type='file' device='disk'>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Disk {
    /// `file`, `block`, `network`, `volume`, `dir`…
    pub disk_type: String,
    /// `disk`, `cdrom`, `floppy` or `lun`.
    pub device: String,
    /// `<driver name=>`: `qemu`.
    pub driver_name: Option<String>,
    /// `<driver type=>`: the image format, `raw` or `qcow2`.
    pub driver_type: Option<String>,
    /// `<driver cache=>`: `none`, `writeback`…
    pub driver_cache: Option<String>,
    /// `<driver discard=>`: `unmap` or `ignore`.
    pub driver_discard: Option<String>,
    /// `<source file=>` for file disks, `<source dev=>` for block disks;
    /// `None` is an empty drive.
    pub source: Option<String>,
    pub target_dev: String,
    /// `ide`, `sata`, `scsi`, `virtio`, `usb`, `fdc`…
    pub target_bus: Option<String>,
    pub readonly: bool,
    pub shareable: bool,
    /// `<boot order=>`.
    pub boot_order: Option<u32>,
    pub address: Option<Address>,
}

impl Disk {
    /// A file-backed disk.
    pub fn file(device: &str, path: &str, target_dev: &str, bus: &str) -> Self {
        Disk {
            disk_type: "file".into(),
            device: device.into(),
            driver_name: Some("qemu".into()),
            driver_type: Some("raw".into()),
            driver_cache: None,
            driver_discard: None,
            source: Some(path.into()),
            target_dev: target_dev.into(),
            target_bus: Some(bus.into()),
            readonly: device == "cdrom",
            shareable: false,
            boot_order: None,
            address: None,
        }
    }

    /// The attribute of `<source>` that holds the path for this disk type.
    fn source_attr(&self) -> Option<&'static str> {
        source_attr(&self.disk_type)
    }
}

fn source_attr(disk_type: &str) -> Option<&'static str> {
    match disk_type {
        "file" => Some("file"),
        "block" => Some("dev"),
        "dir" => Some("dir"),
        _ => None,
    }
}

impl DeviceXml for Disk {
    const TAG: &'static str = "disk";

    fn from_element(el: &Element) -> Result<Self, DomainError> {
        let disk_type = el.attr("type").unwrap_or("file").to_string();
        let driver = el.child("driver");
        let target = el
            .child("target")
            .ok_or_else(|| DomainError::invalid(el, "<disk> has no <target>"))?;
        let source = source_attr(&disk_type).and_then(|a| opt(el.child("source"), a));
        Ok(Disk {
            device: el.attr("device").unwrap_or("disk").to_string(),
            disk_type,
            driver_name: opt(driver, "name"),
            driver_type: opt(driver, "type"),
            driver_cache: opt(driver, "cache"),
            driver_discard: opt(driver, "discard"),
            source,
            target_dev: required(target, "dev")?,
            target_bus: opt(Some(target), "bus"),
            readonly: el.child("readonly").is_some(),
            shareable: el.child("shareable").is_some(),
            boot_order: match el.child("boot") {
                Some(b) => {
                    Some(attr_num(b, "order")?.ok_or_else(|| {
                        DomainError::invalid(b, "<boot> in a device needs order=")
                    })?)
                }
                None => None,
            },
            address: read_address(el)?,
        })
    }

    fn write_into(&self, el: &mut Element) {
        el.set_attr("type", self.disk_type.as_str());
        el.set_attr("device", self.device.as_str());
        set_child_attr(
            el,
            "driver",
            "name",
            self.driver_name.as_deref(),
            DISK_ORDER,
        );
        set_child_attr(
            el,
            "driver",
            "type",
            self.driver_type.as_deref(),
            DISK_ORDER,
        );
        set_child_attr(
            el,
            "driver",
            "cache",
            self.driver_cache.as_deref(),
            DISK_ORDER,
        );
        set_child_attr(
            el,
            "driver",
            "discard",
            self.driver_discard.as_deref(),
            DISK_ORDER,
        );
        if let Some(attr) = self.source_attr() {
            set_child_attr(el, "source", attr, self.source.as_deref(), DISK_ORDER);
        }
        let target = el.ensure_child("target", DISK_ORDER);
        target.set_attr("dev", self.target_dev.as_str());
        target.set_opt_attr("bus", self.target_bus.as_deref());
        match self.boot_order {
            Some(order) => set_attr_num(
                el.ensure_child("boot", DISK_ORDER),
                "order",
                Some(order.into()),
                None,
            ),
            None => el.remove_children("boot"),
        }
        set_flag(el, "readonly", self.readonly, DISK_ORDER);
        set_flag(el, "shareable", self.shareable, DISK_ORDER);
        write_address(el, &self.address, DISK_ORDER);
    }
}

/// `<controller type='usb' index='0' model='ich9-ehci1'>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Controller {
    /// `ide`, `usb`, `pci`, `virtio-serial`, `scsi`, `sata`…
    pub kind: String,
    pub index: Option<u32>,
    pub model: Option<String>,
    pub address: Option<Address>,
}

impl DeviceXml for Controller {
    const TAG: &'static str = "controller";

    fn from_element(el: &Element) -> Result<Self, DomainError> {
        Ok(Controller {
            kind: required(el, "type")?,
            index: attr_num(el, "index")?,
            model: el.attr("model").map(str::to_string),
            address: read_address(el)?,
        })
    }

    fn write_into(&self, el: &mut Element) {
        el.set_attr("type", self.kind.as_str());
        set_attr_num(el, "index", self.index.map(u64::from), None);
        el.set_opt_attr("model", self.model.as_deref());
        write_address(
            el,
            &self.address,
            &["driver", "master", "target", "alias", "address"],
        );
    }
}

const INTERFACE_ORDER: &[&str] = &[
    "mac",
    "source",
    "vlan",
    "virtualport",
    "ip",
    "route",
    "script",
    "downscript",
    "backenddomain",
    "target",
    "guest",
    "model",
    "driver",
    "backend",
    "filterref",
    "tune",
    "teaming",
    "link",
    "mtu",
    "coalesce",
    "boot",
    "alias",
    "address",
];

/// `<interface type='network'>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `network`, `bridge`, `user`, `direct`, `ethernet`…
    pub kind: String,
    /// `<mac address=>`.
    pub mac: Option<String>,
    /// `<source network=>` (type network).
    pub source_network: Option<String>,
    /// `<source bridge=>` (type bridge).
    pub source_bridge: Option<String>,
    /// `<model type=>`: `virtio`, `e1000`, `rtl8139`…
    pub model: Option<String>,
    pub address: Option<Address>,
}

impl Interface {
    /// A NIC on libvirt network `network` (`default` is NAT).
    pub fn network(network: &str, mac: &str) -> Self {
        Interface {
            kind: "network".into(),
            mac: Some(mac.into()),
            source_network: Some(network.into()),
            source_bridge: None,
            model: Some("virtio".into()),
            address: None,
        }
    }
}

impl DeviceXml for Interface {
    const TAG: &'static str = "interface";

    fn from_element(el: &Element) -> Result<Self, DomainError> {
        let source = el.child("source");
        Ok(Interface {
            kind: required(el, "type")?,
            mac: opt(el.child("mac"), "address"),
            source_network: opt(source, "network"),
            source_bridge: opt(source, "bridge"),
            model: opt(el.child("model"), "type"),
            address: read_address(el)?,
        })
    }

    fn write_into(&self, el: &mut Element) {
        el.set_attr("type", self.kind.as_str());
        set_child_attr(el, "mac", "address", self.mac.as_deref(), INTERFACE_ORDER);
        set_child_attr(
            el,
            "source",
            "network",
            self.source_network.as_deref(),
            INTERFACE_ORDER,
        );
        set_child_attr(
            el,
            "source",
            "bridge",
            self.source_bridge.as_deref(),
            INTERFACE_ORDER,
        );
        set_child_attr(el, "model", "type", self.model.as_deref(), INTERFACE_ORDER);
        write_address(el, &self.address, INTERFACE_ORDER);
    }
}

/// A character device: what `<serial>` and `<console>` hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharDevice {
    /// `pty`, `file`, `stdio`, `tcp`, `unix`, `null`…
    pub kind: String,
    /// `<source path=>` (file, unix, dev).
    pub source_path: Option<String>,
    /// `<target type=>`: `isa-serial`, or `serial`/`virtio` for a console.
    pub target_type: Option<String>,
    /// `<target port=>`.
    pub target_port: Option<u32>,
}

impl CharDevice {
    /// A pseudo-terminal on port `port`.
    pub fn pty(port: u32) -> Self {
        CharDevice {
            kind: "pty".into(),
            source_path: None,
            target_type: None,
            target_port: Some(port),
        }
    }

    fn read(el: &Element) -> Result<Self, DomainError> {
        let target = el.child("target");
        Ok(CharDevice {
            kind: el.attr("type").unwrap_or("pty").to_string(),
            source_path: opt(el.child("source"), "path"),
            target_type: opt(target, "type"),
            target_port: match target {
                Some(t) => attr_num(t, "port")?,
                None => None,
            },
        })
    }

    fn write(&self, el: &mut Element) {
        const ORDER: &[&str] = &["source", "protocol", "log", "target", "alias", "address"];
        el.set_attr("type", self.kind.as_str());
        set_child_attr(el, "source", "path", self.source_path.as_deref(), ORDER);
        set_child_attr(el, "target", "type", self.target_type.as_deref(), ORDER);
        match self.target_port {
            Some(port) => set_attr_num(
                el.ensure_child("target", ORDER),
                "port",
                Some(port.into()),
                None,
            ),
            None => set_child_attr(el, "target", "port", None, ORDER),
        }
    }
}

/// `<serial type='pty'><target port='0'/></serial>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Serial(pub CharDevice);

impl DeviceXml for Serial {
    const TAG: &'static str = "serial";
    fn from_element(el: &Element) -> Result<Self, DomainError> {
        CharDevice::read(el).map(Serial)
    }
    fn write_into(&self, el: &mut Element) {
        self.0.write(el)
    }
}

/// `<console type='pty'><target type='serial' port='0'/></console>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Console(pub CharDevice);

impl DeviceXml for Console {
    const TAG: &'static str = "console";
    fn from_element(el: &Element) -> Result<Self, DomainError> {
        CharDevice::read(el).map(Console)
    }
    fn write_into(&self, el: &mut Element) {
        self.0.write(el)
    }
}

/// `<input type='tablet' bus='usb'/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Input {
    /// `mouse`, `tablet`, `keyboard`…
    pub kind: String,
    /// `ps2`, `usb`, `virtio`…
    pub bus: Option<String>,
}

impl DeviceXml for Input {
    const TAG: &'static str = "input";
    fn from_element(el: &Element) -> Result<Self, DomainError> {
        Ok(Input {
            kind: required(el, "type")?,
            bus: el.attr("bus").map(str::to_string),
        })
    }
    fn write_into(&self, el: &mut Element) {
        el.set_attr("type", self.kind.as_str());
        el.set_opt_attr("bus", self.bus.as_deref());
    }
}

/// `<listen type='address' address='0.0.0.0'/>` under `<graphics>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphicsListen {
    /// `address`, `network`, `socket` or `none`.
    pub kind: String,
    pub address: Option<String>,
    pub network: Option<String>,
}

/// `<graphics type='vnc' port='-1' autoport='yes' listen= passwd=>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Graphics {
    /// `vnc`, `spice`, `sdl`…
    pub kind: String,
    /// The TCP port; -1 asks for one to be picked.
    pub port: Option<i32>,
    pub autoport: Option<bool>,
    /// The `listen=` attribute (libvirt mirrors the first `<listen>` here).
    pub listen: Option<String>,
    pub passwd: Option<String>,
    pub listens: Vec<GraphicsListen>,
}

impl Graphics {
    /// VNC on a port picked at start, listening on localhost.
    pub fn vnc() -> Self {
        Graphics {
            kind: "vnc".into(),
            port: Some(-1),
            autoport: Some(true),
            listen: Some("127.0.0.1".into()),
            passwd: None,
            listens: vec![GraphicsListen {
                kind: "address".into(),
                address: Some("127.0.0.1".into()),
                network: None,
            }],
        }
    }
}

impl DeviceXml for Graphics {
    const TAG: &'static str = "graphics";

    fn from_element(el: &Element) -> Result<Self, DomainError> {
        let port = match el.attr("port") {
            None => None,
            Some(p) => Some(
                p.trim()
                    .parse::<i32>()
                    .ok()
                    .filter(|p| (-1..=65535).contains(p))
                    .ok_or_else(|| {
                        DomainError::invalid(
                            el,
                            format!("<graphics port='{p}'>: not a TCP port (or -1)"),
                        )
                    })?,
            ),
        };
        let mut listens = Vec::new();
        for l in el.children_named("listen") {
            listens.push(GraphicsListen {
                kind: required(l, "type")?,
                address: l.attr("address").map(str::to_string),
                network: l.attr("network").map(str::to_string),
            });
        }
        Ok(Graphics {
            kind: required(el, "type")?,
            port,
            autoport: attr_bool(el, "autoport")?,
            listen: el.attr("listen").map(str::to_string),
            passwd: el.attr("passwd").map(str::to_string),
            listens,
        })
    }

    fn write_into(&self, el: &mut Element) {
        el.set_attr("type", self.kind.as_str());
        match self.port {
            Some(p) if el.attr("port").and_then(|a| a.trim().parse().ok()) == Some(p) => {}
            Some(p) => el.set_attr("port", p.to_string()),
            None => el.remove_attr("port"),
        }
        el.set_opt_attr("autoport", self.autoport.map(yes_no));
        el.set_opt_attr("listen", self.listen.as_deref());
        el.set_opt_attr("passwd", self.passwd.as_deref());
        // Update the existing <listen> children in place, then add or drop.
        let mut old: Vec<Element> = el.children_named("listen").cloned().collect();
        old.reverse();
        el.remove_children("listen");
        for listen in &self.listens {
            let mut l = old.pop().unwrap_or_else(|| Element::new("listen"));
            l.set_attr("type", listen.kind.as_str());
            l.set_opt_attr("address", listen.address.as_deref());
            l.set_opt_attr("network", listen.network.as_deref());
            el.insert_child(
                l,
                &[
                    "listen",
                    "channel",
                    "image",
                    "streaming",
                    "clipboard",
                    "mouse",
                    "filetransfer",
                    "gl",
                    "audio",
                ],
            );
        }
    }
}

/// `<video><model type='vga' vram='16384' heads='1'/></video>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Video {
    /// `vga`, `cirrus`, `qxl`, `virtio`, `bochs`, `none`…
    pub model: Option<String>,
    /// Video RAM in KiB.
    pub vram: Option<u32>,
    pub heads: Option<u32>,
    pub address: Option<Address>,
}

impl Video {
    /// The standard VGA (Bochs VBE) Vireo emulates.
    pub fn vga() -> Self {
        Video {
            model: Some("vga".into()),
            vram: Some(16384),
            heads: Some(1),
            address: None,
        }
    }
}

impl DeviceXml for Video {
    const TAG: &'static str = "video";

    fn from_element(el: &Element) -> Result<Self, DomainError> {
        let model = el.child("model");
        Ok(Video {
            model: opt(model, "type"),
            vram: match model {
                Some(m) => attr_num(m, "vram")?,
                None => None,
            },
            heads: match model {
                Some(m) => attr_num(m, "heads")?,
                None => None,
            },
            address: read_address(el)?,
        })
    }

    fn write_into(&self, el: &mut Element) {
        const ORDER: &[&str] = &["driver", "model", "alias", "address"];
        if self.model.is_some() || self.vram.is_some() || self.heads.is_some() {
            let m = el.ensure_child("model", ORDER);
            m.set_opt_attr("type", self.model.as_deref());
            set_attr_num(m, "vram", self.vram.map(u64::from), None);
            set_attr_num(m, "heads", self.heads.map(u64::from), None);
            if m.attr("type").is_some() {
                // libvirt writes type first.
                let pos = m.attrs.iter().position(|(n, _)| n == "type").unwrap_or(0);
                let t = m.attrs.remove(pos);
                m.attrs.insert(0, t);
            }
        }
        write_address(el, &self.address, ORDER);
    }
}

/// `<sound model='ich6'>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sound {
    pub model: String,
    pub address: Option<Address>,
}

impl DeviceXml for Sound {
    const TAG: &'static str = "sound";
    fn from_element(el: &Element) -> Result<Self, DomainError> {
        Ok(Sound {
            model: required(el, "model")?,
            address: read_address(el)?,
        })
    }
    fn write_into(&self, el: &mut Element) {
        el.set_attr("model", self.model.as_str());
        write_address(el, &self.address, &["codec", "audio", "alias", "address"]);
    }
}

/// `<memballoon model='virtio'>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Memballoon {
    /// `virtio` or `none`.
    pub model: String,
    pub address: Option<Address>,
}

impl DeviceXml for Memballoon {
    const TAG: &'static str = "memballoon";
    fn from_element(el: &Element) -> Result<Self, DomainError> {
        Ok(Memballoon {
            model: required(el, "model")?,
            address: read_address(el)?,
        })
    }
    fn write_into(&self, el: &mut Element) {
        el.set_attr("model", self.model.as_str());
        write_address(el, &self.address, &["alias", "address", "stats", "driver"]);
    }
}

/// `<hostdev mode='subsystem' type='usb'>`: a host device to pass through.
/// Vireo keeps these in the definition but never passes devices through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hostdev {
    /// `subsystem` or `capabilities`.
    pub mode: String,
    /// `usb`, `pci`, `scsi`, `mdev`…
    pub kind: String,
    pub managed: Option<bool>,
    /// USB vendor and product ids.
    pub usb_vendor: Option<u16>,
    pub usb_product: Option<u16>,
    /// A PCI device's host address.
    pub pci_address: Option<Address>,
}

impl Hostdev {
    /// How a user would recognise the device: `USB host device 0951:1665`.
    pub fn describe(&self) -> String {
        match (self.kind.as_str(), self.usb_vendor, self.usb_product) {
            ("usb", Some(v), Some(p)) => format!("USB host device {v:04x}:{p:04x}"),
            ("usb", _, _) => "USB host device".to_string(),
            ("pci", _, _) => match &self.pci_address {
                Some(a) => format!(
                    "PCI host device {:04x}:{:02x}:{:02x}.{:x}",
                    a.domain.unwrap_or(0),
                    a.bus.unwrap_or(0),
                    a.slot.unwrap_or(0),
                    a.function.unwrap_or(0)
                ),
                None => "PCI host device".to_string(),
            },
            (kind, _, _) => format!("{} host device", kind.to_uppercase()),
        }
    }
}

impl DeviceXml for Hostdev {
    const TAG: &'static str = "hostdev";

    fn from_element(el: &Element) -> Result<Self, DomainError> {
        let source = el.child("source");
        let id = |child: &str| -> Result<Option<u16>, DomainError> {
            match source.and_then(|s| s.child(child)) {
                Some(c) => attr_num(c, "id"),
                None => Ok(None),
            }
        };
        Ok(Hostdev {
            mode: el.attr("mode").unwrap_or("subsystem").to_string(),
            kind: required(el, "type")?,
            managed: attr_bool(el, "managed")?,
            usb_vendor: id("vendor")?,
            usb_product: id("product")?,
            pci_address: match source.and_then(|s| s.child("address")) {
                Some(a) => Some(Address::from_element(a)?),
                None => None,
            },
        })
    }

    fn write_into(&self, el: &mut Element) {
        el.set_attr("mode", self.mode.as_str());
        el.set_attr("type", self.kind.as_str());
        el.set_opt_attr("managed", self.managed.map(yes_no));
        let source = el.ensure_child("source", &["source", "driver", "boot", "alias", "address"]);
        for (child, id) in [("vendor", self.usb_vendor), ("product", self.usb_product)] {
            match id {
                Some(id) => set_attr_num(
                    source.ensure_child(child, &["vendor", "product", "address"]),
                    "id",
                    Some(id.into()),
                    Some(4),
                ),
                None => source.remove_children(child),
            }
        }
        match &self.pci_address {
            Some(a) => {
                a.write_into(source.ensure_child("address", &["vendor", "product", "address"]))
            }
            None => {
                if self.kind == "pci" {
                    source.remove_children("address");
                }
            }
        }
    }
}
