# SPDX-License-Identifier: MIT
# Helpers of test-objtier.sh and test-objtier-s3.sh that are easier in
# Python than in shell.  Run with /usr/bin/python3 (it has libnbd).
#
#   objtier_check.py write URI MODEL SIZE OP...
#       Apply each OP to the NBD export URI and to the file MODEL (the
#       expected image, created sparse with SIZE bytes if missing):
#         r:OFF:LEN:SEED   pseudo-random bytes (the same for the same SEED)
#         p:OFF:LEN:BYTE   BYTE (hex) repeated
#         Z:OFF:LEN        explicit zero bytes (pwrite: allocates)
#         z:OFF:LEN        write-zeroes (may punch)
#         t:OFF:LEN        trim (the model reads zeroes there)
#         c:OFF:LEN:SRC    the model's own bytes at SRC (identical content)
#         f:OFF:LEN:FILE:FOFF  the bytes of FILE at FOFF
#       Each write is split in requests of at most 4 MiB; a flush ends it.
#   objtier_check.py chunks DIR
#       The chunk objects of the file:// store DIR as JSON: {"count",
#       "names" (sorted), "bytes", "stray" (files under chunks/ that are not
#       chunks/XX/HASH with XX = HASH[:2], HASH 64 lowercase hex digits)}.
#   objtier_check.py distinct IMG...
#       Distinct non-zero 4 MiB chunk contents of the images, as JSON
#       {"distinct", "per": [distinct non-zero chunks of each image]}.
#   objtier_check.py only IMG -- IMG...
#       {"only": distinct non-zero chunks of IMG in none of the others,
#        "shared": the rest of IMG's distinct non-zero chunks}.
#   objtier_check.py map DIR IMG
#       Open every unsealed chunk object of DIR (header, zstd or raw) and
#       print {"KEY": [chunk indexes of IMG with those bytes]} as JSON.
#       Exit 1 if an object matches no chunk of IMG.
#   objtier_check.py plain DIR PLAIN
#       {"found": objects of DIR that contain a non-zero 4 KiB block of the
#       file PLAIN at any offset, "objects": objects scanned}.
#   objtier_check.py readcheck URI IMG BAD...
#       Read the export chunk by chunk (4 MiB, and a 4 KiB read inside and a
#       read across the edge of each bad chunk): a chunk index in BAD must
#       fail with EIO, every other chunk must equal IMG.  Prints a summary;
#       exit 1 on any difference.
#   objtier_check.py manifest-edit FILE WHAT [DIR]
#       WHAT "name": change one hex digit of the first chunk name in the
#       manifest JSON (with DIR, the store: a name of an object there);
#       "size": double the volume size field.  Prints what
#       changed; exit 1 if nothing to change was found.
#   objtier_check.py json-find FILE ID
#       exit 0 if FILE parses as JSON and some string value in it equals ID.
import ctypes
import errno
import json
import os
import random
import re
import sys

CHUNK = 4 << 20
BLK = 4096
NAME_RE = re.compile(r"^[0-9a-f]{64}$")
HDR = 12


def rand_bytes(seed, n):
    r = random.Random(seed)
    return r.randbytes(n)


def do_write(uri, model, size, ops):
    import nbd
    h = nbd.NBD()
    h.connect_uri(uri)
    if not os.path.exists(model):
        with open(model, "wb") as f:
            f.truncate(size)
    with open(model, "r+b") as f:
        for op in ops:
            p = op.split(":")
            kind, off, ln = p[0], int(p[1], 0), int(p[2], 0)
            if kind == "r":
                data = rand_bytes(int(p[3]), ln)
            elif kind == "p":
                data = bytes([int(p[3], 16)]) * ln
            elif kind in ("Z", "z", "t"):
                data = bytes(ln)
            elif kind == "c":
                f.seek(int(p[3], 0))
                data = f.read(ln)
                assert len(data) == ln, "c: source past the end"
            elif kind == "f":
                with open(p[3], "rb") as src:
                    src.seek(int(p[4], 0))
                    data = src.read(ln)
                assert len(data) == ln, "f: source past the end"
            else:
                sys.exit("unknown op %r" % op)
            pos = 0
            while pos < ln:
                n = min(CHUNK, ln - pos)
                if kind == "z":
                    h.zero(n, off + pos)
                elif kind == "t":
                    h.trim(n, off + pos)
                else:
                    h.pwrite(data[pos:pos + n], off + pos)
                pos += n
            f.seek(off)
            f.write(data)
    h.flush()
    h.shutdown()


