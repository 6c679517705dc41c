//! From a libvirt definition to the machine Vireo builds: [`from_domain`]
//! gives the VMM the [`VmConfig`] it runs, [`for_definition`] also
//! connects each NIC to its libvirt network; [`unsupported`] says, in
//! sentences for the user, what in the definition Vireo will not emulate or
//! will do differently.
//!
//! This is the one module that knows both the domain model
//! ([`crate::domain`], which knows no machine) and the machine
//! ([`crate::vmm`], which knows no XML).
//!
//! The machine is the i440FX/PIIX3 PC of DESIGN.md section 3: PIIX IDE at
//! 00:01.1, virtio-blk disks, COM1, an i8042 PS/2 keyboard and mouse, a USB
//! tablet on the PIIX3 UHCI at 00:01.2, the RTC, and SeaBIOS. What else a
//! definition asks for is listed by [`unsupported`].

pub mod nics;

use std::path::{Path, PathBuf};

use crate::definitions::{Definition, NetworkStore};
use crate::domain::{
    BootDevice, Console, Controller, Disk, Domain, DomainError, Hostdev, Input, LifecycleEvent,
    Memballoon, Os, Serial, Sound, Video,
};
use crate::storage::{CacheMode, DiscardMode, ImageFormat};
use crate::vmm::{
    DirectBoot, DiskBus, DiskConfig, DiskKind, LifecycleAction, NicBackend, VideoConfig,
    VideoModel, VmConfig,
};

/// The first PCI slot given to virtio disks without an address (slots 2 and
/// 3 are where QEMU puts the VGA card and the first NIC).
const FIRST_VIRTIO_DISK_SLOT: u8 = 5;

/// The domain as the VMM runs it.
pub fn from_domain(d: &Domain) -> Result<VmConfig, DomainError> {
    if let Some(kind) = d.domain_type() {
        if kind != "kvm" {
            tracing::warn!("domain type '{kind}' runs on KVM in Vireo");
        }
    }
    let memory = d.memory()?.ok_or_else(|| {
        DomainError::whole("the domain has no <memory> (nor memory in its <numa> cells)")
    })?;
    let mut config = VmConfig::new(d.name().trim(), memory);
    config.vcpus = d.vcpu()?.count;
    let os = d.os()?;
    config.loader = os.loader.as_ref().map(|l| PathBuf::from(&l.path));
    config.direct_boot = direct_boot(&os)?;
    config.on_poweroff = lifecycle(d, LifecycleEvent::Poweroff, LifecycleAction::Destroy);
    config.on_reboot = lifecycle(d, LifecycleEvent::Reboot, LifecycleAction::Restart);
    config.on_crash = lifecycle(d, LifecycleEvent::Crash, LifecycleAction::Destroy);

    let mut next_virtio_slot = FIRST_VIRTIO_DISK_SLOT;
    let reserved = explicit_slots(d);
    for (i, disk) in d.disks()?.iter().enumerate() {
        let el = d
            .root()
            .child("devices")
            .and_then(|devs| devs.children_named("disk").nth(i))
            .unwrap_or(d.root());
        config.disks.push(
            disk_config(disk, &mut next_virtio_slot, &reserved)
                .map_err(|m| DomainError::invalid(el, m))?,
        );
    }
    apply_os_boot_order(&os.boot, &mut config.disks)?;
    let disk_slots: Vec<u8> = config
        .disks
        .iter()
        .filter_map(|disk| match disk.bus {
            DiskBus::Virtio { slot } => Some(slot),
            DiskBus::Ide { .. } => None,
        })
        .collect();
    config.nics = nics::nic_configs(d, &disk_slots)?;
    if let Some(video) = d.devices::<Video>()?.first() {
        config.video = video_config(video);
    }
    config.usb_tablet = has_usb_tablet(d)?;
    check_slots(&config)?;
    Ok(config)
}

/// The machine to run for a stored definition: the domain's, with each
/// NIC on a libvirt network given that network's addressing (the network
/// must be active, as libvirt requires).
pub fn for_definition(definition: &Definition) -> Result<VmConfig, DomainError> {
    let mut config = from_domain(definition.domain())?;
    resolve_networks(&mut config)?;
    Ok(config)
}

