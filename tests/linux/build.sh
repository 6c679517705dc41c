#!/bin/sh
# Builds the Linux test guest: a tinyconfig-based Linux 6.1 from Debian's
# linux-source-6.1 (bzImage for the 64-bit boot protocol, vmlinux for the
# PVH entry) and an uncompressed initramfs around the static 64-bit busybox
# of busybox-static, and prints the directory that holds them:
#
#   bzImage  vmlinux  initramfs.cpio  config  System.map  build.log
#
# The results are cached outside the checkout, in two steps:
#   ${XDG_CACHE_HOME:-$HOME/.cache}/vireo/test-linux/kernel-KERNELKEY/
#       the kernel (tens of minutes on two cores), keyed by what it is made
#       of: its fragments, the workaround patch, the kernel source's
#       package version and this script's kernel recipe;
#   ${XDG_CACHE_HOME:-$HOME/.cache}/vireo/test-linux/KEY/
#       what the tests use: that kernel and the initramfs (a second), keyed
#       by the kernel's key, the initramfs tree and busybox's version.
# So editing an init script never rebuilds the kernel. A second run with
# the same inputs only prints the directory. Each build runs aside and is
# renamed into place, under a lock per kernel, so tests starting at once
# build once and never see half of a result.
#
# usage: tests/linux/build.sh [--quiet] [--variant desktop]
#   --quiet            print nothing but the directory (progress goes to
#                      build.log)
#   --variant desktop  the kernel with VARIANT.fragment (desktop.fragment:
#                      the VGA console, keyboard, USB tablet) merged over
#                      kernel.fragment; cached under its own key, so the
#                      guests without it pay neither its build nor its boot
#
# Packages (scripts/setup.sh test): linux-source-6.1 busybox-static
# build-essential flex bison bc libelf-dev libssl-dev lz4.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
quiet=false
variant=
say() { $quiet || echo "test-linux: $*" >&2; }
die() { echo "test-linux: $*" >&2; exit 1; }
while [ $# -gt 0 ]; do
    case $1 in
    --quiet) quiet=true ;;
    --variant)
        [ $# -ge 2 ] || die "--variant needs a name"
        variant=$2
        shift
        ;;
    *) die "unknown argument: $1 (usage: build.sh [--quiet] [--variant NAME])" ;;
    esac
    shift
done
# The kernel's fragments, in merge order: a later one overrides an earlier.
fragments=kernel.fragment
if [ -n "$variant" ]; then
    [ -f "$here/$variant.fragment" ] || die "no such variant: $here/$variant.fragment"
    fragments="kernel.fragment $variant.fragment"
fi

tarball=/usr/src/linux-source-6.1.tar.xz
busybox=/bin/busybox
version_of() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || true; }
linux_version=$(version_of linux-source-6.1)
busybox_version=$(version_of busybox-static)
[ -n "$linux_version" ] && [ -f "$tarball" ] ||
    die "linux-source-6.1 is not installed ($tarball); run scripts/setup.sh test"
[ -n "$busybox_version" ] && [ -x "$busybox" ] ||
    die "busybox-static is not installed ($busybox); run scripts/setup.sh test"

# The kernel's recipe: this script from the line that marks it to the one
# that ends it, so changes to the initramfs part do not count.
kernel_recipe() {
    sed -n '/^# ---- kernel recipe/,/^# ---- end of kernel recipe/p' "$here/build.sh"
}
kernel_key=$(
    cd "$here"
    {
        echo "linux-source-6.1 $linux_version"
        # (the list and its order: merging is order-sensitive)
        echo "fragments $fragments"
        sha256sum $fragments kvm-pvm-workarounds.patch
        kernel_recipe | sha256sum
    } | sha256sum | cut -c1-16
)
# The whole guest's key: the kernel's, and the initramfs by content (and,
# for its tree, by name and executable bit, which become the file's mode in
# the image).
key=$(
    cd "$here"
    {
        echo "kernel $kernel_key"
        echo "busybox-static $busybox_version"
        sed '/^# ---- kernel recipe/,/^# ---- end of kernel recipe/d' build.sh | sha256sum
        find initramfs -type f | LC_ALL=C sort | while read -r f; do
            [ -x "$f" ] && echo "exec $f"
            sha256sum "$f"
        done
    } | sha256sum | cut -c1-16
)
cache=${XDG_CACHE_HOME:-$HOME/.cache}/vireo/test-linux
kernel=$cache/kernel-$kernel_key
out=$cache/$key
kernel_outputs="bzImage vmlinux gen_init_cpio"
outputs="bzImage vmlinux initramfs.cpio"

complete() {
    dir=$1
    shift
    for f in "$@"; do [ -s "$dir/$f" ] || return 1; done
}

if complete "$out" $outputs; then
    echo "$out"
    exit 0
fi

mkdir -p "$cache"
# One build per kernel at a time; whoever waited finds the result of the
# first. (Per kernel: the desktop variant's build does not hold up a guest
# whose kernel is already there.)
lock=$cache/.lock-kernel-$kernel_key
exec 9>"$lock"
flock -n 9 || {
    say "another build of this kernel is under way; waiting for its lock ($lock)"
    flock 9
}
if complete "$out" $outputs; then
    echo "$out"
    exit 0
fi

