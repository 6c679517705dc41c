//! CD-ROM discs changed while the VM runs: `vireo change-media --live`
//! and QMP's `eject`, `blockdev-change-medium`, `blockdev-open-tray`,
//! `blockdev-close-tray`, `blockdev-remove-medium` and `query-block`
//! against a started VM, seen from inside by a tiny guest that drives the
//! IDE CD-ROM as an ATAPI driver does (TEST UNIT READY, REQUEST SENSE,
//! READ CAPACITY, GET EVENT STATUS NOTIFICATION, PREVENT ALLOW MEDIUM
//! REMOVAL, START STOP UNIT, READ(10)) and prints every change it notices
//! on COM1; and by QMP clients listening for `DEVICE_TRAY_MOVED`.

mod common;

use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::asm::{firmware, Program};
use common::{guest, kvm_available, Domain, Home};
use iced_x86::code_asm::*;
use serde_json::{json, Value};
use vireo::control::{ControlClient, ControlError};

const TIMEOUT: Duration = Duration::from_secs(120);
const NAME: &str = "media";

/// The secondary IDE channel's command block (the CD-ROM is its master, hdc).
const DATA: u16 = 0x170;
const FEATURES: u16 = 0x171;
const BYTE_COUNT_LOW: u16 = 0x174;
const BYTE_COUNT_HIGH: u16 = 0x175;
const DEVICE: u16 = 0x176;
const STATUS_COMMAND: u16 = 0x177;
const DEVICE_CONTROL: u16 = 0x376;

/// Where the guest keeps its packet, the reply and what it last printed.
const CDB: u32 = 0x600;
const REPLY: u32 = 0x700;
const LAST: u32 = 0x800;

/// Emits code that stores a 12-byte packet at ES:CDB.
fn set_cdb(a: &mut CodeAssembler, bytes: [u8; 12]) {
    for (i, chunk) in bytes.chunks(4).enumerate() {
        let value = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        a.mov(dword_ptr(CDB + 4 * i as u32).es(), value).unwrap();
    }
}

