//! Pixel-format conversion: the surface's XRGB8888 to whatever a client
//! asked for with SetPixelFormat (RFC 6143 §7.4, §7.5.1), and the packed
//! forms ZRLE (CPIXEL, §7.7.6) and Tight (TPIXEL, rfbproto) use.
//!
//! Only true-colour formats are served; a colour-map format is refused
//! (the client is disconnected with a log line), as the brief allows for
//! 8-bit colour maps, which no current viewer needs.

use super::protocol::PixelFormat;

impl PixelFormat {
    /// The surface's own format, which ServerInit announces: 32 bits,
    /// depth 24, little-endian 0x00RRGGBB.
    pub fn native() -> Self {
        Self {
            bits_per_pixel: 32,
            depth: 24,
            big_endian: false,
            true_colour: true,
            red_max: 255,
            green_max: 255,
            blue_max: 255,
            red_shift: 16,
            green_shift: 8,
            blue_shift: 0,
        }
    }

    /// Why this format cannot be served, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if !matches!(self.bits_per_pixel, 8 | 16 | 32) {
            return Err(format!("{} bits per pixel", self.bits_per_pixel));
        }
        if !self.true_colour {
            return Err("colour-map pixel formats are not supported".into());
        }
        let bits = u64::from(self.bits_per_pixel);
        for (max, shift) in self.channels() {
            if max == 0 || u64::from(shift) >= bits || (u64::from(max) << shift) >> bits != 0 {
                return Err(format!(
                    "a channel (max {max}, shift {shift}) does not fit {bits} bits"
                ));
            }
        }
        Ok(())
    }

    fn channels(&self) -> [(u16, u8); 3] {
        [
            (self.red_max, self.red_shift),
            (self.green_max, self.green_shift),
            (self.blue_max, self.blue_shift),
        ]
    }

    pub fn bytes_per_pixel(&self) -> usize {
        usize::from(self.bits_per_pixel / 8)
    }

    /// Appends a PIXEL (bits-per-pixel / 8 bytes, in the format's byte order).
    pub fn put(&self, value: u32, out: &mut Vec<u8>) {
        put_bytes(value, self.bytes_per_pixel(), self.big_endian, out);
    }

    /// Reads a PIXEL from the start of `bytes`.
    pub fn get(&self, bytes: &[u8]) -> u32 {
        get_bytes(&bytes[..self.bytes_per_pixel()], self.big_endian)
    }

    /// The bits any channel occupies.
    fn colour_mask(&self) -> u32 {
        self.channels()
            .iter()
            .fold(0, |m, &(max, shift)| m | (u32::from(max) << shift))
    }

    /// Where a 3-byte CPIXEL comes from: `Some(true)` the least
    /// significant three bytes, `Some(false)` the most significant, `None`
    /// a CPIXEL is a whole PIXEL (RFC 6143 §7.7.6).
    fn cpixel_low(&self) -> Option<bool> {
        if !(self.true_colour && self.bits_per_pixel == 32 && self.depth <= 24) {
            return None;
        }
        let mask = self.colour_mask();
        if mask & 0xff00_0000 == 0 {
            Some(true)
        } else if mask & 0xff == 0 {
            Some(false)
        } else {
            None
        }
    }

    pub fn cpixel_len(&self) -> usize {
        match self.cpixel_low() {
            Some(_) => 3,
            None => self.bytes_per_pixel(),
        }
    }

    /// Appends a CPIXEL (ZRLE's compressed pixel).
    pub fn put_cpixel(&self, value: u32, out: &mut Vec<u8>) {
        match self.cpixel_low() {
            Some(true) => put_bytes(value, 3, self.big_endian, out),
            Some(false) => put_bytes(value >> 8, 3, self.big_endian, out),
            None => self.put(value, out),
        }
    }

    pub fn get_cpixel(&self, bytes: &[u8]) -> u32 {
        match self.cpixel_low() {
            Some(true) => get_bytes(&bytes[..3], self.big_endian),
            Some(false) => get_bytes(&bytes[..3], self.big_endian) << 8,
            None => self.get(bytes),
        }
    }

    /// Tight's TPIXEL is R, G, B bytes for 32-bit depth-24 formats with
    /// 8-bit channels, a PIXEL otherwise (rfbproto "Tight Encoding").
    fn tpixel_rgb(&self) -> bool {
        self.true_colour
            && self.bits_per_pixel == 32
            && self.depth == 24
            && self.red_max == 255
            && self.green_max == 255
            && self.blue_max == 255
    }

    pub fn tpixel_len(&self) -> usize {
        if self.tpixel_rgb() {
            3
        } else {
            self.bytes_per_pixel()
        }
    }

    pub fn put_tpixel(&self, value: u32, out: &mut Vec<u8>) {
        if self.tpixel_rgb() {
            for (_, shift) in self.channels() {
                out.push((value >> shift) as u8);
            }
        } else {
            self.put(value, out);
        }
    }

    pub fn get_tpixel(&self, bytes: &[u8]) -> u32 {
        if self.tpixel_rgb() {
            self.channels()
                .iter()
                .zip(bytes)
                .fold(0, |v, (&(_, shift), &b)| v | (u32::from(b) << shift))
        } else {
            self.get(bytes)
        }
    }

    /// The 0x00RRGGBB colour a pixel value stands for (channels scaled
    /// back to 8 bits).
    pub fn to_rgb(&self, value: u32) -> u32 {
        self.channels().iter().fold(0, |rgb, &(max, shift)| {
            let c = (value >> shift) & u32::from(max);
            (rgb << 8) | ((c * 255 + u32::from(max) / 2) / u32::from(max))
        })
    }
}

