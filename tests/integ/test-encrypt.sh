#!/bin/bash
# SPDX-License-Identifier: MIT
# Encryption at rest with real clients:
# (1) data written through NBD to encrypted volumes never reaches the pool
#     as plaintext, two volumes with the same data hold different
#     ciphertext, reads, snapshots, clones, unaligned writes, partial
#     write-zeroes and trims all read back right;
# (2) a wrong or missing master key locks the encrypted volumes (clear
#     error to the NBD client, the log and `volume show`) while plain ones
#     are served; the right key brings everything back; `key rotate` then a
#     restart with only the new key works, the old key is refused;
# (3) --key-provider: a good one works; one that fails, hangs or prints
#     garbage stops ballastd with a one-line error, without a crash;
# (4) customer-key volumes: locked after a restart, wrong key refused, right
#     key unlocks, `volume lock` locks again;
# (5) no key byte (raw, hex lower or upper) in the log, the database, the
#     pool or any CLI output.
. "$(dirname "$0")/lib.sh"
PY=/usr/bin/python3
CHK="$PY $(dirname "$0")/encrypt_check.py"
M=$((1024 * 1024))
CLI_ALL=$T/cli-all.log    # every CLI output, for (5)

run() { # WANT_RC CMD...: stdout in $T/out, stderr in $T/err
	local want=$1 rc=0
	shift
	"$@" >"$T/out" 2>"$T/err" || rc=$?
	cat "$T/out" "$T/err" >>"$CLI_ALL"
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
assert eval(sys.argv[2]), "%s is false for %r" % (sys.argv[2], d)' "$T/out" "$1" ||
		fail "JSON check '$1' failed on: $(cat "$T/out")"
}
scan() { # EXPR over s = the pool scan against the PLAIN files
	local expr=$1
	shift
	$CHK scan "$DATA/pool" "$@" >"$T/scan" || fail "pool scan failed"
	$PY -c 'import json, sys
s = json.load(open(sys.argv[1]))
assert eval(sys.argv[2]), "%s is false for %r" % (sys.argv[2], s)' "$T/scan" "$expr" ||
		fail "pool scan: '$expr' is false: $(cat "$T/scan")"
}
copy_in() { nbdcopy "$1" "$(uri_unix "$2")" || fail "nbdcopy into $2"; }
# The whole export must equal FILE (its size too).
same_as() { # EXPORT FILE WHAT
	rm -f "$T/rd.img"
	nbdcopy "$(uri_unix "$1")" "$T/rd.img" || fail "$3: nbdcopy out of $1 failed"
	cmp -s "$T/rd.img" "$2" || fail "$3: $1 differs: $(cmp "$T/rd.img" "$2" 2>&1 | head -n 1)"
}
qio() { # EXPORT COMMANDS...: qemu-io on the export, each command a -c
	local name=$1 args=() c
	shift
	for c in "$@"; do args+=(-c "$c"); done
	qemu-io -f raw "${args[@]}" "$(uri_unix "$name")" >"$T/qio.log" 2>&1 ||
		fail "qemu-io on $name: $(tail -n 3 "$T/qio.log")"
	! grep -q "Pattern verification failed\|failed:" "$T/qio.log" ||
		fail "qemu-io on $name: $(grep -m 3 "verification failed\|failed:" "$T/qio.log")"
}
# The NBD client must be refused, with the server's message naming the
# reason.  libnbd 1.14 shows the server's message only in its debug output.
refused() { # EXPORT REASON
	local rc=0
	LIBNBD_DEBUG=1 nbdinfo "$(uri_unix "$1")" >"$T/nbdinfo.out" 2>"$T/nbdinfo.err" || rc=$?
	[ "$rc" -ne 0 ] || fail "nbdinfo on locked export $1 succeeded"
	grep -q "server error message: volume '$1' is locked" "$T/nbdinfo.err" ||
		fail "nbdinfo on $1: no 'locked' message from the server: $(grep -i 'error' "$T/nbdinfo.err" | head -n 3)"
	grep -qF -- "$2" "$T/nbdinfo.err" ||
		fail "nbdinfo on $1: reason '$2' missing: $(grep 'server error message' "$T/nbdinfo.err")"
}
show_locked() { # VOL REASON: `volume show` (JSON and text) says locked with REASON
	run 0 bal --json volume show "$1"
	json "d['locked'] is True and d['encrypted'] is True and '$2' in d['lock_reason']"
	run 0 bal volume show "$1"
	grep -qE "^locked: +yes \(.*$2" "$T/out" || fail "volume show $1: not locked ($2): $(cat "$T/out")"
}
mkkey() { head -c "$2" /dev/urandom >"$1"; chmod 600 "$1"; }
deferred=()    # failures reported at the end, so that every section runs
defer() { echo "FAIL (deferred): $*" >&2; deferred+=("$*"); }

