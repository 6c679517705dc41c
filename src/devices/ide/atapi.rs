//! ATAPI CD/DVD-ROM drives: the PACKET command feature set of ATA/ATAPI-6
//! (T13 1410D §8.23 and the packet protocol of §9.11), and the packet
//! commands of SFF-8020i / MMC-3 (T10 1363-D) a read-only drive needs to be
//! found, booted from (El Torito) and mounted: TEST UNIT READY, REQUEST
//! SENSE, INQUIRY, READ CAPACITY, READ(10), READ(12), SEEK, MODE SENSE(10)
//! (pages 01h and 2Ah), READ TOC/PMA/ATIP (formats 0 and 1), GET
//! CONFIGURATION, START STOP UNIT, PREVENT ALLOW MEDIUM REMOVAL, GET EVENT
//! STATUS NOTIFICATION (polled, media class), READ DISC INFORMATION,
//! MECHANISM STATUS and SET CD SPEED. Discs are 2048-byte-sector images
//! (ISO 9660); larger than a CD means a DVD.
//!
//! The host changes the disc while the guest runs as QEMU's `hw/ide/atapi.c`
//! does and a real tray behaves: the tray opens (refused, and an eject
//! request event posted to the guest, while the guest has locked it with
//! PREVENT ALLOW MEDIUM REMOVAL, unless forced), the disc goes, the new one
//! comes and the tray closes. The guest then sees a media event in GET
//! EVENT STATUS NOTIFICATION and, on its next commands, NOT READY / MEDIUM
//! NOT PRESENT (the tray was open) followed by UNIT ATTENTION / MEDIUM MAY
//! HAVE CHANGED (MMC-3 §4.1.6), so guests that never poll events notice too.
//! The host can also open and close the tray alone and take the disc out of
//! the open tray, as QEMU's `blockdev-open-tray`, `blockdev-close-tray` and
//! `blockdev-remove-medium` do.
//!
//! The guest's own tray movements (START STOP UNIT with LoEj) are kept for
//! the host to report (QEMU's `DEVICE_TRAY_MOVED`), at most
//! [`MAX_TRAY_MOVES`] of them between two looks.
//!
//! Not emulated: audio (PLAY, READ CD, READ SUB-CHANNEL), raw sectors and
//! other sector sizes, writing, MODE SELECT, DVD structures, the raw TOC
//! formats, overlapped commands and asynchronous event notification.

use super::bmdma::PrdWalker;
use super::{
    serial_for, DmaOp, DmaOutcome, IdentifyData, Op, TransferModes, UnitState, ERROR_ABRT,
    FIRMWARE_REVISION,
};
use crate::guest_warn;
use crate::storage::BlockBackend;

const SECTOR_SIZE: u64 = 2048;
/// 80 minutes at 75 sectors a second: anything larger is a DVD.
const CD_MAX_SECTORS: u64 = 80 * 60 * 75;
const PACKET_SIZE: usize = 12;
/// Bytes moved between the disc and guest memory at a time in DMA.
const DMA_CHUNK: u64 = 64 * 1024;

const MODEL: &str = "VIREO DVD-ROM";
const INQUIRY_VENDOR: &[u8; 8] = b"VIREO   ";
const INQUIRY_PRODUCT: &[u8; 16] = b"DVD-ROM         ";
const INQUIRY_REVISION: &[u8; 4] = b"1.0 ";

// ATA commands a packet device accepts (ATA-6 §6.4, Table B.2).
const CMD_DEVICE_RESET: u8 = 0x08;
const CMD_READ_SECTORS: u8 = 0x20;
const CMD_READ_SECTORS_NO_RETRY: u8 = 0x21;
const CMD_PACKET: u8 = 0xa0;
const CMD_IDENTIFY_PACKET_DEVICE: u8 = 0xa1;
const CMD_STANDBY_IMMEDIATE: u8 = 0xe0;
const CMD_IDLE_IMMEDIATE: u8 = 0xe1;
const CMD_STANDBY: u8 = 0xe2;
const CMD_IDLE: u8 = 0xe3;
const CMD_CHECK_POWER_MODE: u8 = 0xe5;
const CMD_SLEEP: u8 = 0xe6;
const CMD_FLUSH_CACHE: u8 = 0xe7;
const CMD_IDENTIFY_DEVICE: u8 = 0xec;
const CMD_SET_FEATURES: u8 = 0xef;
const FEATURE_SET_TRANSFER_MODE: u8 = 0x03;

/// PACKET Features bits: DMA data transfer, overlapped (not supported).
const PACKET_DMA: u8 = 0x01;
const PACKET_OVL: u8 = 0x02;

/// Interrupt reason (Sector Count during packet commands, ATA-6 §8.23):
/// C/D in bit 0, I/O in bit 1.
const REASON_COMMAND: u8 = 0x01;
const REASON_DATA_IN: u8 = 0x02;
const REASON_STATUS: u8 = 0x03;

// Packet command operation codes (MMC-3 Table 5).
const TEST_UNIT_READY: u8 = 0x00;
const REQUEST_SENSE: u8 = 0x03;
const INQUIRY: u8 = 0x12;
const START_STOP_UNIT: u8 = 0x1b;
const PREVENT_ALLOW_MEDIUM_REMOVAL: u8 = 0x1e;
const READ_CAPACITY: u8 = 0x25;
const READ_10: u8 = 0x28;
const SEEK_10: u8 = 0x2b;
const READ_TOC_PMA_ATIP: u8 = 0x43;
const GET_CONFIGURATION: u8 = 0x46;
const GET_EVENT_STATUS_NOTIFICATION: u8 = 0x4a;
const READ_DISC_INFORMATION: u8 = 0x51;
const MODE_SENSE_10: u8 = 0x5a;
const READ_12: u8 = 0xa8;
const SET_CD_SPEED: u8 = 0xbb;
const MECHANISM_STATUS: u8 = 0xbd;

// MMC-3 profiles (Table 71) and features (Table 72).
const PROFILE_CD_ROM: u16 = 0x0008;
const PROFILE_DVD_ROM: u16 = 0x0010;
const FEATURE_PROFILE_LIST: u16 = 0x0000;
const FEATURE_CORE: u16 = 0x0001;
const FEATURE_REMOVABLE_MEDIUM: u16 = 0x0003;
const FEATURE_RANDOM_READABLE: u16 = 0x0010;
const FEATURE_CD_READ: u16 = 0x001e;
const FEATURE_DVD_READ: u16 = 0x001f;

// Mode pages.
const MODE_PAGE_ERROR_RECOVERY: u8 = 0x01;
const MODE_PAGE_CAPABILITIES: u8 = 0x2a;
const MODE_PAGE_ALL: u8 = 0x3f;

/// Track control/ADR byte of a data track: ADR 1 (position), data, no copy.
const TRACK_DATA: u8 = 0x14;
const LEAD_OUT_TRACK: u8 = 0xaa;

/// Sense key and additional sense code/qualifier (SPC-3 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Sense {
    key: u8,
    asc: u8,
    ascq: u8,
}

impl Sense {
    const NONE: Self = Self::new(0x00, 0x00, 0x00);
    const MEDIUM_NOT_PRESENT: Self = Self::new(0x02, 0x3a, 0x00);
    const UNRECOVERED_READ_ERROR: Self = Self::new(0x03, 0x11, 0x00);
    const INVALID_OPCODE: Self = Self::new(0x05, 0x20, 0x00);
    const LBA_OUT_OF_RANGE: Self = Self::new(0x05, 0x21, 0x00);
    const INVALID_FIELD_IN_CDB: Self = Self::new(0x05, 0x24, 0x00);
    const SAVING_PARAMETERS_NOT_SUPPORTED: Self = Self::new(0x05, 0x39, 0x00);
    const MEDIUM_REMOVAL_PREVENTED: Self = Self::new(0x05, 0x53, 0x02);
    const MEDIUM_MAY_HAVE_CHANGED: Self = Self::new(0x06, 0x28, 0x00);
    const DMA_FAILED: Self = Self::new(0x0b, 0x00, 0x00);

    const fn new(key: u8, asc: u8, ascq: u8) -> Self {
        Self { key, asc, ascq }
    }
}

