//! The host as users ask about it: can it run VMs (and if not, why not, in
//! plain words), and what can it offer guests (`capabilities`,
//! `domcapabilities`, shaped like libvirt's).

pub mod capabilities;
pub mod conf;
pub mod cpu;
pub mod validate;
