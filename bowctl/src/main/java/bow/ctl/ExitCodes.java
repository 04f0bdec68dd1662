package bow.ctl;

/** The exit codes of every bowctl command (also listed in the README). */
public final class ExitCodes {
    public static final int OK = 0;
    /** I/O or any other failure. */
    public static final int FAILURE = 1;
    /** Bad command line. */
    public static final int USAGE = 2;
    /** No checkpoint (no dm-bow log) on the device. */
    public static final int NO_CHECKPOINT = 3;
    /** The log failed validation; the device was not modified. */
    public static final int LOG_INVALID = 4;
    /** The daemon is not reachable. */
    public static final int DAEMON_UNREACHABLE = 5;
    /** Permission denied. */
    public static final int PERMISSION_DENIED = 6;
    /** The device or daemon is in a state where the request is invalid. */
    public static final int INVALID_STATE = 7;
    /** persistent mode: the COW's snapshot was not taken of the given origin; nothing was changed. */
    public static final int WRONG_ORIGIN = 8;

    private ExitCodes() {}
}
