//! The client's copy of the guest screen and its damage, kept in tiles.
//!
//! GTK 4.8 cannot update part of a texture (`GdkMemoryTextureBuilder`'s
//! update region is 4.16), so the widget draws the screen as a grid of
//! [`TILE`]-pixel square textures and re-creates only the tiles that a
//! framebuffer update touched. This module does that bookkeeping without
//! GTK: the VNC session writes rectangles into a [`Framebuffer`], which
//! marks the tiles they cover, and hands the dirty tiles' pixels over in
//! one [`FrameBatch`] when the widget is ready for more.
//!
//! Pixels arrive as 32-bit little-endian BGRX (blue first in memory), what
//! the session asks the server for. GTK 4.8 has no BGRX memory format
//! (`B8g8r8x8` is 4.14), so the fourth byte is set to 0xFF as pixels land:
//! the tiles are then opaque BGRA, which `B8g8r8a8Premultiplied` (GTK's own
//! layout) reads without conversion.

/// Tile edge in pixels: 128×128×4 = 64 KiB per texture, so a one-character
/// change re-uploads 64 KiB rather than the whole screen, and a full 1024×768
/// screen is 48 textures.
pub const TILE: u32 = 128;

/// Bytes per pixel (BGRX).
pub const BPP: usize = 4;

/// Why an update cannot be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FramebufferError {
    /// The rectangle reaches outside the screen.
    #[error(
        "rectangle {x},{y} {width}x{height} is outside the {screen_width}x{screen_height} screen"
    )]
    OutOfBounds {
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        screen_width: u32,
        screen_height: u32,
    },
    /// The pixel data is not width × height × 4 bytes.
    #[error("{got} bytes of pixels for a {width}x{height} rectangle")]
    BadLength { width: u32, height: u32, got: usize },
}

/// Which tiles of a screen changed since they were last handed over.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileGrid {
    width: u32,
    height: u32,
    cols: u32,
    rows: u32,
    dirty: Vec<bool>,
}

impl TileGrid {
    /// A grid over a `width`×`height` screen, every tile clean.
    pub fn new(width: u32, height: u32) -> Self {
        let cols = width.div_ceil(TILE);
        let rows = height.div_ceil(TILE);
        Self {
            width,
            height,
            cols,
            rows,
            dirty: vec![false; (cols * rows) as usize],
        }
    }

    pub fn cols(&self) -> u32 {
        self.cols
    }

    pub fn rows(&self) -> u32 {
        self.rows
    }

    /// Marks the tiles that the rectangle covers (clipped to the screen).
    pub fn mark(&mut self, x: u32, y: u32, width: u32, height: u32) {
        let x1 = x.saturating_add(width).min(self.width);
        let y1 = y.saturating_add(height).min(self.height);
        if x >= x1 || y >= y1 {
            return;
        }
        for row in y / TILE..y1.div_ceil(TILE) {
            for col in x / TILE..x1.div_ceil(TILE) {
                self.dirty[(row * self.cols + col) as usize] = true;
            }
        }
    }

    pub fn mark_all(&mut self) {
        self.dirty.fill(true);
    }

    pub fn is_dirty(&self) -> bool {
        self.dirty.contains(&true)
    }

    /// The dirty tiles as (column, row), row by row; they are clean after.
    pub fn take_dirty(&mut self) -> Vec<(u32, u32)> {
        let cols = self.cols;
        let taken = self
            .dirty
            .iter()
            .enumerate()
            .filter(|(_, d)| **d)
            .map(|(i, _)| (i as u32 % cols, i as u32 / cols))
            .collect();
        self.dirty.fill(false);
        taken
    }

    /// The pixels tile (`col`, `row`) covers: x, y, width, height. Tiles on
    /// the right and bottom edges are cut to the screen.
    pub fn tile_rect(&self, col: u32, row: u32) -> (u32, u32, u32, u32) {
        let x = col * TILE;
        let y = row * TILE;
        (
            x,
            y,
            TILE.min(self.width - x.min(self.width)),
            TILE.min(self.height - y.min(self.height)),
        )
    }
}

/// One tile's new pixels, tightly packed (stride = width × 4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TileImage {
    pub col: u32,
    pub row: u32,
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// What changed since the last hand-over: the screen's size and the new
/// contents of every tile that changed. After a size change every tile is
/// in the batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameBatch {
    pub width: u32,
    pub height: u32,
    pub tiles: Vec<TileImage>,
}

/// The screen as the client has decoded it.
#[derive(Debug, Clone)]
pub struct Framebuffer {
    width: u32,
    height: u32,
    pixels: Vec<u8>,
    grid: TileGrid,
}

