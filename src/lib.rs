//! Vireo: a self-contained virtual-machine manager with its own KVM monitor.
//!
//! The crate is one library with thin binaries on top. Its modules, from the
//! bottom up (see `README.md` for the code map and `DESIGN.md` for the why):
//!
//! ```text
//!  cli ──────────────┐
//!   │                ▼
//!   ├──> vmm ──> devices ──> (bus, irq, pci, one file per chip)
//!   │     ├────> storage (block backends: raw, later qcow2)
//!   │     └────> domain  (libvirt domain XML)
//!   └──> domain
//! ```
//!
//! Only the `vmm` module touches KVM; every device is a register machine that
//! can be unit-tested without a VM.

pub mod app;
pub mod cli;
pub mod connection;
pub mod control;
pub mod definitions;
pub mod devices;
pub mod display;
pub mod domain;
pub mod fsutil;
pub mod host;
pub mod ids;
pub mod keys;
pub mod logging;
pub mod net;
pub mod paths;
pub mod storage;
pub mod ui;
pub mod vm_config;
pub mod vm_process;
pub mod vmm;
pub mod vnc;
