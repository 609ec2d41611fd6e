# SPDX-License-Identifier: MIT
"""A tiny raw NBD client for protocol tests (doc/proto.md of the NBD project).

It speaks bytes on a socket and hides nothing: the caller decides what to
send, including what a real client never would, and reads replies one by
one.  Every receive has a time limit; a closed connection is reported as
Disconnected so tests can assert on it.  Python standard library only.
"""

import socket
import struct
import time

NBD_MAGIC = 0x4E42444D41474943
IHAVEOPT = 0x49484156454F5054
REP_MAGIC = 0x3E889045565A9
REQUEST_MAGIC = 0x25609513
SIMPLE_REPLY_MAGIC = 0x67446698
STRUCTURED_REPLY_MAGIC = 0x668E33EF

FLAG_FIXED_NEWSTYLE = 1
FLAG_NO_ZEROES = 2

# Transmission flags.
TF_HAS_FLAGS = 1 << 0
TF_READ_ONLY = 1 << 1
TF_SEND_FLUSH = 1 << 2
TF_SEND_FUA = 1 << 3
TF_ROTATIONAL = 1 << 4
TF_SEND_TRIM = 1 << 5
TF_SEND_WRITE_ZEROES = 1 << 6
TF_SEND_DF = 1 << 7
TF_CAN_MULTI_CONN = 1 << 8
TF_SEND_RESIZE = 1 << 9
TF_SEND_CACHE = 1 << 10
TF_SEND_FAST_ZERO = 1 << 11

OPT_EXPORT_NAME = 1
OPT_ABORT = 2
OPT_LIST = 3
OPT_PEEK_EXPORT = 4
OPT_STARTTLS = 5
OPT_INFO = 6
OPT_GO = 7
OPT_STRUCTURED_REPLY = 8
OPT_LIST_META_CONTEXT = 9
OPT_SET_META_CONTEXT = 10
OPT_EXTENDED_HEADERS = 11

REP_ACK = 1
REP_SERVER = 2
REP_INFO = 3
REP_META_CONTEXT = 4
REP_ERR_UNSUP = 0x80000001
REP_ERR_POLICY = 0x80000002
REP_ERR_INVALID = 0x80000003
REP_ERR_PLATFORM = 0x80000004
REP_ERR_TLS_REQD = 0x80000005
REP_ERR_UNKNOWN = 0x80000006
REP_ERR_SHUTDOWN = 0x80000007
REP_ERR_BLOCK_SIZE_REQD = 0x80000008
REP_ERR_TOO_BIG = 0x80000009

INFO_EXPORT = 0
INFO_NAME = 1
INFO_DESCRIPTION = 2
INFO_BLOCK_SIZE = 3

CMD_READ = 0
CMD_WRITE = 1
CMD_DISC = 2
CMD_FLUSH = 3
CMD_TRIM = 4
CMD_CACHE = 5
CMD_WRITE_ZEROES = 6
CMD_BLOCK_STATUS = 7

CMD_FLAG_FUA = 1 << 0
CMD_FLAG_NO_HOLE = 1 << 1
CMD_FLAG_DF = 1 << 2
CMD_FLAG_REQ_ONE = 1 << 3
CMD_FLAG_FAST_ZERO = 1 << 4

REPLY_FLAG_DONE = 1
REPLY_TYPE_NONE = 0
REPLY_TYPE_OFFSET_DATA = 1
REPLY_TYPE_OFFSET_HOLE = 2
REPLY_TYPE_BLOCK_STATUS = 5
REPLY_TYPE_ERROR = 0x8001
REPLY_TYPE_ERROR_OFFSET = 0x8002

STATE_HOLE = 1
STATE_ZERO = 2

EPERM = 1
EIO = 5
ENOMEM = 12
EINVAL = 22
ENOSPC = 28
EOVERFLOW = 75
ENOTSUP = 95
ESHUTDOWN = 108

