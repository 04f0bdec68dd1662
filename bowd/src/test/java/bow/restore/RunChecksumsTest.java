package bow.restore;

import bow.blockdev.BlockDevice;
import bow.blockdev.FileBlockDevice;
import bow.blockdev.MemoryBlockDevice;
import bow.bowlog.BowCrc;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** The parallel, device-ordered run checksums against a plain CRC of the same bytes, on every device kind. */
class RunChecksumsTest {
    @TempDir Path dir;

    /** Runs in random order, some overlapping, some adjacent (one window), some longer than half a window. */
    private static void check(BlockDevice dev, byte[] data, Random r, boolean expectMapping) throws Exception {
        try (RunChecksums sums = new RunChecksums(dev)) {
            assertEquals(expectMapping, sums.mapping(), dev.getClass().getSimpleName());
            int n = 1 + r.nextInt(60);
            long[] off = new long[n];
            int[] len = new int[n];
            for (int i = 0; i < n; i++) {
                len[i] = r.nextInt(8) == 0 ? RunChecksums.WINDOW / 2 + r.nextInt(4096) : 512 * (1 + r.nextInt(64));
                len[i] = Math.min(len[i], data.length / 2);
                if (i > 0 && r.nextInt(3) == 0) off[i] = off[i - 1] + len[i - 1];          // adjacent
                else if (i > 0 && r.nextInt(4) == 0) off[i] = off[i - 1] + len[i - 1] / 2;  // overlapping
                else off[i] = 512L * r.nextInt(data.length / 512);
                off[i] = Math.min(off[i], data.length - len[i]);
            }
            int[] got = sums.compute(off, len);
            for (int i = 0; i < n; i++) {
                assertEquals(BowCrc.update(0, data, (int) off[i], len[i]), got[i], "run " + i + " at " + off[i] + " +" + len[i]);
            }
            assertEquals(expectMapping, sums.mapping(), "mapping was not given up");
        }
    }

    @Test
    void agreesWithACrcOfTheBytesOnMemoryFileAndImage() throws Exception {
        long seed = Long.getLong("bow.test.seed", new Random().nextLong());
        Random r = new Random(seed);
        byte[] data = new byte[3 * RunChecksums.WINDOW + 8192];
        r.nextBytes(data);
        Path img = dir.resolve("dev.img");
        Files.write(img, data);
        int rounds = Math.max(1, Integer.getInteger("bow.test.seeds", 300) / 100);
        for (int k = 0; k < rounds; k++) {
            check(new MemoryBlockDevice(data), data, r, false);
            try (ImageFile f = ImageFile.open(img)) {
                check(f, data, r, true);
            }
            try (FileBlockDevice f = FileBlockDevice.open(img, true)) {
                check(f, data, r, true);
            }
        }
    }

    /** A byte of backed-up data flipped in an image file: verify through the mappings names the same entry as through reads. */
    @Test
    void damagedBackupDataIsFoundThroughTheMappings() throws Exception {
        long seed = Long.getLong("bow.test.seed", new Random().nextLong());
        Random rnd = new Random(seed);
        for (int bs : new int[] {512, 4096}) {
            CheckpointImage c = CheckpointImage.build(bs, bs == 4096 ? 1500 : 900, seed, bs == 4096 ? 450 : 250);
            Path good = dir.resolve("good-" + bs + ".img");
            Files.write(good, c.image);
            try (ImageFile f = ImageFile.open(good)) {
                LogChain.Summary ok = LogInspector.verify(f, "img", ProgressListener.NONE);
                assertEquals(c.entries, ok.entries(), "seed " + seed);
            }
            LogInspector.Dump d = LogInspector.dump(new bow.blockdev.MemoryBlockDevice(c.image), "img");
            LogInspector.SequenceInfo s = d.sequences().get(rnd.nextInt(d.sequences().size()));
            LogInspector.EntryInfo e = s.entries().get(rnd.nextInt(s.entries().size()));
            byte[] img = c.image.clone();
            img[(int) (e.dataBlock() * bs) + rnd.nextInt(bs)] ^= 0x40;
            String viaReads = assertThrows(bow.bowlog.LogCorruptException.class,
                    () -> LogInspector.verify(new MemoryBlockDevice(img), "img", ProgressListener.NONE)).getMessage();
            assertTrue(viaReads.matches("log sequence \\d+, entry \\d+: checksum mismatch: expected 0x[0-9a-f]{8}, actual 0x[0-9a-f]{8}.*"),
                    "seed " + seed + ": " + viaReads);
            Path bad = dir.resolve("bad-" + bs + ".img");
            Files.write(bad, img);
            try (ImageFile f = ImageFile.open(bad)) {
                assertEquals(viaReads, assertThrows(bow.bowlog.LogCorruptException.class,
                        () -> LogInspector.verify(f, "img", ProgressListener.NONE)).getMessage(), "seed " + seed);
            }
            try (FileBlockDevice f = FileBlockDevice.open(bad, false)) {
                assertEquals(viaReads, assertThrows(bow.bowlog.LogCorruptException.class, () -> new Restore(f, "img").run()).getMessage());
            }
            assertArrayEquals(img, Files.readAllBytes(bad), "a refused rollback must not write");
        }
    }

