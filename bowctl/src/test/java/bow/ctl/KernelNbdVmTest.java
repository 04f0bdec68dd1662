package bow.ctl;

import bow.testing.HostTools;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

import static bow.ctl.OfflineCommandsTest.bowctl;
import static bow.testing.HostTools.run;
import static org.junit.jupiter.api.Assertions.*;

/**
 * The Linux kernel's own NBD client against bowd (bow mode), in a VM (vmtest/vmrun): the guest's
 * nbd-client reaches bowd's Unix socket through a virtio-serial port. First boot: mkfs.ext4, files,
 * fstrim (the trims must reach bowd). Then the checkpoint starts on the host. Second boot: rewrites,
 * deletes, creates, O_DIRECT and O_DSYNC (FUA) writes, sync. Then an offline rollback must give back
 * every file of the first boot (and none of the new ones), e2fsck clean; or a commit keeps the
 * second boot's files.
 */
class KernelNbdVmTest {
    static final long SIZE = 64L << 20;

    @TempDir Path dir;
    Path img;

    @BeforeEach
    void setUp() throws Exception {
        Vm.require("nbd-client", "mke2fs", "fstrim", "dd", "e2fsck", "mount", "umount");
        img = dir.resolve("disk.img");
        bow.blockdev.FileBlockDevice.createSparse(img, SIZE);
    }

    /** Attach /dev/nbd0 through the bridge ({@code opts}: nbd-client flags), mount it on /mnt. */
    static String attach(String opts) {
        return """
                set -e
                nbd-client -unix /run/nbd.sock /dev/nbd0 %s
                """.formatted(opts);
    }

    static final String MANIFEST = """
            cd /mnt
            find . -type f ! -path './lost+found/*' | sort | while read -r f; do echo "FILE $(sha256sum "$f")"; done
            cd /
            """;

    static final String DETACH = """
            umount /mnt
            nbd-client -d /dev/nbd0
            """;

    static final String FIRST_BOOT = """
            /usr/sbin/mke2fs -q -t ext4 -F -E lazy_itable_init=0,lazy_journal_init=0 /dev/nbd0
            mount -t ext4 /dev/nbd0 /mnt
            i=1
            while [ $i -le 40 ]; do
              mkdir -p /mnt/d$((i % 5))
              head -c $((i * 7919 + 1)) /dev/urandom > /mnt/d$((i % 5))/f$i
              i=$((i + 1))
            done
            head -c 4194304 /dev/urandom > /mnt/big
            sync
            /usr/sbin/fstrim -v /mnt
            """;

    static final String SECOND_BOOT = """
            mount -t ext4 /dev/nbd0 /mnt
            for i in 1 2 3 4 5 6 7 8; do head -c $((i * 5003)) /dev/urandom > /mnt/d$((i % 5))/f$i; done
            for i in 11 12 13 14 15 16; do rm /mnt/d$((i % 5))/f$i; done
            mkdir -p /mnt/new
            for i in 1 2 3 4 5 6; do head -c $((i * 30011)) /dev/urandom > /mnt/new/n$i; done
            # O_DIRECT in place over old blocks, O_DIRECT|O_DSYNC (FUA) too, and a new O_DIRECT file
            /usr/bin/dd if=/dev/urandom of=/mnt/big bs=65536 count=16 seek=4 conv=notrunc oflag=direct status=none
            /usr/bin/dd if=/dev/urandom of=/mnt/d1/f21 bs=4096 count=2 conv=notrunc oflag=direct,dsync status=none
            /usr/bin/dd if=/dev/urandom of=/mnt/new/direct bs=1048576 count=6 oflag=direct status=none
            rm /mnt/d0/f30
            sync
            """;

    @Test
    void kernelClientExt4CheckpointThenOfflineRollback() throws Exception {
        Map<String, String> first;
        try (BowdProcess bowd = BowdProcess.start(dir, "--device", img.toString(), "--client-timeout", "300")) {
            Vm vm = new Vm(dir);
            first = boot(vm, bowd, "-b 4096", FIRST_BOOT, 1);
            startCheckpoint(bowd);
            Map<String, String> second = boot(vm, bowd, "-b 4096", SECOND_BOOT, 1);
            assertNotEquals(first, second, "the second boot changed files");
            long backedUp = statusNumber(bowd, "backed_up_bytes");
            assertTrue(backedUp > 1 << 20, "the second boot's overwrites were backed up: " + backedUp);
            shutdown(bowd);
        }
        var rb = bowctl("rollback", "--device", img.toString(), "--yes");
        assertEquals(0, rb.code(), rb.toString());
        run(List.of("e2fsck", "-fn", img.toString())).checkOk();
        assertEquals(first, hostManifest(), "every file of the first boot has its bytes back, the new ones are gone");
    }

