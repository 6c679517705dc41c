//! Copying VMs between engines (filled in below).
