package bow.shared;

import bow.shared.SharedFormat.Header;
import bow.shared.SharedFormat.Layout;
import bow.shared.SharedFormat.Snapshot;
import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Random;
import java.util.zip.CRC32C;

import static org.junit.jupiter.api.Assertions.*;

class SharedFormatTest {
    static final int SEEDS = Integer.getInteger("bow.test.seeds", 300);

    static Header header(long seq, long snapmask, Snapshot[] snaps) {
        return new Header(1, 8, 7, snapmask, 1, 0, seq, 1000, 1 << 20, 990, snaps);
    }

    @Test
    void headerBytesAreLaidOutAsDocumented() {
        Snapshot[] snaps = new Snapshot[64];
        snaps[0] = new Snapshot(0x0102030405060708L, true, "checkpoint");
        snaps[63] = new Snapshot(5, false, "");
        Header h = new Header(1, 8, 7, 0x8000000000000001L, 2, 0, 3, 1000, 0x1122334455L, 990, snaps);
        byte[] b = SharedFormat.encodeHeader(h);
        assertEquals(4096, b.length);
        // expected bytes laid out by hand
        byte[] e = new byte[4096];
        int[] fixed = {
            0x08, 0x80, 0x37, 0x55,  1, 0, 0, 0,  2, 0, 0, 0,  8, 0, 0, 0,          // magic valid version chunk_size
            7, 0, 0, 0, 0, 0, 0, 0,   1, 0, 0, 0, 0, 0, 0, (byte) 0x80 & 0xff,      // root, snapmask
            2, 0, 0, 0,  0, 0, 0, 0,                                               // tree_level, journal
            3, 0, 0, 0, 0, 0, 0, 0,   0xe8, 3, 0, 0, 0, 0, 0, 0,                    // sequence, nr_chunks 1000
            0x55, 0x44, 0x33, 0x22, 0x11, 0, 0, 0,   0xde, 3, 0, 0, 0, 0, 0, 0,     // origin bytes, free 990
            1, 0, 0, 0 };                                                          // nr_bitmap_chunks
        for (int i = 0; i < fixed.length; i++) e[i] = (byte) fixed[i];
        for (int i = 88; i < 96; i++) e[i] = (byte) 0xff;                     // delete_resume: none
        int s0 = 128;
        byte[] created = {8, 7, 6, 5, 4, 3, 2, 1};
        System.arraycopy(created, 0, e, s0, 8);
        e[s0 + 8] = 1;                 // writable
        e[s0 + 12] = 10;               // name length
        System.arraycopy("checkpoint".getBytes(), 0, e, s0 + 16, 10);
        int s63 = 128 + 63 * 48;
        e[s63] = 5;
        CRC32C c = new CRC32C();
        c.update(e, 0, 3200);          // CRC field (76..79) is still zero here
        int crc = (int) c.getValue();
        ByteBuffer.wrap(e).order(ByteOrder.LITTLE_ENDIAN).putInt(76, crc);
        assertArrayEquals(e, b);
        assertEquals(h, SharedFormat.decodeHeader(e, 1));
        assertEquals(3200, SharedFormat.HEADER_BYTES);
    }

    @Test
    void layoutPlacesBitmapsAndJournalAfterTheTwoHeaderSlots() {
        Layout l = SharedFormat.layout(100_000, 8, 3);     // 32768 bits per bitmap chunk -> 4 chunks per copy
        assertEquals(4, l.bitmapChunks());
        assertEquals(2, l.bitmapChunk(0, 0));
        assertEquals(5, l.bitmapChunk(0, 3));
        assertEquals(6, l.bitmapChunk(1, 0));
        assertEquals(10, l.firstJournalChunk());
        assertEquals(13, l.firstDataChunk());
        assertEquals(1, SharedFormat.layout(32768, 8, 0).bitmapChunks());
        assertEquals(2, SharedFormat.layout(32769, 8, 0).bitmapChunks());
        assertEquals(6, SharedFormat.minChunks(8, 0), "2 header slots, 2 bitmaps, a leaf and a root");
        assertThrows(IllegalArgumentException.class, () -> SharedFormat.layout(10, 24, 0));
        assertThrows(IllegalArgumentException.class, () -> l.bitmapChunk(2, 0));
    }

