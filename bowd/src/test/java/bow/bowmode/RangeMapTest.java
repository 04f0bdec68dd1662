package bow.bowmode;

import org.junit.jupiter.api.Test;

import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

class RangeMapTest {
    private static final int SEEDS = Integer.getInteger("bow.test.seeds", 40);

    @Test
    void matchesANaiveModelUnderRandomChanges() {
        for (int s = 0; s < SEEDS; s++) {
            long seed = 1000 + s;
            Random r = new Random(seed);
            int n = 1 + r.nextInt(3000);
            RangeType[] model = new RangeType[n];
            java.util.Arrays.fill(model, RangeType.UNCHANGED);
            RangeMap map = new RangeMap(n, RangeType.UNCHANGED);
            for (int op = 0; op < 2000; op++) {
                int from = r.nextInt(n);
                int to = from + 1 + r.nextInt(Math.min(n - from, r.nextBoolean() ? 3 : 200));
                RangeType t = RangeType.VALUES[r.nextInt(RangeType.VALUES.length)];
                map.set(from, to, t);
                java.util.Arrays.fill(model, from, to, t);
                if (op % 97 == 0) check(model, map, seed);
            }
            check(model, map, seed);
        }
    }

    private static void check(RangeType[] model, RangeMap map, long seed) {
        int runs = 0;
        long[] counts = new long[RangeType.VALUES.length];
        for (int i = 0; i < model.length; i++) {
            assertEquals(model[i], map.typeAt(i), "seed " + seed + " block " + i);
            counts[model[i].ordinal()]++;
            if (i == 0 || model[i] != model[i - 1]) runs++;
            int end = i;
            while (end < model.length && model[end] == model[i]) end++;
            assertEquals(end, map.runEnd(i), "seed " + seed + " run end of " + i);
        }
        assertEquals(runs, map.rangeCount(), "seed " + seed + " ranges (neighbours merged)");
        for (RangeType t : RangeType.VALUES) assertEquals(counts[t.ordinal()], map.count(t), "seed " + seed + " count " + t);
        int firstFree = -1;
        for (int i = 0; i < model.length; i++) if (model[i] == RangeType.FREE) { firstFree = i; break; }
        assertEquals(firstFree, map.firstFree(), "seed " + seed + " first free");
        int lastFree = -1;
        for (int i = model.length - 1; i >= 0; i--) {
            if (model[i] == RangeType.FREE) {
                lastFree = i;
                while (lastFree > 0 && model[lastFree - 1] == RangeType.FREE) lastFree--;
                break;
            }
        }
        assertEquals(lastFree, map.lastFree(), "seed " + seed + " start of the last free run");
        long[] visited = {0};
        map.forEach((start, end, type) -> {
            assertEquals(visited[0], start);
            for (long b = start; b < end; b++) assertEquals(model[(int) b], type);
            visited[0] = end;
        });
        assertEquals(model.length, visited[0]);
    }

    @Test
    void aMillionFragmentedFreeRangesStayCheapToAllocateFrom() {
        long n = 4_000_000;
        RangeMap map = new RangeMap(n, RangeType.UNCHANGED);
        for (long b = 1; b < n; b += 4) map.set(b, b + 2, RangeType.FREE);
        assertEquals(1_000_000, runsOf(map, RangeType.FREE));
        assertEquals(2_000_001, map.rangeCount());
        // Allocate every free run, lowest first, as the engine does.
        long allocated = 0;
        for (long f = map.firstFree(); f >= 0; f = map.firstFree()) {
            long end = map.runEnd(f);
            map.set(f, end, RangeType.BACKUP);
            allocated += end - f;
        }
        assertEquals(2_000_000, allocated);
        assertEquals(0, map.count(RangeType.FREE));
        // Every run is now UNCHANGED/BACKUP alternating; turning all to CHANGED merges to one range.
        map.set(0, n, RangeType.CHANGED);
        assertEquals(1, map.rangeCount());
    }

    private static long runsOf(RangeMap map, RangeType t) {
        long[] c = {0};
        map.forEach((s, e, type) -> { if (type == t) c[0]++; });
        return c[0];
    }


