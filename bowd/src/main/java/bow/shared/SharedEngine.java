package bow.shared;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.engine.ModeEngine;
import bow.engine.SnapshotEngine;
import bow.shared.SharedFormat.Header;
import bow.shared.SharedFormat.Snapshot;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;

/**
 * The "shared" mode: up to 64 snapshots of ORIGIN on one COW (issue 9), each readable (and
 * writable when created so) as its own export, an origin write copying a shared chunk once for
 * all of them. Format and commit order: docs/FORMATS.md ("shared mode"); the I/O and group
 * commit are {@link SharedStore}'s.
 *
 * <p>Locking:
 * <ul>
 * <li>A lifecycle read/write lock: every request holds it shared until it returns (its commit
 *     durable); snapshot create and delete hold it exclusively and commit synchronously, so no
 *     request ever sees a sharing change that is only in memory.</li>
 * <li>Per-chunk claims ({@link ChunkClaims}): an origin write, a snapshot write or read, and a
 *     rollback step claim their origin chunks from their tree change until their last I/O has
 *     returned. A second origin writer of a chunk whose copy-out is in flight finds no sharers
 *     in memory, so it must not write the origin before the first one's commit is durable: the
 *     claim makes it wait. A snapshot write may write in place only when the durable tree gives
 *     it the chunk alone, which the same rule guarantees.</li>
 * <li>The store's tree lock, held briefly for tree changes and lookups.</li>
 * </ul>
 *
 * <p>Failures: a full COW fails the write that needs space with ENOSPC (logged once, in
 * status), nothing else changes. An I/O error or Error during a copy-out or a commit fences the
 * engine: every later write fails with EIO and snapshot reads too (memory may differ from the
 * disk; the disk keeps the last durable commit, which covers every acknowledged write). Reopen
 * to recover.
 */
public final class SharedEngine implements ModeEngine, SnapshotEngine {
    private static final Logger log = LoggerFactory.getLogger(SharedEngine.class);
    public static final String CHECKPOINT_NAME = "checkpoint";
    static final String FULL_MESSAGE = "COW full: origin writes to shared chunks fail with ENOSPC until a snapshot is deleted";
    /** Leaves one reclaim step processes before committing. */
    static final int RECLAIM_LEAVES = 16;

    /** {@code chunkSectors} 0 = the COW's, or {@link SharedFormat#DEFAULT_CHUNK_SECTORS} on a blank COW. */
    public record Options(int chunkSectors) {}

    private final BlockDevice origin;
    private final BlockDevice cow;
    private final Options options;
    private final SharedStore.Tuning tuning;
    private final ReentrantReadWriteLock lifecycle = new ReentrantReadWriteLock();
    private final ChunkClaims claims = new ChunkClaims();
    private final OriginView originView = new OriginView();
    private final SnapshotView[] views = new SnapshotView[SharedFormat.MAX_SNAPSHOTS];

    private volatile SharedStore store;
    private volatile Map<String, BlockDevice> exports;
    private volatile Set<String> readOnly;
    private volatile String fenced;
    private volatile String lastError = "";
    private volatile boolean full;
    private volatile boolean closed;

    // background reclaim of deleted snapshots
    private Thread reclaimer;                 // guarded by this
    private boolean reclaimRunning;           // guarded by this
    private boolean reclaimKick;              // guarded by this: a delete happened since the reclaimer last looked
    private volatile String reclaimProblem;
    /** Tests: no reclaim starts while set (to leave a delete unfinished on disk). */
    volatile boolean pauseReclaim;

    // online rollback
    private volatile int rbTarget = -1;
    private volatile long rbCursor;
    private final Set<Long> rbAhead = Collections.synchronizedSet(new HashSet<>());
    /** Highest chunk in rbAhead since the rollback started, -1 when none: a flush waits until the recorded resume point passes it. */
    private volatile long rbAheadMax = -1;
    /** Signalled when the recorded resume point moves or the rollback ends. */
    private final Object rbProgress = new Object();
    private final AtomicLong rbDone = new AtomicLong();
    private final AtomicLong rbTotal = new AtomicLong();
    private volatile boolean rbShown;
    private Thread rbThread;                  // guarded by this
    private volatile Throwable rbFailure;
    /** Tests: rollback threads (also one resumed at open) wait before each chunk while set. */
    static volatile boolean holdRollbacks;

    private SharedEngine(BlockDevice origin, BlockDevice cow, Options options, SharedStore.Tuning tuning) {
        this.origin = origin;
        this.cow = cow;
        this.options = options == null ? new Options(0) : options;
        this.tuning = tuning;
    }

    /** Opens ORIGIN with COW: a blank COW is formatted at the first snapshot; a COW holding a store is opened as it is. */
    public static SharedEngine open(BlockDevice origin, BlockDevice cow, Options options) throws IOException {
        return open(origin, cow, options, null);
    }

