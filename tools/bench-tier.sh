#!/bin/bash
# SPDX-License-Identifier: MIT
# Object tier benchmark, on a file:// store in the scratch directory:
#
#   1. export throughput: a 4 GiB volume with its first 2 GiB written with
#      random data, full export, then an incremental export after 1 % of
#      the volume changed (41 MiB in 11 ranges);
#   2. restore throughput: `ballast volume create --from URL#ID --wait` of
#      the full export (every chunk fetched, checked and written locally);
#   3. time to first byte of a restore: `volume create --from` and the
#      first 4 KiB read over NBD, for a 1 GiB and a 64 GiB snapshot with
#      the same 256 MiB written, and their full hydration time;
#   4. the same image with restic (`restic backup` of the raw image into a
#      local repository, the incremental backup after the same 1 % change,
#      `restic restore`), in the same run.
#
# Prints a Markdown table with the command lines and writes it between the
# bench-tier markers of docs/benchmarks.md (the text around them is kept;
# QUICK=1 writes build/bench-tier-quick.md instead).  Not a test.
#
# Environment (all optional):
#   QUICK=1          512 MiB volume (256 MiB written), 64 MiB in the
#                    time-to-first-byte snapshots
#   BENCH_DIR=DIR    parent of the scratch directory (default /var/tmp)
#   BENCH_OUT=FILE   result file (default docs/benchmarks.md; QUICK:
#                    build/bench-tier-quick.md)
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/tools/bench-lib.sh"
QUICK=${QUICK:-0}
M=$((1024 * 1024))
if [ "$QUICK" = 1 ]; then
	VOL_MIB=512 TTFB_MIB=64 d_out=$TOP/$BUILD/bench-tier-quick.md
else
	VOL_MIB=4096 TTFB_MIB=256 d_out=$TOP/docs/benchmarks.md
fi
DATA_MIB=$((VOL_MIB / 2))
OUT=${BENCH_OUT:-$d_out}
CMDLINE="tools/bench-tier.sh"
[ "$QUICK" != 1 ] || CMDLINE="QUICK=1 tools/bench-tier.sh"

bench_setup tier nbdcopy nbdsh restic bc
STORE=$W/store
URL=file://$STORE
export RESTIC_PASSWORD=ballast-bench
export RESTIC_REPOSITORY=$W/restic
export RESTIC_CACHE_DIR=$W/restic-cache

die() { log "$*"; [ -f "$W/ballastd.log" ] && tail -n 20 "$W/ballastd.log" >&2; exit 1; }

