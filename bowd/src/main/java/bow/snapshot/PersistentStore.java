package bow.snapshot;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.snapshot.PersistentFormat.Header;
import bow.snapshot.PersistentFormat.Usage;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayDeque;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

import static bow.snapshot.PersistentFormat.*;

/**
 * The persistent exception store on a COW device, following dm-snap-persistent.c:
 * header handling, metadata load, chunk allocation, group commit of exceptions, and
 * the merge primitives (prepare_merge / commit_merge).
 *
 * <p>Threads: {@link #lookup}, {@link #prepare} and {@link #usage} take this object's
 * monitor briefly (no I/O under it). {@link #commit} is a pipelined group commit: a
 * waiting writer becomes the committer and runs rounds of one area write and one flush
 * while the others wait. The merge methods are for one merging thread at a time, while
 * no commit runs.
 */
public final class PersistentStore {
    /** Areas read ahead while loading (the kernel prefetches 12). */
    static final int PREFETCH_AREAS = 16;

    private final BlockDevice cow;
    private final int chunkSectors;
    private final int chunkBytes;
    private final int epa;
    private final long cowBytes;

    private final ExceptionMap map;          // guarded by this
    private long maxOldChunk = -1;           // guarded by this: the largest old_chunk ever loaded or committed
    private volatile OriginRecord originRecord;  // bow's origin record in the header, null if none
    private long nextFree;                   // guarded by this
    private volatile boolean valid;
    private volatile boolean merging;        // header carries bow's merge marker
    private volatile boolean dropped;

    // The current metadata area: touched only by the committer or the merging thread.
    private byte[] area;
    private long currentArea;
    private int currentCommitted;

    private final ReentrantLock commitLock = new ReentrantLock();
    /** Signalled when a waiting writer should look again: its batch is done, or it may become the committer. */
    private Condition newWaitCondition() { return commitLock.newCondition(); }
    private final ArrayDeque<Batch> queue = new ArrayDeque<>();   // guarded by commitLock: copies written, not known durable
    private final ArrayDeque<Batch> ready = new ArrayDeque<>();   // guarded by commitLock: copies durable, in no area yet
    private boolean committerActive;                              // guarded by commitLock
    private final Condition queued = commitLock.newCondition();   // a batch was queued while the committer lingers
    private boolean lingering;                                    // guarded by commitLock
    private int lastReleased;                                     // guarded by commitLock: writers the last round released
    private long lastFlushNanos;                                  // guarded by commitLock
    private final java.util.concurrent.atomic.AtomicLong roundFlushes = new java.util.concurrent.atomic.AtomicLong();

    /**
     * One writer's exceptions. Each has its own condition, so that the end of a round wakes only
     * the writers it released, and a committer that leaves wakes one writer to take over: at
     * queue depth 64 a shared signalAll woke every waiting writer at each round, and the
     * committer queued for the lock behind them (bench/RESULTS.md, "seventh session").
     */
    private static final class Batch {
        final long[] olds, news;
        final int n;
        final Condition wake;
        boolean done;
        IOException error;
        Batch(long[] olds, long[] news, int n, Condition wake) { this.olds = olds; this.news = news; this.n = n; this.wake = wake; }
    }

    private PersistentStore(BlockDevice cow, int chunkSectors, boolean valid) {
        this.cow = cow;
        this.chunkSectors = chunkSectors;
        this.chunkBytes = chunkSectors * SECTOR;
        this.epa = PersistentFormat.exceptionsPerArea(chunkSectors);
        this.cowBytes = cow.size();
        this.map = new ExceptionMap();
        this.valid = valid;
        this.area = new byte[chunkBytes];
        this.nextFree = HEADER_CHUNKS + 1; // header and first area
    }

    /** Reads the header sector of a COW device (chunk size not yet known: the header is in sector 0). */
    public static Header readHeader(BlockDevice cow) throws IOException {
        if (cow.size() < SECTOR) throw new IOException("COW device of " + cow.size() + " bytes is too small for a snapshot header");
        ByteBuffer b = ByteBuffer.allocate(SECTOR);
        cow.read(0, b);
        return decodeHeader(b.array());
    }

    /**
     * Starts a fresh, empty snapshot on {@code cow} (whatever it held): the old header is
     * wiped first, then area 0 is zeroed, then the new header is written, each flushed,
     * so a crash leaves either no snapshot or an empty one.
     */
    public static PersistentStore create(BlockDevice cow, int chunkSectors) throws IOException {
        return create(cow, chunkSectors, null);
    }

