package bow.restore;

/** Told how far a long offline operation has gone; a CLI draws a progress line from it. */
@FunctionalInterface
public interface ProgressListener {
    ProgressListener NONE = (phase, done, total) -> {};

    /**
     * @param phase what is being done ("verify", "restore", ...)
     * @param done  bytes handled so far in this phase
     * @param total bytes the phase will handle, or -1 when not known yet
     */
    void progress(String phase, long done, long total);
}
