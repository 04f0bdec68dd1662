package bow.snapshot;

import bow.blockdev.BlockDevice;
import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.GateDevice;
import bow.blockdev.testing.PowerCutDevice;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The pipelined group commit of {@link PersistentStore#commit}: one flush per round, and
 * its invariant: an area on disk names only exceptions whose chunk copies a completed
 * flush made durable, and no writer returns before the area naming it was flushed.
 */
class PersistentPipelineTest {
    static final int S = 512;
    static final Duration T = Duration.ofSeconds(30);

    /** Records the order of COW requests: each copy's and area's write, each flush's start and end. */
    static final class Recorder implements BlockDevice {
        final BlockDevice inner;
        final int cb, epa;
        final AtomicLong clock = new AtomicLong();
        final Map<Long, Long> copyDone = new ConcurrentHashMap<>();   // data chunk -> when its last write returned
        final ConcurrentLinkedQueue<long[]> flushes = new ConcurrentLinkedQueue<>();   // {start, end}
        final ConcurrentLinkedQueue<AreaWrite> areas = new ConcurrentLinkedQueue<>();

        record AreaWrite(long start, long end, long[] news) {}

        Recorder(BlockDevice inner, int chunkSectors) {
            this.inner = inner;
            this.cb = chunkSectors * S;
            this.epa = PersistentFormat.exceptionsPerArea(chunkSectors);
        }

        @Override public long size() { return inner.size(); }
        @Override public void read(long o, ByteBuffer d) throws IOException { inner.read(o, d); }
        @Override public void discard(long o, long l) throws IOException { inner.discard(o, l); }

        @Override
        public void write(long o, ByteBuffer s) throws IOException {
            long chunk = o / cb;
            boolean area = chunk > 0 && PersistentFormat.isMetadataChunk(epa, chunk);
            long[] news = area ? namedChunks(s.duplicate()) : null;
            long start = clock.incrementAndGet();
            inner.write(o, s);
            long end = clock.incrementAndGet();
            if (area) areas.add(new AreaWrite(start, end, news));
            else if (chunk > 0) copyDone.put(chunk, end);
        }

        private long[] namedChunks(ByteBuffer b) {
            byte[] a = new byte[b.remaining()];
            b.get(a);
            long[] out = new long[epa];
            int n = 0;
            while (n < epa && PersistentFormat.newChunkAt(a, n) != 0) out[n] = PersistentFormat.newChunkAt(a, n++);
            return Arrays.copyOf(out, n);
        }

        @Override
        public void flush() throws IOException {
            long start = clock.incrementAndGet();
            inner.flush();
            flushes.add(new long[] {start, clock.incrementAndGet()});
        }

        /** True when a flush started after {@code after} and ended before {@code before}. */
        boolean flushBetween(long after, long before) {
            for (long[] f : flushes) if (f[0] > after && f[1] < before) return true;
            return false;
        }

        /** Every area write names only copies that a flush started after the copy's write returned made durable. */
        void checkAreasNameDurableCopies() {
            for (AreaWrite w : areas) {
                for (long c : w.news) {
                    Long done = copyDone.get(c);
                    assertNotNull(done, "area names chunk " + c + " that was never written");
                    assertTrue(flushBetween(done, w.start), "an area write at " + w.start + " names chunk " + c
                            + " whose copy (done at " + done + ") no completed flush covers");
                }
            }
        }

        /** The writer of chunk {@code c} returned at {@code returned}: a flush after an area write naming c came first. */
        void checkReturnAfterAreaFlush(long c, long returned) {
            for (AreaWrite w : areas) {
                if (w.end < returned && Arrays.stream(w.news).anyMatch(x -> x == c) && flushBetween(w.end, returned)) return;
            }
            fail("the writer of chunk " + c + " returned at " + returned + " before an area naming it was flushed");
        }
    }

    private static GateDevice.Request writer(PersistentStore s, BlockDevice cow, long old, long[] chunkOut) throws IOException {
        long c = s.prepare();
        chunkOut[0] = c;
        return GateDevice.start("writer-" + old, () -> {
            cow.write(c * s.chunkBytes(), ByteBuffer.wrap(new byte[s.chunkBytes()]).put(0, (byte) old));
            s.commit(new long[] {old}, new long[] {c}, 1);
        });
    }

    private static void waitFor(java.util.function.BooleanSupplier cond, String what) throws InterruptedException {
        for (int i = 0; i < 3000 && !cond.getAsBoolean(); i++) Thread.sleep(10);
        assertTrue(cond.getAsBoolean(), what);
    }

    /**
     * With the round's flush held at a gate: exceptions queued meanwhile are not in the next
     * area write (their copies are not known durable), only in the one after the next flush;
     * and no writer returns while the flush after its area write is held (B and C share a
     * round, so one of them is not the committer and is released by the other).
     */
    @Test
    void anExceptionQueuedDuringAFlushWaitsForTheNextFlush() throws Exception {
        Recorder rec = new Recorder(new MemoryBlockDevice(64 * S), 1);
        GateDevice cow = new GateDevice(rec);
        PersistentStore s = PersistentStore.create(cow, 1);
        long[] ca = new long[1], cb = new long[1], cc = new long[1];

        GateDevice.Gate copyFlush = cow.arm(GateDevice.Op.FLUSH, GateDevice.Match.any());
        GateDevice.Request a = writer(s, cow, 100, ca);
        assertTrue(copyFlush.awaitArrived(T), "writer A's round flushes (its copy)");
        int areasBefore = rec.areas.size();
        GateDevice.Request b = writer(s, cow, 200, cb);
        GateDevice.Request c = writer(s, cow, 300, cc);
        waitFor(() -> s.queuedCommits() == 2, "writers B and C queue during A's copy flush");

        GateDevice.Gate aAreaFlush = cow.arm(GateDevice.Op.FLUSH, GateDevice.Match.any());
        copyFlush.release();
        assertTrue(aAreaFlush.awaitArrived(T), "the next round flushes after its area write");
        assertEquals(areasBefore + 1, rec.areas.size(), "one area write in that round");
        assertArrayEquals(new long[] {ca[0]}, lastArea(rec), "the area names A only: B and C were queued while the flush ran");
        Thread.sleep(100);
        assertFalse(a.isDone(), "A returned before the flush after the area naming it");
        assertFalse(b.isDone() || c.isDone(), "B or C returned before any area named them");

        GateDevice.Gate bcAreaFlush = cow.arm(GateDevice.Op.FLUSH, GateDevice.Match.any());
        aAreaFlush.release();
        a.join(T);
        assertTrue(bcAreaFlush.awaitArrived(T), "B and C's round: their area write, then a flush");
        long[] named = lastArea(rec);
        assertEquals(3, named.length, "B and C are in the area written after the flush that made their copies durable");
        assertEquals(ca[0], named[0]);
        assertEquals(java.util.Set.of(cb[0], cc[0]), java.util.Set.of(named[1], named[2]));
        Thread.sleep(100);
        assertFalse(b.isDone(), "B returned before the flush after its area write");
        assertFalse(c.isDone(), "C returned before the flush after its area write");
        bcAreaFlush.release();
        b.join(T);
        c.join(T);

        assertEquals(3, s.commitFlushes(), "three rounds, one flush each");
        rec.checkAreasNameDurableCopies();
        PersistentStore again = PersistentStore.load(new MemoryBlockDevice(((MemoryBlockDevice) rec.inner).snapshot()), 0, null);
        assertEquals(ca[0], again.lookup(100));
        assertEquals(cb[0], again.lookup(200));
        assertEquals(cc[0], again.lookup(300));
    }

    /**
     * The committer leaves once its own batch is committed and wakes one waiting writer to take
     * over (the end of a round wakes only the writers it released). Here the only writer left
     * queued its copy during the committer's last flush, so it is in neither round the
     * committer ran: it must still be committed, by itself, and return.
     */
    @Test
    void aWriterQueuedDuringTheLeavingCommittersLastFlushTakesOver() throws Exception {
        Recorder rec = new Recorder(new MemoryBlockDevice(64 * S), 1);
        GateDevice cow = new GateDevice(rec);
        PersistentStore s = PersistentStore.create(cow, 1);
        long[] ca = new long[1], cb = new long[1];

        GateDevice.Gate aCopyFlush = cow.arm(GateDevice.Op.FLUSH, GateDevice.Match.any());
        GateDevice.Request a = writer(s, cow, 100, ca);
        assertTrue(aCopyFlush.awaitArrived(T), "A's first round: the flush that makes its copy durable");
        GateDevice.Gate aAreaFlush = cow.arm(GateDevice.Op.FLUSH, GateDevice.Match.any());
        aCopyFlush.release();
        assertTrue(aAreaFlush.awaitArrived(T), "A's second round: its area write, then this flush");
        GateDevice.Request b = writer(s, cow, 200, cb);
        waitFor(() -> s.queuedCommits() == 1, "B queues during A's last flush");
        aAreaFlush.release();
        a.join(T);
        b.join(T);   // hangs if nobody takes over from A
        assertEquals(4, s.commitFlushes(), "two rounds for A, then two that B ran itself");
        rec.checkAreasNameDurableCopies();
        PersistentStore again = PersistentStore.load(new MemoryBlockDevice(((MemoryBlockDevice) rec.inner).snapshot()), 0, null);
        assertEquals(ca[0], again.lookup(100));
        assertEquals(cb[0], again.lookup(200));
    }

    private static long[] lastArea(Recorder rec) {
        return rec.areas.stream().reduce((x, y) -> y).orElseThrow().news();
    }

    /**
     * Many writers, areas filling up (one-sector chunks: 32 exceptions per area): every area
     * write names only durable copies, every writer returns after a flush that followed an
     * area naming it, and under load the rounds share flushes.
     */
    @Test
    void concurrentWritersKeepTheInvariant() throws Exception {
        int seeds = Math.max(1, TestProps.seeds() / 4);
        for (int seed = 0; seed < seeds; seed++) {
            Random r = new Random(seed);
            int threads = 2 + r.nextInt(7), perThread = 10 + r.nextInt(30);
            int chunkSectors = new int[] {1, 2, 8}[r.nextInt(3)];
            int total = threads * perThread;
            long cowBytes = PersistentFormat.cowBytesFor(total, chunkSectors);
            Recorder rec = new Recorder(new PersistentConcurrencyTest.Jitter(new MemoryBlockDevice((int) cowBytes)), chunkSectors);
            PersistentStore s = PersistentStore.create(rec, chunkSectors);
            long flushesAtStart = s.commitFlushes();
            ConcurrentLinkedQueue<long[]> returns = new ConcurrentLinkedQueue<>();   // {chunk, when}
            List<GateDevice.Request> rs = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int id = t;
                rs.add(GateDevice.start("w" + t, () -> {
                    for (int k = 0; k < perThread; k++) {
                        long c = s.prepare();
                        rec.write(c * s.chunkBytes(), ByteBuffer.wrap(new byte[s.chunkBytes()]));
                        s.commit(new long[] {id * 1000L + k}, new long[] {c}, 1);
                        returns.add(new long[] {c, rec.clock.incrementAndGet()});
                    }
                }));
            }
            for (GateDevice.Request q : rs) q.join(T);
            rec.checkAreasNameDurableCopies();
            for (long[] x : returns) rec.checkReturnAfterAreaFlush(x[0], x[1]);
            long rounds = s.commitFlushes() - flushesAtStart;
            assertTrue(rounds <= 2L * total, "seed " + seed + ": " + rounds + " round flushes for " + total + " commits");
            PersistentStore again = PersistentStore.load(rec, 0, null);
            assertEquals(total, again.exceptionCount(), "seed " + seed + ": every commit is on disk");
        }
    }

    /**
     * Power cut at a random flush or request while several writers commit: after reopening,
     * every acknowledged exception is there with its chunk's data, and every exception the
     * metadata names (acknowledged or not) has its data: no area names a lost copy.
     */
    @Test
    void powerCutsWithConcurrentWritersNeverNameALostCopy() throws Exception {
        int seeds = TestProps.crashes() * 2;
        for (int seed = 0; seed < seeds; seed++) {
            Random r = new Random(seed * 7919L + 1);
            int threads = 2 + r.nextInt(6), perThread = 5 + r.nextInt(25);
            int chunkSectors = new int[] {1, 2, 8}[r.nextInt(3)];
            int cb = chunkSectors * S;
            PowerCutDevice dev = new PowerCutDevice((int) PersistentFormat.cowBytesFor(threads * perThread, chunkSectors));
            PersistentStore s = PersistentStore.create(dev, chunkSectors);
            if (r.nextBoolean()) dev.armCrashAtFlush(dev.flushCount() + r.nextInt(2 * threads * perThread / 3 + 1), r);
            else dev.armCrashAfterOps(r.nextInt(3 * threads * perThread + 1), r);
            Map<Long, byte[]> data = new ConcurrentHashMap<>();       // data chunk -> its bytes
            Map<Long, Long> acked = new ConcurrentHashMap<>();        // old -> data chunk
            List<GateDevice.Request> rs = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int id = t;
                long salt = r.nextLong();
                rs.add(GateDevice.start("w" + t, () -> {
                    Random wr = new Random(salt);
                    try {
                        for (int k = 0; k < perThread; k++) {
                            long old = id * 1000L + k, c = s.prepare();
                            byte[] b = new byte[cb];
                            wr.nextBytes(b);
                            data.put(c, b);
                            dev.write(c * cb, ByteBuffer.wrap(b));
                            s.commit(new long[] {old}, new long[] {c}, 1);
                            acked.put(old, c);
                        }
                    } catch (IOException e) {
                        // the power went
                    }
                }));
            }
            for (GateDevice.Request q : rs) q.join(T);
            if (!dev.isDead()) dev.crash(r);
            byte[] img = dev.durableImage();
            PersistentStore again = PersistentStore.load(new MemoryBlockDevice(img), 0, null);
            for (Map.Entry<Long, Long> e : acked.entrySet()) {
                assertEquals(e.getValue(), again.lookup(e.getKey()), "seed " + seed + ": acknowledged exception " + e.getKey() + " lost");
            }
            for (int t = 0; t < threads; t++) {
                for (int k = 0; k < perThread; k++) {
                    long c = again.lookup(t * 1000L + k);
                    if (c == 0) continue;
                    byte[] want = data.get(c);
                    assertNotNull(want, "seed " + seed + ": metadata names chunk " + c + " that no writer wrote");
                    assertArrayEquals(want, Arrays.copyOfRange(img, (int) (c * cb), (int) (c * cb) + cb),
                            "seed " + seed + ": the metadata names chunk " + c + " (old " + (t * 1000L + k) + ") whose copy is not on disk");
                }
            }
        }
    }
}
