#!/usr/bin/env bash
# Benchmarks against QEMU on this machine (see each script's header).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 scripts/bench.py --vireo target/release/vireo
python3 scripts/bench_block.py --vireo target/release/vireo
python3 scripts/bench_vnc.py --vireo target/release/vireo
python3 scripts/bench_net.py --vireo target/release/vireo
