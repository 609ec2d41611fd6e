#!/bin/bash
# SPDX-License-Identifier: MIT
# Guest test: a Linux VM (Debian's cloud kernel under qemu, TCG) formats,
# fills, remounts, verifies, trims and checks an ext4 filesystem on a volume
# served by ballastd, then the host reads the same bytes back over NBD.
#
#   1. virtio: qemu's own NBD client attaches volume g1 as a virtio-blk disk.
#   2. nbd:    the guest kernel's NBD client (nbd-client) attaches volume g2
#              over qemu user networking, forwarded to ballastd's Unix socket.
#
# The guest runs guest/init from an initramfs that guest/build-initramfs.sh
# builds here at run time, and reports on the serial console with "GUEST-"
# lines, ending "GUEST-OK <sha256>" or "GUEST-FAIL why".  The host then checks
# the blob's checksum (nbdcopy + debugfs), e2fsck on the copy, and that the
# ranges of the file deleted before fstrim read back as holes (nbdinfo --map).
#
# Environment: GUEST_SERVER=nbdkit serves the volumes from nbdkit's memory
# plugin instead of ballastd (to tell a guest problem from a daemon one);
# GUEST_ACCEL=kvm where /dev/kvm exists; GUEST_KERNEL=/boot/vmlinuz-...
. "$(dirname "$0")/lib.sh"

GUEST_SERVER=${GUEST_SERVER:-ballastd}
GUEST_ACCEL=${GUEST_ACCEL:-tcg}
VOL_SIZE=256M
JUNK_MIB=64
# Both boots share one budget; each qemu also gets at most QEMU_TIMEOUT.
BUDGET=${GUEST_BUDGET:-280}
QEMU_TIMEOUT=240
deadline=$(($(date +%s) + BUDGET))
here=$(cd "$(dirname "$0")" && pwd)

for tool in qemu-system-x86_64 socat nbdinfo nbdcopy debugfs e2fsck cpio busybox; do
	command -v "$tool" >/dev/null || fail "missing $tool (tools/deps.sh installs it)"
done
KERNEL=${GUEST_KERNEL:-$(find /boot -maxdepth 1 -name 'vmlinuz-*-cloud-amd64' | sort -V | tail -n 1)}
[ -r "$KERNEL" ] || fail "no /boot/vmlinuz-*-cloud-amd64 (install linux-image-cloud-amd64)"
KVER=${KERNEL#/boot/vmlinuz-}
note "kernel $KVER, accel $GUEST_ACCEL, server $GUEST_SERVER"

bash "$here/guest/build-initramfs.sh" "$T/initrd.cpio" "$KVER" || fail "building the initramfs failed"

case "$GUEST_SERVER" in
ballastd)
	bal_start
	bal volume create g1 --size "$VOL_SIZE" >/dev/null || fail "volume create g1"
	bal volume create g2 --size "$VOL_SIZE" >/dev/null || fail "volume create g2"
	;;
nbdkit)
	# One memory disk whatever the export name: scenario 1 is checked on
	# the host before scenario 2 formats the disk again.
	nbdkit -f --exit-with-parent --unix "$SOCK" memory "$VOL_SIZE" &
	nbdkit_pid=$!
	on_exit "kill $nbdkit_pid 2>/dev/null; wait $nbdkit_pid 2>/dev/null"
	wait_for_socket "$SOCK" 10 || fail "nbdkit did not start"
	;;
*) fail "GUEST_SERVER must be ballastd or nbdkit" ;;
esac

# The serial log without carriage returns.
serial() { tr -d '\r' <"$T/$1.serial"; }

show_guest() { # name
	{
		echo "--- serial console of $1"
		serial "$1" | tail -n 80
		echo "--- qemu output of $1"
		tail -n 20 "$T/$1.qemu" 2>/dev/null || true
	} >&2
}

# run_guest NAME "KERNEL ARGS" QEMU-ARGS...: boots the VM and waits for it
# to power off; fails unless the console shows GUEST-OK.
run_guest() {
	local name=$1 args=$2 tmo rc=0 start
	shift 2
	tmo=$((deadline - $(date +%s)))
	[ $tmo -le $QEMU_TIMEOUT ] || tmo=$QEMU_TIMEOUT
	[ $tmo -ge 20 ] || fail "$name: no time left in the ${BUDGET}s budget"
	start=$(date +%s)
	timeout -k 5 "$tmo" qemu-system-x86_64 -M q35 -accel "$GUEST_ACCEL" -m 512 -smp 1 \
		-nodefaults -display none -no-reboot -serial "file:$T/$name.serial" \
		-kernel "$KERNEL" -initrd "$T/initrd.cpio" \
		-append "console=ttyS0 quiet loglevel=3 panic=-1 bt_junk_mib=$JUNK_MIB $args" \
		"$@" >"$T/$name.qemu" 2>&1 </dev/null || rc=$?
	note "$name: guest ran $(($(date +%s) - start))s, qemu exit $rc"
	if [ $rc -eq 124 ] || [ $rc -eq 137 ]; then
		show_guest "$name"
		fail "$name: qemu killed after ${tmo}s"
	fi
	if ! serial "$name" | grep -q '^GUEST-OK [0-9a-f]\{64\}$'; then
		show_guest "$name"
		fail "$name: $(serial "$name" | grep -m1 '^GUEST-FAIL' || echo "no GUEST-OK marker")"
	fi
	[ $rc -eq 0 ] || { show_guest "$name"; fail "$name: qemu exited $rc"; }
}