    /** As {@link #create(BlockDevice, int)}, with bow's origin record in the header (null: none). */
    public static PersistentStore create(BlockDevice cow, int chunkSectors, OriginRecord origin) throws IOException {
        validateChunkSize(chunkSectors, SECTOR);
        checkCowFits(cow, chunkSectors);
        PersistentStore s = new PersistentStore(cow, chunkSectors, true);
        s.originRecord = origin;
        cow.writeZeroes(0, SECTOR);
        cow.flush();
        cow.write(s.chunkBytes, ByteBuffer.wrap(new byte[s.chunkBytes]));
        cow.flush();
        cow.write(0, ByteBuffer.wrap(s.headerChunk(Header.fresh(chunkSectors))));
        cow.flush();
        s.currentArea = 0;
        s.currentCommitted = 0;
        return s;
    }

    /**
     * Loads an existing store, or returns null when the COW holds none (magic 0).
     * A chunk size in the header that differs from {@code configuredChunkSectors}
     * (0 = not configured) wins, with a warning. An invalidated snapshot loads with
     * {@link #isValid()} false and no exceptions, like the kernel.
     */
    public static PersistentStore load(BlockDevice cow, int configuredChunkSectors, Consumer<String> warn) throws IOException {
        if (cow.size() < SECTOR) throw new IOException("COW device of " + cow.size() + " bytes is too small for a snapshot header");
        ByteBuffer sector0 = ByteBuffer.allocate(SECTOR);
        cow.read(0, sector0);
        Header h = decodeHeader(sector0.array());
        if (h.isNew()) return null;
        String err = checkHeader(h);
        if (err != null) throw new DeviceException(Errno.EINVAL, "COW: " + err);
        if (configuredChunkSectors != 0 && configuredChunkSectors != h.chunkSectors() && warn != null) {
            warn.accept("chunk size " + h.chunkSectors() + " in device metadata overrides configured chunk size of "
                    + configuredChunkSectors);
        }
        checkCowFits(cow, h.chunkSectors());
        PersistentStore s = new PersistentStore(cow, h.chunkSectors(), h.isValid());
        s.merging = h.merging();
        s.originRecord = decodeOriginRecord(sector0.array());
        if (s.valid) s.readExceptions();
        return s;
    }

    private static void checkCowFits(BlockDevice cow, int chunkSectors) throws DeviceException {
        long need = 2L * chunkSectors * SECTOR;
        if (cow.size() < need) {
            throw new DeviceException(Errno.ENOSPC, "COW device of " + cow.size() + " bytes is too small: chunk size "
                    + chunkSectors + " sectors needs at least " + need + " bytes (header and one metadata area)");
        }
    }

    /** read_exceptions(): areas in order until one is not full, with parallel read-ahead. */
    private void readExceptions() throws IOException {
        long cowChunks = cowBytes / chunkBytes;
        ExecutorService pool = Executors.newFixedThreadPool(4, r -> {
            Thread t = new Thread(r, "snap-meta-read");
            t.setDaemon(true);
            return t;
        });
        ArrayDeque<Future<byte[]>> window = new ArrayDeque<>();
        long prefetched = 0;
        // Full areas are kept until the last one is read, so that the map is sized once for all
        // their exceptions (a million: 11 doublings and rehashes otherwise, most of a load).
        java.util.List<byte[]> full = new java.util.ArrayList<>();
        try {
            for (long a = 0; ; a++) {
                while (prefetched <= a + PREFETCH_AREAS && areaLocation(epa, prefetched) < cowChunks) {
                    long loc = areaLocation(epa, prefetched++);
                    window.add(pool.submit(() -> readChunk(loc)));
                }
                if (window.isEmpty()) {
                    throw new DeviceException(Errno.EIO, "COW: metadata area " + a + " (chunk " + areaLocation(epa, a)
                            + ") lies past the end of the COW device; the metadata is corrupt");
                }
                byte[] buf = getFuture(window.poll());
                int n = checkArea(buf, a, cowChunks);
                if (n == epa) {
                    full.add(buf);
                } else {
                    synchronized (this) { map.ensureCapacity(map.size() + full.size() * epa + n); }
                    for (byte[] f : full) insertArea(f, epa);
                    full.clear();
                    insertArea(buf, n);
                    // Entries after the terminator can be left by a torn area write; the next
                    // commit rewrites the whole area, so drop them now or they would come back.
                    java.util.Arrays.fill(buf, n * EXCEPTION_BYTES, chunkBytes, (byte) 0);
                    area = buf;
                    currentArea = a;
                    currentCommitted = n;
                    break;
                }
            }
        } finally {
            // Never interrupt a read in flight: an interrupt inside FileChannel I/O closes the
            // COW's channel for every thread. Reads not started are dropped; running ones finish.
            for (Future<byte[]> f : window) f.cancel(false);
            pool.shutdown();
            awaitQuietly(pool);
        }
        synchronized (this) { nextFree = skipMetadata(epa, nextFree); }
    }

