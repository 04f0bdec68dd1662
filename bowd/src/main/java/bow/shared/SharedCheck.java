package bow.shared;

import bow.blockdev.BlockDevice;
import bow.shared.Leaf.Entry;
import bow.shared.Leaf.Exc;
import bow.shared.SharedFormat.Header;
import bow.shared.SharedFormat.Layout;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.ArrayList;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * A read-only fsck of a shared-mode COW ({@code bowctl shared check}), like {@code thin_check}.
 * Reads the header slots, the bitmap copy the header uses and every tree block; never writes.
 *
 * <p>It applies the rules of {@link SharedTree#check} (block magics, checksums and self
 * numbers, key order and bounds, every leaf at depth {@code tree_level}, share masks naming only
 * live or being-deleted snapshots and no snapshot twice per chunk, no chunk used twice, the
 * bitmap equal to the reserved chunks plus the reachable ones) but in a streaming walk:
 * {@code SharedTree.check} keeps a map entry with a description per reachable chunk, which for a
 * full 1 TiB COW is tens of GiB; here memory is two bits per COW chunk (tree blocks, data chunks)
 * plus the bitmap's one and one decoded block per tree level. What refers to a chunk named in a
 * problem (used twice, marked free) is found by a second walk that only looks for those chunks.
 *
 * <p>The result is meant for a COW that no daemon is writing: a store being committed to while
 * it is read may show a mix of two commits.
 */
public final class SharedCheck {
    /** Problems kept in a result by default (all are counted). */
    public static final int DEFAULT_MAX_PROBLEMS = 1000;

    private SharedCheck() {}

    /** One thing wrong, with the COW chunk it is in (-1 when it is not one chunk's). */
    public record Problem(long chunk, String problem) {
        @Override public String toString() { return chunk < 0 ? problem : "chunk " + chunk + ": " + problem; }
    }

    public enum SlotState { VALID, BLANK, INVALID }

    /**
     * One header slot as read: {@code chunkSectors} is the chunk size it was read at (slot 1's
     * place depends on it; 0 when not known), {@code header} when valid, {@code problem} when not.
     */
    public record Slot(int slot, int chunkSectors, SlotState state, Header header, String problem, boolean inUse) {
        public long byteOffset() { return (long) slot * chunkSectors * SharedFormat.SECTOR; }
    }

    /**
     * Both header slots and the header in use: null when the COW is blank, or when no slot is
     * valid (then {@code problem} says why for both).
     */
    public record HeaderRead(Header header, List<Slot> slots, String problem) {
        public boolean blank() { return header == null && problem == null; }
    }

    /** What the tree and the bitmap hold. {@code metadataChunks}: headers, both bitmaps, journal. */
    public record Counts(long nrChunks, long metadataChunks, int nodes, int leaves, long exceptions, long dataChunks,
                         long usedChunks, long freeChunks) {
        public long treeChunks() { return nodes + leaves; }
    }

    /**
     * The check's verdict. {@code header} null: blank COW (no problems) or no valid header slot
     * (a problem). {@code problems} holds the first ones found; {@code problemCount} counts all.
     * {@code notes} are observations that are not corruption (an older or torn slot not in use).
     */
    public record Result(Header header, List<Slot> slots, Counts counts, long problemCount, List<Problem> problems, List<String> notes) {
        public boolean blank() { return header == null && problemCount == 0; }
        public boolean clean() { return header != null && problemCount == 0; }
    }

    // ------------------------------------------------------------------ reading

    /** Whole chunks of the COW device; {@link #write} throws: the check and the dump never write. */
    public static final class ReadOnlyChunks implements ChunkStore {
        private final BlockDevice dev;
        private final int chunkBytes;

        public ReadOnlyChunks(BlockDevice dev, int chunkBytes) {
            this.dev = dev;
            this.chunkBytes = chunkBytes;
        }

        /** True when the whole chunk lies on the device. */
        public boolean onDevice(long chunk) {
            return chunk >= 0 && chunk < dev.size() / chunkBytes;
        }

        @Override public byte[] read(long chunk) {
            byte[] b = new byte[chunkBytes];
            try {
                dev.read(chunk * chunkBytes, ByteBuffer.wrap(b));
            } catch (IOException e) {
                throw new UncheckedIOException(e);
            }
            return b;
        }

        @Override public void write(long chunk, byte[] data) {
            throw new UnsupportedOperationException("read-only: the shared store check does not write (chunk " + chunk + ")");
        }
    }

    private static byte[] readBytes(BlockDevice dev, long offset, int n) throws IOException {
        byte[] b = new byte[n];
        dev.read(offset, ByteBuffer.wrap(b));
        return b;
    }

