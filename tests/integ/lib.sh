# SPDX-License-Identifier: MIT
# Shared helpers for integration tests.  Source it, then call bal_start.
#
#   bal_start [ballastd args...]   start ballastd on a fresh data dir in $T
#   bal_restart [args...]          stop (SIGTERM) and start on the same dir
#   bal_stop                       SIGTERM; fails the test unless exit 0
#   bal_kill9                      SIGKILL, no cleanup
#   bal ARGS...                    the CLI against this daemon
#   fail MSG                       print and exit 1
#
# After bal_start: $T (scratch dir), $DATA, $SOCK (NBD Unix socket), $PORT
# (NBD TCP port on 127.0.0.1), $CTL (control socket), $BAL_PID, $LOG.
# nbd URIs: "nbd+unix:///VOL?socket=$SOCK" and "nbd://127.0.0.1:$PORT/VOL".
set -euo pipefail
export PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH   # Debian python3 has libnbd
TOP=${TOP:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${BUILD:-build}
BALLASTD=${BALLASTD:-$TOP/$BUILD/ballastd}
BALLAST=${BALLAST:-$TOP/$BUILD/ballast}
T=$(mktemp -d "${TMPDIR:-/tmp}/ballast-test.XXXXXX")
DATA=$T/data
SOCK=$T/nbd.sock
CTL=$T/ctl.sock
LOG=$T/ballastd.log
BAL_PID=
PORT=
_bal_cleanup_hooks=()

fail() { echo "FAIL: $*" >&2; [ -f "$LOG" ] && { echo "--- ballastd log (tail)" >&2; tail -n 30 "$LOG" >&2; }; exit 1; }
note() { echo "# $*"; }
on_exit() { _bal_cleanup_hooks+=("$1"); }

_bal_cleanup() {
	local rc=$?
	for h in "${_bal_cleanup_hooks[@]+"${_bal_cleanup_hooks[@]}"}"; do eval "$h" || true; done
	if [ -n "$BAL_PID" ] && kill -0 "$BAL_PID" 2>/dev/null; then
		kill -TERM "$BAL_PID" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$BAL_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$BAL_PID" 2>/dev/null || true
	fi
	if [ $rc -ne 0 ] && [ -f "$LOG" ]; then cp "$LOG" "${TOP}/${BUILD}/test-logs/$(basename "$0").ballastd.log" 2>/dev/null || true; fi
	rm -rf "$T"
	exit $rc
}
trap _bal_cleanup EXIT

free_port() {
	/usr/bin/python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

wait_for_socket() { # path timeout_s
	local i
	for i in $(seq 1 $(( ${2:-10} * 20 ))); do
		[ -S "$1" ] && return 0
		if [ -n "$BAL_PID" ] && ! kill -0 "$BAL_PID" 2>/dev/null; then return 1; fi
		sleep 0.05
	done
	return 1
}

bal_start() {
	[ -n "$PORT" ] || PORT=$(free_port)
	local ready0 i
	ready0=$(grep -c "ballastd ready" "$LOG" 2>/dev/null || true)
	"$BALLASTD" --data-dir "$DATA" --listen "unix:$SOCK" --listen "tcp:127.0.0.1:$PORT" \
		--control "$CTL" "$@" >>"$LOG" 2>&1 &
	BAL_PID=$!
	# Socket files may be stale ones from a killed daemon: wait for the log.
	for i in $(seq 1 400); do
		[ "$(grep -c "ballastd ready" "$LOG" 2>/dev/null || true)" -gt "${ready0:-0}" ] && return 0
		kill -0 "$BAL_PID" 2>/dev/null || fail "ballastd exited during start-up"
		sleep 0.05
	done
	fail "ballastd did not start within 20 s"
}

bal_stop() {
	[ -n "$BAL_PID" ] || return 0
	kill -TERM "$BAL_PID"
	local rc=0 i
	# A daemon that cannot drain is a failure, not a hang of the suite.
	for i in $(seq 1 300); do kill -0 "$BAL_PID" 2>/dev/null || break; sleep 0.1; done
	if kill -0 "$BAL_PID" 2>/dev/null; then
		kill -ABRT "$BAL_PID" 2>/dev/null || true
		BAL_PID=
		fail "ballastd still running 30 s after SIGTERM"
	fi
	wait "$BAL_PID" || rc=$?
	BAL_PID=
	[ $rc -eq 0 ] || fail "ballastd exited $rc after SIGTERM"
}

bal_kill9() {
	[ -n "$BAL_PID" ] || return 0
	kill -KILL "$BAL_PID"
	wait "$BAL_PID" 2>/dev/null || true
	BAL_PID=
}

bal_restart() { bal_stop; bal_start "$@"; }

bal() { "$BALLAST" --control "$CTL" "$@"; }

uri_unix() { echo "nbd+unix:///$1?socket=$SOCK"; }
uri_tcp() { echo "nbd://127.0.0.1:$PORT/$1"; }