    @Test
    void runsOfAgreesWithAWalk() {
        java.util.Random r = new java.util.Random(3);
        for (int round = 0; round < 200; round++) {
            long n = 1 + r.nextInt(5000);
            RangeMap m = new RangeMap(n, RangeType.UNCHANGED);
            for (int k = r.nextInt(400); k > 0; k--) {
                long a = r.nextInt((int) n), b = Math.min(n, a + 1 + r.nextInt(50));
                m.set(a, b, RangeType.VALUES[r.nextInt(RangeType.VALUES.length)]);
            }
            for (RangeType t : RangeType.VALUES) {
                java.util.List<Long> walk = new java.util.ArrayList<>();
                m.forEach((s, e, ty) -> { if (ty == t) { walk.add(s); walk.add(e); } });
                long[] got = m.runsOf(t);
                org.junit.jupiter.api.Assertions.assertArrayEquals(walk.stream().mapToLong(Long::longValue).toArray(), got,
                        "round " + round + ", " + t);
            }
            for (RangeType t : RangeType.VALUES) {
                long fa = r.nextInt((int) n), fb = Math.min(n, fa + 1 + r.nextInt((int) n));
                java.util.List<String> want = new java.util.ArrayList<>(), got = new java.util.ArrayList<>();
                m.forEachIn(fa, fb, (s, e, ty) -> { if (ty == t) want.add(s + "-" + e); });
                m.forEachOfTypeIn(fa, fb, t, (s, e, ty) -> got.add(s + "-" + e));
                org.junit.jupiter.api.Assertions.assertEquals(want, got, "round " + round + ", runs of " + t);
            }
            java.util.List<long[]> in = new java.util.ArrayList<>();
            long a = r.nextInt((int) n), b = Math.min(n, a + 1 + r.nextInt((int) n));
            m.forEachIn(a, b, (s, e, ty) -> in.add(new long[] {s, e, ty.ordinal()}));
            long pos = a;
            for (long[] x : in) {
                org.junit.jupiter.api.Assertions.assertEquals(pos, x[0]);
                org.junit.jupiter.api.Assertions.assertEquals(m.typeAt(x[0]).ordinal(), x[2]);
                pos = x[1];
            }
            org.junit.jupiter.api.Assertions.assertEquals(b, pos);
        }
    }

    /**
     * The chunk index under changes that split, merge and drop chunks: small chunks (4 to 16
     * boundaries, so a few thousand blocks make hundreds of chunks and several words of free
     * bits), changes at both ends of the device, single-block splits, wide ranges that drop
     * whole chunks, and allocations as the engine makes them (top of the highest free run,
     * bottom of the lowest). Queries after every change against an array model.
     */
    @Test
    void manySmallChunksMatchANaiveModel() {
        int[] capacities = {4, 5, 8, 16};
        int maxChunks = 0;
        for (int s = 0; s < SEEDS; s++) {
            long seed = 5000 + s;
            Random r = new Random(seed);
            int capacity = capacities[s % capacities.length];
            int n = 50 + r.nextInt(3000);
            RangeType initial = r.nextBoolean() ? RangeType.UNCHANGED : RangeType.FREE;
            RangeType[] model = new RangeType[n];
            java.util.Arrays.fill(model, initial);
            RangeMap map = new RangeMap(n, initial, capacity);
            if (r.nextBoolean()) {
                // Fragment first, in order or from the top down: many chunks, split at their ends.
                int stride = 2 + r.nextInt(3);
                boolean down = r.nextBoolean();
                for (int k = 0; k < n / stride; k++) {
                    int b = down ? n - 1 - k * stride : k * stride;
                    RangeType t = RangeType.VALUES[r.nextInt(RangeType.VALUES.length)];
                    map.set(b, b + 1, t);
                    model[b] = t;
                }
            }
            for (int op = 0; op < 600; op++) {
                int from, to;
                RangeType t = RangeType.VALUES[r.nextInt(RangeType.VALUES.length)];
                switch (r.nextInt(8)) {
                    case 0, 1 -> { from = r.nextInt(n); to = from + 1; }                          // split a run
                    case 2 -> { from = r.nextInt(Math.min(n, 12)); to = from + 1 + r.nextInt(Math.min(n - from, 4)); }
                    case 3 -> { to = n - r.nextInt(Math.min(n, 12)); from = to - 1 - r.nextInt(Math.min(to, 4)); }
                    case 4 -> {                                                                  // drops chunks
                        from = r.nextInt(n);
                        to = from + 1 + r.nextInt(Math.min(n - from, r.nextInt(4) == 0 ? n / 3 + 1 : 60));
                    }
                    case 5 -> {                                                                  // the engine's allocation
                        long f = r.nextBoolean() ? map.lastFree() : map.firstFree();
                        if (f < 0) { from = r.nextInt(n); to = from + 1; break; }
                        long end = map.runEnd(f);
                        long want = 1 + r.nextInt(4);
                        if (f == map.lastFree()) { from = (int) Math.max(f, end - want); to = (int) end; }
                        else { from = (int) f; to = (int) Math.min(end, f + want); }
                        t = RangeType.BACKUP;
                    }
                    default -> { from = r.nextInt(n); to = from + 1 + r.nextInt(Math.min(n - from, 20)); }
                }
                map.set(from, to, t);
                java.util.Arrays.fill(model, from, to, t);
                checkFree(model, map, seed + " op " + op);
                if (op % 50 == 0 || op == 599) {
                    try {
                        map.checkInvariants();
                    } catch (IllegalStateException e) {
                        fail("seed " + seed + " op " + op + " (capacity " + capacity + "): " + e.getMessage());
                    }
                    check(model, map, seed);
                    checkWalks(model, map, r, seed);
                }
                maxChunks = Math.max(maxChunks, map.chunkCount());
            }
            // Everything of one type: one range, one chunk.
            map.set(0, n, RangeType.CHANGED);
            assertEquals(1, map.rangeCount(), "seed " + seed);
            assertEquals(1, map.chunkCount(), "seed " + seed + ": chunks left after the map became one range");
            assertEquals(-1, map.firstFree());
            assertEquals(-1, map.lastFree());
        }
        assertTrue(SEEDS < 4 || maxChunks > 200, "the test made only " + maxChunks + " chunks: the free bits never spanned words");
    }

