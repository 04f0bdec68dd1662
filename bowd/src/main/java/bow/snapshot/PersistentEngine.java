package bow.snapshot;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.engine.ModeEngine;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.concurrent.locks.ReentrantReadWriteLock;

import static bow.snapshot.PersistentFormat.SECTOR;

/**
 * The "persistent" mode: one dm-snapshot-style snapshot of ORIGIN kept on COW.
 *
 * <p>States:
 * <ul>
 * <li>NO_SNAPSHOT: the COW holds no store (zero magic); the origin is plain pass-through.</li>
 * <li>CHECKPOINT: a valid snapshot; origin writes copy the old chunk to the COW first.</li>
 * <li>INVALID: the snapshot was invalidated (COW full, or a COW write failed); origin writes
 *     go straight through, snapshot reads fail with EIO. Only commit (drop) is possible.</li>
 * <li>MERGING: rollback in progress (or interrupted: the header carries bow's merge marker);
 *     both exports show the merged result (the snapshot, plus writes made since).</li>
 * </ul>
 *
 * <p>Where this differs from the kernel (on-disk bytes are the same):
 * <ul>
 * <li>A new store zeroes area 0 before writing the header (the kernel writes the header
 *     first), wiping the old header before either, each step flushed: a crash never shows a
 *     stale snapshot.</li>
 * <li>Allocation refuses (ENOSPC) a data chunk whose following metadata area would not fit
 *     on the COW; the kernel would allocate it and then fail zeroing that area and invalidate.
 *     So {@link PersistentFormat#cowBytesFor} is exact: n exceptions fit, n + 1 do not.</li>
 * <li>When an exception cannot be committed, origin writes go through only once valid = 0
 *     is durable in the header; otherwise they fail with EIO.</li>
 * <li>Snapshot writes that overflow (option overflow) fail with ENOSPC (the kernel: EIO).
 *     As in the kernel, overflow concerns snapshot writes only: an origin write that needs a
 *     copy on a full COW invalidates the snapshot even with overflow on.</li>
 * <li>bow's merge marker (header bytes 16..19, which the kernel leaves zero and ignores)
 *     says a merge was started, so an interrupted merge is resumed, never mistaken for a
 *     checkpoint.</li>
 * </ul>
 *
 * <p>Locking: a lifecycle read/write lock (shared by all I/O, exclusive only for state
 * changes) and striped per-chunk locks: an origin write that must copy a chunk holds the
 * chunk's stripe exclusively from the copy until its origin write is done, so two writers
 * never copy the same chunk and a snapshot reader never reads a half-overwritten origin chunk.
 */
public final class PersistentEngine implements ModeEngine {
    private static final Logger log = LoggerFactory.getLogger(PersistentEngine.class);
    private static final int STRIPES = 1024;

    /** chunkSectors 0 = the default (32 sectors); overflow = the kernel's "PO" store option. */
    public record Options(int chunkSectors, boolean overflow, boolean snapshotWritable) {
        public static Options defaults() { return new Options(0, false, false); }
    }

    public enum State { NO_SNAPSHOT, CHECKPOINT, INVALID, MERGING }

    private final BlockDevice origin;
    private final BlockDevice cow;
    private final Options options;
    private final ReentrantReadWriteLock lifecycle = new ReentrantReadWriteLock();
    private final ReentrantReadWriteLock[] stripes = new ReentrantReadWriteLock[STRIPES];
    private final Map<String, BlockDevice> exports;

    private volatile State state;
    private volatile PersistentStore store;
    private volatile boolean overflowed;
    private volatile boolean mergeFailed;
    private volatile String lastError = "";
    private final AtomicBoolean mergeRunning = new AtomicBoolean();
    private final AtomicLong mergeDone = new AtomicLong();
    private final AtomicLong mergeTotal = new AtomicLong();

    private PersistentEngine(BlockDevice origin, BlockDevice cow, Options options) {
        this.origin = origin;
        this.cow = cow;
        this.options = options;
        for (int i = 0; i < STRIPES; i++) stripes[i] = new ReentrantReadWriteLock();
        Map<String, BlockDevice> m = new LinkedHashMap<>();
        m.put("", new OriginView());
        m.put("snapshot", new SnapshotView());
        this.exports = java.util.Collections.unmodifiableMap(m);
    }