/// Connects each NIC of `config` on a libvirt network to that network:
/// a NAT network's addressing, an isolated network's switch. The network
/// must be active, as libvirt requires.
pub fn resolve_networks(config: &mut VmConfig) -> Result<(), DomainError> {
    if !config.nics.iter().any(|nic| nic.network.is_some()) {
        return Ok(());
    }
    let networks = NetworkStore::open().map_err(|e| DomainError::whole(e.to_string()))?;
    for nic in &mut config.nics {
        let Some(name) = &nic.network else { continue };
        let network = networks
            .get(name)
            .map_err(|e| DomainError::whole(e.to_string()))?;
        if !network.active {
            return Err(DomainError::whole(format!(
                "network '{name}' is not active (start it with `vireo net-start {name}`)"
            )));
        }
        if network.def.forward_mode() == "bridge" {
            nic.backend = NicBackend::Tap {
                bridge: network.def.bridge().unwrap_or_default(),
                target: nic.target_dev.clone(),
            };
            continue;
        }
        if network.def.forward_mode() == "isolated" {
            nic.backend = NicBackend::Switch {
                network: name.clone(),
                socket: crate::net::switch::socket_path(name),
            };
            continue;
        }
        let user = network
            .def
            .user_config()
            .map_err(|e| DomainError::whole(format!("network '{name}': {e}")))?;
        nic.backend = NicBackend::User(user);
    }
    Ok(())
}

/// Reads a domain definition from a file and turns it into the VMM's configuration.
pub fn load(path: &Path) -> Result<VmConfig, DomainError> {
    from_domain(&Domain::load(path)?)
}

/// Turns domain XML into the VMM's configuration.
pub fn parse(xml: &str) -> Result<VmConfig, DomainError> {
    from_domain(&Domain::parse(xml)?)
}

/// `<os><kernel>`, `<initrd>`, `<cmdline>`: a kernel to boot directly.
/// An initrd or command line without a kernel is refused, as libvirt
/// would have nothing to hand them to.
fn direct_boot(os: &Os) -> Result<Option<DirectBoot>, DomainError> {
    let kernel = os
        .kernel
        .as_deref()
        .map(str::trim)
        .filter(|k| !k.is_empty());
    let Some(kernel) = kernel else {
        if os.initrd.is_some() || os.cmdline.as_deref().is_some_and(|c| !c.trim().is_empty()) {
            return Err(DomainError::whole(
                "<os> has an <initrd> or <cmdline> but no <kernel> to boot with them",
            ));
        }
        return Ok(None);
    };
    Ok(Some(DirectBoot {
        kernel: PathBuf::from(kernel),
        initrd: os
            .initrd
            .as_deref()
            .map(str::trim)
            .filter(|i| !i.is_empty())
            .map(PathBuf::from),
        cmdline: os.cmdline.as_deref().unwrap_or("").trim().to_string(),
    }))
}

/// `<input type='tablet' bus='usb'/>`, unless USB is switched off with
/// `<controller type='usb' model='none'/>` (libvirt refuses that pair; a
/// definition written by hand gets the PS/2 mouse alone).
fn has_usb_tablet(d: &Domain) -> Result<bool, DomainError> {
    let usb_off = d
        .devices::<Controller>()?
        .iter()
        .any(|c| c.kind == "usb" && c.model.as_deref() == Some("none"));
    let tablet = d
        .devices::<Input>()?
        .iter()
        .any(|i| i.kind == "tablet" && i.bus.as_deref() == Some("usb"));
    Ok(tablet && !usb_off)
}

/// `<video>`: every model runs as the standard VGA (the unsupported list
/// says so), `none` has no display; `vram` (KiB) becomes a power of two
/// between 1 and 256 MiB, as the card's BAR must be.
fn video_config(video: &Video) -> VideoConfig {
    if video.model.as_deref() == Some("none") {
        return VideoConfig {
            model: VideoModel::None,
            ..VideoConfig::default()
        };
    }
    let vram_bytes = video
        .vram
        .map(|kib| {
            (kib as u64 * 1024)
                .clamp(1 << 20, 256 << 20)
                .next_power_of_two()
        })
        .unwrap_or(VideoConfig::default().vram_bytes);
    VideoConfig {
        model: VideoModel::Vga,
        vram_bytes,
    }
}

