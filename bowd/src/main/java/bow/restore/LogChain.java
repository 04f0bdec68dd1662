package bow.restore;

import bow.blockdev.BlockDevice;
import bow.bowlog.BowCrc;
import bow.bowlog.LogBlock;
import bow.bowlog.LogCorruptException;
import bow.bowlog.LogEntry;
import bow.bowlog.LogValidator;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.util.Arrays;

/**
 * The dry run of a rollback: walks the log chain from the newest log block in
 * block 0 down to sequence 0, newest entry first, without writing anything. An
 * in-memory redirect map says where each block's content would come from after
 * the restores so far, so older log blocks and backed-up data are read where the
 * real restore would find them. Every header is validated (sequence k, k-1, ..., 0,
 * one block size) and every nonzero checksum is recomputed.
 */
public final class LogChain {

    private LogChain() {}

    /** What the dry run saw; a dump or a test listens to it. */
    public interface Visitor {
        Visitor NONE = new Visitor() {};

        /** A log block of the chain, read from {@code physicalBlock}, already validated. */
        default void sequence(LogBlock log, long physicalBlock) {}

        /**
         * One entry, in restore order (newest first), before its checksum verdict is
         * acted on: {@code actualChecksum} is what the data at {@code dataBlock} (the
         * physical block its first block would be read from) hashes to, or 0 when the
         * entry carries no checksum.
         */
        default void entry(LogBlock log, int index, LogEntry entry, long dataBlock, int actualChecksum) {}

        /** An older log block read from {@code physicalBlock} that failed validation (an exception follows). */
        default void rejected(LogBlock log, long physicalBlock) {}
    }

    /**
     * @param blockSize      the chain's block size
     * @param newestSequence sequence of the log block in block 0
     * @param restoring      block 0 is marked WOB: a restore was interrupted
     * @param sequences      log blocks in the chain
     * @param entries        entries still to apply (all of them, across sequences)
     * @param bytes          bytes those entries copy back
     * @param sector0        the newest log's sector0 (live block 0)
     */
    public record Summary(int blockSize, long newestSequence, boolean restoring, long sequences,
                          long entries, long bytes, long sector0) {}

    /**
     * Reads and lightly checks block 0. A block 0 that is not a log at all means
     * "no checkpoint"; one whose header is a dm-bow header except for the magic is a
     * damaged log, not an absent one.
     */
    public static LogBlock readHead(BlockDevice dev, String name) throws IOException {
        if (dev.size() < 512) throw new NoCheckpointException("no checkpoint on " + name + " (device of " + dev.size() + " bytes)");
        LogBlock sector = new LogBlock(read(dev, 0, 512));
        if (!sector.hasLogMagic()) {
            if (looksLikeHeader(sector)) {
                LogValidator.validate(sector, -1, dev.size(), -1); // throws, naming the bad magic
            }
            throw new NoCheckpointException("no checkpoint on " + name);
        }
        long bs = sector.blockSize();
        if (!LogBlock.isValidBlockSize(bs)) {
            LogValidator.validate(sector, -1, dev.size(), -1); // throws, naming the block size
        }
        if (dev.size() < 2 * bs) {
            throw new LogCorruptException("device of " + dev.size() + " bytes is too small for block_size " + bs);
        }
        return bs == 512 ? sector : new LogBlock(read(dev, 0, (int) bs));
    }

    /** Header fields other than the magic are those of a dm-bow log. */
    static boolean looksLikeHeader(LogBlock h) {
        return h.headerVersion() == LogBlock.HEADER_VERSION && h.headerSize() == LogBlock.HEADER_SIZE
                && LogBlock.isValidBlockSize(h.blockSize());
    }

    /** Validates the whole chain (see class comment); writes nothing. */
    public static Summary verify(BlockDevice dev, String name, Visitor visitor, ProgressListener progress) throws IOException {
        try {
            return walk(dev, name, visitor, progress);
        } catch (LogCorruptException e) {
            String commit = interruptedCommit(dev);
            if (commit != null) {
                throw new InterruptedCommitException(e.getMessage() + "; this is not corruption but an interrupted commit: " + commit
                        + "; finish the commit with 'bowctl commit --device " + name + "'");
            }
            throw e;
        }
    }

