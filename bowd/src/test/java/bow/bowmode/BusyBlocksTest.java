package bow.bowmode;

import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.List;
import java.util.Random;

import static org.junit.jupiter.api.Assertions.*;

/** The busy table against a plain array of owners, with random claims and releases. */
class BusyBlocksTest {
    @Test
    void conflictsAndGapsMatchABlockArray() {
        Random r = new Random(7);
        int n = 300;
        BusyBlocks busy = new BusyBlocks();
        BusyBlocks.Claim[] owner = new BusyBlocks.Claim[n];
        List<BusyBlocks.Claim> live = new ArrayList<>();
        for (int step = 0; step < 20000; step++) {
            if (live.isEmpty() || r.nextInt(3) > 0) {
                List<long[]> want = new ArrayList<>();
                for (int k = 1 + r.nextInt(3); k > 0; k--) {
                    long a = r.nextInt(n), b = Math.min(n, a + 1 + r.nextInt(12));
                    want.add(new long[] {a, b});
                }
                boolean free = true;
                for (long[] w : want) {
                    boolean expectFree = true;
                    for (long x = w[0]; x < w[1]; x++) if (owner[(int) x] != null) expectFree = false;
                    assertEquals(expectFree, busy.conflict(w[0], w[1]) == null, "conflict at step " + step);
                    if (!expectFree) free = false;
                }
                if (!free) continue;
                BusyBlocks.Claim c = busy.claim(want);
                for (long[] w : want) for (long x = w[0]; x < w[1]; x++) owner[(int) x] = c;
                live.add(c);
            } else {
                BusyBlocks.Claim c = live.remove(r.nextInt(live.size()));
                busy.remove(c);
                BusyBlocks.wake(c);
                assertTrue(c.ended());
                for (int x = 0; x < n; x++) if (owner[x] == c) owner[x] = null;
            }
            long a = r.nextInt(n), b = Math.min(n, a + 1 + r.nextInt(60));
            boolean[] gap = new boolean[n];
            busy.forEachUnclaimed(a, b, (s, e, t) -> { for (long x = s; x < e; x++) gap[(int) x] = true; });
            for (int x = 0; x < n; x++) {
                boolean expect = x >= a && x < b && owner[x] == null;
                assertEquals(expect, gap[x], "gap at block " + x + ", step " + step);
            }
        }
    }

    @Test
    void aClaimOverAnotherIsABugNotAWait() {
        BusyBlocks busy = new BusyBlocks();
        busy.claim(10, 20);
        assertThrows(IllegalStateException.class, () -> busy.claim(List.of(new long[] {0, 5}, new long[] {15, 25})));
        assertNull(busy.conflict(0, 5), "a refused claim takes nothing");
        assertEquals(1, busy.size());
    }
}