    /** Opens the engine on existing devices; loads a snapshot if the COW has one. The caller owns the devices. */
    public static PersistentEngine open(BlockDevice origin, BlockDevice cow, Options options) throws IOException {
        if (options.chunkSectors() != 0) PersistentFormat.validateChunkSize(options.chunkSectors(), SECTOR);
                PersistentEngine e = new PersistentEngine(origin, cow, options);
        PersistentStore s = PersistentStore.load(cow, options.chunkSectors(), log::warn);
        if (s != null && s.isValid()) {
            OriginCheck.verify(origin, s);   // never serve or merge a snapshot of another device
            // A writable snapshot may change what the fingerprint covers: drop it before the first write.
            if (options.snapshotWritable() && !s.isMerging()) s.dropFingerprint();
        }
        e.store = s;
        if (s == null) e.state = State.NO_SNAPSHOT;
        else if (!s.isValid()) e.state = State.INVALID;
        else if (s.isMerging()) {
            e.state = State.MERGING;
            e.mergeFailed = true; // interrupted: rollback() (online) or 'bowctl rollback' (offline) finishes it
            e.lastError = "merge was interrupted; run rollback again to finish it";
        } else e.state = State.CHECKPOINT;
        return e;
    }

    public State state() { return state; }

    /** The current store, null in NO_SNAPSHOT. */
    PersistentStore store() { return store; }

    @Override public String mode() { return "persistent"; }

    @Override public Map<String, BlockDevice> exports() { return exports; }

    @Override
    public EngineStatus status() {
        PersistentStore s = store;
        State st = state;
        Map<String, String> d = new LinkedHashMap<>();
        d.put("status", statusLine(s, st));
        if (s != null) {
            d.put("table", (options.overflow() ? "PO " : "P ") + s.chunkSectors());
            d.put("chunk_size", Integer.toString(s.chunkSectors()));
            d.put("exceptions", Integer.toString(s.exceptionCount()));
        }
        d.put("overflow", Boolean.toString(overflowed));
        d.put("snapshot_writable", Boolean.toString(options.snapshotWritable()));
        if (st == State.MERGING || mergeTotal.get() > 0) {
            d.put("merge", mergeDone.get() + "/" + mergeTotal.get() + " chunks");
        }
        if (!lastError.isEmpty()) d.put("error", lastError);
        long free = 0, backed = 0, entries = 0;
        int blockSize = SECTOR; // requests of any byte range work; the chunk size is in details
        if (s != null && s.isValid()) {
            PersistentFormat.Usage u = s.usage();
            free = (u.totalSectors() - u.sectorsAllocated()) * SECTOR;
            entries = s.exceptionCount();
            backed = entries * s.chunkBytes();
        }
        return new EngineStatus(mode(), st.name(), "origin", origin.size(), blockSize, Math.max(0, free), backed,
                0, entries, 0, d);
    }

    /** dm-snapshot's status word(s): usage, or Invalid / Merge failed / Overflow. */
    private String statusLine(PersistentStore s, State st) {
        if (s == null) return "None";
        if (st == State.INVALID || !s.isValid()) return "Invalid";
        if (mergeFailed) return "Merge failed";
        if (overflowed) return "Overflow";
        return s.usage().statusLine();
    }

    @Override
    public void startCheckpoint() throws IOException {
        lifecycle.writeLock().lock();
        try {
            if (state != State.NO_SNAPSHOT) {
                throw new IllegalStateException("cannot start a checkpoint in state " + state
                        + (state == State.INVALID ? ": commit (drop) the invalid snapshot first" : ""));
            }
            int cs = options.chunkSectors() != 0 ? options.chunkSectors() : PersistentFormat.defaultChunkSectors(SECTOR);
            // The fingerprint is read now, before any exception exists: the snapshot is the origin.
            store = PersistentStore.create(cow, cs, OriginCheck.record(origin, cs, !options.snapshotWritable()));
            overflowed = false;
            mergeFailed = false;
            fenced = null;
            lastError = "";
            mergeDone.set(0);
            mergeTotal.set(0);
            state = State.CHECKPOINT;
        } finally {
            lifecycle.writeLock().unlock();
        }
    }

