package bow.ctl;

import bow.daemon.BowVersion;
import bow.testing.HostTools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The Debian package that {@code mvn package} builds (pkg/build-deb, target/bow_VERSION_all.deb),
 * installed with dpkg into a scratch root: the files are where the units and scripts expect them,
 * {@code --version} works, {@code systemd-analyze verify} passes on the installed units, and an
 * update checkpoint runs through the installed launchers and init scripts (bow-pre-update, a
 * failed update, bow-recovery) with every file back as before. Runs in the integration-test phase.
 */
class DebianPackageIT {
    static final long SIZE = 96L << 20;

    @TempDir Path dir;
    Path root, img, mnt, run;
    Map<String, String> env = new TreeMap<>();

    @AfterEach
    void tearDown() throws Exception {
        if (run == null || root == null) return;
        // whatever the scripts left if the test failed half-way
        cmd(List.of("sh", "-c", "BOW_SCRIPT=test; . " + root.resolve("usr/lib/bow/bow-lib.sh") + "; bow_stop_all"));
        cmd(List.of("umount", "-l", mnt.toString()));
    }

    static Path deb() throws IOException {
        Path target = Path.of("target").toAbsolutePath();
        if (!Files.isDirectory(target)) target = Path.of("bowctl/target").toAbsolutePath();
        if (!Files.isDirectory(target)) return null;
        try (Stream<Path> s = Files.list(target)) {
            return s.filter(p -> p.getFileName().toString().matches("bow_.*_all\\.deb")).findFirst().orElse(null);
        }
    }

    @Test
    void installedPackageRunsTheLifecycle() throws Exception {
        HostTools.requireTools("dpkg", "dpkg-deb", "systemd-analyze", "nbdfuse", "fusermount3", "losetup", "mkfs.ext4",
                "e2fsck", "fstrim", "mount", "umount", "mountpoint");
        HostTools.requireRootAndFuse();
        Path deb = deb();
        HostTools.require(deb != null, "target/bow_*_all.deb (built by mvn package where dpkg-deb exists)");

        String contents = HostTools.run(List.of("dpkg-deb", "--contents", deb.toString())).checkOk();
        for (String f : List.of("./usr/bin/bowd", "./usr/bin/bowctl", "./usr/lib/bow/lib/bowctl.jar", "./usr/lib/bow/bowd-exec",
                "./usr/lib/bow/bow-boot", "./usr/lib/bow/bow-boot-complete", "./usr/lib/bow/bow-pre-update",
                "./usr/lib/bow/bow-recovery", "./usr/lib/bow/bow-lib.sh", "./lib/systemd/system/bowd.service",
                "./lib/systemd/system/bow-boot.service", "./lib/systemd/system/bow-boot-complete.service",
                "./etc/default/bow", "./usr/share/bow/android/bow.rc")) {
            assertTrue(contents.contains(" " + f + "\n"), f + " in the package:\n" + contents);
        }

        // dpkg into a scratch root (the Java runtime dependency is the host's, hence --force-depends)
        root = dir.resolve("root");
        for (String d : List.of("var/lib/dpkg/info", "var/lib/dpkg/updates", "var/lib/dpkg/triggers")) Files.createDirectories(root.resolve(d));
        Files.createFile(root.resolve("var/lib/dpkg/status"));
        HostTools.run(List.of("dpkg", "--root=" + root, "--force-depends", "-i", deb.toString())).checkOk();
        assertTrue(HostTools.run(List.of("dpkg", "--root=" + root, "-s", "bow")).checkOk().contains("Status: install ok installed"));

        String v = BowVersion.version();
        assertEquals("bowd " + v, HostTools.run(List.of(root.resolve("usr/bin/bowd").toString(), "--version")).checkOk().trim());
        assertEquals("bowctl " + v, HostTools.run(List.of(root.resolve("usr/bin/bowctl").toString(), "--version")).checkOk().trim());
        String flags = HostTools.run(List.of("sh", "-c", "BOW_JAVA_OPTS=-XX:+PrintFlagsFinal \"$0\" --version", root.resolve("usr/bin/bowd").toString())).checkOk();
        assertTrue(flags.matches("(?s).*MaxHeapSize\\s*=\\s*134217728\\b.*"), "the installed bowd runs with a 128 MiB heap, as bin/bowd does");

        verifyUnits();
        lifecycle();

        HostTools.run(List.of("dpkg", "--root=" + root, "--purge", "bow")).checkOk();
        assertFalse(Files.exists(root.resolve("usr/bin/bowd")), "purged");
        assertFalse(Files.exists(root.resolve("etc/default/bow")), "purged with its conffile");
    }

