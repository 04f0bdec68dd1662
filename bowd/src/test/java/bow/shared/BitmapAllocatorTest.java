package bow.shared;

import bow.shared.BitmapAllocator.Commit;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.*;

class BitmapAllocatorTest {
    static final int SEEDS = Integer.getInteger("bow.test.seeds", 300);

    @Test
    void bitsAreExt2OrderAndReservedChunksAreMarked() {
        SharedFormat.Layout l = SharedFormat.layout(40, 8, 0);      // header 0,1; bitmap copies 2 and 3
        assertEquals(4, l.firstDataChunk());
        BitmapAllocator a = BitmapAllocator.format(l);
        assertEquals(36, a.freeCount());
        assertArrayEquals(new int[] {0}, a.dirtyChunks(0));
        assertArrayEquals(new int[] {0}, a.dirtyChunks(1));
        byte[] e = new byte[4096];
        e[0] = 0x0f;
        assertArrayEquals(e, a.encodeChunk(0));
        assertEquals(4, a.allocate());
        assertEquals(5, a.allocate());
        e[0] = 0x3f;
        assertArrayEquals(e, a.encodeChunk(0));
        for (int i = 6; i < 40; i++) assertEquals(i, a.allocate());
        assertEquals(-1, a.allocate(), "full");
        e[0] = e[1] = e[2] = e[3] = e[4] = (byte) 0xff;                   // 40 bits, nothing past the end
        assertArrayEquals(e, a.encodeChunk(0));
        assertThrows(IllegalArgumentException.class, () -> a.free(3), "reserved");
        assertThrows(IllegalArgumentException.class, () -> a.free(40), "past the end");
    }

    @Test
    void loadReadsHandLaidBitsAndRefusesCorruptOnes() {
        SharedFormat.Layout l = SharedFormat.layout(40, 8, 1);      // journal chunk 4, data from 5
        byte[] b = new byte[4096];
        b[0] = 0x1f;
        b[1] = (byte) 0x81;                                           // chunks 8 and 15
        BitmapAllocator a = BitmapAllocator.load(l, new byte[][] {b}, new long[] {3});
        assertEquals(40 - 7, a.freeCount());
        assertTrue(a.isAllocated(8) && a.isAllocated(15) && a.isAllocated(4));
        assertFalse(a.isAllocated(9));
        assertEquals(0, a.dirtyChunks(0).length);
        assertEquals(5, a.allocate());
        assertEquals(6, a.allocate());
        assertEquals(7, a.allocate());
        assertEquals(9, a.allocate(), "skips chunk 8, in use");
        byte[] noJournal = b.clone();
        noJournal[0] = 0x0f;
        SharedFormatException ex = assertThrows(SharedFormatException.class, () -> BitmapAllocator.load(l, new byte[][] {noJournal}, new long[] {3}));
        assertEquals(3, ex.chunk());
        assertTrue(ex.getMessage().contains("reserved chunk 4"), ex.getMessage());
        byte[] past = b.clone();
        past[5] = 1;                                                  // chunk 40
        ex = assertThrows(SharedFormatException.class, () -> BitmapAllocator.load(l, new byte[][] {past}, new long[] {3}));
        assertTrue(ex.getMessage().contains("chunk 40 past the end"), ex.getMessage());
    }

    @Test
    void freesWaitForTheCommitUnlessTheChunkIsFromThisTransaction() {
        BitmapAllocator a = BitmapAllocator.format(SharedFormat.layout(100, 8, 0));
        long x = a.allocate(), y = a.allocate();
        Commit c1 = a.prepareCommit(0);
        a.committed(c1);
        long z = a.allocate();
        long f0 = a.freeCount();
        a.free(z);                                 // fresh: free at once
        assertEquals(f0 + 1, a.freeCount());
        assertFalse(a.isAllocated(z));
        a.free(x);                                 // committed: deferred
        assertTrue(a.isAllocated(x));
        assertEquals(f0 + 1, a.freeCount());
        assertThrows(IllegalStateException.class, () -> a.free(x), "double free while pending");
        Commit c2 = a.prepareCommit(1);
        assertArrayEquals(new long[] {x}, c2.frees());
        assertArrayEquals(new int[] {0}, c2.indices());
        assertEquals(0, c2.images()[0][(int) (x / 8)] >> (x % 8) & 1, "the image shows x free: the committed tree no longer uses it");
        assertEquals(1, c2.images()[0][(int) (y / 8)] >> (y % 8) & 1);
        assertTrue(a.isAllocated(x), "in memory x stays in use until c2 is durable");
        long w = a.allocate();                     // next transaction, while c2 is in flight
        assertNotEquals(x, w, "a chunk freed by an undurable commit is not reused");
        a.free(w);
        assertFalse(a.isAllocated(w), "w is from the new transaction: free at once");
        a.free(y);                                 // allocated before c1: deferred to the next commit
        assertTrue(a.isAllocated(y));
        long before = a.freeCount();
        a.committed(c2);
        assertFalse(a.isAllocated(x));
        assertTrue(a.isAllocated(y), "y waits for the commit of the transaction that freed it");
        assertEquals(before + 1, a.freeCount());
        Commit c3 = a.prepareCommit(0);
        a.committed(c3);
        assertFalse(a.isAllocated(y));
    }

