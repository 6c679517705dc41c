//! The Flatpak manifest `flatpak/dev.vireo.Vireo.json`, checked without
//! network (this machine cannot download a runtime): its sandbox
//! permissions, that every download is pinned by checksum, that the cargo
//! sources are exactly Cargo.lock's crates and are what
//! `scripts/flatpak-cargo-sources.py` makes of it, that those sources let
//! `cargo --offline` resolve the whole build (laid out as flatpak-builder
//! lays them out, from cargo's own download cache), that the SeaBIOS module
//! puts its images where Vireo looks, that the osinfo-db module installs
//! the OS database where the New VM wizard reads it, and that
//! flatpak-builder itself
//! reads the manifest without complaint.

mod common;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::require_program;
use serde_json::Value;

const APP_ID: &str = "dev.vireo.Vireo";
const FINISH_ARGS: [&str; 6] = [
    "--device=kvm",
    "--share=ipc",
    "--socket=wayland",
    "--socket=fallback-x11",
    "--device=dri",
    // The guests' NAT network: libslirp opens the host sockets for them.
    "--share=network",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn json(path: &Path) -> Value {
    serde_json::from_str(&read(path)).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn manifest() -> Value {
    json(&root().join(format!("flatpak/{APP_ID}.json")))
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v[key]
        .as_str()
        .unwrap_or_else(|| panic!("no string {key:?} in {v}"))
}

fn module<'a>(manifest: &'a Value, name: &str) -> &'a Value {
    manifest["modules"]
        .as_array()
        .expect("modules")
        .iter()
        .find(|m| m["name"] == name)
        .unwrap_or_else(|| panic!("no module {name}"))
}

/// A module's sources, with `"file.json"` entries replaced by the sources
/// that file lists (as flatpak-builder includes them).
fn sources(module: &Value) -> Vec<Value> {
    let mut out = Vec::new();
    for source in module["sources"].as_array().expect("sources") {
        match source.as_str() {
            Some(file) => match json(&root().join("flatpak").join(file)) {
                Value::Array(list) => out.extend(list),
                other => out.push(other),
            },
            None => out.push(source.clone()),
        }
    }
    out
}

/// A module's build commands, in order.
fn build_commands(module: &Value) -> Vec<&str> {
    module["build-commands"]
        .as_array()
        .expect("build-commands")
        .iter()
        .map(|c| c.as_str().expect("a command string"))
        .collect()
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A `[[package]]` of Cargo.lock that comes from crates.io.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord, Clone)]
struct Crate {
    name: String,
    version: String,
    checksum: String,
}

/// The registry crates of Cargo.lock, read line by line (its format is
/// fixed: `key = "value"` lines under `[[package]]`).
fn locked_crates() -> BTreeSet<Crate> {
    let lock = read(&root().join("Cargo.lock"));
    let mut crates = BTreeSet::new();
    for block in lock.split("[[package]]").skip(1) {
        let field = |key: &str| {
            block.lines().find_map(|l| {
                l.strip_prefix(key)
                    .and_then(|r| r.strip_prefix(" = \""))
                    .and_then(|r| r.strip_suffix('"'))
                    .map(String::from)
            })
        };
        let source = field("source");
        assert!(
            source.is_none()
                || source.as_deref()
                    == Some("registry+https://github.com/rust-lang/crates.io-index"),
            "this test knows crates.io crates only; a {source:?} dependency needs checking here too"
        );
        if source.is_some() {
            crates.insert(Crate {
                name: field("name").expect("name"),
                version: field("version").expect("version"),
                checksum: field("checksum").expect("checksum"),
            });
        }
    }
    crates
}

