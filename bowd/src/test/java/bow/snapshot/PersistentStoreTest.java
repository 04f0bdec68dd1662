package bow.snapshot;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.MemoryBlockDevice;
import org.junit.jupiter.api.Test;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;

import static org.junit.jupiter.api.Assertions.*;

/** The on-disk format, checked against bytes laid out by hand from the kernel's description. */
class PersistentStoreTest {
    static final int CB = 512; // chunk size 1 sector: 32 exceptions per area, small images

    static void le(byte[] b, int p, long v, int n) {
        for (int i = 0; i < n; i++) b[p + i] = (byte) (v >>> (8 * i));
    }

    static byte[] handHeader(byte[] img, int magic, int valid, int version, int chunkSectors) {
        le(img, 0, magic, 4);
        le(img, 4, valid, 4);
        le(img, 8, version, 4);
        le(img, 12, chunkSectors, 4);
        return img;
    }

    static void handEntry(byte[] img, long areaChunk, int chunkBytes, int index, long oldChunk, long newChunk) {
        int p = (int) (areaChunk * chunkBytes) + 16 * index;
        le(img, p, oldChunk, 8);
        le(img, p + 8, newChunk, 8);
    }

    /** Header + full area 0 (chunk 1) + area 1 (chunk 34) with three entries; area 2 holds junk that must not be read. */
    static byte[] twoAreaImage() {
        byte[] img = new byte[80 * CB];
        handHeader(img, 0x70416e53, 1, 1, 1);
        for (int i = 0; i < 32; i++) handEntry(img, 1, CB, i, 100 + 3L * i, 2 + i);
        handEntry(img, 34, CB, 0, 5, 35);
        handEntry(img, 34, CB, 1, 6, 36);
        handEntry(img, 34, CB, 2, 1000, 40); // committed out of order: 37..39 are holes
        handEntry(img, 67, CB, 0, 77, 70);   // beyond the end of the list
        return img;
    }

    @Test
    void loadsHandBuiltImage() throws Exception {
        List<String> warnings = new ArrayList<>();
        PersistentStore s = PersistentStore.load(new MemoryBlockDevice(twoAreaImage()), 8, warnings::add);
        assertNotNull(s);
        assertTrue(s.isValid());
        assertEquals(1, s.chunkSectors(), "on-disk chunk size wins");
        assertEquals(1, warnings.size());
        assertTrue(warnings.get(0).contains("overrides"), warnings.get(0));
        assertEquals(35, s.exceptionCount());
        for (int i = 0; i < 32; i++) assertEquals(2 + i, s.lookup(100 + 3L * i));
        assertEquals(35, s.lookup(5));
        assertEquals(36, s.lookup(6));
        assertEquals(40, s.lookup(1000));
        assertEquals(0, s.lookup(77));
        assertEquals(0, s.lookup(101));
        // next_free = highest new_chunk + 1; area 1 is current
        assertEquals("41/80 3", s.usage().statusLine());
        assertEquals(41, s.prepare());
        // no warning when the configured size matches or none is configured
        warnings.clear();
        PersistentStore.load(new MemoryBlockDevice(twoAreaImage()), 0, warnings::add);
        PersistentStore.load(new MemoryBlockDevice(twoAreaImage()), 1, warnings::add);
        assertTrue(warnings.isEmpty());
    }

    @Test
    void zeroMagicIsNoStoreAndInvalidLoadsInvalid() throws Exception {
        assertNull(PersistentStore.load(new MemoryBlockDevice(4096), 0, null));
        byte[] img = twoAreaImage();
        le(img, 4, 0, 4);
        PersistentStore s = PersistentStore.load(new MemoryBlockDevice(img), 0, null);
        assertFalse(s.isValid());
        assertEquals(0, s.exceptionCount(), "an invalid snapshot's exceptions are not loaded");
    }