mkkey "$T/mk" 32
mkkey "$T/mkbad" 32
# The second master key in the 64-hex-digit form (with a newline).
(umask 077; head -c 32 /dev/urandom | od -An -tx1 -v | tr -d ' \n' >"$T/mk2"; echo >>"$T/mk2")
[ "$(wc -c <"$T/mk2")" -eq 65 ] || fail "mk2 is not 64 hex digits and a newline"
head -c 1M /dev/urandom >"$T/pat"

bal_start --master-key-file "$T/mk"

note "(1) volumes and their encryption flags"
run 0 bal volume create e1 --size 16M --encrypt; out_has "created volume 'e1' (16.0 MiB), encrypted with a service key"
run 0 bal --json volume create e2 --size 16M --encrypt
json "d['encrypted'] is True and d['key'] == 'service' and d['locked'] is False and d['lock_reason'] is None"
run 0 bal --json volume create p1 --size 16M --no-encrypt
json "d['encrypted'] is False and d['key'] == 'none' and d['locked'] is False"
run 0 bal --json volume create p0 --size 4M      # the daemon's default: not encrypted
json "d['encrypted'] is False and d['key'] == 'none'"
run 0 bal volume show e1
out_has "encryption:  AES-256-XTS"; out_has "key:         service"; out_has "locked:      no"
run 2 bal volume create x --size 16M --encrypt --no-encrypt; err_has "exclude each other"
run 2 bal volume create x --size 16M --customer-key; err_has "needs --key-file"
run 2 bal volume create x --size 16M --encrypt --key-file "$T/mk"; err_has "--key-file applies with --customer-key"
run 1 bal volume create x --size 6144 --encrypt; err_has "not a multiple of 4096 bytes"
run 1 bal volume unlock e1 --key-file "$T/mk"; err_has "does not use a customer key"

note "(1) no plaintext in the pool; equal data, different ciphertext"
copy_in "$T/pat" e1
copy_in "$T/pat" e2
scan "s['plain'] == 0" "$T/pat"
# Both volumes' data is there (256 nonzero blocks each) and no ciphertext
# block repeats, within a volume or across the two.
scan "s['nonzero'] >= 512 and s['dups'] == 0" "$T/pat"
# Control: the same scan finds a plain volume's bytes.
copy_in "$T/pat" p1
scan "s['plain'] >= 256" "$T/pat"

note "(1) reads, snapshot, clone"
cp "$T/pat" "$T/e1.img"; truncate -s 16M "$T/e1.img"
same_as e1 "$T/e1.img" "read back"
same_as e2 "$T/e1.img" "read back"
qemu-img compare -f raw -F raw "$T/e1.img" "$(uri_tcp e1)" >/dev/null ||
	fail "qemu-img compare over TCP: e1 differs"
run 0 bal snapshot create e1 --name s1
run 0 bal clone e1@s1 c1
run 0 bal --json volume show c1
json "d['encrypted'] is True and d['key'] == 'service' and d['parent'] == 'e1@s1'"
same_as "e1@s1" "$T/e1.img" "snapshot"
same_as c1 "$T/e1.img" "clone"

note "(1) unaligned writes, partial write-zeroes, trims"
cp "$T/e1.img" "$T/s1.img"
qio e1 "write -P 0xab 1000 5000" "write -P 0xcd $((5 * M + 1000)) 5000" \
	"write -P 0x5a $((M - 100)) 300" "write -z 300000 10000" "write -z $((2 * M)) 64k" \
	"discard $((9 * M)) 64k" "write -P 0x77 $((12 * M)) 256k" flush
