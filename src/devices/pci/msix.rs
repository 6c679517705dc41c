//! MSI-X (PCI 3.0 §6.8.2): the capability, the vector table and the
//! pending bit array a function keeps in one of its memory BARs.
//!
//! [`Msix`] is the register machine: the guest programs each vector's
//! message (address and data) and mask bit through the table, enables
//! MSI-X and masks the whole function through the capability's message
//! control register, and reads the pending bits. The function fires a
//! vector with [`Msix::notify`]; a masked vector (or a masked function)
//! only sets its pending bit, and the message goes out when the guest
//! unmasks it (§6.8.2.9). Messages leave through an injected [`MsiSink`]
//! (the VMM's KVM interrupt routing; a recorder in tests).
//!
//! The layout is QEMU's (`msix_init_exclusive_bar`): a BAR of its own,
//! 4 KiB, the table at offset 0 and the PBA at 0x800, which SeaBIOS and
//! every OS accept. Not emulated: the per-vector control bits other than
//! the mask (steering tags), and 64-bit accesses to the PBA's upper half
//! beyond 64 vectors in one access.

use std::sync::Arc;

/// Capability ID of MSI-X (PCI 3.0 appendix H).
pub const PCI_CAP_ID_MSIX: u8 = 0x11;
/// Length of the capability: ID, next, message control, table, PBA.
pub const MSIX_CAP_LEN: usize = 12;
/// Offset of message control inside the capability (then the table's and
/// the PBA's offset and BAR indicator, at 4 and 8).
pub const MSIX_MESSAGE_CONTROL: usize = 2;
/// Message control bits.
pub const MSIX_ENABLE: u16 = 1 << 15;
pub const MSIX_FUNCTION_MASK: u16 = 1 << 14;

/// The BAR of its own that holds the table and PBA, as QEMU sizes it.
pub const MSIX_BAR_SIZE: u64 = 0x1000;
pub const MSIX_TABLE_OFFSET: u64 = 0;
pub const MSIX_PBA_OFFSET: u64 = 0x800;
/// Enough vectors that the table (16 bytes each) stays below the PBA.
pub const MSIX_MAX_VECTORS: u16 = (MSIX_PBA_OFFSET / ENTRY_LEN) as u16;

const ENTRY_LEN: u64 = 16;
/// Dwords of a table entry.
const ENTRY_ADDRESS_LO: u64 = 0;
const ENTRY_ADDRESS_HI: u64 = 4;
const ENTRY_DATA: u64 = 8;
const ENTRY_VECTOR_CONTROL: u64 = 12;
/// Vector control bit 0: the vector is masked.
const VECTOR_MASKED: u32 = 1;

/// One message: what the function writes, and where, to interrupt a CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MsiMessage {
    pub address: u64,
    pub data: u32,
}

/// Where a function's MSI-X messages go.
pub trait MsiSink: Send + Sync {
    /// Vector `vector` fires with `message`, its table entry's current
    /// contents (the sink may cache a route per vector and compare).
    fn send(&self, vector: u16, message: MsiMessage);
}

#[derive(Debug, Clone, Copy)]
struct Entry {
    address_lo: u32,
    address_hi: u32,
    data: u32,
    control: u32,
}

impl Entry {
    /// Every vector starts masked (§6.8.2.9).
    const RESET: Entry = Entry {
        address_lo: 0,
        address_hi: 0,
        data: 0,
        control: VECTOR_MASKED,
    };

    fn masked(&self) -> bool {
        self.control & VECTOR_MASKED != 0
    }

    fn message(&self) -> MsiMessage {
        MsiMessage {
            address: (self.address_hi as u64) << 32 | self.address_lo as u64,
            data: self.data,
        }
    }
}

/// The MSI-X state of one function.
pub struct Msix {
    entries: Vec<Entry>,
    pending: Vec<u64>,
    enabled: bool,
    function_masked: bool,
    sink: Arc<dyn MsiSink>,
}

