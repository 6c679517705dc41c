//! The desktop integration files in `data/`, checked with the tools that
//! distributions and Flathub check them with, and against the translations
//! merged into them.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::require_program;

const APP_ID: &str = "dev.vireo.Vireo";

fn data() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data")
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Runs `program args`, asserting it succeeds; returns stdout and stderr.
fn run_ok(program: &str, args: &[&str]) -> String {
    require_program(program);
    let out = Command::new(program).args(args).output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{program} {args:?} failed:\n{text}");
    text
}

#[test]
fn desktop_file_validate_accepts_the_desktop_entry() {
    let desktop = data().join(format!("{APP_ID}.desktop"));
    let said = run_ok("desktop-file-validate", &[desktop.to_str().unwrap()]);
    assert!(said.trim().is_empty(), "desktop-file-validate: {said}");
    let entry = read(&desktop);
    for line in [
        "Exec=vireo",
        "Icon=dev.vireo.Vireo",
        "Categories=System;Emulator;",
        "Name[zh_CN]=Vireo",
        "Comment[zh_CN]=创建并运行虚拟机",
    ] {
        assert!(entry.lines().any(|l| l == line), "no {line:?} in\n{entry}");
    }
    let keywords = entry.lines().find(|l| l.starts_with("Keywords=")).unwrap();
    for word in ["VM;", "virtual machine;", "KVM;"] {
        assert!(keywords.contains(word), "{keywords}");
    }
}

#[test]
fn appstreamcli_validates_the_metainfo() {
    let metainfo = data().join(format!("{APP_ID}.metainfo.xml"));
    let said = run_ok(
        "appstreamcli",
        &["validate", "--no-net", metainfo.to_str().unwrap()],
    );
    // Errors and warnings fail; infos (AppStream 0.16 does not know the
    // newer <developer> tag) and pedantic notes do not.
    for line in said.lines() {
        assert!(
            !line.starts_with("E:") && !line.starts_with("W:"),
            "appstreamcli: {said}"
        );
    }
    let xml = read(&metainfo);
    for needle in [
        "<launchable type=\"desktop-id\">dev.vireo.Vireo.desktop</launchable>",
        "<memory>2048</memory>",
        "<content_rating type=\"oars-1.1\"/>",
        "<kernel version=\"4.14\" compare=\"ge\">Linux</kernel>",
        "screenshots/main-window.png",
        "screenshots/wizard-1-method.png",
        "screenshots/console.png",
        "screenshots/storage.png",
        "screenshots/host.png",
        "screenshots/details.png",
        "screenshots/details-xml.png",
        "<summary xml:lang=\"zh_CN\">创建并运行虚拟机</summary>",
    ] {
        assert!(xml.contains(needle), "no {needle} in the metainfo");
    }
    // Every screenshot the metainfo shows is one the repository has.
    let prefix = "https://vireo.dev/data/screenshots/";
    for image in xml.split("<image>").skip(1) {
        let url = &image[..image.find("</image>").unwrap()];
        let file = url
            .strip_prefix(prefix)
            .unwrap_or_else(|| panic!("{url} is not under {prefix}"));
        assert!(
            data().join("screenshots").join(file).is_file(),
            "the metainfo shows {url}, which data/screenshots/ lacks"
        );
    }
}

#[test]
fn glib_compile_schemas_accepts_the_schema_strictly() {
    let dir = data();
    run_ok(
        "glib-compile-schemas",
        &["--strict", "--dry-run", dir.to_str().unwrap()],
    );
    let schema = read(&dir.join(format!("{APP_ID}.gschema.xml")));
    for key in [
        "window-width",
        "window-height",
        "window-maximized",
        "last-selected-vm",
        "default-pool",
        "vnc-listen",
        "confirm-force-off",
        "confirm-delete",
        "console-scale-to-fit",
    ] {
        assert!(
            schema.contains(&format!("<key name=\"{key}\"")),
            "no key {key}"
        );
    }
}

/// The committed desktop entry and metainfo are their templates with
/// today's translations merged in, as scripts/update-pot.sh makes them.
#[test]
fn the_merged_data_files_carry_the_current_translations() {
    let po = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("po");
    let dir = tempfile::tempdir().unwrap();
    for (kind, name) in [
        ("--desktop", format!("{APP_ID}.desktop")),
        ("--xml", format!("{APP_ID}.metainfo.xml")),
    ] {
        let template = data().join(format!("{name}.in"));
        let out = dir.path().join(&name);
        run_ok(
            "msgfmt",
            &[
                kind,
                "--template",
                template.to_str().unwrap(),
                "-d",
                po.to_str().unwrap(),
                "-o",
                out.to_str().unwrap(),
            ],
        );
        assert!(
            read(&out) == read(&data().join(&name)),
            "data/{name} is stale; run scripts/update-pot.sh"
        );
    }
}

#[test]
fn the_icons_are_svg_and_named_for_the_app() {
    for icon in [
        format!("icons/hicolor/scalable/apps/{APP_ID}.svg"),
        format!("icons/hicolor/symbolic/apps/{APP_ID}-symbolic.svg"),
    ] {
        let path = data().join(&icon);
        run_ok("xmllint", &["--noout", path.to_str().unwrap()]);
        assert!(read(&path).contains("<svg"), "{icon} is not an SVG");
        // gdk-pixbuf (what GTK draws icons with) renders it.
        let png = tempfile::Builder::new().suffix(".png").tempfile().unwrap();
        run_ok(
            "gdk-pixbuf-thumbnailer",
            &[
                "-s",
                "64",
                path.to_str().unwrap(),
                png.path().to_str().unwrap(),
            ],
        );
        assert!(
            std::fs::metadata(png.path()).unwrap().len() > 100,
            "{icon} rendered empty"
        );
    }
}
