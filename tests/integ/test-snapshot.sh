#!/bin/bash
# SPDX-License-Identifier: MIT
# Snapshots and clones with real clients: (a) a snapshot export VOL@SNAP
# keeps the bytes of the moment it was taken while qemu-io goes on writing
# (overwrites, partial clusters, discard, write -z), and a clone starts
# equal to its snapshot and diverges alone; (b) VOL@SNAP is read-only
# (EPERM from the server for write, trim and zero; nbdinfo says so);
# (c) `snapshot diff` lists exactly the clusters written between two
# snapshots, as JSON and as text; (d) the delete guards (clones, snapshots),
# flatten, and the space accounting of `volume show` / `snapshot show`;
# (e) a restart keeps snapshots, clones and their bytes.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
K=1024
M=$((1024 * 1024))
C=$((64 * K))    # the cluster size

run() { # WANT_RC CMD...: stdout in $T/out, stderr in $T/err
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" -eq "$want" ] || fail "exit $rc (want $want): $* | stdout: $(head -c 300 "$T/out") | stderr: $(cat "$T/err")"
	if [ "$want" -ne 0 ]; then
		[ "$(wc -l <"$T/err")" -eq 1 ] || fail "not one stderr line: $* | $(cat "$T/err")"
		[ ! -s "$T/out" ] || fail "stdout not empty on error: $* | $(cat "$T/out")"
	fi
	return 0
}
err_has() { grep -qF -- "$1" "$T/err" || fail "stderr lacks '$1': $(cat "$T/err")"; }
out_has() { grep -qF -- "$1" "$T/out" || fail "stdout lacks '$1': $(cat "$T/out")"; }
json() { # EXPR on the JSON document d in $T/out
	$PY -c 'import json, sys
d = json.load(open(sys.argv[1]))
M, K, C = 1 << 20, 1 << 10, 64 << 10
assert eval(sys.argv[2]), "%s is false for %r" % (sys.argv[2], d)' "$T/out" "$1" ||
		fail "JSON check '$1' failed on: $(cat "$T/out")"
}
copy_out() { nbdcopy "$(uri_unix "$1")" "$2" || fail "nbdcopy out of $1"; }
same() { cmp -s "$1" "$2" || fail "$3: $(cmp "$1" "$2" 2>&1 | head -n 1)"; }
qio() { # URI-NAME COMMANDS...: qemu-io on the export, each command a -c
	local name=$1 args=() c
	shift
	for c in "$@"; do args+=(-c "$c"); done
	qemu-io -f raw "${args[@]}" "$(uri_unix "$name")" >"$T/qio.log" 2>&1 ||
		fail "qemu-io on $name: $(tail -n 3 "$T/qio.log")"
	! grep -q "Pattern verification failed\|failed:" "$T/qio.log" ||
		fail "qemu-io on $name: $(grep -m 3 "verification failed\|failed:" "$T/qio.log")"
}

bal_start

note "(a) a snapshot keeps its bytes while the volume is rewritten"
bal volume create v --size 64M >/dev/null || fail "create v"
qio v "write -P 0x11 0 4M" "write -P 0x22 8M 1M" "write -P 0x33 20M 192k" \
	"write -P 0x34 $((30 * M + 4096)) 8k" flush
# The reference is read right before the snapshot, with no write between.
copy_out v "$T/ref.img"
run 0 bal snapshot create v --name s1; out_has "created snapshot 'v@s1'"
run 1 bal snapshot create v --name s1; err_has "snapshot 'v@s1' already exists"
run 1 bal snapshot create nope --name s1; err_has "volume 'nope' not found"
qio v "write -P 0x44 1M 512k" "write -P 0x55 $((8 * M + 1000)) 3000" "discard 2M 1M" \
	"write -z 20M 64k" "write -z $((20 * M + 70000)) 1000" "write -P 0x66 40M 128k" \
	"discard $((30 * M)) 64k" flush
copy_out "v@s1" "$T/s1.img"
same "$T/ref.img" "$T/s1.img" "v@s1 differs from the volume as it was at the snapshot"
qio v "read -P 0x44 1M 512k" "read -P 0 2M 1M" "read -P 0x11 3M 1M" "read -P 0x22 8M 1000" \
	"read -P 0x55 $((8 * M + 1000)) 3000" "read -P 0x22 $((8 * M + 4000)) 4000" \
	"read -P 0 20M 64k" "read -P 0x33 $((20 * M + 64 * K)) 4464" \
	"read -P 0 $((20 * M + 70000)) 1000" "read -P 0x66 40M 128k" "read -P 0 $((30 * M)) 64k"