    @Override
    public void commit() throws IOException {
        lifecycle.writeLock().lock();
        try {
            if (state != State.CHECKPOINT && state != State.INVALID) {
                throw new IllegalStateException("cannot commit in state " + state);
            }
            store.drop();
            store = null;
            overflowed = false;
            state = State.NO_SNAPSHOT; fenced = null;
        } finally {
            lifecycle.writeLock().unlock();
        }
    }

    /** Online merge; returns when the origin equals the snapshot (plus writes made meanwhile). */
    @Override
    public void rollback() throws IOException { rollback(null); }

    public void rollback(PersistentMerge.Progress progress) throws IOException {
        if (!mergeRunning.compareAndSet(false, true)) throw new IllegalStateException("a merge is already running");
        try {
            lifecycle.writeLock().lock();
            try {
                if (state == State.INVALID) throw new IllegalStateException("the snapshot is invalid (COW overflowed or failed): it cannot be rolled back");
                if (state == State.NO_SNAPSHOT) throw new IllegalStateException("no checkpoint to roll back");
                if ((state == State.MERGING && mergeFailed) || (state == State.CHECKPOINT && fenced != null)) {
                    // after a failed or interrupted merge, or a failed copy-out, trust only what is on disk
                    store = PersistentStore.load(cow, 0, log::warn);
                    if (store == null) {
                        state = State.NO_SNAPSHOT;
                        mergeFailed = false;
                        return;
                    }
                    if (!store.isValid()) throw new IllegalStateException("the snapshot became invalid: it cannot be rolled back");
                }
                // The marker is durable before any write goes through the merging view (which changes
                // what the snapshot shows), so a reopen never checks the fingerprint against it.
                if (!store.isMerging()) {
                    try {
                        store.setMergeMarker(true);
                    } catch (IOException e) {
                        lastError = "rollback could not start (merge marker not written): " + e.getMessage();
                        throw e;   // nothing merged yet: the checkpoint stays as it was
                    }
                }
                state = State.MERGING;   // from here on, I/O goes through the merging view
                mergeFailed = false;
                lastError = "";
            } finally {
                lifecycle.writeLock().unlock();
            }
            mergeDone.set(0);
            mergeTotal.set(store.exceptionCount());
            PersistentMerge.Progress p = (done, total) -> {
                mergeDone.set(done);
                mergeTotal.set(total);
                if (progress != null) progress.update(done, total);
            };
            try {
                PersistentMerge.mergeAll(origin, store, p, this::lockRun);
            } catch (IOException | RuntimeException e) {
                mergeFailed = true;
                lastError = "merge failed: " + e.getMessage();
                throw e;
            }
            lifecycle.writeLock().lock();
            try {
                store = null;
                state = State.NO_SNAPSHOT; fenced = null;
            } finally {
                lifecycle.writeLock().unlock();
            }
        } finally {
            mergeRunning.set(false);
        }
    }

    @Override
    public void close() {
        // The devices belong to the caller; nothing is cached that a flush would not already have written.
    }

    // ---------------------------------------------------------------- locking

    private int stripe(long chunk) {
        long h = chunk * 0x9E3779B97F4A7C15L;
        return (int) ((h >>> 40) % STRIPES);
    }

    /** Locks the stripes of the given chunks exclusively, in ascending order (no deadlock). */
    private int[] lockChunks(long[] chunks, int n) {
        int[] s = new int[n];
        for (int i = 0; i < n; i++) s[i] = stripe(chunks[i]);
        Arrays.sort(s);
        int m = 0;
        for (int i = 0; i < n; i++) if (m == 0 || s[m - 1] != s[i]) s[m++] = s[i];
        int[] held = Arrays.copyOf(s, m);
        for (int i : held) stripes[i].writeLock().lock();
        return held;
    }

    private void unlock(int[] held) {
        for (int i = held.length - 1; i >= 0; i--) stripes[held[i]].writeLock().unlock();
    }

    private AutoCloseable lockRun(long firstOld, int count) {
        long[] chunks = new long[count];
        for (int i = 0; i < count; i++) chunks[i] = firstOld + i;
        int[] held = lockChunks(chunks, count);
        return () -> unlock(held);
    }

    // ---------------------------------------------------------------- I/O paths

