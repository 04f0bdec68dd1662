package bow.ctl;

import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.bowlog.LogBlock;
import bow.restore.CheckpointImage;
import bow.restore.Images;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.AccessDeniedException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** The offline commands run in-process through picocli, on image files. */
class OfflineCommandsTest {
    @TempDir Path dir;

    record Run(int code, String out, String err) {}

    static Run bowctl(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        CommandLine cl = Bowctl.commandLine();
        cl.setOut(new PrintWriter(out, true));
        cl.setErr(new PrintWriter(err, true));
        int code = cl.execute(args);
        return new Run(code, out.toString(), err.toString());
    }

    private Path write(byte[] img) throws Exception {
        Path p = Files.createTempFile(dir, "dev", ".img");
        Files.write(p, img);
        return p;
    }

    private static CheckpointImage image(int bs, long seed) {
        return CheckpointImage.build(bs, bs == 4096 ? 1500 : 900, seed, bs == 4096 ? 450 : 250);
    }

    @Test
    void rollbackRestoresThenFindsNoCheckpoint() throws Exception {
        for (int bs : new int[] {512, 4096}) {
            long seed = new Random().nextLong();
            CheckpointImage c = image(bs, seed);
            Path img = write(c.image);
            Run r = bowctl("rollback", "--device", img.toString());
            assertEquals(ExitCodes.OK, r.code(), "seed " + seed + ": " + r);
            assertTrue(r.out().startsWith("rolled back " + img + ": " + c.sequences + " sequences, " + c.entries + " entries, "), r.out());
            assertTrue(r.out().contains("bytes restored in"), r.out());
            assertEquals(-1, c.firstUnrestoredBlock(Files.readAllBytes(img)), "seed " + seed);

            byte[] after = Files.readAllBytes(img);
            Run again = bowctl("rollback", "--device", img.toString());
            assertEquals(ExitCodes.NO_CHECKPOINT, again.code(), again.toString());
            assertEquals("bowctl: no checkpoint on " + img + "\n", again.err());
            assertArrayEquals(after, Files.readAllBytes(img));
            assertEquals(ExitCodes.NO_CHECKPOINT, bowctl("log", "verify", "--device", img.toString()).code());
            assertEquals(ExitCodes.NO_CHECKPOINT, bowctl("log", "dump", "--device", img.toString(), "--json").code());
        }
    }

    @Test
    void everyCorruptionIsExitCode4AndLeavesTheDeviceAlone() throws Exception {
        long seed = new Random().nextLong();
        for (int bs : new int[] {512, 4096}) {
            CheckpointImage c = image(bs, seed);
            int cap = LogBlock.capacity(bs);

            byte[] badMagic = c.image.clone();
            Images.putLe32(badMagic, 0, 0x0a0b0c0d);
            byte[] badChecksum = c.image.clone();
            int off = Images.entryField(0, 1, 20);
            int good = Images.le32(badChecksum, off);
            Images.putLe32(badChecksum, off, ~good);
            byte[] bigCount = c.image.clone();
            Images.putLe32(bigCount, 12, cap + 1);
            byte[] wrongSeq = c.image.clone();
            Images.damagePreviousLog(wrongSeq, bs, l -> l.initHeader(LogBlock.MAGIC, bs, (int) l.count(), 1000, l.sector0()));
            byte[] truncated = Arrays.copyOf(c.image, c.image.length / 3 / bs * bs);

            List<Object[]> cases = List.of(
                    new Object[] {badMagic, "bad magic 0x0a0b0c0d"},
                    new Object[] {badChecksum, String.format("log sequence %d, entry 1: checksum mismatch: expected 0x%08x, actual 0x%08x",
                            c.sequences - 1, ~good, good)},
                    new Object[] {bigCount, "count " + (cap + 1) + " outside 1.." + cap},
                    new Object[] {wrongSeq, "wrong sequence 1000 (expected " + (c.sequences - 2) + ")"},
                    new Object[] {truncated, "the device"});
            for (Object[] k : cases) {
                byte[] bytes = (byte[]) k[0];
                String expected = (String) k[1];
                String ctx = "seed " + seed + ", bs " + bs + ", case " + expected;
                Path img = write(bytes);
                Run r = bowctl("rollback", "--device", img.toString());
                assertEquals(ExitCodes.LOG_INVALID, r.code(), ctx + ": " + r);
                assertTrue(r.err().startsWith("bowctl: log failed validation: "), ctx + ": " + r.err());
                assertTrue(r.err().contains(expected), ctx + ": " + r.err());
                assertTrue(r.err().contains(img + " was not modified"), r.err());
                assertEquals("", r.out());
                assertArrayEquals(bytes, Files.readAllBytes(img), ctx + ": device changed");

                Run v = bowctl("log", "verify", "--device", img.toString());
                assertEquals(ExitCodes.LOG_INVALID, v.code(), ctx);
                assertTrue(v.err().contains(expected), ctx + ": " + v.err());

                Run d = bowctl("log", "dump", "--device", img.toString(), "--json");
                assertEquals(ExitCodes.LOG_INVALID, d.code(), ctx);
                @SuppressWarnings("unchecked")
                Map<String, Object> json = (Map<String, Object>) MiniJson.parse(d.out());
                assertEquals(false, json.get("valid"));
                assertTrue(((String) json.get("error")).contains(expected), ctx);
                assertArrayEquals(bytes, Files.readAllBytes(img), ctx + ": device changed");
            }
        }
    }

