package bow.ctl;

import bow.blockdev.BlockDevice;
import bow.blockdev.FileBlockDevice;
import bow.bowmode.BowEngine;
import bow.daemon.Daemon;
import bow.daemon.DaemonConfig;
import bow.daemon.PathDetailsEngine;
import bow.lifecycle.CheckpointRecord;
import bow.restore.CheckpointImage;
import bow.snapshot.PersistentEngine;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Random;
import java.util.Set;

import static bow.ctl.OfflineCommandsTest.bowctl;
import static org.junit.jupiter.api.Assertions.*;

/** The lifecycle commands in-process with a temporary record (and a real daemon where they need one). */
class LifecycleCommandsTest {
    @TempDir Path dir;

    private Path rec() { return dir.resolve("checkpoint.rec"); }

    private OfflineCommandsTest.Run run(String... args) {
        String[] all = Arrays.copyOf(args, args.length + 2);
        all[args.length] = "--record";
        all[args.length + 1] = rec().toString();
        return bowctl(all);
    }

    private void record(int retries) throws Exception {
        CheckpointRecord.start("bow", dir.resolve("dev.img").toString(), null, retries, "test").write(rec());
    }

    @Test
    void bootAttemptsCountDownToRollback() throws Exception {
        record(3);
        assertEquals(0, run("needs-checkpoint").code());
        for (int boot = 1; boot <= 3; boot++) {
            assertEquals(1, run("needs-rollback").code(), "before boot " + boot);
            OfflineCommandsTest.Run r = run("boot-attempt");
            assertEquals(0, r.code(), r.toString());
            assertTrue(r.out().contains("boot attempt " + boot + " "), r.out());
            assertEquals(3 - boot, CheckpointRecord.read(rec()).orElseThrow().retries());
        }
        OfflineCommandsTest.Run nr = run("needs-rollback");
        assertEquals(0, nr.code(), "after 3 boot attempts the 4th boot rolls back");
        assertTrue(nr.out().contains("no boot retries left after 3 attempts"), nr.out());
        OfflineCommandsTest.Run fourth = run("boot-attempt");
        assertEquals(ExitCodes.INVALID_STATE, fourth.code());
        assertTrue(fourth.err().contains("rollback needed"), fourth.err());
        assertEquals(CheckpointRecord.State.ROLLBACK_REQUESTED, CheckpointRecord.read(rec()).orElseThrow().state());
        assertEquals(0, run("needs-checkpoint").code(), "still a checkpoint until rolled back");
    }

    @Test
    void retriesMinusOneNeverRollsBackOnTheCount() throws Exception {
        record(-1);
        for (int boot = 1; boot <= 30; boot++) {
            assertEquals(0, run("boot-attempt").code());
            assertEquals(1, run("needs-rollback").code());
        }
        CheckpointRecord r = CheckpointRecord.read(rec()).orElseThrow();
        assertEquals(-1, r.retries());
        assertEquals(30, r.bootAttempts());
        assertEquals(0, run("abort").code());
        assertEquals(0, run("needs-rollback").code(), "abort still rolls back");
    }

    @Test
    void abortRequestsRollbackAndCommitIsRefused() throws Exception {
        record(5);
        assertEquals(0, run("abort", "--reason", "bad\nupdate").code());
        CheckpointRecord r = CheckpointRecord.read(rec()).orElseThrow();
        assertEquals(CheckpointRecord.State.ROLLBACK_REQUESTED, r.state());
        assertEquals("aborted: bad update", r.stateReason());
        assertEquals(0, run("needs-rollback").code());
        OfflineCommandsTest.Run c = run("commit", "--control", dir.resolve("none.sock").toString());
        assertEquals(ExitCodes.INVALID_STATE, c.code(), c.toString());
        assertTrue(c.err().contains("requests a rollback"), c.err());
        assertTrue(Files.exists(rec()));
        assertEquals(ExitCodes.INVALID_STATE, run("boot-attempt").code());
    }

