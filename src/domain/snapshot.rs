//! libvirt's domain snapshot XML (`formatsnapshot`, schema
//! `domainsnapshot.rng`): what `snapshot-create FILE.xml` reads and what
//! `snapshot-dumpxml` prints.
//!
//! The layout is libvirt's (`virDomainSnapshotDefFormatInternal`): name,
//! description, state, parent, creationTime, memory, disks, the domain
//! definition as it was, and, only in the file kept beside the
//! definitions, `<active>` saying whether it is the current snapshot.

use super::xml::{Element, Node};
use super::DomainError;

/// `<disk name= snapshot=>`: what happens to one disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDisk {
    /// The disk's target (`vda`) or source path, as libvirt accepts either.
    pub name: String,
    /// `internal`, `external`, `manual` or `no`; `None` leaves it to the default.
    pub snapshot: Option<String>,
    /// An external snapshot's new file (`<source file=>`): the overlay
    /// that takes the disk's writes from the snapshot on.
    pub source: Option<String>,
    /// An external snapshot's format (`<driver type=>`): `qcow2`.
    pub driver_type: Option<String>,
}

/// One domain snapshot's description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotDef {
    pub name: String,
    pub description: Option<String>,
    /// The domain's state when it was taken (`shutoff`, `running`, ...).
    pub state: Option<String>,
    pub parent: Option<String>,
    /// Seconds since the epoch.
    pub creation_time: Option<i64>,
    /// `<memory snapshot=>`: `no`, `internal` or `external`.
    pub memory: Option<String>,
    pub disks: Vec<SnapshotDisk>,
    /// The domain's definition when the snapshot was taken.
    pub domain: Option<Element>,
    /// Whether it is the domain's current snapshot (`<active>` in the kept file).
    pub current: bool,
}

fn invalid(message: impl Into<String>) -> DomainError {
    DomainError::whole(message)
}

impl SnapshotDef {
    /// Whether any disk went to a new file (libvirt's `virDomainSnapshotIsExternal`,
    /// `Location: external` in `snapshot-info`).
    pub fn is_external(&self) -> bool {
        self.memory.as_deref() == Some("external")
            || self
                .disks
                .iter()
                .any(|d| d.snapshot.as_deref() == Some("external"))
    }

    /// Parses a `<domainsnapshot>` document: a user's (where only some
    /// fields are given) or a kept one.
    pub fn parse(xml: &str) -> Result<Self, DomainError> {
        let root = Element::parse(xml)?;
        if root.name != "domainsnapshot" {
            return Err(invalid(format!(
                "expected a <domainsnapshot> document, not <{}>",
                root.name
            )));
        }
        let text = |name: &str| root.child_text(name).map(|t| t.trim().to_string());
        let creation_time = match text("creationTime") {
            Some(t) => Some(
                t.parse::<i64>()
                    .map_err(|_| invalid(format!("creationTime '{t}' is not a number")))?,
            ),
            None => None,
        };
        let disks = match root.child("disks") {
            Some(disks) => disks
                .children_named("disk")
                .map(|d| {
                    Ok(SnapshotDisk {
                        name: d
                            .attr("name")
                            .ok_or_else(|| invalid("a snapshot <disk> has no name"))?
                            .to_string(),
                        snapshot: d.attr("snapshot").map(str::to_string),
                        source: d
                            .child("source")
                            .and_then(|source| source.attr("file"))
                            .map(str::to_string),
                        driver_type: d
                            .child("driver")
                            .and_then(|driver| driver.attr("type"))
                            .map(str::to_string),
                    })
                })
                .collect::<Result<_, DomainError>>()?,
            None => Vec::new(),
        };
        let name = text("name").unwrap_or_default();
        if name.contains('/') {
            return Err(invalid(format!(
                "invalid snapshot name '{name}': names may not contain '/'"
            )));
        }
        Ok(Self {
            name,
            description: root.child_text("description"),
            state: text("state"),
            parent: root.child("parent").and_then(|p| p.child_text("name")),
            creation_time,
            memory: root
                .child("memory")
                .and_then(|m| m.attr("snapshot"))
                .map(str::to_string),
            disks,
            domain: root.child("domain").cloned(),
            current: text("active").as_deref() == Some("1"),
        })
    }

