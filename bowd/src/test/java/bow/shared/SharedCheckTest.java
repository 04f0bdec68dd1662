package bow.shared;

import bow.blockdev.MemoryBlockDevice;
import bow.shared.Leaf.Exc;
import bow.shared.SharedCheck.Problem;
import bow.shared.SharedCheck.Result;
import bow.shared.SharedCheck.SlotState;
import bow.shared.SharedFormat.Header;
import org.junit.jupiter.api.Test;

import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;

import static org.junit.jupiter.api.Assertions.*;

/**
 * {@link SharedCheck} on COWs built by {@link SharedImage}: clean stores (counts equal to what
 * {@link SharedTree#check} finds in memory), then one corruption at a time, each reported with
 * its chunk.
 */
class SharedCheckTest {
    static final int SEEDS = Integer.getInteger("bow.test.seeds", 20);

    /** Snapshots 0..2 (2 writable), origin writes over 60 chunks, snapshot writes, a delete half done: a tree of several levels. */
    static SharedImage busy(long seed) {
        Random r = new Random(seed);
        SharedImage img = SharedImage.small(1024);
        img.commit();
        img.createSnapshot(0, "first", false, 1_700_000_000_000L);
        img.createSnapshot(1, "second", false, 1_700_000_001_000L);
        for (int i = 0; i < 40; i++) img.originWrite(r.nextInt(60));
        img.commit();
        img.createSnapshot(2, "rw", true, 1_700_000_002_000L);
        img.createSnapshot(3, null, false, 1_700_000_003_000L);
        for (int i = 0; i < 40; i++) {
            if (r.nextBoolean()) img.originWrite(r.nextInt(60)); else img.snapshotWrite(r.nextInt(60), 2);
        }
        img.commit();
        img.deleteSnapshot(1);
        img.tree.deleteStep(2);
        img.commit();
        return img;
    }

    static java.util.TreeSet<Long> mappedOrigins(SharedImage img) {
        java.util.TreeSet<Long> o = new java.util.TreeSet<>();
        for (String what : img.tree.check().reachable().values()) {
            if (what.startsWith("exception data for origin ")) o.add(Long.parseLong(what.substring("exception data for origin ".length())));
        }
        return o;
    }

    static Result check(SharedImage img) throws Exception { return SharedCheck.run(img.cow); }

    static void assertReported(Result r, long chunk, String text) {
        assertFalse(r.clean(), "not clean");
        boolean found = r.problems().stream().anyMatch(p -> p.chunk() == chunk && p.problem().contains(text));
        assertTrue(found, "a problem at chunk " + chunk + " saying \"" + text + "\" among " + r.problems());
    }

    @Test
    void cleanStoreIsCleanAndCountsMatchTheInMemoryCheck() throws Exception {
        for (int seed = 0; seed < SEEDS; seed++) {
            SharedImage img = busy(seed);
            Result r = check(img);
            assertTrue(r.clean(), "seed " + seed + ": " + r.problems());
            assertTrue(img.tree.level() >= 2, "the test tree has several levels (level " + img.tree.level() + ")");
            assertNotEquals(0, img.tree.deleting(), "a deletion is still pending");
            SharedTree.CheckResult mem = img.tree.check();
            assertTrue(mem.clean(), mem.problems().toString());
            assertEquals(mem.leaves(), r.counts().leaves(), "leaves");
            assertEquals(mem.nodes(), r.counts().nodes(), "nodes");
            assertEquals(mem.exceptions(), r.counts().exceptions(), "exceptions");
            long data = mem.reachable().values().stream().filter(s -> s.startsWith("exception data")).count();
            assertEquals(data, r.counts().dataChunks(), "data chunks");
            assertEquals(img.alloc.freeCount(), r.counts().freeChunks(), "free");
            assertEquals(img.layout.firstDataChunk() + mem.reachable().size(), r.counts().usedChunks(), "used = metadata + reachable");
            assertEquals(img.header(), r.header());
            assertTrue(r.slots().get((int) (img.header().sequence() & 1)).inUse());
            assertEquals(SlotState.VALID, r.slots().get(0).state());
            assertEquals(SlotState.VALID, r.slots().get(1).state());
            assertTrue(r.notes().stream().anyMatch(n -> n.contains("previous commit")), r.notes().toString());
        }
    }