    /**
     * The evidence that a commit (online or offline) was interrupted on this device, or null if
     * there is none.
     *
     * <p>A commit writes the live block 0's sectors 1..n over block 0, flushes, then writes sector
     * 0 (the header) last. A crash in between leaves the log's header sector intact over some or
     * all of the live block's other sectors. Sectors 1..n of a running checkpoint's log block keep
     * the bytes block 0 had when the checkpoint started, and so does the live block 0 until the
     * filesystem rewrites it: a sector of block 0 that equals the live block's sector is evidence
     * only where the log keeps entries (the header's count reaches past sector 0). There the log
     * holds entries, never filesystem data, so a match means the commit overwrote them. A log whose
     * entries all sit in sector 0 is left whole by an interrupted commit (a rollback or a commit
     * both still work), and nothing on the device tells the two apart: the checkpoint record's
     * COMMIT_REQUESTED state carries that intent instead.
     */
    public static String interruptedCommit(BlockDevice dev) throws IOException {
        if (dev.size() < 512) return null;
        LogBlock h = new LogBlock(read(dev, 0, 512));
        if (h.magic() != LogBlock.MAGIC || !looksLikeHeader(h) || h.blockSize() == 512) return null;
        int bs = (int) h.blockSize();
        long spb = bs / 512;
        long s0 = h.sector0();
        long count = h.count();
        if (count == 0 || count > LogBlock.capacity(bs)) return null;
        if (s0 <= 0 || s0 % spb != 0 || s0 > dev.size() / 512 - spb || dev.size() < 2L * bs) return null;
        int lastEntrySector = (int) ((LogBlock.HEADER_SIZE + LogBlock.ENTRY_SIZE * count - 1) / 512);
        if (lastEntrySector < 1) return null;
        byte[] block0 = read(dev, 0, bs);
        byte[] live = read(dev, s0 * 512, bs);
        int first = -1, matched = 0;
        for (int i = 1; i <= lastEntrySector; i++) {
            if (java.util.Arrays.equals(block0, i * 512, (i + 1) * 512, live, i * 512, (i + 1) * 512)) {
                if (first < 0) first = i;
                matched++;
            }
        }
        if (matched == 0) return null;
        return "block 0 still has log sequence " + h.sequence() + "'s header, but " + matched + " of its sectors 1.." + lastEntrySector
                + " that hold the log's entries (count " + count + ") already hold the live block 0 (from sector " + s0
                + "; first sector " + first + "), as only a commit writes them";
    }

    private static Summary walk(BlockDevice dev, String name, Visitor visitor, ProgressListener progress) throws IOException {
        LogBlock log = readHead(dev, name);
        long deviceBytes = dev.size();
        LogValidator.validate(log, -1, deviceBytes, -1);
        int bs = (int) log.blockSize();
        long spb = bs / 512;
        boolean restoring = log.magic() == LogBlock.MAGIC_RESTORING;
        long newest = log.sequence();
        long sector0 = log.sector0();
        BlockRedirects redirects = new BlockRedirects(expectedBlocks(log, bs));
        long physical = 0;
        long sequences = 0, entries = 0, bytes = 0;
        try (RunChecksums sums = new RunChecksums(dev)) {
            Sequence cur = new Sequence(log, physical, redirects, bs, sums);
            while (true) {
                visitor.sequence(cur.log, cur.physical);
                sequences++;
                // Look one sequence ahead, so the disk has the next sequence's data to read while this
                // one's checksums finish. The previous log block's place follows from the redirects
                // alone (entry 0 just restored block 0 in the simulation: it now holds that block); a
                // failure to read or validate it is reported only after this sequence's entries passed,
                // as a walk one sequence at a time would.
                Sequence next = null;
                IOException nextFailure = null;
                LogBlock nextLog = null;
                long nextPhysical = -1;
                if (cur.log.sequence() != 0) {
                    nextPhysical = redirects.resolve(0);
                    try {
                        nextLog = new LogBlock(read(dev, nextPhysical * bs, bs));
                        LogValidator.validate(nextLog, cur.log.sequence() - 1, deviceBytes, bs);
                        next = new Sequence(nextLog, nextPhysical, redirects, bs, sums);
                    } catch (IOException e) {
                        nextFailure = e;
                    }
                }
                int[] parts = cur.checksums.await();
                LogBlock l = cur.log;
                for (int i = (int) l.count() - 1; i >= 0; i--) {
                    LogEntry e = l.entry(i);
                    int actual = 0;
                    if (e.checksum() != 0) {
                        actual = (int) (e.sourceSector() / spb);   // the seed
                        for (int r = cur.firstRun[i + 1]; r < cur.firstRun[i]; r++) actual = BowCrc.combine(actual, parts[r], cur.runs.length(r));
                    }
                    visitor.entry(l, i, e, cur.firstBlock[i], actual);
                    if (e.checksum() != 0 && actual != e.checksum()) {
                        throw new LogCorruptException("log sequence " + l.sequence() + ", entry " + i
                                + ": checksum mismatch: expected " + hex(e.checksum()) + ", actual " + hex(actual)
                                + " (data of source sector " + e.sourceSector() + " read from block " + cur.firstBlock[i] + ")");
                    }
                    entries++;
                    bytes += e.sizeBytes();
                    progress.progress("verify", bytes, -1);
                }
                if (l.sequence() == 0) break;
                if (nextFailure instanceof LogCorruptException bad && nextLog != null) {
                    visitor.rejected(nextLog, nextPhysical);
                    throw new LogCorruptException(bad.getMessage() + " (previous log block read from block " + nextPhysical + ")");
                }
                if (nextFailure != null) throw nextFailure;
                cur = next;
            }
        }
        return new Summary(bs, newest, restoring, sequences, entries, bytes, sector0);
    }