    @Test
    void forceRollForwardCommitsABadLog() throws Exception {
        long seed = new Random().nextLong();
        CheckpointImage c = image(4096, seed);
        byte[] bad = c.image.clone();
        Images.damagePreviousLog(bad, 4096, l -> l.setCount(0));
        Path img = write(bad);
        Run r = bowctl("rollback", "--device", img.toString(), "--force-roll-forward");
        assertEquals(ExitCodes.OK, r.code(), "seed " + seed + ": " + r);
        assertTrue(r.err().contains("log failed validation: ") && r.err().contains("count 0"), r.err());
        assertTrue(r.out().startsWith("rolled forward " + img + ": the checkpoint is committed"), r.out());
        byte[] expected = bad.clone();
        System.arraycopy(bad, c.sector0Block * 4096, expected, 0, 4096);
        assertArrayEquals(expected, Files.readAllBytes(img));
        assertEquals(ExitCodes.NO_CHECKPOINT, bowctl("rollback", "--device", img.toString(), "--force-roll-forward").code());
    }

    @Test
    void verifyAndDump() throws Exception {
        long seed = new Random().nextLong();
        CheckpointImage c = CheckpointImage.build(1024, 900, seed, 250, true);
        Path img = write(c.image);
        Run v = bowctl("log", "verify", "--device", img.toString());
        assertEquals(ExitCodes.OK, v.code(), v.toString());
        assertTrue(v.out().startsWith("OK: " + c.sequences + " sequences, " + c.entries + " entries, "), v.out());

        Run d = bowctl("log", "dump", "--device", img.toString(), "--json");
        assertEquals(ExitCodes.OK, d.code(), d.toString());
        @SuppressWarnings("unchecked")
        Map<String, Object> json = (Map<String, Object>) MiniJson.parse(d.out());
        assertEquals(true, json.get("valid"));
        assertNull(json.get("error"));
        assertEquals(1024L, json.get("blockSize"));
        assertEquals((long) c.image.length, json.get("deviceBytes"));
        @SuppressWarnings("unchecked")
        List<Map<String, Object>> seqs = (List<Map<String, Object>>) json.get("sequences");
        assertEquals(c.sequences, seqs.size());
        long entries = 0;
        for (int i = 0; i < seqs.size(); i++) {
            Map<String, Object> s = seqs.get(i);
            assertEquals((long) (c.sequences - 1 - i), s.get("sequence"));
            assertEquals("BOW", s.get("magic"));
            assertEquals(0x0100L, s.get("headerVersion"));
            @SuppressWarnings("unchecked")
            List<Map<String, Object>> es = (List<Map<String, Object>>) s.get("entries");
            assertEquals(s.get("count"), (long) es.size());
            assertEquals(0L, es.get(0).get("sourceSector"));
            for (int j = 0; j < es.size(); j++) {
                assertEquals((long) j, es.get(j).get("index"));
                String verdict = (String) es.get(j).get("verdict");
                assertTrue(verdict.equals("ok") || verdict.equals("unchecked"), verdict);
                assertEquals(verdict.equals("unchecked"), es.get(j).get("checksum").equals(0L));
            }
            entries += es.size();
        }
        assertEquals((long) c.entries, entries);
        assertEquals((long) c.entries, ((Map<?, ?>) json.get("totals")).get("entries"));
        // The newest sequence is read from block 0; sector0 is where the live block 0 is.
        assertEquals(0L, seqs.get(0).get("readFromBlock"));
        assertEquals((long) c.sector0Block * 2, seqs.get(0).get("sector0"));

        Run t = bowctl("log", "dump", "--device", img.toString());
        assertEquals(ExitCodes.OK, t.code());
        assertTrue(t.out().contains("sequence " + (c.sequences - 1) + " (read from block 0): magic BOW"), t.out());
        assertTrue(t.out().contains("  entry    0: source 0, dest "), t.out());
        String[] lines = t.out().split("\n");
        assertTrue(lines[lines.length - 1].startsWith("OK: " + c.sequences + " sequences, " + c.entries + " entries, "), t.out());
        assertEquals(c.entries, t.out().lines().filter(l -> l.startsWith("  entry ")).count());
        assertArrayEquals(c.image, Files.readAllBytes(img), "log commands must not write");
    }

