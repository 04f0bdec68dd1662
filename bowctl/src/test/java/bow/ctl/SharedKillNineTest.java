package bow.ctl;

import bow.testing.HostTools;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.concurrent.atomic.AtomicReference;

import static bow.ctl.SharedClients.*;
import static org.junit.jupiter.api.Assertions.*;

/**
 * kill -9 of {@code bowd --mode shared} while qemu-io and nbdcopy write the origin and qemu-io
 * writes a writable snapshot, then a restart on the same files: every read-only snapshot reads
 * exactly as when it was created; the origin and the writable snapshot hold every write of
 * each client call that ended with a completed flush, and per sector either the old data or
 * that of a write in flight at the kill; a snapshot created mid-workload reads as it read before
 * the kill, and one deleted mid-workload (its reclaim racing the writers) stays gone;
 * {@code bowctl shared check} is clean right after the
 * kill (nothing to replay) and after the last clean stop. Each writer owns its range, so a
 * sector has one writer and the model is exact. Rounds from {@code -Dbow.test.e2e.kills}
 * (default 2).
 */
class SharedKillNineTest {
    static final int ROUNDS = Integer.getInteger("bow.test.e2e.kills", 2);
    static final int SIZE = 32 << 20;
    static final int HALF = SIZE / 2;
    static final int SECTOR = 512;

    @TempDir Path dir;
    BowdProcess bowd;
    Path originFile, cow;

    @AfterEach
    void tearDown() throws Exception {
        LibnbdScript.stop(bowd);
    }

    /** One write of a client call: {@code data} at {@code off}. */
    record Write(int off, byte[] data) {}

    /** What an export must read as: the durable image, and the writes of the one call in flight when the daemon died. */
    static final class Model {
        final String export;
        final byte[] durable;
        /** Per writer (each owns its range): the writes of its call not known to be flushed. */
        final java.util.Map<Object, List<Write>> inFlight = new java.util.concurrent.ConcurrentHashMap<>();

        Model(String export, byte[] image) {
            this.export = export;
            this.durable = image;
        }

        /** The call ended with a flush: its writes, in order, are the image now. */
        void completed(Object writer, List<Write> ws) {
            for (Write w : ws) System.arraycopy(w.data, 0, durable, w.off, w.data.length);
            inFlight.remove(writer);
        }

        /** Each sector is the durable one or one an in-flight write put there; then the read image is the durable one. */
        void check(byte[] actual) {
            assertEquals(durable.length, actual.length, export);
            for (int s = 0; s < durable.length / SECTOR; s++) {
                int o = s * SECTOR;
                if (Arrays.equals(durable, o, o + SECTOR, actual, o, o + SECTOR)) continue;
                boolean fromInFlight = false;
                for (Write w : inFlight.values().stream().flatMap(List::stream).toList()) {
                    if (o >= w.off && o + SECTOR <= w.off + w.data.length
                            && Arrays.equals(w.data, o - w.off, o - w.off + SECTOR, actual, o, o + SECTOR)) {
                        fromInFlight = true;
                        break;
                    }
                }
                if (!fromInFlight) fail(export + ": sector " + s + " is neither its last flushed data nor that of a write in flight at the kill"
                        + " (calls in flight: " + inFlight.size() + ")");
            }
            System.arraycopy(actual, 0, durable, 0, actual.length);
            inFlight.clear();
        }
    }

    /** A client loop on one range of one export, until its call fails (the daemon was killed). */
    final class Writer extends Thread {
        final Model model;
        final int from, to;
        final boolean nbdcopy;
        final Random r;
        final AtomicInteger calls = new AtomicInteger();
        final AtomicReference<String> failedBeforeKill = new AtomicReference<>();
        volatile boolean killed;

        Writer(Model model, int from, int to, boolean nbdcopy, long seed) {
            this.model = model;
            this.from = from;
            this.to = to;
            this.nbdcopy = nbdcopy;
            this.r = new Random(seed);
            setDaemon(true);
        }

