package bow.restore;

import bow.blockdev.BlockDevice;
import bow.blockdev.DirectBuffers;
import bow.bowlog.LogBlock;
import bow.bowlog.LogCorruptException;
import bow.bowlog.LogEntry;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;

/**
 * Offline rollback of a dm-bow checkpoint: puts every backed-up block back, newest
 * entry first, until block 0 holds its original content again.
 *
 * <p>Nothing is written until {@link LogChain#verify} has accepted the whole chain.
 * Then the restore is resumable at any crash point and idempotent:
 * <ul>
 * <li>block 0 is first marked WOB ("restore in progress");
 * <li>entries are applied in batches in which no entry's source overlaps another
 *     batch entry's dest, so after a crash the batch's dests are intact and the
 *     whole batch can simply be applied again;
 * <li>after each batch: flush, then rewrite the header sector with count = entries
 *     still to apply, flush (on a commit thread, in batch order; after a failed
 *     commit no later header is written);
 * <li>the next batch may be written while that commit runs only if none of its sources
 *     is a dest of the batch being committed (nor in block 0): a crash then applies
 *     the uncommitted batch again from intact dests, then this one. Otherwise, and
 *     before any later batch, it waits for the commit;
 * <li>entry 0 (source = block 0) is applied by writing sectors 1..n of block 0,
 *     flush, then sector 0 (header) alone, flush. A 512-byte sector write is atomic,
 *     so a crash leaves either the old header (entry 0 is applied again) or the
 *     restored block. The restored previous log block is written already marked WOB,
 *     so a half-restored device never looks like a fresh checkpoint.
 * </ul>
 */
public final class Restore {
    /**
     * Bound on one batch so progress is persisted every so often; a batch is read whole into
     * memory while the previous one's flushes run, then written.
     */
    private static final long MAX_BATCH_BYTES = 32L << 20;
    private static final int MAX_BATCH_ENTRIES = 4096;
    private static final int COPY_CHUNK = 1 << 20;

    /**
     * @param sequences    log blocks restored
     * @param entries      entries applied
     * @param bytes        bytes copied back
     * @param resumed      the device was already marked WOB (an earlier restore was interrupted)
     * @param rolledForward the log was invalid and, as asked, the checkpoint was committed instead
     * @param validationError the validation message when rolled forward, else null
     */
    public record Result(long sequences, long entries, long bytes, boolean resumed,
                         boolean rolledForward, String validationError) {}

    private final BlockDevice dev;
    private final String name;
    private ProgressListener progress = ProgressListener.NONE;
    private boolean forceRollForward;
    private int maxBatchEntries = MAX_BATCH_ENTRIES;

    public Restore(BlockDevice dev, String name) {
        this.dev = dev;
        this.name = name;
    }

    public Restore progress(ProgressListener p) {
        this.progress = p;
        return this;
    }

    /** On a log that fails validation, commit (live block 0 back) instead of failing, as vold does. */
    public Restore forceRollForward(boolean force) {
        this.forceRollForward = force;
        return this;
    }

    /** Caps the entries per batch; tests use tiny batches so that progress is persisted mid-sequence. */
    Restore maxBatchEntries(int n) {
        this.maxBatchEntries = Math.max(1, n);
        return this;
    }

    /**
     * Validates, then restores.
     *
     * @throws NoCheckpointException there is no log in block 0 (exit 3)
     * @throws LogCorruptException   the chain failed validation; nothing was written (exit 4)
     */
    public Result run() throws IOException {
        LogChain.Summary summary;
        try {
            summary = LogChain.verify(dev, name, LogChain.Visitor.NONE, progress);
        } catch (LogCorruptException e) {
            if (!forceRollForward) throw e;
            OfflineCommit.rollForward(dev, name);
            return new Result(0, 0, 0, false, true, e.getMessage());
        }
        return apply(summary);
    }

