package bow.restore;

import bow.blockdev.MemoryBlockDevice;
import bow.bowlog.LogCorruptException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.Random;

import static bow.restore.Images.*;
import static org.junit.jupiter.api.Assertions.*;

class OfflineCommitTest {
    @ParameterizedTest
    @ValueSource(ints = {512, 2048, 4096})
    void commitPutsTheLiveBlock0Back(int bs) throws Exception {
        long seed = new Random().nextLong();
        CheckpointImage c = CheckpointImage.build(bs, 700, seed, 200);
        MemoryBlockDevice dev = new MemoryBlockDevice(c.image);
        OfflineCommit.Result r = OfflineCommit.commit(dev, "img");
        assertEquals(c.sequences - 1, r.sequence());
        assertEquals(bs, r.blockSize());
        assertArrayEquals(c.liveView(), dev.snapshot(), "seed " + seed);
        NoCheckpointException again = assertThrows(NoCheckpointException.class, () -> OfflineCommit.commit(dev, "img"));
        assertEquals("no checkpoint on img", again.getMessage());
        assertThrows(NoCheckpointException.class, () -> new Restore(dev, "img").run());
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096})
    void commitNeedsOnlyTheHeader(int bs) throws Exception {
        CheckpointImage c = CheckpointImage.build(bs, 700, new Random().nextLong(), 200);
        byte[] img = c.image.clone();
        putLe32(img, entryField(0, 0, 20), 0x5555); // a damaged entry does not matter to a commit
        MemoryBlockDevice dev = new MemoryBlockDevice(img);
        OfflineCommit.commit(dev, "img");
        byte[] expected = img.clone();
        System.arraycopy(img, c.sector0Block * bs, expected, 0, bs);
        assertArrayEquals(expected, dev.snapshot());
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096})
    void damagedHeaderIsRefused(int bs) throws Exception {
        CheckpointImage c = CheckpointImage.build(bs, 700, new Random().nextLong(), 100);
        byte[] img = c.image.clone();
        ((java.nio.ByteBuffer) java.nio.ByteBuffer.wrap(img).order(java.nio.ByteOrder.LITTLE_ENDIAN)).putLong(20, (long) img.length / 512);
        MemoryBlockDevice dev = new MemoryBlockDevice(img);
        LogCorruptException e = assertThrows(LogCorruptException.class, () -> OfflineCommit.commit(dev, "img"));
        assertTrue(e.getMessage().contains("sector0"), e.getMessage());
        assertArrayEquals(img, dev.snapshot());

        byte[] magic = c.image.clone();
        putLe32(magic, 0, 0x0000_0001);
        MemoryBlockDevice dev2 = new MemoryBlockDevice(magic);
        e = assertThrows(LogCorruptException.class, () -> OfflineCommit.commit(dev2, "img"));
        assertTrue(e.getMessage().contains("bad magic"), e.getMessage());
        assertArrayEquals(magic, dev2.snapshot());
    }

    @ParameterizedTest
    @ValueSource(ints = {1024, 4096})
    void rollbackAfterAnInterruptedCommitSaysSo(int bs) throws Exception {
        CheckpointImage c = CheckpointImage.build(bs, 900, new Random().nextLong(), 250);
        bow.blockdev.testing.PowerCutDevice pc = new bow.blockdev.testing.PowerCutDevice(c.image);
        pc.armCrashAfterOps(2, new Random(3)); // sectors 1..n written and flushed, header not yet
        assertThrows(java.io.IOException.class, () -> OfflineCommit.commit(pc, "pc"));
        byte[] half = pc.durableImage();
        MemoryBlockDevice dev = new MemoryBlockDevice(half);
        if (le32(half, 12) <= (512 - 28) / 24) {
            // Every entry still sits in the intact header sector: the rollback is still possible and right.
            new Restore(dev, "img").run();
            assertEquals(-1, c.firstUnrestoredBlock(dev.snapshot()));
            return;
        }
        LogCorruptException e = assertThrows(InterruptedCommitException.class, () -> new Restore(dev, "img").run());
        assertTrue(e.getMessage().contains("this is not corruption but an interrupted commit"), e.getMessage());
        assertTrue(e.getMessage().endsWith("finish the commit with 'bowctl commit --device img'"), e.getMessage());
        assertArrayEquals(half, dev.snapshot());
        OfflineCommit.commit(dev, "img");
        assertArrayEquals(c.liveView(), dev.snapshot());
    }
}
