#!/usr/bin/env python3
"""NAT (user-mode networking) UDP throughput: Vireo vs QEMU, as ratios.

The same tiny guest (tests/network.rs, written by its ignored test
`write_bench_guests`: real mode, drives a modern virtio-net function through
the PCI configuration access capability) runs in
  - Vireo: `vireo run` with `<interface type='user'>` (libslirp) and a UDP
    `<portForward>`;
  - QEMU: `qemu-system-x86_64 -enable-kvm -netdev user,...,hostfwd=udp:...
    -device virtio-net-pci,disable-legacy=on` (libslirp too);
and measures
  - guest -> host: the guest sends --count datagrams of 1400 bytes to a UDP
    socket of this script through the gateway address; the rate is the
    bytes that arrive over the time from the first to the last;
  - host -> guest: this script sends --count datagrams of 1400 bytes to the
    forwarded host port as fast as it can, then end markers until the guest
    reports on serial how many reached it; the rate is the bytes the guest
    counted over the time from the first send to that report. Datagrams
    the guest's eight receive buffers cannot take are lost in both VMMs
    alike, so this is the delivered rate.
Each case runs --repeat times; the best run counts. On this host the guest
itself runs under instruction emulation (see TESTING.md), which bounds both.

Usage: scripts/bench_net.py [--vireo target/release/vireo] [--count 5000]
"""

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

PAYLOAD = 1400
GUEST_PORT = 7777
MAC = "52:54:00:12:34:56"


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_guests(workdir, port, count):
    env = dict(os.environ, VIREO_NET_BENCH_DIR=workdir,
               VIREO_NET_BENCH_PORT=str(port), VIREO_NET_BENCH_COUNT=str(count))
    subprocess.run(["cargo", "test", "--release", "--quiet", "--test", "network", "--",
                    "--ignored", "--exact", "write_bench_guests"],
                   check=True, capture_output=True, env=env)
    return os.path.join(workdir, "tx.bin"), os.path.join(workdir, "rx.bin")


class Serial:
    """Collects a process's stdout (its serial console) in the background."""

    def __init__(self, proc):
        self.proc = proc
        self.data = b""
        self.lock = threading.Lock()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        while True:
            chunk = self.proc.stdout.read1(4096)
            if not chunk:
                return
            with self.lock:
                self.data += chunk

    def text(self):
        with self.lock:
            return self.data.decode(errors="replace")

    def wait_for(self, needle, timeout=180):
        deadline = time.time() + timeout
        while time.time() < deadline:
            if needle in self.text():
                return time.time()
            if self.proc.poll() is not None and needle not in self.text():
                break
            time.sleep(0.002)
        raise RuntimeError(f"no {needle!r} on serial: {self.text()!r}")


def start_vireo(vireo, image, workdir, forward_port):
    forward = ""
    if forward_port:
        forward = (f"<portForward proto='udp' address='127.0.0.1'><range start='{forward_port}' "
                   f"to='{GUEST_PORT}'/></portForward>")
    xml = (f"<domain type='kvm'><name>bench</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>"
           f"<os><type arch='x86_64' machine='pc'>hvm</type>"
           f"<loader readonly='yes' type='rom'>{image}</loader></os>"
           f"<on_reboot>destroy</on_reboot><devices>"
           f"<interface type='user'><mac address='{MAC}'/><model type='virtio'/>{forward}</interface>"
           f"</devices></domain>")
    path = os.path.join(workdir, "bench.xml")
    with open(path, "w") as f:
        f.write(xml)
    env = dict(os.environ, VIREO_HOME=os.path.join(workdir, "home"))
    return subprocess.Popen([vireo, "run", path, "--serial", "stdio"], env=env,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL)


