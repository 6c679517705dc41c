"""What the benchmarks share: how much memory a VMM process holds beside
its guest's, where a VM's run files are, and fresh test images.

The scripts run as `python3 scripts/bench_*.py`, so this directory is on
their import path.
"""

import os
import re
import subprocess

#: QEMU's std VGA and Vireo's both map 16 MiB of video RAM; it is guest
#: memory too (the guest writes it through the framebuffer BAR).
VRAM_KIB = 16 * 1024


def guest_memory(pid, ram_kib):
    """(VmRSS, the resident part of the guest's memory, the rest) of
    process `pid`, in KiB. Guest memory is every mapping at least as large
    as the guest's RAM (`ram_kib`) and the video RAM: what is left is what
    the VMM itself costs."""
    total = guest = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                total = int(line.split()[1])
    size = None
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
                start, end = line.split()[0].split("-")
                size = (int(end, 16) - int(start, 16)) // 1024
            elif line.startswith("Rss:") and size is not None and (
                size >= ram_kib or size == VRAM_KIB
            ):
                guest += int(line.split()[1])
    return total, guest, total - guest


def vm_file(home, name, what):
    """A started VM's run file under VIREO_HOME `home` (src/vm_process's
    RunFiles): `serial.sock`, `control.sock` or `state.json` in the VM's
    private directory."""
    return os.path.join(home, "run", "domains", name, what)


def fresh_image(vireo, fmt, path, size, filled):
    """A new `fmt` image of `size` bytes at `path`, made by `vireo img
    create`; `filled` writes it whole first (sequential 1 MiB writes), so
    reads find data rather than holes."""
    if os.path.exists(path):
        os.remove(path)
    subprocess.run([vireo, "img", "create", "-q", "-f", fmt, path, str(size)],
                   check=True, capture_output=True)
    if filled:
        subprocess.run([vireo, "img", "bench", "-f", fmt, "--pattern", "seq-write",
                        "--block", "1M", "--total", str(size), path],
                       check=True, capture_output=True)
