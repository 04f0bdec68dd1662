package bow.ctl;

import bow.lifecycle.CheckpointRecord;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.util.Optional;
import java.util.concurrent.Callable;

/** {@code bowctl abort [--retry]}: give up on the update (vold's abortChanges), without rebooting behind anyone's back. */
@Command(name = "abort", mixinStandardHelpOptions = true,
        description = {"Give up on this boot of the update. Only the record changes; nothing is rebooted or rolled back now: "
                + "reboot (or stop the daemon and run bowctl rollback) when ready.",
                "Without --retry: request a rollback; the next boot (bow-boot) or recovery rolls back, and commit is refused from now on.",
                "With --retry: this boot failed but the update may be tried again: the next boot goes on if boot retries are left "
                        + "(each boot uses one through boot-attempt); with none left, a rollback is requested as without --retry."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:recorded (the message says whether a rollback is now requested)", "1:failure",
                "3:no checkpoint record", "4:the record is corrupt or unreadable (see the message)", "6:permission denied reading the record",
                "7:a commit was started (record COMMIT_REQUESTED): it cannot be aborted, only finished"})
public final class AbortCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin RecordOption record;

    @Option(names = "--retry", description = "Let the next boot try the update again if boot retries are left, instead of rolling back.")
    boolean retry;

    @Option(names = "--reason", paramLabel = "TEXT", defaultValue = "", description = "Why, kept in the record.")
    String reason;

    @Override
    public Integer call() {
        return run(spec.commandLine().getOut(), spec.commandLine().getErr());
    }

    /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
    int run(PrintWriter out, PrintWriter err) {
        try {
            String why = reason.replaceAll("\\p{Cntrl}", " ");
            String[] said = {null};
            // Read-modify-write under the record's lock: a low-space abort or boot-attempt at the same moment is not lost.
            Optional<CheckpointRecord> after = record.update(r -> {
                if (r.state() == CheckpointRecord.State.COMMIT_REQUESTED) {
                    said[0] = "bowctl: refusing to abort: a commit of " + r.device() + " was started (" + r.stateReason()
                            + ") and cannot be undone; finish it with 'bowctl commit --device " + r.device() + "'";
                    return r;
                }
                if (retry && r.retries() != 0 && r.state() == CheckpointRecord.State.ACTIVE) {
                    said[0] = "aborted this boot; the next boot tries the update again ("
                            + (r.retries() < 0 ? "no retry limit" : r.retries() + " boot" + (r.retries() == 1 ? "" : "s") + " left") + ")";
                    return r.withState(CheckpointRecord.State.ACTIVE, "boot " + r.bootAttempts() + " aborted, retrying"
                            + (why.isEmpty() ? "" : ": " + why));
                }
                String because = retry && r.retries() == 0 ? "aborted with no boot retries left" : "aborted";
                said[0] = "rollback requested for " + r.device() + ": the next boot (or bowctl rollback) rolls it back";
                return r.withState(CheckpointRecord.State.ROLLBACK_REQUESTED, because + (why.isEmpty() ? "" : ": " + why));
            }, err);
            if (after.isEmpty()) record.require(err);   // prints "no checkpoint record" and exits 3
            if (after.get().state() == CheckpointRecord.State.COMMIT_REQUESTED) {
                err.println(said[0]);
                err.flush();
                return ExitCodes.INVALID_STATE;
            }
            out.println(said[0]);
            out.flush();
            return ExitCodes.OK;
        } catch (RecordOption.Failed f) {
            return f.code;
        }
    }
}