/// The GET EVENT STATUS NOTIFICATION media event waiting to be reported
/// (MMC-3 Table 111).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum MediaEvent {
    None = 0,
    /// The host asked for the disc (an `eject` refused by the guest's lock).
    EjectRequest = 1,
    NewMedia = 2,
    MediaRemoval = 3,
}

/// What a packet command sends to the host.
pub(super) enum Reply {
    Bytes {
        data: Vec<u8>,
        pos: usize,
    },
    /// Sectors of the disc, read as they are transferred.
    Disc {
        offset: u64,
        remaining: u64,
        /// Which disc ([`Cdrom::disc`]): a transfer does not go on from
        /// another one the host put in meanwhile.
        disc: u64,
    },
}

impl Reply {
    /// `data` cut to the allocation length the command gave.
    fn bytes(mut data: Vec<u8>, allocation: usize) -> Self {
        data.truncate(allocation);
        Reply::Bytes { data, pos: 0 }
    }

    fn none() -> Self {
        Reply::Bytes {
            data: Vec::new(),
            pos: 0,
        }
    }

    fn remaining(&self) -> u64 {
        match self {
            Reply::Bytes { data, pos } => (data.len() - pos) as u64,
            Reply::Disc { remaining, .. } => *remaining,
        }
    }
}

fn be16(bytes: &[u8]) -> usize {
    usize::from(bytes[0]) << 8 | usize::from(bytes[1])
}

fn be32(bytes: &[u8]) -> u64 {
    u64::from(u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]))
}

/// An address as READ TOC gives it: LBA, or minutes/seconds/frames with
/// the 2-second pregap.
fn toc_address(lba: u64, msf: bool) -> [u8; 4] {
    if msf {
        let frames = lba + 150;
        [
            0,
            (frames / 4500).min(255) as u8,
            (frames / 75 % 60) as u8,
            (frames % 75) as u8,
        ]
    } else {
        (lba.min(u64::from(u32::MAX)) as u32).to_be_bytes()
    }
}

/// What the guest has still to be told about a disc the host inserted:
/// first that the drive was not ready (its tray was open), then the UNIT
/// ATTENTION (QEMU's `cdrom_changed` 1 and 2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Changed {
    No,
    NotReady,
    Attention,
}

/// Guest tray movements kept for the host between two looks; a guest that
/// opens and closes faster than the host looks loses the oldest.
pub(super) const MAX_TRAY_MOVES: usize = 64;

/// The host could not open the tray: the guest has locked it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TrayLocked;

/// The state of a CD-ROM drive as the host's `query-block` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CdromStatus {
    /// A disc is in the drive (in the tray, which may be open).
    pub has_medium: bool,
    pub tray_open: bool,
    /// The guest prevents medium removal.
    pub locked: bool,
}

/// An ATAPI CD/DVD-ROM drive.
pub(super) struct Cdrom {
    /// The disc, which stays in the tray while it is open (a guest that
    /// opens and closes the tray finds the same disc again).
    medium: Option<Box<dyn BlockBackend>>,
    /// Sense data of the last command.
    sense: Sense,
    /// A disc was inserted by the host and the guest has not been told.
    changed: Changed,
    /// PREVENT ALLOW MEDIUM REMOVAL's prevent bit.
    locked: bool,
    /// The tray is open: no disc can be read.
    tray_open: bool,
    /// Counts the discs the host has put in.
    disc: u64,
    /// Tray movements the guest made (`true` open) the host has not been
    /// told of yet.
    guest_tray_moves: Vec<bool>,
    event: MediaEvent,
    modes: TransferModes,
    serial: String,
    unit: usize,
}

impl Cdrom {
    pub(super) fn new(medium: Option<Box<dyn BlockBackend>>, channel: usize, unit: usize) -> Self {
        Self {
            medium,
            sense: Sense::NONE,
            changed: Changed::No,
            disc: 0,
            locked: false,
            tray_open: false,
            guest_tray_moves: Vec::new(),
            event: MediaEvent::None,
            modes: TransferModes::default(),
            serial: serial_for(&format!("vireo-cdrom-{channel}-{unit}")),
            unit,
        }
    }

    /// Whether a disc can be read: there is one and the tray is closed.
    pub(super) fn loaded(&self) -> bool {
        self.medium.is_some() && !self.tray_open
    }

    pub(super) fn status(&self) -> CdromStatus {
        CdromStatus {
            has_medium: self.medium.is_some(),
            tray_open: self.tray_open,
            locked: self.locked,
        }
    }

    /// The host opens the tray (QEMU's `do_open_tray`). A tray the guest
    /// locked stays shut and the guest is asked to eject (GET EVENT STATUS
    /// NOTIFICATION reports an eject request), unless `force`, which
    /// overrides the lock as pulling the disc out with a paper clip would.
    pub(super) fn open_tray(&mut self, force: bool) -> Result<(), TrayLocked> {
        if self.tray_open {
            return Ok(());
        }
        if self.locked {
            self.event = MediaEvent::EjectRequest;
            if !force {
                return Err(TrayLocked);
            }
            self.locked = false;
        }
        self.tray_open = true;
        if self.medium.is_some() {
            self.event = MediaEvent::MediaRemoval;
        }
        Ok(())
    }

    /// The host takes the disc out of the open tray; returns it.
    pub(super) fn remove_medium(&mut self) -> Option<Box<dyn BlockBackend>> {
        debug_assert!(self.tray_open, "the disc is taken from an open tray");
        self.medium.take()
    }

    /// The host closes the tray (QEMU's `blockdev-close-tray`); a disc in
    /// it is announced to the guest as a new one, as after an insert.
    /// Returns whether the tray moved.
    pub(super) fn close_tray(&mut self) -> bool {
        if !self.tray_open {
            return false;
        }
        self.tray_open = false;
        if self.medium.is_some() {
            self.event = MediaEvent::NewMedia;
            self.changed = Changed::NotReady;
        }
        true
    }

    /// The tray movements the guest made since the last call, oldest
    /// first (`true` open).
    pub(super) fn take_guest_tray_moves(&mut self) -> Vec<bool> {
        std::mem::take(&mut self.guest_tray_moves)
    }

    fn guest_moved_tray(&mut self, open: bool) {
        if self.guest_tray_moves.len() >= MAX_TRAY_MOVES {
            self.guest_tray_moves.remove(0);
        }
        self.guest_tray_moves.push(open);
    }

    /// The host puts `medium` in the (open) tray and closes it; the guest
    /// is told as MMC-3 §4.1.6 says (see the module header).
    pub(super) fn insert_and_close(&mut self, medium: Box<dyn BlockBackend>) {
        self.medium = Some(medium);
        self.disc += 1;
        self.tray_open = false;
        self.event = MediaEvent::NewMedia;
        self.changed = Changed::NotReady;
    }

    /// The host swaps the disc: open the tray (see [`Self::open_tray`]),
    /// take the old disc out, put `medium` in and close the tray, or leave
    /// the tray open and empty for `None`. Returns the old disc, for the
    /// caller to close outside the controller's lock.
    pub(super) fn change_medium(
        &mut self,
        medium: Option<Box<dyn BlockBackend>>,
        force: bool,
    ) -> Result<Option<Box<dyn BlockBackend>>, TrayLocked> {
        self.open_tray(force)?;
        let old = self.remove_medium();
        if let Some(medium) = medium {
            self.insert_and_close(medium);
        }
        Ok(old)
    }

