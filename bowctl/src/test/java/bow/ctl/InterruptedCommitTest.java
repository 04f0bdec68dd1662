package bow.ctl;

import bow.bowlog.LogBlock;
import bow.lifecycle.CheckpointRecord;
import bow.restore.CheckpointImage;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;

import static bow.ctl.OfflineCommandsTest.bowctl;
import static org.junit.jupiter.api.Assertions.*;

/**
 * A commit interrupted by a crash or a signal (online or offline) is finished by the next
 * {@code bowctl commit --device}, by bow-boot and by bow-recovery, which say so; meanwhile it is
 * neither rolled back nor aborted.
 */
class InterruptedCommitTest {
    @TempDir Path dir;

    private Path rec() { return dir.resolve("checkpoint.rec"); }
    private Path img() { return dir.resolve("dev.img"); }

    private OfflineCommandsTest.Run run(String... args) {
        String[] all = Arrays.copyOf(args, args.length + 2);
        all[args.length] = "--record";
        all[args.length + 1] = rec().toString();
        return bowctl(all);
    }

    private static int count(byte[] image) {
        return ByteBuffer.wrap(image).order(ByteOrder.LITTLE_ENDIAN).getInt(12);
    }

    /** A checkpoint whose newest log keeps entries past sector 0 ({@code many}) or only in sector 0. */
    private static CheckpointImage checkpoint(boolean many) {
        for (long seed = new Random().nextLong(); ; seed++) {
            CheckpointImage c = CheckpointImage.build(4096, 600, seed, many ? 200 : 4);
            if ((28 + 24 * count(c.image) > 512) == many) return c;
        }
    }

    /** What a crash after the commit's first write and flush leaves: the live block 0's sectors 1..7 over block 0. */
    private static byte[] halfCommitted(CheckpointImage c) {
        byte[] b = c.image.clone();
        System.arraycopy(b, c.sector0Block * 4096 + 512, b, 512, 4096 - 512);
        return b;
    }

    private void record(CheckpointRecord.State state) throws Exception {
        CheckpointRecord r = CheckpointRecord.start("bow", img().toString(), null, 3, "test");
        if (state != CheckpointRecord.State.ACTIVE) r = r.withState(state, "commit started at test time");
        r.write(rec());
    }

    @Test
    void commitDeviceFinishesACommitTheDeviceShowsAndSaysSo() throws Exception {
        CheckpointImage c = checkpoint(true);
        Files.write(img(), halfCommitted(c));
        OfflineCommandsTest.Run nc = run("needs-commit", "--device", img().toString());
        assertEquals(0, nc.code(), nc.toString());
        assertTrue(nc.out().contains("interrupted commit on " + img()), nc.out());
        OfflineCommandsTest.Run v = bowctl("log", "verify", "--device", img().toString());
        assertEquals(ExitCodes.LOG_INVALID, v.code(), v.toString());
        assertTrue(v.err().contains("this is not corruption but an interrupted commit"), v.err());
        OfflineCommandsTest.Run cm = run("commit", "--device", img().toString());
        assertEquals(0, cm.code(), cm.toString());
        assertTrue(cm.out().contains("finishing an interrupted commit of " + img()), cm.out());
        assertArrayEquals(c.liveView(), Files.readAllBytes(img()));
        assertEquals(1, run("needs-commit", "--device", img().toString()).code());
    }

    @Test
    void aRecordedCommitIsFinishedNotRolledBackOrAborted() throws Exception {
        CheckpointImage c = checkpoint(false);
        byte[] half = halfCommitted(c);
        Files.write(img(), half);
        record(CheckpointRecord.State.COMMIT_REQUESTED);
        assertEquals(1, run("needs-commit", "--device", img().toString() + ".other").code(), "another device");
        OfflineCommandsTest.Run nc = run("needs-commit");
        assertEquals(0, nc.code(), nc.toString());
        assertTrue(nc.out().contains("the checkpoint record says a commit of " + img()), nc.out());
        assertEquals(1, run("needs-rollback").code());
        OfflineCommandsTest.Run rb = run("rollback", "--yes", "--control", dir.resolve("none.sock").toString());
        assertEquals(ExitCodes.INVALID_STATE, rb.code(), rb.toString());
        assertTrue(rb.err().contains("refusing to roll back: a commit of"), rb.err());
        OfflineCommandsTest.Run ab = run("abort");
        assertEquals(ExitCodes.INVALID_STATE, ab.code(), ab.toString());
        assertTrue(ab.err().contains("refusing to abort"), ab.err());
        assertEquals(ExitCodes.INVALID_STATE, run("boot-attempt").code());
        assertEquals(CheckpointRecord.State.COMMIT_REQUESTED, CheckpointRecord.read(rec()).orElseThrow().state());
        assertArrayEquals(half, Files.readAllBytes(img()), "nothing touched the device");
        OfflineCommandsTest.Run cm = run("commit", "--device", img().toString());
        assertEquals(0, cm.code(), cm.toString());
        assertTrue(cm.out().contains("finishing an interrupted commit of " + img()), cm.out());
        assertArrayEquals(c.liveView(), Files.readAllBytes(img()));
        assertFalse(Files.exists(rec()));
    }

    @Test
    void aRunningCheckpointIsNotAnInterruptedCommit() throws Exception {
        for (boolean many : new boolean[] {true, false}) {
            CheckpointImage c = checkpoint(many);
            Files.write(img(), c.image);
            record(CheckpointRecord.State.ACTIVE);
            OfflineCommandsTest.Run nc = run("needs-commit");
            assertEquals(1, nc.code(), "entries past sector 0: " + many + ": " + nc);
            assertTrue(nc.out().contains("no interrupted commit on " + img()), nc.out());
            assertEquals(0, bowctl("log", "verify", "--device", img().toString()).code());
        }
    }

