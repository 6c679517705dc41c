//! A USB HID tablet: an absolute pointer with three buttons and a wheel,
//! report for report the device QEMU calls `usb-tablet` (vendor 0627,
//! product 0001), so guests treat it exactly as they treat QEMU's.
//!
//! References: USB 1.1 §9.4 (standard requests) and §9.6 (descriptors);
//! Device Class Definition for HID 1.11 §6.2 (HID and report descriptors)
//! and §7.2 (class requests). Facts about QEMU's tablet (descriptor values,
//! the report layout) come from its `hw/usb/dev-hid.c` and `hw/input/hid.c`.
//!
//! The report is six bytes: buttons (bit 0 left, 1 right, 2 middle), X and
//! Y as little-endian 0..=0x7FFF across the screen, and a signed wheel step.
//! The interface is not a boot device (subclass 0), as QEMU's is not: a
//! boot-protocol mouse can only report relative motion.
//!
//! Not emulated: the idle rate's periodic resend (reports are sent when the
//! pointer changes, which is what idle rate 0 asks for and what Linux and
//! Windows set), remote wakeup, suspend, string descriptors in languages
//! other than US English.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use super::{SetupPacket, UsbDevice, UsbResponse};

/// Largest X or Y in a report (the report descriptor's logical maximum).
pub const ABS_MAX: u16 = 0x7fff;
/// Report button bits (HID button usages 1..3).
pub const REPORT_LEFT: u8 = 1 << 0;
pub const REPORT_RIGHT: u8 = 1 << 1;
pub const REPORT_MIDDLE: u8 = 1 << 2;
/// Bytes in one input report.
pub const REPORT_LEN: usize = 6;
/// The interrupt IN endpoint's number (address 0x81).
pub const INTERRUPT_ENDPOINT: u8 = 1;
/// Reports waiting for the guest beyond this are merged into the newest:
/// a guest that stops polling must not make the queue grow without bound.
const QUEUE_LIMIT: usize = 32;

const VENDOR_QEMU: u16 = 0x0627;
const PRODUCT_TABLET: u16 = 0x0001;

// Descriptor types (USB 1.1 Table 9-5; HID 1.11 §7.1).
const DT_DEVICE: u8 = 1;
const DT_CONFIGURATION: u8 = 2;
const DT_STRING: u8 = 3;
const DT_HID: u8 = 0x21;
const DT_REPORT: u8 = 0x22;

// Standard request codes (USB 1.1 Table 9-4).
const GET_STATUS: u8 = 0;
const CLEAR_FEATURE: u8 = 1;
const SET_FEATURE: u8 = 3;
const SET_ADDRESS: u8 = 5;
const GET_DESCRIPTOR: u8 = 6;
const GET_CONFIGURATION: u8 = 8;
const SET_CONFIGURATION: u8 = 9;
const GET_INTERFACE: u8 = 10;
const SET_INTERFACE: u8 = 11;
// HID class requests (HID 1.11 §7.2).
const HID_GET_REPORT: u8 = 1;
const HID_GET_IDLE: u8 = 2;
const HID_GET_PROTOCOL: u8 = 3;
const HID_SET_IDLE: u8 = 0x0a;
const HID_SET_PROTOCOL: u8 = 0x0b;

// bmRequestType: direction, type and recipient (USB 1.1 Table 9-2).
const TYPE_MASK: u8 = 0x60;
const TYPE_STANDARD: u8 = 0x00;
const TYPE_CLASS: u8 = 0x20;
const RECIPIENT_MASK: u8 = 0x1f;
const RECIPIENT_INTERFACE: u8 = 1;

/// The device descriptor (USB 1.1 §9.6.1).
pub const DEVICE_DESCRIPTOR: [u8; 18] = [
    18,        // bLength
    DT_DEVICE, // bDescriptorType
    0x00,
    0x01, // bcdUSB 1.00, as QEMU's full-speed tablet
    0,    // bDeviceClass: per interface
    0,    // bDeviceSubClass
    0,    // bDeviceProtocol
    8,    // bMaxPacketSize0
    VENDOR_QEMU as u8,
    (VENDOR_QEMU >> 8) as u8,
    PRODUCT_TABLET as u8,
    (PRODUCT_TABLET >> 8) as u8,
    0,
    0, // bcdDevice
    1, // iManufacturer
    2, // iProduct
    3, // iSerialNumber
    1, // bNumConfigurations
];