    /** systemd-analyze verify of the installed units, against the host's own units for the targets they name. */
    void verifyUnits() throws Exception {
        Path units = root.resolve("lib/systemd/system");
        Path host = Files.isDirectory(Path.of("/usr/lib/systemd/system")) ? Path.of("/usr/lib/systemd/system") : Path.of("/lib/systemd/system");
        try (Stream<Path> s = Files.list(host)) {
            for (Path u : s.toList()) {
                Path to = units.resolve(u.getFileName().toString());
                if (!Files.exists(to) && !Files.isDirectory(u)) Files.copy(u, to, StandardCopyOption.COPY_ATTRIBUTES, java.nio.file.LinkOption.NOFOLLOW_LINKS);
            }
        }
        List<String> c = new ArrayList<>(List.of("systemd-analyze", "verify", "--root=" + root));
        for (String u : List.of("bowd.service", "bow-boot.service", "bow-boot-complete.service")) c.add(units.resolve(u).toString());
        HostTools.Result r = HostTools.run(c);
        assertEquals(0, r.code(), r.output());
        assertFalse(r.output().contains("bow"), "no finding about the bow units:\n" + r.output());
        // and it does look: without the script the unit runs, verify fails
        Path exec = root.resolve("usr/lib/bow/bowd-exec"), aside = dir.resolve("bowd-exec");
        Files.move(exec, aside);
        try {
            HostTools.Result missing = HostTools.run(c);
            assertNotEquals(0, missing.code());
            assertTrue(missing.output().contains("/usr/lib/bow/bowd-exec"), missing.output());
        } finally {
            Files.move(aside, exec);
        }
    }

    /** Before the update, a failed update, recovery: through /usr/bin and /usr/lib/bow of the scratch root. */
    void lifecycle() throws Exception {
        img = dir.resolve("disk.img");
        mnt = dir.resolve("mnt");
        run = dir.resolve("run");
        bow.blockdev.FileBlockDevice.createSparse(img, SIZE);
        cmd(List.of("mkfs.ext4", "-q", "-F", "-E", "lazy_itable_init=0,lazy_journal_init=0", img.toString())).checkOk();
        Path setup = Files.createDirectories(dir.resolve("setup"));
        cmd(List.of("mount", "-o", "loop", img.toString(), setup.toString())).checkOk();
        try {
            Random r = new Random(7);
            for (int i = 0; i < 30; i++) {
                Path d = Files.createDirectories(setup.resolve("dir" + (i % 4)));
                byte[] data = new byte[r.nextInt(150_000) + 1];
                r.nextBytes(data);
                Files.write(d.resolve("file" + i), data);
            }
        } finally {
            cmd(List.of("umount", setup.toString())).checkOk();
        }
        Map<String, String> before = manifest();

        env.put("BOWD", root.resolve("usr/bin/bowd").toString());
        env.put("BOWCTL", root.resolve("usr/bin/bowctl").toString());
        env.put("BOW_DEVICE", img.toString());
        env.put("BOW_MNT", mnt.toString());
        env.put("BOW_RUN", run.toString());
        env.put("BOW_RECORD", dir.resolve("lib/checkpoint.rec").toString());
        env.put("BOW_ATTACH", "fuse");
        env.put("BOW_RETRIES", "2");
        Path scripts = root.resolve("usr/lib/bow");

        cmd(List.of(scripts.resolve("bow-pre-update").toString())).checkOk();
        assertTrue(Files.exists(dir.resolve("lib/checkpoint.rec")), "the record");
        assertEquals(0, cmd(List.of(env.get("BOWCTL"), "needs-checkpoint")).code());
        // the update: rewrites, deletes, creates
        Random r = new Random(8);
        for (int i = 0; i < 30; i += 3) Files.delete(mnt.resolve("dir" + (i % 4)).resolve("file" + i));
        for (int i = 1; i < 30; i += 3) {
            byte[] data = new byte[r.nextInt(100_000) + 1];
            r.nextBytes(data);
            Files.write(mnt.resolve("dir" + (i % 4)).resolve("file" + i), data);
        }
        byte[] big = new byte[20 << 20];
        r.nextBytes(big);
        Files.write(mnt.resolve("update.bin"), big);
        cmd(List.of("sync")).checkOk();
        // it failed: recovery
        HostTools.Result rec = cmd(List.of(scripts.resolve("bow-recovery").toString()));
        assertEquals(0, rec.code(), rec.output());
        assertFalse(Files.exists(dir.resolve("lib/checkpoint.rec")), "the record goes with the rollback");
        assertNotEquals(0, cmd(List.of("mountpoint", "-q", mnt.toString())).code(), "unmounted");
        cmd(List.of("e2fsck", "-fn", img.toString())).checkOk();
        assertEquals(before, manifest(), "every file as before the update");
    }

    /**
     * The files of the image, mounted from a copy: the checkpoint started on a mounted filesystem,
     * so the rolled-back image has a journal to replay, as at the next boot.
     */
    Map<String, String> manifest() throws Exception {
        Path ro = Files.createDirectories(dir.resolve("ro")), copy = dir.resolve("copy.img");
        cmd(List.of("cp", "--sparse=always", img.toString(), copy.toString())).checkOk();
        cmd(List.of("mount", "-o", "loop", copy.toString(), ro.toString())).checkOk();
        try {
            return Ext4EndToEndTest.manifest(ro);
        } finally {
            cmd(List.of("umount", ro.toString())).checkOk();
            Files.delete(copy);
        }
    }

    HostTools.Result cmd(List<String> command) throws Exception {
        ProcessBuilder pb = new ProcessBuilder(command).redirectErrorStream(true);
        pb.environment().putAll(env);
        Path o = Files.createTempFile(dir, "out", ".txt");
        pb.redirectOutput(o.toFile());
        Process p = pb.start();
        if (!p.waitFor(300, TimeUnit.SECONDS)) {
            p.destroyForcibly();
            fail(command + " timed out");
        }
        HostTools.Result r = new HostTools.Result(command, p.exitValue(), Files.readString(o));
        System.out.println("--- " + String.join(" ", command) + " exit " + r.code() + "\n" + r.output());
        return r;
    }
}
