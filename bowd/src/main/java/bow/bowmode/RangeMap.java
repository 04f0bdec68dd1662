package bow.bowmode;

import java.util.Arrays;
import java.util.Map;
import java.util.TreeMap;
import java.util.TreeSet;

/**
 * The type of every block of the device as a step function: a sorted list of
 * boundaries, each the start of a run of one type that lasts until the next
 * boundary. Neighbouring runs never share a type (they are merged on every
 * change), so the number of boundaries is the number of ranges.
 *
 * <p>Boundaries live in chunks of primitive arrays (about 9 bytes a range)
 * indexed by a TreeMap on each chunk's first boundary, so lookup, split and merge
 * are O(log n) and a million fragmented free ranges take a few tens of MB. A set
 * of the chunks that hold a FREE run finds free space without scanning.
 *
 * <p>Not thread-safe: the engine guards it with its map lock.
 */
public final class RangeMap {
    private static final int CAPACITY = 256;

    private static final class Chunk {
        long key;                 // == starts[0]
        final long[] starts = new long[CAPACITY];
        final byte[] types = new byte[CAPACITY];
        int n;
        int freeRuns;
        /** Runs of each type that start in this chunk: a walk for one type skips chunks without it. */
        final int[] runsOf = new int[RangeType.VALUES.length];
    }

    private final long blocks;
    private final TreeMap<Long, Chunk> chunks = new TreeMap<>();
    private final TreeSet<Long> chunksWithFree = new TreeSet<>();
    private final long[] blocksOfType = new long[RangeType.VALUES.length];
    private int ranges;

    /** Counts changes, so that a walk can tell its visitor changed the map. */
    private long modCount;

    public RangeMap(long blocks, RangeType initial) {
        if (blocks <= 0) throw new IllegalArgumentException("empty device");
        this.blocks = blocks;
        Chunk c = new Chunk();
        c.key = 0;
        chunks.put(0L, c);
        insertAt(c, 0, 0, initial);
        blocksOfType[initial.ordinal()] = blocks;
    }

    public long blocks() { return blocks; }

    /** Number of ranges (runs). */
    public int rangeCount() { return ranges; }

    /** Blocks currently of this type. */
    public long count(RangeType t) { return blocksOfType[t.ordinal()]; }

    public RangeType typeAt(long block) {
        checkBlock(block);
        Chunk c = chunks.floorEntry(block).getValue();
        return RangeType.VALUES[c.types[indexOf(c, block)]];
    }

    /** End (exclusive) of the run that contains {@code block}. */
    public long runEnd(long block) {
        checkBlock(block);
        Chunk c = chunks.floorEntry(block).getValue();
        int i = indexOf(c, block);
        return nextBoundary(c, i);
    }

    /** Start of the lowest FREE run, or -1 when there is none. */
    public long firstFree() {
        if (chunksWithFree.isEmpty()) return -1;
        Chunk c = chunks.get(chunksWithFree.first());
        for (int i = 0; i < c.n; i++) {
            if (c.types[i] == RangeType.FREE.ordinal()) return c.starts[i];
        }
        throw new IllegalStateException("free index out of step with chunk " + c.key);
    }

    /** Start of the highest FREE run, or -1 when there is none. */
    public long lastFree() {
        if (chunksWithFree.isEmpty()) return -1;
        Chunk c = chunks.get(chunksWithFree.last());
        for (int i = c.n - 1; i >= 0; i--) {
            if (c.types[i] == RangeType.FREE.ordinal()) return c.starts[i];
        }
        throw new IllegalStateException("free index out of step with chunk " + c.key);
    }

    /** Sets blocks [from, to) to {@code type}, merging with neighbours of the same type. */
    public void set(long from, long to, RangeType type) {
        if (from < 0 || to > blocks || from > to) {
            throw new IllegalArgumentException("range [" + from + ", " + to + ") outside 0.." + blocks);
        }
        if (from == to) return;
        modCount++;
        if (setWithinChunk(from, to, type)) return;
        // Account the blocks that change type.
        long pos = from;
        while (pos < to) {
            Chunk c = chunks.floorEntry(pos).getValue();
            int i = indexOf(c, pos);
            long end = Math.min(nextBoundary(c, i), to);
            blocksOfType[c.types[i]] -= end - pos;
            pos = end;
        }
        blocksOfType[type.ordinal()] += to - from;

        RangeType atTo = to < blocks ? typeAt(to) : null;
        removeBoundaries(from + 1, to);
        put(from, type);
        if (atTo != null) {
            if (atTo == type) remove(to); else put(to, atTo);
        }
        if (from > 0 && typeAt(from - 1) == type) remove(from);
    }

