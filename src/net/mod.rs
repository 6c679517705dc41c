//! Network backends: where the Ethernet frames of a guest's NIC go.
//!
//! A NIC model (virtio-net) hands each frame the guest transmits to its
//! [`NetBackend`] and gets the frames the backend receives through the
//! [`FrameSink`] it gave the backend when it was created; the backend
//! calls the sink from its own thread.
//!
//! Backends: [`slirp::SlirpBackend`], user-mode NAT on libslirp (what
//! QEMU's `-netdev user` uses): DHCP, DNS, TCP/UDP/ICMP NAT, host port
//! forwards and TFTP, all inside the VM process, no privileges. It was
//! chosen over passt because passt runs as a separate process that speaks a
//! unix-socket protocol, which would add a child process per VM to start,
//! watch and clean up; libslirp is a library this process links.
//!
//! [`switch::SwitchPort`] connects a NIC to the switch process of an
//! isolated network, shared by the VMs on it.
//!
//! [`tap::TapBackend`] puts a NIC on a host bridge through a TAP device.

pub mod dhcp;
pub mod slirp;
pub mod switch;
pub mod tap;

use std::net::Ipv4Addr;
use std::path::PathBuf;

/// Where a backend sends the frames it receives for the guest. Called from
/// the backend's thread; it must not block for long.
pub trait FrameSink: Send + Sync {
    fn deliver(&self, frame: &[u8]);
}

/// One guest NIC's connection to a network.
pub trait NetBackend: Send {
    /// Sends one Ethernet frame (no virtio header) the guest transmitted.
    /// A frame the backend cannot take is dropped, as a wire would.
    fn send(&mut self, frame: &[u8]);
}

/// Why a backend could not start.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("libslirp refused the network configuration {0}")]
    SlirpInit(String),
    #[error("cannot forward host port {proto} {host}:{port}: it is in use or not allowed")]
    HostForward {
        proto: Proto,
        host: Ipv4Addr,
        port: u16,
    },
    #[error("network backend setup failed: {0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Config(String),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// A host port forwarded to the guest (libvirt `<portForward>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortForward {
    pub proto: Proto,
    /// The host address to listen on (libvirt `address=`; 0.0.0.0 = all).
    pub host_addr: Ipv4Addr,
    pub host_port: u16,
    /// The guest port; the guest address is the first DHCP address.
    pub guest_port: u16,
}

/// A user-mode (NAT) network as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserNetConfig {
    /// The guest network (libvirt's default: 192.168.122.0/24).
    pub network: Ipv4Addr,
    pub prefix: u8,
    /// The gateway; datagrams to it reach the host's loopback.
    pub gateway: Ipv4Addr,
    /// The first address the DHCP server hands out.
    pub dhcp_start: Ipv4Addr,
    /// The DNS server address the guest is told (forwarded to the host's).
    /// It must differ from the gateway: libslirp sends everything addressed
    /// to its DNS address to the host's resolver, so a shared address would
    /// hide the host's loopback.
    pub dns: Ipv4Addr,
    pub forwards: Vec<PortForward>,
    /// A directory served over TFTP, and the boot file DHCP names (PXE).
    pub tftp_root: Option<PathBuf>,
    pub boot_file: Option<String>,
}

impl Default for UserNetConfig {
    /// libvirt's `default` network: 192.168.122.0/24, gateway .1, DHCP
    /// from .2; DNS at .254 (libvirt puts it on the gateway, which libslirp
    /// cannot do while the gateway also reaches the host, see `dns`).
    fn default() -> Self {
        Self {
            network: Ipv4Addr::new(192, 168, 122, 0),
            prefix: 24,
            gateway: Ipv4Addr::new(192, 168, 122, 1),
            dhcp_start: Ipv4Addr::new(192, 168, 122, 2),
            dns: Ipv4Addr::new(192, 168, 122, 254),
            forwards: Vec::new(),
            tftp_root: None,
            boot_file: None,
        }
    }
}

impl UserNetConfig {
    /// The netmask for `prefix`.
    pub fn netmask(&self) -> Ipv4Addr {
        let bits = u32::MAX
            .checked_shl(32 - u32::from(self.prefix.min(32)))
            .unwrap_or(0);
        Ipv4Addr::from(bits)
    }

    /// Checks what libslirp requires: gateway, DNS and DHCP start inside
    /// the network.
    pub fn validate(&self) -> Result<(), NetError> {
        if !(8..=30).contains(&self.prefix) {
            return Err(NetError::Config(format!(
                "a user-mode network needs a prefix from 8 to 30, not /{}",
                self.prefix
            )));
        }
        let mask = u32::from(self.netmask());
        let net = u32::from(self.network) & mask;
        for (what, addr) in [
            ("gateway", self.gateway),
            ("DNS server", self.dns),
            ("DHCP start", self.dhcp_start),
        ] {
            if u32::from(addr) & mask != net {
                return Err(NetError::Config(format!(
                    "the {what} {addr} is outside the network {}/{}",
                    Ipv4Addr::from(net),
                    self.prefix
                )));
            }
        }
        if self.dns == self.gateway {
            return Err(NetError::Config(format!(
                "the DNS server and the gateway cannot share the address {} in user mode",
                self.dns
            )));
        }
        Ok(())
    }

    /// The conventional layout of `network`/`prefix`: gateway first, DHCP
    /// from the second address, DNS on the last one.
    pub fn for_network(network: Ipv4Addr, prefix: u8) -> Self {
        let mut config = Self {
            prefix,
            ..Self::default()
        };
        let mask = u32::from(config.netmask());
        let net = u32::from(network) & mask;
        config.network = Ipv4Addr::from(net);
        config.gateway = Ipv4Addr::from(net.wrapping_add(1));
        config.dhcp_start = Ipv4Addr::from(net.wrapping_add(2));
        config.dns = Ipv4Addr::from((net | !mask).wrapping_sub(1));
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_is_libvirts_default_network() {
        let config = UserNetConfig::default();
        assert_eq!(config.netmask(), Ipv4Addr::new(255, 255, 255, 0));
        config.validate().unwrap();
    }

    #[test]
    fn addresses_outside_the_network_are_refused() {
        let config = UserNetConfig {
            dns: Ipv4Addr::new(10, 0, 2, 3),
            ..Default::default()
        };
        assert!(config.validate().unwrap_err().to_string().contains("DNS"));
        let shared = UserNetConfig {
            dns: Ipv4Addr::new(192, 168, 122, 1),
            ..Default::default()
        };
        assert!(shared.validate().is_err());
    }

    #[test]
    fn layout_of_another_network() {
        let config = UserNetConfig::for_network(Ipv4Addr::new(10, 1, 0, 77), 16);
        assert_eq!(config.network, Ipv4Addr::new(10, 1, 0, 0));
        assert_eq!(config.gateway, Ipv4Addr::new(10, 1, 0, 1));
        assert_eq!(config.dhcp_start, Ipv4Addr::new(10, 1, 0, 2));
        assert_eq!(config.dns, Ipv4Addr::new(10, 1, 255, 254));
        config.validate().unwrap();
    }
}
