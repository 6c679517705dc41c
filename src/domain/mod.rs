//! libvirt domain XML (<https://libvirt.org/formatdomain.html>).
//!
//! This reader covers what the VMM runs today: name, memory, vcpu, os
//! (loader, boot devices), lifecycle actions, disks and serial ports.
//! Elements it does not know are skipped here; the full model that keeps
//! them for a round trip is the definitions store's job.

mod units;

use std::path::PathBuf;

use serde::Deserialize;

pub use units::{parse_memory, UnitError};

use crate::vmm::{DiskBus, DiskConfig, DiskKind, LifecycleAction, VmConfig};

/// Errors reading a domain definition.
#[derive(Debug, thiserror::Error)]
pub enum DomainError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed domain XML: {0}")]
    Syntax(String),
    #[error("invalid domain definition: {0}")]
    Invalid(String),
}

#[derive(Debug, Deserialize)]
struct DomainXml {
    #[serde(rename = "@type")]
    kind: Option<String>,
    name: String,
    uuid: Option<TextValue>,
    memory: Option<ValueWithUnit>,
    vcpu: Option<TextValue>,
    #[serde(default)]
    os: OsXml,
    on_poweroff: Option<String>,
    on_reboot: Option<String>,
    on_crash: Option<String>,
    #[serde(default)]
    devices: DevicesXml,
}

#[derive(Debug, Deserialize)]
struct ValueWithUnit {
    #[serde(rename = "@unit")]
    unit: Option<String>,
    #[serde(rename = "$text")]
    value: String,
}

#[derive(Debug, Deserialize)]
struct TextValue {
    #[serde(rename = "$text")]
    value: String,
}

#[derive(Debug, Default, Deserialize)]
struct OsXml {
    loader: Option<TextValue>,
    #[serde(default)]
    boot: Vec<BootXml>,
}

#[derive(Debug, Deserialize)]
struct BootXml {
    #[serde(rename = "@dev")]
    dev: String,
}

#[derive(Debug, Default, Deserialize)]
struct DevicesXml {
    #[serde(default)]
    disk: Vec<DiskXml>,
}

#[derive(Debug, Deserialize)]
struct DiskXml {
    #[serde(rename = "@device")]
    device: Option<String>,
    driver: Option<DriverXml>,
    source: Option<SourceXml>,
    target: TargetXml,
    readonly: Option<Empty>,
    boot: Option<BootOrderXml>,
    address: Option<AddressXml>,
}

#[derive(Debug, Deserialize)]
struct Empty {}

#[derive(Debug, Deserialize)]
struct DriverXml {
    #[serde(rename = "@type")]
    format: Option<String>,
}

#[derive(Debug, Deserialize)]
struct SourceXml {
    #[serde(rename = "@file")]
    file: Option<String>,
}

#[derive(Debug, Deserialize)]
struct TargetXml {
    #[serde(rename = "@dev")]
    dev: String,
    #[serde(rename = "@bus")]
    bus: Option<String>,
}

#[derive(Debug, Deserialize)]
struct BootOrderXml {
    #[serde(rename = "@order")]
    order: u32,
}

#[derive(Debug, Deserialize)]
struct AddressXml {
    #[serde(rename = "@type")]
    kind: Option<String>,
    #[serde(rename = "@bus")]
    bus: Option<String>,
    #[serde(rename = "@unit")]
    unit: Option<String>,
    #[serde(rename = "@slot")]
    slot: Option<String>,
}

/// The first PCI slot given to virtio disks without an address (slots 2 and
/// 3 are where QEMU puts the VGA card and the first NIC).
const FIRST_VIRTIO_DISK_SLOT: u8 = 5;

/// Reads a domain definition from a file.
pub fn load(path: &std::path::Path) -> Result<VmConfig, DomainError> {
    let text = std::fs::read_to_string(path).map_err(|source| DomainError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text)
}

