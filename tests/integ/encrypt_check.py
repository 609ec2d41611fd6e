# SPDX-License-Identifier: MIT
# Helpers of test-encrypt.sh that are easier in Python than in shell.
#
#   encrypt_check.py scan POOL PLAIN... [--except FILE...]
#       Cut POOL into 4 KiB blocks and print one JSON object:
#       {"blocks": total, "nonzero": blocks not all zero,
#        "plain": pool blocks equal to a nonzero 4 KiB block of a PLAIN file
#                 that is not a block of an --except FILE,
#        "dups": nonzero pool blocks that occur more than once}.
#   encrypt_check.py model FILE OP...
#       Apply OPs to the file FILE (the expected image): "w:OFF:LEN:BYTE"
#       fills with BYTE (hex), "z:OFF:LEN" with zeroes.
#   encrypt_check.py secrets KEYFILE... -- FILE...
#       For each key file: its raw bytes (a 32- or 64-byte file), or the key
#       a 64-hex-digit file stands for, plus the lower- and upper-case hex of
#       those bytes; print "FILE: KEYFILE (FORM)" for every FILE that holds
#       one of them and exit 1 if any does.  Directories are walked.
# Run with /usr/bin/python3.
import json
import os
import sys

BLK = 4096


def blocks_of(paths):
    out = set()
    for p in paths:
        with open(p, "rb") as f:
            data = f.read()
        for i in range(0, len(data) - BLK + 1, BLK):
            b = data[i:i + BLK]
            if b.count(0) != BLK:
                out.add(b)
    return out


def scan(pool, args):
    cut = args.index("--except") if "--except" in args else len(args)
    want = blocks_of(args[:cut]) - blocks_of(args[cut + 1:])
    seen = {}
    total = nonzero = plain = 0
    with open(pool, "rb") as f:
        while True:
            b = f.read(BLK)
            if len(b) < BLK:
                break
            total += 1
            if b.count(0) == BLK:
                continue
            nonzero += 1
            if b in want:
                plain += 1
            seen[b] = seen.get(b, 0) + 1
    dups = sum(n for n in seen.values() if n > 1)
    print(json.dumps({"blocks": total, "nonzero": nonzero, "plain": plain, "dups": dups}))


def model(path, ops):
    with open(path, "r+b") as f:
        for op in ops:
            parts = op.split(":")
            off, ln = int(parts[1]), int(parts[2])
            f.seek(off)
            if parts[0] == "w":
                f.write(bytes([int(parts[3], 16)]) * ln)
            elif parts[0] == "z":
                f.write(bytes(ln))
            else:
                sys.exit("unknown op " + op)


def key_forms(path):
    with open(path, "rb") as f:
        raw = f.read()
    txt = raw.strip()
    forms = []
    if len(txt) == 64 and all(c in b"0123456789abcdefABCDEF" for c in txt):
        forms.append(("hex file bytes", bytes.fromhex(txt.decode())))
    else:
        forms.append(("raw", raw))
    key = forms[0][1]
    forms.append(("hex lower", key.hex().encode()))
    forms.append(("hex upper", key.hex().upper().encode()))
    return forms


def files_under(paths):
    for p in paths:
        if os.path.isdir(p):
            for root, _, names in os.walk(p):
                for n in names:
                    yield os.path.join(root, n)
        elif os.path.exists(p):
            yield p


def secrets(args):
    sep = args.index("--")
    keys, targets = args[:sep], args[sep + 1:]
    needles = [(k, name, b) for k in keys for name, b in key_forms(k)]
    found = 0
    checked = 0
    for path in files_under(targets):
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        checked += 1
        for k, name, b in needles:
            if b in data:
                print("%s: %s (%s)" % (path, k, name))
                found += 1
    print("# %d files checked for %d key forms" % (checked, len(needles)))
    sys.exit(1 if found else 0)


def main():
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "scan":
        scan(args[0], args[1:])
    elif cmd == "model":
        model(args[0], args[1:])
    elif cmd == "secrets":
        secrets(args)
    else:
        sys.exit("unknown command " + cmd)


if __name__ == "__main__":
    main()
