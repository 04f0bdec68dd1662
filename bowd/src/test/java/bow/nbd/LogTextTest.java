package bow.nbd;

import org.junit.jupiter.api.Test;

import static org.junit.jupiter.api.Assertions.*;

class LogTextTest {
    @Test
    void controlCharactersAreEscapedSoNoLineCanBeForged() {
        String forged = "disk\n2026-01-01 00:00:00 INFO bowd: root logged in\r\u001b[31m\u0000\u2028";
        String s = LogText.of(forged);
        assertFalse(s.chars().anyMatch(c -> c < 0x20 || c == 0x7f || c == 0x2028), s);
        assertEquals("disk\\n2026-01-01 00:00:00 INFO bowd: root logged in\\r\\u001b[31m\\u0000\\u2028", s);
        assertEquals("a\\\\nb", LogText.of("a\\nb"), "a literal backslash-n stays distinguishable from a newline");
    }

    @Test
    void longTextIsCutWithItsSize() {
        String s = LogText.of("x".repeat(1 << 20));
        assertEquals("x".repeat(256) + "...(1048576 bytes)", s);
        assertEquals("x".repeat(256), LogText.of("x".repeat(256)), "text at the limit is kept whole");
        assertEquals("é".repeat(256) + "...(514 bytes)", LogText.of("é".repeat(257)), "the size is in UTF-8 bytes");
    }

    @Test
    void printableTextIsKeptAndPairsStayWhole() {
        assertEquals("export-1 ünïcode \uD83D\uDE00", LogText.of("export-1 ünïcode \uD83D\uDE00"));
        assertEquals("\\ud83d!", LogText.of("\uD83D!"), "a lone surrogate is escaped");
        assertEquals("ab\uFFFD", LogText.of(new byte[] {'a', 'b', (byte) 0xff}));
        assertEquals("null", LogText.of((String) null));
    }
}