$CHK model "$T/e1.img" "w:1000:5000:ab" "w:$((5 * M + 1000)):5000:cd" "w:$((M - 100)):300:5a" \
	"z:300000:10000" "z:$((2 * M)):65536" "z:$((9 * M)):65536" "w:$((12 * M)):262144:77" ||
	fail "model"
qio e1 "read -P 0xab 1000 5000" "read -P 0 $((5 * M)) 1000" "read -P 0xcd $((5 * M + 1000)) 5000" \
	"read -P 0 $((5 * M + 6000)) 2192" "read -P 0 300000 10000" "read -P 0 $((9 * M)) 64k"
same_as e1 "$T/e1.img" "after unaligned writes and zeroes"
same_as "e1@s1" "$T/s1.img" "snapshot after the volume changed"
same_as c1 "$T/s1.img" "clone after its origin changed"
# A trim inside a cluster reads back zeroes, as on a plain volume (the
# store zeroes partial clusters in place).  Checked on p1 first, so a
# difference is the encrypted path's.
cp "$T/pat" "$T/p1.img"; truncate -s 16M "$T/p1.img"
for v in p1 e1; do
	qio $v "discard $((700 * 1024 + 10)) 3000" "discard $((12 * M + 4096)) 100000" flush
done
$CHK model "$T/p1.img" "z:$((700 * 1024 + 10)):3000" "z:$((12 * M + 4096)):100000" || fail "model"
same_as p1 "$T/p1.img" "plain volume after partial trims"
$CHK model "$T/e1.img" "z:$((700 * 1024 + 10)):3000" "z:$((12 * M + 4096)):100000" || fail "model"
# Kept as a deferred failure so the other sections still run.
# Later checks then compare with what e1 actually holds.
rm -f "$T/rd.img"
nbdcopy "$(uri_unix e1)" "$T/rd.img" || fail "nbdcopy out of e1"
if ! cmp -s "$T/rd.img" "$T/e1.img"; then
	defer "partial trim on encrypted e1 does not read back zeroes: $(cmp "$T/rd.img" "$T/e1.img" 2>&1 | head -n 1)"
	cp "$T/rd.img" "$T/e1.img"
fi
# The unaligned writes went through read-modify-write: still no plaintext
# (blocks of the pattern itself, and of the same partial trims, are the
# unencrypted p1's, so they are left out).
scan "s['plain'] == 0" "$T/e1.img" --except "$T/pat" "$T/p1.img"

note "(2) wrong master key: encrypted volumes locked, plain ones served"
bal_restart --master-key-file "$T/mkbad"
refused e1 "wrong master key"
refused c1 "wrong master key"
grep -q "export 'e1' refused: volume 'e1' is locked: wrong master key" "$LOG" ||
	fail "the log does not say why e1 was refused"
show_locked e1 "wrong master key"
same_as p1 "$T/p1.img" "plain volume under a wrong master key"
run 1 bal volume create e3 --size 4M --encrypt
err_has "no master key: start ballastd with --master-key-file or --key-provider"
run 1 bal key rotate --new-master-key-file "$T/mk2"; err_has "cannot rotate"
run 0 bal --json volume create p2 --size 4M; json "d['encrypted'] is False"

note "(2) no master key at all"
bal_restart
refused e2 "master key"
run 0 bal --json volume show e2; json "d['locked'] is True and d['lock_reason']"
run 1 bal volume create e3 --size 4M --encrypt
err_has "no master key: start ballastd with --master-key-file or --key-provider"
same_as p1 "$T/p1.img" "plain volume without a master key"

note "(2) the right key: everything back"
bal_restart --master-key-file "$T/mk"
same_as e1 "$T/e1.img" "e1 with the right key"
same_as e2 "$T/s1.img" "e2 with the right key"
same_as "e1@s1" "$T/s1.img" "e1@s1 with the right key"
same_as c1 "$T/s1.img" "c1 with the right key"
run 0 bal --json volume show e1; json "d['locked'] is False and d['lock_reason'] is None"

