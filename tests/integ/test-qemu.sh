#!/bin/bash
# SPDX-License-Identifier: MIT
# qemu's NBD client against ballastd: qemu-img info/compare/convert/map and
# qemu-io pattern scripts, each with a negative control that must fail.
. "$(dirname "$0")/lib.sh"
H=$TOP/tests/integ/helpers
MIB=1048576

bal_start
for v in src dst io; do
	bal volume create "$v" --size 1G || fail "volume create $v"
done
U_SRC=$(uri_unix src) U_DST=$(uri_unix dst) U_IO=$(uri_unix io)

# qemu-img info sees a 1 GiB raw export.
qemu-img info --output=json -f raw "$(uri_tcp src)" >"$T/info.json" || fail "qemu-img info"
/usr/bin/python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["virtual-size"]==1<<30, d' \
	"$T/info.json" || fail "qemu-img info: $(cat "$T/info.json")"

# A 256 MiB image with random, zero and hole regions goes in with qemu-img
# convert; qemu-img compare finds the volume equal to it (the volume's
# remaining 768 MiB reading as zeroes).
/usr/bin/python3 "$H/mkimage.py" "$T/src.img" 256 >/dev/null || fail "mkimage"
qemu-img convert -n -f raw -O raw "$T/src.img" "$U_SRC" || fail "qemu-img convert file -> src"
qemu-img compare -f raw -F raw "$T/src.img" "$U_SRC" || fail "qemu-img compare file src: exit $?"
qemu-img compare -f raw -F raw "$T/src.img" "$(uri_tcp src)" || fail "qemu-img compare file src (tcp): exit $?"
note "qemu-img convert in + compare ok"

# volume -> qcow2 -> a second volume; all three compare equal.
qemu-img convert -f raw -O qcow2 "$U_SRC" "$T/v.qcow2" || fail "qemu-img convert src -> qcow2"
qemu-img check -f qcow2 "$T/v.qcow2" >/dev/null || fail "qemu-img check qcow2"
qemu-img convert -n -f qcow2 -O raw "$T/v.qcow2" "$(uri_tcp dst)" || fail "qemu-img convert qcow2 -> dst"
qemu-img compare -f raw -F raw "$U_SRC" "$U_DST" || fail "qemu-img compare src dst: exit $?"
qemu-img compare -f qcow2 -F raw "$T/v.qcow2" "$U_DST" || fail "qemu-img compare qcow2 dst: exit $?"
qemu-img compare -f raw -F raw "$T/src.img" "$U_DST" || fail "qemu-img compare file dst: exit $?"
rm -f "$T/v.qcow2"
note "qemu-img convert volume -> qcow2 -> volume ok"

# Negative control: one changed sector must make compare report a mismatch
# (exit 1) at that offset.
qemu-io -f raw -c "write -P 0x55 $((100 * MIB)) 512" -c flush "$U_DST" >/dev/null || fail "qemu-io write to dst"
rc=0
qemu-img compare -f raw -F raw "$U_SRC" "$U_DST" >"$T/cmp.out" 2>&1 || rc=$?
[ $rc -eq 1 ] || fail "qemu-img compare after a change: exit $rc, want 1: $(cat "$T/cmp.out")"
grep -q "Content mismatch at offset $((100 * MIB))!" "$T/cmp.out" || fail "compare output: $(cat "$T/cmp.out")"
note "qemu-img compare negative control ok"

# The qemu-io pattern script.
qio() { # uri commands... ; runs qemu-io, output in $T/qio.out, returns its exit code
	local uri=$1 c args=()
	shift
	for c in "$@"; do args+=(-c "$c"); done
	qemu-io -f raw "${args[@]}" "$uri" >"$T/qio.out" 2>&1
}
script=("write -P 0xab 0 64k" "read -P 0xab 0 64k" "write -z 64k 64k" "read -P 0 64k 64k"
	"discard 1M 1M" "read -P 0 1M 1M" "aio_write -P 0xcd 2M 128k" "aio_flush"
	"read -P 0xcd 2M 128k" "flush")
qio "$U_IO" "${script[@]}" || fail "qemu-io script: exit $?: $(cat "$T/qio.out")"
! grep -Eqi "fail|error" "$T/qio.out" || fail "qemu-io script reported: $(cat "$T/qio.out")"
[ "$(grep -c '^wrote ' "$T/qio.out")" -eq 3 ] || fail "qemu-io: want 3 writes: $(cat "$T/qio.out")"
[ "$(grep -c '^read ' "$T/qio.out")" -eq 4 ] || fail "qemu-io: want 4 reads: $(cat "$T/qio.out")"
grep -q '^discard 1048576/1048576 bytes at offset 1048576' "$T/qio.out" || fail "qemu-io discard: $(cat "$T/qio.out")"
note "qemu-io pattern script ok"

# The same bytes seen by a new connection over TCP.
qio "$(uri_tcp io)" "read -P 0xab 0 64k" "read -P 0 64k 64k" "read -P 0 128k 1920k" \
	"read -P 0xcd 2M 128k" "read -P 0 $((2 * MIB + 131072)) 1M" ||
	fail "qemu-io re-read over TCP: $(cat "$T/qio.out")"

# Negative control: a wrong pattern where 0xab was written must fail.
rc=0
qio "$U_IO" "read -P 0xee 0 64k" || rc=$?
[ $rc -ne 0 ] || fail "qemu-io read -P 0xee over 0xab succeeded: $(cat "$T/qio.out")"
grep -q "Pattern verification failed at offset 0" "$T/qio.out" ||
	fail "qemu-io negative control: no pattern mismatch reported: $(cat "$T/qio.out")"
note "qemu-io negative control ok"

# Ballast's TRIM frees whole clusters, and a freed cluster reads as zeroes.
qio "$U_IO" "write -P 0x11 4M 1M" "flush" "read -P 0x11 4M 1M" "discard 4M 1M" "read -P 0 4M 1M" ||
	fail "qemu-io write/discard/read: $(cat "$T/qio.out")"

# qemu-img map: written ranges are data and not zero; never-written and
# discarded ranges are not data.  (The write -z range may be either.)
qemu-img map --output=json -f raw "$U_IO" >"$T/map.json" || fail "qemu-img map"
/usr/bin/python3 - "$T/map.json" <<'PY' || fail "qemu-img map: $(cat "$T/map.json")"
import json, sys
K, M = 1024, 1024 * 1024
ext = json.load(open(sys.argv[1]))
pos = 0
for e in ext:
    assert e["start"] == pos, ("gap", e, pos)
    pos += e["length"]
assert pos == 1 << 30, pos
def check(off, length, data, zero):
    for e in ext:
        lo, hi = max(off, e["start"]), min(off + length, e["start"] + e["length"])
        if lo < hi:
            assert e["data"] == data and e["zero"] == zero, \
                "[%d,%d): data=%s zero=%s, want data=%s zero=%s" % (lo, hi, e["data"], e["zero"], data, zero)
check(0, 64 * K, True, False)
check(128 * K, 2 * M - 128 * K, False, True)
check(2 * M, 128 * K, True, False)
check(2 * M + 128 * K, (1 << 30) - 2 * M - 128 * K, False, True)
PY
note "qemu-img map ok"
note "PASS"
