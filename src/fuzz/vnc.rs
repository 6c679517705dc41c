//! The VNC server's side of a client: the handshake messages a client
//! sends (version, security choice, ClientInit), then client messages
//! (pixel formats, encodings, update requests, keys, pointer, cut text,
//! desktop size), each followed by the updates they make the server encode.

use std::io::Cursor;

use crate::display::input::NoInput;
use crate::display::{Display, Rect};
use crate::vnc::client::replay;
use crate::vnc::protocol::{ClientInit, ClientMessage, PixelFormat, SecurityChoice, Version};

/// Most update bytes one input may make the server produce.
const MAX_OUTPUT: usize = 8 << 20;

/// The first two bytes size the screen (1 to 256 pixels each way); the
/// rest is what the client sent.
pub fn vnc_client(data: &[u8]) {
    let (width, height) = match data {
        [w, h, ..] => (u32::from(*w) + 1, u32::from(*h) + 1),
        _ => (64, 48),
    };
    let display = Display::new(width, height);
    display.update(|surface| {
        for y in 0..surface.height {
            for (x, pixel) in surface.row_mut(y).iter_mut().enumerate() {
                // Runs, gradients and a few colours: every encoder's cases.
                *pixel = if (x as u32 / 8 + y / 8) % 3 == 0 {
                    0x00ff_8000
                } else {
                    (x as u32 * 0x10203) ^ (y * 0x30201)
                };
            }
        }
        vec![Rect::new(0, 0, surface.width, surface.height)]
    });
    let mut stream = Cursor::new(data.get(2..).unwrap_or_default());
    let Ok(version) = Version::read_from(&mut stream) else {
        return;
    };
    if version != Version::V3_3 && SecurityChoice::read_from(&mut stream).is_err() {
        return;
    }
    if ClientInit::read_from(&mut stream).is_err() {
        return;
    }
    let _ = replay(&mut stream, &display, &NoInput, MAX_OUTPUT);
}

/// Seeds: a 3.8 handshake, then what vncdotool, gvnccapture and noVNC
/// send: a pixel format, encodings (each pixel encoding first once), a full
/// then an incremental update request, keys, pointer, cut text.
pub fn vnc_client_seeds() -> Vec<Vec<u8>> {
    let formats = [
        PixelFormat::native(),
        PixelFormat {
            bits_per_pixel: 16,
            depth: 16,
            big_endian: true,
            true_colour: true,
            red_max: 31,
            green_max: 63,
            blue_max: 31,
            red_shift: 11,
            green_shift: 5,
            blue_shift: 0,
        },
        PixelFormat {
            bits_per_pixel: 8,
            depth: 8,
            big_endian: false,
            true_colour: true,
            red_max: 7,
            green_max: 7,
            blue_max: 3,
            red_shift: 0,
            green_shift: 3,
            blue_shift: 6,
        },
    ];
    let mut seeds = Vec::new();
    for (n, encoding) in [0, 5, 6, 7, 16].into_iter().enumerate() {
        let mut seed = vec![40, 30];
        seed.extend(b"RFB 003.008\n");
        let _ = SecurityChoice(1).write_to(&mut seed);
        let _ = ClientInit { shared: true }.write_to(&mut seed);
        let messages = [
            ClientMessage::SetPixelFormat(formats[n % formats.len()]),
            ClientMessage::SetEncodings(vec![encoding, -223, -308, -258, -261, -239]),
            ClientMessage::FramebufferUpdateRequest {
                incremental: false,
                x: 0,
                y: 0,
                width: 40,
                height: 30,
            },
            ClientMessage::KeyEvent {
                down: true,
                keysym: 0x41,
            },
            ClientMessage::KeyEvent {
                down: false,
                keysym: 0x41,
            },
            ClientMessage::QemuExtendedKeyEvent {
                down: true,
                keysym: 0xff0d,
                qnum: 0x1c,
            },
            ClientMessage::PointerEvent {
                buttons: 1,
                x: 10,
                y: 200,
            },
            ClientMessage::ClientCutText(b"clip".to_vec()),
            ClientMessage::SetDesktopSize {
                width: 800,
                height: 600,
                screens: Vec::new(),
            },
            ClientMessage::FramebufferUpdateRequest {
                incremental: true,
                x: 5,
                y: 5,
                width: 1000,
                height: 1000,
            },
        ];
        for message in messages {
            let _ = message.write_to(&mut seed);
        }
        seeds.push(seed);
    }
    seeds
}
