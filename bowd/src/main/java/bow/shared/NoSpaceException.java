package bow.shared;

/** The COW has too few free chunks for the operation; nothing was changed. */
public final class NoSpaceException extends RuntimeException {
    public NoSpaceException(String what, long needed, long free) {
        super("shared store: no space for " + what + ": needs up to " + needed + " free chunks, " + free + " free");
    }
}
