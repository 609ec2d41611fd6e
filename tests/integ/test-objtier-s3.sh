#!/bin/bash
# SPDX-License-Identifier: MIT
# The object tier on S3: s3rver behind a proxy that checks every request's
# Signature V4 and injects faults (tests/integ/helpers/s3.sh).
#   (1) a 1 GiB sparse volume with ~100 MiB of mixed data exported to
#       s3://BUCKET/ballast by a daemon that has the AWS_* settings in its
#       environment, restored by a second daemon that has none (the CLI
#       forwards them), byte-identical; the keys in the bucket as the aws
#       CLI sees them; the manifest fetched with `aws s3 cp` parses; no
#       request was refused for its signature;
#   (2) with 500s, 503s and dropped connections injected, an incremental
#       export still completes and verifies, and restores;
#   (3) --storage-class STANDARD_IA reaches the objects; list and delete
#       --from on S3.
. "$(dirname "$0")/lib.sh"
. "$(dirname "$0")/helpers/s3.sh"
PY=/usr/bin/python3
CHK="$PY $(dirname "$0")/objtier_check.py"
M=$((1024 * 1024))
CH=$((4 * M))
AWS_VARS="AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_REGION AWS_DEFAULT_REGION AWS_ENDPOINT_URL AWS_SESSION_TOKEN"
noaws() { local v args=(); for v in $AWS_VARS; do args+=(-u "$v"); done; env "${args[@]}" "$@"; }

D2=$T/d2
DATA2=$D2/data
SOCK2=$D2/nbd.sock
CTL2=$D2/ctl.sock
LOG2=$D2/ballastd.log
B2_PID=
mkdir -p "$D2"
b2_start() { # the second daemon, without any AWS_* in its environment
	local i v
	# exec: $! must be the daemon itself, not a shell around it.
	(
		for v in $AWS_VARS; do unset "$v"; done
		exec "$BALLASTD" --data-dir "$DATA2" --listen "unix:$SOCK2" --control "$CTL2" "$@"
	) >>"$LOG2" 2>&1 &
	B2_PID=$!
	for i in $(seq 1 400); do
		grep -q "ballastd ready" "$LOG2" 2>/dev/null && return 0
		kill -0 "$B2_PID" 2>/dev/null || fail "second ballastd exited during start-up: $(tail -n 5 "$LOG2")"
		sleep 0.05
	done
	fail "second ballastd did not start within 20 s"
}
on_exit '[ -n "$B2_PID" ] && { kill -TERM "$B2_PID" 2>/dev/null; sleep 1; kill -KILL "$B2_PID" 2>/dev/null; wait "$B2_PID" 2>/dev/null; }; [ -f "$LOG2" ] && cp "$LOG2" "$TOP/$BUILD/test-logs/test-objtier-s3.sh.ballastd2.log" 2>/dev/null'
bal2() { "$BALLAST" --control "$CTL2" "$@"; }
uri2() { echo "nbd+unix:///$1?socket=$SOCK2"; }

