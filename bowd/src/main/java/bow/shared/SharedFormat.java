package bow.shared;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.util.Arrays;
import java.util.zip.CRC32C;

/**
 * The shared exception store's header and COW layout, as pure functions (no I/O). Derived from
 * the 2009 dm-exception-store-shared patch (Zumastor/ddsnap); every change from it is in
 * docs/FORMATS.md ("shared mode"). All integers little-endian.
 *
 * <pre>
 * chunk 0, 1                     header slots A and B (double-buffered; slot = sequence &amp; 1)
 * chunk 2 .. 2+nb-1              bitmap copy 0 (nb = ceil(nr_chunks / (chunk bytes * 8)))
 * chunk 2+nb .. 2+2nb-1          bitmap copy 1 (header with sequence s uses copy s &amp; 1)
 * next nr_journal_chunks chunks  journal (reserved; bow writes 0 of them, see FORMATS.md)
 * the rest                       tree leaves and nodes, and exception data, from the allocator
 * </pre>
 */
public final class SharedFormat {
    public static final int MAGIC = 0x55378008;
    /** The seed wrote version 1; bow's layout (two header slots, two bitmaps, checksums) is 2. */
    public static final int VERSION = 2;
    public static final int SECTOR = 512;
    public static final int MIN_CHUNK_SECTORS = 8;
    public static final int MAX_CHUNK_SECTORS = 2048;
    public static final int DEFAULT_CHUNK_SECTORS = 32;
    public static final int MAX_SNAPSHOTS = 64;
    /** A tree of this height with the smallest chunks addresses far more than 2^64 chunks. */
    public static final int MAX_TREE_LEVEL = 16;
    public static final int HEADER_SLOTS = 2;
    public static final int FIRST_BITMAP_CHUNK = HEADER_SLOTS;

    public static final int FIXED_BYTES = 128;
    public static final int SNAP_ENTRY_BYTES = 48;
    public static final int NAME_MAX_BYTES = 32;
    /** Bytes of the header that are checksummed; the rest of the header chunk is zero. */
    public static final int HEADER_BYTES = FIXED_BYTES + MAX_SNAPSHOTS * SNAP_ENTRY_BYTES; // 3200
    public static final int CRC_OFFSET = 76;
    public static final int FLAG_WRITABLE = 1;
    /** header.rollback_flags: an online rollback of the origin to rollback_target is in progress. */
    public static final int RB_ACTIVE = 1;
    /** header.rollback_flags: delete the target when the rollback is done (the checkpoint rollback). */
    public static final int RB_DELETE_TARGET = 2;

    private SharedFormat() {}

    /** One snapshot slot. Slots whose bit is clear in the snapmask are all zero on disk. */
    public record Snapshot(long createdMillis, boolean writable, String name) {
        public Snapshot {
            if (name == null) name = "";
        }
    }