    /// Executes an ATA command; returns true when the device must reset
    /// (DEVICE RESET), which the caller does.
    pub(super) fn command(&mut self, st: &mut UnitState, command: u8) -> bool {
        match command {
            CMD_DEVICE_RESET => return true,
            CMD_IDENTIFY_PACKET_DEVICE => st.start_in(self.identify(), Op::SingleIn),
            CMD_PACKET => {
                if st.tf.feature & PACKET_OVL != 0 {
                    guest_warn!("IDE: overlapped PACKET command, aborted");
                    st.abort();
                    return false;
                }
                let dma = st.tf.feature & PACKET_DMA != 0;
                // ATA-6 §8.23: zero is not a valid limit, 0xFFFF is
                // treated as 0xFFFE, and blocks other than the last are even.
                let limit = match st.tf.byte_count() {
                    0 | 0xffff => 0xfffe,
                    n => (n & !1).max(2),
                };
                st.start_out(PACKET_SIZE, Op::Packet { dma, limit }, false);
                st.tf.count = REASON_COMMAND;
            }
            // A packet device posts its signature and aborts the ATA
            // commands an old driver probes with (ATA-6 §8.15.7).
            CMD_IDENTIFY_DEVICE | CMD_READ_SECTORS | CMD_READ_SECTORS_NO_RETRY => {
                st.tf.set_signature(true);
                st.abort();
            }
            CMD_SET_FEATURES => {
                let ok =
                    st.tf.feature != FEATURE_SET_TRANSFER_MODE || self.modes.select(st.tf.count);
                if ok {
                    st.complete();
                } else {
                    st.abort();
                }
            }
            CMD_CHECK_POWER_MODE => {
                st.complete();
                st.tf.count = 0xff;
            }
            CMD_STANDBY_IMMEDIATE
            | CMD_IDLE_IMMEDIATE
            | CMD_STANDBY
            | CMD_IDLE
            | CMD_SLEEP
            | CMD_FLUSH_CACHE => st.complete(),
            _ => {
                guest_warn!(
                    command,
                    "IDE: ATA command not supported by a packet device, aborted"
                );
                st.abort();
            }
        }
        false
    }

    /// The host has moved a whole DRQ block.
    pub(super) fn end_of_block(&mut self, st: &mut UnitState, op: Op, data: Vec<u8>) {
        match op {
            Op::Packet { dma, limit } => {
                let mut cdb = [0u8; PACKET_SIZE];
                cdb.copy_from_slice(&data[..PACKET_SIZE]);
                let result = self.execute(&cdb);
                match result {
                    Err(sense) => self.check_condition(st, sense),
                    Ok(reply) if reply.remaining() == 0 => self.packet_done(st),
                    Ok(reply) if dma => st.start_dma(DmaOp::Packet(reply)),
                    Ok(reply) => self.send_block(st, reply, limit),
                }
            }
            Op::PacketIn { reply, limit } => {
                if reply.remaining() > 0 {
                    self.send_block(st, reply, limit);
                } else {
                    self.packet_done(st);
                }
            }
            _ => st.finish_in(),
        }
    }

    /// Offers the next DRQ block of a reply: at most `limit` bytes, its
    /// size in the byte count registers (ATA-6 §9.11).
    fn send_block(&mut self, st: &mut UnitState, mut reply: Reply, limit: u16) {
        let n = reply.remaining().min(u64::from(limit)) as usize;
        match self.take(&mut reply, n) {
            Ok(data) => {
                st.start_in(data, Op::PacketIn { reply, limit });
                st.tf.set_byte_count(n as u16);
                st.tf.count = REASON_DATA_IN;
            }
            Err(sense) => self.check_condition(st, sense),
        }
    }

    /// The next `n` bytes of a reply.
    fn take(&mut self, reply: &mut Reply, n: usize) -> Result<Vec<u8>, Sense> {
        match reply {
            Reply::Bytes { data, pos } => {
                let out = data[*pos..*pos + n].to_vec();
                *pos += n;
                Ok(out)
            }
            Reply::Disc {
                offset,
                remaining,
                disc,
            } => {
                if !self.loaded() || *disc != self.disc {
                    return Err(Sense::MEDIUM_NOT_PRESENT);
                }
                let medium = self.medium.as_mut().ok_or(Sense::MEDIUM_NOT_PRESENT)?;
                let mut out = vec![0; n];
                medium.read_at(&mut out, *offset).map_err(|error| {
                    tracing::error!(%error, disc = %medium.identity(), "IDE: CD-ROM read failed");
                    Sense::UNRECOVERED_READ_ERROR
                })?;
                *offset += n as u64;
                *remaining -= n as u64;
                Ok(out)
            }
        }
    }

    /// GOOD status (ATA-6 §9.11: I/O and C/D set, DRQ clear).
    fn packet_done(&mut self, st: &mut UnitState) {
        st.complete();
        st.tf.count = REASON_STATUS;
    }

    /// CHECK CONDITION: ERR, with the sense key in the Error register's
    /// upper nibble (SFF-8020i §5.13.3); REQUEST SENSE tells the rest.
    fn check_condition(&mut self, st: &mut UnitState, sense: Sense) {
        self.sense = sense;
        let abort = if sense.key == 0x05 || sense.key == 0x0b {
            ERROR_ABRT
        } else {
            0
        };
        st.fail(sense.key << 4 | abort);
        st.tf.count = REASON_STATUS;
    }

    /// Moves a packet command's reply through the PRD table.
    pub(super) fn run_dma(
        &mut self,
        st: &mut UnitState,
        op: DmaOp,
        prd: &mut PrdWalker,
    ) -> DmaOutcome {
        let DmaOp::Packet(mut reply) = op else {
            st.abort();
            return DmaOutcome::DeviceError;
        };
        while reply.remaining() > 0 {
            let n = reply.remaining().min(DMA_CHUNK) as usize;
            let data = match self.take(&mut reply, n) {
                Ok(data) => data,
                Err(sense) => {
                    self.check_condition(st, sense);
                    return DmaOutcome::DeviceError;
                }
            };
            if let Err(error) = prd.write(&data) {
                guest_warn!(%error, "IDE: bad PRD table for an ATAPI DMA transfer");
                self.check_condition(st, Sense::DMA_FAILED);
                return DmaOutcome::BadTable;
            }
        }
        self.packet_done(st);
        DmaOutcome::Done
    }

    /// Runs a packet command and keeps its sense data.
    fn execute(&mut self, cdb: &[u8; PACKET_SIZE]) -> Result<Reply, Sense> {
        let result = self.dispatch(cdb);
        self.sense = match &result {
            Ok(_) => Sense::NONE,
            Err(sense) => *sense,
        };
        result
    }