fail() {
	echo "FAIL: $*" >&2
	[ -f "$LOG" ] && { echo "--- ballastd log (tail)" >&2; tail -n 20 "$LOG" >&2; }
	[ -f "$LOG2" ] && { echo "--- second ballastd log (tail)" >&2; tail -n 20 "$LOG2" >&2; }
	[ -f "$T/s3proxy.log" ] && { echo "--- s3proxy log (tail)" >&2; tail -n 10 "$T/s3proxy.log" >&2; }
	exit 1
}
run() { # WANT_RC CMD...: stdout in $T/out, stderr in $T/err
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	[ "$rc" -eq "$want" ] || fail "exit $rc (want $want): $* | stdout: $(head -c 600 "$T/out") | stderr: $(cat "$T/err")"
	return 0
}
json() { # EXPR on the JSON document d in $T/out (or FILE)
	$PY -c 'import json, sys
d = json.load(open(sys.argv[1]))
M, CH = 1 << 20, 4 << 20
assert eval(sys.argv[2]), "%s is false for %r" % (sys.argv[2], d)' "${2:-$T/out}" "$1" ||
		fail "JSON check '$1' failed on: $(head -c 2000 "${2:-$T/out}")"
}
jget() { # EXPR [FILE]
	$PY -c 'import json, sys
d = json.load(open(sys.argv[1]))
v = eval(sys.argv[2])
print(json.dumps(v) if isinstance(v, (dict, list, bool)) or v is None else v)' "${2:-$T/out}" "$1" ||
		fail "JSON read '$1' failed on: $(head -c 2000 "${2:-$T/out}")"
}
wr() { $CHK write "$@" || fail "writing $1"; }
copy1() { rm -f "$2"; nbdcopy "$(uri_unix "$1")" "$2" || fail "nbdcopy out of $1 (first daemon)"; }
copy2() { rm -f "$2"; nbdcopy "$(uri2 "$1")" "$2" || fail "nbdcopy out of $1 (second daemon)"; }
same() { cmp -s "$1" "$2" || fail "$3: $(cmp "$1" "$2" 2>&1 | head -n 1)"; }
sigs_ok() { # WHAT: no request was refused for its signature
	local n
	n=$(s3_stat rejected_signature)
	[ "$n" -eq 0 ] || fail "$1: $n request(s) refused for their signature: $(grep -m 3 -i "signature" "$T/s3proxy.log")"
}

s3_start
PFX=s3://$S3_BUCKET/ballast
bal_start                 # AWS_* from the environment s3_start exported
b2_start

note "(1) export 1 GiB sparse with ~100 MiB of mixed data to $PFX"
run 0 bal volume create big --size 1G
wr "$(uri_unix big)" "$T/big.model" $((1024 * M)) \
	"r:0:$((32 * M)):1" "p:$((100 * M)):$((16 * M)):5a" "r:$((300 * M + 777)):$((20 * M)):2" \
	"Z:$((400 * M)):$CH" "r:$((512 * M)):$((12 * M)):3" "z:$((514 * M)):$M" \
	"p:$((700 * M + 5)):$((9 * M)):c3" "r:$((1024 * M - 4096)):4096:4" \
	"c:$((900 * M)):$CH:$((300 * M + 777))" "r:$((950 * M)):65536:5"
run 0 bal snapshot create big --name s1
copy1 big@s1 "$T/s1.img"
same "$T/big.model" "$T/s1.img" "big@s1 differs from what was written"
$CHK distinct "$T/s1.img" >"$T/d.json" || fail "distinct"
DIST1=$(jget "d['distinct']" "$T/d.json")
s3_reset_stats
run 0 bal --json snapshot export big@s1 --to "$PFX"
cp "$T/out" "$T/exp1.json"
ID1=$(jget "d['id']")
MK1=$(jget "d['manifest_key']")
json "d['url'] == '$PFX' and d['ref'] == '$PFX#$ID1' and d['size'] == 1024 * M and d['chunks'] == 256"
json "d['chunks_uploaded'] >= $DIST1 and d['parent'] in ('', None)"
sigs_ok "export to S3"
note "proxy counters after the export: $(s3_stats)"
[ "$(s3_stat forwarded)" -gt "$DIST1" ] || fail "the proxy forwarded $(s3_stat forwarded) requests for $DIST1 chunks"
s3_aws s3 ls --recursive "s3://$S3_BUCKET/ballast/" >"$T/ls" || fail "aws s3 ls"
$PY - "$T/ls" "$MK1" "$ID1" "$DIST1" <<'EOF' || fail "bucket listing: $(head -n 5 "$T/ls")"
import re, sys
keys = [l.split()[-1] for l in open(sys.argv[1]) if l.strip()]
mk, id1, dist = sys.argv[2], sys.argv[3], int(sys.argv[4])
man = [k for k in keys if k.startswith("ballast/manifests/")]
chk = [k for k in keys if k.startswith("ballast/chunks/")]
assert "ballast/" + mk in man, ("manifest key missing", mk, man)
assert re.match(r"^ballast/manifests/big/\d{4}/\d{2}/\d{2}/%s\.json$" % re.escape(id1), "ballast/" + mk), mk
bad = [k for k in chk if not re.match(r"^ballast/chunks/([0-9a-f]{2})/\1[0-9a-f]{62}$", k)]
assert not bad, ("malformed chunk keys", bad[:5])
assert len(chk) == dist, ("chunk objects", len(chk), "distinct chunks", dist)
assert len(keys) == len(man) + len(chk), ("other keys", set(keys) - set(man) - set(chk))
print("bucket: %d manifest(s), %d chunks" % (len(man), len(chk)))
EOF
s3_aws s3 cp "s3://$S3_BUCKET/ballast/$MK1" "$T/manifest.json" >/dev/null || fail "aws s3 cp of the manifest"
$CHK json-find "$T/manifest.json" "$ID1" || fail "the manifest fetched with aws s3 cp does not parse or lacks $ID1"
run 0 bal --json snapshot verify "$PFX#$ID1"
json "d['ok'] is True and d['chunks'] == $DIST1"

