//! The checks libvirt makes when a definition is defined
//! (`virDomainDefParse` and `virDomainDefValidate`), for what Vireo models.
//! Each error names the element, says why, and where it is in the file.

use std::collections::HashMap;

use super::devices::{
    Console, Controller, Disk, Graphics, Hostdev, Input, Interface, Memballoon, Serial, Sound,
    Video,
};
use super::{attr_num, Domain, DomainError, Element, LifecycleEvent};

const DOMAIN_TYPES: &[&str] = &[
    "kvm", "qemu", "kqemu", "xen", "lxc", "uml", "openvz", "test", "vmware", "hyperv", "vbox",
    "phyp", "vz", "bhyve", "hvf", "ch",
];
const DISK_TYPES: &[&str] = &[
    "file",
    "block",
    "dir",
    "network",
    "volume",
    "nvme",
    "vhostuser",
];
const DISK_DEVICES: &[&str] = &["disk", "cdrom", "floppy", "lun"];
const DISK_BUSES: &[&str] = &[
    "ide", "fdc", "scsi", "virtio", "xen", "usb", "uml", "sata", "sd", "nvme",
];
const CACHE_MODES: &[&str] = &[
    "default",
    "none",
    "writethrough",
    "writeback",
    "directsync",
    "unsafe",
];
const CONTROLLER_TYPES: &[&str] = &[
    "ide",
    "fdc",
    "scsi",
    "sata",
    "virtio-serial",
    "ccid",
    "usb",
    "pci",
    "xenbus",
    "isa",
    "nvme",
];
const INTERFACE_TYPES: &[&str] = &[
    "user",
    "ethernet",
    "vhostuser",
    "server",
    "client",
    "mcast",
    "udp",
    "network",
    "bridge",
    "internal",
    "direct",
    "hostdev",
    "vdpa",
    "null",
    "vds",
];
const GRAPHICS_TYPES: &[&str] = &[
    "sdl",
    "vnc",
    "rdp",
    "desktop",
    "spice",
    "egl-headless",
    "dbus",
];
const VIDEO_MODELS: &[&str] = &[
    "vga",
    "cirrus",
    "vmvga",
    "xen",
    "vbox",
    "qxl",
    "parallels",
    "virtio",
    "gop",
    "none",
    "bochs",
    "ramfb",
];
const INPUT_TYPES: &[&str] = &["mouse", "tablet", "keyboard", "passthrough", "evdev"];
const INPUT_BUSES: &[&str] = &["ps2", "usb", "xen", "parallels", "virtio", "none"];
const SOUND_MODELS: &[&str] = &[
    "sb16", "es1370", "pcspk", "ac97", "ich6", "ich7", "ich9", "usb", "ics6000", "virtio",
];
const BALLOON_MODELS: &[&str] = &[
    "virtio",
    "virtio-transitional",
    "virtio-non-transitional",
    "xen",
    "none",
];
const CHAR_TYPES: &[&str] = &[
    "null",
    "vc",
    "pty",
    "dev",
    "file",
    "pipe",
    "stdio",
    "udp",
    "tcp",
    "unix",
    "spicevmc",
    "spiceport",
    "nmdm",
    "qemu-vdagent",
    "dbus",
];
const CLOCK_OFFSETS: &[&str] = &["utc", "localtime", "timezone", "variable", "absolute"];
const TIMER_NAMES: &[&str] = &[
    "platform",
    "pit",
    "rtc",
    "hpet",
    "tsc",
    "kvmclock",
    "hypervclock",
    "armvtimer",
];
const TICK_POLICIES: &[&str] = &["delay", "catchup", "merge", "discard"];
const LIFECYCLE_ACTIONS: &[&str] = &["destroy", "restart", "rename-restart", "preserve"];
const CRASH_ACTIONS: &[&str] = &[
    "destroy",
    "restart",
    "rename-restart",
    "preserve",
    "coredump-destroy",
    "coredump-restart",
];

