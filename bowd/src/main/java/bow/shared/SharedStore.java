package bow.shared;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.shared.SharedFormat.Header;
import bow.shared.SharedFormat.Snapshot;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.locks.Condition;
import java.util.concurrent.locks.ReentrantLock;
import java.util.function.Consumer;

/**
 * The shared exception store on a COW device: the tree, the allocator and the snapshot table in
 * memory, a bounded cache of tree blocks, and the group commit that makes them durable in the
 * order docs/FORMATS.md fixes (tree blocks and data chunks; bitmap copy s &amp; 1; flush; header
 * slot s &amp; 1; flush; then release the deferred frees).
 *
 * <p>Threads: everything about the tree, the allocator and the open transaction is guarded by
 * {@link #treeLock} (held briefly; a cache miss of a lookup ({@link #read}) reads its block
 * with the lock released, one of a tree change reads it under the lock). Transaction s is open
 * until a committer closes it under the tree lock (capturing its block images, header and bitmap
 * images); from then on changes go to s + 1 while commit s does its I/O. One committer at a time
 * ({@link #commitLock}); writers that wait for the same or an earlier sequence share its commit.
 * A data chunk written for transaction s is registered ({@link #beginData}) under the tree lock in
 * the same critical section that allocated it, and commit s waits for all of them
 * ({@link #endData}) before its first flush.
 *
 * <p>After any failure of a commit or of a tree change (I/O error, corrupt block, Error), the
 * store is failed: memory may differ from what is durable, so nothing is committed any more and
 * every later {@link #awaitDurable} throws. The disk keeps the last durable commit.
 */
final class SharedStore {
    /** Tree shape and cache size; tests use a small fanout and leaf to get deep trees. */
    record Tuning(int fanout, int leafBytes, int maxSnapshots, int cacheBlocks) {
        static Tuning full(int chunkBytes) {
            return new Tuning(Node.maxEntries(chunkBytes), chunkBytes, SharedFormat.MAX_SNAPSHOTS, defaultCacheBlocks(chunkBytes));
        }
        /** About 16 MiB of tree blocks, at most 4096 blocks, at least 64. */
        static int defaultCacheBlocks(int chunkBytes) { return Math.max(64, Math.min(4096, (16 << 20) / chunkBytes)); }
        Tuning forChunk(int chunkBytes) {
            return new Tuning(Math.min(fanout, Node.maxEntries(chunkBytes)), Math.min(leafBytes, chunkBytes), maxSnapshots, cacheBlocks);
        }
    }

    private final BlockDevice cow;
    private final SharedFormat.Layout layout;
    private final int chunkSectors;
    private final int chunkBytes;
    private final long originBytes;
    final ReentrantLock treeLock = new ReentrantLock();

    // guarded by treeLock
    private final BitmapAllocator alloc;
    private final BlockCache cache;
    private SharedTree tree;
    private final Snapshot[] snaps = new Snapshot[SharedFormat.MAX_SNAPSHOTS];
    private long openSeq;
    private boolean txnChanged;
    /** The rollback recorded in the header (docs/FORMATS.md "rollback record"): target -1 when none. */
    private int rbTarget = -1;
    private boolean rbDelete;
    private long rbResume;

    // guarded by commitLock
    private final ReentrantLock commitLock = new ReentrantLock();
    private final Condition commitChanged = commitLock.newCondition();
    private final Map<Long, Integer> pendingData = new HashMap<>();
    private long durableSeq;
    private boolean committing;
    private int waiting;
    private volatile Throwable failure;
    private volatile long durableFree;
    private final java.util.concurrent.atomic.LongAdder commits = new java.util.concurrent.atomic.LongAdder();

    private SharedStore(BlockDevice cow, SharedFormat.Layout layout, int chunkSectors, long originBytes, BitmapAllocator alloc, int cacheBlocks) {
        this.cow = cow;
        this.layout = layout;
        this.chunkSectors = chunkSectors;
        this.chunkBytes = chunkSectors * SharedFormat.SECTOR;
        this.originBytes = originBytes;
        this.alloc = alloc;
        this.cache = new BlockCache(cacheBlocks);
    }

    // ---------------------------------------------------------------- open and format

