package bow.bowlog;

/**
 * Checks one log block's header and entries against the format and the device,
 * naming the first thing wrong. Pure: no I/O.
 */
public final class LogValidator {
    private LogValidator() {}

    /**
     * @param expectedSequence the sequence this block must carry, or -1 for "any" (the newest block)
     * @param deviceBytes      size of the device the log describes
     * @param expectedBlockSize block size the chain uses, or -1 to take this block's own
     */
    public static void validate(LogBlock log, long expectedSequence, long deviceBytes, long expectedBlockSize)
            throws LogCorruptException {
        if (!log.hasLogMagic()) {
            throw new LogCorruptException(where(log, -1) + "bad magic " + LogBlock.magicName(log.magic())
                    + " (expected BOW 0x00574f42 or WOB 0x00424f57)");
        }
        if (log.headerVersion() != LogBlock.HEADER_VERSION) {
            throw new LogCorruptException(where(log, -1) + String.format("unsupported header_version 0x%04x (expected 0x0100)", log.headerVersion()));
        }
        if (log.headerSize() != LogBlock.HEADER_SIZE) {
            throw new LogCorruptException(where(log, -1) + "header_size " + log.headerSize() + " (expected 28)");
        }
        long bs = log.blockSize();
        if (!LogBlock.isValidBlockSize(bs)) {
            throw new LogCorruptException(where(log, -1) + "block_size " + bs + " is not a power of two in 512..4096");
        }
        if (expectedBlockSize > 0 && bs != expectedBlockSize) {
            throw new LogCorruptException(where(log, -1) + "block_size " + bs + " differs from the chain's " + expectedBlockSize);
        }
        if (bs != log.bytes().length) {
            throw new LogCorruptException(where(log, -1) + "block_size " + bs + " but " + log.bytes().length + " bytes were read");
        }
        if (deviceBytes < 2 * bs || deviceBytes % 512 != 0) {
            throw new LogCorruptException("device of " + deviceBytes + " bytes is too small or not sector-aligned for block_size " + bs);
        }
        long capacity = LogBlock.capacity((int) bs);
        if (log.count() == 0 || log.count() > capacity) {
            throw new LogCorruptException(where(log, -1) + "count " + log.count() + " outside 1.." + capacity);
        }
        if (expectedSequence >= 0 && log.sequence() != expectedSequence) {
            throw new LogCorruptException(where(log, -1) + "wrong sequence " + log.sequence() + " (expected " + expectedSequence + ")");
        }
        long spb = bs / 512;
        long deviceSectors = deviceBytes / 512;
        long s0 = log.sector0();
        if (s0 <= 0 || s0 % spb != 0 || s0 + spb > deviceSectors) {
            throw new LogCorruptException(where(log, -1) + "sector0 " + s0 + " is not a block inside the device");
        }
        for (int i = 0; i < log.count(); i++) {
            LogEntry e = log.entry(i);
            long size = e.sizeBytes();
            if (size == 0 || size % bs != 0) {
                throw new LogCorruptException(where(log, i) + "size " + size + " is not a positive multiple of block_size " + bs);
            }
            long sectors = size / 512;
            if (e.sourceSector() < 0 || e.sourceSector() % spb != 0 || e.sourceSector() > deviceSectors - sectors) {
                throw new LogCorruptException(where(log, i) + "source sector " + e.sourceSector() + " (+" + sectors + ") outside the device or not block-aligned");
            }
            if (e.destSector() <= 0 || e.destSector() % spb != 0 || e.destSector() > deviceSectors - sectors) {
                throw new LogCorruptException(where(log, i) + "dest sector " + e.destSector() + " (+" + sectors + ") outside the device or not block-aligned");
            }
            if (e.sourceSector() < e.destSector() + sectors && e.destSector() < e.sourceSector() + sectors) {
                throw new LogCorruptException(where(log, i) + "source and dest overlap");
            }
            if (i == 0 && (e.sourceSector() != 0 || size != bs)) {
                throw new LogCorruptException(where(log, i) + "entry 0 must back up block 0 (source 0, size " + bs + ")");
            }
            if (i > 0 && e.sourceSector() == 0) {
                throw new LogCorruptException(where(log, i) + "only entry 0 may have source 0");
            }
        }
    }

    static String where(LogBlock log, int entry) {
        return "log sequence " + log.sequence() + (entry >= 0 ? ", entry " + entry : "") + ": ";
    }
}
