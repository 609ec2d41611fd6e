#!/bin/bash
# SPDX-License-Identifier: MIT
# The `ballast` CLI and the control socket: every volume command in human
# and --json form, exit codes 0/1/2, client-side name and size checks,
# resize and delete guards, the socket's mode, $BALLAST_SOCKET, and raw
# JSON-RPC error codes (the daemon keeps serving after bad requests).
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3

# run WANT_RC CMD...: run, keep stdout/stderr in $T/out and $T/err.
run() {
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
# json EXPR: stdout is exactly one JSON document d and EXPR holds.
json() {
	$PY -c 'import json, sys
d = json.load(open(sys.argv[1]))
assert eval(sys.argv[2]), "%s is false for %r" % (sys.argv[2], d)' "$T/out" "$1" ||
		fail "JSON check '$1' failed on: $(cat "$T/out")"
}
# rpc LINE...: send raw lines on one connection, print every response line.
rpc() {
	$PY - "$CTL" "$@" <<'EOF'
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
for line in sys.argv[2:]:
    s.sendall(line.encode() + b"\n")
s.shutdown(socket.SHUT_WR)
f = s.makefile("rb")
sys.stdout.write(f.read().decode())
f.close()
s.close()
EOF
}
# rpc_code LINE CODE: the response to LINE is an error with CODE.
rpc_code() {
	rpc "$1" >"$T/out" || fail "rpc failed: $1"
	json "d['jsonrpc'] == '2.0' and d['error']['code'] == $2 and isinstance(d['error']['message'], str)"
}

bal_start

note "control socket is 0600"
[ "$(stat -c %a "$CTL")" = 600 ] || fail "control socket mode $(stat -c %a "$CTL")"

note "help and usage errors (exit 2)"
run 0 bal --help; out_has "volume create NAME --size SIZE"
run 0 bal help; out_has "usage: ballast"
run 0 bal volume list --help; out_has "usage: ballast"
run 2 bal; err_has "missing command"; err_has "--help"
run 2 bal frob; err_has "unknown command 'frob'"
run 2 bal volume; err_has "missing volume command"
run 2 bal volume frob; err_has "unknown volume command 'frob'"
run 2 bal --bogus volume list; err_has "unknown option '--bogus'"
run 2 bal volume list --bogus; err_has "unknown option '--bogus'"
run 2 bal volume create; err_has "missing volume name"
run 2 bal volume create v1; err_has "missing --size"
run 2 bal volume create v1 --size; err_has "--size needs a value"
run 2 bal volume show v1 extra; err_has "unexpected argument 'extra'"
run 2 bal volume create v1 --size 1G --force; err_has "--force does not apply"
run 2 bal volume show v1 --size 1G; err_has "--size does not apply"

note "bad names (exit 2, nothing sent)"
long=$(printf 'a%.0s' $(seq 65))
for n in '' 'a/b' 'x@y' "$long" '.hidden' '-dash' 'sp ace'; do
	run 2 bal volume create --size 1M -- "$n"; err_has "invalid volume name"
	run 2 bal volume show -- "$n"; err_has "invalid volume name"
	run 2 bal volume delete --force -- "$n"; err_has "invalid volume name"
done
run 0 bal volume create "$(printf 'b%.0s' $(seq 64))" --size 1M
run 0 bal volume delete "$(printf 'b%.0s' $(seq 64))"

note "bad sizes (exit 2)"
for s in abc 0 1X 100 99999999P -1 2E; do
	run 2 bal volume create v1 --size "$s"; err_has "invalid size '$s'"
done
run 2 bal volume create v1 --size 2048P; err_has "larger than the maximum"

note "object-tier command lines (exit 2)"
run 2 bal snapshot export; err_has "missing VOL@SNAP"
run 2 bal snapshot export v1; err_has "use VOL@SNAP"
run 2 bal snapshot export v1@s --to ''; err_has "invalid --to"
run 2 bal snapshot export v1@s --storage-class cold; err_has "invalid storage class 'cold'"
run 2 bal snapshot export v1@s --from file:///x; err_has "--from does not apply"
run 2 bal snapshot list --volume v1; err_has "--volume does not apply"
run 2 bal snapshot list --from; err_has "--from needs a value"
run 2 bal snapshot list --from file:///x v1; err_has "unexpected argument 'v1'"
for d in 2024-02-30 yesterday 2024-1-1 -5; do
	run 2 bal snapshot list --from file:///x --since="$d"; err_has "invalid --since"
done
run 2 bal snapshot verify; err_has "missing URL#ID"
run 2 bal snapshot verify nohash; err_has "invalid snapshot reference 'nohash'"
run 2 bal snapshot verify 'file:///x#'; err_has "invalid snapshot reference"
run 2 bal snapshot delete --from file:///x; err_has "invalid snapshot reference"
run 2 bal snapshot delete --from 'file:///x#id' v1@s; err_has "unexpected argument 'v1@s'"
run 2 bal volume create r1 --from 'file:///x#id' --size 1G; err_has "--size does not apply"
run 2 bal volume create r1 --size 1G --wait; err_has "--wait does not apply"
run 2 bal volume create r1 --from bad; err_has "invalid snapshot reference 'bad'"
run 2 bal volume wait; err_has "missing volume name"
run 2 bal volume wait r1 r2; err_has "unexpected argument 'r2'"

note "create"
run 0 bal volume create vm1 --size 1G; out_has "created volume 'vm1' (1.0 GiB)"
run 1 bal volume create vm1 --size 1G; err_has "ballast: volume 'vm1' already exists"
run 0 bal volume create vm2 --size=1536K --json
json "d['name'] == 'vm2' and d['size'] == 1572864 and d['allocated'] == 0 and d['connections'] == 0"
json "isinstance(d['id'], int) and d['created_at'].endswith('Z') and 'T' in d['created_at']"
run 0 bal --json volume create big --size 64T    # thin: costs nothing
json "d['size'] == 64 << 40"

note "list"
run 0 bal volume list
head -n1 "$T/out" | grep -qE '^NAME +SIZE +ALLOCATED +CREATED$' || fail "list header: $(cat "$T/out")"
[ "$(wc -l <"$T/out")" -eq 4 ] || fail "list rows: $(cat "$T/out")"
grep -qE '^vm1 +1\.0 GiB +0 B +[0-9]{4}-[0-9]{2}-[0-9]{2}T' "$T/out" || fail "list row vm1: $(cat "$T/out")"
grep -qE '^big +64\.0 TiB ' "$T/out" || fail "list row big: $(cat "$T/out")"
# Aligned: every row has its SIZE and CREATED columns where the header has them.
$PY - "$T/out" <<'EOF' || fail "list not aligned: $(cat "$T/out")"
import sys
rows = open(sys.argv[1]).read().splitlines()
h = rows[0]
for col in ("SIZE", "ALLOCATED", "CREATED"):
    i = h.index(col)
    for r in rows[1:]:
        assert r[i - 2:i] == "  " and r[i] != " ", (col, r)
EOF
run 0 bal volume list --json
json "[v['name'] for v in d['volumes']] == ['big', 'vm1', 'vm2']"
json "all(set(v) == {'name', 'id', 'size', 'allocated', 'exclusive', 'shared', 'snapshots', 'parent', 'created_at', 'connections', 'encrypted', 'key', 'locked', 'lock_reason', 'index_bytes'} for v in d['volumes'])"
json "all(v['index_bytes'] == 0 for v in d['volumes'])"    # nothing written yet
run 0 "$BALLAST" volume list --control "$CTL" --json    # global options after the command
json "len(d['volumes']) == 3"

note "show"
run 0 bal volume show vm1
out_has "name:        vm1"
out_has "size:        1.0 GiB (1073741824 bytes)"
out_has "allocated:   0 B (0 bytes)"
out_has "connections: 0"
grep -qE '^created: +[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8}Z$' "$T/out" || fail "show created: $(cat "$T/out")"
run 0 bal volume show vm1 --json
json "d['name'] == 'vm1' and d['size'] == 1 << 30"
run 1 bal volume show nope; err_has "ballast: volume 'nope' not found"
run 1 bal --json volume show nope    # stdout stays empty on error

note "resize: grow, shrink refused without --force"
run 0 bal volume resize vm1 --size 2G; out_has "resized volume 'vm1' to 2.0 GiB"
run 0 bal volume show vm1 --json; json "d['size'] == 2 << 30"
run 1 bal volume resize vm1 --size 1G
err_has "ballast: shrinking volume 'vm1' from 2G to 1G discards data (use --force)"
run 0 bal volume show vm1 --json; json "d['size'] == 2 << 30"
run 0 bal volume resize vm1 --size 1G --force --json; json "d['size'] == 1 << 30"
nbdsh -u "$(uri_unix vm1)" -c 'h.pwrite(b"x" * 65536, 0); h.flush()' || fail "write to vm1"
run 0 bal volume show vm1 --json; json "d['allocated'] == 65536 and d['index_bytes'] > 0"
run 0 bal volume show vm1; out_has "index:"
run 1 bal volume resize nope --size 1G; err_has "volume 'nope' not found"
run 2 bal volume resize vm1; err_has "missing --size"
run 2 bal volume resize vm1 --size 100; err_has "not a multiple of 512"

note "delete refused while an NBD client is connected"
nbdsh -u "$(uri_unix vm2)" -c "
import os, time
for _ in range(300):
    if os.path.exists('$T/release'):
        break
    time.sleep(0.05)
" >"$T/nbdsh.log" 2>&1 &
nbd_pid=$!
on_exit "touch '$T/release'; kill $nbd_pid 2>/dev/null"
for _ in $(seq 1 100); do
	run 0 bal --json volume show vm2
	$PY -c 'import json,sys; sys.exit(json.load(open(sys.argv[1]))["connections"] < 1)' "$T/out" && break
	sleep 0.05
done
json "d['connections'] == 1"
run 1 bal volume delete vm2; err_has "ballast: volume 'vm2' is in use by 1 connection (use --force)"
run 0 bal volume show vm2
run 0 bal volume delete vm2 --force; out_has "deleted volume 'vm2'"
touch "$T/release"
wait "$nbd_pid" || true
run 1 bal volume show vm2; err_has "volume 'vm2' not found"

note "delete"
run 0 bal volume delete big --json; json "d['name'] == 'big'"
run 1 bal volume delete big; err_has "ballast: volume 'big' not found"
run 0 bal volume delete vm1
run 0 bal volume list --json; json "d == {'volumes': []}"
run 0 bal volume list; [ "$(wc -l <"$T/out")" -eq 1 ] || fail "empty list: $(cat "$T/out")"

note "socket selection: \$BALLAST_SOCKET, default, --control"
BALLAST_SOCKET=$CTL run 0 "$BALLAST" volume list --json; json "d == {'volumes': []}"
BALLAST_SOCKET=$T/none.sock run 0 "$BALLAST" --control "$CTL" volume list    # --control wins
BALLAST_SOCKET=$T/none.sock run 1 "$BALLAST" volume list; err_has "cannot connect to $T/none.sock"
mkdir -p "$T/empty"
(cd "$T/empty" && BALLAST_SOCKET= run 1 "$BALLAST" volume list) || exit 1
err_has "./ballast-data/ballast.sock"
run 1 "$BALLAST" --control "$T/none.sock" volume list; err_has "is ballastd running?"

note "raw JSON-RPC: framing, methods and parameters"
rpc_code '{not json' -32700
rpc_code '[]' -32600
rpc_code '42' -32600
rpc_code '{"jsonrpc":"1.0","id":1,"method":"volume.list"}' -32600
rpc_code '{"jsonrpc":"2.0","id":1,"method":7}' -32600
rpc_code '{"jsonrpc":"2.0","id":1,"method":"volume.frob"}' -32601
json "d['id'] == 1 and 'volume.frob' in d['error']['message']"
rpc_code '{"jsonrpc":"2.0","id":2,"method":"volume.create","params":{"size":1048576}}' -32602
rpc_code '{"jsonrpc":"2.0","id":2,"method":"volume.create","params":{"name":"r1","size":"1G"}}' -32602
rpc_code '{"jsonrpc":"2.0","id":2,"method":"volume.create","params":{"name":"r1","size":100}}' -32602
rpc_code '{"jsonrpc":"2.0","id":2,"method":"volume.create","params":{"name":"a/b","size":512}}' -32602
rpc_code '{"jsonrpc":"2.0","id":2,"method":"volume.create","params":{"name":"r1","size":512,"bogus":1}}' -32602
rpc_code '{"jsonrpc":"2.0","id":2,"method":"volume.delete","params":{"name":"r1","force":"yes"}}' -32602
rpc_code '{"jsonrpc":"2.0","id":"x","method":"volume.show","params":{"name":"nope"}}' -32002
json "d['id'] == 'x' and d['error']['data'] == {'errno': 2, 'name': 'ENOENT'}"
# Several requests on one connection, a notification (no id) among them.
rpc '{"jsonrpc":"2.0","method":"volume.create","params":{"name":"n1","size":1048576}}' \
	'{"jsonrpc":"2.0","id":7,"method":"volume.show","params":{"name":"n1"}}' >"$T/out"
json "d['id'] == 7 and d['result']['name'] == 'n1' and d['result']['size'] == 1048576"
rpc '{"jsonrpc":"2.0","id":8,"method":"volume.create","params":{"name":"n1","size":512}}' >"$T/out"
json "d['error']['code'] == -32017 and d['error']['data']['name'] == 'EEXIST'"
# A line over the 1 MiB limit is refused and the connection closed.
$PY - "$CTL" >"$T/out" <<'EOF' || fail "long line"
import socket, sys
s = socket.socket(socket.AF_UNIX)
s.settimeout(10)
s.connect(sys.argv[1])
try:
    s.sendall(b'{"jsonrpc":"2.0","id":1,"method":"volume.list","params":{"x":"' + b"a" * (2 << 20))
except OSError:
    pass
f = s.makefile("rb")
sys.stdout.write(f.readline().decode())
EOF
json "d['error']['code'] == -32600"
run 0 bal volume show n1 --json; json "d['name'] == 'n1'"    # still serving
run 0 bal volume delete n1

grep -q "control: volume.create vm1" "$LOG" || fail "control actions not logged"

note "a second daemon does not take over a live control socket"
rc=0
timeout 30 "$BALLASTD" --data-dir "$T/data2" --listen "unix:$T/nbd2.sock" --control "$CTL" \
	>"$T/second.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "a second daemon started on a live control socket"
run 0 bal volume list

note "a stale socket left by a crashed daemon is replaced"
bal_kill9
[ -S "$CTL" ] || fail "no stale control socket after kill -9"
bal_start
for _ in $(seq 1 100); do bal volume list >/dev/null 2>&1 && break; sleep 0.1; done
run 0 bal volume list --json; json "d == {'volumes': []}"
[ "$(stat -c %a "$CTL")" = 600 ] || fail "control socket mode $(stat -c %a "$CTL") after restart"
bal_stop
[ ! -e "$CTL" ] || fail "control socket left behind after a clean stop"
note "ok"
