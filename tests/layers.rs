//! The layers of `ARCHITECTURE.md`, enforced: every `crate::` path in
//! `src/` outside `#[cfg(test)]` code must name the module itself or one
//! its row of the layer table allows, every module of `lib.rs` must have a
//! row, and only `ui` may name GTK, libadwaita or relm4.
//!
//! In one crate nothing stops a device from importing the VMM; this test
//! does, as separate crates do for cloud-hypervisor.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The layer table: module → the modules it may import.
fn layer_table(architecture: &str) -> BTreeMap<String, BTreeSet<String>> {
    let begin = architecture
        .find("<!-- layers:begin -->")
        .expect("ARCHITECTURE.md has <!-- layers:begin -->");
    let end = architecture
        .find("<!-- layers:end -->")
        .expect("ARCHITECTURE.md has <!-- layers:end -->");
    let mut table = BTreeMap::new();
    for line in architecture[begin..end].lines() {
        let cells: Vec<&str> = line.split('|').map(str::trim).collect();
        // "| `module` | `a`, `b` |" splits into ["", "`module`", "`a`, `b`", ""].
        if cells.len() < 4 || !cells[1].starts_with('`') {
            continue;
        }
        let module = cells[1].trim_matches('`').to_string();
        let allowed = cells[2]
            .split(',')
            .map(|c| c.trim().trim_matches('`').to_string())
            .filter(|c| !c.is_empty() && c != "—")
            .collect();
        assert!(
            table.insert(module.clone(), allowed).is_none(),
            "{module} has two rows"
        );
    }
    table
}

/// The top-level modules `lib.rs` declares.
fn declared_modules(lib: &str) -> BTreeSet<String> {
    lib.lines()
        .filter_map(|l| l.trim().strip_prefix("pub mod "))
        .filter_map(|l| l.strip_suffix(';'))
        .map(String::from)
        .collect()
}

/// `text` without its `#[cfg(test)]` items and without comments: the code
/// that ships. rustfmt's layout is assumed (an item's closing brace at the
/// item's own indentation).
fn shipped_code(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == "#[cfg(test)]" {
            let mut item = i + 1;
            while item < lines.len() && lines[item].trim().starts_with("#[") {
                item += 1;
            }
            let Some(first) = lines.get(item) else { break };
            let indent = first.len() - first.trim_start().len();
            let mut end = item;
            if !first.trim_end().ends_with(';') {
                end += 1;
                while end < lines.len() {
                    let line = lines[end];
                    let this_indent = line.len() - line.trim_start().len();
                    if this_indent == indent && line.trim_start().starts_with('}') {
                        break;
                    }
                    end += 1;
                }
            }
            i = end + 1;
            continue;
        }
        let line = match lines[i].find("//") {
            Some(at) => &lines[i][..at],
            None => lines[i],
        };
        out.push_str(line);
        out.push('\n');
        i += 1;
    }
    out
}

/// Files that only build for tests: `#[cfg(test)] mod NAME;` declarations.
fn test_only_files(path: &Path, text: &str, into: &mut BTreeSet<PathBuf>) {
    let lines: Vec<&str> = text.lines().collect();
    for pair in lines.windows(2) {
        if pair[0].trim() != "#[cfg(test)]" {
            continue;
        }
        let declaration = pair[1].trim();
        let Some(name) = declaration
            .trim_start_matches("pub(crate) ")
            .trim_start_matches("pub ")
            .strip_prefix("mod ")
            .and_then(|rest| rest.strip_suffix(';'))
        else {
            continue;
        };
        let file_name = path.file_name().unwrap().to_str().unwrap();
        let dir = if file_name == "mod.rs" || file_name == "lib.rs" {
            path.parent().unwrap().to_path_buf()
        } else {
            path.with_extension("")
        };
        into.insert(dir.join(format!("{name}.rs")));
        into.insert(dir.join(name).join("mod.rs"));
    }
}

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level modules each `crate::` path in `code` names.
fn crate_paths(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    let mut rest = code;
    while let Some(at) = rest.find("crate::") {
        let before = rest[..at].chars().next_back();
        let after = &rest[at + "crate::".len()..];
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        // `$crate::` in macros and `vireo_crate::` are not this crate's paths.
        if !matches!(before, Some(c) if c.is_ascii_alphanumeric() || c == '_' || c == '$')
            && !name.is_empty()
        {
            found.push(name);
        }
        rest = after;
    }
    found
}

