package bow.shared;

/**
 * Corrupt or unusable on-disk shared-store metadata. Always names the COW chunk and the field
 * (or structure) that is wrong, so that an fsck report or a refused open says where to look.
 */
public final class SharedFormatException extends RuntimeException {
    private final long chunk;
    private final String field;

    public SharedFormatException(long chunk, String field, String problem) {
        super("shared store: chunk " + chunk + ", " + field + ": " + problem);
        this.chunk = chunk;
        this.field = field;
    }

    /** The COW chunk holding the bad structure (-1 when it is not tied to one chunk). */
    public long chunk() { return chunk; }

    /** The field or structure that is wrong, e.g. "header.magic" or "leaf.map[3].offset". */
    public String field() { return field; }
}
