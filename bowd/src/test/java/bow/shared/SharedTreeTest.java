package bow.shared;

import bow.shared.SharedTree.SnapWrite;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.TreeMap;
import java.util.TreeSet;

import static org.junit.jupiter.api.Assertions.*;

/**
 * The shared B-tree against a model: one TreeMap per snapshot (origin chunk -> content version)
 * and one for the origin; data chunks hold content versions. Invariants ({@link SharedTree#check})
 * after every few steps and at every delete; the committed tree is re-opened from its root
 * before each commit and must still answer as it did when it was committed (copy-on-write).
 */
class SharedTreeTest {
    static final int SEEDS = Integer.getInteger("bow.test.seeds", 300);
    static final int CB = 4096;

    /** Tree blocks by chunk; refuses a write to any chunk not handed out in the current transaction. */
    static final class MemStore implements ChunkStore {
        final Map<Long, byte[]> blocks = new HashMap<>();
        BitmapAllocator alloc;
        int writes;
        @Override public byte[] read(long chunk) {
            byte[] b = blocks.get(chunk);
            if (b == null) throw new AssertionError("read of chunk " + chunk + ", never written");
            return b;
        }
        @Override public void write(long chunk, byte[] data) {
            if (!alloc.isFresh(chunk)) throw new AssertionError("write to chunk " + chunk + ", which the committed state may use");
            assertEquals(CB, data.length);
            blocks.put(chunk, data.clone());
            writes++;
        }
    }

    static final class World {
        final MemStore store = new MemStore();
        final BitmapAllocator alloc;
        final SharedTree tree;
        final SharedFormat.Layout layout;
        int copy;
        /** When set, every commit records the committed state so that it can be checked later. */
        Model model;
        Random random;
        Committed committed;
        World(long nrChunks, int fanout, int leafBytes) { this(nrChunks, fanout, leafBytes, 64); }
        World(long nrChunks, int fanout, int leafBytes, int maxSnaps) {
            layout = SharedFormat.layout(nrChunks, 8, 0);
            alloc = BitmapAllocator.format(layout);
            store.alloc = alloc;
            tree = SharedTree.format(store, alloc, CB, fanout, leafBytes, maxSnaps);
        }
        /** The two bitmap copies as the commits wrote them. */
        byte[][][] disk;
        void commit() {
            if (committed != null) verifyCommitted(this, committed, "before commit " + copy, random.nextInt(10) == 0);
            BitmapAllocator.Commit c = alloc.prepareCommit(copy);
            if (disk == null) disk = new byte[2][layout.bitmapChunks()][CB];
            for (int i = 0; i < c.indices().length; i++) disk[c.copy()][c.indices()[i]] = c.images()[i];
            alloc.committed(c);
            copy ^= 1;
            if (model != null) committed = record(this, model, random);
        }
    }

    @Test
    void originWriteMakesOneExceptionSharedByEverySnapshotThatSeesTheOldData() {
        for (int n : new int[] {1, 2, 10, 64}) {
            World w = new World(1000, 254, CB);
            w.commit();
            for (int i = 0; i < n; i++) w.tree.createSnapshot(i);
            long free = w.alloc.freeCount();
            long c = w.tree.prepareOriginWrite(7);
            assertTrue(c > 0);
            // one data chunk plus the shadowed root and leaf: exactly one chunk of data, whatever n
            assertEquals(free - 3, w.alloc.freeCount(), n + " snapshots");
            assertEquals(-1, w.tree.prepareOriginWrite(7), "second write: nothing left to copy");
            long all = n == 64 ? -1L : (1L << n) - 1;
            assertEquals(0, w.tree.originSharers(7));
            for (int i = 0; i < n; i++) assertEquals(c, w.tree.lookup(7, i));
            assertEquals(-1, w.tree.lookup(8, 0));
            Leaf leaf = Leaf.decode(w.store.read(leafOf(w)), leafOf(w));
            assertEquals(1, leaf.entries.size());
            assertEquals(List.of(new Leaf.Exc(all, c)), leaf.entries.get(0).excs);
            assertTrue(w.tree.check().clean(), w.tree.check().problems().toString());
        }
    }

    static long leafOf(World w) {
        Node root = Node.decode(w.store.read(w.tree.root()), w.tree.root());
        return root.children[0];
    }

