package bow.restore;

import bow.blockdev.MemoryBlockDevice;
import bow.bowlog.LogBlock;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

class RestoreTest {
    static int seeds() { return Integer.getInteger("bow.test.seeds", 10); }

    @ParameterizedTest
    @ValueSource(ints = {512, 1024, 4096})
    void rollbackRestoresEveryBlockThatHeldData(int bs) throws Exception {
        long base = new Random().nextLong();
        int runs = Math.max(2, seeds() / 4);
        for (int r = 0; r < runs; r++) {
            long seed = base + r;
            // 4096-byte blocks hold 169 entries per log: enough writes for several rollovers.
            int blocks = bs == 4096 ? 3000 : 1500;
            CheckpointImage c = CheckpointImage.build(bs, blocks, seed, bs == 4096 ? 900 : 400);
            String ctx = "seed " + seed + " bs " + bs;
            assertTrue(c.sequences >= 3, ctx + ": want several rollovers, got " + c.sequences);
            assertTrue(c.reBackups > 0, ctx + ": want re-backed-up dests");
            assertTrue(c.firstUnrestoredBlock(c.image) >= 0, ctx + ": the writes changed nothing?");
            MemoryBlockDevice dev = new MemoryBlockDevice(c.image);
            Restore.Result res = new Restore(dev, "mem").run();
            byte[] after = dev.snapshot();
            assertEquals(-1, c.firstUnrestoredBlock(after), ctx + ": block not restored");
            assertEquals(c.sequences, res.sequences(), ctx);
            assertEquals(c.entries, res.entries(), ctx);
            assertFalse(res.resumed());
            // A second run finds no checkpoint and writes nothing.
            assertThrows(NoCheckpointException.class, () -> new Restore(dev, "mem").run(), ctx);
            assertArrayEquals(after, dev.snapshot(), ctx);
        }
    }

    @Test
    void uncheckedEntriesAreRestoredToo() throws Exception {
        long seed = new Random().nextLong();
        CheckpointImage c = CheckpointImage.build(512, 800, seed, 200, true);
        MemoryBlockDevice dev = new MemoryBlockDevice(c.image);
        new Restore(dev, "mem").run();
        assertEquals(-1, c.firstUnrestoredBlock(dev.snapshot()), "seed " + seed);
    }

    @Test
    void verifyCountsTheWholeChain() throws Exception {
        long seed = new Random().nextLong();
        CheckpointImage c = CheckpointImage.build(512, 1000, seed, 300);
        MemoryBlockDevice dev = new MemoryBlockDevice(c.image);
        LogChain.Summary s = LogInspector.verify(dev, "mem", ProgressListener.NONE);
        assertEquals(c.sequences, s.sequences(), "seed " + seed);
        assertEquals(c.entries, s.entries(), "seed " + seed);
        assertEquals(c.sequences - 1, s.newestSequence(), "seed " + seed);
        assertEquals((long) c.sector0Block * 1, s.sector0(), "seed " + seed);
        assertFalse(s.restoring());
        assertArrayEquals(c.image, dev.snapshot(), "verify must not write");
    }

    @Test
    void noCheckpointOnAPlainDevice() throws Exception {
        byte[] plain = new byte[64 * 1024];
        new Random(1).nextBytes(plain);
        plain[0] = 0; // not a log magic
        MemoryBlockDevice dev = new MemoryBlockDevice(plain);
        NoCheckpointException e = assertThrows(NoCheckpointException.class, () -> new Restore(dev, "/dev/x").run());
        assertEquals("no checkpoint on /dev/x", e.getMessage());
        assertThrows(NoCheckpointException.class, () -> OfflineCommit.commit(dev, "/dev/x"));
        assertArrayEquals(plain, dev.snapshot());
    }

    @Test
    void interruptedRestoreIsMarkedWob() throws Exception {
        CheckpointImage c = CheckpointImage.build(512, 600, 7, 150);
        // After validation the first write marks the log; crash right after it.
        bow.blockdev.testing.PowerCutDevice pc = new bow.blockdev.testing.PowerCutDevice(c.image);
        pc.armCrashAfterOps(2, new Random(1)); // write header, flush, then die
        assertThrows(java.io.IOException.class, () -> new Restore(pc, "pc").run());
        byte[] durable = pc.durableImage();
        assertEquals(LogBlock.MAGIC_RESTORING, ByteBuffer.wrap(durable, 0, 4).order(java.nio.ByteOrder.LITTLE_ENDIAN).getInt());
        MemoryBlockDevice resumed = new MemoryBlockDevice(durable);
        assertTrue(LogInspector.verify(resumed, "m", ProgressListener.NONE).restoring());
        InvalidStateException e = assertThrows(InvalidStateException.class, () -> OfflineCommit.commit(resumed, "m"));
        assertTrue(e.getMessage().contains("rollback"), e.getMessage());
        Restore.Result r = new Restore(resumed, "m").run();
        assertTrue(r.resumed());
        assertEquals(-1, c.firstUnrestoredBlock(resumed.snapshot()));
    }

    /** Devices need not be a whole number of blocks: only whole sectors. */
    @ParameterizedTest
    @ValueSource(ints = {2048, 4096})
    void deviceSizeNeedNotBeAMultipleOfTheBlockSize(int bs) throws Exception {
        long seed = new Random().nextLong();
        CheckpointImage c = CheckpointImage.build(bs, 900, seed, 300);
        byte[] img = java.util.Arrays.copyOf(c.image, c.image.length + 512 * (1 + new Random(seed).nextInt(bs / 512 - 1)));
        MemoryBlockDevice dev = new MemoryBlockDevice(img);
        new Restore(dev, "mem").run();
        byte[] after = dev.snapshot();
        assertEquals(-1, c.firstUnrestoredBlock(after), "seed " + seed);
        assertArrayEquals(java.util.Arrays.copyOfRange(img, c.image.length, img.length),
                java.util.Arrays.copyOfRange(after, c.image.length, img.length));
    }
}
