package bow.ctl;

import bow.lifecycle.CheckpointRecord;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
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
                "3:no checkpoint record", "4:the record is corrupt or unreadable (see the message)", "6:permission denied reading the record"})
public final class AbortCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin RecordOption record;

    @Option(names = "--retry", description = "Let the next boot try the update again if boot retries are left, instead of rolling back.")
    boolean retry;

    @Option(names = "--reason", paramLabel = "TEXT", defaultValue = "", description = "Why, kept in the record.")
    String reason;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        PrintWriter err = spec.commandLine().getErr();
        try {
            CheckpointRecord r = record.require(err);
            String why = reason.replaceAll("\\p{Cntrl}", " ");
            if (retry && r.retries() != 0 && r.state() == CheckpointRecord.State.ACTIVE) {
                record.write(r.withState(CheckpointRecord.State.ACTIVE, "boot " + r.bootAttempts() + " aborted, retrying"
                        + (why.isEmpty() ? "" : ": " + why)), err);
                out.println("aborted this boot; the next boot tries the update again ("
                        + (r.retries() < 0 ? "no retry limit" : r.retries() + " boot" + (r.retries() == 1 ? "" : "s") + " left") + ")");
            } else {
                String because = retry && r.retries() == 0 ? "aborted with no boot retries left" : "aborted";
                record.write(r.withState(CheckpointRecord.State.ROLLBACK_REQUESTED, because + (why.isEmpty() ? "" : ": " + why)), err);
                out.println("rollback requested for " + r.device() + ": the next boot (or bowctl rollback) rolls it back");
            }
            out.flush();
            return ExitCodes.OK;
        } catch (RecordOption.Failed f) {
            return f.code;
        }
    }
}
