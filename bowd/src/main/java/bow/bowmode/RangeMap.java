package bow.bowmode;

import java.util.Arrays;

/**
 * The type of every block of the device as a step function: a sorted list of
 * boundaries, each the start of a run of one type that lasts until the next
 * boundary. Neighbouring runs never share a type (they are merged on every
 * change), so the number of boundaries is the number of ranges.
 *
 * <p>Boundaries live in chunks, each one {@code long[]} (its size, its run counts
 * per type, then its boundaries as block {@code << 3 |} type: 8 bytes a boundary,
 * about 17 bytes a range with chunks half to fully used, and one object to reach). The index of the chunks is flat: a
 * sorted {@code long[]} of each chunk's first boundary next to the chunks, searched
 * by bisection. A million fragmented free ranges make some 16 000 chunks, whose
 * keys (128 KB) stay in the CPU caches where a TreeMap's nodes did not;
 * splitting or dropping a chunk shifts the arrays, once per many changes. Chunks
 * split when full and merge with a neighbour when the two fit in half a chunk. A
 * bit per chunk says whether it holds a FREE run, so the lowest and highest free
 * run are found without walking chunks.
 *
 * <p>Not thread-safe: the engine guards it with its map lock.
 */
public final class RangeMap {
    /** Boundaries per chunk; see bench/RESULTS.md ("range map") for how it was chosen. */
    static final int DEFAULT_CAPACITY = 256;

    private static final int FREE = RangeType.FREE.ordinal();
    private static final int TYPES = RangeType.VALUES.length;
    /** A chunk: [0] its number of boundaries, [1 + t] runs of type t that start in it, then the boundaries. */
    private static final int HEAD = 1 + TYPES;
    private static final int TYPE_BITS = 3;
    private static final long TYPE_MASK = (1L << TYPE_BITS) - 1;

    private static long entry(long start, int type) { return start << TYPE_BITS | type; }

    private static long startOf(long entry) { return entry >>> TYPE_BITS; }

    private static int typeOf(long entry) { return (int) (entry & TYPE_MASK); }

    private static int sizeOf(long[] chunk) { return (int) chunk[0]; }

    private final long blocks;
    private final int capacity;
    /** keys[i] == the first boundary of chunks[i], strictly increasing, keys[0] == 0: chunk i holds the boundaries in [keys[i], keys[i + 1]). */
    private long[] keys = new long[16];
    private long[][] chunks = new long[16][];
    private int nChunks;
    /** Bit i set: chunk i holds the start of a FREE run. */
    private long[] withFree = new long[1];
    /** The chunk the last lookup found: the engine's allocation asks about one place several times. */
    private int finger;
    private final long[] blocksOfType = new long[TYPES];
    private int ranges;

    /** Counts changes, so that a walk can tell its visitor changed the map. */
    private long modCount;

    public RangeMap(long blocks, RangeType initial) {
        this(blocks, initial, DEFAULT_CAPACITY);
    }

    /** With {@code capacity} boundaries per chunk (tests use small ones to get many chunks). */
    RangeMap(long blocks, RangeType initial, int capacity) {
        if (blocks <= 0) throw new IllegalArgumentException("empty device");
        if (blocks >= 1L << (63 - TYPE_BITS)) throw new IllegalArgumentException(blocks + " blocks: too many for the map");
        if (capacity < 4) throw new IllegalArgumentException("chunk capacity " + capacity + " < 4");
        if (TYPES > 1 << TYPE_BITS) throw new AssertionError("range types do not fit in " + TYPE_BITS + " bits");
        this.blocks = blocks;
        this.capacity = capacity;
        long[] c = new long[HEAD + capacity];
        c[HEAD] = entry(0, initial.ordinal());
        c[0] = 1;
        c[1 + initial.ordinal()] = 1;
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
        int ci = chunkOf(block);
        return RangeType.VALUES[typeOf(chunks[ci][HEAD + indexOf(ci, block)])];
    }

