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
}
