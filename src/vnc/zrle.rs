//! ZRLE encoding (RFC 6143 §7.7.6): 64×64 tiles, each raw, solid, a packed
//! palette, plain RLE or palette RLE (whichever is smallest), in CPIXELs,
//! all through one zlib stream that lives as long as the client.

use std::collections::HashMap;
use std::io::{self, Read};

use flate2::{Compress, Decompress};

use super::pixel::Block;
use super::protocol::{read_u8, PixelFormat};
use super::zlib::deflate;

const TILE: usize = 64;

/// Tile subencodings (§7.7.6).
const RAW: u8 = 0;
const SOLID: u8 = 1;
const PLAIN_RLE: u8 = 128;
const PALETTE_RLE: u8 = 128; // + palette size (2..=127)
/// Largest palette a palette-RLE tile can carry.
const MAX_PALETTE: usize = 127;
/// Largest palette a packed-palette tile can carry.
const MAX_PACKED: usize = 16;

/// Bytes a run length takes: (length - 1) as 255s and a final byte < 255.
fn run_len_bytes(len: usize) -> usize {
    (len - 1) / 255 + 1
}

fn put_run_len(len: usize, out: &mut Vec<u8>) {
    let mut rest = len - 1;
    while rest >= 255 {
        out.push(255);
        rest -= 255;
    }
    out.push(rest as u8);
}

/// Bits per index of a packed palette of `n` colours.
fn packed_bits(n: usize) -> usize {
    match n {
        0..=2 => 1,
        3..=4 => 2,
        _ => 4,
    }
}

fn encode_tile(tile: &Block, format: &PixelFormat, out: &mut Vec<u8>) {
    let cp = format.cpixel_len();
    let n = tile.width * tile.height;
    // Palette (up to one past the largest usable) and runs in raster order.
    let mut palette: Vec<u32> = Vec::new();
    let mut index: HashMap<u32, u8> = HashMap::new();
    let mut runs: Vec<(u32, usize)> = Vec::new();
    for value in tile.pixels() {
        if palette.len() <= MAX_PALETTE && !index.contains_key(&value) {
            index.insert(value, palette.len() as u8);
            palette.push(value);
        }
        match runs.last_mut() {
            Some((v, len)) if *v == value => *len += 1,
            _ => runs.push((value, 1)),
        }
    }
    if palette.len() == 1 {
        out.push(SOLID);
        format.put_cpixel(palette[0], out);
        return;
    }
    let raw = n * cp;
    let plain_rle: usize = runs.iter().map(|&(_, len)| cp + run_len_bytes(len)).sum();
    let usable = palette.len() <= MAX_PALETTE;
    let palette_rle = usable.then(|| {
        palette.len() * cp
            + runs
                .iter()
                .map(|&(_, len)| if len == 1 { 1 } else { 1 + run_len_bytes(len) })
                .sum::<usize>()
    });
    let packed = (palette.len() <= MAX_PACKED).then(|| {
        let row = (tile.width * packed_bits(palette.len())).div_ceil(8);
        palette.len() * cp + row * tile.height
    });
    let best = [Some(raw), Some(plain_rle), palette_rle, packed]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(raw);
    let write_palette = |out: &mut Vec<u8>| {
        for &value in &palette {
            format.put_cpixel(value, out);
        }
    };
    if Some(best) == packed {
        out.push(palette.len() as u8);
        write_palette(out);
        let bits = packed_bits(palette.len());
        for y in 0..tile.height {
            let (mut byte, mut used) = (0u8, 0);
            for value in tile.row(y) {
                byte = (byte << bits) | index[value];
                used += bits;
                if used == 8 {
                    out.push(byte);
                    (byte, used) = (0, 0);
                }
            }
            if used > 0 {
                out.push(byte << (8 - used));
            }
        }
    } else if Some(best) == palette_rle {
        out.push(PALETTE_RLE + palette.len() as u8);
        write_palette(out);
        for &(value, len) in &runs {
            if len == 1 {
                out.push(index[&value]);
            } else {
                out.push(index[&value] | 0x80);
                put_run_len(len, out);
            }
        }
    } else if best == plain_rle {
        out.push(PLAIN_RLE);
        for &(value, len) in &runs {
            format.put_cpixel(value, out);
            put_run_len(len, out);
        }
    } else {
        out.push(RAW);
        for value in tile.pixels() {
            format.put_cpixel(value, out);
        }
    }
}

pub fn encode(
    block: Block,
    format: &PixelFormat,
    stream: &mut Compress,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut tiles = Vec::new();
    for (_, _, tile) in block.tiles(TILE) {
        encode_tile(&tile, format, &mut tiles);
    }
    let mut compressed = Vec::new();
    deflate(stream, &tiles, &mut compressed)?;
    out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
    out.extend_from_slice(&compressed);
    Ok(())
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, format!("ZRLE: {what}"))
}

