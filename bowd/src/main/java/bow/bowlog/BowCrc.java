package bow.bowlog;

/**
 * The checksum of dm-bow log entries: reflected CRC-32 (polynomial 0xEDB88320)
 * with no initial and no final inversion (the kernel's crc32_le), seeded with the
 * source block number. java.util.zip.CRC32 always inverts, so it cannot be seeded
 * this way; this is the classic table-driven form.
 */
public final class BowCrc {
    private static final int[] TABLE = new int[256];

    static {
        for (int n = 0; n < 256; n++) {
            int c = n;
            for (int k = 0; k < 8; k++) {
                c = (c & 1) != 0 ? (c >>> 1) ^ 0xEDB88320 : c >>> 1;
            }
            TABLE[n] = c;
        }
    }

    private BowCrc() {}

    /** Feeds {@code len} bytes into {@code crc} (no inversion on entry or exit). */
    public static int update(int crc, byte[] data, int off, int len) {
        int c = crc;
        for (int i = off, end = off + len; i < end; i++) {
            c = TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
        }
        return c;
    }

    /**
     * The entry checksum of backed-up data whose source starts at
     * {@code sourceSector}: seed = source / (blockSize / 512), then every block of
     * the data in order. Feeding blocks one after another equals feeding the bytes.
     */
    public static int entryChecksum(long sourceSector, int blockSize, byte[] data, int off, int len) {
        int seed = (int) (sourceSector / (blockSize / 512));
        return update(seed, data, off, len);
    }
}
