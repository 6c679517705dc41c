//! What the window does, without GTK: VM lifecycles, the inventory of
//! defined and running VMs, and the operations behind every button. The
//! `ui` module draws these; the command line can use them too, and every
//! rule here is unit-tested headless.

pub mod clone;
pub mod create;
pub mod demo;
pub mod edit;
pub mod host_check;
pub mod host_info;
pub mod inventory;
pub mod lifecycle;
pub mod media;
pub mod operations;
pub mod osinfo;
pub mod preferences;
pub mod snapshots;
pub mod storage;
pub mod store_watch;
