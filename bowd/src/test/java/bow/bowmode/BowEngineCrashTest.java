package bow.bowmode;

import bow.blockdev.testing.PowerCutDevice;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Power cuts during a checkpoint: at every flush boundary of a workload, and at
 * random operations; a random subset of the unflushed writes survives (some torn).
 * Offline rollback of what is on disk must then give back the starting image
 * outside the ranges that were free when the checkpoint started.
 */
class BowEngineCrashTest {
    static final int CRASHES = Integer.getInteger("bow.test.crashes", 200);


    record Setup(PowerCutDevice disk, BowEngine eng, byte[] start, List<long[]> free, int bs, int size) {}

    static Setup setUp(long seed) throws Exception {
        Random r = new Random(seed);
        int bs = new int[] {512, 4096}[r.nextInt(2)];
        int blocks = 24 + r.nextInt(200);
        int size = blocks * bs;
        byte[] image = new byte[size];
        r.nextBytes(image);
        PowerCutDevice disk = new PowerCutDevice(image);
        BowEngine eng = BowEngine.open(disk, "powercut", bs);
        for (int i = 0; i < 30; i++) {
            long off = 512L * r.nextInt(size / 512);
            eng.discard(off, Math.min(size - off, 512L * (1 + r.nextInt(100))));
        }
        eng.discard((long) (blocks - 2) * bs, 2L * bs);
        eng.flush();
        return new Setup(disk, eng, image, eng.freeRangesAtStart(), bs, size);
    }

    /** Starts the checkpoint and runs writes until the power fails (or the workload ends). */
    static int workload(Setup s, Random r) {
        int done = 0;
        try {
            s.eng.startCheckpoint();
            boolean[] defined = new boolean[s.size / 512];
            Arrays.fill(defined, true);
            for (long[] f : s.free) for (long x = f[0] / 512; x < f[1] / 512; x++) defined[(int) x] = false;
            BowEngineModelTest.Model m = new BowEngineModelTest.Model(s.start.clone(), defined);
            for (int op = 0; op < 150; op++) {
                BowEngineModelTest.randomWrite(r, s.eng, m, s.size, s.bs);
                if (r.nextInt(6) == 0) {
                    // Discards turn changed blocks into backup space: reuse must stay safe.
                    long off = 512L * r.nextInt(s.size / 512);
                    long len = Math.min(s.size - off, 512L * (1 + r.nextInt(64)));
                    s.eng.discard(off, len);
                    m.discard(off, len, s.bs);
                }
                if (r.nextInt(8) == 0) s.eng.flush();
                done++;
            }
            s.eng.flush();
        } catch (Exception | AssertionError e) {
            assertTrue(s.disk.isDead(), () -> "only the power cut may stop the workload: " + e);
        }
        return done;
    }

    /**
     * Rolls back what is on disk with the offline tool, cutting power during the
     * rollback too (up to twice) and running it again, as a recovery would.
     */
    static void checkRollback(Setup s, long seed, String when) throws Exception {
        BowTestSupport.assertRollbackWithCutsExact(s.disk, s.start, s.free, seed, when);
    }

    @Test
    void crashAtEveryFlushBoundary() throws Exception {
        int runs = 0;
        for (long seed = 1; runs < CRASHES / 2; seed++) {
            // Count the flushes of this workload first, then cut power at each one.
            Setup probe = setUp(seed);
            long before = probe.disk.flushCount();
            workload(probe, new Random(seed * 31));
            long flushes = probe.disk.flushCount() - before;
            for (long k = 0; k <= flushes && runs < CRASHES / 2; k += Math.max(1, flushes / 12)) {
                Setup s = setUp(seed);
                s.disk.armCrashAtFlush(s.disk.flushCount() + k, new Random(seed * 7 + k));
                workload(s, new Random(seed * 31));
                checkRollback(s, seed, "crash at flush " + k + " of " + flushes);
                runs++;
            }
        }
    }

    @Test
    void crashAtRandomOperations() throws Exception {
        for (int i = 0; i < CRASHES / 2; i++) {
            long seed = 5000 + i;
            Setup s = setUp(seed);
            Random r = new Random(seed * 13);
            s.disk.armCrashAfterOps(r.nextInt(400), new Random(seed * 17));
            workload(s, r);
            checkRollback(s, seed, "crash at a random operation");
        }
    }
}