    private Result apply(LogChain.Summary summary) throws IOException {
        int bs = summary.blockSize();
        LogBlock log = LogChain.readHead(dev, name);
        if (log.magic() != LogBlock.MAGIC_RESTORING) {
            log.setMagic(LogBlock.MAGIC_RESTORING);
            writeHeaderSector(log);
            dev.flush();
        }
        long done = 0, entries = 0, sequences = 0;
        ByteBuffer batchBuf = DirectBuffers.allocate(batchBufferBytes(bs, summary.bytes()));
        IntervalSet batchSources = new IntervalSet();
        IntervalSet batchDests = new IntervalSet();
        progress.progress("restore", 0, summary.bytes());
        ExecutorService committer = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, "restore-commit");
            t.setDaemon(true);
            return t;
        });
        // Commits run one after another on the commit thread. "pending" is the last batch's, "older"
        // the one before (at most two are in flight); "pendingDests" the last batch's dests.
        Future<?> pending = null, older = null;
        IntervalSet pendingDests = new IntervalSet();
        java.util.concurrent.atomic.AtomicBoolean commitFailed = new java.util.concurrent.atomic.AtomicBoolean();
        ReadAhead reads = new ReadAhead(dev, 2);
        try {
            while (true) {
                int i = (int) log.count() - 1;
                while (i >= 1) {
                    // One batch: entries i, i-1, ..., lo, newest first, whose data all fit in batchBuf
                    // (or a single entry that does not, copied in slices).
                    batchSources.clear();
                    batchDests.clear();
                    long batchBytes = 0;
                    int lo = i;
                    while (lo >= 1 && i - lo < maxBatchEntries) {
                        LogEntry e = log.entry(lo);
                        long s = e.sourceSector(), d = e.destSector(), n = e.sizeBytes() / 512;
                        if (lo != i && (batchBytes + e.sizeBytes() > batchBuf.capacity()
                                || batchDests.overlaps(s, s + n) || batchSources.overlaps(d, d + n))) break;
                        batchSources.add(s, s + n);
                        batchDests.add(d, d + n);
                        batchBytes += e.sizeBytes();
                        lo--;
                    }
                    lo++;
                    if (batchBytes <= batchBuf.capacity()) {
                        // Read the whole batch while the previous batches' commits run: their writes
                        // have all been issued, so these reads see them (they only lack durability).
                        batchBuf.clear();
                        List<Future<?>> reading = new ArrayList<>();
                        for (int k = i; k >= lo; k--) {
                            LogEntry e = log.entry(k);
                            for (int off = 0; off < e.sizeBytes(); off += COPY_CHUNK) {
                                int n = (int) Math.min(COPY_CHUNK, e.sizeBytes() - off);
                                reading.add(reads.read(e.destByte() + off, batchBuf.slice(batchBuf.position() + off, n)));
                            }
                            batchBuf.position(batchBuf.position() + (int) e.sizeBytes());
                        }
                        for (Future<?> f : reading) ReadAhead.await(f);
                        await(older);
                        older = null;
                        // This batch may be written while the last batch's commit still runs when none of its
                        // sources is a dest of that batch: a crash before that commit is durable applies the
                        // last batch again, which needs its dests intact, and then this one (whose own dests
                        // no write touches). Block 0 holds the header the commit writes: never under it.
                        if (pending != null && (batchSources.overlaps(pendingDests) || batchSources.overlaps(0, bs / 512))) {
                            await(pending);
                            pending = null;
                        }
                        batchBuf.flip();
                        for (int k = i; k >= lo; k--) {
                            LogEntry e = log.entry(k);
                            ByteBuffer part = batchBuf.slice(batchBuf.position(), (int) e.sizeBytes());
                            writeOut(e.sourceByte(), part);
                            batchBuf.position(batchBuf.position() + (int) e.sizeBytes());
                            done += e.sizeBytes();
                            entries++;
                            progress.progress("restore", done, summary.bytes());
                        }
                    } else {
                        await(older);
                        await(pending);
                        older = pending = null;
                        LogEntry e = log.entry(i);
                        copyRange(e.destByte(), e.sourceByte(), e.sizeBytes(), batchBuf);
                        done += e.sizeBytes();
                        entries++;
                        progress.progress("restore", done, summary.bytes());
                    }
                    // Progress: the batch's data durable, then the lower count, then that durable too.
                    // On the commit thread, so that the next batch is read meanwhile.
                    log.setCount(lo);
                    ByteBuffer header = ByteBuffer.wrap(java.util.Arrays.copyOf(log.bytes(), 512));
                    older = pending;
                    pending = committer.submit(() -> {
                        // After a failed commit no later header may be written: it would count that batch as done.
                        if (commitFailed.get()) throw new IOException("an earlier batch's commit failed");
                        try {
                            dev.flush();
                            dev.write(0, header);   // one atomic 512-byte write
                            dev.flush();
                        } catch (IOException | RuntimeException | Error e) {
                            commitFailed.set(true);
                            throw e;
                        }
                        return null;
                    });
                    IntervalSet t = pendingDests;
                    pendingDests = batchDests;
                    batchDests = t;
                    i = lo - 1;
                }
                await(older);
                await(pending);
                older = pending = null;
                // Entry 0: block 0 gets the previous log block (or, for sequence 0, its original content).
                LogEntry e0 = log.entry(0);
                byte[] restored = LogChain.read(dev, e0.destByte(), bs);
                boolean last = log.sequence() == 0;
                if (!last) new LogBlock(restored).setMagic(LogBlock.MAGIC_RESTORING);
                if (bs > 512) {
                    dev.write(512, ByteBuffer.wrap(restored, 512, bs - 512));
                    dev.flush();
                }
                dev.write(0, ByteBuffer.wrap(restored, 0, 512));
                dev.flush();
                done += bs;
                entries++;
                sequences++;
                progress.progress("restore", done, summary.bytes());
                if (last) break;
                log = new LogBlock(restored);
                if (log.blockSize() != bs) {
                    // verify() read this same block through its redirects; a difference means the device changed under us.
                    throw new LogCorruptException("log sequence " + log.sequence() + " changed during the restore");
                }
            }
        } finally {
            reads.close();
            // Never leave a flush running behind the caller (who closes the device next): wait for it.
            if (older != null) awaitQuietly(older);
            if (pending != null) {
                try {
                    awaitQuietly(pending);
                } finally {
                    committer.shutdown();
                }
            } else {
                committer.shutdown();
            }
        }
        return new Result(sequences, entries, done, summary.restoring(), false, null);
    }

    /** Batch buffer: up to 32 MiB, less in a small heap (direct memory is bounded by it) or for a small restore. */
    private static int batchBufferBytes(int bs, long restoreBytes) {
        long cap = Math.min(Math.min(MAX_BATCH_BYTES, Runtime.getRuntime().maxMemory() / 4), restoreBytes);
        cap -= cap % bs;
        return (int) Math.max(Math.max(bs, COPY_CHUNK - COPY_CHUNK % bs), cap);
    }

    /** Waits for a batch's commit and rethrows its failure. */
    private static void await(Future<?> f) throws IOException {
        ReadAhead.await(f);
    }

    private static void awaitQuietly(Future<?> f) {
        try {
            await(f);
        } catch (IOException | RuntimeException e) {
            // the caller is already failing with its own error
        }
    }

    /** Writes a buffer in slices, starting write-back of each: the batch ends with a flush. */
    private void writeOut(long to, ByteBuffer data) throws IOException {
        long off = 0;
        while (data.hasRemaining()) {
            int n = Math.min(data.remaining(), COPY_CHUNK);
            ByteBuffer part = data.slice(data.position(), n);
            dev.write(to + off, part);
            dev.startWriteback(to + off, n);
            data.position(data.position() + n);
            off += n;
        }
    }

    private void copyRange(long from, long to, long len, ByteBuffer buf) throws IOException {
        long off = 0;
        while (off < len) {
            int n = (int) Math.min(buf.capacity(), len - off);
            buf.clear().limit(n);
            dev.read(from + off, buf);
            writeOut(to + off, buf.flip());
            off += n;
        }
    }

    /** Rewrites only the header sector: one atomic 512-byte write. */
    private void writeHeaderSector(LogBlock log) throws IOException {
        dev.write(0, ByteBuffer.wrap(log.bytes(), 0, 512));
    }
}
