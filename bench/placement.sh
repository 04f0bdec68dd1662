#!/usr/bin/env bash
# Backup placement (issue 10): an update-like workload through ext4 on a bow-mode bowd, and
# how many bytes it backed up per byte of checkpointed data the filesystem overwrote.
#
# A fresh image served by bowd (bow mode), attached with nbdfuse + losetup, ext4 on it; "old"
# files fill about 40% of it; `bowctl checkpoint start --fitrim` (the free space reaches bowd as
# discards); then, interleaved, new files into free space (~20% of the fs), half of the old
# files deleted, ~10% of the rest rewritten in place (dd conv=notrunc); sync. From `bowctl status --json`:
#   ratio = backed_up_bytes / details.backup_original_bytes   (target <= 1.1)
# and details.backup_moved_bytes, backups copied again because the filesystem wrote over them.
# Prints one line to stdout: ratio=R backed_up=B original=O moved=M (bytes); progress on stderr.
#
# Needs root (losetup, mount), nbdfuse (Debian package libnbd-bin), e2fsprogs, jq.
# BENCH_QUICK=1: a 256 MiB image instead of 512 MiB. BENCH_TMPDIR: where the image goes (/var/tmp).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

die() { echo "placement: $*" >&2; exit 1; }
say() { echo "placement: $*" >&2; }

[ "$(id -u)" = 0 ] || die "needs root (losetup, mount)"
for c in nbdfuse nbdinfo losetup mkfs.ext4 jq fusermount3; do
    command -v "$c" >/dev/null 2>&1 || die "missing '$c'"
done
if [ ! -d "$top/bowctl/target/lib" ] || ! ls "$top"/bowctl/target/bowctl-*.jar >/dev/null 2>&1; then
    say "building bowd (mvn -q -B -DskipTests package)..."
    (cd "$top" && mvn -q -B -DskipTests package) >&2 || die "build failed"
fi

SIZE_MIB=$([ "${BENCH_QUICK:-0}" = 1 ] && echo 256 || echo 512)
T=$(mktemp -d "${BENCH_TMPDIR:-/var/tmp}/bowplace.XXXXXX")
IMG=$T/disk.img
SOCK=$T/nbd.sock
CTL=$T/control.sock
FUSE=$T/fuse
MNT=$T/mnt
BOWD_PID='' FUSE_PID='' LOOP=''

bowctl_cmd() { "$top/bin/bowctl" "$@" --control "$CTL"; }

