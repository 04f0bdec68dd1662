package bow.shared;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.List;
import java.util.zip.CRC32C;

/**
 * A tree leaf, decoded: for each origin chunk it knows, the list of exceptions (share mask,
 * COW chunk). Mutable; {@link #encode} and {@link #decode} are the pure codec.
 *
 * <pre>
 * 0   u16 magic 0x1eaf          2  u16 version (2)       4  u32 count
 * 8   u64 base_chunk            16 u64 using_mask (OR of every share mask in the leaf)
 * 24  u64 self (the chunk this block was written to)
 * 32  u32 crc32c (whole chunk, this field as 0)          36 u32 reserved (0)
 * 40  map[count + 1]: {u32 offset, u32 rchunk}; origin chunk = base_chunk + rchunk; rchunk
 *     strictly increasing; map[count] is the sentinel {chunk bytes, 0}
 * ... free space ...
 * map[0].offset .. chunk end: exceptions {u64 share, u64 chunk}; entry i's list is
 *     [map[i].offset, map[i+1].offset), at least one exception, every share non-zero
 * </pre>
 */
public final class Leaf {
    public static final short MAGIC = 0x1eaf;
    public static final int VERSION = 2;
    public static final int HEADER_BYTES = 40;
    public static final int MAP_BYTES = 8;
    public static final int EXCEPTION_BYTES = 16;
    static final int CRC_OFFSET = 32;

    /** One exception: the COW {@code chunk} holds the old data for the snapshots in {@code share}. */
    public record Exc(long share, long chunk) {}

    /** The exceptions of one origin chunk. */
    public static final class Entry {
        public final long origin;
        public final List<Exc> excs;
        public Entry(long origin, List<Exc> excs) { this.origin = origin; this.excs = excs; }
        public long using() { long m = 0; for (Exc e : excs) m |= e.share(); return m; }
        @Override public String toString() { return origin + "=" + excs; }
    }

    public long base;
    public final ArrayList<Entry> entries = new ArrayList<>();

    public Leaf(long base) { this.base = base; }

    public long usingMask() { long m = 0; for (Entry e : entries) m |= e.using(); return m; }

    public int exceptionCount() { int n = 0; for (Entry e : entries) n += e.excs.size(); return n; }

    /** Bytes this leaf needs when encoded. */
    public int encodedBytes() { return bytesFor(entries.size(), exceptionCount()); }

    public static int bytesFor(int entries, int exceptions) {
        return HEADER_BYTES + MAP_BYTES * (entries + 1) + EXCEPTION_BYTES * exceptions;
    }

    /** Bytes of map and exceptions (the seed's leaf_payload): what merging this leaf into another costs. */
    public int payloadBytes() { return MAP_BYTES * entries.size() + EXCEPTION_BYTES * exceptionCount(); }

    /** Index of the entry for {@code origin}, or -(insertion point) - 1, by binary search. */
    public int find(long origin) {
        int lo = 0, hi = entries.size() - 1;
        while (lo <= hi) {
            int mid = (lo + hi) >>> 1;
            long k = entries.get(mid).origin;
            if (k < origin) lo = mid + 1;
            else if (k > origin) hi = mid - 1;
            else return mid;
        }
        return -(lo + 1);
    }

    public Entry get(long origin) { int i = find(origin); return i >= 0 ? entries.get(i) : null; }

    /** Whether {@code origin} can be stored relative to {@code base} (rchunk is a u32). */
    public boolean inRange(long origin) { return origin - base >= 0 && origin - base <= 0xffffffffL; }

    public Leaf copy() {
        Leaf l = new Leaf(base);
        for (Entry e : entries) l.entries.add(new Entry(e.origin, new ArrayList<>(e.excs)));
        return l;
    }

    /** Encodes into a whole chunk written at {@code self}. Throws IllegalStateException if it does not fit or breaks an invariant. */
    public byte[] encode(int chunkBytes, long self) {
        int need = encodedBytes();
        if (need > chunkBytes) throw new IllegalStateException("leaf needs " + need + " bytes, chunk has " + chunkBytes);
        byte[] b = new byte[chunkBytes];
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        bb.putShort(0, MAGIC).putShort(2, (short) VERSION).putInt(4, entries.size());
        bb.putLong(8, base).putLong(16, usingMask()).putLong(24, self);
        int off = chunkBytes - EXCEPTION_BYTES * exceptionCount();
        long prev = -1;
        for (int i = 0; i < entries.size(); i++) {
            Entry e = entries.get(i);
            if (!inRange(e.origin)) throw new IllegalStateException("origin " + e.origin + " out of range of base " + base);
            if (e.origin - base <= prev) throw new IllegalStateException("entries not in order at " + e.origin);
            if (e.excs.isEmpty()) throw new IllegalStateException("entry " + e.origin + " has no exceptions");
            prev = e.origin - base;
            bb.putInt(HEADER_BYTES + MAP_BYTES * i, off).putInt(HEADER_BYTES + MAP_BYTES * i + 4, (int) (e.origin - base));
            for (Exc x : e.excs) {
                if (x.share() == 0) throw new IllegalStateException("exception with an empty share mask at " + e.origin);
                bb.putLong(off, x.share()).putLong(off + 8, x.chunk());
                off += EXCEPTION_BYTES;
            }
        }
        bb.putInt(HEADER_BYTES + MAP_BYTES * entries.size(), chunkBytes);
        bb.putInt(CRC_OFFSET, crc(b, CRC_OFFSET));
        return b;
    }

