#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Writer and checker for the crash tests (test-crash.sh, test-powercut.sh).

Every 4 KiB block the writer puts on a volume is tagged: a 32-byte header
(magic, run tag, volume index, block number, generation) followed by 4064
bytes of SHAKE-128 of that header.  The checker regenerates the whole block
from its header, so a block that mixes two versions (torn), another volume's
or another block's data, or any other bytes, is told apart from a valid
version.  Generation 0 stands for "all zeroes"; a generation is
(round << 32) | op sequence number, unique across rounds.  Each 4 KiB block
must hold one whole version: the daemon writes aligned 4 KiB units (the XTS
data unit), and neither SIGKILL nor the power-cut disk stack splits an
aligned 4 KiB write.  A command covering several blocks is not atomic: each
block is judged on its own.

    crash_client.py write --journal J --uri URI[,URI2] ... [options]
    crash_client.py check --journal J --uri URI ... [--baseline-in B]
                          [--baseline-out B]

`write` keeps up to --depth commands in flight per connection (one thread,
libnbd's asynchronous API): WRITE of 1..64 blocks (some with FUA),
WRITE_ZEROES with and without NO_HOLE (some with FUA), TRIM (some whole
clusters, some with FUA), FLUSH, and READs it verifies against what it wrote.
A volume may have several connections (NBD multi-conn).  Two commands in
flight never overlap, so each block's versions are totally ordered.  Before a
command is sent its intent goes to the journal ("I" record); when its reply
arrives, "A" (or "E" for an error reply).  The journal is written with
write(2), so it survives the daemon's death whatever happens to the writer,
and fdatasync'ed after each reply that makes something durable.

Durability (what "acknowledged durable" means, NBD spec "Ordering of
messages and writes"): a WRITE/WRITE_ZEROES/TRIM is durable once its reply
with FUA set arrived, or once a FLUSH that was *sent after its reply
arrived* has been answered.  Ops whose reply arrives while a FLUSH is in
flight are not covered by that FLUSH.  A FLUSH on one connection covers
replies received on any connection to the same volume (the daemon advertises
CAN_MULTI_CONN); it covers nothing on another volume.

Content model, per block.  S0 is the baseline (what the previous check read,
made durable by the FLUSH the checker sends; zeroes on a new volume).  Each
op touching the block, in order, gives the set of contents the block may
hold right after it:
  WRITE gen g        -> {g}
  WRITE_ZEROES       -> {zeroes} (NO_HOLE or not: both must read as zeroes)
  TRIM               -> {zeroes} if the trim covers the block's whole cluster
                        (--cluster-size; Ballast frees whole clusters and
                        guarantees they read as zeroes), otherwise
                        {zeroes} | S(i-1).
The NBD spec leaves a trimmed range unspecified until it is written again;
Ballast promises more: a trimmed block never exposes bytes it did not hold
(another volume's, a freed cluster reused by someone else), so a partially
trimmed cluster reads as zeroes or as what it held before the trim.
  Live read (no crash in between): the block must be in S(n) for its latest
  op n.
  After a crash: let d be the latest op on the block that was acknowledged
  durable (0 = the baseline).  The block must be in the union of S(i) for
  i >= d: its latest durable version or any version written after it, acked
  or not.  Zeroes are acceptable only where that union contains them.

`check` reads every block of every volume, applies that rule with the
journal, prints each violation (round, seed, volume, block, found vs
allowed, the block's history), writes the observed contents as the next
round's baseline, sends a FLUSH per volume so that baseline is durable, and
exits 1 on any violation.  Exit codes of `write`: 0 = stopped (deadline or
connection lost), 3 = a live read returned the wrong data or the server
sent an error reply, 2 = usage/setup error.
"""

import argparse
import array
import hashlib
import os
import random
import select
import struct
import sys
import time

import nbd

BLOCK = 4096
MAGIC = b"BALCRSH1"
HDR = struct.Struct("<8sIIQQ")  # magic, tag, volume index, block, generation
ZERO_BLOCK = bytes(BLOCK)
MAX_REPORT = 20


def block_bytes(tag, vol, blk, gen):
    h = HDR.pack(MAGIC, tag, vol, blk, gen)
    return h + hashlib.shake_128(h).digest(BLOCK - HDR.size)


def describe(v):
    if v == 0:
        return "zeroes"
    return "gen %d:%d" % (v >> 32, v & 0xFFFFFFFF)


def classify(data, tag, vol, blk):
    """Return (value, problem): value is 0 for zeroes or the generation of a
    valid version of this very block; problem is None or a description."""
    if data == ZERO_BLOCK:
        return 0, None
    magic, t, v, b, g = HDR.unpack_from(data)
    if magic == MAGIC and t == tag and g != 0:
        good = block_bytes(t, v, b, g)
        if data == good:
            if v != vol or b != blk:
                return None, "valid block of volume %d block %d (%s) - foreign data" % (v, b, describe(g))
            return g, None
        # Torn or corrupt: say which 512-byte sectors match the header's
        # version, which are zero, which are something else.
        marks = []
        for s in range(BLOCK // 512):
            piece = data[s * 512:(s + 1) * 512]
            if piece == good[s * 512:(s + 1) * 512]:
                marks.append("v")
            elif piece == ZERO_BLOCK[:512]:
                marks.append("0")
            else:
                marks.append("?")
        return None, "torn/corrupt: header says volume %d block %d %s, sectors [%s] (v=match 0=zero ?=other)" % (
            v, b, describe(g), "".join(marks))
    return None, "garbage, first bytes %s" % data[:24].hex()


class Model:
    """Per-volume history of the ops of one round, with the rule above."""

    def __init__(self, nblocks, cluster_blocks, baseline):
        self.nblocks = nblocks
        self.cluster_blocks = cluster_blocks
        self.baseline = baseline  # array('Q') of values
        self.hist = {}  # blk -> list of [seq, kind, gen, whole_cluster]

    def add(self, seq, kind, blk, n, gen_base):
        cb = self.cluster_blocks
        for b in range(blk, blk + n):
            whole = False
            if kind == "T":
                c0 = b - b % cb
                whole = c0 >= blk and c0 + cb <= blk + n
            gen = gen_base if kind == "W" else 0
            self.hist.setdefault(b, []).append([seq, kind, gen, whole])

    def states(self, blk):
        """List of sets S0..Sn for blk."""
        out = [frozenset([self.baseline[blk]])]
        for seq, kind, gen, whole in self.hist.get(blk, ()):
            if kind == "W":
                out.append(frozenset([gen]))
            elif kind == "Z" or whole:
                out.append(frozenset([0]))
            else:
                out.append(out[-1] | {0})
        return out

    def allowed(self, blk, durable_seqs=None):
        """Live rule when durable_seqs is None, crash rule otherwise."""
        st = self.states(blk)
        if durable_seqs is None:
            return st[-1], len(st) - 1
        d = 0
        for i, (seq, _k, _g, _w) in enumerate(self.hist.get(blk, ()), 1):
            if seq in durable_seqs:
                d = i
        res = set()
        for s in st[d:]:
            res |= s
        return res, d

    def history(self, blk, round_no, durable_seqs=None, acked=None):
        parts = ["base=" + describe(self.baseline[blk])]
        for seq, kind, gen, whole in self.hist.get(blk, ()):
            s = {"W": "W " + describe(gen), "Z": "ZERO", "T": "TRIM" + ("(cluster)" if whole else "")}[kind]
            s += " #%d" % seq
            if durable_seqs is not None and seq in durable_seqs:
                s += " durable"
            elif acked is not None and seq in acked:
                s += " acked"
            elif acked is not None:
                s += " unacked"
            parts.append(s)
        return ", ".join(parts)


def load_baseline(path, nblocks):
    a = array.array("Q")
    if path and os.path.exists(path):
        with open(path, "rb") as f:
            a.fromfile(f, nblocks)
        return a
    return array.array("Q", bytes(8 * nblocks))


def connect(uri):
    h = nbd.NBD()
    h.connect_uri(uri)
    return h


class Journal:
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.dirty = False

    def put(self, line, durable=False):
        os.write(self.fd, (line + "\n").encode())
        if durable:
            self.dirty = True

    def sync(self):
        if self.dirty:
            os.fdatasync(self.fd)
            self.dirty = False


# ---------------------------------------------------------------- writer

class Conn:
    def __init__(self, vol, idx, uri):
        self.vol = vol
        self.idx = idx
        self.h = connect(uri)
        self.inflight = {}  # cookie -> op


class Lost(Exception):
    pass


class Writer:
    def __init__(self, a):
        self.a = a
        self.rng = random.Random(a.seed)
        self.tag = a.tag
        self.round = a.round
        self.seq = 0
        self.failures = 0
        # How much is at stake at a crash varies from round to round.
        self.flush_p = self.rng.choice((0.01, 0.03, 0.10))
        self.fua_p = self.rng.choice((0.02, 0.10, 0.25))
        self.j = Journal(a.journal)
        self.conns = []
        self.vols = []
        for v, spec in enumerate(a.uri):
            uris = spec.split(",")
            conns = [Conn(v, i, u) for i, u in enumerate(uris)]
            h0 = conns[0].h
            size = h0.get_size()
            if len(conns) > 1 and not h0.can_multi_conn():
                sys.exit("volume %d: several connections asked for but no CAN_MULTI_CONN" % v)
            for need in ("can_flush", "can_fua", "can_trim", "can_zero"):
                if not getattr(h0, need)():
                    sys.exit("volume %d: server lacks %s" % (v, need))
            nblocks = size // BLOCK
            base = load_baseline(a.baseline_in and "%s.%d" % (a.baseline_in, v), nblocks)
            hot = self.rng.randrange(0, max(1, nblocks - a.hot_blocks))
            self.vols.append({"n": nblocks, "busy": {}, "model": Model(nblocks, a.cluster_size // BLOCK, base),
                              "hot": hot})
            self.conns.extend(conns)
        self.j.put("H tag=%d round=%d seed=%d vols=%s flush=%g fua=%g" % (
            self.tag, self.round, a.seed, ",".join(str(v["n"]) for v in self.vols), self.flush_p, self.fua_p))
        if a.ready:
            open(a.ready, "w").close()

    def pick_range(self, v, maxn, align_clusters=False):
        vol = self.vols[v]
        nb = vol["n"]
        cb = self.a.cluster_size // BLOCK
        for _ in range(8):
            if align_clusters:
                n = cb * self.rng.choice((1, 1, 2))
                lo, span = (vol["hot"], self.a.hot_blocks) if self.rng.random() < 0.6 else (0, nb)
                blk = lo + self.rng.randrange(0, max(1, span - n))
                blk -= blk % cb
            else:
                n = min(maxn, self.rng.choice((1, 1, 1, 2, 3, 4, 8, 16, maxn)))
                lo, span = (vol["hot"], self.a.hot_blocks) if self.rng.random() < 0.6 else (0, nb)
                blk = lo + self.rng.randrange(0, max(1, span - n))
            if blk + n > nb:
                continue
            if all(b not in vol["busy"] for b in range(blk, blk + n)):
                return blk, n
        return None

    def issue(self, c):
        r = self.rng.random()
        v = c.vol
        fua = self.rng.random() < self.fua_p
        if r < 0.40:
            kind, rng_ = "W", self.pick_range(v, 64)
        elif r < 0.52:
            kind, rng_ = "Z", self.pick_range(v, 32, self.rng.random() < 0.4)
        elif r < 0.64:
            kind, rng_ = "T", self.pick_range(v, 32, self.rng.random() < 0.5)
        elif r < 0.64 + self.flush_p:
            kind, rng_ = "F", (0, 0)
        else:
            kind, rng_ = "R", self.pick_range(v, 8)
        if rng_ is None:
            return False
        blk, n = rng_
        self.seq += 1
        seq = self.seq
        gen = (self.round << 32) | seq
        flags = 0
        h = c.h
        if kind in "WZT" and fua:
            flags |= nbd.CMD_FLAG_FUA
        if kind == "Z" and self.rng.random() < 0.5:
            flags |= nbd.CMD_FLAG_NO_HOLE
        op = {"seq": seq, "kind": kind, "blk": blk, "n": n, "flags": flags, "vol": v}
        if kind != "R":
            # Intent first: whatever reaches the disk is known to the checker.
            self.j.put("I %d %d %d %s %d %d %d" % (seq, v, c.idx, kind, blk, n, flags))
        busy = self.vols[v]["busy"]
        for b in range(blk, blk + n):
            busy[b] = seq
        off = blk * BLOCK
        if kind == "W":
            buf = b"".join(block_bytes(self.tag, v, b, gen) for b in range(blk, blk + n))
            op["buf"] = nbd.Buffer.from_bytearray(buf)
            cookie = h.aio_pwrite(op["buf"], off, flags=flags)
        elif kind == "Z":
            cookie = h.aio_zero(n * BLOCK, off, flags=flags)
        elif kind == "T":
            cookie = h.aio_trim(n * BLOCK, off, flags=flags)
        elif kind == "F":
            cookie = h.aio_flush()
        else:
            op["buf"] = nbd.Buffer(n * BLOCK)
            cookie = h.aio_pread(op["buf"], off)
        c.inflight[cookie] = op
        return True

    def complete(self, c, cookie, err):
        op = c.inflight.pop(cookie)
        v, blk, n, kind, seq = op["vol"], op["blk"], op["n"], op["kind"], op["seq"]
        busy = self.vols[v]["busy"]
        for b in range(blk, blk + n):
            del busy[b]
        model = self.vols[v]["model"]
        if err is not None:
            self.failures += 1
            if kind != "R":
                self.j.put("E %d %s" % (seq, err))
                # It may or may not have happened: keep it in the model as
                # written-but-unacked so live reads stay meaningful.
                if kind in "WZT":
                    model.add(seq, kind, blk, n, (self.round << 32) | seq)
            if self.failures <= MAX_REPORT:
                print("FAIL error reply: vol %d conn %d %s blk %d n %d flags %d: %s" % (
                    v, c.idx, kind, blk, n, op["flags"], err), file=sys.stderr)
            return
        if kind == "R":
            data = op["buf"].to_bytearray()
            for i in range(n):
                b = blk + i
                val, prob = classify(bytes(data[i * BLOCK:(i + 1) * BLOCK]), self.tag, v, b)
                allowed, _ = model.allowed(b)
                if prob is not None or val not in allowed:
                    self.failures += 1
                    msg = "live read vol %d block %d: found %s, expected %s; history: %s" % (
                        v, b, prob or describe(val), " or ".join(sorted(describe(x) for x in allowed)),
                        model.history(b, self.round))
                    self.j.put("X " + msg)
                    if self.failures <= MAX_REPORT:
                        print("FAIL " + msg, file=sys.stderr)
            return
        durable = bool(op["flags"] & nbd.CMD_FLAG_FUA) or kind == "F"
        self.j.put("A %d" % seq, durable)
        if kind in "WZT":
            model.add(seq, kind, blk, n, (self.round << 32) | seq)

    def reap(self, c):
        h = c.h
        while c.inflight:
            try:
                cookie = h.aio_peek_command_completed()
            except nbd.Error as e:
                raise Lost(str(e))
            if cookie <= 0:
                return
            err = None
            try:
                h.aio_command_completed(cookie)
            except nbd.Error as e:
                if h.aio_is_dead() or h.aio_is_closed():
                    raise Lost(str(e))
                err = "%s (%s)" % (e.errno, e.string)
            self.complete(c, cookie, err)

    def run(self):
        deadline = time.monotonic() + self.a.seconds
        reason = "deadline"
        try:
            while True:
                now = time.monotonic()
                stopping = now >= deadline
                for c in self.conns:
                    if c.h.aio_is_dead() or c.h.aio_is_closed():
                        raise Lost("connection %d/%d dead" % (c.vol, c.idx))
                    tries = 0
                    while not stopping and len(c.inflight) < self.a.depth and tries < 4:
                        try:
                            if not self.issue(c):
                                tries += 1
                        except nbd.Error as e:
                            raise Lost(str(e))
                if stopping and all(not c.inflight for c in self.conns):
                    break
                rl, wl = [], []
                fdmap = {}
                for c in self.conns:
                    d = c.h.aio_get_direction()
                    fd = c.h.aio_get_fd()
                    fdmap[fd] = c
                    if d & nbd.AIO_DIRECTION_READ:
                        rl.append(fd)
                    if d & nbd.AIO_DIRECTION_WRITE:
                        wl.append(fd)
                r, w, _ = select.select(rl, wl, [], 0.2)
                for fd in r:
                    try:
                        fdmap[fd].h.aio_notify_read()
                    except nbd.Error as e:
                        raise Lost(str(e))
                for fd in w:
                    if fd in r:
                        continue
                    try:
                        fdmap[fd].h.aio_notify_write()
                    except nbd.Error as e:
                        raise Lost(str(e))
                for c in self.conns:
                    self.reap(c)
                self.j.sync()
                if stopping and time.monotonic() > deadline + 30:
                    reason = "stuck"
                    self.failures += 1
                    print("FAIL commands still in flight 30 s after the deadline", file=sys.stderr)
                    break
        except Lost as e:
            reason = "lost: %s" % e
        except nbd.Error as e:
            reason = "lost: %s" % e
        self.j.sync()
        self.j.put("END %s ops=%d" % (reason, self.seq))
        self.j.sync()
        print("writer: round %d, %d ops, %s" % (self.round, self.seq, reason))
        return 3 if self.failures else 0


# ---------------------------------------------------------------- checker

def parse_journal(path):
    """Return (header dict, ops by seq, acked set, durable set, errors)."""
    header = {}
    ops = {}
    order = []  # ("I", seq) / ("A", seq) in journal order
    acked = set()
    errors = []
    with open(path) as f:
        for line in f:
            if not line.endswith("\n"):
                break  # torn tail (cannot happen with write(2), but be safe)
            p = line.split()
            if not p:
                continue
            if p[0] == "H":
                header = dict(kv.split("=", 1) for kv in p[1:])
            elif p[0] == "I":
                seq = int(p[1])
                ops[seq] = {"vol": int(p[2]), "conn": int(p[3]), "kind": p[4], "blk": int(p[5]),
                            "n": int(p[6]), "flags": int(p[7])}
                order.append(("I", seq))
            elif p[0] == "A":
                seq = int(p[1])
                acked.add(seq)
                order.append(("A", seq))
            elif p[0] == "E":
                errors.append(line.strip())
            elif p[0] == "X":
                errors.append(line.strip())
    # Durable set: FUA ops acked; ops acked before a FLUSH (same volume) was
    # sent, once that FLUSH is acked.
    durable = set()
    pending = {}  # vol -> list of acked, not yet durable seqs
    covers = {}  # flush seq -> seqs acked before it was sent
    for what, seq in order:
        op = ops[seq]
        v = op["vol"]
        if what == "I":
            if op["kind"] == "F":
                covers[seq] = list(pending.get(v, ()))
        else:
            if op["kind"] == "F":
                done = set(covers.pop(seq))
                durable |= done
                pending[v] = [s for s in pending.get(v, ()) if s not in done]
            elif op["flags"] & nbd.CMD_FLAG_FUA:
                durable.add(seq)
            else:
                pending.setdefault(v, []).append(seq)
    return header, ops, acked, durable, errors


def check(a):
    header, ops, acked, durable, errors = parse_journal(a.journal)
    tag = int(header.get("tag", a.tag))
    round_no = int(header.get("round", a.round))
    seed = header.get("seed", "?")
    nfail = 0
    reported = 0
    total_older = 0

    def report(msg):
        nonlocal nfail, reported
        nfail += 1
        if reported < MAX_REPORT:
            print("FAIL round %d seed %s: %s" % (round_no, seed, msg))
            reported += 1

    for e in errors:
        report("writer recorded: " + e)
    for v, spec in enumerate(a.uri):
        uri = spec.split(",")[0]
        try:
            h = connect(uri)
        except nbd.Error as e:
            report("volume %d: cannot connect to %s: %s" % (v, uri, e))
            continue
        size = h.get_size()
        nblocks = size // BLOCK
        if "vols" in header:
            want = int(header["vols"].split(",")[v])
            if want != nblocks:
                report("volume %d: size %d blocks, the writer saw %d" % (v, nblocks, want))
        base = load_baseline(a.baseline_in and "%s.%d" % (a.baseline_in, v), nblocks)
        model = Model(nblocks, a.cluster_size // BLOCK, base)
        for seq in sorted(ops):
            op = ops[seq]
            if op["vol"] == v and op["kind"] in "WZT":
                model.add(seq, op["kind"], op["blk"], op["n"], (round_no << 32) | seq)
        observed = array.array("Q", bytes(8 * nblocks))
        chunk = 1 << 20
        counts = {"zero": 0, "data": 0, "durable_checked": 0, "older": 0}
        off = 0
        while off < size:
            ln = min(chunk, size - off)
            data = h.pread(ln, off)
            for i in range(ln // BLOCK):
                b = off // BLOCK + i
                piece = data[i * BLOCK:(i + 1) * BLOCK]
                val, prob = classify(piece, tag, v, b)
                allowed, d = model.allowed(b, durable)
                if d:
                    counts["durable_checked"] += 1
                if prob is None and val in allowed:
                    observed[b] = val
                    counts["zero" if val == 0 else "data"] += 1
                    if b in model.hist and val not in model.states(b)[-1]:
                        counts["older"] += 1  # allowed loss of unflushed writes
                    continue
                found = prob or describe(val)
                report("volume %d block %d (offset %d): found %s; allowed %s; history: %s" % (
                    v, b, b * BLOCK, found, " or ".join(sorted(describe(x) for x in allowed)),
                    model.history(b, round_no, durable, acked)))
            off += ln
        if a.baseline_out:
            with open("%s.%d" % (a.baseline_out, v), "wb") as f:
                observed.tofile(f)
        # What was read back is the next round's baseline: make it durable.
        h.flush()
        h.shutdown()
        print("check: round %d volume %d: %d data blocks, %d zero, %d with a durable version checked, "
              "%d behind their last write" % (round_no, v, counts["data"], counts["zero"],
                                                  counts["durable_checked"], counts["older"]))
        total_older += counts["older"]
    nops = len(ops)
    print("check: round %d: %d ops journaled, %d acked, %d durable, %d blocks behind their last write, "
          "%d violations" % (round_no, nops, len(acked), len(durable), total_older, nfail))
    return 1 if nfail else 0


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("write", "check"))
    p.add_argument("--journal", required=True)
    p.add_argument("--uri", action="append", required=True,
                   help="one per volume; several comma-separated URIs = several connections")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tag", type=int, default=0x5EED)
    p.add_argument("--round", type=int, default=1)
    p.add_argument("--seconds", type=float, default=10.0, help="writer deadline")
    p.add_argument("--depth", type=int, default=8, help="commands in flight per connection")
    p.add_argument("--hot-blocks", type=int, default=512)
    p.add_argument("--cluster-size", type=int, default=65536)
    p.add_argument("--baseline-in")
    p.add_argument("--baseline-out")
    p.add_argument("--ready", help="file created once every connection is up")
    a = p.parse_args()
    if a.mode == "write":
        try:
            w = Writer(a)
        except nbd.Error as e:
            print("writer: cannot connect: %s" % e, file=sys.stderr)
            return 2
        return w.run()
    return check(a)


if __name__ == "__main__":
    sys.exit(main())
