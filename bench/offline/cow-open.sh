#!/usr/bin/env bash
# bowd start to serving with a COW made by: bench/cowgen.py /var/tmp/cowm/cow.img /var/tmp/cowm/origin.img 1000000
top=${TOP:-$(cd "$(dirname "$0")/../.." && pwd)}; W=/var/tmp/cowm; SOCK=$W/nbd.sock; CTL=$W/ctl.sock
rm -f "$SOCK" "$CTL"
load=$(cut -d' ' -f1 /proc/loadavg)
t0=$(date +%s%N)
"$top/bin/bowd" --socket "$SOCK" --control "$CTL" --mode persistent --device "$W/origin.img" --cow "$W/cow.img" >"$W/bowd.log" 2>&1 &
pid=$!
for _ in $(seq 3000); do
  kill -0 "$pid" 2>/dev/null || { cat "$W/bowd.log"; exit 1; }
  [ -S "$SOCK" ] && nbdinfo --size "nbd+unix:///?socket=$SOCK" >/dev/null 2>&1 && break; sleep 0.02; done
t1=$(date +%s%N)
# CPU the JVM spent to get there (user + system, all its threads; 100 ticks/s): steadier than
# the wall time on a loaded machine. The JVM is bowd's process, or its child while bin/bowd
# writes its class-data archive.
j=$(pgrep -P "$pid" -x java || echo "$pid")
cpu=$(awk '{ print ($14 + $15) * 10 }' "/proc/$j/stat")
st=$("$top/bin/bowctl" status --json --control "$CTL" | jq -r '.details.status')
"$top/bin/bowctl" shutdown --control "$CTL" >/dev/null 2>&1 || kill "$pid"; wait "$pid"
echo "open $(( (t1-t0)/1000000 )) ms, CPU $cpu ms (COW $st), load $load"