        @Override
        public void run() {
            try {
                while (true) {
                    List<Write> ws = new ArrayList<>();
                    HostTools.Result res;
                    if (nbdcopy) {
                        // nbdcopy writes from offset 0: this writer owns [0, to)
                        byte[] in = new byte[(1 + r.nextInt(to / (256 << 10))) * (256 << 10)];
                        r.nextBytes(in);
                        Path f = dir.resolve("in-" + getId() + ".bin");
                        Files.write(f, in);
                        ws.add(new Write(0, in));
                        model.inFlight.put(this, ws);
                        res = write(f, bowd.nbd, model.export);
                    } else {
                        List<String> cmds = new ArrayList<>();
                        for (int i = 0, n = 2 + r.nextInt(6); i < n; i++) {
                            int len = (1 + r.nextInt(128)) * SECTOR;
                            int off = from + r.nextInt((to - from - len) / SECTOR) * SECTOR;
                            int b = r.nextInt(256);
                            byte[] data = new byte[len];
                            Arrays.fill(data, (byte) b);
                            cmds.add(b == 0 ? "write -z " + off + " " + len : "write -P " + b + " " + off + " " + len);
                            ws.add(new Write(off, data));
                        }
                        cmds.add("flush");
                        model.inFlight.put(this, ws);
                        res = qemuIo(bowd.nbd, model.export, cmds);
                    }
                    boolean ok = res.code() == 0 && !res.output().contains("failed") && !res.output().contains("rror");
                    if (!ok) {
                        if (!killed) failedBeforeKill.set(String.join(" ", res.command()) + " exited " + res.code() + ":\n" + res.output());
                        return;
                    }
                    model.completed(this, ws);
                    calls.incrementAndGet();
                }
            } catch (Exception | AssertionError e) {
                if (!killed) failedBeforeKill.set(e.toString());
            }
        }
    }

    /** Until every writer has finished {@code n} more flushed calls than now; fails at once if one failed. */
    static void awaitCalls(List<Writer> writers, int n) throws InterruptedException {
        long end = System.nanoTime() + TimeUnit.SECONDS.toNanos(120);
        int[] base = writers.stream().mapToInt(w -> w.calls.get()).toArray();
        while (java.util.stream.IntStream.range(0, base.length).anyMatch(i -> writers.get(i).calls.get() < base[i] + n)) {
            for (Writer w : writers) if (w.failedBeforeKill.get() != null) fail("a client failed before the kill: " + w.failedBeforeKill.get());
            assertTrue(System.nanoTime() < end, "the writers did not get through " + n + " more calls each in 120 s");
            Thread.sleep(20);
        }
    }

    BowdProcess startBowd() throws Exception {
        return BowdProcess.start(dir, "--mode", "shared", "--device", originFile.toString(), "--cow", cow.toString());
    }

