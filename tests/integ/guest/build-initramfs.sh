#!/bin/bash
# SPDX-License-Identifier: MIT
# Builds the initramfs that test-guest.sh boots: busybox-static, the kernel
# modules the guest needs (resolved through modules.dep, loaded by /init with
# insmod in dependency order), the dynamic binaries the guest runs with the
# libraries ldd lists for them, and /init (guest/init beside this script).
#
#   build-initramfs.sh OUT.cpio KVER
#
# KVER names /lib/modules/KVER.  Writes an uncompressed newc cpio archive:
# the kernel unpacks it faster under TCG than a compressed one.
set -euo pipefail

out=${1:?usage: build-initramfs.sh OUT.cpio KVER}
kver=${2:?usage: build-initramfs.sh OUT.cpio KVER}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
moddir=/lib/modules/$kver

# Modules /init loads; built-in ones (ext4, jbd2, crc32c on Debian's cloud
# kernel) are skipped, so the list also works with a kernel that has them
# as modules.
MODULES="virtio_pci virtio_blk virtio_net nbd ext4"
BINARIES="/usr/sbin/mke2fs /usr/sbin/e2fsck /usr/sbin/filefrag /usr/sbin/fstrim /usr/sbin/nbd-client"
BUSYBOX=/bin/busybox

die() { echo "build-initramfs: $*" >&2; exit 1; }

[ -d "$moddir" ] || die "no $moddir"
[ -f "$moddir/modules.dep" ] || die "no $moddir/modules.dep"
file "$BUSYBOX" 2>/dev/null | grep -q 'statically linked' ||
	ldd "$BUSYBOX" 2>&1 | grep -q 'not a dynamic executable' ||
	die "$BUSYBOX is not static (install busybox-static)"

root=$(mktemp -d "${TMPDIR:-/tmp}/ballast-initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,bb,usr/sbin,etc,proc,sys,dev,mnt,tmp,modules,lib64}

install -m 0755 "$BUSYBOX" "$root/bin/busybox"
install -m 0755 "$here/init" "$root/init"
[ -f /etc/mke2fs.conf ] && install -m 0644 /etc/mke2fs.conf "$root/etc/mke2fs.conf"

# --- kernel modules -------------------------------------------------------
# modules.dep: "kernel/path/mod.ko[.xz|.zst|.gz]: dep1.ko dep2.ko ...".
# Names compare with '-' and '_' as one character, as modprobe does.
# modname PATH: sets $mn to the module's normalised name (no subshell: the
# loops below run over every line of modules.dep).
modname() { mn=${1##*/}; mn=${mn%%.ko*}; mn=${mn//-/_}; }

declare -A dep_of path_of
while IFS= read -r line; do
	p=${line%%:*}
	modname "$p"
	path_of[$mn]=$p
	dep_of[$mn]=${line#*:}
done <"$moddir/modules.dep"

declare -A builtin
if [ -f "$moddir/modules.builtin" ]; then
	while IFS= read -r p; do modname "$p"; builtin[$mn]=1; done <"$moddir/modules.builtin"
fi

declare -A done_mod
order=()
visit() { # name depth
	local n=${1//-/_} d
	[ "${2:-0}" -lt 32 ] || die "module dependency loop at $n"
	[ -z "${done_mod[$n]:-}" ] || return 0
	done_mod[$n]=1
	if [ -n "${builtin[$n]:-}" ] && [ -z "${path_of[$n]:-}" ]; then return 0; fi
	[ -n "${path_of[$n]:-}" ] || die "module $n is neither in modules.dep nor built in"
	for d in ${dep_of[$n]}; do modname "$d"; visit "$mn" $(( ${2:-0} + 1 )); done
	order+=("$n")
}
for m in $MODULES; do visit "$m"; done

: >"$root/modules/order"
for n in "${order[@]}"; do
	src=$moddir/${path_of[$n]}
	dst=$root/modules/$n.ko
	case "$src" in
	*.ko) cp "$src" "$dst" ;;
	*.ko.xz) xz -dc "$src" >"$dst" ;;
	*.ko.zst) zstd -qdc "$src" >"$dst" ;;
	*.ko.gz) gzip -dc "$src" >"$dst" ;;
	*) die "unknown module format: $src" ;;
	esac
	echo "$n" >>"$root/modules/order"
done

# --- dynamic binaries and their libraries ----------------------------------
copy_file() { # host path -> same path in the image (symlinks resolved)
	mkdir -p "$root$(dirname "$1")"
	cp -L "$1" "$root$1"
}
for b in $BINARIES; do
	[ -x "$b" ] || die "missing $b"
	install -m 0755 "$b" "$root/usr/sbin/$(basename "$b")"
	libs=$(ldd "$b" | awk '/=> \//{print $3} /^\t\/[^ ]+ \(/{print $1}') ||
		die "ldd $b failed"
	for l in $libs; do [ -e "$root$l" ] || copy_file "$l"; done
done
[ -e "$root/lib64/ld-linux-x86-64.so.2" ] || die "dynamic loader not found by ldd"

(cd "$root" && find . -print0 | LC_ALL=C sort -z |
	cpio --null -o -H newc --owner=0:0 --quiet) >"$out.tmp"
mv "$out.tmp" "$out"
echo "build-initramfs: $out ($(du -k "$out" | cut -f1) KiB; modules: ${order[*]:-none})"
