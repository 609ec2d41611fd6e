#!/bin/bash
# SPDX-License-Identifier: MIT
# Real libnbd clients against ballastd over the Unix socket and TCP loopback:
# nbdinfo --list / --json / --map, and nbdcopy of a sparse 256 MiB image in
# and out (byte-identical, holes kept out of the data).
. "$(dirname "$0")/lib.sh"
H=$TOP/tests/integ/helpers
MIB=1048576
GIB=1073741824

bal_start
for v in vol mapvol copyu copyt; do
	bal volume create "$v" --size 1G || fail "volume create $v"
done

# nbdinfo --list names every volume, on both transports.
for base in "nbd+unix:///?socket=$SOCK" "nbd://127.0.0.1:$PORT/"; do
	nbdinfo --list --json "$base" >"$T/list.json" || fail "nbdinfo --list --json $base"
	/usr/bin/python3 - "$T/list.json" <<'PY' || fail "nbdinfo --list $base: $(cat "$T/list.json")"
import json, sys
doc = json.load(open(sys.argv[1]))
names = sorted(e["export-name"] for e in doc["exports"])
want = ["copyt", "copyu", "mapvol", "vol"]
assert names == want, "exports %r, want %r" % (names, want)
for e in doc["exports"]:
    assert e["export-size"] == 1 << 30, e
PY
	nbdinfo --list "$base" >"$T/list.txt" || fail "nbdinfo --list $base (text)"
	for v in vol mapvol copyu copyt; do
		grep -q "^export=\"$v\":" "$T/list.txt" || fail "nbdinfo --list $base: no $v in $(cat "$T/list.txt")"
	done
done
note "nbdinfo --list ok"

# nbdinfo --json: size, block sizes, flags.
for uri in "$(uri_unix vol)" "$(uri_tcp vol)"; do
	nbdinfo --json "$uri" >"$T/info.json" || fail "nbdinfo --json $uri"
	/usr/bin/python3 - "$T/info.json" <<'PY' || fail "nbdinfo --json $uri: $(cat "$T/info.json")"
import json, sys
doc = json.load(open(sys.argv[1]))
assert doc["protocol"] == "newstyle-fixed", doc["protocol"]
assert doc["structured"] is True, "structured replies not negotiated"
assert len(doc["exports"]) == 1
e = doc["exports"][0]
want = {
    "export-name": "vol", "export-size": 1073741824,
    "block_size_minimum": 1, "block_size_preferred": 4096,
    "block_size_maximum": 33554432, "is_read_only": False,
    "can_flush": True, "can_fua": True, "can_trim": True, "can_zero": True,
    "can_multi_conn": True, "can_cache": True, "can_fast_zero": True,
    "can_df": True,
}
bad = ["%s=%r (want %r)" % (k, e.get(k), v) for k, v in want.items() if e.get(k) != v]
assert not bad, "; ".join(bad)
assert "base:allocation" in e.get("contexts", []), e.get("contexts")
PY
done
note "nbdinfo --json ok"

# nbdinfo --map: a fresh volume is one hole; after writing 4 MiB at 8 MiB
# that range is data and the rest still hole,zero.
nbdinfo --map --json "$(uri_unix mapvol)" | /usr/bin/python3 "$H/mapcheck.py" $GIB "0:$GIB:hole" ||
	fail "fresh volume is not all hole"
nbdsh -u "$(uri_unix mapvol)" -c "
import os
buf = os.urandom(4 << 20)
h.pwrite(buf, 8 << 20)
h.flush()
assert h.pread(4 << 20, 8 << 20) == buf
" || fail "nbdsh write 4 MiB"
for uri in "$(uri_unix mapvol)" "$(uri_tcp mapvol)"; do
	nbdinfo --map --json "$uri" >"$T/map.json" || fail "nbdinfo --map $uri"
	/usr/bin/python3 "$H/mapcheck.py" $GIB "0:$((8 * MIB)):hole" "$((8 * MIB)):$((4 * MIB)):data" \
		"$((12 * MIB)):$((GIB - 12 * MIB)):hole" <"$T/map.json" || fail "nbdinfo --map $uri: $(cat "$T/map.json")"
done
note "nbdinfo --map ok"

# nbdcopy a 256 MiB image with random, hole and written-zero regions in
# (Unix: onto a fresh volume with --destination-is-zero, so holes are
# skipped; TCP: plain, holes become zero requests) and back out.
/usr/bin/python3 "$H/mkimage.py" "$T/src.img" 256 >"$T/src.holes" || fail "mkimage"
[ -s "$T/src.holes" ] || fail "source image has no holes (filesystem without SEEK_HOLE?)"
nbdcopy --destination-is-zero --flush "$T/src.img" "$(uri_unix copyu)" || fail "nbdcopy in (unix)"
nbdcopy --flush "$T/src.img" "$(uri_tcp copyt)" || fail "nbdcopy in (tcp)"
truncate -s 1G "$T/src.img"   # the volume's tail past the image reads as zeroes
for v in copyu copyt; do
	nbdcopy "$(uri_unix $v)" "$T/out.img" || fail "nbdcopy out $v"
	[ "$(stat -c %s "$T/out.img")" -eq $GIB ] || fail "nbdcopy out $v: size $(stat -c %s "$T/out.img")"
	cmp "$T/src.img" "$T/out.img" || fail "nbdcopy round trip through $v differs"
	rm -f "$T/out.img"
done
# Also read back over TCP, into a pipe (no extent skipping on the output).
nbdcopy "$(uri_tcp copyu)" - | cmp - "$T/src.img" || fail "nbdcopy out over TCP to a pipe differs"
note "nbdcopy round trips ok"

# Map of the copies: the random regions are data and past 256 MiB all is
# hole.  On the volume nbdcopy wrote with --destination-is-zero, nbdcopy sent
# nothing for the source's holes (shrunk to whole MiB, the cluster size being
# smaller) nor for its written-zero region (its zero detection), so those
# must not show as data.
rules=("0:$((4 * MIB)):data" "$((20 * MIB)):$MIB:data" "$((64 * MIB)):$((16 * MIB)):data"
	"$((200 * MIB)):$((4 * MIB)):data" "$((252 * MIB)):$((4 * MIB)):data"
	"$((256 * MIB)):$((GIB - 256 * MIB)):hole")
for v in copyu copyt; do
	nbdinfo --map --json "$(uri_unix $v)" >"$T/map.json" || fail "nbdinfo --map $v"
	/usr/bin/python3 "$H/mapcheck.py" $GIB "${rules[@]}" <"$T/map.json" || fail "map of $v: $(cat "$T/map.json")"
done
hole_rules=()
while read -r off len; do
	lo=$(( (off + MIB - 1) / MIB * MIB )) hi=$(( (off + len) / MIB * MIB ))
	[ $hi -gt $lo ] && hole_rules+=("$lo:$((hi - lo)):zero")
done <"$T/src.holes"
[ ${#hole_rules[@]} -ge 4 ] || fail "expected at least 4 holes in the source, got: $(cat "$T/src.holes")"
hole_rules+=("$((16 * MIB)):$((4 * MIB)):zero")
nbdinfo --map --json "$(uri_unix copyu)" >"$T/map.json"
/usr/bin/python3 "$H/mapcheck.py" $GIB "${hole_rules[@]}" <"$T/map.json" ||
	fail "source holes show as data on copyu: $(cat "$T/map.json")"
note "nbdinfo --map after nbdcopy ok"
note "PASS"
