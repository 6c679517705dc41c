#!/usr/bin/env bash
# `make run`: start Vireo with its demo VM. Until the window exists, the
# demo runs in this terminal: SeaBIOS boots it, it greets on the serial
# console and echoes what you type. Ctrl+C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
exec target/release/vireo demo
