//! Bus master IDE: the per-channel BMICOM/BMISTA/BMIDTP registers behind
//! BAR4 and the walk of a physical region descriptor (PRD) table in guest
//! memory.
//!
//! Reference: Intel 82371FB/SB datasheet §2.7 (bus master IDE I/O
//! registers) and §3.5 (bus master function, PRD format). Each PRD entry is
//! two dwords: a buffer address (bit 0 ignored) and a byte count in bits
//! 15:0 (bit 0 ignored, zero meaning 64 KiB) with end-of-table in bit 31.
//!
//! Not emulated: the transfer direction bit (RWCON) is stored but the
//! command decides the direction, as in QEMU; transfers happen at once when
//! both the command and the start bit are there, so the guest never sees a
//! transfer half done; simplex mode (both channels may run at once).

use vm_memory::{Bytes, GuestAddress};

use crate::devices::GuestRam;

/// BMICOM bit 0: start/stop bus master.
const BMICOM_START: u8 = 0x01;
/// BMICOM bit 3: read/write control (1 = the bus master writes memory).
const BMICOM_RWCON: u8 = 0x08;
/// BMISTA bit 0: bus master active (read only).
const BMISTA_ACTIVE: u8 = 0x01;
/// BMISTA bit 1: DMA error (write one to clear).
const BMISTA_ERROR: u8 = 0x02;
/// BMISTA bit 2: the IDE device asserted its interrupt (write one to clear).
const BMISTA_INTERRUPT: u8 = 0x04;
/// BMISTA bits 6:5: drive 1 / drive 0 DMA capable (software scratch bits).
const BMISTA_DMA_CAPABLE: u8 = 0x60;

/// Bus master register offsets within a channel's eight ports.
const BMICOM: u64 = 0;
const BMISTA: u64 = 2;
const BMIDTP: u64 = 4;

/// The PRD table may not cross a 64 KiB boundary (§3.5.1), which also
/// bounds how many descriptors one transfer can walk (8192).
const PRD_TABLE_PAGE: u64 = 0x1_0000;
const PRD_ENTRY_SIZE: u64 = 8;
const PRD_EOT: u8 = 0x80;

/// One channel's bus master registers.
#[derive(Debug, Default)]
pub(super) struct BusMaster {
    command: u8,
    status: u8,
    prd_table: u32,
}

impl BusMaster {
    pub(super) fn read(&self, reg: u64) -> u8 {
        match reg {
            BMICOM => self.command,
            BMISTA => self.status,
            BMIDTP..=7 => (self.prd_table >> (8 * (reg - BMIDTP))) as u8,
            _ => 0,
        }
    }

    /// A byte write; returns true when it started the bus master.
    pub(super) fn write(&mut self, reg: u64, value: u8) -> bool {
        match reg {
            BMICOM => {
                let was_started = self.command & BMICOM_START != 0;
                self.command = value & (BMICOM_START | BMICOM_RWCON);
                let started = self.command & BMICOM_START != 0;
                if started && !was_started {
                    self.status |= BMISTA_ACTIVE;
                    return true;
                }
                if !started {
                    // Clearing START aborts a transfer in progress.
                    self.status &= !BMISTA_ACTIVE;
                }
            }
            BMISTA => {
                let cleared = value & (BMISTA_ERROR | BMISTA_INTERRUPT);
                self.status =
                    (self.status & !BMISTA_DMA_CAPABLE & !cleared) | (value & BMISTA_DMA_CAPABLE);
            }
            BMIDTP..=7 => {
                let shift = 8 * (reg - BMIDTP);
                let merged = (self.prd_table & !(0xff << shift)) | (u32::from(value) << shift);
                // The table is dword aligned; bits 1:0 are reserved.
                self.prd_table = merged & !3;
            }
            _ => {}
        }
        false
    }

    pub(super) fn active(&self) -> bool {
        self.status & BMISTA_ACTIVE != 0
    }

    pub(super) fn prd_table(&self) -> u64 {
        u64::from(self.prd_table)
    }