note "(2) rotation"
chmod 644 "$T/mk2"
run 1 bal key rotate --new-master-key-file "$T/mk2"; err_has "chmod 600"
chmod 600 "$T/mk2"
run 2 bal key rotate; err_has "give one of"
run 2 bal key rotate --new-master-key-file "$T/mk2" --new-key-provider "cat $T/mk2"
run 1 bal key rotate --new-key-provider "exit 3"; err_has "new key provider"
# A relative path: the CLI sends it made absolute.
(cd "$T" && run 0 bal key rotate --new-master-key-file mk2) || fail "rotate"
out_has "rotated the master key: 3 volume keys re-wrapped"
same_as e1 "$T/e1.img" "e1 right after the rotation"
run 0 bal volume create e4 --size 4M --encrypt
copy_in "$T/pat" e4    # 1 MiB into 4 MiB
cp "$T/pat" "$T/e4.img"; truncate -s 4M "$T/e4.img"
bal_restart --master-key-file "$T/mk2"
same_as e1 "$T/e1.img" "e1 under the new master key"
same_as e2 "$T/s1.img" "e2 under the new master key"
same_as c1 "$T/s1.img" "c1 under the new master key"
same_as e4 "$T/e4.img" "a volume made after the rotation"
bal_restart --master-key-file "$T/mk"
refused e1 "wrong master key"
refused e4 "wrong master key"

note "(2) --encrypt-by-default"
bal_restart --master-key-file "$T/mk2" --encrypt-by-default
run 0 bal --json volume create d1 --size 4M; json "d['encrypted'] is True and d['key'] == 'service'"
run 0 bal --json volume create d2 --size 4M --no-encrypt; json "d['encrypted'] is False"
run 1 bal volume create d3 --size 6144; err_has "not a multiple of 4096 bytes"

note "(3) key provider"
bal_stop
od -An -tx1 -v "$T/mk" | tr -d ' \n' >"$T/mk.hex"    # the old key, for a refusal
bal_start --key-provider "cat $T/mk2"
same_as e1 "$T/e1.img" "e1 with the key from a provider"
bal_restart --key-provider "cat $T/mk.hex"
refused e1 "wrong master key"
bal_stop
provider_fails() { # CMD WANT_MSG: ballastd must exit 1 with one error line
	local rc=0 start=$SECONDS
	timeout -k 5 40 "$BALLASTD" --data-dir "$DATA" --listen "unix:$T/p.sock" \
		--control "$T/p.ctl" --key-provider "$1" >"$T/p.out" 2>"$T/p.err" || rc=$?
	cat "$T/p.out" "$T/p.err" >>"$LOG"
	[ "$rc" -eq 1 ] || fail "provider '$1': ballastd exit $rc (want 1): $(cat "$T/p.err")"
	[ $((SECONDS - start)) -lt 30 ] || fail "provider '$1': took $((SECONDS - start)) s"
	! grep -q "AddressSanitizer\|runtime error\|LeakSanitizer" "$T/p.err" ||
		fail "provider '$1': sanitizer report: $(head -n 5 "$T/p.err")"
	[ "$(grep -c 'error:' "$T/p.err")" -eq 1 ] || defer "provider '$1': not one error line: $(tr '\n' ' ' <"$T/p.err")"
	grep -q "error: key provider.*$2" "$T/p.err" || fail "provider '$1': no '$2': $(cat "$T/p.err")"
	[ ! -S "$T/p.ctl" ] || fail "provider '$1': control socket created"
}
provider_fails "exit 1" ""
provider_fails "sleep 600" "timed out"
provider_fails "echo zz-not-a-key-zz" "not 64 hex digits"
! grep -q "zz-not-a-key-zz" "$T/p.err" || fail "the provider's output was echoed"
pgrep -f "^sleep 600$" >/dev/null && fail "the hanging provider was not killed"