fn lifecycle(d: &Domain, event: LifecycleEvent, default: LifecycleAction) -> LifecycleAction {
    match d.lifecycle(event).as_deref() {
        None => default,
        Some("destroy") => LifecycleAction::Destroy,
        Some("restart") => LifecycleAction::Restart,
        Some("preserve") => LifecycleAction::Preserve,
        // rename-restart and the coredump actions: see `unsupported`.
        Some(_) => LifecycleAction::Destroy,
    }
}

/// `hda`→(0,0), `hdb`→(0,1), `hdc`→(1,0), `hdd`→(1,1); `sda`… likewise.
fn ide_position(dev: &str) -> Option<(u8, u8)> {
    let letter = dev
        .strip_prefix("hd")
        .or_else(|| dev.strip_prefix("sd"))?
        .bytes()
        .next()?;
    let index = letter.checked_sub(b'a')?;
    (index < 4 && dev.len() == 3).then_some((index / 2, index % 2))
}

/// The bus a disk without `<target bus=>` is on, from its target name
/// (`vd…` virtio, `sd…` SATA, else IDE).
pub fn default_bus(target: &str) -> &'static str {
    if target.starts_with("vd") {
        "virtio"
    } else if target.starts_with("sd") {
        "sata"
    } else {
        "ide"
    }
}

/// The slots of bus 0 that devices other than disks name in their
/// `<address type='pci'>`: a disk without an address does not take them.
fn explicit_slots(d: &Domain) -> Vec<u8> {
    let Some(devices) = d.devices_element() else {
        return Vec::new();
    };
    devices
        .children_named("interface")
        .filter_map(|device| device.child("address"))
        .filter(|a| a.attr("type") == Some("pci"))
        .filter(|a| {
            a.attr("bus")
                .and_then(crate::domain::parse_number)
                .unwrap_or(0)
                == 0
        })
        .filter_map(|a| a.attr("slot").and_then(crate::domain::parse_number))
        .filter_map(|slot| u8::try_from(slot).ok())
        .collect()
}

/// Refuses a machine with two devices in one PCI slot (a disk and a NIC,
/// or either where the chipset or the VGA card is), naming both: the
/// machine could not wire them.
fn check_slots(config: &VmConfig) -> Result<(), DomainError> {
    let mut used: Vec<(u8, String)> = vec![
        (0, "the i440FX host bridge".to_string()),
        (1, "the PIIX3 (ISA, IDE, USB, power management)".to_string()),
    ];
    if config.video.model == VideoModel::Vga {
        used.push((2, "the VGA card".to_string()));
    }
    for disk in &config.disks {
        if let DiskBus::Virtio { slot } = disk.bus {
            used.push((slot, format!("disk {}", disk.target)));
        }
    }
    for nic in &config.nics {
        let mac = nic.mac.map(|b| format!("{b:02x}")).join(":");
        used.push((nic.slot, format!("network interface {mac}")));
    }
    for (i, (slot, what)) in used.iter().enumerate() {
        if let Some((_, first)) = used[..i].iter().find(|(s, _)| s == slot) {
            return Err(DomainError::whole(format!(
                "PCI slot 00:{slot:02x}.0 would hold both {first} and {what}; give one of them another <address type='pci' slot=…>"
            )));
        }
    }
    Ok(())
}

