package bow.shared;

import java.util.Arrays;
import java.util.BitSet;
import java.util.HashSet;

/**
 * The chunk allocator of the shared store: one bit per COW chunk (1 = in use), ext2 bit order
 * (chunk c is bit c % 8 of byte c / 8), held as a long[] and written as whole bitmap chunks.
 * Pure: no I/O. The engine writes the chunks {@link #dirtyChunks} names and tells it when they
 * are durable.
 *
 * <p>Crash safety (see docs/FORMATS.md): the COW has two bitmap copies; the header with sequence
 * s names copy s &amp; 1. A chunk freed since the last commit is still referenced by the committed
 * tree, so it is not handed out again until the commit of the transaction that freed it is durable ({@link #prepareCommit},
 * {@link #committed}: frees are deferred); a chunk both
 * allocated and freed in the same transaction is referenced by nothing durable and is free at once.
 * Each copy remembers which bitmap chunks changed since it was last written, so a commit writes
 * only those.
 */
public final class BitmapAllocator {
    private final long nrChunks;
    private final long firstData;
    private final long bitsPerChunk;
    private final int chunkBytes;
    private final long[] words;
    /** Free bits per bitmap chunk, to skip full ones without scanning their words. */
    private final int[] freeIn;
    private final BitSet[] dirty = {new BitSet(), new BitSet()};
    private final HashSet<Long> fresh = new HashSet<>();
    private final HashSet<Long> pendingFree = new HashSet<>();
    private final HashSet<Long> inFlightFree = new HashSet<>();
    /** Changes per bitmap chunk, so a commit does not mark clean what changed while it was written. */
    private final long[] gen;
    private long free;
    private long cursor;

    private BitmapAllocator(long nrChunks, long firstData, int chunkBytes) {
        if (firstData < 0 || firstData > nrChunks) throw new IllegalArgumentException("reserved " + firstData + " of " + nrChunks + " chunks");
        if (chunkBytes <= 0 || chunkBytes % 8 != 0) throw new IllegalArgumentException("chunk bytes " + chunkBytes);
        this.nrChunks = nrChunks;
        this.firstData = firstData;
        this.chunkBytes = chunkBytes;
        this.bitsPerChunk = chunkBytes * 8L;
        long nb = (nrChunks + bitsPerChunk - 1) / bitsPerChunk;
        this.words = new long[Math.toIntExact(nb * (chunkBytes / 8))];
        this.freeIn = new int[(int) nb];
        this.gen = new long[(int) nb];
        this.cursor = firstData;
    }

    /** A fresh bitmap: chunks [0, firstData) (header slots, bitmaps, journal) reserved, the rest free; every chunk dirty in both copies. */
    public static BitmapAllocator format(SharedFormat.Layout l) {
        BitmapAllocator a = new BitmapAllocator(l.nrChunks(), l.firstDataChunk(), l.chunkBytes());
        for (long c = 0; c < a.firstData; c++) a.set(c);
        a.free = a.nrChunks - a.firstData;
        for (int i = 0; i < a.freeIn.length; i++) {
            long lo = i * a.bitsPerChunk, hi = Math.min(a.nrChunks, lo + a.bitsPerChunk);
            a.freeIn[i] = (int) (hi - Math.max(lo, Math.min(hi, a.firstData)));
        }
        a.dirty[0].set(0, a.freeIn.length);
        a.dirty[1].set(0, a.freeIn.length);
        return a;
    }

