//! `<interface>` elements to the NICs the VMM builds ([`NicConfig`]).
//!
//! Every NIC is a virtio-net function (other `<model>`s run as virtio,
//! and [`unsupported`] says so). Types:
//!
//! - `user`: user-mode NAT (libslirp) on libvirt's default addressing, or
//!   the `<ip address= prefix=>` given; host ports forwarded with libvirt's
//!   passt syntax, `<portForward proto= address=><range start= end= to=/>`.
//! - `network`: the named network; until networks are defined in Vireo
//!   every one is user-mode NAT on its libvirt default addressing.
//! - `bridge`: a TAP device on the host bridge `<source bridge=>`, named
//!   by `<target dev=>` (see `net::tap` for the rights that takes).
//! - the others are not connected yet (no NIC is built; the unsupported
//!   list says so).
//!
//! A NIC without `<mac>` gets a random one in 52:54:00 for this run; a
//! definition stored through Vireo already has one (see
//! `domain::builder::fill_macs`).

use std::net::Ipv4Addr;

use crate::domain::builder::parse_mac;
use crate::domain::{Domain, DomainError, Element, Interface};
use crate::net::{PortForward, Proto, UserNetConfig};
use crate::vmm::{NicBackend, NicConfig};

/// QEMU's slot for the first NIC; later ones follow from this one.
pub const FIRST_NIC_SLOT: u8 = 3;
/// The `pc` machine's last PCI slot.
const LAST_SLOT: u32 = 31;

/// Whether Vireo connects NICs of this `type`.
pub fn connectable(kind: &str) -> bool {
    matches!(kind, "user" | "network" | "bridge")
}

/// The NICs of `d`, in definition order, skipping the types that are not
/// connected. Slots: an explicit PCI address, else 3, 4, … skipping
/// `taken` (the slots virtio disks use).
pub fn nic_configs(d: &Domain, taken: &[u8]) -> Result<Vec<NicConfig>, DomainError> {
    let mut nics = Vec::new();
    let mut next_slot = u32::from(FIRST_NIC_SLOT);
    let elements: Vec<&Element> = d
        .devices_element()
        .map(|devs| devs.children_named("interface").collect())
        .unwrap_or_default();
    for (nic, el) in d.interfaces()?.iter().zip(elements) {
        if !connectable(&nic.kind) {
            continue;
        }
        let mac = match nic.mac.as_deref() {
            Some(text) => parse_mac(text)
                .ok_or_else(|| DomainError::invalid(el, format!("bad MAC address '{text}'")))?,
            None => random_mac(),
        };
        let slot = match nic
            .address
            .as_ref()
            .filter(|a| a.kind == "pci")
            .and_then(|a| a.slot)
        {
            Some(slot) if (2..=LAST_SLOT).contains(&slot) => slot as u8,
            Some(slot) => {
                return Err(DomainError::invalid(
                    el,
                    format!("PCI slot {slot} is not 2..31"),
                ))
            }
            None => {
                while taken.contains(&(next_slot as u8))
                    || nics
                        .iter()
                        .any(|n: &NicConfig| u32::from(n.slot) == next_slot)
                {
                    next_slot += 1;
                }
                if next_slot > LAST_SLOT {
                    return Err(DomainError::invalid(el, "no PCI slot left for the NIC"));
                }
                next_slot += 1;
                (next_slot - 1) as u8
            }
        };
        let target_dev = el
            .child("target")
            .and_then(|t| t.attr("dev"))
            .map(str::to_string);
        let backend = if nic.kind == "bridge" {
            NicBackend::Tap {
                bridge: nic.source_bridge.clone().ok_or_else(|| {
                    DomainError::invalid(el, "a bridge NIC needs <source bridge=>")
                })?,
                target: target_dev.clone(),
            }
        } else {
            NicBackend::User(user_net(nic, el).map_err(|m| DomainError::invalid(el, m))?)
        };
        nics.push(NicConfig {
            mac,
            slot,
            backend,
            target_dev,
            network: (nic.kind == "network").then(|| {
                nic.source_network
                    .clone()
                    .unwrap_or_else(|| "default".into())
            }),
        });
    }
    Ok(nics)
}

fn random_mac() -> [u8; 6] {
    crate::ids::generate_mac()
        .ok()
        .and_then(|m| parse_mac(&m))
        .unwrap_or([0x52, 0x54, 0, 0x12, 0x34, 0x56])
}

fn attr_u16(el: &Element, name: &str) -> Result<Option<u16>, String> {
    el.attr(name)
        .map(|v| {
            v.trim()
                .parse::<u16>()
                .map_err(|_| format!("<{} {name}='{v}'> is not a port number", el.name))
        })
        .transpose()
}

