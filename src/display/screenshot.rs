//! Screenshots: the surface as a PNG, exactly as the guest shows it.

use std::path::Path;

use super::Surface;

#[derive(Debug, thiserror::Error)]
pub enum ScreenshotError {
    #[error("cannot write screenshot {path}: {source}")]
    Write {
        path: String,
        #[source]
        source: image::ImageError,
    },
}

/// The surface as 8-bit RGB.
pub fn to_rgb(surface: &Surface) -> image::RgbImage {
    image::RgbImage::from_fn(surface.width, surface.height, |x, y| {
        let p = surface.pixel(x, y);
        image::Rgb([(p >> 16) as u8, (p >> 8) as u8, p as u8])
    })
}

/// Writes `surface` to `path` as PNG.
pub fn write_png(surface: &Surface, path: &Path) -> Result<(), ScreenshotError> {
    to_rgb(surface)
        .save_with_format(path, image::ImageFormat::Png)
        .map_err(|source| ScreenshotError::Write {
            path: path.display().to_string(),
            source,
        })
}

/// Writes `surface` to `path` as binary PPM (P6), QEMU's `screendump` default.
pub fn write_ppm(surface: &Surface, path: &Path) -> std::io::Result<()> {
    let mut bytes = format!("P6\n{} {}\n255\n", surface.width, surface.height).into_bytes();
    bytes.reserve(surface.pixels.len() * 3);
    for p in &surface.pixels {
        bytes.extend_from_slice(&[(p >> 16) as u8, (p >> 8) as u8, *p as u8]);
    }
    std::fs::write(path, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_holds_the_pixels() {
        let mut surface = Surface::new(3, 2);
        surface.row_mut(1)[2] = 0x0012_3456;
        let file = tempfile::Builder::new().suffix(".png").tempfile().unwrap();
        write_png(&surface, file.path()).unwrap();
        let back = image::open(file.path()).unwrap().to_rgb8();
        assert_eq!(back.dimensions(), (3, 2));
        assert_eq!(back.get_pixel(2, 1).0, [0x12, 0x34, 0x56]);
        assert_eq!(back.get_pixel(0, 0).0, [0, 0, 0]);
    }

    #[test]
    fn ppm_holds_the_pixels() {
        let mut surface = Surface::new(2, 1);
        surface.row_mut(0)[1] = 0x00ab_cdef;
        let file = tempfile::NamedTempFile::new().unwrap();
        write_ppm(&surface, file.path()).unwrap();
        assert_eq!(
            std::fs::read(file.path()).unwrap(),
            b"P6\n2 1\n255\n\0\0\0\xab\xcd\xef"
        );
    }
}
