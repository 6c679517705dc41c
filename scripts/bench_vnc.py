#!/usr/bin/env python3
"""Vireo's VNC server vs QEMU's on the same machine, with the same client.

The client is the minimal RFB 3.8 client below (security None, shared
ClientInit, SetPixelFormat 32bpp depth 24 true colour, SetEncodings with one
preference list for both servers: ZRLE, Raw, DesktopSize). It counts the
bytes of every FramebufferUpdate and decodes ZRLE/Raw into its own copy of
the screen. Each VMM runs the SAME guest image:

  1. bytes: the GRUB menu (ISO from grub-mkrescue, serial + console
     terminals) as one full non-incremental update once "Entry" is on the
     serial port; and a one-line change: a boot-sector guest in VGA text mode
     rewrites text row 12 whenever a byte arrives on COM1, and the client
     counts the incremental update that carries it.
  2. latency: from writing the byte to the VMM's stdin (the guest's COM1) to
     the client having received the whole update that covers row 12, over 50
     pokes spaced 150-250 ms apart. This includes the guest's reaction (IRQ4,
     80 stores), the same guest for both VMMs; the guest echoes a byte on COM1
     after writing the screen, and that echo's delay is shown as well.
  3. frames per second: a guest sets 1024x768x32 through the Bochs DISPI
     ports (0x1CE/0x1CF), finds the LFB in BAR0 of 00:02.0 and repaints the
     whole screen with a new colour in a loop (rep stosd), writing one byte to
     COM1 per frame. The client requests incremental updates back to back for
     10 s and counts frames of which every row reached it in that frame's
     colour. The guest's own frame rate (bytes on COM1) is shown beside it,
     since on a host without VMX the guest itself cannot paint 30 fps.
"""

import argparse
import os
import random
import shutil
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
import zlib

MEMORY_MIB = 256
GRUB_CFG = """serial --unit=0 --speed=115200
terminal_input --append serial
terminal_output --append serial
set timeout=-1
menuentry "Entry one" { echo one }
menuentry "Entry two" { echo two }
"""

# Text guest (boot sector, real mode), GNU as:
#   cli; xor ax,ax; mov ds,ax; mov ss,ax; mov sp,0x7c00
#   mov ah,1; mov cx,0x2000; int 10h      ; cursor off: no blink damage
#   cli; IVT[0Ch] = handler               ; IRQ4 (COM1)
#   es=0xb800; di=0; ax=0x0720; cx=2000; cld; rep stosw   ; clear screen
#   out 0x3f9,1 (IER: rx data); out 0x3fc,0x0b (MCR: DTR|RTS|OUT2)
#   in al,0x21; and al,0xef; out 0x21,al  ; unmask IRQ4
#   xor bl,bl
# wait: cli; in al,0x3fd; test al,1; jnz got; sti; hlt; jmp wait
# got:  in al,0x3f8; inc bl; al = 'A' + (bl & 15); ah = 0x1f
#       di = 12*160; cx = 80; rep stosw   ; rewrite text row 12
#       out 0x3f8,al; jmp wait             ; echo: the screen is written
# handler: push ax; out 0x20,0x20 (EOI); pop ax; iret
TEXT_GUEST = bytes.fromhex(
    "fa31c08ed88ed0bc007cb401b90020cd10fac70630006b7cc70632000000b800b88ec0"
    "31ffb82007b9d007fcf3abbaf903b001eebafc03b00beee42124efe62130dbfabafd03"
    "eca8017504fbf4ebf3baf803ecfec388d8240f0441b41fbf8007b95000f3abbaf803ee"
    "ebd750b020e62058cf")

# VBE guest (boot sector): lgdt a flat 4 GiB GDT, enter 32-bit protected
# mode, then:
#   out 0xcf8,0x80001010; in eax,0xcfc; and eax,~0xf; mov esi,eax   ; LFB
#   DISPI (index 0x1ce, data 0x1cf): ENABLE=0, XRES=1024, YRES=768, BPP=32,
#   ENABLE=0x41 (enabled | LFB)
#   xor ebx,ebx; cld
# frame: add ebx,0x152945; mov eax,ebx; mov edi,esi; mov ecx,1024*768
#        rep stosd; out 0x3f8,'.'; jmp frame
VBE_GUEST = bytes.fromhex(
    "fa31c08ed88ed0bc007c660f0116c87c0f20c00c010f22c066ea207c0000080066b810"
    "008ed88ec08ed0b81010008066baf80cef66bafc0ced83e0f089c666b804006631c9e8"
    "5100000066b8010066b90004e84400000066b8020066b90003e83700000066b8030066"
    "b92000e82a00000066b8040066b94100e81d00000031dbfc81c34529150089d889f7b9"
    "00000c00f3ab66baf803b02eeeebe666bace0166ef66bacf016689c866efc38d742600"
    "900000000000000000ffff0000009acf00ffff00000092cf001700b07c0000")
