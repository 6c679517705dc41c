//! Pool and volume XML as libvirt writes them
//! (<https://libvirt.org/formatstorage.html>).
//!
//! Reading uses serde and accepts what libvirt's schema allows for a `dir`
//! pool and a file volume; elements that make no sense for a directory pool
//! (a source host, extents) are skipped. Writing is by hand so the output is
//! byte-for-byte the layout `virsh pool-dumpxml` / `vol-dumpxml` print:
//! two-space indentation, `unit='bytes'` on every size, single quotes.

use std::fmt::Write as _;
use std::path::PathBuf;

use serde::Deserialize;

use super::units::{scale_unit, SizeError};

/// Errors reading pool or volume XML.
#[derive(Debug, thiserror::Error)]
pub enum XmlError {
    /// The text is not well-formed or misses a required element.
    #[error("malformed {what} XML: {message}")]
    Syntax { what: &'static str, message: String },
    /// Well-formed, but describes something Vireo does not support.
    #[error("unsupported {what} XML: {message}")]
    Unsupported { what: &'static str, message: String },
    /// A size with a bad unit or number.
    #[error("bad size in {what} XML: {source}")]
    Size {
        what: &'static str,
        #[source]
        source: SizeError,
    },
}

/// Ownership and mode of a pool directory or a volume file
/// (`<permissions>`); each part is optional, as in libvirt.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Permissions {
    pub mode: Option<u32>,
    pub owner: Option<u32>,
    pub group: Option<u32>,
    pub label: Option<String>,
}

impl Permissions {
    fn is_empty(&self) -> bool {
        self.mode.is_none() && self.owner.is_none() && self.group.is_none() && self.label.is_none()
    }

    fn write(&self, out: &mut String, indent: &str) {
        if self.is_empty() {
            return;
        }
        let _ = writeln!(out, "{indent}<permissions>");
        if let Some(mode) = self.mode {
            let _ = writeln!(out, "{indent}  <mode>0{mode:o}</mode>");
        }
        if let Some(owner) = self.owner {
            let _ = writeln!(out, "{indent}  <owner>{owner}</owner>");
        }
        if let Some(group) = self.group {
            let _ = writeln!(out, "{indent}  <group>{group}</group>");
        }
        if let Some(label) = &self.label {
            let _ = writeln!(out, "{indent}  <label>{}</label>", escape(label));
        }
        let _ = writeln!(out, "{indent}</permissions>");
    }

    fn from_xml(xml: Option<PermissionsXml>, what: &'static str) -> Result<Self, XmlError> {
        let Some(xml) = xml else {
            return Ok(Self::default());
        };
        let number =
            |text: Option<String>, radix: u32, field: &str| -> Result<Option<u32>, XmlError> {
                match text.as_deref().map(str::trim) {
                    None | Some("") | Some("-1") => Ok(None),
                    Some(value) => {
                        u32::from_str_radix(value, radix)
                            .map(Some)
                            .map_err(|_| XmlError::Syntax {
                                what,
                                message: format!("<{field}> '{value}' is not a number"),
                            })
                    }
                }
            };
        Ok(Self {
            mode: number(xml.mode, 8, "mode")?,
            owner: number(xml.owner, 10, "owner")?,
            group: number(xml.group, 10, "group")?,
            label: xml.label,
        })
    }
}

/// A storage pool's definition. Only `dir` pools exist in Vireo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolDef {
    pub name: String,
    /// Canonical lower-case `8-4-4-4-12` form.
    pub uuid: String,
    /// The directory holding the volumes.
    pub target: PathBuf,
    pub permissions: Permissions,
}

/// A pool's space as `statvfs` reports it for the file system under it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolSpace {
    pub capacity: u64,
    pub allocation: u64,
    pub available: u64,
}

