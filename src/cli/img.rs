//! `vireo img`: qemu-img's verbs for raw and qcow2 images.
//!
//! `create`, `info`, `check`, `convert`, `resize` and `snapshot` take qemu-img's flags
//! and print what qemu-img 7.2 prints: the same `Formatting ...` line, the
//! same `info` layout and JSON (keys in QEMU's hash-table order), the same
//! `check` summary and exit codes (0 clean, 1 check failed, 2 corrupt,
//! 3 leaks, 63 format cannot be checked), the same `(12.34/100%)` progress.
//! A hidden `bench` verb times Vireo's block layer for scripts/bench_block.py,
//! and a hidden `virtio-bench` its virtio-blk device (`img_virtio_bench`).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};

use crate::storage::qcow2::{self, header::Qcow2Header, CreateOptions, Preallocation};
use crate::storage::{
    detect_format, lock_image, open_image, BlockBackend, ImageFormat, Qcow2Image,
};

#[derive(Args)]
pub struct ImgArgs {
    #[command(subcommand)]
    verb: ImgVerb,
}

#[derive(Subcommand)]
enum ImgVerb {
    /// Create a disk image (qemu-img create).
    Create(CreateArgs),
    /// Show an image's format, sizes and backing file (qemu-img info).
    Info(InfoArgs),
    /// Check a qcow2 image's metadata for leaks and corruptions (qemu-img check).
    Check(CheckArgs),
    /// Copy an image into another, possibly of another format (qemu-img convert).
    Convert(ConvertArgs),
    /// Change an image's virtual size (qemu-img resize).
    Resize(ResizeArgs),
    /// List, create, apply or delete internal snapshots (qemu-img snapshot).
    Snapshot(super::img_snapshot::SnapshotArgs),
    /// Time reads and writes through Vireo's block layer.
    #[command(hide = true)]
    Bench(BenchArgs),
    /// Time an access pattern through the virtio-blk device, driven as a
    /// guest driver would drive it.
    #[command(hide = true)]
    VirtioBench(super::img_virtio_bench::VirtioBenchArgs),
}

#[derive(Args)]
struct CreateArgs {
    /// Image format: raw or qcow2.
    #[arg(short = 'f', default_value = "raw")]
    format: String,
    /// Format options, comma-separated: size, preallocation, cluster_size,
    /// lazy_refcounts, refcount_bits, backing_file, backing_fmt, compat.
    #[arg(short = 'o', action = clap::ArgAction::Append)]
    options: Vec<String>,
    /// Backing file (qcow2 only); relative names are relative to FILE.
    #[arg(short = 'b')]
    backing: Option<String>,
    /// Backing file format.
    #[arg(short = 'F')]
    backing_format: Option<String>,
    /// Do not open the backing file (its size is then needed as SIZE).
    #[arg(short = 'u')]
    unsafe_backing: bool,
    /// Quiet: print nothing on success.
    #[arg(short = 'q')]
    quiet: bool,
    /// Show progress while preallocating.
    #[arg(short = 'p')]
    progress: bool,
    file: PathBuf,
    /// Virtual size, with an optional k, M, G, T, P or E suffix.
    size: Option<String>,
}

#[derive(Args)]
struct InfoArgs {
    /// Image format (probed when omitted).
    #[arg(short = 'f')]
    format: Option<String>,
    /// human or json.
    #[arg(long, default_value = "human")]
    output: String,
    file: PathBuf,
}

#[derive(Args)]
struct CheckArgs {
    #[arg(short = 'f')]
    format: Option<String>,
    /// human or json.
    #[arg(long, default_value = "human")]
    output: String,
    #[arg(short = 'q')]
    quiet: bool,
    file: PathBuf,
}

#[derive(Args)]
struct ConvertArgs {
    /// Source format (probed when omitted).
    #[arg(short = 'f')]
    format: Option<String>,
    /// Output format.
    #[arg(short = 'O', default_value = "raw")]
    output_format: String,
    /// Output format options, as for create.
    #[arg(short = 'o', action = clap::ArgAction::Append)]
    options: Vec<String>,
    /// Show progress.
    #[arg(short = 'p')]
    progress: bool,
    #[arg(short = 'q')]
    quiet: bool,
    source: PathBuf,
    destination: PathBuf,
}

#[derive(Args)]
struct ResizeArgs {
    #[arg(short = 'f')]
    format: Option<String>,
    /// Allow making the image smaller (data past the new end is lost).
    #[arg(long)]
    shrink: bool,
    #[arg(short = 'q')]
    quiet: bool,
    file: PathBuf,
    /// New size, or +SIZE / -SIZE relative to the current one.
    #[arg(allow_hyphen_values = true)]
    size: String,
}

#[derive(Args)]
struct BenchArgs {
    #[arg(short = 'f')]
    format: Option<String>,
    /// seq-read, seq-write, rand-read or rand-write (a stride of 7919 blocks).
    #[arg(long)]
    pattern: String,
    /// Bytes per request.
    #[arg(long, default_value = "1M")]
    block: String,
    /// Total bytes to transfer.
    #[arg(long, default_value = "64M")]
    total: String,
    file: PathBuf,
}