VBE_STEP = 0x152945

ENC_RAW, ENC_ZRLE, ENC_DESKTOP_SIZE = 0, 16, -223
ENCODINGS = [ENC_ZRLE, ENC_RAW, ENC_DESKTOP_SIZE]
ENC_NAMES = {ENC_RAW: "Raw", ENC_ZRLE: "ZRLE", ENC_DESKTOP_SIZE: "DesktopSize"}


class RfbClient:
    """Just enough RFB 3.8 to count and decode ZRLE/Raw updates."""

    def __init__(self, port, timeout):
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        self.sock.settimeout(timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.inflate = zlib.decompressobj()
        self.encodings_seen = set()
        version = self.read(12)
        if not version.startswith(b"RFB 003."):
            raise RuntimeError(f"not an RFB server: {version!r}")
        self.sock.sendall(b"RFB 003.008\n")
        (count,) = self.read(1)
        if count == 0:
            raise RuntimeError("server refused: " + self.read_string().decode(errors="replace"))
        if 1 not in self.read(count):
            raise RuntimeError("server offers no security type None")
        self.sock.sendall(b"\x01")
        (result,) = struct.unpack(">I", self.read(4))
        if result != 0:
            raise RuntimeError("security handshake failed")
        self.sock.sendall(b"\x01")  # ClientInit: shared
        self.width, self.height = struct.unpack(">HH", self.read(4))
        self.read(16)  # the server's pixel format; we set our own
        self.read_string()
        # 32 bpp, depth 24, little endian, true colour, 255/255/255, shifts 16/8/0
        self.sock.sendall(b"\x00\x00\x00\x00" + struct.pack(
            ">BBBBHHHBBBxxx", 32, 24, 0, 1, 255, 255, 255, 16, 8, 0))
        self.sock.sendall(struct.pack(">BxH", 2, len(ENCODINGS))
                          + b"".join(struct.pack(">i", e) for e in ENCODINGS))
        self.fb = bytearray(self.width * self.height * 4)

    def close(self):
        self.sock.close()

    def read(self, n):
        while len(self.buf) < n:
            chunk = self.sock.recv(1 << 20)
            if not chunk:
                raise RuntimeError("server closed the connection")
            self.buf.extend(chunk)
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def read_string(self):
        (n,) = struct.unpack(">I", self.read(4))
        return self.read(n)

    def request(self, incremental, x=0, y=0, w=None, h=None):
        self.sock.sendall(struct.pack(">BBHHHH", 3, int(incremental), x, y,
                                      self.width if w is None else w,
                                      self.height if h is None else h))

    def update(self, decode=True):
        """Reads messages up to the end of the next FramebufferUpdate.
        Returns (bytes in that message, [(x, y, w, h, encoding)])."""
        while True:
            (kind,) = self.read(1)
            if kind == 0:
                break
            if kind == 1:  # SetColourMapEntries: not for true colour, skip
                _, _, n = struct.unpack(">BHH", self.read(5))
                self.read(6 * n)
            elif kind == 2:  # Bell
                pass
            elif kind == 3:  # ServerCutText
                self.read(3)
                self.read_string()
            else:
                raise RuntimeError(f"unknown server message {kind}")
        _, nrects = struct.unpack(">BH", self.read(3))
        size = 4
        rects = []
        for _ in range(nrects):
            x, y, w, h, enc = struct.unpack(">HHHHi", self.read(12))
            size += 12
            rects.append((x, y, w, h, enc))
            if enc != ENC_DESKTOP_SIZE:
                self.encodings_seen.add(enc)
            if enc == ENC_RAW:
                data = self.read(w * h * 4)
                size += len(data)
                if decode:
                    self.put_rows(x, y, w, h, data)
            elif enc == ENC_ZRLE:
                (n,) = struct.unpack(">I", self.read(4))
                data = self.read(n)
                size += 4 + n
                raw = self.inflate.decompress(data)
                if decode:
                    self.zrle(x, y, w, h, raw)
            elif enc == ENC_DESKTOP_SIZE:
                self.width, self.height = w, h
                self.fb = bytearray(w * h * 4)
            else:
                raise RuntimeError(f"server sent encoding {enc}, not asked for")
        return size, rects

    def put_rows(self, x, y, w, h, data):
        stride = self.width * 4
        for row in range(h):
            at = (y + row) * stride + x * 4
            self.fb[at:at + w * 4] = data[row * w * 4:(row + 1) * w * 4]

    def zrle(self, rx, ry, rw, rh, raw):
        """ZRLE (RFC 6143 7.7.6) with 3-byte CPIXELs, into self.fb."""
        pos = 0
        for ty in range(ry, ry + rh, 64):
            th = min(64, ry + rh - ty)
            for tx in range(rx, rx + rw, 64):
                tw = min(64, rx + rw - tx)
                sub = raw[pos]
                pos += 1
                n = tw * th
                if sub == 1:
                    px = raw[pos:pos + 3] + b"\0"
                    pos += 3
                    self.put_rows(tx, ty, tw, th, px * n)
                    continue
                if sub == 0:
                    pixels = [raw[pos + 3 * i:pos + 3 * i + 3] + b"\0" for i in range(n)]
                    pos += 3 * n
                elif 2 <= sub <= 16:
                    pal = [raw[pos + 3 * i:pos + 3 * i + 3] + b"\0" for i in range(sub)]
                    pos += 3 * sub
                    bits = 1 if sub == 2 else 2 if sub <= 4 else 4
                    mask = (1 << bits) - 1
                    pixels = []
                    for _ in range(th):
                        shift = 8
                        for _ in range(tw):
                            if shift == 0:
                                pos += 1
                                shift = 8
                            shift -= bits
                            pixels.append(pal[(raw[pos] >> shift) & mask])
                        pos += 1
                elif sub == 128 or sub >= 130:
                    pal = None
                    if sub >= 130:
                        pal = [raw[pos + 3 * i:pos + 3 * i + 3] + b"\0" for i in range(sub - 128)]
                        pos += 3 * (sub - 128)
                    pixels = []
                    while len(pixels) < n:
                        if pal is None:
                            px = raw[pos:pos + 3] + b"\0"
                            pos += 3
                            run = True
                        else:
                            index = raw[pos]
                            pos += 1
                            px = pal[index & 127]
                            run = index & 128
                        count = 1
                        if run:
                            while raw[pos] == 255:
                                count += 255
                                pos += 1
                            count += raw[pos]
                            pos += 1
                        pixels.extend([px] * count)
                else:
                    raise RuntimeError(f"ZRLE sub-encoding {sub}")
                self.put_rows(tx, ty, tw, th, b"".join(pixels))


class Vm:
    """One VMM process with COM1 on its stdin/stdout; serial output is kept
    with arrival times."""

    def __init__(self, label, argv, env=None):
        self.label = label
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, env=env)
        self.serial = bytearray()
        self.events = []  # (time, chunk)
        self.lock = threading.Condition()
        threading.Thread(target=self._reader, daemon=True).start()

    def _reader(self):
        while True:
            chunk = self.proc.stdout.read1(65536)
            if not chunk:
                with self.lock:
                    self.lock.notify_all()
                return
            now = time.monotonic()
            with self.lock:
                self.serial.extend(chunk)
                self.events.append((now, chunk))
                self.lock.notify_all()

    def wait_serial(self, predicate, timeout):
        deadline = time.monotonic() + timeout
        with self.lock:
            while not predicate(self.serial):
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None:
                    return False
                self.lock.wait(min(left, 1.0))
            return True

    def poke(self, byte=b"p"):
        self.proc.stdin.write(byte)
        self.proc.stdin.flush()

    def fail(self, what):
        self.stop()
        err = self.proc.stderr.read().decode(errors="replace")[-2000:]
        tail = bytes(self.serial[-500:])
        raise RuntimeError(f"{self.label}: {what}\nserial tail: {tail!r}\nstderr: {err}")

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def free_display():
    """A VNC display number whose port (5900 + N) is free right now."""
    for _ in range(200):
        n = random.randint(20, 99)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", 5900 + n))
                return n
            except OSError:
                continue
    raise RuntimeError("no free VNC port")


