package bow.ctl;

import bow.blockdev.BlockDevice;
import bow.lifecycle.CheckpointRecord;
import bow.restore.LogChain;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;
import picocli.CommandLine.Spec;

import java.io.IOException;
import java.io.PrintWriter;
import java.nio.file.Path;
import java.util.Optional;
import java.util.concurrent.Callable;

/** {@code bowctl needs-commit}: was a commit interrupted, so that it must be finished (bow-boot, bow-recovery)? */
@Command(name = "needs-commit", mixinStandardHelpOptions = true,
        description = {"Tell whether a commit was interrupted (a crash or a signal in the middle of bowctl commit, the daemon's commit "
                + "or the low-space commit) and must be finished with 'bowctl commit --device DEVICE' before anything else.",
                "Yes when the checkpoint record is COMMIT_REQUESTED (bowctl commit marks it so before the device is touched), "
                        + "or, in bow mode, when the device shows it: block 0 still has the log header but sectors that hold the log's "
                        + "entries already hold the live block 0 (only a commit writes them so). Reads the record and the raw device; "
                        + "writes nothing; works with no daemon.",
                "The device is the record's unless --device is given."},
        exitCodeListHeading = "%nExit codes:%n",
        exitCodeList = {"0:a commit was interrupted: finish it with bowctl commit --device", "1:no (no checkpoint, or no interrupted commit)",
                "4:the record is corrupt or unreadable (see the message)", "6:permission denied reading the record"})
public final class NeedsCommitCommand implements Callable<Integer> {
    @Spec CommandSpec spec;
    @Mixin RecordOption record;

    @Option(names = "--device", paramLabel = "PATH", description = "Look at this raw device or image (bow mode) instead of the record's.")
    Path device;

    @Override
    public Integer call() {
        return run(spec.commandLine().getOut(), spec.commandLine().getErr());
    }

    /** The command itself, printing to out and err: called by picocli, or by {@link FastPath} without it. */
    int run(PrintWriter out, PrintWriter err) {
        Optional<CheckpointRecord> r;
        try {
            r = record.read(err);
        } catch (RecordOption.Failed f) {
            return f.code;
        }
        Path dev = device != null ? device : r.map(x -> Path.of(x.device())).orElse(null);
        if (r.isPresent() && r.get().state() == CheckpointRecord.State.COMMIT_REQUESTED
                && (device == null || Path.of(r.get().device()).toAbsolutePath().normalize().equals(device.toAbsolutePath().normalize()))) {
            out.println("interrupted commit: the checkpoint record says a commit of " + r.get().device() + " was started ("
                    + r.get().stateReason() + "); finish it with 'bowctl commit --device " + r.get().device() + "'");
            out.flush();
            return ExitCodes.OK;
        }
        if (dev == null) {
            out.println("no interrupted commit: no checkpoint (no record at " + record.path() + ")");
            out.flush();
            return 1;
        }
        if (device == null && !"bow".equals(r.get().mode())) {
            out.println("no interrupted commit: " + NeedsCheckpointCommand.summary(r.get()));
            out.flush();
            return 1;
        }
        String evidence;
        try (BlockDevice d = OfflineDevice.open(dev, true)) {
            evidence = LogChain.interruptedCommit(d);
        } catch (IOException e) {
            err.println("bowctl: cannot look at " + dev + " for an interrupted commit: " + e.getMessage());
            err.flush();
            out.println("no interrupted commit known (the device could not be read)");
            out.flush();
            return 1;
        }
        if (evidence != null) {
            out.println("interrupted commit on " + dev + ": " + evidence + "; finish it with 'bowctl commit --device " + dev + "'");
            out.flush();
            return ExitCodes.OK;
        }
        out.println("no interrupted commit on " + dev);
        out.flush();
        return 1;
    }
}
