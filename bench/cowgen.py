#!/usr/bin/python3
"""Writes a dm-snapshot persistent COW (docs/FORMATS.md) holding N exceptions, fast.

usage: cowgen.py COW ORIGIN N [CHUNK_SECTORS]

Both files are created sparse: ORIGIN of N chunks (zeros), COW with the header chunk and
ceil((N+1)/epa) metadata areas; the data chunks stay holes (zeros, the origin's content).
Old chunks are a random permutation of the origin's chunks (random first writes), new chunks
fill the data chunks in order, as the engine allocates them. Header without bow's origin record
(as the kernel writes it), so only the chunk range is checked when bowd opens it.
"""
import os
import random
import struct
import sys


def main():
    cow, origin, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    chunk_sectors = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    chunk = chunk_sectors * 512
    epa = chunk // 16
    areas = (n + 1 + epa - 1) // epa          # the last area is never full: it holds the terminator
    cow_chunks = 1 + areas + n + 16 * (epa + 1)   # room for 16 more areas of first writes
    with open(origin, "wb") as f:
        f.truncate(n * chunk)
    olds = list(range(n))
    random.Random(1).shuffle(olds)
    with open(cow, "wb") as f:
        f.truncate(cow_chunks * chunk)
        f.write(struct.pack("<IIII", 0x70416E53, 1, 1, chunk_sectors))
        for a in range(areas):
            loc = 1 + (epa + 1) * a
            first = a * epa
            count = max(0, min(epa, n - first))
            buf = bytearray(chunk)
            for s in range(count):
                struct.pack_into("<QQ", buf, s * 16, olds[first + s], loc + 1 + s)
            f.seek(loc * chunk)
            f.write(buf)
        f.flush()
        os.fsync(f.fileno())
    print(f"{cow}: {n} exceptions, chunk {chunk} bytes, {areas} metadata areas, {cow_chunks * chunk >> 20} MiB (sparse)")


if __name__ == "__main__":
    main()
