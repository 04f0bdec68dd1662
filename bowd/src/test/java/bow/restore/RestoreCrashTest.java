package bow.restore;

import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.PowerCutDevice;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * Power cuts during the rollback and during the offline commit: whatever point the
 * cut hits, running the tool again on what reached the disk (maybe cut again)
 * finishes with the exact result.
 */
class RestoreCrashTest {
    static int crashes() { return Integer.getInteger("bow.test.crashes", 20); }

    private static CheckpointImage image(Random rnd) {
        // Small images so that hundreds of runs stay fast; all block sizes, always with rollovers.
        boolean unchecked = rnd.nextInt(4) == 0;
        return switch (rnd.nextInt(4)) {
            case 0 -> CheckpointImage.build(4096, 1000, rnd.nextLong(), 380, unchecked);
            case 1 -> CheckpointImage.build(2048, 600, rnd.nextLong(), 180, unchecked);
            case 2 -> CheckpointImage.build(1024, 500, rnd.nextLong(), 130, unchecked);
            default -> CheckpointImage.build(512, 400, rnd.nextLong(), 110, unchecked);
        };
    }

    /** Sweeps every operation of one restore as the cut point, so no crash point is left to chance. */
    @Test
    void rollbackSurvivesACutAtEveryOperation() throws Exception {
        long seed = new Random().nextLong();
        // Block sizes of several sectors, so that a cut can tear a block write.
        for (int bs : new int[] {1024, 2048}) {
            Random rnd = new Random(seed + bs);
            CheckpointImage c = bs == 1024 ? CheckpointImage.build(1024, 500, rnd.nextLong(), 130)
                    : CheckpointImage.build(2048, 700, rnd.nextLong(), 200);
            assertTrue(c.sequences >= 2, "seed " + seed + ": want a rollover");
            int batch = bs == 1024 ? 3 : Integer.MAX_VALUE;
            PowerCutDevice probe = new PowerCutDevice(c.image);
            new Restore(probe, "probe").maxBatchEntries(batch).run();
            for (long op = 0; op <= probe.opCount(); op++) {
                PowerCutDevice pc = new PowerCutDevice(c.image);
                pc.armCrashAfterOps(op, rnd);
                try {
                    new Restore(pc, "pc").maxBatchEntries(batch).run();
                } catch (IOException e) {
                    assertTrue(pc.isDead(), "seed " + seed + ": " + e);
                }
                MemoryBlockDevice again = new MemoryBlockDevice(pc.durableImage());
                try {
                    new Restore(again, "again").run();
                } catch (NoCheckpointException done) {
                    // the cut came after the last write reached the disk
                } catch (IOException e) {
                    throw new AssertionError("seed " + seed + ", bs " + bs + ", cut after op " + op, e);
                }
                assertEquals(-1, c.firstUnrestoredBlock(again.snapshot()), "seed " + seed + ", bs " + bs + ", cut after op " + op);
            }
        }
    }

    @Test
    void rollbackSurvivesPowerCutsAnywhere() throws Exception {
        long base = new Random().nextLong();
        int runs = crashes();
        for (int run = 0; run < runs; run++) {
            long seed = base + run;
            try {
                rollbackWithCuts(seed);
            } catch (Throwable t) {
                throw new AssertionError("rollback crash run failed, seed " + seed + " (run " + run + " of " + runs + ")", t);
            }
        }
    }

    private static void rollbackWithCuts(long seed) throws Exception {
        Random rnd = new Random(seed);
        CheckpointImage c = image(rnd);
        // Half of the runs use tiny batches, so that progress is persisted (and resumed) mid-sequence.
        int batch = rnd.nextBoolean() ? 1 + rnd.nextInt(6) : Integer.MAX_VALUE;
        PowerCutDevice probe = new PowerCutDevice(c.image);
        new Restore(probe, "probe").maxBatchEntries(batch).run();
        long fullOps = probe.opCount();
        assertEquals(-1, c.firstUnrestoredBlock(probe.durableImage()));

        byte[] disk = c.image;
        int cuts = 1 + rnd.nextInt(3);
        for (int cut = 0; cut < cuts; cut++) {
            PowerCutDevice pc = new PowerCutDevice(disk);
            pc.armCrashAfterOps(rnd.nextLong(fullOps + 1), rnd);
            try {
                new Restore(pc, "pc").maxBatchEntries(batch).run();
            } catch (NoCheckpointException done) {
                // An earlier cut came after the last header write reached the disk.
            } catch (IOException e) {
                assertTrue(pc.isDead(), "only the simulated power cut may fail the rollback: " + e);
            }
            disk = pc.durableImage();
            // Whatever reached the disk is either a valid (resumable) chain or already fully restored.
            MemoryBlockDevice check = new MemoryBlockDevice(disk);
            try {
                LogInspector.verify(check, "check", ProgressListener.NONE);
            } catch (NoCheckpointException e) {
                assertEquals(-1, c.firstUnrestoredBlock(disk), "no log left, so the restore must be complete");
            }
        }
        PowerCutDevice last = new PowerCutDevice(disk);
        try {
            new Restore(last, "last").maxBatchEntries(batch).run();
        } catch (NoCheckpointException alreadyDone) {
            // fine: the final cut came after the restore completed
        }
        assertEquals(-1, c.firstUnrestoredBlock(last.durableImage()));
        assertThrows(NoCheckpointException.class, () -> new Restore(last, "last").run());
    }

    @Test
    void commitSurvivesPowerCutsAnywhere() throws Exception {
        long base = new Random().nextLong();
        int runs = crashes();
        for (int run = 0; run < runs; run++) {
            long seed = base + run;
            Random rnd = new Random(seed);
            CheckpointImage c = image(rnd);
            byte[] expected = c.liveView();
            byte[] disk = c.image;
            try {
                int cuts = 1 + rnd.nextInt(3);
                for (int cut = 0; cut < cuts; cut++) {
                    PowerCutDevice pc = new PowerCutDevice(disk);
                    pc.armCrashAfterOps(rnd.nextInt(5), rnd); // a commit is at most 4 operations
                    try {
                        OfflineCommit.commit(pc, "pc");
                    } catch (NoCheckpointException done) {
                        // already committed by an earlier run
                    } catch (IOException e) {
                        assertTrue(pc.isDead(), "only the simulated power cut may fail the commit: " + e);
                    }
                    disk = pc.durableImage();
                }
                MemoryBlockDevice dev = new MemoryBlockDevice(disk);
                try {
                    OfflineCommit.Result r = OfflineCommit.commit(dev, "dev");
                    assertEquals(c.sector0Block * (c.blockSize / 512L), r.sector0());
                } catch (NoCheckpointException done) {
                    // committed before the last cut
                }
                assertArrayEquals(expected, dev.snapshot());
                assertThrows(NoCheckpointException.class, () -> OfflineCommit.commit(dev, "dev"));
            } catch (Throwable t) {
                throw new AssertionError("commit crash run failed, seed " + seed, t);
            }
        }
    }
}
