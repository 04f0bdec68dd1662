package bow.ctl;

import bow.testing.HostTools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.channels.FileChannel;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static bow.ctl.SharedClients.*;
import static bow.testing.HostTools.run;
import static org.junit.jupiter.api.Assertions.*;

/**
 * A writable shared-mode snapshot used as a real ext4: the origin holds a filesystem (made on the
 * image before bowd starts); {@code bowd --mode shared} serves it, a writable snapshot is created
 * and attached with nbdfuse (its export name in the URI) and losetup, mounted, changed (new,
 * rewritten, overwritten and deleted files), unmounted. The snapshot's image is then e2fsck-clean
 * and holds exactly the files as left, also after a restart of the daemon; the origin and a
 * read-only snapshot taken at the same time are unchanged byte for byte and e2fsck-clean.
 */
class SharedExt4SnapshotTest {
    static final long SIZE = 128L << 20;

    @TempDir Path dir;
    Path img, cow, fuseDir, mnt;
    BowdProcess bowd;
    Process fuse;
    String loop;
    boolean mounted;

    @BeforeEach
    void setUp() throws Exception {
        HostTools.requireTools("nbdfuse", "fusermount3", "losetup", "mkfs.ext4", "e2fsck", "mount", "umount", "nbdcopy");
        HostTools.requireRootAndFuse();
        img = dir.resolve("origin.img");
        cow = dir.resolve("cow.img");
        fuseDir = Files.createDirectories(dir.resolve("fuse"));
        mnt = Files.createDirectories(dir.resolve("mnt"));
        bow.blockdev.FileBlockDevice.createSparse(img, SIZE);
        bow.blockdev.FileBlockDevice.createSparse(cow, 256L << 20);
        run(List.of("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", img.toString())).checkOk();
        Path setup = Files.createDirectories(dir.resolve("setup"));
        run(List.of("mount", "-o", "loop", img.toString(), setup.toString())).checkOk();
        try {
            Random r = new Random(42);
            for (int i = 0; i < 40; i++) {
                Path d = Files.createDirectories(setup.resolve("dir" + (i % 5)));
                byte[] data = new byte[r.nextInt(300_000) + 1];
                r.nextBytes(data);
                Files.write(d.resolve("file" + i), data);
            }
        } finally {
            run(List.of("umount", setup.toString())).checkOk();
        }
    }

    @AfterEach
    void tearDown() throws Exception {
        detach(true);
        LibnbdScript.stop(bowd);
    }

    @Test
    void writableSnapshotAsExt4ThroughNbdfuse() throws Exception {
        Map<String, String> originFiles = mountedManifest(img);
        byte[] originImage = Files.readAllBytes(img);
        bowd = BowdProcess.start(dir, "--mode", "shared", "--device", img.toString(), "--cow", cow.toString());
        int ro = create(bowd.control, "--name", "before");
        int rw = create(bowd.control, "--name", "work", "--writable");

        attach("snapshot-work");
        run(List.of("mount", loop, mnt.toString())).checkOk();
        mounted = true;
        assertEquals(originFiles, Ext4EndToEndTest.manifest(mnt), "the snapshot starts as the origin's filesystem");
        workload(new Random(1), 120);
        Files.writeString(mnt.resolve("written-in-the-snapshot.txt"), "only here");
        Map<String, String> snapshotFiles = Ext4EndToEndTest.manifest(mnt);
        assertNotEquals(originFiles, snapshotFiles);
        detach(false);

        Path copy = dir.resolve("snapshot.img");
        assertSnapshotFilesystem(copy, "snapshot-" + rw, snapshotFiles);
        assertSame(originImage, read(bowd.nbd, "", dir.resolve("origin-now.img")), "the origin export after the snapshot's writes");
        assertSame(originImage, read(bowd.nbd, "snapshot-" + ro, dir.resolve("ro.img")), "the read-only snapshot");

        Map<String, Object> list = json(ctl(bowd.control, "snapshot", "list", "--json"));
        @SuppressWarnings("unchecked") Map<String, Object> work = ((List<Map<String, Object>>) list.get("snapshots")).stream()
                .filter(s -> "work".equals(s.get("name"))).findFirst().orElseThrow();
        assertEquals(Boolean.TRUE, work.get("writable"));
        assertTrue((Long) work.get("chunks_alone") > 0, "the snapshot's writes went to chunks of its own: " + work);

        stop();
        assertCheckClean(cow);
        assertSame(originImage, Files.readAllBytes(img), "the origin file");
        run(List.of("e2fsck", "-fn", img.toString())).checkOk();

        // The snapshot's filesystem is on the COW for good.
        bowd = BowdProcess.start(dir, "--mode", "shared", "--device", img.toString(), "--cow", cow.toString());
        assertSnapshotFilesystem(copy, "snapshot-work", snapshotFiles);
        stop();
        assertCheckClean(cow);
    }