impl PoolDef {
    /// Reads a `<pool>` document.
    pub fn from_xml(text: &str) -> Result<Self, XmlError> {
        const WHAT: &str = "pool";
        let xml: PoolXml = quick_xml::de::from_str(text).map_err(|e| XmlError::Syntax {
            what: WHAT,
            message: e.to_string(),
        })?;
        if xml.kind != "dir" {
            return Err(XmlError::Unsupported {
                what: WHAT,
                message: format!(
                    "pool type '{}' (Vireo has directory pools only: type='dir')",
                    xml.kind
                ),
            });
        }
        let target = xml.target.ok_or_else(|| XmlError::Syntax {
            what: WHAT,
            message: "a dir pool needs <target><path>".into(),
        })?;
        let path = target
            .path
            .map(|p| p.trim().to_string())
            .unwrap_or_default();
        if path.is_empty() {
            return Err(XmlError::Syntax {
                what: WHAT,
                message: "a dir pool needs <target><path>".into(),
            });
        }
        let uuid = match xml.uuid {
            Some(text) => normalize_uuid(&text).ok_or_else(|| XmlError::Syntax {
                what: WHAT,
                message: format!("'{}' is not a UUID", text.trim()),
            })?,
            None => String::new(),
        };
        Ok(Self {
            name: xml.name.trim().to_string(),
            uuid,
            target: PathBuf::from(path),
            permissions: Permissions::from_xml(target.permissions, WHAT)?,
        })
    }

    /// The `<pool>` document: with `space` as a running pool reports it,
    /// without (as stored on disk) with zero sizes, as libvirt stores them.
    pub fn to_xml(&self, space: Option<PoolSpace>) -> String {
        let space = space.unwrap_or_default();
        let mut out = String::new();
        let _ = writeln!(out, "<pool type='dir'>");
        let _ = writeln!(out, "  <name>{}</name>", escape(&self.name));
        let _ = writeln!(out, "  <uuid>{}</uuid>", self.uuid);
        let _ = writeln!(
            out,
            "  <capacity unit='bytes'>{}</capacity>",
            space.capacity
        );
        let _ = writeln!(
            out,
            "  <allocation unit='bytes'>{}</allocation>",
            space.allocation
        );
        let _ = writeln!(
            out,
            "  <available unit='bytes'>{}</available>",
            space.available
        );
        let _ = writeln!(out, "  <source>");
        let _ = writeln!(out, "  </source>");
        let _ = writeln!(out, "  <target>");
        let _ = writeln!(
            out,
            "    <path>{}</path>",
            escape(&self.target.to_string_lossy())
        );
        self.permissions.write(&mut out, "    ");
        let _ = writeln!(out, "  </target>");
        let _ = writeln!(out, "</pool>");
        out
    }
}

/// Volume image formats a directory pool knows (libvirt's
/// `virStorageFileFormat` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VolumeFormat {
    Raw,
    Qcow2,
    /// The old QEMU format (version 1), recognised but not created.
    Qcow,
    /// An ISO 9660 image, as libvirt probes CD images.
    Iso,
}

impl VolumeFormat {
    pub fn name(self) -> &'static str {
        match self {
            Self::Raw => "raw",
            Self::Qcow2 => "qcow2",
            Self::Qcow => "qcow",
            Self::Iso => "iso",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        match name {
            "raw" => Some(Self::Raw),
            "qcow2" => Some(Self::Qcow2),
            "qcow" => Some(Self::Qcow),
            "iso" => Some(Self::Iso),
            _ => None,
        }
    }
}

/// File times as `<timestamps>` shows them: seconds and nanoseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timestamps {
    pub atime: (i64, u32),
    pub mtime: (i64, u32),
    pub ctime: (i64, u32),
}

/// A volume's `<target>` or `<backingStore>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeTarget {
    pub path: PathBuf,
    pub format: Option<VolumeFormat>,
    pub permissions: Permissions,
    pub timestamps: Option<Timestamps>,
    /// qcow2's compatibility level (`1.1` for version 3).
    pub compat: Option<String>,
    pub cluster_size: Option<u64>,
    /// qcow2 features (`lazy_refcounts`, …); `Some(empty)` prints `<features/>`.
    pub features: Option<Vec<String>>,
}

