#!/bin/bash
# SPDX-License-Identifier: MIT
# Bad input on the NBD socket (test-badinput.py: malformed handshakes and
# options, out-of-range and malformed requests, half-sent requests, idle
# handshakes) against a daemon with 2 s handshake and request timeouts; a
# libnbd client must keep working after every case.  Then 200 idle
# connections (at the greeting, in transmission, a few with a half-sent
# WRITE) are held open while the daemon gets SIGTERM: it must exit 0 within
# 15 s.  Arguments go to test-badinput.py (e.g. --only pipelined).
. "$(dirname "$0")/lib.sh"
PY=$(dirname "$0")/test-badinput.py

# SIGTERM; the daemon must exit 0 within $1 seconds.  (bal_stop waits
# without a bound; a daemon wedged by a leaked connection would hang it.)
stop_within() {
	local start rc=0
	start=$(date +%s%N)
	kill -TERM "$BAL_PID"
	for _ in $(seq 1 $(( $1 * 10 ))); do
		kill -0 "$BAL_PID" 2>/dev/null || break
		sleep 0.1
	done
	kill -0 "$BAL_PID" 2>/dev/null && fail "ballastd still running $1 s after SIGTERM ($2)"
	wait "$BAL_PID" || rc=$?
	BAL_PID=
	[ "$rc" -eq 0 ] || fail "ballastd exited $rc after SIGTERM ($2)"
	note "ballastd exited 0, $(( ($(date +%s%N) - start) / 1000000 )) ms after SIGTERM ($2)"
}

bal_start --handshake-timeout 2 --request-timeout 2
bal volume create v --size 64M || fail "volume create v"
bal volume create w --size 32M || fail "volume create w"

rc=0
/usr/bin/python3 "$PY" --unix "$SOCK" --port "$PORT" --pid "$BAL_PID" \
	--export v --size 64M --export2 w --size2 32M "$@" || rc=$?
kill -0 "$BAL_PID" 2>/dev/null || fail "ballastd died during the bad-input cases"
stop_within 15 "after the bad-input cases"
[ "$rc" -eq 0 ] || fail "bad-input cases (see the FAIL lines above)"

# Shutdown with many idle connections.  A handshake timeout far past the
# 15 s bound, so that only the shutdown itself can end the connections at
# the greeting; a request timeout short enough that a daemon which lets a
# half-sent WRITE finish (or time out) still exits in time.
rm -f "$SOCK" "$CTL"   # stale sockets would pass bal_start's wait
bal_start --handshake-timeout 60 --request-timeout 5
mkfifo "$T/hold.in"
/usr/bin/python3 "$PY" --unix "$SOCK" --port "$PORT" --pid "$BAL_PID" \
	--export v --hold 200 <"$T/hold.in" >"$T/hold.out" 2>&1 &
HOLD=$!
exec 9>"$T/hold.in"
on_exit "exec 9>&-; kill $HOLD 2>/dev/null"
for _ in $(seq 1 300); do
	grep -q '^ready' "$T/hold.out" && break
	kill -0 "$HOLD" 2>/dev/null || { cat "$T/hold.out" >&2; fail "holder exited early"; }
	sleep 0.1
done
grep -q '^ready' "$T/hold.out" || { cat "$T/hold.out" >&2; fail "200 connections not open within 30 s"; }
note "$(head -n 1 "$T/hold.out")"

stop_within 15 "with 200 idle connections"

exec 9>&-
for _ in $(seq 1 100); do kill -0 "$HOLD" 2>/dev/null || break; sleep 0.1; done
wait "$HOLD" || fail "holder failed: $(cat "$T/hold.out")"
echo "ok   shutdown with 200 idle connections"