    /** Any byte range inside the device works; the chunk logic is byte-exact. */
    private static void checkRequest(BlockDevice dev, long offset, long length, boolean write) throws DeviceException {
        BlockDevice.checkRange(dev, offset, length, write);
    }

    /** Marks the snapshot invalid on disk (kernel: __invalidate_snapshot). */
    private synchronized void invalidate(String why) throws IOException {
        if (state == State.INVALID) return;
        PersistentStore s = store;
        // Only once valid = 0 is durable may origin writes go through uncopied; if the header
        // write fails, the state stays CHECKPOINT and writes keep failing with EIO.
        s.invalidate();
        lastError = why;
        log.error("snapshot invalidated: {}", why);
        state = State.INVALID;
    }

    /**
     * Set when a copy-out failed other than by a full COW (an I/O error, or any
     * Error): from then on no origin or snapshot write is acknowledged, so the
     * snapshot on disk stays exact and can be merged back (offline, or online from
     * the metadata on disk). A full COW invalidates instead, as the kernel does.
     */
    private volatile String fenced;

    private void checkNotFenced() throws DeviceException {
        String f = fenced;
        if (f != null) throw new DeviceException(Errno.EIO, "writes refused: " + f + "; roll back or commit");
    }

    private void fence(String why, Throwable cause) {
        synchronized (this) {
            if (fenced == null) fenced = why;
        }
        lastError = "writes refused: " + why;
        log.error("copy-out failed, refusing further writes (the snapshot on disk is intact): {}", why, cause);
    }

    private void originWrite(long offset, ByteBuffer src) throws IOException {
        if (state == State.CHECKPOINT) checkNotFenced();
        PersistentStore s = store;
        int cb = s.chunkBytes();
        long first = offset / cb, last = (offset + src.remaining() - 1) / cb;
        int count = (int) (last - first + 1);
        long[] need = new long[count];
        int n = 0;
        for (long c = first; c <= last; c++) if (s.lookup(c) == 0) need[n++] = c;
        if (n == 0 || state != State.CHECKPOINT) {
            origin.write(offset, src);
            return;
        }
        int[] held = lockChunks(need, n);
        try {
            int m = 0;
            for (int i = 0; i < n; i++) if (s.lookup(need[i]) == 0) need[m++] = need[i];
            if (m > 0 && state == State.CHECKPOINT) copyOut(s, need, m);
            origin.write(offset, src);
        } finally {
            unlock(held);
        }
    }

    /** Copies origin chunks to new COW chunks and commits them; invalidates the snapshot when that is impossible. */
    private void copyOut(PersistentStore s, long[] olds, int m) throws IOException {
        long[] news = new long[m];
        int cb = s.chunkBytes();
        try {
            for (int i = 0; i < m; i++) news[i] = s.prepare();
            // copy runs of consecutive origin chunks that got consecutive COW chunks with one read and one write
            for (int i = 0; i < m; ) {
                int j = i + 1;
                while (j < m && olds[j] == olds[j - 1] + 1 && news[j] == news[j - 1] + 1 && (j - i) * (long) cb < (4 << 20)) j++;
                copyRun(olds[i], news[i], j - i, cb);
                i = j;
            }
            s.commit(olds, news, m);
        } catch (Throwable e) {
            if (e instanceof IOException io && DeviceException.errnoOf(io) == Errno.ENOSPC) {
                // A full COW: the kernel invalidates the snapshot and lets the origin write
                // through; we do the same, but only once valid = 0 is on disk.
                invalidate("COW device is full");
                return;
            }
            // Anything else: this origin write is refused and so is every later one; the
            // snapshot keeps what is durable, which covers every write acknowledged so far.
            String why = "COW copy-out failed: " + (e.getMessage() == null ? e.getClass().getSimpleName() : e.getMessage());
            fence(why, e);
            throw new DeviceException(Errno.EIO, why, e);
        }
    }

    private void copyRun(long firstOld, long firstNew, int count, int cb) throws IOException {
        long at = firstOld * cb;
        int len = (int) Math.min((long) count * cb, origin.size() - at);
        ByteBuffer buf = ByteBuffer.allocate(len);
        origin.read(at, buf);
        buf.flip();
        cow.write(firstNew * cb, buf);
    }

