package bow.bowmode;

import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.util.List;
import java.util.Random;

import static bow.bowmode.BowTestSupport.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Model-based randomized test: random trims in state 0, random writes, discards
 * and reads in state 1 checked against a plain byte array; then commit must give
 * exactly the model's image and rollback exactly the starting image (outside the
 * ranges that were free at the start).
 */
class BowEngineModelTest {
    static final int SEEDS = Integer.getInteger("bow.test.seeds", 40);

    @Test
    void randomWorkloadsAgreeWithTheModel() throws Exception {
        for (int s = 0; s < SEEDS; s++) {
            long seed = 0xB0B0L + s;
            try {
                runOne(seed);
            } catch (Throwable t) {
                throw new AssertionError("failed with seed " + seed + " (rerun: -Dbow.test.seed=" + seed + ")", t);
            }
        }
    }

    @Test
    void singleSeedFromProperty() throws Exception {
        Long seed = Long.getLong("bow.test.seed");
        if (seed != null) runOne(seed);
    }

    static void runOne(long seed) throws Exception {
        Random r = new Random(seed);
        int bs = new int[] {512, 1024, 4096}[r.nextInt(3)];
        int blocks = 16 + r.nextInt(r.nextBoolean() ? 64 : 600);
        int size = blocks * bs;
        byte[] ref = new byte[size];
        r.nextBytes(ref);
        MemoryBlockDevice disk = new MemoryBlockDevice(ref);
        BowEngine eng = BowEngine.open(disk, "mem", bs);

        // State 0: trims (not passed down: content unchanged) and a few writes.
        int trims = r.nextInt(40) + 1;
        for (int i = 0; i < trims; i++) {
            long off = 512L * r.nextInt(size / 512);
            long len = Math.min(size - off, 512L * (1 + r.nextInt(r.nextBoolean() ? 8 : 200)));
            eng.discard(off, len);
            if (r.nextInt(5) == 0) randomWrite(r, eng, ref, size, bs);
        }
        // Guarantee a little free space so the checkpoint can start.
        eng.discard((long) (blocks - 2) * bs, 2L * bs);
        assertArrayEquals(ref, read(eng, 0, size), "state 0 reads pass through");

        eng.startCheckpoint();
        byte[] start = ref.clone();
        List<long[]> freeAtStart = eng.freeRangesAtStart();
        // Free blocks may be used for backups: their content is undefined until written.
        boolean[] defined = new boolean[size / 512];
        java.util.Arrays.fill(defined, true);
        for (long[] f : freeAtStart) for (long x = f[0] / 512; x < f[1] / 512; x++) defined[(int) x] = false;
        Model m = new Model(ref, defined);
        m.check(read(eng, 0, size), 0, "reads right after the checkpoint started");

        int ops = 100 + r.nextInt(300);
        for (int op = 0; op < ops; op++) {
            int kind = r.nextInt(10);
            if (kind < 6) {
                randomWrite(r, eng, m, size, bs);
            } else if (kind < 7) {
                long off = 512L * r.nextInt(size / 512);
                long len = Math.min(size - off, 512L * (1 + r.nextInt(64)));
                eng.discard(off, len);
                m.discard(off, len, bs);
            } else {
                long off = 512L * r.nextInt(size / 512);
                int len = (int) Math.min(size - off, 512L * (1 + r.nextInt(64)));
                m.check(read(eng, off, len), off, "read at op " + op);
            }
        }
        m.check(read(eng, 0, size), 0, "whole-device read after the workload");
        eng.flush();

        // Rollback branch on a copy of the device as it is now.
        byte[] rolled = rolledBack(disk.snapshot());
        assertEqualOutside(start, rolled, freeAtStart, "rollback");

        // Commit branch on the device itself.
        eng.commit();
        assertEquals(BowEngine.State.COMMITTED, eng.state());
        m.check(disk.snapshot(), 0, "committed image equals the model");
        randomWrite(r, eng, m, size, bs);
        m.check(disk.snapshot(), 0, "pass-through after commit");
    }

    /** The reference: bytes, and which 512-byte sectors have a defined content. */
    record Model(byte[] ref, boolean[] defined) {
        void check(byte[] got, long off, String what) {
            for (int i = 0; i < got.length; i++) {
                int at = (int) off + i;
                if (defined[at / 512] && got[i] != ref[at]) fail(what + ": mismatch at byte " + at);
            }
        }

        /** Whole blocks a discard covers may read as anything afterwards. */
        void discard(long off, long len, int bs) {
            long first = (off + bs - 1) / bs, end = (off + len) / bs;
            for (long x = first * (bs / 512); x < end * (bs / 512); x++) defined[(int) x] = false;
        }

        void apply(long off, byte[] data) {
            System.arraycopy(data, 0, ref, (int) off, data.length);
            for (int x = (int) off / 512; x < (off + data.length) / 512; x++) defined[x] = true;
        }
    }

    static void randomWrite(Random r, BowEngine eng, byte[] ref, int size, int bs) throws Exception {
        boolean[] all = new boolean[size / 512];
        java.util.Arrays.fill(all, true);
        randomWrite(r, eng, new Model(ref, all), size, bs);
    }

    static void randomWrite(Random r, BowEngine eng, Model m, int size, int bs) throws Exception {
        byte[] ref = m.ref();
        long off;
        int len;
        switch (r.nextInt(5)) {
            case 0 -> { off = 0; len = 512 * (1 + r.nextInt(3 * bs / 512)); }           // touches block 0
            case 1 -> { off = 512L * r.nextInt(size / 512); len = 512; }               // sub-block
            case 2 -> { off = (long) bs * r.nextInt(size / bs); len = bs; }             // one block
            default -> { off = 512L * r.nextInt(size / 512); len = 512 * (1 + r.nextInt(r.nextBoolean() ? 16 : 200)); }
        }
        len = (int) Math.min(len, size - off);
        byte[] data = new byte[len];
        r.nextBytes(data);
        try {
            write(eng, off, data);
            m.apply(off, data);
        } catch (DeviceException e) {
            assertEquals(Errno.ENOSPC, e.errno(), e.getMessage());
            // Nothing changed: the model keeps its bytes and so must the device.
            m.check(read(eng, off, len), off, "ENOSPC write must change nothing");
        }
    }
}
