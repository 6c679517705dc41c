//! ATA hard disks: the general and 48-bit address feature sets of
//! ATA/ATAPI-6 (T13 1410D) chapter 8, with PIO (§9.7, §9.8) and DMA (§9.10)
//! data transfer, LBA28, LBA48 and CHS addressing, 512-byte sectors.
//!
//! Not emulated: SMART, security, host protected area, power management
//! beyond accepting the commands, queued DMA, READ LONG/WRITE LONG, and
//! DEVICE RESET (which ATA-6 §8.10 reserves for packet devices; disks abort
//! it and are reset with SRST). Write caching is reported as the guest sets
//! it; data always goes straight to the backend, FLUSH CACHE flushes it.

use super::bmdma::PrdWalker;
use super::{
    serial_for, DmaOp, DmaOutcome, IdentifyData, Op, TransferModes, UnitState, DEVICE_LBA,
    ERROR_IDNF, ERROR_UNC, FIRMWARE_REVISION,
};
use crate::guest_warn;
use crate::storage::BlockBackend;

const SECTOR_SIZE: u64 = 512;
/// Most sectors per DRQ block in READ/WRITE MULTIPLE (IDENTIFY word 47).
const MAX_MULTIPLE: u64 = 16;
/// Sectors moved between the backend and guest memory at a time in DMA.
const DMA_CHUNK_SECTORS: u64 = 128;
/// The largest CHS geometry IDENTIFY describes (ATA-6 §6.2.1).
const MAX_CYLINDERS: u64 = 16383;
const DEFAULT_HEADS: u16 = 16;
const DEFAULT_SECTORS_PER_TRACK: u16 = 63;
/// Addressable sectors IDENTIFY words 60-61 can report.
const MAX_LBA28_SECTORS: u64 = 0x0fff_ffff;

const MODEL: &str = "VIREO HARDDISK";

// Command codes (ATA-6 Table B.2).
/// Packet-device commands (ATAPI), aborted by disks.
const CMD_IDENTIFY_PACKET_DEVICE: u8 = 0xa1;
const CMD_PACKET: u8 = 0xa0;
const CMD_RECALIBRATE_FIRST: u8 = 0x10;
const CMD_RECALIBRATE_LAST: u8 = 0x1f;
const CMD_READ_SECTORS: u8 = 0x20;
const CMD_READ_SECTORS_NO_RETRY: u8 = 0x21;
const CMD_READ_SECTORS_EXT: u8 = 0x24;
const CMD_READ_DMA_EXT: u8 = 0x25;
const CMD_READ_MULTIPLE_EXT: u8 = 0x29;
const CMD_WRITE_SECTORS: u8 = 0x30;
const CMD_WRITE_SECTORS_NO_RETRY: u8 = 0x31;
const CMD_WRITE_SECTORS_EXT: u8 = 0x34;
const CMD_WRITE_DMA_EXT: u8 = 0x35;
const CMD_WRITE_MULTIPLE_EXT: u8 = 0x39;
const CMD_READ_VERIFY_SECTORS: u8 = 0x40;
const CMD_READ_VERIFY_SECTORS_NO_RETRY: u8 = 0x41;
const CMD_READ_VERIFY_SECTORS_EXT: u8 = 0x42;
const CMD_SEEK_FIRST: u8 = 0x70;
const CMD_SEEK_LAST: u8 = 0x7f;
const CMD_INITIALIZE_DEVICE_PARAMETERS: u8 = 0x91;
const CMD_READ_MULTIPLE: u8 = 0xc4;
const CMD_WRITE_MULTIPLE: u8 = 0xc5;
const CMD_SET_MULTIPLE_MODE: u8 = 0xc6;
const CMD_READ_DMA: u8 = 0xc8;
const CMD_READ_DMA_NO_RETRY: u8 = 0xc9;
const CMD_WRITE_DMA: u8 = 0xca;
const CMD_WRITE_DMA_NO_RETRY: u8 = 0xcb;
const CMD_STANDBY_IMMEDIATE: u8 = 0xe0;
const CMD_IDLE_IMMEDIATE: u8 = 0xe1;
const CMD_STANDBY: u8 = 0xe2;
const CMD_IDLE: u8 = 0xe3;
const CMD_CHECK_POWER_MODE: u8 = 0xe5;
const CMD_SLEEP: u8 = 0xe6;
const CMD_FLUSH_CACHE: u8 = 0xe7;
const CMD_FLUSH_CACHE_EXT: u8 = 0xea;
const CMD_IDENTIFY_DEVICE: u8 = 0xec;
const CMD_SET_FEATURES: u8 = 0xef;

// SET FEATURES subcommands (ATA-6 Table 44).
const FEATURE_ENABLE_WRITE_CACHE: u8 = 0x02;
const FEATURE_SET_TRANSFER_MODE: u8 = 0x03;
const FEATURE_DISABLE_READ_LOOKAHEAD: u8 = 0x55;
const FEATURE_DISABLE_REVERT_TO_DEFAULTS: u8 = 0x66;
const FEATURE_DISABLE_WRITE_CACHE: u8 = 0x82;
const FEATURE_ENABLE_READ_LOOKAHEAD: u8 = 0xaa;
const FEATURE_ENABLE_REVERT_TO_DEFAULTS: u8 = 0xcc;

