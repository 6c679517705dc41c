//! virtio-blk driven from the host side as a guest driver drives it
//! (`devices::virtio::harness`): rings in guest memory, bring-up through
//! PCI with MSI-X, kicks into the queue's ioeventfd, completions from the
//! queue vector's irqfd. Each test asserts what a guest would observe
//! (status bytes, data read back, used lengths), and what the host sees
//! in the image afterwards through QEMU's own tools (`qemu-img map`,
//! `qemu-io`, `qemu-img check`). No KVM is needed: no guest code runs.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use vireo::devices::virtio::blk::{VIRTIO_BLK_S_IOERR, VIRTIO_BLK_S_OK};
use vireo::devices::virtio::harness::blk::{CONFIG_VECTOR, QUEUE_VECTOR};
use vireo::devices::virtio::harness::ring::{
    VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE,
};
use vireo::devices::virtio::harness::{BlkHarness, BlkRequest, Completion, HarnessOptions};
use vireo::devices::virtio::{STATUS_DEVICE_NEEDS_RESET, VIRTIO_RING_F_INDIRECT_DESC};
use vireo::storage::ImageFormat;

const TIMEOUT: Duration = Duration::from_secs(10);
const MIB: u64 = 1 << 20;

fn qemu(program: &str, args: &[&str]) -> String {
    common::require_program(program);
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A fresh image of `size` bytes made by qemu-img.
fn image(dir: &Path, format: ImageFormat, size: u64) -> std::path::PathBuf {
    let path = dir.join(format!("disk.{}", format.name()));
    qemu(
        "qemu-img",
        &[
            "create",
            "-q",
            "-f",
            format.name(),
            path.to_str().unwrap(),
            &size.to_string(),
        ],
    );
    path
}

/// A copy of the image as it is on disk now, while the harness still
/// holds it open (and locked against QEMU's tools): what a host crash
/// right now would leave, page cache included.
fn snapshot(path: &Path) -> std::path::PathBuf {
    let copy = path.with_extension("snapshot");
    std::fs::copy(path, &copy).unwrap();
    copy
}

/// The bytes request `n` writes: distinct per request and per sector.
fn pattern(n: usize, len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (n as u8).wrapping_mul(31) ^ (i / 512) as u8 ^ (i as u8 & 0x0f))
        .collect()
}

/// (sector, length) of 96 requests of 4-64 KiB scattered over 16 MiB,
/// none overlapping.
fn scattered() -> Vec<(u64, u32)> {
    (0..96u64)
        .map(|n| {
            let sector = (n * 7919 % 96) * (160 * 1024 / 512); // 160 KiB apart
            let len = 4096 * (1 + (n % 16) as u32);
            (sector, len)
        })
        .collect()
}

/// Runs `requests` with up to every slot outstanding: fills the free
/// slots, kicks once, reaps, refills. Returns each request's completion
/// and slot, in request order. `prepare` fills a slot's data first.
fn run_in_flight(
    h: &mut BlkHarness,
    requests: &[BlkRequest],
    mut prepare: impl FnMut(&BlkHarness, usize, usize),
) -> (Vec<Completion>, usize) {
    let mut done: Vec<Option<Completion>> = vec![None; requests.len()];
    let mut owner = std::collections::HashMap::new();
    let mut next = 0;
    let mut most_outstanding = 0;
    while done.iter().any(Option::is_none) {
        while next < requests.len() {
            let Some(slot) = h.take_slot() else { break };
            prepare(h, next, slot);
            h.submit(slot, &requests[next]).unwrap();
            owner.insert(slot, next);
            next += 1;
        }
        most_outstanding = most_outstanding.max(owner.len());
        h.kick().unwrap();
        for completion in h.wait(TIMEOUT).unwrap() {
            let slot = completion.slot.expect("a completion for a request we made");
            let n = owner.remove(&slot).unwrap();
            done[n] = Some(completion);
            h.release_slot(slot);
        }
    }
    (
        done.into_iter().map(Option::unwrap).collect(),
        most_outstanding,
    )
}

