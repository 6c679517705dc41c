//! USB 1.1: a UHCI host controller and the devices plugged into its ports.
//!
//! Why a USB tablet is Vireo's absolute pointer: it is what virt-manager
//! gives every new VM (`<input type='tablet' bus='usb'/>`), and Windows,
//! Linux and the BSDs (installers included) as well as SeaBIOS carry UHCI
//! and HID drivers in the box. virtio-input would need extra drivers on
//! Windows. An absolute pointer lets a VNC or GUI pointer land where the
//! user clicks, without grabbing the host's pointer.
//!
//! Reference: Universal Serial Bus Specification 1.1, chapter 9 (device
//! framework: standard requests and descriptors). The controller is in
//! [`uhci`], the device in [`hid_tablet`].

pub mod hid_tablet;
pub mod uhci;

/// PID of a token (USB 1.1 §8.3.1), as UHCI transfer descriptors carry it.
pub const PID_SETUP: u8 = 0x2d;
pub const PID_IN: u8 = 0x69;
pub const PID_OUT: u8 = 0xe1;

/// How a device answered one transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UsbResponse {
    /// Success: the number of bytes moved (written into the buffer for IN).
    Ack(usize),
    /// Nothing to send yet (an interrupt endpoint without a new report).
    Nak,
    /// The request or endpoint is not supported, or the protocol was broken.
    Stall,
}

/// A device on a USB port, seen transaction by transaction.
pub trait UsbDevice: Send {
    /// Bus reset (port reset): back to the Default state, address 0.
    fn reset(&mut self);
    /// The address the device answers to.
    fn address(&self) -> u8;
    /// A SETUP transaction on endpoint 0 with its 8-byte request.
    fn setup(&mut self, request: [u8; 8]) -> UsbResponse;
    /// An IN transaction: the device fills `data` (at most its length).
    fn data_in(&mut self, endpoint: u8, data: &mut [u8]) -> UsbResponse;
    /// An OUT transaction carrying `data`.
    fn data_out(&mut self, endpoint: u8, data: &[u8]) -> UsbResponse;
}

/// A SETUP packet's fields (USB 1.1 §9.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SetupPacket {
    pub request_type: u8,
    pub request: u8,
    pub value: u16,
    pub index: u16,
    pub length: u16,
}

impl SetupPacket {
    pub fn parse(bytes: [u8; 8]) -> Self {
        Self {
            request_type: bytes[0],
            request: bytes[1],
            value: u16::from_le_bytes([bytes[2], bytes[3]]),
            index: u16::from_le_bytes([bytes[4], bytes[5]]),
            length: u16::from_le_bytes([bytes[6], bytes[7]]),
        }
    }

    /// Whether the data stage (if any) goes device-to-host.
    pub fn is_in(&self) -> bool {
        self.request_type & 0x80 != 0
    }
}
