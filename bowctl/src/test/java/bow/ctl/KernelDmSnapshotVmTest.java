package bow.ctl;

import bow.testing.HostTools;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.HexFormat;
import java.util.List;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

import static bow.ctl.OfflineCommandsTest.bowctl;
import static bow.testing.HostTools.run;
import static org.junit.jupiter.api.Assertions.*;

/**
 * Persistent mode against the Linux kernel's dm-snapshot, in one VM boot (vmtest/vmrun) with four
 * disks:
 * <ul>
 * <li>A: the kernel's dm-snapshot writes a COW (origin writes through snapshot-origin, 4 KiB
 *     chunks); bowd then opens that COW and its {@code snapshot} export equals the origin as it was;
 *     bowctl's offline merge brings the origin back.</li>
 * <li>B: bowd writes a COW (checkpoint, origin writes over NBD, some partial chunks); the kernel's
 *     snapshot of it reads back exactly the origin as it was; then the kernel's snapshot-merge puts
 *     bowd's COW back into the origin.</li>
 * </ul>
 */
class KernelDmSnapshotVmTest {
    static final int SIZE = 16 << 20;

    @TempDir Path dir;

    @Test
    void cowsMoveBothWaysBetweenTheKernelAndBowd() throws Exception {
        Vm.require("dmsetup", "dd", "qemu-io", "nbdcopy");
        Path originA = dir.resolve("a-origin.img"), cowA = dir.resolve("a-cow.img");
        Path originB = dir.resolve("b-origin.img"), cowB = dir.resolve("b-cow.img");
        Files.write(originA, random(1));
        Files.write(originB, random(2));
        bow.blockdev.FileBlockDevice.createSparse(cowA, 8 << 20);
        bow.blockdev.FileBlockDevice.createSparse(cowB, 8 << 20);
        String hashA = sha(originA), hashB = sha(originB);

        // B, first half: bowd writes the COW.
        Path b = Files.createDirectories(dir.resolve("b"));
        try (BowdProcess bowd = BowdProcess.start(b, "--mode", "persistent", "--device", originB.toString(), "--cow", cowB.toString())) {
            var s = bowctl("checkpoint", "start", "--control", bowd.control.toString());
            assertEquals(0, s.code(), s.toString());
            String uri = "nbd+unix:///?socket=" + bowd.nbd;
            run(List.of("qemu-io", "-f", "raw", uri,
                    "-c", "write -P 0xab 1M 3M",          // whole chunks
                    "-c", "write -P 0xcd 9M 4k",          // part of a chunk
                    "-c", "write -P 0xef 12587008 1536",  // unaligned to the chunk, 512-aligned
                    "-c", "write -P 0x11 16773120 4096",  // the last 4 KiB
                    "-c", "flush")).checkOk();
            Path snap = dir.resolve("b-snap-by-bowd.img");
            run(List.of("nbdcopy", "nbd+unix:///snapshot?socket=" + bowd.nbd, snap.toString())).checkOk();
            assertEquals(hashB, sha(snap), "bowd's own snapshot export");
            KernelNbdVmTest.shutdown(bowd);
        }
        assertNotEquals(hashB, sha(originB), "the origin was written");

        Vm.Result r = new Vm(dir).disk(originA).disk(cowA).disk(originB).disk(cowB)
                .modules("dm-snapshot").bins("dmsetup", "dd").run(GUEST).ok();
        String out = r.output();
        System.out.println(out);

        // A: the kernel's COW, served by bowd.
        assertEquals(hashA, field(out, "A-SNAP"), "the kernel's own snapshot view of A");
        String changedA = sha(originA);
        assertNotEquals(hashA, changedA, "the kernel wrote origin A");
        assertEquals(changedA, field(out, "A-ORIGIN"));
        Path a = Files.createDirectories(dir.resolve("a"));
        try (BowdProcess bowd = BowdProcess.start(a, "--mode", "persistent", "--device", originA.toString(), "--cow", cowA.toString())) {
            var st = bowctl("status", "--json", "--control", bowd.control.toString());
            assertTrue(st.out().contains("CHECKPOINT"), "bowd found the kernel's snapshot: " + st.out());
            Path snap = dir.resolve("a-snap-by-bowd.img");
            run(List.of("nbdcopy", "nbd+unix:///snapshot?socket=" + bowd.nbd, snap.toString())).checkOk();
            assertEquals(hashA, sha(snap), "bowd's snapshot export of the kernel's COW equals the original origin");
            Path origin = dir.resolve("a-origin-by-bowd.img");
            run(List.of("nbdcopy", "nbd+unix:///?socket=" + bowd.nbd, origin.toString())).checkOk();
            assertEquals(changedA, sha(origin), "bowd's origin export is the origin as the kernel left it");
            KernelNbdVmTest.shutdown(bowd);
        }
        var merge = bowctl("rollback", "--mode", "persistent", "--device", originA.toString(), "--cow", cowA.toString());
        assertEquals(0, merge.code(), merge.toString());
        assertEquals(hashA, sha(originA), "bowctl merged the kernel's COW back into the origin");

        // B, second half: the kernel read bowd's COW, then merged it.
        assertEquals(hashB, field(out, "B-SNAP"), "the kernel's snapshot of bowd's COW reads back the origin as it was");
        assertEquals(hashB, field(out, "B-MERGED"), "the kernel merged bowd's COW into the origin");
        assertEquals(hashB, sha(originB));
    }

