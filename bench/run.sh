#!/usr/bin/env bash
# The speed benchmark of issue 10, one command, one run: bowd in every mode and
# state side by side with nbdkit file, nbdkit --filter=cow file and qemu-nbd,
# with fio's nbd engine over Unix sockets; rollback against dd; the range map
# micro-benchmark; bowctl's start-up; bowd's RSS. Writes bench/results/latest.md
# (figures, ratios, met / not met per target, machine and load), latest.tsv and
# latest.png (gnuplot chart of the ratios with a line at each target), and puts
# the summary table into README.md between the bench markers. See bench/README.md.
#
# BENCH_QUICK=1: the fast mode (small regions, 2 s runs, nbdkit file + bowd only): about 3 minutes on a 2-core VM at load 5 (bench/RESULTS.md).
# BENCH_BOWD_FLAGS: extra flags for every bowd the benchmark starts (e.g. --direct).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

die() { echo "bench: $*" >&2; exit 1; }
say() { echo "bench: [$(( $(date +%s) - ${T0:-$(date +%s)} ))s] $*" >&2; }

to_bytes() {
    local v=$1 n unit
    [[ $v =~ ^([0-9]+)([KkMmGg]?)(i?[Bb])?$ ]] || die "bad size '$v' (use e.g. 256M, 1G, 65536)"
    n=${BASH_REMATCH[1]}; unit=${BASH_REMATCH[2]}
    case $unit in
        K|k) echo $((n << 10)) ;; M|m) echo $((n << 20)) ;; G|g) echo $((n << 30)) ;; *) echo "$n" ;;
    esac
}

T0=$(date +%s)
QUICK=${BENCH_QUICK:-0}
if [ "$QUICK" = 1 ]; then
    d_size=64M d_runtime=2 d_warmup=1 d_rollback=64M d_peers="nbdkit-file persistent shared bow"
else
    d_size=256M d_runtime=10 d_warmup=3 d_rollback=1G d_peers="nbdkit-file qemu-nbd nbdkit-cow persistent shared bow"
fi
SIZE=$(to_bytes "${BENCH_SIZE:-$d_size}")
RUNTIME=${BENCH_RUNTIME:-$d_runtime}
WARMUP=${BENCH_WARMUP:-$d_warmup}
ROLLBACK=$(to_bytes "${BENCH_ROLLBACK_SIZE:-$d_rollback}")
PEERS=${BENCH_PEERS:-$d_peers}
OUT=${BENCH_OUT:-$here/results}
[[ $RUNTIME =~ ^[0-9]+$ && $RUNTIME -gt 0 ]] || die "BENCH_RUNTIME must be a positive number of seconds"
[[ $WARMUP =~ ^[0-9]+$ ]] || die "BENCH_WARMUP must be a number of seconds"
(( SIZE >= 16 << 20 && SIZE % (4 << 20) == 0 )) || die "BENCH_SIZE must be a multiple of 4 MiB, at least 16 MiB"
(( ROLLBACK % (1 << 20) == 0 && ROLLBACK <= 4 * SIZE )) || die "BENCH_ROLLBACK_SIZE must be a multiple of 1 MiB, at most 4 x BENCH_SIZE"

# Layout of the image (S = BENCH_SIZE):
#   [kS, (k+1)S) for k = 0..3: the write regions of rw16, rw64, sw8 and rw16x4, so that each
#                 first-write run in a checkpoint meets blocks that still hold checkpointed data;
#                 reads cover [0, S) (4k random) and [0, 4S) (1M sequential)
#   [4S, end)     trimmed before the bow checkpoint: backup space (4S + 64 MiB for log blocks)
IMG_SIZE=$((8 * SIZE + (64 << 20)))
COW_SIZE=$((5 * SIZE + (64 << 20)))
BACKUP_AT=$((4 * SIZE))

# Workloads: name, then what fio does. x4 = four jobs, each its own NBD connection.
WORKLOADS="rr16 rr64 rw16 rw64 sr8 sw8 rr16x4 rw16x4"
READS="rr16 rr64 sr8 rr16x4"
if [ "$QUICK" = 1 ]; then
    # The fast mode keeps what the targets need: no 4k reads at qd64, 1M reads only for nbdkit and state 0.
    WORKLOADS="rr16 rw16 rw64 sr8 sw8 rr16x4 rw16x4"
    READS="rr16 rr16x4"
fi
WRITES="rw16 rw64 sw8 rw16x4"
wl_label() {
    case $1 in
        rr16) echo "4k randread qd16" ;; rr64) echo "4k randread qd64" ;;
        rw16) echo "4k randwrite qd16" ;; rw64) echo "4k randwrite qd64" ;;
        sr8) echo "1M read qd8" ;; sw8) echo "1M write qd8" ;;
        rr16x4) echo "4k randread qd16 x4 conn" ;; rw16x4) echo "4k randwrite qd16 x4 conn" ;;
    esac
}

# ------------------------------------------------------------------ prerequisites
need() { command -v "$1" >/dev/null 2>&1 || die "missing '$1' ($2); install it or leave the peer out with BENCH_PEERS"; }
need fio "Debian package fio"
need nbdinfo "Debian package libnbd-bin"
need jq "Debian package jq"
need java "a JDK 17"
need javac "a JDK 17"
fio --enghelp=nbd >/dev/null 2>&1 || die "this fio has no nbd engine (Debian's fio has it)"
for p in $PEERS; do
    case $p in
        nbdkit-file) need nbdkit "Debian package nbdkit" ;;
        nbdkit-cow) need nbdkit "Debian package nbdkit"
            nbdkit --filter=cow file --version >/dev/null 2>&1 || die "nbdkit has no cow filter (Debian package nbdkit)" ;;
        qemu-nbd) need qemu-nbd "Debian package qemu-utils" ;;
        persistent|shared|bow) ;;
        *) die "unknown peer '$p' in BENCH_PEERS (known: nbdkit-file qemu-nbd nbdkit-cow persistent shared bow)" ;;
    esac
done
[[ " $PEERS " == *" nbdkit-file "* ]] || say "nbdkit-file is not in BENCH_PEERS: the pass-through targets cannot be judged"
if ! command -v gnuplot >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        say "installing gnuplot-nox (apt-get) for the chart..."
        { apt-get install -y -q gnuplot-nox || { apt-get update -q && apt-get install -y -q gnuplot-nox; }; } >/dev/null 2>&1 \
            || say "could not install gnuplot-nox: no chart this time"
    else
        say "gnuplot is missing (Debian package gnuplot-nox): no chart this time"
    fi
