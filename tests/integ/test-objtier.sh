#!/bin/bash
# SPDX-License-Identifier: MIT
# The object tier on a file:// store, with two daemons: snapshots exported
# by the first are restored by the second (its own data dir, the first's
# store as source).
#   (1) round trip of mixed data (random, a repeated pattern, written zeroes,
#       holes), lazy reads before hydration, reads after it without the
#       store, snapshot and export of the restored volume;
#   (2) incremental export uploads only the changed chunks;
#   (3) identical chunks are stored once (within a snapshot, across
#       snapshots and a clone);
#   (4) tampered, truncated and missing objects: verify names them, reads of
#       their ranges fail with EIO, the rest reads right, the log names
#       them; an edited manifest is refused;
#   (5) writes during hydration win over it;
#   (6) an export resumes after the CLI or the daemon is killed;
#   (7) encrypted volumes: no plaintext in the store, disjoint names across
#       keys, restore needs the master key;
#   (8) snapshot list --from filters, delete --from collects only
#       unreferenced chunks.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
CHK="$PY $(dirname "$0")/objtier_check.py"
M=$((1024 * 1024))
CH=$((4 * M))    # BAL_CHUNK_SIZE

# The second daemon.
D2=$T/d2
DATA2=$D2/data
SOCK2=$D2/nbd.sock
CTL2=$D2/ctl.sock
LOG2=$D2/ballastd.log
B2_PID=
mkdir -p "$D2"
b2_start() {
	local ready0 i
	ready0=$(grep -c "ballastd ready" "$LOG2" 2>/dev/null || true)
	"$BALLASTD" --data-dir "$DATA2" --listen "unix:$SOCK2" --control "$CTL2" "$@" >>"$LOG2" 2>&1 &
	B2_PID=$!
	for i in $(seq 1 400); do
		[ "$(grep -c "ballastd ready" "$LOG2" 2>/dev/null || true)" -gt "${ready0:-0}" ] && return 0
		kill -0 "$B2_PID" 2>/dev/null || fail "second ballastd exited during start-up: $(tail -n 5 "$LOG2")"
		sleep 0.05
	done
	fail "second ballastd did not start within 20 s"
}
b2_stop() {
	[ -n "$B2_PID" ] || return 0
	kill -TERM "$B2_PID" 2>/dev/null || true
	local rc=0 i
	for i in $(seq 1 300); do kill -0 "$B2_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$B2_PID" 2>/dev/null; then
		kill -KILL "$B2_PID" 2>/dev/null || true
		B2_PID=
		fail "second ballastd still running 30 s after SIGTERM"
	fi
	wait "$B2_PID" || rc=$?
	B2_PID=
	[ $rc -eq 0 ] || fail "second ballastd exited $rc after SIGTERM"
}
on_exit '[ -n "$B2_PID" ] && { kill -KILL "$B2_PID" 2>/dev/null; wait "$B2_PID" 2>/dev/null; }; [ -f "$LOG2" ] && cp "$LOG2" "$TOP/$BUILD/test-logs/test-objtier.sh.ballastd2.log" 2>/dev/null'
bal2() { "$BALLAST" --control "$CTL2" "$@"; }
uri2() { echo "nbd+unix:///$1?socket=$SOCK2"; }