    /**
     * Reads and picks the header ({@link SharedFormat#pick}). Slot 1 sits one chunk in, so its
     * place depends on the chunk size: slot 0's when slot 0 is valid, else each chunk size from 8
     * to 2048 sectors is tried (the one in slot 0's chunk_size field first). Throws only for I/O
     * errors and a device too small to hold one header.
     */
    public static HeaderRead readHeader(BlockDevice cow) throws IOException {
        int minChunk = SharedFormat.MIN_CHUNK_SECTORS * SharedFormat.SECTOR;
        if (cow.size() < minChunk) throw new IOException("COW of " + cow.size() + " bytes is too small to hold a shared store (one chunk is at least " + minChunk + " bytes)");
        byte[] head = readBytes(cow, 0, SharedFormat.HEADER_BYTES);
        int field = ByteBuffer.wrap(head).order(ByteOrder.LITTLE_ENDIAN).getInt(12);
        boolean fieldOk = SharedFormat.chunkSizeError(field) == null && (long) field * SharedFormat.SECTOR <= cow.size();
        int s0Sectors = fieldOk ? field : SharedFormat.MIN_CHUNK_SECTORS;
        byte[] s0 = readBytes(cow, 0, s0Sectors * SharedFormat.SECTOR);
        Header h0 = null;
        String p0 = null;
        try { h0 = SharedFormat.decodeHeader(s0, 0); } catch (SharedFormatException e) { p0 = e.getMessage(); }
        boolean blank0 = SharedFormat.isBlank(s0);

        List<Integer> sizes = new ArrayList<>();
        if (h0 != null) sizes.add(h0.chunkSectors());
        else {
            if (fieldOk) sizes.add(field);
            for (int cs = SharedFormat.MIN_CHUNK_SECTORS; cs <= SharedFormat.MAX_CHUNK_SECTORS; cs <<= 1) if (!sizes.contains(cs)) sizes.add(cs);
        }
        byte[] s1 = null, firstTried = null;
        int s1Sectors = 0, firstSectors = 0;
        Header h1 = null;
        String p1 = null, firstProblem = null;
        boolean allBlank1 = true;
        for (int cs : sizes) {
            long cb = (long) cs * SharedFormat.SECTOR;
            if (2 * cb > cow.size()) continue;
            byte[] b = readBytes(cow, cb, (int) cb);
            if (!SharedFormat.isBlank(b)) allBlank1 = false;
            try {
                h1 = SharedFormat.decodeHeader(b, 1);
                s1 = b;
                s1Sectors = cs;
                break;
            } catch (SharedFormatException e) {
                if (firstTried == null) { firstTried = b; firstSectors = cs; firstProblem = SharedFormat.isBlank(b) ? "blank" : e.getMessage(); }
            }
        }
        if (h1 == null) {
            s1 = firstTried != null ? firstTried : new byte[SharedFormat.HEADER_BYTES];
            s1Sectors = firstSectors;
            p1 = firstTried == null ? "the COW is too small to hold slot 1" : firstProblem;
            if (h0 == null && sizes.size() > 1 && firstTried != null && !"blank".equals(firstProblem)) {
                p1 = "no valid header at any chunk size from " + SharedFormat.MIN_CHUNK_SECTORS + " to " + SharedFormat.MAX_CHUNK_SECTORS
                        + " sectors (at " + firstSectors + ": " + firstProblem + ")";
            }
        }
        if (blank0 && h1 == null) {
            // as the engine decides at open: nothing was ever committed (the first header is sequence 0 in slot 0), so
            // whatever slot 1 holds is old content of the device, which the first snapshot formats over
            Slot one = allBlank1 ? new Slot(1, 0, SlotState.BLANK, null, "blank", false) : new Slot(1, s1Sectors, SlotState.INVALID, null, p1, false);
            return new HeaderRead(null, List.of(new Slot(0, 0, SlotState.BLANK, null, "blank", false), one), null);
        }
        if (blank0) p0 = "blank";
        if (h1 == null && allBlank1) p1 = "blank";
        Header use = null;
        String problem = null;
        try {
            use = SharedFormat.pick(s0, s1).header();
        } catch (SharedFormatException e) {
            problem = h0 == null && h1 == null ? "no valid header slot: slot 0: " + p0 + "; slot 1: " + p1 : e.getMessage();
        }
        List<Slot> slots = List.of(
                new Slot(0, h0 != null ? h0.chunkSectors() : fieldOk ? field : 0, h0 != null ? SlotState.VALID : blank0 ? SlotState.BLANK : SlotState.INVALID,
                        h0, p0, use != null && h0 != null && use.sequence() == h0.sequence()),
                new Slot(1, s1Sectors, h1 != null ? SlotState.VALID : "blank".equals(p1) ? SlotState.BLANK : SlotState.INVALID,
                        h1, p1, use != null && h1 != null && use.sequence() == h1.sequence()));
        return new HeaderRead(use, slots, problem);
    }