    @Test
    void chunkSizesAndNames() {
        assertNull(SharedFormat.chunkSizeError(8));
        assertNull(SharedFormat.chunkSizeError(2048));
        assertNotNull(SharedFormat.chunkSizeError(4));
        assertNotNull(SharedFormat.chunkSizeError(4096));
        assertTrue(SharedFormat.chunkSizeError(24).contains("power of 2"));
        assertNull(SharedFormat.nameError("checkpoint"));
        assertNull(SharedFormat.nameError("a.b_c-1"));
        assertTrue(SharedFormat.nameError("12").contains("digits"));
        assertTrue(SharedFormat.nameError("a b").contains("' '"));
        assertTrue(SharedFormat.nameError("-x").contains("-"));
        assertNotNull(SharedFormat.nameError(""));
        assertNotNull(SharedFormat.nameError("x".repeat(33)));
        assertNull(SharedFormat.nameError("x".repeat(32)));
    }

    static Header randomHeader(Random r, long seq) {
        int cs = 8 << r.nextInt(9);
        long nr = SharedFormat.minChunks(cs, 0) + r.nextInt(1 << 20);
        Layout l = SharedFormat.layout(nr, cs, 0);
        long snapmask = r.nextLong() & (r.nextBoolean() ? -1L : r.nextLong());
        Snapshot[] snaps = new Snapshot[64];
        for (int i = 0; i < 64; i++) {
            if ((snapmask >>> i & 1) != 0) {
                String name = r.nextInt(3) == 0 ? "" : "s" + i + (r.nextBoolean() ? "_x" : "");
                snaps[i] = new Snapshot(r.nextLong(), r.nextBoolean(), name);
            }
        }
        long root = l.firstDataChunk() + (long) (r.nextDouble() * (nr - l.firstDataChunk()));
        long deleting = r.nextBoolean() ? 0 : r.nextLong() & ~snapmask;
        long resume = deleting == 0 ? -1 : r.nextLong() >>> 1;
        return new Header(r.nextInt(2), cs, root, snapmask, 1 + r.nextInt(16), 0, seq, nr,
                r.nextLong() & Long.MAX_VALUE, r.nextInt((int) Math.min(Integer.MAX_VALUE, nr - l.firstDataChunk() - 1)), deleting, resume, snaps);
    }

    @Test
    void randomHeadersRoundTripAndEveryFlippedByteIsCaught() {
        for (int seed = 0; seed < SEEDS; seed++) {
            Random r = new Random(seed);
            long seq = r.nextLong() & Long.MAX_VALUE;
            Header h = randomHeader(r, seq);
            byte[] b = SharedFormat.encodeHeader(h);
            assertEquals(h, SharedFormat.decodeHeader(b, seq & 1), "seed " + seed);
            // any single corrupted byte in the checksummed part is refused, naming chunk and a field
            int at = r.nextInt(SharedFormat.HEADER_BYTES);
            byte[] bad = b.clone();
            bad[at] ^= (byte) (1 + r.nextInt(255));
            SharedFormatException ex = assertThrows(SharedFormatException.class, () -> SharedFormat.decodeHeader(bad, seq & 1), "seed " + seed + " byte " + at);
            assertEquals(seq & 1, ex.chunk());
            assertTrue(ex.field().startsWith("header"), ex.getMessage());
            assertTrue(ex.getMessage().contains("chunk " + (seq & 1)), ex.getMessage());
        }
    }

    /** Re-encodes with a correct CRC after editing the bytes, so that the field checks (not the CRC) must catch it. */
    static byte[] patch(byte[] b, int off, long value, int width) {
        byte[] c = b.clone();
        ByteBuffer bb = ByteBuffer.wrap(c).order(ByteOrder.LITTLE_ENDIAN);
        switch (width) {
            case 2 -> bb.putShort(off, (short) value);
            case 4 -> bb.putInt(off, (int) value);
            case 8 -> bb.putLong(off, value);
            case 1 -> c[off] = (byte) value;
            default -> throw new IllegalArgumentException();
        }
        bb.putInt(SharedFormat.CRC_OFFSET, SharedFormat.crc(c));
        return c;
    }