    /**
     * The header. {@code snapshots} has 64 slots; slot i is meaningful only when bit i of
     * {@code snapmask} is set (null otherwise).
     */
    public record Header(int valid, int chunkSectors, long rootTreeChunk, long snapmask, int treeLevel,
                         int journalChunks, long sequence, long nrChunks, long originBytes, long freeChunks,
                         long deletingMask, long deleteResume, int rollbackTarget, boolean rollbackDelete,
                         long rollbackResume, Snapshot[] snapshots) {
        /** A header with no rollback in progress. */
        public Header(int valid, int chunkSectors, long rootTreeChunk, long snapmask, int treeLevel, int journalChunks,
                      long sequence, long nrChunks, long originBytes, long freeChunks, long deletingMask, long deleteResume,
                      Snapshot[] snapshots) {
            this(valid, chunkSectors, rootTreeChunk, snapmask, treeLevel, journalChunks, sequence, nrChunks, originBytes, freeChunks,
                    deletingMask, deleteResume, -1, false, 0, snapshots);
        }
        /** A header with no deletion in progress. */
        public Header(int valid, int chunkSectors, long rootTreeChunk, long snapmask, int treeLevel, int journalChunks,
                      long sequence, long nrChunks, long originBytes, long freeChunks, Snapshot[] snapshots) {
            this(valid, chunkSectors, rootTreeChunk, snapmask, treeLevel, journalChunks, sequence, nrChunks, originBytes, freeChunks, 0, -1, snapshots);
        }
        public Header {
            if (snapshots == null) snapshots = new Snapshot[MAX_SNAPSHOTS];
            if (snapshots.length != MAX_SNAPSHOTS) throw new IllegalArgumentException("64 snapshot slots, got " + snapshots.length);
            snapshots = snapshots.clone();
        }
        public Snapshot snapshot(int id) { return snapshots[id]; }
        /** A rollback of the origin to snapshot {@link #rollbackTarget} is recorded (resumed at open). */
        public boolean rollingBack() { return rollbackTarget >= 0; }
        public int chunkBytes() { return chunkSectors * SECTOR; }
        public int slot() { return (int) (sequence & 1); }
        public Layout layout() { return SharedFormat.layout(nrChunks, chunkSectors, journalChunks); }
        @Override public boolean equals(Object o) {
            return o instanceof Header h && valid == h.valid && chunkSectors == h.chunkSectors
                    && rootTreeChunk == h.rootTreeChunk && snapmask == h.snapmask && treeLevel == h.treeLevel
                    && journalChunks == h.journalChunks && sequence == h.sequence && nrChunks == h.nrChunks
                    && originBytes == h.originBytes && freeChunks == h.freeChunks && deletingMask == h.deletingMask
                    && deleteResume == h.deleteResume && Arrays.equals(snapshots, h.snapshots);
        }
        @Override public int hashCode() { return Long.hashCode(sequence) * 31 + Long.hashCode(rootTreeChunk); }
        @Override public String toString() {
            return "Header[seq=" + sequence + " root=" + rootTreeChunk + " level=" + treeLevel
                    + " snapmask=" + Long.toHexString(snapmask) + " free=" + freeChunks + "/" + nrChunks
                    + (rollbackTarget >= 0 ? " rollback=" + rollbackTarget + (rollbackDelete ? "+delete" : "") + "@" + rollbackResume : "") + "]";
        }
    }

    /** Where everything is on a COW of {@code nrChunks} chunks. */
    public record Layout(long nrChunks, int chunkBytes, int bitmapChunks, int journalChunks) {
        public long bitmapChunk(int copy, int index) {
            if (copy < 0 || copy > 1 || index < 0 || index >= bitmapChunks) throw new IllegalArgumentException("bitmap copy " + copy + " index " + index);
            return FIRST_BITMAP_CHUNK + (long) copy * bitmapChunks + index;
        }
        public long firstJournalChunk() { return FIRST_BITMAP_CHUNK + 2L * bitmapChunks; }
        /** The first chunk the allocator may hand out: everything below is header, bitmaps and journal. */
        public long firstDataChunk() { return firstJournalChunk() + journalChunks; }
        public long bitsPerBitmapChunk() { return chunkBytes * 8L; }
    }

    public static Layout layout(long nrChunks, int chunkSectors, int journalChunks) {
        String err = chunkSizeError(chunkSectors);
        if (err != null) throw new IllegalArgumentException("chunk size " + chunkSectors + " sectors: " + err);
        if (journalChunks < 0) throw new IllegalArgumentException("journal chunks " + journalChunks);
        long bits = (long) chunkSectors * SECTOR * 8;
        long nb = (nrChunks + bits - 1) / bits;
        if (nb > Integer.MAX_VALUE) throw new IllegalArgumentException("COW of " + nrChunks + " chunks is too large");
        return new Layout(nrChunks, chunkSectors * SECTOR, (int) nb, journalChunks);
    }

