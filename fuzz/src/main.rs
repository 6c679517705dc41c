//! `vireo-fuzz TARGET`: one of the library's fuzz targets
//! (`vireo::fuzz::TARGETS`) under AFL++, as `cargo afl fuzz` runs it.
//! `vireo-fuzz --seeds DIR` writes every target's seed inputs to
//! DIR/TARGET/, where scripts/fuzz.sh starts from them.

use std::path::Path;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let [flag, dir] = &args[..] {
        if flag == "--seeds" {
            for (name, _, seeds) in vireo::fuzz::TARGETS {
                let dir = Path::new(dir).join(name);
                std::fs::create_dir_all(&dir).expect("seed directory");
                for (n, seed) in seeds().iter().enumerate() {
                    std::fs::write(dir.join(format!("seed-{n}")), seed).expect("seed file");
                }
            }
            return;
        }
    }
    let Some(target) = args.first().and_then(|name| vireo::fuzz::target(name)) else {
        let names: Vec<&str> = vireo::fuzz::TARGETS.iter().map(|t| t.0).collect();
        eprintln!("usage: vireo-fuzz TARGET | --seeds DIR\ntargets: {}", names.join(" "));
        std::process::exit(2);
    };
    afl::fuzz!(|data: &[u8]| target(data));
}
