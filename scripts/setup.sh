#!/usr/bin/env bash
# Installs the system packages Vireo needs for one purpose, on Debian 12 /
# Ubuntu. Usage: scripts/setup.sh run|test|bench|fuzz
# Uses sudo when not root; installs only what is missing; idempotent.
# `fuzz` is the build set plus cargo-afl (AFL++ for stable Rust, built
# from the source its crate ships), which only `make fuzz` needs.
set -euo pipefail

purpose=${1:-run}

# What building Vireo needs besides Rust: a C toolchain and pkg-config,
# GTK 4 and libadwaita for the window, gettext, libslirp, the
# user-mode NAT stack Vireo links, and libvirt's client library, which the
# CLI and the window link for connections to libvirt hosts.
build_packages=(build-essential pkg-config libgtk-4-dev libadwaita-1-dev gettext libslirp-dev libvirt-dev)
# Firmware Vireo boots (SeaBIOS; iPXE's virtio-net option ROM for network
# boot) and osinfo-db, which the New VM wizard reads to recognise ISOs.
run_packages=("${build_packages[@]}" seabios ipxe-qemu osinfo-db)
# Real boot software and tools the tests drive (see TESTING.md): GRUB ISOs
# made by grub-mkrescue, image tools, the libvirt schema validator, VNC
# clients, a kernel for direct boot, an X server with xdotool,
# ImageMagick and tesseract (English and Simplified Chinese, with CJK fonts
# and the locales package for the zh_CN test) for the window's end-to-end
# tests, and the validators of the desktop entry, AppStream metainfo and
# GSettings schema, and gdk-pixbuf's thumbnailer, which renders the icons;
# flatpak-builder parses the Flatpak manifest (tests/flatpak.rs).
# The connection tests (tests/libvirt*.rs) start a real libvirtd with its
# QEMU driver, running QEMU, and reach it through an sshd of their own.
# The Linux test guest (tests/linux/build.sh) is built from Debian's kernel
# source with its build tools (flex, bison, bc, libelf, libssl, lz4 for the
# LZ4 bzImage) around the static busybox.
# VNC over TLS (tests/vnc_tls.rs): openssl makes the test CA, TigerVNC's
# viewer is the second VeNCrypt client (vncdotool has no VeNCrypt); ring,
# rustls's crypto, builds with build-essential's cc alone.
test_packages=("${run_packages[@]}" grub-pc-bin grub-common xorriso mtools qemu-utils libvirt-clients libxml2-utils
  libvirt-daemon-system qemu-system-x86 openssh-server openssh-client
  linux-source-6.1 busybox-static flex bison bc libelf-dev libssl-dev lz4
  gvncviewer novnc nodejs tesseract-ocr tesseract-ocr-eng python3-venv python3-pip
  linux-image-amd64 xvfb xauth xdotool imagemagick tesseract-ocr-chi-sim fonts-noto-cjk locales
  desktop-file-utils appstream libglib2.0-bin libgdk-pixbuf2.0-bin
  dnsmasq-base iproute2 flatpak-builder openssl tigervnc-viewer)
# The reference VMM the benchmarks compare against (in the test set too),
# and fio (io_uring engine), the block benchmark's reference on the same file.
bench_packages=("${test_packages[@]}" procps fio)

case "$purpose" in
  run) wanted=("${run_packages[@]}") ;;
  test) wanted=("${test_packages[@]}") ;;
  bench) wanted=("${bench_packages[@]}") ;;
  fuzz) wanted=("${build_packages[@]}") ;;
  *) echo "usage: $0 run|test|bench|fuzz" >&2; exit 2 ;;
esac

if ! command -v dpkg-query >/dev/null || ! command -v apt-get >/dev/null; then
  echo "setup: this script knows Debian and Ubuntu (apt); install these by hand: ${wanted[*]}" >&2
  exit 0
fi

missing=()
for pkg in "${wanted[@]}"; do
  if [ "$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null)" != "install ok installed" ]; then
    missing+=("$pkg")
  fi
done

# Python tools the tests drive (real VNC and QMP clients), in a venv of
# the project's own so the system's Python stays untouched.
python_tools() {
  [ "$purpose" = run ] || [ "$purpose" = fuzz ] && return 0
  local venv=build/venv
  if [ ! -x "$venv/bin/vncdo" ] || ! "$venv/bin/python" -c 'import qemu.qmp' 2>/dev/null; then
    echo "setup: installing vncdotool and qemu.qmp into $venv"
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check vncdotool qemu.qmp
  fi
}

# The window's translation test runs it under LANG=zh_CN.UTF-8.
zh_locale() {
  [ "$purpose" = run ] || [ "$purpose" = fuzz ] && return 0
  locale -a 2>/dev/null | grep -qix 'zh_CN.utf8' && return 0
  echo "setup: generating the zh_CN.UTF-8 locale"
  "${sudo[@]}" sed -i 's/^# *zh_CN.UTF-8 UTF-8/zh_CN.UTF-8 UTF-8/' /etc/locale.gen
  "${sudo[@]}" locale-gen
}

# Every crate of Cargo.lock in cargo's download cache, the Windows- and
# macOS-only ones included: a build downloads only what this host compiles,
# but tests/flatpak.rs lays out the Flatpak's offline cargo sources from
# that cache, as flatpak-builder would, and needs every one of them.
cargo_sources() {
  [ "$purpose" = run ] || [ "$purpose" = fuzz ] && return 0
  echo "setup: fetching every crate of Cargo.lock (cargo fetch --locked)"
  "${CARGO:-cargo}" fetch --locked --quiet --manifest-path "$(dirname "$0")/../Cargo.toml"
}

# cargo-afl builds AFL++ (afl-fuzz and its runtime, for this rustc) when
# it is installed, with the C toolchain above.
afl_tools() {
  [ "$purpose" = fuzz ] || return 0
  "${CARGO:-cargo}" afl --version >/dev/null 2>&1 && return 0
  echo "setup: installing cargo-afl (builds AFL++)"
  "${CARGO:-cargo}" install --locked cargo-afl
}

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  sudo=(sudo)
fi

if [ ${#missing[@]} -eq 0 ]; then
  python_tools
  zh_locale
  cargo_sources
  afl_tools
  exit 0
fi

echo "setup: installing ${missing[*]}"
"${sudo[@]}" apt-get update -qq

# qemu-system-x86 depends on the qemu-utils of its own version. Some images
# ship a newer backported qemu-utils; pin it to the version that goes with
# qemu-system-x86 so apt can resolve the set.
extra=()
for pkg in "${missing[@]}"; do
  if [ "$pkg" = qemu-system-x86 ]; then
    want=$(apt-cache policy qemu-system-x86 | awk '/Candidate:/ {print $2}')
    have=$(dpkg-query -W -f='${Version}' qemu-utils 2>/dev/null || true)
    if [ -n "$have" ] && [ -n "$want" ] && [ "$have" != "$want" ]; then
      extra+=("qemu-utils=$want")
      if dpkg-query -W qemu-block-extra >/dev/null 2>&1; then
        extra+=("qemu-block-extra=$want")
      fi
    fi
  fi
done

DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -qq --no-install-recommends \
  --allow-downgrades "${missing[@]}" "${extra[@]}"

python_tools
zh_locale
cargo_sources
afl_tools