    /** The export copied out with nbdcopy: e2fsck -fn clean, and these files when mounted. */
    void assertSnapshotFilesystem(Path copy, String export, Map<String, String> files) throws Exception {
        read(bowd.nbd, export, copy);
        run(List.of("e2fsck", "-fn", copy.toString())).checkOk();
        assertEquals(files, mountedManifest(copy), export + ": every file as the workload left it");
    }

    void stop() throws Exception {
        assertEquals(0, ctl(bowd.control, "shutdown").code());
        assertEquals(0, bowd.waitFor(), bowd.output());
    }

    /** nbdfuse on the export (named in the URI), then a loop device on its file. */
    void attach(String export) throws Exception {
        Path dev = fuseDir.resolve("dev");
        fuse = new ProcessBuilder("nbdfuse", dev.toString(), uri(bowd.nbd, export))
                .redirectErrorStream(true).redirectOutput(dir.resolve("nbdfuse.log").toFile()).start();
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(30);
        while (!(Files.exists(dev) && Files.size(dev) == SIZE)) {
            if (!fuse.isAlive()) fail("nbdfuse exited " + fuse.exitValue() + ": " + Files.readString(dir.resolve("nbdfuse.log")));
            assertTrue(System.nanoTime() < end, "nbdfuse did not come up");
            Thread.sleep(50);
        }
        loop = run(List.of("losetup", "-f", "--show", dev.toString())).checkOk().trim();
    }

    /** Unmounts and detaches; {@code lazy} after a failure. Idempotent. */
    void detach(boolean lazy) throws Exception {
        if (mounted) {
            HostTools.Result u = run(lazy ? List.of("umount", "-l", mnt.toString()) : List.of("umount", mnt.toString()), 60);
            mounted = false;
            if (!lazy) u.checkOk();
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

    Map<String, String> mountedManifest(Path image) throws Exception {
        Path ro = Files.createDirectories(dir.resolve("ro"));
        run(List.of("mount", "-o", "ro,loop", image.toString(), ro.toString())).checkOk();
        try {
            return Ext4EndToEndTest.manifest(ro);
        } finally {
            run(List.of("umount", ro.toString())).checkOk();
        }
    }

    /** New files, rewrites (new blocks), overwrites in place (the snapshot's chunks shared with the origin first) and deletes; synced. */
    void workload(Random r, int ops) throws IOException, InterruptedException {
        List<Path> existing;
        try (Stream<Path> s = Files.walk(mnt)) {
            existing = new ArrayList<>(s.filter(Files::isRegularFile).filter(p -> !p.toString().contains("lost+found")).toList());
        }
        for (int i = 0; i < ops; i++) {
            int k = r.nextInt(10);
            if (k < 2 && !existing.isEmpty()) {
                Files.delete(existing.remove(r.nextInt(existing.size())));
            } else if (k < 4 && !existing.isEmpty()) {
                byte[] data = new byte[r.nextInt(200_000) + 1];
                r.nextBytes(data);
                Files.write(existing.get(r.nextInt(existing.size())), data);
            } else if (k < 7 && !existing.isEmpty()) {
                try (FileChannel ch = FileChannel.open(existing.get(r.nextInt(existing.size())), StandardOpenOption.WRITE)) {
                    long size = ch.size();
                    byte[] data = new byte[(int) Math.min(size, 1 + r.nextInt(64_000))];
                    r.nextBytes(data);
                    ch.write(ByteBuffer.wrap(data), size == data.length ? 0 : r.nextInt((int) (size - data.length)));
                }
            } else {
                Path d = Files.createDirectories(mnt.resolve("new" + (i % 4)));
                Path p = d.resolve("n" + i + "-" + HexFormat.of().toHexDigits((byte) r.nextInt(256)));
                byte[] data = new byte[r.nextInt(400_000) + 1];
                r.nextBytes(data);
                Files.write(p, data);
                existing.add(p);
            }
        }
        run(List.of("sync", "-f", mnt.toString())).checkOk();
    }
}
