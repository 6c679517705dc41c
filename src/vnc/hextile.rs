//! Hextile encoding (RFC 6143 §7.7.4): 16×16 tiles, each raw or a
//! background colour plus subrectangles of other colours. Background and
//! foreground carry over from tile to tile while they stay valid.

use std::io::{self, Read};

use super::pixel::Block;
use super::protocol::{read_u8, PixelFormat};

/// Subencoding mask bits (§7.7.4).
const RAW: u8 = 1;
const BACKGROUND_SPECIFIED: u8 = 2;
const FOREGROUND_SPECIFIED: u8 = 4;
const ANY_SUBRECTS: u8 = 8;
const SUBRECTS_COLOURED: u8 = 16;

const TILE: usize = 16;

/// A subrectangle of one colour inside a tile.
struct Subrect {
    colour: u32,
    x: usize,
    y: usize,
    width: usize,
    height: usize,
}

/// Covers every pixel of `tile` that is not `background` with
/// single-colour rectangles, greedily: grow right, then down.
fn subrects(tile: &Block, background: u32) -> Vec<Subrect> {
    let mut covered = [false; TILE * TILE];
    let mut rects = Vec::new();
    let at = |x: usize, y: usize| tile.row(y)[x];
    for y in 0..tile.height {
        for x in 0..tile.width {
            let colour = at(x, y);
            if colour == background || covered[y * TILE + x] {
                continue;
            }
            let free = |x: usize, y: usize| at(x, y) == colour && !covered[y * TILE + x];
            let mut width = 1;
            while x + width < tile.width && free(x + width, y) {
                width += 1;
            }
            let mut height = 1;
            while y + height < tile.height && (x..x + width).all(|x| free(x, y + height)) {
                height += 1;
            }
            for yy in y..y + height {
                covered[yy * TILE + x..yy * TILE + x + width].fill(true);
            }
            rects.push(Subrect {
                colour,
                x,
                y,
                width,
                height,
            });
        }
    }
    rects
}

/// Distinct colours of a tile, the most frequent first.
fn colours(tile: &Block) -> Vec<u32> {
    let mut sorted: Vec<u32> = tile.pixels().collect();
    sorted.sort_unstable();
    let mut counts: Vec<(usize, u32)> = Vec::new();
    for value in sorted {
        match counts.last_mut() {
            Some((n, v)) if *v == value => *n += 1,
            _ => counts.push((1, value)),
        }
    }
    counts.sort_by_key(|c| std::cmp::Reverse(c.0));
    counts.into_iter().map(|(_, v)| v).collect()
}

pub fn encode(block: Block, format: &PixelFormat, out: &mut Vec<u8>) {
    let bpp = format.bytes_per_pixel();
    // What the client holds from the previous tile; None after a raw tile
    // (and the foreground after a coloured one), where the RFC leaves it
    // unspecified.
    let mut background: Option<u32> = None;
    let mut foreground: Option<u32> = None;
    for (_, _, tile) in block.tiles(TILE) {
        let colours = colours(&tile);
        let bg = colours[0];
        let mut flags = 0;
        let mut body = Vec::new();
        if background != Some(bg) {
            flags |= BACKGROUND_SPECIFIED;
            format.put(bg, &mut body);
        }
        let mut new_foreground = foreground;
        if colours.len() > 1 {
            let rects = subrects(&tile, bg);
            flags |= ANY_SUBRECTS;
            if colours.len() == 2 {
                let fg = colours[1];
                if foreground != Some(fg) {
                    flags |= FOREGROUND_SPECIFIED;
                    format.put(fg, &mut body);
                }
                new_foreground = Some(fg);
            } else {
                flags |= SUBRECTS_COLOURED;
                new_foreground = None;
            }
            body.push(rects.len().min(255) as u8);
            for r in &rects {
                if colours.len() > 2 {
                    format.put(r.colour, &mut body);
                }
                body.push(((r.x << 4) | r.y) as u8);
                body.push((((r.width - 1) << 4) | (r.height - 1)) as u8);
            }
            if rects.len() > 255 || body.len() >= tile.width * tile.height * bpp {
                out.push(RAW);
                for value in tile.pixels() {
                    format.put(value, out);
                }
                background = None;
                foreground = None;
                continue;
            }
        }
        out.push(flags);
        out.extend_from_slice(&body);
        background = Some(bg);
        foreground = new_foreground;
    }
}