    @Test
    void abortRetryKeepsTryingWhileBootsAreLeft() throws Exception {
        record(2);
        assertEquals(0, run("boot-attempt").code());
        OfflineCommandsTest.Run a = run("abort", "--retry");
        assertEquals(0, a.code());
        assertTrue(a.out().contains("tries the update again (1 boot left)"), a.out());
        assertEquals(1, run("needs-rollback").code());
        assertEquals(0, run("boot-attempt").code());
        assertEquals(0, run("abort", "--retry").code());
        assertEquals(0, run("needs-rollback").code(), "no boots left: --retry becomes a rollback request");
        assertEquals(CheckpointRecord.State.ROLLBACK_REQUESTED, CheckpointRecord.read(rec()).orElseThrow().state());
    }

    @Test
    void noRecord() {
        assertEquals(1, run("needs-checkpoint").code());
        assertEquals(1, run("needs-rollback").code());
        assertEquals(ExitCodes.NO_CHECKPOINT, run("boot-attempt").code());
        assertEquals(ExitCodes.NO_CHECKPOINT, run("abort").code());
        OfflineCommandsTest.Run r = run("rollback");
        assertEquals(ExitCodes.NO_CHECKPOINT, r.code());
        assertTrue(r.err().contains("no checkpoint record at " + rec()), r.err());
    }

    @Test
    void corruptRecordIsExit4Everywhere() throws Exception {
        record(3);
        byte[] b = Files.readAllBytes(rec());
        b[b.length / 2] ^= 4;
        Files.write(rec(), b);
        for (String cmd : new String[] {"needs-checkpoint", "needs-rollback", "boot-attempt", "abort", "rollback"}) {
            OfflineCommandsTest.Run r = run(cmd);
            assertEquals(ExitCodes.LOG_INVALID, r.code(), cmd + ": " + r);
            assertTrue(r.err().contains("checkpoint record " + rec() + " is unreadable: checksum mismatch"), cmd + ": " + r.err());
        }
        assertArrayEquals(b, Files.readAllBytes(rec()), "a corrupt record is never rewritten");
    }

    @Test
    void rollbackFromTheRecordRestoresBowAndRemovesTheRecord() throws Exception {
        long seed = new Random().nextLong();
        CheckpointImage c = CheckpointImage.build(4096, 1500, seed, 450);
        Path img = dir.resolve("dev.img");
        Files.write(img, c.image);
        CheckpointRecord.start("bow", img.toString(), null, 0, "").write(rec());
        OfflineCommandsTest.Run r = run("rollback", "--control", dir.resolve("none.sock").toString());
        assertEquals(0, r.code(), "seed " + seed + ": " + r);
        assertEquals(-1, c.firstUnrestoredBlock(Files.readAllBytes(img)), "seed " + seed);
        assertFalse(Files.exists(rec()));
        // a crash after the restore but before the record went: running it again only removes the record
        CheckpointRecord.start("bow", img.toString(), null, 0, "").write(rec());
        OfflineCommandsTest.Run again = run("rollback", "--control", dir.resolve("none.sock").toString());
        assertEquals(0, again.code(), again.toString());
        assertTrue(again.out().contains("nothing to roll back"), again.out());
        assertFalse(Files.exists(rec()));
        assertEquals(ExitCodes.USAGE, run("rollback", "--cow", "/x").code());
    }

    private static byte[] pattern(int n, long seed) {
        byte[] b = new byte[n];
        new Random(seed).nextBytes(b);
        return b;
    }

