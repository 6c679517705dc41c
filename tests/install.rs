//! `make install` and `make uninstall`, as a distribution packager runs
//! them: the files land under PREFIX (or DESTDIR/PREFIX), the installed
//! copies pass the validators distributions run, the installed binary runs
//! and finds its translations and firmware under its own prefix (not the
//! checkout's), and uninstall leaves nothing behind.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::require_program;

const APP_ID: &str = "dev.vireo.Vireo";
/// The message `vireo` prints where it cannot open a window, and its
/// zh_CN translation (po/zh_CN.po).
const NO_DISPLAY_ZH: &str = "找不到可以打开窗口的显示环境";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The files `make install` puts under PREFIX.
fn installed_files() -> Vec<String> {
    vec![
        "bin/vireo".into(),
        "bin/vireo-vmm".into(),
        format!("share/applications/{APP_ID}.desktop"),
        format!("share/metainfo/{APP_ID}.metainfo.xml"),
        format!("share/glib-2.0/schemas/{APP_ID}.gschema.xml"),
        format!("share/icons/hicolor/scalable/apps/{APP_ID}.svg"),
        format!("share/icons/hicolor/symbolic/apps/{APP_ID}-symbolic.svg"),
        "share/locale/zh_CN/LC_MESSAGES/vireo.mo".into(),
    ]
}

/// Runs `make TARGET VARS…` in the checkout with the binary cargo built
/// for this test, so make never needs to build one.
fn make(target: &str, vars: &[String]) -> String {
    require_program("make");
    let out = Command::new("make")
        .arg("-C")
        .arg(root())
        .arg(target)
        .arg(format!("BINARY={}", env!("CARGO_BIN_EXE_vireo")))
        .arg(format!("VMM_BINARY={}", env!("CARGO_BIN_EXE_vireo-vmm")))
        // A cargo that fails, so a make that tried to build would fail.
        .arg("CARGO=false")
        .args(vars)
        // Not the jobserver of a `make test` this may run under.
        .env_remove("MAKEFLAGS")
        .env_remove("MFLAGS")
        .env_remove("MAKELEVEL")
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "make {target} {vars:?}:\n{text}");
    text
}

fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Output {
    Command::new(program).args(args).output().unwrap()
}

fn ok(out: &Output, what: &str) -> String {
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{what}:\n{text}");
    text
}

/// Every regular file below `dir`.
fn files_below(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.extend(files_below(&path));
            } else {
                out.push(path);
            }
        }
    }
    out
}

/// The installed `vireo` with no display, under a locale.
fn without_display(vireo: &Path, lang: &str, args: &[&str]) -> Output {
    Command::new(vireo)
        .args(args)
        .env_remove("DISPLAY")
        .env_remove("WAYLAND_DISPLAY")
        .env_remove("LANGUAGE")
        .env_remove("LC_ALL")
        .env_remove("LC_MESSAGES")
        .env("LANG", lang)
        .output()
        .unwrap()
}