# Always runs: unmount, detach the loop device, unmount nbdfuse (it exits then), stop bowd.
cleanup() {
    local rc=$? i
    set +e
    if mountpoint -q "$MNT" 2>/dev/null; then umount "$MNT" 2>/dev/null || umount -l "$MNT"; fi
    [ -n "$LOOP" ] && losetup -d "$LOOP" 2>/dev/null
    if [ -n "$FUSE_PID" ]; then
        fusermount3 -u "$FUSE" 2>/dev/null || fusermount3 -u -z "$FUSE" 2>/dev/null
        for i in $(seq 50); do kill -0 "$FUSE_PID" 2>/dev/null || break; sleep 0.1; done
        kill "$FUSE_PID" 2>/dev/null
        wait "$FUSE_PID" 2>/dev/null
    fi
    if [ -n "$BOWD_PID" ]; then
        kill -0 "$BOWD_PID" 2>/dev/null && { bowctl_cmd shutdown >/dev/null 2>&1 || kill "$BOWD_PID" 2>/dev/null; }
        for i in $(seq 100); do kill -0 "$BOWD_PID" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$BOWD_PID" 2>/dev/null
        wait "$BOWD_PID" 2>/dev/null
    fi
    if [ "${BENCH_KEEP:-}" = 1 ]; then say "kept $T"; else rm -rf "$T"; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# A file of N bytes of incompressible data (urandom is fast enough for a few hundred MiB).
fill() { head -c "$2" /dev/urandom >"$1"; }
# A size from 64 KiB to 4 MiB, in 4 KiB steps.
rand_size() { echo $(( (16 + RANDOM % 1009) * 4096 )); }

truncate -s "${SIZE_MIB}M" "$IMG"
"$top/bin/bowd" --mode bow --device "$IMG" --block-size 4096 --socket "$SOCK" --control "$CTL" >"$T/bowd.log" 2>&1 &
BOWD_PID=$!
for i in $(seq 600); do
    kill -0 "$BOWD_PID" 2>/dev/null || { cat "$T/bowd.log" >&2; die "bowd exited while starting"; }
    if [ -S "$SOCK" ] && nbdinfo --size "nbd+unix:///?socket=$SOCK" >/dev/null 2>&1; then break; fi
    [ "$i" = 600 ] && { cat "$T/bowd.log" >&2; die "bowd did not serve within 60 s"; }
    sleep 0.1
done

# nbdfuse stays in the foreground (man nbdfuse): run it in the background, wait for the file.
mkdir -p "$FUSE" "$MNT"
nbdfuse "$FUSE/dev" --unix "$SOCK" >"$T/nbdfuse.log" 2>&1 &
FUSE_PID=$!
for i in $(seq 300); do
    [ -e "$FUSE/dev" ] && break
    kill -0 "$FUSE_PID" 2>/dev/null || { cat "$T/nbdfuse.log" >&2; die "nbdfuse exited"; }
    [ "$i" = 300 ] && die "nbdfuse did not come up in 30 s"
    sleep 0.1
done
LOOP=$(losetup --find --show "$FUSE/dev")
# No lazy init: ext4lazyinit writing inode tables during the checkpoint would be backed up too.
mkfs.ext4 -q -E lazy_itable_init=0,lazy_journal_init=0 "$LOOP"
mount "$LOOP" "$MNT"

fs_bytes() { df -B1 --output=size "$MNT" | tail -1 | tr -d ' '; }
FS=$(fs_bytes)

say "old files: 40% of $((FS >> 20)) MiB"
mkdir "$MNT/old"
n=0 total=0
while (( total < FS * 40 / 100 )); do
    s=$(rand_size); fill "$MNT/old/f$n" "$s"; total=$((total + s)); n=$((n + 1))
done
OLD=$n
sync
bowctl_cmd checkpoint start --fitrim "$MNT" >/dev/null
s0=$(bowctl_cmd status --json)
say "checkpoint started: $(jq -r '.state' <<<"$s0"), free $(( $(jq -r '.details.type_free_bytes // 0' <<<"$s0") >> 20 )) MiB"

# Interleaved, as a package update unpacks: new files next to the old ones (the same directory,
# so ext4 allocates them near the old data), an old file deleted, now and then one rewritten in
# place; journal and metadata backups taken early are then exposed to the later new files.
say "update: new files (20% of the fs), half of the $OLD old files deleted, 10% of the rest rewritten in place, interleaved"
n=0 total=0
for ((i = 0; i < OLD; i++)); do
    if (( total < FS * 20 / 100 )); then
        s=$(rand_size); fill "$MNT/old/new$n" "$s"; total=$((total + s)); n=$((n + 1))
    fi
    if (( i % 2 == 0 )); then
        rm -f "$MNT/old/f$i"
    elif (( i % 20 == 1 )); then
        f=$MNT/old/f$i
        dd if=/dev/urandom of="$f" bs=4096 count=$(( $(stat -c %s "$f") / 4096 )) conv=notrunc status=none
    fi
    if (( i % 8 == 7 )); then sync; fi   # a commit now and then, so some writes land between checkpointed blocks' backups
done
while (( total < FS * 20 / 100 )); do
    s=$(rand_size); fill "$MNT/old/new$n" "$s"; total=$((total + s)); n=$((n + 1))
done
sync

st=$(bowctl_cmd status --json)
bu=$(jq -r '.backed_up_bytes' <<<"$st")
orig=$(jq -r '.details.backup_original_bytes' <<<"$st")
moved=$(jq -r '.details.backup_moved_bytes' <<<"$st")
ratio=$(awk -v b="$bu" -v o="$orig" 'BEGIN { if (o > 0) printf "%.2f", b / o; else print "n/a" }')

umount "$MNT"
losetup -d "$LOOP"; LOOP=''
fusermount3 -u "$FUSE"
bowctl_cmd shutdown >/dev/null   # the trap waits for both to exit

echo "ratio=$ratio backed_up=$bu original=$orig moved=$moved"
