//! Every fuzz target (`vireo::fuzz`, the parsers a guest or a client
//! controls) on its stored inputs, in bounded time: the seeds the library
//! makes, the corpus AFL++ grew (`fuzz/corpus/TARGET/`) and every input that
//! once crashed or hung a target (`fuzz/regressions/TARGET/`). No input
//! may panic, take longer than a generous bound, or leave memory behind.
//! Then property tests: mutated seeds and arbitrary bytes, a fixed number
//! of cases per target, so a run stays short and repeatable.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Mutex;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRng, TestRunner};
use vireo::fuzz::{Target, TARGETS};

/// Far beyond what any input takes (milliseconds): only a hang reaches it.
const PER_INPUT: Duration = Duration::from_secs(20);

/// One input at a time in this process, so that memory figures are this
/// test's own.
static SERIAL: Mutex<()> = Mutex::new(());

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz")
}

/// The stored inputs of `name`: (what to call it, bytes).
fn stored(name: &str) -> Vec<(String, Vec<u8>)> {
    let mut inputs = Vec::new();
    for kind in ["corpus", "regressions"] {
        let dir = root().join(kind).join(name);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        paths.sort();
        for path in paths.into_iter().filter(|p| p.is_file()) {
            let bytes = std::fs::read(&path).unwrap();
            inputs.push((path.display().to_string(), bytes));
        }
    }
    inputs
}

/// Runs `target` on `input` in a thread of its own; says what went wrong
/// (a panic, or no answer within [`PER_INPUT`]).
/// `VIREO_FUZZ_LAST=FILE` keeps each input in FILE before it runs, so an
/// input that aborts the process (an allocation failure) can be found.
fn run(name: &str, target: Target, what: &str, input: Vec<u8>) -> Result<(), String> {
    if let Some(path) = std::env::var_os("VIREO_FUZZ_LAST") {
        std::fs::write(path, &input).unwrap();
    }
    let (done, finished) = mpsc::channel();
    let thread = std::thread::Builder::new()
        .name(format!("fuzz-{name}"))
        .spawn(move || {
            let outcome = std::panic::catch_unwind(|| target(&input));
            let _ = done.send(outcome.is_ok());
        })
        .unwrap();
    match finished.recv_timeout(PER_INPUT) {
        Ok(true) => {
            thread.join().unwrap();
            Ok(())
        }
        Ok(false) => Err(format!("{name}: {what} panicked (message above)")),
        Err(_) => Err(format!("{name}: {what} still running after {PER_INPUT:?}")),
    }
}

/// Resident and peak resident memory of this process, in KiB.
fn memory_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn every_stored_input_returns_without_keeping_memory() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut failures = Vec::new();
    let mut counts = Vec::new();
    for &(name, target, seeds) in TARGETS {
        let mut inputs: Vec<(String, Vec<u8>)> = seeds()
            .into_iter()
            .enumerate()
            .map(|(n, s)| (format!("seed {n}"), s))
            .collect();
        inputs.extend(stored(name));
        counts.push(format!("{name} {}", inputs.len()));
        // The first pass warms allocators and lazily built tables; the
        // second must not grow the process.
        let mut rss_after_first = 0;
        for pass in 0..2 {
            for (what, input) in &inputs {
                if let Err(e) = run(name, target, what, input.clone()) {
                    failures.push(e);
                }
            }
            let (rss, _) = memory_kib();
            if pass == 0 {
                rss_after_first = rss;
            } else if rss > rss_after_first + 64 * 1024 {
                failures.push(format!(
                    "{name}: memory grew from {rss_after_first} KiB to {rss} KiB on a second pass over the same inputs"
                ));
            }
        }
    }
    let (_, peak) = memory_kib();
    eprintln!(
        "inputs per target: {}; peak RSS {peak} KiB",
        counts.join(", ")
    );
    assert!(
        peak < 2 << 20,
        "peak RSS {peak} KiB: some input allocates without bound"
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Byte edits to a seed: (position, value) pairs, positions taken modulo
/// the seed's length, and a cut.
fn mutated(seed: &[u8], edits: &[(usize, u8)], cut: usize) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    if !bytes.is_empty() {
        for &(at, value) in edits {
            let at = at % bytes.len();
            bytes[at] = value;
        }
        bytes.truncate(bytes.len() - cut % (bytes.len() / 2 + 1));
    }
    bytes
}

/// 64 cases from a fixed seed: the same inputs on every run.
/// `VIREO_FUZZ_CASES=N` asks for more (a longer search by hand).
fn fixed_runner() -> TestRunner {
    let cases = std::env::var("VIREO_FUZZ_CASES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(64);
    let config = Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    };
    let rng = TestRng::deterministic_rng(config.rng_algorithm);
    TestRunner::new_with_rng(config, rng)
}

/// Each target's seeds and stored inputs with a few bytes changed, and arbitrary bytes:
/// 64 cases of each per target.
#[test]
fn mutated_seeds_and_arbitrary_bytes_return() {
    let _serial = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    for &(name, target, seeds) in TARGETS {
        let mut seeds = seeds();
        seeds.extend(stored(name).into_iter().map(|(_, bytes)| bytes));
        assert!(
            !seeds.is_empty(),
            "{name} has neither seeds nor a stored corpus"
        );
        let mut runner = fixed_runner();
        let strategy = (
            0..seeds.len(),
            proptest::collection::vec((any::<usize>(), any::<u8>()), 1..16),
            any::<usize>(),
        );
        runner
            .run(&strategy, |(n, edits, cut)| {
                let input = mutated(&seeds[n], &edits, cut);
                run(name, target, "a mutated seed", input).map_err(TestCaseError::fail)
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut runner = fixed_runner();
        runner
            .run(&proptest::collection::vec(any::<u8>(), 0..2048), |input| {
                run(name, target, "arbitrary bytes", input).map_err(TestCaseError::fail)
            })
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
