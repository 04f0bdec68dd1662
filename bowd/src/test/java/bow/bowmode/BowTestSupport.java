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
}
