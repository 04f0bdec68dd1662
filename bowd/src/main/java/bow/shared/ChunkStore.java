package bow.shared;

/**
 * Where tree blocks live: whole chunks of the COW by chunk number. The engine's implementation
 * is a bounded write-back cache over the COW device; tests use a map.
 */
public interface ChunkStore {
    /** The chunk's bytes; callers do not modify the array. */
    byte[] read(long chunk);

    /** Replaces the chunk's bytes; the tree only writes chunks handed out in the current transaction. */
    void write(long chunk, byte[] data);
}
