#!/bin/bash
# SPDX-License-Identifier: MIT
# `make bench`: Ballast against the NBD servers a user would otherwise pick
# (nbdkit's file plugin, qemu-nbd, nbd-server) and against the filesystem
# itself (fio's io_uring engine with O_DIRECT on a plain file), all on one
# scratch directory of one filesystem, with the same export size, the same
# fio jobs (through fio's nbd engine, on Unix sockets) and the same nbdcopy
# runs.  Every export is filled first so that reads hit data, not holes.
# Each measurement is repeated ROUNDS times, the targets interleaved (each
# round starting from the next target), and the median is reported.  The
# Markdown result is printed and written between the bench markers of
# docs/benchmarks.md (the text around them is kept).
#
# Environment (all optional):
#   QUICK=1            1 GiB exports, 512 MiB copies, 1 s runs, 1 round
#   ROUNDS=N           rounds (default 3; QUICK 1)
#   BENCH_SIZE_MIB     export size (default 4096; QUICK 1024)
#   BENCH_COPY_MIB     nbdcopy file size (default 2048; QUICK 512)
#   BENCH_RUNTIME      seconds per fio job (default 2; QUICK 1)
#   BENCH_RAMP_MS      ramp before each fio job, in ms (default 500)
#   BENCH_DIR          parent of the scratch directory (default /var/tmp)
#   BENCH_OUT          result file (default docs/benchmarks.md; QUICK:
#                      build/benchmarks-quick.md, so a quick run does not
#                      overwrite the full figures)
#   BENCH_TARGETS      subset of "ballast nbdkit qemu-nbd nbd-server limit"
#   BENCH_KINDS=0|1    the second part: the same jobs on an encrypted volume
#                      and on a volume with BENCH_NSNAP snapshots (default
#                      100); default 1, QUICK 0
#   BENCH_KINDS_ROUNDS rounds of the second part (default 1)
set -euo pipefail
TOP=$(cd "$(dirname "$0")/.." && pwd)
. "$TOP/tools/bench-lib.sh" # the shared defaults; this script has its own set-up

# The settings given on the command line, for the report.
envs=""
for v in QUICK ROUNDS BENCH_SIZE_MIB BENCH_COPY_MIB BENCH_RUNTIME BENCH_RAMP_MS BENCH_TARGETS \
	BENCH_KINDS BENCH_NSNAP BENCH_KINDS_ROUNDS; do
	[ -n "${!v:-}" ] && envs="$envs$v=${!v} "
done
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	d_size=1024 d_copy=512 d_rt=1 d_rounds=1 d_out=$TOP/$BUILD/benchmarks-quick.md
else
	d_size=4096 d_copy=2048 d_rt=2 d_rounds=3 d_out=$TOP/docs/benchmarks.md
fi
SIZE_MIB=${BENCH_SIZE_MIB:-$d_size}
COPY_MIB=${BENCH_COPY_MIB:-$d_copy}
RUNTIME=${BENCH_RUNTIME:-$d_rt}
RAMP_MS=${BENCH_RAMP_MS:-500}
ROUNDS=${ROUNDS:-$d_rounds}
OUT=${BENCH_OUT:-$d_out}
TARGETS=${BENCH_TARGETS:-ballast nbdkit qemu-nbd nbd-server limit}
# The second part is left out of a QUICK run (it would take it past 3 min).
if [ "$QUICK" = 1 ]; then d_kinds=0; else d_kinds=1; fi
KINDS=${BENCH_KINDS:-$d_kinds}
NSNAP=${BENCH_NSNAP:-100}
# One round by default: three would take a full run past 15 minutes.
KROUNDS=${BENCH_KINDS_ROUNDS:-1}
JOBS="rr1 rr32 rw32 rw32s sw8 sr8 sw4c"

for tool in fio nbdcopy nbdkit qemu-nbd nbd-server nbdinfo; do
	command -v "$tool" >/dev/null || { echo "bench: $tool not found (run tools/deps.sh)" >&2; exit 1; }
done
if [ ! -x "$BALLASTD" ] || [ ! -x "$BALLAST" ]; then
	echo "bench: build ballastd and ballast first (make)" >&2
	exit 1
fi

