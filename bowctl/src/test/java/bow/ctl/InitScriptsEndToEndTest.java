package bow.ctl;

import bow.lifecycle.CheckpointRecord;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.attribute.PosixFilePermissions;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The update story through the init scripts themselves (init-scripts/), with a real ext4 through the
 * daemon (bowd as its own process, nbdfuse + losetup): bow-pre-update, changes, boots that fail
 * (each "reboot" kills everything as a power cut would: kill -9 of bowd, lazy unmount, detach,
 * a fresh /run), recovery; and the good path through bow-boot-complete. Needs root, FUSE, nbdfuse,
 * losetup, e2fsprogs: fails in CI without them, skips outside CI.
 */
class InitScriptsEndToEndTest {
    static final long SIZE = 128L << 20;
    static final Path SCRIPTS = locateScripts();

    @TempDir Path dir;
    Path img, mnt, run, rec, out;
    Map<String, String> env = new TreeMap<>();

    static Path locateScripts() {
        Path p = Path.of("").toAbsolutePath();
        for (int i = 0; i < 3 && p != null; i++, p = p.getParent()) {
            if (Files.isDirectory(p.resolve("init-scripts"))) return p.resolve("init-scripts");
        }
        return Path.of("init-scripts");
    }

    static void require(boolean ok, String what) {
        if (ok) return;
        if ("true".equals(System.getenv("CI"))) fail(what + " (CI must provide it)");
        Assumptions.assumeTrue(false, what + ": skipping outside CI");
    }

    static boolean onPath(String tool) {
        for (String d : System.getenv().getOrDefault("PATH", "").split(File.pathSeparator)) {
            if (!d.isEmpty() && Files.isExecutable(Path.of(d, tool))) return true;
        }
        return false;
    }