    /** How long loading waits for read-ahead still in flight (a few chunk reads) to finish. */
    static final long READ_AHEAD_DRAIN_SECONDS = 30;

    private static void awaitQuietly(ExecutorService pool) {
        boolean interrupted = false;
        try {
            long deadline = System.nanoTime() + java.util.concurrent.TimeUnit.SECONDS.toNanos(READ_AHEAD_DRAIN_SECONDS);
            while (true) {
                long left = deadline - System.nanoTime();
                if (left <= 0) return;   // a stuck read: its daemon thread is left to finish on its own
                try {
                    if (pool.awaitTermination(left, java.util.concurrent.TimeUnit.NANOSECONDS)) return;
                } catch (InterruptedException e) {
                    interrupted = true;  // keep waiting: the reads use the caller's device
                }
            }
        } finally {
            if (interrupted) Thread.currentThread().interrupt();
        }
    }

    /** The exceptions of an area before its terminator, each checked against the COW's layout; nothing inserted. */
    private int checkArea(byte[] buf, long areaIndex, long cowChunks) throws DeviceException {
        ByteBuffer bb = ByteBuffer.wrap(buf).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < epa; i++) {
            long oldChunk = bb.getLong(i * EXCEPTION_BYTES);
            long newChunk = bb.getLong(i * EXCEPTION_BYTES + 8);
            if (newChunk == 0) return i;
            if (newChunk < 0 || newChunk >= cowChunks || isMetadataChunk(epa, newChunk) || oldChunk < 0) {
                throw new DeviceException(Errno.EIO, "COW: metadata area " + areaIndex + " entry " + i + " maps chunk "
                        + oldChunk + " to " + newChunk + ", which is not a data chunk of a " + cowChunks
                        + "-chunk COW; the metadata is corrupt");
            }
        }
        return epa;
    }

    /** Inserts the first {@code n} exceptions of an area that {@link #checkArea} has passed. */
    private void insertArea(byte[] buf, int n) {
        ByteBuffer bb = ByteBuffer.wrap(buf).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        synchronized (this) {
            for (int i = 0; i < n; i++) {
                long oldChunk = bb.getLong(i * EXCEPTION_BYTES);
                long newChunk = bb.getLong(i * EXCEPTION_BYTES + 8);
                if (nextFree <= newChunk) nextFree = newChunk + 1;
                if (oldChunk > maxOldChunk) maxOldChunk = oldChunk;
                map.put(oldChunk, newChunk);
            }
        }
    }

    private byte[] readChunk(long chunk) throws IOException {
        byte[] b = new byte[chunkBytes];
        cow.read(chunk * chunkBytes, ByteBuffer.wrap(b));
        return b;
    }

    private static byte[] getFuture(Future<byte[]> f) throws IOException {
        try {
            return f.get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new java.io.InterruptedIOException("interrupted while loading snapshot metadata");
        } catch (ExecutionException e) {
            if (e.getCause() instanceof IOException io) throw io;
            throw new IOException("loading snapshot metadata failed", e.getCause());
        }
    }

    public int chunkSectors() { return chunkSectors; }
    public int chunkBytes() { return chunkBytes; }
    public int exceptionsPerArea() { return epa; }
    public boolean isValid() { return valid && !dropped; }
    public boolean isMerging() { return merging; }
    public BlockDevice cow() { return cow; }

    /** The COW chunk holding origin chunk {@code oldChunk}, or 0 when there is no exception. */
    public synchronized long lookup(long oldChunk) { return map.get(oldChunk); }

    public synchronized int exceptionCount() { return map.size(); }

    public synchronized Usage usage() { return PersistentFormat.usage(nextFree, currentArea, chunkSectors, cowBytes); }

    /**
     * prepare_exception(): allocates the COW chunk for a new exception, skipping
     * metadata areas. ENOSPC when the data chunk, or the metadata area that follows
     * it (which must be zeroed when the area before fills up), does not fit.
     */
    public synchronized long prepare() throws DeviceException {
        if (!isValid()) throw new DeviceException(Errno.EIO, "snapshot is invalid");
        long c = nextFree;
        if ((c + 1) * chunkBytes > cowBytes) throw new DeviceException(Errno.ENOSPC, "COW device is full");
        long after = skipMetadata(epa, c + 1);
        if (after != c + 1 && after * chunkBytes > cowBytes) throw new DeviceException(Errno.ENOSPC, "COW device is full");
        nextFree = after;
        return c;
    }

    /**
     * commit_exception() with a pipelined group commit: makes the exceptions durable (their
     * data chunks were written by the caller before this call) and visible to {@link #lookup}.
     * Returns when the metadata area naming them has been flushed. Concurrent callers share
     * flushes.
     *
     * <p>A batch moves queued -> copy-durable -> committed. The committer (one of the waiting
     * callers) runs rounds; a round writes the metadata area with every copy-durable batch,
     * then flushes once. That one flush makes the area write durable (those batches are
     * committed: their writers are released) and also makes durable the chunk copies of every
     * batch that was queued before the flush began (they become copy-durable, for the next
     * round's area write). A batch queued while a flush runs waits for the next flush. So a
     * lone writer costs two flushes, as before, and a busy queue one flush per round.
     *
     * <p>Invariant: the area on disk never names an exception whose data chunk is not
     * already on stable storage (only batches queued before a completed flush go into an area),
     * and no caller returns before the area naming its exception has been flushed.
     */
    public void commit(long[] olds, long[] news, int n) throws IOException {
        if (n == 0) return;
        Batch mine = new Batch(olds, news, n, newWaitCondition());
        boolean interrupted = false;
        commitLock.lock();
        try {
            queue.add(mine);
            if (lingering) queued.signal();
            while (!mine.done) {
                if (committerActive) {
                    mine.wake.awaitUninterruptibly();
                    continue;
                }
                committerActive = true;
                try {
                    interrupted |= runRounds(mine);
                } finally {
                    // Given back whatever happened, or every later commit would wait forever; the
                    // next waiter whose batch is not committed yet takes over.
                    committerActive = false;
                    handOver();
                }
            }
        } finally {
            commitLock.unlock();
            if (interrupted) Thread.currentThread().interrupt();
        }
        if (mine.error != null) {
            throw new DeviceException(DeviceException.errnoOf(mine.error), "committing exceptions failed: " + mine.error.getMessage(), mine.error);
        }
    }

    /**
     * Commit rounds until {@code mine} is committed (or failed). Called and returns with
     * commitLock held. True if the thread was interrupted meanwhile (the flag is cleared, so
     * that no device I/O runs interrupted; the caller sets it again).
     */
    private boolean runRounds(Batch mine) {
        boolean interrupted = false;
        while (!mine.done) {
            List<Batch> writing = new ArrayList<>(ready);
            ready.clear();
            List<Batch> copying = List.of();
            Throwable failure = null;
            commitLock.unlock();
            try {
                if (!isValid()) throw new DeviceException(Errno.EIO, "snapshot is invalid");
                if (!writing.isEmpty()) writeAreas(writing);
            } catch (Throwable t) {
                failure = t;
            } finally {
                commitLock.lock();
            }
            if (failure == null) {
                // Every batch queued so far had its chunk copy written before it was queued, so
                // the flush that starts now makes those copies durable.
                if (linger()) interrupted = true;
                copying = new ArrayList<>(queue);
                queue.clear();
                long f0 = System.nanoTime();
                commitLock.unlock();
                try {
                    flushRound();
                } catch (Throwable t) {
                    failure = t;
                } finally {
                    commitLock.lock();
                }
                lastFlushNanos = System.nanoTime() - f0;
            }
            if (failure != null) {
                failAll(failure, writing, copying);
                return interrupted;
            }
            synchronized (this) {
                for (Batch b : writing) {
                    for (int i = 0; i < b.n; i++) {
                        map.put(b.olds[i], b.news[i]);
                        if (b.olds[i] > maxOldChunk) maxOldChunk = b.olds[i];
                    }
                }
            }
            for (Batch b : writing) {
                b.done = true;
                b.wake.signal();
            }
            lastReleased = writing.size();
            ready.addAll(copying);
        }
        return interrupted;
    }

    /**
     * The committer leaves (its own batch is done, or failed): wakes the writer of the oldest
     * batch not done, which becomes the committer unless another caller got there first (then
     * that one hands over in turn when it leaves). Every batch not done is in {@link #ready} or
     * {@link #queue} here, and its writer is waiting on its condition. Under commitLock.
     */
    private void handOver() {
        Batch next = !ready.isEmpty() ? ready.peekFirst() : queue.peekFirst();
        if (next != null) next.wake.signal();
    }

    /** The longest a round waits for the writers it released to come back (bench/RESULTS.md, "persistent first writes"). */
    static final long MAX_LINGER_NANOS = 1_000_000;

    /**
     * Before a round's flush starts: the writers the last round released usually come back at
     * once with their next first write; waiting a little (at most half a flush, bounded) for
     * them lets this flush make their copies durable, instead of the next one. Called with
     * commitLock held; never waits when the last round released nobody.
     */
    private boolean linger() {
        int want = lastReleased;
        if (want == 0 || queue.size() >= want) return false;
        boolean interrupted = false;
        long deadline = System.nanoTime() + Math.min(lastFlushNanos / 2, MAX_LINGER_NANOS);
        lingering = true;
        try {
            long left;
            while (queue.size() < want && (left = deadline - System.nanoTime()) > 0) {
                try {
                    queued.awaitNanos(left);
                } catch (InterruptedException e) {
                    interrupted = true;   // as awaitUninterruptibly: kept, set again once the commit is done
                }
            }
        } finally {
            lingering = false;
        }
        return interrupted;
    }

    /**
     * A failed round (an I/O error, or an Error such as out of memory) kills the snapshot, like
     * the kernel's failed metadata write, and fails every batch: this round's and all pending.
     */
    private void failAll(Throwable failure, List<Batch> writing, List<Batch> copying) {
        valid = false;
        IOException err = failure instanceof IOException io ? io : new IOException("metadata commit failed: " + failure, failure);
        List<Batch> all = new ArrayList<>(writing);
        all.addAll(copying);
        all.addAll(ready);
        all.addAll(queue);
        ready.clear();
        queue.clear();
        for (Batch b : all) {
            b.done = true;
            b.error = err;
            b.wake.signal();
        }
    }

    /** Exception batches waiting for the committer, queued or copy-durable (for tests of group commit). */
    int queuedCommits() {
        commitLock.lock();
        try {
            return queue.size() + ready.size();
        } finally {
            commitLock.unlock();
        }
    }

    /** Flushes done by commit rounds, not counting the extra one when an area fills (for tests). */
    long commitFlushes() {
        return roundFlushes.get();
    }

    private void flushRound() throws IOException {
        roundFlushes.incrementAndGet();
        cow.flush();
    }

    /**
     * Puts copy-durable exceptions into the current area and writes it, without the final
     * flush (the round's flush makes it durable). When the area fills, the next area is zeroed
     * and that zeroing flushed before the full area is written: the next area must read as
     * empty before this one can be seen as full.
     */
    private void writeAreas(List<Batch> group) throws IOException {
        boolean dirty = false;
        for (Batch b : group) {
            for (int i = 0; i < b.n; i++) {
                putException(area, currentCommitted++, b.olds[i], b.news[i]);
                dirty = true;
                if (currentCommitted == epa) {
                    cow.write(areaLocation(epa, currentArea + 1) * chunkBytes, ByteBuffer.wrap(new byte[chunkBytes]));
                    cow.flush();
                    writeArea();
                    currentArea++;
                    currentCommitted = 0;
                    area = new byte[chunkBytes];
                    dirty = false;
                }
            }
        }
        if (dirty) writeArea();
    }

    private void writeArea() throws IOException {
        cow.write(areaLocation(epa, currentArea) * chunkBytes, ByteBuffer.wrap(area.clone()));
    }

    /** drop_snapshot(): writes the header with valid = 0 and flushes. Exceptions are forgotten. */
    public void invalidate() throws IOException {
        valid = false;
        synchronized (this) { map.clear(); }
        cow.write(0, ByteBuffer.wrap(headerChunk(new Header(SNAP_MAGIC, 0, DISK_VERSION, chunkSectors, 0))));
        cow.flush();
    }

    /** Removes the store: zeroes the header chunk so the COW is no snapshot at all. */
    public void drop() throws IOException {
        cow.write(0, ByteBuffer.wrap(new byte[chunkBytes]));
        cow.flush();
        dropped = true;
        synchronized (this) { map.clear(); }
    }

    /** Sets or clears bow's merge-in-progress marker in the header (ignored by the kernel). */
    public void setMergeMarker(boolean on) throws IOException {
        Header h = Header.fresh(chunkSectors).withMerging(on);
        cow.write(0, ByteBuffer.wrap(headerChunk(h)));
        cow.flush();
        merging = on;
    }

    /** The header chunk for {@code h}, carrying the origin record when the store has one. */
    private byte[] headerChunk(Header h) {
        byte[] b = encodeHeader(h, chunkBytes);
        OriginRecord r = originRecord;
        if (r != null) putOriginRecord(b, r);
        return b;
    }

    /** bow's record of the origin this COW protects, or null (a COW made by the kernel or an older bow). */
    public OriginRecord originRecord() { return originRecord; }

    /** The largest origin chunk that has (or had, before merging) an exception; -1 when none. */
    public synchronized long maxOldChunk() { return maxOldChunk; }

    /**
     * Drops the fingerprint from the header, durably, before the snapshot may change (a
     * writable snapshot): afterwards only the origin size is checked.
     */
    public void dropFingerprint() throws IOException {
        OriginRecord r = originRecord;
        if (r == null || r.samples() == 0) return;
        originRecord = r.withoutFingerprint();
        cow.write(0, ByteBuffer.wrap(headerChunk(Header.fresh(chunkSectors).withMerging(merging))));
        cow.flush();
    }

    /** One run of consecutive exceptions to merge: origin chunks [lastOld-count+1, lastOld] live at COW [lastNew-count+1, lastNew]. */
    public record MergeRun(long lastOld, long lastNew, int count) {}

    /** prepare_merge(): the newest run of consecutive exceptions, or null when none is left. */
    public MergeRun prepareMerge() throws IOException {
        if (currentCommitted == 0) {
            if (currentArea == 0) return null;
            currentArea--;
            area = readChunk(areaLocation(epa, currentArea));
            currentCommitted = epa;
        }
        return runEndingAt(currentCommitted);
    }

    /**
     * The run just below the last {@code skip} exceptions of the current area (which the caller
     * has copied but not yet committed), or null when the area has none left: runs of one
     * area can then be copied together and committed with one {@link #commitMerge}.
     */
    public MergeRun nextMergeRunInArea(int skip) {
        if (skip < 0 || skip >= currentCommitted) return null;
        return runEndingAt(currentCommitted - skip);
    }

    /** The longest run of consecutive old and new chunks ending at exception {@code top - 1} of the current area. */
    private MergeRun runEndingAt(int top) {
        long lastOld = oldChunkAt(area, top - 1);
        long lastNew = newChunkAt(area, top - 1);
        int n = 1;
        while (n < top
                && oldChunkAt(area, top - 1 - n) == lastOld - n
                && newChunkAt(area, top - 1 - n) == lastNew - n) {
            n++;
        }
        return new MergeRun(lastOld, lastNew, n);
    }

    /**
     * commit_merge(): the last {@code merged} exceptions of the current area (whose data the
     * caller has copied to the origin and flushed) are zeroed in the area, which is written
     * with flush + FUA; then they leave the in-memory map.
     */
    public void commitMerge(int merged) throws IOException {
        if (merged > currentCommitted) throw new IllegalArgumentException("merged " + merged + " > " + currentCommitted);
        long[] olds = new long[merged];
        byte[] next = area.clone(); // memory changes only once the write succeeded: a retry must see the same area
        for (int i = 0; i < merged; i++) {
            int idx = currentCommitted - 1 - i;
            olds[i] = oldChunkAt(next, idx);
            putException(next, idx, 0, 0);
        }
        cow.flush();
        cow.write(areaLocation(epa, currentArea) * chunkBytes, ByteBuffer.wrap(next));
        cow.flush();
        area = next;
        currentCommitted -= merged;
        synchronized (this) {
            for (long o : olds) map.remove(o);
            nextFree = areaLocation(epa, currentArea) + currentCommitted + 1;
        }
    }
}
