#!/bin/bash
# SPDX-License-Identifier: MIT
# Power-cut test: only what reached the disk through fsync/fdatasync
# survives.
#
# The disk is backing.img (sparse, 1 GiB) served by nbdkit's cache filter in
# writeback mode: writes stay in nbdkit's cache and reach backing.img only
# when a FLUSH arrives, so backing.img at any instant is what a power cut
# leaves behind (a disk whose volatile cache is lost).  nbdfuse turns it
# into a file, a loop device turns the file into a block device (the kernel
# passes fsync down as FLUSH), ext4 goes on top and ballastd keeps its data
# directory there.  crash_client.py writes to two volumes; at a random
# instant the writer is frozen (SIGSTOP: its journal then holds exactly the
# replies received before the cut), nbdkit is frozen (no write-back in
# progress), backing.img is copied (cp --sparse=always), and everything is
# torn down.  The copy gets e2fsck -fy (journal replay), is mounted through
# a new loop device, a second ballastd opens the data directory and the
# checker applies the rules of crash_client.py: every block acknowledged
# durable holds that version or a later one, nothing holds bytes never
# written to it.  The volumes must exist (a created volume is durable).
#
# Knobs: POWERCUT_SEED (printed), POWERCUT_ROUNDS (5).  POWERCUT_SERVER=nbdkit
# puts nbdkit's file plugin in ballastd's place, to check the harness (must
# pass); POWERCUT_SERVER=nbdkit-noflush does the same but ignores FLUSH and
# FUA (must fail: acknowledged writes are lost).
# Needs root, loop devices and /dev/fuse; a missing piece is a failure, not
# a skip.
. "$(dirname "$0")/lib.sh"

PY=/usr/bin/python3
CLIENT=$TOP/tests/integ/crash_client.py
ROUNDS=${POWERCUT_ROUNDS:-5}
SEED=${POWERCUT_SEED:-$(od -An -N2 -tu2 /dev/urandom | tr -d ' ')}
SERVER=${POWERCUT_SERVER:-ballastd}
RANDOM=$SEED
TAG=$(( (SEED * 2246822519 + 7) % 4294967296 ))
note "seed $SEED (rerun with POWERCUT_SEED=$SEED), $ROUNDS rounds"

[ "$(id -u)" -eq 0 ] || fail "needs root (loop devices, mounts)"
[ -e /dev/loop-control ] || fail "no /dev/loop-control: loop devices unavailable"
[ -e /dev/fuse ] || fail "no /dev/fuse"
for t in nbdkit nbdfuse losetup mkfs.ext4 e2fsck mount umount; do
	command -v $t >/dev/null || fail "missing $t"
done
"$PY" -c 'import nbd' || fail "need /usr/bin/python3 with the nbd module (python3-libnbd)"

# Everything this test creates, so cleanup undoes exactly that.
NBDKIT_PID='' FUSE_PID='' WRITER_PID='' FUSE_DIR=''
MOUNTS=() LOOPS=()

pc_fail() { fail "round $1 (POWERCUT_SEED=$SEED): $2"; }

task_states() { # pid -> one state letter per thread
	local s
	for s in /proc/"$1"/task/*/stat; do
		sed 's/.*) //; s/ .*//' "$s" 2>/dev/null
	done
}

freeze() { # pid: SIGSTOP and wait until every thread is stopped
	local i
	kill -STOP "$1"
	for i in $(seq 1 200); do
		if ! task_states "$1" | grep -qv '^[Tt]$'; then return 0; fi
		sleep 0.05
	done
	return 1
}

unmount() { # dir
	mountpoint -q "$1" || return 0
	umount "$1" 2>/dev/null || { sleep 0.5; umount "$1" 2>/dev/null; } || umount -l "$1"
}

