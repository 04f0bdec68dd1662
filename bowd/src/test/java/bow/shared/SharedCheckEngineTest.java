package bow.shared;

import bow.blockdev.BlockDevice;
import bow.blockdev.MemoryBlockDevice;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@link SharedCheck} on COWs the real engine wrote: clean after every phase of a random
 * workload (creates, origin and snapshot writes, deletes with their reclaim, rollbacks), and its
 * counts equal to the engine's own in-memory check of the same store.
 */
class SharedCheckEngineTest {
    static final int SEEDS = Math.max(1, Integer.getInteger("bow.test.seeds", 20) / 10);

    static void assertCheckMatchesEngine(BlockDevice origin, BlockDevice cow, SharedStore.Tuning tuning, String when) throws Exception {
        SharedCheck.Result r = SharedCheck.run(cow);
        if (r.blank()) {        // no snapshot was ever created: the engine formats at the first
            try (SharedEngine e = SharedEngine.open(origin, cow, new SharedEngine.Options(0), tuning)) { assertNull(e.store(), when); }
            return;
        }
        assertTrue(r.clean(), when + ": " + r.problems());
        assertTrue(r.notes().stream().noneMatch(n -> n.contains("free_chunks")), when + ": header free count equals the bitmap's: " + r.notes());
        assertEquals(r.header().freeChunks(), r.counts().freeChunks(), when + ": header free count");
        if (r.header().deletingMask() != 0) return;     // the engine would resume the reclaim at open, racing with its own check
        try (SharedEngine e = SharedEngine.open(origin, cow, new SharedEngine.Options(0), tuning)) {
            SharedStore st = e.store();
            SharedTree.CheckResult mem = st.check();
            assertTrue(mem.clean(), when + ": " + mem.problems());
            assertEquals(mem.leaves(), r.counts().leaves(), when + ": leaves");
            assertEquals(mem.nodes(), r.counts().nodes(), when + ": nodes");
            assertEquals(mem.exceptions(), r.counts().exceptions(), when + ": exceptions");
            assertEquals(st.freeChunks(), r.counts().freeChunks(), when + ": free");
        }
    }

    @Test
    void engineWrittenStoresCheckClean() throws Exception {
        for (int seed = 0; seed < SEEDS; seed++) {
            for (SharedStore.Tuning tuning : new SharedStore.Tuning[] {SharedEngineModelTest.SMALL, null}) {
                Random r = new Random(seed);
                MemoryBlockDevice origin = new MemoryBlockDevice(96 * 4096), cow = new MemoryBlockDevice(2048 * 4096);
                int maxSnaps = tuning == null ? 12 : SharedEngineModelTest.MAX_SNAPS;
                String what = (tuning == null ? "full-size" : "small") + " blocks, seed " + seed;
                for (int phase = 0; phase < 4; phase++) {
                    try (SharedEngine e = SharedEngine.open(origin, cow, new SharedEngine.Options(8), tuning)) {
                        List<Integer> live = new ArrayList<>();
                        e.listSnapshots().forEach(s -> live.add(s.id()));
                        for (int op = 0; op < 40; op++) {
                            int k = r.nextInt(10);
                            if (k == 0 && live.size() < maxSnaps - 1) {
                                try {
                                    live.add(e.createSnapshot(null, r.nextBoolean()));
                                } catch (IllegalStateException stillReclaiming) {
                                    e.awaitReclaim(10_000);
                                }
                            } else if (k == 1 && !live.isEmpty()) {
                                e.deleteSnapshot(Integer.toString(live.remove(r.nextInt(live.size()))));
                            } else if (k == 2 && !live.isEmpty() && r.nextInt(4) == 0) {
                                e.rollbackTo(Integer.toString(live.get(r.nextInt(live.size()))));
                                e.awaitRollback();
                            } else {
                                String target = "";
                                if (k == 3 && !live.isEmpty()) {
                                    int id = live.get(r.nextInt(live.size()));
                                    if (!e.readOnlyExports().contains("snapshot-" + id)) target = "snapshot-" + id;
                                }
                                byte[] b = new byte[512 * (1 + r.nextInt(16))];
                                r.nextBytes(b);
                                e.exports().get(target).write(512L * r.nextInt((int) (origin.size() - b.length) / 512), ByteBuffer.wrap(b));
                            }
                        }
                        e.exports().get("").flush();
                        if (phase % 2 == 1) assertTrue(e.awaitReclaim(30_000));   // else a deletion may still be pending: checked too
                    }
                    assertCheckMatchesEngine(origin, cow, tuning, what + " phase " + phase);
                }
            }
        }
    }

    @Test
    void sixtyFourSnapshotsSharingChunks() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(64 * 16384), cow = new MemoryBlockDevice(1024 * 16384);
        try (SharedEngine e = SharedEngine.open(origin, cow, new SharedEngine.Options(0))) {
            Random r = new Random(64);
            for (int i = 0; i < 64; i++) {
                e.createSnapshot("s" + i, i % 2 == 0);
                byte[] b = new byte[16384];
                r.nextBytes(b);
                e.exports().get("").write(16384L * r.nextInt(64), ByteBuffer.wrap(b));
            }
        }
        SharedCheck.Result r = SharedCheck.run(cow);
        assertTrue(r.clean(), r.problems().toString());
        assertEquals(-1L, r.header().snapmask());
        assertTrue(r.counts().exceptions() > 30);
        assertCheckMatchesEngine(origin, cow, null, "64 snapshots");
    }
}