fi
if [ ! -d "$top/bowctl/target/lib" ] || ! ls "$top"/bowctl/target/bowctl-*.jar >/dev/null 2>&1; then
    need mvn "Maven, to build bowd"
    say "building bowd (mvn -q -B -DskipTests package)..."
    (cd "$top" && mvn -q -B -DskipTests package) >&2 || die "build failed"
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
COW=$T/cow.img
SOCK=$T/nbd.sock
CTL=$T/control.sock
URI="nbd+unix:///?socket=$SOCK"
RESULTS=$T/results.tsv   # config \t workload \t iops \t MiB/s \t flushes per write (or -) \t note
EXTRA=$T/extra.tsv       # key \t value \t note (rollback, range map, bowctl, RSS)
: >"$RESULTS"; : >"$EXTRA"
LOADS=()                 # "config: load" samples, one per server

# LAST_STATUS: bowd's status --json as the last measure left it, the next measure's "before"
# (one bowctl call per measure instead of two); anything else that talks to bowd, runs fio
# or starts a server forgets it.
LAST_STATUS=
bowctl_cmd() { LAST_STATUS=; "$top/bin/bowctl" "$@" --control "$CTL"; }
extra() { printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >>"$EXTRA"; }

# Every server meets the image in the same page-cache state: all of it cached, in small
# folios (bench/prime-cache.py). What the cache holds matters more than the server here:
# 4k writes into large folios (those of shred's big writes, or of read-ahead) cost several
# times writes into small ones (ext4 walks the folio's every block per write, under the
# inode lock), and each peer used to inherit whatever the previous one left
# (bench/RESULTS.md, "page-cache state").
prime_cache() {
    sync   # every file, not only the image: no peer's dirty pages are written back during the next one
    /usr/bin/python3 "$here/prime-cache.py" "$IMG"
}

# Starts a server in the background and waits until it answers NBD on $SOCK.
SERVER_PID=
RSS_PID=
RSS_FILE=
start_server() {
    local name=$1; shift
    LAST_STATUS=
    rm -f "$SOCK" "$CTL"
    if [[ " $* " == *" $IMG "* ]]; then prime_cache; fi
    "$@" >"$T/$name.log" 2>&1 &
    SERVER_PID=$!
    PIDS+=("$SERVER_PID")
    local i
    for i in $(seq 600); do
        kill -0 "$SERVER_PID" 2>/dev/null || { cat "$T/$name.log" >&2; die "$name exited while starting (command: $*)"; }
        if [ -S "$SOCK" ] && nbdinfo --size "$URI" >/dev/null 2>&1; then break; fi
        [ "$i" = 600 ] && { cat "$T/$name.log" >&2; die "$name did not serve $SOCK within 60 s"; }
        sleep 0.1
    done
    LOADS+=("$name $(cut -d' ' -f1 /proc/loadavg) ($(awk '/^Dirty:/ {print int($2 / 1024)}' /proc/meminfo) MiB dirty)")
    # The server's resident memory, sampled every 0.2 s; the peak is reported (bowd: target < 256 MiB).
    RSS_FILE=$T/$name.rss
    echo 0 >"$RSS_FILE"
    # bin/bowd's first serving run in a mode after a build is a shell with java as its child
    # (it writes the class-data archive): then the child is sampled.
    ( pid=$SERVER_PID; max=0
      jpid=$(pgrep -P "$pid" -x java || echo "$pid")
      while kill -0 "$pid" 2>/dev/null; do
          r=$(awk '/^VmRSS/ {print $2}' "/proc/$jpid/status" 2>/dev/null || echo 0)
          [ -n "$r" ] && [ "$r" -gt "$max" ] && { max=$r; echo "$max" >"$RSS_FILE"; }
          sleep 0.2
      done ) &
    RSS_PID=$!
    PIDS+=("$RSS_PID")
}

stop_server() {
    local name=$1
    [ -n "$SERVER_PID" ] || return 0
    kill "$SERVER_PID" 2>/dev/null || true
    local i
    for i in $(seq 300); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -0 "$SERVER_PID" 2>/dev/null && { say "$name did not stop on SIGTERM; killing it"; kill -9 "$SERVER_PID"; }
    wait "$SERVER_PID" 2>/dev/null || true
    wait "$RSS_PID" 2>/dev/null || true
    extra "rss_kib $name" "$(cat "$RSS_FILE")" "peak VmRSS"
    SERVER_PID=
}

# fio_run WORKLOAD RUNTIME [FIO_ARGS...] -> prints "iops MiB/s io_bytes min_job_io_bytes runtime_ms error ios"
fio_run() {
    LAST_STATUS=
    local wl=$1 runtime=$2 json=$T/fio.json common
    shift 2
    common=(--name=bench --ioengine=nbd "--uri=$URI" --output-format=json "--output=$json" "--runtime=$runtime"
            --randrepeat=1)
    local q=$((SIZE / 4)) job
    case $wl in
        rr16)   job=(--rw=randread --bs=4k --iodepth=16 --offset=0 --size="$SIZE" --time_based) ;;
        rr64)   job=(--rw=randread --bs=4k --iodepth=64 --offset=0 --size="$SIZE" --time_based) ;;
        rr16x4) job=(--rw=randread --bs=4k --iodepth=16 --offset=0 --size="$SIZE" --time_based --numjobs=4) ;;
        sr8)    job=(--rw=read --bs=1M --iodepth=8 --offset=0 --size=$((4 * SIZE)) --time_based) ;;
        rw16)   job=(--rw=randwrite --bs=4k --iodepth=16 --offset=0 --size="$SIZE" --end_fsync=1) ;;
        rw64)   job=(--rw=randwrite --bs=4k --iodepth=64 --offset="$SIZE" --size="$SIZE" --end_fsync=1) ;;
        sw8)    job=(--rw=write --bs=1M --iodepth=8 --offset=$((2 * SIZE)) --size="$SIZE" --end_fsync=1) ;;
        rw16x4) job=(--rw=randwrite --bs=4k --iodepth=16 --offset=$((3 * SIZE)) --size="$q" --offset_increment="$q"
                     --numjobs=4 --end_fsync=1) ;;
        *) die "unknown workload $wl" ;;
    esac
    # In the background so that a signal reaches the script's trap at once
    # (bash defers traps until a foreground child ends); cleanup stops the
    # server, which ends fio.
    fio "${common[@]}" "${job[@]}" "$@" >/dev/null &   # the caller's arguments last: they win
    wait $! || { cat "$json" >&2 2>/dev/null; die "fio $wl failed against $URI"; }
    local dir="write"; [[ $wl == rr* || $wl == sr* ]] && dir="read"
    jq -r --arg d "$dir" '[.jobs[]] as $j |
        "\([$j[][$d].iops] | add) \([$j[][$d].bw_bytes] | add / 1048576) \([$j[][$d].io_bytes] | add) \([$j[][$d].io_bytes] | min) \([$j[].job_runtime] | max) \([$j[].error] | max) \([$j[][$d].total_ios] | add)"' "$json"
}