    /// The device asserted INTRQ.
    pub(super) fn interrupt(&mut self) {
        self.status |= BMISTA_INTERRUPT;
    }

    /// The transfer is over: `stop` clears Active (the table was used up,
    /// or the transfer failed), `error` sets the error bit.
    pub(super) fn finish(&mut self, stop: bool, error: bool) {
        if stop {
            self.status &= !BMISTA_ACTIVE;
        }
        if error {
            self.status |= BMISTA_ERROR;
        }
    }
}

/// Why a PRD table could not carry a transfer.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub(super) enum PrdError {
    /// End of table reached with data left.
    #[error("PRD table ended with {0} bytes still to move")]
    TooShort(usize),
    /// No end-of-table bit before the 64 KiB page ended.
    #[error("PRD table runs past its 64 KiB page at {0:#x} without an end-of-table entry")]
    Unterminated(u64),
    /// A descriptor is not in guest RAM.
    #[error("PRD descriptor at {0:#x} is outside guest RAM")]
    DescriptorOutsideRam(u64),
    /// A buffer is not in guest RAM.
    #[error("PRD buffer {addr:#x}+{len:#x} is outside guest RAM")]
    BufferOutsideRam { addr: u64, len: usize },
}

/// Moves data through a PRD table, one region after the other.
pub(super) struct PrdWalker<'a> {
    mem: &'a GuestRam,
    /// Address of the next descriptor.
    next: u64,
    /// Where the table's 64 KiB page ends.
    end: u64,
    /// The current region: where, how much is left, whether it is the last.
    addr: u64,
    left: u64,
    last: bool,
}

impl<'a> PrdWalker<'a> {
    pub(super) fn new(mem: &'a GuestRam, table: u64) -> Self {
        Self {
            mem,
            next: table,
            end: (table & !(PRD_TABLE_PAGE - 1)) + PRD_TABLE_PAGE,
            addr: 0,
            left: 0,
            last: false,
        }
    }

    /// The current region (loading the next descriptor when it is used
    /// up), limited to `want` bytes.
    fn region(&mut self, want: usize) -> Result<(u64, usize), PrdError> {
        while self.left == 0 {
            if self.last {
                return Err(PrdError::TooShort(want));
            }
            if self.next + PRD_ENTRY_SIZE > self.end {
                return Err(PrdError::Unterminated(self.next));
            }
            let mut entry = [0u8; PRD_ENTRY_SIZE as usize];
            self.mem
                .read_slice(&mut entry, GuestAddress(self.next))
                .map_err(|_| PrdError::DescriptorOutsideRam(self.next))?;
            self.next += PRD_ENTRY_SIZE;
            self.addr =
                u64::from(u32::from_le_bytes([entry[0], entry[1], entry[2], entry[3]]) & !1);
            let count = u16::from_le_bytes([entry[4], entry[5]]) & !1;
            self.left = if count == 0 {
                0x1_0000
            } else {
                u64::from(count)
            };
            self.last = entry[7] & PRD_EOT != 0;
        }
        Ok((self.addr, want.min(self.left as usize)))
    }

    fn advance(&mut self, n: usize) {
        self.addr += n as u64;
        self.left -= n as u64;
    }

    /// Device to memory.
    pub(super) fn write(&mut self, mut data: &[u8]) -> Result<(), PrdError> {
        while !data.is_empty() {
            let (addr, n) = self.region(data.len())?;
            self.mem
                .write_slice(&data[..n], GuestAddress(addr))
                .map_err(|_| PrdError::BufferOutsideRam { addr, len: n })?;
            self.advance(n);
            data = &data[n..];
        }
        Ok(())
    }

    /// Memory to device.
    pub(super) fn read(&mut self, mut data: &mut [u8]) -> Result<(), PrdError> {
        while !data.is_empty() {
            let (addr, n) = self.region(data.len())?;
            let (now, rest) = data.split_at_mut(n);
            self.mem
                .read_slice(now, GuestAddress(addr))
                .map_err(|_| PrdError::BufferOutsideRam { addr, len: n })?;
            self.advance(n);
            data = rest;
        }
        Ok(())
    }

