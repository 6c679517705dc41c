//! The stored definitions, libvirt's `/etc/libvirt/{qemu,storage,network}`
//! counterparts: one libvirt XML file per domain, pool and network under
//! `paths::config_dir()`, written atomically (temp file, fsync, rename), so
//! a crash leaves the old definition or the new one, never half of either.
//!
//! | file | kind | model |
//! |---|---|---|
//! | [`domains`] | VM definitions, [`DomainStore`] | [`crate::domain`] |
//! | [`pools`] | storage pools and whether they run, [`PoolStore`] | [`crate::storage::pools`] |
//! | [`networks`] | virtual networks and whether they run, [`NetworkStore`] | [`networks::NetworkDef`] |
//! | [`snapshots`] | each domain's snapshot descriptions, [`SnapshotStore`] | [`crate::domain::snapshot`] |
//!
//! All three keep their files in a [`DefinitionFiles`], the one place that
//! knows how a definition is written.
//!
//! What runs from a definition (a VM process, a network's switch) is
//! started elsewhere; this module only knows the files.

mod definition;
pub mod domains;
pub mod files;
pub mod networks;
pub mod pools;
pub mod snapshots;

pub use definition::Definition;
pub use domains::{atomic_write, validate_name, DomainStore, StoreError};
pub use files::DefinitionFiles;
pub use networks::{Network, NetworkDef, NetworkError, NetworkStore};
pub use pools::PoolStore;
pub use snapshots::SnapshotStore;
