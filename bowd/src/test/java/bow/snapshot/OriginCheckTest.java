package bow.snapshot;

import bow.blockdev.BlockDevice;
import bow.blockdev.MemoryBlockDevice;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** A COW knows which origin it belongs to: a merge onto another device is refused, untouched. */
class OriginCheckTest {
    static final int SIZE = 1 << 20;

    static byte[] random(long seed, int n) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    static byte[] image(BlockDevice d) throws Exception {
        ByteBuffer b = ByteBuffer.allocate((int) d.size());
        d.read(0, b);
        return b.array();
    }

    /** A checkpoint of {@code init} with some origin writes; returns the COW. */
    static MemoryBlockDevice checkpoint(MemoryBlockDevice origin, boolean writable) throws Exception {
        MemoryBlockDevice cow = new MemoryBlockDevice(new byte[SIZE + (64 << 10)]);
        PersistentEngine e = PersistentEngine.open(origin, cow, new PersistentEngine.Options(8, false, writable));
        e.startCheckpoint();
        BlockDevice dev = e.exports().get("");
        Random r = new Random(7);
        for (int k = 0; k < 40; k++) dev.write(4096L * r.nextInt(SIZE / 4096), ByteBuffer.wrap(random(k, 4096)));
        dev.write(0, ByteBuffer.wrap(random(99, 8192)));   // the first sampled chunk changes on the origin
        dev.flush();
        return cow;
    }

    @Test
    void theRightOriginMerges() throws Exception {
        byte[] init = random(1, SIZE);
        MemoryBlockDevice origin = new MemoryBlockDevice(init);
        MemoryBlockDevice cow = checkpoint(origin, false);
        PersistentStore s = PersistentStore.load(cow, 0, null);
        assertEquals(SIZE, s.originRecord().originBytes());
        assertEquals(PersistentFormat.FINGERPRINT_SAMPLES, s.originRecord().samples());
        PersistentMerge.Result r = PersistentMerge.run(origin, cow, null);
        assertTrue(r.snapshotFound());
        assertArrayEquals(init, image(origin));
    }

    @Test
    void anOriginOfAnotherSizeIsRefusedAndNothingChanges() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(random(2, SIZE));
        MemoryBlockDevice cow = checkpoint(origin, false);
        MemoryBlockDevice wrong = new MemoryBlockDevice(random(3, SIZE * 2));
        byte[] cowBefore = image(cow), wrongBefore = image(wrong);
        WrongOriginException e = assertThrows(WrongOriginException.class, () -> PersistentMerge.run(wrong, cow, null));
        assertTrue(e.getMessage().contains(SIZE + "-byte origin") && e.getMessage().contains((SIZE * 2) + " bytes"), e.getMessage());
        assertArrayEquals(wrongBefore, image(wrong), "the wrong origin was not touched");
        assertArrayEquals(cowBefore, image(cow), "nor the COW");
        assertThrows(WrongOriginException.class, () -> PersistentEngine.open(wrong, cow, PersistentEngine.Options.defaults()),
                "bowd does not serve it either");
    }

    @Test
    void anOriginOfTheSameSizeWithOtherDataIsRefused() throws Exception {
        MemoryBlockDevice origin = new MemoryBlockDevice(random(4, SIZE));
        MemoryBlockDevice cow = checkpoint(origin, false);
        MemoryBlockDevice wrong = new MemoryBlockDevice(random(5, SIZE));
        byte[] wrongBefore = image(wrong);
        WrongOriginException e = assertThrows(WrongOriginException.class, () -> PersistentMerge.run(wrong, cow, null));
        assertTrue(e.getMessage().contains("fingerprint"), e.getMessage());
        assertArrayEquals(wrongBefore, image(wrong));
        PersistentMerge.run(origin, cow, null);   // the right one still merges afterwards
    }

    @Test
    void aKernelMadeCowWithChunksPastTheOriginIsRefused() throws Exception {
        // No origin record (as the kernel writes it): only the chunk range can be checked.
        MemoryBlockDevice origin = new MemoryBlockDevice(random(6, SIZE));
        MemoryBlockDevice cow = new MemoryBlockDevice(new byte[SIZE]);
        PersistentStore s = PersistentStore.create(cow, 8);
        long far = SIZE / 4096 + 10;
        long nc = s.prepare();
        s.commit(new long[] {far}, new long[] {nc}, 1);
        assertNull(PersistentStore.load(cow, 0, null).originRecord());
        byte[] before = image(origin);
        WrongOriginException e = assertThrows(WrongOriginException.class, () -> PersistentMerge.run(origin, cow, null));
        assertTrue(e.getMessage().contains("chunk " + far) && e.getMessage().contains("past the end"), e.getMessage());
        assertArrayEquals(before, image(origin));
    }

    @Test
    void aWritableSnapshotDropsTheFingerprintBeforeItChanges() throws Exception {
        byte[] init = random(8, SIZE);
        MemoryBlockDevice origin = new MemoryBlockDevice(init);
        // started read-only: a fingerprint is recorded
        MemoryBlockDevice cow = checkpoint(origin, false);
        assertTrue(PersistentStore.load(cow, 0, null).originRecord().samples() > 0);
        // reopened with a writable snapshot, which then changes a sampled chunk (chunk 0)
        PersistentEngine e = PersistentEngine.open(origin, cow, new PersistentEngine.Options(0, false, true));
        assertEquals(0, PersistentStore.load(cow, 0, null).originRecord().samples(), "fingerprint dropped on disk at open");
        byte[] patch = random(9, 512);
        e.exports().get("snapshot").write(0, ByteBuffer.wrap(patch));
        e.exports().get("").flush();
        PersistentMerge.run(origin, cow, null);   // size still checked, and right
        byte[] expect = init.clone();
        System.arraycopy(patch, 0, expect, 0, 512);
        assertArrayEquals(expect, image(origin));
    }

    @Test
    void anInterruptedOnlineMergeResumesOfflineDespiteWritesDuringIt() throws Exception {
        byte[] init = random(10, SIZE);
        MemoryBlockDevice origin = new MemoryBlockDevice(init);
        MemoryBlockDevice cow = checkpoint(origin, false);
        PersistentEngine e = PersistentEngine.open(origin, cow, PersistentEngine.Options.defaults());
        // a write through the merging view changes what the snapshot shows; then the merge "crashes"
        PersistentMerge.Progress stopAfterFirst = (done, total) -> {
            if (done > 0) throw new IllegalStateException("simulated crash");
        };
        assertThrows(IllegalStateException.class, () -> e.rollback((done, total) -> {
            if (done == 0) {
                try {
                    e.exports().get("").write(0, ByteBuffer.wrap(random(11, 4096)));
                } catch (java.io.IOException io) {
                    throw new RuntimeException(io);
                }
            }
            stopAfterFirst.update(done, total);
        }));
        assertTrue(PersistentStore.load(cow, 0, null).isMerging());
        PersistentMerge.run(origin, cow, null);   // the marker says: no fingerprint check now
        byte[] expect = init.clone();
        System.arraycopy(random(11, 4096), 0, expect, 0, 4096);
        assertArrayEquals(expect, image(origin));
    }
}
