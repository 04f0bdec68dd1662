package bow.ctl;

import bow.testing.HostTools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.CompletableFuture;

import static bow.ctl.SharedClients.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * {@code bowd --mode shared} as its own process with real clients: qemu-io and nbdcopy write the
 * origin at once (on disjoint ranges) between 10 snapshot creates; the test keeps the image each
 * snapshot must show (its model of the origin, checked against an nbdcopy of the origin export
 * just before each create) and reads every {@code snapshot-ID} and {@code snapshot-NAME} export
 * back with nbdcopy, byte for byte, then again after deleting two snapshots and after a restart;
 * {@code bowctl shared check} is clean once the daemon has stopped.
 */
class SharedRealClientsTest {
    static final int SIZE = 32 << 20;
    static final int HALF = SIZE / 2;
    static final int SNAPSHOTS = 10;

    @TempDir Path dir;
    BowdProcess bowd;

    @AfterEach
    void tearDown() throws Exception {
        LibnbdScript.stop(bowd);
    }

    @Test
    void tenSnapshotsReadBackExactlyWhileRealClientsWriteTheOrigin() throws Exception {
        HostTools.requireTools("qemu-io", "nbdcopy", "nbdinfo");
        Path originFile = dir.resolve("origin.img"), cow = dir.resolve("cow.img");
        byte[] origin = new byte[SIZE];
        Random r = new Random(91);
        r.nextBytes(origin);
        Files.write(originFile, origin);
        bow.blockdev.FileBlockDevice.createSparse(cow, 256L << 20);
        bowd = BowdProcess.start(dir, "--mode", "shared", "--device", originFile.toString(), "--cow", cow.toString());

        List<byte[]> expected = new ArrayList<>();
        List<Integer> ids = new ArrayList<>();
        for (int n = 0; n < SNAPSHOTS; n++) {
            writeOrigin(r, origin, n);
            assertSame(origin, read(bowd.nbd, "", dir.resolve("origin-now.bin")), "the origin before snapshot " + n);
            // odd ones named, even ones by ID only
            int id = n % 2 == 1 ? create(bowd.control, "--name", "s" + n) : create(bowd.control);
            ids.add(id);
            expected.add(origin.clone());
        }
        writeOrigin(r, origin, SNAPSHOTS);
        assertSame(origin, read(bowd.nbd, "", dir.resolve("origin-now.bin")), "the origin after the last writes");

        Map<String, Object> list = json(ctl(bowd.control, "snapshot", "list", "--json"));
        List<?> snaps = (List<?>) list.get("snapshots");
        assertEquals(SNAPSHOTS, snaps.size(), list.toString());
        long held = 0;
        for (Object o : snaps) {
            @SuppressWarnings("unchecked") Map<String, Object> s = (Map<String, Object>) o;
            assertEquals(Boolean.FALSE, s.get("writable"), s.toString());
            held += (Long) s.get("chunks_alone");
        }
        assertTrue(held > 0, "the origin writes copied chunks out for the snapshots: " + list);
        assertTrue((Long) list.get("free_chunks") < (Long) list.get("total_chunks"), list.toString());

        checkAll(expected, ids, -1);

        // Deleting two leaves the others exact.
        assertEquals(0, ctl(bowd.control, "snapshot", "delete", "" + ids.get(4)).code());
        assertEquals(0, ctl(bowd.control, "snapshot", "delete", "s7").code());
        assertEquals(SNAPSHOTS - 2, ((List<?>) json(ctl(bowd.control, "snapshot", "list", "--json")).get("snapshots")).size());
        assertNotEquals(0, HostTools.run(List.of("nbdinfo", uri(bowd.nbd, "snapshot-s7"))).code(), "a deleted snapshot has no export");
        writeOrigin(r, origin, SNAPSHOTS + 1);

        stop();
        assertCheckClean(cow);
        bowd = BowdProcess.start(dir, "--mode", "shared", "--device", originFile.toString(), "--cow", cow.toString());
        assertSame(origin, read(bowd.nbd, "", dir.resolve("origin-now.bin")), "the origin after the restart");
        checkAll(expected, ids, 4, 7);
        assertEquals(SNAPSHOTS - 2, ((List<?>) json(ctl(bowd.control, "snapshot", "list", "--json")).get("snapshots")).size());
        stop();
        assertCheckClean(cow);
        assertSame(origin, Files.readAllBytes(originFile), "the origin file after the clean stop");
    }

    /** Every live snapshot's exports (by ID, and by name when it has one) read back with nbdcopy. */
    void checkAll(List<byte[]> expected, List<Integer> ids, int... deleted) throws Exception {
        Path out = dir.resolve("snap.bin");
        next:
        for (int n = 0; n < expected.size(); n++) {
            for (int d : deleted) if (d == n) continue next;
            assertSame(expected.get(n), read(bowd.nbd, "snapshot-" + ids.get(n), out), "snapshot-" + ids.get(n) + " (the " + n + "th)");
            if (n % 2 == 1) assertSame(expected.get(n), read(bowd.nbd, "snapshot-s" + n, out), "snapshot-s" + n);
        }
    }

    /**
     * nbdcopy writes a random file over the start of the first half while one qemu-io process
     * writes patterns, zeroes and a rewrite into the second half; both flush, and {@code origin}
     * (the model) gets the same changes.
     */
    void writeOrigin(Random r, byte[] origin, int round) throws Exception {
        byte[] in = new byte[(1 + r.nextInt(6)) << 20];
        r.nextBytes(in);
        Path inFile = dir.resolve("in" + round + ".bin");
        Files.write(inFile, in);
        List<String> cmds = new ArrayList<>();
        List<int[]> writes = new ArrayList<>();   // {offset, length, byte (-1: zeroes)}
        for (int i = 0; i < 12; i++) {
            int len = (1 + r.nextInt(256)) * 512;
            int off = HALF + r.nextInt((HALF - len) / 512) * 512;   // sector-aligned, not chunk-aligned
            int b = i % 4 == 3 ? -1 : 1 + r.nextInt(255);
            cmds.add(b < 0 ? "write -z " + off + " " + len : "write -P " + b + " " + off + " " + len);
            writes.add(new int[] {off, len, b});
        }
        cmds.add("flush");
        CompletableFuture<HostTools.Result> copy = CompletableFuture.supplyAsync(() -> {
            try {
                return write(inFile, bowd.nbd, "");
            } catch (Exception e) {
                throw new RuntimeException(e);
            }
        });
        checkQemuIo(qemuIo(bowd.nbd, "", cmds));
        copy.get().checkOk();
        System.arraycopy(in, 0, origin, 0, in.length);
        for (int[] w : writes) java.util.Arrays.fill(origin, w[0], w[0] + w[1], (byte) Math.max(w[2], 0));
        Files.delete(inFile);
    }

    void stop() throws Exception {
        assertEquals(0, ctl(bowd.control, "shutdown").code());
        assertEquals(0, bowd.waitFor(), bowd.output());
    }
}