fn one_of(el: &Element, what: &str, value: &str, allowed: &[&str]) -> Result<(), DomainError> {
    if allowed.contains(&value) {
        Ok(())
    } else {
        Err(DomainError::invalid(
            el,
            format!(
                "<{}>: unknown {what} '{value}' (one of {})",
                el.name,
                allowed.join(", ")
            ),
        ))
    }
}

/// Whether `text` is a UUID as libvirt reads one: 32 hex digits, with
/// dashes allowed between pairs (`virUUIDParse`).
pub fn is_uuid(text: &str) -> bool {
    let text = text.trim();
    let digits: Vec<char> = text.chars().filter(|&c| c != '-').collect();
    digits.len() == 32
        && digits.iter().all(char::is_ascii_hexdigit)
        && !text.starts_with('-')
        && !text.ends_with('-')
        && !text.contains("--")
}

/// Whether `text` is a unicast MAC address `xx:xx:xx:xx:xx:xx`.
pub fn is_unicast_mac(text: &str) -> Option<bool> {
    let parts: Vec<&str> = text.split(':').collect();
    if parts.len() != 6 {
        return None;
    }
    let mut bytes = [0u8; 6];
    for (b, p) in bytes.iter_mut().zip(&parts) {
        if p.is_empty() || p.len() > 2 {
            return None;
        }
        *b = u8::from_str_radix(p, 16).ok()?;
    }
    Some(bytes[0] & 1 == 0)
}

/// The `index`th `<devices>` child called `tag`, for locating errors.
fn nth<'a>(d: &'a Domain, tag: &'a str, index: usize) -> &'a Element {
    d.root()
        .child("devices")
        .and_then(|devs| devs.children_named(tag).nth(index))
        .unwrap_or_else(|| d.root())
}

