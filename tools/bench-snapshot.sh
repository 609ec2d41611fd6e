#!/bin/bash
# SPDX-License-Identifier: MIT
# Snapshot benchmark: what a snapshot costs to take and what snapshots cost
# the live volume's reads.
#
#   1. `ballast snapshot create` wall time (median of REPS) on a 1 GiB and
#      on a 16 TiB thin volume, each with 1 GiB written: the same, since a
#      snapshot freezes the map instead of copying it.
#   2. The same on a volume that already has 1,000 snapshots (one 64 KiB
#      cluster overwritten between two snapshots, so every snapshot holds
#      some old versions).
#   3. 4 KiB random-read IOPS (fio's nbd engine, queue depth 32) on the
#      live 1 GiB volume with 0 and with 1,000 snapshots.
#
# Prints a Markdown table and the command that produced it, and writes them
# to build/bench-snapshots.md (BENCH_OUT; docs/benchmarks.md quotes it).  Not a test.
#
# Environment (all optional):
#   NSNAP=N          snapshots for 2. and 3. (default 1000)
#   REPS=N           snapshot creates timed per case (default 9)
#   BENCH_RUNTIME=S  seconds per fio run (default 10)
#   BENCH_DIR=DIR    parent of the scratch directory (default /var/tmp)
#   BENCH_OUT=FILE   result file (default build/bench-snapshots.md)
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/tools/bench-lib.sh"
NSNAP=${NSNAP:-1000}
REPS=${REPS:-9}
RUNTIME=${BENCH_RUNTIME:-10}
OUT=${BENCH_OUT:-$TOP/build/bench-snapshots.md}
CMDLINE="tools/bench-snapshot.sh (NSNAP=$NSNAP REPS=$REPS BENCH_RUNTIME=$RUNTIME)"

bench_setup snap fio nbdcopy nbdkit
bench_start

fill_1g() { # VOL: write 1 GiB of non-zero data at offset 0, flushed
	nbdkit -U - pattern size=1G --run "nbdcopy --flush \"\$uri\" '$(uri "$1")'" ||
		{ echo "bench: filling $1 failed" >&2; exit 1; }
}

# ms_create VOL NAME: wall time of one `ballast snapshot create`, in ms.
ms_create() {
	local t0 t1
	t0=$(date +%s%N)
	bal snapshot create "$1" --name "$2" >/dev/null || { echo "bench: snapshot $1@$2 failed" >&2; exit 1; }
	t1=$(date +%s%N)
	echo "scale=2; ($t1 - $t0) / 1000000" | bc
}

median() { sort -n | awk '{ a[NR] = $1 } END { if (NR % 2) print a[(NR + 1) / 2]; else printf "%.2f\n", (a[NR / 2] + a[NR / 2 + 1]) / 2 }'; }

# time_creates VOL PREFIX: median ms of REPS snapshot creates.
time_creates() {
	local i
	for i in $(seq 1 "$REPS"); do ms_create "$1" "$2$i"; done | median
}

# Time of one `ballast` round trip that does nothing, to read the above against.
noop_ms() {
	local i t0 t1
	for i in $(seq 1 "$REPS"); do
		t0=$(date +%s%N); bal volume show small >/dev/null; t1=$(date +%s%N)
		echo "scale=2; ($t1 - $t0) / 1000000" | bc
	done | median
}

fio_iops() { # VOL: 4k random read IOPS, QD32
	fio --name=rr32 --ioengine=nbd --uri="$(uri "$1")" --rw=randread --bs=4k --iodepth=32 \
		--size=1G --time_based --runtime="$RUNTIME" --ramp_time=1 --norandommap \
		--output-format=json --output="$W/fio-$1.json" >/dev/null ||
		{ echo "bench: fio on $1 failed" >&2; exit 1; }
	$PY -c 'import json, sys; print("%.0f" % json.load(open(sys.argv[1]))["jobs"][0]["read"]["iops"])' "$W/fio-$1.json"
}

command -v bc >/dev/null || { echo "bench: bc not found" >&2; exit 1; }

log "creating and filling volumes (1 GiB each)"
bal volume create small --size 1G >/dev/null
bal volume create huge --size 16T >/dev/null
bal volume create many --size 1G >/dev/null
fill_1g small
fill_1g huge
fill_1g many

log "fio on the live volume, no snapshots"
iops0=$(fio_iops many)

log "snapshot create: 1 GiB volume, 16 TiB volume"
noop=$(noop_ms)
t_small=$(time_creates small s)
t_huge=$(time_creates huge s)

log "taking $NSNAP snapshots of 'many' (one 64 KiB overwrite between two)"
$PY - "$CTL" "$SOCK" "$NSNAP" <<'EOF'
import json, os, random, socket, sys
import nbd
ctl, sock, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
s = socket.socket(socket.AF_UNIX)
s.connect(ctl)
f = s.makefile("rb")
h = nbd.NBD()
h.set_export_name("many")
h.connect_unix(sock)
rnd = random.Random(1)
buf = os.urandom(65536)
for i in range(n):
    h.pwrite(buf, rnd.randrange(16384) * 65536)
    req = {"jsonrpc": "2.0", "id": i, "method": "snapshot.create",
           "params": {"volume": "many", "name": "m%d" % i}}
    s.sendall(json.dumps(req).encode() + b"\n")
    r = json.loads(f.readline())
    if "error" in r:
        sys.exit("snapshot %d: %s" % (i, r["error"]["message"]))
h.flush()
h.shutdown()
EOF
t_many=$(time_creates many x)

log "fio on the live volume with $NSNAP snapshots"
iops1=$(fio_iops many)

host="$(nproc) CPUs, $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), $(uname -r)"
{
	echo "# Snapshot benchmark"
	echo
	echo "Produced by \`$CMDLINE\` on $(date -u +%Y-%m-%d) ($host)."
	echo "Snapshot times are the median wall time of $REPS \`ballast snapshot create\`"
	echo "commands, CLI process start and control-socket round trip included (a"
	echo "\`ballast volume show\` takes $noop ms on the same machine)."
	echo
	echo "| measurement | result |"
	echo "|---|---|"
	echo "| snapshot create, 1 GiB volume, 1 GiB written | $t_small ms |"
	echo "| snapshot create, 16 TiB volume, 1 GiB written | $t_huge ms |"
	echo "| snapshot create, 1 GiB volume with $NSNAP snapshots | $t_many ms |"
	echo "| 4k random read IOPS, QD32, live volume, 0 snapshots | $iops0 |"
	echo "| 4k random read IOPS, QD32, live volume, $NSNAP snapshots | $iops1 |"
	echo
	echo "fio: \`--ioengine=nbd --rw=randread --bs=4k --iodepth=32 --size=1G --runtime=$RUNTIME\`"
	echo "on a Unix socket; the volume is fully written, so reads hit data."
} >"$W/result.md"
cat "$W/result.md"
cp "$W/result.md" "$OUT"
log "written to $OUT"
