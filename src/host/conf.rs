//! Vireo's host configuration, `vireo.conf` in the configuration
//! directory (`$XDG_CONFIG_HOME/vireo/vireo.conf`): the counterpart of
//! libvirt's `qemu.conf`, in its syntax (`key = value` lines, `#`
//! comments, strings in double quotes, integers) and with its key names.
//!
//! Keys (all optional):
//!
//! | key | value | meaning |
//! |---|---|---|
//! | `vnc_tls` | `0` or `1` | VNC over TCP requires VeNCrypt with TLS |
//! | `vnc_tls_x509_cert_dir` | `"DIR"` | `ca-cert.pem`, `server-cert.pem`, `server-key.pem`; default `CONFIG/pki/vnc` |
//! | `vnc_tls_x509_verify` | `0` or `1` | clients must show a certificate signed by `ca-cert.pem` |
//!
//! An unknown key is an error rather than ignored, so that a misspelt
//! `vnc_tls` cannot quietly leave a console unencrypted.

use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The file's name in the configuration directory.
pub const FILE_NAME: &str = "vireo.conf";

/// What `vireo.conf` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostConf {
    /// `vnc_tls`: VeNCrypt/TLS on every VNC TCP listener.
    pub vnc_tls: bool,
    /// `vnc_tls_x509_cert_dir`, if set.
    pub vnc_tls_x509_cert_dir: Option<PathBuf>,
    /// `vnc_tls_x509_verify`: client certificates are required.
    pub vnc_tls_x509_verify: bool,
}

/// Why `vireo.conf` could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A line is not `key = value` with a known key and a fitting value.
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    /// `vnc_tls = 1` but the credentials cannot be loaded.
    #[error("{path} sets vnc_tls = 1, but {source}")]
    Tls {
        path: PathBuf,
        #[source]
        source: crate::vnc::tls::TlsError,
    },
}

/// A value as libvirt's configuration syntax writes it.
enum Value {
    Int(i64),
    Str(String),
}

fn parse_value(text: &str) -> Result<Value, String> {
    if let Some(inner) = text.strip_prefix('"') {
        let inner = inner
            .strip_suffix('"')
            .ok_or_else(|| format!("{text} has no closing quote"))?;
        if inner.contains('"') {
            return Err(format!("{text} is not one quoted string"));
        }
        return Ok(Value::Str(inner.to_string()));
    }
    text.parse()
        .map(Value::Int)
        .map_err(|_| format!("{text} is neither a number nor a \"quoted string\""))
}

/// The text without a `#` comment, minding `#` inside quotes.
fn strip_comment(line: &str) -> &str {
    let mut quoted = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '#' if !quoted => return &line[..i],
            _ => {}
        }
    }
    line
}

impl HostConf {
    /// Where the file is.
    pub fn path() -> PathBuf {
        crate::paths::config_dir().join(FILE_NAME)
    }

    /// The file's settings; all defaults when there is no file.
    pub fn load() -> Result<Self, ConfError> {
        let path = Self::path();
        match std::fs::read_to_string(&path) {
            Ok(text) => Self::parse(&text, &path),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(source) => Err(ConfError::Read { path, source }),
        }
    }