    @Test
    void snapshotWriteUnsharesForThatSnapshotOnly() {
        World w = new World(1000, 254, CB);
        for (int i = 0; i < 3; i++) w.tree.createSnapshot(i);
        long c = w.tree.prepareOriginWrite(5);                 // {0b111 -> c}
        SnapWrite sw = w.tree.prepareSnapshotWrite(5, 1);
        assertEquals(c, sw.copyFrom(), "copy the shared old data first");
        assertNotEquals(c, sw.chunk());
        assertEquals(c, w.tree.lookup(5, 0));
        assertEquals(sw.chunk(), w.tree.lookup(5, 1));
        assertEquals(c, w.tree.lookup(5, 2));
        assertEquals(new SnapWrite(sw.chunk(), SharedTree.IN_PLACE), w.tree.prepareSnapshotWrite(5, 1), "owned alone: in place");
        SnapWrite fresh = w.tree.prepareSnapshotWrite(9, 2);
        assertEquals(SharedTree.FROM_ORIGIN, fresh.copyFrom());
        assertEquals(0b011, w.tree.originSharers(9), "snapshot 2 no longer needs the origin's chunk 9");
        Leaf leaf = Leaf.decode(w.store.read(leafOf(w)), leafOf(w));
        assertEquals("[5=[Exc[share=5, chunk=" + c + "], Exc[share=2, chunk=" + sw.chunk() + "]], 9=[Exc[share=4, chunk=" + fresh.chunk() + "]]]",
                leaf.entries.toString());
        assertTrue(w.tree.check().clean());
        w.tree.deleteSnapshot(2);
        assertTrue(w.tree.deleteStep(100));
        assertEquals(-1, w.tree.lookup(9, 0));
        leaf = Leaf.decode(w.store.read(leafOf(w)), leafOf(w));
        assertEquals("[5=[Exc[share=1, chunk=" + c + "], Exc[share=2, chunk=" + sw.chunk() + "]]]", leaf.entries.toString());
        assertFalse(w.alloc.isAllocated(fresh.chunk()), "snapshot 2's own chunk is free");
        assertThrows(IllegalArgumentException.class, () -> w.tree.lookup(5, 2));
        assertThrows(IllegalArgumentException.class, () -> w.tree.createSnapshot(64));
        assertThrows(IllegalStateException.class, () -> w.tree.createSnapshot(0));
        assertTrue(w.tree.check().clean(), w.tree.check().problems().toString());
    }

    @Test
    void splitsGrowTheTreeAndDeleteShrinksItBack() {
        World w = new World(5000, 3, Leaf.bytesFor(2, 2), 1);   // fan-out 3, leaves of at most 3 one-exception chunks
        w.tree.createSnapshot(0);
        long base = w.alloc.freeCount();
        for (long o = 0; o < 200; o++) {
            long c = w.tree.prepareOriginWrite(o * 3);
            assertTrue(c > 0);
            if (o % 10 == 0) w.commit();
        }
        assertTrue(w.tree.level() >= 4, "200 chunks in leaves of 3 under nodes of 3: level " + w.tree.level());
        SharedTree.CheckResult r = w.tree.check();
        assertTrue(r.clean(), r.problems().toString());
        assertEquals(200, r.exceptions());
        for (long o = 0; o < 200; o++) assertTrue(w.tree.lookup(o * 3, 0) > 0);
        assertEquals(-1, w.tree.lookup(1, 0));
        w.commit();
        w.tree.deleteSnapshot(0);
        while (!w.tree.deleteStep(5)) w.commit();
        w.commit();
        r = w.tree.check();
        assertTrue(r.clean(), r.problems().toString());
        assertEquals(1, w.tree.level());
        assertEquals(1, r.leaves());
        assertEquals(base, w.alloc.freeCount(), "every data and tree chunk back");
    }