# check_volume NAME VOL: the bytes the guest wrote, read back on the host.
check_volume() {
	local name=$1 vol=$2 img=$T/$2.img sha tsha junk holes
	sha=$(serial "$name" | sed -n 's/^GUEST-OK \([0-9a-f]*\)$/\1/p')
	tsha=$(serial "$name" | sed -n 's/^GUEST-TEXT \([0-9a-f]*\)$/\1/p')
	[ -n "$tsha" ] || fail "$name: no GUEST-TEXT line"

	nbdcopy "$(uri_unix "$vol")" "$img" || fail "$name: nbdcopy of $vol failed"
	debugfs -R "dump /blob $T/blob" "$img" >/dev/null 2>&1
	debugfs -R "dump /hello.txt $T/hello.txt" "$img" >/dev/null 2>&1
	[ -f "$T/blob" ] || fail "$name: debugfs found no /blob on $vol"
	[ -f "$T/hello.txt" ] || fail "$name: debugfs found no /hello.txt on $vol"
	[ "$(sha256sum <"$T/blob" | cut -d' ' -f1)" = "$sha" ] ||
		fail "$name: /blob on $vol read over NBD differs from what the guest wrote"
	[ "$(sha256sum <"$T/hello.txt" | cut -d' ' -f1)" = "$tsha" ] ||
		fail "$name: /hello.txt on $vol read over NBD differs from what the guest wrote"
	e2fsck -fn "$img" >"$T/e2fsck.out" 2>&1 || { cat "$T/e2fsck.out" >&2; fail "$name: host e2fsck of $vol"; }
	rm -f "$img" "$T/blob" "$T/hello.txt"

	# fstrim freed the clusters of the deleted file: its ranges are holes.
	nbdinfo --map "$(uri_unix "$vol")" >"$T/$vol.map" || fail "$name: nbdinfo --map $vol"
	serial "$name" | sed -n 's/^GUEST-EXTENT \([0-9]*\) \([0-9]*\)$/\1 \2/p' >"$T/$vol.junk"
	junk=$(awk '{ s += $2 } END { printf "%.0f", s }' "$T/$vol.junk")
	[ "$junk" -eq $((JUNK_MIB << 20)) ] || fail "$name: junk extents cover $junk bytes, not $JUNK_MIB MiB"
	holes=$(awk 'NR == FNR { es[NR] = $1; ee[NR] = $1 + $2; n = NR; next }
		$3 % 2 == 1 {
			for (i = 1; i <= n; i++) {
				lo = $1 > es[i] ? $1 : es[i]; hi = $1 + $2 < ee[i] ? $1 + $2 : ee[i]
				if (hi > lo) h += hi - lo
			}
		}
		END { printf "%.0f", h }' "$T/$vol.junk" "$T/$vol.map")
	note "$name: $(serial "$name" | sed -n 's/^GUEST-TRIM //p') bytes trimmed; $holes of $junk deleted bytes are holes"
	nbdinfo --map --totals "$(uri_unix "$vol")" | sed "s/^/# $vol: /"
	[ $((holes * 10)) -ge $((junk * 9)) ] ||
		{ cat "$T/$vol.map" >&2; fail "$name: only $holes of $junk trimmed bytes read back as holes"; }
}

t0=$(date +%s)
run_guest virtio "bt_mode=virtio" \
	-drive "file=$(uri_unix g1),format=raw,if=virtio,cache=none,discard=unmap"
check_volume virtio g1
t1=$(date +%s)

run_guest nbd "bt_mode=nbd bt_server=10.0.2.100:10809 bt_export=g2" \
	-netdev "user,id=n0,restrict=on,guestfwd=tcp:10.0.2.100:10809-cmd:socat - UNIX-CONNECT:$SOCK" \
	-device virtio-net-pci,netdev=n0
check_volume nbd g2
t2=$(date +%s)

note "virtio scenario $((t1 - t0))s, nbd scenario $((t2 - t1))s"
[ "$GUEST_SERVER" = ballastd ] && bal_stop
echo "ok"
