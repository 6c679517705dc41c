//! Vireo: a self-contained virtual-machine manager with its own KVM monitor.
//!
//! One library with two thin binaries: `vireo` (the window and the
//! virsh-like command line, `main.rs`) and `vireo-vmm` (one running VM,
//! without GTK, `bin/vireo-vmm.rs`). `ARCHITECTURE.md` at the top of the
//! repository is the map: processes, the boot sequence, threads, the data
//! paths, one line per module, and the layer table that `tests/layers.rs`
//! enforces. From the bottom up:
//!
//! ```text
//!  cli ─> ui ─> app ─> vm_process ─> vm_config ─> definitions ─> domain
//!                          │            │                    └─> storage, net
//!                          │            └─> vmm ─> devices ─> display, storage, net
//!                          └─> control, vnc ─> display
//!  at the bottom, for everyone: paths, fsutil, logging, ids, keys
//! ```
//!
//! Only `vmm` touches KVM; every device is a register machine that can be
//! unit-tested without a VM; only `ui` knows GTK.

pub mod app;
pub mod cli;
pub mod connection;
pub mod control;
pub mod definitions;
pub mod devices;
pub mod display;
pub mod domain;
pub mod fsutil;
pub mod fuzz;
pub mod host;
pub mod ids;
pub mod keys;
pub mod logging;
pub mod net;
pub mod paths;
pub mod sandbox;
pub mod storage;
pub mod ui;
pub mod vm_config;
pub mod vm_process;
pub mod vmm;
pub mod vnc;
