//! The Serial tab: the VM's serial console (its `RunFiles::serial` socket), as
//! `vireo console` shows it. Output is read on a thread and appended on
//! the GTK thread; what the user types goes to the guest as bytes.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::rc::Rc;

use gtk::prelude::*;

/// Kept from the guest's output before the oldest text is dropped.
const MAX_CHARS: i32 = 256 * 1024;

pub struct SerialView {
    root: gtk::ScrolledWindow,
    text: gtk::TextView,
    /// The connection the current VM's output comes from; replaced (and
    /// the old reader thread ended by shutting it down) on every attach.
    stream: Rc<RefCell<Option<UnixStream>>>,
}

impl SerialView {
    pub fn new() -> Self {
        let text = gtk::TextView::builder()
            .monospace(true)
            .editable(false)
            .cursor_visible(true)
            .wrap_mode(gtk::WrapMode::Char)
            .top_margin(8)
            .bottom_margin(8)
            .left_margin(8)
            .right_margin(8)
            .build();
        let root = gtk::ScrolledWindow::builder()
            .child(&text)
            .vexpand(true)
            .build();
        let stream: Rc<RefCell<Option<UnixStream>>> = Rc::default();
        let keys = gtk::EventControllerKey::new();
        let typed_to = stream.clone();
        keys.connect_key_pressed(move |_, keyval, _, _| {
            let bytes: Vec<u8> = match keyval {
                gtk::gdk::Key::Return | gtk::gdk::Key::KP_Enter => vec![b'\r'],
                gtk::gdk::Key::BackSpace => vec![0x7f],
                gtk::gdk::Key::Tab => vec![b'\t'],
                gtk::gdk::Key::Escape => vec![0x1b],
                key => match key.to_unicode() {
                    Some(c) => c.to_string().into_bytes(),
                    None => return gtk::glib::Propagation::Proceed,
                },
            };
            if let Some(stream) = typed_to.borrow_mut().as_mut() {
                let _ = stream.write_all(&bytes);
            }
            gtk::glib::Propagation::Stop
        });
        text.add_controller(keys);
        SerialView { root, text, stream }
    }

    pub fn widget(&self) -> &gtk::ScrolledWindow {
        &self.root
    }

    /// Shows the console of the VM whose serial socket is `path` (or
    /// nothing, when the VM does not run).
    pub fn attach(&self, path: Option<PathBuf>) {
        if let Some(old) = self.stream.borrow_mut().take() {
            let _ = old.shutdown(std::net::Shutdown::Both);
        }
        self.text.buffer().set_text("");
        let Some(path) = path else { return };
        let Ok(stream) = UnixStream::connect(&path) else {
            return;
        };
        let Ok(mut reader) = stream.try_clone() else {
            return;
        };
        *self.stream.borrow_mut() = Some(stream);
        let (tx, rx) = async_channel::unbounded::<Vec<u8>>();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 || tx.send_blocking(buf[..n].to_vec()).is_err() {
                    break;
                }
            }
        });
        let text = self.text.clone();
        gtk::glib::spawn_future_local(async move {
            while let Ok(bytes) = rx.recv().await {
                append(&text, &bytes);
            }
        });
    }
}

/// Appends guest output, dropping carriage returns (the view wraps lines
/// itself) and the oldest text beyond [`MAX_CHARS`], and follows the end.
fn append(text: &gtk::TextView, bytes: &[u8]) {
    let buffer = text.buffer();
    let chunk: String = String::from_utf8_lossy(bytes)
        .chars()
        .filter(|c| *c != '\r' && (*c == '\n' || *c == '\t' || !c.is_control()))
        .collect();
    let mut end = buffer.end_iter();
    buffer.insert(&mut end, &chunk);
    let excess = buffer.char_count() - MAX_CHARS;
    if excess > 0 {
        let mut start = buffer.start_iter();
        let mut cut = buffer.iter_at_offset(excess);
        buffer.delete(&mut start, &mut cut);
    }
    let mark = buffer.create_mark(None, &buffer.end_iter(), false);
    text.scroll_mark_onscreen(&mark);
    buffer.delete_mark(&mark);
}
