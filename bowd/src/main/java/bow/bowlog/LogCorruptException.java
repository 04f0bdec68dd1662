package bow.bowlog;

import java.io.IOException;

/** A checkpoint log that fails validation; the message names the sequence and entry. */
public class LogCorruptException extends IOException {
    public LogCorruptException(String message) { super(message); }
}
