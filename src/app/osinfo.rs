//! What OS an installation ISO holds, from its ISO 9660 volume label,
//! to pre-fill the New VM wizard with sensible resources. Uses
//! osinfo-db's data (the database virt-manager and virt-install use) when
//! it is installed; without it, the wizard keeps its defaults.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use quick_xml::events::Event;
use quick_xml::Reader;

/// Where distributions' `osinfo-db` packages put the database (Debian's
/// and Fedora's in /usr, a hand install in /usr/local).
const SYSTEM_DIRS: &[&str] = &["/usr/share/osinfo", "/usr/local/share/osinfo"];

/// The `os/` directories searched, first found first: the copy installed
/// with Vireo (`PREFIX/share/osinfo`; the Flatpak builds osinfo-db into
/// `/app/share/osinfo`, since the GNOME runtime has none), then the
/// system's.
pub fn search_dirs() -> Vec<PathBuf> {
    dirs_with(crate::paths::installed_share_dir().as_deref())
}

fn dirs_with(installed_share: Option<&Path>) -> Vec<PathBuf> {
    let mut roots: Vec<PathBuf> = installed_share
        .map(|share| share.join("osinfo"))
        .into_iter()
        .collect();
    // Named too, as for the firmware: a Flatpak build run from elsewhere
    // (a debugger, `flatpak run --command`) still finds its data.
    roots.push(PathBuf::from("/app/share/osinfo"));
    roots.extend(SYSTEM_DIRS.iter().map(PathBuf::from));
    let mut dirs = Vec::new();
    for root in roots {
        let os = root.join("os");
        if !dirs.contains(&os) {
            dirs.push(os);
        }
    }
    dirs
}

/// ISO 9660: the primary volume descriptor is at sector 16 (2048-byte
/// sectors); its type byte is 1, followed by "CD001"; the volume
/// identifier is bytes 40..72, padded with spaces (ECMA-119 §8.4).
pub fn iso_volume_label(path: &Path) -> std::io::Result<Option<String>> {
    let mut file = File::open(path)?;
    let mut sector = [0u8; 2048];
    file.seek(SeekFrom::Start(16 * 2048))?;
    if file.read_exact(&mut sector).is_err() {
        return Ok(None);
    }
    if sector[0] != 1 || &sector[1..6] != b"CD001" {
        return Ok(None);
    }
    let label = String::from_utf8_lossy(&sector[40..72]).trim().to_string();
    Ok((!label.is_empty()).then_some(label))
}

/// An OS osinfo-db knows, with what it recommends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsGuess {
    pub name: String,
    pub short_id: String,
    pub memory_mib: Option<u64>,
    pub vcpus: Option<u32>,
    pub disk_gib: Option<u64>,
}

/// The OS whose x86_64 (or i686) install media has volume label `label`.
pub fn detect(label: &str) -> Option<OsGuess> {
    detect_in(&search_dirs(), label)
}

/// [`detect`] over the `os/` directories `dirs` (`os/VENDOR/OS.xml`).
pub fn detect_in(dirs: &[PathBuf], label: &str) -> Option<OsGuess> {
    for dir in dirs {
        let Ok(vendors) = std::fs::read_dir(dir) else {
            continue;
        };
        for vendor in vendors.flatten() {
            let Ok(files) = std::fs::read_dir(vendor.path()) else {
                continue;
            };
            for file in files.flatten() {
                let Ok(xml) = std::fs::read_to_string(file.path()) else {
                    continue;
                };
                if let Some(guess) = match_os(&xml, label) {
                    return Some(guess);
                }
            }
        }
    }
    None
}