    @Test
    void usageErrorsAreExitCode2() {
        // Without --device, rollback takes the device from the checkpoint record: none there is exit 3.
        assertEquals(ExitCodes.NO_CHECKPOINT, bowctl("rollback", "--record", dir.resolve("none.rec").toString()).code());
        assertEquals(ExitCodes.USAGE, bowctl("rollback", "--mode", "persistent").code());
        assertEquals(ExitCodes.USAGE, bowctl("rollback", "--device").code());
        assertEquals(ExitCodes.USAGE, bowctl("rollback", "--device", "x", "--bogus").code());
        assertEquals(ExitCodes.USAGE, bowctl("log").code());
        assertEquals(ExitCodes.USAGE, bowctl("log", "frobnicate").code());
        assertEquals(ExitCodes.USAGE, bowctl("log", "dump").code());
        assertEquals(ExitCodes.USAGE, bowctl().code());
        Run help = bowctl("rollback", "--help");
        assertEquals(ExitCodes.OK, help.code());
        assertTrue(help.out().contains("--force-roll-forward") && help.out().contains("Exit codes:"), help.out());
    }

    @Test
    void missingDeviceIsAFailure() {
        Run r = bowctl("rollback", "--device", dir.resolve("nope.img").toString());
        assertEquals(ExitCodes.FAILURE, r.code());
        assertTrue(r.err().contains("no such file or device"), r.err());
    }

    @Test
    void permissionErrorsMapTo6() throws Exception {
        assertEquals(ExitCodes.PERMISSION_DENIED, OfflineDevice.exitCode(new AccessDeniedException("/dev/x")));
        assertEquals(ExitCodes.PERMISSION_DENIED, OfflineDevice.exitCode(new DeviceException(Errno.EPERM, "read-only")));
        assertEquals(ExitCodes.FAILURE, OfflineDevice.exitCode(new DeviceException(Errno.EIO, "bad sector")));

        Path img = write(image(512, 1).image);
        Files.setPosixFilePermissions(img, PosixFilePermissions.fromString("r--r--r--"));
        // File modes do not stop root; an immutable file does (EPERM), so root runs the same check.
        boolean root = bow.blockdev.LinuxNative.getuid() == 0;
        if (root) {
            Process p = new ProcessBuilder("chattr", "+i", img.toString()).inheritIO().start();
            assertEquals(0, p.waitFor(), "chattr +i (needed to deny root) failed");
        }
        try {
            Run r = bowctl("rollback", "--device", img.toString());
            assertEquals(ExitCodes.PERMISSION_DENIED, r.code(), r.toString());
            assertTrue(r.err().contains("permission denied"), r.err());
        } finally {
            if (root) new ProcessBuilder("chattr", "-i", img.toString()).inheritIO().start().waitFor();
        }
    }