impl Msix {
    /// `vectors` entries (1 ..= [`MSIX_MAX_VECTORS`]), all masked, MSI-X off.
    ///
    /// # Panics
    ///
    /// On a vector count out of range: a bug in the device model.
    pub fn new(vectors: u16, sink: Arc<dyn MsiSink>) -> Self {
        assert!(
            (1..=MSIX_MAX_VECTORS).contains(&vectors),
            "bad MSI-X vector count {vectors}"
        );
        Self {
            entries: vec![Entry::RESET; vectors as usize],
            pending: vec![0; (vectors as usize).div_ceil(64)],
            enabled: false,
            function_masked: false,
            sink,
        }
    }

    pub fn vectors(&self) -> u16 {
        self.entries.len() as u16
    }

    /// The capability's body (after ID and next pointer) for a table and
    /// PBA in BAR `bar`: message control with the table size, then the
    /// table and PBA offsets with the BAR indicator in their low bits.
    pub fn capability_body(vectors: u16, bar: u8) -> Vec<u8> {
        let mut body = Vec::with_capacity(MSIX_CAP_LEN - 2);
        body.extend_from_slice(&(vectors - 1).to_le_bytes());
        body.extend_from_slice(&(MSIX_TABLE_OFFSET as u32 | bar as u32).to_le_bytes());
        body.extend_from_slice(&(MSIX_PBA_OFFSET as u32 | bar as u32).to_le_bytes());
        body
    }

    /// Whether the guest enabled MSI-X (the function then must not use INTx).
    pub fn enabled(&self) -> bool {
        self.enabled
    }

    /// The message control register's writable bits changed to `control`;
    /// pending vectors that are now deliverable go out.
    pub fn set_control(&mut self, control: u16) {
        self.enabled = control & MSIX_ENABLE != 0;
        self.function_masked = control & MSIX_FUNCTION_MASK != 0;
        self.deliver_pending();
    }

    /// Fires `vector`: sends its message, or marks it pending while it or
    /// the function is masked. Vectors beyond the table are ignored (a
    /// driver's bad vector number was already refused at programming).
    pub fn notify(&mut self, vector: u16) {
        let Some(entry) = self.entries.get(vector as usize) else {
            return;
        };
        if !self.enabled {
            return;
        }
        if self.function_masked || entry.masked() {
            self.pending[vector as usize / 64] |= 1 << (vector % 64);
        } else {
            self.sink.send(vector, entry.message());
        }
    }

    /// Whether `vector`'s pending bit is set.
    pub fn pending(&self, vector: u16) -> bool {
        self.pending
            .get(vector as usize / 64)
            .is_some_and(|word| word & (1 << (vector % 64)) != 0)
    }

    fn deliver_pending(&mut self) {
        if !self.enabled || self.function_masked {
            return;
        }
        for vector in 0..self.vectors() {
            if self.pending(vector) && !self.entries[vector as usize].masked() {
                self.pending[vector as usize / 64] &= !(1 << (vector % 64));
                self.sink
                    .send(vector, self.entries[vector as usize].message());
            }
        }
    }

    /// Reads the BAR holding table and PBA at `offset`. Dword and qword
    /// accesses are what §6.8.2 allows; anything else reads as zero.
    pub fn read(&self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        if !matches!(data.len(), 4 | 8) || offset % data.len() as u64 != 0 {
            return;
        }
        for (i, chunk) in data.chunks_mut(4).enumerate() {
            let at = offset + 4 * i as u64;
            let value = self.read_dword(at);
            chunk.copy_from_slice(&value.to_le_bytes());
        }
    }