    @Test
    void fullSizeBlocksAtEveryChunkSizeAreClean() throws Exception {
        for (int cs = SharedFormat.MIN_CHUNK_SECTORS; cs <= 256; cs <<= 1) {
            SharedImage img = SharedImage.full(cs, 64);
            img.commit();
            img.createSnapshot(5, "s", false, 1);
            long d = img.originWrite(3);
            img.commit();
            Result r = check(img);
            assertTrue(r.clean(), cs + ": " + r.problems());
            assertEquals(1, r.counts().leaves());
            assertEquals(1, r.counts().nodes());
            assertEquals(1, r.counts().exceptions());
            assertEquals(1, r.counts().dataChunks());
            assertTrue(d > 0);
        }
    }

    @Test
    void blankCowIsBlankNotCorrupt() throws Exception {
        Result r = SharedCheck.run(new MemoryBlockDevice(1 << 20));
        assertTrue(r.blank());
        assertFalse(r.clean());
        assertEquals(0, r.problemCount());
        assertEquals(SlotState.BLANK, r.slots().get(0).state());
        assertEquals(SlotState.BLANK, r.slots().get(1).state());
    }

    @Test
    void blankSlotZeroWithJunkWhereSlotOneWouldBeIsBlankAsTheEngineSeesIt() throws Exception {
        byte[] b = new byte[1 << 20];
        new Random(1).nextBytes(b);
        java.util.Arrays.fill(b, 0, 4096, (byte) 0);
        MemoryBlockDevice cow = new MemoryBlockDevice(b);
        Result r = SharedCheck.run(cow);
        assertTrue(r.blank(), r.problems().toString());
        assertEquals(SlotState.INVALID, r.slots().get(1).state());
        assertTrue(r.notes().get(0).contains("slot 0 is blank"), r.notes().toString());
        try (SharedEngine e = SharedEngine.open(new MemoryBlockDevice(1 << 16), cow, new SharedEngine.Options(0))) {
            assertNull(e.store(), "the engine sees a blank COW too");
        }
        b[100] = 1;     // slot 0 not blank any more: corrupt, for the engine and the check
        Result bad = SharedCheck.run(new MemoryBlockDevice(b));
        assertFalse(bad.blank());
        assertTrue(bad.problems().get(0).problem().contains("no valid header slot"), bad.problems().toString());
        assertThrows(java.io.IOException.class, () -> SharedEngine.open(new MemoryBlockDevice(1 << 16), new MemoryBlockDevice(b), new SharedEngine.Options(0)));
    }

    @Test
    void tooSmallCowIsAnError() {
        assertThrows(java.io.IOException.class, () -> SharedCheck.run(new MemoryBlockDevice(1000)));
    }

    @Test
    void theChunkStoreRefusesWrites() {
        SharedCheck.ReadOnlyChunks c = new SharedCheck.ReadOnlyChunks(new MemoryBlockDevice(8192), 4096);
        assertThrows(UnsupportedOperationException.class, () -> c.write(1, new byte[4096]));
    }

    @Test
    void checkDoesNotWrite() throws Exception {
        SharedImage img = busy(1);
        img.poke(img.firstLeafChunk(), 0, (byte) 0);      // something to report
        byte[] before = img.image();
        check(img);
        assertArrayEquals(before, img.image());
    }

    @Test
    void leafMagic() throws Exception {
        SharedImage img = busy(2);
        long leaf = img.leafChunkFor(30);
        img.poke(leaf, 0, (byte) 0x34, (byte) 0x12);
        Result r = check(img);
        assertReported(r, leaf, "leaf.magic");
        assertTrue(r.notes().stream().anyMatch(n -> n.contains("could not be read")), "the leaked chunks are put down to the unreadable leaf: " + r.notes());
    }

    @Test
    void nodeMagicAndALeafWhereANodeBelongs() throws Exception {
        SharedImage img = busy(3);
        long root = img.header().rootTreeChunk();
        img.poke(root, 4, (byte) 0, (byte) 0);
        assertReported(check(img), root, "node.magic");

        SharedImage deeper = busy(3);
        Header h = deeper.header();
        deeper.rewriteHeader(x -> new Header(1, x.chunkSectors(), x.rootTreeChunk(), x.snapmask(), x.treeLevel() - 1, 0, x.sequence(),
                x.nrChunks(), x.originBytes(), x.freeChunks(), x.deletingMask(), x.deleteResume(), snapshots(x)));
        Result r = check(deeper);
        assertFalse(r.clean());
        assertTrue(r.problems().stream().anyMatch(p -> p.problem().contains("leaf.magic")), "a node where a leaf belongs: " + r.problems());
        assertTrue(h.treeLevel() >= 2);
    }

