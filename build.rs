//! Assembles the demo VM's boot sector (guests/demo.rs) at build time, so
//! the guest ships as source and the binary carries the result.

#[path = "guests/asm.rs"]
mod asm;
#[path = "guests/demo.rs"]
mod demo;

fn main() {
    println!("cargo:rerun-if-changed=guests");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("demo-boot-sector.bin"), demo::demo_boot_sector())
        .expect("write demo boot sector");
}
