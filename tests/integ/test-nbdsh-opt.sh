#!/bin/bash
# SPDX-License-Identifier: MIT
# libnbd in option-negotiation mode against ballastd, over the Unix socket
# and TCP: NBD_OPT_LIST, LIST_META_CONTEXT, INFO (known and unknown names),
# GO; then the negotiated flags, block sizes, a read/write/flush round trip,
# block status, and the server's errors for out-of-range requests (with
# libnbd's own client-side checks turned off so the server sees them).
. "$(dirname "$0")/lib.sh"

bal_start
bal volume create alpha --size 1G || fail "volume create alpha"
bal volume create beta --size 64M || fail "volume create beta"
bal volume create gamma.1 --size 3M || fail "volume create gamma.1"

/usr/bin/python3 - "$SOCK" "$PORT" <<'PY' || fail "libnbd option-mode checks"
import errno
import os
import sys

import nbd

SOCK, PORT = sys.argv[1], sys.argv[2]
SIZES = {"alpha": 1 << 30, "beta": 64 << 20, "gamma.1": 3 << 20}


def connect(h, transport):
    if transport == "unix":
        h.connect_unix(SOCK)
    else:
        h.connect_tcp("127.0.0.1", PORT)


def expect_error(what, fn, want_errno=None):
    try:
        fn()
    except nbd.Error as e:
        got = e.errno if isinstance(e.errno, int) else getattr(errno, str(e.errno), e.errno)
        if want_errno is not None and got != want_errno:
            raise AssertionError("%s: errno %s (%s), want %s" % (what, e.errno, e, errno.errorcode[want_errno]))
        return e
    raise AssertionError("%s: succeeded, should have failed" % what)


def opt_phase(transport):
    h = nbd.NBD()
    h.set_opt_mode(True)
    assert h.get_opt_mode()
    connect(h, transport)
    assert h.aio_is_negotiating(), "not negotiating after connect in opt mode"
    assert h.get_protocol() == "newstyle-fixed", h.get_protocol()
    assert h.get_structured_replies_negotiated(), "structured replies not negotiated"
    assert not h.get_tls_negotiated()

    names = []
    n = h.opt_list(lambda name, desc: names.append(name) or 0)
    assert sorted(names) == sorted(SIZES), "opt_list: %r" % names
    assert n == len(SIZES), "opt_list returned %r" % n

    # Contexts are listed for the export name set on the handle.
    h.set_export_name("beta")
    ctxs = []
    h.opt_list_meta_context(lambda ctx: ctxs.append(ctx) or 0)
    assert "base:allocation" in ctxs, "opt_list_meta_context: %r" % ctxs

    # Asking for base:allocation by name lists exactly it; an unknown
    # namespace lists nothing.
    h.add_meta_context("base:allocation")
    ctxs = []
    h.opt_list_meta_context(lambda ctx: ctxs.append(ctx) or 0)
    assert ctxs == ["base:allocation"], ctxs
    h.clear_meta_contexts()
    h.add_meta_context("nosuch:thing")
    ctxs = []
    h.opt_list_meta_context(lambda ctx: ctxs.append(ctx) or 0)
    assert ctxs == [], ctxs
    h.clear_meta_contexts()

    for name, size in SIZES.items():
        h.set_export_name(name)
        h.opt_info()
        assert h.get_size() == size, "opt_info %s: size %d, want %d" % (name, h.get_size(), size)
        assert not h.is_read_only()
        assert h.can_flush() and h.can_fua() and h.can_multi_conn()
        assert h.get_block_size(nbd.SIZE_MINIMUM) == 1
        assert h.get_block_size(nbd.SIZE_PREFERRED) == 4096
        assert h.get_block_size(nbd.SIZE_MAXIMUM) == 32 << 20

    h.set_export_name("nosuch")
    expect_error("opt_info unknown export", h.opt_info)
    assert h.aio_is_negotiating(), "connection lost after a failed opt_info"
    h.set_export_name("")
    expect_error("opt_info empty name (no --default-export)", h.opt_info)
    h.set_export_name("nosuch")
    expect_error("opt_go unknown export", h.opt_go)
    assert h.aio_is_negotiating(), "connection lost after a failed opt_go"

    h.set_export_name("alpha")
    h.add_meta_context("base:allocation")
    h.opt_go()
    assert h.aio_is_ready(), "not ready after opt_go"
    return h


