//! One stored definition: its identity and its XML.

use crate::domain::DomainError;
use crate::vmm::VmConfig;

/// The header libvirt puts on the files it stores, so people know to edit
/// them through the tool.
const STORED_HEADER: &str = "<!--\nWARNING: THIS IS AN AUTO-GENERATED FILE. CHANGES TO IT ARE LIKELY TO BE\nOVERWRITTEN AND LOST. Changes to this xml configuration should be made using:\n  vireo edit NAME\nor other application using the vireo API.\n-->\n\n";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Definition {
    pub name: String,
    pub uuid: String,
    /// The definition as `dumpxml` prints it (no header).
    pub xml: String,
}

impl Definition {
    /// A stored definition (it must have a UUID).
    pub fn parse(xml: &str) -> Result<Self, DomainError> {
        let definition = Self::parse_new(xml)?;
        Ok(definition)
    }

    /// A definition being defined: a missing UUID is generated.
    pub fn parse_new(xml: &str) -> Result<Self, DomainError> {
        let body = strip_header(xml);
        let config = crate::domain::parse(body)?;
        let (uuid, xml) = match crate::domain::uuid_of(body)? {
            Some(uuid) => (uuid, body.to_string()),
            None => {
                let uuid = crate::domain::generate_uuid();
                (uuid.clone(), crate::domain::with_uuid(body, &uuid)?)
            }
        };
        Ok(Self {
            name: config.name,
            uuid,
            xml,
        })
    }

    pub fn vm_config(&self) -> Result<VmConfig, DomainError> {
        crate::domain::parse(&self.xml)
    }

    /// The file's content: the header, then the XML.
    pub fn stored_xml(&self) -> String {
        let header = STORED_HEADER.replace("NAME", &self.name);
        format!("{header}{}", self.xml.trim_end()) + "\n"
    }

    /// The same definition under another name.
    pub fn renamed(&self, name: &str) -> Result<Self, DomainError> {
        let xml = crate::domain::with_name(&self.xml, name)?;
        Ok(Self {
            name: name.to_string(),
            uuid: self.uuid.clone(),
            xml,
        })
    }
}

fn strip_header(xml: &str) -> &str {
    let trimmed = xml.trim_start();
    match trimmed
        .strip_prefix("<!--")
        .and_then(|rest| rest.find("-->").map(|end| &rest[end + 3..]))
    {
        Some(rest) if trimmed.contains("AUTO-GENERATED") => rest.trim_start(),
        _ => trimmed,
    }
}
