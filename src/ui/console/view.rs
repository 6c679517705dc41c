//! `ConsoleView`: the guest's screen as a GTK widget.
//!
//! It draws the framebuffer as a grid of tile textures (see
//! [`framebuffer`](super::framebuffer)), re-creating only the tiles a
//! batch from the [`Session`] changed, scaled to fit with the aspect ratio
//! kept or at 1:1. A click or focus grabs the keyboard: keys then go to the
//! guest as physical keys (QEMU extended key events) and the desktop's own
//! shortcuts are inhibited; Ctrl+Alt (or the combination the preferences
//! chose, [`ReleaseKeys`]) releases the grab. Pointer motion,
//! buttons and the wheel go to the guest in guest pixels.
//!
//! Not done here: screenshots (QMP `screendump`), clipboard, the cursor
//! pseudo-encoding (the guest draws its own pointer), relative-mouse grabs.

use std::cell::{Cell, RefCell};
use std::path::Path;

use gtk::glib::translate::IntoGlib;
use gtk::prelude::*;
use gtk::subclass::prelude::*;
use gtk::{gdk, glib, graphene};

use crate::app::preferences::ReleaseKeys;

use super::framebuffer::{FrameBatch, TILE};
use super::geometry::Placement;
use super::session::{ConsoleState, Input, Session, Update};
use crate::display::input::{BUTTON_LEFT, BUTTON_MIDDLE, BUTTON_RIGHT, WHEEL_DOWN, WHEEL_UP};
use crate::keys::evdev;

/// How long the hint stays.
const HINT_SECONDS: u32 = 3;

/// One tile's texture and where it goes on the guest screen.
struct Tile {
    texture: gdk::Texture,
    x: u32,
    y: u32,
    width: u32,
    height: u32,
}

/// The textures of the screen as last handed over.
#[derive(Default)]
struct Tiles {
    width: u32,
    height: u32,
    cols: u32,
    tiles: Vec<Option<Tile>>,
}

impl Tiles {
    /// Applies a batch; returns whether the screen's size changed.
    fn apply(&mut self, batch: FrameBatch) -> bool {
        let resized = (batch.width, batch.height) != (self.width, self.height);
        if resized {
            let cols = batch.width.div_ceil(TILE);
            let rows = batch.height.div_ceil(TILE);
            *self = Tiles {
                width: batch.width,
                height: batch.height,
                cols,
                tiles: (0..cols * rows).map(|_| None).collect(),
            };
        }
        for tile in batch.tiles {
            let index = (tile.row * self.cols + tile.col) as usize;
            let Some(slot) = self.tiles.get_mut(index) else {
                continue;
            };
            let stride = tile.width as usize * super::framebuffer::BPP;
            let bytes = glib::Bytes::from_owned(tile.pixels);
            let texture = gdk::MemoryTexture::new(
                tile.width as i32,
                tile.height as i32,
                // Opaque, so premultiplied is the same as straight alpha, and it
                // is GTK's own layout (no conversion on upload).
                gdk::MemoryFormat::B8g8r8a8Premultiplied,
                &bytes,
                stride,
            );
            *slot = Some(Tile {
                texture: texture.upcast(),
                x: tile.x,
                y: tile.y,
                width: tile.width,
                height: tile.height,
            });
        }
        resized
    }
}

type StateCallback = Box<dyn Fn(ConsoleState)>;

mod imp {
    use super::*;

    pub struct ConsoleView {
        pub(super) session: RefCell<Option<Session>>,
        pub(super) receiver: RefCell<Option<glib::JoinHandle<()>>>,
        pub(super) tiles: RefCell<Tiles>,
        pub(super) state: RefCell<ConsoleState>,
        pub(super) callbacks: RefCell<Vec<StateCallback>>,
        pub(super) scale_to_fit: Cell<bool>,
        pub(super) grabbed: Cell<bool>,
        pub(super) release_keys: Cell<ReleaseKeys>,
        /// Keys sent down and not yet up: (qnum, keysym).
        pub(super) held: RefCell<Vec<(u16, u32)>>,
        pub(super) buttons: Cell<u8>,
        pub(super) pointer: Cell<(u16, u16)>,
        pub(super) hint: gtk::Label,
        pub(super) hint_timer: RefCell<Option<glib::SourceId>>,
        pub(super) new_content: Cell<bool>,
        pub(super) frames_drawn: Cell<u64>,
        pub(super) batches: Cell<u64>,
    }

