//! Tight encoding (rfbproto "Tight Encoding", number 7), without JPEG:
//! a rectangle is a fill (one colour), a palette (two colours as a
//! bitmap, up to 256 as indices) or plain pixels (the copy filter), the
//! data zlib-compressed on one of four per-client streams once it is 12
//! bytes or more. Pixels are TPIXELs.
//!
//! Not used: JPEG (only with a quality level, and lossy) and the gradient
//! filter. Rectangles must be at most [`MAX_WIDTH`] wide and
//! [`MAX_AREA`] pixels: the client module splits them.

use std::collections::HashMap;
use std::io::{self, Read};

use flate2::{Compress, Decompress};

use super::pixel::Block;
use super::protocol::{read_u8, PixelFormat};
use super::zlib::{deflate, inflate};

/// Widest rectangle a Tight decoder accepts.
pub const MAX_WIDTH: usize = 2048;
/// Largest rectangle (in pixels) the reference decoders buffer.
pub const MAX_AREA: usize = 65536;

/// Compression-control byte (high nibble).
const FILL: u8 = 0x80;
const JPEG: u8 = 0x90;
/// Basic compression: an explicit filter byte follows.
const EXPLICIT_FILTER: u8 = 0x40;
/// Filter ids.
const FILTER_COPY: u8 = 0;
const FILTER_PALETTE: u8 = 1;
/// Streams, as TightVNC uses them: full colour, mono bitmaps, indexed.
const STREAM_COPY: usize = 0;
const STREAM_MONO: usize = 1;
const STREAM_INDEXED: usize = 2;
/// Data shorter than this is sent without zlib.
const MIN_TO_COMPRESS: usize = 12;

/// The four zlib streams of one client.
pub struct TightStreams(pub [Compress; 4]);

impl Default for TightStreams {
    fn default() -> Self {
        Self(std::array::from_fn(|_| super::zlib::new_stream()))
    }
}

/// The compact length: 7 bits per byte, high bit = more follows, at most
/// three bytes (22 bits).
fn put_compact_len(len: usize, out: &mut Vec<u8>) {
    if len < 0x80 {
        out.push(len as u8);
    } else if len < 0x4000 {
        out.extend_from_slice(&[(len as u8) | 0x80, (len >> 7) as u8]);
    } else {
        out.extend_from_slice(&[
            (len as u8) | 0x80,
            ((len >> 7) as u8) | 0x80,
            (len >> 14) as u8,
        ]);
    }
}

fn read_compact_len(r: &mut impl Read) -> io::Result<usize> {
    let mut len = 0;
    for i in 0..3 {
        let b = read_u8(r)?;
        if i == 2 {
            return Ok(len | (usize::from(b) << 14));
        }
        len |= usize::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            break;
        }
    }
    Ok(len)
}

fn compress(
    streams: &mut TightStreams,
    id: usize,
    data: &[u8],
    out: &mut Vec<u8>,
) -> io::Result<()> {
    if data.len() < MIN_TO_COMPRESS {
        out.extend_from_slice(data);
        return Ok(());
    }
    let mut compressed = Vec::new();
    deflate(&mut streams.0[id], data, &mut compressed)?;
    put_compact_len(compressed.len(), out);
    out.extend_from_slice(&compressed);
    Ok(())
}

pub fn encode(
    block: Block,
    format: &PixelFormat,
    streams: &mut TightStreams,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    debug_assert!(block.width <= MAX_WIDTH && block.width * block.height <= MAX_AREA);
    let mut palette: Vec<u32> = Vec::new();
    let mut index: HashMap<u32, u8> = HashMap::new();
    for value in block.pixels() {
        if palette.len() > 256 {
            break;
        }
        if let std::collections::hash_map::Entry::Vacant(e) = index.entry(value) {
            e.insert(palette.len() as u8);
            palette.push(value);
        }
    }
    if palette.len() == 1 {
        out.push(FILL);
        format.put_tpixel(palette[0], out);
        return Ok(());
    }
    // A palette pays when its indices are smaller than the pixels.
    if palette.len() == 2 || (palette.len() <= 256 && format.tpixel_len() > 1) {
        let stream = if palette.len() == 2 {
            STREAM_MONO
        } else {
            STREAM_INDEXED
        };
        out.push(((stream as u8) << 4) | EXPLICIT_FILTER);
        out.push(FILTER_PALETTE);
        out.push((palette.len() - 1) as u8);
        for &value in &palette {
            format.put_tpixel(value, out);
        }
        let mut data = Vec::with_capacity(block.width * block.height);
        if palette.len() == 2 {
            // One bit per pixel, rows padded to a byte, first pixel in the MSB.
            for y in 0..block.height {
                for chunk in block.row(y).chunks(8) {
                    let bits = chunk
                        .iter()
                        .enumerate()
                        .fold(0u8, |b, (i, v)| b | (index[v] << (7 - i)));
                    data.push(bits);
                }
            }
        } else {
            data.extend(block.pixels().map(|v| index[&v]));
        }
        return compress(streams, stream, &data, out);
    }
    out.push((STREAM_COPY as u8) << 4);
    let mut data = Vec::with_capacity(block.width * block.height * format.tpixel_len());
    for value in block.pixels() {
        format.put_tpixel(value, &mut data);
    }
    compress(streams, STREAM_COPY, &data, out)
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("Tight: {what}"))
}

