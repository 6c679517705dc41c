//! One stored definition: its identity and its libvirt XML.

use crate::domain::{Domain, DomainError};
use crate::ids::generate_uuid;

#[derive(Debug, Clone)]
pub struct Definition {
    pub name: String,
    /// Lower case, as libvirt prints it.
    pub uuid: String,
    /// The definition as `dumpxml` prints it (no header).
    pub xml: String,
    domain: Domain,
}

impl PartialEq for Definition {
    fn eq(&self, other: &Self) -> bool {
        self.xml == other.xml
    }
}

impl Definition {
    /// A stored definition. One without a UUID gets one, as in `define`.
    pub fn parse(xml: &str) -> Result<Self, DomainError> {
        Self::parse_new(xml)
    }

    /// A definition being defined: validated, and a missing UUID and NIC
    /// MAC addresses generated.
    pub fn parse_new(xml: &str) -> Result<Self, DomainError> {
        let mut domain = Domain::parse(xml)?;
        crate::domain::builder::fill_macs(&mut domain)?;
        domain.fill_memory_from_numa()?;
        let uuid = match domain.uuid() {
            Some(uuid) => uuid.to_ascii_lowercase(),
            None => {
                let uuid = generate_uuid()
                    .map_err(|e| DomainError::whole(format!("cannot generate a UUID: {e}")))?;
                domain.set_uuid(Some(&uuid));
                uuid
            }
        };
        Ok(Self::from_domain(domain, uuid))
    }

    fn from_domain(domain: Domain, uuid: String) -> Self {
        Self {
            name: domain.name(),
            uuid,
            xml: domain.to_xml(),
            domain,
        }
    }

    /// The typed view of the definition.
    pub fn domain(&self) -> &Domain {
        &self.domain
    }

    /// The file's content: libvirt's do-not-edit header, then the XML.
    pub fn stored_xml(&self) -> String {
        self.domain.to_stored_xml()
    }

    /// The same definition under another name.
    pub fn renamed(&self, name: &str) -> Result<Self, DomainError> {
        let mut domain = self.domain.clone();
        domain.set_name(name);
        domain.validate()?;
        Ok(Self::from_domain(domain, self.uuid.clone()))
    }

    /// A changed copy (`edit` applied through the typed view), validated.
    pub fn with_domain(&self, domain: Domain) -> Result<Self, DomainError> {
        domain.validate()?;
        let uuid = domain
            .uuid()
            .unwrap_or_else(|| self.uuid.clone())
            .to_ascii_lowercase();
        Ok(Self::from_domain(domain, uuid))
    }
}