    /** As {@link #open(BlockDevice, BlockDevice, Options)}, with a tree shape for tests (null: full-size blocks). */
    static SharedEngine open(BlockDevice origin, BlockDevice cow, Options options, SharedStore.Tuning tuning) throws IOException {
        if (options != null && options.chunkSectors() != 0) {
            String err = SharedFormat.chunkSizeError(options.chunkSectors());
            if (err != null) throw new IllegalArgumentException("chunk size " + options.chunkSectors() + " sectors: " + err);
        }
        SharedEngine e = new SharedEngine(origin, cow, options, tuning);
        Header h;
        try {
            h = SharedStore.readHeader(cow);
        } catch (SharedFormatException ex) {
            throw new DeviceException(Errno.EINVAL, "COW holds a corrupt shared store: " + ex.getMessage(), ex);
        }
        if (h != null) {
            if (h.valid() != 1) throw new DeviceException(Errno.EINVAL, "COW: the shared store was invalidated (header valid = " + h.valid() + ")");
            if (e.options.chunkSectors() != 0 && e.options.chunkSectors() != h.chunkSectors()) {
                log.warn("chunk size {} in device metadata overrides configured chunk size of {}", h.chunkSectors(), e.options.chunkSectors());
            }
            try {
                e.store = SharedStore.open(cow, h, origin.size(), e.tuningFor(h.chunkBytes()));
            } catch (SharedFormatException ex) {
                throw new DeviceException(Errno.EINVAL, "COW holds a corrupt shared store: " + ex.getMessage(), ex);
            }
            for (int i = 0; i < SharedFormat.MAX_SNAPSHOTS; i++) if (h.snapshot(i) != null) e.views[i] = e.new SnapshotView(i);
            if (h.rollingBack()) {
                if (h.snapshot(h.rollbackTarget()) == null) {
                    throw new DeviceException(Errno.EINVAL, "COW: the header records a rollback of the origin to snapshot " + h.rollbackTarget()
                            + ", which is not a live snapshot (corrupt store; see bowctl shared check)");
                }
                // a rollback cut by a crash resumes at once: the origin reads through it from the first request on
                log.info("resuming the rollback of the origin to snapshot {} from origin chunk {}{}", h.rollbackTarget(), h.rollbackResume(),
                        h.rollbackDelete() ? " (the snapshot is deleted when it is done)" : "");
                e.beginRollback(h.rollbackTarget(), h.rollbackResume());
            }
            if (h.deletingMask() != 0) e.startReclaim();   // an unfinished delete resumes in the background
        }
        e.publishExports();
        return e;
    }

    /**
     * What {@link #check(BlockDevice)} found on a COW: {@code header} null for a blank COW;
     * {@code problems} empty when clean (at most about 50 are listed).
     */
    public record CheckReport(SharedFormat.Header header, List<String> problems, int leaves, int nodes, long exceptions) {
        public boolean clean() { return problems.isEmpty(); }
    }

    /**
     * A read-only fsck of the shared store on {@code cow} (for {@code bowctl shared check}): the
     * header, the bitmap copy it names (its free count), every tree block's magic, checksum and
     * self number, key order and balance, share masks naming only live or being-deleted
     * snapshots, no chunk used twice, and the bitmap equal to the reachable chunks plus the
     * metadata. Writes nothing. A header or bitmap too broken to open is reported as a problem.
     */
    public static CheckReport check(BlockDevice cow) throws IOException {
        SharedFormat.Header h;
        try {
            h = SharedStore.readHeader(cow);
        } catch (SharedFormatException e) {
            return new CheckReport(null, List.of(e.getMessage()), 0, 0, 0);
        }
        if (h == null) return new CheckReport(null, List.of(), 0, 0, 0);
        SharedStore s;
        try {
            s = SharedStore.open(cow, h, h.originBytes(), SharedStore.Tuning.full(h.chunkBytes()));
        } catch (SharedFormatException | DeviceException e) {
            return new CheckReport(h, List.of(e.getMessage()), 0, 0, 0);
        }
        SharedTree.CheckResult r = s.check();
        return new CheckReport(h, r.problems(), r.leaves(), r.nodes(), r.exceptions());
    }

    private SharedStore.Tuning tuningFor(int chunkBytes) {
        return tuning != null ? tuning : SharedStore.Tuning.full(chunkBytes);
    }

    /** The store, null while the COW is blank. */
    SharedStore store() { return store; }

    @Override public String mode() { return "shared"; }

    @Override public Map<String, BlockDevice> exports() { return exports; }

    @Override public Set<String> readOnlyExports() { return readOnly; }

    /** Rebuilds the export map and read-only set (after create, delete, rollback start and end). */
    private synchronized void publishExports() {
        Map<String, BlockDevice> m = new LinkedHashMap<>();
        Set<String> ro = new TreeSet<>();
        m.put("", originView);
        SharedStore s = store;
        for (int i = 0; i < SharedFormat.MAX_SNAPSHOTS; i++) {
            SnapshotView v = views[i];
            if (v == null || s == null) continue;
            Snapshot snap = v.info;
            boolean writable = snap.writable() && rbTarget != i;
            m.put("snapshot-" + i, v);
            if (!writable) ro.add("snapshot-" + i);
            if (!snap.name().isEmpty()) {
                m.put("snapshot-" + snap.name(), v);
                if (!writable) ro.add("snapshot-" + snap.name());
            }
        }
        exports = Collections.unmodifiableMap(m);
        readOnly = Collections.unmodifiableSet(ro);
    }

    // ---------------------------------------------------------------- status

    @Override
    public EngineStatus status() {
        SharedStore s = store;
        Map<String, String> d = new LinkedHashMap<>();
        long free = 0, backed = 0, total = 0;
        int snaps = 0;
        boolean checkpoint = false;
        if (s != null) {
            long deleting;
            s.treeLock.lock();
            try {
                free = s.alloc().freeCount();
                snaps = Long.bitCount(s.tree().snapmask());
                deleting = s.tree().deleting();
                for (int i = 0; i < SharedFormat.MAX_SNAPSHOTS; i++) {
                    Snapshot sn = s.snapshot(i);
                    if (sn != null && CHECKPOINT_NAME.equals(sn.name())) checkpoint = true;
                }
            } finally {
                s.treeLock.unlock();
            }
            total = s.nrChunks();
            backed = (total - s.firstDataChunk() - free) * s.chunkBytes();
            d.put("chunk_size", Integer.toString(s.chunkSectors()));
            d.put("snapshots", Integer.toString(snaps));
            d.put("free_chunks", Long.toString(free));
            d.put("total_chunks", Long.toString(total));
            d.put("commits", Long.toString(s.commits()));
            if (deleting != 0) d.put("reclaiming", Long.bitCount(deleting) + " deleted snapshot(s)");
        } else {
            int cs = options.chunkSectors() != 0 ? options.chunkSectors() : SharedFormat.DEFAULT_CHUNK_SECTORS;
            d.put("chunk_size", Integer.toString(cs));
            d.put("snapshots", "0");
        }
        // a rollback stopped by a failure stays recorded (the origin reads through it), but is not running: pollers stop
        // waiting, and the error detail says to run it again
        boolean rolling = rbTarget >= 0 && rollbackThreadAlive();
        d.put("status", statusLine(s, snaps, free, total, rolling));
        if (rolling || rbShown) d.put("rollback", rbDone.get() + "/" + rbTotal.get() + " chunks");
        String err = lastError;
        if (fenced != null) err = "writes refused: " + fenced;
        else if (full) err = FULL_MESSAGE;
        if (err.isEmpty() && reclaimProblem != null) err = "reclaim of deleted snapshots stopped: " + reclaimProblem;
        if (!err.isEmpty()) d.put("error", err);
        String state = rolling ? "ROLLING_BACK" : checkpoint ? "CHECKPOINT" : "NO_CHECKPOINT";
        long freeBytes = s == null ? 0 : free * s.chunkBytes();
        long seq = s == null ? 0 : s.durableSequence();
        return new EngineStatus(mode(), state, "origin", origin.size(), SharedFormat.SECTOR, freeBytes, backed, seq, 0, 0, d);
    }