    /// Parses the text of the file at `path` (named in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Self, ConfError> {
        let mut conf = Self::default();
        for (n, raw) in text.lines().enumerate() {
            let line = strip_comment(raw).trim();
            if line.is_empty() {
                continue;
            }
            let syntax = |message: String| ConfError::Syntax {
                path: path.to_path_buf(),
                line: n + 1,
                message,
            };
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| syntax(format!("'{line}' is not key = value")))?;
            let key = key.trim();
            let value = parse_value(value.trim()).map_err(syntax)?;
            let flag = |value: &Value| match value {
                Value::Int(0) => Ok(false),
                Value::Int(1) => Ok(true),
                _ => Err(syntax(format!("{key} must be 0 or 1"))),
            };
            match key {
                "vnc_tls" => conf.vnc_tls = flag(&value)?,
                "vnc_tls_x509_verify" => conf.vnc_tls_x509_verify = flag(&value)?,
                "vnc_tls_x509_cert_dir" => match value {
                    Value::Str(dir) if !dir.is_empty() => {
                        conf.vnc_tls_x509_cert_dir = Some(PathBuf::from(dir))
                    }
                    _ => return Err(syntax(format!("{key} must be a \"directory\""))),
                },
                other => return Err(syntax(format!("unknown key '{other}'"))),
            }
        }
        Ok(conf)
    }

    /// The directory the VNC TLS credentials are read from.
    pub fn vnc_cert_dir(&self) -> PathBuf {
        self.vnc_tls_x509_cert_dir
            .clone()
            .unwrap_or_else(|| crate::paths::config_dir().join("pki/vnc"))
    }

    /// The VNC server's TLS configuration when `vnc_tls = 1`, with its
    /// credentials read now (before the VM process is confined).
    pub fn vnc_tls_config(&self) -> Result<Option<Arc<rustls::ServerConfig>>, ConfError> {
        if !self.vnc_tls {
            return Ok(None);
        }
        crate::vnc::tls::server_config(&self.vnc_cert_dir(), self.vnc_tls_x509_verify)
            .map(Some)
            .map_err(|source| ConfError::Tls {
                path: Self::path(),
                source,
            })
    }
}

/// The VNC TLS configuration `vireo.conf` asks for, as a message a user
/// can act on when it cannot be had.
pub fn vnc_tls() -> Result<Option<Arc<rustls::ServerConfig>>, String> {
    HostConf::load()
        .and_then(|conf| conf.vnc_tls_config())
        .map_err(|e| crate::logging::with_causes(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<HostConf, String> {
        HostConf::parse(text, Path::new("vireo.conf")).map_err(|e| e.to_string())
    }

    #[test]
    fn libvirt_style_lines_are_read() {
        let conf = parse(
            "# VNC over TLS, as in qemu.conf\n\
             vnc_tls = 1\n\
             \n\
             vnc_tls_x509_cert_dir = \"/etc/pki/my#vnc\"  # the certificates\n\
             vnc_tls_x509_verify=1\n",
        )
        .unwrap();
        assert_eq!(
            conf,
            HostConf {
                vnc_tls: true,
                vnc_tls_x509_cert_dir: Some(PathBuf::from("/etc/pki/my#vnc")),
                vnc_tls_x509_verify: true,
            }
        );
        assert_eq!(parse("").unwrap(), HostConf::default());
    }

    #[test]
    fn mistakes_name_the_line() {
        assert_eq!(
            parse("vnc_tls = 1\nvnc_tsl = 1\n").unwrap_err(),
            "vireo.conf:2: unknown key 'vnc_tsl'"
        );
        assert_eq!(
            parse("vnc_tls = yes").unwrap_err(),
            "vireo.conf:1: yes is neither a number nor a \"quoted string\""
        );
        assert_eq!(
            parse("vnc_tls = 2").unwrap_err(),
            "vireo.conf:1: vnc_tls must be 0 or 1"
        );
        assert_eq!(
            parse("vnc_tls_x509_cert_dir = 3").unwrap_err(),
            "vireo.conf:1: vnc_tls_x509_cert_dir must be a \"directory\""
        );
        assert_eq!(
            parse("vnc_tls").unwrap_err(),
            "vireo.conf:1: 'vnc_tls' is not key = value"
        );
    }

    #[test]
    fn tls_off_needs_no_certificates() {
        let conf = parse("vnc_tls = 0\nvnc_tls_x509_cert_dir = \"/nonexistent\"").unwrap();
        assert!(conf.vnc_tls_config().unwrap().is_none());
        let conf = parse("vnc_tls = 1\nvnc_tls_x509_cert_dir = \"/nonexistent\"").unwrap();
        let error = conf.vnc_tls_config().unwrap_err().to_string();
        assert!(
            error.contains("cannot read /nonexistent/server-cert.pem"),
            "{error}"
        );
    }
}
