#!/bin/bash
# The JIT's share, run by run: bowd (bin/bowd, bow mode, state 0) on a copy of IMG, primed as
# bench/run.sh primes it, a WU s write warm-up, then RUNS runs of the same fio job (4k randwrite
# qd16 over 256 MiB, end fsync). Per run: IOPS, mean completion latency, bowd's CPU and the
# CPU its JIT compiler threads used in it. With PERSISTENT=1: persistent mode on a fresh COW,
# checkpoint started after the warm-up, so the first run is the first-write pass and the
# others rewrite its blocks. With BOWFW=1: bow mode, [256 MiB, end) trimmed and the checkpoint
# started after the warm-up, the same way (IMG of at least 600 MiB: the backups go there).
# JOPTS: extra JVM options for bowd (they win over bin/bowd's).
# Usage: IMG=/var/tmp/img [RUNS=4] [WU=3] [PERSISTENT=1 | BOWFW=1] [JOPTS=...] bench/offline/jit-sequence.sh
set -eu
top=$(cd "$(dirname "$0")/../.." && pwd)
IMG=${IMG:?IMG=path of a scratch image of at least 256 MiB (copied, not changed)}
RUNS=${RUNS:-4} WU=${WU:-3}
if [ "${BOWFW:-}" = 1 ] && [ "$(stat -c %s "$IMG")" -lt $((600 << 20)) ]; then
    echo "jit-sequence: BOWFW=1 needs an IMG of at least 600 MiB (the backups of 256 MiB of first writes go past 256 MiB)" >&2
    exit 1
fi
D=$(mktemp -d "${TMPDIR:-/var/tmp}/jitseq.XXXXXX")
SOCK=$D/nbd.sock CTL=$D/ctl.sock URI="nbd+unix:///?socket=$D/nbd.sock"
pid=
# Not "[ -n $pid ] && kill": under set -e, a failed kill (bowd already stopped) ended the trap before the rm.
cleanup() { if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; fi; rm -rf "$D"; }
trap cleanup EXIT
cp --reflink=never "$IMG" "$D/disk.img"
sync "$D/disk.img"; /usr/bin/python3 "$top/bench/prime-cache.py" "$D/disk.img"
args=(--mode bow --device "$D/disk.img" --block-size 4096)
if [ "${PERSISTENT:-}" = 1 ]; then
    truncate -s $((5 << 28)) "$D/cow.img"
    args=(--mode persistent --device "$D/disk.img" --cow "$D/cow.img")
fi
BOWD_NO_CDS=1 BOW_JAVA_OPTS="${JOPTS:-}" "$top/bin/bowd" --socket "$SOCK" --control "$CTL" "${args[@]}" >"$D/bowd.log" 2>&1 &
shell=$!
for _ in $(seq 300); do [ -S "$SOCK" ] && nbdinfo --size "$URI" >/dev/null 2>&1 && break; sleep 0.1; done
pid=$(pgrep -P "$shell" -x java || echo "$shell")
cpu() { awk '{print ($14 + $15) * 10}' "/proc/$pid/stat"; }
# CPU ms of the compiler threads (C1, C2) now; a thread's stat fields after its "(comm) ".
jit() {
    local t
    for t in /proc/"$pid"/task/*; do
        case $(cat "$t/comm" 2>/dev/null) in
            "C1 Compiler"*|"C2 Compiler"*) sed 's/.*) //' "$t/stat" 2>/dev/null ;;
        esac
    done | awk '{s += $12 + $13} END {print s * 10}'
}
run() {
    local name=$1 c0 j0; shift
    c0=$(cpu); j0=$(jit)
    fio --name="$name" --ioengine=nbd --uri="$URI" --rw=randwrite --bs=4k --iodepth=16 --offset=0 \
        --size=$((256 << 20)) --randrepeat=1 --end_fsync=1 --output-format=json --output="$D/fio.json" "$@" >/dev/null
    echo "$name: $(jq '.jobs[0].write.iops | floor' "$D/fio.json") IOPS, clat $(jq '.jobs[0].write.clat_ns.mean / 1000 | floor' "$D/fio.json") us, bowd CPU $(($(cpu) - c0)) ms, of it JIT $(($(jit) - j0)) ms"
}
run warm-up --runtime="$WU" --time_based
[ "${PERSISTENT:-}" = 1 ] && "$top/bin/bowctl" checkpoint start --control "$CTL" >/dev/null
if [ "${BOWFW:-}" = 1 ]; then
    sz=$(stat -c %s "$D/disk.img")
    "$top/bin/bowctl" trim --offset $((256 << 20)) --length $((sz - (256 << 20))) --control "$CTL" >/dev/null
    "$top/bin/bowctl" checkpoint start --control "$CTL" >/dev/null
fi
for i in $(seq "$RUNS"); do run "run$i" --runtime=60; done
"$top/bin/bowctl" shutdown --control "$CTL" >/dev/null || true
for _ in $(seq 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done   # still there: cleanup stops it
