package bow.bowmode;

import java.io.IOException;

/** The device still carries a checkpoint log; serving it as a fresh device would lose the way back. */
public class CheckpointPresentException extends IOException {
    public CheckpointPresentException(String message) { super(message); }
}