teardown() {
	local m l i
	if [ -n "$WRITER_PID" ]; then
		kill -KILL "$WRITER_PID" 2>/dev/null || true
		wait "$WRITER_PID" 2>/dev/null || true
		WRITER_PID=
	fi
	# A frozen nbdkit would hang every umount below.
	[ -z "$NBDKIT_PID" ] || kill -CONT "$NBDKIT_PID" 2>/dev/null || true
	if [ -n "$BAL_PID" ]; then
		kill -KILL "$BAL_PID" 2>/dev/null || true
		wait "$BAL_PID" 2>/dev/null || true
		BAL_PID=
	fi
	for ((i = ${#MOUNTS[@]} - 1; i >= 0; i--)); do
		m=${MOUNTS[$i]}
		unmount "$m" || echo "# could not unmount $m" >&2
	done
	MOUNTS=()
	for l in "${LOOPS[@]+"${LOOPS[@]}"}"; do
		losetup -d "$l" 2>/dev/null || echo "# could not detach $l" >&2
	done
	LOOPS=()
	if [ -n "$FUSE_DIR" ]; then
		unmount "$FUSE_DIR" || echo "# could not unmount $FUSE_DIR" >&2
		FUSE_DIR=
	fi
	if [ -n "$FUSE_PID" ]; then
		for _ in $(seq 1 50); do kill -0 "$FUSE_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$FUSE_PID" 2>/dev/null || true
		wait "$FUSE_PID" 2>/dev/null || true
		FUSE_PID=
	fi
	if [ -n "$NBDKIT_PID" ]; then
		kill -TERM "$NBDKIT_PID" 2>/dev/null || true
		for _ in $(seq 1 50); do kill -0 "$NBDKIT_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$NBDKIT_PID" 2>/dev/null || true
		wait "$NBDKIT_PID" 2>/dev/null || true
		NBDKIT_PID=
	fi
}
on_exit teardown

attach() { # file: sets $LOOP to a new loop device, recorded for cleanup
	LOOP=$(losetup -f --show "$1") || return 1
	LOOPS+=("$LOOP")
}

srv_start() {
	if [ "$SERVER" != ballastd ]; then
		# Stand-in: nbdkit's file plugin keeps the volumes as files in
		# $DATA and answers FLUSH with fdatasync (nbdkit-noflush: the fua
		# filter drops FUA and FLUSH).
		rm -f "$SOCK"
		mkdir -p "$DATA"
		local filter=()
		[ "$SERVER" = nbdkit-noflush ] && filter=(--filter=fua)
		nbdkit -f -U "$SOCK" "${filter[@]+"${filter[@]}"}" file dir="$DATA" \
			${filter[0]:+fuamode=discard} >>"$LOG" 2>&1 &
		BAL_PID=$!
		wait_for_socket "$SOCK" 10 || fail "nbdkit did not start"
	else
		bal_start
	fi
}

srv_create() { # name
	if [ "$SERVER" != ballastd ]; then
		mkdir -p "$DATA" && truncate -s 64M "$DATA/$1" && sync -f "$DATA"
	else
		bal volume create "$1" --size 64M >/dev/null
	fi
}

V0=$(uri_unix crash0)
V1=$(uri_unix crash1)
start=$(date +%s)
for r in $(seq 1 "$ROUNDS"); do
	W=$T/round$r
	mkdir -p "$W/fuse" "$W/mnt" "$W/mnt2"
	truncate -s 1G "$W/backing.img"

	# The disk: nbdkit (write-back cache) -> nbdfuse -> loop -> ext4.
	TMPDIR=$W nbdkit -f -U "$W/nbdkit.sock" --filter=cache file file="$W/backing.img" \
		cache=writeback >>"$W/nbdkit.log" 2>&1 &
	NBDKIT_PID=$!
	for _ in $(seq 1 100); do [ -S "$W/nbdkit.sock" ] && break; sleep 0.05; done
	[ -S "$W/nbdkit.sock" ] || pc_fail "$r" "nbdkit did not start: $(cat "$W/nbdkit.log")"
	nbdfuse -C 1 -P "$W/fuse.pid" "$W/fuse/disk" "nbd+unix:///?socket=$W/nbdkit.sock" \
		>>"$W/nbdfuse.log" 2>&1 &
	FUSE_PID=$!
	FUSE_DIR=$W/fuse
	for _ in $(seq 1 100); do [ -s "$W/fuse.pid" ] && break; sleep 0.05; done
	[ -s "$W/fuse.pid" ] || pc_fail "$r" "nbdfuse did not start: $(cat "$W/nbdfuse.log")"
	attach "$W/fuse/disk" || pc_fail "$r" "losetup on the nbdfuse file failed"
	mkfs.ext4 -q -F "$LOOP" >/dev/null || pc_fail "$r" "mkfs.ext4 $LOOP failed"
	mount "$LOOP" "$W/mnt" || pc_fail "$r" "mount $LOOP failed"
	MOUNTS+=("$W/mnt")

	DATA=$W/mnt/data
	srv_start
	srv_create crash0 || pc_fail "$r" "volume create crash0"
	srv_create crash1 || pc_fail "$r" "volume create crash1"

	delay_ms=$(( 300 + RANDOM % 2700 ))
	rm -f "$W/ready"
	"$PY" "$CLIENT" write --journal "$W/journal" --round "$r" --tag "$TAG" \
		--seed $((SEED * 1000 + r)) --seconds 60 --ready "$W/ready" \
		--uri "$V0,$V0" --uri "$V1" >"$W/writer.log" 2>&1 &
	WRITER_PID=$!
	for _ in $(seq 1 200); do
		[ -e "$W/ready" ] && break
		kill -0 "$WRITER_PID" 2>/dev/null || break
		sleep 0.05
	done
	[ -e "$W/ready" ] || { cat "$W/writer.log" >&2; pc_fail "$r" "writer did not connect"; }
	sleep "$((delay_ms / 1000)).$(printf %03d $((delay_ms % 1000)))"
	kill -0 "$BAL_PID" 2>/dev/null || pc_fail "$r" "ballastd died before the cut"
	kill -0 "$WRITER_PID" 2>/dev/null || { cat "$W/writer.log" >&2; pc_fail "$r" "writer stopped before the cut"; }

	# The cut.  Writer first: no reply can be journaled after this point.
	freeze "$WRITER_PID" || pc_fail "$r" "writer did not stop"
	freeze "$NBDKIT_PID" || pc_fail "$r" "nbdkit did not stop: $(task_states "$NBDKIT_PID" | tr '\n' ' ')"
	cp --sparse=always "$W/backing.img" "$W/snap.img" || pc_fail "$r" "copying backing.img failed"
	kill -CONT "$NBDKIT_PID"
	grep -q '^FAIL' "$W/writer.log" && { cat "$W/writer.log" >&2; pc_fail "$r" "live read or error reply failed before the cut"; }
	teardown
	rm -f "$W/backing.img"

	# Power back on: fsck (journal replay), mount, second ballastd, check.
	fsck_rc=0
	e2fsck -fy "$W/snap.img" >"$W/fsck.log" 2>&1 || fsck_rc=$?
	[ $fsck_rc -lt 4 ] || { cat "$W/fsck.log" >&2; pc_fail "$r" "e2fsck left errors (rc $fsck_rc): the disk stack lost flushed data"; }
	# After a journal replay e2fsck fixes the free counts (ext4 does not
	# journal them) and may narrow extent trees; anything else is news.
	odd=$(grep -v -e '^Pass' -e '^/tmp' -e '^e2fsck' -e '^$' -e 'recovering journal' \
		-e 'count wrong' -e 'could be narrower' -e '^\*\*\*' -e '^Fix? yes$' \
		-e '^Optimize? yes$' "$W/fsck.log" | head -n 5 | tr '\n' ' ' || true)
	[ -z "$odd" ] || note "round $r: e2fsck rc $fsck_rc: $odd"
	attach "$W/snap.img" || pc_fail "$r" "losetup on the copy failed"
	mount "$LOOP" "$W/mnt2" || pc_fail "$r" "mount of the copy failed"
	MOUNTS+=("$W/mnt2")
	[ -d "$W/mnt2/data" ] || pc_fail "$r" "data directory missing after the cut"
	DATA=$W/mnt2/data
	srv_start
	if ! "$PY" "$CLIENT" check --journal "$W/journal" --round "$r" --tag "$TAG" \
		--uri "$V0" --uri "$V1" >"$W/check.log" 2>&1; then
		cat "$W/check.log" >&2
		pc_fail "$r" "check after a power cut at ${delay_ms} ms failed (a missing volume means volume create was not durable)"
	fi
	[ "$SERVER" != ballastd ] || bal_stop
	teardown
	note "round $r: cut at ${delay_ms} ms; $(tail -n 1 "$W/check.log" | sed 's/^check: round [0-9]*: //')"
	rm -rf "$W"
done
note "$ROUNDS rounds in $(( $(date +%s) - start ))s"
echo "ok"
