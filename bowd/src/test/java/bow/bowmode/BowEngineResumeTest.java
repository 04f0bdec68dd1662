package bow.bowmode;

import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;
import bow.engine.ModeEngine;
import org.junit.jupiter.api.Test;

import java.util.Arrays;
import java.util.List;
import java.util.Random;

import static bow.bowmode.BowTestSupport.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * A reboot during the update: the daemon restarts on a device that carries a
 * checkpoint and continues it. Rollback must still give back the starting image,
 * and commit the latest one.
 */
class BowEngineResumeTest {
    static final int SEEDS = Integer.getInteger("bow.test.seeds", 40);

    @org.junit.jupiter.api.io.TempDir java.nio.file.Path dir;

    @Test
    void resumedCheckpointsStayExact() throws Exception {
        for (int s = 0; s < SEEDS; s++) {
            long seed = 0xAE5L + s;
            try {
                runOne(seed, s % 2 == 0 ? null : dir.resolve("free-" + s));
            } catch (Throwable t) {
                throw new AssertionError("failed with seed " + seed, t);
            }
        }
    }

    static void runOne(long seed, java.nio.file.Path freeMap) throws Exception {
        Random r = new Random(seed);
        int bs = new int[] {512, 4096}[r.nextInt(2)];
        int blocks = 64 + r.nextInt(400);
        int size = blocks * bs;
        byte[] image = new byte[size];
        r.nextBytes(image);
        MemoryBlockDevice disk = new MemoryBlockDevice(image);
        BowEngine eng = BowEngine.open(disk, "mem", bs);
        if (freeMap != null) eng.keepFreeMap(freeMap);
        eng.discard((long) blocks / 2 * bs, (long) blocks / 2 * bs);
        eng.startCheckpoint();
        List<long[]> free = eng.freeRangesAtStart();
        boolean[] defined = new boolean[size / 512];
        Arrays.fill(defined, true);
        for (long[] f : free) for (long x = f[0] / 512; x < f[1] / 512; x++) defined[(int) x] = false;
        BowEngineModelTest.Model m = new BowEngineModelTest.Model(image.clone(), defined);

        for (int boot = 0; boot < 3; boot++) {
            for (int op = 0; op < 60; op++) {
                BowEngineModelTest.randomWrite(r, eng, m, size, bs);
                if (r.nextInt(5) == 0) {
                    long off = 512L * r.nextInt(size / 512);
                    long len = Math.min(size - off, 512L * (1 + r.nextInt(200)));
                    eng.discard(off, len);
                    m.discard(off, len, bs);
                }
            }
            eng.flush();
            List<ModeEngine.RangeRecord> freeBefore = eng.ranges().stream().filter(x -> x.type().equals("Free")).toList();
            // Reboot: a fresh engine from what is on disk.
            assertThrows(CheckpointPresentException.class, () -> BowEngine.open(disk, "mem", bs));
            eng = BowEngine.resume(disk, "mem", freeMap);
            assertEquals(BowEngine.State.CHECKPOINT, eng.state());
            m.check(read(eng, 0, size), 0, "after resume " + boot);
            // Until a trim, there is no free space: a write needing a backup changes nothing.
            // fstrim: discard whole blocks the model no longer needs (undefined content).
            for (int b = 1; b < blocks; b++) {
                boolean unused = true;
                for (int x = b * (bs / 512); x < (b + 1) * (bs / 512); x++) unused &= !m.defined()[x];
                if (unused) eng.discard((long) b * bs, bs);
            }
            if (freeMap != null) {
                // With the free map, blocks that were still free before the reboot are free again after fstrim.
                for (ModeEngine.RangeRecord rr : freeBefore) {
                    for (ModeEngine.RangeRecord now : eng.ranges()) {
                        if (now.offset() < rr.offset() + rr.length() && rr.offset() < now.offset() + now.length()) {
                            assertEquals("Free", now.type(), "block range " + rr + " overlaps " + now + " after resume");
                        }
                    }
                }
            }
        }
        byte[] rolled = rolledBack(disk.snapshot());
        assertEqualOutside(image, rolled, free, "rollback after resumes");
        eng.commit();
        m.check(disk.snapshot(), 0, "commit after resumes");
    }

    @Test
    void aFreeMapOfAnotherCheckpointIsRefused() throws Exception {
        int bs = 4096;
        java.nio.file.Path map = dir.resolve("free");
        MemoryBlockDevice disk = new MemoryBlockDevice(new byte[64 * bs]);
        BowEngine first = BowEngine.open(disk, "mem", bs).keepFreeMap(map);
        first.discard(32L * bs, 32L * bs);
        first.startCheckpoint();
        assertTrue(java.nio.file.Files.exists(map));
        first.commit();
        assertFalse(java.nio.file.Files.exists(map), "commit removes the free map");

        MemoryBlockDevice other = new MemoryBlockDevice(new byte[64 * bs]);
        BowEngine second = BowEngine.open(other, "other", bs).keepFreeMap(map);
        second.discard(40L * bs, 20L * bs);
        second.startCheckpoint();
        MemoryBlockDevice third = new MemoryBlockDevice(new byte[64 * bs]);
        BowEngine t = BowEngine.open(third, "third", bs);
        t.discard(10L * bs, 20L * bs);
        t.startCheckpoint();
        java.io.IOException e = assertThrows(java.io.IOException.class, () -> BowEngine.resume(third, "third", map));
        assertTrue(e.getMessage().contains("another checkpoint"), e.getMessage());
        byte[] bytes = java.nio.file.Files.readAllBytes(map);
        bytes[20] ^= 1;
        java.nio.file.Files.write(map, bytes);
        e = assertThrows(java.io.IOException.class, () -> BowEngine.resume(other, "other", map));
        assertTrue(e.getMessage().contains("checksum"), e.getMessage());
    }

    @Test
    void resumeBeforeTrimHasNoSpaceButChangesNothing() throws Exception {
        int bs = 4096;
        byte[] image = new byte[64 * bs];
        new Random(3).nextBytes(image);
        MemoryBlockDevice disk = new MemoryBlockDevice(image);
        BowEngine eng = BowEngine.open(disk, "mem", bs);
        eng.discard(32L * bs, 32L * bs);
        eng.startCheckpoint();
        write(eng, 5L * bs, new byte[bs]);
        eng.flush();
        BowEngine again = BowEngine.resume(disk, "mem");
        assertEquals(0, again.freeBytes());
        byte[] before = disk.snapshot();
        DeviceException e = assertThrows(DeviceException.class, () -> write(again, 6L * bs, new byte[bs]));
        assertEquals(Errno.ENOSPC, e.errno());
        assertArrayEquals(before, disk.snapshot());
        write(again, 5L * bs, new byte[bs]);   // already changed: in place, no space needed
        again.discard(5L * bs, bs);            // changed and unused: free space again
        assertEquals(bs, again.freeBytes());
        write(again, 6L * bs, new byte[bs]);
        assertArrayEquals(Arrays.copyOfRange(image, 0, 5 * bs), Arrays.copyOfRange(rolledBack(disk.snapshot()), 0, 5 * bs));
    }
}