_NAMES = {}
for _k, _v in list(globals().items()):
    if _k.startswith("REP_") and _k != "REP_MAGIC":
        _NAMES.setdefault("rep", {})[_v] = _k
    elif _k.startswith("OPT_"):
        _NAMES.setdefault("opt", {})[_v] = _k
    elif _k.startswith("REPLY_TYPE_"):
        _NAMES.setdefault("chunk", {})[_v] = _k
    elif _k in ("EPERM", "EIO", "ENOMEM", "EINVAL", "ENOSPC", "EOVERFLOW",
                "ENOTSUP", "ESHUTDOWN"):
        _NAMES.setdefault("errno", {})[_v] = _k


def name_of(kind, value):
    """Symbolic name of a wire value, for messages ("REP_ERR_INVALID")."""
    if value == 0 and kind == "errno":
        return "0"
    return _NAMES.get(kind, {}).get(value, "%s:%#x" % (kind, value))


class Disconnected(Exception):
    """The server closed (or reset) the connection."""


class ProtocolError(Exception):
    """The server sent something the protocol does not allow here."""


class Conn:
    """One raw connection.  All receives are bounded by @timeout seconds."""

    def __init__(self, unix=None, tcp=None, timeout=5.0):
        if unix is not None:
            self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            addr = unix
        else:
            self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            addr = tcp
        self.sock.settimeout(timeout)
        self.sock.connect(addr)
        self.timeout = timeout
        self.structured = False
        self.no_zeroes = False
        self.export_size = None
        self.tflags = None
        self.contexts = {}

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    # -- bytes ------------------------------------------------------------

    def send(self, data):
        try:
            self.sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError) as e:
            raise Disconnected("send: %s" % e) from e

    def recv_exact(self, n, timeout=None):
        """Exactly @n bytes, or Disconnected / socket.timeout."""
        self.sock.settimeout(self.timeout if timeout is None else timeout)
        buf = bytearray()
        while len(buf) < n:
            try:
                chunk = self.sock.recv(min(n - len(buf), 1 << 20))
            except ConnectionResetError as e:
                raise Disconnected("reset after %d of %d bytes" % (len(buf), n)) from e
            if not chunk:
                raise Disconnected("EOF after %d of %d bytes" % (len(buf), n))
            buf += chunk
        return bytes(buf)

    def wait_closed(self, timeout):
        """Wait up to @timeout s for EOF/reset.  Returns (closed, seconds,
        bytes received before the close)."""
        start = time.monotonic()
        got = bytearray()
        deadline = start + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False, time.monotonic() - start, bytes(got)
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                return False, time.monotonic() - start, bytes(got)
            except ConnectionResetError:
                return True, time.monotonic() - start, bytes(got)
            if not chunk:
                return True, time.monotonic() - start, bytes(got)
            got += chunk

    # -- handshake --------------------------------------------------------

    def read_greeting(self):
        """Returns the 16-bit handshake flags; checks both magics."""
        magic, ihaveopt, flags = struct.unpack(">QQH", self.recv_exact(18))
        if magic != NBD_MAGIC or ihaveopt != IHAVEOPT:
            raise ProtocolError("bad greeting magic %#x %#x" % (magic, ihaveopt))
        return flags

    def send_client_flags(self, flags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES):
        self.no_zeroes = bool(flags & FLAG_NO_ZEROES)
        self.send(struct.pack(">I", flags))

    def handshake(self, flags=FLAG_FIXED_NEWSTYLE | FLAG_NO_ZEROES):
        hs = self.read_greeting()
        self.send_client_flags(flags)
        return hs

    def send_option(self, opt, data=b"", magic=IHAVEOPT, length=None):
        if length is None:
            length = len(data)
        self.send(struct.pack(">QII", magic, opt, length) + data)

    def read_option_reply(self, opt=None):
        """One option reply: (reply type, data).  Checks magic and echo."""
        magic, ropt, rtype, rlen = struct.unpack(">QIII", self.recv_exact(20))
        if magic != REP_MAGIC:
            raise ProtocolError("option reply magic %#x" % magic)
        if opt is not None and ropt != opt:
            raise ProtocolError("option reply for %s, expected %s"
                                % (name_of("opt", ropt), name_of("opt", opt)))
        if rlen > 1 << 20:
            raise ProtocolError("option reply length %d" % rlen)
        return rtype, self.recv_exact(rlen)

    def option(self, opt, data=b""):
        """Send an option and collect replies until ACK or an error.
        Returns (final type, final data, [(type, data) before it])."""
        self.send_option(opt, data)
        before = []
        for _ in range(10000):
            rtype, rdata = self.read_option_reply(opt)
            if rtype == REP_ACK or rtype & 0x80000000:
                return rtype, rdata, before
            before.append((rtype, rdata))
        raise ProtocolError("endless option replies")

    @staticmethod
    def info_data(name, infos=()):
        if isinstance(name, str):
            name = name.encode()
        return (struct.pack(">I", len(name)) + name
                + struct.pack(">H", len(infos))
                + b"".join(struct.pack(">H", i) for i in infos))

    @staticmethod
    def meta_data(name, queries):
        if isinstance(name, str):
            name = name.encode()
        out = struct.pack(">I", len(name)) + name + struct.pack(">I", len(queries))
        for q in queries:
            q = q.encode() if isinstance(q, str) else q
            out += struct.pack(">I", len(q)) + q
        return out

    @staticmethod
    def parse_infos(replies):
        """{info type: payload} from a list of (REP_INFO, data) replies."""
        out = {}
        for rtype, rdata in replies:
            if rtype != REP_INFO:
                raise ProtocolError("unexpected reply %s" % name_of("rep", rtype))
            if len(rdata) < 2:
                raise ProtocolError("short NBD_REP_INFO")
            out[struct.unpack(">H", rdata[:2])[0]] = rdata[2:]
        return out

    def go(self, name, infos=(), opt=OPT_GO):
        """NBD_OPT_GO (or INFO); on success records size and flags and
        returns the info dict; on error returns the error reply type."""
        rtype, rdata, before = self.option(opt, self.info_data(name, infos))
        if rtype != REP_ACK:
            return rtype
        info = self.parse_infos(before)
        if INFO_EXPORT not in info or len(info[INFO_EXPORT]) != 10:
            raise ProtocolError("no (or bad) NBD_INFO_EXPORT")
        size, tflags = struct.unpack(">QH", info[INFO_EXPORT])
        if opt == OPT_GO:
            self.export_size, self.tflags = size, tflags
        return info

    def export_name(self, name):
        if isinstance(name, str):
            name = name.encode()
        self.send_option(OPT_EXPORT_NAME, name)
        size, tflags = struct.unpack(">QH", self.recv_exact(10))
        if not self.no_zeroes:
            pad = self.recv_exact(124)
            if pad != bytes(124):
                raise ProtocolError("nonzero EXPORT_NAME padding")
        self.export_size, self.tflags = size, tflags
        return size, tflags

    def structured_reply(self):
        rtype, rdata, _ = self.option(OPT_STRUCTURED_REPLY)
        if rtype == REP_ACK:
            self.structured = True
        return rtype

    def set_meta(self, name, queries=("base:allocation",)):
        rtype, rdata, before = self.option(OPT_SET_META_CONTEXT,
                                           self.meta_data(name, queries))
        if rtype != REP_ACK:
            return rtype
        for t, d in before:
            if t != REP_META_CONTEXT or len(d) < 4:
                raise ProtocolError("bad SET_META_CONTEXT reply %s" % name_of("rep", t))
            self.contexts[d[4:].decode()] = struct.unpack(">I", d[:4])[0]
        return self.contexts

    def connect_go(self, name, structured=False, meta=False):
        self.handshake()
        if structured and self.structured_reply() != REP_ACK:
            raise ProtocolError("STRUCTURED_REPLY refused")
        if meta:
            r = self.set_meta(name)
            if not isinstance(r, dict) or "base:allocation" not in r:
                raise ProtocolError("SET_META_CONTEXT base:allocation: %r" % (r,))
        r = self.go(name)
        if not isinstance(r, dict):
            raise ProtocolError("GO %s: %s" % (name, name_of("rep", r)))
        return self

    # -- transmission -----------------------------------------------------

    def send_request(self, cmd, offset=0, length=0, flags=0, cookie=1,
                     payload=b"", magic=REQUEST_MAGIC):
        self.send(struct.pack(">IHHQQI", magic, flags, cmd, cookie,
                              offset & 0xFFFFFFFFFFFFFFFF, length) + payload)

    def read_reply(self, read_len=0):
        """One reply.  Simple: ('simple', cookie, error, data) where data is
        read only for a successful READ of @read_len bytes (the caller says
        so, as the protocol requires).  Structured chunk: ('chunk', cookie,
        flags, type, payload)."""
        magic = struct.unpack(">I", self.recv_exact(4))[0]
        if magic == SIMPLE_REPLY_MAGIC:
            err, cookie = struct.unpack(">IQ", self.recv_exact(12))
            data = b""
            if err == 0 and read_len:
                data = self.recv_exact(read_len)
            return ("simple", cookie, err, data)
        if magic == STRUCTURED_REPLY_MAGIC:
            flags, rtype, cookie, length = struct.unpack(">HHQI", self.recv_exact(16))
            if length > (64 << 20) + 64:
                raise ProtocolError("chunk length %d" % length)
            return ("chunk", cookie, flags, rtype, self.recv_exact(length))
        raise ProtocolError("reply magic %#x" % magic)

    def request(self, cmd, offset=0, length=0, flags=0, cookie=1, payload=b""):
        """Send one request and collect its whole reply.  Returns
        (error, data, chunks): error is the NBD errno (0 on success), data the
        read bytes reassembled (READ only), chunks the list of structured
        chunks (empty for a simple reply)."""
        self.send_request(cmd, offset, length, flags, cookie, payload)
        return self.collect(cookie, cmd == CMD_READ and length or 0, offset)

    def collect(self, cookie, read_len=0, offset=0):
        chunks = []
        data = None         # allocated on the first content chunk
        err = 0
        for _ in range(100000):
            r = self.read_reply(read_len)
            if r[1] != cookie:
                raise ProtocolError("reply cookie %#x, expected %#x" % (r[1], cookie))
            if r[0] == "simple":
                if chunks:
                    raise ProtocolError("simple reply after chunks")
                return r[2], r[3], []
            _, _, flags, rtype, payload = r
            chunks.append((flags, rtype, payload))
            if rtype & 0x8000:
                if len(payload) < 6:
                    raise ProtocolError("short error chunk")
                e, mlen = struct.unpack(">IH", payload[:6])
                if mlen > len(payload) - 6:
                    raise ProtocolError("error message length %d > chunk" % mlen)
                if e == 0:
                    raise ProtocolError("error chunk with error 0")
                err = err or e
            elif rtype == REPLY_TYPE_OFFSET_DATA:
                off = struct.unpack(">Q", payload[:8])[0] - offset
                body = payload[8:]
                if off < 0 or off + len(body) > read_len:
                    raise ProtocolError("OFFSET_DATA outside the request")
                if data is None:
                    data = bytearray(read_len)
                data[off:off + len(body)] = body
            elif rtype == REPLY_TYPE_OFFSET_HOLE:
                off, hl = struct.unpack(">QI", payload[:12])
                if off - offset < 0 or off - offset + hl > read_len:
                    raise ProtocolError("OFFSET_HOLE outside the request")
            if flags & REPLY_FLAG_DONE:
                if err:
                    return err, b"", chunks
                return err, bytes(data) if data is not None else bytes(read_len), chunks
        raise ProtocolError("no DONE chunk")
