package bow.bowlog;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

class LogBlockTest {
    /** A log block laid out byte by byte from the MISSION.md description, not by LogBlock. */
    static byte[] handBuilt(int bs, int magic, int count, int sequence, long sector0, long[][] entries) {
        byte[] b = new byte[bs];
        int p = 0;
        p = le(b, p, magic, 4);
        p = le(b, p, 0x0100, 2);
        p = le(b, p, 28, 2);
        p = le(b, p, bs, 4);
        p = le(b, p, count, 4);
        p = le(b, p, sequence, 4);
        p = le(b, p, sector0, 8);
        assertEquals(28, p);
        for (long[] e : entries) {
            p = le(b, p, e[0], 8);
            p = le(b, p, e[1], 8);
            p = le(b, p, e[2], 4);
            p = le(b, p, e[3], 4);
        }
        return b;
    }

    static int le(byte[] b, int p, long v, int n) {
        for (int i = 0; i < n; i++) b[p + i] = (byte) (v >>> (8 * i));
        return p + n;
    }

    @Test
    void decodesHandBuiltBytes() throws Exception {
        byte[] b = handBuilt(4096, 0x00574F42, 2, 3, 800, new long[][] {{0, 808, 4096, 0x11223344L}, {16, 816, 8192, 0xdeadbeefL}});
        assertEquals('B', b[0]);
        assertEquals('O', b[1]);
        assertEquals('W', b[2]);
        LogBlock log = new LogBlock(b);
        assertEquals(LogBlock.MAGIC, log.magic());
        assertEquals(0x0100, log.headerVersion());
        assertEquals(28, log.headerSize());
        assertEquals(4096, log.blockSize());
        assertEquals(2, log.count());
        assertEquals(3, log.sequence());
        assertEquals(800, log.sector0());
        assertEquals(new LogEntry(0, 808, 4096, 0x11223344), log.entry(0));
        assertEquals(new LogEntry(16, 816, 8192, 0xdeadbeef), log.entry(1));
        LogValidator.validate(log, 3, 1 << 20, 4096);
    }

    @Test
    void encodesToTheSameBytes() {
        byte[] expected = handBuilt(512, 0x00574F42, 2, 7, 24, new long[][] {{0, 8, 512, 5}, {3, 9, 1024, 0xfffffffeL}});
        LogBlock log = new LogBlock(new byte[512]).initHeader(LogBlock.MAGIC, 512, 2, 7, 24);
        log.setEntry(0, new LogEntry(0, 8, 512, 5));
        log.setEntry(1, new LogEntry(3, 9, 1024, 0xfffffffe));
        assertArrayEquals(expected, log.bytes());
    }

    @Test
    void capacityMatchesLayout() {
        assertEquals(169, LogBlock.capacity(4096));
        assertEquals(20, LogBlock.capacity(512));
    }

    @Test
    void validationNamesWhatIsWrong() {
        long dev = 1 << 20;
        assertMessage(handBuilt(4096, 0x12345678, 1, 0, 8, new long[][] {{0, 8, 4096, 1}}), 0, dev, "bad magic");
        assertMessage(handBuilt(4096, 0x00574F42, 170, 0, 8, new long[][] {{0, 8, 4096, 1}}), 0, dev, "count 170");
        assertMessage(handBuilt(4096, 0x00574F42, 0, 0, 8, new long[][] {}), 0, dev, "count 0");
        assertMessage(handBuilt(4096, 0x00574F42, 1, 4, 8, new long[][] {{0, 8, 4096, 1}}), 3, dev, "wrong sequence 4 (expected 3)");
        assertMessage(handBuilt(4096, 0x00574F42, 2, 0, 8, new long[][] {{0, 8, 4096, 1}, {16, 1 << 20, 4096, 1}}), 0, dev, "entry 1: dest sector");
        assertMessage(handBuilt(4096, 0x00574F42, 2, 0, 8, new long[][] {{0, 8, 4096, 1}, {16, 24, 1000, 1}}), 0, dev, "entry 1: size 1000");
        assertMessage(handBuilt(4096, 0x00574F42, 1, 0, 8, new long[][] {{8, 16, 4096, 1}}), 0, dev, "entry 0 must back up block 0");
        assertMessage(handBuilt(4096, 0x00574F42, 1, 0, 8, new long[][] {{0, 8, 4096, 1}}), 0, 4096, "too small");
        byte[] badVersion = handBuilt(4096, 0x00574F42, 1, 0, 8, new long[][] {{0, 8, 4096, 1}});
        badVersion[4] = 2;
        assertMessage(badVersion, 0, dev, "header_version");
    }

    private static void assertMessage(byte[] b, long seq, long dev, String fragment) {
        LogCorruptException e = assertThrows(LogCorruptException.class, () -> LogValidator.validate(new LogBlock(b), seq, dev, -1));
        assertTrue(e.getMessage().contains(fragment), () -> "message '" + e.getMessage() + "' lacks '" + fragment + "'");
    }
}
