package bow.ctl;

import bow.blockdev.FileBlockDevice;
import bow.snapshot.PersistentEngine;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** {@code bowctl rollback --mode persistent}: the offline merge of a dm-snapshot COW. */
class PersistentRollbackCommandTest {
    @TempDir Path dir;

    @Test
    void mergesTheCowBackAndThenHasNothingToDo() throws Exception {
        Path origin = dir.resolve("origin.img"), cow = dir.resolve("cow.img");
        byte[] start = new byte[8 << 20];
        new Random(1).nextBytes(start);
        Files.write(origin, start);
        FileBlockDevice.createSparse(cow, 8 << 20);
        try (FileBlockDevice o = FileBlockDevice.open(origin, false); FileBlockDevice c = FileBlockDevice.open(cow, false)) {
            PersistentEngine eng = PersistentEngine.open(o, c, PersistentEngine.Options.defaults());
            eng.startCheckpoint();
            byte[] junk = new byte[1234 * 512];
            new Random(2).nextBytes(junk);
            eng.exports().get("").write(512 * 77, ByteBuffer.wrap(junk));
            eng.exports().get("").flush();
            eng.close();
        }
        assertFalse(java.util.Arrays.equals(start, Files.readAllBytes(origin)), "the origin changed");

        Ext4EndToEndTest.Run usage = Ext4EndToEndTest.bowctl("rollback", "--mode", "persistent", "--device", origin.toString());
        assertEquals(ExitCodes.USAGE, usage.code(), usage.toString());

        Ext4EndToEndTest.Run r = Ext4EndToEndTest.bowctl("rollback", "--mode", "persistent", "--device", origin.toString(), "--cow", cow.toString());
        assertEquals(ExitCodes.OK, r.code(), r.toString());
        assertTrue(r.out().contains("chunks"), r.out());
        assertArrayEquals(start, Files.readAllBytes(origin), "the origin is back to the snapshot");

        Ext4EndToEndTest.Run again = Ext4EndToEndTest.bowctl("rollback", "--mode", "persistent", "--device", origin.toString(), "--cow", cow.toString());
        assertEquals(ExitCodes.NO_CHECKPOINT, again.code(), again.toString());
    }
}
