import bow.blockdev.FileBlockDevice;
import java.nio.ByteBuffer;
import java.nio.file.Path;
import java.util.*;
import java.util.concurrent.atomic.*;

/**
 * Flush cost with a page cache full of client data: a "flight" writes 8 contiguous backup blocks,
 * then either (a) sector 0 and a full flush (fdatasync) or (b) FileBlockDevice.writeDurably of
 * sector 0 naming the 8 blocks (sync_file_range + RWF_DSYNC), while 4 threads keep dirtying random
 * 4k pages elsewhere, as acknowledged client writes do. Prints the flight-time distribution of
 * both, interleaved. Run from a built tree:
 *   java -cp "$TOP/bowctl/target/lib/*" bench/offline/FlushModes.java DIR/fm.img ROUNDS
 */
public class FlushModes {
    public static void main(String[] a) throws Exception {
        Path img = Path.of(a[0]);
        int rounds = Integer.parseInt(a[1]);
        long size = 256L << 20;
        byte[] fill = new byte[1 << 20];
        new Random(1).nextBytes(fill);
        try (var ch = java.nio.channels.FileChannel.open(img, java.nio.file.StandardOpenOption.CREATE, java.nio.file.StandardOpenOption.WRITE)) {
            for (long p = 0; p < size; p += fill.length) ch.write(ByteBuffer.wrap(fill), p);
            ch.force(true);
        }
        FileBlockDevice dev = FileBlockDevice.open(img, false);
        System.out.println("syncsRanges " + dev.syncsRanges());
        AtomicBoolean stop = new AtomicBoolean();
        AtomicLong dirtied = new AtomicLong();
        List<Thread> ts = new ArrayList<>();
        for (int t = 0; t < 4; t++) {
            Thread th = new Thread(() -> {
                Random r = new Random();
                ByteBuffer b = ByteBuffer.allocateDirect(4096);
                while (!stop.get()) {
                    try {
                        b.clear();
                        dev.write((1 + r.nextInt(size > 0 ? (int) (size / 2 / 4096) - 1 : 1)) * 4096L, b);
                        dirtied.incrementAndGet();
                        java.util.concurrent.locks.LockSupport.parkNanos(100_000);   // ~10k writes/s per thread
                    } catch (Exception e) { throw new RuntimeException(e); }
                }
            });
            th.start(); ts.add(th);
        }
        long backup = size / 2;
        ByteBuffer blk = ByteBuffer.allocate(4096);
        for (int rep = 0; rep < 4; rep++) {
            for (int mode = 0; mode < 2; mode++) {
                long[] times = new long[rounds];
                for (int i = 0; i < rounds; i++) {
                    long[] offs = new long[8], lens = new long[8];
                    for (int k = 0; k < 8; k++) {
                        if (backup >= size - 4096) backup = size / 2;
                        blk.clear(); dev.write(backup, blk);
                        offs[k] = backup; lens[k] = 4096; backup += 4096;
                    }
                    ByteBuffer s0 = ByteBuffer.allocate(512);
                    long t0 = System.nanoTime();
                    if (mode == 0) { dev.write(0, s0); dev.flush(); }
                    else dev.writeDurably(0, s0, offs, lens, 8);
                    times[i] = System.nanoTime() - t0;
                }
                Arrays.sort(times);
                double mean = Arrays.stream(times).average().orElse(0) / 1e6;
                System.out.printf("%s: median %.3f ms, p90 %.3f, p99 %.3f, max %.1f, mean %.3f (data writes so far %d)%n",
                        mode == 0 ? "write+fdatasync " : "writeDurably    ", times[rounds / 2] / 1e6, times[rounds * 9 / 10] / 1e6,
                        times[rounds * 99 / 100] / 1e6, times[rounds - 1] / 1e6, mean, dirtied.get());
            }
        }
        stop.set(true);
        for (Thread th : ts) th.join();
        dev.close();
    }
}
