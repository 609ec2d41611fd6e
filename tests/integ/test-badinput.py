#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Bad input on the NBD socket: every case sends something a well-behaved
client would not and asserts Ballast's exact answer (or a clean disconnect),
then a second client, connected through libnbd at the start and kept open,
does a write+read+flush round trip that must still work, and the daemon
must hold no more sockets than before the case (a connection the case
closed, or that the daemon dropped, must be gone within 5 s).

Run by test-badinput.sh, which starts ballastd with --handshake-timeout 2
--request-timeout 2 and creates the exports:

  test-badinput.py --unix SOCK --port PORT --pid PID \
      --export v --size 64M --export2 w --size2 32M

Run without arguments (as tests/run.sh does), it runs that wrapper.  One
line per case (ok/FAIL) and a closing summary; exit 1 on any failure.
`--only SUBSTR` (repeatable) runs matching cases, `--list` names them.
`--hold N` instead opens N idle connections (a quarter in transmission, or
--hold-trans; --hold-half of those with a half-sent WRITE, default 5, the
rest at the greeting), writes "ready" to stdout and keeps them open until
stdin closes: the wrapper then stops the daemon.

Expected replies (the NBD contract of ballastd; other servers differ):

  what is sent                                    expected
  ----------------------------------------------  ---------------------------
  client flags with an unknown bit, or garbage    disconnect, nothing sent
  option with a wrong IHAVEOPT magic              disconnect
  a transmission request during option haggling   disconnect
  option length > 16 KiB (up to 2^32-1)           disconnect, no allocation
  unknown option (16 KiB of data)                 NBD_REP_ERR_UNSUP, session ok
  STARTTLS, EXTENDED_HEADERS, PEEK_EXPORT         NBD_REP_ERR_UNSUP
  INFO/GO name "" (no --default-export)           NBD_REP_ERR_UNKNOWN
  INFO/GO name of 4096 bytes, no such volume      NBD_REP_ERR_UNKNOWN
  INFO/GO name of 5000 bytes, or with a NUL       NBD_REP_ERR_INVALID
  INFO/GO with malformed data                     NBD_REP_ERR_INVALID
  INFO                                            INFO_EXPORT (size, flags),
                                                  BLOCK_SIZE 1/4096/32 MiB,
                                                  NAME if asked, then ACK
  INFO on w then GO on v                          GO answers for v
  LIST with data                                  NBD_REP_ERR_INVALID
  LIST                                            SERVER per volume, ACK
  STRUCTURED_REPLY with data                      NBD_REP_ERR_INVALID
  SET_META_CONTEXT before STRUCTURED_REPLY        NBD_REP_ERR_INVALID
  LIST/SET_META_CONTEXT base:allocation           META_CONTEXT (id), ACK
  EXPORT_NAME of an unknown name, or ""           disconnect
  ABORT                                           ACK (optional), disconnect
  READ/CACHE/BLOCK_STATUS past the end            EINVAL
  WRITE/TRIM/WRITE_ZEROES past the end            ENOSPC (WRITE payload read)
  READ over 32 MiB                                EINVAL
  WRITE over 32 MiB, up to 64 MiB                 EINVAL, payload drained
  WRITE over 64 MiB                               disconnect at once
  zero length READ/WRITE/TRIM/WRITE_ZEROES/CACHE  EINVAL
  unknown command (8, 99), unknown command flags  EINVAL
  DF on READ without structured replies           EINVAL
  BLOCK_STATUS without a meta context             EINVAL
  FLUSH with nonzero offset or length             EINVAL
  bad request magic                               disconnect
  DISC                                            no reply, disconnect
  half a header / WRITE without its payload       dropped after request timeout
  idle or unfinished handshake                    dropped after handshake timeout
  idle transmission connection                    kept
  structured READ error                           one NBD_REPLY_TYPE_ERROR
                                                  chunk with the DONE flag
