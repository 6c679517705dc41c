#!/usr/bin/env python3
"""Vireo's block layer vs QEMU's, on raw and qcow2 images, as ratios.

For each format and access pattern (sequential 1 MiB, "random" 4 KiB: a
stride of 7919 blocks wrapping around the image; read and write) the same
requests at the same offsets go through
  - Vireo: the hidden `vireo img bench` verb, which drives
    `storage::open_image` exactly as IDE and virtio-blk do (read_at/write_at);
  - QEMU's block layer through `qemu-img bench -d 1` (one request in flight,
    as Vireo's synchronous devices have), the like-for-like reference;
  - QEMU through `qemu-io -c 'write -P 0xa5 OFF LEN' -c ...`, timed per
    request by qemu-io itself (its "ops/sec" figure). That figure includes
    qemu-io's per-command work, which dominates small requests, so the 4 KiB
    ratios against it overstate Vireo's lead; read them against qemu-img.
All use the host page cache (cache=writeback); final flushes are not timed. Writes go to a freshly created image
(so qcow2 allocates clusters as a guest's first writes do); reads go to an
image filled beforehand. Each case runs --repeat times; the best run counts.

Usage: scripts/bench_block.py [--vireo target/release/vireo] [--size-mib 256]
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile

from benchlib import fresh_image

PATTERNS = [
    # name, block size, requests
    ("seq-write", 1 << 20, None),
    ("seq-read", 1 << 20, None),
    ("rand-write", 4096, 4096),
    ("rand-read", 4096, 4096),
]


def run(cmd, **kw):
    return subprocess.run(cmd, check=True, capture_output=True, text=True, **kw)


# `vireo img bench`'s rand-* patterns stride 7919 blocks through the image.
RANDOM_STRIDE = 7919


def step_blocks(pattern):
    return RANDOM_STRIDE if pattern.startswith("rand") else 1


def offsets(pattern, block, count, size):
    slots = size // block
    return [(i * step_blocks(pattern) % slots) * block for i in range(count)]


def time_qemu_img_bench(fmt, path, pattern, block, count):
    cmd = ["qemu-img", "bench", "-f", fmt, "-c", str(count), "-d", "1",
           "-s", str(block), "-S", str(block * step_blocks(pattern)),
           "-t", "writeback", "-i", "threads"]
    if pattern.endswith("write"):
        cmd += ["-w", "--pattern=165", "--no-drain"]
    out = run(cmd + [path]).stdout
    return float(re.search(r"Run completed in ([0-9.]+) seconds", out).group(1))


def time_qemu_io(fmt, path, pattern, block, count, size):
    verb = "write -P 0xa5" if pattern.endswith("write") else "read"
    cmd = ["qemu-io", "-f", fmt]
    for off in offsets(pattern, block, count, size):
        cmd += ["-c", f"{verb} {off} {block}"]
    if pattern.endswith("write"):
        cmd += ["-c", "flush"]
    cmd.append(path)
    out = run(cmd).stdout
    rates = [float(r) for r in re.findall(r"and ([0-9.]+) ops/sec", out)]
    if len(rates) != count:
        sys.exit(f"qemu-io printed {len(rates)} timings for {count} requests:\n{out[-2000:]}")
    return sum(1.0 / r for r in rates)


def time_vireo(vireo, fmt, path, pattern, block, count):
    out = run([vireo, "img", "bench", "-f", fmt, "--pattern", pattern,
               "--block", str(block), "--total", str(block * count), path]).stdout
    # "PATTERN BYTES SECONDS MiB/s"
    return float(out.split()[2])


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vireo", default="target/release/vireo")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    for tool in ("qemu-io", "qemu-img"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is not installed; run scripts/setup.sh bench")
    if not os.access(args.vireo, os.X_OK):
        sys.exit(f"{args.vireo} is not built; run cargo build --release")
    size = args.size_mib << 20

    print(f"{'format':7} {'pattern':10} {'block':>7} {'vireo MiB/s':>12} "
          f"{'qemu-img':>9} {'qemu-io':>9} {'vs qemu-img':>11} {'vs qemu-io':>10}")
    with tempfile.TemporaryDirectory(prefix="vireo-bench-") as tmp:
        for fmt in ("raw", "qcow2"):
            path = os.path.join(tmp, f"bench.{fmt}")
            for pattern, block, count in PATTERNS:
                count = count or size // block
                mib = block * count / (1 << 20)
                best = {"vireo": float("inf"), "bench": float("inf"), "io": float("inf")}
                for _ in range(args.repeat):
                    filled = pattern.endswith("read")
                    fresh_image(args.vireo, fmt, path, size, filled)
                    best["vireo"] = min(best["vireo"], time_vireo(
                        args.vireo, fmt, path, pattern, block, count))
                    fresh_image(args.vireo, fmt, path, size, filled)
                    best["bench"] = min(best["bench"], time_qemu_img_bench(
                        fmt, path, pattern, block, count))
                    fresh_image(args.vireo, fmt, path, size, filled)
                    best["io"] = min(best["io"], time_qemu_io(
                        fmt, path, pattern, block, count, size))
                v, b, q = (mib / best[k] for k in ("vireo", "bench", "io"))
                print(f"{fmt:7} {pattern:10} {block:>7} {v:12.1f} {b:9.1f} {q:9.1f} "
                      f"{v / b:11.2f} {v / q:10.2f}", flush=True)


if __name__ == "__main__":
    main()
