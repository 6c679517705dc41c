#!/usr/bin/env python3
"""The console's frames per second while Linux scrolls text, Vireo vs QEMU.

Boots the desktop variant of the Linux test guest (tests/linux/build.sh
--variant desktop: bochs-drm and fbcon on the std VGA card, at 640x480 as
tests/linux_desktop.rs boots it) directly, with a VNC server, in Vireo
(`vireo run --vnc`) and in QEMU (`-vga std -vnc`), one after the other.
Once the serial shell answers, a loop there echoes numbered lines to tty1,
so fbcon scrolls the VGA console for as long as the measurement lasts.

A minimal RFB client (bench_vnc.RfbClient: ZRLE, Raw, DesktopSize; pixels
inflated, not decoded) asks for incremental updates back to back and
counts the FramebufferUpdates that carry pixels: the frames delivered to a
VNC client, the same count for both servers.

For Vireo the frames the guest produced are counted too, where the VMM
logs them: the display thread's refreshes that found the picture changed,
logged every 5 s at debug level (`vireo::vmm::display=debug`). The
display looks at the card 30 times a second, so this counts the guest's
frames as 30 samples a second see them: every frame when the guest draws
slower than that (this host's emulated guests scroll a few lines a second),
a lower bound when faster. The ratio delivered/produced is what "every
frame the guest draws" asks for (goal 1.0). QEMU has no such count that a client can
read: its row shows frames delivered only. Both rows show the lines the
loop scrolled per second: the guest's own pace, which a VMM that tracks
video memory too eagerly would slow down.
"""

import argparse
import os
import re
import shutil
import sys
import tempfile
import threading
import time

from bench_linux import MEMORY_MIB, PROMPT, UP, build, cmdline
from bench_vnc import ENC_DESKTOP_SIZE, RfbClient, Vm, free_display

VIDEO = "video=640x480"
# Each line also leaves its number in /tmp/lines, so the lines scrolled
# per second (the guest's own pace) can be compared too.
SCROLL = (b"i=0; while :; do i=$((i+1)); "
          b"echo \"scrolling line $i: the quick brown fox jumps over the lazy dog\"; "
          b"echo $i >/tmp/lines; done >/dev/tty1 2>&1 &\n")
EMPTY_OR_LINES = re.compile(rb"lines=(\d*)=")
RATE_LINE = re.compile(rb"frames the guest produced.*?frames=(\d+).*?seconds=([\d.]+)")
# tracing may colour its fields even into a pipe.
ANSI = re.compile(rb"\x1b\[[0-9;]*m")


class Machine(Vm):
    """bench_vnc's VMM process (serial on stdin/stdout), whose stderr (the
    log) is also kept line by line with arrival times, for the display's
    frame-rate lines."""

    def __init__(self, label, argv, env=None):
        super().__init__(label, argv, env)
        self.log = []  # (time, line)
        threading.Thread(target=self._log, daemon=True).start()

    def _log(self):
        for line in self.proc.stderr:
            with self.lock:
                self.log.append((time.monotonic(), line))

    def type(self, line):
        self.poke(line)

    def fail(self, what):
        # The log thread has read stderr: show its last lines.
        self.stop()
        with self.lock:
            log = b"".join(line for _, line in self.log[-20:]).decode(errors="replace")
            tail = bytes(self.serial[-800:])
        raise RuntimeError(f"{self.label}: {what}\nserial tail: {tail!r}\nlog: {log}")


def vireo_machine(vireo, images, line, work, display):
    xml = os.path.join(work, "console-fps.xml")
    with open(xml, "w") as f:
        f.write(f"""<domain type='kvm'><name>console-fps</name>
<memory unit='MiB'>{MEMORY_MIB}</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type>
<kernel>{images}/bzImage</kernel><initrd>{images}/initramfs.cpio</initrd>
<cmdline>{line} {VIDEO}</cmdline></os>
<devices><video><model type='vga'/></video></devices></domain>
""")
    env = dict(os.environ, VIREO_LOG="warn,vireo::vmm::display=debug")
    return Machine("vireo", [vireo, "run", xml, "--vnc", f"127.0.0.1:{display}",
                             "--serial", "stdio"], env)


def qemu_machine(images, line, display):
    # `-cpu host,-arch-capabilities`: as bench_linux.py explains.
    return Machine("qemu", [
        "qemu-system-x86_64", "-enable-kvm", "-cpu", "host,-arch-capabilities",
        "-m", str(MEMORY_MIB), "-kernel", f"{images}/bzImage",
        "-initrd", f"{images}/initramfs.cpio", "-append", f"{line} {VIDEO}",
        "-vga", "std", "-display", "none", "-vnc", f"127.0.0.1:{display}",
        "-nic", "none", "-serial", "stdio", "-monitor", "none", "-no-reboot"])


