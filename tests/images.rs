//! Disk images against QEMU's own tools: images `vireo img` makes must pass
//! `qemu-img check` and read back in `qemu-io`; images and data QEMU's tools
//! make must read back through Vireo's block layer; `vireo img` must print
//! what qemu-img 7.2 prints for the same arguments.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use vireo::storage::{open_image, BlockBackend, ImageFormat};

fn vireo(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vireo"))
        .current_dir(dir)
        .env("VIREO_HOME", dir.join("vireo-home"))
        .args(args)
        .output()
        .expect("cannot run vireo")
}

fn tool(dir: &Path, program: &str, args: &[&str]) -> Output {
    common::require_program(program);
    Command::new(program)
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"))
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[track_caller]
fn ok(output: Output) -> Output {
    assert!(
        output.status.success(),
        "failed ({:?}):\n{}\n{}",
        output.status,
        stdout(&output),
        stderr(&output)
    );
    output
}

/// A scratch directory with `vireo/` and `qemu/` inside, for making the
/// same image with both tools under the same relative name.
fn scratch() -> (tempfile::TempDir, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let v = dir.path().join("vireo");
    let q = dir.path().join("qemu");
    std::fs::create_dir_all(&v).unwrap();
    std::fs::create_dir_all(&q).unwrap();
    (dir, v, q)
}

/// Every `create` argument list the tests compare with qemu-img.
const CREATE_CASES: &[&[&str]] = &[
    &["-f", "raw", "r.img", "10M"],
    &["-f", "raw", "-o", "preallocation=falloc", "rf.img", "2M"],
    &["-f", "raw", "-o", "preallocation=full", "rfull.img", "3M"],
    &[
        "-f",
        "qcow2",
        "-o",
        "preallocation=metadata,size=5G",
        "a.qcow2",
    ],
    &["-f", "qcow2", "b.qcow2", "1G"],
    &[
        "-f",
        "qcow2",
        "-o",
        "preallocation=falloc",
        "f.qcow2",
        "20M",
    ],
    &["-f", "qcow2", "-o", "preallocation=full", "g.qcow2", "20M"],
    &["-f", "qcow2", "-o", "preallocation=off", "o.qcow2", "1.5G"],
    &["-f", "qcow2", "-b", "b.qcow2", "-F", "qcow2", "c.qcow2"],
    &["-f", "qcow2", "-b", "r.img", "-F", "raw", "e.qcow2", "20M"],
    &[
        "-f",
        "qcow2",
        "-o",
        "lazy_refcounts=on,cluster_size=4096",
        "d.qcow2",
        "100M",
    ],
    &[
        "-f",
        "qcow2",
        "-o",
        "refcount_bits=1,cluster_size=512",
        "s.qcow2",
        "3M",
    ],
    &[
        "-f",
        "qcow2",
        "-o",
        "refcount_bits=64,cluster_size=2M",
        "h.qcow2",
        "64M",
    ],
    &["-f", "qcow2", "-o", "compat=1.1,size=100k", "k.qcow2"],
];

#[test]
fn create_prints_qemu_img_lines_and_makes_images_qemu_accepts() {
    let (_dir, v, q) = scratch();
    for args in CREATE_CASES {
        let mine = ok(vireo(&v, &[&["img", "create"], *args].concat()));
        let theirs = ok(tool(&q, "qemu-img", &[&["create"], *args].concat()));
        assert_eq!(stdout(&mine), stdout(&theirs), "create {args:?}");
    }
    for args in CREATE_CASES {
        let name = *args
            .iter()
            .rev()
            .find(|a| a.ends_with(".img") || a.ends_with(".qcow2"))
            .unwrap();
        if name.ends_with(".qcow2") {
            let check = tool(&v, "qemu-img", &["check", name]);
            assert!(
                check.status.success(),
                "qemu-img check {name}: {}{}",
                stdout(&check),
                stderr(&check)
            );
            // Our own check says the same of our image.
            let mine = vireo(&v, &["img", "check", name]);
            assert_eq!(stdout(&mine), stdout(&check), "check {name}");
            assert_eq!(mine.status.code(), Some(0));
        }
        // qemu-img sees the size, format and backing file Vireo wrote, and
        // `vireo img info` prints exactly what qemu-img info prints.
        for output in ["human", "json"] {
            let flag = format!("--output={output}");
            let theirs = ok(tool(&v, "qemu-img", &["info", &flag, name]));
            let mine = ok(vireo(&v, &["img", "info", &flag, name]));
            assert_eq!(stdout(&mine), stdout(&theirs), "info {output} {name}");
            let of_qemu_image = ok(tool(&q, "qemu-img", &["info", &flag, name]));
            let ours_on_qemu_image = ok(vireo(&q, &["img", "info", &flag, name]));
            assert_eq!(
                stdout(&ours_on_qemu_image),
                stdout(&of_qemu_image),
                "info {output} of qemu's {name}"
            );
        }
        let (ours, qemus) = (
            stdout(&ok(tool(&v, "qemu-img", &["info", name]))),
            stdout(&ok(tool(&q, "qemu-img", &["info", name]))),
        );
        let keep = |text: &str| -> Vec<String> {
            text.lines()
                .filter(|l| !l.starts_with("disk size"))
                .map(String::from)
                .collect()
        };
        assert_eq!(keep(&ours), keep(&qemus), "{name} as qemu-img sees it");
    }
}

#[test]
fn create_refuses_what_qemu_img_refuses() {
    let (_dir, v, q) = scratch();
    let cases: &[&[&str]] = &[
        &["-f", "qcow2", "z.qcow2"],
        &["-f", "qcow2", "-o", "foo=bar", "z.qcow2", "1M"],
        &["-f", "qcow2", "-o", "cluster_size=1000", "z.qcow2", "1M"],
        &["-f", "qcow2", "-o", "refcount_bits=3", "z.qcow2", "1M"],
        &["-f", "qcow2", "-o", "preallocation=bogus", "z.qcow2", "1M"],
        &["-f", "qcow2", "z.qcow2", "100x"],
        &["-f", "raw", "-o", "preallocation=metadata", "z.img", "1M"],
        &["-f", "vmdkx", "z.img", "1M"],
    ];
    for args in cases {
        let mine = vireo(&v, &[&["img", "create"], *args].concat());
        let theirs = tool(&q, "qemu-img", &[&["create"], *args].concat());
        assert_eq!(mine.status.code(), Some(1), "{args:?}");
        assert_eq!(theirs.status.code(), Some(1), "{args:?}");
        assert_eq!(stdout(&mine), stdout(&theirs), "{args:?}");
        // qemu-img prefixes every line of a message, Vireo the first.
        let strip = |s: String, prefix: &str| {
            s.lines()
                .map(|l| l.strip_prefix(prefix).unwrap_or(l))
                .collect::<Vec<_>>()
                .join("\n")
        };
        assert_eq!(
            strip(stderr(&mine), "vireo: "),
            strip(stderr(&theirs), "qemu-img: "),
            "{args:?}"
        );
    }
}

/// Writes `pattern` over `[offset, offset + len)` of both the image and a
/// model of the disk's contents.
fn write_both(disk: &mut dyn BlockBackend, model: &mut [u8], offset: u64, len: usize, pattern: u8) {
    let data = vec![pattern; len];
    disk.write_at(&data, offset).unwrap();
    model[offset as usize..offset as usize + len].copy_from_slice(&data);
}

/// Asserts `qemu-io` reads `pattern` in every byte of the range.
#[track_caller]
fn qemu_io_reads(dir: &Path, image: &str, format: &str, offset: u64, len: u64, pattern: u8) {
    let command = format!("read -P {pattern:#x} {offset} {len}");
    let output = ok(tool(
        dir,
        "qemu-io",
        &["-r", "-f", format, "-c", &command, image],
    ));
    let text = stdout(&output);
    assert!(
        text.contains(&format!("read {len}/{len} bytes at offset {offset}")),
        "{command} on {image}: {text}{}",
        stderr(&output)
    );
}

#[test]
fn data_vireo_writes_is_what_qemu_reads() {
    let (_dir, v, _q) = scratch();
    const SIZE: u64 = 8 << 20;
    ok(vireo(
        &v,
        &[
            "img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            "cluster_size=64k",
            "w.qcow2",
            "8M",
        ],
    ));
    let mut model = vec![0u8; SIZE as usize];
    {
        let mut disk = open_image(&v.join("w.qcow2"), ImageFormat::Qcow2, false).unwrap();
        // Sector-multiple accesses like IDE and virtio-blk make, across
        // cluster and L2 boundaries, plus a few unaligned ones.
        write_both(disk.as_mut(), &mut model, 0, 512, 0xab);
        write_both(disk.as_mut(), &mut model, 65536 - 1024, 4096, 0xcd);
        write_both(disk.as_mut(), &mut model, 1 << 20, 1 << 20, 0xef);
        write_both(disk.as_mut(), &mut model, SIZE - 512, 512, 0x5a);
        write_both(disk.as_mut(), &mut model, 3_000_001, 777, 0x11);
        write_both(disk.as_mut(), &mut model, (1 << 20) + 4096, 8192, 0x22);
        disk.discard(1 << 21, 65536).unwrap();
        disk.flush().unwrap();
    }
    ok(tool(&v, "qemu-img", &["check", "w.qcow2"]));
    qemu_io_reads(&v, "w.qcow2", "qcow2", 0, 512, 0xab);
    qemu_io_reads(&v, "w.qcow2", "qcow2", 65536 - 1024, 4096, 0xcd);
    qemu_io_reads(&v, "w.qcow2", "qcow2", (1 << 20) + 4096, 8192, 0x22);
    qemu_io_reads(&v, "w.qcow2", "qcow2", SIZE - 512, 512, 0x5a);
    qemu_io_reads(&v, "w.qcow2", "qcow2", 1 << 21, 65536, 0);
    qemu_io_reads(&v, "w.qcow2", "qcow2", 5 << 20, 1 << 20, 0);
    std::fs::write(v.join("model.raw"), &model).unwrap();
    let compare = ok(tool(
        &v,
        "qemu-img",
        &[
            "compare",
            "-f",
            "qcow2",
            "-F",
            "raw",
            "w.qcow2",
            "model.raw",
        ],
    ));
    assert!(stdout(&compare).contains("Images are identical"));

    // Through a backing chain: a raw base, a qcow2 middle qemu wrote into,
    // and a top Vireo writes; qemu sees the flattened disk Vireo sees.
    std::fs::write(v.join("base.raw"), vec![0x77u8; SIZE as usize]).unwrap();
    ok(tool(
        &v,
        "qemu-img",
        &[
            "create",
            "-f",
            "qcow2",
            "-b",
            "base.raw",
            "-F",
            "raw",
            "mid.qcow2",
        ],
    ));
    ok(tool(
        &v,
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0x33 64k 128k", "mid.qcow2"],
    ));
    ok(vireo(
        &v,
        &[
            "img",
            "create",
            "-q",
            "-f",
            "qcow2",
            "-b",
            "mid.qcow2",
            "-F",
            "qcow2",
            "top.qcow2",
        ],
    ));
    let mut model = vec![0x77u8; SIZE as usize];
    model[65536..65536 + 131072].fill(0x33);
    {
        let mut disk = open_image(&v.join("top.qcow2"), ImageFormat::Qcow2, false).unwrap();
        assert_eq!(disk.size(), SIZE);
        write_both(disk.as_mut(), &mut model, 65536 + 512, 512, 0x44);
        write_both(disk.as_mut(), &mut model, 7 << 20, 4096, 0x55);
    }
    std::fs::write(v.join("model2.raw"), &model).unwrap();
    ok(tool(&v, "qemu-img", &["check", "top.qcow2"]));
    let compare = ok(tool(
        &v,
        "qemu-img",
        &["compare", "-F", "raw", "top.qcow2", "model2.raw"],
    ));
    assert!(stdout(&compare).contains("Images are identical"));
    // The lower images were only read.
    assert_eq!(
        std::fs::read(v.join("base.raw")).unwrap(),
        vec![0x77u8; SIZE as usize]
    );
}

#[test]
fn data_qemu_writes_is_what_vireo_reads() {
    let (_dir, v, _q) = scratch();
    const SIZE: usize = 4 << 20;
    std::fs::write(v.join("base.raw"), vec![0x99u8; SIZE]).unwrap();
    for compat in ["1.1", "0.10"] {
        let name = format!("q{compat}.qcow2");
        ok(tool(
            &v,
            "qemu-img",
            &[
                "create",
                "-q",
                "-f",
                "qcow2",
                "-o",
                &format!("compat={compat}"),
                "-b",
                "base.raw",
                "-F",
                "raw",
                &name,
            ],
        ));
        let mut model = vec![0x99u8; SIZE];
        let mut io = |command: &str, range: std::ops::Range<usize>, value: u8| {
            ok(tool(&v, "qemu-io", &["-f", "qcow2", "-c", command, &name]));
            model[range].fill(value);
        };
        io("write -P 0xab 0 64k", 0..65536, 0xab);
        io("write -P 0xcd 100k 8k", 102_400..110_592, 0xcd);
        // Zero clusters hide the backing file's data.
        io("write -z 1M 128k", 1 << 20..(1 << 20) + 131_072, 0);
        io("write -z 2M 4k", 2 << 20..(2 << 20) + 4096, 0);
        io("write -P 0x12 3M 512", 3 << 20..(3 << 20) + 512, 0x12);
        let mut disk = open_image(&v.join(&name), ImageFormat::Qcow2, true).unwrap();
        assert_eq!(disk.size(), SIZE as u64);
        let mut back = vec![0u8; SIZE];
        disk.read_at(&mut back, 0).unwrap();
        let first_difference = back.iter().zip(&model).position(|(a, b)| a != b);
        assert_eq!(first_difference, None, "compat={compat}");
        // Reads at odd offsets and lengths agree too.
        let mut piece = vec![0u8; 5000];
        disk.read_at(&mut piece, 65_000).unwrap();
        assert_eq!(piece, model[65_000..70_000]);
    }
}

#[test]
fn damaged_images_give_clear_errors_and_stay_untouched() {
    let (_dir, v, _q) = scratch();
    ok(tool(
        &v,
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "good.qcow2", "16M"],
    ));
    ok(tool(
        &v,
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0xab 0 1M", "good.qcow2"],
    ));
    let good = std::fs::read(v.join("good.qcow2")).unwrap();
    let damages: Vec<(&str, Vec<u8>)> = vec![
        ("truncated-header", good[..50].to_vec()),
        ("truncated-v3-header", good[..90].to_vec()),
        ("truncated-tables", good[..65536].to_vec()),
        ("bad-version", {
            let mut d = good.clone();
            d[7] = 7;
            d
        }),
        ("bad-cluster-bits", {
            let mut d = good.clone();
            d[23] = 63;
            d
        }),
        ("l1-past-end", {
            let mut d = good.clone();
            d[40] = 0x10;
            d
        }),
        ("reftable-unaligned", {
            let mut d = good.clone();
            d[55] = 0x08;
            d
        }),
        ("encrypted", {
            let mut d = good.clone();
            d[35] = 2;
            d
        }),
    ];
    for (name, data) in damages {
        let file = format!("{name}.qcow2");
        std::fs::write(v.join(&file), &data).unwrap();
        for args in [
            vec!["img", "info", file.as_str()],
            vec!["img", "check", file.as_str()],
            vec!["img", "resize", file.as_str(), "32M"],
            vec!["img", "convert", "-f", "qcow2", file.as_str(), "out.raw"],
        ] {
            let output = vireo(&v, &args);
            assert_eq!(
                output.status.code(),
                Some(1),
                "{args:?}: {}",
                stderr(&output)
            );
            let message = stderr(&output);
            assert!(message.starts_with("vireo: "), "{args:?}: {message}");
            assert!(!message.contains("panicked"), "{args:?}: {message}");
        }
        let opened = open_image(&v.join(&file), ImageFormat::Qcow2, false);
        let error = opened.err().unwrap_or_else(|| panic!("{name} opened"));
        assert!(error.to_string().contains(&file), "{name}: {error}");
        assert_eq!(
            std::fs::read(v.join(&file)).unwrap(),
            data,
            "{name} was written to"
        );
    }
}

