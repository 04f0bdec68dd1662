package bow.restore;

import bow.blockdev.MemoryBlockDevice;
import bow.bowlog.LogBlock;
import bow.bowlog.LogCorruptException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.Arrays;
import java.util.Random;

import static bow.restore.Images.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * A young checkpoint (every entry still in the header sector): block 0 past sector 0 still holds
 * the bytes it had at checkpoint start, and so does the live block 0, so "block 0 equals the live
 * block" is no evidence of an interrupted commit there. Corruption must be reported as corruption,
 * naming the sequence, the entry and what is wrong; and an interrupted commit only where the
 * commit really overwrote entries.
 */
class YoungCheckpointCorruptionTest {
    /** A checkpoint with a few entries, all in sector 0, whose block 0 tail equals the live block's. */
    private static CheckpointImage young(int bs, long seed) {
        for (long s = seed; ; s++) {
            CheckpointImage c = CheckpointImage.build(bs, 300, s, 4);
            int count = le32(c.image, 12);
            int at = c.sector0Block * bs;
            if (c.sequences == 1 && count >= 3 && 28 + 24 * count <= 512
                    && Arrays.equals(c.image, 512, bs, c.image, at + 512, at + bs)) return c;
        }
    }

    private static LogCorruptException corruption(byte[] img) {
        MemoryBlockDevice dev = new MemoryBlockDevice(img);
        LogCorruptException e = assertThrows(LogCorruptException.class, () -> LogInspector.verify(dev, "img", ProgressListener.NONE));
        assertFalse(e instanceof InterruptedCommitException, e.getMessage());
        assertFalse(e.getMessage().contains("interrupted"), e.getMessage());
        LogCorruptException r = assertThrows(LogCorruptException.class, () -> new Restore(dev, "img").run());
        assertEquals(e.getMessage(), r.getMessage());
        assertArrayEquals(img, dev.snapshot());
        return e;
    }

    @ParameterizedTest
    @ValueSource(ints = {1024, 4096})
    void badChecksumIsCorruptionNamingSequenceAndEntry(int bs) throws Exception {
        CheckpointImage c = young(bs, new Random().nextLong());
        byte[] img = c.image.clone();
        putLe32(img, entryField(0, 1, 20), le32(img, entryField(0, 1, 20)) ^ 0x40);
        String m = corruption(img).getMessage();
        assertTrue(m.startsWith("log sequence 0, entry 1: checksum mismatch"), m);
    }

    @ParameterizedTest
    @ValueSource(ints = {1024, 4096})
    void damagedBackupDataIsCorruption(int bs) throws Exception {
        CheckpointImage c = young(bs, new Random().nextLong());
        byte[] img = c.image.clone();
        int count = le32(img, 12);
        long dest = java.nio.ByteBuffer.wrap(img).order(java.nio.ByteOrder.LITTLE_ENDIAN).getLong(entryField(0, count - 1, 8));
        img[(int) (dest * 512) + 7] ^= 1;
        String m = corruption(img).getMessage();
        assertTrue(m.startsWith("log sequence 0, entry " + (count - 1) + ": checksum mismatch"), m);
    }

    @ParameterizedTest
    @ValueSource(ints = {1024, 4096})
    void badEntryFieldIsCorruption(int bs) throws Exception {
        CheckpointImage c = young(bs, new Random().nextLong());
        byte[] img = c.image.clone();
        putLe32(img, entryField(0, 2, 16), bs + 1);
        String m = corruption(img).getMessage();
        assertTrue(m.startsWith("log sequence 0, entry 2: size " + (bs + 1) + " is not a positive multiple"), m);
        assertNull(LogChain.interruptedCommit(new MemoryBlockDevice(img)));
    }

    @ParameterizedTest
    @ValueSource(ints = {1024, 4096})
    void aCommitThatOverwroteEntriesIsAnInterruptedCommitNotCorruption(int bs) throws Exception {
        CheckpointImage c = CheckpointImage.build(bs, 900, new Random().nextLong(), 300);
        assertTrue(28 + 24 * le32(c.image, 12) > 512 || c.sequences > 1);
        byte[] img = c.image.clone();
        // The commit's first write: sectors 1..n of the live block 0 over block 0, header sector left.
        int at = c.sector0Block * bs;
        System.arraycopy(img, at + 512, img, 512, bs - 512);
        MemoryBlockDevice dev = new MemoryBlockDevice(img);
        if (28 + 24 * le32(img, 12) > 512) {
            assertNotNull(LogChain.interruptedCommit(dev));
            InterruptedCommitException e = assertThrows(InterruptedCommitException.class,
                    () -> LogInspector.verify(dev, "img", ProgressListener.NONE));
            assertTrue(e.getMessage().contains("finish the commit with 'bowctl commit --device img'"), e.getMessage());
        }
        OfflineCommit.Result r = OfflineCommit.commit(dev, "img");
        assertEquals(28 + 24 * le32(c.image, 12) > 512, r.interrupted() != null);
        assertArrayEquals(c.liveView(), dev.snapshot());
        assertFalse(LogBlock.looksLikeLog(Arrays.copyOf(dev.snapshot(), 4)));
    }
}