    @Test
    void badHeadersGiveClearErrors() {
        byte[] bad = twoAreaImage();
        le(bad, 0, 0x12345678, 4);
        assertTrue(loadError(bad).contains("corrupt"));
        byte[] ver = twoAreaImage();
        le(ver, 8, 2, 4);
        assertTrue(loadError(ver).contains("version 2"));
        byte[] cs = twoAreaImage();
        le(cs, 12, 3, 4);
        assertTrue(loadError(cs).contains("power of 2"));
        byte[] big = twoAreaImage();
        le(big, 12, 64, 4); // 32 KiB chunks on a 40 KiB COW
        assertTrue(loadError(big).contains("too small"), loadError(big));
        byte[] full = new byte[34 * CB]; // area 0 full, area 1 would be past the end
        handHeader(full, 0x70416e53, 1, 1, 1);
        for (int i = 0; i < 32; i++) handEntry(full, 1, CB, i, i, 2 + i);
        assertTrue(loadError(full).contains("past the end"), loadError(full));
        byte[] wild = twoAreaImage();
        handEntry(wild, 34, CB, 1, 6, 34); // points at a metadata area
        assertTrue(loadError(wild).contains("corrupt"), loadError(wild));
        assertThrows(DeviceException.class, () -> PersistentStore.create(new MemoryBlockDevice(CB), 1));
        assertThrows(IllegalArgumentException.class, () -> PersistentStore.create(new MemoryBlockDevice(1 << 16), 6));
    }

    private static String loadError(byte[] img) {
        return assertThrows(IOException.class, () -> PersistentStore.load(new MemoryBlockDevice(img), 0, null)).getMessage();
    }

    /** Writes through the engine and compares the COW with bytes laid out by hand. */
    @Test
    void writtenImageHasExactBytes() throws Exception {
        byte[] originImg = new byte[64 * CB];
        for (int i = 0; i < originImg.length; i++) originImg[i] = (byte) (i * 31 + i / CB);
        MemoryBlockDevice origin = new MemoryBlockDevice(originImg);
        byte[] junk = new byte[100 * CB];
        Arrays.fill(junk, (byte) 0xAA); // a used COW: everything the store relies on must be written
        Arrays.fill(junk, 0, 4, (byte) 0); // zero magic = new store (an unknown magic is refused)
        MemoryBlockDevice cow = new MemoryBlockDevice(junk);
        PersistentEngine e = PersistentEngine.open(origin, cow, new PersistentEngine.Options(1, false, false));
        e.startCheckpoint();
        BlockDevice o = e.exports().get("");
        o.write(5 * CB, ByteBuffer.wrap(new byte[CB]));
        o.write(7 * CB + 100, ByteBuffer.wrap(new byte[50]));

        byte[] c = cow.snapshot();
        byte[] hdr = new byte[CB];
        handHeader(hdr, 0x70416e53, 1, 1, 1);
        // bow's origin record after the kernel's 16 bytes (and bow's 4-byte merge marker, 0 here)
        le(hdr, 20, 0x4f574f42, 4);
        le(hdr, 24, originImg.length, 8);
        le(hdr, 32, 8, 4);
        le(hdr, 36, OriginCheck.record(new MemoryBlockDevice(originImg), 1, true).fingerprint(), 4);
        assertArrayEquals(hdr, Arrays.copyOfRange(c, 0, CB), "header chunk");
        byte[] area = new byte[CB];
        le(area, 0, 5, 8);
        le(area, 8, 2, 8);
        le(area, 16, 7, 8);
        le(area, 24, 3, 8);
        assertArrayEquals(area, Arrays.copyOfRange(c, CB, 2 * CB), "area 0");
        assertArrayEquals(Arrays.copyOfRange(originImg, 5 * CB, 6 * CB), Arrays.copyOfRange(c, 2 * CB, 3 * CB));
        assertArrayEquals(Arrays.copyOfRange(originImg, 7 * CB, 8 * CB), Arrays.copyOfRange(c, 3 * CB, 4 * CB));

        // 30 more exceptions fill area 0: area 1 (chunk 34) must then be zeroed on disk
        for (int k = 10; k < 40; k++) o.write((long) k * CB, ByteBuffer.wrap(new byte[CB]));
        c = cow.snapshot();
        assertArrayEquals(new byte[CB], Arrays.copyOfRange(c, 34 * CB, 35 * CB), "next area zeroed when area 0 fills");
        for (int k = 0; k < 30; k++) {
            assertEquals(10 + k, PersistentStoreTest.leLong(c, CB + 16 * (2 + k)));
            assertEquals(4 + k, PersistentStoreTest.leLong(c, CB + 16 * (2 + k) + 8));
        }
        // the next exception lands in area 1 with data chunk 35 (chunk 34 is metadata)
        o.write(50L * CB, ByteBuffer.wrap(new byte[CB]));
        c = cow.snapshot();
        assertEquals(50, leLong(c, 34 * CB));
        assertEquals(35, leLong(c, 34 * CB + 8));
        assertEquals(0, leLong(c, 34 * CB + 24), "terminator");
        assertArrayEquals(Arrays.copyOfRange(originImg, 50 * CB, 51 * CB), Arrays.copyOfRange(c, 35 * CB, 36 * CB));
        assertEquals("36/100 3", e.status().details().get("status"));

        // commit drops the store: zero header chunk
        e.commit();
        assertArrayEquals(new byte[CB], Arrays.copyOfRange(cow.snapshot(), 0, CB));
        assertNull(PersistentStore.load(cow, 0, null));
    }

