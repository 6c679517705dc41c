//! A real X display for GUI tests: an Xvfb server of the test's own, the
//! `vireo` window started on it as a user would start it, driven with
//! xdotool (keys and clicks, as a person would) and read back with
//! screenshots and tesseract.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::{require_program, Home};

/// An Xvfb display, stopped when dropped.
pub struct Display {
    server: std::sync::Mutex<Child>,
    /// What Xvfb printed, for a window that cannot open the display.
    log: tempfile::NamedTempFile,
    pub name: String,
}

impl Display {
    pub fn start() -> Self {
        require_program("Xvfb");
        require_program("xdotool");
        require_program("import");
        require_program("tesseract");
        let log = tempfile::NamedTempFile::new().unwrap();
        // Xvfb picks a free display number and prints it on stdout.
        // `-noreset`: a test that closes one window and opens the next
        // must not meet a server in the middle of the reset it does when
        // its last client goes.
        let mut server = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
                "-noreset",
            ])
            .stdout(Stdio::piped())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        let mut number = String::new();
        let mut stdout = std::io::BufReader::new(server.stdout.take().unwrap());
        use std::io::BufRead;
        stdout.read_line(&mut number).unwrap();
        assert!(!number.is_empty(), "Xvfb did not start");
        Display {
            server: std::sync::Mutex::new(server),
            log,
            name: format!(":{}", number.trim()),
        }
    }

    /// Whether Xvfb still runs, and what it printed.
    pub fn server_state(&self) -> String {
        let said = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let state = match self.server.lock().unwrap().try_wait() {
            Ok(None) => "running".to_string(),
            Ok(Some(status)) => format!("exited ({status})"),
            Err(e) => format!("unknown ({e})"),
        };
        format!("Xvfb {} is {state}; it said:\n{said}", self.name)
    }

    /// The X id of Vireo's main window, empty when none is shown.
    pub fn main_window(&self) -> String {
        let ids = self.xdotool(&["search", "--onlyvisible", "--name", "^Vireo$"]);
        ids.lines().next().unwrap_or_default().to_string()
    }

    /// The main window's position and size: (x, y, width, height).
    pub fn main_window_geometry(&self) -> (u32, u32, u32, u32) {
        let shell = self.xdotool(&["getwindowgeometry", "--shell", &self.main_window()]);
        let field = |name: &str| -> u32 {
            shell
                .lines()
                .find_map(|l| l.strip_prefix(&format!("{name}=")))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0)
        };
        (field("X"), field("Y"), field("WIDTH"), field("HEIGHT"))
    }

    /// The middle of the main window's content pane, right of the 260 px
    /// sidebar: where the console and the VM's tabs are.
    pub fn content_point(&self) -> (u32, u32) {
        let (x, y, w, h) = self.main_window_geometry();
        (x + 260 + (w.saturating_sub(260)) / 2, y + h / 2)
    }

    /// Runs xdotool with `args` on this display.
    pub fn xdotool(&self, args: &[&str]) -> String {
        let out = Command::new("xdotool")
            .args(args)
            .env("DISPLAY", &self.name)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn key(&self, keys: &str) {
        self.xdotool(&["key", "--clearmodifiers", keys]);
        std::thread::sleep(Duration::from_millis(300));
    }

    pub fn type_text(&self, text: &str) {
        self.xdotool(&["type", "--delay", "60", text]);
        std::thread::sleep(Duration::from_millis(300));
    }

    pub fn click(&self, x: u32, y: u32) {
        self.xdotool(&["mousemove", &x.to_string(), &y.to_string(), "click", "1"]);
        std::thread::sleep(Duration::from_millis(300));
    }

    /// A PNG of the whole screen.
    pub fn screenshot(&self, path: &Path) {
        let status = Command::new("import")
            .args(["-window", "root"])
            .arg(path)
            .env("DISPLAY", &self.name)
            .status()
            .unwrap();
        assert!(status.success(), "import failed");
    }

    /// What tesseract reads on the screen now (`lang`: `eng`, `chi_sim`).
    pub fn read_screen(&self, dir: &Path, lang: &str) -> String {
        let shot = dir.join("screen.png");
        self.screenshot(&shot);
        ocr(&shot, lang)
    }

    /// Waits until the screen shows `text` (case-insensitive), returning
    /// everything read; panics with the last reading after `timeout`.
    /// Dimmed text (a sidebar's captions) counts: when the usual readings
    /// miss `text`, the screenshot is read once more with light grey
    /// made black.
    pub fn wait_for_text(&self, dir: &Path, text: &str, timeout: Duration) -> String {
        let wanted = text.to_lowercase();
        super::wait::poll(timeout, Duration::from_millis(500), || {
            let mut seen = self.read_screen(dir, "eng");
            if !seen.to_lowercase().contains(&wanted) {
                let faint = faint_input(&dir.join("screen.png"));
                seen.push_str(&tesseract(&faint, "eng", &[]));
            }
            if seen.to_lowercase().contains(&wanted) {
                Ok(seen)
            } else {
                Err(seen)
            }
        })
        .unwrap_or_else(|seen| {
            let kept = dir.join("last-screen.png");
            let _ = std::fs::copy(dir.join("screen.png"), &kept);
            panic!("the screen never showed {text:?}; it read:\n{seen}");
        })
    }
}

