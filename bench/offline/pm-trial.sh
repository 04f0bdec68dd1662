#!/usr/bin/env bash
# One trial (after pm-setup.sh): fresh copies of the golden origin + COW, the offline merge timed, then the dd floor.
set -euo pipefail
top=${TOP:-$(cd "$(dirname "$0")/../.." && pwd)}; W=/var/tmp/pmw
cp "$W/golden.img" "$W/work.img"; cp --sparse=always "$W/golden.cow" "$W/work.cow"; sync "$W/work.img" "$W/work.cow"
load=$(cut -d' ' -f1 /proc/loadavg)
t0=$(date +%s%N)
"$top/bin/bowctl" rollback --mode persistent --device "$W/work.img" --cow "$W/work.cow" -y >"$W/rb.out" 2>&1 || { cat "$W/rb.out"; exit 1; }
t1=$(date +%s%N)
dd if="$W/work.img" of="$W/work.img" bs=1M skip=0 seek=1024 count=1024 conv=notrunc,fdatasync status=none
t2=$(date +%s%N)
rb=$(( (t1-t0)/1000000 )); dd=$(( (t2-t1)/1000000 ))
echo "merge $rb ms, dd $dd ms, ratio $(awk -v a="$dd" -v b="$rb" 'BEGIN{printf "%.2f", a/b}'), load $load"