pub fn run(args: ImgArgs) -> Result<ExitCode, String> {
    match args.verb {
        ImgVerb::Create(args) => create(args),
        ImgVerb::Info(args) => info(args),
        ImgVerb::Check(args) => check(args),
        ImgVerb::Convert(args) => convert(args),
        ImgVerb::Resize(args) => resize(args),
        ImgVerb::Snapshot(args) => super::img_snapshot::run(args),
        ImgVerb::Bench(args) => bench(args),
        ImgVerb::VirtioBench(args) => super::img_virtio_bench::run(args),
    }
}

const SIZE_HELP: &str = "Invalid image size specified. You may use k, M, G, T, P or E suffixes for\nkilobytes, megabytes, gigabytes, terabytes, petabytes and exabytes.";

/// Parses a size as qemu-img does: a number, possibly with a fraction,
/// then an optional binary suffix (`k`/`K`, `M`, `G`, `T`, `P`, `E`, or `B`
/// for bytes), which Vireo also takes spelled `KiB`/`KB`, `MiB`/`MB`, ...
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let digits_end = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(digits_end);
    if number.is_empty() || number.starts_with('.') {
        return None;
    }
    let suffix = suffix
        .strip_suffix("iB")
        .or_else(|| suffix.strip_suffix('B').filter(|s| !s.is_empty()))
        .unwrap_or(suffix);
    let shift = match suffix {
        "" | "b" | "B" => 0,
        "k" | "K" => 10,
        "m" | "M" => 20,
        "g" | "G" => 30,
        "t" | "T" => 40,
        "p" | "P" => 50,
        "e" | "E" => 60,
        _ => return None,
    };
    if let Some((whole, fraction)) = number.split_once('.') {
        // A fraction needs a unit to be a fraction of, as in qemu.
        if shift == 0 || fraction.contains('.') {
            return None;
        }
        let value: f64 = format!("{whole}.{fraction}").parse().ok()?;
        let bytes = value * (1u64 << shift) as f64;
        return (bytes < u64::MAX as f64).then_some(bytes as u64);
    }
    number.parse::<u64>().ok()?.checked_mul(1 << shift)
}

/// Formats a size as QEMU's `size_to_str` does: binary units and three
/// significant digits in C's `%0.3g` style ("5 GiB", "968 KiB", "1.3 MiB").
pub fn size_to_str(bytes: u64) -> String {
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    // QEMU switches to the next unit from 1000 of the current one.
    let scaled = bytes as f64 / (1000.0 / 1024.0);
    let bits = if scaled < 1.0 {
        0
    } else {
        scaled.log2().floor() as i32 + 1
    };
    let unit = (((bits - 1).max(0)) / 10).min(6) as usize;
    let value = bytes as f64 / (1u64 << (unit * 10)) as f64;
    format!("{} {}B", format_g3(value), SUFFIXES[unit])
}

/// C's `%0.3g`.
fn format_g3(value: f64) -> String {
    if value == 0.0 {
        return "0".into();
    }
    let sci = format!("{value:.2e}");
    let exponent: i32 = sci
        .split_once('e')
        .and_then(|(_, e)| e.parse().ok())
        .unwrap_or(0);
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    if !(-4..3).contains(&exponent) {
        let (mantissa, _) = sci.split_once('e').unwrap_or((&sci, ""));
        let sign = if exponent < 0 { '-' } else { '+' };
        return format!("{}e{sign}{:02}", trim(mantissa.to_string()), exponent.abs());
    }
    let decimals = (2 - exponent).max(0) as usize;
    trim(format!("{value:.decimals$}"))
}

/// Prints qemu's progress line, `    (12.34/100%)` ending in a carriage
/// return, whenever it moves by at least 1%.
struct Progress {
    enabled: bool,
    shown: f64,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        let progress = Self {
            enabled,
            shown: 0.0,
        };
        progress.print(0.0);
        progress
    }

    fn print(&self, percent: f64) {
        if self.enabled {
            let mut out = std::io::stdout();
            let _ = write!(out, "    ({percent:.2}/100%)\r");
            let _ = out.flush();
        }
    }

    fn update(&mut self, percent: f64) {
        if percent - self.shown >= 1.0 || (percent >= 100.0 && self.shown < 100.0) {
            self.shown = percent;
            self.print(percent);
        }
    }

    fn finish(self) {
        if self.enabled {
            self.print(self.shown);
            println!();
        }
    }
}

fn parse_format(name: &str, file: &Path) -> Result<ImageFormat, String> {
    ImageFormat::parse(name)
        .ok_or_else(|| format!("{}: Unknown file format '{name}'", file.display()))
}

pub(super) fn format_or_probe(format: &Option<String>, file: &Path) -> Result<ImageFormat, String> {
    match format {
        Some(name) => parse_format(name, file),
        None => detect_format(file).map_err(|e| e.to_string()),
    }
}

fn parse_bool(value: &str) -> Option<bool> {
    match value {
        "on" | "yes" | "true" | "y" => Some(true),
        "off" | "no" | "false" | "n" => Some(false),
        _ => None,
    }
}

/// `-o` options after parsing, with the text qemu-img echoes for each.
#[derive(Default)]
struct FormatOptions {
    size: Option<u64>,
    preallocation: Option<String>,
    cluster_size: Option<u64>,
    lazy_refcounts: Option<String>,
    refcount_bits: Option<u64>,
    backing_file: Option<String>,
    backing_fmt: Option<String>,
    compat: Option<String>,
    extended_l2: Option<String>,
    compression_type: Option<String>,
}

