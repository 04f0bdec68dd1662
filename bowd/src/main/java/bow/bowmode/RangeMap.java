package bow.bowmode;

import java.util.Arrays;

/**
 * The type of every block of the device as a step function: a sorted list of
 * boundaries, each the start of a run of one type that lasts until the next
 * boundary. Neighbouring runs never share a type (they are merged on every
 * change), so the number of boundaries is the number of ranges.
 *
 * <p>Boundaries live in chunks of primitive arrays (about 9 bytes a range).
 * The index of the chunks is flat: a sorted {@code long[]} of each chunk's first
 * boundary next to the {@code Chunk[]}, searched by bisection. A million
 * fragmented ranges make some 10^4 chunks, whose keys (a few hundred KB) stay in
 * the CPU caches where a TreeMap's nodes did not; splitting or dropping a chunk
 * shifts the arrays, once per many changes. Chunks split when full and merge with
 * a neighbour when nearly empty. A bit per chunk says whether it holds a FREE run,
 * so the lowest and highest free run are found without walking chunks.
 *
 * <p>Not thread-safe: the engine guards it with its map lock.
 */
public final class RangeMap {
    /** Boundaries per chunk; see bench/RESULTS.md ("range map") for how it was chosen. */
    static final int DEFAULT_CAPACITY = 256;

    private static final int FREE = RangeType.FREE.ordinal();

    private static final class Chunk {
        final long[] starts;
        final byte[] types;
        int n;
        /** Runs of each type that start in this chunk: a walk for one type skips chunks without it. */
        final int[] runsOf = new int[RangeType.VALUES.length];

        Chunk(int capacity) {
            starts = new long[capacity];
            types = new byte[capacity];
        }
    }

    private final long blocks;
    private final int capacity;
    /** keys[i] == chunks[i].starts[0], strictly increasing, keys[0] == 0: chunk i holds the boundaries in [keys[i], keys[i + 1]). */
    private long[] keys = new long[16];
    private Chunk[] chunks = new Chunk[16];
    private int nChunks;
    /** Bit i set: chunk i holds the start of a FREE run. */
    private long[] withFree = new long[1];
    /** The chunk the last lookup found: the engine's allocation asks about one place several times. */
    private int finger;
    private final long[] blocksOfType = new long[RangeType.VALUES.length];
    private int ranges;

    /** Counts changes, so that a walk can tell its visitor changed the map. */
    private long modCount;

    public RangeMap(long blocks, RangeType initial) {
        this(blocks, initial, DEFAULT_CAPACITY);
    }

    /** With {@code capacity} boundaries per chunk (tests use small ones to get many chunks). */
    RangeMap(long blocks, RangeType initial, int capacity) {
        if (blocks <= 0) throw new IllegalArgumentException("empty device");
        if (capacity < 4) throw new IllegalArgumentException("chunk capacity " + capacity + " < 4");
        this.blocks = blocks;
        this.capacity = capacity;
        Chunk c = new Chunk(capacity);
        c.starts[0] = 0;
        c.types[0] = (byte) initial.ordinal();
        c.n = 1;
        c.runsOf[initial.ordinal()] = 1;
        ranges = 1;
        addChunk(0, c);
        blocksOfType[initial.ordinal()] = blocks;
    }

    public long blocks() { return blocks; }

    /** Number of ranges (runs). */
    public int rangeCount() { return ranges; }

    /** Number of chunks (for tests of the index). */
    int chunkCount() { return nChunks; }

    /** Blocks currently of this type. */
    public long count(RangeType t) { return blocksOfType[t.ordinal()]; }

    public RangeType typeAt(long block) {
        checkBlock(block);
        Chunk c = chunks[chunkOf(block)];
        return RangeType.VALUES[c.types[indexOf(c, block)]];
    }

    /** End (exclusive) of the run that contains {@code block}. */
    public long runEnd(long block) {
        checkBlock(block);
        int ci = chunkOf(block);
        return nextBoundary(ci, indexOf(chunks[ci], block));
    }

