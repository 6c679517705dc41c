//! Builds a machine's NICs: a virtio-net device on its backend, with
//! iPXE's virtio boot ROM in the expansion ROM BAR so that SeaBIOS can
//! boot from the network.

use std::sync::Arc;

use tracing::{debug, warn};

use super::config::{NicBackend, NicConfig};
use super::firmware;
use super::irq::GsiRouting;
use super::VmmError;
use crate::devices::pci::{IntxRouter, PciIntx};
use crate::devices::virtio::pci::msix_vectors;
use crate::devices::virtio::{VirtioNet, VirtioPciDevice};
use crate::devices::GuestRam;
use crate::net::slirp::SlirpBackend;
use crate::net::switch::SwitchPort;
use crate::net::tap::TapBackend;
use crate::net::NetBackend;

/// iPXE's legacy-BIOS ROM for virtio-net (Debian `ipxe-qemu`).
pub const PXE_ROM_FILE: &str = "pxe-virtio.rom";

/// Formats a MAC address the usual way.
pub fn mac_string(mac: &[u8; 6]) -> String {
    mac.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The virtio-net PCI function for `nic`, its backend started.
pub fn virtio_net(
    nic: &NicConfig,
    mem: GuestRam,
    intx: &Arc<IntxRouter>,
    routing: &Arc<GsiRouting>,
) -> Result<VirtioPciDevice, VmmError> {
    let device = VirtioNet::new(nic.mac, |sink| match &nic.backend {
        NicBackend::User(config) => {
            Ok(Box::new(SlirpBackend::new(config, sink)?) as Box<dyn NetBackend>)
        }
        NicBackend::Tap { bridge, target } => {
            Ok(Box::new(TapBackend::new(bridge, target.as_deref(), sink)?) as Box<dyn NetBackend>)
        }
        NicBackend::Switch { network, socket } => {
            Ok(Box::new(SwitchPort::new(network, socket, sink)?) as Box<dyn NetBackend>)
        }
    })
    .map_err(|source| VmmError::Nic {
        mac: mac_string(&nic.mac),
        source,
    })?;
    let irq = Arc::new(PciIntx::new(intx.clone(), nic.slot, 1));
    let msi = routing
        .msi_vectors(msix_vectors(&device))
        .map_err(VmmError::kvm("set up MSI-X vectors"))?;
    let pci = VirtioPciDevice::new(Box::new(device), mem, irq, msi);
    Ok(match boot_rom() {
        Some(rom) => pci.with_rom(rom),
        None => pci,
    })
}

/// The boot ROM, if installed; without it the NIC works but SeaBIOS
/// cannot boot from it.
fn boot_rom() -> Option<Vec<u8>> {
    let path = match firmware::find(PXE_ROM_FILE) {
        Ok(path) => path,
        Err(searched) => {
            debug!(?searched, "no {PXE_ROM_FILE}: network boot is unavailable (Debian/Ubuntu: `apt install ipxe-qemu`)");
            return None;
        }
    };
    match std::fs::read(&path) {
        Ok(rom) if !rom.is_empty() => Some(rom),
        Ok(_) => None,
        Err(e) => {
            warn!(path = %path.display(), "cannot read the network boot ROM ({e})");
            None
        }
    }
}
