#!/usr/bin/env bash
# Makes $LVW/verify.img (default /var/tmp/lvw): the bench's `log verify` state, as bench/run.sh's
# log verify step builds it (own sparse image, VERIFY bytes of 1M first writes qd8 after a checkpoint).
# VERIFY=1G by default (the bench: 4G, quick mode 256M); bytes, or with a K/M/G suffix.
set -euo pipefail
top=${TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
W=${LVW:-/var/tmp/lvw}; mkdir -p "$W"
VERIFY=$(numfmt --from=iec "${VERIFY:-1G}") || { echo "lv-setup: VERIFY must be bytes or a size such as 4G" >&2; exit 2; }
VIMG=$W/verify.img; SOCK=$W/nbd.sock; CTL=$W/ctl.sock
rm -f "$VIMG" "$SOCK" "$CTL"
truncate -s $((2 * VERIFY + (64 << 20))) "$VIMG"
"$top/bin/bowd" --socket "$SOCK" --control "$CTL" --mode bow --device "$VIMG" --block-size 4096 >"$W/bowd.log" 2>&1 &
pid=$!
for _ in $(seq 300); do [ -S "$SOCK" ] && nbdinfo --size "nbd+unix:///?socket=$SOCK" >/dev/null 2>&1 && break; sleep 0.1; done
c() { "$top/bin/bowctl" "$@" --control "$CTL"; }
c trim --offset "$VERIFY" --length $((VERIFY + (64 << 20))) >/dev/null
c checkpoint start >/dev/null
fio --name=lv --ioengine=nbd --uri="nbd+unix:///?socket=$SOCK" --rw=write --bs=1M --iodepth=8 --offset=0 --size="$VERIFY" \
    --end_fsync=1 --randrepeat=1 --output-format=terse >/dev/null
c status --json | jq -r '.backed_up_bytes' >"$W/backed_up"
c shutdown >/dev/null || true
wait $pid || true
echo "backed up $(cat "$W/backed_up") bytes"
