//! The machine's display adapter: the std VGA card in PCI slot 2 (where
//! QEMU puts it), its legacy ports and memory window, its VRAM mapped into
//! the guest as a dirty-logged KVM memory slot wherever the guest places
//! BAR0, and the refresh thread that renders the card into the console's
//! [`Display`], which outlives the machine across resets.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use kvm_bindings::{kvm_userspace_memory_region, KVM_MEM_LOG_DIRTY_PAGES};
use kvm_ioctls::VmFd;
use tracing::{debug, warn};

use super::config::{VideoConfig, VideoModel};
use super::kernel_boot::Framebuffer;
use super::layout::IOAPIC_START;
use super::VmmError;
use crate::devices::pci::PciBus;
use crate::devices::vga::{vbe, BlinkPhase, Renderer, SharedVga, StdVga, Vram, VramMapper};
use crate::devices::Bus;
use crate::display::Display;

/// The VGA's PCI slot (00:02.0), as on QEMU's `pc` machine.
pub const VGA_PCI_SLOT: u8 = 2;
/// The VGA BIOS SeaBIOS runs from the card's expansion ROM.
pub const VGA_BIOS_FILE: &str = "vgabios-stdvga.bin";
/// KVM memory slot of the VRAM; the RAM and BIOS slots count up from 0.
const VRAM_SLOT: u32 = 16;
/// About 30 frames per second. (60 while the guest draws was tried: two
/// desktop Linux boots on a host at load 12 stalled with it, and it stays
/// out until that is understood.)
const REFRESH_INTERVAL: Duration = Duration::from_millis(33);
/// How often the frame rate goes to the debug log while the guest draws.
const RATE_PERIOD: Duration = Duration::from_secs(5);

/// The card on the machine and the thread that draws it.
pub(super) struct AttachedVga {
    pub vga: SharedVga,
    pub vram_bytes: u64,
    pub refresh: JoinHandle<()>,
}

/// Puts the display adapter `video` asks for on the machine; returns the
/// card and the refresh thread that draws it into `display` until `stop`.
pub(super) fn attach(
    vm: &Arc<VmFd>,
    io_bus: &Bus,
    mmio_bus: &Bus,
    pci: &PciBus,
    video: &VideoConfig,
    display: Arc<Display>,
    stop: Arc<AtomicBool>,
) -> Result<Option<AttachedVga>, VmmError> {
    if video.model == VideoModel::None {
        return Ok(None);
    }
    let vram = Vram::new(video.vram_bytes)?;
    let mapper = KvmVramMapper {
        vm: vm.clone(),
        host_address: vram.host_address() as u64,
        size: vram.len() as u64,
        mapped_at: None,
    };
    let card = StdVga::new(vram, load_vga_bios());
    let vga = card.vga();
    vga.lock().unwrap().set_mapper(Box::new(mapper));
    let legacy = card.legacy_devices();
    for (port, len, device) in legacy.ports {
        io_bus.insert(device, port as u64, len)?;
    }
    let (base, len, window) = legacy.window;
    mmio_bus.insert(window, base, len)?;
    pci.add(VGA_PCI_SLOT, 0, Arc::new(Mutex::new(card)))?;
    let refresh = spawn_refresh(vga.clone(), display, stop)?;
    Ok(Some(AttachedVga {
        vga,
        vram_bytes: video.vram_bytes,
        refresh,
    }))
}

/// Modes tried for direct kernel boot, largest first: QEMU's bochs-drm
/// default, then smaller ones for cards with little video memory.
const BOOT_MODES: [(u16, u16); 3] = [(1024, 768), (800, 600), (640, 480)];
/// PCI command register bits: I/O and memory decoding.
const PCI_COMMAND: usize = 0x04;
const PCI_COMMAND_IO_MEMORY: u16 = 0x0003;
const PCI_BAR0: usize = 0x10;

