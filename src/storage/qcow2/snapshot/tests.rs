use std::fs::File;
use std::path::{Path, PathBuf};

use super::*;
use crate::storage::qcow2::{check, CreateOptions, Qcow2Image};
use crate::storage::BlockBackend;

fn image(dir: &Path, cluster_size: u32, size: u64) -> PathBuf {
    let path = dir.join("s.qcow2");
    let options = CreateOptions {
        size,
        cluster_size,
        ..CreateOptions::default()
    };
    Qcow2Image::create(&path, &options, &mut |_| {}).unwrap();
    path
}

fn write(path: &Path, byte: u8, offset: u64, len: usize) {
    let mut disk = Qcow2Image::open(path, false).unwrap();
    disk.write_at(&vec![byte; len], offset).unwrap();
}

fn read(path: &Path, offset: u64, len: usize) -> Vec<u8> {
    let mut disk = Qcow2Image::open(path, true).unwrap();
    let mut buf = vec![0; len];
    disk.read_at(&mut buf, offset).unwrap();
    buf
}

fn assert_clean(path: &Path, when: &str) -> check::CheckReport {
    let report = check(&File::open(path).unwrap()).unwrap();
    assert_eq!(report.messages, Vec::<String>::new(), "{when}");
    report
}

fn named(name: &str) -> NewSnapshot {
    NewSnapshot {
        name: name.into(),
        ..NewSnapshot::default()
    }
}

#[test]
fn create_write_apply_delete_keeps_the_image_clean() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), 65536, 8 << 20);
    write(&path, 0x11, 0, 300_000);
    let info = create(&path, &named("before")).unwrap();
    assert_eq!((info.id.as_str(), info.disk_size), ("1", Some(8 << 20)));
    assert_clean(&path, "after create");

    // Overwrite inside and outside the shared clusters.
    write(&path, 0x22, 4096, 200_000);
    write(&path, 0x33, 4 << 20, 65536);
    assert_clean(&path, "after writing over shared clusters");
    assert_eq!(read(&path, 4096, 16), vec![0x22; 16]);

    let second = create(&path, &named("after")).unwrap();
    assert_eq!(second.id, "2");
    assert!(matches!(
        create(&path, &named("before")),
        Err(SnapshotError::Exists(name)) if name == "before"
    ));

    apply(&path, "before").unwrap();
    assert_clean(&path, "after apply");
    assert_eq!(read(&path, 0, 300_000), vec![0x11; 300_000]);
    assert_eq!(read(&path, 4 << 20, 65536), vec![0; 65536]);

    // Writing after the revert must not change the snapshot.
    write(&path, 0x44, 0, 4096);
    apply(&path, "1").unwrap();
    assert_eq!(read(&path, 0, 4096), vec![0x11; 4096]);
    apply(&path, "after").unwrap();
    assert_eq!(read(&path, 4 << 20, 4), vec![0x33; 4]);

    let names: Vec<String> = list(&path).unwrap().into_iter().map(|s| s.name).collect();
    assert_eq!(names, ["before", "after"]);
    let before_delete = assert_clean(&path, "before delete").image_end_offset;
    delete(&path, "before").unwrap();
    assert_clean(&path, "after delete one");
    delete(&path, "after").unwrap();
    let report = assert_clean(&path, "after deleting all");
    assert!(list(&path).unwrap().is_empty());
    assert!(report.image_end_offset <= before_delete);
    assert_eq!(read(&path, 4 << 20, 4), vec![0x33; 4]);
    assert!(matches!(
        delete(&path, "before"),
        Err(SnapshotError::NotFound(_))
    ));
}

#[test]
fn deleting_frees_the_clusters_only_the_snapshot_held() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), 65536, 4 << 20);
    write(&path, 1, 0, 1 << 20);
    create(&path, &named("s")).unwrap();
    // Every cluster rewritten: the snapshot alone holds the old ones.
    write(&path, 2, 0, 1 << 20);
    let file = File::open(&path).unwrap();
    let mut ed = Editor::new(&file, Qcow2Header::read(&file).unwrap()).unwrap();
    let used = |ed: &mut Editor| (0..200).filter(|&c| ed.refcount(c).unwrap() > 0).count();
    let with = used(&mut ed);
    drop(ed);
    delete(&path, "s").unwrap();
    let mut ed = Editor::new(&file, Qcow2Header::read(&file).unwrap()).unwrap();
    let without = used(&mut ed);
    // 16 data clusters, the snapshot's L1 copy and table, its L2 table.
    assert!(
        with - without >= 17,
        "{with} clusters before, {without} after"
    );
    assert_clean(&path, "after delete");
}

#[test]
fn apply_restores_the_disk_size() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), 65536, 1 << 20);
    write(&path, 5, 0, 512);
    create(&path, &named("small")).unwrap();
    {
        let mut disk = Qcow2Image::open(&path, false).unwrap();
        disk.resize(1 << 30).unwrap();
        disk.write_at(&[6; 512], (1 << 30) - 512).unwrap();
        assert!(disk.resize(1 << 19).is_err(), "shrinking with snapshots");
    }
    apply(&path, "small").unwrap();
    assert_clean(&path, "after apply");
    let disk = Qcow2Image::open(&path, true).unwrap();
    assert_eq!(disk.size(), 1 << 20);
    drop(disk);
    assert_eq!(read(&path, 0, 512), vec![5; 512]);
}