    static SharedFormat.Snapshot[] snapshots(Header h) {
        SharedFormat.Snapshot[] s = new SharedFormat.Snapshot[64];
        for (int i = 0; i < 64; i++) s[i] = h.snapshot(i);
        return s;
    }

    @Test
    void leafAndNodeChecksums() throws Exception {
        SharedImage img = busy(4);
        long leaf = img.leafChunkFor(10);
        byte[] b = img.readChunk(leaf);
        img.poke(leaf, img.chunkBytes - 1, (byte) (b[img.chunkBytes - 1] ^ 1));
        assertReported(check(img), leaf, "leaf.crc");

        SharedImage img2 = busy(4);
        long root = img2.header().rootTreeChunk();
        img2.poke(root, 24 + 16 + 8, (byte) 0x7f);      // child 1's chunk number
        assertReported(check(img2), root, "node.crc");
    }

    @Test
    void bitmapBitSetForAnUnreachableChunk() throws Exception {
        SharedImage img = busy(5);
        long c = img.layout.nrChunks() - 1;
        assertFalse(img.tree.check().reachable().containsKey(c));
        img.setBitmapBit(c, true);
        Result r = check(img);
        assertEquals(1, r.problemCount(), r.problems().toString());
        assertReported(r, c, "leaked");
    }

    @Test
    void bitmapBitClearedForAReachableChunk() throws Exception {
        SharedImage img = busy(6);
        long leaf = img.leafChunkFor(20);
        Leaf l = Leaf.decode(img.readChunk(leaf), leaf);
        long data = l.entries.get(0).excs.get(0).chunk();
        long origin = l.entries.get(0).origin;
        img.setBitmapBit(data, false);
        Result r = check(img);
        assertEquals(1, r.problemCount(), r.problems().toString());
        assertReported(r, data, "marked free");
        assertReported(r, data, "exception data of origin chunk " + origin + " in leaf " + leaf);

        SharedImage img2 = busy(6);
        img2.setBitmapBit(leaf, false);
        assertReported(check(img2), leaf, "tree block reachable from the tree but marked free");

        SharedImage img3 = busy(6);
        img3.setBitmapBit(2, false);
        assertReported(check(img3), img3.layout.bitmapChunk(img3.header().slot(), 0), "reserved metadata chunk 2 is marked free");
    }

    @Test
    void shareMaskNamingADeadSnapshot() throws Exception {
        SharedImage img = busy(7);
        long leaf = img.leafChunkFor(40);
        long origin = Leaf.decode(img.readChunk(leaf), leaf).entries.get(0).origin;
        assertFalse(img.tree.isLive(6));
        img.rewriteLeaf(leaf, l -> {
            List<Exc> x = l.entries.get(0).excs;
            x.set(0, new Exc(x.get(0).share() | 1L << 6, x.get(0).chunk()));
        });
        Result r = check(img);
        assertEquals(1, r.problemCount(), r.problems().toString());
        assertReported(r, leaf, "origin chunk " + origin + ": share mask");
        assertReported(r, leaf, "snapshots 6 that are neither live nor being deleted");
    }

    @Test
    void aDeletedSnapshotsBitsLeftBehindTheResumePoint() throws Exception {
        SharedImage img = busy(8);
        Header h = img.header();
        assertTrue(h.deleteResume() > 0, "the delete has done some leaves");
        long origin = mappedOrigins(img).first();
        assertTrue(origin < h.deleteResume());
        long leaf = img.leafChunkFor(origin);
        long bit = Long.lowestOneBit(h.deletingMask());
        img.rewriteLeaf(leaf, l -> {
            List<Exc> x = l.get(origin).excs;
            x.set(0, new Exc(x.get(0).share() | bit, x.get(0).chunk()));
        });
        assertReported(check(img), leaf, "left before the delete's resume point");
    }

