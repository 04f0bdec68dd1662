package bow.restore;

import bow.bowlog.BowCrc;
import bow.bowlog.LogBlock;
import bow.bowlog.LogEntry;

import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Random;
import java.util.TreeSet;

/**
 * Test-only: a checkpointed image made by hand, the way the bow engine leaves a
 * device. Starts from random content with about half of the blocks free
 * (trimmed), takes the checkpoint (live block 0 to a free block, original block 0
 * backed up as sequence 0 entry 0), then simulates writes: blocks that held data
 * (including earlier backups) are copied to free runs first and logged with their
 * real checksum; a full log block is itself backed up and sequence + 1 starts with
 * that backup as entry 0; a write that hits the live block 0's home moves it and
 * updates sector0. Bytes after count in block 0 are left over, never zeroed.
 */
public final class CheckpointImage {
    enum Type { SECTOR0, SECTOR0_CURRENT, UNCHANGED, FREE, CHANGED, BACKUP }

    public final int blockSize;
    public final int blocks;
    /** The device when the checkpoint started. */
    public final byte[] original;
    /** The checkpointed device as the engine left it (log in block 0). */
    public final byte[] image;
    /** Blocks that held data when the checkpoint started: a rollback must give them back exactly. */
    public final boolean[] mustRestore;
    /** Where the live block 0 is at the end. */
    public int sector0Block;
    public int entries;
    public int sequences = 1;
    /** Entries whose source was a block that had itself been used as a backup dest. */
    public int reBackups;

    private final Random rnd;
    private final Type[] type;
    private final TreeSet<Integer> free = new TreeSet<>();
    private final List<Integer> backupBlocks = new ArrayList<>();
    private final LogBlock log;
    private final boolean someUnchecked;

    private CheckpointImage(int blockSize, int blocks, long seed, boolean someUnchecked) {
        this.blockSize = blockSize;
        this.blocks = blocks;
        this.rnd = new Random(seed);
        this.someUnchecked = someUnchecked;
        original = new byte[blockSize * blocks];
        rnd.nextBytes(original);
        image = original.clone();
        type = new Type[blocks];
        mustRestore = new boolean[blocks];
        type[0] = Type.SECTOR0;
        mustRestore[0] = true;
        for (int b = 1; b < blocks; b++) {
            if (rnd.nextBoolean()) {
                type[b] = Type.FREE;
                free.add(b);
            } else {
                type[b] = Type.UNCHANGED;
                mustRestore[b] = true;
            }
        }
        // Checkpoint start: live block 0 moves to a free block, the original is backed up.
        sector0Block = takeFree(1)[0];
        type[sector0Block] = Type.SECTOR0_CURRENT;
        copyBlocks(0, sector0Block, 1);
        // The log block starts over whatever block 0 held: bytes past count are garbage.
        log = new LogBlock(Arrays.copyOfRange(original, 0, blockSize));
        log.initHeader(LogBlock.MAGIC, blockSize, 0, 0, (long) sector0Block * spb());
        int d = takeFree(1)[0];
        copyBlocks(0, d, 1);
        markBackup(d, 1);
        appendRaw(new LogEntry(0, (long) d * spb(), blockSize, crc(0, d, 1)));
    }

    /**
     * @param writes how many random write requests to simulate (stops early when free space runs low)
     */
    public static CheckpointImage build(int blockSize, int blocks, long seed, int writes) {
        return build(blockSize, blocks, seed, writes, false);
    }

    /** Like {@link #build(int, int, long, int)}; with {@code someUnchecked}, about one entry in ten has checksum 0. */
    public static CheckpointImage build(int blockSize, int blocks, long seed, int writes, boolean someUnchecked) {
        CheckpointImage c = new CheckpointImage(blockSize, blocks, seed, someUnchecked);
        for (int w = 0; w < writes && c.free.size() > 24; w++) c.write();
        c.flushLog();
        return c;
    }

    private int spb() { return blockSize / 512; }

    /** The device as the filesystem saw it: block 0 is the live one. */
    public byte[] liveView() {
        byte[] v = image.clone();
        System.arraycopy(image, sector0Block * blockSize, v, 0, blockSize);
        return v;
    }

    /** First block index (or -1) where {@code dev} differs from the original among blocks that must be restored. */
    public int firstUnrestoredBlock(byte[] dev) {
        for (int b = 0; b < blocks; b++) {
            if (mustRestore[b] && !Arrays.equals(dev, b * blockSize, (b + 1) * blockSize,
                    original, b * blockSize, (b + 1) * blockSize)) return b;
        }
        return -1;
    }