mkdir -p "${BENCH_DIR:-/var/tmp}"
W=$(mktemp -d "${BENCH_DIR:-/var/tmp}/ballast-bench.XXXXXX")
RES=$W/results
mkdir -p "$RES"
T0=$(date +%s)
PIDS=()        # processes this script started (nbd-server: from its pid file)
PEER_PIDS=()   # those of them that are peers
BAL_PID=

log() { echo "bench: [$(($(date +%s) - T0)) s] $*" >&2; }

stop_pid() { # pid: TERM, wait up to 10 s, then KILL
	local pid=$1
	kill -TERM "$pid" 2>/dev/null || return 0
	for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
	kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
	local rc=$? pid
	for pid in "${PIDS[@]+"${PIDS[@]}"}"; do stop_pid "$pid"; done
	wait 2>/dev/null || true
	rm -rf "$W"
	exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_sock() { # path pid
	for _ in $(seq 1 200); do
		[ -S "$1" ] && return 0
		kill -0 "$2" 2>/dev/null || return 1
		sleep 0.05
	done
	return 1
}

# Record why a target cannot run a measurement; the report prints it.
note() { echo "$1	$2	$3" >>"$RES/notes.tsv"; } # target job reason

declare -A URI CURI
SZ=$((SIZE_MIB * 1048576))
CSZ=$((COPY_MIB * 1048576))

start_ballast() {
	(umask 077 && head -c 32 /dev/urandom >"$W/master.key")
	"$BALLASTD" --data-dir "$W/ballast" --listen "unix:$W/ballast.sock" \
		--control "$W/ballast-ctl.sock" --master-key-file "$W/master.key" \
		--log-level info >"$W/ballastd.log" 2>&1 &
	BAL_PID=$!
	PIDS+=("$BAL_PID")
	for _ in $(seq 1 400); do
		grep -q "ballastd ready" "$W/ballastd.log" && break
		kill -0 "$BAL_PID" 2>/dev/null || { cat "$W/ballastd.log" >&2; return 1; }
		sleep 0.05
	done
	"$BALLAST" --control "$W/ballast-ctl.sock" volume create bench --size "$SZ" >/dev/null || return 1
	"$BALLAST" --control "$W/ballast-ctl.sock" volume create copy --size "$CSZ" >/dev/null || return 1
	URI[ballast]="nbd+unix:///bench?socket=$W/ballast.sock"
	CURI[ballast]="nbd+unix:///copy?socket=$W/ballast.sock"
}

start_nbdkit() { # one nbdkit per export
	local e sz pid
	for e in bench copy; do
		[ $e = bench ] && sz=$SZ || sz=$CSZ
		truncate -s "$sz" "$W/nbdkit-$e.raw"
		nbdkit -f -U "$W/nbdkit-$e.sock" file "$W/nbdkit-$e.raw" 2>>"$W/nbdkit.log" &
		pid=$!
		PIDS+=("$pid") PEER_PIDS+=("$pid")
		wait_sock "$W/nbdkit-$e.sock" "$pid" || { cat "$W/nbdkit.log" >&2; return 1; }
	done
	URI[nbdkit]="nbd+unix:///?socket=$W/nbdkit-bench.sock"
	CURI[nbdkit]="nbd+unix:///?socket=$W/nbdkit-copy.sock"
}

start_qemu() { # one qemu-nbd per export
	local e sz pid
	for e in bench copy; do
		[ $e = bench ] && sz=$SZ || sz=$CSZ
		truncate -s "$sz" "$W/qemu-$e.raw"
		qemu-nbd -t -k "$W/qemu-$e.sock" -f raw --cache=none --aio=io_uring --shared=8 \
			"$W/qemu-$e.raw" 2>>"$W/qemu-nbd.log" &
		pid=$!
		PIDS+=("$pid") PEER_PIDS+=("$pid")
		wait_sock "$W/qemu-$e.sock" "$pid" || { cat "$W/qemu-nbd.log" >&2; return 1; }
	done
	URI[qemu-nbd]="nbd+unix:///?socket=$W/qemu-bench.sock"
	CURI[qemu-nbd]="nbd+unix:///?socket=$W/qemu-copy.sock"
}

start_nbdserver() { # one daemon, two exports; it forks, so its pid comes from -p
	truncate -s "$SZ" "$W/nbdsrv-bench.raw"
	truncate -s "$CSZ" "$W/nbdsrv-copy.raw"
	cat >"$W/nbd-server.conf" <<-EOF
		[generic]
		unixsock = $W/nbdsrv.sock
		[bench]
		exportname = $W/nbdsrv-bench.raw
		flush = true
		fua = true
		[copy]
		exportname = $W/nbdsrv-copy.raw
		flush = true
		fua = true
	EOF
	nbd-server -C "$W/nbd-server.conf" -p "$W/nbdsrv.pid" >"$W/nbd-server.log" 2>&1 || {
		cat "$W/nbd-server.log" >&2
		return 1
	}
	local pid=
	for _ in $(seq 1 100); do
		[ -s "$W/nbdsrv.pid" ] && [ -S "$W/nbdsrv.sock" ] && break
		sleep 0.05
	done
	pid=$(cat "$W/nbdsrv.pid" 2>/dev/null || true)
	[ -n "$pid" ] || return 1
	PIDS+=("$pid") PEER_PIDS+=("$pid")
	URI[nbd-server]="nbd+unix:///bench?socket=$W/nbdsrv.sock"
	CURI[nbd-server]="nbd+unix:///copy?socket=$W/nbdsrv.sock"
}

cpu_ticks() { # utime+stime of ballastd, in clock ticks
	awk '{ sub(/^.*\) /, ""); print $12 + $13 }' "/proc/$BAL_PID/stat"
}
proc_kib() { # field of /proc/PID/status, in KiB
	awk -v f="$1:" '$1 == f { print $2 }' "/proc/$BAL_PID/status"
}

job_args() { # job target -> fio arguments describing the I/O pattern
	case $1 in
	fill) echo "--rw=write --bs=1M --iodepth=8 --size=$SZ" ;;
	rr1) echo "--rw=randread --bs=4k --iodepth=1" ;;
	rr32) echo "--rw=randread --bs=4k --iodepth=32" ;;
	rw32) echo "--rw=randwrite --bs=4k --iodepth=32" ;;
	rw32s) # fio's nbd engine sends NBD FLUSH for fsync only (fdatasync
		# is EINVAL there); the servers answer FLUSH with fdatasync.
		if [ "$2" = limit ]; then
			echo "--rw=randwrite --bs=4k --iodepth=32 --fdatasync=32"
		else
			echo "--rw=randwrite --bs=4k --iodepth=32 --fsync=32"
		fi ;;
	sw8) echo "--rw=write --bs=1M --iodepth=8" ;;
	sr8) echo "--rw=read --bs=1M --iodepth=8" ;;
	sw4c) echo "--rw=write --bs=1M --iodepth=2 --numjobs=4 --size=$((SZ / 4)) --offset_increment=$((SZ / 4))" ;;
	esac
}

