//! A small DHCPv4 server (RFC 2131, options RFC 2132) for the isolated
//! networks' switch: it reads the Ethernet frames the guests send and
//! answers DHCPDISCOVER with an OFFER, DHCPREQUEST with an ACK (or a NAK
//! for an address it did not give), and frees a lease on DHCPRELEASE.
//!
//! Addresses come from the network's `<dhcp><range>`, one per MAC
//! address, kept across requests (a guest that asks again gets the same
//! one). Like libvirt's dnsmasq on a network without `<forward>`, it gives
//! no router: an isolated network has no way out.
//!
//! Not here: DHCPINFORM, DHCPDECLINE, relays (giaddr), static hosts,
//! client identifiers other than the hardware address, IPv6.

use std::net::Ipv4Addr;

/// The addressing the server hands out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DhcpConfig {
    /// The server's own address (the network's `<ip address=>`), its
    /// DHCP server identifier.
    pub server: Ipv4Addr,
    pub netmask: Ipv4Addr,
    /// The range handed out, both ends included.
    pub start: Ipv4Addr,
    pub end: Ipv4Addr,
    pub lease_secs: u32,
}

/// One address given to one guest.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Lease {
    pub mac: [u8; 6],
    pub ip: Ipv4Addr,
    /// Seconds since the Unix epoch when it runs out.
    pub expiry: u64,
}

/// The server's MAC address on the switch (locally administered).
pub const SERVER_MAC: [u8; 6] = [0x52, 0x54, 0x00, 0xff, 0xfe, 0x01];

const DISCOVER: u8 = 1;
const OFFER: u8 = 2;
const REQUEST: u8 = 3;
const ACK: u8 = 5;
const NAK: u8 = 6;
const RELEASE: u8 = 7;
const MAGIC: [u8; 4] = [99, 130, 83, 99];

/// The server: its configuration and the leases it gave.
#[derive(Debug)]
pub struct DhcpServer {
    config: DhcpConfig,
    pub leases: Vec<Lease>,
}

/// The parts of a client message the server uses.
struct Request<'a> {
    bootp: &'a [u8],
    msg_type: u8,
    mac: [u8; 6],
    requested: Option<Ipv4Addr>,
    server_id: Option<Ipv4Addr>,
    ciaddr: Ipv4Addr,
}

fn ip_at(b: &[u8], at: usize) -> Option<Ipv4Addr> {
    let bytes: [u8; 4] = b.get(at..at + 4)?.try_into().ok()?;
    Some(Ipv4Addr::from(bytes))
}

/// The UDP payload of an IPv4 frame to port 67, or None.
fn bootp_of(frame: &[u8]) -> Option<&[u8]> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || ihl < 20 || *ip.get(9)? != 17 {
        return None;
    }
    let udp = ip.get(ihl..)?;
    if udp.get(2..4)? != 67u16.to_be_bytes() {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([*udp.get(4)?, *udp.get(5)?]));
    udp.get(8..len.max(8).min(udp.len()))
}

fn parse(frame: &[u8]) -> Option<Request<'_>> {
    let bootp = bootp_of(frame)?;
    if bootp.len() < 240 || bootp[0] != 1 || bootp[1] != 1 || bootp[2] != 6 {
        return None;
    }
    if bootp[236..240] != MAGIC {
        return None;
    }
    let mut req = Request {
        bootp,
        msg_type: 0,
        mac: bootp[28..34].try_into().ok()?,
        requested: None,
        server_id: None,
        ciaddr: ip_at(bootp, 12)?,
    };
    let mut opts = &bootp[240..];
    while let Some((&code, rest)) = opts.split_first() {
        match code {
            0 => opts = rest,
            255 => break,
            _ => {
                let (&len, rest) = rest.split_first()?;
                let value = rest.get(..usize::from(len))?;
                match (code, len) {
                    (53, 1) => req.msg_type = value[0],
                    (50, 4) => req.requested = ip_at(value, 0),
                    (54, 4) => req.server_id = ip_at(value, 0),
                    _ => {}
                }
                opts = &rest[usize::from(len)..];
            }
        }
    }
    (req.msg_type != 0).then_some(req)
}

fn checksum(bytes: &[u8]) -> u16 {
    let mut sum: u32 = bytes
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum();
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !(sum as u16)
}

/// An Ethernet + IPv4 + UDP frame (UDP checksum 0: none, allowed in IPv4).
pub fn udp_frame(
    dst_mac: [u8; 6],
    src_mac: [u8; 6],
    src: (Ipv4Addr, u16),
    dst: (Ipv4Addr, u16),
    payload: &[u8],
) -> Vec<u8> {
    let mut f = Vec::with_capacity(42 + payload.len());
    f.extend_from_slice(&dst_mac);
    f.extend_from_slice(&src_mac);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = (28 + payload.len()) as u16;
    let mut ip = vec![0x45, 0x10, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&src.0.octets());
    ip.extend_from_slice(&dst.0.octets());
    let sum = checksum(&ip);
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    f.extend_from_slice(&src.1.to_be_bytes());
    f.extend_from_slice(&dst.1.to_be_bytes());
    f.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    f.extend_from_slice(&[0, 0]);
    f.extend_from_slice(payload);
    f
}