/// The HID report descriptor (HID 1.11 §6.2.2): a pointer with three
/// buttons, absolute X and Y in 0..=0x7FFF and a relative wheel.
pub const REPORT_DESCRIPTOR: [u8; 74] = [
    0x05, 0x01, // Usage Page (Generic Desktop)
    0x09, 0x01, // Usage (Pointer)
    0xa1, 0x01, // Collection (Application)
    0x09, 0x01, //   Usage (Pointer)
    0xa1, 0x00, //   Collection (Physical)
    0x05, 0x09, //     Usage Page (Button)
    0x19, 0x01, //     Usage Minimum (1)
    0x29, 0x03, //     Usage Maximum (3)
    0x15, 0x00, //     Logical Minimum (0)
    0x25, 0x01, //     Logical Maximum (1)
    0x95, 0x03, //     Report Count (3)
    0x75, 0x01, //     Report Size (1)
    0x81, 0x02, //     Input (Data, Variable, Absolute): the buttons
    0x95, 0x01, //     Report Count (1)
    0x75, 0x05, //     Report Size (5)
    0x81, 0x01, //     Input (Constant): padding to a byte
    0x05, 0x01, //     Usage Page (Generic Desktop)
    0x09, 0x30, //     Usage (X)
    0x09, 0x31, //     Usage (Y)
    0x15, 0x00, //     Logical Minimum (0)
    0x26, 0xff, 0x7f, // Logical Maximum (0x7FFF)
    0x35, 0x00, //     Physical Minimum (0)
    0x46, 0xff, 0x7f, // Physical Maximum (0x7FFF)
    0x75, 0x10, //     Report Size (16)
    0x95, 0x02, //     Report Count (2)
    0x81, 0x02, //     Input (Data, Variable, Absolute): X, Y
    0x05, 0x01, //     Usage Page (Generic Desktop)
    0x09, 0x38, //     Usage (Wheel)
    0x15, 0x81, //     Logical Minimum (-127)
    0x25, 0x7f, //     Logical Maximum (127)
    0x35, 0x00, //     Physical Minimum (same as logical)
    0x45, 0x00, //     Physical Maximum (same as logical)
    0x75, 0x08, //     Report Size (8)
    0x95, 0x01, //     Report Count (1)
    0x81, 0x06, //     Input (Data, Variable, Relative): the wheel
    0xc0, //   End Collection
    0xc0, // End Collection
];

/// The HID descriptor (HID 1.11 §6.2.1).
const HID_DESCRIPTOR: [u8; 9] = [
    9,      // bLength
    DT_HID, // bDescriptorType
    0x01,
    0x00, // bcdHID (as QEMU's tablet reports it)
    0,    // bCountryCode: not localized
    1,    // bNumDescriptors
    DT_REPORT,
    REPORT_DESCRIPTOR.len() as u8,
    0, // wDescriptorLength
];

/// The configuration descriptor with its interface, HID and endpoint
/// descriptors, as GET_DESCRIPTOR(CONFIGURATION) returns them (§9.6.2).
fn configuration_descriptor() -> Vec<u8> {
    let mut d = vec![
        9,                // bLength
        DT_CONFIGURATION, // bDescriptorType
        0,
        0,    // wTotalLength, filled in below
        1,    // bNumInterfaces
        1,    // bConfigurationValue
        4,    // iConfiguration
        0xa0, // bmAttributes: bus powered (bit 7 set by rule), remote wakeup
        50,   // bMaxPower: 100 mA
        // Interface descriptor (§9.6.3).
        9,
        4, // INTERFACE
        0, // bInterfaceNumber
        0, // bAlternateSetting
        1, // bNumEndpoints
        3, // bInterfaceClass: HID
        0, // bInterfaceSubClass: no boot interface
        2, // bInterfaceProtocol: mouse
        0, // iInterface
    ];
    d.extend_from_slice(&HID_DESCRIPTOR);
    d.extend_from_slice(&[
        // Endpoint descriptor (§9.6.4).
        7,
        5,                         // ENDPOINT
        0x80 | INTERRUPT_ENDPOINT, // bEndpointAddress: IN 1
        3,                         // bmAttributes: interrupt
        8,
        0,  // wMaxPacketSize
        10, // bInterval: 10 ms
    ]);
    let total = d.len() as u16;
    d[2..4].copy_from_slice(&total.to_le_bytes());
    d
}