fn disk_config(
    disk: &Disk,
    next_virtio_slot: &mut u8,
    reserved: &[u8],
) -> Result<DiskConfig, String> {
    let target = disk.target_dev.clone();
    let kind = match disk.device.as_str() {
        "disk" => DiskKind::Disk,
        "cdrom" => DiskKind::Cdrom,
        other => {
            return Err(format!(
                "disk {target}: device '{other}' is not supported (disk or cdrom)"
            ))
        }
    };
    let format = match disk.driver_type.as_deref() {
        None | Some("raw") => ImageFormat::Raw,
        Some("qcow2") => ImageFormat::Qcow2,
        Some(other) => {
            return Err(format!(
                "disk {target}: image format '{other}' is not supported (raw or qcow2)"
            ))
        }
    };
    if !matches!(disk.disk_type.as_str(), "file" | "block") {
        return Err(format!(
            "disk {target}: type '{}' is not supported (file or block)",
            disk.disk_type
        ));
    }
    let bus_name = disk
        .target_bus
        .as_deref()
        .unwrap_or_else(|| default_bus(&target));
    let bus = match bus_name {
        "ide" | "sata" => {
            // An IDE drive address is (channel, unit); a SATA one is a port
            // number, so SATA disks take IDE positions from their name.
            let from_address = disk
                .address
                .as_ref()
                .filter(|a| a.kind == "drive" && bus_name == "ide")
                .and_then(|a| Some((a.bus? as u8, a.unit? as u8)));
            let (channel, unit) =
                from_address
                    .or_else(|| ide_position(&target))
                    .ok_or_else(|| {
                        format!("disk {target}: IDE targets are hda to hdd (sda to sdd for SATA)")
                    })?;
            if channel > 1 || unit > 1 {
                return Err(format!("disk {target}: IDE has two channels of two units"));
            }
            DiskBus::Ide { channel, unit }
        }
        "virtio" => {
            let slot = match disk
                .address
                .as_ref()
                .filter(|a| a.kind == "pci")
                .and_then(|a| a.slot)
            {
                Some(slot) if (2..32).contains(&slot) => slot as u8,
                Some(slot) => return Err(format!("disk {target}: PCI slot {slot} is not 2..31")),
                None => {
                    while reserved.contains(next_virtio_slot) {
                        *next_virtio_slot += 1;
                    }
                    let slot = *next_virtio_slot;
                    if slot >= 32 {
                        return Err(format!("disk {target}: no PCI slot left"));
                    }
                    *next_virtio_slot += 1;
                    slot
                }
            };
            DiskBus::Virtio { slot }
        }
        other => {
            return Err(format!(
                "disk {target}: bus '{other}' is not supported (ide, sata, virtio)"
            ))
        }
    };
    let path = disk.source.as_ref().map(PathBuf::from);
    if path.is_none() && kind == DiskKind::Disk {
        return Err(format!("disk {target} has no <source file=…>"));
    }
    Ok(DiskConfig {
        target,
        kind,
        bus,
        path,
        format,
        read_only: disk.readonly || kind == DiskKind::Cdrom,
        boot_order: disk.boot_order,
        // Validation accepted only libvirt's names.
        cache: disk
            .driver_cache
            .as_deref()
            .and_then(CacheMode::from_libvirt)
            .unwrap_or_default(),
        discard: disk
            .driver_discard
            .as_deref()
            .and_then(DiscardMode::from_libvirt)
            .unwrap_or_default(),
    })
}

/// `<os><boot dev='cdrom'/><boot dev='hd'/>` gives the first disk of each
/// kind a place in the boot order, unless disks carry `<boot order=>`
/// themselves (libvirt forbids mixing the two).
fn apply_os_boot_order(boots: &[BootDevice], disks: &mut [DiskConfig]) -> Result<(), DomainError> {
    if boots.is_empty() {
        return Ok(());
    }
    if disks.iter().any(|d| d.boot_order.is_some()) {
        return Err(DomainError::whole(
            "per-device <boot order> cannot be used together with <os><boot dev>",
        ));
    }
    let mut order = 1;
    for boot in boots {
        let wanted = match boot {
            BootDevice::Hd => DiskKind::Disk,
            BootDevice::Cdrom => DiskKind::Cdrom,
            BootDevice::Fd | BootDevice::Network => continue,
        };
        if let Some(disk) = disks
            .iter_mut()
            .find(|d| d.kind == wanted && d.boot_order.is_none())
        {
            disk.boot_order = Some(order);
            order += 1;
        }
    }
    Ok(())
}