    impl Default for ConsoleView {
        fn default() -> Self {
            Self {
                session: RefCell::new(None),
                receiver: RefCell::new(None),
                tiles: RefCell::new(Tiles::default()),
                state: RefCell::new(ConsoleState::Disconnected("not connected".into())),
                callbacks: RefCell::new(Vec::new()),
                scale_to_fit: Cell::new(true),
                grabbed: Cell::new(false),
                release_keys: Cell::new(Default::default()),
                held: RefCell::new(Vec::new()),
                buttons: Cell::new(0),
                pointer: Cell::new((0, 0)),
                hint: gtk::Label::new(Some(&crate::ui::gettext(
                    "Press Ctrl+Alt to release the keyboard",
                ))),
                hint_timer: RefCell::new(None),
                new_content: Cell::new(false),
                frames_drawn: Cell::new(0),
                batches: Cell::new(0),
            }
        }
    }

    #[glib::object_subclass]
    impl ObjectSubclass for ConsoleView {
        const NAME: &'static str = "VireoConsoleView";
        type Type = super::ConsoleView;
        type ParentType = gtk::Widget;
    }

    impl ObjectImpl for ConsoleView {
        fn constructed(&self) {
            self.parent_constructed();
            let obj = self.obj();
            obj.set_focusable(true);
            obj.set_focus_on_click(true);
            obj.set_overflow(gtk::Overflow::Hidden);
            self.hint.add_css_class("osd");
            self.hint.add_css_class("app-notification");
            self.hint.set_visible(false);
            self.hint.set_parent(&*obj);
            obj.install_input();
        }

        fn dispose(&self) {
            self.obj().disconnect();
            if let Some(timer) = self.hint_timer.take() {
                timer.remove();
            }
            self.hint.unparent();
        }
    }

    impl WidgetImpl for ConsoleView {
        fn measure(&self, orientation: gtk::Orientation, _for_size: i32) -> (i32, i32, i32, i32) {
            let tiles = self.tiles.borrow();
            let natural = match orientation {
                gtk::Orientation::Horizontal => tiles.width,
                _ => tiles.height,
            } as i32;
            let natural = natural.max(1);
            let minimum = if self.scale_to_fit.get() { 1 } else { natural };
            (minimum, natural, -1, -1)
        }

        fn size_allocate(&self, width: i32, height: i32, baseline: i32) {
            self.parent_size_allocate(width, height, baseline);
            if self.hint.should_layout() {
                let (_, natural) = self.hint.preferred_size();
                let w = natural.width().min(width);
                let h = natural.height().min(height);
                self.hint
                    .size_allocate(&gtk::Allocation::new((width - w) / 2, 12, w, h), -1);
            }
        }

        fn snapshot(&self, snapshot: &gtk::Snapshot) {
            let obj = self.obj();
            let (w, h) = (
                WidgetExt::width(&*obj) as f32,
                WidgetExt::height(&*obj) as f32,
            );
            snapshot.append_color(&gdk::RGBA::BLACK, &graphene::Rect::new(0.0, 0.0, w, h));
            let tiles = self.tiles.borrow();
            let place = obj.placement(&tiles);
            for tile in tiles.tiles.iter().flatten() {
                let (x, y, tw, th) = place.to_widget(tile.x, tile.y, tile.width, tile.height);
                snapshot.append_texture(&tile.texture, &graphene::Rect::new(x, y, tw, th));
            }
            if self.new_content.replace(false) {
                self.frames_drawn.set(self.frames_drawn.get() + 1);
            }
            obj.snapshot_child(&self.hint, snapshot);
        }
    }
}

glib::wrapper! {
    /// The guest's screen, keyboard and pointer. See the module comment.
    pub struct ConsoleView(ObjectSubclass<imp::ConsoleView>)
        @extends gtk::Widget,
        @implements gtk::Buildable, gtk::ConstraintTarget;
}

impl Default for ConsoleView {
    fn default() -> Self {
        Self::new()
    }
}

impl ConsoleView {
    pub fn new() -> Self {
        glib::Object::new()
    }