fn parse_options(
    list: &[String],
    format: ImageFormat,
    file: &Path,
) -> Result<FormatOptions, String> {
    let mut options = FormatOptions::default();
    let name = file.display();
    for item in list
        .iter()
        .flat_map(|o| o.split(','))
        .filter(|o| !o.is_empty())
    {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("{name}: Invalid parameter '{item}'"))?;
        let size = || {
            parse_size(value).ok_or_else(|| {
                format!("{name}: Parameter '{key}' expects a non-negative number below 2^64")
            })
        };
        let value = value.to_string();
        match (format, key) {
            (_, "size") => options.size = Some(size()?),
            (_, "preallocation") => options.preallocation = Some(value),
            (ImageFormat::Qcow2, "cluster_size") => options.cluster_size = Some(size()?),
            (ImageFormat::Qcow2, "refcount_bits") => {
                options.refcount_bits =
                    Some(value.parse().map_err(|_| {
                        format!("{name}: Parameter 'refcount_bits' expects a number")
                    })?)
            }
            (ImageFormat::Qcow2, "lazy_refcounts") => options.lazy_refcounts = Some(value),
            (ImageFormat::Qcow2, "backing_file") => options.backing_file = Some(value),
            (ImageFormat::Qcow2, "backing_fmt") => options.backing_fmt = Some(value),
            (ImageFormat::Qcow2, "compat") => options.compat = Some(value),
            (ImageFormat::Qcow2, "extended_l2") => options.extended_l2 = Some(value),
            (ImageFormat::Qcow2, "compression_type") => options.compression_type = Some(value),
            _ => return Err(format!("{name}: Invalid parameter '{key}'")),
        }
    }
    Ok(options)
}

/// What `create` (and `convert`'s output) makes.
struct CreatePlan {
    format: ImageFormat,
    preallocation: Preallocation,
    qcow2: CreateOptions,
}

/// Turns `-o` options into a plan and the `Formatting ...` line, checking
/// values in the order qemu-img does (the line is printed even when a
/// value is then refused, as qemu-img prints it).
fn plan_create(
    format: ImageFormat,
    options: &FormatOptions,
    size: u64,
    file: &Path,
) -> (String, Result<CreatePlan, String>) {
    let name = file.display();
    let mut line = format!("Formatting '{name}', fmt={}", format.name());
    let mut push = |key: &str, value: &str| {
        line.push_str(&format!(" {key}={value}"));
    };
    match format {
        ImageFormat::Raw => {
            push("size", &size.to_string());
            if let Some(p) = &options.preallocation {
                push("preallocation", p);
            }
        }
        ImageFormat::Qcow2 => {
            let cluster_size = options.cluster_size.unwrap_or(65536);
            push("cluster_size", &cluster_size.to_string());
            push(
                "extended_l2",
                options.extended_l2.as_deref().unwrap_or("off"),
            );
            if let Some(p) = &options.preallocation {
                push("preallocation", p);
            }
            push(
                "compression_type",
                options.compression_type.as_deref().unwrap_or("zlib"),
            );
            push("size", &size.to_string());
            if let Some(compat) = &options.compat {
                push("compat", compat);
            }
            if let Some(backing) = &options.backing_file {
                push("backing_file", backing);
            }
            if let Some(backing_fmt) = &options.backing_fmt {
                push("backing_fmt", backing_fmt);
            }
            push(
                "lazy_refcounts",
                options.lazy_refcounts.as_deref().unwrap_or("off"),
            );
            push(
                "refcount_bits",
                &options.refcount_bits.unwrap_or(16).to_string(),
            );
        }
    }
    let plan = (|| {
        let preallocation = match options.preallocation.as_deref() {
            None => Preallocation::Off,
            Some(p) => Preallocation::parse(p).ok_or_else(|| {
                format!("{name}: Parameter 'preallocation' does not accept value '{p}'")
            })?,
        };
        if format == ImageFormat::Raw && preallocation == Preallocation::Metadata {
            return Err(format!("{name}: Unsupported preallocation mode: metadata"));
        }
        let mut qcow2 = CreateOptions {
            size,
            preallocation,
            ..CreateOptions::default()
        };
        if format == ImageFormat::Qcow2 {
            match options.compat.as_deref() {
                None | Some("1.1") | Some("v3") => {}
                Some("0.10") | Some("v2") => {
                    return Err(format!(
                        "{name}: Vireo cannot create version 2 (compat=0.10) images; use compat=1.1"
                    ))
                }
                Some(other) => {
                    return Err(format!(
                        "{name}: Parameter 'version' does not accept value '{other}'"
                    ))
                }
            }
            match options.extended_l2.as_deref().map(parse_bool) {
                None | Some(Some(false)) => {}
                _ => return Err(format!("{name}: Vireo does not support extended_l2=on")),
            }
            match options.compression_type.as_deref() {
                None | Some("zlib") => {}
                Some(other) => {
                    return Err(format!(
                        "{name}: Vireo does not support compression_type={other}"
                    ))
                }
            }
            qcow2.lazy_refcounts = match options.lazy_refcounts.as_deref() {
                None => false,
                Some(v) => parse_bool(v).ok_or_else(|| {
                    format!("{name}: Parameter 'lazy_refcounts' expects 'on' or 'off'")
                })?,
            };
            qcow2.cluster_size =
                u32::try_from(options.cluster_size.unwrap_or(65536)).map_err(|_| {
                    format!("{name}: Cluster size must be a power of two between 512 and 2048k")
                })?;
            qcow2.refcount_bits = options.refcount_bits.unwrap_or(16) as u32;
            qcow2.backing_file = options.backing_file.clone();
            qcow2.backing_format = options.backing_fmt.clone();
        }
        Ok(CreatePlan {
            format,
            preallocation,
            qcow2,
        })
    })();
    (line, plan)
}

