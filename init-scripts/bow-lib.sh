# shellcheck shell=sh
# Shared by the bow init scripts (POSIX sh). Source it; every path can be overridden by the environment.
#
#   BOWD        the daemon command            (default: bowd)
#   BOWCTL      the CLI command               (default: bowctl)
#   BOW_MODE    bow | persistent | shared     (default: from the checkpoint record, else bow)
#   BOW_DEVICE  the device under the checkpoint (default: from the record; required before the update)
#   BOW_COW     persistent and shared modes: the COW device (default: from the record; required before the update)
#   BOW_MNT     where the filesystem is mounted through the daemon (required to mount)
#   BOW_RUN     sockets and state of this boot (default: /run/bow)
#   BOW_RECORD  the checkpoint record          (default: /var/lib/bow/checkpoint.rec)
#   BOW_ATTACH  nbd (kernel nbd-client) | fuse (nbdfuse + losetup) (default: nbd if $BOW_NBD_DEV exists, else fuse)
#   BOW_NBD_DEV the kernel nbd device          (default: /dev/nbd0)
#   BOW_RETRIES boots allowed before a rollback (default: 3; -1: no limit)
#   BOW_MOUNT_OPTS  extra mount options (e.g. -o noatime)
#   BOW_BOWD_ARGS   extra daemon flags (e.g. --low-space-threshold 67108864 --low-space-action abort)
#   BOW_DAEMON_START  how the daemon is started: background (default), systemd (systemctl start bowd), android (setprop ctl.start bowd)
#   BOWD_EXEC   the foreground launcher (default: bowd-exec beside the script)
#   BOW_HOOK    optional command run as "$BOW_HOOK STEP" at pre-checkpoint, post-checkpoint, mounted (for tests and integrators)

BOWD=${BOWD:-bowd}
BOWCTL=${BOWCTL:-bowctl}
BOW_RUN=${BOW_RUN:-/run/bow}
BOW_RECORD=${BOW_RECORD:-/var/lib/bow/checkpoint.rec}
BOW_NBD_DEV=${BOW_NBD_DEV:-/dev/nbd0}
BOW_RETRIES=${BOW_RETRIES:-3}
BOW_DAEMON_START=${BOW_DAEMON_START:-background}
BOWD_EXEC=${BOWD_EXEC:-$(dirname "$0")/bowd-exec}
export BOW_RUN BOW_RECORD
if [ -z "${BOW_ATTACH:-}" ]; then
  if [ -b "$BOW_NBD_DEV" ]; then BOW_ATTACH=nbd; else BOW_ATTACH=fuse; fi
fi

bow_log() { echo "$BOW_SCRIPT: $*" >&2; }
bow_die() { bow_log "ERROR: $*"; exit "${2:-1}"; }
bow_hook() { if [ -n "${BOW_HOOK:-}" ]; then $BOW_HOOK "$1" || bow_die "hook $1 failed"; fi; }

# Fills BOW_MODE / BOW_DEVICE / BOW_COW from the record where the environment leaves them empty.
bow_from_record() {
  [ -f "$BOW_RECORD" ] || return 0
  while IFS='=' read -r k v; do
    case $k in
      mode) [ -n "${BOW_MODE:-}" ] || BOW_MODE=$v ;;
      device) [ -n "${BOW_DEVICE:-}" ] || BOW_DEVICE=$v ;;
      cow) [ -n "${BOW_COW:-}" ] || BOW_COW=$v ;;
    esac
  done < "$BOW_RECORD"
}

bow_daemon_alive() { "$BOWCTL" status >/dev/null 2>&1; }

# The snapshot modes keep the old data on a COW device: refuse to go on without one, and an unknown mode.
bow_check_mode() {
  case ${BOW_MODE:-bow} in
    bow) ;;
    persistent|shared) [ -n "${BOW_COW:-}" ] || bow_die "BOW_COW is not set: $BOW_MODE mode needs a COW device" 2 ;;
    *) bow_die "unknown BOW_MODE $BOW_MODE (bow, persistent or shared)" 2 ;;
  esac
}

