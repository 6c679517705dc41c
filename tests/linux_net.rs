//! The network as Linux's `virtio_net` driver and busybox's tools see it:
//! a lease from Vireo's DHCP server on the NAT, a 4 MiB download from an
//! HTTP server on the host, a host port forwarded to a guest's listener,
//! and two guests on an isolated network that reach each other and not the
//! host.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::linux::{test_linux, Boot, LinuxGuest, COMMAND_TIMEOUT};
use common::{kvm_available, sha256_hex, Home, NetworkGuard};

/// The guest port the forward leads to.
const GUEST_PORT: u16 = 8080;

/// 4 MiB that no compression or repetition could fake: a xorshift stream.
fn download_body() -> Vec<u8> {
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..4 << 20)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

/// An HTTP server on the host that answers every GET with `body`, on
/// `address` (port chosen by the system); returns the port.
fn serve_http(address: &str, body: Vec<u8>) -> u16 {
    let listener = TcpListener::bind((address, 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    let body = Arc::new(body);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let body = body.clone();
            std::thread::spawn(move || answer_get(stream, &body));
        }
    });
    port
}

fn answer_get(mut stream: TcpStream, body: &[u8]) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut line = String::new();
    // The request line and headers, up to the blank line.
    while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
        if line == "\r\n" || line == "\n" {
            break;
        }
        line.clear();
    }
    let head = format!(
        "HTTP/1.0 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body);
}

/// A TCP port on 127.0.0.1 nobody listens on now, below Linux's ephemeral
/// range so no `bind(0)` elsewhere is handed it meanwhile.
fn free_port_below_ephemeral() -> u16 {
    let start = 20000 + (std::process::id() % 10000) as u16;
    (start..32000)
        .find(|port| TcpListener::bind(("127.0.0.1", *port)).is_ok())
        .expect("a free TCP port below 32768")
}

/// Gets a lease with busybox udhcpc on eth0; returns udhcpc's words. The
/// hook that configures the lease is named: Debian's busybox looks for it
/// in /etc/udhcpc/, upstream's in /usr/share/udhcpc/, where the test guest
/// has it.
fn dhcp(guest: &mut LinuxGuest) -> String {
    guest.run_timeout(
        "udhcpc -i eth0 -n -q -t 10 -T 3 -s /usr/share/udhcpc/default.script",
        Duration::from_secs(180),
    )
}

/// The guest's IPv4 address on eth0.
fn address(guest: &mut LinuxGuest) -> String {
    let out = guest.run("ip -4 -o addr show dev eth0");
    out.split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|cidr| cidr.split('/').next())
        .unwrap_or_else(|| panic!("no IPv4 address on eth0: {out}"))
        .to_string()
}