#[test]
fn check_reports_leaks_and_corruptions_as_qemu_img_does() {
    let (_dir, v, _q) = scratch();
    ok(tool(
        &v,
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "x.qcow2", "16M"],
    ));
    ok(tool(
        &v,
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 1 0 256k", "x.qcow2"],
    ));
    let data = std::fs::read(v.join("x.qcow2")).unwrap();
    // The refcount block is at the cluster the refcount table names.
    let reftable = u64::from_be_bytes(data[48..56].try_into().unwrap()) as usize;
    let block = u64::from_be_bytes(data[reftable..reftable + 8].try_into().unwrap()) as usize;

    let mut leaky = data.clone();
    leaky[block + 1] = 2; // cluster 0 (the header): refcount 2, used once
    leaky[block + 2 * 40 + 1] = 1; // cluster 40: past the end, not compared
    let mut corrupt = data.clone();
    corrupt[block + 2 * 4 + 1] = 0; // cluster 4 (data) in use, refcount 0
    let mut shared = data.clone();
    shared[block + 2 * 5 + 1] = 2; // cluster 5 (data): refcount 2 but COPIED set

    for (name, bytes, code) in [
        ("leaky.qcow2", leaky, 3),
        ("corrupt.qcow2", corrupt, 2),
        ("shared.qcow2", shared, 2),
    ] {
        std::fs::write(v.join(name), &bytes).unwrap();
        let theirs = tool(&v, "qemu-img", &["check", name]);
        let mine = vireo(&v, &["img", "check", name]);
        assert_eq!(theirs.status.code(), Some(code), "{}", stdout(&theirs));
        assert_eq!(mine.status.code(), Some(code), "{name}");
        assert_eq!(stdout(&mine), stdout(&theirs), "{name}");
        assert_eq!(stderr(&mine), stderr(&theirs), "{name}");
        let theirs_json = tool(&v, "qemu-img", &["check", "--output=json", name]);
        let mine_json = vireo(&v, &["img", "check", "--output=json", name]);
        assert_eq!(stdout(&mine_json), stdout(&theirs_json), "{name}");
    }
    let raw = vireo(&v, &["img", "check", "-f", "raw", "x.qcow2"]);
    assert_eq!(raw.status.code(), Some(63));
}

