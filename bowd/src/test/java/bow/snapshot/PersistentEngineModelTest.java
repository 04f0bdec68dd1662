package bow.snapshot;

import bow.blockdev.BlockDevice;
import bow.blockdev.MemoryBlockDevice;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** Randomized: the engine's two views against a reference model, across reloads and a final merge or commit. */
class PersistentEngineModelTest {

    @Test
    void randomWorkloadsMatchTheModel() throws Exception {
        int seeds = TestProps.seeds();
        long base = new Random().nextLong();
        for (int i = 0; i < seeds; i++) {
            long seed = base + i * 0x9E3779B97F4A7C15L; // spread: adjacent Random seeds correlate
            try {
                runSeed(seed);
            } catch (Throwable t) {
                throw new AssertionError("seed " + seed + " failed (rerun with this seed): " + t, t);
            }
        }
    }

    static byte[] random(Random r, int n) {
        byte[] b = new byte[n];
        r.nextBytes(b);
        return b;
    }

    static void readAndCheck(BlockDevice dev, byte[] model, long off, int len, String what) throws Exception {
        ByteBuffer b = ByteBuffer.allocate(len);
        dev.read(off, b);
        assertFalse(b.hasRemaining());
        if (!Arrays.equals(model, (int) off, (int) off + len, b.array(), 0, len)) {
            int at = Arrays.mismatch(Arrays.copyOfRange(model, (int) off, (int) off + len), b.array());
            fail(what + " differs from the model at byte " + (off + at) + " (read [" + off + ", +" + len + "))");
        }
    }

    static void checkWhole(PersistentEngine e, byte[] originModel, byte[] snapModel) throws Exception {
        readAndCheck(e.exports().get(""), originModel, 0, originModel.length, "origin view");
        readAndCheck(e.exports().get("snapshot"), snapModel, 0, snapModel.length, "snapshot view");
    }

    /** An offset/length pair inside {@code size}: odd 512-aligned offsets, 1234567-byte writes, byte-granular ones. */
    static long[] range(Random r, int size) {
        long off;
        int len;
        switch (r.nextInt(5)) {
            case 0 -> { off = 512L * (2 * r.nextInt(size / 1024) + 1); len = 1234567; }
            case 1 -> { off = 512L * r.nextInt(size / 512); len = 512 * (1 + r.nextInt(64)); }
            case 2 -> { off = r.nextInt(size); len = 1 + r.nextInt(20000); }
            case 3 -> { off = 512L * r.nextInt(size / 512); len = 512; }
            default -> { off = 512L * r.nextInt(size / 512); len = 512 * (1 + r.nextInt(600)); }
        }
        if (off >= size) off = size - 512;
        len = (int) Math.min(len, size - off);
        return new long[] {off, len};
    }

    static void runSeed(long seed) throws Exception {
        Random r = new Random(seed);
        int[] sizes = {1, 8, 32, 128};
        int cs = sizes[r.nextInt(sizes.length)];
        int cb = cs * 512;
        int size = 512 * (4096 + r.nextInt(2048)); // 2..3 MiB, usually not a whole number of chunks
        boolean writable = r.nextBoolean();
        PersistentEngine.Options opts = new PersistentEngine.Options(cs, false, writable);
        byte[] init = random(r, size);
        MemoryBlockDevice origin = new MemoryBlockDevice(init);
        long chunks = (size + cb - 1) / cb;
        MemoryBlockDevice cow = new MemoryBlockDevice((int) PersistentFormat.cowBytesFor(chunks, cs));
        PersistentEngine e = PersistentEngine.open(origin, cow, opts);
        assertEquals(PersistentEngine.State.NO_SNAPSHOT, e.state());
        e.startCheckpoint();
        byte[] om = init.clone(), sm = init.clone();
        for (int phase = 0; phase < 3; phase++) {
            int ops = 10 + r.nextInt(15);
            for (int k = 0; k < ops; k++) {
                long[] rg = range(r, size);
                int off = (int) rg[0], len = (int) rg[1];
                switch (r.nextInt(6)) {
                    case 0, 1 -> {
                        byte[] d = random(r, len);
                        e.exports().get("").write(off, ByteBuffer.wrap(d));
                        System.arraycopy(d, 0, om, off, len);
                    }
                    case 2 -> {
                        if (!writable) continue;
                        byte[] d = random(r, len);
                        e.exports().get("snapshot").write(off, ByteBuffer.wrap(d));
                        System.arraycopy(d, 0, sm, off, len);
                    }
                    case 3 -> readAndCheck(e.exports().get(""), om, off, len, "origin view");
                    case 4 -> readAndCheck(e.exports().get("snapshot"), sm, off, len, "snapshot view");
                    default -> e.exports().get(r.nextBoolean() ? "" : "snapshot").flush();
                }
            }
            checkWhole(e, om, sm);
            e.close();
            // reopen, sometimes with a different configured chunk size: the on-disk one wins
            int configured = r.nextBoolean() ? 0 : sizes[r.nextInt(sizes.length)];
            e = PersistentEngine.open(origin, cow, new PersistentEngine.Options(configured, false, writable));
            assertEquals(PersistentEngine.State.CHECKPOINT, e.state());
            assertEquals(cs, Integer.parseInt(e.status().details().get("chunk_size")));
            checkWhole(e, om, sm);
        }
        switch (r.nextInt(4)) {
            case 0 -> {
                e.commit();
                assertEquals(PersistentEngine.State.NO_SNAPSHOT, e.state());
                assertArrayEquals(om, origin.snapshot());
                assertNull(PersistentStore.load(cow, 0, null));
            }
            case 1 -> {
                List<long[]> progress = new ArrayList<>();
                e.rollback((d, t) -> progress.add(new long[] {d, t}));
                assertEquals(PersistentEngine.State.NO_SNAPSHOT, e.state());
                assertArrayEquals(sm, origin.snapshot(), "origin equals the snapshot after online merge");
                checkProgress(progress);
                readAndCheck(e.exports().get(""), sm, 0, size, "origin view after merge");
            }
            default -> {
                e.close();
                List<long[]> progress = new ArrayList<>();
                PersistentMerge.Result res = PersistentMerge.run(origin, cow, (d, t) -> progress.add(new long[] {d, t}));
                assertTrue(res.snapshotFound());
                assertArrayEquals(sm, origin.snapshot(), "origin equals the snapshot after offline merge");
                checkProgress(progress);
                assertEquals(res.chunksMerged(), progress.get(progress.size() - 1)[0]);
                assertNull(PersistentStore.load(cow, 0, null), "merged COW holds no snapshot");
                assertFalse(PersistentMerge.run(origin, cow, null).snapshotFound());
            }
        }
    }

    static void checkProgress(List<long[]> p) {
        assertFalse(p.isEmpty());
        assertEquals(0, p.get(0)[0]);
        for (int i = 1; i < p.size(); i++) assertTrue(p.get(i)[0] > p.get(i - 1)[0], "progress moves forward");
        long[] last = p.get(p.size() - 1);
        assertEquals(last[1], last[0], "ends at total");
    }
}
