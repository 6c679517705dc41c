//! What the VMM needs to know to build a machine. The domain module turns
//! libvirt XML into this; tests build it directly.

use std::path::PathBuf;

use crate::storage::{CacheMode, DiscardMode, ImageFormat};

/// Where a disk sits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DiskBus {
    /// PIIX IDE: channel 0 (primary) or 1 (secondary), unit 0 (master) or 1 (slave).
    Ide { channel: u8, unit: u8 },
    /// virtio-blk at PCI slot `slot` of bus 0.
    Virtio { slot: u8 },
}

/// Disk or CD-ROM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskKind {
    Disk,
    Cdrom,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskConfig {
    /// The guest-visible name from the definition (`hda`, `vda`…), for messages.
    pub target: String,
    pub kind: DiskKind,
    pub bus: DiskBus,
    /// `None` is an empty CD-ROM drive.
    pub path: Option<PathBuf>,
    /// The image format (`<driver type=>`; raw unless it says otherwise,
    /// as libvirt never guesses a format from the file's content).
    pub format: ImageFormat,
    pub read_only: bool,
    /// Position in the boot order (1 = first), from `<boot order=>` or `<os><boot dev=>`.
    pub boot_order: Option<u32>,
    /// `<driver cache=>`: when writes are made durable.
    pub cache: CacheMode,
    /// `<driver discard=>`: whether a guest's discards free space.
    pub discard: DiscardMode,
}

/// What a NIC is connected to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NicBackend {
    /// User-mode NAT (libslirp) with this guest-side addressing.
    User(crate::net::UserNetConfig),
    /// The switch of isolated network `network`, listening on `socket`.
    Switch { network: String, socket: PathBuf },
    /// A TAP device (`<target dev=>`, else a new one) on host bridge `bridge`.
    Tap {
        bridge: String,
        target: Option<String>,
    },
}

/// A virtio-net NIC (libvirt `<interface>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NicConfig {
    pub mac: [u8; 6],
    /// PCI slot on bus 0.
    pub slot: u8,
    pub backend: NicBackend,
    /// `<target dev=>`: the host device name asked for (a TAP).
    pub target_dev: Option<String>,
    /// The libvirt network it is on (`<interface type='network'>`), whose
    /// definition supplies the addressing when the VM starts.
    pub network: Option<String>,
}

/// What happens when the guest does something that ends its run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LifecycleAction {
    /// Stop the VM (the process exits).
    #[default]
    Destroy,
    /// Start it again from the firmware.
    Restart,
    /// Keep the VM paused as it is, for inspection.
    Preserve,
}

/// Which display adapter the machine has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoModel {
    /// QEMU's standard VGA (PCI 1234:1111) with Bochs VBE (libvirt `<model type='vga'/>`).
    Vga,
    /// No display adapter (libvirt `<model type='none'/>`).
    None,
}

/// The display adapter (libvirt `<video><model type= vram=/>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VideoConfig {
    pub model: VideoModel,
    /// Video memory in bytes: a power of two from 1 MiB to 256 MiB. 16 MiB
    /// holds the largest VBE mode (2560×1600 at 32 bits) twice over.
    pub vram_bytes: u64,
}

impl Default for VideoConfig {
    fn default() -> Self {
        Self {
            model: VideoModel::Vga,
            vram_bytes: 16 << 20,
        }
    }
}

/// Direct kernel boot (libvirt `<os><kernel>`, `<initrd>`, `<cmdline>`;
/// virt-install `--boot kernel=,initrd=,kernel_args=`): the VMM loads a
/// Linux bzImage, or an ELF vmlinux with a PVH entry, itself and starts it,
/// instead of the firmware booting a disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectBoot {
    pub kernel: PathBuf,
    pub initrd: Option<PathBuf>,
    /// The kernel command line (empty when the definition gives none).
    pub cmdline: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    pub name: String,
    /// Guest RAM in bytes.
    pub memory: u64,
    pub vcpus: u32,
    /// An explicit firmware image (`<os><loader>`); otherwise searched for.
    pub loader: Option<PathBuf>,
    pub disks: Vec<DiskConfig>,
    pub nics: Vec<NicConfig>,
    pub video: VideoConfig,
    /// Boot this kernel directly rather than through the firmware.
    pub direct_boot: Option<DirectBoot>,
    /// A USB tablet on the PIIX3's UHCI (libvirt `<input type='tablet' bus='usb'/>`),
    /// the absolute pointer for the console.
    pub usb_tablet: bool,
    pub on_poweroff: LifecycleAction,
    pub on_reboot: LifecycleAction,
    pub on_crash: LifecycleAction,
}

impl VmConfig {
    /// A machine with `memory` bytes of RAM, one vCPU, a VGA card, no disks
    /// and no USB tablet.
    pub fn new(name: impl Into<String>, memory: u64) -> Self {
        Self {
            name: name.into(),
            memory,
            vcpus: 1,
            loader: None,
            disks: Vec::new(),
            nics: Vec::new(),
            video: VideoConfig::default(),
            direct_boot: None,
            usb_tablet: false,
            on_poweroff: LifecycleAction::Destroy,
            on_reboot: LifecycleAction::Restart,
            on_crash: LifecycleAction::Destroy,
        }
    }
}