    @Test
    void aChunkReferencedTwice() throws Exception {
        SharedImage img = busy(9);
        long leafA = img.leafChunkFor(5), leafB = img.leafChunkFor(55);
        assertNotEquals(leafA, leafB);
        Leaf a = Leaf.decode(img.readChunk(leafA), leafA), b = Leaf.decode(img.readChunk(leafB), leafB);
        long shared = a.entries.get(0).excs.get(0).chunk();
        long orphan = b.entries.get(b.entries.size() - 1).excs.get(0).chunk();
        long originA = a.entries.get(0).origin, originB = b.entries.get(b.entries.size() - 1).origin;
        img.rewriteLeaf(leafB, l -> {
            List<Exc> x = l.entries.get(l.entries.size() - 1).excs;
            x.set(0, new Exc(x.get(0).share(), shared));
        });
        img.setBitmapBit(orphan, false);          // so that only the double use is wrong
        Result r = check(img);
        assertEquals(1, r.problemCount(), r.problems().toString());
        assertReported(r, shared, "used 2 times");
        assertReported(r, shared, "origin chunk " + originA + " in leaf " + leafA);
        assertReported(r, shared, "origin chunk " + originB + " in leaf " + leafB);

        // a tree block that is also exception data
        SharedImage img2 = busy(9);
        long leaf = img2.leafChunkFor(5);
        long victim = img2.leafChunkFor(55);
        long orphan2 = Leaf.decode(img2.readChunk(leaf), leaf).entries.get(0).excs.get(0).chunk();
        img2.rewriteLeaf(leaf, l -> {
            List<Exc> x = l.entries.get(0).excs;
            x.set(0, new Exc(x.get(0).share(), victim));
        });
        img2.setBitmapBit(orphan2, false);
        Result r2 = check(img2);
        assertEquals(1, r2.problemCount(), r2.problems().toString());
        assertReported(r2, victim, "used 2 times");
        assertReported(r2, victim, "leaf at depth");
    }

    @Test
    void nodeKeyOutsideItsParentsRange() throws Exception {
        SharedImage img = busy(10);
        long root = img.header().rootTreeChunk();
        Node n = Node.decode(img.readChunk(root), root);
        assertTrue(n.count >= 2 && img.tree.level() >= 2);
        long child = n.children[1];
        assertTrue(Node.decode(img.readChunk(child), child).count >= 2, "child has two entries");
        img.rewriteNode(child, c -> c.keys[1] = n.keys[1]);     // child 1 holds [n.keys[1], ...): its keys must be above that
        assertReported(check(img), child, "node key[1] = " + n.keys[1] + " is outside");
    }

    @Test
    void misdirectedBlock() throws Exception {
        SharedImage img = busy(11);
        long a = img.leafChunkFor(5), b = img.leafChunkFor(55);
        img.writeChunk(b, img.readChunk(a));          // a stale or misdirected write: valid block, wrong place
        assertReported(check(img), b, "leaf.self");
    }

    @Test
    void oneTornSlotUsesTheOtherAndIsClean() throws Exception {
        SharedImage img = busy(12);
        Header last = img.header();
        img.poke(last.slot(), 100, (byte) 0x55);      // torn header write
        Result r = check(img);
        assertTrue(r.clean(), r.problems().toString());
        assertEquals(last.sequence() - 1, r.header().sequence());
        assertEquals(SlotState.INVALID, r.slots().get(last.slot()).state());
        assertTrue(r.slots().get(last.slot()).problem().contains("header.crc"));
        assertTrue(r.notes().stream().anyMatch(n -> n.contains("not valid")), r.notes().toString());
    }

    @Test
    void slotZeroTornAtALargerChunkSizeFindsSlotOne() throws Exception {
        SharedImage img = SharedImage.full(64, 40);
        img.commit();                       // sequence 1: slot 1, one chunk (32 KiB) in
        img.createSnapshot(0, "a", false, 5);
        img.originWrite(1);
        img.commit();                       // sequence 2: slot 0
        img.createSnapshot(1, "b", false, 6);
        img.commit();                       // sequence 3: slot 1
        img.writeChunk(0, new byte[img.chunkBytes]);
        img.poke(0, 0, (byte) 1, (byte) 2, (byte) 3);   // slot 0: garbage, no usable chunk size
        Result r = check(img);
        assertTrue(r.clean(), r.problems().toString());
        assertEquals(3, r.header().sequence());
        assertEquals(64, r.slots().get(1).chunkSectors());
        assertEquals(SlotState.INVALID, r.slots().get(0).state());
    }

