package bow.ctl;

import bow.testing.HostTools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.io.RandomAccessFile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;

import static bow.ctl.OfflineCommandsTest.bowctl;
import static bow.testing.HostTools.run;
import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;
import static org.junit.jupiter.api.Assertions.fail;

/**
 * A real ext4 through the daemon (bowd → NBD Unix socket → nbdfuse → loop → ext4):
 * {@code bowctl checkpoint start --fitrim MOUNTPOINT} trims through the kernel's
 * FITRIM so the daemon learns the free space, a workload runs, and an online
 * {@code bowctl commit} keeps every file. (Rollback after a workload and after a
 * kill -9 is in {@link Ext4EndToEndTest}.)
 */
class FitrimCommitTest {
    private static final long SIZE = 128L << 20;
    @TempDir Path dir;

    /** The stack of real clients on top of a running daemon; torn down in reverse. */
    private final class Stack implements AutoCloseable {
        final Path img = dir.resolve("dev.img");
        final Path fuseDir;
        final Path mnt;
        BowdProcess bowd;
        Process fuse;
        String loop;
        boolean mounted;

        Stack() throws Exception {
            try (RandomAccessFile f = new RandomAccessFile(img.toFile(), "rw")) {
                f.setLength(SIZE);
            }
            fuseDir = Files.createDirectories(dir.resolve("fuse"));
            mnt = Files.createDirectories(dir.resolve("mnt"));
            bowd = BowdProcess.start(dir, "--device", img.toString());
            Path disk = fuseDir.resolve("dev");
            Path fuseLog = dir.resolve("nbdfuse.log");
            fuse = new ProcessBuilder("nbdfuse", disk.toString(), "--unix", bowd.nbd.toString())
                    .redirectErrorStream(true).redirectOutput(fuseLog.toFile()).start();
            long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);   // hang guard
            while (!(Files.exists(disk) && Files.size(disk) == SIZE)) {
                if (!fuse.isAlive()) fail("nbdfuse exited: " + Files.readString(fuseLog));
                if (System.nanoTime() > end) fail("nbdfuse did not expose " + disk);
                Thread.sleep(20);
            }
            loop = run(List.of("losetup", "-f", "--show", disk.toString())).checkOk().trim();
            // No lazy init: no background writes of the kernel while the image is copied.
            run(List.of("mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0", loop)).checkOk();
            run(List.of("mount", "-o", "noatime", loop, mnt.toString())).checkOk();
            mounted = true;
        }

        void umount() throws Exception {
            if (!mounted) return;
            HostTools.Result r = run(List.of("umount", mnt.toString()));
            if (r.code() != 0) run(List.of("umount", "-l", mnt.toString()));
            mounted = false;
        }

        /** Everything but the daemon. */
        void detachClients() throws Exception {
            try {
                umount();
            } finally {
                try {
                    if (loop != null) run(List.of("losetup", "-d", loop));
                    loop = null;
                } finally {
                    if (fuse != null) {
                        run(List.of("fusermount3", "-u", fuseDir.toString()));
                        if (!fuse.waitFor(20, TimeUnit.SECONDS)) fuse.destroyForcibly();
                        fuse = null;
                    }
                }
            }
        }

        void shutdownDaemon() throws Exception {
            OfflineCommandsTest.Run r = bowctl("shutdown", "--control", bowd.control.toString());
            assertEquals(0, r.code(), r.err());
            assertEquals(0, bowd.waitFor(), bowd.output());
        }

        String ctl() { return bowd.control.toString(); }

