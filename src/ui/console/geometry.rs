//! Where the guest screen sits in the widget, and which guest pixel a
//! point of the widget is: scaled to fit with the screen's aspect ratio
//! kept (letterboxed and centred), or one guest pixel per widget pixel
//! (centred when the widget is larger, from the top-left corner when it is
//! smaller, as a scrolled window shows it).

/// The guest screen's placement in a widget.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Placement {
    /// Widget pixels per guest pixel.
    pub scale: f64,
    /// Where the screen's top-left corner is, in widget coordinates.
    pub x: f64,
    pub y: f64,
    fb_width: u32,
    fb_height: u32,
}

impl Placement {
    /// Places a `fb_width`×`fb_height` screen in a `widget_width`×`widget_height`
    /// widget.
    pub fn new(
        fb_width: u32,
        fb_height: u32,
        widget_width: f64,
        widget_height: f64,
        scale_to_fit: bool,
    ) -> Self {
        let (fw, fh) = (f64::from(fb_width.max(1)), f64::from(fb_height.max(1)));
        let scale = if scale_to_fit {
            let s = (widget_width / fw).min(widget_height / fh);
            if s.is_finite() && s > 0.0 {
                s
            } else {
                1.0
            }
        } else {
            1.0
        };
        let x = ((widget_width - fw * scale) / 2.0).max(0.0);
        let y = ((widget_height - fh * scale) / 2.0).max(0.0);
        Self {
            scale,
            x,
            y,
            fb_width,
            fb_height,
        }
    }

    /// The guest pixel under widget point (`wx`, `wy`); points in the
    /// letterbox bars go to the nearest edge pixel, as a pointer leaving
    /// the screen stays at its edge.
    pub fn to_guest(&self, wx: f64, wy: f64) -> (u16, u16) {
        let clamp = |v: f64, max: u32| -> u16 {
            let top = f64::from(max.saturating_sub(1).min(u32::from(u16::MAX)));
            if v.is_nan() {
                0
            } else {
                v.floor().clamp(0.0, top) as u16
            }
        };
        (
            clamp((wx - self.x) / self.scale, self.fb_width),
            clamp((wy - self.y) / self.scale, self.fb_height),
        )
    }

    /// Where guest rectangle (`x`, `y`, `w`, `h`) is drawn, with its edges
    /// rounded to whole widget pixels so that neighbouring tiles meet
    /// without a seam: x, y, width, height.
    pub fn to_widget(&self, x: u32, y: u32, w: u32, h: u32) -> (f32, f32, f32, f32) {
        let edge = |origin: f64, v: u32| (origin + f64::from(v) * self.scale).round();
        let (x0, y0) = (edge(self.x, x), edge(self.y, y));
        let (x1, y1) = (edge(self.x, x + w), edge(self.y, y + h));
        (x0 as f32, y0 as f32, (x1 - x0) as f32, (y1 - y0) as f32)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wide_widget_letterboxes_left_and_right() {
        // 1024×768 (4:3) in 1600×900: scale 900/768, centred horizontally.
        let p = Placement::new(1024, 768, 1600.0, 900.0, true);
        assert!((p.scale - 900.0 / 768.0).abs() < 1e-9);
        assert_eq!(p.y, 0.0);
        assert!((p.x - (1600.0 - 1024.0 * p.scale) / 2.0).abs() < 1e-9);
        assert_eq!(p.to_guest(p.x, 0.0), (0, 0));
        assert_eq!(p.to_guest(1599.0, 899.0), (1023, 767));
        assert_eq!(p.to_guest(800.0, 450.0), (512, 384));
        // In the bars: the nearest edge.
        assert_eq!(p.to_guest(0.0, 450.0), (0, 384));
        assert_eq!(p.to_guest(1600.0, 450.0), (1023, 384));
    }

    #[test]
    fn a_tall_widget_letterboxes_top_and_bottom() {
        let p = Placement::new(720, 400, 360.0, 400.0, true);
        assert_eq!(p.scale, 0.5);
        assert_eq!((p.x, p.y), (0.0, 100.0));
        assert_eq!(p.to_guest(180.0, 200.0), (360, 200));
        assert_eq!(p.to_widget(0, 0, 720, 400), (0.0, 100.0, 360.0, 200.0));
    }

    #[test]
    fn one_to_one_centres_a_small_screen_and_pins_a_large_one() {
        let p = Placement::new(640, 480, 800.0, 600.0, false);
        assert_eq!((p.scale, p.x, p.y), (1.0, 80.0, 60.0));
        assert_eq!(p.to_guest(80.0, 60.0), (0, 0));
        assert_eq!(p.to_guest(100.5, 70.9), (20, 10));
        let p = Placement::new(1024, 768, 800.0, 600.0, false);
        assert_eq!((p.scale, p.x, p.y), (1.0, 0.0, 0.0));
        assert_eq!(p.to_guest(799.0, 599.0), (799, 599));
    }

    #[test]
    fn neighbouring_tiles_share_their_edges_at_any_scale() {
        let p = Placement::new(1024, 768, 1000.0, 700.0, true);
        let (x0, _, w0, _) = p.to_widget(0, 0, 128, 128);
        let (x1, _, _, _) = p.to_widget(128, 0, 128, 128);
        assert_eq!(x0 + w0, x1);
    }

    #[test]
    fn degenerate_sizes_do_not_divide_by_zero() {
        let p = Placement::new(0, 0, 0.0, 0.0, true);
        assert_eq!(p.scale, 1.0);
        assert_eq!(p.to_guest(f64::NAN, 5.0), (0, 0));
    }
}
