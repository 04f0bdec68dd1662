package bow.snapshot;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * The Linux dm-snapshot persistent exception store format (drivers/md/dm-snap-persistent.c),
 * as pure functions: no I/O. All on-disk integers are little-endian.
 *
 * <pre>
 * chunk 0                 header: u32 magic "SnAp", u32 valid, u32 version (1), u32 chunk_size (sectors)
 * chunk 1 + (epa + 1) * N metadata area N: epa pairs {u64 old_chunk, u64 new_chunk}
 * the epa chunks after area N hold the data of area N's exceptions
 * </pre>
 * epa (exceptions per area) = chunk bytes / 16. A new_chunk of 0 ends the list (chunk 0 is the header).
 */
public final class PersistentFormat {
    public static final int SNAP_MAGIC = 0x70416e53;
    public static final int DISK_VERSION = 1;
    public static final int SECTOR = 512;
    public static final int HEADER_CHUNKS = 1;
    public static final int EXCEPTION_BYTES = 16;
    /** DM_CHUNK_SIZE_DEFAULT_SECTORS: 16 KiB. */
    public static final int DEFAULT_CHUNK_SECTORS = 32;
    /** dm_exception_store_set_chunk_size: chunk_size &gt; INT_MAX &gt;&gt; SECTOR_SHIFT is "too high". */
    public static final int MAX_CHUNK_SECTORS_LIMIT = Integer.MAX_VALUE >> 9;
    /** Bytes 16..19 of the header chunk: a bow extension, ignored by the kernel (which zeroes the rest of chunk 0). */
    public static final int MERGE_MARKER = 0x4547524d; // "MRGE"
    public static final int MERGE_MARKER_OFFSET = 16;

    /**
     * Bytes 20..39 of the header chunk: bow's origin record, another bow extension the kernel
     * ignores. u32 magic "BOWO", u64 origin size in bytes, u32 sample count, u32 fingerprint,
     * u32 reserved (0). See docs/FORMATS.md.
     */
    public static final int ORIGIN_MAGIC = 0x4f574f42; // "BOWO"
    public static final int ORIGIN_RECORD_OFFSET = 20;
    /** Origin chunks sampled into the fingerprint at checkpoint start (chunk 0, the last, evenly between). */
    public static final int FINGERPRINT_SAMPLES = 8;

    private PersistentFormat() {}

    /**
     * What the COW knows about the origin it protects: its size, and a CRC-32C over {@code samples}
     * chunks of it as they were at checkpoint start ({@code samples} 0 = no fingerprint, e.g.
     * when the snapshot may be written to and so may change).
     */
    public record OriginRecord(long originBytes, int samples, int fingerprint) {
        public OriginRecord withoutFingerprint() { return new OriginRecord(originBytes, 0, 0); }
    }

    /** Writes the origin record into a header chunk built by {@link #encodeHeader}. */
    public static void putOriginRecord(byte[] chunk0, OriginRecord r) {
        ByteBuffer bb = ByteBuffer.wrap(chunk0).order(ByteOrder.LITTLE_ENDIAN);
        bb.putInt(ORIGIN_RECORD_OFFSET, ORIGIN_MAGIC);
        bb.putLong(ORIGIN_RECORD_OFFSET + 4, r.originBytes());
        bb.putInt(ORIGIN_RECORD_OFFSET + 12, r.samples());
        bb.putInt(ORIGIN_RECORD_OFFSET + 16, r.fingerprint());
    }

    /** The origin record of a header chunk (at least 40 bytes of it), or null when there is none (kernel-made COW). */
    public static OriginRecord decodeOriginRecord(byte[] chunk0) {
        if (chunk0.length < ORIGIN_RECORD_OFFSET + 20) return null;
        ByteBuffer bb = ByteBuffer.wrap(chunk0).order(ByteOrder.LITTLE_ENDIAN);
        if (bb.getInt(ORIGIN_RECORD_OFFSET) != ORIGIN_MAGIC) return null;
        long size = bb.getLong(ORIGIN_RECORD_OFFSET + 4);
        int samples = bb.getInt(ORIGIN_RECORD_OFFSET + 12);
        if (size <= 0 || samples < 0 || samples > 1 << 16) return null;   // not ours after all
        return new OriginRecord(size, samples, bb.getInt(ORIGIN_RECORD_OFFSET + 16));
    }

