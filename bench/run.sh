#!/usr/bin/env bash
# Side-by-side NBD benchmark: bowd (bow mode state 0 / state 1, persistent mode)
# against nbdkit file, nbdkit cow and qemu-nbd, all in one run on this machine,
# with fio's nbd engine over Unix sockets. See bench/README.md.
#
# Env knobs: BENCH_SIZE (default 256M), BENCH_RUNTIME (seconds, default 10),
# BENCH_WARMUP (seconds, default 3), BENCH_OUT (default bench/out),
# BENCH_TMPDIR (parent of the scratch dir, default /var/tmp),
# BENCH_PEERS (space-separated subset of: nbdkit-file qemu-nbd nbdkit-cow persistent bow).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

die() { echo "bench: $*" >&2; exit 1; }
say() { echo "bench: $*" >&2; }

to_bytes() {
    local v=$1 n unit
    [[ $v =~ ^([0-9]+)([KkMmGg]?)(i?[Bb])?$ ]] || die "bad size '$v' (use e.g. 256M, 1G, 65536)"
    n=${BASH_REMATCH[1]}; unit=${BASH_REMATCH[2]}
    case $unit in
        K|k) echo $((n << 10)) ;; M|m) echo $((n << 20)) ;; G|g) echo $((n << 30)) ;; *) echo "$n" ;;
    esac
}

SIZE=$(to_bytes "${BENCH_SIZE:-256M}")
RUNTIME=${BENCH_RUNTIME:-10}
WARMUP=${BENCH_WARMUP:-3}
OUT=${BENCH_OUT:-$here/out}
PEERS=${BENCH_PEERS:-nbdkit-file qemu-nbd nbdkit-cow persistent bow}
[[ $RUNTIME =~ ^[0-9]+$ && $RUNTIME -gt 0 ]] || die "BENCH_RUNTIME must be a positive number of seconds"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be a number of seconds"
(( SIZE >= 16 << 20 && SIZE % (1 << 20) == 0 )) || die "BENCH_SIZE must be a multiple of 1 MiB, at least 16 MiB"

# Layout of the image (S = BENCH_SIZE):
#   [0, S)        4k random read and random write region
#   [S, 2S)       1M sequential write region
#   [2S, end)     trimmed before the bow checkpoint: backup space (2S + 64 MiB
#                 headroom for log blocks, so the largest run never hits ENOSPC)
IMG_SIZE=$((4 * SIZE + (64 << 20)))
COW_SIZE=$((2 * SIZE + SIZE / 2 + (64 << 20)))

# ------------------------------------------------------------------ prerequisites
need() { command -v "$1" >/dev/null 2>&1 || die "missing '$1' ($2); install it or leave the peer out with BENCH_PEERS"; }
need fio "Debian package fio"
need nbdinfo "Debian package libnbd-bin"
need jq "Debian package jq"
need java "a JDK 17"
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd engine (Debian's fio has it)"
for p in $PEERS; do
    case $p in
        nbdkit-file) need nbdkit "Debian package nbdkit" ;;
        nbdkit-cow) need nbdkit "Debian package nbdkit"
            nbdkit --filter=cow file --version >/dev/null 2>&1 || die "nbdkit has no cow filter (Debian package nbdkit)" ;;
        qemu-nbd) need qemu-nbd "Debian package qemu-utils" ;;
        persistent|bow) need mvn "Maven, to build bowd" ;;
        *) die "unknown peer '$p' in BENCH_PEERS (known: nbdkit-file qemu-nbd nbdkit-cow persistent bow)" ;;
    esac
done
if [[ " $PEERS " == *" bow "* || " $PEERS " == *" persistent "* ]]; then
    if [ ! -d "$top/bowctl/target/lib" ] || ! ls "$top"/bowctl/target/bowctl-*.jar >/dev/null 2>&1; then
        say "building bowd (mvn -q -B -DskipTests package)..."
        (cd "$top" && mvn -q -B -DskipTests package) >&2 || die "build failed"
    fi
fi