status_json() { bowctl_cmd status --json; }

# Pass-through rows (every row but the 1st write ones, which are one pass over blocks that still
# hold checkpointed data) run for the whole runtime, writes too, looping over their region: one
# pass of S bytes took 0.3-1 s on a machine where nbdkit wrote 100k IOPS, and rows that short
# moved by 40 % with the closing flush and whatever the kernel wrote back meanwhile
# (bench/RESULTS.md, "ninth session").
STEADY=(--time_based)

# measure CONFIG WORKLOAD bowd|- [FIO_ARGS...]: one measured fio job, recorded.
# LAST_MIN_IO is the smallest number of bytes one of its jobs moved (for the rewrite pass).
LAST_MIN_IO=0
measure() {
    local cfg=$1 wl=$2 bowd=$3 note="" iops mibs io minio rt err ios fpw=- s0 s1
    shift 3
    [ "$bowd" = bowd ] && { s0=${LAST_STATUS:-$(status_json)}; LAST_STATUS=; }
    say "$cfg: $(wl_label "$wl") (${RUNTIME}s max${*:+, $*})"
    read -r iops mibs io minio rt err ios < <(fio_run "$wl" "$RUNTIME" "$@")
    LAST_MIN_IO=$minio
    [ "$err" = 0 ] || die "fio reported error $err for $cfg $wl"
    if [ "$bowd" = bowd ]; then
        s1=$(status_json)
        local b0 b1 f0 f1 mode cow
        IFS=$'\t' read -r b0 f0 < <(jq -r '[.backed_up_bytes // 0, .details.io_flushes // 0] | @tsv' <<<"$s0")
        IFS=$'\t' read -r b1 f1 mode cow < <(jq -r '[.backed_up_bytes // 0, .details.io_flushes // 0, .mode, .details.status // "?"] | @tsv' <<<"$s1")
        note="device flushes $((f1 - f0))"
        if [[ $wl == rw* || $wl == sw* ]]; then
            fpw=$(awk -v f=$((f1 - f0)) -v n="$ios" 'BEGIN { printf "%.3f", (n > 0) ? f / n : 0 }')
        fi
        [ "$mode" = bow ] && note="$note; backed up $(( (b1 - b0) >> 20 )) MiB"
        [ "$mode" = persistent ] && note="$note; COW $cow"
        LAST_STATUS=$s1
    fi
    note="${note:+$note; }$((io >> 20)) MiB in ${rt} ms"
    printf '%s\t%s\t%.0f\t%.1f\t%s\t%s\n' "$cfg" "$wl" "$iops" "$mibs" "$fpw" "$note" >>"$RESULTS"
    say "  -> $(printf '%.0f IOPS, %.1f MiB/s (%s)' "$iops" "$mibs" "$note")"
}

# A second, short write job ends each warm-up: the first job's closing flush and disconnect are the
# first of their kind, and bowd's JIT throws away its compiled request path on them (deoptimization,
# "unstable_if") and compiles it again; without the second job that happened during the first
# measured row (0.7x the next run, bench/RESULTS.md, "fifth session"). Every server gets the same.
settle() { fio_run rw16 1 --time_based "$@" >/dev/null; }

warmup() {
    [ "$WARMUP" -gt 0 ] || return 0
    say "warm-up ${WARMUP}s read + ${WARMUP}s write + 1s write"
    fio_run rr16 "$WARMUP" >/dev/null
    fio_run rw16 "$WARMUP" --time_based >/dev/null
    settle
}

# first_and_rewrite CONFIG_PREFIX: the checkpoint's reads, first writes, then rewrites of the same blocks.
first_and_rewrite() {
    local pre=$1 wl
    declare -A minio
    for wl in $READS; do measure "$pre, reads" "$wl" bowd; done
    # First writes may take six times the runtime: a pass that stops early leaves its
    # region's blocks sparse, and the rewrite's end fsync of scattered pages costs more
    # per page than the dense region every other write row flushes.
    for wl in $WRITES; do measure "$pre, 1st write" "$wl" bowd --runtime=$((RUNTIME * 6)); minio[$wl]=$LAST_MIN_IO; done
    # The rewrites are the checkpoint's first pass-through writes: bowd's JIT recompiles the
    # write path for them (the first rewrite row ran at 0.7x the next ones, bench/RESULTS.md),
    # as it did for the state-0 path in warmup(). Its first loop writes the first pass's blocks
    # (same seed, as many bytes); a later loop draws others, which a complete first pass
    # (the usual case) has all changed already, so nothing more is backed up.
    if [ "$WARMUP" -gt 0 ]; then
        say "warm-up ${WARMUP}s rewrite + 1s rewrite"
        fio_run rw16 "$WARMUP" --time_based --io_size="${minio[rw16]}" >/dev/null
        settle --io_size="${minio[rw16]}"
    fi
    # Same fio seed and no more bytes per job than the first pass: exactly the blocks it wrote.
    for wl in $WRITES; do measure "$pre, rewrite" "$wl" bowd --io_size="${minio[$wl]}" "${STEADY[@]}"; done
}

# time_ms COMMAND...: runs it, prints the wall time in ms.
time_ms() {
    local t0 t1
    t0=$(date +%s%N)
    "$@" >/dev/null 2>&1 || return 1
    t1=$(date +%s%N)
    echo $(( (t1 - t0) / 1000000 ))
}

# dd_floor BYTES: a dd copy of BYTES within the image (read + write + fdatasync), in ms.
dd_floor() {
    local mib=$(($1 >> 20))
    time_ms dd if="$IMG" of="$IMG" bs=1M skip=0 seek=$((BACKUP_AT >> 20)) count="$mib" conv=notrunc,fdatasync status=none
}

