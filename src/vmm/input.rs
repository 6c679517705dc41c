//! Console input routed to whichever machine incarnation is running: the
//! VNC server holds one [`InputRouter`] for the life of the VM process,
//! and each machine (re)start plugs its keyboard controller in, and its
//! USB tablet if it has one.
//!
//! The pointer goes to the tablet as an absolute position once the guest
//! has configured it (a driver is listening); before that (SeaBIOS, a boot
//! loader, an OS without USB) it goes to the PS/2 mouse as motion.

use std::sync::{Arc, Mutex};

use crate::devices::i8042::I8042;
use crate::devices::usb::hid_tablet::{self, TabletInput};
use crate::display::input::{
    InputSink, BUTTON_LEFT, BUTTON_MIDDLE, BUTTON_RIGHT, WHEEL_DOWN, WHEEL_UP,
};
use crate::display::Display;

#[derive(Default)]
struct Route {
    i8042: Option<Arc<Mutex<I8042>>>,
    tablet: Option<Arc<TabletInput>>,
    /// The surface whose size scales pointer positions for the tablet.
    display: Option<Arc<Display>>,
    /// Last absolute pointer position, to turn positions into PS/2 motion.
    last: Option<(u32, u32)>,
}

#[derive(Default)]
pub struct InputRouter {
    route: Mutex<Route>,
}

impl InputRouter {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Sends input to `i8042` from now on (a new machine started).
    pub fn attach(&self, i8042: Arc<Mutex<I8042>>, display: &Arc<Display>) {
        {
            let display = display.clone();
            i8042
                .lock()
                .unwrap()
                .set_led_callback(Box::new(move |leds| display.set_leds(leds)));
        }
        *self.route.lock().unwrap() = Route {
            i8042: Some(i8042),
            tablet: None,
            display: Some(display.clone()),
            last: None,
        };
    }

    /// Sends the pointer to `tablet` whenever the guest has configured it
    /// (after [`Self::attach`], on a machine with a USB tablet).
    pub fn attach_tablet(&self, tablet: Arc<TabletInput>) {
        self.route.lock().unwrap().tablet = Some(tablet);
    }

    /// Stops sending input (the machine stopped).
    pub fn detach(&self) {
        *self.route.lock().unwrap() = Route::default();
    }
}

impl InputSink for InputRouter {
    fn key(&self, qnum: u16, down: bool) {
        tracing::trace!(qnum, down, "console key");
        let route = self.route.lock().unwrap();
        if let Some(i8042) = &route.i8042 {
            i8042.lock().unwrap().key_event(qnum, down);
        }
    }

    fn pointer(&self, x: u32, y: u32, buttons: u8) {
        let mut route = self.route.lock().unwrap();
        if let (Some(tablet), Some(display)) = (&route.tablet, &route.display) {
            if tablet.configured() {
                let size = display.with_surface(|s| (s.width, s.height));
                let (ax, ay) = (scale(x, size.0), scale(y, size.1));
                tablet.pointer(ax, ay, tablet_buttons(buttons), wheel(buttons));
                // The PS/2 mouse starts from here if the tablet goes away.
                route.last = Some((x, y));
                return;
            }
        }
        let (dx, dy) = match route.last {
            Some((lx, ly)) => (x as i32 - lx as i32, y as i32 - ly as i32),
            None => (0, 0),
        };
        route.last = Some((x, y));
        let dz = if buttons & WHEEL_UP != 0 {
            -1
        } else if buttons & WHEEL_DOWN != 0 {
            1
        } else {
            0
        };
        // RFB's mask has middle at bit 1 and right at bit 2; PS/2 the reverse.
        let ps2_buttons = (buttons & BUTTON_LEFT)
            | if buttons & BUTTON_RIGHT != 0 { 0x02 } else { 0 }
            | if buttons & BUTTON_MIDDLE != 0 {
                0x04
            } else {
                0
            };
        if let Some(i8042) = &route.i8042 {
            i8042.lock().unwrap().mouse_event(dx, dy, dz, ps2_buttons);
        }
    }
}

/// A surface coordinate as the tablet's 0..=0x7FFF: the first pixel is 0,
/// the last is 0x7FFF (QEMU scales the same way).
fn scale(position: u32, extent: u32) -> u16 {
    if extent <= 1 {
        return 0;
    }
    let max = u64::from(hid_tablet::ABS_MAX);
    (u64::from(position.min(extent - 1)) * max / u64::from(extent - 1)) as u16
}

/// RFB button bits as the tablet's report has them (left, right, middle).
fn tablet_buttons(buttons: u8) -> u8 {
    (if buttons & BUTTON_LEFT != 0 {
        hid_tablet::REPORT_LEFT
    } else {
        0
    }) | (if buttons & BUTTON_RIGHT != 0 {
        hid_tablet::REPORT_RIGHT
    } else {
        0
    }) | (if buttons & BUTTON_MIDDLE != 0 {
        hid_tablet::REPORT_MIDDLE
    } else {
        0
    })
}

/// RFB's wheel "buttons" as a wheel step: up is positive in HID.
fn wheel(buttons: u8) -> i8 {
    if buttons & WHEEL_UP != 0 {
        1
    } else if buttons & WHEEL_DOWN != 0 {
        -1
    } else {
        0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_scale_across_the_whole_tablet_range() {
        assert_eq!(scale(0, 640), 0);
        assert_eq!(scale(639, 640), 0x7fff);
        assert_eq!(scale(320, 640), (320 * 0x7fff / 639) as u16);
        assert_eq!(scale(5000, 640), 0x7fff, "clamped to the surface");
        assert_eq!(scale(3, 1), 0);
    }

    #[test]
    fn buttons_and_wheel_map_to_the_report() {
        assert_eq!(tablet_buttons(BUTTON_LEFT | BUTTON_RIGHT), 0b011);
        assert_eq!(tablet_buttons(BUTTON_MIDDLE), 0b100);
        assert_eq!(wheel(WHEEL_UP), 1);
        assert_eq!(wheel(WHEEL_DOWN), -1);
    }

    #[test]
    fn the_pointer_goes_to_the_tablet_only_once_the_guest_configured_it() {
        use crate::devices::irq::NoIrq;
        use crate::devices::usb::hid_tablet::HidTablet;
        use crate::devices::usb::UsbDevice;
        use crate::devices::FakeMachine;

        let router = InputRouter::new();
        let display = Display::new(640, 480);
        let i8042 = Arc::new(Mutex::new(I8042::new(
            Arc::new(NoIrq),
            Arc::new(NoIrq),
            Arc::new(FakeMachine::default()),
        )));
        router.attach(i8042, &display);
        let input = TabletInput::new();
        router.attach_tablet(input.clone());
        let mut tablet = HidTablet::new(input.clone());
        let mut report = [0u8; 6];
        router.pointer(10, 10, 0);
        // SET_CONFIGURATION 1, status stage.
        tablet.setup([0, 9, 1, 0, 0, 0, 0, 0]);
        tablet.data_in(0, &mut []);
        assert_eq!(
            tablet.data_in(1, &mut report),
            crate::devices::usb::UsbResponse::Nak,
            "the event before configuration went to PS/2"
        );
        router.pointer(639, 240, BUTTON_LEFT);
        tablet.data_in(1, &mut report);
        let y = (240 * 0x7fff / 479) as u16;
        assert_eq!(report, [1, 0xff, 0x7f, y as u8, (y >> 8) as u8, 0]);
    }
}