# ------------------------------------------------------------------ scratch + cleanup
mkdir -p "$OUT"
T=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/bowbench.XXXXXX")
PIDS=()
cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$pid" 2>/dev/null || true
    done
    if [ "${BENCH_KEEP:-}" = 1 ]; then say "kept $T"; else rm -rf "$T"; fi
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)
IMG=$T/disk.img
SOCK=$T/nbd.sock
CTL=$T/control.sock
URI="nbd+unix:///?socket=$SOCK"
RESULTS=$T/results.tsv   # peer \t workload \t iops \t MiB/s \t note
: >"$RESULTS"

bowctl_cmd() { "$top/bin/bowctl" "$@" --control "$CTL"; }

# Starts a server in the background and waits until it answers NBD on $SOCK.
SERVER_PID=
start_server() {
    local name=$1; shift
    rm -f "$SOCK" "$CTL"
    "$@" >"$T/$name.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local i
    for i in $(seq 600); do
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$T/$name.log" >&2; die "$name exited while starting (command: $*)"; }
        if [ -S "$SOCK" ] && nbdinfo --size "$URI" >/dev/null 2>&1; then return 0; fi
        sleep 0.1
    done
    cat "$T/$name.log" >&2
    die "$name did not serve $SOCK within 60 s"
}

stop_server() {
    local name=$1
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    local i
    for i in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && { say "$name did not stop on SIGTERM; killing it"; kill -9 "$SERVER_PID"; }
    wait "$SERVER_PID" 2>/dev/null || true
    SERVER_PID=
}

# fio_run WORKLOAD RUNTIME [FIO_ARGS...] -> prints "iops MiB/s io_bytes runtime_ms error"
fio_run() {
    local wl=$1 runtime=$2 json=$T/fio.json common
    shift 2
    common=(--name=bench --ioengine=nbd "--uri=$URI" --numjobs=1 --group_reporting
            --output-format=json "--output=$json" "--runtime=$runtime" "$@")
    local job
    case $wl in
        randread)  job=(--rw=randread --bs=4k --iodepth=16 --offset=0 --size="$SIZE" --time_based) ;;
        randwrite) job=(--rw=randwrite --bs=4k --iodepth=16 --offset=0 --size="$SIZE" --end_fsync=1) ;;
        seqwrite)  job=(--rw=write --bs=1M --iodepth=4 --offset="$SIZE" --size="$SIZE" --end_fsync=1) ;;
        *) die "unknown workload $wl" ;;
    esac
    # In the background so that a signal reaches the script's trap at once
    # (bash defers traps until a foreground child ends); cleanup stops the
    # server, which ends fio.
    fio "${common[@]}" "${job[@]}" >/dev/null &
    wait $! || { cat "$json" >&2 2>/dev/null; die "fio $wl failed against $URI"; }
    local dir=read; [ "$wl" = randread ] || dir=write
    jq -r --arg d "$dir" '.jobs[0] as $j | .jobs[0][$d] as $x |
        "\($x.iops) \($x.bw_bytes / 1048576) \($x.io_bytes) \($j.job_runtime) \($j.error)"' "$json"
}

backed_up() { bowctl_cmd status --json | jq -r '.backed_up_bytes // 0'; }