    /// Connects to the VNC server on the unix socket at `path` (the VM's
    /// `RunFiles::vnc()`), replacing any current connection. The view keeps
    /// reconnecting while the VM is down, until [`ConsoleView::disconnect`].
    pub fn connect_vm(&self, path: &Path) {
        self.disconnect();
        let session = match Session::start(path) {
            Ok(session) => session,
            Err(e) => {
                self.set_state(ConsoleState::Disconnected(e.to_string()));
                return;
            }
        };
        let updates = session.updates();
        let weak = self.downgrade();
        let receiver = glib::MainContext::default().spawn_local(async move {
            while let Ok(update) = updates.recv().await {
                let Some(view) = weak.upgrade() else {
                    return;
                };
                match update {
                    Update::State(state) => view.set_state(state),
                    Update::Frame(batch) => view.take_batch(batch),
                }
            }
        });
        self.imp().session.replace(Some(session));
        self.imp().receiver.replace(Some(receiver));
    }

    /// Drops the connection (keys held in the guest are released first).
    pub fn disconnect(&self) {
        self.release_grab();
        if let Some(receiver) = self.imp().receiver.take() {
            receiver.abort();
        }
        if self.imp().session.take().is_some() {
            self.set_state(ConsoleState::Disconnected("disconnected".into()));
        }
    }

    /// Presses the keys (QEMU key numbers) in order and releases them in
    /// reverse, as a Send Key menu does for Ctrl+Alt+Del.
    pub fn send_keys(&self, qnums: &[u16]) {
        for &qnum in qnums {
            self.send(Input::Key {
                down: true,
                keysym: 0,
                qnum,
            });
        }
        for &qnum in qnums.iter().rev() {
            self.send(Input::Key {
                down: false,
                keysym: 0,
                qnum,
            });
        }
    }

    /// Scale the screen to fit the widget (aspect ratio kept), or show it
    /// at one guest pixel per widget pixel.
    pub fn set_scale_to_fit(&self, fit: bool) {
        if self.imp().scale_to_fit.replace(fit) != fit {
            self.queue_resize();
        }
    }

    /// The keys that release the keyboard grab (and the hint naming them).
    pub fn set_release_keys(&self, keys: ReleaseKeys) {
        self.imp().release_keys.set(keys);
        self.imp().hint.set_label(&crate::ui::i18n::gettext_f(
            "Press {keys} to release the keyboard",
            &[("keys", keys.label())],
        ));
    }

    pub fn scale_to_fit(&self) -> bool {
        self.imp().scale_to_fit.get()
    }

    /// The guest's screen size, once the first frame arrived.
    pub fn framebuffer_size(&self) -> Option<(u32, u32)> {
        let tiles = self.imp().tiles.borrow();
        (tiles.width > 0).then_some((tiles.width, tiles.height))
    }

    pub fn state(&self) -> ConsoleState {
        self.imp().state.borrow().clone()
    }

