#!/usr/bin/env python3
"""Vireo's VNC server vs QEMU's, same guests, same client, same encodings.

The client is a minimal RFB 3.8 client in this script: security None,
32-bit little-endian true colour, encodings ZRLE then Raw for both
servers. Reported, as Vireo/QEMU ratios:
  1. bytes of the full-screen update of a GRUB menu (ISO from grub-mkrescue);
  2. for a guest of our own that rewrites one text line (row 12, 80
     cells) each time a byte arrives on COM1: the bytes of the resulting
     incremental update, and the latency from writing the byte to the
     client having the update (p50, p99). The latency includes the
     guest's own reaction, the same code in both VMMs.
Not measured yet: frames per second for full-screen 1024x768 changes
(needs a VBE guest of our own).
"""

import os
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
import bench  # noqa: E402  (the GRUB ISO and helpers)

ZRLE, RAW, DESKTOP_SIZE = 16, 0, -223


def free_display():
    while True:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        if port > 5900:
            return port - 5900


def recv_exact(sock, n):
    data = bytearray()
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise EOFError("server closed the connection")
        data.extend(chunk)
    return bytes(data)


class Client:
    def __init__(self, port, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        recv_exact(self.sock, 12)
        self.sock.sendall(b"RFB 003.008\n")
        count = recv_exact(self.sock, 1)[0]
        types = recv_exact(self.sock, count)
        assert 1 in types, f"no security None: {list(types)}"
        self.sock.sendall(b"\x01")
        assert struct.unpack(">I", recv_exact(self.sock, 4))[0] == 0
        self.sock.sendall(b"\x01")  # shared
        self.width, self.height = struct.unpack(">HH", recv_exact(self.sock, 4))
        recv_exact(self.sock, 16)
        name_len = struct.unpack(">I", recv_exact(self.sock, 4))[0]
        recv_exact(self.sock, name_len)
        pixel_format = struct.pack(">BBBBHHHBBB3x", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0)
        self.sock.sendall(b"\x00\x00\x00\x00" + pixel_format)
        encodings = [ZRLE, RAW, DESKTOP_SIZE]
        self.sock.sendall(struct.pack(">BxH", 2, len(encodings)) + b"".join(struct.pack(">i", e) for e in encodings))

    def request(self, incremental):
        self.sock.sendall(struct.pack(">BBHHHH", 3, int(incremental), 0, 0, self.width, self.height))

    def read_update(self):
        """Reads server messages until a framebuffer update; returns its
        size in bytes (and keeps its rectangles in `self.rects`)."""
        while True:
            kind = recv_exact(self.sock, 1)[0]
            if kind == 0:
                break
            if kind == 2:  # bell
                continue
            if kind == 1:
                _, _, n = struct.unpack(">xHH", recv_exact(self.sock, 5))
                recv_exact(self.sock, 6 * n)
                continue
            if kind == 3:
                n = struct.unpack(">3xI", recv_exact(self.sock, 7))[0]
                recv_exact(self.sock, n)
                continue
            raise ValueError(f"unexpected server message {kind}")
        total = 4
        rects = struct.unpack(">xH", recv_exact(self.sock, 3))[0]
        self.rects = []
        for _ in range(rects):
            x, y, w, h, enc = struct.unpack(">HHHHi", recv_exact(self.sock, 12))
            self.rects.append((x, y, w, h))
            total += 12
            if enc == RAW:
                recv_exact(self.sock, w * h * 4)
                total += w * h * 4
            elif enc == ZRLE:
                n = struct.unpack(">I", recv_exact(self.sock, 4))[0]
                recv_exact(self.sock, n)
                total += 4 + n
            elif enc == DESKTOP_SIZE:
                self.width, self.height = w, h
            else:
                raise ValueError(f"unexpected encoding {enc}")
        return total


def line_guest():
    """Boot sector: wait for a byte on COM1, fill text row 12 with it, repeat."""
    code = bytes([
        0xB4, 0x01,        # mov ah, 1        ; set cursor shape:
        0xB9, 0x00, 0x20,  # mov cx, 0x2000   ; hidden, so no blinking
        0xCD, 0x10,        # int 0x10         ; updates muddle the timing
        0xFC,              # cld
        0xBA, 0xFD, 0x03,  # start: mov dx, 0x3fd
        0xEC,              # wait: in al, dx
        0xA8, 0x01,        # test al, 1
        0x74, 0xFB,        # jz wait
        0xBA, 0xF8, 0x03,  # mov dx, 0x3f8
        0xEC,              # in al, dx
        0xB4, 0x1F,        # mov ah, 0x1f (white on blue)
        0xBB, 0x00, 0xB8,  # mov bx, 0xb800
        0x8E, 0xC3,        # mov es, bx
        0xBF, 0x80, 0x07,  # mov di, 12*160
        0xB9, 0x50, 0x00,  # mov cx, 80
        0xF3, 0xAB,        # rep stosw
        0xEB, 0xE2,        # jmp start (the mov dx after cld)
    ])
    sector = code.ljust(510, b"\0") + b"\x55\xaa"
    return sector.ljust(1 << 20, b"\0")


def start_vm(kind, vireo, work, disk_xml, qemu_drive, display):
    if kind == "vireo":
        xml = os.path.join(work, "vnc.xml")
        with open(xml, "w") as f:
            f.write(f"""<domain type='kvm'><name>vncbench</name><memory unit='MiB'>64</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='pc'>hvm</type></os><devices>{disk_xml}</devices></domain>""")
        argv = [vireo, "run", xml, "--serial", "stdio", "--vnc", f"127.0.0.1:{display}"]
    else:
        argv = ["qemu-system-x86_64", "-enable-kvm", "-m", "64", *qemu_drive, "-display", "none",
                "-nic", "none", "-vnc", f"127.0.0.1:{display}", "-serial", "stdio", "-monitor", "none"]
    return subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)