def transmission(h):
    assert h.get_size() == 1 << 30
    assert h.can_meta_context("base:allocation")
    flags = {f: getattr(h, f)() for f in ("can_flush", "can_fua", "can_trim", "can_zero", "can_fast_zero",
                                          "can_multi_conn", "can_cache", "can_df")}
    assert all(flags.values()), flags
    assert not h.is_read_only()
    assert (h.get_block_size(nbd.SIZE_MINIMUM), h.get_block_size(nbd.SIZE_PREFERRED),
            h.get_block_size(nbd.SIZE_MAXIMUM)) == (1, 4096, 32 << 20)

    # Unaligned write, FUA write, flush, read back.
    off = 5 * (1 << 20) + 12345
    buf = os.urandom((1 << 20) + 77)
    h.pwrite(buf, off)
    h.pwrite(b"\x42" * 4096, 40960, nbd.CMD_FLAG_FUA)
    h.flush()
    assert h.pread(len(buf), off) == buf, "read back differs"
    assert h.pread(4096, 40960) == b"\x42" * 4096
    assert h.pread(100, off - 100) == bytes(100), "bytes before the write are not zero"
    assert h.pread(1, 0) == b"\0"
    assert h.pread(4096, (1 << 30) - 4096) == bytes(4096), "last block not zero"
    h.cache(1 << 20, 0)

    # Block status: the written range is data; a far range is a hole.
    seen = []
    h.block_status(1 << 20, 300 << 20,
                   lambda meta, o, ents, err: seen.append((meta, list(ents))) or 0)
    assert seen and seen[0][0] == "base:allocation", seen
    ents = seen[0][1]
    assert ents[1] & 3 == 3, "untouched range: flags %r" % ents
    seen = []
    h.block_status(1 << 20, 6 << 20,
                   lambda meta, o, ents, err: seen.append((meta, list(ents))) or 0)
    assert seen[0][1][1] == 0, "written range: flags %r" % seen[0][1]

    # Zeroing and trimming read back as zeroes.
    h.zero(8192, off, nbd.CMD_FLAG_NO_HOLE)
    assert h.pread(8192, off) == bytes(8192)
    h.zero(8192, off + 8192)
    assert h.pread(8192, off + 8192) == bytes(8192)
    assert h.pread(100, off + 16384) == buf[16384:16484], "zero went too far"

    # Server-side errors (libnbd's own checks off).
    h.set_strict_mode(0)
    size = h.get_size()
    expect_error("read past end", lambda: h.pread(4096, size - 2048), errno.EINVAL)
    expect_error("write past end", lambda: h.pwrite(b"x" * 4096, size - 2048), errno.ENOSPC)
    expect_error("trim past end", lambda: h.trim(4096, size), errno.ENOSPC)
    expect_error("zero-length read", lambda: h.pread(0, 0), errno.EINVAL)
    expect_error("read over 32 MiB", lambda: h.pread((32 << 20) + 1, 0), errno.EINVAL)
    # The connection survives those errors.
    assert h.pread(4096, 40960) == b"\x42" * 4096
    h.shutdown()


for transport in ("unix", "tcp"):
    h = opt_phase(transport)
    transmission(h)
    del h
    # opt_abort ends a negotiation cleanly.
    h = nbd.NBD()
    h.set_opt_mode(True)
    connect(h, transport)
    h.opt_abort()
    assert h.aio_is_closed()
    del h
    print("%s: ok" % transport)
PY
note "PASS"
