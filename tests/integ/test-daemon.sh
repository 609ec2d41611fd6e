#!/bin/bash
# SPDX-License-Identifier: MIT
# Daemon hygiene: `make run`'s script starts and prints an attach line; the
# data-dir lock refuses a second daemon; a daemon killed with SIGKILL leaves
# stale sockets that the next start replaces; SIGTERM exits 0 with clients
# connected; the empty export name is refused unless --default-export.
. "$(dirname "$0")/lib.sh"

# tools/run.sh (what `make run` runs) on a scratch data dir.
RPORT=$(free_port)
( cd "$TOP" && BALLAST_DATA=$T/rundata BALLAST_PORT=$RPORT exec tools/run.sh ) >"$T/run.out" 2>&1 &
RUN_PID=$!
on_exit "kill -TERM $RUN_PID 2>/dev/null; wait $RUN_PID 2>/dev/null"
for _ in $(seq 1 100); do [ -S "$T/rundata/ballast.sock" ] && break; sleep 0.1; done
grep -q "nbd://127.0.0.1:$RPORT/" "$T/run.out" || fail "run.sh printed no attach line: $(cat "$T/run.out")"
"$BALLAST" --control "$T/rundata/ballast.sock" volume create r1 --size 16M >/dev/null
nbdinfo --size "nbd://127.0.0.1:$RPORT/r1" | grep -qx 16777216 || fail "run.sh daemon does not serve r1"
kill -TERM $RUN_PID; wait $RUN_PID || fail "run.sh daemon did not exit 0 on SIGTERM"
note "make run script: ok"

bal_start
bal volume create a --size 64M >/dev/null

# A second daemon on the same data dir is refused with a clear error.
set +e
timeout 10 "$BALLASTD" --data-dir "$DATA" --listen "unix:$T/other.sock" --control "$T/other-ctl.sock" 2>"$T/second.err"
rc=$?
set -e
[ $rc -ne 0 ] || fail "second daemon on the same data dir started"
grep -qi "in use by another ballastd" "$T/second.err" || fail "unclear error: $(cat "$T/second.err")"
nbdinfo --size "$(uri_unix a)" >/dev/null || fail "first daemon stopped serving"
note "data dir lock: ok"

# The empty export name is refused (no default export).
if nbdinfo "nbd+unix:///?socket=$SOCK" >"$T/empty.out" 2>&1; then fail "empty export name accepted"; fi
note "empty export name refused: $(head -1 "$T/empty.out")"

# SIGKILL leaves the sockets behind; the next start replaces them.
bal_kill9
[ -S "$SOCK" ] && [ -S "$CTL" ] || fail "expected stale socket files after SIGKILL"
bal_start --default-export a
nbdinfo --size "nbd+unix:///?socket=$SOCK" | grep -qx 67108864 || fail "--default-export not served"
note "stale sockets replaced, default export: ok"

# SIGTERM with a client connected and idle: exit 0, quickly.
/usr/bin/python3 - "$SOCK" <<'PY' &
import nbd, sys, time
h = nbd.NBD()
h.connect_unix(sys.argv[1])
h.pwrite(b"x" * 4096, 0)
time.sleep(30)
PY
CLIENT=$!
on_exit "kill $CLIENT 2>/dev/null"
sleep 1
start=$(date +%s)
bal_stop
[ $(( $(date +%s) - start )) -lt 15 ] || fail "shutdown took too long"
kill $CLIENT 2>/dev/null || true
grep -q "stopped cleanly" "$LOG" || fail "no clean-stop line in the log"
note "SIGTERM with a connected client: exit 0"
echo "test-daemon: all ok"
