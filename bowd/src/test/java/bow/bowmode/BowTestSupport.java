package bow.bowmode;

import bow.blockdev.BlockDevice;
import bow.blockdev.MemoryBlockDevice;
import bow.restore.Restore;

import java.nio.ByteBuffer;
import java.util.List;

import static org.junit.jupiter.api.Assertions.fail;

/** Helpers shared by the bow engine tests. */
final class BowTestSupport {
    private BowTestSupport() {}

    static byte[] read(BlockDevice dev, long off, int len) throws Exception {
        ByteBuffer b = ByteBuffer.allocate(len);
        dev.read(off, b);
        return b.array();
    }

    static void write(BlockDevice dev, long off, byte[] data) throws Exception {
        dev.write(off, ByteBuffer.wrap(data));
    }

    /** Asserts {@code actual} equals {@code expected} outside the masked byte ranges. */
    static void assertEqualOutside(byte[] expected, byte[] actual, List<long[]> masked, String context) {
        boolean[] skip = new boolean[expected.length / 512];
        for (long[] r : masked) for (long s = r[0] / 512; s < r[1] / 512; s++) skip[(int) s] = true;
        for (int sector = 0; sector < skip.length; sector++) {
            if (skip[sector]) continue;
            for (int i = sector * 512; i < sector * 512 + 512; i++) {
                if (expected[i] != actual[i]) {
                    fail(context + ": byte " + i + " (sector " + sector + ", block of 4K " + (i / 4096) + ") expected "
                            + expected[i] + " but was " + actual[i]);
                }
            }
        }
    }

    static MemoryBlockDevice memory(byte[] image) { return new MemoryBlockDevice(image); }

    /** The offline rollback (bowctl rollback) run on a copy of {@code image}; returns the result. */
    static byte[] rolledBack(byte[] image) throws Exception {
        MemoryBlockDevice dev = new MemoryBlockDevice(image);
        new Restore(dev, "test image").run();
        return dev.snapshot();
    }

    /**
     * Rolls back the durable image of {@code disk} with the offline tool, cutting
     * power during the rollback too (up to twice) and running it again, as a
     * recovery would; then asserts the start image outside the free ranges.
     */
    static void assertRollbackWithCutsExact(bow.blockdev.testing.PowerCutDevice disk, byte[] start, List<long[]> free,
                                            long seed, String when) throws Exception {
        byte[] image = disk.durableImage();
        java.util.Random r = new java.util.Random(seed ^ 0x5eed);
        for (int cut = 0; cut < 2 && bow.bowlog.LogBlock.looksLikeLog(java.util.Arrays.copyOf(image, 4)); cut++) {
            bow.blockdev.testing.PowerCutDevice dev = new bow.blockdev.testing.PowerCutDevice(image);
            dev.armCrashAfterOps(r.nextInt(80), r);
            try {
                new Restore(dev, "crashed").run();
            } catch (java.io.IOException e) {
                if (!dev.isDead()) fail("seed " + seed + ": rollback failed without a power cut: " + e);
            }
            image = dev.durableImage();
        }
        if (bow.bowlog.LogBlock.looksLikeLog(java.util.Arrays.copyOf(image, 4))) image = rolledBack(image);
        assertEqualOutside(start, image, free, "seed " + seed + ", " + when);
    }
}
