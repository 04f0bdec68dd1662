package bow.ctl;

import bow.blockdev.BlockDevice;
import bow.proto.CommitRequest;
import bow.proto.Request;
import bow.proto.Response;
import bow.proto.StatusRequest;
import bow.lifecycle.CheckpointRecord;
import java.util.Optional;
import bow.restore.OfflineCommit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.time.Instant;
import java.util.concurrent.Callable;

/** {@code bowctl commit}: keep the changes, drop the checkpoint; online, or offline with --device. */
@Command(name = "commit", mixinStandardHelpOptions = true,
        description = {"Keep every change made since the checkpoint started and drop the checkpoint.",
                "Without --device the running daemon commits; with --device PATH the checkpointed device is committed offline (bow mode, no daemon).",
                "The checkpoint record (--record, $BOW_RECORD, /var/lib/bow/checkpoint.rec), if any, is removed after a successful commit. "
                        + "In bow mode the record is first marked COMMIT_REQUESTED, so that a commit interrupted by a crash or a signal is finished "
                        + "by the next 'bowctl commit --device', bow-boot or bow-recovery (see bowctl needs-commit); they print "
                        + "'finishing an interrupted commit'. A commit --device is safe to run again at any point of an interrupted commit. "
                        + "A record that requests a rollback (bowctl abort, low-space abort) makes commit refuse (exit 7): that checkpoint must be rolled back. "
                        + "If the daemon has no checkpoint running (it was committed already, or never started) a leftover record is removed and the exit is 0."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:committed", "1:failure", "3:no checkpoint on the device (--device)", "4:log header invalid (--device), or the record is corrupt",
                "5:daemon not reachable", "6:permission denied",
                "7:invalid state (no checkpoint running, a rollback is half done, or the record requests a rollback)"})
