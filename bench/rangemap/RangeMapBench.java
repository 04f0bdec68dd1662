package bow.bowmode;

import java.lang.management.ManagementFactory;
import java.lang.management.MemoryMXBean;
import java.lang.management.ThreadMXBean;
import java.util.SplittableRandom;

/**
 * Plain driver (no JMH on this machine's offline Maven) for the range map with a
 * million fragmented free ranges. Prints one line of key=value figures:
 * <ul>
 *   <li>{@code alloc_us}: µs per allocation as the engine does it (lastFree, runEnd, the
 *       top blocks of the run set to BACKUP) from a map with a million free runs;</li>
 *   <li>{@code alloc_first_us}: the same from the bottom (firstFree; the engine's allocation
 *       before backups went high, and what {@code alloc_us} measured until then);</li>
 *   <li>{@code split_us}: µs per split (one block of a run set to another type in the middle);</li>
 *   <li>{@code bytes_per_range}: heap growth of building the map, per range.</li>
 * </ul>
 * Lives in package bow.bowmode to reach the engine's package-private types; bench/run.sh
 * compiles it against bowd's jar. Usage: {@code java -cp ... bow.bowmode.RangeMapBench [freeRuns] [ops]}.
 */
public final class RangeMapBench {
    public static void main(String[] args) {
        int freeRuns = args.length > 0 ? Integer.parseInt(args[0]) : 1_000_000;
        int ops = args.length > 1 ? Integer.parseInt(args[1]) : 200_000;
        long blocks = 16L * freeRuns + 1024;       // 16 M blocks of 4 KiB: a 64 GiB device
        MemoryMXBean mem = ManagementFactory.getMemoryMXBean();

        long before = usedAfterGc(mem);
        RangeMap map = build(blocks, freeRuns, 1);
        long after = usedAfterGc(mem);
        int ranges = map.rangeCount();
        double bytesPerRange = (after - before) / (double) ranges;

        // Warm up the JIT on a second map, then measure on the first.
        RangeMap warm = build(blocks / 4, freeRuns / 4, 2);
        allocateHigh(warm, ops / 2);
        allocate(warm, ops / 2);
        split(warm, blocks / 4, ops / 2, 3);

        // Thread CPU time as well as wall time: on a shared machine the wall clock counts
        // the time other processes had the CPU.
        ThreadMXBean th = ManagementFactory.getThreadMXBean();
        long c0 = th.getCurrentThreadCpuTime(), t0 = System.nanoTime();
        int got = allocateHigh(map, ops);
        long c1 = th.getCurrentThreadCpuTime(), t1 = System.nanoTime();
        split(map, blocks, ops, 4);
        long c2 = th.getCurrentThreadCpuTime(), t2 = System.nanoTime();
        got += allocate(map, ops);
        long c3 = th.getCurrentThreadCpuTime();
        if (got != 2 * ops) throw new IllegalStateException("only " + got + " allocations");
        System.out.printf("free_runs=%d ranges=%d alloc_us=%.3f split_us=%.3f alloc_wall_us=%.3f split_wall_us=%.3f"
                        + " bytes_per_range=%.1f ops=%d ranges_after=%d alloc_first_us=%.3f%n",
                freeRuns, ranges, (c1 - c0) / 1e3 / ops, (c2 - c1) / 1e3 / ops, (t1 - t0) / 1e3 / ops, (t2 - t1) / 1e3 / ops,
                bytesPerRange, ops, map.rangeCount(), (c3 - c2) / 1e3 / ops);
        if (warm.rangeCount() == 0) System.out.println();   // keep warm alive
    }

    /** A device of UNCHANGED blocks with {@code freeRuns} FREE runs of 1..8 blocks, spread at random. */
    private static RangeMap build(long blocks, int freeRuns, long seed) {
        RangeMap m = new RangeMap(blocks, RangeType.UNCHANGED);
        SplittableRandom r = new SplittableRandom(seed);
        long stride = blocks / freeRuns;          // 16: a free run of 1..8 and a gap of at least 8
        for (long i = 0; i < freeRuns; i++) {
            long s = i * stride + r.nextInt(8);
            m.set(s, s + 1 + r.nextInt(Math.min(8, (int) stride - 8)), RangeType.FREE);
        }
        return m;
    }

    /** What BowEngine's plan does for one backup: the top (up to 4 blocks) of the highest free run becomes BACKUP. */
    private static int allocateHigh(RangeMap m, int n) {
        int done = 0;
        for (int i = 0; i < n; i++) {
            long f = m.lastFree();
            if (f < 0) break;
            long end = m.runEnd(f);
            m.set(Math.max(f, end - 4), end, RangeType.BACKUP);
            done++;
        }
        return done;
    }

    /** The former allocation: the lowest free run, up to 4 blocks of it become BACKUP. */
    private static int allocate(RangeMap m, int n) {
        int done = 0;
        for (int i = 0; i < n; i++) {
            long f = m.firstFree();
            if (f < 0) break;
            long end = Math.min(m.runEnd(f), f + 4);
            m.set(f, end, RangeType.BACKUP);
            done++;
        }
        return done;
    }

    /** One block at a random place becomes CHANGED: splits the run it is in (a first write). */
    private static void split(RangeMap m, long blocks, int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        for (int i = 0; i < n; i++) {
            long b = r.nextLong(blocks);
            m.set(b, b + 1, RangeType.CHANGED);
        }
    }

    private static long usedAfterGc(MemoryMXBean mem) {
        for (int i = 0; i < 3; i++) System.gc();
        return mem.getHeapMemoryUsage().getUsed();
    }
}