    /**
     * Decodes one bitmap copy ({@code chunks[i]} is bitmap chunk i of it, read from COW chunk
     * {@code cowChunks[i]}). Refuses, naming the chunk, a bitmap whose reserved chunks are not
     * marked in use or that marks chunks past the COW's end. Nothing is dirty after a load.
     */
    public static BitmapAllocator load(SharedFormat.Layout l, byte[][] chunks, long[] cowChunks) {
        BitmapAllocator a = new BitmapAllocator(l.nrChunks(), l.firstDataChunk(), l.chunkBytes());
        if (chunks.length != a.freeIn.length) throw new IllegalArgumentException(chunks.length + " bitmap chunks, expected " + a.freeIn.length);
        int wpc = l.chunkBytes() / 8;
        for (int i = 0; i < chunks.length; i++) {
            if (chunks[i].length != l.chunkBytes()) throw new SharedFormatException(cowChunks[i], "bitmap", "read " + chunks[i].length + " bytes");
            java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(chunks[i]).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            for (int w = 0; w < wpc; w++) a.words[i * wpc + w] = bb.getLong(w * 8);
        }
        for (long c = 0; c < a.firstData; c++) {
            if (!a.isAllocated(c)) throw new SharedFormatException(cowChunks[(int) (c / a.bitsPerChunk)], "bitmap", "reserved chunk " + c + " is marked free");
        }
        for (int w = (int) (a.nrChunks >>> 6); w < a.words.length; w++) {
            long past = a.words[w] & (w == (int) (a.nrChunks >>> 6) ? -1L << (a.nrChunks & 63) : -1L);
            if (past != 0) {
                long c = ((long) w << 6) + Long.numberOfTrailingZeros(past);
                throw new SharedFormatException(cowChunks[(int) (c / a.bitsPerChunk)], "bitmap", "chunk " + c + " past the end of the COW (" + a.nrChunks + " chunks) is marked in use");
            }
        }
        long used = 0;
        for (int i = 0; i < a.freeIn.length; i++) {
            long u = 0;
            for (int w = 0; w < wpc; w++) u += Long.bitCount(a.words[i * wpc + w]);
            long lo = i * a.bitsPerChunk, hi = Math.min(a.nrChunks, lo + a.bitsPerChunk);
            a.freeIn[i] = (int) (hi - lo - u);
            used += u;
        }
        a.free = a.nrChunks - used;
        return a;
    }

    /**
     * Marks every bitmap chunk of {@code copy} as lacking: after a {@link #load} of one copy, the
     * other copy on disk is a commit older (or more) and its next commit must rewrite it whole,
     * since which chunks differ is not known without reading it.
     */
    public void markStale(int copy) { dirty[copy].set(0, freeIn.length); for (int i = 0; i < gen.length; i++) gen[i]++; }

    public long nrChunks() { return nrChunks; }
    public long firstDataChunk() { return firstData; }
    public int bitmapChunks() { return freeIn.length; }

    /** Chunks that can be handed out now (deferred frees are not among them). */
    public long freeCount() { return free; }

    /** Chunks freed since the last commit, free once it is durable. */
    public int pendingFrees() { return pendingFree.size(); }

    public boolean isAllocated(long c) {
        if (c < 0 || c >= (long) words.length * 64) throw new IllegalArgumentException("chunk " + c);
        return (words[(int) (c >>> 6)] >>> (c & 63) & 1) != 0;
    }

    /** True when {@code c} was handed out in the current transaction (so nothing durable or in flight refers to it). */
    public boolean isFresh(long c) { return fresh.contains(c); }

    public boolean isPendingFree(long c) { return pendingFree.contains(c); }

    /** True when {@code c} was freed by a transaction whose commit is prepared but not yet durable. */
    public boolean isInFlightFree(long c) { return inFlightFree.contains(c); }

    private void set(long c) { words[(int) (c >>> 6)] |= 1L << (c & 63); }
    private void clear(long c) { words[(int) (c >>> 6)] &= ~(1L << (c & 63)); }
    private void touch(long c) { int i = (int) (c / bitsPerChunk); dirty[0].set(i); dirty[1].set(i); gen[i]++; }

    /**
     * The next free chunk at or after the cursor (wrapping to the first data chunk), marked in
     * use; -1 when none is free. Skips full bitmap chunks by their free counts.
     */
    public long allocate() {
        if (free == 0) return -1;
        long c = findFrom(cursor);
        if (c < 0) c = findFrom(firstData);
        if (c < 0) throw new IllegalStateException("free count " + free + " but no free bit");
        set(c);
        touch(c);
        freeIn[(int) (c / bitsPerChunk)]--;
        free--;
        fresh.add(c);
        cursor = c + 1 >= nrChunks ? firstData : c + 1;
        return c;
    }

    private long findFrom(long start) {
        long c = start;
        while (c < nrChunks) {
            int bc = (int) (c / bitsPerChunk);
            if (freeIn[bc] == 0) { c = (bc + 1) * bitsPerChunk; continue; }
            long end = Math.min(nrChunks, (bc + 1) * bitsPerChunk);
            while (c < end) {
                int wi = (int) (c >>> 6);
                long inv = ~words[wi] & (-1L << (c & 63));
                if (inv != 0) {
                    long hit = ((long) wi << 6) + Long.numberOfTrailingZeros(inv);
                    return hit < end ? hit : -1;
                }
                c = ((long) wi + 1) << 6;
            }
        }
        return -1;
    }

