#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Check an `nbdinfo --map --json` document (stdin) against expectations.

Usage: mapcheck.py SIZE RULE...
  RULE is OFFSET:LENGTH:WANT, WANT one of
    data   every byte of the range is reported as type 0 (data)
    hole   every byte is type 3 (hole,zero)
    zero   every byte has the zero bit (type & 2): not reported as data
The map must also cover [0, SIZE) exactly, in order, without gaps.
Exits 1 with a message on the first violation.
"""
import json
import sys


def main():
    size = int(sys.argv[1])
    rules = []
    for r in sys.argv[2:]:
        off, length, want = r.split(":")
        rules.append((int(off), int(length), want))
    ext = json.load(sys.stdin)
    pos = 0
    for e in ext:
        if e["offset"] != pos or e["length"] <= 0:
            sys.exit("map: extent %r does not start at %d" % (e, pos))
        pos += e["length"]
    if pos != size:
        sys.exit("map: covers %d bytes, want %d" % (pos, size))
    for off, length, want in rules:
        end = off + length
        for e in ext:
            lo, hi = max(off, e["offset"]), min(end, e["offset"] + e["length"])
            if lo >= hi:
                continue
            t = e["type"]
            ok = {"data": t == 0, "hole": t == 3, "zero": bool(t & 2)}[want]
            if not ok:
                sys.exit("map: [%d, %d) is type %d (%s), want %s for rule [%d, %d)"
                         % (lo, hi, t, e.get("description", "?"), want, off, end))
    print("map ok: %d extents, %d rules" % (len(ext), len(rules)))


if __name__ == "__main__":
    main()