fn put_bytes(value: u32, len: usize, big_endian: bool, out: &mut Vec<u8>) {
    let le = value.to_le_bytes();
    if big_endian {
        out.extend(le[..len].iter().rev());
    } else {
        out.extend_from_slice(&le[..len]);
    }
}

fn get_bytes(bytes: &[u8], big_endian: bool) -> u32 {
    let fold = |v: u32, (i, &b): (usize, &u8)| v | (u32::from(b) << (8 * i));
    if big_endian {
        bytes.iter().rev().enumerate().fold(0, fold)
    } else {
        bytes.iter().enumerate().fold(0, fold)
    }
}

/// Turns surface pixels into a client's pixel values, through one lookup
/// table per channel built when the client sets its format.
#[derive(Clone)]
pub struct Converter {
    pub format: PixelFormat,
    red: [u32; 256],
    green: [u32; 256],
    blue: [u32; 256],
}

impl Converter {
    pub fn new(format: PixelFormat) -> Self {
        // Each 8-bit channel scaled to 0..=max with rounding, then shifted.
        let table = |max: u16, shift: u8| {
            let mut t = [0u32; 256];
            for (c, entry) in t.iter_mut().enumerate() {
                let scaled = (c as u32 * u32::from(max) + 127) / 255;
                *entry = scaled.checked_shl(u32::from(shift)).unwrap_or(0);
            }
            t
        };
        Self {
            format,
            red: table(format.red_max, format.red_shift),
            green: table(format.green_max, format.green_shift),
            blue: table(format.blue_max, format.blue_shift),
        }
    }

    /// The client's pixel value for a 0x00RRGGBB colour.
    #[inline]
    pub fn convert(&self, rgb: u32) -> u32 {
        self.red[(rgb >> 16) as usize & 0xff]
            | self.green[(rgb >> 8) as usize & 0xff]
            | self.blue[rgb as usize & 0xff]
    }
}