# ------------------------------------------------------------------ the image
say "scratch dir $T; image $((IMG_SIZE >> 20)) MiB filled with random data$([ "$QUICK" = 1 ] && echo '; QUICK mode')"
if command -v shred >/dev/null 2>&1; then
    truncate -s "$IMG_SIZE" "$IMG" && shred -n 1 "$IMG"     # pseudo-random, much faster than /dev/urandom
else
    dd if=/dev/urandom of="$IMG" bs=1M count=$((IMG_SIZE >> 20)) status=none iflag=fullblock
fi
sync "$IMG"

read -r -a BOWD_FLAGS <<<"${BENCH_BOWD_FLAGS:-}"
BOWD=("$top/bin/bowd" --socket "$SOCK" --control "$CTL" ${BOWD_FLAGS[@]+"${BOWD_FLAGS[@]}"})

# ------------------------------------------------------------------ peers
# The reference runs first and, unless BENCH_QUICK, again just before the bow peer (whose rows
# are most of the pass-through targets) and at the end: the machine drifts over a run (nbdkit's
# own x4 write row read 66k-132k IOPS on one quiet machine, bench/RESULTS.md, "eleventh
# session"), and the ratios use the mean of the passes.
REF_AGAIN=${BENCH_REF_AGAIN:-$([ "$QUICK" = 1 ] && echo 0 || echo 1)}
run_nbdkit_file() {
    # cache=default: buffered I/O through the page cache, flush = fdatasync.
    start_server "nbdkit-file$1" nbdkit -f -U "$SOCK" file "$IMG"
    warmup
    for wl in $WORKLOADS; do measure "nbdkit file" "$wl" - "${STEADY[@]}"; done
    stop_server "nbdkit-file$1"
}
ALL_PEERS=$PEERS
if [ "$REF_AGAIN" = 1 ] && [[ " $PEERS " == *" nbdkit-file "* ]]; then
    ALL_PEERS='' prev=''
    for p in $PEERS; do
        [ "$p" = bow ] && [ -n "$prev" ] && [ "$prev" != nbdkit-file ] && ALL_PEERS="$ALL_PEERS nbdkit-file-mid"
        ALL_PEERS="$ALL_PEERS $p" prev=$p
    done
    ALL_PEERS="${ALL_PEERS# } nbdkit-file-again"
