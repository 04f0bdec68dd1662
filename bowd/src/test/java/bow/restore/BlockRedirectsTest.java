package bow.restore;

import org.junit.jupiter.api.Test;

import java.util.HashMap;
import java.util.Map;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.assertEquals;

/** BlockRedirects against a HashMap: runs, scattered blocks, overwrites, growth. */
class BlockRedirectsTest {
    private static final int SEEDS = Integer.getInteger("bow.test.seeds", 300);

    @Test
    void matchesAMapForRunsAndScatteredBlocks() {
        for (int seed = 0; seed < Math.max(20, SEEDS / 10); seed++) {
            Random rnd = new Random(seed);
            BlockRedirects r = new BlockRedirects();
            Map<Long, Long> m = new HashMap<>();
            long span = 1L << (10 + rnd.nextInt(30));
            for (int op = 0; op < 3000; op++) {
                long start = (long) (rnd.nextDouble() * span);
                int n = rnd.nextBoolean() ? 1 : 1 + rnd.nextInt(300);
                long phys = (long) (rnd.nextDouble() * span);
                for (int j = 0; j < n; j++) {
                    r.put(start + j, phys + j);
                    m.put(start + j, phys + j);
                }
                long probe = rnd.nextBoolean() ? start + rnd.nextInt(n + 16) : (long) (rnd.nextDouble() * span);
                assertEquals(m.getOrDefault(probe, probe), r.resolve(probe), "seed " + seed + " block " + probe);
            }
            assertEquals(m.size(), r.size(), "seed " + seed);
            for (Map.Entry<Long, Long> e : m.entrySet()) assertEquals(e.getValue(), r.resolve(e.getKey()), "seed " + seed);
        }
    }

    @Test
    void denseRunsFillEverySlotOfTheirGroups() {
        // Runs aligned to the group and dense: every slot of a group taken, overflow probes on past it.
        BlockRedirects r = new BlockRedirects();
        int n = 200_000;
        for (long b = 0; b < n; b++) r.put(b * 3 / 2, b + 7);
        for (long b = 0; b < n; b++) assertEquals(b + 7, r.resolve(b * 3 / 2));
        assertEquals(n, r.size());
        assertEquals(2L * n, r.resolve(2L * n));   // never put: itself
    }

    @Test
    void aSizeHintReservesRoomButNeverMoreThanItsBound() {
        BlockRedirects hinted = new BlockRedirects(100_000);
        int slots = hinted.slots();
        for (long b = 0; b < 100_000; b++) hinted.put(b, b + 1);
        assertEquals(slots, hinted.slots(), "grew although the hint covered every block");
        assertEquals(BlockRedirects.MAX_HINT_SLOTS, new BlockRedirects(Long.MAX_VALUE / 2).slots());
        assertEquals(64, new BlockRedirects(0).slots());
        BlockRedirects small = new BlockRedirects(10);
        for (long b = 0; b < 5_000; b++) small.put(b * 7, b);
        for (long b = 0; b < 5_000; b++) assertEquals(b, small.resolve(b * 7));
    }
}
