package bow.ctl;

import bow.lifecycle.CheckpointRecord;
import picocli.CommandLine.Option;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Optional;

/** The --record option of the lifecycle commands, and reading the record with the shared error handling. */
final class RecordOption {
    @Option(names = "--record", paramLabel = "PATH",
            description = "The checkpoint record (default: $BOW_RECORD, else /var/lib/bow/checkpoint.rec).")
    Path record;

    Path path() { return CheckpointRecord.resolve(record); }

    /** Thrown with the exit code after the error was printed. */
    static final class Failed extends IOException {
        final int code;

        Failed(int code) {
            super("exit code " + code);
            this.code = code;
        }
    }

    /** The record, empty if there is none; a corrupt or unreadable one is printed and fails with exit code 4 (6 for EACCES). */
    Optional<CheckpointRecord> read(PrintWriter err) throws Failed {
        try {
            return CheckpointRecord.read(path());
        } catch (CheckpointRecord.CorruptRecordException e) {
            err.println("bowctl: " + e.getMessage());
            err.flush();
            throw new Failed(ExitCodes.LOG_INVALID);
        } catch (IOException e) {
            // Not 1: needs-checkpoint and needs-rollback answer "no" with 1, and an unreadable record is not a "no".
            err.println("bowctl: cannot read the checkpoint record " + path() + ": " + e);
            err.flush();
            throw new Failed(e instanceof java.nio.file.AccessDeniedException ? ExitCodes.PERMISSION_DENIED : ExitCodes.LOG_INVALID);
        }
    }

    /** The record, or exit code 3 (printed) if there is none. */
    CheckpointRecord require(PrintWriter err) throws Failed {
        Optional<CheckpointRecord> r = read(err);
        if (r.isEmpty()) {
            err.println("bowctl: no checkpoint record at " + path() + ": no checkpoint was started with bowctl checkpoint start");
            err.flush();
            throw new Failed(ExitCodes.NO_CHECKPOINT);
        }
        return r.get();
    }

    /**
     * Read-modify-write of the record under its lock ({@link CheckpointRecord#update}); empty if
     * there is no record. A failure is printed and thrown with its exit code.
     */
    Optional<CheckpointRecord> update(CheckpointRecord.Change change, PrintWriter err) throws Failed {
        try {
            return CheckpointRecord.update(path(), change);
        } catch (Failed f) {
            throw f;
        } catch (CheckpointRecord.CorruptRecordException e) {
            err.println("bowctl: " + e.getMessage());
            err.flush();
            throw new Failed(ExitCodes.LOG_INVALID);
        } catch (IOException e) {
            err.println("bowctl: updating the checkpoint record " + path() + " failed: " + e);
            err.flush();
            throw new Failed(e instanceof java.nio.file.AccessDeniedException ? ExitCodes.PERMISSION_DENIED : ExitCodes.FAILURE);
        }
    }

    void write(CheckpointRecord r, PrintWriter err) throws Failed {
        try {
            r.write(path());
        } catch (IOException e) {
            err.println("bowctl: writing the checkpoint record " + path() + " failed: " + e);
            err.flush();
            throw new Failed(ExitCodes.FAILURE);
        }
    }

    /**
     * After a commit or rollback that ended the checkpoint: removes the record and
     * says so; returns the exit code to report ({@code code} unless the removal fails).
     */
    int removeAfter(int code, PrintWriter out, PrintWriter err) {
        if (code != ExitCodes.OK) return code;
        try {
            remove(err);
            out.println("checkpoint record " + path() + " removed");
            return code;
        } catch (Failed f) {
            return f.code;
        }
    }

    void remove(PrintWriter err) throws Failed {
        try {
            CheckpointRecord.locked(path(), () -> {
                CheckpointRecord.remove(path());
                // bowd --free-map beside the record (init-scripts): the checkpoint is over.
                return bow.lifecycle.AtomicFile.remove(path().resolveSibling(path().getFileName() + ".free"));
            });
        } catch (IOException e) {
            err.println("bowctl: removing the checkpoint record " + path() + " failed: " + e);
            err.flush();
            throw new Failed(ExitCodes.FAILURE);
        }
    }
}