    @Test
    void halfRestoredDeviceWithABadLogIsNotRolledForward() throws Exception {
        long seed = new Random().nextLong();
        CheckpointImage c = image(512, seed);
        // A rollback cut right after it marked the log WOB and applied its first batch.
        bow.blockdev.testing.PowerCutDevice pc = new bow.blockdev.testing.PowerCutDevice(c.image);
        pc.armCrashAfterOps(2 + 20, new Random(seed));
        assertThrows(java.io.IOException.class, () -> new bow.restore.Restore(pc, "pc").run());
        byte[] half = pc.durableImage();
        assertEquals(LogBlock.MAGIC_RESTORING, Images.le32(half, 0));
        Images.putLe32(half, 12, LogBlock.capacity(512) + 3);
        Path img = write(half);
        Run r = bowctl("rollback", "--device", img.toString());
        assertEquals(ExitCodes.LOG_INVALID, r.code(), r.toString());
        Run f = bowctl("rollback", "--device", img.toString(), "--force-roll-forward");
        assertEquals(ExitCodes.INVALID_STATE, f.code(), f.toString());
        assertTrue(f.err().contains("interrupted"), f.err());
        assertArrayEquals(half, Files.readAllBytes(img));
    }

    @Test
    void progressLineOnATerminal() {
        StringWriter w = new StringWriter();
        ProgressLine p = new ProgressLine(new PrintWriter(w), true);
        p.progress("restore", 0, 4 << 20);
        p.progress("restore", 4 << 20, 4 << 20);
        p.clear();
        String s = w.toString();
        assertTrue(s.startsWith("\rrestore: 0.0 MiB / 4.0 MiB (0%)"), s);
        assertTrue(s.contains("\rrestore: 4.0 MiB / 4.0 MiB (100%)"), s);
        assertTrue(s.endsWith("\r"), s);

        StringWriter quiet = new StringWriter();
        ProgressLine off = new ProgressLine(new PrintWriter(quiet), false);
        off.progress("verify", 1, -1);
        off.clear();
        assertEquals("", quiet.toString());
    }

    @Test
    void persistentRollbackRefusesAnOriginTheCowWasNotMadeFor() throws Exception {
        int size = 1 << 20;
        byte[] init = new byte[size];
        new Random(42).nextBytes(init);
        bow.blockdev.MemoryBlockDevice origin = new bow.blockdev.MemoryBlockDevice(init);
        bow.blockdev.MemoryBlockDevice cow = new bow.blockdev.MemoryBlockDevice(new byte[size + (64 << 10)]);
        bow.snapshot.PersistentEngine e = bow.snapshot.PersistentEngine.open(origin, cow, bow.snapshot.PersistentEngine.Options.defaults());
        e.startCheckpoint();
        e.exports().get("").write(0, java.nio.ByteBuffer.wrap(new byte[64 << 10]));
        e.exports().get("").flush();
        Path originImg = write(origin.snapshot());
        Path cowImg = write(cow.snapshot());
        byte[] cowBefore = cow.snapshot();

        byte[] bigger = new byte[2 * size];
        Path wrongSize = write(bigger);
        Run r = bowctl("rollback", "--mode", "persistent", "--device", wrongSize.toString(), "--cow", cowImg.toString());
        assertEquals(ExitCodes.WRONG_ORIGIN, r.code(), r.toString());
        assertTrue(r.err().contains("is not the origin of this COW") && r.err().contains(size + "-byte origin"), r.err());
        assertArrayEquals(bigger, Files.readAllBytes(wrongSize), "the wrong device was not touched");
        assertArrayEquals(cowBefore, Files.readAllBytes(cowImg), "nor the COW");

        byte[] other = new byte[size];
        new Random(43).nextBytes(other);
        Path sameSize = write(other);
        Run f = bowctl("rollback", "--mode", "persistent", "--device", sameSize.toString(), "--cow", cowImg.toString());
        assertEquals(ExitCodes.WRONG_ORIGIN, f.code(), f.toString());
        assertTrue(f.err().contains("fingerprint"), f.err());
        assertArrayEquals(other, Files.readAllBytes(sameSize));

        Run ok = bowctl("rollback", "--mode", "persistent", "--device", originImg.toString(), "--cow", cowImg.toString());
        assertEquals(ExitCodes.OK, ok.code(), ok.toString());
        assertArrayEquals(init, Files.readAllBytes(originImg), "the right origin is rolled back");
    }
}
