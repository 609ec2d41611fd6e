#!/bin/bash
# SPDX-License-Identifier: MIT
# Restart: volumes and their bytes survive a clean stop (SIGTERM, exit 0)
# and start on the same data directory; the catalog (names, ids, sizes,
# creation times, allocation) reads back the same.  A second cycle adds a
# write after the restart, a deleted volume, a write never flushed by the
# client, and an idle client connected while the daemon stops.
. "$(dirname "$0")/lib.sh"
H=$TOP/tests/integ/helpers
MIB=1048576

bal_start
bal volume create v1 --size 1G || fail "create v1"
bal volume create v2 --size 64M || fail "create v2"
bal volume create v3 --size 3M || fail "create v3"

# Distinct data: v1 a sparse 64 MiB image with holes (nbdcopy), v2 qemu-io
# patterns, v3 random bytes over the whole volume (libnbd, FUA and flush).
/usr/bin/python3 "$H/mkimage.py" "$T/v1.src" 64 >/dev/null || fail "mkimage"
nbdcopy --flush "$T/v1.src" "$(uri_unix v1)" || fail "nbdcopy into v1"
truncate -s 1G "$T/v1.src"
qemu-io -f raw -c "write -P 0x21 0 1M" -c "write -P 0x22 5M 64k" -c "write -P 0x23 $((64 * MIB - 4096)) 4k" \
	-c flush "$(uri_tcp v2)" >/dev/null || fail "qemu-io into v2"
head -c $((3 * MIB)) /dev/urandom >"$T/v3.src"
nbdsh -u "$(uri_unix v3)" -c "
import nbd
buf = open('$T/v3.src', 'rb').read()
h.pwrite(buf[:1 << 20], 0, nbd.CMD_FLAG_FUA)
h.pwrite(buf[1 << 20:], 1 << 20)
h.flush()
" || fail "nbdsh into v3"
truncate -s 64M "$T/v2.src"   # what v2 must hold
/usr/bin/python3 - "$T/v2.src" <<'PY'
import sys
M = 1 << 20
with open(sys.argv[1], "r+b") as f:
    for off, n, b in ((0, M, 0x21), (5 * M, 64 << 10, 0x22), (64 * M - 4096, 4096, 0x23)):
        f.seek(off); f.write(bytes([b]) * n)
PY

snapshot() { # tag: copy every listed volume out to $T/TAG.VOL and save the catalog
	local tag=$1 v
	bal --json volume list >"$T/$tag.list.json" || fail "volume list ($tag)"
	for v in $(/usr/bin/python3 -c 'import json,sys; print(" ".join(v["name"] for v in json.load(open(sys.argv[1]))["volumes"]))' "$T/$tag.list.json"); do
		nbdcopy "$(uri_unix "$v")" "$T/$tag.$v" || fail "nbdcopy out $v ($tag)"
	done
}
same_catalog() { # tagA tagB
	/usr/bin/python3 - "$T/$1.list.json" "$T/$2.list.json" <<'PY' || fail "catalog changed across restart: $(cat "$T/$1.list.json") vs $(cat "$T/$2.list.json")"
import json, sys
a, b = (json.load(open(p))["volumes"] for p in sys.argv[1:3])
keys = ("name", "id", "size", "created_at", "allocated")
pick = lambda vs: [{k: v.get(k) for k in keys} for v in vs]
assert pick(a) == pick(b), "\n%r\n%r" % (pick(a), pick(b))
assert all(v.get("connections", 0) == 0 for v in b), b
print("catalog: %d volumes identical" % len(a))
PY
}

snapshot before
/usr/bin/python3 - "$T/before.list.json" <<'PY' || fail "catalog before restart: $(cat "$T/before.list.json")"
import json, sys
vs = json.load(open(sys.argv[1]))["volumes"]
assert [v["name"] for v in vs] == ["v1", "v2", "v3"], vs
assert [v["size"] for v in vs] == [1 << 30, 64 << 20, 3 << 20], vs
assert all(v.get("created_at") for v in vs), vs
PY
for v in v1 v2 v3; do cmp "$T/$v.src" "$T/before.$v" || fail "$v differs from what was written (before restart)"; done
note "written data ok"

bal_stop
[ ! -S "$SOCK" ] || note "NBD socket file left behind after stop"
bal_start
snapshot after
same_catalog before after
for v in v1 v2 v3; do cmp "$T/before.$v" "$T/after.$v" || fail "$v differs after restart"; done
note "restart 1 ok"

# Second cycle: write to v2 after the restart (flushed), delete v3, leave a
# write in v1 that the client never flushes, keep an idle client connected.
qemu-io -f raw -c "write -P 0x77 $((32 * MIB)) 1M" -c flush "$(uri_unix v2)" >/dev/null || fail "qemu-io v2 (2)"
/usr/bin/python3 - "$T/v2.src" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(32 << 20); f.write(b"\x77" * (1 << 20))
PY
bal volume delete v3 || fail "delete v3"
qemu-io -f raw -c "write -P 0x99 $((512 * MIB)) 64k" "$(uri_unix v1)" >/dev/null || fail "qemu-io v1 unflushed"
/usr/bin/python3 - "$T/v1.src" <<'PY'
import sys
with open(sys.argv[1], "r+b") as f:
    f.seek(512 << 20); f.write(b"\x99" * (64 << 10))
PY
nbdsh -u "$(uri_tcp v2)" -c 'import time; time.sleep(60)' >/dev/null 2>&1 &
idle=$!
on_exit "kill $idle 2>/dev/null"
sleep 0.5
kill -0 $idle 2>/dev/null || fail "idle client did not stay connected"
bal --json volume list >"$T/before2.list.json" || fail "volume list (2)"
(sleep 20; kill -KILL "$BAL_PID" 2>/dev/null) &
watchdog=$!
bal_stop   # must exit 0 promptly although a client is connected
kill $watchdog 2>/dev/null || true
kill $idle 2>/dev/null || true
bal_start
bal --json volume list >"$T/after2.list.json" || fail "volume list after restart 2"
same_catalog before2 after2
/usr/bin/python3 -c 'import json,sys; assert [v["name"] for v in json.load(open(sys.argv[1]))["volumes"]]==["v1","v2"]' \
	"$T/after2.list.json" || fail "deleted v3 came back: $(cat "$T/after2.list.json")"
for v in v1 v2; do
	nbdcopy "$(uri_unix $v)" "$T/final.$v" || fail "nbdcopy out $v (2)"
	cmp "$T/$v.src" "$T/final.$v" || fail "$v differs after restart 2 (v1: a write not flushed by the client must survive SIGTERM)"
done
nbdinfo "$(uri_unix v3)" >/dev/null 2>&1 && fail "deleted v3 is still exported"
note "restart 2 ok"
note "PASS"
