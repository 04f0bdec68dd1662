package bow.snapshot;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.DirectBuffers;
import bow.blockdev.Errno;
import bow.snapshot.PersistentStore.MergeRun;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Rollback by merging the COW back into the origin, like dm-snapshot's snapshot-merge:
 * newest exceptions first, in runs of consecutive chunks; each run is copied COW → origin,
 * the origin is flushed, and only then are the run's entries zeroed in the metadata area
 * (written with flush + FUA). A crash at any point leaves a COW whose remaining exceptions
 * still hold the snapshot's data for chunks the origin may not have yet, so running the
 * merge again finishes the job. When nothing is left the header is zeroed: no snapshot.
 */
public final class PersistentMerge {
    /** Largest run copied with one lock and one read/write pair. */
    static final int MAX_RUN_BYTES = 4 << 20;
    /**
     * Offline, nothing waits on a run's lock: runs of up to a whole metadata area (16 MiB with
     * 16 KiB chunks), so that a merge makes three flushes per area instead of per 4 MiB.
     */
    static final int MAX_OFFLINE_RUN_BYTES = 32 << 20;

    /** Progress of a merge: chunks merged so far out of the chunks to merge when it started. */
    @FunctionalInterface
    public interface Progress {
        void update(long chunksDone, long chunksTotal);
    }

    /** Lets the online engine keep I/O off the chunks of a run while it is copied. */
    interface RunLocker {
        AutoCloseable lock(long firstOldChunk, int count);
    }

    /** What an offline merge found and did. */
    public record Result(boolean snapshotFound, long chunksMerged) {}

    private PersistentMerge() {}

    /**
     * Offline rollback (no daemon): merges the snapshot on {@code cow} into {@code origin}
     * and removes it. A COW with no snapshot (zero magic) is left alone: nothing to do.
     * An invalidated snapshot cannot be merged: its data is incomplete. A COW whose snapshot was
     * not taken of {@code origin} (see {@link OriginCheck}) is refused with
     * {@link WrongOriginException}, both devices untouched.
     */
    public static Result run(BlockDevice origin, BlockDevice cow, Progress progress) throws IOException {
        PersistentStore store = PersistentStore.load(cow, 0, null);
        if (store == null) return new Result(false, 0);
        if (!store.isValid()) {
            throw new DeviceException(Errno.EIO, "the snapshot on the COW device is invalid (it overflowed or failed); "
                    + "it cannot be merged back and the origin was not touched");
        }
        OriginCheck.verify(origin, store);   // before the first byte is changed on either device
        long n = mergeAll(origin, store, progress, null);
        return new Result(true, n);
    }

    static long mergeAll(BlockDevice origin, PersistentStore store, Progress progress, RunLocker locker) throws IOException {
        long total = store.exceptionCount();
        long done = 0;
        if (progress != null) progress.update(0, total);
        if (!store.isMerging()) store.setMergeMarker(true);
        int chunkBytes = store.chunkBytes();
        int maxRun = Math.max(1, (locker == null ? MAX_OFFLINE_RUN_BYTES : MAX_RUN_BYTES) / chunkBytes);
        // One page-aligned direct buffer for every run: no zeroed heap array per run, and no copy
        // through the JDK's (unaligned) temporary native buffer.
        ByteBuffer buf = DirectBuffers.allocate(Math.max(chunkBytes, MAX_RUN_BYTES - MAX_RUN_BYTES % chunkBytes));
        MergeRun run;
        while ((run = store.prepareMerge()) != null) {
            int k = Math.min(run.count(), maxRun);
            long firstOld = run.lastOld() - k + 1;
            long firstNew = run.lastNew() - k + 1;
            if (locker == null) {
                // Offline: the area's runs one after another, up to maxRun chunks, then one flush
                // and one commit for all of them (an exception leaves the COW only once its data
                // is durable on the origin, whichever run it was copied in).
                copyRun(origin, store, firstOld, firstNew, k, buf);
                int copied = k;
                MergeRun next;
                while (copied < maxRun && k == run.count() && (next = store.nextMergeRunInArea(copied)) != null) {
                    run = next;
                    k = Math.min(run.count(), maxRun - copied);
                    copyRun(origin, store, run.lastOld() - k + 1, run.lastNew() - k + 1, k, buf);
                    copied += k;
                }
                origin.flush();
                store.commitMerge(copied);
                k = copied;
            } else {
                try (AutoCloseable ignored = locker.lock(firstOld, k)) {
                    copyRun(origin, store, firstOld, firstNew, k, buf);
                    origin.flush();
                    store.commitMerge(k);
                } catch (IOException | RuntimeException e) {
                    throw e;
                } catch (Exception e) {
                    throw new IOException(e);
                }
            }
            done += k;
            if (progress != null) progress.update(done, Math.max(total, done));
        }
        store.drop();
        return done;
    }

    private static void copyRun(BlockDevice origin, PersistentStore store, long firstOld, long firstNew, int k,
                                ByteBuffer buf) throws IOException {
        long chunkBytes = store.chunkBytes();
        long dst = firstOld * chunkBytes;
        if (firstOld < 0 || dst >= origin.size()) {
            throw new DeviceException(Errno.EIO, "COW maps origin chunk " + firstOld + " which is past the end of a "
                    + origin.size() + "-byte origin: wrong origin or corrupt metadata");
        }
        int len = (int) Math.min((long) k * chunkBytes, origin.size() - dst);
        for (int off = 0; off < len; off += buf.capacity()) {
            int n = Math.min(buf.capacity(), len - off);
            buf.clear().limit(n);
            store.cow().read(firstNew * chunkBytes + off, buf);
            buf.flip();
            origin.write(dst + off, buf);
            origin.startWriteback(dst + off, n);   // the flush that follows then waits for less
        }
    }
}
