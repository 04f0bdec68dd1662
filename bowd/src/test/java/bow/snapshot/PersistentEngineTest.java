package bow.snapshot;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static org.junit.jupiter.api.Assertions.*;

/** Engine behaviour: usage figures, full COW, overflow, lifecycle, group commit, concurrency. */
class PersistentEngineTest {
    static final int CB = 512;

    static byte[] pattern(int n, int salt) {
        byte[] b = new byte[n];
        for (int i = 0; i < n; i++) b[i] = (byte) (i * 7 + salt + i / 512);
        return b;
    }

    static void write(BlockDevice d, long off, byte[] data) throws IOException {
        d.write(off, ByteBuffer.wrap(data));
    }

    static byte[] read(BlockDevice d, long off, int len) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(len);
        d.read(off, b);
        return b.array();
    }

    static PersistentEngine started(BlockDevice origin, BlockDevice cow, PersistentEngine.Options o) throws IOException {
        PersistentEngine e = PersistentEngine.open(origin, cow, o);
        e.startCheckpoint();
        return e;
    }

    @Test
    void exactUsageFigures() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(pattern(4 << 20, 1));
        MemoryBlockDevice cow = new MemoryBlockDevice(4 << 20); // 8192 sectors, 1024 chunks of 8 sectors
        PersistentEngine e = started(origin, cow, new PersistentEngine.Options(8, false, false));
        assertEquals("16/8192 16", e.status().details().get("status"), "header + area 0");
        BlockDevice o = e.exports().get("");
        write(o, 0, new byte[3 * 4096]);
        assertEquals("40/8192 16", e.status().details().get("status"));
        write(o, 4096, new byte[4096]); // same chunks again: no new exceptions
        write(o, 0, new byte[100]);
        assertEquals("40/8192 16", e.status().details().get("status"));
        write(o, 3 * 4096, new byte[253 * 4096]); // 256 exceptions fill area 0; area 1 (chunk 258) is skipped
        assertEquals("2072/8192 24", e.status().details().get("status"));
        assertEquals(256, e.status().logEntries());
        assertEquals(256L * 4096, e.status().backedUpBytes());
        assertEquals((8192 - 2072) * 512L, e.status().freeBytes());
        assertEquals("P 8", e.status().details().get("table"));
        e.rollback();
        assertEquals("None", e.status().details().get("status"));
    }

    @Test
    void fullCowInvalidatesTheSnapshot() throws Exception {
        byte[] init = pattern(200 * CB, 3);
        MemoryBlockDevice origin = new MemoryBlockDevice(init);
        MemoryBlockDevice cow = new MemoryBlockDevice((int) PersistentFormat.cowBytesFor(40, 1));
        PersistentEngine e = started(origin, cow, new PersistentEngine.Options(1, false, false));
        BlockDevice o = e.exports().get(""), s = e.exports().get("snapshot");
        for (int i = 0; i < 40; i++) write(o, (long) i * CB, new byte[CB]);
        assertEquals(PersistentEngine.State.CHECKPOINT, e.state());
        assertArrayEquals(init, read(s, 0, init.length));
        write(o, 100L * CB, new byte[CB]); // needs a 41st exception: the COW is full
        assertEquals(PersistentEngine.State.INVALID, e.state());
        assertArrayEquals(new byte[CB], read(o, 100L * CB, CB), "the origin write still happened");
        assertEquals(0, cow.snapshot()[4], "valid = 0 on disk");
        assertEquals(0x53, cow.snapshot()[0] & 0xff, "magic kept");
        DeviceException x = assertThrows(DeviceException.class, () -> read(s, 0, CB));
        assertEquals(Errno.EIO, x.errno());
        assertEquals("Invalid", e.status().details().get("status"));
        write(o, 150L * CB, pattern(CB, 9)); // later origin writes go straight through
        assertArrayEquals(pattern(CB, 9), read(origin, 150L * CB, CB));
        assertThrows(IllegalStateException.class, e::rollback);
        assertThrows(IllegalStateException.class, e::startCheckpoint);

        PersistentEngine again = PersistentEngine.open(origin, cow, new PersistentEngine.Options(1, false, false));
        assertEquals(PersistentEngine.State.INVALID, again.state());
        assertThrows(DeviceException.class, () -> read(again.exports().get("snapshot"), 0, CB));
        IOException off = assertThrows(IOException.class, () -> PersistentMerge.run(origin, cow, null));
        assertTrue(off.getMessage().contains("invalid"), off.getMessage());
        again.commit();
        assertEquals(PersistentEngine.State.NO_SNAPSHOT, again.state());
        again.startCheckpoint();
        assertEquals(PersistentEngine.State.CHECKPOINT, again.state());
    }

    @Test
    void overflowFailsSnapshotWritesButKeepsTheSnapshot() throws Exception {
        byte[] init = pattern(200 * CB, 5);
        MemoryBlockDevice origin = new MemoryBlockDevice(init);
        MemoryBlockDevice cow = new MemoryBlockDevice((int) PersistentFormat.cowBytesFor(10, 1));
        PersistentEngine e = started(origin, cow, new PersistentEngine.Options(1, true, true));
        BlockDevice o = e.exports().get(""), s = e.exports().get("snapshot");
        byte[] sm = init.clone();
        for (int i = 0; i < 10; i++) {
            byte[] d = pattern(CB, 100 + i);
            write(s, (long) i * CB, d);
            System.arraycopy(d, 0, sm, i * CB, CB);
        }
        DeviceException x = assertThrows(DeviceException.class, () -> write(s, 50L * CB, new byte[CB]));
        assertEquals(Errno.ENOSPC, x.errno());
        assertEquals(PersistentEngine.State.CHECKPOINT, e.state());
        assertEquals("Overflow", e.status().details().get("status"));
        assertEquals(1, cow.snapshot()[4], "still valid on disk");
        byte[] d = pattern(CB, 77); // a chunk that already has an exception can still be written
        write(s, 3L * CB, d);
        System.arraycopy(d, 0, sm, 3 * CB, CB);
        assertArrayEquals(sm, read(s, 0, sm.length));
        write(o, 5L * CB, new byte[CB]); // has an exception: no copy needed
        assertArrayEquals(sm, read(s, 0, sm.length));
        // the kernel's overflow option covers snapshot writes only: an origin write that needs a copy invalidates
        write(o, 60L * CB, new byte[CB]);
        assertEquals(PersistentEngine.State.INVALID, e.state());
        assertEquals(0, cow.snapshot()[4]);
    }

    @Test
    void withoutOverflowAFullSnapshotWriteInvalidates() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(pattern(100 * CB, 1));
        MemoryBlockDevice cow = new MemoryBlockDevice((int) PersistentFormat.cowBytesFor(2, 1));
        PersistentEngine e = started(origin, cow, new PersistentEngine.Options(1, false, true));
        BlockDevice s = e.exports().get("snapshot");
        write(s, 0, new byte[2 * CB]);
        DeviceException x = assertThrows(DeviceException.class, () -> write(s, 10L * CB, new byte[CB]));
        assertEquals(Errno.EIO, x.errno());
        assertEquals(PersistentEngine.State.INVALID, e.state());
    }

    @Test
    void lifecycleAndErrors() throws Exception {
        byte[] init = pattern(64 * CB, 2);
        MemoryBlockDevice origin = new MemoryBlockDevice(init);
        MemoryBlockDevice cow = new MemoryBlockDevice(64 * CB);
        assertThrows(IllegalArgumentException.class,
                () -> PersistentEngine.open(origin, cow, new PersistentEngine.Options(3, false, false)));
        PersistentEngine e = PersistentEngine.open(origin, cow, new PersistentEngine.Options(2, false, false));
        assertEquals("persistent", e.mode());
        assertEquals(PersistentEngine.State.NO_SNAPSHOT, e.state());
        assertThrows(IllegalStateException.class, e::commit);
        assertThrows(IllegalStateException.class, e::rollback);
        assertEquals(Errno.EIO, assertThrows(DeviceException.class, () -> read(e.exports().get("snapshot"), 0, CB)).errno());
        write(e.exports().get(""), 0, new byte[CB]); // plain pass-through
        assertEquals(0, cow.snapshot()[0], "no store written in NO_SNAPSHOT");
        e.startCheckpoint();
        assertThrows(IllegalStateException.class, e::startCheckpoint);
        assertEquals(Errno.EPERM, assertThrows(DeviceException.class,
                () -> write(e.exports().get("snapshot"), 0, new byte[CB])).errno(), "read-only snapshot");
        write(e.exports().get(""), 5 * CB, new byte[3 * CB]);
        e.commit();
        assertEquals(PersistentEngine.State.NO_SNAPSHOT, e.state());
        assertArrayEquals(new byte[1024], Arrays.copyOf(cow.snapshot(), 1024), "header chunk zeroed");
        // a too-small COW gives a clear error at checkpoint start
        PersistentEngine tiny = PersistentEngine.open(origin, new MemoryBlockDevice(CB), PersistentEngine.Options.defaults());
        IOException x = assertThrows(IOException.class, tiny::startCheckpoint);
        assertTrue(x.getMessage().contains("too small"), x.getMessage());
        assertEquals(PersistentEngine.State.NO_SNAPSHOT, tiny.state());
    }

    @Test
    void mergeCopiesRunsOfConsecutiveChunks() throws Exception {
        byte[] init = pattern(512 * 4096, 4);
        MemoryBlockDevice origin = new MemoryBlockDevice(init);
        MemoryBlockDevice cow = new MemoryBlockDevice(4 << 20);
        PersistentEngine e = started(origin, cow, new PersistentEngine.Options(8, false, false));
        write(e.exports().get(""), 10 * 4096, new byte[100 * 4096]); // 100 consecutive exceptions
        write(e.exports().get(""), 300 * 4096, new byte[4096]);
        List<long[]> progress = new ArrayList<>();
        e.rollback((d, t) -> progress.add(new long[] {d, t}));
        assertArrayEquals(init, origin.snapshot());
        // start, the lone newest chunk, then the 100-chunk run in one step
        assertEquals(3, progress.size());
        assertArrayEquals(new long[] {1, 101}, progress.get(1));
        assertArrayEquals(new long[] {101, 101}, progress.get(2));
        assertEquals("101/101 chunks", e.status().details().get("merge"));
    }

    /** A COW whose flush can be held shut, counting flushes and metadata-area writes. */
    static final class GatedCow implements BlockDevice {
        final MemoryBlockDevice inner;
        final int cb, epa;
        volatile CountDownLatch gate = new CountDownLatch(0);
        final AtomicInteger flushes = new AtomicInteger(), areaWrites = new AtomicInteger(), waiting = new AtomicInteger();
        GatedCow(int size, int chunkSectors) {
            inner = new MemoryBlockDevice(size);
            cb = chunkSectors * 512;
            epa = PersistentFormat.exceptionsPerArea(chunkSectors);
        }
        @Override public long size() { return inner.size(); }
        @Override public void read(long o, ByteBuffer d) throws IOException { inner.read(o, d); }
        @Override public void write(long o, ByteBuffer s) throws IOException {
            long c = o / cb;
            if (c > 0 && o % cb == 0 && PersistentFormat.isMetadataChunk(epa, c)) areaWrites.incrementAndGet();
            inner.write(o, s);
        }
        @Override public void discard(long o, long l) throws IOException { inner.discard(o, l); }
        @Override public void flush() throws IOException {
            waiting.incrementAndGet();
            try {
                if (!gate.await(30, TimeUnit.SECONDS)) throw new IOException("gate never opened");
            } catch (InterruptedException x) {
                throw new IOException(x);
            } finally {
                waiting.decrementAndGet();
            }
            flushes.incrementAndGet();
            inner.flush();
        }
    }

    @Test
    void concurrentWritersShareOneCommit() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(pattern(64 * CB, 6));
        GatedCow cow = new GatedCow(128 * CB, 1);
        PersistentEngine e = started(origin, cow, new PersistentEngine.Options(1, false, false));
        int flushesBefore = cow.flushes.get(), areasBefore = cow.areaWrites.get();
        cow.gate = new CountDownLatch(1);
        AtomicReference<Throwable> err = new AtomicReference<>();
        List<Thread> threads = new ArrayList<>();
        for (int i = 0; i < 8; i++) {
            int chunk = i;
            Thread t = new Thread(() -> {
                try {
                    write(e.exports().get(""), (long) chunk * CB, new byte[CB]);
                } catch (Throwable x) {
                    err.set(x);
                }
            });
            threads.add(t);
            t.start();
            if (i == 0) waitFor(() -> cow.waiting.get() == 1); // the first writer is the committer, stuck in flush
        }
        waitFor(() -> e.store().queuedCommits() == 7);        // the other seven queue behind it
        cow.gate.countDown();
        for (Thread t : threads) t.join();
        assertNull(err.get());
        assertEquals(8, e.store().exceptionCount());
        assertEquals(2, cow.areaWrites.get() - areasBefore, "two groups: the first writer alone, then seven together");
        // One flush per round: the first writer's copy; its area with the seven copies; their area.
        assertEquals(3, cow.flushes.get() - flushesBefore, "one flush per round, the seven copies made durable by the first writer's area flush");
    }

    static void waitFor(java.util.function.BooleanSupplier cond) throws InterruptedException {
        for (int i = 0; i < 3000 && !cond.getAsBoolean(); i++) Thread.sleep(10);
        assertTrue(cond.getAsBoolean(), "condition not reached");
    }

    @Test
    void twoWritersToOneChunkCopyItOnce() throws Exception {
        byte[] init = pattern(64 * CB, 8);
        MemoryBlockDevice origin = new MemoryBlockDevice(init);
        PersistentEngine e = started(origin, new MemoryBlockDevice(128 * CB), new PersistentEngine.Options(1, false, false));
        CountDownLatch go = new CountDownLatch(1);
        List<Thread> ts = new ArrayList<>();
        for (int i = 0; i < 6; i++) {
            int salt = i;
            Thread t = new Thread(() -> {
                try {
                    go.await();
                    write(e.exports().get(""), 9L * CB + 64 * salt, pattern(64, salt));
                } catch (Exception x) {
                    throw new RuntimeException(x);
                }
            });
            ts.add(t);
            t.start();
        }
        go.countDown();
        for (Thread t : ts) t.join();
        assertEquals(1, e.store().exceptionCount());
        assertEquals("3/128 2", e.status().details().get("status"), "one data chunk allocated");
        assertArrayEquals(Arrays.copyOfRange(init, 9 * CB, 10 * CB), read(e.exports().get("snapshot"), 9L * CB, CB));
    }

    /** Snapshot reads racing origin writes must always see the starting data. */
    @Test
    void snapshotReadsNeverSeeOriginWrites() throws Exception {
        int seeds = Math.max(1, TestProps.seeds() / 8);
        for (int seed = 0; seed < seeds; seed++) {
            byte[] init = pattern(256 * 4096, seed);
            MemoryBlockDevice origin = new MemoryBlockDevice(init);
            PersistentEngine e = started(origin, new MemoryBlockDevice((int) PersistentFormat.cowBytesFor(256, 8)),
                    new PersistentEngine.Options(8, false, false));
            AtomicReference<Throwable> err = new AtomicReference<>();
            List<Thread> ts = new ArrayList<>();
            for (int t = 0; t < 5; t++) {
                boolean writer = t < 3;
                long s = seed * 31L + t;
                Thread th = new Thread(() -> {
                    Random r = new Random(s);
                    try {
                        for (int k = 0; k < 150; k++) {
                            int off = 512 * r.nextInt(init.length / 512 - 64);
                            int len = 512 * (1 + r.nextInt(64));
                            if (writer) {
                                write(e.exports().get(""), off, new byte[len]);
                            } else {
                                byte[] got = read(e.exports().get("snapshot"), off, len);
                                if (!Arrays.equals(init, off, off + len, got, 0, len)) {
                                    throw new AssertionError("seed " + s + ": snapshot read at " + off + " saw new data");
                                }
                            }
                        }
                    } catch (Throwable x) {
                        err.compareAndSet(null, x);
                    }
                });
                ts.add(th);
                th.start();
            }
            for (Thread th : ts) th.join();
            if (err.get() != null) throw new AssertionError(err.get());
            assertArrayEquals(init, read(e.exports().get("snapshot"), 0, init.length));
        }
    }

    /** Mutating ops fail with EIO after a count, until healed; nothing is lost (no power cut). */
    static final class FlakyDevice implements BlockDevice {
        final MemoryBlockDevice inner;
        volatile long left = Long.MAX_VALUE;
        FlakyDevice(MemoryBlockDevice inner) { this.inner = inner; }
        synchronized void tick() throws DeviceException {
            if (left != Long.MAX_VALUE && left-- <= 0) { left = 0; throw new DeviceException(Errno.EIO, "injected failure"); }
        }
        @Override public long size() { return inner.size(); }
        @Override public void read(long o, ByteBuffer d) throws IOException { inner.read(o, d); }
        @Override public void write(long o, ByteBuffer s) throws IOException { tick(); inner.write(o, s); }
        @Override public void discard(long o, long l) throws IOException { tick(); inner.discard(o, l); }
        @Override public void flush() throws IOException { tick(); inner.flush(); }
    }

    @Test
    void failedOnlineMergeCanBeRetried() throws Exception {
        for (int failAt = 0; failAt < 40; failAt += 3) {
            byte[] init = pattern(128 * CB, failAt);
            MemoryBlockDevice origin = new MemoryBlockDevice(init);
            FlakyDevice cow = new FlakyDevice(new MemoryBlockDevice((int) PersistentFormat.cowBytesFor(128, 1)));
            PersistentEngine e = started(origin, cow, new PersistentEngine.Options(1, false, false));
            write(e.exports().get(""), 3 * CB, new byte[20 * CB]);
            write(e.exports().get(""), 70 * CB, new byte[5 * CB]);
            write(e.exports().get(""), 40 * CB, new byte[9 * CB]);
            cow.left = failAt;
            try {
                e.rollback();
            } catch (IOException x) {
                if (e.state() == PersistentEngine.State.CHECKPOINT) {
                    // the merge marker could not be written: the merge never started, the checkpoint is intact
                    assertEquals(0, failAt, "only the first write (the marker) may fail before the merge starts");
                    assertArrayEquals(init, read(e.exports().get("snapshot"), 0, init.length), "snapshot intact");
                } else {
                    assertEquals(PersistentEngine.State.MERGING, e.state());
                    assertEquals("Merge failed", e.status().details().get("status"), "fail at " + failAt);
                    assertArrayEquals(init, read(e.exports().get(""), 0, init.length), "merged view while the merge is stuck");
                }
                cow.left = Long.MAX_VALUE;
                e.rollback();
            }
            assertEquals(PersistentEngine.State.NO_SNAPSHOT, e.state(), "fail at " + failAt);
            assertArrayEquals(init, origin.snapshot(), "fail at " + failAt);
        }
    }

    /** I/O keeps going during an online merge; the result is the snapshot plus the writes made meanwhile. */
    @Test
    void ioDuringOnlineMerge() throws Exception {
        int seeds = Math.max(1, TestProps.seeds() / 8);
        for (int seed = 0; seed < seeds; seed++) {
            Random r = new Random(seed * 0x9E3779B97F4A7C15L);
            byte[] init = pattern(512 * CB * 4, seed);
            MemoryBlockDevice origin = new MemoryBlockDevice(init);
            PersistentEngine e = started(origin, new MemoryBlockDevice((int) PersistentFormat.cowBytesFor(512, 4)),
                    new PersistentEngine.Options(4, false, false));
            BlockDevice o = e.exports().get("");
            for (int k = 0; k < 40; k++) {
                int off = 512 * r.nextInt(init.length / 512 - 200);
                write(o, off, pattern(512 * (1 + r.nextInt(200)), 50 + k));
            }
            byte[] model = init.clone();
            AtomicReference<Throwable> err = new AtomicReference<>();
            CountDownLatch merging = new CountDownLatch(1);
            Thread merger = new Thread(() -> {
                try {
                    e.rollback((d, t) -> merging.countDown());
                } catch (Throwable x) {
                    err.set(x);
                }
            });
            merger.start();
            assertTrue(merging.await(30, TimeUnit.SECONDS));
            for (int k = 0; k < 300; k++) {
                int off = r.nextInt(init.length - 5000);
                int len = 1 + r.nextInt(5000);
                if (r.nextBoolean()) {
                    byte[] d = pattern(len, 200 + k);
                    write(o, off, d);
                    System.arraycopy(d, 0, model, off, len);
                } else {
                    assertArrayEquals(Arrays.copyOfRange(model, off, off + len), read(o, off, len), "seed " + seed + " op " + k);
                }
            }
            merger.join();
            assertNull(err.get());
            assertEquals(PersistentEngine.State.NO_SNAPSHOT, e.state());
            assertArrayEquals(model, origin.snapshot(), "seed " + seed);
        }
    }
}
