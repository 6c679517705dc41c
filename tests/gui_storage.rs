//! Connection Details → Storage, end to end under Xvfb: the window started
//! as a user starts it in a fresh `VIREO_HOME`, the Storage page opened from
//! the main menu with the keyboard, a pool and a qcow2 volume made through
//! its dialogs, and the result checked as a user would check it: the `vireo`
//! CLI, `qemu-img`, and what the screen shows (tesseract). Every wait polls
//! with a generous timeout, for a loaded host.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use common::desktop::{artifacts, App, Display};
use common::{require_program, Home};

const GIB: u64 = 1 << 30;
const SLOW: Duration = Duration::from_secs(60);

/// Opens Connection Details on its Storage page: the main menu (F10),
/// then its "_Storage" item.
fn open_storage(display: &Display, dir: &Path) {
    display.wait_for_text(dir, "No Virtual Machines", SLOW);
    display.key("F10");
    display.key("s");
    display.wait_for_text(dir, "Add Pool", SLOW);
}

/// Add Pool with `name` and `folder`, typed into the dialog, then Create.
fn add_pool(display: &Display, dir: &Path, name: &str, folder: &Path) {
    display.key("alt+a");
    display.wait_for_text(dir, "Add Storage Pool", SLOW);
    // The name field has the focus.
    display.key("ctrl+a");
    display.type_text(name);
    display.key("alt+f");
    display.key("ctrl+a");
    display.type_text(folder.to_str().unwrap());
    display.key("Return");
}

/// New Volume in the selected pool: `name`, the default qcow2, `gib` GiB.
fn new_volume(display: &Display, dir: &Path, name: &str, gib: &str) {
    display.key("alt+n");
    display.wait_for_text(dir, "New Storage Volume", SLOW);
    display.key("ctrl+a");
    display.type_text(name);
    display.key("alt+c");
    display.key("ctrl+a");
    display.type_text(gib);
    display.key("Return");
}

/// A word tesseract read on the screen, with its box in screen pixels.
#[derive(Debug)]
struct Word {
    text: String,
    left: f64,
    right: f64,
    middle: f64,
}

/// The words on the screen now, with their boxes. Read at three times the
/// size and in black and white: the column headings are small and dim
/// grey, and tesseract misses them otherwise.
fn words_on_screen(display: &Display, dir: &Path) -> Vec<Word> {
    const SCALE: f64 = 3.0;
    let shot = dir.join("columns.png");
    display.screenshot(&shot);
    let scaled = dir.join("columns-x3.png");
    let status = Command::new("convert")
        .arg(&shot)
        .args([
            "-resize",
            "300%",
            "-colorspace",
            "Gray",
            "-threshold",
            "70%",
        ])
        .arg(&scaled)
        .status()
        .unwrap();
    assert!(status.success(), "convert failed");
    let out = Command::new("tesseract")
        .arg(&scaled)
        .args(["-", "tsv"])
        .stderr(std::process::Stdio::null())
        .output()
        .unwrap();
    // level page block par line word left top width height conf text
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            let text = f.get(11)?.trim();
            let n = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok());
            if text.is_empty() || f[0] != "5" {
                return None;
            }
            let (left, top, width, height) = (n(6)?, n(7)?, n(8)?, n(9)?);
            Some(Word {
                text: text.to_string(),
                left: left / SCALE,
                right: (left + width) / SCALE,
                middle: (top + height / 2.0) / SCALE,
            })
        })
        .collect()
}