    @Test
    void leavesSplitWhereARelativeChunkWouldNotFitIn32Bits() {
        World w = new World(1000, 254, CB);
        w.tree.createSnapshot(0);
        // from base 0, rchunk 0xffffffff (chunk 2^32 - 1) is the last that fits; 2^32 starts a new leaf
        long[] origins = {5, (1L << 32) - 1, 1L << 32, 1L << 45, (1L << 45) + 1};
        for (long o : origins) assertTrue(w.tree.prepareOriginWrite(o) > 0);
        Node root = Node.decode(w.store.read(w.tree.root()), w.tree.root());
        assertEquals(3, root.count, root.toString());
        assertEquals(1L << 32, root.keys[1]);
        Leaf lo = Leaf.decode(w.store.read(root.children[0]), root.children[0]);
        assertEquals(0, lo.base);
        assertEquals(List.of(5L, (1L << 32) - 1), lo.entries.stream().map(e -> e.origin).toList());
        assertEquals(1L << 45, root.keys[2]);
        Leaf hi = Leaf.decode(w.store.read(root.children[2]), root.children[2]);
        assertEquals(1L << 45, hi.base);
        assertEquals(2, hi.entries.size());
        for (long o : origins) assertTrue(w.tree.lookup(o, 0) > 0, "origin chunk " + o);
        assertTrue(w.tree.check().clean(), w.tree.check().problems().toString());
    }

    @Test
    void the65thSnapshotIsRefusedNamingTheLimit() {
        World w = new World(1000, 254, CB);
        for (int i = 0; i < 64; i++) w.tree.createSnapshot(i);
        w.tree.deleteSnapshot(5);
        IllegalStateException e = assertThrows(IllegalStateException.class, () -> w.tree.createSnapshot(5));
        assertTrue(e.getMessage().contains("still being deleted"), e.getMessage());
        assertTrue(w.tree.deleteStep(10));
        w.tree.createSnapshot(5);
        World small = new World(1000, 254, CB, 3);
        for (int i = 0; i < 3; i++) small.tree.createSnapshot(i * 10);
        e = assertThrows(IllegalStateException.class, () -> small.tree.createSnapshot(40));
        assertTrue(e.getMessage().contains("at most 3 snapshots"), e.getMessage());
        assertThrows(IllegalStateException.class, () -> w.tree.createSnapshot(5), "64 live: the slot is taken");
    }

    @Test
    void checkFindsCorruption() {
        World w = new World(1000, 254, CB);
        w.tree.createSnapshot(0);
        long c = w.tree.prepareOriginWrite(5);
        w.alloc.committed(w.alloc.prepareCommit(0));
        assertTrue(w.tree.check().clean());
        // a leaked chunk
        long leak = w.alloc.allocate();
        assertTrue(w.tree.check().problems().toString().contains("chunk " + leak + " is marked in use but nothing refers to it"));
        w.alloc.free(leak);
        // an exception pointing at the root: used twice
        long leafC = leafOf(w);
        Leaf l = Leaf.decode(w.store.read(leafC), leafC);
        l.entries.get(0).excs.set(0, new Leaf.Exc(1, w.tree.root()));
        w.store.blocks.put(leafC, l.encode(CB, leafC));
        assertTrue(w.tree.check().problems().toString().contains("used twice"), w.tree.check().problems().toString());
        // a share mask naming a snapshot that does not exist
        l.entries.get(0).excs.set(0, new Leaf.Exc(0b10, c));
        w.store.blocks.put(leafC, l.encode(CB, leafC));
        assertTrue(w.tree.check().problems().toString().contains("do not exist"));
        // a torn leaf
        byte[] torn = l.encode(CB, leafC);
        torn[100] ^= 1;
        w.store.blocks.put(leafC, torn);
        assertTrue(w.tree.check().problems().toString().contains("leaf.crc"));
    }

    // ------------------------------------------------------------------ the model

    static final class Model {
        final TreeMap<Long, Integer> origin = new TreeMap<>();
        final TreeMap<Long, Integer>[] snaps;
        final Map<Long, Integer> data = new HashMap<>();
        final TreeSet<Long> keys = new TreeSet<>();
        int version;
        @SuppressWarnings("unchecked") Model() { snaps = new TreeMap[64]; }
        int originAt(long o) { return origin.getOrDefault(o, 0); }
    }

    static int read(World w, Model m, long o, int s) {
        long c = w.tree.lookup(o, s);
        if (c < 0) return m.originAt(o);
        Integer v = m.data.get(c);
        if (v == null) throw new AssertionError("snapshot " + s + " at " + o + " maps to chunk " + c + ", which holds no data");
        return v;
    }

