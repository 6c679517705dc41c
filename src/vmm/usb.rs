//! The machine's USB: the PIIX3 UHCI at 00:01.2 with a tablet on port 1
//! when the definition asks for one, its frame timer, and the tablet's
//! place in the console input route.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::console::ConsoleIo;
use super::VmmError;
use crate::devices::pci::{IntxRouter, PciBus, PciIntx};
use crate::devices::usb::hid_tablet::{HidTablet, TabletInput};
use crate::devices::usb::uhci::Uhci;
use crate::devices::GuestRam;

/// 00:01.2, function 2 of the PIIX3.
const SLOT: u8 = 1;
const FUNCTION: u8 = 2;
/// INTD#, the PIIX3 USB function's pin.
const PIN: u8 = 4;
/// A USB frame.
const FRAME: Duration = Duration::from_millis(1);
/// Frames one wake-up may run to catch up after the thread was held up;
/// beyond that, time is let slip rather than replayed in a burst.
const MAX_CATCH_UP: u32 = 8;
/// How often a halted controller is checked for having been started.
const IDLE_POLL: Duration = Duration::from_millis(10);

/// Builds the controller when `usb_tablet` is set (with no USB device
/// there is nothing for a guest's driver to find, so the function is left
/// out as it is from a QEMU machine with `-usb` off). Returns the frame
/// timer thread.
pub(super) fn attach(
    pci: &PciBus,
    intx: &Arc<IntxRouter>,
    ram: &GuestRam,
    usb_tablet: bool,
    console: &ConsoleIo,
    stop: Arc<AtomicBool>,
) -> Result<Option<JoinHandle<()>>, VmmError> {
    if !usb_tablet {
        return Ok(None);
    }
    let irq = Arc::new(PciIntx::new(intx.clone(), SLOT, PIN));
    let mut uhci = Uhci::new(ram.clone(), irq);
    let input = TabletInput::new();
    uhci.attach(0, Box::new(HidTablet::new(input.clone())));
    let uhci = Arc::new(Mutex::new(uhci));
    pci.add(SLOT, FUNCTION, uhci.clone())?;
    console.input.attach_tablet(input);
    spawn_frame_timer(uhci, stop).map(Some)
}

/// Runs one frame per elapsed millisecond while the schedule runs.
fn spawn_frame_timer(
    uhci: Arc<Mutex<Uhci>>,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, VmmError> {
    std::thread::Builder::new()
        .name("uhci-frames".into())
        .spawn(move || {
            crate::sandbox::confine_thread(crate::sandbox::ThreadKind::Device);
            let mut next = Instant::now();
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(next.saturating_duration_since(Instant::now()).max(FRAME));
                let now = Instant::now();
                let mut frames = 0;
                let mut uhci = uhci.lock().unwrap_or_else(|e| e.into_inner());
                if !uhci.running() {
                    // A halted controller has no frames to run: look again
                    // later rather than waking every millisecond.
                    drop(uhci);
                    std::thread::sleep(IDLE_POLL);
                    next = Instant::now();
                    continue;
                }
                while next <= now && frames < MAX_CATCH_UP {
                    uhci.run_frame();
                    next += FRAME;
                    frames += 1;
                }
                drop(uhci);
                if next <= now {
                    next = now + FRAME;
                }
            }
        })
        .map_err(VmmError::Thread)
}
