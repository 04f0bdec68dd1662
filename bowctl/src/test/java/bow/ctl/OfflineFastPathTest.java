package bow.ctl;

import bow.blockdev.MemoryBlockDevice;
import bow.restore.CheckpointImage;
import bow.restore.Images;
import bow.restore.LogInspector;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code log verify} and {@code rollback --device} on {@link FastPath}, without picocli: the same outputs
 * and exit codes as through picocli, for good logs, a damaged checksum field and damaged backup data
 * (which forms FastPath declines is FastPathTest's).
 */
class OfflineFastPathTest {
    @TempDir Path dir;

    /** The fast path's answer, or null when it declined the arguments. */
    private static OfflineCommandsTest.Run fast(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        Integer code = FastPath.tryRun(args, new PrintWriter(out, true), new PrintWriter(err, true));
        return code == null ? null : new OfflineCommandsTest.Run(code, out.toString(), err.toString());
    }

    private Path write(String name, byte[] img) throws Exception {
        Path p = dir.resolve(name);
        Files.write(p, img);
        return p;
    }

    /** A checkpoint image, and copies with a damaged checksum field and with one flipped byte of backed-up data. */
    private static byte[][] images(int bs, long seed) throws Exception {
        Random rnd = new Random(seed);
        CheckpointImage c = CheckpointImage.build(bs, bs == 4096 ? 1500 : 900, seed, bs == 4096 ? 450 : 250);
        byte[] badField = c.image.clone();
        int off = Images.entryField(0, 1, 20);
        Images.putLe32(badField, off, ~Images.le32(badField, off));
        LogInspector.Dump d = LogInspector.dump(new MemoryBlockDevice(c.image), "img");
        LogInspector.SequenceInfo s = d.sequences().get(rnd.nextInt(d.sequences().size()));
        LogInspector.EntryInfo e = s.entries().get(rnd.nextInt(s.entries().size()));
        byte[] badData = c.image.clone();
        badData[(int) (e.dataBlock() * bs) + rnd.nextInt(bs)] ^= 0x40;
        return new byte[][] {c.image, badField, badData};
    }

    @Test
    void verifyAnswersAsPicocliDoes() throws Exception {
        long seed = new Random().nextLong();
        for (int bs : new int[] {512, 4096}) {
            byte[][] imgs = images(bs, seed);
            int[] want = {ExitCodes.OK, ExitCodes.LOG_INVALID, ExitCodes.LOG_INVALID};
            for (int k = 0; k < imgs.length; k++) {
                Path img = write("v" + bs + "-" + k + ".img", imgs[k]);
                String ctx = "seed " + seed + ", bs " + bs + ", image " + k;
                OfflineCommandsTest.Run slow = OfflineCommandsTest.bowctl("log", "verify", "--device", img.toString());
                assertEquals(want[k], slow.code(), ctx + ": " + slow);
                for (String[] args : new String[][] {{"log", "verify", "--device", img.toString()}, {"log", "verify", "--device=" + img}}) {
                    OfflineCommandsTest.Run f = fast(args);
                    assertNotNull(f, ctx);
                    assertEquals(slow, f, ctx);
                }
                if (k > 0) assertTrue(slow.err().startsWith("bowctl: log failed validation: log sequence "), slow.err());
                assertArrayEquals(imgs[k], Files.readAllBytes(img));
            }
        }
        Path none = dir.resolve("absent.img");
        assertEquals(OfflineCommandsTest.bowctl("log", "verify", "--device", none.toString()), fast("log", "verify", "--device", none.toString()));
        Path blank = write("blank.img", new byte[1 << 16]);
        OfflineCommandsTest.Run b = fast("log", "verify", "--device", blank.toString());
        assertEquals(ExitCodes.NO_CHECKPOINT, b.code(), b.toString());
        assertEquals(OfflineCommandsTest.bowctl("log", "verify", "--device", blank.toString()), b);
    }

    @Test
    void rollbackRestoresOrRefusesAsPicocliDoes() throws Exception {
        long seed = new Random().nextLong();
        for (int bs : new int[] {512, 4096}) {
            byte[][] imgs = images(bs, seed);
            for (int k = 0; k < imgs.length; k++) {
                String ctx = "seed " + seed + ", bs " + bs + ", image " + k;
                Path viaFast = write("f" + bs + "-" + k + ".img", imgs[k]);
                Path viaPicocli = write("p" + bs + "-" + k + ".img", imgs[k]);
                OfflineCommandsTest.Run f = fast("rollback", "-y", "--device", viaFast.toString(), "--mode", "bow");
                OfflineCommandsTest.Run p = OfflineCommandsTest.bowctl("rollback", "-y", "--device", viaPicocli.toString(), "--mode", "bow");
                assertNotNull(f, ctx);
                assertEquals(p.code(), f.code(), ctx + ": " + f + " / " + p);
                assertEquals(k == 0 ? ExitCodes.OK : ExitCodes.LOG_INVALID, f.code(), ctx + ": " + f);
                assertEquals(p.err().replace(viaPicocli.toString(), "IMG"), f.err().replace(viaFast.toString(), "IMG"), ctx);
                // "... restored in 0.1 s": the same but for the time
                assertEquals(p.out().replace(viaPicocli.toString(), "IMG").replaceAll("in [0-9.]+ s", "in T s"),
                        f.out().replace(viaFast.toString(), "IMG").replaceAll("in [0-9.]+ s", "in T s"), ctx);
                assertArrayEquals(Files.readAllBytes(viaPicocli), Files.readAllBytes(viaFast), ctx);
                if (k > 0) {
                    assertArrayEquals(imgs[k], Files.readAllBytes(viaFast), ctx + ": a refused rollback must not write");
                    assertTrue(f.err().contains(viaFast + " was not modified"), f.err());
                } else {
                    assertTrue(f.out().startsWith("rolled back " + viaFast + ": "), f.out());
                    assertEquals(ExitCodes.NO_CHECKPOINT, fast("rollback", "--device", viaFast.toString(), "--yes").code());
                }
            }
        }
    }
}