run_fio() { # target job out.json
	local t=$1 j=$2 out=$3 eng timing=() c0 c1 rc=0
	if [ "$t" = limit ]; then
		eng="--ioengine=io_uring --direct=1 --filename=$W/limit.raw"
	else
		eng="--ioengine=nbd --uri=${URI[$t]}"
	fi
	[ "$j" = fill ] || timing=(--time_based "--runtime=$RUNTIME" "--ramp_time=${RAMP_MS}ms")
	# Write back what earlier jobs left dirty, so that no job pays for
	# another's writeback (notably the FLUSH-bound job).
	sync -f "$W"
	[ "$t" = ballast ] && c0=$(cpu_ticks)
	# shellcheck disable=SC2046,SC2086
	timeout $((RUNTIME + 300)) fio --name="$j" $eng --size="$SZ" $(job_args "$j" "$t") \
		"${timing[@]+"${timing[@]}"}" --group_reporting --randrepeat=0 --norandommap \
		--output-format=json --output="$out" >"$out.err" 2>&1 || rc=$?
	if [ "$t" = ballast ]; then
		c1=$(cpu_ticks)
		echo "$j $((c1 - c0))" >>"$RES/ballast-cpu.txt"
	fi
	if [ $rc -ne 0 ]; then
		note "$t" "$j" "fio exited $rc: $(grep -m1 -v 'connected to NBD' "$out.err" | tr '\t' ' ')"
		rm -f "$out"
	fi
}

