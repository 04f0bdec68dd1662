package bow.bowmode;

import bow.bowlog.LogBlock;
import bow.bowlog.LogEntry;

/**
 * The simplest possible rollback, on a byte array, as an oracle for engine
 * tests: apply entries newest to oldest, following the chain through block 0.
 */
final class NaiveRollback {
    private NaiveRollback() {}

    static void run(byte[] image, int bs) {
        while (true) {
            LogBlock log = new LogBlock(java.util.Arrays.copyOf(image, bs));
            if (log.magic() != LogBlock.MAGIC) throw new AssertionError("no log in block 0");
            long seq = log.sequence();
            for (int i = (int) log.count() - 1; i >= 0; i--) {
                LogEntry e = log.entry(i);
                System.arraycopy(image, (int) e.destByte(), image, (int) e.sourceByte(), e.size());
            }
            if (seq == 0) return;
        }
    }
}
