package bow.bowmode;

import bow.blockdev.MemoryBlockDevice;
import org.junit.jupiter.api.Test;

import java.util.List;
import java.util.Random;

import static bow.bowmode.BowTestSupport.assertEqualOutside;
import static bow.bowmode.BowTestSupport.rolledBack;
import static bow.bowmode.BowTestSupport.write;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

/**
 * Where backups go. A filesystem fills free space from low addresses (ext4 block groups from
 * the front), so backups taken from the top of the highest free run are not written over by
 * the update's new files, and each overwritten block of checkpointed data is copied once.
 */
class BowEnginePlacementTest {
    static final int BS = 4096;

    @Test
    void newFilesWrittenFromTheLowEndOfFreeSpaceDoNotMoveBackups() throws Exception {
        int blocks = 1024, freeFrom = 512;
        byte[] image = new byte[BS * blocks];
        new Random(7).nextBytes(image);
        MemoryBlockDevice mem = new MemoryBlockDevice(image);
        BowEngine eng = BowEngine.open(mem, "placement", BS);
        eng.discard((long) freeFrom * BS, (long) (blocks - freeFrom) * BS);
        List<long[]> free = eng.freeRangesAtStart();
        eng.startCheckpoint();
        Random r = new Random(11);
        for (int round = 0; round < 8; round++) {
            // rewrite some checkpointed blocks in place ...
            for (int i = 0; i < 16; i++) {
                long b = 1 + r.nextInt(freeFrom - 1);
                byte[] d = new byte[BS];
                r.nextBytes(d);
                write(eng, b * BS, d);
            }
            // ... and write new files into free space, lowest blocks first, as ext4 does
            for (int i = 0; i < 24; i++) {
                long b = freeFrom + round * 24 + i;
                byte[] d = new byte[BS];
                r.nextBytes(d);
                write(eng, b * BS, d);
            }
        }
        var d = eng.status().details();
        long original = Long.parseLong(d.get("backup_original_bytes"));
        long moved = Long.parseLong(d.get("backup_moved_bytes"));
        assertEquals(0, moved, "no backup was written over by the new files (" + original + " bytes of checkpointed data backed up)");
        // bytes backed up / bytes of checkpointed data overwritten: 1.0 plus block 0's entry and log copies (target 1.1)
        long backed = eng.status().backedUpBytes();
        assertTrue(backed >= original && backed <= original * 11 / 10,
                backed + " bytes backed up to protect " + original + " bytes of checkpointed data");
        assertEqualOutside(image, rolledBack(mem.snapshot()), free, "rollback after the update workload");
    }
}