/// CHECK POWER MODE's answer: active or idle.
const POWER_MODE_ACTIVE: u8 = 0xff;

/// A cylinder/head/sector geometry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Chs {
    cylinders: u16,
    heads: u16,
    sectors: u16,
}

impl Chs {
    fn capacity(&self) -> u64 {
        u64::from(self.cylinders) * u64::from(self.heads) * u64::from(self.sectors)
    }
}

/// An ATA disk on a [`BlockBackend`].
pub(super) struct Disk {
    backend: Box<dyn BlockBackend>,
    /// Whole 512-byte sectors; a trailing partial sector is not addressable.
    sectors: u64,
    /// 0 master, 1 slave (IDENTIFY word 93).
    unit: usize,
    default_chs: Chs,
    /// As set by INITIALIZE DEVICE PARAMETERS.
    current_chs: Chs,
    /// Sectors per block for READ/WRITE MULTIPLE; 0 = not enabled.
    multiple: u64,
    write_cache: bool,
    modes: TransferModes,
    serial: String,
}

impl Disk {
    pub(super) fn new(backend: Box<dyn BlockBackend>, unit: usize) -> Self {
        let sectors = backend.size() / SECTOR_SIZE;
        let chs = Chs {
            cylinders: (sectors / u64::from(DEFAULT_HEADS * DEFAULT_SECTORS_PER_TRACK))
                .clamp(1, MAX_CYLINDERS) as u16,
            heads: DEFAULT_HEADS,
            sectors: DEFAULT_SECTORS_PER_TRACK,
        };
        let serial = serial_for(&backend.identity());
        Self {
            backend,
            sectors,
            unit,
            default_chs: chs,
            current_chs: chs,
            multiple: 0,
            write_cache: true,
            modes: TransferModes::default(),
            serial,
        }
    }

    /// Executes an ATA command written to the Command register.
    pub(super) fn command(&mut self, st: &mut UnitState, command: u8) {
        match command {
            CMD_IDENTIFY_DEVICE => st.start_in(self.identify(), Op::SingleIn),
            CMD_READ_SECTORS | CMD_READ_SECTORS_NO_RETRY => self.start_pio(st, false, false, 1),
            CMD_READ_SECTORS_EXT => self.start_pio(st, true, false, 1),
            CMD_WRITE_SECTORS | CMD_WRITE_SECTORS_NO_RETRY => self.start_pio(st, false, true, 1),
            CMD_WRITE_SECTORS_EXT => self.start_pio(st, true, true, 1),
            CMD_READ_MULTIPLE
            | CMD_READ_MULTIPLE_EXT
            | CMD_WRITE_MULTIPLE
            | CMD_WRITE_MULTIPLE_EXT => {
                if self.multiple == 0 {
                    guest_warn!(command, "IDE: READ/WRITE MULTIPLE before SET MULTIPLE MODE");
                    return st.abort();
                }
                let lba48 = matches!(command, CMD_READ_MULTIPLE_EXT | CMD_WRITE_MULTIPLE_EXT);
                let write = matches!(command, CMD_WRITE_MULTIPLE | CMD_WRITE_MULTIPLE_EXT);
                self.start_pio(st, lba48, write, self.multiple);
            }
            CMD_READ_DMA | CMD_READ_DMA_NO_RETRY => self.start_dma(st, false, false),
            CMD_READ_DMA_EXT => self.start_dma(st, true, false),
            CMD_WRITE_DMA | CMD_WRITE_DMA_NO_RETRY => self.start_dma(st, false, true),
            CMD_WRITE_DMA_EXT => self.start_dma(st, true, true),
            CMD_READ_VERIFY_SECTORS
            | CMD_READ_VERIFY_SECTORS_NO_RETRY
            | CMD_READ_VERIFY_SECTORS_EXT => {
                // The medium is always readable; only the range is checked.
                let lba48 = command == CMD_READ_VERIFY_SECTORS_EXT;
                if self.range(st, lba48).is_some() {
                    st.complete();
                }
            }
            // Packet-device commands: firmware sends them to every drive to
            // tell disks from CD-ROMs; a disk aborts them (ATA-6 §8.15),
            // which is an answer, not a guest error worth a warning.
            CMD_IDENTIFY_PACKET_DEVICE | CMD_PACKET => {
                tracing::debug!(command, "IDE: packet command to a disk, aborted");
                st.abort();
            }
            CMD_FLUSH_CACHE | CMD_FLUSH_CACHE_EXT => match self.backend.flush() {
                Ok(()) => st.complete(),
                Err(error) => {
                    tracing::error!(%error, disk = %self.backend.identity(), "IDE: flush failed");
                    st.abort();
                }
            },
            CMD_SET_FEATURES => self.set_features(st),
            CMD_SET_MULTIPLE_MODE => {
                let count = u64::from(st.tf.count);
                // Zero disables; otherwise a power of two up to word 47's limit.
                if count == 0 || (count.is_power_of_two() && count <= MAX_MULTIPLE) {
                    self.multiple = count;
                    st.complete();
                } else {
                    guest_warn!(count, "IDE: unsupported SET MULTIPLE MODE block size");
                    st.abort();
                }
            }
            CMD_INITIALIZE_DEVICE_PARAMETERS => {
                let heads = u16::from(st.tf.device & 0x0f) + 1;
                let sectors = u16::from(st.tf.count);
                if sectors == 0 {
                    return st.abort();
                }
                let cylinders = (self.sectors / (u64::from(heads) * u64::from(sectors)))
                    .min(u64::from(u16::MAX));
                self.current_chs = Chs {
                    cylinders: cylinders as u16,
                    heads,
                    sectors,
                };
                st.complete();
            }
            CMD_CHECK_POWER_MODE => {
                st.complete();
                st.tf.count = POWER_MODE_ACTIVE;
            }
            CMD_RECALIBRATE_FIRST..=CMD_RECALIBRATE_LAST
            | CMD_SEEK_FIRST..=CMD_SEEK_LAST
            | CMD_STANDBY_IMMEDIATE
            | CMD_IDLE_IMMEDIATE
            | CMD_STANDBY
            | CMD_IDLE
            | CMD_SLEEP => st.complete(),
            _ => {
                guest_warn!(command, "IDE: unsupported ATA command, aborted");
                st.abort();
            }
        }
    }