    /**
     * The walk looks one sequence ahead (it reads and validates the previous log block while the
     * newest sequence's checksums run); a bad entry of the newer sequence is still what is reported
     * when the older log block is bad too, and the older block is then never listed as rejected.
     */
    @Test
    void aNewerBadEntryIsReportedBeforeABadOlderLogBlock() throws Exception {
        long seed = Long.getLong("bow.test.seed", new Random().nextLong());
        for (int bs : new int[] {512, 4096}) {
            CheckpointImage c = CheckpointImage.build(bs, bs == 4096 ? 1500 : 900, seed, bs == 4096 ? 450 : 250);
            assertTrue(c.sequences >= 2, "seed " + seed);
            byte[] olderOnly = c.image.clone();
            Images.damagePreviousLog(olderOnly, bs, l -> l.setMagic(0x0BADF00D));   // re-signs block 0's entries over it
            byte[] both = olderOnly.clone();
            int off = Images.entryField(0, 1, 20);
            int good = Images.le32(both, off);
            Images.putLe32(both, off, ~good);
            Path img = dir.resolve("both-" + bs + ".img");
            Files.write(img, both);
            try (ImageFile f = ImageFile.open(img)) {
                String m = assertThrows(bow.bowlog.LogCorruptException.class, () -> LogInspector.verify(f, "img", ProgressListener.NONE)).getMessage();
                assertTrue(m.startsWith(String.format("log sequence %d, entry 1: checksum mismatch: expected 0x%08x, actual 0x%08x",
                        c.sequences - 1, ~good, good)), "seed " + seed + ": " + m);
                LogInspector.Dump d = LogInspector.dump(f, "img");
                assertEquals(1, d.sequences().size(), "seed " + seed);
                assertTrue(d.sequences().get(0).validated());
            }
            Path older = dir.resolve("older-" + bs + ".img");
            Files.write(older, olderOnly);
            try (ImageFile f = ImageFile.open(older)) {
                String m = assertThrows(bow.bowlog.LogCorruptException.class, () -> LogInspector.verify(f, "img", ProgressListener.NONE)).getMessage();
                assertTrue(m.contains("bad magic 0x0badf00d") && m.contains("log sequence " + (c.sequences - 2)), "seed " + seed + ": " + m);
                LogInspector.Dump d = LogInspector.dump(f, "img");
                assertEquals(2, d.sequences().size(), "seed " + seed);
                assertFalse(d.sequences().get(1).validated(), "the older block is listed as rejected");
                assertEquals(d.sequences().get(0).count(), d.sequences().get(0).entries().size(), "every newer entry was checked");
            }
        }
    }

    @Test
    void mappingOffStillReads() throws Exception {
        byte[] data = new byte[1 << 20];
        new Random(4).nextBytes(data);
        Path img = dir.resolve("small.img");
        Files.write(img, data);
        System.setProperty("bow.restore.noMmap", "true");
        try (ImageFile f = ImageFile.open(img)) {
            check(f, data, new Random(5), false);
        } finally {
            System.clearProperty("bow.restore.noMmap");
        }
    }

    @Test
    void imageFileIsReadOnlyAndSizedLikeTheFile() throws Exception {
        Path img = dir.resolve("ro.img");
        Files.write(img, new byte[8192]);
        try (ImageFile f = ImageFile.open(img)) {
            assertEquals(8192, f.size());
            assertThrows(bow.blockdev.DeviceException.class, () -> f.write(0, java.nio.ByteBuffer.allocate(512)));
            assertThrows(bow.blockdev.DeviceException.class, () -> f.read(8192 - 256, java.nio.ByteBuffer.allocate(512)));
        }
        assertArrayEquals(new byte[8192], Files.readAllBytes(img));
        assertThrows(java.io.IOException.class, () -> ImageFile.open(dir.resolve("absent.img")));
    }
}