/// Turns domain XML into the VMM's configuration.
pub fn parse(xml: &str) -> Result<VmConfig, DomainError> {
    let dom: DomainXml =
        quick_xml::de::from_str(xml).map_err(|e| DomainError::Syntax(e.to_string()))?;
    if let Some(kind) = dom.kind.as_deref() {
        if kind != "kvm" {
            tracing::warn!("domain type '{kind}' runs on KVM in Vireo");
        }
    }
    let name = dom.name.trim().to_string();
    if name.is_empty() {
        return Err(DomainError::Invalid(
            "the domain has an empty <name>".into(),
        ));
    }
    let memory = match &dom.memory {
        Some(m) => parse_memory(&m.value, m.unit.as_deref())
            .map_err(|e| DomainError::Invalid(format!("<memory>: {e}")))?,
        None => return Err(DomainError::Invalid("the domain has no <memory>".into())),
    };
    let mut config = VmConfig::new(name, memory);
    if let Some(vcpu) = &dom.vcpu {
        config.vcpus = vcpu.value.trim().parse().map_err(|_| {
            DomainError::Invalid(format!("<vcpu> '{}' is not a number", vcpu.value.trim()))
        })?;
    }
    config.loader = dom
        .os
        .loader
        .as_ref()
        .map(|l| PathBuf::from(l.value.trim()));
    config.on_poweroff = lifecycle(
        dom.on_poweroff.as_deref(),
        "on_poweroff",
        LifecycleAction::Destroy,
    )?;
    config.on_reboot = lifecycle(
        dom.on_reboot.as_deref(),
        "on_reboot",
        LifecycleAction::Restart,
    )?;
    config.on_crash = lifecycle(
        dom.on_crash.as_deref(),
        "on_crash",
        LifecycleAction::Destroy,
    )?;

    let mut next_virtio_slot = FIRST_VIRTIO_DISK_SLOT;
    for disk in &dom.devices.disk {
        config.disks.push(disk_config(disk, &mut next_virtio_slot)?);
    }
    apply_os_boot_order(&dom.os.boot, &mut config.disks)?;
    Ok(config)
}

/// The definition's UUID, if it has one (lower case).
pub fn uuid_of(xml: &str) -> Result<Option<String>, DomainError> {
    let dom: DomainXml =
        quick_xml::de::from_str(xml).map_err(|e| DomainError::Syntax(e.to_string()))?;
    match dom.uuid.map(|u| u.value.trim().to_ascii_lowercase()) {
        Some(uuid) if is_uuid(&uuid) => Ok(Some(uuid)),
        Some(uuid) => Err(DomainError::Invalid(format!(
            "<uuid> '{uuid}' is not a UUID"
        ))),
        None => Ok(None),
    }
}

fn is_uuid(text: &str) -> bool {
    let groups: Vec<&str> = text.split('-').collect();
    groups.iter().map(|g| g.len()).eq([8, 4, 4, 4, 12])
        && groups
            .iter()
            .all(|g| g.chars().all(|c| c.is_ascii_hexdigit()))
}

/// A random (version 4) UUID.
pub fn generate_uuid() -> String {
    let mut bytes = [0u8; 16];
    if let Ok(mut random) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = random.read_exact(&mut bytes);
    }
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

/// `xml` with a `<uuid>` element after `<name>`.
pub fn with_uuid(xml: &str, uuid: &str) -> Result<String, DomainError> {
    let end = xml
        .find("</name>")
        .ok_or_else(|| DomainError::Invalid("the domain has no <name>".into()))?
        + "</name>".len();
    Ok(format!(
        "{}\n  <uuid>{uuid}</uuid>{}",
        &xml[..end],
        &xml[end..]
    ))
}

/// `xml` with its `<name>` changed.
pub fn with_name(xml: &str, name: &str) -> Result<String, DomainError> {
    let start = xml
        .find("<name>")
        .ok_or_else(|| DomainError::Invalid("the domain has no <name>".into()))?;
    let end = xml[start..]
        .find("</name>")
        .ok_or_else(|| DomainError::Invalid("<name> is not closed".into()))?
        + start;
    Ok(format!(
        "{}<name>{}{}",
        &xml[..start],
        quick_xml::escape::escape(name),
        &xml[end..]
    ))
}

fn lifecycle(
    value: Option<&str>,
    element: &str,
    default: LifecycleAction,
) -> Result<LifecycleAction, DomainError> {
    match value.map(str::trim) {
        None => Ok(default),
        Some("destroy") => Ok(LifecycleAction::Destroy),
        Some("restart") => Ok(LifecycleAction::Restart),
        Some("preserve") => Ok(LifecycleAction::Preserve),
        Some("rename-restart") | Some("coredump-destroy") | Some("coredump-restart") => {
            tracing::warn!("<{element}> value not supported; using destroy");
            Ok(LifecycleAction::Destroy)
        }
        Some(other) => Err(DomainError::Invalid(format!(
            "<{element}> '{other}' is not destroy, restart or preserve"
        ))),
    }
}

/// `hda`→(0,0), `hdb`→(0,1), `hdc`→(1,0), `hdd`→(1,1).
fn ide_position(dev: &str) -> Option<(u8, u8)> {
    let letter = dev.strip_prefix("hd")?.bytes().next()?;
    let index = letter.checked_sub(b'a')?;
    (index < 4 && dev.len() == 3).then_some((index / 2, index % 2))
}