#[test]
fn small_clusters_grow_new_refcount_blocks() {
    // 512-byte clusters: a refcount block covers 256 clusters (128 KiB),
    // so the snapshot's tables land in blocks made on the way.
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), 512, 4 << 20);
    for i in 0..40u64 {
        write(&path, i as u8, i * 100_000, 3000);
    }
    for round in 0..3 {
        create(&path, &named(&format!("s{round}"))).unwrap();
        assert_clean(&path, "after create");
        write(&path, 0xee, round * 512, 70_000);
    }
    apply(&path, "s0").unwrap();
    assert_clean(&path, "after apply");
    assert_eq!(read(&path, 100_000, 3000), vec![1; 3000]);
    for round in 0..3 {
        delete(&path, &format!("s{round}")).unwrap();
        assert_clean(&path, "after delete");
    }
}

#[test]
fn table_round_trips_and_keeps_unknown_extra_data() {
    let entry = Entry {
        l1_table_offset: 0x30000,
        l1_size: 1,
        info: SnapshotInfo {
            id: "7".into(),
            name: "名前 with spaces".into(),
            date_sec: 1_796_632_176,
            date_nsec: 5,
            vm_clock_nsec: 9,
            vm_state_size: 1 << 33,
            disk_size: Some(1 << 20),
            icount: None,
        },
        unknown_extra: vec![1, 2, 3, 4, 5, 6, 7, 8],
    };
    let bytes = serialize_table(&[entry.clone(), entry.clone()]);
    assert_eq!(bytes.len() % 8, 0);
    let (back, len) = parse_table(&bytes, 2).unwrap();
    assert_eq!(len as usize, bytes.len());
    assert_eq!(back[1].info, entry.info);
    assert_eq!(back[1].unknown_extra, entry.unknown_extra);
}

#[test]
fn damaged_tables_are_errors_not_panics() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), 65536, 1 << 20);
    write(&path, 1, 0, 4096);
    create(&path, &named("one")).unwrap();
    create(&path, &named("two")).unwrap();
    let good = std::fs::read(&path).unwrap();
    let header = Qcow2Header::parse(&good, good.len() as u64).unwrap();
    let table = header.snapshots_offset as usize;

    // The table cut off: a clear error, and nothing written.
    let mut cut = good.clone();
    cut.truncate(table + 50);
    std::fs::write(&path, &cut).unwrap();
    let error = list(&path).unwrap_err().to_string();
    assert!(error.contains("truncated"), "{error}");
    assert!(create(&path, &named("three")).is_err());
    assert_eq!(std::fs::read(&path).unwrap(), cut);

    // Random damage to the table and the snapshots' L1 tables.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut random = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for round in 0..400 {
        let mut data = good.clone();
        for _ in 0..1 + random() % 3 {
            let at = table + (random() % (good.len() - table).min(200) as u64) as usize;
            data[at] = random() as u8;
        }
        std::fs::write(&path, &data).unwrap();
        let survived = std::panic::catch_unwind(|| {
            let _ = list(&path);
            let _ = apply(&path, "one");
            let _ = delete(&path, "two");
            let _ = create(&path, &named("three"));
            let _ = check(&File::open(&path).unwrap());
        });
        assert!(survived.is_ok(), "round {round} panicked");
    }
}

/// Runs `op` on a copy of `pristine` with a crash after every possible
/// number of writes; every image left behind must have no cluster counted
/// below its references. COPIED mismatches are allowed only where
/// `copied_window` says the operation has its documented window.
fn crash_at_every_write(
    dir: &Path,
    pristine: &Path,
    what: &str,
    copied_window: bool,
    op: &dyn Fn(&Path) -> Result<(), SnapshotError>,
) {
    use super::super::editor::WRITES_LEFT;
    let copy = dir.join(format!("{what}.qcow2"));
    for writes in 0.. {
        std::fs::copy(pristine, &copy).unwrap();
        WRITES_LEFT.set(Some(writes));
        let result = op(&copy);
        WRITES_LEFT.set(None);
        let report = check(&File::open(&copy).unwrap()).unwrap();
        for message in &report.messages {
            let allowed = message.starts_with("Leaked")
                || (copied_window && message.contains("OFLAG_COPIED"));
            assert!(allowed, "{what}, crash after {writes} writes: {message}");
        }
        // The image still opens, and the disk still reads.
        Qcow2Image::open(&copy, false).unwrap();
        if result.is_ok() {
            assert!(report.messages.is_empty(), "{what}: {:?}", report.messages);
            assert!(writes >= 3, "{what} finished after {writes} writes");
            return;
        }
    }
}

#[test]
fn a_crash_after_any_write_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = image(dir.path(), 65536, 8 << 20);
    write(&path, 1, 0, 1 << 20);
    create(&path, &named("one")).unwrap();
    write(&path, 2, 0, 300_000);
    write(&path, 3, 6 << 20, 65536);
    crash_at_every_write(dir.path(), &path, "create", true, &|p| {
        create(p, &named("two")).map(drop)
    });
    crash_at_every_write(dir.path(), &path, "apply", false, &|p| {
        apply(p, "one").map(drop)
    });
    crash_at_every_write(dir.path(), &path, "delete", true, &|p| {
        delete(p, "one").map(drop)
    });
}