/// Reads one osinfo-db `<os>` document; returns it when one of its PC
/// media's `<volume-id>` patterns matches `label` whole.
pub fn match_os(xml: &str, label: &str) -> Option<OsGuess> {
    let mut reader = Reader::from_str(xml);
    let mut path: Vec<String> = Vec::new();
    let mut media_is_pc = false;
    let mut matched = false;
    let mut in_recommended = false;
    let mut guess = OsGuess {
        name: String::new(),
        short_id: String::new(),
        memory_mib: None,
        vcpus: None,
        disk_gib: None,
    };
    loop {
        match reader.read_event().ok()? {
            Event::Start(e) => {
                let tag = e.name().0.to_string();
                if tag == "media" {
                    media_is_pc = e.attributes().flatten().any(|a| {
                        a.key.0 == "arch" && matches!(&*a.value, "x86_64" | "i686" | "i386")
                    });
                }
                if tag == "recommended" {
                    in_recommended = true;
                }
                path.push(tag);
            }
            Event::End(e) => {
                if e.name().0 == "recommended" {
                    in_recommended = false;
                }
                path.pop();
            }
            Event::Text(t) => {
                let text = t.xml10_content().into_owned();
                let parent = path.last().map(String::as_str);
                let depth = path.len();
                match parent {
                    // Direct children of <os>, not of <variant> or <media>.
                    Some("name") if depth == 3 && guess.name.is_empty() => guess.name = text,
                    Some("short-id") if depth == 3 && guess.short_id.is_empty() => {
                        guess.short_id = text
                    }
                    Some("volume-id") if media_is_pc && !matched => {
                        matched = regex::Regex::new(&format!("^(?:{text})$"))
                            .is_ok_and(|re| re.is_match(label));
                    }
                    Some("ram") if in_recommended => {
                        guess.memory_mib = text.trim().parse::<u64>().ok().map(|b| b >> 20)
                    }
                    Some("storage") if in_recommended => {
                        guess.disk_gib = text.trim().parse::<u64>().ok().map(|b| b >> 30)
                    }
                    Some("n-cpus") if in_recommended => guess.vcpus = text.trim().parse().ok(),
                    _ => {}
                }
            }
            Event::Eof => break,
            _ => {}
        }
    }
    matched.then_some(guess)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape of an osinfo-db entry (abridged from debian-11.xml).
    const DEBIAN: &str = r#"<?xml version="1.0" encoding="UTF-8"?>
<libosinfo version="0.0.1">
  <os id="http://debian.org/debian/11">
    <short-id>debian11</short-id>
    <name>Debian 11</name>
    <resources arch="all">
      <minimum><n-cpus>1</n-cpus><ram>268435456</ram></minimum>
      <recommended>
        <n-cpus>1</n-cpus>
        <ram>1073741824</ram>
        <storage>21474836480</storage>
      </recommended>
    </resources>
    <variant id="netinst"><name>Debian 11 netinst</name></variant>
    <media arch="aarch64"><iso><volume-id>Debian 11.\d+.\d+ arm64 n</volume-id></iso></media>
    <media arch="x86_64"><iso><volume-id>Debian 11.\d+.\d+ amd64 n</volume-id></iso></media>
  </os>
</libosinfo>"#;

    #[test]
    fn a_debian_label_finds_debian_and_its_recommendations() {
        let guess = match_os(DEBIAN, "Debian 11.6.0 amd64 n").unwrap();
        assert_eq!(guess.name, "Debian 11");
        assert_eq!(guess.short_id, "debian11");
        assert_eq!(guess.memory_mib, Some(1024));
        assert_eq!(guess.disk_gib, Some(20));
        assert_eq!(guess.vcpus, Some(1));
    }

    #[test]
    fn other_architectures_and_partial_matches_are_not_taken() {
        assert_eq!(match_os(DEBIAN, "Debian 11.6.0 arm64 n"), None);
        assert_eq!(match_os(DEBIAN, "Debian 11.6.0 amd64 netinst"), None);
        assert_eq!(match_os("<not xml", "x"), None);
    }

    #[test]
    fn the_copy_installed_with_vireo_is_searched_first() {
        let dirs = dirs_with(Some(Path::new("/app/share")));
        assert_eq!(
            dirs,
            [
                "/app/share/osinfo/os",
                "/usr/share/osinfo/os",
                "/usr/local/share/osinfo/os"
            ]
            .map(PathBuf::from)
        );
        let dirs = dirs_with(Some(Path::new("/opt/vireo/share")));
        assert_eq!(dirs[0], PathBuf::from("/opt/vireo/share/osinfo/os"));
        assert_eq!(dirs[1], PathBuf::from("/app/share/osinfo/os"));
        assert_eq!(dirs_with(None)[0], PathBuf::from("/app/share/osinfo/os"));
    }

    #[test]
    fn detection_reads_the_vendor_directories_of_each_dir_in_order() {
        let tmp = tempfile::tempdir().unwrap();
        let (empty, first, second) = (
            tmp.path().join("missing/os"),
            tmp.path().join("a/os"),
            tmp.path().join("b/os"),
        );
        for dir in [&first, &second] {
            std::fs::create_dir_all(dir.join("debian.org")).unwrap();
        }
        std::fs::write(first.join("debian.org/junk.xml"), "<not xml").unwrap();
        std::fs::write(
            second.join("debian.org/debian-11.xml"),
            DEBIAN.replace("Debian 11<", "Debian 11 (second)<"),
        )
        .unwrap();
        let dirs = [empty.clone(), first.clone(), second.clone()];
        let guess = detect_in(&dirs, "Debian 11.6.0 amd64 n").unwrap();
        assert_eq!(guess.name, "Debian 11 (second)");
        std::fs::write(first.join("debian.org/debian-11.xml"), DEBIAN).unwrap();
        assert_eq!(
            detect_in(&dirs, "Debian 11.6.0 amd64 n").unwrap().name,
            "Debian 11",
            "an earlier directory wins"
        );
        assert_eq!(detect_in(&dirs, "SOMETHING ELSE"), None);
        assert_eq!(detect_in(&[empty], "Debian 11.6.0 amd64 n"), None);
    }

    #[test]
    fn the_label_comes_from_the_primary_volume_descriptor() {
        let dir = tempfile::tempdir().unwrap();
        let iso = dir.path().join("a.iso");
        let mut bytes = vec![0u8; 18 * 2048];
        let pvd = &mut bytes[16 * 2048..17 * 2048];
        pvd[0] = 1;
        pvd[1..6].copy_from_slice(b"CD001");
        pvd[40..72].copy_from_slice(format!("{:<32}", "MY_LABEL").as_bytes());
        std::fs::write(&iso, &bytes).unwrap();
        assert_eq!(iso_volume_label(&iso).unwrap().as_deref(), Some("MY_LABEL"));
        std::fs::write(&iso, &bytes[..4096]).unwrap();
        assert_eq!(iso_volume_label(&iso).unwrap(), None, "truncated");
    }
}