fail() {
	echo "FAIL: $*" >&2
	[ -f "$LOG" ] && { echo "--- ballastd log (tail)" >&2; tail -n 20 "$LOG" >&2; }
	[ -f "$LOG2" ] && { echo "--- second ballastd log (tail)" >&2; tail -n 20 "$LOG2" >&2; }
	exit 1
}
run() { # WANT_RC CMD...: stdout in $T/out, stderr in $T/err; an error is one stderr line
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" -eq "$want" ] || fail "exit $rc (want $want): $* | stdout: $(head -c 600 "$T/out") | stderr: $(cat "$T/err")"
	if [ "$want" -ne 0 ]; then
		[ "$(wc -l <"$T/err")" -eq 1 ] || fail "not one stderr line: $* | $(cat "$T/err")"
		[ ! -s "$T/out" ] || fail "stdout not empty on error: $* | $(cat "$T/out")"
	fi
	return 0
}
run_rc() { # WANT_RC CMD...: only the exit code (verify reports problems on stdout)
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" -eq "$want" ] || fail "exit $rc (want $want): $* | stdout: $(head -c 600 "$T/out") | stderr: $(cat "$T/err")"
	return 0
}
err_has() { grep -qiF -- "$1" "$T/err" || fail "stderr lacks '$1': $(cat "$T/err")"; }
out_has() { grep -qF -- "$1" "$T/out" || fail "stdout lacks '$1': $(cat "$T/out")"; }
json() { # EXPR on the JSON document d in $T/out (or in FILE)
	$PY -c 'import json, sys
d = json.load(open(sys.argv[1]))
M, CH = 1 << 20, 4 << 20
assert eval(sys.argv[2]), "%s is false for %r" % (sys.argv[2], d)' "${2:-$T/out}" "$1" ||
		fail "JSON check '$1' failed on: $(head -c 2000 "${2:-$T/out}")"
}
jget() { # EXPR [FILE]: print a value of d
	$PY -c 'import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)' "${2:-$T/out}" "$1" ||
		fail "JSON read '$1' failed on: $(head -c 2000 "${2:-$T/out}")"
}
deferred=()    # failures reported at the end, so that every section runs
defer() { echo "FAIL (deferred): $*" >&2; deferred+=("$*"); }
wr() { # URI MODEL SIZE OP...
	$CHK write "$@" || fail "writing $1"
}
copy1() { rm -f "$2"; nbdcopy "$(uri_unix "$1")" "$2" || fail "nbdcopy out of $1 (first daemon)"; }
copy2() { rm -f "$2"; nbdcopy "$(uri2 "$1")" "$2" || fail "nbdcopy out of $1 (second daemon)"; }
same() { cmp -s "$1" "$2" || fail "$3: $(cmp "$1" "$2" 2>&1 | head -n 1)"; }
# export VOL@SNAP URL: --json result in $T/exp.json, ID in $ID
export_json() {
	run 0 bal --json snapshot export "$1" --to "$2"
	cp "$T/out" "$T/exp.json"
	ID=$(jget "d['id']")
	json "d['url'] == '$2' and d['ref'] == '$2#' + d['id'] and d['size'] > 0"
}
chunks() { # DIR: the chunk listing of a file:// store in $T/chunks.json
	$CHK chunks "$1" >"$T/chunks.json" || fail "listing chunks of $1"
	json "d['stray'] == []" "$T/chunks.json"
}
nchunks() { chunks "$1"; jget "d['count']" "$T/chunks.json"; }
hyd() { # VOL: volume show on the second daemon, in $T/show.json
	bal2 --json volume show "$1" >"$T/show.json" || fail "volume show $1 (second daemon)"
}

mkkey() { head -c 32 /dev/urandom >"$1"; chmod 600 "$1"; }
mkkey "$T/mk"
mkkey "$T/mkbad"

bal_start --master-key-file "$T/mk"
b2_start --master-key-file "$T/mk"
STORE=$DATA/objects
URL=file://$STORE

note "(1) round trip: 256 MiB of mixed data, default store, restore on a second daemon"
run 0 bal volume create v --size 256M
wr "$(uri_unix v)" "$T/v.model" $((256 * M)) \
	"r:0:$((8 * M)):1" "r:$((9 * M + 1234)):100000:2" "p:$((16 * M)):$((8 * M)):5a" \
	"Z:$((24 * M)):$CH" "r:$((32 * M)):$CH:3" "z:$((33 * M)):$M" "t:$((34 * M)):$M" \
	"p:$((60 * M)):$((3 * M)):c3" "r:$((40 * M + 4096)):65536:4" "r:$((77 * M)):65536:5" \
	"r:$((123 * M + 512)):70000:6" "r:$((200 * M)):$((2 * M)):7" "p:$((230 * M + 17)):999:e1" \
	"r:$((256 * M - 4096)):4096:9"