    /**
     * Smallest COW, in chunks, that can be formatted: header slots, both bitmaps, the journal,
     * one leaf and one root node.
     */
    public static long minChunks(int chunkSectors, int journalChunks) {
        for (long n = 1; ; n++) {
            if (n >= layout(n, chunkSectors, journalChunks).firstDataChunk() + 2) return n;
        }
    }

    /** Null when usable: a power of two, 8..2048 sectors (4 KiB..1 MiB). */
    public static String chunkSizeError(int chunkSectors) {
        if (chunkSectors <= 0 || Integer.bitCount(chunkSectors) != 1) return "not a power of 2";
        if (chunkSectors < MIN_CHUNK_SECTORS) return "below the minimum of " + MIN_CHUNK_SECTORS + " sectors";
        if (chunkSectors > MAX_CHUNK_SECTORS) return "above the maximum of " + MAX_CHUNK_SECTORS + " sectors";
        return null;
    }

    /**
     * Null when {@code name} can be a snapshot name: 1..32 bytes of [A-Za-z0-9._-], not all digits
     * (so that "ID|NAME" arguments are never ambiguous) and not starting with '-'.
     */
    public static String nameError(String name) {
        if (name == null || name.isEmpty()) return "empty";
        if (name.length() > NAME_MAX_BYTES) return "longer than " + NAME_MAX_BYTES + " bytes";
        boolean allDigits = true;
        for (int i = 0; i < name.length(); i++) {
            char c = name.charAt(i);
            boolean ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' || c == '-';
            if (!ok) return "character '" + c + "' is not one of A-Z a-z 0-9 . _ -";
            if (c < '0' || c > '9') allDigits = false;
        }
        if (allDigits) return "all digits (would read as a snapshot ID)";
        if (name.charAt(0) == '-') return "starts with '-'";
        return null;
    }

    /** The header as written to its slot: a whole chunk, zero after {@link #HEADER_BYTES}. */
    public static byte[] encodeHeader(Header h) {
        int cb = h.chunkBytes();
        if (cb < HEADER_BYTES) throw new IllegalArgumentException("chunk of " + cb + " bytes cannot hold the header");
        byte[] b = new byte[cb];
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        bb.putInt(0, MAGIC).putInt(4, h.valid()).putInt(8, VERSION).putInt(12, h.chunkSectors());
        bb.putLong(16, h.rootTreeChunk()).putLong(24, h.snapmask()).putInt(32, h.treeLevel()).putInt(36, h.journalChunks());
        bb.putLong(40, h.sequence()).putLong(48, h.nrChunks()).putLong(56, h.originBytes()).putLong(64, h.freeChunks());
        bb.putInt(72, h.layout().bitmapChunks());
        if ((h.deletingMask() & h.snapmask()) != 0) throw new IllegalArgumentException("snapshots both live and being deleted");
        if ((h.deletingMask() != 0) != (h.deleteResume() >= 0)) throw new IllegalArgumentException("deleting mask and resume key disagree");
        bb.putLong(80, h.deletingMask()).putLong(88, h.deleteResume());
        if (h.rollbackTarget() >= 0) {
            // all zero when no rollback is recorded: such a header is byte-identical to one written before the field existed
            if (h.rollbackTarget() >= MAX_SNAPSHOTS || (h.snapmask() >>> h.rollbackTarget() & 1) == 0) {
                throw new IllegalArgumentException("rollback target " + h.rollbackTarget() + " is not a live snapshot");
            }
            if (h.rollbackResume() < 0) throw new IllegalArgumentException("rollback resume " + h.rollbackResume());
            bb.putInt(96, RB_ACTIVE | (h.rollbackDelete() ? RB_DELETE_TARGET : 0)).putInt(100, h.rollbackTarget()).putLong(104, h.rollbackResume());
        } else if (h.rollbackDelete() || h.rollbackResume() != 0) {
            throw new IllegalArgumentException("rollback fields without a rollback target");
        }
        for (int i = 0; i < MAX_SNAPSHOTS; i++) {
            Snapshot s = h.snapshots()[i];
            boolean live = (h.snapmask() >>> i & 1) != 0;
            if (live != (s != null)) throw new IllegalArgumentException("snapshot slot " + i + (live ? " is live but empty" : " is not live but set"));
            if (s == null) continue;
            int o = FIXED_BYTES + i * SNAP_ENTRY_BYTES;
            byte[] name = s.name().getBytes(StandardCharsets.UTF_8);
            if (!s.name().isEmpty() && nameError(s.name()) != null) throw new IllegalArgumentException("snapshot " + i + " name: " + nameError(s.name()));
            bb.putLong(o, s.createdMillis()).putInt(o + 8, s.writable() ? FLAG_WRITABLE : 0).putShort(o + 12, (short) name.length);
            System.arraycopy(name, 0, b, o + 16, name.length);
        }
        bb.putInt(CRC_OFFSET, crc(b));
        return b;
    }