    static void verifyKey(World w, Model m, long o, String where) {
        for (int s = 0; s < 64; s++) {
            if (m.snaps[s] == null) continue;
            assertEquals(m.snaps[s].getOrDefault(o, 0), read(w, m, o, s), where + ": snapshot " + s + " at origin chunk " + o);
        }
    }

    /** Like {@link #verifyKey} for snapshot {@code must} and up to 4 other live snapshots picked at random. */
    static void verifySome(World w, Model m, long o, int must, Random r, String where) {
        List<Integer> live = new ArrayList<>();
        for (int s = 0; s < 64; s++) if (m.snaps[s] != null) live.add(s);
        if (must >= 0) assertEquals(m.snaps[must].getOrDefault(o, 0), read(w, m, o, must), where + ": snapshot " + must + " at origin chunk " + o);
        for (int i = 0; i < Math.min(4, live.size()); i++) {
            int s = live.size() <= 4 ? live.get(i) : live.get(r.nextInt(live.size()));
            assertEquals(m.snaps[s].getOrDefault(o, 0), read(w, m, o, s), where + ": snapshot " + s + " at origin chunk " + o);
        }
    }

    /** Every key for every live snapshot ({@code r} null), or every key for a few of them. */
    static void verifyAll(World w, Model m, String where, Random r) {
        for (long o : m.keys) if (r == null) verifyKey(w, m, o, where); else verifySome(w, m, o, -1, r, where);
        SharedTree.CheckResult res = w.tree.check();
        assertTrue(res.clean(), where + ": " + res.problems());
        long live = 0;
        for (int s = 0; s < 64; s++) if (m.snaps[s] != null) live |= 1L << s;
        assertEquals(live, w.tree.snapmask(), where);
    }

    /** A committed state: root etc. plus what each live snapshot's lookup answered for some keys. */
    record Committed(long root, int level, long snapmask, long deleting, long resume, long[] keys, long[][] answers) {}

    static Committed record(World w, Model m, Random r) {
        long[] keys = m.keys.stream().filter(k -> r.nextInt(4) == 0).mapToLong(Long::longValue).limit(12).toArray();
        long[][] ans = new long[64][];
        for (int s = 0; s < 64; s++) {
            if (m.snaps[s] == null || r.nextInt(Long.bitCount(w.tree.snapmask())) >= 4) continue;
            ans[s] = new long[keys.length];
            for (int i = 0; i < keys.length; i++) ans[s][i] = w.tree.lookup(keys[i], s);
        }
        return new Committed(w.tree.root(), w.tree.level(), w.tree.snapmask(), w.tree.deleting(), w.tree.deleteResume(), keys, ans);
    }

    /**
     * A crash now: the allocator loaded from the bitmap copy the last commit wrote and the tree
     * from the last committed root must be consistent (check clean: every chunk in use is
     * reachable, nothing reachable is free) and answer as they did at that commit.
     */
    static void verifyCommitted(World w, Committed c, String where, boolean fullCheck) {
        BitmapAllocator durable = BitmapAllocator.load(w.layout, w.disk[w.copy ^ 1], new long[w.layout.bitmapChunks()]);
        SharedTree old = SharedTree.open(w.store, durable, CB, w.tree.fanout(), w.tree.leafBytes(), w.tree.maxSnapshots(), c.root(), c.level(), c.snapmask(), c.deleting(), c.resume());
        for (int s = 0; s < 64; s++) {
            if (c.answers()[s] == null) continue;
            for (int i = 0; i < c.keys().length; i++) {
                assertEquals(c.answers()[s][i], old.lookup(c.keys()[i], s), where + ": the committed tree changed under snapshot " + s + " at " + c.keys()[i]);
            }
        }
        if (!fullCheck) return;
        SharedTree.CheckResult r = old.check();
        assertTrue(r.clean(), where + ": after a crash, the durable state is not consistent: " + r.problems());
    }

    static long randomKey(Random r, int range) {
        int k = r.nextInt(100);
        if (k < 3) return (1L << 33) + r.nextInt(50);          // beyond a u32 from base 0: forces range splits
        if (k < 5) return (1L << 45) + r.nextInt(5);
        return r.nextInt(range);
    }