public final class CommitCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin ControlOptions control;

    @Option(names = "--device", paramLabel = "PATH", description = "Commit this raw device or image offline instead of asking the daemon.")
    Path device;

    @Mixin RecordOption record;

    @Override
    public Integer call() {
        return run(spec.commandLine().getOut(), spec.commandLine().getErr());
    }

    /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
    int run(PrintWriter out, PrintWriter err) {
        Optional<CheckpointRecord> rec;
        try {
            rec = record.read(err);
        } catch (RecordOption.Failed f) {
            return f.code;
        }
        if (rec.isPresent() && device != null && !sameDevice(rec.get())) rec = Optional.empty();   // another device's record stays
        if (rec.isPresent() && rec.get().state() == CheckpointRecord.State.ROLLBACK_REQUESTED) {
            return refuseRollbackRequested(rec.get(), err);
        }
        boolean resumed = rec.isPresent() && rec.get().state() == CheckpointRecord.State.COMMIT_REQUESTED;
        boolean marked = false;
        if (rec.isPresent() && !resumed && "bow".equals(rec.get().mode())) {
            // The decision goes on record before the device is touched: a crash or signal in the middle of the
            // commit leaves COMMIT_REQUESTED, and the next boot, recovery or commit --device finishes it.
            try {
                Optional<CheckpointRecord> now = record.update(r -> r.state() == CheckpointRecord.State.ACTIVE
                        ? r.withState(CheckpointRecord.State.COMMIT_REQUESTED, "commit started at " + Instant.now()) : r, err);
                if (now.isPresent() && now.get().state() == CheckpointRecord.State.ROLLBACK_REQUESTED) {
                    return refuseRollbackRequested(now.get(), err);   // an abort won the race
                }
                marked = now.isPresent() && now.get().state() == CheckpointRecord.State.COMMIT_REQUESTED;
                if (now.isEmpty()) rec = now;
            } catch (RecordOption.Failed f) {
                return f.code;
            }
        }
        if (resumed && device != null) {
            out.println("finishing an interrupted commit of " + device + " (the checkpoint record says a commit was started: "
                    + rec.get().stateReason() + ")");
        }
        int code;
        if (device != null) {
            try (BlockDevice dev = OfflineDevice.open(device, false)) {
                OfflineCommit.Result r = OfflineCommit.commit(dev, device.toString());
                if (r.interrupted() != null && !resumed) {
                    out.println("finishing an interrupted commit of " + device + " (" + r.interrupted() + ")");
                }
                out.println("committed " + device + ": the live block 0 is back and the device is a plain image");
                code = ExitCodes.OK;
            } catch (IOException e) {
                code = OfflineDevice.report(err, device, e);
            }
            if (code == ExitCodes.NO_CHECKPOINT && rec.isPresent()) {
                if (resumed) out.println(device + " is committed already: only the record was left to remove");
                code = ExitCodes.OK;
            }
            // Refused before anything was written (no log, a bad header, a half-done rollback, no permission):
            // this commit did not start.
            if (marked && code != ExitCodes.OK && code != ExitCodes.FAILURE) unmark(rec.get().stateReason(), err);
        } else {
            int[] c = {0};
            Response r = control.call(Request.newBuilder().setCommit(CommitRequest.getDefaultInstance()).build(), err, c);
            code = c[0];
            if (r != null && code == 0) out.println(r.getMessage());
            if (code == ExitCodes.INVALID_STATE && rec.isPresent() && !checkpointRunning(err)) {
                out.println("the daemon has no checkpoint running: the record is left over (committed already, or never started)");
                code = ExitCodes.OK;
            }
            if (code != ExitCodes.OK) {
                if (r != null && code != ExitCodes.FAILURE || code == ExitCodes.DAEMON_UNREACHABLE || code == ExitCodes.PERMISSION_DENIED) {
                    // The daemon refused, or was never reached: nothing was written.
                    if (marked) unmark(rec.get().stateReason(), err);
                    if (resumed && code == ExitCodes.DAEMON_UNREACHABLE) {
                        err.println("bowctl: a commit of " + rec.get().device() + " was interrupted (" + rec.get().stateReason()
                                + "): with nothing using the device, finish it with 'bowctl commit --device " + rec.get().device() + "'");
                    }
                } else if (marked || resumed) {
                    err.println("bowctl: the commit may be half done: the record " + record.path() + " keeps COMMIT_REQUESTED; "
                            + "the next boot (bow-boot), recovery, or 'bowctl commit --device " + rec.get().device()
                            + "' with the daemon stopped finishes it");
                }
                err.flush();
            }
        }
        if (rec.isPresent()) code = record.removeAfter(code, out, err);
        out.flush();
        return code;
    }

    private int refuseRollbackRequested(CheckpointRecord r, PrintWriter err) {
        err.println("bowctl: refusing to commit: the checkpoint record " + record.path() + " requests a rollback ("
                + BootAttemptCommand.why(r) + "); run bowctl rollback");
        err.flush();
        return ExitCodes.INVALID_STATE;
    }

    /** This commit did not start after all: the record goes back to ACTIVE, unless something else changed it meanwhile. */
    private void unmark(String previousReason, PrintWriter err) {
        try {
            record.update(r -> r.state() == CheckpointRecord.State.COMMIT_REQUESTED
                    ? r.withState(CheckpointRecord.State.ACTIVE, previousReason) : r, err);
        } catch (RecordOption.Failed f) {
            // printed; the commit's own code stands
        }
    }

    private boolean sameDevice(CheckpointRecord r) {
        return Path.of(r.device()).toAbsolutePath().normalize().equals(device.toAbsolutePath().normalize());
    }

    /** True unless the daemon says it is in a state with nothing to commit (before a checkpoint, or committed). */
    private boolean checkpointRunning(PrintWriter err) {
        int[] c = {0};
        Response r = control.call(Request.newBuilder().setStatus(StatusRequest.getDefaultInstance()).build(), err, c);
        if (r == null || c[0] != 0) return true;
        String state = r.getStatus().getState();
        return !(state.equals("0 TRIM") || state.equals("2 COMMITTED") || state.equals("NO_SNAPSHOT")
                || state.equals("NO_CHECKPOINT"));   // persistent: no snapshot; shared: no "checkpoint" snapshot
    }
}