    /** The origin chunks a fingerprint samples: chunk 0, the last chunk, and evenly spaced ones between. */
    public static long[] fingerprintChunks(long originBytes, int chunkBytes, int samples) {
        long n = (originBytes + chunkBytes - 1) / chunkBytes;
        int k = (int) Math.min(samples, n);
        long[] c = new long[k];
        for (int i = 0; i < k; i++) c[i] = k == 1 ? 0 : i * (n - 1) / (k - 1);
        return c;
    }

    /** The on-disk header. {@code mergeMarker} is bow's "merge in progress" flag (0 when absent). */
    public record Header(int magic, int valid, int version, int chunkSectors, int mergeMarker) {
        public static Header fresh(int chunkSectors) {
            return new Header(SNAP_MAGIC, 1, DISK_VERSION, chunkSectors, 0);
        }
        public boolean isNew() { return magic == 0; }
        public boolean isValid() { return valid != 0; }
        public boolean merging() { return mergeMarker == MERGE_MARKER; }
        public Header withValid(boolean v) { return new Header(magic, v ? 1 : 0, version, chunkSectors, mergeMarker); }
        public Header withMerging(boolean m) { return new Header(magic, valid, version, chunkSectors, m ? MERGE_MARKER : 0); }
    }

    /** One exception: origin chunk {@code oldChunk} is stored in COW chunk {@code newChunk}. */
    public record DiskException(long oldChunk, long newChunk) {}

    /** The header as the kernel writes it: a whole zeroed chunk with the 16-byte header at its start. */
    public static byte[] encodeHeader(Header h, int chunkBytes) {
        byte[] b = new byte[chunkBytes];
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        bb.putInt(h.magic()).putInt(h.valid()).putInt(h.version()).putInt(h.chunkSectors());
        if (h.mergeMarker() != 0) bb.putInt(h.mergeMarker());
        return b;
    }

    /** Decodes the first 20 bytes of chunk 0; checks nothing (see {@link #checkHeader}). */
    public static Header decodeHeader(byte[] chunk0) {
        if (chunk0.length < 20) throw new IllegalArgumentException("header needs 20 bytes, got " + chunk0.length);
        ByteBuffer bb = ByteBuffer.wrap(chunk0).order(ByteOrder.LITTLE_ENDIAN);
        return new Header(bb.getInt(0), bb.getInt(4), bb.getInt(8), bb.getInt(12), bb.getInt(16));
    }

    /** The kernel's read_header/read_metadata checks for an existing store (magic != 0). Null when fine. */
    public static String checkHeader(Header h) {
        if (h.magic() == 0) return null;
        if (h.magic() != SNAP_MAGIC) {
            return String.format("invalid or corrupt snapshot: magic 0x%08x, expected 0x%08x (\"SnAp\")", h.magic(), SNAP_MAGIC);
        }
        if (h.version() != DISK_VERSION) {
            return "unable to handle snapshot disk version " + h.version() + " (only " + DISK_VERSION + ")";
        }
        String err = chunkSizeError(h.chunkSectors(), SECTOR);
        return err == null ? null : "invalid on-disk chunk size " + Integer.toUnsignedString(h.chunkSectors()) + ": " + err;
    }

    /**
     * dm_exception_store_set_chunk_size: a power of two, a multiple of the device's logical
     * block size, at most INT_MAX &gt;&gt; 9 sectors. Returns the kernel's error text, or null.
     */
    public static String chunkSizeError(int chunkSectors, int logicalBlockBytes) {
        if (chunkSectors <= 0 || Integer.bitCount(chunkSectors) != 1) return "Chunk size is not a power of 2";
        int lbs = Math.max(1, logicalBlockBytes / SECTOR);
        if (chunkSectors % lbs != 0) return "Chunk size is not a multiple of device blocksize";
        if (chunkSectors > MAX_CHUNK_SECTORS_LIMIT) return "Chunk size is too high";
        return null;
    }

    /** Throws IllegalArgumentException with the kernel's reason when the chunk size is unusable. */
    public static void validateChunkSize(int chunkSectors, int logicalBlockBytes) {
        String err = chunkSizeError(chunkSectors, logicalBlockBytes);
        if (err != null) throw new IllegalArgumentException("chunk size " + chunkSectors + " sectors: " + err);
    }

    /** Default chunk size when none is given: max(32 sectors, logical block size). */
    public static int defaultChunkSectors(int logicalBlockBytes) {
        return Math.max(DEFAULT_CHUNK_SECTORS, logicalBlockBytes / SECTOR);
    }

