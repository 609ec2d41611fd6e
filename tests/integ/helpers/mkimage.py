#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Create a sparse test image with random, hole and written-zero regions.

Usage: mkimage.py PATH [SIZE_MIB]

The layout (in MiB) is fixed so tests can reason about it; the random bytes
differ on every run.  On stdout it prints the image's holes as found by
SEEK_DATA/SEEK_HOLE, one "OFFSET LENGTH" line each, so a test can check
that a copy kept them out of the data.
"""
import os
import sys

MIB = 1 << 20


def layout(size_mib):
    """(offset, length, kind) with kind 'random' or 'zeros'; the rest is a hole."""
    regions = [
        (0, 4 * MIB, "random"),
        (16 * MIB, 4 * MIB, "zeros"),          # allocated, written zeroes
        (20 * MIB, 1 * MIB, "random"),
        (64 * MIB, 16 * MIB, "random"),
        (130 * MIB + 4097, 10000, "random"),   # unaligned, inside a cluster
        (200 * MIB, 4 * MIB, "random"),
        ((size_mib - 4) * MIB, 4 * MIB, "random"),  # the last bytes
    ]
    return [r for r in regions if r[0] + r[1] <= size_mib * MIB]


def holes(fd, size):
    out, pos = [], 0
    while pos < size:
        try:
            data = os.lseek(fd, pos, os.SEEK_DATA)
        except OSError:  # ENXIO: no data past pos
            data = size
        if data > pos:
            out.append((pos, data - pos))
        if data >= size:
            break
        pos = os.lseek(fd, data, os.SEEK_HOLE)
    return out


def main():
    path = sys.argv[1]
    size_mib = int(sys.argv[2]) if len(sys.argv) > 2 else 256
    size = size_mib * MIB
    with open(path, "wb") as f:
        f.truncate(size)
        for off, length, kind in layout(size_mib):
            f.seek(off)
            f.write(os.urandom(length) if kind == "random" else bytes(length))
        f.flush()
        os.fsync(f.fileno())
        for off, length in holes(f.fileno(), size):
            print(off, length)


if __name__ == "__main__":
    main()
