package bow.ctl;

import bow.lifecycle.CheckpointRecord;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.util.Optional;
import java.util.concurrent.Callable;

/** {@code bowctl needs-rollback}: must this boot roll back (vold's needsRollback)? */
@Command(name = "needs-rollback", mixinStandardHelpOptions = true,
        description = {"Tell from the checkpoint record whether the checkpoint must be rolled back: "
                + "its boot retries are used up, or a rollback was requested (bowctl abort, or the daemon's low-space abort).",
                "Reads only the record; works with no daemon."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:rollback needed", "1:no rollback needed (or no checkpoint)", "4:the record is corrupt or unreadable (see the message)", "6:permission denied reading the record"})
public final class NeedsRollbackCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin RecordOption record;

    @Override
    public Integer call() {
        return run(spec.commandLine().getOut(), spec.commandLine().getErr());
    }

    /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
    int run(PrintWriter out, PrintWriter err) {
        try {
            Optional<CheckpointRecord> r = record.read(err);
            if (r.isEmpty()) {
                out.println("no rollback needed: no checkpoint (no record at " + record.path() + ")");
            } else if (r.get().needsRollback()) {
                out.println("rollback needed: " + BootAttemptCommand.why(r.get()));
                out.flush();
                return ExitCodes.OK;
            } else {
                out.println("no rollback needed: " + NeedsCheckpointCommand.summary(r.get()));
            }
            out.flush();
            return 1;
        } catch (RecordOption.Failed f) {
            return f.code;
        }
    }
}
