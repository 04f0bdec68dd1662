package bow.shared;

import bow.blockdev.BlockDevice;
import bow.blockdev.MemoryBlockDevice;
import bow.blockdev.testing.GateDevice;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.time.Duration;
import java.util.Arrays;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.TimeUnit;

import static org.junit.jupiter.api.Assertions.*;

/**
 * A tree-block cache miss of a lookup reads the block with the tree lock released: a snapshot
 * read whose tree block is slow to come from the COW (held at a {@link GateDevice}) does not
 * stall an origin write whose path is cached.
 */
class SharedCacheMissTest {
    static final int S = 512, CHUNK = 8 * S, CHUNKS = 512;
    /** A deep tree (fanout 4, two exceptions per leaf) and a cache of 8 blocks: most paths are cold. */
    static final SharedStore.Tuning SMALL = new SharedStore.Tuning(4, Leaf.bytesFor(2, 32), 16, 8);

    @Test
    void aSlowMissDoesNotBlockAnOriginWriteWithACachedPath() throws Exception {
        Random r = new Random(3);
        byte[] init = new byte[CHUNKS * CHUNK];
        r.nextBytes(init);
        MemoryBlockDevice origin = new MemoryBlockDevice(init.clone());
        MemoryBlockDevice cow = new MemoryBlockDevice(16 << 20);
        SharedEngine e = SharedEngine.open(origin, cow, new SharedEngine.Options(8), SMALL);
        e.createSnapshot("s", false);
        byte[] junk = new byte[CHUNKS * CHUNK];
        r.nextBytes(junk);
        BlockDevice o = e.exports().get("");
        o.write(0, ByteBuffer.wrap(junk));      // every chunk copied out for the snapshot: a tree of 512 exceptions
        o.flush();
        e.close();

        GateDevice gcow = new GateDevice(cow);
        SharedEngine g = SharedEngine.open(origin, gcow, new SharedEngine.Options(0), SMALL);
        assertTrue(g.store().tree().level() >= 3, "a deep tree: level " + g.store().tree().level());
        BlockDevice go = g.exports().get(""), snap = g.exports().get("snapshot-s");
        byte[] mine = new byte[S];
        r.nextBytes(mine);
        go.write(0, ByteBuffer.wrap(mine));     // chunk 0's path is now cached (no copy-out: the snapshot has its own)
        ExecutorService x = Executors.newFixedThreadPool(2);
        try {
            GateDevice.Gate gate = gcow.arm(GateDevice.Op.READ, GateDevice.Match.any());
            long far = (long) (CHUNKS - 1) * CHUNK;
            Future<byte[]> slow = x.submit(() -> {
                ByteBuffer b = ByteBuffer.allocate(CHUNK);
                snap.read(far, b);
                return b.array();
            });
            assertTrue(gate.awaitArrived(Duration.ofSeconds(10)), "the snapshot read misses a tree block");
            Future<?> write = x.submit(() -> { go.write(S, ByteBuffer.wrap(mine)); return null; });
            try {
                write.get(10, TimeUnit.SECONDS);
            } catch (java.util.concurrent.TimeoutException t) {
                fail("the origin write waited for another request's cache miss");
            } finally {
                gate.release();
            }
            assertArrayEquals(Arrays.copyOfRange(init, (int) far, (int) far + CHUNK), slow.get(10, TimeUnit.SECONDS), "the slow read's data");
        } finally {
            x.shutdown();
            assertTrue(x.awaitTermination(30, TimeUnit.SECONDS));
        }
        ByteBuffer b = ByteBuffer.allocate(2 * S);
        go.read(0, b);
        byte[] both = new byte[2 * S];
        System.arraycopy(mine, 0, both, 0, S);
        System.arraycopy(mine, 0, both, S, S);
        assertArrayEquals(both, b.array(), "both origin writes landed");
        assertTrue(g.store().check().clean(), "tree check");
        g.close();
    }
}