/// The client side: reads a length and zlib data, returns the
/// `width` × `height` pixel values it holds.
pub fn decode(
    r: &mut impl Read,
    width: usize,
    height: usize,
    format: &PixelFormat,
    stream: &mut Decompress,
) -> io::Result<Vec<u32>> {
    let data = super::zlib::read_inflated(r, stream)?;
    let r = &mut &data[..];
    let cp = format.cpixel_len();
    let cpixel = |r: &mut &[u8]| -> io::Result<u32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b[..cp])?;
        Ok(format.get_cpixel(&b))
    };
    let run_len = |r: &mut &[u8]| -> io::Result<usize> {
        let mut len = 1;
        loop {
            let b = read_u8(r)?;
            len += usize::from(b);
            if b != 255 {
                return Ok(len);
            }
        }
    };
    let mut fb = vec![0u32; width * height];
    for ty in (0..height).step_by(TILE) {
        for tx in (0..width).step_by(TILE) {
            let tw = TILE.min(width - tx);
            let th = TILE.min(height - ty);
            let mut tile = Vec::with_capacity(tw * th);
            let sub = read_u8(r)?;
            let palette = match sub {
                2..=16 | 130..=255 => (0..(sub & 0x7f))
                    .map(|_| cpixel(r))
                    .collect::<io::Result<Vec<_>>>()?,
                _ => Vec::new(),
            };
            match sub {
                RAW => {
                    for _ in 0..tw * th {
                        tile.push(cpixel(r)?);
                    }
                }
                SOLID => tile.resize(tw * th, cpixel(r)?),
                2..=16 => {
                    let bits = packed_bits(palette.len());
                    for _ in 0..th {
                        let (mut byte, mut left) = (0u8, 0);
                        for _ in 0..tw {
                            if left == 0 {
                                byte = read_u8(r)?;
                                left = 8;
                            }
                            let i = byte >> (8 - bits);
                            byte = byte.checked_shl(bits as u32).unwrap_or(0);
                            left -= bits;
                            tile.push(*palette.get(usize::from(i)).ok_or(bad("index"))?);
                        }
                    }
                }
                PLAIN_RLE => {
                    while tile.len() < tw * th {
                        let value = cpixel(r)?;
                        let len = run_len(r)?;
                        tile.extend(std::iter::repeat(value).take(len));
                    }
                }
                130..=255 => {
                    while tile.len() < tw * th {
                        let i = read_u8(r)?;
                        let value = *palette.get(usize::from(i & 0x7f)).ok_or(bad("index"))?;
                        let len = if i & 0x80 != 0 { run_len(r)? } else { 1 };
                        tile.extend(std::iter::repeat(value).take(len));
                    }
                }
                _ => return Err(bad("subencoding")),
            }
            if tile.len() != tw * th {
                return Err(bad("run past the tile"));
            }
            for y in 0..th {
                fb[(ty + y) * width + tx..][..tw].copy_from_slice(&tile[y * tw..][..tw]);
            }
        }
    }
    if !r.is_empty() {
        return Err(bad("trailing data"));
    }
    Ok(fb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnc::pixel::formats::*;
    use crate::vnc::zlib::new_stream;

    #[test]
    fn tiles_of_every_kind_decode_to_the_input() {
        let (w, h) = (200, 70); // partial tiles on both edges
        let data: Vec<u32> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                match x / 64 {
                    0 => 0x55,                                           // solid
                    1 => [1, 2, 3][(x + y) % 3],                         // packed palette
                    2 => ((y * 3 + x / 9) % 40) as u32,                  // palette RLE
                    _ => (i as u32).wrapping_mul(2654435761) & 0xffffff, // raw
                }
            })
            .collect();
        let mut server = new_stream();
        let mut client = Decompress::new(true);
        for format in [rgb888_le(), rgb888_be(), bgr888_high(), rgb565(), rgb332()] {
            let data = values(&format, &data);
            let mut out = Vec::new();
            encode(Block::new(&data, w, h), &format, &mut server, &mut out).unwrap();
            let decoded = decode(&mut &out[..], w, h, &format, &mut client).unwrap();
            assert_eq!(decoded, data, "{format:?}");
        }
    }

    #[test]
    fn long_runs_use_rle() {
        // Two colours in long runs: 64x64 tile, top half one, bottom other.
        let data: Vec<u32> = (0..64 * 64).map(|i| u32::from(i >= 2048) * 9).collect();
        let mut tile = Vec::new();
        encode_tile(&Block::new(&data, 64, 64), &rgb888_le(), &mut tile);
        assert!(tile[0] >= PLAIN_RLE, "{}", tile[0]);
        assert!(tile.len() < 30, "{}", tile.len());
    }
}
