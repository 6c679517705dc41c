//! Assembles the demo VM's disk image (guests/demo.rs: a boot sector and
//! the program it loads) at build time, so the guest ships as source and
//! the binary carries the result; and compiles the translations in `po/`
//! into `build/locale/LANG/LC_MESSAGES/vireo.mo`, where a binary run from
//! the checkout looks for them (src/ui/i18n.rs).

#[path = "guests/asm.rs"]
mod asm;
#[path = "guests/demo.rs"]
mod demo;

fn main() {
    println!("cargo:rerun-if-changed=guests");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("demo-image.bin"), demo::demo_image()).expect("write demo image");
    compile_translations();
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
