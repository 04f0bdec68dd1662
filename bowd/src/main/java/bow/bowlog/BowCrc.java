package bow.bowlog;

import java.nio.ByteBuffer;
import java.util.zip.CRC32;

/**
 * The checksum of dm-bow log entries: reflected CRC-32 (polynomial 0xEDB88320)
 * with no initial and no final inversion (the kernel's crc32_le), seeded with the
 * source block number.
 *
 * <p>java.util.zip.CRC32 always starts from ~0 and inverts at the end, so it cannot be
 * seeded; but it is an intrinsic (carry-less multiply, several GB/s) where a table
 * loop does a byte per step (a few hundred MB/s, much less in bowctl's C1-only JVM,
 * where it was most of a rollback's time). CRC is affine in its start value:
 * {@code crc_le(c, d) = crc_le(0, d) ^ shift(c, |d|)}, where {@code shift(c, n)} is c
 * times x^(8n) modulo the polynomial (what n zero bytes do to c). With
 * {@code J = CRC32(d) = ~crc_le(~0, d)} that gives {@code crc_le(c, d) = ~J ^ shift(~c, |d|)};
 * {@code shift} is computed as zlib's crc32_combine does (a product by x^(8n) mod P,
 * from a table of x^(2^k)), a few hundred operations whatever n is.
 */
public final class BowCrc {
    private static final int POLY = 0xEDB88320;
    private static final int[] TABLE = new int[256];
    /** X2N[k] = x^(2^k) mod P, reflected (bit 31 is x^0). */
    private static final int[] X2N = new int[32];
    /** Below this many bytes the table loop is cheaper than a CRC32 object and the shift. */
    private static final int INTRINSIC_MIN = 64;

    static {
        for (int n = 0; n < 256; n++) {
            int c = n;
            for (int k = 0; k < 8; k++) {
                c = (c & 1) != 0 ? (c >>> 1) ^ POLY : c >>> 1;
            }
            TABLE[n] = c;
        }
        int p = 1 << 30;   // x^1
        X2N[0] = p;
        for (int k = 1; k < 32; k++) X2N[k] = p = multModP(p, p);
    }

    private BowCrc() {}

    /** Feeds {@code len} bytes into {@code crc} (no inversion on entry or exit). */
    public static int update(int crc, byte[] data, int off, int len) {
        java.util.Objects.checkFromIndexSize(off, len, data.length);
        if (len < INTRINSIC_MIN) return updateTable(crc, data, off, len);
        CRC32 j = new CRC32();
        j.update(data, off, len);
        return ~(int) j.getValue() ^ shift(~crc, len);
    }

    /** Feeds the buffer's remaining bytes into {@code crc}; the buffer's position ends at its limit. */
    public static int update(int crc, ByteBuffer data) {
        int len = data.remaining();
        if (len < INTRINSIC_MIN) {
            int c = crc;
            while (data.hasRemaining()) c = TABLE[(c ^ data.get()) & 0xff] ^ (c >>> 8);
            return c;
        }
        CRC32 j = new CRC32();
        j.update(data);
        return ~(int) j.getValue() ^ shift(~crc, len);
    }

    /**
     * crc_le(crc, A B) from crc_le(crc, A) = {@code crc}, crc_le(0, B) = {@code crcOfNext} and
     * |B| = {@code nextLength}: B's own CRC from a zero start, shifted past by what came before.
     */
    public static int combine(int crc, int crcOfNext, long nextLength) {
        return shift(crc, nextLength) ^ crcOfNext;
    }

    /** The classic table-driven form, a byte per step: the reference the fast path is tested against. */
    static int updateTable(int crc, byte[] data, int off, int len) {
        int c = crc;
        for (int i = off, end = off + len; i < end; i++) {
            c = TABLE[(c ^ data[i]) & 0xff] ^ (c >>> 8);
        }
        return c;
    }

    /** What {@code n} zero bytes fed into crc_le do to {@code c}: c * x^(8n) mod P. */
    static int shift(int c, long n) {
        return multModP(x2nModP(n, 3), c);
    }

    /** a * b mod P, reflected. */
    private static int multModP(int a, int b) {
        int m = 1 << 31, p = 0;
        while (true) {
            if ((a & m) != 0) {
                p ^= b;
                if ((a & (m - 1)) == 0) break;
            }
            m >>>= 1;
            b = (b & 1) != 0 ? (b >>> 1) ^ POLY : b >>> 1;
        }
        return p;
    }

    /** x^(n * 2^k) mod P. */
    private static int x2nModP(long n, int k) {
        int p = 1 << 31;   // x^0
        while (n != 0) {
            if ((n & 1) != 0) p = multModP(X2N[k & 31], p);
            n >>>= 1;
            k++;
        }
        return p;
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
