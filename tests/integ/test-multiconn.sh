#!/bin/bash
# SPDX-License-Identifier: MIT
# Several connections to one volume (NBD multi-conn): what one connection
# wrote and flushed, every other connection reads, whichever connection sent
# the flush; concurrent writers to disjoint ranges all land; trim and zero
# on one connection are seen by the others; block status agrees.
. "$(dirname "$0")/lib.sh"

bal_start
bal volume create mc --size 256M || fail "volume create"

/usr/bin/python3 - "$SOCK" "$PORT" <<'PY' || fail "multi-conn checks"
import os
import random
import sys

import nbd

SOCK, PORT = sys.argv[1], sys.argv[2]
M = 1 << 20


def conn(tcp):
    h = nbd.NBD()
    h.set_export_name("mc")
    h.add_meta_context("base:allocation")
    if tcp:
        h.connect_tcp("127.0.0.1", PORT)
    else:
        h.connect_unix(SOCK)
    assert h.can_multi_conn(), "server does not advertise multi-conn"
    return h


hs = [conn(False), conn(False), conn(True), conn(True)]
a, b, c, d = hs
rng = random.Random(1234)

# Write + flush on one connection, read on another.
buf = os.urandom(M)
a.pwrite(buf, 3 * M + 17)
a.flush()
assert b.pread(M, 3 * M + 17) == buf, "b does not see a's flushed write"
assert c.pread(M, 3 * M + 17) == buf, "c (tcp) does not see a's flushed write"

# Write on one, flush on another, read on a third.
buf = os.urandom(256 << 10)
c.pwrite(buf, 10 * M)
d.flush()
assert b.pread(len(buf), 10 * M) == buf, "b does not see c's write after d's flush"

# Ping-pong overwrites of one block: each connection sees the latest.
for i in range(50):
    w, r = rng.sample(hs, 2)
    blk = bytes([i]) * 4096 + os.urandom(512)
    w.pwrite(blk, 20 * M + 1000, nbd.CMD_FLAG_FUA if i % 2 else 0)
    if i % 2 == 0:
        w.flush()
    got = r.pread(len(blk), 20 * M + 1000)
    assert got == blk, "round %d: stale read" % i

# Concurrent writers: each connection queues many writes to its own slice,
# all in flight at once; then one flush per connection; every connection
# reads every slice.
expect = {}
for k, h in enumerate(hs):
    for j in range(32):
        off = 64 * M + k * 16 * M + j * 512 * 1024 + rng.randrange(0, 4096)
        data = os.urandom(rng.choice((512, 4096, 65536, 100000)))
        expect[off] = data
        h.aio_pwrite(data, off)
while any(h.aio_in_flight() for h in hs):
    for h in hs:
        if h.aio_in_flight():
            h.poll(0)
for h in hs:
    h.flush()
for off, data in expect.items():
    for h in hs:
        assert h.pread(len(data), off) == data, "slice write at %d not seen" % off

# Trim and zero on one connection are seen by the others (Ballast reads
# freed clusters as zeroes), and so is the allocation in block status.
a.pwrite(b"\x55" * (2 * M), 128 * M)
a.flush()
ents = []
d.block_status(2 * M, 128 * M, lambda m, o, e, err: ents.extend(e) or 0)
assert ents and ents[1] == 0, "d: written range not data: %r" % ents
b.trim(M, 128 * M)
b.flush()
assert c.pread(M, 128 * M) == bytes(M), "c sees data in the trimmed range"
ents = []
d.block_status(M, 128 * M, lambda m, o, e, err: ents.extend(e) or 0)
assert ents and ents[1] & 2, "d: trimmed range not zero: %r" % ents
c.zero(4096, 129 * M + 4096)
c.flush()
got = a.pread(3 * 4096, 129 * M)
assert got == b"\x55" * 4096 + bytes(4096) + b"\x55" * 4096, "a: zeroed block not seen"

for h in hs:
    h.shutdown()
print("multi-conn: ok (%d connections)" % len(hs))
PY
note "PASS"