pub(super) fn validate(d: &Domain) -> Result<(), DomainError> {
    let root = d.root();
    if let Some(kind) = root.attr("type") {
        one_of(root, "hypervisor type", kind, DOMAIN_TYPES)?;
    }

    let name = root
        .child("name")
        .ok_or_else(|| DomainError::whole("the domain has no <name>"))?;
    let name_text = name.text();
    if name_text.trim().is_empty() {
        return Err(DomainError::invalid(name, "the domain has an empty <name>"));
    }
    if name_text.contains('/') {
        return Err(DomainError::invalid(
            name,
            format!(
                "<name> '{}' contains '/', which a name cannot",
                name_text.trim()
            ),
        ));
    }
    if let Some(uuid) = root.child("uuid") {
        if !is_uuid(&uuid.text()) {
            return Err(DomainError::invalid(
                uuid,
                format!(
                    "<uuid> '{}' is not a UUID (32 hexadecimal digits as 8-4-4-4-12)",
                    uuid.text().trim()
                ),
            ));
        }
    }

    match d.memory()? {
        None => {
            return Err(DomainError::whole(
                "the domain has no <memory> (nor memory in its <numa> cells)",
            ))
        }
        Some(0) => {
            return Err(DomainError::invalid(
                root.child("memory").unwrap_or(root),
                "<memory> must be more than 0",
            ))
        }
        Some(_) => {}
    }
    d.current_memory()?;

    let vcpu = d.vcpu()?;
    let vcpu_el = root.child("vcpu").unwrap_or(root);
    if vcpu.count == 0 {
        return Err(DomainError::invalid(vcpu_el, "<vcpu> must be at least 1"));
    }
    if let Some(current) = vcpu.current {
        if current == 0 || current > vcpu.count {
            return Err(DomainError::invalid(
                vcpu_el,
                format!(
                    "<vcpu current='{current}'> must be between 1 and {}",
                    vcpu.count
                ),
            ));
        }
    }
    if let Some(placement) = &vcpu.placement {
        one_of(vcpu_el, "placement", placement, &["static", "auto"])?;
    }
    if let Some(t) = d.cpu_topology()? {
        let topo_el = root
            .child("cpu")
            .and_then(|c| c.child("topology"))
            .unwrap_or(root);
        let dies = t.dies.unwrap_or(1);
        let product =
            u64::from(t.sockets) * u64::from(dies) * u64::from(t.cores) * u64::from(t.threads);
        if product == 0 {
            return Err(DomainError::invalid(
                topo_el,
                "<topology> values must be at least 1",
            ));
        }
        if product != u64::from(vcpu.count) {
            return Err(DomainError::invalid(
                topo_el,
                format!(
                    "<topology> gives {product} vCPUs ({} sockets × {dies} dies × {} cores × {} threads) but <vcpu> is {}",
                    t.sockets, t.cores, t.threads, vcpu.count
                ),
            ));
        }
    }

    let os = d.os()?;
    if let (Some(os_type), Some(el)) = (&os.os_type, root.child("os").and_then(|o| o.child("type")))
    {
        if os_type != "hvm" {
            return Err(DomainError::invalid(
                el,
                format!("<type>{os_type}</type>: Vireo runs full virtual machines (hvm)"),
            ));
        }
    }

    if let Some(clock) = root.child("clock") {
        if let Some(offset) = clock.attr("offset") {
            one_of(clock, "clock offset", offset, CLOCK_OFFSETS)?;
        }
        for timer in clock.children_named("timer") {
            if let Some(name) = timer.attr("name") {
                one_of(timer, "timer", name, TIMER_NAMES)?;
            }
            if let Some(policy) = timer.attr("tickpolicy") {
                one_of(timer, "tickpolicy", policy, TICK_POLICIES)?;
            }
        }
        d.clock()?;
    }

    for event in [
        LifecycleEvent::Poweroff,
        LifecycleEvent::Reboot,
        LifecycleEvent::Crash,
    ] {
        if let Some(el) = root.child(event.element()) {
            let allowed = if event == LifecycleEvent::Crash {
                CRASH_ACTIONS
            } else {
                LIFECYCLE_ACTIONS
            };
            one_of(el, "action", el.text().trim(), allowed)?;
        }
    }

    validate_devices(d, !os.boot.is_empty())
}