#[test]
fn the_manifest_builds_on_the_gnome_runtime_with_rust_stable() {
    let m = manifest();
    assert_eq!(str_of(&m, "app-id"), APP_ID);
    assert_eq!(str_of(&m, "runtime"), "org.gnome.Platform");
    assert_eq!(str_of(&m, "sdk"), "org.gnome.Sdk");
    let version: u32 = str_of(&m, "runtime-version")
        .parse()
        .expect("a GNOME version");
    assert!(version >= 46, "runtime {version} is out of support");
    assert_eq!(
        m["sdk-extensions"],
        serde_json::json!(["org.freedesktop.Sdk.Extension.rust-stable"])
    );
    assert_eq!(str_of(&m, "command"), "vireo");
    let names: Vec<&str> = m["modules"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| str_of(m, "name"))
        .collect();
    // libslirp before vireo, which links it.
    assert_eq!(names, ["libslirp", "seabios", "osinfo-db", "vireo"]);
}

#[test]
fn the_sandbox_gets_kvm_a_display_and_the_guests_network_and_nothing_else() {
    let m = manifest();
    let args: Vec<&str> = m["finish-args"]
        .as_array()
        .expect("finish-args")
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    assert_eq!(args, FINISH_ARGS);
    // Spelled out, so that a later edit adding them fails here by name.
    for forbidden in [
        "--filesystem=host",
        "--filesystem=home",
        "--device=all",
        "--talk-name=org.freedesktop.Flatpak",
    ] {
        assert!(!args.contains(&forbidden), "{forbidden}");
    }
    assert!(!args.iter().any(|a| a.starts_with("--filesystem")));
}

#[test]
fn every_download_is_pinned_by_checksum() {
    let m = manifest();
    let mut downloads = 0;
    for module in m["modules"].as_array().unwrap() {
        for source in sources(module) {
            let kind = str_of(&source, "type");
            match kind {
                "archive" | "file" if source.get("url").is_some() => {
                    downloads += 1;
                    let sha = str_of(&source, "sha256");
                    assert!(is_hex(sha, 64), "sha256 {sha:?} of {source}");
                    assert!(str_of(&source, "url").starts_with("https://"), "{source}");
                }
                "git" => {
                    let commit = str_of(&source, "commit");
                    assert!(is_hex(commit, 40), "commit {commit:?} of {source}");
                }
                "archive" | "file" => panic!("a local {kind} source: {source}"),
                "inline" | "dir" => {}
                other => panic!("unexpected source type {other}: {source}"),
            }
        }
    }
    // libslirp, SeaBIOS, osinfo-db and every crate.
    assert_eq!(downloads, 3 + locked_crates().len());
}

#[test]
fn the_cargo_sources_are_exactly_the_crates_of_cargo_lock() {
    let list = sources(module(&manifest(), "vireo"));
    assert_eq!(list[0]["type"], "dir");
    assert_eq!(list[0]["path"], "..");
    let locked = locked_crates();
    assert!(locked.len() > 100, "{} crates", locked.len());
    let mut listed = BTreeSet::new();
    for source in list.iter().filter(|s| s["type"] == "archive") {
        let url = str_of(source, "url");
        let (name, file) = url
            .strip_prefix("https://static.crates.io/crates/")
            .and_then(|rest| rest.split_once('/'))
            .unwrap_or_else(|| panic!("not a crates.io download: {url}"));
        let version = file
            .strip_prefix(&format!("{name}-"))
            .and_then(|v| v.strip_suffix(".crate"))
            .unwrap_or_else(|| panic!("not a crate file: {url}"));
        let dest = str_of(source, "dest");
        assert_eq!(dest, format!("cargo/vendor/{name}-{version}"));
        let (name, version) = (name.to_string(), version.to_string());
        assert_eq!(source["archive-type"], "tar-gzip", "{source}");
        let checksum = str_of(source, "sha256").to_string();
        // The vendored crate's checksum file carries the same sum, which
        // cargo compares with Cargo.lock.
        let marker = list
            .iter()
            .find(|s| s["dest"] == dest && s["dest-filename"] == ".cargo-checksum.json")
            .unwrap_or_else(|| panic!("no .cargo-checksum.json for {dest}"));
        let marker: Value = serde_json::from_str(str_of(marker, "contents")).unwrap();
        assert_eq!(marker["package"], checksum.as_str());
        assert_eq!(marker["files"], serde_json::json!({}));
        assert!(
            listed.insert(Crate {
                name,
                version,
                checksum
            }),
            "{dest} listed twice"
        );
    }
    let missing: Vec<_> = locked.difference(&listed).collect();
    let extra: Vec<_> = listed.difference(&locked).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "flatpak/cargo-sources.json is stale; run scripts/flatpak-cargo-sources.py -o flatpak/cargo-sources.json\nmissing: {missing:#?}\nextra: {extra:#?}"
    );
    let config = list
        .iter()
        .find(|s| s["dest"] == "cargo" && s["dest-filename"] == "config.toml")
        .expect("cargo/config.toml");
    let config = str_of(config, "contents");
    assert!(config.contains("[source.crates-io]\nreplace-with = \"vendored-sources\""));
    assert!(config.contains("[source.vendored-sources]\ndirectory = \"cargo/vendor\""));
}