    /** A persistent checkpoint on files with some origin writes; returns the origin's bytes before them. */
    private byte[] persistentCheckpoint(Path origin, Path cow) throws Exception {
        byte[] before = pattern(4 << 20, 7);
        Files.write(origin, before);
        FileBlockDevice.createSparse(cow, 2 << 20);
        try (BlockDevice o = FileBlockDevice.open(origin, false); BlockDevice c = FileBlockDevice.open(cow, false);
             PersistentEngine e = PersistentEngine.open(o, c, PersistentEngine.Options.defaults())) {
            e.startCheckpoint();
            BlockDevice dev = e.exports().get("");
            for (int i = 0; i < 20; i++) dev.write(i * 65536L + 4096, ByteBuffer.wrap(pattern(8192, i)));
            dev.flush();
        }
        assertFalse(Arrays.equals(before, Files.readAllBytes(origin)));
        return before;
    }

    @Test
    void rollbackPersistentWithDeviceAndCow() throws Exception {
        Path origin = dir.resolve("origin.img"), cow = dir.resolve("cow.img");
        byte[] before = persistentCheckpoint(origin, cow);
        assertEquals(ExitCodes.USAGE, bowctl("rollback", "--mode", "persistent", "--device", origin.toString()).code());
        OfflineCommandsTest.Run r = bowctl("rollback", "--mode", "persistent", "--device", origin.toString(), "--cow", cow.toString());
        assertEquals(0, r.code(), r.toString());
        assertTrue(r.out().startsWith("rolled back " + origin + " from " + cow + ": "), r.out());
        assertArrayEquals(before, Files.readAllBytes(origin));
        assertEquals(ExitCodes.NO_CHECKPOINT, bowctl("rollback", "--mode", "persistent", "--device", origin.toString(), "--cow", cow.toString()).code());
    }

    @Test
    void rollbackPersistentFromTheRecord() throws Exception {
        Path origin = dir.resolve("origin.img"), cow = dir.resolve("cow.img");
        byte[] before = persistentCheckpoint(origin, cow);
        CheckpointRecord.start("persistent", origin.toString(), cow.toString(), 1, "").write(rec());
        OfflineCommandsTest.Run r = run("rollback", "--control", dir.resolve("none.sock").toString());
        assertEquals(0, r.code(), r.toString());
        assertArrayEquals(before, Files.readAllBytes(origin));
        assertFalse(Files.exists(rec()));
    }

    private Daemon daemon(Path img) throws Exception {
        FileBlockDevice dev = FileBlockDevice.open(img, false);
        BowEngine e = BowEngine.open(dev, img.toString(), 4096);
        DaemonConfig cfg = new DaemonConfig("bow", img, null, 4096, 0, false, false, dir.resolve("nbd.sock"), null, false, false,
                dir.resolve("control.sock"), Set.of(), null);
        Daemon d = Daemon.create(new PathDetailsEngine(e, img, null), cfg);
        d.start(null);
        return d;
    }

    @Test
    void checkpointStartWritesTheRecordAndCommitRemovesIt() throws Exception {
        Path img = dir.resolve("dev.img");
        Files.write(img, pattern(8 << 20, 3));
        Daemon d = daemon(img);
        String ctl = dir.resolve("control.sock").toString();
        try {
            OfflineCommandsTest.Run refused = run("checkpoint", "start", "--retries", "2", "--control", ctl);
            assertNotEquals(0, refused.code(), "no free space known yet: " + refused);
            assertFalse(Files.exists(rec()), "a refused start leaves no record");

            assertEquals(0, bowctl("trim", "--offset", "4194304", "--length", "2097152", "--control", ctl).code());
            OfflineCommandsTest.Run s = run("checkpoint", "start", "--retries", "2", "--reason", "OTA 7", "--control", ctl);
            assertEquals(0, s.code(), s.toString());
            CheckpointRecord r = CheckpointRecord.read(rec()).orElseThrow();
            assertEquals("bow", r.mode());
            assertEquals(img.toAbsolutePath().toString(), r.device());
            assertEquals(2, r.retries());
            assertEquals("OTA 7", r.reason());
            assertEquals(ExitCodes.INVALID_STATE, run("checkpoint", "start", "--retries", "2", "--control", ctl).code(),
                    "a second start is refused while a record exists");
            OfflineCommandsTest.Run rb = run("rollback", "--control", ctl);
            assertEquals(ExitCodes.INVALID_STATE, rb.code(), "no offline rollback under a running daemon: " + rb);
            assertTrue(Files.exists(rec()));

            OfflineCommandsTest.Run c = run("commit", "--control", ctl);
            assertEquals(0, c.code(), c.toString());
            assertFalse(Files.exists(rec()));
            // a record left over from a crash between the commit and its removal: commit again just removes it
            r.write(rec());
            OfflineCommandsTest.Run c2 = run("commit", "--control", ctl);
            assertEquals(0, c2.code(), c2.toString());
            assertTrue(c2.out().contains("left over"), c2.out());
            assertFalse(Files.exists(rec()));
        } finally {
            d.requestStop();
            d.stop();
        }
    }