note "(1) restore on a daemon without AWS_* in its environment (the CLI forwards them)"
rc=0; noaws "$BALLAST" --control "$CTL2" volume create nocreds --from "$PFX#$ID1" >"$T/out" 2>"$T/err" || rc=$?
[ $rc -ne 0 ] || fail "restore from S3 with no credentials anywhere succeeded"
[ "$(wc -l <"$T/err")" -eq 1 ] || fail "restore without credentials: not one error line: $(cat "$T/err")"
note "without credentials: $(cat "$T/err")"
run 0 bal2 volume create rb --from "$PFX#$ID1"
copy2 rb "$T/rb.img"
same "$T/s1.img" "$T/rb.img" "restored rb (lazy) differs from big@s1"
run 0 bal2 volume wait rb
run 0 bal2 --json volume show rb
json "d['hydration']['active'] is False and d['hydration']['chunks_failed'] == 0 and d['hydration']['source'] == '$PFX#$ID1'"
copy2 rb "$T/rb.img"
same "$T/s1.img" "$T/rb.img" "restored rb (hydrated) differs from big@s1"
sigs_ok "restore from S3"

note "(2) incremental export with injected faults (10 % 500, 10 % 503, 5 % dropped)"
wr "$(uri_unix big)" "$T/big.model" $((1024 * M)) "r:$((64 * M + 12345)):$((32 * M)):7" "p:$((800 * M)):$M:99"
run 0 bal snapshot create big --name s2
copy1 big@s2 "$T/s2.img"
s3_reset_stats
s3_faults 0.1 0.1 0.05
run 0 timeout 300 "$BALLAST" --control "$CTL" --json snapshot export big@s2 --to "$PFX"
ID2=$(jget "d['id']")
json "d['parent'] == '$ID1' and d['chunks_unchanged'] > 0 and d['chunks_uploaded'] <= 11"
run 0 timeout 300 "$BALLAST" --control "$CTL" --json snapshot verify "$PFX#$ID2"
json "d['ok'] is True and d['problems'] == []"
s3_stats >"$T/stats.json"
s3_faults 0 0 0
note "proxy counters with faults: $(cat "$T/stats.json")"
json "d['injected_500'] + d['injected_503'] + d['dropped'] > 0 and d['rejected_signature'] == 0" "$T/stats.json"
run 0 bal2 volume create rb2 --from "$PFX#$ID2" --wait
copy2 rb2 "$T/rb2.img"
same "$T/s2.img" "$T/rb2.img" "restored rb2 differs from big@s2"