    /**
     * The common case of {@link #set} in one tree lookup: the block before {@code from}, the
     * range and the block at {@code to} all lie in one chunk that has room for two more
     * boundaries. Rewrites the chunk's boundaries in [from, to] in place; false (nothing
     * changed) when the case does not apply.
     */
    private boolean setWithinChunk(long from, long to, RangeType type) {
        Chunk c = chunks.floorEntry(from).getValue();
        int n = c.n;
        if (from <= c.key || c.starts[n - 1] < to || n + 2 > CAPACITY) return false;
        long[] st = c.starts;
        byte[] ty = c.types;
        int i = indexOf(c, from);          // the run holding from
        int j = indexOf(c, to);            // the run holding to (to < blocks: a boundary is at or past it)
        for (int k = i; k <= j; k++) {
            long s = Math.max(st[k], from);
            long e = k < j ? st[k + 1] : to;
            if (e > s) blocksOfType[ty[k]] -= e - s;
        }
        blocksOfType[type.ordinal()] += to - from;
        byte t = (byte) type.ordinal();
        byte atTo = ty[j];
        byte before = st[i] < from ? ty[i] : ty[i - 1];   // i >= 1 when st[i] == from > key
        int a = st[i] < from ? i + 1 : i;                 // first boundary >= from
        int b = j + 1;                                    // first boundary > to
        int m = (before != t ? 1 : 0) + (atTo != t ? 1 : 0);
        byte free = (byte) RangeType.FREE.ordinal();
        int freeDelta = 0;
        for (int k = a; k < b; k++) {
            if (ty[k] == free) freeDelta--;
            c.runsOf[ty[k]]--;
        }
        System.arraycopy(st, b, st, a + m, n - b);
        System.arraycopy(ty, b, ty, a + m, n - b);
        int w = a;
        if (before != t) {
            st[w] = from;
            ty[w++] = t;
            c.runsOf[t]++;
            if (t == free) freeDelta++;
        }
        if (atTo != t) {
            st[w] = to;
            ty[w] = atTo;
            c.runsOf[atTo]++;
            if (atTo == free) freeDelta++;
        }
        c.n = n + m - (b - a);
        ranges += m - (b - a);
        int oldFree = c.freeRuns;
        c.freeRuns += freeDelta;
        if (oldFree == 0 && c.freeRuns > 0) chunksWithFree.add(c.key);
        else if (oldFree > 0 && c.freeRuns == 0) chunksWithFree.remove(c.key);
        return true;
    }

    /** The runs of one type as block ranges {start, end, start, end, ...}, in order; no boxing. */
    public long[] runsOf(RangeType type) {
        int t = type.ordinal();
        long total = 0;
        for (Chunk c : chunks.values()) total += c.runsOf[t];
        long[] out = new long[(int) (2 * total)];     // exact: the per-chunk counts say how many
        int n = 0;
        for (Chunk c : chunks.values()) {
            if (n > 0 && out[n - 1] == -1) out[n - 1] = c.key;   // a run that ended at this chunk's start
            if (c.runsOf[t] == 0) continue;
            for (int i = 0; i < c.n; i++) {
                if (c.types[i] == t) {
                    out[n++] = c.starts[i];
                    out[n++] = i + 1 < c.n ? c.starts[i + 1] : -1;   // -1: ends where the next chunk starts
                }
            }
        }
        if (n > 0 && out[n - 1] == -1) out[n - 1] = blocks;
        return out;
    }


    /** Calls {@code visitor} for each run, in order. */
    public void forEach(RunVisitor visitor) {
        for (Chunk c : chunks.values()) {
            for (int i = 0; i < c.n; i++) {
                visitor.run(c.starts[i], nextBoundary(c, i), RangeType.VALUES[c.types[i]]);
            }
        }
    }

    /** Calls {@code visitor} for each run that overlaps [from, to), clipped to it. */
    public void forEachIn(long from, long to, RunVisitor visitor) {
        if (from >= to) return;
        // One tree lookup, then walk the chunks in order: O(log n + runs visited). A
        // visitor may change the map; then the walk looks its place up again.
        Chunk c = chunks.floorEntry(from).getValue();
        int i = indexOf(c, from);
        long pos = from;
        while (pos < to) {
            long end = Math.min(nextBoundary(c, i), to);
            long seen = modCount;
            visitor.run(pos, end, RangeType.VALUES[c.types[i]]);
            pos = end;
            if (pos >= to) return;
            if (seen != modCount) {
                c = chunks.floorEntry(pos).getValue();
                i = indexOf(c, pos);
            } else if (++i == c.n) {
                c = chunks.higherEntry(c.key).getValue();
                i = 0;
            }
        }
    }

    /**
     * Calls {@code visitor} for each run of {@code type} that overlaps [from, to),
     * clipped to it, skipping whole chunks that hold no such run: a discard of the
     * whole device looks only where changed blocks are. The visitor must not change
     * the map (collect, then change).
     */
    public void forEachOfTypeIn(long from, long to, RangeType type, RunVisitor visitor) {
        if (from >= to) return;
        int t = type.ordinal();
        long startKey = chunks.floorKey(from);
        for (Chunk c : chunks.subMap(startKey, true, to, false).values()) {
            if (c.runsOf[t] == 0) continue;
            for (int i = 0; i < c.n; i++) {
                if (c.types[i] != t) continue;
                long s = c.starts[i];
                if (s >= to) return;
                long e = nextBoundary(c, i);
                if (e <= from) continue;
                visitor.run(Math.max(s, from), Math.min(e, to), type);
            }
        }
    }