    /**
     * About how many blocks the whole chain backs up: the newest block's, plus as many per older
     * (full) block as the newest averages per entry. Only a size hint for the redirects, which
     * otherwise rehash some twenty times on their way to a large checkpoint's million blocks.
     */
    static long expectedBlocks(LogBlock newest, int bs) {
        long count = newest.count(), blocks = 0;
        if (count == 0) return 0;
        for (int i = 0; i < count; i++) blocks += newest.entry(i).sizeBytes() / bs;
        double perEntry = (double) blocks / count;
        return blocks + (long) Math.min(1e12, newest.sequence() * (double) LogBlock.capacity(bs) * perEntry);
    }

    /**
     * One validated log block with its entries resolved: where each entry's data would be read from
     * depends only on the entries before it, not on the data, so the whole sequence is resolved
     * (the redirects move on past it) and all its data queued for checksumming, in device order on
     * several threads; the parts are folded per entry once they are in.
     */
    private static final class Sequence {
        final LogBlock log;
        final long physical;
        /** Physical block of each entry's first block. */
        final long[] firstBlock;
        /** Entry i's runs are [firstRun[i + 1], firstRun[i]) (runs are listed newest entry first). */
        final int[] firstRun;
        final RunList runs = new RunList();
        final RunChecksums.Pending checksums;

        Sequence(LogBlock log, long physical, BlockRedirects redirects, int bs, RunChecksums sums) {
            this.log = log;
            this.physical = physical;
            long spb = bs / 512;
            int count = (int) log.count();
            firstBlock = new long[count];
            firstRun = new int[count + 1];
            for (int i = count - 1; i >= 0; i--) {
                LogEntry e = log.entry(i);
                int n = (int) (e.sizeBytes() / bs);
                long src = e.sourceSector() / spb;
                long dst = e.destSector() / spb;
                long[] from = new long[n];
                for (int j = 0; j < n; j++) from[j] = redirects.resolve(dst + j);
                firstBlock[i] = from[0];
                firstRun[i + 1] = runs.size();
                if (e.checksum() != 0) runs.add(from, bs);
                for (int j = 0; j < n; j++) redirects.put(src + j, from[j]);
            }
            firstRun[0] = runs.size();
            checksums = sums.submit(runs.offsets(), runs.lengths());
        }
    }

    /**
     * Contiguous runs of physical blocks (device byte offset and length, at most
     * {@link RunChecksums#WINDOW} bytes each), in the order entries and their blocks are checksummed.
     */
    private static final class RunList {
        private long[] offset = new long[16];
        private int[] length = new int[16];
        private int size;

        int size() { return size; }

        int length(int r) { return length[r]; }

        long[] offsets() { return Arrays.copyOf(offset, size); }

        int[] lengths() { return Arrays.copyOf(length, size); }

        /** Block j of the data at physical block from[j]. */
        void add(long[] from, int bs) {
            int maxBlocks = RunChecksums.WINDOW / bs;
            int j = 0;
            while (j < from.length) {
                int run = 1;
                while (j + run < from.length && run < maxBlocks && from[j + run] == from[j] + run) run++;
                if (size == offset.length) {
                    offset = Arrays.copyOf(offset, size * 2);
                    length = Arrays.copyOf(length, size * 2);
                }
                offset[size] = from[j] * bs;
                length[size] = run * bs;
                size++;
                j += run;
            }
        }
    }

    static byte[] read(BlockDevice dev, long offset, int len) throws IOException {
        byte[] b = new byte[len];
        dev.read(offset, ByteBuffer.wrap(b));
        return b;
    }

    static String hex(int v) { return String.format("0x%08x", v); }
}
