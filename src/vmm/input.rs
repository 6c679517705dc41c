//! Console input routed to whichever machine incarnation is running: the
//! VNC server holds one [`InputRouter`] for the life of the VM process,
//! and each machine (re)start plugs its keyboard controller in.

use std::sync::{Arc, Mutex};

use crate::devices::i8042::I8042;
use crate::display::input::{
    InputSink, BUTTON_LEFT, BUTTON_MIDDLE, BUTTON_RIGHT, WHEEL_DOWN, WHEEL_UP,
};
use crate::display::Display;

#[derive(Default)]
struct Route {
    i8042: Option<Arc<Mutex<I8042>>>,
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
        let mut route = self.route.lock().unwrap();
        route.i8042 = Some(i8042);
        route.last = None;
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