const STRINGS: [&str; 4] = ["", "Vireo", "Vireo USB Tablet", "1"];
/// String index 4 names the configuration.
const CONFIGURATION_STRING: &str = "HID Tablet";

/// A string descriptor (§9.6.5): index 0 lists the languages (US English).
fn string_descriptor(index: u8) -> Option<Vec<u8>> {
    let text = match index {
        0 => return Some(vec![4, DT_STRING, 0x09, 0x04]),
        1..=3 => STRINGS[index as usize],
        4 => CONFIGURATION_STRING,
        _ => return None,
    };
    let mut d = vec![0, DT_STRING];
    for unit in text.encode_utf16() {
        d.extend_from_slice(&unit.to_le_bytes());
    }
    d[0] = d.len() as u8;
    Some(d)
}

/// Encodes one input report.
pub fn encode_report(x: u16, y: u16, buttons: u8, wheel: i8) -> [u8; REPORT_LEN] {
    let x = x.min(ABS_MAX).to_le_bytes();
    let y = y.min(ABS_MAX).to_le_bytes();
    [buttons & 0x07, x[0], x[1], y[0], y[1], wheel as u8]
}

#[derive(Default)]
struct Queue {
    reports: VecDeque<[u8; REPORT_LEN]>,
    /// The pointer as last reported, for GET_REPORT.
    current: [u8; REPORT_LEN],
}

/// The console's side of the tablet: pointer events go in here, and the
/// device hands them to the guest when it polls. Shared between the
/// console input router and the device on the UHCI port.
#[derive(Default)]
pub struct TabletInput {
    queue: Mutex<Queue>,
    /// The guest selected configuration 1: it has a driver for the tablet.
    configured: AtomicBool,
}

impl TabletInput {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Whether a guest driver has configured the tablet; until then the
    /// console's pointer should go to a device the guest does use.
    pub fn configured(&self) -> bool {
        self.configured.load(Ordering::Acquire)
    }

    /// The pointer is at (`x`, `y`) in 0..=[`ABS_MAX`] with `buttons`
    /// (`REPORT_*` bits) held, and the wheel moved `wheel` steps.
    pub fn pointer(&self, x: u16, y: u16, buttons: u8, wheel: i8) {
        let report = encode_report(x, y, buttons, wheel);
        let mut queue = self.queue.lock().unwrap_or_else(PoisonError::into_inner);
        if queue.reports.len() >= QUEUE_LIMIT {
            // Keep the newest position; a wheel step in the dropped report is lost.
            queue.reports.pop_back();
        }
        queue.reports.push_back(report);
        queue.current = report;
    }

    fn next_report(&self) -> Option<[u8; REPORT_LEN]> {
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reports
            .pop_front()
    }

    fn current_report(&self) -> [u8; REPORT_LEN] {
        let mut report = self
            .queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .current;
        report[5] = 0; // a wheel step is reported once
        report
    }

    fn reset(&self) {
        self.configured.store(false, Ordering::Release);
        self.queue
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .reports
            .clear();
    }
}

/// Where endpoint 0 is in a control transfer (USB 1.1 §8.5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
enum Control {
    Idle,
    /// Device-to-host data left to send; the status stage is an OUT.
    DataIn {
        data: Vec<u8>,
        sent: usize,
    },
    /// Host-to-device data still expected, then an IN status stage.
    DataOut {
        remaining: usize,
    },
    /// A zero-length IN status stage ends the request; an address set by
    /// SET_ADDRESS takes effect only then (§9.4.6).
    StatusIn {
        new_address: Option<u8>,
    },
}