    /**
     * Reads both header slots. Slot 1 sits at one chunk: its offset comes from slot 0's chunk
     * size, or when slot 0 is not valid from trying each possible chunk size. Returns null header
     * for a blank COW; throws {@link SharedFormatException} for a corrupt one.
     */
    static Header readHeader(BlockDevice cow) throws IOException {
        if (cow.size() < 2L * SharedFormat.MIN_CHUNK_SECTORS * SharedFormat.SECTOR) {
            throw new DeviceException(Errno.EINVAL, "COW device of " + cow.size() + " bytes is too small for a shared store");
        }
        byte[] slot0 = readBytes(cow, 0, SharedFormat.HEADER_BYTES);
        Header h0 = null;
        try { h0 = SharedFormat.decodeHeader(slot0, 0); } catch (SharedFormatException e) { /* reported by pick */ }
        if (h0 != null) {
            long at = (long) h0.chunkBytes();
            byte[] slot1 = at + SharedFormat.HEADER_BYTES <= cow.size() ? readBytes(cow, at, SharedFormat.HEADER_BYTES) : new byte[SharedFormat.HEADER_BYTES];
            return pickWithSize(slot0, slot1, h0.chunkSectors());
        }
        // slot 0 is blank or broken: look for slot 1 at every possible chunk size
        for (int cs = SharedFormat.MIN_CHUNK_SECTORS; cs <= SharedFormat.MAX_CHUNK_SECTORS; cs *= 2) {
            long at = (long) cs * SharedFormat.SECTOR;
            if (at + SharedFormat.HEADER_BYTES > cow.size()) break;
            byte[] slot1 = readBytes(cow, at, SharedFormat.HEADER_BYTES);
            try {
                Header h1 = SharedFormat.decodeHeader(slot1, 1);
                if (h1.chunkSectors() == cs) return pickWithSize(slot0, slot1, cs);
            } catch (SharedFormatException e) { /* not here */ }
        }
        if (SharedFormat.isBlank(slot0)) return null;
        return SharedFormat.pick(slot0, new byte[SharedFormat.HEADER_BYTES]).header(); // throws, naming slot 0's problem
    }

    private static Header pickWithSize(byte[] slot0, byte[] slot1, int cs) {
        Header h = SharedFormat.pick(slot0, slot1).header();
        if (h != null && h.chunkSectors() != cs) throw new SharedFormatException(h.slot(), "header.chunk_size", h.chunkSectors() + " sectors, but slot 1 was found at " + cs);
        return h;
    }

