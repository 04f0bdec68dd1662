package bow.bowmode;

/** What a run of blocks is to the bow engine (dm-bow's range types). */
public enum RangeType {
    /** Block 0: holds the log while a checkpoint exists. */
    SECTOR0,
    /** Where reads and writes of the real block 0 are redirected. */
    SECTOR0_CURRENT,
    /** Holds the data it had when the checkpoint started; back it up before overwriting. */
    UNCHANGED,
    /** Trimmed before the checkpoint: may be used for backups or written in place. */
    FREE,
    /** Written since the checkpoint started (or free and written): overwrite in place. */
    CHANGED,
    /** Holds a backup copy; back it up again before overwriting. */
    BACKUP;

    static final RangeType[] VALUES = values();
}