    /** CRC-32C of header bytes [0, HEADER_BYTES) with the CRC field taken as zero. */
    static int crc(byte[] b) {
        CRC32C c = new CRC32C();
        c.update(b, 0, CRC_OFFSET);
        c.update(new byte[4]);
        c.update(b, CRC_OFFSET + 4, HEADER_BYTES - CRC_OFFSET - 4);
        return (int) c.getValue();
    }

    /** True when the slot holds nothing at all (a blank COW): all of its first HEADER_BYTES are zero. */
    public static boolean isBlank(byte[] slot) {
        for (int i = 0; i < Math.min(slot.length, HEADER_BYTES); i++) if (slot[i] != 0) return false;
        return true;
    }

    /**
     * Decodes and checks the header read from {@code slotChunk} (0 or 1). Throws
     * {@link SharedFormatException} naming the chunk and field for anything corrupt; the caller
     * that reads both slots keeps the valid one with the higher sequence ({@link #pick}).
     */
    public static Header decodeHeader(byte[] b, long slotChunk) {
        if (b.length < HEADER_BYTES) throw new SharedFormatException(slotChunk, "header", "needs " + HEADER_BYTES + " bytes, got " + b.length);
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        int magic = bb.getInt(0);
        if (magic != MAGIC) throw new SharedFormatException(slotChunk, "header.magic", String.format("0x%08x, expected 0x%08x", magic, MAGIC));
        int stored = bb.getInt(CRC_OFFSET), actual = crc(b);
        if (stored != actual) throw new SharedFormatException(slotChunk, "header.crc", String.format("stored 0x%08x, computed 0x%08x (torn or corrupt header)", stored, actual));
        int version = bb.getInt(8);
        if (version != VERSION) throw new SharedFormatException(slotChunk, "header.version", version + ", only " + VERSION + " is supported");
        int chunkSectors = bb.getInt(12);
        String cerr = chunkSizeError(chunkSectors);
        if (cerr != null) throw new SharedFormatException(slotChunk, "header.chunk_size", Integer.toUnsignedString(chunkSectors) + " sectors: " + cerr);
        if (b.length != chunkSectors * SECTOR && b.length != HEADER_BYTES) {
            throw new SharedFormatException(slotChunk, "header.chunk_size", chunkSectors + " sectors but the slot read was " + b.length + " bytes");
        }
        long seq = bb.getLong(40);
        if (seq < 0) throw new SharedFormatException(slotChunk, "header.sequence", Long.toUnsignedString(seq) + " is negative");
        if ((seq & 1) != slotChunk) throw new SharedFormatException(slotChunk, "header.sequence", seq + " belongs in slot " + (seq & 1));
        long nrChunks = bb.getLong(48);
        int journal = bb.getInt(36);
        if (journal < 0) throw new SharedFormatException(slotChunk, "header.nr_journal_chunks", Integer.toUnsignedString(journal));
        if (nrChunks <= 0 || nrChunks < minChunks(chunkSectors, journal)) {
            throw new SharedFormatException(slotChunk, "header.nr_chunks", nrChunks + " is below the minimum of " + minChunks(chunkSectors, journal));
        }
        Layout lay = layout(nrChunks, chunkSectors, journal);
        int nb = bb.getInt(72);
        if (nb != lay.bitmapChunks()) throw new SharedFormatException(slotChunk, "header.nr_bitmap_chunks", nb + ", expected " + lay.bitmapChunks() + " for " + nrChunks + " chunks");
        long root = bb.getLong(16);
        if (root < lay.firstDataChunk() || root >= nrChunks) throw new SharedFormatException(slotChunk, "header.root_tree_chunk", root + " is outside the data area [" + lay.firstDataChunk() + ", " + nrChunks + ")");
        int level = bb.getInt(32);
        if (level < 1 || level > MAX_TREE_LEVEL) throw new SharedFormatException(slotChunk, "header.tree_level", level + " is outside 1.." + MAX_TREE_LEVEL);
        long origin = bb.getLong(56);
        if (origin < 0) throw new SharedFormatException(slotChunk, "header.origin_bytes", Long.toUnsignedString(origin));
        long free = bb.getLong(64);
        if (free < 0 || free > nrChunks - lay.firstDataChunk() - 2) throw new SharedFormatException(slotChunk, "header.free_chunks", free + " of " + nrChunks);
        int rbFlags = bb.getInt(96), rbTarget = -1;
        long rbResume = 0;
        if ((rbFlags & ~(RB_ACTIVE | RB_DELETE_TARGET)) != 0) throw new SharedFormatException(slotChunk, "header.rollback_flags", String.format("unknown bits 0x%x", rbFlags & ~(RB_ACTIVE | RB_DELETE_TARGET)));
        if ((rbFlags & RB_ACTIVE) != 0) {
            int t = bb.getInt(100);
            if (t < 0 || t >= MAX_SNAPSHOTS) throw new SharedFormatException(slotChunk, "header.rollback_target", Integer.toUnsignedString(t) + " is outside 0.." + (MAX_SNAPSHOTS - 1));
            rbResume = bb.getLong(104);
            if (rbResume < 0) throw new SharedFormatException(slotChunk, "header.rollback_resume", Long.toUnsignedString(rbResume) + " is negative");
            rbTarget = t;       // whether it is a live snapshot is the check's and the engine's to judge
        } else {
            if (rbFlags != 0) throw new SharedFormatException(slotChunk, "header.rollback_flags", String.format("0x%x without the in-progress bit", rbFlags));
            for (int i = 100; i < 112; i++) if (b[i] != 0) throw new SharedFormatException(slotChunk, "header.rollback_target", "byte " + i + " is not zero with no rollback in progress");
        }
        for (int i = 112; i < FIXED_BYTES; i++) if (b[i] != 0) throw new SharedFormatException(slotChunk, "header.reserved", "byte " + i + " is not zero");
        long snapmask = bb.getLong(24);
        long deletingMask = bb.getLong(80), deleteResume = bb.getLong(88);
        if ((deletingMask & snapmask) != 0) throw new SharedFormatException(slotChunk, "header.deleting_mask", String.format("0x%x names live snapshots (0x%x)", deletingMask, deletingMask & snapmask));
        if ((deletingMask != 0) != (deleteResume >= 0)) {
            throw new SharedFormatException(slotChunk, "header.delete_resume", Long.toUnsignedString(deleteResume) + " with deleting mask 0x" + Long.toHexString(deletingMask) + " (a resume key exactly when a deletion is pending; none is all ones)");
        }
        Snapshot[] snaps = new Snapshot[MAX_SNAPSHOTS];
        for (int i = 0; i < MAX_SNAPSHOTS; i++) {
            int o = FIXED_BYTES + i * SNAP_ENTRY_BYTES;
            String f = "header.snapshot[" + i + "]";
            if ((snapmask >>> i & 1) == 0) {
                for (int k = o; k < o + SNAP_ENTRY_BYTES; k++) if (b[k] != 0) throw new SharedFormatException(slotChunk, f, "slot of a deleted snapshot is not zero (byte " + (k - o) + ")");
                continue;
            }
            int flags = bb.getInt(o + 8);
            if ((flags & ~FLAG_WRITABLE) != 0) throw new SharedFormatException(slotChunk, f + ".flags", String.format("unknown bits 0x%x", flags & ~FLAG_WRITABLE));
            int len = Short.toUnsignedInt(bb.getShort(o + 12));
            if (len > NAME_MAX_BYTES) throw new SharedFormatException(slotChunk, f + ".name_len", len + " > " + NAME_MAX_BYTES);
            if (bb.getShort(o + 14) != 0) throw new SharedFormatException(slotChunk, f + ".reserved", "not zero");
            for (int k = o + 16 + len; k < o + SNAP_ENTRY_BYTES; k++) if (b[k] != 0) throw new SharedFormatException(slotChunk, f + ".name", "padding after the name is not zero");
            String name = new String(b, o + 16, len, StandardCharsets.US_ASCII);
            if (len > 0 && nameError(name) != null) throw new SharedFormatException(slotChunk, f + ".name", "\"" + name.replaceAll("[^ -~]", "?") + "\": " + nameError(name));
            snaps[i] = new Snapshot(bb.getLong(o), (flags & FLAG_WRITABLE) != 0, name);
        }
        for (int i = 0; i < MAX_SNAPSHOTS; i++) {
            for (int j = 0; j < i; j++) {
                if (snaps[i] != null && snaps[j] != null && !snaps[i].name().isEmpty() && snaps[i].name().equals(snaps[j].name())) {
                    throw new SharedFormatException(slotChunk, "header.snapshot[" + i + "].name", "\"" + snaps[i].name() + "\" is also snapshot " + j + "'s name");
                }
            }
        }
        for (int i = HEADER_BYTES; i < b.length; i++) if (b[i] != 0) throw new SharedFormatException(slotChunk, "header", "byte " + i + " after the header is not zero");
        return new Header(bb.getInt(4), chunkSectors, root, snapmask, level, journal, seq, nrChunks, origin, free, deletingMask, deleteResume,
                rbTarget, (rbFlags & RB_DELETE_TARGET) != 0, rbResume, snaps);
    }

