//! Assembles the demo VM's disk image (guests/demo.rs: a boot sector and
//! the program it loads) at build time, so the guest ships as source and
//! the binary carries the result.

#[path = "guests/asm.rs"]
mod asm;
#[path = "guests/demo.rs"]
mod demo;

fn main() {
    println!("cargo:rerun-if-changed=guests");
    let out = std::path::PathBuf::from(std::env::var_os("OUT_DIR").expect("OUT_DIR"));
    std::fs::write(out.join("demo-image.bin"), demo::demo_image()).expect("write demo image");
}
