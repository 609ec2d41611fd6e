#!/bin/bash
# SPDX-License-Identifier: MIT
# Encryption benchmark: what AES-256-XTS costs on the NBD data path.
#
# One ballastd (with a throw-away master key) serves two volumes of the same
# size in the same run, one encrypted and one not; each is first filled
# with non-zero data, then fio's nbd engine (Unix socket) runs on each:
#   sr8   sequential 1 MiB reads,  queue depth 8
#   sw8   sequential 1 MiB writes, queue depth 8
#   rr32  random 4 KiB reads,      queue depth 32
#   rw32  random 4 KiB writes,     queue depth 32
# The jobs alternate between the two volumes so that drift on a shared
# machine hits both alike.  Next to them, `openssl speed -evp aes-256-xts`
# on 4 KiB blocks gives the cipher's own ceiling on one core.
#
# Writes a Markdown table with the commands that produced it to
# build/bench-encrypt.md (BENCH_OUT; docs/benchmarks.md quotes it).  Not a test.
#
# Environment (all optional):
#   SIZE=S           volume size and fio span (default 1G)
#   BENCH_RUNTIME=S  seconds per fio job (default 10)
#   BENCH_DIR=DIR    parent of the scratch directory (default /var/tmp)
#   BENCH_OUT=FILE   result file (default build/bench-encrypt.md)
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/tools/bench-lib.sh"
SIZE=${SIZE:-1G}
RUNTIME=${BENCH_RUNTIME:-10}
OUT=${BENCH_OUT:-$TOP/build/bench-encrypt.md}

bench_setup enc fio nbdkit nbdcopy openssl



(umask 077; head -c 32 /dev/urandom >"$W/mk")
bench_start --master-key-file "$W/mk"

log "creating and filling two $SIZE volumes"
bal volume create plain --size "$SIZE" --no-encrypt >/dev/null
bal volume create enc --size "$SIZE" --encrypt >/dev/null
for v in plain enc; do
	nbdkit -U - pattern size="$SIZE" --run "nbdcopy --flush \"\$uri\" '$(uri "$v")'" ||
		{ echo "bench: filling $v failed" >&2; exit 1; }
done

job_args() { # job -> fio arguments
	case $1 in
	sr8) echo "--rw=read --bs=1M --iodepth=8" ;;
	sw8) echo "--rw=write --bs=1M --iodepth=8" ;;
	rr32) echo "--rw=randread --bs=4k --iodepth=32" ;;
	rw32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
	esac
}

# run_fio VOL JOB: prints "MiB/s IOPS" of the job.
run_fio() {
	local out=$W/fio-$1-$2.json
	# shellcheck disable=SC2046
	timeout $((RUNTIME + 120)) fio --name="$2" --ioengine=nbd --uri="$(uri "$1")" \
		--size="$SIZE" $(job_args "$2") --time_based --runtime="$RUNTIME" --ramp_time=1 \
		--randrepeat=0 --norandommap --output-format=json --output="$out" >/dev/null 2>&1 ||
		{ echo "bench: fio $2 on $1 failed" >&2; exit 1; }
	$PY -c 'import json, sys
j = json.load(open(sys.argv[1]))["jobs"][0]
d = j["read"] if j["read"]["io_bytes"] else j["write"]
print("%.0f %.0f" % (d["bw_bytes"] / 1048576, d["iops"]))' "$out"
}

declare -A RES
for j in sr8 sw8 rr32 rw32; do
	for v in plain enc; do
		log "fio $j on $v ($RUNTIME s)"
		RES[$v.$j]=$(run_fio "$v" "$j")
	done
done

log "openssl speed -evp aes-256-xts -bytes 4096 -seconds 3"
SPEED=$(openssl speed -evp aes-256-xts -bytes 4096 -seconds 3 2>/dev/null | tail -n 1)
# The last line: "AES-256-XTS  NNNNk" (1000-byte units per second).
SSL_MIBS=$(echo "$SPEED" | awk '{ v = $NF; sub(/k$/, "", v); printf "%.0f", v * 1000 / 1048576 }')

pct() { # plain enc -> "-12 %"
	awk -v a="$1" -v b="$2" 'BEGIN { if (a > 0) printf "%+.0f %%", (b - a) * 100 / a; else print "-" }'
}

{
	echo "# Encryption benchmark"
	echo
	echo "Written by \`tools/bench-encrypt.sh\` (SIZE=$SIZE BENCH_RUNTIME=$RUNTIME) on"
	echo "$(date -u +%Y-%m-%d), $(nproc) CPUs ($(awk -F': ' '/model name/ { print $2; exit }' /proc/cpuinfo)),"
	echo "ballastd with default workers, both volumes on one daemon, NBD over a Unix socket."
	echo
	echo "| job | unencrypted | encrypted (AES-256-XTS) | change |"
	echo "|---|---|---|---|"
	for j in sr8 sw8 rr32 rw32; do
		read -r pm pi <<<"${RES[plain.$j]}"
		read -r em ei <<<"${RES[enc.$j]}"
		case $j in
		sr8) name="sequential read, 1 MiB, QD8" ;;
		sw8) name="sequential write, 1 MiB, QD8" ;;
		rr32) name="random read, 4 KiB, QD32" ;;
		rw32) name="random write, 4 KiB, QD32" ;;
		esac
		case $j in
		s*) echo "| $name | $pm MiB/s | $em MiB/s | $(pct "$pm" "$em") |" ;;
		*) echo "| $name | $pi IOPS | $ei IOPS | $(pct "$pi" "$ei") |" ;;
		esac
	done
	echo "| \`openssl speed -evp aes-256-xts -bytes 4096\`, one core | | $SSL_MIBS MiB/s | |"
	echo
	echo "Commands (VOL is \`plain\` or \`enc\`, each $SIZE, filled first with"
	echo "\`nbdkit pattern\` through \`nbdcopy --flush\`):"
	echo
	echo '```'
	for j in sr8 sw8 rr32 rw32; do
		echo "fio --name=$j --ioengine=nbd --uri='nbd+unix:///VOL?socket=nbd.sock' --size=$SIZE $(job_args "$j") --time_based --runtime=$RUNTIME --ramp_time=1 --randrepeat=0 --norandommap"
	done
	echo "openssl speed -evp aes-256-xts -bytes 4096 -seconds 3"
	echo '```'
	echo
	echo "openssl's last line: \`$SPEED\`."
} >"$OUT.tmp"
mv "$OUT.tmp" "$OUT"
cat "$OUT"
