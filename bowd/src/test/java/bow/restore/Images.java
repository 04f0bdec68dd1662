package bow.restore;

import bow.blockdev.MemoryBlockDevice;
import bow.bowlog.LogBlock;

import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.function.Consumer;

/** Test helpers that damage a checkpointed image in a chosen way. */
public final class Images {
    private Images() {}

    public static int le32(byte[] img, int off) {
        return ByteBuffer.wrap(img).order(ByteOrder.LITTLE_ENDIAN).getInt(off);
    }

    public static void putLe32(byte[] img, int off, int v) {
        ByteBuffer.wrap(img).order(ByteOrder.LITTLE_ENDIAN).putInt(off, v);
    }

    /** Byte offset of field {@code fieldOffset} (16 = size, 20 = checksum) of entry {@code i} in a log block at {@code base}. */
    public static int entryField(int base, int i, int fieldOffset) {
        return base + LogBlock.HEADER_SIZE + i * LogBlock.ENTRY_SIZE + fieldOffset;
    }

    /** Where the dry run reads log sequence (newest - 1) from. */
    public static long previousLogBlock(byte[] img) throws Exception {
        LogInspector.Dump d = LogInspector.dump(new MemoryBlockDevice(img), "img");
        if (d.sequences().size() < 2) throw new IllegalStateException("image has a single log block");
        return d.sequences().get(1).physicalBlock();
    }

    /**
     * Mutates the previous log block where it sits, then re-signs every entry of
     * block 0 whose checksum covers it (entry 0, and the entry of any later re-backup
     * of that block), so the damage is only found when that block itself is validated.
     */
    public static void damagePreviousLog(byte[] img, int bs, Consumer<LogBlock> damage) throws Exception {
        long newest = new LogBlock(java.util.Arrays.copyOf(img, 512)).sequence();
        int at = (int) (previousLogBlock(img) * bs);
        byte[] block = java.util.Arrays.copyOfRange(img, at, at + bs);
        damage.accept(new LogBlock(block));
        System.arraycopy(block, 0, img, at, bs);
        while (true) {
            LogInspector.Dump d = LogInspector.dump(new MemoryBlockDevice(img), "img");
            LogInspector.SequenceInfo s = d.sequences().get(0);
            LogInspector.EntryInfo bad = s.entries().stream().filter(e -> e.verdict().equals("mismatch")).findFirst().orElse(null);
            if (s.sequence() != newest || bad == null) return;
            putLe32(img, entryField(0, bad.index(), 20), bad.actualChecksum());
        }
    }
}
