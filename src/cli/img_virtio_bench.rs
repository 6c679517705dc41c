//! `vireo img virtio-bench` (hidden): times an access pattern through the
//! real virtio-blk device, driven from the host side as a guest driver
//! drives it (`devices::virtio::harness`), for scripts/bench_virtio_blk.py,
//! which sets it beside fio on the same file.
//!
//! Up to `--depth` requests are outstanding at once, as a guest's blk-mq
//! keeps them: every free slot is filled, one kick publishes the batch,
//! completions are reaped from the used ring when the queue's MSI-X
//! eventfd fires, and their slots are refilled. `--pattern kicks` sends
//! GET_ID requests (no disk access) one at a time, to time a notification
//! round trip: eventfd, device thread, used ring, MSI-X eventfd.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;

use super::img::{format_or_probe, parse_size, pattern_block};
use crate::devices::virtio::blk::VIRTIO_BLK_S_OK;
use crate::devices::virtio::harness::{BlkHarness, BlkRequest, HarnessOptions};
use crate::storage::DiscardMode;

/// A request that has not completed in this long means the device hung.
const TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Args)]
pub struct VirtioBenchArgs {
    #[arg(short = 'f')]
    format: Option<String>,
    /// seq-read, seq-write, rand-read, rand-write or kicks.
    #[arg(long)]
    pattern: String,
    /// Bytes per request (at most 1M, the device's SIZE_MAX).
    #[arg(long, default_value = "4k")]
    block: String,
    /// Requests outstanding at once.
    #[arg(long, default_value_t = 1)]
    depth: usize,
    /// Total bytes to transfer (the request count for `kicks`).
    #[arg(long, default_value = "64M")]
    total: String,
    /// Deliver kicks as MMIO writes handled on this thread, as a vCPU
    /// did before ioeventfd, instead of through the queue's eventfd.
    #[arg(long)]
    mmio_kicks: bool,
    file: PathBuf,
}

/// Prints `PATTERN REQUESTS BYTES SECONDS IOPS MiB/s KICKS`.
pub fn run(args: VirtioBenchArgs) -> Result<ExitCode, String> {
    let format = format_or_probe(&args.format, &args.file)?;
    let kicks_only = args.pattern == "kicks";
    let write = args.pattern.ends_with("write");
    if !kicks_only
        && !["seq-read", "seq-write", "rand-read", "rand-write"].contains(&&*args.pattern)
    {
        return Err(format!("unknown pattern {}", args.pattern));
    }
    let block = parse_size(&args.block)
        .filter(|&b| b > 0 && b % 512 == 0 && b <= 1 << 20)
        .ok_or("--block must be whole sectors, at most 1M")? as u32;
    let total = parse_size(&args.total).ok_or("bad --total")?;
    if !(1..=128).contains(&args.depth) {
        return Err("--depth must be 1 to 128".into());
    }
    let options = HarnessOptions {
        slots: args.depth,
        slot_data: block.max(4096),
        discard: DiscardMode::Ignore,
        ioeventfd: !args.mmio_kicks,
        ..HarnessOptions::default()
    };
    let mut h = BlkHarness::open(&args.file, format, !write, options).map_err(|e| e.to_string())?;
    let blocks = h.capacity() * 512 / block as u64;
    let count = if kicks_only {
        total
    } else {
        total / block as u64
    };
    if blocks == 0 || count == 0 {
        return Err("the image is smaller than one block, or nothing to do".into());
    }
    let request = |i: u64| {
        let sector = pattern_block(&args.pattern, i, blocks) * block as u64 / 512;
        if kicks_only {
            BlkRequest::GetId
        } else if write {
            BlkRequest::Write { sector, len: block }
        } else {
            BlkRequest::Read { sector, len: block }
        }
    };
    if write {
        // Written once: the device reads it from guest memory every time.
        for slot in 0..args.depth {
            h.write_data(slot, &vec![0xa5; block as usize])
                .map_err(|e| e.to_string())?;
        }
    }

    let start = Instant::now();
    let (mut submitted, mut completed) = (0, 0);
    while completed < count {
        while submitted < count {
            let Some(slot) = h.take_slot() else { break };
            h.submit(slot, &request(submitted))
                .map_err(|e| e.to_string())?;
            submitted += 1;
        }
        h.kick().map_err(|e| e.to_string())?;
        for c in h.wait(TIMEOUT).map_err(|e| e.to_string())? {
            if c.status != VIRTIO_BLK_S_OK {
                return Err(format!("request failed with status {}", c.status));
            }
            if let Some(slot) = c.slot {
                h.release_slot(slot);
            }
            completed += 1;
        }
    }
    // As fio (no end_fsync) and `vireo img bench`: the final flush is not timed.
    let seconds = start.elapsed().as_secs_f64().max(1e-9);
    let kicks = h.kicks();
    if write {
        h.run(&BlkRequest::Flush, TIMEOUT)
            .map_err(|e| e.to_string())?;
    }
    let bytes = if kicks_only { 0 } else { count * block as u64 };
    println!(
        "{} {count} {bytes} {seconds:.6} {:.0} {:.1} {kicks}",
        args.pattern,
        count as f64 / seconds,
        bytes as f64 / (1 << 20) as f64 / seconds,
    );
    Ok(ExitCode::SUCCESS)
}