#[test]
fn convert_and_resize_agree_with_qemu() {
    let (_dir, v, _q) = scratch();
    ok(tool(
        &v,
        "qemu-img",
        &["create", "-q", "-f", "qcow2", "src.qcow2", "6M"],
    ));
    ok(tool(
        &v,
        "qemu-io",
        &["-f", "qcow2", "-c", "write -P 0xab 1M 2M", "src.qcow2"],
    ));
    let progress = ok(vireo(
        &v,
        &[
            "img",
            "convert",
            "-p",
            "-f",
            "qcow2",
            "-O",
            "raw",
            "src.qcow2",
            "dst.raw",
        ],
    ));
    let text = stdout(&progress);
    assert!(text.starts_with("    (0.00/100%)\r"), "{text:?}");
    assert!(
        text.ends_with("    (100.00/100%)\r    (100.00/100%)\r\n"),
        "{text:?}"
    );
    ok(tool(&v, "qemu-img", &["compare", "src.qcow2", "dst.raw"]));
    ok(vireo(
        &v,
        &[
            "img",
            "convert",
            "-O",
            "qcow2",
            "-o",
            "cluster_size=4k",
            "dst.raw",
            "back.qcow2",
        ],
    ));
    ok(tool(&v, "qemu-img", &["check", "back.qcow2"]));
    ok(tool(
        &v,
        "qemu-img",
        &["compare", "back.qcow2", "src.qcow2"],
    ));
    qemu_io_reads(&v, "back.qcow2", "qcow2", 1 << 20, 2 << 20, 0xab);

    let resized = ok(vireo(&v, &["img", "resize", "back.qcow2", "+1G"]));
    assert_eq!(stdout(&resized), "Image resized.\n");
    let info = stdout(&ok(tool(&v, "qemu-img", &["info", "back.qcow2"])));
    assert!(
        info.contains("virtual size: 1.01 GiB (1080033280 bytes)"),
        "{info}"
    );
    let refused = vireo(&v, &["img", "resize", "back.qcow2", "4M"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("--shrink"));
    ok(vireo(
        &v,
        &["img", "resize", "--shrink", "back.qcow2", "4M"],
    ));
    ok(tool(&v, "qemu-img", &["check", "back.qcow2"]));
    qemu_io_reads(&v, "back.qcow2", "qcow2", 1 << 20, 2 << 20, 0xab);
    ok(vireo(&v, &["img", "resize", "-f", "raw", "dst.raw", "+2M"]));
    assert_eq!(std::fs::metadata(v.join("dst.raw")).unwrap().len(), 8 << 20);
}

#[test]
fn a_vm_image_in_use_is_locked_against_vireo_img() {
    let (_dir, v, _q) = scratch();
    ok(vireo(
        &v,
        &["img", "create", "-q", "-f", "qcow2", "busy.qcow2", "1M"],
    ));
    let disk = open_image(&v.join("busy.qcow2"), ImageFormat::Qcow2, false).unwrap();
    let resize = vireo(&v, &["img", "resize", "busy.qcow2", "2M"]);
    assert_eq!(resize.status.code(), Some(1));
    assert!(stderr(&resize).contains("in use"), "{}", stderr(&resize));
    // Nor is it overwritten by a create under the same name.
    for format in ["qcow2", "raw"] {
        let create = vireo(
            &v,
            &["img", "create", "-q", "-f", format, "busy.qcow2", "4M"],
        );
        assert_eq!(create.status.code(), Some(1));
        assert!(stderr(&create).contains("in use"), "{}", stderr(&create));
    }
    drop(disk);
    ok(tool(&v, "qemu-img", &["check", "busy.qcow2"]));
    ok(vireo(&v, &["img", "resize", "busy.qcow2", "2M"]));
}

/// The lock bytes some open file holds on `path`, from /proc/locks
/// ("… OFDLCK ADVISORY READ -1 MAJ:MIN:INODE START END").
fn lock_bytes(path: &Path) -> Vec<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    let inode = format!(":{} ", std::fs::metadata(path).unwrap().ino());
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|line| line.contains("OFDLCK") && line.contains(&inode))
        .filter_map(|line| {
            let mut fields = line.split_whitespace().rev();
            let end = fields.next()?.parse().ok()?;
            let start = fields.next()?.parse().ok()?;
            Some((start, end))
        })
        .collect()
}