# measure PEER WORKLOAD [bow] [FIO_ARGS...]: runs one measured fio job and records it;
# LAST_IO is the number of bytes it moved.
LAST_IO=0
measure() {
    local peer=$1 wl=$2 bow=${3:-} before=0 after note="" iops mibs io rt err
    shift 2; [ $# -gt 0 ] && shift
    [ -n "$bow" ] && before=$(backed_up)
    say "$peer: $wl (${RUNTIME}s max${*:+, $*})"
    read -r iops mibs io rt err < <(fio_run "$wl" "$RUNTIME" "$@")
    LAST_IO=$io
    [ "$err" = 0 ] || die "fio reported error $err for $peer $wl"
    if [ -n "$bow" ]; then
        after=$(backed_up)
        note="backed up $(( (after - before) >> 20 )) MiB"
    fi
    note="${note:+$note; }$((io >> 20)) MiB in ${rt} ms"
    printf '%s\t%s\t%.0f\t%.1f\t%s\n' "$peer" "$wl" "$iops" "$mibs" "$note" >>"$RESULTS"
    say "  -> $(printf '%.0f IOPS, %.1f MiB/s (%s)' "$iops" "$mibs" "$note")"
}

warmup() {
    [ "$WARMUP" -gt 0 ] || return 0
    say "warm-up ${WARMUP}s read + ${WARMUP}s write"
    fio_run randread "$WARMUP" >/dev/null
    fio_run randwrite "$WARMUP" >/dev/null
}

# ------------------------------------------------------------------ the image
say "scratch dir $T; image $((IMG_SIZE >> 20)) MiB filled with random data"
dd if=/dev/urandom of="$IMG" bs=1M count=$((IMG_SIZE >> 20)) status=none iflag=fullblock
sync "$IMG"

# ------------------------------------------------------------------ peers
for p in $PEERS; do
    case $p in
        nbdkit-file)
            # cache=default: buffered I/O through the page cache, flush = fdatasync.
            start_server nbdkit-file nbdkit -f -U "$SOCK" file "$IMG"
            warmup
            for wl in randread randwrite seqwrite; do measure "nbdkit file" $wl; done
            stop_server nbdkit-file ;;
        qemu-nbd)
            # writeback cache + thread pool: buffered I/O, flush = fdatasync (like nbdkit file and bowd).
            start_server qemu-nbd qemu-nbd -f raw -t -k "$SOCK" --cache=writeback --aio=threads "$IMG"
            warmup
            for wl in randread randwrite seqwrite; do measure "qemu-nbd" $wl; done
            stop_server qemu-nbd ;;
        nbdkit-cow)
            # Overlay in a temporary file under $T (unlinked); nothing reaches the image.
            start_server nbdkit-cow env TMPDIR="$T" nbdkit -f -U "$SOCK" --filter=cow file "$IMG"
            warmup
            for wl in randread randwrite seqwrite; do measure "nbdkit cow" $wl; done
            stop_server nbdkit-cow ;;
        persistent)
            rm -f "$T/cow.img"; truncate -s "$COW_SIZE" "$T/cow.img"
            start_server bowd-persistent "$top/bin/bowd" --mode persistent --device "$IMG" --cow "$T/cow.img" \
                --socket "$SOCK" --control "$CTL"
            warmup
            bowctl_cmd checkpoint start >/dev/null
            measure "bowd persistent, snapshot (1st write)" randread
            measure "bowd persistent, snapshot (1st write)" randwrite; rio=$LAST_IO
            measure "bowd persistent, snapshot (1st write)" seqwrite; sio=$LAST_IO
            # Same fio seed and no more bytes than the first pass: exactly the blocks it wrote.
            measure "bowd persistent, snapshot (rewrite)" randwrite "" --io_size="$rio"
            measure "bowd persistent, snapshot (rewrite)" seqwrite "" --io_size="$sio"
            bowctl_cmd status --json >"$T/persistent-status.json"
            jq -e '.state == "CHECKPOINT"' "$T/persistent-status.json" >/dev/null \
                || { cat "$T/persistent-status.json" >&2; die "persistent snapshot is no longer valid after the runs"; }
            bowctl_cmd commit >/dev/null
            bowctl_cmd shutdown >/dev/null || true
            stop_server bowd-persistent ;;
        bow)
            start_server bowd-bow "$top/bin/bowd" --mode bow --device "$IMG" --block-size 4096 \
                --socket "$SOCK" --control "$CTL"
            bowctl_cmd trim --offset $((2 * SIZE)) --length $((IMG_SIZE - 2 * SIZE)) >/dev/null
            warmup
            for wl in randread randwrite seqwrite; do measure "bowd bow, state 0" $wl bow; done
            bowctl_cmd checkpoint start >/dev/null
            measure "bowd bow, state 1 (1st write)" randread bow
            measure "bowd bow, state 1 (1st write)" randwrite bow; rio=$LAST_IO
            measure "bowd bow, state 1 (1st write)" seqwrite bow; sio=$LAST_IO
            # Same fio seed and no more bytes than the first pass: exactly the blocks it wrote,
            # now CHANGED, so they go in place (the "backed up" note shows it).
            measure "bowd bow, state 1 (rewrite)" randwrite bow --io_size="$rio"
            measure "bowd bow, state 1 (rewrite)" seqwrite bow --io_size="$sio"
            bowctl_cmd status --json >"$T/bow-status.json"
            bowctl_cmd commit >/dev/null
            bowctl_cmd shutdown >/dev/null || true
            stop_server bowd-bow ;;
    esac