/// Creates the image `plan` describes at `file`.
fn make_image(plan: &CreatePlan, file: &Path, progress: &mut Progress) -> Result<(), String> {
    let name = file.display();
    match plan.format {
        ImageFormat::Qcow2 => Qcow2Image::create(file, &plan.qcow2, &mut |p| progress.update(p))
            .map_err(|e| format!("{name}: {e}")),
        ImageFormat::Raw => {
            let image = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false) // not before the lock: a VM may be using it
                .open(file)
                .map_err(|e| format!("{name}: Could not create '{name}': {e}"))?;
            lock_image(&image, file, false).map_err(|e| e.to_string())?;
            let size = plan.qcow2.size;
            let io = |e: std::io::Error| format!("{name}: {e}");
            image.set_len(0).map_err(io)?;
            match plan.preallocation {
                Preallocation::Off | Preallocation::Metadata => image.set_len(size).map_err(io),
                Preallocation::Falloc => {
                    image.set_len(size).map_err(io)?;
                    fallocate(&image, size).map_err(io)?;
                    progress.update(100.0);
                    Ok(())
                }
                Preallocation::Full => {
                    let zeroes = vec![0u8; 1 << 20];
                    let mut done = 0;
                    while done < size {
                        let n = (size - done).min(zeroes.len() as u64) as usize;
                        std::os::unix::fs::FileExt::write_all_at(&image, &zeroes[..n], done)
                            .map_err(io)?;
                        done += n as u64;
                        progress.update(done as f64 * 100.0 / size as f64);
                    }
                    image.sync_all().map_err(io)
                }
            }
        }
    }
}

fn fallocate(file: &File, len: u64) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    if len == 0 {
        return Ok(());
    }
    // SAFETY: plain syscall on a descriptor `file` owns; no pointers.
    let ret = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, len as libc::off_t) };
    if ret == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(ret))
    }
}

fn create(args: CreateArgs) -> Result<ExitCode, String> {
    let file = &args.file;
    let name = file.display().to_string();
    let format = parse_format(&args.format, file)?;
    let mut options = parse_options(&args.options, format, file)?;
    if args.backing.is_some() || args.backing_format.is_some() {
        if format != ImageFormat::Qcow2 {
            return Err(format!(
                "{name}: Backing file not supported for file format '{}'",
                format.name()
            ));
        }
        if args.backing.is_some() {
            options.backing_file = args.backing.clone();
        }
        if args.backing_format.is_some() {
            options.backing_fmt = args.backing_format.clone();
        }
    }
    let mut size = match &args.size {
        Some(text) => Some(parse_size(text).ok_or(SIZE_HELP)?),
        None => options.size,
    };
    if let Some(backing) = &options.backing_file {
        let Some(backing_fmt) = &options.backing_fmt else {
            return Err(format!(
                "{name}: Backing file specified without backing format"
            ));
        };
        let backing_format = ImageFormat::parse(backing_fmt)
            .ok_or_else(|| format!("{name}: Unknown backing file format '{backing_fmt}'"))?;
        if !args.unsafe_backing {
            let path = qcow2::resolve_backing(file, backing);
            let disk = open_image(&path, backing_format, true).map_err(|e| {
                format!(
                    "{name}: Could not open '{}': {e}\nCould not open backing image.",
                    path.display()
                )
            })?;
            size.get_or_insert(disk.size());
        }
    }
    let Some(size) = size else {
        return Err(format!("{name}: Image creation needs a size parameter"));
    };
    let (line, plan) = plan_create(format, &options, size, file);
    if !args.quiet {
        println!("{line}");
    }
    let plan = plan?;
    let mut progress = Progress::new(args.progress && plan.preallocation != Preallocation::Off);
    make_image(&plan, file, &mut progress)?;
    progress.finish();
    Ok(ExitCode::SUCCESS)
}

