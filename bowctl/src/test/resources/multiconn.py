# One NBD connection of a multi-connection race test (run by MultiConnRaceTest).
# usage: multiconn.py URI fill|trim|scatter OFFSET LENGTH UNIT PASSES SEED
# fill: writes LENGTH bytes at OFFSET in UNIT pieces; trim: trims them; scatter:
# writes UNIT-sized pieces at random UNIT-aligned offsets (LENGTH/UNIT per pass).
# Up to 16 requests in flight; exits non-zero if any request failed.
import random
import sys

import nbd

uri, mode = sys.argv[1], sys.argv[2]
offset, length, unit, passes, seed = (int(x) for x in sys.argv[3:8])
rnd = random.Random(seed)
h = nbd.NBD()
h.connect_uri(uri)
cookies = []
bufs = []
for p in range(passes):
    for i in range(length // unit):
        while h.aio_in_flight() >= 16:
            h.poll(-1)
        if mode == "scatter":
            off = offset + unit * rnd.randrange(length // unit)
        else:
            off = offset + unit * i
        if mode == "trim":
            cookies.append(h.aio_trim(unit, off))
        else:
            buf = nbd.Buffer.from_bytearray(bytearray(rnd.randbytes(unit)))
            bufs.append(buf)   # must live until the write completes
            cookies.append(h.aio_pwrite(buf, off))
while h.aio_in_flight() > 0:
    h.poll(-1)
for c in cookies:
    h.aio_command_completed(c)   # raises if that request failed
h.flush()
h.shutdown()
print(mode, "done:", len(cookies), "requests")