def chunk_files(top):
    names, stray, total = [], [], 0
    base = os.path.join(top, "chunks")
    for d, _, files in os.walk(base):
        for fn in files:
            path = os.path.join(d, fn)
            rel = os.path.relpath(path, top)
            parts = rel.split(os.sep)
            if len(parts) == 3 and NAME_RE.match(parts[2]) and parts[1] == parts[2][:2]:
                names.append(parts[2])
                total += os.path.getsize(path)
            else:
                stray.append(rel)
    return sorted(names), sorted(stray), total


def nonzero_chunks(img):
    out = []
    with open(img, "rb") as f:
        i = 0
        while True:
            b = f.read(CHUNK)
            if not b:
                break
            if b.count(0) != len(b):
                out.append((i, b))
            i += 1
    return out


_zstd = None


def zstd_decompress(frame, want):
    global _zstd
    if _zstd is None:
        _zstd = ctypes.CDLL("libzstd.so.1")
        _zstd.ZSTD_decompress.restype = ctypes.c_size_t
        _zstd.ZSTD_decompress.argtypes = [ctypes.c_void_p, ctypes.c_size_t,
                                          ctypes.c_void_p, ctypes.c_size_t]
        _zstd.ZSTD_isError.restype = ctypes.c_uint
        _zstd.ZSTD_isError.argtypes = [ctypes.c_size_t]
    dst = ctypes.create_string_buffer(want)
    n = _zstd.ZSTD_decompress(dst, want, frame, len(frame))
    if _zstd.ZSTD_isError(n):
        return None
    return dst.raw[:n]