impl DhcpServer {
    pub fn new(config: DhcpConfig, leases: Vec<Lease>) -> Self {
        Self { config, leases }
    }

    fn in_range(&self, ip: Ipv4Addr) -> bool {
        (u32::from(self.config.start)..=u32::from(self.config.end)).contains(&u32::from(ip))
    }

    fn taken_by_other(&self, ip: Ipv4Addr, mac: [u8; 6], now: u64) -> bool {
        self.leases
            .iter()
            .any(|l| l.ip == ip && l.mac != mac && l.expiry > now)
    }

    /// The address for `mac`: its lease, else the one it asks for if free,
    /// else the lowest free one.
    fn pick(&self, mac: [u8; 6], requested: Option<Ipv4Addr>, now: u64) -> Option<Ipv4Addr> {
        if let Some(lease) = self.leases.iter().find(|l| l.mac == mac) {
            if !self.taken_by_other(lease.ip, mac, now) {
                return Some(lease.ip);
            }
        }
        if let Some(ip) = requested.filter(|&ip| self.in_range(ip)) {
            if !self.taken_by_other(ip, mac, now) {
                return Some(ip);
            }
        }
        (u32::from(self.config.start)..=u32::from(self.config.end))
            .map(Ipv4Addr::from)
            .find(|&ip| !self.taken_by_other(ip, mac, now))
    }

    fn bind(&mut self, mac: [u8; 6], ip: Ipv4Addr, now: u64) {
        self.leases.retain(|l| l.mac != mac && l.ip != ip);
        self.leases.push(Lease {
            mac,
            ip,
            expiry: now + u64::from(self.config.lease_secs),
        });
        self.leases.sort_by_key(|l| u32::from(l.ip));
    }

    /// The reply to `frame` if it is a DHCP message for this server, as an
    /// Ethernet frame, and whether the leases changed. `now` is in seconds
    /// since the Unix epoch.
    pub fn handle(&mut self, frame: &[u8], now: u64) -> (Option<Vec<u8>>, bool) {
        let Some(req) = parse(frame) else {
            return (None, false);
        };
        if req.server_id.is_some_and(|s| s != self.config.server) {
            // The client chose another server (or this is its REQUEST to it).
            return (None, false);
        }
        let (reply_type, yiaddr, changed) = match req.msg_type {
            DISCOVER => match self.pick(req.mac, req.requested, now) {
                Some(ip) => (OFFER, ip, false),
                None => return (None, false),
            },
            REQUEST => {
                let wanted = req
                    .requested
                    .or((!req.ciaddr.is_unspecified()).then_some(req.ciaddr));
                match wanted {
                    Some(ip) if self.in_range(ip) && !self.taken_by_other(ip, req.mac, now) => {
                        self.bind(req.mac, ip, now);
                        (ACK, ip, true)
                    }
                    _ => (NAK, Ipv4Addr::UNSPECIFIED, false),
                }
            }
            RELEASE => {
                let before = self.leases.len();
                self.leases.retain(|l| l.mac != req.mac);
                return (None, self.leases.len() != before);
            }
            _ => return (None, false),
        };
        (Some(self.reply(&req, reply_type, yiaddr)), changed)
    }