impl Display {
    /// What tesseract reads in the main window's left part, where the
    /// sidebar is: read alone, a narrow column of small (or red) lines
    /// beside a large page reads whole.
    pub fn read_sidebar(&self, dir: &Path) -> String {
        let shot = dir.join("screen.png");
        self.screenshot(&shot);
        let (x, y, w, h) = self.main_window_geometry();
        let crop = dir.join("sidebar.png");
        // The sidebar alone (it is 260 px wide and more): a piece of the
        // content beside it (a console's black screen) throws tesseract's
        // page layout off and garbles the sidebar's lines.
        let status = Command::new("convert")
            .arg(&shot)
            .args(["-crop", &format!("{}x{h}+{x}+{y}", (w * 2 / 5).min(265))])
            .arg(&crop)
            .status()
            .unwrap();
        assert!(status.success(), "convert -crop failed");
        ocr(&crop, "eng")
    }

    /// Waits until the sidebar shows `text` (case-insensitive, on one
    /// line), returning what it read.
    pub fn wait_for_sidebar_text(&self, dir: &Path, text: &str, timeout: Duration) -> String {
        let wanted = text.to_lowercase();
        super::wait::poll(timeout, Duration::from_millis(500), || {
            let seen = self.read_sidebar(dir);
            if seen.to_lowercase().contains(&wanted) {
                Ok(seen)
            } else {
                Err(seen)
            }
        })
        .unwrap_or_else(|seen| {
            let _ = std::fs::copy(dir.join("screen.png"), dir.join("last-screen.png"));
            panic!("the sidebar never showed {text:?}; it read:\n{seen}");
        })
    }

    /// Where tesseract reads `text` (case-insensitive; one word, part of
    /// a word, or words on one line) on the screen, in screen pixels: the
    /// test's way to find a tab, a row or a button the way a person finds
    /// it by looking.
    pub fn locate(&self, dir: &Path, text: &str) -> Option<(u32, u32)> {
        self.locate_all(dir, text).into_iter().next()
    }

    /// Every place tesseract reads `text` on the screen, in its reading
    /// order (the same place may come twice, once from each picture).
    pub fn locate_all(&self, dir: &Path, text: &str) -> Vec<(u32, u32)> {
        self.find(dir, text, false)
    }