impl VolumeTarget {
    pub fn new(path: PathBuf, format: Option<VolumeFormat>) -> Self {
        Self {
            path,
            format,
            permissions: Permissions::default(),
            timestamps: None,
            compat: None,
            cluster_size: None,
            features: None,
        }
    }

    fn write(&self, out: &mut String, element: &str) {
        let _ = writeln!(out, "  <{element}>");
        let _ = writeln!(
            out,
            "    <path>{}</path>",
            escape(&self.path.to_string_lossy())
        );
        if let Some(format) = self.format {
            let _ = writeln!(out, "    <format type='{}'/>", format.name());
        }
        self.permissions.write(out, "    ");
        if let Some(times) = &self.timestamps {
            let _ = writeln!(out, "    <timestamps>");
            for (name, (secs, nanos)) in [
                ("atime", times.atime),
                ("mtime", times.mtime),
                ("ctime", times.ctime),
            ] {
                if nanos == 0 {
                    let _ = writeln!(out, "      <{name}>{secs}</{name}>");
                } else {
                    let _ = writeln!(out, "      <{name}>{secs}.{nanos:09}</{name}>");
                }
            }
            let _ = writeln!(out, "    </timestamps>");
        }
        if let Some(compat) = &self.compat {
            let _ = writeln!(out, "    <compat>{}</compat>", escape(compat));
        }
        if let Some(size) = self.cluster_size {
            let _ = writeln!(out, "    <clusterSize unit='B'>{size}</clusterSize>");
        }
        match &self.features {
            Some(features) if features.is_empty() => {
                let _ = writeln!(out, "    <features/>");
            }
            Some(features) => {
                let _ = writeln!(out, "    <features>");
                for feature in features {
                    let _ = writeln!(out, "      <{feature}/>");
                }
                let _ = writeln!(out, "    </features>");
            }
            None => {}
        }
        let _ = writeln!(out, "  </{element}>");
    }
}

/// A volume in a directory pool: a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeDef {
    pub name: String,
    /// For a directory pool, the file's path.
    pub key: String,
    /// Virtual size: what a guest sees.
    pub capacity: u64,
    /// Bytes the file occupies on disk (`st_blocks * 512`).
    pub allocation: u64,
    /// The file's length (`st_size`); not read back from XML.
    pub physical: Option<u64>,
    pub target: VolumeTarget,
    pub backing_store: Option<VolumeTarget>,
}

impl VolumeDef {
    /// Reads a `<volume>` document (as `vol-create` takes it).
    pub fn from_xml(text: &str) -> Result<Self, XmlError> {
        const WHAT: &str = "volume";
        let xml: VolumeXml = quick_xml::de::from_str(text).map_err(|e| XmlError::Syntax {
            what: WHAT,
            message: e.to_string(),
        })?;
        if let Some(kind) = xml.kind.as_deref() {
            if kind != "file" {
                return Err(XmlError::Unsupported {
                    what: WHAT,
                    message: format!(
                        "volume type '{kind}' (a directory pool holds files: type='file')"
                    ),
                });
            }
        }
        let size = |value: Option<ScaledXml>| -> Result<Option<u64>, XmlError> {
            value
                .map(|v| {
                    let number: u64 = v.value.trim().parse().map_err(|_| XmlError::Syntax {
                        what: WHAT,
                        message: format!("'{}' is not a whole number", v.value.trim()),
                    })?;
                    scale_unit(number, v.unit.as_deref().unwrap_or("bytes"))
                        .map_err(|source| XmlError::Size { what: WHAT, source })
                })
                .transpose()
        };
        let capacity = size(xml.capacity)?.ok_or_else(|| XmlError::Syntax {
            what: WHAT,
            message: "missing <capacity>".into(),
        })?;
        // libvirt: no <allocation> means "allocate the whole capacity".
        let allocation = size(xml.allocation)?.unwrap_or(capacity);
        let target = |xml: Option<TargetXml>| -> Result<Option<VolumeTarget>, XmlError> {
            let Some(xml) = xml else { return Ok(None) };
            let format = match xml.format.and_then(|f| f.kind) {
                Some(name) => Some(VolumeFormat::from_name(name.trim()).ok_or_else(|| {
                    XmlError::Unsupported {
                        what: WHAT,
                        message: format!("format '{name}' (Vireo makes raw and qcow2 volumes)"),
                    }
                })?),
                None => None,
            };
            let mut target =
                VolumeTarget::new(PathBuf::from(xml.path.unwrap_or_default().trim()), format);
            target.permissions = Permissions::from_xml(xml.permissions, WHAT)?;
            target.compat = xml.compat.map(|c| c.trim().to_string());
            Ok(Some(target))
        };
        let name = xml.name.trim().to_string();
        Ok(Self {
            key: xml.key.map(|k| k.trim().to_string()).unwrap_or_default(),
            capacity,
            allocation,
            physical: None,
            target: target(xml.target)?.unwrap_or_else(|| VolumeTarget::new(PathBuf::new(), None)),
            backing_store: target(xml.backing_store)?,
            name,
        })
    }