    private String statusLine(SharedStore s, int snaps, long free, long total, boolean rolling) {
        if (s == null) return "blank COW (formatted at the first snapshot)";
        String line = snaps + " snapshot(s), " + free + "/" + total + " chunks free";
        if (fenced != null) return "fenced: " + line;
        if (full) return "COW full: " + line;
        if (rolling) return "rolling back to snapshot " + rbTarget + ": " + line;
        return line;
    }

    @Override
    public StoreUsage usage() {
        SharedStore s = store;
        if (s == null) {
            int cs = options.chunkSectors() != 0 ? options.chunkSectors() : SharedFormat.DEFAULT_CHUNK_SECTORS;
            int cb = cs * SharedFormat.SECTOR;
            return new StoreUsage(cb, 0, 0);
        }
        return new StoreUsage(s.chunkBytes(), s.freeChunks(), s.nrChunks());
    }

    // ---------------------------------------------------------------- checkpoint lifecycle

    @Override
    public void startCheckpoint() throws IOException {
        if (findByName(CHECKPOINT_NAME) >= 0) throw new IllegalStateException("a checkpoint exists already (snapshot named \"" + CHECKPOINT_NAME + "\"): commit or roll it back first");
        createSnapshot(CHECKPOINT_NAME, false);
    }

    @Override
    public void commit() throws IOException {
        if (findByName(CHECKPOINT_NAME) < 0) throw new IllegalStateException("no checkpoint to commit (no snapshot named \"" + CHECKPOINT_NAME + "\")");
        deleteSnapshot(CHECKPOINT_NAME);
    }

    /** Rolls the origin back to the checkpoint snapshot (online), then deletes it. Returns when done. */
    @Override
    public void rollback() throws IOException {
        if (findByName(CHECKPOINT_NAME) < 0) throw new IllegalStateException("no checkpoint to roll back (no snapshot named \"" + CHECKPOINT_NAME + "\")");
        // the delete is recorded with the rollback: a crash in between finishes both at the next open
        startRollback(resolve(CHECKPOINT_NAME), true);
        awaitRollback();
    }

    private int findByName(String name) {
        SharedStore s = store;
        if (s == null) return -1;
        s.treeLock.lock();
        try {
            for (int i = 0; i < SharedFormat.MAX_SNAPSHOTS; i++) {
                Snapshot sn = s.snapshot(i);
                if (sn != null && sn.name().equals(name)) return i;
            }
            return -1;
        } finally {
            s.treeLock.unlock();
        }
    }

    /** The live snapshot an "ID|NAME" argument names, or IllegalArgumentException. */
    private int resolve(String idOrName) {
        SharedStore s = store;
        if (idOrName == null || idOrName.isEmpty()) throw new IllegalArgumentException("no snapshot named");
        if (s != null) {
            s.treeLock.lock();
            try {
                if (idOrName.chars().allMatch(Character::isDigit) && idOrName.length() <= 2) {
                    int id = Integer.parseInt(idOrName);
                    if (id < SharedFormat.MAX_SNAPSHOTS && s.snapshot(id) != null) return id;
                } else {
                    for (int i = 0; i < SharedFormat.MAX_SNAPSHOTS; i++) {
                        Snapshot sn = s.snapshot(i);
                        if (sn != null && sn.name().equals(idOrName)) return i;
                    }
                }
            } finally {
                s.treeLock.unlock();
            }
        }
        throw new IllegalArgumentException("no snapshot " + idOrName);
    }

    // ---------------------------------------------------------------- snapshot create, list, delete

    @Override
    public int createSnapshot(String name, boolean writable) throws IOException {
        if (name == null) name = "";
        if (!name.isEmpty()) {
            String err = SharedFormat.nameError(name);
            if (err != null) throw new IllegalArgumentException("snapshot name \"" + name + "\": " + err);
        }
        lifecycle.writeLock().lock();
        try {
            checkOpen();
            checkNotFenced();
            // the origin device is half rolled back: a snapshot of it now would be neither state
            if (rbTarget >= 0) throw new IllegalStateException("a rollback to snapshot " + rbTarget + " is running: create snapshots once it is done");
            if (!name.isEmpty() && findByName(name) >= 0) throw new IllegalArgumentException("a snapshot named \"" + name + "\" exists already");
            SharedStore s = store;
            if (s == null) {
                int cs = options.chunkSectors() != 0 ? options.chunkSectors() : SharedFormat.DEFAULT_CHUNK_SECTORS;
                s = SharedStore.format(cow, cs, origin.size(), tuningFor(cs * SharedFormat.SECTOR));
                log.info("formatted a shared store on the COW: {} chunks of {} sectors", s.nrChunks(), cs);
                store = s;
            }
            // what the snapshot shows must be durable on the origin no later than the snapshot itself
            origin.flush();
            int id = -1;
            long seq;
            s.treeLock.lock();
            try {
                SharedTree t = s.tree();
                long used = t.snapmask() | t.deleting();
                if (Long.bitCount(used) >= t.maxSnapshots()) {
                    throw new IllegalStateException("snapshot limit reached: at most " + t.maxSnapshots() + " snapshots share one COW"
                            + (t.deleting() != 0 ? " (" + Long.bitCount(t.deleting()) + " deleted one(s) still being reclaimed)" : ""));
                }
                for (int i = 0; i < SharedFormat.MAX_SNAPSHOTS; i++) if ((used >>> i & 1) == 0) { id = i; break; }
                t.createSnapshot(id);
                s.setSnapshot(id, new Snapshot(System.currentTimeMillis(), writable, name));
                seq = s.openSeq();
            } finally {
                s.treeLock.unlock();
            }
            commitOrFence(s, seq, "snapshot create");
            views[id] = new SnapshotView(id);
            publishExports();
            log.info("snapshot {} created{}{}", id, name.isEmpty() ? "" : " as \"" + name + "\"", writable ? ", writable" : "");
            return id;
        } finally {
            lifecycle.writeLock().unlock();
        }
    }

