package bow.ctl;

import bow.lifecycle.CheckpointRecord;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** bowctl's fast path for needs-checkpoint answers exactly as the picocli command does. */
class FastPathTest {
    @TempDir Path dir;

    private OfflineCommandsTest.Run fast(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        Integer code = FastPath.tryRun(args, new PrintWriter(out, true), new PrintWriter(err, true));
        assertTrue(code != null, "fast path taken for " + String.join(" ", args));
        return new OfflineCommandsTest.Run(code, out.toString(), err.toString());
    }

    private void same(String... args) {
        OfflineCommandsTest.Run slow = OfflineCommandsTest.bowctl(args);
        OfflineCommandsTest.Run quick = fast(args);
        assertEquals(slow.code(), quick.code(), "exit code");
        assertEquals(slow.out(), quick.out(), "stdout");
        assertEquals(slow.err(), quick.err(), "stderr");
    }

    @Test
    void answersLikeTheCommand() throws Exception {
        Path rec = dir.resolve("checkpoint.rec");
        same("needs-checkpoint", "--record", rec.toString());                // no record: 1
        same("needs-checkpoint", "--record=" + rec);
        CheckpointRecord.start("bow", dir.resolve("dev.img").toString(), null, 3, "OTA 1.3").write(rec);
        same("needs-checkpoint", "--record", rec.toString());                // running: 0 and the summary
        assertEquals(0, fast("needs-checkpoint", "--record", rec.toString()).code());
        byte[] b = Files.readAllBytes(rec);
        b[b.length / 2] ^= 4;
        Files.write(rec, b);
        same("needs-checkpoint", "--record", rec.toString());                // corrupt: 4 and the message
        assertEquals(ExitCodes.LOG_INVALID, fast("needs-checkpoint", "--record", rec.toString()).code());
    }

    @Test
    void leavesEverythingElseToPicocli() {
        StringWriter sink = new StringWriter();
        PrintWriter w = new PrintWriter(sink);
        assertNull(FastPath.tryRun(new String[] {"needs-checkpoint", "--help"}, w, w));
        assertNull(FastPath.tryRun(new String[] {"needs-checkpoint", "--record"}, w, w));
        assertNull(FastPath.tryRun(new String[] {"needs-rollback"}, w, w));
        assertNull(FastPath.tryRun(new String[] {}, w, w));
        assertEquals("", sink.toString());
    }
}
