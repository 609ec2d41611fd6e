#!/bin/bash
# SPDX-License-Identifier: MIT
# Crash test: SIGKILL ballastd at a random moment under a mixed load, restart
# it on the same data directory, and check every block of two volumes.
#
# Each round: crash_client.py writes tagged 4 KiB blocks to two volumes (two
# connections to the first, one to the second) with WRITE, WRITE+FUA, FLUSH,
# WRITE_ZEROES (with and without NO_HOLE), TRIM, and verifies its own reads;
# after a random delay ballastd gets SIGKILL; it is restarted and the checker
# reads both volumes whole.  It asserts (rules in crash_client.py):
#   - every block acknowledged durable (FUA reply, or a FLUSH answered after
#     the block's reply) holds that version or a later one that was sent;
#   - no block holds bytes never written to it: another volume's or another
#     block's data, a torn mix of two versions, garbage;
#   - a trimmed block reads as zeroes or as what it could hold without the
#     trim; a zeroed block or a block of a wholly trimmed cluster as zeroes;
#   - live reads during the load return the latest data, and no valid
#     request gets an error reply.
# One round in four kills the restarted daemon once more as soon as it is
# ready.  What a check reads (then flushed) is the next round's baseline, so
# damage done by a later recovery to older data is caught too.  After the last
# round: SIGTERM must exit 0 and a clean restart must return exactly that
# baseline.
#
# Knobs: CRASH_SEED (printed; rerun with it), CRASH_ROUNDS (20),
# CRASH_VOL_SIZE (64M).  CRASH_SERVER=nbdkit runs the same rounds against
# nbdkit's file plugin instead of ballastd, to check the harness itself
# (must pass); CRASH_SERVER=nbdkit-memory uses a server that keeps nothing
# across a kill and serves one disk under every name (must fail).
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
CLIENT=$TOP/tests/integ/crash_client.py
ROUNDS=${CRASH_ROUNDS:-20}
SEED=${CRASH_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
VOL_SIZE=${CRASH_VOL_SIZE:-64M}
SERVER=${CRASH_SERVER:-ballastd}
RANDOM=$SEED
TAG=$(( (SEED * 2654435761 + 1) % 4294967296 ))
note "seed $SEED (rerun with CRASH_SEED=$SEED), $ROUNDS rounds, server $SERVER"

"$PY" -c 'import nbd' || fail "need /usr/bin/python3 with the nbd module (python3-libnbd)"

crash_fail() { # round msg
	fail "round $1 (CRASH_SEED=$SEED): $2"
}

srv_start() {
	if [ "$SERVER" != ballastd ]; then
		rm -f "$SOCK"
		mkdir -p "$T/vols"
		if [ "$SERVER" = nbdkit-memory ]; then
			nbdkit -f -U "$SOCK" memory "$VOL_SIZE" >>"$LOG" 2>&1 &
		else
			nbdkit -f -U "$SOCK" file dir="$T/vols" >>"$LOG" 2>&1 &
		fi
		BAL_PID=$!
		wait_for_socket "$SOCK" 10 || fail "nbdkit did not start"
	else
		bal_start
	fi
}

srv_create() { # name
	if [ "$SERVER" != ballastd ]; then
		truncate -s "$VOL_SIZE" "$T/vols/$1"
	else
		bal volume create "$1" --size "$VOL_SIZE" >/dev/null || fail "volume create $1"
	fi
}

V0=$(uri_unix crash0)
V1=$(uri_unix crash1)
client() { # mode round extra-args...
	local mode=$1 r=$2
	shift 2
	"$PY" "$CLIENT" "$mode" --journal "$T/journal.$r" --round "$r" --tag "$TAG" "$@"
}

srv_start
srv_create crash0
srv_create crash1

start=$(date +%s)
for r in $(seq 1 "$ROUNDS"); do
	base=()
	[ "$r" -gt 1 ] && base=(--baseline-in "$T/base.$((r - 1))")
	rm -f "$T/ready"
	delay_ms=$(( 100 + RANDOM % 1900 ))
	timeout -k 5 60 "$PY" "$CLIENT" write --journal "$T/journal.$r" --round "$r" --tag "$TAG" \
		--seed $((SEED * 1000 + r)) --seconds 30 --ready "$T/ready" "${base[@]}" \
		--uri "$V0,$V0" --uri "$V1" >"$T/writer.$r.log" 2>&1 &
	wpid=$!
	for _ in $(seq 1 200); do
		[ -e "$T/ready" ] && break
		kill -0 $wpid 2>/dev/null || break
		sleep 0.05
	done
	[ -e "$T/ready" ] || { cat "$T/writer.$r.log" >&2; crash_fail "$r" "writer did not connect"; }
	sleep "$((delay_ms / 1000)).$(printf %03d $((delay_ms % 1000)))"
	kill -0 "$BAL_PID" 2>/dev/null || crash_fail "$r" "server died before the kill"
	kill -0 $wpid 2>/dev/null || { cat "$T/writer.$r.log" >&2; crash_fail "$r" "writer stopped before the kill"; }
	bal_kill9
	wrc=0
	wait $wpid || wrc=$?
	if [ $wrc -ne 0 ]; then
		cat "$T/writer.$r.log" >&2
		crash_fail "$r" "writer exited $wrc (3 = wrong data on a live read or an error reply)"
	fi
	srv_start
	again=
	if [ $((RANDOM % 4)) -eq 0 ]; then
		# Crash again right after recovery: recovery must be idempotent and
		# must not have served anything it had not made durable.
		bal_kill9
		srv_start
		again=" and again after the restart"
	fi
	if ! client check "$r" "${base[@]}" --baseline-out "$T/base.$r" --uri "$V0" --uri "$V1" \
		>"$T/check.$r.log" 2>&1; then
		cat "$T/check.$r.log" >&2
		crash_fail "$r" "check after SIGKILL at ${delay_ms} ms$again failed"
	fi
	note "round $r: killed at ${delay_ms} ms$again; $(tail -n 1 "$T/check.$r.log" | sed 's/^check: round [0-9]*: //')"
done

# Clean shutdown and restart: exactly the last baseline, nothing lost.
r=$((ROUNDS + 1))
if [ "$SERVER" != ballastd ]; then
	kill -TERM "$BAL_PID"; wait "$BAL_PID" || true; BAL_PID=
	srv_start
else
	bal_restart
fi
: >"$T/journal.$r"
client check "$r" --baseline-in "$T/base.$ROUNDS" --uri "$V0" --uri "$V1" >"$T/check.$r.log" 2>&1 ||
	{ cat "$T/check.$r.log" >&2; crash_fail "$r" "clean restart changed data"; }
[ "$SERVER" != ballastd ] || bal_stop
note "$ROUNDS rounds in $(( $(date +%s) - start ))s"
echo "ok"
