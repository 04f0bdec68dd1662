package bow.blockdev;

import java.io.IOException;

/** A block request that failed with a specific errno; the message says why in words. */
public class DeviceException extends IOException {
    private final Errno errno;

    public DeviceException(Errno errno, String message) {
        super(errno + ": " + message);
        this.errno = errno;
    }

    public DeviceException(Errno errno, String message, Throwable cause) {
        super(errno + ": " + message, cause);
        this.errno = errno;
    }

    public Errno errno() { return errno; }

    /** The errno of any IOException: its own if it carries one, otherwise EIO. */
    public static Errno errnoOf(Throwable t) {
        return t instanceof DeviceException d ? d.errno() : Errno.EIO;
    }
}
