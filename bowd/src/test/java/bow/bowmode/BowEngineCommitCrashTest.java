package bow.bowmode;

import bow.blockdev.MemoryBlockDevice;
import bow.bowlog.LogBlock;
import bow.bowlog.LogCorruptException;
import bow.restore.InterruptedCommitException;
import bow.restore.LogChain;
import bow.restore.NoCheckpointException;
import bow.restore.OfflineCommit;
import bow.restore.ProgressListener;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * A power cut at every write and flush of the daemon's commit (BowEngine.commit), a random subset of
 * the unflushed writes surviving: the next offline commit ('bowctl commit --device', what bow-boot
 * and bow-recovery run) must give the content the engine served before the commit.
 */
class BowEngineCommitCrashTest {
    @Test
    void offlineCommitFinishesTheDaemonsInterruptedCommit() throws Exception {
        int cases = 0, interrupted = 0;
        for (long seed = 1; seed <= 40; seed++) {
            BowEngineCrashTest.Setup probe = BowEngineCrashTest.setUp(seed);
            BowEngineCrashTest.workload(probe, new Random(seed * 31));
            byte[] expected = new byte[probe.size()];
            probe.eng().read(0, ByteBuffer.wrap(expected));
            long before = probe.disk().opCount();
            probe.eng().commit();
            long ops = probe.disk().opCount() - before;
            assertTrue(ops >= 2, "commit did no writes");
            assertArrayEquals(expected, probe.disk().durableImage(), "seed " + seed + ": the uninterrupted commit");
            for (long k = 0; k < ops; k++) {
                String ctx = "seed " + seed + ", bs " + probe.bs() + ", crash after " + k + " of " + ops + " commit ops";
                BowEngineCrashTest.Setup s = BowEngineCrashTest.setUp(seed);
                BowEngineCrashTest.workload(s, new Random(seed * 31));
                s.disk().armCrashAfterOps(k, new Random(seed * 11 + k));
                assertThrows(IOException.class, () -> s.eng().commit(), ctx);
                byte[] crashed = s.disk().durableImage();
                MemoryBlockDevice dev = new MemoryBlockDevice(crashed);
                if (LogBlock.looksLikeLog(Arrays.copyOf(crashed, 4))) {
                    try {
                        LogChain.verify(dev, "img", LogChain.Visitor.NONE, ProgressListener.NONE);
                    } catch (InterruptedCommitException e) {
                        interrupted++;
                    } catch (LogCorruptException e) {
                        fail(ctx + ": an interrupted commit reported as corruption: " + e.getMessage());
                    }
                    OfflineCommit.commit(dev, "img");
                } else {
                    assertThrows(NoCheckpointException.class, () -> OfflineCommit.commit(dev, "img"), ctx);
                }
                assertArrayEquals(expected, dev.snapshot(), ctx + ": the next offline commit must give the live content");
                cases++;
            }
        }
        assertTrue(cases > 40, "too few crash points: " + cases);
        System.out.println("commit crash cases " + cases + ", recognised as interrupted commits " + interrupted);
    }
}