def measure(machine, port, seconds, timeout):
    """Frames delivered to a VNC client per second while tty1 scrolls, and
    (Vireo only) the frames the guest produced per second."""
    if not machine.wait_serial(lambda s: UP in s and PROMPT in s[s.find(UP):], timeout):
        machine.fail(f"no shell prompt within {timeout}s")
    # bochs-drm's fbcon has taken tty1 over by the prompt; the marker is
    # computed, so the typed line's echo does not count.
    machine.type(b"dmesg | grep -q 'fb0: bochs-drmdrmfb' && echo fbcon-$((6*7))\n")
    if not machine.wait_serial(lambda s: b"fbcon-42" in s, timeout):
        machine.fail("bochs-drm's frame buffer never came up")
    client = RfbClient(port, 60)
    client.request(False)
    client.update(decode=False)
    client.request(True)
    machine.type(SCROLL)
    # Let the loop start and the screen fill before counting.
    warm_until = time.monotonic() + 5
    while time.monotonic() < warm_until:
        client.update(decode=False)
        client.request(True)
    lines_before = lines_scrolled(machine)
    start = time.monotonic()
    frames = 0
    while time.monotonic() - start < seconds:
        _, rects = client.update(decode=False)
        client.request(True)
        if any(enc != ENC_DESKTOP_SIZE for (_, _, _, _, enc) in rects):
            frames += 1
    end = time.monotonic()
    lines = lines_scrolled(machine) - lines_before
    client.close()
    machine.type(b"kill $!\n")
    # Give the display thread one more report period to log the window.
    time.sleep(6)
    machine.stop()
    produced = [(t, int(m.group(1)), float(m.group(2)))
                for t, line in machine.log if (m := RATE_LINE.search(ANSI.sub(b"", line)))]
    # Reports whose 5 s period lies inside the measurement.
    inside = [(n, s) for t, n, s in produced if t - s >= start and t <= end + 0.5]
    guest_fps = (sum(n for n, _ in inside) / sum(s for _, s in inside)) if inside else None
    return frames / (end - start), guest_fps, lines / (end - start)


def lines_scrolled(machine):
    """The scrolling loop's line count, asked on the serial shell. The loop
    truncates the file before it writes each number, so a read can find it
    empty ("lines=="): then it asks again."""
    for _ in range(5):
        with machine.lock:
            mark = len(machine.serial)
        machine.type(b"echo lines=$(cat /tmp/lines)=\n")
        found = []

        def answered(serial):
            found[:] = EMPTY_OR_LINES.findall(serial[mark:])
            return bool(found)
        if not machine.wait_serial(answered, 60):
            break
        if found[0]:
            return int(found[0])
    machine.fail("the serial shell did not say how far the loop got")


def print_row(label, v, q, fmt="{:10.1f}"):
    cell = lambda x: fmt.format(x) if x is not None else f"{'-':>10}"
    print(f"{label:40}{cell(v)}{cell(q)}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vireo", default="target/release/vireo")
    parser.add_argument("--seconds", type=int, default=30)
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--only", choices=("vireo", "qemu"),
                        help="measure one VMM only (both by default, one after the other)")
    args = parser.parse_args()
    if not shutil.which("qemu-system-x86_64"):
        sys.exit("qemu-system-x86_64 is missing: run scripts/setup.sh bench")
    images = build("desktop")
    line = cmdline()
    vireo = os.path.abspath(args.vireo)
    print(f"Console frames while Linux scrolls tty1 (desktop test guest, {VIDEO}, "
          f"{MEMORY_MIB} MiB, 1 vCPU), {args.seconds} s", flush=True)
    rows = {"vireo": (None, None, None), "qemu": (None, None, None)}
    with tempfile.TemporaryDirectory() as work:
        for kind in [args.only] if args.only else ["vireo", "qemu"]:
            display = free_display()
            machine = (vireo_machine(vireo, images, line, work, display) if kind == "vireo"
                       else qemu_machine(images, line, display))
            try:
                rows[kind] = measure(machine, 5900 + display, args.seconds, args.timeout)
            finally:
                machine.stop()
            delivered, produced, lines = rows[kind]
            print(f"  {kind}: {delivered:.1f} frames/s delivered, {lines:.1f} lines/s scrolled"
                  + (f", {produced:.1f} frames/s produced" if produced is not None else ""),
                  file=sys.stderr, flush=True)
    (v_delivered, v_produced, v_lines), (q_delivered, _, q_lines) = rows["vireo"], rows["qemu"]
    print(f"{'':40}{'Vireo':>10}{'QEMU':>10}")
    print_row("  frames the guest produced (/s)", v_produced, None)
    print_row("  frames delivered to a VNC client (/s)", v_delivered, q_delivered)
    print_row("  lines the guest scrolled (/s)", v_lines, q_lines)
    if v_produced and v_delivered is not None:
        print_row("  delivered / produced", v_delivered / v_produced, None, "{:10.2f}")
    print("goal: delivered / produced = 1.0 (every frame the guest draws, up to 60 fps)")


if __name__ == "__main__":
    main()