/// Every forbidden import under `src`, as "file: module -> module" lines.
fn violations(src: &Path, table: &BTreeMap<String, BTreeSet<String>>) -> Vec<String> {
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut test_only = BTreeSet::new();
    for file in &files {
        test_only_files(
            file,
            &std::fs::read_to_string(file).unwrap(),
            &mut test_only,
        );
    }
    let mut found = Vec::new();
    for file in files.iter().filter(|f| !test_only.contains(*f)) {
        let relative = file.strip_prefix(src).unwrap();
        let first = relative.components().next().unwrap().as_os_str();
        let module = Path::new(first)
            .file_stem()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        if module == "lib" || module == "main" || module == "bin" {
            continue;
        }
        let code = shipped_code(&std::fs::read_to_string(file).unwrap());
        let Some(allowed) = table.get(&module) else {
            found.push(format!(
                "{}: module {module} has no row in the layer table",
                relative.display()
            ));
            continue;
        };
        for target in crate_paths(&code) {
            // `crate::guest_warn!` is the logging module's macro.
            let target = if target == "guest_warn" {
                "logging".to_string()
            } else {
                target
            };
            if target != module && !allowed.contains(&target) {
                found.push(format!("{}: {module} -> {target}", relative.display()));
            }
        }
        if module != "ui" {
            for gtk in [
                "gtk::",
                "adw::",
                "relm4::",
                "gdk::",
                "glib::",
                "gettextrs::",
            ] {
                if code.contains(gtk) {
                    found.push(format!("{}: {module} names {gtk}", relative.display()));
                }
            }
        }
    }
    found.sort();
    found.dedup();
    found
}

#[test]
fn every_import_follows_the_layer_table() {
    let architecture = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let table = layer_table(&architecture);
    let lib = std::fs::read_to_string(root().join("src/lib.rs")).unwrap();
    let declared = declared_modules(&lib);
    let rows: BTreeSet<String> = table.keys().cloned().collect();
    assert_eq!(
        declared, rows,
        "lib.rs's modules and the layer table's rows differ"
    );
    for (module, allowed) in &table {
        for other in allowed {
            assert!(
                rows.contains(other),
                "{module} may import {other}, which is no module"
            );
        }
    }
    let found = violations(&root().join("src"), &table);
    assert!(
        found.is_empty(),
        "imports the layer table of ARCHITECTURE.md forbids (change the code, or the table with a reason):\n{}",
        found.join("\n")
    );
}

#[test]
fn the_layers_have_no_cycle() {
    let architecture = std::fs::read_to_string(root().join("ARCHITECTURE.md")).unwrap();
    let table = layer_table(&architecture);
    // Rows are bottom-up: each may import only rows above it in the file.
    let order: Vec<&String> = table.keys().collect();
    let position: BTreeMap<&str, usize> = {
        let begin = architecture.find("<!-- layers:begin -->").unwrap();
        order
            .iter()
            .map(|m| {
                let at = architecture[begin..].find(&format!("| `{m}` |")).unwrap();
                (m.as_str(), at)
            })
            .collect()
    };
    for (module, allowed) in &table {
        for other in allowed {
            assert!(
                position[other.as_str()] < position[module.as_str()],
                "{module} may import {other}, which comes after it: a row may only import rows above it"
            );
        }
    }
}

#[test]
fn the_checker_catches_a_forbidden_import_and_ignores_tests_and_comments() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("devices")).unwrap();
    std::fs::create_dir_all(src.join("vmm")).unwrap();
    std::fs::write(
        src.join("devices/mod.rs"),
        "//! Uses [`crate::vmm`] in a comment only.\npub mod ide;\n#[cfg(test)]\nmod tests;\n",
    )
    .unwrap();
    std::fs::write(
        src.join("devices/ide.rs"),
        "use crate::display::Display;\nuse crate::vmm::layout::PORT;\n\n#[cfg(test)]\nmod tests {\n    use crate::vmm::Machine;\n}\n",
    )
    .unwrap();
    std::fs::write(src.join("devices/tests.rs"), "use crate::vmm::Machine;\n").unwrap();
    std::fs::write(
        src.join("vmm/mod.rs"),
        "use crate::devices::Bus;\nuse gtk::Window;\n",
    )
    .unwrap();
    let table = layer_table(
        "<!-- layers:begin -->\n| module | may import |\n|---|---|\n| `display` | — |\n| `devices` | `display` |\n| `vmm` | `devices`, `display` |\n<!-- layers:end -->\n",
    );
    assert_eq!(
        violations(src, &table),
        [
            "devices/ide.rs: devices -> vmm",
            "vmm/mod.rs: vmm names gtk::"
        ]
    );
}