/// A rectangle of a client's pixel values: `width` × `height` pixels of
/// `data`, rows `stride` apart. Encoders read it; sub-tiles are views.
#[derive(Clone, Copy)]
pub struct Block<'a> {
    pub data: &'a [u32],
    pub stride: usize,
    pub width: usize,
    pub height: usize,
}

impl<'a> Block<'a> {
    /// A block over all of `data` (`width` pixels per row).
    pub fn new(data: &'a [u32], width: usize, height: usize) -> Self {
        debug_assert_eq!(data.len(), width * height);
        Self {
            data,
            stride: width,
            width,
            height,
        }
    }

    pub fn row(&self, y: usize) -> &'a [u32] {
        let start = y * self.stride;
        &self.data[start..start + self.width]
    }

    /// The pixels row by row.
    pub fn pixels(&self) -> impl Iterator<Item = u32> + 'a {
        let this = *self;
        (0..self.height).flat_map(move |y| this.row(y).iter().copied())
    }

    /// The `width` × `height` block at (`x`, `y`) inside this one.
    pub fn sub(&self, x: usize, y: usize, width: usize, height: usize) -> Block<'a> {
        debug_assert!(x + width <= self.width && y + height <= self.height);
        let start = y * self.stride + x;
        let end = if height == 0 {
            start
        } else {
            start + (height - 1) * self.stride + width
        };
        Block {
            data: &self.data[start..end],
            stride: self.stride,
            width,
            height,
        }
    }

    /// Tiles of at most `size` × `size` pixels, row by row, with their
    /// offsets inside this block.
    pub fn tiles(&self, size: usize) -> impl Iterator<Item = (usize, usize, Block<'a>)> + 'a {
        let this = *self;
        (0..self.height).step_by(size).flat_map(move |y| {
            (0..this.width).step_by(size).map(move |x| {
                let w = size.min(this.width - x);
                let h = size.min(this.height - y);
                (x, y, this.sub(x, y, w, h))
            })
        })
    }
}

#[cfg(test)]
pub(crate) mod formats {
    use super::*;

    /// Test patterns (any u32) as valid pixel values of `format`: each
    /// taken as an RGB colour (spread over the channels) and converted.
    pub fn values(format: &PixelFormat, pattern: &[u32]) -> Vec<u32> {
        let conv = Converter::new(*format);
        pattern
            .iter()
            .map(|&v| conv.convert(v.wrapping_mul(0x0010_2041) ^ (v >> 3)))
            .collect()
    }

    pub fn rgb888_le() -> PixelFormat {
        PixelFormat::native()
    }

    pub fn rgb888_be() -> PixelFormat {
        PixelFormat {
            big_endian: true,
            ..PixelFormat::native()
        }
    }

    /// 32 bits with the colour in the top three bytes (as some Macs ask).
    pub fn bgr888_high() -> PixelFormat {
        PixelFormat {
            red_shift: 8,
            green_shift: 16,
            blue_shift: 24,
            ..PixelFormat::native()
        }
    }

    pub fn rgb565() -> PixelFormat {
        PixelFormat {
            bits_per_pixel: 16,
            depth: 16,
            big_endian: false,
            true_colour: true,
            red_max: 31,
            green_max: 63,
            blue_max: 31,
            red_shift: 11,
            green_shift: 5,
            blue_shift: 0,
        }
    }

