# SPDX-License-Identifier: MIT
# Shared by the bench-*.sh scripts (sourced, not run): checks the tools and
# the build, makes the scratch directory $W, and stops the daemon started
# into $BAL_PID (by that PID) and removes $W at exit.
# Usage: TOP=...; . tools/bench-lib.sh; bench_setup NAME TOOL...; then
# bench_start [BALLASTD-ARGS...].

# Defaults every bench script shares (sourced right after it sets TOP).
export PATH=/usr/bin:/usr/sbin:/bin:/sbin:$PATH
export LC_ALL=C
BUILD=${BUILD:-build}
BALLASTD=${BALLASTD:-$TOP/$BUILD/ballastd}
BALLAST=${BALLAST:-$TOP/$BUILD/ballast}
PY=/usr/bin/python3

log() { echo "bench: $*" >&2; }

bench_cleanup() {
	local rc=$?
	if [ -n "$BAL_PID" ]; then
		kill -TERM "$BAL_PID" 2>/dev/null || true
		for _ in $(seq 1 100); do kill -0 "$BAL_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$BAL_PID" 2>/dev/null || true
	fi
	rm -rf "$W"
	exit $rc
}

bench_setup() {
	local name=$1 tool
	shift
	for tool in "$@"; do
		command -v "$tool" >/dev/null || { echo "bench: $tool not found (run tools/deps.sh)" >&2; exit 1; }
	done
	[ -x "$BALLASTD" ] && [ -x "$BALLAST" ] || { echo "bench: build first (make)" >&2; exit 1; }
	mkdir -p "${BENCH_DIR:-/var/tmp}"
	W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/ballast-bench-$name.XXXXXX")
	SOCK=$W/nbd.sock
	CTL=$W/ctl.sock
	BAL_PID=
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}

# bench_start [BALLASTD-ARGS...]: start ballastd on $W/data, $SOCK and $CTL
# into $BAL_PID and wait until it answers on the control socket.
bench_start() {
	"$BALLASTD" --data-dir "$W/data" --listen "unix:$SOCK" --control "$CTL" \
		--log-level warn "$@" >"$W/ballastd.log" 2>&1 &
	BAL_PID=$!
	for _ in $(seq 1 400); do
		[ -S "$CTL" ] && bal volume list >/dev/null 2>&1 && return 0
		kill -0 "$BAL_PID" 2>/dev/null || break
		sleep 0.05
	done
	echo "bench: ballastd did not start:" >&2
	cat "$W/ballastd.log" >&2
	exit 1
}

bal() { "$BALLAST" --control "$CTL" "$@"; }
uri() { echo "nbd+unix:///$1?socket=$SOCK"; }