fi
for p in $ALL_PEERS; do
    case $p in
        nbdkit-file) run_nbdkit_file "" ;;
        nbdkit-file-mid) run_nbdkit_file "-mid" ;;
        nbdkit-file-again) run_nbdkit_file "-again" ;;
        qemu-nbd)
            # writeback cache + thread pool: buffered I/O, flush = fdatasync (like nbdkit file and bowd).
            # -e 8: up to 8 connections at once (the x4 jobs).
            start_server qemu-nbd qemu-nbd -f raw -t -e 8 -k "$SOCK" --cache=writeback --aio=threads "$IMG"
            warmup
            for wl in $WORKLOADS; do measure "qemu-nbd" "$wl" - "${STEADY[@]}"; done
            stop_server qemu-nbd ;;
        nbdkit-cow)
            # Overlay in a temporary file under $T (unlinked); nothing reaches the image.
            start_server nbdkit-cow env TMPDIR="$T" nbdkit -f -U "$SOCK" --filter=cow file "$IMG"
            warmup
            for wl in $WORKLOADS; do measure "nbdkit cow" "$wl" - "${STEADY[@]}"; done
            stop_server nbdkit-cow ;;
        persistent)
            rm -f "$COW"; truncate -s "$COW_SIZE" "$COW"
            start_server bowd-persistent "${BOWD[@]}" --mode persistent --device "$IMG" --cow "$COW"
            warmup
            bowctl_cmd checkpoint start >/dev/null
            first_and_rewrite "bowd persistent"
            status_json >"$T/persistent-status.json"
            jq -e '.state == "CHECKPOINT"' "$T/persistent-status.json" >/dev/null \
                || { cat "$T/persistent-status.json" >&2; die "persistent snapshot is no longer valid after the runs"; }
            bowctl_cmd commit >/dev/null
            # Rollback: a fresh snapshot, ROLLBACK bytes of first writes, then the offline merge.
            bowctl_cmd checkpoint start >/dev/null
            say "persistent: $((ROLLBACK >> 20)) MiB of first writes for the rollback"
            fio_run sw8 60 --offset=0 --size="$ROLLBACK" >/dev/null
            st=$(status_json | jq -r '.details.status')
            bowctl_cmd shutdown >/dev/null || true
            stop_server bowd-persistent
            ms=$(time_ms "$top/bin/bowctl" rollback --mode persistent --device "$IMG" --cow "$COW" -y) \
                || die "persistent rollback failed"
            floor=$(dd_floor "$ROLLBACK")
            extra "rollback persistent" "$ms $floor" "merge of $((ROLLBACK >> 20)) MiB (COW $st) vs dd of as many bytes"
            rm -f "$COW" ;;
        shared)
            # Origin first writes while 1, 10, then 64 snapshots share every chunk: each count writes
            # its own region [kS, (k+1)S), whose chunks all snapshots still read from the origin.
            rm -f "$COW"; truncate -s "$COW_SIZE" "$COW"
            start_server bowd-shared "${BOWD[@]}" --mode shared --device "$IMG" --cow "$COW"
            warmup
            n=0; k=0
            for want in 1 10 64; do
                # One bowctl call per count (snapshot create NAME...: one connection, one JVM start).
                names=()
                while [ $((n + ${#names[@]})) -lt "$want" ]; do names+=("s$((n + ${#names[@]}))"); done
                bowctl_cmd snapshot create "${names[@]}" >/dev/null || die "bowctl snapshot create failed (snapshots $n..$((want - 1)))"
                n=$want
                if [ "$want" = 1 ]; then
                    measure "bowd shared, reads" rr16 bowd
                    # first writes warm up on region 3, so the 1-snapshot run is not the JIT's first
                    [ "$WARMUP" -gt 0 ] && fio_run rw16 "$WARMUP" --offset=$((3 * SIZE)) --time_based >/dev/null
                fi
                measure "bowd shared, 1st write, $want snapshots" rw16 bowd --offset=$((k * SIZE))
                k=$((k + 1))
            done
            bowctl_cmd snapshot list >"$T/shared-list.txt" 2>&1 || true
            extra "shared snapshots" "$(tail -1 "$T/shared-list.txt")" "bowctl snapshot list after the runs"
            bowctl_cmd shutdown >/dev/null || true
            stop_server bowd-shared
            rm -f "$COW" ;;
        bow)
            start_server bowd-bow "${BOWD[@]}" --mode bow --device "$IMG" --block-size 4096
            bowctl_cmd trim --offset "$BACKUP_AT" --length $((IMG_SIZE - BACKUP_AT)) >/dev/null
            warmup
            for wl in $WORKLOADS; do measure "bowd bow, state 0" "$wl" bowd "${STEADY[@]}"; done
            bowctl_cmd checkpoint start >/dev/null
            first_and_rewrite "bowd bow, state 1"
            bowctl_cmd commit >/dev/null
            for wl in $WORKLOADS; do
                [ "$QUICK" = 1 ] && [[ $wl != rr16 && $wl != rw16 && $wl != rr16x4 && $wl != rw16x4 ]] && continue
                measure "bowd bow, state 2" "$wl" bowd "${STEADY[@]}"
            done
            bowctl_cmd shutdown >/dev/null || true
            stop_server bowd-bow
            # Rollback: a new daemon (the device is plain again), backup space trimmed, a checkpoint,
            # ROLLBACK bytes of first writes, the daemon stopped, then the offline rollback.
            start_server bowd-bow-rollback "${BOWD[@]}" --mode bow --device "$IMG" --block-size 4096
            bowctl_cmd trim --offset "$BACKUP_AT" --length $((IMG_SIZE - BACKUP_AT)) >/dev/null
            bowctl_cmd checkpoint start >/dev/null
            say "bow: $((ROLLBACK >> 20)) MiB of first writes for the rollback"
            fio_run sw8 60 --offset=0 --size="$ROLLBACK" >/dev/null
            bu=$(status_json | jq -r '.backed_up_bytes')
            bowctl_cmd shutdown >/dev/null || true
            stop_server bowd-bow-rollback
            ms=$(time_ms "$top/bin/bowctl" rollback --device "$IMG" -y) || die "bow rollback failed"
            floor=$(dd_floor "$bu")
            extra "rollback bow" "$ms $floor" "$((bu >> 20)) MiB of backups vs dd of as many bytes" ;;
    esac
done

# ------------------------------------------------------------------ backup placement
# bench/placement.sh: an ext4 update workload on a bow-mode bowd (nbdfuse + loop device, so root).
if [[ " $PEERS " == *" bow "* ]]; then
    if [ "$(id -u)" != 0 ]; then
        extra "placement" "" "not measured: needs root (losetup, mount)"
    elif ! command -v nbdfuse >/dev/null 2>&1 || ! command -v mkfs.ext4 >/dev/null 2>&1; then
        extra "placement" "" "not measured: needs nbdfuse (libnbd-bin) and mkfs.ext4 (e2fsprogs)"
    else
        say "bow: backup placement (bench/placement.sh, ext4 update workload)"
        # A failure here costs one row, not the run: its stderr is above.
        if pl=$(BENCH_QUICK=$QUICK BENCH_TMPDIR=$T "$here/placement.sh"); then
            say "  -> $pl"
            plv=(); for kv in $pl; do plv+=("${kv#*=}"); done   # ratio backed_up original moved
            pr=${plv[0]} pb=${plv[1]} po=${plv[2]} pm=${plv[3]}
            extra "placement" "$pr $pb $po $pm" "backed up $((pb >> 20)) MiB to protect $((po >> 20)) MiB of checkpointed data; $((pm >> 20)) MiB of backups moved again"
        else
            extra "placement" "" "not measured: bench/placement.sh failed (its messages are in the run's stderr)"
        fi
    fi
fi

# ------------------------------------------------------------------ COW open, log verify
# median_of3 CMD...: runs a command printing a number of ms three times, prints "median (a b c)".
median_of3() {
    local r=() i
    for i in 1 2 3; do r+=("$("$@")") || return 1; done
    echo "$(printf '%s\n' "${r[@]}" | sort -n | sed -n 2p) (${r[*]})"
}

# serve_ms ARGS...: bowd ARGS started, ms until it answers NBD (polled every 20 ms); then stopped.
serve_ms() {
    rm -f "$SOCK" "$CTL"
    local t0 t1 pid i
    t0=$(date +%s%N)
    "${BOWD[@]}" "$@" >"$T/serve.log" 2>&1 &
    pid=$!
    for i in $(seq 3000); do
        kill -0 "$pid" 2>/dev/null || { cat "$T/serve.log" >&2; return 1; }
        if [ -S "$SOCK" ] && nbdinfo --size "$URI" >/dev/null 2>&1; then break; fi
        sleep 0.02
    done
    t1=$(date +%s%N)
    bowctl_cmd shutdown >/dev/null 2>&1 || kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    echo $(( (t1 - t0) / 1000000 ))
}

if [[ " $PEERS " == *" persistent "* ]]; then
    # A persistent COW with a million exceptions, written by bench/cowgen.py (the dm-snapshot
    # format; the data chunks are holes), against the same bowd with a fresh COW (JVM and daemon start).
    NEXC=${BENCH_COW_EXCEPTIONS:-1000000}
    say "persistent: open a COW with $NEXC exceptions (3 times), and a fresh one (3 times)"
    /usr/bin/python3 "$here/cowgen.py" "$T/million.cow" "$T/million.origin" "$NEXC" >&2
    open_ms=$(median_of3 serve_ms --mode persistent --device "$T/million.origin" --cow "$T/million.cow") \
        || die "bowd did not open the generated COW"
    truncate -s 64M "$T/fresh.cow"
    fresh_ms=$(serve_ms --mode persistent --device "$T/million.origin" --cow "$T/fresh.cow") || die "bowd did not start on a fresh COW"
    rm -f "$T/fresh.cow"; truncate -s 64M "$T/fresh.cow"
    fresh_ms="$fresh_ms $(serve_ms --mode persistent --device "$T/million.origin" --cow "$T/fresh.cow")"
    extra "cow open" "$(awk -v m="${open_ms%% *}" 'BEGIN { printf "%.2f", m / 1000 }')" \
        "bowd start to serving, $NEXC exceptions: median ms of 3 ${open_ms}; an empty COW: ${fresh_ms} ms"
    rm -f "$T/million.cow" "$T/million.origin" "$T/fresh.cow"
    say "  -> ${open_ms} ms (fresh COW: ${fresh_ms} ms)"
fi

if [[ " $PEERS " == *" bow "* ]]; then
    # bowctl log verify of a full checkpoint (VERIFY bytes of first writes, so as many bytes of
    # backups) against one read of the backups (dd to /dev/null of as many bytes), both with the
    # backups in the page cache as the writes left them. Its own sparse image: data, then backups.
    VERIFY=$(to_bytes "${BENCH_VERIFY_SIZE:-$([ "$QUICK" = 1 ] && echo 256M || echo 4G)}")
    VIMG=$T/verify.img
    rm -f "$VIMG"; truncate -s $((2 * VERIFY + (64 << 20))) "$VIMG"
    start_server bowd-verify "${BOWD[@]}" --mode bow --device "$VIMG" --block-size 4096
    bowctl_cmd trim --offset "$VERIFY" --length $((VERIFY + (64 << 20))) >/dev/null
    bowctl_cmd checkpoint start >/dev/null
    say "bow: $((VERIFY >> 20)) MiB of first writes for log verify"
    fio_run sw8 600 --offset=0 --size="$VERIFY" >/dev/null
    vbu=$(status_json | jq -r '.backed_up_bytes')
    bowctl_cmd shutdown >/dev/null || true
    stop_server bowd-verify
    # Cold: the image's pages dropped from the page cache first (posix_fadvise DONTNEED through
    # dd's nocache flag, this file only), as after the reboot that precedes a rollback.
    drop_cache() { [ "${1:-}" = cold ] && dd if="$VIMG" iflag=nocache count=0 status=none; return 0; }
    verify_ms() { drop_cache "$1"; time_ms "$top/bin/bowctl" log verify --device "$VIMG"; }
    read_ms() { drop_cache "$1"; time_ms dd if="$VIMG" of=/dev/null bs=1M skip=$((VERIFY >> 20)) count=$((vbu >> 20)) status=none; }
    # Verify and dd alternate (3 each): the same read varied 2x with what ran just before it (the
    # host's cache of this VM's disk, bench/RESULTS.md, "seventh session"), so three verifies then
    # three reads gave the later ones the warmer host cache.
    for cache in cold warm; do
        read_ms warm >/dev/null   # the warm runs start from the same page-cache state
        vs=() rds=()
        for _ in 1 2 3; do
            vs+=("$(verify_ms "$cache")") || die "bowctl log verify failed on $VIMG"
            rds+=("$(read_ms "$cache")")
        done
        v="$(printf '%s\n' "${vs[@]}" | sort -n | sed -n 2p) (${vs[*]})"
        rd="$(printf '%s\n' "${rds[@]}" | sort -n | sed -n 2p) (${rds[*]})"
        extra "log verify $cache" "${v%% *} ${rd%% *} $((vbu >> 20))" "verify median ms of 3 ${v}; dd read of as many bytes ${rd} ms"
        say "  -> $cache cache: verify ${v} ms, read ${rd} ms"
    done
    rm -f "$VIMG"
fi

# ------------------------------------------------------------------ range map, bowctl
say "range map: a million fragmented free runs"
# Compiled once per build (javac costs seconds): again when the driver or bowd's classes are newer.
rm_dir=$top/bowd/target/bench-rangemap
rm_class=$rm_dir/bow/bowmode/RangeMapBench.class
if [ ! -f "$rm_class" ] || [ "$here/rangemap/RangeMapBench.java" -nt "$rm_class" ] \
        || [ -n "$(find "$top/bowd/target/classes" -name '*.class' -newer "$rm_class" -print -quit)" ]; then
    rm -rf "$rm_dir"; mkdir -p "$rm_dir"
    javac -d "$rm_dir" -cp "$top/bowd/target/classes" "$here/rangemap/RangeMapBench.java"
fi
rm_line=$(java -Xmx1g -cp "$rm_dir:$top/bowd/target/classes" bow.bowmode.RangeMapBench 1000000 "$([ "$QUICK" = 1 ] && echo 100000 || echo 200000)")
say "  -> $rm_line"
extra "rangemap" "$rm_line" ""

say "bowctl needs-checkpoint: 11 calls (after one that may write bin/bowctl's class-data archive)"
"$top/bin/bowctl" needs-checkpoint --record "$T/no-such.rec" >/dev/null 2>&1 || true
jv=()
for i in 1 2 3 4 5; do jv+=("$(time_ms java -XX:TieredStopAtLevel=1 -XX:+UseG1GC -XX:-UsePerfData -version)"); done  # bin/bowctl's JVM options
jv_median=$(printf '%s\n' "${jv[@]}" | sort -n | sed -n 3p)
ncs=()
for i in $(seq 11); do
    t0=$(date +%s%N)
    "$top/bin/bowctl" needs-checkpoint --record "$T/no-such.rec" >/dev/null 2>&1 || true
    t1=$(date +%s%N)
    ncs+=($(( (t1 - t0) / 1000000 )))
done
nc_median=$(printf '%s\n' "${ncs[@]}" | sort -n | sed -n 6p)
nc_rss=$( { /usr/bin/time -f %M "$top/bin/bowctl" needs-checkpoint --record "$T/no-such.rec" 2>&1 >/dev/null || true; } | tail -1)
extra "needs-checkpoint" "$nc_median" "median ms of 11 calls with no record (${ncs[*]}); peak RSS ${nc_rss} KiB; a bare 'java -version' took $jv_median ms (median of 5) meanwhile"

# ------------------------------------------------------------------ report
LOAD_END=$(cut -d' ' -f1-3 /proc/loadavg)
ELAPSED=$(( $(date +%s) - T0 ))
cp "$RESULTS" "$OUT/latest.tsv"
cp "$EXTRA" "$OUT/latest-extra.tsv"

machine_info() {
    echo "- date: $(date -u '+%Y-%m-%d %H:%M UTC'); $ELAPSED s for the whole run"
    echo "- host: $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//')), $(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) >> 20 )) GiB RAM"
    echo "- kernel: $(uname -srm); image on $(findmnt -no FSTYPE -T "$T" 2>/dev/null || echo '?') ($(findmnt -no SOURCE -T "$T" 2>/dev/null || echo '?'))"
    echo "- java: $(java -version 2>&1 | head -2 | tail -1)"
    echo "- fio: $(fio --version); nbdkit: $(nbdkit --version 2>/dev/null | head -1 || echo -); qemu-nbd: $(qemu-nbd --version 2>/dev/null | head -1 | cut -d' ' -f2 || echo -); libnbd: $(nbdinfo --version 2>/dev/null | head -1)"
    echo "- bowd: $(cd "$top" && git describe --always --dirty 2>/dev/null || echo '?')"
    echo "- load average (1/5/15 min) at the start: $LOAD_START; at the end: $LOAD_END; 1-min load when each server started: $(IFS=,; echo "${LOADS[*]}" | sed 's/,/, /g')"
    echo "- settings: $([ "$QUICK" = 1 ] && echo 'BENCH_QUICK=1 ')BENCH_SIZE=$((SIZE >> 20))M BENCH_RUNTIME=${RUNTIME}s BENCH_WARMUP=${WARMUP}s BENCH_ROLLBACK_SIZE=$((ROLLBACK >> 20))M${BENCH_BOWD_FLAGS:+ BENCH_BOWD_FLAGS=\"$BENCH_BOWD_FLAGS\"}; peers: $PEERS"
}

# The targets of issue 10, judged from this run's figures (awk does the arithmetic).
judge() {
    awk -F'\t' -v quick="$QUICK" -v chart="$T/chart.dat" '
        FNR == NR { k = $1 SUBSEP $2; sum[k] += $3; cnt[k]++; v[k] = sum[k] / cnt[k]; next }
        { x[$1] = $2; xn[$1] = $3 }
        function has(c, w) { return ((c SUBSEP w) in v) }
        function row(name, got, want, how,   met) {
            if (got == "") { printf "| %s | %s | n/a | not measured |\n", name, want; return }
            met = (how == "max") ? (got + 0 <= want + 0) : (got + 0 >= want + 0)
            printf "| %s | %s %s | %s | %s |\n", name, (how == "max") ? "<=" : ">=", want, got, met ? "**met**" : "not met"
            if (how == "min") { nchart++; printf "%d\t\"%s\"\t%s\t%s\n", nchart, name, got, want > chart }
        }
        function ratio(a, b) { return (a > 0 && b > 0) ? sprintf("%.2f", a / b) : "" }
        END {
            print "| target | wanted | measured | verdict |"
            print "|---|---:|---:|---|"
            ref = "nbdkit file"
            split("bowd bow, state 0|bowd bow, state 2|bowd bow, state 1, rewrite|bowd bow, state 1, reads|bowd persistent, reads|bowd shared, reads", pc, "|")
            split("rr16 rw16 rr16x4 rw16x4", pw, " ")
            for (i = 1; i <= 6; i++) for (j = 1; j <= 4; j++) {
                c = pc[i]; w = pw[j]
                if (!has(c, w)) continue
                row(c " / nbdkit file, " lab[w], ratio(v[c SUBSEP w], v[ref SUBSEP w]), "1.0", "min")
            }
            split("bowd bow, state 1|bowd persistent", mc, "|")
            split("bowd bow, state 0|bowd persistent, rewrite", md, "|")
            for (i = 1; i <= 2; i++) {
                base = (i == 1) ? md[1] : md[2]
                what = (i == 1) ? "bow state 0" : "its rewrites"
                row(mc[i] " 1st write / " what ", 4k randwrite qd16", ratio(v[mc[i] ", 1st write" SUBSEP "rw16"], v[base SUBSEP "rw16"]), "0.35", "min")
                row(mc[i] " 1st write / " what ", 4k randwrite qd64", ratio(v[mc[i] ", 1st write" SUBSEP "rw64"], v[base SUBSEP "rw64"]), "0.5", "min")
                row(mc[i] " 1st write / " what ", 1M write qd8", ratio(v[mc[i] ", 1st write" SUBSEP "sw8"], v[base SUBSEP "sw8"]), "0.45", "min")
            }
            split("rollback bow|rollback persistent", rk, "|")
            for (i = 1; i <= 2; i++) {
                split(x[rk[i]], t, " ")
                row(rk[i] " (" xn[rk[i]] "), dd time / rollback time", (rk[i] in x) ? ratio(t[2], t[1]) : "", "0.5", "min")
            }
            if ("rangemap" in x) {
                n = split(x["rangemap"], kv, " ")
                for (k = 1; k <= n; k++) { split(kv[k], p, "="); rm[p[1]] = p[2] }
                row("range map, µs per allocation (1M free runs, CPU time)", rm["alloc_us"], "2", "max")
                row("range map, µs per split (CPU time)", rm["split_us"], "2", "max")
                row("range map, bytes per range", rm["bytes_per_range"], "100", "max")
            } else { row("range map", "", "2 µs", "max") }
            row("bowctl needs-checkpoint, median ms", x["needs-checkpoint"], "100", "max")
            for (k in x) if (k ~ /^rss_kib bowd/) { r = sprintf("%.0f", x[k] / 1024); row("peak RSS MiB, " substr(k, 9), r, "256", "max") }
            split(x["placement"], pl, " ")
            row("backup placement: bytes backed up / checkpointed bytes overwritten (ext4 update workload" \
                (("placement" in x && xn["placement"] != "") ? "; " xn["placement"] : "") ")", pl[1], "1.1", "max")
            row("persistent: open a COW with a million exceptions (bowd start to serving), s", x["cow open"], "2", "max")
            split("cold warm", lc, " ")
            for (i = 1; i <= 2; i++) {
                k = "log verify " lc[i]; split(x[k], lv, " ")
                row("bowctl log verify of " ((k in x) ? lv[3] " MiB of backups" : "4 GiB") " / one read of them, page cache " lc[i], (k in x) ? ratio(lv[1], lv[2]) : "", "1.0", "max")
            }
            s1 = v["bowd shared, 1st write, 1 snapshots" SUBSEP "rw16"]
            row("bowd shared 1st write, 10 snapshots / 1 snapshot, 4k randwrite qd16", ratio(v["bowd shared, 1st write, 10 snapshots" SUBSEP "rw16"], s1), "0.8", "min")
            row("bowd shared 1st write, 64 snapshots / 1 snapshot, 4k randwrite qd16", ratio(v["bowd shared, 1st write, 64 snapshots" SUBSEP "rw16"], s1), "0.8", "min")
        }
        BEGIN {
            lab["rr16"] = "4k randread qd16"; lab["rw16"] = "4k randwrite qd16"
            lab["rr16x4"] = "4k randread qd16 x4 conn"; lab["rw16x4"] = "4k randwrite qd16 x4 conn"
        }' "$RESULTS" "$EXTRA"
}

cells() {   # the IOPS (MiB/s) table, one row per configuration
    local hdr="| configuration |" sep="|---|" wl
    for wl in $WORKLOADS; do hdr="$hdr $(wl_label "$wl") |"; sep="$sep---:|"; done
    echo "$hdr"; echo "$sep"
    awk -F'\t' -v wls="$WORKLOADS" '
        { k = $1 SUBSEP $2; si[k] += $3; sm[k] += $4; c[k]++
          cell[k] = sprintf("%d (%.1f)%s", si[k] / c[k], sm[k] / c[k], c[k] > 1 ? " mean of " c[k] : "")
          if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
        END { m = split(wls, w, " ")
              for (i = 1; i <= n; i++) { p = order[i]; printf "| %s |", p
                  for (j = 1; j <= m; j++) { k = p SUBSEP w[j]; printf " %s |", (k in cell) ? cell[k] : "—" }
                  printf "\n" } }' "$RESULTS"
}

ratios() {   # every bowd configuration against nbdkit file, same workload
    local hdr="| bowd configuration / nbdkit file |" sep="|---|" wl
    for wl in $WORKLOADS; do hdr="$hdr $(wl_label "$wl") |"; sep="$sep---:|"; done
    echo "$hdr"; echo "$sep"
    awk -F'\t' -v wls="$WORKLOADS" '
        { k = $1 SUBSEP $2; sum[k] += $3; cnt[k]++; v[k] = sum[k] / cnt[k]; if (!($1 in seen)) { seen[$1] = 1; order[++n] = $1 } }
        END { m = split(wls, w, " ")
              for (i = 1; i <= n; i++) { p = order[i]; if (p !~ /^bowd/) continue; printf "| %s |", p
                  for (j = 1; j <= m; j++) { k = p SUBSEP w[j]; r = "nbdkit file" SUBSEP w[j]
                      printf " %s |", (k in v && v[r] > 0) ? sprintf("%.2f", v[k] / v[r]) : "—" }
                  printf "\n" } }' "$RESULTS"
}

TARGETS=$(judge)
{
    echo "# Latest benchmark run"
    echo
    echo "Written by \`bench/run.sh\` (see [README.md](README.md)); ratios compare figures of this one run only."
    echo
    machine_info
    echo
    echo "## Targets (issue 10)"
    echo
    echo "$TARGETS"
    echo
    echo "![ratios against their targets](latest.png)"
    echo
    echo "## IOPS (MiB/s)"
    echo
    echo "Writes end with a flush (fio --end_fsync=1), counted in the time. \"1st write\" rows are one pass over"
    echo "blocks that still hold checkpointed data; \"rewrite\" rows write exactly those blocks again. Every row"
    echo "but the 1st write ones runs for the whole runtime (fio --time_based), looping over its region."
    echo
    cells
    echo
    echo "## Ratios to nbdkit file"
    echo
    ratios
    echo
    echo "## Flushes per write (bowd, device flushes counted in bowd / fio write requests)"
    echo
    echo "| configuration | workload | flushes per write |"
    echo "|---|---|---:|"
    awk -F'\t' '$5 != "-" { printf "| %s | %s | %s |\n", $1, $2, $5 }' "$RESULTS"
    echo
    echo "## Other figures"
    echo
    awk -F'\t' '{ printf "- %s: %s%s\n", $1, $2, ($3 != "" ? " (" $3 ")" : "") }' "$EXTRA" \
        | sed -e 's/^- rollback \([a-z]*\): \([0-9]*\) \([0-9]*\)/- rollback \1: \2 ms, dd \3 ms/' \
              -e 's/^- log verify \([a-z]*\): \([0-9]*\) \([0-9]*\) \([0-9]*\)/- log verify of \4 MiB of backups, page cache \1: \2 ms, one read \3 ms/' \
              -e 's/^- rss_kib \([^:]*\): \([0-9]*\)/- \1 peak RSS: \2 KiB/'
    echo
    echo "## Per run"
    echo
    awk -F'\t' '{ printf "- %s, %s: %s\n", $1, $2, $6 }' "$RESULTS"
} >"$OUT/latest.md"

if command -v gnuplot >/dev/null 2>&1 && [ -s "$T/chart.dat" ]; then
    n=$(wc -l <"$T/chart.dat")
    gnuplot <<EOF || say "gnuplot failed: no chart"
set terminal pngcairo size 1400,$((360 + 22 * n)) font ",9" noenhanced
set output "$OUT/latest.png"
set title "bow: ratios of this run against their targets (red: the target; bar at or past it = met)"
set style fill solid 0.7 border -1
set ytics nomirror
set xrange [0:*]
set yrange [0.5:$n + 0.5] reverse
set grid x
set xlabel "ratio (higher is better)"
set key off
set datafile separator "\t"
set ytics font ",8"
plot "$T/chart.dat" using (\$3/2):1:(\$3/2):(0.35):ytic(2) with boxxyerror lc rgb "#4a7ab5", \
     "$T/chart.dat" using 4:1:(0.45) with yerrorbars pt 0 lw 3 lc rgb "red"
EOF
else
    say "no chart (gnuplot missing or nothing to plot)"
fi

# README shows the latest targets table between its bench markers.
if [ "$OUT" = "$here/results" ] && grep -q '<!-- bench:begin -->' "$top/README.md"; then
    { echo "<!-- bench:begin -->"
      echo "Latest run ($(date -u '+%Y-%m-%d %H:%M UTC'), $([ "$QUICK" = 1 ] && echo 'BENCH_QUICK=1, ')load $LOAD_START at the start, $LOAD_END at the end; details in [bench/results/latest.md](bench/results/latest.md)):"
      echo
      echo "$TARGETS"
      echo
      echo "![ratios against their targets](bench/results/latest.png)"
      echo "<!-- bench:end -->"
    } >"$T/readme-block"
    awk -v blk="$T/readme-block" '
        /<!-- bench:begin -->/ { while ((getline l < blk) > 0) print l; skip = 1; next }
        /<!-- bench:end -->/ { skip = 0; next }
        !skip { print }' "$top/README.md" >"$T/README.md" && cat "$T/README.md" >"$top/README.md"
fi
cat "$OUT/latest.md"
say "done in $ELAPSED s"