    /// The snapshot as `snapshot-dumpxml` prints it; `kept` adds
    /// `<active>` as in the file libvirt keeps.
    pub fn to_xml(&self, kept: bool) -> String {
        let mut root = Element::new("domainsnapshot");
        root = root.with_child(Element::new("name").with_text(&self.name));
        if let Some(description) = &self.description {
            root = root.with_child(Element::new("description").with_text(description));
        }
        if let Some(state) = &self.state {
            root = root.with_child(Element::new("state").with_text(state));
        }
        if let Some(parent) = &self.parent {
            root = root.with_child(
                Element::new("parent").with_child(Element::new("name").with_text(parent)),
            );
        }
        if let Some(time) = self.creation_time {
            root = root.with_child(Element::new("creationTime").with_text(time.to_string()));
        }
        if let Some(memory) = &self.memory {
            root = root.with_child(Element::new("memory").with_attr("snapshot", memory));
        }
        if !self.disks.is_empty() {
            let mut disks = Element::new("disks");
            for disk in &self.disks {
                let mut element = Element::new("disk").with_attr("name", &disk.name);
                if let Some(kind) = &disk.snapshot {
                    element = element.with_attr("snapshot", kind);
                }
                // (libvirt's layout for an external disk's new file)
                if let Some(file) = &disk.source {
                    element = element.with_attr("type", "file");
                    if let Some(format) = &disk.driver_type {
                        element =
                            element.with_child(Element::new("driver").with_attr("type", format));
                    }
                    element = element.with_child(Element::new("source").with_attr("file", file));
                }
                disks = disks.with_child(element);
            }
            root = root.with_child(disks);
        }
        if let Some(domain) = &self.domain {
            root.children.push(Node::Element(domain.clone()));
        }
        if kept {
            let active = if self.current { "1" } else { "0" };
            root = root.with_child(Element::new("active").with_text(active));
        }
        root.to_xml()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_in_libvirts_layout() {
        let def = SnapshotDef {
            name: "before <upgrade>".into(),
            description: Some("kernel & co".into()),
            state: Some("shutoff".into()),
            parent: Some("base".into()),
            creation_time: Some(1_796_632_176),
            memory: Some("no".into()),
            disks: vec![
                SnapshotDisk {
                    name: "vda".into(),
                    snapshot: Some("internal".into()),
                    source: None,
                    driver_type: None,
                },
                SnapshotDisk {
                    name: "vdb".into(),
                    snapshot: Some("external".into()),
                    source: Some("/var/lib/vireo/images/data.first".into()),
                    driver_type: Some("qcow2".into()),
                },
            ],
            domain: Some(Element::parse("<domain type='kvm'><name>vm</name></domain>").unwrap()),
            current: true,
        };
        let xml = def.to_xml(false);
        assert_eq!(
            xml,
            "<domainsnapshot>\n  <name>before &lt;upgrade&gt;</name>\n  <description>kernel &amp; co</description>\n  <state>shutoff</state>\n  <parent>\n    <name>base</name>\n  </parent>\n  <creationTime>1796632176</creationTime>\n  <memory snapshot='no'/>\n  <disks>\n    <disk name='vda' snapshot='internal'/>\n    <disk name='vdb' snapshot='external' type='file'>\n      <driver type='qcow2'/>\n      <source file='/var/lib/vireo/images/data.first'/>\n    </disk>\n  </disks>\n  <domain type='kvm'>\n    <name>vm</name>\n  </domain>\n</domainsnapshot>\n"
        );
        let kept = def.to_xml(true);
        assert!(kept.contains("  <active>1</active>\n</domainsnapshot>"));
        assert_eq!(SnapshotDef::parse(&kept).unwrap(), def);
        let mut not_current = def.clone();
        not_current.current = false;
        assert_eq!(SnapshotDef::parse(&xml).unwrap(), not_current);
    }

    #[test]
    fn a_users_file_may_give_only_some_fields() {
        let def = SnapshotDef::parse(
            "<domainsnapshot><name>s</name><description>d</description></domainsnapshot>",
        )
        .unwrap();
        assert_eq!(def.name, "s");
        assert_eq!(def.description.as_deref(), Some("d"));
        assert!(def.domain.is_none() && def.disks.is_empty());
        for bad in [
            "<domain/>",
            "<domainsnapshot><creationTime>soon</creationTime></domainsnapshot>",
            "<domainsnapshot><disks><disk/></disks></domainsnapshot>",
            "<domainsnapshot><name>a/b</name></domainsnapshot>",
            "<domainsnapshot>",
        ] {
            assert!(SnapshotDef::parse(bad).is_err(), "{bad}");
        }
    }
}