/// The client side: one rectangle's `width` × `height` pixel values.
pub fn decode(
    r: &mut impl Read,
    width: usize,
    height: usize,
    format: &PixelFormat,
    streams: &mut [Decompress; 4],
) -> io::Result<Vec<u32>> {
    let tp = format.tpixel_len();
    let tpixel = |r: &mut dyn Read| -> io::Result<u32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b[..tp])?;
        Ok(format.get_tpixel(&b))
    };
    let control = read_u8(r)?;
    for (i, stream) in streams.iter_mut().enumerate() {
        if control & (1 << i) != 0 {
            *stream = Decompress::new(true);
        }
    }
    let control = control & 0xf0;
    if control == FILL {
        return Ok(vec![tpixel(r)?; width * height]);
    }
    if control >= JPEG {
        return Err(bad("JPEG or unknown compression"));
    }
    let stream = usize::from((control >> 4) & 3);
    let filter = if control & EXPLICIT_FILTER != 0 {
        read_u8(r)?
    } else {
        FILTER_COPY
    };
    let palette = match filter {
        FILTER_COPY => Vec::new(),
        FILTER_PALETTE => {
            let n = usize::from(read_u8(r)?) + 1;
            (0..n).map(|_| tpixel(r)).collect::<io::Result<_>>()?
        }
        _ => return Err(bad("filter")),
    };
    let len = match palette.len() {
        0 => width * height * tp,
        2 => width.div_ceil(8) * height,
        _ => width * height,
    };
    let mut data = Vec::new();
    if len < MIN_TO_COMPRESS {
        data.resize(len, 0);
        r.read_exact(&mut data)?;
    } else {
        let clen = read_compact_len(r)?;
        let mut compressed = vec![0; clen];
        r.read_exact(&mut compressed)?;
        inflate(&mut streams[stream], &compressed, &mut data)?;
    }
    if data.len() != len {
        return Err(bad("data length"));
    }
    let lookup = |i: u8| palette.get(usize::from(i)).copied().ok_or(bad("index"));
    match palette.len() {
        0 => Ok(data
            .chunks_exact(tp)
            .map(|b| format.get_tpixel(b))
            .collect()),
        2 => {
            let row = width.div_ceil(8);
            (0..width * height)
                .map(|i| {
                    let (x, y) = (i % width, i / width);
                    lookup((data[y * row + x / 8] >> (7 - x % 8)) & 1)
                })
                .collect()
        }
        _ => data.iter().map(|&i| lookup(i)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnc::pixel::formats::*;

    #[test]
    fn compact_lengths_round_trip() {
        for len in [0, 1, 127, 128, 16383, 16384, 4_194_303] {
            let mut out = Vec::new();
            put_compact_len(len, &mut out);
            assert_eq!(
                out.len(),
                1 + usize::from(len > 127) + usize::from(len > 16383)
            );
            assert_eq!(read_compact_len(&mut &out[..]).unwrap(), len);
        }
        // rfbproto's example: 10000 = 0x90 0x4E.
        let mut out = Vec::new();
        put_compact_len(10000, &mut out);
        assert_eq!(out, [0x90, 0x4e]);
    }

    #[test]
    fn fill_palette_and_copy_rects_decode_to_the_input() {
        let mut server = TightStreams::default();
        let mut client: [Decompress; 4] = std::array::from_fn(|_| Decompress::new(true));
        let (w, h) = (77, 23);
        let cases: Vec<Vec<u32>> = vec![
            vec![5; w * h],
            (0..w * h).map(|i| u32::from(i % 3 == 0)).collect(),
            (0..w * h).map(|i| (i % 7) as u32).collect(),
            (0..w * h)
                .map(|i| (i as u32).wrapping_mul(2654435761) & 0xff)
                .collect(),
            vec![1, 2, 3], // tiny: sent uncompressed
        ];
        for format in [rgb888_le(), rgb888_be(), bgr888_high(), rgb565(), rgb332()] {
            for data in &cases {
                let data = &values(&format, data);
                let (w, h) = if data.len() == 3 { (3, 1) } else { (w, h) };
                let mut out = Vec::new();
                encode(Block::new(data, w, h), &format, &mut server, &mut out).unwrap();
                let mut r = &out[..];
                assert_eq!(
                    &decode(&mut r, w, h, &format, &mut client).unwrap(),
                    data,
                    "{format:?}"
                );
                assert!(r.is_empty());
            }
        }
    }

    #[test]
    fn a_fill_is_control_and_rgb() {
        let mut out = Vec::new();
        let conv = crate::vnc::pixel::Converter::new(rgb888_le());
        let data = vec![conv.convert(0x102030); 4];
        encode(
            Block::new(&data, 2, 2),
            &rgb888_le(),
            &mut TightStreams::default(),
            &mut out,
        )
        .unwrap();
        assert_eq!(out, [0x80, 0x10, 0x20, 0x30]);
    }
}