    fn reply(&self, req: &Request, msg_type: u8, yiaddr: Ipv4Addr) -> Vec<u8> {
        let mut bootp = vec![0u8; 240];
        bootp[0] = 2; // BOOTREPLY
        bootp[1] = 1;
        bootp[2] = 6;
        bootp[4..8].copy_from_slice(&req.bootp[4..8]); // xid
        bootp[10..12].copy_from_slice(&req.bootp[10..12]); // flags
        bootp[16..20].copy_from_slice(&yiaddr.octets());
        bootp[20..24].copy_from_slice(&self.config.server.octets());
        bootp[28..44].copy_from_slice(&req.bootp[28..44]); // chaddr
        bootp[236..240].copy_from_slice(&MAGIC);
        bootp.extend_from_slice(&[53, 1, msg_type, 54, 4]);
        bootp.extend_from_slice(&self.config.server.octets());
        if msg_type != NAK {
            bootp.extend_from_slice(&[51, 4]);
            bootp.extend_from_slice(&self.config.lease_secs.to_be_bytes());
            bootp.extend_from_slice(&[1, 4]);
            bootp.extend_from_slice(&self.config.netmask.octets());
        }
        bootp.push(255);
        bootp.resize(300, 0);
        // RFC 2131 4.1: broadcast when the client asks for it or cannot
        // take unicast yet (a NAK always); else to its new address.
        let broadcast = req.bootp[10] & 0x80 != 0 || msg_type == NAK;
        let (dst_mac, dst_ip) = if broadcast {
            ([0xff; 6], Ipv4Addr::BROADCAST)
        } else {
            (req.mac, yiaddr)
        };
        udp_frame(
            dst_mac,
            SERVER_MAC,
            (self.config.server, 67),
            (dst_ip, 68),
            &bootp,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: [u8; 6] = [0x52, 0x54, 0, 1, 2, 3];

    fn config() -> DhcpConfig {
        DhcpConfig {
            server: Ipv4Addr::new(10, 5, 0, 1),
            netmask: Ipv4Addr::new(255, 255, 255, 0),
            start: Ipv4Addr::new(10, 5, 0, 10),
            end: Ipv4Addr::new(10, 5, 0, 11),
            lease_secs: 3600,
        }
    }

    fn client(mac: [u8; 6], options: &[u8]) -> Vec<u8> {
        let mut bootp = vec![0u8; 240];
        bootp[0] = 1;
        bootp[1] = 1;
        bootp[2] = 6;
        bootp[4..8].copy_from_slice(&[9, 8, 7, 6]);
        bootp[28..34].copy_from_slice(&mac);
        bootp[236..240].copy_from_slice(&MAGIC);
        bootp.extend_from_slice(options);
        bootp.push(255);
        udp_frame(
            [0xff; 6],
            mac,
            (Ipv4Addr::UNSPECIFIED, 68),
            (Ipv4Addr::BROADCAST, 67),
            &bootp,
        )
    }

    fn reply_of(frame: &[u8]) -> (u8, Ipv4Addr, [u8; 6]) {
        let bootp = &frame[42..];
        assert_eq!(&frame[36..38], &68u16.to_be_bytes());
        assert_eq!(bootp[0], 2);
        assert_eq!(&bootp[4..8], &[9, 8, 7, 6]);
        assert_eq!(&bootp[240..243], &[53, 1, bootp[242]]);
        let dst: [u8; 6] = frame[..6].try_into().unwrap();
        (bootp[242], ip_at(bootp, 16).unwrap(), dst)
    }

    #[test]
    fn discover_request_ack_and_the_same_address_again() {
        let mut server = DhcpServer::new(config(), Vec::new());
        let (offer, changed) = server.handle(&client(MAC, &[53, 1, DISCOVER]), 100);
        assert!(!changed);
        let (kind, ip, dst) = reply_of(&offer.unwrap());
        assert_eq!((kind, ip, dst), (OFFER, Ipv4Addr::new(10, 5, 0, 10), MAC));
        let (ack, changed) = server.handle(
            &client(
                MAC,
                &[53, 1, REQUEST, 50, 4, 10, 5, 0, 10, 54, 4, 10, 5, 0, 1],
            ),
            100,
        );
        assert!(changed);
        assert_eq!(reply_of(&ack.unwrap()).0, ACK);
        assert_eq!(server.leases.len(), 1);
        assert_eq!(server.leases[0].expiry, 3700);
        // A second guest gets the next address; a third none.
        let other = [0x52, 0x54, 0, 9, 9, 9];
        let (offer, _) = server.handle(&client(other, &[53, 1, DISCOVER]), 100);
        assert_eq!(reply_of(&offer.unwrap()).1, Ipv4Addr::new(10, 5, 0, 11));
        server.handle(&client(other, &[53, 1, REQUEST, 50, 4, 10, 5, 0, 11]), 100);
        let (none, _) = server.handle(&client([2; 6], &[53, 1, DISCOVER]), 100);
        assert!(none.is_none());
        // Asking for a taken address is refused.
        let (nak, _) = server.handle(&client([2; 6], &[53, 1, REQUEST, 50, 4, 10, 5, 0, 10]), 100);
        let (kind, _, dst) = reply_of(&nak.unwrap());
        assert_eq!((kind, dst), (NAK, [0xff; 6]));
        // The first guest asks again: the same address.
        let (offer, _) = server.handle(&client(MAC, &[53, 1, DISCOVER]), 200);
        assert_eq!(reply_of(&offer.unwrap()).1, Ipv4Addr::new(10, 5, 0, 10));
    }

    #[test]
    fn release_frees_and_other_servers_are_left_alone() {
        let mut server = DhcpServer::new(config(), Vec::new());
        server.handle(&client(MAC, &[53, 1, REQUEST, 50, 4, 10, 5, 0, 11]), 0);
        assert_eq!(server.leases[0].ip, Ipv4Addr::new(10, 5, 0, 11));
        let (reply, _) = server.handle(
            &client(
                MAC,
                &[53, 1, REQUEST, 50, 4, 10, 5, 0, 11, 54, 4, 1, 1, 1, 1],
            ),
            0,
        );
        assert!(reply.is_none());
        let (_, changed) = server.handle(&client(MAC, &[53, 1, RELEASE]), 0);
        assert!(changed && server.leases.is_empty());
        // Not DHCP at all.
        assert!(server.handle(&[0u8; 60], 0).0.is_none());
        assert!(server.handle(&client(MAC, &[53, 1])[..100], 0).0.is_none());
    }
}