fn disk_config(disk: &DiskXml, next_virtio_slot: &mut u8) -> Result<DiskConfig, DomainError> {
    let target = disk.target.dev.clone();
    let kind = match disk.device.as_deref().unwrap_or("disk") {
        "disk" => DiskKind::Disk,
        "cdrom" => DiskKind::Cdrom,
        other => {
            return Err(DomainError::Invalid(format!(
                "disk {target}: device '{other}' is not supported (disk or cdrom)"
            )))
        }
    };
    if let Some(format) = disk.driver.as_ref().and_then(|d| d.format.as_deref()) {
        if format != "raw" {
            return Err(DomainError::Invalid(format!(
                "disk {target}: format '{format}' is not supported yet (raw only)"
            )));
        }
    }
    let bus_name = disk
        .target
        .bus
        .as_deref()
        .unwrap_or(if target.starts_with("vd") {
            "virtio"
        } else {
            "ide"
        });
    let bus = match bus_name {
        "ide" | "sata" => {
            if bus_name == "sata" {
                tracing::warn!("disk {target}: SATA (AHCI) is not emulated; attaching it to IDE");
            }
            let from_address = disk
                .address
                .as_ref()
                .filter(|a| a.kind.as_deref() == Some("drive"))
                .and_then(|a| {
                    Some((
                        parse_int(a.bus.as_deref()?)? as u8,
                        parse_int(a.unit.as_deref()?)? as u8,
                    ))
                });
            let (channel, unit) =
                from_address
                    .or_else(|| ide_position(&target))
                    .ok_or_else(|| {
                        DomainError::Invalid(format!("disk {target}: IDE targets are hda to hdd"))
                    })?;
            if channel > 1 || unit > 1 {
                return Err(DomainError::Invalid(format!(
                    "disk {target}: IDE has two channels of two units"
                )));
            }
            DiskBus::Ide { channel, unit }
        }
        "virtio" => {
            let slot = match disk
                .address
                .as_ref()
                .filter(|a| a.kind.as_deref() == Some("pci"))
                .and_then(|a| a.slot.as_deref())
            {
                Some(slot) => parse_int(slot)
                    .filter(|s| (2..32).contains(s))
                    .ok_or_else(|| {
                        DomainError::Invalid(format!(
                            "disk {target}: PCI slot '{slot}' is not 2..31"
                        ))
                    })? as u8,
                None => {
                    let slot = *next_virtio_slot;
                    *next_virtio_slot += 1;
                    slot
                }
            };
            DiskBus::Virtio { slot }
        }
        other => {
            return Err(DomainError::Invalid(format!(
                "disk {target}: bus '{other}' is not supported (ide, virtio)"
            )))
        }
    };
    let path = disk
        .source
        .as_ref()
        .and_then(|s| s.file.as_ref())
        .map(PathBuf::from);
    if path.is_none() && kind == DiskKind::Disk {
        return Err(DomainError::Invalid(format!(
            "disk {target} has no <source file=…>"
        )));
    }
    Ok(DiskConfig {
        target,
        kind,
        bus,
        path,
        read_only: disk.readonly.is_some() || kind == DiskKind::Cdrom,
        boot_order: disk.boot.as_ref().map(|b| b.order),
    })
}

/// `<os><boot dev='cdrom'/><boot dev='hd'/>` gives the first disk of each
/// kind a place in the boot order, unless disks carry `<boot order=>`
/// themselves (libvirt forbids mixing the two).
fn apply_os_boot_order(boots: &[BootXml], disks: &mut [DiskConfig]) -> Result<(), DomainError> {
    if boots.is_empty() {
        return Ok(());
    }
    if disks.iter().any(|d| d.boot_order.is_some()) {
        return Err(DomainError::Invalid(
            "per-device <boot order> cannot be used together with <os><boot dev>".into(),
        ));
    }
    let mut order = 1;
    for boot in boots {
        let wanted = match boot.dev.as_str() {
            "hd" => DiskKind::Disk,
            "cdrom" => DiskKind::Cdrom,
            "fd" | "network" => {
                tracing::warn!("boot device '{}' is not available yet; skipped", boot.dev);
                continue;
            }
            other => {
                return Err(DomainError::Invalid(format!(
                    "<boot dev='{other}'> is not hd, cdrom, fd or network"
                )))
            }
        };
        if let Some(disk) = disks
            .iter_mut()
            .find(|d| d.kind == wanted && d.boot_order.is_none())
        {
            disk.boot_order = Some(order);
            order += 1;
        }
    }
    Ok(())
}

fn parse_int(text: &str) -> Option<u64> {
    let text = text.trim();
    match text.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let xml = include_str!("../../tests/data/xp-for-test.domain.xml");
        let config = parse(xml).unwrap();
        assert_eq!(config.name, "XP_FOR_TEST");
        assert_eq!(config.memory, 1 << 30);
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
}
