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
    server: Child,
    pub name: String,
}

impl Display {
    pub fn start() -> Self {
        require_program("Xvfb");
        require_program("xdotool");
        require_program("import");
        require_program("tesseract");
        // Xvfb picks a free display number and prints it on stdout.
        let mut server = Command::new("Xvfb")
            .args([
                "-displayfd",
                "1",
                "-screen",
                "0",
                "1280x800x24",
                "-nolisten",
                "tcp",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut number = String::new();
        let mut stdout = std::io::BufReader::new(server.stdout.take().unwrap());
        use std::io::BufRead;
        stdout.read_line(&mut number).unwrap();
        assert!(!number.is_empty(), "Xvfb did not start");
        Display {
            server,
            name: format!(":{}", number.trim()),
        }
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
    pub fn wait_for_text(&self, dir: &Path, text: &str, timeout: Duration) -> String {
        super::wait::poll(timeout, Duration::from_millis(500), || {
            let seen = self.read_screen(dir, "eng");
            if seen.to_lowercase().contains(&text.to_lowercase()) {
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
    /// Where tesseract reads `text` (case-insensitive; one word, part of
    /// a word, or words on one line) on the screen, in screen pixels: the
    /// test's way to find a tab, a row or a button the way a person finds
    /// it by looking.
    pub fn locate(&self, dir: &Path, text: &str) -> Option<(u32, u32)> {
        let shot = dir.join("locate.png");
        self.screenshot(&shot);
        let wanted: Vec<String> = text.split_whitespace().map(str::to_lowercase).collect();
        ocr_inputs(&shot).iter().find_map(|input| {
            let words: Vec<OcrWord> = tesseract(input, "eng", &["tsv"])
                .lines()
                .skip(1)
                .filter_map(OcrWord::parse)
                .collect();
            words.windows(wanted.len()).find_map(|run| {
                let (first, last) = (&run[0], &run[run.len() - 1]);
                let matches = run.iter().zip(&wanted).all(|(word, want)| {
                    word.line == first.line && word.text.to_lowercase().contains(want.as_str())
                });
                // Halved: tesseract read the picture at twice the size.
                matches.then(|| {
                    (
                        (first.left + last.right) / 4,
                        (first.top + first.bottom) / 4,
                    )
                })
            })
        })
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
        let _ = self.server.kill();
        let _ = self.server.wait();
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

/// The `vireo` window, started as a user starts it, in `home`.
pub struct App {
    child: Child,
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
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for (k, v) in extra_env {
            command.env(k, v);
        }
        let child = command.spawn().unwrap();
        let app = App { child };
        // The window is up when X knows it (slow when four GUI tests start
        // at once on two loaded cores).
        let deadline = Instant::now() + Duration::from_secs(90);
        while display
            .xdotool(&["search", "--onlyvisible", "--name", "Vireo"])
            .trim()
            .is_empty()
        {
            assert!(Instant::now() < deadline, "the window never appeared");
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

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a GUI test keeps screenshots that explain a failure.
pub fn artifacts(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
