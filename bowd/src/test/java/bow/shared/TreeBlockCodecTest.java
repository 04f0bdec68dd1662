package bow.shared;

import bow.shared.Leaf.Entry;
import bow.shared.Leaf.Exc;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.Random;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.*;

/** Byte-level and randomized tests of the leaf and node codecs. */
class TreeBlockCodecTest {
    static final int SEEDS = Integer.getInteger("bow.test.seeds", 300);
    static final int CB = 4096;

    static void setCrc(byte[] b, int off) {
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        bb.putInt(off, 0);
        CRC32C c = new CRC32C();
        c.update(b);
        bb.putInt(off, (int) c.getValue());
    }

    /** leaf at chunk 9, base 100: origin 100 -> [{0b11, 50}], origin 105 -> [{0b100, 51}, {0b1000, 52}] */
    static byte[] handLeaf() {
        byte[] b = new byte[CB];
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        bb.putShort(0, (short) 0x1eaf).putShort(2, (short) 2).putInt(4, 2);
        bb.putLong(8, 100).putLong(16, 0b1111).putLong(24, 9);
        bb.putInt(40, CB - 48).putInt(44, 0);      // map[0]
        bb.putInt(48, CB - 32).putInt(52, 5);      // map[1]
        bb.putInt(56, CB).putInt(60, 0);           // sentinel
        bb.putLong(CB - 48, 0b11).putLong(CB - 40, 50);
        bb.putLong(CB - 32, 0b100).putLong(CB - 24, 51);
        bb.putLong(CB - 16, 0b1000).putLong(CB - 8, 52);
        setCrc(b, 32);
        return b;
    }

    static Leaf leaf() {
        Leaf l = new Leaf(100);
        l.entries.add(new Entry(100, new ArrayList<>(List.of(new Exc(0b11, 50)))));
        l.entries.add(new Entry(105, new ArrayList<>(List.of(new Exc(0b100, 51), new Exc(0b1000, 52)))));
        return l;
    }

    @Test
    void leafBytesAreLaidOutAsDocumented() {
        assertArrayEquals(handLeaf(), leaf().encode(CB, 9));
        Leaf d = Leaf.decode(handLeaf(), 9);
        assertEquals(leaf().toString(), d.toString());
        assertEquals(0b1111, d.usingMask());
        assertEquals(1, d.find(105));
        assertEquals(-2, d.find(101));
        assertEquals(40 + 3 * 8 + 3 * 16, d.encodedBytes());
    }

    @Test
    void emptyLeafIsHeaderAndSentinel() {
        byte[] b = new byte[CB];
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        bb.putShort(0, (short) 0x1eaf).putShort(2, (short) 2).putLong(8, 7).putLong(24, 3).putInt(40, CB);
        setCrc(b, 32);
        assertArrayEquals(b, new Leaf(7).encode(CB, 3));
        assertTrue(Leaf.decode(b, 3).entries.isEmpty());
    }

    static void leafField(String field, byte[] b) {
        SharedFormatException e = assertThrows(SharedFormatException.class, () -> Leaf.decode(b, 9));
        assertEquals(field, e.field(), e.getMessage());
        assertEquals(9, e.chunk());
        assertTrue(e.getMessage().contains("chunk 9"));
    }

    static byte[] edit(byte[] src, int crcOff, int off, long v, int width) {
        byte[] b = src.clone();
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        if (width == 2) bb.putShort(off, (short) v); else if (width == 4) bb.putInt(off, (int) v); else bb.putLong(off, v);
        setCrc(b, crcOff);
        return b;
    }