    private static void checkFree(RangeType[] model, RangeMap map, String where) {
        int first = -1, last = -1;
        long free = 0;
        for (int i = 0; i < model.length; i++) {
            if (model[i] != RangeType.FREE) continue;
            free++;
            if (first < 0) first = i;
            if (i == 0 || model[i - 1] != RangeType.FREE) last = i;
        }
        assertEquals(first, map.firstFree(), where + ": first free");
        assertEquals(last, map.lastFree(), where + ": start of the last free run");
        assertEquals(free, map.count(RangeType.FREE), where + ": free blocks");
    }

    /** runsOf, forEachOfTypeIn and forEachIn against the model. */
    private static void checkWalks(RangeType[] model, RangeMap map, Random r, long seed) {
        int n = model.length;
        for (RangeType t : RangeType.VALUES) {
            java.util.List<Long> want = new java.util.ArrayList<>();
            for (int i = 0; i < n; i++) {
                if (model[i] == t && (i == 0 || model[i - 1] != t)) want.add((long) i);
                if (model[i] == t && (i == n - 1 || model[i + 1] != t)) want.add(i + 1L);
            }
            assertArrayEquals(want.stream().mapToLong(Long::longValue).toArray(), map.runsOf(t), "seed " + seed + " runs of " + t);
            int a = r.nextInt(n), b = a + 1 + r.nextInt(n - a);
            java.util.List<String> clipped = new java.util.ArrayList<>(), got = new java.util.ArrayList<>();
            for (int i = a; i < b; i++) {
                if (model[i] != t || (i > a && model[i - 1] == t)) continue;
                int e = i;
                while (e < b && model[e] == t) e++;
                clipped.add(i + "-" + e);
            }
            map.forEachOfTypeIn(a, b, t, (s, e, ty) -> got.add(s + "-" + e));
            assertEquals(clipped, got, "seed " + seed + " runs of " + t + " in [" + a + ", " + b + ")");
        }
        int a = r.nextInt(n), b = a + 1 + r.nextInt(n - a);
        long[] pos = {a};
        map.forEachIn(a, b, (s, e, ty) -> {
            assertEquals(pos[0], s, "seed " + seed + " walk");
            assertTrue(e > s && e <= b);
            for (long x = s; x < e; x++) assertEquals(model[(int) x], ty, "seed " + seed + " walk at " + x);
            if (e < b) assertNotEquals(model[(int) e], ty, "seed " + seed + " walk: runs not merged at " + e);
            pos[0] = e;
        });
        assertEquals(b, pos[0]);
    }

    /** The free bits shift with the chunks: insertBit/removeBit against java.util.BitSet, across word edges. */
    @Test
    void freeBitsShiftLikeABitSet() {
        Random r = new Random(11);
        for (int round = 0; round < 200; round++) {
            java.util.BitSet model = new java.util.BitSet();
            long[] w = new long[8];
            int bits = 0;
            for (int op = 0; op < 600; op++) {
                if (bits < 500 && (bits == 0 || r.nextInt(5) < 3)) {
                    int at = r.nextInt(bits + 1);
                    RangeMap.insertBit(w, at, bits);
                    for (int b = bits; b > at; b--) model.set(b, model.get(b - 1));
                    model.clear(at);
                    bits++;
                    if (r.nextBoolean()) { w[at >>> 6] |= 1L << at; model.set(at); }
                } else {
                    int at = r.nextInt(bits);
                    RangeMap.removeBit(w, at, bits);
                    for (int b = at; b < bits - 1; b++) model.set(b, model.get(b + 1));
                    model.clear(bits - 1);
                    bits--;
                }
                assertArrayEquals(java.util.Arrays.copyOf(model.toLongArray(), w.length), w, "round " + round + " op " + op);
            }
        }
    }
}