# The snapshot served over TCP too, and by a second client (qemu-img).
qemu-img compare -f raw -F raw "$T/ref.img" "$(uri_tcp 'v@s1')" >/dev/null ||
	fail "qemu-img compare: v@s1 over TCP differs from the reference"

note "(a) a clone equals its snapshot, then diverges alone"
run 0 bal clone v@s1 c1; out_has "created volume 'c1' as a clone of 'v@s1'"
qemu-img compare -f raw -F raw "$(uri_unix 'v@s1')" "$(uri_unix c1)" >/dev/null ||
	fail "clone c1 differs from v@s1 right after the clone"
run 0 bal --json volume show c1
json "d['parent'] == 'v@s1' and d['size'] == 64 * M and d['snapshots'] == 0"
qio c1 "write -P 0x77 0 1M" "write -P 0x78 $((8 * M + 5)) 10" "discard 20M 4M" flush
qio c1 "read -P 0x77 0 1M" "read -P 0x22 $((8 * M)) 5" "read -P 0x78 $((8 * M + 5)) 10" \
	"read -P 0 20M 4M"
copy_out "v@s1" "$T/s1b.img"
same "$T/ref.img" "$T/s1b.img" "writes to clone c1 changed v@s1"
copy_out c1 "$T/c1.img"
rc=0; qemu-img compare -q -f raw -F raw "$T/ref.img" "$T/c1.img" || rc=$?
[ $rc -eq 1 ] || fail "qemu-img compare of c1 after its writes: exit $rc (want 1: differ)"
run 1 bal clone v@s1 c1; err_has "volume 'c1' already exists"
run 1 bal clone v@nope c2; err_has "snapshot 'v@nope' not found"
run 1 bal clone nope@s1 c2; err_has "volume 'nope' not found"

note "(b) VOL@SNAP is read-only: EPERM from the server"
nbdinfo --json "$(uri_unix 'v@s1')" >"$T/out" || fail "nbdinfo v@s1"
json "d['exports'][0]['is_read_only'] is True and d['exports'][0]['export-size'] == 64 * M"
nbdinfo --json "$(uri_unix v)" >"$T/out" || fail "nbdinfo v"
json "d['exports'][0]['is_read_only'] is False"
$PY - "$(uri_unix 'v@s1')" <<'EOF' || fail "writes to v@s1 were not refused with EPERM"
import errno, sys
import nbd
# Strict (libnbd may refuse by itself, EINVAL for trim/zero if the export
# does not advertise them), then not strict: the server must answer EPERM.
for strict in (True, False):
    h = nbd.NBD()
    if not strict:
        # Send the requests anyway: the server must refuse them itself.
        h.set_strict_mode(0)
    h.connect_uri(sys.argv[1])
    assert h.is_read_only(), "v@s1 not read-only"
    ops = (("pwrite", lambda: h.pwrite(b"\xaa" * 4096, 0)),
           ("pwrite-fua", lambda: h.pwrite(b"\xaa" * 512, 1 << 20, nbd.CMD_FLAG_FUA)),
           ("trim", lambda: h.trim(1 << 20, 0)),
           ("zero", lambda: h.zero(65536, 2 << 20)),
           ("zero-nohole", lambda: h.zero(65536, 0, nbd.CMD_FLAG_NO_HOLE)))
    for name, op in ops:
        try:
            op()
        except nbd.Error as e:
            # The binding gives the errno as a name ("EPERM") or a number.
            en = e.errno if isinstance(e.errno, int) else getattr(errno, str(e.errno), None)
            ok = (errno.EPERM,) if not strict or name.startswith("pwrite") else (errno.EPERM, errno.EINVAL)
            assert en in ok, "%s (strict=%s): errno %r, want EPERM: %s" % (name, strict, e.errno, e)
        else:
            raise AssertionError("%s (strict=%s) on v@s1 succeeded" % (name, strict))
    assert h.pread(4096, 0) == b"\x11" * 4096
    h.flush()
    h.shutdown()