/// `qemu-io` holding `image` open (read-only with `-r`) until killed, once
/// its locks are in place.
fn qemu_io_holding(dir: &Path, image: &str, read_only: bool) -> std::process::Child {
    common::require_program("qemu-io");
    let mut args = vec!["-f", "qcow2", "-c", "sleep 60000", image];
    if read_only {
        args.insert(0, "-r");
    }
    let child = Command::new("qemu-io")
        .current_dir(dir)
        .args(&args)
        .spawn()
        .unwrap();
    let path = dir.join(image);
    common::wait::until(
        "qemu-io's locks",
        std::time::Duration::from_secs(30),
        std::time::Duration::from_millis(50),
        || {
            let bytes = lock_bytes(&path);
            if bytes.iter().any(|&(start, _)| start == 100) {
                Ok(())
            } else {
                Err(format!("locks: {bytes:?}"))
            }
        },
    );
    child
}

/// The byte ranges a writer locks (QEMU's: hold read, write and resize,
/// forbid write and resize), as /proc/locks merges them.
const WRITER_LOCKS: [(u64, u64); 4] = [(100, 101), (103, 103), (201, 201), (203, 203)];

fn sorted(mut ranges: Vec<(u64, u64)>) -> Vec<(u64, u64)> {
    ranges.sort();
    ranges
}