fn validate_devices(d: &Domain, os_boot: bool) -> Result<(), DomainError> {
    // Unknown elements elsewhere are kept for the round trip, but an
    // unknown *device* is almost always a typo or a device from another
    // hypervisor: say so instead of silently running without it. The
    // list is libvirt's device elements (formatdomain "Devices"), plus
    // a few newer ones libvirt accepts.
    const EXTRA_DEVICES: &[&str] = &["nvram", "crypto", "pstore"];
    if let Some(devices) = d.root().child("devices") {
        for node in &devices.children {
            if let crate::domain::Node::Element(el) = node {
                let known = crate::domain::devices::DEVICES_ORDER.contains(&el.name.as_str())
                    || EXTRA_DEVICES.contains(&el.name.as_str());
                if !known {
                    return Err(DomainError::invalid(
                        el,
                        format!(
                            "<{}> is not a device libvirt knows (under <devices>)",
                            el.name
                        ),
                    ));
                }
            }
        }
    }
    let mut targets: HashMap<String, usize> = HashMap::new();
    let mut boot_orders: HashMap<u32, String> = HashMap::new();
    for (i, disk) in d.devices::<Disk>()?.iter().enumerate() {
        let el = nth(d, "disk", i);
        let target_el = el.child("target").unwrap_or(el);
        one_of(el, "disk type", &disk.disk_type, DISK_TYPES)?;
        one_of(el, "disk device", &disk.device, DISK_DEVICES)?;
        if let Some(bus) = &disk.target_bus {
            one_of(target_el, "bus", bus, DISK_BUSES)?;
        }
        if disk.target_dev.trim().is_empty() {
            return Err(DomainError::invalid(target_el, "<target dev=''> is empty"));
        }
        if let Some(first) = targets.insert(disk.target_dev.clone(), i) {
            return Err(DomainError::invalid(
                target_el,
                format!(
                    "<disk> target '{}' is used by disk {} too (duplicate disk target)",
                    disk.target_dev,
                    first + 1
                ),
            ));
        }
        if let Some(cache) = &disk.driver_cache {
            one_of(
                el.child("driver").unwrap_or(el),
                "cache mode",
                cache,
                CACHE_MODES,
            )?;
        }
        if let Some(discard) = &disk.driver_discard {
            one_of(
                el.child("driver").unwrap_or(el),
                "discard mode",
                discard,
                &["unmap", "ignore"],
            )?;
        }
        let needs_source = matches!(disk.device.as_str(), "disk" | "lun");
        if needs_source
            && disk.source.is_none()
            && disk.disk_type != "network"
            && disk.disk_type != "volume"
        {
            return Err(DomainError::invalid(
                el,
                format!(
                    "<disk> {} has no <source> (only a CD-ROM or floppy may be empty)",
                    disk.target_dev
                ),
            ));
        }
        if let Some(order) = disk.boot_order {
            let boot_el = el.child("boot").unwrap_or(el);
            if os_boot {
                return Err(DomainError::invalid(
                    boot_el,
                    "per-device <boot order> cannot be used together with <os><boot dev>",
                ));
            }
            if order == 0 {
                return Err(DomainError::invalid(
                    boot_el,
                    "<boot order='0'>: orders start at 1",
                ));
            }
            if let Some(other) = boot_orders.insert(order, disk.target_dev.clone()) {
                return Err(DomainError::invalid(
                    boot_el,
                    format!("<boot order='{order}'> is used by disk {other} too"),
                ));
            }
        }
        if let Some(a) = &disk.address {
            check_address(el.child("address").unwrap_or(el), a)?;
        }
    }
    for (i, c) in d.devices::<Controller>()?.iter().enumerate() {
        one_of(
            nth(d, "controller", i),
            "controller type",
            &c.kind,
            CONTROLLER_TYPES,
        )?;
        if let Some(a) = &c.address {
            check_address(nth(d, "controller", i), a)?;
        }
    }
    for (i, nic) in d.devices::<Interface>()?.iter().enumerate() {
        let el = nth(d, "interface", i);
        one_of(el, "interface type", &nic.kind, INTERFACE_TYPES)?;
        if let Some(mac) = &nic.mac {
            let mac_el = el.child("mac").unwrap_or(el);
            match is_unicast_mac(mac) {
                None => {
                    return Err(DomainError::invalid(
                        mac_el,
                        format!("<mac address='{mac}'> is not a MAC address (xx:xx:xx:xx:xx:xx)"),
                    ))
                }
                Some(false) => {
                    return Err(DomainError::invalid(
                        mac_el,
                        format!("<mac address='{mac}'> is a multicast address"),
                    ))
                }
                Some(true) => {}
            }
        }
        if let Some(a) = &nic.address {
            check_address(el, a)?;
        }
    }
    for (i, s) in d.devices::<Serial>()?.iter().enumerate() {
        one_of(
            nth(d, "serial", i),
            "character device type",
            &s.0.kind,
            CHAR_TYPES,
        )?;
    }
    for (i, c) in d.devices::<Console>()?.iter().enumerate() {
        one_of(
            nth(d, "console", i),
            "character device type",
            &c.0.kind,
            CHAR_TYPES,
        )?;
    }
    for (i, input) in d.devices::<Input>()?.iter().enumerate() {
        let el = nth(d, "input", i);
        one_of(el, "input type", &input.kind, INPUT_TYPES)?;
        if let Some(bus) = &input.bus {
            one_of(el, "input bus", bus, INPUT_BUSES)?;
        }
    }
    for (i, g) in d.devices::<Graphics>()?.iter().enumerate() {
        one_of(
            nth(d, "graphics", i),
            "graphics type",
            &g.kind,
            GRAPHICS_TYPES,
        )?;
    }
    for (i, v) in d.devices::<Video>()?.iter().enumerate() {
        let el = nth(d, "video", i);
        if let Some(model) = &v.model {
            one_of(
                el.child("model").unwrap_or(el),
                "video model",
                model,
                VIDEO_MODELS,
            )?;
        }
        if v.heads == Some(0) {
            return Err(DomainError::invalid(el, "<video> heads must be at least 1"));
        }
    }
    for (i, s) in d.devices::<Sound>()?.iter().enumerate() {
        one_of(nth(d, "sound", i), "sound model", &s.model, SOUND_MODELS)?;
    }
    for (i, b) in d.devices::<Memballoon>()?.iter().enumerate() {
        one_of(
            nth(d, "memballoon", i),
            "balloon model",
            &b.model,
            BALLOON_MODELS,
        )?;
    }
    d.devices::<Hostdev>()?;
    check_pci_addresses(d)
}

