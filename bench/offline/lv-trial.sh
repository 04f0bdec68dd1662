#!/usr/bin/env bash
# One trial (after lv-setup.sh): bowctl log verify and the dd read of as many bytes, page cache
# cold (the image's pages dropped with dd iflag=nocache count=0) then warm, as bench/run.sh does.
# TOP=<tree> picks the build.
set -euo pipefail
top=${TOP:-$(cd "$(dirname "$0")/../.." && pwd)}
W=${LVW:-/var/tmp/lvw}; VIMG=$W/verify.img
VERIFY=$(( ($(stat -c %s "$VIMG") - (64 << 20)) / 2 )); vbu=$(cat "$W/backed_up")
ms() { local t0 t1; t0=$(date +%s%N); "$@" >/dev/null 2>&1 || return 1; t1=$(date +%s%N); echo $(( (t1 - t0) / 1000000 )); }
drop() { dd if="$VIMG" iflag=nocache count=0 status=none; }
rd() { dd if="$VIMG" of=/dev/null bs=1M skip=$((VERIFY >> 20)) count=$((vbu >> 20)) status=none; }
load=$(cut -d' ' -f1 /proc/loadavg)
drop; vc=$(ms "$top/bin/bowctl" log verify --device "$VIMG") || { echo "verify failed"; exit 1; }
drop; dc=$(ms rd)
rd >/dev/null
vw=$(ms "$top/bin/bowctl" log verify --device "$VIMG")
dw=$(ms rd)
echo "cold verify $vc dd $dc ratio $(awk -v a="$vc" -v b="$dc" 'BEGIN{printf "%.2f", a/b}'); warm verify $vw dd $dw ratio $(awk -v a="$vw" -v b="$dw" 'BEGIN{printf "%.2f", a/b}'); load $load"