    /// Whether the transfer used the table up exactly. If the table is
    /// longer, the bus master stays active (§2.7.2, BMISTA bit 0).
    pub(super) fn at_end(&self) -> bool {
        self.last && self.left == 0
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;

    fn prd(mem: &GuestRam, at: u64, entries: &[(u32, u16, bool)]) {
        for (i, &(addr, count, eot)) in entries.iter().enumerate() {
            let mut raw = [0u8; 8];
            raw[0..4].copy_from_slice(&addr.to_le_bytes()); // buffer address
            raw[4..6].copy_from_slice(&count.to_le_bytes()); // byte count
            raw[7] = if eot { PRD_EOT } else { 0 }; // end of table
            mem.write_slice(&raw, GuestAddress(at + 8 * i as u64))
                .unwrap();
        }
    }

    #[test]
    fn walks_regions_in_order_and_reports_the_end() {
        let mem = small_ram();
        prd(&mem, 0x1000, &[(0x2000, 4, false), (0x3000, 4, true)]);
        let mut walker = PrdWalker::new(&mem, 0x1000);
        walker.write(b"abcdefgh").unwrap();
        assert!(walker.at_end());
        let mut back = [0; 4];
        mem.read_slice(&mut back, GuestAddress(0x3000)).unwrap();
        assert_eq!(&back, b"efgh");
        let mut walker = PrdWalker::new(&mem, 0x1000);
        let mut into = [0; 6];
        walker.read(&mut into).unwrap();
        assert_eq!(&into, b"abcdef");
        assert!(!walker.at_end());
    }

    #[test]
    fn zero_count_means_64k() {
        let mem = small_ram();
        prd(&mem, 0x1000, &[(0x10000, 0, true)]);
        let mut walker = PrdWalker::new(&mem, 0x1000);
        walker.write(&vec![7; 0x10000]).unwrap();
        assert!(walker.at_end());
        assert_eq!(walker.write(&[1, 2]), Err(PrdError::TooShort(2)));
    }

    #[test]
    fn bad_tables_fail_without_touching_anything_outside_ram() {
        let mem = small_ram();
        // A buffer beyond the end of RAM.
        prd(&mem, 0x1000, &[(0xfff0_0000, 512, true)]);
        assert!(matches!(
            PrdWalker::new(&mem, 0x1000).write(&[0; 512]),
            Err(PrdError::BufferOutsideRam { .. })
        ));
        // The table itself outside RAM.
        assert_eq!(
            PrdWalker::new(&mem, 0xffff_0000).write(&[0; 2]),
            Err(PrdError::DescriptorOutsideRam(0xffff_0000))
        );
        // No end-of-table bit: the walk stops at the 64 KiB boundary.
        let page = 0x2_0000;
        for i in 0..0x2000 {
            prd(&mem, page + 8 * i, &[(0x8000, 2, false)]);
        }
        assert_eq!(
            PrdWalker::new(&mem, page).write(&vec![0; 0x10000]),
            Err(PrdError::Unterminated(page + 0x10000))
        );
    }

    #[test]
    fn registers_follow_the_datasheet() {
        let mut bm = BusMaster::default();
        bm.write(BMIDTP, 0x07);
        bm.write(BMIDTP + 1, 0x10);
        assert_eq!(bm.prd_table(), 0x1004, "dword aligned");
        assert!(bm.write(BMICOM, BMICOM_START | BMICOM_RWCON));
        assert!(bm.active());
        assert!(!bm.write(BMICOM, BMICOM_START), "already started");
        bm.interrupt();
        bm.finish(true, true);
        assert_eq!(bm.read(BMISTA), BMISTA_ERROR | BMISTA_INTERRUPT);
        bm.write(BMISTA, BMISTA_INTERRUPT | 0x60 | BMISTA_ACTIVE);
        assert_eq!(
            bm.read(BMISTA),
            BMISTA_ERROR | 0x60,
            "write one to clear; Active is read only"
        );
        bm.write(BMICOM, 0);
        assert_eq!(bm.read(BMICOM), 0);
    }
}