    fn read_dword(&self, at: u64) -> u32 {
        if at >= MSIX_PBA_OFFSET {
            let bit = (at - MSIX_PBA_OFFSET) * 8;
            let word = self.pending.get((bit / 64) as usize).copied().unwrap_or(0);
            return (word >> (bit % 64)) as u32;
        }
        let Some(entry) = self
            .entries
            .get(((at - MSIX_TABLE_OFFSET) / ENTRY_LEN) as usize)
        else {
            return 0;
        };
        match at % ENTRY_LEN {
            ENTRY_ADDRESS_LO => entry.address_lo,
            ENTRY_ADDRESS_HI => entry.address_hi,
            ENTRY_DATA => entry.data,
            ENTRY_VECTOR_CONTROL => entry.control,
            _ => 0, // accesses are dword-aligned
        }
    }

    /// Writes the table (the PBA is read-only). A vector the guest
    /// unmasks goes out at once if it was pending.
    pub fn write(&mut self, offset: u64, data: &[u8]) {
        if !matches!(data.len(), 4 | 8) || offset % data.len() as u64 != 0 {
            crate::guest_warn!(offset, len = data.len(), "odd MSI-X table access");
            return;
        }
        for (i, chunk) in data.chunks(4).enumerate() {
            let at = offset + 4 * i as u64;
            let mut dword = [0u8; 4];
            dword.copy_from_slice(chunk);
            self.write_dword(at, u32::from_le_bytes(dword));
        }
    }

    fn write_dword(&mut self, at: u64, value: u32) {
        if at >= MSIX_PBA_OFFSET {
            crate::guest_warn!(offset = at, "write to the read-only MSI-X pending bits");
            return;
        }
        let vector = ((at - MSIX_TABLE_OFFSET) / ENTRY_LEN) as usize;
        let Some(entry) = self.entries.get_mut(vector) else {
            return;
        };
        match at % ENTRY_LEN {
            // Bits 1:0 of the address are reserved as zero (dword aligned).
            ENTRY_ADDRESS_LO => entry.address_lo = value & !3,
            ENTRY_ADDRESS_HI => entry.address_hi = value,
            ENTRY_DATA => entry.data = value,
            ENTRY_VECTOR_CONTROL => {
                entry.control = value & VECTOR_MASKED;
                self.deliver_pending();
            }
            _ => {} // accesses are dword-aligned
        }
    }
}

/// A [`MsiSink`] for tests: records every message sent.
#[derive(Default)]
pub struct RecordingMsi {
    sent: std::sync::Mutex<Vec<(u16, MsiMessage)>>,
}

