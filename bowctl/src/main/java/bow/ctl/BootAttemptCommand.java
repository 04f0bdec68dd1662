package bow.ctl;

import bow.lifecycle.CheckpointRecord;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.util.Optional;
import java.util.concurrent.Callable;

/** {@code bowctl boot-attempt}: one boot of the updated system uses one retry (vold's markBootAttempt). */
@Command(name = "boot-attempt", mixinStandardHelpOptions = true,
        description = {"Count one boot of the updated system against the checkpoint's retries (run once per boot, before the daemon starts).",
                "With retries left, uses one and lets this boot go on. With none left (or a rollback requested), "
                        + "marks the record ROLLBACK_REQUESTED and exits 7: this boot must roll back instead.",
                "With --retries -1, boots are only counted."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:this boot may try the update", "1:failure", "3:no checkpoint record",
                "4:the record is corrupt or unreadable (see the message)", "6:permission denied reading the record", "7:rollback needed: retries used up or rollback requested; or a commit was interrupted (see needs-commit)"})
public final class BootAttemptCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin RecordOption record;

    @Override
    public Integer call() {
        return run(spec.commandLine().getOut(), spec.commandLine().getErr());
    }

    /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
    int run(PrintWriter out, PrintWriter err) {
        try {
            CheckpointRecord[] before = {null};
            // Read-modify-write under the record's lock: a bowctl abort or low-space abort at the same moment is not lost.
            Optional<CheckpointRecord> after = record.update(r -> {
                before[0] = r;
                if (r.state() == CheckpointRecord.State.COMMIT_REQUESTED) return r;
                if (r.needsRollback()) {
                    return r.state() == CheckpointRecord.State.ROLLBACK_REQUESTED ? r
                            : r.withState(CheckpointRecord.State.ROLLBACK_REQUESTED, "boot retries used up after " + r.bootAttempts() + " boot attempts");
                }
                return r.withRetries(r.retries() < 0 ? -1 : r.retries() - 1, r.bootAttempts() + 1);
            }, err);
            if (after.isEmpty()) record.require(err);   // prints "no checkpoint record" and exits 3
            CheckpointRecord r = before[0];
            if (r.state() == CheckpointRecord.State.COMMIT_REQUESTED) {
                err.println("bowctl: a commit of " + r.device() + " was interrupted (" + r.stateReason()
                        + "): not a boot of the update; finish it with 'bowctl commit --device " + r.device() + "'");
                err.flush();
                return ExitCodes.INVALID_STATE;
            }
            if (r.needsRollback()) {
                err.println("bowctl: rollback needed (" + why(r) + "): run bowctl rollback");
                err.flush();
                return ExitCodes.INVALID_STATE;
            }
            int left = after.get().retries();
            out.println("boot attempt " + (r.bootAttempts() + 1) + " of the update on " + r.device() + "; "
                    + (left < 0 ? "no retry limit" : left + " boot" + (left == 1 ? "" : "s") + " left before rollback"));
            out.flush();
            return ExitCodes.OK;
        } catch (RecordOption.Failed f) {
            return f.code;
        }
    }

    static String why(CheckpointRecord r) {
        if (r.state() == CheckpointRecord.State.ROLLBACK_REQUESTED && !r.stateReason().isEmpty()) return r.stateReason();
        return r.retries() == 0 ? "no boot retries left after " + r.bootAttempts() + " attempts" : "rollback requested";
    }
}