    @Override
    public List<SnapshotInfo> listSnapshots() throws IOException {
        SharedStore s = store;
        if (s == null) return List.of();
        long mask;
        Snapshot[] info = new Snapshot[SharedFormat.MAX_SNAPSHOTS];
        s.treeLock.lock();
        try {
            mask = s.tree().snapmask();
            for (int i = 0; i < info.length; i++) info[i] = s.snapshot(i);
        } finally {
            s.treeLock.unlock();
        }
        long[] alone = new long[64], shared = new long[64];
        final long live = mask;
        s.forEachEntry(e -> {
            for (Leaf.Exc x : e.excs) {
                long m = x.share() & live;
                boolean one = Long.bitCount(m) == 1;
                for (long b = m; b != 0; b &= b - 1) {
                    int id = Long.numberOfTrailingZeros(b);
                    if (one) alone[id]++; else shared[id]++;
                }
            }
        });
        List<SnapshotInfo> out = new ArrayList<>();
        for (int i = 0; i < 64; i++) {
            if ((mask >>> i & 1) == 0 || info[i] == null) continue;
            out.add(new SnapshotInfo(i, info[i].name(), info[i].createdMillis(), info[i].writable(), alone[i], shared[i]));
        }
        return out;
    }

    @Override
    public void deleteSnapshot(String idOrName) throws IOException {
        lifecycle.writeLock().lock();
        try {
            checkOpen();
            int id = resolve(idOrName);
            if (rbTarget == id) throw new IllegalStateException("snapshot " + id + " is the target of the rollback running: wait for it to finish");
            checkNotFenced();
            SharedStore s = store;
            long seq;
            s.treeLock.lock();
            try {
                s.tree().deleteSnapshot(id);
                s.setSnapshot(id, null);
                seq = s.openSeq();
            } finally {
                s.treeLock.unlock();
            }
            commitOrFence(s, seq, "snapshot delete");
            SnapshotView v = views[id];
            views[id] = null;
            if (v != null) v.deleted = true;
            publishExports();
            log.info("snapshot {} deleted; its chunks are reclaimed in the background", id);
            startReclaim();
        } finally {
            lifecycle.writeLock().unlock();
        }
    }

    private void commitOrFence(SharedStore s, long seq, String what) throws IOException {
        try {
            s.awaitDurable(seq);
        } catch (IOException | RuntimeException | Error e) {
            fence(what + " not committed: " + SharedStore.describe(e), e);
            throw e;
        }
    }

    private synchronized void startReclaim() {
        if (pauseReclaim) return;
        reclaimKick = true;
        if (reclaimRunning) return;    // the running reclaimer sees the kick before it stops
        reclaimRunning = true;
        reclaimProblem = null;
        reclaimer = new Thread(this::reclaimMain, "shared-reclaim");
        reclaimer.setDaemon(true);
        reclaimer.start();
    }

    private void reclaimMain() {
        while (true) {
            synchronized (this) { reclaimKick = false; }
            reclaimLoop();
            synchronized (this) {
                if (!reclaimKick || closed || fenced != null) {
                    reclaimRunning = false;
                    notifyAll();
                    return;
                }
            }
        }
    }

    /** Reclaims deleted snapshots' chunks a few leaves per committed step, sharing commits with the writers. */
    private void reclaimLoop() {
        try {
            while (!closed && fenced == null) {
                SharedStore s = store;
                lifecycle.readLock().lock();
                try {
                    if (closed) return;
                    boolean finished;
                    long seq;
                    s.treeLock.lock();
                    try {
                        if (s.tree().deleting() == 0) return;
                        try {
                            finished = s.tree().deleteStep(RECLAIM_LEAVES);
                        } catch (NoSpaceException e) {
                            reclaimProblem = e.getMessage();
                            log.error("reclaiming deleted snapshots stopped: {}", e.getMessage());
                            return;
                        } catch (RuntimeException | Error e) {
                            s.fail(e);
                            fence("reclaim of deleted snapshots failed: " + SharedStore.describe(e), e);
                            return;
                        }
                        s.changed();
                        seq = s.openSeq();
                    } finally {
                        s.treeLock.unlock();
                    }
                    try {
                        s.awaitDurable(seq);
                    } catch (IOException e) {
                        fence("reclaim commit failed: " + e.getMessage(), e);
                        return;
                    }
                    if (full && s.freeChunks() > 2L * s.tree().reserve()) full = false;
                    if (finished) {
                        log.info("deleted snapshots reclaimed: {} chunks free", s.freeChunks());
                        return;
                    }
                } finally {
                    lifecycle.readLock().unlock();
                }
            }
        } catch (Throwable t) {
            log.error("reclaim of deleted snapshots failed", t);
        }
    }

    /** Waits (bounded) until the background reclaim has stopped (done, or stopped by a problem); for tests and close. */
    synchronized boolean awaitReclaim(long millis) throws InterruptedException {
        long end = System.currentTimeMillis() + millis;
        while (reclaimRunning) {
            long left = end - System.currentTimeMillis();
            if (left <= 0) return false;
            wait(left);
        }
        return true;
    }

    // ---------------------------------------------------------------- rollback

    /**
     * Starts rolling the origin back to a snapshot, online. The rollback is recorded in the
     * header before the first origin chunk changes, so that a crash leaves it to be resumed at
     * the next open (docs/FORMATS.md "rollback record"). Naming the target of the rollback in
     * progress (resumed after a crash, or stopped by a failure) is harmless: it goes on.
     */
    @Override
    public void rollbackTo(String idOrName) throws IOException {
        startRollback(resolve(idOrName), false);
    }