    /// The `<volume>` document, laid out as `virsh vol-dumpxml` prints it.
    pub fn to_xml(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "<volume type='file'>");
        let _ = writeln!(out, "  <name>{}</name>", escape(&self.name));
        let _ = writeln!(out, "  <key>{}</key>", escape(&self.key));
        let _ = writeln!(out, "  <capacity unit='bytes'>{}</capacity>", self.capacity);
        let _ = writeln!(
            out,
            "  <allocation unit='bytes'>{}</allocation>",
            self.allocation
        );
        if let Some(physical) = self.physical.filter(|p| *p != 0) {
            let _ = writeln!(out, "  <physical unit='bytes'>{physical}</physical>");
        }
        self.target.write(&mut out, "target");
        if let Some(backing) = &self.backing_store {
            backing.write(&mut out, "backingStore");
        }
        let _ = writeln!(out, "</volume>");
        out
    }
}

/// `text` as a canonical UUID, or `None`; accepts the hyphenless form too.
pub fn normalize_uuid(text: &str) -> Option<String> {
    let hex: String = text.trim().chars().filter(|c| *c != '-').collect();
    if hex.len() != 32 || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    let hex = hex.to_ascii_lowercase();
    Some(format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    ))
}

/// Escapes text for element content and single-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            _ => out.push(c),
        }
    }
    out
}

#[derive(Deserialize)]
struct PoolXml {
    #[serde(rename = "@type")]
    kind: String,
    name: String,
    uuid: Option<String>,
    target: Option<PoolTargetXml>,
}

#[derive(Deserialize)]
struct PoolTargetXml {
    path: Option<String>,
    permissions: Option<PermissionsXml>,
}

#[derive(Deserialize)]
struct PermissionsXml {
    mode: Option<String>,
    owner: Option<String>,
    group: Option<String>,
    label: Option<String>,
}

#[derive(Deserialize)]
struct VolumeXml {
    #[serde(rename = "@type")]
    kind: Option<String>,
    name: String,
    key: Option<String>,
    capacity: Option<ScaledXml>,
    allocation: Option<ScaledXml>,
    target: Option<TargetXml>,
    #[serde(rename = "backingStore")]
    backing_store: Option<TargetXml>,
}

#[derive(Deserialize)]
struct ScaledXml {
    #[serde(rename = "@unit")]
    unit: Option<String>,
    #[serde(rename = "$text")]
    value: String,
}

#[derive(Deserialize)]
struct TargetXml {
    path: Option<String>,
    format: Option<FormatXml>,
    permissions: Option<PermissionsXml>,
    compat: Option<String>,
}