    /** Reads origin chunk {@code oldChunk} (clipped at the origin's end), overlays data, writes it to COW chunk {@code newChunk}. */
    private void copyChunk(long oldChunk, long newChunk, int cb, ByteBuffer overlay, int overlayAt, int overlayLen) throws IOException {
        long at = oldChunk * cb;
        int len = (int) Math.min(cb, origin.size() - at);
        ByteBuffer buf = ByteBuffer.allocate(len);
        origin.read(at, buf);
        if (overlay != null) {
            ByteBuffer part = overlay.duplicate();
            part.limit(part.position() + overlayLen);
            buf.position(overlayAt);
            buf.put(part);
        }
        buf.clear();
        cow.write(newChunk * cb, buf);
    }

    private void snapshotRead(long offset, ByteBuffer dst) throws IOException {
        PersistentStore s = store;
        if (state != State.CHECKPOINT || s == null || !s.isValid()) {
            throw new DeviceException(Errno.EIO, "snapshot is " + (state == State.NO_SNAPSHOT ? "absent" : "invalid"));
        }
        int cb = s.chunkBytes();
        long pos = offset;
        while (dst.hasRemaining()) {
            long c = pos / cb;
            int inChunk = (int) (pos - c * cb);
            int len = (int) Math.min(cb - inChunk, dst.remaining());
            ByteBuffer part = dst.slice(dst.position(), len);
            long e = s.lookup(c);
            if (e != 0) {
                cow.read(e * cb + inChunk, part);
            } else {
                ReentrantReadWriteLock.ReadLock l = stripes[stripe(c)].readLock();
                l.lock();
                try {
                    e = s.lookup(c);
                    if (e != 0) cow.read(e * cb + inChunk, part);
                    else origin.read(pos, part);
                } finally {
                    l.unlock();
                }
            }
            // An invalidation clears the exceptions (after setting valid = false) before the state
            // becomes INVALID: a lookup that found none may have seen them cleared, and the origin
            // then holds new data. So the store's own flag is checked after every chunk.
            if (state == State.INVALID || !s.isValid()) throw new DeviceException(Errno.EIO, "snapshot is invalid");
            dst.position(dst.position() + len);
            pos += len;
        }
    }

    private void snapshotWrite(long offset, ByteBuffer src) throws IOException {
        if (!options.snapshotWritable()) throw new DeviceException(Errno.EPERM, "the snapshot is read-only (start with --snapshot-writable)");
        checkNotFenced();
        PersistentStore s = store;
        if (state != State.CHECKPOINT || s == null || !s.isValid()) throw new DeviceException(Errno.EIO, "snapshot is invalid");
        int cb = s.chunkBytes();
        long first = offset / cb, last = (offset + src.remaining() - 1) / cb;
        long[] need = new long[(int) (last - first + 1)];
        int n = 0;
        for (long c = first; c <= last; c++) if (s.lookup(c) == 0) need[n++] = c;
        int[] held = n == 0 ? new int[0] : lockChunks(need, n);
        try {
            long[] olds = new long[n];
            long[] news = new long[n];
            int m = 0;
            ByteBuffer whole = src.duplicate();
            long end = offset + src.remaining();
            for (long c = first; c <= last; c++) {
                long chunkStart = c * cb;
                long from = Math.max(offset, chunkStart), to = Math.min(end, chunkStart + cb);
                ByteBuffer part = whole.duplicate();
                part.position(whole.position() + (int) (from - offset)).limit(whole.position() + (int) (to - offset));
                long e = s.lookup(c);
                if (e != 0) {
                    cow.write(e * cb + (from - chunkStart), part);
                    continue;
                }
                if (overflowed) throw new DeviceException(Errno.ENOSPC, "snapshot overflowed: no room for new exceptions");
                long nc;
                try {
                    nc = s.prepare();
                } catch (DeviceException ex) {
                    if (ex.errno() != Errno.ENOSPC) throw ex;
                    if (options.overflow()) {
                        overflowed = true;
                        log.error("snapshot overflowed: unable to allocate exception");
                        throw new DeviceException(Errno.ENOSPC, "snapshot overflowed: COW device is full");
                    }
                    invalidate("COW device is full");
                    throw new DeviceException(Errno.EIO, "snapshot invalidated: COW device is full");
                }
                copyChunk(c, nc, cb, part, (int) (from - chunkStart), (int) (to - from));
                olds[m] = c;
                news[m++] = nc;
            }
            // Exceptions allocated before an error are left as holes, like the kernel's failed pending exceptions.
            try {
                s.commit(olds, news, m);
            } catch (IOException ex) {
                invalidate("COW write failed: " + ex.getMessage());
                throw new DeviceException(Errno.EIO, "snapshot invalidated: " + ex.getMessage(), ex);
            }
        } finally {
            unlock(held);
        }
    }

