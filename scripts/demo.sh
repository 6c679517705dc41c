#!/usr/bin/env bash
# `make run`: start Vireo with its demo VM. With a display, the window
# opens and starts "Demo" in it (its screen shows a splash and echoes what
# you type). Without one (an SSH session), the demo runs in this terminal
# on its serial console instead; Ctrl+C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${WAYLAND_DISPLAY:-}" ] || [ -n "${DISPLAY:-}" ]; then
  exec target/release/vireo --demo
fi
echo "No display: running the demo VM in this terminal (Ctrl+C stops it)."
exec target/release/vireo demo