#[derive(Deserialize)]
struct FormatXml {
    #[serde(rename = "@type")]
    kind: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_pool() -> PoolDef {
        PoolDef {
            name: "isos & disks".into(),
            uuid: "5fb0175f-4f82-42dc-bd5a-cd6624d1ad13".into(),
            target: PathBuf::from("/srv/vms"),
            permissions: Permissions {
                mode: Some(0o711),
                owner: Some(0),
                group: Some(107),
                label: None,
            },
        }
    }

    #[test]
    fn pool_xml_has_virsh_layout() {
        let space = PoolSpace {
            capacity: 107_374_182_400,
            allocation: 7,
            available: 107_374_182_393,
        };
        assert_eq!(
            sample_pool().to_xml(Some(space)),
            "<pool type='dir'>
  <name>isos &amp; disks</name>
  <uuid>5fb0175f-4f82-42dc-bd5a-cd6624d1ad13</uuid>
  <capacity unit='bytes'>107374182400</capacity>
  <allocation unit='bytes'>7</allocation>
  <available unit='bytes'>107374182393</available>
  <source>
  </source>
  <target>
    <path>/srv/vms</path>
    <permissions>
      <mode>0711</mode>
      <owner>0</owner>
      <group>107</group>
    </permissions>
  </target>
</pool>
"
        );
    }

    #[test]
    fn pool_xml_round_trips() {
        let pool = sample_pool();
        assert_eq!(PoolDef::from_xml(&pool.to_xml(None)).unwrap(), pool);
        let bare = PoolDef {
            permissions: Permissions::default(),
            ..sample_pool()
        };
        assert_eq!(PoolDef::from_xml(&bare.to_xml(None)).unwrap(), bare);
    }

    #[test]
    fn pool_xml_as_libvirt_stores_it_is_read() {
        let text = "<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE.\n-->\n<pool type='dir'>
  <name>default</name>
  <uuid>DFE224CB28FB8DD0C4B264EB3F0F4566</uuid>
  <capacity unit='bytes'>0</capacity>
  <source>
  </source>
  <target>
    <path>/var/lib/libvirt/images</path>
    <permissions><mode>0755</mode><owner>-1</owner></permissions>
  </target>
</pool>";
        let pool = PoolDef::from_xml(text).unwrap();
        assert_eq!(pool.name, "default");
        assert_eq!(pool.uuid, "dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566");
        assert_eq!(pool.target, PathBuf::from("/var/lib/libvirt/images"));
        assert_eq!(pool.permissions.mode, Some(0o755));
        assert_eq!(pool.permissions.owner, None);
    }

    #[test]
    fn hostile_pool_xml_is_refused_not_panicked_on() {
        for text in [
            "",
            "<pool",
            "<pool type='dir'><name>x</name></pool>",
            "<pool type='logical'><name>x</name><target><path>/x</path></target></pool>",
            "<pool type='dir'><name>x</name><uuid>nope</uuid><target><path>/x</path></target></pool>",
            "<pool type='dir'><name>x</name><target><path>/x</path><permissions><mode>99</mode></permissions></target></pool>",
            "<pool type='dir'><name>x</name><target><path> </path></target></pool>",
        ] {
            assert!(PoolDef::from_xml(text).is_err(), "{text}");
        }
    }

    fn sample_volume() -> VolumeDef {
        let mut target =
            VolumeTarget::new(PathBuf::from("/srv/vms/a.qcow2"), Some(VolumeFormat::Qcow2));
        target.permissions = Permissions {
            mode: Some(0o600),
            owner: Some(1000),
            group: Some(1000),
            label: None,
        };
        target.compat = Some("1.1".into());
        VolumeDef {
            name: "a.qcow2".into(),
            key: "/srv/vms/a.qcow2".into(),
            capacity: 5 << 30,
            allocation: 200_704,
            physical: Some(196_624),
            target,
            backing_store: Some(VolumeTarget::new(
                PathBuf::from("/srv/vms/base.img"),
                Some(VolumeFormat::Raw),
            )),
        }
    }

