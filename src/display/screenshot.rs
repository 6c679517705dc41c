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
}