    static void assertField(String field, byte[] b, long slot) {
        SharedFormatException e = assertThrows(SharedFormatException.class, () -> SharedFormat.decodeHeader(b, slot));
        assertEquals(field, e.field(), e.getMessage());
        assertEquals(slot, e.chunk());
    }

    @Test
    void eachHeaderFieldIsCheckedByName() {
        Snapshot[] snaps = new Snapshot[64];
        snaps[2] = new Snapshot(1, false, "a");
        snaps[3] = new Snapshot(1, false, "b");
        Header h = header(4, 0b1100, snaps);
        byte[] b = SharedFormat.encodeHeader(h);
        assertEquals(h, SharedFormat.decodeHeader(b, 0));
        assertField("header.magic", patch(b, 0, 0x12345678, 4), 0);
        assertField("header.version", patch(b, 8, 1, 4), 0);
        assertField("header.chunk_size", patch(b, 12, 24, 4), 0);
        assertField("header.chunk_size", patch(b, 12, 16, 4), 0);          // valid size, but not what was read
        assertField("header.root_tree_chunk", patch(b, 16, 3, 8), 0);      // inside the bitmap
        assertField("header.root_tree_chunk", patch(b, 16, 1000, 8), 0);   // past the end
        assertField("header.tree_level", patch(b, 32, 0, 4), 0);
        assertField("header.tree_level", patch(b, 32, 17, 4), 0);
        assertField("header.sequence", b, 1);                              // seq 4 does not belong in slot 1
        assertField("header.sequence", patch(b, 40, -2, 8), 0);
        assertField("header.nr_chunks", patch(b, 48, 5, 8), 0);
        assertField("header.nr_bitmap_chunks", patch(b, 72, 2, 4), 0);
        assertField("header.free_chunks", patch(b, 64, 999, 8), 0);
        assertField("header.reserved", patch(b, 112, 1, 1), 0);
        assertField("header.rollback_target", patch(b, 100, 1, 1), 0);                    // a target with no rollback in progress
        assertField("header.rollback_target", patch(b, 104, 1, 1), 0);                    // a resume point with none
        assertField("header.rollback_flags", patch(b, 96, 2, 4), 0);                      // delete-after without in-progress
        assertField("header.rollback_flags", patch(b, 96, 5, 4), 0);                      // unknown bit
        assertField("header.rollback_target", patch(patch(b, 96, 1, 4), 100, 64, 4), 0);  // not a snapshot ID
        // a rollback to a snapshot that is not live decodes (check and open judge it)
        assertEquals(5, SharedFormat.decodeHeader(patch(patch(b, 96, 1, 4), 100, 5, 4), 0).rollbackTarget());
        Header rb = new Header(1, 8, 7, 0b1100, 1, 0, 4, 1000, 1 << 20, 990, 0, -1, 3, true, 77, snaps);
        byte[] rbb = SharedFormat.encodeHeader(rb);
        ByteBuffer le = ByteBuffer.wrap(rbb).order(ByteOrder.LITTLE_ENDIAN);
        assertEquals(3, le.getInt(96), "rollback_flags: in progress, delete the target after");
        assertEquals(3, le.getInt(100));
        assertEquals(77, le.getLong(104));
        assertEquals(rb, SharedFormat.decodeHeader(rbb, 0));
        assertTrue(SharedFormat.decodeHeader(rbb, 0).rollingBack());
        assertThrows(IllegalArgumentException.class, () -> SharedFormat.encodeHeader(new Header(1, 8, 7, 0b1100, 1, 0, 4, 1000, 1 << 20, 990, 0, -1, 5, false, 0, snaps)),
                "a rollback to a snapshot that is not live is never written");
        // no rollback: bytes 96..127 stay zero, as written before the fields existed (older readers open it)
        for (int i = 96; i < 128; i++) assertEquals(0, b[i], "byte " + i);
        assertField("header.deleting_mask", patch(patch(b, 80, 0b100, 8), 88, 0, 8), 0);   // names live snapshot 2
        assertField("header.delete_resume", patch(b, 80, 0b10000, 8), 0);                  // deleting without a resume key
        assertField("header.delete_resume", patch(b, 88, 7, 8), 0);                        // resume key, nothing deleting
        Header del = new Header(1, 8, 7, 0b1100, 1, 0, 4, 1000, 1 << 20, 990, 0b10001, 4242, snaps);
        byte[] db = SharedFormat.encodeHeader(del);
        assertEquals(0b10001, ByteBuffer.wrap(db).order(ByteOrder.LITTLE_ENDIAN).getLong(80));
        assertEquals(4242, ByteBuffer.wrap(db).order(ByteOrder.LITTLE_ENDIAN).getLong(88));
        assertEquals(del, SharedFormat.decodeHeader(db, 0));
        assertField("header.snapshot[0]", patch(b, 128, 1, 1), 0);          // slot of a snapshot that is not live
        assertField("header.snapshot[2].flags", patch(b, 128 + 2 * 48 + 8, 2, 4), 0);
        assertField("header.snapshot[2].name_len", patch(b, 128 + 2 * 48 + 12, 33, 2), 0);
        assertField("header.snapshot[2].name", patch(b, 128 + 2 * 48 + 16, ' ', 1), 0);
        assertField("header.snapshot[2].name", patch(b, 128 + 2 * 48 + 18, 'x', 1), 0);   // junk after the name
        assertField("header.snapshot[3].name", patch(b, 128 + 3 * 48 + 16, 'a', 1), 0);   // duplicate name
        assertField("header.crc", flip(b, 200), 0);
        assertField("header", patch(b, 3300, 1, 1), 0);                     // bytes after the header
    }