print("read-only ok")
EOF
copy_out "v@s1" "$T/s1c.img"
same "$T/ref.img" "$T/s1c.img" "v@s1 changed after refused writes"

note "(c) snapshot diff lists exactly the clusters written between two snapshots"
bal volume create d --size 64M >/dev/null || fail "create d"
$PY - "$(uri_unix d)" "$T/diff" <<'EOF' || fail "writing d"
import json, os, random, sys
import nbd
C = 64 << 10
h = nbd.NBD()
h.connect_uri(sys.argv[1])
h.pwrite(os.urandom(1 << 20), 0)          # clusters 0..15 before the first snapshot
h.pwrite(os.urandom(C), 100 * C)
h.flush()
json.dump({"base": list(range(16)) + [100]}, open(sys.argv[2] + ".base", "w"))
EOF
run 0 bal snapshot create d --name a
$PY - "$(uri_unix d)" "$T/diff" <<'EOF' || fail "writing d"
import json, os, random, sys
import nbd
C = 64 << 10
seed = int.from_bytes(os.urandom(4), "little")
print("diff seed", seed)
rnd = random.Random(seed)
# 37 distinct clusters, some adjacent (they merge), a partial write inside
# one more, and the trim of a cluster the first snapshot holds.
cl = set(rnd.sample(range(200, 1024), 30)) | {500, 501, 502, 40, 41, 1023}
while len(cl) < 37:
    cl.add(rnd.randrange(200, 1024))
h = nbd.NBD()
h.connect_uri(sys.argv[1])
for c in sorted(cl):
    h.pwrite(os.urandom(C), c * C)
h.pwrite(b"\x01" * 100, 150 * C + 777)    # partial: cluster 150 changes
h.trim(C, 100 * C)                        # cluster 100 becomes a hole
h.flush()
json.dump({"seed": seed, "written": sorted(cl | {150}), "changed": sorted(cl | {150, 100})},
          open(sys.argv[2], "w"))
EOF
run 0 bal snapshot create d --name b
run 0 bal --json snapshot diff d@a d@b
cp "$T/out" "$T/diff.json"
$PY - "$T/diff" "$T/diff.json" "$T/diff.base" <<'EOF' || fail "snapshot diff d@a d@b is wrong (seed $(cat "$T/diff" | head -c 40))"
import json, sys
C = 64 << 10
want = json.load(open(sys.argv[1]))["changed"]
d = json.load(open(sys.argv[2]))
def merged(cls):
    out = []
    for c in sorted(cls):
        if out and out[-1][0] + out[-1][1] == c * C:
            out[-1][1] += C
        else:
            out.append([c * C, C])
    return out