/// Vireo locks an image's bytes as QEMU does: `qemu-img info -U` reads a
/// VM's disk while the VM runs, plain `qemu-img info` and a writing
/// `qemu-io` are refused; and an image QEMU writes is refused to Vireo,
/// one QEMU only reads is shared with Vireo's readers.
#[test]
fn vireo_and_qemu_honour_each_others_image_locks() {
    let (_dir, v, _q) = scratch();
    ok(vireo(
        &v,
        &["img", "create", "-q", "-f", "qcow2", "vm.qcow2", "1M"],
    ));
    let path = v.join("vm.qcow2");

    let disk = open_image(&path, ImageFormat::Qcow2, false).unwrap();
    assert_eq!(sorted(lock_bytes(&path)), WRITER_LOCKS);
    let info = ok(tool(&v, "qemu-img", &["info", "-U", "vm.qcow2"]));
    assert!(
        stdout(&info).contains("file format: qcow2"),
        "{}",
        stdout(&info)
    );
    let plain = tool(&v, "qemu-img", &["info", "vm.qcow2"]);
    assert!(!plain.status.success());
    assert!(
        stderr(&plain).contains("Failed to get shared \"write\" lock"),
        "{}",
        stderr(&plain)
    );
    let write = tool(
        &v,
        "qemu-io",
        &["-f", "qcow2", "-c", "write 0 512", "vm.qcow2"],
    );
    assert!(!write.status.success());
    assert!(stderr(&write).contains("lock"), "{}", stderr(&write));
    drop(disk);
    assert!(lock_bytes(&path).is_empty());

    let mut writer = qemu_io_holding(&v, "vm.qcow2", false);
    assert_eq!(sorted(lock_bytes(&path)), WRITER_LOCKS, "QEMU's own");
    for read_only in [false, true] {
        let error = open_image(&path, ImageFormat::Qcow2, read_only)
            .err()
            .unwrap();
        assert!(error.to_string().contains("in use"), "{error}");
    }
    writer.kill().unwrap();
    writer.wait().unwrap();

    let mut reader = qemu_io_holding(&v, "vm.qcow2", true);
    let error = open_image(&path, ImageFormat::Qcow2, false).err().unwrap();
    assert!(error.to_string().contains("in use"), "{error}");
    let shared = open_image(&path, ImageFormat::Qcow2, true).unwrap();
    drop(shared);
    reader.kill().unwrap();
    reader.wait().unwrap();
    // A refused open leaves no lock behind: the writer gets in now.
    drop(open_image(&path, ImageFormat::Qcow2, false).unwrap());
}