    /** Reads the bitmap copy the header uses: its in-use bits as little-endian words (ext2 bit order). */
    static long[] readBitmap(BlockDevice cow, Header h, ReadOnlyChunks chunks) {
        Layout l = h.layout();
        int wpc = l.chunkBytes() / 8;
        long[] words = new long[Math.toIntExact((long) l.bitmapChunks() * wpc)];
        for (int i = 0; i < l.bitmapChunks(); i++) {
            long c = l.bitmapChunk(h.slot(), i);
            if (!chunks.onDevice(c)) continue;     // reported with the COW's size
            ByteBuffer bb = ByteBuffer.wrap(chunks.read(c)).order(ByteOrder.LITTLE_ENDIAN);
            for (int w = 0; w < wpc; w++) words[i * wpc + w] = bb.getLong(w * 8);
        }
        return words;
    }

    // ------------------------------------------------------------------ the check

    public static Result run(BlockDevice cow) throws IOException { return run(cow, DEFAULT_MAX_PROBLEMS); }

    public static Result run(BlockDevice cow, int maxProblems) throws IOException {
        HeaderRead hr = readHeader(cow);
        Problems out = new Problems(maxProblems);
        List<String> notes = new ArrayList<>();
        Header h = hr.header();
        if (h == null) {
            if (hr.problem() != null) out.add(0, hr.problem());
            else if (hr.slots().get(1).state() == SlotState.INVALID) notes.add("slot 0 is blank; slot 1 holds no header (old content of the device?): " + hr.slots().get(1).problem());
            return new Result(null, hr.slots(), null, out.count, out.list, notes);
        }
        for (Slot s : hr.slots()) {
            if (s.inUse()) continue;
            if (s.state() == SlotState.VALID) notes.add("slot " + s.slot() + " holds the previous commit (sequence " + s.header().sequence() + ")");
            else if (s.state() == SlotState.INVALID) notes.add("slot " + s.slot() + " is not valid (a commit torn by a crash leaves that; the other slot is used): " + s.problem());
        }
        if (h.valid() != 1) out.add(h.slot(), "header.valid is " + h.valid() + ": the store was invalidated");
        if (h.rollingBack()) {
            if (h.snapshot(h.rollbackTarget()) == null) {
                out.add(h.slot(), "header.rollback_target is snapshot " + h.rollbackTarget() + ", which is not a live snapshot");
            } else {
                notes.add("a rollback of the origin to snapshot " + h.rollbackTarget() + " is in progress (resumes at origin chunk "
                        + h.rollbackResume() + (h.rollbackDelete() ? "; the snapshot is deleted when it is done" : "") + ")");
            }
        }
        Layout l = h.layout();
        int cb = l.chunkBytes();
        long onDevice = cow.size() / cb;
        if (onDevice < h.nrChunks()) out.add(onDevice, "the COW device holds " + onDevice + " chunks but the store has " + h.nrChunks() + " (shrunk?)");
        try {
            return walk(cow, h, hr, out, notes);
        } catch (UncheckedIOException e) {
            throw e.getCause();
        }
    }