impl Framebuffer {
    /// A black screen, all of it damaged (the widget has nothing yet).
    pub fn new(width: u32, height: u32) -> Self {
        let mut grid = TileGrid::new(width, height);
        grid.mark_all();
        Self {
            width,
            height,
            pixels: [0, 0, 0, 0xff].repeat(width as usize * height as usize),
            grid,
        }
    }

    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// The guest changed its resolution: a new black screen, all damaged.
    /// The same size again changes nothing.
    pub fn resize(&mut self, width: u32, height: u32) {
        if (width, height) != (self.width, self.height) {
            *self = Self::new(width, height);
        }
    }

    fn check(&self, x: u32, y: u32, width: u32, height: u32) -> Result<(), FramebufferError> {
        let fits = |pos: u32, len: u32, max: u32| pos.checked_add(len).is_some_and(|e| e <= max);
        if fits(x, width, self.width) && fits(y, height, self.height) {
            Ok(())
        } else {
            Err(FramebufferError::OutOfBounds {
                x,
                y,
                width,
                height,
                screen_width: self.width,
                screen_height: self.height,
            })
        }
    }

    /// Writes a rectangle of BGRX pixels (stride = width × 4).
    pub fn put(
        &mut self,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
        data: &[u8],
    ) -> Result<(), FramebufferError> {
        self.check(x, y, width, height)?;
        let row_bytes = width as usize * BPP;
        if data.len() != row_bytes * height as usize {
            return Err(FramebufferError::BadLength {
                width,
                height,
                got: data.len(),
            });
        }
        let stride = self.width as usize * BPP;
        for (i, src) in data.chunks_exact(row_bytes.max(1)).enumerate() {
            let at = (y as usize + i) * stride + x as usize * BPP;
            let dst = &mut self.pixels[at..at + row_bytes];
            dst.copy_from_slice(src);
            for px in dst.chunks_exact_mut(BPP) {
                px[3] = 0xff;
            }
        }
        self.grid.mark(x, y, width, height);
        Ok(())
    }

    /// CopyRect: moves a rectangle of the screen (source and destination
    /// may overlap).
    pub fn copy(
        &mut self,
        src_x: u32,
        src_y: u32,
        x: u32,
        y: u32,
        width: u32,
        height: u32,
    ) -> Result<(), FramebufferError> {
        self.check(src_x, src_y, width, height)?;
        self.check(x, y, width, height)?;
        let stride = self.width as usize * BPP;
        let row_bytes = width as usize * BPP;
        let rows: Vec<usize> = if y > src_y {
            (0..height as usize).rev().collect()
        } else {
            (0..height as usize).collect()
        };
        for i in rows {
            let from = (src_y as usize + i) * stride + src_x as usize * BPP;
            let to = (y as usize + i) * stride + x as usize * BPP;
            self.pixels.copy_within(from..from + row_bytes, to);
        }
        self.grid.mark(x, y, width, height);
        Ok(())
    }

    /// Whether anything changed since the last [`Framebuffer::take_batch`].
    pub fn is_dirty(&self) -> bool {
        self.grid.is_dirty()
    }

    /// The pixel at (`x`, `y`) as 0xRRGGBB.
    pub fn pixel(&self, x: u32, y: u32) -> u32 {
        let at = (y as usize * self.width as usize + x as usize) * BPP;
        u32::from_le_bytes([self.pixels[at], self.pixels[at + 1], self.pixels[at + 2], 0])
    }