    @Test
    void corruptLeavesNameTheField() {
        byte[] b = handLeaf();
        leafField("leaf.magic", edit(b, 32, 0, 0x1eae, 2));
        byte[] torn = b.clone();
        torn[CB - 1] ^= 1;
        leafField("leaf.crc", torn);
        leafField("leaf.version", edit(b, 32, 2, 1, 2));
        leafField("leaf.self", edit(b, 32, 24, 10, 8));
        leafField("leaf.reserved", edit(b, 32, 36, 1, 4));
        leafField("leaf.count", edit(b, 32, 4, 1000, 4));
        leafField("leaf.count", edit(b, 32, 4, -1, 4));
        leafField("leaf.map[1].offset", edit(b, 32, 4, 1, 4));           // count 1: map[1] is read as the sentinel
        leafField("leaf.map[1].rchunk", edit(b, 32, 52, 0, 4));          // not increasing
        leafField("leaf.map[0].offset", edit(b, 32, 40, 20, 4));         // inside the map
        leafField("leaf.map[0].offset", edit(b, 32, 40, CB - 40, 4));    // not on a 16-byte boundary
        leafField("leaf.map[0].offset", edit(b, 32, 48, CB - 48, 4));    // map[1] == map[0]: list 0 is empty
        leafField("leaf.map[0].exception[0].share", edit(b, 32, CB - 48, 0, 8));
        leafField("leaf.using_mask", edit(b, 32, 16, 0b111, 8));
        leafField("leaf.base_chunk", edit(b, 32, 8, -5, 8));
        leafField("leaf", edit(b, 32, 200, 1, 4));                       // junk in free space
        assertThrows(SharedFormatException.class, () -> Leaf.decode(new byte[20], 9));
    }

    /** node at chunk 4: children 10 (keys from 0), 11 (from 500), 12 (from 900) */
    static byte[] handNode() {
        byte[] b = new byte[CB];
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        bb.putInt(0, 3).putShort(4, (short) 0x90de).putShort(6, (short) 2).putLong(8, 4);
        bb.putLong(24, 0).putLong(32, 10).putLong(40, 500).putLong(48, 11).putLong(56, 900).putLong(64, 12);
        setCrc(b, 16);
        return b;
    }

    @Test
    void nodeBytesAreLaidOutAsDocumented() {
        Node n = new Node(Node.maxEntries(CB));
        n.insert(0, 0, 10);
        n.insert(1, 900, 12);
        n.insert(1, 500, 11);
        assertArrayEquals(handNode(), n.encode(CB, 4));
        Node d = Node.decode(handNode(), 4);
        assertEquals(n.toString(), d.toString());
        assertEquals(254, Node.maxEntries(CB));
        assertEquals(0, d.childFor(0));
        assertEquals(0, d.childFor(499));
        assertEquals(1, d.childFor(500));
        assertEquals(1, d.childFor(899));
        assertEquals(2, d.childFor(Long.MAX_VALUE));
        d.remove(1);
        assertEquals(2, d.count);
        assertEquals(0, d.childFor(500), "the removed child's range now belongs to its left neighbour");
        assertEquals(0, d.childFor(899));
        assertEquals(1, d.childFor(900));
    }

    static void nodeField(String field, byte[] b) {
        SharedFormatException e = assertThrows(SharedFormatException.class, () -> Node.decode(b, 4));
        assertEquals(field, e.field(), e.getMessage());
        assertEquals(4, e.chunk());
    }

    @Test
    void corruptNodesNameTheField() {
        byte[] b = handNode();
        nodeField("node.magic", edit(b, 16, 4, 0x1234, 2));
        SharedFormatException e = assertThrows(SharedFormatException.class, () -> Node.decode(handLeaf(), 4));
        assertTrue(e.getMessage().contains("a leaf where a node belongs"), e.getMessage());
        byte[] torn = b.clone();
        torn[30] ^= 4;
        nodeField("node.crc", torn);
        nodeField("node.version", edit(b, 16, 6, 3, 2));
        nodeField("node.self", edit(b, 16, 8, 5, 8));
        nodeField("node.reserved", edit(b, 16, 20, 5, 4));
        nodeField("node.count", edit(b, 16, 0, 0, 4));
        nodeField("node.count", edit(b, 16, 0, 255, 4));
        nodeField("node.entries[0].key", edit(b, 16, 24, 1, 8));
        nodeField("node.entries[2].key", edit(b, 16, 56, 500, 8));
        nodeField("node.entries[1].chunk", edit(b, 16, 48, 0, 8));
        nodeField("node", edit(b, 16, 0, 2, 4));                            // entry 2 left behind after count
    }

