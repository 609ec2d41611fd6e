#!/bin/bash
# SPDX-License-Identifier: MIT
# fio's nbd engine against ballastd: crc32c-verified random writes at queue
# depth 32 over 4 connections (one per job, each on its own 64 MiB slice),
# then a verify-only pass over TCP, then a negative control: after part of
# the data is overwritten the verify pass must fail.
. "$(dirname "$0")/lib.sh"
MIB=1048576

bal_start
bal volume create vol --size 1G || fail "volume create"

fio_run() { # name uri extra-args... ; JSON on $T/NAME.json
	local name=$1 uri=$2
	shift 2
	# In $T: fio leaves its verify state files in the working directory.
	(cd "$T" && timeout 100 fio --name="$name" --ioengine=nbd --uri="$uri" --rw=randwrite \
		--bs=16k --iodepth=32 --numjobs=4 --size=64M --offset_increment=64M \
		--verify=crc32c --verify_fatal=1 --randrepeat=1 --runtime=90 --group_reporting=0 \
		--output-format=json --output="$T/$name.json" "$@")
}

fio_run write "$(uri_unix vol)" --end_fsync=1 || fail "fio randwrite+verify: exit $?: $(cat "$T/write.json" 2>/dev/null)"
/usr/bin/python3 - "$T/write.json" <<'PY' || fail "fio write result: $(cat "$T/write.json")"
import json, sys
doc = json.load(open(sys.argv[1]))
jobs = doc["jobs"]
assert len(jobs) == 4, len(jobs)
for j in jobs:
    assert j["error"] == 0, j["error"]
    # every block written once (random map) and read back for the verify
    assert j["write"]["io_bytes"] == 64 << 20, ("write bytes", j["write"]["io_bytes"])
    assert j["read"]["io_bytes"] == 64 << 20, ("verify bytes", j["read"]["io_bytes"])
print("fio: %d jobs wrote and verified 64 MiB each" % len(jobs))
PY
note "fio randwrite + verify ok"

fio_run verify "$(uri_tcp vol)" --verify_only=1 || fail "fio verify_only over TCP: exit $?: $(cat "$T/verify.json" 2>/dev/null)"
/usr/bin/python3 - "$T/verify.json" <<'PY' || fail "fio verify result: $(cat "$T/verify.json")"
import json, sys
jobs = json.load(open(sys.argv[1]))["jobs"]
assert len(jobs) == 4 and all(j["error"] == 0 for j in jobs)
assert all(j["read"]["io_bytes"] == 64 << 20 for j in jobs), [j["read"]["io_bytes"] for j in jobs]
PY
note "fio verify_only pass ok"

# Negative control: overwrite 1 MiB of the third job's slice; verifying must fail.
qemu-io -f raw -c "write -P 0x5a $((128 * MIB + 4 * MIB)) 1M" -c flush "$(uri_unix vol)" >/dev/null ||
	fail "qemu-io overwrite"
rc=0
fio_run verify2 "$(uri_unix vol)" --verify_only=1 >"$T/verify2.err" 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "fio verify_only passed over corrupted data"
grep -Eq "verify: bad magic header|crc32c: verify failed|verify failed" "$T/verify2.err" "$T/verify2.json" ||
	fail "fio negative control failed for another reason (exit $rc): $(cat "$T/verify2.err")"
note "fio negative control ok (exit $rc)"
note "PASS"