    static byte[] flip(byte[] b, int at) { byte[] c = b.clone(); c[at] ^= 1; return c; }

    @Test
    void pickTakesTheValidSlotWithTheHigherSequence() {
        Header h4 = header(4, 0, null), h5 = header(5, 0, null);
        byte[] s0 = SharedFormat.encodeHeader(h4), s1 = SharedFormat.encodeHeader(h5);
        byte[] blank = new byte[4096];
        assertNull(SharedFormat.pick(blank, blank).header(), "blank COW");
        assertEquals(h5, SharedFormat.pick(s0, s1).header());
        assertEquals(h4, SharedFormat.pick(s0, flip(s1, 100)).header(), "torn newer slot: the older one wins");
        assertEquals(h5, SharedFormat.pick(flip(s0, 100), s1).header());
        assertEquals(h4, SharedFormat.pick(s0, blank).header(), "first commit only");
        Header h6 = header(6, 0, null);
        assertEquals(h6, SharedFormat.pick(SharedFormat.encodeHeader(h6), s1).header());
        SharedFormatException e = assertThrows(SharedFormatException.class, () -> SharedFormat.pick(flip(s0, 100), flip(s1, 100)));
        assertTrue(e.getMessage().contains("slot 0") && e.getMessage().contains("slot 1"), e.getMessage());
        Header other = new Header(1, 16, 7, 0, 1, 0, 5, 1000, 1 << 20, 990, null);
        assertThrows(SharedFormatException.class, () -> SharedFormat.pick(s0, SharedFormat.encodeHeader(other)));
    }

    @Test
    void encodeRefusesInconsistentSnapshotSlots() {
        Snapshot[] snaps = new Snapshot[64];
        snaps[1] = new Snapshot(1, false, "x");
        assertThrows(IllegalArgumentException.class, () -> SharedFormat.encodeHeader(header(0, 0, snaps)));
        assertThrows(IllegalArgumentException.class, () -> SharedFormat.encodeHeader(header(0, 1, null)));
        Snapshot[] bad = new Snapshot[64];
        bad[0] = new Snapshot(1, false, "a b");
        assertThrows(IllegalArgumentException.class, () -> SharedFormat.encodeHeader(header(0, 1, bad)));
    }
}
