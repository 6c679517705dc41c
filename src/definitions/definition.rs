//! One stored definition: its identity and its libvirt XML.

use crate::definitions::NetworkStore;
use crate::domain::{Domain, DomainError};
use crate::ids::generate_uuid;
use crate::vmm::{NicBackend, VmConfig};

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
        crate::domain::nic::fill_macs(&mut domain)?;
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

    /// The machine to run: the domain's, with each NIC on a libvirt
    /// network given that network's addressing (the network must be
    /// active, as libvirt requires).
    pub fn vm_config(&self) -> Result<VmConfig, DomainError> {
        let mut config = self.domain.to_vm_config()?;
        resolve_networks(&mut config)?;
        Ok(config)
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

/// Connects each NIC of `config` on a libvirt network to that network:
/// a NAT network's addressing, an isolated network's switch. The network
/// must be active, as libvirt requires.
pub fn resolve_networks(config: &mut VmConfig) -> Result<(), DomainError> {
    if !config.nics.iter().any(|nic| nic.network.is_some()) {
        return Ok(());
    }
    let networks = NetworkStore::open().map_err(|e| DomainError::whole(e.to_string()))?;
    for nic in &mut config.nics {
        let Some(name) = &nic.network else { continue };
        let network = networks
            .get(name)
            .map_err(|e| DomainError::whole(e.to_string()))?;
        if !network.active {
            return Err(DomainError::whole(format!(
                "network '{name}' is not active (start it with `vireo net-start {name}`)"
            )));
        }
        if network.def.forward_mode() == "bridge" {
            nic.backend = NicBackend::Tap {
                bridge: network.def.bridge().unwrap_or_default(),
                target: nic.target_dev.clone(),
            };
            continue;
        }
        if network.def.forward_mode() == "isolated" {
            nic.backend = NicBackend::Switch {
                network: name.clone(),
                socket: crate::net::switch::socket_path(name),
            };
            continue;
        }
        let user = network
            .def
            .user_config()
            .map_err(|e| DomainError::whole(format!("network '{name}': {e}")))?;
        nic.backend = NicBackend::User(user);
    }
    Ok(())
}
