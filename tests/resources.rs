//! The gresource bundle (resources/dev.vireo.Vireo.gresource.xml): its
//! sources exist, `glib-compile-resources` compiles it, and the compiled
//! bundle, read back with `gresource`, holds every file the window looks
//! up in it — the style sheet, the Keyboard Shortcuts window and the app
//! icons.

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::require_program;

const APP_ID: &str = "dev.vireo.Vireo";
const BASE: &str = "/dev/vireo/Vireo";

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn run_ok(command: &mut Command) -> String {
    let out = command.current_dir(root()).output().unwrap();
    assert!(
        out.status.success(),
        "{command:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn compile_resources() -> Command {
    let mut c = Command::new("glib-compile-resources");
    c.args(["--sourcedir", "resources", "--sourcedir", "data"]);
    c
}

/// The compiled bundle's paths, as `gresource list` prints them.
fn compiled_paths() -> Vec<String> {
    require_program("glib-compile-resources");
    require_program("gresource");
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("vireo.gresource");
    run_ok(
        compile_resources()
            .arg("--target")
            .arg(&target)
            .arg(format!("resources/{APP_ID}.gresource.xml")),
    );
    run_ok(Command::new("gresource").arg("list").arg(&target))
        .lines()
        .map(String::from)
        .collect()
}

/// Paths below the resource base the window's code names, as
/// `format!("{RESOURCE_BASE}/…")` or `format!("{}/…", super::RESOURCE_BASE)`.
fn paths_the_code_looks_up() -> Vec<String> {
    let patterns = [
        regex::Regex::new(r#"\{RESOURCE_BASE\}/([A-Za-z0-9_./-]+)""#).unwrap(),
        regex::Regex::new(r#""\{\}/([A-Za-z0-9_./-]+)",\s*(?:super::|crate::ui::)?RESOURCE_BASE"#)
            .unwrap(),
    ];
    let mut found = Vec::new();
    let mut stack = vec![root().join("src/ui")];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let src = std::fs::read_to_string(&path).unwrap();
                for pattern in &patterns {
                    for c in pattern.captures_iter(&src) {
                        found.push(format!("{BASE}/{}", &c[1]));
                    }
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn every_source_of_the_bundle_exists() {
    require_program("glib-compile-resources");
    let deps = run_ok(
        compile_resources()
            .arg("--generate-dependencies")
            .arg(format!("resources/{APP_ID}.gresource.xml")),
    );
    let deps: Vec<&str> = deps.lines().collect();
    assert!(deps.len() >= 4, "{deps:?}");
    for dep in deps {
        assert!(root().join(dep).is_file(), "{dep} is missing");
    }
}

#[test]
fn the_bundle_holds_what_the_window_looks_up() {
    let paths = compiled_paths();
    let looked_up = paths_the_code_looks_up();
    // The style sheet (src/ui/mod.rs) and the shortcuts window
    // (src/ui/window.rs) at least.
    assert!(
        looked_up.contains(&format!("{BASE}/style.css"))
            && looked_up.contains(&format!("{BASE}/shortcuts.ui")),
        "the scan found {looked_up:?}"
    );
    for path in &looked_up {
        // A folder (the icons) or a file.
        assert!(
            paths
                .iter()
                .any(|p| p == path || p.starts_with(&format!("{path}/"))),
            "the code looks up {path}, which the bundle lacks: {paths:?}"
        );
    }
    // GtkApplication adds BASE/icons to the icon theme, laid out as
    // hicolor is: the app's icon and its symbolic variant.
    for icon in [
        format!("{BASE}/icons/scalable/apps/{APP_ID}.svg"),
        format!("{BASE}/icons/symbolic/apps/{APP_ID}-symbolic.svg"),
    ] {
        assert!(paths.contains(&icon), "no {icon} in {paths:?}");
    }
}

#[test]
fn the_shortcuts_window_is_a_builder_file_with_translatable_titles() {
    let ui = std::fs::read_to_string(root().join("resources/shortcuts.ui")).unwrap();
    assert!(ui.contains(r#"class="GtkShortcutsWindow" id="shortcuts""#));
    // window.rs sets the release keys' accelerator on this object.
    assert!(ui.contains(r#"class="GtkShortcutsShortcut" id="release-keys""#));
    let titles = ui.matches(r#"name="title""#).count();
    let translatable = ui.matches(r#"name="title" translatable="yes""#).count();
    assert!(
        titles >= 8 && titles == translatable,
        "{titles} titles, {translatable} translatable"
    );
    let potfiles = std::fs::read_to_string(root().join("po/POTFILES")).unwrap();
    assert!(potfiles
        .lines()
        .any(|l| l.trim() == "resources/shortcuts.ui"));
}