    fn dispatch(&mut self, cdb: &[u8; PACKET_SIZE]) -> Result<Reply, Sense> {
        let opcode = cdb[0];
        // These report state without consuming a pending UNIT ATTENTION
        // (MMC-3 §4.1.6.1); everything else reports the disc change first.
        let allowed_with_attention = matches!(
            opcode,
            INQUIRY | REQUEST_SENSE | GET_CONFIGURATION | GET_EVENT_STATUS_NOTIFICATION
        );
        if !allowed_with_attention {
            if let Some(sense) = self.take_change() {
                return Err(sense);
            }
        }
        match opcode {
            TEST_UNIT_READY => self.disc_sectors().map(|_| Reply::none()),
            REQUEST_SENSE => {
                // The sense of the command that failed comes first; with
                // none, a pending disc change is reported here (SPC-3
                // §5.9.7), so a guest that only polls REQUEST SENSE sees
                // the same sequence as one that polls TEST UNIT READY.
                let sense = match self.sense {
                    Sense::NONE => self.take_change().unwrap_or(Sense::NONE),
                    sense => sense,
                };
                let mut data = vec![0; 18];
                data[0] = 0x70; // current error, fixed format
                data[2] = sense.key;
                data[7] = 10; // additional sense length
                data[12] = sense.asc;
                data[13] = sense.ascq;
                Ok(Reply::bytes(data, usize::from(cdb[4])))
            }
            INQUIRY => {
                if cdb[1] & 0x01 != 0 {
                    // EVPD: no vital product data pages.
                    return Err(Sense::INVALID_FIELD_IN_CDB);
                }
                let mut data = vec![
                    0x05, // CD/DVD device
                    0x80, // removable
                    0x00, // version
                    0x21, // ATAPI version 2, response data format 1
                    31,   // additional length
                    0, 0, 0,
                ];
                data.extend_from_slice(INQUIRY_VENDOR);
                data.extend_from_slice(INQUIRY_PRODUCT);
                data.extend_from_slice(INQUIRY_REVISION);
                Ok(Reply::bytes(data, be16(&cdb[3..5])))
            }
            START_STOP_UNIT => {
                let (load_eject, start) = (cdb[4] & 0x02 != 0, cdb[4] & 0x01 != 0);
                if load_eject && !start && !self.tray_open {
                    if self.locked {
                        return Err(Sense::MEDIUM_REMOVAL_PREVENTED);
                    }
                    // The disc stays in the open tray; closing it again
                    // brings it back.
                    if self.medium.is_some() {
                        self.event = MediaEvent::MediaRemoval;
                    }
                    self.tray_open = true;
                    self.guest_moved_tray(true);
                } else if load_eject && start && self.tray_open {
                    self.tray_open = false;
                    self.guest_moved_tray(false);
                    if self.medium.is_some() {
                        self.event = MediaEvent::NewMedia;
                    }
                }
                Ok(Reply::none())
            }
            PREVENT_ALLOW_MEDIUM_REMOVAL => {
                self.locked = cdb[4] & 0x01 != 0;
                Ok(Reply::none())
            }
            READ_CAPACITY => {
                let sectors = self.disc_sectors()?;
                let last = sectors.saturating_sub(1).min(u64::from(u32::MAX)) as u32;
                let mut data = last.to_be_bytes().to_vec();
                data.extend_from_slice(&(SECTOR_SIZE as u32).to_be_bytes());
                Ok(Reply::bytes(data, 8))
            }
            READ_10 => self.read(be32(&cdb[2..6]), be16(&cdb[7..9]) as u64),
            READ_12 => self.read(be32(&cdb[2..6]), be32(&cdb[6..10])),
            SEEK_10 => {
                let sectors = self.disc_sectors()?;
                if be32(&cdb[2..6]) >= sectors {
                    return Err(Sense::LBA_OUT_OF_RANGE);
                }
                Ok(Reply::none())
            }
            READ_TOC_PMA_ATIP => self.read_toc(cdb),
            GET_CONFIGURATION => self.get_configuration(cdb),
            GET_EVENT_STATUS_NOTIFICATION => self.get_event_status(cdb),
            READ_DISC_INFORMATION => {
                if cdb[1] & 0x07 != 0 {
                    return Err(Sense::INVALID_FIELD_IN_CDB);
                }
                self.disc_sectors()?;
                let mut data = vec![0; 34];
                data[1] = 32; // disc information length
                data[2] = 0x0e; // last session complete, disc complete
                data[3] = 1; // first track
                data[4] = 1; // sessions
                data[5] = 1; // first track in last session
                data[6] = 1; // last track in last session
                data[7] = 0x20; // unrestricted use
                data[8] = 0x00; // CD-DA or CD-ROM disc
                data[16..24].fill(0xff); // no lead-in / lead-out to record
                Ok(Reply::bytes(data, be16(&cdb[7..9])))
            }
            MODE_SENSE_10 => self.mode_sense(cdb),
            SET_CD_SPEED => Ok(Reply::none()),
            MECHANISM_STATUS => {
                let data = vec![
                    0,                                     // no fault, no changer
                    if self.tray_open { 0x10 } else { 0 }, // idle; door open
                    0,                                     // current LBA (obsolete)
                    0,
                    0,
                    0, // slots
                    0, // slot table length
                    0,
                ];
                Ok(Reply::bytes(data, be16(&cdb[8..10])))
            }
            _ => {
                guest_warn!(opcode, "IDE: unsupported ATAPI packet command");
                Err(Sense::INVALID_OPCODE)
            }
        }
    }

    /// What a command learns first after the host changed the disc: NOT
    /// READY (the tray was open), then UNIT ATTENTION, then nothing. Only
    /// while a disc is there and the tray shut, as QEMU does.
    fn take_change(&mut self) -> Option<Sense> {
        if !self.loaded() {
            return None;
        }
        match self.changed {
            Changed::No => None,
            Changed::NotReady => {
                self.changed = Changed::Attention;
                Some(Sense::MEDIUM_NOT_PRESENT)
            }
            Changed::Attention => {
                self.changed = Changed::No;
                Some(Sense::MEDIUM_MAY_HAVE_CHANGED)
            }
        }
    }

    /// Whole 2048-byte sectors on the disc, or NOT READY (no disc, or the
    /// tray is open).
    fn disc_sectors(&self) -> Result<u64, Sense> {
        match &self.medium {
            Some(medium) if !self.tray_open => Ok(medium.size() / SECTOR_SIZE),
            _ => Err(Sense::MEDIUM_NOT_PRESENT),
        }
    }

    fn is_dvd(&self) -> bool {
        self.disc_sectors().is_ok_and(|s| s > CD_MAX_SECTORS)
    }

    fn read(&mut self, lba: u64, count: u64) -> Result<Reply, Sense> {
        let sectors = self.disc_sectors()?;
        if !lba.checked_add(count).is_some_and(|end| end <= sectors) {
            guest_warn!(
                lba,
                count,
                sectors,
                "IDE: ATAPI read past the end of the disc"
            );
            return Err(Sense::LBA_OUT_OF_RANGE);
        }
        Ok(Reply::Disc {
            offset: lba * SECTOR_SIZE,
            remaining: count * SECTOR_SIZE,
            disc: self.disc,
        })
    }

    /// READ TOC/PMA/ATIP (MMC-3 §6.25): one data track starting at 0.
    fn read_toc(&mut self, cdb: &[u8; PACKET_SIZE]) -> Result<Reply, Sense> {
        let sectors = self.disc_sectors()?;
        let msf = cdb[1] & 0x02 != 0;
        // SFF-8020i put the format in the top bits of the control byte.
        let format = match cdb[2] & 0x0f {
            0 => cdb[9] >> 6,
            f => f,
        };
        let track = cdb[6];
        let mut data = vec![0, 0, 1, 1]; // length, first and last track/session
        match format {
            0 => {
                if track > LEAD_OUT_TRACK {
                    return Err(Sense::INVALID_FIELD_IN_CDB);
                }
                if track <= 1 {
                    data.extend_from_slice(&[0, TRACK_DATA, 1, 0]);
                    data.extend_from_slice(&toc_address(0, msf));
                }
                data.extend_from_slice(&[0, TRACK_DATA, LEAD_OUT_TRACK, 0]);
                data.extend_from_slice(&toc_address(sectors, msf));
            }
            1 => {
                // Session information: the first track of the last session.
                data.extend_from_slice(&[0, TRACK_DATA, 1, 0]);
                data.extend_from_slice(&toc_address(0, msf));
            }
            _ => return Err(Sense::INVALID_FIELD_IN_CDB),
        }
        let length = (data.len() - 2) as u16;
        data[..2].copy_from_slice(&length.to_be_bytes());
        Ok(Reply::bytes(data, be16(&cdb[7..9])))
    }

    /// GET CONFIGURATION (MMC-3 §6.6).
    fn get_configuration(&mut self, cdb: &[u8; PACKET_SIZE]) -> Result<Reply, Sense> {
        let request_type = cdb[1] & 0x03;
        let start = be16(&cdb[2..4]) as u16;
        let loaded = self.loaded();
        let dvd = self.is_dvd();
        let profile = match (loaded, dvd) {
            (false, _) => 0,
            (true, true) => PROFILE_DVD_ROM,
            (true, false) => PROFILE_CD_ROM,
        };
        // (code, current, version, body)
        let features: [(u16, bool, u8, Vec<u8>); 6] = [
            (
                FEATURE_PROFILE_LIST,
                true,
                0,
                vec![
                    0x00,
                    0x10,
                    u8::from(dvd),
                    0,
                    0x00,
                    0x08,
                    u8::from(loaded && !dvd),
                    0,
                ],
            ),
            // Core: physical interface ATAPI.
            (FEATURE_CORE, true, 1, vec![0, 0, 0, 2, 0, 0, 0, 0]),
            // Removable medium: tray, eject, lock.
            (FEATURE_REMOVABLE_MEDIUM, true, 0, vec![0x29, 0, 0, 0]),
            (
                FEATURE_RANDOM_READABLE,
                loaded,
                0,
                vec![0, 0, 0x08, 0x00, 0, if dvd { 16 } else { 1 }, 0, 0],
            ),
            (FEATURE_CD_READ, loaded && !dvd, 0, vec![0, 0, 0, 0]),
            (FEATURE_DVD_READ, dvd, 0, vec![]),
        ];
        let selected = features
            .iter()
            .filter(|(code, current, ..)| match request_type {
                0 => *code >= start,
                1 => *code >= start && *current,
                2 => *code == start,
                _ => false,
            });
        if request_type == 3 {
            return Err(Sense::INVALID_FIELD_IN_CDB);
        }
        let mut data = vec![0; 8];
        data[6..8].copy_from_slice(&profile.to_be_bytes());
        for (code, current, version, body) in selected {
            data.extend_from_slice(&code.to_be_bytes());
            // Version, persistent (always there), current.
            data.push(
                version << 2 | u8::from(*code != FEATURE_RANDOM_READABLE) << 1 | u8::from(*current),
            );
            data.push(body.len() as u8);
            data.extend_from_slice(body);
        }
        let length = (data.len() - 4) as u32;
        data[..4].copy_from_slice(&length.to_be_bytes());
        Ok(Reply::bytes(data, be16(&cdb[7..9])))
    }

