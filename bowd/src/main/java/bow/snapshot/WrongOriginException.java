package bow.snapshot;

import java.io.IOException;

/** The COW's snapshot was not taken of the device given as its origin; nothing was changed. */
public class WrongOriginException extends IOException {
    public WrongOriginException(String message) { super(message); }
}