    /// Like [`Self::locate_all`] with `exact`: each word read must be the
    /// word wanted (case and punctuation aside), not merely contain it, so
    /// "Connect" is not found in "Connection".
    fn find(&self, dir: &Path, text: &str, exact: bool) -> Vec<(u32, u32)> {
        let shot = dir.join("locate.png");
        self.screenshot(&shot);
        let wanted: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        let read = |input: &Path| -> Vec<(u32, u32)> {
            let words: Vec<OcrWord> = tesseract(input, "eng", &["tsv"])
                .lines()
                .skip(1)
                .filter_map(OcrWord::parse)
                .collect();
            words
                .windows(wanted.len())
                .filter_map(|run| {
                    let (first, last) = (&run[0], &run[run.len() - 1]);
                    let matches = run.iter().zip(&wanted).all(|(word, want)| {
                        let read = word.text.to_lowercase();
                        let same = if exact {
                            read.trim_matches(|c: char| !c.is_alphanumeric()) == want.as_str()
                        } else {
                            read.contains(want.as_str())
                        };
                        word.line == first.line && same
                    });
                    // Words of one phrase, not a row's word beside a menu's
                    // that tesseract put on the same line ("copyme" in the
                    // sidebar, "to This" in the menu: a click between them
                    // lands outside the menu and closes it).
                    let adjacent = run.windows(2).all(|pair| {
                        let height = pair[0].bottom.saturating_sub(pair[0].top).max(1);
                        pair[1].left.saturating_sub(pair[0].right) < 2 * height
                    });
                    let matches = matches && adjacent;
                    // Halved: tesseract read the picture at twice the size.
                    matches.then(|| {
                        (
                            (first.left + last.right) / 4,
                            (first.top + first.bottom) / 4,
                        )
                    })
                })
                .collect()
        };
        let found: Vec<(u32, u32)> = ocr_inputs(&shot).iter().flat_map(|i| read(i)).collect();
        if !found.is_empty() {
            return found;
        }
        // Dimmed text (an empty entry's title, a caption) only when the
        // usual pictures have nothing: it costs a third reading.
        read(&faint_input(&shot))
    }

