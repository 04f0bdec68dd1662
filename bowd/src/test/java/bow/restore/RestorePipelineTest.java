package bow.restore;

import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.FaultDevice;
import bow.bowlog.LogBlock;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The restore writes a batch while the previous batch's commit (flush, header, flush) runs. A
 * failed commit must stop every later header: none may count a batch whose data did not get
 * durable, and a rerun finishes the restore.
 */
class RestorePipelineTest {
    private static long headerCount(MemoryBlockDevice dev) throws IOException {
        ByteBuffer b = ByteBuffer.allocate(512);
        dev.read(0, b);
        return new LogBlock(b.array()).count();
    }

    @Test
    void aFailedCommitStopsEveryLaterHeader() throws Exception {
        long seed = Long.getLong("bow.test.seed", new Random().nextLong());
        int rounds = Math.max(1, Integer.getInteger("bow.test.seeds", 300) / 30);
        Random r = new Random(seed);
        for (int k = 0; k < rounds; k++) {
            long s = r.nextLong();
            CheckpointImage c = CheckpointImage.build(4096, 1500, s, 450);
            MemoryBlockDevice mem = new MemoryBlockDevice(c.image);
            long before = headerCount(mem);
            assertTrue(before > 4, "seed " + s);
            FaultDevice dev = new FaultDevice(mem);
            // Flush 1 makes the WOB mark durable; flush 2 is the first batch's commit, flush 3 (if
            // k is odd) the first one's second flush: either way that commit fails.
            dev.failNth(FaultDevice.Op.FLUSH, 2 + (k & 1));
            assertThrows(IOException.class, () -> new Restore(dev, "img").maxBatchEntries(2).run(), "seed " + s);
            long after = headerCount(mem);
            // The first commit writes its header between its two flushes: with flush 3 failing it is
            // written (count - 2, not durable), with flush 2 failing it is not. Nothing later.
            assertTrue(after == before || (k & 1) == 1 && after == before - 2, "seed " + s + ": count " + before + " -> " + after);
            dev.clear();
            new Restore(dev, "img").maxBatchEntries(2).run();
            assertEquals(-1, c.firstUnrestoredBlock(mem.snapshot()), "seed " + s + ": the rerun restores everything");
        }
    }
}
