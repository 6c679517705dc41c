//! `vireo -c URI` against libvirt's own test driver (`test:///default`,
//! in libvirt's client library, no daemon): every verb prints what `virsh
//! -c test:///default` prints for it, byte for byte, and the lifecycle
//! round-trips through the same [`Engine`] the window uses.
//!
//! Each process that opens `test:///default` gets a fresh copy of the
//! driver's state, so the round trip runs on one connection in this
//! process rather than across `vireo` runs.
//!
//! And in the window, under Xvfb: Add Connection… driven as a person
//! drives it (its fields, the URI it builds, a host that is not there),
//! the connection's VMs in the sidebar, and the connection remembered and
//! made again when the window opens next.

mod common;

use std::time::{Duration, Instant};

use common::desktop::{artifacts, App, Display};
use common::{require_program, Home};
use vireo::connection::{self, DomainState, Engine, ErrorKind, Power};

const URI: &str = "test:///default";

fn virsh(args: &[&str]) -> std::process::Output {
    std::process::Command::new("virsh")
        .arg("-c")
        .arg(URI)
        .args(args)
        .output()
        .expect("run virsh")
}

/// Runs `args` under virsh and under `vireo -c`, and wants the same
/// standard output and the same success.
fn same_as_virsh(home: &Home, args: &[&str]) {
    let expected = virsh(args);
    let mut with_uri = vec!["-c", URI];
    with_uri.extend_from_slice(args);
    let got = home.run(&with_uri);
    let text = |o: &std::process::Output| {
        format!(
            "status {}\n--- stdout\n{}--- stderr\n{}",
            o.status.success(),
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        )
    };
    let differs = format!(
        "`{}` differs from virsh;\nvirsh:\n{}\nvireo:\n{}",
        args.join(" "),
        text(&expected),
        text(&got)
    );
    assert_eq!(expected.status.success(), got.status.success(), "{differs}");
    if expected.status.success() {
        assert_eq!(expected.stdout, got.stdout, "{differs}");
    } else {
        // virsh says "error: WHY" (and an empty line on stdout); Vireo
        // says the same WHY after its own name.
        let why = String::from_utf8_lossy(&expected.stderr);
        let why = why
            .lines()
            .last()
            .unwrap_or("")
            .trim_start_matches("error: ");
        assert!(
            String::from_utf8_lossy(&got.stderr).contains(why),
            "{differs}"
        );
    }
}

#[test]
fn every_verb_prints_what_virsh_prints() {
    require_program("virsh");
    let home = Home::new();
    let shot = home.path("shot.png");
    let shot = shot.to_str().unwrap();
    for args in [
        &["list", "--all"][..],
        &["list"],
        &["list", "--inactive"],
        &["list", "--all", "--name"],
        &["list", "--uuid"],
        &["dumpxml", "test"],
        &["domstate", "test"],
        &["domid", "test"],
        &["domuuid", "test"],
        &["pool-list", "--all"],
        &["pool-list", "--all", "--details"],
        &["vol-list", "default-pool"],
        &["vol-list", "default-pool", "--details"],
        &["net-list", "--all"],
        &["suspend", "test"],
        &["shutdown", "test"],
        &["reboot", "test"],
        &["destroy", "test"],
        &["undefine", "test"],
        &["start", "test"],
        &["vncdisplay", "test"],
        &[
            "vol-create-as",
            "default-pool",
            "disk1",
            "1G",
            "--format",
            "qcow2",
        ],
        &["screenshot", "test", shot],
    ] {
        same_as_virsh(&home, args);
    }
}