    /** Start of the lowest FREE run, or -1 when there is none. */
    public long firstFree() {
        int ci = -1;
        for (int w = 0, words = wordsFor(nChunks); w < words; w++) {
            if (withFree[w] != 0) {
                ci = (w << 6) + Long.numberOfTrailingZeros(withFree[w]);
                break;
            }
        }
        if (ci < 0) return -1;
        Chunk c = chunks[ci];
        for (int i = 0; i < c.n; i++) {
            if (c.types[i] == FREE) return c.starts[i];
        }
        throw new IllegalStateException("free index out of step with chunk " + ci + " at " + keys[ci]);
    }

    /** Start of the highest FREE run, or -1 when there is none. */
    public long lastFree() {
        int ci = -1;
        for (int w = wordsFor(nChunks) - 1; w >= 0; w--) {
            if (withFree[w] != 0) {
                ci = (w << 6) + 63 - Long.numberOfLeadingZeros(withFree[w]);
                break;
            }
        }
        if (ci < 0) return -1;
        Chunk c = chunks[ci];
        for (int i = c.n - 1; i >= 0; i--) {
            if (c.types[i] == FREE) return c.starts[i];
        }
        throw new IllegalStateException("free index out of step with chunk " + ci + " at " + keys[ci]);
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
            int ci = chunkOf(pos);
            Chunk c = chunks[ci];
            int i = indexOf(c, pos);
            long end = Math.min(nextBoundary(ci, i), to);
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
     * The common case of {@link #set} in one index lookup: the range and the block at
     * {@code to} lie in one chunk that has room for two more boundaries, and the chunk
     * keeps at least one. Rewrites the chunk's boundaries in [from, to] in place (the
     * type before {@code from} may come from the previous chunk's last run); false
     * (nothing changed) when the case does not apply.
     */
    private boolean setWithinChunk(long from, long to, RangeType type) {
        int ci = chunkOf(from);
        Chunk c = chunks[ci];
        int n = c.n;
        if (to >= nextKey(ci) || n + 2 > capacity) return false;
        long[] st = c.starts;
        byte[] ty = c.types;
        int i = indexOf(c, from);          // the run holding from
        int j = indexOf(c, to);            // the run holding to (to < the next chunk's key)
        byte t = (byte) type.ordinal();
        byte atTo = ty[j];
        int before;                        // the type of block from - 1, -1 for none
        if (st[i] < from) before = ty[i];
        else if (i > 0) before = ty[i - 1];
        else if (ci > 0) {
            Chunk p = chunks[ci - 1];
            before = p.types[p.n - 1];
        } else before = -1;
        int a = st[i] < from ? i + 1 : i;                 // first boundary >= from
        int b = j + 1;                                    // first boundary > to
        int m = (before != t ? 1 : 0) + (atTo != t ? 1 : 0);
        int newN = n + m - (b - a);
        if (newN == 0) return false;       // the chunk would go: the general path drops it

        for (int k = i; k <= j; k++) {
            long s = Math.max(st[k], from);
            long e = k < j ? st[k + 1] : to;
            if (e > s) blocksOfType[ty[k]] -= e - s;
        }
        blocksOfType[t] += to - from;
        for (int k = a; k < b; k++) c.runsOf[ty[k]]--;
        System.arraycopy(st, b, st, a + m, n - b);
        System.arraycopy(ty, b, ty, a + m, n - b);
        int w = a;
        if (before != t) {
            st[w] = from;
            ty[w++] = t;
            c.runsOf[t]++;
        }
        if (atTo != t) {
            st[w] = to;
            ty[w] = atTo;
            c.runsOf[atTo]++;
        }
        c.n = newN;
        ranges += newN - n;
        if (a == 0) keys[ci] = st[0];
        updateFree(ci);
        if (newN < n) mergeAround(ci);
        return true;
    }

    /** The runs of one type as block ranges {start, end, start, end, ...}, in order; no boxing. */
    public long[] runsOf(RangeType type) {
        int t = type.ordinal();
        long total = 0;
        for (int ci = 0; ci < nChunks; ci++) total += chunks[ci].runsOf[t];
        long[] out = new long[(int) (2 * total)];     // exact: the per-chunk counts say how many
        int n = 0;
        for (int ci = 0; ci < nChunks; ci++) {
            Chunk c = chunks[ci];
            if (n > 0 && out[n - 1] == -1) out[n - 1] = keys[ci];   // a run that ended at this chunk's start
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
        for (int ci = 0; ci < nChunks; ci++) {
            Chunk c = chunks[ci];
            for (int i = 0; i < c.n; i++) {
                visitor.run(c.starts[i], nextBoundary(ci, i), RangeType.VALUES[c.types[i]]);
            }
        }
    }

    /** Calls {@code visitor} for each run that overlaps [from, to), clipped to it. */
    public void forEachIn(long from, long to, RunVisitor visitor) {
        if (from >= to) return;
        // One lookup, then walk the chunks in order: O(log n + runs visited). A
        // visitor may change the map; then the walk looks its place up again.
        int ci = chunkOf(from);
        Chunk c = chunks[ci];
        int i = indexOf(c, from);
        long pos = from;
        while (pos < to) {
            long end = Math.min(nextBoundary(ci, i), to);
            long seen = modCount;
            visitor.run(pos, end, RangeType.VALUES[c.types[i]]);
            pos = end;
            if (pos >= to) return;
            if (seen != modCount) {
                ci = chunkOf(pos);
                c = chunks[ci];
                i = indexOf(c, pos);
            } else if (++i == c.n) {
                c = chunks[++ci];
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
        for (int ci = chunkOf(from); ci < nChunks && keys[ci] < to; ci++) {
            Chunk c = chunks[ci];
            if (c.runsOf[t] == 0) continue;
            for (int i = 0; i < c.n; i++) {
                if (c.types[i] != t) continue;
                long s = c.starts[i];
                if (s >= to) return;
                long e = nextBoundary(ci, i);
                if (e <= from) continue;
                visitor.run(Math.max(s, from), Math.min(e, to), type);
            }
        }
    }

    @FunctionalInterface
    public interface RunVisitor {
        void run(long start, long end, RangeType type);
    }

    /** Checks the index against the chunks it indexes; throws IllegalStateException on the first fault (tests). */
    void checkInvariants() {
        if (nChunks < 1 || keys[0] != 0) throw new IllegalStateException("no chunk at block 0");
        long[] counts = new long[RangeType.VALUES.length];
        int total = 0;
        int last = -1;
        for (int ci = 0; ci < nChunks; ci++) {
            Chunk c = chunks[ci];
            if (c.n < 1 || c.n > capacity) throw new IllegalStateException("chunk " + ci + " holds " + c.n);
            if (keys[ci] != c.starts[0]) throw new IllegalStateException("key " + keys[ci] + " of chunk " + ci + " starting at " + c.starts[0]);
            if (ci > 0 && keys[ci] <= keys[ci - 1]) throw new IllegalStateException("keys out of order at chunk " + ci);
            int[] runs = new int[RangeType.VALUES.length];
            for (int i = 0; i < c.n; i++) {
                if (i > 0 && c.starts[i] <= c.starts[i - 1]) throw new IllegalStateException("boundaries out of order in chunk " + ci);
                if (c.types[i] == last) throw new IllegalStateException("neighbours of one type at " + c.starts[i]);
                last = c.types[i];
                runs[c.types[i]]++;
                counts[c.types[i]] += nextBoundary(ci, i) - c.starts[i];
            }
            if (!Arrays.equals(runs, c.runsOf)) throw new IllegalStateException("run counts of chunk " + ci);
            boolean bit = (withFree[ci >>> 6] & (1L << ci)) != 0;
            if (bit != (runs[FREE] > 0)) throw new IllegalStateException("free bit of chunk " + ci);
            total += c.n;
            if (ci > 0 && chunks[ci - 1].n + c.n <= capacity / 2) throw new IllegalStateException("chunks " + (ci - 1) + " and " + ci + " not merged");
        }
        if (nextKey(nChunks - 1) != blocks || chunks[nChunks - 1].starts[chunks[nChunks - 1].n - 1] >= blocks) {
            throw new IllegalStateException("last boundary past the device");
        }
        for (int b = nChunks; b < withFree.length * 64; b++) {
            if ((withFree[b >>> 6] & (1L << b)) != 0) throw new IllegalStateException("free bit past the chunks: " + b);
        }
        for (int ci = nChunks; ci < chunks.length; ci++) {
            if (chunks[ci] != null) throw new IllegalStateException("stale chunk reference " + ci);
        }
        if (total != ranges) throw new IllegalStateException(ranges + " ranges counted, " + total + " held");
        if (!Arrays.equals(counts, blocksOfType)) throw new IllegalStateException("blocks per type");
    }

    // ---- internals ----

    private void checkBlock(long block) {
        if (block < 0 || block >= blocks) throw new IllegalArgumentException("block " + block + " outside 0.." + blocks);
    }

    /** Index of the chunk that holds the last boundary <= block (0 <= block). */
    private int chunkOf(long block) {
        long[] k = keys;
        int f = finger;
        if (f < nChunks && k[f] <= block && (f + 1 == nChunks || k[f + 1] > block)) return f;
        int lo = 0, hi = nChunks - 1;      // k[0] == 0 <= block
        while (lo < hi) {
            int mid = (lo + hi + 1) >>> 1;
            if (k[mid] <= block) lo = mid; else hi = mid - 1;
        }
        finger = lo;
        return lo;
    }

    /** Index of the last boundary <= block in c. */
    private static int indexOf(Chunk c, long block) {
        int i = Arrays.binarySearch(c.starts, 0, c.n, block);
        return i >= 0 ? i : -i - 2;
    }

    private long nextKey(int ci) {
        return ci + 1 < nChunks ? keys[ci + 1] : blocks;
    }

    private long nextBoundary(int ci, int i) {
        Chunk c = chunks[ci];
        return i + 1 < c.n ? c.starts[i + 1] : nextKey(ci);
    }

    /** Sets the boundary at pos to type, inserting it if absent. */
    private void put(long pos, RangeType type) {
        int ci = chunkOf(pos);
        Chunk c = chunks[ci];
        int i = Arrays.binarySearch(c.starts, 0, c.n, pos);
        if (i >= 0) {
            c.runsOf[c.types[i]]--;
            c.runsOf[type.ordinal()]++;
            c.types[i] = (byte) type.ordinal();
            updateFree(ci);
            return;
        }
        int at = -i - 1;                   // >= 1: keys[ci] <= pos and pos is no boundary
        if (c.n == capacity) {
            int half = splitChunk(ci);
            if (at > half) {
                c = chunks[++ci];
                at -= half;
            }
        }
        System.arraycopy(c.starts, at, c.starts, at + 1, c.n - at);
        System.arraycopy(c.types, at, c.types, at + 1, c.n - at);
        c.starts[at] = pos;
        c.types[at] = (byte) type.ordinal();
        c.n++;
        ranges++;
        c.runsOf[type.ordinal()]++;
        updateFree(ci);
    }

    /** Moves the upper half of chunk ci into a new chunk ci + 1; returns how many stay. */
    private int splitChunk(int ci) {
        Chunk c = chunks[ci];
        int half = c.n / 2;
        Chunk right = new Chunk(capacity);
        int moved = c.n - half;
        System.arraycopy(c.starts, half, right.starts, 0, moved);
        System.arraycopy(c.types, half, right.types, 0, moved);
        right.n = moved;
        c.n = half;
        for (int i = 0; i < moved; i++) {
            right.runsOf[right.types[i]]++;
            c.runsOf[right.types[i]]--;
        }
        addChunk(ci + 1, right);
        updateFree(ci);
        return half;
    }

    private void remove(long pos) {
        int ci = chunkOf(pos);
        int i = Arrays.binarySearch(chunks[ci].starts, 0, chunks[ci].n, pos);
        if (i >= 0) removeIndexes(ci, i, i + 1);
    }

    /** Removes every boundary in [from, to] (both inclusive; 0 < from). */
    private void removeBoundaries(long from, long to) {
        if (from > to) return;
        while (true) {
            int ci = chunkOf(to);
            Chunk c = chunks[ci];
            int hi = indexOf(c, to);          // last boundary <= to
            if (c.starts[hi] < from) return;
            int lo = Arrays.binarySearch(c.starts, 0, c.n, from);
            lo = lo >= 0 ? lo : -lo - 1;     // first boundary >= from
            removeIndexes(ci, lo, hi + 1);
            if (lo > 0) return;              // the rest of this chunk is below from
        }
    }

    private void removeIndexes(int ci, int lo, int hi) {
        Chunk c = chunks[ci];
        for (int i = lo; i < hi; i++) c.runsOf[c.types[i]]--;
        System.arraycopy(c.starts, hi, c.starts, lo, c.n - hi);
        System.arraycopy(c.types, hi, c.types, lo, c.n - hi);
        c.n -= hi - lo;
        ranges -= hi - lo;
        if (c.n == 0) {                      // never chunk 0: it holds boundary 0, which stays
            removeChunk(ci);
        } else {
            if (lo == 0) keys[ci] = c.starts[0];
            updateFree(ci);
        }
        mergeAround(ci);
    }

    /**
     * Keeps every two neighbouring chunks above half a chunk's capacity together (so chunks are
     * a quarter full or more on average: memory per range, the index's length) after chunk ci
     * shrank, or after the chunk at ci was dropped: merges ci with a neighbour when the two fit
     * in half a chunk. At most two merges, and a merged chunk is half a chunk away from a split.
     */
    private void mergeAround(int ci) {
        int half = capacity / 2;
        if (ci >= nChunks || chunks[ci].n >= half) return;   // a pair with it holds more than half
        if (ci > 0 && chunks[ci - 1].n + chunks[ci].n <= half) merge(--ci);
        if (ci + 1 < nChunks && chunks[ci].n + chunks[ci + 1].n <= half) merge(ci);
    }

    /** Appends chunk ci + 1 to chunk ci and drops it from the index. */
    private void merge(int ci) {
        Chunk c = chunks[ci], r = chunks[ci + 1];
        System.arraycopy(r.starts, 0, c.starts, c.n, r.n);
        System.arraycopy(r.types, 0, c.types, c.n, r.n);
        c.n += r.n;
        for (int t = 0; t < c.runsOf.length; t++) c.runsOf[t] += r.runsOf[t];
        removeChunk(ci + 1);
        updateFree(ci);
    }

    // ---- the index: keys, chunks and their free bits, kept in step ----

    private void addChunk(int at, Chunk c) {
        if (nChunks == keys.length) {
            keys = Arrays.copyOf(keys, 2 * nChunks);
            chunks = Arrays.copyOf(chunks, 2 * nChunks);
        }
        if (wordsFor(nChunks + 1) > withFree.length) withFree = Arrays.copyOf(withFree, 2 * withFree.length);
        System.arraycopy(keys, at, keys, at + 1, nChunks - at);
        System.arraycopy(chunks, at, chunks, at + 1, nChunks - at);
        keys[at] = c.starts[0];
        chunks[at] = c;
        insertBit(withFree, at, nChunks);
        nChunks++;
        updateFree(at);
    }

    private void removeChunk(int at) {
        System.arraycopy(keys, at + 1, keys, at, nChunks - at - 1);
        System.arraycopy(chunks, at + 1, chunks, at, nChunks - at - 1);
        chunks[nChunks - 1] = null;
        removeBit(withFree, at, nChunks);
        nChunks--;
    }

    private void updateFree(int ci) {
        long bit = 1L << ci;               // shifts use the low 6 bits
        if (chunks[ci].runsOf[FREE] > 0) withFree[ci >>> 6] |= bit; else withFree[ci >>> 6] &= ~bit;
    }

    private static int wordsFor(int bits) {
        return (bits + 63) >>> 6;
    }

    /** Shifts bits [at, bits) of w one up (w has room for bit {@code bits}); bit at becomes 0. */
    static void insertBit(long[] w, int at, int bits) {
        int wi = at >>> 6;
        for (int k = bits >>> 6; k > wi; k--) w[k] = (w[k] << 1) | (w[k - 1] >>> 63);
        long below = (1L << (at & 63)) - 1;   // bits of word wi under at
        w[wi] = (w[wi] & below) | ((w[wi] & ~below) << 1);
    }

    /** Drops bit at of w's first {@code bits} bits: bits (at, bits) shift one down; bit bits - 1 becomes 0. */
    static void removeBit(long[] w, int at, int bits) {
        int wi = at >>> 6, last = (bits - 1) >>> 6;
        long below = (1L << (at & 63)) - 1;
        long carry = wi < last ? w[wi + 1] << 63 : 0;
        w[wi] = (w[wi] & below) | ((w[wi] >>> 1) & ~below) | carry;
        for (int k = wi + 1; k <= last; k++) w[k] = (w[k] >>> 1) | (k < last ? w[k + 1] << 63 : 0);
    }
}