    static byte[] readBytes(BlockDevice dev, long at, int n) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(n);
        dev.read(at, b);
        return b.array();
    }

    /** Opens the store the header describes: reads only its bitmap copy (open time does not depend on the tree's size). */
    static SharedStore open(BlockDevice cow, Header h, long originBytes, Tuning tuning) throws IOException {
        int cb = h.chunkBytes();
        long cowChunks = cow.size() / cb;
        if (h.nrChunks() > cowChunks) {
            throw new DeviceException(Errno.EINVAL, "COW: the store was formatted for " + h.nrChunks() + " chunks of " + cb
                    + " bytes, but the COW device holds only " + cowChunks + " (shrunken or wrong COW device)");
        }
        if (h.originBytes() != originBytes) {
            throw new DeviceException(Errno.EINVAL, "wrong origin: the shared store on the COW belongs to an origin of "
                    + h.originBytes() + " bytes, this origin has " + originBytes);
        }
        SharedFormat.Layout l = h.layout();
        int copy = h.slot();
        int nb = l.bitmapChunks();
        byte[][] chunks = new byte[nb][];
        long[] where = new long[nb];
        int batch = Math.max(1, (4 << 20) / cb);  // bitmap copies are contiguous: read 4 MiB at a time
        for (int i = 0; i < nb; i += batch) {
            int n = Math.min(batch, nb - i);
            byte[] b = readBytes(cow, l.bitmapChunk(copy, i) * cb, n * cb);
            for (int k = 0; k < n; k++) {
                chunks[i + k] = java.util.Arrays.copyOfRange(b, k * cb, (k + 1) * cb);
                where[i + k] = l.bitmapChunk(copy, i + k);
            }
        }
        BitmapAllocator alloc = BitmapAllocator.load(l, chunks, where);
        // the other copy is older than this one by at least the last commit: its next commit rewrites it whole
        alloc.markStale(1 - copy);
        if (alloc.freeCount() != h.freeChunks()) {
            throw new SharedFormatException(l.bitmapChunk(copy, 0), "bitmap", "copy " + copy + " has " + alloc.freeCount()
                    + " free chunks, the header (sequence " + h.sequence() + ") says " + h.freeChunks());
        }
        Tuning t = tuning.forChunk(cb);
        SharedStore s = new SharedStore(cow, l, h.chunkSectors(), originBytes, alloc, t.cacheBlocks());
        s.tree = SharedTree.open(s.cache, alloc, cb, t.fanout(), t.leafBytes(), t.maxSnapshots(),
                h.rootTreeChunk(), h.treeLevel(), h.snapmask(), h.deletingMask(), h.deleteResume());
        for (int i = 0; i < SharedFormat.MAX_SNAPSHOTS; i++) s.snaps[i] = h.snapshot(i);
        s.rbTarget = h.rollbackTarget();
        s.rbDelete = h.rollbackDelete();
        s.rbResume = h.rollbackResume();
        s.durableSeq = h.sequence();
        s.openSeq = h.sequence() + 1;
        s.durableFree = alloc.freeCount();
        return s;
    }

    /** Formats a blank COW (header sequence 0, an empty tree) and makes it durable. */
    static SharedStore format(BlockDevice cow, int chunkSectors, long originBytes, Tuning tuning) throws IOException {
        String err = SharedFormat.chunkSizeError(chunkSectors);
        if (err != null) throw new IllegalArgumentException("chunk size " + chunkSectors + " sectors: " + err);
        int cb = chunkSectors * SharedFormat.SECTOR;
        long nr = cow.size() / cb;
        long min = SharedFormat.minChunks(chunkSectors, 0);
        if (nr < min) throw new DeviceException(Errno.ENOSPC, "COW device of " + cow.size() + " bytes is too small: chunk size "
                + chunkSectors + " sectors needs at least " + min + " chunks (" + min * cb + " bytes)");
        SharedFormat.Layout l = SharedFormat.layout(nr, chunkSectors, 0);
        BitmapAllocator alloc = BitmapAllocator.format(l);
        Tuning t = tuning.forChunk(cb);
        SharedStore s = new SharedStore(cow, l, chunkSectors, originBytes, alloc, t.cacheBlocks());
        s.treeLock.lock();
        try {
            s.tree = SharedTree.format(s.cache, alloc, cb, t.fanout(), t.leafBytes(), t.maxSnapshots());
            s.durableSeq = -1;
            s.openSeq = 0;
            s.txnChanged = true;
        } finally {
            s.treeLock.unlock();
        }
        s.awaitDurable(0);
        return s;
    }

    // ---------------------------------------------------------------- accessors (tree lock held by the caller where noted)

    int chunkBytes() { return chunkBytes; }
    int chunkSectors() { return chunkSectors; }
    long nrChunks() { return layout.nrChunks(); }
    long firstDataChunk() { return layout.firstDataChunk(); }
    long originBytes() { return originBytes; }
    BlockDevice cow() { return cow; }
    long commits() { return commits.sum(); }
    /** Threads waiting for another thread's commit (tests). */
    int waitingForCommit() { commitLock.lock(); try { return waiting; } finally { commitLock.unlock(); } }

    /** The sequence of the last durable header. */
    long durableSequence() { commitLock.lock(); try { return durableSeq; } finally { commitLock.unlock(); } }
    int cachedBlocks() { treeLock.lock(); try { return cache.size(); } finally { treeLock.unlock(); } }

    /** Tree lock held. */
    SharedTree tree() { return tree; }
    /** Tree lock held. */
    BitmapAllocator alloc() { return alloc; }
    /** Tree lock held. */
    Snapshot snapshot(int id) { return snaps[id]; }
    /** Tree lock held. */
    void setSnapshot(int id, Snapshot s) { snaps[id] = s; txnChanged = true; }
    /** Tree lock held: the recorded rollback's target, -1 when none. */
    int rollbackTarget() { return rbTarget; }
    /** Tree lock held: whether the recorded rollback deletes its target when done. */
    boolean rollbackDelete() { return rbDelete; }
    /** Tree lock held: origin chunks below this are rolled back and flushed on the origin. */
    long rollbackResume() { return rbResume; }
    /** Tree lock held: records a rollback (target -1: none) for the open transaction. */
    void setRollback(int target, boolean delete, long resume) {
        rbTarget = target;
        rbDelete = target >= 0 && delete;
        rbResume = target >= 0 ? resume : 0;
        txnChanged = true;
    }
    /** Tree lock held: moves the recorded resume point forward (never back); the origin below it must be flushed. */
    void advanceRollback(long resume) {
        if (rbTarget >= 0 && resume > rbResume) {
            rbResume = resume;
            txnChanged = true;
        }
    }
    /** Tree lock held: the sequence the open transaction will commit as. */
    long openSeq() { return openSeq; }
    /** Tree lock held: the open transaction has changes. */
    void changed() { txnChanged = true; }
    boolean hasChanges() { treeLock.lock(); try { return txnChanged; } finally { treeLock.unlock(); } }
    /** Tree lock held: a chunk just handed out as a data chunk; a stale image of it must not be written or served. */
    void dataChunk(long c) { cache.forget(c); txnChanged = true; }

    long freeChunks() { treeLock.lock(); try { return alloc.freeCount(); } finally { treeLock.unlock(); } }
    Throwable failure() { return failure; }

    /** Optimistic attempts of a read-only operation before it reads its misses under the tree lock. */
    private static final int OPTIMISTIC_TRIES = 4;

    /**
     * Runs a read-only tree operation under the tree lock, turning a failed block read into an
     * IOException. A cache miss does not read under the lock: the operation is abandoned (it has
     * changed nothing), the block is read with the lock released (writers whose paths are cached
     * go on meanwhile), inserted as clean unless it was written or forgotten in the meantime, and
     * the operation runs again from the start. {@code op} must have no effect before its last
     * block read (lookups and leaf scans, whose visitor runs after the leaf is read).
     */
    <T> T read(java.util.function.Supplier<T> op) throws IOException {
        for (int attempt = 0; ; attempt++) {
            long miss;
            Object token;
            treeLock.lock();
            try {
                cache.optimistic = attempt < OPTIMISTIC_TRIES;
                try {
                    return op.get();
                } catch (BlockCache.Miss m) {
                    miss = m.chunk;
                    token = cache.startRead(miss);
                } finally {
                    cache.optimistic = false;
                }
            } catch (UncheckedIOException e) {
                throw e.getCause();
            } catch (SharedFormatException e) {
                throw new DeviceException(Errno.EIO, e.getMessage(), e);
            } finally {
                treeLock.unlock();
            }
            byte[] b;
            try {
                b = readBytes(cow, miss * chunkBytes, chunkBytes);
            } catch (IOException | RuntimeException e) {
                treeLock.lock();
                try { cache.endRead(miss, token, null); } finally { treeLock.unlock(); }
                throw e;
            }
            treeLock.lock();
            try {
                cache.endRead(miss, token, b);
            } finally {
                treeLock.unlock();
            }
        }
    }

    /** As {@link #read}, reading misses under the lock (for long walks that would restart at every miss). */
    private <T> T readLocked(java.util.function.Supplier<T> op) throws IOException {
        treeLock.lock();
        try {
            return op.get();
        } catch (UncheckedIOException e) {
            throw e.getCause();
        } catch (SharedFormatException e) {
            throw new DeviceException(Errno.EIO, e.getMessage(), e);
        } finally {
            treeLock.unlock();
        }
    }

    /**
     * Marks the store failed: what is in memory may differ from the disk and must never be
     * committed. Idempotent; the first cause is kept.
     */
    void fail(Throwable cause) {
        commitLock.lock();
        try {
            if (failure == null) failure = cause;
            commitChanged.signalAll();
        } finally {
            commitLock.unlock();
        }
    }

    private void checkFailed() throws IOException {
        Throwable f = failure;
        if (f != null) throw new DeviceException(Errno.EIO, "shared store failed, nothing more is committed: " + describe(f), f);
    }

    static String describe(Throwable t) { return t.getMessage() == null ? t.getClass().getSimpleName() : t.getMessage(); }

    // ---------------------------------------------------------------- data writes and group commit

    /** Tree lock held: {@code n} data chunks of transaction {@code seq} will be written; its commit waits for them. */
    void beginData(long seq, int n) {
        if (n == 0) return;
        commitLock.lock();
        try {
            pendingData.merge(seq, n, Integer::sum);
        } finally {
            commitLock.unlock();
        }
    }

    /** {@code n} data chunks of transaction {@code seq} are written (or failed, after {@link #fail}). */
    void endData(long seq, int n) {
        if (n == 0) return;
        commitLock.lock();
        try {
            int left = pendingData.merge(seq, -n, Integer::sum);
            if (left == 0) pendingData.remove(seq);
            commitChanged.signalAll();
        } finally {
            commitLock.unlock();
        }
    }

    /** Commits the open transaction if it has changes, and waits until it is durable. */
    void commitPending() throws IOException {
        long seq;
        treeLock.lock();
        try {
            if (!txnChanged) { seq = openSeq - 1; } else seq = openSeq;
        } finally {
            treeLock.unlock();
        }
        awaitDurable(seq);
    }

    /**
     * Returns once transaction {@code seq} (and every earlier one) is durable: either another
     * thread's commit covers it, or this thread commits the open transaction for everyone.
     */
    void awaitDurable(long seq) throws IOException {
        commitLock.lock();
        try {
            while (true) {
                checkFailed();
                if (durableSeq >= seq) return;
                if (!committing) { committing = true; break; }
                waiting++;
                try { commitChanged.awaitUninterruptibly(); } finally { waiting--; }
            }
        } finally {
            commitLock.unlock();
        }
        try {
            commitOpen();
        } catch (Throwable t) {
            fail(t);
            if (t instanceof IOException io) throw io;
            throw new DeviceException(Errno.EIO, "shared store commit failed: " + describe(t), t);
        } finally {
            commitLock.lock();
            try {
                committing = false;
                commitChanged.signalAll();
            } finally {
                commitLock.unlock();
            }
        }
        checkFailed();
    }

    /** Closes the open transaction and commits it. Only the one committer runs this. */
    private void commitOpen() throws IOException {
        long seq;
        BitmapAllocator.Commit bits;
        TreeMap<Long, byte[]> blocks;
        Header h;
        treeLock.lock();
        try {
            seq = openSeq;
            openSeq++;
            txnChanged = false;
            blocks = cache.closeTransaction(alloc);
            bits = alloc.prepareCommit((int) (seq & 1));
            long free = alloc.freeCount() + alloc.inFlightFrees();
            h = new Header(1, chunkSectors, tree.root(), tree.snapmask(), tree.level(), 0, seq, layout.nrChunks(), originBytes, free,
                    tree.deleting(), tree.deleteResume(), rbTarget, rbDelete, rbResume, snaps);
        } finally {
            treeLock.unlock();
        }
        commitLock.lock();
        try {
            while (pendingData.getOrDefault(seq, 0) > 0 && failure == null) commitChanged.awaitUninterruptibly();
        } finally {
            commitLock.unlock();
        }
        checkFailed();
        writeRuns(blocks);
        TreeMap<Long, byte[]> bitmap = new TreeMap<>();
        for (int i = 0; i < bits.indices().length; i++) bitmap.put(layout.bitmapChunk(bits.copy(), bits.indices()[i]), bits.images()[i]);
        writeRuns(bitmap);
        cow.flush();
        checkFailed();
        cow.write(h.slot() * (long) chunkBytes, ByteBuffer.wrap(SharedFormat.encodeHeader(h)));
        cow.flush();
        treeLock.lock();
        try {
            alloc.committed(bits);
            cache.committed(blocks);
        } finally {
            treeLock.unlock();
        }
        commits.increment();
        durableFree = h.freeChunks();
        commitLock.lock();
        try {
            durableSeq = seq;
            commitChanged.signalAll();
        } finally {
            commitLock.unlock();
        }
    }

    /** Writes chunk images, coalescing consecutive chunks into writes of up to 4 MiB. */
    private void writeRuns(TreeMap<Long, byte[]> images) throws IOException {
        var it = images.entrySet().iterator();
        Map.Entry<Long, byte[]> pending = it.hasNext() ? it.next() : null;
        int most = Math.max(1, (4 << 20) / chunkBytes);
        while (pending != null) {
            long first = pending.getKey();
            java.util.ArrayList<byte[]> run = new java.util.ArrayList<>();
            run.add(pending.getValue());
            pending = null;
            while (it.hasNext()) {
                Map.Entry<Long, byte[]> e = it.next();
                if (e.getKey() == first + run.size() && run.size() < most) run.add(e.getValue());
                else { pending = e; break; }
            }
            ByteBuffer b = ByteBuffer.allocate(run.size() * chunkBytes);
            for (byte[] r : run) b.put(r);
            b.flip();
            cow.write(first * chunkBytes, b);
        }
    }

    // ---------------------------------------------------------------- the block cache

    /**
     * Tree blocks by chunk: the blocks written in the open transaction and those of the commit
     * in flight are pinned (they exist nowhere else until written); the rest is an LRU of clean
     * blocks read from the COW, bounded to {@code capacity} blocks. Guarded by the tree lock.
     */
    private final class BlockCache implements ChunkStore {
        private final int capacity;
        private final LinkedHashMap<Long, byte[]> clean = new LinkedHashMap<>(256, 0.75f, true);
        private final HashMap<Long, byte[]> open = new HashMap<>();
        private final HashMap<Long, byte[]> inFlight = new HashMap<>();

        /** Set by {@link SharedStore#read} for one attempt: a miss throws {@link Miss} instead of reading. */
        boolean optimistic;
        /** Blocks being read outside the lock, each with its reader's token; a write or forget of the chunk drops it. */
        private final HashMap<Long, Object> reading = new HashMap<>();

        /** A block not in the cache, to be read outside the tree lock. No stack trace: it is control flow. */
        static final class Miss extends RuntimeException {
            final long chunk;
            Miss(long chunk) { super(null, null, false, false); this.chunk = chunk; }
        }

        BlockCache(int capacity) { this.capacity = capacity; }

        Object startRead(long chunk) {
            Object t = new Object();
            reading.put(chunk, t);
            return t;
        }

        /** The block read outside the lock is kept only when nothing wrote or forgot that chunk since {@link #startRead}. */
        void endRead(long chunk, Object token, byte[] b) {
            if (reading.get(chunk) != token) return;
            reading.remove(chunk);
            if (b == null || open.containsKey(chunk) || inFlight.containsKey(chunk) || clean.containsKey(chunk)) return;
            clean.put(chunk, b);
            trim();
        }

        int size() { return clean.size() + open.size() + inFlight.size(); }

        @Override
        public byte[] read(long chunk) {
            byte[] b = open.get(chunk);
            if (b == null) b = inFlight.get(chunk);
            if (b == null) b = clean.get(chunk);
            if (b != null) return b;
            if (chunk < layout.firstDataChunk() || chunk >= layout.nrChunks()) {
                throw new SharedFormatException(chunk, "tree", "block reference outside the data area [" + layout.firstDataChunk() + ", " + layout.nrChunks() + ")");
            }
            if (optimistic) throw new Miss(chunk);
            try {
                b = readBytes(cow, chunk * chunkBytes, chunkBytes);
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            clean.put(chunk, b);
            trim();
            return b;
        }

        @Override
        public void write(long chunk, byte[] data) {
            reading.remove(chunk);
            clean.remove(chunk);
            open.put(chunk, data);
            txnChanged = true;
        }

        void forget(long chunk) {
            reading.remove(chunk);
            clean.remove(chunk);
            open.remove(chunk);
        }

        private void trim() {
            var it = clean.entrySet().iterator();
            while (clean.size() > capacity && it.hasNext()) {
                it.next();
                it.remove();
            }
        }

        /** The open transaction's blocks, to be written by its commit; they stay readable here until it is durable. */
        TreeMap<Long, byte[]> closeTransaction(BitmapAllocator a) {
            TreeMap<Long, byte[]> out = new TreeMap<>();
            for (Map.Entry<Long, byte[]> e : open.entrySet()) {
                // a block freed again in its own transaction is referenced by nothing: not written
                if (a.isFresh(e.getKey())) out.put(e.getKey(), e.getValue());
            }
            open.clear();
            inFlight.putAll(out);
            return out;
        }

        void committed(TreeMap<Long, byte[]> blocks) {
            for (Map.Entry<Long, byte[]> e : blocks.entrySet()) {
                if (inFlight.remove(e.getKey()) != null && !open.containsKey(e.getKey())) clean.put(e.getKey(), e.getValue());
            }
            trim();
        }
    }

    /** For tests and check: every block the tree reaches and the problems found (tree lock taken). */
    SharedTree.CheckResult check() throws IOException {
        return readLocked(() -> tree.check());
    }

    /** Walks every leaf entry, a leaf per tree-lock hold. */
    void forEachEntry(Consumer<Leaf.Entry> visit) throws IOException {
        long key = 0;
        while (key >= 0) {
            final long k = key;
            key = read(() -> tree.scanLeaf(k, visit));
        }
    }
}
