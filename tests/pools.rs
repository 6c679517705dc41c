//! A virsh-like storage session through the real `vireo` binary: pools are
//! defined, built, started, filled with raw and qcow2 volumes, listed,
//! resized, cloned, uploaded to and downloaded from, and removed again;
//! what it prints is compared with what virsh prints, and every qcow2 it
//! makes is checked by `qemu-img`.

mod common;

use std::path::Path;
use std::process::Command;

type Session = common::Home;

/// A table's rows split into cells, after checking the header and the rule
/// under it as virsh draws them.
fn table_rows(text: &str, header: &[&str]) -> Vec<Vec<String>> {
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0].split_whitespace().collect::<Vec<_>>(),
        header,
        "{text}"
    );
    assert!(lines[1].chars().all(|c| c == '-'), "{text}");
    // The rule is each column's width plus three.
    let widths: usize = (0..header.len())
        .map(|column| {
            lines
                .iter()
                .enumerate()
                .filter(|(i, l)| *i != 1 && !l.is_empty())
                .map(|(_, l)| {
                    l.split("   ")
                        .map(str::trim)
                        .filter(|c| !c.is_empty())
                        .nth(column)
                        .map_or(0, |c| c.chars().count())
                })
                .max()
                .unwrap()
                + 3
        })
        .sum();
    assert_eq!(lines[1].len(), widths, "{text}");
    assert_eq!(lines.last(), Some(&""), "virsh ends with an empty line");
    lines[2..lines.len() - 1]
        .iter()
        .map(|l| {
            l.split("   ")
                .map(str::trim)
                .filter(|c| !c.is_empty())
                .map(String::from)
                .collect()
        })
        .collect()
}

fn qemu_img_info(path: &Path) -> String {
    let output = Command::new("qemu-img")
        .args(["info", "-U"])
        .arg(path)
        .output()
        .expect("qemu-img is installed (scripts/setup.sh)");
    assert!(output.status.success());
    String::from_utf8(output.stdout).unwrap()
}