now() { date +%s%N; }
ms() { printf "%.1f" "$(echo "scale=3; ($2 - $1) / 1000000" | bc)"; }       # T0 T1
mibs() { echo "scale=0; $1 * 1000000000 / ($3 - $2) / 1" | bc; }  # MIB T0 T1
secs() { printf "%.2f" "$(echo "scale=4; ($2 - $1) / 1000000000" | bc)"; }  # T0 T1
jv() { $PY -c 'import json, sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"; }

bench_start

log "scratch $W; ${VOL_MIB} MiB volume, ${DATA_MIB} MiB random data"
head -c $((DATA_MIB * M)) /dev/urandom >"$W/src.bin"
# The 1 % change: 11 ranges spread over the written half, 41 MiB in all.
CHANGE_MIB=$(((VOL_MIB + 99) / 100))
NCH=11
changes() { # print "OFFSET LENGTH" lines
	local i len=$((CHANGE_MIB * M / NCH / 4096 * 4096))
	for i in $(seq 0 $((NCH - 1))); do
		echo "$((i * (DATA_MIB * M / NCH) + 12345 * 4096 % (DATA_MIB * M / NCH / 2))) $len"
	done
}
head -c $((CHANGE_MIB * M)) /dev/urandom >"$W/change.bin"
apply_changes() { # TARGET (an NBD URI or a file): write change.bin's pieces
	$PY - "$1" "$W/change.bin" <<EOF || die "applying the 1 % change to $1"
import sys
target, src = sys.argv[1], open(sys.argv[2], "rb").read()
ranges = [tuple(map(int, l.split())) for l in """$(changes)""".splitlines()]
if target.startswith("nbd"):
    import nbd
    h = nbd.NBD(); h.connect_uri(target)
    w = lambda data, off: h.pwrite(data, off)
else:
    f = open(target, "r+b")
    def w(data, off):
        f.seek(off); f.write(data)
pos = 0
for off, ln in ranges:
    w(src[pos:pos + ln], off)
    pos += ln
if target.startswith("nbd"):
    h.flush(); h.shutdown()
else:
    f.close()
EOF
}
CHANGED_BYTES=$(changes | awk '{ s += $2 } END { print s }')

log "1. export"
bal volume create b --size "${VOL_MIB}M" >/dev/null || die "create b"
nbdcopy "$W/src.bin" "$(uri b)" || die "filling b"
bal snapshot create b --name s1 >/dev/null
t0=$(now)
bal --json snapshot export b@s1 --to "$URL" >"$W/exp1.json" || die "export b@s1"
t1=$(now)
ID1=$(jv "$W/exp1.json" id)
t_exp=$(secs "$t0" "$t1"); r_exp=$(mibs "$DATA_MIB" "$t0" "$t1")
store_mib=$(du -sm "$STORE" | awk '{ print $1 }')
apply_changes "$(uri b)"
bal snapshot create b --name s2 >/dev/null
t0=$(now)
bal --json snapshot export b@s2 --to "$URL" >"$W/exp2.json" || die "export b@s2"
t1=$(now)
t_inc=$(secs "$t0" "$t1")
up_inc=$(jv "$W/exp2.json" chunks_uploaded)
ch_inc=$(jv "$W/exp2.json" chunks)

log "2. restore"
t0=$(now)
bal volume create r --from "$URL#$ID1" --wait >/dev/null || die "restore r"
t1=$(now)
t_res=$(secs "$t0" "$t1"); r_res=$(mibs "$DATA_MIB" "$t0" "$t1")
bal volume delete r >/dev/null || die "delete r"

log "3. time to first byte"
head -c $((TTFB_MIB * M)) "$W/src.bin" >"$W/ttfb.bin"
first_read() { # VOL: connect and read 4 KiB; prints the ms of that inside the client
	$PY - "$(uri "$1")" <<'EOF'
import sys, time
import nbd
t0 = time.monotonic()
h = nbd.NBD()
h.connect_uri(sys.argv[1])
b = h.pread(4096, 0)
t1 = time.monotonic()
h.shutdown()
print("%.1f" % ((t1 - t0) * 1000))
EOF
}
declare -A ttfb_create ttfb_read ttfb_total ttfb_hyd
for sz in 1 64; do
	v=t$sz
	bal volume create "$v" --size "${sz}G" >/dev/null || die "create $v"
	nbdcopy "$W/ttfb.bin" "$(uri "$v")" || die "filling $v"
	bal snapshot create "$v" --name s >/dev/null
	bal --json snapshot export "$v@s" --to "$URL" >"$W/exp-$v.json" || die "export $v@s"
	id=$(jv "$W/exp-$v.json" id)
	# Five tries each, the median (by total) reported: one sample on a
	# shared 2-CPU machine moves by tens of milliseconds.
	rows=""
	for try in 1 2 3 4 5; do
		t0=$(now)
		bal volume create "r$v" --from "$URL#$id" >/dev/null || die "restore r$v"
		t1=$(now)
		rd=$(first_read "r$v") || die "first read of r$v"
		cr=$(ms "$t0" "$t1")
		rows="$rows$(printf "%.1f %s %s" "$(echo "$cr + $rd" | bc)" "$cr" "$rd")
"
		bal volume wait "r$v" >/dev/null || die "wait r$v"
		bal volume delete "r$v" >/dev/null || die "delete r$v"
	done
	read -r tot cr rd <<<"$(printf "%s" "$rows" | sort -n | sed -n 3p)"
	ttfb_create[$sz]=$cr
	ttfb_read[$sz]=$rd
	ttfb_total[$sz]=$tot
	t0=$(now)
	bal volume create "h$v" --from "$URL#$id" --wait >/dev/null || die "restore h$v --wait"
	t1=$(now)
	ttfb_hyd[$sz]=$(secs "$t0" "$t1")
	bal volume delete "h$v" >/dev/null || die "delete h$v"
done

log "4. restic on the same raw image"
nbdcopy "$(uri b@s1)" "$W/b.img" || die "image of b@s1"
restic init >/dev/null 2>"$W/restic.err" || die "restic init: $(cat "$W/restic.err")"
t0=$(now)
restic backup --quiet "$W/b.img" >/dev/null 2>"$W/restic.err" || die "restic backup: $(cat "$W/restic.err")"
t1=$(now)
t_rb=$(secs "$t0" "$t1"); r_rb=$(mibs "$DATA_MIB" "$t0" "$t1")
repo_mib=$(du -sm "$RESTIC_REPOSITORY" | awk '{ print $1 }')
apply_changes "$W/b.img"
t0=$(now)
restic backup --quiet "$W/b.img" >/dev/null 2>"$W/restic.err" || die "restic backup (incremental): $(cat "$W/restic.err")"
t1=$(now)
t_rbi=$(secs "$t0" "$t1")
rm -f "$W/b.img"
t0=$(now)
restic restore --quiet latest --target "$W/rr" >/dev/null 2>"$W/restic.err" || die "restic restore: $(cat "$W/restic.err")"
t1=$(now)
t_rr=$(secs "$t0" "$t1"); r_rr=$(mibs "$DATA_MIB" "$t0" "$t1")

host="$(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)), $(awk '/MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo), $(df -T "$W" | awk 'NR == 2 { print $2 }')"
{
	echo "Produced by \`$CMDLINE\` on $(date -u +%Y-%m-%d), $host; $(restic version | awk '{ print $1, $2 }')."
	echo "Volume: ${VOL_MIB} MiB, its first ${DATA_MIB} MiB random data; the change: $((CHANGED_BYTES / M)) MiB in $NCH ranges."
	echo "Throughput is the data written (${DATA_MIB} MiB) over the wall time of the command."
	echo "Both tools read and write the same local disk; page cache warm.  restic restores the"
	echo "whole ${VOL_MIB} MiB file (its holes written as zeroes); Ballast leaves holes unallocated."
	echo
	echo "| measurement | Ballast | restic |"
	echo "|---|---|---|"
	echo "| full export / backup of the image | $t_exp s ($r_exp MiB/s), store $store_mib MiB | $t_rb s ($r_rb MiB/s), repository $repo_mib MiB |"
	echo "| incremental after a 1 % change | $t_inc s ($up_inc of $ch_inc chunks uploaded) | $t_rbi s |"
	echo "| full restore | $t_res s ($r_res MiB/s) | $t_rr s ($r_rr MiB/s) |"
	for sz in 1 64; do
		echo "| first 4 KiB of a ${sz} GiB snapshot (${TTFB_MIB} MiB written), median of 5 | ${ttfb_total[$sz]} ms: \`volume create --from\` ${ttfb_create[$sz]} ms + NBD connect and read ${ttfb_read[$sz]} ms | - |"
	done
	for sz in 1 64; do
		echo "| full hydration of the ${sz} GiB snapshot (\`--wait\`) | ${ttfb_hyd[$sz]} s | - |"
	done
	echo
	echo "Commands (store \`file://DIR/store\`; restic with a local repository):"
	echo
	echo '```'
	echo "ballast --json snapshot export b@s1 --to file://DIR/store"
	echo "ballast --json snapshot export b@s2 --to file://DIR/store      # after the 1 % change"
	echo "ballast volume create r --from file://DIR/store#ID --wait"
	echo "ballast volume create rt1 --from file://DIR/store#ID; libnbd: connect_uri + pread(4096, 0)"
	echo "ballast volume create ht1 --from file://DIR/store#ID --wait"
	echo "restic backup b.img        # b.img: nbdcopy of b@s1, ${VOL_MIB} MiB sparse"
	echo "restic backup b.img        # after the same 1 % change"
	echo "restic restore latest --target DIR/rr"
	echo '```'
} >"$W/result.md"
cat "$W/result.md"

mkdir -p "$(dirname "$OUT")"
if [ "$OUT" = "$TOP/docs/benchmarks.md" ]; then
	$PY - "$OUT" "$W/result.md" <<'EOF' || die "writing $OUT"
import sys
path, res = sys.argv[1], open(sys.argv[2]).read()
begin, end = "<!-- bench-tier:begin -->", "<!-- bench-tier:end -->"
doc = open(path).read()
if begin in doc and end in doc:
    a, b = doc.index(begin) + len(begin), doc.index(end)
    doc = doc[:a] + "\n" + res + doc[b:]
else:
    doc = doc.rstrip("\n") + "\n\n## Object tier\n\n" + begin + "\n" + res + end + "\n"
open(path, "w").write(doc)
EOF
else
	cp "$W/result.md" "$OUT"
fi
log "written to $OUT"