    #[test]
    fn volume_xml_has_virsh_layout() {
        let mut volume = sample_volume();
        volume.target.timestamps = Some(Timestamps {
            atime: (1_700_000_000, 5),
            mtime: (1_700_000_001, 0),
            ctime: (1_700_000_002, 123_456_789),
        });
        volume.target.cluster_size = Some(65536);
        volume.target.features = Some(vec![]);
        assert_eq!(
            volume.to_xml(),
            "<volume type='file'>
  <name>a.qcow2</name>
  <key>/srv/vms/a.qcow2</key>
  <capacity unit='bytes'>5368709120</capacity>
  <allocation unit='bytes'>200704</allocation>
  <physical unit='bytes'>196624</physical>
  <target>
    <path>/srv/vms/a.qcow2</path>
    <format type='qcow2'/>
    <permissions>
      <mode>0600</mode>
      <owner>1000</owner>
      <group>1000</group>
    </permissions>
    <timestamps>
      <atime>1700000000.000000005</atime>
      <mtime>1700000001</mtime>
      <ctime>1700000002.123456789</ctime>
    </timestamps>
    <compat>1.1</compat>
    <clusterSize unit='B'>65536</clusterSize>
    <features/>
  </target>
  <backingStore>
    <path>/srv/vms/base.img</path>
    <format type='raw'/>
  </backingStore>
</volume>
"
        );
    }

    #[test]
    fn volume_xml_round_trips() {
        let volume = sample_volume();
        let back = VolumeDef::from_xml(&volume.to_xml()).unwrap();
        assert_eq!(
            back,
            VolumeDef {
                physical: None,
                ..volume
            }
        );
    }

    #[test]
    fn volume_xml_from_vol_create_as_is_read() {
        // What `virsh vol-create-as p v 1G --format qcow2` sends.
        let volume = VolumeDef::from_xml(
            "<volume>\n  <name>v</name>\n  <capacity>1073741824</capacity>\n  <target>\n    <format type='qcow2'/>\n  </target>\n</volume>\n",
        )
        .unwrap();
        assert_eq!(volume.name, "v");
        assert_eq!(volume.capacity, 1 << 30);
        assert_eq!(
            volume.allocation,
            1 << 30,
            "no <allocation> means all of it"
        );
        assert_eq!(volume.target.format, Some(VolumeFormat::Qcow2));
        let scaled = VolumeDef::from_xml(
            "<volume><name>v</name><capacity unit='G'>5</capacity><allocation unit='KiB'>0</allocation></volume>",
        )
        .unwrap();
        assert_eq!((scaled.capacity, scaled.allocation), (5 << 30, 0));
    }

    #[test]
    fn hostile_volume_xml_is_refused() {
        for text in [
            "<volume><name>v</name></volume>",
            "<volume><name>v</name><capacity>-1</capacity></volume>",
            "<volume><name>v</name><capacity unit='parsecs'>1</capacity></volume>",
            "<volume><name>v</name><capacity unit='E'>99</capacity></volume>",
            "<volume type='block'><name>v</name><capacity>1</capacity></volume>",
            "<volume><name>v</name><capacity>1</capacity><target><format type='vmdk'/></target></volume>",
            "<volume><name>v</name><capacity>1",
        ] {
            assert!(VolumeDef::from_xml(text).is_err(), "{text}");
        }
    }

    #[test]
    fn uuids_are_normalised() {
        assert_eq!(
            normalize_uuid("DFE224CB28FB8DD0C4B264EB3F0F4566").as_deref(),
            Some("dfe224cb-28fb-8dd0-c4b2-64eb3f0f4566")
        );
        assert_eq!(normalize_uuid("xyz"), None);
        assert_eq!(normalize_uuid("dfe224cb-28fb-8dd0-c4b2-64eb3f0f456"), None);
    }
}
