#!/usr/bin/env python3
"""Linux boot, Vireo vs QEMU on the same machine.

Boots the Linux test guest (tests/linux/: built and cached by
tests/linux/build.sh) with the same kernel, initramfs and command line,
first from its bzImage, then from its ELF vmlinux through PVH, then from
an ISO made by grub-mkrescue on an IDE CD-ROM through the firmware
(SeaBIOS) and GRUB (tests/linux/iso-grub.cfg, as the tests boot it), in Vireo
(`vireo start`: the VM in its own `vireo-vmm` process, as users run it,
the serial read from its console socket) and in QEMU
(`qemu-system-x86_64 -enable-kvm -kernel` or `-cdrom`), one after the
other, and
reports for each
  - the time from the start command to GRUB's menu entry (ISO only) and to
    the kernel's first line, where the serial shows them;
  - the time from the start command to busybox's shell prompt, and to the
    answer of a command typed there;
  - the VMM's resident memory beyond the guest's RAM at the prompt.
Neither machine has a network card. For direct boot neither has a display
adapter; for the ISO both have the std VGA card (GRUB draws its screen
there too), so both count 16 MiB of video RAM.
"""

import argparse
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

from benchlib import guest_memory, vm_file

MEMORY_MIB = 256
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
UP = b"VIREO-LINUX-UP"
PROMPT = b"vireo-guest# "
ANSWER = b"bench-answer-42"
# Milestones on the way to the prompt, each timed where the serial shows it,
# to tell which stage makes a difference: GRUB running its menu entry (the
# ISO only: firmware, boot sector, GRUB's own loading), and the kernel's
# first line (earlyprintk; after GRUB or the VMM loaded the kernel and, for
# a bzImage, it decompressed itself).
MILESTONES = [
    ("grub", b"GRUB: loading the test kernel", "to GRUB's menu entry (s)"),
    ("kernel", b"Linux version", "to the kernel's first line (s)"),
]


def cmdline():
    with open(os.path.join(REPO, "tests/linux/cmdline")) as f:
        words = []
        for line in f:
            if not line.lstrip().startswith("#"):
                words.extend(line.split())
    return " ".join(words)