    private static Result walk(BlockDevice cow, Header h, HeaderRead hr, Problems out, List<String> notes) {
        Layout l = h.layout();
        ReadOnlyChunks chunks = new ReadOnlyChunks(cow, l.chunkBytes());
        long[] bitmap = readBitmap(cow, h, chunks);
        Walker w = new Walker(h, chunks, out);
        w.block(h.rootTreeChunk(), 0, 0, Long.MAX_VALUE, -1);

        long first = l.firstDataChunk(), n = h.nrChunks();
        long used = 0, leaked = 0;
        Map<Long, List<String>> wanted = new LinkedHashMap<>();
        for (long c : w.twice) wanted.put(c, new ArrayList<>());
        for (long c = 0; c < n; c++) {
            boolean set = bit(bitmap, c), reach = w.reachable(c);
            if (set) used++;
            if (c < first) {
                if (!set) out.add(l.bitmapChunk(h.slot(), (int) (c / l.bitsPerBitmapChunk())), "reserved metadata chunk " + c + " is marked free in bitmap copy " + h.slot());
                continue;     // the walk refuses tree and data references below the data area
            }
            if (set && !reach) {
                leaked++;
                out.add(c, "marked in use in bitmap copy " + h.slot() + " but nothing refers to it (leaked)");
            } else if (!set && reach) {
                if (out.room()) wanted.putIfAbsent(c, new ArrayList<>());
                out.add(c, (w.tree(c) ? "tree block" : "exception data") + " reachable from the tree but marked free in bitmap copy " + h.slot());
            }
        }
        for (long word = n >>> 6; word < bitmap.length; word++) {
            long past = bitmap[(int) word] & (word == (n >>> 6) ? -1L << (n & 63) : -1L);
            if (past != 0) {
                long c = (word << 6) + Long.numberOfTrailingZeros(past);
                out.add(l.bitmapChunk(h.slot(), (int) (c / l.bitsPerBitmapChunk())),
                        "bitmap copy " + h.slot() + " marks chunk " + c + ", past the end of the store (" + n + " chunks), in use");
                break;
            }
        }
        if (!wanted.isEmpty()) {
            // only now is it known which chunks need their referrers named: look for just those
            Walker again = new Walker(h, chunks, new Problems(0));
            again.wanted = wanted;
            again.block(h.rootTreeChunk(), 0, 0, Long.MAX_VALUE, -1);
            for (Map.Entry<Long, List<String>> e : wanted.entrySet()) {
                List<String> refs = e.getValue();
                if (w.twice.contains(e.getKey())) out.add(e.getKey(), "used " + refs.size() + " times: " + String.join("; ", refs));
                else out.addDetail(e.getKey(), "referred to by " + String.join("; ", refs));
            }
        }
        if (leaked > 0 && w.unreadable > 0) {
            notes.add(leaked + " leaked chunks may belong to the " + w.unreadable + " tree block(s) that could not be read");
        }
        long free = n - used;
        if (h.freeChunks() != free) {
            notes.add("header.free_chunks is " + h.freeChunks() + ", bitmap copy " + h.slot() + " has " + free + " free");
        }
        Counts counts = new Counts(n, first, w.nodes, w.leaves, w.exceptions, w.dataChunks, used, free);
        return new Result(h, hr.slots(), counts, out.count, out.list, notes);
    }

    private static boolean bit(long[] words, long c) {
        return (words[(int) (c >>> 6)] >>> (c & 63) & 1) != 0;
    }

    /** The first {@code max} problems, and how many there were. */
    private static final class Problems {
        final int max;
        final List<Problem> list = new ArrayList<>();
        long count;
        Problems(int max) { this.max = max; }
        boolean room() { return list.size() < max; }
        void add(long chunk, String p) {
            count++;
            if (list.size() < max) list.add(new Problem(chunk, p));
        }
        /** Appends to the problem already listed for {@code chunk}, if it is listed. */
        void addDetail(long chunk, String detail) {
            for (int i = 0; i < list.size(); i++) {
                Problem p = list.get(i);
                if (p.chunk() == chunk) { list.set(i, new Problem(chunk, p.problem() + " (" + detail + ")")); return; }
            }
        }
    }

    /**
     * Depth-first walk in key order. Reachability is two bitsets over the COW; a block reached a
     * second time is not walked again (so a cycle cannot loop). With {@link #wanted} set it only
     * collects who refers to those chunks.
     */
    private static final class Walker {
        final Header h;
        final ReadOnlyChunks chunks;
        final Problems out;
        final long first, n, allowed;
        final int level, fanout;
        final long[] treeBits, dataBits;
        final java.util.LinkedHashSet<Long> twice = new java.util.LinkedHashSet<>();
        Map<Long, List<String>> wanted;
        int nodes, leaves, unreadable;
        long exceptions, dataChunks;

        Walker(Header h, ReadOnlyChunks chunks, Problems out) {
            this.h = h;
            this.chunks = chunks;
            this.out = out;
            Layout l = h.layout();
            first = l.firstDataChunk();
            n = h.nrChunks();
            level = h.treeLevel();
            fanout = Node.maxEntries(l.chunkBytes());
            allowed = h.snapmask() | h.deletingMask();
            int words = Math.toIntExact((n + 63) >>> 6);
            treeBits = new long[words];
            dataBits = new long[words];
        }

        boolean tree(long c) { return bit(treeBits, c); }
        boolean reachable(long c) { return bit(treeBits, c) || bit(dataBits, c); }

        /**
         * Marks {@code c} referred to as a tree block or as data; a chunk referred to before (in
         * either role) is recorded as used twice. False when it already had this role: a tree
         * block is then not walked again (so a cycle cannot loop), but one first met as data is.
         */
        private boolean mark(long c, boolean isTree, String what) {
            if (wanted != null) {
                List<String> refs = wanted.get(c);
                if (refs != null) refs.add(what);
            }
            if (reachable(c)) twice.add(c);
            long[] bits = isTree ? treeBits : dataBits;
            boolean had = bit(bits, c);
            bits[(int) (c >>> 6)] |= 1L << (c & 63);
            return !had;
        }