class Launcher:
    def __init__(self, vireo, work):
        self.vireo = vireo
        self.work = work
        self.vms = []

    def start(self, kind, label, image, cdrom):
        display = free_display()
        if kind == "vireo":
            xml = os.path.join(self.work, f"{label}.xml")
            if cdrom:
                disk = (f"<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>"
                        f"<source file='{image}'/><target dev='hdc' bus='ide'/></disk>")
                boot = "cdrom"
            else:
                disk = (f"<disk type='file' device='disk'><driver name='qemu' type='raw'/>"
                        f"<source file='{image}'/><target dev='hda' bus='ide'/></disk>")
                boot = "hd"
            with open(xml, "w") as f:
                f.write(f"<domain type='kvm'><name>{label}</name>"
                        f"<memory unit='MiB'>{MEMORY_MIB}</memory><vcpu>1</vcpu>"
                        f"<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='{boot}'/></os>"
                        f"<devices>{disk}</devices></domain>\n")
            argv = [self.vireo, "run", xml, "--vnc", f"127.0.0.1:{display}",
                    "--serial", "stdio"]
        else:
            drive = (["-cdrom", image] if cdrom else
                     ["-drive", f"file={image},format=raw,if=ide"])
            argv = ["qemu-system-x86_64", "-enable-kvm", "-m", str(MEMORY_MIB), *drive,
                    "-display", "none", "-vga", "std", "-vnc", f"127.0.0.1:{display}",
                    "-nic", "none", "-serial", "stdio", "-monitor", "none"]
        vm = Vm(f"{kind} ({label})", argv)
        vm.port = 5900 + display
        self.vms.append(vm)
        return vm

    def stop_all(self):
        for vm in self.vms:
            vm.stop()