#[test]
fn nat_lease_download_and_port_forward_through_virtio_net() {
    if !kvm_available() {
        return;
    }
    let Some(linux) = test_linux() else { return };
    let body = download_body();
    let http_port = serve_http("127.0.0.1", body.clone());
    let forward_port = free_port_below_ephemeral();
    let domain = linux.domain("linux-nat", Boot::Pvh).device(&format!(
        "<interface type='user'><mac address='52:54:00:4c:49:4e'/><model type='virtio'/>\
         <portForward proto='tcp' address='127.0.0.1'><range start='{forward_port}' to='{GUEST_PORT}'/></portForward></interface>"
    ));
    let mut guest = LinuxGuest::boot(&domain);

    // The lease: the NAT's first address, from its DHCP server.
    let said = dhcp(&mut guest);
    assert!(
        said.contains("lease of 192.168.122.2 obtained"),
        "{said}\n{}",
        guest.report()
    );
    assert_eq!(address(&mut guest), "192.168.122.2");
    assert!(guest.run("ip route").contains("default via 192.168.122.1"));

    // 4 MiB from the host's loopback, which the gateway address reaches.
    guest.run_timeout(
        &format!("wget -q -O /tmp/blob http://192.168.122.1:{http_port}/blob"),
        Duration::from_secs(300),
    );
    let sum = guest.run("sha256sum /tmp/blob");
    assert_eq!(
        sum.split_whitespace().next(),
        Some(sha256_hex(&body).as_str()),
        "the download differs"
    );

    // A host port forwarded to `nc -l` in the guest. The host knocks until
    // the listener is up (before that the NAT resets the connection).
    let done = Arc::new(AtomicBool::new(false));
    let knocking = done.clone();
    let knocker = std::thread::spawn(move || {
        while !knocking.load(Ordering::Relaxed) {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", forward_port)) {
                let _ = stream.write_all(b"hello-through-the-forward\n");
                let _ = stream.shutdown(Shutdown::Write);
                let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
                let _ = stream.read_to_end(&mut Vec::new());
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    });
    let got = guest.run_timeout(
        &format!("nc -l -p {GUEST_PORT} </dev/null"),
        COMMAND_TIMEOUT,
    );
    done.store(true, Ordering::Relaxed);
    knocker.join().unwrap();
    assert_eq!(got, "hello-through-the-forward\n");

    guest.check_dmesg();
}

#[test]
fn two_linux_guests_on_an_isolated_network_ping_each_other_and_not_the_host() {
    if !kvm_available() {
        return;
    }
    let Some(linux) = test_linux() else { return };
    let home = Home::new();
    let xml = home.path("lab.xml");
    // No <forward>: an isolated network.
    std::fs::write(
        &xml,
        "<network><name>lab</name><ip address='10.51.0.1' prefix='24'><dhcp><range start='10.51.0.10' end='10.51.0.20'/></dhcp></ip></network>",
    )
    .unwrap();
    home.ok(&["net-define", xml.to_str().unwrap()]);
    home.ok(&["net-start", "lab"]);
    let _guard = NetworkGuard(&home, "lab");
    // A server on every host address: nothing on the isolated network may
    // reach it.
    let http_port = serve_http("0.0.0.0", b"the host".to_vec());

    let env = [("VIREO_HOME", home.dir.path().to_str().unwrap())];
    let domain = |name: &str, mac: &str| {
        linux.domain(name, Boot::Pvh).device(&format!(
            "<interface type='network'><mac address='{mac}'/><source network='lab'/><model type='virtio'/></interface>"
        ))
    };
    let (a, b) = (
        domain("linux-a", "52:54:00:aa:00:11"),
        domain("linux-b", "52:54:00:bb:00:12"),
    );
    // Both boot at once: each boot is half a minute of emulated kernel.
    let (mut a, mut b) = std::thread::scope(|scope| {
        let a = scope.spawn(|| LinuxGuest::boot_with_env(&a, &[], &env));
        let b = scope.spawn(|| LinuxGuest::boot_with_env(&b, &[], &env));
        (a.join().unwrap(), b.join().unwrap())
    });
    for guest in [&mut a, &mut b] {
        let said = dhcp(guest);
        assert!(said.contains("lease of 10.51.0."), "{said}");
    }
    let (address_a, address_b) = (address(&mut a), address(&mut b));
    assert_ne!(address_a, address_b);

    for (guest, peer) in [(&mut a, &address_b), (&mut b, &address_a)] {
        let out = guest.run_timeout(&format!("ping -c 3 -w 30 {peer}"), Duration::from_secs(60));
        assert!(out.contains("3 packets received"), "{out}");
    }
    // The switch's own address leads nowhere, and nor does the host's
    // server behind it.
    let (status, out) = a.run_status_timeout("ping -c 2 -w 6 10.51.0.1", Duration::from_secs(60));
    assert_ne!(
        status, 0,
        "the host answered a ping on an isolated network:\n{out}"
    );
    let (status, out) = a.run_status_timeout(
        &format!("timeout 20 wget -q -O - http://10.51.0.1:{http_port}/"),
        Duration::from_secs(60),
    );
    assert_ne!(status, 0, "the host's server answered:\n{out}");
    assert!(!out.contains("the host"), "{out}");

    a.check_dmesg();
    b.check_dmesg();
}
