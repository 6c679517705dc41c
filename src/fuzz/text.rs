//! What clients and users send as text: the QMP JSON stream on the control
//! socket, and domain, network, pool, volume and snapshot XML (from
//! `define`, `net-define`, `pool-define`, `vol-create`, a remote host or
//! a definition file on disk).

use crate::control::protocol::{
    encode_error, parse_request, CommandError, Piece, Splitter, MAX_MESSAGE,
};
use crate::definitions::NetworkDef;
use crate::domain::snapshot::SnapshotDef;
use crate::domain::Domain;
use crate::storage::pools::{PoolDef, VolumeDef};

/// The QMP stream, fed in pieces whose sizes come from the first byte (as
/// a socket delivers them), every complete value checked as a command.
pub fn qmp(data: &[u8]) {
    let (chunk, stream) = match data.split_first() {
        Some((first, rest)) => (usize::from(*first).max(1), rest),
        None => return,
    };
    let mut splitter = Splitter::new(MAX_MESSAGE);
    let mut pieces = Vec::new();
    for part in stream.chunks(chunk) {
        splitter.feed(part, &mut pieces);
        for piece in pieces.drain(..) {
            if let Piece::Message(message) = piece {
                if let Err(bad) = parse_request(&message) {
                    let _ = encode_error(bad.id, &CommandError::generic(bad.desc));
                }
            }
        }
    }
}

/// Seeds: what `qemu.qmp` and a person with `socat` send.
pub fn qmp_seeds() -> Vec<Vec<u8>> {
    let mut whole = vec![255];
    whole.extend(
        br#"{"execute":"qmp_capabilities"}{"execute":"query-status","id":1}
{"execute": "query-block", "id": "x"}
{"execute":"blockdev-change-medium","arguments":{"id":"ide1-cd0","filename":"/tmp/a.iso"}}
{"execute":"human-monitor-command","arguments":{"command-line":"info status"},"id":[1,{"a":null}]}
"#,
    );
    let mut broken = vec![3];
    broken.extend(b"{\"execute\":\"x\x01\"}\n]}{\"execute\":\"quit\", \"arguments\": 5}\n[1,2,3]\n\"\\u00e9\xff\"\n");
    vec![whole, broken]
}

/// The first byte picks the document kind; the rest is its text. A
/// definition that parses is written back and must parse again.
pub fn xml(data: &[u8]) {
    let Some((kind, text)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(text);
    match kind % 5 {
        0 => {
            if let Ok(domain) = Domain::parse(&text) {
                let _ = Domain::parse(&domain.to_xml());
            }
        }
        1 => {
            if let Ok(network) = NetworkDef::parse(&text) {
                let _ = NetworkDef::parse(&network.to_xml());
            }
        }
        2 => {
            if let Ok(pool) = PoolDef::from_xml(&text) {
                let _ = PoolDef::from_xml(&pool.to_xml(None));
            }
        }
        3 => {
            if let Ok(volume) = VolumeDef::from_xml(&text) {
                let _ = VolumeDef::from_xml(&volume.to_xml());
            }
        }
        _ => {
            if let Ok(snapshot) = SnapshotDef::parse(&text) {
                let _ = SnapshotDef::parse(&snapshot.to_xml(true));
            }
        }
    }
}

/// Seeds: the domain fixtures of the test suite, and a network, pool,
/// volume and snapshot as virsh users write them.
pub fn xml_seeds() -> Vec<Vec<u8>> {
    let doc = |kind: u8, text: &str| {
        let mut v = vec![kind];
        v.extend(text.as_bytes());
        v
    };
    vec![
        doc(0, include_str!("../../tests/data/domain/everything-in.xml")),
        doc(0, include_str!("../../tests/data/domain/kernel-boot-in.xml")),
        doc(0, include_str!("../../tests/data/minimal.domain.xml")),
        doc(
            1,
            "<network><name>default</name><forward mode='nat'/><bridge name='virbr0'/>\
             <ip address='192.168.122.1' netmask='255.255.255.0'><dhcp>\
             <range start='192.168.122.2' end='192.168.122.254'/></dhcp></ip></network>",
        ),
        doc(
            2,
            "<pool type='dir'><name>images</name><target><path>/var/lib/vireo/images</path>\
             <permissions><mode>0711</mode></permissions></target></pool>",
        ),
        doc(
            3,
            "<volume><name>disk.qcow2</name><capacity unit='G'>10</capacity>\
             <allocation>0</allocation><target><format type='qcow2'/></target>\
             <backingStore><path>/var/lib/base.qcow2</path><format type='qcow2'/></backingStore></volume>",
        ),
        doc(
            4,
            "<domainsnapshot><name>before-upgrade</name><description>clean</description>\
             <creationTime>1700000000</creationTime><state>shutoff</state></domainsnapshot>",
        ),
    ]
}