#[test]
fn make_install_lays_out_a_working_prefix_and_uninstall_removes_it() {
    let tmp = tempfile::tempdir().unwrap();
    let prefix = tmp.path().join("usr");
    let vars = [format!("PREFIX={}", prefix.display()), "DESTDIR=".into()];
    make("install", &vars);

    for file in installed_files() {
        assert!(prefix.join(&file).is_file(), "{file} is not installed");
    }
    assert!(prefix.join("share/vireo/firmware").is_dir());
    let vireo = prefix.join("bin/vireo");

    // The validators distributions run, on the installed copies.
    require_program("desktop-file-validate");
    let desktop = prefix.join(format!("share/applications/{APP_ID}.desktop"));
    let said = ok(
        &run("desktop-file-validate", &[desktop.to_str().unwrap()]),
        "desktop-file-validate",
    );
    assert!(said.trim().is_empty(), "{said}");
    require_program("appstreamcli");
    let metainfo = prefix.join(format!("share/metainfo/{APP_ID}.metainfo.xml"));
    ok(
        &run(
            "appstreamcli",
            &["validate", "--no-net", metainfo.to_str().unwrap()],
        ),
        "appstreamcli validate",
    );

    // Without DESTDIR the schema is compiled in place, and GSettings reads
    // the app's keys from it.
    require_program("glib-compile-schemas");
    let schemas = prefix.join("share/glib-2.0/schemas");
    assert!(schemas.join("gschemas.compiled").is_file());
    ok(
        &run(
            "glib-compile-schemas",
            &["--strict", "--dry-run", schemas.to_str().unwrap()],
        ),
        "glib-compile-schemas --strict",
    );
    require_program("gsettings");
    let keys = Command::new("gsettings")
        .args(["list-keys", APP_ID])
        .env("GSETTINGS_SCHEMA_DIR", &schemas)
        .output()
        .unwrap();
    let keys = ok(&keys, "gsettings list-keys");
    assert!(keys.lines().count() >= 3, "{keys}");

    // The installed binary runs.
    let version = ok(&run(&vireo, &["--version"]), "vireo --version");
    assert_eq!(
        version.trim(),
        format!("vireo {}", env!("CARGO_PKG_VERSION"))
    );

    // It speaks Chinese where asked: with no display it says so, translated.
    let said = without_display(&vireo, "zh_CN.UTF-8", &[]);
    let stderr = String::from_utf8_lossy(&said.stderr);
    assert!(!said.status.success());
    assert!(stderr.contains(NO_DISPLAY_ZH), "{stderr}");
    let said = without_display(&vireo, "C.UTF-8", &[]);
    assert!(String::from_utf8_lossy(&said.stderr).contains("there is no display"));

    // …from the catalogue under its own prefix, not the checkout's
    // build/locale: a catalogue with a different translation put there is
    // the one it reads.
    require_program("msgfmt");
    let po = tmp.path().join("marker.po");
    std::fs::write(
        &po,
        "msgid \"\"\nmsgstr \"Content-Type: text/plain; charset=UTF-8\\n\"\n\n\
         msgid \"there is no display to open the window on; `vireo demo` runs the demo VM in this terminal, and `vireo --help` lists the commands\"\n\
         msgstr \"INSTALLED-CATALOGUE\"\n",
    )
    .unwrap();
    let mo = prefix.join("share/locale/zh_CN/LC_MESSAGES/vireo.mo");
    ok(
        &run(
            "msgfmt",
            &["-o", mo.to_str().unwrap(), po.to_str().unwrap()],
        ),
        "msgfmt",
    );
    let said = without_display(&vireo, "zh_CN.UTF-8", &[]);
    let stderr = String::from_utf8_lossy(&said.stderr);
    assert!(stderr.contains("INSTALLED-CATALOGUE"), "{stderr}");

    // Firmware put in PREFIX/share/vireo/firmware is offered to domains.
    let bios = prefix.join("share/vireo/firmware/bios-256k.bin");
    std::fs::write(&bios, vec![0u8; 256 << 10]).unwrap();
    let caps = Command::new(&vireo)
        .arg("domcapabilities")
        .env_remove("VIREO_FIRMWARE_DIR")
        .output()
        .unwrap();
    let caps = ok(&caps, "vireo domcapabilities");
    assert!(
        caps.contains(&format!("<value>{}</value>", bios.display())),
        "{caps}"
    );
    std::fs::remove_file(&bios).unwrap();

    make("uninstall", &vars);
    let left = files_below(tmp.path())
        .into_iter()
        .filter(|p| !p.starts_with(tmp.path().join("marker.po")))
        .collect::<Vec<_>>();
    assert!(left.is_empty(), "make uninstall left {left:#?}");
    assert!(!prefix.join("share/vireo").exists());
}

#[test]
fn a_staged_install_into_destdir_leaves_schema_compilation_to_the_package() {
    let tmp = tempfile::tempdir().unwrap();
    let dest = tmp.path().join("pkg");
    let vars = [
        "PREFIX=/usr".to_string(),
        format!("DESTDIR={}", dest.display()),
    ];
    make("install", &vars);
    for file in installed_files() {
        assert!(dest.join("usr").join(&file).is_file(), "{file}");
    }
    assert!(dest.join("usr/share/vireo/firmware").is_dir());
    // The package manager's trigger compiles schemas on the target system.
    assert!(!dest
        .join("usr/share/glib-2.0/schemas/gschemas.compiled")
        .exists());
    make("uninstall", &vars);
    assert_eq!(files_below(&dest), Vec::<PathBuf>::new());
}
