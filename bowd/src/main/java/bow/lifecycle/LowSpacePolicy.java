package bow.lifecycle;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.engine.ModeEngine;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.Closeable;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * What the daemon does when a checkpoint runs short of space for backups (free space in bow
 * mode, COW space in persistent mode), before writes start failing with ENOSPC in the middle of
 * an update. Polls {@code engine.status().freeBytes()} (a few counters under one lock) while the
 * engine is in state CHECKPOINT; the first time it is below the threshold it acts once:
 *
 * <ul>
 * <li>{@link Action#COMMIT}: commits the checkpoint — the update keeps running without a safety
 *     net, and the checkpoint record is removed so that no later boot tries to roll back a
 *     checkpoint that no longer exists.</li>
 * <li>{@link Action#ABORT}: the checkpoint is kept intact and the device is fenced: every write,
 *     discard and write-zeroes on every export fails with EIO from then on (reads and flushes still
 *     work), so nothing more can change what the rollback restores and nothing can eat the last of
 *     the backup space. The record is marked ROLLBACK_REQUESTED, so the next boot rolls back;
 *     a commit through the daemon is refused.</li>
 * </ul>
 * Either way the action is logged at ERROR, shown in status details ({@code low_space_*}), and
 * written into the checkpoint record (if there is one for this device).
 */
public final class LowSpacePolicy implements Closeable {
    private static final Logger log = LoggerFactory.getLogger(LowSpacePolicy.class);

    public enum Action { COMMIT, ABORT }

    private final ModeEngine engine;
    private final long threshold;
    private final Action action;
    private final Path recordPath;
    private final String device;
    private volatile String taken;        // what was done, null until it acts
    private volatile boolean fenced;
    private final Object pollerLock = new Object();
    private ScheduledExecutorService poller;     // guarded by pollerLock
    private volatile boolean closed;
    /** How long close() waits for a poll under way to finish. */
    long closeWaitMillis = 10_000;

    /**
     * @param recordPath the checkpoint record to update, or null for none
     * @param device the device path as the record names it (only a record for this device is touched)
     */
    public LowSpacePolicy(ModeEngine engine, long thresholdBytes, Action action, Path recordPath, String device) {
        if (thresholdBytes < 0) throw new IllegalArgumentException("low-space threshold must be >= 0");
        this.engine = engine;
        this.threshold = thresholdBytes;
        this.action = action;
        this.recordPath = recordPath;
        this.device = device;
    }

    public static Action parseAction(String s) {
        return switch (s) {
            case "commit" -> Action.COMMIT;
            case "abort" -> Action.ABORT;
            default -> throw new IllegalArgumentException("--low-space-action must be commit or abort, got " + s);
        };
    }

    /** Polls every {@code periodMillis} on a daemon thread. */
    public void start(long periodMillis) {
        synchronized (pollerLock) {
            if (closed) throw new IllegalStateException("the low-space policy is closed");
            if (poller != null) throw new IllegalStateException("the low-space policy is already polling");
            startPoller(periodMillis);
        }
    }

    private void startPoller(long periodMillis) {
        poller = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "low-space-policy");
            t.setDaemon(true);
            return t;
        });
        poller.scheduleWithFixedDelay(() -> {
            try {
                check();
            } catch (RuntimeException e) {
                log.error("low-space policy check failed: {}", e.toString());
            }
        }, periodMillis, periodMillis, TimeUnit.MILLISECONDS);
    }

    /** One poll; acts at most once in the daemon's life. Returns true if it acted now. */
    public synchronized boolean check() {
        if (taken != null || closed) return false;
        ModeEngine.EngineStatus s = engine.status();
        if (!inCheckpoint(s.state()) || s.freeBytes() >= threshold) return false;
        String what = action.name().toLowerCase() + " at " + Instant.now() + ": " + s.freeBytes()
                + " bytes free < threshold " + threshold;
        if (action == Action.ABORT) {
            fenced = true;     // first: no write may slip in after the decision
            log.error("LOW SPACE: {} bytes free for backups, below {}: checkpoint ABORTED — writes are refused from now on, "
                    + "the next boot rolls back", s.freeBytes(), threshold);
            taken = what;
            updateRecord(r -> r.withLowSpaceAction(what).withState(CheckpointRecord.State.ROLLBACK_REQUESTED, "low space: " + what));
        } else {
            log.error("LOW SPACE: {} bytes free for backups, below {}: COMMITTING the checkpoint — the changes can no longer be rolled back",
                    s.freeBytes(), threshold);
            // The decision first: a crash in the middle of the commit leaves a record that says to finish it.
            // (bow mode: an offline commit can finish it; persistent mode keeps its record as it was)
            updateRecord(r -> "bow".equals(r.mode())
                    ? r.withLowSpaceAction(what).withState(CheckpointRecord.State.COMMIT_REQUESTED, "low space: " + what) : r);
            try {
                engine.commit();
            } catch (IOException | RuntimeException e) {
                log.error("LOW SPACE: the commit failed: {}; will try again", e.toString());
                return false;
            }
            taken = what + " (committed)";
            // The checkpoint is gone: a record left behind would make a later boot try to roll back nothing.
            if (recordPath != null) {
                try {
                    CheckpointRecord.locked(recordPath, () -> {
                        Optional<CheckpointRecord> r = CheckpointRecord.read(recordPath);
                        if (r.isPresent() && device.equals(r.get().device())) CheckpointRecord.remove(recordPath);
                        return null;
                    });
                } catch (IOException e) {
                    log.error("LOW SPACE: committed, but the checkpoint record {} could not be removed: {}", recordPath, e.toString());
                }
            }
        }
        return true;
    }

    /** bow reports "1 CHECKPOINT", persistent and shared "CHECKPOINT". */
    public static boolean inCheckpoint(String state) {
        return state.equals("CHECKPOINT") || state.endsWith(" CHECKPOINT");
    }

    private void updateRecord(java.util.function.UnaryOperator<CheckpointRecord> change) {
        if (recordPath == null) return;
        try {
            // Read-modify-write under the record's lock: a bowctl abort at the same moment is not lost.
            boolean[] found = {false};
            CheckpointRecord.update(recordPath, r -> {
                if (!device.equals(r.device())) return r;
                found[0] = true;
                return change.apply(r);
            });
            if (!found[0]) {
                log.error("LOW SPACE: no checkpoint record for {} at {}; the decision is not recorded there", device, recordPath);
            }
        } catch (IOException e) {
            log.error("LOW SPACE: updating the checkpoint record {} failed: {}", recordPath, e.toString());
        }
    }

    /** What the policy did, or empty. */
    public Optional<String> taken() { return Optional.ofNullable(taken); }

    public boolean fenced() { return fenced; }

    /** The engine as the daemon should serve it: fenced exports, policy details in status, commit refused after abort. */
    public ModeEngine guard() {
        // A mode with snapshots changes its exports while it runs: those are fenced as they come.
        boolean live = engine.snapshots().isPresent();
        Map<String, BlockDevice> view = live ? null : fenced(engine.exports());
        return new ModeEngine() {
            @Override public String mode() { return engine.mode(); }
            @Override public Map<String, BlockDevice> exports() { return live ? fenced(engine.exports()) : view; }
            @Override public java.util.Optional<bow.engine.SnapshotEngine> snapshots() { return engine.snapshots(); }
            @Override public EngineStatus status() {
                EngineStatus s = engine.status();
                Map<String, String> d = new LinkedHashMap<>(s.details());
                d.put("low_space_threshold", Long.toString(threshold));
                d.put("low_space_action", action.name().toLowerCase());
                d.put("low_space_taken", taken == null ? "none" : taken);
                if (fenced) d.put("writes", "refused (checkpoint aborted for low space; reboot to roll back)");
                return new EngineStatus(s.mode(), s.state(), s.device(), s.deviceSize(), s.blockSize(), s.freeBytes(),
                        s.backedUpBytes(), s.logSequence(), s.logEntries(), s.rangeCount(), d);
            }
            @Override public void startCheckpoint() throws IOException { engine.startCheckpoint(); }
            @Override public void commit() throws IOException {
                if (fenced) throw new IllegalStateException("the checkpoint was aborted for low space; it must be rolled back");
                engine.commit();
            }
            @Override public void rollback() throws IOException { engine.rollback(); }
            @Override public List<RangeRecord> ranges() { return engine.ranges(); }
            @Override public List<RangeRecord> ranges(long fromOffset, int limit) { return engine.ranges(fromOffset, limit); }
            @Override public void close() throws IOException {
                LowSpacePolicy.this.close();
                engine.close();
            }
        };
    }

    /** The exports, each behind the fence; one device under two names gets one fence. */
    private Map<String, BlockDevice> fenced(Map<String, BlockDevice> devices) {
        Map<BlockDevice, BlockDevice> wrapped = new java.util.IdentityHashMap<>();
        Map<String, BlockDevice> exports = new LinkedHashMap<>();
        devices.forEach((name, dev) -> exports.put(name, wrapped.computeIfAbsent(dev, Fenced::new)));
        return java.util.Collections.unmodifiableMap(exports);
    }

    /**
     * Stops polling. A poll under way may be inside device I/O (a commit): it is never
     * interrupted (an interrupt inside FileChannel I/O closes the device for every thread);
     * no new poll starts, and close waits a bounded time for the one under way. Not
     * synchronized on the policy, which a poll holds.
     */
    @Override
    public void close() {
        ScheduledExecutorService p;
        synchronized (pollerLock) {
            closed = true;
            p = poller;
            poller = null;
        }
        if (p == null) return;
        p.shutdown();
        boolean interrupted = false;
        long deadline = System.nanoTime() + TimeUnit.MILLISECONDS.toNanos(closeWaitMillis);
        try {
            while (true) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    log.warn("low-space policy: a poll is still running after {} ms; not waiting longer", closeWaitMillis);
                    return;
                }
                try {
                    if (p.awaitTermination(left, TimeUnit.NANOSECONDS)) return;
                } catch (InterruptedException e) {
                    interrupted = true;
                }
            }
        } finally {
            if (interrupted) Thread.currentThread().interrupt();
        }
    }

    /** An export that refuses every change once the policy aborted. */
    private final class Fenced implements BlockDevice {
        private final BlockDevice dev;

        Fenced(BlockDevice dev) { this.dev = dev; }

        private void check() throws DeviceException {
            if (fenced) throw new DeviceException(Errno.EIO, "the checkpoint was aborted for low space: writes are refused until it is rolled back");
        }

        @Override public long size() { return dev.size(); }
        @Override public void read(long offset, ByteBuffer dst) throws IOException { dev.read(offset, dst); }
        @Override public void write(long offset, ByteBuffer src) throws IOException { check(); dev.write(offset, src); }
        @Override public void discard(long offset, long length) throws IOException { check(); dev.discard(offset, length); }
        @Override public void writeZeroes(long offset, long length) throws IOException { check(); dev.writeZeroes(offset, length); }
        @Override public void flush() throws IOException { dev.flush(); }
        @Override public void close() throws IOException { dev.close(); }
    }
}
