package bow.restore;

import java.io.IOException;

/** Block 0 holds no dm-bow log: never checkpointed, already restored, or already committed. */
public class NoCheckpointException extends IOException {
    public NoCheckpointException(String message) { super(message); }
}
