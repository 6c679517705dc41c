//! Zlib encoding (rfbproto "Zlib Encoding", number 6): Raw pixel data
//! through one zlib stream that lives as long as the client, each
//! rectangle's share sync-flushed and sent as a u32 length plus bytes.
//! Also the deflate/inflate helpers ZRLE and Tight use for their streams.

use std::io::{self, Read};

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

use super::pixel::Block;
use super::protocol::{read_u32, PixelFormat};

/// A new per-client stream (zlib header, default-ish level: screen
/// content compresses well already at 6; faster levels suit LANs).
pub fn new_stream() -> Compress {
    Compress::new(Compression::new(6), true)
}

/// Compresses all of `input` into `out` and sync-flushes, so the client
/// can decode everything sent so far while the stream goes on.
pub fn deflate(stream: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let start_in = stream.total_in();
    loop {
        let consumed = (stream.total_in() - start_in) as usize;
        // Room for incompressible input plus zlib's per-block overhead.
        out.reserve(input.len() - consumed + 64);
        let before = out.len();
        let spare = out.capacity() - before;
        stream
            .compress_vec(&input[consumed..], out, FlushCompress::Sync)
            .map_err(io::Error::other)?;
        let done = (stream.total_in() - start_in) as usize == input.len();
        // The flush is complete once zlib stops filling the buffer.
        if done && out.len() - before < spare {
            return Ok(());
        }
    }
}

/// The client side of [`deflate`]: inflates `input`, all of which must
/// decode, appending to `out`.
pub fn inflate(stream: &mut Decompress, input: &[u8], out: &mut Vec<u8>) -> io::Result<()> {
    let start_in = stream.total_in();
    loop {
        let consumed = (stream.total_in() - start_in) as usize;
        out.reserve(input.len() * 4 + 1024);
        let before = out.len();
        let spare = out.capacity() - before;
        stream
            .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
        let consumed = (stream.total_in() - start_in) as usize;
        if consumed == input.len() && out.len() - before < spare {
            return Ok(());
        }
        if consumed < input.len() && out.len() == before {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "zlib stream stalled",
            ));
        }
    }
}

pub fn encode(
    block: Block,
    format: &PixelFormat,
    stream: &mut Compress,
    out: &mut Vec<u8>,
) -> io::Result<()> {
    let mut raw = Vec::new();
    super::raw::encode(block, format, &mut raw);
    let mut compressed = Vec::new();
    deflate(stream, &raw, &mut compressed)?;
    out.extend_from_slice(&(compressed.len() as u32).to_be_bytes());
    out.extend_from_slice(&compressed);
    Ok(())
}

/// The client side of a length-prefixed zlib block (Zlib and ZRLE
/// rectangles): reads the length and the data, returns it inflated.
pub fn read_inflated(r: &mut impl Read, stream: &mut Decompress) -> io::Result<Vec<u8>> {
    let len = read_u32(r)? as usize;
    let mut compressed = vec![0; len];
    r.read_exact(&mut compressed)?;
    let mut raw = Vec::new();
    inflate(stream, &compressed, &mut raw)?;
    Ok(raw)
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
    let raw = read_inflated(r, stream)?;
    let expected = width * height * format.bytes_per_pixel();
    if raw.len() != expected {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("zlib rect holds {} bytes, not {expected}", raw.len()),
        ));
    }
    super::raw::decode(&mut &raw[..], width, height, format)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vnc::pixel::formats::*;

    #[test]
    fn one_stream_carries_many_rects() {
        let mut server = new_stream();
        let mut client = Decompress::new(true);
        for format in [rgb888_le(), rgb565(), rgb332(), rgb888_be()] {
            for seed in 0..5u32 {
                let (w, h) = (40 + seed as usize, 30);
                let data: Vec<u32> = (0..w * h)
                    .map(|i| (i as u32 * (seed + 1) / 7) & 0x3f)
                    .collect();
                let mut out = Vec::new();
                encode(Block::new(&data, w, h), &format, &mut server, &mut out).unwrap();
                let mut r = &out[..];
                assert_eq!(decode(&mut r, w, h, &format, &mut client).unwrap(), data);
                assert!(r.is_empty());
            }
        }
    }

    #[test]
    fn large_incompressible_input_is_flushed_whole() {
        let input: Vec<u8> = (0..300_000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut out = Vec::new();
        deflate(&mut new_stream(), &input, &mut out).unwrap();
        let mut back = Vec::new();
        inflate(&mut Decompress::new(true), &out, &mut back).unwrap();
        assert_eq!(back, input);
    }
}