    /**
     * As {@link #rollbackTo(String)}; with {@code deleteAfter} the snapshot is deleted in the
     * commit that ends the rollback, recorded with it, so a crash in between finishes both.
     */
    public void rollbackTo(String idOrName, boolean deleteAfter) throws IOException {
        startRollback(resolve(idOrName), deleteAfter);
    }

    private void startRollback(int id, boolean deleteAfter) throws IOException {
        lifecycle.writeLock().lock();
        try {
            checkOpen();
            checkNotFenced();
            SharedStore s = store;
            boolean alive;
            Thread prev;
            synchronized (this) { prev = rbThread; }
            if (rbTarget < 0 && prev != null) {
                // its last step (under the lifecycle lock, which this thread holds) is done: only its exit is left
                try { prev.join(10_000); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
            }
            synchronized (this) {
                alive = rbThread != null && rbThread.isAlive();
                if (rbTarget >= 0 && rbTarget != id) throw new IllegalStateException("a rollback is already running (to snapshot " + rbTarget + ")");
                if (rbTarget < 0 && alive) throw new IllegalStateException("the previous rollback is still finishing");
            }
            if (rbTarget == id) {
                long seq = -1;
                s.treeLock.lock();
                try {
                    if (deleteAfter && !s.rollbackDelete()) {
                        s.setRollback(id, true, s.rollbackResume());
                        seq = s.openSeq();
                    }
                } finally {
                    s.treeLock.unlock();
                }
                if (seq >= 0) commitOrFence(s, seq, "rollback record");
                synchronized (this) {
                    if (!alive) {
                        rbFailure = null;
                        lastError = "";
                        startRollbackThread(id);
                    }
                }
                log.info("rollback of the origin to snapshot {} is in progress already", id);
                return;
            }
            long seq;
            s.treeLock.lock();
            try {
                s.setRollback(id, deleteAfter, 0);
                seq = s.openSeq();
            } finally {
                s.treeLock.unlock();
            }
            commitOrFence(s, seq, "rollback record");   // durable before the first origin chunk is rolled back
            beginRollback(id, 0);
            log.info("rollback of the origin to snapshot {} started: {} chunks", id, rbTotal.get());
        } finally {
            lifecycle.writeLock().unlock();
        }
    }

    /** The rollback recorded in the store: origin reads go through it from now on; its thread starts. */
    private void beginRollback(int id, long resume) throws IOException {
        long[] n = {0};
        long bit = 1L << id;
        store.forEachEntry(e -> { if (e.origin >= resume) for (Leaf.Exc x : e.excs) if ((x.share() & bit) != 0) n[0]++; });
        synchronized (this) {
            rbFailure = null;
            rbCursor = resume;
            rbAhead.clear();
            rbAheadMax = -1;
            rbDone.set(0);
            rbTotal.set(n[0]);
            rbShown = true;
            rbTarget = id;
            lastError = "";
            publishExports();
            startRollbackThread(id);
        }
    }

    private synchronized boolean rollbackThreadAlive() { return rbThread != null && rbThread.isAlive(); }

    private synchronized void startRollbackThread(int id) {
        rbThread = new Thread(() -> rollbackLoop(id), "shared-rollback");
        rbThread.setDaemon(true);
        rbThread.start();
    }

    /** Waits for a running online rollback (or nothing) and rethrows its failure. For the offline rollback. */
    public void awaitRollback() throws IOException {
        Thread t;
        synchronized (this) { t = rbThread; }
        if (t != null) {
            boolean interrupted = false;
            while (t.isAlive()) {
                try { t.join(); } catch (InterruptedException e) { interrupted = true; }
            }
            if (interrupted) Thread.currentThread().interrupt();
        }
        Throwable f = rbFailure;
        if (f instanceof IOException io) throw io;
        if (f != null) throw new DeviceException(Errno.EIO, "rollback failed: " + SharedStore.describe(f), f);
    }

    private void rollbackLoop(int id) {
        boolean finished = false;
        try {
            SharedStore s = store;
            long bit = 1L << id;
            long key = rbCursor;
            while (key >= 0) {
                if (closed) throw new IOException("engine closed during the rollback; it resumes when the store is opened again");
                List<Long> todo = new ArrayList<>();
                final long k = key;
                key = s.read(() -> s.tree().scanLeaf(k, e -> {
                    for (Leaf.Exc x : e.excs) if ((x.share() & bit) != 0) todo.add(e.origin);
                }));
                for (long c : todo) {
                    while (holdRollbacks && !closed) Thread.sleep(2);
                    lifecycle.readLock().lock();
                    try {
                        checkNotFenced();
                        try (ChunkClaims.Claim cl = claims.acquire(c, c)) {
                            if (!rbAhead.remove(c)) rollbackChunk(s, c, id);
                            rbCursor = c + 1;
                        }
                    } finally {
                        lifecycle.readLock().unlock();
                    }
                    // chunks the target gained during the rollback (copy-outs of writes made meanwhile) count too
                    if (rbDone.incrementAndGet() > rbTotal.get()) rbTotal.set(rbDone.get());
                }
                if (key >= 0) {
                    // the chunks up to the next leaf hold nothing of the target: rolled back as they are
                    // (a write there meanwhile is in rbAhead or copied out: either way the origin is right)
                    if (key > rbCursor) rbCursor = key;
                    recordProgress(s);
                }
            }
            lifecycle.writeLock().lock();
            try {
                checkNotFenced();
                origin.flush();              // the rolled-back origin is durable before the record goes
                boolean delete;
                long seq;
                s.treeLock.lock();
                try {
                    delete = s.rollbackDelete();
                    s.setRollback(-1, false, 0);
                    if (delete) {
                        s.tree().deleteSnapshot(id);
                        s.setSnapshot(id, null);
                    }
                    seq = s.openSeq();
                } finally {
                    s.treeLock.unlock();
                }
                commitOrFence(s, seq, "rollback end");
                rbTarget = -1;
                rbAhead.clear();
                if (delete) {
                    SnapshotView v = views[id];
                    views[id] = null;
                    if (v != null) v.deleted = true;
                    startReclaim();
                }
                finished = true;
                log.info("rollback to snapshot {} finished: {} chunks{}", id, rbDone.get(), delete ? "; the snapshot is deleted" : "");
            } finally {
                lifecycle.writeLock().unlock();
            }
        } catch (Throwable t) {
            rbFailure = t;
            lastError = "rollback failed: " + SharedStore.describe(t) + (closed ? "" : "; run the rollback again to go on");
            if (!closed) log.error("rollback to snapshot {} failed (the origin keeps reading as the snapshot; run it again)", id, t);
        } finally {
            // a rollback that did not finish stays in progress: the origin keeps reading through it
            if (finished) publishExports();
            synchronized (rbProgress) { rbProgress.notifyAll(); }
        }
    }

    /**
     * Records in the open transaction that the origin chunks below the cursor are rolled back,
     * once the origin has them on stable storage; the next commit makes it the resume point.
     */
    private void recordProgress(SharedStore s) throws IOException {
        long cur = rbCursor;
        origin.flush();
        s.treeLock.lock();
        try {
            s.advanceRollback(cur);
        } finally {
            s.treeLock.unlock();
        }
        synchronized (rbProgress) { rbProgress.notifyAll(); }
    }

    /**
     * Before a flush acknowledges writes made during a rollback: an origin write ahead of the
     * cursor rolled its chunks back early, which a rollback resumed from an older point would
     * roll back again over the write. Wait until the recorded resume point has passed every such
     * chunk (or the rollback is over). Called without the lifecycle lock (the rollback needs it).
     */
    private void awaitRollbackPast() throws IOException {
        long ahead = rbAheadMax;
        if (rbTarget < 0 || ahead < 0) return;
        SharedStore s = store;
        synchronized (rbProgress) {
            while (true) {
                if (rbTarget < 0 || closed || fenced != null) return;
                long resume;
                s.treeLock.lock();
                try { resume = s.rollbackTarget() >= 0 ? s.rollbackResume() : Long.MAX_VALUE; } finally { s.treeLock.unlock(); }
                if (resume > ahead) return;
                Thread t;
                synchronized (this) { t = rbThread; }
                if (t == null || !t.isAlive()) {
                    if (rbTarget < 0) return;
                    throw new DeviceException(Errno.EIO, "flush refused: writes made ahead of the stopped rollback to snapshot " + rbTarget
                            + " are not safe from a crash until it finishes (run the rollback again): " + lastError);
                }
                try { rbProgress.wait(200); } catch (InterruptedException e) { Thread.currentThread().interrupt(); throw new DeviceException(Errno.EIO, "flush interrupted while waiting for the rollback"); }
            }
        }
    }

    /** Claim on chunk {@code c} held: makes origin chunk {@code c} the snapshot's, copying it out first for the other snapshots that read the origin there. */
    private void rollbackChunk(SharedStore s, long c, int id) throws IOException {
        long x = s.read(() -> s.tree().lookup(c, id));
        if (x < 0) return;
        int cb = s.chunkBytes();
        int len = (int) Math.min(cb, origin.size() - c * cb);
        ByteBuffer data = ByteBuffer.allocate(len);
        cow.read(x * cb, data);
        data.flip();
        claimedOriginWrite(s, c * cb, data, c, c, false);
    }

    /** Whether origin chunk {@code c} still reads from the rollback target's exception (claim held). */
    private long rollbackSource(SharedStore s, long c) throws IOException {
        int t = rbTarget;
        if (t < 0 || c < rbCursor || rbAhead.contains(c)) return -1;
        return s.read(() -> s.tree().isLive(t) ? s.tree().lookup(c, t) : -1L);
    }

    // ---------------------------------------------------------------- close

    @Override
    public void close() throws IOException {
        closed = true;
        Thread rc, rb;
        synchronized (this) { rc = reclaimer; rb = rbThread; }
        // background work stops at its next step; wait for it with a bound, never interrupt (it may be in device I/O)
        for (Thread t : new Thread[] {rc, rb}) {
            if (t == null) continue;
            try { t.join(30_000); } catch (InterruptedException e) { Thread.currentThread().interrupt(); }
        }
        lifecycle.writeLock().lock();
        try {
            SharedStore s = store;
            if (s != null && s.failure() == null && fenced == null) s.commitPending();
            if (s != null) cow.flush();
            origin.flush();
        } finally {
            lifecycle.writeLock().unlock();
        }
        // The devices belong to the caller.
    }

    // ---------------------------------------------------------------- I/O paths

    private void checkOpen() throws DeviceException {
        if (closed) throw new DeviceException(Errno.ESHUTDOWN, "shared engine is closed");
    }

    private void checkNotFenced() throws DeviceException {
        String f = fenced;
        if (f != null) throw new DeviceException(Errno.EIO, "writes refused: " + f + "; restart to reopen the store from disk");
    }

    private void fence(String why, Throwable cause) {
        synchronized (this) {
            if (fenced == null) fenced = why;
        }
        SharedStore s = store;
        if (s != null) s.fail(cause);
        log.error("shared store fenced, refusing further writes (the COW keeps the last durable commit): {}", why, cause);
    }

    private DeviceException noSpace(NoSpaceException e) {
        if (!full) {
            full = true;
            log.error("{} ({})", FULL_MESSAGE, e.getMessage());
        }
        return new DeviceException(Errno.ENOSPC, FULL_MESSAGE + ": " + e.getMessage(), e);
    }

    private long[] chunkRange(SharedStore s, long offset, long length) {
        int cb = s.chunkBytes();
        return new long[] {offset / cb, (offset + length - 1) / cb};
    }

    private void originWrite(long offset, ByteBuffer src) throws IOException {
        SharedStore s = store;
        if (s == null) { origin.write(offset, src); return; }
        checkNotFenced();
        long[] r = chunkRange(s, offset, src.remaining());
        try (ChunkClaims.Claim cl = claims.acquire(r[0], r[1])) {
            claimedOriginWrite(s, offset, src, r[0], r[1], true);
        }
    }

    /**
     * Claim on [first, last] held: copies the chunks snapshots still share out, commits, then
     * writes the origin. With {@code user} set during a rollback, chunks not rolled back yet are
     * rolled back first (so the write lands on the snapshot's content).
     */
    private void claimedOriginWrite(SharedStore s, long offset, ByteBuffer src, long first, long last, boolean user) throws IOException {
        int target = rbTarget;
        if (user && target >= 0) {
            for (long c = first; c <= last; c++) {
                if (c < rbCursor || rbAhead.contains(c)) continue;
                rollbackChunk(s, c, target);
                rbAhead.add(c);
                synchronized (rbProgress) { if (c > rbAheadMax) rbAheadMax = c; }
            }
        }
        int cb = s.chunkBytes();
        int n = (int) (last - first + 1);
        // bring the paths into the cache with the tree lock free (a miss under it stalls every request)
        s.read(() -> { for (long c = first; c <= last; c++) s.tree().originSharers(c); return null; });
        long[] olds = new long[n], news = new long[n];
        int m = 0;
        NoSpaceException short_ = null;
        long seq;
        s.treeLock.lock();
        try {
            SharedTree t = s.tree();
            for (long c = first; c <= last; c++) {
                long d;
                try {
                    d = t.prepareOriginWrite(c);
                } catch (NoSpaceException e) {
                    short_ = e;
                    break;
                } catch (RuntimeException | Error e) {
                    fence("origin copy-out failed in the tree: " + SharedStore.describe(e), e);
                    throw new DeviceException(Errno.EIO, "origin copy-out failed: " + SharedStore.describe(e), e);
                }
                if (d >= 0) {
                    s.dataChunk(d);
                    olds[m] = c;
                    news[m++] = d;
                }
            }
            seq = s.openSeq();
            s.beginData(seq, m);
        } finally {
            s.treeLock.unlock();
        }
        if (m > 0) {
            try {
                copyOut(olds, news, m, cb);
            } catch (Throwable e) {
                fence("origin copy-out failed: " + SharedStore.describe(e), e);  // before endData: the commit must not go ahead
                s.endData(seq, m);
                throw new DeviceException(Errno.EIO, "origin copy-out failed: " + SharedStore.describe(e), e);
            }
            s.endData(seq, m);
            commitOrFence(s, seq, "origin copy-out");
        }
        if (short_ != null) throw noSpace(short_);
        // no copy-out needed can rest on an exception whose commit failed (the claim's previous holder, e.g. a snapshot
        // write cut by a crash): then the durable tree does not have it, and the origin must not change under it
        Throwable failed = s.failure();
        if (failed != null) throw new DeviceException(Errno.EIO, "origin write refused: the store failed (" + SharedStore.describe(failed) + "); restart to reopen it from disk", failed);
        origin.write(offset, src);
    }

    /** Copies origin chunks to COW chunks, a run of consecutive ones with one read and one write. */
    private void copyOut(long[] olds, long[] news, int m, int cb) throws IOException {
        for (int i = 0; i < m; ) {
            int j = i + 1;
            while (j < m && olds[j] == olds[j - 1] + 1 && news[j] == news[j - 1] + 1 && (j - i) * (long) cb < (4 << 20)) j++;
            long at = olds[i] * cb;
            int len = (int) Math.min((long) (j - i) * cb, origin.size() - at);
            ByteBuffer buf = ByteBuffer.allocate(len);
            origin.read(at, buf);
            buf.flip();
            cow.write(news[i] * cb, buf);
            i = j;
        }
    }

    private void originRead(long offset, ByteBuffer dst) throws IOException {
        SharedStore s = store;
        if (rbTarget < 0 || s == null) { origin.read(offset, dst); return; }
        // during a rollback, chunks not rolled back yet read as the snapshot's
        long[] r = chunkRange(s, offset, dst.remaining());
        int cb = s.chunkBytes();
        try (ChunkClaims.Claim cl = claims.acquire(r[0], r[1])) {
            long pos = offset;
            while (dst.hasRemaining()) {
                long c = pos / cb;
                int in = (int) (pos - c * cb);
                int len = (int) Math.min(cb - in, dst.remaining());
                ByteBuffer part = dst.slice(dst.position(), len);
                long x = rollbackSource(s, c);
                if (x >= 0) cow.read(x * cb + in, part); else origin.read(pos, part);
                dst.position(dst.position() + len);
                pos += len;
            }
        }
    }

    private void snapshotRead(SnapshotView v, long offset, ByteBuffer dst) throws IOException {
        SharedStore s = store;
        if (s.failure() != null) throw new DeviceException(Errno.EIO, "snapshot reads refused: the store failed (" + SharedStore.describe(s.failure()) + "); restart to reopen it from disk");
        long[] r = chunkRange(s, offset, dst.remaining());
        int cb = s.chunkBytes();
        int id = v.id;
        try (ChunkClaims.Claim cl = claims.acquire(r[0], r[1])) {
            long[] where = new long[(int) (r[1] - r[0] + 1)];
            s.read(() -> {
                for (int i = 0; i < where.length; i++) where[i] = s.tree().lookup(r[0] + i, id);
                return null;
            });
            long pos = offset;
            while (dst.hasRemaining()) {
                long c = pos / cb;
                int in = (int) (pos - c * cb);
                int len = (int) Math.min(cb - in, dst.remaining());
                ByteBuffer part = dst.slice(dst.position(), len);
                long x = where[(int) (c - r[0])];
                // no exception: the snapshot sees the origin device's data (during a rollback too: a
                // chunk is copied out for it before the rollback overwrites the origin there)
                if (x >= 0) cow.read(x * cb + in, part); else origin.read(pos, part);
                dst.position(dst.position() + len);
                pos += len;
            }
        }
    }

    private void snapshotWrite(SnapshotView v, long offset, ByteBuffer src) throws IOException {
        if (!v.info.writable()) throw new DeviceException(Errno.EPERM, "snapshot " + v.id + " is read-only (create it with --writable to write it)");
        if (rbTarget == v.id) throw new DeviceException(Errno.EPERM, "snapshot " + v.id + " is read-only while the origin is rolled back to it");
        checkNotFenced();
        SharedStore s = store;
        long[] r = chunkRange(s, offset, src.remaining());
        int cb = s.chunkBytes();
        int n = (int) (r[1] - r[0] + 1);
        try (ChunkClaims.Claim cl = claims.acquire(r[0], r[1])) {
            SharedTree.SnapWrite[] plan = new SharedTree.SnapWrite[n];
            int planned = 0, fresh = 0;
            NoSpaceException short_ = null;
            long seq;
            s.treeLock.lock();
            try {
                for (int i = 0; i < n; i++) {
                    try {
                        plan[i] = s.tree().prepareSnapshotWrite(r[0] + i, v.id);
                    } catch (NoSpaceException e) {
                        short_ = e;
                        break;
                    } catch (RuntimeException | Error e) {
                        fence("snapshot write failed in the tree: " + SharedStore.describe(e), e);
                        throw new DeviceException(Errno.EIO, "snapshot write failed: " + SharedStore.describe(e), e);
                    }
                    planned++;
                    if (plan[i].copyFrom() != SharedTree.IN_PLACE) {
                        s.dataChunk(plan[i].chunk());
                        fresh++;
                    }
                }
                seq = s.openSeq();
                s.beginData(seq, fresh);
            } finally {
                s.treeLock.unlock();
            }
            long end = offset + src.remaining();
            int base = src.position();
            try {
                for (int i = 0; i < planned; i++) {
                    long c = r[0] + i;
                    long cs = c * cb;
                    long from = Math.max(offset, cs), to = Math.min(end, cs + cb);
                    ByteBuffer part = src.duplicate();
                    part.position(base + (int) (from - offset)).limit(base + (int) (to - offset));
                    SharedTree.SnapWrite w = plan[i];
                    int chunkLen = (int) Math.min(cb, origin.size() - cs);
                    if (w.copyFrom() == SharedTree.IN_PLACE || (from == cs && to == cs + chunkLen)) {
                        cow.write(w.chunk() * cb + (from - cs), part);
                    } else {
                        ByteBuffer img = ByteBuffer.allocate(chunkLen);
                        if (w.copyFrom() == SharedTree.FROM_ORIGIN) origin.read(cs, img);
                        else cow.read(w.copyFrom() * cb, img);
                        img.position((int) (from - cs));
                        img.put(part);
                        img.clear();
                        cow.write(w.chunk() * cb, img);
                    }
                }
            } catch (Throwable e) {
                fence("snapshot write failed: " + SharedStore.describe(e), e);
                s.endData(seq, fresh);
                throw new DeviceException(Errno.EIO, "snapshot write failed: " + SharedStore.describe(e), e);
            }
            s.endData(seq, fresh);
            if (fresh > 0) commitOrFence(s, seq, "snapshot write");
            if (short_ != null) throw noSpace(short_);
            src.position(src.limit());
        }
    }

    private abstract class View implements BlockDevice {
        @Override public long size() { return origin.size(); }

        @Override
        public void discard(long offset, long length) throws IOException {
            // a discard changes what the device reads as: handled as a write of zeros (copy-out first)
            writeZeroes(offset, length);
        }

        @Override
        public void flush() throws IOException {
            awaitRollbackPast();
            lifecycle.readLock().lock();
            try {
                checkOpen();
                SharedStore s = store;
                long cur = rbCursor;
                origin.flush();
                if (s != null && rbTarget >= 0) {
                    s.treeLock.lock();
                    try { s.advanceRollback(cur); } finally { s.treeLock.unlock(); }
                }
                if (s != null) {
                    try {
                        s.commitPending();
                    } catch (IOException | RuntimeException e) {
                        fence("commit at flush failed: " + SharedStore.describe(e), e);
                        throw e;
                    }
                    cow.flush();
                }
            } finally {
                lifecycle.readLock().unlock();
            }
        }
    }

    private final class OriginView extends View {
        @Override
        public void read(long offset, ByteBuffer dst) throws IOException {
            BlockDevice.checkRange(this, offset, dst.remaining(), false);
            if (!dst.hasRemaining()) return;
            lifecycle.readLock().lock();
            try {
                checkOpen();
                originRead(offset, dst);
            } finally {
                lifecycle.readLock().unlock();
            }
        }

        @Override
        public void write(long offset, ByteBuffer src) throws IOException {
            BlockDevice.checkRange(this, offset, src.remaining(), true);
            if (!src.hasRemaining()) return;
            lifecycle.readLock().lock();
            try {
                checkOpen();
                originWrite(offset, src);
            } finally {
                lifecycle.readLock().unlock();
            }
        }

        @Override public String toString() { return "shared origin view"; }
    }

    private final class SnapshotView extends View {
        final int id;
        final Snapshot info;
        volatile boolean deleted;

        SnapshotView(int id) {
            this.id = id;
            SharedStore s = store;
            s.treeLock.lock();
            try { this.info = s.snapshot(id); } finally { s.treeLock.unlock(); }
        }

        private void checkLive() throws DeviceException {
            if (deleted) throw new DeviceException(Errno.EIO, "snapshot " + id + " was deleted");
        }

        @Override
        public void read(long offset, ByteBuffer dst) throws IOException {
            BlockDevice.checkRange(this, offset, dst.remaining(), false);
            lifecycle.readLock().lock();
            try {
                checkOpen();
                checkLive();
                if (dst.hasRemaining()) snapshotRead(this, offset, dst);
            } finally {
                lifecycle.readLock().unlock();
            }
        }

        @Override
        public void write(long offset, ByteBuffer src) throws IOException {
            BlockDevice.checkRange(this, offset, src.remaining(), true);
            lifecycle.readLock().lock();
            try {
                checkOpen();
                checkLive();
                if (src.hasRemaining()) snapshotWrite(this, offset, src);
            } finally {
                lifecycle.readLock().unlock();
            }
        }

        @Override
        public void flush() throws IOException {
            checkLive();
            super.flush();
        }

        @Override public String toString() { return "shared snapshot " + id; }
    }
}
