package bow.shared;

import bow.blockdev.BlockDevice;
import bow.engine.ModeEngine;
import bow.engine.SnapshotEngine;

import java.io.IOException;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The "shared" mode: up to 64 snapshots of ORIGIN on one COW (issue 9).
 *
 * <p>PLACEHOLDER committed so that the daemon, control and CLI work can compile against the
 * public API while the store is written (branch shared-core); every method throws until then.
 */
public final class SharedEngine implements ModeEngine, SnapshotEngine {
    /** {@code chunkSectors} 0 = the COW's, or {@link SharedFormat#DEFAULT_CHUNK_SECTORS} on a blank COW. */
    public record Options(int chunkSectors) {}

    private SharedEngine() {}

    /** Opens ORIGIN with COW: a blank COW is formatted at the first snapshot; a COW holding a store is opened as it is. */
    public static SharedEngine open(BlockDevice origin, BlockDevice cow, Options options) throws IOException {
        throw new UnsupportedOperationException("shared mode is not built yet");
    }

    /** Waits for a running online rollback (or nothing) and rethrows its failure. For the offline rollback. */
    public void awaitRollback() throws IOException { throw new UnsupportedOperationException(); }

    @Override public String mode() { return "shared"; }
    @Override public Map<String, BlockDevice> exports() { throw new UnsupportedOperationException(); }
    @Override public EngineStatus status() { throw new UnsupportedOperationException(); }
    @Override public void startCheckpoint() { throw new UnsupportedOperationException(); }
    @Override public void commit() { throw new UnsupportedOperationException(); }
    @Override public void rollback() { throw new UnsupportedOperationException(); }
    @Override public void close() {}
    @Override public int createSnapshot(String name, boolean writable) { throw new UnsupportedOperationException(); }
    @Override public List<SnapshotInfo> listSnapshots() { throw new UnsupportedOperationException(); }
    @Override public StoreUsage usage() { throw new UnsupportedOperationException(); }
    @Override public void deleteSnapshot(String idOrName) { throw new UnsupportedOperationException(); }
    @Override public void rollbackTo(String idOrName) { throw new UnsupportedOperationException(); }
    @Override public Set<String> readOnlyExports() { throw new UnsupportedOperationException(); }
}