/// Does for direct kernel boot what SeaBIOS and the VGA BIOS would have
/// done: places BAR0 (the framebuffer) in the PCI hole, turns decoding on,
/// and sets a 32-bit linear mode through the Bochs VBE registers, so the
/// kernel's `screen_info` describes a mode that is really on. Returns the
/// framebuffer, or `None` when the VRAM holds no mode.
pub(super) fn set_boot_mode(pci: &PciBus, card: &AttachedVga) -> Option<Framebuffer> {
    let (width, height) = BOOT_MODES
        .into_iter()
        .find(|&(w, h)| w as u64 * h as u64 * 4 <= card.vram_bytes)?;
    // Highest naturally aligned place below the IOAPIC, where SeaBIOS puts
    // the first large BAR too (0xFD000000 for 16 MiB).
    let size = card.vram_bytes;
    let base = (IOAPIC_START - size) & !(size - 1);
    let devfn = VGA_PCI_SLOT << 3;
    pci.write_config(devfn, PCI_BAR0, &(base as u32).to_le_bytes());
    let mut command = [0u8; 2];
    pci.read_config(devfn, PCI_COMMAND, &mut command);
    let command = u16::from_le_bytes(command) | PCI_COMMAND_IO_MEMORY;
    pci.write_config(devfn, PCI_COMMAND, &command.to_le_bytes());

    let mut vga = card.vga.lock().unwrap_or_else(|e| e.into_inner());
    vga.write_dispi(vbe::INDEX_ENABLE, 0);
    vga.write_dispi(vbe::INDEX_XRES, width);
    vga.write_dispi(vbe::INDEX_YRES, height);
    vga.write_dispi(vbe::INDEX_BPP, Framebuffer::DEPTH);
    vga.write_dispi(vbe::INDEX_BANK, 0);
    vga.write_dispi(vbe::INDEX_VIRT_WIDTH, width);
    vga.write_dispi(vbe::INDEX_X_OFFSET, 0);
    vga.write_dispi(vbe::INDEX_Y_OFFSET, 0);
    vga.write_dispi(vbe::INDEX_ENABLE, vbe::ENABLED | vbe::LFB_ENABLED);
    if vga.framebuffer_mapping() != Some(base) {
        warn!("the VGA framebuffer is not mapped at {base:#x}; the kernel's console there will be slow");
    }
    Some(Framebuffer {
        base,
        size,
        width,
        height,
    })
}

/// Reads the VGA BIOS; without it the machine still runs (a guest can
/// program the card itself), but firmware shows nothing.
fn load_vga_bios() -> Option<Vec<u8>> {
    let path = match super::firmware::find(VGA_BIOS_FILE) {
        Ok(path) => path,
        Err(searched) => {
            warn!(
                searched = ?searched,
                "no {VGA_BIOS_FILE}: the VGA card has no BIOS, so the screen stays blank until the guest drives the card itself. Install SeaBIOS (Debian/Ubuntu: `apt install seabios`) or set VIREO_FIRMWARE_DIR"
            );
            return None;
        }
    };
    match std::fs::read(&path) {
        Ok(rom) if !rom.is_empty() => {
            debug!(path = %path.display(), "VGA BIOS");
            Some(rom)
        }
        Ok(_) => {
            warn!(path = %path.display(), "the VGA BIOS is empty; running without it");
            None
        }
        Err(e) => {
            warn!(path = %path.display(), "cannot read the VGA BIOS ({e}); running without it");
            None
        }
    }
}