/// The USB tablet device.
pub struct HidTablet {
    input: Arc<TabletInput>,
    address: u8,
    configuration: u8,
    /// HID protocol: 0 boot, 1 report. Stored; the report is the same.
    protocol: u8,
    /// Idle rate in 4 ms units; stored (see the module notes).
    idle: u8,
    control: Control,
}

impl HidTablet {
    pub fn new(input: Arc<TabletInput>) -> Self {
        Self {
            input,
            address: 0,
            configuration: 0,
            protocol: 1,
            idle: 0,
            control: Control::Idle,
        }
    }

    /// The data of a device-to-host request, or `None` to stall it.
    fn request_in(&mut self, setup: &SetupPacket) -> Option<Vec<u8>> {
        let kind = setup.request_type & TYPE_MASK;
        let recipient = setup.request_type & RECIPIENT_MASK;
        match (kind, setup.request) {
            (TYPE_STANDARD, GET_STATUS) => Some(vec![0, 0]),
            (TYPE_STANDARD, GET_DESCRIPTOR) => {
                let index = setup.value as u8;
                match ((setup.value >> 8) as u8, recipient) {
                    (DT_DEVICE, 0) => Some(DEVICE_DESCRIPTOR.to_vec()),
                    (DT_CONFIGURATION, 0) if index == 0 => Some(configuration_descriptor()),
                    (DT_STRING, 0) => string_descriptor(index),
                    (DT_HID, RECIPIENT_INTERFACE) => Some(HID_DESCRIPTOR.to_vec()),
                    (DT_REPORT, RECIPIENT_INTERFACE) => Some(REPORT_DESCRIPTOR.to_vec()),
                    _ => None,
                }
            }
            (TYPE_STANDARD, GET_CONFIGURATION) => Some(vec![self.configuration]),
            (TYPE_STANDARD, GET_INTERFACE) => Some(vec![0]),
            (TYPE_CLASS, HID_GET_REPORT) => Some(self.input.current_report().to_vec()),
            (TYPE_CLASS, HID_GET_IDLE) => Some(vec![self.idle]),
            (TYPE_CLASS, HID_GET_PROTOCOL) => Some(vec![self.protocol]),
            _ => None,
        }
    }

    /// Carries out a host-to-device request; `Err` stalls it. `Ok` holds
    /// an address to take on after the status stage.
    fn request_out(&mut self, setup: &SetupPacket) -> Result<Option<u8>, ()> {
        let kind = setup.request_type & TYPE_MASK;
        match (kind, setup.request) {
            (TYPE_STANDARD, SET_ADDRESS) if setup.value <= 127 => Ok(Some(setup.value as u8)),
            (TYPE_STANDARD, SET_CONFIGURATION) if setup.value <= 1 => {
                self.configuration = setup.value as u8;
                tracing::debug!(configuration = self.configuration, "USB tablet: configured");
                self.input
                    .configured
                    .store(self.configuration == 1, Ordering::Release);
                Ok(None)
            }
            (TYPE_STANDARD, SET_INTERFACE) if setup.value == 0 => Ok(None),
            (TYPE_STANDARD, CLEAR_FEATURE | SET_FEATURE) => Ok(None),
            (TYPE_CLASS, HID_SET_IDLE) => {
                self.idle = (setup.value >> 8) as u8;
                Ok(None)
            }
            (TYPE_CLASS, HID_SET_PROTOCOL) if setup.value <= 1 => {
                self.protocol = setup.value as u8;
                Ok(None)
            }
            _ => Err(()),
        }
    }
}

impl UsbDevice for HidTablet {
    fn reset(&mut self) {
        self.address = 0;
        self.configuration = 0;
        self.protocol = 1;
        self.idle = 0;
        self.control = Control::Idle;
        self.input.reset();
    }

    fn address(&self) -> u8 {
        self.address
    }

