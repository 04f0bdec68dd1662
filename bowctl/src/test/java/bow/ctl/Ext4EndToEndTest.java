package bow.ctl;

import bow.testing.HostTools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import picocli.CommandLine;

import java.io.IOException;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;

import static bow.testing.HostTools.run;
import static org.junit.jupiter.api.Assertions.*;

/**
 * A real ext4 through the daemon: bowd as its own process, nbdfuse + losetup as
 * the block device (no nbd module here), mkfs, mount, fstrim, checkpoint, then a
 * workload of creates, rewrites and deletes. Rollback must give back the image
 * as it was when the checkpoint started, byte for byte outside the ranges that
 * were free then, with e2fsck clean and every file as before; commit must keep
 * the new files; a kill -9 of the daemon mid-workload must still roll back
 * exactly.
 */
class Ext4EndToEndTest {
    static final long SIZE = 256L << 20;

    @TempDir Path dir;
    Path img, sock, control, fuseDir, mnt;
    Process daemon, fuse;
    String loop;
    boolean mounted;

    @BeforeEach
    void setUp() throws Exception {
        HostTools.requireTools("nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "fstrim", "fsfreeze", "mount", "umount");
        HostTools.requireRootAndFuse();
        img = dir.resolve("disk.img");
        sock = dir.resolve("run/nbd.sock");
        control = dir.resolve("run/control.sock");
        fuseDir = Files.createDirectories(dir.resolve("fuse"));
        mnt = Files.createDirectories(dir.resolve("mnt"));
        bow.blockdev.FileBlockDevice.createSparse(img, SIZE);
    }

    @AfterEach
    void tearDown() throws Exception {
        detach(true);
        if (daemon != null && daemon.isAlive()) {
            daemon.destroyForcibly();
            daemon.waitFor(10, TimeUnit.SECONDS);
        }
    }

    @Test
    void rollbackGivesBackTheStartingImage() throws Exception {
        Start s = prepareAndStartCheckpoint();
        workload(new Random(1), 150);
        detach(false);
        stopDaemon();
        checkRolledBack(s);
    }

    @Test
    void commitKeepsTheNewFiles() throws Exception {
        prepareAndStartCheckpoint();
        workload(new Random(2), 100);
        Run c = bowctl("commit", "--control", control.toString());
        assertEquals(0, c.code, c.toString());
        // Keeps working as a plain device after the commit.
        Files.writeString(mnt.resolve("after-commit.txt"), "still here");
        Map<String, String> expected = manifest(mnt);
        detach(false);
        stopDaemon();
        assertEquals(3, bowctl("rollback", "--device", img.toString(), "--yes").code, "nothing left to roll back");
        run(List.of("e2fsck", "-fn", img.toString())).checkOk();
        assertEquals(expected, mountedManifest());
    }

    /**
     * The free space comes from bowctl's own FITRIM; after a clean shutdown mid-checkpoint
     * the daemon refuses the device, and the offline commit keeps the changes.
     */
    @Test
    void fitrimThenOfflineCommitKeepsTheNewFiles() throws Exception {
        startDaemon();
        attach();
        makeFilesystem();
        Run start = bowctl("checkpoint", "start", "--fitrim", mnt.toString(), "--control", control.toString());
        assertEquals(0, start.code, start.toString());
        Matcher trimmed = Pattern.compile("^trimmed (\\d+) bytes of free space on ").matcher(start.out);
        assertTrue(trimmed.find(), start.out);
        assertTrue(Long.parseLong(trimmed.group(1)) > SIZE / 2, "most of a fresh filesystem is free: " + start.out);
        assertTrue(start.out.contains("checkpoint started ("), start.out);
        assertTrue(bowctl("ranges", "--json", "--control", control.toString()).out.contains("\"type\":\"Free\""));
        workload(new Random(4), 100);
        Map<String, String> expected = manifest(mnt);
        detach(false);
        stopDaemon();       // the checkpoint stays on the device

        List<String> again = new ArrayList<>(daemonCommand());
        HostTools.Result refused = run(again, 60);
        assertEquals(3, refused.code(), refused.output());
        assertTrue(refused.output().contains("'bowctl rollback --device " + img + "'"), refused.output());
        assertTrue(refused.output().contains("'bowctl commit --device " + img + "'"), refused.output());

        Run commit = bowctl("commit", "--device", img.toString());
        assertEquals(0, commit.code, commit.toString());
        assertEquals(3, bowctl("log", "verify", "--device", img.toString()).code, "no log left after the commit");
        run(List.of("e2fsck", "-fn", img.toString())).checkOk();
        assertEquals(expected, mountedManifest(), "every file as the workload left it");
    }

    @Test
    void killDashNineMidWorkloadStillRollsBackExactly() throws Exception {
        Start s = prepareAndStartCheckpoint();
        java.util.concurrent.atomic.AtomicInteger rounds = new java.util.concurrent.atomic.AtomicInteger();
        java.util.concurrent.atomic.AtomicReference<Throwable> died = new java.util.concurrent.atomic.AtomicReference<>();
        Thread writer = new Thread(() -> {
            Random r = new Random(3);
            try {
                while (true) {          // until the device disappears under it
                    workload(r, 40);
                    rounds.incrementAndGet();
                }
            } catch (Exception | AssertionError e) {
                died.set(e);            // expected once the daemon is gone
            }
        });
        writer.start();
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(180);
        while (rounds.get() < 2) {
            if (died.get() != null) fail("the workload failed before the kill", died.get());
            if (System.nanoTime() > end) fail("two synced rounds of the workload took over 180 s");
            Thread.sleep(50);
        }
        assertTrue(writer.isAlive(), "the kill must land in the middle of the workload");
        daemon.destroyForcibly();     // SIGKILL
        assertTrue(daemon.waitFor(10, TimeUnit.SECONDS));
        writer.join(60_000);
        detach(true);
        checkRolledBack(s);
    }

    // ---------------------------------------------------------------- the story

    record Start(byte[] image, List<long[]> free, Map<String, String> files) {}

    Start prepareAndStartCheckpoint() throws Exception {
        startDaemon();
        attach();
        makeFilesystem();
        run(List.of("fstrim", mnt.toString())).checkOk();     // state 0: the daemon learns the free space
        Map<String, String> files = manifest(mnt);
        // Freeze so that the image is byte-stable while it is copied and the checkpoint starts.
        run(List.of("fsfreeze", "-f", mnt.toString())).checkOk();
        byte[] image;
        List<long[]> free;
        try {
            image = Files.readAllBytes(img);
            Run start = bowctl("checkpoint", "start", "--control", control.toString());
            assertEquals(0, start.code, start.toString());
            Run ranges = bowctl("ranges", "--json", "--control", control.toString());
            assertEquals(0, ranges.code, ranges.toString());
            free = freeRanges(ranges.out);
        } finally {
            run(List.of("fsfreeze", "-u", mnt.toString())).checkOk();
        }
        assertFalse(free.isEmpty(), "fstrim gave the daemon free space");
        Run st = bowctl("status", "--json", "--control", control.toString());
        assertTrue(st.out.contains("\"state\":\"1 CHECKPOINT\""), st.out);
        return new Start(image, free, files);
    }

    /** mkfs, mount, and 60 files in 7 directories, synced. */
    void makeFilesystem() throws Exception {
        run(List.of("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", loop)).checkOk();
        run(List.of("mount", loop, mnt.toString())).checkOk();
        mounted = true;
        Random r = new Random(42);
        for (int i = 0; i < 60; i++) {
            Path d = Files.createDirectories(mnt.resolve("dir" + (i % 7)));
            byte[] data = new byte[r.nextInt(200_000) + 1];
            r.nextBytes(data);
            Files.write(d.resolve("file" + i), data);
        }
        run(List.of("sync")).checkOk();
    }

    /** Creates, rewrites, appends to and deletes files, and writes a big one. */
    void workload(Random r, int ops) throws IOException, InterruptedException {
        List<Path> existing;
        try (Stream<Path> s = Files.walk(mnt)) {
            existing = new ArrayList<>(s.filter(Files::isRegularFile).filter(p -> !p.toString().contains("lost+found")).toList());
        }
        for (int i = 0; i < ops; i++) {
            int k = r.nextInt(10);
            if (k < 3 && !existing.isEmpty()) {
                Files.delete(existing.remove(r.nextInt(existing.size())));
            } else if (k < 5 && !existing.isEmpty()) {
                Path p = existing.get(r.nextInt(existing.size()));
                byte[] data = new byte[r.nextInt(100_000) + 1];
                r.nextBytes(data);
                Files.write(p, data);                                   // rewrite (new blocks)
            } else if (k < 7 && !existing.isEmpty()) {
                Path p = existing.get(r.nextInt(existing.size()));     // overwrite in place (same blocks)
                try (var ch = java.nio.channels.FileChannel.open(p, java.nio.file.StandardOpenOption.WRITE)) {
                    long size = ch.size();
                    byte[] data = new byte[(int) Math.min(size, 1 + r.nextInt(64_000))];
                    r.nextBytes(data);
                    ch.write(java.nio.ByteBuffer.wrap(data), size - data.length == 0 ? 0 : r.nextInt((int) (size - data.length)));
                }
            } else {
                Path d = Files.createDirectories(mnt.resolve("new" + (i % 5)));
                Path p = d.resolve("n" + i);
                byte[] data = new byte[r.nextInt(300_000) + 1];
                r.nextBytes(data);
                Files.write(p, data);
                existing.add(p);
            }
            if (i == ops / 2) {
                byte[] big = new byte[24 << 20];
                r.nextBytes(big);
                Files.write(mnt.resolve("big.bin"), big);
            }
        }
        run(List.of("sync")).checkOk();
    }

    void checkRolledBack(Start s) throws Exception {
        Run rb = bowctl("rollback", "--device", img.toString(), "--yes");
        assertEquals(0, rb.code, rb.toString());
        Matcher restored = Pattern.compile("(\\d+) entries, (\\d+) bytes restored").matcher(rb.out);
        assertTrue(restored.find(), rb.out);
        assertTrue(Long.parseLong(restored.group(2)) > 0, "the workload overwrote data that had to be restored: " + rb.out);
        System.out.println("e2e rollback: " + rb.out.trim());
        byte[] now = Files.readAllBytes(img);
        assertEquals(s.image.length, now.length);
        boolean[] masked = new boolean[(int) (SIZE / 512)];
        for (long[] f : s.free) for (long x = f[0] / 512; x < f[1] / 512; x++) masked[(int) x] = true;
        for (int sector = 0; sector < masked.length; sector++) {
            if (masked[sector]) continue;
            int o = sector * 512;
            if (!java.util.Arrays.equals(s.image, o, o + 512, now, o, o + 512)) {
                fail("sector " + sector + " differs from the image at checkpoint start");
            }
        }
        run(List.of("e2fsck", "-fn", img.toString())).checkOk();
        assertEquals(s.files, mountedManifest(), "every file's content and metadata as before");
    }

    // ---------------------------------------------------------------- plumbing

    /**
     * What bin/bowd runs, on the classpath of this build: bin/bowd itself would start a
     * nested Maven package, since the test phase comes before the jars exist.
     */
    List<String> daemonCommand() {
        return List.of(Path.of(System.getProperty("java.home"), "bin", "java").toString(),
                "-cp", System.getProperty("java.class.path"), "bow.daemon.Bowd",
                "--device", img.toString(), "--socket", sock.toString(), "--control", control.toString());
    }

    void startDaemon() throws Exception {
        daemon = new ProcessBuilder(daemonCommand()).redirectErrorStream(true).redirectOutput(dir.resolve("bowd.log").toFile()).start();
        waitFor(() -> Files.exists(sock) && Files.exists(control), "bowd sockets");
    }

    void stopDaemon() throws Exception {
        Run r = bowctl("shutdown", "--control", control.toString());
        assertEquals(0, r.code, r.toString());
        assertTrue(daemon.waitFor(30, TimeUnit.SECONDS), "bowd stops after shutdown");
        assertEquals(0, daemon.exitValue(), Files.readString(dir.resolve("bowd.log")));
    }

    void attach() throws Exception {
        Path dev = fuseDir.resolve("dev");
        fuse = new ProcessBuilder("nbdfuse", dev.toString(), "--unix", sock.toString())
                .redirectErrorStream(true).redirectOutput(dir.resolve("nbdfuse.log").toFile()).start();
        waitFor(() -> Files.exists(dev) && Files.size(dev) == SIZE, "nbdfuse device");
        loop = run(List.of("losetup", "-f", "--show", dev.toString())).checkOk().trim();
    }

    /** Unmounts and detaches; {@code lazy} for a dead daemon. Idempotent. */
    void detach(boolean lazy) throws Exception {
        if (mounted) {
            HostTools.Result u = run(lazy ? List.of("umount", "-l", mnt.toString()) : List.of("umount", mnt.toString()), 60);
            if (!lazy) u.checkOk();
            mounted = false;
        }
        if (loop != null) {
            run(List.of("losetup", "-d", loop), 30);
            loop = null;
        }
        if (fuse != null) {
            run(lazy ? List.of("fusermount3", "-u", "-z", fuseDir.toString()) : List.of("fusermount3", "-u", fuseDir.toString()), 30);
            if (!fuse.waitFor(10, TimeUnit.SECONDS)) fuse.destroyForcibly();
            fuse = null;
        }
    }

    Map<String, String> mountedManifest() throws Exception {
        Path ro = Files.createDirectories(dir.resolve("ro"));
        run(List.of("mount", "-o", "ro,loop", img.toString(), ro.toString())).checkOk();
        try {
            return manifest(ro);
        } finally {
            run(List.of("umount", ro.toString())).checkOk();
        }
    }

    /** path -> sha256, size, mode and mtime of every regular file and directory. */
    static Map<String, String> manifest(Path root) throws Exception {
        Map<String, String> m = new TreeMap<>();
        try (Stream<Path> s = Files.walk(root)) {
            for (Path p : s.filter(p -> !p.toString().contains("lost+found")).toList()) {
                String rel = root.relativize(p).toString();
                Map<String, Object> a = Files.readAttributes(p, "unix:mode,size,lastModifiedTime");
                String meta = a.get("mode") + " " + (Files.isDirectory(p) ? "" : a.get("size")) + " " + a.get("lastModifiedTime");
                String hash = Files.isRegularFile(p)
                        ? HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p))) : "dir";
                m.put(rel, hash + " " + meta);
            }
        }
        return m;
    }

    /** Free, Sector0_current and Backup ranges (all free when the checkpoint started). */
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

    interface Check {
        boolean ok() throws Exception;
    }

    void waitFor(Check c, String what) throws Exception {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!c.ok()) {
            if (daemon != null && !daemon.isAlive()) fail("bowd exited: " + Files.readString(dir.resolve("bowd.log")));
            if (System.nanoTime() > end) fail("timed out waiting for " + what);
            Thread.sleep(50);
        }
    }

    record Run(int code, String out, String err) {}

    static Run bowctl(String... args) {
        StringWriter out = new StringWriter(), err = new StringWriter();
        CommandLine cl = Bowctl.commandLine();
        cl.setOut(new PrintWriter(out));
        cl.setErr(new PrintWriter(err));
        int code = cl.execute(args);
        return new Run(code, out.toString(), err.toString());
    }
}