    public static int exceptionsPerArea(int chunkSectors) {
        return (int) ((long) chunkSectors * SECTOR / EXCEPTION_BYTES);
    }

    /** area_location(): the COW chunk holding metadata area {@code area}. */
    public static long areaLocation(int epa, long area) {
        return HEADER_CHUNKS + (epa + 1L) * area;
    }

    /** The COW chunk holding the data of the {@code index}-th exception ever committed in order (0-based). */
    public static long dataChunkForIndex(int epa, long index) {
        long area = index / epa;
        return areaLocation(epa, area) + 1 + index % epa;
    }

    /** True when {@code chunk} is the header or a metadata area, never a data chunk. */
    public static boolean isMetadataChunk(int epa, long chunk) {
        return chunk < HEADER_CHUNKS || (chunk - HEADER_CHUNKS) % (epa + 1L) == 0;
    }

    /** skip_metadata(): if next_free points at a metadata area, step over it. */
    public static long skipMetadata(int epa, long nextFree) {
        return nextFree % (epa + 1L) == HEADER_CHUNKS ? nextFree + 1 : nextFree;
    }

    /**
     * Smallest COW in bytes that holds {@code n} exceptions without overflowing:
     * the header, ceil((n + 1) / epa) areas (an area that fills up needs the next one zeroed)
     * and n data chunks.
     */
    public static long cowBytesFor(long n, int chunkSectors) {
        int epa = exceptionsPerArea(chunkSectors);
        long chunkBytes = (long) chunkSectors * SECTOR;
        long areas = (n + 1 + epa - 1) / epa;
        return chunkBytes + (areas + n) * chunkBytes;
    }

    /** Encodes a whole metadata area; entries past {@code count} are zero. */
    public static byte[] encodeArea(long[] oldChunks, long[] newChunks, int count, int chunkBytes) {
        byte[] b = new byte[chunkBytes];
        ByteBuffer bb = ByteBuffer.wrap(b).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < count; i++) {
            bb.putLong(i * EXCEPTION_BYTES, oldChunks[i]);
            bb.putLong(i * EXCEPTION_BYTES + 8, newChunks[i]);
        }
        return b;
    }

    public static void putException(byte[] area, int index, long oldChunk, long newChunk) {
        ByteBuffer bb = ByteBuffer.wrap(area).order(ByteOrder.LITTLE_ENDIAN);
        bb.putLong(index * EXCEPTION_BYTES, oldChunk);
        bb.putLong(index * EXCEPTION_BYTES + 8, newChunk);
    }

    public static long oldChunkAt(byte[] area, int index) {
        return ByteBuffer.wrap(area).order(ByteOrder.LITTLE_ENDIAN).getLong(index * EXCEPTION_BYTES);
    }

    public static long newChunkAt(byte[] area, int index) {
        return ByteBuffer.wrap(area).order(ByteOrder.LITTLE_ENDIAN).getLong(index * EXCEPTION_BYTES + 8);
    }

    /** Number of exceptions in an area: up to the first new_chunk of 0, or epa when it is full. */
    public static int countExceptions(byte[] area, int epa) {
        ByteBuffer bb = ByteBuffer.wrap(area).order(ByteOrder.LITTLE_ENDIAN);
        for (int i = 0; i < epa; i++) {
            if (bb.getLong(i * EXCEPTION_BYTES + 8) == 0) return i;
        }
        return epa;
    }

    /** Decodes the exceptions of one area (up to the terminator). */
    public static DiskException[] decodeArea(byte[] area, int epa) {
        int n = countExceptions(area, epa);
        DiskException[] out = new DiskException[n];
        for (int i = 0; i < n; i++) out[i] = new DiskException(oldChunkAt(area, i), newChunkAt(area, i));
        return out;
    }

    /** dm-snapshot usage figures in sectors, as persistent_usage() computes them. */
    public record Usage(long sectorsAllocated, long totalSectors, long metadataSectors) {
        /** The status line "&lt;sectors_allocated&gt;/&lt;total_sectors&gt; &lt;metadata_sectors&gt;". */
        public String statusLine() { return sectorsAllocated + "/" + totalSectors + " " + metadataSectors; }
    }

    public static Usage usage(long nextFree, long currentArea, int chunkSectors, long cowBytes) {
        return new Usage(nextFree * chunkSectors, cowBytes / SECTOR, (currentArea + 1 + HEADER_CHUNKS) * chunkSectors);
    }
}