    @Test
    void randomLeavesAndNodesRoundTripAndCorruptionIsCaught() {
        for (int seed = 0; seed < SEEDS; seed++) {
            Random r = new Random(seed);
            int cb = 4096 << r.nextInt(3);
            long base = r.nextBoolean() ? r.nextInt(1000) : (r.nextLong() >>> 2);
            Leaf l = new Leaf(base);
            long origin = base + r.nextInt(3);
            while (true) {
                int k = 1 + r.nextInt(r.nextBoolean() ? 3 : 64);
                if (Leaf.bytesFor(l.entries.size() + 1, l.exceptionCount() + k) > cb) break;
                if (origin - base > 0xffffffffL) break;
                ArrayList<Exc> x = new ArrayList<>();
                for (int i = 0; i < k; i++) x.add(new Exc(r.nextLong() | 1L << r.nextInt(64), r.nextLong() >>> 1));
                l.entries.add(new Entry(origin, x));
                origin += 1 + (r.nextBoolean() ? r.nextInt(4) : r.nextInt(1 << 30));
                if (r.nextInt(20) == 0) break;
            }
            long self = 1 + r.nextInt(1 << 30);
            byte[] b = l.encode(cb, self);
            assertEquals(l.toString(), Leaf.decode(b, self).toString(), "seed " + seed);
            byte[] bad = b.clone();
            bad[r.nextInt(cb)] ^= (byte) (1 + r.nextInt(255));
            SharedFormatException e = assertThrows(SharedFormatException.class, () -> Leaf.decode(bad, self), "seed " + seed);
            assertEquals(self, e.chunk());

            Node n = new Node(Node.maxEntries(cb));
            int cnt = 1 + r.nextInt(Node.maxEntries(cb));
            long key = 0;
            for (int i = 0; i < cnt; i++) {
                n.insert(i, i == 0 ? 0 : key, 1 + (r.nextLong() >>> 1));
                key += 1 + r.nextInt(1000);
            }
            byte[] nb = n.encode(cb, self);
            assertEquals(n.toString(), Node.decode(nb, self).toString(), "seed " + seed);
            for (int q = 0; q < 20; q++) {
                long probe = r.nextInt((int) key + 10);
                int want = 0;
                for (int i = 1; i < n.count; i++) if (n.keys[i] <= probe) want = i;
                assertEquals(want, n.childFor(probe));
            }
            byte[] nbad = nb.clone();
            nbad[r.nextInt(cb)] ^= (byte) (1 + r.nextInt(255));
            assertThrows(SharedFormatException.class, () -> Node.decode(nbad, self), "seed " + seed);
        }
    }

    @Test
    void encodeRefusesWhatDecodeWouldRefuse() {
        Leaf l = leaf();
        l.entries.get(0).excs.set(0, new Exc(0, 5));
        assertThrows(IllegalStateException.class, () -> l.encode(CB, 1));
        Leaf far = new Leaf(0);
        far.entries.add(new Entry(1L << 32, new ArrayList<>(List.of(new Exc(1, 1)))));
        assertThrows(IllegalStateException.class, () -> far.encode(CB, 1));
        Leaf big = new Leaf(0);
        ArrayList<Exc> x = new ArrayList<>();
        for (int i = 0; i < 254; i++) x.add(new Exc(1, i));
        big.entries.add(new Entry(0, x));
        assertThrows(IllegalStateException.class, () -> big.encode(CB, 1));
        assertThrows(IllegalStateException.class, () -> new Node(10).encode(CB, 1));
    }
}