    /// The changed tiles' pixels; everything is clean after.
    pub fn take_batch(&mut self) -> FrameBatch {
        let stride = self.width as usize * BPP;
        let tiles = self
            .grid
            .take_dirty()
            .into_iter()
            .map(|(col, row)| {
                let (x, y, width, height) = self.grid.tile_rect(col, row);
                let row_bytes = width as usize * BPP;
                let mut pixels = Vec::with_capacity(row_bytes * height as usize);
                for line in y..y + height {
                    let at = line as usize * stride + x as usize * BPP;
                    pixels.extend_from_slice(&self.pixels[at..at + row_bytes]);
                }
                TileImage {
                    col,
                    row,
                    x,
                    y,
                    width,
                    height,
                    pixels,
                }
            })
            .collect();
        FrameBatch {
            width: self.width,
            height: self.height,
            tiles,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn solid(width: u32, height: u32, rgb: u32) -> Vec<u8> {
        (0..width * height)
            .flat_map(|_| rgb.to_le_bytes())
            .collect()
    }

    #[test]
    fn a_new_screen_hands_over_every_tile_once() {
        let mut fb = Framebuffer::new(300, 200);
        let batch = fb.take_batch();
        assert_eq!((batch.width, batch.height), (300, 200));
        // 3 columns (128, 128, 44) × 2 rows (128, 72).
        let rects: Vec<_> = batch
            .tiles
            .iter()
            .map(|t| (t.x, t.y, t.width, t.height))
            .collect();
        assert_eq!(
            rects,
            [
                (0, 0, 128, 128),
                (128, 0, 128, 128),
                (256, 0, 44, 128),
                (0, 128, 128, 72),
                (128, 128, 128, 72),
                (256, 128, 44, 72)
            ]
        );
        assert!(batch
            .tiles
            .iter()
            .all(|t| t.pixels.len() == (t.width * t.height * 4) as usize));
        assert!(!fb.is_dirty());
        assert!(fb.take_batch().tiles.is_empty());
    }

    #[test]
    fn only_the_tiles_a_rectangle_touches_are_handed_over() {
        let mut fb = Framebuffer::new(1024, 768);
        fb.take_batch();
        // 10×10 at (250, 120): crosses the tile edges at x=256 and y=128.
        fb.put(250, 120, 10, 10, &solid(10, 10, 0xff0000)).unwrap();
        let batch = fb.take_batch();
        let tiles: Vec<_> = batch.tiles.iter().map(|t| (t.col, t.row)).collect();
        assert_eq!(tiles, [(1, 0), (2, 0), (1, 1), (2, 1)]);
        // The tile's own copy carries the pixel at its place.
        let t = &batch.tiles[3]; // (256, 128)
        let (tx, ty) = (259 - t.x as usize, 129 - t.y as usize);
        let at = (ty * t.width as usize + tx) * 4;
        assert_eq!(&t.pixels[at..at + 4], &[0, 0, 0xff, 0xff]); // B, G, R, opaque
        assert_eq!(fb.pixel(259, 129), 0xff0000);
        assert_eq!(fb.pixel(260, 129), 0);
    }

    #[test]
    fn updates_between_hand_overs_coalesce() {
        let mut fb = Framebuffer::new(256, 128);
        fb.take_batch();
        fb.put(0, 0, 1, 1, &solid(1, 1, 1)).unwrap();
        fb.put(1, 1, 1, 1, &solid(1, 1, 2)).unwrap();
        fb.put(0, 0, 1, 1, &solid(1, 1, 3)).unwrap();
        let batch = fb.take_batch();
        assert_eq!(batch.tiles.len(), 1);
        assert_eq!(&batch.tiles[0].pixels[..4], &[3, 0, 0, 0xff]);
    }

    #[test]
    fn a_resize_is_a_new_black_screen_and_the_same_size_is_nothing() {
        let mut fb = Framebuffer::new(720, 400);
        fb.put(0, 0, 2, 2, &solid(2, 2, 0xffffff)).unwrap();
        fb.take_batch();
        fb.resize(720, 400);
        assert!(!fb.is_dirty());
        assert_eq!(fb.pixel(1, 1), 0xffffff);
        fb.resize(1024, 768);
        assert_eq!(fb.size(), (1024, 768));
        assert_eq!(fb.pixel(1, 1), 0);
        assert_eq!(fb.take_batch().tiles.len(), 8 * 6);
    }

    #[test]
    fn bad_rectangles_are_refused_without_touching_the_screen() {
        let mut fb = Framebuffer::new(100, 100);
        fb.take_batch();
        assert!(matches!(
            fb.put(95, 0, 10, 1, &solid(10, 1, 1)),
            Err(FramebufferError::OutOfBounds { .. })
        ));
        assert!(matches!(
            fb.put(u32::MAX, 0, 2, 1, &solid(2, 1, 1)),
            Err(FramebufferError::OutOfBounds { .. })
        ));
        assert_eq!(
            fb.put(0, 0, 2, 2, &[0; 12]),
            Err(FramebufferError::BadLength {
                width: 2,
                height: 2,
                got: 12
            })
        );
        assert!(fb.copy(0, 0, 99, 99, 2, 2).is_err());
        assert!(!fb.is_dirty());
    }

    #[test]
    fn copy_rect_moves_overlapping_areas_correctly() {
        let mut fb = Framebuffer::new(4, 4);
        for y in 0..4 {
            fb.put(0, y, 1, 1, &solid(1, 1, y + 1)).unwrap();
        }
        fb.take_batch();
        fb.copy(0, 0, 0, 1, 1, 3).unwrap(); // down by one, overlapping
        let column: Vec<_> = (0..4).map(|y| fb.pixel(0, y)).collect();
        assert_eq!(column, [1, 1, 2, 3]);
        assert!(fb.is_dirty());
    }

    #[test]
    fn the_grid_clips_marks_to_the_screen() {
        let mut grid = TileGrid::new(130, 130);
        grid.mark(129, 129, 1000, 1000);
        assert_eq!(grid.take_dirty(), [(1, 1)]);
        grid.mark(200, 0, 5, 5);
        assert!(!grid.is_dirty());
        assert_eq!(grid.tile_rect(1, 1), (128, 128, 2, 2));
    }
}
