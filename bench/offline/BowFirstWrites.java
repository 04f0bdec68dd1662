import bow.blockdev.BlockDevice;
import bow.blockdev.CountingDevice;
import bow.blockdev.FileBlockDevice;
import bow.bowmode.BowEngine;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Bow-mode first writes without NBD or fio: THREADS threads write 4k blocks at random
 * through the engine in state 1, each the first write to its block, for SECONDS; then the
 * same blocks again (rewrites, in place). Prints IOPS of both and device flushes per first
 * write. The image (DIR/bfw.img, 256 MiB: the lower half written, the upper half trimmed
 * as backup space) is kept between runs. Run from a tree's build:
 *   java -cp "$TOP/bowctl/target/lib/*" bench/offline/BowFirstWrites.java DIR THREADS SECONDS
 */
public class BowFirstWrites {
    public static void main(String[] a) throws Exception {
        Path dir = Path.of(a[0]);
        int threads = Integer.parseInt(a[1]);
        double seconds = Double.parseDouble(a[2]);
        long size = 256L << 20;
        int bs = 4096;
        Path img = dir.resolve("bfw.img");
        byte[] fill = new byte[1 << 20];
        new Random(1).nextBytes(fill);
        try (var ch = java.nio.channels.FileChannel.open(img, java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.WRITE)) {
            // 4k writes: pages cached in small folios, as bench/run.sh primes its image (large ones
            // make every 4k buffered write walk its whole folio: bench/RESULTS.md, "page-cache state").
            for (long p = 0; p < size; p += 4096) ch.write(ByteBuffer.wrap(fill, (int) (p % fill.length), 4096), p);
            ch.force(true);
        }
        primeCache(img);
        CountingDevice dev = new CountingDevice(FileBlockDevice.open(img, false));
        BowEngine e = BowEngine.open(dev, "bfw", bs);
        e.discard(size / 2, size / 2);
        e.startCheckpoint();
        int units = (int) (size / 2 / bs) - 1;
        int[] order = new int[units];
        for (int i = 0; i < units; i++) order[i] = i + 1;
        Random r = new Random(2);
        for (int i = units - 1; i > 0; i--) { int j = r.nextInt(i + 1); int t = order[i]; order[i] = order[j]; order[j] = t; }
        long f0 = dev.flushes();
        AtomicInteger next = new AtomicInteger();
        long firstNs = run(e, order, next, units, threads, seconds);
        int done = Math.min(next.get(), units);
        long flushes = dev.flushes() - f0;
        e.flush();
        AtomicInteger again = new AtomicInteger();
        long reNs = run(e, order, again, done, threads, seconds);
        e.flush();
        int redone = Math.min(again.get(), done);
        double first = done / (firstNs / 1e9), re = redone / (reNs / 1e9);
        System.out.printf("bow 4k x%d threads: first %d writes %.0f IOPS, flushes/write %.3f; rewrite %d writes %.0f IOPS; ratio %.2f%n",
                threads, done, first, (double) flushes / done, redone, re, first / re);
        e.close();
    }

    static long run(BowEngine e, int[] order, AtomicInteger next, int limit, int threads, double seconds) throws Exception {
        long deadline = System.nanoTime() + (long) (seconds * 1e9);
        List<Thread> ts = new ArrayList<>();
        long t0 = System.nanoTime();
        for (int t = 0; t < threads; t++) {
            Thread th = new Thread(() -> {
                ByteBuffer b = ByteBuffer.allocateDirect(4096);
                try {
                    while (System.nanoTime() < deadline) {
                        int i = next.getAndIncrement();
                        if (i >= limit) return;
                        b.clear();
                        b.putInt(0, i);
                        e.write((long) order[i] * 4096, b);
                    }
                } catch (Exception ex) {
                    throw new RuntimeException(ex);
                }
            });
            ts.add(th);
            th.start();
        }
        for (Thread th : ts) th.join();
        return System.nanoTime() - t0;
    }

    /** Re-reads the file into the page cache in small folios with bench/prime-cache.py (run from the tree's top). */
    static void primeCache(Path file) throws Exception {
        Path script = Path.of("bench/prime-cache.py");
        if (!Files.exists(script)) {
            System.err.println("no bench/prime-cache.py here (run from the tree's top): page cache left as it is");
            return;
        }
        Process p = new ProcessBuilder("/usr/bin/python3", script.toString(), file.toString()).inheritIO().start();
        if (p.waitFor() != 0) throw new IllegalStateException("prime-cache.py failed on " + file);
    }
}