    /// Clicks on `word` itself, not on a longer word that contains it,
    /// where it is highest on the screen (a header bar's button over a
    /// row that starts with the same word), once the screen shows it.
    pub fn click_word(&self, dir: &Path, word: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(&(x, y)) = self.find(dir, word, true).iter().min_by_key(|(_, y)| *y) {
                self.click(x, y);
                return;
            }
            if Instant::now() > deadline {
                let _ = std::fs::copy(dir.join("locate.png"), dir.join("last-screen.png"));
                panic!("never found the word {word:?} on the screen to click");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Clicks on the word(s) `text` themselves in the sidebar (the main
    /// window's left part), the lowest there: a VM's row under a group
    /// title with the same word, not the page's sentence that names it.
    pub fn click_in_sidebar(&self, dir: &Path, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            let (left, _, width, _) = self.main_window_geometry();
            let found = self.find(dir, text, true);
            let lowest = found
                .iter()
                .filter(|(x, _)| *x < left + width * 2 / 5)
                .max_by_key(|(_, y)| *y);
            if let Some(&(x, y)) = lowest {
                self.click(x, y);
                return;
            }
            if Instant::now() > deadline {
                let _ = std::fs::copy(dir.join("locate.png"), dir.join("last-screen.png"));
                panic!("never found {text:?} in the sidebar to click");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Clicks on the lowest place the screen shows the word(s) `text`
    /// themselves (a dialog's button under a heading with the same word;
    /// not "copyme" for "Copy") once it shows them.
    pub fn click_lowest(&self, dir: &Path, text: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(&(x, y)) = self.find(dir, text, true).iter().max_by_key(|(_, y)| *y) {
                self.click(x, y);
                return;
            }
            if Instant::now() > deadline {
                let _ = std::fs::copy(dir.join("locate.png"), dir.join("last-screen.png"));
                panic!("never found {text:?} on the screen to click");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Opens the main menu (F10) and picks the item with mnemonic `key`
    /// until the screen shows `expect`: under load the menu can open after
    /// the key meant for it, so a missed attempt is closed and made again.
    pub fn pick_from_main_menu(&self, dir: &Path, key: &str, expect: &str) -> String {
        for _ in 0..4 {
            self.key("F10");
            std::thread::sleep(Duration::from_secs(1));
            self.key(key);
            let deadline = Instant::now() + Duration::from_secs(10);
            while Instant::now() < deadline {
                let seen = self.read_screen(dir, "eng");
                if seen.contains(expect) {
                    return seen;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            self.key("Escape");
        }
        self.wait_for_text(dir, expect, Duration::from_secs(1))
    }

    /// Opens the VM menu (the ⋮ button at the end of the content's header
    /// bar, left of the window's own three buttons) until it shows `expect`.
    pub fn open_vm_menu(&self, dir: &Path, expect: &str) {
        let (x, y, width, _) = self.main_window_geometry();
        for _ in 0..4 {
            self.click(x + width - 142, y + 27);
            let shown =
                super::wait::poll(Duration::from_secs(10), Duration::from_millis(500), || {
                    let seen = self.read_screen(dir, "eng");
                    if seen.contains(expect) {
                        Ok(())
                    } else {
                        Err(seen)
                    }
                });
            if shown.is_ok() {
                return;
            }
            self.key("Escape");
        }
        self.wait_for_text(dir, expect, Duration::from_secs(1));
    }

    /// Clicks on `word` once the screen shows it.
    pub fn click_text(&self, dir: &Path, word: &str, timeout: Duration) {
        self.click_any(dir, &[word], timeout);
    }

    /// Clicks on the first of `words` the screen shows.
    pub fn click_any(&self, dir: &Path, words: &[&str], timeout: Duration) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some((x, y)) = words.iter().find_map(|w| self.locate(dir, w)) {
                self.click(x, y);
                return;
            }
            if Instant::now() > deadline {
                let _ = std::fs::copy(dir.join("locate.png"), dir.join("last-screen.png"));
                panic!("never found {words:?} on the screen to click");
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }
}

impl Drop for Display {
    fn drop(&mut self) {
        let server = self.server.get_mut().unwrap();
        let _ = server.kill();
        let _ = server.wait();
    }
}

/// The two pictures tesseract reads of a screenshot: the screenshot at
/// twice the size in grey (small UI text reads better so), and its
/// negative, so light text on a dark background (a suggested button, a
/// guest's console) is read as well.
fn ocr_inputs(png: &Path) -> [PathBuf; 2] {
    [("x2.png", false), ("neg.png", true)].map(|(suffix, negate)| {
        let scaled = png.with_extension(suffix);
        let mut convert = Command::new("convert");
        convert
            .arg(png)
            .args(["-resize", "200%", "-colorspace", "Gray"]);
        if negate {
            convert.args(["-threshold", "55%", "-negate"]);
        }
        let _ = convert.arg(&scaled).status();
        scaled
    })
}

/// The screenshot at twice the size with everything darker than light
/// grey made black: dimmed text (GTK's `dim-label`, an empty entry's
/// title) reads as well as any.
fn faint_input(png: &Path) -> PathBuf {
    let faint = png.with_extension("faint.png");
    let _ = Command::new("convert")
        .arg(png)
        .args([
            "-resize",
            "200%",
            "-colorspace",
            "Gray",
            "-threshold",
            "80%",
        ])
        .arg(&faint)
        .status();
    faint
}

fn tesseract(input: &Path, lang: &str, format: &[&str]) -> String {
    let out = Command::new("tesseract")
        .arg(input)
        .arg("-")
        .args(["-l", lang])
        .args(format)
        .stderr(Stdio::null())
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A word in tesseract's TSV output, with its line and box.
struct OcrWord {
    /// Block, paragraph and line numbers: words with equal ones share a line.
    line: (u32, u32, u32),
    left: u32,
    right: u32,
    top: u32,
    bottom: u32,
    text: String,
}

impl OcrWord {
    fn parse(row: &str) -> Option<Self> {
        let f: Vec<&str> = row.split('\t').collect();
        if f.len() < 12 || f[11].trim().is_empty() {
            return None;
        }
        let num = |i: usize| f[i].parse::<u32>().ok();
        let (left, top) = (num(6)?, num(7)?);
        Some(OcrWord {
            line: (num(2)?, num(3)?, num(4)?),
            left,
            right: left + num(8)?,
            top,
            bottom: top + num(9)?,
            text: f[11].to_string(),
        })
    }
}

/// Tesseract's reading of a PNG (see [`ocr_inputs`]).
pub fn ocr(png: &Path, lang: &str) -> String {
    let mut text = String::new();
    for input in ocr_inputs(png) {
        text.push_str(&tesseract(&input, lang, &[]));
        text.push('\n');
    }
    text
}

/// The `vireo` window, started as a user starts it, in `home`. What it
/// prints (its log, at debug level for Vireo's own modules) goes to a file
/// that a failing test shows: a window that never appears, or a test that
/// panics while the window is up, says what the window said.
pub struct App {
    child: Child,
    log: tempfile::NamedTempFile,
}

impl App {
    pub fn start(display: &Display, home: &Path, extra_env: &[(&str, &str)]) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vireo"));
        command
            .env("VIREO_HOME", home)
            // GTK's list of recent files, which the file chooser writes,
            // stays in the test's home too.
            .env("XDG_DATA_HOME", home.join("xdg-data"))
            .env("DISPLAY", &display.name)
            .env_remove("WAYLAND_DISPLAY")
            .env("GDK_BACKEND", "x11")
            .env("GSK_RENDERER", "cairo")
            .env("NO_AT_BRIDGE", "1")
            .env("LANG", "C.UTF-8")
            .env("VIREO_LOG", "warn,vireo=debug");
        let log = tempfile::NamedTempFile::new().unwrap();
        command
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap());
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        let mut app = App { child, log };
        // The window is up when X knows it (slow when four GUI tests start
        // at once on two loaded cores).
        let deadline = Instant::now() + Duration::from_secs(90);
        while display
            .xdotool(&["search", "--onlyvisible", "--name", "Vireo"])
            .trim()
            .is_empty()
        {
            if let Ok(Some(status)) = app.child.try_wait() {
                panic!(
                    "the window exited ({status}) before it appeared; it said:\n{}\n{}",
                    app.log(),
                    display.server_state()
                );
            }
            assert!(
                Instant::now() < deadline,
                "the window never appeared in 90 s; it said:\n{}\n{}",
                app.log(),
                display.server_state()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        // Bring it to the front with the keyboard focus, as a click would.
        let id = display.xdotool(&["search", "--onlyvisible", "--name", "Vireo"]);
        if let Some(id) = id.lines().next() {
            display.xdotool(&["windowactivate", "--sync", id]);
            display.xdotool(&["windowfocus", "--sync", id]);
        }
        std::thread::sleep(Duration::from_millis(500));
        app
    }
}

impl App {
    /// Starts the window in `home` as on a host without KVM: its device
    /// path names a file that does not exist.
    pub fn start_without_kvm(display: &Display, home: &Home) -> Self {
        let missing = home.path("no-such-kvm");
        Self::start(
            display,
            home.dir.path(),
            &[("VIREO_KVM_DEVICE", missing.to_str().unwrap())],
        )
    }
}

impl App {
    /// The last 16 KiB of what the window printed.
    pub fn log(&self) -> String {
        const TAIL: usize = 16 * 1024;
        let text = std::fs::read(self.log.path()).unwrap_or_default();
        let start = text.len().saturating_sub(TAIL);
        String::from_utf8_lossy(&text[start..]).into_owned()
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("--- what the window said ---\n{}--- end ---", self.log());
        }
    }
}

/// Where a GUI test keeps screenshots that explain a failure.
pub fn artifacts(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