#[test]
fn the_committed_cargo_sources_are_what_the_script_makes_of_cargo_lock() {
    require_program("python3");
    let out = Command::new("python3")
        .arg(root().join("scripts/flatpak-cargo-sources.py"))
        .arg(root().join("Cargo.lock"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let committed = read(&root().join("flatpak/cargo-sources.json"));
    assert!(
        String::from_utf8(out.stdout).unwrap() == committed,
        "flatpak/cargo-sources.json differs from Cargo.lock; run scripts/flatpak-cargo-sources.py -o flatpak/cargo-sources.json"
    );
}

/// flatpak-builder unpacks each source into the module's build directory
/// and the manifest points CARGO_HOME at its `cargo/`. Done here the same
/// way, with the .crate files from cargo's own cache (each checked against
/// the manifest's sha256), `cargo --offline fetch` must find every crate
/// and accept every checksum, with no registry index to fall back on.
#[test]
fn cargo_resolves_the_whole_build_offline_from_the_listed_sources() {
    let manifest = manifest();
    let vireo = module(&manifest, "vireo");
    let options = &vireo["build-options"];
    assert_eq!(options["env"]["CARGO_HOME"], "/run/build/vireo/cargo");
    assert_eq!(options["append-path"], "/usr/lib/sdk/rust-stable/bin");
    let commands = build_commands(vireo);
    assert_eq!(
        commands,
        [
            "cargo --offline fetch --locked --manifest-path Cargo.toml",
            "cargo --offline build --locked --release",
            "make install PREFIX=/app",
        ]
    );

    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap()).join(".cargo"));
    let caches: Vec<PathBuf> = std::fs::read_dir(cargo_home.join("registry/cache"))
        .expect("cargo's download cache (this checkout was built with it)")
        .map(|e| e.unwrap().path())
        .collect();
    let build = tempfile::tempdir().unwrap();
    for source in sources(vireo) {
        let Some(dest) = source["dest"].as_str() else {
            continue;
        };
        let dir = build.path().join(dest);
        std::fs::create_dir_all(&dir).unwrap();
        match str_of(&source, "type") {
            "archive" => {
                let url = str_of(&source, "url");
                let file = url.rsplit('/').next().unwrap();
                let cached = caches
                    .iter()
                    .map(|c| c.join(file))
                    .find(|p| p.is_file())
                    .unwrap_or_else(|| panic!("{file} is not in cargo's cache {caches:?}"));
                let sum = Command::new("sha256sum").arg(&cached).output().unwrap();
                let sum = String::from_utf8(sum.stdout).unwrap();
                assert_eq!(
                    sum.split_whitespace().next(),
                    Some(str_of(&source, "sha256"))
                );
                let status = Command::new("tar")
                    .arg("xzf")
                    .arg(&cached)
                    .arg("--strip-components=1")
                    .arg("-C")
                    .arg(&dir)
                    .status()
                    .unwrap();
                assert!(status.success(), "unpacking {file}");
            }
            "inline" => std::fs::write(
                dir.join(str_of(&source, "dest-filename")),
                str_of(&source, "contents"),
            )
            .unwrap(),
            other => panic!("unexpected {other} source in the vireo module"),
        }
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["--offline", "fetch", "--locked", "--manifest-path"])
        .arg(root().join("Cargo.toml"))
        .env("CARGO_HOME", build.path().join("cargo"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "cargo --offline fetch with the flatpak's sources:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Nothing came from elsewhere: no registry index or cache was created.
    assert!(!build.path().join("cargo/registry").exists());
}

#[test]
fn the_seabios_module_builds_qemus_two_images_into_vireos_firmware_dir() {
    let manifest = manifest();
    let seabios = module(&manifest, "seabios");
    let list = sources(seabios);
    let tarball = &list[0];
    assert_eq!(tarball["type"], "archive");
    assert_eq!(
        str_of(tarball, "url"),
        "https://www.seabios.org/downloads/seabios-1.16.3.tar.gz"
    );
    assert!(is_hex(str_of(tarball, "sha256"), 64));
    let config = |name: &str| {
        list.iter()
            .find(|s| s["dest-filename"] == name)
            .map(|s| str_of(s, "contents").to_string())
            .unwrap_or_else(|| panic!("no {name}"))
    };
    // QEMU's roms/config.seabios-256k and roms/config.vga-stdvga.
    assert_eq!(
        config("config.bios-256k"),
        "CONFIG_QEMU=y\nCONFIG_ROM_SIZE=256\nCONFIG_ATA_DMA=n\n"
    );
    assert_eq!(
        config("config.vga-stdvga"),
        "CONFIG_BUILD_VGABIOS=y\nCONFIG_VGA_BOCHS=y\nCONFIG_VGA_PCI=y\n"
    );
    let commands = seabios["build-commands"].to_string();
    for installed in [
        "builds/bios-256k/bios.bin /app/share/vireo/firmware/bios-256k.bin",
        "builds/vga-stdvga/vgabios.bin /app/share/vireo/firmware/vgabios-stdvga.bin",
    ] {
        assert!(commands.contains(installed), "{installed} in {commands}");
    }
    // And that is where Vireo looks, under the names it looks for.
    assert!(
        vireo::vmm::firmware::search_dirs().contains(&PathBuf::from("/app/share/vireo/firmware"))
    );
    assert_eq!(vireo::vmm::firmware::BIOS_FILE, "bios-256k.bin");
    // (The VGA ROM's name is private to the VMM; read it from the source.)
    assert!(read(&root().join("src/vmm/display.rs"))
        .contains("pub const VGA_BIOS_FILE: &str = \"vgabios-stdvga.bin\";"));
}

#[test]
fn libslirp_comes_from_its_release_with_a_checksum() {
    let list = sources(module(&manifest(), "libslirp"));
    assert_eq!(list.len(), 1);
    let url = str_of(&list[0], "url");
    assert!(
        url.starts_with("https://gitlab.freedesktop.org/slirp/libslirp/"),
        "{url}"
    );
    assert!(is_hex(str_of(&list[0], "sha256"), 64));
}

/// The GNOME runtime has no osinfo-db, so the Flatpak builds its own from
/// the source release Debian 13 ships, pinned to the bytes Debian's signed
/// archive lists (flatpak/README.md says how the sum was checked).
#[test]
fn the_osinfo_db_module_installs_the_database_where_the_wizard_reads_it() {
    let manifest = manifest();
    let osinfo = module(&manifest, "osinfo-db");
    let list = sources(osinfo);
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["type"], "archive");
    assert_eq!(
        str_of(&list[0], "url"),
        "https://deb.debian.org/debian/pool/main/o/osinfo-db/osinfo-db_0.20250606.orig.tar.xz"
    );
    assert_eq!(
        str_of(&list[0], "sha256"),
        "353859fe1e8eb060908c772926b56f768c86a7885af6474d2b8fdefbe767236d"
    );
    let commands = build_commands(osinfo);
    // Upstream's own rule turns data/**/*.xml.in into .xml (msgfmt --xml
    // merging the translations); the rest installs what it made.
    assert_eq!(commands[0], "make -j$FLATPAK_BUILDER_N_JOBS data");
    assert!(vireo::app::osinfo::search_dirs().contains(&PathBuf::from("/app/share/osinfo/os")));

    // The install commands, run on a tree shaped like a built osinfo-db
    // source (with /app moved into a temporary directory), leave a database
    // the wizard's detection reads, without the .xml.in templates.
    require_program("sh");
    let tmp = tempfile::tempdir().unwrap();
    let (build, app) = (tmp.path().join("build"), tmp.path().join("app"));
    let vendor = build.join("data/os/debian.org");
    std::fs::create_dir_all(&vendor).unwrap();
    for dir in ["device", "platform", "datamap", "install-script"] {
        std::fs::create_dir_all(build.join("data").join(dir)).unwrap();
    }
    std::fs::write(build.join("COPYING"), "GPL").unwrap();
    let debian12 = r#"<libosinfo version="0.0.1"><os id="http://debian.org/debian/12">
  <short-id>debian12</short-id><name>Debian 12</name><name xml:lang="cs">Debian 12</name>
  <resources arch="all"><recommended><n-cpus>1</n-cpus><ram>1073741824</ram>
  <storage>21474836480</storage></recommended></resources>
  <media arch="x86_64"><iso><volume-id>Debian 12.\d+.\d+ amd64 n</volume-id></iso></media>
</os></libosinfo>"#;
    std::fs::write(vendor.join("debian-12.xml"), debian12).unwrap();
    std::fs::write(vendor.join("debian-12.xml.in"), "<template/>").unwrap();
    let prefix = format!("{}/", app.display());
    for command in &commands[1..] {
        let status = Command::new("sh")
            .arg("-c")
            .arg(command.replace("/app/", &prefix))
            .current_dir(&build)
            .status()
            .unwrap();
        assert!(status.success(), "{command}");
    }
    let os = app.join("share/osinfo/os");
    assert!(os.join("debian.org/debian-12.xml").is_file());
    assert!(!os.join("debian.org/debian-12.xml.in").exists());
    assert!(app
        .join("share/licenses/dev.vireo.Vireo/osinfo-db/COPYING")
        .is_file());
    let guess = vireo::app::osinfo::detect_in(&[os], "Debian 12.8.0 amd64 n")
        .expect("the installed database recognises a Debian 12 netinst");
    assert_eq!(guess.name, "Debian 12");
    assert_eq!(guess.memory_mib, Some(1024));
}

/// flatpak-builder's own parser: unknown keys or source types are only
/// warnings there, so the test fails on any warning.
#[test]
fn flatpak_builder_reads_the_manifest_without_warnings() {
    require_program("flatpak-builder");
    // It creates its state directory, .flatpak-builder/, where it runs.
    let cwd = tempfile::tempdir().unwrap();
    let out = Command::new("flatpak-builder")
        .current_dir(cwd.path())
        .arg("--show-manifest")
        .arg(root().join(format!("flatpak/{APP_ID}.json")))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.trim().is_empty(),
        "flatpak-builder warned:\n{stderr}"
    );
    let shown: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(shown["id"], APP_ID);
    assert_eq!(shown["finish-args"], serde_json::json!(FINISH_ARGS));
    let vireo = module(&shown, "vireo");
    // The included cargo-sources.json, resolved by flatpak-builder.
    let n = vireo["sources"].as_array().unwrap().len();
    assert_eq!(n, 1 + 2 * locked_crates().len() + 1);
}