    static long leLong(byte[] b, int p) {
        long v = 0;
        for (int i = 7; i >= 0; i--) v = (v << 8) | (b[p + i] & 0xff);
        return v;
    }

    /** A read-only COW whose metadata is generated on the fly: a million exceptions without a 4 GB image. */
    static final class SyntheticCow implements BlockDevice {
        final int chunkBytes = 4096, epa = 256;
        final long n;
        SyntheticCow(long n) { this.n = n; }
        @Override public long size() { return PersistentFormat.cowBytesFor(n, 8); }
        @Override public void read(long offset, ByteBuffer dst) {
            while (dst.hasRemaining()) {
                long chunk = offset / chunkBytes;
                int in = (int) (offset % chunkBytes);
                int len = Math.min(chunkBytes - in, dst.remaining());
                byte[] c = new byte[chunkBytes];
                if (chunk == 0) handHeader(c, 0x70416e53, 1, 1, 8);
                else if (PersistentFormat.isMetadataChunk(epa, chunk)) {
                    long area = (chunk - 1) / (epa + 1);
                    for (int i = 0; i < epa; i++) {
                        long idx = area * epa + i;
                        if (idx >= n) break;
                        le(c, 16 * i, idx * 3 + 1, 8);
                        le(c, 16 * i + 8, PersistentFormat.dataChunkForIndex(epa, idx), 8);
                    }
                }
                dst.put(c, in, len);
                offset += len;
            }
        }
        @Override public void write(long offset, ByteBuffer src) { throw new UnsupportedOperationException(); }
        @Override public void discard(long offset, long length) { throw new UnsupportedOperationException(); }
        @Override public void flush() {}
    }

    @Test
    void loadsAMillionExceptions() throws Exception {
        long n = 1_000_000;
        PersistentStore s = PersistentStore.load(new SyntheticCow(n), 8, null);
        assertEquals(n, s.exceptionCount());
        for (long idx : new long[] {0, 1, 255, 256, 99_999, 999_999}) {
            assertEquals(PersistentFormat.dataChunkForIndex(256, idx), s.lookup(idx * 3 + 1), "index " + idx);
            assertEquals(0, s.lookup(idx * 3 + 2));
        }
        long lastData = PersistentFormat.dataChunkForIndex(256, n - 1);
        assertEquals((lastData + 1) * 8, s.usage().sectorsAllocated());
        assertEquals((n / 256 + 2) * 8, s.usage().metadataSectors());
    }