note "(3) storage class"
run 0 bal volume create ia --size 16M
wr "$(uri_unix ia)" "$T/ia.model" $((16 * M)) "r:0:$((8 * M)):21"
run 0 bal snapshot create ia --name s
IAPFX=s3://$S3_BUCKET/ia
rc=0; bal snapshot export ia@s --to "$IAPFX" --storage-class BOGUS >/dev/null 2>"$T/err" || rc=$?
[ $rc -ne 0 ] || fail "--storage-class BOGUS was accepted"
run 0 bal --json snapshot export ia@s --to "$IAPFX" --storage-class STANDARD_IA
IAID=$(jget "d['id']")
IAMK=$(jget "d['manifest_key']")
run 0 bal --json snapshot list --from "$IAPFX"
json "[(s['id'], s['storage_class']) for s in d['snapshots']] == [('$IAID', 'STANDARD_IA')]"
s3_aws s3 ls --recursive "s3://$S3_BUCKET/ia/chunks/" >"$T/ls" || fail "aws s3 ls ia"
CKS=$(awk '{ print $NF }' "$T/ls")
[ "$(echo "$CKS" | wc -w)" -eq 2 ] || fail "ia/chunks/ holds $(echo "$CKS" | wc -w) objects, want 2: $CKS"
# Does s3rver report the class at all?  A probe object put by the aws CLI.
echo probe >"$T/probe"
s3_aws s3 cp "$T/probe" "s3://$S3_BUCKET/probe" --storage-class STANDARD_IA >/dev/null || fail "aws s3 cp probe"
s3_aws s3api head-object --bucket "$S3_BUCKET" --key probe >"$T/head" || fail "head-object probe"
if $PY -c 'import json, sys; sys.exit(0 if json.load(open(sys.argv[1])).get("StorageClass") == "STANDARD_IA" else 1)' "$T/head"; then
	for k in $CKS; do
		s3_aws s3api head-object --bucket "$S3_BUCKET" --key "$k" >"$T/head" || fail "head-object $k"
		json "d.get('StorageClass') == 'STANDARD_IA'" "$T/head"
	done
	# The manifest may stay STANDARD (small, read by every list and restore).
	s3_aws s3api head-object --bucket "$S3_BUCKET" --key "ia/$IAMK" >"$T/head" || fail "head-object ia/$IAMK"
	note "head-object reports STANDARD_IA on both chunks; the manifest's class: $(jget "d.get('StorageClass', 'STANDARD (not reported)')" "$T/head")"
else
	note "SKIP (one assertion): s3rver does not report StorageClass in head-object even for an object the aws CLI put with STANDARD_IA ($(tr -d '\n' <"$T/head")); the class is checked in the snapshot list only"
fi
s3_aws s3 rm "s3://$S3_BUCKET/probe" >/dev/null || fail "aws s3 rm probe"
run 0 bal2 volume create ria --from "$IAPFX#$IAID" --wait
copy1 ia@s "$T/ias.img"
copy2 ria "$T/ria.img"
same "$T/ias.img" "$T/ria.img" "restored STANDARD_IA snapshot"
note "(3) list and delete --from on S3"
run 0 bal --json snapshot list --from "$PFX" --volume big
json "[s['id'] for s in d['snapshots']] == ['$ID1', '$ID2'] and d['snapshots'][1]['parent'] == '$ID1'"
run 0 bal --json snapshot delete --from "$IAPFX#$IAID"
json "d['chunks_deleted'] == 2 and d['chunks_kept'] == 0"
s3_aws s3 ls --recursive "s3://$S3_BUCKET/ia/" >"$T/ls" || true
[ ! -s "$T/ls" ] || fail "objects left under ia/ after delete: $(head -n 3 "$T/ls")"
run 0 bal --json snapshot list --from "$IAPFX"; json "d['snapshots'] == []"
sigs_ok "the whole run"
note "proxy counters at the end: $(s3_stats)"
bal_stop
note "all S3 object tier checks passed"