/// A JSON value printed as QEMU's QObject printer does.
enum Json {
    Int(u64),
    Bool(bool),
    Str(String),
    /// Members in insertion order; printed in QDict's hash-table order.
    Object(Vec<(&'static str, Json)>),
    /// Elements in order.
    Array(Vec<Json>),
}

/// QDict's bucket for a key (`tdb_hash` modulo 512): QEMU prints a dict's
/// members bucket by bucket, the later-inserted first within a bucket.
fn qdict_bucket(key: &str) -> u32 {
    let mut value = 0x238F_13AFu32.wrapping_mul(key.len() as u32);
    for (i, byte) in key.bytes().enumerate() {
        value = value.wrapping_add(u32::from(byte) << ((i as u32 * 5) % 24));
    }
    1_103_515_243u32.wrapping_mul(value).wrapping_add(12345) % 512
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || c as u32 == 0x7f => {
                out.push_str(&format!("\\u{:04X}", c as u32))
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Json {
    fn render(&self, indent: usize, out: &mut String) {
        match self {
            Json::Int(n) => out.push_str(&n.to_string()),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Str(s) => out.push_str(&json_string(s)),
            Json::Object(members) => {
                let mut order: Vec<usize> = (0..members.len()).collect();
                order.sort_by_key(|&i| (qdict_bucket(members[i].0), std::cmp::Reverse(i)));
                let entries = order.iter().map(|&i| (Some(members[i].0), &members[i].1));
                render_block(out, indent, ('{', '}'), entries.collect());
            }
            Json::Array(items) => {
                let entries = items.iter().map(|item| (None, item));
                render_block(out, indent, ('[', ']'), entries.collect());
            }
        }
    }
}

/// An object's or an array's body as QEMU prints it: the opening bracket,
/// each entry (with its key, in an object) on a line of its own
/// `indent + 4` deep, the closing bracket back at `indent`.
fn render_block(
    out: &mut String,
    indent: usize,
    (open, close): (char, char),
    entries: Vec<(Option<&str>, &Json)>,
) {
    out.push(open);
    out.push('\n');
    let count = entries.len();
    for (n, (key, value)) in entries.into_iter().enumerate() {
        out.push_str(&" ".repeat(indent + 4));
        if let Some(key) = key {
            out.push_str(&json_string(key));
            out.push_str(": ");
        }
        value.render(indent + 4, out);
        if n + 1 < count {
            out.push(',');
        }
        out.push('\n');
    }
    out.push_str(&" ".repeat(indent));
    out.push(close);
}

/// `snapshots` of `qemu-img info --output=json` (QAPI's SnapshotInfo).
fn snapshots_json(file: &Path) -> Result<Json, String> {
    let snapshots = qcow2::snapshot::list(file)
        .map_err(|e| format!("Could not open '{}': {e}", file.display()))?;
    Ok(Json::Array(
        snapshots
            .into_iter()
            .map(|sn| {
                let mut members = vec![
                    ("id", Json::Str(sn.id)),
                    ("name", Json::Str(sn.name)),
                    ("vm-state-size", Json::Int(sn.vm_state_size)),
                    ("date-sec", Json::Int(u64::from(sn.date_sec))),
                    ("date-nsec", Json::Int(u64::from(sn.date_nsec))),
                    ("vm-clock-sec", Json::Int(sn.vm_clock_nsec / 1_000_000_000)),
                    ("vm-clock-nsec", Json::Int(sn.vm_clock_nsec % 1_000_000_000)),
                ];
                if let Some(icount) = sn.icount {
                    members.push(("icount", Json::Int(icount)));
                }
                Json::Object(members)
            })
            .collect(),
    ))
}

fn print_json(value: &Json) {
    let mut out = String::new();
    value.render(0, &mut out);
    println!("{out}");
}

fn read_qcow2_header(file: &Path) -> Result<Qcow2Header, String> {
    let name = file.display();
    let image = File::open(file).map_err(|e| format!("Could not open '{name}': {e}"))?;
    Qcow2Header::read(&image).map_err(|e| format!("Could not open '{name}': {e}"))
}

fn info(args: InfoArgs) -> Result<ExitCode, String> {
    let file = &args.file;
    let name = file.display().to_string();
    if args.output != "human" && args.output != "json" {
        return Err("--output must be used with human or json as argument.".into());
    }
    let format = format_or_probe(&args.format, file)?;
    let meta = std::fs::metadata(file).map_err(|e| format!("Could not open '{name}': {e}"))?;
    let actual_size = meta.blocks() * 512;
    let header = match format {
        ImageFormat::Qcow2 => Some(read_qcow2_header(file)?),
        ImageFormat::Raw => None,
    };
    let virtual_size = header.as_ref().map_or(meta.len(), |h| h.size);
    let backing = header.as_ref().and_then(|h| h.backing_file.clone());
    let full_backing = backing
        .as_ref()
        .map(|b| qcow2::resolve_backing(file, b).display().to_string());

    if args.output == "json" {
        let mut members = vec![
            ("virtual-size", Json::Int(virtual_size)),
            ("filename", Json::Str(name.clone())),
        ];
        if let Some(h) = &header {
            members.push(("cluster-size", Json::Int(h.cluster_size())));
            if h.nb_snapshots > 0 {
                members.push(("snapshots", snapshots_json(file)?));
            }
        }
        members.push(("format", Json::Str(format.name().into())));
        members.push(("actual-size", Json::Int(actual_size)));
        if let Some(h) = &header {
            members.push((
                "format-specific",
                Json::Object(vec![
                    ("type", Json::Str("qcow2".into())),
                    ("data", Json::Object(qcow2_specific(h))),
                ]),
            ));
        }
        if let (Some(b), Some(full)) = (&backing, &full_backing) {
            members.push(("full-backing-filename", Json::Str(full.clone())));
            members.push(("backing-filename", Json::Str(b.clone())));
        }
        if let Some(f) = header.as_ref().and_then(|h| h.backing_format.clone()) {
            members.push(("backing-filename-format", Json::Str(f)));
        }
        members.push((
            "dirty-flag",
            Json::Bool(header.as_ref().is_some_and(|h| h.dirty())),
        ));
        print_json(&Json::Object(members));
        return Ok(ExitCode::SUCCESS);
    }

    println!("image: {name}");
    println!("file format: {}", format.name());
    println!(
        "virtual size: {} ({virtual_size} bytes)",
        size_to_str(virtual_size)
    );
    println!("disk size: {}", size_to_str(actual_size));
    if let Some(h) = &header {
        println!("cluster_size: {}", h.cluster_size());
        if h.dirty() {
            println!("cleanly shut down: no");
        }
        if let (Some(b), Some(full)) = (&backing, &full_backing) {
            if b == full {
                println!("backing file: {b}");
            } else {
                println!("backing file: {b} (actual path: {full})");
            }
        }
        if let Some(f) = &h.backing_format {
            println!("backing file format: {f}");
        }
        if h.nb_snapshots > 0 {
            let snapshots =
                qcow2::snapshot::list(file).map_err(|e| format!("Could not open '{name}': {e}"))?;
            println!("Snapshot list:");
            println!("{}", super::img_snapshot::listing_line(None));
            for sn in &snapshots {
                println!("{}", super::img_snapshot::listing_line(Some(sn)));
            }
        }
        println!("Format specific information:");
        for (key, value) in qcow2_specific(h) {
            let value = match value {
                Json::Str(s) => s,
                Json::Int(n) => n.to_string(),
                Json::Bool(b) => b.to_string(),
                Json::Object(_) | Json::Array(_) => continue,
            };
            println!("    {}: {value}", key.replace('-', " "));
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `format-specific.data` of `qemu-img info` for a qcow2 image, in QAPI order.
fn qcow2_specific(h: &Qcow2Header) -> Vec<(&'static str, Json)> {
    let mut data = vec![
        ("compat", Json::Str(h.compat().into())),
        ("compression-type", Json::Str("zlib".into())),
    ];
    if h.version >= 3 {
        data.push(("lazy-refcounts", Json::Bool(h.lazy_refcounts())));
    }
    data.push(("refcount-bits", Json::Int(u64::from(h.refcount_bits()))));
    if h.version >= 3 {
        data.push(("corrupt", Json::Bool(h.corrupt())));
        data.push(("extended-l2", Json::Bool(false)));
    }
    data
}

fn check(args: CheckArgs) -> Result<ExitCode, String> {
    let file = &args.file;
    let name = file.display().to_string();
    if args.output != "human" && args.output != "json" {
        return Err("--output must be used with human or json as argument.".into());
    }
    let format = format_or_probe(&args.format, file)?;
    if format != ImageFormat::Qcow2 {
        eprintln!("vireo: This image format does not support checks");
        return Ok(ExitCode::from(63));
    }
    let image = File::open(file).map_err(|e| format!("Could not open '{name}': {e}"))?;
    lock_image(&image, file, true).map_err(|e| e.to_string())?;
    let report = qcow2::check(&image).map_err(|e| format!("Could not open '{name}': {e}"))?;
    for message in &report.messages {
        eprintln!("{message}");
    }
    if args.output == "json" {
        let mut members = vec![
            ("filename", Json::Str(name)),
            ("format", Json::Str("qcow2".into())),
            ("check-errors", Json::Int(report.check_errors)),
        ];
        let optional = [
            ("image-end-offset", report.image_end_offset),
            ("corruptions", report.corruptions),
            ("leaks", report.leaks),
            ("total-clusters", report.total_clusters),
            ("allocated-clusters", report.allocated_clusters),
            ("fragmented-clusters", report.fragmented_clusters),
            ("compressed-clusters", report.compressed_clusters),
        ];
        for (key, value) in optional {
            if value != 0 {
                members.push((key, Json::Int(value)));
            }
        }
        print_json(&Json::Object(members));
        return Ok(ExitCode::from(report.exit_code()));
    }
    if args.quiet && report.exit_code() == 0 {
        return Ok(ExitCode::SUCCESS);
    }
    if report.corruptions == 0 && report.leaks == 0 && report.check_errors == 0 {
        println!("No errors were found on the image.");
    } else {
        if report.corruptions > 0 {
            println!(
                "\n{} errors were found on the image.\nData may be corrupted, or further writes to the image may corrupt it.",
                report.corruptions
            );
        }
        if report.leaks > 0 {
            println!(
                "\n{} leaked clusters were found on the image.\nThis means waste of disk space, but no harm to data.",
                report.leaks
            );
        }
        if report.check_errors > 0 {
            println!(
                "\n{} internal errors have occurred during the check.",
                report.check_errors
            );
        }
    }
    if report.total_clusters != 0 && report.allocated_clusters != 0 {
        let allocated = report.allocated_clusters as f64;
        println!(
            "{}/{} = {:.2}% allocated, {:.2}% fragmented, {:.2}% compressed clusters",
            report.allocated_clusters,
            report.total_clusters,
            allocated * 100.0 / report.total_clusters as f64,
            report.fragmented_clusters as f64 * 100.0 / allocated,
            report.compressed_clusters as f64 * 100.0 / allocated,
        );
    }
    if report.image_end_offset != 0 {
        println!("Image end offset: {}", report.image_end_offset);
    }
    Ok(ExitCode::from(report.exit_code()))
}

fn convert(args: ConvertArgs) -> Result<ExitCode, String> {
    let source_format = format_or_probe(&args.format, &args.source)?;
    let output_format = parse_format(&args.output_format, &args.destination)?;
    let mut source = open_image(&args.source, source_format, true).map_err(|e| e.to_string())?;
    let size = source.size();
    let options = parse_options(&args.options, output_format, &args.destination)?;
    let (_, plan) = plan_create(output_format, &options, size, &args.destination);
    let mut plan = plan?;
    // The copy writes every byte itself; only the allocation is planned.
    plan.qcow2.size = options.size.unwrap_or(size).max(size);
    let mut progress = Progress::new(args.progress && !args.quiet);
    let mut silent = Progress {
        enabled: false,
        shown: 0.0,
    };
    make_image(&plan, &args.destination, &mut silent)?;
    let mut destination =
        open_image(&args.destination, output_format, false).map_err(|e| e.to_string())?;
    let dest_name = args.destination.display();
    crate::storage::copy_contents(
        source.as_mut(),
        destination.as_mut(),
        size,
        &mut |done, size| progress.update(done as f64 * 100.0 / size as f64),
    )
    .map_err(|e| match e {
        crate::storage::CopyError::Read { .. } => e.to_string(),
        crate::storage::CopyError::Write { offset, source } if offset < size => {
            format!("error while writing at byte {offset} of {dest_name}: {source}")
        }
        crate::storage::CopyError::Write { source, .. } => format!("{dest_name}: {source}"),
    })?;
    progress.update(100.0);
    progress.finish();
    Ok(ExitCode::SUCCESS)
}

fn resize(args: ResizeArgs) -> Result<ExitCode, String> {
    let file = &args.file;
    let name = file.display().to_string();
    let format = format_or_probe(&args.format, file)?;
    let text = args.size.as_str();
    let (sign, number) = match text.as_bytes().first() {
        Some(b'+') => (1, &text[1..]),
        Some(b'-') => (-1, &text[1..]),
        _ => (0, text),
    };
    let amount = parse_size(number).ok_or(
        "Parameter 'size' expects a non-negative number below 2^64\nOptional suffix k, M, G, T, P or E means kilo-, mega-, giga-, tera-, peta-\nand exabytes, respectively.",
    )?;
    let mut image = match format {
        ImageFormat::Qcow2 => {
            Resizable::Qcow2(Qcow2Image::open(file, false).map_err(|e| e.to_string())?)
        }
        ImageFormat::Raw => {
            let raw = OpenOptions::new()
                .read(true)
                .write(true)
                .open(file)
                .map_err(|e| format!("Could not open '{name}': {e}"))?;
            lock_image(&raw, file, false).map_err(|e| e.to_string())?;
            Resizable::Raw(raw)
        }
    };
    let current = match &image {
        Resizable::Qcow2(q) => q.size(),
        Resizable::Raw(f) => f.metadata().map_err(|e| e.to_string())?.len(),
    };
    let new_size = match sign {
        1 => current.checked_add(amount),
        -1 => current.checked_sub(amount),
        _ => Some(amount),
    }
    .ok_or("New image size must be positive")?;
    if new_size < current && !args.shrink {
        return Err("Use the --shrink option to perform a shrink operation.".into());
    }
    if new_size < current {
        eprintln!("vireo: warning: Shrinking an image will delete all data beyond the shrunken image's end. Before performing such an operation, make sure there is no important data there.");
    }
    match &mut image {
        Resizable::Qcow2(q) => q.resize(new_size),
        Resizable::Raw(f) => f.set_len(new_size).and_then(|()| f.sync_all()),
    }
    .map_err(|e| format!("{name}: {e}"))?;
    if !args.quiet {
        println!("Image resized.");
    }
    Ok(ExitCode::SUCCESS)
}

enum Resizable {
    Qcow2(Qcow2Image),
    Raw(File),
}

/// Blocks between two requests of the `rand-*` bench patterns (a prime).
const RANDOM_STRIDE: u64 = 7919;

/// The block the `i`-th request of a bench `pattern` goes to, in an image
/// of `blocks` blocks. "Random" is a large odd stride through the image,
/// wrapping around, as `qemu-img bench -S` walks it: the same offsets in
/// both tools, each block visited once before any is visited again. Both
/// `bench` and `virtio-bench` walk this way.
pub(super) fn pattern_block(pattern: &str, i: u64, blocks: u64) -> u64 {
    let step = if pattern.starts_with("rand") {
        RANDOM_STRIDE
    } else {
        1
    };
    i * step % blocks
}

/// Times one access pattern through `open_image`, printing
/// `PATTERN BYTES SECONDS MiB/s`; scripts/bench_block.py reads it.
fn bench(args: BenchArgs) -> Result<ExitCode, String> {
    let format = format_or_probe(&args.format, &args.file)?;
    let block = parse_size(&args.block)
        .filter(|&b| b > 0)
        .ok_or(SIZE_HELP)? as usize;
    let total = parse_size(&args.total).ok_or(SIZE_HELP)?;
    let write = args.pattern.ends_with("write");
    let mut disk = open_image(&args.file, format, !write).map_err(|e| e.to_string())?;
    let size = disk.size();
    let slots = size / block as u64;
    if slots == 0 {
        return Err("the image is smaller than one block".into());
    }
    let mut buf = vec![0xa5u8; block];
    let count = total / block as u64;
    let start = std::time::Instant::now();
    for i in 0..count {
        let offset = pattern_block(&args.pattern, i, slots) * block as u64;
        let result = if write {
            disk.write_at(&buf, offset)
        } else {
            disk.read_at(&mut buf, offset)
        };
        result.map_err(|e| format!("{} at {offset}: {e}", args.pattern))?;
    }
    // As qemu-io times its requests: the final flush is not counted.
    let seconds = start.elapsed().as_secs_f64();
    if write {
        disk.flush().map_err(|e| e.to_string())?;
    }
    let bytes = count * block as u64;
    println!(
        "{} {bytes} {seconds:.6} {:.1}",
        args.pattern,
        bytes as f64 / (1 << 20) as f64 / seconds.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_as_qemu_img_does() {
        assert_eq!(parse_size("5G"), Some(5 << 30));
        assert_eq!(parse_size("100k"), Some(102_400));
        assert_eq!(parse_size("1.5G"), Some(1_610_612_736));
        assert_eq!(parse_size("1000"), Some(1000));
        assert_eq!(parse_size("512B"), Some(512));
        assert_eq!(parse_size("2MiB"), Some(2 << 20));
        assert_eq!(parse_size("2MB"), Some(2 << 20));
        assert_eq!(parse_size("1T"), Some(1 << 40));
        assert_eq!(parse_size("100x"), None);
        assert_eq!(parse_size("-5"), None);
        assert_eq!(parse_size(""), None);
        assert_eq!(parse_size("1.5"), None);
        assert_eq!(parse_size("99999999999999999999"), None);
        assert_eq!(parse_size("16E"), None);
    }

    #[test]
    fn sizes_print_as_qemu_prints_them() {
        assert_eq!(size_to_str(5 << 30), "5 GiB");
        assert_eq!(size_to_str(968 << 10), "968 KiB");
        assert_eq!(size_to_str(200_704), "196 KiB");
        assert_eq!(size_to_str(1_363_148), "1.3 MiB");
        assert_eq!(size_to_str(0), "0 B");
        assert_eq!(size_to_str(4096), "4 KiB");
        assert_eq!(size_to_str(999), "999 B");
        assert_eq!(size_to_str(1000), "0.977 KiB");
        assert_eq!(size_to_str(1_073_741_824 * 100), "100 GiB");
        assert_eq!(format_g3(999.7), "1e+03");
        assert_eq!(format_g3(0.5), "0.5");
    }

    #[test]
    fn json_members_come_in_qdict_order() {
        let info = Json::Object(vec![
            ("virtual-size", Json::Int(1)),
            ("filename", Json::Str("a\"b".into())),
            ("format", Json::Str("raw".into())),
            ("actual-size", Json::Int(2)),
            ("dirty-flag", Json::Bool(false)),
        ]);
        let mut out = String::new();
        info.render(0, &mut out);
        assert_eq!(
            out,
            "{\n    \"virtual-size\": 1,\n    \"filename\": \"a\\\"b\",\n    \"format\": \"raw\",\n    \"actual-size\": 2,\n    \"dirty-flag\": false\n}"
        );
        assert!(qdict_bucket("backing-filename-format") < qdict_bucket("virtual-size"));
    }

    #[test]
    fn formatting_lines_match_qemu_img_7_2() {
        let file = Path::new("a.qcow2");
        let options = FormatOptions {
            preallocation: Some("metadata".into()),
            ..FormatOptions::default()
        };
        let (line, plan) = plan_create(ImageFormat::Qcow2, &options, 5 << 30, file);
        assert_eq!(line, "Formatting 'a.qcow2', fmt=qcow2 cluster_size=65536 extended_l2=off preallocation=metadata compression_type=zlib size=5368709120 lazy_refcounts=off refcount_bits=16");
        assert_eq!(plan.unwrap().preallocation, Preallocation::Metadata);
        let options = FormatOptions {
            backing_file: Some("base.img".into()),
            backing_fmt: Some("raw".into()),
            compat: Some("1.1".into()),
            ..FormatOptions::default()
        };
        let (line, _) = plan_create(ImageFormat::Qcow2, &options, 1 << 20, file);
        assert_eq!(line, "Formatting 'a.qcow2', fmt=qcow2 cluster_size=65536 extended_l2=off compression_type=zlib size=1048576 compat=1.1 backing_file=base.img backing_fmt=raw lazy_refcounts=off refcount_bits=16");
        let (line, _) = plan_create(
            ImageFormat::Raw,
            &FormatOptions::default(),
            10,
            Path::new("r.img"),
        );
        assert_eq!(line, "Formatting 'r.img', fmt=raw size=10");
        let bad = FormatOptions {
            preallocation: Some("bogus".into()),
            ..FormatOptions::default()
        };
        assert!(plan_create(ImageFormat::Qcow2, &bad, 10, file).1.is_err());
    }

    #[test]
    fn unknown_options_are_refused() {
        let file = Path::new("x");
        assert!(parse_options(&["foo=bar".into()], ImageFormat::Qcow2, file).is_err());
        assert!(parse_options(&["cluster_size=4k".into()], ImageFormat::Raw, file).is_err());
        let o = parse_options(
            &["cluster_size=4k,size=1G".into()],
            ImageFormat::Qcow2,
            file,
        )
        .unwrap();
        assert_eq!((o.cluster_size, o.size), (Some(4096), Some(1 << 30)));
    }
}
