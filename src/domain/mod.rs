//! libvirt domain XML (<https://libvirt.org/formatdomain.html>).
//!
//! A [`Domain`] is the definition as an ordered element tree
//! ([`xml::Element`]) with typed accessors and setters over it, the way
//! virt-manager's `virtinst` does it: what Vireo models is read and written
//! through typed values, and everything else (unknown elements, attributes,
//! namespaced `<metadata>`) is left as it was, so a definition read and
//! written back loses nothing.
//!
//! The files follow the schema's sections: this one has the general
//! metadata, memory, CPUs, features, clock and lifecycle actions; [`os`]
//! the boot configuration; [`devices`] the `<devices>` children;
//! [`validate`] the checks libvirt makes when a definition is defined;
//! [`builder`] new definitions (MACs, a virt-install-like builder). The
//! model knows no machine: what the VMM runs for a definition, and what
//! Vireo does not emulate, is [`crate::vm_config`].

pub mod builder;
pub mod devices;
pub mod os;
pub mod snapshot;
mod units;
pub mod validate;
pub mod xml;

use std::path::Path;

pub use builder::NewVm;
pub use devices::{
    Address, Console, Controller, DeviceXml, Disk, Graphics, GraphicsListen, Hostdev, Input,
    Interface, Memballoon, Serial, Sound, Video,
};
pub use os::{BootDevice, Loader, Os};
pub use units::{parse_memory, UnitError};
pub use xml::{Element, Node, Pos};

/// Where in the definition a problem is, when known.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct At(pub Option<Pos>);

impl std::fmt::Display for At {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(pos) => write!(f, "{pos}: "),
            None => Ok(()),
        }
    }
}

/// Errors reading a domain definition.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The text is not well-formed XML.
    #[error("malformed domain XML: line {line}, column {column}: {message}")]
    Syntax {
        line: u32,
        column: u32,
        message: String,
    },
    /// Well-formed XML that is not a valid definition; `message` names the element.
    #[error("invalid domain definition: {at}{message}")]
    Invalid { at: At, message: String },
}

impl DomainError {
    /// An error about `element`, located where it was read from.
    pub fn invalid(element: &Element, message: impl Into<String>) -> Self {
        DomainError::Invalid {
            at: At(element.pos),
            message: message.into(),
        }
    }

    /// An error about the definition as a whole.
    pub fn whole(message: impl Into<String>) -> Self {
        DomainError::Invalid {
            at: At(None),
            message: message.into(),
        }
    }
}

/// The order libvirt writes `<domain>`'s children in (`virDomainDefFormatInternal`);
/// new children are inserted where this puts them.
pub(crate) const DOMAIN_ORDER: &[&str] = &[
    "name",
    "uuid",
    "genid",
    "title",
    "description",
    "metadata",
    "maxMemory",
    "memory",
    "currentMemory",
    "blkiotune",
    "memtune",
    "memoryBacking",
    "vcpu",
    "vcpus",
    "iothreads",
    "iothreadids",
    "cputune",
    "numatune",
    "resource",
    "sysinfo",
    "bootloader",
    "bootloader_args",
    "os",
    "idmap",
    "features",
    "cpu",
    "clock",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "on_lockfailure",
    "pm",
    "perf",
    "devices",
    "seclabel",
];

/// libvirt's header on the definitions it stores (`virXMLSaveFile` callers),
/// with Vireo's command.
const STORED_HEADER: &str = "<!--\n\
WARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\n\
OVERWRITTEN AND LOST. Changes to this xml configuration should be made using:\n  \
vireo edit NAME\n\
or other application using the libvirt API.\n\
-->\n\n";

/// A domain definition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Domain {
    root: Element,
}

/// `<vcpu placement='static' current='1'>2</vcpu>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Vcpu {
    /// The maximum number of vCPUs.
    pub count: u32,
    /// `static` or `auto`.
    pub placement: Option<String>,
    /// How many are online at boot, when fewer than `count`.
    pub current: Option<u32>,
}

/// `<cpu><topology sockets= dies= cores= threads=/></cpu>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuTopology {
    pub sockets: u32,
    pub dies: Option<u32>,
    pub cores: u32,
    pub threads: u32,
}

