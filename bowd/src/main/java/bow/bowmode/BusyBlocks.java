package bow.bowmode;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.Iterator;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.CompletableFuture;

/**
 * The one record of which physical blocks a request is using in state 1, and the
 * only thing that decides whether another request must wait.
 *
 * <p>The contract (see also {@link BowEngine}):
 * <ul>
 *   <li><b>What a claim protects</b>: every physical block a request reads for a
 *       backup or a move, or writes (its own data blocks, backup copies, a moved
 *       block 0, a copy of a full log block). While a block is claimed, no other
 *       request plans anything that touches it, and a discard leaves it as it is.</li>
 *   <li><b>Who sets it</b>: the request's plan, under the engine's map lock, in the
 *       same critical section that checked for conflicts and changed the range
 *       map, all at once. A request that finds a conflict claims nothing and waits
 *       for the conflicting claim to end, then plans again from the start, so no
 *       one ever waits while holding a claim (no deadlock).</li>
 *   <li><b>Who clears it, and when</b>: the same request, once its last I/O on
 *       those blocks has returned (the data write included), or once it failed;
 *       a failed backup sets the engine's fence before the claim ends, so a
 *       request that waited sees the failure when it plans again.</li>
 *   <li>Claimed blocks are never FREE: a write's own free blocks turn CHANGED and
 *       allocations take FREE blocks, in the plan that claims them. So handing out
 *       free space never needs to look here.</li>
 * </ul>
 * Not thread-safe by itself: every method is called with the engine's map lock
 * held, except {@link Claim#await()}. Lookups are O(log n) in the number of
 * claims (a tree of disjoint ranges), never per block.
 */
final class BusyBlocks {
    /** One request's claim on some block ranges. */
    static final class Claim {
        private final CompletableFuture<Void> done = new CompletableFuture<>();
        private long[] ranges = new long[0];   // {from, to, from, to, ...}, sorted, disjoint

        /** Waits until the claim has ended (the claimant's I/O is over). */
        void await() { done.join(); }

        boolean ended() { return done.isDone(); }
    }

    /** start -> {end} of each claimed range, with its owner. */
    private final TreeMap<Long, Entry> byStart = new TreeMap<>();

    private record Entry(long end, Claim owner) {}

    /** The claim that holds any block of [from, to), or null. */
    Claim conflict(long from, long to) {
        if (from >= to) return null;
        Map.Entry<Long, Entry> e = byStart.lowerEntry(to);
        return e != null && e.getValue().end() > from ? e.getValue().owner() : null;
    }

    /**
     * Claims the given ranges ({from, to} pairs, in any order, may overlap each
     * other) for one request. The caller has checked them with {@link #conflict}.
     */
    Claim claim(List<long[]> wanted) {
        long[][] sorted = wanted.stream().filter(r -> r[0] < r[1]).toArray(long[][]::new);
        Arrays.sort(sorted, (a, b) -> Long.compare(a[0], b[0]));
        List<long[]> merged = new ArrayList<>();
        for (long[] r : sorted) {
            long[] lastRun = merged.isEmpty() ? null : merged.get(merged.size() - 1);
            if (lastRun != null && r[0] <= lastRun[1]) lastRun[1] = Math.max(lastRun[1], r[1]);
            else merged.add(new long[] {r[0], r[1]});
        }
        Claim c = new Claim();
        c.ranges = new long[merged.size() * 2];
        for (int i = 0; i < merged.size(); i++) {
            long[] r = merged.get(i);
            if (conflict(r[0], r[1]) != null) {
                // Undo what this claim took so far; a caller bug, never a wait.
                for (int j = 0; j < i; j++) byStart.remove(merged.get(j)[0]);
                throw new IllegalStateException("blocks [" + r[0] + ", " + r[1] + ") are already claimed");
            }
            byStart.put(r[0], new Entry(r[1], c));
            c.ranges[2 * i] = r[0];
            c.ranges[2 * i + 1] = r[1];
        }
        return c;
    }

    /** Claims one range. */
    Claim claim(long from, long to) { return claim(List.of(new long[] {from, to})); }

    /** Ends a claim's hold on its blocks; the caller completes it with {@link #wake}, outside the lock. */
    void remove(Claim c) {
        for (int i = 0; i < c.ranges.length; i += 2) {
            Entry e = byStart.get(c.ranges[i]);
            if (e != null && e.owner() == c) byStart.remove(c.ranges[i]);
        }
    }

    /** Wakes the requests waiting for {@code c}. */
    static void wake(Claim c) { c.done.complete(null); }

    /** Calls {@code gap} for each maximal part of [from, to) that no claim holds. */
    void forEachUnclaimed(long from, long to, RangeMap.RunVisitor gap) {
        long pos = from;
        Map.Entry<Long, Entry> before = byStart.lowerEntry(from);
        if (before != null && before.getValue().end() > pos) pos = before.getValue().end();
        Iterator<Map.Entry<Long, Entry>> it = byStart.subMap(from, true, to, false).entrySet().iterator();
        while (pos < to) {
            if (!it.hasNext()) {
                gap.run(pos, to, null);
                return;
            }
            Map.Entry<Long, Entry> e = it.next();
            if (e.getKey() > pos) gap.run(pos, e.getKey(), null);
            pos = Math.max(pos, e.getValue().end());
        }
    }

    /** Number of claimed ranges (for tests and status). */
    int size() { return byStart.size(); }
}
