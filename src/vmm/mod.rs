//! The virtual machine monitor: builds a PC on KVM and runs it.

pub mod layout;