    pub fn rgb332() -> PixelFormat {
        PixelFormat {
            bits_per_pixel: 8,
            depth: 8,
            big_endian: false,
            true_colour: true,
            red_max: 7,
            green_max: 7,
            blue_max: 3,
            red_shift: 5,
            green_shift: 2,
            blue_shift: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::formats::*;
    use super::*;

    fn bytes(pf: PixelFormat, rgb: u32) -> Vec<u8> {
        let mut out = Vec::new();
        pf.put(Converter::new(pf).convert(rgb), &mut out);
        out
    }

    #[test]
    fn conversions_pack_channels_where_the_client_asked() {
        let orange = 0xff8000;
        assert_eq!(bytes(rgb888_le(), orange), [0x00, 0x80, 0xff, 0x00]);
        assert_eq!(bytes(rgb888_be(), orange), [0x00, 0xff, 0x80, 0x00]);
        // 565: r=31, g=round(128*63/255)=32, b=0 -> 0xfc00, little-endian.
        assert_eq!(bytes(rgb565(), orange), [0x00, 0xfc]);
        let be565 = PixelFormat {
            big_endian: true,
            ..rgb565()
        };
        assert_eq!(bytes(be565, orange), [0xfc, 0x00]);
        // 332: r=7, g=round(128*7/255)=4, b=0 -> 111 100 00.
        assert_eq!(bytes(rgb332(), orange), [0b1111_0000]);
        assert_eq!(bytes(rgb332(), 0xffffff), [0xff]);
        assert_eq!(bytes(rgb332(), 0), [0]);
    }

    #[test]
    fn values_read_back_as_written() {
        for pf in [rgb888_le(), rgb888_be(), bgr888_high(), rgb565(), rgb332()] {
            let conv = Converter::new(pf);
            for rgb in [0u32, 0xffffff, 0x123456, 0xfedcba, 0x00ff00] {
                let v = conv.convert(rgb);
                let mut out = Vec::new();
                pf.put(v, &mut out);
                assert_eq!(out.len(), pf.bytes_per_pixel());
                assert_eq!(pf.get(&out), v);
                out.clear();
                pf.put_cpixel(v, &mut out);
                assert_eq!(out.len(), pf.cpixel_len());
                assert_eq!(pf.get_cpixel(&out), v, "{pf:?}");
                out.clear();
                pf.put_tpixel(v, &mut out);
                assert_eq!(out.len(), pf.tpixel_len());
                assert_eq!(pf.get_tpixel(&out), v);
                // 8-bit channels survive exactly; narrower ones approximately.
                if pf.red_max == 255 {
                    assert_eq!(pf.to_rgb(v), rgb);
                }
            }
        }
    }

    #[test]
    fn compressed_pixel_sizes_follow_the_specs() {
        assert_eq!(rgb888_le().cpixel_len(), 3);
        assert_eq!(rgb888_be().cpixel_len(), 3);
        assert_eq!(bgr888_high().cpixel_len(), 3);
        let mut deep = rgb888_le();
        deep.depth = 32;
        assert_eq!(deep.cpixel_len(), 4);
        assert_eq!(rgb565().cpixel_len(), 2);
        // CPIXEL drops the padding byte, in the pixel's byte order.
        let mut out = Vec::new();
        rgb888_be().put_cpixel(0x00123456, &mut out);
        assert_eq!(out, [0x12, 0x34, 0x56]);
        out.clear();
        bgr888_high().put_cpixel(0x12345600, &mut out);
        assert_eq!(out, [0x56, 0x34, 0x12]);
        // TPIXEL is R, G, B whatever the shifts and byte order.
        out.clear();
        bgr888_high().put_tpixel(Converter::new(bgr888_high()).convert(0x123456), &mut out);
        assert_eq!(out, [0x12, 0x34, 0x56]);
        assert_eq!(rgb565().tpixel_len(), 2);
    }

    #[test]
    fn unusable_formats_are_refused() {
        assert!(rgb565().check().is_ok());
        let mut pf = rgb332();
        pf.true_colour = false;
        assert!(pf.check().is_err());
        let mut pf = rgb565();
        pf.bits_per_pixel = 24;
        assert!(pf.check().is_err());
        let mut pf = rgb332();
        pf.red_shift = 7; // 3 bits at 7 overflow 8 bits
        assert!(pf.check().is_err());
        let mut pf = rgb888_le();
        pf.blue_max = 0;
        assert!(pf.check().is_err());
        let mut pf = rgb888_le();
        pf.red_shift = 200;
        assert!(pf.check().is_err());
    }
}
