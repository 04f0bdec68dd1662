package bow.ctl;

import bow.lifecycle.CheckpointRecord;
import bow.restore.CheckpointImage;
import bow.restore.Images;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

/** bowctl's fast path (no picocli) answers the record commands exactly as the picocli commands do, and leaves the rest to picocli. */
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

    /** A record command run once through picocli and once on the fast path, each on the same record bytes. */
    private void sameOnRecord(Path rec, byte[] bytes, String... args) throws Exception {
        if (bytes != null) Files.write(rec, bytes); else Files.deleteIfExists(rec);
        OfflineCommandsTest.Run slow = OfflineCommandsTest.bowctl(args);
        String slowRec = Files.exists(rec) ? CheckpointRecord.read(rec).get().toString() : null;
        if (bytes != null) Files.write(rec, bytes); else Files.deleteIfExists(rec);
        OfflineCommandsTest.Run quick = fast(args);
        String quickRec = Files.exists(rec) ? CheckpointRecord.read(rec).get().toString() : null;
        String what = String.join(" ", args);
        assertEquals(slow.code(), quick.code(), "exit code of " + what);
        assertEquals(slow.out(), quick.out(), "stdout of " + what);
        assertEquals(slow.err(), quick.err(), "stderr of " + what);
        assertEquals(slowRec, quickRec, "the record after " + what);
    }

    @Test
    void recordCommandsAnswerLikeTheirCommands() throws Exception {
        Path rec = dir.resolve("checkpoint.rec");
        String r = "--record=" + rec;
        for (String[] args : new String[][] {{"needs-rollback", r}, {"needs-commit", r}, {"boot-attempt", r}, {"abort", r},
                {"abort", "--retry", "--reason", "test", r}, {"supports", r}}) {
            sameOnRecord(rec, null, args);                                    // no record
        }
        CheckpointRecord.start("bow", dir.resolve("dev.img").toString(), null, 1, "OTA 1.4").write(rec);
        byte[] active = Files.readAllBytes(rec);
        sameOnRecord(rec, active, "needs-rollback", r);
        sameOnRecord(rec, active, "boot-attempt", r);                         // one retry used: 0
        sameOnRecord(rec, active, "abort", "--retry", "--reason", "bad screen", "--record", rec.toString());
        sameOnRecord(rec, active, "abort", r);
        sameOnRecord(rec, active, "needs-commit", r, "--device", dir.resolve("dev.img").toString());
        Files.write(rec, active);
        assertEquals(0, fast("boot-attempt", r).code());
        assertEquals(ExitCodes.INVALID_STATE, fast("boot-attempt", r).code(), "the second boot has no retry left");
        assertEquals(0, fast("needs-rollback", r).code(), "so a rollback is needed");
    }

    @Test
    void logVerifyAnswersLikeTheCommand() throws Exception {
        CheckpointImage c = CheckpointImage.build(1024, 900, 7, 250, true);
        Path img = dir.resolve("dev.img");
        Files.write(img, c.image);
        same("log", "verify", "--device", img.toString());
        assertEquals(0, fast("log", "verify", "--device", img.toString()).code());
        byte[] bad = c.image.clone();
        Images.damagePreviousLog(bad, 1024, l -> l.setCount(0));
        Files.write(img, bad);
        same("log", "verify", "--device=" + img);
        assertEquals(ExitCodes.LOG_INVALID, fast("log", "verify", "--device", img.toString()).code());
        Files.write(img, new byte[1 << 20]);
        same("log", "verify", "--device", img.toString());                  // no checkpoint: 3
        same("log", "verify", "--device", dir.resolve("none.img").toString());
    }

    @Test
    void rollbackAnswersLikeTheCommand() throws Exception {
        CheckpointImage c = CheckpointImage.build(1024, 900, 11, 250, true);
        Path img = dir.resolve("dev.img");
        String[] args = {"rollback", "--device", img.toString(), "--yes"};
        Files.write(img, c.image);
        OfflineCommandsTest.Run slow = OfflineCommandsTest.bowctl(args);
        byte[] slowBytes = Files.readAllBytes(img);
        Files.write(img, c.image);
        OfflineCommandsTest.Run quick = fast(args);
        assertEquals(0, quick.code(), quick.err());
        assertEquals(slow.code(), quick.code());
        assertEquals(slow.err(), quick.err());
        String took = " in [0-9.]+ s";   // the only difference: how long each took
        assertEquals(slow.out().replaceAll(took, ""), quick.out().replaceAll(took, ""));
        assertTrue(quick.out().startsWith("rolled back " + img + ": "), quick.out());
        assertTrue(java.util.Arrays.equals(slowBytes, Files.readAllBytes(img)), "the same device after both rollbacks");
        same("rollback", "-y", "--device", img.toString());                  // rolled back already: 3
        same("rollback", "--record", dir.resolve("none.rec").toString());   // no record: 3
        same("rollback", "--device", img.toString(), "--mode", "shared");   // no --cow
        same("rollback", "--mode", "persistent", "--record", dir.resolve("none.rec").toString());   // --mode without --device: 2
    }

    @Test
    void leavesEverythingElseToPicocli() {
        StringWriter sink = new StringWriter();
        PrintWriter w = new PrintWriter(sink);
        assertNull(FastPath.tryRun(new String[] {"needs-checkpoint", "--help"}, w, w));
        assertNull(FastPath.tryRun(new String[] {"needs-checkpoint", "--record"}, w, w));
        assertNull(FastPath.tryRun(new String[] {}, w, w));
        for (String[] args : new String[][] {
                {"--help"}, {"--version"}, {"-h"}, {"status", "--help"}, {"status", "-h"}, {"status", "-V"}, {"status", "--jsn"},
                {"status", "--json", "--json"}, {"status", "--json=true"}, {"status", "extra"}, {"status", "--control"},
                {"status", "--control="}, {"status", "--control", "@args"}, {"status", "@args"}, {"status", "--"}, {"status", "-"},
                {"status", "--control", "a", "--control", "b"}, {"trim", "--offset", "0x10", "--length", "4096"},
                {"trim", "--offset", "010", "--length", "4096"}, {"trim", "--offset", "4096"}, {"trim", "--length", "99999999999999999999"},
                {"checkpoint"}, {"checkpoint", "stop"}, {"checkpoint", "start", "--retries", "-1"}, {"checkpoint", "start", "--retries=x"},
                {"snapshot"}, {"snapshot", "delete"}, {"snapshot", "delete", "a", "b"}, {"snapshot", "rollback", "a"},
                {"snapshot", "create", "--name"}, {"snapshot", "list", "a"}, {"ranges"}, {"log", "verify"}, {"rollback", "-y", "--yes"}, {"rollback", "-yy"},
                {"shared", "check"}, {"abort", "--reason"}, {"needs-commit", "--device"}, {"statuss"}}) {
            assertNull(FastPath.tryRun(args, w, w), String.join(" ", args));
        }
        assertEquals("", sink.toString());
    }
}
