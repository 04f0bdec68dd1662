package bow.ctl;

import bow.lifecycle.CheckpointRecord;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Spec;

import java.io.PrintWriter;
import java.util.Optional;
import java.util.concurrent.Callable;

/** {@code bowctl needs-checkpoint}: is a checkpoint running, according to the record (vold's needsCheckpoint)? */
@Command(name = "needs-checkpoint", mixinStandardHelpOptions = true,
        description = {"Tell from the checkpoint record whether a checkpoint is running (started and neither committed nor rolled back).",
                "Reads only the record; works with no daemon. Prints the record's summary."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:a checkpoint is running", "1:no checkpoint (no record)", "4:the record is corrupt or unreadable (see the message)", "6:permission denied reading the record"})
public final class NeedsCheckpointCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin RecordOption record;

    @Override
    public Integer call() {
        PrintWriter out = spec.commandLine().getOut();
        try {
            Optional<CheckpointRecord> r = record.read(spec.commandLine().getErr());
            if (r.isEmpty()) {
                out.println("no checkpoint (no record at " + record.path() + ")");
                out.flush();
                return 1;
            }
            out.println(summary(r.get()));
            out.flush();
            return ExitCodes.OK;
        } catch (RecordOption.Failed f) {
            return f.code;
        }
    }

    static String summary(CheckpointRecord r) {
        return "checkpoint " + r.state() + ": mode " + r.mode() + ", device " + r.device()
                + (r.cow().isEmpty() ? "" : ", cow " + r.cow())
                + ", retries left " + (r.retries() < 0 ? "unlimited" : r.retries())
                + ", boot attempts " + r.bootAttempts() + ", started " + r.startedAt()
                + (r.reason().isEmpty() ? "" : " (" + r.reason() + ")")
                + (r.stateReason().isEmpty() ? "" : "; " + r.stateReason())
                + (r.lowSpaceAction().isEmpty() ? "" : "; low space: " + r.lowSpaceAction());
    }
}