run_copy() { # target round: nbdcopy the random file in, then out
	local t=$1 r=$2 dst src s0 s1 c0 c1 rc=0 dir
	for dir in in out; do
		local exp=${CURI[$t]:-$W/limit-copy.raw} # the limit copies file to file
		if [ $dir = in ]; then
			src=$W/random.bin dst=$exp
		else
			src=$exp dst=$W/copy-out.bin
		fi
		rm -f "$W/copy-out.bin"
		sync -f "$W"
		[ "$t" = ballast ] && c0=$(cpu_ticks)
		s0=$(date +%s.%N)
		timeout 600 nbdcopy --flush "$src" "$dst" 2>"$RES/copy.$t.$dir.err" || rc=$?
		s1=$(date +%s.%N)
		if [ "$t" = ballast ]; then
			c1=$(cpu_ticks)
			echo "copy-$dir $((c1 - c0))" >>"$RES/ballast-cpu.txt"
		fi
		if [ $rc -ne 0 ]; then
			note "$t" "copy-$dir" "nbdcopy exited $rc: $(head -n1 "$RES/copy.$t.$dir.err")"
			return 0
		fi
		echo "$t $dir $r $s0 $s1" >>"$RES/copy.txt"
	done
	rm -f "$W/copy-out.bin"
}

# ---- start everything ---------------------------------------------------
log "scratch dir $W ($(df -T "$W" | awk 'NR==2 { print $2 }')), export ${SIZE_MIB} MiB, copy ${COPY_MIB} MiB, ${RUNTIME} s + ${RAMP_MS} ms per job, $ROUNDS round(s)"
ACTIVE=""
for t in $TARGETS; do
	case $t in
	ballast) start_ballast ;;
	nbdkit) start_nbdkit ;;
	qemu-nbd) start_qemu ;;
	nbd-server) start_nbdserver ;;
	limit) ;;
	*) echo "bench: unknown target $t" >&2; exit 2 ;;
	esac || { note "$t" all "did not start (see above)"; continue; }
	ACTIVE="$ACTIVE $t"
done
for t in $ACTIVE; do
	[ "$t" = limit ] && continue
	mc=$(nbdinfo --can multi-conn "${URI[$t]}" && echo yes || echo no)
	echo "$t multi_conn $mc" >>"$RES/features.txt"
done

CLK_TCK=$(getconf CLK_TCK)
if [ -n "$BAL_PID" ]; then
	echo "rss_before_kib $(proc_kib VmRSS)" >>"$RES/ballast-mem.txt"
	echo "cpu_start $(cpu_ticks)" >>"$RES/ballast-mem.txt"
fi

log "writing ${COPY_MIB} MiB of random data"
# AES-CTR of zeroes under a random key: as incompressible as /dev/urandom
# and several times faster to produce.
openssl enc -aes-128-ctr -nosalt -pass "pass:$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')" \
	-pbkdf2 </dev/zero 2>/dev/null | head -c "$CSZ" >"$W/random.bin" || true # openssl: SIGPIPE
[ "$(stat -c %s "$W/random.bin")" = "$CSZ" ] || { echo "bench: could not write the random file" >&2; exit 1; }

for t in $ACTIVE; do
	log "filling $t"
	run_fio "$t" fill "$RES/$t.fill.json"
done