got = [[r["offset"], r["length"]] for r in d["ranges"]]
assert got == merged(want), "ranges\n got %r\nwant %r" % (got, merged(want))
assert d["changed_bytes"] == len(want) * C, d["changed_bytes"]
assert d["volume"] == "d" and d["from"] == "a" and d["to"] == "b", d
print("diff: %d clusters in %d ranges" % (len(want), len(got)))
EOF
run 0 bal snapshot diff d@a d@b
$PY - "$T/out" "$T/diff.json" <<'EOF' || fail "snapshot diff text form: $(head -n 5 "$T/out")"
import json, sys
lines = open(sys.argv[1]).read().splitlines()
d = json.load(open(sys.argv[2]))
want = ["%d %d" % (r["offset"], r["length"]) for r in d["ranges"]]
assert lines[:-1] == want, (lines[:5], want[:5])
assert lines[-1].startswith("total: %d bytes" % d["changed_bytes"]), lines[-1]
assert ("in %d ranges" % len(want)) in lines[-1], lines[-1]
EOF
# From the volume's creation: everything b maps.
run 0 bal --json snapshot diff d@b
$PY - "$T/diff" "$T/out" "$T/diff.base" <<'EOF' || fail "snapshot diff d@b (from creation) is wrong"
import json, sys
C = 64 << 10
w = json.load(open(sys.argv[1]))
d = json.load(open(sys.argv[2]))
base = set(json.load(open(sys.argv[3]))["base"]) - {100}
want = sorted(base | set(w["written"]))
got = set()
for r in d["ranges"]:
    assert r["offset"] % C == 0 and r["length"] % C == 0, r
    got |= set(range(r["offset"] // C, (r["offset"] + r["length"]) // C))
assert sorted(got) == want, "got %r\nwant %r" % (sorted(got), want)
assert d["changed_bytes"] == len(want) * C and d["from"] is None
EOF
run 0 bal --json snapshot diff d@a
json "d['ranges'] == [{'offset': 0, 'length': 16 * C}, {'offset': 100 * C, 'length': C}]"
run 0 bal --json snapshot diff d@b d@b; json "d['ranges'] == [] and d['changed_bytes'] == 0"
run 1 bal snapshot diff d@b d@a; err_has "newer than"
run 1 bal snapshot diff d@a d@zz; err_has "snapshot 'd@zz' not found"
run 1 bal snapshot diff d@zz d@b; err_has "snapshot 'd@zz' not found"
run 2 bal snapshot diff d@a v@s1; err_has "different volumes"

note "snapshot list and show"
run 0 bal --json snapshot list
json "[(s['volume'], s['name']) for s in d['snapshots']] == [('d', 'a'), ('d', 'b'), ('v', 's1')]"
json "all(set(s) >= {'volume', 'name', 'id', 'epoch', 'size', 'allocated', 'exclusive', 'created_at', 'clones'} for s in d['snapshots'])"
json "d['snapshots'][0]['epoch'] < d['snapshots'][1]['epoch'] and d['snapshots'][2]['clones'] == 1"
run 0 bal --json snapshot list d; json "[s['name'] for s in d['snapshots']] == ['a', 'b']"
run 0 bal snapshot list
head -n1 "$T/out" | grep -qE '^NAME +SIZE +ALLOCATED +EXCLUSIVE +CLONES +CREATED$' || fail "snapshot list header: $(cat "$T/out")"
grep -qE '^v@s1 +64\.0 MiB ' "$T/out" || fail "snapshot list row v@s1: $(cat "$T/out")"
run 1 bal snapshot list nope; err_has "volume 'nope' not found"
run 0 bal snapshot show v@s1; out_has "name:        v@s1"; out_has "clones:      1"
run 0 bal --json snapshot show d@a
json "d['volume'] == 'd' and d['name'] == 'a' and d['size'] == 64 * M and d['allocated'] == 17 * C"
run 1 bal snapshot show d@zz; err_has "snapshot 'd@zz' not found"
run 2 bal snapshot show d; err_has "use VOL@SNAP"

note "(d) delete guards, flatten"
run 1 bal snapshot delete v@s1; err_has "snapshot 'v@s1' has 1 clone(s): flatten or delete them first"
run 1 bal volume delete v --recursive; err_has "snapshot 'v@s1' has 1 clone(s): flatten or delete them first"
run 1 bal volume delete v; err_has "volume 'v' has 1 snapshot (use --recursive)"
run 1 bal volume flatten v; err_has "volume 'v' is not a clone"
run 1 bal volume flatten nope; err_has "volume 'nope' not found"
copy_out c1 "$T/c1.img"
run 0 bal volume flatten c1; out_has "flattened volume 'c1'"
run 0 bal --json volume show c1; json "d['parent'] is None and d['shared'] == 0"
copy_out c1 "$T/c1b.img"
same "$T/c1.img" "$T/c1b.img" "c1 changed by flatten"
run 0 bal --json snapshot show v@s1; json "d['clones'] == 0"
run 0 bal snapshot delete v@s1; out_has "deleted snapshot 'v@s1'"
run 1 bal snapshot delete v@s1; err_has "snapshot 'v@s1' not found"
copy_out c1 "$T/c1c.img"
same "$T/c1.img" "$T/c1c.img" "c1 changed when its former parent snapshot was deleted"
! nbdinfo "$(uri_unix 'v@s1')" >/dev/null 2>&1 || fail "v@s1 still served after its delete"
bal snapshot create v --name t1 >/dev/null && bal snapshot create v --name t2 >/dev/null &&
	bal snapshot create v --name t3 >/dev/null || fail "snapshots t1..t3"
run 1 bal volume delete v; err_has "volume 'v' has 3 snapshots (use --recursive)"
run 0 bal volume delete v --recursive; out_has "deleted volume 'v' and its 3 snapshots"
run 0 bal --json snapshot list; json "[s['volume'] for s in d['snapshots']] == ['d', 'd']"
run 1 bal volume show v; err_has "volume 'v' not found"

note "(d) space accounting: allocated, exclusive, shared"
bal volume create e --size 16M >/dev/null || fail "create e"
qio e "write -P 0x01 0 4M" flush
run 0 bal --json volume show e
json "d['allocated'] == 4 * M and d['exclusive'] == 4 * M and d['shared'] == 0 and d['snapshots'] == 0 and d['parent'] is None"
run 0 bal --json snapshot create e --name x
json "d['allocated'] == 4 * M and d['exclusive'] == 0 and d['clones'] == 0 and d['size'] == 16 * M"
run 0 bal --json volume show e
json "d['allocated'] == 4 * M and d['exclusive'] == 0 and d['shared'] == 4 * M and d['snapshots'] == 1"
qio e "write -P 0x02 0 1M" flush
run 0 bal --json volume show e
json "d['allocated'] == 4 * M and d['exclusive'] == 1 * M and d['shared'] == 3 * M"
run 0 bal --json snapshot show e@x; json "d['allocated'] == 4 * M and d['exclusive'] == 1 * M"
run 0 bal --json clone e@x ce
json "d['name'] == 'ce' and d['parent'] == 'e@x' and d['allocated'] == 4 * M and d['exclusive'] == 0 and d['shared'] == 4 * M"
qio ce "write -P 0x03 3M 64k" flush
run 0 bal --json volume show ce
json "d['allocated'] == 4 * M and d['exclusive'] == C and d['shared'] == 4 * M - C"
run 0 bal store stats; out_has "pool_clusters_used"
run 0 bal --json store stats
json "set(d) >= {'pool_clusters_used', 'pool_clusters_free', 'pool_clusters_pending', 'map_log_entries'} and d['cluster_size'] == C"

note "(e) a restart keeps snapshots, clones and their bytes"
bal snapshot create ce --name y >/dev/null || fail "snapshot ce@y"
bal --json snapshot list >"$T/snaps.before" || fail "snapshot list"
bal --json volume list >"$T/vols.before" || fail "volume list"
for x in d d@a d@b e e@x ce ce@y c1; do copy_out "$x" "$T/before.$x"; done
bal_restart
bal --json snapshot list >"$T/snaps.after" || fail "snapshot list after restart"
bal --json volume list >"$T/vols.after" || fail "volume list after restart"
$PY - "$T" <<'EOF' || fail "catalog changed across the restart"
import json, sys
t = sys.argv[1]
a, b = (json.load(open(t + "/snaps." + w))["snapshots"] for w in ("before", "after"))
assert a == b, "\n%r\n%r" % (a, b)
keys = ("name", "id", "size", "allocated", "exclusive", "shared", "snapshots", "parent", "created_at")
a, b = ([{k: v.get(k) for k in keys} for v in json.load(open(t + "/vols." + w))["volumes"]] for w in ("before", "after"))
assert a == b, "\n%r\n%r" % (a, b)
EOF
for x in d d@a d@b e e@x ce ce@y c1; do
	copy_out "$x" "$T/after.$x"
	same "$T/before.$x" "$T/after.$x" "$x changed across the restart"
done
same "$T/c1.img" "$T/after.c1" "c1 changed across the restart"
run 0 bal --json snapshot diff d@a d@b
cmp -s "$T/out" "$T/diff.json" || fail "snapshot diff changed across the restart"
run 1 bal snapshot delete e@x; err_has "has 1 clone(s)"
run 1 bal volume flatten ce; err_has "volume 'ce' has snapshots that read through its parent"
run 1 bal volume delete ce; err_has "volume 'ce' has 1 snapshot (use --recursive)"
run 0 bal volume delete ce --recursive; out_has "deleted volume 'ce' and its 1 snapshot"
run 0 bal snapshot delete e@x
run 0 bal --json volume show e; json "d['exclusive'] == 4 * M and d['shared'] == 0 and d['snapshots'] == 0"
note "NBD_OPT_LIST names the snapshots too"
nbdinfo --list --json "nbd+unix:///?socket=$SOCK" >"$T/out" || fail "nbdinfo --list"
json "{'d', 'e', 'c1', 'd@a', 'd@b'} <= {e['export-name'] for e in d['exports']}"
json "all(e['is_read_only'] == ('@' in e['export-name']) for e in d['exports'])"
bal_stop
note "ok"
