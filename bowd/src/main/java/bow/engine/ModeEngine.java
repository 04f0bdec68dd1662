package bow.engine;

import bow.blockdev.BlockDevice;

import java.io.Closeable;
import java.io.IOException;
import java.util.List;
import java.util.Map;

/**
 * What the daemon needs from a mode (bow, persistent, shared): the devices it
 * exports, its status, and the checkpoint lifecycle. The daemon, control socket
 * and NBD server are thin shells around this.
 */
public interface ModeEngine extends Closeable {

    /** "bow", "persistent" or "shared". */
    String mode();

    /**
     * The devices served over NBD, by export name. The default export has the
     * name "" (what a client gets when it asks for no name).
     */
    Map<String, BlockDevice> exports();

    EngineStatus status();

    /** Starts a checkpoint; a clear {@link IllegalStateException} if the state does not allow it. */
    void startCheckpoint() throws IOException;

    /** Keeps every change made since the checkpoint started and drops the safety net. */
    void commit() throws IOException;

    /** Online rollback, where the mode can do it with the device in use (persistent: merge). */
    default void rollback() throws IOException {
        throw new UnsupportedOperationException(mode() + " mode rolls back offline: stop the daemon and run 'bowctl rollback'");
    }

    /**
     * The snapshot operations when the mode has them (shared mode), else empty. Wrappers of an
     * engine (status details, the low-space policy) pass their engine's through.
     */
    default java.util.Optional<SnapshotEngine> snapshots() {
        return this instanceof SnapshotEngine s ? java.util.Optional.of(s) : java.util.Optional.empty();
    }

    /** The most ranges one control reply carries (about 42 bytes each, well inside the 1 MiB frame). */
    int RANGES_PAGE = 16384;

    /** The range table, like dm-bow's table status; empty where the mode has none. */
    default List<RangeRecord> ranges() { return List.of(); }

    /**
     * One page of the range table: at most {@code limit} ranges, from the one that holds byte
     * {@code fromOffset} on, the first one clipped to start at {@code fromOffset}. A mode with a
     * large table overrides this so that a page does not cost a copy of the whole table.
     */
    default List<RangeRecord> ranges(long fromOffset, int limit) {
        List<RangeRecord> page = new java.util.ArrayList<>();
        for (RangeRecord r : ranges()) {
            if (page.size() >= limit) break;
            long end = r.offset() + r.length();
            if (end <= fromOffset) continue;
            long start = Math.max(r.offset(), fromOffset);
            page.add(new RangeRecord(start, end - start, r.type()));
        }
        return page;
    }

    /** A status snapshot. {@code details} holds mode-specific extras (key, human-readable value). */
    record EngineStatus(String mode, String state, String device, long deviceSize, int blockSize,
                        long freeBytes, long backedUpBytes, long logSequence, long logEntries,
                        long rangeCount, Map<String, String> details) {}

    /** One run of blocks of one type, in bytes. */
    record RangeRecord(long offset, long length, String type) {}
}