    /** Entries after the terminator (left by a torn write) must not come back when the area is next written. */
    @Test
    void entriesAfterTheTerminatorAreDropped() throws Exception {
        byte[] img = new byte[80 * CB];
        handHeader(img, 0x70416e53, 1, 1, 1);
        handEntry(img, 1, CB, 0, 10, 2);
        handEntry(img, 1, CB, 1, 11, 3);
        handEntry(img, 1, CB, 5, 99, 20); // stale, beyond the terminator at index 2
        MemoryBlockDevice cow = new MemoryBlockDevice(img);
        PersistentStore s = PersistentStore.load(cow, 0, null);
        assertEquals(2, s.exceptionCount());
        for (int i = 0; i < 3; i++) { // fills slots 2..4; slot 5 held the stale entry
            long c = s.prepare();
            assertEquals(4 + i, c);
            s.commit(new long[] {200 + i}, new long[] {c}, 1);
        }
        PersistentStore again = PersistentStore.load(cow, 0, null);
        assertEquals(5, again.exceptionCount());
        assertEquals(0, again.lookup(99));
        assertEquals(0, leLong(cow.snapshot(), CB + 16 * 5 + 8), "terminator after the new entries");
    }

    /**
     * The metadata read-ahead must end without interrupting reads still in flight: an
     * interrupt inside FileChannel I/O closes the COW's channel for everyone (it made offline
     * rollbacks fail with "FILE: null" and bowd serve EIO on the snapshot export).
     */
    @Test
    void loadingNeverInterruptsReadAheadStillInFlight() throws Exception {
        MemoryBlockDevice mem = new MemoryBlockDevice(new byte[200 * CB]);
        PersistentStore.create(mem, 1);   // one empty area: load stops at area 0 while later areas are prefetched
        java.util.concurrent.atomic.AtomicInteger interrupted = new java.util.concurrent.atomic.AtomicInteger();
        java.util.concurrent.atomic.AtomicInteger slowDone = new java.util.concurrent.atomic.AtomicInteger();
        java.util.concurrent.CountDownLatch prefetchStarted = new java.util.concurrent.CountDownLatch(1);
        BlockDevice slow = new BlockDevice() {
            @Override public long size() { return mem.size(); }
            @Override public void read(long o, ByteBuffer b) throws IOException {
                if (o == CB) {
                    // Area 0, which the load waits for, answers only once a read-ahead is under
                    // way: loading then always ends with one in flight, whatever the scheduling.
                    try {
                        prefetchStarted.await(10, java.util.concurrent.TimeUnit.SECONDS);
                    } catch (InterruptedException e) {
                        Thread.currentThread().interrupt();
                    }
                }
                if (o > 2 * CB) {   // prefetch of a later area: slow, like a real disk under load
                    prefetchStarted.countDown();
                    try {
                        Thread.sleep(150);
                    } catch (InterruptedException e) {
                        interrupted.incrementAndGet();
                        Thread.currentThread().interrupt();
                    }
                    slowDone.incrementAndGet();
                }
                mem.read(o, b);
            }
            @Override public void write(long o, ByteBuffer b) throws IOException { mem.write(o, b); }
            @Override public void discard(long o, long l) throws IOException { mem.discard(o, l); }
            @Override public void flush() throws IOException { mem.flush(); }
        };
        PersistentStore s = PersistentStore.load(slow, 0, null);
        assertNotNull(s);
        assertEquals(0, s.exceptionCount());
        assertTrue(prefetchStarted.getCount() == 0, "a read-ahead was in flight when loading ended");
        for (int i = 0; i < 100 && slowDone.get() == 0; i++) Thread.sleep(50);   // let it finish
        Thread.sleep(200);
        assertEquals(0, interrupted.get(), "a read-ahead read was interrupted when loading ended");
        assertTrue(slowDone.get() > 0, "no read-ahead was in flight; the test proved nothing");
    }
}
