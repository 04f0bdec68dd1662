#!/usr/bin/env bash
# One trial (after rb-setup.sh): fresh copy of golden.img, time the offline rollback, then the dd floor (as bench/run.sh does).
set -euo pipefail
top=${TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
W=${RBW:-/var/tmp/rbw}; IMG=$W/work.img
cp "$W/golden.img" "$IMG"; sync "$IMG"
load=$(cut -d' ' -f1 /proc/loadavg)
t0=$(date +%s%N)
# shellcheck disable=SC2086  # PROFILE_CMD is a command with its arguments
${PROFILE_CMD:-} "$top/bin/bowctl" rollback --device "$IMG" -y >"$W/rb.out" 2>&1 || { cat "$W/rb.out"; exit 1; }
t1=$(date +%s%N)
dd if="$IMG" of="$IMG" bs=1M skip=0 seek=1024 count=1024 conv=notrunc,fdatasync status=none
t2=$(date +%s%N)
rb=$(( (t1-t0)/1000000 )); dd=$(( (t2-t1)/1000000 ))
echo "rollback $rb ms, dd $dd ms, ratio $(awk -v a="$dd" -v b="$rb" 'BEGIN{printf "%.2f", a/b}'), load $load"