/// `<clock offset='utc'>` with its `<timer>`s.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Clock {
    /// `utc`, `localtime`, `timezone` or `variable`.
    pub offset: Option<String>,
    pub timers: Vec<Timer>,
}

/// `<timer name='rtc' tickpolicy='catchup' present='yes'/>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timer {
    pub name: String,
    pub tickpolicy: Option<String>,
    pub present: Option<bool>,
}

/// The events `<on_poweroff>`, `<on_reboot>` and `<on_crash>` configure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LifecycleEvent {
    Poweroff,
    Reboot,
    Crash,
}

impl LifecycleEvent {
    pub fn element(self) -> &'static str {
        match self {
            LifecycleEvent::Poweroff => "on_poweroff",
            LifecycleEvent::Reboot => "on_reboot",
            LifecycleEvent::Crash => "on_crash",
        }
    }
}

impl Domain {
    /// Reads and validates a definition.
    pub fn parse(xml: &str) -> Result<Self, DomainError> {
        let domain = Self::from_element(Element::parse(xml)?)?;
        domain.validate()?;
        Ok(domain)
    }

    /// Reads and validates a definition file.
    pub fn load(path: &Path) -> Result<Self, DomainError> {
        let text = std::fs::read_to_string(path).map_err(|source| DomainError::Read {
            path: path.display().to_string(),
            source,
        })?;
        Self::parse(&text)
    }

    /// Wraps a `<domain>` element without validating it.
    pub fn from_element(root: Element) -> Result<Self, DomainError> {
        if root.name != "domain" {
            return Err(DomainError::invalid(
                &root,
                format!("the root element is <{}>, not <domain>", root.name),
            ));
        }
        Ok(Self { root })
    }

    /// A new, empty `<domain type='kvm'>`.
    pub fn new(name: &str) -> Self {
        let mut domain = Self {
            root: Element::new("domain").with_attr("type", "kvm"),
        };
        domain.set_name(name);
        domain
    }

    pub fn root(&self) -> &Element {
        &self.root
    }

    /// The tree, for edits the typed setters do not cover.
    pub fn root_mut(&mut self) -> &mut Element {
        &mut self.root
    }

    /// Checks the definition as libvirt would when defining it.
    pub fn validate(&self) -> Result<(), DomainError> {
        validate::validate(self)
    }

    /// The definition as `virsh dumpxml` prints it.
    pub fn to_xml(&self) -> String {
        self.root.to_xml()
    }

    /// The definition as stored on disk: `to_xml()` under libvirt's
    /// do-not-edit header.
    pub fn to_stored_xml(&self) -> String {
        let name = self.name().replace("--", "-\u{2010}");
        format!("{}{}", STORED_HEADER.replace("NAME", &name), self.to_xml())
    }

    /// `<domain type=>`: kvm, qemu… (Vireo runs them all on KVM).
    pub fn domain_type(&self) -> Option<&str> {
        self.root.attr("type")
    }

    pub fn name(&self) -> String {
        self.root.child_text("name").unwrap_or_default()
    }

    pub fn set_name(&mut self, name: &str) {
        self.root.set_child_text("name", Some(name), DOMAIN_ORDER);
    }

    pub fn uuid(&self) -> Option<String> {
        self.root.child_text("uuid")
    }

    pub fn set_uuid(&mut self, uuid: Option<&str>) {
        self.root.set_child_text("uuid", uuid, DOMAIN_ORDER);
    }

    pub fn title(&self) -> Option<String> {
        self.root.child("title").map(Element::text)
    }

    pub fn set_title(&mut self, title: Option<&str>) {
        self.root.set_child_text("title", title, DOMAIN_ORDER);
    }

    pub fn description(&self) -> Option<String> {
        self.root.child("description").map(Element::text)
    }

    pub fn set_description(&mut self, description: Option<&str>) {
        self.root
            .set_child_text("description", description, DOMAIN_ORDER);
    }

    /// The memory at boot in bytes: the sum of the `<cpu><numa>` cells'
    /// memory when they give some (libvirt lets the cells decide), else
    /// `<memory>`.
    pub fn memory(&self) -> Result<Option<u64>, DomainError> {
        match self.numa_memory()? {
            Some(total) if total > 0 => Ok(Some(total)),
            _ => scaled(&self.root, "memory"),
        }
    }

