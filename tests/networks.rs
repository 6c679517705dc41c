//! Network definitions and NICs through the command line, as virsh users
//! type them; and a NIC on a defined network getting that network's DHCP
//! range (the guest of tests/network.rs is not needed: `start` refuses an
//! inactive network before any guest runs).

mod common;

use common::Home;

const LAB: &str = "<network>\n  <name>lab</name>\n  <forward mode='nat'/>\n  <ip address='10.9.0.1' prefix='24'>\n    <dhcp>\n      <range start='10.9.0.50' end='10.9.0.99'/>\n    </dhcp>\n  </ip>\n</network>\n";

#[test]
fn default_network_and_the_net_verbs() {
    let home = Home::new();
    assert_eq!(
        home.ok(&["net-list", "--all"]),
        " Name      State    Autostart   Persistent\n--------------------------------------------\n default   active   yes         yes\n\n"
    );
    let info = home.ok(&["net-info", "default"]);
    assert!(
        info.starts_with("Name:           default\nUUID:           "),
        "{info}"
    );
    assert!(info.contains("\nActive:         yes\nPersistent:     yes\nAutostart:      yes\nBridge:         virbr0\n"), "{info}");
    assert!(home
        .ok(&["net-dumpxml", "default"])
        .contains("<range start='192.168.122.2' end='192.168.122.254'/>"));

    let file = home.path("lab.xml");
    std::fs::write(&file, LAB).unwrap();
    assert_eq!(
        home.ok(&["net-define", file.to_str().unwrap()]),
        format!("Network lab defined from {}\n\n", file.display())
    );
    assert!(
        !home.ok(&["net-list"]).contains("lab"),
        "inactive networks need --all"
    );
    assert!(home
        .ok(&["net-list", "--all"])
        .contains(" lab       inactive   no          yes\n"));
    assert_eq!(home.ok(&["net-start", "lab"]), "Network lab started\n\n");
    assert!(home.fails(&["net-start", "lab"]).contains("already active"));
    assert_eq!(
        home.ok(&["net-autostart", "lab"]),
        "Network lab marked as autostarted\n\n"
    );
    assert!(home
        .ok(&["net-list"])
        .contains(" lab       active   yes         yes\n"));
    assert_eq!(
        home.ok(&["net-destroy", "lab"]),
        "Network lab destroyed\n\n"
    );
    assert!(home
        .ok(&["net-list", "--all"])
        .contains(" lab       inactive   yes         yes\n"));
    assert_eq!(
        home.ok(&["net-undefine", "lab"]),
        "Network lab has been undefined\n\n"
    );
    assert!(home
        .fails(&["net-info", "lab"])
        .contains("Network not found"));
    let isolated = home.path("iso.xml");
    std::fs::write(&isolated, "<network><name>iso</name></network>").unwrap();
    home.ok(&["net-define", isolated.to_str().unwrap()]);
    // An isolated network runs its switch until net-destroy.
    assert_eq!(home.ok(&["net-start", "iso"]), "Network iso started\n\n");
    let started = home.ok(&["net-list"]);
    let stopped = home.run(&["net-destroy", "iso"]);
    assert!(started.contains(" iso "), "{started}");
    assert!(stopped.status.success());
    assert!(!home.path("run/net-iso.sock").exists());
    let bridged = home.path("br.xml");
    std::fs::write(
        &bridged,
        "<network><name>br</name><forward mode='passthrough'/></network>",
    )
    .unwrap();
    home.ok(&["net-define", bridged.to_str().unwrap()]);
    assert!(home
        .fails(&["net-start", "br"])
        .contains("not supported yet"));
}

#[test]
fn interfaces_attach_list_detach() {
    let home = Home::new();
    let xml = home.path("vm.xml");
    std::fs::write(
        &xml,
        "<domain type='kvm'><name>vm</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices><interface type='network'><source network='default'/></interface></devices></domain>",
    )
    .unwrap();
    home.ok(&["define", xml.to_str().unwrap()]);
    let list = home.ok(&["domiflist", "vm"]);
    let mac = list
        .lines()
        .nth(2)
        .and_then(|l| l.split_whitespace().last())
        .unwrap()
        .to_string();
    assert!(
        mac.starts_with("52:54:00:"),
        "a MAC is stored at define: {list}"
    );
    assert_eq!(
        home.ok(&[
            "attach-interface",
            "vm",
            "--type",
            "user",
            "--mac",
            "52:54:00:00:00:02",
            "--config"
        ]),
        "Interface attached successfully\n\n"
    );
    let list = home.ok(&["domiflist", "vm"]);
    assert_eq!(
        list,
        format!(
            " Interface   Type      Source    Model    MAC\n-------------------------------------------------------------\n -           network   default   -        {mac}\n -           user      -         virtio   52:54:00:00:00:02\n\n"
        )
    );
    assert!(home
        .fails(&["detach-interface", "vm", "--type", "bridge", "--config"])
        .contains("No interface found"));
    assert_eq!(
        home.ok(&["detach-interface", "vm", "--type", "network", "--config"]),
        "Interface detached successfully\n\n"
    );
    assert_eq!(home.ok(&["domiflist", "vm"]).lines().count(), 4);
}

#[test]
fn a_vm_on_an_inactive_network_does_not_start() {
    let home = Home::new();
    let file = home.path("lab.xml");
    std::fs::write(&file, LAB).unwrap();
    home.ok(&["net-define", file.to_str().unwrap()]);
    let xml = home.path("vm.xml");
    std::fs::write(
        &xml,
        "<domain type='kvm'><name>vm</name><memory unit='MiB'>64</memory><vcpu>1</vcpu><os><type>hvm</type></os><devices><interface type='network'><source network='lab'/></interface></devices></domain>",
    )
    .unwrap();
    home.ok(&["define", xml.to_str().unwrap()]);
    assert!(home
        .fails(&["start", "vm"])
        .contains("network 'lab' is not active"));
}

#[test]
fn net_create_makes_a_transient_network_that_destroy_removes() {
    let home = Home::new();
    let file = home.path("lab.xml");
    std::fs::write(&file, LAB).unwrap();
    assert_eq!(
        home.ok(&["net-create", file.to_str().unwrap()]),
        format!("Network lab created from {}\n\n", file.display())
    );
    assert!(
        home.ok(&["net-list"])
            .contains(" lab       active   no          no\n"),
        "running at once, not persistent"
    );
    assert!(home
        .ok(&["net-info", "lab"])
        .contains("\nActive:         yes\nPersistent:     no\nAutostart:      no\n"));
    assert!(home.fails(&["net-autostart", "lab"]).contains("transient"));
    assert!(home.fails(&["net-undefine", "lab"]).contains("transient"));
    assert!(home
        .fails(&["net-create", file.to_str().unwrap()])
        .contains("already exists"));
    assert_eq!(
        home.ok(&["net-destroy", "lab"]),
        "Network lab destroyed\n\n"
    );
    assert!(home
        .fails(&["net-info", "lab"])
        .contains("Network not found"));
    assert!(!home.ok(&["net-list", "--all"]).contains("lab"));
}