def make_iso(work):
    root = os.path.join(work, "iso-root", "boot", "grub")
    os.makedirs(root)
    with open(os.path.join(root, "grub.cfg"), "w") as f:
        f.write(GRUB_CFG)
    iso = os.path.join(work, "grub.iso")
    subprocess.run(["grub-mkrescue", "-o", iso, os.path.join(work, "iso-root")],
                   check=True, capture_output=True)
    return iso


def make_disk(work, name, code):
    sector = bytearray(512)
    sector[:len(code)] = code
    sector[510:512] = b"\x55\xaa"
    path = os.path.join(work, name)
    with open(path, "wb") as f:
        f.write(bytes(sector) + bytes(1 << 20))  # 1 MiB + 512 bytes of disk
    return path


def grub_full_update(launcher, iso, timeout):
    """Both VMMs boot GRUB at once (only bytes are measured here)."""
    # One copy of the ISO each: QEMU refuses an image another process has locked.
    copy = iso + ".qemu"
    shutil.copyfile(iso, copy)
    vms = {"vireo": launcher.start("vireo", "grub-vireo", iso, cdrom=True),
           "qemu": launcher.start("qemu", "grub-qemu", copy, cdrom=True)}
    out = {}
    for kind, vm in vms.items():
        if not vm.wait_serial(lambda s: b"Entry two" in s, timeout):
            vm.fail(f"no GRUB menu on serial after {timeout}s")
    time.sleep(3.0)  # the console is painted after the serial text
    for kind, vm in vms.items():
        client = RfbClient(vm.port, 30)
        client.request(False)
        size, _ = client.update(decode=False)
        out[kind] = (size, client.width, client.height, sorted(client.encodings_seen))
        client.close()
        vm.stop()
    return out


