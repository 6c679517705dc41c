//! Assembles the demo VM's disk image (guests/demo.rs: a boot sector and
//! the program it loads) at build time, so the guest ships as source and
//! the binary carries the result; and compiles the translations in `po/`
//! into `build/locale/LANG/LC_MESSAGES/vireo.mo`, where a binary run from
//! the checkout looks for them (src/ui/i18n.rs); and compiles the
//! GSettings schema and the gresource bundle into `OUT_DIR`, which the
//! binary embeds (src/ui/settings.rs, src/ui/mod.rs) so it runs with or
//! without them installed.

#[path = "guests/asm.rs"]
mod asm;
#[path = "guests/demo.rs"]
mod demo;

fn main() {
    println!("cargo:rerun-if-changed=guests");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("demo-image.bin"), demo::demo_image()).expect("write demo image");
    compile_translations();
    compile_schema(&out);
    compile_resources(&out);
}

/// `data/*.gschema.xml` → `OUT_DIR/schemas/gschemas.compiled`. Without
/// glib-compile-schemas an empty file is left: the window then uses an
/// installed schema or its defaults.
fn compile_schema(out: &std::path::Path) {
    println!("cargo:rerun-if-changed=data/dev.vireo.Vireo.gschema.xml");
    let dir = out.join("schemas");
    std::fs::create_dir_all(&dir).expect("create OUT_DIR/schemas");
    let target = dir.join("gschemas.compiled");
    let status = std::process::Command::new("glib-compile-schemas")
        .args(["--strict", "--targetdir"])
        .arg(&dir)
        .arg("data")
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        println!("cargo:warning=glib-compile-schemas failed ({status:?}); install libglib2.0-bin");
        std::fs::write(&target, b"").expect("write an empty schema file");
    }
}

/// `resources/dev.vireo.Vireo.gresource.xml` → `OUT_DIR/vireo.gresource`
/// (CSS, the shortcuts window, icons). Without glib-compile-resources an
/// empty file is left and the window goes without them.
fn compile_resources(out: &std::path::Path) {
    println!("cargo:rerun-if-changed=resources");
    println!("cargo:rerun-if-changed=data/icons");
    let target = out.join("vireo.gresource");
    let status = std::process::Command::new("glib-compile-resources")
        .args([
            "--sourcedir",
            "resources",
            "--sourcedir",
            "data",
            "--target",
        ])
        .arg(&target)
        .arg("resources/dev.vireo.Vireo.gresource.xml")
        .status();
    if !matches!(status, Ok(s) if s.success()) {
        println!(
            "cargo:warning=glib-compile-resources failed ({status:?}); install libglib2.0-dev-bin"
        );
        std::fs::write(&target, b"").expect("write an empty resource file");
    }
}

/// Runs `msgfmt` for every language in `po/LINGUAS`. A missing msgfmt or
/// a bad po file only warns: the window then shows English.
fn compile_translations() {
    println!("cargo:rerun-if-changed=po");
    let root =
        std::path::PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("manifest dir"));
    let po = root.join("po");
    let Ok(linguas) = std::fs::read_to_string(po.join("LINGUAS")) else {
        return;
    };
    for lang in linguas
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let dir = root.join("build/locale").join(lang).join("LC_MESSAGES");
        if let Err(e) = std::fs::create_dir_all(&dir) {
            println!("cargo:warning=cannot create {}: {e}", dir.display());
            return;
        }
        let status = std::process::Command::new("msgfmt")
            .arg("--check")
            .arg("-o")
            .arg(dir.join("vireo.mo"))
            .arg(po.join(format!("{lang}.po")))
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => println!("cargo:warning=msgfmt failed on po/{lang}.po ({s})"),
            Err(e) => {
                println!("cargo:warning=msgfmt not found ({e}); install gettext for translations")
            }
        }
    }
}