    /// GET EVENT STATUS NOTIFICATION, polled, media class (MMC-3 §6.7).
    fn get_event_status(&mut self, cdb: &[u8; PACKET_SIZE]) -> Result<Reply, Sense> {
        const MEDIA_CLASS: u8 = 1 << 4;
        if cdb[1] & 0x01 == 0 {
            // Asynchronous notification is not supported.
            return Err(Sense::INVALID_FIELD_IN_CDB);
        }
        let data = if cdb[4] & MEDIA_CLASS != 0 {
            let event = std::mem::replace(&mut self.event, MediaEvent::None);
            let status = u8::from(self.loaded()) << 1 | u8::from(self.tray_open);
            vec![0, 6, 0x04, MEDIA_CLASS, event as u8, status, 0, 0]
        } else {
            // No event available of the classes asked for.
            vec![0, 2, 0x80, MEDIA_CLASS]
        };
        Ok(Reply::bytes(data, be16(&cdb[7..9])))
    }

    /// MODE SENSE(10) (SPC-3 §6.10) with the error recovery (MMC-3 §7.3)
    /// and capabilities (§7.4 of MMC-2, kept by MMC-3 drives) pages.
    fn mode_sense(&mut self, cdb: &[u8; PACKET_SIZE]) -> Result<Reply, Sense> {
        let page = cdb[2] & 0x3f;
        let control = cdb[2] >> 6;
        if control == 3 {
            return Err(Sense::SAVING_PARAMETERS_NOT_SUPPORTED);
        }
        let error_recovery = vec![MODE_PAGE_ERROR_RECOVERY, 6, 0x00, 5, 0, 0, 0, 0];
        let speed = 5632u16.to_be_bytes(); // kB/s, 32x
        let capabilities = vec![
            MODE_PAGE_CAPABILITIES,
            18,
            0x3b, // reads CD-R, CD-RW, DVD-ROM, DVD-R, DVD-RAM
            0x00, // writes nothing
            0x71, // audio play, mode 2 form 1 and 2, multi-session
            0x00,
            0x29 | u8::from(self.locked) << 1, // tray, eject, lock (and its state)
            0x00,
            speed[0],
            speed[1], // maximum read speed
            0x00,
            0x02, // volume levels
            0x02,
            0x00, // buffer size, KiB
            speed[0],
            speed[1], // current read speed
            0,
            0,
            0,
            0,
        ];
        let mut pages = Vec::new();
        for body in [error_recovery, capabilities] {
            if page == body[0] || page == MODE_PAGE_ALL {
                pages.push(body);
            }
        }
        if pages.is_empty() {
            return Err(Sense::INVALID_FIELD_IN_CDB);
        }
        let mut data = vec![0; 8]; // header, no block descriptors
        for mut body in pages {
            if control == 1 {
                // Changeable values: none.
                body[2..].fill(0);
            }
            data.extend(body);
        }
        let length = (data.len() - 2) as u16;
        data[..2].copy_from_slice(&length.to_be_bytes());
        Ok(Reply::bytes(data, be16(&cdb[7..9])))
    }

