//! The `ioctl` requests each kind of thread may make once confined, as
//! Firecracker narrows `ioctl` by its request argument: the guest-facing
//! threads get the few KVM requests their devices use, and no thread gets
//! a terminal's `TIOCSTI` or a socket's `SIOCSIF*` it does not need.
//!
//! The numbers are the kernel's (`linux/kvm.h`, `asm-generic/ioctls.h`,
//! `linux/if_tun.h`, `linux/sockios.h`), built with vmm-sys-util's macros
//! from the structures of kvm-bindings, as kvm-ioctls builds them.

use kvm_bindings::{
    kvm_dirty_log, kvm_ioeventfd, kvm_irq_level, kvm_irq_routing, kvm_irqfd, kvm_regs, kvm_sregs,
    kvm_userspace_memory_region,
};
use vmm_sys_util::{ioctl_io_nr, ioctl_ior_nr, ioctl_iow_nr};

use super::ThreadKind;

const KVMIO: u32 = 0xAE;

ioctl_io_nr!(KVM_RUN, KVMIO, 0x80);
ioctl_ior_nr!(KVM_GET_REGS, KVMIO, 0x81, kvm_regs);
ioctl_ior_nr!(KVM_GET_SREGS, KVMIO, 0x83, kvm_sregs);
ioctl_iow_nr!(KVM_IRQ_LINE, KVMIO, 0x61, kvm_irq_level);
ioctl_iow_nr!(KVM_SET_GSI_ROUTING, KVMIO, 0x6a, kvm_irq_routing);
ioctl_iow_nr!(KVM_IRQFD, KVMIO, 0x76, kvm_irqfd);
ioctl_iow_nr!(KVM_IOEVENTFD, KVMIO, 0x79, kvm_ioeventfd);
ioctl_iow_nr!(
    KVM_SET_USER_MEMORY_REGION,
    KVMIO,
    0x46,
    kvm_userspace_memory_region
);
ioctl_iow_nr!(KVM_GET_DIRTY_LOG, KVMIO, 0x42, kvm_dirty_log);

/// `TUNSETIFF` (`linux/if_tun.h`): makes a TAP device (`net::tap`).
pub const TUNSETIFF: libc::c_ulong = 0x4004_54ca;
/// `SIOCBRADDIF` (`linux/sockios.h`): puts it in a bridge.
pub const SIOCBRADDIF: libc::c_ulong = 0x89a2;

/// A rule on `ioctl`'s request: one number, or every request of one type
/// (the second byte of the number, `KVMIO` for KVM).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Request {
    Is(u64),
    OfType(u32),
}

/// Requests raised by device emulation, wherever it runs: a vCPU's port or
/// MMIO exit, a device's timer or queue thread, the VNC and QMP threads
/// that deliver input and take screenshots.
fn device_requests() -> Vec<Request> {
    vec![
        // Legacy interrupt lines: the PIC/IOAPIC pins of the RTC, serial
        // port, i8042, IDE, UHCI, ACPI SCI and INTx of PCI devices.
        Request::Is(KVM_IRQ_LINE()),
        // The VGA framebuffer: mapped where the guest puts its BAR, and its
        // dirty pages read for each display refresh.
        Request::Is(KVM_SET_USER_MEMORY_REGION()),
        Request::Is(KVM_GET_DIRTY_LOG()),
        // An MSI's route, set by whichever thread first sends that message
        // (`vmm::irq::KvmMsi`): a virtio queue or NIC thread as often as a
        // vCPU.
        Request::Is(KVM_SET_GSI_ROUTING()),
    ]
}

/// Requests of the guest's programming of PCI devices, on a vCPU thread:
/// MSI/MSI-X vectors' eventfds and virtio's doorbells (ioeventfds), set
/// when the guest enables a device.
fn pci_requests() -> Vec<Request> {
    vec![Request::Is(KVM_IRQFD()), Request::Is(KVM_IOEVENTFD())]
}

/// libslirp asks how much a UDP or ICMP socket holds before reading it
/// (`FIONREAD`), on the thread that polls it and on a vCPU that sends the
/// guest's frame.
fn slirp_requests() -> Vec<Request> {
    vec![Request::Is(libc::FIONREAD)]
}

impl ThreadKind {
    /// The `ioctl` requests this kind of thread may make.
    pub fn ioctl_requests(self) -> Vec<Request> {
        let mut requests = Vec::new();
        match self {
            ThreadKind::Main => {
                // Building a machine (again on every reset): every KVM
                // request on /dev/kvm, the VM and its vCPUs.
                requests.push(Request::OfType(KVMIO));
                // A bridged NIC's TAP device, created again after a reset
                // (CAP_NET_ADMIN kept for it), put in its bridge and up.
                requests.extend([
                    Request::Is(TUNSETIFF),
                    Request::Is(libc::SIOCGIFFLAGS),
                    Request::Is(libc::SIOCSIFFLAGS),
                    Request::Is(SIOCBRADDIF),
                ]);
                // `vireo run --serial stdio` puts its terminal back as it
                // found it (tcgetattr, tcsetattr, isatty): glibc up to
                // 2.41 with TCGETS/TCSETS, 2.42 and later (arbitrary baud
                // rates) with their termios2 forms.
                requests.extend([
                    Request::Is(libc::TCGETS),
                    Request::Is(libc::TCSETS),
                    Request::Is(libc::TCGETS2),
                    Request::Is(libc::TCSETS2),
                ]);
                requests.extend(slirp_requests());
            }
            ThreadKind::Vcpu => {
                requests.push(Request::Is(KVM_RUN()));
                // Registers, read for the log when the guest crashes.
                requests.push(Request::Is(KVM_GET_REGS()));
                requests.push(Request::Is(KVM_GET_SREGS()));
                requests.extend(device_requests());
                requests.extend(pci_requests());
                requests.extend(slirp_requests());
            }
            ThreadKind::Device => {
                requests.extend(device_requests());
                requests.extend(slirp_requests());
            }
            ThreadKind::Vnc | ThreadKind::Control => requests.extend(device_requests()),
            ThreadKind::Serial => {}
        }
        requests
    }
}