        @Override
        public void close() throws Exception {
            try {
                detachClients();
            } finally {
                bowd.close();
            }
        }
    }

    private static void writeFile(Path p, SplittableRandom rnd, int size) throws IOException {
        byte[] b = new byte[size];
        rnd.nextBytes(b);
        Files.write(p, b);
    }

    /** Files that exist before the checkpoint. */
    private static void baseFiles(Path mnt) throws Exception {
        SplittableRandom rnd = new SplittableRandom(1);
        Path base = Files.createDirectories(mnt.resolve("base"));
        for (int i = 0; i < 60; i++) writeFile(base.resolve("f" + i), rnd, 1 + rnd.nextInt(256 << 10));
        writeFile(base.resolve("big"), rnd, 8 << 20);
        run(List.of("sync")).checkOk();
    }

    /**
     * Creates, modifies and deletes many files; stops early (returns) at the first
     * I/O error, which is how it notices that the daemon was killed.
     */
    private static void workload(Path mnt, long seed, AtomicInteger progress) {
        SplittableRandom rnd = new SplittableRandom(seed);
        try {
            Path fresh = Files.createDirectories(mnt.resolve("new"));
            for (int i = 0; i < 200; i++) {
                writeFile(fresh.resolve("n" + i), rnd, 1 + rnd.nextInt(128 << 10));
                if (i % 3 == 0) {   // overwrite a piece of an old file in place: needs backups
                    Path old = mnt.resolve("base").resolve("f" + rnd.nextInt(60));
                    if (Files.exists(old)) {
                        try (var ch = java.nio.channels.FileChannel.open(old, StandardOpenOption.WRITE)) {
                            byte[] b = new byte[4096 + rnd.nextInt(16384)];
                            rnd.nextBytes(b);
                            ch.write(java.nio.ByteBuffer.wrap(b), rnd.nextInt(4096));
                            ch.force(false);
                        }
                    }
                }
                if (i % 7 == 0) Files.deleteIfExists(mnt.resolve("base").resolve("f" + rnd.nextInt(60)));
                if (i % 11 == 0 && i > 0) Files.deleteIfExists(fresh.resolve("n" + rnd.nextInt(i)));
                if (i == 100) {   // rewrite the big file's middle, and grow it
                    try (var ch = java.nio.channels.FileChannel.open(mnt.resolve("base").resolve("big"), StandardOpenOption.WRITE)) {
                        byte[] b = new byte[2 << 20];
                        rnd.nextBytes(b);
                        ch.write(java.nio.ByteBuffer.wrap(b), 3 << 20);
                        ch.write(java.nio.ByteBuffer.wrap(b), 8 << 20);
                        ch.force(true);
                    }
                }
                progress.set(i + 1);
            }
            run(List.of("sync")).checkOk();
        } catch (Exception e) {
            // I/O errors after the daemon died end the workload.
        }
    }

    private static Map<String, String> tree(Path root) throws Exception {
        Map<String, String> m = new TreeMap<>();
        try (var s = Files.walk(root)) {
            for (Path p : (Iterable<Path>) s::iterator) {
                if (!Files.isRegularFile(p) || p.toString().contains("lost+found")) continue;
                m.put(root.relativize(p).toString(), HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p))));
            }
        }
        return m;
    }

    private static void requireTools() {
        HostTools.requireTools("nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "fstrim", "fsfreeze", "mount", "umount");
        HostTools.require(HostTools.isRoot(), "root is needed for losetup and mount");
        HostTools.require(Files.exists(Path.of("/dev/fuse")), "/dev/fuse is needed for nbdfuse");
    }

    @Test
    void commitKeepsTheNewFiles() throws Exception {
        requireTools();
        Map<String, String> expected;
        try (Stack s = new Stack()) {
            baseFiles(s.mnt);
            // Here the trim comes from bowctl itself (FITRIM on the mount point).
            OfflineCommandsTest.Run start = bowctl("checkpoint", "start", "--fitrim", s.mnt.toString(), "--control", s.ctl());
            assertEquals(0, start.code(), start.err());
            assertTrue(start.out().contains("trimmed"), start.out());
            OfflineCommandsTest.Run st = bowctl("status", "--json", "--control", s.ctl());
            java.util.regex.Matcher free = java.util.regex.Pattern.compile("\"free_bytes\":(\\d+)").matcher(st.out());
            assertTrue(free.find(), st.out());
            assertTrue(Long.parseLong(free.group(1)) > SIZE / 2, "FITRIM told the daemon about the free space: " + st.out());
            AtomicInteger done = new AtomicInteger();
            workload(s.mnt, 9, done);
            assertEquals(200, done.get());
            expected = tree(s.mnt);
            s.umount();
            OfflineCommandsTest.Run commit = bowctl("commit", "--control", s.ctl());
            assertEquals(0, commit.code(), commit.err());
            s.detachClients();
            s.shutdownDaemon();
        }
        Path img = dir.resolve("dev.img");
        run(List.of("e2fsck", "-fn", img.toString())).checkOk();
        // A plain device again: no log to refuse, and the files are the committed ones.
        assertEquals(ExitCodes.NO_CHECKPOINT, bowctl("rollback", "--device", img.toString(), "--yes").code());
        String loop = run(List.of("losetup", "-r", "-f", "--show", img.toString())).checkOk().trim();
        Path ro = Files.createDirectories(dir.resolve("ro"));
        try {
            run(List.of("mount", "-o", "ro", loop, ro.toString())).checkOk();
            try {
                assertEquals(expected, tree(ro));
            } finally {
                run(List.of("umount", ro.toString()));
            }
        } finally {
            run(List.of("losetup", "-d", loop));
        }
    }
}
