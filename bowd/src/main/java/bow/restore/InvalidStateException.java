package bow.restore;

import java.io.IOException;

/** The device is in a state where the request makes no sense (e.g. commit while a restore is half done). */
public class InvalidStateException extends IOException {
    public InvalidStateException(String message) { super(message); }
}