    @FunctionalInterface
    public interface RunVisitor {
        void run(long start, long end, RangeType type);
    }

    // ---- internals ----

    private void checkBlock(long block) {
        if (block < 0 || block >= blocks) throw new IllegalArgumentException("block " + block + " outside 0.." + blocks);
    }

    /** Index of the last boundary <= block in c. */
    private static int indexOf(Chunk c, long block) {
        int i = Arrays.binarySearch(c.starts, 0, c.n, block);
        return i >= 0 ? i : -i - 2;
    }

    private long nextBoundary(Chunk c, int i) {
        if (i + 1 < c.n) return c.starts[i + 1];
        Map.Entry<Long, Chunk> next = chunks.higherEntry(c.key);
        return next == null ? blocks : next.getKey();
    }

    /** Sets the boundary at pos to type, inserting it if absent. */
    private void put(long pos, RangeType type) {
        Chunk c = chunks.floorEntry(pos).getValue();
        int i = Arrays.binarySearch(c.starts, 0, c.n, pos);
        if (i >= 0) {
            if (c.types[i] == RangeType.FREE.ordinal()) freeDelta(c, -1);
            c.runsOf[c.types[i]]--;
            c.runsOf[type.ordinal()]++;
            c.types[i] = (byte) type.ordinal();
            if (type == RangeType.FREE) freeDelta(c, +1);
            return;
        }
        int at = -i - 1;
        if (c.n == CAPACITY) {
            Chunk right = split(c);
            if (pos >= right.key) {
                c = right;
                at -= CAPACITY / 2;
            }
        }
        insertAt(c, at, pos, type);
    }

    private void insertAt(Chunk c, int at, long pos, RangeType type) {
        System.arraycopy(c.starts, at, c.starts, at + 1, c.n - at);
        System.arraycopy(c.types, at, c.types, at + 1, c.n - at);
        c.starts[at] = pos;
        c.types[at] = (byte) type.ordinal();
        c.n++;
        ranges++;
        c.runsOf[type.ordinal()]++;
        if (type == RangeType.FREE) freeDelta(c, +1);
    }

    private Chunk split(Chunk c) {
        int half = CAPACITY / 2;
        Chunk right = new Chunk();
        int moved = c.n - half;
        System.arraycopy(c.starts, half, right.starts, 0, moved);
        System.arraycopy(c.types, half, right.types, 0, moved);
        right.n = moved;
        right.key = right.starts[0];
        c.n = half;
        int freeMoved = 0;
        for (int i = 0; i < moved; i++) {
            if (right.types[i] == RangeType.FREE.ordinal()) freeMoved++;
            right.runsOf[right.types[i]]++;
            c.runsOf[right.types[i]]--;
        }
        right.freeRuns = freeMoved;
        c.freeRuns -= freeMoved;
        if (c.freeRuns == 0) chunksWithFree.remove(c.key);
        if (right.freeRuns > 0) chunksWithFree.add(right.key);
        chunks.put(right.key, right);
        return right;
    }

    private void remove(long pos) {
        Chunk c = chunks.floorEntry(pos).getValue();
        int i = Arrays.binarySearch(c.starts, 0, c.n, pos);
        if (i < 0) return;
        removeIndexes(c, i, i + 1);
    }

    /** Removes every boundary in [from, to] (both inclusive). */
    private void removeBoundaries(long from, long to) {
        if (from > to) return;
        while (true) {
            Map.Entry<Long, Chunk> e = chunks.floorEntry(to);
            Chunk c = e.getValue();
            int hi = indexOf(c, to);          // last boundary <= to
            if (hi < 0 || c.starts[hi] < from) return;
            int lo = Arrays.binarySearch(c.starts, 0, c.n, from);
            lo = lo >= 0 ? lo : -lo - 1;     // first boundary >= from
            removeIndexes(c, lo, hi + 1);
            if (lo > 0) return;              // the rest of this chunk is below from
        }
    }

    private void removeIndexes(Chunk c, int lo, int hi) {
        int freeGone = 0;
        for (int i = lo; i < hi; i++) {
            if (c.types[i] == RangeType.FREE.ordinal()) freeGone++;
            c.runsOf[c.types[i]]--;
        }
        System.arraycopy(c.starts, hi, c.starts, lo, c.n - hi);
        System.arraycopy(c.types, hi, c.types, lo, c.n - hi);
        c.n -= hi - lo;
        ranges -= hi - lo;
        long oldKey = c.key;
        if (freeGone > 0) {
            c.freeRuns -= freeGone;
            if (c.freeRuns == 0) chunksWithFree.remove(oldKey);
        }
        if (c.n == 0) {
            chunks.remove(oldKey);
            chunksWithFree.remove(oldKey);
        } else if (c.starts[0] != oldKey) {
            chunks.remove(oldKey);
            c.key = c.starts[0];
            chunks.put(c.key, c);
            if (chunksWithFree.remove(oldKey)) chunksWithFree.add(c.key);
        }
    }

    private void freeDelta(Chunk c, int d) {
        c.freeRuns += d;
        if (c.freeRuns == 0) chunksWithFree.remove(c.key); else chunksWithFree.add(c.key);
    }
}