run 0 bal snapshot create v --name s1
copy1 v@s1 "$T/s1.img"
same "$T/v.model" "$T/s1.img" "v@s1 differs from what was written"
$CHK distinct "$T/s1.img" >"$T/d.json" || fail "distinct"
DIST1=$(jget "d['distinct']" "$T/d.json")
NZ1=$($PY -c 'import sys; sys.path.insert(0, sys.argv[2]); import objtier_check as o; print(len(o.nonzero_chunks(sys.argv[1])))' "$T/s1.img" "$(dirname "$0")")
note "v@s1: $NZ1 chunks with data, $DIST1 distinct"
run 0 bal --json snapshot export v@s1
cp "$T/out" "$T/exp1.json"
ID1=$(jget "d['id']")
json "d['url'] == '$URL' and d['ref'] == '$URL#$ID1' and d['size'] == 256 * M and d['chunks'] == 64"
json "d['parent'] in ('', None) and d['chunks_unchanged'] == 0"
json "d['chunks_empty'] == 64 - $NZ1 and d['chunks_read'] >= $NZ1"
json "d['chunks_uploaded'] + d['chunks_present'] == $NZ1 and d['chunks_uploaded'] >= $DIST1"
[ "$(jget "d['chunks_uploaded']")" -eq "$DIST1" ] || defer "export of v@s1 uploaded $(jget "d['chunks_uploaded']") chunks for $DIST1 distinct"
json "d['bytes_read'] >= $NZ1 * CH and 0 < d['bytes_uploaded'] <= $DIST1 * (CH + 4096)"
MKEY=$(jget "d['manifest_key']")
[[ "$MKEY" =~ ^manifests/v/[0-9]{4}/[0-9]{2}/[0-9]{2}/$ID1\.json$ ]] || fail "manifest key '$MKEY' is not manifests/v/YYYY/MM/DD/$ID1.json"
[[ "$MKEY" == manifests/v/$(date -u +%Y/%m/%d)/* ]] || [[ "$MKEY" == manifests/v/$(date -u -d '1 hour ago' +%Y/%m/%d)/* ]] ||
	fail "manifest key '$MKEY' is not dated today (UTC)"
[ -f "$STORE/$MKEY" ] || fail "no manifest file $STORE/$MKEY"
$CHK json-find "$STORE/$MKEY" "$ID1" || fail "the manifest does not parse or does not name $ID1"
[ "$(nchunks "$STORE")" -eq "$DIST1" ] || fail "the store holds $(jget "d['count']" "$T/chunks.json") chunks, want $DIST1"
run 0 bal snapshot verify "$URL#$ID1"; out_has "ok"
run 0 bal --json snapshot verify "$URL#$ID1"
json "d['ok'] is True and d['manifest_ok'] is True and d['problems'] == [] and d['chunks'] == $DIST1"

run 0 bal2 --json volume create rv --from "$URL#$ID1"
t0=$(date +%s%N)
copy2 rv "$T/rv.img"
note "lazy read of the whole volume: $(( ($(date +%s%N) - t0) / 1000000 )) ms"
same "$T/s1.img" "$T/rv.img" "restored rv (before hydration ends) differs from v@s1"
nbdinfo --json "$(uri2 rv)" >"$T/out" || fail "nbdinfo rv"
json "d['exports'][0]['export-size'] == 256 * M and d['exports'][0]['is_read_only'] is False"
run 0 bal2 volume wait rv
hyd rv
json "d['hydration']['active'] is False and d['hydration']['chunks_failed'] == 0" "$T/show.json"
json "d['hydration']['chunks_total'] == $NZ1 and d['hydration']['chunks_done'] == $NZ1" "$T/show.json"
json "d['hydration']['source'] == '$URL#$ID1' and d['hydration']['bytes_fetched'] > 0 and d['remote'] is False" "$T/show.json"
json "d['size'] == 256 * M" "$T/show.json"
copy2 rv "$T/rv2.img"
same "$T/s1.img" "$T/rv2.img" "restored rv after hydration differs from v@s1"
note "(1) after hydration the volume no longer needs the store"
mv "$STORE" "$STORE.away"
copy2 rv "$T/rv3.img"
same "$T/s1.img" "$T/rv3.img" "rv without its store differs from v@s1"
b2_stop
b2_start --master-key-file "$T/mk"
copy2 rv "$T/rv3.img"
same "$T/s1.img" "$T/rv3.img" "rv without its store, after a restart, differs from v@s1"
! grep -q "objects.away\|$STORE/" "$LOG2" || note "second daemon's log mentions the store after hydration: $(grep -m 2 "$STORE" "$LOG2")"
mv "$STORE.away" "$STORE"
note "(1) the hydrated volume takes snapshots and exports again (same bytes: nothing uploaded)"
run 0 bal2 snapshot create rv --name h
run 0 bal2 --json snapshot export rv@h --to "$URL"
json "d['chunks_uploaded'] == 0 and d['chunks_present'] + d['chunks_unchanged'] == $NZ1"
[ "$(nchunks "$STORE")" -eq "$DIST1" ] || fail "re-export of the restored volume added objects"

note "(2) incremental: 3 MiB changed across two chunks"
wr "$(uri_unix v)" "$T/v.model" $((256 * M)) "r:$((102 * M)):$((3 * M)):8"
run 0 bal snapshot create v --name s2
copy1 v@s2 "$T/s2.img"
same "$T/v.model" "$T/s2.img" "v@s2 differs from what was written"
run 0 bal --json snapshot export v@s2
cp "$T/out" "$T/exp2.json"
ID2=$(jget "d['id']")
json "d['parent'] == '$ID1' and d['chunks'] == 64 and d['chunks_unchanged'] > 0"
json "d['chunks_uploaded'] <= -(-3 * M // CH) + 1"
$PY -c 'import json, sys; d = json.load(open(sys.argv[1])); sys.exit(0 if d["chunks_read"] <= 3 else 1)' "$T/out" ||
	defer "incremental export read $(jget "d['chunks_read']") chunks for 2 changed ones"
[ "$ID2" != "$ID1" ] || fail "the second export has the first one's id"
$CHK distinct "$T/s1.img" "$T/s2.img" >"$T/d.json" || fail "distinct"
[ "$(nchunks "$STORE")" -eq "$(jget "d['distinct']" "$T/d.json")" ] ||
	fail "store holds $(jget "d['count']" "$T/chunks.json") chunks, want $(jget "d['distinct']" "$T/d.json")"
run 0 bal2 volume create rv2 --from "$URL#$ID2" --wait
copy2 rv2 "$T/rv2.img"
same "$T/s2.img" "$T/rv2.img" "restored rv2 differs from v@s2"

note "(3) dedup: identical chunks are stored once"
DD=file://$T/dedup
run 0 bal volume create d --size 64M
wr "$(uri_unix d)" "$T/d.model" $((64 * M)) "r:$((8 * M)):$CH:11" "c:$((28 * M)):$CH:$((8 * M))" \
	"r:$((12 * M)):$CH:12" "p:$((40 * M)):$CH:77"
run 0 bal snapshot create d --name a
copy1 d@a "$T/da.img"
export_json d@a "$DD"
json "d['chunks_uploaded'] + d['chunks_present'] == 4"
[ "$(jget "d['chunks_uploaded']")" -eq 3 ] || defer "dedup: chunks_uploaded $(jget "d['chunks_uploaded']") for 3 distinct chunks in one export"
[ "$(nchunks "$T/dedup")" -eq 3 ] || fail "dedup: store holds $(jget "d['count']" "$T/chunks.json") chunks for 3 distinct"
wr "$(uri_unix d)" "$T/d.model" $((64 * M)) "c:$((48 * M)):$CH:$((8 * M))" "c:$((52 * M)):$CH:$((12 * M))"
run 0 bal snapshot create d --name b
copy1 d@b "$T/db.img"
export_json d@b "$DD"
json "d['chunks_uploaded'] == 0 and d['parent'] != ''"
[ "$(nchunks "$T/dedup")" -eq 3 ] || fail "dedup: second snapshot added chunks ($(jget "d['count']" "$T/chunks.json"))"
run 0 bal clone d@b dc
cp "$T/db.img" "$T/dc.model"
wr "$(uri_unix dc)" "$T/dc.model" $((64 * M)) "c:$((20 * M)):$CH:$((40 * M))" "r:0:$CH:13"
run 0 bal snapshot create dc --name x
copy1 dc@x "$T/dcx.img"
same "$T/dc.model" "$T/dcx.img" "dc@x"
export_json dc@x "$DD"
json "d['chunks_uploaded'] == 1"
$CHK distinct "$T/da.img" "$T/db.img" "$T/dcx.img" >"$T/d.json" || fail "distinct"
want=$(jget "d['distinct']" "$T/d.json")
[ "$want" -eq 4 ] || fail "dedup: test images have $want distinct chunks, want 4"
[ "$(nchunks "$T/dedup")" -eq "$want" ] || fail "dedup: store holds $(jget "d['count']" "$T/chunks.json") chunks for $want distinct"
run 0 bal2 volume create rdc --from "$DD#$ID" --wait
copy2 rdc "$T/rdc.img"
same "$T/dcx.img" "$T/rdc.img" "restored clone snapshot dc@x"

note "(4) tamper: a flipped byte, a truncated object, a missing object"
TS=$T/tamper
run 0 bal volume create t --size 48M
wr "$(uri_unix t)" "$T/t.model" $((48 * M)) "r:0:$((48 * M)):21"
run 0 bal snapshot create t --name s
copy1 t@s "$T/ts.img"
export_json t@s "file://$TS"
TID=$ID
TMKEY=$(jget "d['manifest_key']")
$CHK map "$TS" "$T/ts.img" >"$T/map.json" || fail "mapping the objects to chunks: $(cat "$T/map.json")"
json "len(d) == 12 and sorted(i for v in d.values() for i in v) == list(range(12))" "$T/map.json"
read -r KFLIP IFLIP KTRUNC ITRUNC KDEL IDEL < <($PY -c 'import json, sys
d = json.load(open(sys.argv[1]))
by = sorted((v[0], k) for k, v in d.items())
pick = [by[1], by[6], by[10]]
print(" ".join("%s %d" % (k, i) for i, k in pick))' "$T/map.json")
note "flip $KFLIP (chunk $IFLIP), truncate $KTRUNC (chunk $ITRUNC), delete $KDEL (chunk $IDEL)"
$PY - "$TS/$KFLIP" <<'EOF' || fail "flipping a byte"
import os, sys
p = sys.argv[1]
n = os.path.getsize(p)
with open(p, "r+b") as f:
    f.seek(n // 2)
    b = f.read(1)
    f.seek(n // 2)
    f.write(bytes([b[0] ^ 0x40]))
EOF
sz=$(stat -c %s "$TS/$KTRUNC")
truncate -s $((sz / 2)) "$TS/$KTRUNC"
rm -f "$TS/$KDEL"
run_rc 1 bal snapshot verify "file://$TS#$TID"
for k in "$KFLIP" "$KTRUNC" "$KDEL"; do out_has "$k"; done
[ "$(grep -c "chunks/" "$T/out")" -eq 3 ] || fail "verify text names other objects too: $(cat "$T/out")"
run_rc 1 bal --json snapshot verify "file://$TS#$TID"
cp "$T/out" "$T/verify.json"
json "d['ok'] is False and d['manifest_ok'] is True and len(d['problems']) == 3 and d['chunks'] == 12"
json "{p['key']: p['index'] for p in d['problems']} == {'$KFLIP': $IFLIP, '$KTRUNC': $ITRUNC, '$KDEL': $IDEL}"
json "[p['what'] for p in d['problems'] if p['key'] == '$KDEL'][0].startswith('missing')"
json "'truncated' in [p['what'] for p in d['problems'] if p['key'] == '$KTRUNC'][0]"
what=$(jget "[p['what'] for p in d['problems'] if p['key'] == '$KTRUNC'][0]")
[[ "$what" == truncated* ]] || defer "verify: a truncated object is reported as '$what', not 'truncated (N of M bytes)' (tier.h)"
json "'integrity' in [p['what'] for p in d['problems'] if p['key'] == '$KFLIP'][0]"
run 0 bal2 volume create tv --from "file://$TS#$TID"
run 1 bal2 snapshot create tv --name early; err_has "being restored"
$CHK readcheck "$(uri2 tv)" "$T/ts.img" "$IFLIP" "$ITRUNC" "$IDEL" >"$T/rc.out" 2>&1 ||
	fail "reads of the restored tampered snapshot: $(cat "$T/rc.out")"
cat "$T/rc.out"
for k in "$KFLIP" "$KTRUNC" "$KDEL"; do
	grep -qF "$k" "$LOG2" || defer "the second daemon's log does not name $k: $(grep -m 1 "object missing\|chunk $IDEL of" "$LOG2")"
done
rc=0; timeout 60 "$BALLAST" --control "$CTL2" volume wait tv >"$T/out" 2>"$T/err" || rc=$?
[ $rc -ne 0 ] && [ $rc -ne 124 ] || fail "volume wait on a volume with failed chunks: exit $rc (want an error)"
hyd tv
json "d['hydration']['chunks_failed'] == 3 and d['hydration']['chunks_done'] == 9 and d['hydration']['last_error'] != ''" "$T/show.json"
json "d['remote'] is True" "$T/show.json"
run 1 bal2 snapshot create tv --name late
note "(4) an edited manifest is refused"
cp "$TS/$TMKEY" "$T/manifest.orig"
for what in name size; do
	cp "$T/manifest.orig" "$TS/$TMKEY"
	$CHK manifest-edit "$TS/$TMKEY" "$what" "$TS" >"$T/edit" || fail "editing the manifest ($what)"
	note "manifest edit: $(cat "$T/edit")"
	run_rc 1 bal --json snapshot verify "file://$TS#$TID"
	json "d['ok'] is False and d['manifest_ok'] is False and d['manifest_error'] != ''"
	run_rc 1 bal snapshot verify "file://$TS#$TID"
	grep -qi "manifest" "$T/out" "$T/err" || fail "verify of an edited manifest ($what) does not name it: $(cat "$T/out" "$T/err")"
	run 1 bal2 volume create tm --from "file://$TS#$TID"
	err_has "manifest"
	run 1 bal2 volume show tm
done
cp "$T/manifest.orig" "$TS/$TMKEY"
run_rc 1 bal --json snapshot verify "file://$TS#$TID"
json "d['manifest_ok'] is True and len(d['problems']) == 3"
run 1 bal snapshot verify "file://$TS#nosuchid"
run 1 bal2 volume create tm --from "file://$TS#nosuchid"
rc=0; bal2 volume delete tv >"$T/out" 2>"$T/err" || rc=$?
if [ $rc -ne 0 ]; then
	defer "volume delete of the tampered restore (no client connected): $(cat "$T/err")"
	run 0 bal2 volume delete tv --force
fi
run 1 bal2 volume show tv

note "(6) resume: SIGKILL of the CLI mid-export"
head -c $((256 * M)) /dev/urandom >"$T/r.img"
run 0 bal volume create r --size 256M
nbdcopy "$T/r.img" "$(uri_unix r)" || fail "filling r"
run 0 bal snapshot create r --name s
RS=$T/resume
# kill_when_started DIR PID: SIGKILL PID once DIR holds 2 chunks; prints
# "killed", "late" (PID ended first) or "timeout"
kill_when_started() {
	local i n
	for i in $(seq 1 1500); do
		n=$(find "$1/chunks" -type f -regex '.*/[0-9a-f]*' 2>/dev/null | wc -l)
		if [ "$n" -ge 2 ]; then kill -KILL "$2" 2>/dev/null && echo killed || echo late; return 0; fi
		kill -0 "$2" 2>/dev/null || { echo late; return 0; }
		sleep 0.02
	done
	echo timeout
}
# settle DIR: wait until the chunk count of DIR stays the same for 1 s
settle() {
	local i a b
	a=$(find "$1/chunks" -type f 2>/dev/null | wc -l)
	for i in $(seq 1 30); do
		sleep 1
		b=$(find "$1/chunks" -type f 2>/dev/null | wc -l)
		[ "$a" -eq "$b" ] && return 0
		a=$b
	done
	fail "chunks of $1 still growing 30 s after the kill"
}
bal --json snapshot export r@s --to "file://$RS" >"$T/k.out" 2>"$T/k.err" &
cli=$!
k=$(kill_when_started "$RS" "$cli")
wait "$cli" 2>/dev/null || true
[ "$k" = killed ] || fail "CLI kill mid-export: $k (late: the export ended first; timeout: no chunk within 30 s): $(cat "$T/k.err")"
settle "$RS"
n0=$(nchunks "$RS")
note "the CLI was killed with $n0 of 64 chunks in the store"
[ "$(find "$RS/manifests" -type f 2>/dev/null | wc -l)" -eq 0 ] || note "a manifest exists after the CLI was killed (the daemon finished the export)"
ok=0
for i in $(seq 1 30); do
	rc=0; bal --json snapshot export r@s --to "file://$RS" >"$T/out" 2>"$T/err" || rc=$?
	[ $rc -eq 0 ] && { ok=1; break; }
	grep -qi "busy\|in progress\|running" "$T/err" || fail "re-run export after the CLI kill: exit $rc: $(cat "$T/err")"
	sleep 1
done
[ $ok -eq 1 ] || fail "re-run export still refused after 30 s: $(cat "$T/err")"
RID=$(jget "d['id']")
json "d['chunks_present'] + d['chunks_uploaded'] + d['chunks_unchanged'] == 64 and d['chunks_empty'] == 0"
json "d['chunks_present'] >= $n0 or d['chunks_unchanged'] == 64"
[ "$(nchunks "$RS")" -eq 64 ] || fail "resumed store holds $(jget "d['count']" "$T/chunks.json") chunks, want 64"
run 0 bal snapshot verify "file://$RS#$RID"
note "(6) resume: SIGKILL of the daemon mid-export"
RS2=$T/resume2
bal --json snapshot export r@s --to "file://$RS2" >"$T/k.out" 2>"$T/k.err" &
cli=$!
k=$(kill_when_started "$RS2" "$BAL_PID")
[ "$k" = killed ] || fail "daemon kill mid-export: $k: $(cat "$T/k.err")"
wait "$BAL_PID" 2>/dev/null || true
BAL_PID=
rc=0; wait "$cli" || rc=$?
[ $rc -ne 0 ] || fail "the CLI said the export succeeded while the daemon was killed: $(cat "$T/k.out")"
$CHK chunks "$RS2" >"$T/chunks.json" || fail "listing $RS2"
n0=$(jget "d['count']" "$T/chunks.json")
note "temporary files of the killed daemon under chunks/: $(jget "d['stray']" "$T/chunks.json")"
note "the daemon was killed with $n0 of 64 chunks in the store"
bal_start --master-key-file "$T/mk"
run 0 bal --json snapshot export r@s --to "file://$RS2"
RID2=$(jget "d['id']")
json "d['chunks_present'] == $n0 and d['chunks_uploaded'] == 64 - $n0 and d['chunks_empty'] == 0"
$CHK chunks "$RS2" >"$T/chunks.json" || fail "listing $RS2"
[ "$(jget "d['count']" "$T/chunks.json")" -eq 64 ] || fail "resumed store holds $(jget "d['count']" "$T/chunks.json") chunks, want 64"
[ "$(jget "len(d['stray'])" "$T/chunks.json")" -eq 0 ] ||
	defer "the resumed export left the killed daemon's temporary files under chunks/ (nothing removes them): $(jget "d['stray']" "$T/chunks.json")"
run 0 bal snapshot verify "file://$RS2#$RID2"

note "(5) writes during hydration win over it"
cp "$T/r.img" "$T/w.model"
run 0 bal2 volume create wv --from "file://$RS#$RID"
hyd wv
act0=$(jget "d['hydration']['active']" "$T/show.json")
json "d['remote'] is True" "$T/show.json"
wr "$(uri2 wv)" "$T/w.model" $((256 * M)) \
	"p:$((5 * M + 333)):1000:a1" "p:0:65536:a2" "p:$((8 * M - 5000)):10000:a3" \
	"p:$((100 * M + 4096)):4096:a4" "Z:$((200 * M + 100)):3000" "t:$((150 * M)):$M" \
	"z:$((180 * M + 7)):1000" "p:$((256 * M - 1)):1:a5" "r:$((60 * M + 11)):$((5 * M)):41"
hyd wv
act1=$(jget "d['hydration']['active']" "$T/show.json")
note "hydration active when the volume was created: $act0, after the writes: $act1 ($(jget "d['hydration']['chunks_done']" "$T/show.json") of 64 chunks done)"
[ "$act1" = true ] || note "hydration had ended before the writes finished: the writes raced only part of it"
copy2 wv "$T/wv.img"
same "$T/w.model" "$T/wv.img" "wv (writes during hydration) read back before the end of hydration"
run 0 bal2 volume wait wv
copy2 wv "$T/wv.img"
same "$T/w.model" "$T/wv.img" "wv after hydration: hydration overwrote writes"
run 0 bal2 snapshot create wv --name after

note "(7) encrypted volumes"
head -c $M /dev/urandom >"$T/pat"
for v in e1 e2; do run 0 bal volume create $v --size 16M --encrypt; done
run 0 bal volume create p --size 16M
for v in e1 e2 p; do
	nbdcopy "$T/pat" "$(uri_unix $v)" || fail "writing $v"
	cp "$T/pat" "$T/$v.model"; truncate -s 16M "$T/$v.model"
	# Chunk 2 equals chunk 0 (stored once), chunk 3 is other data.
	wr "$(uri_unix $v)" "$T/$v.model" $((16 * M)) "f:$((8 * M)):$M:$T/pat:0" "r:$((12 * M)):$M:51"
	run 0 bal snapshot create $v --name s
	copy1 $v@s "$T/$v.s.img"
	same "$T/$v.model" "$T/$v.s.img" "$v@s differs from what was written"
done
cp "$T/e1.s.img" "$T/e1s.img"
export_json e1@s "file://$T/enc1"; EID1=$ID
export_json e2@s "file://$T/enc2"
export_json p@s "file://$T/encp"
for s in enc1 enc2; do
	$CHK plain "$T/$s" "$T/pat" >"$T/pl.json" || fail "plain scan"
	json "d['found'] == 0 and d['objects'] == 2" "$T/pl.json"
done
$CHK plain "$T/encp" "$T/pat" >"$T/pl.json" || fail "plain scan"
json "d['found'] == 1 and d['objects'] == 2" "$T/pl.json"    # control: the scan finds an unencrypted volume's data
chunks "$T/enc1"; cp "$T/chunks.json" "$T/c1.json"
chunks "$T/enc2"; cp "$T/chunks.json" "$T/c2.json"
$PY -c 'import json, sys
a, b = (set(json.load(open(f))["names"]) for f in sys.argv[1:3])
assert len(a) == 2 and len(b) == 2 and not (a & b), (a, b)' "$T/c1.json" "$T/c2.json" ||
	fail "two encrypted volumes with the same data share chunk names"
for k in "" "$T/mkbad"; do
	b2_stop
	if [ -n "$k" ]; then b2_start --master-key-file "$k"; else b2_start; fi
	run 1 bal2 volume create er --from "file://$T/enc1#$EID1"
	err_has "key"
	run 1 bal2 volume show er
done
b2_stop
b2_start --master-key-file "$T/mk"
run 0 bal2 --json volume create er --from "file://$T/enc1#$EID1"
copy2 er "$T/er.img"
same "$T/e1s.img" "$T/er.img" "restored encrypted volume"
run 0 bal2 volume wait er
copy2 er "$T/er.img"
same "$T/e1s.img" "$T/er.img" "restored encrypted volume after hydration"
run 0 bal2 --json volume show er; json "d['encrypted'] is True"

note "(8) snapshot list --from, snapshot delete --from"
LS=file://$T/lst
run 0 bal volume create la --size 32M
wr "$(uri_unix la)" "$T/la.model" $((32 * M)) "r:0:$((8 * M)):31"
run 0 bal snapshot create la --name 1
copy1 la@1 "$T/la1.img"
export_json la@1 "$LS"; L1=$ID
wr "$(uri_unix la)" "$T/la.model" $((32 * M)) "r:$((4 * M)):$CH:32" "r:$((16 * M)):$CH:33"
run 0 bal snapshot create la --name 2
copy1 la@2 "$T/la2.img"
export_json la@2 "$LS"; L2=$ID
json "d['parent'] == '$L1'"
run 0 bal volume create lb --size 16M
wr "$(uri_unix lb)" "$T/lb.model" $((16 * M)) "f:0:$CH:$T/la1.img:0" "r:$((8 * M)):$CH:35"
run 0 bal snapshot create lb --name 1
copy1 lb@1 "$T/lb1.img"
run 0 bal snapshot export lb@1 --to "$LS"
[ "$(wc -l <"$T/out")" -eq 1 ] || fail "export (text) prints more than one line: $(cat "$T/out")"
grep -qE "^$LS#[A-Za-z0-9._-]+\$" "$T/out" || fail "export (text) does not print URL#ID: $(cat "$T/out")"
L3=$(sed "s|^$LS#||" "$T/out")
run 0 bal --json snapshot list --from "$LS"
json "d['url'] == '$LS' and sorted(s['id'] for s in d['snapshots']) == sorted(['$L1', '$L2', '$L3'])"
# Oldest first (the three exports may fall within one second).
[ "$(jget "[s['id'] for s in d['snapshots']] == ['$L1', '$L2', '$L3']")" = true ] ||
	defer "snapshot list --from is not oldest first for exports made within one second: $(jget "[s['id'] for s in d['snapshots']]") (exported in the order $L1 $L2 $L3)"
$PY - "$T/out" <<EOF || fail "snapshot list --from entries: $(cat "$T/out")"
import json, sys
d = {s['id']: s for s in json.load(open(sys.argv[1]))['snapshots']}
M = 1 << 20
want = {'$L1': ('la', '1', None, 2, 32 * M), '$L2': ('la', '2', '$L1', 3, 32 * M),
        '$L3': ('lb', '1', None, 2, 16 * M)}
for i, (vol, snap, parent, chunks, size) in want.items():
    s = d[i]
    got = (s['volume'], s['snapshot'], s['parent'] or None, s['chunks'], s['size'])
    assert got == (vol, snap, parent, chunks, size), (i, got)
EOF
json "all(s['ref'] == '$LS#' + s['id'] and s['encrypted'] is False and s['key'].startswith('manifests/' + s['volume'] + '/') for s in d['snapshots'])"
json "all(isinstance(s['created'], int) and abs(s['created'] - $(date +%s)) < 3600 or isinstance(s['created'], str) and s['created'][:10] == '$(date -u +%F)' for s in d['snapshots'])"
for k in $(jget "' '.join(s['key'] for s in d['snapshots'])"); do [ -f "$T/lst/$k" ] || fail "listed key $k is not a file"; done
run 0 bal --json snapshot list --from "$LS" --volume la
json "sorted(s['id'] for s in d['snapshots']) == sorted(['$L1', '$L2'])"
run 0 bal --json snapshot list --from "$LS" --volume lb; json "[s['id'] for s in d['snapshots']] == ['$L3']"
run 0 bal --json snapshot list --from "$LS" --volume nope; json "d['snapshots'] == []"
run 0 bal --json snapshot list --from "$LS" --since "$(date -u +%F)"; json "len(d['snapshots']) == 3"
run 0 bal --json snapshot list --from "$LS" --since 2000-01-01 --volume la; json "len(d['snapshots']) == 2"
run 0 bal --json snapshot list --from "$LS" --since "$(date -u -d tomorrow +%F)"; json "d['snapshots'] == []"
rc=0; bal snapshot list --from "$LS" --since yesterday-ish >/dev/null 2>"$T/err" || rc=$?
[ $rc -ne 0 ] || fail "--since with a malformed date was accepted"
run 0 bal snapshot list --from "$LS"
for id in "$L1" "$L2" "$L3"; do out_has "$id"; done
mkdir -p "$T/empty-store"
run 0 bal --json snapshot list --from "file://$T/empty-store"; json "d['snapshots'] == []"
chunks "$T/lst"; before=$(jget "d['count']" "$T/chunks.json")
$CHK distinct "$T/la1.img" "$T/la2.img" "$T/lb1.img" >"$T/d.json" || fail "distinct"
[ "$before" -eq "$(jget "d['distinct']" "$T/d.json")" ] || fail "list store holds $before chunks, want $(jget "d['distinct']" "$T/d.json")"
$CHK only "$T/la1.img" -- "$T/la2.img" "$T/lb1.img" >"$T/only.json" || fail "only"
L1KEY=$(bal --json snapshot list --from "$LS" --volume la | $PY -c 'import json, sys; print([s["key"] for s in json.load(sys.stdin)["snapshots"] if s["id"] == sys.argv[1]][0])' "$L1")
run 0 bal --json snapshot delete --from "$LS#$L1"
json "d['chunks_deleted'] == $(jget "d['only']" "$T/only.json") and d['chunks_kept'] == $(jget "d['shared']" "$T/only.json")"
[ ! -e "$T/lst/$L1KEY" ] || fail "the manifest $L1KEY is still there after delete"
[ "$(nchunks "$T/lst")" -eq $((before - $(jget "d['only']" "$T/only.json"))) ] ||
	fail "after delete the store holds $(jget "d['count']" "$T/chunks.json") chunks, want $((before - $(jget "d['only']" "$T/only.json")))"
run 0 bal --json snapshot list --from "$LS"; json "sorted(s['id'] for s in d['snapshots']) == sorted(['$L2', '$L3'])"
run 0 bal snapshot verify "$LS#$L2"
run 0 bal snapshot verify "$LS#$L3"
rc=0; bal snapshot verify "$LS#$L1" >/dev/null 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "verify of a deleted snapshot succeeded"
run 1 bal snapshot delete --from "$LS#$L1"
run 0 bal2 volume create rla2 --from "$LS#$L2" --wait
copy2 rla2 "$T/rla2.img"
same "$T/la2.img" "$T/rla2.img" "la@2 restored after its parent's export was deleted"
$CHK only "$T/la2.img" -- "$T/lb1.img" >"$T/only.json" || fail "only"
run 0 bal --json snapshot delete --from "$LS#$L2"
json "d['chunks_deleted'] == $(jget "d['only']" "$T/only.json") and d['chunks_kept'] == $(jget "d['shared']" "$T/only.json")"
[ "$(nchunks "$T/lst")" -eq 2 ] || fail "after two deletes the store holds $(jget "d['count']" "$T/chunks.json") chunks, want lb@1's 2"
run 0 bal2 volume create rlb --from "$LS#$L3" --wait
copy2 rlb "$T/rlb.img"
same "$T/lb1.img" "$T/rlb.img" "lb@1 restored after the other snapshots were deleted"

b2_stop
bal_stop
for l in "$LOG" "$LOG2"; do
	! grep -q "AddressSanitizer\|runtime error\|LeakSanitizer" "$l" || fail "sanitizer report in $l: $(grep -m 3 "Sanitizer\|runtime error" "$l")"
done
[ ${#deferred[@]} -eq 0 ] || fail "${#deferred[@]} deferred failure(s): $(printf '%s; ' "${deferred[@]}")"
note "all object tier checks passed"