/// Machine types that name the i440FX PC Vireo builds (QEMU's `pc`,
/// `pc-i440fx-*`, and RHEL's `rhel*` which are i440FX too).
fn is_i440fx(machine: &str) -> bool {
    machine == "pc" || machine.starts_with("pc-i440fx") || machine.starts_with("rhel")
}

/// What Vireo will not emulate for this definition, or will do another
/// way, in sentences for the user. An empty list means the definition runs
/// as written.
pub fn unsupported(d: &Domain) -> Vec<String> {
    let mut out = Vec::new();
    let root = d.root();
    if let Some(kind) = d.domain_type() {
        if kind != "kvm" {
            out.push(format!("the '{kind}' domain type runs on KVM"));
        }
    }
    for name in [
        "genid",
        "blkiotune",
        "memtune",
        "memoryBacking",
        "cputune",
        "numatune",
        "resource",
        "iothreads",
        "sysinfo",
        "seclabel",
    ] {
        if root.child(name).is_some() {
            out.push(format!("<{name}> settings are not applied"));
        }
    }
    if root.child("vcpu").and_then(|v| v.attr("cpuset")).is_some() {
        out.push("vCPU pinning (<vcpu cpuset=>) is not applied".into());
    }
    if root.elements().any(|e| e.name.ends_with(":commandline")) {
        out.push("QEMU command-line passthrough (<qemu:commandline>) is ignored".into());
    }
    if let (Ok(Some(memory)), Ok(Some(current))) = (d.memory(), d.current_memory()) {
        if current < memory {
            out.push(format!(
                "the guest gets all {} MiB at boot; <currentMemory> ({} MiB) needs a balloon",
                memory >> 20,
                current >> 20
            ));
        }
    }
    if let Ok(vcpu) = d.vcpu() {
        if vcpu.current.is_some_and(|c| c < vcpu.count) {
            out.push(format!(
                "all {} vCPUs are online at boot (vCPU hot-plug is not supported)",
                vcpu.count
            ));
        }
    }
    if let Ok(Some(t)) = d.cpu_topology() {
        // cpuid.rs describes all vCPUs as one package (leaf 01h), whatever
        // the definition's topology.
        out.push(format!(
            "the CPU topology (sockets={}, cores={}, threads={}) is not applied; the guest sees {} logical CPUs in one package",
            t.sockets,
            t.cores,
            t.threads,
            d.vcpu().map(|v| v.count).unwrap_or(1)
        ));
    }
    if let Some(cpu) = root.child("cpu") {
        if cpu.child("model").is_some() || cpu.attr("mode").is_some_and(|m| m != "host-passthrough")
        {
            out.push(
                "the CPU model is not applied; the guest sees the host CPU as KVM reports it"
                    .into(),
            );
        }
    }

    if let Ok(os) = d.os() {
        if let Some(machine) = os.machine.as_deref() {
            if !is_i440fx(machine) {
                out.push(format!(
                    "machine type {machine} is not emulated; the VM is an i440FX PC"
                ));
            }
        }
        if let Some(arch) = os.arch.as_deref() {
            if arch != "x86_64" && arch != "i686" {
                out.push(format!(
                    "architecture {arch} cannot run on this host; Vireo runs x86 guests"
                ));
            }
        }
        if os
            .loader
            .as_ref()
            .is_some_and(|l| l.kind.as_deref() == Some("pflash"))
        {
            out.push(
                "UEFI (pflash) firmware is not supported; the loader is mapped as a BIOS ROM"
                    .into(),
            );
        }
        if os.kernel.is_some() && os.loader.is_some() {
            out.push("with direct kernel boot the <loader> firmware does not run; Vireo starts the kernel itself".into());
        }
        if os.kernel.is_some() && !os.boot.is_empty() {
            out.push("with direct kernel boot the <boot dev> order is not used".into());
        }
        for dev in &os.boot {
            match dev {
                BootDevice::Fd => {
                    out.push("booting from a floppy is not supported (no floppy controller)".into())
                }
                BootDevice::Network => out.push(
                    "network boot: SeaBIOS tries the NICs' iPXE ROM after the disks; <boot dev='network'> does not put it first yet"
                        .into(),
                ),
                _ => {}
            }
        }
        if os.bootmenu == Some(true) {
            out.push("the boot menu is not enabled (<bootmenu enable='yes'>)".into());
        }
    }

    for feature in d.features() {
        match feature.as_str() {
            // PAE is a CPU flag KVM gives the guest; the APIC is KVM's
            // in-kernel one; ACPI tables and the PIIX4 PM are always there.
            "pae" | "apic" | "acpi" => {}
            other => out.push(format!("the '{other}' feature is not applied")),
        }
    }

    if let Ok(clock) = d.clock() {
        match clock.offset.as_deref() {
            None | Some("utc") => {}
            Some(offset) => out.push(format!(
                "clock offset '{offset}' is not applied; the guest's clock starts at UTC"
            )),
        }
        for timer in &clock.timers {
            if let Some(policy) = &timer.tickpolicy {
                out.push(format!(
                    "timer {}: tick policy '{policy}' is not applied",
                    timer.name
                ));
            }
            if timer.present == Some(true) && timer.name == "hpet" {
                out.push("the HPET is not emulated".into());
            }
        }
    }

    for event in [
        LifecycleEvent::Poweroff,
        LifecycleEvent::Reboot,
        LifecycleEvent::Crash,
    ] {
        if let Some(action) = d.lifecycle(event) {
            if !matches!(action.as_str(), "destroy" | "restart" | "preserve") {
                out.push(format!(
                    "<{}> '{action}' is not supported; the VM is destroyed",
                    event.element()
                ));
            }
        }
    }

    if let Some(emulator) = d.emulator() {
        out.push(format!(
            "the emulator {emulator} is not used; Vireo runs the VM itself"
        ));
    }
    unsupported_devices(d, &mut out);
    out
}

