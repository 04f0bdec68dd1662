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

    /** The record in one line. A StringBuilder, not "+": on bowctl's fast path an indy string concatenation costs milliseconds. */
    static String summary(CheckpointRecord r) {
        StringBuilder b = new StringBuilder("checkpoint ").append(r.state()).append(": mode ").append(r.mode())
                .append(", device ").append(r.device());
        if (!r.cow().isEmpty()) b.append(", cow ").append(r.cow());
        b.append(", retries left ");
        if (r.retries() < 0) b.append("unlimited"); else b.append(r.retries());
        b.append(", boot attempts ").append(r.bootAttempts()).append(", started ").append(r.startedAt());
        if (!r.reason().isEmpty()) b.append(" (").append(r.reason()).append(')');
        if (!r.stateReason().isEmpty()) b.append("; ").append(r.stateReason());
        if (!r.lowSpaceAction().isEmpty()) b.append("; low space: ").append(r.lowSpaceAction());
        return b.toString();
    }
}