    static int deepSeeds, noSpaceSeeds, hugeKeySeeds;

    @Test
    void randomOperationsMatchTheModel() {
        deepSeeds = noSpaceSeeds = hugeKeySeeds = 0;
        for (int seed = 0; seed < SEEDS; seed++) runSeed(seed);
        System.out.println("SharedTreeTest: " + SEEDS + " seeds, " + deepSeeds + " reached 3+ levels, " + noSpaceSeeds + " ran out of space, " + hugeKeySeeds + " used chunks past 2^32");
        if (SEEDS >= 100) {
            assertTrue(deepSeeds >= SEEDS / 20, "too few seeds grow the tree to 3 levels: " + deepSeeds);
            assertTrue(noSpaceSeeds >= SEEDS / 50, "too few seeds fill the COW: " + noSpaceSeeds);
            assertTrue(hugeKeySeeds >= SEEDS / 4, "too few seeds use chunks past 2^32: " + hugeKeySeeds);
        }
    }

    static void runSeed(int seed) {
        Random r = new Random(seed);
        boolean small = seed % 5 == 0;                              // a COW that fills up
        long nr = small ? 40 + r.nextInt(80) : 6_000;
        int fanout = r.nextInt(4) == 0 ? 254 : 3 + r.nextInt(4);
        int maxSnaps = r.nextInt(3) == 0 ? 64 : 1 + r.nextInt(6);
        // small leaves (a few chunks each) when few snapshots exist, to grow deep trees quickly
        int minLeaf = Leaf.bytesFor(2, 2 * maxSnaps);
        int leafBytes = minLeaf + (r.nextBoolean() ? r.nextInt(64) : r.nextInt(CB - minLeaf));
        int range = 50 + r.nextInt(r.nextBoolean() ? 300 : 1500);
        World w = new World(nr, fanout, leafBytes, maxSnaps);
        Model m = new Model();
        w.model = m;
        w.random = new Random(seed * 31L + 7);
        w.commit();
        int ops = 120 + r.nextInt(120);
        int maxLevel = 1;
        boolean noSpace = false;
        for (int op = 0; op < ops; op++) {
            String where = "seed " + seed + " op " + op;
            int k = r.nextInt(100);
            int live = Long.bitCount(w.tree.snapmask());
            if (k < 8 && Long.bitCount(w.tree.snapmask() | w.tree.deleting()) >= maxSnaps) {
                int id = 0;
                while (id < 63 && (w.tree.isLive(id) || (w.tree.deleting() >>> id & 1) != 0)) id++;
                int pick = id;
                IllegalStateException e = assertThrows(IllegalStateException.class, () -> w.tree.createSnapshot(pick), where);
                assertTrue(e.getMessage().contains("at most " + maxSnaps) || e.getMessage().contains("exists") || e.getMessage().contains("being deleted"), e.getMessage());
            } else if (k < 8) {
                int id;
                do id = r.nextInt(64); while (w.tree.isLive(id) || (w.tree.deleting() >>> id & 1) != 0 && w.tree.deleting() != -1L);
                if ((w.tree.deleting() >>> id & 1) != 0) continue;
                w.tree.createSnapshot(id);
                m.snaps[id] = new TreeMap<>(m.origin);
            } else if (k < 12 && live > 0) {
                int id = randomLive(w, r);
                w.tree.deleteSnapshot(id);
                m.snaps[id] = null;
                if (r.nextBoolean()) finishDelete(w, where);
            } else if (k < 17 && w.tree.deleting() != 0) {
                try { w.tree.deleteStep(1 + r.nextInt(4)); } catch (NoSpaceException e) { w.commit(); }
            } else if (k < 65) {
                long o = randomKey(r, range);
                // versions are unique per write, so a snapshot shares the origin's data exactly when it reads the same version
                boolean anyOrigin = false;
                for (int s = 0; s < 64; s++) if (m.snaps[s] != null && m.snaps[s].getOrDefault(o, 0) == m.originAt(o)) anyOrigin = true;
                long free = w.alloc.freeCount(), root = w.tree.root();
                long c;
                try {
                    c = w.tree.prepareOriginWrite(o);
                } catch (NoSpaceException e) {
                    noSpace = true;
                    assertEquals(free, w.alloc.freeCount(), where + ": a refused write changes nothing");
                    assertEquals(root, w.tree.root(), where);
                    continue;
                }
                assertEquals(anyOrigin, c >= 0, where + ": copy iff a snapshot still sees the origin's data");
                if (c >= 0) {
                    assertNull(m.data.put(c, m.originAt(o)), where + ": data chunk " + c + " handed out twice");
                    assertEquals(-1, w.tree.prepareOriginWrite(o), where + ": copied once");
                }
                m.origin.put(o, ++m.version);
                m.keys.add(o);
                verifySome(w, m, o, -1, r, where);
            } else if (k < 95 && live > 0) {
                long o = randomKey(r, range);
                int s = randomLive(w, r);
                long before = w.tree.lookup(o, s);
                long free = w.alloc.freeCount();
                SnapWrite sw;
                try {
                    sw = w.tree.prepareSnapshotWrite(o, s);
                } catch (NoSpaceException e) {
                    noSpace = true;
                    assertEquals(free, w.alloc.freeCount(), where);
                    continue;
                }
                if (sw.copyFrom() == SharedTree.IN_PLACE) {
                    assertEquals(before, sw.chunk(), where);
                } else {
                    assertEquals(before < 0 ? SharedTree.FROM_ORIGIN : before, sw.copyFrom(), where + ": copy from what the snapshot saw");
                    assertTrue(w.alloc.isFresh(sw.chunk()), where);
                    assertNull(m.data.get(sw.chunk()), where + ": data chunk " + sw.chunk() + " handed out twice");
                }
                m.data.put(sw.chunk(), ++m.version);
                m.snaps[s].put(o, m.version);
                m.keys.add(o);
                verifySome(w, m, o, s, r, where);
            } else {
                w.commit();
            }
            // data chunks freed by the tree must leave the model too
            m.data.keySet().removeIf(c -> !w.alloc.isAllocated(c) || w.alloc.isPendingFree(c) || w.alloc.isInFlightFree(c));
            maxLevel = Math.max(maxLevel, w.tree.level());
            if (op % 50 == 0) verifyAll(w, m, where, r);
        }
        if (maxLevel >= 3) deepSeeds++;
        if (noSpace) noSpaceSeeds++;
        if (m.keys.last() > 0xffffffffL) hugeKeySeeds++;
        verifyAll(w, m, "seed " + seed + " end", (long) m.keys.size() * Long.bitCount(w.tree.snapmask()) <= 20_000 ? null : r);
        // delete everything: back to the metadata-only baseline
        for (int s = 0; s < 64; s++) if (w.tree.isLive(s)) { w.tree.deleteSnapshot(s); m.snaps[s] = null; }
        finishDelete(w, "seed " + seed + " delete all");
        w.commit();
        verifyCommitted(w, w.committed, "seed " + seed + " after the last commit", true);
        SharedTree.CheckResult res = w.tree.check();
        assertTrue(res.clean(), "seed " + seed + ": " + res.problems());
        assertEquals(0, res.exceptions(), "seed " + seed);
        assertEquals(1, w.tree.level(), "seed " + seed + " (max level " + maxLevel + ")");
        assertEquals(1, res.leaves(), "seed " + seed);
        assertEquals(nr - w.layout.firstDataChunk() - 2, w.alloc.freeCount(), "seed " + seed + ": only the root and one leaf remain");
    }

    static int randomLive(World w, Random r) {
        int n = r.nextInt(Long.bitCount(w.tree.snapmask()));
        for (int s = 0; s < 64; s++) if (w.tree.isLive(s) && n-- == 0) return s;
        throw new AssertionError();
    }

    /** Runs the pending deletion to the end, committing whenever space runs short (deferred frees come back). */
    static void finishDelete(World w, String where) {
        for (int round = 0; round < 100_000; round++) {
            try {
                if (w.tree.deleteStep(1 + round % 7)) {
                    SharedTree.CheckResult r = w.tree.check();
                    assertTrue(r.clean(), where + ": " + r.problems());
                    return;
                }
            } catch (NoSpaceException e) {
                w.commit();
            }
            if (round % 3 == 0) w.commit();
        }
        fail(where + ": the delete never finished");
    }
}