    /**
     * Gives a chunk back. One handed out in the current transaction is free at once; any other
     * stays in use until this transaction's commit is durable (the committed tree may refer to it). Refuses reserved
     * chunks, chunks not in use and chunks already freed.
     */
    public void free(long c) {
        if (c < firstData || c >= nrChunks) throw new IllegalArgumentException("chunk " + c + " is not a data chunk [" + firstData + ", " + nrChunks + ")");
        if (!isAllocated(c)) throw new IllegalStateException("double free of chunk " + c);
        if (fresh.remove(c)) {
            clear(c);
            touch(c);
            freeIn[(int) (c / bitsPerChunk)]++;
            free++;
            return;
        }
        if (inFlightFree.contains(c) || !pendingFree.add(c)) throw new IllegalStateException("double free of chunk " + c + " (already pending)");
    }

    /** Bitmap chunk indices that copy {@code copy} lacks, ascending: what a commit to that copy must write. */
    public int[] dirtyChunks(int copy) { return dirty[copy].stream().toArray(); }

    /** Bitmap chunk {@code index} as it goes to disk (pending frees still marked in use). */
    public byte[] encodeChunk(int index) {
        byte[] b = new byte[chunkBytes];
        java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        int wpc = chunkBytes / 8;
        for (int w = 0; w < wpc; w++) bb.putLong(w * 8, words[index * wpc + w]);
        return b;
    }

    /**
     * What one commit writes to bitmap copy {@code copy}: bitmap chunk {@code indices[i]} gets
     * {@code images[i]}, to COW chunk {@code layout.bitmapChunk(copy, indices[i])}. The images
     * show the chunks this transaction freed as free (the committed tree no longer uses them).
     */
    public record Commit(int copy, int[] indices, byte[][] images, long[] generations, long[] frees) {}

    /**
     * Ends the current transaction for a commit to bitmap copy {@code copy}: returns the bitmap
     * chunks that copy lacks with their contents now. From here on, changes belong to the next
     * transaction: nothing allocated so far is "fresh" any more (a later free of it is deferred,
     * since the commit in flight may make it durable), and this transaction's deferred frees wait
     * for {@link #committed} of this commit. Commits must become durable in the order prepared.
     */
    public Commit prepareCommit(int copy) {
        long[] frees = pendingFree.stream().mapToLong(Long::longValue).sorted().toArray();
        pendingFree.clear();
        for (long c : frees) inFlightFree.add(c);
        // the image shows every chunk freed by this (or an earlier, still in flight) transaction as
        // free: the tree this commit makes durable no longer refers to them, and a crash after it
        // must not leak them. In memory they stay in use until committed().
        BitSet chunksWithFrees = new BitSet();
        for (long c : inFlightFree) chunksWithFrees.set((int) (c / bitsPerChunk));
        BitSet write = (BitSet) dirty[copy].clone();
        write.or(chunksWithFrees);
        int[] idx = write.stream().toArray();
        byte[][] img = new byte[idx.length][];
        long[] gens = new long[idx.length];
        for (int i = 0; i < idx.length; i++) {
            long[] w = Arrays.copyOfRange(words, idx[i] * (chunkBytes / 8), (idx[i] + 1) * (chunkBytes / 8));
            if (chunksWithFrees.get(idx[i])) {
                long lo = idx[i] * bitsPerChunk;
                for (long c : inFlightFree) if (c >= lo && c < lo + bitsPerChunk) w[(int) ((c - lo) >>> 6)] &= ~(1L << (c & 63));
            }
            img[i] = encodeWords(w);
            gens[i] = gen[idx[i]];
        }
        fresh.clear();
        return new Commit(copy, idx, img, gens, frees);
    }

    private byte[] encodeWords(long[] w) {
        byte[] b = new byte[chunkBytes];
        java.nio.ByteBuffer bb = java.nio.ByteBuffer.wrap(b).order(java.nio.ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < w.length; i++) bb.putLong(i * 8, w[i]);
        return b;
    }

    /**
     * The commit's bitmap chunks and the header naming its copy are durable: the copy is clean
     * where nothing changed since {@link #prepareCommit}, and that transaction's deferred frees
     * take effect (dirtying both copies).
     */
    public void committed(Commit c) {
        for (int i = 0; i < c.indices().length; i++) {
            if (gen[c.indices()[i]] == c.generations()[i]) dirty[c.copy()].clear(c.indices()[i]);
        }
        for (long f : c.frees()) {
            inFlightFree.remove(f);
            clear(f);
            touch(f);
            freeIn[(int) (f / bitsPerChunk)]++;
            free++;
        }
    }

    /** Chunks freed by a transaction whose commit is prepared but not yet durable. */
    public int inFlightFrees() { return inFlightFree.size(); }

    /** The in-use bits of the whole COW (a copy), for checks. */
    public long[] snapshotWords() { return Arrays.copyOf(words, words.length); }
}