fn many_in_flight(format: ImageFormat) {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), format, 16 * MIB);
    let mut h = BlkHarness::open(&path, format, false, HarnessOptions::default()).unwrap();
    assert_eq!(h.capacity(), 16 * MIB / 512);
    let layout = scattered();

    let writes: Vec<BlkRequest> = layout
        .iter()
        .map(|&(sector, len)| BlkRequest::Write { sector, len })
        .collect();
    let (completions, outstanding) = run_in_flight(&mut h, &writes, |h, n, slot| {
        h.write_data(slot, &pattern(n, layout[n].1 as usize))
            .unwrap()
    });
    assert_eq!(outstanding, 32, "every slot was in flight at once");
    for (n, c) in completions.iter().enumerate() {
        assert_eq!((c.status, c.used_len), (VIRTIO_BLK_S_OK, 1), "write {n}");
    }

    // Read back with 32 in flight; each slot is checked as it completes,
    // before it is reused.
    let mut seen = vec![false; layout.len()];
    let mut owner = std::collections::HashMap::new();
    let mut next = 0;
    while seen.iter().any(|s| !s) {
        while next < layout.len() {
            let Some(slot) = h.take_slot() else { break };
            let (sector, len) = layout[next];
            h.write_data(slot, &vec![0xee; len as usize]).unwrap();
            h.submit(slot, &BlkRequest::Read { sector, len }).unwrap();
            owner.insert(slot, next);
            next += 1;
        }
        h.kick().unwrap();
        for c in h.wait(TIMEOUT).unwrap() {
            let slot = c.slot.unwrap();
            let n = owner.remove(&slot).unwrap();
            let len = layout[n].1;
            assert_eq!(
                (c.status, c.used_len),
                (VIRTIO_BLK_S_OK, len + 1),
                "read {n}"
            );
            assert!(
                h.read_data(slot, len as usize).unwrap() == pattern(n, len as usize),
                "read {n} returned what write {n} wrote"
            );
            seen[n] = true;
            h.release_slot(slot);
        }
    }

    // What the host sees after a FLUSH: QEMU, converting the image on
    // disk to raw, finds every request's bytes at its offset.
    let (_, flush) = h.run(&BlkRequest::Flush, TIMEOUT).unwrap();
    assert_eq!(flush.status, VIRTIO_BLK_S_OK);
    let flat = path.with_extension("flat");
    qemu(
        "qemu-img",
        &[
            "convert",
            "-f",
            format.name(),
            "-O",
            "raw",
            snapshot(&path).to_str().unwrap(),
            flat.to_str().unwrap(),
        ],
    );
    let bytes = std::fs::read(&flat).unwrap();
    for (n, &(sector, len)) in layout.iter().enumerate() {
        let at = sector as usize * 512;
        assert!(
            bytes[at..at + len as usize] == pattern(n, len as usize),
            "QEMU reads request {n}'s bytes at {at}"
        );
    }
    drop(h);
    if format == ImageFormat::Qcow2 {
        qemu("qemu-img", &["check", path.to_str().unwrap()]);
    }
}

#[test]
fn raw_many_requests_in_flight_read_back_what_was_written() {
    many_in_flight(ImageFormat::Raw);
}

#[test]
fn qcow2_many_requests_in_flight_read_back_what_was_written() {
    many_in_flight(ImageFormat::Qcow2);
}

/// Bring-up is Linux's: MSI-X with the queue on vector 1, indirect
/// descriptors accepted, the notify address the driver computed is the
/// one the transport bound to the eventfd. Without indirect descriptors
/// requests still work as three ring descriptors.
#[test]
fn bring_up_binds_the_notify_address_and_both_layouts_work() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), ImageFormat::Raw, MIB);
    for indirect in [true, false] {
        let options = HarnessOptions {
            indirect,
            ..Default::default()
        };
        let mut h = BlkHarness::open(&path, ImageFormat::Raw, false, options).unwrap();
        assert_eq!(h.negotiated(VIRTIO_RING_F_INDIRECT_DESC), indirect);
        assert_eq!(h.bound_notify_addresses(), vec![(0, h.notify_address())]);
        let (slot, c) = h.run(&BlkRequest::GetId, TIMEOUT).unwrap();
        assert_eq!((c.status, c.used_len), (VIRTIO_BLK_S_OK, 21));
        assert_eq!(&h.read_data(slot, 13).unwrap(), b"vireo-harness");
        assert_eq!(h.kicks(), 1);
        // The completion came as the message the driver programmed into
        // table entry 1 (address 0xfee00000, data 0x21); the config vector
        // stayed quiet.
        let message = h.last_message(QUEUE_VECTOR).expect("queue vector fired");
        assert_eq!((message.address, message.data), (0xfee0_0000, 0x21));
        assert_eq!(h.last_message(CONFIG_VECTOR), None);
    }
}

