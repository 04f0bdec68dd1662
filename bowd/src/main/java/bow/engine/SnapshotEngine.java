package bow.engine;

import java.io.IOException;
import java.util.List;
import java.util.Set;

/**
 * What a mode with named snapshots (shared mode) offers besides {@link ModeEngine}: snapshot
 * create, list, delete and an online rollback of the origin to one of them. The control server
 * answers the snapshot requests through this interface when the engine implements it, and
 * {@code UNSUPPORTED} otherwise.
 *
 * <p>Its exports change while the daemon runs: {@link ModeEngine#exports()} returns the current
 * set each time it is called (the origin as "", each snapshot as "snapshot-ID" and, when named,
 * "snapshot-NAME"), and {@link #readOnlyExports()} those a client may not write.
 *
 * <p>Snapshots are named by an argument that is either an ID ("0".."63") or a name (names are
 * never all digits, see {@code SharedFormat.nameError}).
 */
public interface SnapshotEngine {
    /** One snapshot as {@code bowctl snapshot list} shows it. */
    record SnapshotInfo(int id, String name, long createdMillis, boolean writable,
                        long chunksAlone, long chunksShared) {}

    /** The store's size and use, in chunks of {@code chunkBytes}. */
    record StoreUsage(int chunkBytes, long freeChunks, long totalChunks) {}

    /**
     * Takes a snapshot of the origin as it is now (every write acknowledged before this call
     * returns is in it) and returns its ID; durable before it returns.
     *
     * @param name null or empty for none; else checked as {@code SharedFormat.nameError} says
     * @throws IllegalArgumentException a bad or duplicate name
     * @throws IllegalStateException the 64-snapshot limit (the message names it), or a store
     *         that cannot take one now
     */
    int createSnapshot(String name, boolean writable) throws IOException;

    /** The live snapshots by ID, with chunk counts from a walk of the tree. */
    List<SnapshotInfo> listSnapshots() throws IOException;

    StoreUsage usage();

    /**
     * Deletes a snapshot: its export goes away at once (open connections get errors), the delete
     * is durable before this returns, and its chunks are reclaimed in the background.
     *
     * @throws IllegalArgumentException no such snapshot
     */
    void deleteSnapshot(String idOrName) throws IOException;

    /**
     * Starts an online rollback: the origin becomes the snapshot's content (other snapshots keep
     * theirs). Returns once started; progress and the outcome are in {@code status().details()}
     * ("rollback" = "done/total chunks", "error" on failure).
     *
     * @throws IllegalArgumentException no such snapshot
     * @throws IllegalStateException a rollback already running
     */
    void rollbackTo(String idOrName) throws IOException;

    /** Export names a client may only read (snapshots not created writable). */
    Set<String> readOnlyExports();
}