    @Test
    void lowSpaceAbortShowsInStatusAndTheRecordAndBlocksCommit() throws Exception {
        Path img = dir.resolve("dev.img");
        Files.write(img, pattern(8 << 20, 4));
        BowEngine e = BowEngine.open(FileBlockDevice.open(img, false), img.toString(), 4096);
        PathDetailsEngine described = new PathDetailsEngine(e, img, null);
        bow.lifecycle.LowSpacePolicy policy = new bow.lifecycle.LowSpacePolicy(described, 1L << 40,
                bow.lifecycle.LowSpacePolicy.Action.ABORT, rec(), img.toAbsolutePath().toString());
        DaemonConfig cfg = new DaemonConfig("bow", img, null, 4096, 0, false, false, dir.resolve("nbd.sock"), null, false, false,
                dir.resolve("control.sock"), Set.of(), null);
        Daemon d = Daemon.create(policy.guard(), cfg);
        d.start(null);
        String ctl = dir.resolve("control.sock").toString();
        try {
            assertEquals(0, bowctl("trim", "--offset", "4194304", "--length", "2097152", "--control", ctl).code());
            assertFalse(policy.check(), "no checkpoint yet");
            assertEquals(0, run("checkpoint", "start", "--retries", "3", "--control", ctl).code());
            assertTrue(policy.check());
            OfflineCommandsTest.Run st = bowctl("status", "--json", "--control", ctl);
            assertTrue(st.out().contains("\"low_space_taken\":\"abort at "), st.out());
            assertTrue(st.out().contains("\"writes\":\"refused"), st.out());
            assertEquals(0, run("needs-rollback").code());
            assertTrue(CheckpointRecord.read(rec()).orElseThrow().lowSpaceAction().startsWith("abort at "));
            assertEquals(ExitCodes.INVALID_STATE, run("commit", "--control", ctl).code());
            assertEquals(ExitCodes.INVALID_STATE, bowctl("commit", "--control", ctl, "--record", dir.resolve("other.rec").toString()).code(),
                    "the daemon refuses the commit too");
        } finally {
            d.requestStop();
            d.stop();
        }
    }

    @Test
    void supportsChecksTheRecordDirectory() throws Exception {
        Path ro = dir.resolve("ro");
        Files.createDirectories(ro);
        OfflineCommandsTest.Run r = bowctl("supports", "--record", dir.resolve("sub/x/checkpoint.rec").toString());
        assertTrue(r.out().contains("record directory " + dir.resolve("sub/x") + ": writable"), r.out());
        boolean attach = r.out().contains(": yes");
        assertEquals(attach ? 0 : 1, r.code(), r.out());
        assertTrue(r.out().contains(attach ? "checkpoints supported" : "checkpoints NOT supported"), r.out());
        OfflineCommandsTest.Run bad = bowctl("supports", "--record", "/proc/version/checkpoint.rec");
        assertEquals(1, bad.code());
        assertTrue(bad.out().contains("NOT writable"), bad.out());
    }
}