    fn set_features(&mut self, st: &mut UnitState) {
        let ok = match st.tf.feature {
            FEATURE_ENABLE_WRITE_CACHE => {
                self.write_cache = true;
                true
            }
            FEATURE_DISABLE_WRITE_CACHE => {
                self.write_cache = false;
                true
            }
            FEATURE_SET_TRANSFER_MODE => self.modes.select(st.tf.count),
            FEATURE_ENABLE_READ_LOOKAHEAD
            | FEATURE_DISABLE_READ_LOOKAHEAD
            | FEATURE_ENABLE_REVERT_TO_DEFAULTS
            | FEATURE_DISABLE_REVERT_TO_DEFAULTS => true,
            _ => false,
        };
        if ok {
            st.complete();
        } else {
            guest_warn!(
                feature = st.tf.feature,
                count = st.tf.count,
                "IDE: unsupported SET FEATURES subcommand"
            );
            st.abort();
        }
    }

    /// The command's starting sector and count, checked against the disk;
    /// on failure the command has been ended with IDNF.
    fn range(&self, st: &mut UnitState, lba48: bool) -> Option<(u64, u64)> {
        let count = st.tf.sector_count(lba48);
        let lba = if lba48 {
            Some(st.tf.lba48())
        } else if st.tf.device & DEVICE_LBA != 0 {
            Some(st.tf.lba28())
        } else {
            self.chs_to_lba(st)
        };
        match lba {
            Some(lba)
                if lba
                    .checked_add(count)
                    .is_some_and(|end| end <= self.sectors) =>
            {
                Some((lba, count))
            }
            _ => {
                guest_warn!(
                    ?lba,
                    count,
                    sectors = self.sectors,
                    "IDE: sector address out of range"
                );
                st.fail(ERROR_IDNF);
                None
            }
        }
    }

    /// CHS in the current translation (ATA-6 §6.2.1): sectors count from 1.
    fn chs_to_lba(&self, st: &UnitState) -> Option<u64> {
        let cylinder = u64::from(st.tf.lba_high) << 8 | u64::from(st.tf.lba_mid);
        let head = u64::from(st.tf.device & 0x0f);
        let sector = u64::from(st.tf.lba_low);
        let geometry = self.current_chs;
        let valid = sector >= 1
            && sector <= u64::from(geometry.sectors)
            && head < u64::from(geometry.heads)
            && cylinder < u64::from(geometry.cylinders);
        valid.then(|| {
            (cylinder * u64::from(geometry.heads) + head) * u64::from(geometry.sectors) + sector - 1
        })
    }

    fn start_pio(&mut self, st: &mut UnitState, lba48: bool, write: bool, block: u64) {
        let Some((lba, count)) = self.range(st, lba48) else {
            return;
        };
        if write {
            if self.backend.read_only() {
                guest_warn!("IDE: write to a read-only disk");
                return st.abort();
            }
            let n = block.min(count);
            let op = Op::WritePio {
                lba,
                remaining: count,
                block,
                lba48,
            };
            st.start_out((n * SECTOR_SIZE) as usize, op, false);
        } else {
            self.read_block(st, lba, count, block, lba48);
        }
    }

    /// Loads the next data-in block of a PIO read and interrupts.
    fn read_block(
        &mut self,
        st: &mut UnitState,
        lba: u64,
        remaining: u64,
        block: u64,
        lba48: bool,
    ) {
        let n = block.min(remaining);
        let mut data = vec![0; (n * SECTOR_SIZE) as usize];
        if let Err(error) = self.backend.read_at(&mut data, lba * SECTOR_SIZE) {
            tracing::error!(%error, lba, disk = %self.backend.identity(), "IDE: read failed");
            st.tf.set_lba(lba, lba48);
            return st.fail(ERROR_UNC);
        }
        st.tf.set_lba(lba + n - 1, lba48);
        let op = Op::ReadPio {
            lba: lba + n,
            remaining: remaining - n,
            block,
            lba48,
        };
        st.start_in(data, op);
    }