    /** Index of the first non-zero byte in [from, to), or -1; eight bytes at a time. */
    static int firstNonZero(byte[] b, int from, int to) {
        int p = from;
        while (p < to && (p & 7) != 0) { if (b[p] != 0) return p; p++; }
        ByteBuffer bb = ByteBuffer.wrap(b);
        for (; p + 8 <= to; p += 8) if (bb.getLong(p) != 0) break;
        for (; p < to; p++) if (b[p] != 0) return p;
        return -1;
    }

    static int crc(byte[] b, int crcOffset) {
        CRC32C c = new CRC32C();
        c.update(b, 0, crcOffset);
        c.update(new byte[4]);
        c.update(b, crcOffset + 4, b.length - crcOffset - 4);
        return (int) c.getValue();
    }

    /** True when the chunk starts with the leaf magic (to tell leaves from nodes in diagnostics). */
    public static boolean looksLikeLeaf(byte[] b) {
        return b.length >= 2 && ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN).getShort(0) == MAGIC;
    }

    /** Decodes and checks a leaf read from {@code chunk}; every problem names the chunk and field. */
    public static Leaf decode(byte[] b, long chunk) {
        int cb = b.length;
        if (cb < HEADER_BYTES + MAP_BYTES) throw new SharedFormatException(chunk, "leaf", "block of " + cb + " bytes is too small");
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        short magic = bb.getShort(0);
        if (magic != MAGIC) throw new SharedFormatException(chunk, "leaf.magic", String.format("0x%04x, expected 0x1eaf", magic & 0xffff));
        int stored = bb.getInt(CRC_OFFSET), actual = crc(b, CRC_OFFSET);
        if (stored != actual) throw new SharedFormatException(chunk, "leaf.crc", String.format("stored 0x%08x, computed 0x%08x", stored, actual));
        int version = Short.toUnsignedInt(bb.getShort(2));
        if (version != VERSION) throw new SharedFormatException(chunk, "leaf.version", version + ", expected " + VERSION);
        long self = bb.getLong(24);
        if (self != chunk) throw new SharedFormatException(chunk, "leaf.self", "block says it belongs at chunk " + self + " (misdirected or stale write)");
        if (bb.getInt(36) != 0) throw new SharedFormatException(chunk, "leaf.reserved", "not zero");
        long count = Integer.toUnsignedLong(bb.getInt(4));
        if (bytesFor(0, 0) + MAP_BYTES * count > cb) throw new SharedFormatException(chunk, "leaf.count", count + " map entries do not fit in " + cb + " bytes");
        int n = (int) count;
        int mapEnd = HEADER_BYTES + MAP_BYTES * (n + 1);
        int sentinel = bb.getInt(HEADER_BYTES + MAP_BYTES * n);
        if (sentinel != cb) throw new SharedFormatException(chunk, "leaf.map[" + n + "].offset", "sentinel is " + Integer.toUnsignedString(sentinel) + ", expected " + cb);
        if (bb.getInt(HEADER_BYTES + MAP_BYTES * n + 4) != 0) throw new SharedFormatException(chunk, "leaf.map[" + n + "].rchunk", "sentinel rchunk is not 0");
        Leaf leaf = new Leaf(bb.getLong(8));
        if (leaf.base < 0) throw new SharedFormatException(chunk, "leaf.base_chunk", Long.toUnsignedString(leaf.base) + " is negative");
        long prevR = -1;
        for (int i = 0; i < n; i++) {
            int off = bb.getInt(HEADER_BYTES + MAP_BYTES * i);
            int next = bb.getInt(HEADER_BYTES + MAP_BYTES * (i + 1));
            long r = Integer.toUnsignedLong(bb.getInt(HEADER_BYTES + MAP_BYTES * i + 4));
            String f = "leaf.map[" + i + "]";
            if (i == 0 && (off < mapEnd || off > cb)) throw new SharedFormatException(chunk, f + ".offset", Integer.toUnsignedString(off) + " overlaps the map (ends at " + mapEnd + ")");
            if (Integer.compareUnsigned(next, off) <= 0 || off < mapEnd || next > cb) throw new SharedFormatException(chunk, f + ".offset", "list [" + Integer.toUnsignedString(off) + ", " + Integer.toUnsignedString(next) + ") is empty or out of order");
            if ((next - off) % EXCEPTION_BYTES != 0 || (cb - off) % EXCEPTION_BYTES != 0) throw new SharedFormatException(chunk, f + ".offset", off + " is not on a 16-byte exception boundary");
            if (r <= prevR) throw new SharedFormatException(chunk, f + ".rchunk", r + " is not above the previous " + prevR);
            if (leaf.base + r < 0) throw new SharedFormatException(chunk, f + ".rchunk", "base + rchunk overflows");
            prevR = r;
            ArrayList<Exc> excs = new ArrayList<>((next - off) / EXCEPTION_BYTES);
            for (int p = off; p < next; p += EXCEPTION_BYTES) {
                long share = bb.getLong(p), c = bb.getLong(p + 8);
                if (share == 0) throw new SharedFormatException(chunk, f + ".exception[" + excs.size() + "].share", "empty share mask (origin chunk " + (leaf.base + r) + ")");
                excs.add(new Exc(share, c));
            }
            leaf.entries.add(new Entry(leaf.base + r, excs));
        }
        int nz = firstNonZero(b, mapEnd, n == 0 ? cb : bb.getInt(HEADER_BYTES));
        if (nz >= 0) throw new SharedFormatException(chunk, "leaf", "free space byte " + nz + " is not zero");
        long using = bb.getLong(16);
        if (using != leaf.usingMask()) throw new SharedFormatException(chunk, "leaf.using_mask", String.format("0x%x, the exceptions use 0x%x", using, leaf.usingMask()));
        return leaf;
    }

    @Override public String toString() { return "Leaf[base=" + base + " " + entries + "]"; }
}
