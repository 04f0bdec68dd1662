import bow.blockdev.BlockDevice;
import bow.blockdev.CountingDevice;
import bow.blockdev.FileBlockDevice;
import bow.snapshot.PersistentEngine;
import bow.snapshot.PersistentFormat;

import java.nio.ByteBuffer;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Persistent-mode first writes without NBD or fio: THREADS threads write through the
 * engine's origin view, each write the first to its chunk (4k random, one block in each
 * chunk, or 1M sequential), for SECONDS; then the same blocks again (rewrites). Prints
 * IOPS of both and device flushes per first write. DIR keeps a 256 MiB origin between
 * runs; the COW is made anew each time. Run from a tree's build:
 *   java -cp "$TOP/bowctl/target/lib/*" bench/offline/PersistentFirstWrites.java DIR 4k|1m THREADS SECONDS
 */
public class PersistentFirstWrites {
    public static void main(String[] a) throws Exception {
        Path dir = Path.of(a[0]);
        boolean big = a[1].equals("1m");
        int threads = Integer.parseInt(a[2]);
        double seconds = Double.parseDouble(a[3]);
        long size = 256L << 20;
        int cs = 32, cb = cs * 512, len = big ? 1 << 20 : 4096;
        Path o = dir.resolve("pfw-origin.img"), c = dir.resolve("pfw-cow.img");
        Files.deleteIfExists(c);
        byte[] fill = new byte[1 << 20];
        new Random(1).nextBytes(fill);
        if (!Files.exists(o) || Files.size(o) != size) try (var ch = java.nio.channels.FileChannel.open(o, java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.WRITE)) {
            // 4k writes: pages cached in small folios, as bench/run.sh primes its image (large ones
            // make every 4k buffered write walk its whole folio: bench/RESULTS.md, "page-cache state").
            for (long p = 0; p < size; p += 4096) ch.write(ByteBuffer.wrap(fill, (int) (p % fill.length), 4096), p);
            ch.force(true);
        }
        primeCache(o);
        FileBlockDevice.createSparse(c, PersistentFormat.cowBytesFor(size / cb, cs));
        CountingDevice origin = new CountingDevice(FileBlockDevice.open(o, false));
        CountingDevice cow = new CountingDevice(FileBlockDevice.open(c, false));
        PersistentEngine e = PersistentEngine.open(origin, cow, new PersistentEngine.Options(cs, false, false));
        e.startCheckpoint();
        BlockDevice view = e.exports().get("");
        int units = (int) (size / (big ? len : cb));
        int[] order = new int[units];
        for (int i = 0; i < units; i++) order[i] = i;
        Random r = new Random(2);
        if (!big) for (int i = units - 1; i > 0; i--) { int j = r.nextInt(i + 1); int t = order[i]; order[i] = order[j]; order[j] = t; }
        long f0 = origin.flushes() + cow.flushes();
        AtomicInteger next = new AtomicInteger();
        long firstNs = run(view, order, next, units, threads, seconds, big, cb, len, -1);
        int done = next.get();
        long flushes = origin.flushes() + cow.flushes() - f0;
        view.flush();
        AtomicInteger again = new AtomicInteger();
        long reNs = run(view, order, again, done, threads, seconds, big, cb, len, done);
        view.flush();
        int redone = again.get();
        System.out.printf("%s qd%d: first %d writes %.0f IOPS, flushes/write %.3f; rewrite %d writes %.0f IOPS; ratio %.2f%n",
                big ? "1M seq" : "4k rand", threads, done, done / (firstNs / 1e9), flushes / (double) done,
                redone, redone / (reNs / 1e9), (done / (firstNs / 1e9)) / (redone / (reNs / 1e9)));
        Files.deleteIfExists(c);   // the origin is kept for the next run
    }

    static long run(BlockDevice view, int[] order, AtomicInteger next, int limit, int threads, double seconds,
                    boolean big, int cb, int len, int cap) throws Exception {
        long end = System.nanoTime() + (long) (seconds * 1e9);
        List<Thread> ts = new ArrayList<>();
        long t0 = System.nanoTime();
        AtomicInteger finished = new AtomicInteger();
        for (int t = 0; t < threads; t++) {
            Thread th = new Thread(() -> {
                ByteBuffer b = ByteBuffer.allocate(len);
                try {
                    while (System.nanoTime() < end || cap >= 0) {
                        int i = next.getAndIncrement();
                        if (i >= limit) { next.decrementAndGet(); break; }
                        long off = big ? (long) order[i] * len : (long) order[i] * cb + (order[i] % (cb / len)) * (long) len;
                        b.clear();
                        view.write(off, b);
                        finished.incrementAndGet();
                    }
                } catch (Exception x) {
                    throw new RuntimeException(x);
                }
            });
            ts.add(th);
            th.start();
        }
        for (Thread th : ts) th.join();
        next.set(finished.get());
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