/// Refuses two devices at one PCI address, as libvirt does ("Attempted
/// double use of PCI Address"): the machine could not wire both.
fn check_pci_addresses(d: &Domain) -> Result<(), DomainError> {
    let Some(devices) = d.root().child("devices") else {
        return Ok(());
    };
    let mut seen: HashMap<(u32, u32, u32, u32), String> = HashMap::new();
    for node in &devices.children {
        let crate::domain::Node::Element(device) = node else {
            continue;
        };
        let Some(address) = device
            .children_named("address")
            .find(|a| a.attr("type") == Some("pci"))
        else {
            continue;
        };
        let number = |name: &str| -> Result<u32, DomainError> {
            Ok(attr_num::<u32>(address, name)?.unwrap_or(0))
        };
        let key = (
            number("domain")?,
            number("bus")?,
            number("slot")?,
            number("function")?,
        );
        let what = describe_device(device);
        if let Some(first) = seen.get(&key) {
            return Err(DomainError::invalid(
                address,
                format!(
                    "Attempted double use of PCI Address {:04x}:{:02x}:{:02x}.{:x}: {first} and {what} are both there",
                    key.0, key.1, key.2, key.3
                ),
            ));
        }
        seen.insert(key, what);
    }
    Ok(())
}

/// A device as a person finds it in the XML: `<disk> vda`,
/// `<interface> 52:54:00:…`, `<video>`.
fn describe_device(device: &Element) -> String {
    let detail = device
        .child("target")
        .and_then(|t| t.attr("dev"))
        .or_else(|| device.child("mac").and_then(|m| m.attr("address")))
        .or_else(|| device.attr("type"))
        .or_else(|| device.attr("model"));
    match detail {
        Some(detail) => format!("<{}> {detail}", device.name),
        None => format!("<{}>", device.name),
    }
}

fn check_address(el: &Element, a: &super::Address) -> Result<(), DomainError> {
    let el = el.child("address").unwrap_or(el);
    if a.kind == "pci" {
        if a.slot.is_some_and(|s| s > 31) {
            return Err(DomainError::invalid(
                el,
                "<address type='pci'>: slot must be 0 to 0x1f",
            ));
        }
        if a.function.is_some_and(|f| f > 7) {
            return Err(DomainError::invalid(
                el,
                "<address type='pci'>: function must be 0 to 7",
            ));
        }
        if a.bus.is_some_and(|b| b > 255) {
            return Err(DomainError::invalid(
                el,
                "<address type='pci'>: bus must be 0 to 0xff",
            ));
        }
    }
    // Numbers the typed Address does not hold are checked here too.
    for name in ["iobase", "irq", "reg", "cssid", "ssid", "devno"] {
        let _: Option<u64> = attr_num(el, name)?;
    }
    Ok(())
}