def grub_bytes(kind, vireo, work, iso):
    display = free_display()
    disk = f"<disk type='file' device='cdrom'><source file='{iso}'/><target dev='hdc' bus='ide'/></disk>"
    vm = start_vm(kind, vireo, work, disk, ["-cdrom", iso], display)
    try:
        seen = bytearray()
        deadline = time.monotonic() + 600
        while b"Entry two" not in seen:
            if time.monotonic() > deadline:
                sys.exit(f"{kind}: no GRUB menu")
            seen.extend(vm.stdout.read1(4096))
        time.sleep(3)
        client = Client(5900 + display)
        client.request(False)
        return client.read_update()
    finally:
        vm.kill()
        vm.wait()


def line_change(kind, vireo, work, disk_path, samples=40):
    display = free_display()
    disk = f"<disk type='file' device='disk'><driver name='qemu' type='raw'/><source file='{disk_path}'/><target dev='hda' bus='ide'/></disk>"
    vm = start_vm(kind, vireo, work, disk, ["-drive", f"file={disk_path},format=raw,if=ide"], display)
    try:
        client = Client(5900 + display)
        client.request(False)
        client.read_update()
        client.sock.settimeout(2)
        # Wait until the guest answers pokes (SeaBIOS has booted it).
        deadline = time.monotonic() + 120
        while True:
            client.request(True)
            vm.stdin.write(b"#")
            vm.stdin.flush()
            try:
                client.read_update()
                break
            except socket.timeout:
                if time.monotonic() > deadline:
                    sys.exit(f"{kind}: the line guest never answered")
        time.sleep(1)
        client.sock.settimeout(10)
        latencies, sizes = [], []
        for i in range(samples):
            # Drain: the screen must be still (all of the previous change
            # delivered) before the next poke, or a late part of the last
            # change would be taken for this one.
            client.sock.settimeout(0.3)
            while True:
                client.request(True)
                try:
                    client.read_update()
                except socket.timeout:
                    break
            client.sock.settimeout(10)
            start = time.monotonic()
            vm.stdin.write(bytes([ord("A") + i % 26]))
            vm.stdin.flush()
            # The text cursor blinks: skip updates that do not hold the
            # changed line (text row 12, pixel rows 192..208).
            size = client.read_update()
            while not any(y < 208 and y + h > 192 for _, y, _, h in client.rects):
                client.request(True)
                size = client.read_update()
            sizes.append(size)
            latencies.append(time.monotonic() - start)
        return latencies, sizes
    finally:
        vm.kill()
        vm.wait()


def pct(values, p):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def main():
    vireo = sys.argv[1] if len(sys.argv) > 1 else "target/release/vireo"
    with tempfile.TemporaryDirectory() as work:
        iso = bench.make_iso(work)
        disk = os.path.join(work, "line.img")
        with open(disk, "wb") as f:
            f.write(line_guest())
        results = {}
        for kind in ("vireo", "qemu"):
            results[kind] = {"grub": grub_bytes(kind, vireo, work, iso)}
            results[kind]["lat"], results[kind]["line"] = line_change(kind, vireo, work, disk)
        v, q = results["vireo"], results["qemu"]
        print("VNC: same client (RFB 3.8, 32 bpp, encodings ZRLE then Raw) against both servers")
        print(f"{'':34}{'Vireo':>12}{'QEMU':>12}{'ratio':>10}")
        print(f"{'GRUB menu, full update (bytes)':34}{v['grub']:12d}{q['grub']:12d}{v['grub'] / q['grub']:10.2f}")
        vl, ql = statistics.median(v["line"]), statistics.median(q["line"])
        print(f"{'one-line change (bytes, median)':34}{vl:12.0f}{ql:12.0f}{vl / ql:10.2f}")
        for p in (50, 99):
            a, b = pct(v["lat"], p) * 1000, pct(q["lat"], p) * 1000
            print(f"{f'poke-to-pixels latency p{p} (ms)':34}{a:12.1f}{b:12.1f}{a / b:10.2f}")
        print("goals: bytes <= QEMU's, latency <= QEMU's (frames/s for 1024x768 full-screen changes: not measured yet)")


if __name__ == "__main__":
    main()