def text_guest(launcher, disk, kind, pokes, timeout):
    vm = launcher.start(kind, f"text-{kind}", disk, cdrom=False)
    # Poke until the guest echoes: it is up and its screen is cleared.
    deadline = time.monotonic() + timeout
    while True:
        vm.poke()
        if vm.wait_serial(lambda s: any(65 <= b <= 80 for b in s), 1.0):
            break
        if time.monotonic() > deadline:
            vm.fail(f"the text guest did not echo within {timeout}s")
    time.sleep(1.0)
    client = RfbClient(vm.port, 30)
    client.request(False)
    full, _ = client.update(decode=False)
    band = (client.height * 12 // 25, client.height * 13 // 25)
    line_bytes, line_pixels, line_rects, latency, reaction, others = [], [], [], [], [], 0
    client.sock.settimeout(10)
    for _ in range(pokes):
        client.request(True)
        # Let anything unrelated (there should be nothing) arrive first.
        client.sock.settimeout(random.uniform(0.15, 0.25))
        try:
            while True:
                client.update(decode=False)
                others += 1
                client.request(True)
        except (socket.timeout, TimeoutError):
            pass
        client.sock.settimeout(10)
        with vm.lock:
            echoes = len(vm.events)
        t0 = time.monotonic()
        vm.poke()
        while True:
            size, rects = client.update(decode=False)
            t1 = time.monotonic()
            if any(y < band[1] and y + h > band[0] for (_, y, _, h, _) in rects):
                break
            others += 1
            client.request(True)
        line_bytes.append(size)
        line_pixels.append(sum(w * h for (_, _, w, h, _) in rects))
        line_rects.append(len(rects))
        latency.append(t1 - t0)
        if vm.wait_serial(lambda s: len(vm.events) > echoes, 5):
            reaction.append(vm.events[echoes][0] - t0)
    result = {
        "full": full, "size": (client.width, client.height),
        "line": statistics.median(line_bytes), "line_pixels": statistics.median(line_pixels),
        "line_rects": statistics.median(line_rects), "latency": latency, "reaction": reaction,
        "encodings": sorted(client.encodings_seen), "others": others,
    }
    client.close()
    vm.stop()
    return result


def vbe_guest(launcher, disk, kind, seconds, timeout):
    vm = launcher.start(kind, f"vbe-{kind}", disk, cdrom=False)
    if not vm.wait_serial(lambda s: b"." in s, timeout):
        vm.fail(f"the VBE guest painted no frame within {timeout}s")
    client = RfbClient(vm.port, 30)
    if (client.width, client.height) != (1024, 768):
        # The server may still show the old mode: DesktopSize will follow.
        pass
    colours = {}  # colour bytes -> set of rows seen entirely in it
    complete = set()
    updates = 0
    nbytes = 0
    client.request(False)
    client.update()
    # Frames already (partly) on screen at the first update do not count.
    stale = {bytes(client.fb[r * 4096:r * 4096 + 4]) for r in range(client.height)}
    client.request(True)
    start = time.monotonic()
    with vm.lock:
        guest_start = vm.serial.count(b".")
    while time.monotonic() - start < seconds:
        size, rects = client.update()
        client.request(True)
        updates += 1
        nbytes += size
        if (client.width, client.height) != (1024, 768):
            continue
        stride = 1024 * 4
        touched = set()
        for (_, y, _, h, enc) in rects:
            if enc != ENC_DESKTOP_SIZE:
                touched.update(range(y, y + h))
        for row in touched:
            line = client.fb[row * stride:(row + 1) * stride]
            px = bytes(line[:4])
            if line == px * 1024:
                rows = colours.setdefault(px, set())
                rows.add(row)
                if len(rows) == 768 and px not in stale:
                    complete.add(px)
    elapsed = time.monotonic() - start
    with vm.lock:
        guest_frames = vm.serial.count(b".") - guest_start
    result = {
        "fps": len(complete) / elapsed, "guest_fps": guest_frames / elapsed,
        "ups": updates / elapsed, "mbps": nbytes / elapsed / 1e6,
        "encodings": sorted(client.encodings_seen),
    }
    client.close()
    vm.stop()
    return result


def pct(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100 * (len(values) - 1))))]


def names(encs):
    return "+".join(ENC_NAMES.get(e, str(e)) for e in encs) or "-"