fn qemu_img_check(path: &Path) {
    let output = Command::new("qemu-img")
        .args(["check", "-U"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "qemu-img check {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("No errors were found on the image."));
}

#[test]
fn a_virsh_storage_session() {
    let s = Session::new();
    let images = s.path("data/images");
    let vms = s.path("vms");
    let vms_str = vms.to_str().unwrap();

    // First use: the default pool, running and autostarted.
    assert_eq!(
        s.ok(&["pool-list"]),
        " Name      State    Autostart\n-------------------------------\n default   active   yes\n\n"
    );
    assert!(images.is_dir());

    assert_eq!(
        s.ok(&["pool-define-as", "vms", "dir", "--target", vms_str]),
        "Pool vms defined\n\n"
    );
    assert_eq!(
        s.ok(&["pool-list", "--all"]),
        " Name      State      Autostart\n\
         ---------------------------------\n \
         default   active     yes\n \
         vms       inactive   no\n\n"
    );
    let details = s.ok(&["pool-list", "--all", "--details"]);
    let rows = table_rows(
        &details,
        &[
            "Name",
            "State",
            "Autostart",
            "Persistent",
            "Capacity",
            "Allocation",
            "Available",
        ],
    );
    assert_eq!(rows[1], ["vms", "inactive", "no", "yes", "-", "-", "-"]);
    assert_eq!(rows[0][..4], ["default", "running", "yes", "yes"]);
    assert!(rows[0][4].ends_with("iB") || rows[0][4].ends_with(" B"));

    let info = s.ok(&["pool-info", "vms"]);
    let uuid = s.ok(&["pool-uuid", "vms"]);
    assert_eq!(
        info,
        format!(
            "Name:           vms\nUUID:           {}\nState:          inactive\nPersistent:     yes\nAutostart:      no\n\n",
            uuid.trim()
        )
    );

    assert!(s.fails(&["pool-start", "vms"]).contains("pool-build vms"));
    assert_eq!(s.ok(&["pool-build", "vms"]), "Pool vms built\n\n");
    assert_eq!(s.ok(&["pool-start", "vms"]), "Pool vms started\n\n");
    assert_eq!(
        s.ok(&["pool-autostart", "vms"]),
        "Pool vms marked as autostarted\n\n"
    );
    assert_eq!(
        s.ok(&["pool-autostart", "vms", "--disable"]),
        "Pool vms unmarked as autostarted\n\n"
    );
    let info = s.ok(&["pool-info", "vms", "--bytes"]);
    assert!(info.contains("State:          running\n"), "{info}");
    assert!(
        info.contains("\nCapacity:       ") && info.contains(" bytes\nAvailable:      "),
        "{info}"
    );
    assert_eq!(s.ok(&["pool-refresh", "vms"]), "Pool vms refreshed\n\n");

    let xml = s.ok(&["pool-dumpxml", "vms"]);
    assert!(xml.starts_with(&format!(
        "<pool type='dir'>\n  <name>vms</name>\n  <uuid>{}</uuid>\n  <capacity unit='bytes'>",
        uuid.trim()
    )));
    assert!(xml.contains(&format!(
        "  <source>\n  </source>\n  <target>\n    <path>{vms_str}</path>\n    <permissions>\n      <mode>0711</mode>\n"
    )));
    validate(&s, &xml, "storagepool");

    // Volumes: raw with a partial allocation, qcow2, qcow2 with metadata
    // preallocation, and a qcow2 overlay on the raw one.
    assert_eq!(
        s.ok(&[
            "vol-create-as",
            "vms",
            "disk.img",
            "10M",
            "--format",
            "raw",
            "--allocation",
            "1M"
        ]),
        "Vol disk.img created\n\n"
    );
    assert_eq!(
        s.ok(&[
            "vol-create-as",
            "vms",
            "sys.qcow2",
            "1G",
            "--format",
            "qcow2"
        ]),
        "Vol sys.qcow2 created\n\n"
    );
    assert_eq!(
        s.ok(&[
            "vol-create-as",
            "vms",
            "meta.qcow2",
            "5G",
            "--format",
            "qcow2",
            "--allocation",
            "0",
            "--prealloc-metadata",
        ]),
        "Vol meta.qcow2 created\n\n"
    );
    // Metadata preallocation with the whole capacity allocated: libvirt
    // asks for falloc, the data clusters reserved on disk.
    assert_eq!(
        s.ok(&[
            "vol-create-as",
            "vms",
            "falloc.qcow2",
            "20M",
            "--format",
            "qcow2",
            "--allocation",
            "20M",
            "--prealloc-metadata",
        ]),
        "Vol falloc.qcow2 created\n\n"
    );
    assert_eq!(
        s.ok(&[
            "vol-create-as",
            "vms",
            "overlay.qcow2",
            "10M",
            "--format",
            "qcow2",
            "--backing-vol",
            "disk.img",
            "--backing-vol-format",
            "raw",
        ]),
        "Vol overlay.qcow2 created\n\n"
    );
    for (name, size, backing) in [
        ("sys.qcow2", 1u64 << 30, None),
        ("meta.qcow2", 5 << 30, None),
        ("falloc.qcow2", 20 << 20, None),
        ("overlay.qcow2", 10 << 20, Some(vms.join("disk.img"))),
    ] {
        let path = vms.join(name);
        qemu_img_check(&path);
        let info = qemu_img_info(&path);
        assert!(info.contains("file format: qcow2\n"), "{info}");
        assert!(info.contains(&format!("({size} bytes)")), "{info}");
        match backing {
            Some(backing) => {
                assert!(
                    info.contains(&format!("backing file: {}\n", backing.display())),
                    "{info}"
                );
                assert!(info.contains("backing file format: raw\n"), "{info}");
            }
            None => assert!(!info.contains("backing file"), "{info}"),
        }
    }
    // Metadata preallocation: the file is as long as the disk, but sparse.
    let meta = std::fs::metadata(vms.join("meta.qcow2")).unwrap();
    assert!(meta.len() > 5 << 30);
    assert!(std::os::unix::fs::MetadataExt::blocks(&meta) * 512 < 8 << 20);
    let falloc = std::fs::metadata(vms.join("falloc.qcow2")).unwrap();
    assert!(std::os::unix::fs::MetadataExt::blocks(&falloc) * 512 >= 20 << 20);
    assert_eq!(
        s.ok(&["vol-delete", "falloc.qcow2", "--pool", "vms"]),
        "Vol falloc.qcow2 deleted\n\n"
    );

    let list = s.ok(&["vol-list", "vms"]);
    let rows = table_rows(&list, &["Name", "Path"]);
    let path = |n: &str| vms.join(n).display().to_string();
    assert_eq!(
        rows,
        [
            vec!["disk.img".to_string(), path("disk.img")],
            vec!["meta.qcow2".to_string(), path("meta.qcow2")],
            vec!["overlay.qcow2".to_string(), path("overlay.qcow2")],
            vec!["sys.qcow2".to_string(), path("sys.qcow2")],
        ]
    );
    let details = s.ok(&["vol-list", "--pool", "vms", "--details"]);
    let rows = table_rows(
        &details,
        &["Name", "Path", "Type", "Capacity", "Allocation"],
    );
    assert_eq!(
        rows[0][..4],
        ["disk.img", &path("disk.img"), "file", "10.00 MiB"]
    );
    assert_eq!(rows[0][4], "1.00 MiB");
    assert_eq!(rows[1][3], "5.00 GiB");
    assert_eq!(rows[3][3], "1.00 GiB");

    assert_eq!(
        s.ok(&["vol-info", "disk.img", "--pool", "vms"]),
        "Name:           disk.img\nType:           file\nCapacity:       10.00 MiB\nAllocation:     1.00 MiB\n\n"
    );
    assert_eq!(
        s.ok(&["vol-info", "sys.qcow2", "vms", "--bytes", "--physical"]),
        "Name:           sys.qcow2\nType:           file\nCapacity:       1073741824 bytes\nPhysical:       196624 bytes\n\n"
    );
    assert_eq!(
        s.ok(&["vol-path", "disk.img", "--pool", "vms"]),
        format!("{}\n\n", path("disk.img"))
    );
    // By path, without the pool.
    assert_eq!(
        s.ok(&["vol-key", &path("disk.img")]),
        format!("{}\n\n", path("disk.img"))
    );

    let xml = s.ok(&["vol-dumpxml", "overlay.qcow2", "--pool", "vms"]);
    assert!(xml.starts_with(&format!(
        "<volume type='file'>\n  <name>overlay.qcow2</name>\n  <key>{0}</key>\n  <capacity unit='bytes'>10485760</capacity>\n",
        path("overlay.qcow2")
    )));
    assert!(xml.contains("    <format type='qcow2'/>\n"));
    assert!(xml.contains("    <compat>1.1</compat>\n    <clusterSize unit='B'>65536</clusterSize>\n    <features/>\n"));
    assert!(xml.contains(&format!(
        "  <backingStore>\n    <path>{}</path>\n    <format type='raw'/>\n",
        path("disk.img")
    )));
    validate(&s, &xml, "storagevol");

    // Resize: grow raw and qcow2; shrinking needs --shrink.
    assert_eq!(
        s.ok(&["vol-resize", "disk.img", "20M", "--pool", "vms"]),
        "Size of volume 'disk.img' successfully changed to 20M\n\n"
    );
    assert!(s
        .fails(&["vol-resize", "disk.img", "5M", "--pool", "vms"])
        .contains("--shrink"));
    assert_eq!(
        s.ok(&["vol-resize", "disk.img", "-4M", "--pool", "vms", "--shrink"]),
        "Size of volume 'disk.img' successfully changed by -4M\n\n"
    );
    assert_eq!(
        std::fs::metadata(vms.join("disk.img")).unwrap().len(),
        16 << 20
    );
    assert_eq!(
        s.ok(&["vol-resize", "sys.qcow2", "2G", "--pool", "vms"]),
        "Size of volume 'sys.qcow2' successfully changed to 2G\n\n"
    );
    qemu_img_check(&vms.join("sys.qcow2"));
    assert!(qemu_img_info(&vms.join("sys.qcow2")).contains("(2147483648 bytes)"));

    // Upload and download round trip, at an offset.
    let data: Vec<u8> = (0..3_000_000u32)
        .map(|i| (i * 7 + i / 1000) as u8)
        .collect();
    let upload = s.path("up.bin");
    std::fs::write(&upload, &data).unwrap();
    assert_eq!(
        s.ok(&[
            "vol-upload",
            "disk.img",
            upload.to_str().unwrap(),
            "--pool",
            "vms",
            "--offset",
            "1048576"
        ]),
        "\n"
    );
    let download = s.path("down.bin");
    assert_eq!(
        s.ok(&[
            "vol-download",
            "disk.img",
            download.to_str().unwrap(),
            "--pool",
            "vms",
            "--offset",
            "1M",
            "--length",
            "3000000",
        ]),
        "\n"
    );
    assert_eq!(std::fs::read(&download).unwrap(), data);
    // A partial upload: only --length bytes land.
    s.ok(&[
        "vol-upload",
        "disk.img",
        upload.to_str().unwrap(),
        "--pool",
        "vms",
        "--length",
        "10",
    ]);
    s.ok(&[
        "vol-download",
        "disk.img",
        download.to_str().unwrap(),
        "--pool",
        "vms",
        "--length",
        "16",
    ]);
    let head = std::fs::read(&download).unwrap();
    assert_eq!(head[..10], data[..10]);
    assert_eq!(head[10..], [0; 6]);
    assert!(s
        .fails(&[
            "vol-upload",
            "disk.img",
            upload.to_str().unwrap(),
            "--pool",
            "vms",
            "--offset",
            "15M"
        ])
        .contains("vol-resize"));

    // Clone: raw byte for byte, qcow2 still a valid image with its backing file.
    assert_eq!(
        s.ok(&["vol-clone", "disk.img", "copy.img", "--pool", "vms"]),
        "Vol copy.img cloned from disk.img\n\n"
    );
    assert_eq!(
        std::fs::read(vms.join("copy.img")).unwrap(),
        std::fs::read(vms.join("disk.img")).unwrap()
    );
    assert_eq!(
        s.ok(&["vol-clone", "overlay.qcow2", "overlay2.qcow2", "vms"]),
        "Vol overlay2.qcow2 cloned from overlay.qcow2\n\n"
    );
    qemu_img_check(&vms.join("overlay2.qcow2"));
    assert!(qemu_img_info(&vms.join("overlay2.qcow2"))
        .contains(&format!("backing file: {}\n", path("disk.img"))));

    // Errors say what to do, and leave nothing behind.
    assert!(s
        .fails(&["pool-info", "nope"])
        .contains("`vireo pool-list --all`"));
    assert!(s
        .fails(&["vol-create-as", "vms", "a/b", "1M"])
        .contains("'/'"));
    assert!(s
        .fails(&["vol-create-as", "vms", "disk.img", "1M"])
        .contains("already exists"));
    assert!(s
        .fails(&[
            "vol-create-as",
            "vms",
            "big.qcow2",
            "8E",
            "--format",
            "qcow2"
        ])
        .contains("too large"));
    assert!(!vms.join("big.qcow2").exists());
    assert!(s
        .fails(&["vol-create-as", "vms", "x", "1.5G"])
        .contains("unknown unit"));
    assert!(s
        .fails(&["vol-info", "missing", "--pool", "vms"])
        .contains("vol-list vms"));
    assert!(s
        .fails(&["pool-define-as", "vms", "dir", "--target", "/elsewhere"])
        .contains("already exists"));
    assert!(s
        .fails(&["pool-define-as", "", "dir", "--target", "/elsewhere"])
        .contains("empty"));

    // Delete, stop, undefine.
    for name in ["copy.img", "overlay2.qcow2", "overlay.qcow2", "meta.qcow2"] {
        assert_eq!(
            s.ok(&["vol-delete", name, "--pool", "vms"]),
            format!("Vol {name} deleted\n\n")
        );
        assert!(!vms.join(name).exists());
    }
    assert!(s
        .fails(&["pool-undefine", "vms"])
        .contains("pool-destroy vms"));
    assert_eq!(s.ok(&["pool-destroy", "vms"]), "Pool vms destroyed\n\n");
    assert!(s.fails(&["vol-list", "vms"]).contains("pool-start vms"));
    assert_eq!(
        s.ok(&["pool-undefine", "vms"]),
        "Pool vms has been undefined\n\n"
    );
    assert_eq!(
        s.ok(&["pool-list", "--all"]),
        " Name      State    Autostart\n-------------------------------\n default   active   yes\n\n"
    );
    // The directory and the remaining volumes stay, as in libvirt.
    assert!(vms.join("disk.img").exists());
}

/// Checks `xml` against libvirt's schema when virt-xml-validate is installed.
fn validate(s: &Session, xml: &str, schema: &str) {
    let file = s.path(&format!("{schema}.xml"));
    std::fs::write(&file, xml).unwrap();
    match Command::new("virt-xml-validate")
        .arg(&file)
        .arg(schema)
        .output()
    {
        Ok(output) => assert!(
            output.status.success(),
            "{schema} XML does not validate:\n{xml}\n{}",
            String::from_utf8_lossy(&output.stderr)
        ),
        Err(_) => eprintln!("SKIPPED: virt-xml-validate is not installed"),
    }
}

#[test]
fn a_volume_in_use_is_not_changed() {
    let s = Session::new();
    s.ok(&[
        "vol-create-as",
        "default",
        "busy.img",
        "1M",
        "--allocation",
        "0",
    ]);
    let path = s.path("data/images/busy.img");
    // A VM holds its disks with an exclusive open-file-description lock.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    vireo::storage::lock_image(&file, &path, false).unwrap();
    assert!(s
        .fails(&["vol-delete", "busy.img", "--pool", "default"])
        .contains("in use"));
    assert!(s
        .fails(&["vol-resize", "busy.img", "2M", "--pool", "default"])
        .contains("in use"));
    assert!(path.exists());
    drop(file);
    s.ok(&["vol-delete", "busy.img", "--pool", "default"]);
}

#[test]
fn pools_and_volumes_from_xml_files_as_virsh_makes_them() {
    let s = Session::new();
    let files_dir = s.path("files");
    let scratch_dir = s.path("scratch");
    let xml = |name: &str, text: String| {
        let path = s.path(name);
        std::fs::write(&path, text).unwrap();
        path.to_str().unwrap().to_string()
    };

    // pool-define FILE: a persistent pool, inactive until started.
    let pool_xml = xml(
        "files.xml",
        format!(
            "<pool type='dir'><name>files</name><target><path>{}</path></target></pool>",
            files_dir.display()
        ),
    );
    assert_eq!(
        s.ok(&["pool-define", &pool_xml]),
        format!("Pool files defined from {pool_xml}\n\n")
    );
    let uuid = s.ok(&["pool-uuid", "files"]);
    assert!(s
        .ok(&["pool-list", "--all"])
        .contains(" files     inactive   no\n"));
    s.ok(&["pool-build", "files"]);
    s.ok(&["pool-start", "files"]);
    // Defined again from the same file: the same pool, still running.
    assert_eq!(
        s.ok(&["pool-define", &pool_xml]),
        format!("Pool files defined from {pool_xml}\n\n")
    );
    assert_eq!(s.ok(&["pool-uuid", "files"]), uuid);
    assert!(s.ok(&["pool-list"]).contains(" files     active   no\n"));

    // pool-create FILE --build: transient, running at once, gone once destroyed.
    let scratch_xml = xml(
        "scratch.xml",
        format!(
            "<pool type='dir'><name>scratch</name><target><path>{}</path></target></pool>",
            scratch_dir.display()
        ),
    );
    assert_eq!(
        s.ok(&["pool-create", &scratch_xml, "--build"]),
        format!("Pool scratch created from {scratch_xml}\n\n")
    );
    assert!(scratch_dir.is_dir());
    let details = s.ok(&["pool-list", "--details"]);
    let rows = table_rows(
        &details,
        &[
            "Name",
            "State",
            "Autostart",
            "Persistent",
            "Capacity",
            "Allocation",
            "Available",
        ],
    );
    let scratch = rows
        .iter()
        .find(|r| r[0] == "scratch")
        .expect("scratch is listed");
    assert_eq!(scratch[..4], ["scratch", "running", "no", "no"]);
    assert!(s
        .ok(&["pool-info", "scratch"])
        .contains("\nPersistent:     no\n"));
    assert_eq!(s.ok(&["pool-list", "--transient", "--name"]), "scratch\n\n");
    assert!(s
        .fails(&["pool-autostart", "scratch"])
        .contains("transient"));
    assert_eq!(
        s.ok(&["pool-destroy", "scratch"]),
        "Pool scratch destroyed\n\n"
    );
    assert!(s
        .fails(&["pool-info", "scratch"])
        .contains("does not exist"));
    assert!(scratch_dir.is_dir(), "its directory stays");

    // vol-create POOL FILE: a qcow2 volume from a volume description.
    let vol_xml = xml(
        "v1.xml",
        "<volume><name>v1.qcow2</name><capacity unit='MiB'>16</capacity><target><format type='qcow2'/></target></volume>".into(),
    );
    assert_eq!(
        s.ok(&["vol-create", "files", &vol_xml]),
        format!("Vol v1.qcow2 created from {vol_xml}\n\n")
    );
    let v1 = files_dir.join("v1.qcow2");
    let info = qemu_img_info(&v1);
    assert!(info.contains("file format: qcow2"), "{info}");
    assert!(
        info.contains("virtual size: 16 MiB (16777216 bytes)"),
        "{info}"
    );
    qemu_img_check(&v1);

    // vol-create-from POOL FILE VOL: a qcow2 copy of a raw volume's data.
    s.ok(&["vol-create-as", "files", "src.img", "1M"]);
    let data: Vec<u8> = (0..300_000u32).map(|i| (i % 251) as u8).collect();
    let upload = s.path("data.bin");
    std::fs::write(&upload, &data).unwrap();
    s.ok(&[
        "vol-upload",
        "src.img",
        upload.to_str().unwrap(),
        "--pool",
        "files",
        "--offset",
        "65536",
    ]);
    let copy_xml = xml(
        "copy.xml",
        "<volume><name>copy.qcow2</name><capacity>4096</capacity><target><format type='qcow2'/></target></volume>".into(),
    );
    assert_eq!(
        s.ok(&[
            "vol-create-from",
            "files",
            &copy_xml,
            "src.img",
            "--inputpool",
            "files"
        ]),
        "Vol copy.qcow2 created from input vol src.img\n\n"
    );
    let copy = files_dir.join("copy.qcow2");
    qemu_img_check(&copy);
    assert!(
        qemu_img_info(&copy).contains("virtual size: 1 MiB (1048576 bytes)"),
        "as large as its input"
    );
    let compare = Command::new("qemu-img")
        .args(["compare", "-U", "-f", "raw", "-F", "qcow2"])
        .arg(files_dir.join("src.img"))
        .arg(&copy)
        .output()
        .unwrap();
    assert!(
        compare.status.success(),
        "{}{}",
        String::from_utf8_lossy(&compare.stdout),
        String::from_utf8_lossy(&compare.stderr)
    );
}
