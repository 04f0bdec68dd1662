package bow.restore;

import java.util.Arrays;

/**
 * The dry run's view of the device: block → physical block that holds what the
 * block would hold after the restores simulated so far. Absent means "itself".
 * Open addressing on primitive longs, because a large checkpoint backs up millions
 * of blocks and boxed maps would cost ten times the memory.
 *
 * <p>Entries back up runs of blocks, so the slot keeps a block's place within its group of
 * {@link #GROUP}: a run's blocks sit side by side, a cache line for eight of them, not a cache
 * miss each (a 4 GiB checkpoint's verify spent a fifth of its CPU time in those misses).
 */
final class BlockRedirects {
    private static final long EMPTY = -1;
    /** Blocks whose slots are side by side: eight longs, one cache line. */
    static final int GROUP = 8;
    private long[] keys;
    private long[] values;
    private int size;

    /**
     * The most slots a size hint reserves: 2M (32 MiB of arrays), and no more than an eighth of
     * the heap; past it the table grows as it fills, as it would without a hint.
     */
    static final int MAX_HINT_SLOTS = (int) Math.max(64, Math.min(1 << 21,
            Long.highestOneBit(Runtime.getRuntime().maxMemory() / 8 / 16)));

    BlockRedirects() {
        this(0);
    }

    /** Room for about {@code expectedBlocks} without growing (bounded by {@link #MAX_HINT_SLOTS}). */
    BlockRedirects(long expectedBlocks) {
        int slots = 64;
        while (slots < MAX_HINT_SLOTS && slots / 4 * 3 <= expectedBlocks) slots <<= 1;   // load 3/4 at most
        keys = new long[slots];
        values = new long[slots];
        Arrays.fill(keys, EMPTY);
    }

    int slots() { return keys.length; }

    int size() { return size; }

    /** The physical block whose current content block {@code b} would have. */
    long resolve(long b) {
        int i = slot(keys, b);
        return keys[i] == EMPTY ? b : values[i];
    }

    void put(long block, long physical) {
        if ((size + 1) * 4L > keys.length * 3L) grow();
        int i = slot(keys, block);
        if (keys[i] == EMPTY) {
            keys[i] = block;
            size++;
        }
        values[i] = physical;
    }

    private static int slot(long[] keys, long b) {
        int mask = keys.length - 1;
        int i = (int) (((mix(b / GROUP) * GROUP) + (b % GROUP)) & mask);
        while (keys[i] != EMPTY && keys[i] != b) i = (i + 1) & mask;
        return i;
    }

    private static long mix(long x) {
        x ^= x >>> 33;
        x *= 0xff51afd7ed558ccdL;
        x ^= x >>> 33;
        return x;
    }

    private void grow() {
        long[] ok = keys, ov = values;
        keys = new long[ok.length * 2];
        values = new long[ok.length * 2];
        Arrays.fill(keys, EMPTY);
        for (int j = 0; j < ok.length; j++) {
            if (ok[j] != EMPTY) {
                int i = slot(keys, ok[j]);
                keys[i] = ok[j];
                values[i] = ov[j];
            }
        }
    }
}
