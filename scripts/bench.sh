#!/usr/bin/env bash
# Benchmarks against QEMU on this machine (see each script's header).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/bench.py --vireo target/release/vireo
# What one VM process costs before its guest runs (start time, memory,
# libraries mapped).
python3 scripts/bench_vmm.py --vireo target/release/vireo
# Start to shell prompt and memory of the Linux test guest.
python3 scripts/bench_linux.py --vireo target/release/vireo
# The frames a VNC client gets while Linux's console scrolls.
python3 scripts/bench_console.py --vireo target/release/vireo
# The sandbox's cost: SeaBIOS and Linux boots with it on and off.
python3 scripts/bench_sandbox.py --vireo target/release/vireo
python3 scripts/bench_block.py --vireo target/release/vireo
# The virtio-blk device driven as a guest driver drives it (host-side
# harness, no vCPU) against fio with io_uring on the same file system,
# and the cost of one kick-to-interrupt round trip.
python3 scripts/bench_virtio_blk.py --vireo target/release/vireo
python3 scripts/bench_vnc.py --vireo target/release/vireo
python3 scripts/bench_net.py --vireo target/release/vireo
python3 scripts/bench_gui.py --vireo target/release/vireo
# The console widget's frame rate for full-screen 1024x768 changes (drawn
# frames per second, software rendering on an Xvfb display).
cargo build --release --example console_fps
xvfb-run -a env GSK_RENDERER=cairo target/release/examples/console_fps 10