    /** Two connections (nbd-client -C 2, two guest CPUs), 512-byte blocks, then an online commit. */
    @Test
    void kernelClientTwoConnectionsCheckpointThenCommit() throws Exception {
        Map<String, String> second;
        try (BowdProcess bowd = BowdProcess.start(dir, "--device", img.toString(), "--client-timeout", "300")) {
            Vm vm = new Vm(dir);
            Map<String, String> first = boot(vm, bowd, "-b 512 -C 2", FIRST_BOOT, 2);
            startCheckpoint(bowd);
            second = boot(vm, bowd, "-b 512 -C 2", SECOND_BOOT, 2);
            assertNotEquals(first, second);
            assertTrue(statusNumber(bowd, "backed_up_bytes") > 0);
            var c = bowctl("commit", "--control", bowd.control.toString());
            assertEquals(0, c.code(), c.toString());
            assertTrue(bowctl("status", "--json", "--control", bowd.control.toString()).out().contains("\"state\":\"2 COMMITTED\""));
            shutdown(bowd);
        }
        assertEquals(3, bowctl("rollback", "--device", img.toString(), "--yes").code(), "nothing left to roll back");
        run(List.of("e2fsck", "-fn", img.toString())).checkOk();
        assertEquals(second, hostManifest(), "the committed files are the second boot's");
    }

    // ---------------------------------------------------------------- plumbing

    /** One boot with bowd's socket as the NBD port(s): attach, {@code body}, manifest, detach. */
    Map<String, String> boot(Vm vm, BowdProcess bowd, String nbdOpts, String body, int connections) throws Exception {
        for (int i = 0; i < connections; i++) vm.nbd(bowd.nbd);
        Vm.Result r = vm.cpus(connections).modules("nbd", "ext4").bins("nbd-client", "mke2fs", "fstrim", "dd")
                .run(attach(nbdOpts) + body + "echo \"CONNECTIONS $(cat /run/bowvm-next)\"\n" + MANIFEST + DETACH);
        r.ok();
        assertTrue(r.output().contains("CONNECTIONS " + connections), "the kernel used " + connections + " connection(s):\n" + r.output());
        Map<String, String> m = new TreeMap<>();
        for (String line : r.output().split("\n")) {
            if (!line.startsWith("FILE ")) continue;
            String[] f = line.substring(5).trim().split("\\s+", 2);
            m.put(f[1].replaceFirst("^\\./", ""), f[0]);
        }
        assertTrue(m.size() > 30, "the guest listed its files:\n" + r.output());
        // qemu is gone: bowd sees the connection(s) close (hang guard only)
        for (int i = 0; i < 200 && statusNumber(bowd, "nbd_connections") != 0; i++) Thread.sleep(50);
        assertEquals(0, statusNumber(bowd, "nbd_connections"), "the guest disconnected");
        return m;
    }

    void startCheckpoint(BowdProcess bowd) throws Exception {
        long free = statusNumber(bowd, "free_bytes");
        assertTrue(free > SIZE / 2, "the kernel's trims (mkfs, fstrim) reached bowd: free_bytes " + free);
        var s = bowctl("checkpoint", "start", "--control", bowd.control.toString());
        assertEquals(0, s.code(), s.toString());
    }

    static long statusNumber(BowdProcess bowd, String key) {
        var st = bowctl("status", "--json", "--control", bowd.control.toString());
        assertEquals(0, st.code(), st.toString());
        @SuppressWarnings("unchecked")
        Map<String, Object> m = (Map<String, Object>) MiniJson.parse(st.out().trim());
        Object v = m.get(key);
        assertNotNull(v, key + " in " + st.out());
        return ((Number) v).longValue();
    }

    static void shutdown(BowdProcess bowd) throws Exception {
        assertEquals(0, bowctl("shutdown", "--control", bowd.control.toString()).code());
        assertEquals(0, bowd.waitFor(), bowd.output());
    }

    Map<String, String> hostManifest() throws Exception {
        HostTools.require(Files.exists(Path.of("/dev/loop-control")), "loop devices are needed");
        Path ro = Files.createDirectories(dir.resolve("ro"));
        run(List.of("mount", "-o", "ro,loop", img.toString(), ro.toString())).checkOk();
        try (Stream<Path> s = Files.walk(ro)) {
            Map<String, String> m = new TreeMap<>();
            for (Path p : s.filter(Files::isRegularFile).filter(p -> !ro.relativize(p).toString().startsWith("lost+found")).toList()) {
                m.put(ro.relativize(p).toString(), HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p))));
            }
            return m;
        } finally {
            run(List.of("umount", ro.toString())).checkOk();
        }
    }
}
