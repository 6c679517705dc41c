//! `<os>`: guest type, firmware, boot devices and direct kernel boot
//! (<https://libvirt.org/formatdomain.html#operating-system-booting>).

use super::{attr_bool, yes_no, Domain, DomainError, Element, DOMAIN_ORDER};

/// The order libvirt writes `<os>`'s children in.
const OS_ORDER: &[&str] = &[
    "type", "firmware", "loader", "nvram", "kernel", "initrd", "cmdline", "dtb", "acpi", "boot",
    "bootmenu", "smbios", "bios",
];

/// A `<boot dev=>` entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDevice {
    Hd,
    Cdrom,
    Fd,
    Network,
}

impl BootDevice {
    pub fn as_str(self) -> &'static str {
        match self {
            BootDevice::Hd => "hd",
            BootDevice::Cdrom => "cdrom",
            BootDevice::Fd => "fd",
            BootDevice::Network => "network",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "hd" => BootDevice::Hd,
            "cdrom" => BootDevice::Cdrom,
            "fd" => BootDevice::Fd,
            "network" => BootDevice::Network,
            _ => return None,
        })
    }
}

/// `<loader readonly='yes' type='rom'>PATH</loader>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loader {
    pub path: String,
    pub readonly: Option<bool>,
    /// `rom` or `pflash`.
    pub kind: Option<String>,
}

/// What `<os>` says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Os {
    /// `<type>`: `hvm` for a full virtual machine.
    pub os_type: Option<String>,
    pub arch: Option<String>,
    pub machine: Option<String>,
    pub loader: Option<Loader>,
    /// `<boot dev=>` entries in order.
    pub boot: Vec<BootDevice>,
    /// `<bootmenu enable=>`.
    pub bootmenu: Option<bool>,
    pub kernel: Option<String>,
    pub initrd: Option<String>,
    pub cmdline: Option<String>,
}

impl Domain {
    pub fn os(&self) -> Result<Os, DomainError> {
        let Some(os) = self.root().child("os") else {
            return Ok(Os::default());
        };
        let mut boot = Vec::new();
        for b in os.children_named("boot") {
            let dev = b
                .attr("dev")
                .ok_or_else(|| DomainError::invalid(b, "<boot> has no dev="))?;
            boot.push(BootDevice::from_name(dev).ok_or_else(|| {
                DomainError::invalid(
                    b,
                    format!("<boot dev='{dev}'>: not hd, cdrom, fd or network"),
                )
            })?);
        }
        let os_type = os.child("type");
        Ok(Os {
            os_type: os_type.map(|t| t.text().trim().to_string()),
            arch: os_type.and_then(|t| t.attr("arch")).map(str::to_string),
            machine: os_type.and_then(|t| t.attr("machine")).map(str::to_string),
            loader: match os.child("loader") {
                Some(l) => Some(Loader {
                    path: l.text().trim().to_string(),
                    readonly: attr_bool(l, "readonly")?,
                    kind: l.attr("type").map(str::to_string),
                }),
                None => None,
            },
            boot,
            bootmenu: match os.child("bootmenu") {
                Some(m) => attr_bool(m, "enable")?,
                None => None,
            },
            kernel: os.child_text("kernel"),
            initrd: os.child_text("initrd"),
            cmdline: os.child("cmdline").map(Element::text),
        })
    }

    /// Writes `os` into `<os>`, keeping what [`Os`] does not model.
    pub fn set_os(&mut self, value: &Os) {
        let os = self.root_mut().ensure_child("os", DOMAIN_ORDER);
        {
            let t = os.ensure_child("type", OS_ORDER);
            t.set_opt_attr("arch", value.arch.as_deref());
            t.set_opt_attr("machine", value.machine.as_deref());
            let text = value.os_type.as_deref().unwrap_or("hvm");
            if t.text().trim() != text {
                t.set_text(text);
            }
        }
        match &value.loader {
            Some(loader) => {
                let l = os.ensure_child("loader", OS_ORDER);
                l.set_opt_attr("readonly", loader.readonly.map(yes_no));
                l.set_opt_attr("type", loader.kind.as_deref());
                if l.text().trim() != loader.path {
                    l.set_text(loader.path.as_str());
                }
            }
            None => os.remove_children("loader"),
        }
        for (name, text) in [
            ("kernel", &value.kernel),
            ("initrd", &value.initrd),
            ("cmdline", &value.cmdline),
        ] {
            let same = os.child(name).map(|e| e.text()).as_deref().map(str::trim)
                == text.as_deref().map(str::trim);
            if !same {
                os.set_child_text(name, text.as_deref(), OS_ORDER);
            }
        }
        let current: Vec<Option<&str>> = os.children_named("boot").map(|b| b.attr("dev")).collect();
        let wanted: Vec<Option<&str>> = value.boot.iter().map(|b| Some(b.as_str())).collect();
        if current != wanted {
            os.remove_children("boot");
            for dev in &value.boot {
                os.insert_child(
                    Element::new("boot").with_attr("dev", dev.as_str()),
                    OS_ORDER,
                );
            }
        }
        match value.bootmenu {
            Some(on) => {
                os.ensure_child("bootmenu", OS_ORDER)
                    .set_attr("enable", yes_no(on));
            }
            None => os.remove_children("bootmenu"),
        }
    }
}
