package bow.restore;

import bow.blockdev.BlockDevice;
import bow.bowlog.LogBlock;
import bow.bowlog.LogCorruptException;

import java.io.IOException;
import java.nio.ByteBuffer;

/**
 * Offline commit of a dm-bow checkpoint: the live block 0 (at the header's
 * sector0) goes back to block 0 and the log is gone. Writes sectors 1..n of block 0
 * first, flush, then sector 0 alone, flush: a crash leaves either the intact log
 * header (commit again) or the committed block. Only the header is needed, so a
 * commit re-run after such a crash still works although the entries are overwritten.
 */
public final class OfflineCommit {
    /**
     * @param sequence  sequence of the log that was dropped
     * @param sector0   where the live block 0 was read from
     * @param blockSize the log's block size
     * @param interrupted what showed that an earlier commit was interrupted on this device (see
     *                    {@link LogChain#interruptedCommit}), or null
     */
    public record Result(long sequence, long sector0, int blockSize, String interrupted) {}

    private OfflineCommit() {}

    /**
     * @throws NoCheckpointException no log in block 0 (already committed or never checkpointed)
     * @throws InvalidStateException a restore was interrupted (WOB): only rollback may finish it
     * @throws LogCorruptException   the header is damaged
     */
    public static Result commit(BlockDevice dev, String name) throws IOException {
        LogBlock log = LogChain.readHead(dev, name);
        refuseRestoring(log, name);
        checkHeader(log, dev.size());
        return writeLiveBlock0(dev, log, LogChain.interruptedCommit(dev));
    }

    /**
     * What vold does with a log it cannot use: commit anyway. Accepts a damaged magic
     * (if the rest of the header is a dm-bow header) and ignores entries and older
     * log blocks; still needs a usable sector0.
     */
    static Result rollForward(BlockDevice dev, String name) throws IOException {
        if (dev.size() < 512) throw new NoCheckpointException("no checkpoint on " + name);
        LogBlock sector = new LogBlock(LogChain.read(dev, 0, 512));
        refuseRestoring(sector, name);
        if (!sector.hasLogMagic() && !LogChain.looksLikeHeader(sector)) {
            throw new NoCheckpointException("no checkpoint on " + name);
        }
        if (!LogChain.looksLikeHeader(sector)) {
            throw new LogCorruptException("cannot roll forward: the log header itself is damaged (version "
                    + sector.headerVersion() + ", header_size " + sector.headerSize() + ", block_size " + sector.blockSize() + ")");
        }
        LogBlock log = new LogBlock(LogChain.read(dev, 0, (int) sector.blockSize()));
        checkSector0(log, dev.size(), "cannot roll forward: ");
        return writeLiveBlock0(dev, log, null);
    }

    private static void refuseRestoring(LogBlock log, String name) throws InvalidStateException {
        if (log.magic() == LogBlock.MAGIC_RESTORING) {
            throw new InvalidStateException("a rollback of " + name + " was interrupted (log marked WOB); "
                    + "committing now would mix old and new data: finish it with 'bowctl rollback'");
        }
    }

    /** The header fields a commit relies on; entries are not looked at. */
    private static void checkHeader(LogBlock log, long deviceBytes) throws LogCorruptException {
        String where = "log sequence " + log.sequence() + ": ";
        if (log.headerVersion() != LogBlock.HEADER_VERSION) {
            throw new LogCorruptException(where + String.format("unsupported header_version 0x%04x (expected 0x0100)", log.headerVersion()));
        }
        if (log.headerSize() != LogBlock.HEADER_SIZE) {
            throw new LogCorruptException(where + "header_size " + log.headerSize() + " (expected 28)");
        }
        long cap = LogBlock.capacity((int) log.blockSize());
        if (log.count() == 0 || log.count() > cap) {
            throw new LogCorruptException(where + "count " + log.count() + " outside 1.." + cap);
        }
        checkSector0(log, deviceBytes, where);
    }

    private static void checkSector0(LogBlock log, long deviceBytes, String where) throws LogCorruptException {
        long spb = log.blockSize() / 512;
        long s0 = log.sector0();
        if (s0 <= 0 || s0 % spb != 0 || s0 > deviceBytes / 512 - spb) {
            throw new LogCorruptException(where + "sector0 " + s0 + " is not a block inside the device");
        }
    }

    /**
     * Every state a crash leaves between these writes is finished by running the commit again:
     * before the header sector is written, sector 0 still holds the header (magic, sector0), which
     * is all a commit reads, and the live block at sector0 is never written by a commit; after it,
     * block 0 is the live block 0 and there is no checkpoint left.
     */
    private static Result writeLiveBlock0(BlockDevice dev, LogBlock log, String interrupted) throws IOException {
        int bs = (int) log.blockSize();
        byte[] live = LogChain.read(dev, log.sector0() * 512, bs);
        if (bs > 512) {
            dev.write(512, ByteBuffer.wrap(live, 512, bs - 512));
            dev.flush();
        }
        dev.write(0, ByteBuffer.wrap(live, 0, 512));
        dev.flush();
        return new Result(log.sequence(), log.sector0(), bs, interrupted);
    }
}