/// FLUSH completes OK, and afterwards the image on disk, copied while the
/// device still has it open, holds the data for QEMU to read (for qcow2,
/// the L2 tables and refcounts that say where it is).
#[test]
fn flush_completes_and_the_data_is_in_the_image() {
    for format in [ImageFormat::Raw, ImageFormat::Qcow2] {
        let dir = tempfile::tempdir().unwrap();
        let path = image(dir.path(), format, 4 * MIB);
        let mut h = BlkHarness::open(&path, format, false, HarnessOptions::default()).unwrap();
        let slot = h.take_slot().unwrap();
        h.write_data(slot, &[0x5a; 65536]).unwrap();
        h.submit(
            slot,
            &BlkRequest::Write {
                sector: 2048,
                len: 65536,
            },
        )
        .unwrap();
        h.kick().unwrap();
        assert_eq!(h.wait(TIMEOUT).unwrap()[0].status, VIRTIO_BLK_S_OK);
        h.release_slot(slot);
        let (_, flush) = h.run(&BlkRequest::Flush, TIMEOUT).unwrap();
        assert_eq!((flush.status, flush.used_len), (VIRTIO_BLK_S_OK, 1));
        let out = qemu(
            "qemu-io",
            &[
                "-r",
                "-U",
                "-f",
                format.name(),
                "-c",
                "read -P 0x5a 1048576 65536",
                snapshot(&path).to_str().unwrap(),
            ],
        );
        assert!(
            !out.contains("Pattern verification failed") && out.contains("read 65536/65536"),
            "{format:?}: {out}"
        );
    }
}

/// `qemu-img map --output=json` as (start, length, data) triples.
fn map(path: &Path, format: ImageFormat) -> Vec<(u64, u64, bool)> {
    let out = qemu(
        "qemu-img",
        &[
            "map",
            "-U",
            "--output=json",
            "-f",
            format.name(),
            path.to_str().unwrap(),
        ],
    );
    let entries: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap();
    entries
        .iter()
        .map(|e| {
            (
                e["start"].as_u64().unwrap(),
                e["length"].as_u64().unwrap(),
                e["data"].as_bool().unwrap(),
            )
        })
        .collect()
}

/// Whether `map` says every byte of `[start, start + len)` has data
/// (`true`) or none does (`false`); `None` if mixed.
fn mapped(map: &[(u64, u64, bool)], start: u64, len: u64) -> Option<bool> {
    let kinds: Vec<bool> = map
        .iter()
        .filter(|&&(s, l, _)| s < start + len && s + l > start)
        .map(|&(_, _, data)| data)
        .collect();
    match (kinds.iter().all(|&d| d), kinds.iter().all(|&d| !d)) {
        (true, _) => Some(true),
        (_, true) => Some(false),
        _ => None,
    }
}

