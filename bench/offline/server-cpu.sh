#!/bin/bash
# Server CPU per request, A/B: for each argument (nbdkit, or a directory of bowd jars such as
# bowctl/target/lib copied aside), start that server on IMG in bow mode state 0, warm it up
# (4 x WU s of fio 4k randread/randwrite qd16), then run fixed fio jobs (WLS, 65536 requests
# each over 256 MiB) and print IOPS and the server's CPU ms (user + sys, /proc/PID/stat).
# The cache is primed as bench/run.sh does. Usage: IMG=/var/tmp/img bench/offline/server-cpu.sh nbdkit /tmp/libA /tmp/libB
set -u
here=$(cd "$(dirname "$0")/.." && pwd)
IMG=${IMG:?IMG=path of a scratch image of at least 256 MiB}
D=$(mktemp -d); SOCK=$D/nbd.sock; CTL=$D/ctl.sock
trap 'rm -rf "$D"' EXIT
# bin/bowd's JVM options, read from it: the builds compared run as the launcher runs them.
BOWD_OPTS=$(sed -n 's/^opts="\(.*\)"$/\1/p' "$here/../bin/bowd")
[ -n "$BOWD_OPTS" ] || { echo "server-cpu.sh: no opts= line in bin/bowd" >&2; exit 1; }
tick() { awk '{print ($14 + $15) * 10}' "/proc/$1/stat"; }
for srv in "$@"; do
    sync "$IMG"; /usr/bin/python3 "$here/prime-cache.py" "$IMG"
    rm -f "$SOCK" "$CTL"
    if [ "$srv" = nbdkit ]; then
        nbdkit -f -U "$SOCK" file "$IMG" &
    else
        # shellcheck disable=SC2086  # BOWD_OPTS, JOPTS: lists of JVM options
        java $BOWD_OPTS ${JOPTS:-} -cp "$srv/*" bow.daemon.Bowd \
            --socket "$SOCK" --control "$CTL" --mode bow --device "$IMG" --block-size 4096 >"$D/srv.log" 2>&1 &
    fi
    P=$!
    for _ in $(seq 100); do [ -S "$SOCK" ] && break; sleep 0.1; done
    for wl in randread randwrite randread randwrite; do
        fio --name=w --ioengine=nbd --uri="nbd+unix:///?socket=$SOCK" --rw="$wl" --bs=4k --iodepth=16 \
            --size=$((256 << 20)) --runtime="${WU:-3}" --time_based --output=/dev/null >/dev/null
    done
    r=""
    for wl in ${WLS:-randread randwrite}; do
        a=$(tick $P)
        fio --name=b --ioengine=nbd --uri="nbd+unix:///?socket=$SOCK" --randrepeat=1 --rw="$wl" --bs=4k --iodepth=16 \
            --size=$((256 << 20)) --output-format=json --output="$D/j.json" >/dev/null
        b=$(tick $P)
        r="$r $wl $(jq "[.jobs[].${wl#rand}.iops] | add | floor" "$D/j.json") IOPS, cpu $((b - a)) ms;"
    done
    echo "[$srv]$r load $(cut -d' ' -f1 /proc/loadavg)"
    kill $P; wait $P 2>/dev/null
done