    /** Reads in the merging view: chunks not merged yet come from the COW. */
    private void mergingRead(long offset, ByteBuffer dst) throws IOException {
        mergingIo(offset, dst, false);
    }

    private void mergingIo(long offset, ByteBuffer buf, boolean write) throws IOException {
        PersistentStore s = store;
        int cb = s.chunkBytes();
        long pos = offset;
        while (buf.hasRemaining()) {
            long c = pos / cb;
            int inChunk = (int) (pos - c * cb);
            int len = (int) Math.min(cb - inChunk, buf.remaining());
            ByteBuffer part = buf.slice(buf.position(), len);
            if (s.lookup(c) == 0) {
                if (write) origin.write(pos, part); else origin.read(pos, part);
            } else {
                ReentrantReadWriteLock.ReadLock l = stripes[stripe(c)].readLock();
                l.lock();
                try {
                    long e = s.lookup(c);
                    if (e != 0) {
                        if (write) cow.write(e * cb + inChunk, part); else cow.read(e * cb + inChunk, part);
                    } else {
                        if (write) origin.write(pos, part); else origin.read(pos, part);
                    }
                } finally {
                    l.unlock();
                }
            }
            buf.position(buf.position() + len);
            pos += len;
        }
    }

    private abstract class View implements BlockDevice {
        @Override public long size() { return origin.size(); }

        @Override
        public void flush() throws IOException {
            origin.flush();
            if (state != State.NO_SNAPSHOT) cow.flush();
        }

        @Override
        public void discard(long offset, long length) throws IOException {
            // A discard changes what the origin reads as, so it is handled as a write of zeros.
            writeZeroes(offset, length);
        }
    }

    private final class OriginView extends View {
        @Override
        public void read(long offset, ByteBuffer dst) throws IOException {
            checkRequest(this, offset, dst.remaining(), false);
            lifecycle.readLock().lock();
            try {
                if (state == State.MERGING) mergingRead(offset, dst);
                else origin.read(offset, dst);
            } finally {
                lifecycle.readLock().unlock();
            }
        }

        @Override
        public void write(long offset, ByteBuffer src) throws IOException {
            checkRequest(this, offset, src.remaining(), true);
            if (!src.hasRemaining()) return;
            lifecycle.readLock().lock();
            try {
                switch (state) {
                    case NO_SNAPSHOT, INVALID -> origin.write(offset, src);
                    case MERGING -> mergingIo(offset, src, true);
                    case CHECKPOINT -> originWrite(offset, src);
                }
            } finally {
                lifecycle.readLock().unlock();
            }
        }

        @Override public String toString() { return "persistent origin view"; }
    }

    private final class SnapshotView extends View {
        @Override
        public void read(long offset, ByteBuffer dst) throws IOException {
            checkRequest(this, offset, dst.remaining(), false);
            lifecycle.readLock().lock();
            try {
                if (state == State.MERGING) mergingRead(offset, dst);
                else snapshotRead(offset, dst);
            } finally {
                lifecycle.readLock().unlock();
            }
        }

        @Override
        public void write(long offset, ByteBuffer src) throws IOException {
            checkRequest(this, offset, src.remaining(), true);
            if (!src.hasRemaining()) return;
            lifecycle.readLock().lock();
            try {
                if (state == State.MERGING) {
                    if (!options.snapshotWritable()) throw new DeviceException(Errno.EPERM, "the snapshot is read-only");
                    mergingIo(offset, src, true);
                } else {
                    snapshotWrite(offset, src);
                }
            } finally {
                lifecycle.readLock().unlock();
            }
        }

        @Override public String toString() { return "persistent snapshot view"; }
    }
}
