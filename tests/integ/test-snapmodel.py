#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Randomized model test of snapshots and clones at the daemon level.

Starts its own ballastd on a scratch directory and runs thousands of random
operations on a few small volumes: writes, trims, write-zeroes (with and
without NO_HOLE, whole and partial clusters), snapshot create and delete,
clone, flatten, volume delete (plain and recursive), and a clean restart
(SIGTERM + start) every few hundred operations.  Data goes over libnbd,
control over JSON-RPC on the control socket.

An in-memory model holds the bytes of every volume and snapshot (every read
is compared byte for byte) and the physical sharing: each 64 KiB cluster
version has a unique id, a snapshot references the versions its volume
mapped, a clone starts with an empty map that reads through its parent
snapshot; a version made by a whole-cluster zero with NO_HOLE is allocated
but reads as zeroes, so it counts as a hole for what a clone copies up.  After every delete (and every restart) store.stats must report,
once no freed cluster is pending, exactly the number of distinct versions
still referenced.  The refusals are modelled too: a snapshot with clones
cannot be deleted, a volume with snapshots needs `recursive`.

Usage: test-snapmodel.py [--seed N] [--ops N] [--time-limit S]
(environment: BAL_SEED, BAL_OPS; BUILD selects the build folder).
The seed is printed at the start and on failure.
"""
import argparse
import errno
import json
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

import nbd

C = 64 << 10
TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
BUILD = os.environ.get("BUILD", "build")
BALLASTD = os.environ.get("BALLASTD", os.path.join(TOP, BUILD, "ballastd"))
MAX_VOLS = 5
MAX_SNAPS = 3
SIZES = (2 << 20, 3 << 20, 4 << 20, (2 << 20) + 5 * C)
EBUSY_CODE = -32000 - errno.EBUSY
ENOTEMPTY_CODE = -32000 - errno.ENOTEMPTY


class TestFailure(Exception):
    pass


# ---- the model ----

class Snap:
    def __init__(self, vol, name, data, cmap, parent):
        self.vol = vol          # the Vol it was taken of
        self.name = name
        self.data = bytes(data)
        self.map = dict(cmap)   # cluster -> version id, or None (masks the parent)
        self.parent = parent    # the Snap the volume read through, or None

    @property
    def export(self):
        return "%s@%s" % (self.vol.name, self.name)


class Vol:
    def __init__(self, name, size, parent=None):
        self.name = name
        self.size = size
        self.parent = parent
        self.data = bytearray(parent.data) if parent else bytearray(size)
        self.map = {}
        self.snaps = []

    @property
    def export(self):
        return self.name


def resolve(cmap, parent, c):
    """The version a map (and its parent chain) gives cluster c, or None."""
    while True:
        if c in cmap:
            return cmap[c]
        if parent is None:
            return None
        cmap, parent = parent.map, parent.parent


class Model:
    def __init__(self):
        self.vols = {}
        self.next_vid = 1
        # Versions allocated by a whole-cluster zero with NO_HOLE and not
        # written since: they read as zeroes, so a clone reading through
        # one sees a hole (nothing to copy up or flatten).
        self.zero = set()

    def new_vid(self, zero=False):
        self.next_vid += 1
        if zero:
            self.zero.add(self.next_vid)
        return self.next_vid

    def has_data(self, vid):
        return isinstance(vid, int) and vid not in self.zero

    def snaps(self):
        return [s for v in self.vols.values() for s in v.snaps]

    def dependents(self, snap):
        """Volumes and snapshots that read through snap."""
        d = [v for v in self.vols.values() if v.parent is snap]
        d += [s for s in self.snaps() if s.parent is snap]
        return d

    def used_clusters(self):
        ids = set()
        for v in self.vols.values():
            ids.update(x for x in v.map.values() if x is not None)
            for s in v.snaps:
                ids.update(x for x in s.map.values() if x is not None)
        return len(ids)

    @staticmethod
    def shared(vol, c, vid):
        return any(s.map.get(c) == vid for s in vol.snaps)

    def cluster_op(self, vol, c, kind):
        """Update vol's map for one cluster touched by an operation.

        kind: "write" (any write), "partial" (trim/zero of part of a
        cluster), "punch" (whole-cluster trim or zero that may punch),
        "fill" (whole-cluster zero with NO_HOLE).
        """
        own = vol.map.get(c, "missing")
        mine = isinstance(own, int) and not self.shared(vol, c, own)
        if kind == "write":
            if mine:
                self.zero.discard(own)          # written in place
            else:
                vol.map[c] = self.new_vid()
        elif kind == "fill":
            if isinstance(own, int) and own in self.zero:
                return                          # already zeroes, shared or not
            if mine:
                self.zero.add(own)              # zeroed in place
            else:
                vol.map[c] = self.new_vid(zero=True)
        elif kind == "partial":
            if isinstance(own, int):
                if own not in self.zero and not mine:
                    vol.map[c] = self.new_vid()
            elif own == "missing" and vol.parent is not None and \
                    self.has_data(resolve(vol.parent.map, vol.parent.parent, c)):
                vol.map[c] = self.new_vid()     # copied up, then zeroed in part
        elif kind == "punch":
            if vol.parent is not None:
                vol.map[c] = None
            else:
                vol.map.pop(c, None)
        else:
            raise AssertionError(kind)

    def range_op(self, vol, off, length, kind):
        """kind: "write", "trim", "zero", "zero-nohole"."""
        end = off + length
        for c in range(off // C, (end + C - 1) // C):
            whole = off <= c * C and (c + 1) * C <= end
            if kind == "write":
                k = "write"
            elif not whole:
                k = "partial"
            elif kind == "zero-nohole":
                k = "fill"
            else:
                k = "punch"
            self.cluster_op(vol, c, k)

    def flatten(self, vol):
        for c in range(vol.size // C):
            if c not in vol.map and self.has_data(resolve(vol.parent.map, vol.parent.parent, c)):
                vol.map[c] = self.new_vid()
        vol.map = {c: x for c, x in vol.map.items() if x is not None}
        vol.parent = None


# ---- the daemon and its clients ----

class Daemon:
    def __init__(self, tmp):
        self.tmp = tmp
        self.data = os.path.join(tmp, "data")
        self.sock = os.path.join(tmp, "nbd.sock")
        self.ctl = os.path.join(tmp, "ctl.sock")
        self.log = os.path.join(tmp, "ballastd.log")
        self.proc = None
        self.rpc_sock = None
        self.rpc_file = None
        self.handles = {}
        self.next_id = 1

    def start(self):
        ready0 = self._ready_count()
        logf = open(self.log, "a")
        self.proc = subprocess.Popen([BALLASTD, "--data-dir", self.data, "--listen",
                                      "unix:" + self.sock, "--control", self.ctl],
                                     stdout=logf, stderr=subprocess.STDOUT)
        logf.close()
        deadline = time.time() + 20
        while self._ready_count() <= ready0:
            if self.proc.poll() is not None:
                raise TestFailure("ballastd exited during start-up (%d)" % self.proc.returncode)
            if time.time() > deadline:
                raise TestFailure("ballastd did not start within 20 s")
            time.sleep(0.05)

    def _ready_count(self):
        try:
            with open(self.log, errors="replace") as f:
                return f.read().count("ballastd ready")
        except FileNotFoundError:
            return 0

    def stop(self):
        self.close_all()
        if self.proc is None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise TestFailure("ballastd did not stop within 60 s of SIGTERM")
        self.proc = None
        if rc != 0:
            raise TestFailure("ballastd exited %d after SIGTERM" % rc)

    def kill(self):
        self.close_all()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.proc = None

    def close_all(self):
        for name in list(self.handles):
            self.drop(name)
        if self.rpc_sock:
            self.rpc_file.close()
            self.rpc_sock.close()
            self.rpc_sock = self.rpc_file = None

    def drop(self, export):
        h = self.handles.pop(export, None)
        if h is not None:
            try:
                h.shutdown()
            except nbd.Error:
                pass
            del h       # the last reference: libnbd closes the handle

    def h(self, export):
        h = self.handles.get(export)
        if h is None:
            h = nbd.NBD()
            h.set_export_name(export)
            h.connect_unix(self.sock)
            self.handles[export] = h
        return h

    def call(self, method, **params):
        """Returns (result, None) or (None, error object)."""
        if self.rpc_sock is None:
            self.rpc_sock = socket.socket(socket.AF_UNIX)
            self.rpc_sock.settimeout(120)
            self.rpc_sock.connect(self.ctl)
            self.rpc_file = self.rpc_sock.makefile("rb")
        self.next_id += 1
        req = {"jsonrpc": "2.0", "id": self.next_id, "method": method, "params": params}
        self.rpc_sock.sendall(json.dumps(req).encode() + b"\n")
        line = self.rpc_file.readline()
        if not line:
            raise TestFailure("control socket closed during %s" % method)
        resp = json.loads(line)
        if resp.get("id") != self.next_id:
            raise TestFailure("response id %r for request %d" % (resp.get("id"), self.next_id))
        return resp.get("result"), resp.get("error")

    def call_settled(self, method, expect_ok, **params):
        """call(), but when success is expected, retry EBUSY for a moment:
        a connection just shut down may not have been closed by the
        server yet."""
        deadline = time.time() + 5
        while True:
            res, err = self.call(method, **params)
            if not (expect_ok and err and err["code"] == EBUSY_CODE and time.time() < deadline):
                return res, err
            time.sleep(0.05)

    def ok(self, method, **params):
        res, err = self.call(method, **params)
        if err:
            raise TestFailure("%s %r failed: %s" % (method, params, err))
        return res


# ---- the test ----

class Runner:
    def __init__(self, seed, d):
        self.rnd = random.Random(seed)
        self.seed = seed
        self.d = d
        self.m = Model()
        self.vol_seq = 0
        self.snap_seq = 0
        self.history = []
        self.counts = {}

    def log(self, s):
        self.history.append(s)
        del self.history[:-60]

    def count(self, what):
        self.counts[what] = self.counts.get(what, 0) + 1

    # -- helpers --

    def pick_vol(self):
        return self.rnd.choice(sorted(self.m.vols.values(), key=lambda v: v.name))

    def pick_range(self, vol):
        r = self.rnd.random()
        if r < 0.4:     # whole clusters
            c = self.rnd.randrange(vol.size // C)
            n = min(self.rnd.choice((1, 1, 2, 3, 8)), vol.size // C - c)
            return c * C, n * C
        if r < 0.6:     # inside one cluster
            c = self.rnd.randrange(vol.size // C)
            a = self.rnd.randrange(C - 1)
            return c * C + a, self.rnd.randint(1, C - a)
        off = self.rnd.randrange(vol.size - 1)
        return off, self.rnd.randint(1, min(vol.size - off, 300 << 10))

    def compare(self, export, expect, off, got):
        if got != expect:
            i = next(k for k in range(len(got)) if got[k] != expect[k])
            raise TestFailure("%s: read at %d+%d differs first at byte %d (cluster %d): got %#x, want %#x"
                              % (export, off, len(got), off + i, (off + i) // C, got[i], expect[i]))

    def read_check(self, obj, off, length):
        got = self.d.h(obj.export).pread(length, off)
        self.compare(obj.export, obj.data[off:off + length], off, got)

    def verify_all(self):
        for v in list(self.m.vols.values()):
            for o in [v] + v.snaps:
                h = self.d.h(o.export)
                if h.get_size() != len(o.data):
                    raise TestFailure("%s: size %d, want %d" % (o.export, h.get_size(), len(o.data)))
                for off in range(0, len(o.data), 1 << 20):
                    self.read_check(o, off, min(1 << 20, len(o.data) - off))
                self.d.drop(o.export)     # keep few connections open

    def check_space(self, why):
        """Wait for freed clusters to settle, then compare with the model."""
        deadline = time.time() + 15
        while True:
            st = self.d.ok("store.stats")
            if st["pool_clusters_pending"] == 0:
                break
            if time.time() > deadline:
                raise TestFailure("after %s: pool_clusters_pending still %d after 15 s"
                                  % (why, st["pool_clusters_pending"]))
            # A flush drives a sync cycle, which releases pending clusters.
            v = next(iter(self.m.vols.values()), None)
            if v is not None:
                self.d.h(v.export).flush()
            time.sleep(0.02)
        want = self.m.used_clusters()
        if st["pool_clusters_used"] != want:
            raise TestFailure("after %s: pool_clusters_used %d, model %d (stats %r)\n%s"
                              % (why, st["pool_clusters_used"], want, st, self.space_report()))
        self.count("space checks")

    def space_report(self):
        """Per volume and snapshot: clusters mapped, model against daemon."""
        lines = []
        for v in sorted(self.m.vols.values(), key=lambda x: x.name):
            for o in [v] + v.snaps:
                par = o.parent
                n = sum(1 for c in range(len(o.data) // C)
                        if isinstance(resolve(o.map, par, c), int))
                if isinstance(o, Snap):
                    res, _ = self.d.call("snapshot.show", volume=o.vol.name, name=o.name)
                else:
                    res, _ = self.d.call("volume.show", name=o.name)
                got = res["allocated"] // C if res else None
                lines.append("  %-10s parent %-10s model %4d clusters mapped, daemon %s%s"
                             % (o.export, par.export if par else "-", n, got,
                                "" if got == n else "   <-- differs"))
                if got != n:
                    lines.append(self.cluster_report(o))
        return "\n".join(lines)

    def cluster_report(self, o):
        """Clusters the model and NBD block status disagree on (hole or not)."""
        h = nbd.NBD()
        h.add_meta_context("base:allocation")
        h.set_export_name(o.export)
        h.connect_unix(self.d.sock)
        holes = set()

        def cb(ctx, off, entries, err):
            for i in range(0, len(entries), 2):
                if entries[i + 1] & nbd.STATE_HOLE:
                    holes.update(range((off + C - 1) // C, (off + entries[i]) // C))
                off += entries[i]
            return 0
        size = len(o.data)
        off = 0
        while off < size:
            before = len(holes)
            h.block_status(size - off, off, cb)
            off = size      # one call; the reply may cover less
            del before
        h.shutdown()
        out = []
        for c in range(size // C):
            v = resolve(o.map, o.parent, c)
            if isinstance(v, int) == (c in holes):
                out.append("    cluster %d: model %s (own %r, bytes %s), daemon %s"
                           % (c, "mapped" if isinstance(v, int) else "hole",
                              o.map.get(c, "missing"),
                              "all zero" if not any(o.data[c * C:(c + 1) * C]) else "data",
                              "hole" if c in holes else "mapped"))
        return "\n".join(out[:10]) or "    (block status agrees with the model)"

    def expect_error(self, what, err, code):
        if not err:
            raise TestFailure("%s succeeded; the model expected error %d" % (what, code))
        if err["code"] != code:
            raise TestFailure("%s: error %r, the model expected code %d" % (what, err, code))

    # -- operations --

    def op_create(self):
        if len(self.m.vols) >= MAX_VOLS:
            return self.op_write()
        self.vol_seq += 1
        name = "v%d" % self.vol_seq
        size = self.rnd.choice(SIZES)
        self.log("create %s %d" % (name, size))
        self.d.ok("volume.create", name=name, size=size)
        self.m.vols[name] = Vol(name, size)

    def op_write(self):
        v = self.pick_vol()
        off, n = self.pick_range(v)
        buf = self.rnd.randbytes(n)
        flags = nbd.CMD_FLAG_FUA if self.rnd.random() < 0.05 else 0
        self.log("write %s %d+%d" % (v.name, off, n))
        self.d.h(v.export).pwrite(buf, off, flags)
        v.data[off:off + n] = buf
        self.m.range_op(v, off, n, "write")
        self.count("write")

    def op_trim(self):
        v = self.pick_vol()
        off, n = self.pick_range(v)
        self.log("trim %s %d+%d" % (v.name, off, n))
        self.d.h(v.export).trim(n, off)
        v.data[off:off + n] = bytes(n)
        self.m.range_op(v, off, n, "trim")
        self.count("trim")

    def op_zero(self):
        v = self.pick_vol()
        off, n = self.pick_range(v)
        nohole = self.rnd.random() < 0.5
        self.log("zero%s %s %d+%d" % (" NO_HOLE" if nohole else "", v.name, off, n))
        self.d.h(v.export).zero(n, off, nbd.CMD_FLAG_NO_HOLE if nohole else 0)
        v.data[off:off + n] = bytes(n)
        self.m.range_op(v, off, n, "zero-nohole" if nohole else "zero")
        self.count("zero no-hole" if nohole else "zero")

    def op_read(self):
        v = self.pick_vol()
        o = self.rnd.choice([v] + v.snaps)
        off, n = self.pick_range(o.vol if isinstance(o, Snap) else o)
        self.log("read %s %d+%d" % (o.export, off, n))
        self.read_check(o, off, n)
        self.count("read")

    def op_snapshot(self):
        v = self.pick_vol()
        if len(v.snaps) >= MAX_SNAPS:
            return self.op_delete_snapshot()
        self.snap_seq += 1
        name = "s%d" % self.snap_seq
        self.log("snapshot %s@%s" % (v.name, name))
        res = self.d.ok("snapshot.create", volume=v.name, name=name)
        if res["size"] != v.size:
            raise TestFailure("snapshot %s@%s: size %d, want %d" % (v.name, name, res["size"], v.size))
        v.snaps.append(Snap(v, name, v.data, v.map, v.parent))
        self.count("snapshot")

    def op_clone(self):
        snaps = self.m.snaps()
        if not snaps or len(self.m.vols) >= MAX_VOLS:
            return self.op_snapshot()
        s = self.rnd.choice(snaps)
        self.vol_seq += 1
        name = "c%d" % self.vol_seq
        self.log("clone %s %s" % (s.export, name))
        res = self.d.ok("volume.clone", volume=s.vol.name, snapshot=s.name, name=name)
        if res.get("parent") != s.export or res["size"] != len(s.data):
            raise TestFailure("clone %s: result %r" % (name, res))
        v = Vol(name, len(s.data), parent=s)
        self.m.vols[name] = v
        self.count("clone")

    def op_delete_snapshot(self):
        snaps = self.m.snaps()
        if not snaps:
            return self.op_snapshot()
        s = self.rnd.choice(snaps)
        self.d.drop(s.export)
        self.log("delete snapshot %s" % s.export)
        busy = bool(self.m.dependents(s))
        res, err = self.d.call_settled("snapshot.delete", not busy, volume=s.vol.name,
                                       name=s.name)
        if busy:
            self.expect_error("snapshot.delete %s with dependents" % s.export, err, EBUSY_CODE)
            self.count("snapshot delete refused")
            return
        if err:
            raise TestFailure("snapshot.delete %s: %r" % (s.export, err))
        s.vol.snaps.remove(s)
        self.count("snapshot delete")
        self.check_space("snapshot.delete %s" % s.export)

    def op_delete_volume(self):
        if len(self.m.vols) <= 1:
            return self.op_create()
        v = self.pick_vol()
        recursive = self.rnd.random() < 0.7
        for o in [v] + v.snaps:
            self.d.drop(o.export)
        self.log("delete volume %s%s" % (v.name, " recursive" if recursive else ""))
        refused = (v.snaps and not recursive) or any(self.m.dependents(s) for s in v.snaps)
        res, err = self.d.call_settled("volume.delete", not refused, name=v.name,
                                       recursive=recursive)
        if v.snaps and not recursive:
            self.expect_error("volume.delete %s with snapshots" % v.name, err, ENOTEMPTY_CODE)
            self.count("volume delete refused (snapshots)")
            return
        if any(self.m.dependents(s) for s in v.snaps):
            self.expect_error("volume.delete %s whose snapshots have clones" % v.name, err,
                              EBUSY_CODE)
            self.count("volume delete refused (clones)")
            return
        if err:
            raise TestFailure("volume.delete %s: %r" % (v.name, err))
        del self.m.vols[v.name]
        self.count("volume delete")
        self.check_space("volume.delete %s" % v.name)

    def op_flatten(self):
        clones = [v for v in self.m.vols.values() if v.parent is not None]
        if not clones:
            return self.op_clone()
        plain = [x for x in clones if not x.snaps]
        if plain and self.rnd.random() < 0.7:
            clones = plain
        v = self.rnd.choice(sorted(clones, key=lambda x: x.name))
        self.log("flatten %s" % v.name)
        res, err = self.d.call("volume.flatten", name=v.name)
        if err and v.snaps and err["code"] in (EBUSY_CODE, -32000 - errno.EINVAL):
            # A clone whose own snapshots still read through the parent:
            # refusing is a valid answer too.
            self.count("flatten refused (clone has snapshots)")
            return
        if err:
            raise TestFailure("volume.flatten %s: %r" % (v.name, err))
        if res.get("parent") is not None:
            raise TestFailure("volume.flatten %s: parent still %r" % (v.name, res["parent"]))
        self.m.flatten(v)
        self.count("flatten")
        self.check_space("volume.flatten %s" % v.name)

    def restart(self):
        self.log("restart")
        self.d.stop()
        self.d.start()
        self.count("restart")
        self.verify_all()
        self.check_space("restart")

    def run(self, ops, time_limit):
        ops_table = ((self.op_write, 30), (self.op_read, 14), (self.op_trim, 8),
                     (self.op_zero, 10), (self.op_snapshot, 7), (self.op_clone, 4),
                     (self.op_delete_snapshot, 5), (self.op_delete_volume, 2),
                     (self.op_flatten, 2), (self.op_create, 2))
        fns = [f for f, _ in ops_table]
        weights = [w for _, w in ops_table]
        for _ in range(3):
            self.op_create()
        start = time.time()
        next_restart = self.rnd.randint(200, 400)
        done = 0
        for i in range(ops):
            if time.time() - start > time_limit:
                print("# time limit reached after %d operations" % i)
                break
            if i == next_restart:
                self.restart()
                next_restart = i + self.rnd.randint(200, 400)
            if i % 250 == 249:
                self.verify_all()
            self.rnd.choices(fns, weights)[0]()
            done = i + 1
        self.verify_all()
        self.check_space("the end")
        self.restart()
        return done, time.time() - start


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=int(os.environ.get("BAL_SEED", "0")) or None)
    ap.add_argument("--ops", type=int, default=int(os.environ.get("BAL_OPS", "10000")))
    ap.add_argument("--time-limit", type=float, default=150.0)
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args()
    seed = args.seed if args.seed is not None else int.from_bytes(os.urandom(4), "little")
    print("# seed %d (rerun: %s --seed %d)" % (seed, sys.argv[0], seed), flush=True)
    tmp = tempfile.mkdtemp(prefix="ballast-snapmodel.")
    d = Daemon(tmp)
    r = Runner(seed, d)
    rc = 1
    try:
        d.start()
        done, secs = r.run(args.ops, args.time_limit)
        d.stop()
        print("# %d operations in %.1f s: %s" % (done, secs, ", ".join(
            "%s %d" % kv for kv in sorted(r.counts.items()))))
        print("ok")
        rc = 0
    except (TestFailure, nbd.Error, OSError, AssertionError) as e:
        print("FAIL (seed %d): %s: %s" % (seed, type(e).__name__, e), file=sys.stderr)
        print("last operations:\n  " + "\n  ".join(r.history), file=sys.stderr)
        try:
            with open(d.log, errors="replace") as f:
                print("--- ballastd log (tail)\n" + "".join(f.readlines()[-30:]), file=sys.stderr)
        except OSError:
            pass
    finally:
        d.kill()
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            print("# kept %s" % tmp)
    return rc


if __name__ == "__main__":
    sys.exit(main())
