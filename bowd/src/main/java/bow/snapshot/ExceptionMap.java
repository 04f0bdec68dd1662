package bow.snapshot;

import java.util.Arrays;

/**
 * old_chunk → new_chunk, open addressing with linear probing over two long arrays
 * (a million exceptions cost 32 MiB, not a million boxed entries). new_chunk is never 0
 * in a valid exception (chunk 0 is the header), so 0 marks an empty slot.
 * Not thread-safe: the owner synchronises.
 */
final class ExceptionMap {
    private long[] keys;
    private long[] values;
    private int size;
    private int mask;

    ExceptionMap() { this(1024); }

    ExceptionMap(int expected) {
        int cap = Integer.highestOneBit(Math.max(16, expected * 2 - 1)) << 1;
        keys = new long[cap];
        values = new long[cap];
        mask = cap - 1;
    }

    int size() { return size; }

    /** The COW chunk of {@code oldChunk}, or 0 when it has no exception. */
    long get(long oldChunk) {
        int i = slot(oldChunk);
        while (values[i] != 0) {
            if (keys[i] == oldChunk) return values[i];
            i = (i + 1) & mask;
        }
        return 0;
    }

    void put(long oldChunk, long newChunk) {
        if (newChunk == 0) throw new IllegalArgumentException("new_chunk 0 is the header");
        if ((size + 1) * 4L > keys.length * 3L) grow();
        int i = slot(oldChunk);
        while (values[i] != 0) {
            if (keys[i] == oldChunk) { values[i] = newChunk; return; }
            i = (i + 1) & mask;
        }
        keys[i] = oldChunk;
        values[i] = newChunk;
        size++;
    }

    /** Removes {@code oldChunk}; backward-shift deletion keeps probe chains intact. */
    void remove(long oldChunk) {
        int i = slot(oldChunk);
        while (values[i] != 0) {
            if (keys[i] == oldChunk) break;
            i = (i + 1) & mask;
        }
        if (values[i] == 0) return;
        size--;
        int hole = i;
        int j = (i + 1) & mask;
        while (values[j] != 0) {
            int home = slot(keys[j]);
            // move j into the hole when its home is not cyclically within (hole, j]
            boolean between = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
            if (!between) {
                keys[hole] = keys[j];
                values[hole] = values[j];
                hole = j;
            }
            j = (j + 1) & mask;
        }
        keys[hole] = 0;
        values[hole] = 0;
    }

    void clear() {
        Arrays.fill(keys, 0);
        Arrays.fill(values, 0);
        size = 0;
    }

    /** Makes room for {@code n} entries in all at once (one rehash at most, not one per doubling). */
    void ensureCapacity(int n) {
        int cap = keys.length;
        while ((long) n * 4 > (long) cap * 3) cap <<= 1;
        if (cap != keys.length) resize(cap);
    }

    private void grow() {
        resize(keys.length * 2);
    }

    private void resize(int cap) {
        long[] ok = keys, ov = values;
        keys = new long[cap];
        values = new long[cap];
        mask = keys.length - 1;
        size = 0;
        for (int i = 0; i < ok.length; i++) if (ov[i] != 0) put(ok[i], ov[i]);
    }

    private int slot(long key) {
        long h = key * 0x9E3779B97F4A7C15L;
        h ^= h >>> 32;
        return (int) h & mask;
    }
}
