#!/usr/bin/env python3
"""Screenshots of the real window for the AppStream metainfo, written to
data/screenshots/: the main window with running VMs, each New VM wizard
step, a running console, a VM's Details (hardware) and XML tabs, and
Connection Details' Storage and Host pages. Runs Vireo on an Xvfb display of its own, in
a throwaway VIREO_HOME, driven with xdotool as a person would.

Usage: scripts/screenshots.py [--vireo target/release/vireo] [--only details]
"""
import argparse
import os
import subprocess
import sys
import tempfile
import time

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "data", "screenshots")


class Desktop:
    def __init__(self):
        self.xvfb = subprocess.Popen(
            ["Xvfb", "-displayfd", "1", "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.display = ":" + self.xvfb.stdout.readline().strip()

    def run(self, *args):
        return subprocess.run(list(args), env=dict(os.environ, DISPLAY=self.display),
                              capture_output=True, text=True).stdout

    def key(self, keys, pause=0.6):
        self.run("xdotool", "key", "--clearmodifiers", keys)
        time.sleep(pause)

    def type(self, text):
        self.run("xdotool", "type", "--delay", "40", text)
        time.sleep(0.5)

    def window(self, name):
        deadline = time.time() + 30
        while time.time() < deadline:
            ids = self.run("xdotool", "search", "--onlyvisible", "--name", name).split()
            if ids:
                return ids[-1]
            time.sleep(0.2)
        sys.exit(f"no window named {name}")

    def shoot(self, window, name):
        path = os.path.join(OUT, name)
        self.run("import", "-window", window, path)
        print("wrote", os.path.relpath(path))

    def locate(self, word):
        """Where tesseract reads `word` on the screen (the way a person
        finds a tab by looking), or None."""
        with tempfile.TemporaryDirectory() as tmp:
            shot = os.path.join(tmp, "s.png")
            big = os.path.join(tmp, "b.png")
            self.run("import", "-window", "root", shot)
            subprocess.run(["convert", shot, "-resize", "200%", "-colorspace", "Gray", big],
                           check=True)
            tsv = subprocess.run(["tesseract", big, "-", "-l", "eng", "tsv"],
                                 capture_output=True, text=True).stdout
        for line in tsv.splitlines()[1:]:
            f = line.split("\t")
            if len(f) >= 12 and word.lower() in f[11].lower():
                x, y, w, h = (int(v) for v in f[6:10])
                return (x + w // 2) // 2, (y + h // 2) // 2
        return None

    def click_text(self, word):
        deadline = time.time() + 60
        while time.time() < deadline:
            where = self.locate(word)
            if where:
                self.run("xdotool", "mousemove", str(where[0]), str(where[1]), "click", "1")
                time.sleep(1)
                return
            time.sleep(0.5)
        sys.exit(f"never saw {word} on the screen")

    def close(self):
        self.xvfb.kill()


DETAILS_VM = """<domain type='kvm'><name>garden</name><title>Garden server</title>
<description>Grows tomatoes</description><memory unit='MiB'>512</memory>
<vcpu placement='static'>2</vcpu><cpu><topology sockets='1' cores='2' threads='1'/></cpu>
<os><type arch='x86_64' machine='pc'>hvm</type><boot dev='hd'/><boot dev='cdrom'/>
<bootmenu enable='yes'/></os><devices>
<disk type='file' device='disk'><driver name='qemu' type='qcow2'/>
<source file='{disk}'/><target dev='vda' bus='virtio'/></disk>
<disk type='file' device='cdrom'><driver name='qemu' type='raw'/>
<source file='{iso}'/><target dev='hdc' bus='ide'/><readonly/></disk>
<interface type='user'><model type='virtio'/></interface>
<serial type='pty'><target port='0'/></serial><input type='tablet' bus='usb'/>
<graphics type='vnc' port='-1' autoport='yes' listen='127.0.0.1'/>
<video><model type='vga'/></video></devices></domain>"""


def details_shots(vireo, home, iso):
    """details.png (the hardware view, scrolled to the disks) and
    details-xml.png, of a shut-off VM defined with the CLI."""
    os.makedirs(home, exist_ok=True)
    disk = os.path.join(home, "garden.qcow2")
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", disk, "8G"], check=True)
    xml = os.path.join(home, "garden.xml")
    with open(xml, "w") as f:
        f.write(DETAILS_VM.format(disk=disk, iso=iso))
    env = dict(os.environ, VIREO_HOME=home, LANG=os.environ.get("LANG", "C.UTF-8"))
    subprocess.run([vireo, "define", xml], env=env, check=True, capture_output=True)
    desktop = Desktop()
    env.update(DISPLAY=desktop.display, GDK_BACKEND="x11", NO_AT_BRIDGE="1")
    env.pop("WAYLAND_DISPLAY", None)
    app = subprocess.Popen([vireo], env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        main_window = desktop.window("Vireo")
        desktop.run("xdotool", "windowactivate", "--sync", main_window)
        desktop.click_text("garden")
        desktop.click_text("Details")
        # Down to the boot options and the disks.
        desktop.run("xdotool", "mousemove", "680", "400")
        for _ in range(8):
            desktop.run("xdotool", "click", "5")
        time.sleep(1)
        desktop.shoot(main_window, "details.png")
        desktop.click_text("XML")
        time.sleep(1)
        desktop.shoot(main_window, "details-xml.png")
    finally:
        app.kill()
        desktop.close()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--vireo", default="target/release/vireo")
    parser.add_argument("--only", choices=["details"])
    args = parser.parse_args()
    vireo = os.path.abspath(args.vireo)
    os.makedirs(OUT, exist_ok=True)
    with tempfile.TemporaryDirectory() as home:
        iso_root = os.path.join(home, "iso", "boot", "grub")
        os.makedirs(iso_root)
        with open(os.path.join(iso_root, "grub.cfg"), "w") as f:
            f.write('set timeout=-1\nmenuentry "Install Vireo Linux" { true }\n'
                    'menuentry "Rescue a broken system" { true }\n')
        iso = os.path.join(home, "installer.iso")
        subprocess.run(["grub-mkrescue", "-o", iso, os.path.join(home, "iso")],
                       check=True, capture_output=True)
        if args.only == "details":
            details_shots(vireo, home, iso)
            return
        desktop = Desktop()
        env = dict(os.environ, VIREO_HOME=home, DISPLAY=desktop.display, GDK_BACKEND="x11",
                   NO_AT_BRIDGE="1", LANG=os.environ.get("LANG", "C.UTF-8"))
        env.pop("WAYLAND_DISPLAY", None)
        app = subprocess.Popen([vireo, "--demo"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            main_window = desktop.window("Vireo")
            desktop.run("xdotool", "windowactivate", "--sync", main_window)
            # The demo boots through SeaBIOS to its splash.
            time.sleep(25)
            desktop.shoot(main_window, "console.png")
            desktop.key("ctrl+n", 1.5)
            wizard = desktop.window("New Virtual Machine")
            desktop.shoot(wizard, "wizard-1-method.png")
            desktop.key("alt+f")
            desktop.type(iso)
            time.sleep(1)
            desktop.shoot(wizard, "wizard-2-media.png")
            desktop.key("alt+f")
            desktop.shoot(wizard, "wizard-3-resources.png")
            desktop.key("alt+f")
            desktop.shoot(wizard, "wizard-4-storage.png")
            desktop.key("ctrl+a")
            desktop.type("2")
            desktop.key("Tab")
            desktop.key("alt+f")
            desktop.key("ctrl+a")
            desktop.type("installer")
            desktop.shoot(wizard, "wizard-5-finish.png")
            desktop.key("alt+f", 2)
            # GRUB's menu comes up in about half a minute on an emulating host.
            time.sleep(45)
            desktop.shoot(main_window, "main-window.png")
            # Connection Details → Storage: a second pool, and volumes of
            # both formats beside the installer's disk.
            vireo_cli = lambda *a: subprocess.run([vireo, *a], env=env, check=True,
                                                  capture_output=True)
            vireo_cli("pool-define-as", "isos", "dir", "--target", os.path.join(home, "isos"))
            vireo_cli("pool-build", "isos")
            vireo_cli("pool-start", "isos")
            vireo_cli("pool-autostart", "isos")
            vireo_cli("vol-create-as", "default", "fedora-workstation.qcow2", "40G",
                      "--format", "qcow2")
            vireo_cli("vol-create-as", "default", "scratch.img", "4G", "--format", "raw",
                      "--allocation", "0")
            desktop.run("xdotool", "windowactivate", "--sync", main_window)
            desktop.key("F10", 1)
            desktop.key("s", 2.5)
            desktop.shoot(desktop.window("Connection Details"), "storage.png")
            # Connection Details → Overview (the Host page), from the main menu.
            desktop.run("xdotool", "windowactivate", "--sync", main_window)
            desktop.key("F10", 1)
            desktop.key("h", 3)
            desktop.shoot(desktop.window("Connection Details"), "host.png")
        finally:
            subprocess.run([vireo, "destroy", "installer"], env=env, capture_output=True)
            subprocess.run([vireo, "destroy", "Demo"], env=env, capture_output=True)
            app.kill()
            desktop.close()
        details_shots(vireo, os.path.join(home, "details"), iso)


if __name__ == "__main__":
    main()
