package bow.bowmode;

import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.JitterDevice;
import bow.blockdev.testing.PowerCutDevice;
import bow.bowlog.LogBlock;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.concurrent.ConcurrentLinkedQueue;
import java.util.concurrent.atomic.AtomicLong;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Several writer threads, a discarder and a flusher at once, over overlapping
 * regions (block 0 and the live block 0's home included), on a jittery device,
 * with power cuts at random operations and at flush boundaries, and more cuts
 * during the rollback. Checked every time:
 * <ul>
 *   <li>the rollback gives back the starting image outside the ranges free at
 *       start;</li>
 *   <li>without a cut, the live device holds what the model says, and a commit
 *       keeps it;</li>
 *   <li>after a cut, every write acknowledged before an acknowledged flush began
 *       (and not overlapped by a later or concurrent request) reads back after
 *       {@link BowEngine#resume}.</li>
 * </ul>
 * Interleavings are not reproducible from a seed (threads), but the workload and
 * the cut point are: a failure prints the seed. {@code -Dbow.test.seeds=N} runs N
 * seeds (CI default 300).
 */
class BowEngineConcurrentTest {
    static final int SEEDS = Integer.getInteger("bow.test.seeds", 300);
    static final long FIRST_SEED = Long.getLong("bow.test.seed", 1);

    /** One request: a write (data != null) or a discard, with logical-clock stamps. */
    static final class Op {
        final long offset, length;
        final byte[] data;
        final long start;
        volatile long ack = Long.MAX_VALUE;   // MAX: not acknowledged (failed or cut off)

        Op(long offset, long length, byte[] data, long start) {
            this.offset = offset;
            this.length = length;
            this.data = data;
            this.start = start;
        }
    }

    record Flush(long start, long ack) {}

    static final class Run {
        final long seed;
        final int bs, size;
        final byte[] start;
        final PowerCutDevice disk;
        final BowEngine eng;
        final List<long[]> free;
        final AtomicLong clock = new AtomicLong();
        final ConcurrentLinkedQueue<Op> ops = new ConcurrentLinkedQueue<>();
        final ConcurrentLinkedQueue<Flush> flushes = new ConcurrentLinkedQueue<>();
        final ConcurrentLinkedQueue<Throwable> unexpected = new ConcurrentLinkedQueue<>();

        /** Set when a fault layer sits under the engine: EIO is then an expected answer. */
        final bow.blockdev.testing.FaultDevice faults;

        Run(long seed) throws IOException { this(seed, false); }

        Run(long seed, boolean withFaults) throws IOException {
            this.seed = seed;
            Random r = new Random(seed);
            bs = r.nextBoolean() ? 512 : 4096;
            int blocks = 48 + r.nextInt(160);
            size = blocks * bs;
            start = new byte[size];
            r.nextBytes(start);
            disk = new PowerCutDevice(start);
            // Half the runs: flushes take time and overlap, as the log committer's own do on a disk.
            Random lat = new Random(seed * 31);
            if (lat.nextBoolean()) disk.setFlushLatency(200, lat);
            faults = withFaults ? new bow.blockdev.testing.FaultDevice(new JitterDevice(disk, 200)) : null;
            eng = BowEngine.open(faults != null ? faults : new JitterDevice(disk, 200), "concurrent", bs);
            for (int i = 0; i < 20; i++) {
                long off = 512L * r.nextInt(size / 512);
                eng.discard(off, Math.min(size - off, 512L * (1 + r.nextInt(120))));
            }
            eng.discard((long) (blocks / 2) * bs, (long) (blocks / 4) * bs);
            eng.flush();
            free = eng.freeRangesAtStart();
            eng.startCheckpoint();
        }

        boolean dead() { return disk.isDead(); }

        /** A failure is expected only from the power cut, or ENOSPC (free space ran out). */
        void failed(Throwable t) {
            if (dead()) return;
            if (t instanceof DeviceException d && d.errno() == Errno.ENOSPC) return;
            if (faults != null && t instanceof DeviceException d && d.errno() == Errno.EIO) return;
            if (faults != null && t instanceof OutOfMemoryError && String.valueOf(t.getMessage()).startsWith("injected")) return;
            unexpected.add(t);
        }

        void writer(Random r, int count) {
            for (int i = 0; i < count && !dead(); i++) {
                long off;
                int len;
                int kind = r.nextInt(10);
                if (kind == 0) {                       // into block 0
                    off = 512L * r.nextInt(bs / 512);
                    len = 512 * (1 + r.nextInt(2 * bs / 512));
                } else if (kind == 1) {                // the block that holds the live block 0
                    String s0 = eng.status().details().get("sector0");
                    off = s0 == null ? 0 : Long.parseLong(s0) * 512;
                    len = bs;
                } else if (kind < 6) {                 // a hot area all threads share
                    off = 512L * r.nextInt(size / 512 / 4);
                    len = 512 * (1 + r.nextInt(3 * bs / 512));
                } else {
                    off = 512L * r.nextInt(size / 512);
                    len = 512 * (1 + r.nextInt(3 * bs / 512));
                }
                len = (int) Math.min(len, size - off);
                byte[] data = new byte[len];
                r.nextBytes(data);
                Op op = new Op(off, len, data, clock.incrementAndGet());
                ops.add(op);
                lastWrite = op;
                try {
                    eng.write(off, ByteBuffer.wrap(data));
                    op.ack = clock.incrementAndGet();
                } catch (Throwable t) {
                    failed(t);
                    if (dead()) return;
                }
            }
        }

        volatile Op lastWrite;

        void discarder(Random r, int count) {
            for (int i = 0; i < count && !dead(); i++) {
                long off = 512L * r.nextInt(size / 512);
                long len = Math.min(size - off, 512L * (1 + r.nextInt(4 * bs / 512)));
                Op target = lastWrite;
                if (target != null && r.nextInt(3) > 0) {
                    // Mostly where a write is in flight right now: the race that once cost a rollback.
                    off = target.offset;
                    len = target.length;
                }
                Op op = new Op(off, len, null, clock.incrementAndGet());
                ops.add(op);
                try {
                    eng.discard(off, len);
                    op.ack = clock.incrementAndGet();
                } catch (Throwable t) {
                    failed(t);
                    return;
                }
            }
        }

        void flusher(Random r, int count) {
            for (int i = 0; i < count && !dead(); i++) {
                Thread.yield();
                long s = clock.incrementAndGet();
                try {
                    eng.flush();
                    flushes.add(new Flush(s, clock.incrementAndGet()));
                } catch (Throwable t) {
                    failed(t);
                    return;
                }
            }
        }

        void workload() throws Exception {
            Random master = new Random(seed * 7919);
            List<Thread> threads = new ArrayList<>();
            for (int w = 0; w < 3; w++) {
                Random r = new Random(master.nextLong());
                threads.add(new Thread(() -> writer(r, 60), "writer-" + w));
            }
            Random rd = new Random(master.nextLong());
            threads.add(new Thread(() -> discarder(rd, 60), "discarder"));
            Random rf = new Random(master.nextLong());
            threads.add(new Thread(() -> flusher(rf, 15), "flusher"));
            for (Thread t : threads) t.start();
            for (Thread t : threads) {
                t.join(60_000);
                assertFalse(t.isAlive(), "seed " + seed + ": " + t.getName() + " hangs");
            }
            if (!dead()) {
                try {
                    eng.flush();
                    long s = clock.incrementAndGet();
                    flushes.add(new Flush(s, clock.incrementAndGet()));
                } catch (IOException e) {
                    failed(e);
                }
            }
            assertTrue(unexpected.isEmpty(), () -> "seed " + seed + ": unexpected failure: " + unexpected.peek());
        }

        /**
         * What each sector must read as, where the history pins it down; null where
         * it does not. {@code durableOnly}: only writes acknowledged before an
         * acknowledged flush began count.
         */
        byte[][] expected(boolean durableOnly) {
            int sectors = size / 512;
            byte[][] out = new byte[sectors][];
            long lastFlushStart = -1;
            for (Flush f : flushes) lastFlushStart = Math.max(lastFlushStart, f.start());
            List<Op> all = new ArrayList<>(ops);
            for (int x = 0; x < sectors; x++) {
                long lo = x * 512L, hi = lo + 512;
                Op best = null;
                for (Op op : all) {
                    if (op.data == null || op.ack == Long.MAX_VALUE || op.offset >= hi || op.offset + op.length <= lo) continue;
                    if (durableOnly && op.ack > lastFlushStart) continue;
                    if (best == null || op.ack > best.ack) best = op;
                }
                if (best == null) continue;
                boolean pinned = true;
                for (Op op : all) {
                    if (op == best || op.offset >= hi || op.offset + op.length <= lo) continue;
                    if (op.ack == Long.MAX_VALUE || op.ack > best.start) { pinned = false; break; }
                }
                if (pinned) out[x] = Arrays.copyOfRange(best.data, (int) (lo - best.offset), (int) (lo - best.offset) + 512);
            }
            return out;
        }

        void assertMatches(byte[][] expect, MemoryBlockDeviceView view, String what) throws IOException {
            int checked = 0;
            for (int x = 0; x < expect.length; x++) {
                if (expect[x] == null) continue;
                byte[] got = new byte[512];
                view.read(x * 512L, got);
                int sector = x;
                assertArrayEquals(expect[x], got, () -> "seed " + seed + ": " + what + ": sector " + sector);
                checked++;
            }
            checkedSectors.addAndGet(checked);
        }
    }

    @FunctionalInterface
    interface MemoryBlockDeviceView { void read(long offset, byte[] into) throws IOException; }

    static final AtomicLong checkedSectors = new AtomicLong();
    static final AtomicLong cutsMidWorkload = new AtomicLong();
    static final AtomicLong resumesChecked = new AtomicLong();

    static void report(String what) {
        System.out.printf("BowEngineConcurrentTest %s: %d sectors checked so far, %d cuts mid-workload, %d resumes checked%n",
                what, checkedSectors.get(), cutsMidWorkload.get(), resumesChecked.get());
    }

    static void assertRollbackExact(Run run, String when) throws Exception {
        BowTestSupport.assertRollbackWithCutsExact(run.disk, run.start, run.free, run.seed, when);
    }

    @Test
    void concurrentRequestsWithoutACutKeepTheModelAndRollBackExactly() throws Exception {
        for (long seed = FIRST_SEED; seed < FIRST_SEED + Math.max(1, SEEDS / 3); seed++) {
            Run run = new Run(seed);
            run.workload();
            assertFalse(run.dead());
            run.assertMatches(run.expected(false), (off, into) -> run.eng.read(off, ByteBuffer.wrap(into)), "live read");
            assertRollbackExact(run, "no cut");
            // A commit keeps what the client sees.
            byte[] live = new byte[run.size];
            run.eng.read(0, ByteBuffer.wrap(live));
            run.eng.commit();
            MemoryBlockDevice committed = new MemoryBlockDevice(run.disk.durableImage());
            byte[] after = committed.snapshot();
            assertArrayEquals(live, after, "seed " + seed + ": the committed device is what the client saw");
        }
        assertTrue(checkedSectors.get() > 0, "the model pinned some sectors down");
        report("no cut");
    }

    @Test
    void powerCutAtARandomOperation() throws Exception {
        for (long seed = FIRST_SEED + 100_000; seed < FIRST_SEED + 100_000 + Math.max(1, SEEDS / 3); seed++) {
            Run run = new Run(seed);
            run.disk.armCrashAfterOps(new Random(seed * 13).nextInt(300), new Random(seed * 17));
            run.workload();
            checkAfterCut(run, "cut at a random operation");
        }
        report("random-operation cuts");
    }

    @Test
    void powerCutAtAFlushBoundary() throws Exception {
        for (long seed = FIRST_SEED + 200_000; seed < FIRST_SEED + 200_000 + Math.max(1, SEEDS / 3); seed++) {
            Run run = new Run(seed);
            run.disk.armCrashAtFlush(run.disk.flushCount() + new Random(seed * 13).nextInt(60), new Random(seed * 17));
            run.workload();
            checkAfterCut(run, "cut at a flush");
        }
        report("flush cuts");
    }

    /** Durable writes survive a resume; the rollback is exact either way. */
    static void checkAfterCut(Run run, String when) throws Exception {
        byte[] durable = run.disk.durableImage();
        if (run.dead()) cutsMidWorkload.incrementAndGet();
        if (run.dead() && LogBlock.looksLikeLog(Arrays.copyOf(durable, 4))) {
            resumesChecked.incrementAndGet();
            MemoryBlockDevice dev = new MemoryBlockDevice(durable);
            BowEngine resumed = BowEngine.resume(dev, "resumed");
            run.assertMatches(run.expected(true), (off, into) -> resumed.read(off, ByteBuffer.wrap(into)),
                    when + ": acknowledged and flushed write after --resume");
        }
        assertRollbackExact(run, when);
    }
}