    static final String GUEST = """
            set -e
            sha() { sha256sum < "$1" | cut -d' ' -f1; }
            # A: dm-snapshot (persistent, 8-sector chunks) takes origin writes through snapshot-origin.
            A=$(blockdev --getsz /dev/vda)
            dmsetup create a-snap --table "0 $A snapshot /dev/vda /dev/vdb P 8"
            dmsetup create a-origin --table "0 $A snapshot-origin /dev/vda"
            /usr/bin/dd if=/dev/urandom of=/dev/mapper/a-origin bs=65536 count=32 seek=16 oflag=direct status=none
            /usr/bin/dd if=/dev/urandom of=/dev/mapper/a-origin bs=512 count=3 seek=20001 oflag=direct status=none
            /usr/bin/dd if=/dev/urandom of=/dev/mapper/a-origin bs=4096 count=1 seek=4095 oflag=direct,dsync status=none
            sync
            echo "A-STATUS $(dmsetup status a-snap)"
            echo "A-SNAP $(sha /dev/mapper/a-snap)"
            echo "A-ORIGIN $(sha /dev/mapper/a-origin)"
            dmsetup remove a-origin
            dmsetup remove a-snap
            # B: bowd's COW as a kernel snapshot, read back, then merged by the kernel.
            B=$(blockdev --getsz /dev/vdc)
            dmsetup create b-snap --table "0 $B snapshot /dev/vdc /dev/vdd P 32"
            echo "B-STATUS $(dmsetup status b-snap)"
            echo "B-SNAP $(sha /dev/mapper/b-snap)"
            dmsetup remove b-snap
            dmsetup create b-merge --table "0 $B snapshot-merge /dev/vdc /dev/vdd P 32"
            n=0
            while :; do
              set -- $(dmsetup status b-merge)
              used=${4%/*}
              echo "B-MERGE-STATUS $*"
              [ "$used" = "$5" ] && break
              n=$((n + 1)); [ $n -lt 600 ] || { echo "merge did not finish"; exit 1; }
              sleep 0.1
            done
            dmsetup remove b-merge
            echo "B-MERGED $(sha /dev/vdc)"
            """;

    static String field(String out, String name) {
        Matcher m = Pattern.compile("^" + name + " ([0-9a-f]{64})$", Pattern.MULTILINE).matcher(out);
        assertTrue(m.find(), name + " in the guest's output:\n" + out);
        return m.group(1);
    }

    static byte[] random(long seed) {
        byte[] b = new byte[SIZE];
        new Random(seed).nextBytes(b);
        return b;
    }

    static String sha(Path p) throws Exception {
        return HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p)));
    }
}
