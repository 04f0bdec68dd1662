package bow.restore;

import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.PowerCutDevice;
import bow.bowlog.LogBlock;
import bow.bowlog.LogCorruptException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

import java.io.IOException;
import java.util.Arrays;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * A power cut at every write and flush of an offline commit, with a random subset of the unflushed
 * writes surviving (some torn): the next offline commit must give the live content, and what the
 * crash left must read either as the intact log or as an interrupted commit, never as corruption.
 */
class CommitCrashTest {
    /** Ops of one commit: write sectors 1..n, flush, write sector 0, flush (512: write, flush). */
    static int commitOps(int bs) { return bs > 512 ? 4 : 2; }

    @ParameterizedTest
    @CsvSource({"512,200", "1024,5", "1024,250", "4096,3", "4096,12", "4096,250", "2048,600"})
    void crashAtEveryOperationOfTheCommit(int bs, int writes) throws Exception {
        int interrupted = 0;
        for (int round = 0; round < 12; round++) {
            long seed = bs * 1000L + writes * 31L + round;
            CheckpointImage c = CheckpointImage.build(bs, 900, seed, writes);
            byte[] live = c.liveView();
            for (int k = 0; k <= commitOps(bs); k++) {
                String ctx = "bs " + bs + ", writes " + writes + ", seed " + seed + ", crash after " + k + " ops";
                PowerCutDevice pc = new PowerCutDevice(c.image);
                pc.armCrashAfterOps(k, new Random(seed * 7 + k));
                try {
                    OfflineCommit.commit(pc, "pc");
                    assertEquals(commitOps(bs), k, ctx + ": the commit ran to the end although power was cut");
                } catch (IOException e) {
                    assertTrue(pc.isDead(), ctx + ": only the power cut may stop the commit: " + e);
                }
                byte[] crashed = pc.durableImage();
                MemoryBlockDevice dev = new MemoryBlockDevice(crashed);
                boolean committed = !LogBlock.looksLikeLog(Arrays.copyOf(crashed, 4));
                if (!committed) {
                    // The crash leaves the intact log (rollback still right) or a recognised interrupted commit.
                    try {
                        LogChain.verify(dev, "img", LogChain.Visitor.NONE, ProgressListener.NONE);
                    } catch (InterruptedCommitException e) {
                        assertTrue(e.getMessage().contains("this is not corruption but an interrupted commit"), ctx + ": " + e.getMessage());
                        assertNotNull(LogChain.interruptedCommit(dev), ctx);
                        interrupted++;
                    } catch (LogCorruptException e) {
                        fail(ctx + ": an interrupted commit reported as corruption: " + e.getMessage());
                    }
                    OfflineCommit.Result r = OfflineCommit.commit(dev, "img");
                    assertEquals(c.sequences - 1, r.sequence(), ctx);
                } else {
                    assertThrows(NoCheckpointException.class, () -> OfflineCommit.commit(dev, "img"), ctx);
                }
                assertArrayEquals(live, dev.snapshot(), ctx + ": the next commit must give the live content");
            }
        }
        if (bs > 512 && writes >= 250) assertTrue(interrupted > 0, "no crash left a detectable interrupted commit");
    }

    @ParameterizedTest
    @CsvSource({"1024,250", "4096,250", "4096,4"})
    void crashAtEachFlushOfTheCommit(int bs, int writes) throws Exception {
        for (int round = 0; round < 20; round++) {
            long seed = 77_000L + bs + round;
            CheckpointImage c = CheckpointImage.build(bs, 700, seed, writes);
            for (int f = 0; f < 2; f++) {
                String ctx = "bs " + bs + ", seed " + seed + ", crash at flush " + f;
                PowerCutDevice pc = new PowerCutDevice(c.image);
                pc.armCrashAtFlush(f, new Random(seed + f));
                assertThrows(IOException.class, () -> OfflineCommit.commit(pc, "pc"), ctx);
                MemoryBlockDevice dev = new MemoryBlockDevice(pc.durableImage());
                // A second power cut during the re-run, then a third run.
                PowerCutDevice again = new PowerCutDevice(pc.durableImage());
                again.armCrashAfterOps(new Random(seed).nextInt(4), new Random(seed ^ f));
                try {
                    OfflineCommit.commit(again, "again");
                } catch (NoCheckpointException done) {
                    // committed by the first run
                } catch (IOException e) {
                    assertTrue(again.isDead(), ctx + ": " + e);
                }
                MemoryBlockDevice third = new MemoryBlockDevice(again.durableImage());
                try {
                    OfflineCommit.commit(third, "third");
                } catch (NoCheckpointException done) {
                    // already committed
                }
                assertArrayEquals(c.liveView(), third.snapshot(), ctx);
                try {
                    OfflineCommit.commit(dev, "img");
                } catch (NoCheckpointException done) {
                    // already committed
                }
                assertArrayEquals(c.liveView(), dev.snapshot(), ctx);
            }
        }
    }
}