done

# ------------------------------------------------------------------ report
machine_info() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "- host: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) >> 20 )) GiB RAM"
    echo "- kernel: $(uname -srm)"
    echo "- filesystem of the image: $(findmnt -no FSTYPE -T "$T" 2>/dev/null || echo '?') on $(findmnt -no SOURCE -T "$T" 2>/dev/null || echo '?')"
    echo "- java: $(java -version 2>&1 | head -2 | tail -1)"
    echo "- fio: $(fio --version); nbdkit: $(nbdkit --version 2>/dev/null | head -1 || echo -); qemu-nbd: $(qemu-nbd --version 2>/dev/null | head -1 || echo -); libnbd: $(nbdinfo --version 2>/dev/null | head -1)"
    echo "- bowd: $(cd "$top" && git describe --always --dirty 2>/dev/null || echo '?')"
    echo "- load average (1/5/15 min) at the start: $LOAD_START; at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
}

{
    echo "## Results"
    echo
    machine_info
    echo "- settings: BENCH_SIZE=$((SIZE >> 20))M BENCH_RUNTIME=${RUNTIME}s BENCH_WARMUP=${WARMUP}s; image $((IMG_SIZE >> 20)) MiB (random data, page cache warm)"
    echo
    echo "Each cell: IOPS (MiB/s). Writes end with a flush (fio --end_fsync=1), counted in the time."
    echo
    echo "| peer | 4k randread qd16 | 4k randwrite qd16 | 1M seqwrite qd4 |"
    echo "|---|---:|---:|---:|"
    awk -F'\t' '
        { key = $1 SUBSEP $2; cell[key] = sprintf("%d (%.1f)", $3, $4); if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
        END { for (i = 1; i <= n; i++) { p = order[i]; printf "| %s |", p
                  split("randread randwrite seqwrite", w, " ")
                  for (j = 1; j <= 3; j++) { k = p SUBSEP w[j]; printf " %s |", (k in cell) ? cell[k] : "—" }
                  printf "\n" } }' "$RESULTS"
    echo
    echo "Ratio of each bowd configuration to nbdkit file / to qemu-nbd (same workload, same run; 1.00 = as fast):"
    echo
    echo "| bowd configuration | 4k randread | 4k randwrite | 1M seqwrite |"
    echo "|---|---:|---:|---:|"
    awk -F'\t' '
        { iops[$1 SUBSEP $2] = $3; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
        function r(a, b) { return (b > 0 && a != "") ? sprintf("%.2f", a / b) : "—" }
        END { split("randread randwrite seqwrite", w, " ")
              for (i = 1; i <= n; i++) { p = order[i]; if (p !~ /^bowd/) continue; printf "| %s |", p
                  for (j = 1; j <= 3; j++) { k = p SUBSEP w[j]
                      if (!(k in iops)) { printf " — |"; continue }
                      printf " %s / %s |", r(iops[k], iops["nbdkit file" SUBSEP w[j]]), r(iops[k], iops["qemu-nbd" SUBSEP w[j]]) }
                  printf "\n" } }' "$RESULTS"
    echo
    echo "Per run (bytes moved, time, and for bow mode the bytes backed up during the run):"
    echo
    awk -F'\t' '{ printf "- %s, %s: %s\n", $1, $2, $5 }' "$RESULTS"
} >"$OUT/results.md"
cp "$RESULTS" "$OUT/results.tsv"
cat "$OUT/results.md"