/// DISCARD and WRITE_ZEROES with UNMAP leave holes `qemu-img map` shows,
/// on raw (punched file) and qcow2 (freed clusters); the guest reads
/// zeroes there and the data around them is intact.
#[test]
fn discard_and_write_zeroes_leave_holes_qemu_img_map_shows() {
    for format in [ImageFormat::Raw, ImageFormat::Qcow2] {
        let dir = tempfile::tempdir().unwrap();
        let path = image(dir.path(), format, 4 * MIB);
        let mut h = BlkHarness::open(&path, format, false, HarnessOptions::default()).unwrap();
        // 64 KiB clusters on qcow2, 4 KiB on raw.
        let align = h.discard_alignment() as u64 * 512;
        assert!(align == 4096 || align == 65536, "{format:?}: {align}");
        for n in 0..2u64 {
            let slot = h.take_slot().unwrap();
            h.write_data(slot, &[0xc3; 1 << 20]).unwrap();
            h.submit(
                slot,
                &BlkRequest::Write {
                    sector: n * 2048,
                    len: 1 << 20,
                },
            )
            .unwrap();
            h.kick().unwrap();
            assert_eq!(h.wait(TIMEOUT).unwrap()[0].status, VIRTIO_BLK_S_OK);
            h.release_slot(slot);
        }
        assert_eq!(h.run(&BlkRequest::Flush, TIMEOUT).unwrap().1.status, 0);
        let before = map(&snapshot(&path), format);
        assert_eq!(mapped(&before, 0, 2 * MIB), Some(true), "{before:?}");

        // Discard [512 KiB, 768 KiB); write zeroes with unmap [1.5, 1.75 MiB).
        let (_, c) = h
            .run(&BlkRequest::Discard(vec![(1024, 512)]), TIMEOUT)
            .unwrap();
        assert_eq!(c.status, VIRTIO_BLK_S_OK, "{format:?} discard");
        let zeroes = BlkRequest::WriteZeroes {
            sector: 3072,
            sectors: 512,
            unmap: true,
        };
        assert_eq!(h.run(&zeroes, TIMEOUT).unwrap().1.status, VIRTIO_BLK_S_OK);
        assert_eq!(h.run(&BlkRequest::Flush, TIMEOUT).unwrap().1.status, 0);

        // The guest reads zeroes in the hole and its data next to it.
        let (slot, c) = h
            .run(
                &BlkRequest::Read {
                    sector: 1016,
                    len: 8192,
                },
                TIMEOUT,
            )
            .unwrap();
        assert_eq!(c.status, VIRTIO_BLK_S_OK);
        let back = h.read_data(slot, 8192).unwrap();
        assert!(back[..4096].iter().all(|&b| b == 0xc3), "{format:?}");
        assert!(back[4096..].iter().all(|&b| b == 0), "{format:?}");
        // QEMU's tools cannot open the image while the device holds its
        // lock; closing it changes no allocation.
        drop(h);
        let after = map(&path, format);
        assert_eq!(
            mapped(&after, 512 << 10, 256 << 10),
            Some(false),
            "{format:?} {after:?}"
        );
        assert_eq!(
            mapped(&after, 1536 << 10, 256 << 10),
            Some(false),
            "{format:?} {after:?}"
        );
        assert_eq!(
            mapped(&after, 0, 512 << 10),
            Some(true),
            "{format:?} {after:?}"
        );
        assert_eq!(
            mapped(&after, 768 << 10, 768 << 10),
            Some(true),
            "{format:?} {after:?}"
        );

        if format == ImageFormat::Qcow2 {
            qemu("qemu-img", &["check", path.to_str().unwrap()]);
        }
    }
}

