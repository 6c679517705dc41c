#!/usr/bin/env python3
"""Vireo vs QEMU on the same machine, reported as ratios.

Boot benchmark (issue "The machine"): boots one GRUB ISO made by
grub-mkrescue in Vireo and in QEMU (-enable-kvm -m 256 -cdrom), in turn,
and reports
  - time from process start to the GRUB menu text on the serial console;
  - the VMM process's resident memory beyond the guest RAM it touched.
"""

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import guest_memory

GRUB_CFG = """serial --unit=0 --speed=115200
terminal_input --append serial
terminal_output --append serial
set timeout=-1
menuentry "Entry one" { echo one }
menuentry "Entry two" { echo two }
"""

MEMORY_MIB = 256
MENU_TEXT = b"Entry two"


def make_iso(workdir):
    root = os.path.join(workdir, "iso-root", "boot", "grub")
    os.makedirs(root)
    with open(os.path.join(root, "grub.cfg"), "w") as f:
        f.write(GRUB_CFG)
    iso = os.path.join(workdir, "grub.iso")
    subprocess.run(["grub-mkrescue", "-o", iso, os.path.join(workdir, "iso-root")],
                   check=True, capture_output=True)
    return iso


def domain_xml(iso):
    return f"""<domain type='kvm'>
  <name>bench</name>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><boot dev='cdrom'/></os>
  <devices>
    <disk type='file' device='cdrom'>
      <driver name='qemu' type='raw'/>
      <source file='{iso}'/>
      <target dev='hdc' bus='ide'/>
    </disk>
  </devices>
</domain>
"""


def boot(label, argv, timeout):
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    seen = bytearray()
    found = threading.Event()

    def reader():
        while True:
            chunk = proc.stdout.read1(4096)
            if not chunk:
                return
            seen.extend(chunk)
            if MENU_TEXT in seen:
                found.set()

    threading.Thread(target=reader, daemon=True).start()
    ok = found.wait(timeout)
    elapsed = time.monotonic() - start
    memory = None
    if ok:
        time.sleep(1.0)  # let the menu settle before reading memory
        memory = guest_memory(proc.pid, MEMORY_MIB * 1024)
    proc.kill()
    proc.wait()
    if not ok:
        err = proc.stderr.read().decode(errors="replace")
        sys.exit(f"{label}: no GRUB menu after {timeout}s\nserial: {bytes(seen)!r}\n{err}")
    return elapsed, memory


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vireo", default="target/release/vireo")
    parser.add_argument("--timeout", type=int, default=900)
    args = parser.parse_args()
    for tool in ("grub-mkrescue", "xorriso", "qemu-system-x86_64"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/setup.sh bench")
    with tempfile.TemporaryDirectory() as work:
        iso = make_iso(work)
        xml = os.path.join(work, "bench.xml")
        with open(xml, "w") as f:
            f.write(domain_xml(iso))
        vireo = [args.vireo, "run", xml, "--serial", "stdio"]
        qemu = ["qemu-system-x86_64", "-enable-kvm", "-m", str(MEMORY_MIB), "-cdrom", iso,
                "-display", "none", "-nic", "none", "-serial", "stdio",
                "-monitor", "none"]
        print(f"GRUB boot to menu, {MEMORY_MIB} MiB guest, ISO from grub-mkrescue")
        print("QEMU: " + " ".join(qemu))
        v_time, v_mem = boot("vireo", vireo, args.timeout)
        q_time, q_mem = boot("qemu", qemu, args.timeout)
        print(f"{'':24}{'Vireo':>12}{'QEMU':>12}{'ratio':>10}")
        print(f"{'time to menu (s)':24}{v_time:12.1f}{q_time:12.1f}{v_time / q_time:10.2f}")
        print(f"{'RSS total (MiB)':24}{v_mem[0] / 1024:12.1f}{q_mem[0] / 1024:12.1f}")
        print(f"{'guest RAM+VRAM (MiB)':24}{v_mem[1] / 1024:12.1f}{q_mem[1] / 1024:12.1f}")
        print(f"{'VMM overhead (MiB)':24}{v_mem[2] / 1024:12.1f}{q_mem[2] / 1024:12.1f}"
              f"{v_mem[2] / max(q_mem[2], 1):10.2f}")
        print("goals: time ratio <= 0.8; Vireo overhead <= 5 MiB")


if __name__ == "__main__":
    main()