    /** End (exclusive) of the run that contains {@code block}. */
    public long runEnd(long block) {
        checkBlock(block);
        int ci = chunkOf(block);
        return nextBoundary(ci, indexOf(ci, block));
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
        long[] c = chunks[ci];
        for (int i = HEAD, end = HEAD + sizeOf(c); i < end; i++) {
            if (typeOf(c[i]) == FREE) return startOf(c[i]);
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
        long[] c = chunks[ci];
        for (int i = HEAD + sizeOf(c) - 1; i >= HEAD; i--) {
            if (typeOf(c[i]) == FREE) return startOf(c[i]);
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
            int i = indexOf(ci, pos);
            long end = Math.min(nextBoundary(ci, i), to);
            blocksOfType[typeOf(chunks[ci][HEAD + i])] -= end - pos;
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
        long[] c = chunks[ci];
        int n = sizeOf(c);
        if (to >= nextKey(ci) || n + 2 > capacity) return false;
        int i = indexOf(ci, from);         // the run holding from
        int j = i;                         // the run holding to (to < the next chunk's key)
        while (j + 1 < n && startOf(c[HEAD + j + 1]) <= to) j++;
        int t = type.ordinal();
        long atI = c[HEAD + i];
        int atTo = typeOf(c[HEAD + j]);
        int before;                        // the type of block from - 1, -1 for none
        if (startOf(atI) < from) before = typeOf(atI);
        else if (i > 0) before = typeOf(c[HEAD + i - 1]);
        else if (ci > 0) {
            long[] p = chunks[ci - 1];
            before = typeOf(p[HEAD + sizeOf(p) - 1]);
        } else before = -1;
        int a = startOf(atI) < from ? i + 1 : i;          // first boundary >= from
        int b = j + 1;                                    // first boundary > to
        int m = (before != t ? 1 : 0) + (atTo != t ? 1 : 0);
        int newN = n + m - (b - a);
        if (newN == 0) return false;       // the chunk would go: the general path drops it

        for (int k = i; k <= j; k++) {
            long s = Math.max(startOf(c[HEAD + k]), from);
            long e = k < j ? startOf(c[HEAD + k + 1]) : to;
            if (e > s) blocksOfType[typeOf(c[HEAD + k])] -= e - s;
        }
        blocksOfType[t] += to - from;
        for (int k = a; k < b; k++) c[1 + typeOf(c[HEAD + k])]--;
        System.arraycopy(c, HEAD + b, c, HEAD + a + m, n - b);
        int w = HEAD + a;
        if (before != t) {
            c[w++] = entry(from, t);
            c[1 + t]++;
        }
        if (atTo != t) {
            c[w] = entry(to, atTo);
            c[1 + atTo]++;
        }
        c[0] = newN;
        ranges += newN - n;
        if (a == 0) keys[ci] = startOf(c[HEAD]);
        updateFree(ci);
        if (newN < n) mergeAround(ci);
        return true;
    }

    /** The runs of one type as block ranges {start, end, start, end, ...}, in order; no boxing. */
    public long[] runsOf(RangeType type) {
        int t = type.ordinal();
        long total = 0;
        for (int ci = 0; ci < nChunks; ci++) total += chunks[ci][1 + t];
        long[] out = new long[(int) (2 * total)];     // exact: the per-chunk counts say how many
        int n = 0;
        for (int ci = 0; ci < nChunks; ci++) {
            long[] c = chunks[ci];
            if (n > 0 && out[n - 1] == -1) out[n - 1] = keys[ci];   // a run that ended at this chunk's start
            if (c[1 + t] == 0) continue;
            for (int i = HEAD, end = HEAD + sizeOf(c); i < end; i++) {
                if (typeOf(c[i]) == t) {
                    out[n++] = startOf(c[i]);
                    out[n++] = i + 1 < end ? startOf(c[i + 1]) : -1;   // -1: ends where the next chunk starts
                }
            }
        }
        if (n > 0 && out[n - 1] == -1) out[n - 1] = blocks;
        return out;
    }


    /** Calls {@code visitor} for each run, in order. */
    public void forEach(RunVisitor visitor) {
        for (int ci = 0; ci < nChunks; ci++) {
            long[] c = chunks[ci];
            for (int i = 0; i < sizeOf(c); i++) {
                visitor.run(startOf(c[HEAD + i]), nextBoundary(ci, i), RangeType.VALUES[typeOf(c[HEAD + i])]);
            }
        }
    }

    /** Calls {@code visitor} for each run that overlaps [from, to), clipped to it. */
    public void forEachIn(long from, long to, RunVisitor visitor) {
        if (from >= to) return;
        // One lookup, then walk the chunks in order: O(log n + runs visited). A
        // visitor may change the map; then the walk looks its place up again.
        int ci = chunkOf(from);
        int i = indexOf(ci, from);
        long pos = from;
        while (pos < to) {
            long end = Math.min(nextBoundary(ci, i), to);
            long seen = modCount;
            visitor.run(pos, end, RangeType.VALUES[typeOf(chunks[ci][HEAD + i])]);
            pos = end;
            if (pos >= to) return;
            if (seen != modCount) {
                ci = chunkOf(pos);
                i = indexOf(ci, pos);
            } else if (++i == sizeOf(chunks[ci])) {
                ci++;
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
            long[] c = chunks[ci];
            if (c[1 + t] == 0) continue;
            for (int i = 0; i < sizeOf(c); i++) {
                if (typeOf(c[HEAD + i]) != t) continue;
                long s = startOf(c[HEAD + i]);
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
        long[] counts = new long[TYPES];
        int total = 0;
        int last = -1;
        for (int ci = 0; ci < nChunks; ci++) {
            long[] c = chunks[ci];
            int n = sizeOf(c);
            if (n < 1 || n > capacity) throw new IllegalStateException("chunk " + ci + " holds " + n);
            if (keys[ci] != startOf(c[HEAD])) throw new IllegalStateException("key " + keys[ci] + " of chunk " + ci + " starting at " + startOf(c[HEAD]));
            if (ci > 0 && keys[ci] <= keys[ci - 1]) throw new IllegalStateException("keys out of order at chunk " + ci);
            long[] runs = new long[TYPES];
            for (int i = 0; i < n; i++) {
                long e = c[HEAD + i];
                if (i > 0 && startOf(e) <= startOf(c[HEAD + i - 1])) throw new IllegalStateException("boundaries out of order in chunk " + ci);
                if (typeOf(e) >= TYPES) throw new IllegalStateException("no such type at " + startOf(e));
                if (typeOf(e) == last) throw new IllegalStateException("neighbours of one type at " + startOf(e));
                last = typeOf(e);
                runs[last]++;
                counts[last] += nextBoundary(ci, i) - startOf(e);
            }
            if (!Arrays.equals(runs, Arrays.copyOfRange(c, 1, HEAD))) throw new IllegalStateException("run counts of chunk " + ci);
            boolean bit = (withFree[ci >>> 6] & (1L << ci)) != 0;
            if (bit != (runs[FREE] > 0)) throw new IllegalStateException("free bit of chunk " + ci);
            total += n;
            if (ci > 0 && sizeOf(chunks[ci - 1]) + n <= capacity / 2) throw new IllegalStateException("chunks " + (ci - 1) + " and " + ci + " not merged");
        }
        long[] lastChunk = chunks[nChunks - 1];
        if (startOf(lastChunk[HEAD + sizeOf(lastChunk) - 1]) >= blocks) throw new IllegalStateException("last boundary past the device");
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

    /**
     * Index of the last boundary <= block in chunk ci (keys[ci] <= block < the next key).
     * Interpolates between the chunk's key and the next one, then gallops and bisects:
     * boundaries are spread about evenly more often than not, and a guess touches one or
     * two cache lines of the chunk where bisection of 256 boundaries touches six (the
     * largest part of a split's time, see bench/RESULTS.md). Uneven chunks cost at most
     * twice a bisection.
     */
    private int indexOf(int ci, long block) {
        long[] c = chunks[ci];
        int n = sizeOf(c);
        long key = keys[ci];
        long probe = entry(block, (int) TYPE_MASK);   // above every entry of a boundary <= block
        int g = (int) ((double) (block - key) / (nextKey(ci) - key) * n);
        if (g >= n) g = n - 1;
        int lo, hi, step = 4;
        if (c[HEAD + g] <= probe) {
            lo = g;
            hi = g + step;
            while (hi < n && c[HEAD + hi] <= probe) {
                lo = hi;
                step <<= 1;
                hi = lo + step;
            }
            if (hi > n) hi = n;            // n: past the last boundary, above every block
        } else {
            hi = g;
            lo = g - step;
            while (lo > 0 && c[HEAD + lo] > probe) {
                hi = lo;
                step <<= 1;
                lo = hi - step;
            }
            if (lo < 0) lo = 0;            // the first boundary is key <= block
        }
        while (hi - lo > 1) {              // boundary lo <= block < boundary hi
            int mid = (lo + hi) >>> 1;
            if (c[HEAD + mid] <= probe) lo = mid; else hi = mid;
        }
        return lo;
    }

    /** Index of the first boundary >= block in chunk c (its size when none). */
    private static int lowerBound(long[] c, long block) {
        int i = Arrays.binarySearch(c, HEAD, HEAD + sizeOf(c), entry(block, 0));
        return (i >= 0 ? i : -i - 1) - HEAD;
    }

    private long nextKey(int ci) {
        return ci + 1 < nChunks ? keys[ci + 1] : blocks;
    }

    private long nextBoundary(int ci, int i) {
        long[] c = chunks[ci];
        return i + 1 < sizeOf(c) ? startOf(c[HEAD + i + 1]) : nextKey(ci);
    }

    /** Sets the boundary at pos to type, inserting it if absent. */
    private void put(long pos, RangeType type) {
        int t = type.ordinal();
        int ci = chunkOf(pos);
        long[] c = chunks[ci];
        int n = sizeOf(c);
        int at = lowerBound(c, pos);
        if (at < n && startOf(c[HEAD + at]) == pos) {
            c[1 + typeOf(c[HEAD + at])]--;
            c[1 + t]++;
            c[HEAD + at] = entry(pos, t);
            updateFree(ci);
            return;
        }
        // at >= 1: keys[ci] <= pos and pos is no boundary
        if (n == capacity) {
            int half = splitChunk(ci);
            if (at > half) {
                c = chunks[++ci];
                at -= half;
            }
            n = sizeOf(c);
        }
        System.arraycopy(c, HEAD + at, c, HEAD + at + 1, n - at);
        c[HEAD + at] = entry(pos, t);
        c[0] = n + 1;
        ranges++;
        c[1 + t]++;
        updateFree(ci);
    }

    /** Moves the upper half of chunk ci into a new chunk ci + 1; returns how many stay. */
    private int splitChunk(int ci) {
        long[] c = chunks[ci];
        int n = sizeOf(c), half = n / 2, moved = n - half;
        long[] right = new long[HEAD + capacity];
        System.arraycopy(c, HEAD + half, right, HEAD, moved);
        right[0] = moved;
        c[0] = half;
        for (int i = HEAD; i < HEAD + moved; i++) {
            right[1 + typeOf(right[i])]++;
            c[1 + typeOf(right[i])]--;
        }
        addChunk(ci + 1, right);
        updateFree(ci);
        return half;
    }

    private void remove(long pos) {
        int ci = chunkOf(pos);
        long[] c = chunks[ci];
        int i = lowerBound(c, pos);
        if (i < sizeOf(c) && startOf(c[HEAD + i]) == pos) removeIndexes(ci, i, i + 1);
    }

    /** Removes every boundary in [from, to] (both inclusive; 0 < from). */
    private void removeBoundaries(long from, long to) {
        if (from > to) return;
        while (true) {
            int ci = chunkOf(to);
            long[] c = chunks[ci];
            int hi = indexOf(ci, to);         // last boundary <= to
            if (startOf(c[HEAD + hi]) < from) return;
            int lo = lowerBound(c, from);    // first boundary >= from
            removeIndexes(ci, lo, hi + 1);
            if (lo > 0) return;              // the rest of this chunk is below from
        }
    }

    private void removeIndexes(int ci, int lo, int hi) {
        long[] c = chunks[ci];
        int n = sizeOf(c);
        for (int i = HEAD + lo; i < HEAD + hi; i++) c[1 + typeOf(c[i])]--;
        System.arraycopy(c, HEAD + hi, c, HEAD + lo, n - hi);
        n -= hi - lo;
        c[0] = n;
        ranges -= hi - lo;
        if (n == 0) {                        // never chunk 0: it holds boundary 0, which stays
            removeChunk(ci);
        } else {
            if (lo == 0) keys[ci] = startOf(c[HEAD]);
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
        if (ci >= nChunks || sizeOf(chunks[ci]) >= half) return;   // a pair with it holds more than half
        if (ci > 0 && sizeOf(chunks[ci - 1]) + sizeOf(chunks[ci]) <= half) merge(--ci);
        if (ci + 1 < nChunks && sizeOf(chunks[ci]) + sizeOf(chunks[ci + 1]) <= half) merge(ci);
    }

    /** Appends chunk ci + 1 to chunk ci and drops it from the index. */
    private void merge(int ci) {
        long[] c = chunks[ci], r = chunks[ci + 1];
        System.arraycopy(r, HEAD, c, HEAD + sizeOf(c), sizeOf(r));
        c[0] += r[0];
        for (int t = 1; t < HEAD; t++) c[t] += r[t];
        removeChunk(ci + 1);
        updateFree(ci);
    }

    // ---- the index: keys, chunks and their free bits, kept in step ----

    private void addChunk(int at, long[] c) {
        if (nChunks == keys.length) {
            keys = Arrays.copyOf(keys, 2 * nChunks);
            chunks = Arrays.copyOf(chunks, 2 * nChunks);
        }
        if (wordsFor(nChunks + 1) > withFree.length) withFree = Arrays.copyOf(withFree, 2 * withFree.length);
        System.arraycopy(keys, at, keys, at + 1, nChunks - at);
        System.arraycopy(chunks, at, chunks, at + 1, nChunks - at);
        keys[at] = startOf(c[HEAD]);
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
        if (chunks[ci][1 + FREE] > 0) withFree[ci >>> 6] |= bit; else withFree[ci >>> 6] &= ~bit;
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