        private static String range(long lo, long hi) { return "[" + lo + ", " + (hi == Long.MAX_VALUE ? "end" : String.valueOf(hi)) + ")"; }

        void block(long c, int depth, long lo, long hi, long parent) {
            boolean isLeaf = depth == level;
            String what = (isLeaf ? "leaf" : "node") + " at depth " + depth + " for origin chunks " + range(lo, hi)
                    + (parent < 0 ? " (the root)" : " (child of node " + parent + ")");
            if (c < first || c >= n) { out.add(c, what + ": chunk " + c + " is outside the data area [" + first + ", " + n + ")"); return; }
            if (!mark(c, true, what)) return;
            if (!chunks.onDevice(c)) { unreadable++; out.add(c, what + ": past the end of the COW device"); return; }
            byte[] b = chunks.read(c);
            if (!isLeaf) {
                Node nd;
                try { nd = Node.decode(b, c); } catch (SharedFormatException e) { unreadable++; out.add(c, e.field() + ": " + detail(e) + " (" + what + ")"); return; }
                nodes++;
                for (int j = 1; j < nd.count; j++) {
                    if (nd.keys[j] <= lo || nd.keys[j] >= hi) out.add(c, "node key[" + j + "] = " + nd.keys[j] + " is outside (" + lo + ", " + (hi == Long.MAX_VALUE ? "end" : hi) + ")");
                }
                for (int j = 0; j < nd.count; j++) {
                    long clo = j == 0 ? lo : nd.keys[j], chi = j + 1 < nd.count ? nd.keys[j + 1] : hi;
                    block(nd.children[j], depth + 1, clo, chi, c);
                }
                return;
            }
            Leaf lf;
            try { lf = Leaf.decode(b, c); } catch (SharedFormatException e) { unreadable++; out.add(c, e.field() + ": " + detail(e) + " (" + what + ")"); return; }
            leaves++;
            for (Entry e : lf.entries) {
                if (e.origin < lo || e.origin >= hi) out.add(c, "leaf entry for origin chunk " + e.origin + " is outside the leaf's range " + range(lo, hi));
                long seen = 0;
                for (Exc x : e.excs) {
                    exceptions++;
                    if ((x.share() & ~allowed) != 0) {
                        out.add(c, String.format("origin chunk %d: share mask 0x%x names snapshots %s that are neither live nor being deleted",
                                e.origin, x.share(), ids(x.share() & ~allowed)));
                    }
                    if ((x.share() & seen) != 0) out.add(c, "origin chunk " + e.origin + ": snapshots " + ids(x.share() & seen) + " have two exceptions");
                    if (h.deletingMask() != 0 && e.origin < h.deleteResume() && (x.share() & h.deletingMask()) != 0) {
                        out.add(c, "origin chunk " + e.origin + ": bits of deleted snapshots " + ids(x.share() & h.deletingMask())
                                + " left before the delete's resume point " + h.deleteResume());
                    }
                    seen |= x.share();
                    String xw = "exception data of origin chunk " + e.origin + " in leaf " + c;
                    if (x.chunk() < first || x.chunk() >= n) { out.add(c, "origin chunk " + e.origin + ": exception chunk " + x.chunk() + " is outside the data area [" + first + ", " + n + ")"); continue; }
                    if (mark(x.chunk(), false, xw)) dataChunks++;
                }
            }
        }
    }

    /** The exception's message without the "shared store: chunk N, field: " prefix (the problem names both). */
    private static String detail(SharedFormatException e) {
        String m = e.getMessage(), p = "shared store: chunk " + e.chunk() + ", " + e.field() + ": ";
        return m.startsWith(p) ? m.substring(p.length()) : m;
    }

    /** Snapshot IDs of a mask, as "0,3,17". */
    public static String ids(long mask) {
        StringBuilder b = new StringBuilder();
        for (long m = mask; m != 0; m &= m - 1) {
            if (b.length() > 0) b.append(',');
            b.append(Long.numberOfTrailingZeros(m));
        }
        return b.toString();
    }

    /** Snapshot IDs of a mask, ascending. */
    public static List<Integer> idList(long mask) {
        List<Integer> l = new ArrayList<>();
        for (long m = mask; m != 0; m &= m - 1) l.add(Long.numberOfTrailingZeros(m));
        return Collections.unmodifiableList(l);
    }
}
