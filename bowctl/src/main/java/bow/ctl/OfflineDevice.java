package bow.ctl;

import bow.blockdev.BlockDevice;
import bow.blockdev.DeviceException;
import bow.blockdev.Errno;
import bow.blockdev.FileBlockDevice;
import bow.bowlog.LogCorruptException;
import bow.restore.ImageFile;
import bow.restore.InvalidStateException;
import bow.restore.NoCheckpointException;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.AccessDeniedException;
import java.nio.file.Path;

/** Opening a raw device or image for the offline tools, and turning their errors into exit codes. */
final class OfflineDevice {
    private OfflineDevice() {}

    static BlockDevice open(Path path, boolean readOnly) throws IOException {
        return FileBlockDevice.open(path, readOnly);
    }

    /**
     * Opens for reading only: a regular file as an {@link ImageFile} (no native library to load),
     * anything else as {@link #open(Path, boolean)} does.
     */
    static BlockDevice openForInspection(Path path) throws IOException {
        if (java.nio.file.Files.isRegularFile(path)) return ImageFile.open(path);
        return open(path, true);
    }

    static int exitCode(IOException e) {
        if (e instanceof NoCheckpointException) return ExitCodes.NO_CHECKPOINT;
        if (e instanceof LogCorruptException) return ExitCodes.LOG_INVALID;
        if (e instanceof bow.snapshot.WrongOriginException) return ExitCodes.WRONG_ORIGIN;
        if (e instanceof InvalidStateException) return ExitCodes.INVALID_STATE;
        if (e instanceof AccessDeniedException) return ExitCodes.PERMISSION_DENIED;
        // EPERM (an immutable file, a read-only device) comes as a plain FileSystemException.
        if (e instanceof java.nio.file.FileSystemException f && "Operation not permitted".equals(f.getReason())) {
            return ExitCodes.PERMISSION_DENIED;
        }
        if (e instanceof DeviceException d && d.errno() == Errno.EPERM) return ExitCodes.PERMISSION_DENIED;
        return ExitCodes.FAILURE;
    }

    /** Prints the error the way every offline command does and returns its exit code. */
    static int report(PrintWriter err, Path device, IOException e) {
        int code = exitCode(e);
        switch (code) {
            case ExitCodes.NO_CHECKPOINT -> err.println("bowctl: " + e.getMessage());
            case ExitCodes.LOG_INVALID -> err.println("bowctl: log failed validation: " + e.getMessage());
            case ExitCodes.WRONG_ORIGIN -> err.println("bowctl: " + device + " is not the origin of this COW: " + e.getMessage());
            case ExitCodes.PERMISSION_DENIED -> err.println("bowctl: permission denied: " + device
                    + (e instanceof AccessDeniedException ? "" : " (" + e.getMessage() + ")"));
            default -> err.println("bowctl: " + device + ": " + e.getMessage());
        }
        err.flush();
        return code;
    }
}
