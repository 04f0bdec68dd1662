package bow.bowmode;

import bow.blockdev.BlockDevice;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The engine at scale: a 64 GiB device with a million free runs, a checkpoint
 * started over them, a 32 GiB changed run, and one discard of the whole device.
 * Asserts what the map holds afterwards; prints how long the state lock and the
 * map lock were held (figures, not assertions: timing is for the benchmarks).
 */
class BowEngineScaleTest {
    /** Reads zeros, drops writes: only the engine's own bookkeeping costs anything. */
    static final class NullDevice implements BlockDevice {
        private final long size;

        NullDevice(long size) { this.size = size; }

        @Override public long size() { return size; }

        @Override public void read(long offset, ByteBuffer dst) {
            while (dst.hasRemaining()) dst.put((byte) 0);
        }

        @Override public void write(long offset, ByteBuffer src) { src.position(src.limit()); }

        @Override public void discard(long offset, long length) {}

        @Override public void flush() {}
    }

    @Test
    void aMillionFreeRunsAndAWholeDeviceDiscard() throws Exception {
        int bs = 4096;
        long blocks = 16L << 20;                              // 64 GiB
        BowEngine eng = BowEngine.open(new NullDevice(blocks * bs), "null", bs);
        long runs = 1_000_000;
        long t0 = System.nanoTime();
        for (long i = 0; i < runs; i++) eng.discard((2 * i + 1) * bs, bs);   // blocks 1, 3, 5, ...
        eng.discard((8L << 20) * bs, (8L << 20) * bs);         // and the upper half, one run
        long trimNs = System.nanoTime() - t0;
        assertEquals(runs + 1, eng.freeRangesAtStart().size());

        t0 = System.nanoTime();
        eng.startCheckpoint();
        long startNs = System.nanoTime() - t0;
        List<long[]> atStart = eng.freeRangesAtStart();
        assertEquals(runs + 1, atStart.size(), "the free map at start has every run");

        // Fill the upper half with new data: free blocks become CHANGED, no backups.
        ByteBuffer chunk = ByteBuffer.allocateDirect(32 << 20);
        for (long off = (8L << 20) * bs; off < blocks * bs; off += chunk.capacity()) {
            eng.write(off, chunk.clear());
        }
        long changedBefore = Long.parseLong(eng.status().details().get("type_changed_bytes"));
        assertTrue(changedBefore >= (32L << 30), "the upper half is changed: " + changedBefore);

        t0 = System.nanoTime();
        eng.discard(0, blocks * bs);
        long discardNs = System.nanoTime() - t0;
        long changedAfter = Long.parseLong(eng.status().details().get("type_changed_bytes"));
        assertEquals(0, changedAfter, "a whole-device discard frees every changed block");

        System.out.printf("BowEngineScaleTest: %,d free runs: %.2f us per trim; startCheckpoint (state lock) %.1f ms;"
                        + " discard of 64 GiB with a 32 GiB changed run (map lock) %.2f ms; %d ranges%n",
                runs + 1, trimNs / 1e3 / runs, startNs / 1e6, discardNs / 1e6, eng.status().rangeCount());
    }
}
