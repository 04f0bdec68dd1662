#!/usr/bin/env bash
# Makes /var/tmp/pmw/golden.{img,cow}: the bench's persistent rollback state (1 GiB of first writes after a checkpoint).
set -euo pipefail
top=${TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
W=/var/tmp/pmw; mkdir -p "$W"
SIZE=$((256<<20)); IMG_SIZE=$((8*SIZE + (64<<20))); COW_SIZE=$((5*SIZE + (64<<20))); RB=$((1<<30))
IMG=$W/golden.img; COW=$W/golden.cow; SOCK=$W/nbd.sock; CTL=$W/ctl.sock
rm -f "$IMG" "$COW" "$SOCK" "$CTL"
truncate -s "$IMG_SIZE" "$IMG" && shred -n 1 "$IMG"; truncate -s "$COW_SIZE" "$COW"; sync "$IMG"
"$top/bin/bowd" --socket "$SOCK" --control "$CTL" --mode persistent --device "$IMG" --cow "$COW" >"$W/bowd.log" 2>&1 &
pid=$!
for _ in $(seq 300); do [ -S "$SOCK" ] && nbdinfo --size "nbd+unix:///?socket=$SOCK" >/dev/null 2>&1 && break; sleep 0.1; done
c() { "$top/bin/bowctl" "$@" --control "$CTL"; }
c checkpoint start >/dev/null
fio --name=rb --ioengine=nbd --uri="nbd+unix:///?socket=$SOCK" --rw=write --bs=1M --iodepth=8 --offset=0 --size="$RB" --end_fsync=1 --output-format=terse >/dev/null
c status --json | jq -c '.details.status'
c shutdown >/dev/null || true
wait "$pid" || true