    fn setup(&mut self, request: [u8; 8]) -> UsbResponse {
        let setup = SetupPacket::parse(request);
        tracing::debug!(?setup, "USB tablet: request");
        // A SETUP always starts a new transfer, whatever was under way.
        self.control = Control::Idle;
        if setup.is_in() {
            let Some(mut data) = self.request_in(&setup) else {
                return UsbResponse::Stall;
            };
            data.truncate(setup.length as usize);
            self.control = Control::DataIn { data, sent: 0 };
        } else {
            match self.request_out(&setup) {
                Ok(new_address) if setup.length == 0 => {
                    self.control = Control::StatusIn { new_address }
                }
                Ok(_) => {
                    self.control = Control::DataOut {
                        remaining: setup.length as usize,
                    }
                }
                Err(()) => return UsbResponse::Stall,
            }
        }
        UsbResponse::Ack(8)
    }

    fn data_in(&mut self, endpoint: u8, data: &mut [u8]) -> UsbResponse {
        if endpoint == INTERRUPT_ENDPOINT {
            if self.configuration == 0 {
                return UsbResponse::Stall;
            }
            return match self.input.next_report() {
                Some(report) => {
                    let n = data.len().min(REPORT_LEN);
                    data[..n].copy_from_slice(&report[..n]);
                    UsbResponse::Ack(n)
                }
                None => UsbResponse::Nak,
            };
        }
        if endpoint != 0 {
            return UsbResponse::Stall;
        }
        match &mut self.control {
            Control::DataIn { data: reply, sent } => {
                let n = data.len().min(reply.len() - *sent);
                data[..n].copy_from_slice(&reply[*sent..*sent + n]);
                *sent += n;
                UsbResponse::Ack(n)
            }
            Control::StatusIn { new_address } => {
                if let Some(address) = *new_address {
                    tracing::debug!(address, "USB tablet: address set");
                    self.address = address;
                }
                self.control = Control::Idle;
                UsbResponse::Ack(0)
            }
            Control::DataOut { .. } => {
                // The status stage of a request with OUT data.
                self.control = Control::Idle;
                UsbResponse::Ack(0)
            }
            Control::Idle => UsbResponse::Stall,
        }
    }

