//! The window: relm4 components over GTK 4.8 and libadwaita 1.2. The only
//! module that imports GTK; everything it shows comes from `manager`,
//! `store`, `runtime` and `control`, so the rest of Vireo stays headless.

pub mod console;
