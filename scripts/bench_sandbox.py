#!/usr/bin/env python3
"""What confining a VM process costs (src/sandbox): the same boots with the
sandbox on (the default) and off (VIREO_NO_SANDBOX=1), alternating, and the
median of each:
  - SeaBIOS: `vireo run` of a diskless VM, from process start until SeaBIOS
    writes "No bootable device" on its debug port (firmware, VGA BIOS,
    PCI, ACPI: every exit goes through the filtered vCPU thread), and the
    CPU time the process used until then, which other work on a shared
    machine disturbs less than the wall time;
  - Linux: the test guest (tests/linux/, bzImage, direct boot) from process
    start to its shell prompt and to the answer of a typed command.
The goal is a difference under 2 %.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_linux  # noqa: E402

SEABIOS_DONE = b"No bootable device"

SEABIOS_XML = """<domain type='kvm'>
  <name>bench-seabios</name>
  <memory unit='MiB'>128</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type></os>
  <devices><video><model type='vga'/></video></devices>
</domain>
"""


def with_sandbox(on):
    env = dict(os.environ)
    env.pop("VIREO_NO_SANDBOX", None)
    if not on:
        env["VIREO_NO_SANDBOX"] = "1"
    return env


def cpu_seconds(pid):
    """User + system time of process `pid` so far (all its threads): less
    disturbed than wall time by whatever else the machine runs."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seabios_boot(vireo, work, on, timeout):
    xml = os.path.join(work, "seabios.xml")
    with open(xml, "w") as f:
        f.write(SEABIOS_XML)
    log = os.path.join(work, f"debugcon-{time.monotonic_ns()}.log")
    start = time.monotonic()
    proc = subprocess.Popen([vireo, "run", xml, "--debugcon", log],
                            env=with_sandbox(on), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    try:
        while time.monotonic() - start < timeout:
            try:
                with open(log, "rb") as f:
                    if SEABIOS_DONE in f.read():
                        return time.monotonic() - start, cpu_seconds(proc.pid)
            except FileNotFoundError:
                pass
            if proc.poll() is not None:
                sys.exit(f"vireo run ended early:\n{proc.stderr.read().decode(errors='replace')}")
            time.sleep(0.02)
        sys.exit(f"SeaBIOS did not finish within {timeout}s")
    finally:
        proc.kill()
        proc.wait()


def linux_boot(vireo, xml, on, timeout):
    os.environ.pop("VIREO_NO_SANDBOX", None)
    if not on:
        os.environ["VIREO_NO_SANDBOX"] = "1"
    try:
        prompt, answer, _ = bench_linux.boot(
            f"vireo (sandbox {'on' if on else 'off'})",
            [vireo, "run", xml, "--serial", "stdio"], timeout)
    finally:
        os.environ.pop("VIREO_NO_SANDBOX", None)
    return prompt, answer


def row(label, on, off):
    a, b = statistics.median(on), statistics.median(off)
    print(f"{label:34}{a:10.2f}{b:10.2f}{(a - b) / b * 100:+9.1f} %")


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vireo", default="target/release/vireo")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--linux-runs", type=int, default=None,
                        help="Linux boots per setting (default: --runs; 0 skips them)")
    parser.add_argument("--timeout", type=int, default=600)
    args = parser.parse_args()
    images = bench_linux.build()
    with tempfile.TemporaryDirectory() as work:
        os.environ["VIREO_HOME"] = os.path.join(work, "home")
        kernel = os.path.join(images, "bzImage")
        xml = os.path.join(work, "linux.xml")
        with open(xml, "w") as f:
            f.write(bench_linux.domain_xml(kernel, os.path.join(images, "initramfs.cpio"),
                                           bench_linux.cmdline()))
        seabios = {True: [], False: []}
        seabios_cpu = {True: [], False: []}
        prompt = {True: [], False: []}
        answer = {True: [], False: []}
        for _ in range(args.runs):
            for on in (True, False):
                wall, cpu = seabios_boot(args.vireo, work, on, args.timeout)
                seabios[on].append(wall)
                seabios_cpu[on].append(cpu)
        linux_runs = args.runs if args.linux_runs is None else args.linux_runs
        for _ in range(linux_runs):
            for on in (True, False):
                p, a = linux_boot(args.vireo, xml, on, args.timeout)
                prompt[on].append(p)
                if a:
                    answer[on].append(a)
    print(f"sandbox on vs off, median of {args.runs} runs each, alternating")
    print(f"{'':34}{'on (s)':>10}{'off (s)':>10}{'cost':>11}")
    row("SeaBIOS to 'No bootable device'", seabios[True], seabios[False])
    row("  its CPU time (user + system)", seabios_cpu[True], seabios_cpu[False])
    if prompt[True] and prompt[False]:
        row("Linux bzImage to shell prompt", prompt[True], prompt[False])
    if answer[True] and answer[False]:
        row("Linux bzImage to typed answer", answer[True], answer[False])
    print("goal: cost < 2 %")


if __name__ == "__main__":
    main()
