package bow.nbd;

import java.nio.charset.StandardCharsets;

/**
 * Makes text that came from a client safe to put in a log line: control
 * characters (newlines above all, which would forge log lines) are escaped and
 * long text is cut. Used wherever client-supplied text is logged (NBD export
 * names and queries, control-socket messages).
 */
public final class LogText {
    /** Characters of client text kept in a log line; the rest is replaced by a note of the size. */
    public static final int MAX_CHARS = 256;

    private LogText() {}

    /** The text escaped and cut to {@link #MAX_CHARS} characters, with "...(N bytes)" when cut. */
    public static String of(String s) {
        if (s == null) return "null";
        StringBuilder b = new StringBuilder(Math.min(s.length(), MAX_CHARS) + 24);
        int kept = 0;
        int i = 0;
        for (; i < s.length() && kept < MAX_CHARS; i++, kept++) {
            char c = s.charAt(i);
            switch (c) {
                case '\n' -> b.append("\\n");
                case '\r' -> b.append("\\r");
                case '\t' -> b.append("\\t");
                case '\\' -> b.append("\\\\");
                default -> {
                    // C0, DEL, C1 controls, and the Unicode line/paragraph separators.
                    if (c < 0x20 || (c >= 0x7f && c <= 0x9f) || c == '\u2028' || c == '\u2029'
                            || Character.isSurrogate(c) && !validPairAt(s, i)) {
                        b.append(String.format("\\u%04x", (int) c));
                    } else if (Character.isHighSurrogate(c)) {
                        b.append(c).append(s.charAt(++i));   // keep a pair whole
                    } else {
                        b.append(c);
                    }
                }
            }
        }
        if (i < s.length()) {
            b.append("...(").append(s.getBytes(StandardCharsets.UTF_8).length).append(" bytes)");
        }
        return b.toString();
    }

    /** Client bytes decoded as UTF-8 (bad sequences become U+FFFD), then as {@link #of(String)}. */
    public static String of(byte[] utf8) {
        return utf8 == null ? "null" : of(new String(utf8, StandardCharsets.UTF_8));
    }

    private static boolean validPairAt(String s, int i) {
        return Character.isHighSurrogate(s.charAt(i)) && i + 1 < s.length() && Character.isLowSurrogate(s.charAt(i + 1));
    }
}