# shared mode: exit status 0 if the running daemon has a checkpoint (a snapshot named "checkpoint").
bow_shared_has_checkpoint() {
  "$BOWCTL" status --json | grep -qE '"state":"(CHECKPOINT|ROLLING_BACK)"'
}

# Starts the daemon (extra flags in $*) and waits until its control socket answers.
bow_start_daemon() {
  BOW_MODE=${BOW_MODE:-bow}
  [ -n "${BOW_DEVICE:-}" ] || bow_die "BOW_DEVICE is not set and no checkpoint record names a device"
  bow_check_mode
  mkdir -p "$BOW_RUN"
  # The same flags whoever starts it: bowd-exec reads them back (systemd and Android init start it through bowd-exec).
  {
    echo "BOW_MODE='$BOW_MODE'"; echo "BOW_DEVICE='$BOW_DEVICE'"; echo "BOW_COW='${BOW_COW:-}'"
    echo "BOW_BOWD_EXTRA='$* ${BOW_BOWD_ARGS:-}'"
    # bow mode: the ranges free at checkpoint start live beside the record, so a resumed
    # checkpoint (a later boot) gets its free space back from fstrim.
    echo "BOW_FREE_MAP='$BOW_RECORD.free'"
  } > "$BOW_RUN/bowd.env"
  case $BOW_DAEMON_START in
    background)
      "$BOWD_EXEC" > "$BOW_RUN/bowd.log" 2>&1 &
      echo $! > "$BOW_RUN/bowd.pid" ;;
    systemd) systemctl start bowd.service || bow_die "systemctl start bowd failed" ;;
    android) setprop ctl.start bowd ;;
    *) bow_die "unknown BOW_DAEMON_START $BOW_DAEMON_START" ;;
  esac
  i=0
  while ! bow_daemon_alive; do
    if [ -f "$BOW_RUN/bowd.pid" ] && ! kill -0 "$(cat "$BOW_RUN/bowd.pid")" 2>/dev/null; then
      wait "$(cat "$BOW_RUN/bowd.pid")" 2>/dev/null; rc=$?
      cat "$BOW_RUN/bowd.log" >&2 2>/dev/null
      bow_log "bowd exited with status $rc"
      return "$rc"
    fi
    i=$((i + 1)); [ $i -lt 600 ] || bow_die "bowd did not come up in 60 s"
    sleep 0.1
  done
  bow_log "bowd serving $BOW_DEVICE ($BOW_MODE mode)"
}

# Attaches the NBD export as a block device; its name goes to $BOW_RUN/blockdev.
bow_attach() {
  sock=$BOW_RUN/nbd.sock
  case $BOW_ATTACH in
    nbd)
      nbd-client -unix "$sock" "$BOW_NBD_DEV" >&2 || bow_die "nbd-client failed"
      echo "$BOW_NBD_DEV" > "$BOW_RUN/blockdev" ;;
    fuse)
      fusermount3 -u -z "$BOW_RUN/fuse" 2>/dev/null   # a dead mount left by a killed nbdfuse
      mkdir -p "$BOW_RUN/fuse"
      nbdfuse "$BOW_RUN/fuse/dev" --unix "$sock" > "$BOW_RUN/nbdfuse.log" 2>&1 &
      echo $! > "$BOW_RUN/nbdfuse.pid"
      i=0
      while [ ! -e "$BOW_RUN/fuse/dev" ]; do
        i=$((i + 1)); [ $i -lt 300 ] || bow_die "nbdfuse did not come up"
        sleep 0.1
      done
      loop=$(losetup -f --show "$BOW_RUN/fuse/dev") || bow_die "losetup failed"
      echo "$loop" > "$BOW_RUN/blockdev" ;;
    *) bow_die "unknown BOW_ATTACH $BOW_ATTACH (nbd or fuse)" ;;
  esac
}

