package bow.bowlog;

import org.junit.jupiter.api.Test;

import java.nio.charset.StandardCharsets;
import java.util.Random;
import java.util.zip.CRC32;

import static org.junit.jupiter.api.Assertions.assertEquals;

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
}
