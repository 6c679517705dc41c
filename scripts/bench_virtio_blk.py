#!/usr/bin/env python3
"""Vireo's virtio-blk, driven as a guest driver drives it, against fio.

Vireo's side is the hidden `vireo img virtio-bench` verb: the real
virtio-blk device behind its PCI transport and worker thread, brought up
through PCI with MSI-X by the host-side harness (src/devices/virtio/
harness), requests laid out as Linux's virtio_blk lays them out (indirect
descriptors), up to QD outstanding, kicks into the queue's ioeventfd and
completions from its MSI-X irqfd. No vCPU runs: this is the device's own
ceiling, not a guest's.

The reference is fio with the io_uring engine on a raw file of the same
size on the same file system, run right after (so the machine is the same),
for raw and qcow2 alike: the physical limit the device should approach.
Both sides use the host page cache (Vireo opens images buffered; fio runs
with --direct=0 --invalidate=0 so its reads are not made cold on purpose),
writes are not followed by a timed flush, "random" is Vireo's prime stride
through the image and fio's random map (each block once, either way).
Writes go to a freshly created image (qcow2 allocates clusters as a
guest's first writes do); reads to one filled beforehand. Each case runs
--repeat times and the best run counts.

Notification cost: GET_ID requests (no disk access) one at a time, each a
kick and a completion: ioeventfd -> device thread -> used ring -> MSI-X
eventfd, as kicks per second; and the same requests with each kick an
MMIO write the device handles on the kicking thread (the path every kick
took before ioeventfd, minus the KVM exit a guest pays for it).

Usage: scripts/bench_virtio_blk.py [--vireo target/release/vireo]
       [--size-mib 256] [--repeat 3]
"""

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile

from benchlib import fresh_image

# name, fio rw, block, queue depth, bytes to transfer (wrapping around the
# image as often as needed).
# Enough that each run lasts about a second or more on either side: a
# run of milliseconds measures fio's start-up and timer resolution.
CASES = [
    ("rand-read", "randread", 4096, 1, 256 << 20),
    ("rand-read", "randread", 4096, 32, 256 << 20),
    ("rand-write", "randwrite", 4096, 1, 256 << 20),
    ("rand-write", "randwrite", 4096, 32, 256 << 20),
    ("seq-read", "read", 1 << 20, 1, 2 << 30),
    ("seq-write", "write", 1 << 20, 1, 2 << 30),
]
KICKS = 100_000


def run(cmd):
    return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout


def vireo_case(vireo, fmt, path, pattern, block, depth, total):
    out = run([vireo, "img", "virtio-bench", "-f", fmt, "--pattern", pattern,
               "--block", str(block), "--depth", str(depth),
               "--total", str(total), path]).split()
    # PATTERN REQUESTS BYTES SECONDS IOPS MiB/s KICKS
    return float(out[4]), float(out[5]), int(out[1]) / max(int(out[6]), 1)


def fio_case(path, rw, block, depth, total, size):
    out = run(["fio", "--name=reference", f"--filename={path}",
               "--ioengine=io_uring", "--direct=0", "--invalidate=0",
               f"--rw={rw}", f"--bs={block}", f"--iodepth={depth}",
               f"--size={size}", f"--io_size={total}", "--randrepeat=1",
               "--output-format=json"])
    job = json.loads(out[out.index("{"):])["jobs"][0]
    side = job["write" if "write" in rw else "read"]
    return side["iops"], side["bw_bytes"] / (1 << 20)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--vireo", default="target/release/vireo")
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    if not shutil.which("fio"):
        sys.exit("fio is not installed; run scripts/setup.sh bench")
    if not os.access(args.vireo, os.X_OK):
        sys.exit(f"{args.vireo} is not built; run cargo build --release")
    size = args.size_mib << 20

    print(f"{'format':7} {'pattern':10} {'block':>7} {'QD':>3} "
          f"{'vireo IOPS':>11} {'MiB/s':>8} {'fio IOPS':>10} {'MiB/s':>8} "
          f"{'vireo/fio':>9} {'req/kick':>8}")
    with tempfile.TemporaryDirectory(prefix="vireo-bench-") as tmp:
        reference = os.path.join(tmp, "fio.raw")
        for fmt in ("raw", "qcow2"):
            path = os.path.join(tmp, f"bench.{fmt}")
            for pattern, rw, block, depth, total in CASES:
                filled = pattern.endswith("read")
                best_v, best_f = (0.0, 0.0, 0.0), (0.0, 0.0)
                for _ in range(args.repeat):
                    fresh_image(args.vireo, fmt, path, size, filled)
                    best_v = max(best_v, vireo_case(
                        args.vireo, fmt, path, pattern, block, depth, total))
                    fresh_image(args.vireo, "raw", reference, size, filled)
                    best_f = max(best_f, fio_case(
                        reference, rw, block, depth, total, size))
                (v_iops, v_mib, per_kick), (f_iops, f_mib) = best_v, best_f
                print(f"{fmt:7} {pattern:10} {block:>7} {depth:>3} "
                      f"{v_iops:11.0f} {v_mib:8.1f} {f_iops:10.0f} {f_mib:8.1f} "
                      f"{v_iops / f_iops:9.2f} {per_kick:8.1f}", flush=True)

        path = os.path.join(tmp, "kicks.raw")
        fresh_image(args.vireo, "raw", path, 1 << 20, False)
        print()
        print("notification round trip (GET_ID, one request per kick)")
        for label, extra in (("ioeventfd -> device thread -> irqfd", []),
                             ("MMIO write handled on the kicking thread", ["--mmio-kicks"])):
            rates = []
            for _ in range(args.repeat):
                out = run([args.vireo, "img", "virtio-bench", "-f", "raw",
                           "--pattern", "kicks", "--total", str(KICKS), path]
                          + extra).split()
                rates.append(float(out[4]))
            print(f"  {label:42} {max(rates):10.0f} kicks/s "
                  f"({1e6 / max(rates):.1f} us each)", flush=True)


if __name__ == "__main__":
    main()
