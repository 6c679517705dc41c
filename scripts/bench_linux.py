#!/usr/bin/env python3
"""Linux direct boot, Vireo vs QEMU on the same machine.

Boots the Linux test guest (tests/linux/: built and cached by
tests/linux/build.sh) with the same kernel, initramfs and command line,
first from its bzImage, then from its ELF vmlinux through PVH, in Vireo
(`vireo run`) and in QEMU (`qemu-system-x86_64 -enable-kvm -kernel`), one
after the other, and reports for each
  - the time from process start to busybox's shell prompt, and to the
    answer of a command typed there;
  - the VMM's resident memory beyond the guest's RAM at the prompt.
Neither machine has a display adapter or a network card, so no video RAM
counts on either side.
"""

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time

MEMORY_MIB = 256
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UP = b"VIREO-LINUX-UP"
PROMPT = b"vireo-guest# "
ANSWER = b"bench-answer-42"


def cmdline():
    with open(os.path.join(REPO, "tests/linux/cmdline")) as f:
        words = []
        for line in f:
            if not line.lstrip().startswith("#"):
                words.extend(line.split())
    return " ".join(words)


def build():
    out = subprocess.run([os.path.join(REPO, "tests/linux/build.sh")],
                         check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip()


def domain_xml(kernel, initrd, line):
    return f"""<domain type='kvm'>
  <name>bench-linux</name>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type><kernel>{kernel}</kernel><initrd>{initrd}</initrd><cmdline>{line}</cmdline></os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <serial type='pty'><target port='0'/></serial>
    <video><model type='none'/></video>
  </devices>
</domain>
"""


def rss_beyond_guest_ram(pid):
    """VmRSS minus the resident part of the guest RAM mapping (the
    mappings at least as large as the guest's memory)."""
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
            elif line.startswith("Rss:") and size is not None and size >= MEMORY_MIB * 1024:
                guest += int(line.split()[1])
    return total, guest, total - guest


def boot(label, argv, timeout):
    """Seconds to the prompt and to the typed command's answer, and the
    memory figures at the prompt."""
    start = time.monotonic()
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    seen = bytearray()
    prompt = threading.Event()
    answered = threading.Event()
    marks = {}

    def reader():
        while True:
            chunk = proc.stdout.read1(4096)
            if not chunk:
                return
            seen.extend(chunk)
            up = seen.find(UP)
            if not prompt.is_set() and up >= 0 and seen.find(PROMPT, up) >= 0:
                marks["prompt"] = time.monotonic() - start
                prompt.set()
            # The typed line echoes as "bench-answer-$((6*7))": only the
            # shell's answer has the number.
            if prompt.is_set() and not answered.is_set() and ANSWER in seen:
                marks["answer"] = time.monotonic() - start
                answered.set()

    threading.Thread(target=reader, daemon=True).start()
    if not prompt.wait(timeout):
        proc.kill()
        proc.wait()
        err = proc.stderr.read().decode(errors="replace")
        sys.exit(f"{label}: no shell prompt after {timeout}s\nserial: {bytes(seen)[-3000:]!r}\n{err[-3000:]}")
    memory = rss_beyond_guest_ram(proc.pid)
    proc.stdin.write(b"echo bench-answer-$((6*7))\n")
    proc.stdin.flush()
    answered.wait(120)
    proc.kill()
    proc.wait()
    return marks["prompt"], marks.get("answer"), memory


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vireo", default="target/release/vireo")
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()
    if not shutil.which("qemu-system-x86_64"):
        sys.exit("qemu-system-x86_64 is missing: run scripts/setup.sh bench")
    images = build()
    line = cmdline()
    initrd = os.path.join(images, "initramfs.cpio")
    print(f"Linux test guest ({images}), {MEMORY_MIB} MiB, 1 vCPU, direct kernel boot")
    print(f"command line: {line}")
    rows = []
    with tempfile.TemporaryDirectory() as work:
        for name, kernel in (("bzImage", "bzImage"), ("PVH vmlinux", "vmlinux")):
            kernel = os.path.join(images, kernel)
            xml = os.path.join(work, f"{os.path.basename(kernel)}.xml")
            with open(xml, "w") as f:
                f.write(domain_xml(kernel, initrd, line))
            env_home = os.path.join(work, "home")
            os.makedirs(env_home, exist_ok=True)
            os.environ["VIREO_HOME"] = env_home
            vireo = [args.vireo, "run", xml, "--serial", "stdio"]
            qemu = ["qemu-system-x86_64", "-enable-kvm", "-m", str(MEMORY_MIB),
                    "-kernel", kernel, "-initrd", initrd, "-append", line,
                    "-display", "none", "-vga", "none", "-nic", "none",
                    "-serial", "stdio", "-monitor", "none", "-no-reboot"]
            v = boot(f"vireo {name}", vireo, args.timeout)
            q = boot(f"qemu {name}", qemu, args.timeout)
            rows.append((name, v, q))
    print(f"{'':28}{'Vireo':>10}{'QEMU':>10}{'ratio':>8}")
    for name, v, q in rows:
        print(f"{name}")
        print(f"{'  to shell prompt (s)':28}{v[0]:10.1f}{q[0]:10.1f}{v[0] / q[0]:8.2f}")
        if v[1] and q[1]:
            print(f"{'  to typed answer (s)':28}{v[1]:10.1f}{q[1]:10.1f}{v[1] / q[1]:8.2f}")
        print(f"{'  RSS total (MiB)':28}{v[2][0] / 1024:10.1f}{q[2][0] / 1024:10.1f}")
        print(f"{'  guest RAM (MiB)':28}{v[2][1] / 1024:10.1f}{q[2][1] / 1024:10.1f}")
        print(f"{'  VMM beyond RAM (MiB)':28}{v[2][2] / 1024:10.1f}{q[2][2] / 1024:10.1f}"
              f"{v[2][2] / max(q[2][2], 1):8.2f}")
    print("goal: time ratio <= 0.8")


if __name__ == "__main__":
    main()