work=$(mktemp -d "$cache/build.XXXXXX")
cleanup() {
    status=$?
    rm -rf "$work"
    [ "$status" -eq 0 ] || echo "test-linux: the build failed (status $status)" >&2
}
trap cleanup EXIT
trap 'exit 130' INT TERM
log=$work/build.log
jobs=$(nproc 2>/dev/null || echo 2)
run() { nice -n 10 "$@" >>"$log" 2>&1 || { tail -n 40 "$log" >&2; die "failed: $*"; }; }

# Moves a finished directory into place whole.
publish() {
    stage=$2.tmp.$$
    rm -rf "$stage"
    mv "$1" "$stage"
    rm -rf "$2"
    mv "$stage" "$2"
}

# ---- kernel recipe (its text is part of the kernel's cache key)
build_kernel() {
    start=$(date +%s)
    say "building the kernel in $work (log: $log); 10 to 25 minutes on 2 cores"
    run tar xf "$tarball" -C "$work"
    src=$work/linux-source-6.1
    obj=$work/obj
    run patch -d "$src" -p1 -i "$here/kvm-pvm-workarounds.patch"

    # tinyconfig, then the fragments over it; -n keeps every symbol the
    # fragments do not name off (allnoconfig), as tinyconfig does.
    run make -C "$src" O="$obj" ARCH=x86_64 tinyconfig
    # (merge_config.sh runs make in the current directory.)
    (cd "$src" && run scripts/kconfig/merge_config.sh -n -O "$obj" "$obj/.config" \
        $(for f in $fragments; do echo "$here/$f"; done))
    # What the fragments ask for, the last word on each symbol winning (a
    # variant may turn on what kernel.fragment keeps off), must all be in
    # the final .config: Kconfig drops silently what lacks a dependency.
    wanted=$(for f in $fragments; do cat "$here/$f"; done |
        sed -n -e 's/^\(CONFIG_[A-Za-z0-9_]*\)=.*/\1 &/p' \
            -e 's/^# \(CONFIG_[A-Za-z0-9_]*\) is not set$/\1 &/p' |
        awk '{ symbol = $1; sub(/^[^ ]* /, ""); last[symbol] = $0; order[symbol] = NR }
             END { for (s in last) print order[s], last[s] }' | sort -n | cut -d' ' -f2-)
    missing=$(echo "$wanted" | while read -r line; do
        case $line in
        "# CONFIG_"*)
            symbol=$(echo "$line" | cut -d' ' -f2)
            if grep -q "^$symbol=" "$obj/.config"; then echo "$line"; fi
            ;;
        CONFIG_*) grep -qx "$line" "$obj/.config" || echo "$line" ;;
        esac
    done)
    [ -z "$missing" ] || die "$fragments ask for what Kconfig did not keep (a dependency is missing):
$missing"

    say "compiling the kernel ($jobs jobs)"
    run make -C "$src" O="$obj" ARCH=x86_64 -j"$jobs" bzImage

    # The kernel's own initramfs writer goes with it (see below).
    mkdir "$work/kernel"
    cp "$obj/arch/x86/boot/bzImage" "$obj/vmlinux" "$obj/System.map" \
        "$obj/usr/gen_init_cpio" "$work/kernel/"
    cp "$obj/.config" "$work/kernel/config"
    echo "kernel built in $(($(date +%s) - start)) s with $jobs jobs" >>"$log"
    cp "$log" "$work/kernel/build.log"
    publish "$work/kernel" "$kernel"
    say "kernel built in $(($(date +%s) - start)) s: $kernel"
}
# ---- end of kernel recipe

complete "$kernel" $kernel_outputs || build_kernel

# The initramfs, written by the kernel's own gen_init_cpio (no root, no
# device nodes on the host): busybox with a link per applet, the tree in
# initramfs/, and the console node init needs before devtmpfs is mounted.
list=$work/initramfs.list
{
    echo "dir /dev 0755 0 0"
    echo "nod /dev/console 0600 0 0 c 5 1"
    # (acpid and udhcpc write their logs and pid files under /var.)
    for d in bin proc sys tmp mnt root run var var/log; do echo "dir /$d 0755 0 0"; done
    echo "slink /var/run /run 0777 0 0"
    echo "file /bin/busybox $busybox 0755 0 0"
    echo "slink /init /bin/busybox 0777 0 0"
    # (--list names busybox itself, which must stay the binary.)
    "$busybox" --list | LC_ALL=C sort | grep -vx busybox | while read -r applet; do
        echo "slink /bin/$applet busybox 0777 0 0"
    done
    (cd "$here/initramfs" && find . -mindepth 1 | LC_ALL=C sort) | while read -r f; do
        path=${f#.}
        if [ -d "$here/initramfs/$f" ]; then
            echo "dir $path 0755 0 0"
        elif [ -x "$here/initramfs/$f" ]; then
            echo "file $path $here/initramfs/$f 0755 0 0"
        else
            echo "file $path $here/initramfs/$f 0644 0 0"
        fi
    done
} >"$list"
mkdir "$work/guest"
"$kernel/gen_init_cpio" "$list" >"$work/guest/initramfs.cpio" 2>>"$log" ||
    die "gen_init_cpio failed (list: $list)"
# The kernel's files are linked, not copied: one kernel serves every
# initramfs built over it.
for f in bzImage vmlinux System.map config build.log; do
    ln -s "$kernel/$f" "$work/guest/$f"
done
publish "$work/guest" "$out"
echo "$out"