/// Redraws the card about 30 times a second; when the machine stops, draws
/// one last frame with the cursor shown, so the display keeps a faithful
/// still picture of where the machine ended. With `vireo::vmm::display=debug`
/// logged, reports the frames the guest produced ([`FrameRate`]).
fn spawn_refresh(
    vga: SharedVga,
    display: Arc<Display>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, VmmError> {
    std::thread::Builder::new()
        .name("display".into())
        .spawn(move || {
            crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Device);
            let mut renderer = Renderer::new();
            let powered_on = Instant::now();
            let mut rate = FrameRate::new(powered_on);
            loop {
                let started = Instant::now();
                let stopping = stop.load(Ordering::Acquire);
                let frame = vga.lock().unwrap_or_else(|e| e.into_inner()).frame();
                let blink = if stopping {
                    BlinkPhase::STEADY
                } else {
                    BlinkPhase::at(powered_on.elapsed())
                };
                let before = display.serial();
                renderer.render(&frame, &display, blink);
                if stopping {
                    break;
                }
                let changed = display.serial() != before;
                if let Some(report) = rate.tick(started, changed) {
                    debug!(
                        frames = report.frames,
                        refreshes = report.refreshes,
                        seconds = report.seconds,
                        fps = report.frames as f64 / report.seconds,
                        "display: frames the guest produced"
                    );
                }
                let next = started + REFRESH_INTERVAL;
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
        })
        .map_err(VmmError::Thread)
}

/// Frames the guest produced over one [`RATE_PERIOD`], as the refresh
/// sees them: refreshes that found the picture changed, out of all
/// refreshes. A guest drawing faster than the refresh shows fewer frames
/// than it drew; the console benchmark compares this with what a VNC
/// client received.
#[derive(Debug, PartialEq)]
struct RateReport {
    frames: u32,
    refreshes: u32,
    seconds: f64,
}

/// Counts refreshes and changed frames; hands out a [`RateReport`] once a
/// period is over, if the guest produced any frame in it (an idle VM logs
/// nothing).
struct FrameRate {
    since: Instant,
    frames: u32,
    refreshes: u32,
}

impl FrameRate {
    fn new(now: Instant) -> Self {
        Self {
            since: now,
            frames: 0,
            refreshes: 0,
        }
    }

    fn tick(&mut self, now: Instant, changed: bool) -> Option<RateReport> {
        self.refreshes += 1;
        self.frames += u32::from(changed);
        let elapsed = now.saturating_duration_since(self.since);
        if elapsed < RATE_PERIOD {
            return None;
        }
        let report = RateReport {
            frames: self.frames,
            refreshes: self.refreshes,
            seconds: elapsed.as_secs_f64(),
        };
        *self = Self::new(now);
        (report.frames > 0).then_some(report)
    }
}

/// Maps the VRAM at BAR0 as a KVM memory slot with dirty logging, so the
/// guest's framebuffer writes run at memory speed and the renderer learns
/// which pages changed from `KVM_GET_DIRTY_LOG`.
struct KvmVramMapper {
    vm: Arc<VmFd>,
    /// The VRAM's address in this process (kept alive by the card, which
    /// drops this mapper before its memory).
    host_address: u64,
    size: u64,
    mapped_at: Option<u64>,
}

impl KvmVramMapper {
    fn set_slot(&self, guest_address: u64, size: u64) -> Result<(), kvm_ioctls::Error> {
        let region = kvm_userspace_memory_region {
            slot: VRAM_SLOT,
            flags: KVM_MEM_LOG_DIRTY_PAGES,
            guest_phys_addr: guest_address,
            memory_size: size,
            userspace_addr: self.host_address,
        };
        // SAFETY: the host range is the card's VRAM, `size` bytes long, and
        // outlives the slot: the card removes the slot (by dropping this
        // mapper) before it frees its memory. A size of 0 removes the slot.
        unsafe { self.vm.set_user_memory_region(region) }
    }
}

impl VramMapper for KvmVramMapper {
    fn map(&mut self, base: Option<u64>) -> bool {
        if let Some(old) = self.mapped_at.take() {
            if let Err(e) = self.set_slot(old, 0) {
                warn!("cannot unmap the VGA framebuffer from {old:#x}: {e}");
            }
        }
        let Some(base) = base else {
            return true;
        };
        match self.set_slot(base, self.size) {
            Ok(()) => {
                debug!("VGA framebuffer mapped at {base:#x}");
                self.mapped_at = Some(base);
                true
            }
            Err(e) => {
                debug!("cannot map the VGA framebuffer at {base:#x}: {e}");
                false
            }
        }
    }

    fn take_dirty(&mut self) -> Option<Vec<u64>> {
        self.mapped_at?;
        match self.vm.get_dirty_log(VRAM_SLOT, self.size as usize) {
            Ok(bitmap) => Some(bitmap),
            Err(e) => {
                warn!("cannot read the VGA framebuffer's dirty log: {e}");
                None
            }
        }
    }
}

impl Drop for KvmVramMapper {
    fn drop(&mut self) {
        if let Some(old) = self.mapped_at.take() {
            let _ = self.set_slot(old, 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_frame_rate_counts_changed_refreshes_per_period_and_is_silent_when_idle() {
        let start = Instant::now();
        let mut rate = FrameRate::new(start);
        let tick = RATE_PERIOD / 250;
        let mut reports = Vec::new();
        for n in 1..=250u32 {
            // The guest changes the picture on four refreshes in five.
            if let Some(report) = rate.tick(start + tick * n, n % 5 != 0) {
                reports.push(report);
            }
        }
        assert_eq!(
            reports,
            [RateReport {
                frames: 200,
                refreshes: 250,
                seconds: RATE_PERIOD.as_secs_f64(),
            }]
        );
        let later = start + RATE_PERIOD;
        for n in 1..=300u32 {
            assert_eq!(rate.tick(later + tick * n, false), None, "idle");
        }
    }
}