    /** Result of reading both slots: the header to use (null for a blank COW) and why each slot was or was not. */
    public record Picked(Header header, String slot0Problem, String slot1Problem) {}

    /**
     * Chooses between the two header slots: the valid one with the higher sequence. Both blank is
     * a blank COW (header null). One blank, one valid: the valid one (a crash during the first
     * commits). Neither valid but not both blank: corrupt, thrown with both reasons. Both valid
     * with different chunk sizes or COW sizes: corrupt.
     */
    public static Picked pick(byte[] slot0, byte[] slot1) {
        if (isBlank(slot0) && isBlank(slot1)) return new Picked(null, "blank", "blank");
        Header h0 = null, h1 = null;
        String p0 = null, p1 = null;
        try { h0 = decodeHeader(slot0, 0); } catch (SharedFormatException e) { p0 = isBlank(slot0) ? "blank" : e.getMessage(); }
        try { h1 = decodeHeader(slot1, 1); } catch (SharedFormatException e) { p1 = isBlank(slot1) ? "blank" : e.getMessage(); }
        if (h0 == null && h1 == null) throw new SharedFormatException(0, "header", "no valid header slot: slot 0: " + p0 + "; slot 1: " + p1);
        if (h0 != null && h1 != null) {
            if (h0.chunkSectors() != h1.chunkSectors() || h0.nrChunks() != h1.nrChunks() || h0.journalChunks() != h1.journalChunks()) {
                throw new SharedFormatException(0, "header", "slots disagree on the geometry: " + h0 + " vs " + h1);
            }
            return new Picked(h0.sequence() > h1.sequence() ? h0 : h1, null, null);
        }
        return new Picked(h0 != null ? h0 : h1, p0, p1);
    }
}
