package bow.bowlog;

import org.junit.jupiter.api.Test;

import java.nio.ByteBuffer;
import java.nio.charset.StandardCharsets;
import java.util.Random;
import java.util.zip.CRC32;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;

class BowCrcTest {
    @Test
    void standardCheckValueWithInversionsAddedByHand() {
        byte[] d = "123456789".getBytes(StandardCharsets.US_ASCII);
        // CRC-32/ISO-HDLC check value: init ~0, final inversion.
        assertEquals(0xCBF43926, ~BowCrc.update(0xFFFFFFFF, d, 0, d.length));
    }

    @Test
    void agreesWithJdkCrc32OnRandomData() {
        Random r = new Random(1);
        for (int n = 0; n < 200; n++) {
            byte[] d = new byte[r.nextInt(5000)];
            r.nextBytes(d);
            CRC32 jdk = new CRC32();
            jdk.update(d);
            assertEquals((int) jdk.getValue(), ~BowCrc.update(0xFFFFFFFF, d, 0, d.length));
        }
    }

    @Test
    void seededEntryChecksumVectors() {
        // Expected values computed outside Java: ~zlib.crc32(data, ~seed) in Python.
        byte[] d = new byte[4096];
        for (int i = 0; i < d.length; i++) d[i] = (byte) (i * 31 + 7);
        // source sector 40 with 4 KiB blocks -> seed 5
        assertEquals(0x70cb452f, BowCrc.entryChecksum(40, 4096, d, 0, d.length));
        byte[] d2 = new byte[8192];
        for (int i = 0; i < d2.length; i++) d2[i] = (byte) (i * 13 + 1);
        // source sector 2560 -> block 320 -> seed 320; two blocks fed in order
        assertEquals(0xbd02be16, BowCrc.entryChecksum(2560, 4096, d2, 0, d2.length));
        int split = BowCrc.update(BowCrc.update(320, d2, 0, 4096), d2, 4096, 4096);
        assertEquals(0xbd02be16, split);
    }

    @Test
    void zeroSeedOverZerosIsZero() {
        assertEquals(0, BowCrc.update(0, new byte[512], 0, 512));
    }

    @Test
    void intrinsicPathAgreesWithTheTableLoopForAnySeedOffsetAndLength() {
        Random r = new Random(Long.getLong("bow.test.seed", 7));
        byte[] d = new byte[3 << 20];
        r.nextBytes(d);
        int[] lengths = {0, 1, 63, 64, 65, 511, 512, 4095, 4096, 4097, 65536, 1 << 20, (3 << 20) - 5};
        for (int len : lengths) {
            for (int k = 0; k < 4; k++) {
                int seed = k == 0 ? 0 : k == 1 ? -1 : r.nextInt();
                int off = len == d.length ? 0 : r.nextInt(d.length - len + 1);
                int want = BowCrc.updateTable(seed, d, off, len);
                assertEquals(want, BowCrc.update(seed, d, off, len), "len " + len + " seed " + seed + " off " + off);
                ByteBuffer direct = ByteBuffer.allocateDirect(len);
                direct.put(d, off, len).flip();
                assertEquals(want, BowCrc.update(seed, direct), "direct buffer, len " + len);
                assertEquals(len, direct.position());
                assertEquals(want, BowCrc.update(seed, ByteBuffer.wrap(d, off, len)), "heap buffer, len " + len);
            }
        }
    }

    @Test
    void shiftIsWhatZeroBytesDo() {
        Random r = new Random(3);
        for (int n : new int[] {1, 7, 64, 4096, 1 << 20}) {
            int c = r.nextInt();
            assertEquals(BowCrc.updateTable(c, new byte[n], 0, n), BowCrc.shift(c, n), "n " + n);
        }
    }

    @Test
    void combineFoldsAPartChecksummedFromZero() {
        Random r = new Random(Long.getLong("bow.test.seed", 11));
        byte[] d = new byte[1 << 16];
        r.nextBytes(d);
        for (int k = 0; k < 50; k++) {
            int seed = r.nextInt();
            int split = r.nextInt(d.length + 1);
            int whole = BowCrc.updateTable(seed, d, 0, d.length);
            int a = BowCrc.update(seed, d, 0, split);
            int b = BowCrc.update(0, d, split, d.length - split);
            assertEquals(whole, BowCrc.combine(a, b, d.length - split), "seed " + seed + ", split " + split);
        }
        // A part that is not what follows gives another value.
        int a = BowCrc.update(5, d, 0, 100);
        assertNotEquals(BowCrc.updateTable(5, d, 0, 200), BowCrc.combine(a, BowCrc.update(0, d, 101, 100), 100));
    }
}