    @Test
    void aCommitFinishedOnTheDeviceButNotInTheRecord() throws Exception {
        CheckpointImage c = checkpoint(false);
        Files.write(img(), c.liveView());
        record(CheckpointRecord.State.COMMIT_REQUESTED);
        OfflineCommandsTest.Run cm = run("commit", "--device", img().toString());
        assertEquals(0, cm.code(), cm.toString());
        assertTrue(cm.out().contains("committed already"), cm.out());
        assertFalse(Files.exists(rec()));
    }

    @Test
    void commitMarksTheRecordAndAFailureBeforeAnyWriteUnmarksIt() throws Exception {
        CheckpointImage c = checkpoint(true);
        byte[] bad = c.image.clone();
        ByteBuffer.wrap(bad).order(ByteOrder.LITTLE_ENDIAN).putLong(20, bad.length / 512);   // sector0 outside the device
        Files.write(img(), bad);
        record(CheckpointRecord.State.ACTIVE);
        OfflineCommandsTest.Run cm = run("commit", "--device", img().toString());
        assertEquals(ExitCodes.LOG_INVALID, cm.code(), cm.toString());
        CheckpointRecord r = CheckpointRecord.read(rec()).orElseThrow();
        assertEquals(CheckpointRecord.State.ACTIVE, r.state(), "the commit never started");
        assertEquals("", r.stateReason());
        // Online with no daemon: never reached, so not started either.
        OfflineCommandsTest.Run on = run("commit", "--control", dir.resolve("none.sock").toString());
        assertEquals(ExitCodes.DAEMON_UNREACHABLE, on.code(), on.toString());
        assertEquals(CheckpointRecord.State.ACTIVE, CheckpointRecord.read(rec()).orElseThrow().state());
        // A good offline commit: the record is marked first, then removed.
        Files.write(img(), c.image);
        assertEquals(0, run("commit", "--device", img().toString()).code());
        assertFalse(Files.exists(rec()));
        assertArrayEquals(c.liveView(), Files.readAllBytes(img()));
    }

    // ------------------------------------------------------------- init scripts

    private record Result(int code, String out, String err) {}

    private Result script(String name) throws Exception {
        Path scripts = InitScriptsEndToEndTest.locateScripts();
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Path bowctl = dir.resolve("bin/bowctl");
        Files.createDirectories(bowctl.getParent());
        Files.writeString(bowctl, "#!/bin/sh\nexec " + java + " -cp '" + System.getProperty("java.class.path") + "' bow.ctl.Bowctl \"$@\"\n");
        Files.setPosixFilePermissions(bowctl, PosixFilePermissions.fromString("rwxr-xr-x"));
        Map<String, String> env = new TreeMap<>();
        env.put("BOWCTL", bowctl.toString());
        env.put("BOWD", "false");
        env.put("BOW_RUN", dir.resolve("run").toString());
        env.put("BOW_RECORD", rec().toString());
        env.put("BOW_ATTACH", "fuse");
        List<String> cmd = new ArrayList<>(List.of("sh", scripts.resolve(name).toString()));
        ProcessBuilder pb = new ProcessBuilder(cmd);
        pb.environment().putAll(env);
        pb.environment().remove("BOW_DEVICE");
        Path o = Files.createTempFile(dir, "out", ".txt"), e = Files.createTempFile(dir, "err", ".txt");
        Process p = pb.redirectOutput(o.toFile()).redirectError(e.toFile()).start();
        if (!p.waitFor(120, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail(name + " timed out");
        }
        Result r = new Result(p.exitValue(), Files.readString(o), Files.readString(e));
        System.out.println("--- " + name + " exit " + r.code + "\n" + r.out + r.err);
        return r;
    }

    @Test
    void bowBootFinishesACommitInterruptedInTheDaemon() throws Exception {
        InitScriptsEndToEndTest.require(InitScriptsEndToEndTest.onPath("sh"), "sh is not installed");
        // The daemon (or an old bowctl) died in the middle of its commit: the record still says ACTIVE.
        CheckpointImage c = checkpoint(true);
        Files.write(img(), halfCommitted(c));
        record(CheckpointRecord.State.ACTIVE);
        Result r = script("bow-boot");
        assertEquals(0, r.code, r.toString());
        assertTrue(r.err.contains("finishing an interrupted commit of " + img()), r.err);
        assertFalse(r.err.contains("leaving it for recovery"), r.err);
        assertArrayEquals(c.liveView(), Files.readAllBytes(img()));
        assertFalse(Files.exists(rec()));
        Result again = script("bow-boot");
        assertEquals(0, again.code, again.toString());
        assertTrue(again.err.contains("no checkpoint"), again.err);
    }

    @Test
    void bowRecoveryFinishesARecordedCommitInsteadOfRollingBack() throws Exception {
        InitScriptsEndToEndTest.require(InitScriptsEndToEndTest.onPath("sh"), "sh is not installed");
        // bowctl commit marked the record, then the system went down before or during the commit's writes;
        // every log entry sits in sector 0, so only the record knows.
        CheckpointImage c = checkpoint(false);
        Files.write(img(), halfCommitted(c));
        record(CheckpointRecord.State.COMMIT_REQUESTED);
        Result r = script("bow-recovery");
        assertEquals(0, r.code, r.toString());
        assertTrue(r.err.contains("finishing an interrupted commit of " + img()), r.err);
        assertArrayEquals(c.liveView(), Files.readAllBytes(img()), "committed, not rolled back");
        assertFalse(Files.exists(rec()));
        assertFalse(LogBlock.looksLikeLog(Arrays.copyOf(Files.readAllBytes(img()), 4)));
    }
}
