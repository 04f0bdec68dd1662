package bow.shared;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;

/**
 * An interior tree node, decoded. Child i holds the origin chunks in [keys[i], keys[i+1]);
 * keys[0] is not a bound (the seed never read it) and is stored as 0.
 *
 * <pre>
 * 0  u32 count (1..max)     4  u16 magic 0x90de       6  u16 version (2)
 * 8  u64 self               16 u32 crc32c (whole chunk, this field as 0)   20 u32 reserved (0)
 * 24 entries[count]: {u64 key, u64 chunk}; keys[1..] strictly increasing; rest of chunk zero
 * </pre>
 */
public final class Node {
    public static final short MAGIC = (short) 0x90de;
    public static final int VERSION = 2;
    public static final int HEADER_BYTES = 24;
    public static final int ENTRY_BYTES = 16;
    static final int CRC_OFFSET = 16;

    public int count;
    public long[] keys;
    public long[] children;

    public Node(int capacity) {
        keys = new long[capacity];
        children = new long[capacity];
    }

    public static int maxEntries(int chunkBytes) { return (chunkBytes - HEADER_BYTES) / ENTRY_BYTES; }

    /** Index of the child that holds {@code key}: the last i with i == 0 or keys[i] &lt;= key (binary search). */
    public int childFor(long key) {
        int lo = 1, hi = count - 1, ans = 0;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            if (keys[mid] <= key) { ans = mid; lo = mid + 1; } else hi = mid - 1;
        }
        return ans;
    }

    public void insert(int at, long key, long child) {
        if (count == keys.length) throw new IllegalStateException("node full");
        System.arraycopy(keys, at, keys, at + 1, count - at);
        System.arraycopy(children, at, children, at + 1, count - at);
        keys[at] = key;
        children[at] = child;
        count++;
    }

    public void remove(int at) {
        System.arraycopy(keys, at + 1, keys, at, count - at - 1);
        System.arraycopy(children, at + 1, children, at, count - at - 1);
        count--;
        keys[count] = 0;
        children[count] = 0;
    }

    public Node copy() {
        Node n = new Node(keys.length);
        n.count = count;
        n.keys = keys.clone();
        n.children = children.clone();
        return n;
    }

    public byte[] encode(int chunkBytes, long self) {
        if (count < 1 || count > maxEntries(chunkBytes)) throw new IllegalStateException("node count " + count);
        byte[] b = new byte[chunkBytes];
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        bb.putInt(0, count).putShort(4, MAGIC).putShort(6, (short) VERSION).putLong(8, self);
        for (int i = 0; i < count; i++) {
            if (i > 0 && keys[i] <= keys[i - 1] && i > 1) throw new IllegalStateException("node keys out of order at " + i);
            bb.putLong(HEADER_BYTES + ENTRY_BYTES * i, i == 0 ? 0 : keys[i]).putLong(HEADER_BYTES + ENTRY_BYTES * i + 8, children[i]);
        }
        bb.putInt(CRC_OFFSET, Leaf.crc(b, CRC_OFFSET));
        return b;
    }

    public static Node decode(byte[] b, long chunk) {
        int cb = b.length;
        if (cb < HEADER_BYTES + ENTRY_BYTES) throw new SharedFormatException(chunk, "node", "block of " + cb + " bytes is too small");
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        short magic = bb.getShort(4);
        if (magic != MAGIC) {
            String what = Leaf.looksLikeLeaf(b) ? " (a leaf where a node belongs)" : "";
            throw new SharedFormatException(chunk, "node.magic", String.format("0x%04x, expected 0x90de", magic & 0xffff) + what);
        }
        int stored = bb.getInt(CRC_OFFSET), actual = Leaf.crc(b, CRC_OFFSET);
        if (stored != actual) throw new SharedFormatException(chunk, "node.crc", String.format("stored 0x%08x, computed 0x%08x", stored, actual));
        int version = Short.toUnsignedInt(bb.getShort(6));
        if (version != VERSION) throw new SharedFormatException(chunk, "node.version", version + ", expected " + VERSION);
        long self = bb.getLong(8);
        if (self != chunk) throw new SharedFormatException(chunk, "node.self", "block says it belongs at chunk " + self + " (misdirected or stale write)");
        if (bb.getInt(20) != 0) throw new SharedFormatException(chunk, "node.reserved", "not zero");
        int max = maxEntries(cb);
        long count = Integer.toUnsignedLong(bb.getInt(0));
        if (count < 1 || count > max) throw new SharedFormatException(chunk, "node.count", count + " is outside 1.." + max);
        Node n = new Node(max);
        n.count = (int) count;
        for (int i = 0; i < n.count; i++) {
            n.keys[i] = bb.getLong(HEADER_BYTES + ENTRY_BYTES * i);
            n.children[i] = bb.getLong(HEADER_BYTES + ENTRY_BYTES * i + 8);
            if (i == 0 && n.keys[0] != 0) throw new SharedFormatException(chunk, "node.entries[0].key", n.keys[0] + ", expected 0");
            if (i > 0 && n.keys[i] < 0) throw new SharedFormatException(chunk, "node.entries[" + i + "].key", Long.toUnsignedString(n.keys[i]) + " is negative");
            if (i > 1 && n.keys[i] <= n.keys[i - 1]) throw new SharedFormatException(chunk, "node.entries[" + i + "].key", n.keys[i] + " is not above " + n.keys[i - 1]);
            if (n.children[i] <= 0) throw new SharedFormatException(chunk, "node.entries[" + i + "].chunk", Long.toUnsignedString(n.children[i]) + " is not a data chunk");
        }
        int nz = Leaf.firstNonZero(b, HEADER_BYTES + ENTRY_BYTES * n.count, cb);
        if (nz >= 0) throw new SharedFormatException(chunk, "node", "byte " + nz + " after the last entry is not zero");
        return n;
    }

    @Override public String toString() {
        return "Node" + Arrays.toString(Arrays.copyOf(keys, count)) + "->" + Arrays.toString(Arrays.copyOf(children, count));
    }
}