def open_object(data):
    """The plain bytes of an unsealed chunk object, or None."""
    if len(data) < HDR or data[:4] != b"BALC":
        return None
    flags = data[5]
    plen = int.from_bytes(data[8:12], "big")
    if flags & 0x02:
        return None
    # An unsealed object may end with a 32-byte check value.
    for payload in (data[HDR:len(data) - 32], data[HDR:]):
        plain = zstd_decompress(payload, plen) if flags & 0x01 else payload
        if plain is not None and len(plain) == plen:
            return plain
    return None


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "write":
        do_write(args[0], args[1], int(args[2], 0), args[3:])
    elif cmd == "chunks":
        names, stray, total = chunk_files(args[0])
        print(json.dumps({"count": len(names), "names": names, "bytes": total, "stray": stray}))
    elif cmd == "distinct":
        allc, per = set(), []
        for img in args:
            s = {b for _, b in nonzero_chunks(img)}
            per.append(len(s))
            allc |= s
        print(json.dumps({"distinct": len(allc), "per": per}))
    elif cmd == "only":
        cut = args.index("--")
        mine = {b for _, b in nonzero_chunks(args[0])}
        others = set()
        for img in args[cut + 1:]:
            others |= {b for _, b in nonzero_chunks(img)}
        print(json.dumps({"only": len(mine - others), "shared": len(mine & others)}))
    elif cmd == "map":
        top, img = args
        by = {}
        for i, b in nonzero_chunks(img):
            by.setdefault(b, []).append(i)
        names, _, _ = chunk_files(top)
        out, bad = {}, []
        for n in names:
            key = "chunks/%s/%s" % (n[:2], n)
            with open(os.path.join(top, key), "rb") as f:
                plain = open_object(f.read())
            idx = by.get(plain) if plain is not None else None
            if idx is None:
                bad.append(key)
            else:
                out[key] = idx
        print(json.dumps(out))
        if bad:
            print("objects matching no chunk of %s: %s" % (img, bad), file=sys.stderr)
            sys.exit(1)
    elif cmd == "plain":
        top, plain = args
        with open(plain, "rb") as f:
            pdata = f.read()
        blocks = {pdata[i:i + BLK] for i in range(0, len(pdata) - BLK + 1, BLK)}
        blocks = [b for b in blocks if b.count(0) != BLK]
        names, stray, _ = chunk_files(top)
        found = 0
        for n in names:
            with open(os.path.join(top, "chunks", n[:2], n), "rb") as f:
                data = f.read()
            # A 64-byte probe first, the whole block to confirm.
            if any(data.find(b[:64]) >= 0 and data.find(b) >= 0 for b in blocks):
                found += 1
        print(json.dumps({"found": found, "objects": len(names), "blocks": len(blocks)}))
    elif cmd == "readcheck":
        import nbd
        uri, img, bad = args[0], args[1], {int(x) for x in args[2:]}
        h = nbd.NBD()
        h.connect_uri(uri)
        size = h.get_size()
        errs, eio, good = [], 0, 0

        def expect_eio(what, n, off):
            nonlocal eio
            try:
                h.pread(n, off)
            except nbd.Error as e:
                en = e.errno if isinstance(e.errno, int) else getattr(errno, str(e.errno), None)
                if en != errno.EIO:
                    errs.append("%s: errno %r, want EIO (%s)" % (what, e.errno, e))
                else:
                    eio += 1
            else:
                errs.append("%s: read succeeded, want EIO" % what)

        with open(img, "rb") as f:
            for i in range((size + CHUNK - 1) // CHUNK):
                off = i * CHUNK
                n = min(CHUNK, size - off)
                if i in bad:
                    expect_eio("chunk %d" % i, n, off)
                    expect_eio("4 KiB inside chunk %d" % i, BLK, off + n // 2)
                    if off >= BLK:
                        expect_eio("read across the start of chunk %d" % i, 2 * BLK, off - BLK)
                    continue
                f.seek(off)
                want = f.read(n)
                try:
                    got = h.pread(n, off)
                except nbd.Error as e:
                    errs.append("chunk %d: read failed: %s" % (i, e))
                    continue
                if got != want:
                    k = next(j for j in range(n) if got[j] != want[j])
                    errs.append("chunk %d differs at byte %d" % (i, off + k))
                else:
                    good += 1
        h.shutdown()
        print("readcheck: %d good chunks, %d EIO reads, %d problems" % (good, eio, len(errs)))
        for e in errs[:20]:
            print("  " + e)
        sys.exit(1 if errs else 0)
    elif cmd == "manifest-edit":
        path, what = args[0], args[1]
        known = set(chunk_files(args[2])[0]) if len(args) > 2 else None
        with open(path) as f:
            d = json.load(f)
        done = []

        def mutate(v):
            """v with one hex digit of its chunk name changed, or None."""
            if not isinstance(v, str):
                return None
            m = re.search(r"([0-9a-f]{64})$", v)
            if not m or (known is not None and m.group(1) not in known):
                return None
            i = m.start(1)
            return v[:i] + ("1" if v[i] != "1" else "2") + v[i + 1:]

        def walk(o):
            if done:
                return o
            items = list(o.items()) if isinstance(o, dict) else \
                list(enumerate(o)) if isinstance(o, list) else []
            for k, v in items:
                if done:
                    break
                nv = mutate(v) if what == "name" else None
                if what == "size" and k == "size" and isinstance(v, int) and not isinstance(v, bool):
                    o[k] = v * 2
                    done.append("size %d -> %d" % (v, v * 2))
                elif nv is not None:
                    o[k] = nv
                    done.append("%s: %s -> %s" % (k, v, nv))
                else:
                    walk(v)
            return o

        # The top-level size first, then anywhere.
        if what == "size" and isinstance(d.get("size"), int):
            done.append("size %d -> %d" % (d["size"], d["size"] * 2))
            d["size"] *= 2
        walk(d)
        if not done:
            sys.exit("manifest-edit: no %s found in %s" % (what, path))
        with open(path, "w") as f:
            json.dump(d, f)
        print(done[0])
    elif cmd == "json-find":
        with open(args[0]) as f:
            d = json.load(f)

        def has(o):
            if isinstance(o, dict):
                return any(has(v) for v in o.values())
            if isinstance(o, list):
                return any(has(v) for v in o)
            return o == args[1]
        sys.exit(0 if has(d) else 1)
    else:
        sys.exit("unknown command %r" % cmd)


if __name__ == "__main__":
    main()