/// Asserts that the volume list's headings stand over their columns: the
/// Name heading starts where the row of the volume `volume` starts, and
/// Format, Capacity and Allocation (right-aligned) each end within 2 px
/// of a value in that row.
fn assert_headings_over_values(display: &Display, dir: &Path, volume: &str) {
    const HEADINGS: [&str; 4] = ["Name", "Format", "Capacity", "Allocation"];
    let deadline = Instant::now() + SLOW;
    // Polls only until every word needed is read; the edges are then
    // checked once.
    let (words, row) = loop {
        let words = words_on_screen(display, dir);
        let row = words
            .iter()
            .find(|w| w.text.starts_with(volume))
            .map(|w| w.middle);
        let read = HEADINGS.iter().all(|h| words.iter().any(|w| w.text == *h));
        if let (Some(row), true) = (row, read) {
            break (words, row);
        }
        assert!(
            Instant::now() < deadline,
            "the headings and the row of {volume} were never all read: {words:?}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let heading = |text: &str| words.iter().find(|w| w.text == text).unwrap();
    let cells: Vec<&Word> = words
        .iter()
        .filter(|w| (w.middle - row).abs() < 6.0)
        .collect();
    let name = cells.iter().find(|w| w.text.starts_with(volume)).unwrap();
    let name_heading = heading("Name");
    assert!(
        (name_heading.left - name.left).abs() <= 2.0,
        "Name starts at x={}, the volume's name at x={}",
        name_heading.left,
        name.left
    );
    for title in &HEADINGS[1..] {
        let h = heading(title);
        let nearest = cells
            .iter()
            .map(|w| w.right)
            .min_by(|a, b| (a - h.right).abs().total_cmp(&(b - h.right).abs()))
            .unwrap();
        assert!(
            (h.right - nearest).abs() <= 2.0,
            "{title} ends at x={}, but the nearest value of {volume}'s row ends at x={nearest}: {cells:?}",
            h.right
        );
    }
}

fn qemu_img(args: &[&str], file: &Path) -> (bool, String) {
    let out = Command::new("qemu-img")
        .args(args)
        .arg(file)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_pool_and_a_qcow2_volume_made_on_the_storage_page_are_real() {
    require_program("qemu-img");
    let home = Home::new();
    let display = Display::start();
    let _app = App::start(&display, home.dir.path(), &[]);
    let dir = artifacts("gui-storage");
    open_storage(&display, &dir);

    // Add Pool: the folder does not exist yet; the pool makes it.
    let folder = home.path("pools/guipool");
    add_pool(&display, &dir, "guipool", &folder);
    let pools = home.wait_until(&["pool-list", "--all"], SLOW, |t| {
        t.lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["guipool", "active", "yes"])
    });
    assert!(folder.is_dir(), "no folder {}: {pools}", folder.display());
    display.wait_for_text(&dir, "guipool", SLOW);

    // New Volume in it: qcow2 (the default), 2 GiB, Create.
    new_volume(&display, &dir, "guidisk.qcow2", "2");
    let volumes = home.wait_until(&["vol-list", "guipool", "--details"], SLOW, |t| {
        t.contains("guidisk.qcow2")
    });
    assert!(volumes.contains("2.00 GiB"), "{volumes}");
    assert!(volumes.contains("file"), "{volumes}");
    let file = folder.join("guidisk.qcow2");
    let (ok, check) = qemu_img(&["check"], &file);
    assert!(ok, "qemu-img check failed: {check}");
    let (ok, info) = qemu_img(&["info", "--output=json"], &file);
    assert!(ok, "{info}");
    assert!(info.contains("\"format\": \"qcow2\""), "{info}");
    assert!(
        info.contains(&format!("\"virtual-size\": {}", 2 * GIB)),
        "{info}"
    );
    // The page lists it (the dialog closed, the page reloaded), under
    // headings that line up with its values.
    display.wait_for_text(&dir, "guidisk.qcow2", SLOW);
    assert_headings_over_values(&display, &dir, "guidisk");

    // The same name again is refused in the dialog, and nothing changes.
    new_volume(&display, &dir, "guidisk.qcow2", "1");
    display.wait_for_text(&dir, "already used", SLOW);
    let (_, info) = qemu_img(&["info", "--output=json"], &file);
    assert!(
        info.contains(&format!("\"virtual-size\": {}", 2 * GIB)),
        "the first volume was changed: {info}"
    );
    let volumes = home.ok(&["vol-list", "guipool"]);
    assert_eq!(
        volumes
            .lines()
            .filter(|l| l.trim_start().starts_with("guidisk"))
            .count(),
        1,
        "a second volume appeared: {volumes}"
    );
}

#[test]
fn a_pool_folder_that_cannot_be_made_is_refused_with_a_sentence_and_nothing_is_defined() {
    let home = Home::new();
    // A file where the pool's parent folder would be: mkdir fails with
    // ENOTDIR, even for root.
    let blocker = home.path("blocker");
    std::fs::write(&blocker, b"not a folder").unwrap();
    let folder = blocker.join("pool");
    let display = Display::start();
    let _app = App::start(&display, home.dir.path(), &[]);
    let dir = artifacts("gui-storage-bad-folder");
    open_storage(&display, &dir);

    add_pool(&display, &dir, "badpool", &folder);
    let seen = display.wait_for_text(&dir, "cannot be created", SLOW);
    // The system's reason, however the line wraps.
    let words: Vec<&str> = seen.split_whitespace().collect();
    assert!(
        words.windows(3).any(|w| w == ["Not", "a", "directory."]),
        "{seen}"
    );
    assert!(!seen.contains("os error"), "{seen}");
    let pools = home.ok(&["pool-list", "--all"]);
    assert!(!pools.contains("badpool"), "{pools}");
    assert!(!folder.exists());
    assert_eq!(std::fs::read(&blocker).unwrap(), b"not a folder");
}

#[test]
fn the_wizards_browse_button_picks_a_volume_from_a_pool() {
    let home = Home::new();
    home.ok(&[
        "vol-create-as",
        "default",
        "pickme.qcow2",
        "1G",
        "--format",
        "qcow2",
    ]);
    let display = Display::start();
    let _app = App::start(&display, home.dir.path(), &[]);
    let dir = artifacts("gui-storage-chooser");
    display.wait_for_text(&dir, "No Virtual Machines", SLOW);
    display.key("ctrl+n");
    display.wait_for_text(&dir, "Local install media", SLOW);
    display.key("alt+f");
    display.wait_for_text(&dir, "Choose the installation ISO", SLOW);
    // The ISO entry has the focus; Browse… is next to it.
    display.key("Tab");
    display.key("space");
    // ("Choose Volume" is white on blue, which tesseract does not read.)
    display.wait_for_text(&dir, "Browse Local", SLOW);
    display.wait_for_text(&dir, "pickme.qcow2", SLOW);
    assert_headings_over_values(&display, &dir, "pickme");
    // The volume list has the focus on its first (only) volume.
    display.key("Return");
    // Back in the wizard, the entry holds the volume's path.
    let seen = display.wait_for_text(&dir, "images/pickme.qcow2", SLOW);
    assert!(seen.contains("Choose the installation ISO"), "{seen}");
    assert!(
        !seen.contains("Browse Local"),
        "the chooser stayed open: {seen}"
    );

    // Browse Local… opens the system's file chooser for a file outside
    // every pool; the file picked there lands in the entry.
    // (In a folder that is not hidden, as a user's download is: the
    // chooser's location bar does not open paths through hidden folders
    // such as the home's /tmp/.tmpXXXX.)
    let outside_dir = tempfile::Builder::new()
        .prefix("vireo-downloads-")
        .tempdir()
        .unwrap();
    let outside = outside_dir.path().join("installer.iso");
    std::fs::write(&outside, vec![0u8; 2048]).unwrap();
    display.click_text(&dir, "Browse", SLOW);
    display.wait_for_text(&dir, "Browse Local", SLOW);
    display.key("alt+b");
    display.wait_for_text(&dir, "ISO images", SLOW);
    display.key("ctrl+l");
    display.type_text(outside.to_str().unwrap());
    std::thread::sleep(Duration::from_secs(1));
    display.key("Return");
    // The chooser closes and the wizard's entry holds the file.
    let deadline = Instant::now() + SLOW;
    loop {
        let seen = display.read_screen(&dir, "eng");
        if seen.contains("installer.iso") && !seen.contains("ISO images") {
            assert!(seen.contains("Choose the installation ISO"), "{seen}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the file chooser stayed open: {seen}"
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    assert!(seen.contains("Choose the installation ISO"), "{seen}");
}

#[test]
fn a_volume_picked_with_the_mouse_is_resized_and_deleted() {
    require_program("qemu-img");
    let home = Home::new();
    for (name, size, format) in [("grow.qcow2", "1G", "qcow2"), ("gone.raw", "64M", "raw")] {
        home.ok(&["vol-create-as", "default", name, size, "--format", format]);
    }
    let images = home.path("data/images");
    let display = Display::start();
    let _app = App::start(&display, home.dir.path(), &[]);
    let dir = artifacts("gui-storage-resize-delete");
    open_storage(&display, &dir);

    // Resize the qcow2 volume from 1 to 3 GiB.
    display.click_text(&dir, "grow.qcow2", SLOW);
    display.click_text(&dir, "Resize", SLOW);
    display.wait_for_text(&dir, "New capacity", SLOW);
    display.key("ctrl+a");
    display.type_text("3");
    display.key("Return");
    home.wait_until(
        &["vol-info", "--pool", "default", "grow.qcow2"],
        SLOW,
        |t| t.contains("3.00 GiB"),
    );
    let grown = images.join("grow.qcow2");
    let (ok, check) = qemu_img(&["check"], &grown);
    assert!(ok, "qemu-img check failed after the resize: {check}");
    let (_, info) = qemu_img(&["info", "--output=json"], &grown);
    assert!(
        info.contains(&format!("\"virtual-size\": {}", 3 * GIB)),
        "{info}"
    );

    display.wait_for_text(&dir, "was resized", SLOW);

    // Shrinking it is refused in the dialog, with the reason; the file
    // keeps its size. (Resize…'s mnemonic: a click could land on the
    // toast's "resized".)
    display.key("alt+r");
    display.wait_for_text(&dir, "New capacity", SLOW);
    display.key("ctrl+a");
    display.type_text("1");
    display.key("Return");
    display.wait_for_text(&dir, "can only grow", SLOW);
    let (_, info) = qemu_img(&["info", "--output=json"], &grown);
    assert!(
        info.contains(&format!("\"virtual-size\": {}", 3 * GIB)),
        "the refused shrink changed the volume: {info}"
    );
    display.key("Escape");

    // Delete the raw volume: the page asks first, then the file is gone
    // and the other volume stays.
    display.click_text(&dir, "gone.raw", SLOW);
    display.click_text(&dir, "Delete Volume", SLOW);
    display.wait_for_text(&dir, "cannot be undone", SLOW);
    assert!(
        images.join("gone.raw").exists(),
        "deleted before the answer"
    );
    display.key("alt+d");
    home.wait_until(&["vol-list", "default"], SLOW, |t| !t.contains("gone.raw"));
    assert!(!images.join("gone.raw").exists());
    assert!(grown.exists());
    display.wait_for_text(&dir, "was deleted", SLOW);
}