def main():
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--vireo", default="target/release/vireo")
    parser.add_argument("--timeout", type=int, default=900, help="GRUB boot timeout (s)")
    parser.add_argument("--pokes", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=10.0, help="frame-rate run (s)")
    parser.add_argument("--skip-grub", action="store_true")
    args = parser.parse_args()
    for tool in ("grub-mkrescue", "xorriso", "qemu-system-x86_64"):
        if not shutil.which(tool):
            sys.exit(f"{tool} is missing: run scripts/setup.sh bench")
    if not os.path.exists(args.vireo):
        sys.exit(f"{args.vireo} is missing: run make build")
    kinds = ("vireo", "qemu")
    with tempfile.TemporaryDirectory() as work:
        launcher = Launcher(os.path.abspath(args.vireo), work)
        try:
            grub = None
            if not args.skip_grub:
                print("GRUB menu: booting the ISO in both VMMs (a few minutes here)...",
                      flush=True)
                grub = grub_full_update(launcher, make_iso(work), args.timeout)
            text_disk = make_disk(work, "text.img", TEXT_GUEST)
            vbe_disk = make_disk(work, "vbe.img", VBE_GUEST)
            text, vbe = {}, {}
            for kind in kinds:
                print(f"text guest, {args.pokes} pokes: {kind}...", flush=True)
                text[kind] = text_guest(launcher, text_disk, kind, args.pokes, 120)
            for kind in kinds:
                print(f"VBE 1024x768x32 guest, {args.seconds:.0f} s: {kind}...", flush=True)
                vbe[kind] = vbe_guest(launcher, vbe_disk, kind, args.seconds, 120)
        finally:
            launcher.stop_all()

    v, q = "vireo", "qemu"
    print()
    print("VNC: the same Python RFB client for both; SetEncodings ZRLE, Raw, DesktopSize;"
          " 32 bpp depth 24")
    if grub:
        print(f"encodings chosen: GRUB: Vireo {names(grub[v][3])}, QEMU {names(grub[q][3])}; "
              f"text: Vireo {names(text[v]['encodings'])}, QEMU {names(text[q]['encodings'])}; "
              f"VBE: Vireo {names(vbe[v]['encodings'])}, QEMU {names(vbe[q]['encodings'])}")
    print(f"{'':38}{'Vireo':>10}{'QEMU':>10}{'ratio':>8}")

    def row(label, a, b, fmt="{:10.0f}"):
        ratio = f"{a / b:8.2f}" if b else f"{'-':>8}"
        print(f"{label:38}" + fmt.format(a) + fmt.format(b) + ratio)

    if grub:
        print(f"{'GRUB screen size':38}{'%dx%d' % grub[v][1:3]:>10}{'%dx%d' % grub[q][1:3]:>10}")
        row("GRUB menu, full update (bytes)", grub[v][0], grub[q][0])
    print(f"{'text guest screen size':38}{'%dx%d' % text[v]['size']:>10}"
          f"{'%dx%d' % text[q]['size']:>10}")
    row("text screen, full update (bytes)", text[v]["full"], text[q]["full"])
    row("one-line change, median (bytes)", text[v]["line"], text[q]["line"])
    row("  pixels in its rectangles (median)", text[v]["line_pixels"], text[q]["line_pixels"])
    row("  rectangles (median)", text[v]["line_rects"], text[q]["line_rects"])
    for p in (50, 99):
        row(f"poke -> pixels at client p{p} (ms)", pct(text[v]["latency"], p) * 1e3,
            pct(text[q]["latency"], p) * 1e3, "{:10.1f}")
    for p in (50, 99):
        if text[v]["reaction"] and text[q]["reaction"]:
            row(f"  of which poke -> guest echo p{p} (ms)", pct(text[v]["reaction"], p) * 1e3,
                pct(text[q]["reaction"], p) * 1e3, "{:10.1f}")
    row("  other updates (a split change...)", text[v]["others"], text[q]["others"])
    row("1024x768 complete frames/s at client", vbe[v]["fps"], vbe[q]["fps"], "{:10.2f}")
    row("  guest's own repaint rate (frames/s)", vbe[v]["guest_fps"], vbe[q]["guest_fps"],
        "{:10.2f}")
    row("  updates/s received", vbe[v]["ups"], vbe[q]["ups"], "{:10.2f}")
    row("  MB/s received", vbe[v]["mbps"], vbe[q]["mbps"], "{:10.3f}")
    print("latency includes the guest's reaction to the COM1 byte (IRQ4, 80 stores), the same"
          " guest and path in both VMMs; the echo row is poke -> the guest's echo on stdout.")
    print("goals: bytes ratio <= 1.0; latency ratio <= 1.0; >= 30 complete frames/s"
          " (bounded by the guest's own repaint rate on this host)")


if __name__ == "__main__":
    main()
