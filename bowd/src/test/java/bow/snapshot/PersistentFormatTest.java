package bow.snapshot;

import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.MemoryBlockDevice;
import bow.snapshot.PersistentFormat.Header;
import org.junit.jupiter.api.Test;

import static bow.snapshot.PersistentFormat.*;
import static org.junit.jupiter.api.Assertions.*;

class PersistentFormatTest {

    @Test
    void headerBytesAreTheKernelsLayout() {
        byte[] b = encodeHeader(Header.fresh(32), 32 * 512);
        assertEquals(32 * 512, b.length);
        byte[] expected = {'S', 'n', 'A', 'p', 1, 0, 0, 0, 1, 0, 0, 0, 32, 0, 0, 0};
        for (int i = 0; i < 16; i++) assertEquals(expected[i], b[i], "byte " + i);
        for (int i = 16; i < b.length; i++) assertEquals(0, b[i], "rest of chunk 0 is zero, byte " + i);
        Header h = decodeHeader(new byte[] {0x53, 0x6e, 0x41, 0x70, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0});
        assertEquals(SNAP_MAGIC, h.magic());
        assertFalse(h.isValid());
        assertEquals(256, h.chunkSectors());
        assertNull(checkHeader(h));
    }

    @Test
    void headerChecks() {
        assertTrue(checkHeader(new Header(0x12345678, 1, 1, 32, 0)).contains("corrupt"));
        assertTrue(checkHeader(new Header(SNAP_MAGIC, 1, 2, 32, 0)).contains("version 2"));
        assertTrue(checkHeader(new Header(SNAP_MAGIC, 1, 1, 24, 0)).contains("power of 2"));
        assertNull(checkHeader(new Header(0, 0, 0, 0, 0)), "zero magic is a new store, not an error");
    }

    @Test
    void chunkSizeValidationFollowsTheKernel() {
        assertNull(chunkSizeError(1, 512), "the kernel has no lower bound beyond the block size");
        assertNull(chunkSizeError(8, 4096));
        assertEquals("Chunk size is not a power of 2", chunkSizeError(24, 512));
        assertEquals("Chunk size is not a power of 2", chunkSizeError(0, 512));
        assertEquals("Chunk size is not a power of 2", chunkSizeError(-8, 512));
        assertEquals("Chunk size is not a multiple of device blocksize", chunkSizeError(4, 4096), "too small for 4K blocks");
        assertNull(chunkSizeError(1 << 21, 512), "2^21 sectors <= INT_MAX >> 9");
        assertEquals("Chunk size is too high", chunkSizeError(1 << 22, 512));
        IllegalArgumentException e = assertThrows(IllegalArgumentException.class, () -> validateChunkSize(12, 512));
        assertTrue(e.getMessage().contains("12"));
        assertEquals(32, defaultChunkSectors(512));
        assertEquals(32, defaultChunkSectors(4096));
        assertEquals(128, defaultChunkSectors(65536));
    }

    @Test
    void chunkArithmetic() {
        int epa = exceptionsPerArea(1);
        assertEquals(32, epa);
        assertEquals(1024, exceptionsPerArea(32));
        assertEquals(1, areaLocation(epa, 0));
        assertEquals(34, areaLocation(epa, 1));
        assertEquals(67, areaLocation(epa, 2));
        assertEquals(2, dataChunkForIndex(epa, 0));
        assertEquals(33, dataChunkForIndex(epa, 31));
        assertEquals(35, dataChunkForIndex(epa, 32));
        assertTrue(isMetadataChunk(epa, 0));
        assertTrue(isMetadataChunk(epa, 1));
        assertTrue(isMetadataChunk(epa, 34));
        assertFalse(isMetadataChunk(epa, 2));
        assertFalse(isMetadataChunk(epa, 33));
        assertEquals(35, skipMetadata(epa, 34));
        assertEquals(33, skipMetadata(epa, 33));
        // walking next_free from 2 with skip_metadata visits exactly the data chunks in index order
        long nf = 2;
        for (int i = 0; i < 5 * epa; i++) {
            assertEquals(dataChunkForIndex(epa, i), nf, "index " + i);
            nf = skipMetadata(epa, nf + 1);
        }
    }

    @Test
    void cowSizeFormulaByHand() {
        int cb = 512; // chunk 1 sector, epa 32
        assertEquals(2 * cb, cowBytesFor(0, 1), "header + first area");
        assertEquals((1 + 1 + 31) * cb, cowBytesFor(31, 1), "31 fill area 0 but one slot");
        assertEquals((1 + 2 + 32) * cb, cowBytesFor(32, 1), "a full area needs the next one zeroed");
        assertEquals((1 + 2 + 63) * cb, cowBytesFor(63, 1));
        assertEquals((1 + 3 + 64) * cb, cowBytesFor(64, 1));
        long chunk = 16384;
        assertEquals(chunk + (2 + 1024) * chunk, cowBytesFor(1024, 32));
    }

    /** The formula is exact: a COW of cowBytesFor(n) holds n exceptions and refuses the next. */
    @Test
    void cowSizeFormulaMatchesTheStore() throws Exception {
        for (int cs : new int[] {1, 2}) {
            int epa = exceptionsPerArea(cs);
            for (int n : new int[] {0, 1, epa - 2, epa - 1, epa, epa + 1, 2 * epa - 1, 2 * epa, 3 * epa + 5}) {
                MemoryBlockDevice cow = new MemoryBlockDevice((int) cowBytesFor(n, cs));
                PersistentStore s = PersistentStore.create(cow, cs);
                for (int i = 0; i < n; i++) {
                    long c = s.prepare();
                    s.commit(new long[] {i}, new long[] {c}, 1);
                }
                DeviceException e = assertThrows(DeviceException.class, s::prepare, "cs " + cs + " n " + n);
                assertEquals(Errno.ENOSPC, e.errno());
                PersistentStore again = PersistentStore.load(cow, cs, null);
                assertEquals(n, again.exceptionCount());
                // one chunk less than the formula holds fewer than n
                if (n > 0) {
                    MemoryBlockDevice small = new MemoryBlockDevice((int) cowBytesFor(n, cs) - cs * 512);
                    PersistentStore t = PersistentStore.create(small, cs);
                    int made = 0;
                    try {
                        while (true) { long c = t.prepare(); t.commit(new long[] {made}, new long[] {c}, 1); made++; }
                    } catch (DeviceException x) {
                        assertEquals(Errno.ENOSPC, x.errno());
                    }
                    assertTrue(made < n, "cs " + cs + " n " + n + " made " + made);
                }
            }
        }
    }

    @Test
    void usageFigures() {
        // persistent_usage: allocated = next_free * chunk, metadata = (current_area + 2) * chunk
        Usage u = usage(2, 0, 32, 1 << 20);
        assertEquals("64/2048 64", u.statusLine());
        assertEquals("3232/4096 96", usage(101, 1, 32, 2 << 20).statusLine());
    }

    @Test
    void areaCodecRoundTripAndTerminator() {
        byte[] a = encodeArea(new long[] {7, 9}, new long[] {2, 3}, 2, 512);
        assertEquals(7, a[0]);
        assertEquals(2, a[8]);
        assertEquals(9, a[16]);
        assertEquals(3, a[24]);
        assertEquals(2, countExceptions(a, 32));
        PersistentFormat.DiskException[] es = decodeArea(a, 32);
        assertEquals(new PersistentFormat.DiskException(9, 3), es[1]);
        byte[] full = new byte[512];
        for (int i = 0; i < 32; i++) putException(full, i, i, i + 2);
        assertEquals(32, countExceptions(full, 32));
    }
}