    @BeforeEach
    void setUp() throws Exception {
        for (String t : List.of("nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "fstrim", "fsfreeze", "mount", "umount", "mountpoint", "sh")) {
            require(onPath(t), "tool " + t + " is not installed");
        }
        require(bow.blockdev.LinuxNative.getuid() == 0, "root is needed (mount, losetup)");
        require(Files.exists(Path.of("/dev/fuse")), "/dev/fuse is missing");
        assertTrue(Files.isExecutable(SCRIPTS.resolve("bow-boot")), "init-scripts not found at " + SCRIPTS);
        img = dir.resolve("disk.img");
        mnt = dir.resolve("mnt");
        run = dir.resolve("run");
        rec = dir.resolve("lib/checkpoint.rec");
        out = Files.createDirectories(dir.resolve("out"));
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        String cp = System.getProperty("java.class.path");
        Path bowd = launcher("bowd", java + " -cp '" + cp + "' bow.daemon.Bowd \"$@\"");
        Path bowctl = launcher("bowctl", java + " -cp '" + cp + "' bow.ctl.Bowctl \"$@\"");
        Path hook = launcher("hook", """
                case $1 in
                  pre-checkpoint) sync; fsfreeze -f "$BOW_MNT" && cp --sparse=always "$BOW_DEVICE" "$OUT/pre.img" ;;
                  post-checkpoint) "$BOWCTL" ranges --json > "$OUT/ranges.json"; rc=$?
                    cp --sparse=always "$BOW_DEVICE" "$OUT/post.img" || rc=1; fsfreeze -u "$BOW_MNT"; exit $rc ;;
                esac
                """);
        env.put("BOWD", bowd.toString());
        env.put("BOWCTL", bowctl.toString());
        env.put("BOW_DEVICE", img.toString());
        env.put("BOW_MNT", mnt.toString());
        env.put("BOW_RUN", run.toString());
        env.put("BOW_RECORD", rec.toString());
        env.put("BOW_ATTACH", "fuse");
        env.put("BOW_RETRIES", "3");
        env.put("BOW_HOOK", hook.toString());
        env.put("OUT", out.toString());
        // The filesystem as it is before the update (made without the daemon).
        bow.blockdev.FileBlockDevice.createSparse(img, SIZE);
        cmd(List.of("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", img.toString())).ok();
        Path m = Files.createDirectories(dir.resolve("setup"));
        cmd(List.of("mount", "-o", "loop", img.toString(), m.toString())).ok();
        try {
            Random r = new Random(42);
            for (int i = 0; i < 50; i++) {
                Path d = Files.createDirectories(m.resolve("dir" + (i % 6)));
                byte[] data = new byte[r.nextInt(200_000) + 1];
                r.nextBytes(data);
                Files.write(d.resolve("file" + i), data);
            }
        } finally {
            cmd(List.of("umount", m.toString())).ok();
        }
    }

    @AfterEach
    void tearDown() throws Exception {
        if (mnt == null) return;   // setUp skipped (a tool missing outside CI): nothing was set up
        cmd(List.of("fsfreeze", "-u", mnt.toString()));
        reboot();
    }

    private Path launcher(String name, String body) throws IOException {
        Path p = dir.resolve("bin").resolve(name);
        Files.createDirectories(p.getParent());
        Files.writeString(p, "#!/bin/sh\n" + (body.contains("\n") ? body : "exec " + body + "\n"));
        Files.setPosixFilePermissions(p, PosixFilePermissions.fromString("rwxr-xr-x"));
        return p;
    }

    // ---------------------------------------------------------------- the stories

    @Test
    void threeFailedBootsThenRecoveryRollsBackExactly() throws Exception {
        Map<String, String> before = mountedManifest();
        script("bow-pre-update").ok();
        assertEquals(3, record().retries());
        byte[] pre = Files.readAllBytes(out.resolve("pre.img"));
        List<long[]> free = freeRanges(Files.readString(out.resolve("ranges.json")));
        assertFalse(free.isEmpty(), "the trim gave the daemon free space");

        // The update writes; the power goes in the middle of it (kill -9 of the daemon while writing).
        replaceHalfTheFiles(new Random(1));
        killMidWorkload(new Random(1));
        for (int boot = 1; boot <= 3; boot++) {
            reboot();
            Result b = script("bow-boot");
            b.ok();
            assertTrue(cmd(List.of("mountpoint", "-q", mnt.toString())).code == 0, "boot " + boot + " mounted the filesystem");
            assertEquals(3 - boot, record().retries(), "boot " + boot);
            assertEquals(boot, record().bootAttempts());
            workload(new Random(10 + boot), 10, 30_000);     // the failing boot changes things too
        }
        reboot();
        assertEquals(0, bowctl("needs-rollback").code, "three boots used the three retries");
        Result r = script("bow-recovery");
        r.ok();
        assertTrue(r.err.contains("rolled back") || r.out.contains("rolled back"), r.toString());
        assertFalse(Files.exists(rec), "the record goes with the rollback");
        assertEquals(1, bowctl("needs-checkpoint").code);
        assertEqualOutside(pre, Files.readAllBytes(img), free);
        cmd(List.of("e2fsck", "-fn", img.toString())).ok();
        assertEquals(before, mountedManifest(), "every file as before the update");
        // The next boot finds nothing to do and leaves the device alone.
        byte[] rolledBack = Files.readAllBytes(img);
        script("bow-boot").ok();
        assertNotEquals(0, cmd(List.of("mountpoint", "-q", mnt.toString())).code);
        assertArrayEquals(rolledBack, Files.readAllBytes(img));
    }

    @Test
    void aFourthBootRollsBackByItself() throws Exception {
        Map<String, String> before = mountedManifest();
        env.put("BOW_RETRIES", "1");
        script("bow-pre-update").ok();
        byte[] pre = Files.readAllBytes(out.resolve("pre.img"));
        List<long[]> free = freeRanges(Files.readString(out.resolve("ranges.json")));
        replaceHalfTheFiles(new Random(5));
        workload(new Random(5), 40);
        reboot();
        script("bow-boot").ok();                     // the one allowed boot
        assertEquals(0, record().retries());
        workload(new Random(6), 10, 30_000);
        reboot();
        Result b = script("bow-boot");             // no retries left: this boot rolls back
        b.ok();
        assertTrue(b.err.contains("rollback needed"), b.err);
        assertFalse(Files.exists(rec));
        assertNotEquals(0, cmd(List.of("mountpoint", "-q", mnt.toString())).code, "nothing mounted after the rollback");
        assertEqualOutside(pre, Files.readAllBytes(img), free);
        cmd(List.of("e2fsck", "-fn", img.toString())).ok();
        assertEquals(before, mountedManifest());
    }

    @Test
    void goodBootCommitsAndKeepsTheChanges() throws Exception {
        script("bow-pre-update").ok();
        replaceHalfTheFiles(new Random(2));
        workload(new Random(2), 60);
        reboot();
        script("bow-boot").ok();
        assertEquals(2, record().retries());
        Result twice = script("bow-boot");
        twice.ok();
        assertTrue(twice.err.contains("already running"), twice.err);
        assertEquals(2, record().retries(), "running bow-boot twice in one boot counts one attempt");
        workload(new Random(3), 10, 30_000);
        Result c = script("bow-boot-complete");
        c.ok();
        assertFalse(Files.exists(rec), "commit removes the record");
        Files.writeString(mnt.resolve("after-commit.txt"), "kept");
        Map<String, String> expected = manifest(mnt);
        stopCleanly();
        assertEquals(ExitCodes.NO_CHECKPOINT, bowctl("rollback", "--device", img.toString(), "--yes").code, "nothing left to roll back");
        cmd(List.of("e2fsck", "-fn", img.toString())).ok();
        assertEquals(expected, mountedManifest());
        Result again = script("bow-boot");
        again.ok();
        assertTrue(again.err.contains("no checkpoint"), again.err);
        assertEquals(0, script("bow-boot-complete").code, "nothing to commit is fine");
    }

    @Test
    void abortDuringABootRollsBackAtTheNextBoot() throws Exception {
        Map<String, String> before = mountedManifest();
        env.put("BOW_RETRIES", "-1");
        script("bow-pre-update").ok();
        byte[] pre = Files.readAllBytes(out.resolve("pre.img"));
        List<long[]> free = freeRanges(Files.readString(out.resolve("ranges.json")));
        workload(new Random(7), 60);
        assertEquals(0, bowctl("abort", "--reason", "health check failed").code);
        assertEquals(ExitCodes.INVALID_STATE, script("bow-boot-complete").code, "a good-boot commit is refused after abort");
        reboot();
        script("bow-boot").ok();
        assertFalse(Files.exists(rec));
        assertEqualOutside(pre, Files.readAllBytes(img), free);
        cmd(List.of("e2fsck", "-fn", img.toString())).ok();
        assertEquals(before, mountedManifest());
    }

    @Test
    void persistentModeFailedBootThenRecoveryMergesBackExactly() throws Exception {
        Map<String, String> before = mountedManifest();
        Path cow = dir.resolve("cow.img");
        bow.blockdev.FileBlockDevice.createSparse(cow, 64L << 20);
        env.put("BOW_MODE", "persistent");
        env.put("BOW_COW", cow.toString());
        env.put("BOW_RETRIES", "2");
        script("bow-pre-update").ok();
        CheckpointRecord r = record();
        assertEquals("persistent", r.mode());
        assertEquals(cow.toAbsolutePath().toString(), r.cow());
        byte[] start = Files.readAllBytes(out.resolve("post.img"));   // the origin when the snapshot was taken
        killMidWorkload(new Random(21));
        reboot();
        script("bow-boot").ok();
        assertEquals(1, record().retries());
        workload(new Random(22), 30);
        reboot();
        script("bow-recovery").ok();
        assertFalse(Files.exists(rec));
        assertArrayEquals(start, Files.readAllBytes(img), "a snapshot mode gives back the whole device exactly");
        cmd(List.of("e2fsck", "-fn", img.toString())).ok();
        assertEquals(before, mountedManifest());
    }

    // ---------------------------------------------------------------- shared mode

    /**
     * shared mode through the scripts: BOW_COW, bowd --mode shared, the checkpoint a snapshot named
     * "checkpoint"; the hook takes another snapshot ("keep") with the filesystem frozen just before
     * it, which no lifecycle step may touch. Returns the origin's image at checkpoint start.
     */
    byte[] sharedPreUpdate(Path cow, int retries) throws Exception {
        bow.blockdev.FileBlockDevice.createSparse(cow, 256L << 20);
        env.put("BOW_MODE", "shared");
        env.put("BOW_COW", cow.toString());
        env.put("BOW_RETRIES", "" + retries);
        env.put("BOW_HOOK", launcher("shared-hook", """
                case $1 in
                  pre-checkpoint) sync; fsfreeze -f "$BOW_MNT" && "$BOWCTL" snapshot create --name keep ;;
                  post-checkpoint) cp --sparse=always "$BOW_DEVICE" "$OUT/post.img"; rc=$?; fsfreeze -u "$BOW_MNT"; exit $rc ;;
                esac
                """).toString());
        Result pre = script("bow-pre-update");
        pre.ok();
        assertFalse(pre.out.contains("trimmed"), "no trim in shared mode: " + pre.out);
        CheckpointRecord r = record();
        assertEquals("shared", r.mode());
        assertEquals(cow.toAbsolutePath().toString(), r.cow());
        assertEquals(List.of("checkpoint", "keep"), snapshotNames());
        return Files.readAllBytes(out.resolve("post.img"));
    }

    /** The names of the live snapshots, sorted, from the running daemon. */
    List<String> snapshotNames() throws Exception {
        Result l = bowctl("snapshot", "list", "--json");
        l.ok();
        @SuppressWarnings("unchecked") Map<String, Object> list = (Map<String, Object>) MiniJson.parse(l.out.trim());
        List<String> names = new ArrayList<>();
        for (Object o : (List<?>) list.get("snapshots")) names.add((String) ((Map<?, ?>) o).get("name"));
        names.sort(null);
        return names;
    }

    /** With the scripts' daemon stopped: the COW checks clean, and "keep" (alone, or with the checkpoint) reads as at checkpoint start. */
    void assertKeepIntact(Path cow, byte[] start, List<String> names) throws Exception {
        OfflineCommandsTest.Run check = OfflineCommandsTest.bowctl("shared", "check", "--cow", cow.toString());
        assertEquals(0, check.code(), check.out() + check.err());
        Path d = Files.createDirectories(dir.resolve("verify"));
        try (BowdProcess b = BowdProcess.start(d, "--mode", "shared", "--device", img.toString(), "--cow", cow.toString())) {
            Path sock = b.nbd;
            Result ls = cmd(List.of(env.get("BOWCTL"), "snapshot", "list", "--json", "--control", b.control.toString()));
            ls.ok();
            for (String n : names) assertTrue(ls.out.contains("\"name\":\"" + n + "\""), ls.out);
            assertEquals(names.size(), ls.out.split("\"id\":").length - 1, ls.out);
            SharedClients.assertSame(start, SharedClients.read(sock, "snapshot-keep", d.resolve("keep.img")), "snapshot keep");
            assertEquals(0, SharedClients.ctl(b.control, "shutdown").code());
            assertEquals(0, b.waitFor(), b.output());
        }
    }

    @Test
    void sharedModeFailedBootsThenRollbackRestoresTheOriginExactly() throws Exception {
        Map<String, String> before = mountedManifest();
        Path cow = dir.resolve("cow.img");
        byte[] start = sharedPreUpdate(cow, 1);
        replaceHalfTheFiles(new Random(31));
        killMidWorkload(new Random(31));
        reboot();
        script("bow-boot").ok();                       // the one boot allowed
        assertTrue(cmd(List.of("mountpoint", "-q", mnt.toString())).code == 0, "the boot mounted the filesystem");
        assertEquals(0, record().retries());
        assertEquals(1, record().bootAttempts());
        assertEquals(List.of("checkpoint", "keep"), snapshotNames());
        workload(new Random(32), 20, 100_000);
        reboot();
        Result b = script("bow-boot");                 // no boots left: this one rolls back
        b.ok();
        assertTrue(b.err.contains("rollback needed") || b.err.contains("rolling back"), b.err);
        assertFalse(Files.exists(rec), "the record goes with the rollback");
        assertNotEquals(0, cmd(List.of("mountpoint", "-q", mnt.toString())).code, "nothing mounted after the rollback");
        assertArrayEquals(start, Files.readAllBytes(img), "the origin is exactly as at checkpoint start");
        cmd(List.of("e2fsck", "-fn", img.toString())).ok();
        assertEquals(before, mountedManifest(), "every file as before the update");
        assertKeepIntact(cow, start, List.of("keep"));
        assertEquals(0, script("bow-recovery").code, "nothing left to roll back");
        assertArrayEquals(start, Files.readAllBytes(img));
    }

    @Test
    void sharedModeRecoveryRollsBackAfterAPowerCut() throws Exception {
        Map<String, String> before = mountedManifest();
        Path cow = dir.resolve("cow.img");
        byte[] start = sharedPreUpdate(cow, 3);
        replaceHalfTheFiles(new Random(41));
        workload(new Random(41), 40);
        reboot();
        Result r = script("bow-recovery");
        r.ok();
        assertTrue(r.err.contains("rolled back"), r.toString());
        assertFalse(Files.exists(rec));
        assertArrayEquals(start, Files.readAllBytes(img), "the origin is exactly as at checkpoint start");
        cmd(List.of("e2fsck", "-fn", img.toString())).ok();
        assertEquals(before, mountedManifest());
        assertKeepIntact(cow, start, List.of("keep"));
    }

    @Test
    void sharedModeGoodBootCommitsAndKeepsTheChanges() throws Exception {
        Path cow = dir.resolve("cow.img");
        byte[] start = sharedPreUpdate(cow, 3);
        replaceHalfTheFiles(new Random(51));
        workload(new Random(51), 40);
        reboot();
        script("bow-boot").ok();
        assertEquals(2, record().retries());
        workload(new Random(52), 10, 30_000);
        Result c = script("bow-boot-complete");
        c.ok();
        assertFalse(Files.exists(rec), "commit removes the record");
        assertEquals(List.of("keep"), snapshotNames(), "commit deletes the checkpoint snapshot and only it");
        Files.writeString(mnt.resolve("after-commit.txt"), "kept");
        Map<String, String> expected = manifest(mnt);
        stopCleanly();
        OfflineCommandsTest.Run rb = OfflineCommandsTest.bowctl("rollback", "--mode", "shared", "--device", img.toString(),
                "--cow", cow.toString(), "--snapshot", "checkpoint", "--yes");
        assertEquals(ExitCodes.NO_CHECKPOINT, rb.code(), "nothing left to roll back: " + rb);
        cmd(List.of("e2fsck", "-fn", img.toString())).ok();
        assertEquals(expected, mountedManifest(), "the update's changes are kept");
        assertKeepIntact(cow, start, List.of("keep"));
        Result again = script("bow-boot");
        again.ok();
        assertTrue(again.err.contains("no checkpoint"), again.err);
    }

    @Test
    void sharedModeAbortRefusesTheCommitAndTheNextBootRollsBack() throws Exception {
        Map<String, String> before = mountedManifest();
        Path cow = dir.resolve("cow.img");
        byte[] start = sharedPreUpdate(cow, -1);
        workload(new Random(61), 40);
        assertEquals(0, bowctl("abort", "--reason", "health check failed").code);
        assertEquals(ExitCodes.INVALID_STATE, script("bow-boot-complete").code, "a good-boot commit is refused after abort");
        assertEquals(List.of("checkpoint", "keep"), snapshotNames(), "the refused commit deleted nothing");
        reboot();
        script("bow-boot").ok();
        assertFalse(Files.exists(rec));
        assertArrayEquals(start, Files.readAllBytes(img), "the origin is exactly as at checkpoint start");
        cmd(List.of("e2fsck", "-fn", img.toString())).ok();
        assertEquals(before, mountedManifest());
        assertKeepIntact(cow, start, List.of("keep"));
    }

    @Test
    void sharedModeRecordWithoutACheckpointSnapshotIsCleanedUp() throws Exception {
        // The power went between writing the record and creating the snapshot: a blank COW.
        Path cow = dir.resolve("cow.img");
        bow.blockdev.FileBlockDevice.createSparse(cow, 64L << 20);
        byte[] image = Files.readAllBytes(img);
        Files.createDirectories(rec.getParent());
        CheckpointRecord.start("shared", img.toString(), cow.toString(), 3, "").write(rec);
        Result b = script("bow-boot");
        b.ok();
        assertTrue(b.err.contains("removing the stale record"), b.err);
        assertFalse(Files.exists(rec));
        assertNotEquals(0, bowctl("status").code, "the daemon is stopped again");
        assertNotEquals(0, cmd(List.of("mountpoint", "-q", mnt.toString())).code);
        assertArrayEquals(image, Files.readAllBytes(img));
    }

    @Test
    void sharedModeNeedsACow() throws Exception {
        env.put("BOW_MODE", "shared");
        Result r = script("bow-pre-update");
        assertEquals(2, r.code, r.toString());
        assertTrue(r.err.contains("BOW_COW is not set"), r.err);
        assertFalse(Files.exists(rec));
    }

    @Test
    void aRecordWithoutACheckpointOnTheDeviceIsCleanedUp() throws Exception {
        // The power went between writing the record and starting the checkpoint.
        byte[] image = Files.readAllBytes(img);
        Files.createDirectories(rec.getParent());
        CheckpointRecord.start("bow", img.toString(), null, 3, "").write(rec);
        Result b = script("bow-boot");
        b.ok();
        assertTrue(b.err.contains("removing the stale record"), b.err);
        assertFalse(Files.exists(rec));
        assertArrayEquals(image, Files.readAllBytes(img));
    }

    // ---------------------------------------------------------------- plumbing

    record Result(int code, String out, String err) {
        Result ok() {
            assertEquals(0, code, this::toString);
            return this;
        }
    }

    Result script(String name) throws Exception {
        Result r = cmd(List.of("sh", SCRIPTS.resolve(name).toString()));
        System.out.println("--- " + name + " exit " + r.code + "\n" + r.out + r.err);
        return r;
    }

    Result bowctl(String... args) throws IOException, InterruptedException {
        List<String> c = new ArrayList<>(List.of(env.get("BOWCTL")));
        c.addAll(Arrays.asList(args));
        return cmd(c);
    }

    Result cmd(List<String> command) throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder(command);
        pb.environment().putAll(env);
        Path o = Files.createTempFile(dir, "out", ".txt"), e = Files.createTempFile(dir, "err", ".txt");
        pb.redirectOutput(o.toFile()).redirectError(e.toFile());
        Process p = pb.start();
        if (!p.waitFor(300, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail(command + " timed out");
        }
        return new Result(p.exitValue(), Files.readString(o), Files.readString(e));
    }

    CheckpointRecord record() throws IOException {
        return CheckpointRecord.read(rec).orElseThrow(() -> new AssertionError("no record at " + rec));
    }

    /** What a power cut does: the daemon and nbdfuse die, mounts and loop devices go, /run is empty again. */
    void reboot() throws Exception {
        Path pid = run.resolve("bowd.pid");
        if (Files.exists(pid)) cmd(List.of("kill", "-9", Files.readString(pid).trim()));
        if (cmd(List.of("mountpoint", "-q", mnt.toString())).code == 0) cmd(List.of("umount", "-l", mnt.toString()));
        Path blockdev = run.resolve("blockdev");
        if (Files.exists(blockdev)) cmd(List.of("losetup", "-d", Files.readString(blockdev).trim()));
        cmd(List.of("fusermount3", "-u", "-z", run.resolve("fuse").toString()));   // a dead FUSE mount does not even stat
        Path fpid = run.resolve("nbdfuse.pid");
        if (Files.exists(fpid)) cmd(List.of("kill", "-9", Files.readString(fpid).trim()));
        if (Files.exists(pid)) {
            String p = Files.readString(pid).trim();
            for (int i = 0; i < 100 && cmd(List.of("kill", "-0", p)).code == 0; i++) Thread.sleep(50);
        }
        cmd(List.of("rm", "-rf", run.toString()));
    }

    /** A clean shutdown: unmount, detach, stop the daemon (the scripts' own teardown). */
    void stopCleanly() throws Exception {
        cmd(List.of("sh", "-c", "BOW_SCRIPT=test; . " + SCRIPTS.resolve("bow-lib.sh") + "; bow_stop_all")).ok();
    }

    /** Runs the workload until it has synced twice, then kills the daemon under it. */
    void killMidWorkload(Random r) throws Exception {
        AtomicInteger rounds = new AtomicInteger();
        Thread writer = new Thread(() -> {
            try {
                while (true) {
                    workload(r, 30, 100_000);
                    rounds.incrementAndGet();
                }
            } catch (Exception | AssertionError expected) {
                // the device went away under it
            }
        });
        writer.start();
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        while (rounds.get() < 2) {
            assertTrue(System.nanoTime() < end, "workload stalled");
            Thread.sleep(20);
        }
        assertTrue(writer.isAlive());
        cmd(List.of("kill", "-9", Files.readString(run.resolve("bowd.pid")).trim())).ok();
        writer.join(120_000);
    }

    void workload(Random r, int ops) throws IOException, InterruptedException {
        workload(r, ops, 200_000);
    }

    /**
     * What an update does first: rewrites half the files in place (their old blocks are backed up) and deletes
     * them. A resumed bow daemon only gets back, through fstrim, blocks that were backed up and then freed: this
     * is the free space the boots after a reboot write into.
     */
    void replaceHalfTheFiles(Random r) throws IOException, InterruptedException {
        List<Path> files;
        try (Stream<Path> s = Files.walk(mnt)) {
            files = s.filter(Files::isRegularFile).filter(p -> !p.toString().contains("lost+found")).sorted().toList();
        }
        for (int i = 0; i < files.size(); i += 2) {
            Path p = files.get(i);
            try (var ch = java.nio.channels.FileChannel.open(p, java.nio.file.StandardOpenOption.WRITE)) {
                byte[] data = new byte[(int) ch.size()];
                r.nextBytes(data);
                ch.write(java.nio.ByteBuffer.wrap(data), 0);
            }
        }
        cmd(List.of("sync", "-f", mnt.toString())).ok();
        for (int i = 0; i < files.size(); i += 2) Files.delete(files.get(i));
        cmd(List.of("sync", "-f", mnt.toString())).ok();
    }

    void workload(Random r, int ops, int maxBytes) throws IOException, InterruptedException {
        List<Path> existing;
        try (Stream<Path> s = Files.walk(mnt)) {
            existing = new ArrayList<>(s.filter(Files::isRegularFile).filter(p -> !p.toString().contains("lost+found")).toList());
        }
        for (int i = 0; i < ops; i++) {
            int k = r.nextInt(10);
            if (k < 3 && !existing.isEmpty()) {
                Files.delete(existing.remove(r.nextInt(existing.size())));
            } else if (k < 6 && !existing.isEmpty()) {
                Path p = existing.get(r.nextInt(existing.size()));
                try (var ch = java.nio.channels.FileChannel.open(p, java.nio.file.StandardOpenOption.WRITE)) {
                    long size = ch.size();
                    byte[] data = new byte[(int) Math.min(size, 1 + r.nextInt(Math.min(64_000, maxBytes)))];
                    r.nextBytes(data);
                    ch.write(java.nio.ByteBuffer.wrap(data), size == data.length ? 0 : r.nextInt((int) (size - data.length)));
                }
            } else {
                Path d = Files.createDirectories(mnt.resolve("new" + (i % 5)));
                Path p = d.resolve("n" + r.nextInt(1_000_000));
                byte[] data = new byte[r.nextInt(maxBytes) + 1];
                r.nextBytes(data);
                Files.write(p, data);
                existing.add(p);
            }
        }
        Result sync = cmd(List.of("sync", "-f", mnt.toString()));
        if (sync.code != 0) throw new IOException("sync failed: " + sync.err + "\nbowd log:\n" + tail(run.resolve("bowd.log"))
                + "\nstatus:\n" + bowctl("status").out + "\ndmesg:\n" + cmd(List.of("sh", "-c", "dmesg | tail -8")).out);
    }

    static String tail(Path log) throws IOException {
        if (!Files.exists(log)) return "(none)";
        List<String> lines = Files.readAllLines(log);
        return String.join("\n", lines.subList(Math.max(0, lines.size() - 15), lines.size()));
    }

    static void assertEqualOutside(byte[] expected, byte[] actual, List<long[]> free) {
        assertEquals(expected.length, actual.length);
        boolean[] masked = new boolean[expected.length / 512];
        for (long[] f : free) for (long x = f[0] / 512; x < f[1] / 512; x++) masked[(int) x] = true;
        for (int sector = 0; sector < masked.length; sector++) {
            if (masked[sector]) continue;
            int o = sector * 512;
            if (!Arrays.equals(expected, o, o + 512, actual, o, o + 512)) fail("sector " + sector + " differs from the image at checkpoint start");
        }
    }

    /** Free, Sector0_current and Backup ranges: all free when the checkpoint started. */
    static List<long[]> freeRanges(String json) {
        List<long[]> out = new ArrayList<>();
        Matcher m = Pattern.compile("\\{\"offset\":(\\d+),\"length\":(\\d+),\"type\":\"(\\w+)\"}").matcher(json);
        while (m.find()) {
            String t = m.group(3);
            if (t.equals("Free") || t.equals("Sector0_current") || t.equals("Backup")) {
                long off = Long.parseLong(m.group(1));
                out.add(new long[] {off, off + Long.parseLong(m.group(2))});
            }
        }
        return out;
    }

    Map<String, String> mountedManifest() throws Exception {
        Path ro = Files.createDirectories(dir.resolve("ro"));
        cmd(List.of("mount", "-o", "ro,loop", img.toString(), ro.toString())).ok();
        try {
            return manifest(ro);
        } finally {
            cmd(List.of("umount", ro.toString())).ok();
        }
    }

    static Map<String, String> manifest(Path root) throws Exception {
        Map<String, String> m = new TreeMap<>();
        try (Stream<Path> s = Files.walk(root)) {
            for (Path p : s.filter(p -> !p.toString().contains("lost+found")).toList()) {
                Map<String, Object> a = Files.readAttributes(p, "unix:mode,size,lastModifiedTime");
                String hash = Files.isRegularFile(p)
                        ? HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p))) : "dir";
                m.put(root.relativize(p).toString(), hash + " " + a.get("mode") + " " + (Files.isDirectory(p) ? "" : a.get("size"))
                        + " " + a.get("lastModifiedTime"));
            }
        }
        return m;
    }
}