    private void write() {
        int start, len;
        if (!backupBlocks.isEmpty() && rnd.nextInt(4) == 0) {
            // Aim at earlier backups so that dests get re-backed-up as sources.
            start = backupBlocks.get(rnd.nextInt(backupBlocks.size()));
            len = 1 + rnd.nextInt(3);
        } else {
            start = rnd.nextInt(blocks);
            len = 1 + rnd.nextInt(8);
        }
        len = Math.min(len, blocks - start);
        if (start == 0) {
            // Writes to block 0 go to its live copy, which needs no backup.
            fillRandom(sector0Block, 1);
            start = 1;
            len--;
        }
        // Free blocks in the run become changed first, so no backup is put where we are about to write.
        for (int b = start; b < start + len; b++) {
            if (type[b] == Type.FREE) {
                type[b] = Type.CHANGED;
                free.remove(b);
            }
        }
        int b = start;
        while (b < start + len) {
            if (type[b] == Type.SECTOR0_CURRENT) {
                int moved = takeFree(1)[0];
                copyBlocks(b, moved, 1);
                type[moved] = Type.SECTOR0_CURRENT;
                sector0Block = moved;
                log.setSector0((long) moved * spb());
                type[b] = Type.CHANGED;
                b++;
                continue;
            }
            if (type[b] != Type.UNCHANGED && type[b] != Type.BACKUP) {
                b++;
                continue;
            }
            int run = 1;
            while (b + run < start + len && (type[b + run] == Type.UNCHANGED || type[b + run] == Type.BACKUP)) run++;
            int[] dest = takeFree(run);
            int n = dest.length;
            copyBlocks(b, dest[0], n);
            for (int j = 0; j < n; j++) if (type[b + j] == Type.BACKUP) reBackups++;
            int checksum = someUnchecked && rnd.nextInt(10) == 0 ? 0 : crc(b, dest[0], n);
            append(new LogEntry((long) b * spb(), (long) dest[0] * spb(), n * blockSize, checksum));
            markBackup(dest[0], n);
            for (int j = 0; j < n; j++) type[b + j] = Type.CHANGED;
            b += n;
        }
        fillRandom(start, len);
    }

    private void append(LogEntry e) {
        if (log.count() == LogBlock.capacity(blockSize)) {
            // Log block full: back it up and start the next sequence with that backup.
            int d = takeFree(1)[0];
            System.arraycopy(log.bytes(), 0, image, d * blockSize, blockSize);
            markBackup(d, 1);
            int checksum = BowCrc.entryChecksum(0, blockSize, log.bytes(), 0, blockSize);
            log.initHeader(LogBlock.MAGIC, blockSize, 0, (int) log.sequence() + 1, log.sector0());
            appendRaw(new LogEntry(0, (long) d * spb(), blockSize, checksum));
            sequences++;
        }
        appendRaw(e);
    }

    private void appendRaw(LogEntry e) {
        int i = (int) log.count();
        log.setEntry(i, e);
        log.setCount(i + 1);
        entries++;
    }

    private void flushLog() {
        System.arraycopy(log.bytes(), 0, image, 0, blockSize);
    }

    private void markBackup(int d, int n) {
        for (int j = 0; j < n; j++) {
            type[d + j] = Type.BACKUP;
            backupBlocks.add(d + j);
        }
    }

    /** A run of up to {@code max} contiguous free blocks (at least one). */
    private int[] takeFree(int max) {
        if (free.isEmpty()) throw new IllegalStateException("builder ran out of free blocks");
        Integer f = free.ceiling(rnd.nextInt(blocks));
        if (f == null) f = free.first();
        int n = 1;
        while (n < max && free.contains(f + n)) n++;
        int[] run = new int[n];
        for (int j = 0; j < n; j++) {
            run[j] = f + j;
            free.remove(f + j);
        }
        return run;
    }

    private int crc(int source, int dataBlock, int n) {
        return BowCrc.entryChecksum((long) source * spb(), blockSize, image, dataBlock * blockSize, n * blockSize);
    }

    private void copyBlocks(int from, int to, int n) {
        System.arraycopy(image, from * blockSize, image, to * blockSize, n * blockSize);
    }

    private void fillRandom(int start, int n) {
        byte[] data = new byte[n * blockSize];
        rnd.nextBytes(data);
        System.arraycopy(data, 0, image, start * blockSize, data.length);
    }
}