fn unsupported_devices(d: &Domain, out: &mut Vec<String>) {
    let Some(devices) = d.devices_element() else {
        return;
    };
    let mut virtio_slot = FIRST_VIRTIO_DISK_SLOT;
    let reserved = explicit_slots(d);
    for disk in d.disks().unwrap_or_default() {
        if let Err(reason) = disk_config(&disk, &mut virtio_slot, &reserved) {
            out.push(format!("{reason}; the VM cannot start with it"));
            continue;
        }
        let target = &disk.target_dev;
        if disk.target_bus.as_deref() == Some("sata") {
            out.push(format!(
                "disk {target}: SATA (AHCI) is not emulated; it is attached to IDE"
            ));
        }
        if let Some(cache) = disk.driver_cache.as_deref() {
            // Their durability is honoured, their O_DIRECT is not.
            if cache == "none" || cache == "directsync" {
                out.push(format!(
                    "disk {target}: cache mode '{cache}' still uses the host page cache"
                ));
            }
        }
        if disk.shareable {
            out.push(format!(
                "disk {target}: shareable is not supported; the image is locked for this VM"
            ));
        }
    }

    let controllers = d.devices::<Controller>().unwrap_or_default();
    // The PIIX3's own UHCI (libvirt's default USB controller for a pc
    // machine) is the one there is; USB devices sit on it.
    let usb: Vec<String> = controllers
        .iter()
        .filter_map(|c| c.model.clone().filter(|_| c.kind == "usb"))
        .filter(|m| m != "none" && m != "piix3-uhci")
        .collect();
    if !usb.is_empty() {
        out.push(format!(
            "USB controllers other than the PIIX3 UHCI are not emulated ({}); USB devices are on the PIIX3 UHCI",
            usb.join(", ")
        ));
    }
    for c in &controllers {
        match c.kind.as_str() {
            // PIIX IDE, and the PCI root/ISA bridge, are the machine's own.
            "ide" | "usb" | "fdc" | "isa" => {}
            "pci" if matches!(c.model.as_deref(), None | Some("pci-root")) => {}
            "virtio-serial" => out.push("the virtio-serial controller is not emulated".into()),
            kind => {
                let model = c
                    .model
                    .as_deref()
                    .map(|m| format!(" ({m})"))
                    .unwrap_or_default();
                out.push(format!("the {kind} controller{model} is not emulated"));
            }
        }
        if c.kind == "fdc" {
            out.push("the floppy controller is not emulated".into());
        }
    }

    nics::unsupported(d, out);

    for serial in d.devices::<Serial>().unwrap_or_default() {
        let port = serial.0.target_port.unwrap_or(0);
        if port != 0 {
            out.push(format!("serial port {port} is not emulated; only COM1 is"));
        } else if !matches!(serial.0.kind.as_str(), "pty" | "stdio" | "file" | "null") {
            out.push(format!(
                "serial port 0 of type '{}' is served on Vireo's console instead",
                serial.0.kind
            ));
        }
    }
    for console in d.devices::<Console>().unwrap_or_default() {
        match console.0.target_type.as_deref() {
            None | Some("serial") => {}
            Some(other) => out.push(format!(
                "the {other} console is not emulated; use the serial console"
            )),
        }
    }
    for input in d.devices::<Input>().unwrap_or_default() {
        let bus = input.bus.as_deref().unwrap_or("ps2");
        match (input.kind.as_str(), bus) {
            ("mouse" | "keyboard", "ps2") | ("tablet", "usb") => {}
            ("tablet", _) => out.push(format!(
                "the {bus} tablet is not emulated; the pointer is the PS/2 mouse"
            )),
            (kind, bus) => out.push(format!(
                "the {bus} {kind} is not emulated; the PS/2 {} is used",
                if kind == "keyboard" {
                    "keyboard"
                } else {
                    "mouse"
                }
            )),
        }
    }

    let graphics = d.graphics().unwrap_or_default();
    for (i, g) in graphics.iter().enumerate() {
        match g.kind.as_str() {
            "vnc" if i == 0 => {}
            "spice" if i == 0 => out.push("SPICE graphics will be served as VNC".into()),
            kind if i == 0 => out.push(format!("{kind} graphics will be served as VNC")),
            kind => out.push(format!("a second display ({kind}) is not provided")),
        }
        if let Some(pw) = &g.passwd {
            if i == 0 && pw.len() > 8 {
                out.push(
                    "the VNC password is cut to its first 8 characters (VNC authentication uses 8)"
                        .into(),
                );
            }
        }
    }

    for (i, video) in d.devices::<Video>().unwrap_or_default().iter().enumerate() {
        let model = video.model.as_deref().unwrap_or("vga");
        if i > 0 {
            out.push(format!("a second video card ({model}) is not emulated"));
            continue;
        }
        match model {
            "vga" | "bochs" => {}
            "none" => {}
            "qxl" => out.push("QXL video falls back to the standard VGA".into()),
            other => out.push(format!("{other} video falls back to the standard VGA")),
        }
        if video.heads.is_some_and(|h| h > 1) {
            out.push("the VGA has one head; extra heads are not provided".into());
        }
    }
    for sound in d.devices::<Sound>().unwrap_or_default() {
        out.push(format!("sound card {} is not emulated", sound.model));
    }
    for hostdev in d.devices::<Hostdev>().unwrap_or_default() {
        out.push(format!("{} is not passed through", hostdev.describe()));
    }
    for balloon in d.devices::<Memballoon>().unwrap_or_default() {
        if balloon.model != "none" {
            out.push(format!(
                "the {} memory balloon is not emulated",
                balloon.model
            ));
        }
    }

    // Device kinds no type above models.
    let modelled = [
        "emulator",
        "disk",
        "controller",
        "interface",
        "serial",
        "console",
        "input",
        "graphics",
        "video",
        "sound",
        "hostdev",
        "memballoon",
    ];
    for el in devices.elements() {
        if modelled.contains(&el.name.as_str()) {
            continue;
        }
        let detail = match (
            el.name.as_str(),
            el.attr("type"),
            el.child("target").and_then(|t| t.attr("name")),
        ) {
            ("channel", Some(kind), Some(name)) => format!("channel {kind} ({name})"),
            (tag, Some(kind), _) => format!("{tag} {kind}"),
            (tag, None, _) => match el.attr("model") {
                Some(model) => format!("{tag} {model}"),
                None => tag.to_string(),
            },
        };
        out.push(format!("{detail} is not emulated"));
    }
}

#[cfg(test)]
mod tests;