    /**
     * Random allocate / free / prepare / committed against a model (TreeSet of chunks in use plus
     * sets of fresh, pending and in-flight frees), with the two on-disk copies simulated: after each
     * committed(), decoding the copy it wrote gives exactly the in-use set at prepare time.
     */
    @Test
    void randomOperationsMatchTheModelAndBothCopiesStayExact() {
        for (int seed = 0; seed < SEEDS; seed++) {
            Random r = new Random(seed);
            int nr = 10 + r.nextInt(seed % 16 == 0 ? 70_000 : 300);   // some span 3 bitmap chunks
            int journal = r.nextInt(3);
            SharedFormat.Layout l = SharedFormat.layout(nr, 8, journal);
            if (l.firstDataChunk() >= nr) continue;
            BitmapAllocator a = BitmapAllocator.format(l);
            long first = l.firstDataChunk();
            TreeSet<Long> used = new TreeSet<>(), freeSet = new TreeSet<>();
            for (long c = l.firstDataChunk(); c < nr; c++) freeSet.add(c);
            for (long c = 0; c < first; c++) used.add(c);
            HashSet<Long> fresh = new HashSet<>(), pending = new HashSet<>(), inFlight = new HashSet<>();
            List<Long> live = new ArrayList<>();      // data chunks in use and not freed
            byte[][][] disk = new byte[2][l.bitmapChunks()][4096];
            long cursor = first;
            Commit open = null;
            TreeSet<Long> usedAtPrepare = null;
            int copy = 0;
            int ops = 200 + r.nextInt(400);
            for (int op = 0; op < ops; op++) {
                int k = r.nextInt(100);
                if (k < 45) {
                    long got = a.allocate();
                    Long want = freeSet.ceiling(cursor) != null ? freeSet.ceiling(cursor) : freeSet.ceiling(first);
                    if (want == null) {
                        assertEquals(-1, got, "seed " + seed + " op " + op);
                    } else {
                        assertEquals((long) want, got, "seed " + seed + " op " + op + ": next free from the cursor");
                        used.add(got);
                        freeSet.remove(got);
                        fresh.add(got);
                        live.add(got);
                        cursor = got + 1 >= nr ? first : got + 1;
                    }
                } else if (k < 80 && !live.isEmpty()) {
                    long c = live.remove(r.nextInt(live.size()));
                    a.free(c);
                    if (fresh.remove(c)) { used.remove(c); freeSet.add(c); } else pending.add(c);
                } else if (k < 88 && !live.isEmpty() || k < 80) {
                    long c = r.nextBoolean() && !pending.isEmpty() ? pending.iterator().next()
                            : r.nextInt((int) first);
                    assertThrows(RuntimeException.class, () -> a.free(c), "seed " + seed + ": free of " + c);
                } else if (open == null) {
                    open = a.prepareCommit(copy);
                    inFlight.addAll(pending);
                    pending.clear();
                    usedAtPrepare = new TreeSet<>(used);
                    usedAtPrepare.removeAll(inFlight);        // freed chunks are free on disk: nothing durable uses them
                    fresh.clear();
                } else {
                    for (int i = 0; i < open.indices().length; i++) disk[open.copy()][open.indices()[i]] = open.images()[i];
                    a.committed(open);
                    BitmapAllocator back = BitmapAllocator.load(l, disk[open.copy()], new long[l.bitmapChunks()]);
                    long[] got = back.snapshotWords();
                    long[] want = new long[got.length];
                    for (long c : usedAtPrepare) want[(int) (c >>> 6)] |= 1L << (c & 63);
                    assertArrayEquals(want, got, "seed " + seed + " op " + op + ": copy " + open.copy() + " on disk is the state at prepare, frees included");
                    used.removeAll(inFlight);
                    freeSet.addAll(inFlight);
                    inFlight.clear();
                    copy ^= 1;
                    open = null;
                }
                assertEquals(nr - used.size(), a.freeCount(), "seed " + seed + " op " + op);
                assertEquals(pending.size(), a.pendingFrees());
                assertEquals(inFlight.size(), a.inFlightFrees());
                for (int q = 0; q < 5; q++) {
                    long c = r.nextInt(nr);
                    assertEquals(used.contains(c), a.isAllocated(c), "seed " + seed + " chunk " + c);
                }
            }
        }
    }

}