impl RecordingMsi {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// What was sent since the last call.
    pub fn take(&self) -> Vec<(u16, MsiMessage)> {
        std::mem::take(&mut *self.sent.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

impl MsiSink for RecordingMsi {
    fn send(&self, vector: u16, message: MsiMessage) {
        self.sent
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((vector, message));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write32(msix: &mut Msix, offset: u64, value: u32) {
        msix.write(offset, &value.to_le_bytes());
    }

    fn read32(msix: &Msix, offset: u64) -> u32 {
        let mut data = [0; 4];
        msix.read(offset, &mut data);
        u32::from_le_bytes(data)
    }

    /// Programs vector `v` as Linux does: address, data, then unmask.
    fn program(msix: &mut Msix, v: u16, address: u64, data: u32) {
        let at = v as u64 * ENTRY_LEN;
        write32(msix, at, address as u32);
        write32(msix, at + 4, (address >> 32) as u32);
        write32(msix, at + 8, data);
        write32(msix, at + 12, 0);
    }

    #[test]
    fn capability_names_the_bar_and_table_size() {
        let body = Msix::capability_body(3, 1);
        assert_eq!(body.len(), MSIX_CAP_LEN - 2);
        assert_eq!(u16::from_le_bytes([body[0], body[1]]), 2, "N - 1");
        assert_eq!(u32::from_le_bytes(body[2..6].try_into().unwrap()), 1);
        assert_eq!(
            u32::from_le_bytes(body[6..10].try_into().unwrap()),
            0x801,
            "PBA at 0x800 in BAR 1"
        );
    }

    #[test]
    fn entries_start_masked_and_read_back() {
        let sink = RecordingMsi::new();
        let mut msix = Msix::new(3, sink.clone());
        assert_eq!(read32(&msix, 12), 1);
        assert_eq!(read32(&msix, 2 * 16 + 12), 1);
        program(&mut msix, 1, 0xfee0_1003, 0x4041);
        assert_eq!(read32(&msix, 16), 0xfee0_1000, "low address bits are zero");
        assert_eq!(read32(&msix, 24), 0x4041);
        assert_eq!(read32(&msix, 28), 0);
        // Past the table: reads zero, writes vanish.
        write32(&mut msix, 3 * 16, 7);
        assert_eq!(read32(&msix, 3 * 16), 0);
        // A qword read of the address.
        let mut q = [0; 8];
        msix.read(16, &mut q);
        assert_eq!(u64::from_le_bytes(q), 0xfee0_1000);
        // Byte accesses are not allowed.
        let mut b = [0xaa; 1];
        msix.read(16, &mut b);
        assert_eq!(b, [0]);
    }

    #[test]
    fn nothing_is_sent_until_enabled() {
        let sink = RecordingMsi::new();
        let mut msix = Msix::new(2, sink.clone());
        program(&mut msix, 0, 0xfee0_0000, 0x30);
        msix.notify(0);
        assert!(sink.take().is_empty());
        assert!(!msix.pending(0), "disabled MSI-X leaves no pending bit");
        msix.set_control(MSIX_ENABLE);
        msix.notify(0);
        msix.notify(5); // no such vector
        assert_eq!(
            sink.take(),
            [(
                0,
                MsiMessage {
                    address: 0xfee0_0000,
                    data: 0x30
                }
            )]
        );
    }

    #[test]
    fn a_masked_vector_is_pending_until_unmasked() {
        let sink = RecordingMsi::new();
        let mut msix = Msix::new(2, sink.clone());
        msix.set_control(MSIX_ENABLE);
        program(&mut msix, 1, 0xfee0_0000, 0x31);
        write32(&mut msix, 16 + 12, 1); // mask vector 1
        msix.notify(1);
        msix.notify(1);
        assert!(sink.take().is_empty());
        assert!(msix.pending(1));
        assert_eq!(read32(&msix, MSIX_PBA_OFFSET), 0b10);
        // The PBA is read-only.
        write32(&mut msix, MSIX_PBA_OFFSET, 0);
        assert_eq!(read32(&msix, MSIX_PBA_OFFSET), 0b10);
        write32(&mut msix, 16 + 12, 0);
        assert_eq!(sink.take().len(), 1, "one message for both notifications");
        assert_eq!(read32(&msix, MSIX_PBA_OFFSET), 0);
    }

    #[test]
    fn the_function_mask_holds_every_vector() {
        let sink = RecordingMsi::new();
        let mut msix = Msix::new(2, sink.clone());
        program(&mut msix, 0, 0xfee0_0000, 0x30);
        program(&mut msix, 1, 0xfee0_0000, 0x31);
        msix.set_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        msix.notify(0);
        msix.notify(1);
        assert!(sink.take().is_empty());
        assert_eq!(read32(&msix, MSIX_PBA_OFFSET), 0b11);
        // Unmasking one vector does not get past the function mask.
        write32(&mut msix, 12, 0);
        assert!(sink.take().is_empty());
        msix.set_control(MSIX_ENABLE);
        let sent: Vec<u16> = sink.take().into_iter().map(|(v, _)| v).collect();
        assert_eq!(sent, [0, 1]);
        assert_eq!(read32(&msix, MSIX_PBA_OFFSET), 0);
    }

    #[test]
    fn many_vectors_fit_below_the_pba() {
        let sink = RecordingMsi::new();
        let mut msix = Msix::new(MSIX_MAX_VECTORS, sink.clone());
        msix.set_control(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        msix.notify(MSIX_MAX_VECTORS - 1);
        // Vector 127's bit is bit 31 of the PBA's fourth dword.
        assert_eq!(read32(&msix, MSIX_PBA_OFFSET + 12), 1 << 31);
    }
}