    @Test
    void killDashNineMidWorkloadThenRestart() throws Exception {
        HostTools.requireTools("qemu-io", "nbdcopy", "nbdinfo");
        originFile = dir.resolve("origin.img");
        cow = dir.resolve("cow.img");
        byte[] start = new byte[SIZE];
        Random r = new Random(77);
        r.nextBytes(start);
        Files.write(originFile, start);
        bow.blockdev.FileBlockDevice.createSparse(cow, 256L << 20);
        bowd = startBowd();

        // Four read-only snapshots of different origins, then a writable one.
        Model origin = new Model("", start.clone());
        Map<String, byte[]> expected = new LinkedHashMap<>();   // read-only snapshot name -> its image
        Map<String, Integer> ids = new LinkedHashMap<>();
        List<String> deleted = new ArrayList<>();
        for (int n = 0; n < 4; n++) {
            ids.put("ro" + n, create(bowd.control, "--name", "ro" + n));
            expected.put("ro" + n, origin.durable.clone());
            List<Write> ws = new ArrayList<>();
            List<String> cmds = new ArrayList<>();
            for (int i = 0; i < 8; i++) {
                int len = (1 + r.nextInt(512)) * SECTOR, off = r.nextInt((SIZE - len) / SECTOR) * SECTOR, b = 1 + r.nextInt(255);
                byte[] data = new byte[len];
                Arrays.fill(data, (byte) b);
                ws.add(new Write(off, data));
                cmds.add("write -P " + b + " " + off + " " + len);
            }
            cmds.add("flush");
            checkQemuIo(qemuIo(bowd.nbd, "", cmds));
            origin.completed(this, ws);
        }
        int rw = create(bowd.control, "--name", "rw", "--writable");
        Model snap = new Model("snapshot-rw", origin.durable.clone());

        Path out = dir.resolve("read.bin");
        for (int round = 0; round < ROUNDS; round++) {
            List<Writer> writers = List.of(
                    new Writer(origin, 0, 4 << 20, true, round * 10 + 1),
                    new Writer(origin, HALF, SIZE, false, round * 10 + 2),
                    new Writer(snap, 0, SIZE, false, round * 10 + 3));
            writers.forEach(Thread::start);
            awaitCalls(writers, 1);
            // Mid-workload: a snapshot of the origin as the writers leave it at that instant (read back while they
            // go on: it must not change, then or after the kill), and a delete whose reclaim runs under the writers.
            String mid = "mid" + round;
            ids.put(mid, create(bowd.control, "--name", mid));
            expected.put(mid, read(bowd.nbd, "snapshot-" + mid, out));
            if (round < 4) {
                String gone = "ro" + round;
                assertEquals(0, ctl(bowd.control, "snapshot", "delete", gone).code());
                expected.remove(gone);
                ids.remove(gone);
                deleted.add(gone);
            }
            assertSame(expected.get(mid), read(bowd.nbd, "snapshot-" + mid, dir.resolve("again.bin")), "snapshot-" + mid + " while the writers go on");
            awaitCalls(writers, 1);
            Thread.sleep(r.nextInt(300));
            for (Writer w : writers) w.killed = true;
            assertTrue(writers.stream().allMatch(Thread::isAlive), "the kill lands while every writer is running");
            bowd.kill9();
            for (Writer w : writers) {
                w.join(120_000);
                assertFalse(w.isAlive(), "a client hangs after the kill");
                assertNull(w.failedBeforeKill.get());
            }
            System.out.println("round " + round + ": killed after " + writers.stream().map(w -> "" + w.calls.get()).toList() + " flushed calls");
            assertCheckClean(cow);

            bowd = startBowd();
            for (Map.Entry<String, byte[]> e : expected.entrySet()) {
                assertSame(e.getValue(), read(bowd.nbd, "snapshot-" + ids.get(e.getKey()), out), "round " + round + ": snapshot-" + ids.get(e.getKey()));
                assertSame(e.getValue(), read(bowd.nbd, "snapshot-" + e.getKey(), out), "round " + round + ": snapshot-" + e.getKey());
            }
            for (String gone : deleted) {
                assertNotEquals(0, HostTools.run(List.of("nbdinfo", uri(bowd.nbd, "snapshot-" + gone))).code(), "deleted before the kill: " + gone);
            }
            origin.check(read(bowd.nbd, "", out));
            snap.check(read(bowd.nbd, "snapshot-" + rw, out));
            assertEquals(expected.size() + 1, ((List<?>) json(ctl(bowd.control, "snapshot", "list", "--json")).get("snapshots")).size());
        }
        assertEquals(0, ctl(bowd.control, "shutdown").code());
        assertEquals(0, bowd.waitFor(), bowd.output());
        assertCheckClean(cow);
        assertSame(origin.durable, Files.readAllBytes(originFile), "the origin file after the clean stop");
    }
}