def build(variant=None):
    """The guest's directory; `variant` as build.sh's --variant."""
    argv = [os.path.join(REPO, "tests/linux/build.sh")]
    if variant:
        argv += ["--variant", variant]
    out = subprocess.run(argv, check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip()


def make_iso(images, line, work):
    """The test ISO: bzImage and initramfs under /boot, GRUB's menu from
    tests/linux/iso-grub.cfg."""
    root = os.path.join(work, "iso-root")
    os.makedirs(os.path.join(root, "boot", "grub"), exist_ok=True)
    for name in ("bzImage", "initramfs.cpio"):
        shutil.copy(os.path.join(images, name), os.path.join(root, "boot", name))
    with open(os.path.join(REPO, "tests/linux/iso-grub.cfg")) as f:
        grub_cfg = f.read().replace("@CMDLINE@", line)
    with open(os.path.join(root, "boot", "grub", "grub.cfg"), "w") as f:
        f.write(grub_cfg)
    iso = os.path.join(work, "linux.iso")
    subprocess.run(["grub-mkrescue", "-o", iso, root], check=True, capture_output=True)
    return iso


def domain_xml(name, os_xml, devices_xml):
    return f"""<domain type='kvm'>
  <name>{name}</name>
  <memory unit='MiB'>{MEMORY_MIB}</memory>
  <vcpu>1</vcpu>
  <os><type arch='x86_64' machine='pc'>hvm</type>{os_xml}</os>
  <on_poweroff>destroy</on_poweroff>
  <devices>
    <serial type='pty'><target port='0'/></serial>
    {devices_xml}
  </devices>
</domain>
"""


def direct_boot(kernel, initrd, line):
    """Domain XML parts and QEMU arguments for direct kernel boot."""
    os_xml = f"<kernel>{kernel}</kernel><initrd>{initrd}</initrd><cmdline>{line}</cmdline>"
    return (os_xml, "<video><model type='none'/></video>",
            ["-kernel", kernel, "-initrd", initrd, "-append", line, "-vga", "none"])


def cdrom_boot(iso):
    """The same for the firmware booting the ISO from an IDE CD-ROM."""
    disk = (f"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
            f"<source file='{iso}'/><target dev='hdc' bus='ide'/><readonly/></disk>"
            "<video><model type='vga'/></video>")
    return "<boot dev='cdrom'/>", disk, ["-cdrom", iso, "-boot", "d", "-vga", "std"]


class QemuMachine:
    """`qemu-system-x86_64` in the foreground, its serial on stdio."""

    def __init__(self, argv):
        self.argv = argv

    def start(self):
        self.proc = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self.pid = self.proc.pid

    def read(self):
        return self.proc.stdout.read1(4096)

    def type(self, line):
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def stop(self):
        self.proc.kill()
        self.proc.wait()

    def errors(self):
        return self.proc.stderr.read().decode(errors="replace")


class VireoMachine:
    """A defined Vireo VM started as users start one (`vireo start`: its own
    `vireo-vmm` process, the one whose memory counts), its serial read from
    the VM's console socket."""

    def __init__(self, vireo, home, xml, name):
        self.vireo, self.home, self.name = vireo, home, name
        self.env = dict(os.environ, VIREO_HOME=home)
        self.vireo_cmd("define", xml)

    def vireo_cmd(self, *args):
        subprocess.run([self.vireo, *args], env=self.env, check=True, capture_output=True)

    def start(self):
        self.vireo_cmd("start", self.name)
        path = vm_file(self.home, self.name, "serial.sock")
        self.socket = socket.socket(socket.AF_UNIX)
        self.socket.connect(path)
        with open(vm_file(self.home, self.name, "state.json")) as f:
            self.pid = json.load(f)["pid"]

    def read(self):
        try:
            return self.socket.recv(4096)
        except OSError:
            return b""

    def type(self, line):
        self.socket.sendall(line)

    def stop(self):
        subprocess.run([self.vireo, "destroy", self.name], env=self.env, capture_output=True)
        self.socket.close()

    def errors(self):
        logs = glob.glob(os.path.join(self.home, "**", f"{self.name}.log"), recursive=True)
        return "".join(open(log, errors="replace").read() for log in logs)


def boot(label, machine, timeout):
    """Seconds from the start command to the prompt and to the typed
    command's answer, and the memory figures at the prompt; None if the
    machine never reached the prompt."""
    start = time.monotonic()
    machine.start()
    seen = bytearray()
    prompt = threading.Event()
    answered = threading.Event()
    ended = threading.Event()
    marks = {}

    def reader():
        while True:
            chunk = machine.read()
            if not chunk:
                ended.set()
                return
            seen.extend(chunk)
            for key, needle, _ in MILESTONES:
                if key not in marks and needle in seen:
                    marks[key] = time.monotonic() - start
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
    deadline = time.monotonic() + timeout
    # A machine that dies (an emulation failure, a bad option) closes its
    # serial: no need to wait out the timeout.
    while not prompt.is_set() and not ended.is_set() and time.monotonic() < deadline:
        prompt.wait(1)
    if not prompt.is_set():
        machine.stop()
        print(f"{label}: no shell prompt after {time.monotonic() - start:.0f}s\n"
              f"serial: {bytes(seen)[-2000:]!r}\n{machine.errors()[-2000:]}",
              file=sys.stderr, flush=True)
        return None
    memory = guest_memory(machine.pid, MEMORY_MIB * 1024)
    machine.type(b"echo bench-answer-$((6*7))\n")
    answered.wait(120)
    machine.stop()
    print(f"  {label}: prompt after {marks['prompt']:.1f} s", file=sys.stderr, flush=True)
    return marks, memory


def print_rows(name, v, q):
    print(f"{name}")
    if v is None or q is None:
        print("  no figures: a machine did not reach the prompt (see above)", flush=True)
        return
    (v_marks, v_mem), (q_marks, q_mem) = v, q
    rows = [(key, label) for key, _, label in MILESTONES]
    rows += [("prompt", "to shell prompt (s)"), ("answer", "to typed answer (s)")]
    for key, label in rows:
        if key in v_marks and key in q_marks:
            vt, qt = v_marks[key], q_marks[key]
            print(f"{'  ' + label:34}{vt:10.1f}{qt:10.1f}{vt / qt:8.2f}")
    print(f"{'  RSS total (MiB)':34}{v_mem[0] / 1024:10.1f}{q_mem[0] / 1024:10.1f}")
    print(f"{'  guest RAM (MiB)':34}{v_mem[1] / 1024:10.1f}{q_mem[1] / 1024:10.1f}")
    print(f"{'  VMM beyond RAM (MiB)':34}{v_mem[2] / 1024:10.1f}{q_mem[2] / 1024:10.1f}"
          f"{v_mem[2] / max(q_mem[2], 1):8.2f}", flush=True)


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vireo", default="target/release/vireo")
    parser.add_argument("--timeout", type=int, default=600)
    parser.add_argument("--only", choices=("bzimage", "pvh", "iso"), action="append",
                        help="boot only these (repeatable); all three by default")
    args = parser.parse_args()
    if not shutil.which("qemu-system-x86_64"):
        sys.exit("qemu-system-x86_64 is missing: run scripts/setup.sh bench")
    images = build()
    line = cmdline()
    initrd = os.path.join(images, "initramfs.cpio")
    print(f"Linux test guest ({images}), {MEMORY_MIB} MiB, 1 vCPU")
    print(f"command line: {line}")
    # Each kernel's rows are printed as soon as both machines have booted
    # it: a boot can take minutes on a loaded machine.
    print(f"{'':34}{'Vireo':>10}{'QEMU':>10}{'ratio':>8}", flush=True)
    vireo = os.path.abspath(args.vireo)
    with tempfile.TemporaryDirectory() as work:
        wanted = args.only or ["bzimage", "pvh", "iso"]
        machines = [
            (name, f"bench-{kernel}", direct_boot(os.path.join(images, kernel), initrd, line))
            for key, name, kernel in (("bzimage", "bzImage", "bzImage"),
                                      ("pvh", "PVH vmlinux", "vmlinux"))
            if key in wanted
        ]
        if "iso" in wanted:
            machines.append(("ISO via SeaBIOS and GRUB", "bench-iso",
                             cdrom_boot(make_iso(images, line, work))))
        for name, vm_name, (os_xml, devices_xml, qemu_args) in machines:
            xml = os.path.join(work, f"{vm_name}.xml")
            with open(xml, "w") as f:
                f.write(domain_xml(vm_name, os_xml, devices_xml))
            home = os.path.join(work, "home")
            os.makedirs(home, exist_ok=True)
            vireo_vm = VireoMachine(vireo, home, xml, vm_name)
            # `-cpu host`: the CPUID Vireo gives its guests (what KVM
            # supports). QEMU's default qemu64 model lacks XSAVEERPTR, so on
            # an AMD host Linux takes its FXSAVE-leak workaround (FNCLEX) on
            # every execve, which this host's KVM cannot emulate. Without
            # arch-capabilities: this host's KVM refuses QEMU's write of
            # that MSR (0x10a) and QEMU aborts.
            qemu = QemuMachine([
                "qemu-system-x86_64", "-enable-kvm", "-cpu", "host,-arch-capabilities",
                "-m", str(MEMORY_MIB), *qemu_args, "-display", "none", "-nic", "none",
                "-serial", "stdio", "-monitor", "none", "-no-reboot"])
            v = boot(f"vireo {name}", vireo_vm, args.timeout)
            q = boot(f"qemu {name}", qemu, args.timeout)
            print_rows(name, v, q)
    print("goal: time ratio <= 0.8")


if __name__ == "__main__":
    main()
