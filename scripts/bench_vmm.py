#!/usr/bin/env python3
"""What one running VM costs its host before the guest does anything.

Starts a VM with `vireo start` (as the window and the CLI do) whose
firmware is 64 KiB that print one line on COM1 and halt, and reports, as
medians over several runs:
  - the time from running `vireo start` to that line on the VM's serial
    socket (process start, dynamic linking, machine build, first
    instruction);
  - the VM process's resident memory beyond the guest RAM and video RAM
    (VmRSS minus their resident pages, as bench.py counts it);
  - the shared libraries it maps, and whether GTK or libadwaita is among
    them.

Usage: scripts/bench_vmm.py [--vireo target/release/vireo] [--runs 10]
"""

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time

from benchlib import guest_memory, vm_file

MEMORY_MIB = 64
LINE = b"vmm up"


def firmware():
    """64 KiB whose reset vector (F000:FFF0) writes LINE and a newline to
    COM1 (0x3F8) and halts."""
    code = bytearray(b"\xba\xf8\x03")  # mov dx, 0x3f8
    for byte in LINE + b"\n":
        code += bytes([0xB0, byte, 0xEE])  # mov al, byte; out dx, al
    code += b"\xf4\xeb\xfd"  # hlt; jmp back to hlt
    image = bytearray(b"\xf4" * 0x10000)
    # The reset vector has 16 bytes: jump back to the code placed before it.
    start = 0xFFF0 - len(code)
    image[start:0xFFF0] = code
    rel = start - (0xFFF0 + 3)
    image[0xFFF0:0xFFF3] = b"\xe9" + (rel & 0xFFFF).to_bytes(2, "little")  # jmp near start
    return bytes(image)


def domain_xml(name, loader):
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><loader>{loader}</loader></os>
  <devices/>
</domain>
"""


def mapped_libraries(pid):
    libs = set()
    with open(f"/proc/{pid}/maps") as f:
        for line in f:
            path = line.split()[-1]
            if ".so" in os.path.basename(path):
                libs.add(os.path.basename(path))
    return libs


def one_run(vireo, home, name):
    env = dict(os.environ, VIREO_HOME=home)
    socket_path = vm_file(home, name, "serial.sock")
    start = time.monotonic()
    subprocess.run([vireo, "start", name], env=env, check=True, capture_output=True)
    seen = b""
    deadline = start + 30
    while LINE not in seen:
        if time.monotonic() > deadline:
            sys.exit(f"no {LINE!r} on {socket_path} after 30 s: {seen!r}")
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.connect(socket_path)
                s.settimeout(0.5)
                while LINE not in seen:
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    seen += chunk
        except OSError:
            time.sleep(0.001)
    elapsed = time.monotonic() - start
    with open(vm_file(home, name, "state.json")) as f:
        pid = json.load(f)["pid"]
    time.sleep(0.5)
    rss = guest_memory(pid, MEMORY_MIB * 1024)[2]
    libs = mapped_libraries(pid)
    with open(f"/proc/{pid}/cmdline", "rb") as f:
        argv = f.read().split(b"\0")
    subprocess.run([vireo, "destroy", name], env=env, check=True, capture_output=True)
    return elapsed, rss, libs, argv[0].decode()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vireo", default="target/release/vireo")
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    vireo = os.path.abspath(args.vireo)
    with tempfile.TemporaryDirectory() as home:
        loader = os.path.join(home, "hello.bin")
        with open(loader, "wb") as f:
            f.write(firmware())
        xml = os.path.join(home, "hello.xml")
        with open(xml, "w") as f:
            f.write(domain_xml("hello", loader))
        env = dict(os.environ, VIREO_HOME=home)
        subprocess.run([vireo, "define", xml], env=env, check=True, capture_output=True)
        times, rsses = [], []
        for _ in range(args.runs):
            elapsed, rss, libs, exe = one_run(vireo, home, "hello")
            times.append(elapsed)
            rsses.append(rss)
        gui = sorted(l for l in libs if re.match(r"lib(gtk|adwaita|gdk|pango|cairo|harfbuzz)", l))
        print(f"VM process: {exe} ({args.runs} runs, {MEMORY_MIB} MiB guest)")
        print(f"start to first serial line: median {statistics.median(times) * 1000:.0f} ms "
              f"(min {min(times) * 1000:.0f}, max {max(times) * 1000:.0f})")
        print(f"RSS beyond guest RAM:       median {statistics.median(rsses) / 1024:.1f} MiB "
              f"(min {min(rsses) / 1024:.1f}, max {max(rsses) / 1024:.1f})")
        print(f"shared libraries mapped:    {len(libs)}")
        print(f"GTK stack among them:       {', '.join(gui) if gui else 'none'}")


if __name__ == "__main__":
    main()