/// Hostile chains (a descriptor loop, buffers and indirect tables outside
/// guest RAM, a malformed indirect table, a request past the end of the
/// disk) each come back failed, the device keeps running and the next
/// good request completes. A storm of empty kicks costs nothing visible.
#[test]
fn hostile_chains_fail_alone_and_the_device_keeps_working() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), ImageFormat::Raw, MIB);
    let mut h =
        BlkHarness::open(&path, ImageFormat::Raw, false, HarnessOptions::default()).unwrap();
    let scratch = h.scratch();
    let ram_end = scratch + MIB;
    let header = scratch;
    let status = scratch + 0x100;
    let table = scratch + 0x1000;
    let mut read = [0u8; 16];
    read[0] = 0; // VIRTIO_BLK_T_IN, sector 0
    vm_memory::Bytes::write_slice(h.mem(), &read, vm_memory::GuestAddress(header)).unwrap();

    type Build = Box<dyn Fn(&mut BlkHarness) -> u16>;
    // A well-formed read (header, 4 KiB of data, status) whose data
    // buffer is at `data`.
    let read_into = move |data: u64| -> Build {
        Box::new(move |h| {
            let (mem, ring) = h.ring_mut();
            let d = ring.claim(3).unwrap();
            ring.write_desc(mem, d[0], header, 16, VIRTQ_DESC_F_NEXT, d[1])
                .unwrap();
            let flags = VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE;
            ring.write_desc(mem, d[1], data, 4096, flags, d[2]).unwrap();
            ring.write_desc(mem, d[2], status, 1, VIRTQ_DESC_F_WRITE, 0)
                .unwrap();
            d[0]
        })
    };
    let cases: Vec<(&str, Build)> = vec![
        (
            "descriptor loop",
            Box::new(move |h| {
                let (mem, ring) = h.ring_mut();
                let d = ring.claim(2).unwrap();
                ring.write_desc(mem, d[0], header, 16, VIRTQ_DESC_F_NEXT, d[1])
                    .unwrap();
                ring.write_desc(
                    mem,
                    d[1],
                    status,
                    1,
                    VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
                    d[0],
                )
                .unwrap();
                d[0]
            }),
        ),
        ("data buffer outside RAM", read_into(ram_end + 0x1000)),
        ("buffer straddling the end of RAM", read_into(ram_end - 512)),
        ("address that wraps around", read_into(u64::MAX - 100)),
        (
            "indirect table outside RAM",
            Box::new(move |h| {
                let (mem, ring) = h.ring_mut();
                let d = ring.claim(1).unwrap();
                ring.write_desc(mem, d[0], ram_end + 0x10000, 48, VIRTQ_DESC_F_INDIRECT, 0)
                    .unwrap();
                d[0]
            }),
        ),
        (
            "indirect table that loops",
            Box::new(move |h| {
                let (mem, ring) = h.ring_mut();
                let d = ring.claim(1).unwrap();
                // Entry 0 -> 1 -> 0 inside the table.
                let mut raw = [0u8; 32];
                raw[0..8].copy_from_slice(&header.to_le_bytes());
                raw[8..12].copy_from_slice(&16u32.to_le_bytes());
                raw[12..14].copy_from_slice(&VIRTQ_DESC_F_NEXT.to_le_bytes());
                raw[14..16].copy_from_slice(&1u16.to_le_bytes());
                raw[16..24].copy_from_slice(&status.to_le_bytes());
                raw[24..28].copy_from_slice(&1u32.to_le_bytes());
                raw[28..30]
                    .copy_from_slice(&(VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE).to_le_bytes());
                vm_memory::Bytes::write_slice(mem, &raw, vm_memory::GuestAddress(table)).unwrap();
                ring.write_desc(mem, d[0], table, 32, VIRTQ_DESC_F_INDIRECT, 0)
                    .unwrap();
                d[0]
            }),
        ),
        (
            "indirect table of a partial descriptor",
            Box::new(move |h| {
                let (mem, ring) = h.ring_mut();
                let d = ring.claim(1).unwrap();
                ring.write_desc(mem, d[0], table, 20, VIRTQ_DESC_F_INDIRECT, 0)
                    .unwrap();
                d[0]
            }),
        ),
    ];
    for (what, build) in cases {
        vm_memory::Bytes::write_obj(h.mem(), 0xffu8, vm_memory::GuestAddress(status)).unwrap();
        let head = build(&mut h);
        let (mem, ring) = h.ring_mut();
        ring.push_available(mem, head).unwrap();
        h.kick().unwrap();
        let completions = h.wait(TIMEOUT).unwrap_or_else(|e| panic!("{what}: {e}"));
        assert_eq!(completions.len(), 1, "{what}");
        assert_eq!(completions[0].head, head as u32, "{what}");
        assert_eq!(completions[0].used_len, 0, "{what}: nothing written");
        let byte: u8 =
            vm_memory::Bytes::read_obj(h.mem(), vm_memory::GuestAddress(status)).unwrap();
        assert_ne!(byte, VIRTIO_BLK_S_OK, "{what}: never reported OK");
        assert_eq!(h.device_status() & STATUS_DEVICE_NEEDS_RESET, 0, "{what}");
    }

    // Past the end of the disk: a well-formed chain, an IOERR status.
    let (_, c) = h
        .run(
            &BlkRequest::Read {
                sector: MIB / 512,
                len: 512,
            },
            TIMEOUT,
        )
        .unwrap();
    assert_eq!((c.status, c.used_len), (VIRTIO_BLK_S_IOERR, 1));

    // A million kicks with nothing new, then a good request.
    for _ in 0..1_000_000 {
        h.kick().unwrap();
    }
    let (_, c) = h.run(&BlkRequest::GetId, TIMEOUT).unwrap();
    assert_eq!((c.status, c.used_len), (VIRTIO_BLK_S_OK, 21));
}

/// A ring whose available index runs ahead by more than the queue is
/// broken beyond one chain: the device says DEVICE_NEEDS_RESET through the
/// configuration vector and ignores the queue, without panicking.
#[test]
fn a_broken_ring_needs_reset_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), ImageFormat::Raw, MIB);
    let mut h =
        BlkHarness::open(&path, ImageFormat::Raw, false, HarnessOptions::default()).unwrap();
    let (mem, ring) = h.ring_mut();
    ring.force_avail_idx(mem, 1000).unwrap();
    // Notify without publishing: `kick` would write the ring's own index
    // over the broken one.
    h.notify().unwrap();
    assert!(
        h.wait_config_interrupt(TIMEOUT).unwrap(),
        "config vector fired"
    );
    assert_ne!(h.device_status() & STATUS_DEVICE_NEEDS_RESET, 0);
}