"""

import argparse
import os
import random
import socket
import struct
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from nbdraw import *  # noqa: E402,F401,F403
from nbdraw import Conn, Disconnected, ProtocolError, name_of  # noqa: E402

MiB = 1 << 20
MAX_REQ = 32 * MiB          # NBD_INFO_BLOCK_SIZE maximum
DRAIN_MAX = 64 * MiB        # WRITE payloads up to this are drained
OPT_MAX = 16 * 1024         # longer options are a hard disconnect
NAME_MAX = 4096

# Transmission flags ballastd advertises for a writable volume (SEND_DF
# only once structured replies are negotiated).
TFLAGS = (TF_HAS_FLAGS | TF_SEND_FLUSH | TF_SEND_FUA | TF_SEND_TRIM
          | TF_SEND_WRITE_ZEROES | TF_CAN_MULTI_CONN | TF_SEND_CACHE
          | TF_SEND_FAST_ZERO)

# Disjoint regions of export v so cases do not disturb each other.
REG_RW = 1 * MiB
REG_STRUCT = 16 * MiB
REG_BS_DATA = 40 * MiB
REG_INFO_GO = 48 * MiB
REG_HOLE = 56 * MiB         # never written
REG_SECOND = 63 * MiB       # the libnbd client's


class Fail(Exception):
    pass


def check(cond, msg):
    if not cond:
        raise Fail(msg)


def rep(v):
    return name_of("rep", v)


def err(v):
    return name_of("errno", v)


CASES = []


def case(fn):
    CASES.append((fn.__name__.replace("_", "-"), fn))
    return fn


class Ctx:
    def __init__(self, a):
        self.a = a
        self.v = a.export
        self.w = a.export2

    def conn(self, timeout=5.0):
        return Conn(unix=self.a.unix, timeout=timeout)

    def tcp(self, timeout=5.0):
        return Conn(tcp=("127.0.0.1", self.a.port), timeout=timeout)

    def go(self, structured=False, meta=False, name=None):
        return self.conn().connect_go(name or self.v, structured, meta)


# -- assertion helpers ------------------------------------------------------

def expect_closed(c, what, within=3.0):
    """The server must close without sending anything."""
    closed, t, got = c.wait_closed(within)
    check(closed, "%s: expected disconnect, connection still open after %.1fs"
          " (received %r)" % (what, t, got[:64]))
    check(not got, "%s: expected disconnect with no reply, got %d bytes %r"
          % (what, len(got), got[:64]))
    return t


def expect_opt(c, opt, data, want, what):
    """Send one option; its (only) reply must be @want."""
    c.send_option(opt, data)
    rtype, rdata = c.read_option_reply(opt)
    check(rtype == want, "%s: sent %s with %d bytes of data, expected %s, got %s %r"
          % (what, name_of("opt", opt), len(data), rep(want), rep(rtype), rdata[:80]))
    return rdata


def expect_go_ok(c, name, what):
    r = c.go(name)
    check(isinstance(r, dict), "%s: GO %r after the error failed: %s"
          % (what, name, rep(r) if isinstance(r, int) else r))


def expect_errno(c, want, what, cmd, offset=0, length=0, flags=0, payload=b"",
                 cookie=None):
    """Send one request; its reply must carry NBD error @want.  With
    structured replies, an error is a single ERROR chunk with DONE (READ and
    BLOCK_STATUS must use chunks; others may use a simple reply)."""
    cookie = cookie if cookie is not None else random.getrandbits(64)
    e, _, chunks = c.request(cmd, offset, length, flags, cookie, payload)
    check(e == want, "%s: sent cmd %d flags %#x offset %#x length %d, expected %s,"
          " got %s" % (what, cmd, flags, offset, length, err(want), err(e)))
    if c.structured and cmd in (CMD_READ, CMD_BLOCK_STATUS):
        check(len(chunks) == 1 and chunks[0][1] == REPLY_TYPE_ERROR
              and chunks[0][0] & REPLY_FLAG_DONE,
              "%s: expected one NBD_REPLY_TYPE_ERROR chunk with DONE, got %r"
              % (what, [(f, name_of("chunk", t), len(p)) for f, t, p in chunks]))
    elif chunks:
        check(len(chunks) == 1 and chunks[0][1] in (REPLY_TYPE_ERROR,)
              and chunks[0][0] & REPLY_FLAG_DONE,
              "%s: error chunks %r" % (what, chunks))


def expect_ok(c, what, cmd, offset=0, length=0, flags=0, payload=b""):
    cookie = random.getrandbits(64)
    e, data, _ = c.request(cmd, offset, length, flags, cookie, payload)
    check(e == 0, "%s: cmd %d offset %#x length %d failed with %s"
          % (what, cmd, offset, length, err(e)))
    return data


def still_usable(c, what):
    """A 4 KiB write + read on the same connection."""
    buf = os.urandom(4096)
    expect_ok(c, what + " (write after)", CMD_WRITE, REG_RW + 512 * 1024, 4096,
              payload=buf)
    got = expect_ok(c, what + " (read after)", CMD_READ, REG_RW + 512 * 1024, 4096)
    check(got == buf, "%s: data read back after the error differs" % what)


def proc_mem(pid):
    out = {}
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("VmRSS", "VmHWM", "VmPeak", "VmSize"):
                out[k] = int(v.split()[0]) * 1024
    return out


# -- handshake ----------------------------------------------------------------

@case
def greeting(x):
    for c in (x.conn(), x.tcp()):
        with c:
            flags = c.read_greeting()
            check(flags == FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES,
                  "handshake flags %#x, expected FIXED_NEWSTYLE|NO_ZEROES (0x3)" % flags)


@case
def client_flags_garbage(x):
    with x.conn() as c:
        c.read_greeting()
        try:
            c.send(b"\xde\xad\xbe\xef" + b"garbage!" * 8)
        except Disconnected:
            return
        expect_closed(c, "client flags 0xdeadbeef + junk")


@case
def client_flags_unknown(x):
    for flags in (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES | 4,
                  FLAG_FIXED_NEWSTYLE | 0x80000000):
        with x.conn() as c:
            c.read_greeting()
            c.send_client_flags(flags)
            expect_closed(c, "client flags %#x" % flags)


@case
def option_bad_magic(x):
    with x.conn() as c:
        c.handshake()
        c.send_option(OPT_GO, Conn.info_data(x.v), magic=IHAVEOPT ^ 1)
        expect_closed(c, "GO with option magic %#x" % (IHAVEOPT ^ 1))
    with x.conn() as c:
        c.handshake()
        c.send(b"\x00" * 64)
        expect_closed(c, "64 zero bytes instead of an option")


@case
def request_in_option_phase(x):
    with x.conn() as c:
        c.handshake()
        c.send_request(CMD_READ, 0, 4096, cookie=7)
        expect_closed(c, "READ request header before GO")


@case
def option_huge_length(x):
    before = proc_mem(x.a.pid)
    for opt in (OPT_GO, OPT_LIST, 0x4242, OPT_EXPORT_NAME):
        for length in (OPT_MAX + 1, 1 << 31, 0xFFFFFFF0, 0xFFFFFFFF):
            what = "%s with length %#x" % (name_of("opt", opt), length)
            with x.conn() as c:
                c.handshake()
                c.send_option(opt, length=length)
                try:
                    for _ in range(16):   # 1 MiB that a reader would take
                        c.send(b"\xa5" * 65536)
                except (Disconnected, socket.timeout):
                    pass
                expect_closed(c, what)
    after = proc_mem(x.a.pid)
    check(after["VmHWM"] - before["VmHWM"] < 32 * MiB,
          "peak RSS grew by %d KiB over huge option lengths"
          % ((after["VmHWM"] - before["VmHWM"]) // 1024))
    check(after["VmPeak"] - before["VmPeak"] < 1024 * MiB,
          "peak virtual size grew by %d MiB over huge option lengths"
          " (an allocation of the announced length?)"
          % ((after["VmPeak"] - before["VmPeak"]) // MiB))


@case
def option_16k_boundary(x):
    with x.conn() as c:
        c.handshake()
        expect_opt(c, 0x4242, b"z" * OPT_MAX, REP_ERR_UNSUP,
                   "unknown option with exactly 16 KiB")
        expect_go_ok(c, x.v, "after a 16 KiB option")


@case
def unsupported_options(x):
    with x.conn() as c:
        c.handshake()
        for opt, data in ((0x4242, b"hello"), (0x7FFFFFFF, b""),
                          (OPT_STARTTLS, b""), (OPT_EXTENDED_HEADERS, b""),
                          (OPT_PEEK_EXPORT, b"")):
            expect_opt(c, opt, data, REP_ERR_UNSUP, "option %#x" % opt)
        expect_go_ok(c, x.v, "after unsupported options")
        still_usable(c, "after unsupported options")


# -- export names -------------------------------------------------------------

BAD_NAMES = (
    ("empty", b"", REP_ERR_UNKNOWN),
    ("4096 bytes", b"a" * NAME_MAX, REP_ERR_UNKNOWN),
    ("4097 bytes", b"a" * (NAME_MAX + 1), REP_ERR_INVALID),
    ("5000 bytes", b"b" * 5000, REP_ERR_INVALID),
    ("embedded NUL", b"v\x00x", REP_ERR_INVALID),
    ("trailing NUL", b"v\x00", REP_ERR_INVALID),
    ("path", b"../v", REP_ERR_UNKNOWN),
    ("no such volume", b"nosuchvolume", REP_ERR_UNKNOWN),
)


def bad_names(x, opt):
    with x.conn() as c:
        c.handshake()
        for desc, name, want in BAD_NAMES:
            for infos in ((), (INFO_NAME, INFO_BLOCK_SIZE)):
                expect_opt(c, opt, Conn.info_data(name, infos), want,
                           "%s name %s, %d info requests"
                           % (name_of("opt", opt), desc, len(infos)))
        expect_go_ok(c, x.v, "after bad names")


@case
def info_bad_names(x):
    bad_names(x, OPT_INFO)


@case
def go_bad_names(x):
    bad_names(x, OPT_GO)


@case
def info_malformed(x):
    name = x.v.encode()
    cases = (
        ("empty data", b""),
        ("3 bytes", b"\x00\x00\x00"),
        ("name length past the data", struct.pack(">I", 100) + name + b"\x00\x00"),
        ("no info count", struct.pack(">I", len(name)) + name),
        ("info count 3, one given",
         struct.pack(">I", len(name)) + name + struct.pack(">HH", 3, INFO_NAME)),
        ("trailing junk",
         struct.pack(">I", len(name)) + name + struct.pack(">HH", 1, INFO_NAME) + b"xx"),
        ("odd info byte",
         struct.pack(">I", len(name)) + name + struct.pack(">H", 0) + b"\x01"),
    )
    for opt in (OPT_INFO, OPT_GO):
        with x.conn() as c:
            c.handshake()
            for desc, data in cases:
                expect_opt(c, opt, data, REP_ERR_INVALID,
                           "%s %s" % (name_of("opt", opt), desc))
            expect_go_ok(c, x.v, "after malformed INFO/GO")


@case
def info_then_go(x):
    with x.conn() as c:
        c.handshake()
        info = c.go(x.w, opt=OPT_INFO)
        check(isinstance(info, dict), "INFO %s: %r" % (x.w, info))
        size = struct.unpack(">QH", info[INFO_EXPORT])[0]
        check(size == x.a.size2, "INFO %s: size %d, expected %d" % (x.w, size, x.a.size2))
        r = c.go(x.v)
        check(isinstance(r, dict), "GO %s after INFO %s: %r" % (x.v, x.w, r))
        check(c.export_size == x.a.size,
              "GO %s after INFO %s: size %d, expected %d (the INFO export leaked)"
              % (x.v, x.w, c.export_size, x.a.size))
        expect_ok(c, "read past %s's end" % x.w, CMD_READ, REG_INFO_GO, 4096)


def check_info_contents(x, structured):
    with x.conn() as c:
        c.handshake()
        if structured:
            check(c.structured_reply() == REP_ACK, "STRUCTURED_REPLY refused")
        for opt in (OPT_INFO, OPT_GO):
            info = c.go(x.v, (INFO_NAME, INFO_BLOCK_SIZE), opt=opt)
            check(isinstance(info, dict), "%s %s: %r" % (name_of("opt", opt), x.v, info))
            size, tflags = struct.unpack(">QH", info[INFO_EXPORT])
            want = TFLAGS | (TF_SEND_DF if structured else 0)
            check(size == x.a.size, "INFO_EXPORT size %d, expected %d" % (size, x.a.size))
            check(tflags == want, "%s (structured=%s): transmission flags %#x,"
                  " expected %#x" % (name_of("opt", opt), structured, tflags, want))
            check(INFO_BLOCK_SIZE in info, "no NBD_INFO_BLOCK_SIZE though requested")
            bs = struct.unpack(">III", info[INFO_BLOCK_SIZE])
            check(bs == (1, 4096, MAX_REQ), "BLOCK_SIZE %r, expected (1, 4096, %d)"
                  % (bs, MAX_REQ))
            check(info.get(INFO_NAME) == x.v.encode(),
                  "INFO_NAME %r, expected %r" % (info.get(INFO_NAME), x.v))
        still_usable(c, "after GO with info requests")


@case
def info_contents(x):
    check_info_contents(x, False)


@case
def info_contents_structured(x):
    check_info_contents(x, True)


@case
def list_exports(x):
    with x.conn() as c:
        c.handshake()
        expect_opt(c, OPT_LIST, b"x", REP_ERR_INVALID, "LIST with 1 byte of data")
        expect_opt(c, OPT_LIST, b"\x00" * 4, REP_ERR_INVALID, "LIST with 4 bytes of data")
        rtype, _, before = c.option(OPT_LIST)
        check(rtype == REP_ACK, "LIST: final reply %s" % rep(rtype))
        names = set()
        for t, d in before:
            check(t == REP_SERVER, "LIST: reply %s, expected NBD_REP_SERVER" % rep(t))
            n = struct.unpack(">I", d[:4])[0]
            check(4 + n <= len(d), "LIST: name length %d in %d bytes" % (n, len(d)))
            names.add(d[4:4 + n].decode())
        check({x.v, x.w} <= names, "LIST gave %r, expected %s and %s" % (names, x.v, x.w))
        expect_go_ok(c, x.v, "after LIST")


@case
def structured_with_data(x):
    with x.conn() as c:
        c.handshake()
        expect_opt(c, OPT_STRUCTURED_REPLY, b"\x00", REP_ERR_INVALID,
                   "STRUCTURED_REPLY with 1 byte of data")
        check(c.structured_reply() == REP_ACK, "STRUCTURED_REPLY after the error refused")
        expect_go_ok(c, x.v, "after STRUCTURED_REPLY")
        check(c.tflags & TF_SEND_DF, "SEND_DF missing after STRUCTURED_REPLY")


@case
def set_meta_before_structured(x):
    with x.conn() as c:
        c.handshake()
        expect_opt(c, OPT_SET_META_CONTEXT, Conn.meta_data(x.v, ["base:allocation"]),
                   REP_ERR_INVALID, "SET_META_CONTEXT before STRUCTURED_REPLY")
        expect_go_ok(c, x.v, "after refused SET_META_CONTEXT")
        expect_errno(c, EINVAL, "BLOCK_STATUS after a refused SET_META_CONTEXT",
                     CMD_BLOCK_STATUS, 0, 65536)


@case
def meta_context(x):
    with x.conn() as c:
        c.handshake()
        check(c.structured_reply() == REP_ACK, "STRUCTURED_REPLY refused")
        for queries in (["base:allocation"], []):
            rtype, _, before = c.option(OPT_LIST_META_CONTEXT,
                                        Conn.meta_data(x.v, queries))
            check(rtype == REP_ACK, "LIST_META_CONTEXT %r: %s" % (queries, rep(rtype)))
            got = [(t, d[4:]) for t, d in before]
            check((REP_META_CONTEXT, b"base:allocation") in got,
                  "LIST_META_CONTEXT %r: replies %r, expected base:allocation"
                  % (queries, got))
        r = c.set_meta(x.v, ["x-nosuch:thing"])
        check(r == {}, "SET_META_CONTEXT x-nosuch:thing: %r, expected ACK alone" % (r,))
        r = c.set_meta(x.v, ["base:allocation"])
        check(isinstance(r, dict) and "base:allocation" in r,
              "SET_META_CONTEXT base:allocation: %r" % (r,))
        cid = r["base:allocation"]
        expect_go_ok(c, x.v, "after SET_META_CONTEXT")
        cookie = 0x1122334455667788
        e, _, chunks = c.request(CMD_BLOCK_STATUS, REG_HOLE, 65536, CMD_FLAG_REQ_ONE,
                                 cookie)
        check(e == 0, "BLOCK_STATUS: %s" % err(e))
        bs = [p for f, t, p in chunks if t == REPLY_TYPE_BLOCK_STATUS]
        check(len(bs) == 1, "BLOCK_STATUS: %d block status chunks" % len(bs))
        check(struct.unpack(">I", bs[0][:4])[0] == cid,
              "BLOCK_STATUS chunk context id %d, expected %d"
              % (struct.unpack(">I", bs[0][:4])[0], cid))


@case
def export_name_unknown(x):
    for name in (b"nosuchvolume", b"", b"a" * 5000):
        with x.conn() as c:
            c.handshake()
            c.send_option(OPT_EXPORT_NAME, name)
            expect_closed(c, "EXPORT_NAME of %d-byte unknown name" % len(name))


@case
def export_name_ok(x):
    for flags in (FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES, FLAG_FIXED_NEWSTYLE):
        with x.conn() as c:
            c.handshake(flags)
            size, tflags = c.export_name(x.v)
            check(size == x.a.size, "EXPORT_NAME size %d" % size)
            check(tflags == TFLAGS, "EXPORT_NAME flags %#x, expected %#x" % (tflags, TFLAGS))
            still_usable(c, "after EXPORT_NAME (client flags %#x)" % flags)


@case
def abort(x):
    with x.conn() as c:
        c.handshake()
        c.send_option(OPT_ABORT)
        try:
            rtype, _ = c.read_option_reply(OPT_ABORT)
            check(rtype == REP_ACK, "ABORT: reply %s, expected ACK" % rep(rtype))
        except Disconnected:
            return
        expect_closed(c, "after ABORT's ACK")


# -- transmission, simple replies ---------------------------------------------

@case
def roundtrip_cookies(x):
    with x.go() as c:
        buf = os.urandom(8192)
        for cookie in (0, 0xFFFFFFFFFFFFFFFF, 0xDEADBEEFCAFEF00D):
            e, _, _ = c.request(CMD_WRITE, REG_RW, len(buf), 0, cookie, buf)
            check(e == 0, "WRITE: %s" % err(e))
            e, data, _ = c.request(CMD_READ, REG_RW, len(buf), 0, cookie ^ 1)
            check(e == 0 and data == buf, "READ back: %s, equal=%s" % (err(e), data == buf))
            e, _, _ = c.request(CMD_FLUSH, 0, 0, 0, cookie)
            check(e == 0, "FLUSH: %s" % err(e))
        e, _, _ = c.request(CMD_WRITE, REG_RW, 4096, CMD_FLAG_FUA, 5, buf[:4096])
        check(e == 0, "WRITE with FUA: %s" % err(e))
        expect_ok(c, "READ 32 MiB (the maximum)", CMD_READ, 0, MAX_REQ)


def past_end(x, c):
    size = x.a.size
    for cmd in (CMD_READ, CMD_CACHE):
        for off, ln in ((size - 512, 1024), (size, 1), (size + 4096, 4096),
                        ((1 << 64) - 512, 1024), ((1 << 63), 512)):
            expect_errno(c, EINVAL, "past the end", cmd, off, ln)
    for off, ln in ((size - 512, 1024), (size, 512), ((1 << 64) - 512, 1024)):
        expect_errno(c, ENOSPC, "WRITE past the end", CMD_WRITE, off, ln,
                     payload=b"\x5a" * ln)
        expect_errno(c, ENOSPC, "TRIM past the end", CMD_TRIM, off, ln)
        expect_errno(c, ENOSPC, "WRITE_ZEROES past the end", CMD_WRITE_ZEROES, off, ln)
    still_usable(c, "after past-the-end requests")


@case
def past_end_simple(x):
    with x.go() as c:
        past_end(x, c)


@case
def too_long(x):
    with x.go() as c:
        for ln in (MAX_REQ + 1, 64 * MiB, 0xFFFFFFFF):
            expect_errno(c, EINVAL, "READ of %d bytes" % ln, CMD_READ, 0, ln)
        ln = MAX_REQ + 4096
        expect_errno(c, EINVAL, "WRITE of %d bytes (payload sent)" % ln, CMD_WRITE, 0,
                     ln, payload=b"\x00" * ln)
        still_usable(c, "after a drained 32 MiB + 4 KiB WRITE")
    for ln in (DRAIN_MAX + 1, 0xFFFFFFFF):
        with x.go() as c:
            c.send_request(CMD_WRITE, 0, ln, cookie=9)
            t = expect_closed(c, "WRITE header of %d bytes" % ln, within=1.8)
            check(t < 1.8, "WRITE of %d: closed only after %.1fs" % (ln, t))


@case
def zero_length(x):
    with x.go() as c:
        for cmd in (CMD_READ, CMD_WRITE, CMD_TRIM, CMD_WRITE_ZEROES, CMD_CACHE):
            expect_errno(c, EINVAL, "zero-length cmd %d" % cmd, cmd, 4096, 0)
        still_usable(c, "after zero-length requests")


@case
def unknown_command(x):
    with x.go() as c:
        for cmd in (99, 8, 0xFFFF):
            expect_errno(c, EINVAL, "unknown command %d" % cmd, cmd, 0, 512)
        still_usable(c, "after unknown commands")


@case
def unknown_flags(x):
    with x.go() as c:
        for flags in (0x8000, 0x40, 0x20):
            expect_errno(c, EINVAL, "READ with flags %#x" % flags, CMD_READ, 0, 512, flags)
        expect_errno(c, EINVAL, "WRITE with flags 0x8000 (payload sent)", CMD_WRITE,
                     REG_RW, 4096, 0x8000, payload=b"\x11" * 4096)
        still_usable(c, "after unknown flags")
        data = expect_ok(c, "READ of the refused WRITE's range", CMD_READ, REG_RW, 4096)
        check(data != b"\x11" * 4096, "a WRITE refused with EINVAL was applied")


@case
def df_without_structured(x):
    with x.go() as c:
        expect_errno(c, EINVAL, "READ with DF, no structured replies", CMD_READ, 0,
                     4096, CMD_FLAG_DF)
        still_usable(c, "after DF")


@case
def block_status_without_context(x):
    for structured in (False, True):
        with x.go(structured=structured) as c:
            expect_errno(c, EINVAL, "BLOCK_STATUS, structured=%s, no context"
                         % structured, CMD_BLOCK_STATUS, 0, 65536)
            still_usable(c, "after BLOCK_STATUS")


@case
def flush_with_range(x):
    with x.go() as c:
        for off, ln in ((4096, 0), (0, 4096), (1 << 62, 1)):
            expect_errno(c, EINVAL, "FLUSH offset %d length %d" % (off, ln), CMD_FLUSH,
                         off, ln)
        expect_ok(c, "FLUSH 0/0", CMD_FLUSH)


@case
def bad_request_magic(x):
    with x.go() as c:
        c.send_request(CMD_READ, 0, 512, magic=0x25609514)
        expect_closed(c, "request magic 0x25609514")


@case
def disc(x):
    with x.go() as c:
        c.send_request(CMD_DISC, cookie=3)
        expect_closed(c, "NBD_CMD_DISC")


@case
def pipelined(x):
    with x.go() as c:
        cookies = list(range(1000, 1032))
        for ck in cookies:
            c.send_request(CMD_READ, ck * 4096, 4096, cookie=ck)
        seen = []
        for _ in cookies:
            kind, ck, e, _ = c.read_reply(4096)
            check(kind == "simple" and e == 0, "pipelined READ %d: %s" % (ck, err(e)))
            seen.append(ck)
        check(sorted(seen) == cookies, "pipelined cookies %r" % seen)
    # Hang up with replies in flight: small and large reads, a torn WRITE.
    for n in range(12):
        c = x.go()
        size = 65536 if n % 2 else MiB
        burst = b""
        for ck in range(32):
            burst += struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_READ, ck,
                                 (ck * size) % (32 * MiB), size)
        for ck in range(4):
            burst += struct.pack(">IHHQQI", REQUEST_MAGIC, 0, CMD_WRITE, 100 + ck,
                                 REG_RW + ck * 4096, 4096) + b"\x77" * 4096
        c.send(burst[:len(burst) - 100 * (n % 3)])
        if n >= 6:
            c.recv_exact(100)   # the server is sending: hang up mid-reply
        c.close()


# -- structured replies -------------------------------------------------------

@case
def structured_read(x):
    with x.go(structured=True) as c:
        buf = os.urandom(65536)
        expect_ok(c, "WRITE", CMD_WRITE, REG_STRUCT, len(buf), payload=buf)
        cookie = 0xABCDEF0123456789
        e, data, chunks = c.request(CMD_READ, REG_STRUCT - 4096, 65536 + 8192, 0, cookie)
        check(e == 0, "structured READ: %s" % err(e))
        check(data == bytes(4096) + buf + bytes(4096),
              "structured READ: data differs from what was written")
        check(chunks and all(t in (REPLY_TYPE_OFFSET_DATA, REPLY_TYPE_OFFSET_HOLE,
                                   REPLY_TYPE_NONE) for f, t, p in chunks),
              "structured READ chunk types %r" % [t for f, t, p in chunks])
        check(all(not f & REPLY_FLAG_DONE for f, t, p in chunks[:-1]),
              "DONE before the last chunk")
        e, data, chunks = c.request(CMD_READ, REG_STRUCT, 65536, CMD_FLAG_DF, 42)
        check(e == 0 and data == buf, "READ with DF: %s" % err(e))
        content = [t for f, t, p in chunks if t != REPLY_TYPE_NONE]
        check(len(content) == 1, "READ with DF: %d content chunks" % len(content))
        e, data, _ = c.request(CMD_READ, REG_HOLE, 65536, 0, 43)
        check(e == 0 and data == bytes(65536), "READ of a hole: %s" % err(e))


@case
def structured_errors(x):
    with x.go(structured=True) as c:
        size = x.a.size
        expect_errno(c, EINVAL, "structured READ past the end", CMD_READ, size - 512,
                     1024, cookie=0x0102030405060708)
        expect_errno(c, EINVAL, "structured READ of 64 MiB", CMD_READ, 0, 64 * MiB)
        expect_errno(c, EINVAL, "structured zero-length READ", CMD_READ, 0, 0)
        expect_errno(c, EINVAL, "structured READ, unknown flag", CMD_READ, 0, 512, 0x8000)
        expect_errno(c, EINVAL, "structured unknown command", 99, 0, 512)
        past_end(x, c)


@case
def block_status(x):
    with x.go(structured=True, meta=True) as c:
        cid = c.contexts["base:allocation"]
        expect_ok(c, "WRITE", CMD_WRITE, REG_BS_DATA, 65536, payload=b"\xee" * 65536)
        for off, want_flags, flags in ((REG_HOLE, STATE_HOLE | STATE_ZERO, 0),
                                       (REG_HOLE, STATE_HOLE | STATE_ZERO,
                                        CMD_FLAG_REQ_ONE),
                                       (REG_BS_DATA, 0, CMD_FLAG_REQ_ONE)):
            e, _, chunks = c.request(CMD_BLOCK_STATUS, off, 65536, flags, 77)
            check(e == 0, "BLOCK_STATUS at %d: %s" % (off, err(e)))
            bs = [p for f, t, p in chunks if t == REPLY_TYPE_BLOCK_STATUS]
            check(len(bs) == 1, "BLOCK_STATUS: %d status chunks" % len(bs))
            p = bs[0]
            check(struct.unpack(">I", p[:4])[0] == cid, "BLOCK_STATUS context id")
            descs = [struct.unpack(">II", p[i:i + 8]) for i in range(4, len(p), 8)]
            check(descs and all(d[0] > 0 for d in descs), "descriptors %r" % descs)
            check(sum(d[0] for d in descs[:-1]) < 65536,
                  "BLOCK_STATUS: descriptors before the last cover the request: %r"
                  % descs)
            if flags & CMD_FLAG_REQ_ONE:
                check(len(descs) == 1, "REQ_ONE gave %d descriptors" % len(descs))
                check(descs[0][0] <= 65536, "REQ_ONE descriptor %r past the request"
                      % (descs[0],))
            check(descs[0][1] == want_flags, "BLOCK_STATUS at %d: flags %d, expected %d"
                  % (off, descs[0][1], want_flags))
        expect_errno(c, EINVAL, "BLOCK_STATUS past the end", CMD_BLOCK_STATUS,
                     x.a.size - 512, 1024)
        expect_errno(c, EINVAL, "BLOCK_STATUS zero length", CMD_BLOCK_STATUS, 0, 0)


# -- timeouts -----------------------------------------------------------------

@case
def timeouts(x):
    """Idle/unfinished handshakes and half-sent requests are dropped after the
    daemon's 2 s timeouts; an idle transmission connection is kept.  Run
    together so the case costs one timeout."""
    lo, hi = 1.0, 8.0
    conns = []
    c = x.conn()
    conns.append(("idle at the greeting", c, time.monotonic()))
    c.read_greeting()
    c = x.conn()
    c.handshake()
    c.send(struct.pack(">Q", IHAVEOPT))
    conns.append(("half an option header", c, time.monotonic()))
    c = x.conn()
    c.handshake()
    c.send_option(OPT_INFO, Conn.info_data(x.v))
    conns.append(("after INFO, no GO", c, time.monotonic()))
    c = x.go()
    c.send(struct.pack(">IHHQ", REQUEST_MAGIC, 0, CMD_READ, 1)[:14])
    conns.append(("half a request header", c, time.monotonic()))
    c = x.go()
    c.send_request(CMD_WRITE, REG_RW, 65536, cookie=2, payload=b"\x33" * 1000)
    conns.append(("WRITE missing its payload", c, time.monotonic()))
    idle = x.go()
    try:
        for what, c, t0 in conns:
            closed, _, got = c.wait_closed(max(0.1, t0 + hi - time.monotonic()))
            t = time.monotonic() - t0
            check(closed, "%s: still open after %.1fs" % (what, t))
            if what == "after INFO, no GO":
                got = b""   # the INFO replies
            check(not got, "%s: %d unexpected bytes %r" % (what, len(got), got[:40]))
            check(t >= lo, "%s: dropped after %.2fs, before the 2 s timeout" % (what, t))
        time.sleep(max(0.0, 3.0 - (time.monotonic() - conns[-1][2])))
        still_usable(idle, "idle transmission connection after 3 s")
    finally:
        for _, c, _ in conns:
            c.close()
        idle.close()


def daemon_sockets(pid):
    """How many sockets the daemon holds (listeners, connections)."""
    n = 0
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            if os.readlink("/proc/%d/fd/%s" % (pid, fd)).startswith("socket:"):
                n += 1
        except OSError:
            pass
    return n


def check_no_leak(pid, baseline, within=5.0):
    """Every connection a case opened must be gone from the daemon soon
    after the case closed it."""
    deadline = time.monotonic() + within
    while True:
        n = daemon_sockets(pid)
        if n <= baseline:
            return
        if time.monotonic() > deadline:
            raise Fail("daemon still holds %d sockets %.0fs after the case ended,"
                       " %d before it (connections leaked)" % (n, within, baseline))
        time.sleep(0.05)


# -- the second client --------------------------------------------------------

class Second:
    def __init__(self, a):
        import nbd
        self.nbd = nbd
        self.a = a
        self.h = None
        self.n = 0
        self.connect()

    def connect(self):
        self.h = self.nbd.NBD()
        self.h.set_export_name(self.a.export)
        self.h.connect_unix(self.a.unix)

    def roundtrip(self):
        off = REG_SECOND + (self.n % 200) * 4096
        self.n += 1
        buf = os.urandom(4096)
        self.h.pwrite(buf, off)
        got = self.h.pread(4096, off)
        if got != buf:
            raise Fail("second client: read back differs at %d" % off)
        self.h.flush()


# -- main ---------------------------------------------------------------------

def hold(a):
    """Open @a.hold idle connections and keep them until stdin closes."""
    conns = []
    n_trans = max(1, a.hold // 4) if a.hold_trans is None else a.hold_trans
    n_half = min(a.hold_half, n_trans)
    for i in range(a.hold):
        c = Conn(unix=a.unix) if i % 2 else Conn(tcp=("127.0.0.1", a.port))
        if i < n_trans:
            c.connect_go(a.export)
            if i < n_half:
                c.send_request(CMD_WRITE, REG_RW, 65536, cookie=i, payload=b"h" * 512)
        else:
            c.read_greeting()
        conns.append(c)
    print("ready %d connections (%d in transmission, %d with a half-sent WRITE)"
          % (len(conns), n_trans, n_half), flush=True)
    sys.stdin.read()
    for c in conns:
        c.close()
    return 0


def parse_size(s):
    mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    return int(s[:-1]) * mult[s[-1].upper()] if s[-1].upper() in mult else int(s)


def main():
    if len(sys.argv) == 1:
        # Run directly (as tests/run.sh does): the wrapper starts the daemon.
        sh = os.path.join(os.path.dirname(os.path.abspath(__file__)), "test-badinput.sh")
        os.execv("/bin/bash", ["bash", sh])
    p = argparse.ArgumentParser()
    p.add_argument("--unix", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--pid", type=int, required=True)
    p.add_argument("--export", default="v")
    p.add_argument("--size", type=parse_size, default=64 * MiB)
    p.add_argument("--export2", default="w")
    p.add_argument("--size2", type=parse_size, default=32 * MiB)
    p.add_argument("--only", action="append")
    p.add_argument("--list", action="store_true")
    p.add_argument("--hold", type=int, default=0)
    p.add_argument("--hold-trans", type=int)
    p.add_argument("--hold-half", type=int, default=5)
    a = p.parse_args()
    if a.list:
        for name, _ in CASES:
            print(name)
        return 0
    if a.hold:
        return hold(a)
    x = Ctx(a)
    second = Second(a)
    second.roundtrip()
    baseline = daemon_sockets(a.pid)
    ok = failed = 0
    failures = []
    for name, fn in CASES:
        if a.only and not any(o in name for o in a.only):
            continue
        t0 = time.monotonic()
        try:
            fn(x)
            check_no_leak(a.pid, baseline)
            res = None
        except Fail as e:
            res = str(e)
        except (Disconnected, ProtocolError, socket.timeout, OSError) as e:
            res = "%s: %s" % (type(e).__name__, e)
        except Exception:
            res = traceback.format_exc()
        try:
            second.roundtrip()
        except Exception as e:
            msg = "second client write+read+flush failed afterwards: %s" % e
            res = msg if res is None else res + "\n" + msg
            try:
                os.kill(a.pid, 0)
            except OSError:
                print("FAIL %s: %s" % (name, res))
                print("FAIL the daemon (pid %d) is gone; stopping" % a.pid)
                failed += 1
                failures.append(name)
                break
            try:
                second.connect()
            except Exception:
                pass
        if res is not None and "connections leaked" in res:
            baseline = daemon_sockets(a.pid)     # report each leak once
        if res is None:
            ok += 1
            print("ok   %s (%.1fs)" % (name, time.monotonic() - t0), flush=True)
        else:
            failed += 1
            failures.append(name)
            print("FAIL %s: %s" % (name, res.strip().replace("\n", "\n     ")), flush=True)
    print("%d passed, %d failed%s" % (ok, failed,
                                       (": " + " ".join(failures)) if failures else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
