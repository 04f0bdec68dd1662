package bow.bowmode;

import bow.lifecycle.AtomicFile;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.zip.CRC32;

/**
 * The ranges that were free when a checkpoint started, kept outside the device
 * (next to the checkpoint record) so that a daemon restarted during the
 * checkpoint knows them again: those blocks hold no data the rollback needs.
 * Without it a resumed checkpoint can only reuse blocks it saw changed.
 *
 * <p>Layout, little-endian: "BOWFREE1", u32 block_size, u64 blocks, u64 sector0
 * and u32 checksum of sequence 0's entry 0 (which tie the file to one
 * checkpoint), u32 n, n × {u64 start block, u64 end block}, u32 CRC-32 of all
 * that precedes it. Written atomically.
 */
public final class FreeMapFile {
    private static final byte[] MAGIC = "BOWFREE1".getBytes(java.nio.charset.StandardCharsets.US_ASCII);

    /** What identifies the checkpoint: block size, device blocks, and sequence 0's entry 0. */
    public record Identity(int blockSize, long blocks, long firstDestSector, int firstChecksum) {}

    private FreeMapFile() {}

    /** {@code runs} are byte ranges {start, end, start, end, ...}, block-aligned. */
    static void write(Path file, Identity id, long[] runs) throws IOException {
        int n = runs.length / 2;
        ByteBuffer b = ByteBuffer.allocate(8 + 4 + 8 + 8 + 4 + 4 + 16 * n + 4).order(ByteOrder.LITTLE_ENDIAN);
        b.put(MAGIC).putInt(id.blockSize()).putLong(id.blocks()).putLong(id.firstDestSector()).putInt(id.firstChecksum()).putInt(n);
        for (int i = 0; i < n; i++) b.putLong(runs[2 * i] / id.blockSize()).putLong(runs[2 * i + 1] / id.blockSize());
        CRC32 crc = new CRC32();
        crc.update(b.array(), 0, b.position());
        b.putInt((int) crc.getValue());
        AtomicFile.replace(file, b.array());
    }

    /**
     * The free block ranges {start, end, ...} stored for this checkpoint; null when
     * the file is missing. A file of another checkpoint, or a damaged one, is an
     * error that names it (never silently ignored, never silently used).
     */
    static long[] read(Path file, Identity expected) throws IOException {
        if (!Files.exists(file)) return null;
        byte[] data = Files.readAllBytes(file);
        if (data.length < 40) throw new IOException(file + ": free map is truncated (" + data.length + " bytes)");
        CRC32 crc = new CRC32();
        crc.update(data, 0, data.length - 4);
        ByteBuffer b = ByteBuffer.wrap(data).order(ByteOrder.LITTLE_ENDIAN);
        if ((int) crc.getValue() != b.getInt(data.length - 4)) throw new IOException(file + ": free map checksum mismatch (torn or damaged)");
        byte[] magic = new byte[8];
        b.get(magic);
        if (!java.util.Arrays.equals(magic, MAGIC)) throw new IOException(file + ": not a bow free map");
        Identity id = new Identity(b.getInt(), b.getLong(), b.getLong(), b.getInt());
        if (!id.equals(expected)) {
            throw new IOException(file + ": free map belongs to another checkpoint (" + id + ", this one is " + expected + ")");
        }
        int n = b.getInt();
        if (n < 0 || data.length != 40 + 16L * n) throw new IOException(file + ": free map length does not match its " + n + " ranges");
        long[] runs = new long[2 * n];
        for (int i = 0; i < 2 * n; i++) runs[i] = b.getLong();
        for (int i = 0; i < n; i++) {
            if (runs[2 * i] < 1 || runs[2 * i] >= runs[2 * i + 1] || runs[2 * i + 1] > expected.blocks()) {
                throw new IOException(file + ": free map range " + i + " [" + runs[2 * i] + ", " + runs[2 * i + 1] + ") is outside the device");
            }
        }
        return runs;
    }
}
