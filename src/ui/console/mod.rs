//! The console: a VNC client on the VM's unix socket, drawn in a GTK widget.
//!
//! ```text
//!  view.rs         ConsoleView, the GTK widget: tile textures, input, grab
//!  ├─ session.rs   the VNC session on its own thread (tokio + vnc-rs)
//!  ├─ framebuffer.rs   the decoded screen and its damage, in tiles (no GTK)
//!  └─ geometry.rs      scale-to-fit / 1:1 placement, pointer mapping (no GTK)
//! ```

pub mod framebuffer;
pub mod geometry;
pub mod session;
mod view;

pub use session::ConsoleState;
pub use session::{Dialer, Endpoint};
pub use view::ConsoleView;