# The targets of round R, starting from the R-th: the target measured first
# in a round finds its pages the longest ago written and the likeliest to
# have been evicted by the others', so no target is always first.
round_order() {
	local r=$1 a=($ACTIVE)
	local n=${#a[@]} i
	for ((i = 0; i < n; i++)); do echo "${a[$(((r - 1 + i) % n))]}"; done
}

run_jobs() { # round label: every fio job on every target of $ORDER
	local r=$1 label=$2 j t
	for j in $JOBS; do
		for t in $ORDER; do
			log "$label: $j on $t"
			run_fio "$t" "$j" "$RES/$t.$j.$r.json"
		done
	done
}

for r in $(seq 1 "$ROUNDS"); do
	ORDER=$(round_order "$r")
	run_jobs "$r" "round $r/$ROUNDS"
	for t in $ORDER; do
		log "round $r/$ROUNDS: nbdcopy on $t"
		run_copy "$t" "$r"
	done
done

if [ -n "$BAL_PID" ]; then
	{
		echo "rss_after_kib $(proc_kib VmRSS)"
		echo "hwm_kib $(proc_kib VmHWM)"
		echo "cpu_end $(cpu_ticks)"
		echo "clk_tck $CLK_TCK"
	} >>"$RES/ballast-mem.txt"
fi

# ---- second part: kinds of Ballast volume ----------------------------------
# The same fio jobs on the filled volume of the first part, on an encrypted
# volume and on a volume with NSNAP snapshots taken after its fill (so every
# cluster's first write after them is a redirect-on-write), all of one
# ballastd.  The peers are stopped and their files removed first, so the
# three volumes have the page cache to themselves, as the peers had theirs.
if [ "$KINDS" = 1 ] && [ -n "$BAL_PID" ]; then
	for pid in "${PEER_PIDS[@]+"${PEER_PIDS[@]}"}"; do stop_pid "$pid"; done
	rm -f "$W"/*.raw "$W/random.bin"
	"$BALLAST" --control "$W/ballast-ctl.sock" volume delete copy >/dev/null || true
	KACTIVE=""
	if "$BALLAST" --control "$W/ballast-ctl.sock" volume create enc --size "$SZ" --encrypt >/dev/null; then
		URI[enc]="nbd+unix:///enc?socket=$W/ballast.sock"
		log "filling the encrypted volume"
		run_fio enc fill "$RES/enc.fill.json"
		KACTIVE="$KACTIVE enc"
	else
		note enc all "encrypted volume not created"
	fi
	if "$BALLAST" --control "$W/ballast-ctl.sock" volume create snap --size "$SZ" >/dev/null; then
		URI[snap]="nbd+unix:///snap?socket=$W/ballast.sock"
		log "filling the volume to snapshot, then $NSNAP snapshots"
		run_fio snap fill "$RES/snap.fill.json"
		for i in $(seq 1 "$NSNAP"); do
			"$BALLAST" --control "$W/ballast-ctl.sock" snapshot create snap --name "s$i" >/dev/null ||
				{ note snap all "snapshot $i failed"; break; }
		done
		KACTIVE="$KACTIVE snap"
	else
		note snap all "volume to snapshot not created"
	fi
	URI[plain]=${URI[ballast]}
	ACTIVE="plain$KACTIVE"
	for r in $(seq 1 "$KROUNDS"); do
		ORDER=$(round_order "$r")
		run_jobs "$r" "volume kinds, round $r/$KROUNDS"
	done
fi

if [ -n "$BAL_PID" ]; then
	kill -TERM "$BAL_PID"
	rc=0
	wait "$BAL_PID" || rc=$?
	BAL_PID=
	[ $rc -eq 0 ] || note ballast all "ballastd exited $rc after SIGTERM"
fi

# ---- report --------------------------------------------------------------
if [ -n "${MAKELEVEL:-}" ]; then cmd="make bench"; else cmd="tools/bench.sh"; fi
{
	echo "command	$envs$cmd"
	echo "date	$(date -u +%Y-%m-%dT%H:%MZ)"
	echo "nproc	$(nproc)"
	echo "cpu	$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo)"
	echo "ram	$(awk '/^MemTotal/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)"
	echo "fs	$(df -T "$W" | awk 'NR==2 { print $2 " on " $1 }')"
	echo "kernel	$(uname -r)"
	echo "versions	fio $(fio --version | sed 's/fio-//'), nbdkit $(nbdkit --version | awk '{ print $2 }'), qemu-nbd $(qemu-nbd --version | awk 'NR==1 { print $2 }'), nbd-server $(nbd-server -V 2>&1 | awk '/version/ { print $NF; exit }'), libnbd $(nbdcopy --version | awk '/libnbd/ { print $2 }')"
	echo "size_mib	$SIZE_MIB"
	echo "copy_mib	$COPY_MIB"
	echo "runtime	$RUNTIME"
	echo "ramp_ms	$RAMP_MS"
	echo "rounds	$ROUNDS"
	echo "targets	$TARGETS"
	echo "nsnap	$NSNAP"
	echo "kinds_rounds	$KROUNDS"
	echo "elapsed	$(($(date +%s) - T0))"
} >"$RES/meta.tsv"
mkdir -p "$(dirname "$OUT")"
"$PY" "$TOP/bench/report.py" "$RES" "$OUT"
log "done in $(($(date +%s) - T0)) s; written to $OUT"
