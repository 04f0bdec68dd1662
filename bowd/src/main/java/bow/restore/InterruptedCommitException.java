package bow.restore;

import bow.bowlog.LogCorruptException;

/**
 * The log does not verify because a commit was interrupted after it overwrote part of the log
 * block (see {@link LogChain#interruptedCommit}): not corruption; the commit is to be finished.
 */
public final class InterruptedCommitException extends LogCorruptException {
    public InterruptedCommitException(String message) { super(message); }
}