/// The client side: `width` × `height` pixel values.
pub fn decode(
    r: &mut impl Read,
    width: usize,
    height: usize,
    format: &PixelFormat,
) -> io::Result<Vec<u32>> {
    let bpp = format.bytes_per_pixel();
    let pixel = |r: &mut dyn Read| -> io::Result<u32> {
        let mut b = [0u8; 4];
        r.read_exact(&mut b[..bpp])?;
        Ok(format.get(&b))
    };
    let mut fb = vec![0u32; width * height];
    let (mut background, mut foreground) = (0, 0);
    for ty in (0..height).step_by(TILE) {
        for tx in (0..width).step_by(TILE) {
            let tw = TILE.min(width - tx);
            let th = TILE.min(height - ty);
            let flags = read_u8(r)?;
            if flags & RAW != 0 {
                for y in 0..th {
                    for x in 0..tw {
                        fb[(ty + y) * width + tx + x] = pixel(r)?;
                    }
                }
                continue;
            }
            if flags & BACKGROUND_SPECIFIED != 0 {
                background = pixel(r)?;
            }
            if flags & FOREGROUND_SPECIFIED != 0 {
                foreground = pixel(r)?;
            }
            for y in 0..th {
                fb[(ty + y) * width + tx..][..tw].fill(background);
            }
            if flags & ANY_SUBRECTS == 0 {
                continue;
            }
            for _ in 0..read_u8(r)? {
                let colour = if flags & SUBRECTS_COLOURED != 0 {
                    pixel(r)?
                } else {
                    foreground
                };
                let xy = read_u8(r)?;
                let wh = read_u8(r)?;
                let (x, y) = (usize::from(xy >> 4), usize::from(xy & 15));
                let (w, h) = (usize::from(wh >> 4) + 1, usize::from(wh & 15) + 1);
                if x + w > tw || y + h > th {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "hextile subrect outside its tile",
                    ));
                }
                for yy in y..y + h {
                    fb[(ty + yy) * width + tx + x..][..w].fill(colour);
                }
            }
        }
    }
    Ok(fb)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnc::pixel::formats::*;

    fn round_trip(data: &[u32], width: usize, height: usize, format: &PixelFormat) -> usize {
        let mut out = Vec::new();
        encode(Block::new(data, width, height), format, &mut out);
        let mut r = &out[..];
        assert_eq!(decode(&mut r, width, height, format).unwrap(), data);
        assert!(r.is_empty());
        out.len()
    }

    #[test]
    fn tiles_of_every_kind_decode_to_the_input() {
        let (w, h) = (53, 37); // partial tiles on both edges
                               // Solid tiles, two-colour text-like tiles, many-colour tiles, noise.
        let data: Vec<u32> = (0..w * h)
            .map(|i| {
                let (x, y) = (i % w, i / w);
                match (x / 16, y / 16) {
                    (0, _) => 7,
                    (1, _) => u32::from((x * y) % 5 == 0),
                    (2, 0) => (x % 3) as u32 + 10,
                    _ => (i as u32).wrapping_mul(2654435761) & 0xff,
                }
            })
            .collect();
        for format in [rgb888_le(), rgb888_be(), rgb565(), rgb332()] {
            round_trip(&data, w, h, &format);
        }
    }

    #[test]
    fn a_solid_tile_costs_one_byte_after_the_first() {
        let data = vec![0x42u32; 64 * 16];
        let size = round_trip(&data, 64, 16, &rgb888_le());
        assert_eq!(size, (1 + 4) + 3);
    }

    #[test]
    fn hostile_subrects_are_rejected() {
        // One tile of 4x4: background specified, one subrect 16x16 at (0,0).
        let wire = [
            BACKGROUND_SPECIFIED | FOREGROUND_SPECIFIED | ANY_SUBRECTS,
            0,
            1,
            1,
            0x00,
            0xff,
        ];
        assert!(decode(&mut &wire[..], 4, 4, &rgb332()).is_err());
    }
}