note "(4) customer-key volumes"
bal_start --master-key-file "$T/mk2"
mkkey "$T/ck" 32
mkkey "$T/ck64" 64
mkkey "$T/ckbad" 32
(cd "$T" && run 0 bal --json volume create cv --size 8M --customer-key --key-file ck) || fail "create cv"
json "d['encrypted'] is True and d['key'] == 'customer' and d['locked'] is False"
run 0 bal volume create cv64 --size 8M --encrypt --customer-key --key-file "$T/ck64"
out_has "encrypted with a customer key"
head -c 1M /dev/urandom >"$T/pat2"
# Snapshots' redirects left legitimate copies of ciphertext in the pool:
# the two new volumes, same data under different keys, must add none.
scan "True" "$T/pat2"
read -r nz0 dup0 < <($PY -c 'import json, sys; s = json.load(open(sys.argv[1])); print(s["nonzero"], s["dups"])' "$T/scan")
copy_in "$T/pat2" cv
copy_in "$T/pat2" cv64
cp "$T/pat2" "$T/cv.img"; truncate -s 8M "$T/cv.img"
same_as cv "$T/cv.img" "customer-key volume"
scan "s['plain'] == 0 and s['dups'] == $dup0 and s['nonzero'] >= $nz0 + 512" "$T/pat2"
bal_restart --master-key-file "$T/mk2"
refused cv "customer key"
refused cv64 "customer key"
show_locked cv "customer key"
run 1 bal volume unlock cv --key-file "$T/ckbad"; err_has "volume 'cv': wrong customer key"
run 1 bal volume unlock cv --key-file "$T/ck64"; err_has "volume 'cv': wrong customer key"
chmod 644 "$T/ck"
run 1 bal volume unlock cv --key-file "$T/ck"; err_has "chmod 600"
chmod 600 "$T/ck"
run 1 bal volume unlock cv --key-file "$T/nope"; err_has "No such file"
run 2 bal volume unlock cv; err_has "missing --key-file"
refused cv "customer key"
run 0 bal volume unlock cv --key-file "$T/ck"; out_has "unlocked volume 'cv'"
same_as cv "$T/cv.img" "customer-key volume after unlock"
run 0 bal --json volume unlock cv64 --key-file "$T/ck64"; json "d['locked'] is False"
same_as cv64 "$T/cv.img" "64-byte customer key"
run 0 bal volume lock cv; out_has "locked volume 'cv'"
refused cv "customer key"
run 0 bal --json volume show cv; json "d['locked'] is True"
# Not while a client has it open.
$PY -c 'import nbd, sys, time
h = nbd.NBD(); h.connect_uri(sys.argv[1]); print("up", flush=True); time.sleep(int(sys.argv[2]))' \
	"$(uri_unix cv64)" 20 >"$T/hold" 2>&1 &
hold=$!
for _ in $(seq 1 100); do grep -q up "$T/hold" && break; sleep 0.1; done
grep -q up "$T/hold" || fail "holding client did not connect: $(cat "$T/hold")"
run 1 bal volume lock cv64; err_has "volume 'cv64' is in use by 1 connection"
kill "$hold"; wait "$hold" 2>/dev/null || true
run 1 bal volume lock e1; err_has "does not use a customer key"
run 1 bal volume lock nope; err_has "volume 'nope' not found"
same_as cv64 "$T/cv.img" "cv64 stays unlocked when cv is locked"

note "(5) no key material anywhere"
bal_stop
$CHK secrets "$T/mk" "$T/mk2" "$T/mkbad" "$T/ck" "$T/ck64" "$T/ckbad" -- \
	"$LOG" "$DATA/db" "$CLI_ALL" "$DATA/pool" >"$T/secrets" ||
	fail "key material found: $(head -n 5 "$T/secrets")"
# Control: the search finds a key where one is.
cat "$T/mk2" >>"$T/control.txt"
! $CHK secrets "$T/mk2" -- "$T/control.txt" >/dev/null || fail "the key search finds nothing"
grep -q "files checked for 18 key forms" "$T/secrets" || fail "secrets: $(cat "$T/secrets")"
[ ${#deferred[@]} -eq 0 ] || fail "${#deferred[@]} deferred failure(s): $(printf '%s; ' "${deferred[@]}")"
note "all encryption checks passed"