def start_qemu(image, forward_port):
    netdev = ("user,id=n,net=192.168.122.0/24,host=192.168.122.1,"
              "dhcpstart=192.168.122.2,dns=192.168.122.254")
    if forward_port:
        netdev += f",hostfwd=udp:127.0.0.1:{forward_port}-:{GUEST_PORT}"
    return subprocess.Popen(
        ["qemu-system-x86_64", "-enable-kvm", "-machine", "pc", "-m", "64", "-bios", image,
         "-display", "none", "-nodefaults", "-no-reboot", "-serial", "stdio",
         "-netdev", netdev,
         "-device", f"virtio-net-pci,netdev=n,disable-legacy=on,mac={MAC},romfile="],
        stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def stop(proc):
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def guest_to_host(start, sock):
    """Returns (datagrams, MB/s) of one run of the tx guest."""
    proc = start()
    serial = Serial(proc)
    try:
        sock.settimeout(180)
        first = last = None
        n = 0
        while True:
            try:
                data, _ = sock.recvfrom(2048)
            except socket.timeout:
                break
            now = time.time()
            if len(data) != PAYLOAD:
                continue
            first = first or now
            last = now
            n += 1
            sock.settimeout(2)
        serial.wait_for("SENT\n", 30)
    finally:
        stop(proc)
    if n < 2:
        raise RuntimeError(f"only {n} datagrams arrived; serial: {serial.text()!r}")
    return n, n * PAYLOAD / (last - first) / 1e6


def host_to_guest(start, port, count):
    """Returns (datagrams the guest counted, MB/s) of one run of the rx guest."""
    proc = start()
    serial = Serial(proc)
    try:
        serial.wait_for("READY\n")
        time.sleep(0.2)
        out = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        data = b"x" * PAYLOAD
        t0 = time.time()
        for _ in range(count):
            out.sendto(data, ("127.0.0.1", port))
        while "received " not in serial.text():
            out.sendto(b"END", ("127.0.0.1", port))
            time.sleep(0.005)
            if proc.poll() is not None or time.time() - t0 > 180:
                raise RuntimeError(f"no count from the guest: {serial.text()!r}")
        t1 = time.time()
        while "\n" not in serial.text().split("received ", 1)[1]:
            time.sleep(0.001)
        got = int(serial.text().split("received ", 1)[1].split()[0])
    finally:
        stop(proc)
    return got, got * PAYLOAD / (t1 - t0) / 1e6


def best(runs):
    return max(runs, key=lambda r: r[1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--vireo", default="target/release/vireo")
    ap.add_argument("--count", type=int, default=5000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    vireo = os.path.abspath(args.vireo)
    if not shutil.which("qemu-system-x86_64"):
        sys.exit("qemu-system-x86_64 is needed (apt install qemu-system-x86)")
    with tempfile.TemporaryDirectory() as workdir:
        sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        sink.bind(("127.0.0.1", 0))
        tx, rx = make_guests(workdir, sink.getsockname()[1], args.count)
        fwd = free_udp_port()
        cases = {
            "guest->host": (
                lambda: guest_to_host(lambda: start_vireo(vireo, tx, workdir, None), sink),
                lambda: guest_to_host(lambda: start_qemu(tx, None), sink)),
            "host->guest": (
                lambda: host_to_guest(lambda: start_vireo(vireo, rx, workdir, fwd), fwd, args.count),
                lambda: host_to_guest(lambda: start_qemu(rx, fwd), fwd, args.count)),
        }
        print(f"NAT UDP throughput, {args.count} datagrams of {PAYLOAD} bytes, "
              f"best of {args.repeat} (MB/s; datagrams delivered)")
        print(f"{'':14}{'Vireo':>18}{'QEMU':>18}{'Vireo/QEMU':>12}")
        for name, (vireo_run, qemu_run) in cases.items():
            v = best([vireo_run() for _ in range(args.repeat)])
            q = best([qemu_run() for _ in range(args.repeat)])
            print(f"{name:14}{v[1]:10.2f} ({v[0]:5d}){q[1]:10.2f} ({q[0]:5d}){v[1] / q[1]:12.2f}")


if __name__ == "__main__":
    main()