/// A firmware guest that polls the CD-ROM and prints what changes:
/// `event NN` for a media event, `sense KK AA QQ` when TEST UNIT READY
/// or READ CAPACITY fails, `capacity NNNNNNNN` (the last LBA) when both
/// succeed. Typing `L`
/// on the serial console locks the tray (`locked`), `U` unlocks it, `E`
/// ejects (START STOP UNIT, LoEj: `ejected` or `eject refused`), `C`
/// closes the tray (`closed`), `R` reads sector 0 and prints its first
/// four bytes (`data XXXXXXXX`).
fn cdrom_watcher() -> Vec<u8> {
    firmware(|p: &mut Program| {
        let a = &mut p.a;
        let mut packet = a.create_label();
        let mut main = a.create_label();
        let mut no_input = a.create_label();
        let mut skip_event = a.create_label();
        let mut ready = a.create_label();
        let mut failed = a.create_label();
        a.xor(ax, ax).unwrap();
        a.mov(es, ax).unwrap();
        a.mov(dword_ptr(LAST).es(), 0xffff_ffffu32).unwrap();
        // nIEN: the guest polls, as SeaBIOS does.
        a.mov(dx, DEVICE_CONTROL as u32).unwrap();
        a.mov(al, 0x02u32).unwrap();
        a.out(dx, al).unwrap();
        p.print("watching\n");

        let a = &mut p.a;
        a.set_label(&mut main).unwrap();
        // A key from the serial console?
        a.mov(dx, 0x3fdu32).unwrap();
        a.in_(al, dx).unwrap();
        a.test(al, 1u32).unwrap();
        a.jz(no_input).unwrap();
        a.mov(dx, 0x3f8u32).unwrap();
        a.in_(al, dx).unwrap();
        // Keys that send one packet: what each prints when it succeeds,
        // and when it fails (CHECK CONDITION), if that is told apart.
        let keyed: [(u8, [u8; 12], &str, Option<&str>); 4] = [
            // PREVENT ALLOW MEDIUM REMOVAL: prevent, then allow.
            (
                b'L',
                [0x1e, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0],
                "locked\n",
                None,
            ),
            (
                b'U',
                [0x1e, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                "unlocked\n",
                None,
            ),
            // START STOP UNIT, LoEj, Start 0: open the tray.
            (
                b'E',
                [0x1b, 0, 0, 0, 0x02, 0, 0, 0, 0, 0, 0, 0],
                "ejected\n",
                Some("eject refused\n"),
            ),
            // START STOP UNIT, LoEj, Start 1: close the tray.
            (
                b'C',
                [0x1b, 0, 0, 0, 0x03, 0, 0, 0, 0, 0, 0, 0],
                "closed\n",
                None,
            ),
        ];
        for (key, cdb, done, refusal) in keyed {
            let a = &mut p.a;
            let mut other_key = a.create_label();
            a.cmp(al, key as u32).unwrap();
            a.jne(other_key).unwrap();
            set_cdb(a, cdb);
            a.call(packet).unwrap();
            if let Some(refusal) = refusal {
                let mut succeeded = a.create_label();
                a.test(al, 1u32).unwrap();
                a.jz(succeeded).unwrap();
                p.print(refusal);
                p.a.jmp(no_input).unwrap();
                p.a.set_label(&mut succeeded).unwrap();
            }
            p.print(done);
            p.a.jmp(no_input).unwrap();
            p.a.set_label(&mut other_key).unwrap();
        }
        let a = &mut p.a;
        // R: READ(10) of sector 0, its first four bytes printed. The
        // sector overwrites LAST, so whatever comes next is printed anew.
        a.cmp(al, b'R' as u32).unwrap();
        a.jne(no_input).unwrap();
        set_cdb(a, [0x28, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0]);
        a.call(packet).unwrap();
        a.mov(ebx, dword_ptr(REPLY).es()).unwrap();
        a.mov(dword_ptr(LAST).es(), 0xffff_ffffu32).unwrap();
        a.push(ebx).unwrap();
        p.print("data ");
        let a = &mut p.a;
        a.pop(ebx).unwrap();
        for _ in 0..4 {
            a.mov(al, bl).unwrap();
            a.push(ebx).unwrap();
            a.call(p.puthex8).unwrap();
            a.pop(ebx).unwrap();
            a.shr(ebx, 8u32).unwrap();
        }
        p.print("\n");

        // GET EVENT STATUS NOTIFICATION, polled, media class.
        let a = &mut p.a;
        a.set_label(&mut no_input).unwrap();
        set_cdb(a, [0x4a, 1, 0, 0, 0x10, 0, 0, 0, 8, 0, 0, 0]);
        a.call(packet).unwrap();
        a.test(al, 1u32).unwrap();
        a.jnz(skip_event).unwrap();
        a.mov(al, byte_ptr(REPLY + 4).es()).unwrap();
        a.and(al, 0x0fu32).unwrap();
        a.jz(skip_event).unwrap();
        a.push(ax).unwrap();
        p.print("event ");
        let a = &mut p.a;
        a.pop(ax).unwrap();
        a.call(p.puthex8).unwrap();
        p.print("\n");

        // TEST UNIT READY; on CHECK CONDITION, REQUEST SENSE.
        let a = &mut p.a;
        a.set_label(&mut skip_event).unwrap();
        set_cdb(a, [0; 12]);
        a.call(packet).unwrap();
        a.test(al, 1u32).unwrap();
        a.jz(ready).unwrap();
        a.set_label(&mut failed).unwrap();
        set_cdb(a, [0x03, 0, 0, 0, 18, 0, 0, 0, 0, 0, 0, 0]);
        a.call(packet).unwrap();
        // ebx = FF kk AA QQ
        a.movzx(ebx, byte_ptr(REPLY + 2).es()).unwrap();
        a.and(bl, 0x0fu32).unwrap();
        a.or(bx, 0xff00u32).unwrap();
        a.shl(ebx, 16u32).unwrap();
        a.mov(bh, byte_ptr(REPLY + 12).es()).unwrap();
        a.mov(bl, byte_ptr(REPLY + 13).es()).unwrap();
        a.cmp(ebx, dword_ptr(LAST).es()).unwrap();
        a.je(main).unwrap();
        a.mov(dword_ptr(LAST).es(), ebx).unwrap();
        p.print("sense ");
        let a = &mut p.a;
        a.mov(eax, ebx).unwrap();
        a.shr(eax, 16u32).unwrap();
        a.call(p.puthex8).unwrap();
        p.print(" ");
        let a = &mut p.a;
        a.mov(al, bh).unwrap();
        a.call(p.puthex8).unwrap();
        p.print(" ");
        let a = &mut p.a;
        a.mov(al, bl).unwrap();
        a.call(p.puthex8).unwrap();
        p.print("\n");
        let a = &mut p.a;
        a.jmp(main).unwrap();

        // READ CAPACITY: the last LBA, big-endian.
        a.set_label(&mut ready).unwrap();
        set_cdb(a, [0x25, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0]);
        a.call(packet).unwrap();
        a.test(al, 1u32).unwrap();
        a.jnz(failed).unwrap();
        a.mov(ebx, dword_ptr(REPLY).es()).unwrap();
        a.bswap(ebx).unwrap();
        a.cmp(ebx, dword_ptr(LAST).es()).unwrap();
        a.je(main).unwrap();
        a.mov(dword_ptr(LAST).es(), ebx).unwrap();
        p.print("capacity ");
        let a = &mut p.a;
        a.mov(eax, ebx).unwrap();
        a.shr(eax, 16u32).unwrap();
        a.call(p.puthex16).unwrap();
        a.mov(ax, bx).unwrap();
        a.call(p.puthex16).unwrap();
        p.print("\n");
        let a = &mut p.a;
        a.jmp(main).unwrap();

        // packet: sends the packet at ES:CDB by PIO to the secondary
        // master, reads the reply to ES:REPLY; returns the status in AL.
        let mut wait = a.create_label();
        let mut block = a.create_label();
        let mut words = a.create_label();
        let mut send = a.create_label();
        let mut done = a.create_label();
        a.set_label(&mut packet).unwrap();
        a.mov(dx, DEVICE as u32).unwrap();
        a.mov(al, 0xa0u32).unwrap();
        a.out(dx, al).unwrap();
        a.call(wait).unwrap();
        a.mov(dx, FEATURES as u32).unwrap();
        a.xor(al, al).unwrap();
        a.out(dx, al).unwrap();
        a.mov(dx, BYTE_COUNT_LOW as u32).unwrap();
        a.out(dx, al).unwrap();
        a.mov(dx, BYTE_COUNT_HIGH as u32).unwrap();
        a.mov(al, 0x08u32).unwrap();
        a.out(dx, al).unwrap();
        a.mov(dx, STATUS_COMMAND as u32).unwrap();
        a.mov(al, 0xa0u32).unwrap();
        a.out(dx, al).unwrap();
        a.call(wait).unwrap();
        a.test(al, 0x08u32).unwrap();
        a.jz(done).unwrap();
        a.mov(si, CDB).unwrap();
        a.mov(cx, 6u32).unwrap();
        a.mov(dx, DATA as u32).unwrap();
        a.set_label(&mut send).unwrap();
        a.mov(ax, word_ptr(si).es()).unwrap();
        a.out(dx, ax).unwrap();
        a.add(si, 2u32).unwrap();
        a.loop_(send).unwrap();
        a.mov(di, REPLY).unwrap();
        a.set_label(&mut block).unwrap();
        a.call(wait).unwrap();
        a.test(al, 0x08u32).unwrap();
        a.jz(done).unwrap();
        a.mov(dx, BYTE_COUNT_HIGH as u32).unwrap();
        a.in_(al, dx).unwrap();
        a.mov(ah, al).unwrap();
        a.mov(dx, BYTE_COUNT_LOW as u32).unwrap();
        a.in_(al, dx).unwrap();
        a.mov(cx, ax).unwrap();
        a.shr(cx, 1u32).unwrap();
        a.mov(dx, DATA as u32).unwrap();
        a.set_label(&mut words).unwrap();
        a.in_(ax, dx).unwrap();
        a.mov(word_ptr(di).es(), ax).unwrap();
        a.add(di, 2u32).unwrap();
        a.loop_(words).unwrap();
        a.jmp(block).unwrap();
        a.set_label(&mut done).unwrap();
        a.ret().unwrap();
        // wait: until BSY clears; the status in AL.
        a.set_label(&mut wait).unwrap();
        a.mov(dx, STATUS_COMMAND as u32).unwrap();
        let mut again = a.create_label();
        a.set_label(&mut again).unwrap();
        a.in_(al, dx).unwrap();
        a.test(al, 0x80u32).unwrap();
        a.jnz(again).unwrap();
        a.ret().unwrap();
    })
}

/// A defined, started VM with the watcher as firmware, a CD-ROM (hdc)
/// and a hard disk (hda); its serial console read on a thread.
struct Started {
    home: Home,
    serial: Arc<Mutex<Vec<u8>>>,
    console: UnixStream,
}

impl Started {
    fn new(cdrom: &Path) -> Self {
        Self::start(cdrom, true)
    }

    /// `typed`: the CD-ROM's definition says `<driver type='raw'/>`;
    /// otherwise it names no format.
    fn start(cdrom: &Path, typed: bool) -> Self {
        let home = Home::new();
        let bios = guest::write(home.dir.path(), "watcher.bin", &cdrom_watcher());
        let disk = guest::raw_disk(home.dir.path(), "disk.img", &[], 1 << 20);
        let domain = Domain::new(NAME).firmware(&bios);
        let domain = if typed {
            domain.disk("cdrom", cdrom, "hdc", "ide")
        } else {
            domain.device(&format!(
                "<disk type='file' device='cdrom'><source file='{}'/><target dev='hdc' bus='ide'/><readonly/></disk>",
                cdrom.display()
            ))
        };
        let domain = domain.disk("disk", &disk, "hda", "ide");
        let xml = home.path("domain.xml");
        std::fs::write(&xml, domain.xml()).unwrap();
        home.ok(&["define", xml.to_str().unwrap()]);
        home.ok(&["start", NAME]);
        let (console, serial) = common::attach_serial(&home, NAME);
        Self {
            home,
            serial,
            console,
        }
    }

    fn serial(&self) -> String {
        String::from_utf8_lossy(&self.serial.lock().unwrap()).into_owned()
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.home.path(&format!("logs/{NAME}.log"))).unwrap_or_default()
    }

    /// Waits until the serial output after byte `from` has `lines` in this
    /// order; returns where the last one ends.
    fn expect(&self, from: usize, lines: &[&str]) -> usize {
        let start = Instant::now();
        loop {
            let seen = self.serial();
            let mut at = from.min(seen.len());
            let mut all = true;
            for line in lines {
                match seen[at..].find(&format!("{line}\n")) {
                    Some(i) => at += i + line.len() + 1,
                    None => {
                        all = false;
                        break;
                    }
                }
            }
            if all {
                return at;
            }
            assert!(
                start.elapsed() < TIMEOUT,
                "{lines:?} not seen in order after byte {from}: {:?}\nlog: {}",
                &seen[from.min(seen.len())..],
                self.log()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Two sequences that interleave as the guest's polling loop meets
    /// them (an event may be printed before or after the sense it goes
    /// with); returns where the later one ends.
    fn expect_both(&self, from: usize, first: &[&str], second: &[&str]) -> usize {
        self.expect(from, first).max(self.expect(from, second))
    }

    fn qmp(&self) -> ControlClient {
        ControlClient::connect(self.home.vm_files(NAME).control()).unwrap()
    }

    fn hdc(&self) -> Value {
        let devices = self.qmp().execute("query-block", Value::Null).unwrap();
        devices
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["device"] == "hdc")
            .cloned()
            .unwrap_or_else(|| panic!("no hdc in {devices}"))
    }

    fn type_key(&mut self, key: &[u8]) {
        self.console.write_all(key).unwrap();
    }
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.home.run(&["destroy", NAME]);
    }
}

fn iso(dir: &Path, name: &str, sectors: usize) -> PathBuf {
    guest::write(dir, name, &vec![0x42; sectors * 2048])
}

fn refusal(error: ControlError) -> (String, String) {
    match error {
        ControlError::Command { class, desc } => (class, desc),
        other => panic!("not a refusal: {other}"),
    }
}

#[test]
fn discs_change_and_eject_while_the_guest_watches() {
    if !kvm_available() {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let old = iso(files.path(), "old.iso", 64);
    let new = iso(files.path(), "new.iso", 8);
    let vm = Started::new(&old);
    let mut at = vm.expect(0, &["watching", "capacity 0000003f"]);

    // The state QMP tools read.
    let hdc = vm.hdc();
    assert_eq!(hdc["qdev"], "ide0-1-0");
    assert_eq!(hdc["removable"], true);
    assert_eq!(hdc["locked"], false);
    assert_eq!(hdc["tray_open"], false);
    assert_eq!(hdc["inserted"]["file"], old.to_str().unwrap());
    assert_eq!(hdc["inserted"]["ro"], true);
    assert_eq!(hdc["inserted"]["drv"], "raw");
    assert_eq!(hdc["inserted"]["image"]["virtual-size"], 64 * 2048);

    // A new disc, as a user swaps it: the guest sees the tray was open,
    // then the unit attention, then the new disc's size.
    let mut listener = vm.qmp();
    let out = vm.home.ok(&[
        "change-media",
        NAME,
        "hdc",
        new.to_str().unwrap(),
        "--update",
        "--live",
    ]);
    assert_eq!(out.trim(), "Successfully updated media.");
    at = vm.expect_both(
        at,
        &["event 02"],
        &["sense 02 3a 00", "sense 06 28 00", "capacity 00000007"],
    );
    assert_eq!(vm.hdc()["inserted"]["file"], new.to_str().unwrap());
    // QMP clients hear the tray open and close, as QEMU tells libvirt.
    for open in [true, false] {
        let event = listener
            .next_event(Duration::from_secs(10))
            .unwrap()
            .expect("a DEVICE_TRAY_MOVED event");
        assert_eq!(event.name, "DEVICE_TRAY_MOVED");
        assert_eq!(
            event.data,
            json!({"device": "hdc", "id": "ide0-1-0", "tray-open": open})
        );
    }
    drop(listener);
    // --live alone leaves the definition as it was.
    let xml = vm.home.ok(&["dumpxml", NAME]);
    assert!(xml.contains(old.to_str().unwrap()), "{xml}");

    // A file that is not there: a clear error, the disc stays, the VM runs.
    let missing = files.path().join("missing.iso");
    let error = vm.home.fails(&[
        "change-media",
        NAME,
        "hdc",
        missing.to_str().unwrap(),
        "--update",
        "--live",
    ]);
    assert!(
        error.contains("missing.iso") && error.contains("No such file or directory"),
        "{error}"
    );
    let (class, desc) = refusal(
        vm.qmp()
            .execute(
                "blockdev-change-medium",
                json!({"id": "hdc", "filename": missing.to_str().unwrap(), "format": "raw"}),
            )
            .unwrap_err(),
    );
    assert_eq!(class, "GenericError");
    assert!(
        desc.starts_with(&format!("Could not open '{}': ", missing.display())),
        "{desc}"
    );
    assert_eq!(vm.hdc()["inserted"]["file"], new.to_str().unwrap());
    assert_eq!(
        vm.qmp().execute("query-status", Value::Null).unwrap()["status"],
        "running"
    );

    // Eject: the guest finds no medium, and the tray stays open.
    let out = vm
        .home
        .ok(&["change-media", NAME, "hdc", "--eject", "--live"]);
    assert_eq!(out.trim(), "Successfully ejected media.");
    at = vm.expect_both(at, &["event 03"], &["sense 02 3a 00"]);
    let hdc = vm.hdc();
    assert_eq!(hdc["tray_open"], true);
    assert!(hdc.get("inserted").is_none(), "{hdc}");

    // Back in through QMP by libvirt's alias, and into the definition too.
    vm.qmp()
        .execute(
            "blockdev-change-medium",
            json!({"id": "ide0-1-0", "filename": old.to_str().unwrap()}),
        )
        .unwrap();
    at = vm.expect_both(at, &["event 02"], &["sense 06 28 00", "capacity 0000003f"]);
    vm.home.ok(&[
        "change-media",
        NAME,
        "hdc",
        new.to_str().unwrap(),
        "--live",
        "--config",
    ]);
    at = vm.expect(at, &["capacity 00000007"]);
    let xml = vm.home.ok(&["dumpxml", NAME]);
    assert!(xml.contains(new.to_str().unwrap()), "{xml}");

    // A reset starts the machine over with the disc the user put in.
    vm.qmp().execute("system_reset", Value::Null).unwrap();
    vm.expect(at, &["watching", "capacity 00000007"]);
    assert_eq!(vm.hdc()["inserted"]["file"], new.to_str().unwrap());

    // Names QEMU would not find, and a disk that is not removable.
    let (class, desc) = refusal(
        vm.qmp()
            .execute("eject", json!({"device": "hdq"}))
            .unwrap_err(),
    );
    assert_eq!(
        (class.as_str(), desc.as_str()),
        ("DeviceNotFound", "Device 'hdq' not found")
    );
    let (class, desc) = refusal(vm.qmp().execute("eject", json!({"id": "hda"})).unwrap_err());
    assert_eq!(
        (class.as_str(), desc.as_str()),
        ("GenericError", "Device 'hda' is not removable")
    );
    let error = vm
        .home
        .fails(&["change-media", NAME, "hda", "--eject", "--live"]);
    assert!(error.contains("not removable"), "{error}");
    drop(vm);
    drop(files);
}

#[test]
fn a_locked_tray_refuses_eject_unless_forced() {
    if !kvm_available() {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let old = iso(files.path(), "old.iso", 16);
    let mut vm = Started::new(&old);
    let mut at = vm.expect(0, &["watching", "capacity 0000000f"]);
    vm.type_key(b"L");
    at = vm.expect(at, &["locked"]);
    assert_eq!(vm.hdc()["locked"], true);

    let (class, desc) = refusal(
        vm.qmp()
            .execute("eject", json!({"device": "hdc"}))
            .unwrap_err(),
    );
    assert_eq!(class, "GenericError");
    assert_eq!(
        desc,
        "Device 'hdc' is locked and force was not specified, wait for tray to open and try again"
    );
    // The guest is asked to eject; its disc stays.
    at = vm.expect(at, &["event 01"]);
    let error = vm
        .home
        .fails(&["change-media", NAME, "hdc", "--eject", "--live"]);
    assert!(
        error.contains("is locked and force was not specified"),
        "{error}"
    );
    let hdc = vm.hdc();
    assert_eq!(hdc["inserted"]["file"], old.to_str().unwrap());
    assert_eq!(hdc["tray_open"], false);

    // Forced: out it comes, whatever the guest said.
    let out = vm
        .home
        .ok(&["change-media", NAME, "hdc", "--eject", "--live", "--force"]);
    assert_eq!(out.trim(), "Successfully ejected media.");
    vm.expect_both(at, &["event 03"], &["sense 02 3a 00"]);
    let hdc = vm.hdc();
    assert_eq!(hdc["locked"], false);
    assert_eq!(hdc["tray_open"], true);
    assert!(hdc.get("inserted").is_none(), "{hdc}");
    drop(vm);
    drop(files);
}

/// The next event a QMP client hears: a `DEVICE_TRAY_MOVED` of hdc with
/// the tray `open` or not.
fn expect_tray_moved(listener: &mut ControlClient, open: bool) {
    let event = listener
        .next_event(Duration::from_secs(10))
        .unwrap()
        .unwrap_or_else(|| panic!("no DEVICE_TRAY_MOVED (tray-open {open})"));
    assert_eq!(event.name, "DEVICE_TRAY_MOVED");
    assert_eq!(
        event.data,
        json!({"device": "hdc", "id": "ide0-1-0", "tray-open": open})
    );
}

/// No event within a second (the runner reports a guest's tray movement
/// within 50 ms).
fn expect_no_event(listener: &mut ControlClient) {
    let event = listener.next_event(Duration::from_secs(1)).unwrap();
    assert!(event.is_none(), "unexpected event {event:?}");
}

#[test]
fn the_guests_own_eject_and_load_are_reported() {
    if !kvm_available() {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let old = iso(files.path(), "old.iso", 16);
    let mut vm = Started::new(&old);
    let mut at = vm.expect(0, &["watching", "capacity 0000000f"]);
    let mut listener = vm.qmp();

    // START STOP UNIT opens the tray: QMP clients hear it, and query-block
    // shows the tray open with the disc still in it.
    vm.type_key(b"E");
    at = vm.expect_both(at, &["ejected"], &["sense 02 3a 00"]);
    expect_tray_moved(&mut listener, true);
    let hdc = vm.hdc();
    assert_eq!(hdc["tray_open"], true);
    assert_eq!(hdc["inserted"]["file"], old.to_str().unwrap());
    // And closes it: the same disc is read again.
    vm.type_key(b"C");
    at = vm.expect(at, &["closed", "capacity 0000000f"]);
    expect_tray_moved(&mut listener, false);
    assert_eq!(vm.hdc()["tray_open"], false);

    // Locked, the guest's own eject is refused and nothing moves.
    vm.type_key(b"L");
    at = vm.expect(at, &["locked"]);
    vm.type_key(b"E");
    vm.expect(at, &["eject refused"]);
    expect_no_event(&mut listener);
    assert_eq!(vm.hdc()["tray_open"], false);
    drop(vm);
    drop(files);
}

#[test]
fn the_tray_opens_and_closes_on_its_own_commands() {
    if !kvm_available() {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let old = iso(files.path(), "old.iso", 16);
    let mut vm = Started::new(&old);
    let mut at = vm.expect(0, &["watching", "capacity 0000000f"]);
    let mut listener = vm.qmp();
    vm.type_key(b"L");
    at = vm.expect(at, &["locked"]);

    // Locked and not forced: QEMU asks the guest to eject and succeeds;
    // the tray stays shut until the guest opens it.
    let answer = vm
        .qmp()
        .execute("blockdev-open-tray", json!({"device": "hdc"}))
        .unwrap();
    assert_eq!(answer, json!({}));
    at = vm.expect(at, &["event 01"]);
    expect_no_event(&mut listener);
    let hdc = vm.hdc();
    assert_eq!(
        (hdc["tray_open"].clone(), hdc["locked"].clone()),
        (json!(false), json!(true))
    );
    // The guest gives in: unlocks and ejects.
    vm.type_key(b"U");
    at = vm.expect(at, &["unlocked"]);
    vm.type_key(b"E");
    at = vm.expect(at, &["ejected"]);
    expect_tray_moved(&mut listener, true);

    // The host closes it: the guest finds the disc as a new one.
    vm.qmp()
        .execute("blockdev-close-tray", json!({"id": "ide0-1-0"}))
        .unwrap();
    expect_tray_moved(&mut listener, false);
    at = vm.expect_both(at, &["event 02"], &["sense 06 28 00", "capacity 0000000f"]);
    // Closing a closed tray moves nothing.
    vm.qmp()
        .execute("blockdev-close-tray", json!({"device": "hdc"}))
        .unwrap();
    expect_no_event(&mut listener);

    // A disc is taken out of an open tray only.
    let (class, desc) = refusal(
        vm.qmp()
            .execute("blockdev-remove-medium", json!({"id": "ide0-1-0"}))
            .unwrap_err(),
    );
    assert_eq!(
        (class.as_str(), desc.as_str()),
        ("GenericError", "Tray of device 'ide0-1-0' is not open")
    );
    // Forced open over the guest's lock, then emptied.
    vm.type_key(b"L");
    at = vm.expect(at, &["locked"]);
    vm.qmp()
        .execute(
            "blockdev-open-tray",
            json!({"id": "ide0-1-0", "force": true}),
        )
        .unwrap();
    expect_tray_moved(&mut listener, true);
    at = vm.expect(at, &["sense 02 3a 00"]);
    let hdc = vm.hdc();
    assert_eq!(hdc["tray_open"], true);
    assert_eq!(hdc["locked"], false);
    assert_eq!(hdc["inserted"]["file"], old.to_str().unwrap());
    vm.qmp()
        .execute("blockdev-remove-medium", json!({"id": "ide0-1-0"}))
        .unwrap();
    assert!(vm.hdc().get("inserted").is_none(), "{}", vm.hdc());
    vm.qmp()
        .execute("blockdev-close-tray", json!({"device": "hdc"}))
        .unwrap();
    expect_tray_moved(&mut listener, false);
    let hdc = vm.hdc();
    assert_eq!(hdc["tray_open"], false);
    assert!(hdc.get("inserted").is_none(), "{hdc}");
    // The drive stays empty: the guest sees no disc, and never a capacity.
    std::thread::sleep(Duration::from_millis(500));
    assert!(!vm.serial()[at..].contains("capacity"), "{}", vm.serial());

    // Names QEMU would not find, and a disk without a tray.
    let (class, desc) = refusal(
        vm.qmp()
            .execute("blockdev-open-tray", json!({"device": "hda"}))
            .unwrap_err(),
    );
    assert_eq!(
        (class.as_str(), desc.as_str()),
        ("GenericError", "Device 'hda' is not removable")
    );
    let (class, _) = refusal(
        vm.qmp()
            .execute("blockdev-close-tray", json!({"id": "hdq"}))
            .unwrap_err(),
    );
    assert_eq!(class, "DeviceNotFound");
    drop(vm);
    drop(files);
}

#[test]
fn a_qcow2_disc_is_read_through_its_format() {
    if !kvm_available() {
        return;
    }
    common::require_program("qemu-img");
    let files = tempfile::tempdir().unwrap();
    let old = iso(files.path(), "old.iso", 16);
    // A 24-sector disc whose first bytes say "DISC", as qcow2.
    let mut content = vec![0x42; 24 * 2048];
    content[..4].copy_from_slice(b"DISC");
    let raw = guest::write(files.path(), "disc.iso", &content);
    let qcow2 = files.path().join("disc.qcow2");
    let status = std::process::Command::new("qemu-img")
        .args(["convert", "-f", "raw", "-O", "qcow2"])
        .arg(&raw)
        .arg(&qcow2)
        .status()
        .unwrap();
    assert!(status.success());
    assert_ne!(
        std::fs::metadata(&qcow2).unwrap().len(),
        24 * 2048,
        "the container is not the disc"
    );

    // The definition names no format: the CLI sends the file's own.
    let mut vm = Started::start(&old, false);
    let mut at = vm.expect(0, &["watching", "capacity 0000000f"]);
    vm.type_key(b"R");
    at = vm.expect(at, &["data 42424242"]);
    vm.home.ok(&[
        "change-media",
        NAME,
        "hdc",
        qcow2.to_str().unwrap(),
        "--update",
        "--live",
    ]);
    at = vm.expect(at, &["sense 06 28 00", "capacity 00000017"]);
    vm.type_key(b"R");
    at = vm.expect(at, &["data 44495343"]);
    let hdc = vm.hdc();
    assert_eq!(hdc["inserted"]["drv"], "qcow2");
    assert_eq!(hdc["inserted"]["image"]["virtual-size"], 24 * 2048);

    // QMP: a format Vireo does not read is refused as QEMU refuses an
    // unknown driver, and the disc stays.
    let (class, desc) = refusal(
        vm.qmp()
            .execute(
                "blockdev-change-medium",
                json!({"id": "hdc", "filename": old.to_str().unwrap(), "format": "vmdk"}),
            )
            .unwrap_err(),
    );
    assert_eq!(
        (class.as_str(), desc.as_str()),
        ("GenericError", "Unknown driver: 'vmdk'")
    );
    assert_eq!(vm.hdc()["inserted"]["file"], qcow2.to_str().unwrap());
    // Without a format the VM probes, as QEMU does.
    vm.qmp()
        .execute(
            "blockdev-change-medium",
            json!({"id": "hdc", "filename": old.to_str().unwrap()}),
        )
        .unwrap();
    at = vm.expect(at, &["capacity 0000000f"]);
    assert_eq!(vm.hdc()["inserted"]["drv"], "raw");
    // The qcow2 disc is not the VM's own file: it is passed.
    let mut qmp = vm.qmp();
    let passed = pass(&mut qmp, &qcow2);
    qmp.execute(
        "blockdev-change-medium",
        json!({"id": "hdc", "filename": passed}),
    )
    .unwrap();
    at = vm.expect(at, &["capacity 00000017"]);
    vm.type_key(b"R");
    vm.expect(at, &["data 44495343"]);
    assert_eq!(vm.hdc()["inserted"]["drv"], "qcow2");
    drop(vm);
    drop(files);
}

/// Passes `path`, opened for reading, to the VM (`add-fd`); returns the
/// name it has there, `/dev/fdset/N`.
fn pass(qmp: &mut ControlClient, path: &Path) -> String {
    let file = std::fs::File::open(path).unwrap();
    let added = qmp
        .execute_with_fd("add-fd", json!({}), std::os::fd::AsFd::as_fd(&file))
        .unwrap();
    format!("/dev/fdset/{}", added["fdset-id"])
}

/// The confined VM process reads its own disc and nothing beside it: a
/// QMP client naming another file by path is refused, with a word on how
/// to pass it; passed as libvirt passes files to QEMU (`add-fd` with the
/// descriptor, then `/dev/fdset/N`), the same file goes in, is known by
/// its real path, and stays in across a reset.
#[test]
fn a_disc_beside_the_first_goes_in_only_when_passed_by_descriptor() {
    if !kvm_available() {
        return;
    }
    let files = tempfile::tempdir().unwrap();
    let old = iso(files.path(), "old.iso", 16);
    let beside = iso(files.path(), "beside.iso", 8);
    let vm = Started::new(&old);
    let at = vm.expect(0, &["watching", "capacity 0000000f"]);

    let (class, desc) = refusal(
        vm.qmp()
            .execute(
                "blockdev-change-medium",
                json!({"id": "hdc", "filename": beside.to_str().unwrap(), "format": "raw"}),
            )
            .unwrap_err(),
    );
    assert_eq!(class, "GenericError");
    assert!(
        desc.contains("Permission denied") && desc.contains("add-fd"),
        "{desc}"
    );
    assert_eq!(vm.hdc()["inserted"]["file"], old.to_str().unwrap());

    let mut qmp = vm.qmp();
    let (class, desc) = refusal(qmp.execute("add-fd", json!({})).unwrap_err());
    assert_eq!(
        (class.as_str(), desc.as_str()),
        ("GenericError", "No file descriptor supplied via SCM_RIGHTS")
    );
    let disc = std::fs::File::open(&beside).unwrap();
    let added = qmp
        .execute_with_fd(
            "add-fd",
            json!({"opaque": "beside"}),
            std::os::fd::AsFd::as_fd(&disc),
        )
        .unwrap();
    let fdset = added["fdset-id"].as_u64().unwrap();
    let fd = added["fd"].as_i64().unwrap();
    assert_eq!(
        qmp.execute("query-fdsets", Value::Null).unwrap(),
        json!([{"fdset-id": fdset, "fds": [{"fd": fd, "opaque": "beside"}]}])
    );
    qmp.execute(
        "blockdev-change-medium",
        json!({"id": "hdc", "filename": format!("/dev/fdset/{fdset}"), "format": "raw"}),
    )
    .unwrap();
    let at = vm.expect(at, &["sense 06 28 00", "capacity 00000007"]);
    assert_eq!(vm.hdc()["inserted"]["file"], beside.to_str().unwrap());
    qmp.execute("remove-fd", json!({"fdset-id": fdset}))
        .unwrap();
    assert_eq!(qmp.execute("query-fdsets", Value::Null).unwrap(), json!([]));
    let (_, desc) = refusal(
        qmp.execute("remove-fd", json!({"fdset-id": fdset}))
            .unwrap_err(),
    );
    assert_eq!(
        desc,
        format!("File descriptor named 'fdset-id:{fdset}' not found")
    );

    // The VM process cannot open the file by name, yet a reset (a new
    // machine) still has the disc: it kept the descriptor.
    qmp.execute("system_reset", Value::Null).unwrap();
    vm.expect(at, &["watching", "capacity 00000007"]);
    assert_eq!(vm.hdc()["inserted"]["file"], beside.to_str().unwrap());
}