/// The user-mode network of a NIC.
fn user_net(nic: &Interface, el: &Element) -> Result<UserNetConfig, String> {
    let mut config = UserNetConfig::default();
    if nic.kind == "user" {
        if let Some(ip) = el
            .children_named("ip")
            .find(|ip| ip.attr("family").unwrap_or("ipv4") == "ipv4")
        {
            let address: Ipv4Addr = ip
                .attr("address")
                .and_then(|a| a.parse().ok())
                .ok_or("<ip> needs an IPv4 address=")?;
            let prefix: u8 = ip
                .attr("prefix")
                .map(|p| p.parse().map_err(|_| format!("bad <ip prefix='{p}'>")))
                .transpose()?
                .unwrap_or(24);
            if !(8..=30).contains(&prefix) {
                return Err(format!("<ip prefix='{prefix}'> must be 8 to 30"));
            }
            config = UserNetConfig::for_network(address, prefix);
        }
    }
    for forward in el.children_named("portForward") {
        let proto = match forward.attr("proto").unwrap_or("tcp") {
            "tcp" => Proto::Tcp,
            "udp" => Proto::Udp,
            other => return Err(format!("<portForward proto='{other}'> is not tcp or udp")),
        };
        let host_addr = match forward.attr("address") {
            Some(a) => a
                .parse()
                .map_err(|_| format!("<portForward address='{a}'> is not an IPv4 address"))?,
            None => Ipv4Addr::UNSPECIFIED,
        };
        for range in forward.children_named("range") {
            let start = attr_u16(range, "start")?.ok_or("<range> needs start=")?;
            let end = attr_u16(range, "end")?.unwrap_or(start);
            let to = attr_u16(range, "to")?.unwrap_or(start);
            if end < start || u32::from(to) + u32::from(end - start) > 65535 {
                return Err(format!(
                    "<range start='{start}' end='{end}' to='{to}'> is not a valid port range"
                ));
            }
            for offset in 0..=(end - start) {
                config.forwards.push(PortForward {
                    proto,
                    host_addr,
                    host_port: start + offset,
                    guest_port: to + offset,
                });
            }
        }
    }
    config.validate().map_err(|e| e.to_string())?;
    Ok(config)
}

/// What the user should know about the NICs of `d`.
pub fn unsupported(d: &Domain, out: &mut Vec<String>) {
    for nic in d.interfaces().unwrap_or_default() {
        let mut what = String::from("network interface");
        if let Some(mac) = &nic.mac {
            what.push_str(&format!(" {mac}"));
        }
        if !connectable(&nic.kind) {
            let on = match &nic.source_bridge {
                Some(bridge) => format!("bridge {bridge}"),
                None => format!("type {}", nic.kind),
            };
            out.push(format!(
                "{what} ({on}) is not connected: only user-mode, network and bridge interfaces are supported yet"
            ));
            continue;
        }
        if let Some(model) = nic.model.as_deref().filter(|m| *m != "virtio") {
            out.push(format!(
                "{what}: model '{model}' is not emulated; it runs as virtio"
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(devices: &str) -> Domain {
        Domain::parse(&format!(
            "<domain type='kvm'><name>n</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices>{devices}</devices></domain>"
        ))
        .unwrap()
    }

    #[test]
    fn user_nic_with_forwards_and_slots() {
        let d = domain(
            "<interface type='user'><mac address='52:54:00:aa:bb:cc'/><model type='virtio'/>\
             <portForward proto='udp' address='127.0.0.1'><range start='5000' end='5001' to='7000'/></portForward>\
             <portForward proto='tcp'><range start='2222' to='22'/></portForward></interface>\
             <interface type='network'><source network='default'/><model type='e1000'/></interface>\
             <interface type='bridge'><source bridge='br0'/><target dev='vireo7'/></interface>\
             <interface type='direct'><source dev='eth0'/></interface>",
        );
        let nics = nic_configs(&d, &[4]).unwrap();
        assert_eq!(nics.len(), 3, "the direct NIC is not connected");
        assert_eq!(
            nics[2].backend,
            NicBackend::Tap {
                bridge: "br0".into(),
                target: Some("vireo7".into())
            }
        );
        assert_eq!(nics[0].mac, [0x52, 0x54, 0, 0xaa, 0xbb, 0xcc]);
        assert_eq!((nics[0].slot, nics[1].slot), (3, 5));
        let NicBackend::User(user) = &nics[0].backend else {
            panic!("a user NIC")
        };
        assert_eq!(user.forwards.len(), 3);
        assert_eq!(user.forwards[1].host_port, 5001);
        assert_eq!(user.forwards[1].guest_port, 7001);
        assert_eq!(user.forwards[2].proto, Proto::Tcp);
        assert_eq!(user.forwards[2].host_addr, Ipv4Addr::UNSPECIFIED);
        assert_eq!(&nics[1].mac[..3], &[0x52, 0x54, 0]);
        let mut notes = Vec::new();
        unsupported(&d, &mut notes);
        assert_eq!(notes.len(), 2, "{notes:?}");
        assert!(notes[0].contains("'e1000' is not emulated; it runs as virtio"));
        assert!(notes[1].contains("type direct"), "{notes:?}");
    }

    #[test]
    fn user_ip_sets_the_addressing() {
        let d = domain(
            "<interface type='user'><ip family='ipv4' address='10.0.5.0' prefix='24'/></interface>",
        );
        let nics = nic_configs(&d, &[]).unwrap();
        let NicBackend::User(user) = &nics[0].backend else {
            panic!("a user NIC")
        };
        assert_eq!(user.gateway, Ipv4Addr::new(10, 0, 5, 1));
        assert_eq!(user.dhcp_start, Ipv4Addr::new(10, 0, 5, 2));
    }

    #[test]
    fn bad_forwards_are_errors() {
        for bad in [
            "<interface type='user'><portForward proto='sctp'><range start='1'/></portForward></interface>",
            "<interface type='user'><portForward><range start='99999'/></portForward></interface>",
            "<interface type='user'><portForward><range start='10' end='5'/></portForward></interface>",
        ] {
            assert!(nic_configs(&domain(bad), &[]).is_err(), "{bad}");
        }
    }
}