    /// Calls `f` with every new connection state.
    pub fn connect_state_changed<F: Fn(ConsoleState) + 'static>(&self, f: F) {
        self.imp().callbacks.borrow_mut().push(Box::new(f));
    }

    /// Whether the keyboard is grabbed (keys go to the guest).
    pub fn is_grabbed(&self) -> bool {
        self.imp().grabbed.get()
    }

    /// Frames drawn with new content (for benchmarks).
    pub fn frames_drawn(&self) -> u64 {
        self.imp().frames_drawn.get()
    }

    /// Batches of damage received from the session (for benchmarks).
    pub fn batches_received(&self) -> u64 {
        self.imp().batches.get()
    }

    /// The screen as the view's textures hold it: width, height and RGB
    /// bytes (for tests: what the widget draws, read back from the GPU side).
    pub fn framebuffer_rgb(&self) -> Option<(u32, u32, Vec<u8>)> {
        let tiles = self.imp().tiles.borrow();
        if tiles.width == 0 {
            return None;
        }
        let (w, h) = (tiles.width as usize, tiles.height as usize);
        let mut rgb = vec![0u8; w * h * 3];
        for tile in tiles.tiles.iter().flatten() {
            let stride = tile.width as usize * 4;
            let mut data = vec![0u8; stride * tile.height as usize];
            // Downloads as cairo's ARGB32: B, G, R, A in memory.
            tile.texture.download(&mut data, stride);
            for (row, line) in data.chunks_exact(stride).enumerate() {
                for (col, px) in line.chunks_exact(4).enumerate() {
                    let at = ((tile.y as usize + row) * w + tile.x as usize + col) * 3;
                    rgb[at..at + 3].copy_from_slice(&[px[2], px[1], px[0]]);
                }
            }
        }
        Some((tiles.width, tiles.height, rgb))
    }

    /// One pixel of the screen as the view's textures hold it, 0xRRGGBB
    /// (reads back only the tile that holds it).
    pub fn pixel_rgb(&self, x: u32, y: u32) -> Option<u32> {
        let tiles = self.imp().tiles.borrow();
        if x >= tiles.width || y >= tiles.height {
            return None;
        }
        let tile = &tiles.tiles[((y / TILE) * tiles.cols + x / TILE) as usize];
        let tile = tile.as_ref()?;
        let stride = tile.width as usize * 4;
        let mut data = vec![0u8; stride * tile.height as usize];
        tile.texture.download(&mut data, stride);
        let at = (y - tile.y) as usize * stride + (x - tile.x) as usize * 4;
        Some(u32::from_le_bytes([
            data[at],
            data[at + 1],
            data[at + 2],
            0,
        ]))
    }

    fn placement(&self, tiles: &Tiles) -> Placement {
        Placement::new(
            tiles.width,
            tiles.height,
            f64::from(WidgetExt::width(self)),
            f64::from(WidgetExt::height(self)),
            self.imp().scale_to_fit.get(),
        )
    }

    fn set_state(&self, state: ConsoleState) {
        if *self.imp().state.borrow() == state {
            return;
        }
        self.imp().state.replace(state.clone());
        for f in self.imp().callbacks.borrow().iter() {
            f(state.clone());
        }
    }

    fn take_batch(&self, batch: FrameBatch) {
        let imp = self.imp();
        let resized = imp.tiles.borrow_mut().apply(batch);
        if let Some(session) = imp.session.borrow().as_ref() {
            session.frame_taken();
        }
        imp.batches.set(imp.batches.get() + 1);
        imp.new_content.set(true);
        if resized {
            self.queue_resize();
        }
        self.queue_draw();
    }

    fn send(&self, input: Input) {
        if let Some(session) = self.imp().session.borrow().as_ref() {
            session.send(input);
        }
    }

    fn grab(&self) {
        let imp = self.imp();
        if imp.grabbed.replace(true) {
            return;
        }
        if let Some(toplevel) = self.toplevel() {
            toplevel.inhibit_system_shortcuts(None::<&gdk::Event>);
        }
        imp.hint.set_visible(true);
        if let Some(timer) = imp.hint_timer.take() {
            timer.remove();
        }
        let weak = self.downgrade();
        let timer = glib::timeout_add_seconds_local_once(HINT_SECONDS, move || {
            if let Some(view) = weak.upgrade() {
                view.imp().hint_timer.take();
                view.imp().hint.set_visible(false);
            }
        });
        imp.hint_timer.replace(Some(timer));
    }

    /// Releases the keyboard: every key the guest holds goes up.
    fn release_grab(&self) {
        let imp = self.imp();
        let held: Vec<_> = imp.held.borrow_mut().drain(..).collect();
        for (qnum, keysym) in held.into_iter().rev() {
            self.send(Input::Key {
                down: false,
                keysym,
                qnum,
            });
        }
        if !imp.grabbed.replace(false) {
            return;
        }
        if let Some(toplevel) = self.toplevel() {
            toplevel.restore_system_shortcuts();
        }
        imp.hint.set_visible(false);
    }

    fn toplevel(&self) -> Option<gdk::Toplevel> {
        self.native()?.surface()?.downcast().ok()
    }

    fn key(&self, down: bool, keyval: gdk::Key, keycode: u32, state: gdk::ModifierType) -> bool {
        let imp = self.imp();
        if !imp.grabbed.get() {
            return false;
        }
        if down && releases(imp.release_keys.get(), keyval, state) {
            self.release_grab();
            return true;
        }
        let qnum = evdev::x_keycode_to_qnum(keycode).unwrap_or(0);
        let keysym = keyval.into_glib();
        if qnum == 0 && keysym == 0 {
            return true;
        }
        {
            let mut held = imp.held.borrow_mut();
            if down {
                if !held.contains(&(qnum, keysym)) {
                    held.push((qnum, keysym));
                }
            } else {
                // Up for a key we never sent down (pressed before the grab).
                let Some(i) = held
                    .iter()
                    .position(|&(q, k)| q == qnum && (q != 0 || k == keysym))
                else {
                    return true;
                };
                let (qnum, keysym) = held.remove(i);
                drop(held);
                self.send(Input::Key { down, keysym, qnum });
                return true;
            }
        }
        self.send(Input::Key { down, keysym, qnum });
        true
    }

    fn pointer_at(&self, x: f64, y: f64) {
        let position = {
            let tiles = self.imp().tiles.borrow();
            if tiles.width == 0 {
                return;
            }
            self.placement(&tiles).to_guest(x, y)
        };
        self.imp().pointer.set(position);
        self.send_pointer(self.imp().buttons.get());
    }

    fn send_pointer(&self, buttons: u8) {
        let (x, y) = self.imp().pointer.get();
        self.send(Input::Pointer { x, y, buttons });
    }

    fn install_input(&self) {
        let keys = gtk::EventControllerKey::new();
        let weak = self.downgrade();
        keys.connect_key_pressed(move |_, keyval, keycode, state| match weak.upgrade() {
            Some(view) if view.key(true, keyval, keycode, state) => glib::Propagation::Stop,
            _ => glib::Propagation::Proceed,
        });
        let weak = self.downgrade();
        keys.connect_key_released(move |_, keyval, keycode, state| {
            if let Some(view) = weak.upgrade() {
                view.key(false, keyval, keycode, state);
            }
        });
        self.add_controller(keys);

        let focus = gtk::EventControllerFocus::new();
        let weak = self.downgrade();
        focus.connect_enter(move |_| {
            if let Some(view) = weak.upgrade() {
                view.grab();
            }
        });
        let weak = self.downgrade();
        focus.connect_leave(move |_| {
            if let Some(view) = weak.upgrade() {
                view.release_grab();
            }
        });
        self.add_controller(focus);

        let motion = gtk::EventControllerMotion::new();
        let weak = self.downgrade();
        motion.connect_motion(move |_, x, y| {
            if let Some(view) = weak.upgrade() {
                view.pointer_at(x, y);
            }
        });
        self.add_controller(motion);

        let click = gtk::GestureClick::new();
        click.set_button(0);
        let weak = self.downgrade();
        click.connect_pressed(move |gesture, _, x, y| {
            if let Some(view) = weak.upgrade() {
                view.grab_focus();
                view.grab();
                let bit = button_bit(gesture.current_button());
                view.imp().buttons.set(view.imp().buttons.get() | bit);
                view.pointer_at(x, y);
            }
        });
        let weak = self.downgrade();
        click.connect_released(move |gesture, _, x, y| {
            if let Some(view) = weak.upgrade() {
                let bit = button_bit(gesture.current_button());
                view.imp().buttons.set(view.imp().buttons.get() & !bit);
                view.pointer_at(x, y);
            }
        });
        self.add_controller(click);

        let scroll = gtk::EventControllerScroll::new(
            gtk::EventControllerScrollFlags::VERTICAL | gtk::EventControllerScrollFlags::DISCRETE,
        );
        let weak = self.downgrade();
        scroll.connect_scroll(move |_, _, dy| {
            let Some(view) = weak.upgrade() else {
                return glib::Propagation::Proceed;
            };
            // RFB buttons 4 and 5: a press and a release per notch.
            let wheel = if dy < 0.0 { WHEEL_UP } else { WHEEL_DOWN };
            let held = view.imp().buttons.get();
            for _ in 0..(dy.abs().round() as u32).clamp(1, 10) {
                view.send_pointer(held | wheel);
                view.send_pointer(held);
            }
            glib::Propagation::Stop
        });
        self.add_controller(scroll);
    }
}

/// GDK button number → RFB button mask bit.
fn button_bit(button: u32) -> u8 {
    match button {
        1 => BUTTON_LEFT,
        2 => BUTTON_MIDDLE,
        3 => BUTTON_RIGHT,
        _ => 0,
    }
}

/// Whether pressing `keyval` with `state` held is the release combination.
fn releases(keys: ReleaseKeys, keyval: gdk::Key, state: gdk::ModifierType) -> bool {
    let ctrl_held = state.contains(gdk::ModifierType::CONTROL_MASK);
    let alt_held = state.contains(gdk::ModifierType::ALT_MASK);
    let ctrl = matches!(keyval, gdk::Key::Control_L | gdk::Key::Control_R);
    let alt = matches!(
        keyval,
        gdk::Key::Alt_L | gdk::Key::Alt_R | gdk::Key::Meta_L | gdk::Key::Meta_R
    );
    match keys {
        ReleaseKeys::CtrlAlt => (ctrl && alt_held) || (alt && ctrl_held),
        ReleaseKeys::CtrlAltG => {
            matches!(keyval, gdk::Key::g | gdk::Key::G) && ctrl_held && alt_held
        }
        ReleaseKeys::RightCtrl => keyval == gdk::Key::Control_R,
    }
}
