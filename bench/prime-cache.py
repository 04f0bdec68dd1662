#!/usr/bin/env python3
"""Puts a file in the page cache in small (base-page) folios: drops its clean pages, then
reads it whole with POSIX_FADV_RANDOM, whose reads fill the cache without read-ahead's
large folios. Usage: prime-cache.py FILE (run sync on it first so that no page is dirty)."""
import os
import sys

fd = os.open(sys.argv[1], os.O_RDONLY)
try:
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_RANDOM)
    size, off, chunk = os.fstat(fd).st_size, 0, 1 << 20
    while off < size:
        n = len(os.pread(fd, min(chunk, size - off), off))
        if n == 0:
            break
        off += n
finally:
    os.close(fd)