bow_mount() {
  [ -n "${BOW_MNT:-}" ] || bow_die "BOW_MNT is not set"
  mkdir -p "$BOW_MNT"
  # A freshly attached device can take a moment to settle (udev, a loop device being
  # reused after a detach): a few tries before giving up.
  n=0
  # shellcheck disable=SC2086
  until mount ${BOW_MOUNT_OPTS:-} "$(cat "$BOW_RUN/blockdev")" "$BOW_MNT"; do
    n=$((n + 1))
    [ $n -lt 4 ] || bow_die "mounting $(cat "$BOW_RUN/blockdev") on $BOW_MNT failed"
    bow_log "mount failed; trying again ($n of 3)"
    sleep 1
  done
  bow_hook mounted
}

# Makes sure nothing uses the device: unmount, detach, stop the daemon. Safe to run when nothing is up.
bow_stop_all() {
  if [ -n "${BOW_MNT:-}" ] && mountpoint -q "$BOW_MNT" 2>/dev/null; then
    umount "$BOW_MNT" || umount -l "$BOW_MNT" || bow_die "cannot unmount $BOW_MNT"
  fi
  if [ -f "$BOW_RUN/blockdev" ]; then
    dev=$(cat "$BOW_RUN/blockdev")
    case $dev in
      /dev/loop*) losetup -d "$dev" 2>/dev/null ;;
      *) nbd-client -d "$dev" >/dev/null 2>&1 ;;
    esac
    rm -f "$BOW_RUN/blockdev"
  fi
  if [ -f "$BOW_RUN/nbdfuse.pid" ]; then
    fusermount3 -u "$BOW_RUN/fuse" 2>/dev/null || fusermount3 -u -z "$BOW_RUN/fuse" 2>/dev/null
    kill "$(cat "$BOW_RUN/nbdfuse.pid")" 2>/dev/null
    rm -f "$BOW_RUN/nbdfuse.pid"
  fi
  if bow_daemon_alive; then
    "$BOWCTL" shutdown >/dev/null 2>&1
  fi
  if [ -f "$BOW_RUN/bowd.pid" ]; then
    pid=$(cat "$BOW_RUN/bowd.pid"); i=0
    while kill -0 "$pid" 2>/dev/null; do
      i=$((i + 1)); [ $i -lt 300 ] || { kill -9 "$pid" 2>/dev/null; break; }
      sleep 0.1
    done
    rm -f "$BOW_RUN/bowd.pid"
  fi
  if [ "$BOW_DAEMON_START" = systemd ]; then systemctl stop bowd.service 2>/dev/null; fi
  if [ "$BOW_DAEMON_START" = android ]; then setprop ctl.stop bowd 2>/dev/null; fi
  if bow_daemon_alive; then bow_die "bowd is still running"; fi
}

# Rolls back from the record with nothing using the device.
bow_rollback() {
  bow_stop_all
  "$BOWCTL" rollback --yes
}

# Finishes a commit that a crash or a signal interrupted (bowctl needs-commit said so), with nothing
# using the device: a commit --device is safe to repeat at any point of an interrupted commit.
bow_finish_commit() {
  bow_log "finishing an interrupted commit of $BOW_DEVICE"
  bow_stop_all
  "$BOWCTL" commit --device "$BOW_DEVICE"; rc=$?
  [ $rc -eq 0 ] || bow_die "finishing the interrupted commit of $BOW_DEVICE failed (bowctl commit exit $rc)" "$rc"
  bow_log "interrupted commit finished: $BOW_DEVICE keeps the update, no checkpoint is left"
}

# Exit status 0 if a commit was interrupted and must be finished first; dies if the record is unreadable.
bow_commit_interrupted() {
  "$BOWCTL" needs-commit >&2; rc=$?
  case $rc in
    0) return 0 ;;
    1) return 1 ;;
    *) bow_die "cannot read the checkpoint record $BOW_RECORD (bowctl needs-commit exit $rc)" "$rc" ;;
  esac
}