    fn data_out(&mut self, endpoint: u8, data: &[u8]) -> UsbResponse {
        if endpoint != 0 {
            return UsbResponse::Stall;
        }
        match &mut self.control {
            // The status stage of an IN request (the host may end it early).
            Control::DataIn { .. } => {
                self.control = Control::Idle;
                UsbResponse::Ack(0)
            }
            Control::DataOut { remaining } => {
                *remaining = remaining.saturating_sub(data.len());
                UsbResponse::Ack(data.len())
            }
            Control::StatusIn { .. } | Control::Idle => UsbResponse::Stall,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup(t: u8, r: u8, value: u16, index: u16, length: u16) -> [u8; 8] {
        let v = value.to_le_bytes();
        let i = index.to_le_bytes();
        let l = length.to_le_bytes();
        [t, r, v[0], v[1], i[0], i[1], l[0], l[1]]
    }

    /// Runs a device-to-host control transfer with 8-byte packets, as a
    /// host controller would; `None` if the device stalled.
    fn control_in(dev: &mut HidTablet, request: [u8; 8]) -> Option<Vec<u8>> {
        if dev.setup(request) == UsbResponse::Stall {
            return None;
        }
        let mut out = Vec::new();
        loop {
            let mut packet = [0u8; 8];
            match dev.data_in(0, &mut packet) {
                UsbResponse::Ack(n) => {
                    out.extend_from_slice(&packet[..n]);
                    if n < 8 {
                        break;
                    }
                }
                other => panic!("data stage: {other:?}"),
            }
        }
        assert_eq!(dev.data_out(0, &[]), UsbResponse::Ack(0), "status stage");
        Some(out)
    }

    fn control_out(dev: &mut HidTablet, request: [u8; 8]) -> UsbResponse {
        match dev.setup(request) {
            UsbResponse::Stall => UsbResponse::Stall,
            _ => dev.data_in(0, &mut []),
        }
    }

    fn enumerated() -> (HidTablet, Arc<TabletInput>) {
        let input = TabletInput::new();
        let mut dev = HidTablet::new(input.clone());
        assert_eq!(
            control_out(&mut dev, setup(0, SET_ADDRESS, 5, 0, 0)),
            UsbResponse::Ack(0)
        );
        assert_eq!(
            control_out(&mut dev, setup(0, SET_CONFIGURATION, 1, 0, 0)),
            UsbResponse::Ack(0)
        );
        (dev, input)
    }

    #[test]
    fn the_report_descriptor_declares_buttons_absolute_xy_and_a_wheel() {
        // A tiny HID item parser: sum Report Size × Count over Input items.
        let d = &REPORT_DESCRIPTOR;
        let (mut i, mut size, mut count, mut bits, mut depth) = (0, 0u32, 0u32, 0u32, 0i32);
        let mut logical_max = Vec::new();
        while i < d.len() {
            let prefix = d[i];
            let len = [0, 1, 2, 4][(prefix & 3) as usize];
            let mut value = 0u32;
            for k in 0..len {
                value |= (d[i + 1 + k] as u32) << (8 * k);
            }
            match prefix & 0xfc {
                0x74 => size = value,
                0x94 => count = value,
                0x80 => bits += size * count,
                0x24 => logical_max.push(value),
                0xa0 => depth += 1,
                0xc0 => depth -= 1,
                _ => {}
            }
            i += 1 + len;
        }
        assert_eq!(depth, 0, "collections balance");
        assert_eq!(bits as usize, REPORT_LEN * 8, "the report is six bytes");
        assert!(logical_max.contains(&(ABS_MAX as u32)));
        assert_eq!(HID_DESCRIPTOR[7] as usize, REPORT_DESCRIPTOR.len());
    }

    #[test]
    fn descriptors_read_back_through_control_transfers() {
        let mut dev = HidTablet::new(TabletInput::new());
        let device = control_in(&mut dev, setup(0x80, GET_DESCRIPTOR, 0x0100, 0, 18)).unwrap();
        assert_eq!(device, DEVICE_DESCRIPTOR);
        assert_eq!(
            &device[8..12],
            &[0x27, 0x06, 0x01, 0x00],
            "QEMU's 0627:0001"
        );
        // A host first reads 8 bytes to learn bMaxPacketSize0.
        let first = control_in(&mut dev, setup(0x80, GET_DESCRIPTOR, 0x0100, 0, 8)).unwrap();
        assert_eq!(first, &DEVICE_DESCRIPTOR[..8]);
        let config = control_in(&mut dev, setup(0x80, GET_DESCRIPTOR, 0x0200, 0, 255)).unwrap();
        assert_eq!(config.len(), 34);
        assert_eq!(u16::from_le_bytes([config[2], config[3]]), 34);
        assert_eq!(
            &config[9..18],
            &[9, 4, 0, 0, 1, 3, 0, 2, 0],
            "HID interface"
        );
        assert_eq!(
            &config[27..34],
            &[7, 5, 0x81, 3, 8, 0, 10],
            "interrupt IN 1"
        );
        let report = control_in(&mut dev, setup(0x81, GET_DESCRIPTOR, 0x2200, 0, 74)).unwrap();
        assert_eq!(report, REPORT_DESCRIPTOR);
        let langs = control_in(&mut dev, setup(0x80, GET_DESCRIPTOR, 0x0300, 0, 255)).unwrap();
        assert_eq!(langs, [4, 3, 0x09, 0x04]);
        let product =
            control_in(&mut dev, setup(0x80, GET_DESCRIPTOR, 0x0302, 0x409, 255)).unwrap();
        let text: Vec<u16> = product[2..]
            .chunks(2)
            .map(|c| u16::from_le_bytes([c[0], c[1]]))
            .collect();
        assert_eq!(String::from_utf16(&text).unwrap(), "Vireo USB Tablet");
        assert_eq!(
            control_in(&mut dev, setup(0x80, GET_DESCRIPTOR, 0x0700, 0, 8)),
            None
        );
    }

    #[test]
    fn the_address_changes_after_the_status_stage() {
        let mut dev = HidTablet::new(TabletInput::new());
        assert_eq!(
            dev.setup(setup(0, SET_ADDRESS, 9, 0, 0)),
            UsbResponse::Ack(8)
        );
        assert_eq!(dev.address(), 0, "still 0 until the status stage");
        assert_eq!(dev.data_in(0, &mut []), UsbResponse::Ack(0));
        assert_eq!(dev.address(), 9);
        dev.reset();
        assert_eq!(dev.address(), 0, "a bus reset forgets the address");
    }

    #[test]
    fn reports_flow_only_once_configured_and_nak_when_idle() {
        let input = TabletInput::new();
        let mut dev = HidTablet::new(input.clone());
        input.pointer(100, 200, REPORT_LEFT, 0);
        let mut buf = [0u8; 8];
        assert_eq!(dev.data_in(1, &mut buf), UsbResponse::Stall, "unconfigured");
        assert!(!input.configured());
        let (mut dev, input) = enumerated();
        assert!(input.configured());
        assert_eq!(
            dev.data_in(1, &mut buf),
            UsbResponse::Nak,
            "nothing pending"
        );
        input.pointer(0x4000, 0x7fff, REPORT_LEFT | REPORT_MIDDLE, -1);
        assert_eq!(dev.data_in(1, &mut buf), UsbResponse::Ack(6));
        assert_eq!(&buf[..6], &[0x05, 0x00, 0x40, 0xff, 0x7f, 0xff]);
        assert_eq!(dev.data_in(1, &mut buf), UsbResponse::Nak);
        let current = control_in(&mut dev, setup(0xa1, HID_GET_REPORT, 0x0100, 0, 6)).unwrap();
        assert_eq!(current, [0x05, 0x00, 0x40, 0xff, 0x7f, 0x00]);
        assert_eq!(
            control_out(&mut dev, setup(0, SET_CONFIGURATION, 0, 0, 0)),
            UsbResponse::Ack(0)
        );
        assert!(!input.configured());
    }

    #[test]
    fn a_guest_that_never_polls_keeps_a_bounded_queue_ending_in_the_latest_position() {
        let (mut dev, input) = enumerated();
        for x in 0..1000 {
            input.pointer(x, 0, 0, 0);
        }
        let mut seen = Vec::new();
        let mut buf = [0u8; 6];
        while let UsbResponse::Ack(_) = dev.data_in(1, &mut buf) {
            seen.push(u16::from_le_bytes([buf[1], buf[2]]));
        }
        assert_eq!(seen.len(), QUEUE_LIMIT);
        assert_eq!(seen.last(), Some(&999));
    }

    #[test]
    fn hid_class_requests_and_unknown_requests() {
        let (mut dev, _) = enumerated();
        assert_eq!(
            control_out(&mut dev, setup(0x21, HID_SET_IDLE, 0, 0, 0)),
            UsbResponse::Ack(0)
        );
        assert_eq!(
            control_in(&mut dev, setup(0xa1, HID_GET_IDLE, 0, 0, 1)),
            Some(vec![0])
        );
        assert_eq!(
            control_out(&mut dev, setup(0x21, HID_SET_PROTOCOL, 0, 0, 0)),
            UsbResponse::Ack(0)
        );
        assert_eq!(
            control_in(&mut dev, setup(0xa1, HID_GET_PROTOCOL, 0, 0, 1)),
            Some(vec![0])
        );
        assert_eq!(
            control_out(&mut dev, setup(0, SET_CONFIGURATION, 7, 0, 0)),
            UsbResponse::Stall
        );
        assert_eq!(
            control_out(&mut dev, setup(0x40, 0x99, 0, 0, 0)),
            UsbResponse::Stall
        );
        assert_eq!(dev.data_in(2, &mut [0; 8]), UsbResponse::Stall);
    }

    #[test]
    fn coordinates_beyond_the_range_are_clamped() {
        assert_eq!(
            encode_report(0xffff, 0x8000, 0xff, 1),
            [7, 0xff, 0x7f, 0xff, 0x7f, 1]
        );
    }
}
