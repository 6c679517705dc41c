//! Where Vireo keeps things, as a user expects (XDG base directories), all
//! under one directory when `VIREO_HOME` is set (tests always set it).
//!
//! | what | default | with `VIREO_HOME` |
//! |---|---|---|
//! | definitions | `$XDG_CONFIG_HOME/vireo` | `$VIREO_HOME/config` |
//! | images (default pool) | `$XDG_DATA_HOME/vireo/images` | `$VIREO_HOME/data/images` |
//! | logs | `$XDG_STATE_HOME/vireo/log` | `$VIREO_HOME/state/log` |
//! | sockets, pid files | `$XDG_RUNTIME_DIR/vireo` | `$VIREO_HOME/run` |

use std::path::PathBuf;

fn home_override() -> Option<PathBuf> {
    std::env::var_os("VIREO_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn xdg(var: &str, fallback_under_home: &str) -> PathBuf {
    std::env::var_os(var)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let home = std::env::var_os("HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/"));
            home.join(fallback_under_home)
        })
}

/// Definitions (domains, pools, networks).
pub fn config_dir() -> PathBuf {
    home_override()
        .map(|h| h.join("config"))
        .unwrap_or_else(|| xdg("XDG_CONFIG_HOME", ".config").join("vireo"))
}

/// Application data: the default storage pool lives in `images/`.
pub fn data_dir() -> PathBuf {
    home_override()
        .map(|h| h.join("data"))
        .unwrap_or_else(|| xdg("XDG_DATA_HOME", ".local/share").join("vireo"))
}

/// The default storage pool's directory.
pub fn images_dir() -> PathBuf {
    data_dir().join("images")
}

/// Per-VM logs.
pub fn log_dir() -> PathBuf {
    home_override()
        .map(|h| h.join("state/log"))
        .unwrap_or_else(|| xdg("XDG_STATE_HOME", ".local/state").join("vireo/log"))
}

/// Sockets and pid files of running VMs.
pub fn runtime_dir() -> PathBuf {
    home_override().map(|h| h.join("run")).unwrap_or_else(|| {
        std::env::var_os("XDG_RUNTIME_DIR")
            .filter(|v| !v.is_empty())
            .map(|d| PathBuf::from(d).join("vireo"))
            .unwrap_or_else(|| {
                // SAFETY: getuid cannot fail.
                let uid = unsafe { libc::getuid() };
                std::env::temp_dir().join(format!("vireo-{uid}"))
            })
    })
}

/// Domain definitions (the counterpart of /etc/libvirt/qemu).
pub fn domains_dir() -> PathBuf {
    config_dir().join("domains")
}

/// The installed data directory, `PREFIX/share` for a binary installed as
/// `PREFIX/bin/vireo` (`make install`, the Flatpak's `/app`), found from
/// the running executable so one build works under any prefix. `None` for
/// a binary that is not in a `bin/` directory, such as a cargo build.
pub fn installed_share_dir() -> Option<PathBuf> {
    share_dir_of(&std::env::current_exe().ok()?)
}

fn share_dir_of(exe: &std::path::Path) -> Option<PathBuf> {
    let bin = exe.parent()?;
    if bin.file_name()? != "bin" {
        return None;
    }
    Some(bin.parent()?.join("share"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vireo_home_holds_everything() {
        // Only this test touches VIREO_HOME in the unit-test process.
        std::env::set_var("VIREO_HOME", "/tmp/vh");
        assert_eq!(config_dir(), PathBuf::from("/tmp/vh/config"));
        assert_eq!(images_dir(), PathBuf::from("/tmp/vh/data/images"));
        assert_eq!(log_dir(), PathBuf::from("/tmp/vh/state/log"));
        assert_eq!(runtime_dir(), PathBuf::from("/tmp/vh/run"));
        assert_eq!(domains_dir(), PathBuf::from("/tmp/vh/config/domains"));
        std::env::remove_var("VIREO_HOME");
    }

    #[test]
    fn the_share_dir_is_beside_bin() {
        use std::path::Path;
        assert_eq!(
            share_dir_of(Path::new("/usr/local/bin/vireo")),
            Some(PathBuf::from("/usr/local/share"))
        );
        assert_eq!(
            share_dir_of(Path::new("/app/bin/vireo")),
            Some(PathBuf::from("/app/share"))
        );
        assert_eq!(share_dir_of(Path::new("/src/target/release/vireo")), None);
    }
}