    /// IDENTIFY PACKET DEVICE data (ATA-6 §8.16, Table 20).
    fn identify(&self) -> Vec<u8> {
        let mut id = IdentifyData::new();
        // ATAPI, CD-ROM device type, removable, 50 µs DRQ, 12-byte packets.
        id.set(0, 0x85c0);
        id.set_string(10, 10, &self.serial);
        id.set_string(23, 4, FIRMWARE_REVISION);
        id.set_string(27, 20, MODEL);
        // Capabilities: IORDY supported and disableable, LBA, DMA.
        id.set(49, 1 << 11 | 1 << 10 | 1 << 9 | 1 << 8);
        id.set(53, 0x0006); // words 64-70 and 88 are valid
        id.set(63, self.modes.word63());
        id.set(64, 0x0003);
        for word in 65..=68 {
            id.set(word, 120);
        }
        id.set(80, 0x0070); // ATA/ATAPI-4 through -6
                            // Supported and enabled: NOP, DEVICE RESET, PACKET, removable media.
        id.set(82, 1 << 14 | 1 << 9 | 1 << 4 | 1 << 2);
        id.set(83, 0x4000);
        id.set(84, 0x4000);
        id.set(85, 1 << 14 | 1 << 9 | 1 << 4 | 1 << 2);
        id.set(87, 0x4000);
        id.set(88, self.modes.word88());
        id.set(93, 0x6000 | if self.unit == 0 { 0x0001 } else { 0x0100 });
        id.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::super::testutil::*;
    use super::super::{CdromChangeError, IdeMedia, STATUS_DRDY, STATUS_DRQ, STATUS_ERR};
    use super::*;
    use crate::devices::pci::PciDevice;
    use crate::storage::RawFile;
    use vm_memory::{Bytes, GuestAddress};

    const ISO_SIZE: u64 = 64 * 2048;
    const SEC: u16 = 0x170;

    /// A rig with a CD-ROM as secondary master, probed as SeaBIOS does.
    fn cd_rig(size: Option<u64>) -> (Rig, Option<tempfile::NamedTempFile>) {
        let rig = Rig::new();
        let file = rig.attach_cdrom(1, 0, size);
        rig.outb(0x376, 0x0e);
        rig.outb(0x376, 0x0a);
        rig.outb(SEC + 6, 0xa0);
        (rig, file)
    }

    fn request_sense(rig: &Rig) -> (u8, u8, u8) {
        let (status, data) = rig.packet(SEC, &[REQUEST_SENSE, 0, 0, 0, 18], 0xfffe);
        assert_eq!(status & STATUS_ERR, 0);
        (data[2], data[12], data[13])
    }

    #[test]
    fn seabios_probe_finds_a_cdrom() {
        let (rig, _iso) = cd_rig(Some(ISO_SIZE));
        assert_eq!(rig.signature(SEC), [1, 1, 0x14, 0xeb]);
        assert_eq!(rig.inb(SEC + 7), 0, "no DRDY before IDENTIFY PACKET DEVICE");
        // An old driver's IDENTIFY DEVICE is aborted, signature in place.
        rig.outb(SEC + 7, 0xec);
        assert_eq!(rig.inb(SEC + 7) & STATUS_ERR, STATUS_ERR);
        assert_eq!(rig.signature(SEC)[2..], [0x14, 0xeb]);
        rig.outb(SEC + 7, 0xa1);
        assert_eq!(rig.inb(SEC + 7) & STATUS_DRQ, STATUS_DRQ);
        let id = rig.ins(SEC, 512);
        assert_eq!(u16::from_le_bytes([id[0], id[1]]), 0x85c0);
        assert_eq!(ata_string(&id[54..94]), "VIREO DVD-ROM");
        assert_eq!(rig.inb(SEC + 7), STATUS_DRDY | 0x10);
        assert_eq!(
            rig.irq1.rising_edges(),
            0,
            "nIEN was set by the reset sequence"
        );
    }

    #[test]
    fn inquiry_capacity_and_read10() {
        let (rig, _iso) = cd_rig(Some(ISO_SIZE));
        let (status, data) = rig.packet(SEC, &[INQUIRY, 0, 0, 0, 36], 0xfffe);
        assert_eq!(status & STATUS_ERR, 0);
        assert_eq!(data.len(), 36);
        assert_eq!(data[0], 0x05);
        assert_eq!(&data[8..16], b"VIREO   ");
        let (_, data) = rig.packet(SEC, &[READ_CAPACITY], 0xfffe);
        assert_eq!(data, [0, 0, 0, 63, 0, 0, 8, 0]);
        // READ(10) of sector 17 (the El Torito boot record) in one block.
        let (status, data) = rig.packet(SEC, &[READ_10, 0, 0, 0, 0, 17, 0, 0, 1], 2048);
        assert_eq!(status, STATUS_DRDY | 0x10);
        assert_eq!(data, pattern(17 * 2048, 2048));
        // Three sectors with a byte count limit that is not a sector.
        let (_, data) = rig.packet(SEC, &[READ_12, 0, 0, 0, 0, 5, 0, 0, 0, 3], 1001);
        assert_eq!(data, pattern(5 * 2048, 3 * 2048));
    }

    #[test]
    fn errors_are_check_conditions_with_sense() {
        let (rig, _iso) = cd_rig(Some(ISO_SIZE));
        let (status, data) = rig.packet(SEC, &[READ_10, 0, 0, 0, 0, 63, 0, 0, 2], 0xfffe);
        assert_eq!(status, STATUS_DRDY | STATUS_ERR);
        assert!(data.is_empty());
        assert_eq!(
            rig.inb(SEC + 1) >> 4,
            0x05,
            "ILLEGAL REQUEST in the Error register"
        );
        assert_eq!(request_sense(&rig), (0x05, 0x21, 0x00));
        assert_eq!(request_sense(&rig), (0x00, 0x00, 0x00), "sense is cleared");
        let (status, _) = rig.packet(SEC, &[0xff], 0xfffe);
        assert_eq!(status & STATUS_ERR, STATUS_ERR);
        assert_eq!(
            request_sense(&rig),
            (0x05, 0x20, 0x00),
            "invalid operation code"
        );
    }

    #[test]
    fn no_disc_is_not_ready() {
        let (rig, _) = cd_rig(None);
        for cdb in [
            &[TEST_UNIT_READY][..],
            &[READ_CAPACITY],
            &[READ_10, 0, 0, 0, 0, 0, 0, 0, 1],
        ] {
            let (status, _) = rig.packet(SEC, cdb, 0xfffe);
            assert_eq!(status & STATUS_ERR, STATUS_ERR);
            assert_eq!(rig.inb(SEC + 1), 0x20, "NOT READY, as SeaBIOS checks");
            assert_eq!(request_sense(&rig), (0x02, 0x3a, 0x00));
        }
        let (_, data) = rig.packet(SEC, &[GET_CONFIGURATION, 0, 0, 0, 0, 0, 0, 0, 8], 0xfffe);
        assert_eq!(&data[6..8], &[0, 0], "no current profile");
        let (status, _) = rig.packet(SEC, &[INQUIRY, 0, 0, 0, 36], 0xfffe);
        assert_eq!(status & STATUS_ERR, 0);
    }

    const GESN: [u8; 9] = [GET_EVENT_STATUS_NOTIFICATION, 1, 0, 0, 0x10, 0, 0, 0, 8];

    /// The media event and media status bytes GET EVENT STATUS
    /// NOTIFICATION returns (and so consumes).
    fn media_event(rig: &Rig) -> [u8; 2] {
        let (status, data) = rig.packet(SEC, &GESN, 0xfffe);
        assert_eq!(status & STATUS_ERR, 0);
        [data[4], data[5]]
    }

    /// TEST UNIT READY, then the sense it left: what a polling guest sees.
    fn poll(rig: &Rig) -> (u8, u8, u8) {
        let (status, _) = rig.packet(SEC, &[TEST_UNIT_READY], 0xfffe);
        let sense = request_sense(rig);
        assert_eq!(
            status & STATUS_ERR != 0,
            sense != (0, 0, 0),
            "ERR is set exactly when there is sense data"
        );
        sense
    }

    fn capacity(rig: &Rig) -> Option<u32> {
        let (status, data) = rig.packet(SEC, &[READ_CAPACITY], 0xfffe);
        (status & STATUS_ERR == 0).then(|| u32::from_be_bytes([data[0], data[1], data[2], data[3]]))
    }

    fn change(
        rig: &Rig,
        disc: Option<&tempfile::NamedTempFile>,
        force: bool,
    ) -> Result<bool, super::super::CdromChangeError> {
        let medium =
            disc.map(|f| Box::new(RawFile::open(f.path(), true).unwrap()) as Box<dyn BlockBackend>);
        rig.ctrl
            .lock()
            .unwrap()
            .change_cdrom(1, 0, medium, force)
            .map(|old| old.is_some())
    }

    fn drive_status(rig: &Rig) -> CdromStatus {
        rig.ctrl.lock().unwrap().cdrom_status(1, 0).unwrap()
    }

    #[test]
    fn inserting_a_disc_is_not_ready_then_unit_attention_then_ready() {
        let (rig, _) = cd_rig(None);
        assert_eq!(poll(&rig), (0x02, 0x3a, 0x00), "empty drive");
        let iso = image(ISO_SIZE);
        assert_eq!(
            change(&rig, Some(&iso), false),
            Ok(false),
            "nothing came out"
        );
        // GESN reports the new disc without consuming the attention.
        assert_eq!(media_event(&rig), [2, 2], "new media, present");
        assert_eq!(media_event(&rig), [0, 2], "reported once");
        // INQUIRY is allowed while the attention is pending.
        let (status, _) = rig.packet(SEC, &[INQUIRY, 0, 0, 0, 36], 0xfffe);
        assert_eq!(status & STATUS_ERR, 0);
        // As QEMU: the tray was open, then the medium may have changed.
        assert_eq!(poll(&rig), (0x02, 0x3a, 0x00));
        assert_eq!(poll(&rig), (0x06, 0x28, 0x00));
        assert_eq!(poll(&rig), (0, 0, 0), "ready after the attention");
        assert_eq!(capacity(&rig), Some(63));
        assert_eq!(
            drive_status(&rig),
            CdromStatus {
                has_medium: true,
                tray_open: false,
                locked: false
            }
        );
    }

    #[test]
    fn a_new_disc_shows_its_own_capacity_and_data() {
        let (rig, old) = cd_rig(Some(ISO_SIZE));
        assert_eq!(capacity(&rig), Some(63));
        let small = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(small.path(), vec![0x5a; 8 * 2048]).unwrap();
        assert_eq!(
            change(&rig, Some(&small), false),
            Ok(true),
            "the old disc came out"
        );
        // A read without looking at the sense first still fails once for
        // each step, then reads the new disc.
        assert_eq!(capacity(&rig), None);
        assert_eq!(request_sense(&rig), (0x02, 0x3a, 0x00));
        assert_eq!(capacity(&rig), None);
        assert_eq!(request_sense(&rig), (0x06, 0x28, 0x00));
        assert_eq!(capacity(&rig), Some(7));
        let (_, data) = rig.packet(SEC, &[READ_10, 0, 0, 0, 0, 7, 0, 0, 1], 0xfffe);
        assert_eq!(data, vec![0x5a; 2048]);
        let (status, _) = rig.packet(SEC, &[READ_10, 0, 0, 0, 0, 8, 0, 0, 1], 0xfffe);
        assert_eq!(
            status & STATUS_ERR,
            STATUS_ERR,
            "past the new, smaller disc"
        );
        drop(old);
    }

    #[test]
    fn a_guest_polling_only_request_sense_sees_the_change_too() {
        let (rig, _iso) = cd_rig(Some(ISO_SIZE));
        let other = image(4 * 2048);
        change(&rig, Some(&other), false).unwrap();
        assert_eq!(request_sense(&rig), (0x02, 0x3a, 0x00));
        assert_eq!(request_sense(&rig), (0x06, 0x28, 0x00));
        assert_eq!(request_sense(&rig), (0, 0, 0));
        assert_eq!(capacity(&rig), Some(3));
    }

    #[test]
    fn host_eject_leaves_the_tray_open_and_empty() {
        let (rig, _iso) = cd_rig(Some(ISO_SIZE));
        assert_eq!(change(&rig, None, false), Ok(true));
        assert_eq!(media_event(&rig), [3, 1], "media removal, tray open");
        assert_eq!(poll(&rig), (0x02, 0x3a, 0x00));
        assert_eq!(poll(&rig), (0x02, 0x3a, 0x00), "stays not ready");
        assert_eq!(capacity(&rig), None);
        assert_eq!(
            drive_status(&rig),
            CdromStatus {
                has_medium: false,
                tray_open: true,
                locked: false
            }
        );
        let (_, data) = rig.packet(SEC, &[MECHANISM_STATUS, 0, 0, 0, 0, 0, 0, 0, 0, 8], 0xfffe);
        assert_eq!(data[1], 0x10, "door open");
        // Ejecting an empty drive again is fine, as in QEMU.
        assert_eq!(change(&rig, None, false), Ok(false));
        // Closing the empty tray from the guest: still no disc.
        rig.packet(SEC, &[START_STOP_UNIT, 0, 0, 0, 0x03], 0xfffe);
        assert_eq!(poll(&rig), (0x02, 0x3a, 0x00));
    }

    #[test]
    fn a_guest_lock_refuses_the_host_until_forced() {
        let (rig, _iso) = cd_rig(Some(ISO_SIZE));
        rig.packet(SEC, &[PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 1], 0xfffe);
        assert!(drive_status(&rig).locked);
        let other = image(4 * 2048);
        assert_eq!(
            change(&rig, None, false),
            Err(super::super::CdromChangeError::Locked)
        );
        assert_eq!(
            change(&rig, Some(&other), false),
            Err(super::super::CdromChangeError::Locked)
        );
        // The guest is asked to eject, and its disc is untouched.
        assert_eq!(media_event(&rig), [1, 2], "eject request, media present");
        assert_eq!(poll(&rig), (0, 0, 0));
        assert_eq!(capacity(&rig), Some(63));
        // Forced: out it comes, and the lock is gone.
        assert_eq!(change(&rig, None, true), Ok(true));
        assert_eq!(
            drive_status(&rig),
            CdromStatus {
                has_medium: false,
                tray_open: true,
                locked: false
            }
        );
        assert_eq!(poll(&rig), (0x02, 0x3a, 0x00));
        // The guest's own eject while locked is refused too.
        change(&rig, Some(&other), false).unwrap();
        assert_eq!(poll(&rig), (0x02, 0x3a, 0x00));
        assert_eq!(poll(&rig), (0x06, 0x28, 0x00));
        rig.packet(SEC, &[PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 1], 0xfffe);
        let (status, _) = rig.packet(SEC, &[START_STOP_UNIT, 0, 0, 0, 0x02], 0xfffe);
        assert_eq!(status & STATUS_ERR, STATUS_ERR);
        assert_eq!(request_sense(&rig), (0x05, 0x53, 0x02));
        assert_eq!(capacity(&rig), Some(3), "the disc stays in");
    }

    #[test]
    fn guest_eject_and_load_keep_the_disc_in_the_tray() {
        let (rig, _iso) = cd_rig(Some(ISO_SIZE));
        assert!(rig.ctrl.lock().unwrap().cdrom_loaded(1, 0));
        // Locked: the guest cannot eject; unlocked it can.
        rig.packet(SEC, &[PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 1], 0xfffe);
        let (status, _) = rig.packet(SEC, &[START_STOP_UNIT, 0, 0, 0, 0x02], 0xfffe);
        assert_eq!(status & STATUS_ERR, STATUS_ERR);
        assert_eq!(request_sense(&rig), (0x05, 0x53, 0x02));
        assert!(
            rig.ctrl.lock().unwrap().take_guest_tray_moves().is_empty(),
            "a refused eject moves nothing"
        );
        rig.packet(SEC, &[PREVENT_ALLOW_MEDIUM_REMOVAL], 0xfffe);
        let (status, _) = rig.packet(SEC, &[START_STOP_UNIT, 0, 0, 0, 0x02], 0xfffe);
        assert_eq!(status & STATUS_ERR, 0);
        assert!(!rig.ctrl.lock().unwrap().cdrom_loaded(1, 0));
        // Ejecting an open tray again moves nothing more.
        rig.packet(SEC, &[START_STOP_UNIT, 0, 0, 0, 0x02], 0xfffe);
        assert_eq!(
            rig.ctrl.lock().unwrap().take_guest_tray_moves(),
            [(1, 0, true)]
        );
        assert!(rig.ctrl.lock().unwrap().take_guest_tray_moves().is_empty());
        assert_eq!(media_event(&rig), [3, 1], "media removal, tray open");
        let (_, data) = rig.packet(SEC, &[MECHANISM_STATUS, 0, 0, 0, 0, 0, 0, 0, 0, 8], 0xfffe);
        assert_eq!(data[1], 0x10, "door open");
        assert_eq!(poll(&rig), (0x02, 0x3a, 0x00));
        // Load: the same disc is back, without a unit attention (the guest
        // closed the tray itself).
        rig.packet(SEC, &[START_STOP_UNIT, 0, 0, 0, 0x03], 0xfffe);
        assert_eq!(media_event(&rig), [2, 2]);
        assert_eq!(poll(&rig), (0, 0, 0));
        assert_eq!(capacity(&rig), Some(63));
        assert_eq!(
            rig.ctrl.lock().unwrap().take_guest_tray_moves(),
            [(1, 0, false)]
        );
        // A guest that toggles without the host looking keeps the latest.
        for _ in 0..MAX_TRAY_MOVES {
            rig.packet(SEC, &[START_STOP_UNIT, 0, 0, 0, 0x02], 0xfffe);
            rig.packet(SEC, &[START_STOP_UNIT, 0, 0, 0, 0x03], 0xfffe);
        }
        let moves = rig.ctrl.lock().unwrap().take_guest_tray_moves();
        assert_eq!(moves.len(), MAX_TRAY_MOVES);
        assert_eq!(moves.last(), Some(&(1, 0, false)));
    }

    #[test]
    fn the_host_opens_and_closes_the_tray_and_takes_the_disc_out() {
        let (rig, _iso) = cd_rig(Some(ISO_SIZE));
        let ctrl = || rig.ctrl.lock().unwrap();
        assert_eq!(
            ctrl().remove_cdrom_medium(1, 0).err(),
            Some(CdromChangeError::TrayClosed)
        );
        // Locked: the tray stays shut, the guest is asked to eject.
        rig.packet(SEC, &[PREVENT_ALLOW_MEDIUM_REMOVAL, 0, 0, 0, 1], 0xfffe);
        assert_eq!(
            ctrl().open_cdrom_tray(1, 0, false),
            Err(CdromChangeError::Locked)
        );
        assert_eq!(media_event(&rig), [1, 2], "eject request, disc present");
        assert_eq!(ctrl().open_cdrom_tray(1, 0, true), Ok(true));
        assert_eq!(ctrl().open_cdrom_tray(1, 0, false), Ok(false));
        assert_eq!(
            drive_status(&rig),
            CdromStatus {
                has_medium: true,
                tray_open: true,
                locked: false
            }
        );
        assert_eq!(poll(&rig), (0x02, 0x3a, 0x00));
        // Closed again: the same disc, announced as a new one.
        assert_eq!(ctrl().close_cdrom_tray(1, 0), Ok(true));
        assert_eq!(ctrl().close_cdrom_tray(1, 0), Ok(false));
        assert_eq!(media_event(&rig), [2, 2]);
        assert_eq!(poll(&rig), (0x02, 0x3a, 0x00));
        assert_eq!(poll(&rig), (0x06, 0x28, 0x00));
        assert_eq!(capacity(&rig), Some(63));
        // Out of the open tray, and the drive stays empty once closed.
        assert_eq!(ctrl().open_cdrom_tray(1, 0, false), Ok(true));
        assert!(ctrl().remove_cdrom_medium(1, 0).unwrap().is_some());
        assert!(ctrl().remove_cdrom_medium(1, 0).unwrap().is_none());
        assert_eq!(ctrl().close_cdrom_tray(1, 0), Ok(true));
        assert_eq!(poll(&rig), (0x02, 0x3a, 0x00));
        assert!(
            ctrl().take_guest_tray_moves().is_empty(),
            "the host's moves are the host's to report"
        );
        assert_eq!(
            ctrl().open_cdrom_tray(0, 0, false),
            Err(CdromChangeError::NoDrive)
        );
    }

    #[test]
    fn toc_configuration_mode_pages_and_disc_information() {
        let (rig, _iso) = cd_rig(Some(ISO_SIZE));
        let (_, toc) = rig.packet(SEC, &[READ_TOC_PMA_ATIP, 0, 0, 0, 0, 0, 0, 0, 100], 0xfffe);
        assert_eq!(
            toc,
            [0, 18, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0, 0, 0x14, 0xaa, 0, 0, 0, 0, 64]
        );
        let (_, toc) = rig.packet(
            SEC,
            &[READ_TOC_PMA_ATIP, 2, 0, 0, 0, 0, 0xaa, 0, 100],
            0xfffe,
        );
        assert_eq!(&toc[8..12], &[0, 0, 2, 64], "lead-out at 00:02:64 (MSF)");
        let (_, session) = rig.packet(SEC, &[READ_TOC_PMA_ATIP, 0, 1, 0, 0, 0, 0, 0, 12], 0xfffe);
        assert_eq!(session, [0, 10, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0]);
        let (_, config) = rig.packet(SEC, &[GET_CONFIGURATION, 0, 0, 0, 0, 0, 0, 1, 0], 0xfffe);
        assert_eq!(&config[6..8], &[0, 8], "CD-ROM profile");
        assert_eq!(be32(&config[0..4]) as usize, config.len() - 4);
        let (_, one) = rig.packet(SEC, &[GET_CONFIGURATION, 2, 0, 3, 0, 0, 0, 0, 100], 0xfffe);
        assert_eq!(
            &one[8..12],
            &[0, 3, 3, 4],
            "only the removable medium feature"
        );
        let (_, page) = rig.packet(SEC, &[MODE_SENSE_10, 0, 0x2a, 0, 0, 0, 0, 0, 100], 0xfffe);
        assert_eq!((page[8], page[9]), (0x2a, 18));
        assert_eq!(be16(&page[0..2]), page.len() - 2);
        let (_, all) = rig.packet(SEC, &[MODE_SENSE_10, 0, 0x3f, 0, 0, 0, 0, 0, 100], 0xfffe);
        assert_eq!(all[8], 0x01);
        assert_eq!(all[16], 0x2a);
        let (status, _) = rig.packet(SEC, &[MODE_SENSE_10, 0, 0x05, 0, 0, 0, 0, 0, 100], 0xfffe);
        assert_eq!(status & STATUS_ERR, STATUS_ERR);
        let (_, info) = rig.packet(
            SEC,
            &[READ_DISC_INFORMATION, 0, 0, 0, 0, 0, 0, 0, 34],
            0xfffe,
        );
        assert_eq!(info.len(), 34);
        assert_eq!(info[2], 0x0e);
        // Allocation length cuts the reply.
        let (_, short) = rig.packet(SEC, &[INQUIRY, 0, 0, 0, 5], 0xfffe);
        assert_eq!(short.len(), 5);
    }

    #[test]
    fn big_images_are_dvds() {
        let rig = Rig::new();
        let file = tempfile::NamedTempFile::new().unwrap();
        file.as_file().set_len((CD_MAX_SECTORS + 1) * 2048).unwrap();
        let disc = RawFile::open(file.path(), true).unwrap();
        rig.ctrl
            .lock()
            .unwrap()
            .attach(1, 1, IdeMedia::Cdrom(Some(Box::new(disc))));
        rig.outb(SEC + 6, 0xb0);
        let (_, config) = rig.packet(SEC, &[GET_CONFIGURATION, 0, 0, 0, 0, 0, 0, 0, 8], 0xfffe);
        assert_eq!(&config[6..8], &[0, 0x10]);
    }

    #[test]
    fn packet_dma_read() {
        let (rig, _iso) = cd_rig(Some(ISO_SIZE));
        let mut ctrl = rig.ctrl.lock().unwrap();
        ctrl.write_config(0x04, &[0x05, 0]); // I/O and bus master
        drop(ctrl);
        // PRD: 4 KiB at 0x10000 then 2 KiB at 0x20000.
        let prd = [
            0x00, 0x00, 0x01, 0x00, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00, 0x02, 0x00, 0x00, 0x08,
            0x00, 0x80,
        ];
        rig.mem.write_slice(&prd, GuestAddress(0x8000)).unwrap();
        rig.ctrl
            .lock()
            .unwrap()
            .write_bar(4, 8 + 4, &0x8000u32.to_le_bytes());
        rig.outb(SEC + 1, 0x01); // DMA
        rig.outb(SEC + 7, 0xa0);
        rig.outs(SEC, &[READ_10, 0, 0, 0, 0, 2, 0, 0, 3, 0, 0, 0]);
        assert_eq!(
            rig.inb(SEC + 7) & STATUS_DRQ,
            STATUS_DRQ,
            "waiting for the bus master"
        );
        rig.ctrl.lock().unwrap().write_bar(4, 8, &[0x09]);
        assert_eq!(rig.inb(SEC + 7), STATUS_DRDY | 0x10);
        assert_eq!(rig.inb(SEC + 2), 3);
        assert_eq!(
            read_bm_status(&rig, 1) & 0x07,
            0x04,
            "done, table used up, interrupt"
        );
        let mut back = vec![0; 4096];
        rig.mem
            .read_slice(&mut back, GuestAddress(0x10000))
            .unwrap();
        assert_eq!(back, pattern(2 * 2048, 4096));
        let mut back = vec![0; 2048];
        rig.mem
            .read_slice(&mut back, GuestAddress(0x20000))
            .unwrap();
        assert_eq!(back, pattern(4 * 2048, 2048));
    }

    #[test]
    fn garbage_packets_and_commands_do_not_hurt() {
        let (rig, iso) = cd_rig(Some(ISO_SIZE));
        let mut seed = 0x9e37_79b9u32;
        let mut next = || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for opcode in 0..=255u8 {
            for _ in 0..8 {
                let mut cdb = [0u8; 12];
                cdb.iter_mut().for_each(|b| *b = next() as u8);
                cdb[0] = opcode;
                // Keep reads short so the test stays quick; ranges still vary.
                if matches!(opcode, READ_10 | READ_12) {
                    cdb[6..10].fill(0);
                    cdb[8] = next() as u8 & 3;
                }
                let limit = next() as u16;
                rig.outb(SEC + 1, 0);
                rig.outb(SEC + 4, limit as u8);
                rig.outb(SEC + 5, (limit >> 8) as u8);
                rig.outb(SEC + 7, 0xa0);
                rig.outs(SEC, &cdb);
                for _ in 0..64 {
                    if rig.inb(SEC + 7) & STATUS_DRQ == 0 {
                        break;
                    }
                    let _ = rig.ins(SEC, 0x10000);
                }
                assert_eq!(
                    rig.inb(SEC + 7) & (STATUS_DRQ | 0x80),
                    0,
                    "opcode {opcode:#x}"
                );
            }
        }
        for command in 0..=255u8 {
            rig.outb(SEC + 1, next() as u8);
            rig.outb(SEC + 7, command);
            let _ = rig.ins(SEC, 1024);
            rig.outs(SEC, &[0; 12]);
            let _ = rig.ins(SEC, 0x10000);
        }
        // Still a working drive (garbage may have ejected the disc: put it back).
        rig.outb(SEC + 7, 0x08); // DEVICE RESET
        assert_eq!(rig.signature(SEC)[2..], [0x14, 0xeb]);
        // (It may also have locked the tray: force.)
        change(&rig, iso.as_ref(), true).unwrap();
        assert_eq!(poll(&rig), (0x02, 0x3a, 0x00));
        assert_eq!(poll(&rig), (0x06, 0x28, 0x00));
        let (_, data) = rig.packet(SEC, &[READ_10, 0, 0, 0, 0, 1, 0, 0, 1], 0xfffe);
        assert_eq!(data, pattern(2048, 2048));
    }
}
