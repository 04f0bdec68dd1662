package bow.restore;

import bow.blockdev.MemoryBlockDevice;
import bow.bowlog.LogBlock;
import bow.bowlog.LogCorruptException;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.ValueSource;

import java.util.Arrays;
import java.util.Random;

import static bow.restore.Images.*;
import static org.junit.jupiter.api.Assertions.*;

/** Every damaged log is refused with a message that says what is wrong, and the device is left as it was. */
class RestoreCorruptionTest {
    private static CheckpointImage image(int bs, long seed) {
        return CheckpointImage.build(bs, bs == 4096 ? 1500 : 900, seed, bs == 4096 ? 450 : 250);
    }

    /** Refused by rollback and verify, device untouched, dump names the same error; returns the message. */
    private static String refused(byte[] damaged) throws Exception {
        MemoryBlockDevice dev = new MemoryBlockDevice(damaged);
        LogCorruptException e = assertThrows(LogCorruptException.class, () -> new Restore(dev, "img").run());
        assertArrayEquals(damaged, dev.snapshot(), "a refused rollback must not write");
        LogCorruptException v = assertThrows(LogCorruptException.class, () -> LogInspector.verify(dev, "img", ProgressListener.NONE));
        assertEquals(e.getMessage(), v.getMessage());
        LogInspector.Dump d = LogInspector.dump(dev, "img");
        assertEquals(e.getMessage(), d.error());
        assertFalse(d.sequences().isEmpty());
        assertArrayEquals(damaged, dev.snapshot());
        return e.getMessage();
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096})
    void badMagicInBlock0(int bs) throws Exception {
        CheckpointImage c = image(bs, new Random().nextLong());
        byte[] img = c.image.clone();
        putLe32(img, 0, 0x12345678);
        String m = refused(img);
        assertTrue(m.contains("bad magic 0x12345678"), m);
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096})
    void badMagicInAnOlderLog(int bs) throws Exception {
        long seed = new Random().nextLong();
        CheckpointImage c = image(bs, seed);
        byte[] img = c.image.clone();
        damagePreviousLog(img, bs, l -> l.setMagic(0x0BADF00D));
        String m = refused(img);
        assertTrue(m.contains("bad magic 0x0badf00d") && m.contains("log sequence " + (c.sequences - 2)), "seed " + seed + ": " + m);
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096})
    void badChecksumFieldNamesSequenceEntryExpectedAndActual(int bs) throws Exception {
        long seed = new Random().nextLong();
        CheckpointImage c = image(bs, seed);
        byte[] img = c.image.clone();
        int count = le32(img, 12);
        assertTrue(count >= 2, "seed " + seed);
        int i = 1 + new Random(seed).nextInt(count - 1);
        int off = entryField(0, i, 20);
        int actual = le32(img, off);
        int wrong = actual ^ 0x00010000;
        putLe32(img, off, wrong);
        String m = refused(img);
        assertEquals(String.format("log sequence %d, entry %d: checksum mismatch: expected 0x%08x, actual 0x%08x",
                c.sequences - 1, i, wrong, actual), m.substring(0, m.indexOf(" (")), "seed " + seed);
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096})
    void damagedBackupDataIsFound(int bs) throws Exception {
        long seed = new Random().nextLong();
        Random rnd = new Random(seed);
        CheckpointImage c = image(bs, seed);
        LogInspector.Dump d = LogInspector.dump(new MemoryBlockDevice(c.image), "img");
        // Pick any entry of any sequence and flip one byte of the data the restore would copy back.
        LogInspector.SequenceInfo s = d.sequences().get(rnd.nextInt(d.sequences().size()));
        LogInspector.EntryInfo e = s.entries().get(rnd.nextInt(s.entries().size()));
        byte[] img = c.image.clone();
        img[(int) (e.dataBlock() * bs) + rnd.nextInt(bs)] ^= 0x40;
        String m = refused(img);
        assertTrue(m.matches("log sequence \\d+, entry \\d+: checksum mismatch: expected 0x[0-9a-f]{8}, actual 0x[0-9a-f]{8}.*"),
                "seed " + seed + ": " + m);
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096})
    void countTooLarge(int bs) throws Exception {
        CheckpointImage c = image(bs, new Random().nextLong());
        byte[] img = c.image.clone();
        int cap = LogBlock.capacity(bs);
        putLe32(img, 12, cap + 1);
        assertTrue(refused(img).contains("count " + (cap + 1) + " outside 1.." + cap));

        byte[] older = c.image.clone();
        damagePreviousLog(older, bs, l -> l.setCount(cap + 7));
        String m = refused(older);
        assertTrue(m.contains("log sequence " + (c.sequences - 2) + ": count " + (cap + 7)), m);
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096})
    void wrongSequenceInAnOlderLog(int bs) throws Exception {
        long seed = new Random().nextLong();
        CheckpointImage c = image(bs, seed);
        byte[] img = c.image.clone();
        damagePreviousLog(img, bs, l -> l.initHeader(LogBlock.MAGIC, bs, (int) l.count(), 99, l.sector0()));
        String m = refused(img);
        assertTrue(m.contains("wrong sequence 99 (expected " + (c.sequences - 2) + ")"), "seed " + seed + ": " + m);
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096})
    void truncatedDevice(int bs) throws Exception {
        long seed = new Random().nextLong();
        CheckpointImage c = image(bs, seed);
        // Cut the image just below the last block any entry or log block uses.
        LogInspector.Dump d = LogInspector.dump(new MemoryBlockDevice(c.image), "img");
        long lastSector = 0;
        for (LogInspector.SequenceInfo s : d.sequences()) {
            for (LogInspector.EntryInfo e : s.entries()) {
                lastSector = Math.max(lastSector, e.entry().destSector() + e.entry().sizeBytes() / 512);
                lastSector = Math.max(lastSector, e.entry().sourceSector() + e.entry().sizeBytes() / 512);
            }
        }
        byte[] img = Arrays.copyOf(c.image, (int) (lastSector * 512 - bs));
        String m = refused(img);
        assertTrue(m.contains("outside the device") || m.contains("not a block inside the device"), "seed " + seed + ": " + m);

        byte[] tiny = Arrays.copyOf(c.image, bs);
        assertTrue(refused(tiny).contains("too small"));
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096})
    void forceRollForwardCommitsABadLog(int bs) throws Exception {
        long seed = new Random().nextLong();
        CheckpointImage c = image(bs, seed);
        byte[] img = c.image.clone();
        damagePreviousLog(img, bs, l -> l.initHeader(LogBlock.MAGIC, bs, (int) l.count(), 42, l.sector0()));
        MemoryBlockDevice dev = new MemoryBlockDevice(img);
        Restore.Result r = new Restore(dev, "img").forceRollForward(true).run();
        assertTrue(r.rolledForward());
        assertTrue(r.validationError().contains("wrong sequence 42"));
        byte[] expected = img.clone();
        System.arraycopy(img, c.sector0Block * bs, expected, 0, bs);
        assertArrayEquals(expected, dev.snapshot(), "seed " + seed);

        // A damaged magic alone does not stop a roll forward (vold would do the same).
        byte[] badMagic = c.image.clone();
        putLe32(badMagic, 0, 0x11111111);
        MemoryBlockDevice dev2 = new MemoryBlockDevice(badMagic);
        assertTrue(new Restore(dev2, "img").forceRollForward(true).run().rolledForward());
        assertArrayEquals(c.liveView(), dev2.snapshot());
    }

    @ParameterizedTest
    @ValueSource(ints = {512, 4096})
    void forceRollForwardDoesNothingOnAGoodLog(int bs) throws Exception {
        CheckpointImage c = image(bs, new Random().nextLong());
        MemoryBlockDevice dev = new MemoryBlockDevice(c.image);
        Restore.Result r = new Restore(dev, "img").forceRollForward(true).run();
        assertFalse(r.rolledForward());
        assertEquals(-1, c.firstUnrestoredBlock(dev.snapshot()));
    }
}
