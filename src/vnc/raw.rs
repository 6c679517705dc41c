//! Raw encoding (RFC 6143 §7.7.1): every pixel, row by row, in the
//! client's pixel format. Every client supports it.

use std::io::{self, Read};

use super::pixel::Block;
use super::protocol::PixelFormat;

pub fn encode(block: Block, format: &PixelFormat, out: &mut Vec<u8>) {
    out.reserve(block.width * block.height * format.bytes_per_pixel());
    for value in block.pixels() {
        format.put(value, out);
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
    let mut bytes = vec![0; width * height * bpp];
    r.read_exact(&mut bytes)?;
    Ok(bytes.chunks_exact(bpp).map(|b| format.get(b)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnc::pixel::formats::*;

    #[test]
    fn raw_is_each_pixel_in_order() {
        let data = [1u32, 2, 3, 4, 5, 6];
        let block = Block::new(&data, 3, 2).sub(1, 0, 2, 2);
        let mut out = Vec::new();
        encode(block, &rgb565(), &mut out);
        assert_eq!(out, [2, 0, 3, 0, 5, 0, 6, 0]);
        let decoded = decode(&mut &out[..], 2, 2, &rgb565()).unwrap();
        assert_eq!(decoded, [2, 3, 5, 6]);
    }
}