    /// The host has moved a whole DRQ block.
    pub(super) fn end_of_block(&mut self, st: &mut UnitState, op: Op, data: Vec<u8>) {
        match op {
            Op::ReadPio {
                lba,
                remaining,
                block,
                lba48,
            } => {
                if remaining == 0 {
                    st.finish_in();
                } else {
                    self.read_block(st, lba, remaining, block, lba48);
                }
            }
            Op::WritePio {
                lba,
                remaining,
                block,
                lba48,
            } => {
                let n = data.len() as u64 / SECTOR_SIZE;
                if let Err(error) = self.backend.write_at(&data, lba * SECTOR_SIZE) {
                    tracing::error!(%error, lba, disk = %self.backend.identity(), "IDE: write failed");
                    st.tf.set_lba(lba, lba48);
                    return st.abort();
                }
                st.tf.set_lba(lba + n - 1, lba48);
                let remaining = remaining - n;
                if remaining == 0 {
                    st.complete();
                } else {
                    let next = Op::WritePio {
                        lba: lba + n,
                        remaining,
                        block,
                        lba48,
                    };
                    st.start_out((block.min(remaining) * SECTOR_SIZE) as usize, next, true);
                }
            }
            _ => st.finish_in(),
        }
    }

    fn start_dma(&mut self, st: &mut UnitState, lba48: bool, write: bool) {
        let Some((lba, count)) = self.range(st, lba48) else {
            return;
        };
        if write && self.backend.read_only() {
            guest_warn!("IDE: DMA write to a read-only disk");
            return st.abort();
        }
        st.start_dma(DmaOp::Ata { lba, count, write });
    }

    /// Moves a READ/WRITE DMA command's data through the PRD table.
    pub(super) fn run_dma(
        &mut self,
        st: &mut UnitState,
        op: DmaOp,
        prd: &mut PrdWalker,
    ) -> DmaOutcome {
        let DmaOp::Ata { lba, count, write } = op else {
            st.abort();
            return DmaOutcome::DeviceError;
        };
        let mut buffer = vec![0; (DMA_CHUNK_SECTORS.min(count) * SECTOR_SIZE) as usize];
        let mut done = 0;
        while done < count {
            let n = DMA_CHUNK_SECTORS.min(count - done);
            let chunk = &mut buffer[..(n * SECTOR_SIZE) as usize];
            let offset = (lba + done) * SECTOR_SIZE;
            if write {
                if let Err(error) = prd.read(chunk) {
                    guest_warn!(%error, "IDE: bad PRD table for WRITE DMA");
                    st.abort();
                    return DmaOutcome::BadTable;
                }
                if let Err(error) = self.backend.write_at(chunk, offset) {
                    tracing::error!(%error, disk = %self.backend.identity(), "IDE: DMA write failed");
                    st.abort();
                    return DmaOutcome::DeviceError;
                }
            } else {
                if let Err(error) = self.backend.read_at(chunk, offset) {
                    tracing::error!(%error, disk = %self.backend.identity(), "IDE: DMA read failed");
                    st.fail(ERROR_UNC);
                    return DmaOutcome::DeviceError;
                }
                if let Err(error) = prd.write(chunk) {
                    guest_warn!(%error, "IDE: bad PRD table for READ DMA");
                    st.abort();
                    return DmaOutcome::BadTable;
                }
            }
            done += n;
        }
        st.complete();
        DmaOutcome::Done
    }