    @Test
    void bothSlotsTorn() throws Exception {
        SharedImage img = busy(13);
        img.poke(0, 100, (byte) 0x55);
        img.poke(1, 100, (byte) 0x55);
        Result r = check(img);
        assertNull(r.header());
        assertFalse(r.blank());
        assertEquals(1, r.problemCount());
        Problem p = r.problems().get(0);
        assertTrue(p.problem().contains("slot 0: ") && p.problem().contains("slot 1: ") && p.problem().contains("header.crc"), p.toString());
        assertEquals(SlotState.INVALID, r.slots().get(0).state());
        assertEquals(SlotState.INVALID, r.slots().get(1).state());
    }

    @Test
    void invalidatedStoreAndShrunkenCow() throws Exception {
        SharedImage img = busy(14);
        img.rewriteHeader(x -> new Header(0, x.chunkSectors(), x.rootTreeChunk(), x.snapmask(), x.treeLevel(), 0, x.sequence(),
                x.nrChunks(), x.originBytes(), x.freeChunks(), x.deletingMask(), x.deleteResume(), snapshots(x)));
        assertReported(check(img), img.header().slot(), "invalidated");

        SharedImage img2 = busy(14);
        MemoryBlockDevice shorter = new MemoryBlockDevice(java.util.Arrays.copyOf(img2.image(), 512 * 4096));
        Result r = SharedCheck.run(shorter);
        assertFalse(r.clean());
        assertTrue(r.problems().get(0).problem().contains("shrunk"), r.problems().toString());
    }

    @Test
    void problemsAreCappedButCounted() throws Exception {
        SharedImage img = busy(15);
        for (long c = 900; c < 1000; c++) img.setBitmapBit(c, true);
        Result r = SharedCheck.run(img.cow, 10);
        assertEquals(100, r.problemCount());
        assertEquals(10, r.problems().size());
    }

    /** Randomized: every commit of a random workload checks clean and agrees with the in-memory check. */
    @Test
    void randomWorkloadsCheckCleanAfterEveryCommit() throws Exception {
        for (int seed = 0; seed < SEEDS; seed++) {
            Random r = new Random(1000 + seed);
            SharedImage img = SharedImage.small(2048);
            img.commit();
            Set<Integer> live = new HashSet<>();
            for (int step = 0; step < 12; step++) {
                for (int op = 0; op < 15; op++) {
                    int k = r.nextInt(10);
                    if (k == 0 && live.size() < 6) {
                        int id = r.nextInt(8);
                        if (!img.tree.isLive(id) && (img.tree.deleting() >>> id & 1) == 0) { img.createSnapshot(id, null, r.nextBoolean(), step); live.add(id); }
                    } else if (k == 1 && !live.isEmpty()) {
                        int id = new ArrayList<>(live).get(r.nextInt(live.size()));
                        img.deleteSnapshot(id);
                        live.remove(id);
                    } else if (k == 2 && !live.isEmpty()) {
                        img.snapshotWrite(r.nextInt(200), new ArrayList<>(live).get(r.nextInt(live.size())));
                    } else if (k == 3) {
                        img.tree.deleteStep(1 + r.nextInt(3));
                    } else {
                        img.originWrite(r.nextInt(200));
                    }
                }
                img.commit();
                Result res = check(img);
                SharedTree.CheckResult mem = img.tree.check();
                assertTrue(mem.clean(), mem.problems().toString());
                assertTrue(res.clean(), "seed " + seed + " step " + step + ": " + res.problems());
                assertEquals(mem.exceptions(), res.counts().exceptions());
                assertEquals(mem.leaves() + mem.nodes(), res.counts().treeChunks());
                assertEquals(img.alloc.freeCount(), res.counts().freeChunks());
            }
        }
    }

    @Test
    void idsOfAMask() {
        assertEquals("0,3,63", SharedCheck.ids(1L | 8L | 1L << 63));
        assertEquals(List.of(1, 2), SharedCheck.idList(6));
        assertEquals("", SharedCheck.ids(0));
    }
}