    /// The memory of the `<cpu><numa><cell memory= unit=>` cells together
    /// (KiB unless `unit` says), or `None` without cells.
    pub fn numa_memory(&self) -> Result<Option<u64>, DomainError> {
        let Some(numa) = self.root.child("cpu").and_then(|cpu| cpu.child("numa")) else {
            return Ok(None);
        };
        let mut total: Option<u64> = None;
        for cell in numa.children_named("cell") {
            let Some(value) = cell.attr("memory") else {
                continue;
            };
            let bytes = parse_memory(value, cell.attr("unit").or(Some("KiB")))
                .map_err(|e| DomainError::invalid(cell, format!("<cell memory=>: {e}")))?;
            total = Some(total.unwrap_or(0).checked_add(bytes).ok_or_else(|| {
                DomainError::invalid(cell, "<numa> cells add up to too much memory")
            })?);
        }
        Ok(total)
    }

    /// Writes `<memory>` as libvirt does when the NUMA cells give the
    /// memory: their sum. Returns whether it changed.
    pub fn fill_memory_from_numa(&mut self) -> Result<bool, DomainError> {
        match self.numa_memory()? {
            Some(total) if total > 0 && scaled(&self.root, "memory")? != Some(total) => {
                self.set_memory(total);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// Sets `<memory>`; written in KiB as libvirt does, unless the value
    /// there already says the same amount.
    pub fn set_memory(&mut self, bytes: u64) {
        set_scaled(&mut self.root, "memory", bytes);
    }

    /// `<currentMemory>` in bytes.
    pub fn current_memory(&self) -> Result<Option<u64>, DomainError> {
        scaled(&self.root, "currentMemory")
    }

    pub fn set_current_memory(&mut self, bytes: Option<u64>) {
        match bytes {
            Some(b) => set_scaled(&mut self.root, "currentMemory", b),
            None => self.root.remove_children("currentMemory"),
        }
    }

    /// `<vcpu>`; one vCPU when it is missing, as libvirt defaults.
    pub fn vcpu(&self) -> Result<Vcpu, DomainError> {
        let Some(el) = self.root.child("vcpu") else {
            return Ok(Vcpu {
                count: 1,
                placement: None,
                current: None,
            });
        };
        Ok(Vcpu {
            count: text_num(el)?,
            placement: el.attr("placement").map(str::to_string),
            current: attr_num(el, "current")?,
        })
    }

    pub fn set_vcpu(&mut self, vcpu: &Vcpu) {
        let el = self.root.ensure_child("vcpu", DOMAIN_ORDER);
        el.set_opt_attr("placement", vcpu.placement.as_deref());
        el.set_opt_attr("current", vcpu.current.map(|c| c.to_string()));
        if text_num::<u32>(el).ok() != Some(vcpu.count) {
            el.set_text(vcpu.count.to_string());
        }
    }

    /// `<cpu><topology>`, if given.
    pub fn cpu_topology(&self) -> Result<Option<CpuTopology>, DomainError> {
        let Some(el) = self.root.child("cpu").and_then(|c| c.child("topology")) else {
            return Ok(None);
        };
        let need = |name: &str| -> Result<u32, DomainError> {
            attr_num(el, name)?
                .ok_or_else(|| DomainError::invalid(el, format!("<topology> has no {name}=")))
        };
        Ok(Some(CpuTopology {
            sockets: need("sockets")?,
            dies: attr_num(el, "dies")?,
            cores: need("cores")?,
            threads: need("threads")?,
        }))
    }

    pub fn set_cpu_topology(&mut self, topology: Option<&CpuTopology>) {
        match topology {
            Some(t) => {
                let cpu = self.root.ensure_child("cpu", DOMAIN_ORDER);
                let el = cpu.ensure_child("topology", &["model", "vendor", "topology"]);
                el.set_attr("sockets", t.sockets.to_string());
                el.set_opt_attr("dies", t.dies.map(|d| d.to_string()));
                el.set_attr("cores", t.cores.to_string());
                el.set_attr("threads", t.threads.to_string());
            }
            None => {
                if let Some(cpu) = self.root.child_mut("cpu") {
                    cpu.remove_children("topology");
                }
            }
        }
    }

    /// The names of the enabled `<features>` (`acpi`, `apic`, `pae`…).
    pub fn features(&self) -> Vec<String> {
        self.root
            .child("features")
            .map(|f| f.elements().map(|e| e.name.clone()).collect())
            .unwrap_or_default()
    }

    /// Turns a simple feature (`<acpi/>`) on or off.
    pub fn set_feature(&mut self, name: &str, on: bool) {
        if on {
            self.root
                .ensure_child("features", DOMAIN_ORDER)
                .ensure_child(name, FEATURE_ORDER);
        } else if let Some(features) = self.root.child_mut("features") {
            features.remove_children(name);
        }
    }

    pub fn clock(&self) -> Result<Clock, DomainError> {
        let Some(el) = self.root.child("clock") else {
            return Ok(Clock::default());
        };
        let mut timers = Vec::new();
        for timer in el.children_named("timer") {
            timers.push(Timer {
                name: timer
                    .attr("name")
                    .ok_or_else(|| DomainError::invalid(timer, "<timer> has no name="))?
                    .to_string(),
                tickpolicy: timer.attr("tickpolicy").map(str::to_string),
                present: attr_bool(timer, "present")?,
            });
        }
        Ok(Clock {
            offset: el.attr("offset").map(str::to_string),
            timers,
        })
    }

    pub fn set_clock(&mut self, clock: &Clock) {
        let el = self.root.ensure_child("clock", DOMAIN_ORDER);
        el.set_opt_attr("offset", clock.offset.as_deref());
        let mut old: Vec<Element> = el.children_named("timer").cloned().collect();
        el.remove_children("timer");
        for timer in &clock.timers {
            let mut t = match old.iter().position(|o| o.attr("name") == Some(&timer.name)) {
                Some(i) => old.remove(i),
                None => Element::new("timer"),
            };
            t.set_attr("name", timer.name.as_str());
            t.set_opt_attr("tickpolicy", timer.tickpolicy.as_deref());
            t.set_opt_attr("present", timer.present.map(yes_no));
            el.insert_child(t, &["timer"]);
        }
    }

    /// The action for a lifecycle event as written (`destroy`, `restart`…).
    pub fn lifecycle(&self, event: LifecycleEvent) -> Option<String> {
        self.root.child_text(event.element())
    }

    pub fn set_lifecycle(&mut self, event: LifecycleEvent, action: Option<&str>) {
        self.root
            .set_child_text(event.element(), action, DOMAIN_ORDER);
    }

    /// `<devices><emulator>`: a path to QEMU that Vireo does not use.
    pub fn emulator(&self) -> Option<String> {
        self.root.child("devices")?.child_text("emulator")
    }

    /// The `<devices>` element, if any.
    pub fn devices_element(&self) -> Option<&Element> {
        self.root.child("devices")
    }

    /// Every device of one kind, in document order.
    pub fn devices<T: DeviceXml>(&self) -> Result<Vec<T>, DomainError> {
        self.root
            .child("devices")
            .map(|d| d.children_named(T::TAG).map(T::from_element).collect())
            .unwrap_or_else(|| Ok(Vec::new()))
    }

    /// Appends a device after the others of its kind.
    pub fn add_device<T: DeviceXml>(&mut self, device: &T) {
        self.root
            .ensure_child("devices", DOMAIN_ORDER)
            .insert_child(device.to_element(), devices::DEVICES_ORDER);
    }

    /// Rewrites the `index`th device of its kind, keeping what `T` does not
    /// model. Returns false when there is no such device.
    pub fn update_device<T: DeviceXml>(&mut self, index: usize, device: &T) -> bool {
        let Some(devs) = self.root.child_mut("devices") else {
            return false;
        };
        match devs.elements_mut().filter(|e| e.name == T::TAG).nth(index) {
            Some(el) => {
                device.write_into(el);
                true
            }
            None => false,
        }
    }

    /// Removes the `index`th device of kind `T`.
    pub fn remove_device<T: DeviceXml>(&mut self, index: usize) -> bool {
        let Some(devs) = self.root.child_mut("devices") else {
            return false;
        };
        let position = devs
            .children
            .iter()
            .enumerate()
            .filter(|(_, n)| matches!(n, Node::Element(e) if e.name == T::TAG))
            .nth(index)
            .map(|(i, _)| i);
        match position {
            Some(i) => {
                devs.children.remove(i);
                true
            }
            None => false,
        }
    }

    pub fn disks(&self) -> Result<Vec<Disk>, DomainError> {
        self.devices()
    }

    /// The disk whose `<target dev=>` is `target`.
    pub fn disk(&self, target: &str) -> Result<Option<(usize, Disk)>, DomainError> {
        Ok(self
            .disks()?
            .into_iter()
            .enumerate()
            .find(|(_, d)| d.target_dev == target))
    }

    /// Removes the disk with `<target dev=target>` (`virsh detach-disk`).
    pub fn remove_disk(&mut self, target: &str) -> Result<bool, DomainError> {
        Ok(match self.disk(target)? {
            Some((i, _)) => self.remove_device::<Disk>(i),
            None => false,
        })
    }

    pub fn interfaces(&self) -> Result<Vec<Interface>, DomainError> {
        self.devices()
    }

    pub fn graphics(&self) -> Result<Vec<Graphics>, DomainError> {
        self.devices()
    }
}

/// Where `<features>` children go (libvirt's `virDomainFeature` order).
const FEATURE_ORDER: &[&str] = &[
    "acpi",
    "apic",
    "pae",
    "hap",
    "viridian",
    "privnet",
    "hyperv",
    "kvm",
    "pvspinlock",
    "capabilities",
    "pmu",
    "vmport",
    "gic",
    "smm",
    "ioapic",
];

pub(crate) fn yes_no(on: bool) -> &'static str {
    if on {
        "yes"
    } else {
        "no"
    }
}

/// A whole number, decimal or `0x` hexadecimal (PCI addresses use both).
pub(crate) fn parse_number(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x").or_else(|| text.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

/// Attribute `name` of `el` as a number; an error names the element.
pub(crate) fn attr_num<T: TryFrom<u64>>(
    el: &Element,
    name: &str,
) -> Result<Option<T>, DomainError> {
    let Some(value) = el.attr(name) else {
        return Ok(None);
    };
    parse_number(value)
        .and_then(|n| T::try_from(n).ok())
        .map(Some)
        .ok_or_else(|| {
            DomainError::invalid(
                el,
                format!(
                    "<{} {name}='{value}'>: '{value}' is not a valid number",
                    el.name
                ),
            )
        })
}

/// The element's text as a number.
pub(crate) fn text_num<T: TryFrom<u64>>(el: &Element) -> Result<T, DomainError> {
    let text = el.text();
    parse_number(&text)
        .and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| {
            DomainError::invalid(
                el,
                format!("<{}>: '{}' is not a valid number", el.name, text.trim()),
            )
        })
}

/// A yes/no (or on/off) attribute.
pub(crate) fn attr_bool(el: &Element, name: &str) -> Result<Option<bool>, DomainError> {
    match el.attr(name) {
        None => Ok(None),
        Some("yes") | Some("on") => Ok(Some(true)),
        Some("no") | Some("off") => Ok(Some(false)),
        Some(other) => Err(DomainError::invalid(
            el,
            format!("<{} {name}='{other}'>: expected yes or no", el.name),
        )),
    }
}

/// Sets attribute `name` to a number unless it already holds that number
/// (so `0x05` stays `0x05`).
pub(crate) fn set_attr_num(
    el: &mut Element,
    name: &str,
    value: Option<u64>,
    hex_digits: Option<usize>,
) {
    match value {
        None => el.remove_attr(name),
        Some(v) => {
            if el.attr(name).and_then(parse_number) != Some(v) {
                let text = match hex_digits {
                    Some(width) => format!("0x{v:0width$x}"),
                    None => v.to_string(),
                };
                el.set_attr(name, text);
            }
        }
    }
}

/// A `<memory unit=>`-style child in bytes.
fn scaled(root: &Element, name: &str) -> Result<Option<u64>, DomainError> {
    let Some(el) = root.child(name) else {
        return Ok(None);
    };
    parse_memory(&el.text(), el.attr("unit"))
        .map(Some)
        .map_err(|e| DomainError::invalid(el, format!("<{name}>: {e}")))
}

fn set_scaled(root: &mut Element, name: &str, bytes: u64) {
    let el = root.ensure_child(name, DOMAIN_ORDER);
    if parse_memory(&el.text(), el.attr("unit")).ok() != Some(bytes) {
        el.set_attr("unit", "KiB");
        el.set_text(bytes.div_ceil(1024).to_string());
    }
}

#[cfg(test)]
mod tests;