    /// IDENTIFY DEVICE data (ATA-6 §8.15, Table 19).
    fn identify(&self) -> Vec<u8> {
        let mut id = IdentifyData::new();
        let (default, current) = (self.default_chs, self.current_chs);
        id.set(0, 0x0040); // fixed (non-removable) ATA device
        id.set(1, default.cylinders);
        id.set(3, default.heads);
        id.set(6, default.sectors);
        id.set_string(10, 10, &self.serial);
        id.set_string(23, 4, FIRMWARE_REVISION);
        id.set_string(27, 20, MODEL);
        id.set(47, 0x8000 | MAX_MULTIPLE as u16);
        // Capabilities: IORDY supported and disableable, LBA, DMA.
        id.set(49, 1 << 11 | 1 << 10 | 1 << 9 | 1 << 8);
        id.set(50, 0x4000);
        id.set(51, 0x0200); // PIO timing mode 2 (obsolete field)
        id.set(53, 0x0007); // words 54-58, 64-70 and 88 are valid
        id.set(54, current.cylinders);
        id.set(55, current.heads);
        id.set(56, current.sectors);
        id.set_u32(57, current.capacity().min(u64::from(u32::MAX)) as u32);
        id.set(
            59,
            if self.multiple > 0 {
                0x0100 | self.multiple as u16
            } else {
                0
            },
        );
        id.set_u32(60, self.sectors.min(MAX_LBA28_SECTORS) as u32);
        id.set(63, self.modes.word63());
        id.set(64, 0x0003); // PIO modes 3 and 4
        for word in 65..=68 {
            id.set(word, 120); // minimum cycle times, ns
        }
        id.set(80, 0x007e); // ATA-1 through ATA-6
                            // Supported: NOP, write cache; 48-bit, FLUSH CACHE (EXT).
        id.set(82, 1 << 14 | 1 << 5);
        id.set(83, 0x4000 | 1 << 13 | 1 << 12 | 1 << 10);
        id.set(84, 0x4000);
        id.set(85, 1 << 14 | u16::from(self.write_cache) << 5);
        id.set(86, 1 << 13 | 1 << 12 | 1 << 10);
        id.set(87, 0x4000);
        id.set(88, self.modes.word88());
        // Hardware reset result: valid, 80-conductor cable detected (so
        // guests may use UDMA modes above 2), this device's position.
        id.set(93, 0x6000 | if self.unit == 0 { 0x0001 } else { 0x0100 });
        id.set_u64(100, self.sectors);
        id.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::*;
    use crate::devices::pci::PciDevice;
    use vm_memory::{Bytes, GuestAddress};

    const MIB: u64 = 1 << 20;

    #[test]
    fn seabios_probe_finds_the_disk_and_not_the_absent_slave() {
        let rig = Rig::new();
        let disk = rig.attach_disk(0, 0, 8 * MIB);
        // ata_detect: select each position, check the registers latch.
        for (dh, present) in [(0xa0u8, true), (0xb0, false)] {
            rig.outb(0x1f6, dh);
            rig.outb(0x1f2, 0x55);
            rig.outb(0x1f3, 0xaa);
            assert_eq!(
                (rig.inb(0x1f2), rig.inb(0x1f3), rig.inb(0x1f6)),
                (0x55, 0xaa, dh)
            );
            assert_eq!(rig.inb(0x1f7) != 0, present, "status of {dh:#x}");
        }
        // ata_reset: SRST with nIEN, then release.
        rig.outb(0x1f6, 0xa0);
        rig.outb(0x3f6, 0x0e);
        assert_eq!(rig.inb(0x3f6) & STATUS_BSY, STATUS_BSY);
        rig.outb(0x3f6, 0x0a);
        assert_eq!(rig.inb(0x1f7), 0x50, "DRDY and DSC, not busy");
        assert_eq!(rig.signature(0x1f0), [1, 1, 0, 0]);
        assert_eq!(rig.inb(0x1f1), 1, "diagnostic code");
        // The absent slave: nothing answers IDENTIFY PACKET DEVICE.
        rig.outb(0x1f6, 0xb0);
        rig.outb(0x1f7, 0xa1);
        assert_eq!(rig.inb(0x1f7), 0);
        // The disk aborts IDENTIFY PACKET DEVICE...
        rig.outb(0x1f6, 0xa0);
        rig.outb(0x1f7, 0xa1);
        assert_eq!(rig.inb(0x1f7), STATUS_DRDY | STATUS_ERR);
        assert_eq!(rig.inb(0x1f1), ERROR_ABRT);
        // ...and answers IDENTIFY DEVICE.
        rig.outb(0x1f7, 0xec);
        assert_eq!(rig.inb(0x1f7) & STATUS_DRQ, STATUS_DRQ);
        let id = rig.insw(0x1f0, 512);
        assert_eq!(rig.inb(0x1f7), 0x50, "no DRQ after the block");
        let word = |w: usize| u16::from_le_bytes([id[2 * w], id[2 * w + 1]]);
        assert_eq!(ata_string(&id[54..94]), "VIREO HARDDISK");
        assert_eq!(
            ata_string(&id[20..40]),
            serial_for(&disk.path().display().to_string())
        );
        assert_eq!(word(0), 0x0040);
        assert_eq!(word(49) & 0x0300, 0x0300, "LBA and DMA");
        assert_eq!(u32::from(word(60)) | u32::from(word(61)) << 16, 16384);
        assert_eq!(u64::from(word(100)) | u64::from(word(101)) << 16, 16384);
        assert_eq!(word(83) & (1 << 10), 1 << 10, "48-bit addressing");
        assert_eq!((word(1), word(3), word(6)), (16, 16, 63));
        assert_eq!(word(88) & 0x3f, 0x3f);
        assert_eq!(
            id.iter().fold(0u8, |a, b| a.wrapping_add(*b)),
            0,
            "checksum"
        );
    }

    #[test]
    fn pio_read_lba28_and_chs_are_byte_exact() {
        let rig = Rig::new();
        let disk = rig.attach_disk(0, 0, MIB);
        rig.ata_command(0x1f0, 0xe0, 0x20, 3, 100); // LBA 100, 3 sectors
        let mut irqs = rig.irq0.rising_edges();
        assert_eq!(irqs, 1, "first block interrupts");
        let mut data = Vec::new();
        for block in 0..3 {
            assert_eq!(rig.inb(0x3f6) & STATUS_DRQ, STATUS_DRQ, "block {block}");
            assert_eq!(rig.inb(0x1f7) & STATUS_DRQ, STATUS_DRQ);
            data.extend(rig.insw(0x1f0, 512));
            if block < 2 {
                irqs += 1;
                assert_eq!(rig.irq0.rising_edges(), irqs, "every block interrupts");
            }
        }
        assert_eq!(
            rig.irq0.rising_edges(),
            irqs,
            "no interrupt after the last block"
        );
        assert_eq!(rig.inb(0x1f7), 0x50);
        assert_eq!(data, pattern(100 * 512, 3 * 512));
        assert_eq!(rig.inb(0x1f3), 102, "last sector read");
        // CHS 0/1/1 with 16 heads, 63 sectors: LBA 63.
        rig.outb(0x1f6, 0xa1);
        rig.outb(0x1f2, 1);
        rig.outb(0x1f3, 1);
        rig.outb(0x1f4, 0);
        rig.outb(0x1f5, 0);
        rig.outb(0x1f7, 0x20);
        assert_eq!(
            rig.insl(0x1f0, 512),
            pattern(63 * 512, 512),
            "32-bit data port"
        );
        // Sector 0 does not exist in CHS.
        rig.outb(0x1f3, 0);
        rig.outb(0x1f7, 0x20);
        assert_eq!(rig.inb(0x1f7), STATUS_DRDY | STATUS_ERR);
        assert_eq!(rig.inb(0x1f1), ERROR_IDNF);
        drop(disk);
    }

    #[test]
    fn pio_write_lba48_and_read_back() {
        let rig = Rig::new();
        let disk = rig.attach_disk(0, 1, MIB);
        rig.outb(0x1f6, 0xf0); // slave, LBA
                               // 48-bit: high halves first, then low.
        for (port, high, low) in [
            (0x1f2, 0, 2),
            (0x1f3, 0, 0x10),
            (0x1f4, 0, 0),
            (0x1f5, 0, 0),
        ] {
            rig.outb(port, high);
            rig.outb(port, low);
        }
        rig.outb(0x1f7, 0x34); // WRITE SECTORS EXT
        assert_eq!(rig.inb(0x1f7), 0x58, "DRQ for the first block");
        assert_eq!(
            rig.irq0.rising_edges(),
            0,
            "no interrupt before the first block"
        );
        let payload: Vec<u8> = (0..1024).map(|i| (i * 7 + 3) as u8).collect();
        // One long access per block, as a `rep outsw` the VMM hands over whole.
        rig.outs(0x1f0, &payload[..512]);
        assert!(rig.irq0.level(), "after the first block");
        assert_eq!(rig.inb(0x1f7), 0x58, "DRQ for the second block");
        rig.outs(0x1f0, &payload[512..]);
        assert_eq!(rig.irq0.rising_edges(), 2, "after the last block too");
        assert_eq!(rig.inb(0x1f7), 0x50);
        let on_disk = std::fs::read(disk.path()).unwrap();
        assert_eq!(&on_disk[0x10 * 512..0x12 * 512], &payload[..]);
        assert_eq!(
            &on_disk[0x12 * 512..0x13 * 512],
            &pattern(0x12 * 512, 512)[..]
        );
        // READ SECTORS EXT of the same.
        for (port, high, low) in [
            (0x1f2, 0, 2),
            (0x1f3, 0, 0x10),
            (0x1f4, 0, 0),
            (0x1f5, 0, 0),
        ] {
            rig.outb(port, high);
            rig.outb(port, low);
        }
        rig.outb(0x1f7, 0x24);
        assert_eq!(rig.insw(0x1f0, 1024), payload);
        // HOB reads back the high halves.
        rig.outb(0x3f6, 0x80);
        assert_eq!(rig.inb(0x1f2), 0);
    }

    #[test]
    fn multiple_mode_transfers_blocks_of_sectors() {
        let rig = Rig::new();
        let _disk = rig.attach_disk(0, 0, MIB);
        rig.ata_command(0x1f0, 0xe0, 0xc4, 4, 0);
        assert_eq!(rig.inb(0x1f1), ERROR_ABRT, "not enabled yet");
        rig.outb(0x1f2, 3);
        rig.outb(0x1f7, 0xc6);
        assert_eq!(
            rig.inb(0x1f7),
            STATUS_DRDY | STATUS_ERR,
            "3 is not a power of two"
        );
        rig.outb(0x1f2, 4);
        rig.outb(0x1f7, 0xc6);
        assert_eq!(rig.inb(0x1f7), 0x50);
        let before = rig.irq0.rising_edges();
        rig.ata_command(0x1f0, 0xe0, 0xc4, 6, 8); // 6 sectors: blocks of 4 and 2
        assert_eq!(rig.inb(0x1f7), 0x58);
        let mut data = rig.ins(0x1f0, 4 * 512);
        assert_eq!(rig.inb(0x1f7), 0x58);
        data.extend(rig.ins(0x1f0, 2 * 512));
        assert_eq!(data, pattern(8 * 512, 6 * 512));
        assert_eq!(
            rig.irq0.rising_edges() - before,
            2,
            "one interrupt per block"
        );
        // A `rep insw` spanning both blocks in one access works too.
        rig.ata_command(0x1f0, 0xe0, 0xc4, 6, 8);
        assert_eq!(rig.ins(0x1f0, 6 * 512), pattern(8 * 512, 6 * 512));
        assert_eq!(rig.inb(0x1f7), 0x50);
        rig.ata_command(0x1f0, 0xe0, 0xec, 0, 0);
        let id = rig.insw(0x1f0, 512);
        assert_eq!(u16::from_le_bytes([id[118], id[119]]), 0x0104, "word 59");
    }

    #[test]
    fn interrupts_follow_nien_and_status_reads() {
        let rig = Rig::new();
        let _disk = rig.attach_disk(0, 0, MIB);
        rig.ata_command(0x1f0, 0xe0, 0xe7, 0, 0); // FLUSH CACHE
        assert!(rig.irq0.level());
        assert_eq!(rig.inb(0x3f6), 0x50, "alternate status");
        assert!(rig.irq0.level(), "alternate status leaves INTRQ alone");
        assert_eq!(rig.inb(0x1f7), 0x50);
        assert!(!rig.irq0.level(), "status read acknowledges");
        rig.outb(0x3f6, CONTROL_NIEN);
        rig.ata_command(0x1f0, 0xe0, 0xe5, 0, 0); // CHECK POWER MODE
        assert!(!rig.irq0.level(), "masked");
        assert_eq!(rig.inb(0x1f2), 0xff, "active");
        rig.outb(0x3f6, 0);
        assert!(rig.irq0.level(), "pending interrupt shows once unmasked");
        assert_eq!(read_bm_status(&rig, 0) & 0x04, 0x04, "BMISTA interrupt bit");
    }

    #[test]
    fn out_of_range_and_absurd_counts_fail_before_touching_the_disk() {
        let rig = Rig::new();
        let _disk = rig.attach_disk(0, 0, MIB); // 2048 sectors
        for (command, count, lba) in [
            (0x20u8, 1u8, 2048u32),
            (0x20, 0, 2047),
            (0xc8, 2, 2047),
            (0x40, 1, 0x0fff_ffff),
        ] {
            rig.ata_command(0x1f0, 0xe0, command, count, lba);
            assert_eq!(
                rig.inb(0x1f7),
                STATUS_DRDY | STATUS_ERR,
                "command {command:#x}"
            );
            assert_eq!(rig.inb(0x1f1), ERROR_IDNF);
            assert_eq!(rig.insw(0x1f0, 2), [0xff, 0xff], "no data");
        }
        // LBA48 with count 0 (65536 sectors) and the top address.
        for (port, high, low) in [
            (0x1f2, 0, 0),
            (0x1f3, 0xff, 0xff),
            (0x1f4, 0xff, 0xff),
            (0x1f5, 0xff, 0xff),
        ] {
            rig.outb(port, high);
            rig.outb(port, low);
        }
        rig.outb(0x1f7, 0x24);
        assert_eq!(rig.inb(0x1f1), ERROR_IDNF);
        // The last sector is fine.
        rig.ata_command(0x1f0, 0xe0, 0x20, 1, 2047);
        assert_eq!(rig.insw(0x1f0, 512), pattern(2047 * 512, 512));
    }

    #[test]
    fn garbage_commands_abort_and_nothing_panics() {
        let rig = Rig::new();
        let _disk = rig.attach_disk(0, 0, MIB);
        let mut seed = 0x1234_5678u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for command in 0..=255u8 {
            for _ in 0..4 {
                let r = next();
                rig.outb(0x1f1, r as u8);
                rig.ata_command(
                    0x1f0,
                    0xe0 | (r >> 8) as u8 & 0x4f,
                    command,
                    (r >> 16) as u8,
                    next() & 0x7ff,
                );
                // Drain whatever the command offered or asked for.
                let _ = rig.insw(0x1f0, 4096);
                rig.outs(0x1f0, &[0x5a; 4096]);
                let status = rig.inb(0x1f7);
                assert_eq!(status & STATUS_BSY, 0, "command {command:#x}");
            }
        }
        rig.outb(0x1f1, 0x77);
        rig.ata_command(0x1f0, 0xe0, 0xef, 0, 0);
        assert_eq!(rig.inb(0x1f1), ERROR_ABRT, "unknown SET FEATURES");
        rig.ata_command(0x1f0, 0xe0, 0x08, 0, 0);
        assert_eq!(
            rig.inb(0x1f1),
            ERROR_ABRT,
            "DEVICE RESET is for packet devices"
        );
        rig.ata_command(0x1f0, 0xe0, 0xa0, 0, 0);
        assert_eq!(rig.inb(0x1f1), ERROR_ABRT, "PACKET on a disk");
    }

    #[test]
    fn read_only_disk_refuses_writes() {
        let rig = Rig::new();
        let disk = image(MIB);
        let backend = crate::storage::RawFile::open(disk.path(), true).unwrap();
        rig.ctrl
            .lock()
            .unwrap()
            .attach(0, 0, super::super::IdeMedia::Disk(Box::new(backend)));
        rig.ata_command(0x1f0, 0xe0, 0x30, 1, 0);
        assert_eq!(rig.inb(0x1f7), STATUS_DRDY | STATUS_ERR);
        rig.ata_command(0x1f0, 0xe0, 0xca, 1, 0);
        assert_eq!(rig.inb(0x1f1), ERROR_ABRT);
        rig.ata_command(0x1f0, 0xe0, 0x20, 1, 0);
        assert_eq!(rig.insw(0x1f0, 512), pattern(0, 512));
    }

    /// A PRD entry: buffer address, byte count, end of table.
    type Prd = (u32, u16, bool);

    /// Points the primary channel's bus master at a PRD table of
    /// `(address, byte count, end of table)` entries at 0x8000.
    fn setup_dma(rig: &Rig, entries: &[Prd], bus_master: bool) {
        let mut ctrl = rig.ctrl.lock().unwrap();
        ctrl.write_config(0x04, &[if bus_master { 0x05 } else { 0x01 }, 0]);
        for (i, &(addr, count, eot)) in entries.iter().enumerate() {
            let mut raw = [0u8; 8];
            raw[0..4].copy_from_slice(&addr.to_le_bytes());
            raw[4..6].copy_from_slice(&count.to_le_bytes());
            raw[7] = if eot { 0x80 } else { 0 };
            rig.mem
                .write_slice(&raw, GuestAddress(0x8000 + 8 * i as u64))
                .unwrap();
        }
        ctrl.write_bar(4, 4, &0x8000u32.to_le_bytes());
        ctrl.write_bar(4, 2, &[0x06]); // clear error and interrupt
    }

    fn start_bus_master(rig: &Rig, to_memory: bool) {
        rig.ctrl
            .lock()
            .unwrap()
            .write_bar(4, 0, &[if to_memory { 0x09 } else { 0x01 }]);
    }

    #[test]
    fn dma_read_and_write_through_a_prd_table() {
        let rig = Rig::new();
        let disk = rig.attach_disk(0, 0, MIB);
        // Linux order: command first, then start the bus master.
        setup_dma(&rig, &[(0x10000, 1024, false), (0x20000, 1024, true)], true);
        rig.ata_command(0x1f0, 0xe0, 0xc8, 4, 40); // READ DMA
        assert_eq!(rig.inb(0x3f6) & STATUS_DRQ, STATUS_DRQ);
        assert!(
            !rig.irq0.level(),
            "nothing happens before the bus master starts"
        );
        start_bus_master(&rig, true);
        assert!(rig.irq0.level());
        assert_eq!(
            read_bm_status(&rig, 0) & 0x07,
            0x04,
            "inactive, no error, interrupt"
        );
        assert_eq!(rig.inb(0x1f7), 0x50);
        let mut back = vec![0; 1024];
        rig.mem
            .read_slice(&mut back, GuestAddress(0x10000))
            .unwrap();
        assert_eq!(back, pattern(40 * 512, 1024));
        rig.mem
            .read_slice(&mut back, GuestAddress(0x20000))
            .unwrap();
        assert_eq!(back, pattern(42 * 512, 1024));
        rig.ctrl.lock().unwrap().write_bar(4, 0, &[0]);

        // WRITE DMA EXT, bus master started first; the table is longer than
        // the transfer, so the bus master stays active.
        let payload: Vec<u8> = (0..1024u32).map(|i| (i % 253) as u8).collect();
        rig.mem
            .write_slice(&payload, GuestAddress(0x30000))
            .unwrap();
        setup_dma(&rig, &[(0x30000, 0, true)], true);
        start_bus_master(&rig, false);
        for (port, high, low) in [(0x1f2, 0, 2), (0x1f3, 0, 7), (0x1f4, 0, 0), (0x1f5, 0, 0)] {
            rig.outb(port, high);
            rig.outb(port, low);
        }
        rig.outb(0x1f7, 0x35);
        assert_eq!(rig.inb(0x1f7), 0x50);
        assert_eq!(
            read_bm_status(&rig, 0) & 0x07,
            0x05,
            "still active, interrupt"
        );
        let on_disk = std::fs::read(disk.path()).unwrap();
        assert_eq!(&on_disk[7 * 512..9 * 512], &payload[..]);
    }

    #[test]
    fn bad_prd_tables_set_the_dma_error_bit() {
        let rig = Rig::new();
        let disk = rig.attach_disk(0, 0, MIB);
        let cases: [(&[Prd], bool); 4] = [
            (&[(0xfff0_0000, 512, true)], true), // buffer outside RAM
            (&[(0x10000, 256, true)], true),     // table too short
            (&[(0x10000, 2, false)], true),      // no end of table before the page ends
            (&[(0x10000, 512, true)], false),    // bus mastering disabled
        ];
        for (i, (entries, bus_master)) in cases.into_iter().enumerate() {
            setup_dma(&rig, entries, bus_master);
            if i == 2 {
                // Fill the rest of the table's page with non-terminal entries.
                for n in 1..0x1000u64 {
                    rig.mem
                        .write_slice(&[0, 0, 1, 0, 2, 0, 0, 0], GuestAddress(0x8000 + 8 * n))
                        .unwrap();
                }
            }
            // WRITE DMA of 16 KiB: more than the 4096 two-byte entries
            // left in the table's page can carry.
            rig.ata_command(0x1f0, 0xe0, 0xca, 32, 3);
            start_bus_master(&rig, false);
            assert_eq!(
                read_bm_status(&rig, 0) & 0x07,
                0x06,
                "case {i}: error, interrupt, stopped"
            );
            assert_eq!(rig.inb(0x1f7), STATUS_DRDY | STATUS_ERR, "case {i}");
            assert_eq!(rig.inb(0x1f1), ERROR_ABRT);
            rig.ctrl.lock().unwrap().write_bar(4, 0, &[0]);
        }
        // Reads into a bad buffer fail the same way and nothing was written.
        setup_dma(&rig, &[(0x000f_ff00, 512, true)], true);
        rig.ata_command(0x1f0, 0xe0, 0xc8, 1, 3);
        start_bus_master(&rig, true);
        assert_eq!(
            read_bm_status(&rig, 0) & 0x02,
            0x02,
            "crosses the end of RAM"
        );
        let on_disk = std::fs::read(disk.path()).unwrap();
        assert_eq!(&on_disk[3 * 512..4 * 512], &pattern(3 * 512, 512)[..]);
    }

    use super::super::{
        CONTROL_NIEN, ERROR_ABRT, ERROR_IDNF, STATUS_BSY, STATUS_DRDY, STATUS_DRQ, STATUS_ERR,
    };
}
