#!/usr/bin/env bash
# Makes /var/tmp/rbw/golden.img: the bench's bow rollback state (1 GiB of first writes after a checkpoint).
set -euo pipefail
top=${TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
W=${RBW:-/var/tmp/rbw}; mkdir -p "$W"
SIZE=$((256<<20)); IMG_SIZE=$((8*SIZE + (64<<20))); BACKUP_AT=$((4*SIZE)); RB=${RB:-$((1<<30))}
IMG=$W/golden.img; SOCK=$W/nbd.sock; CTL=$W/ctl.sock
rm -f "$IMG" "$SOCK" "$CTL"
truncate -s "$IMG_SIZE" "$IMG" && shred -n 1 "$IMG"; sync "$IMG"
"$top/bin/bowd" --socket "$SOCK" --control "$CTL" --mode bow --device "$IMG" --block-size 4096 >"$W/bowd.log" 2>&1 &
pid=$!
for _ in $(seq 300); do [ -S "$SOCK" ] && nbdinfo --size "nbd+unix:///?socket=$SOCK" >/dev/null 2>&1 && break; sleep 0.1; done
c() { "$top/bin/bowctl" "$@" --control "$CTL"; }
c trim --offset $BACKUP_AT --length $((IMG_SIZE - BACKUP_AT)) >/dev/null
c checkpoint start >/dev/null
fio --name=rb --ioengine=nbd --uri="nbd+unix:///?socket=$SOCK" --rw=write --bs=1M --iodepth=8 --offset=0 --size="$RB" --end_fsync=1 --output-format=terse >/dev/null
c status --json | jq -c '{backed_up_bytes, state}'
c shutdown >/dev/null || true
wait "$pid" || true
echo "done"