#[test]
fn dominfo_matches_virsh_but_for_the_cpu_time_it_is_asked_at() {
    require_program("virsh");
    let home = Home::new();
    let ours = home.ok(&["-c", URI, "dominfo", "test"]);
    let theirs = String::from_utf8(virsh(&["dominfo", "test"]).stdout).unwrap();
    // The test driver's CPU time is the host's clock: it moves between runs.
    let steady = |text: &str| {
        text.lines()
            .filter(|l| !l.starts_with("CPU time:"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(steady(&ours), steady(&theirs));
    assert!(ours.contains("\nCPU time:"), "{ours}");
    assert!(ours.ends_with("(enforcing)\n\n"), "{ours}");
}

#[test]
fn the_uri_comes_from_the_environment_as_virsh_reads_it() {
    let home = Home::new();
    for var in ["VIREO_DEFAULT_URI", "LIBVIRT_DEFAULT_URI"] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_vireo"))
            .args(["list", "--all", "--name"])
            .env("VIREO_HOME", home.dir.path())
            .env_remove("VIREO_DEFAULT_URI")
            .env_remove("LIBVIRT_DEFAULT_URI")
            .env(var, URI)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "test\n\n",
            "{var}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // Vireo's own URI is Vireo's own store: empty here (virsh's blank
    // line alone).
    assert_eq!(
        home.ok(&["-c", "vireo:///session", "list", "--all", "--name"]),
        "\n"
    );
    // A verb that only makes sense on this computer is refused by name.
    let refused = home.fails(&["-c", URI, "domblklist", "test"]);
    assert!(
        refused.contains("not available on test:///default"),
        "{refused}"
    );
}

#[test]
fn lifecycle_round_trips_on_one_connection() {
    let engine = connection::open(URI).expect("open the test driver");
    let state = |name: &str| engine.lookup(name).unwrap().state;
    assert_eq!(state("test"), DomainState::Running);
    engine.power("test", Power::Destroy).unwrap();
    assert_eq!(state("test"), DomainState::ShutOff);
    engine.power("test", Power::Start).unwrap();
    assert_eq!(state("test"), DomainState::Running);
    engine.power("test", Power::Suspend).unwrap();
    assert_eq!(state("test"), DomainState::Paused);
    engine.power("test", Power::Resume).unwrap();
    assert_eq!(state("test"), DomainState::Running);

    let xml = "<domain type='test'><name>made</name><memory unit='MiB'>64</memory>\
               <os><type>hvm</type></os></domain>";
    assert_eq!(engine.define(xml).unwrap(), "made");
    let names: Vec<String> = engine.list().unwrap().into_iter().map(|r| r.name).collect();
    assert_eq!(names, ["test", "made"], "running by id, then the rest");
    assert_eq!(state("made"), DomainState::ShutOff);
    engine.power("made", Power::Start).unwrap();
    let row = engine.lookup("made").unwrap();
    assert!(
        row.id.is_some() && row.state == DomainState::Running,
        "{row:?}"
    );
    assert_eq!(
        engine.lookup(&row.id.unwrap().to_string()).unwrap().name,
        "made"
    );
    assert_eq!(engine.lookup(&row.uuid).unwrap().name, "made");
    engine.power("made", Power::Destroy).unwrap();
    engine.undefine("made").unwrap();
    let gone = engine.lookup("made").unwrap_err();
    assert_eq!(gone.kind, ErrorKind::NoDomain, "{gone}");

    // A second start is refused as the state it is in, in a sentence.
    let again = engine.power("test", Power::Start).unwrap_err();
    assert_eq!(again.kind, ErrorKind::InvalidState, "{again}");
}

#[test]
fn a_host_that_is_not_there_is_reported_in_a_sentence() {
    let error = match connection::open("qemu+tcp://127.0.0.1:1/system") {
        Ok(_) => panic!("port 1 has no libvirt daemon"),
        Err(e) => e,
    };
    assert_eq!(error.kind, ErrorKind::Unreachable, "{error}");
    assert!(
        error
            .to_string()
            .starts_with("The host cannot be reached: "),
        "{error}"
    );
}

#[test]
fn volumes_upload_and_download_through_the_stream_api() {
    let engine = connection::open(URI).expect("open the test driver");
    let path = engine
        .create_volume("default-pool", "blob.img", 4096, "raw")
        .unwrap();
    let rows = engine.volumes("default-pool").unwrap();
    assert!(
        rows.iter().any(|v| v.name == "blob.img" && v.path == path),
        "{rows:?}"
    );
    let mut seen = 0;
    let uploaded = engine.upload(&path, &mut &[7u8; 4096][..], 4096, &mut |n| seen = n);
    // The test driver has no volume data: it says so, rather than
    // pretending (a real daemon is exercised in tests/libvirt_qemu.rs).
    if let Err(e) = uploaded {
        assert_eq!(e.kind, ErrorKind::Unsupported, "{e}");
    } else {
        assert_eq!(seen, 4096);
    }
    let _: &dyn Engine = engine.as_ref();
}

/// Quits with Ctrl+Q and waits until the window is gone.
fn quit(display: &Display) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !display.main_window().is_empty() {
        assert!(Instant::now() < deadline, "the window did not close");
        display.key("ctrl+q");
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// Opens Add Connection… from the main menu.
fn open_add_connection(display: &Display, dir: &std::path::Path) {
    // The "Add _Connection…" item.
    display.pick_from_main_menu(dir, "c", "Add Connection");
}

/// The screen's text without spaces: tesseract puts some inside URIs.
fn squeezed(seen: &str) -> String {
    seen.chars().filter(|c| !c.is_whitespace()).collect()
}

#[test]
fn add_connection_builds_the_uri_connects_and_is_remembered() {
    require_program("virsh");
    let home = Home::new();
    let display = Display::start();
    let dir = artifacts("libvirt-add-connection");
    let app = App::start(&display, home.dir.path(), &[]);

    // The fields build the URI virt-manager would: over SSH, with a user.
    open_add_connection(&display, &dir);
    let seen = display.read_screen(&dir, "eng");
    assert!(squeezed(&seen).contains("qemu:///system"), "{seen}");
    display.click_text(&dir, "over SSH", Duration::from_secs(10));
    display.click_text(&dir, "User name", Duration::from_secs(10));
    display.type_text("admin");
    display.click_text(&dir, "Host name", Duration::from_secs(10));
    display.type_text("example.test");
    common::wait::poll(Duration::from_secs(20), Duration::from_millis(500), || {
        let seen = display.read_screen(&dir, "eng");
        if squeezed(&seen).contains("qemu+ssh://admin@example.test/system") {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .unwrap_or_else(|seen| panic!("the SSH URI was never shown; the screen read:\n{seen}"));

    // Back to this computer, libvirt's test driver: connect.
    display.click_text(&dir, "over SSH", Duration::from_secs(10));
    display.click_text(&dir, "Hypervisor", Duration::from_secs(10));
    display.click_text(&dir, "test driver", Duration::from_secs(10));
    common::wait::poll(Duration::from_secs(20), Duration::from_millis(500), || {
        let seen = display.read_screen(&dir, "eng");
        if squeezed(&seen).contains("test:///default") {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .unwrap_or_else(|seen| panic!("the test driver's URI was never shown:\n{seen}"));
    // The header's Connect, not the title's "Connection".
    display.click_word(&dir, "Connect", Duration::from_secs(10));

    // Its group in the sidebar: connected, with the driver's own VM.
    let seen = display.wait_for_sidebar_text(&dir, "Connected", Duration::from_secs(60));
    assert!(seen.contains("Test"), "{seen}");
    // Its VM (the row under the group's title "Test"): the host's page,
    // with the details libvirt gives.
    display.click_in_sidebar(&dir, "test", Duration::from_secs(10));
    display.click_word(&dir, "Details", Duration::from_secs(30));
    let seen = display.wait_for_text(&dir, "Start with the host", Duration::from_secs(30));
    assert!(seen.contains("UUID"), "{seen}");

    // A host that is not there: a sentence in the sidebar, the window stays.
    open_add_connection(&display, &dir);
    display.click_text(&dir, "Custom URI", Duration::from_secs(10));
    display.type_text("qemu+tcp://127.0.0.1:1/system");
    display.click_word(&dir, "Connect", Duration::from_secs(10));
    let seen = display.wait_for_sidebar_text(&dir, "Not connected", Duration::from_secs(60));
    assert!(seen.contains("The host cannot be"), "{seen}");
    assert!(seen.contains("Connection refused"), "{seen}");
    assert!(!display.main_window().is_empty());

    // Both are remembered, in the order they were added.
    let settings = std::fs::read_to_string(home.path("config/settings.ini")).unwrap();
    assert!(
        settings.contains("connections=['test:///default', 'qemu+tcp://127.0.0.1:1/system']"),
        "{settings}"
    );

    // The next window connects to them again by itself.
    quit(&display);
    drop(app);
    let _app = App::start(&display, home.dir.path(), &[]);
    common::wait::poll(Duration::from_secs(60), Duration::from_millis(500), || {
        let seen = display.read_sidebar(&dir);
        let connected = seen.lines().any(|l| l.trim() == "Connected");
        if connected && seen.contains("Test") && seen.contains("Not connected") {
            Ok(())
        } else {
            Err(seen)
        }
    })
    .unwrap_or_else(|seen| panic!("the connections were not made again:\n{seen}"));
}

/// The host's VM's menu in the window: Force Off is seen through (the row
/// says "Shut off" once libvirt has destroyed it, not "Forcing off…"
/// forever), and Copy to This Computer… then copies the VM into Vireo's
/// store (the test driver's disk is no file here: reported, not copied).
#[test]
fn force_off_and_copy_to_this_computer_from_the_window() {
    require_program("virsh");
    let home = Home::new();
    let config = home.path("config");
    std::fs::create_dir_all(&config).unwrap();
    std::fs::write(
        config.join("settings.ini"),
        format!("[vireo]\nconnections=['{URI}']\n"),
    )
    .unwrap();
    let display = Display::start();
    let dir = artifacts("libvirt-force-off-copy-here");
    let app = App::start(&display, home.dir.path(), &[]);
    display.wait_for_sidebar_text(&dir, "Connected", Duration::from_secs(60));
    display.click_in_sidebar(&dir, "test", Duration::from_secs(30));
    display.wait_for_sidebar_text(&dir, "Running", Duration::from_secs(30));

    display.open_vm_menu(&dir, "Force Off");
    display.click_text(&dir, "Force Off", Duration::from_secs(10));
    let seen = display.wait_for_sidebar_text(&dir, "Shut off", Duration::from_secs(30));
    assert!(!seen.contains("Forcing off"), "{seen}");

    display.open_vm_menu(&dir, "Copy to This");
    display.click_text(&dir, "Copy to This", Duration::from_secs(10));
    let report = display.wait_for_text(&dir, "is now on", Duration::from_secs(60));
    assert!(report.contains("This Computer"), "{report}\n{}", app.log());
    assert!(report.contains("not copied"), "{report}");
    let list = home.ok(&["list", "--all"]);
    assert!(
        list.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["-", "test", "shut", "off"]),
        "{list}"
    );
}
