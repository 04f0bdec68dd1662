package bow.bowlog;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/**
 * Block 0 of a device in checkpoint: the dm-bow log, byte-compatible with
 * Android's dm-bow. Little-endian, packed:
 * <pre>
 *   0  u32 magic          0x00574F42 "BOW" (0x00424F57 "WOB" while a restore runs)
 *   4  u16 header_version 0x0100
 *   6  u16 header_size    28
 *   8  u32 block_size
 *  12  u32 count          entries in use
 *  16  u32 sequence
 *  20  u64 sector0        sector where the live block 0 now is
 *  28  entries, 24 bytes each: u64 source, u64 dest, u32 size, u32 checksum
 * </pre>
 * Bytes after the last entry in use are not part of the log and may hold anything.
 */
public final class LogBlock {
    public static final int MAGIC = 0x00574F42;
    public static final int MAGIC_RESTORING = 0x00424F57;
    public static final int HEADER_VERSION = 0x0100;
    public static final int HEADER_SIZE = 28;
    public static final int ENTRY_SIZE = 24;
    public static final int MIN_BLOCK_SIZE = 512;
    public static final int MAX_BLOCK_SIZE = 4096;

    private final byte[] bytes;
    private final ByteBuffer buf;

    /** Wraps (does not copy) a block of log bytes. */
    public LogBlock(byte[] bytes) {
        this.bytes = bytes;
        this.buf = ByteBuffer.wrap(bytes).order(ByteOrder.LITTLE_ENDIAN);
    }

    /** Entries that fit in one block of this size. */
    public static int capacity(int blockSize) { return (blockSize - HEADER_SIZE) / ENTRY_SIZE; }

    public static boolean isValidBlockSize(long bs) {
        return bs >= MIN_BLOCK_SIZE && bs <= MAX_BLOCK_SIZE && Long.bitCount(bs) == 1;
    }

    /** Sets every header field at once (version and header size are the fixed ones). */
    public LogBlock initHeader(int magic, int blockSize, int count, int sequence, long sector0) {
        setMagic(magic);
        buf.putShort(4, (short) HEADER_VERSION);
        buf.putShort(6, (short) HEADER_SIZE);
        buf.putInt(8, blockSize);
        setCount(count);
        buf.putInt(16, sequence);
        setSector0(sector0);
        return this;
    }

    public byte[] bytes() { return bytes; }

    public int magic() { return buf.getInt(0); }

    public int headerVersion() { return Short.toUnsignedInt(buf.getShort(4)); }

    public int headerSize() { return Short.toUnsignedInt(buf.getShort(6)); }

    public long blockSize() { return Integer.toUnsignedLong(buf.getInt(8)); }

    public long count() { return Integer.toUnsignedLong(buf.getInt(12)); }

    public long sequence() { return Integer.toUnsignedLong(buf.getInt(16)); }

    public long sector0() { return buf.getLong(20); }

    public void setMagic(int magic) { buf.putInt(0, magic); }

    public void setCount(int count) { buf.putInt(12, count); }

    public void setSector0(long sector0) { buf.putLong(20, sector0); }

    public boolean hasLogMagic() { return magic() == MAGIC || magic() == MAGIC_RESTORING; }

    public LogEntry entry(int i) {
        int off = HEADER_SIZE + i * ENTRY_SIZE;
        return new LogEntry(buf.getLong(off), buf.getLong(off + 8), buf.getInt(off + 16), buf.getInt(off + 20));
    }

    public void setEntry(int i, LogEntry e) {
        int off = HEADER_SIZE + i * ENTRY_SIZE;
        buf.putLong(off, e.sourceSector());
        buf.putLong(off + 8, e.destSector());
        buf.putInt(off + 16, e.size());
        buf.putInt(off + 20, e.checksum());
    }

    /** True if {@code bytes} (at least the first 4) start with either log magic. */
    public static boolean looksLikeLog(byte[] firstBytes) {
        if (firstBytes.length < 4) return false;
        int m = ByteBuffer.wrap(firstBytes, 0, 4).order(ByteOrder.LITTLE_ENDIAN).getInt();
        return m == MAGIC || m == MAGIC_RESTORING;
    }

    public static String magicName(int magic) {
        return switch (magic) {
            case MAGIC -> "BOW";
            case MAGIC_RESTORING -> "WOB";
            default -> String.format("0x%08x", magic);
        };
    }
}
